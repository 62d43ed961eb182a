//! Runbook contracts: what may be done during an incident, step by step.
//!
//! Loading a contract validates everything that can be validated without a
//! database: every `requires`, every rollback, every `:input` used in SQL,
//! every summarizer script, every CEL condition (compiled here), and every
//! statement (parsed and classified here). A diagnostic step must be
//! read-only by analysis of its SQL — a runbook may raise a step's risk,
//! never lower it. Every problem names `file:line:col`.

mod input;
mod model;
pub mod reserved;
mod validate;
pub mod versions;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use input::{InputError, check_value};
pub use model::*;

use crate::diag::{Location, Problem};
use crate::expr::Expr;
use crate::sql::params::Rewritten;
use crate::sql::{Analysis, Analyzer, Engine, Risk};
use crate::yaml::{Doc, Seg};

/// Default statement timeout of a step.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How a migration or remediation is undone.
#[derive(Debug, Clone, PartialEq)]
pub enum Rollback {
    /// The step is irreversible (`rollback: none`).
    Irreversible,
    /// Another step of the runbook undoes it.
    Step(String),
    /// This SQL undoes it.
    Sql(String),
}

/// A statement of a step, ready to analyze and (later) to bind.
#[derive(Debug, Clone)]
pub struct PreparedSql {
    /// As written in the runbook, with `:name` parameters.
    pub source: String,
    /// Per engine the runbook supports: SQL with positional placeholders
    /// (identifier inputs shown as their quoted default or name), the inputs
    /// bound to it and the analysis of that SQL.
    pub per_engine: Vec<(Engine, Rewritten, Analysis)>,
}

impl PreparedSql {
    pub fn analysis(&self, engine: Engine) -> Option<&Analysis> {
        self.per_engine
            .iter()
            .find(|(e, _, _)| *e == engine)
            .map(|(_, _, a)| a)
    }

    /// The most severe analysis over the engines.
    pub fn risk(&self) -> Risk {
        self.per_engine
            .iter()
            .fold(Risk::ReadOnly, |r, (_, _, a)| r.max(a.risk))
    }
}

#[derive(Debug, Clone)]
pub struct Step {
    pub spec: StepSpec,
    pub sql: PreparedSql,
    pub when: Option<Expr>,
    pub timeout: Duration,
    /// The step's own `lock_timeout`; `None`: the target's, else
    /// [`crate::exec::DEFAULT_LOCK_TIMEOUT`].
    pub lock_timeout: Option<Duration>,
    pub rollback: Option<Rollback>,
    pub rollback_sql: Option<PreparedSql>,
    pub verify: Option<(PreparedSql, Expr)>,
}

impl Step {
    /// The class the gate uses: the analysis, raised (never lowered) by the
    /// runbook's declared `risk`.
    pub fn effective_risk(&self, engine: Engine) -> Risk {
        self.sql
            .analysis(engine)
            .map_or(Risk::Unknown, |a| a.risk)
            .raised_by(self.spec.risk)
    }
}

#[derive(Debug, Clone)]
pub struct Conclusion {
    pub when: Expr,
    pub text: String,
    /// The runbook this conclusion hands off to, if any.
    pub next: Option<NextSpec>,
}

/// The diagnostics a runbook runs again after a change, and the condition
/// that says the incident is gone.
#[derive(Debug, Clone)]
pub struct Recheck {
    pub steps: Vec<String>,
    pub cleared: Expr,
}

/// A loaded, validated runbook contract.
#[derive(Debug, Clone)]
pub struct Contract {
    pub path: PathBuf,
    pub spec: RunbookSpec,
    pub steps: Vec<Step>,
    pub conclusions: Vec<Conclusion>,
    /// Steps taken out by [`Contract::keep_steps_for`] because the
    /// connected server's version lacks what they need.
    pub left_out: Vec<versions::LeftOut>,
    pub recheck: Option<Recheck>,
}

impl Contract {
    pub fn id(&self) -> &str {
        &self.spec.id
    }

    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.spec.id == id)
    }
}

/// Why a timeout's text is refused. The caller places it (file, line,
/// column) and names the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("`{0}` is not a duration; write e.g. 5s, 500ms, 2m")]
    NotADuration(String),
    #[error("`{0}` must be more than zero")]
    Zero(String),
}

/// A timeout as written in a runbook or `ward.yaml`: a duration above zero
/// (to PostgreSQL a zero `lock_timeout` means none), or why not.
pub fn positive_duration(text: &str) -> Result<Duration, DurationError> {
    match parse_duration(text) {
        None => Err(DurationError::NotADuration(text.to_string())),
        Some(d) if d.is_zero() => Err(DurationError::Zero(text.to_string())),
        Some(d) => Ok(d),
    }
}

/// Parses `5s`, `500ms`, `2m`, `1h`, `1m30s`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" | "min" => Duration::from_secs(n.checked_mul(60)?),
            "h" => Duration::from_secs(n.checked_mul(3600)?),
            "d" => Duration::from_secs(n.checked_mul(86_400)?),
            _ => return None,
        };
        total = total.checked_add(d)?;
    }
    Some(total)
}

/// Loads every `*.yaml` / `*.yml` file directly in `dir` (not `scripts/` or
/// other subdirectories). Returns the contracts that loaded and every
/// problem found, including duplicate runbook ids across files.
/// The runbooks whose `triggers` name `alert`, by id: what `ward run
/// --alert` and `ward serve` start (one, or an ambiguity to report).
pub fn triggered_by<'a>(contracts: &'a [Contract], alert: &str) -> Vec<&'a Contract> {
    let mut hits: Vec<&Contract> = contracts
        .iter()
        .filter(|c| c.spec.triggers.iter().any(|t| t == alert))
        .collect();
    hits.sort_by(|a, b| a.id().cmp(b.id()));
    hits
}

pub fn load_dir(dir: &Path, analyzer: &Analyzer) -> (Vec<Contract>, Vec<Problem>) {
    let mut contracts = Vec::new();
    let mut problems = Vec::new();
    let files = match yaml_files(dir) {
        Ok(f) => f,
        Err(p) => return (contracts, vec![p]),
    };
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in files {
        match load_file(&file, dir, analyzer) {
            Ok(c) => {
                if let Some(first) = seen.get(c.id()) {
                    let doc = Doc::new(&file, std::fs::read_to_string(&file).unwrap_or_default());
                    problems.push(Problem::new(
                        doc.at(&[Seg::Key("id")]),
                        format!(
                            "duplicate runbook id `{}`: {} already uses it",
                            c.id(),
                            first.display()
                        ),
                    ));
                    continue;
                }
                seen.insert(c.id().to_string(), file.clone());
                contracts.push(c);
            }
            Err(mut ps) => problems.append(&mut ps),
        }
    }
    problems.extend(check_hand_offs(&contracts));
    (contracts, problems)
}

/// Every `next:` of every conclusion names a runbook among `contracts` and
/// only inputs that runbook declares; a literal value must be one the input
/// accepts. Each problem is placed in the file of the conclusion.
pub fn check_hand_offs(contracts: &[Contract]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for c in contracts {
        let mut doc: Option<Doc> = None;
        for (i, k) in c.conclusions.iter().enumerate() {
            let Some(next) = &k.next else { continue };
            let doc = doc.get_or_insert_with(|| {
                Doc::new(
                    &c.path,
                    std::fs::read_to_string(&c.path).unwrap_or_default(),
                )
            });
            let path = |key: &'static str| {
                [
                    Seg::Key("conclusions"),
                    Seg::Index(i),
                    Seg::Key("next"),
                    Seg::Key(key),
                ]
            };
            let Some(target) = contracts.iter().find(|t| t.id() == next.runbook) else {
                let hint = crate::diag::nearest(&next.runbook, contracts.iter().map(Contract::id))
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                problems.push(Problem::new(
                    doc.at(&path("runbook")),
                    format!(
                        "`next` names no runbook `{}` in this repository{hint}",
                        next.runbook
                    ),
                ));
                continue;
            };
            for (name, value) in &next.inputs {
                let at = [
                    Seg::Key("conclusions"),
                    Seg::Index(i),
                    Seg::Key("next"),
                    Seg::Key("inputs"),
                    Seg::Key(name),
                ];
                let Some(spec) = target.spec.inputs.get(name) else {
                    let declared: Vec<&str> =
                        target.spec.inputs.keys().map(String::as_str).collect();
                    let hint = crate::diag::nearest(name, declared.iter().copied())
                        .map(|n| format!(" (did you mean `{n}`?)"))
                        .unwrap_or_default();
                    problems.push(Problem::new(
                        doc.key_at(&at),
                        format!(
                            "runbook `{}` declares no input `{name}`{hint}; it declares: {}",
                            target.id(),
                            if declared.is_empty() {
                                "none".to_string()
                            } else {
                                declared.join(", ")
                            }
                        ),
                    ));
                    continue;
                };
                let templated = matches!(value, serde_yaml::Value::String(s) if s.contains('{'));
                if !templated && let Err(why) = check_value(spec, value) {
                    problems.push(Problem::new(
                        doc.at(&at),
                        format!("input `{name}` of runbook `{}`: {why}", target.id()),
                    ));
                }
            }
        }
    }
    problems
}

/// The YAML files directly in `dir`, sorted.
pub fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, Problem> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Problem::new(
            Location::start_of(dir),
            format!("cannot read the directory: {e}"),
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Loads and validates one runbook. `root` is the runbooks directory that
/// `summarize.script` paths are relative to.
pub fn load_file(path: &Path, root: &Path, analyzer: &Analyzer) -> Result<Contract, Vec<Problem>> {
    let doc = Doc::read(path).map_err(|p| vec![p])?;
    load_doc(&doc, root, analyzer)
}

/// Validates a runbook already read: the contract, or every problem found.
pub fn load_doc(doc: &Doc, root: &Path, analyzer: &Analyzer) -> Result<Contract, Vec<Problem>> {
    let spec: RunbookSpec = doc.parse().map_err(|p| vec![p])?;
    validate::validate(doc, root, analyzer, &spec)
}

#[cfg(test)]
mod tests;
