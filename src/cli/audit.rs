//! `ward audit`: list, show, verify and export session logs.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};

use ward::audit::{self, Event, Verification};
use ward::config::Config;
use ward::session::SessionState;

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

pub fn verification_name(v: &Verification) -> String {
    match v {
        Verification::Ok { .. } => "ok".into(),
        Verification::Tampered { seq, .. } => format!("TAMPERED at seq {seq}"),
        Verification::Truncated { .. } => "truncated".into(),
        Verification::Unsealed { .. } => "unsealed".into(),
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
                    s.outcome.map_or("(running or crashed)", |o| o.name()),
                    verification_name(&verdict)
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
                    for e in &events {
                        let _ = writeln!(out, "{} {}", e.ts, describe(e));
                    }
                    let _ = writeln!(out, "verification: {}", verification_name(&verdict));
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
            let state = SessionState::from_events(&events);
            let written = match format {
                ExportFormat::Json => serde_json::to_writer_pretty(
                    &mut out,
                    &json!({"session": state, "verification": verdict, "events": events}),
                )
                .map_err(std::io::Error::other)
                .and_then(|()| writeln!(out)),
                ExportFormat::Md => export_md(&state, &verdict, &mut out),
            };
            if written.is_err() {
                EXIT_USAGE
            } else {
                EXIT_OK
            }
        }
    }
}

fn export_md(s: &SessionState, v: &Verification, w: &mut impl Write) -> std::io::Result<()> {
    writeln!(w, "## ward session {} — {}", s.session_id, s.runbook)?;
    writeln!(w)?;
    writeln!(
        w,
        "- started: {} by **{}** on {}",
        s.started_at.as_deref().unwrap_or("?"),
        s.operator,
        s.environment
    )?;
    writeln!(w, "- target: {}", s.target)?;
    writeln!(
        w,
        "- outcome: **{}**; audit log verification: **{}**",
        s.outcome.map_or("unsealed", |o| o.name()),
        verification_name(v)
    )?;
    if let Some(c) = &s.conclusion {
        writeln!(w, "- conclusion: {c}")?;
    }
    writeln!(w, "\n### What ran\n")?;
    for p in &s.proposals {
        let step = p.step_id.as_deref().unwrap_or("ad-hoc");
        writeln!(
            w,
            "- **{step}** ({}, {}) — {}{}",
            p.risk.map_or("?", |r| r.name()),
            p.decision.map_or("?", |d| d.name()),
            format!("{:?}", p.status).to_lowercase(),
            p.rows_seen
                .map(|r| format!(", {}", plural(r, "row", "rows")))
                .unwrap_or_default()
        )?;
        writeln!(
            w,
            "  ```sql\n  {}\n  ```",
            p.sql.trim().replace('\n', "\n  ")
        )?;
        for (op, reason) in &p.approvals {
            writeln!(w, "  - approved by **{op}**: {reason}")?;
        }
        for (op, reason) in &p.rejections {
            writeln!(w, "  - rejected by **{op}**: {reason}")?;
        }
        if !p.rules.is_empty() {
            writeln!(w, "  - policy rules: {}", p.rules.join(", "))?;
        }
        if let Some(ok) = p.verified {
            writeln!(w, "  - verify: {}", if ok { "passed" } else { "FAILED" })?;
        }
        if let Some(e) = &p.error {
            writeln!(w, "  - error: {e}")?;
        }
    }
    Ok(())
}

/// One line describing an event, for progress output and timelines.
pub fn describe(e: &Event) -> String {
    let d = &e.data;
    let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let detail = match e.kind.as_str() {
        "session_started" => format!(
            "{} on {} by {}",
            s("runbook"),
            s("environment"),
            s("operator")
        ),
        "proposed" => format!(
            "{} {}  [id {}]",
            d.get("step_id").and_then(Value::as_str).unwrap_or("adhoc"),
            first_line(&s("sql")),
            shown_id(&e.hash)
        ),
        "gated" => format!(
            "{} -> {}{}{} ({})",
            s("risk"),
            s("decision"),
            match d.get("approvers").and_then(Value::as_u64) {
                Some(n) if n > 0 => format!(" by {n}"),
                _ => String::new(),
            },
            if d.get("dry_run").and_then(Value::as_bool) == Some(true) {
                " [dry run: not executed]"
            } else {
                ""
            },
            d.get("rules").map(|r| r.to_string()).unwrap_or_default()
        ),
        "analyzed" => {
            let list = |k: &str| {
                d.get(k)
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default()
            };
            let mut out = s("risk");
            if let Some(lock) = d.get("lock").and_then(Value::as_str) {
                out.push_str(&format!(", takes {lock}"));
            }
            let findings = list("findings");
            if !findings.is_empty() {
                out.push_str(&format!(", findings: {findings}"));
            }
            if let Some(rows) = d
                .get("table_size")
                .and_then(|t| t.get("rows"))
                .and_then(Value::as_u64)
            {
                out.push_str(&format!(", largest table ~{}", plural(rows, "row", "rows")));
            }
            out
        }
        "approved" | "rejected" => format!("by {}: {}", s("operator"), s("reason")),
        "approval_refused" => format!("{} refused: {}", s("operator"), s("reason")),
        "readmitted" => {
            let changed = d.get("changed").and_then(Value::as_bool) == Some(true);
            let why = s("why");
            format!(
                "{} -> {} ({}){}{}",
                s("risk"),
                s("admit"),
                d.get("rules").map(|r| r.to_string()).unwrap_or_default(),
                if changed {
                    format!(", was {}", s("previous"))
                } else {
                    String::new()
                },
                if why.is_empty() {
                    String::new()
                } else {
                    format!(": {why}")
                }
            )
        }
        "executing" => s("mode"),
        "executed" => format!(
            "{} in {} ms",
            match d.get("rows_seen").and_then(Value::as_u64) {
                Some(n) => plural(n, "row", "rows"),
                None => "? rows".to_string(),
            },
            d.get("duration_ms").unwrap_or(&Value::Null)
        ),
        "summarized" => format!(
            "{} ({} tokens)",
            s("summarizer"),
            d.get("tokens").unwrap_or(&Value::Null)
        ),
        "verified" => format!(
            "{} ({})",
            if d.get("ok").and_then(Value::as_bool) == Some(true) {
                "ok"
            } else {
                "FAILED"
            },
            s("detail")
        ),
        "failed" => format!("{}: {}", s("kind"), s("message")),
        "agent_error" => s("message"),
        "agent_usage" => format!(
            "{} tokens this turn, {} in all",
            d.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0)
                + d.get("completion_tokens")
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
            d.get("total").unwrap_or(&Value::Null)
        ),
        "asked" => s("question"),
        "answered" => format!("by {}: {}", s("operator"), s("text")),
        "standing_approved" => format!(
            "by {} for the rest of the session: {}",
            s("operator"),
            s("reason")
        ),
        "revoked" => format!("standing approval withdrawn by {}", s("operator")),
        "resumed" => format!("by {}", s("operator")),
        "concluded" => s("text"),
        "session_ended" => s("outcome"),
        _ => String::new(),
    };
    format!("[{:>3}] {:<15} {detail}", e.seq, e.kind)
}

/// A proposal's id as ward shows it and `ward approve` takes it: the first
/// 12 characters of its `proposed` event's hash (approve needs 8 or more).
pub fn shown_id(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("").trim();
    if line.chars().count() > 70 {
        format!("{}...", line.chars().take(70).collect::<String>())
    } else {
        line.to_string()
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
