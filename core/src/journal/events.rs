//! The session log's event types (version 1). Each is written to the audit
//! log as `{"kind": ..., "data": ...}` inside the hash-chained envelope;
//! every front end renders `SessionState = fold(events)`.
//!
//! A proposal is named by the hash of its `proposed` event, so an approval
//! names the exact statement it approves and cannot be replayed onto another.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::exec::ErrorKind;
pub use crate::gate::AdmitKind;
pub use crate::policy::DecisionKind;
pub use crate::sql::Risk;

/// The version of these event shapes. Version 2: every `executing` comes
/// right after the `readmitted` that let it run; approvals log the roles
/// their operator held; executions log the role they ran as. Version 3: a
/// conclusion may name the next runbook (`concluded.next`), and a session
/// may continue into it (`handed_off`).
pub const EVENTS_VERSION: u32 = 3;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum EventData {
    SessionStarted(SessionStarted),
    Proposed(Proposed),
    Analyzed(Analyzed),
    Gated(Gated),
    Approved(Decided),
    Rejected(Decided),
    /// An approval that does not count (its operator lacks a required role).
    ApprovalRefused(ApprovalRefused),
    /// Admission evaluated again right before execution.
    Readmitted(Readmitted),
    Executing(Executing),
    Executed(Executed),
    Summarized(Summarized),
    Verified(Verified),
    Failed(Failed),
    AgentError(AgentError),
    AgentUsage(AgentUsage),
    Asked(Asked),
    Answered(Answered),
    StandingApproved(StandingApproved),
    Revoked(Revoked),
    Resumed(Resumed),
    Concluded(Concluded),
    /// The session continues into the runbook its conclusion named.
    HandedOff(HandedOff),
    SessionEnded(SessionEnded),
    /// The team store could not be reached (or refused): events are kept
    /// locally and mirrored when it is back.
    StoreUnreachable(StoreUnreachable),
    /// The team store holds every event again, after it was unreachable.
    StoreCaughtUp(StoreCaughtUp),
}

impl EventData {
    /// The event's kind and data, as the audit log stores them.
    pub fn to_parts(&self) -> (String, Value) {
        match serde_json::to_value(self) {
            Ok(Value::Object(mut m)) => {
                let kind = m
                    .remove("kind")
                    .and_then(|k| k.as_str().map(str::to_string))
                    .unwrap_or_default();
                (kind, m.remove("data").unwrap_or(Value::Null))
            }
            _ => (String::new(), Value::Null),
        }
    }

    /// Reads an event back from its kind and data.
    pub fn from_parts(kind: &str, data: &Value) -> Result<EventData, ShapeError> {
        serde_json::from_value(serde_json::json!({ "kind": kind, "data": data })).map_err(
            |source| ShapeError {
                kind: kind.to_string(),
                source,
            },
        )
    }

    /// The proposal this event is about, if any (a `proposed` event's own
    /// id is its hash, which only the log knows).
    pub fn proposal(&self) -> Option<&ProposalId> {
        match self {
            EventData::Analyzed(e) => Some(&e.proposal),
            EventData::Gated(e) => Some(&e.proposal),
            EventData::Approved(e) | EventData::Rejected(e) => Some(&e.proposal),
            EventData::ApprovalRefused(e) => Some(&e.proposal),
            EventData::Readmitted(e) => Some(&e.proposal),
            EventData::StandingApproved(e) => Some(&e.proposal),
            EventData::Executing(e) => Some(&e.proposal),
            EventData::Executed(e) => Some(&e.proposal),
            EventData::Summarized(e) => Some(&e.proposal),
            EventData::Verified(e) => Some(&e.proposal),
            EventData::Failed(e) => e.proposal.as_ref(),
            _ => None,
        }
    }
}

/// A logged event whose data does not have its kind's shape (or whose kind
/// is unknown): the log reads on, the event is shown as unreadable.
#[derive(Debug, thiserror::Error)]
#[error("event `{kind}` does not have the expected shape: {source}")]
pub struct ShapeError {
    /// The event's kind as logged.
    pub kind: String,
    #[source]
    pub source: serde_json::Error,
}

/// A proposal's id: the hash of its `proposed` event (64 hex characters).
/// People see and type [`ProposalId::short`]; `ward approve` takes any
/// prefix of at least [`ProposalId::MIN_PREFIX`] characters.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProposalId(String);

impl ProposalId {
    /// The fewest characters of an id that may name a proposal.
    pub const MIN_PREFIX: usize = 8;

    pub fn new(hash: impl Into<String>) -> ProposalId {
        ProposalId(hash.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as ward shows it and `ward approve` takes it: its first 12
    /// characters.
    pub fn short(&self) -> &str {
        short(&self.0)
    }

    /// Whether `prefix` names this proposal: the whole id, or a prefix of
    /// at least [`ProposalId::MIN_PREFIX`] characters.
    pub fn is_named_by(&self, prefix: &str) -> bool {
        prefix == self.0 || (prefix.len() >= Self::MIN_PREFIX && self.0.starts_with(prefix))
    }
}

/// The first 12 characters of a hash or fingerprint, as ward shows them.
pub fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

impl fmt::Display for ProposalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for ProposalId {
    fn from(s: String) -> ProposalId {
        ProposalId(s)
    }
}

impl From<&str> for ProposalId {
    fn from(s: &str) -> ProposalId {
        ProposalId(s.to_string())
    }
}

impl PartialEq<str> for ProposalId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for ProposalId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// Who proposed a statement: the agent that was asking (its provider).
/// A word this ward does not know (a newer or older one's) is kept as it
/// was written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The offline planner (the runbook's own order of steps).
    #[default]
    Offline,
    /// A recorded transcript.
    Replay,
    /// A model behind an OpenAI-compatible API.
    #[serde(rename = "openai")]
    OpenAi,
    /// The runbook itself: a `recheck` diagnostic the runner runs again
    /// after a change, whatever the agent.
    Runbook,
    #[serde(untagged)]
    Other(String),
}

impl Source {
    /// The agent named by a provider word (`Agent::describe`'s `provider`).
    pub fn from_provider(provider: &str) -> Source {
        match provider {
            "offline" => Source::Offline,
            "replay" => Source::Replay,
            "openai" => Source::OpenAi,
            other => Source::Other(other.to_string()),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Source::Offline => "offline",
            Source::Replay => "replay",
            Source::OpenAi => "openai",
            Source::Runbook => "runbook",
            Source::Other(s) => s,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a statement runs, as `executing` logs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecMode {
    ReadOnly,
    Write,
}

impl ExecMode {
    pub fn name(self) -> &'static str {
        match self {
            ExecMode::ReadOnly => "read_only",
            ExecMode::Write => "write",
        }
    }

    /// In words for people.
    pub fn words(self) -> &'static str {
        match self {
            ExecMode::ReadOnly => "read-only",
            ExecMode::Write => "write",
        }
    }
}

impl From<crate::exec::Mode> for ExecMode {
    fn from(m: crate::exec::Mode) -> ExecMode {
        match m {
            crate::exec::Mode::ReadOnly => ExecMode::ReadOnly,
            crate::exec::Mode::Write { .. } => ExecMode::Write,
        }
    }
}

/// Why something failed, as `failed.kind` logs it: the executor's error
/// kinds, and the session's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Ward stopped while the statement ran (found by `ward resume`).
    Interrupted,
    /// The connection's role may act outside the database's privileges.
    Superuser,
    /// The agent would not conclude.
    Agent,
    /// The runbook itself does not resolve.
    Resolve,
    /// A resumed session cannot go on as proposed.
    Resume,
    #[serde(untagged)]
    Exec(ErrorKind),
}

impl FailureKind {
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Interrupted => "interrupted",
            FailureKind::Superuser => "superuser",
            FailureKind::Agent => "agent",
            FailureKind::Resolve => "resolve",
            FailureKind::Resume => "resume",
            FailureKind::Exec(k) => k.name(),
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<ErrorKind> for FailureKind {
    fn from(k: ErrorKind) -> FailureKind {
        FailureKind::Exec(k)
    }
}

/// How the session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Concluded,
    /// Concluded after a change ran, but the runbook's recheck shows the
    /// incident condition is still there.
    Persists,
    AwaitingApproval,
    Denied,
    Failed,
    Cancelled,
    /// The target could not be reached; the `failed` event before says
    /// why.
    Unreachable,
}

impl Outcome {
    /// The word the log and the JSON report use (`awaiting_approval`).
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Concluded => "concluded",
            Outcome::Persists => "persists",
            Outcome::AwaitingApproval => "awaiting_approval",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
            Outcome::Unreachable => "unreachable",
        }
    }

    /// In words for people (`awaiting approval`).
    pub fn words(self) -> &'static str {
        match self {
            Outcome::AwaitingApproval => "awaiting approval",
            Outcome::Persists => "concluded, incident persists",
            other => other.name(),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A verdict in words, as `readmitted.previous` logs it: `allow`, `deny`,
/// `approve by 2`, `approve by 2 (roles: owner, dba)`, or `none` before
/// any verdict. Stored as that text; read back into its parts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct VerdictWords {
    pub decision: Option<DecisionKind>,
    pub approvers: u32,
    pub roles: Vec<String>,
}

impl VerdictWords {
    /// A verdict; approvers and roles count only for `approve`.
    pub fn new(decision: Option<DecisionKind>, approvers: u32, roles: &[String]) -> VerdictWords {
        let approve = decision == Some(DecisionKind::Approve);
        VerdictWords {
            decision,
            approvers: if approve { approvers } else { 0 },
            roles: if approve { roles.to_vec() } else { Vec::new() },
        }
    }

    /// Reads the words back; `None` for text no ward wrote.
    pub fn parse(s: &str) -> Option<VerdictWords> {
        match s {
            "none" => return Some(VerdictWords::default()),
            "allow" => return Some(VerdictWords::new(Some(DecisionKind::Allow), 0, &[])),
            "deny" => return Some(VerdictWords::new(Some(DecisionKind::Deny), 0, &[])),
            _ => {}
        }
        let rest = s.strip_prefix("approve by ")?;
        let (n, roles) = match rest.split_once(" (roles: ") {
            Some((n, roles)) => {
                let roles: Vec<String> = roles
                    .strip_suffix(')')?
                    .split(", ")
                    .map(str::to_string)
                    .collect();
                if roles.iter().any(String::is_empty) {
                    return None;
                }
                (n, roles)
            }
            None => (rest, Vec::new()),
        };
        let approvers = n.parse().ok()?;
        let v = VerdictWords::new(Some(DecisionKind::Approve), approvers, &roles);
        // Only the exact text this writes back is accepted.
        (v.to_string() == s).then_some(v)
    }
}

impl fmt::Display for VerdictWords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.decision {
            None => f.write_str("none"),
            Some(DecisionKind::Approve) if self.roles.is_empty() => {
                write!(f, "approve by {}", self.approvers)
            }
            Some(DecisionKind::Approve) => write!(
                f,
                "approve by {} (roles: {})",
                self.approvers,
                self.roles.join(", ")
            ),
            Some(d) => f.write_str(d.name()),
        }
    }
}

impl Serialize for VerdictWords {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for VerdictWords {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<VerdictWords, D::Error> {
        let s = String::deserialize(d)?;
        VerdictWords::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("`{s}` is not a verdict in words")))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionStarted {
    pub session_id: String,
    pub operator: String,
    pub host: String,
    pub ward_version: String,
    pub runbook: String,
    pub runbook_version: u32,
    /// Target name, engine and environment; the URL without credentials.
    pub target: Value,
    pub environment: String,
    pub agent: Value,
    pub dry_run: bool,
    /// Repository commit, dirty flags and blob ids of the files used.
    pub provenance: Value,
    #[serde(default)]
    pub inputs: Value,
    #[serde(default)]
    pub allow_dirty: bool,
    /// The operator passed `--allow-superuser`: reading in prod as a role
    /// that can act outside the database's privileges is not refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_superuser: bool,
    /// [`EVENTS_VERSION`] of the ward that started the session (0: before
    /// versions were logged).
    #[serde(default)]
    pub events_version: u32,
    /// Other live sessions of the team on the same target when this one
    /// started (the team store knew), each acknowledged or only warned
    /// about. Absent when there were none (and in older logs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub concurrent: Vec<Concurrent>,
}

/// Another live session on the same target, as the store showed it when a
/// session started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Concurrent {
    pub session_id: String,
    /// The role the store authenticated for it.
    pub owner: String,
    pub runbook: String,
    pub host: String,
    /// When it started (RFC 3339).
    pub since: String,
    /// The operator acknowledged it (`--acknowledge`, or the TUI's
    /// confirmation); `false`: warned only.
    pub acknowledged: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposed {
    /// The runbook step, or `None` for ad-hoc SQL.
    pub step_id: Option<String>,
    /// The SQL that will run, with positional placeholders.
    pub sql: String,
    /// Bound values, as JSON.
    pub binds: Vec<Value>,
    /// The agent that proposed it.
    pub source: Source,
    /// The agent's stated reason, if any (data, not instructions).
    #[serde(default)]
    pub rationale: Option<String>,
    /// Inputs the agent gave this step, over the session's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analyzed {
    pub proposal: ProposalId,
    pub risk: Risk,
    pub kinds: Vec<String>,
    pub lock: Option<String>,
    pub blocks: Vec<String>,
    pub findings: Vec<String>,
    pub tables: Vec<String>,
    /// Estimated rows and bytes of the largest table touched, when looked up.
    #[serde(default)]
    pub table_size: Option<Value>,
    pub fingerprint: Option<String>,
    /// Why the class is what it is (e.g. `catalog: view public.v calls
    /// pg_terminate_backend()`), for whoever reviews the log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// What each name resolved to on the target (`catalog::Resolution`:
    /// kind, name, resolved — with the oid of anything not built in — and
    /// problem), when the catalog was consulted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub catalog: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gated {
    pub proposal: ProposalId,
    pub decision: DecisionKind,
    pub approvers: u32,
    #[serde(default)]
    pub roles: Vec<String>,
    pub risk: Risk,
    pub rules: Vec<String>,
    pub policy: String,
    /// True when this was a dry run: recorded, never executed.
    #[serde(default)]
    pub dry_run: bool,
    /// The required roles, comma-joined (what `audit verify` reads).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub requires_roles: String,
    /// Why: the deny's rules in their own words, or why the approvals
    /// asked for cannot be given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Admission again, right before execution: fresh clock, the policy and the
/// roster re-read from their files, fresh table sizes, the connection's
/// identity. Logged every time; `changed` says whether the verdict moved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Readmitted {
    pub proposal: ProposalId,
    pub decision: DecisionKind,
    pub approvers: u32,
    #[serde(default)]
    pub roles: Vec<String>,
    /// `roles`, comma-joined (what `audit verify` reads).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub requires_roles: String,
    pub risk: Risk,
    pub rules: Vec<String>,
    pub policy: String,
    /// What admission says now.
    pub admit: AdmitKind,
    /// The verdict before this admission, e.g. `approve by 1`.
    pub previous: VerdictWords,
    pub changed: bool,
    /// Why it changed (or what still holds it back), in words.
    #[serde(default)]
    pub why: String,
    #[serde(default)]
    pub table_size: Option<Value>,
}

/// An approval that does not count, and why (the role its operator lacks,
/// and the file that says so).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRefused {
    pub proposal: ProposalId,
    pub operator: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decided {
    pub proposal: ProposalId,
    pub operator: String,
    pub reason: String,
    /// Set when this approval was given by a standing approval (the same
    /// statement approved for the rest of the session): its fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standing: Option<String>,
    /// The roles the operator held when approving, comma-joined: from the
    /// roster, or with a team store from their PostgreSQL role memberships.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub holds_roles: String,
    /// Who authenticated the operator: `store` when it is the role the team
    /// store's PostgreSQL authenticated (and `holds_roles` its role
    /// memberships); absent for a claimed name (`$WARD_OPERATOR`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authenticated: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Executing {
    pub proposal: ProposalId,
    pub mode: ExecMode,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Executed {
    pub proposal: ProposalId,
    pub rows_seen: u64,
    pub rows_kept: u64,
    pub capped: bool,
    pub duration_ms: u64,
    pub sha256: String,
    /// The database role the statement ran as (`current_user`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summarized {
    pub proposal: ProposalId,
    pub summarizer: String,
    /// The exact text the model saw.
    pub summary: String,
    pub facts: Value,
    pub tokens: usize,
    pub truncated: bool,
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verified {
    pub proposal: ProposalId,
    pub ok: bool,
    pub expect: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failed {
    pub proposal: Option<ProposalId>,
    pub kind: FailureKind,
    pub message: String,
    /// The database role the statement ran as, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Why the target could not be reached (a failed connection ward could
    /// classify): what failed, the likely cause, what to check next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<crate::exec::unreachable::ConnectDiagnosis>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentError {
    pub message: String,
    /// A proposal the agent returned was refused: it used up one of the
    /// agent's turns (`ward resume` counts them to pick up a transcript
    /// where it stopped).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refused: bool,
    /// The agent is done for this session; the offline planner goes on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub handover: bool,
}

impl AgentError {
    /// Something the agent reported, or ward reported about it.
    pub fn note(message: impl Into<String>) -> AgentError {
        AgentError {
            message: message.into(),
            ..AgentError::default()
        }
    }
}

/// Tokens a model spent on one turn, and the session's running total.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total: u64,
    pub budget: Option<u64>,
    /// Of `prompt_tokens`, how many the provider served from its prompt
    /// cache. Absent (0) in logs written before it was recorded, and when
    /// the server does not report it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cached_prompt_tokens: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The agent asked the human something.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Asked {
    pub question: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answered {
    pub operator: String,
    pub text: String,
}

/// A statement approved for the rest of the session: later proposals with
/// the same fingerprint on the same target are approved by it, where the
/// policy allows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StandingApproved {
    pub fingerprint: String,
    pub target: String,
    pub operator: String,
    pub reason: String,
    /// The proposal whose approval granted it.
    pub proposal: ProposalId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revoked {
    pub fingerprint: String,
    pub operator: String,
}

/// `ward resume` picked the session up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resumed {
    pub operator: String,
    /// Proposals whose `executing` has no outcome: they are never run
    /// again; their `verify` decides.
    pub interrupted: Vec<ProposalId>,
    /// Proposals still waiting for approval.
    pub pending: Vec<ProposalId>,
    /// Flags of this resume (logged like `session_started`'s).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_dirty: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_superuser: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Concluded {
    pub text: String,
    #[serde(default)]
    pub recommendation: Option<String>,
    /// The runbook the matching conclusion of the contract hands off to,
    /// with its inputs filled and checked. Absent in logs before version 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<Next>,
}

/// The next runbook a conclusion names: inputs filled from the facts and
/// typed by that runbook's declarations. A value that does not pass is
/// dropped with its reason, never passed on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Next {
    pub runbook: String,
    #[serde(default)]
    pub inputs: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<DroppedInput>,
}

/// An input of a hand-off that was not passed on, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedInput {
    pub name: String,
    pub reason: String,
}

/// The session goes on with runbook `to`: what follows belongs to it
/// (its steps, facts and conclusion), until the next hand-off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandedOff {
    pub from: String,
    pub to: String,
    pub runbook_version: u32,
    /// The inputs `to` starts with (checked against its declarations).
    pub inputs: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<DroppedInput>,
    /// Hand-offs in this session so far, this one included (1 for the first).
    pub depth: u32,
    /// Who continued: the operator who pressed the key, or `--follow`.
    pub by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionEnded {
    pub outcome: Outcome,
    #[serde(default)]
    pub unapproved: Vec<ProposalId>,
    /// Why the session did not continue into the runbook its conclusion
    /// named, when it was asked to follow (depth reached, a cycle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_followed: Option<String>,
}

/// The store stopped taking this session's events: it is unreachable
/// (mirroring retries and catches up), or it refused or diverged
/// (`stopped`: mirroring ends; `ward store sync` and `ward audit verify`
/// say more).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreUnreachable {
    /// The store's error, without credentials.
    pub error: String,
    /// Events logged locally but not yet in the store.
    pub behind: u64,
    /// Mirroring ended for this session (a refusal or a divergence, not
    /// an outage).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
}

/// The store caught up: `events` were appended after the outage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreCaughtUp {
    pub events: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{self, Verification, canonical_json};

    /// The logs ward wrote before its events were typed (`fixtures/logs`).
    fn old_logs() -> Vec<std::path::PathBuf> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/logs");
        let mut logs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        logs.sort();
        assert!(logs.len() >= 5, "{logs:?}");
        logs
    }

    #[test]
    fn old_logs_parse_and_reserialize_to_the_same_bytes() {
        let mut kinds = std::collections::BTreeSet::new();
        for log in old_logs() {
            let (events, verdict) = audit::read_events(&log).unwrap();
            assert!(
                matches!(verdict, Verification::Ok { .. }),
                "{log:?}: {verdict:?}"
            );
            for e in &events {
                let typed = EventData::from_parts(&e.kind, &e.data)
                    .unwrap_or_else(|err| panic!("{log:?} seq {}: {err}", e.seq));
                let (kind, data) = typed.to_parts();
                assert_eq!(kind, e.kind, "{log:?} seq {}", e.seq);
                assert_eq!(
                    canonical_json(&data),
                    canonical_json(&e.data),
                    "{log:?} seq {}",
                    e.seq
                );
                kinds.insert(kind);
            }
        }
        // Every kind of event is among them.
        assert_eq!(kinds.len(), 22, "{kinds:?}");
    }

    #[test]
    fn old_words_read_as_their_enums() {
        let log = old_logs()
            .into_iter()
            .find(|p| p.ends_with("rare-events.jsonl"))
            .unwrap();
        let (events, _) = audit::read_events(&log).unwrap();
        let typed: Vec<EventData> = events
            .iter()
            .map(|e| EventData::from_parts(&e.kind, &e.data).unwrap())
            .collect();
        let previous: Vec<String> = typed
            .iter()
            .filter_map(|e| match e {
                EventData::Readmitted(r) => Some(r.previous.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(
            previous,
            [
                "allow",
                "approve by 2 (roles: owner)",
                "approve by 2 (roles: owner)",
                "none",
                "approve by 1"
            ]
        );
        let failures: Vec<FailureKind> = typed
            .iter()
            .filter_map(|e| match e {
                EventData::Failed(f) => Some(f.kind),
                _ => None,
            })
            .collect();
        assert_eq!(
            failures,
            [
                FailureKind::Exec(ErrorKind::StatementTimeout),
                FailureKind::Interrupted,
                FailureKind::Superuser
            ]
        );
        let sources: Vec<&Source> = typed
            .iter()
            .filter_map(|e| match e {
                EventData::Proposed(p) => Some(&p.source),
                _ => None,
            })
            .collect();
        assert_eq!(
            sources,
            [
                &Source::OpenAi,
                &Source::OpenAi,
                &Source::Offline,
                &Source::Replay,
                &Source::Offline
            ]
        );
    }

    #[test]
    fn words_no_ward_wrote_are_refused_or_kept() {
        assert_eq!(VerdictWords::parse("approve by two"), None);
        assert_eq!(VerdictWords::parse("approve by 1 (roles: )"), None);
        assert_eq!(
            serde_json::from_value::<Source>(serde_json::json!("agent:anthropic")).unwrap(),
            Source::Other("agent:anthropic".into())
        );
        assert_eq!(
            serde_json::to_value(Source::Other("agent:anthropic".into())).unwrap(),
            serde_json::json!("agent:anthropic")
        );
        assert!(serde_json::from_value::<FailureKind>(serde_json::json!("exploded")).is_err());
    }

    #[test]
    fn the_persists_outcome_and_the_runbook_source_are_words_of_their_own() {
        let ended = EventData::SessionEnded(SessionEnded {
            outcome: Outcome::Persists,
            unapproved: vec![],
            not_followed: None,
        });
        let (kind, data) = ended.to_parts();
        assert_eq!(
            data,
            serde_json::json!({"outcome": "persists", "unapproved": []})
        );
        assert_eq!(EventData::from_parts(&kind, &data).unwrap(), ended);
        assert_eq!(Outcome::Persists.words(), "concluded, incident persists");
        assert_eq!(
            serde_json::from_value::<Source>(serde_json::json!("runbook")).unwrap(),
            Source::Runbook
        );
        assert_eq!(Source::Runbook.to_string(), "runbook");
    }

    #[test]
    fn a_proposal_is_named_by_its_id_or_a_long_enough_prefix() {
        let id = ProposalId::new("0123456789abcdef");
        assert_eq!(id.short(), "0123456789ab");
        assert!(id.is_named_by("01234567"));
        assert!(id.is_named_by("0123456789abcdef"));
        assert!(!id.is_named_by("0123456"));
        assert!(!id.is_named_by("1123456789"));
    }

    #[test]
    fn events_round_trip_through_kind_and_data() {
        let e = EventData::Gated(Gated {
            proposal: "ab".into(),
            decision: DecisionKind::Approve,
            approvers: 2,
            roles: vec![],
            risk: Risk::Destructive,
            rules: vec!["prod-destructive-two-person".into()],
            policy: "default".into(),
            dry_run: false,
            requires_roles: String::new(),
            message: None,
        });
        let (kind, data) = e.to_parts();
        assert_eq!(kind, "gated");
        assert_eq!(data["approvers"], 2);
        assert_eq!(EventData::from_parts(&kind, &data).ok(), Some(e));
        let bad = EventData::from_parts("gated", &serde_json::json!({"proposal": 1}));
        assert!(matches!(&bad, Err(ShapeError { kind, .. }) if kind == "gated"));
        let unknown =
            EventData::from_parts("nonsense", &serde_json::json!({})).map_err(|e| e.to_string());
        assert!(
            unknown.as_ref().is_err_and(
                |m| m.starts_with("event `nonsense` does not have the expected shape: ")
            ),
            "{unknown:?}"
        );
    }
}
