//! `ward step`: run one runbook step against a target and print its
//! evidence — a debugging aid. It is a session like `ward run` (a logged,
//! hash-chained session under `.ward/sessions`, table sizes looked up, the
//! same admission), whose only proposal is the step: it runs only what
//! admission lets run without a human; anything that needs one goes through
//! `ward run`.

use super::exit::{Exit, usage};
use std::collections::BTreeMap;
use std::io::Write;

use clap::ValueEnum;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use ward::agent::{Agent, AgentFuture, AgentView, Proposal, Turn};
use ward::config::Config;
use ward::contract;
use ward::exec::step;
use ward::session::runner::{self, Outcome};
use ward::session::{EventData, SessionState};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Runbook id.
    pub runbook: String,
    /// Step id.
    pub step: String,
    /// Target name from ward.yaml.
    #[arg(long, conflicts_with = "url")]
    pub target: Option<String>,
    /// Connection URL (postgres://... or sqlite:PATH); prefer --target with url_env.
    #[arg(long, env = "WARD_URL", hide_env_values = true)]
    pub url: Option<String>,
    /// Environment of a --url target (ward.yaml targets carry their own).
    #[arg(long = "env", default_value = "prod")]
    pub environment: String,
    /// Input values, name=value (repeatable).
    #[arg(long = "input", value_name = "NAME=VALUE")]
    pub inputs: Vec<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Run in prod even though policy files have uncommitted changes (logged).
    #[arg(long)]
    pub allow_dirty: bool,
    /// Run in prod connected as a role that can act outside the database's
    /// privileges with no `roles.read` configured (logged).
    #[arg(long)]
    pub allow_superuser: bool,
}

/// The agent of a `ward step` session: proposes the one step, then
/// concludes.
struct OneStep {
    step: String,
    proposed: bool,
}

impl Agent for OneStep {
    fn describe(&self) -> Value {
        json!({"provider": "step", "step": self.step})
    }

    fn next<'a>(&'a mut self, _view: &'a AgentView<'a>) -> AgentFuture<'a> {
        let proposal = if self.proposed {
            Proposal::Conclude {
                diagnosis: format!("`ward step` proposed `{}`; see its evidence", self.step),
                recommendation: None,
            }
        } else {
            self.proposed = true;
            Proposal::Step {
                step_id: self.step.clone(),
                inputs: BTreeMap::new(),
                rationale: Some("ward step".into()),
            }
        };
        Box::pin(async move { Ok(Turn::plain(proposal)) })
    }
}

pub fn run(config: &Config, args: &Args) -> Exit {
    let target = match super::resolve_target(
        config,
        args.target.as_deref(),
        args.url.as_deref(),
        &args.environment,
    ) {
        Ok(t) => t,
        Err(e) => return usage(e),
    };
    let analyzer = config.runbook_analyzer();
    let (contracts, problems) = contract::load_dir(&config.runbooks, &analyzer);
    let Some(c) = contracts.iter().find(|c| c.id() == args.runbook) else {
        let why = problems.iter().find(|p| {
            p.location
                .file
                .file_stem()
                .is_some_and(|s| s == args.runbook.as_str())
        });
        return usage(match why {
            Some(p) => format!("runbook `{}` does not load: {p}", args.runbook),
            None => format!(
                "no runbook `{}` in {}; `ward check` lists problems",
                args.runbook,
                config.runbooks.display()
            ),
        });
    };
    let inputs = match step::parse_inputs(&args.inputs) {
        Ok(i) => i,
        Err(e) => return usage(e),
    };
    // A step that does not resolve is a usage error, before any session.
    if let Err(e) = step::resolve(c, &args.step, &inputs, target.engine, &analyzer) {
        return usage(e.to_string());
    }
    let mut prepared = match super::session::prepare(
        config,
        super::session::Session {
            contract: c.clone(),
            target,
            inputs,
            agent: Some("offline"),
            dry_run: false,
            allow_dirty: args.allow_dirty,
            allow_superuser: args.allow_superuser,
            wait_for_approval: None,
            runbooks: Vec::new(),
            follow: ward::session::runner::Follow::Never,
            loud: true,
        },
        analyzer,
    ) {
        Ok(p) => p,
        Err(e) => return usage(e),
    };
    prepared.agent = Box::new(OneStep {
        step: args.step.clone(),
        proposed: false,
    });
    // `ward step` runs exactly the step it names: no recheck after it.
    prepared.cfg.contract.recheck = None;
    let log = prepared.cfg.log_path.clone();
    errln!(
        "running {}/{} on {} ({}), session log {}...",
        c.id(),
        args.step,
        prepared.cfg.target.name,
        prepared.cfg.target.environment,
        log.display()
    );
    let runtime = match super::session::runtime() {
        Ok(r) => r,
        Err(e) => return usage(e),
    };
    let result = runtime.block_on(async move {
        let (_ops_tx, ops_rx) = mpsc::unbounded_channel();
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<ward::audit::Event>();
        let collector = tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some(e) = ev_rx.recv().await {
                seen.push(e);
            }
            seen
        });
        let r = runner::run(prepared.cfg, prepared.agent, ops_rx, Some(ev_tx)).await;
        (r, collector.await.unwrap_or_default())
    });
    let (state, outcome, events) = match result {
        (Ok((state, outcome)), events) => (state, outcome, events),
        (Err(e), _) => {
            errln!("error: {e}");
            return Exit::Failed;
        }
    };
    report(args, c.id(), &state, outcome, &events, &log)
}

/// Prints the step's evidence, or why it did not run; the exit code.
fn report(
    args: &Args,
    runbook: &str,
    state: &SessionState,
    outcome: Outcome,
    events: &[ward::audit::Event],
    log: &std::path::Path,
) -> Exit {
    let Some(p) = state.proposals.first() else {
        // No proposal: the session could not start (connection, identity).
        if let Some(d) = &state.unreachable {
            errln!(
                "error: cannot connect: {} ({}){}\nlikely cause: {}\ncheck next:\n{}\n(session log {})",
                d.what,
                d.failure,
                d.sqlstate
                    .as_deref()
                    .map(|c| format!(", SQLSTATE {c}"))
                    .unwrap_or_default(),
                d.cause,
                d.checks
                    .iter()
                    .enumerate()
                    .map(|(n, c)| format!("  {}. {c}", n + 1))
                    .collect::<Vec<_>>()
                    .join("\n"),
                log.display()
            );
            return Exit::Unreachable;
        }
        let why = events
            .iter()
            .filter_map(|e| match EventData::from_parts(&e.kind, &e.data) {
                Ok(EventData::Failed(f)) => Some(f.message),
                // e.g. a step left out for the server's version
                Ok(EventData::AgentError(a)) if a.refused => Some(a.message),
                _ => None,
            })
            .next_back()
            .unwrap_or_else(|| format!("the session ended {}", outcome.words()));
        errln!("error: {why} (session log {})", log.display());
        return Exit::Usage;
    };
    let rules = p.rules.join(", ");
    match outcome {
        Outcome::AwaitingApproval => {
            errln!(
                "not run: `{}` is {} and needs {} in {} (rules: {rules}){}; `ward step` runs only what needs no approval: use `ward run` (session log {})",
                args.step,
                p.risk.map_or("?", |r| r.name()),
                ward::evidence::plural(u64::from(p.approvers_needed), "approval", "approvals"),
                state.environment,
                p.message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default(),
                log.display()
            );
            return Exit::NeedsApproval;
        }
        Outcome::Denied => {
            errln!(
                "not run: denied in {} (rules: {rules}): {} (session log {})",
                state.environment,
                p.message.as_deref().unwrap_or("denied by policy"),
                log.display()
            );
            return Exit::Denied;
        }
        _ => {}
    }
    let data = |kind: &str| {
        events
            .iter()
            .find(|e| {
                e.kind == kind
                    && e.data.get("proposal").and_then(Value::as_str) == Some(p.id.as_str())
            })
            .map(|e| e.data.clone())
    };
    let executed = data("executed");
    let summarized = data("summarized");
    let failed = data("failed");
    let get = |v: &Option<Value>, k: &str| {
        v.as_ref()
            .and_then(|v| v.get(k))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let result = json!({
        "runbook": runbook,
        "step_id": args.step,
        "session": state.session_id,
        "log": log.display().to_string(),
        "rows_seen": get(&executed, "rows_seen"),
        "rows_kept": get(&executed, "rows_kept"),
        "capped": get(&executed, "capped"),
        "duration_ms": get(&executed, "duration_ms"),
        "sha256": get(&executed, "sha256"),
        "role": p.role,
        "evidence": summarized.as_ref().map(|s| json!({
            "summarizer": s.get("summarizer"),
            "summary": s.get("summary"),
            "facts": s.get("facts"),
            "tokens": s.get("tokens"),
            "truncated": s.get("truncated"),
            "warnings": s.get("warnings"),
        })),
        "error": failed.as_ref().map(|f| json!({"kind": f.get("kind"), "message": f.get("message")})),
    });
    let mut out = std::io::stdout().lock();
    let written = match args.format {
        Format::Json => serde_json::to_writer_pretty(&mut out, &result)
            .map_err(std::io::Error::other)
            .and_then(|()| writeln!(out)),
        Format::Text => write_text(&result, &mut out),
    };
    if let Err(e) = written {
        errln!("error: cannot write: {e}");
        return Exit::Usage;
    }
    if failed.is_some() || outcome != Outcome::Concluded {
        Exit::Failed
    } else {
        Exit::Success
    }
}

fn write_text(r: &Value, w: &mut impl Write) -> std::io::Result<()> {
    let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    if let Some(e) = r.get("error").filter(|e| !e.is_null()) {
        writeln!(
            w,
            "{}/{} failed ({}): {}",
            s("runbook"),
            s("step_id"),
            e.get("kind").and_then(Value::as_str).unwrap_or(""),
            e.get("message").and_then(Value::as_str).unwrap_or("")
        )?;
        return Ok(());
    }
    let rows = r.get("rows_seen").and_then(Value::as_u64).unwrap_or(0);
    let sha = s("sha256");
    writeln!(
        w,
        "{}/{}: {} row{}{} in {} ms{}, sha256 {}",
        s("runbook"),
        s("step_id"),
        rows,
        if rows == 1 { "" } else { "s" },
        if r.get("capped").and_then(Value::as_bool) == Some(true) {
            " (capped)"
        } else {
            ""
        },
        r.get("duration_ms").and_then(Value::as_u64).unwrap_or(0),
        r.get("role")
            .and_then(Value::as_str)
            .map(|role| format!(" as {role}"))
            .unwrap_or_default(),
        &sha[..sha.len().min(16)]
    )?;
    if let Some(ev) = r.get("evidence").filter(|e| !e.is_null()) {
        for warning in ev
            .get("warnings")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            writeln!(w, "warning: {warning}")?;
        }
        writeln!(
            w,
            "{}",
            ev.get("summary")
                .and_then(Value::as_str)
                .unwrap_or("")
                .trim_end()
        )?;
        writeln!(
            w,
            "facts: {}",
            ev.get("facts").cloned().unwrap_or(Value::Null)
        )?;
    }
    writeln!(w, "session log: {}", s("log"))?;
    Ok(())
}
