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

use super::app::{App, HomePane, Overlay, Screen, SessionRow};
use super::keys::{self, Action};
use super::layout;
use super::session::{Pane, SessionView, StepRow, StepStatus};
use super::text;
use super::theme::Theme;

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
            super::dialog_view::render_dialog(self, s, area, buf);
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

pub(super) fn pane<'a>(title: impl Into<String>, focused: bool, theme: &Theme) -> Block<'a> {
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

pub(super) fn badge(env: &str, theme: &Theme) -> Span<'static> {
    let text = if env.is_empty() {
        " ? ".to_string()
    } else {
        format!(" {} ", env.to_uppercase())
    };
    Span::styled(text, theme.env_badge(env))
}

pub(super) fn heading(title: &str, width: usize, theme: &Theme) -> Line<'static> {
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
        Verification::Ok { .. } => Span::styled("✔ chain intact", theme.ok()),
        Verification::Tampered { seq, .. } => {
            Span::styled(format!("✘ TAMPERED at seq {seq}"), theme.bad())
        }
        Verification::Truncated { .. } => Span::styled("! truncated", theme.warn()),
        Verification::Unsealed { .. } => Span::styled("… unsealed", theme.warn()),
    }
}

// ---------------------------------------------------------------- status bar

/// The status bar's key line: the message, then the keys. `? help` and
/// `q quit` are always there; when the line is short, the message is cut
/// first (to no less than half the line), then the other keys from the end.
fn hints_line(app: &App, width: usize) -> Line<'static> {
    let t = &app.theme;
    let hint = |k: String, word: &str| {
        vec![
            Span::styled(k, t.key()),
            Span::styled(format!(" {word}  "), t.dim()),
        ]
    };
    let (always, mut rest): (Vec<_>, Vec<_>) = keys::hint_actions(&app.contexts())
        .into_iter()
        .partition(|(_, _, a)| matches!(a, Action::Help | Action::Quit));
    let spans_width = |h: &[(String, &str, Action)]| {
        h.iter()
            .map(|(k, w, _)| text::width(k) + text::width(w) + 3)
            .sum::<usize>()
    };
    let room = width.saturating_sub(1 + spans_width(&always));
    let message = app.notice.as_ref().map(|n| {
        let style = if n.error { t.bad() } else { t.info() };
        (format!("{}  ", n.text), style)
    });
    let wanted = message
        .as_ref()
        .map_or(0, |(m, _)| text::width(m).min(room / 2));
    while !rest.is_empty() && spans_width(&rest) > room.saturating_sub(wanted) {
        rest.pop();
    }
    let mut spans = vec![Span::raw(" ")];
    if let Some((m, style)) = message {
        let fit = room.saturating_sub(spans_width(&rest));
        if fit > 0 {
            let shown = if text::width(&m) > fit {
                format!("{} ", text::clip(m.trim_end(), fit.saturating_sub(1)))
            } else {
                m
            };
            spans.push(Span::styled(shown, style));
        }
    }
    for (k, w, _) in rest.into_iter().chain(always) {
        spans.extend(hint(k, w));
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
        // After hand-offs: every runbook of the session, the current last.
        st.runbooks_run().join(" → ")
    };
    v.push(Span::raw(format!(" · {runbook}")));
    let sep = || Span::styled(" · ", t.dim());
    if s.offers_next()
        && let Some(next) = &st.next
    {
        v.push(sep());
        v.push(Span::styled(
            format!("next: {} (n)", next.runbook),
            t.accent(),
        ));
    }
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
    // What the provider's prompt cache served, when it says.
    let tokens = if st.tokens_cached > 0 {
        format!("{tokens} ({} cached)", text::thousands(st.tokens_cached))
    } else {
        tokens
    };
    let over = st
        .token_budget
        .is_some_and(|b| st.tokens_used * 10 >= b * 9);
    v.push(Span::styled(
        tokens,
        if over { t.warn() } else { t.plain() },
    ));
    if let Some(start) = st.started_at.as_deref()
        && let Some(secs) = text::secs_since(start, s.clock(app.now))
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
    // The team store lagging behind this session's log: the events are
    // safe locally, but other hosts do not see them.
    if let Some(sb) = &st.store_behind {
        v.push(sep());
        let behind = sb.behind(st.last_seq);
        let words = if sb.stopped {
            format!("store: refused, {behind} events not mirrored")
        } else {
            format!("store: unreachable, {behind} events behind")
        };
        v.push(Span::styled(
            words,
            t.bad().add_modifier(ratatui::style::Modifier::BOLD),
        ));
    }
    if !st.sealed && st.questions.iter().any(|(_, a)| a.is_none()) {
        v.push(sep());
        v.push(Span::styled("? the agent asks (A)", t.accent()));
    }
    let interrupted = st
        .proposals
        .iter()
        .filter(|p| st.outcome_missing(p))
        .count();
    if interrupted > 0 {
        v.push(sep());
        v.push(Span::styled(
            format!("{interrupted} interrupted, outcome unknown"),
            t.warn(),
        ));
    }
    let waiting = st.awaiting_approval().len();
    if waiting > 0 {
        v.push(sep());
        let words = if st.sealed || st.log_ended {
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
    let lay = if app.home.team.is_some() {
        layout::home_with_team(area)
    } else {
        layout::home(area)
    };
    render_runbooks(app, lay.runbooks, buf);
    render_targets(app, lay.targets, buf);
    render_recent_sessions(app, lay.sessions, buf);
    if let Some(team) = lay.team {
        render_team(app, team, buf);
    }
    // Another session is live where this one would start: said in a box
    // until Enter again (start beside it) or any other key (don't).
    if app.confirm == Some(crate::tui::Action::Open) && !app.home.beside.is_empty() {
        render_beside(app, area, buf);
    }
    let t = &app.theme;
    let h = &app.home;
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

/// The runbook list, with the filter on top.
fn render_runbooks(app: &App, area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    let h = &app.home;
    let focus = h.focus();
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
    let inner = block.inner(area);
    block.render(area, buf);
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
}

/// The targets of ward.yaml; the chosen one is where Enter starts a runbook.
fn render_targets(app: &App, area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    let h = &app.home;
    let focus = h.focus();
    let block = pane("Targets", focus == HomePane::Targets, t);
    let inner = block.inner(area);
    block.render(area, buf);
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
}

fn render_recent_sessions(app: &App, area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    let h = &app.home;
    let focus = h.focus();
    let block = pane("Recent sessions", focus == HomePane::Sessions, t);
    let inner = block.inner(area);
    block.render(area, buf);
    let lines = session_rows(
        app,
        &h.sessions,
        h.sessions_loaded,
        focus == HomePane::Sessions,
        inner,
        false,
    );
    Paragraph::new(lines).render(inner, buf);
}

fn render_beside(app: &App, area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    let h = &app.home;
    let target = h
        .beside
        .first()
        .map(|r| r.target.clone())
        .unwrap_or_default();
    let rows = u16::try_from(h.beside.len() * 2 + 2).unwrap_or(u16::MAX);
    let r = layout::centered(area, area.width.saturating_sub(8).min(90), rows + 2);
    Clear.render(r, buf);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(t.warn())
        .title(Span::styled(
            format!(" Live on {target} already "),
            t.warn().add_modifier(ratatui::style::Modifier::BOLD),
        ));
    let inner = block.inner(r);
    block.render(r, buf);
    let w = usize::from(inner.width);
    let mut lines = Vec::new();
    for b in &h.beside {
        lines.push(text::clip_spans(
            vec![
                Span::styled(b.owner.clone(), t.bold()),
                Span::raw(format!(
                    " runs {} on {} since {} (from {})",
                    b.runbook, b.target, b.since, b.host
                )),
            ],
            w,
        ));
        lines.push(text::clip_spans(
            vec![Span::styled(
                format!(
                    "  {} · {}",
                    b.session_id,
                    b.waiting.as_deref().unwrap_or("working")
                ),
                t.dim(),
            )],
            w,
        ));
    }
    lines.push(Line::from(""));
    lines.push(text::clip_spans(
        vec![
            Span::styled("Enter", t.key()),
            Span::raw(" start beside it (recorded as acknowledged)   "),
            Span::styled("any other key", t.key()),
            Span::raw(" don't"),
        ],
        w,
    ));
    Paragraph::new(lines).render(inner, buf);
}

/// The team's live sessions (from the store): who, which runbook, which
/// target, since when, waiting for whom. Two lines each.
fn render_team(app: &App, area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    let h = &app.home;
    let focused = h.focus() == HomePane::Team;
    let block = pane("Team · live sessions", focused, t);
    let inner = block.inner(area);
    block.render(area, buf);
    let w = usize::from(inner.width);
    let rows = h.team.as_deref().unwrap_or_default();
    let mut lines = Vec::new();
    if let Some(e) = &h.team_error {
        lines.push(text::clip_spans(
            vec![Span::styled(format!("store unreachable: {e}"), t.warn())],
            w,
        ));
    }
    if rows.is_empty() && h.team_error.is_none() {
        lines.push(Line::from(Span::styled(
            if h.team_asked.is_some() {
                "no live sessions in the team"
            } else {
                "reading the team store…"
            },
            t.dim(),
        )));
    }
    let per_row = 2;
    let fit = (usize::from(inner.height) / per_row).max(1);
    let sel = h.team_sel.min(rows.len().saturating_sub(1));
    let first = sel.saturating_sub(fit - 1);
    for (i, r) in rows.iter().enumerate().skip(first).take(fit) {
        let mark = Span::styled(if i == sel { "▸ " } else { "  " }, t.title());
        let mut spans = vec![
            mark,
            Span::styled(r.owner.clone(), t.bold()),
            Span::raw(format!(" · {} on {} ", r.runbook, r.target)),
            badge(&r.environment, t),
            Span::styled(format!(" since {}", r.since), t.dim()),
        ];
        if i == sel && focused {
            spans = spans
                .into_iter()
                .map(|s| s.patch_style(t.selected()))
                .collect();
        }
        lines.push(text::clip_spans(spans, w));
        let waiting = r.waiting.as_deref().unwrap_or("working");
        lines.push(text::clip_spans(
            vec![
                Span::raw("    "),
                Span::styled(
                    waiting.to_string(),
                    if r.waiting.is_some() {
                        t.warn()
                    } else {
                        t.dim()
                    },
                ),
            ],
            w,
        ));
    }
    Paragraph::new(lines).render(inner, buf);
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
    let lay = s.layout(area);
    render_steps(app, s, lay.steps, buf);
    render_transcript(app, s, lay.transcript, buf);
    super::detail_view::render_detail(app, s, lay.detail, buf);
    render_status(app, session_status(app, s), lay.status, buf);
}

fn step_glyph(app: &App, st: StepStatus, live: bool) -> (String, Style) {
    let t = &app.theme;
    match st {
        StepStatus::Pending => ("○".into(), t.dim()),
        StepStatus::Proposed => ("◇".into(), t.plain()),
        StepStatus::AwaitingApproval => ("◈".into(), t.warn()),
        StepStatus::Ready => ("▷".into(), t.info()),
        // Only a live session spins: a replay is a still picture.
        StepStatus::Running if live => (spinner(app).to_string(), t.info()),
        StepStatus::Running => ("▶".into(), t.info()),
        StepStatus::Interrupted => ("?".into(), t.warn()),
        StepStatus::Done => ("✔".into(), t.ok()),
        StepStatus::Failed => ("✘".into(), t.bad()),
        StepStatus::Skipped => ("↷".into(), t.dim()),
        StepStatus::Denied => ("⊘".into(), t.bad()),
        StepStatus::Rejected => ("✗".into(), t.bad()),
        StepStatus::DryRun => ("◌".into(), t.info()),
    }
}

/// The second line of a step row: its status with what goes with it.
pub(super) fn step_status_words(
    app: &App,
    s: &SessionView,
    row: &StepRow,
    p: Option<&ProposalState>,
) -> String {
    let mut w = row.status.word().to_string();
    match (row.status, p) {
        (StepStatus::Running, Some(p)) => {
            if let Some(secs) = p
                .started_at
                .as_deref()
                .and_then(|t| text::secs_since(t, s.clock(app.now)))
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
    let height = usize::from(inner.height);
    if rows.is_empty() {
        let waiting = Line::from(Span::styled("waiting for the first step…", t.dim()));
        Paragraph::new(waiting).render(inner, buf);
        return;
    }
    let sel = s.selected_step(&rows);
    let blocks: Vec<Vec<Line<'static>>> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| step_row_lines(app, s, row, i == sel, w))
        .collect();
    // Scrolled so the selected row ends on screen.
    let end: usize = blocks[..=sel].iter().map(Vec::len).sum();
    let skip = end.saturating_sub(height);
    let lines: Vec<Line<'static>> = blocks
        .into_iter()
        .flatten()
        .skip(skip)
        .take(height)
        .collect();
    Paragraph::new(lines).render(inner, buf);
}

/// One row of the step list: the name (wrapped, never cut) and its status.
fn step_row_lines(
    app: &App,
    s: &SessionView,
    row: &StepRow,
    selected: bool,
    w: usize,
) -> Vec<Line<'static>> {
    let t = &app.theme;
    let p = row.proposal.and_then(|i| s.state.proposals.get(i));
    let (glyph, gstyle) = step_glyph(app, row.status, s.is_live() && !s.closed);
    let status_style = match row.status {
        StepStatus::AwaitingApproval | StepStatus::Interrupted => t.warn(),
        StepStatus::Failed | StepStatus::Denied | StepStatus::Rejected => t.bad(),
        StepStatus::Done if p.and_then(|p| p.verified) == Some(false) => t.bad(),
        StepStatus::Done => t.ok(),
        StepStatus::Running => t.info(),
        _ => t.dim(),
    };
    let room = w.saturating_sub(2).max(1);
    let mut lines: Vec<Vec<Span<'static>>> = Vec::new();
    for (n, part) in text::wrap(&row.id, room).into_iter().enumerate() {
        let lead = if n == 0 {
            Span::styled(format!("{glyph} "), gstyle)
        } else {
            Span::raw("  ")
        };
        lines.push(vec![lead, Span::styled(part, t.bold())]);
    }
    let status = step_status_words(app, s, row, p);
    let kind = row
        .kind
        .as_deref()
        .filter(|k| *k != "diagnostic")
        .map(|k| format!(" · {k}"))
        .unwrap_or_default();
    if text::width(&status) + text::width(&kind) <= room {
        lines.push(vec![
            Span::styled(format!("  {status}"), status_style),
            Span::styled(kind, t.dim()),
        ]);
    } else {
        for part in text::wrap(&format!("{status}{kind}"), room) {
            lines.push(vec![Span::styled(format!("  {part}"), status_style)]);
        }
    }
    let hl = if selected && (s.focus == Pane::Steps || s.detail_from == Pane::Steps) {
        t.selected()
    } else {
        Style::new()
    };
    lines
        .into_iter()
        .map(|l| text::clip_spans(l.into_iter().map(|x| x.patch_style(hl)).collect(), w))
        .collect()
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
pub(super) fn gate_lines(p: &ProposalState, width: usize, t: &Theme) -> Vec<Line<'static>> {
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
    let r = layout::help(area);
    Clear.render(r, buf);
    let block = pane("Keys (? or Esc closes)", true, t);
    let inner = block.inner(r);
    block.render(r, buf);
    let w = usize::from(inner.width);
    let lines: Vec<Line<'static>> = keys::help_rows()
        .into_iter()
        .map(|(ctx, row)| match row {
            None => Line::from(Span::styled(ctx.title().to_string(), t.title())),
            Some(b) => text::clip_spans(
                vec![
                    Span::styled(
                        format!("  {}", text::pad(&keys::keys_label(b.keys, 3), 16)),
                        t.key(),
                    ),
                    Span::raw(b.help.to_string()),
                ],
                w,
            ),
        })
        .collect();
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
pub(super) fn rows_word(n: u64) -> &'static str {
    if n == 1 { "row" } else { "rows" }
}
