//! Policy tests: `policies/tests/*.yaml` hold cases (SQL, environment, time
//! -> expected decision) that `ward check` runs, as `opa test` does for Rego.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{Decision, Policy, TableSize};
use crate::diag::Problem;
use crate::gate::{self, GateInput};
use crate::sql::{Analyzer, Engine, Risk};
use crate::yaml::{Doc, Seg};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// The policy id the cases test; `default` when absent.
    #[serde(default)]
    pub policy: Option<String>,
    pub cases: Vec<Case>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    pub sql: String,
    #[serde(default)]
    pub engine: Option<Engine>,
    pub environment: String,
    /// RFC 3339 time of the attempt; defaults to a fixed Wednesday 03:00 UTC.
    #[serde(default)]
    pub at: Option<String>,
    #[serde(default)]
    pub runbook: Option<String>,
    #[serde(default)]
    pub step_kind: Option<String>,
    #[serde(default)]
    pub declared_risk: Option<Risk>,
    #[serde(default)]
    pub table_rows: Option<u64>,
    #[serde(default)]
    pub table_bytes: Option<u64>,
    /// The session reads as a role that `reads_unsafely` (see the policy
    /// condition `connected_as_superuser`).
    #[serde(default)]
    pub connected_as_superuser: bool,
    pub expect: Expect,
    /// When given, exactly these rule ids must match.
    #[serde(default)]
    pub rules: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Expect {
    Word(String),
    Approve { approve: ApproveExpect },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ApproveExpect {
    Count(u32),
    Full {
        approvers: u32,
        #[serde(default)]
        roles: Vec<String>,
    },
}

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    pub name: String,
    /// `None` when the case passed, else what went wrong, with its place.
    pub failure: Option<Problem>,
}

/// A policy test's `expect:` that names no decision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a decision; expect allow, deny, approve or {{ approve: N }}")]
pub struct UnknownExpectation(pub String);

fn expect_matches(expect: &Expect, got: &Decision) -> Result<bool, UnknownExpectation> {
    Ok(match (expect, got) {
        (Expect::Word(w), _) => match w.as_str() {
            "allow" | "deny" | "approve" => w == got.name(),
            other => return Err(UnknownExpectation(other.to_string())),
        },
        (
            Expect::Approve {
                approve: ApproveExpect::Count(n),
            },
            Decision::Approve { approvers, .. },
        ) => n == approvers,
        (
            Expect::Approve {
                approve:
                    ApproveExpect::Full {
                        approvers: n,
                        roles: r,
                    },
            },
            Decision::Approve { approvers, roles },
        ) => {
            n == approvers && {
                let mut a = r.clone();
                a.sort();
                let mut b = roles.clone();
                b.sort();
                a == b
            }
        }
        (Expect::Approve { .. }, _) => false,
    })
}

fn describe(d: &Decision) -> String {
    match d {
        Decision::Approve { approvers, roles } if roles.is_empty() => {
            format!("approve by {approvers}")
        }
        Decision::Approve { approvers, roles } => {
            format!("approve by {approvers} (roles: {})", roles.join(", "))
        }
        other => other.name().to_string(),
    }
}

/// A fixed default time for cases without `at`: Wednesday 2026-01-07 03:00 UTC.
fn default_time() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_754_800, 0).unwrap_or_default()
}

/// Runs every case file in `dir` against `policies`. Returns per-case results
/// and problems that kept files or cases from running.
pub fn run_dir(
    dir: &Path,
    policies: &[Policy],
    analyzer: &Analyzer,
) -> (Vec<CaseResult>, Vec<Problem>) {
    let mut results = Vec::new();
    let mut problems = Vec::new();
    if !dir.is_dir() {
        return (results, problems);
    }
    let files = match crate::contract::yaml_files(dir) {
        Ok(f) => f,
        Err(p) => return (results, vec![p]),
    };
    for file in files {
        match Doc::read(&file) {
            Ok(doc) => {
                let (mut r, mut p) = run_doc(&doc, policies, analyzer);
                results.append(&mut r);
                problems.append(&mut p);
            }
            Err(p) => problems.push(p),
        }
    }
    (results, problems)
}

pub fn run_doc(
    doc: &Doc,
    policies: &[Policy],
    analyzer: &Analyzer,
) -> (Vec<CaseResult>, Vec<Problem>) {
    let file: CaseFile = match doc.parse() {
        Ok(f) => f,
        Err(p) => return (Vec::new(), vec![p]),
    };
    let policy_id = file.policy.as_deref().unwrap_or("default");
    let Some(policy) = policies.iter().find(|p| p.id == policy_id) else {
        let known: Vec<&str> = policies.iter().map(|p| p.id.as_str()).collect();
        return (
            Vec::new(),
            vec![Problem::new(
                doc.at(&[Seg::Key("policy")]),
                format!(
                    "no policy with id `{policy_id}` loaded (known: {})",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ),
            )],
        );
    };
    let mut results = Vec::new();
    let mut problems = Vec::new();
    for (i, case) in file.cases.iter().enumerate() {
        let at = |k: &'static str| doc.at(&[Seg::Key("cases"), Seg::Index(i), Seg::Key(k)]);
        let now = match &case.at {
            None => default_time(),
            Some(t) => match DateTime::parse_from_rfc3339(t) {
                Ok(t) => t.with_timezone(&Utc),
                Err(e) => {
                    problems.push(Problem::new(at("at"), format!("`{t}` is not an RFC 3339 time ({e}); write e.g. 2026-11-18T15:00:00-05:00")));
                    continue;
                }
            },
        };
        let analysis = analyzer.analyze(case.engine.unwrap_or(Engine::Postgres), &case.sql);
        let table_size =
            (case.table_rows.is_some() || case.table_bytes.is_some()).then(|| TableSize {
                rows: case.table_rows.unwrap_or(0),
                bytes: case.table_bytes.unwrap_or(0),
            });
        let verdict = gate::decide(
            policy,
            &GateInput {
                analysis: &analysis,
                declared_risk: case.declared_risk,
                environment: &case.environment,
                runbook: case.runbook.as_deref(),
                step_kind: case.step_kind.as_deref(),
                table_size,
                now,
                connected_as_superuser: case.connected_as_superuser,
            },
        );
        let mut failure = None;
        match expect_matches(&case.expect, &verdict.decision) {
            Err(e) => failure = Some(Problem::new(at("expect"), e.to_string())),
            Ok(false) => {
                let ids: Vec<&str> = verdict.rules.iter().map(|m| m.id.as_str()).collect();
                failure = Some(Problem::new(
                    at("expect"),
                    format!(
                        "policy test `{}` failed: expected {}, got {} (risk {}, matched rules: {})",
                        case.name,
                        match &case.expect {
                            Expect::Word(w) => w.clone(),
                            Expect::Approve {
                                approve: ApproveExpect::Count(n),
                            } => format!("approve by {n}"),
                            Expect::Approve {
                                approve: ApproveExpect::Full { approvers, roles },
                            } => {
                                format!("approve by {approvers} (roles: {})", roles.join(", "))
                            }
                        },
                        describe(&verdict.decision),
                        verdict.risk,
                        if ids.is_empty() {
                            "none, default applied".into()
                        } else {
                            ids.join(", ")
                        }
                    ),
                ));
            }
            Ok(true) => {}
        }
        if let (None, Some(expected)) = (&failure, &case.rules) {
            let got: Vec<&str> = verdict.rules.iter().map(|m| m.id.as_str()).collect();
            let mut want: Vec<&str> = expected.iter().map(String::as_str).collect();
            let mut have = got.clone();
            want.sort();
            have.sort();
            if want != have {
                failure = Some(Problem::new(
                    at("rules"),
                    format!(
                        "policy test `{}` failed: expected rules [{}], matched [{}]",
                        case.name,
                        expected.join(", "),
                        got.join(", ")
                    ),
                ));
            }
        }
        results.push(CaseResult {
            name: case.name.clone(),
            failure,
        });
    }
    (results, problems)
}
