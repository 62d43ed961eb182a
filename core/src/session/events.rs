//! The session log's event types (version 1). Each is written to the audit
//! log as `{"kind": ..., "data": ...}` inside the hash-chained envelope;
//! every front end renders `SessionState = fold(events)`.
//!
//! A proposal is named by the hash of its `proposed` event, so an approval
//! names the exact statement it approves and cannot be replayed onto another.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The version of these event shapes. Version 2: every `executing` comes
/// right after the `readmitted` that let it run; approvals log the roles
/// their operator held; executions log the role they ran as.
pub const EVENTS_VERSION: u32 = 2;

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
    SessionEnded(SessionEnded),
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
    pub fn from_parts(kind: &str, data: &Value) -> Result<EventData, String> {
        serde_json::from_value(serde_json::json!({ "kind": kind, "data": data }))
            .map_err(|e| format!("event `{kind}` does not have the expected shape: {e}"))
    }

    pub fn proposal(&self) -> Option<&str> {
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
            EventData::Failed(e) => e.proposal.as_deref(),
            _ => None,
        }
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposed {
    /// The runbook step, or `None` for ad-hoc SQL.
    pub step_id: Option<String>,
    /// The SQL that will run, with positional placeholders.
    pub sql: String,
    /// Bound values, as JSON.
    pub binds: Vec<Value>,
    /// `runbook`, `agent:<provider>` or `replay`.
    pub source: String,
    /// The agent's stated reason, if any (data, not instructions).
    #[serde(default)]
    pub rationale: Option<String>,
    /// Inputs the agent gave this step, over the session's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analyzed {
    pub proposal: String,
    pub risk: String,
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
    pub proposal: String,
    /// allow, approve or deny.
    pub decision: String,
    pub approvers: u32,
    #[serde(default)]
    pub roles: Vec<String>,
    pub risk: String,
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
    pub proposal: String,
    /// allow, approve or deny (as in `gated`).
    pub decision: String,
    pub approvers: u32,
    #[serde(default)]
    pub roles: Vec<String>,
    /// `roles`, comma-joined (what `audit verify` reads).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub requires_roles: String,
    pub risk: String,
    pub rules: Vec<String>,
    pub policy: String,
    /// What admission says now: run, needs_approvals, deny or dry_run.
    pub admit: String,
    /// The verdict before this admission, e.g. `approve by 1`.
    pub previous: String,
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
    pub proposal: String,
    pub operator: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decided {
    pub proposal: String,
    pub operator: String,
    pub reason: String,
    /// Set when this approval was given by a standing approval (the same
    /// statement approved for the rest of the session): its fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standing: Option<String>,
    /// The roles the operator held (roster), comma-joined, when approving.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub holds_roles: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Executing {
    pub proposal: String,
    /// read_only or write.
    pub mode: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Executed {
    pub proposal: String,
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
    pub proposal: String,
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
    pub proposal: String,
    pub ok: bool,
    pub expect: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failed {
    pub proposal: Option<String>,
    pub kind: String,
    pub message: String,
    /// The database role the statement ran as, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
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
    pub proposal: String,
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
    pub interrupted: Vec<String>,
    /// Proposals still waiting for approval.
    pub pending: Vec<String>,
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionEnded {
    /// concluded, awaiting_approval, denied, failed, cancelled.
    pub outcome: String,
    #[serde(default)]
    pub unapproved: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_kind_and_data() {
        let e = EventData::Gated(Gated {
            proposal: "ab".into(),
            decision: "approve".into(),
            approvers: 2,
            roles: vec![],
            risk: "destructive".into(),
            rules: vec!["prod-destructive-two-person".into()],
            policy: "default".into(),
            dry_run: false,
            requires_roles: String::new(),
            message: None,
        });
        let (kind, data) = e.to_parts();
        assert_eq!(kind, "gated");
        assert_eq!(data["approvers"], 2);
        assert_eq!(EventData::from_parts(&kind, &data), Ok(e));
        assert!(EventData::from_parts("gated", &serde_json::json!({"proposal": 1})).is_err());
        assert!(EventData::from_parts("nonsense", &serde_json::json!({})).is_err());
    }
}
