//! Drawing the approval dialog: who proposes what and why (in words, with
//! the evidence it rests on and the runbook's rule), the SQL, the gate's
//! reasons, and the form. Pure like the rest of the view.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Widget};

use crate::session::ProposalState;

use super::app::{App, ApprovalDialog, DialogMode, Field, dialog_fields};
use super::cells;
use super::keys;
use super::layout;
use super::session::{SessionView, StepInfo, offers_for_session};
use super::sql_view;
use super::text;
use super::theme::{Theme, is_prod};
use super::view::{badge, gate_lines, heading};

/// At most this many lines of evidence: the SQL and the form need room.
const EVIDENCE_LINES: usize = 3;

/// The dialog over the session screen, for the proposal `app.dialog` names.
pub(super) fn render_dialog(app: &App, s: &SessionView, area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    let Some(d) = &app.dialog else { return };
    let Some(p) = s.state.proposal(&d.proposal) else {
        return;
    };
    let prod = is_prod(s.environment());
    let box_w = area.width.saturating_sub(4).min(100);
    let w = usize::from(box_w.saturating_sub(4));
    let spec = p
        .step_id
        .as_deref()
        .and_then(|id| s.info.runbook.as_ref().and_then(|rb| rb.step(id)));

    let mut lines = head_lines(s, p, spec, w, t);
    lines.extend(why_lines(s, p, spec, w, t));
    lines.push(heading("What will run", w, t));
    // The SQL goes in between, as many lines as fit (see `draw`).
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
    lines.extend(rollback_line(spec, w, t));
    lines.extend(approvals_lines(app, p, w, t));
    lines.push(Line::raw(""));
    lines.extend(form_lines(app, s, d, p, w));
    if let Some(e) = &d.error {
        lines.extend(text::wrapped_lines(&format!("✘ {e}"), w, 0, t.bad()));
    }

    let title = match d.mode {
        DialogMode::Reject => " Reject ",
        _ if prod => " APPROVAL NEEDED — PRODUCTION ",
        _ => " Approval needed ",
    };
    let border = if prod { t.bad() } else { t.warn() };
    let frame = Frame {
        title,
        border,
        width: box_w,
    };
    draw(app, frame, lines, (sql_at, sql), area, buf);
}

/// What it is, where: step, target, environment, kind, title.
fn head_lines(
    s: &SessionView,
    p: &ProposalState,
    spec: Option<&StepInfo>,
    w: usize,
    t: &Theme,
) -> Vec<Line<'static>> {
    let mut head = vec![
        Span::styled(cells::step_label(p), t.bold()),
        Span::raw(" on "),
        Span::styled(s.target(), t.bold()),
        Span::raw(" "),
        badge(s.environment(), t),
    ];
    if let Some(k) = spec.map(|s| s.kind.clone()) {
        head.push(Span::styled(format!(" · {k}"), t.dim()));
    }
    let mut lines = vec![text::clip_spans(head, w)];
    if let Some(title) = spec.and_then(|s| s.title.clone()) {
        lines.extend(text::wrapped_lines(&title, w, 0, t.plain()));
    }
    lines
}

/// Why it is proposed: the proposer's reason in words, the runbook's rule
/// (dimmed, for reviewers), and the evidence it rests on.
fn why_lines(
    s: &SessionView,
    p: &ProposalState,
    spec: Option<&StepInfo>,
    w: usize,
    t: &Theme,
) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    if let Some(r) = p.rationale.as_deref().filter(|r| !r.trim().is_empty()) {
        lines.extend(text::wrapped_lines(
            &format!("{} says: “{}”", p.source, r.trim()),
            w,
            0,
            t.accent(),
        ));
    }
    if let Some(rule) = spec.and_then(|s| s.when.as_deref()) {
        lines.extend(text::wrapped_lines(
            &format!("rule: when {}", rule.trim()),
            w,
            0,
            t.dim(),
        ));
    }
    for (i, (step, summary)) in evidence(s, p, spec).into_iter().enumerate() {
        let label = if i == 0 { "evidence  " } else { "          " };
        lines.push(text::clip_spans(
            vec![
                Span::styled(label, t.dim()),
                Span::styled(format!("{step}: "), t.bold()),
                Span::styled(summary, t.plain()),
            ],
            w,
        ));
    }
    lines
}

/// `(step, first line of its summary)` for the evidence a proposal rests
/// on: the steps its rule reads and the steps it requires first, then the
/// other diagnostics, up to [`EVIDENCE_LINES`].
fn evidence(s: &SessionView, p: &ProposalState, spec: Option<&StepInfo>) -> Vec<(String, String)> {
    let mut wanted: Vec<String> = Vec::new();
    if let Some(expr) = spec
        .and_then(|s| s.when.as_deref())
        .and_then(|w| crate::expr::Expr::compile(w).ok())
    {
        wanted.extend(expr.selections("facts").into_iter().map(|(step, _)| step));
    }
    wanted.extend(spec.map(|s| s.requires.clone()).unwrap_or_default());
    let summarized: Vec<(&str, &str)> = s
        .state
        .proposals
        .iter()
        .rev()
        .filter(|q| q.id != p.id)
        .filter_map(|q| Some((q.step_id.as_deref()?, q.summary.as_deref()?)))
        .collect();
    // Then the runbook's other diagnostics in its order (the order the
    // investigation reads in), or, without the runbook, the newest first.
    match &s.info.runbook {
        Some(rb) => wanted.extend(
            rb.steps
                .iter()
                .filter(|st| st.kind == "diagnostic")
                .map(|st| st.id.clone()),
        ),
        None => wanted.extend(summarized.iter().map(|(step, _)| step.to_string())),
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for step in wanted {
        if out.len() >= EVIDENCE_LINES {
            break;
        }
        if out.iter().any(|(s, _)| *s == step) {
            continue;
        }
        // The newest summary of that step.
        if let Some((_, summary)) = summarized.iter().find(|(s, _)| *s == step) {
            out.push((step, text::first_line(summary)));
        }
    }
    out
}

fn rollback_line(spec: Option<&StepInfo>, w: usize, t: &Theme) -> Option<Line<'static>> {
    let spec = spec.filter(|s| s.kind != "diagnostic")?;
    let (words, style) = match spec.rollback.as_deref() {
        Some("none") => ("none — irreversible".to_string(), t.bad()),
        Some(r) => (text::first_line(r), t.plain()),
        None => ("not stated".to_string(), t.warn()),
    };
    Some(text::clip_spans(
        vec![
            Span::styled("rollback: ", t.dim()),
            Span::styled(words, style),
        ],
        w,
    ))
}

/// The approvals given so far where more than one is needed.
fn approvals_lines(app: &App, p: &ProposalState, w: usize, t: &Theme) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    if p.approvers_needed <= 1 && p.approvals.is_empty() {
        return lines;
    }
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
    lines
}

/// The bottom of the dialog: the choice, or the form's fields.
fn form_lines(
    app: &App,
    s: &SessionView,
    d: &ApprovalDialog,
    p: &ProposalState,
    w: usize,
) -> Vec<Line<'static>> {
    let t = &app.theme;
    match d.mode {
        DialogMode::Choose => vec![Line::from(vec![
            Span::styled("a", t.key()),
            Span::raw(" approve (asks for a reason)   "),
            Span::styled("r", t.key()),
            Span::raw(" reject   "),
            Span::styled("Esc", t.key()),
            Span::raw(" close: approves nothing"),
        ])],
        DialogMode::Reject => vec![field_line(
            "Reason for rejecting (goes back to the agent):",
            &d.reason,
            true,
            None,
            w,
            t,
        )],
        DialogMode::Approve => approve_form(s, d, p, w, t),
    }
}

fn approve_form(
    s: &SessionView,
    d: &ApprovalDialog,
    p: &ProposalState,
    w: usize,
    t: &Theme,
) -> Vec<Line<'static>> {
    let env = s.environment().to_string();
    let fields = dialog_fields(d, s);
    let mut lines = vec![field_line(
        "Reason:",
        &d.reason,
        d.field == Field::Reason,
        None,
        w,
        t,
    )];
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
            w,
            t,
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
                p.fingerprint.as_deref().map(cells::short).unwrap_or_default(),
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
    if is_prod(&env) {
        lines.extend(text::wrapped_lines(
            &format!("this runs in {env}: type its name to confirm"),
            w,
            2,
            t.bad(),
        ));
    }
    lines
}

fn field_line(
    label: &str,
    value: &str,
    focused: bool,
    hint: Option<Span<'static>>,
    w: usize,
    t: &Theme,
) -> Line<'static> {
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
}

/// The box around the dialog.
struct Frame {
    title: &'static str,
    border: ratatui::style::Style,
    width: u16,
}

/// Draws `lines` in the box with the SQL spliced in at `sql.0`, as many
/// of its lines as fit: over the panes, never over the status bar (the
/// environment badge stays in sight).
fn draw(
    app: &App,
    frame: Frame,
    mut lines: Vec<Line<'static>>,
    (sql_at, sql): (usize, Vec<Line<'static>>),
    area: Rect,
    buf: &mut Buffer,
) {
    let t = &app.theme;
    let mut hint_spans = Vec::new();
    for (k, word) in keys::hints(&app.contexts()) {
        hint_spans.push(Span::styled(k, t.key()));
        hint_spans.push(Span::styled(format!(" {word}  "), t.dim()));
    }
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
    let box_h = u16::try_from(lines.len() + 2)
        .unwrap_or(u16::MAX)
        .min(main.height);
    let r = layout::centered(main, frame.width, box_h);
    Clear.render(r, buf);
    let block = Block::new()
        .borders(Borders::ALL)
        .border_style(frame.border)
        .title(Span::styled(frame.title, frame.border))
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
