//! `ward mcp`: a target's runbooks as MCP tools over stdio, for coding
//! and ops agents (Claude Code, Codex, Cursor, ...). Everything that can go
//! wrong with the command line (no such target or runbook, a policy that
//! does not load, dirty policy files in prod) is said on stderr before the
//! protocol starts; after that stdout carries protocol messages only and
//! logs go to `.ward/ward.log`.

use super::exit::{Error, Exit, usage};
use super::session::{self, Session};

use ward::config::Config;
use ward::contract::Contract;
use ward::session::runner;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Target name from ward.yaml (its environment decides which rules apply).
    #[arg(long, conflicts_with = "url")]
    pub target: Option<String>,
    /// Connection URL (postgres://... or sqlite:PATH) instead of a target.
    #[arg(long, env = "WARD_URL", hide_env_values = true)]
    pub url: Option<String>,
    /// Environment of a --url target (default prod). A ward.yaml target's
    /// environment is its own: --env must agree with it.
    #[arg(long = "env")]
    pub environment: Option<String>,
    /// Serve only this runbook's steps (repeatable); default: every runbook
    /// for the target's engine (many tools: most clients do better with a few).
    #[arg(long = "runbook", value_name = "ID")]
    pub runbooks: Vec<String>,
    /// Session inputs, name=value (repeatable): each session gets those its
    /// runbook declares (thresholds its conclusions read, e.g.
    /// min_wait_seconds=5); a call's own inputs come with the call.
    #[arg(long = "input", value_name = "NAME=VALUE")]
    pub inputs: Vec<String>,
    /// Run only read-only statements; record every other proposal with the
    /// verdict it would get.
    #[arg(long)]
    pub dry_run: bool,
    /// Run in prod even though policy files have uncommitted changes (logged).
    #[arg(long)]
    pub allow_dirty: bool,
    /// Run in prod connected as a role that can act outside the database's
    /// privileges with no `roles.read` configured (logged).
    #[arg(long)]
    pub allow_superuser: bool,
}

pub fn run(config: &Config, args: &Args) -> Exit {
    let setup = match setup(config, args) {
        Ok(s) => s,
        Err(e) => return usage(e),
    };
    session::init_log(config);
    let runtime = match session::runtime() {
        Ok(r) => r,
        Err(e) => return usage(e),
    };
    let served = setup.runbooks.len();
    let target = setup.target.clone();
    let exit = runtime.block_on(async move {
        use rmcp::ServiceExt;
        let server = ward::mcp::Server::new(setup);
        errln!(
            "ward mcp: serving {served} runbook(s) ({} tools) for target {target} on stdio; sessions in .ward/sessions, logs in .ward/ward.log",
            server.tools().len()
        );
        let service = match server.clone().serve(rmcp::transport::stdio_pipes()).await {
            Ok(s) => s,
            Err(e) => {
                errln!("error: the MCP client did not initialize: {e}");
                return Exit::Failed;
            }
        };
        tokio::select! {
            _ = service.waiting() => {}
            _ = session::stop_signal() => {}
        }
        // The client went away (or ward was stopped) mid-session: the
        // session ends cancelled, its log sealed.
        if let Some((id, ended)) = server.shutdown().await {
            let how = match ended {
                Some(ward::mcp::relay::Ended::Sealed(o)) => o.words().to_string(),
                Some(ward::mcp::relay::Ended::Error(e)) => format!("error: {e}"),
                None => "unknown".into(),
            };
            errln!("ward mcp: session {id} ended: {how}");
        }
        Exit::Success
    });
    // A blocking read of stdin may still be pending; nothing is left to do.
    runtime.shutdown_background();
    exit
}

/// Everything checked before the protocol starts.
fn setup(config: &Config, args: &Args) -> Result<ward::mcp::Setup, Error> {
    if let Some(e) = super::no_repository(config) {
        return Err(e.into());
    }
    let environment = args.environment.as_deref().unwrap_or("prod");
    let target = super::resolve_target(
        config,
        args.target.as_deref(),
        args.url.as_deref(),
        environment,
    )?;
    if let (Some(_), Some(env)) = (&args.target, &args.environment)
        && *env != target.environment
    {
        return Err(format!(
            "target `{}` is in environment `{}` (ward.yaml); --env applies to --url only",
            target.name, target.environment
        )
        .into());
    }
    let analyzer = config.runbook_analyzer();
    let (all, _) = ward::contract::load_dir(&config.runbooks, &analyzer);
    let for_engine = |c: &&Contract| c.spec.engines.contains(&target.engine);
    let mut runbooks: Vec<Contract> = if args.runbooks.is_empty() {
        all.iter().filter(for_engine).cloned().collect()
    } else {
        let mut picked = Vec::new();
        for id in &args.runbooks {
            let c = all.iter().find(|c| c.id() == id).ok_or_else(|| {
                format!(
                    "no runbook `{id}` (known: {}); `ward check` reports runbooks that do not load",
                    all.iter().map(Contract::id).collect::<Vec<_>>().join(", ")
                )
            })?;
            if !for_engine(&c) {
                return Err(format!(
                    "runbook `{id}` is not for {:?} targets like `{}`",
                    target.engine, target.name
                )
                .into());
            }
            picked.push(c.clone());
        }
        picked
    };
    if runbooks.is_empty() {
        return Err(format!(
            "no runbook in {} is for {:?} targets",
            config.runbooks.display(),
            target.engine
        )
        .into());
    }
    let platform = config.platform_of(&target.name);
    for c in &mut runbooks {
        c.keep_steps_for_platform(platform);
    }
    let inputs = ward::exec::step::parse_inputs(&args.inputs)?;
    if let Some(name) = inputs
        .keys()
        .find(|n| !runbooks.iter().any(|c| c.spec.inputs.contains_key(*n)))
    {
        return Err(
            format!("--input {name}: no runbook served here declares an input `{name}`").into(),
        );
    }
    let policy = config.active_policy()?;
    let dry_run = args.dry_run;
    let allow_dirty = args.allow_dirty;
    let allow_superuser = args.allow_superuser;
    let prepare_config = config.clone();
    let prepare_target = target.clone();
    let prepare_analyzer = analyzer.clone();
    let prepare = move |c: &Contract| -> Result<runner::RunConfig, Error> {
        session::prepare(
            &prepare_config,
            Session {
                contract: c.clone(),
                target: prepare_target.clone(),
                inputs: inputs
                    .iter()
                    .filter(|(n, _)| c.spec.inputs.contains_key(*n))
                    .map(|(n, v)| (n.clone(), v.clone()))
                    .collect(),
                agent: Some("offline"),
                dry_run,
                allow_dirty,
                allow_superuser,
                // Like the TUI: the session waits for people as long as the
                // client stays connected.
                wait_for_approval: Some(session::INTERACTIVE_WAIT),
                runbooks: all.clone(),
                follow: runner::Follow::Never,
                // stderr is free: the protocol is on stdout.
                loud: true,
            },
            prepare_analyzer.clone(),
        )
        .map(|p| p.cfg)
    };
    // The roster, provenance and the dirty-policy check, now rather than at
    // the first call.
    if let Some(first) = runbooks.first() {
        prepare(first)?;
    }
    Ok(ward::mcp::Setup {
        runbooks,
        policy,
        analyzer,
        target: target.name.clone(),
        engine: target.engine,
        environment: target.environment.clone(),
        team_store: config.spec.store.is_some(),
        prepare: Box::new(move |c| prepare(c).map_err(|e| e.to_string())),
    })
}
