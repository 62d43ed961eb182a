//! The session runner: planner -> resolve -> analyze -> gate -> (approval)
//! -> execute -> summarize -> planner, writing every moment to the audit log
//! (and fsyncing it) before the action it announces.
//!
//! The front end talks to the runner over channels: it receives every event
//! and may send approvals, rejections (with reasons) and a cancel. Headless
//! runs send none, so they never approve. Nothing a planner or a model says
//! can approve: approvals come only through [`Op`], from a named operator.
//!
//! The agent (offline planner, replayed transcript or a model) only
//! proposes. Each proposal is resolved against the contract, analyzed from
//! its SQL, gated by the policy and, where the verdict asks for it, waits for
//! approvals from distinct operators before anything runs. When an agent
//! fails for good, the session says so and goes on with the offline planner.
//!
//! `resume` continues an unsealed log: nothing that executed runs again, a
//! step interrupted mid-execution is settled by its `verify` (never by
//! re-running it), and pending approvals stay pending.
//!
//! Whether a proposal runs is never decided here: `gate::admit` decides,
//! when the statement is proposed and again right before it executes (fresh
//! clock, the policy and roster re-read, fresh table sizes, the
//! connection's identity). A denied proposal is an answer the agent hears;
//! after three in a row the offline planner takes over.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::backend::{Database, RecordedEvidence, StatementBackend, VerifyRows};
use super::events::*;
use super::inbox::{Answer, Inbox, Taken};
use super::state::{SessionState, Status};
use crate::agent::{Agent, AgentView, Budget, Proposal, Turn};
use crate::audit::{AuditWriter, Event};
use crate::contract::{Adhoc, Contract, StepKind};
use crate::evidence::EvidenceConfig;
use crate::exec::step::{self, Origin, Resolved, StepResult};
use crate::exec::{Bind, Canceller, Executor, Limits, Mode, Target};
use crate::gate::{self, Admission, Admit, Admitted, GateInput, Given};
use crate::policy::operators::{self, Operators};
use crate::policy::{Decision, Policy, TableSize};
use crate::sql::{Analyzer, Risk};

/// What a front end may send a running session. There is no op a model can
/// send: ops come from a front end, each naming the operator behind it.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Approve the proposal (named by its id, the hash of its `proposed`
    /// event). `for_session` also approves the same statement (same
    /// fingerprint, same target) for the rest of the session, where the
    /// policy allows that: never for destructive, privilege or unknown
    /// statements, never where the verdict needs more than one approver.
    Approve {
        proposal: ProposalId,
        operator: String,
        reason: String,
        for_session: bool,
    },
    /// Reject the proposal; the reason goes back to the agent.
    Reject {
        proposal: ProposalId,
        operator: String,
        reason: String,
    },
    /// Withdraw a standing approval given with `for_session`.
    Revoke {
        fingerprint: String,
        operator: String,
    },
    /// Answer the agent's question.
    Answer { operator: String, text: String },
    /// Cancel the running query (if any) and end the session.
    Cancel,
    /// The front end will not approve now: the session stops at this step,
    /// awaiting approval (what a headless run does).
    Leave,
}

/// The gate's clock. Tests move it between a proposal and its execution.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(Arc::new(Utc::now))
    }

    /// Always this instant (scenarios pin it).
    pub fn fixed(t: DateTime<Utc>) -> Clock {
        Clock(Arc::new(move || t))
    }

    /// Whatever `f` says, each time it is asked.
    pub fn from_fn(f: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(f))
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

/// Denials in a row after which the agent is stopped and the offline
/// planner goes on.
pub const DENIALS_BEFORE_HANDOVER: u32 = 3;

/// Everything a session needs, validated by the caller.
pub struct RunConfig {
    pub session_id: String,
    pub log_path: PathBuf,
    pub contract: Contract,
    pub target: Target,
    pub inputs: BTreeMap<String, Value>,
    pub policy: Policy,
    pub analyzer: Analyzer,
    pub evidence: EvidenceConfig,
    /// Run only read-only statements; record every other proposal with the
    /// verdict it would get.
    pub dry_run: bool,
    pub operator: String,
    pub provenance: Value,
    pub allow_dirty: bool,
    /// How long to wait for approvals before stopping at a step; `None`
    /// stops at once (headless).
    pub wait_for_approval: Option<Duration>,
    /// Where `ward approve` / `ward reject` from other operators drop their
    /// requests for this session (polled while waiting for approvals).
    pub ops_dir: Option<PathBuf>,
    /// The gate's clock, read at every admission.
    pub clock: Clock,
    /// Read in prod as a role that can act outside the database's
    /// privileges, with no read role configured (logged; the policy
    /// condition `connected_as_superuser` applies).
    pub allow_superuser: bool,
    /// Who holds which approver role (`policies/operators.yaml`); `None`:
    /// no roster, so no approval satisfies a role.
    pub operators: Option<Operators>,
    /// Re-read the policy (from `policy.path`) and the roster (beside it)
    /// before every execution. Off only where the policy was built in
    /// memory (tests).
    pub reload_policy: bool,
    /// Recorded evidence instead of a database (`ward test`).
    pub recorded: Option<Recorded>,
    /// Proposals a session may make before ward stops it (an agent that
    /// never concludes).
    pub max_proposals: usize,
}

pub use super::backend::{Recorded, RecordedSize, RecordedStep};

/// Default of [`RunConfig::max_proposals`].
pub const MAX_PROPOSALS: usize = 200;

pub use super::inbox::{OpRequest, RequestOp};

pub use super::events::Outcome;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot write the session log {path}: {message}")]
    Log { path: String, message: String },
    #[error("cannot resume {path}: {message}")]
    Resume { path: String, message: String },
}

struct Runner {
    cfg: RunConfig,
    log: AuditWriter,
    state: SessionState,
    agent: Box<dyn Agent>,
    /// Agent errors in a row (bad tool calls, unknown steps).
    agent_errors_in_a_row: u32,
    events: Option<mpsc::UnboundedSender<Event>>,
    ops: mpsc::UnboundedReceiver<Op>,
    /// Ops read but not yet applied.
    queued: std::collections::VecDeque<Op>,
    cancelled: bool,
    policy_brief: String,
    /// Reads run as a role that `reads_unsafely`, with no read role.
    connected_as_superuser: bool,
    denials_in_a_row: u32,
    /// Something was denied in this session: the outcome says so.
    denied_any: bool,
}

/// What one admission of a proposal is evaluated on, besides approvals.
struct Gating {
    /// The proposal, its analysis made catalog-aware where there is a
    /// database.
    resolved: Resolved,
    declared: Option<Risk>,
    table_size: Option<TableSize>,
    now: DateTime<Utc>,
    /// What each name resolved to, when the catalog was consulted.
    catalog: Vec<crate::catalog::Resolution>,
}

enum StepEnd {
    Continue,
    Stop(Outcome),
}

enum Approval {
    Granted,
    Rejected,
    Pending,
    Cancelled,
}

/// Runs a new session to its end. Returns the folded state and the outcome.
pub async fn run(
    cfg: RunConfig,
    agent: Box<dyn Agent>,
    ops: mpsc::UnboundedReceiver<Op>,
    events: Option<mpsc::UnboundedSender<Event>>,
) -> Result<(SessionState, Outcome), RunError> {
    let log = AuditWriter::create(&cfg.log_path).map_err(|e| RunError::Log {
        path: cfg.log_path.display().to_string(),
        message: e.to_string(),
    })?;
    let mut r = Runner::new(cfg, log, SessionState::default(), agent, ops, events);
    r.start()?;
    let outcome = match r.connect().await? {
        Some(mut backend) => r.drive(backend.as_mut()).await?,
        None => Outcome::Failed,
    };
    r.seal(outcome)
}

/// Continues an unsealed session log (`cfg.log_path`), whose events the
/// caller has read (it needed them to rebuild `cfg`). Nothing already
/// executed runs again; a proposal whose `executing` has no outcome is
/// settled by its step's `verify`; pending approvals stay pending and are
/// collected again.
pub async fn resume(
    cfg: RunConfig,
    logged: Vec<Event>,
    mut agent: Box<dyn Agent>,
    ops: mpsc::UnboundedReceiver<Op>,
    events: Option<mpsc::UnboundedSender<Event>>,
) -> Result<(SessionState, Outcome), RunError> {
    let path = cfg.log_path.display().to_string();
    let log = AuditWriter::open_existing(&cfg.log_path).map_err(|e| RunError::Resume {
        path: path.clone(),
        message: e.to_string(),
    })?;
    // Only the events the writer kept (a torn tail was cut off).
    let last = log.last().map(|e| e.seq);
    let kept: Vec<Event> = logged
        .into_iter()
        .filter(|e| last.is_some_and(|l| e.seq <= l))
        .collect();
    let state = SessionState::from_events(&kept);
    if state.session_id != cfg.session_id {
        return Err(RunError::Resume {
            path,
            message: format!(
                "the log belongs to session {:?}, not {:?}",
                state.session_id, cfg.session_id
            ),
        });
    }
    if let Some(replay) = agent_skip(&state) {
        agent.skip_turns(replay);
    }
    let mut r = Runner::new(cfg, log, state, agent, ops, events);
    let interrupted: Vec<ProposalId> = r
        .state
        .proposals
        .iter()
        .filter(|p| p.status == Status::Running)
        .map(|p| p.id.clone())
        .collect();
    let pending: Vec<ProposalId> = r
        .state
        .proposals
        .iter()
        .filter(|p| matches!(p.status, Status::AwaitingApproval | Status::Ready))
        .map(|p| p.id.clone())
        .collect();
    r.record(EventData::Resumed(Resumed {
        operator: r.cfg.operator.clone(),
        interrupted: interrupted.clone(),
        pending: pending.clone(),
        allow_dirty: r.cfg.allow_dirty,
        allow_superuser: r.cfg.allow_superuser,
    }))?;
    let Some(mut backend) = r.connect().await? else {
        return r.seal(Outcome::Failed);
    };
    for pid in &interrupted {
        r.record(EventData::Failed(Failed {
            proposal: Some(pid.clone()),
            kind: FailureKind::Interrupted,
            message: "ward stopped while this ran; its outcome is unknown, so it is never run again: its verify decides"
                .into(),
            role: None,
        }))?;
        let step_id = r.state.proposal(pid).and_then(|p| p.step_id.clone());
        let has_verify = step_id
            .as_deref()
            .and_then(|id| r.cfg.contract.step(id))
            .is_some_and(|s| s.verify.is_some());
        match step_id {
            Some(id) if has_verify => r.verify(backend.as_mut(), pid, &id).await?,
            _ => {
                r.record(EventData::AgentError(AgentError::note(format!(
                    "proposal {} was interrupted and has no verify: check its effect by hand before going on",
                    pid.short()
                ))))?;
                return r.seal(Outcome::Failed);
            }
        }
    }
    for pid in &pending {
        if let StepEnd::Stop(o) = r.continue_pending(backend.as_mut(), pid).await? {
            return r.seal(o);
        }
    }
    let outcome = r.drive(backend.as_mut()).await?;
    r.seal(outcome)
}

/// How many turns a replayed transcript had answered before the session
/// stopped: its proposals (not the offline planner's after a handover), its
/// questions, and its proposals that were refused.
fn agent_skip(state: &SessionState) -> Option<usize> {
    (state.agent.get("provider").and_then(Value::as_str) == Some("replay")).then(|| {
        state
            .proposals
            .iter()
            .filter(|p| p.source == Source::Replay)
            .count()
            + state.questions.len()
            + state.refused_proposals
    })
}

impl Runner {
    fn new(
        cfg: RunConfig,
        log: AuditWriter,
        state: SessionState,
        agent: Box<dyn Agent>,
        ops: mpsc::UnboundedReceiver<Op>,
        events: Option<mpsc::UnboundedSender<Event>>,
    ) -> Runner {
        let policy_brief = policy_brief(&cfg.policy);
        let denied_any = state
            .proposals
            .iter()
            .any(|p| p.status == Status::Denied && !p.dry_run);
        Runner {
            cfg,
            log,
            state,
            agent,
            agent_errors_in_a_row: 0,
            events,
            ops,
            queued: Default::default(),
            cancelled: false,
            policy_brief,
            connected_as_superuser: false,
            denials_in_a_row: 0,
            denied_any,
        }
    }

    /// Appends (and fsyncs) an event, folds it, and tells the front end.
    fn record(&mut self, e: EventData) -> Result<Event, RunError> {
        let (kind, data) = e.to_parts();
        let event = self.log.append(&kind, data).map_err(|err| RunError::Log {
            path: self.cfg.log_path.display().to_string(),
            message: err.to_string(),
        })?;
        self.state.apply(event.seq, &event.ts, &event.hash, &e);
        if let Some(tx) = &self.events {
            let _ = tx.send(event.clone());
        }
        Ok(event)
    }

    /// Seals the log. A proposal still waiting for approval is named as
    /// unapproved: an approval is never inferred.
    fn seal(mut self, outcome: Outcome) -> Result<(SessionState, Outcome), RunError> {
        let unapproved: Vec<ProposalId> = self
            .state
            .awaiting_approval()
            .iter()
            .map(|p| p.id.clone())
            .collect();
        self.record(EventData::SessionEnded(SessionEnded {
            outcome,
            unapproved,
        }))?;
        // Requests no one will read now are answered, not left waiting.
        if let Some(inbox) = self.inbox() {
            let reason = format!(
                "session ended ({}) before it read the request",
                outcome.words()
            );
            for taken in inbox.take() {
                inbox.answer(
                    &taken,
                    &Answer::Refused {
                        reason: reason.clone(),
                    },
                );
            }
        }
        Ok((self.state, outcome))
    }

    fn start(&mut self) -> Result<(), RunError> {
        let c = &self.cfg.contract;
        let started = SessionStarted {
            session_id: self.cfg.session_id.clone(),
            operator: self.cfg.operator.clone(),
            host: hostname(),
            ward_version: env!("CARGO_PKG_VERSION").into(),
            runbook: c.id().into(),
            runbook_version: c.spec.version,
            target: json!({
                "name": self.cfg.target.name,
                "engine": self.cfg.target.engine,
                "url": if self.cfg.recorded.is_some() { "recorded evidence".to_string() } else { self.cfg.target.url.redacted() },
            }),
            environment: self.cfg.target.environment.clone(),
            agent: self.agent.describe(),
            dry_run: self.cfg.dry_run,
            provenance: self.cfg.provenance.clone(),
            inputs: serde_json::to_value(&self.cfg.inputs).unwrap_or(Value::Null),
            allow_dirty: self.cfg.allow_dirty,
            allow_superuser: self.cfg.allow_superuser,
            events_version: EVENTS_VERSION,
        };
        self.record(EventData::SessionStarted(started))?;
        Ok(())
    }

    /// The database connection, or the recorded evidence. `None` after
    /// logging why it failed.
    async fn connect(&mut self) -> Result<Option<Box<dyn StatementBackend>>, RunError> {
        if let Some(rec) = self.cfg.recorded.clone() {
            return Ok(Some(Box::new(RecordedEvidence(rec))));
        }
        let ex = match Executor::connect(&self.cfg.target, &self.cfg.session_id, self.cfg.dry_run)
            .await
        {
            Ok(ex) => ex,
            Err(e) => {
                self.record(EventData::Failed(Failed {
                    proposal: None,
                    kind: e.kind().into(),
                    message: e.to_string(),
                    role: None,
                }))?;
                return Ok(None);
            }
        };
        match gate::admit_connection(ex.identity(), &self.cfg.target, self.cfg.allow_superuser) {
            Ok(unsafe_reads) => self.connected_as_superuser = unsafe_reads,
            Err(message) => {
                self.record(EventData::Failed(Failed {
                    proposal: None,
                    kind: FailureKind::Superuser,
                    message,
                    role: None,
                }))?;
                return Ok(None);
            }
        }
        // Steps resolve (`@extschema:NAME@`) and analyze as this server
        // reads SQL.
        self.cfg.analyzer.options.server = ex.server_facts();
        Ok(Some(Box::new(Database(Box::new(ex)))))
    }

    /// The agent loop: ask, check, gate, (approve,) run, until a conclusion
    /// or a stop.
    async fn drive(&mut self, backend: &mut dyn StatementBackend) -> Result<Outcome, RunError> {
        loop {
            if self.poll_cancel() {
                return Ok(Outcome::Cancelled);
            }
            if self.state.proposals.len() >= self.cfg.max_proposals {
                self.record(EventData::Failed(Failed {
                    proposal: None,
                    kind: FailureKind::Agent,
                    message: format!(
                        "the agent made {} proposals without concluding; stopping",
                        self.state.proposals.len()
                    ),
                    role: None,
                }))?;
                return Ok(Outcome::Failed);
            }
            let (proposal, source) = self.ask_agent().await?;
            let end = match proposal {
                Proposal::Conclude {
                    diagnosis,
                    recommendation,
                } => {
                    self.record(EventData::Concluded(Concluded {
                        text: diagnosis,
                        recommendation,
                    }))?;
                    // Denial is an answer, but the outcome still says it.
                    return Ok(if self.denied_any {
                        Outcome::Denied
                    } else {
                        Outcome::Concluded
                    });
                }
                Proposal::Ask { question } => {
                    self.record(EventData::Asked(Asked { question }))?;
                    self.wait_for_answer().await?
                }
                Proposal::Step {
                    step_id,
                    inputs,
                    rationale,
                } => {
                    self.step(backend, &step_id, inputs, rationale, &source)
                        .await?
                }
                Proposal::Adhoc { sql, reason } => {
                    self.adhoc(backend, &sql, &reason, &source).await?
                }
            };
            if let StepEnd::Stop(o) = end {
                return Ok(o);
            }
        }
    }

    fn inputs_value(&self) -> Value {
        let mut m = serde_json::Map::new();
        for (name, spec) in &self.cfg.contract.spec.inputs {
            if let Some(v) = self.cfg.inputs.get(name) {
                let typed = step::typed_input(name, spec, v).unwrap_or_else(|| v.clone());
                m.insert(name.clone(), typed);
            } else if let Some(d) = &spec.default {
                m.insert(name.clone(), serde_json::to_value(d).unwrap_or(Value::Null));
            }
        }
        Value::Object(m)
    }

    /// The next proposal and its source (`offline`, `replay`, `openai`),
    /// logging usage and the agent's errors; an agent that fails for good
    /// hands over to the offline planner.
    async fn ask_agent(&mut self) -> Result<(Proposal, Source), RunError> {
        let inputs = self.inputs_value();
        let budget = Budget {
            used: self.state.tokens_used,
            limit: self.agent.token_budget(),
        };
        let provider = self
            .state
            .agent
            .get("provider")
            .and_then(Value::as_str)
            .unwrap_or("offline")
            .to_string();
        let proposer = Source::from_provider(&provider);
        // An agent that handed over (in this run or before a resume) stays out.
        let result = if self.state.agent_handed_over {
            None
        } else {
            let view = AgentView {
                contract: &self.cfg.contract,
                state: &self.state,
                inputs: &inputs,
                environment: &self.cfg.target.environment,
                policy_brief: &self.policy_brief,
                budget,
            };
            Some(self.agent.next(&view).await)
        };
        let (turn, source) = match result {
            Some(Ok(turn)) => (turn, proposer),
            Some(Err(failure)) => {
                self.note_usage(failure.usage)?;
                for n in failure.notes {
                    self.record(EventData::AgentError(AgentError::note(n)))?;
                }
                self.record(EventData::AgentError(AgentError {
                    message: format!(
                        "agent {provider} failed: {}; the offline planner goes on",
                        failure.message
                    ),
                    handover: true,
                    ..AgentError::default()
                }))?;
                (self.offline_turn(&inputs), Source::Offline)
            }
            None => (self.offline_turn(&inputs), Source::Offline),
        };
        self.note_usage(turn.usage)?;
        for n in turn.notes {
            self.record(EventData::AgentError(AgentError::note(n)))?;
        }
        Ok((turn.proposal, source))
    }

    fn offline_turn(&self, inputs: &Value) -> Turn {
        Turn::plain(crate::agent::offline::plan(&AgentView {
            contract: &self.cfg.contract,
            state: &self.state,
            inputs,
            environment: &self.cfg.target.environment,
            policy_brief: &self.policy_brief,
            budget: Budget::default(),
        }))
    }

    fn note_usage(&mut self, usage: crate::agent::Usage) -> Result<(), RunError> {
        if usage.total() == 0 {
            return Ok(());
        }
        let total = self.state.tokens_used + usage.total();
        self.record(EventData::AgentUsage(AgentUsage {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            total,
            budget: self.agent.token_budget(),
        }))?;
        Ok(())
    }

    /// An agent error that is the agent's, not the session's: logged, told
    /// to the agent through the state, and after five in a row the offline
    /// planner takes over.
    fn agent_mistake(&mut self, message: String) -> Result<StepEnd, RunError> {
        self.record(EventData::AgentError(AgentError {
            message,
            refused: true,
            ..AgentError::default()
        }))?;
        self.agent_errors_in_a_row += 1;
        if self.agent_errors_in_a_row >= 5 && !self.state.agent_handed_over {
            self.record(EventData::AgentError(AgentError {
                message: "five agent errors in a row; the offline planner goes on".into(),
                handover: true,
                ..AgentError::default()
            }))?;
        }
        Ok(StepEnd::Continue)
    }

    /// Waits for a human's answer to the agent's question; without a front
    /// end that can answer, the offline planner goes on.
    async fn wait_for_answer(&mut self) -> Result<StepEnd, RunError> {
        if self.cfg.wait_for_approval.is_some() {
            loop {
                let op = match self.queued.pop_front() {
                    Some(op) => op,
                    None => match self.ops.recv().await {
                        Some(op) => op,
                        None => break,
                    },
                };
                match op {
                    Op::Answer { operator, text } => {
                        self.record(EventData::Answered(Answered { operator, text }))?;
                        return Ok(StepEnd::Continue);
                    }
                    Op::Cancel => {
                        self.cancelled = true;
                        return Ok(StepEnd::Stop(Outcome::Cancelled));
                    }
                    Op::Leave => break,
                    _ => {}
                }
            }
        }
        if !self.state.agent_handed_over {
            self.record(EventData::AgentError(AgentError {
                message: "no one can answer the agent's question here; the offline planner goes on"
                    .into(),
                handover: true,
                ..AgentError::default()
            }))?;
        }
        Ok(StepEnd::Continue)
    }

    async fn step(
        &mut self,
        backend: &mut dyn StatementBackend,
        id: &str,
        extra: BTreeMap<String, Value>,
        rationale: Option<String>,
        source: &Source,
    ) -> Result<StepEnd, RunError> {
        let mut inputs = self.cfg.inputs.clone();
        inputs.extend(extra.clone());
        let resolved = match step::resolve(
            &self.cfg.contract,
            id,
            &inputs,
            self.cfg.target.engine,
            &self.cfg.analyzer,
        ) {
            Ok(r) => r,
            Err(e) => {
                if *source == Source::Offline {
                    // The runbook itself cannot be resolved: a session error.
                    self.record(EventData::Failed(Failed {
                        proposal: None,
                        kind: FailureKind::Resolve,
                        message: e.to_string(),
                        role: None,
                    }))?;
                    return Ok(StepEnd::Stop(Outcome::Failed));
                }
                return self.agent_mistake(format!("proposal refused: {e}"));
            }
        };
        self.agent_errors_in_a_row = 0;
        let proposed = self.record(EventData::Proposed(Proposed {
            step_id: Some(id.to_string()),
            sql: resolved.sql.clone(),
            binds: resolved.binds.iter().map(bind_json).collect(),
            source: source.clone(),
            rationale,
            inputs: extra,
        }))?;
        let pid = ProposalId::new(proposed.hash);
        let declared = self.cfg.contract.step(id).and_then(|s| s.spec.risk);
        self.gate_and_run(backend, &pid, &resolved, declared).await
    }

    /// The agent's own SQL: only where the contract allows it, classified
    /// from its text, run read-only.
    async fn adhoc(
        &mut self,
        backend: &mut dyn StatementBackend,
        sql: &str,
        reason: &str,
        source: &Source,
    ) -> Result<StepEnd, RunError> {
        if self.cfg.contract.spec.adhoc != Adhoc::ReadOnly {
            return self.agent_mistake(format!(
                "ad-hoc SQL refused: runbook `{}` does not allow it",
                self.cfg.contract.id()
            ));
        }
        self.agent_errors_in_a_row = 0;
        let analysis = self.cfg.analyzer.analyze(self.cfg.target.engine, sql);
        let proposed = self.record(EventData::Proposed(Proposed {
            step_id: None,
            sql: sql.to_string(),
            binds: Vec::new(),
            source: source.clone(),
            rationale: Some(reason.to_string()),
            inputs: BTreeMap::new(),
        }))?;
        let pid = ProposalId::new(proposed.hash);
        let resolved = Resolved {
            runbook: self.cfg.contract.id().to_string(),
            origin: Origin::Adhoc,
            kind: StepKind::Diagnostic,
            engine: self.cfg.target.engine,
            sql: sql.to_string(),
            binds: Vec::new(),
            risk: analysis.risk,
            analysis,
            mode: Mode::ReadOnly,
            limits: Limits {
                max_rows: Some(10_000),
                ..Limits::default()
            },
            summarize: None,
            redact: Vec::new(),
        };
        self.gate_and_run(backend, &pid, &resolved, None).await
    }

    /// Analyzed -> gated -> (approvals) -> readmitted -> execute, each
    /// logged first.
    async fn gate_and_run(
        &mut self,
        backend: &mut dyn StatementBackend,
        pid: &ProposalId,
        resolved: &Resolved,
        declared: Option<Risk>,
    ) -> Result<StepEnd, RunError> {
        let g = self.gating(backend, resolved, declared).await;
        let a = &g.resolved.analysis;
        self.record(EventData::Analyzed(Analyzed {
            proposal: pid.clone(),
            risk: g.resolved.risk,
            kinds: a.kinds().iter().map(|k| k.to_string()).collect(),
            lock: a.lock().map(|l| l.name().to_string()),
            blocks: a
                .statements
                .iter()
                .flat_map(|s| s.blocks.iter().map(|b| b.to_string()))
                .collect(),
            findings: a.findings().iter().map(|f| f.rule.to_string()).collect(),
            tables: a.tables().iter().map(|t| t.to_string()).collect(),
            table_size: g
                .table_size
                .map(|t| json!({"rows": t.rows, "bytes": t.bytes})),
            fingerprint: crate::sql::fingerprint(g.resolved.engine, &g.resolved.sql),
            reasons: a
                .statements
                .iter()
                .flat_map(|s| s.reasons.iter().cloned())
                .collect(),
            catalog: g
                .catalog
                .iter()
                .filter_map(|c| serde_json::to_value(c).ok())
                .collect(),
        }))?;
        let admitted = self.admission(pid, &g, None);
        let (roles, requires_roles) = roles_of(&admitted.verdict.decision);
        self.record(EventData::Gated(Gated {
            proposal: pid.clone(),
            decision: admitted.verdict.decision.kind(),
            approvers: admitted.verdict.decision.approvers(),
            roles,
            risk: admitted.verdict.risk,
            rules: admitted
                .verdict
                .rules
                .iter()
                .map(|m| m.id.clone())
                .collect(),
            policy: admitted.verdict.policy.clone(),
            dry_run: admitted.admit == Admit::DryRunSkip,
            requires_roles,
            message: admission_message(&admitted.admit),
        }))?;
        match admitted.admit {
            Admit::DryRunSkip => Ok(StepEnd::Continue),
            Admit::Deny { .. } => self.denied(),
            Admit::Run => {
                self.denials_in_a_row = 0;
                self.run_when_admitted(backend, pid, resolved, declared, None)
                    .await
            }
            Admit::NeedsApprovals { .. } => {
                self.denials_in_a_row = 0;
                self.run_when_admitted(backend, pid, resolved, declared, Some(g))
                    .await
            }
        }
    }

    /// The proposal as admission sees it now: its analysis made
    /// catalog-aware on a database (a failure makes it `unknown`, never
    /// lower), the size of the largest table it touches, the clock.
    async fn gating(
        &mut self,
        backend: &mut dyn StatementBackend,
        resolved: &Resolved,
        declared: Option<Risk>,
    ) -> Gating {
        let mut r = resolved.clone();
        let mut catalog = Vec::new();
        if let Some(looked_up) = backend.refine(&self.cfg.analyzer, resolved).await {
            match looked_up.map(|refined| {
                catalog = refined.resolved;
                refined.analysis
            }) {
                Ok(refined) => r.analysis = refined,
                Err(e) => {
                    r.analysis.risk = Risk::Unknown;
                    for st in &mut r.analysis.statements {
                        st.risk = Risk::Unknown;
                        st.reasons.push(format!("the catalog lookup failed: {e}"));
                    }
                }
            }
            // Raised by the declared risk, and never below the text's class.
            r.risk = r
                .analysis
                .risk
                .raised_by(declared)
                .raised_by(Some(resolved.risk));
            r.analysis.risk = r.analysis.risk.raised_by(Some(resolved.analysis.risk));
        }
        let table_size = if r.risk != Risk::ReadOnly {
            backend.table_size(&r).await
        } else {
            None
        };
        Gating {
            resolved: r,
            declared,
            table_size,
            now: self.cfg.clock.now(),
            catalog,
        }
    }

    /// An approval (or a standing one) as admission counts it: the roles
    /// its operator holds in the roster.
    fn given(&self, operator: &str) -> Given {
        Given {
            operator: operator.to_string(),
            roles: self
                .cfg
                .operators
                .as_ref()
                .map(|o| o.roles_of(operator.trim()))
                .unwrap_or_default(),
        }
    }

    /// `gate::admit` for `pid` on `g`, with the approvals logged so far
    /// (and `extra`, an approval being considered).
    fn admission(&self, pid: &ProposalId, g: &Gating, extra: Option<&str>) -> Admitted {
        let p = self.state.proposal(pid);
        let mut approvals: Vec<Given> = p
            .map(|p| p.approvals.iter().map(|(o, _)| self.given(o)).collect())
            .unwrap_or_default();
        if let Some(op) = extra {
            approvals.push(self.given(op));
        }
        let standing = p
            .and_then(|p| p.fingerprint.as_deref())
            .and_then(|fp| self.state.standing.iter().find(|(f, _, _)| f == fp))
            .map(|(_, op, _)| self.given(op));
        let adhoc = (g.resolved.origin == Origin::Adhoc).then_some(self.cfg.contract.spec.adhoc);
        gate::admit(&Admission {
            policy: &self.cfg.policy,
            gate: GateInput {
                analysis: &g.resolved.analysis,
                declared_risk: g.declared,
                environment: &self.cfg.target.environment,
                runbook: Some(self.cfg.contract.id()),
                step_kind: Some(if adhoc.is_some() {
                    "adhoc"
                } else {
                    g.resolved.kind.name()
                }),
                table_size: g.table_size,
                now: g.now,
                connected_as_superuser: self.connected_as_superuser,
            },
            adhoc,
            mode: g.resolved.mode,
            dry_run: self.cfg.dry_run,
            approvals: &approvals,
            standing: standing.as_ref(),
            roster: self.cfg.operators.as_ref().map(|o| o.path.as_path()),
        })
    }

    /// A proposal that was denied: the agent hears it through the state
    /// (rules and message), the session goes on; after
    /// [`DENIALS_BEFORE_HANDOVER`] in a row the agent is stopped.
    fn denied(&mut self) -> Result<StepEnd, RunError> {
        self.denied_any = true;
        self.denials_in_a_row += 1;
        let offline = self.state.agent.get("provider").and_then(Value::as_str) == Some("offline");
        if self.denials_in_a_row >= DENIALS_BEFORE_HANDOVER
            && !self.state.agent_handed_over
            && !offline
        {
            self.record(EventData::AgentError(AgentError {
                message: format!(
                    "{} proposals in a row were denied by policy; the agent is stopped and the offline planner goes on",
                    self.denials_in_a_row
                ),
                handover: true,
                ..AgentError::default()
            }))?;
        }
        Ok(StepEnd::Continue)
    }

    /// Re-reads the policy and the roster from their files (where the
    /// session has files): a policy changed since the proposal decides.
    /// A policy that no longer loads denies everything.
    fn reload(&mut self) {
        if !self.cfg.reload_policy {
            return;
        }
        let path = self.cfg.policy.path.clone();
        let loaded = crate::yaml::Doc::read(&path)
            .map_err(|p| vec![p])
            .and_then(|d| crate::policy::load_doc(&d));
        self.cfg.policy = match loaded {
            Ok(p) => p,
            Err(problems) => Policy {
                id: format!(
                    "{} (its file no longer loads: {})",
                    self.cfg.policy.id,
                    problems
                        .first()
                        .map(ToString::to_string)
                        .unwrap_or_default()
                ),
                path: path.clone(),
                windows: BTreeMap::new(),
                rules: Vec::new(),
                default: Decision::Deny,
            },
        };
        self.policy_brief = policy_brief(&self.cfg.policy);
        // A roster that no longer loads holds no roles.
        self.cfg.operators = path
            .parent()
            .and_then(|dir| operators::load(dir).ok().flatten());
    }

    /// Admission again right before execution, until it runs, is denied,
    /// or waits: approvals missing (now or at the proposal) are collected
    /// first, and approvals already given count.
    async fn run_when_admitted(
        &mut self,
        backend: &mut dyn StatementBackend,
        pid: &ProposalId,
        resolved: &Resolved,
        declared: Option<Risk>,
        mut waiting: Option<Gating>,
    ) -> Result<StepEnd, RunError> {
        loop {
            if let Some(g) = waiting.take() {
                match self.collect_approvals(pid, &g).await? {
                    Approval::Granted => {}
                    Approval::Rejected => return Ok(StepEnd::Continue),
                    Approval::Pending => return Ok(StepEnd::Stop(Outcome::AwaitingApproval)),
                    Approval::Cancelled => return Ok(StepEnd::Stop(Outcome::Cancelled)),
                }
            }
            if self.poll_cancel() {
                return Ok(StepEnd::Stop(Outcome::Cancelled));
            }
            self.reload();
            let g = self.gating(backend, resolved, declared).await;
            let admitted = self.admission(pid, &g, None);
            if admitted.admit == Admit::Run {
                self.standing_used(pid, &admitted)?;
            }
            self.readmitted(pid, &g, &admitted)?;
            match admitted.admit {
                Admit::Run => return self.execute(backend, pid, &g.resolved).await,
                Admit::Deny { .. } => return self.denied(),
                Admit::DryRunSkip => return Ok(StepEnd::Continue),
                Admit::NeedsApprovals { .. } => waiting = Some(g),
            }
        }
    }

    /// Logs the admission right before execution, with the verdict it
    /// replaces and why it changed.
    fn readmitted(&mut self, pid: &ProposalId, g: &Gating, a: &Admitted) -> Result<(), RunError> {
        let (roles, requires_roles) = roles_of(&a.verdict.decision);
        let previous = self
            .state
            .proposal(pid)
            .map(|p| VerdictWords::new(p.decision, p.approvers_needed, &p.roles_required))
            .unwrap_or_default();
        let now = VerdictWords::new(
            Some(a.verdict.decision.kind()),
            a.verdict.decision.approvers(),
            &roles,
        );
        let changed = previous != now;
        let mut why = Vec::new();
        if changed {
            why.push(format!(
                "at {} the verdict is {now} (was {previous}); rules: {}",
                g.now.to_rfc3339(),
                a.verdict
                    .rules
                    .iter()
                    .map(|m| m.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        why.extend(admission_message(&a.admit));
        why.extend(a.refused.iter().map(|(_, r)| r.clone()));
        self.record(EventData::Readmitted(Readmitted {
            proposal: pid.clone(),
            decision: a.verdict.decision.kind(),
            approvers: a.verdict.decision.approvers(),
            roles,
            requires_roles,
            risk: a.verdict.risk,
            rules: a.verdict.rules.iter().map(|m| m.id.clone()).collect(),
            policy: a.verdict.policy.clone(),
            admit: a.admit.kind(),
            previous,
            changed,
            why: why.join("; "),
            table_size: g
                .table_size
                .map(|t| json!({"rows": t.rows, "bytes": t.bytes})),
        }))?;
        Ok(())
    }

    /// Logs the standing approval that answered `pid`, once.
    fn standing_used(&mut self, pid: &ProposalId, a: &Admitted) -> Result<(), RunError> {
        if !a.by_standing {
            return Ok(());
        }
        let Some(p) = self.state.proposal(pid) else {
            return Ok(());
        };
        let Some((fp, operator, reason)) = p
            .fingerprint
            .as_deref()
            .and_then(|fp| self.state.standing.iter().find(|(f, _, _)| f == fp))
            .cloned()
        else {
            return Ok(());
        };
        if p.approvals.iter().any(|(o, _)| *o == operator) {
            return Ok(());
        }
        let holds_roles = self.given(&operator).roles.join(",");
        self.record(EventData::Approved(Decided {
            proposal: pid.clone(),
            operator,
            reason: format!("standing approval for this statement: {reason}"),
            standing: Some(fp),
            holds_roles,
        }))?;
        Ok(())
    }

    /// A proposal a resumed session found waiting (for approvals, or
    /// approved and not yet started): admitted again like any other, then
    /// run exactly as proposed, or stopped if the runbook no longer
    /// resolves to the same statement.
    async fn continue_pending(
        &mut self,
        backend: &mut dyn StatementBackend,
        pid: &ProposalId,
    ) -> Result<StepEnd, RunError> {
        let Some(p) = self.state.proposal(pid).cloned() else {
            return Ok(StepEnd::Continue);
        };
        let resolved = match &p.step_id {
            Some(id) => {
                let mut inputs = self.cfg.inputs.clone();
                inputs.extend(self.logged_inputs(pid));
                step::resolve(
                    &self.cfg.contract,
                    id,
                    &inputs,
                    self.cfg.target.engine,
                    &self.cfg.analyzer,
                )
                .ok()
            }
            None => None,
        };
        let Some(resolved) = resolved.filter(|r| r.sql == p.sql) else {
            self.record(EventData::Failed(Failed {
                proposal: Some(pid.clone()),
                kind: FailureKind::Resume,
                message: "the runbook no longer resolves to the statement that was proposed; propose it again".into(),
                role: None,
            }))?;
            return Ok(StepEnd::Stop(Outcome::Failed));
        };
        let declared = p
            .step_id
            .as_deref()
            .and_then(|id| self.cfg.contract.step(id))
            .and_then(|s| s.spec.risk);
        self.run_when_admitted(backend, pid, &resolved, declared, None)
            .await
    }

    /// The inputs a proposal was made with, from its `proposed` event.
    fn logged_inputs(&self, pid: &ProposalId) -> BTreeMap<String, Value> {
        self.state
            .proposal(pid)
            .map(|p| p.inputs.clone())
            .unwrap_or_default()
    }

    async fn execute(
        &mut self,
        backend: &mut dyn StatementBackend,
        pid: &ProposalId,
        resolved: &Resolved,
    ) -> Result<StepEnd, RunError> {
        self.record(EventData::Executing(Executing {
            proposal: pid.clone(),
            mode: resolved.mode.into(),
        }))?;
        let canceller = backend.canceller();
        let run = backend.execute(resolved, &self.cfg.evidence);
        let result = match canceller {
            Some(c) => {
                cancellable(
                    run,
                    &c,
                    &mut self.ops,
                    &mut self.queued,
                    &mut self.cancelled,
                )
                .await
            }
            None => run.await,
        };
        if let Some(err) = &result.error {
            self.record(EventData::Failed(Failed {
                proposal: Some(pid.clone()),
                kind: err.kind.into(),
                message: err.message.clone(),
                role: result.role.clone(),
            }))?;
            if self.cancelled {
                return Ok(StepEnd::Stop(Outcome::Cancelled));
            }
            // The agent's own query may fail; it hears about it. A runbook
            // step failing is for a human to look at.
            return Ok(if resolved.origin == Origin::Adhoc {
                StepEnd::Continue
            } else {
                StepEnd::Stop(Outcome::Failed)
            });
        }
        self.record(EventData::Executed(Executed {
            proposal: pid.clone(),
            rows_seen: result.rows_seen,
            rows_kept: result.rows_kept,
            capped: result.capped,
            duration_ms: result.duration_ms,
            sha256: result.sha256.clone(),
            role: result.role.clone(),
        }))?;
        self.summarized(pid, &result)?;
        if resolved.kind != StepKind::Diagnostic
            && let Some(step_id) = resolved.origin.step_id()
        {
            self.verify(backend, pid, step_id).await?;
        }
        Ok(StepEnd::Continue)
    }

    fn summarized(&mut self, pid: &ProposalId, result: &StepResult) -> Result<(), RunError> {
        if let Some(ev) = &result.evidence {
            self.record(EventData::Summarized(Summarized {
                proposal: pid.clone(),
                summarizer: ev.summarizer.clone(),
                summary: ev.summary.clone(),
                facts: Value::Object(ev.facts.clone()),
                tokens: ev.tokens,
                truncated: ev.truncated,
                warnings: ev.warnings.clone(),
            }))?;
        }
        Ok(())
    }

    /// Runs the step's `verify` query (read-only) and evaluates `expect`
    /// over its rows: the outcome is a verified state change, not anyone's
    /// word.
    async fn verify(
        &mut self,
        backend: &mut dyn StatementBackend,
        pid: &ProposalId,
        step_id: &str,
    ) -> Result<(), RunError> {
        let Some(expect) = self
            .cfg
            .contract
            .step(step_id)
            .and_then(|s| s.verify.as_ref())
            .map(|(_, e)| e.clone())
        else {
            return Ok(());
        };
        let inputs = self.inputs_value();
        let mut step_inputs = self.cfg.inputs.clone();
        step_inputs.extend(self.logged_inputs(pid));
        // The same binding as the step itself: identifiers quoted, values bound.
        let bound = step::verify_sql(
            &self.cfg.contract,
            step_id,
            &step_inputs,
            self.cfg.target.engine,
            self.cfg.analyzer.options.server.as_ref(),
        );
        let (sql, binds) = match bound {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(()),
            Err(e) => {
                self.record(EventData::Verified(Verified {
                    proposal: pid.clone(),
                    ok: false,
                    expect: expect.source.clone(),
                    detail: format!("verify query could not be prepared: {e}"),
                }))?;
                return Ok(());
            }
        };
        let ran = match backend
            .verify_rows(
                &self.cfg.analyzer,
                self.cfg.target.engine,
                step_id,
                &sql,
                &binds,
            )
            .await
        {
            VerifyRows::Rows(rows) => Ok(rows),
            VerifyRows::Failed(e) => Err(e),
            VerifyRows::NotRun(why) => {
                self.record(EventData::Verified(Verified {
                    proposal: pid.clone(),
                    ok: false,
                    expect: expect.source.clone(),
                    detail: format!("verify query not run: {why}"),
                }))?;
                return Ok(());
            }
        };
        let facts = self.state.facts_value();
        let (ok, detail) = match ran {
            Err(e) => (false, format!("verify query failed: {e}")),
            Ok(rows) => match expect.eval_bool(&[
                ("rows", &Value::Array(rows)),
                ("inputs", &inputs),
                ("facts", &facts),
            ]) {
                Ok(true) => (true, "expectation holds".to_string()),
                Ok(false) => (false, "expectation does not hold".to_string()),
                // The error can quote a value of the verify rows, which never
                // pass through a summarizer: redacted like evidence.
                Err(e) => (false, crate::evidence::redact_text(&e)),
            },
        };
        self.record(EventData::Verified(Verified {
            proposal: pid.clone(),
            ok,
            expect: expect.source.clone(),
            detail,
        }))?;
        Ok(())
    }

    fn poll_cancel(&mut self) -> bool {
        while let Ok(op) = self.ops.try_recv() {
            if op == Op::Cancel {
                self.cancelled = true;
            } else {
                self.queued.push_back(op);
            }
        }
        self.cancelled
    }

    /// Waits until admission lets `pid` run on `g`: for approvals from
    /// distinct operators holding the required roles, from the front end's
    /// channel and from other operators' `ward approve` requests, polled
    /// every 250 ms. A standing approval answers it at once where allowed.
    async fn collect_approvals(
        &mut self,
        pid: &ProposalId,
        g: &Gating,
    ) -> Result<Approval, RunError> {
        let first = self.admission(pid, g, None);
        if first.admit == Admit::Run {
            self.standing_used(pid, &first)?;
            return Ok(Approval::Granted);
        }
        let Some(wait) = self.cfg.wait_for_approval else {
            return Ok(Approval::Pending);
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if self.admission(pid, g, None).admit == Admit::Run {
                return Ok(Approval::Granted);
            }
            if let Some(op) = self.queued.pop_front() {
                if let (Some(a), _) = self.handle_op(pid, g, op)? {
                    return Ok(a);
                }
                continue;
            }
            let poll = tokio::time::Instant::now() + Duration::from_millis(250);
            tokio::select! {
                op = self.ops.recv() => match op {
                    Some(op) => self.queued.push_back(op),
                    None => tokio::time::sleep_until(poll.min(deadline)).await,
                },
                () = tokio::time::sleep_until(deadline) => return Ok(Approval::Pending),
                () = tokio::time::sleep_until(poll) => {
                    let mut ended = None;
                    for taken in self.inbox().map(|i| i.take()).unwrap_or_default() {
                        // Requests behind one that ended the wait, or behind
                        // the approval that sufficed, are answered too.
                        if ended.is_some() || self.admission(pid, g, None).admit == Admit::Run {
                            if let Some(inbox) = self.inbox() {
                                inbox.answer(&taken, &Answer::Refused {
                                    reason: format!(
                                        "proposal {} no longer waits for approval",
                                        pid.short()
                                    ),
                                });
                            }
                            continue;
                        }
                        ended = self.handle_request(pid, g, &taken)?;
                    }
                    if let Some(a) = ended {
                        return Ok(a);
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline && self.queued.is_empty() {
                return Ok(Approval::Pending);
            }
        }
    }

    /// The inbox other operators' `ward approve` / `ward reject` write to.
    fn inbox(&self) -> Option<Inbox> {
        self.cfg.ops_dir.as_deref().map(Inbox::new)
    }

    /// Applies a request from the inbox while `pid` waits and answers it:
    /// recorded, or refused with the reason (a request for a proposal that
    /// does not wait is refused, never dropped). `Some` ends the wait.
    fn handle_request(
        &mut self,
        pid: &ProposalId,
        g: &Gating,
        taken: &Taken,
    ) -> Result<Option<Approval>, RunError> {
        let req = &taken.request;
        if !pid.is_named_by(&req.proposal) {
            let reason = match self
                .state
                .proposals
                .iter()
                .find(|p| p.id.is_named_by(&req.proposal))
            {
                Some(p) => format!(
                    "proposal {} no longer waits for approval (it is {})",
                    p.id.short(),
                    p.status.words()
                ),
                None => format!("session has no proposal `{}`", req.proposal),
            };
            if let Some(inbox) = self.inbox() {
                inbox.answer(taken, &Answer::Refused { reason });
            }
            return Ok(None);
        }
        let op = match req.op {
            RequestOp::Approve => Op::Approve {
                proposal: pid.clone(),
                operator: req.operator.clone(),
                reason: req.reason.clone(),
                for_session: false,
            },
            RequestOp::Reject => Op::Reject {
                proposal: pid.clone(),
                operator: req.operator.clone(),
                reason: req.reason.clone(),
            },
        };
        let (end, answer) = self.handle_op(pid, g, op)?;
        if let Some(inbox) = self.inbox() {
            inbox.answer(taken, &answer);
        }
        Ok(end)
    }

    /// Applies one op while `pid` waits: `Some` ends the wait; the answer
    /// says whether it was logged, and if not, why.
    fn handle_op(
        &mut self,
        pid: &ProposalId,
        g: &Gating,
        op: Op,
    ) -> Result<(Option<Approval>, Answer), RunError> {
        let refused = |reason: String| Answer::Refused { reason };
        match op {
            Op::Cancel => {
                self.cancelled = true;
                Ok((Some(Approval::Cancelled), Answer::Recorded))
            }
            Op::Leave => Ok((Some(Approval::Pending), Answer::Recorded)),
            Op::Approve {
                proposal,
                operator,
                reason,
                for_session,
            } if proposal == *pid => {
                // The same operator never counts twice; a reason is required.
                let already = self
                    .state
                    .proposal(pid)
                    .is_some_and(|p| p.approvals.iter().any(|(o, _)| *o == operator));
                if already {
                    return Ok((
                        None,
                        refused(format!(
                            "{operator} already approved proposal {}; another approval must come from another operator",
                            pid.short()
                        )),
                    ));
                }
                if reason.trim().is_empty() || operator.trim().is_empty() {
                    return Ok((
                        None,
                        refused("an approval needs an operator and a reason".into()),
                    ));
                }
                // Admission says whether it counts (the roles it needs).
                let trial = self.admission(pid, g, Some(&operator));
                if let Some((_, why)) = trial.refused.iter().find(|(o, _)| o == operator.trim()) {
                    self.record(EventData::ApprovalRefused(ApprovalRefused {
                        proposal,
                        operator,
                        reason: why.clone(),
                    }))?;
                    return Ok((None, refused(why.clone())));
                }
                let holds_roles = self.given(&operator).roles.join(",");
                self.record(EventData::Approved(Decided {
                    proposal: proposal.clone(),
                    operator: operator.clone(),
                    reason: reason.clone(),
                    standing: None,
                    holds_roles,
                }))?;
                let p = self.state.proposal(pid);
                let risk = p.and_then(|p| p.risk);
                let fingerprint = p.and_then(|p| p.fingerprint.clone());
                if for_session
                    && standing_allowed(risk, trial.verdict.decision.approvers())
                    && let Some(fingerprint) = fingerprint
                {
                    self.record(EventData::StandingApproved(StandingApproved {
                        fingerprint,
                        target: self.cfg.target.name.clone(),
                        operator,
                        reason,
                        proposal,
                    }))?;
                }
                Ok((None, Answer::Recorded))
            }
            Op::Reject {
                proposal,
                operator,
                reason,
            } if proposal == *pid => {
                self.record(EventData::Rejected(Decided {
                    proposal,
                    operator,
                    reason,
                    standing: None,
                    holds_roles: String::new(),
                }))?;
                Ok((Some(Approval::Rejected), Answer::Recorded))
            }
            Op::Revoke {
                fingerprint,
                operator,
            } => {
                if !self
                    .state
                    .standing
                    .iter()
                    .any(|(f, _, _)| *f == fingerprint)
                {
                    return Ok((None, refused("no such standing approval".into())));
                }
                self.record(EventData::Revoked(Revoked {
                    fingerprint,
                    operator,
                }))?;
                Ok((None, Answer::Recorded))
            }
            // Approvals for other proposals are not carried over; answers
            // only answer questions.
            Op::Approve { .. } | Op::Reject { .. } => Ok((
                None,
                refused("that proposal is not the one waiting for approval".into()),
            )),
            Op::Answer { .. } => Ok((None, refused("no question is open".into()))),
        }
    }
}

pub use crate::gate::standing_allowed;

/// A decision's roles, as a list and comma-joined (for `audit verify`).
fn roles_of(d: &Decision) -> (Vec<String>, String) {
    match d {
        Decision::Approve { roles, .. } => (roles.clone(), roles.join(",")),
        _ => (Vec::new(), String::new()),
    }
}

/// Why admission holds a proposal back, for the log and the agent.
fn admission_message(a: &Admit) -> Option<String> {
    match a {
        Admit::Deny { message, .. } => Some(message.clone()),
        Admit::NeedsApprovals {
            more,
            missing_roles,
            note,
        } => {
            let roles = if missing_roles.is_empty() {
                String::new()
            } else {
                format!(
                    ", among them holders of role {}",
                    missing_roles
                        .iter()
                        .map(|r| format!("`{r}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            let mut m = format!("needs {more} more approval(s) from distinct operators{roles}");
            if let Some(n) = note {
                m.push_str("; ");
                m.push_str(n);
            }
            Some(m)
        }
        Admit::Run | Admit::DryRunSkip => None,
    }
}

/// Runs a step while listening for a cancel from the front end, which
/// cancels the statement on the server; other ops wait their turn.
async fn cancellable(
    run: impl std::future::Future<Output = StepResult>,
    canceller: &Canceller,
    ops: &mut mpsc::UnboundedReceiver<Op>,
    queued: &mut std::collections::VecDeque<Op>,
    cancelled: &mut bool,
) -> StepResult {
    tokio::pin!(run);
    let mut open = true;
    loop {
        tokio::select! {
            result = &mut run => return result,
            op = ops.recv(), if open => match op {
                Some(Op::Cancel) => {
                    *cancelled = true;
                    let _ = canceller.cancel().await;
                }
                Some(op) => queued.push_back(op),
                None => open = false,
            },
        }
    }
}

/// The policy in short, one line per rule, for a model's system prompt.
pub fn policy_brief(policy: &Policy) -> String {
    let mut out = format!("policy {}:\n", policy.id);
    for r in &policy.rules {
        out.push_str(&format!("- {}: {}", r.id, r.decision.name()));
        if let Some(m) = &r.message {
            out.push_str(&format!(" ({m})"));
        }
        out.push('\n');
    }
    out.push_str(&format!("- anything else: {}\n", policy.default.name()));
    out
}

fn bind_json(b: &Bind) -> Value {
    match b {
        Bind::Int(i) => json!(i),
        Bind::Float(f) => json!(f),
        Bind::Text(t) => json!(t),
        Bind::Bool(v) => json!(v),
        Bind::Null => Value::Null,
    }
}

/// This machine's name, for `session_started` (the OS's own answer, on
/// Linux and macOS alike; `HOSTNAME`, then `unknown`, where it has none).
fn hostname() -> String {
    let name = gethostname::gethostname()
        .to_string_lossy()
        .trim()
        .to_string();
    if !name.is_empty() {
        return name;
    }
    std::env::var("HOSTNAME")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}
