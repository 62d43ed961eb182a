//! The runbook contract as written in YAML (docs/runbooks.md describes the
//! format).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::sql::{Engine, Risk};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RunbookSpec {
    pub id: String,
    pub title: String,
    pub version: u32,
    #[serde(default)]
    pub owner: Option<String>,
    pub engines: Vec<Engine>,
    /// Alert names this runbook answers.
    #[serde(default)]
    pub triggers: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub inputs: BTreeMap<String, InputSpec>,
    pub steps: Vec<StepSpec>,
    #[serde(default)]
    pub conclusions: Vec<ConclusionSpec>,
    #[serde(default)]
    pub adhoc: Adhoc,
    /// After a remediation or migration ran, these diagnostics run again
    /// and the conclusion is chosen from their new facts; `cleared` says
    /// whether the incident condition is gone.
    #[serde(default)]
    pub recheck: Option<RecheckSpec>,
}

/// The runbook's outcome check (docs/runbooks.md, "Outcomes judged after
/// the fact").
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RecheckSpec {
    /// Diagnostics run again, in this order, after any change executed.
    pub steps: Vec<String>,
    /// CEL over `facts` (the re-run's) and `before` (as first gathered):
    /// true when the incident condition is gone.
    pub cleared: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Adhoc {
    #[default]
    None,
    ReadOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputType {
    Integer,
    Number,
    String,
    Boolean,
    Identifier,
    /// Plain identifiers separated by commas (`customer_id, created_at`),
    /// each validated and double-quoted: an index's column list.
    IdentifierList,
    Duration,
    Enum,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    #[serde(rename = "type")]
    pub ty: InputType,
    #[serde(default)]
    pub default: Option<serde_yaml::Value>,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    /// The allowed values of an `enum` input.
    #[serde(default)]
    pub values: Option<Vec<String>>,
    /// Defaults to true when there is no default.
    #[serde(default)]
    pub required: Option<bool>,
    #[serde(default)]
    pub description: Option<String>,
    /// `step.fact`: when the session has no value for this input, the
    /// planner may propose one from that fact (e.g. the root blocker's pid
    /// that `blocking_tree` found). The value is checked like any input and
    /// shown in the proposal a human approves.
    #[serde(default)]
    pub from_fact: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Diagnostic,
    Migration,
    Remediation,
}

impl StepKind {
    pub fn name(self) -> &'static str {
        match self {
            StepKind::Diagnostic => "diagnostic",
            StepKind::Migration => "migration",
            StepKind::Remediation => "remediation",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    pub id: String,
    #[serde(default)]
    pub title: Option<String>,
    pub kind: StepKind,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub requires: Vec<String>,
    #[serde(default)]
    pub when: Option<String>,
    pub sql: String,
    /// The oldest PostgreSQL major version the step runs on (e.g. `14`);
    /// unset: every supported version (13 on). A session on an older
    /// server never proposes the step and says so in its conclusion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_version: Option<u32>,
    /// The newest PostgreSQL major version the step runs on; unset: no
    /// limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_version: Option<u32>,
    /// Alternatives to `sql` for newer servers, by major version: on a
    /// server of major N the entry with the highest key at most N replaces
    /// `sql` (`{17: "..."}`: `sql` up to 16, this from 17).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sql_by_version: BTreeMap<u32, String>,
    /// The only platforms the step works on (`[self-managed]`); unset:
    /// every platform not in `not_on`. A session on another platform never
    /// proposes the step and says so in its conclusion.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<crate::platform::Platform>,
    /// Platforms the step does not work on (`[rds, aurora, cloudsql,
    /// azure]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_on: Vec<crate::platform::Platform>,
    /// What to do instead where the step is left out for its platform, as
    /// the conclusion says it (`{platform}` is the platform's name): what
    /// only the provider's console can do, said plainly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_note: Option<String>,
    #[serde(default)]
    pub summarize: Option<SummarizeSpec>,
    #[serde(default)]
    pub max_rows: Option<u64>,
    #[serde(default)]
    pub timeout: Option<String>,
    /// How long the step waits for a lock (e.g. `1s`); unset: the
    /// target's `lock_timeout`, else ward's default.
    #[serde(default)]
    pub lock_timeout: Option<String>,
    /// SQL, another step's id, or `none` (irreversible). Required for
    /// migrations and remediations.
    #[serde(default)]
    pub rollback: Option<String>,
    #[serde(default)]
    pub verify: Option<VerifySpec>,
    /// A declared risk can raise the analyzed class, never lower it.
    #[serde(default)]
    pub risk: Option<Risk>,
    /// Columns replaced by stable pseudonyms before any summary leaves ward.
    #[serde(default)]
    pub redact: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Builtin {
    Rows,
    Top,
    Group,
    Stats,
    Schema,
    /// The index advisor over top statements and their tables' indexes
    /// and column statistics (see `evidence::advice`).
    IndexAdvice,
}

/// A column name or a list of them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Columns {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SummarizeSpec {
    #[serde(default)]
    pub builtin: Option<Builtin>,
    #[serde(default)]
    pub script: Option<String>,
    #[serde(default)]
    pub by: Option<Columns>,
    #[serde(default)]
    pub limit: Option<u64>,
    /// Facts a script's summary draws in full (say, a tree it also gives
    /// as a list for the TUI's picture): kept in the session, not sent to
    /// a model next to that summary unless the summary was truncated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shows: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySpec {
    pub sql: String,
    /// Alternatives to `sql` for newer servers, chosen like a step's
    /// `sql_by_version` (`{14: "..."}`: `sql` up to 13, this from 14).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sql_by_version: BTreeMap<u32, String>,
    pub expect: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConclusionSpec {
    pub when: String,
    pub text: String,
    /// The runbook that fixes the cause this conclusion names, with the
    /// inputs the evidence gives it (docs/runbooks.md, "Hand-offs").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<NextSpec>,
}

/// `next:` of a conclusion: another runbook of the repository and its
/// inputs, each a literal or a text with `{step.fact}` /
/// `{before.step.fact}` placeholders filled like the conclusion's text.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NextSpec {
    pub runbook: String,
    #[serde(default)]
    pub inputs: BTreeMap<String, serde_yaml::Value>,
}
