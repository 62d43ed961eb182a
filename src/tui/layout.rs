//! Where each pane goes for a given terminal size. One function per screen,
//! used by the views to draw and by `update` to turn a mouse position or a
//! page of scrolling into the right pane and the right number of lines.

use ratatui::layout::{Constraint, Layout, Rect};

/// Rows the status bar takes at the bottom of every screen.
pub const STATUS_ROWS: u16 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLayout {
    pub steps: Rect,
    pub transcript: Rect,
    pub detail: Rect,
    pub status: Rect,
}

/// Wide terminals get three columns (steps | transcript | detail);
/// narrower ones stack the transcript over the detail. The step list
/// gets the `steps_want` columns its names ask for, between its usual
/// width and a quarter (wide) or two fifths (narrow) of the screen; a name
/// longer than that wraps.
pub fn session(area: Rect, steps_want: u16) -> SessionLayout {
    let [main, status] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(STATUS_ROWS)]).areas(area);
    let within = |least: u16, most: u16| steps_want.min(most).max(least);
    if area.width >= 140 {
        let steps_w = within(36, area.width / 4);
        let [steps, transcript, detail] = Layout::horizontal([
            Constraint::Length(steps_w),
            Constraint::Percentage(50),
            Constraint::Percentage(50),
        ])
        .areas(main);
        SessionLayout {
            steps,
            transcript,
            detail,
            status,
        }
    } else {
        let steps_w = within((area.width / 3).clamp(20, 32), area.width * 2 / 5);
        let [steps, right] =
            Layout::horizontal([Constraint::Length(steps_w), Constraint::Min(10)]).areas(main);
        let [transcript, detail] =
            Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(right);
        SessionLayout {
            steps,
            transcript,
            detail,
            status,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HomeLayout {
    pub runbooks: Rect,
    pub targets: Rect,
    pub sessions: Rect,
    pub status: Rect,
    /// The team's live sessions (with a team store), between the targets
    /// and the recent sessions.
    pub team: Option<Rect>,
}

/// Runbooks on the left, targets and recent sessions on the right.
pub fn home(area: Rect) -> HomeLayout {
    let [main, status] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(STATUS_ROWS)]).areas(area);
    let [runbooks, right] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(main);
    let [targets, sessions] =
        Layout::vertical([Constraint::Percentage(35), Constraint::Percentage(65)]).areas(right);
    HomeLayout {
        runbooks,
        targets,
        sessions,
        status,
        team: None,
    }
}

/// [`home`] with the team's live sessions above the recent ones.
pub fn home_with_team(area: Rect) -> HomeLayout {
    let base = home(area);
    let [team, sessions] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)])
            .areas(base.sessions);
    HomeLayout {
        sessions,
        team: Some(team),
        ..base
    }
}

/// The list of recorded sessions and the status bar.
pub fn audit(area: Rect) -> (Rect, Rect) {
    let [main, status] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(STATUS_ROWS)]).areas(area);
    (main, status)
}

/// The help overlay's box.
pub fn help(area: Rect) -> Rect {
    centered(
        area,
        area.width.saturating_sub(6).min(96),
        area.height.saturating_sub(2),
    )
}

/// The lines inside the help overlay's borders.
pub fn help_inner(area: Rect) -> Rect {
    let r = help(area);
    Rect::new(
        r.x + 1,
        r.y + 1,
        r.width.saturating_sub(2),
        r.height.saturating_sub(2),
    )
}

/// A centered box of at most `w` x `h` cells.
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}
