//! The detail pane: everything about the step or proposal in view — what
//! it is and why it was proposed, its SQL, the gate's verdict, rollback
//! and verify, and what it found — or, with nothing in view, the session's
//! overview. Live sessions and replays draw the same sections from the
//! same state. Pure like the rest of the view.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use crate::session::ProposalState;

use super::app::App;
use super::pictures;
use super::session::{Pane, SessionView, StepInfo, StepRow};
use super::sql_view;
use super::text;
use super::theme::Theme;
use super::view::{badge, gate_lines, heading, pane, rows_word, step_status_words};

pub(super) fn render_detail(app: &App, s: &SessionView, area: Rect, buf: &mut Buffer) {
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

fn detail_lines(
    app: &App,
    s: &SessionView,
    p: Option<&ProposalState>,
    row: Option<&StepRow>,
    width: usize,
) -> Vec<Line<'static>> {
    let t = &app.theme;
    if p.is_none() && row.is_none() {
        return session_overview(app, s, width);
    }
    let spec = row
        .and_then(|r| s.info.runbook.as_ref().and_then(|rb| rb.step(&r.id)))
        .or_else(|| {
            p.and_then(|p| p.step_id.as_deref())
                .and_then(|id| s.info.runbook.as_ref().and_then(|rb| rb.step(id)))
        });
    let mut out = head_lines(app, s, p, row, spec, width);
    let plan = plan_lines(p, spec, width, t);
    let found = p.map(|p| found_lines(s, p, width, t)).unwrap_or_default();
    // Before a step runs, what matters is what it will do; after, what it
    // found. The other half follows.
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

/// What it is, its status, and why it was proposed.
fn head_lines(
    app: &App,
    s: &SessionView,
    p: Option<&ProposalState>,
    row: Option<&StepRow>,
    spec: Option<&StepInfo>,
    width: usize,
) -> Vec<Line<'static>> {
    let t = &app.theme;
    let mut out: Vec<Line<'static>> = Vec::new();
    let id = row
        .map(|r| r.id.clone())
        .or_else(|| p.map(super::cells::step_label))
        .unwrap_or_default();
    let status = row
        .map(|r| step_status_words(app, s, r, p))
        .unwrap_or_default();
    let mut head = vec![Span::styled(id, t.bold())];
    if let Some(k) = spec.map(|s| s.kind.clone()) {
        head.push(Span::styled(format!(" · {k}"), t.dim()));
    }
    let head_w: usize = head.iter().map(|x| text::width(&x.content)).sum();
    // The status goes on its own line rather than be cut.
    let status_apart = !status.is_empty() && head_w + 3 + text::width(&status) > width;
    if !status.is_empty() && !status_apart {
        head.push(Span::raw(format!(" · {status}")));
    }
    out.push(text::clip_spans(head, width));
    if status_apart {
        out.extend(text::wrapped_lines(&status, width, 0, t.plain()));
    }
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
    if spec.is_none()
        && let Some(step) = p.and_then(|p| p.step_id.as_deref())
    {
        // Rollback, verify and the rule are the runbook's; a replay of a
        // runbook this ward cannot find says so instead of leaving them out.
        out.extend(text::wrapped_lines(
            &format!(
                "the runbook of step {step} is not loaded here: its rule, rollback and verify are not shown"
            ),
            width,
            0,
            t.warn(),
        ));
    }
    if let Some(rule) = spec.and_then(|s| s.when.as_deref()) {
        out.extend(text::wrapped_lines(
            &format!("rule: when {}", rule.trim()),
            width,
            0,
            t.dim(),
        ));
    }
    out
}

/// What it will do: SQL, the gate's verdict and decisions, rollback,
/// verify.
fn plan_lines(
    p: Option<&ProposalState>,
    spec: Option<&StepInfo>,
    width: usize,
    t: &Theme,
) -> Vec<Line<'static>> {
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
    plan
}

/// What it found: result, verification, pictures, the evidence.
fn found_lines(s: &SessionView, p: &ProposalState, width: usize, t: &Theme) -> Vec<Line<'static>> {
    let mut found: Vec<Line<'static>> = Vec::new();
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
    found
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
