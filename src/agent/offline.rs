//! The offline planner: deterministic, no model, and a pure function of the
//! session so far (which is what lets `ward resume` pick up where a session
//! stopped).
//!
//! It runs the contract's diagnostics in dependency order, then proposes
//! each remediation or migration whose `requires` are done and whose `when`
//! holds on the facts, in file order, then concludes with the first
//! `conclusions` template whose `when` holds, filled from the facts.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Agent, AgentFuture, AgentView, Proposal, Turn};
use crate::contract::{Contract, StepKind};
use crate::session::{SessionState, Status};

/// The offline planner.
#[derive(Debug, Default, Clone, Copy)]
pub struct Offline;

impl Agent for Offline {
    fn describe(&self) -> Value {
        json!({"provider": "offline"})
    }

    fn next<'a>(&'a mut self, view: &'a AgentView<'a>) -> AgentFuture<'a> {
        let turn = Turn::plain(plan(view));
        Box::pin(async move { Ok(turn) })
    }
}

/// The next proposal for `view`.
pub fn plan(view: &AgentView<'_>) -> Proposal {
    let c = view.contract;
    let order = ordered_steps(c);
    let facts = view.facts();
    let vars = [("facts", &facts), ("inputs", view.inputs)];
    let diagnostics = order
        .iter()
        .filter(|id| kind_of(c, id) == Some(StepKind::Diagnostic));
    let changes = order
        .iter()
        .filter(|id| kind_of(c, id) != Some(StepKind::Diagnostic));
    let total = diagnostics.clone().count();
    for (n, id) in diagnostics.enumerate() {
        if proposed(view.state, id)
            || !requires_done(c, view.state, id)
            || missing_input(view, id).is_some()
        {
            continue;
        }
        // A diagnostic's `when` (e.g. "the extension is installed") is
        // evaluated on the facts gathered before it.
        if let Some(w) = c.step(id).and_then(|s| s.when.as_ref())
            && !w.eval_bool(&vars).unwrap_or(false)
        {
            continue;
        }
        return Proposal::Step {
            step_id: id.clone(),
            inputs: BTreeMap::new(),
            rationale: Some(format!(
                "diagnostic {} of {total}, in dependency order",
                n + 1
            )),
        };
    }
    for id in changes {
        if proposed(view.state, id)
            || !requires_done(c, view.state, id)
            || missing_input(view, id).is_some()
        {
            continue;
        }
        let Some(step) = c.step(id) else { continue };
        let rationale = match &step.when {
            None => "no `when`: part of the runbook's plan".to_string(),
            Some(w) => match w.eval_bool(&vars) {
                Ok(true) => format!("`{}` holds on the facts", w.source),
                _ => continue,
            },
        };
        return Proposal::Step {
            step_id: id.clone(),
            inputs: BTreeMap::new(),
            rationale: Some(rationale),
        };
    }
    conclude(view)
}

/// The first matching conclusion, filled from the facts, with what was
/// changed (or is waiting) as the recommendation.
fn conclude(view: &AgentView<'_>) -> Proposal {
    let c = view.contract;
    let facts = view.facts();
    let vars = [("facts", &facts), ("inputs", view.inputs)];
    let order = ordered_steps(c);
    let diagnosis = c
        .conclusions
        .iter()
        .find(|k| k.when.eval_bool(&vars).unwrap_or(false))
        .map(|k| fill_placeholders(&k.text, &view.state.facts, &order))
        .unwrap_or_else(|| {
            "No conclusion of the runbook matches the facts; read the evidence above.".to_string()
        });
    let mut notes = Vec::new();
    for id in &order {
        if !proposed(view.state, id)
            && let Some(input) = missing_input(view, id)
        {
            notes.push(format!("{id} was skipped: it needs the input `{input}` (give it with --input {input}=VALUE)"));
        }
    }
    for p in &view.state.proposals {
        let Some(id) = &p.step_id else { continue };
        if kind_of(c, id) == Some(StepKind::Diagnostic) {
            continue;
        }
        let what = match p.status {
            Status::Done => match p.verified {
                Some(true) => "ran and verified",
                Some(false) => "ran but its verify did not hold",
                None => "ran",
            },
            Status::AwaitingApproval => "waits for approval",
            Status::Rejected => "was rejected",
            Status::Denied => "was denied by policy",
            Status::DryRun => "was recorded by the dry run, not run",
            Status::Failed => "failed",
            _ => continue,
        };
        notes.push(format!("{id} {what}"));
    }
    Proposal::Conclude {
        diagnosis,
        recommendation: (!notes.is_empty()).then(|| notes.join("; ")),
    }
}

/// The input a step needs that the session does not have, if any: the
/// planner leaves such a step out instead of failing the session.
fn missing_input(view: &AgentView<'_>, id: &str) -> Option<String> {
    let c = view.contract;
    let step = c.step(id)?;
    let engine = *c.spec.engines.first()?;
    let inputs: BTreeMap<String, Value> = view
        .inputs
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    match crate::exec::step::bind_sql(c, &step.spec.sql, &inputs, engine) {
        Err(crate::exec::step::ResolveError::MissingInput(name)) => Some(name),
        _ => None,
    }
}

fn kind_of(c: &Contract, id: &str) -> Option<StepKind> {
    c.step(id).map(|s| s.spec.kind)
}

fn proposed(state: &SessionState, id: &str) -> bool {
    state
        .proposals
        .iter()
        .any(|p| p.step_id.as_deref() == Some(id))
}

fn requires_done(c: &Contract, state: &SessionState, id: &str) -> bool {
    let Some(s) = c.step(id) else { return false };
    s.spec.requires.iter().all(|req| {
        state
            .proposals
            .iter()
            .any(|p| p.step_id.as_deref() == Some(req.as_str()) && p.status == Status::Done)
    })
}

/// Steps in file order, each after the steps it requires.
pub fn ordered_steps(c: &Contract) -> Vec<String> {
    fn visit(c: &Contract, id: &str, out: &mut Vec<String>, depth: usize) {
        if out.iter().any(|x| x == id) || depth > 64 {
            return;
        }
        if let Some(s) = c.step(id) {
            for r in &s.spec.requires {
                visit(c, r, out, depth + 1);
            }
            if !out.iter().any(|x| x == id) {
                out.push(id.to_string());
            }
        }
    }
    let mut out: Vec<String> = Vec::new();
    for s in &c.steps {
        visit(c, &s.spec.id, &mut out, 0);
    }
    out
}

/// Fills `{step.fact}` and `{fact}` placeholders from the facts; unknown ones
/// stay as written.
pub fn fill_placeholders(text: &str, facts: &BTreeMap<String, Value>, order: &[String]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let name = &after[..close];
        let value = match name.split_once('.') {
            Some((step, fact)) => facts.get(step).and_then(|f| f.get(fact)).cloned(),
            None => order
                .iter()
                .find_map(|s| facts.get(s).and_then(|f| f.get(name)))
                .cloned(),
        };
        match value {
            Some(Value::String(s)) => out.push_str(&s),
            Some(v) => out.push_str(&v.to_string()),
            None => {
                out.push('{');
                out.push_str(name);
                out.push('}');
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_fill_from_step_and_bare_facts() {
        let facts = BTreeMap::from([
            ("a".to_string(), json!({"idle": 25, "app": "billing"})),
            ("b".to_string(), json!({"idle": 3})),
        ]);
        let order = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            fill_placeholders(
                "{idle} idle ({b.idle} in b), app {app}, {nope}",
                &facts,
                &order
            ),
            "25 idle (3 in b), app billing, {nope}"
        );
        assert_eq!(
            fill_placeholders("open { brace", &facts, &order),
            "open { brace"
        );
    }
}
