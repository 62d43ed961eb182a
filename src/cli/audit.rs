//! `ward audit`: list, show, verify and export session logs.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use serde_json::json;

use ward::audit::{self, Verification};
use ward::config::Config;
use ward::session::SessionState;
use ward::session::describe::Timeline;

use ward::evidence::plural;

use super::{EXIT_FINDINGS, EXIT_OK, EXIT_USAGE};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Without a subcommand: the audit viewer (pick a session, replay it).
    #[command(subcommand)]
    pub command: Option<AuditCommand>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Md,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Sessions with start, operator, runbook, environment, outcome and verification status.
    List,
    /// A session's timeline, for people.
    Show {
        /// Session id (or a unique prefix), or a log file.
        id: String,
    },
    /// Check hash chains and safety invariants. Exit 0 ok, 1 tampered, 3 truncated or unsealed.
    Verify {
        /// Session id, prefix or log file.
        id: Option<String>,
        /// Verify every session.
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
    /// A session as Markdown (for an incident ticket) or JSON.
    Export {
        id: String,
        #[arg(long, value_enum, default_value = "md")]
        format: ExportFormat,
    },
}

fn sessions(config: &Config) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(&config.sessions)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The log of session `id` (an id, a unique prefix, or a file path).
pub(super) fn find(config: &Config, id: &str) -> Result<PathBuf, String> {
    let p = Path::new(id);
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    let hits: Vec<PathBuf> = sessions(config)
        .into_iter()
        .filter(|f| {
            f.file_stem()
                .and_then(|s| s.to_str())
                .is_some_and(|s| s.starts_with(id))
        })
        .collect();
    match hits.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(format!(
            "no session `{id}` in {}; `ward audit list` shows them",
            config.sessions.display()
        )),
        many => Err(format!(
            "`{id}` matches {} sessions; give more of the id",
            many.len()
        )),
    }
}

pub fn run(config: &Config, args: &Args) -> u8 {
    let Some(command) = &args.command else {
        return super::session::viewer(config);
    };
    let mut out = std::io::stdout().lock();
    match command {
        AuditCommand::List => {
            let _ = writeln!(
                out,
                "{:<24} {:<20} {:<10} {:<30} {:<8} {:<18} verification",
                "session", "started", "operator", "runbook", "env", "outcome"
            );
            for f in sessions(config) {
                let (events, verdict) = match audit::read_events(&f) {
                    Ok(r) => r,
                    Err(e) => {
                        errln!("{}: {e}", f.display());
                        continue;
                    }
                };
                let s = SessionState::from_events(&events);
                let _ = writeln!(
                    out,
                    "{:<24} {:<20} {:<10} {:<30} {:<8} {:<18} {}",
                    f.file_stem().and_then(|x| x.to_str()).unwrap_or(""),
                    s.started_at
                        .as_deref()
                        .map(|t| t.chars().take(19).collect::<String>())
                        .unwrap_or_default(),
                    s.operator,
                    s.runbook,
                    s.environment,
                    s.outcome.map_or("(running or crashed)", |o| o.words()),
                    super::session::verification_name(&verdict)
                );
            }
            EXIT_OK
        }
        AuditCommand::Show { id } => {
            let path = match find(config, id) {
                Ok(p) => p,
                Err(e) => {
                    errln!("error: {e}");
                    return EXIT_USAGE;
                }
            };
            match audit::read_events(&path) {
                Ok((events, verdict)) => {
                    let mut timeline = Timeline::default();
                    for e in &events {
                        let _ = writeln!(out, "{} {}", e.ts, timeline.line(e));
                    }
                    let _ = writeln!(
                        out,
                        "verification: {}",
                        super::session::verification_name(&verdict)
                    );
                    EXIT_OK
                }
                Err(e) => {
                    errln!("error: {e}");
                    EXIT_USAGE
                }
            }
        }
        AuditCommand::Verify { id, all } => {
            let files = if *all {
                sessions(config)
            } else {
                match id.as_deref().map(|i| find(config, i)) {
                    Some(Ok(p)) => vec![p],
                    Some(Err(e)) => {
                        errln!("error: {e}");
                        return EXIT_USAGE;
                    }
                    None => {
                        errln!("error: give a session id or file, or --all");
                        return EXIT_USAGE;
                    }
                }
            };
            let mut worst = EXIT_OK;
            for f in files {
                let code = match audit::verify(&f) {
                    Ok(v) => {
                        let detail = match &v {
                            Verification::Ok { events } => {
                                format!("ok ({}, sealed)", plural(*events, "event", "events"))
                            }
                            Verification::Tampered { seq, reason } => {
                                format!("TAMPERED: first bad event seq {seq}: {reason}")
                            }
                            Verification::Truncated {
                                last_good_seq,
                                reason,
                            } => {
                                format!(
                                    "truncated: torn last line after {} ({reason}); a crash mid-write",
                                    seq_words(*last_good_seq)
                                )
                            }
                            Verification::Unsealed { last_seq } => {
                                format!(
                                    "unsealed: intact up to {} but no session_ended (crashed or still running)",
                                    seq_words(*last_seq)
                                )
                            }
                        };
                        let _ = writeln!(out, "{}: {detail}", f.display());
                        u8::try_from(audit::exit_code(&v)).unwrap_or(EXIT_FINDINGS)
                    }
                    Err(e) => {
                        let _ = writeln!(out, "{}: cannot verify: {e}", f.display());
                        EXIT_USAGE
                    }
                };
                // Tampering outranks everything; then unsealed; then usage.
                worst = match (worst, code) {
                    (1, _) | (_, 1) => 1,
                    (3, _) | (_, 3) => 3,
                    (a, b) => a.max(b),
                };
            }
            worst
        }
        AuditCommand::Export { id, format } => {
            let path = match find(config, id) {
                Ok(p) => p,
                Err(e) => {
                    errln!("error: {e}");
                    return EXIT_USAGE;
                }
            };
            let (events, verdict) = match audit::read_events(&path) {
                Ok(r) => r,
                Err(e) => {
                    errln!("error: {e}");
                    return EXIT_USAGE;
                }
            };
            let written = match format {
                ExportFormat::Json => serde_json::to_writer_pretty(
                    &mut out,
                    &json!({"session": SessionState::from_events(&events), "verification": verdict, "events": events}),
                )
                .map_err(std::io::Error::other)
                .and_then(|()| writeln!(out)),
                ExportFormat::Md => ward::session::markdown::write(
                    &events,
                    None,
                    Some(&super::session::verification_name(&verdict)),
                    &mut out,
                ),
            };
            if written.is_err() {
                EXIT_USAGE
            } else {
                EXIT_OK
            }
        }
    }
}

/// Where a log stops being whole, in words: `seq 22`, or the start when not
/// even the first event is complete.
fn seq_words(seq: Option<u64>) -> String {
    match seq {
        Some(n) => format!("seq {n}"),
        None => "the start (no complete event)".to_string(),
    }
}
