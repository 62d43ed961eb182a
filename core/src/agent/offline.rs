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
use crate::journal::{SessionState, Status};

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
        if proposed(view.state, id) || !requires_done(c, view.state, id) {
            continue;
        }
        let Ok(inputs) = step_inputs(view, id) else {
            continue;
        };
        // A diagnostic's `when` (e.g. "the extension is installed") is
        // evaluated on the facts gathered before it.
        if let Some(w) = c.step(id).and_then(|s| s.when.as_ref())
            && !w.eval_bool(&vars).unwrap_or(false)
        {
            continue;
        }
        return Proposal::Step {
            step_id: id.clone(),
            rationale: Some(format!(
                "diagnostic {} of {total}, in dependency order{}",
                n + 1,
                from_facts_note(c, &inputs)
            )),
            inputs,
        };
    }
    for id in changes {
        if proposed(view.state, id) || !requires_done(c, view.state, id) {
            continue;
        }
        let Ok(inputs) = step_inputs(view, id) else {
            continue;
        };
        let Some(step) = c.step(id) else { continue };
        let rationale = match &step.when {
            None => "no `when`: part of the runbook's plan".to_string(),
            Some(w) => match w.eval_bool(&vars) {
                Ok(true) => values_read(w, &facts, view.inputs),
                _ => continue,
            },
        };
        return Proposal::Step {
            step_id: id.clone(),
            rationale: Some(format!("{rationale}{}", from_facts_note(c, &inputs))),
            inputs,
        };
    }
    conclude(view)
}

/// A step that can run now, by the same rules the planner follows: not
/// proposed yet in this session, every step it `requires` done, its `when`
/// holding on the facts so far. (Steps the server's version or platform
/// cannot run are already out of the contract: `keep_steps_for`.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runnable {
    pub step: String,
    /// An input the step needs that neither the session nor the facts
    /// give: the planner leaves such a step out, a model may pass it.
    pub needs: Option<String>,
}

/// The steps that can run now, diagnostics first, each in dependency order
/// (the planner proposes the first one without `needs`).
pub fn runnable(view: &AgentView<'_>) -> Vec<Runnable> {
    let c = view.contract;
    let facts = view.facts();
    let vars = [("facts", &facts), ("inputs", view.inputs)];
    let order = ordered_steps(c);
    let (diagnostics, changes): (Vec<&String>, Vec<&String>) = order
        .iter()
        .partition(|id| kind_of(c, id) == Some(StepKind::Diagnostic));
    diagnostics
        .into_iter()
        .chain(changes)
        .filter(|id| !proposed(view.state, id) && requires_done(c, view.state, id))
        .filter(|id| {
            c.step(id)
                .and_then(|s| s.when.as_ref())
                .is_none_or(|w| w.eval_bool(&vars).unwrap_or(false))
        })
        .map(|id| Runnable {
            step: id.clone(),
            needs: step_inputs(view, id).err().map(|MissingInput(n)| n),
        })
        .collect()
}

/// The first matching conclusion, filled from the facts, with what was
/// changed (or is waiting) as the recommendation.
fn conclude(view: &AgentView<'_>) -> Proposal {
    let c = view.contract;
    let facts = view.facts();
    let before = view.state.before_value();
    let vars = [
        ("facts", &facts),
        ("inputs", view.inputs),
        ("before", &before),
    ];
    let order = ordered_steps(c);
    let diagnosis = c
        .conclusions
        .iter()
        .find(|k| k.when.eval_bool(&vars).unwrap_or(false))
        .map(|k| fill_placeholders(&k.text, &view.state.facts, &view.state.before, &order))
        .unwrap_or_else(|| {
            "No conclusion of the runbook matches the facts; read the evidence above.".to_string()
        });
    let mut notes = Vec::new();
    for id in &order {
        if !proposed(view.state, id)
            && let Err(MissingInput(input)) = step_inputs(view, id)
        {
            notes.push(format!("{id} was skipped: it needs the input `{input}` (give it with --input {input}=VALUE)"));
        }
    }
    for left in &c.left_out {
        notes.push(format!("{} was left out: {}", left.step, left.why));
    }
    for p in &view.state.proposals {
        let Some(id) = &p.step_id else { continue };
        if kind_of(c, id) == Some(StepKind::Diagnostic) {
            continue;
        }
        // A call that returned no row (`SELECT pg_terminate_backend(pid)
        // ... WHERE ...` matching nothing) changed nothing: never
        // "verified".
        let no_op =
            p.rows_seen == Some(0) && !p.kinds.is_empty() && p.kinds.iter().all(|k| k == "select");
        let what = match p.status {
            Status::Done if no_op => "ran but acted on nothing (0 rows): nothing was changed",
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
    match super::outcome::incident_cleared(c, view.state, view.inputs) {
        Some(true) => notes.push("the recheck after the change ran shows the incident condition is gone".into()),
        Some(false) => notes.push(
            "the incident PERSISTS: the recheck after the change still shows the incident condition (see the conclusion for what was left alone and why)".into(),
        ),
        None => {}
    }
    Proposal::Conclude {
        diagnosis,
        recommendation: (!notes.is_empty()).then(|| notes.join("; ")),
    }
}

/// A step needs an input that neither the session nor the facts give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("missing input `{0}`")]
struct MissingInput(String);

/// The inputs the planner adds to a step's proposal: those the step (or
/// its `verify`) needs that the session lacks, taken from the facts where
/// the contract names one (`from_fact`). `Err` names an input still missing:
/// the planner leaves such a step out instead of failing the session.
fn step_inputs(view: &AgentView<'_>, id: &str) -> Result<BTreeMap<String, Value>, MissingInput> {
    let c = view.contract;
    let (Some(step), Some(engine)) = (c.step(id), c.spec.engines.first().copied()) else {
        return Ok(BTreeMap::new());
    };
    let session: BTreeMap<String, Value> = view
        .inputs
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let sources: Vec<&str> = std::iter::once(step.spec.sql.as_str())
        .chain(step.spec.sql_by_version.values().map(String::as_str))
        .chain(
            step.spec
                .verify_variants()
                .into_iter()
                .map(|(_, sql, _, _)| sql),
        )
        .collect();
    let added: BTreeMap<String, Value> = fact_inputs(view, &session)
        .into_iter()
        .filter(|(name, _)| {
            sources.iter().any(|sql| {
                crate::sql::params::scan(sql)
                    .iter()
                    .any(|p| &p.name == name)
            })
        })
        .collect();
    let mut inputs = session;
    inputs.extend(added.clone());
    for sql in sources {
        if let Err(crate::exec::step::ResolveError::MissingInput(name)) =
            crate::exec::step::bind_sql(c, sql, &inputs, engine, None)
        {
            return Err(MissingInput(name));
        }
    }
    Ok(added)
}

/// Inputs the session has no value for, from the facts their `from_fact`
/// names, where that fact exists and is a valid value for the input.
fn fact_inputs(view: &AgentView<'_>, session: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (name, spec) in &view.contract.spec.inputs {
        if session.get(name).is_some_and(|v| !v.is_null()) {
            continue;
        }
        let Some((step, fact)) = spec.from_fact.as_deref().and_then(|f| f.split_once('.')) else {
            continue;
        };
        let Some(v) = view.state.facts.get(step).and_then(|f| f.get(fact)) else {
            continue;
        };
        if let Some(typed) = crate::exec::step::typed_input(name, spec, v).filter(|t| !t.is_null())
        {
            out.insert(name.clone(), typed);
        }
    }
    out
}

/// Why a `when` that holds was met, in words: the values it read, as
/// `the facts show order_indexes.customer_indexes = 0`. An approver reads
/// the evidence, not the expression (which stays in the runbook, where
/// the TUI shows it as the rule).
fn values_read(w: &crate::expr::Expr, facts: &Value, inputs: &Value) -> String {
    let shown = |v: Option<&Value>| match v {
        None | Some(Value::Null) => "nothing".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => {
            let text = v.to_string();
            if text.chars().count() > 60 {
                format!("{}…", text.chars().take(59).collect::<String>())
            } else {
                text
            }
        }
    };
    let mut read: Vec<String> = w
        .selections("facts")
        .into_iter()
        .map(|(step, field)| match field {
            Some(f) => format!(
                "{step}.{f} = {}",
                shown(facts.get(&step).and_then(|s| s.get(&f)))
            ),
            None => format!("{step} = {}", shown(facts.get(&step))),
        })
        .collect();
    read.extend(
        w.selections("inputs")
            .into_iter()
            .map(|(name, _)| format!("input {name} = {}", shown(inputs.get(&name)))),
    );
    if read.is_empty() {
        "the runbook's condition for it holds".to_string()
    } else {
        format!("the facts show {}", read.join(", "))
    }
}

/// `; blocker_pid = 4242 from blocking_tree.root_pid` for the rationale.
fn from_facts_note(c: &Contract, inputs: &BTreeMap<String, Value>) -> String {
    inputs
        .iter()
        .filter_map(|(name, v)| {
            let from = c.spec.inputs.get(name)?.from_fact.as_deref()?;
            Some(format!("; {name} = {v} from {from}"))
        })
        .collect()
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

/// The value a placeholder's name (`step.fact`, `before.step.fact` or a
/// bare `fact`, looked up in `order`) stands for, if the facts have it.
pub fn placeholder_value(
    name: &str,
    facts: &BTreeMap<String, Value>,
    before: &BTreeMap<String, Value>,
    order: &[String],
) -> Option<Value> {
    let (source, key) = match name.strip_prefix("before.") {
        Some(rest) => (before, rest),
        None => (facts, name),
    };
    match key.split_once('.') {
        Some((step, fact)) => source.get(step).and_then(|f| f.get(fact)).cloned(),
        None => order
            .iter()
            .find_map(|s| source.get(s).and_then(|f| f.get(key)))
            .cloned(),
    }
}

/// Fills `{step.fact}` and `{fact}` placeholders from the facts, and
/// `{before.step.fact}` from the facts as first gathered; unknown ones stay
/// as written.
pub fn fill_placeholders(
    text: &str,
    facts: &BTreeMap<String, Value>,
    before: &BTreeMap<String, Value>,
    order: &[String],
) -> String {
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
        let value = placeholder_value(name, facts, before, order);
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
    use crate::journal::ProposalState;

    const LOCKS: &str = r#"id: locks
title: Locks
version: 1
engines: [postgres]
inputs:
  blocker_pid: { type: integer, required: false, min: 1, from_fact: tree.root_pid }
  min_wait_seconds: { type: integer, default: 30, min: 1 }
steps:
  - id: tree
    kind: diagnostic
    sql: SELECT 1 AS root_pid
  - id: detail
    kind: diagnostic
    sql: SELECT :blocker_pid::int AS pid
  - id: terminate
    kind: remediation
    requires: [tree]
    when: "facts.tree.root_pid > 0 && inputs.min_wait_seconds < 10"
    sql: SELECT pg_terminate_backend(:blocker_pid::int)
    rollback: none
conclusions:
  - when: "true"
    text: done
"#;

    fn contract() -> Contract {
        let doc = crate::yaml::Doc::new("runbooks/locks.yaml", LOCKS);
        let analyzer = crate::sql::Analyzer::new(Default::default());
        crate::contract::load_doc(&doc, std::path::Path::new("runbooks"), &analyzer).expect("loads")
    }

    fn done(step: &str) -> ProposalState {
        ProposalState {
            step_id: Some(step.into()),
            status: Status::Done,
            ..Default::default()
        }
    }

    fn next(c: &Contract, state: &SessionState, inputs: Value) -> Proposal {
        plan(&AgentView {
            contract: c,
            state,
            inputs: &inputs,
            environment: "dev",
            policy_brief: "",
            budget: Default::default(),
        })
    }

    fn runnable_now(c: &Contract, state: &SessionState, inputs: Value) -> Vec<Runnable> {
        runnable(&AgentView {
            contract: c,
            state,
            inputs: &inputs,
            environment: "dev",
            policy_brief: "",
            budget: Default::default(),
        })
    }

    fn ready(step: &str, needs: Option<&str>) -> Runnable {
        Runnable {
            step: step.into(),
            needs: needs.map(str::to_string),
        }
    }

    #[test]
    fn runnable_steps_are_those_not_proposed_whose_requirements_are_done_and_condition_holds() {
        let c = contract();
        let inputs = json!({"min_wait_seconds": 5});
        // At the start: both diagnostics (the pid is optional); the
        // remediation requires the tree.
        assert_eq!(
            runnable_now(&c, &SessionState::default(), inputs.clone()),
            vec![ready("tree", None), ready("detail", None)]
        );
        // After the tree: its fact gives the pid; the remediation's
        // requirement is done and its condition holds.
        let mut state = SessionState {
            proposals: vec![done("tree")],
            ..Default::default()
        };
        state.facts.insert("tree".into(), json!({"root_pid": 4242}));
        assert_eq!(
            runnable_now(&c, &state, inputs.clone()),
            vec![ready("detail", None), ready("terminate", None)]
        );
        // A condition that does not hold takes the remediation out.
        assert_eq!(
            runnable_now(&c, &state, json!({"min_wait_seconds": 30})),
            vec![ready("detail", None)]
        );
        // A step is proposed once, whatever became of it.
        state.proposals.push(ProposalState {
            step_id: Some("terminate".into()),
            status: Status::Denied,
            ..Default::default()
        });
        assert_eq!(
            runnable_now(&c, &state, inputs),
            vec![ready("detail", None)]
        );
    }

    #[test]
    fn a_runnable_step_names_the_input_no_one_gave_so_a_model_can_pass_it() {
        let doc = crate::yaml::Doc::new(
            "runbooks/bloat.yaml",
            r#"id: bloat
title: Bloat
version: 1
engines: [postgres]
inputs:
  table_name: { type: identifier }
steps:
  - id: overview
    kind: diagnostic
    sql: SELECT 1 AS tables
  - id: one_table
    kind: diagnostic
    sql: SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = :table_name
conclusions:
  - when: "true"
    text: done
"#,
        );
        let analyzer = crate::sql::Analyzer::new(Default::default());
        let c = crate::contract::load_doc(&doc, std::path::Path::new("runbooks"), &analyzer)
            .expect("loads");
        assert_eq!(
            runnable_now(&c, &SessionState::default(), json!({})),
            vec![
                ready("overview", None),
                ready("one_table", Some("table_name"))
            ]
        );
        assert_eq!(
            runnable_now(
                &c,
                &SessionState::default(),
                json!({"table_name": "orders"})
            ),
            vec![ready("overview", None), ready("one_table", None)]
        );
    }

    #[test]
    fn an_input_missing_from_the_session_is_proposed_from_the_fact_its_contract_names() {
        let c = contract();
        let mut state = SessionState {
            proposals: vec![done("tree")],
            ..Default::default()
        };
        state.facts.insert("tree".into(), json!({"root_pid": 4242}));
        let Proposal::Step {
            step_id,
            inputs,
            rationale,
        } = next(&c, &state, json!({"min_wait_seconds": 5}))
        else {
            panic!("expected a step");
        };
        assert_eq!(step_id, "detail");
        assert_eq!(
            inputs,
            BTreeMap::from([("blocker_pid".into(), json!(4242))])
        );
        assert!(
            rationale
                .unwrap_or_default()
                .contains("blocker_pid = 4242 from tree.root_pid")
        );
    }

    #[test]
    fn a_change_is_proposed_with_the_values_its_condition_read_not_the_expression() {
        let c = contract();
        let mut state = SessionState {
            proposals: vec![done("tree"), done("detail")],
            ..Default::default()
        };
        state.facts.insert("tree".into(), json!({"root_pid": 4242}));
        let Proposal::Step {
            step_id, rationale, ..
        } = next(&c, &state, json!({"min_wait_seconds": 5}))
        else {
            panic!("expected a step");
        };
        assert_eq!(step_id, "terminate");
        assert_eq!(
            rationale.as_deref(),
            Some(
                "the facts show tree.root_pid = 4242, input min_wait_seconds = 5; \
                 blocker_pid = 4242 from tree.root_pid"
            )
        );

        // A value the session was given wins over the fact.
        let Proposal::Step { inputs, .. } =
            next(&c, &state, json!({"min_wait_seconds": 5, "blocker_pid": 7}))
        else {
            panic!("expected a step");
        };
        assert!(inputs.is_empty(), "{inputs:?}");
    }

    #[test]
    fn a_step_needing_a_newer_server_is_not_proposed_and_the_conclusion_says_so() {
        let yaml = LOCKS.replace(
            "    rollback: none\n",
            "    rollback: none\n    min_version: 16\n",
        );
        let doc = crate::yaml::Doc::new("runbooks/locks.yaml", &yaml);
        let analyzer = crate::sql::Analyzer::new(Default::default());
        let mut c = crate::contract::load_doc(&doc, std::path::Path::new("runbooks"), &analyzer)
            .expect("loads");
        let mut state = SessionState {
            proposals: vec![done("tree"), done("detail")],
            ..Default::default()
        };
        state.facts.insert("tree".into(), json!({"root_pid": 4242}));
        // On 16 the change is proposed as usual ...
        let mut on_16 = c.clone();
        on_16.keep_steps_for(16);
        assert!(matches!(
            next(&on_16, &state, json!({"min_wait_seconds": 5})),
            Proposal::Step { step_id, .. } if step_id == "terminate"
        ));
        // ... on 15 the planner concludes instead, and says why; an
        // agent's tool list does not offer it either.
        c.keep_steps_for(15);
        let tools: Vec<String> = crate::agent::tools::tool_specs(&c)
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert!(tools.contains(&"tree".to_string()), "{tools:?}");
        assert!(!tools.contains(&"terminate".to_string()), "{tools:?}");
        assert_eq!(
            next(&c, &state, json!({"min_wait_seconds": 5})),
            Proposal::Conclude {
                diagnosis: "done".into(),
                recommendation: Some(
                    "terminate was left out: it needs PostgreSQL 16 or later, and this server is PostgreSQL 15"
                        .into()
                ),
            }
        );
    }

    #[test]
    fn a_fact_that_is_not_a_valid_value_of_the_input_is_not_used() {
        let c = contract();
        for bad in [json!(0), json!("4242; DROP TABLE t"), Value::Null] {
            let mut state = SessionState {
                proposals: vec![done("tree")],
                ..Default::default()
            };
            state.facts.insert("tree".into(), json!({"root_pid": bad}));
            // The optional input binds as NULL; nothing comes from the fact.
            let Proposal::Step { inputs, .. } = next(&c, &state, json!({"min_wait_seconds": 5}))
            else {
                panic!("expected a step");
            };
            assert!(inputs.is_empty(), "{bad}: {inputs:?}");
        }
    }

    #[test]
    fn placeholders_fill_from_step_and_bare_facts() {
        let facts = BTreeMap::from([
            ("a".to_string(), json!({"idle": 25, "app": "billing"})),
            ("b".to_string(), json!({"idle": 3})),
        ]);
        let order = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            fill_placeholders(
                "{idle} idle ({b.idle} in b, was {before.b.idle}), app {app}, {nope}",
                &facts,
                &BTreeMap::from([("b".to_string(), json!({"idle": 9}))]),
                &order
            ),
            "25 idle (3 in b, was 9), app billing, {nope}"
        );
        assert_eq!(
            fill_placeholders("open { brace", &facts, &BTreeMap::new(), &order),
            "open { brace"
        );
    }
}
