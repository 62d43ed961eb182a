//! The step API the session engine calls: resolve a runbook step and its
//! inputs to concrete SQL and binds, (the caller gates it,) execute it and
//! summarize what came back.
//!
//! Input values are bound as parameters; `identifier` inputs, which cannot be
//! bound, are validated and double-quoted, and the SQL is analyzed again with
//! the real identifiers so the gate sees exactly what will run.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Bind, Column, ExecError, Executor, Limits, Mode, Outcome, RowEvent};
use crate::contract::{Contract, InputSpec, InputType, StepKind, SummarizeSpec, check_value};
use crate::evidence::{Evidence, EvidenceConfig, Summarizer};
use crate::sql::params::{self, Substitution};
use crate::sql::{Analysis, Analyzer, Engine, Risk};

/// Where a statement comes from: a step of the runbook, or SQL the agent
/// wrote itself (allowed only where the runbook says `adhoc: read_only`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Step(String),
    Adhoc,
}

impl Origin {
    /// The runbook step's id; `None` for ad-hoc SQL.
    pub fn step_id(&self) -> Option<&str> {
        match self {
            Origin::Step(id) => Some(id),
            Origin::Adhoc => None,
        }
    }

    /// The step id, or `adhoc`: the word results and policies use.
    pub fn label(&self) -> &str {
        self.step_id().unwrap_or("adhoc")
    }
}

/// A step ready to gate and run.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub runbook: String,
    pub origin: Origin,
    pub kind: StepKind,
    pub engine: Engine,
    /// The SQL that will run, with positional placeholders.
    pub sql: String,
    pub binds: Vec<Bind>,
    /// Analysis of exactly `sql`.
    pub analysis: Analysis,
    /// The analysis raised (never lowered) by the runbook's declared risk.
    pub risk: Risk,
    pub mode: Mode,
    pub limits: Limits,
    pub summarize: Option<SummarizeSpec>,
    pub redact: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    #[error("runbook `{runbook}` has no step `{step}`")]
    NoSuchStep { runbook: String, step: String },
    #[error("runbook `{0}` does not support the {1} engine")]
    Engine(String, Engine),
    #[error("unknown input `{0}`; the runbook's inputs are: {1}")]
    UnknownInput(String, String),
    #[error("input `{0}` is required; give it with --input {0}=VALUE")]
    MissingInput(String),
    #[error("input `{name}`: {why}")]
    BadInput { name: String, why: String },
    #[error("input `{name}`: {source}")]
    BadIdentifier {
        name: String,
        source: crate::sql::params::IdentifierError,
    },
    #[error(
        "the step reads extension `{0}`, which is not installed on the target (CREATE EXTENSION {0}, or pick another runbook)"
    )]
    MissingExtension(String),
    #[error("`@extschema:{0}` is not closed with `@`; write @extschema:EXTENSION@")]
    BadExtensionReference(String),
}

/// The schema a runbook's `@extschema:NAME@` stands for without a server to
/// ask (text-only analysis, recorded evidence).
const OFFLINE_EXTENSION_SCHEMA: &str = "public";

/// Replaces every `@extschema:NAME@` with the quoted schema extension NAME
/// is installed in on the server (as PostgreSQL's own extension scripts
/// write it). ward pins search_path to `pg_catalog, pg_temp`, so runbooks
/// name extension objects through their schema, never through the path.
/// Without server facts the schema is `public`.
pub fn expand_extension_schemas(
    sql: &str,
    server: Option<&crate::sql::ServerFacts>,
) -> Result<String, ResolveError> {
    const OPEN: &str = "@extschema:";
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find(OPEN) {
        out.push_str(&rest[..at]);
        let after = &rest[at + OPEN.len()..];
        let Some(end) = after.find('@') else {
            return Err(ResolveError::BadExtensionReference(
                after.chars().take(40).collect(),
            ));
        };
        let name = &after[..end];
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(ResolveError::BadExtensionReference(name.to_string()));
        }
        let schema = match server {
            None => OFFLINE_EXTENSION_SCHEMA,
            Some(s) => s
                .extension_schemas
                .get(name)
                .map(String::as_str)
                .ok_or_else(|| ResolveError::MissingExtension(name.to_string()))?,
        };
        out.push('"');
        out.push_str(&schema.replace('"', "\"\""));
        out.push('"');
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Statements PostgreSQL refuses to run inside a transaction block.
fn needs_autocommit(analysis: &Analysis) -> bool {
    analysis.statements.iter().any(|s| {
        matches!(
            s.kind.as_str(),
            "vacuum" | "vacuum_full" | "create_database" | "drop_database" | "alter_system"
        ) || (s.concurrently
            && matches!(s.kind.as_str(), "create_index" | "drop_index" | "reindex"))
    })
}

/// The role a step runs as: reads as the read role; a remediation whose
/// only effect is signalling backends (every function it calls that is not
/// pure is `pg_terminate_backend` or `pg_cancel_backend`) as the signal
/// role; anything else as the change role.
fn role_kind(kind: StepKind, analyzer: &Analyzer, analysis: &Analysis) -> super::RoleKind {
    match kind {
        StepKind::Diagnostic => super::RoleKind::Read,
        StepKind::Remediation if signals_only(analyzer, analysis) => super::RoleKind::Signal,
        _ => super::RoleKind::Change,
    }
}

fn signals_only(analyzer: &Analyzer, analysis: &Analysis) -> bool {
    use crate::sql::{FunctionEffect, SIGNAL_FUNCTIONS};
    analysis.engine == Engine::Postgres
        && analysis.risk == Risk::Write
        && analysis.statements.iter().all(|s| {
            let Some(refs) = crate::catalog::References::of(&s.sql) else {
                return false;
            };
            let effects: Vec<_> = refs
                .functions
                .iter()
                .filter(|f| {
                    analyzer.function_effect(Engine::Postgres, f.schema.as_deref(), &f.name)
                        != FunctionEffect::Pure
                })
                .collect();
            !effects.is_empty()
                && effects.iter().all(|f| {
                    matches!(f.schema.as_deref(), None | Some("pg_catalog"))
                        && SIGNAL_FUNCTIONS.contains(&f.name.as_str())
                })
        })
}

/// `value` as the JSON of its declared type (`--input n=5` arrives as the
/// string "5"; `when` expressions compare it as the integer 5). `None` when
/// it is not a valid value of the input.
pub fn typed_input(
    name: &str,
    spec: &InputSpec,
    value: &serde_json::Value,
) -> Option<serde_json::Value> {
    coerce(name, spec, value)
        .ok()
        .and_then(|v| serde_json::to_value(v).ok())
}

/// `value` as input `name` of type `spec` takes it, or why it does not
/// (a hand-off's input is checked by the runbook it goes to).
pub fn checked_input(
    name: &str,
    spec: &InputSpec,
    value: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    let v = coerce(name, spec, value).map_err(|e| match e {
        ResolveError::BadInput { why, .. } => why,
        other => other.to_string(),
    })?;
    serde_json::to_value(v).map_err(|e| e.to_string())
}

/// Converts a user-given value (a JSON value, or a string from `--input
/// k=v`) to the input's type.
fn coerce(
    name: &str,
    spec: &InputSpec,
    value: &serde_json::Value,
) -> Result<serde_yaml::Value, ResolveError> {
    use serde_json::Value as J;
    let bad = |why: String| ResolveError::BadInput {
        name: name.to_string(),
        why,
    };
    let v = match (spec.ty, value) {
        (InputType::Integer, J::String(s)) => serde_yaml::Value::from(
            s.trim()
                .parse::<i64>()
                .map_err(|_| bad(format!("`{s}` is not an integer")))?,
        ),
        (InputType::Number, J::String(s)) => serde_yaml::Value::from(
            s.trim()
                .parse::<f64>()
                .map_err(|_| bad(format!("`{s}` is not a number")))?,
        ),
        (InputType::Boolean, J::String(s)) => serde_yaml::Value::from(match s.trim() {
            "true" | "yes" | "on" | "1" => true,
            "false" | "no" | "off" | "0" => false,
            other => return Err(bad(format!("`{other}` is not a boolean (true/false)"))),
        }),
        (_, J::String(s)) => serde_yaml::Value::from(s.clone()),
        (_, other) => serde_yaml::to_value(other).map_err(|e| bad(e.to_string()))?,
    };
    check_value(spec, &v).map_err(|e| bad(e.to_string()))?;
    Ok(v)
}

fn to_bind(spec: &InputSpec, v: &serde_yaml::Value) -> Bind {
    match (spec.ty, v) {
        (InputType::Integer, serde_yaml::Value::Number(n)) => {
            n.as_i64().map_or(Bind::Null, Bind::Int)
        }
        (InputType::Number, serde_yaml::Value::Number(n)) => {
            n.as_f64().map_or(Bind::Null, Bind::Float)
        }
        (InputType::Boolean, serde_yaml::Value::Bool(b)) => Bind::Bool(*b),
        (_, serde_yaml::Value::String(s)) => Bind::Text(s.clone()),
        (_, serde_yaml::Value::Null) => Bind::Null,
        (_, other) => Bind::Text(
            serde_yaml::to_string(other)
                .unwrap_or_default()
                .trim()
                .to_string(),
        ),
    }
}

/// Rewrites runbook SQL (a step's, or its `verify`'s) for `engine` with the
/// given inputs: values become binds, identifiers are validated and quoted.
pub fn bind_sql(
    contract: &Contract,
    source: &str,
    inputs: &BTreeMap<String, serde_json::Value>,
    engine: Engine,
    server: Option<&crate::sql::ServerFacts>,
) -> Result<(String, Vec<Bind>), ResolveError> {
    let expanded = expand_extension_schemas(source, server)?;
    let source = expanded.as_str();
    let declared = &contract.spec.inputs;
    for name in inputs.keys() {
        if !declared.contains_key(name) {
            let known: Vec<&str> = declared.keys().map(String::as_str).collect();
            return Err(ResolveError::UnknownInput(
                name.clone(),
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                },
            ));
        }
    }
    let mut values: BTreeMap<&str, Option<serde_yaml::Value>> = BTreeMap::new();
    for (name, spec) in declared {
        let v = match inputs.get(name) {
            Some(v) => Some(coerce(name, spec, v)?),
            None => spec.default.clone(),
        };
        values.insert(name.as_str(), v);
    }
    let mut missing = None;
    let mut ident_error = None;
    let rewritten = params::rewrite(source, engine, |name| {
        let spec = declared.get(name)?;
        match (spec.ty, values.get(name).cloned().flatten()) {
            (InputType::Identifier, Some(serde_yaml::Value::String(s))) => {
                match params::quote_identifier(&s) {
                    Ok(q) => Some(Substitution::Identifier(q)),
                    Err(source) => {
                        ident_error = Some(ResolveError::BadIdentifier {
                            name: name.to_string(),
                            source,
                        });
                        Some(Substitution::Identifier("\"\"".into()))
                    }
                }
            }
            (InputType::Identifier, _) => {
                missing = Some(name.to_string());
                Some(Substitution::Identifier("\"\"".into()))
            }
            (_, None) if spec.required != Some(false) => {
                missing = Some(name.to_string());
                Some(Substitution::Bind)
            }
            _ => Some(Substitution::Bind),
        }
    })
    .map_err(|p| ResolveError::UnknownInput(p.name, "none".into()))?;
    if let Some(e) = ident_error {
        return Err(e);
    }
    if let Some(name) = missing {
        return Err(ResolveError::MissingInput(name));
    }
    let binds = rewritten
        .binds
        .iter()
        .map(|name| {
            match (
                declared.get(name),
                values.get(name.as_str()).cloned().flatten(),
            ) {
                (Some(spec), Some(v)) => to_bind(spec, &v),
                _ => Bind::Null,
            }
        })
        .collect();
    Ok((rewritten.sql, binds))
}

/// A step's `verify` query with the inputs bound, if the step has one.
pub fn verify_sql(
    contract: &Contract,
    step_id: &str,
    inputs: &BTreeMap<String, serde_json::Value>,
    engine: Engine,
    server: Option<&crate::sql::ServerFacts>,
) -> Result<Option<(String, Vec<Bind>)>, ResolveError> {
    match contract.step(step_id).and_then(|s| s.spec.verify.as_ref()) {
        Some(v) => {
            let major = server.map(|s| crate::contract::versions::major_of(s.version_num));
            bind_sql(contract, v.sql_for(major), inputs, engine, server).map(Some)
        }
        None => Ok(None),
    }
}

/// Resolves `step_id` of `contract` with `inputs` for `engine`.
pub fn resolve(
    contract: &Contract,
    step_id: &str,
    inputs: &BTreeMap<String, serde_json::Value>,
    engine: Engine,
    analyzer: &Analyzer,
) -> Result<Resolved, ResolveError> {
    let step = contract
        .step(step_id)
        .ok_or_else(|| ResolveError::NoSuchStep {
            runbook: contract.id().to_string(),
            step: step_id.to_string(),
        })?;
    if !contract.spec.engines.contains(&engine) {
        return Err(ResolveError::Engine(contract.id().to_string(), engine));
    }
    // The connected server's alternative, when the step has one for it.
    let major = analyzer
        .options
        .server
        .as_ref()
        .map(|s| crate::contract::versions::major_of(s.version_num));
    let (sql, binds) = bind_sql(
        contract,
        step.spec.sql_for(major),
        inputs,
        engine,
        analyzer.options.server.as_ref(),
    )?;
    let analysis = analyzer.analyze(engine, &sql);
    let risk = analysis.risk.raised_by(step.spec.risk);
    let mode = match step.spec.kind {
        StepKind::Diagnostic => Mode::ReadOnly,
        _ => Mode::Write {
            transaction: !needs_autocommit(&analysis),
        },
    };
    let limits = Limits {
        statement_timeout: step.timeout,
        lock_timeout: step.lock_timeout,
        max_rows: step.spec.max_rows,
        role: role_kind(step.spec.kind, analyzer, &analysis),
    };
    Ok(Resolved {
        runbook: contract.id().to_string(),
        origin: Origin::Step(step_id.to_string()),
        kind: step.spec.kind,
        engine,
        sql,
        binds,
        analysis,
        risk,
        mode,
        limits,
        summarize: step.spec.summarize.clone(),
        redact: step.spec.redact.clone(),
    })
}

/// What running a step produced: structured, for the session log and the
/// front ends.
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    pub runbook: String,
    pub step_id: String,
    pub rows_seen: u64,
    pub rows_kept: u64,
    pub capped: bool,
    pub duration_ms: u64,
    /// SHA-256 of the rows read, as JSON lines (the raw rows are not kept).
    pub sha256: String,
    pub columns: Vec<Column>,
    pub evidence: Option<Evidence>,
    pub error: Option<StepError>,
    /// The database role it ran as (`exec::Outcome::role`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepError {
    pub kind: super::ErrorKind,
    pub message: String,
}

/// The evidence configuration for one step: `config`'s `redact_columns`
/// extended with the step's and the target's columns.
fn step_evidence_config(
    resolved: &Resolved,
    config: &EvidenceConfig,
    target_redact: &[String],
) -> EvidenceConfig {
    let mut config = config.clone();
    config
        .redact_columns
        .extend(resolved.redact.iter().cloned());
    config.redact_columns.extend(target_redact.iter().cloned());
    config
}

/// Runs a resolved (and gated) step and summarizes its rows.
pub async fn execute(
    executor: &mut Executor,
    resolved: &Resolved,
    config: &EvidenceConfig,
) -> StepResult {
    let config = step_evidence_config(resolved, config, &executor.target().redact);
    let mut summarizer: Option<Summarizer> = None;
    let spec = resolved.summarize.clone();
    let mut sink = |event: RowEvent<'_>| match event {
        RowEvent::Columns(cols) => {
            if summarizer.is_none() {
                summarizer = Some(Summarizer::new(spec.as_ref(), cols, &config));
            }
        }
        RowEvent::Row(row) => {
            if let Some(s) = summarizer.as_mut() {
                s.push(row);
            }
        }
    };
    let outcome: Result<Outcome, ExecError> = executor
        .run(
            &resolved.sql,
            &resolved.binds,
            resolved.mode,
            &resolved.limits,
            &mut sink,
        )
        .await;
    match outcome {
        Ok(o) => {
            let evidence = summarizer.map(|s| s.finish(o.rows_seen, o.capped));
            StepResult {
                runbook: resolved.runbook.clone(),
                step_id: resolved.origin.label().to_string(),
                rows_seen: o.rows_seen,
                rows_kept: o.rows_kept,
                capped: o.capped,
                duration_ms: o.duration_ms,
                sha256: o.sha256,
                columns: o.columns,
                evidence,
                error: None,
                role: o.role,
            }
        }
        Err(e) => failed_result(resolved, e.kind(), e.to_string()),
    }
}

fn failed_result(resolved: &Resolved, kind: super::ErrorKind, message: String) -> StepResult {
    StepResult {
        runbook: resolved.runbook.clone(),
        step_id: resolved.origin.label().to_string(),
        rows_seen: 0,
        rows_kept: 0,
        capped: false,
        duration_ms: 0,
        sha256: String::new(),
        columns: Vec::new(),
        evidence: None,
        error: Some(StepError { kind, message }),
        role: None,
    }
}

/// Summarizes recorded rows (a `ward test` scenario's evidence) exactly as
/// if the step had returned them: same summarizer, redaction, budget and
/// row cap. Columns are taken from the first row, in its key order.
pub fn summarize_recorded(
    resolved: &Resolved,
    rows: &[crate::evidence::Row],
    config: &EvidenceConfig,
) -> StepResult {
    let config = step_evidence_config(resolved, config, &[]);
    let columns: Vec<Column> = rows
        .first()
        .map(|r| {
            r.iter()
                .map(|(k, v)| Column::new(k.clone(), recorded_type(v)))
                .collect()
        })
        .unwrap_or_default();
    let mut summarizer = Summarizer::new(resolved.summarize.as_ref(), &columns, &config);
    let cap = resolved.limits.max_rows.unwrap_or(u64::MAX);
    let mut hasher = super::RowHasher::default();
    let mut seen = 0u64;
    for row in rows {
        if seen >= cap {
            break;
        }
        seen += 1;
        hasher.row(row);
        summarizer.push(row);
    }
    let capped = (rows.len() as u64) > cap;
    StepResult {
        runbook: resolved.runbook.clone(),
        step_id: resolved.origin.label().to_string(),
        rows_seen: seen,
        rows_kept: seen,
        capped,
        duration_ms: 0,
        sha256: hasher.hex(),
        columns,
        evidence: Some(summarizer.finish(seen, capped)),
        error: None,
        role: None,
    }
}

/// A recorded failure, as the executor would report it.
pub fn recorded_failure(resolved: &Resolved, message: &str) -> StepResult {
    failed_result(resolved, super::ErrorKind::Database, message.to_string())
}

fn recorded_type(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() || n.is_u64() => "int8",
        Value::Number(_) => "float8",
        Value::Array(_) | Value::Object(_) => "jsonb",
        _ => "text",
    }
}

/// An `--input` argument without `=`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}`: write inputs as name=value")]
pub struct NotNameValue(pub String);

/// Parses `--input k=v` arguments.
pub fn parse_inputs(pairs: &[String]) -> Result<BTreeMap<String, serde_json::Value>, NotNameValue> {
    let mut out = BTreeMap::new();
    for p in pairs {
        let (k, v) = p.split_once('=').ok_or_else(|| NotNameValue(p.clone()))?;
        out.insert(
            k.trim().to_string(),
            serde_json::Value::String(v.to_string()),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod role_tests {
    use super::*;
    use crate::exec::RoleKind;

    fn kind_of(step: StepKind, sql: &str) -> RoleKind {
        let an = Analyzer::default();
        role_kind(step, &an, &an.analyze(Engine::Postgres, sql))
    }

    #[test]
    fn only_a_remediation_that_only_signals_backends_runs_as_the_signal_role() {
        let terminate = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1";
        assert_eq!(kind_of(StepKind::Remediation, terminate), RoleKind::Signal);
        assert_eq!(
            kind_of(
                StepKind::Remediation,
                "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'x'"
            ),
            RoleKind::Signal
        );
        // A signal next to another effect is a change.
        assert_eq!(
            kind_of(
                StepKind::Remediation,
                "SELECT pg_terminate_backend(1), pg_advisory_lock(1)"
            ),
            RoleKind::Change
        );
        assert_eq!(
            kind_of(StepKind::Remediation, "DELETE FROM public.t WHERE id = 1"),
            RoleKind::Change
        );
        assert_eq!(
            kind_of(StepKind::Migration, "SELECT pg_terminate_backend(1)"),
            RoleKind::Change
        );
        assert_eq!(kind_of(StepKind::Diagnostic, terminate), RoleKind::Read);
    }
}
