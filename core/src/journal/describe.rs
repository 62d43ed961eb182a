//! One description per event, in plain words: what headless progress
//! lines, `ward audit show`, the TUI's transcript and the Markdown report
//! all say about it, so they can never disagree.
//!
//! A description is text and a tone, never styling: front ends decide how
//! a tone looks. What the agent wrote (rationale, questions, conclusions)
//! is labelled as such so a front end can show it as data, never as if
//! ward had said it.

use serde_json::Value;

use super::events::*;
use super::state::{SessionState, Status};
use crate::evidence::plural;
use crate::text::{first_line, millis, rows, thousands};

/// How an event reads: good news, something waiting on a human, something
/// that went wrong, or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Ok,
    Warn,
    Bad,
    Info,
    /// The agent's own words (rationale, question, conclusion).
    Agent,
    Plain,
}

impl Tone {
    /// A risk class: reads are fine, writes and schema changes want
    /// attention, anything that destroys, grants or is not understood is bad.
    /// Every front end colours risk through this one mapping.
    pub fn of_risk(risk: Risk) -> Tone {
        match risk {
            Risk::ReadOnly => Tone::Ok,
            Risk::Write | Risk::Schema => Tone::Warn,
            Risk::Destructive | Risk::Privilege | Risk::Unknown => Tone::Bad,
        }
    }

    /// A gate decision: allowed, waiting for a human, or denied.
    pub fn of_decision(decision: DecisionKind) -> Tone {
        match decision {
            DecisionKind::Allow => Tone::Ok,
            DecisionKind::Approve => Tone::Warn,
            DecisionKind::Deny => Tone::Bad,
        }
    }
}

/// What a detail line holds, so a front end can show the agent's words and
/// SQL apart from ward's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// `key: value` facts from ward (rules, reason, expectation, ...).
    Fact(&'static str),
    /// Text the agent wrote: shown as data.
    AgentText,
    /// A statement.
    Sql,
    /// Evidence as the summarizer wrote it (what the model saw).
    Evidence,
    /// An error or a message, shown as it is.
    Message,
}

impl Label {
    /// The word in front of the value, if the value is not shown bare.
    pub fn word(self) -> Option<&'static str> {
        match self {
            Label::Fact(w) => Some(w),
            _ => None,
        }
    }
}

/// An event in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    pub tone: Tone,
    /// One line: what happened.
    pub headline: String,
    /// More, one item per line or paragraph.
    pub details: Vec<(Label, String)>,
}

impl Description {
    fn new(tone: Tone, headline: impl Into<String>) -> Description {
        Description {
            tone,
            headline: headline.into(),
            details: Vec::new(),
        }
    }

    fn with(mut self, label: Label, value: impl Into<String>) -> Description {
        let value = value.into();
        if !value.trim().is_empty() {
            self.details.push((label, value));
        }
        self
    }

    fn fact(self, word: &'static str, value: impl Into<String>) -> Description {
        self.with(Label::Fact(word), value)
    }

    /// The headline and the details on one line (`ward audit show`,
    /// headless progress): a statement by its first line, evidence left to
    /// the views that have room for it.
    pub fn one_line(&self) -> String {
        let mut out = self.headline.clone();
        // The statement first: it is what the line is about.
        let sql_first = self
            .details
            .iter()
            .filter(|(l, _)| *l == Label::Sql)
            .chain(self.details.iter().filter(|(l, _)| *l != Label::Sql));
        for (label, value) in sql_first {
            match label {
                Label::Fact(word) => out.push_str(&format!("; {word}: {}", joined(value))),
                Label::Message => out.push_str(&format!(": {}", joined(value))),
                Label::AgentText => out.push_str(&format!(" “{}”", joined(value))),
                Label::Sql => out.push_str(&format!(
                    ": {}",
                    crate::text::clip_chars(&first_line(value), 70)
                )),
                Label::Evidence => {}
            }
        }
        out
    }
}

/// What a description needs besides the event: its own hash (a
/// `proposed` event's hash is the proposal's id) and the name of the step
/// the event is about, when the caller knows it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    pub hash: &'a str,
    pub step: Option<&'a str>,
}

/// A verdict in words: `allowed`, `denied`, `needs approval by 2
/// approvers (roles: owner)`.
pub fn decision_words(decision: DecisionKind, approvers: u32, roles: &[String]) -> String {
    match decision {
        DecisionKind::Allow => "allowed".into(),
        DecisionKind::Deny => "denied".into(),
        DecisionKind::Approve => {
            let mut s = format!(
                "needs approval by {}",
                plural(u64::from(approvers), "approver", "approvers")
            );
            if !roles.is_empty() {
                s.push_str(&format!(" (roles: {})", roles.join(", ")));
            }
            s
        }
    }
}

/// A text's lines on one line.
pub fn joined(s: &str) -> String {
    s.trim()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" / ")
}

/// The target's name from `session_started`'s `target` (never the JSON).
pub fn target_name(target: &Value) -> String {
    target
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string()
}

/// `provider (model)` from `session_started`'s `agent`.
pub fn agent_name(agent: &Value) -> String {
    let provider = agent
        .get("provider")
        .and_then(Value::as_str)
        .unwrap_or("offline");
    match agent.get("model").and_then(Value::as_str) {
        Some(m) => format!("{provider} ({m})"),
        None => provider.to_string(),
    }
}

/// A proposal's name for people: its step id, or `ad-hoc`.
pub fn step_label(step_id: Option<&str>) -> &str {
    step_id.unwrap_or("ad-hoc")
}

impl Status {
    /// How a status reads beside a proposal.
    pub fn tone(self) -> Tone {
        match self {
            Status::Done | Status::Ready => Tone::Ok,
            Status::AwaitingApproval | Status::DryRun | Status::Running => Tone::Warn,
            Status::Rejected | Status::Denied | Status::Failed => Tone::Bad,
            Status::Proposed => Tone::Plain,
        }
    }
}

impl EventData {
    /// This event in words. The one description every front end shows.
    pub fn describe(&self, cx: Context<'_>) -> Description {
        let step = cx.step.unwrap_or("?");
        match self {
            EventData::SessionStarted(s) => {
                let mut d = Description::new(
                    Tone::Info,
                    format!(
                        "session started: {} on {} [{}] by {}",
                        s.runbook,
                        target_name(&s.target),
                        s.environment,
                        s.operator
                    ),
                )
                .fact("agent", agent_name(&s.agent));
                if s.dry_run {
                    d = d.fact("dry run", "nothing but reads runs");
                }
                d
            }
            EventData::Proposed(p) => Description::new(
                Tone::Info,
                format!(
                    "{} proposes {} [id {}]",
                    p.source,
                    step_label(p.step_id.as_deref()),
                    short(cx.hash)
                ),
            )
            .with(Label::AgentText, p.rationale.clone().unwrap_or_default())
            .with(Label::Sql, p.sql.clone()),
            EventData::Analyzed(a) => {
                let mut h = format!("{step} analyzed: {}", a.risk);
                if let Some(lock) = &a.lock {
                    h.push_str(&format!(", takes {lock}"));
                }
                if let Some(n) = a
                    .table_size
                    .as_ref()
                    .and_then(|t| t.get("rows"))
                    .and_then(Value::as_u64)
                {
                    h.push_str(&format!(", largest table ~{}", rows(n)));
                }
                Description::new(Tone::Plain, h).fact("findings", a.findings.join(", "))
            }
            EventData::Gated(g) => {
                let mut h = format!(
                    "{step} {} · {}",
                    decision_words(g.decision, g.approvers, &g.roles),
                    g.risk
                );
                if g.dry_run {
                    h.push_str(" · dry run: not executed");
                }
                Description::new(Tone::of_decision(g.decision), h)
                    .fact("rules", g.rules.join(", "))
                    .with(Label::Message, g.message.clone().unwrap_or_default())
            }
            EventData::Approved(d) | EventData::Rejected(d) => {
                let approved = matches!(self, EventData::Approved(_));
                let mut h = format!(
                    "{step} {} by {}",
                    if approved { "approved" } else { "rejected" },
                    d.operator
                );
                if d.standing.is_some() {
                    h.push_str(" (standing approval for this session)");
                }
                Description::new(if approved { Tone::Ok } else { Tone::Bad }, h)
                    .fact("reason", d.reason.clone())
            }
            EventData::ApprovalRefused(a) => Description::new(
                Tone::Bad,
                format!("{step} approval by {} refused", a.operator),
            )
            .with(Label::Message, a.reason.clone()),
            EventData::Readmitted(r) => {
                let mut h = format!("{step} admitted again: {} · {}", r.admit.words(), r.risk);
                if r.changed {
                    h.push_str(&format!(" (was {})", r.previous));
                }
                let tone = match r.admit {
                    AdmitKind::Run => Tone::Ok,
                    AdmitKind::Deny => Tone::Bad,
                    AdmitKind::NeedsApprovals | AdmitKind::DryRun => Tone::Warn,
                };
                Description::new(tone, h)
                    .fact("rules", r.rules.join(", "))
                    .with(Label::Message, r.why.clone())
            }
            EventData::Executing(x) => {
                Description::new(Tone::Info, format!("{step} runs ({})", x.mode.words()))
            }
            EventData::Executed(x) => Description::new(
                Tone::Info,
                format!(
                    "{step} ran in {}, {}{}",
                    millis(x.duration_ms),
                    rows(x.rows_seen),
                    if x.capped { " (capped)" } else { "" }
                ),
            ),
            EventData::Summarized(s) => {
                let mut d = Description::new(
                    Tone::Info,
                    format!("evidence from {step} ({})", s.summarizer),
                )
                .with(Label::Evidence, s.summary.trim_end().to_string());
                if s.truncated {
                    d = d.fact("note", "cut to the evidence budget");
                }
                d
            }
            EventData::Verified(v) => Description::new(
                if v.ok { Tone::Ok } else { Tone::Bad },
                format!(
                    "{step} {}",
                    if v.ok {
                        "verified"
                    } else {
                        "verification FAILED"
                    }
                ),
            )
            .fact("expect", format!("{}: {}", v.expect, v.detail)),
            EventData::Failed(Failed {
                diagnosis: Some(d),
                message,
                ..
            }) => {
                let mut desc = Description::new(
                    Tone::Bad,
                    format!("cannot connect: {} ({})", d.what, d.failure),
                )
                .with(Label::Message, message.clone())
                .fact("likely cause", d.cause.clone());
                if let Some(code) = &d.sqlstate {
                    desc = desc.fact("sqlstate", code.clone());
                }
                for check in &d.checks {
                    desc = desc.fact("check", check.clone());
                }
                desc
            }
            EventData::Failed(f) => Description::new(
                Tone::Bad,
                format!(
                    "{} failed ({})",
                    if f.proposal.is_some() {
                        step
                    } else {
                        "session"
                    },
                    f.kind
                ),
            )
            .with(Label::Message, f.message.clone()),
            EventData::AgentError(a) => {
                Description::new(Tone::Bad, "agent error").with(Label::Message, a.message.clone())
            }
            EventData::AgentUsage(u) => Description::new(
                Tone::Plain,
                format!(
                    "{} this turn{}, {} in all{}",
                    plural(u.prompt_tokens + u.completion_tokens, "token", "tokens"),
                    if u.cached_prompt_tokens > 0 {
                        format!(
                            " ({} of {} prompt tokens cached)",
                            thousands(u.cached_prompt_tokens),
                            thousands(u.prompt_tokens)
                        )
                    } else {
                        String::new()
                    },
                    thousands(u.total),
                    u.budget
                        .map(|b| format!(" of {}", thousands(b)))
                        .unwrap_or_default()
                ),
            ),
            EventData::Asked(q) => Description::new(Tone::Agent, "the agent asks")
                .with(Label::AgentText, q.question.clone()),
            EventData::Answered(a) => {
                Description::new(Tone::Plain, format!("{} answered", a.operator))
                    .with(Label::Message, a.text.clone())
            }
            EventData::StandingApproved(s) => Description::new(
                Tone::Warn,
                format!(
                    "standing approval by {} for statement {}",
                    s.operator,
                    short(&s.fingerprint)
                ),
            )
            .fact("for the rest of this session; reason", s.reason.clone()),
            EventData::Revoked(r) => Description::new(
                Tone::Plain,
                format!(
                    "standing approval for {} revoked by {}",
                    short(&r.fingerprint),
                    r.operator
                ),
            ),
            EventData::Resumed(r) => Description::new(
                Tone::Info,
                format!(
                    "resumed by {}: {} interrupted, {} awaiting approval",
                    r.operator,
                    r.interrupted.len(),
                    r.pending.len()
                ),
            ),
            EventData::Concluded(c) => Description::new(Tone::Agent, "conclusion")
                .with(Label::AgentText, c.text.clone())
                .fact(
                    "recommendation",
                    c.recommendation.clone().unwrap_or_default(),
                )
                .fact(
                    "next runbook",
                    c.next
                        .as_ref()
                        .map(|n| hand_off_words(&n.runbook, &n.inputs))
                        .unwrap_or_default(),
                )
                .fact(
                    "input dropped",
                    c.next
                        .as_ref()
                        .map(|n| dropped_words(&n.dropped))
                        .unwrap_or_default(),
                ),
            EventData::HandedOff(h) => Description::new(
                Tone::Info,
                format!(
                    "handed off: {} -> {} (hand-off {} of this session, by {})",
                    h.from,
                    hand_off_words(&h.to, &h.inputs),
                    h.depth,
                    h.by
                ),
            )
            .fact("input dropped", dropped_words(&h.dropped)),
            EventData::StoreUnreachable(u) => Description::new(
                Tone::Bad,
                if u.stopped {
                    format!(
                        "store refused: mirroring stopped, {} events behind (the local log goes on)",
                        u.behind
                    )
                } else {
                    format!(
                        "store unreachable: {} events behind, kept locally and retried",
                        u.behind
                    )
                },
            )
            .fact("error", u.error.clone()),
            EventData::StoreCaughtUp(c) => Description::new(
                Tone::Ok,
                format!("store caught up: {} events mirrored after the outage", c.events),
            ),
            EventData::SessionEnded(e) => Description::new(
                match e.outcome {
                    Outcome::Concluded => Tone::Ok,
                    Outcome::AwaitingApproval | Outcome::Persists => Tone::Warn,
                    Outcome::Denied
                    | Outcome::Failed
                    | Outcome::Cancelled
                    | Outcome::Unreachable => Tone::Bad,
                },
                format!("session ended: {}", e.outcome.words()),
            )
            .fact(
                "next runbook not followed",
                e.not_followed.clone().unwrap_or_default(),
            )
            .fact(
                "unapproved",
                e.unapproved
                    .iter()
                    .map(|p| p.short().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        }
    }
}

/// `pg-idle-in-transaction (application=billing, max_idle_seconds=60)`.
pub fn hand_off_words(runbook: &str, inputs: &std::collections::BTreeMap<String, Value>) -> String {
    if inputs.is_empty() {
        return runbook.to_string();
    }
    let shown: Vec<String> = inputs
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect();
    format!("{runbook} ({})", shown.join(", "))
}

/// `max_idle_seconds: 12 is below the minimum 30; ...`.
fn dropped_words(dropped: &[super::events::DroppedInput]) -> String {
    dropped
        .iter()
        .map(|d| format!("{}: {}", d.name, d.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Events as timeline lines (`ward audit show`, headless progress), each
/// described with what the events before it said (the step a proposal
/// belongs to).
#[derive(Debug, Default)]
pub struct Timeline {
    seen: SessionState,
}

impl Timeline {
    /// The line for the next event of the log: `[ 12] gated           build_index needs approval ...`.
    pub fn line(&mut self, e: &crate::audit::Event) -> String {
        let text = match EventData::from_parts(&e.kind, &e.data) {
            Ok(data) => {
                self.seen.apply(e.seq, &e.ts, &e.hash, &data);
                let step = data
                    .proposal()
                    .and_then(|id| self.seen.proposal(id))
                    .map(|p| step_label(p.step_id.as_deref()).to_string());
                data.describe(Context {
                    hash: &e.hash,
                    step: step.as_deref(),
                })
                .one_line()
            }
            Err(err) => format!("unreadable: {err}"),
        };
        format!("[{:>3}] {:<15} {text}", e.seq, e.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_outcomes_read_with_spaces_everywhere() {
        assert_eq!(Status::AwaitingApproval.words(), "awaiting approval");
        assert_eq!(Outcome::AwaitingApproval.words(), "awaiting approval");
        assert_eq!(Status::DryRun.words(), "dry run");
        assert_eq!(
            decision_words(DecisionKind::Approve, 2, &["owner".into()]),
            "needs approval by 2 approvers (roles: owner)"
        );
        assert_eq!(
            decision_words(DecisionKind::Approve, 1, &[]),
            "needs approval by 1 approver"
        );
    }

    #[test]
    fn a_proposal_is_described_with_its_short_id_and_a_gate_with_its_rules() {
        let proposed = EventData::Proposed(Proposed {
            step_id: None,
            sql: "SELECT 1\nFROM t".into(),
            binds: vec![],
            source: Source::Replay,
            rationale: Some("look".into()),
            inputs: Default::default(),
        });
        let d = proposed.describe(Context {
            hash: "0123456789abcdef",
            step: None,
        });
        assert_eq!(
            d,
            Description {
                tone: Tone::Info,
                headline: "replay proposes ad-hoc [id 0123456789ab]".into(),
                details: vec![
                    (Label::AgentText, "look".into()),
                    (Label::Sql, "SELECT 1\nFROM t".into())
                ],
            }
        );
        let gated = EventData::Gated(Gated {
            proposal: "0123456789abcdef".into(),
            decision: DecisionKind::Approve,
            approvers: 2,
            roles: vec![],
            risk: Risk::Destructive,
            rules: vec!["a".into(), "b".into()],
            policy: "default".into(),
            dry_run: false,
            requires_roles: String::new(),
            message: None,
        });
        let d = gated.describe(Context {
            hash: "x",
            step: Some("drop"),
        });
        assert_eq!(
            d.one_line(),
            "drop needs approval by 2 approvers · destructive; rules: a, b"
        );
    }
}
