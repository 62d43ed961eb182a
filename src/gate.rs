//! THE decision point: may this statement run here, now?
//!
//! `decide` is a pure function of the statement's analysis, the runbook's
//! declared risk, the target, the policy and the clock. It never trusts a
//! claim of risk from the model: the class comes from the SQL itself, and a
//! runbook's declared `risk` can only raise it.

use serde::Serialize;

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
