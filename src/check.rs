//! `ward check`: everything that can be known about the repository without a
//! database. Loads and validates every runbook and policy, analyzes every
//! step's SQL (done while loading) and runs the policy tests.

use serde::Serialize;

use crate::config::Config;
use crate::contract::{self, Contract};
use crate::diag::Problem;
use crate::policy::{self, Policy, cases};
use crate::sql::Analyzer;

#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub runbooks: usize,
    pub steps: usize,
    pub policies: usize,
    pub policy_tests_passed: usize,
    pub policy_tests_failed: usize,
    /// Every problem, sorted by file, line and column.
    pub problems: Vec<Problem>,
    #[serde(skip)]
    pub contracts: Vec<Contract>,
    #[serde(skip)]
    pub loaded_policies: Vec<Policy>,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Why `ward check` could not run at all (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{0}")]
    Config(Problem),
    #[error("the runbooks directory {0} does not exist; create it or set `runbooks:` in ward.yaml")]
    NoRunbooks(String),
    #[error("the policies directory {0} does not exist; create it or set `policies:` in ward.yaml")]
    NoPolicies(String),
}

pub fn check(config: &Config) -> Result<CheckReport, CheckError> {
    if !config.runbooks.is_dir() {
        return Err(CheckError::NoRunbooks(
            config.runbooks.display().to_string(),
        ));
    }
    if !config.policies.is_dir() {
        return Err(CheckError::NoPolicies(
            config.policies.display().to_string(),
        ));
    }
    let (contracts, mut problems) =
        contract::load_dir(&config.runbooks, &config.runbook_analyzer());
    let (policies, mut policy_problems) =
        policy::load_dir_for(&config.policies, config.spec.store.is_some());
    problems.append(&mut policy_problems);
    if !policies.iter().any(|p| p.id == config.policy) && !policies.is_empty() {
        problems.push(Problem::new(
            config.location(),
            format!(
                "the configured policy `{}` is not among the loaded policies ({})",
                config.policy,
                policies
                    .iter()
                    .map(|p| p.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let explain_analyzer = Analyzer::new(config.analyzer_options());
    let (results, mut case_problems) =
        cases::run_dir(&config.policies.join("tests"), &policies, &explain_analyzer);
    problems.append(&mut case_problems);
    let failed: Vec<&cases::CaseResult> = results.iter().filter(|r| r.failure.is_some()).collect();
    problems.extend(failed.iter().filter_map(|r| r.failure.clone()));
    problems.sort();
    problems.dedup();
    Ok(CheckReport {
        runbooks: contracts.len(),
        steps: contracts.iter().map(|c| c.steps.len()).sum(),
        policies: policies.len(),
        policy_tests_passed: results.len() - failed.len(),
        policy_tests_failed: failed.len(),
        problems,
        contracts,
        loaded_policies: policies,
    })
}
