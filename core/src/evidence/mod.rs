//! Evidence: what a step's result rows become before anything reaches the
//! model or the session log.
//!
//! ```text
//! rows (streamed) -> pseudonymize configured columns, mask credential columns
//!                 -> summarizer (built-in, or a script fed redacted rows)
//!                 -> summary text + facts -> redact_text -> token budget -> Evidence
//! ```
//!
//! * Secrets never leave: whatever a runbook says, values of columns named
//!   like a credential (`rolpassword`, `passwd`, `*password`, `*secret`,
//!   `*token`, ...) are masked when a row arrives, and every value that
//!   reaches the summary, the facts (names and values, nested ones too), the
//!   warnings, the script's stdin and its stderr goes through
//!   [`redact_text`], which recognises secrets by their shape (SCRAM
//!   verifiers, md5 hashes, `password=` in conninfo strings and option
//!   arrays, URLs with credentials, ...) wherever they sit in a value. So an
//!   alias, `SELECT *`, `row_to_json` or `string_agg` over `pg_authid` does
//!   not get a password hash out. Table cells, group keys and facts are
//!   redacted while whole and cut afterwards, so a cut never splits a secret
//!   into an unrecognisable prefix.
//!
//! * Streaming: [`Summarizer::push`] takes one row at a time and no summarizer
//!   keeps rows: `rows` keeps at most `limit` formatted rows, `top` a min-heap
//!   of `limit` entries, `group` at most [`MAX_GROUPS`] keys, `stats`
//!   constant-size accumulators per column (at most [`MAX_COLUMNS`]), and a
//!   script gets rows through a bounded channel.
//! * Facts: every summarizer exposes `row_count` and `capped`, plus the
//!   scalar columns of the first row (`top`: of the top row); see each
//!   summarizer for the rest. A script's trailing JSON object is laid over
//!   `row_count`/`capped`. String facts are redacted and cut to
//!   [`FACT_STRING_MAX`] chars; facts do not count towards the budget.
//! * Percentiles (`stats`) use the P² estimator: exact up to 64 values per
//!   column, an approximation afterwards (see `p2.rs`); the summary then says
//!   "(p50/p95 estimated)".
//! * Budget: tokens are estimated as `ceil(bytes / 4)` ([`estimate_tokens`]);
//!   a longer summary is cut at a line boundary and ends with
//!   `... summary truncated to N tokens (budget)`.
//! * Scripts: see `script.rs`; any failure falls back to the `schema` summary
//!   (fed in parallel with every row) with a warning, and none of the
//!   script's stdout is kept.
//!
//! Synchronous code: call it from the executor per row (e.g. inside
//! `spawn_blocking` or directly; `push` never blocks past a script's deadline).

mod advice;
mod builtin;
pub use builtin::plural;
mod p2;
mod redact;
mod script;
#[cfg(test)]
mod secret_tests;
mod table;
#[cfg(test)]
mod tests;

pub(crate) use redact::is_secret_name;
pub use redact::{estimate_tokens, redact_text};

use crate::contract::{Builtin, Columns, SummarizeSpec};
use builtin::{Group, Rows, Stats, Top, scalar_facts, schema_lines};
use redact::{
    cap_chars, cut_bytes, is_pseudonym, mask_secret, pseudonym, redact_cow, redact_value,
    strip_controls,
};
use script::{Outcome, ScriptRun};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// One result row, columns in order.
pub type Row = Map<String, Value>;

/// Largest `limit` honoured (rows/top/group lines); larger values are clamped.
pub const MAX_LIMIT: usize = 500;
/// Distinct groups tracked by `group`; further keys count under "(other)".
pub const MAX_GROUPS: usize = 10_000;
/// Columns tracked by `stats` and taken as first-row facts.
pub const MAX_COLUMNS: usize = 256;
/// Longest string fact, in chars.
pub const FACT_STRING_MAX: usize = 200;
/// Script stderr kept for the log, in bytes.
pub const STDERR_MAX: usize = script::STDERR_MAX;
/// String facts are kept this long (chars) until redaction, then cut to FACT_STRING_MAX.
pub(crate) const FACT_SCAN: usize = 512;

/// A result column as reported by the executor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Column {
    pub name: String,
    pub type_name: String,
}

impl Column {
    pub fn new(name: impl Into<String>, type_name: impl Into<String>) -> Column {
        Column {
            name: name.into(),
            type_name: type_name.into(),
        }
    }
}

#[derive(Clone)]
pub struct EvidenceConfig {
    /// Step's `redact` + target's `redact`: column names, case-insensitive.
    pub redact_columns: Vec<String>,
    /// Per session; pseudonym = `<col>_` + first 8 hex of sha256(key || column || value).
    pub pseudonym_key: [u8; 32],
    /// Default 2000; tokens are estimated as ceil(bytes / 4).
    pub budget_tokens: usize,
    /// The runbooks directory; `script: scripts/x.py` is relative to it.
    pub script_root: PathBuf,
    /// The repository root: working directory of scripts.
    pub script_cwd: PathBuf,
    /// Default 10s, measured from spawn.
    pub script_timeout: Duration,
    /// Default 64 KiB of stdout.
    pub script_output_cap: usize,
    /// Default 20: rows/top/group lines shown when the spec has no `limit`.
    pub rows_limit_default: usize,
}

impl Default for EvidenceConfig {
    /// The default key is derived from the clock and process id (unpredictable,
    /// not reproducible); a session sets its own.
    fn default() -> Self {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        h.update(now.to_le_bytes());
        h.update(std::process::id().to_le_bytes());
        let local = 0u8;
        h.update((&local as *const u8 as usize).to_le_bytes());
        EvidenceConfig {
            redact_columns: Vec::new(),
            pseudonym_key: h.finalize().into(),
            budget_tokens: 2000,
            script_root: PathBuf::from("runbooks"),
            script_cwd: PathBuf::from("."),
            script_timeout: Duration::from_secs(10),
            script_output_cap: 64 * 1024,
            rows_limit_default: 20,
        }
    }
}

impl fmt::Debug for EvidenceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EvidenceConfig")
            .field("redact_columns", &self.redact_columns)
            .field("pseudonym_key", &"<hidden>")
            .field("budget_tokens", &self.budget_tokens)
            .field("script_root", &self.script_root)
            .field("script_cwd", &self.script_cwd)
            .field("script_timeout", &self.script_timeout)
            .field("script_output_cap", &self.script_output_cap)
            .field("rows_limit_default", &self.rows_limit_default)
            .finish()
    }
}

/// What reaches the model and the log.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Evidence {
    /// "rows", "top", "group", "stats", "schema", "script:scripts/x.py", or "schema (fallback: <why>)".
    pub summarizer: String,
    /// Redacted, within budget.
    pub summary: String,
    /// Redacted.
    pub facts: Map<String, Value>,
    /// E.g. "script scripts/x.py timed out after 10s; fell back to schema".
    pub warnings: Vec<String>,
    /// Estimated tokens of `summary`.
    pub tokens: usize,
    /// The summary was cut to fit the budget.
    pub truncated: bool,
    /// For the log only (capped at 16 KiB, redacted).
    pub script_stderr: Option<String>,
}

enum Kind {
    Rows(Rows),
    Top(Top),
    Group(Group),
    Stats(Stats),
    Schema,
    IndexAdvice(Box<advice::IndexAdvice>),
    Script { name: String, run: Box<ScriptRun> },
}

/// A streaming summarizer: columns once, then rows one by one; memory does
/// not grow with the number of rows.
pub struct Summarizer {
    kind: Kind,
    columns: Vec<Column>,
    /// Lower-cased names of the columns to pseudonymize.
    redact: Vec<String>,
    /// Columns whose names mark a credential: their values are masked.
    secret: Vec<String>,
    key: [u8; 32],
    budget: usize,
    pushed: u64,
    /// Scalar facts of the first row.
    first: Option<Map<String, Value>>,
    warnings: Vec<String>,
}

fn by_list(spec: &SummarizeSpec) -> Vec<String> {
    match &spec.by {
        None => Vec::new(),
        Some(Columns::One(c)) => vec![c.clone()],
        Some(Columns::Many(v)) => v.clone(),
    }
}

fn infer_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "text",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn eq_ci(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
        || (!(a.is_ascii() && b.is_ascii()) && a.to_lowercase() == b.to_lowercase())
}

impl Summarizer {
    /// `None` => `rows` with the default limit. A script is spawned here.
    pub fn new(
        spec: Option<&SummarizeSpec>,
        columns: &[Column],
        config: &EvidenceConfig,
    ) -> Summarizer {
        let clamp = |l: usize| l.clamp(1, MAX_LIMIT);
        let limit = clamp(
            spec.and_then(|s| s.limit)
                .map_or(config.rows_limit_default, |l| {
                    usize::try_from(l).unwrap_or(MAX_LIMIT)
                }),
        );
        let mut warnings = Vec::new();
        let kind = match spec {
            None => Kind::Rows(Rows::new(limit)),
            Some(s) if s.script.is_some() => {
                let name = s.script.clone().unwrap_or_default();
                if s.builtin.is_some() {
                    warnings.push(format!(
                        "both builtin and script {name} are set; using the script"
                    ));
                }
                let run = ScriptRun::start(
                    &name,
                    &config.script_root,
                    &config.script_cwd,
                    config.script_timeout,
                    config.script_output_cap,
                );
                Kind::Script {
                    name,
                    run: Box::new(run),
                }
            }
            Some(s) => match s.builtin.unwrap_or(Builtin::Rows) {
                Builtin::Rows => Kind::Rows(Rows::new(limit)),
                Builtin::Top => {
                    let by = by_list(s);
                    if by.is_empty() {
                        warnings.push("top without `by`; rows kept in arrival order".to_string());
                    } else if by.len() > 1 {
                        warnings.push(format!(
                            "top ranks by its first `by` column only ({})",
                            by[0]
                        ));
                    }
                    Kind::Top(Top::new(by.into_iter().next(), limit))
                }
                Builtin::Group => {
                    let by = by_list(s);
                    if by.is_empty() {
                        warnings.push("group without `by`; all rows form one group".to_string());
                    }
                    Kind::Group(Group::new(by, limit))
                }
                Builtin::Stats => Kind::Stats(Stats::new(columns)),
                Builtin::Schema => Kind::Schema,
                Builtin::IndexAdvice => Kind::IndexAdvice(Box::default()),
            },
        };
        let mut s = Summarizer {
            kind,
            columns: columns.to_vec(),
            redact: config
                .redact_columns
                .iter()
                .map(|c| c.to_lowercase())
                .collect(),
            secret: secret_columns(columns.iter().map(|c| c.name.as_str())),
            key: config.pseudonym_key,
            budget: config.budget_tokens,
            pushed: 0,
            first: None,
            warnings,
        };
        if !s.columns.is_empty() {
            s.resolve_by();
        }
        s
    }

    /// Maps `by` names onto the result's columns (case-insensitive) and warns about missing ones.
    fn resolve_by(&mut self) {
        let cols = &self.columns;
        let mut missing = Vec::new();
        let mut fix = |name: &mut String| match cols
            .iter()
            .find(|c| c.name == *name || eq_ci(&c.name, name))
        {
            Some(c) => *name = c.name.clone(),
            None => missing.push(name.clone()),
        };
        match &mut self.kind {
            Kind::Top(t) => {
                if let Some(b) = t.by.as_mut() {
                    fix(b);
                }
            }
            Kind::Group(g) => g.by.iter_mut().for_each(fix),
            _ => {}
        }
        for m in missing {
            self.warnings.push(format!(
                "column `{m}` is not in the result; treated as null"
            ));
        }
    }

    fn is_redacted(&self, col: &str) -> bool {
        self.redact.iter().any(|r| eq_ci(r, col))
    }

    fn is_secret(&self, col: &str) -> bool {
        self.secret.iter().any(|s| s == col)
    }

    /// The row as the summarizer may see it: configured columns
    /// pseudonymized, credential columns masked and, for a script (a
    /// process outside ward), every value redacted. No copy when nothing
    /// changes.
    fn redact_row<'a>(&self, row: &'a Row) -> Cow<'a, Row> {
        // Rows a script no longer takes are not worth redacting.
        let script = matches!(&self.kind, Kind::Script { run, .. } if run.accepting());
        if !script
            && (self.redact.is_empty() || !row.keys().any(|k| self.is_redacted(k)))
            && (self.secret.is_empty() || !row.keys().any(|k| self.is_secret(k)))
        {
            return Cow::Borrowed(row);
        }
        let mut out: Option<Row> = None;
        for (i, (k, v)) in row.iter().enumerate() {
            let new = if v.is_null() {
                None
            } else if self.is_redacted(k) {
                Some(Value::String(pseudonym(&self.key, k, v)))
            } else if self.is_secret(k) {
                Some(mask_secret(v))
            } else if script {
                redact_value(v)
            } else {
                None
            };
            match (new, out.as_mut()) {
                (Some(new), Some(o)) => {
                    o.insert(k.clone(), new);
                }
                (Some(new), None) => {
                    let mut o = Row::with_capacity(row.len());
                    for (k, v) in row.iter().take(i) {
                        o.insert(k.clone(), v.clone());
                    }
                    o.insert(k.clone(), new);
                    out = Some(o);
                }
                (None, Some(o)) => {
                    o.insert(k.clone(), v.clone());
                }
                (None, None) => {}
            }
        }
        out.map_or(Cow::Borrowed(row), Cow::Owned)
    }

    /// Pseudonymizes configured columns and masks credentials, then feeds
    /// the summarizer.
    pub fn push(&mut self, row: &Row) {
        if self.pushed == 0 && self.columns.is_empty() {
            self.columns = row
                .iter()
                .take(MAX_COLUMNS)
                .map(|(k, v)| Column::new(k.clone(), infer_type(v)))
                .collect();
            self.secret = secret_columns(row.keys().map(String::as_str));
            self.resolve_by();
        }
        let row = self.redact_row(row);
        let row: &Row = &row;
        if self.pushed == 0 {
            self.first = Some(scalar_facts(row));
        }
        self.pushed += 1;
        let cols = &self.columns;
        match &mut self.kind {
            Kind::Rows(r) => r.push(row, cols),
            Kind::Top(t) => t.push(row, cols),
            Kind::Group(g) => g.push(row),
            Kind::Stats(s) => s.push(row),
            Kind::Schema => {}
            Kind::IndexAdvice(a) => a.push(row),
            Kind::Script { run, .. } => run.send(row),
        }
    }

    /// Size of the summarizer's row-dependent state (rows kept, heap entries,
    /// groups, accumulators, channel slots): bounded, whatever the row count.
    pub fn state_len(&self) -> usize {
        match &self.kind {
            Kind::Rows(r) => r.state_len(),
            Kind::Top(t) => t.state_len(),
            Kind::Group(g) => g.state_len(),
            Kind::Stats(s) => s.state_len(),
            Kind::Schema => 0,
            Kind::IndexAdvice(a) => a.state_len(),
            Kind::Script { run, .. } => run.state_len(),
        }
    }

    /// `rows_seen`: rows the executor read; `capped`: it stopped at max_rows.
    pub fn finish(self, rows_seen: u64, capped: bool) -> Evidence {
        let Summarizer {
            kind,
            columns,
            budget,
            pushed,
            mut first,
            mut warnings,
            ..
        } = self;
        let rows = rows_seen.max(pushed);
        let capped_note = if capped {
            format!(" (capped at {})", plural(rows, "row", "rows"))
        } else {
            String::new()
        };
        let schema_facts = |m: &mut Map<String, Value>| {
            m.insert("columns".to_string(), Value::from(columns.len() as u64));
        };
        let mut specific = Map::new();
        let mut script_facts = None;
        let mut stderr = None;
        let (summarizer, lines) = match kind {
            Kind::Rows(r) => ("rows".to_string(), r.render(rows, &capped_note, &columns)),
            Kind::Top(t) => {
                let (lines, top, spec) = t.finish(rows, &capped_note, &columns);
                first = top;
                specific = spec;
                ("top".to_string(), lines)
            }
            Kind::Group(g) => {
                if g.overflowed() {
                    warnings.push(format!(
                        "more than {MAX_GROUPS} distinct groups; the rest are counted under \"{}\"",
                        builtin::OTHER
                    ));
                }
                let (lines, spec) = g.finish(rows, &capped_note);
                specific = spec;
                ("group".to_string(), lines)
            }
            Kind::Stats(s) => {
                let (lines, spec) = s.finish(rows, &capped_note);
                specific = spec;
                ("stats".to_string(), lines)
            }
            Kind::IndexAdvice(a) => {
                let (lines, spec) = a.finish();
                first = None;
                specific = spec;
                ("index_advice".to_string(), lines)
            }
            Kind::Schema => {
                schema_facts(&mut specific);
                (
                    "schema".to_string(),
                    schema_lines(rows, &capped_note, &columns),
                )
            }
            Kind::Script { name, run } => match run.finish() {
                Outcome::Ok { stdout, stderr: e } => {
                    stderr = e;
                    let (text, facts) = split_facts(&stdout);
                    script_facts = Some(facts.unwrap_or_default());
                    first = None;
                    let mut lines = vec![format!(
                        "script {name}: {}{capped_note}",
                        builtin::plural(rows, "row", "rows")
                    )];
                    lines.push(if text.trim().is_empty() {
                        "(the script printed no summary)".to_string()
                    } else {
                        text
                    });
                    (format!("script:{name}"), lines)
                }
                Outcome::Failed { reason, stderr: e } => {
                    stderr = e;
                    warnings.push(format!("script {name} {reason}; fell back to schema"));
                    schema_facts(&mut specific);
                    let mut lines = vec![format!(
                        "warning: script {name} {reason}; showing the schema instead"
                    )];
                    lines.extend(schema_lines(rows, &capped_note, &columns));
                    (format!("schema (fallback: script {name} {reason})"), lines)
                }
            },
        };

        let mut facts = Map::new();
        facts.insert("row_count".to_string(), Value::from(rows));
        facts.insert("capped".to_string(), Value::from(capped));
        for (k, v) in first.unwrap_or_default() {
            facts.entry(k).or_insert(v);
        }
        for (k, v) in specific {
            if k != "row_count" && k != "capped" {
                facts.insert(k, v);
            }
        }
        for (k, v) in script_facts.unwrap_or_default() {
            facts.insert(k, v);
        }

        let text = redact_text(&strip_controls(&lines.join("\n")));
        let (summary, truncated) = fit_budget(text, budget);
        Evidence {
            summarizer: redact_text(&summarizer),
            tokens: estimate_tokens(&summary),
            summary,
            facts: clean_map(facts),
            warnings: warnings
                .iter()
                .map(|w| redact_text(&strip_controls(w)))
                .collect(),
            truncated,
            script_stderr: stderr.map(|s| script::cap_stderr(&redact_text(&s))),
        }
    }
}

/// Splits a script's stdout into summary text and the facts object on its last non-empty line.
fn split_facts(stdout: &str) -> (String, Option<Map<String, Value>>) {
    let trimmed = stdout.trim_end();
    let (before, last) = match trimmed.rfind('\n') {
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => ("", trimmed),
    };
    match serde_json::from_str::<Value>(last.trim()) {
        Ok(Value::Object(m)) => (before.trim_end().to_string(), Some(m)),
        _ => (trimmed.to_string(), None),
    }
}

/// Names of the columns that name a credential.
fn secret_columns<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    names
        .filter(|n| is_secret_name(n))
        .map(str::to_string)
        .collect()
}

/// Redacts and caps fact names and string values, recursively; a string
/// under a name that marks a credential is masked whole.
fn clean_map(m: Map<String, Value>) -> Map<String, Value> {
    m.into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) if is_secret_name(&k) && !is_pseudonym(&k, &s) => {
                    mask_secret(&Value::String(s))
                }
                other => other,
            };
            (
                cap_chars(&redact_cow(&k), FACT_STRING_MAX).into_owned(),
                clean_value(v),
            )
        })
        .collect()
}

fn clean_value(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(cap_chars(&redact_cow(&s), FACT_STRING_MAX).into_owned()),
        Value::Array(a) => Value::Array(a.into_iter().map(clean_value).collect()),
        Value::Object(m) => Value::Object(clean_map(m)),
        other => other,
    }
}

/// Cuts `text` at a line boundary so that it fits `budget` tokens including the
/// final "... summary truncated" line. A budget too small for that line alone
/// yields just the line.
fn fit_budget(text: String, budget: usize) -> (String, bool) {
    if estimate_tokens(&text) <= budget {
        return (text, false);
    }
    let marker = format!("... summary truncated to {budget} tokens (budget)");
    let room = budget.saturating_mul(4).saturating_sub(marker.len() + 1);
    let mut out = String::new();
    for line in text.lines() {
        if out.len() + line.len() + 1 > room {
            if out.is_empty() {
                // A single overlong first line: keep what fits of it.
                let part = cut_bytes(line, room.saturating_sub(1));
                if !part.is_empty() {
                    out.push_str(part);
                    out.push('\n');
                }
            }
            break;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&marker);
    (out, true)
}
