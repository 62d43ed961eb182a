//! What `ward run`, `ward resume` and `ward demo` share: choosing the agent,
//! running a session headless (progress on stderr, report on stdout), the
//! reports, and the exit code of an outcome.

use std::future::Future;
use std::io::Write;
use std::path::Path;

use clap::ValueEnum;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use ward::agent::Agent;
use ward::agent::offline::Offline;
use ward::agent::replay::{Replay, Transcript};
use ward::audit::Event;
use ward::config::Config;
use ward::session::runner::{Op, Outcome, RunError};
use ward::session::{SessionState, Status};

use super::step::{EXIT_DENIED, EXIT_NEEDS_APPROVAL};
use super::{EXIT_FINDINGS, EXIT_OK};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Report {
    Md,
    Json,
}

/// The agent named by `--agent` (or ward.yaml's `agent`, else offline).
pub fn agent(config: &Config, flag: Option<&str>) -> Result<Box<dyn Agent>, String> {
    let configured = config.spec.agent.as_ref().map(|a| a.provider.as_str());
    let name = flag.or(configured).unwrap_or("offline");
    if name == "offline" {
        return Ok(Box::new(Offline));
    }
    if let Some(file) = name.strip_prefix("replay:") {
        let path = config.root.join(file);
        let t = Transcript::load(&path)?;
        return Ok(Box::new(Replay::new(t, file)));
    }
    if name == "openai" {
        return openai(config);
    }
    Err(format!(
        "unknown agent `{name}`; use offline, replay:FILE or openai"
    ))
}

fn openai(_config: &Config) -> Result<Box<dyn Agent>, String> {
    Err("the openai agent is not built into this version yet; use --agent offline".into())
}

/// The async runtime of a command.
pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// Runs a session with no front end that can approve: progress lines on
/// stderr, the report on stdout, the outcome as the exit code.
pub fn headless<F, Fut>(report: Report, log: &Path, session: F) -> u8
where
    F: FnOnce(mpsc::UnboundedReceiver<Op>, Option<mpsc::UnboundedSender<Event>>) -> Fut,
    Fut: Future<Output = Result<(SessionState, Outcome), RunError>>,
{
    let runtime = match runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return super::EXIT_USAGE;
        }
    };
    let result = runtime.block_on(async {
        let (_ops_tx, ops_rx) = mpsc::unbounded_channel();
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<Event>();
        let printer = tokio::spawn(async move {
            while let Some(e) = ev_rx.recv().await {
                eprintln!("ward: {}", super::audit::describe(&e));
            }
        });
        let r = session(ops_rx, Some(ev_tx)).await;
        let _ = printer.await;
        r
    });
    let (state, outcome) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_FINDINGS;
        }
    };
    let mut out = std::io::stdout().lock();
    if let Err(e) = write_report(report, &state, outcome, log, &mut out) {
        eprintln!("error: cannot write the report: {e}");
    }
    exit_code(outcome)
}

pub fn exit_code(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Concluded => EXIT_OK,
        Outcome::AwaitingApproval => EXIT_NEEDS_APPROVAL,
        Outcome::Denied => EXIT_DENIED,
        Outcome::Failed | Outcome::Cancelled => EXIT_FINDINGS,
    }
}

pub fn write_report(
    report: Report,
    state: &SessionState,
    outcome: Outcome,
    log: &Path,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let log = log.display().to_string();
    match report {
        Report::Json => {
            serde_json::to_writer_pretty(&mut *out, &json_report(state, outcome, &log))
                .map_err(std::io::Error::other)?;
            writeln!(out)
        }
        Report::Md => write_md(state, outcome, &log, out),
    }
}

fn status_name(s: Status) -> &'static str {
    match s {
        Status::Proposed => "proposed",
        Status::AwaitingApproval => "awaiting_approval",
        Status::Ready => "ready",
        Status::Rejected => "rejected",
        Status::Denied => "denied",
        Status::Running => "running",
        Status::Done => "done",
        Status::Failed => "failed",
        Status::DryRun => "dry_run",
    }
}

pub fn json_report(state: &SessionState, outcome: Outcome, log: &str) -> Value {
    let steps: Vec<Value> = state
        .proposals
        .iter()
        .map(|p| {
            json!({
                "proposal": p.id,
                "step_id": p.step_id,
                "sql": p.sql,
                "status": status_name(p.status),
                "risk": p.risk,
                "decision": p.decision,
                "approvers": p.approvers_needed,
                "rules": p.rules,
                "rows_seen": p.rows_seen,
                "summary_bytes": p.summary_bytes,
                "verified": p.verified,
                "error": p.error,
            })
        })
        .collect();
    json!({
        "session_id": state.session_id,
        "log": log,
        "runbook": state.runbook,
        "environment": state.environment,
        "dry_run": state.dry_run,
        "outcome": outcome.name(),
        "conclusion": state.conclusion,
        "steps": steps,
    })
}

fn write_md(
    state: &SessionState,
    outcome: Outcome,
    log: &str,
    w: &mut impl Write,
) -> std::io::Result<()> {
    writeln!(w, "# ward session {}", state.session_id)?;
    writeln!(w)?;
    writeln!(w, "- runbook: `{}`", state.runbook)?;
    writeln!(
        w,
        "- environment: {}{}",
        state.environment,
        if state.dry_run { " (dry run)" } else { "" }
    )?;
    writeln!(w, "- operator: {}", state.operator)?;
    writeln!(w, "- outcome: **{}**", outcome.name())?;
    writeln!(w, "- log: `{log}`")?;
    if let Some(c) = &state.conclusion {
        writeln!(w, "\n## Conclusion\n\n{c}")?;
    }
    writeln!(w, "\n## Steps\n")?;
    writeln!(
        w,
        "| step | status | risk | decision | rules | rows | summary bytes | verified |"
    )?;
    writeln!(w, "|---|---|---|---|---|---:|---:|---|")?;
    for p in &state.proposals {
        writeln!(
            w,
            "| {} | {} | {} | {}{} | {} | {} | {} | {} |",
            p.step_id.as_deref().unwrap_or("adhoc"),
            status_name(p.status),
            p.risk.as_deref().unwrap_or(""),
            p.decision.as_deref().unwrap_or(""),
            if p.approvers_needed > 0 {
                format!(" ({})", p.approvers_needed)
            } else {
                String::new()
            },
            p.rules.join(", "),
            p.rows_seen.map(|r| r.to_string()).unwrap_or_default(),
            p.summary_bytes.map(|r| r.to_string()).unwrap_or_default(),
            p.verified.map(|v| v.to_string()).unwrap_or_default()
        )?;
    }
    Ok(())
}
