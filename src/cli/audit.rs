//! `ward audit`: list, show, verify and export session logs.

use super::exit::{Error, Exit};
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};

use ward::audit::{self, Event, Verification};
use ward::config::Config;
use ward::session::SessionState;

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
    List,
    /// A session's timeline, for people.
    Show {
        /// Session id (or a unique prefix), or a log file.
        id: String,
    },
    /// Check the logs' hash chains and safety invariants. Exit 0 chain intact and sealed, 1 tampered, 3 truncated or unsealed.
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

/// What the log's own check found, in words that cannot be read as "the
/// fix was verified": that is a proposal's `verify` query, shown elsewhere.
pub fn verification_name(v: &Verification) -> String {
    match v {
        Verification::Ok { .. } => "chain intact, sealed".into(),
        Verification::Tampered { seq, .. } => format!("TAMPERED at seq {seq}"),
        Verification::Truncated { .. } => "torn last line (truncated)".into(),
        Verification::Unsealed { .. } => "chain intact, unsealed".into(),
    }
}

/// The header of `ward audit list`.
const LIST_HEADER: [&str; 7] = [
    "session", "started", "operator", "runbook", "env", "outcome", "log",
];

/// Lays rows out in columns as wide as their widest cell (the header
/// included), two spaces apart; the last column is not padded.
fn columns<const N: usize>(rows: &[[String; N]]) -> Vec<String> {
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
        return super::session::viewer(config);
    };
    let mut out = std::io::stdout().lock();
    match command {
        AuditCommand::List => {
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
                    s.outcome.unwrap_or_else(|| "running or crashed".into()),
                    verification_name(&verdict),
                ]);
            }
            for line in columns(&rows) {
                let _ = writeln!(out, "{}", line.trim_end());
            }
            Exit::Success
        }
        AuditCommand::Show { id } => {
            let path = match find(config, id) {
                Ok(p) => p,
                Err(e) => {
                    errln!("error: {e}");
                    return Exit::Usage;
                }
            };
            match audit::read_events(&path) {
                Ok((events, verdict)) => {
                    for e in &events {
                        let _ = writeln!(out, "{} {}", e.ts, describe(e));
                    }
                    let _ = writeln!(out, "log: {}", verification_name(&verdict));
                    Exit::Success
                }
                Err(e) => {
                    errln!("error: {e}");
                    Exit::Usage
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
                        return Exit::Usage;
                    }
                    None => {
                        errln!("error: give a session id or file, or --all");
                        return Exit::Usage;
                    }
                }
            };
            let mut worst = Exit::Success;
            for f in files {
                let code = match audit::verify(&f) {
                    Ok(v) => {
                        let detail = match &v {
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
                            } => {
                                format!(
                                    "truncated: torn last line after {} ({reason}); a crash mid-write; the chain before it is intact",
                                    seq_words(*last_good_seq)
                                )
                            }
                            Verification::Unsealed { last_seq } => {
                                format!(
                                    "unsealed: chain intact up to {} but no session_ended (crashed or still running)",
                                    seq_words(*last_seq)
                                )
                            }
                        };
                        let _ = writeln!(out, "{}: {detail}", f.display());
                        Exit::from(&v)
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
        AuditCommand::Export { id, format } => {
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
                Exit::Usage
            } else {
                Exit::Success
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
        s.outcome.as_deref().unwrap_or("unsealed"),
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
            p.risk.as_deref().unwrap_or("?"),
            p.decision.as_deref().unwrap_or("?"),
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
            ward::text::clip_chars(&ward::text::first_line(&s("sql")), 70),
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

/// Where a log stops being whole, in words: `seq 22`, or the start when not
/// even the first event is complete.
fn seq_words(seq: Option<u64>) -> String {
    match seq {
        Some(n) => format!("seq {n}"),
        None => "the start (no complete event)".to_string(),
    }
}
