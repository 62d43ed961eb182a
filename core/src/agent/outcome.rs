//! What a runbook's `recheck` says about a session: which diagnostics are
//! due to run again after a change, and whether the incident condition is
//! gone. A pure function of the contract and the session state, shared by
//! the runner (which re-runs the diagnostics and chooses the outcome) and
//! the offline planner (which words the recommendation).
//!
//! It never runs anything and never decides whether anything may run.

use serde_json::Value;

use crate::contract::{Contract, StepKind};
use crate::journal::{SessionState, Status};

/// The `seq` of the last remediation or migration that executed, if any.
fn last_change(c: &Contract, state: &SessionState) -> Option<u64> {
    state
        .proposals
        .iter()
        .filter(|p| p.status == Status::Done)
        .filter(|p| {
            p.step_id
                .as_deref()
                .and_then(|id| c.step(id))
                .is_some_and(|s| s.spec.kind != StepKind::Diagnostic)
        })
        .map(|p| p.seq)
        .max()
}

/// The recheck diagnostics that ran before the last change that executed
/// and have not been proposed since, in the runbook's order; empty when
/// nothing changed or the runbook has no `recheck`. A diagnostic the
/// session never ran (its `when` did not hold) is not run again either.
pub fn rechecks_due(c: &Contract, state: &SessionState) -> Vec<String> {
    let (Some(r), Some(changed)) = (&c.recheck, last_change(c, state)) else {
        return Vec::new();
    };
    r.steps
        .iter()
        .filter(|id| ran_before(state, id, changed))
        .filter(|id| {
            !state
                .proposals
                .iter()
                .any(|p| p.seq > changed && p.step_id.as_deref() == Some(id.as_str()))
        })
        .cloned()
        .collect()
}

/// Whether step `id` executed before `seq`.
fn ran_before(state: &SessionState, id: &str, seq: u64) -> bool {
    state
        .proposals
        .iter()
        .any(|p| p.seq < seq && p.step_id.as_deref() == Some(id) && p.status == Status::Done)
}

/// Whether the incident condition is gone, judged on the facts the
/// recheck gathered after the last change: `None` when there is nothing
/// to judge (no change executed, no `recheck`, no rechecked diagnostic ran
/// before the change, or one did not run again since).
pub fn incident_cleared(c: &Contract, state: &SessionState, inputs: &Value) -> Option<bool> {
    let r = c.recheck.as_ref()?;
    let changed = last_change(c, state)?;
    let judged: Vec<&String> = r
        .steps
        .iter()
        .filter(|id| ran_before(state, id, changed))
        .collect();
    // Nothing to compare with: the session never looked at the incident.
    if judged.is_empty() {
        return None;
    }
    let all_ran = judged.iter().all(|id| {
        state.proposals.iter().any(|p| {
            p.seq > changed && p.step_id.as_deref() == Some(id.as_str()) && p.status == Status::Done
        })
    });
    if !all_ran {
        return None;
    }
    let facts = state.facts_value();
    let before = state.before_value();
    let vars = [("facts", &facts), ("inputs", inputs), ("before", &before)];
    // A condition that cannot be evaluated (a fact missing) is not "gone".
    Some(r.cleared.eval_bool(&vars).unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::journal::ProposalState;
    use crate::journal::events::ProposalId;

    const IIT: &str = r#"id: iit
title: Idle
version: 1
engines: [postgres]
steps:
  - id: headline
    kind: diagnostic
    sql: SELECT 1 AS over_threshold
  - id: terminate
    kind: remediation
    sql: SELECT pg_terminate_backend(1)
    rollback: none
recheck:
  steps: [headline]
  cleared: "facts.headline.over_threshold == 0"
conclusions:
  - when: "true"
    text: done
"#;

    fn contract() -> Contract {
        let doc = crate::yaml::Doc::new("runbooks/iit.yaml", IIT);
        let analyzer = crate::sql::Analyzer::new(Default::default());
        crate::contract::load_doc(&doc, std::path::Path::new("runbooks"), &analyzer).expect("loads")
    }

    fn ran(seq: u64, step: &str, status: Status) -> ProposalState {
        ProposalState {
            id: ProposalId::new(format!("{seq:064x}")),
            seq,
            step_id: Some(step.into()),
            status,
            ..Default::default()
        }
    }

    #[test]
    fn nothing_is_rechecked_or_judged_before_a_change_executes() {
        let c = contract();
        let mut state = SessionState {
            proposals: vec![
                ran(1, "headline", Status::Done),
                ran(5, "terminate", Status::AwaitingApproval),
            ],
            ..Default::default()
        };
        state
            .facts
            .insert("headline".into(), json!({"over_threshold": 3}));
        assert_eq!(rechecks_due(&c, &state), Vec::<String>::new());
        assert_eq!(incident_cleared(&c, &state, &json!({})), None);
    }

    #[test]
    fn a_diagnostic_the_session_never_ran_is_not_run_again_after_a_change() {
        let c = contract();
        let state = SessionState {
            proposals: vec![ran(5, "terminate", Status::Done)],
            ..Default::default()
        };
        assert_eq!(rechecks_due(&c, &state), Vec::<String>::new());
        assert_eq!(incident_cleared(&c, &state, &json!({})), None);
    }

    #[test]
    fn after_a_change_the_headline_is_due_again_and_judged_on_its_new_facts() {
        let c = contract();
        let mut state = SessionState {
            proposals: vec![
                ran(1, "headline", Status::Done),
                ran(5, "terminate", Status::Done),
            ],
            ..Default::default()
        };
        state
            .facts
            .insert("headline".into(), json!({"over_threshold": 3}));
        assert_eq!(rechecks_due(&c, &state), vec!["headline".to_string()]);
        assert_eq!(incident_cleared(&c, &state, &json!({})), None);

        state.proposals.push(ran(9, "headline", Status::Done));
        assert_eq!(rechecks_due(&c, &state), Vec::<String>::new());
        state
            .facts
            .insert("headline".into(), json!({"over_threshold": 1}));
        assert_eq!(incident_cleared(&c, &state, &json!({})), Some(false));
        state
            .facts
            .insert("headline".into(), json!({"over_threshold": 0}));
        assert_eq!(incident_cleared(&c, &state, &json!({})), Some(true));
    }
}
