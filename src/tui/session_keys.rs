//! What keys do on the session screen, live or replayed: moving between
//! and within the panes, opening the approval dialog, cancelling the
//! running query, answering the agent, stepping through a replay, leaving.
//!
//! Pure like the rest of `update`: no I/O, no clock. Nothing here approves:
//! `a` and `r` only open the dialog (see `dialog`).

use ratatui::layout::Rect;

use crate::session::runner::Op;

use super::app::{App, Cmd, Overlay, Screen};
use super::dialog::{self, DialogMode};
use super::keys::Action;
use super::navigate::{global_action, step};
use super::session::{Pane, Scroll, SessionView};

/// Whether the session view stays on screen after an action.
type Keep = bool;

/// One action on the session screen. `confirmed` is true when the same key
/// was pressed right before and asked to be pressed again.
pub(super) fn session_action(app: &mut App, action: Action, confirmed: bool) -> Option<Cmd> {
    // The view is taken out while the action runs so the rest of the app
    // (notices, dialog, overlays) can change alongside it.
    let Some(mut s) = app.session.take() else {
        return global_action(app, action);
    };
    let (cmd, keep) = on_view(app, &mut s, action, confirmed);
    if keep {
        app.session = Some(s);
    }
    cmd
}

fn on_view(
    app: &mut App,
    s: &mut SessionView,
    action: Action,
    confirmed: bool,
) -> (Option<Cmd>, Keep) {
    let live = s.is_live();
    // Once the session has ended (or its engine is gone), only looking
    // around, help and quitting work; the key table offers no more.
    let running = live && !s.state.sealed && !s.closed;
    match action {
        Action::NextPane | Action::PrevPane => switch_pane(s, action),
        Action::Up
        | Action::Down
        | Action::PageUp
        | Action::PageDown
        | Action::Top
        | Action::Bottom => move_in_pane(app, s, action),
        Action::Approve | Action::Reject if running => open_approval(app, s, action),
        Action::CancelQuery if running => return (cancel_query(app, s, confirmed), true),
        Action::Answer if running => open_answer(app, s),
        Action::Standing if live => app.overlay = Some(Overlay::Standing { sel: 0 }),
        Action::FollowNext if running && s.offers_next() => {
            let to = s
                .state
                .next
                .as_ref()
                .map(|n| n.runbook.clone())
                .unwrap_or_default();
            app.note(format!("continuing into {to}…"));
            return (
                Some(Cmd::SendOp(Op::Follow {
                    operator: app.operator.clone(),
                })),
                true,
            );
        }
        Action::ReplayNext | Action::ReplayPrev | Action::ReplayStart | Action::ReplayEnd => {
            replay_seek(s, action);
        }
        Action::Back if !live => {
            back_to_list(app);
            return (None, false);
        }
        Action::Quit if running => {
            let next = s
                .offers_next()
                .then(|| s.state.next.as_ref().map(|n| n.runbook.clone()))
                .flatten();
            return (leave(app, confirmed, next.as_deref()), true);
        }
        other => return (global_action(app, other), true),
    }
    (None, true)
}

fn switch_pane(s: &mut SessionView, action: Action) {
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

fn move_in_pane(app: &App, s: &mut SessionView, action: Action) {
    let lay = s.layout(Rect::new(0, 0, app.size.0, app.size.1));
    match s.focus {
        Pane::Steps => {
            let rows = s.step_rows();
            let at = s.selected_step(&rows);
            s.step_sel = Some(step(at, rows.len(), action, 5));
            s.detail_scroll = 0;
        }
        Pane::Transcript => {
            let tw = lay.transcript.width.saturating_sub(2);
            let th = usize::from(lay.transcript.height.saturating_sub(2)).max(1);
            move_in_transcript(app, s, action, tw, th);
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
    }
}

/// Moves the transcript's selection; moving past the last entry follows
/// new entries again.
fn move_in_transcript(app: &App, s: &mut SessionView, action: Action, tw: u16, th: usize) {
    if s.cells.is_empty() {
        return;
    }
    let at = s.selected_cell().unwrap_or(0);
    let to = step(at, s.cells.len(), action, 5);
    s.detail_scroll = 0;
    if to + 1 >= s.cells.len() && matches!(action, Action::Down | Action::Bottom | Action::PageDown)
    {
        s.cell_sel = None;
        s.scroll = Scroll::default();
    } else {
        s.cell_sel = Some(to);
        s.reveal(to, tw, th, &app.theme);
    }
}

/// `a` or `r`: the dialog for the proposal in view (or the oldest waiting).
fn open_approval(app: &mut App, s: &mut SessionView, action: Action) {
    let Some(id) = s.approval_target() else {
        app.note("nothing is waiting for approval");
        return;
    };
    s.offered.insert(id.clone());
    s.queue.retain(|q| *q != id);
    let mode = if action == Action::Approve {
        DialogMode::Approve
    } else {
        DialogMode::Reject
    };
    dialog::open(app, id, mode);
}

/// Esc: asks first; Esc again cancels the running query.
fn cancel_query(app: &mut App, s: &SessionView, confirmed: bool) -> Option<Cmd> {
    let Some(p) = s.running() else {
        app.note("no query is running");
        return None;
    };
    if confirmed {
        app.note("cancelling the running query…");
        return Some(Cmd::SendOp(Op::Cancel));
    }
    let step = p.step_id.clone().unwrap_or_else(|| "ad-hoc".into());
    app.confirm = Some(Action::CancelQuery);
    app.warn(format!(
        "press Esc again to cancel {step} and end the session; any other key keeps it running"
    ));
    None
}

fn open_answer(app: &mut App, s: &SessionView) {
    if s.state.questions.iter().any(|(_, a)| a.is_none()) {
        app.answer = Some(String::new());
    } else {
        app.note("the agent has not asked anything");
    }
}

fn replay_seek(s: &mut SessionView, action: Action) {
    let Some(r) = &s.replay else {
        return;
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

fn back_to_list(app: &mut App) {
    app.screen = if app.back_to == Screen::Session {
        Screen::Audit
    } else {
        app.back_to
    };
}

/// `q` in a running session: asks first; `q` again leaves it, and it stops
/// at its next approval (the log records that nobody approved).
/// A concluded session waiting to continue into `next` ends instead.
fn leave(app: &mut App, confirmed: bool, next: Option<&str>) -> Option<Cmd> {
    if confirmed {
        return Some(Cmd::Batch(vec![Cmd::SendOp(Op::Leave), Cmd::Quit]));
    }
    app.confirm = Some(Action::Quit);
    match next {
        Some(runbook) => app.warn(format!(
            "press q again to leave: the session ends without continuing into {runbook} (n continues)"
        )),
        None => app.warn(
            "press q again to leave: the session stops at the next step that needs approval",
        ),
    }
    None
}
