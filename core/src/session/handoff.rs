//! Hand-offs between runbooks: the runbook a conclusion names as `next`,
//! with its inputs filled from the facts like the conclusion's text and
//! checked by that runbook's own input declarations. A value that does not
//! pass is dropped with its reason, never passed on.
//!
//! Which conclusion applies is the contract's decision (its first `when`
//! that holds), never an agent's: a model cannot pick the runbook a session
//! continues into. Nothing here runs anything; the runner follows only when
//! asked (`--follow`, a key in the TUI), and what the next runbook proposes
//! goes through the gate like any proposal.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::agent::offline::{ordered_steps, placeholder_value};
use crate::contract::{Contract, NextSpec};
use crate::journal::SessionState;
use crate::journal::events::{DroppedInput, Next};

/// The hand-off of the conclusion that applies to `state` (the current
/// runbook's part), if it names one. `runbooks` are the repository's
/// runbooks, which type the inputs.
pub fn next_of(
    contract: &Contract,
    state: &SessionState,
    inputs: &Value,
    runbooks: &[Contract],
) -> Option<Next> {
    let facts = state.facts_value();
    let before = state.before_value();
    let vars = [("facts", &facts), ("inputs", inputs), ("before", &before)];
    let conclusion = contract
        .conclusions
        .iter()
        .find(|k| k.when.eval_bool(&vars).unwrap_or(false))?;
    let spec = conclusion.next.as_ref()?;
    let order = ordered_steps(contract);
    Some(fill(spec, state, &order, runbooks))
}

/// `spec` filled from the facts of `state` and checked by the runbook it
/// names.
pub fn fill(
    spec: &NextSpec,
    state: &SessionState,
    order: &[String],
    runbooks: &[Contract],
) -> Next {
    let target = runbooks.iter().find(|c| c.id() == spec.runbook);
    let mut next = Next {
        runbook: spec.runbook.clone(),
        inputs: BTreeMap::new(),
        dropped: Vec::new(),
    };
    for (name, written) in &spec.inputs {
        let value = match filled(written, state, order) {
            Ok(v) => v,
            Err(reason) => {
                next.dropped.push(DroppedInput {
                    name: name.clone(),
                    reason,
                });
                continue;
            }
        };
        let checked = match target.map(|t| t.spec.inputs.get(name)) {
            None => Err(format!(
                "runbook `{}` is not among the runbooks loaded",
                spec.runbook
            )),
            Some(None) => Err(format!("runbook `{}` declares no such input", spec.runbook)),
            // The reason names the value (`0 is below the minimum 1`).
            Some(Some(input)) => crate::exec::step::checked_input(name, input, &value),
        };
        match checked {
            Ok(v) => {
                next.inputs.insert(name.clone(), v);
            }
            Err(reason) => next.dropped.push(DroppedInput {
                name: name.clone(),
                reason,
            }),
        }
    }
    next
}

/// One input's value: a literal as written; a text's placeholders filled
/// from the facts (a text that is one placeholder keeps the fact's own
/// type). A placeholder the facts lack, or a null fact, is an error.
fn filled(
    written: &serde_yaml::Value,
    state: &SessionState,
    order: &[String],
) -> Result<Value, String> {
    let serde_yaml::Value::String(text) = written else {
        return serde_json::to_value(written).map_err(|e| e.to_string());
    };
    let names = placeholders(text);
    if names.is_empty() {
        return Ok(Value::String(text.clone()));
    }
    for name in &names {
        match placeholder_value(name, &state.facts, &state.before, order) {
            None => return Err(format!("the facts have no `{name}`")),
            Some(Value::Null) => return Err(format!("`{name}` is null in the facts")),
            Some(_) => {}
        }
    }
    if let [only] = names.as_slice()
        && text.trim() == format!("{{{only}}}")
    {
        return placeholder_value(only, &state.facts, &state.before, order)
            .ok_or_else(|| format!("the facts have no `{only}`"));
    }
    Ok(Value::String(crate::agent::offline::fill_placeholders(
        text,
        &state.facts,
        &state.before,
        order,
    )))
}

/// The names inside `{...}` in `text`.
fn placeholders(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        out.push(&after[..close]);
        rest = &after[close + 1..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target() -> Contract {
        let doc = crate::yaml::Doc::new(
            "next.yaml",
            r#"id: next
title: Next
version: 1
engines: [postgres]
inputs:
  app: { type: string, required: false }
  pid: { type: integer, required: false, min: 1 }
  label: { type: string, required: false }
  mode: { type: enum, values: [soft, hard], required: false }
steps:
  - id: look
    kind: diagnostic
    sql: SELECT 1 AS n
"#,
        );
        let analyzer = crate::sql::Analyzer::new(Default::default());
        crate::contract::load_doc(&doc, std::path::Path::new("."), &analyzer)
            .unwrap_or_else(|p| panic!("{p:?}"))
    }

    fn spec(inputs: serde_yaml::Value) -> NextSpec {
        NextSpec {
            runbook: "next".into(),
            inputs: serde_yaml::from_value(inputs).expect("inputs"),
        }
    }

    fn state(facts: Value) -> SessionState {
        let mut s = SessionState::default();
        if let Value::Object(m) = facts {
            s.facts = m.into_iter().collect();
        }
        s
    }

    #[test]
    fn inputs_are_filled_from_the_facts_typed_by_the_next_runbook_and_refused_ones_dropped() {
        let next = fill(
            &spec(serde_yaml::from_str(
                "{app: '{tree.root_application}', pid: '{tree.root_pid}', label: 'pid {tree.root_pid} of {tree.root_application}', mode: hard}",
            ).expect("yaml")),
            &state(json!({"tree": {"root_application": "billing", "root_pid": 4242}})),
            &["tree".to_string()],
            &[target()],
        );
        assert_eq!(
            next,
            Next {
                runbook: "next".into(),
                inputs: BTreeMap::from([
                    ("app".into(), json!("billing")),
                    ("label".into(), json!("pid 4242 of billing")),
                    ("mode".into(), json!("hard")),
                    ("pid".into(), json!(4242)),
                ]),
                dropped: vec![],
            }
        );
    }

    #[test]
    fn a_missing_or_null_fact_and_a_value_the_next_runbook_refuses_are_dropped_with_why() {
        let next = fill(
            &spec(
                serde_yaml::from_str(
                    "{app: '{tree.root_application}', pid: '{tree.root_pid}', mode: gentle, label: '{tree.nothing}'}",
                )
                .expect("yaml"),
            ),
            &state(json!({"tree": {"root_application": null, "root_pid": 0}})),
            &["tree".to_string()],
            &[target()],
        );
        assert!(next.inputs.is_empty(), "{next:?}");
        let why: Vec<(&str, &str)> = next
            .dropped
            .iter()
            .map(|d| (d.name.as_str(), d.reason.as_str()))
            .collect();
        assert_eq!(
            why,
            [
                ("app", "`tree.root_application` is null in the facts"),
                ("label", "the facts have no `tree.nothing`"),
                ("mode", "`gentle` is not one of soft, hard"),
                ("pid", "0 is below the minimum 1"),
            ]
        );
    }

    #[test]
    fn inputs_for_a_runbook_that_is_not_loaded_are_all_dropped() {
        let next = fill(
            &spec(serde_yaml::from_str("{app: billing}").expect("yaml")),
            &SessionState::default(),
            &[],
            &[],
        );
        assert_eq!(next.runbook, "next");
        assert!(next.inputs.is_empty());
        assert_eq!(
            next.dropped,
            [DroppedInput {
                name: "app".into(),
                reason: "runbook `next` is not among the runbooks loaded".into()
            }]
        );
    }
}
