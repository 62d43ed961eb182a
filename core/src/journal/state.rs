//! `SessionState = fold(events)`: what the live TUI, the headless report and
//! the audit viewer all render. A pure function of the log — it never looks
//! anywhere else, so a recorded session renders exactly as it ran.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::events::{
    AdmitKind, DecisionKind, EventData, HandedOff, Next, Outcome, ProposalId, Risk, Source,
};

/// Where a proposal stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    #[default]
    Proposed,
    /// Waiting for human approval.
    AwaitingApproval,
    /// Allowed (by policy or by enough approvals), not yet running.
    Ready,
    Rejected,
    Denied,
    Running,
    Done,
    Failed,
    /// Recorded with its verdict by a dry run; never executed.
    DryRun,
}

impl Status {
    /// The word the JSON report uses (`awaiting_approval`).
    pub fn name(self) -> &'static str {
        match self {
            Status::Proposed => "proposed",
            Status::AwaitingApproval => "awaiting_approval",
            Status::Ready => "ready",
            Status::Rejected => "rejected",
            Status::Denied => "denied",
            Status::Running => "running",
            Status::Done => "done",
            Status::Failed => "failed",
            Status::DryRun => "dry_run",
        }
    }

    /// In words for people, the same in every front end
    /// (`awaiting approval`).
    pub fn words(self) -> &'static str {
        match self {
            Status::AwaitingApproval => "awaiting approval",
            Status::DryRun => "dry run",
            other => other.name(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProposalState {
    /// The hash of the `proposed` event.
    pub id: ProposalId,
    pub seq: u64,
    pub step_id: Option<String>,
    pub sql: String,
    pub source: Source,
    pub rationale: Option<String>,
    pub status: Status,
    pub risk: Option<Risk>,
    pub decision: Option<DecisionKind>,
    pub approvers_needed: u32,
    pub rules: Vec<String>,
    pub lock: Option<String>,
    pub findings: Vec<String>,
    pub table_size: Option<Value>,
    /// (operator, reason)
    pub approvals: Vec<(String, String)>,
    pub rejections: Vec<(String, String)>,
    pub rows_seen: Option<u64>,
    pub summary: Option<String>,
    pub summary_bytes: Option<usize>,
    pub facts: Option<Value>,
    pub verified: Option<bool>,
    pub error: Option<String>,
    /// When it was proposed, and when its execution started (RFC 3339).
    pub proposed_at: String,
    pub started_at: Option<String>,
    pub duration_ms: Option<u64>,
    /// Statement kinds, what the lock blocks, tables touched.
    pub kinds: Vec<String>,
    pub blocks: Vec<String>,
    pub tables: Vec<String>,
    pub fingerprint: Option<String>,
    pub dry_run: bool,
    /// Inputs the agent gave this step, over the session's.
    pub inputs: BTreeMap<String, Value>,
    /// Why admission holds it back: a deny's rules in their own words, or
    /// why the approvals it needs cannot be given.
    pub message: Option<String>,
    /// Roles the approvals must include (from the latest admission).
    pub roles_required: Vec<String>,
    /// Approvals that did not count: (operator, why).
    pub refused_approvals: Vec<(String, String)>,
    /// Roles held by the operators who approved (as logged).
    pub approved_roles: Vec<String>,
    /// Times admission was evaluated again before execution.
    pub readmissions: u32,
    /// The database role it ran as, when known.
    pub role: Option<String>,
    /// The runbook it belongs to, and which part of the session that is
    /// (0 until the first hand-off): two runbooks may share step ids.
    pub runbook: String,
    pub part: u32,
}

impl ProposalState {
    /// Whether the approvals logged meet the latest verdict: enough
    /// distinct operators, holding every required role between them.
    pub fn approvals_suffice(&self) -> bool {
        self.distinct_approvers() >= self.approvers_needed as usize
            && self
                .roles_required
                .iter()
                .all(|r| self.approved_roles.contains(r))
    }

    /// Distinct operators who approved.
    pub fn distinct_approvers(&self) -> usize {
        let mut ops: Vec<&str> = self.approvals.iter().map(|(o, _)| o.as_str()).collect();
        ops.sort_unstable();
        ops.dedup();
        ops.len()
    }
}

/// How far the team store is behind a session, as its log last said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreBehind {
    /// The store's error, without credentials.
    pub error: String,
    /// The first event the store lacks.
    pub first_missing: u64,
    /// Mirroring stopped (a refusal or a divergence), rather than waiting
    /// for the store to come back.
    pub stopped: bool,
}

impl StoreBehind {
    /// Events the store lacks, given the log's last seq.
    pub fn behind(&self, last_seq: Option<u64>) -> u64 {
        last_seq.map_or(0, |l| (l + 1).saturating_sub(self.first_missing))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SessionState {
    pub session_id: String,
    pub runbook: String,
    pub environment: String,
    pub operator: String,
    pub target: Value,
    pub dry_run: bool,
    pub started_at: Option<String>,
    pub proposals: Vec<ProposalState>,
    /// Facts per step id, from the summaries: the latest run of each step.
    pub facts: BTreeMap<String, Value>,
    /// Facts per step id as first gathered: before any recheck ran the
    /// step again (what conclusions and `verify` read as `before`).
    pub before: BTreeMap<String, Value>,
    pub conclusion: Option<String>,
    pub outcome: Option<Outcome>,
    pub sealed: bool,
    pub last_seq: Option<u64>,
    pub agent_errors: Vec<String>,
    /// `{"provider": ..., "model": ...}`.
    pub agent: Value,
    pub tokens_used: u64,
    /// Prompt tokens the provider served from its cache, over the session.
    pub tokens_cached: u64,
    pub prompt_tokens: u64,
    pub token_budget: Option<u64>,
    /// The agent's questions, with the answer once given.
    pub questions: Vec<(String, Option<String>)>,
    /// Standing approvals in force: (fingerprint, operator, reason).
    pub standing: Vec<(String, String, String)>,
    pub recommendation: Option<String>,
    /// Why the target could not be reached, when the session could not
    /// connect (and the error could be classified).
    pub unreachable: Option<crate::exec::unreachable::ConnectDiagnosis>,
    pub ended_at: Option<String>,
    /// Times the session was resumed.
    pub resumed: u32,
    /// Proposals of the agent that were refused (each used up a turn).
    pub refused_proposals: usize,
    /// The agent handed over to the offline planner.
    pub agent_handed_over: bool,
    /// The inputs the current runbook started with (`session_started`'s,
    /// then each `handed_off`'s).
    pub inputs: Value,
    /// The part of the session under way: 0, then one more per hand-off.
    /// `proposals` holds every part's; `facts`, `before`, `conclusion`
    /// and `next` are the current part's only.
    pub part: u32,
    /// The runbook the current conclusion hands off to, if any.
    pub next: Option<Next>,
    /// The runbooks before the current one, in order, as they ended.
    pub earlier: Vec<RunbookPart>,
    /// Every hand-off, in order.
    pub handoffs: Vec<HandedOff>,
    /// Why the session did not continue into `next` when asked to follow.
    pub not_followed: Option<String>,
    /// The team store is behind this session's log (unreachable, or it
    /// refused): from the last `store_unreachable` until `store_caught_up`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_behind: Option<StoreBehind>,
    /// No more events will come: a recorded log read to its end, or a
    /// live session whose engine has gone. Not in the log itself (an
    /// unsealed log cannot say it stopped), so set by whoever knows, with
    /// [`SessionState::end_of_log`].
    #[serde(skip)]
    pub log_ended: bool,
}

/// A runbook of the session that handed off to the next one: what it
/// found and concluded.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunbookPart {
    pub runbook: String,
    pub inputs: Value,
    pub facts: BTreeMap<String, Value>,
    pub before: BTreeMap<String, Value>,
    pub conclusion: Option<String>,
    pub recommendation: Option<String>,
    pub next: Option<Next>,
}

impl SessionState {
    /// The current runbook's part of the session alone, as a runbook's
    /// planner and outcome see it: the proposals of earlier runbooks left
    /// out (their step ids may be this runbook's too).
    pub fn current(&self) -> std::borrow::Cow<'_, SessionState> {
        if self.part == 0 {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut scoped = SessionState {
            proposals: Vec::new(),
            ..self.clone()
        };
        scoped.proposals = self
            .proposals
            .iter()
            .filter(|p| p.part == self.part)
            .cloned()
            .collect();
        std::borrow::Cow::Owned(scoped)
    }

    /// The runbooks this session has run, the current one last.
    pub fn runbooks_run(&self) -> Vec<&str> {
        self.earlier
            .iter()
            .map(|p| p.runbook.as_str())
            .chain(std::iter::once(self.runbook.as_str()))
            .collect()
    }

    pub fn fold<'a>(
        events: impl IntoIterator<Item = (u64, &'a str, &'a str, &'a EventData)>,
    ) -> SessionState {
        let mut s = SessionState::default();
        for (seq, ts, hash, e) in events {
            s.apply(seq, ts, hash, e);
        }
        s
    }

    /// Folds the events of an audit log; events whose data does not have the
    /// expected shape are skipped (`ward audit verify` reports them).
    pub fn from_events(events: &[crate::audit::Event]) -> SessionState {
        let mut state = SessionState::default();
        for e in events {
            if let Ok(d) = EventData::from_parts(&e.kind, &e.data) {
                state.apply(e.seq, &e.ts, &e.hash, &d);
            }
        }
        state
    }

    /// The facts so far as one object keyed by step id (what `when`,
    /// `expect` and conclusions see as `facts`).
    pub fn facts_value(&self) -> Value {
        Value::Object(
            self.facts
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }

    /// The facts as first gathered, keyed by step id (`before`).
    pub fn before_value(&self) -> Value {
        Value::Object(
            self.before
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }

    /// Marks that no more events will come (see `log_ended`).
    pub fn end_of_log(&mut self) {
        self.log_ended = true;
    }

    /// Whether `p` started executing and the log ended (sealed or not)
    /// without its outcome: it was interrupted, and how it ended is not
    /// known. Such a step must not be shown as running.
    pub fn outcome_missing(&self, p: &ProposalState) -> bool {
        p.status == Status::Running && (self.sealed || self.log_ended)
    }

    pub fn proposal(&self, id: &ProposalId) -> Option<&ProposalState> {
        self.proposals.iter().find(|p| p.id == *id)
    }

    fn proposal_mut(&mut self, id: &ProposalId) -> Option<&mut ProposalState> {
        self.proposals.iter_mut().find(|p| p.id == *id)
    }

    /// Proposals waiting for a human.
    pub fn awaiting_approval(&self) -> Vec<&ProposalState> {
        self.proposals
            .iter()
            .filter(|p| p.status == Status::AwaitingApproval)
            .collect()
    }

    /// Applies one event. `hash` is the event's own hash (a `proposed`
    /// event's hash is the proposal's id).
    pub fn apply(&mut self, seq: u64, ts: &str, hash: &str, e: &EventData) {
        self.last_seq = Some(seq);
        match e {
            EventData::SessionStarted(s) => {
                self.session_id = s.session_id.clone();
                self.runbook = s.runbook.clone();
                self.environment = s.environment.clone();
                self.operator = s.operator.clone();
                self.target = s.target.clone();
                self.dry_run = s.dry_run;
                self.started_at = Some(ts.to_string());
                self.agent = s.agent.clone();
                self.inputs = s.inputs.clone();
            }
            EventData::Proposed(p) => self.proposals.push(ProposalState {
                id: ProposalId::new(hash),
                seq,
                step_id: p.step_id.clone(),
                sql: p.sql.clone(),
                source: p.source.clone(),
                rationale: p.rationale.clone(),
                status: Status::Proposed,
                risk: None,
                decision: None,
                approvers_needed: 0,
                rules: Vec::new(),
                lock: None,
                findings: Vec::new(),
                table_size: None,
                approvals: Vec::new(),
                rejections: Vec::new(),
                rows_seen: None,
                summary: None,
                summary_bytes: None,
                facts: None,
                verified: None,
                error: None,
                proposed_at: ts.to_string(),
                started_at: None,
                duration_ms: None,
                kinds: Vec::new(),
                blocks: Vec::new(),
                tables: Vec::new(),
                fingerprint: None,
                dry_run: false,
                inputs: p.inputs.clone(),
                message: None,
                roles_required: Vec::new(),
                refused_approvals: Vec::new(),
                approved_roles: Vec::new(),
                readmissions: 0,
                role: None,
                runbook: self.runbook.clone(),
                part: self.part,
            }),
            EventData::Analyzed(a) => {
                if let Some(p) = self.proposal_mut(&a.proposal) {
                    p.risk = Some(a.risk);
                    p.lock = a.lock.clone();
                    p.findings = a.findings.clone();
                    p.table_size = a.table_size.clone();
                    p.kinds = a.kinds.clone();
                    p.blocks = a.blocks.clone();
                    p.tables = a.tables.clone();
                    p.fingerprint = a.fingerprint.clone();
                }
            }
            EventData::Gated(g) => {
                if let Some(p) = self.proposal_mut(&g.proposal) {
                    p.decision = Some(g.decision);
                    p.approvers_needed = g.approvers;
                    p.rules = g.rules.clone();
                    p.risk = Some(g.risk);
                    p.dry_run = g.dry_run;
                    p.message = g.message.clone();
                    p.roles_required = g.roles.clone();
                    p.status = match (g.decision, g.dry_run) {
                        (DecisionKind::Deny, _) => Status::Denied,
                        (_, true) => Status::DryRun,
                        (DecisionKind::Allow, _) => Status::Ready,
                        (DecisionKind::Approve, false) => Status::AwaitingApproval,
                    };
                }
            }
            EventData::Readmitted(r) => {
                if let Some(p) = self.proposal_mut(&r.proposal) {
                    p.decision = Some(r.decision);
                    p.approvers_needed = r.approvers;
                    p.rules = r.rules.clone();
                    p.risk = Some(r.risk);
                    p.roles_required = r.roles.clone();
                    p.readmissions += 1;
                    p.message = (r.admit != AdmitKind::Run).then(|| r.why.clone());
                    p.status = match r.admit {
                        AdmitKind::Deny => Status::Denied,
                        AdmitKind::NeedsApprovals => Status::AwaitingApproval,
                        AdmitKind::DryRun => Status::DryRun,
                        AdmitKind::Run => Status::Ready,
                    };
                    if let Some(t) = &r.table_size {
                        p.table_size = Some(t.clone());
                    }
                }
            }
            EventData::ApprovalRefused(a) => {
                if let Some(p) = self.proposal_mut(&a.proposal) {
                    p.refused_approvals
                        .push((a.operator.clone(), a.reason.clone()));
                }
            }
            EventData::Approved(d) => {
                if let Some(p) = self.proposal_mut(&d.proposal) {
                    p.approvals.push((d.operator.clone(), d.reason.clone()));
                    for r in d.holds_roles.split(',').filter(|r| !r.is_empty()) {
                        if !p.approved_roles.iter().any(|x| x == r) {
                            p.approved_roles.push(r.to_string());
                        }
                    }
                    if p.status == Status::AwaitingApproval && p.approvals_suffice() {
                        p.status = Status::Ready;
                    }
                }
            }
            EventData::Rejected(d) => {
                if let Some(p) = self.proposal_mut(&d.proposal) {
                    p.rejections.push((d.operator.clone(), d.reason.clone()));
                    p.status = Status::Rejected;
                }
            }
            EventData::Executing(x) => {
                if let Some(p) = self.proposal_mut(&x.proposal) {
                    p.status = Status::Running;
                    p.started_at = Some(ts.to_string());
                }
            }
            EventData::Executed(x) => {
                if let Some(p) = self.proposal_mut(&x.proposal) {
                    p.status = Status::Done;
                    p.rows_seen = Some(x.rows_seen);
                    p.duration_ms = Some(x.duration_ms);
                    p.role = x.role.clone();
                }
            }
            EventData::Summarized(sm) => {
                let step = self.proposal_mut(&sm.proposal).map(|p| {
                    p.summary = Some(sm.summary.clone());
                    p.summary_bytes = Some(sm.summary.len());
                    p.facts = Some(sm.facts.clone());
                    p.step_id.clone()
                });
                let current = self
                    .proposal(&sm.proposal)
                    .is_some_and(|p| p.part == self.part);
                if let Some(Some(step)) = step
                    && current
                {
                    self.before
                        .entry(step.clone())
                        .or_insert_with(|| sm.facts.clone());
                    self.facts.insert(step, sm.facts.clone());
                }
            }
            EventData::Verified(v) => {
                if let Some(p) = self.proposal_mut(&v.proposal) {
                    p.verified = Some(v.ok);
                }
            }
            EventData::Failed(f) => {
                if f.diagnosis.is_some() {
                    self.unreachable = f.diagnosis.clone();
                }
                if let Some(p) = f.proposal.as_ref().and_then(|id| self.proposal_mut(id)) {
                    p.status = Status::Failed;
                    p.error = Some(format!("{}: {}", f.kind, f.message));
                    if f.role.is_some() {
                        p.role = f.role.clone();
                    }
                }
            }
            EventData::AgentError(a) => {
                self.agent_errors.push(a.message.clone());
                self.refused_proposals += usize::from(a.refused);
                self.agent_handed_over |= a.handover;
            }
            EventData::AgentUsage(u) => {
                self.tokens_used = u.total;
                self.tokens_cached += u.cached_prompt_tokens;
                self.prompt_tokens += u.prompt_tokens;
                self.token_budget = u.budget;
            }
            EventData::Asked(q) => self.questions.push((q.question.clone(), None)),
            EventData::Answered(a) => {
                if let Some(q) = self.questions.iter_mut().rev().find(|q| q.1.is_none()) {
                    q.1 = Some(a.text.clone());
                }
            }
            EventData::StandingApproved(st) => {
                self.standing.retain(|(f, _, _)| *f != st.fingerprint);
                self.standing.push((
                    st.fingerprint.clone(),
                    st.operator.clone(),
                    st.reason.clone(),
                ));
            }
            EventData::Revoked(r) => self.standing.retain(|(f, _, _)| *f != r.fingerprint),
            EventData::Resumed(_) => self.resumed += 1,
            EventData::Concluded(c) => {
                self.conclusion = Some(c.text.clone());
                self.recommendation = c.recommendation.clone();
                self.next = c.next.clone();
            }
            EventData::HandedOff(h) => {
                self.earlier.push(RunbookPart {
                    runbook: std::mem::replace(&mut self.runbook, h.to.clone()),
                    inputs: std::mem::replace(
                        &mut self.inputs,
                        serde_json::to_value(&h.inputs).unwrap_or(Value::Null),
                    ),
                    facts: std::mem::take(&mut self.facts),
                    before: std::mem::take(&mut self.before),
                    conclusion: self.conclusion.take(),
                    recommendation: self.recommendation.take(),
                    next: self.next.take(),
                });
                self.part += 1;
                self.handoffs.push(h.clone());
            }
            EventData::StoreUnreachable(u) => {
                self.store_behind = Some(StoreBehind {
                    error: u.error.clone(),
                    first_missing: seq.saturating_sub(u.behind),
                    stopped: u.stopped,
                });
            }
            EventData::StoreCaughtUp(_) => self.store_behind = None,
            EventData::SessionEnded(end) => {
                self.outcome = Some(end.outcome);
                self.not_followed = end.not_followed.clone();
                self.sealed = true;
                self.ended_at = Some(ts.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::events::*;

    fn gated(p: &str, decision: DecisionKind, approvers: u32) -> EventData {
        EventData::Gated(Gated {
            proposal: p.into(),
            decision,
            approvers,
            roles: vec![],
            risk: Risk::Write,
            rules: vec!["r".into()],
            policy: "default".into(),
            dry_run: false,
            requires_roles: String::new(),
            message: None,
        })
    }

    fn proposed(sql: &str) -> EventData {
        EventData::Proposed(Proposed {
            step_id: Some("s".into()),
            sql: sql.into(),
            binds: vec![],
            source: Source::Offline,
            rationale: None,
            inputs: BTreeMap::new(),
        })
    }

    fn approve(p: &str, op: &str) -> EventData {
        EventData::Approved(Decided {
            proposal: p.into(),
            operator: op.into(),
            reason: "ok".into(),
            standing: None,
            holds_roles: String::new(),
            authenticated: None,
        })
    }

    #[test]
    fn cached_prompt_tokens_add_up_and_an_old_usage_line_without_them_reads_as_zero() {
        let usage = |prompt: u64, cached: u64, total: u64| {
            EventData::AgentUsage(AgentUsage {
                prompt_tokens: prompt,
                completion_tokens: 10,
                total,
                budget: None,
                cached_prompt_tokens: cached,
            })
        };
        let events = [usage(3000, 0, 3010), usage(3500, 2816, 6520)];
        let s = SessionState::fold(
            events
                .iter()
                .enumerate()
                .map(|(i, e)| (i as u64, "t", "h", e)),
        );
        assert_eq!(
            (s.tokens_used, s.prompt_tokens, s.tokens_cached),
            (6520, 6500, 2816)
        );
        // Written before the field existed: it parses, and is re-encoded
        // without it (the hash chain of old logs is unchanged).
        let old = r#"{"prompt_tokens":3000,"completion_tokens":10,"total":3010,"budget":null}"#;
        let parsed: AgentUsage = serde_json::from_str(old).expect("old line");
        assert_eq!(parsed.cached_prompt_tokens, 0);
        assert_eq!(serde_json::to_string(&parsed).expect("json"), old);
    }

    #[test]
    fn the_store_is_behind_from_store_unreachable_until_store_caught_up() {
        let usage = EventData::AgentUsage(AgentUsage {
            prompt_tokens: 1,
            completion_tokens: 1,
            total: 2,
            budget: None,
            cached_prompt_tokens: 0,
        });
        let down = EventData::StoreUnreachable(StoreUnreachable {
            error: "connection refused".into(),
            behind: 2,
            stopped: false,
        });
        let up = EventData::StoreCaughtUp(StoreCaughtUp { events: 5 });
        let fold = |events: &[&EventData]| {
            SessionState::fold(
                events
                    .iter()
                    .enumerate()
                    .map(|(i, e)| (i as u64 + 10, "t", "h", *e)),
            )
        };
        // Seqs 10 and 11 not stored, the notice (12) and one more (13).
        let s = fold(&[&usage, &usage, &down, &usage]);
        let behind = s.store_behind.clone().expect("behind");
        assert_eq!(
            behind,
            StoreBehind {
                error: "connection refused".into(),
                first_missing: 10,
                stopped: false
            }
        );
        assert_eq!(behind.behind(s.last_seq), 4);
        assert_eq!(fold(&[&usage, &down, &usage, &up]).store_behind, None);
        // The kinds round-trip to the same line (`stopped` omitted when
        // false), as the hash chain needs.
        let (kind, data) = down.to_parts();
        assert_eq!(kind, "store_unreachable");
        assert_eq!(
            serde_json::to_string(&data).expect("json"),
            r#"{"error":"connection refused","behind":2}"#
        );
        assert_eq!(EventData::from_parts(&kind, &data).expect("parses"), down);
    }

    #[test]
    fn two_person_rules_need_two_distinct_operators() {
        let events = [
            proposed("DROP TABLE t"),
            gated("h1", DecisionKind::Approve, 2),
            approve("h1", "alice"),
            approve("h1", "alice"),
        ];
        let s = SessionState::fold(
            events
                .iter()
                .enumerate()
                .map(|(i, e)| (i as u64, "t", if i == 0 { "h1" } else { "x" }, e)),
        );
        assert_eq!(s.proposals[0].status, Status::AwaitingApproval);
        assert_eq!(s.awaiting_approval().len(), 1);
        let events = [
            proposed("DROP TABLE t"),
            gated("h1", DecisionKind::Approve, 2),
            approve("h1", "alice"),
            approve("h1", "bob"),
        ];
        let s = SessionState::fold(
            events
                .iter()
                .enumerate()
                .map(|(i, e)| (i as u64, "t", if i == 0 { "h1" } else { "x" }, e)),
        );
        assert_eq!(s.proposals[0].status, Status::Ready);
    }

    #[test]
    fn a_step_running_when_the_log_ends_has_no_outcome_and_is_not_running() {
        let events = [
            proposed("SELECT 1"),
            gated("h1", DecisionKind::Allow, 0),
            EventData::Executing(Executing {
                proposal: "h1".into(),
                mode: ExecMode::ReadOnly,
            }),
        ];
        let mut s = SessionState::fold(
            events
                .iter()
                .enumerate()
                .map(|(i, e)| (i as u64, "t", if i == 0 { "h1" } else { "x" }, e)),
        );
        // While more events may come, it runs.
        assert_eq!(s.proposals[0].status, Status::Running);
        assert!(!s.outcome_missing(&s.proposals[0]));
        // Once nothing more will come, its outcome is missing; the fold's
        // status stays what the log says (resume relies on it).
        s.end_of_log();
        assert!(s.outcome_missing(&s.proposals[0]));
        assert_eq!(s.proposals[0].status, Status::Running);
    }

    #[test]
    fn a_deny_or_a_rejection_is_final_and_approvals_name_their_proposal() {
        let events = [
            proposed("a"),
            proposed("b"),
            gated("h0", DecisionKind::Deny, 0),
            gated("h1", DecisionKind::Approve, 1),
            approve("h0", "alice"),
        ];
        let hashes = ["h0", "h1", "x", "x", "x"];
        let s = SessionState::fold(
            events
                .iter()
                .enumerate()
                .map(|(i, e)| (i as u64, "t", hashes[i], e)),
        );
        assert_eq!(
            s.proposals[0].status,
            Status::Denied,
            "an approval cannot lift a deny"
        );
        assert_eq!(
            s.proposals[1].status,
            Status::AwaitingApproval,
            "alice approved a different proposal"
        );
    }

    fn summarized(p: &str, facts: Value) -> EventData {
        EventData::Summarized(Summarized {
            proposal: p.into(),
            summarizer: "builtin:rows".into(),
            summary: String::new(),
            facts,
            tokens: 0,
            truncated: false,
            warnings: vec![],
        })
    }

    #[test]
    fn a_hand_off_starts_the_next_runbooks_part_with_its_own_facts_and_keeps_the_first_ones() {
        let first_look = proposed("SELECT 1");
        let second_look = proposed("SELECT 2");
        let events = [
            EventData::SessionStarted(SessionStarted {
                session_id: "s".into(),
                operator: "carol".into(),
                host: "h".into(),
                ward_version: "0".into(),
                runbook: "first".into(),
                runbook_version: 1,
                target: Value::Null,
                environment: "dev".into(),
                agent: Value::Null,
                dry_run: false,
                provenance: Value::Null,
                inputs: serde_json::json!({"min": 1}),
                allow_dirty: false,
                allow_superuser: false,
                events_version: EVENTS_VERSION,
                concurrent: Vec::new(),
            }),
            first_look,
            summarized("h1", serde_json::json!({"app": "billing"})),
            EventData::Concluded(Concluded {
                text: "first found billing".into(),
                recommendation: None,
                next: Some(Next {
                    runbook: "second".into(),
                    inputs: BTreeMap::from([("app".into(), serde_json::json!("billing"))]),
                    dropped: vec![],
                }),
            }),
            EventData::HandedOff(HandedOff {
                from: "first".into(),
                to: "second".into(),
                runbook_version: 1,
                inputs: BTreeMap::from([("app".into(), serde_json::json!("billing"))]),
                dropped: vec![],
                depth: 1,
                by: "--follow".into(),
            }),
            second_look,
            summarized("h5", serde_json::json!({"app": "other"})),
        ];
        let hashes = ["h0", "h1", "x", "x", "x", "h5", "x"];
        let s = SessionState::fold(
            events
                .iter()
                .enumerate()
                .map(|(i, e)| (i as u64, "t", hashes[i], e)),
        );
        assert_eq!(s.runbook, "second");
        assert_eq!(s.runbooks_run(), ["first", "second"]);
        assert_eq!(s.part, 1);
        assert_eq!(s.inputs, serde_json::json!({"app": "billing"}));
        // The same step id in both runbooks: each part has its own facts.
        assert_eq!(s.facts["s"], serde_json::json!({"app": "other"}));
        assert_eq!(s.before["s"], serde_json::json!({"app": "other"}));
        assert_eq!(
            s.earlier[0].facts["s"],
            serde_json::json!({"app": "billing"})
        );
        assert_eq!(
            s.earlier[0].conclusion.as_deref(),
            Some("first found billing")
        );
        assert_eq!(s.earlier[0].inputs, serde_json::json!({"min": 1}));
        assert_eq!(s.conclusion, None);
        assert_eq!(s.next, None);
        // Every proposal stays in the session; the current part sees its own.
        assert_eq!(
            s.proposals
                .iter()
                .map(|p| (p.runbook.as_str(), p.part))
                .collect::<Vec<_>>(),
            [("first", 0), ("second", 1)]
        );
        let current = s.current();
        assert_eq!(current.proposals.len(), 1);
        assert_eq!(current.proposals[0].id, "h5");
        assert!(
            s.proposal(&"h1".into()).is_some(),
            "earlier proposals are still found"
        );
    }
}
