//! The contract's validator: everything about a runbook that can be checked
//! without a database, each problem at the `file:line:col` it is about.
//!
//! One file per concern: `inputs`, `steps` (ids, `requires`, risk,
//! timeouts, rollback, verify), `sql` (parameters, and the analysis per
//! engine), `cel` (conditions, the facts they read, conclusion
//! placeholders) and `summarize`. It collects every problem instead of
//! stopping at the first. It must never touch a database or run a script.

mod cel;
mod inputs;
mod next;
mod sql;
mod steps;
mod summarize;

use std::collections::BTreeSet;
use std::path::Path;

use super::{Conclusion, Contract, RunbookSpec};
use crate::diag::{Location, Problem, nearest};
use crate::sql::Analyzer;
use crate::yaml::{Doc, Seg};

/// Checks `spec`, as read from `doc`: the contract, or every problem found,
/// sorted and without duplicates. `root` is the runbooks directory that
/// `summarize.script` paths are relative to.
pub(super) fn validate(
    doc: &Doc,
    root: &Path,
    analyzer: &Analyzer,
    spec: &RunbookSpec,
) -> Result<Contract, Vec<Problem>> {
    let mut v = Validator {
        doc,
        problems: Vec::new(),
        analyzer,
        root,
        spec,
    };
    let contract = v.contract();
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

    /// A problem at the value at `path`.
    fn problem_at(&mut self, path: &[Seg], message: impl Into<String>) {
        let at = self.doc.at(path);
        self.problem(at, message);
    }

    fn contract(&mut self) -> Contract {
        let spec = self.spec;
        self.check_header();
        let ids: Vec<&str> = spec.steps.iter().map(|s| s.id.as_str()).collect();
        self.validate_inputs(&ids);
        self.check_step_list();
        let steps = spec
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| self.validate_step(i, s, &ids))
            .collect();
        self.check_cycles();
        let conclusions = self.conclusions(&ids);
        let recheck = self.recheck(&ids);
        Contract {
            path: self.doc.path.clone(),
            spec: spec.clone(),
            steps,
            conclusions,
            left_out: Vec::new(),
            recheck,
        }
    }

    /// The runbook's id and engines.
    fn check_header(&mut self) {
        let spec = self.spec;
        if !is_kebab(&spec.id) {
            self.problem_at(
                &[Seg::Key("id")],
                format!(
                    "runbook id `{}` must be kebab-case (lowercase letters, digits and single dashes)",
                    spec.id
                ),
            );
        }
        if spec.engines.is_empty() {
            self.problem_at(
                &[Seg::Key("engines")],
                "`engines` must name at least one engine: postgres or sqlite",
            );
        }
    }

    /// At least one step, and no id twice.
    fn check_step_list(&mut self) {
        if self.spec.steps.is_empty() {
            self.problem_at(&[Seg::Key("steps")], "a runbook needs at least one step");
        }
        let mut seen = BTreeSet::new();
        for (i, step) in self.spec.steps.iter().enumerate() {
            if !seen.insert(step.id.as_str()) {
                self.problem_at(
                    &step_path(i, "id"),
                    format!("duplicate step id `{}`", step.id),
                );
            }
        }
    }

    /// The conclusions whose `when` compiles; the others are problems.
    fn conclusions(&mut self, ids: &[&str]) -> Vec<Conclusion> {
        let mut out = Vec::new();
        for (i, c) in self.spec.conclusions.iter().enumerate() {
            let path = [Seg::Key("conclusions"), Seg::Index(i), Seg::Key("when")];
            self.check_placeholders(i, &c.text, ids);
            self.check_next(i, c.next.as_ref(), ids);
            if let Some(when) = self.compile(&path, &c.when, &["facts", "inputs", "before"]) {
                self.check_facts(&path, &when, ids, None);
                out.push(Conclusion {
                    when,
                    text: c.text.clone(),
                    next: c.next.clone(),
                });
            }
        }
        out
    }
}

impl Validator<'_> {
    /// `recheck`: diagnostics of this runbook, and a `cleared` that compiles.
    fn recheck(&mut self, ids: &[&str]) -> Option<super::Recheck> {
        let r = self.spec.recheck.as_ref()?;
        if r.steps.is_empty() {
            self.problem_at(
                &[Seg::Key("recheck"), Seg::Key("steps")],
                "`recheck.steps` must name at least one diagnostic",
            );
        }
        for (i, id) in r.steps.iter().enumerate() {
            let path = [Seg::Key("recheck"), Seg::Key("steps"), Seg::Index(i)];
            match self.spec.steps.iter().find(|s| &s.id == id) {
                None => {
                    let hint = did_you_mean(id, ids.iter().copied());
                    self.problem_at(&path, format!("`recheck` names no step `{id}`{hint}"));
                }
                Some(s) if s.kind != super::StepKind::Diagnostic => self.problem_at(
                    &path,
                    format!(
                        "`recheck` may only run diagnostics again; `{id}` is a {}",
                        s.kind.name()
                    ),
                ),
                Some(_) => {}
            }
        }
        let path = [Seg::Key("recheck"), Seg::Key("cleared")];
        let cleared = self.compile(&path, &r.cleared, &["facts", "inputs", "before"])?;
        self.check_facts(&path, &cleared, ids, None);
        Some(super::Recheck {
            steps: r.steps.clone(),
            cleared,
        })
    }
}

/// `[steps, i, key]`: where a field of step `i` is.
fn step_path(i: usize, key: &str) -> [Seg<'_>; 3] {
    [Seg::Key("steps"), Seg::Index(i), Seg::Key(key)]
}

/// ` (did you mean `x`?)` when one of `candidates` is close to `word`.
fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    nearest(word, candidates)
        .map(|n| format!(" (did you mean `{n}`?)"))
        .unwrap_or_default()
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

fn is_snake(id: &str) -> bool {
    !id.is_empty()
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}
