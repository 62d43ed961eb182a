//! What the runner tells a model about the session's rules: the policy in
//! short. Text only; it never decides anything.

use crate::policy::Policy;

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
