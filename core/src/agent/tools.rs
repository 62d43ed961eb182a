//! The tools a model may call, generated from the contract, and the one
//! place a model's tool call becomes a [`Proposal`].
//!
//! One function per runbook step (its parameters are the JSON Schema of the
//! contract's inputs), `adhoc_query` only when the contract says `adhoc:
//! read_only`, and `conclude`. There is no tool that approves, and a call
//! that is not one of these, or whose arguments do not validate, is an
//! error answered to the model, never executed.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::Proposal;
use crate::contract::{Adhoc, Contract, InputError, InputSpec, InputType, check_value};
// The names belong to the contract, which refuses them as step ids; the
// tools only use them.
pub use crate::contract::reserved::{ADHOC_TOOL, CONCLUDE_TOOL, RUN_STEP_TOOL};

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments.
    pub parameters: Value,
}

/// The inputs of the contract that step `step` takes (its SQL uses them),
/// in the contract's order.
pub fn step_inputs<'a>(contract: &'a Contract, step: &crate::contract::Step) -> Vec<&'a String> {
    let s = &step.spec;
    contract
        .spec
        .inputs
        .keys()
        .filter(|name| {
            std::iter::once(&s.sql)
                .chain(s.sql_by_version.values())
                .any(|sql| mentions(sql, name))
        })
        .collect()
}

/// Every tool of `contract`, steps first, in file order.
pub fn tool_specs(contract: &Contract) -> Vec<ToolSpec> {
    let mut out = Vec::new();
    let inputs = &contract.spec.inputs;
    for step in &contract.steps {
        let s = &step.spec;
        let used = step_inputs(contract, step);
        let mut props = Map::new();
        for name in &used {
            props.insert((*name).clone(), input_schema(&inputs[*name]));
        }
        let mut description = format!("{} step", s.kind.name());
        if let Some(t) = &s.title {
            description.push_str(": ");
            description.push_str(t);
        }
        if let Some(d) = &s.description {
            description.push_str(". ");
            description.push_str(d.trim());
        }
        if !s.requires.is_empty() {
            description.push_str(&format!(" Requires: {}.", s.requires.join(", ")));
        }
        out.push(ToolSpec {
            name: s.id.clone(),
            description,
            parameters: json!({
                "type": "object",
                "properties": props,
                "additionalProperties": false,
            }),
        });
    }
    if contract.spec.adhoc == Adhoc::ReadOnly {
        out.push(ToolSpec {
            name: ADHOC_TOOL.into(),
            description: "Run your own read-only SQL (it is classified from its text and runs in a read-only transaction). Say why.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "sql": {"type": "string"},
                    "reason": {"type": "string"},
                },
                "required": ["sql", "reason"],
                "additionalProperties": false,
            }),
        });
    }
    out.push(ToolSpec {
        name: CONCLUDE_TOOL.into(),
        description: "End the investigation with a diagnosis and a recommendation.".into(),
        parameters: json!({
            "type": "object",
            "properties": {
                "diagnosis": {"type": "string"},
                "recommendation": {"type": "string"},
            },
            "required": ["diagnosis"],
            "additionalProperties": false,
        }),
    });
    out
}

/// The tools of `contract` with one generic [`RUN_STEP_TOOL`] in place of a
/// tool per step: its `step` is one of the step ids, its `inputs` an object
/// of the step's inputs. The per-step typing lives in the contract (the
/// caller describes each step and input once, in its own words) and every
/// value is checked against it by [`parse_run_step`], as by [`parse_call`].
pub fn generic_tool_specs(contract: &Contract) -> Vec<ToolSpec> {
    let ids: Vec<&str> = contract.steps.iter().map(|s| s.spec.id.as_str()).collect();
    let mut out = vec![ToolSpec {
        name: RUN_STEP_TOOL.into(),
        description: "Run one step of the runbook.".into(),
        parameters: json!({
            "type": "object",
            "properties": {
                "step": {"type": "string", "enum": ids},
                "inputs": {"type": "object"},
            },
            "required": ["step"],
            "additionalProperties": false,
        }),
    }];
    out.extend(
        tool_specs(contract)
            .into_iter()
            .filter(|t| contract.step(&t.name).is_none()),
    );
    out
}

/// A call of [`RUN_STEP_TOOL`] as a proposal: `{"step": id, "inputs":
/// {...}}` is the call of step `id` with those arguments.
pub fn parse_run_step(contract: &Contract, arguments: &str) -> Result<Proposal, CallError> {
    let tool = || RUN_STEP_TOOL.to_string();
    let args: Value = if arguments.trim().is_empty() {
        json!({})
    } else {
        serde_json::from_str(arguments).map_err(|source| CallError::Json {
            tool: tool(),
            source,
        })?
    };
    let Value::Object(mut args) = args else {
        return Err(CallError::NotAnObject { tool: tool() });
    };
    let known = || contract.steps.iter().map(|s| s.spec.id.clone()).collect();
    let step = match args.remove("step") {
        Some(Value::String(s)) if contract.step(&s).is_some() => s,
        Some(Value::String(s)) => {
            return Err(CallError::UnknownStep {
                step: s,
                runbook: contract.id().to_string(),
                known: known(),
            });
        }
        _ => return Err(CallError::MissingStep { known: known() }),
    };
    let inputs = match args.remove("inputs") {
        None | Some(Value::Null) => json!({}),
        Some(v @ Value::Object(_)) => v,
        Some(_) => return Err(CallError::NotAnObject { tool: step }),
    };
    if let Some(key) = args.keys().next() {
        return Err(CallError::NoSuchInput {
            tool: tool(),
            input: key.clone(),
        });
    }
    parse_call(contract, &step, &inputs.to_string())
}

/// Whether `sql` uses the parameter `:name`.
fn mentions(sql: &str, name: &str) -> bool {
    let pat = format!(":{name}");
    sql.match_indices(&pat).any(|(i, _)| {
        let after = sql[i + pat.len()..].chars().next();
        let before = sql[..i].chars().next_back();
        !after.is_some_and(|c| c.is_alphanumeric() || c == '_') && before != Some(':')
    })
}

fn input_schema(spec: &InputSpec) -> Value {
    let mut s = Map::new();
    let ty = match spec.ty {
        InputType::Integer => "integer",
        InputType::Number => "number",
        InputType::Boolean => "boolean",
        _ => "string",
    };
    s.insert("type".into(), json!(ty));
    if let Some(min) = spec.min {
        s.insert("minimum".into(), json!(min));
    }
    if let Some(max) = spec.max {
        s.insert("maximum".into(), json!(max));
    }
    if let Some(values) = &spec.values {
        s.insert("enum".into(), json!(values));
    }
    if let Some(d) = &spec.default {
        s.insert(
            "default".into(),
            serde_json::to_value(d).unwrap_or(Value::Null),
        );
    }
    let mut description = match spec.ty {
        InputType::Identifier => "a SQL identifier (validated and quoted)".to_string(),
        InputType::IdentifierList => {
            "plain SQL identifiers separated by commas (each validated and quoted)".to_string()
        }
        InputType::Duration => "a duration such as 30s, 10m, 1h".to_string(),
        _ => String::new(),
    };
    if let Some(d) = &spec.description {
        if !description.is_empty() {
            description.push_str("; ");
        }
        description.push_str(d);
    }
    if !description.is_empty() {
        s.insert("description".into(), json!(description));
    }
    Value::Object(s)
}

/// Why a model's tool call is not a proposal. It is answered to the model
/// as a tool error and never executed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(
        "there is no tool that approves: approvals come only from humans, in ward, after the policy gate; propose a step and let the operator decide"
    )]
    Approval,
    #[error("the arguments of `{tool}` are not valid JSON: {source}")]
    Json {
        tool: String,
        source: serde_json::Error,
    },
    #[error("the arguments of `{tool}` must be a JSON object")]
    NotAnObject { tool: String },
    #[error("`{tool}` needs a non-empty string `{key}`")]
    MissingText { tool: String, key: &'static str },
    #[error("runbook `{runbook}` does not allow ad-hoc queries; use its steps")]
    AdhocNotAllowed { runbook: String },
    #[error("`{tool}` is not a tool of runbook `{runbook}`; the tools are: {}", known.join(", "))]
    UnknownTool {
        tool: String,
        runbook: String,
        known: Vec<String>,
    },
    #[error("`{RUN_STEP_TOOL}` needs `step`, one of: {}", known.join(", "))]
    MissingStep { known: Vec<String> },
    #[error("`{step}` is not a step of runbook `{runbook}`; the steps are: {}", known.join(", "))]
    UnknownStep {
        step: String,
        runbook: String,
        known: Vec<String>,
    },
    #[error("`{tool}` has no input `{input}`")]
    NoSuchInput { tool: String, input: String },
    #[error("`{tool}` does not take the input `{input}`")]
    InputNotTaken { tool: String, input: String },
    #[error("input `{input}`: {source}")]
    Unrepresentable {
        input: String,
        source: serde_yaml::Error,
    },
    #[error("input `{input}`: {source}")]
    BadInput { input: String, source: InputError },
}

/// Turns a model's tool call into a proposal, or says what is wrong with it
/// (to be answered to the model as a tool error).
pub fn parse_call(contract: &Contract, name: &str, arguments: &str) -> Result<Proposal, CallError> {
    let tool = || name.to_string();
    let args: Value = if arguments.trim().is_empty() {
        json!({})
    } else {
        serde_json::from_str(arguments).map_err(|source| CallError::Json {
            tool: tool(),
            source,
        })?
    };
    let Value::Object(args) = args else {
        return Err(CallError::NotAnObject { tool: tool() });
    };
    let text = |key: &'static str| -> Result<String, CallError> {
        match args.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
            _ => Err(CallError::MissingText { tool: tool(), key }),
        }
    };
    match name {
        CONCLUDE_TOOL => Ok(Proposal::Conclude {
            diagnosis: text("diagnosis")?,
            recommendation: text("recommendation").ok(),
        }),
        ADHOC_TOOL if contract.spec.adhoc == Adhoc::ReadOnly => Ok(Proposal::Adhoc {
            sql: text("sql")?,
            reason: text("reason")?,
        }),
        ADHOC_TOOL => Err(CallError::AdhocNotAllowed {
            runbook: contract.id().to_string(),
        }),
        _ => {
            let Some(step) = contract.step(name) else {
                return Err(CallError::UnknownTool {
                    tool: tool(),
                    runbook: contract.id().to_string(),
                    known: tool_specs(contract).into_iter().map(|t| t.name).collect(),
                });
            };
            let mut inputs = BTreeMap::new();
            for (key, value) in args {
                let Some(spec) = contract.spec.inputs.get(&key) else {
                    return Err(CallError::NoSuchInput {
                        tool: tool(),
                        input: key,
                    });
                };
                if !std::iter::once(&step.spec.sql)
                    .chain(step.spec.sql_by_version.values())
                    .any(|sql| mentions(sql, &key))
                {
                    return Err(CallError::InputNotTaken {
                        tool: tool(),
                        input: key,
                    });
                }
                let as_yaml = match serde_yaml::to_value(&value) {
                    Ok(v) => v,
                    Err(source) => return Err(CallError::Unrepresentable { input: key, source }),
                };
                if let Err(source) = check_value(spec, &as_yaml) {
                    return Err(CallError::BadInput { input: key, source });
                }
                inputs.insert(key, value);
            }
            Ok(Proposal::Step {
                step_id: step.spec.id.clone(),
                inputs,
                rationale: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUNBOOK: &str = r#"id: locks
title: Locks
version: 1
engines: [postgres]
inputs:
  blocker_pid: { type: integer, required: false, min: 1 }
  min_wait_seconds: { type: integer, default: 30, min: 1 }
steps:
  - id: tree
    kind: diagnostic
    sql: SELECT 1 AS root_pid
  - id: terminate
    kind: remediation
    requires: [tree]
    sql: SELECT pg_terminate_backend(:blocker_pid::int)
    rollback: none
"#;

    fn contract() -> Contract {
        let doc = crate::yaml::Doc::new("runbooks/locks.yaml", RUNBOOK);
        let analyzer = crate::sql::Analyzer::new(Default::default());
        crate::contract::load_doc(&doc, std::path::Path::new("runbooks"), &analyzer).expect("loads")
    }

    #[test]
    fn a_valid_step_call_becomes_a_proposal_with_its_inputs() {
        let proposal = parse_call(&contract(), "terminate", r#"{"blocker_pid": 42}"#).expect("ok");
        assert_eq!(
            proposal,
            Proposal::Step {
                step_id: "terminate".into(),
                inputs: BTreeMap::from([("blocker_pid".to_string(), json!(42))]),
                rationale: None,
            }
        );
    }

    #[test]
    fn a_run_step_call_is_the_call_of_its_step_and_is_checked_the_same_way() {
        let c = contract();
        let generic = parse_run_step(
            &c,
            r#"{"step": "terminate", "inputs": {"blocker_pid": 42}}"#,
        );
        assert_eq!(
            generic.expect("ok"),
            parse_call(&c, "terminate", r#"{"blocker_pid": 42}"#).expect("ok")
        );
        assert_eq!(
            parse_run_step(&c, r#"{"step": "tree"}"#).expect("ok"),
            Proposal::Step {
                step_id: "tree".into(),
                inputs: BTreeMap::new(),
                rationale: None,
            }
        );
        let refused = |args: &str| parse_run_step(&c, args).unwrap_err().to_string();
        assert_eq!(
            refused(r#"{"step": "terminate", "inputs": {"blocker_pid": 0}}"#),
            "input `blocker_pid`: 0 is below the minimum 1"
        );
        assert_eq!(
            refused(r#"{"step": "tree", "inputs": {"blocker_pid": 5}}"#),
            "`tree` does not take the input `blocker_pid`"
        );
        assert_eq!(
            refused(r#"{"step": "drop_everything"}"#),
            "`drop_everything` is not a step of runbook `locks`; the steps are: tree, terminate"
        );
        assert_eq!(
            refused(r#"{"inputs": {}}"#),
            "`run_step` needs `step`, one of: tree, terminate"
        );
        assert_eq!(
            generic_tool_specs(&c)
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>(),
            ["run_step", "conclude"]
        );
        assert_eq!(
            generic_tool_specs(&c)[0].parameters["properties"]["step"]["enum"],
            json!(["tree", "terminate"])
        );
    }

    #[test]
    fn a_bad_call_is_a_typed_error_that_tells_the_model_what_to_fix() {
        let c = contract();
        let err = parse_call(&c, "terminate", "{broken").unwrap_err();
        assert!(
            matches!(&err, CallError::Json { tool, .. } if tool == "terminate"),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("the arguments of `terminate` are not valid JSON: "),
            "{err}"
        );

        let err = parse_call(&c, "terminate", r#"{"blocker_pid": 0}"#).unwrap_err();
        let CallError::BadInput { input, source } = &err else {
            panic!("not a bad input: {err:?}");
        };
        assert_eq!(
            (input.as_str(), source),
            (
                "blocker_pid",
                &InputError::BelowMinimum {
                    value: 0.0,
                    min: 1.0
                }
            )
        );
        assert_eq!(
            err.to_string(),
            "input `blocker_pid`: 0 is below the minimum 1"
        );

        let err = parse_call(&c, "terminate", r#"{"min_wait_seconds": 5}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`terminate` does not take the input `min_wait_seconds`"
        );

        let err = parse_call(&c, "drop_everything", "{}").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`drop_everything` is not a tool of runbook `locks`; the tools are: tree, terminate, conclude"
        );

        let err = parse_call(&c, ADHOC_TOOL, r#"{"sql": "SELECT 1", "reason": "x"}"#).unwrap_err();
        assert!(
            matches!(&err, CallError::AdhocNotAllowed { runbook } if runbook == "locks"),
            "{err:?}"
        );
        let err = parse_call(&c, CONCLUDE_TOOL, r#"{"diagnosis": " "}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`conclude` needs a non-empty string `diagnosis`"
        );
    }
}
