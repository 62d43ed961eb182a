//! `ward audit`: list, show, verify and export session logs.

use super::exit::{Error, Exit};
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use serde_json::json;

use ward::audit::{self, Verification};
use ward::config::Config;
use ward::session::SessionState;
use ward::session::describe::Timeline;

use ward::evidence::plural;

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
    /// Sessions with start, operator, runbook, environment, outcome and whether the log's hash chain is intact.
    List {
        /// The team store's sessions (every host's), not this host's files.
        #[arg(long)]
        store: bool,
    },
    /// A session's timeline, for people.
    Show {
        /// Session id (or a unique prefix), or a log file.
        id: String,
        /// Read the session from the team store (any host's).
        #[arg(long)]
        store: bool,
    },
    /// Check the logs' hash chains and safety invariants (and, with a team store configured, each local log against the store's copy). Exit 0 chain intact and sealed, 1 tampered (locally, or against the store), 3 truncated or unsealed.
    Verify {
        /// Session id, prefix or log file.
        id: Option<String>,
        /// Verify every session.
        #[arg(long, conflicts_with = "id")]
        all: bool,
        /// Verify the team store's copies instead: each session rebuilt from its rows and run through the same verifier (an edited store row is caught).
        #[arg(long)]
        store: bool,
    },
    /// Replay one session in the terminal UI, step by step.
    Replay {
        /// Session id (or a unique prefix), or a log file.
        id: String,
    },
    /// A session as Markdown (for an incident ticket) or JSON.
    Export {
        id: String,
        #[arg(long, value_enum, default_value = "md")]
        format: ExportFormat,
        /// Read the session from the team store (any host's).
        #[arg(long)]
        store: bool,
    },
}

fn sessions(config: &Config) -> Vec<PathBuf> {
    audit::session_logs(&config.sessions)
}

/// The log of session `id` (an id, a unique prefix, or a file path).
pub(super) fn find(config: &Config, id: &str) -> Result<PathBuf, Error> {
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
        )
        .into()),
        many => Err(format!(
            "`{id}` matches {} sessions; give more of the id",
            many.len()
        )
        .into()),
    }
}

/// The header of `ward audit list`.
const LIST_HEADER: [&str; 7] = [
    "session", "started", "operator", "runbook", "env", "outcome", "log",
];

/// Lays rows out in columns as wide as their widest cell (the header
/// included), two spaces apart; the last column is not padded.
pub(super) fn columns<const N: usize>(rows: &[[String; N]]) -> Vec<String> {
    use unicode_width::UnicodeWidthStr;
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.width());
        }
    }
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
                line.push_str(cell);
                if i + 1 < N {
                    line.push_str(&" ".repeat(w - cell.width() + 2));
                }
            }
            line
        })
        .collect()
}

pub fn run(config: &Config, args: &Args) -> Exit {
    let Some(command) = &args.command else {
        return super::session::viewer(config, None);
    };
    let mut out = std::io::stdout().lock();
    match command {
        AuditCommand::Replay { id } => match find(config, id) {
            Ok(path) => super::session::viewer(config, Some(path)),
            Err(e) => {
                errln!("error: {e}");
                Exit::Usage
            }
        },
        AuditCommand::List { store: true } => super::audit_store::list(config),
        AuditCommand::Show { id, store: true } => super::audit_store::show(config, id),
        AuditCommand::Verify {
            id,
            all,
            store: true,
        } => super::audit_store::verify(config, id.as_deref(), *all),
        AuditCommand::Export {
            id,
            format,
            store: true,
        } => super::audit_store::export(config, id, *format),
        AuditCommand::List { store: false } => {
            let mut rows = vec![LIST_HEADER.map(String::from)];
            for f in sessions(config) {
                let (events, verdict) = match audit::read_events(&f) {
                    Ok(r) => r,
                    Err(e) => {
                        errln!("{}: {e}", f.display());
                        continue;
                    }
                };
                let s = SessionState::from_events(&events);
                rows.push([
                    f.file_stem()
                        .and_then(|x| x.to_str())
                        .unwrap_or("")
                        .to_string(),
                    s.started_at
                        .as_deref()
                        .map(|t| t.chars().take(19).collect::<String>())
                        .unwrap_or_default(),
                    s.operator,
                    s.runbook,
                    s.environment,
                    s.outcome
                        .map_or_else(|| "running or crashed".into(), |o| o.words().to_string()),
                    super::session::verification_name(&verdict),
                ]);
            }
            for line in columns(&rows) {
                let _ = writeln!(out, "{}", line.trim_end());
            }
            Exit::Success
        }
        AuditCommand::Show { id, store: false } => {
            let path = match find(config, id) {
                Ok(p) => p,
                Err(e) => {
                    errln!("error: {e}");
                    return Exit::Usage;
                }
            };
            match audit::read_events(&path) {
                Ok((events, verdict)) => {
                    let mut timeline = Timeline::default();
                    for e in &events {
                        let _ = writeln!(out, "{} {}", e.ts, timeline.line(e));
                    }
                    let _ = writeln!(out, "log: {}", super::session::verification_name(&verdict));
                    Exit::Success
                }
                Err(e) => {
                    errln!("error: {e}");
                    Exit::Usage
                }
            }
        }
        AuditCommand::Verify {
            id,
            all,
            store: false,
        } => {
            let files = if *all {
                sessions(config)
            } else {
                match id.as_deref().map(|i| find(config, i)) {
                    Some(Ok(p)) => vec![p],
                    Some(Err(e)) => {
                        errln!("error: {e}");
                        return Exit::Usage;
                    }
                    None => {
                        errln!("error: give a session id or file, or --all");
                        return Exit::Usage;
                    }
                }
            };
            let mut worst = Exit::Success;
            // With a team store, each log is also held against the store's
            // copy (a cut or re-hashed local log disagrees with it).
            let mut against = super::audit_store::Against::open(config);
            for f in files {
                let code = match audit::read_events(&f) {
                    Ok((events, v)) => {
                        let _ = writeln!(out, "{}: {}", f.display(), verdict_words(&v));
                        let local = Exit::from(&v);
                        match against.as_mut() {
                            Some(a) => local.worst(a.check(&f, &events, &v, &mut out)),
                            None => local,
                        }
                    }
                    Err(e) => {
                        let _ = writeln!(out, "{}: cannot verify: {e}", f.display());
                        Exit::Usage
                    }
                };
                worst = worst.worst(code);
            }
            worst
        }
        AuditCommand::Export {
            id,
            format,
            store: false,
        } => {
            let path = match find(config, id) {
                Ok(p) => p,
                Err(e) => {
                    errln!("error: {e}");
                    return Exit::Usage;
                }
            };
            let (events, verdict) = match audit::read_events(&path) {
                Ok(r) => r,
                Err(e) => {
                    errln!("error: {e}");
                    return Exit::Usage;
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
                Exit::Usage
            } else {
                Exit::Success
            }
        }
    }
}

/// A verifier's verdict in words, for `ward audit verify`.
pub(super) fn verdict_words(v: &Verification) -> String {
    match v {
        Verification::Ok { events } => {
            format!(
                "chain intact ({}, sealed)",
                plural(*events, "event", "events")
            )
        }
        Verification::Tampered { seq, reason } => {
            format!("TAMPERED: first bad event seq {seq}: {reason}")
        }
        Verification::Truncated {
            last_good_seq,
            reason,
        } => format!(
            "truncated: torn last line after {} ({reason}); a crash mid-write; the chain before it is intact",
            seq_words(*last_good_seq)
        ),
        Verification::Unsealed { last_seq } => format!(
            "unsealed: chain intact up to {} but no session_ended (crashed or still running)",
            seq_words(*last_seq)
        ),
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
