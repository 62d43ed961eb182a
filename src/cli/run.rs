//! `ward run`: a session against a target, headless for CI (the TUI comes
//! later). Progress lines go to stderr, the report to stdout.

use std::io::Write;
use std::time::Duration;

use clap::ValueEnum;
use serde_json::{Value, json};

use ward::config::Config;
use ward::contract::{self, Contract};
use ward::evidence::EvidenceConfig;
use ward::session::runner::{self, Outcome, RunConfig};
use ward::session::{SessionState, Status};

use super::step::{EXIT_DENIED, EXIT_NEEDS_APPROVAL};
use super::{EXIT_FINDINGS, EXIT_OK, EXIT_USAGE};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Report {
    Md,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Runbook id (or use --alert).
    #[arg(required_unless_present = "alert")]
    pub runbook: Option<String>,
    /// Pick the runbook whose `triggers` name this alert.
    #[arg(long, conflicts_with = "runbook")]
    pub alert: Option<String>,
    /// Target name from ward.yaml.
    #[arg(long, conflicts_with = "url")]
    pub target: Option<String>,
    /// Connection URL (postgres://... or sqlite:PATH).
    #[arg(long, env = "WARD_URL", hide_env_values = true)]
    pub url: Option<String>,
    /// Environment of a --url target.
    #[arg(long = "env", default_value = "prod")]
    pub environment: String,
    /// Input values, name=value (repeatable).
    #[arg(long = "input", value_name = "NAME=VALUE")]
    pub inputs: Vec<String>,
    /// The planner: `offline` (built in; the only one available so far).
    #[arg(long, default_value = "offline")]
    pub agent: String,
    /// Run only read-only statements (the database enforces it too); record
    /// every other proposal with the verdict it would get.
    #[arg(long)]
    pub dry_run: bool,
    /// No terminal UI: progress on stderr, report on stdout.
    #[arg(long)]
    pub headless: bool,
    #[arg(long, value_enum, default_value = "md")]
    pub report: Report,
    /// Wait this many seconds for approvals instead of stopping.
    #[arg(long, value_name = "SECS")]
    pub wait_for_approval: Option<u64>,
    /// Run in prod even though policy files have uncommitted changes (logged).
    #[arg(long)]
    pub allow_dirty: bool,
}

fn pick_runbook<'a>(contracts: &'a [Contract], args: &Args) -> Result<&'a Contract, String> {
    if let Some(id) = &args.runbook {
        return contracts.iter().find(|c| c.id() == id).ok_or_else(|| {
            let known: Vec<&str> = contracts.iter().map(Contract::id).collect();
            format!(
                "no runbook `{id}` (known: {}); `ward check` reports runbooks that do not load",
                known.join(", ")
            )
        });
    }
    let alert = args.alert.as_deref().unwrap_or_default();
    let mut hits: Vec<&Contract> = contracts
        .iter()
        .filter(|c| c.spec.triggers.iter().any(|t| t == alert))
        .collect();
    hits.sort_by(|a, b| a.id().cmp(b.id()));
    match hits.as_slice() {
        [one] => Ok(one),
        [] => Err(format!(
            "no runbook is triggered by alert `{alert}`; add it to a runbook's `triggers`"
        )),
        many => Err(format!(
            "alert `{alert}` matches several runbooks: {}; name one instead of --alert",
            many.iter().map(|c| c.id()).collect::<Vec<_>>().join(", ")
        )),
    }
}

fn session_id() -> String {
    let now = chrono::Utc::now();
    format!(
        "{}-{:06x}",
        now.format("%Y%m%dT%H%M%SZ"),
        (std::process::id() ^ now.timestamp_subsec_nanos()) & 0xFF_FFFF
    )
}

pub fn run(config: &Config, args: &Args) -> u8 {
    let fail = |msg: String| {
        eprintln!("error: {msg}");
        EXIT_USAGE
    };
    if args.agent != "offline" {
        return fail(format!(
            "agent `{}` is not available yet; use --agent offline",
            args.agent
        ));
    }
    if !args.headless {
        eprintln!("note: the terminal UI is not built yet; running headless");
    }
    let target = match super::resolve_target(
        config,
        args.target.as_deref(),
        args.url.as_deref(),
        &args.environment,
    ) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let analyzer = config.runbook_analyzer();
    let (contracts, _) = contract::load_dir(&config.runbooks, &analyzer);
    let c = match pick_runbook(&contracts, args) {
        Ok(c) => c.clone(),
        Err(e) => return fail(e),
    };
    let inputs = match ward::exec::step::parse_inputs(&args.inputs) {
        Ok(i) => i,
        Err(e) => return fail(e),
    };
    let policy = match config.active_policy() {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let provenance = ward::audit::provenance(&config.root, &[c.path.clone(), policy.path.clone()]);
    if target.environment == "prod"
        && provenance.get("policies_dirty").and_then(Value::as_bool) == Some(true)
        && !args.allow_dirty
    {
        return fail("policy files have uncommitted changes; commit them, or pass --allow-dirty to run in prod anyway (it is logged)".into());
    }
    let id = session_id();
    let log_path = config.sessions.join(format!("{id}.jsonl"));
    let cfg = RunConfig {
        session_id: id.clone(),
        log_path: log_path.clone(),
        contract: c,
        target,
        inputs,
        policy,
        analyzer,
        evidence: EvidenceConfig {
            script_root: config.runbooks.clone(),
            script_cwd: config.root.clone(),
            ..EvidenceConfig::default()
        },
        dry_run: args.dry_run,
        operator: ward::audit::operator(),
        provenance,
        allow_dirty: args.allow_dirty,
        wait_for_approval: args.wait_for_approval.map(Duration::from_secs),
        ops_dir: Some(config.sessions.join(format!("{id}.ops"))),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    let result = runtime.block_on(async {
        let (_ops_tx, ops_rx) = tokio::sync::mpsc::unbounded_channel();
        let (ev_tx, mut ev_rx) = tokio::sync::mpsc::unbounded_channel::<ward::audit::Event>();
        let printer = tokio::spawn(async move {
            while let Some(e) = ev_rx.recv().await {
                eprintln!("ward: {}", super::audit::describe(&e));
            }
        });
        let r = runner::run(cfg, ops_rx, Some(ev_tx)).await;
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
    let written = match args.report {
        Report::Json => serde_json::to_writer_pretty(
            &mut out,
            &json_report(&state, outcome, &log_path.display().to_string()),
        )
        .map_err(std::io::Error::other)
        .and_then(|()| writeln!(out)),
        Report::Md => write_md(&state, outcome, &log_path.display().to_string(), &mut out),
    };
    if let Err(e) = written {
        eprintln!("error: cannot write the report: {e}");
    }
    match outcome {
        Outcome::Concluded => EXIT_OK,
        Outcome::AwaitingApproval => EXIT_NEEDS_APPROVAL,
        Outcome::Denied => EXIT_DENIED,
        Outcome::Failed | Outcome::Cancelled => EXIT_FINDINGS,
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
