//! Transcript entries: one cell per event worth reading (a proposal and its
//! rationale, a verdict, an approval, a summary, a conclusion), each able
//! to render itself to lines for a given width. The words are the event's
//! one description (`session::describe`, what `ward audit show` and the
//! Markdown report say too); a cell only adds the mark in front and the
//! styling.
//!
//! A cell holds what it shows and nothing else; it never reaches back into
//! the session, so rendering one is cheap and independent of the others.
//! What the agent wrote (rationale, questions, conclusions) is shown as
//! data, in its own style, never as if ward had said it.

use ratatui::style::Style;
use ratatui::text::{Line, Span};

use super::text;
use super::theme::Theme;
use crate::session::describe::{Context, Description, Label, Tone};
use crate::session::events::{AdmitKind, DecisionKind, EventData, ProposalId};
use crate::session::{ProposalState, SessionState};

/// One transcript entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub seq: u64,
    pub ts: String,
    /// The proposal this entry is about, if any (the detail pane shows it).
    pub proposal: Option<ProposalId>,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// An event, as every front end describes it, with the mark the
    /// transcript puts in front of it.
    Event {
        glyph: &'static str,
        description: Description,
    },
    /// Where a recorded log stops verifying: what follows is not to be
    /// trusted.
    Tampered { reason: String },
    /// A line of the log that does not read as an event of its kind (a
    /// newer ward, or tampering): shown, never skipped silently.
    Unreadable { kind: String, error: String },
}

/// A proposal's name in the transcript: its step id, or `ad-hoc`.
pub fn step_label(p: &ProposalState) -> String {
    crate::session::describe::step_label(p.step_id.as_deref()).to_string()
}

/// The mark in front of an event in the transcript; `None` for events only
/// the status bar or the step list show.
fn glyph(e: &EventData) -> Option<&'static str> {
    Some(match e {
        EventData::SessionStarted(_) => "●",
        EventData::Proposed(_) => "▶",
        EventData::Gated(g) => match g.decision {
            DecisionKind::Allow => "✓",
            DecisionKind::Deny => "⊘",
            DecisionKind::Approve => "◇",
        },
        // Admission at execution shows only when it holds the step back
        // or changed the verdict.
        EventData::Readmitted(r) if r.changed || r.admit != AdmitKind::Run => match r.admit {
            AdmitKind::Run => "✓",
            AdmitKind::Deny => "⊘",
            AdmitKind::NeedsApprovals | AdmitKind::DryRun => "◇",
        },
        EventData::Approved(_) => "✔",
        EventData::Rejected(_) | EventData::ApprovalRefused(_) | EventData::Failed(_) => "✘",
        EventData::Executed(_) | EventData::SessionEnded(_) => "■",
        EventData::Summarized(_) => "≡",
        EventData::Verified(v) => {
            if v.ok {
                "✔"
            } else {
                "✘"
            }
        }
        EventData::AgentError(_) => "!",
        EventData::Asked(_) => "?",
        EventData::Answered(_) => "↳",
        EventData::StandingApproved(_) | EventData::Revoked(_) => "⚑",
        EventData::Resumed(_) => "↻",
        EventData::Concluded(_) => "◆",
        EventData::HandedOff(_) => "⇒",
        EventData::StoreUnreachable(_) => "⚠",
        EventData::StoreCaughtUp(_) => "✔",
        EventData::Readmitted(_)
        | EventData::Analyzed(_)
        | EventData::Executing(_)
        | EventData::AgentUsage(_) => return None,
    })
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
        let glyph = glyph(e)?;
        let proposal = match e {
            EventData::Proposed(_) => Some(ProposalId::new(hash)),
            other => other.proposal().cloned(),
        };
        let step = proposal
            .as_ref()
            .map(|p| state.proposal(p).map_or_else(|| "?".into(), step_label));
        let description = e.describe(Context {
            hash,
            step: step.as_deref(),
        });
        Some(Cell {
            seq,
            ts: ts.to_string(),
            proposal,
            body: Body::Event { glyph, description },
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
        let head = |glyph: &str, gs: Style, spans: Vec<Span<'static>>| {
            let mut v = vec![
                Span::styled(format!("{} ", text::clock(&self.ts)), theme.dim()),
                Span::styled(format!("{glyph} "), gs),
            ];
            v.extend(spans);
            text::clip_spans(v, width)
        };
        match &self.body {
            Body::Event { glyph, description } => {
                let tone = tone_style(description.tone, theme);
                let headline = match description.tone {
                    Tone::Info | Tone::Plain => theme.bold(),
                    _ => tone,
                };
                out.push(head(
                    glyph,
                    tone,
                    vec![Span::styled(description.headline.clone(), headline)],
                ));
                for (label, value) in &description.details {
                    match label {
                        Label::Fact(word) => out.extend(text::wrapped_lines(
                            &format!("{word}: {value}"),
                            width,
                            INDENT,
                            theme.dim(),
                        )),
                        Label::AgentText => out.extend(text::wrapped_lines(
                            &format!("“{}”", value.trim()),
                            width,
                            INDENT,
                            theme.accent(),
                        )),
                        Label::Message => {
                            out.extend(text::wrapped_lines(value, width, INDENT, theme.plain()));
                        }
                        Label::Sql => out.push(text::clip_spans(
                            vec![
                                Span::raw(" ".repeat(INDENT)),
                                Span::styled(text::first_line(value), theme.dim()),
                            ],
                            width,
                        )),
                        Label::Evidence => {
                            for l in text::wrap(value.trim_end(), body_w) {
                                out.push(Line::from(vec![
                                    Span::raw(" ".repeat(INDENT)),
                                    Span::raw(l),
                                ]));
                            }
                        }
                    }
                }
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

/// How a tone looks in this theme.
pub fn tone_style(tone: Tone, theme: &Theme) -> Style {
    match tone {
        Tone::Ok => theme.ok(),
        Tone::Warn => theme.warn(),
        Tone::Bad => theme.bad(),
        Tone::Info => theme.info(),
        Tone::Agent => theme.accent(),
        Tone::Plain => theme.plain(),
    }
}

/// Body lines are indented past the clock.
const INDENT: usize = 4;

/// The first 12 characters of a fingerprint or hash.
pub fn short(id: &str) -> String {
    crate::session::events::short(id).to_string()
}
