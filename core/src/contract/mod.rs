//! Runbook contracts: what may be done during an incident, step by step.
//!
//! Loading a contract validates everything that can be validated without a
//! database: every `requires`, every rollback, every `:input` used in SQL,
//! every summarizer script, every CEL condition (compiled here), and every
//! statement (parsed and classified here). A diagnostic step must be
//! read-only by analysis of its SQL — a runbook may raise a step's risk,
//! never lower it. Every problem names `file:line:col`.

mod model;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use model::*;

use crate::diag::{Location, Problem, nearest};
use crate::expr::Expr;
use crate::sql::params::{self, Rewritten, Substitution};
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
}

/// A loaded, validated runbook contract.
#[derive(Debug, Clone)]
pub struct Contract {
    pub path: PathBuf,
    pub spec: RunbookSpec,
    pub steps: Vec<Step>,
    pub conclusions: Vec<Conclusion>,
}

impl Contract {
    pub fn id(&self) -> &str {
        &self.spec.id
    }

    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.spec.id == id)
    }
}

/// A timeout as written in a runbook or `ward.yaml`: a duration above zero
/// (to PostgreSQL a zero `lock_timeout` means none), or why not.
pub fn positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text) {
        None => Err(format!(
            "`{text}` is not a duration; write e.g. 5s, 500ms, 2m"
        )),
        Some(d) if d.is_zero() => Err(format!("`{text}` must be more than zero")),
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

fn is_kebab(id: &str) -> bool {
    !id.is_empty()
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !id.ends_with('-')
        && !id.contains("--")
}

/// Names a step cannot have: what ward calls the agent's ad-hoc queries,
/// and the agent's tools other than steps.
const RESERVED_STEP_IDS: &[&str] = &[
    "adhoc",
    crate::agent::tools::ADHOC_TOOL,
    crate::agent::tools::CONCLUDE_TOOL,
];

fn is_snake(id: &str) -> bool {
    !id.is_empty()
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Loads every `*.yaml` / `*.yml` file directly in `dir` (not `scripts/` or
/// other subdirectories). Returns the contracts that loaded and every
/// problem found, including duplicate runbook ids across files.
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
    (contracts, problems)
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

pub fn load_doc(doc: &Doc, root: &Path, analyzer: &Analyzer) -> Result<Contract, Vec<Problem>> {
    let spec: RunbookSpec = doc.parse().map_err(|p| vec![p])?;
    let mut v = Validator {
        doc,
        problems: Vec::new(),
        analyzer,
        root,
        spec: &spec,
    };
    let contract = v.validate();
    if v.problems.is_empty() {
        Ok(contract)
    } else {
        v.problems.sort();
        v.problems.dedup();
        Err(v.problems)
    }
}

struct Validator<'a> {
    doc: &'a Doc,
    problems: Vec<Problem>,
    analyzer: &'a Analyzer,
    root: &'a Path,
    spec: &'a RunbookSpec,
}

impl Validator<'_> {
    fn problem(&mut self, at: Location, message: impl Into<String>) {
        self.problems.push(Problem::new(at, message));
    }

    fn validate(&mut self) -> Contract {
        let spec = self.spec;
        if !is_kebab(&spec.id) {
            let at = self.doc.at(&[Seg::Key("id")]);
            self.problem(at, format!("runbook id `{}` must be kebab-case (lowercase letters, digits and single dashes)", spec.id));
        }
        if spec.engines.is_empty() {
            let at = self.doc.at(&[Seg::Key("engines")]);
            self.problem(
                at,
                "`engines` must name at least one engine: postgres or sqlite",
            );
        }
        let ids: Vec<&str> = spec.steps.iter().map(|s| s.id.as_str()).collect();
        self.validate_inputs(&ids);

        if spec.steps.is_empty() {
            let at = self.doc.at(&[Seg::Key("steps")]);
            self.problem(at, "a runbook needs at least one step");
        }
        let mut seen = BTreeSet::new();
        for (i, step) in spec.steps.iter().enumerate() {
            if !seen.insert(step.id.as_str()) {
                let at = self
                    .doc
                    .at(&[Seg::Key("steps"), Seg::Index(i), Seg::Key("id")]);
                self.problem(at, format!("duplicate step id `{}`", step.id));
            }
        }
        let steps: Vec<Step> = spec
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| self.validate_step(i, s, &ids))
            .collect();
        self.check_cycles();

        let mut conclusions = Vec::new();
        for (i, c) in spec.conclusions.iter().enumerate() {
            let path = [Seg::Key("conclusions"), Seg::Index(i), Seg::Key("when")];
            self.check_placeholders(i, &c.text, &ids);
            if let Some(when) = self.compile(&path, &c.when, &["facts", "inputs"]) {
                self.check_facts(&path, &when, &ids, None);
                conclusions.push(Conclusion {
                    when,
                    text: c.text.clone(),
                });
            }
        }
        Contract {
            path: self.doc.path.clone(),
            spec: spec.clone(),
            steps,
            conclusions,
        }
    }

    /// `{step.fact}` placeholders in a conclusion must name a step; bare
    /// `{fact}` names are looked up in every step's facts at run time.
    fn check_placeholders(&mut self, i: usize, text: &str, ids: &[&str]) {
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else { break };
            let name = &after[..close];
            if let Some((step, _)) = name.split_once('.')
                && !ids.contains(&step)
            {
                let loc = self
                    .doc
                    .at(&[Seg::Key("conclusions"), Seg::Index(i), Seg::Key("text")]);
                let hint = nearest(step, ids.iter().copied())
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                self.problem(
                    loc,
                    format!("placeholder `{{{name}}}` names no step `{step}`{hint}"),
                );
            }
            rest = &after[close + 1..];
        }
    }

    fn validate_inputs(&mut self, ids: &[&str]) {
        for (name, input) in &self.spec.inputs {
            let path = [Seg::Key("inputs"), Seg::Key(name.as_str())];
            if let Some(from) = &input.from_fact {
                let step = from.split_once('.').map(|(s, _)| s);
                let known = step.and_then(|s| self.spec.steps.iter().find(|x| x.id == s));
                let why = match known {
                    None if step.is_none() => Some(format!(
                        "`from_fact` of input `{name}` must be `step.fact`, e.g. blocking_tree.root_pid"
                    )),
                    None => Some(format!(
                        "`from_fact` of input `{name}` names no step of this runbook{}",
                        nearest(step.unwrap_or(""), ids.iter().copied())
                            .map(|n| format!(" (did you mean `{n}`?)"))
                            .unwrap_or_default()
                    )),
                    Some(s) if s.kind != StepKind::Diagnostic => Some(format!(
                        "`from_fact` of input `{name}` must name a diagnostic's fact; `{}` is not a diagnostic",
                        s.id
                    )),
                    Some(_) => None,
                };
                if let Some(why) = why {
                    let at = self.doc.at(&[
                        Seg::Key("inputs"),
                        Seg::Key(name.as_str()),
                        Seg::Key("from_fact"),
                    ]);
                    self.problem(at, why);
                }
            }
            if !is_snake(name) {
                let at = self.doc.key_at(&path);
                self.problem(at, format!("input name `{name}` must be snake_case"));
            }
            if input.ty == InputType::Enum && input.values.as_ref().is_none_or(Vec::is_empty) {
                let at = self.doc.at(&path);
                self.problem(
                    at,
                    format!("enum input `{name}` needs `values`: the list of allowed values"),
                );
            }
            if input.ty != InputType::Enum && input.values.is_some() {
                let at = self.doc.at(&[
                    Seg::Key("inputs"),
                    Seg::Key(name.as_str()),
                    Seg::Key("values"),
                ]);
                self.problem(
                    at,
                    format!("`values` only applies to enum inputs; `{name}` is not one"),
                );
            }
            if let (Some(min), Some(max)) = (input.min, input.max)
                && min > max
            {
                let at =
                    self.doc
                        .at(&[Seg::Key("inputs"), Seg::Key(name.as_str()), Seg::Key("min")]);
                self.problem(
                    at,
                    format!("input `{name}` has min {min} greater than max {max}"),
                );
            }
            if let Some(default) = &input.default
                && let Err(why) = check_value(input, default)
            {
                let at = self.doc.at(&[
                    Seg::Key("inputs"),
                    Seg::Key(name.as_str()),
                    Seg::Key("default"),
                ]);
                self.problem(at, format!("default of input `{name}`: {why}"));
            }
        }
    }

    fn validate_step(&mut self, i: usize, step: &StepSpec, ids: &[&str]) -> Step {
        let base = [Seg::Key("steps"), Seg::Index(i)];
        let at = |k: &'static str| [Seg::Key("steps"), Seg::Index(i), Seg::Key(k)];
        if !is_snake(&step.id) {
            let loc = self.doc.at(&at("id"));
            self.problem(loc, format!("step id `{}` must be snake_case", step.id));
        } else if RESERVED_STEP_IDS.contains(&step.id.as_str()) {
            let loc = self.doc.at(&at("id"));
            self.problem(
                loc,
                format!(
                    "step id `{}` is reserved (ward's ad-hoc queries and the agent's own tools use it); rename the step",
                    step.id
                ),
            );
        }
        for (j, req) in step.requires.iter().enumerate() {
            if !ids.contains(&req.as_str()) || *req == step.id {
                let loc = self.doc.at(&[
                    Seg::Key("steps"),
                    Seg::Index(i),
                    Seg::Key("requires"),
                    Seg::Index(j),
                ]);
                let hint = nearest(req, ids.iter().copied().filter(|s| *s != step.id))
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                let what = if *req == step.id { "itself" } else { "no step" };
                self.problem(loc, format!("`requires: {req}` names {what}{hint}"));
            }
        }
        let sql = self.prepare(&at("sql"), &step.sql);
        let risk = sql.risk();
        let parsed = sql
            .per_engine
            .iter()
            .all(|(_, _, a)| a.parse_error.is_none())
            && !sql.per_engine.is_empty();
        if step.kind == StepKind::Diagnostic && risk != Risk::ReadOnly && parsed {
            let reasons = sql
                .per_engine
                .iter()
                .flat_map(|(_, _, a)| a.statements.iter().flat_map(|s| s.reasons.clone()))
                .collect::<Vec<_>>();
            let loc = self.doc.at(&at("sql"));
            self.problem(
                loc,
                format!(
                    "diagnostic step `{}` must be read-only, but its SQL is {risk}{}; make it a remediation (with rollback) or change the SQL",
                    step.id,
                    if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join("; ")) }
                ),
            );
        }
        if let Some(declared) = step.risk
            && declared.rank() < risk.rank()
        {
            let loc = self.doc.at(&at("risk"));
            self.problem(loc, format!("declared risk `{declared}` is lower than the analyzed `{risk}`; a runbook may raise a step's risk, never lower it"));
        }
        let timeout = match &step.timeout {
            None => DEFAULT_TIMEOUT,
            Some(t) => parse_duration(t).unwrap_or_else(|| {
                let loc = self.doc.at(&at("timeout"));
                self.problem(
                    loc,
                    format!("timeout `{t}` is not a duration; write e.g. 5s, 500ms, 2m"),
                );
                DEFAULT_TIMEOUT
            }),
        };
        let lock_timeout = match step.lock_timeout.as_deref().map(positive_duration) {
            None => None,
            Some(Ok(d)) => Some(d),
            Some(Err(why)) => {
                let loc = self.doc.at(&at("lock_timeout"));
                self.problem(loc, format!("lock_timeout {why}"));
                None
            }
        };
        if step.max_rows == Some(0) {
            let loc = self.doc.at(&at("max_rows"));
            self.problem(loc, "max_rows must be at least 1");
        }
        let when = step.when.as_ref().and_then(|w| {
            let e = self.compile(&at("when"), w, &["facts", "inputs"])?;
            self.check_facts(&at("when"), &e, ids, Some(step));
            Some(e)
        });
        let (rollback, rollback_sql) = self.validate_rollback(i, step, ids);
        let verify = step.verify.as_ref().and_then(|v| {
            let vsql_path = [
                Seg::Key("steps"),
                Seg::Index(i),
                Seg::Key("verify"),
                Seg::Key("sql"),
            ];
            let vsql = self.prepare(&vsql_path, &v.sql);
            if vsql.risk() != Risk::ReadOnly {
                let loc = self.doc.at(&vsql_path);
                self.problem(
                    loc,
                    format!("verify SQL must be read-only, but it is {}", vsql.risk()),
                );
            }
            let expect_path = [
                Seg::Key("steps"),
                Seg::Index(i),
                Seg::Key("verify"),
                Seg::Key("expect"),
            ];
            let expect = self.compile(&expect_path, &v.expect, &["rows", "inputs", "facts"])?;
            Some((vsql, expect))
        });
        self.validate_summarize(i, step);
        let _ = base;
        Step {
            spec: step.clone(),
            sql,
            when,
            timeout,
            lock_timeout,
            rollback,
            rollback_sql,
            verify,
        }
    }

    fn validate_rollback(
        &mut self,
        i: usize,
        step: &StepSpec,
        ids: &[&str],
    ) -> (Option<Rollback>, Option<PreparedSql>) {
        let path = [Seg::Key("steps"), Seg::Index(i), Seg::Key("rollback")];
        let Some(text) = step.rollback.as_deref().map(str::trim) else {
            if step.kind != StepKind::Diagnostic {
                let loc = self
                    .doc
                    .key_at(&[Seg::Key("steps"), Seg::Index(i), Seg::Key("kind")]);
                self.problem(
                    loc,
                    format!(
                        "{} step `{}` has no `rollback`; give the SQL that undoes it, the id of a step that does, or `none` if it is irreversible",
                        step.kind.name(),
                        step.id
                    ),
                );
            }
            return (None, None);
        };
        if text.eq_ignore_ascii_case("none") {
            return (Some(Rollback::Irreversible), None);
        }
        let single_word =
            !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if single_word {
            if ids.contains(&text) && text != step.id {
                return (Some(Rollback::Step(text.to_string())), None);
            }
            let hint = nearest(text, ids.iter().copied())
                .map(|n| format!(" (did you mean `{n}`?)"))
                .unwrap_or_default();
            let loc = self.doc.at(&path);
            self.problem(
                loc,
                format!(
                    "`rollback: {text}` names no other step{hint}; use SQL, a step id, or `none`"
                ),
            );
            return (None, None);
        }
        let sql = self.prepare(&path, text);
        (Some(Rollback::Sql(text.to_string())), Some(sql))
    }

    fn validate_summarize(&mut self, i: usize, step: &StepSpec) {
        let Some(s) = &step.summarize else { return };
        let path = [Seg::Key("steps"), Seg::Index(i), Seg::Key("summarize")];
        match (&s.builtin, &s.script) {
            (Some(_), Some(_)) | (None, None) => {
                let loc = self.doc.at(&path);
                self.problem(loc, "summarize needs exactly one of `builtin` (rows, top, group, stats, schema) or `script`");
            }
            (Some(b), None) => {
                if matches!(b, Builtin::Top | Builtin::Group) && s.by.is_none() {
                    let loc = self.doc.at(&path);
                    self.problem(
                        loc,
                        format!(
                            "the `{}` summarizer needs `by`: the column(s) to rank or group by",
                            if *b == Builtin::Top { "top" } else { "group" }
                        ),
                    );
                }
            }
            (None, Some(script)) => {
                let loc = self.doc.at(&[
                    Seg::Key("steps"),
                    Seg::Index(i),
                    Seg::Key("summarize"),
                    Seg::Key("script"),
                ]);
                let rel = Path::new(script);
                if rel.is_absolute()
                    || rel
                        .components()
                        .any(|c| matches!(c, std::path::Component::ParentDir))
                {
                    self.problem(
                        loc,
                        format!("script `{script}` must be a path inside the runbooks directory"),
                    );
                    return;
                }
                let full = self.root.join(rel);
                match std::fs::metadata(&full) {
                    Err(_) => self.problem(
                        loc,
                        format!(
                            "script `{script}` does not exist (looked for {})",
                            full.display()
                        ),
                    ),
                    Ok(m) if !m.is_file() => {
                        self.problem(loc, format!("script `{script}` is not a file"))
                    }
                    Ok(m) => {
                        #[cfg(unix)]
                        {
                            use std::os::unix::fs::PermissionsExt;
                            if m.permissions().mode() & 0o111 == 0 {
                                self.problem(
                                    loc,
                                    format!(
                                        "script `{script}` is not executable; run `chmod +x {}`",
                                        full.display()
                                    ),
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// Rewrites `:name` parameters and analyzes the SQL for every engine.
    fn prepare(&mut self, path: &[Seg], written: &str) -> PreparedSql {
        let mut per_engine = Vec::new();
        // `@extschema:NAME@` reads as `public` here; the server's own schema
        // replaces it when a session resolves the step.
        let expanded = match crate::exec::step::expand_extension_schemas(written, None) {
            Ok(e) => e,
            Err(e) => {
                let loc = self.doc.at(path);
                self.problem(loc, e.to_string());
                return PreparedSql {
                    source: written.to_string(),
                    per_engine: Vec::new(),
                };
            }
        };
        let source = expanded.as_str();
        for &engine in &self.spec.engines {
            let inputs = &self.spec.inputs;
            let rewritten = params::rewrite(source, engine, |name| {
                let input = inputs.get(name)?;
                if input.ty == InputType::Identifier {
                    let shown = input
                        .default
                        .as_ref()
                        .and_then(|d| d.as_str())
                        .unwrap_or(name);
                    Some(Substitution::Identifier(
                        params::quote_identifier(shown).unwrap_or_else(|_| format!("\"{name}\"")),
                    ))
                } else {
                    Some(Substitution::Bind)
                }
            });
            let rewritten = match rewritten {
                Ok(r) => r,
                Err(p) => {
                    let loc = self.doc.at_offset(path, source, p.start);
                    let hint = nearest(&p.name, inputs.keys().map(String::as_str))
                        .map(|n| format!(" (did you mean `:{n}`?)"))
                        .unwrap_or_default();
                    self.problem(
                        loc,
                        format!(
                            "`:{}` is not a declared input{hint}; declare it under `inputs`",
                            p.name
                        ),
                    );
                    return PreparedSql {
                        source: written.to_string(),
                        per_engine: Vec::new(),
                    };
                }
            };
            let analysis = self.analyzer.analyze(engine, &rewritten.sql);
            if let Some(err) = &analysis.parse_error {
                // Map the offset in the rewritten SQL back to the source when
                // no parameter precedes it; otherwise point at the value.
                let loc = match err.offset {
                    Some(off) => self
                        .doc
                        .at_offset(path, source, rewritten.source_offset(off)),
                    None => self.doc.at(path),
                };
                self.problem(
                    loc,
                    format!("SQL does not parse as {engine}: {}", err.message),
                );
            }
            per_engine.push((engine, rewritten, analysis));
        }
        PreparedSql {
            source: written.to_string(),
            per_engine,
        }
    }

    fn compile(&mut self, path: &[Seg], source: &str, allowed: &[&str]) -> Option<Expr> {
        match Expr::compile(source) {
            Ok(e) => {
                for var in e.variables() {
                    if !allowed.contains(&var.as_str()) {
                        let loc = self.doc.at(path);
                        self.problem(
                            loc,
                            format!(
                                "`{source}` uses `{var}`; only {} can be used here",
                                allowed.join(", ")
                            ),
                        );
                    }
                }
                Some(e)
            }
            Err(err) => {
                // CEL reports a 1-based line and a column in characters.
                let line_start: usize = source
                    .split_inclusive('\n')
                    .take(err.line.saturating_sub(1))
                    .map(str::len)
                    .sum();
                let offset = line_start
                    + source[line_start.min(source.len())..]
                        .char_indices()
                        .nth(err.col.saturating_sub(1))
                        .map_or(source.len().saturating_sub(line_start), |(i, _)| i);
                let loc = self.doc.at_offset(path, source, offset);
                self.problem(
                    loc,
                    format!(
                        "`{}` does not compile as CEL: {}",
                        source.trim(),
                        err.message
                    ),
                );
                None
            }
        }
    }

    /// `facts.<step>` must name a step, and a step's `when` may only use
    /// facts of steps it requires (directly or through them).
    fn check_facts(&mut self, path: &[Seg], e: &Expr, ids: &[&str], step: Option<&StepSpec>) {
        let reachable = step.map(|s| self.required_closure(&s.id));
        // `has(facts.x)` alone asks whether step x has run; it needs no
        // `requires` (an optional earlier step, e.g. dropping a leftover).
        let tested = e.presence_tests("facts");
        for (fact_step, field) in e.selections("facts") {
            if field.is_none() && tested.contains(&fact_step) && ids.contains(&fact_step.as_str()) {
                continue;
            }
            // Positions are looked up only for a problem: most facts are fine.
            if !ids.contains(&fact_step.as_str()) {
                let hint = nearest(&fact_step, ids.iter().copied())
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                let loc = self.doc.at(path);
                self.problem(loc, format!("`facts.{fact_step}` names no step{hint}"));
            } else if let (Some(reach), Some(s)) = (&reachable, step)
                && !reach.contains(&fact_step)
            {
                let loc = self.doc.at(path);
                self.problem(loc, format!("step `{}` uses `facts.{fact_step}` but does not list `{fact_step}` in `requires`", s.id));
            }
        }
    }

    fn required_closure(&self, id: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut todo = vec![id.to_string()];
        while let Some(cur) = todo.pop() {
            if let Some(s) = self.spec.steps.iter().find(|s| s.id == cur) {
                for r in &s.requires {
                    if out.insert(r.clone()) {
                        todo.push(r.clone());
                    }
                }
            }
        }
        out
    }

    fn check_cycles(&mut self) {
        for (i, step) in self.spec.steps.iter().enumerate() {
            if self.required_closure(&step.id).contains(&step.id)
                && !step.requires.contains(&step.id)
            {
                let loc = self
                    .doc
                    .at(&[Seg::Key("steps"), Seg::Index(i), Seg::Key("requires")]);
                self.problem(
                    loc,
                    format!(
                        "step `{}` requires itself through a cycle of `requires`",
                        step.id
                    ),
                );
            }
        }
    }
}

/// Checks a value (a default, or one given with `--input`) against its input.
pub fn check_value(input: &InputSpec, value: &serde_yaml::Value) -> Result<(), String> {
    use serde_yaml::Value;
    let in_range = |n: f64| -> Result<(), String> {
        if let Some(min) = input.min
            && n < min
        {
            return Err(format!("{n} is below the minimum {min}"));
        }
        if let Some(max) = input.max
            && n > max
        {
            return Err(format!("{n} is above the maximum {max}"));
        }
        Ok(())
    };
    match (input.ty, value) {
        (InputType::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => {
            in_range(n.as_f64().unwrap_or(0.0))
        }
        (InputType::Number, Value::Number(n)) => in_range(n.as_f64().unwrap_or(0.0)),
        (InputType::Boolean, Value::Bool(_)) => Ok(()),
        (InputType::String, Value::String(_)) => Ok(()),
        (InputType::Identifier, Value::String(s)) => params::quote_identifier(s)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        (InputType::Duration, Value::String(s)) => parse_duration(s)
            .map(|_| ())
            .ok_or_else(|| format!("`{s}` is not a duration (e.g. 5s, 10m, 1h)")),
        (InputType::Enum, Value::String(s)) => {
            let values = input.values.clone().unwrap_or_default();
            if values.contains(s) {
                Ok(())
            } else {
                Err(format!("`{s}` is not one of {}", values.join(", ")))
            }
        }
        (ty, v) => Err(format!(
            "expected {} but found {}",
            format!("{ty:?}").to_lowercase(),
            serde_yaml::to_string(v).unwrap_or_default().trim()
        )),
    }
}

#[cfg(test)]
mod tests;
