//! The terminal UI: home screen (runbooks, targets, recent sessions), the
//! session screen (steps, transcript, detail, status bar), the approval
//! dialog, and the audit viewer that replays a recorded session in the same
//! session screen.
//!
//! The Elm Architecture: [`App`] is the state, [`Msg`] what happens,
//! [`update`] the only place state changes (pure: no I/O) and [`view`]
//! draws `&App` without changing it. The session screen renders a
//! `SessionState` folded from the session's audit events, so a live
//! session and a recorded one look the same. A running session is a queue
//! pair: its events come in on a channel, [`Op`]s go out on another.
//!
//! What this module must never do:
//! - approve without an explicit, confirmed human decision: an approval is
//!   only sent from the approval form, with a non-empty reason, with the
//!   environment's name typed out in prod; Esc and Ctrl-C never approve;
//! - offer "approve for the rest of this session" where the policy does not
//!   allow it (destructive, privilege or unknown statements, or verdicts
//!   needing more than one approver);
//! - draw pictures from anything but the summarizers' facts;
//! - print to the terminal outside the UI (logs go to a file).
//!
//! Only this module and `cli` may use ratatui and crossterm.
//!
//! Where things are: `app` holds the state and `update`; what keys do is
//! in `dialog` (the approval dialog), `session_keys` (the session screen)
//! and `navigate` (home, audit list, overlays, mouse), with the key table
//! in `keys`. Drawing is `view`, with `detail_view` and `dialog_view` for
//! the two largest parts. The only file and channel I/O is in `load` and
//! `runtime`, which run it off the UI loop.
//!
//! [`Op`]: crate::session::runner::Op

mod app;
mod cells;
mod detail_view;
mod dialog;
mod dialog_view;
mod keys;
mod layout;
mod list_cache;
mod load;
mod log;
mod navigate;
mod pictures;
mod runtime;
mod session;
mod session_keys;
mod sql_view;
mod term;
mod text;
mod theme;
mod view;

#[cfg(test)]
mod tests;

use std::io;

use chrono::Utc;
use crossterm::event::EventStream;

pub use app::{
    App, ApprovalDialog, Cmd, DialogMode, Field, Home, HomePane, LaunchRequest, LoadedSession, Msg,
    Notice, Overlay, Screen, SessionRow, TargetInfo, TeamRow, update,
};
pub use cells::{Body, Cell};
pub use keys::{Action, BINDINGS, Binding, Context, Key};
pub use load::{load_runbooks, open_session, scan_sessions};
pub use log::{LogError, init_file_log};
pub use pictures::{ChainNode, Series};
pub use runtime::{LaunchError, Launched, Launcher, SessionChannels, TuiExit};
pub use session::{
    Pane, Replay, RunbookInfo, SessionInfo, SessionView, StepInfo, StepRow, StepStatus,
    offers_for_session,
};
pub use term::{TerminalGuard, install_panic_hook, restore};
pub use theme::{Theme, is_prod};
pub use view::view;

use crate::config::Config;
use runtime::{Runtime, run_loop};

/// How the TUI starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TuiOptions {
    /// Who approves: every op the TUI sends names this operator.
    pub operator: String,
    /// No colours (set from `NO_COLOR` by [`TuiOptions::new`]).
    pub no_color: bool,
}

impl TuiOptions {
    /// Options for `operator`, with `NO_COLOR` read from the environment.
    pub fn new(operator: impl Into<String>) -> TuiOptions {
        TuiOptions {
            operator: operator.into(),
            no_color: Theme::no_color_from_env(),
        }
    }
}

/// Starts loading runbooks and scanning session logs off the UI loop.
fn start_loading(rt: &Runtime, cfg: &Config) {
    let c = cfg.clone();
    rt.spawn_job(move || {
        let (runbooks, problems) = load_runbooks(&c);
        Msg::RunbooksLoaded { runbooks, problems }
    });
    let dir = cfg.sessions.clone();
    rt.spawn_job(move || Msg::SessionsScanned(scan_sessions(&dir)));
}

async fn run(app: App, rt: Runtime) -> io::Result<TuiExit> {
    let mut guard = TerminalGuard::enter()?;
    let result = run_loop(&mut guard.terminal, app, rt, EventStream::new()).await;
    drop(guard);
    result.map(|(_, exit)| exit)
}

/// `ward`: the home screen. Enter on a runbook asks `launcher` to start it
/// on the chosen target, then shows that session live.
pub async fn run_home(
    cfg: &Config,
    launcher: Box<dyn Launcher>,
    opts: TuiOptions,
) -> io::Result<TuiExit> {
    let mut app = App::new(
        Screen::Home,
        &opts.operator,
        Theme::new(opts.no_color),
        Utc::now(),
    );
    app.home.targets = TargetInfo::from_config(cfg);
    let mut rt = Runtime::new(None, Some(launcher));
    // With a team store, the team's live sessions are listed too.
    if let Some(spec) = &cfg.spec.store {
        app.home.team = Some(Vec::new());
        match spec.url().and_then(|u| crate::store::Store::open(&u)) {
            Ok(store) => rt.store = Some(store),
            Err(e) => app.home.team_error = Some(e.to_string()),
        }
    }
    start_loading(&rt, cfg);
    run(app, rt).await
}

/// `ward attach SESSION`: a live session of the team followed through the
/// store, shown as a live session here; approvals, rejections and answers
/// given here are store requests the session answers.
pub async fn run_attached(
    store: crate::store::Store,
    session: String,
    info: SessionInfo,
    opts: TuiOptions,
) -> io::Result<TuiExit> {
    let app = App::with_session(info, &opts.operator, Theme::new(opts.no_color), Utc::now());
    let mut rt = Runtime::new(Some(SessionChannels::follow(store.clone(), session)), None);
    rt.store = Some(store);
    run(app, rt).await
}

/// `ward run RUNBOOK` (not headless): one live session. The caller has
/// spawned the engine with the other ends of `channels`.
pub async fn run_session(
    info: SessionInfo,
    channels: SessionChannels,
    opts: TuiOptions,
) -> io::Result<TuiExit> {
    let app = App::with_session(info, &opts.operator, Theme::new(opts.no_color), Utc::now());
    run(app, Runtime::new(Some(channels), None)).await
}

/// `ward audit` without arguments: the recorded sessions with their
/// verification; Enter replays one step by step. `open` (`ward audit
/// replay ID`): that session's log opens at once, as if picked.
pub async fn run_audit(
    cfg: &Config,
    opts: TuiOptions,
    open: Option<std::path::PathBuf>,
) -> io::Result<TuiExit> {
    let mut app = App::new(
        Screen::Audit,
        &opts.operator,
        Theme::new(opts.no_color),
        Utc::now(),
    );
    let mut rt = Runtime::new(None, None);
    start_loading(&rt, cfg);
    if let Some(path) = open {
        let request = app.open_request();
        rt.execute(&mut app, app::Cmd::OpenSession { request, path });
    }
    run(app, rt).await
}
