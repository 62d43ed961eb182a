//! `ward resume ID`: continue an unsealed session (a dropped SSH connection
//! mid-incident is normal). Nothing already executed runs again, and an
//! approved proposal runs only after admission says so again (the policy
//! as it is now, the clock now). Refused in prod while policy files have
//! uncommitted changes, like `ward run`.

use super::exit::{Exit, usage};
use std::time::Duration;

use serde_json::Value;

use ward::config::Config;
use ward::contract;
use ward::session::SessionState;
use ward::session::events::Source;
use ward::session::runner::{self, RunConfig};

use super::session::Report;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Session id (or a unique prefix), or the path of its log.
    pub session: String,
    /// The target's URL, when the session ran against --url (URLs are never logged).
    #[arg(long, env = "WARD_URL", hide_env_values = true)]
    pub url: Option<String>,
    /// Who proposes from here on (default: the session's own agent when it
    /// is offline or replay, else ward.yaml's).
    #[arg(long, value_name = "AGENT")]
    pub agent: Option<String>,
    /// Wait this many seconds for approvals instead of stopping.
    #[arg(long, value_name = "SECS")]
    pub wait_for_approval: Option<u64>,
    #[arg(long, value_enum, default_value = "md")]
    pub report: Report,
    /// Resume in prod even though policy files have uncommitted changes (logged).
    #[arg(long)]
    pub allow_dirty: bool,
    /// Resume in prod connected as a role that can act outside the
    /// database's privileges with no `roles.read` configured (logged).
    #[arg(long)]
    pub allow_superuser: bool,
    /// When the conclusion names a next runbook, continue into it (see
    /// `ward run --follow`); hand-offs already in the log count.
    #[arg(long)]
    pub follow: bool,
    /// Hand-offs the session makes at most with --follow, in all.
    #[arg(long, value_name = "N", default_value_t = runner::FOLLOW_DEPTH, requires = "follow")]
    pub follow_depth: u32,
}

pub fn run(config: &Config, args: &Args) -> Exit {
    let path = match super::audit::find(config, &args.session) {
        Ok(p) => p,
        Err(e) => return usage(e),
    };
    let (logged, _) = match ward::audit::read_events(&path) {
        Ok(r) => r,
        Err(e) => return usage(e.to_string()),
    };
    let state = SessionState::from_events(&logged);
    let Some(started) = logged.first().filter(|e| e.kind == "session_started") else {
        return usage(format!(
            "{} does not start with session_started",
            path.display()
        ));
    };
    let d = &started.data;
    let target_name = state
        .target
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let target = if target_name == "url" || args.url.is_some() {
        match &args.url {
            Some(u) => ward::exec::Target::from_url(u, &state.environment),
            None => {
                return usage(
                    "the session ran against a URL, which is never logged; give it again with --url",
                );
            }
        }
    } else {
        ward::exec::Target::from_config(config, target_name)
    };
    let target = match target {
        Ok(t) => t,
        Err(e) => return usage(e.to_string()),
    };
    let analyzer = config.runbook_analyzer();
    let (contracts, _) = contract::load_dir(&config.runbooks, &analyzer);
    let Some(mut c) = contracts.iter().find(|c| c.id() == state.runbook).cloned() else {
        return usage(format!(
            "runbook `{}` of the session no longer loads; `ward check` says why",
            state.runbook
        ));
    };
    // After a hand-off the session goes on with the runbook it handed off to.
    let logged_version = match state.handoffs.last() {
        Some(h) => Some(u64::from(h.runbook_version)),
        None => d.get("runbook_version").and_then(Value::as_u64),
    };
    if logged_version != Some(u64::from(c.spec.version)) {
        errln!(
            "warning: runbook {} is at version {} now, the session started with {:?}",
            c.id(),
            c.spec.version,
            logged_version
        );
    }
    let session_agent = state
        .agent
        .get("provider")
        .and_then(Value::as_str)
        .map(Source::from_provider);
    let flag = args.agent.clone().or_else(|| match session_agent {
        Some(Source::Replay) => state
            .agent
            .get("transcript")
            .and_then(Value::as_str)
            .map(|t| format!("replay:{t}")),
        Some(Source::Offline) => Some(Source::Offline.name().into()),
        _ => None,
    });
    let agent = match super::session::agent(config, flag.as_deref()) {
        Ok(a) => a,
        Err(e) => return usage(e),
    };
    let policy = match config.active_policy() {
        Ok(p) => p,
        Err(e) => return usage(e),
    };
    let operators = match super::session::roster(config) {
        Ok(o) => o,
        Err(e) => return usage(e),
    };
    let mut files = vec![c.path.clone(), policy.path.clone()];
    files.extend(operators.as_ref().map(|o| o.path.clone()));
    let provenance = ward::audit::provenance(&config.root, &files);
    if let Err(e) = super::session::refuse_dirty(&target.environment, &provenance, args.allow_dirty)
    {
        return usage(e);
    }
    // The current runbook's inputs: the session's, or its hand-off's.
    let inputs = match &state.inputs {
        Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        _ => Default::default(),
    };
    let id = state.session_id.clone();
    let platform = config.platform_of(&target.name);
    c.keep_steps_for_platform(platform);
    let cfg = RunConfig {
        store: super::session::store_link(config, true),
        concurrent: Vec::new(),
        session_id: id.clone(),
        log_path: path.clone(),
        contract: c,
        target,
        inputs,
        policy,
        analyzer,
        evidence: config.evidence_config(),
        dry_run: state.dry_run,
        operator: ward::audit::operator(),
        provenance,
        allow_dirty: args.allow_dirty,
        wait_for_approval: args.wait_for_approval.map(Duration::from_secs),
        ops_dir: Some(config.sessions.join(format!("{id}.ops"))),
        clock: runner::Clock::system(),
        allow_superuser: args.allow_superuser,
        operators,
        reload_policy: true,
        recorded: None,
        max_proposals: runner::MAX_PROPOSALS,
        runbooks: contracts
            .into_iter()
            .map(|mut c| {
                c.keep_steps_for_platform(platform);
                c
            })
            .collect(),
        follow: if args.follow {
            runner::Follow::Auto {
                depth: args.follow_depth,
            }
        } else {
            runner::Follow::Never
        },
    };
    let waits = cfg.wait_for_approval.is_some();
    super::session::headless(args.report, &path, waits, |ops, events| {
        runner::resume(cfg, logged, agent, ops, events)
    })
}
