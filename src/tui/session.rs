//! The session screen's state: a `SessionState` folded from audit events,
//! the transcript cells built from the same events, and where the operator
//! is looking (selection, scroll). Live sessions and recorded ones (the
//! audit viewer) are the same type; a recorded one also keeps its events
//! and a replay cursor.
//!
//! Nothing here does I/O or sends anything; it only folds what arrives.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use ratatui::layout::Rect;

use crate::audit::{Event, Verification};
use crate::contract::{Contract, Rollback};
use crate::session::events::{EventData, ProposalId};
use crate::session::{ProposalState, SessionState, Status};

use super::cells::Cell;
use super::layout::SessionLayout;
use super::theme::Theme;

/// What the TUI shows of a runbook: taken from a loaded [`Contract`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunbookInfo {
    pub id: String,
    pub title: String,
    pub version: u32,
    pub triggers: Vec<String>,
    pub engines: Vec<String>,
    pub description: Option<String>,
    pub steps: Vec<StepInfo>,
}

/// One step of a runbook, as the step list and the detail pane show it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepInfo {
    pub id: String,
    pub title: Option<String>,
    pub kind: String,
    pub description: Option<String>,
    /// As written in the runbook, with `:name` parameters.
    pub sql: String,
    pub requires: Vec<String>,
    /// `None` for diagnostics; `Some("none")` when irreversible.
    pub rollback: Option<String>,
    /// (SQL, expectation)
    pub verify: Option<(String, String)>,
    /// The condition the runbook proposes it under, as written.
    #[serde(default)]
    pub when: Option<String>,
}

impl From<&Contract> for RunbookInfo {
    fn from(c: &Contract) -> RunbookInfo {
        RunbookInfo {
            id: c.spec.id.clone(),
            title: c.spec.title.clone(),
            version: c.spec.version,
            triggers: c.spec.triggers.clone(),
            engines: c
                .spec
                .engines
                .iter()
                .map(|e| e.name().to_string())
                .collect(),
            description: c.spec.description.clone(),
            steps: c
                .steps
                .iter()
                .map(|s| StepInfo {
                    id: s.spec.id.clone(),
                    title: s.spec.title.clone(),
                    kind: s.spec.kind.name().to_string(),
                    description: s.spec.description.clone(),
                    sql: s.spec.sql.clone(),
                    requires: s.spec.requires.clone(),
                    rollback: match &s.rollback {
                        None => s.spec.rollback.clone(),
                        Some(Rollback::Irreversible) => Some("none".into()),
                        Some(Rollback::Step(id)) => Some(format!("step {id}")),
                        Some(Rollback::Sql(sql)) => Some(sql.clone()),
                    },
                    verify: s
                        .spec
                        .verify
                        .as_ref()
                        .map(|v| (v.sql.clone(), v.expect.clone())),
                    when: s.spec.when.clone(),
                })
                .collect(),
        }
    }
}

impl RunbookInfo {
    /// From the file's contents alone (no validation): what the home list
    /// shows before anything is started.
    pub fn from_spec(spec: &crate::contract::RunbookSpec) -> RunbookInfo {
        RunbookInfo {
            id: spec.id.clone(),
            title: spec.title.clone(),
            version: spec.version,
            triggers: spec.triggers.clone(),
            engines: spec.engines.iter().map(|e| e.name().to_string()).collect(),
            description: spec.description.clone(),
            steps: spec
                .steps
                .iter()
                .map(|s| StepInfo {
                    id: s.id.clone(),
                    title: s.title.clone(),
                    kind: s.kind.name().to_string(),
                    description: s.description.clone(),
                    sql: s.sql.clone(),
                    requires: s.requires.clone(),
                    rollback: s.rollback.as_ref().map(|r| {
                        if spec.steps.iter().any(|o| o.id == r.trim()) {
                            format!("step {}", r.trim())
                        } else {
                            r.clone()
                        }
                    }),
                    verify: s.verify.as_ref().map(|v| (v.sql.clone(), v.expect.clone())),
                    when: s.when.clone(),
                })
                .collect(),
        }
    }

    pub fn step(&self, id: &str) -> Option<&StepInfo> {
        self.steps.iter().find(|s| s.id == id)
    }
}

/// What the caller knows about a session before its first event arrives.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SessionInfo {
    /// The runbook, for the step list (pending steps show too).
    pub runbook: Option<RunbookInfo>,
    /// Target name, as in ward.yaml.
    pub target: String,
    pub environment: String,
    /// Where the session's log is being written.
    pub log_path: Option<PathBuf>,
}

/// A recorded session being replayed.
#[derive(Debug, Clone, PartialEq)]
pub struct Replay {
    pub path: PathBuf,
    pub events: Vec<Event>,
    /// How many of `events` are applied.
    pub cursor: usize,
    pub verification: Verification,
}

/// The panes of the session screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Steps,
    Transcript,
    Detail,
}

/// Where the transcript is scrolled to: the top line shown is line `line`
/// of cell `top`, unless it follows the newest entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scroll {
    pub follow: bool,
    pub top: usize,
    pub line: usize,
}

impl Default for Scroll {
    fn default() -> Scroll {
        Scroll {
            follow: true,
            top: 0,
            line: 0,
        }
    }
}

/// How a step stands, for the step list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStatus {
    Pending,
    Proposed,
    AwaitingApproval,
    /// Allowed or approved, about to run.
    Ready,
    Running,
    /// It started executing and the log ended without its outcome (the
    /// session crashed or its engine went away): how it ended is unknown.
    Interrupted,
    Done,
    Failed,
    /// The session ended without proposing it.
    Skipped,
    Denied,
    Rejected,
    DryRun,
}

impl StepStatus {
    /// How `p` stands in `state`: a step still running when the log ended
    /// is interrupted, not running.
    pub fn of(state: &SessionState, p: &ProposalState) -> StepStatus {
        if state.outcome_missing(p) {
            StepStatus::Interrupted
        } else {
            StepStatus::from_status(p.status)
        }
    }

    pub fn from_status(s: Status) -> StepStatus {
        match s {
            Status::Proposed => StepStatus::Proposed,
            Status::AwaitingApproval => StepStatus::AwaitingApproval,
            Status::Ready => StepStatus::Ready,
            Status::Rejected => StepStatus::Rejected,
            Status::Denied => StepStatus::Denied,
            Status::Running => StepStatus::Running,
            Status::Done => StepStatus::Done,
            Status::Failed => StepStatus::Failed,
            Status::DryRun => StepStatus::DryRun,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Proposed => "proposed",
            StepStatus::AwaitingApproval => "awaiting approval",
            StepStatus::Ready => "ready",
            StepStatus::Running => "running",
            StepStatus::Interrupted => "interrupted — no outcome recorded",
            StepStatus::Done => "done",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Denied => "denied",
            StepStatus::Rejected => "rejected",
            StepStatus::DryRun => "dry run",
        }
    }
}

/// One row of the step list.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRow {
    pub id: String,
    pub title: Option<String>,
    pub kind: Option<String>,
    pub status: StepStatus,
    /// The latest proposal of this step (index into `state.proposals`).
    pub proposal: Option<usize>,
    /// How many times it was proposed.
    pub runs: usize,
}

/// The session screen.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionView {
    pub info: SessionInfo,
    pub state: SessionState,
    pub cells: Vec<Cell>,
    /// `Some` for a recorded session (the audit viewer).
    pub replay: Option<Replay>,
    /// The live session's engine has gone (its channel closed).
    pub closed: bool,
    /// When the app learnt that the engine had gone.
    pub closed_at: Option<DateTime<Utc>>,
    pub focus: Pane,
    /// Which pane the detail follows: the step list or the transcript.
    pub detail_from: Pane,
    /// `None` follows the step of the newest proposal.
    pub step_sel: Option<usize>,
    /// `None` follows the newest entry.
    pub cell_sel: Option<usize>,
    pub scroll: Scroll,
    pub detail_scroll: u16,
    /// Proposals the approval dialog has been opened for, or queued.
    pub offered: BTreeSet<crate::session::events::ProposalId>,
    /// Proposals waiting for the dialog, oldest first.
    pub queue: VecDeque<crate::session::events::ProposalId>,
}

impl SessionView {
    /// A live session, before its first event.
    pub fn live(info: SessionInfo) -> SessionView {
        SessionView {
            info,
            state: SessionState::default(),
            cells: Vec::new(),
            replay: None,
            closed: false,
            closed_at: None,
            focus: Pane::Steps,
            detail_from: Pane::Steps,
            step_sel: None,
            cell_sel: None,
            scroll: Scroll::default(),
            detail_scroll: 0,
            offered: BTreeSet::new(),
            queue: VecDeque::new(),
        }
    }

    /// A recorded session, with its first `cursor` events applied.
    pub fn replay(
        info: SessionInfo,
        path: PathBuf,
        events: Vec<Event>,
        verification: Verification,
        cursor: usize,
    ) -> SessionView {
        let mut v = SessionView::live(info);
        v.replay = Some(Replay {
            path,
            events,
            cursor: 0,
            verification,
        });
        v.seek(cursor);
        v
    }

    /// Where the panes go in `area`: the step list is as wide as its
    /// longest name wants, within reason.
    pub fn layout(&self, area: Rect) -> SessionLayout {
        super::layout::session(area, self.steps_width())
    }

    /// The columns the step list wants: its longest name with the status
    /// glyph, its longest status line or its title, and the borders.
    pub fn steps_width(&self) -> u16 {
        let rows = self.step_rows();
        let names = rows.iter().map(|r| super::text::width(&r.id) + 2);
        let statuses = rows.iter().map(|r| {
            let kind = r.kind.as_deref().filter(|k| *k != "diagnostic");
            2 + r.status.word().len() + kind.map_or(0, |k| k.len() + 3)
        });
        let title = self
            .info
            .runbook
            .as_ref()
            .map_or(0, |rb| super::text::width(&rb.id) + "  Steps · ".len());
        let want = names.chain(statuses).max().unwrap_or(0).max(title) + 2;
        u16::try_from(want).unwrap_or(u16::MAX)
    }

    pub fn is_live(&self) -> bool {
        self.replay.is_none()
    }

    /// The session concluded, names a next runbook and has not ended: one
    /// key continues into it.
    pub fn offers_next(&self) -> bool {
        self.state.conclusion.is_some() && self.state.next.is_some() && !self.state.sealed
    }

    /// Applies one event: folds it into the state and adds its cell.
    pub fn apply(&mut self, ev: &Event) {
        match EventData::from_parts(&ev.kind, &ev.data) {
            Ok(d) => {
                self.state.apply(ev.seq, &ev.ts, &ev.hash, &d);
                if let Some(c) = Cell::from_event(ev.seq, &ev.ts, &ev.hash, &d, &self.state) {
                    self.cells.push(c);
                }
            }
            Err(e) => self
                .cells
                .push(Cell::unreadable(ev.seq, &ev.ts, &ev.kind, &e.to_string())),
        }
    }

    /// Moves the replay cursor to `to` events (refolding from the start
    /// when going back: the fold is the only way to state).
    pub fn seek(&mut self, to: usize) {
        let Some(mut r) = self.replay.take() else {
            return;
        };
        let to = to.min(r.events.len());
        if to < r.cursor {
            self.state = SessionState::default();
            self.cells.clear();
            r.cursor = 0;
        }
        for ev in &r.events[r.cursor..to] {
            if let Verification::Tampered { seq, reason } = &r.verification
                && ev.seq == *seq
            {
                self.cells.push(Cell::tampered(ev.seq, &ev.ts, reason));
            }
            self.apply(ev);
        }
        r.cursor = to;
        if to == r.events.len() {
            // The whole recorded log is applied: nothing more will come.
            self.state.end_of_log();
        }
        self.replay = Some(r);
        self.scroll = Scroll::default();
        self.cell_sel = None;
        self.step_sel = self.step_sel.filter(|i| *i < self.step_rows().len());
    }

    /// The environment: from the log once it says, else from the caller.
    pub fn environment(&self) -> &str {
        if self.state.environment.is_empty() {
            &self.info.environment
        } else {
            &self.state.environment
        }
    }

    pub fn target(&self) -> String {
        self.state
            .target
            .get("name")
            .and_then(|v| v.as_str())
            .map_or_else(|| self.info.target.clone(), str::to_string)
    }

    /// The step list: the runbook's steps in order with the status of each
    /// one's latest proposal, then ad-hoc proposals.
    pub fn step_rows(&self) -> Vec<StepRow> {
        // Keyed by the part of the session too: after a hand-off the next
        // runbook may have steps of the same name.
        let mut latest: BTreeMap<(u32, &str), (usize, usize)> = BTreeMap::new();
        for (i, p) in self.state.proposals.iter().enumerate() {
            if let Some(s) = p.step_id.as_deref() {
                let e = latest.entry((p.part, s)).or_insert((i, 0));
                e.0 = i;
                e.1 += 1;
            }
        }
        let ended = self.state.sealed || self.state.part > 0;
        let mut rows = Vec::new();
        let mut listed: BTreeSet<&str> = BTreeSet::new();
        if let Some(rb) = &self.info.runbook {
            for s in &rb.steps {
                listed.insert(&s.id);
                let (proposal, runs) = match latest.get(&(0, s.id.as_str())) {
                    Some((i, n)) => (Some(*i), *n),
                    None => (None, 0),
                };
                let status = match proposal {
                    Some(i) => StepStatus::of(&self.state, &self.state.proposals[i]),
                    None if ended => StepStatus::Skipped,
                    None => StepStatus::Pending,
                };
                rows.push(StepRow {
                    id: s.id.clone(),
                    title: s.title.clone(),
                    kind: Some(s.kind.clone()),
                    status,
                    proposal,
                    runs,
                });
            }
        }
        let mut adhoc = 0;
        for (i, p) in self.state.proposals.iter().enumerate() {
            let id = match p.step_id.as_deref() {
                Some(s) if p.part == 0 && listed.contains(s) => continue,
                Some(s) => {
                    // A step the runbook (as loaded now) does not have, or
                    // one of a runbook handed off to: listed once, at its
                    // latest proposal.
                    if latest.get(&(p.part, s)).is_some_and(|(last, _)| *last != i) {
                        continue;
                    }
                    if p.part == 0 {
                        s.to_string()
                    } else {
                        format!("{} › {s}", p.runbook)
                    }
                }
                None => {
                    adhoc += 1;
                    format!("ad-hoc #{adhoc}")
                }
            };
            rows.push(StepRow {
                runs: p
                    .step_id
                    .as_deref()
                    .and_then(|s| latest.get(&(p.part, s)))
                    .map_or(1, |(_, n)| *n),
                id,
                title: None,
                kind: None,
                status: StepStatus::of(&self.state, p),
                proposal: Some(i),
            });
        }
        rows
    }

    /// The selected row of the step list (following the newest proposal's
    /// step unless the operator moved).
    pub fn selected_step(&self, rows: &[StepRow]) -> usize {
        if let Some(i) = self.step_sel {
            return i.min(rows.len().saturating_sub(1));
        }
        let newest = self.state.proposals.len().checked_sub(1);
        newest
            .and_then(|n| rows.iter().position(|r| r.proposal == Some(n)))
            .unwrap_or(0)
    }

    /// The selected transcript entry.
    pub fn selected_cell(&self) -> Option<usize> {
        match self.cell_sel {
            Some(i) => Some(i.min(self.cells.len().saturating_sub(1))),
            None => self.cells.len().checked_sub(1),
        }
    }

    /// The proposal the detail pane shows, with the step row it belongs to.
    pub fn detail_target(&self) -> (Option<&ProposalState>, Option<StepRow>) {
        let rows = self.step_rows();
        match self.detail_from {
            Pane::Transcript => {
                let p = self
                    .selected_cell()
                    .and_then(|i| self.cells[i].proposal.as_ref())
                    .and_then(|id| self.state.proposal(id));
                let row = p.and_then(|p| {
                    let idx = self.state.proposals.iter().position(|q| q.id == p.id);
                    rows.iter()
                        .find(|r| {
                            r.proposal == idx
                                || (p.step_id.is_some() && p.step_id.as_deref() == Some(&r.id))
                        })
                        .cloned()
                });
                (p, row)
            }
            _ => {
                let row = rows.get(self.selected_step(&rows)).cloned();
                let p = row
                    .as_ref()
                    .and_then(|r| r.proposal)
                    .and_then(|i| self.state.proposals.get(i));
                (p, row)
            }
        }
    }

    /// The proposal `a`/`r` act on: the one shown in the detail pane if it
    /// waits for approval, else the oldest that waits.
    pub fn approval_target(&self) -> Option<ProposalId> {
        if let (Some(p), _) = self.detail_target()
            && p.status == Status::AwaitingApproval
        {
            return Some(p.id.clone());
        }
        self.state.awaiting_approval().first().map(|p| p.id.clone())
    }

    /// The proposal running now, if any (one whose log ended without its
    /// outcome is not running).
    pub fn running(&self) -> Option<&ProposalState> {
        self.state
            .proposals
            .iter()
            .rev()
            .find(|p| p.status == Status::Running && !self.state.outcome_missing(p))
    }

    /// The time the session screen is at: the newest applied event's in a
    /// replay, when the engine went for a closed session, else `now`.
    /// Elapsed times count to this, so nothing recorded keeps ticking.
    pub fn clock(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let at = super::text::parse_ts;
        if let Some(r) = &self.replay {
            return r
                .cursor
                .checked_sub(1)
                .and_then(|i| r.events.get(i))
                .and_then(|e| at(&e.ts))
                .unwrap_or(now);
        }
        if let Some(end) = self.state.ended_at.as_deref().and_then(at) {
            return end;
        }
        self.closed_at.unwrap_or(now)
    }

    // --- transcript scrolling (pure arithmetic over cell heights) ---

    fn height(&self, i: usize, width: u16, theme: &Theme) -> usize {
        self.cells[i].height(width, theme).max(1)
    }

    /// The scroll position that shows the last line at the bottom.
    pub fn bottom_anchor(&self, width: u16, height: usize, theme: &Theme) -> (usize, usize) {
        let mut total = 0;
        for i in (0..self.cells.len()).rev() {
            total += self.height(i, width, theme);
            if total >= height {
                return (i, total - height);
            }
        }
        (0, 0)
    }

    /// Where the transcript's top line is, following or not.
    pub fn top(&self, width: u16, height: usize, theme: &Theme) -> (usize, usize) {
        if self.scroll.follow || self.scroll.top >= self.cells.len() {
            self.bottom_anchor(width, height, theme)
        } else {
            (self.scroll.top, self.scroll.line)
        }
    }

    /// Scrolls the transcript by `delta` lines (negative is up). Reaching
    /// the bottom follows new entries again.
    pub fn scroll_by(&mut self, delta: isize, width: u16, height: usize, theme: &Theme) {
        if self.cells.is_empty() {
            return;
        }
        let (mut top, mut line) = self.top(width, height, theme);
        if delta < 0 {
            for _ in 0..delta.unsigned_abs() {
                if line > 0 {
                    line -= 1;
                } else if top > 0 {
                    top -= 1;
                    line = self.height(top, width, theme) - 1;
                } else {
                    break;
                }
            }
        } else {
            for _ in 0..delta {
                if line + 1 < self.height(top, width, theme) {
                    line += 1;
                } else if top + 1 < self.cells.len() {
                    top += 1;
                    line = 0;
                } else {
                    break;
                }
            }
        }
        let bottom = self.bottom_anchor(width, height, theme);
        self.scroll = if (top, line) >= bottom {
            Scroll::default()
        } else {
            Scroll {
                follow: false,
                top,
                line,
            }
        };
    }

    /// Scrolls so the selected entry is on screen.
    pub fn reveal(&mut self, sel: usize, width: u16, height: usize, theme: &Theme) {
        let (top, line) = self.top(width, height, theme);
        if (sel, 0) < (top, line) {
            self.scroll = Scroll {
                follow: false,
                top: sel,
                line: 0,
            };
            return;
        }
        // Lines from the top of the view to the end of `sel`.
        let mut used = self.height(top, width, theme).saturating_sub(line);
        for i in top + 1..=sel.min(self.cells.len().saturating_sub(1)) {
            used += self.height(i, width, theme);
        }
        if used > height {
            let mut excess = used - height;
            let (mut t, mut l) = (top, line);
            while excess > 0 && (t, l) < (sel, 0) {
                let h = self.height(t, width, theme);
                let left = h - l;
                if excess >= left {
                    excess -= left;
                    t += 1;
                    l = 0;
                } else {
                    l += excess;
                    excess = 0;
                }
            }
            self.scroll = Scroll {
                follow: false,
                top: t,
                line: l,
            };
        } else if self.scroll.follow {
            self.scroll = Scroll {
                follow: false,
                top,
                line,
            };
        }
    }
}

/// Whether the approval dialog may offer "approve this same statement for
/// the rest of this session": only for read_only, write and schema
/// statements with a fingerprint, and never where the verdict needs more
/// than one approver. The runner enforces this too; the TUI only offers.
pub fn offers_for_session(p: &ProposalState) -> bool {
    crate::gate::standing_allowed(p.risk, p.approvers_needed)
        && p.roles_required.is_empty()
        && p.fingerprint.is_some()
}
