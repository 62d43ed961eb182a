//! THE decision point: may this statement run here, now?
//!
//! `decide` is a pure function of the statement's analysis, the runbook's
//! declared risk, the target, the policy and the clock. It never trusts a
//! claim of risk from the model: the class comes from the SQL itself, and a
//! runbook's declared `risk` can only raise it.
//!
//! `admit` is the one admission path every front end goes through: the
//! policy's verdict plus the contract's rules (ad-hoc SQL is read-only, a
//! dry run executes reads only, standing approvals, approvals from distinct
//! operators holding the required roles). Sessions call it when a
//! statement is proposed and again right before it executes; nothing else
//! re-derives any part of it. Like `decide`, it never does I/O.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Serialize;

use crate::contract::Adhoc;
use crate::exec::{Identity, Mode, Target};
use crate::policy::{Decision, Matched, Policy};
use crate::sql::Risk;

/// What the gate is asked about: the analysis, the runbook's declared risk
/// (raise only), the target's environment, the runbook and step kind, table
/// sizes when known, and the clock.
pub use crate::policy::Context as GateInput;

/// The gate's answer, with everything needed to explain it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub decision: Decision,
    /// The class the decision used.
    pub risk: Risk,
    /// Every rule that matched, in policy order.
    pub rules: Vec<Matched>,
    /// True when no rule matched and the policy's default applied.
    pub defaulted: bool,
    pub policy: String,
}

impl Verdict {
    /// The rules whose decision equals the verdict: the ones that made it.
    pub fn deciding_rules(&self) -> Vec<&Matched> {
        self.rules
            .iter()
            .filter(|m| {
                m.decision.name() == self.decision.name()
                    && m.decision.approvers() == self.decision.approvers()
            })
            .collect()
    }
}

pub fn decide(policy: &Policy, input: &GateInput) -> Verdict {
    let rules = policy.matches(input);
    let decision = policy.decide(&rules);
    Verdict {
        defaulted: rules.is_empty(),
        decision,
        risk: input.risk(),
        rules,
        policy: policy.id.clone(),
    }
}

/// An approval given so far, with the roles its operator holds (from the
/// roster, `policies/operators.yaml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Given {
    pub operator: String,
    pub roles: Vec<String>,
}

/// Everything admission depends on: the gate's input (analysis, clock,
/// table size, environment, identity) and the contract's rules.
#[derive(Debug, Clone)]
pub struct Admission<'a> {
    pub policy: &'a Policy,
    pub gate: GateInput<'a>,
    /// `Some(what the contract allows)` when the proposal is the agent's
    /// own SQL; `None` for a runbook step.
    pub adhoc: Option<Adhoc>,
    /// How the statement would execute.
    pub mode: Mode,
    /// The session runs read-only statements only.
    pub dry_run: bool,
    /// Approvals logged for this proposal so far, in order (repeats
    /// included: the same operator never counts twice).
    pub approvals: &'a [Given],
    /// A standing approval (`for_session`) in force for this statement.
    pub standing: Option<&'a Given>,
    /// The roster's file, `None` when there is none (then no approval can
    /// satisfy a role).
    pub roster: Option<&'a Path>,
}

/// What admission decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// Run it now.
    Run,
    /// Needs `more` approvals from further distinct operators, among them
    /// holders of `missing_roles`. `note` says why that cannot happen when
    /// it cannot (no roster, or no one in it holds a role).
    NeedsApprovals {
        more: u32,
        missing_roles: Vec<String>,
        note: Option<String>,
    },
    /// Never runs: the rules that say so and why.
    Deny { rules: Vec<String>, message: String },
    /// A dry run records it with its verdict and does not run it.
    DryRunSkip,
}

impl Admit {
    pub fn name(&self) -> &'static str {
        match self {
            Admit::Run => "run",
            Admit::NeedsApprovals { .. } => "needs_approvals",
            Admit::Deny { .. } => "deny",
            Admit::DryRunSkip => "dry_run",
        }
    }
}

/// Admission's answer: the verdict (the policy's, with the contract's rules
/// folded in), what to do now, and how the approvals were counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    pub verdict: Verdict,
    pub admit: Admit,
    /// Operators whose approval counts, in order.
    pub counted: Vec<String>,
    /// Approvals that do not count: (operator, why).
    pub refused: Vec<(String, String)>,
    /// The standing approval answered it.
    pub by_standing: bool,
}

/// Rule id of the contract's "ad-hoc SQL is read-only" rule.
pub const ADHOC_READ_ONLY: &str = "contract:adhoc-read-only";
/// Rule id of the contract's "no ad-hoc SQL in this runbook" rule.
pub const ADHOC_NONE: &str = "contract:no-adhoc";

/// Whether a verdict may be answered by a standing approval: one approver,
/// and never a destructive, privilege or unknown statement.
pub fn standing_allowed(risk: Option<&str>, approvers: u32) -> bool {
    approvers <= 1 && matches!(risk, Some("read_only" | "write" | "schema"))
}

/// THE admission decision: may this proposal run now? Pure: the caller
/// gathers the clock, the policy, table sizes, identity and approvals, and
/// calls it when the statement is proposed and again right before it runs.
pub fn admit(a: &Admission<'_>) -> Admitted {
    let mut verdict = decide(a.policy, &a.gate);
    match a.adhoc {
        Some(Adhoc::None) => contract_deny(
            &mut verdict,
            ADHOC_NONE,
            "the runbook does not allow the agent's own SQL",
        ),
        // The contract allows the agent read-only SQL only, whatever the
        // policy would let a human run.
        Some(Adhoc::ReadOnly) if verdict.risk != Risk::ReadOnly => contract_deny(
            &mut verdict,
            ADHOC_READ_ONLY,
            "the runbook allows the agent read-only SQL only",
        ),
        _ => {}
    }
    let mut out = Admitted {
        verdict,
        admit: Admit::Run,
        counted: Vec::new(),
        refused: Vec::new(),
        by_standing: false,
    };
    // A dry run executes read-only statements only; everything else is
    // recorded with the verdict it would get.
    if a.dry_run && (a.mode != Mode::ReadOnly || out.verdict.risk != Risk::ReadOnly) {
        out.admit = Admit::DryRunSkip;
        return out;
    }
    let (needed, roles) = match &out.verdict.decision {
        Decision::Allow => return out,
        Decision::Deny => {
            out.admit = Admit::Deny {
                rules: out.verdict.rules.iter().map(|m| m.id.clone()).collect(),
                message: deny_message(&out.verdict),
            };
            return out;
        }
        Decision::Approve { approvers, roles } => (*approvers, roles.clone()),
    };
    let ruled_by = out
        .verdict
        .deciding_rules()
        .iter()
        .map(|m| format!("`{}`", m.id))
        .collect::<Vec<_>>()
        .join(", ");
    let roster = a
        .roster
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "operators.yaml".into());
    let mut covered: BTreeSet<&str> = BTreeSet::new();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let risk = Some(out.verdict.risk.name());
    let standing = a
        .standing
        .filter(|_| standing_allowed(risk, needed));
    let mut all: Vec<(&Given, bool)> = a.approvals.iter().map(|g| (g, false)).collect();
    if let Some(s) = standing {
        all.insert(0, (s, true));
    }
    for (g, is_standing) in all {
        let op = g.operator.trim();
        if op.is_empty() || !seen.insert(op) {
            continue;
        }
        let missing: Vec<&str> = roles
            .iter()
            .map(String::as_str)
            .filter(|r| !covered.contains(r))
            .collect();
        let slots = (needed as usize).saturating_sub(out.counted.len());
        let helps = g.roles.iter().any(|r| missing.contains(&r.as_str()));
        if helps || slots > missing.len() {
            for r in &g.roles {
                if let Some(want) = roles.iter().find(|x| *x == r) {
                    covered.insert(want.as_str());
                }
            }
            out.counted.push(op.to_string());
            out.by_standing |= is_standing;
        } else if !is_standing {
            let why = if a.roster.is_none() {
                format!(
                    "the approval of `{op}` does not count: {ruled_by} requires an approver with role {} and there is no {roster}, so no one holds it",
                    quoted(&missing)
                )
            } else {
                format!(
                    "the approval of `{op}` does not count: {ruled_by} requires an approver with role {}, which `{op}` does not hold in {roster}",
                    quoted(&missing)
                )
            };
            out.refused.push((op.to_string(), why));
        }
    }
    let missing_roles: Vec<String> = roles
        .iter()
        .filter(|r| !covered.contains(r.as_str()))
        .cloned()
        .collect();
    let short = (needed as usize).saturating_sub(out.counted.len()) as u32;
    if short == 0 && missing_roles.is_empty() {
        return out;
    }
    let note = (!missing_roles.is_empty() && a.roster.is_none()).then(|| {
        format!(
            "{ruled_by} requires an approver with role {}, but there is no {roster}: no approval can satisfy it until the file names who holds the role",
            quoted(&missing_roles.iter().map(String::as_str).collect::<Vec<_>>())
        )
    });
    out.admit = Admit::NeedsApprovals {
        more: short.max(u32::from(!missing_roles.is_empty())),
        missing_roles,
        note,
    };
    out.by_standing = false;
    out
}

fn quoted(roles: &[&str]) -> String {
    roles
        .iter()
        .map(|r| format!("`{r}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn contract_deny(verdict: &mut Verdict, id: &str, message: &str) {
    verdict.decision = Decision::Deny;
    verdict.rules.push(Matched {
        id: id.into(),
        decision: Decision::Deny,
        message: Some(message.into()),
    });
}

/// Why a denied verdict denies, in the words of the rules that decided it.
pub fn deny_message(v: &Verdict) -> String {
    let deciding = v.deciding_rules();
    let said: Vec<String> = deciding
        .iter()
        .map(|m| match &m.message {
            Some(msg) => format!("{}: {msg}", m.id),
            None => format!("{}: denied by policy `{}`", m.id, v.policy),
        })
        .collect();
    if said.is_empty() {
        format!(
            "no rule of policy `{}` matched a {} statement and its default is deny",
            v.policy, v.risk
        )
    } else {
        said.join("; ")
    }
}

/// Whether a session may read through this connection. `Ok(true)` when
/// reads run as a role that `reads_unsafely` and the target configures no
/// read role to drop to (the policy condition `connected_as_superuser`);
/// in prod that is refused unless the operator passed `--allow-superuser`.
pub fn admit_connection(
    identity: Option<&Identity>,
    target: &Target,
    allow_superuser: bool,
) -> Result<bool, String> {
    let unsafe_reads = identity.is_some_and(Identity::reads_unsafely) && target.roles.read.is_none();
    if unsafe_reads && target.environment == "prod" && !allow_superuser {
        let who = identity.map(|i| i.user.as_str()).unwrap_or("?");
        return Err(format!(
            "target `{}` is prod and ward is connected as `{who}`, which can act outside the database's privilege system (superuser, server-file or server-program roles, or CREATE in a schema on its search_path), with no read role to drop to; configure `roles: {{ read: ward_reader }}` on the target in ward.yaml (`ward roles {}` prints the SQL that creates it), or pass --allow-superuser to run anyway (logged, and the policy condition `connected_as_superuser` applies)",
            target.name, target.name
        ));
    }
    Ok(unsafe_reads)
}
