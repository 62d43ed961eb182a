//! What a `ward mcp` client sees: one tool per runbook step (its inputs
//! typed by the contract, as JSON Schema), `query`, `explain`, `conclude`
//! and `status`, and how a call becomes a [`Proposal`]. Arguments are
//! checked by the same parser the model agents use
//! ([`crate::agent::tools::parse_call`]); nothing here runs anything, and
//! there is no tool that approves.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::{Map, Value, json};

use crate::agent::Proposal;
use crate::agent::tools::{ADHOC_TOOL, CONCLUDE_TOOL, tool_specs};
use crate::contract::{Adhoc, Contract, StepKind};

/// Between a runbook's id and a step's in a step tool's name.
pub const SEPARATOR: &str = "__";
/// Ad-hoc read-only SQL, gated like everything else.
pub const QUERY: &str = "query";
/// The gate's verdict on SQL; nothing runs.
pub const EXPLAIN: &str = "explain";
/// Ends the session with a diagnosis.
pub const CONCLUDE: &str = "conclude";
/// Where the session stands; waits for a proposal awaiting approval.
pub const STATUS: &str = "status";

/// The longest a call may wait for an approval (`wait_seconds`): a client
/// that wants longer calls `status` again.
pub const MAX_WAIT: Duration = Duration::from_secs(600);

/// What a tool call asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// A proposal for the session of `runbook` (`None`: the session's
    /// runbook, whichever it is).
    Propose {
        runbook: Option<String>,
        proposal: Proposal,
        wait: Duration,
    },
    Explain {
        sql: String,
    },
    Status {
        proposal: Option<String>,
        wait: Duration,
    },
}

/// The step tool's name: `pg-lock-contention__blocking_tree`.
pub fn step_tool(runbook: &str, step: &str) -> String {
    format!("{runbook}{SEPARATOR}{step}")
}

fn schema(v: Value) -> Arc<JsonObject> {
    Arc::new(match v {
        Value::Object(m) => m,
        _ => Map::new(),
    })
}

fn wait_property() -> Value {
    json!({
        "type": "integer",
        "minimum": 0,
        "maximum": MAX_WAIT.as_secs(),
        "description": "When the call needs a human's approval, wait up to this many seconds for it (and for the statement to run) before answering; 0 or absent: answer at once with how to approve.",
    })
}

/// Every tool, step tools first (runbook by runbook, in file order).
pub fn tools(runbooks: &[Contract]) -> Vec<Tool> {
    let mut out = Vec::new();
    for c in runbooks {
        let specs = tool_specs(c);
        for step in &c.steps {
            let Some(spec) = specs.iter().find(|t| t.name == step.spec.id) else {
                continue;
            };
            let mut parameters = spec.parameters.clone();
            if let Some(props) = parameters
                .get_mut("properties")
                .and_then(Value::as_object_mut)
            {
                props.insert("wait_seconds".into(), wait_property());
            }
            let diagnostic = step.spec.kind == StepKind::Diagnostic;
            let mut description = format!("[{}: {}] {}", c.id(), c.spec.title, spec.description);
            if !diagnostic {
                description.push_str(" Changes the database: the policy gate decides; it may wait for a human's approval (the result says who may approve and how) or be denied.");
            }
            let mut tool = Tool::default();
            tool.name = step_tool(c.id(), &step.spec.id).into();
            tool.title = step.spec.title.clone();
            tool.description = Some(description.into());
            tool.input_schema = schema(parameters);
            tool.annotations = Some(
                ToolAnnotations::new()
                    .read_only(diagnostic)
                    .destructive(!diagnostic)
                    .open_world(false),
            );
            out.push(tool);
        }
    }
    let adhoc: Vec<&str> = runbooks
        .iter()
        .filter(|c| c.spec.adhoc == Adhoc::ReadOnly)
        .map(Contract::id)
        .collect();
    if !adhoc.is_empty() {
        out.push(fixed(
            QUERY,
            "Run your own read-only SQL in the session (it is classified from its text, gated by the policy and runs in a read-only transaction; anything but a read is denied). You get the summary and facts, never raw rows. Say why.",
            json!({
                "type": "object",
                "properties": {
                    "sql": {"type": "string"},
                    "reason": {"type": "string", "description": "Why you run it (goes into the audit log)."},
                    "runbook": {"type": "string", "enum": adhoc, "description": "The runbook the session investigates, when no session is open yet and several runbooks are served."},
                    "wait_seconds": wait_property(),
                },
                "required": ["sql", "reason"],
                "additionalProperties": false,
            }),
            true,
        ));
    }
    out.push(fixed(
        EXPLAIN,
        "The gate's verdict on SQL for this target's environment now: risk class, statement kinds, locks, the policy's decision and the rules that made it. Nothing runs and nothing is logged.",
        json!({
            "type": "object",
            "properties": {"sql": {"type": "string"}},
            "required": ["sql"],
            "additionalProperties": false,
        }),
        true,
    ));
    out.push(fixed(
        CONCLUDE,
        "End the investigation with a diagnosis (and a recommendation). After a change ran, the runbook's diagnostics run again first; the session's log is sealed. A later step call starts a new session.",
        json!({
            "type": "object",
            "properties": {
                "diagnosis": {"type": "string"},
                "recommendation": {"type": "string"},
            },
            "required": ["diagnosis"],
            "additionalProperties": false,
        }),
        false,
    ));
    out.push(fixed(
        STATUS,
        "Where the session stands: its id and log, and each proposal's status (done, awaiting approval, denied, ...), with the summary and facts of what ran. `proposal` narrows it to one; `wait_seconds` first waits (at most that long) until a proposal awaiting approval was approved and ran, or was rejected.",
        json!({
            "type": "object",
            "properties": {
                "proposal": {"type": "string", "description": "A proposal id (8+ characters) from an earlier result."},
                "wait_seconds": wait_property(),
            },
            "additionalProperties": false,
        }),
        true,
    ));
    out
}

fn fixed(
    name: &'static str,
    description: &'static str,
    parameters: Value,
    read_only: bool,
) -> Tool {
    let mut tool = Tool::default();
    tool.name = name.into();
    tool.description = Some(description.into());
    tool.input_schema = schema(parameters);
    tool.annotations = Some(
        ToolAnnotations::new()
            .read_only(read_only)
            .destructive(false)
            .open_world(false),
    );
    tool
}

/// The call a tool invocation makes, or what is wrong with it (answered
/// to the client as a tool error; nothing runs).
pub fn parse(runbooks: &[Contract], name: &str, args: &Map<String, Value>) -> Result<Call, String> {
    let mut args = args.clone();
    let wait = match args.remove("wait_seconds") {
        None | Some(Value::Null) => Duration::ZERO,
        Some(v) => match v.as_u64() {
            Some(s) => Duration::from_secs(s).min(MAX_WAIT),
            None => {
                return Err(format!(
                    "`wait_seconds` must be a whole number of seconds, not {v}"
                ));
            }
        },
    };
    match name {
        EXPLAIN => {
            let sql = text(&args, "sql").ok_or("`explain` needs a non-empty string `sql`")?;
            Ok(Call::Explain { sql })
        }
        STATUS => Ok(Call::Status {
            proposal: text(&args, "proposal"),
            wait,
        }),
        CONCLUDE => {
            // Any runbook parses a conclusion alike.
            let c = runbooks.first().ok_or("no runbook is served")?;
            let proposal =
                crate::agent::tools::parse_call(c, CONCLUDE_TOOL, &Value::Object(args).to_string())
                    .map_err(|e| e.to_string())?;
            Ok(Call::Propose {
                runbook: None,
                proposal,
                wait,
            })
        }
        QUERY => {
            let runbook = match args.remove("runbook") {
                None | Some(Value::Null) => None,
                Some(Value::String(r)) => Some(r),
                Some(v) => return Err(format!("`runbook` must be a runbook id, not {v}")),
            };
            let c = match &runbook {
                Some(id) => runbooks
                    .iter()
                    .find(|c| c.id() == id)
                    .ok_or_else(|| format!("no runbook `{id}` is served here"))?,
                None => runbooks
                    .iter()
                    .find(|c| c.spec.adhoc == Adhoc::ReadOnly)
                    .ok_or("no runbook served here allows ad-hoc queries")?,
            };
            let proposal =
                crate::agent::tools::parse_call(c, ADHOC_TOOL, &Value::Object(args).to_string())
                    .map_err(|e| e.to_string())?;
            Ok(Call::Propose {
                runbook,
                proposal,
                wait,
            })
        }
        _ => {
            let (c, step) = runbooks
                .iter()
                .find_map(|c| {
                    let step = name.strip_prefix(c.id())?.strip_prefix(SEPARATOR)?;
                    c.step(step).map(|_| (c, step))
                })
                .ok_or_else(|| format!("no tool `{name}`: the tools are the runbooks' steps (`RUNBOOK{SEPARATOR}STEP`), {QUERY}, {EXPLAIN}, {CONCLUDE} and {STATUS}; none approves"))?;
            let proposal =
                crate::agent::tools::parse_call(c, step, &Value::Object(args).to_string())
                    .map_err(|e| e.to_string())?;
            Ok(Call::Propose {
                runbook: Some(c.id().to_string()),
                proposal,
                wait,
            })
        }
    }
}

fn text(args: &Map<String, Value>, key: &str) -> Option<String> {
    args.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runbooks() -> Vec<Contract> {
        let (contracts, problems) = crate::contract::load_dir(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks"),
            &crate::sql::Analyzer::default(),
        );
        assert!(problems.is_empty(), "{problems:?}");
        contracts
            .into_iter()
            .filter(|c| c.id() == "pg-lock-contention")
            .collect()
    }

    #[test]
    fn a_step_tool_takes_the_inputs_its_sql_uses_typed_by_the_contract() {
        let tools = tools(&runbooks());
        let t = tools
            .iter()
            .find(|t| t.name == "pg-lock-contention__terminate_root_blocker")
            .expect("the step's tool");
        let props = t.input_schema["properties"]
            .as_object()
            .expect("properties");
        assert_eq!(props["blocker_pid"]["type"], "integer");
        assert_eq!(props["blocker_pid"]["minimum"], json!(0.0));
        assert!(props.contains_key("wait_seconds"));
        assert_eq!(t.input_schema["additionalProperties"], false);
        let hints = t.annotations.as_ref().expect("annotations");
        assert_eq!(hints.read_only_hint, Some(false));
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        assert!(
            names.ends_with(&[QUERY, EXPLAIN, CONCLUDE, STATUS]),
            "{names:?}"
        );
        assert!(!names.iter().any(|n| n.contains("approve")), "{names:?}");
    }

    #[test]
    fn a_step_call_becomes_that_steps_proposal_and_its_wait_is_capped() {
        let rb = runbooks();
        let args = json!({"blocker_pid": 4242, "wait_seconds": 100_000});
        let call = parse(
            &rb,
            "pg-lock-contention__terminate_root_blocker",
            args.as_object().expect("object"),
        )
        .expect("parses");
        assert_eq!(
            call,
            Call::Propose {
                runbook: Some("pg-lock-contention".into()),
                proposal: Proposal::Step {
                    step_id: "terminate_root_blocker".into(),
                    inputs: [("blocker_pid".to_string(), json!(4242))].into(),
                    rationale: None,
                },
                wait: MAX_WAIT,
            }
        );
    }

    #[test]
    fn a_call_with_a_bad_input_or_an_unknown_name_is_refused_before_anything_runs() {
        let rb = runbooks();
        let bad = parse(
            &rb,
            "pg-lock-contention__terminate_root_blocker",
            json!({"blocker_pid": "1; DROP TABLE x"})
                .as_object()
                .expect("object"),
        )
        .expect_err("refused");
        assert!(bad.contains("blocker_pid"), "{bad}");
        let approve = parse(&rb, "approve", &Map::new()).expect_err("no such tool");
        assert!(approve.contains("none approves"), "{approve}");
    }
}
