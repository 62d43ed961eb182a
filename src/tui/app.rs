//! The Elm Architecture core of the TUI: [`App`] is the whole state,
//! [`Msg`] everything that can happen, [`update`] the only place state
//! changes, and [`Cmd`] the side effects it asks the runtime for.
//!
//! `update` is pure: no I/O, no clock, no channel. It never approves
//! anything on its own: the only [`Op::Approve`] it emits is the answer to
//! Enter in the approval form with a non-empty reason, with the
//! environment's name typed out in prod, for a proposal that is still
//! waiting. Esc and Ctrl-C in the dialog close it and emit nothing.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind};

use crate::audit::{self, Event, Verification};
use crate::session::events::ProposalId;
use crate::session::runner::Op;
use crate::session::{SessionState, Status};

use super::keys::{self, Action, Context, Key};
use super::layout;
use super::session::{Pane, RunbookInfo, SessionInfo, SessionView, offers_for_session};
use super::theme::{Theme, is_prod};

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

/// Reads and verifies every session log in `dir`, newest first. This does
/// I/O: the runtime runs it off the UI loop.
pub fn scan_sessions(dir: &Path) -> Vec<SessionRow> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files.reverse();
    files
        .into_iter()
        .filter_map(|path| {
            let (events, verification) = match audit::read_events(&path) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read a session log");
                    return None;
                }
            };
            let s = SessionState::from_events(&events);
            Some(SessionRow {
                id: path
                    .file_stem()
                    .and_then(|x| x.to_str())
                    .unwrap_or_default()
                    .to_string(),
                path,
                started: s.started_at,
                operator: s.operator,
                runbook: s.runbook,
                environment: s.environment,
                outcome: s.outcome,
                verification,
            })
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HomePane {
    Runbooks,
    Targets,
    Sessions,
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

/// The approval dialog's stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogMode {
    /// Shows what would run and why it needs approval; `a` or `r` next.
    Choose,
    Approve,
    Reject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Reason,
    /// The environment's name, typed out (prod only).
    Confirm,
    /// "Approve this same statement for the rest of this session".
    ForSession,
}

/// The approval dialog for one proposal. What it shows is read from the
/// session state at each frame, so approvals arriving from other operators
/// appear while it is open.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalDialog {
    pub proposal: crate::session::events::ProposalId,
    pub mode: DialogMode,
    pub reason: String,
    pub confirm: String,
    pub for_session: bool,
    pub field: Field,
    pub error: Option<String>,
}

impl ApprovalDialog {
    pub fn new(proposal: ProposalId, mode: DialogMode) -> ApprovalDialog {
        ApprovalDialog {
            proposal,
            mode,
            reason: String::new(),
            confirm: String::new(),
            for_session: false,
            field: Field::Reason,
            error: None,
        }
    }
}

/// The fields of the form, in Tab order.
pub fn dialog_fields(d: &ApprovalDialog, session: &SessionView) -> Vec<Field> {
    let mut f = vec![Field::Reason];
    if d.mode == DialogMode::Approve {
        if is_prod(session.environment()) {
            f.push(Field::Confirm);
        }
        if session
            .state
            .proposal(&d.proposal)
            .is_some_and(offers_for_session)
        {
            f.push(Field::ForSession);
        }
    }
    f
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
}

/// What the home screen asks the launcher for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchRequest {
    pub runbook: String,
    pub target: String,
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
        result: Result<LoadedSession, String>,
    },
    /// The launcher started a session; its events follow.
    Attached(SessionInfo),
    LaunchFailed(String),
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

    fn note(&mut self, text: impl Into<String>) {
        self.notice = Some(Notice {
            text: text.into(),
            error: false,
        });
    }

    fn warn(&mut self, text: impl Into<String>) {
        self.notice = Some(Notice {
            text: text.into(),
            error: true,
        });
    }

    /// The key contexts in force, most specific first.
    pub fn contexts(&self) -> Vec<Context> {
        if let (Some(d), Some(s)) = (&self.dialog, &self.session) {
            return match d.mode {
                DialogMode::Choose => vec![Context::Dialog],
                _ if d.field == Field::ForSession
                    && dialog_fields(d, s).contains(&Field::ForSession) =>
                {
                    vec![Context::DialogCheckbox, Context::DialogForm]
                }
                _ => vec![Context::DialogForm],
            };
        }
        if self.answer.is_some() {
            return vec![Context::AnswerForm];
        }
        match self.overlay {
            Some(Overlay::Help { .. }) => return vec![Context::Help],
            Some(Overlay::Standing { .. }) => return vec![Context::StandingList],
            None => {}
        }
        match self.screen {
            Screen::Home if self.home.filtering => vec![Context::Filter],
            Screen::Home => vec![Context::Home, Context::Lists, Context::Global],
            Screen::Audit => vec![Context::Audit, Context::Lists, Context::Global],
            Screen::Session => match &self.session {
                Some(s) if s.is_live() => vec![Context::Live, Context::Lists, Context::Global],
                _ => vec![Context::Replay, Context::Lists, Context::Global],
            },
        }
    }

    /// Whether anything on screen moves with the clock.
    pub fn animating(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| s.is_live() && !s.state.sealed)
    }
}

/// Applies `msg` to `app`; returns the side effect to perform, if any.
pub fn update(app: &mut App, msg: Msg) -> Option<Cmd> {
    match msg {
        Msg::Tick(now) => {
            app.now = now;
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
            on_mouse(app, m);
            None
        }
        Msg::Event(ev) => {
            on_event(app, &ev);
            None
        }
        Msg::EngineGone => {
            if let Some(s) = app.session.as_mut().filter(|s| s.is_live()) {
                s.closed = true;
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
            // An answer nobody waits for any more (the operator opened
            // another session meanwhile) is dropped.
            if app.pending_open != Some(request) {
                return None;
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
                        .cloned();
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
                Err(e) => app.warn(e),
            }
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
        open_next(app);
    }
}

/// Opens the dialog for the next queued proposal.
fn open_next(app: &mut App) {
    if let Some(s) = app.session.as_mut()
        && let Some(id) = s.queue.pop_front()
    {
        app.dialog = Some(ApprovalDialog::new(id, DialogMode::Choose));
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
        match (d.mode, d.field) {
            (DialogMode::Choose, _) | (_, Field::ForSession) => {}
            (_, Field::Reason) => d.reason.push_str(&clean),
            (_, Field::Confirm) => d.confirm.push_str(&clean),
        }
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
    if app.dialog.is_some() {
        return dialog_action(app, action);
    }
    if app.answer.is_some() {
        return answer_action(app, action);
    }
    if let Some(ov) = app.overlay {
        return overlay_action(app, ov, action);
    }
    match app.screen {
        Screen::Home => home_action(app, action),
        Screen::Audit => audit_action(app, action),
        Screen::Session => session_action(app, action, confirmed),
    }
}

fn type_char(app: &mut App, c: char) {
    if app.dialog.is_none()
        && let Some(a) = app.answer.as_mut()
    {
        if a.chars().count() < 2000 {
            a.push(c);
        }
        return;
    }
    if let Some(d) = app.dialog.as_mut() {
        if d.mode == DialogMode::Choose {
            return;
        }
        let field = match d.field {
            Field::Reason => &mut d.reason,
            Field::Confirm => &mut d.confirm,
            Field::ForSession => return,
        };
        if field.chars().count() < 500 {
            field.push(c);
        }
        d.error = None;
    } else if app.screen == Screen::Home && app.home.filtering {
        app.home.filter.push(c);
        app.home.runbook_sel = 0;
    }
}

fn dialog_action(app: &mut App, action: Action) -> Option<Cmd> {
    let (Some(d), Some(s)) = (app.dialog.as_mut(), app.session.as_ref()) else {
        return None;
    };
    match action {
        Action::Close => {
            // Closing approves nothing and rejects nothing; the proposal
            // keeps waiting and `a` opens the dialog again.
            app.dialog = None;
            let waiting = s.state.awaiting_approval().len();
            if waiting > 0 {
                app.note(format!(
                    "closed: nothing approved or rejected; {waiting} still waiting"
                ));
            }
            None
        }
        Action::Approve => {
            d.mode = DialogMode::Approve;
            d.field = Field::Reason;
            d.error = None;
            None
        }
        Action::Reject => {
            d.mode = DialogMode::Reject;
            d.field = Field::Reason;
            d.error = None;
            None
        }
        Action::NextField | Action::PrevField => {
            let fields = dialog_fields(d, s);
            let at = fields.iter().position(|f| *f == d.field).unwrap_or(0);
            let n = fields.len();
            let next = if action == Action::NextField {
                (at + 1) % n
            } else {
                (at + n - 1) % n
            };
            d.field = fields[next];
            None
        }
        Action::DeleteChar => {
            match d.field {
                Field::Reason => {
                    d.reason.pop();
                }
                Field::Confirm => {
                    d.confirm.pop();
                }
                Field::ForSession => {}
            }
            None
        }
        Action::Toggle => {
            if d.field == Field::ForSession && dialog_fields(d, s).contains(&Field::ForSession) {
                d.for_session = !d.for_session;
            }
            None
        }
        Action::Submit => submit(app),
        _ => None,
    }
}

/// Enter in the form: checks every condition, then emits the one op.
fn submit(app: &mut App) -> Option<Cmd> {
    let (Some(d), Some(s)) = (app.dialog.as_mut(), app.session.as_ref()) else {
        return None;
    };
    let Some(p) = s
        .state
        .proposal(&d.proposal)
        .filter(|p| p.status == Status::AwaitingApproval)
    else {
        app.dialog = None;
        app.warn("that proposal no longer waits for approval");
        return None;
    };
    let reason = d.reason.trim().to_string();
    let step = p.step_id.clone().unwrap_or_else(|| "ad-hoc".into());
    let cmd = match d.mode {
        DialogMode::Choose => return None,
        DialogMode::Reject => {
            if reason.is_empty() {
                d.error = Some("a rejection needs a reason: it goes back to the agent".into());
                d.field = Field::Reason;
                return None;
            }
            Cmd::SendOp(Op::Reject {
                proposal: p.id.clone(),
                operator: app.operator.clone(),
                reason,
            })
        }
        DialogMode::Approve => {
            if p.approvals.iter().any(|(o, _)| *o == app.operator) {
                d.error = Some(format!(
                    "{} already approved this; a different operator must give the next approval",
                    app.operator
                ));
                return None;
            }
            if reason.is_empty() {
                d.error = Some("an approval needs a reason".into());
                d.field = Field::Reason;
                return None;
            }
            let env = s.environment();
            if is_prod(env) && d.confirm.trim() != env {
                d.error = Some(format!("type the environment's name, {env}, to confirm"));
                d.field = Field::Confirm;
                return None;
            }
            Cmd::SendOp(Op::Approve {
                proposal: p.id.clone(),
                operator: app.operator.clone(),
                reason,
                for_session: d.for_session && offers_for_session(p),
            })
        }
    };
    let word = if d.mode == DialogMode::Approve {
        "approval"
    } else {
        "rejection"
    };
    app.dialog = None;
    app.note(format!("{word} of {step} sent"));
    open_next(app);
    Some(cmd)
}

fn answer_action(app: &mut App, action: Action) -> Option<Cmd> {
    match action {
        Action::Close => {
            app.answer = None;
            None
        }
        Action::DeleteChar => {
            if let Some(a) = app.answer.as_mut() {
                a.pop();
            }
            None
        }
        Action::Submit => {
            let text = app.answer.as_deref().unwrap_or_default().trim().to_string();
            if text.is_empty() {
                app.warn("an empty answer is not sent; Esc closes");
                return None;
            }
            app.answer = None;
            app.note("answer sent to the agent");
            Some(Cmd::SendOp(Op::Answer {
                operator: app.operator.clone(),
                text,
            }))
        }
        _ => None,
    }
}

fn overlay_action(app: &mut App, ov: Overlay, action: Action) -> Option<Cmd> {
    match (ov, action) {
        (_, Action::Close) => app.overlay = None,
        (Overlay::Help { scroll }, Action::Up) => {
            app.overlay = Some(Overlay::Help {
                scroll: scroll.saturating_sub(1),
            });
        }
        (Overlay::Help { scroll }, Action::Down) => {
            app.overlay = Some(Overlay::Help {
                scroll: scroll.saturating_add(1),
            });
        }
        (Overlay::Standing { sel }, Action::Up) => {
            app.overlay = Some(Overlay::Standing {
                sel: sel.saturating_sub(1),
            });
        }
        (Overlay::Standing { sel }, Action::Down) => {
            let n = app.session.as_ref().map_or(0, |s| s.state.standing.len());
            app.overlay = Some(Overlay::Standing {
                sel: (sel + 1).min(n.saturating_sub(1)),
            });
        }
        (Overlay::Standing { sel }, Action::Revoke) => {
            let s = app.session.as_ref()?;
            let (fingerprint, _, _) = s.state.standing.get(sel)?.clone();
            app.note(format!(
                "revoking the standing approval for {}",
                super::cells::short(&fingerprint)
            ));
            return Some(Cmd::SendOp(Op::Revoke {
                fingerprint,
                operator: app.operator.clone(),
            }));
        }
        _ => {}
    }
    None
}

fn global_action(app: &mut App, action: Action) -> Option<Cmd> {
    match action {
        Action::Help => {
            app.overlay = Some(Overlay::Help { scroll: 0 });
            None
        }
        Action::Quit => Some(Cmd::Quit),
        _ => None,
    }
}

fn step(sel: usize, n: usize, action: Action, page: usize) -> usize {
    let last = n.saturating_sub(1);
    match action {
        Action::Up => sel.saturating_sub(1),
        Action::Down => (sel + 1).min(last),
        Action::PageUp => sel.saturating_sub(page),
        Action::PageDown => (sel + page).min(last),
        Action::Top => 0,
        Action::Bottom => last,
        _ => sel,
    }
}

fn home_action(app: &mut App, action: Action) -> Option<Cmd> {
    let page = usize::from(app.size.1 / 2).max(1);
    let h = &mut app.home;
    match action {
        Action::Filter => {
            h.filtering = true;
            h.focus = Some(HomePane::Runbooks);
        }
        Action::FilterDone => h.filtering = false,
        Action::FilterClear => {
            h.filter.clear();
            h.filtering = false;
            h.runbook_sel = 0;
        }
        Action::DeleteChar => {
            h.filter.pop();
            h.runbook_sel = 0;
        }
        Action::NextPane | Action::PrevPane => {
            let order = [HomePane::Runbooks, HomePane::Targets, HomePane::Sessions];
            let at = order.iter().position(|p| *p == h.focus()).unwrap_or(0);
            let next = if action == Action::NextPane {
                (at + 1) % 3
            } else {
                (at + 2) % 3
            };
            h.focus = Some(order[next]);
        }
        Action::Up
        | Action::Down
        | Action::PageUp
        | Action::PageDown
        | Action::Top
        | Action::Bottom => match h.focus() {
            HomePane::Runbooks => {
                h.runbook_sel = step(h.runbook_sel, h.visible().len(), action, page);
            }
            HomePane::Targets => h.target_sel = step(h.target_sel, h.targets.len(), action, page),
            HomePane::Sessions => {
                h.session_sel = step(h.session_sel, h.sessions.len(), action, page);
            }
        },
        Action::Open => match h.focus() {
            HomePane::Runbooks => return start_session(app),
            HomePane::Targets => h.focus = Some(HomePane::Runbooks),
            HomePane::Sessions => return open_session(app),
        },
        other => return global_action(app, other),
    }
    None
}

/// Enter on a runbook: start it on the chosen target.
fn start_session(app: &mut App) -> Option<Cmd> {
    let h = &app.home;
    let runbook = h
        .visible()
        .get(h.runbook_sel)
        .map(|i| h.runbooks[*i].id.clone())?;
    let Some(target) = h.targets.get(h.target_sel).map(|t| t.name.clone()) else {
        app.warn("no targets: add one under `targets:` in ward.yaml");
        return None;
    };
    app.note(format!("starting {runbook} on {target}…"));
    Some(Cmd::StartSession(LaunchRequest { runbook, target }))
}

fn open_session(app: &mut App) -> Option<Cmd> {
    let row = app.home.sessions.get(app.home.session_sel)?;
    let request = app.next_request;
    app.next_request += 1;
    app.pending_open = Some(request);
    let path = row.path.clone();
    app.note(format!("reading {}…", row.id));
    Some(Cmd::OpenSession { request, path })
}

fn audit_action(app: &mut App, action: Action) -> Option<Cmd> {
    let page = usize::from(app.size.1 / 2).max(1);
    match action {
        Action::Up
        | Action::Down
        | Action::PageUp
        | Action::PageDown
        | Action::Top
        | Action::Bottom => {
            app.home.session_sel =
                step(app.home.session_sel, app.home.sessions.len(), action, page);
            None
        }
        Action::Open => open_session(app),
        other => global_action(app, other),
    }
}

fn session_action(app: &mut App, action: Action, confirmed: bool) -> Option<Cmd> {
    // The view is taken out while the action runs so the rest of the app
    // (notices, dialog, overlays) can change alongside it.
    let Some(mut s) = app.session.take() else {
        return global_action(app, action);
    };
    let (cmd, keep) = session_action_on(app, &mut s, action, confirmed);
    if keep {
        app.session = Some(s);
    }
    cmd
}

fn session_action_on(
    app: &mut App,
    s: &mut SessionView,
    action: Action,
    confirmed: bool,
) -> (Option<Cmd>, bool) {
    let theme = app.theme;
    let size = app.size;
    let live = s.is_live();
    let lay = layout::session(ratatui::layout::Rect::new(0, 0, size.0, size.1));
    let tw = lay.transcript.width.saturating_sub(2);
    let th = usize::from(lay.transcript.height.saturating_sub(2)).max(1);
    match action {
        Action::NextPane | Action::PrevPane => {
            let order = [Pane::Steps, Pane::Transcript, Pane::Detail];
            let at = order.iter().position(|p| *p == s.focus).unwrap_or(0);
            let next = if action == Action::NextPane {
                (at + 1) % 3
            } else {
                (at + 2) % 3
            };
            s.focus = order[next];
            if s.focus != Pane::Detail {
                s.detail_from = s.focus;
                s.detail_scroll = 0;
            }
        }
        Action::Up
        | Action::Down
        | Action::PageUp
        | Action::PageDown
        | Action::Top
        | Action::Bottom => match s.focus {
            Pane::Steps => {
                let rows = s.step_rows();
                let at = s.selected_step(&rows);
                s.step_sel = Some(step(at, rows.len(), action, 5));
                s.detail_scroll = 0;
            }
            Pane::Transcript => {
                if s.cells.is_empty() {
                    return (None, true);
                }
                let at = s.selected_cell().unwrap_or(0);
                let to = step(at, s.cells.len(), action, 5);
                s.detail_scroll = 0;
                if to + 1 >= s.cells.len()
                    && matches!(action, Action::Down | Action::Bottom | Action::PageDown)
                {
                    s.cell_sel = None;
                    s.scroll = super::session::Scroll::default();
                } else {
                    s.cell_sel = Some(to);
                    s.reveal(to, tw, th, &theme);
                }
            }
            Pane::Detail => {
                let page = lay.detail.height.saturating_sub(2).max(1);
                s.detail_scroll = match action {
                    Action::Up => s.detail_scroll.saturating_sub(1),
                    Action::Down => s.detail_scroll.saturating_add(1),
                    Action::PageUp => s.detail_scroll.saturating_sub(page),
                    Action::PageDown => s.detail_scroll.saturating_add(page),
                    Action::Top => 0,
                    _ => u16::MAX / 2,
                };
            }
        },
        Action::Approve | Action::Reject if live => {
            if s.state.sealed || s.closed {
                app.warn("the session has ended; nothing can be approved now");
                return (None, true);
            }
            let Some(id) = s.approval_target() else {
                app.note("nothing is waiting for approval");
                return (None, true);
            };
            s.offered.insert(id.clone());
            s.queue.retain(|q| *q != id);
            let mode = if action == Action::Approve {
                DialogMode::Approve
            } else {
                DialogMode::Reject
            };
            app.dialog = Some(ApprovalDialog::new(id, mode));
        }
        Action::CancelQuery if live => {
            let Some(p) = s.running() else {
                app.note("no query is running");
                return (None, true);
            };
            if confirmed {
                app.note("cancelling the running query…");
                return (Some(Cmd::SendOp(Op::Cancel)), true);
            }
            let step = p.step_id.clone().unwrap_or_else(|| "ad-hoc".into());
            app.confirm = Some(Action::CancelQuery);
            app.warn(format!(
                "press Esc again to cancel {step} and end the session; any other key keeps it running"
            ));
        }
        Action::Answer if live => {
            if s.state.questions.iter().any(|(_, a)| a.is_none()) && !s.state.sealed {
                app.answer = Some(String::new());
            } else {
                app.note("the agent has not asked anything");
            }
        }
        Action::Standing if live => {
            app.overlay = Some(Overlay::Standing { sel: 0 });
        }
        Action::ReplayNext | Action::ReplayPrev | Action::ReplayStart | Action::ReplayEnd => {
            let Some(r) = &s.replay else {
                return (None, true);
            };
            let (cursor, n) = (r.cursor, r.events.len());
            let to = match action {
                Action::ReplayNext => cursor + 1,
                Action::ReplayPrev => cursor.saturating_sub(1).max(1),
                Action::ReplayStart => 1,
                _ => n,
            };
            s.seek(to.min(n));
        }
        Action::Back if !live => {
            app.screen = if app.back_to == Screen::Session {
                Screen::Audit
            } else {
                app.back_to
            };
            return (None, false);
        }
        Action::Quit if live && !s.state.sealed && !s.closed => {
            if confirmed {
                // Leaving stops the session at its next approval; the log
                // records that nobody approved.
                return (
                    Some(Cmd::Batch(vec![Cmd::SendOp(Op::Leave), Cmd::Quit])),
                    true,
                );
            }
            app.confirm = Some(Action::Quit);
            app.warn(
                "press q again to leave: the session stops at the next step that needs approval",
            );
        }
        other => return (global_action(app, other), true),
    }
    (None, true)
}

fn on_mouse(app: &mut App, m: MouseEvent) {
    let delta: isize = match m.kind {
        MouseEventKind::ScrollUp => -3,
        MouseEventKind::ScrollDown => 3,
        _ => return,
    };
    if app.dialog.is_some() || app.overlay.is_some() {
        return;
    }
    let area = ratatui::layout::Rect::new(0, 0, app.size.0, app.size.1);
    let pos = ratatui::layout::Position::new(m.column, m.row);
    let theme = app.theme;
    match app.screen {
        Screen::Session => {
            let Some(s) = app.session.as_mut() else {
                return;
            };
            let lay = layout::session(area);
            if lay.detail.contains(pos) {
                s.detail_scroll = if delta < 0 {
                    s.detail_scroll.saturating_sub(3)
                } else {
                    s.detail_scroll.saturating_add(3)
                };
            } else if lay.steps.contains(pos) {
                let rows = s.step_rows();
                let at = s.selected_step(&rows);
                let a = if delta < 0 { Action::Up } else { Action::Down };
                s.step_sel = Some(step(at, rows.len(), a, 1));
            } else {
                let tw = lay.transcript.width.saturating_sub(2);
                let th = usize::from(lay.transcript.height.saturating_sub(2)).max(1);
                s.scroll_by(delta, tw, th, &theme);
            }
        }
        Screen::Home | Screen::Audit => {
            let a = if delta < 0 { Action::Up } else { Action::Down };
            let h = &mut app.home;
            let lay = layout::home(area);
            if app.screen == Screen::Audit || lay.sessions.contains(pos) {
                h.session_sel = step(h.session_sel, h.sessions.len(), a, 1);
            } else if lay.targets.contains(pos) {
                h.target_sel = step(h.target_sel, h.targets.len(), a, 1);
            } else {
                h.runbook_sel = step(h.runbook_sel, h.visible().len(), a, 1);
            }
        }
    }
}
