//! The safety invariants of the session protocol, checked one event at a time.
//!
//! The same checker runs in the verifier (a violation means the log was
//! tampered with, or the engine misbehaved) and in the writer (which refuses
//! to record an event that would break an invariant, so the action that event
//! announces never happens). State is per proposal and small; it never holds
//! event payloads.
//!
//! The checker reads an event through [`Facts`]: its kind, its hash and the
//! few members of `data` the invariants look at. The writer takes them from
//! an `Event`; the verifier takes them straight from a line's bytes, so it
//! never has to build the whole `data` of an event.
//!
//! This checker must never trust anything but earlier events of the same log.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::Event;
use super::canonical::Scalar;

/// Names of the invariants, used as the start of every violation reason so a
/// reader (and a test) can tell which one broke.
pub(crate) mod name {
    pub const FIRST_EVENT: &str = "first event must be session_started";
    pub const AFTER_SEAL: &str = "content after the session_ended seal";
    pub const UNKNOWN_PROPOSAL: &str = "names an unknown proposal";
    pub const MALFORMED: &str = "malformed event data";
    pub const REGATED: &str = "proposal gated twice";
    pub const NOT_GATED: &str = "execution without gate";
    pub const AFTER_DENY: &str = "execution after deny";
    pub const APPROVALS: &str = "execution without the required approvals";
    pub const AFTER_REJECT: &str = "execution after rejection";
    pub const WRITE_ON_READ_ONLY: &str = "write execution after a read_only gate";
    pub const EXECUTED_WITHOUT_EXECUTING: &str = "executed without executing";
    pub const NOT_READMITTED: &str =
        "execution without an admission right before it that allowed it";
    pub const ROLES: &str = "execution without approvers holding the required roles";
}

/// A broken invariant: which one, and the specifics.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.invariant, self.detail)
    }
}

fn violation(invariant: &'static str, detail: impl Into<String>) -> Violation {
    Violation {
        invariant,
        detail: detail.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Allow,
    Approve,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Gate {
    decision: Decision,
    approvers: u64,
    risk_read_only: bool,
    /// Roles the approvers must hold between them.
    roles: Vec<String>,
}

#[derive(Debug, Default)]
struct Proposal {
    /// The latest admission: `gated`, then each `readmitted`.
    gate: Option<Gate>,
    /// Each approving operator and the roles they held, as logged.
    approved_by: BTreeMap<String, Vec<String>>,
    rejected: bool,
    executing: u64,
    executed: u64,
}

/// The invariant state after a prefix of the log.
#[derive(Debug, Default)]
pub(crate) struct Checker {
    events: u64,
    sealed: bool,
    proposals: HashMap<String, Proposal>,
    /// `events_version` of `session_started`: from 2 on, every `executing`
    /// must come right after a `readmitted` of its proposal that runs it.
    version: u64,
    /// The previous event was `readmitted` for this proposal, and said run.
    readmitted: Option<(String, bool)>,
}

const RISKS: [&str; 6] = [
    "read_only",
    "write",
    "schema",
    "destructive",
    "privilege",
    "unknown",
];

/// The members of `data` the invariants read. Nothing else in `data` can
/// change a verdict of this checker.
const READ: [&str; 10] = [
    "proposal",
    "operator",
    "mode",
    "decision",
    "approvers",
    "risk",
    "admit",
    "requires_roles",
    "holds_roles",
    "events_version",
];

/// A member of `data`, as far as the invariants look at it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Field<'a> {
    Null,
    Str(Cow<'a, str>),
    /// What `Value::as_u64` accepts.
    UInt(u64),
    /// Anything else: a boolean, a negative or float number, an array or an
    /// object.
    Other,
}

impl<'a> Field<'a> {
    fn of_value(v: &'a Value) -> Field<'a> {
        match v {
            Value::Null => Field::Null,
            Value::String(s) => Field::Str(Cow::Borrowed(s)),
            Value::Number(n) => n.as_u64().map_or(Field::Other, Field::UInt),
            _ => Field::Other,
        }
    }

    /// From a scanned canonical value; decodes a string only here, for the
    /// few members that are read.
    pub(crate) fn of_scalar(v: Scalar<'a>) -> Field<'a> {
        match v {
            Scalar::Null => Field::Null,
            Scalar::Str(s) => Field::Str(s.text()),
            Scalar::UInt(n) => Field::UInt(n),
            Scalar::Other => Field::Other,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Field::Str(s) => Some(s),
            _ => None,
        }
    }

    fn as_u64(&self) -> Option<u64> {
        match self {
            Field::UInt(n) => Some(*n),
            _ => None,
        }
    }
}

/// The members of `data` named in [`READ`], each `None` when absent (or
/// when `data` is not an object).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Data<'a>([Option<Field<'a>>; READ.len()]);

impl<'a> Data<'a> {
    fn of_value(data: &'a Value) -> Data<'a> {
        let mut out = Data::default();
        if let Some(map) = data.as_object() {
            for (slot, key) in out.0.iter_mut().zip(READ) {
                *slot = map.get(key).map(Field::of_value);
            }
        }
        out
    }

    /// Where the member `key` goes, if it is one the invariants read.
    pub(crate) fn slot(&mut self, key: &str) -> Option<&mut Option<Field<'a>>> {
        let i = READ.iter().position(|k| *k == key)?;
        self.0.get_mut(i)
    }

    fn get(&self, key: &str) -> Option<&Field<'a>> {
        let i = READ.iter().position(|k| *k == key)?;
        self.0.get(i)?.as_ref()
    }
}

/// What the checker reads from one event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Facts<'a> {
    pub kind: &'a str,
    pub hash: &'a str,
    pub data: Data<'a>,
}

impl<'a> Facts<'a> {
    pub(crate) fn of_event(ev: &'a Event) -> Facts<'a> {
        Facts {
            kind: &ev.kind,
            hash: &ev.hash,
            data: Data::of_value(&ev.data),
        }
    }

    fn field(&self, key: &str) -> Option<&Field<'a>> {
        self.data.get(key)
    }

    fn str_field(&self, key: &str) -> Result<&str, Violation> {
        self.field(key).and_then(Field::as_str).ok_or_else(|| {
            violation(
                name::MALFORMED,
                format!("{} needs a string \"{key}\"", self.kind),
            )
        })
    }
}

impl Checker {
    pub(crate) fn is_sealed(&self) -> bool {
        self.sealed
    }

    fn proposal<'a>(&'a self, ev: &'a Facts<'_>) -> Result<(&'a str, &'a Proposal), Violation> {
        let id = ev.str_field("proposal")?;
        match self.proposals.get(id) {
            Some(p) => Ok((id, p)),
            None => Err(violation(
                name::UNKNOWN_PROPOSAL,
                format!("{} names proposal {id}, which was never proposed", ev.kind),
            )),
        }
    }

    /// Checks `ev` against everything before it, without changing state.
    pub(crate) fn check(&self, ev: &Event) -> Result<(), Violation> {
        self.check_facts(&Facts::of_event(ev))
    }

    /// Records `ev`, which `check` accepted.
    pub(crate) fn apply(&mut self, ev: &Event) {
        self.apply_facts(&Facts::of_event(ev));
    }

    /// `check`, on what the checker reads from an event.
    pub(crate) fn check_facts(&self, ev: &Facts<'_>) -> Result<(), Violation> {
        if self.sealed {
            return Err(violation(
                name::AFTER_SEAL,
                format!("{} follows it", ev.kind),
            ));
        }
        let first = self.events == 0;
        if first != (ev.kind == "session_started") {
            return Err(violation(
                name::FIRST_EVENT,
                if first {
                    format!("found {}", ev.kind)
                } else {
                    "session_started may only appear at seq 0".to_string()
                },
            ));
        }
        match ev.kind {
            "gated" => {
                let (id, p) = self.proposal(ev)?;
                if p.gate.is_some() {
                    return Err(violation(name::REGATED, format!("proposal {id}")));
                }
                parse_gate(ev).map(|_| ())
            }
            "readmitted" => {
                let (id, p) = self.proposal(ev)?;
                if p.gate.is_none() {
                    return Err(violation(
                        name::NOT_GATED,
                        format!("proposal {id} is readmitted but was never gated"),
                    ));
                }
                match ev.str_field("admit")? {
                    "run" | "needs_approvals" | "deny" | "dry_run" => {}
                    other => {
                        return Err(violation(
                            name::MALFORMED,
                            format!("unknown admit {other:?}"),
                        ));
                    }
                }
                parse_gate(ev).map(|_| ())
            }
            "approved" | "rejected" | "approval_refused" => {
                self.proposal(ev)?;
                let op = ev.str_field("operator")?;
                if op.is_empty() {
                    return Err(violation(
                        name::MALFORMED,
                        format!("{} by no operator", ev.kind),
                    ));
                }
                Ok(())
            }
            "executing" => self.check_executing(ev),
            "executed" => {
                let (id, p) = self.proposal(ev)?;
                if p.executed >= p.executing {
                    return Err(violation(
                        name::EXECUTED_WITHOUT_EXECUTING,
                        format!("proposal {id} has no open executing"),
                    ));
                }
                Ok(())
            }
            "failed" => match ev.field("proposal") {
                None | Some(Field::Null) => Ok(()),
                Some(_) => self.proposal(ev).map(|_| ()),
            },
            _ => Ok(()),
        }
    }

    fn check_executing(&self, ev: &Facts<'_>) -> Result<(), Violation> {
        let (id, p) = self.proposal(ev)?;
        let write = match ev.str_field("mode")? {
            "read_only" => false,
            "write" => true,
            other => {
                return Err(violation(
                    name::MALFORMED,
                    format!("unknown mode {other:?}"),
                ));
            }
        };
        let Some(gate) = &p.gate else {
            return Err(violation(name::NOT_GATED, format!("proposal {id}")));
        };
        if self.version >= 2
            && !self
                .readmitted
                .as_ref()
                .is_some_and(|(rid, run)| rid == id && *run)
        {
            return Err(violation(name::NOT_READMITTED, format!("proposal {id}")));
        }
        match gate.decision {
            Decision::Deny => {
                return Err(violation(name::AFTER_DENY, format!("proposal {id}")));
            }
            Decision::Approve => {
                if p.rejected {
                    return Err(violation(name::AFTER_REJECT, format!("proposal {id}")));
                }
                let have = p.approved_by.len() as u64;
                if have < gate.approvers {
                    return Err(violation(
                        name::APPROVALS,
                        format!(
                            "proposal {id} has {have} of {} distinct approvals",
                            gate.approvers
                        ),
                    ));
                }
                if let Some(role) = gate
                    .roles
                    .iter()
                    .find(|r| !p.approved_by.values().any(|held| held.contains(r)))
                {
                    return Err(violation(
                        name::ROLES,
                        format!("proposal {id}: no approver held role {role:?}"),
                    ));
                }
            }
            Decision::Allow => {}
        }
        if write && gate.risk_read_only {
            return Err(violation(
                name::WRITE_ON_READ_ONLY,
                format!("proposal {id}"),
            ));
        }
        Ok(())
    }

    /// `apply`, on what the checker reads from an event.
    pub(crate) fn apply_facts(&mut self, ev: &Facts<'_>) {
        self.events += 1;
        let id = ev.field("proposal").and_then(Field::as_str);
        self.readmitted = match (ev.kind, id) {
            ("readmitted", Some(id)) => Some((
                id.to_string(),
                ev.field("admit").and_then(Field::as_str) == Some("run"),
            )),
            _ => None,
        };
        match (ev.kind, id) {
            ("session_started", _) => {
                self.version = ev
                    .field("events_version")
                    .and_then(Field::as_u64)
                    .unwrap_or(0);
            }
            ("session_ended", _) => self.sealed = true,
            ("proposed", _) => {
                self.proposals
                    .insert(ev.hash.to_string(), Proposal::default());
            }
            (kind, Some(id)) => {
                let gate = if kind == "gated" || kind == "readmitted" {
                    parse_gate(ev).ok()
                } else {
                    None
                };
                let operator = ev.field("operator").and_then(Field::as_str);
                if let Some(p) = self.proposals.get_mut(id) {
                    match kind {
                        "gated" | "readmitted" => p.gate = gate,
                        "approved" => {
                            if let Some(op) = operator {
                                let held = split_roles(ev.field("holds_roles"));
                                p.approved_by
                                    .entry(op.to_string())
                                    .or_default()
                                    .extend(held);
                            }
                        }
                        "rejected" => p.rejected = true,
                        "executing" => p.executing += 1,
                        "executed" => p.executed += 1,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
}

fn parse_gate(ev: &Facts<'_>) -> Result<Gate, Violation> {
    let decision = match ev.str_field("decision")? {
        "allow" => Decision::Allow,
        "approve" => Decision::Approve,
        "deny" => Decision::Deny,
        other => {
            return Err(violation(
                name::MALFORMED,
                format!("unknown decision {other:?}"),
            ));
        }
    };
    let approvers = ev
        .field("approvers")
        .and_then(Field::as_u64)
        .ok_or_else(|| violation(name::MALFORMED, "gated needs an integer \"approvers\""))?;
    let risk = ev.str_field("risk")?;
    if !RISKS.contains(&risk) {
        return Err(violation(name::MALFORMED, format!("unknown risk {risk:?}")));
    }
    Ok(Gate {
        decision,
        approvers,
        risk_read_only: risk == "read_only",
        roles: split_roles(ev.field("requires_roles")),
    })
}

/// A comma-joined list of roles (absent: none).
fn split_roles(f: Option<&Field<'_>>) -> Vec<String> {
    f.and_then(Field::as_str)
        .map(|s| {
            s.split(',')
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}
