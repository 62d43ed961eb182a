//! The Elm Architecture core of the TUI: [`App`] is the whole state,
//! [`Msg`] everything that can happen, [`update`] the only place state
//! changes, and [`Cmd`] the side effects it asks the runtime for.
//!
//! `update` is pure: no I/O, no clock, no channel. It never approves
//! anything on its own: the only [`Op::Approve`] it emits is the answer to
//! Enter in the approval form with a non-empty reason, with the
//! environment's name typed out in prod, for a proposal that is still
//! waiting. Esc and Ctrl-C in the dialog close it and emit nothing.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent};

use crate::audit::{AuditError, Event, Verification};
use crate::session::runner::Op;
use crate::session::{SessionState, Status};

use super::dialog;
pub use super::dialog::{ApprovalDialog, DialogMode, Field, dialog_fields};
use super::keys::{self, Action, Context, Key};
use super::navigate;
use super::session::{RunbookInfo, SessionInfo, SessionView};
use super::session_keys;
use super::theme::Theme;

/// Which screen is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// Runbooks, targets, recent sessions (`ward`).
    Home,
    /// Recorded sessions (`ward audit`).
    Audit,
    Session,
}

/// A target from ward.yaml, as the home screen lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetInfo {
    pub name: String,
    pub engine: String,
    pub environment: String,
}

impl TargetInfo {
    /// The targets of a configuration, by name.
    pub fn from_config(cfg: &crate::config::Config) -> Vec<TargetInfo> {
        cfg.spec
            .targets
            .iter()
            .map(|(name, t)| TargetInfo {
                name: name.clone(),
                engine: t.engine.name().to_string(),
                environment: t.environment.clone(),
            })
            .collect()
    }
}

/// A recorded session, as the lists show it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub path: PathBuf,
    pub id: String,
    pub started: Option<String>,
    pub operator: String,
    pub runbook: String,
    pub environment: String,
    pub outcome: Option<crate::session::events::Outcome>,
    pub verification: Verification,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HomePane {
    Runbooks,
    Targets,
    Sessions,
    /// The team's live sessions (with a team store).
    Team,
}

/// A live session of the team (from the store), as the home screen lists
/// it: who, which runbook, which target, since when, waiting for whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamRow {
    pub session_id: String,
    pub owner: String,
    pub host: String,
    pub runbook: String,
    pub target: String,
    pub environment: String,
    /// When it started, as the list shows it (UTC, `HH:MM`).
    pub since: String,
    /// When it started (RFC 3339), for the record.
    pub started_at: String,
    /// What it waits for (`waiting for 1 more approval(s) (role dba)`),
    /// `None` when nothing waits.
    pub waiting: Option<String>,
}

impl TeamRow {
    /// The row of a live session the store listed.
    pub fn from_live(l: &crate::store::team::LiveSession) -> TeamRow {
        let s = &l.session;
        TeamRow {
            session_id: s.session_id.clone(),
            owner: s.owner.clone(),
            host: s.host.clone(),
            runbook: s.runbook.clone(),
            target: s.target.clone(),
            environment: s.environment.clone(),
            since: s.started_at.format("%H:%M UTC").to_string(),
            started_at: s.started_at.to_rfc3339(),
            waiting: l
                .waiting
                .as_ref()
                .map(|w| format!("{}: {} {}", w.words(), w.step, w.proposal)),
        }
    }

    /// What starting a session beside it records.
    pub fn concurrent(&self, acknowledged: bool) -> crate::journal::events::Concurrent {
        crate::journal::events::Concurrent {
            session_id: self.session_id.clone(),
            owner: self.owner.clone(),
            runbook: self.runbook.clone(),
            host: self.host.clone(),
            since: self.started_at.clone(),
            acknowledged,
        }
    }
}

/// The home screen.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Home {
    pub runbooks: Vec<RunbookInfo>,
    /// Runbook files that did not load (`ward check` names them).
    pub runbook_problems: usize,
    pub runbooks_loaded: bool,
    pub targets: Vec<TargetInfo>,
    pub sessions: Vec<SessionRow>,
    pub sessions_loaded: bool,
    pub filter: String,
    pub filtering: bool,
    pub focus: Option<HomePane>,
    pub runbook_sel: usize,
    pub target_sel: usize,
    pub session_sel: usize,
    /// The team's live sessions from the store; `None` without a store
    /// (the pane is not shown).
    pub team: Option<Vec<TeamRow>>,
    /// Why the store could not be read, the last time it was tried.
    pub team_error: Option<String>,
    pub team_sel: usize,
    /// When the team's list was last asked for.
    pub team_asked: Option<DateTime<Utc>>,
    /// The team's live sessions on the target a runbook is about to start
    /// on, shown until the operator confirms (Enter again) or not.
    pub beside: Vec<TeamRow>,
}

impl Home {
    pub fn focus(&self) -> HomePane {
        self.focus.unwrap_or(HomePane::Runbooks)
    }

    /// Indices of the runbooks the filter lets through: every word of the
    /// filter must appear in the id, the title or a trigger (alert name).
    pub fn visible(&self) -> Vec<usize> {
        let words: Vec<String> = self
            .filter
            .split_whitespace()
            .map(str::to_lowercase)
            .collect();
        self.runbooks
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                words.iter().all(|w| {
                    r.id.to_lowercase().contains(w)
                        || r.title.to_lowercase().contains(w)
                        || r.triggers.iter().any(|t| t.to_lowercase().contains(w))
                })
            })
            .map(|(i, _)| i)
            .collect()
    }
}

/// A popup over the current screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlay {
    Help {
        scroll: u16,
    },
    /// Standing approvals, with the selected one.
    Standing {
        sel: usize,
    },
}

/// A line for the status bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub text: String,
    pub error: bool,
}

/// A recorded session read from disk (answer to [`Cmd::OpenSession`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedSession {
    pub path: PathBuf,
    pub events: Vec<Event>,
    pub verification: Verification,
    /// The runbook file the log's provenance names, when it still reads
    /// as the same runbook (used when the loaded list has no such id).
    pub runbook: Option<RunbookInfo>,
}

/// What the home screen asks the launcher for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchRequest {
    pub runbook: String,
    pub target: String,
    /// The team's other live sessions on the target, which the operator
    /// confirmed starting beside (recorded in `session_started`).
    pub concurrent: Vec<crate::journal::events::Concurrent>,
}

/// Everything that can happen to the app.
#[derive(Debug, Clone)]
pub enum Msg {
    Key(KeyEvent),
    Paste(String),
    Mouse(MouseEvent),
    Resize(u16, u16),
    /// The clock moved (spinners, elapsed times).
    Tick(DateTime<Utc>),
    /// An event of the live session.
    Event(Box<Event>),
    /// The live session's event channel closed.
    EngineGone,
    RunbooksLoaded {
        runbooks: Vec<RunbookInfo>,
        problems: usize,
    },
    SessionsScanned(Vec<SessionRow>),
    /// Answer to [`Cmd::OpenSession`] `request`.
    Loaded {
        request: u64,
        result: Result<LoadedSession, Arc<AuditError>>,
    },
    /// The launcher started a session; its events follow.
    Attached(SessionInfo),
    LaunchFailed(String),
    /// The team's live sessions (answer to [`Cmd::LoadTeam`]).
    TeamLoaded(Result<Vec<TeamRow>, String>),
    /// A remote session's answer to a request sent from here.
    Answered(crate::store::bridge::Answered),
}

/// A side effect for the runtime. `update` never performs one itself.
#[derive(Debug, Clone, PartialEq)]
pub enum Cmd {
    /// Send an op to the live session.
    SendOp(Op),
    /// Start a session (the launcher the CLI supplied does it).
    StartSession(LaunchRequest),
    /// Read a session log and answer with [`Msg::Loaded`] tagged `request`.
    OpenSession {
        request: u64,
        path: PathBuf,
    },
    /// Read the team's live sessions from the store.
    LoadTeam,
    /// Follow a live session of the team through the store (its events
    /// in, this operator's decisions out as store requests).
    Attach(TeamRow),
    Quit,
    Batch(Vec<Cmd>),
}

/// The whole state of the TUI.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    pub screen: Screen,
    /// Who approves: every op names this operator.
    pub operator: String,
    pub theme: Theme,
    pub now: DateTime<Utc>,
    /// The terminal's size (columns, rows).
    pub size: (u16, u16),
    pub home: Home,
    pub session: Option<SessionView>,
    pub dialog: Option<ApprovalDialog>,
    pub overlay: Option<Overlay>,
    pub notice: Option<Notice>,
    /// An answer to the agent's question being typed.
    pub answer: Option<String>,
    /// An action waiting to be pressed again (cancel, quit a live session).
    pub confirm: Option<Action>,
    /// Where Back goes from a replay.
    pub back_to: Screen,
    next_request: u64,
    /// The one `OpenSession` whose answer is still wanted.
    pending_open: Option<u64>,
}

impl App {
    pub fn new(screen: Screen, operator: &str, theme: Theme, now: DateTime<Utc>) -> App {
        App {
            screen,
            operator: operator.to_string(),
            theme,
            now,
            size: (100, 30),
            home: Home::default(),
            session: None,
            dialog: None,
            overlay: None,
            notice: None,
            answer: None,
            confirm: None,
            back_to: screen,
            next_request: 1,
            pending_open: None,
        }
    }

    /// The app showing a live session.
    pub fn with_session(
        info: SessionInfo,
        operator: &str,
        theme: Theme,
        now: DateTime<Utc>,
    ) -> App {
        let mut app = App::new(Screen::Session, operator, theme, now);
        app.session = Some(SessionView::live(info));
        app
    }

    /// A new request number for [`Cmd::OpenSession`]; its answer is the
    /// only one wanted from now on.
    pub(super) fn open_request(&mut self) -> u64 {
        let request = self.next_request;
        self.next_request += 1;
        self.pending_open = Some(request);
        request
    }

    pub(super) fn note(&mut self, text: impl Into<String>) {
        self.notice = Some(Notice {
            text: text.into(),
            error: false,
        });
    }

    pub(super) fn warn(&mut self, text: impl Into<String>) {
        self.notice = Some(Notice {
            text: text.into(),
            error: true,
        });
    }

    /// The key contexts in force, most specific first.
    pub fn contexts(&self) -> Vec<Context> {
        // The help can open over the dialog; it is on top.
        match self.overlay {
            Some(Overlay::Help { .. }) => return vec![Context::Help],
            Some(Overlay::Standing { .. }) => return vec![Context::StandingList],
            None => {}
        }
        if let (Some(d), Some(s)) = (&self.dialog, &self.session) {
            return dialog::contexts(d, s);
        }
        if self.answer.is_some() {
            return vec![Context::AnswerForm];
        }
        match self.screen {
            Screen::Home if self.home.filtering => vec![Context::Filter],
            Screen::Home => vec![Context::Home, Context::Lists, Context::Global],
            Screen::Audit => vec![Context::Audit, Context::Lists, Context::Global],
            Screen::Session => match &self.session {
                // Approving, cancelling and answering need a session that
                // still runs; after it ends only looking around is left.
                Some(s) if s.is_live() && !s.state.sealed && !s.closed => {
                    if s.offers_next() {
                        vec![
                            Context::HandOff,
                            Context::Live,
                            Context::Lists,
                            Context::Global,
                        ]
                    } else {
                        vec![Context::Live, Context::Lists, Context::Global]
                    }
                }
                Some(s) if s.is_live() => vec![Context::Lists, Context::Global],
                _ => vec![Context::Replay, Context::Lists, Context::Global],
            },
        }
    }

    /// Whether anything on screen moves with the clock.
    pub fn animating(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| s.is_live() && !s.state.sealed && !s.closed)
    }
}

/// Applies `msg` to `app`; returns the side effect to perform, if any.
pub fn update(app: &mut App, msg: Msg) -> Option<Cmd> {
    match msg {
        Msg::Tick(now) => {
            app.now = now;
            // The team's list is refreshed every few seconds on the home
            // screen.
            let due = app.home.team.is_some()
                && app.screen == Screen::Home
                && app.home.team_asked.is_none_or(|t| {
                    now.signed_duration_since(t).num_seconds() >= TEAM_REFRESH_SECS
                });
            if due {
                app.home.team_asked = Some(now);
                return Some(Cmd::LoadTeam);
            }
            None
        }
        Msg::Resize(w, h) => {
            app.size = (w, h);
            None
        }
        Msg::Key(k) => {
            if matches!(k.kind, KeyEventKind::Press | KeyEventKind::Repeat) {
                on_key(app, k)
            } else {
                None
            }
        }
        Msg::Paste(text) => {
            on_paste(app, &text);
            None
        }
        Msg::Mouse(m) => {
            navigate::on_mouse(app, m);
            None
        }
        Msg::Event(ev) => {
            on_event(app, &ev);
            None
        }
        Msg::EngineGone => {
            if let Some(s) = app.session.as_mut().filter(|s| s.is_live()) {
                s.closed = true;
                s.closed_at.get_or_insert(app.now);
                s.state.end_of_log();
                if !s.state.sealed {
                    app.warn("the session engine stopped before sealing the log");
                }
            }
            app.dialog = None;
            None
        }
        Msg::RunbooksLoaded { runbooks, problems } => {
            app.home.runbooks = runbooks;
            app.home.runbook_problems = problems;
            app.home.runbooks_loaded = true;
            app.home.runbook_sel = 0;
            None
        }
        Msg::SessionsScanned(rows) => {
            app.home.sessions = rows;
            app.home.sessions_loaded = true;
            app.home.session_sel = app
                .home
                .session_sel
                .min(app.home.sessions.len().saturating_sub(1));
            None
        }
        Msg::Loaded { request, result } => {
            on_loaded(app, request, result);
            None
        }
        Msg::Attached(info) => {
            app.back_to = app.screen;
            app.session = Some(SessionView::live(info));
            app.screen = Screen::Session;
            app.notice = None;
            None
        }
        Msg::LaunchFailed(e) => {
            app.warn(format!("could not start the session: {e}"));
            None
        }
        Msg::TeamLoaded(Ok(rows)) => {
            app.home.team_sel = app.home.team_sel.min(rows.len().saturating_sub(1));
            app.home.team = Some(rows);
            app.home.team_error = None;
            None
        }
        Msg::TeamLoaded(Err(e)) => {
            app.home.team_error = Some(e);
            None
        }
        Msg::Answered(a) => {
            match a.answer {
                Some(crate::session::inbox::Answer::Recorded) => {
                    app.note(format!("the session recorded the {}", a.what));
                }
                Some(crate::session::inbox::Answer::Refused { reason }) => {
                    app.warn(format!("the session refused the {}: {reason}", a.what));
                }
                None => app.note(format!(
                    "the {} is in the store; the session has not answered yet",
                    a.what
                )),
            }
            None
        }
    }
}

/// Seconds between reads of the team's live sessions on the home screen.
pub const TEAM_REFRESH_SECS: i64 = 5;

/// The answer to [`Cmd::OpenSession`]: the replay opens at its first event.
fn on_loaded(app: &mut App, request: u64, result: Result<LoadedSession, Arc<AuditError>>) {
    // An answer nobody waits for any more (the operator opened
    // another session meanwhile) is dropped.
    if app.pending_open != Some(request) {
        return;
    }
    app.pending_open = None;
    match result {
        Ok(l) => {
            let state = SessionState::from_events(&l.events);
            let runbook = app
                .home
                .runbooks
                .iter()
                .find(|r| r.id == state.runbook)
                .cloned()
                .or(l.runbook);
            let info = SessionInfo {
                runbook,
                target: state
                    .target
                    .get("name")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string(),
                environment: state.environment.clone(),
                log_path: Some(l.path.clone()),
            };
            app.back_to = app.screen;
            app.session = Some(SessionView::replay(
                info,
                l.path,
                l.events,
                l.verification,
                1,
            ));
            app.screen = Screen::Session;
            app.notice = None;
        }
        Err(e) => app.warn(e.to_string()),
    }
}

fn on_event(app: &mut App, ev: &Event) {
    let Some(s) = app.session.as_mut().filter(|s| s.is_live()) else {
        return;
    };
    s.apply(ev);
    if ev.kind == "asked" {
        app.notice = Some(Notice {
            text: "the agent asks a question: A to answer".into(),
            error: false,
        });
    }
    for p in s.state.awaiting_approval() {
        if s.offered.insert(p.id.clone()) {
            s.queue.push_back(p.id.clone());
        }
    }
    s.queue.retain(|id| {
        s.state
            .proposal(id)
            .is_some_and(|p| p.status == Status::AwaitingApproval)
    });
    if s.state.sealed {
        // Nothing can be approved in a sealed log.
        s.queue.clear();
    }
    // The dialog's proposal was decided elsewhere (another operator, a
    // standing approval) or the session ended: the dialog goes.
    if let Some(d) = &app.dialog {
        let waiting = !s.state.sealed
            && s.state
                .proposal(&d.proposal)
                .is_some_and(|p| p.status == Status::AwaitingApproval);
        if !waiting {
            app.dialog = None;
        }
    }
    // Never over something the operator is typing or reading.
    if app.dialog.is_none() && app.overlay.is_none() && app.answer.is_none() {
        dialog::open_next(app);
    }
}

fn on_paste(app: &mut App, text: &str) {
    // A paste never submits: newlines become spaces.
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if let Some(a) = app.answer.as_mut() {
        a.push_str(&clean);
    } else if let Some(d) = app.dialog.as_mut() {
        dialog::paste(d, &clean);
    } else if app.screen == Screen::Home && app.home.filtering {
        app.home.filter.push_str(&clean);
        app.home.runbook_sel = 0;
    }
}

fn on_key(app: &mut App, k: KeyEvent) -> Option<Cmd> {
    let key = Key::from_event(&k);
    let contexts = app.contexts();
    let action = keys::action(&contexts, key);
    // A pending "press again" is for that key only.
    let confirmed = match (app.confirm.take(), action) {
        (Some(pending), Some(a)) if pending == a => true,
        (Some(_), _) => {
            app.notice = None;
            false
        }
        _ => false,
    };
    let Some(action) = action else {
        // Unbound printable keys type into the field in focus.
        if let KeyCode::Char(c) = k.code
            && !k
                .modifiers
                .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
        {
            type_char(app, c);
        }
        return None;
    };
    // Most specific first, as `contexts` orders them: the help can be
    // open over the dialog.
    if let Some(ov) = app.overlay {
        return navigate::overlay_action(app, ov, action);
    }
    if app.dialog.is_some() {
        return dialog::action(app, action);
    }
    if app.answer.is_some() {
        return navigate::answer_action(app, action);
    }
    match app.screen {
        Screen::Home => navigate::home_action(app, action, confirmed),
        Screen::Audit => navigate::audit_action(app, action),
        Screen::Session => session_keys::session_action(app, action, confirmed),
    }
}

fn type_char(app: &mut App, c: char) {
    if let Some(d) = app.dialog.as_mut() {
        dialog::type_char(d, c);
    } else if let Some(a) = app.answer.as_mut() {
        if a.chars().count() < 2000 {
            a.push(c);
        }
    } else if app.screen == Screen::Home && app.home.filtering {
        app.home.filter.push(c);
        app.home.runbook_sel = 0;
    }
}
