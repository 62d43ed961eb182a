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
            Some(Some(input)) => crate::exec::step::checked_input(name, input, &value)
                .map_err(|why| format!("{value} is refused: {why}")),
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
