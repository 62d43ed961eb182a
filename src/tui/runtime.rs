//! The one owner loop: `tokio::select!` over terminal input, the live
//! session's events, answers from background jobs and a clock tick; each
//! turn folds one message through `update` and performs the command it
//! returns. It never awaits the database or the model: reading a session
//! log or loading runbooks runs on the blocking pool and answers with a
//! message, tagged so a stale answer is dropped.

use std::io;
use std::pin::pin;
use std::time::Duration;

use chrono::Utc;
use crossterm::event::{Event as TermEvent, MouseEventKind};
use futures_util::{Stream, StreamExt};
use ratatui::Terminal;
use ratatui::backend::Backend;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

use crate::audit::Event;
use crate::session::runner::Op;
use crate::store::Store;
use crate::store::bridge::Answered;

use super::app::{App, Cmd, LaunchRequest, Msg, update};
use super::session::SessionInfo;
use super::view::view;

/// The pair of channels between the TUI and a running session: its events
/// in (every event the runner appended to the log, in order), ops out.
#[derive(Debug)]
pub struct SessionChannels {
    pub events: UnboundedReceiver<Event>,
    pub ops: UnboundedSender<Op>,
    /// A session followed through the store: its answers to the requests
    /// sent from here. `None` for a session running in this process.
    pub answers: Option<UnboundedReceiver<Answered>>,
}

impl SessionChannels {
    /// A connected pair: the TUI's end, and the engine's end (its events
    /// sender and ops receiver).
    pub fn pair() -> (
        SessionChannels,
        UnboundedSender<Event>,
        UnboundedReceiver<Op>,
    ) {
        let (events_tx, events) = mpsc::unbounded_channel();
        let (ops, ops_rx) = mpsc::unbounded_channel();
        (
            SessionChannels {
                events,
                ops,
                answers: None,
            },
            events_tx,
            ops_rx,
        )
    }

    /// Follows `session` through the team store (spawned on the current
    /// runtime): its stored events in, this terminal's decisions out as
    /// store requests, the session's answers back.
    pub fn follow(store: Store, session: String) -> SessionChannels {
        let (events_tx, events) = mpsc::unbounded_channel();
        let (ops, ops_rx) = mpsc::unbounded_channel();
        let (answers_tx, answers) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            if let Err(e) =
                crate::store::bridge::follow(store, session, events_tx, ops_rx, answers_tx).await
            {
                tracing::warn!(error = %e, "following the session through the store stopped");
            }
        });
        SessionChannels {
            events,
            ops,
            answers: Some(answers),
        }
    }
}

/// A session the launcher started.
#[derive(Debug)]
pub struct Launched {
    pub info: SessionInfo,
    pub channels: SessionChannels,
}

/// Starts sessions for the home screen. The CLI supplies it: it resolves
/// the target, builds the run configuration, spawns the session engine
/// with the engine's ends of [`SessionChannels::pair`] and returns the
/// TUI's end. It is called on the UI task, so it must not block: spawn,
/// don't await.
pub trait Launcher: Send {
    fn launch(&mut self, request: &LaunchRequest) -> Result<Launched, LaunchError>;
}

/// Why a session did not start. The launcher belongs to the binary, whose
/// errors the TUI does not know: it gets them boxed, sources intact, and
/// shows their message.
pub type LaunchError = Box<dyn std::error::Error + Send + Sync>;

impl<F> Launcher for F
where
    F: FnMut(&LaunchRequest) -> Result<Launched, LaunchError> + Send,
{
    fn launch(&mut self, request: &LaunchRequest) -> Result<Launched, LaunchError> {
        self(request)
    }
}

/// How the TUI ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TuiExit {
    /// The last live session's outcome (`session_ended`), if it ended.
    pub outcome: Option<crate::session::events::Outcome>,
    /// The operator left a live session that had not ended (it was sent
    /// [`Op::Leave`]): the caller should let the engine finish sealing.
    pub left: bool,
}

/// The side of the loop that talks to the world.
pub(crate) struct Runtime {
    pub ops: Option<UnboundedSender<Op>>,
    pub events: Option<UnboundedReceiver<Event>>,
    pub launcher: Option<Box<dyn Launcher>>,
    pub tx: UnboundedSender<Msg>,
    pub rx: UnboundedReceiver<Msg>,
    pub left: bool,
    /// Answers of a session followed through the store.
    pub answers: Option<UnboundedReceiver<Answered>>,
    /// The team store (home screen: the team's list, following a session).
    pub store: Option<Store>,
}

impl Runtime {
    pub fn new(channels: Option<SessionChannels>, launcher: Option<Box<dyn Launcher>>) -> Runtime {
        let (tx, rx) = mpsc::unbounded_channel();
        let (ops, events, answers) = match channels {
            Some(c) => (Some(c.ops), Some(c.events), c.answers),
            None => (None, None, None),
        };
        Runtime {
            ops,
            events,
            launcher,
            tx,
            rx,
            left: false,
            answers,
            store: None,
        }
    }

    /// Runs `job` on the blocking pool and sends its message back.
    pub fn spawn_job(&self, job: impl FnOnce() -> Msg + Send + 'static) {
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            // The loop may have ended meanwhile; then nobody wants it.
            let _ = tx.send(job());
        });
    }

    /// Performs `cmd`. Returns false when the app should end.
    pub fn execute(&mut self, app: &mut App, cmd: Cmd) -> bool {
        match cmd {
            Cmd::Quit => false,
            Cmd::Batch(cmds) => cmds.into_iter().all(|c| self.execute(app, c)),
            Cmd::SendOp(op) => {
                log_op(&op);
                if op == Op::Leave {
                    self.left = true;
                }
                let sent = self.ops.as_ref().is_some_and(|tx| tx.send(op).is_ok());
                if !sent {
                    tracing::warn!("the session engine is gone; the op was not delivered");
                    if let Some(c) = update(app, Msg::EngineGone) {
                        return self.execute(app, c);
                    }
                }
                true
            }
            Cmd::StartSession(req) => {
                let launched = match self.launcher.as_mut() {
                    Some(l) => l.launch(&req),
                    None => Err("this view cannot start sessions".into()),
                };
                let msg = match launched {
                    Ok(l) => {
                        tracing::info!(runbook = %req.runbook, target = %req.target, "session started");
                        self.ops = Some(l.channels.ops);
                        self.events = Some(l.channels.events);
                        self.left = false;
                        Msg::Attached(l.info)
                    }
                    Err(e) => {
                        tracing::warn!(runbook = %req.runbook, target = %req.target, error = %e, "could not start a session");
                        Msg::LaunchFailed(e.to_string())
                    }
                };
                match update(app, msg) {
                    Some(c) => self.execute(app, c),
                    None => true,
                }
            }
            Cmd::LoadTeam => {
                let Some(store) = self.store.clone() else {
                    return true;
                };
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let rows = store
                        .live_sessions(Utc::now())
                        .await
                        .map(|l| l.iter().map(super::app::TeamRow::from_live).collect())
                        .map_err(|e| e.to_string());
                    let _ = tx.send(Msg::TeamLoaded(rows));
                });
                true
            }
            Cmd::Attach(row) => {
                let Some(store) = self.store.clone() else {
                    return true;
                };
                tracing::info!(session = %row.session_id, "following a session through the store");
                let c = SessionChannels::follow(store, row.session_id.clone());
                self.ops = Some(c.ops);
                self.events = Some(c.events);
                self.answers = c.answers;
                self.left = false;
                let info = SessionInfo {
                    runbook: app
                        .home
                        .runbooks
                        .iter()
                        .find(|r| r.id == row.runbook)
                        .cloned(),
                    target: row.target,
                    environment: row.environment,
                    log_path: None,
                };
                match update(app, Msg::Attached(info)) {
                    Some(c) => self.execute(app, c),
                    None => true,
                }
            }
            Cmd::OpenSession { request, path } => {
                self.spawn_job(move || {
                    let result = super::load::open_session(&path).map_err(std::sync::Arc::new);
                    Msg::Loaded { request, result }
                });
                true
            }
        }
    }
}

fn log_op(op: &Op) {
    match op {
        Op::Approve {
            proposal,
            operator,
            for_session,
            ..
        } => tracing::info!(%proposal, %operator, for_session, "approve"),
        Op::Reject {
            proposal, operator, ..
        } => tracing::info!(%proposal, %operator, "reject"),
        Op::Revoke {
            fingerprint,
            operator,
        } => tracing::info!(%fingerprint, %operator, "revoke standing approval"),
        other => tracing::info!(op = ?other, "op"),
    }
}

/// The terminal event as a message; `None` for what the app ignores.
pub fn message(ev: TermEvent) -> Option<Msg> {
    match ev {
        TermEvent::Key(k) => Some(Msg::Key(k)),
        TermEvent::Paste(s) => Some(Msg::Paste(s)),
        TermEvent::Resize(w, h) => Some(Msg::Resize(w, h)),
        TermEvent::Mouse(m)
            if matches!(
                m.kind,
                MouseEventKind::ScrollUp | MouseEventKind::ScrollDown
            ) =>
        {
            Some(Msg::Mouse(m))
        }
        _ => None,
    }
}

async fn next_answer(rx: &mut Option<UnboundedReceiver<Answered>>) -> Option<Answered> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

async fn next_event(rx: &mut Option<UnboundedReceiver<Event>>) -> Option<Event> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// Session events applied before a frame is drawn, at most: a backlog
/// (a resumed session, a burst) catches up in few frames, and keys still
/// get their turn.
const EVENT_BATCH: usize = 256;

/// Runs the app until it quits or the input ends.
pub(crate) async fn run_loop<B, S>(
    terminal: &mut Terminal<B>,
    mut app: App,
    mut rt: Runtime,
    input: S,
) -> io::Result<(App, TuiExit)>
where
    B: Backend,
    B::Error: Send + Sync + 'static,
    S: Stream<Item = io::Result<TermEvent>>,
{
    let mut input = pin!(input);
    if let Ok(size) = terminal.size() {
        app.size = (size.width, size.height);
    }
    loop {
        terminal.draw(|f| view(&app, f)).map_err(io::Error::other)?;
        let tick = if app.animating() {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(1)
        };
        let msg = tokio::select! {
            ev = input.next() => match ev {
                Some(Ok(ev)) => message(ev),
                Some(Err(e)) => return Err(e),
                None => break,
            },
            Some(m) = rt.rx.recv() => Some(m),
            Some(a) = next_answer(&mut rt.answers) => Some(Msg::Answered(a)),
            ev = next_event(&mut rt.events) => match ev {
                Some(ev) => {
                    let mut cmds = Vec::new();
                    cmds.extend(update(&mut app, Msg::Event(Box::new(ev))));
                    // Catch up on a backlog before drawing again.
                    for _ in 0..EVENT_BATCH {
                        match rt.events.as_mut().map(UnboundedReceiver::try_recv) {
                            Some(Ok(ev)) => cmds.extend(update(&mut app, Msg::Event(Box::new(ev)))),
                            _ => break,
                        }
                    }
                    let mut go_on = true;
                    for c in cmds {
                        go_on &= rt.execute(&mut app, c);
                    }
                    if !go_on {
                        break;
                    }
                    None
                }
                None => {
                    rt.events = None;
                    Some(Msg::EngineGone)
                }
            },
            () = tokio::time::sleep(tick) => Some(Msg::Tick(Utc::now())),
        };
        let Some(msg) = msg else { continue };
        if let Some(cmd) = update(&mut app, msg)
            && !rt.execute(&mut app, cmd)
        {
            break;
        }
    }
    let exit = TuiExit {
        outcome: app
            .session
            .as_ref()
            .filter(|s| s.is_live())
            .and_then(|s| s.state.outcome),
        left: rt.left,
    };
    Ok((app, exit))
}
