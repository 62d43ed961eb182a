//! `ward run`: a session against a target, headless for CI (the TUI comes
//! later). Progress lines go to stderr, the report to stdout.

use super::exit::{Error, Exit, usage};
use std::time::Duration;

use ward::config::Config;
use ward::contract::{self, Contract};
use ward::session::runner;

use super::session::Report;

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
    /// Who proposes: `offline` (the built-in deterministic planner),
    /// `replay:FILE` (a scripted transcript) or `openai` (the model set in
    /// ward.yaml). Default: ward.yaml's `agent`, else offline.
    #[arg(long, value_name = "AGENT")]
    pub agent: Option<String>,
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
    /// Run in prod connected as a role that can act outside the database's
    /// privileges (a superuser, ...) with no `roles.read` configured
    /// (logged; policies see it as `connected_as_superuser`).
    #[arg(long)]
    pub allow_superuser: bool,
    /// When the conclusion names a next runbook (`next:`), continue into
    /// it in the same session log (headless; the TUI asks for a key).
    #[arg(long)]
    pub follow: bool,
    /// Another live session of the team on the same target (the team
    /// store knows) that you acknowledge starting beside (its id or a
    /// unique prefix; repeatable). Required for each one where the policy
    /// says `concurrent_sessions: acknowledge`; recorded in the log.
    #[arg(long, value_name = "SESSION_ID")]
    pub acknowledge: Vec<String>,
    /// Hand-offs one session makes at most with --follow.
    #[arg(long, value_name = "N", default_value_t = runner::FOLLOW_DEPTH, requires = "follow")]
    pub follow_depth: u32,
}

fn pick_runbook<'a>(contracts: &'a [Contract], args: &Args) -> Result<&'a Contract, Error> {
    if let Some(id) = &args.runbook {
        return contracts.iter().find(|c| c.id() == id).ok_or_else(|| {
            let known: Vec<&str> = contracts.iter().map(Contract::id).collect();
            Error::from(format!(
                "no runbook `{id}` (known: {}); `ward check` reports runbooks that do not load",
                known.join(", ")
            ))
        });
    }
    let alert = args.alert.as_deref().unwrap_or_default();
    match contract::triggered_by(contracts, alert).as_slice() {
        [one] => Ok(one),
        [] => Err(format!(
            "no runbook is triggered by alert `{alert}`; add it to a runbook's `triggers`"
        )
        .into()),
        many => Err(format!(
            "alert `{alert}` matches several runbooks: {}; name one instead of --alert",
            many.iter().map(|c| c.id()).collect::<Vec<_>>().join(", ")
        )
        .into()),
    }
}

/// Whether the session runs in the terminal UI.
fn interactive_of(args: &Args) -> bool {
    !args.headless
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
    let (contracts, _) = contract::load_dir(&config.runbooks, &analyzer);
    let c = match pick_runbook(&contracts, args) {
        Ok(c) => c.clone(),
        Err(e) => return usage(e),
    };
    let follow = match (interactive_of(args), args.follow) {
        // The person at the terminal continues with a key.
        (true, _) => runner::Follow::Ask {
            depth: args.follow_depth,
        },
        (false, true) => runner::Follow::Auto {
            depth: args.follow_depth,
        },
        (false, false) => runner::Follow::Never,
    };
    let inputs = match ward::exec::step::parse_inputs(&args.inputs) {
        Ok(i) => i,
        Err(e) => return usage(e),
    };
    let interactive = interactive_of(args);
    let wait = if interactive {
        // The person at the terminal approves; the session waits for them.
        Some(super::session::INTERACTIVE_WAIT)
    } else {
        args.wait_for_approval.map(Duration::from_secs)
    };
    if let Some(spec) = &config.spec.store
        && let Err(e) = spec.url()
    {
        // Each operator connects to the team store as themselves.
        return usage(e.to_string());
    }
    let mut prepared = match super::session::prepare(
        config,
        super::session::Session {
            contract: c,
            target,
            inputs,
            agent: args.agent.as_deref(),
            dry_run: args.dry_run,
            allow_dirty: args.allow_dirty,
            allow_superuser: args.allow_superuser,
            wait_for_approval: wait,
            runbooks: contracts,
            follow,
            loud: true,
        },
        analyzer,
    ) {
        Ok(p) => p,
        Err(e) => return usage(e),
    };
    if let Err(code) = super::team::check(config, &mut prepared, &args.acknowledge) {
        return code;
    }
    if interactive {
        return super::session::interactive(prepared, "ward run --headless");
    }
    let log_path = prepared.cfg.log_path.clone();
    let waits = prepared.cfg.wait_for_approval.is_some();
    super::session::headless(args.report, &log_path, waits, |ops, events| {
        runner::run(prepared.cfg, prepared.agent, ops, events)
    })
}
