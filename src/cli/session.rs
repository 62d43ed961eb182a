//! What `ward run`, `ward resume`, `ward demo`, `ward step` and `ward
//! audit` share: preparing a session and choosing its agent, running it
//! headless (progress on stderr, report on stdout) or in the TUI, the
//! reports, and the exit code of an outcome. The commands use this module;
//! it uses none of them.

use super::exit::{Error, Exit};
use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use clap::ValueEnum;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use ward::agent::Agent;
use ward::agent::offline::Offline;
use ward::agent::replay::{Replay, Transcript};
use ward::audit::{Event, Verification};
use ward::config::Config;
use ward::contract::Contract;
use ward::session::SessionState;
use ward::session::describe::Timeline;
use ward::session::events::DecisionKind;
use ward::session::runner::{self, Op, Outcome, RunConfig, RunError};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Report {
    Md,
    Json,
}

/// The agent named by `--agent` (or ward.yaml's `agent`, else offline).
pub fn agent(config: &Config, flag: Option<&str>) -> Result<Box<dyn Agent>, Error> {
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
    Err(format!("unknown agent `{name}`; use offline, replay:FILE or openai").into())
}

fn openai(config: &Config) -> Result<Box<dyn Agent>, Error> {
    let spec = config.spec.agent.as_ref().filter(|a| a.provider == "openai").ok_or_else(|| {
        "--agent openai needs the model in ward.yaml: agent: { provider: openai, model: NAME } (base URL and key come from OPENAI_BASE_URL / OPENAI_API_KEY, or the variables named by base_url_env / api_key_env)".to_string()
    })?;
    let cfg = ward::agent::openai::OpenAiConfig::from_spec(spec)?;
    let agent = ward::agent::openai::OpenAi::new(cfg)?;
    Ok(Box::new(agent))
}

/// Refuses a session in prod while policy files have uncommitted changes
/// (`provenance` of the files used), unless the operator allowed it.
/// `ward run` and `ward resume` alike.
pub fn refuse_dirty(environment: &str, provenance: &Value, allow_dirty: bool) -> Result<(), Error> {
    if environment == "prod"
        && provenance.get("policies_dirty").and_then(Value::as_bool) == Some(true)
        && !allow_dirty
    {
        return Err("policy files have uncommitted changes; commit them, or pass --allow-dirty to run in prod anyway (it is logged)".into());
    }
    Ok(())
}

/// The roster of approver roles (`policies/operators.yaml`), `None` when
/// there is none; a roster that does not load stops the command.
pub fn roster(config: &Config) -> Result<Option<ward::policy::operators::Operators>, Error> {
    ward::policy::operators::load(&config.policies).map_err(|problems| {
        Error::from(
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })
}

/// How long an interactive session waits for the person at the terminal.
pub const INTERACTIVE_WAIT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// What the TUI needs to show a session it did not start from its own log.
pub fn session_info(cfg: &ward::session::runner::RunConfig) -> ward::tui::SessionInfo {
    ward::tui::SessionInfo {
        runbook: Some(ward::tui::RunbookInfo::from(&cfg.contract)),
        target: cfg.target.name.clone(),
        environment: cfg.target.environment.clone(),
        log_path: Some(cfg.log_path.clone()),
    }
}

/// Starts a prepared session in the background and hands it to `tui`.
pub fn spawn(prepared: Prepared) -> (ward::tui::Launched, SessionTask) {
    let info = session_info(&prepared.cfg);
    let (channels, events_tx, ops_rx) = ward::tui::SessionChannels::pair();
    let task = tokio::spawn(ward::session::runner::run(
        prepared.cfg,
        prepared.agent,
        ops_rx,
        Some(events_tx),
    ));
    (ward::tui::Launched { info, channels }, task)
}

pub type SessionTask = tokio::task::JoinHandle<Result<(SessionState, Outcome), RunError>>;

/// Logs go to `.ward/ward.log` (never the screen while the TUI runs).
pub fn init_log(config: &Config) {
    init_log_for(&config.sessions.join("x"));
}

/// The log file beside the sessions directory of `session_log`.
fn init_log_for(session_log: &Path) {
    let sessions = session_log.parent().unwrap_or(Path::new("."));
    let path = sessions.parent().unwrap_or(sessions).join("ward.log");
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = ward::tui::init_file_log(&path);
}

/// Runs a session in the terminal UI; returns its exit code once the
/// session is sealed.
/// `headless` is the command to suggest when there is no terminal.
pub fn interactive(prepared: Prepared, headless: &str) -> Exit {
    let runtime = match runtime() {
        Ok(r) => r,
        Err(e) => {
            errln!("error: {e}");
            return Exit::Usage;
        }
    };
    if let Err(code) = need_terminal(headless) {
        return code;
    }
    init_log_for(&prepared.cfg.log_path);
    // With a team store, the person at this terminal is the role it
    // authenticates (the session's engine asks the same).
    let operator = match &prepared.cfg.store {
        Some(link) => runtime
            .block_on(link.store.whoami())
            .unwrap_or_else(|_| prepared.cfg.operator.clone()),
        None => prepared.cfg.operator.clone(),
    };
    let log = prepared.cfg.log_path.clone();
    let result = runtime.block_on(async move {
        let (launched, task) = spawn(prepared);
        let shown = ward::tui::run_session(
            launched.info,
            launched.channels,
            ward::tui::TuiOptions::new(operator),
        )
        .await;
        (shown, task.await)
    });
    match result {
        (Err(e), _) => {
            errln!("error: the terminal UI failed: {e}");
            Exit::Failed
        }
        (Ok(_), Ok(Ok((_, outcome)))) => {
            errln!("ward: session {} ended: {}", log.display(), outcome.words());
            Exit::from(outcome)
        }
        (Ok(_), Ok(Err(e))) => {
            errln!("error: {e}");
            Exit::Failed
        }
        (Ok(_), Err(e)) => {
            errln!("error: the session task failed: {e}");
            Exit::Failed
        }
    }
}

/// The async runtime of a command.
pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::from(format!("cannot start the async runtime: {e}")))
}

/// Runs a session with no front end that can approve: progress lines on
/// stderr, the report on stdout, the outcome as the exit code. A session
/// that `waits` for approvals says on stderr which `ward approve` command
/// lets each waiting proposal run.
pub fn headless<F, Fut>(report: Report, log: &Path, waits: bool, session: F) -> Exit
where
    F: FnOnce(mpsc::UnboundedReceiver<Op>, Option<mpsc::UnboundedSender<Event>>) -> Fut,
    Fut: Future<Output = Result<(SessionState, Outcome), RunError>>,
{
    let runtime = match runtime() {
        Ok(r) => r,
        Err(e) => {
            errln!("error: {e}");
            return Exit::Usage;
        }
    };
    // Warnings the log cannot hold (the team store still behind at the
    // seal) go to .ward/ward.log, as in the TUI.
    init_log_for(log);
    let result = runtime.block_on(async {
        let (ops_tx, ops_rx) = mpsc::unbounded_channel();
        // SIGTERM or SIGINT (a supervisor stopping ward, `ward serve`
        // shutting down, Ctrl-C) cancels the running statement and ends the
        // session as cancelled, its log sealed, instead of killing it
        // mid-line.
        tokio::spawn(async move {
            if stop_signal().await {
                let _ = ops_tx.send(Op::Cancel);
            }
            // Keep the sender: a closed channel is not a cancel.
            std::future::pending::<()>().await;
        });
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<Event>();
        let session_id = log
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        errln!("ward: session {session_id}, session log {}", log.display());
        let printer = tokio::spawn(async move {
            let mut timeline = Timeline::default();
            while let Some(e) = ev_rx.recv().await {
                errln!("ward: {}", timeline.line(&e));
                if waits && let Some(line) = waiting_line(&session_id, &e) {
                    errln!("ward: {line}");
                }
            }
        });
        let r = session(ops_rx, Some(ev_tx)).await;
        let _ = printer.await;
        r
    });
    let (state, outcome) = match result {
        Ok(r) => r,
        Err(e) => {
            errln!("error: {e}");
            return Exit::Failed;
        }
    };
    // The team store lagging at the end: the log is complete locally, and
    // this says how to push the rest.
    if let Some(sb) = &state.store_behind {
        errln!(
            "ward: the team store lacks {} of this session's events ({}); `ward store sync {}` pushes them",
            sb.behind(state.last_seq),
            sb.error,
            state.session_id
        );
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = write_report(report, &state, outcome, log, &mut out) {
        errln!("error: cannot write the report: {e}");
    }
    Exit::from(outcome)
}

/// Resolves on the first SIGTERM or SIGINT (true), or never when the
/// handlers cannot be installed (false).
pub async fn stop_signal() -> bool {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return false;
    };
    tokio::select! {
        _ = term.recv() => true,
        _ = int.recv() => true,
    }
}

/// What to run to approve the proposal a `gated` event puts up for
/// approval; None for any other event (and for a dry run, which never runs).
fn waiting_line(session: &str, e: &Event) -> Option<String> {
    let Ok(ward::session::EventData::Gated(g)) =
        ward::session::EventData::from_parts(&e.kind, &e.data)
    else {
        return None;
    };
    if g.decision != DecisionKind::Approve || g.dry_run {
        return None;
    }
    let id = g.proposal.short();
    let needs = if g.approvers > 1 {
        format!(" ({} approvers from distinct operators)", g.approvers)
    } else {
        String::new()
    };
    Some(format!(
        "waiting for approval of {id}{needs}: ward approve {session} {id} --reason \"...\""
    ))
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
        Report::Md => {
            // The log just sealed is what the report says, word for word
            // as `ward audit export` would.
            let (events, verdict) =
                ward::audit::read_events(Path::new(&log)).map_err(std::io::Error::other)?;
            ward::session::markdown::write(
                &events,
                Some(&log),
                Some(&verification_name(&verdict)),
                out,
            )
        }
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
                "status": p.status.name(),
                "risk": p.risk,
                "decision": p.decision,
                "approvers": p.approvers_needed,
                "rules": p.rules,
                "rows_seen": p.rows_seen,
                "summary_bytes": p.summary_bytes,
                "verified": p.verified,
                "error": p.error,
                "message": p.message,
                "role": p.role,
                "runbook": p.runbook,
            })
        })
        .collect();
    let earlier: Vec<Value> = state
        .earlier
        .iter()
        .map(|p| {
            json!({
                "runbook": p.runbook,
                "inputs": p.inputs,
                "conclusion": p.conclusion,
                "recommendation": p.recommendation,
                "next": p.next,
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
        "recommendation": state.recommendation,
        "unreachable": state.unreachable,
        "agent": state.agent,
        "tokens_used": state.tokens_used,
        "prompt_tokens": state.prompt_tokens,
        "prompt_tokens_cached": state.tokens_cached,
        "steps": steps,
        "inputs": state.inputs,
        "next": state.next,
        "not_followed": state.not_followed,
        "handoffs": state.handoffs,
        "earlier_runbooks": earlier,
    })
}

/// Whether stdin and stdout are a terminal the UI can take over; without
/// one, suggest `headless`, the command that does the same in a script.
pub(super) fn need_terminal(headless: &str) -> Result<(), Exit> {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() && std::io::stdin().is_terminal() {
        Ok(())
    } else {
        errln!(
            "error: the terminal UI needs a terminal; in scripts use `{headless}`, `ward audit list` or `ward --help`"
        );
        Err(Exit::Usage)
    }
}

/// `ward`: the home screen. Sessions started from it run in the same
/// terminal.
pub fn home(config: &Config) -> Exit {
    if let Err(code) = need_terminal("ward run --headless") {
        return code;
    }
    init_log(config);
    let runtime = match runtime() {
        Ok(r) => r,
        Err(e) => {
            errln!("error: {e}");
            return Exit::Usage;
        }
    };
    let operator = team_operator(config, &runtime);
    let tasks: std::sync::Arc<std::sync::Mutex<Vec<SessionTask>>> = Default::default();
    let launcher_cfg = config.clone();
    let launched_tasks = tasks.clone();
    let launcher = move |req: &ward::tui::LaunchRequest| -> Result<ward::tui::Launched, Error> {
        let target = ward::exec::Target::from_config(&launcher_cfg, &req.target)?;
        let analyzer = launcher_cfg.runbook_analyzer();
        let (contracts, _) = ward::contract::load_dir(&launcher_cfg.runbooks, &analyzer);
        let contract = contracts
            .iter()
            .find(|c| c.id() == req.runbook)
            .cloned()
            .ok_or_else(|| {
                format!(
                    "runbook `{}` does not load; `ward check` says why",
                    req.runbook
                )
            })?;
        let mut prepared = prepare(
            &launcher_cfg,
            Session {
                contract,
                target,
                inputs: Default::default(),
                agent: None,
                dry_run: false,
                allow_dirty: false,
                allow_superuser: false,
                wait_for_approval: Some(INTERACTIVE_WAIT),
                follow: runner::Follow::Ask {
                    depth: runner::FOLLOW_DEPTH,
                },
                runbooks: contracts,
                loud: false,
            },
            analyzer,
        )?;
        // The operator confirmed starting beside the team's live sessions.
        prepared.cfg.concurrent = req.concurrent.clone();
        let (launched, task) = spawn(prepared);
        if let Ok(mut t) = launched_tasks.lock() {
            t.push(task);
        }
        Ok(launched)
    };
    let shown = runtime.block_on(async {
        let shown = ward::tui::run_home(
            config,
            Box::new(launcher),
            ward::tui::TuiOptions::new(operator),
        )
        .await;
        // Let every session started here seal its log.
        let pending: Vec<SessionTask> = tasks
            .lock()
            .map(|mut t| t.drain(..).collect())
            .unwrap_or_default();
        for t in pending {
            let _ = t.await;
        }
        shown
    });
    match shown {
        Ok(_) => Exit::Success,
        Err(e) => {
            errln!("error: the terminal UI failed: {e}");
            Exit::Failed
        }
    }
}

/// Who works at this terminal: with a team store, the role it
/// authenticates (else `$WARD_OPERATOR` or the OS user, a claim).
pub fn team_operator(config: &Config, runtime: &tokio::runtime::Runtime) -> String {
    let claimed = ward::audit::operator();
    let Some(spec) = &config.spec.store else {
        return claimed;
    };
    let _tokio = runtime.enter();
    let Ok(store) = spec.url().and_then(|u| ward::store::Store::open(&u)) else {
        return claimed;
    };
    runtime.block_on(store.whoami()).unwrap_or(claimed)
}

/// `ward audit`: the audit viewer; `open`: replay that log at once.
pub fn viewer(config: &Config, open: Option<std::path::PathBuf>) -> Exit {
    if let Err(code) = need_terminal("ward run --headless") {
        return code;
    }
    init_log(config);
    let runtime = match runtime() {
        Ok(r) => r,
        Err(e) => {
            errln!("error: {e}");
            return Exit::Usage;
        }
    };
    match runtime.block_on(ward::tui::run_audit(
        config,
        ward::tui::TuiOptions::new(ward::audit::operator()),
        open,
    )) {
        Ok(_) => Exit::Success,
        Err(e) => {
            errln!("error: the terminal UI failed: {e}");
            Exit::Failed
        }
    }
}

pub fn session_id() -> String {
    let now = chrono::Utc::now();
    format!(
        "{}-{:06x}",
        now.format("%Y%m%dT%H%M%SZ"),
        (std::process::id() ^ now.timestamp_subsec_nanos()) & 0xFF_FFFF
    )
}

/// What a new session is asked to be.
pub struct Session<'a> {
    pub contract: Contract,
    pub target: ward::exec::Target,
    pub inputs: std::collections::BTreeMap<String, Value>,
    pub agent: Option<&'a str>,
    pub dry_run: bool,
    pub allow_dirty: bool,
    pub allow_superuser: bool,
    pub wait_for_approval: Option<Duration>,
    /// The repository's runbooks (a conclusion's `next` is one of them).
    pub runbooks: Vec<Contract>,
    pub follow: runner::Follow,
    /// Say on stderr what the session cannot do (a team store it cannot
    /// open); off while the TUI draws.
    pub loud: bool,
}

/// A session ready to start: its configuration and agent.
pub struct Prepared {
    pub cfg: RunConfig,
    pub agent: Box<dyn ward::agent::Agent>,
}

/// The team store ward.yaml configures, for a session to mirror its
/// events to. A store that cannot be opened (its URL variable unset or
/// unreadable) is said loudly and the session runs on local files only.
/// `loud`: also on stderr (not while the TUI draws).
pub fn store_link(config: &Config, loud: bool) -> Option<ward::store::StoreLink> {
    match ward::store::StoreLink::from_config(config) {
        Ok(link) => link,
        Err(e) => {
            if loud {
                errln!("ward: warning: the session is not mirrored to the team store: {e}");
            }
            tracing::warn!("the session is not mirrored to the team store: {e}");
            None
        }
    }
}

/// Builds a session's configuration: the policy and the roster of approver
/// roles, provenance (a dirty policy is refused in prod unless allowed),
/// the session id and log path.
pub fn prepare(
    config: &Config,
    s: Session<'_>,
    analyzer: ward::sql::Analyzer,
) -> Result<Prepared, Error> {
    let agent = agent(config, s.agent)?;
    let policy = config.active_policy()?;
    let operators = roster(config)?;
    // The roster is part of what decides: its blob id is logged too.
    let mut files = vec![s.contract.path.clone(), policy.path.clone()];
    files.extend(operators.as_ref().map(|o| o.path.clone()));
    // A session that may hand off records the runbooks it may continue into.
    if s.follow != runner::Follow::Never {
        files.extend(reachable(&s.contract, &s.runbooks));
    }
    let provenance = ward::audit::provenance(&config.root, &files);
    refuse_dirty(&s.target.environment, &provenance, s.allow_dirty)?;
    let id = session_id();
    // Steps the target's platform cannot run are never proposed; the
    // conclusion says why.
    let platform = config.platform_of(&s.target.name);
    let mut contract = s.contract;
    contract.keep_steps_for_platform(platform);
    // A hand-off continues on the same target: the same steps are left out.
    let runbooks = s
        .runbooks
        .into_iter()
        .map(|mut c| {
            c.keep_steps_for_platform(platform);
            c
        })
        .collect();
    let cfg = RunConfig {
        store: store_link(config, s.loud),
        concurrent: Vec::new(),
        session_id: id.clone(),
        log_path: config.sessions.join(format!("{id}.jsonl")),
        contract,
        target: s.target,
        inputs: s.inputs,
        policy,
        analyzer,
        evidence: config.evidence_config(),
        dry_run: s.dry_run,
        operator: ward::audit::operator(),
        provenance,
        allow_dirty: s.allow_dirty,
        wait_for_approval: s.wait_for_approval,
        ops_dir: Some(config.sessions.join(format!("{id}.ops"))),
        clock: runner::Clock::system(),
        allow_superuser: s.allow_superuser,
        operators,
        reload_policy: true,
        recorded: None,
        max_proposals: runner::MAX_PROPOSALS,
        runbooks,
        follow: s.follow,
    };
    Ok(Prepared { cfg, agent })
}

/// The files of the runbooks `first` may hand off to, directly or through
/// the runbooks it hands off to.
fn reachable(first: &Contract, runbooks: &[Contract]) -> Vec<std::path::PathBuf> {
    let mut seen: Vec<&str> = vec![first.id()];
    let mut todo: Vec<&Contract> = vec![first];
    let mut out = Vec::new();
    while let Some(c) = todo.pop() {
        for next in c.conclusions.iter().filter_map(|k| k.next.as_ref()) {
            if seen.contains(&next.runbook.as_str()) {
                continue;
            }
            seen.push(&next.runbook);
            if let Some(t) = runbooks.iter().find(|t| t.id() == next.runbook) {
                out.push(t.path.clone());
                todo.push(t);
            }
        }
    }
    out
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
