//! `ward serve`: receives Prometheus Alertmanager webhooks and starts a
//! headless **dry-run** diagnostic session for each firing alert a
//! runbook's `triggers` name, against the target the alert's labels map
//! to (`alerts:` in ward.yaml). Each session is a child `ward run
//! --headless --dry-run` process: it only ever runs reads (the database
//! enforces READ ONLY too), writes its own sealed session log, and its
//! report goes under `.ward/reports/`. Sessions run at most `concurrency`
//! at a time, the rest queue; the same alert (fingerprint) within the
//! de-duplication window starts nothing new; every alert received, and
//! every session started and finished, is a line of
//! `.ward/reports/alerts.jsonl`. SIGTERM / SIGINT stop accepting, let the
//! running sessions end cancelled with their logs sealed, and exit.

use super::exit::{Exit, usage};
use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt as _;
use tokio::sync::Semaphore;

use ward::alerts::{self, Alert, AlertStatus, Dedup};
use ward::config::Config;
use ward::contract;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on; Alertmanager's receiver then has
    /// `webhook_configs: [{url: "http://ADDR/alerts"}]`. Port 0 picks a
    /// free port (printed on stderr).
    #[arg(long, default_value = "127.0.0.1:9464", value_name = "ADDR")]
    pub listen: String,
    /// At most this many sessions at once (default: ward.yaml's
    /// `alerts.concurrency`, else 2); the rest wait in a queue.
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// At most this many alerts waiting for a session slot; beyond it an
    /// alert is answered 503, which Alertmanager retries.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub max_queue: usize,
    /// Where reports and alerts.jsonl go (default .ward/reports).
    #[arg(long, value_name = "DIR")]
    pub reports: Option<PathBuf>,
}

/// The default `alerts.concurrency`.
const DEFAULT_CONCURRENCY: usize = 2;
/// The default `alerts.dedup_window`.
const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(600);
/// How long a running session gets to end after SIGTERM before it is killed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// What the handlers share.
struct Shared {
    config: Config,
    /// The runbooks, for their `triggers`.
    runbooks: Vec<contract::Contract>,
    reports: PathBuf,
    dedup: Mutex<Dedup>,
    slots: Arc<Semaphore>,
    max_queue: usize,
    queued: AtomicUsize,
    running: AtomicUsize,
    started: AtomicUsize,
    finished: AtomicUsize,
    stopping: AtomicBool,
    /// Pids of running `ward run` children, signalled at shutdown.
    children: Mutex<BTreeSet<u32>>,
    ledger: Mutex<std::fs::File>,
}

impl Shared {
    /// Appends one line to alerts.jsonl (best effort: a full disk must not
    /// stop the intake; the line also goes to the tracing log).
    fn record(&self, mut line: Value) {
        line["at"] = json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        tracing::info!(target: "ward::serve", "{line}");
        // One write of the whole line: a reader never sees half of one.
        let text = format!("{line}\n");
        if let Ok(mut f) = self.ledger.lock() {
            let _ = f.write_all(text.as_bytes());
        }
    }

    fn runbook_for(&self, alert: &Alert) -> Result<String, String> {
        match contract::triggered_by(&self.runbooks, alert.name()).as_slice() {
            [one] => Ok(one.id().to_string()),
            [] => Err(format!("no runbook is triggered by `{}`", alert.name())),
            many => Err(format!(
                "`{}` triggers several runbooks ({}); narrow the runbooks' triggers",
                alert.name(),
                many.iter().map(|c| c.id()).collect::<Vec<_>>().join(", ")
            )),
        }
    }
}

pub fn run(config: &Config, args: &Args) -> Exit {
    if let Some(e) = super::no_repository(config) {
        return usage(e);
    }
    let analyzer = config.runbook_analyzer();
    let (contracts, problems) = contract::load_dir(&config.runbooks, &analyzer);
    for p in &problems {
        errln!("warning: {p}");
    }
    let spec = &config.spec.alerts;
    let concurrency = args
        .concurrency
        .or(spec.concurrency)
        .unwrap_or(DEFAULT_CONCURRENCY);
    if concurrency == 0 {
        return usage("--concurrency must be at least 1");
    }
    let window = match spec
        .dedup_window
        .as_deref()
        .map(contract::positive_duration)
    {
        None => DEFAULT_DEDUP_WINDOW,
        Some(Ok(d)) => d,
        Some(Err(e)) => return usage(format!("alerts.dedup_window {e}")),
    };
    let reports = args
        .reports
        .clone()
        .unwrap_or_else(|| config.root.join(".ward/reports"));
    if let Err(e) = std::fs::create_dir_all(&reports) {
        return usage(format!("cannot create {}: {e}", reports.display()));
    }
    let ledger_path = reports.join("alerts.jsonl");
    let ledger = match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&ledger_path)
    {
        Ok(f) => f,
        Err(e) => return usage(format!("cannot open {}: {e}", ledger_path.display())),
    };
    let shared = Arc::new(Shared {
        config: config.clone(),
        runbooks: contracts,
        reports,
        dedup: Mutex::new(Dedup::new(window)),
        slots: Arc::new(Semaphore::new(concurrency)),
        max_queue: args.max_queue,
        queued: AtomicUsize::new(0),
        running: AtomicUsize::new(0),
        started: AtomicUsize::new(0),
        finished: AtomicUsize::new(0),
        stopping: AtomicBool::new(false),
        children: Mutex::new(BTreeSet::new()),
        ledger: Mutex::new(ledger),
    });
    let runtime = match super::session::runtime() {
        Ok(r) => r,
        Err(e) => return usage(e),
    };
    runtime.block_on(serve(shared, &args.listen, concurrency, window))
}

async fn serve(shared: Arc<Shared>, listen: &str, concurrency: usize, window: Duration) -> Exit {
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => return usage(format!("cannot listen on {listen}: {e}")),
    };
    let addr = listener
        .local_addr()
        .map_or_else(|_| listen.to_string(), |a| a.to_string());
    errln!(
        "ward serve: listening on {addr} (POST /alerts, GET /healthz); at most {concurrency} session(s) at once, repeats within {}s ignored; reports in {}",
        window.as_secs(),
        shared.reports.display()
    );
    let app = Router::new()
        .route("/alerts", post(receive))
        .route("/", post(receive))
        .route("/healthz", get(health))
        .with_state(shared.clone());
    let stop = shared.clone();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            super::session::stop_signal().await;
            stop.stopping.store(true, Ordering::SeqCst);
            errln!("ward serve: stopping: no new alerts; running sessions end cancelled, their logs sealed");
        })
        .await;
    if let Err(e) = served {
        errln!("error: the server stopped: {e}");
    }
    shut_down(&shared).await;
    Exit::Success
}

/// Signals every running session to stop (they end cancelled, sealed) and
/// waits for them, killing any still running after [`SHUTDOWN_GRACE`].
async fn shut_down(shared: &Shared) {
    shared.slots.close();
    let pids: Vec<u32> = shared
        .children
        .lock()
        .map(|c| c.iter().copied().collect())
        .unwrap_or_default();
    for pid in &pids {
        signal(*pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while shared.running.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left: Vec<u32> = shared
        .children
        .lock()
        .map(|c| c.iter().copied().collect())
        .unwrap_or_default();
    for pid in left {
        signal(pid, libc::SIGKILL);
    }
    errln!(
        "ward serve: stopped ({} session(s) started, {} finished)",
        shared.started.load(Ordering::SeqCst),
        shared.finished.load(Ordering::SeqCst)
    );
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) on a pid this process spawned and has not reaped
        // (it is removed from `children` before its status is collected).
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let body = json!({
        "status": if shared.stopping.load(Ordering::SeqCst) { "stopping" } else { "ok" },
        "running": shared.running.load(Ordering::SeqCst),
        "queued": shared.queued.load(Ordering::SeqCst),
        "started": shared.started.load(Ordering::SeqCst),
        "finished": shared.finished.load(Ordering::SeqCst),
    });
    let code = if shared.stopping.load(Ordering::SeqCst) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    json_response(code, &body)
}

async fn receive(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    if shared.stopping.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "ward serve is stopping\n").into_response();
    }
    let payload = match alerts::parse(&body) {
        Ok(p) => p,
        Err(e) => {
            shared.record(json!({"event": "refused", "reason": e.to_string()}));
            return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
        }
    };
    let mut answers = Vec::new();
    let mut full = false;
    for alert in &payload.alerts {
        let answer = admit(&shared, alert);
        full |= answer["action"] == "queue_full";
        answers.push(answer);
    }
    let code = if full {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    json_response(code, &json!({ "alerts": answers }))
}

/// What happens to one alert: recorded, and for a new firing one with a
/// runbook and a target, a queued session. Returns the answer line.
fn admit(shared: &Arc<Shared>, alert: &Alert) -> Value {
    let mut answer = json!({
        "alertname": alert.name(),
        "fingerprint": alert.identity(),
        "status": alert.status,
    });
    let action = (|| {
        if alert.status == AlertStatus::Resolved {
            return "resolved".to_string();
        }
        let runbook = match shared.runbook_for(alert) {
            Ok(r) => r,
            Err(why) => {
                answer["reason"] = json!(why);
                return "no_runbook".to_string();
            }
        };
        answer["runbook"] = json!(runbook);
        let routes = &shared.config.spec.alerts.routes;
        let Some(target) = alerts::target_for(alert, routes, &shared.config.spec.targets) else {
            answer["reason"] = json!(format!(
                "no target: give the alert a `{}` label naming a ward.yaml target, or add a route under `alerts.routes`",
                alerts::TARGET_LABEL
            ));
            return "no_target".to_string();
        };
        answer["target"] = json!(target);
        let fresh = shared
            .dedup
            .lock()
            .map(|mut d| d.first(&alert.identity(), Instant::now()))
            .unwrap_or(true);
        if !fresh {
            return "duplicate".to_string();
        }
        if shared.queued.load(Ordering::SeqCst) >= shared.max_queue {
            return "queue_full".to_string();
        }
        shared.queued.fetch_add(1, Ordering::SeqCst);
        let job = Job {
            runbook,
            target: target.to_string(),
            alertname: alert.name().to_string(),
            fingerprint: alert.identity(),
        };
        tokio::spawn(run_job(shared.clone(), job));
        "queued".to_string()
    })();
    answer["action"] = json!(action);
    let mut line = answer.clone();
    line["event"] = json!("received");
    shared.record(line);
    answer
}

struct Job {
    runbook: String,
    target: String,
    alertname: String,
    fingerprint: String,
}

/// Waits for a slot, runs `ward run RUNBOOK --target T --headless
/// --dry-run` with its report into the reports directory, and records the
/// outcome.
async fn run_job(shared: Arc<Shared>, job: Job) {
    let permit = shared.slots.clone().acquire_owned().await;
    shared.queued.fetch_sub(1, Ordering::SeqCst);
    let Ok(_permit) = permit else {
        shared.record(
            json!({"event": "not_started", "runbook": job.runbook, "target": job.target,
            "fingerprint": job.fingerprint, "reason": "ward serve stopped first"}),
        );
        return;
    };
    if shared.stopping.load(Ordering::SeqCst) {
        return;
    }
    shared.running.fetch_add(1, Ordering::SeqCst);
    shared.started.fetch_add(1, Ordering::SeqCst);
    let began = Instant::now();
    let report = report_path(&shared.reports, &job);
    shared.record(json!({"event": "started", "runbook": job.runbook, "target": job.target,
        "alertname": job.alertname, "fingerprint": job.fingerprint, "report": report.display().to_string()}));
    let result = spawn_session(&shared, &job, &report).await;
    let took = began.elapsed().as_secs_f64();
    match result {
        Ok((code, session)) => {
            let outcome = outcome_of(code, session.as_ref().map(|(_, log)| log.as_path()));
            let session = session.map(|(id, _)| id);
            errln!(
                "ward serve: {} on {} -> {}: {outcome} in {took:.1}s; report {}{}",
                job.alertname,
                job.target,
                job.runbook,
                report.display(),
                session
                    .as_deref()
                    .map(|s| format!("; open it: ward audit replay {s}"))
                    .unwrap_or_default()
            );
            shared.record(
                json!({"event": "finished", "runbook": job.runbook, "target": job.target,
                "alertname": job.alertname, "fingerprint": job.fingerprint, "exit": code,
                "outcome": outcome, "session": session, "report": report.display().to_string(),
                "seconds": took}),
            );
        }
        Err(e) => {
            errln!(
                "ward serve: {} on {}: could not start a session: {e}",
                job.alertname,
                job.target
            );
            shared.record(
                json!({"event": "failed", "runbook": job.runbook, "target": job.target,
                "fingerprint": job.fingerprint, "reason": e}),
            );
        }
    }
    shared.finished.fetch_add(1, Ordering::SeqCst);
    shared.running.fetch_sub(1, Ordering::SeqCst);
}

fn report_path(dir: &Path, job: &Job) -> PathBuf {
    let safe: String = job
        .fingerprint
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(16)
        .collect();
    dir.join(format!(
        "{}-{}-{}.md",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
        job.runbook,
        if safe.is_empty() {
            "alert".to_string()
        } else {
            safe
        }
    ))
}

/// The child session; its exit code, and its session id and log (from its
/// first progress line).
async fn spawn_session(
    shared: &Shared,
    job: &Job,
    report: &Path,
) -> Result<(i32, Option<(String, PathBuf)>), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the ward binary: {e}"))?;
    let out = std::fs::File::create(report)
        .map_err(|e| format!("cannot create {}: {e}", report.display()))?;
    let mut child = tokio::process::Command::new(exe)
        .arg("--repo")
        .arg(&shared.config.root)
        .args([
            "run",
            &job.runbook,
            "--target",
            &job.target,
            "--headless",
            "--dry-run",
            "--report",
            "md",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start ward run: {e}"))?;
    let pid = child.id();
    if let (Some(pid), Ok(mut c)) = (pid, shared.children.lock()) {
        c.insert(pid);
    }
    let mut session = None;
    if let Some(stderr) = child.stderr.take() {
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if session.is_none() {
                session = session_named(&line);
            }
        }
    }
    let status = child.wait().await;
    if let (Some(pid), Ok(mut c)) = (pid, shared.children.lock()) {
        c.remove(&pid);
    }
    let status = status.map_err(|e| format!("ward run: {e}"))?;
    Ok((status.code().unwrap_or(-1), session))
}

/// The session id and log path in the progress line naming them ("ward:
/// session ID, session log PATH").
fn session_named(line: &str) -> Option<(String, PathBuf)> {
    let (id, log) = line
        .strip_prefix("ward: session ")?
        .split_once(", session log ")?;
    (!id.is_empty()).then(|| (id.to_string(), PathBuf::from(log)))
}

/// How the session ended, in the words its sealed log gives; the exit code
/// when it left no log (it could not start).
fn outcome_of(code: i32, log: Option<&Path>) -> String {
    log.and_then(|l| ward::audit::read_events(l).ok())
        .and_then(|(events, _)| ward::session::SessionState::from_events(&events).outcome)
        .map_or_else(
            || format!("ended without a sealed session log (exit {code})"),
            |o| o.words().to_string(),
        )
}
