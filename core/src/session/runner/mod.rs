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
//!
//! Here: the loop (ask, resolve, gate, run). Beside it: `approvals`
//! (admission and waiting for approvals), `verify`, `resume` and `prompt`
//! (the policy as a model is told it). Statements go to a
//! [`StatementBackend`](super::backend::StatementBackend), a database or
//! recorded evidence, without the loop asking which; other operators'
//! requests arrive through [`super::inbox`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::sync::mpsc;

mod approvals;
mod mirror;
mod prompt;
mod remote;
mod resume;
mod verify;

pub use approvals::standing_allowed;
use approvals::{admission_message, roles_of};
pub use prompt::policy_brief;
pub use resume::resume;

use super::backend::{Database, RecordedEvidence, StatementBackend};
use super::inbox::Answer;
use crate::agent::{Agent, AgentView, Budget, Proposal, Turn};
use crate::audit::{AuditError, AuditWriter, Event};
use crate::contract::{Adhoc, Contract, StepKind};
use crate::evidence::EvidenceConfig;
use crate::exec::step::{self, Origin, Resolved, StepResult};
use crate::exec::{Bind, Canceller, Executor, Limits, Mode, Target};
use crate::gate::{self, Admit};
use crate::journal::events::*;
use crate::journal::state::{SessionState, Status};
use crate::policy::operators::Operators;
use crate::policy::{Policy, TableSize};
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
    /// Continue into the runbook the session's conclusion names (the TUI's
    /// key), as `operator`.
    Follow { operator: String },
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
    /// The team's shared store: every event is mirrored to it after the
    /// local fsync, and other hosts' requests arrive through it. `None`:
    /// local files only.
    pub store: Option<crate::store::StoreLink>,
    /// Other live sessions of the team on the same target when this one
    /// starts (logged in `session_started`).
    pub concurrent: Vec<Concurrent>,
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
    /// The repository's runbooks: a conclusion's `next` is typed by the
    /// runbook it names, and a hand-off continues into it.
    pub runbooks: Vec<Contract>,
    /// Whether the session continues into the runbook its conclusion
    /// names.
    pub follow: Follow,
}

/// Whether a session continues into the runbook its conclusion names
/// (`next`), and for how many hand-offs at most.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Follow {
    /// The report names the next runbook; the session ends.
    #[default]
    Never,
    /// Continue at once (`ward run --follow`).
    Auto { depth: u32 },
    /// Wait for a front end's [`Op::Follow`] (the TUI's key); any other
    /// way of leaving ends the session.
    Ask { depth: u32 },
}

/// Default of `--follow-depth`: hand-offs one session makes at most.
pub const FOLLOW_DEPTH: u32 = 3;

pub use super::backend::{Recorded, RecordedSize, RecordedStep};

/// Default of [`RunConfig::max_proposals`].
pub const MAX_PROPOSALS: usize = 200;

pub use super::inbox::{OpRequest, RequestOp};

pub use super::events::Outcome;

pub use mirror::{STORE_CHECK_WAIT, STORE_SEAL_WAIT};

/// Why a session stopped before it could be sealed: its log could not be
/// written or resumed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Creating or appending to the session log failed.
    #[error("cannot write the session log {path}: {source}")]
    Log {
        path: PathBuf,
        #[source]
        source: AuditError,
    },
    /// The log to resume could not be reopened.
    #[error("cannot resume {path}: {source}")]
    Resume {
        path: PathBuf,
        #[source]
        source: AuditError,
    },
    /// The log to resume belongs to another session.
    #[error("cannot resume {path}: the log belongs to session {found:?}, not {expected:?}")]
    ForeignLog {
        path: PathBuf,
        found: String,
        expected: String,
    },
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
    /// The connected server's major version, once known (a runbook handed
    /// off to leaves out the steps it lacks, like the first).
    server_major: Option<u32>,
    /// Why the session did not follow its conclusion's `next`.
    not_followed: Option<String>,
    /// The team store's side: identities it authenticated, requests.
    remote: remote::Remote,
    /// The team store's mirror of this session, and what the log last
    /// said about it.
    mirror: Option<crate::store::mirror::Mirror>,
    store_said: mirror::StoreSaid,
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
    let log = AuditWriter::create(&cfg.log_path).map_err(|source| RunError::Log {
        path: cfg.log_path.clone(),
        source,
    })?;
    let mut r = Runner::new(cfg, log, SessionState::default(), agent, ops, events);
    r.store_start().await;
    let refused = r.start_mirror(&[]).await;
    r.start()?;
    r.store_refused(refused)?;
    let outcome = match r.connect().await? {
        Ok(mut backend) => r.drive_and_follow(backend.as_mut()).await?,
        Err(outcome) => outcome,
    };
    r.seal(outcome).await
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
        // The outcome is the current runbook's: an earlier one's denial
        // (before a hand-off) does not count.
        let denied_any = state
            .current()
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
            server_major: None,
            not_followed: None,
            remote: remote::Remote::default(),
            mirror: None,
            store_said: mirror::StoreSaid::Ok,
        }
    }

    /// Appends (and fsyncs) an event, folds it, tells the front end and
    /// hands it to the store's mirror; first logs any news of the store.
    fn record(&mut self, e: EventData) -> Result<Event, RunError> {
        self.store_news()?;
        self.append(e)
    }

    fn append(&mut self, e: EventData) -> Result<Event, RunError> {
        let (kind, data) = e.to_parts();
        let event = self
            .log
            .append(&kind, data)
            .map_err(|source| RunError::Log {
                path: self.cfg.log_path.clone(),
                source,
            })?;
        self.state.apply(event.seq, &event.ts, &event.hash, &e);
        if let Some(tx) = &self.events {
            let _ = tx.send(event.clone());
        }
        if let Some(m) = &self.mirror {
            m.push(event.clone());
        }
        Ok(event)
    }

    /// Seals the log. A proposal still waiting for approval is named as
    /// unapproved: an approval is never inferred.
    /// The store gets a short, bounded time to catch up first; what it
    /// still lacks is logged (and `ward store sync` pushes it later).
    async fn seal(mut self, outcome: Outcome) -> Result<(SessionState, Outcome), RunError> {
        let store_up = self.store_settle().await;
        let unapproved: Vec<ProposalId> = self
            .state
            .awaiting_approval()
            .iter()
            .map(|p| p.id.clone())
            .collect();
        let not_followed = self.not_followed.take();
        self.record(EventData::SessionEnded(SessionEnded {
            outcome,
            unapproved,
            not_followed,
        }))?;
        self.store_flush(store_up).await;
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
        self.store_close(outcome).await;
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
            concurrent: self.cfg.concurrent.clone(),
        };
        self.record(EventData::SessionStarted(started))?;
        Ok(())
    }

    /// The database connection, or the recorded evidence; after logging
    /// why it failed, the outcome to end with instead (`unreachable` for a
    /// diagnosed connection failure).
    async fn connect(&mut self) -> Result<Result<Box<dyn StatementBackend>, Outcome>, RunError> {
        if let Some(rec) = self.cfg.recorded.clone() {
            return Ok(Ok(Box::new(RecordedEvidence::new(rec))));
        }
        let ex = match Executor::connect(&self.cfg.target, &self.cfg.session_id, self.cfg.dry_run)
            .await
        {
            Ok(ex) => ex,
            Err(e) => {
                let diagnosis = e.diagnosis().cloned();
                // A target ward could not reach ends `unreachable`, with
                // the diagnosis in the log; any other failure (a URL that
                // does not parse, a server that will not keep ward's
                // settings) is a plain failure.
                let outcome = if diagnosis.is_some() {
                    Outcome::Unreachable
                } else {
                    Outcome::Failed
                };
                self.record(EventData::Failed(Failed {
                    proposal: None,
                    kind: e.kind().into(),
                    message: e.to_string(),
                    role: None,
                    diagnosis,
                }))?;
                return Ok(Err(outcome));
            }
        };
        match gate::admit_connection(ex.identity(), &self.cfg.target, self.cfg.allow_superuser) {
            Ok(unsafe_reads) => self.connected_as_superuser = unsafe_reads,
            Err(refused) => {
                self.record(EventData::Failed(Failed {
                    proposal: None,
                    kind: FailureKind::Superuser,
                    message: refused.to_string(),
                    role: None,
                    diagnosis: None,
                }))?;
                return Ok(Err(Outcome::Failed));
            }
        }
        // Steps resolve (`@extschema:NAME@`) and analyze as this server
        // reads SQL.
        self.cfg.analyzer.options.server = ex.server_facts();
        // Steps this server's version lacks are never proposed, by the
        // planner or an agent; the conclusion names them.
        if let Some(identity) = ex.identity() {
            let major = crate::contract::versions::major_of(identity.server_version_num);
            self.server_major = Some(major);
            if !self.cfg.contract.left_out.iter().any(|l| l.for_version) {
                self.cfg.contract.keep_steps_for(major);
            }
        }
        Ok(Ok(Box::new(Database(Box::new(ex)))))
    }

    /// The agent loop: ask, check, gate, (approve,) run, until a conclusion
    /// or a stop.
    async fn drive(&mut self, backend: &mut dyn StatementBackend) -> Result<Outcome, RunError> {
        loop {
            if self.poll_cancel() {
                return Ok(Outcome::Cancelled);
            }
            let made = self.state.current().proposals.len();
            if made >= self.cfg.max_proposals {
                self.record(EventData::Failed(Failed {
                    proposal: None,
                    kind: FailureKind::Agent,
                    message: format!(
                        "the agent made {made} proposals without concluding; stopping"
                    ),
                    role: None,
                    diagnosis: None,
                }))?;
                return Ok(Outcome::Failed);
            }
            let (proposal, source) = self.ask_agent().await?;
            // A cancel that came while the agent thought (or the client
            // that relays it went away) wins over what it proposed.
            if self.poll_cancel() {
                return Ok(Outcome::Cancelled);
            }
            let end = match proposal {
                Proposal::Conclude {
                    diagnosis,
                    recommendation,
                } => {
                    // A conclusion after a change is drawn from facts
                    // gathered after it: the runbook's headline
                    // diagnostics run again first, then the agent is asked
                    // again.
                    let due = crate::agent::outcome::rechecks_due(
                        &self.cfg.contract,
                        &self.state.current(),
                    );
                    if !due.is_empty() {
                        if let StepEnd::Stop(o) = self.recheck(backend, &due).await? {
                            return Ok(o);
                        }
                        continue;
                    }
                    let inputs = self.inputs_value();
                    let next = super::handoff::next_of(
                        &self.cfg.contract,
                        &self.state.current(),
                        &inputs,
                        &self.cfg.runbooks,
                    );
                    self.record(EventData::Concluded(Concluded {
                        text: diagnosis,
                        recommendation,
                        next,
                    }))?;
                    let cleared = crate::agent::outcome::incident_cleared(
                        &self.cfg.contract,
                        &self.state.current(),
                        &inputs,
                    );
                    // Denial is an answer, but the outcome still says it.
                    return Ok(if self.denied_any {
                        Outcome::Denied
                    } else if cleared == Some(false) {
                        Outcome::Persists
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

    /// Drives the runbook to its end, then, while its conclusion names a
    /// next runbook and the session may follow, continues into it in the
    /// same log. The outcome is the last runbook's.
    async fn drive_and_follow(
        &mut self,
        backend: &mut dyn StatementBackend,
    ) -> Result<Outcome, RunError> {
        loop {
            let outcome = self.drive(backend).await?;
            let concluded = matches!(
                outcome,
                Outcome::Concluded | Outcome::Persists | Outcome::Denied
            );
            if !concluded || !self.hand_off().await? {
                return Ok(outcome);
            }
        }
    }

    /// Continues into the conclusion's `next` where the session may:
    /// following is on, the depth bound is not reached, the runbook has not
    /// run in this session yet (a cycle stops) and it loads. Logs
    /// `handed_off` and makes it the session's runbook; `false` when the
    /// session ends here (why, for `session_ended`).
    async fn hand_off(&mut self) -> Result<bool, RunError> {
        let Some(next) = self.state.next.clone() else {
            return Ok(false);
        };
        let depth = match self.cfg.follow {
            Follow::Never => return Ok(false),
            Follow::Auto { depth } | Follow::Ask { depth } => depth,
        };
        let done = u32::try_from(self.state.handoffs.len()).unwrap_or(u32::MAX);
        let refusal = if done >= depth {
            Some(format!(
                "{} hand-off(s) already in this session, the most --follow-depth allows ({depth}); run it on its own",
                done
            ))
        } else if self.state.runbooks_run().contains(&next.runbook.as_str()) {
            Some(format!(
                "{} already ran in this session (runbooks so far: {}); following it again would go round in a cycle",
                next.runbook,
                self.state.runbooks_run().join(" -> ")
            ))
        } else if !self.cfg.runbooks.iter().any(|c| c.id() == next.runbook) {
            Some(format!(
                "runbook {} does not load; `ward check` says why",
                next.runbook
            ))
        } else {
            None
        };
        if let Some(why) = refusal {
            self.not_followed = Some(format!("{}: {why}", next.runbook));
            return Ok(false);
        }
        let by = match self.cfg.follow {
            Follow::Ask { .. } => match self.wait_for_follow().await {
                Some(operator) => operator,
                None => return Ok(false),
            },
            _ => "--follow".to_string(),
        };
        let Some(mut contract) = self
            .cfg
            .runbooks
            .iter()
            .find(|c| c.id() == next.runbook)
            .cloned()
        else {
            return Ok(false);
        };
        if let Some(major) = self.server_major {
            contract.keep_steps_for(major);
        }
        self.record(EventData::HandedOff(HandedOff {
            from: self.cfg.contract.id().to_string(),
            to: contract.id().to_string(),
            runbook_version: contract.spec.version,
            inputs: next.inputs.clone(),
            dropped: next.dropped.clone(),
            depth: done + 1,
            by,
        }))?;
        self.cfg.contract = contract;
        self.cfg.inputs = next.inputs;
        self.agent.handed_off();
        self.denied_any = false;
        self.denials_in_a_row = 0;
        self.agent_errors_in_a_row = 0;
        Ok(true)
    }

    /// Waits for a front end to continue into the next runbook: the
    /// operator who did, or `None` when it leaves, cancels or goes away.
    async fn wait_for_follow(&mut self) -> Option<String> {
        loop {
            let op = match self.queued.pop_front() {
                Some(op) => op,
                None => self.ops.recv().await?,
            };
            match op {
                Op::Follow { operator } => return Some(operator),
                Op::Leave => return None,
                Op::Cancel => {
                    self.cancelled = true;
                    return None;
                }
                _ => {}
            }
        }
    }

    /// Runs the runbook's `recheck` diagnostics again, each through the
    /// gate like any proposal (source `runbook`), with the inputs its first
    /// run was proposed with.
    async fn recheck(
        &mut self,
        backend: &mut dyn StatementBackend,
        due: &[String],
    ) -> Result<StepEnd, RunError> {
        for id in due {
            let inputs = self
                .state
                .current()
                .proposals
                .iter()
                .find(|p| p.step_id.as_deref() == Some(id.as_str()))
                .map(|p| p.inputs.clone())
                .unwrap_or_default();
            let rationale = format!(
                "recheck after the change: {id} runs again so the conclusion is drawn from the state now"
            );
            let end = self
                .step(backend, id, inputs, Some(rationale), &Source::Runbook)
                .await?;
            if let StepEnd::Stop(o) = end {
                return Ok(StepEnd::Stop(o));
            }
        }
        Ok(StepEnd::Continue)
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
            let scoped = self.state.current();
            let view = AgentView {
                contract: &self.cfg.contract,
                state: &scoped,
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
            state: &self.state.current(),
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
            cached_prompt_tokens: usage.cached_prompt_tokens,
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
        if self.agent_errors_in_a_row >= 5
            && !self.state.agent_handed_over
            && self.agent.may_hand_over()
        {
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
            // Other hosts see the question and may answer it through the store.
            self.mirror_now().await;
            let store = self.cfg.store.is_some();
            // Without a front end, the store may still answer.
            let mut closed = false;
            loop {
                let op = match self.queued.pop_front() {
                    Some(op) => op,
                    None => {
                        let wake = self.remote.wake.clone();
                        let at = self.remote.next_poll;
                        tokio::select! {
                            op = self.ops.recv(), if !closed => match op {
                                Some(op) => op,
                                None if store => {
                                    closed = true;
                                    continue;
                                }
                                None => break,
                            },
                            () = Runner::store_due(wake, at, store) => {
                                self.store_news()?;
                                if let Some(end) = self.take_store_answer().await? {
                                    return Ok(end);
                                }
                                continue;
                            }
                        }
                    }
                };
                let op = self.authenticate_op(op).await;
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
        if let Some(left) = self.cfg.contract.left_out.iter().find(|l| l.step == id) {
            return self.agent_mistake(format!(
                "proposal refused: step `{id}` is left out on this {}: {}",
                if left.for_version { "server" } else { "target" },
                left.why
            ));
        }
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
                if matches!(source, Source::Offline | Source::Runbook) {
                    // The runbook itself cannot be resolved: a session error.
                    self.record(EventData::Failed(Failed {
                        proposal: None,
                        kind: FailureKind::Resolve,
                        message: e.to_string(),
                        role: None,
                        diagnosis: None,
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
                max_rows: Some(crate::exec::ADHOC_MAX_ROWS),
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
                Err(e) => r
                    .analysis
                    .raise(Risk::Unknown, &format!("the catalog lookup failed: {e}")),
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
                diagnosis: None,
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
