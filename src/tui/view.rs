//! Rendering: `&App` in, cells in a buffer out. Nothing here changes the
//! app, reads a file or looks at the clock (the time is `app.now`), so a
//! frame is a pure function of the state and a snapshot test can pin it.

use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Widget};

use crate::audit::Verification;
use crate::evidence::plural;
use crate::session::ProposalState;
use crate::session::events::DecisionKind;

use super::app::{App, DialogMode, Field, HomePane, Overlay, Screen, SessionRow, dialog_fields};
use super::keys::{self, BINDINGS, Context};
use super::layout;
use super::pictures;
use super::session::{Pane, SessionView, StepRow, StepStatus, offers_for_session};
use super::sql_view;
use super::text;
use super::theme::{Theme, is_prod};

/// Draws the whole app.
pub fn view(app: &App, f: &mut Frame) {
    f.render_widget(app, f.area());
}

impl Widget for &App {
    fn render(self, area: Rect, buf: &mut Buffer) {
        match self.screen {
            Screen::Home => render_home(self, area, buf),
            Screen::Audit => render_audit(self, area, buf),
            Screen::Session => match &self.session {
                Some(s) => render_session(self, s, area, buf),
                None => render_audit(self, area, buf),
            },
        }
        if let (Some(_), Some(s)) = (&self.dialog, &self.session) {
            render_dialog(self, s, area, buf);
        }
        if let (Some(text), Some(s)) = (&self.answer, &self.session) {
            render_answer(self, s, text, area, buf);
        }
        match self.overlay {
            Some(Overlay::Help { scroll }) => render_help(self, scroll, area, buf),
            Some(Overlay::Standing { sel }) => render_standing(self, sel, area, buf),
            None => {}
        }
    }
}

const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

fn spinner(app: &App) -> char {
    let i = (app.now.timestamp_millis() / 100).rem_euclid(SPINNER.len() as i64);
    SPINNER[i as usize]
}

fn pane<'a>(title: impl Into<String>, focused: bool, theme: &Theme) -> Block<'a> {
    let title = format!(" {} ", title.into());
    Block::new()
        .borders(Borders::ALL)
        .border_style(if focused {
            theme.focus()
        } else {
            theme.border()
        })
        .title(Span::styled(
            title,
            if focused { theme.focus() } else { theme.bold() },
        ))
}

fn badge(env: &str, theme: &Theme) -> Span<'static> {
    let text = if env.is_empty() {
        " ? ".to_string()
    } else {
        format!(" {} ", env.to_uppercase())
    };
    Span::styled(text, theme.env_badge(env))
}

fn heading(title: &str, width: usize, theme: &Theme) -> Line<'static> {
    let rule = "─".repeat(width.saturating_sub(text::width(title) + 4));
    Line::from(vec![
        Span::styled("── ", theme.dim()),
        Span::styled(title.to_string(), theme.bold()),
        Span::styled(format!(" {rule}"), theme.dim()),
    ])
}

/// The verification verdict as a badge.
pub fn verification_badge(v: &Verification, theme: &Theme) -> Span<'static> {
    match v {
        Verification::Ok { .. } => Span::styled("✔ verified", theme.ok()),
        Verification::Tampered { seq, .. } => {
            Span::styled(format!("✘ TAMPERED at seq {seq}"), theme.bad())
        }
        Verification::Truncated { .. } => Span::styled("! truncated", theme.warn()),
        Verification::Unsealed { .. } => Span::styled("… unsealed", theme.warn()),
    }
}

// ---------------------------------------------------------------- status bar

fn hints_line(app: &App, width: usize) -> Line<'static> {
    let t = &app.theme;
    let mut spans = vec![Span::raw(" ")];
    if let Some(n) = &app.notice {
        let style = if n.error { t.bad() } else { t.info() };
        spans.push(Span::styled(format!("{}  ", n.text), style));
    }
    for (k, word) in keys::hints(&app.contexts()) {
        spans.push(Span::styled(k, t.key()));
        spans.push(Span::styled(format!(" {word}  "), t.dim()));
    }
    text::clip_spans(spans, width)
}

fn render_status(app: &App, info: Vec<Span<'static>>, area: Rect, buf: &mut Buffer) {
    let w = usize::from(area.width);
    let lines = vec![text::clip_spans(info, w), hints_line(app, w)];
    Paragraph::new(lines).render(area, buf);
}

fn session_status(app: &App, s: &SessionView) -> Vec<Span<'static>> {
    let t = &app.theme;
    let st = &s.state;
    let env = s.environment().to_string();
    let mut v = vec![badge(&env, t), Span::raw(" ")];
    v.push(Span::styled(s.target(), t.bold()));
    let runbook = if st.runbook.is_empty() {
        s.info
            .runbook
            .as_ref()
            .map(|r| r.id.clone())
            .unwrap_or_default()
    } else {
        st.runbook.clone()
    };
    v.push(Span::raw(format!(" · {runbook}")));
    let sep = || Span::styled(" · ", t.dim());
    match &s.replay {
        Some(r) => {
            v.push(sep());
            v.push(Span::styled(
                format!("REPLAY {}/{}", r.cursor, r.events.len()),
                t.accent(),
            ));
            v.push(sep());
            v.push(verification_badge(&r.verification, t));
        }
        None if st.sealed => {
            v.push(sep());
            v.push(Span::styled(
                format!("ended: {}", st.outcome.map_or("?", |o| o.words())),
                t.dim(),
            ));
        }
        None if s.closed => {
            v.push(sep());
            v.push(Span::styled("engine stopped", t.bad()));
        }
        None => {
            v.push(sep());
            v.push(Span::styled("● live", t.ok()));
        }
    }
    if st.dry_run {
        v.push(sep());
        v.push(Span::styled("dry run", t.info()));
    }
    v.push(sep());
    let tokens = match st.token_budget {
        Some(b) => format!(
            "tokens {}/{}",
            text::thousands(st.tokens_used),
            text::thousands(b)
        ),
        None if st.tokens_used > 0 => format!("tokens {}", text::thousands(st.tokens_used)),
        None => "tokens —".to_string(),
    };
    let over = st
        .token_budget
        .is_some_and(|b| st.tokens_used * 10 >= b * 9);
    v.push(Span::styled(
        tokens,
        if over { t.warn() } else { t.plain() },
    ));
    let end = match &s.replay {
        Some(r) => r
            .cursor
            .checked_sub(1)
            .and_then(|i| r.events.get(i))
            .and_then(|e| text::parse_ts(&e.ts)),
        None => st
            .ended_at
            .as_deref()
            .and_then(text::parse_ts)
            .or(Some(app.now)),
    };
    if let (Some(start), Some(end)) = (st.started_at.as_deref(), end)
        && let Some(secs) = text::secs_since(start, end)
    {
        v.push(sep());
        v.push(Span::raw(format!("elapsed {}", text::duration(secs))));
    }
    if !st.standing.is_empty() {
        v.push(sep());
        let fps: Vec<String> = st
            .standing
            .iter()
            .map(|(f, _, _)| super::cells::short(f))
            .collect();
        v.push(Span::styled(
            format!("⚑ standing: {} (S)", fps.join(", ")),
            t.warn(),
        ));
    }
    if !st.sealed && st.questions.iter().any(|(_, a)| a.is_none()) {
        v.push(sep());
        v.push(Span::styled("? the agent asks (A)", t.accent()));
    }
    let waiting = st.awaiting_approval().len();
    if waiting > 0 {
        v.push(sep());
        let words = if st.sealed {
            format!("{waiting} never approved")
        } else {
            format!("{waiting} awaiting approval")
        };
        v.push(Span::styled(
            words,
            t.warn().add_modifier(ratatui::style::Modifier::BOLD),
        ));
    }
    v
}

// ---------------------------------------------------------------- home

fn render_home(app: &App, area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    let h = &app.home;
    let lay = layout::home(area);
    let focus = h.focus();

    // Runbooks, with the filter on top.
    let block = pane(
        format!(
            "Runbooks {}",
            if h.runbooks_loaded {
                format!("{}/{}", h.visible().len(), h.runbooks.len())
            } else {
                "(loading…)".into()
            }
        ),
        focus == HomePane::Runbooks,
        t,
    );
    let inner = block.inner(lay.runbooks);
    block.render(lay.runbooks, buf);
    let w = usize::from(inner.width);
    let mut lines = Vec::new();
    let filter_line = if h.filtering {
        Line::from(vec![
            Span::styled("filter: ", t.bold()),
            Span::styled(format!("{}▏", h.filter), t.input()),
        ])
    } else if h.filter.is_empty() {
        Line::from(Span::styled(
            "/ filters by id, title or alert name",
            t.dim(),
        ))
    } else {
        Line::from(vec![
            Span::styled("filter: ", t.bold()),
            Span::raw(h.filter.clone()),
            Span::styled("  (/ to edit, Esc while editing clears)", t.dim()),
        ])
    };
    lines.push(filter_line);
    let visible = h.visible();
    let rows = usize::from(inner.height.saturating_sub(1)) / 2;
    if h.runbooks_loaded && visible.is_empty() {
        lines.push(Line::from(Span::styled(
            if h.runbooks.is_empty() {
                "no runbooks found".to_string()
            } else {
                format!("no runbook matches `{}`", h.filter)
            },
            t.dim(),
        )));
    }
    let sel = h.runbook_sel.min(visible.len().saturating_sub(1));
    let first = sel.saturating_sub(rows.saturating_sub(1));
    for (n, &i) in visible.iter().enumerate().skip(first).take(rows.max(1)) {
        let r = &h.runbooks[i];
        let selected = n == sel && focus == HomePane::Runbooks;
        let mut l1 = vec![
            Span::styled(if n == sel { "▸ " } else { "  " }, t.title()),
            Span::styled(r.id.clone(), t.bold()),
            Span::styled(format!("  {}", r.title), t.plain()),
        ];
        if selected {
            l1 = l1
                .into_iter()
                .map(|s| s.patch_style(t.selected()))
                .collect();
        }
        lines.push(text::clip_spans(l1, w));
        let triggers = if r.triggers.is_empty() {
            "no alerts".to_string()
        } else {
            r.triggers.join(", ")
        };
        lines.push(text::clip_spans(
            vec![Span::styled(
                format!(
                    "    {} · {} · {triggers}",
                    plural(r.steps.len() as u64, "step", "steps"),
                    r.engines.join(", ")
                ),
                t.dim(),
            )],
            w,
        ));
    }
    if h.runbook_problems > 0 {
        let y = inner.y + inner.height.saturating_sub(1);
        Paragraph::new(Line::from(Span::styled(
            format!(
                "{} runbook file(s) did not load: ward check says why",
                h.runbook_problems
            ),
            t.warn(),
        )))
        .render(Rect::new(inner.x, y, inner.width, 1), buf);
        lines.truncate(usize::from(inner.height.saturating_sub(1)));
    }
    Paragraph::new(lines).render(inner, buf);

    // Targets.
    let block = pane("Targets", focus == HomePane::Targets, t);
    let inner = block.inner(lay.targets);
    block.render(lay.targets, buf);
    let mut lines = Vec::new();
    if h.targets.is_empty() {
        lines.push(Line::from(Span::styled("no targets in ward.yaml", t.dim())));
    }
    let name_w = h
        .targets
        .iter()
        .map(|tg| text::width(&tg.name))
        .max()
        .unwrap_or(0)
        + 2;
    for (i, tg) in h.targets.iter().enumerate() {
        let chosen = i == h.target_sel;
        let mut spans = vec![
            Span::styled(if chosen { "● " } else { "○ " }, t.title()),
            Span::styled(text::pad(&tg.name, name_w), t.bold()),
            Span::styled(text::pad(&tg.engine, 10), t.dim()),
            badge(&tg.environment, t),
        ];
        if chosen && focus == HomePane::Targets {
            spans = spans
                .into_iter()
                .map(|s| s.patch_style(t.selected()))
                .collect();
        }
        lines.push(text::clip_spans(spans, usize::from(inner.width)));
    }
    Paragraph::new(lines).render(inner, buf);

    // Recent sessions.
    let block = pane("Recent sessions", focus == HomePane::Sessions, t);
    let inner = block.inner(lay.sessions);
    block.render(lay.sessions, buf);
    let lines = session_rows(
        app,
        &h.sessions,
        h.sessions_loaded,
        focus == HomePane::Sessions,
        inner,
        false,
    );
    Paragraph::new(lines).render(inner, buf);

    let mut info = vec![Span::styled(" ward ", t.title())];
    if let Some(tg) = h.targets.get(h.target_sel) {
        info.push(Span::raw("target "));
        info.push(Span::styled(tg.name.clone(), t.bold()));
        info.push(Span::raw(" "));
        info.push(badge(&tg.environment, t));
    }
    info.push(Span::styled(
        format!(
            " · {} · {} · operator {}",
            plural(h.runbooks.len() as u64, "runbook", "runbooks"),
            plural(h.sessions.len() as u64, "session", "sessions"),
            app.operator
        ),
        t.dim(),
    ));
    render_status(app, info, lay.status, buf);
}

fn session_rows(
    app: &App,
    sessions: &[SessionRow],
    loaded: bool,
    focused: bool,
    inner: Rect,
    wide: bool,
) -> Vec<Line<'static>> {
    let t = &app.theme;
    let w = usize::from(inner.width);
    let mut lines = Vec::new();
    if !loaded {
        lines.push(Line::from(Span::styled("reading session logs…", t.dim())));
        return lines;
    }
    if sessions.is_empty() {
        lines.push(Line::from(Span::styled("no sessions yet", t.dim())));
        return lines;
    }
    let per = if wide { 1 } else { 2 };
    let rows = (usize::from(inner.height) / per).max(1);
    let sel = app.home.session_sel.min(sessions.len() - 1);
    let first = sel.saturating_sub(rows - 1);
    for (i, r) in sessions.iter().enumerate().skip(first).take(rows) {
        let started = r
            .started
            .as_deref()
            .map(|s| s.chars().take(16).collect::<String>().replace('T', " "))
            .unwrap_or_else(|| "?".into());
        let outcome = r.outcome.map_or("running or crashed", |o| o.words());
        let mark = Span::styled(if i == sel { "▸ " } else { "  " }, t.title());
        let mut spans = if wide {
            vec![
                mark,
                Span::styled(text::pad(&r.id, 26), t.bold()),
                Span::raw(text::pad(&started, 18)),
                Span::raw(text::pad(&r.operator, 12)),
                Span::raw(text::pad(&r.runbook, 30)),
                badge(&r.environment, t),
                Span::raw(" "),
                Span::raw(text::pad(outcome, 20)),
                verification_badge(&r.verification, t),
            ]
        } else {
            vec![
                mark,
                Span::styled(r.runbook.clone(), t.bold()),
                Span::raw(" "),
                badge(&r.environment, t),
                Span::raw(" "),
                verification_badge(&r.verification, t),
            ]
        };
        if i == sel && focused {
            spans = spans
                .into_iter()
                .map(|s| s.patch_style(t.selected()))
                .collect();
        }
        lines.push(text::clip_spans(spans, w));
        if !wide {
            lines.push(text::clip_spans(
                vec![Span::styled(
                    format!("    {started} · {} · {outcome}", r.operator),
                    t.dim(),
                )],
                w,
            ));
        }
    }
    lines
}

// ---------------------------------------------------------------- audit list

fn render_audit(app: &App, area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    let (main, status) = layout::audit(area);
    let block = pane(
        format!("Recorded sessions ({})", app.home.sessions.len()),
        true,
        t,
    );
    let inner = block.inner(main);
    block.render(main, buf);
    let wide = inner.width >= 120;
    let lines = session_rows(
        app,
        &app.home.sessions,
        app.home.sessions_loaded,
        true,
        inner,
        wide,
    );
    Paragraph::new(lines).render(inner, buf);
    let info = vec![
        Span::styled(" ward audit ", t.title()),
        Span::styled(
            "· Enter replays a session step by step with its verification",
            t.dim(),
        ),
    ];
    render_status(app, info, status, buf);
}

// ---------------------------------------------------------------- session

fn render_session(app: &App, s: &SessionView, area: Rect, buf: &mut Buffer) {
    let lay = layout::session(area);
    render_steps(app, s, lay.steps, buf);
    render_transcript(app, s, lay.transcript, buf);
    render_detail(app, s, lay.detail, buf);
    render_status(app, session_status(app, s), lay.status, buf);
}

fn step_glyph(app: &App, st: StepStatus) -> (String, Style) {
    let t = &app.theme;
    match st {
        StepStatus::Pending => ("○".into(), t.dim()),
        StepStatus::Proposed => ("◇".into(), t.plain()),
        StepStatus::AwaitingApproval => ("◈".into(), t.warn()),
        StepStatus::Ready => ("▷".into(), t.info()),
        StepStatus::Running => (spinner(app).to_string(), t.info()),
        StepStatus::Done => ("✔".into(), t.ok()),
        StepStatus::Failed => ("✘".into(), t.bad()),
        StepStatus::Skipped => ("↷".into(), t.dim()),
        StepStatus::Denied => ("⊘".into(), t.bad()),
        StepStatus::Rejected => ("✗".into(), t.bad()),
        StepStatus::DryRun => ("◌".into(), t.info()),
    }
}

/// The second line of a step row: its status with what goes with it.
fn step_status_words(app: &App, row: &StepRow, p: Option<&ProposalState>) -> String {
    let mut w = row.status.word().to_string();
    match (row.status, p) {
        (StepStatus::Running, Some(p)) => {
            if let Some(secs) = p
                .started_at
                .as_deref()
                .and_then(|t| text::secs_since(t, app.now))
            {
                w = format!("running {}", text::duration(secs));
            }
        }
        (StepStatus::AwaitingApproval, Some(p)) if p.approvers_needed > 1 => {
            w = format!(
                "awaiting approval {}/{}",
                p.distinct_approvers(),
                p.approvers_needed
            );
        }
        (StepStatus::Done, Some(p)) => {
            if let Some(ms) = p.duration_ms {
                w = format!("done · {}", text::millis(ms));
            }
            match p.verified {
                Some(true) => w.push_str(" · verified"),
                Some(false) => w.push_str(" · verify FAILED"),
                None => {}
            }
        }
        _ => {}
    }
    if row.runs > 1 {
        w.push_str(&format!(" · ×{}", row.runs));
    }
    w
}

fn render_steps(app: &App, s: &SessionView, area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    let rows = s.step_rows();
    let title = match &s.info.runbook {
        Some(rb) => format!("Steps · {}", rb.id),
        None => "Steps".into(),
    };
    let block = pane(title, s.focus == Pane::Steps, t);
    let inner = block.inner(area);
    block.render(area, buf);
    let w = usize::from(inner.width);
    let sel = s.selected_step(&rows);
    let fit = (usize::from(inner.height) / 2).max(1);
    let first = sel.saturating_sub(fit - 1);
    let mut lines = Vec::new();
    if rows.is_empty() {
        lines.push(Line::from(Span::styled(
            "waiting for the first step…",
            t.dim(),
        )));
    }
    for (i, row) in rows.iter().enumerate().skip(first).take(fit) {
        let p = row.proposal.and_then(|i| s.state.proposals.get(i));
        let (glyph, gstyle) = step_glyph(app, row.status);
        let mut l1 = vec![
            Span::styled(format!("{glyph} "), gstyle),
            Span::styled(row.id.clone(), t.bold()),
        ];
        let status_style = match row.status {
            StepStatus::AwaitingApproval => t.warn(),
            StepStatus::Failed | StepStatus::Denied | StepStatus::Rejected => t.bad(),
            StepStatus::Done if p.and_then(|p| p.verified) == Some(false) => t.bad(),
            StepStatus::Done => t.ok(),
            StepStatus::Running => t.info(),
            _ => t.dim(),
        };
        let mut l2 = vec![Span::styled(
            format!("  {}", step_status_words(app, row, p)),
            status_style,
        )];
        if let Some(k) = &row.kind
            && k != "diagnostic"
        {
            l2.push(Span::styled(format!(" · {k}"), t.dim()));
        }
        if i == sel {
            let hl = if s.focus == Pane::Steps || s.detail_from == Pane::Steps {
                t.selected()
            } else {
                Style::new()
            };
            l1 = l1.into_iter().map(|x| x.patch_style(hl)).collect();
            l2 = l2.into_iter().map(|x| x.patch_style(hl)).collect();
        }
        lines.push(text::clip_spans(l1, w));
        lines.push(text::clip_spans(l2, w));
    }
    Paragraph::new(lines).render(inner, buf);
}

fn render_transcript(app: &App, s: &SessionView, area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    let follow = if s.scroll.follow {
        "following"
    } else {
        "scrolled"
    };
    let block = pane(
        format!(
            "Transcript · {} · {follow}",
            plural(s.cells.len() as u64, "entry", "entries")
        ),
        s.focus == Pane::Transcript,
        t,
    );
    let inner = block.inner(area);
    block.render(area, buf);
    let height = usize::from(inner.height);
    if height == 0 || s.cells.is_empty() {
        return;
    }
    let (top, skip) = s.top(inner.width, height, t);
    let sel = s.selected_cell();
    let highlight = s.focus == Pane::Transcript || s.detail_from == Pane::Transcript;
    let mut lines: Vec<Line<'static>> = Vec::with_capacity(height);
    let mut skip = skip;
    for i in top..s.cells.len() {
        let mut cell_lines = s.cells[i].display_lines(inner.width, t);
        if highlight && Some(i) == sel {
            cell_lines = cell_lines
                .into_iter()
                .map(|l| l.patch_style(t.selected()))
                .collect();
        }
        for l in cell_lines.into_iter().skip(skip) {
            lines.push(l);
            if lines.len() >= height {
                break;
            }
        }
        skip = 0;
        if lines.len() >= height {
            break;
        }
    }
    Paragraph::new(lines).render(inner, buf);
}

fn render_detail(app: &App, s: &SessionView, area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    let (p, row) = s.detail_target();
    let title = match (&row, p) {
        (Some(r), _) => format!("Detail · {}", r.id),
        (None, Some(p)) => format!("Detail · {}", super::cells::step_label(p)),
        _ => "Detail · session".into(),
    };
    let block = pane(title, s.focus == Pane::Detail, t);
    let inner = block.inner(area);
    block.render(area, buf);
    let lines = detail_lines(app, s, p, row.as_ref(), usize::from(inner.width));
    let max = lines.len().saturating_sub(usize::from(inner.height));
    let scroll = usize::from(s.detail_scroll).min(max);
    let shown: Vec<Line<'static>> = lines
        .into_iter()
        .skip(scroll)
        .take(usize::from(inner.height))
        .collect();
    Paragraph::new(shown).render(inner, buf);
}

fn table_size_words(p: &ProposalState) -> Option<String> {
    let ts = p.table_size.as_ref()?;
    let rows = ts.get("rows").and_then(serde_json::Value::as_u64);
    let bytes = ts.get("bytes").and_then(serde_json::Value::as_u64);
    let mut parts = Vec::new();
    if let Some(r) = rows {
        parts.push(format!("~{} {}", text::thousands(r), rows_word(r)));
    }
    if let Some(b) = bytes {
        parts.push(text::bytes(b));
    }
    if parts.is_empty() {
        return None;
    }
    let tables = if p.tables.is_empty() {
        String::new()
    } else {
        format!("{}: ", p.tables.join(", "))
    };
    Some(format!("{tables}{}", parts.join(", ")))
}

fn decision_words(p: &ProposalState) -> String {
    match p.decision {
        Some(DecisionKind::Allow) => "allow".into(),
        Some(DecisionKind::Deny) => "DENY".into(),
        Some(DecisionKind::Approve) => format!(
            "needs approval by {} approver{}",
            p.approvers_needed,
            if p.approvers_needed == 1 { "" } else { "s" }
        ),
        None => "not gated yet".into(),
    }
}

/// The gate's side of a proposal: risk, decision, rules, lock, table size,
/// findings with their advice. Shared by the detail pane and the dialog.
fn gate_lines(p: &ProposalState, width: usize, t: &Theme) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    out.push(text::clip_spans(
        vec![
            Span::styled("risk ", t.dim()),
            Span::styled(
                p.risk.map_or("?", |r| r.name()),
                p.risk.map_or_else(|| t.bad(), |r| t.risk(r)),
            ),
            Span::styled("  decision ", t.dim()),
            Span::styled(
                decision_words(p),
                match p.decision {
                    Some(DecisionKind::Allow) => t.ok(),
                    Some(DecisionKind::Deny) => t.bad(),
                    _ => t.warn(),
                },
            ),
        ],
        width,
    ));
    if !p.rules.is_empty() {
        out.extend(text::wrapped_lines(
            &format!("rules: {}", p.rules.join(", ")),
            width,
            0,
            t.plain(),
        ));
    }
    let blocks: Vec<&str> = p.blocks.iter().map(String::as_str).collect();
    let tables: Vec<&str> = p.tables.iter().map(String::as_str).collect();
    if let Some(words) = crate::sql::lock_words(p.lock.as_deref(), &blocks, &tables) {
        let style = if blocks.is_empty() {
            t.plain()
        } else {
            t.warn()
        };
        out.extend(text::wrapped_lines(
            &format!("lock: {words}"),
            width,
            0,
            style,
        ));
    }
    if let Some(size) = table_size_words(p) {
        out.extend(text::wrapped_lines(
            &format!("table: {size}"),
            width,
            0,
            t.plain(),
        ));
    }
    for f in &p.findings {
        // The log holds rule ids; the advice is the analyzer's own table
        // (an id a newer ward knows and this one does not gets none).
        let advice = crate::sql::FINDING_RULES
            .iter()
            .find(|r| r.id == f)
            .map_or("", |r| r.advice);
        out.push(text::clip_spans(
            vec![Span::styled(format!("! {f}"), t.warn())],
            width,
        ));
        if !advice.is_empty() {
            out.extend(text::wrapped_lines(advice, width, 2, t.plain()));
        }
    }
    out
}

fn detail_lines(
    app: &App,
    s: &SessionView,
    p: Option<&ProposalState>,
    row: Option<&StepRow>,
    width: usize,
) -> Vec<Line<'static>> {
    let t = &app.theme;
    let mut out: Vec<Line<'static>> = Vec::new();
    let spec = row
        .and_then(|r| s.info.runbook.as_ref().and_then(|rb| rb.step(&r.id)))
        .or_else(|| {
            p.and_then(|p| p.step_id.as_deref())
                .and_then(|id| s.info.runbook.as_ref().and_then(|rb| rb.step(id)))
        });
    if p.is_none() && row.is_none() {
        return session_overview(app, s, width);
    }
    // What it is.
    let id = row
        .map(|r| r.id.clone())
        .or_else(|| p.map(super::cells::step_label))
        .unwrap_or_default();
    let status = row
        .map(|r| step_status_words(app, r, p))
        .unwrap_or_default();
    let mut head = vec![Span::styled(id, t.bold())];
    if let Some(k) = spec.map(|s| s.kind.clone()) {
        head.push(Span::styled(format!(" · {k}"), t.dim()));
    }
    if !status.is_empty() {
        head.push(Span::raw(format!(" · {status}")));
    }
    out.push(text::clip_spans(head, width));
    if let Some(title) = spec.and_then(|s| s.title.clone()) {
        out.extend(text::wrapped_lines(&title, width, 0, t.plain()));
    }
    if let Some(p) = p {
        let by = format!("proposed by {}", p.source);
        out.push(text::clip_spans(vec![Span::styled(by, t.dim())], width));
        if let Some(r) = p.rationale.as_deref().filter(|r| !r.trim().is_empty()) {
            out.extend(text::wrapped_lines(
                &format!("“{}”", r.trim()),
                width,
                2,
                t.accent(),
            ));
        }
    } else if let Some(d) = spec.and_then(|s| s.description.clone()) {
        out.extend(text::wrapped_lines(d.trim(), width, 0, t.dim()));
    }

    // Before a step runs, what matters is what it will do; after, what it
    // found. The other half follows.
    let mut plan: Vec<Line<'static>> = Vec::new();
    plan.push(heading("SQL", width, t));
    let sql = p
        .map(|p| p.sql.clone())
        .or_else(|| spec.map(|s| s.sql.clone()));
    match sql {
        Some(sql) => plan.extend(sql_view::highlight(&sql, width, t)),
        None => plan.push(Line::from(Span::styled("(not known)", t.dim()))),
    }
    if let Some(p) = p {
        plan.push(heading("Gate", width, t));
        plan.extend(gate_lines(p, width, t));
        for (who, why) in &p.approvals {
            plan.extend(text::wrapped_lines(
                &format!("✔ approved by {who}: {why}"),
                width,
                0,
                t.ok(),
            ));
        }
        for (who, why) in &p.rejections {
            plan.extend(text::wrapped_lines(
                &format!("✘ rejected by {who}: {why}"),
                width,
                0,
                t.bad(),
            ));
        }
    } else {
        plan.push(Line::from(Span::styled(
            "not proposed yet: the gate decides when it is",
            t.dim(),
        )));
    }
    if let Some(spec) = spec
        && spec.kind != "diagnostic"
    {
        plan.push(heading("Rollback", width, t));
        match spec.rollback.as_deref() {
            Some("none") => plan.push(Line::from(Span::styled("none — irreversible", t.bad()))),
            Some(r) if r.starts_with("step ") => {
                plan.push(Line::from(Span::raw(format!("by {r}"))));
            }
            Some(sql) => plan.extend(sql_view::highlight(sql, width, t)),
            None => plan.push(Line::from(Span::styled("not stated", t.warn()))),
        }
    }
    if let Some((vsql, expect)) = spec.and_then(|s| s.verify.clone()) {
        plan.push(heading("Verify", width, t));
        plan.extend(sql_view::highlight(&vsql, width, t));
        plan.extend(text::wrapped_lines(
            &format!("expect {expect}"),
            width,
            0,
            t.plain(),
        ));
    }

    let mut found: Vec<Line<'static>> = Vec::new();
    if let Some(p) = p {
        if p.rows_seen.is_some() || p.error.is_some() || p.verified.is_some() {
            found.push(heading("Result", width, t));
        }
        if let Some(rows) = p.rows_seen {
            let took = p.duration_ms.map(text::millis).unwrap_or_default();
            found.push(Line::from(Span::raw(format!(
                "{} {} · {took}",
                text::thousands(rows),
                rows_word(rows)
            ))));
        }
        match p.verified {
            Some(true) => found.push(Line::from(Span::styled("✔ verified", t.ok()))),
            Some(false) => found.push(Line::from(Span::styled("✘ verification failed", t.bad()))),
            None => {}
        }
        if let Some(e) = &p.error {
            found.extend(text::wrapped_lines(e, width, 0, t.bad()));
        }
        if let Some(facts) = &p.facts
            && let Some(chain) = pictures::chain(facts)
        {
            found.push(heading("Blocking chain", width, t));
            found.extend(pictures::tree_lines(&chain, width, t));
        }
        if let Some(step) = p.step_id.as_deref() {
            let series = pictures::series(&s.state, step);
            if !series.is_empty() {
                found.push(heading(
                    &format!("Trends over {} runs", series[0].values.len()),
                    width,
                    t,
                ));
                found.extend(pictures::spark_lines(&series, width, t));
            }
        }
        if let Some(sum) = &p.summary {
            found.push(heading("Evidence (what the agent saw)", width, t));
            for l in text::wrap(sum.trim_end(), width) {
                found.push(Line::from(Span::raw(l)));
            }
        }
    }
    let finished = p.is_some_and(|p| p.rows_seen.is_some() || p.error.is_some());
    if finished {
        out.extend(found);
        out.extend(plan);
    } else {
        out.extend(plan);
        out.extend(found);
    }
    out
}

fn session_overview(app: &App, s: &SessionView, width: usize) -> Vec<Line<'static>> {
    let t = &app.theme;
    let st = &s.state;
    let mut out = Vec::new();
    let title = s
        .info
        .runbook
        .as_ref()
        .map(|r| format!("{} — {}", r.id, r.title))
        .unwrap_or_else(|| st.runbook.clone());
    out.extend(text::wrapped_lines(&title, width, 0, t.bold()));
    out.push(Line::from(vec![
        Span::raw("target "),
        Span::styled(s.target(), t.bold()),
        Span::raw(" "),
        badge(s.environment(), t),
    ]));
    if !st.operator.is_empty() {
        out.push(Line::from(Span::raw(format!("operator {}", st.operator))));
    }
    if let Some(c) = &st.conclusion {
        out.push(heading("Conclusion", width, t));
        out.extend(text::wrapped_lines(c, width, 0, t.plain()));
    }
    if let Some(r) = &st.recommendation {
        out.extend(text::wrapped_lines(
            &format!("recommendation: {r}"),
            width,
            0,
            t.plain(),
        ));
    }
    for e in &st.agent_errors {
        out.extend(text::wrapped_lines(
            &format!("agent error: {e}"),
            width,
            0,
            t.bad(),
        ));
    }
    out
}

// ---------------------------------------------------------------- dialog

fn render_dialog(app: &App, s: &SessionView, area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    let Some(d) = &app.dialog else { return };
    let Some(p) = s.state.proposal(&d.proposal) else {
        return;
    };
    let env = s.environment().to_string();
    let prod = is_prod(&env);
    let box_w = area.width.saturating_sub(4).min(100);
    let w = usize::from(box_w.saturating_sub(4));
    let spec = p
        .step_id
        .as_deref()
        .and_then(|id| s.info.runbook.as_ref().and_then(|rb| rb.step(id)));

    let mut lines: Vec<Line<'static>> = Vec::new();
    let mut head = vec![
        Span::styled(super::cells::step_label(p), t.bold()),
        Span::raw(" on "),
        Span::styled(s.target(), t.bold()),
        Span::raw(" "),
        badge(&env, t),
    ];
    if let Some(k) = spec.map(|s| s.kind.clone()) {
        head.push(Span::styled(format!(" · {k}"), t.dim()));
    }
    lines.push(text::clip_spans(head, w));
    if let Some(title) = spec.and_then(|s| s.title.clone()) {
        lines.extend(text::wrapped_lines(&title, w, 0, t.plain()));
    }
    if let Some(r) = p.rationale.as_deref().filter(|r| !r.trim().is_empty()) {
        lines.extend(text::wrapped_lines(
            &format!("{} says: “{}”", p.source, r.trim()),
            w,
            0,
            t.accent(),
        ));
    }
    lines.push(heading("What will run", w, t));
    // The SQL goes in between, as many lines as fit (see below).
    let sql_at = lines.len();
    let sql: Vec<Line<'static>> = sql_view::highlight(&p.sql, w.saturating_sub(2), t)
        .into_iter()
        .map(|l| {
            let mut spans = vec![Span::raw("  ")];
            spans.extend(l.spans);
            Line::from(spans)
        })
        .collect();
    lines.push(heading("Why it needs approval", w, t));
    lines.extend(gate_lines(p, w, t));
    if let Some(spec) = spec
        && spec.kind != "diagnostic"
    {
        let (words, style) = match spec.rollback.as_deref() {
            Some("none") => ("none — irreversible".to_string(), t.bad()),
            Some(r) => (text::first_line(r), t.plain()),
            None => ("not stated".to_string(), t.warn()),
        };
        lines.push(text::clip_spans(
            vec![
                Span::styled("rollback: ", t.dim()),
                Span::styled(words, style),
            ],
            w,
        ));
    }
    if p.approvers_needed > 1 || !p.approvals.is_empty() {
        let names: Vec<String> = p
            .approvals
            .iter()
            .map(|(o, r)| format!("{o} (“{r}”)"))
            .collect();
        let mut who = format!(
            "approvals {} of {}",
            p.distinct_approvers(),
            p.approvers_needed
        );
        if !names.is_empty() {
            who.push_str(&format!(": {}", names.join(", ")));
        }
        lines.extend(text::wrapped_lines(&who, w, 0, t.warn()));
        if p.approvals.iter().any(|(o, _)| *o == app.operator) {
            lines.extend(text::wrapped_lines(
                &format!(
                    "you ({}) approved already: another operator approves with `ward approve`",
                    app.operator
                ),
                w,
                0,
                t.dim(),
            ));
        }
    }
    lines.push(Line::raw(""));

    let field_line = |label: &str, value: &str, focused: bool, hint: Option<Span<'static>>| {
        let mut spans = vec![
            Span::styled(
                format!("{} {label}", if focused { "▸" } else { " " }),
                if focused { t.focus() } else { t.bold() },
            ),
            Span::raw(" "),
            Span::styled(
                format!("{value}{}", if focused { "▏" } else { " " }),
                t.input(),
            ),
        ];
        if let Some(h) = hint {
            spans.push(Span::raw("  "));
            spans.push(h);
        }
        text::clip_spans(spans, w)
    };
    match d.mode {
        DialogMode::Choose => {
            lines.push(Line::from(vec![
                Span::styled("a", t.key()),
                Span::raw(" approve (asks for a reason)   "),
                Span::styled("r", t.key()),
                Span::raw(" reject   "),
                Span::styled("Esc", t.key()),
                Span::raw(" close: approves nothing"),
            ]));
        }
        DialogMode::Reject => {
            lines.push(field_line(
                "Reason for rejecting (goes back to the agent):",
                &d.reason,
                true,
                None,
            ));
        }
        DialogMode::Approve => {
            let fields = dialog_fields(d, s);
            lines.push(field_line(
                "Reason:",
                &d.reason,
                d.field == Field::Reason,
                None,
            ));
            if fields.contains(&Field::Confirm) {
                let check = if d.confirm.is_empty() {
                    None
                } else if d.confirm.trim() == env {
                    Some(Span::styled("✔ matches", t.ok()))
                } else {
                    Some(Span::styled("✘ does not match", t.bad()))
                };
                lines.push(field_line(
                    &format!("Type {env} to confirm:"),
                    &d.confirm,
                    d.field == Field::Confirm,
                    check,
                ));
            }
            if fields.contains(&Field::ForSession) {
                let focused = d.field == Field::ForSession;
                lines.push(text::clip_spans(
                    vec![
                        Span::styled(
                            format!(
                                "{} [{}] ",
                                if focused { "▸" } else { " " },
                                if d.for_session { "x" } else { " " }
                            ),
                            if focused { t.focus() } else { t.bold() },
                        ),
                        Span::raw("approve this same statement for the rest of this session"),
                    ],
                    w,
                ));
                lines.extend(text::wrapped_lines(
                    &format!(
                        "fingerprint {} on {}; listed in the status bar, revocable with S, logged as a standing approval",
                        p.fingerprint.as_deref().map(super::cells::short).unwrap_or_default(),
                        s.target()
                    ),
                    w,
                    4,
                    t.dim(),
                ));
            } else {
                let why = if p.approvers_needed > 1 {
                    "it needs more than one approver"
                } else if !offers_for_session(p) && p.fingerprint.is_none() {
                    "the statement has no fingerprint"
                } else {
                    "its risk is not read_only, write or schema"
                };
                lines.extend(text::wrapped_lines(
                    &format!("approving for the rest of the session is not offered: {why}"),
                    w,
                    2,
                    t.dim(),
                ));
            }
            if prod {
                lines.extend(text::wrapped_lines(
                    &format!("this runs in {env}: type its name to confirm"),
                    w,
                    2,
                    t.bad(),
                ));
            }
        }
    }
    if let Some(e) = &d.error {
        lines.extend(text::wrapped_lines(&format!("✘ {e}"), w, 0, t.bad()));
    }

    let hints = keys::hints(&app.contexts());
    let mut hint_spans = Vec::new();
    for (k, word) in hints {
        hint_spans.push(Span::styled(k, t.key()));
        hint_spans.push(Span::styled(format!(" {word}  "), t.dim()));
    }

    let title = match d.mode {
        DialogMode::Reject => " Reject ",
        _ if prod => " APPROVAL NEEDED — PRODUCTION ",
        _ => " Approval needed ",
    };
    let border = if prod { t.bad() } else { t.warn() };
    // Over the panes, never over the status bar (the environment badge
    // stays in sight).
    let main = Rect::new(
        area.x,
        area.y,
        area.width,
        area.height.saturating_sub(layout::STATUS_ROWS),
    );
    let room = usize::from(main.height.saturating_sub(2));
    // The SQL shrinks first (down to two lines; the detail pane has it all).
    let fit = room.saturating_sub(lines.len()).clamp(2.min(sql.len()), 8);
    let mut sql_lines: Vec<Line<'static>> = sql.iter().take(fit).cloned().collect();
    if sql.len() > fit
        && let Some(last) = sql_lines.last_mut()
    {
        *last = Line::from(Span::styled(
            format!(
                "  … {} more lines (the detail pane shows all)",
                sql.len() + 1 - fit
            ),
            t.dim(),
        ));
    }
    lines.splice(sql_at..sql_at, sql_lines);
    let box_h = (lines.len() as u16 + 2).min(main.height);
    let r = layout::centered(main, box_w, box_h);
    Clear.render(r, buf);
    let block = Block::new()
        .borders(Borders::ALL)
        .border_style(border)
        .title(Span::styled(title, border))
        .title_bottom(Line::from(hint_spans));
    let inner = block.inner(r);
    block.render(r, buf);
    let inner = Rect::new(
        inner.x + 1,
        inner.y,
        inner.width.saturating_sub(2),
        inner.height,
    );
    // The form is at the bottom: when the box is too small, the top goes.
    let skip = lines.len().saturating_sub(usize::from(inner.height));
    Paragraph::new(lines.into_iter().skip(skip).collect::<Vec<_>>()).render(inner, buf);
}

// ---------------------------------------------------------------- overlays

fn render_answer(app: &App, s: &SessionView, answer: &str, area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    let question = s
        .state
        .questions
        .iter()
        .rev()
        .find(|(_, a)| a.is_none())
        .map(|(q, _)| q.clone())
        .unwrap_or_default();
    let box_w = area.width.saturating_sub(8).min(90);
    let w = usize::from(box_w.saturating_sub(4));
    let mut lines = text::wrapped_lines(&format!("“{question}”"), w, 0, t.accent());
    lines.push(Line::raw(""));
    lines.extend(
        text::wrap(&format!("{answer}▏"), w)
            .into_iter()
            .map(|l| Line::from(Span::styled(l, t.input()))),
    );
    let mut hints = Vec::new();
    for (k, word) in keys::hints(&app.contexts()) {
        hints.push(Span::styled(k, t.key()));
        hints.push(Span::styled(format!(" {word}  "), t.dim()));
    }
    let r = layout::centered(area, box_w, (lines.len() as u16 + 2).min(area.height));
    Clear.render(r, buf);
    let block = pane("The agent asks", true, t).title_bottom(Line::from(hints));
    let inner = block.inner(r);
    block.render(r, buf);
    let inner = Rect::new(
        inner.x + 1,
        inner.y,
        inner.width.saturating_sub(2),
        inner.height,
    );
    Paragraph::new(lines).render(inner, buf);
}

fn render_help(app: &App, scroll: u16, area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    let r = layout::centered(
        area,
        area.width.saturating_sub(6).min(96),
        area.height.saturating_sub(2),
    );
    Clear.render(r, buf);
    let block = pane("Keys (? or Esc closes)", true, t);
    let inner = block.inner(r);
    block.render(r, buf);
    let w = usize::from(inner.width);
    let order = [
        Context::Global,
        Context::Lists,
        Context::Home,
        Context::Filter,
        Context::Audit,
        Context::Live,
        Context::Replay,
        Context::Dialog,
        Context::DialogForm,
        Context::DialogCheckbox,
        Context::StandingList,
        Context::AnswerForm,
    ];
    let mut lines = Vec::new();
    for ctx in order {
        let rows: Vec<_> = BINDINGS.iter().filter(|b| b.context == ctx).collect();
        if rows.is_empty() {
            continue;
        }
        lines.push(Line::from(Span::styled(ctx.title().to_string(), t.title())));
        for b in rows {
            let keys = keys::keys_label(b.keys, 3);
            lines.push(text::clip_spans(
                vec![
                    Span::styled(format!("  {}", text::pad(&keys, 16)), t.key()),
                    Span::raw(b.help.to_string()),
                ],
                w,
            ));
        }
    }
    let max = lines.len().saturating_sub(usize::from(inner.height));
    let skip = usize::from(scroll).min(max);
    Paragraph::new(lines.into_iter().skip(skip).collect::<Vec<_>>()).render(inner, buf);
}

fn render_standing(app: &App, sel: usize, area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    let Some(s) = &app.session else { return };
    let r = layout::centered(area, area.width.saturating_sub(8).min(90), 12);
    Clear.render(r, buf);
    let block = pane("Standing approvals (x revokes, Esc closes)", true, t);
    let inner = block.inner(r);
    block.render(r, buf);
    let w = usize::from(inner.width);
    let mut lines = Vec::new();
    if s.state.standing.is_empty() {
        lines.push(Line::from(Span::styled(
            "none: every statement that needs approval asks for it",
            t.dim(),
        )));
    }
    for (i, (fp, who, why)) in s.state.standing.iter().enumerate() {
        let mut spans = vec![
            Span::styled(if i == sel { "▸ " } else { "  " }, t.title()),
            Span::styled(super::cells::short(fp), t.bold()),
            Span::raw(format!("  by {who}: {why}")),
        ];
        if i == sel {
            spans = spans
                .into_iter()
                .map(|x| x.patch_style(t.selected()))
                .collect();
        }
        lines.push(text::clip_spans(spans, w));
        // What it approves: the statement it was granted on.
        if let Some(p) = s
            .state
            .proposals
            .iter()
            .find(|p| p.fingerprint.as_deref() == Some(fp.as_str()))
        {
            lines.push(text::clip_spans(
                vec![Span::styled(
                    format!(
                        "    {}: {}",
                        super::cells::step_label(p),
                        text::first_line(&p.sql)
                    ),
                    t.dim(),
                )],
                w,
            ));
        }
    }
    Paragraph::new(lines).render(inner, buf);
}

/// "row" or "rows" for a count shown with thousands separators.
fn rows_word(n: u64) -> &'static str {
    if n == 1 { "row" } else { "rows" }
}
