//! THE decision point: may this statement run here, now?
//!
//! `decide` is a pure function of the statement's analysis, the runbook's
//! declared risk, the target, the policy and the clock. It never trusts a
//! claim of risk from the model: the class comes from the SQL itself, and a
//! runbook's declared `risk` can only raise it.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::policy::{Context, Decision, Matched, Policy, TableSize};
use crate::sql::{Analysis, Risk};

/// What the gate is asked about.
#[derive(Debug, Clone)]
pub struct GateInput<'a> {
    pub analysis: &'a Analysis,
    /// A runbook step's declared risk; ignored when lower than the analysis.
    pub declared_risk: Option<Risk>,
    pub environment: &'a str,
    pub runbook: Option<&'a str>,
    /// `diagnostic`, `migration`, `remediation` or `adhoc`.
    pub step_kind: Option<&'a str>,
    pub table_size: Option<TableSize>,
    pub now: DateTime<Utc>,
}

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

/// The risk the gate uses: the analyzed class, raised (never lowered) by a
/// declared one.
pub fn effective_risk(analyzed: Risk, declared: Option<Risk>) -> Risk {
    match declared {
        Some(d) if d.rank() > analyzed.rank() => d,
        _ => analyzed,
    }
}

pub fn decide(policy: &Policy, input: &GateInput) -> Verdict {
    let risk = effective_risk(input.analysis.risk, input.declared_risk);
    let ctx = Context {
        analysis: input.analysis,
        risk,
        environment: input.environment,
        runbook: input.runbook,
        step_kind: input.step_kind,
        table_size: input.table_size,
        now: input.now,
    };
    let rules = policy.matches(&ctx);
    let decision = policy.decide(&rules);
    Verdict {
        defaulted: rules.is_empty(),
        decision,
        risk,
        rules,
        policy: policy.id.clone(),
    }
}
