//! What keys and the mouse do outside the session screen and the approval
//! dialog: the home screen, the list of recorded sessions, the overlays
//! (help, standing approvals), the answer form, and the list movement the
//! screens share.
//!
//! Pure like the rest of `update`: no I/O, no clock. Each function turns
//! one action into changes of the app and at most one [`Cmd`].

use crossterm::event::{MouseEvent, MouseEventKind};
use ratatui::layout::{Position, Rect};

use crate::session::runner::Op;

use super::app::{App, Cmd, HomePane, LaunchRequest, Overlay, Screen};
use super::keys::{self, Action};
use super::layout;

/// Keys in the form that answers the agent's question.
pub(super) fn answer_action(app: &mut App, action: Action) -> Option<Cmd> {
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

/// Keys over the help or the standing approvals.
pub(super) fn overlay_action(app: &mut App, ov: Overlay, action: Action) -> Option<Cmd> {
    match ov {
        Overlay::Help { scroll } => {
            if action == Action::Close {
                app.overlay = None;
            } else {
                let scroll = help_scroll(app.size, scroll, action);
                app.overlay = Some(Overlay::Help { scroll });
            }
            None
        }
        Overlay::Standing { sel } => standing_action(app, sel, action),
    }
}

/// How far the help is scrolled after `action`: never past its last page,
/// so `G` shows the bottom and one `k` after it moves at once.
fn help_scroll(size: (u16, u16), scroll: u16, action: Action) -> u16 {
    let inner = layout::help_inner(Rect::new(0, 0, size.0, size.1));
    let page = inner.height.max(1);
    let rows = u16::try_from(keys::help_rows().len()).unwrap_or(u16::MAX);
    let max = rows.saturating_sub(inner.height);
    let to = match action {
        Action::Up => scroll.saturating_sub(1),
        Action::Down => scroll.saturating_add(1),
        Action::PageUp => scroll.saturating_sub(page),
        Action::PageDown => scroll.saturating_add(page),
        Action::Top => 0,
        Action::Bottom => max,
        _ => scroll,
    };
    to.min(max)
}

fn standing_action(app: &mut App, sel: usize, action: Action) -> Option<Cmd> {
    match action {
        Action::Close => app.overlay = None,
        Action::Up => {
            app.overlay = Some(Overlay::Standing {
                sel: sel.saturating_sub(1),
            });
        }
        Action::Down => {
            let n = app.session.as_ref().map_or(0, |s| s.state.standing.len());
            app.overlay = Some(Overlay::Standing {
                sel: (sel + 1).min(n.saturating_sub(1)),
            });
        }
        Action::Revoke => {
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

/// Keys that work on every screen: help and quit.
pub(super) fn global_action(app: &mut App, action: Action) -> Option<Cmd> {
    match action {
        Action::Help => {
            app.overlay = Some(Overlay::Help { scroll: 0 });
            None
        }
        Action::Quit => Some(Cmd::Quit),
        _ => None,
    }
}

/// A list selection after a move among `n` rows (`page` rows a page).
pub(super) fn step(sel: usize, n: usize, action: Action, page: usize) -> usize {
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

/// Keys on the home screen.
pub(super) fn home_action(app: &mut App, action: Action, confirmed: bool) -> Option<Cmd> {
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
            let mut order = vec![HomePane::Runbooks, HomePane::Targets];
            if h.team.is_some() {
                order.push(HomePane::Team);
            }
            order.push(HomePane::Sessions);
            let n = order.len();
            let at = order.iter().position(|p| *p == h.focus()).unwrap_or(0);
            let next = if action == Action::NextPane {
                (at + 1) % n
            } else {
                (at + n - 1) % n
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
            HomePane::Team => {
                let n = h.team.as_ref().map_or(0, Vec::len);
                h.team_sel = step(h.team_sel, n, action, page);
            }
        },
        Action::Open => match h.focus() {
            HomePane::Runbooks => return start_session(app, confirmed),
            HomePane::Targets => h.focus = Some(HomePane::Runbooks),
            HomePane::Sessions => return open_session(app),
            HomePane::Team => {
                let row = h.team.as_ref().and_then(|t| t.get(h.team_sel)).cloned()?;
                app.note(format!("following {} through the store…", row.session_id));
                return Some(Cmd::Attach(row));
            }
        },
        other => return global_action(app, other),
    }
    None
}

/// Enter on a runbook: start it on the chosen target. Where the team has
/// a live session on that target, the first Enter says whose and the
/// second starts beside it (recorded as acknowledged).
fn start_session(app: &mut App, confirmed: bool) -> Option<Cmd> {
    let h = &app.home;
    let runbook = h
        .visible()
        .get(h.runbook_sel)
        .map(|i| h.runbooks[*i].id.clone())?;
    let Some(target) = h.targets.get(h.target_sel).map(|t| t.name.clone()) else {
        app.warn("no targets: add one under `targets:` in ward.yaml");
        return None;
    };
    let beside: Vec<super::app::TeamRow> = h
        .team
        .iter()
        .flatten()
        .filter(|r| r.target == target)
        .cloned()
        .collect();
    if !beside.is_empty() && !confirmed {
        let who = beside
            .iter()
            .map(|r| {
                format!(
                    "session {} by {} (runbook {}, since {})",
                    r.session_id, r.owner, r.runbook, r.since
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        app.confirm = Some(Action::Open);
        app.warn(format!(
            "{who} is live on {target}: Enter again to start beside it (recorded as acknowledged)"
        ));
        app.home.beside = beside;
        return None;
    }
    app.home.beside.clear();
    app.note(format!("starting {runbook} on {target}…"));
    Some(Cmd::StartSession(LaunchRequest {
        runbook,
        target,
        concurrent: beside.iter().map(|r| r.concurrent(true)).collect(),
    }))
}

fn open_session(app: &mut App) -> Option<Cmd> {
    let row = app.home.sessions.get(app.home.session_sel)?;
    let (path, id) = (row.path.clone(), row.id.clone());
    let request = app.open_request();
    app.note(format!("reading {id}…"));
    Some(Cmd::OpenSession { request, path })
}

/// Keys in the list of recorded sessions.
pub(super) fn audit_action(app: &mut App, action: Action) -> Option<Cmd> {
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

/// The mouse wheel scrolls what is under the pointer.
pub(super) fn on_mouse(app: &mut App, m: MouseEvent) {
    let delta: isize = match m.kind {
        MouseEventKind::ScrollUp => -3,
        MouseEventKind::ScrollDown => 3,
        _ => return,
    };
    if app.dialog.is_some() || app.overlay.is_some() {
        return;
    }
    let area = Rect::new(0, 0, app.size.0, app.size.1);
    let pos = Position::new(m.column, m.row);
    let theme = app.theme;
    match app.screen {
        Screen::Session => {
            let Some(s) = app.session.as_mut() else {
                return;
            };
            let lay = s.layout(area);
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
