//! Transcript entries: one cell per event worth reading (a proposal and its
//! rationale, a verdict, an approval, a summary, a conclusion), each able
//! to render itself to lines for a given width. The live session and the
//! audit viewer build them from the same events, so they read the same.
//!
//! A cell holds what it shows and nothing else; it never reaches back into
//! the session, so rendering one is cheap and independent of the others.
//! What the agent wrote (rationale, questions, conclusions) is shown as
//! data, in its own style, never as if ward had said it.

use ratatui::text::{Line, Span};

use super::text;
use super::theme::Theme;
use crate::session::events::{AdmitKind, DecisionKind, EventData, Outcome, ProposalId, Risk, Source};
use crate::session::{ProposalState, SessionState};

/// One transcript entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub seq: u64,
    pub ts: String,
    /// The proposal this entry is about, if any (the detail pane shows it).
    pub proposal: Option<crate::session::events::ProposalId>,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Started {
        runbook: String,
        target: String,
        environment: String,
        operator: String,
        agent: String,
        dry_run: bool,
    },
    Proposed {
        step: String,
        source: Source,
        rationale: Option<String>,
        sql: String,
    },
    Gated {
        step: String,
        decision: DecisionKind,
        approvers: u32,
        risk: Risk,
        rules: Vec<String>,
    },
    Decided {
        step: String,
        approved: bool,
        operator: String,
        reason: String,
        standing: bool,
    },
    Executed {
        step: String,
        rows: u64,
        capped: bool,
        duration_ms: u64,
    },
    Summary {
        step: String,
        summarizer: String,
        text: String,
        truncated: bool,
    },
    Verified {
        step: String,
        ok: bool,
        expect: String,
        detail: String,
    },
    Failed {
        step: Option<String>,
        kind: String,
        message: String,
    },
    AgentError(String),
    Asked(String),
    Answered {
        operator: String,
        text: String,
    },
    Standing {
        fingerprint: String,
        operator: String,
        reason: String,
    },
    Revoked {
        fingerprint: String,
        operator: String,
    },
    Resumed {
        operator: String,
        interrupted: usize,
        pending: usize,
    },
    Concluded {
        text: String,
        recommendation: Option<String>,
    },
    Ended {
        outcome: Outcome,
    },
    /// Where a recorded log stops verifying: what follows is not to be
    /// trusted.
    Tampered {
        reason: String,
    },
    /// A line of the log that does not read as an event of its kind (a
    /// newer ward, or tampering): shown, never skipped silently.
    Unreadable {
        kind: String,
        error: String,
    },
}

fn step_of(state: &SessionState, proposal: &ProposalId) -> String {
    state
        .proposal(proposal)
        .map_or_else(|| "?".into(), step_label)
}

/// A proposal's name in the transcript: its step id, or `ad-hoc`.
pub fn step_label(p: &ProposalState) -> String {
    p.step_id.clone().unwrap_or_else(|| "ad-hoc".into())
}

impl Cell {
    /// The cell for one event, after the event was applied to `state`;
    /// `None` for events only the status bar or the step list show.
    pub fn from_event(
        seq: u64,
        ts: &str,
        hash: &str,
        e: &EventData,
        state: &SessionState,
    ) -> Option<Cell> {
        let proposal = match e {
            EventData::Proposed(_) => Some(ProposalId::new(hash)),
            other => other.proposal().cloned(),
        };
        let step = || proposal.as_ref().map(|p| step_of(state, p));
        let body = match e {
            EventData::SessionStarted(s) => Body::Started {
                runbook: s.runbook.clone(),
                target: s
                    .target
                    .get("name")
                    .and_then(|v| v.as_str())
                    .unwrap_or("?")
                    .to_string(),
                environment: s.environment.clone(),
                operator: s.operator.clone(),
                agent: agent_name(&s.agent),
                dry_run: s.dry_run,
            },
            EventData::Proposed(p) => Body::Proposed {
                step: p.step_id.clone().unwrap_or_else(|| "ad-hoc".into()),
                source: p.source.clone(),
                rationale: p.rationale.clone(),
                sql: p.sql.clone(),
            },
            EventData::Gated(g) => Body::Gated {
                step: step().unwrap_or_default(),
                decision: g.decision,
                approvers: g.approvers,
                risk: g.risk,
                rules: g.rules.clone(),
            },
            EventData::Approved(d) | EventData::Rejected(d) => Body::Decided {
                step: step().unwrap_or_default(),
                approved: matches!(e, EventData::Approved(_)),
                operator: d.operator.clone(),
                reason: d.reason.clone(),
                standing: d.standing.is_some(),
            },
            EventData::Executed(x) => Body::Executed {
                step: step().unwrap_or_default(),
                rows: x.rows_seen,
                capped: x.capped,
                duration_ms: x.duration_ms,
            },
            EventData::Summarized(s) => Body::Summary {
                step: step().unwrap_or_default(),
                summarizer: s.summarizer.clone(),
                text: s.summary.clone(),
                truncated: s.truncated,
            },
            EventData::Verified(v) => Body::Verified {
                step: step().unwrap_or_default(),
                ok: v.ok,
                expect: v.expect.clone(),
                detail: v.detail.clone(),
            },
            EventData::Failed(f) => Body::Failed {
                step: step(),
                kind: f.kind.to_string(),
                message: f.message.clone(),
            },
            EventData::AgentError(a) => Body::AgentError(a.message.clone()),
            EventData::Asked(q) => Body::Asked(q.question.clone()),
            EventData::Answered(a) => Body::Answered {
                operator: a.operator.clone(),
                text: a.text.clone(),
            },
            EventData::StandingApproved(s) => Body::Standing {
                fingerprint: s.fingerprint.clone(),
                operator: s.operator.clone(),
                reason: s.reason.clone(),
            },
            EventData::Revoked(r) => Body::Revoked {
                fingerprint: r.fingerprint.clone(),
                operator: r.operator.clone(),
            },
            EventData::Resumed(r) => Body::Resumed {
                operator: r.operator.clone(),
                interrupted: r.interrupted.len(),
                pending: r.pending.len(),
            },
            EventData::Concluded(c) => Body::Concluded {
                text: c.text.clone(),
                recommendation: c.recommendation.clone(),
            },
            EventData::SessionEnded(s) => Body::Ended {
                outcome: s.outcome,
            },
            // Admission at execution shows only when it holds the step
            // back or changed the verdict.
            EventData::Readmitted(r) if r.changed || r.admit != AdmitKind::Run => Body::Gated {
                step: step().unwrap_or_default(),
                decision: r.decision,
                approvers: r.approvers,
                risk: r.risk,
                rules: r.rules.clone(),
            },
            EventData::ApprovalRefused(a) => Body::Failed {
                step: step(),
                kind: format!("approval by {} refused", a.operator),
                message: a.reason.clone(),
            },
            EventData::Readmitted(_)
            | EventData::Analyzed(_)
            | EventData::Executing(_)
            | EventData::AgentUsage(_) => {
                return None;
            }
        };
        Some(Cell {
            seq,
            ts: ts.to_string(),
            proposal,
            body,
        })
    }

    /// The cell for a log line that did not parse as its kind.
    pub fn unreadable(seq: u64, ts: &str, kind: &str, error: &str) -> Cell {
        Cell {
            seq,
            ts: ts.to_string(),
            proposal: None,
            body: Body::Unreadable {
                kind: kind.to_string(),
                error: error.to_string(),
            },
        }
    }

    /// The marker put in front of the event where verification failed.
    pub fn tampered(seq: u64, ts: &str, reason: &str) -> Cell {
        Cell {
            seq,
            ts: ts.to_string(),
            proposal: None,
            body: Body::Tampered {
                reason: reason.to_string(),
            },
        }
    }

    /// The cell as lines at most `width` cells wide.
    pub fn display_lines(&self, width: u16, theme: &Theme) -> Vec<Line<'static>> {
        let width = usize::from(width).max(10);
        let body_w = width.saturating_sub(INDENT);
        let mut out = Vec::new();
        let head = |glyph: &str, gs, spans: Vec<Span<'static>>| {
            let mut v = vec![
                Span::styled(format!("{} ", text::clock(&self.ts)), theme.dim()),
                Span::styled(format!("{glyph} "), gs),
            ];
            v.extend(spans);
            text::clip_spans(v, width)
        };
        match &self.body {
            Body::Started {
                runbook,
                target,
                environment,
                operator,
                agent,
                dry_run,
            } => {
                out.push(head(
                    "●",
                    theme.info(),
                    vec![
                        Span::styled("session started ", theme.bold()),
                        Span::raw(format!("{runbook} on {target} ")),
                        Span::styled(
                            format!("[{}]", environment.to_uppercase()),
                            theme.env_badge(environment),
                        ),
                    ],
                ));
                let dry = if *dry_run {
                    " · dry run: nothing but reads runs"
                } else {
                    ""
                };
                out.extend(text::wrapped_lines(
                    &format!("operator {operator} · agent {agent}{dry}"),
                    width,
                    INDENT,
                    theme.dim(),
                ));
            }
            Body::Proposed {
                step,
                source,
                rationale,
                sql,
            } => {
                out.push(head(
                    "▶",
                    theme.title(),
                    vec![
                        Span::styled(format!("{source} proposes "), theme.plain()),
                        Span::styled(step.clone(), theme.bold()),
                    ],
                ));
                if let Some(r) = rationale.as_deref().filter(|r| !r.trim().is_empty()) {
                    out.extend(text::wrapped_lines(
                        &format!("“{}”", r.trim()),
                        width,
                        INDENT,
                        theme.accent(),
                    ));
                }
                out.push(text::clip_spans(
                    vec![
                        Span::raw(" ".repeat(INDENT)),
                        Span::styled(text::first_line(sql), theme.dim()),
                    ],
                    width,
                ));
            }
            Body::Gated {
                step,
                decision,
                approvers,
                risk,
                rules,
            } => {
                let (glyph, style, word) = match decision {
                    DecisionKind::Allow => ("✓", theme.ok(), "allowed".to_string()),
                    DecisionKind::Deny => ("⊘", theme.bad(), "DENIED".to_string()),
                    DecisionKind::Approve => (
                        "◇",
                        theme.warn(),
                        format!(
                            "needs approval ({approvers} approver{})",
                            if *approvers == 1 { "" } else { "s" }
                        ),
                    ),
                };
                out.push(head(
                    glyph,
                    style,
                    vec![
                        Span::styled(format!("{step} "), theme.bold()),
                        Span::styled(word, style),
                        Span::raw(" · "),
                        Span::styled(risk.name(), theme.risk(*risk)),
                    ],
                ));
                if !rules.is_empty() {
                    out.extend(text::wrapped_lines(
                        &format!("rules: {}", rules.join(", ")),
                        width,
                        INDENT,
                        theme.dim(),
                    ));
                }
            }
            Body::Decided {
                step,
                approved,
                operator,
                reason,
                standing,
            } => {
                let (glyph, style, word) = if *approved {
                    ("✔", theme.ok(), "approved")
                } else {
                    ("✘", theme.bad(), "rejected")
                };
                let by = if *standing {
                    format!(" by {operator} (standing approval for this session)")
                } else {
                    format!(" by {operator}")
                };
                out.push(head(
                    glyph,
                    style,
                    vec![
                        Span::styled(format!("{step} "), theme.bold()),
                        Span::styled(word, style),
                        Span::raw(by),
                    ],
                ));
                out.extend(text::wrapped_lines(
                    &format!("reason: {reason}"),
                    width,
                    INDENT,
                    theme.plain(),
                ));
            }
            Body::Executed {
                step,
                rows,
                capped,
                duration_ms,
            } => {
                let cap = if *capped { " (capped)" } else { "" };
                out.push(head(
                    "■",
                    theme.info(),
                    vec![
                        Span::styled(format!("{step} "), theme.bold()),
                        Span::raw(format!(
                            "ran in {}, {} row{}{cap}",
                            text::millis(*duration_ms),
                            text::thousands(*rows),
                            if *rows == 1 { "" } else { "s" }
                        )),
                    ],
                ));
            }
            Body::Summary {
                step,
                summarizer,
                text: body,
                truncated,
            } => {
                out.push(head(
                    "≡",
                    theme.info(),
                    vec![
                        Span::raw("evidence from "),
                        Span::styled(step.clone(), theme.bold()),
                        Span::styled(format!(" ({summarizer})"), theme.dim()),
                    ],
                ));
                for l in text::wrap(body.trim_end(), body_w) {
                    out.push(Line::from(vec![
                        Span::raw(" ".repeat(INDENT)),
                        Span::raw(l),
                    ]));
                }
                if *truncated {
                    out.push(text::clip_spans(
                        vec![
                            Span::raw(" ".repeat(INDENT)),
                            Span::styled("(cut to the evidence budget)", theme.dim()),
                        ],
                        width,
                    ));
                }
            }
            Body::Verified {
                step,
                ok,
                expect,
                detail,
            } => {
                let (glyph, style, word) = if *ok {
                    ("✔", theme.ok(), "verified")
                } else {
                    ("✘", theme.bad(), "verification FAILED")
                };
                out.push(head(
                    glyph,
                    style,
                    vec![
                        Span::styled(format!("{step} "), theme.bold()),
                        Span::styled(word, style),
                    ],
                ));
                out.extend(text::wrapped_lines(
                    &format!("expect {expect}: {detail}"),
                    width,
                    INDENT,
                    theme.dim(),
                ));
            }
            Body::Failed {
                step,
                kind,
                message,
            } => {
                out.push(head(
                    "✘",
                    theme.bad(),
                    vec![
                        Span::styled(
                            format!("{} ", step.as_deref().unwrap_or("session")),
                            theme.bold(),
                        ),
                        Span::styled(format!("failed ({kind})"), theme.bad()),
                    ],
                ));
                out.extend(text::wrapped_lines(message, width, INDENT, theme.plain()));
            }
            Body::AgentError(m) => {
                out.push(head(
                    "!",
                    theme.bad(),
                    vec![Span::styled("agent error", theme.bad())],
                ));
                out.extend(text::wrapped_lines(m, width, INDENT, theme.plain()));
            }
            Body::Asked(q) => {
                out.push(head(
                    "?",
                    theme.accent(),
                    vec![Span::styled("the agent asks", theme.accent())],
                ));
                out.extend(text::wrapped_lines(q, width, INDENT, theme.accent()));
            }
            Body::Answered { operator, text: t } => {
                out.push(head(
                    "↳",
                    theme.plain(),
                    vec![Span::raw(format!("{operator} answered"))],
                ));
                out.extend(text::wrapped_lines(t, width, INDENT, theme.plain()));
            }
            Body::Standing {
                fingerprint,
                operator,
                reason,
            } => {
                out.push(head(
                    "⚑",
                    theme.warn(),
                    vec![Span::styled(
                        format!(
                            "standing approval by {operator} for statement {}",
                            short(fingerprint)
                        ),
                        theme.warn(),
                    )],
                ));
                out.extend(text::wrapped_lines(
                    &format!("for the rest of this session · reason: {reason}"),
                    width,
                    INDENT,
                    theme.dim(),
                ));
            }
            Body::Revoked {
                fingerprint,
                operator,
            } => {
                out.push(head(
                    "⚑",
                    theme.plain(),
                    vec![Span::raw(format!(
                        "standing approval for {} revoked by {operator}",
                        short(fingerprint)
                    ))],
                ));
            }
            Body::Resumed {
                operator,
                interrupted,
                pending,
            } => {
                out.push(head(
                    "↻",
                    theme.info(),
                    vec![Span::raw(format!(
                        "resumed by {operator}: {interrupted} interrupted, {pending} awaiting approval"
                    ))],
                ));
            }
            Body::Concluded {
                text: t,
                recommendation,
            } => {
                out.push(head(
                    "◆",
                    theme.title(),
                    vec![Span::styled("conclusion", theme.title())],
                ));
                out.extend(text::wrapped_lines(t, width, INDENT, theme.bold()));
                if let Some(r) = recommendation {
                    out.extend(text::wrapped_lines(
                        &format!("recommendation: {r}"),
                        width,
                        INDENT,
                        theme.plain(),
                    ));
                }
            }
            Body::Ended { outcome } => {
                let style = match outcome {
                    Outcome::Concluded => theme.ok(),
                    Outcome::AwaitingApproval => theme.warn(),
                    Outcome::Denied | Outcome::Failed | Outcome::Cancelled => theme.bad(),
                };
                out.push(head(
                    "■",
                    style,
                    vec![
                        Span::raw("session ended: "),
                        Span::styled(outcome.words(), style),
                    ],
                ));
            }
            Body::Tampered { reason } => {
                out.push(head(
                    "✘",
                    theme.bad(),
                    vec![Span::styled(
                        "THE LOG DOES NOT VERIFY FROM HERE ON",
                        theme.bad(),
                    )],
                ));
                out.extend(text::wrapped_lines(reason, width, INDENT, theme.bad()));
            }
            Body::Unreadable { kind, error } => {
                out.push(head(
                    "✘",
                    theme.bad(),
                    vec![Span::styled(
                        format!("unreadable `{kind}` event"),
                        theme.bad(),
                    )],
                ));
                out.extend(text::wrapped_lines(error, width, INDENT, theme.dim()));
            }
        }
        out
    }

    /// How many lines the cell takes at `width`.
    pub fn height(&self, width: u16, theme: &Theme) -> usize {
        self.display_lines(width, theme).len()
    }
}

/// Body lines are indented past the clock.
const INDENT: usize = 4;

fn agent_name(agent: &serde_json::Value) -> String {
    let provider = agent
        .get("provider")
        .and_then(|v| v.as_str())
        .unwrap_or("offline");
    match agent.get("model").and_then(|v| v.as_str()) {
        Some(m) => format!("{provider} ({m})"),
        None => provider.to_string(),
    }
}

/// The first 12 characters of a fingerprint or hash.
pub fn short(id: &str) -> String {
    id.chars().take(12).collect()
}
