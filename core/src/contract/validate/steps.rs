//! A step: its id, `requires`, risk (a diagnostic is read-only by analysis;
//! a declared risk may raise, never lower), timeouts, row cap, `when`,
//! rollback and verify; and cycles of `requires` across steps.

use std::time::Duration;

use super::{Validator, did_you_mean, is_snake, step_path};
use crate::contract::{
    DEFAULT_TIMEOUT, PreparedSql, Rollback, Step, StepKind, StepSpec, parse_duration,
    positive_duration, reserved, versions,
};
use crate::expr::Expr;
use crate::sql::Risk;
use crate::yaml::Seg;

impl Validator<'_> {
    pub(super) fn validate_step(&mut self, i: usize, step: &StepSpec, ids: &[&str]) -> Step {
        self.check_step_id(i, step);
        self.check_requires(i, step, ids);
        let sql = self.prepare(&step_path(i, "sql"), &step.sql);
        self.check_risk(i, step, &sql);
        let timeout = self.timeout(i, step);
        let lock_timeout = self.lock_timeout(i, step);
        if step.max_rows == Some(0) {
            self.problem_at(&step_path(i, "max_rows"), "max_rows must be at least 1");
        }
        let when = self.when(i, step, ids);
        let (rollback, rollback_sql) = self.validate_rollback(i, step, ids);
        let verify = self.verify(i, step);
        self.check_versions(i, step);
        self.check_platforms(i, step);
        self.validate_summarize(i, step);
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

    /// `platforms` and `not_on` are not both given, leave some platform
    /// the step runs on, and a `platform_note` comes with one of them.
    fn check_platforms(&mut self, i: usize, step: &StepSpec) {
        use crate::platform::Platform;
        if !step.platforms.is_empty() && !step.not_on.is_empty() {
            self.problem_at(
                &step_path(i, "not_on"),
                "give `platforms` (where the step works) or `not_on` (where it does not), not both"
                    .to_string(),
            );
            return;
        }
        if Platform::ALL.iter().all(|p| !step.works_on(*p)) {
            self.problem_at(
                &step_path(i, "not_on"),
                "not_on lists every platform: no target could run the step".to_string(),
            );
        }
        if step.platform_note.is_some() && step.platforms.is_empty() && step.not_on.is_empty() {
            self.problem_at(
                &step_path(i, "platform_note"),
                "platform_note says what to do where the step is left out, but the step has no `platforms` or `not_on`".to_string(),
            );
        }
    }

    /// `min_version` / `max_version` make a range of majors; each
    /// `sql_by_version` alternative lies inside it, parses, and is
    /// read-only in a diagnostic; and no statement (nor `verify`) uses a
    /// catalog name that one of the versions it runs on lacks, as far as
    /// [`versions::version_problems`] knows, nor reads a setting ward sets
    /// with `SET LOCAL` as if it were the server's
    /// ([`versions::own_setting_reads`]).
    fn check_versions(&mut self, i: usize, step: &StepSpec) {
        let oldest = versions::OLDEST_SUPPORTED;
        for (key, v) in [
            ("min_version", step.min_version),
            ("max_version", step.max_version),
        ] {
            if let Some(v) = v
                && v < oldest
            {
                self.problem_at(
                    &step_path(i, key),
                    format!("{key}: {v} is older than the oldest supported PostgreSQL ({oldest})"),
                );
            }
        }
        if let (Some(min), Some(max)) = (step.min_version, step.max_version)
            && min > max
        {
            self.problem_at(
                &step_path(i, "max_version"),
                format!("max_version {max} is older than min_version {min}: no server could run the step"),
            );
            return;
        }
        for (key, sql) in &step.sql_by_version {
            let name = key.to_string();
            let path = [
                Seg::Key("steps"),
                Seg::Index(i),
                Seg::Key("sql_by_version"),
                Seg::Key(&name),
            ];
            let outside = step.min_version.is_some_and(|min| *key <= min)
                || step.max_version.is_some_and(|max| *key > max);
            if outside || *key < oldest {
                self.problem_at(
                    &path,
                    format!(
                        "sql_by_version: {key} never applies: it must be newer than min_version ({}) and at most max_version ({}), since `sql` covers the oldest versions",
                        step.min_version.unwrap_or(oldest),
                        step.max_version
                            .map_or("none".to_string(), |m| m.to_string())
                    ),
                );
            }
            let prepared = self.prepare(&path, sql);
            let parsed = prepared
                .per_engine
                .iter()
                .all(|(_, _, a)| a.parse_error.is_none());
            if step.kind == StepKind::Diagnostic && parsed && prepared.risk() != Risk::ReadOnly {
                self.problem_at(
                    &path,
                    format!(
                        "diagnostic step `{}` must be read-only, but its SQL for PostgreSQL {key} is {}",
                        step.id,
                        prepared.risk()
                    ),
                );
            }
        }
        for (key, sql, lo, hi) in step.sql_variants() {
            let name = key.map(|k| k.to_string());
            let path = match &name {
                Some(k) => vec![
                    Seg::Key("steps"),
                    Seg::Index(i),
                    Seg::Key("sql_by_version"),
                    Seg::Key(k),
                ],
                None => step_path(i, "sql").to_vec(),
            };
            for why in versions::version_problems(sql, lo, hi) {
                self.problem_at(&path, format!("step `{}` {why}", step.id));
            }
            for why in versions::own_setting_reads(sql) {
                self.problem_at(&path, format!("step `{}` {why}", step.id));
            }
        }
        for (key, sql, lo, hi) in step.verify_variants() {
            let name = key.map(|k| k.to_string());
            let mut path = vec![Seg::Key("steps"), Seg::Index(i), Seg::Key("verify")];
            match &name {
                Some(k) => path.extend([Seg::Key("sql_by_version"), Seg::Key(k)]),
                None => path.push(Seg::Key("sql")),
            }
            if key.is_some_and(|k| {
                k < oldest
                    || step.min_version.is_some_and(|min| k <= min)
                    || step.max_version.is_some_and(|max| k > max)
            }) {
                self.problem_at(
                    &path,
                    format!(
                        "verify sql_by_version: {} never applies: it must be newer than the step's min_version ({}) and at most its max_version",
                        name.as_deref().unwrap_or_default(),
                        step.min_version.unwrap_or(oldest),
                    ),
                );
            }
            if key.is_some() {
                let prepared = self.prepare(&path, sql);
                if prepared.risk() != Risk::ReadOnly {
                    self.problem_at(
                        &path,
                        format!(
                            "verify SQL must be read-only, but it is {}",
                            prepared.risk()
                        ),
                    );
                }
            }
            for why in versions::version_problems(sql, lo, hi) {
                self.problem_at(&path, format!("the verify of step `{}` {why}", step.id));
            }
            for why in versions::own_setting_reads(sql) {
                self.problem_at(&path, format!("the verify of step `{}` {why}", step.id));
            }
        }
    }

    /// snake_case, and not a name ward or its agent uses.
    fn check_step_id(&mut self, i: usize, step: &StepSpec) {
        let why = if !is_snake(&step.id) {
            format!("step id `{}` must be snake_case", step.id)
        } else if reserved::is_reserved(&step.id) {
            format!(
                "step id `{}` is reserved (ward's ad-hoc queries and the agent's own tools use it); rename the step",
                step.id
            )
        } else {
            return;
        };
        self.problem_at(&step_path(i, "id"), why);
    }

    /// Each `requires` names another step.
    fn check_requires(&mut self, i: usize, step: &StepSpec, ids: &[&str]) {
        for (j, req) in step.requires.iter().enumerate() {
            if ids.contains(&req.as_str()) && *req != step.id {
                continue;
            }
            let hint = did_you_mean(req, ids.iter().copied().filter(|s| *s != step.id));
            let what = if *req == step.id { "itself" } else { "no step" };
            self.problem_at(
                &[
                    Seg::Key("steps"),
                    Seg::Index(i),
                    Seg::Key("requires"),
                    Seg::Index(j),
                ],
                format!("`requires: {req}` names {what}{hint}"),
            );
        }
    }

    /// A diagnostic must be read-only by analysis of its SQL (when it
    /// parses), and a declared risk may not be lower than the analyzed one.
    fn check_risk(&mut self, i: usize, step: &StepSpec, sql: &PreparedSql) {
        let risk = sql.risk();
        let parsed = !sql.per_engine.is_empty()
            && sql
                .per_engine
                .iter()
                .all(|(_, _, a)| a.parse_error.is_none());
        if step.kind == StepKind::Diagnostic && risk != Risk::ReadOnly && parsed {
            let reasons = sql
                .per_engine
                .iter()
                .flat_map(|(_, _, a)| a.statements.iter().flat_map(|s| s.reasons.clone()))
                .collect::<Vec<_>>();
            let reasons = if reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", reasons.join("; "))
            };
            self.problem_at(
                &step_path(i, "sql"),
                format!(
                    "diagnostic step `{}` must be read-only, but its SQL is {risk}{reasons}; make it a remediation (with rollback) or change the SQL",
                    step.id
                ),
            );
        }
        if let Some(declared) = step.risk
            && declared.rank() < risk.rank()
        {
            self.problem_at(
                &step_path(i, "risk"),
                format!(
                    "declared risk `{declared}` is lower than the analyzed `{risk}`; a runbook may raise a step's risk, never lower it"
                ),
            );
        }
    }

    /// The step's statement timeout, [`DEFAULT_TIMEOUT`] when it has none
    /// (or after a problem).
    fn timeout(&mut self, i: usize, step: &StepSpec) -> Duration {
        let Some(t) = &step.timeout else {
            return DEFAULT_TIMEOUT;
        };
        parse_duration(t).unwrap_or_else(|| {
            self.problem_at(
                &step_path(i, "timeout"),
                format!("timeout `{t}` is not a duration; write e.g. 5s, 500ms, 2m"),
            );
            DEFAULT_TIMEOUT
        })
    }

    /// The step's own lock timeout, if it sets one that is above zero.
    fn lock_timeout(&mut self, i: usize, step: &StepSpec) -> Option<Duration> {
        match positive_duration(step.lock_timeout.as_deref()?) {
            Ok(d) => Some(d),
            Err(why) => {
                self.problem_at(&step_path(i, "lock_timeout"), format!("lock_timeout {why}"));
                None
            }
        }
    }

    /// `when`, reading only the facts of steps it requires.
    fn when(&mut self, i: usize, step: &StepSpec, ids: &[&str]) -> Option<Expr> {
        let w = step.when.as_ref()?;
        let path = step_path(i, "when");
        let e = self.compile(&path, w, &["facts", "inputs"])?;
        self.check_facts(&path, &e, ids, Some(step));
        Some(e)
    }

    /// `verify`: read-only SQL and an expectation on its rows.
    fn verify(&mut self, i: usize, step: &StepSpec) -> Option<(PreparedSql, Expr)> {
        let v = step.verify.as_ref()?;
        let at = |key| {
            [
                Seg::Key("steps"),
                Seg::Index(i),
                Seg::Key("verify"),
                Seg::Key(key),
            ]
        };
        let vsql = self.prepare(&at("sql"), &v.sql);
        if vsql.risk() != Risk::ReadOnly {
            self.problem_at(
                &at("sql"),
                format!("verify SQL must be read-only, but it is {}", vsql.risk()),
            );
        }
        let expect = self.compile(
            &at("expect"),
            &v.expect,
            &["rows", "inputs", "facts", "before"],
        )?;
        Some((vsql, expect))
    }

    /// A migration or remediation says how it is undone: SQL, the id of
    /// another step, or `none`.
    fn validate_rollback(
        &mut self,
        i: usize,
        step: &StepSpec,
        ids: &[&str],
    ) -> (Option<Rollback>, Option<PreparedSql>) {
        let path = step_path(i, "rollback");
        let Some(text) = step.rollback.as_deref().map(str::trim) else {
            if step.kind != StepKind::Diagnostic {
                let loc = self.doc.key_at(&step_path(i, "kind"));
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
            let hint = did_you_mean(text, ids.iter().copied());
            self.problem_at(
                &path,
                format!(
                    "`rollback: {text}` names no other step{hint}; use SQL, a step id, or `none`"
                ),
            );
            return (None, None);
        }
        let sql = self.prepare(&path, text);
        (Some(Rollback::Sql(text.to_string())), Some(sql))
    }

    /// A step may not require itself through other steps (requiring itself
    /// directly is reported at the `requires` entry).
    pub(super) fn check_cycles(&mut self) {
        for (i, step) in self.spec.steps.iter().enumerate() {
            if self.required_closure(&step.id).contains(&step.id)
                && !step.requires.contains(&step.id)
            {
                self.problem_at(
                    &step_path(i, "requires"),
                    format!(
                        "step `{}` requires itself through a cycle of `requires`",
                        step.id
                    ),
                );
            }
        }
    }
}
