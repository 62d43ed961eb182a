//! `ward step`: run one runbook step against a target and print its
//! evidence — a debugging aid. It runs only what the policy allows without
//! approval; anything that needs a human goes through a session.

use std::io::Write;

use chrono::Utc;
use clap::ValueEnum;

use ward::config::Config;
use ward::contract;
use ward::exec::step::{self, StepResult};
use ward::exec::{Executor, Mode};
use ward::gate::{self, GateInput};
use ward::policy::Decision;

use super::{EXIT_FINDINGS, EXIT_OK, EXIT_USAGE};

/// A step that needs approval.
pub const EXIT_NEEDS_APPROVAL: u8 = 3;
/// A step the policy denies.
pub const EXIT_DENIED: u8 = 4;

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
}

pub fn run(config: &Config, args: &Args) -> u8 {
    let fail = |msg: String| {
        eprintln!("error: {msg}");
        EXIT_USAGE
    };
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
    let (contracts, problems) = contract::load_dir(&config.runbooks, &analyzer);
    let Some(c) = contracts.iter().find(|c| c.id() == args.runbook) else {
        let why = problems.iter().find(|p| {
            p.location
                .file
                .file_stem()
                .is_some_and(|s| s == args.runbook.as_str())
        });
        return fail(match why {
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
        Err(e) => return fail(e),
    };
    let resolved = match step::resolve(c, &args.step, &inputs, target.engine, &analyzer) {
        Ok(r) => r,
        Err(e) => return fail(e.to_string()),
    };
    let policy = match config.active_policy() {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let verdict = gate::decide(
        &policy,
        &GateInput {
            analysis: &resolved.analysis,
            declared_risk: c.step(&args.step).and_then(|s| s.spec.risk),
            environment: &target.environment,
            runbook: Some(c.id()),
            step_kind: Some(resolved.kind.name()),
            table_size: None,
            now: Utc::now(),
        },
    );
    match &verdict.decision {
        Decision::Allow => {}
        Decision::Approve { approvers, .. } => {
            eprintln!(
                "not run: `{}` is {} and policy `{}` needs {approvers} approval(s) in {} (rules: {}); `ward step` runs only what needs no approval",
                args.step,
                verdict.risk,
                verdict.policy,
                target.environment,
                verdict
                    .rules
                    .iter()
                    .map(|m| m.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return EXIT_NEEDS_APPROVAL;
        }
        Decision::Deny => {
            eprintln!(
                "not run: policy `{}` denies `{}` in {}",
                verdict.policy, args.step, target.environment
            );
            return EXIT_DENIED;
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    let session = format!("step-{}", std::process::id());
    let evidence = config.evidence_config();
    eprintln!(
        "running {}/{} on {} ({})...",
        c.id(),
        args.step,
        target.name,
        target.environment
    );
    let result: Result<StepResult, String> = runtime.block_on(async {
        let mut ex = Executor::connect(&target, &session, resolved.mode == Mode::ReadOnly)
            .await
            .map_err(|e| e.to_string())?;
        Ok(step::execute(&mut ex, &resolved, &evidence).await)
    });
    let result = match result {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let mut out = std::io::stdout().lock();
    let written = match args.format {
        Format::Json => serde_json::to_writer_pretty(&mut out, &result)
            .map_err(std::io::Error::other)
            .and_then(|()| writeln!(out)),
        Format::Text => write_text(&result, &mut out),
    };
    if let Err(e) = written {
        return fail(format!("cannot write: {e}"));
    }
    if result.error.is_some() {
        EXIT_FINDINGS
    } else {
        EXIT_OK
    }
}

fn write_text(r: &StepResult, w: &mut impl Write) -> std::io::Result<()> {
    if let Some(e) = &r.error {
        writeln!(
            w,
            "{}/{} failed ({}): {}",
            r.runbook, r.step_id, e.kind, e.message
        )?;
        return Ok(());
    }
    writeln!(
        w,
        "{}/{}: {} row{}{} in {} ms, sha256 {}",
        r.runbook,
        r.step_id,
        r.rows_seen,
        if r.rows_seen == 1 { "" } else { "s" },
        if r.capped { " (capped)" } else { "" },
        r.duration_ms,
        &r.sha256[..r.sha256.len().min(16)]
    )?;
    if let Some(ev) = &r.evidence {
        for warning in &ev.warnings {
            writeln!(w, "warning: {warning}")?;
        }
        writeln!(w, "{}", ev.summary.trim_end())?;
        writeln!(w, "facts: {}", serde_json::Value::Object(ev.facts.clone()))?;
    }
    Ok(())
}
