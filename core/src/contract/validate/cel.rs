//! Conditions (`when`, `verify.expect`, conclusions) compiled as CEL, the
//! variables and facts they may read, and the `{step.fact}` placeholders of
//! conclusions. A compile error points inside the expression.

use std::collections::BTreeSet;

use super::{Validator, did_you_mean};
use crate::contract::StepSpec;
use crate::expr::Expr;
use crate::yaml::Seg;

impl Validator<'_> {
    /// `source` compiled, using only the variables in `allowed`; `None`
    /// after a compile error.
    pub(super) fn compile(&mut self, path: &[Seg], source: &str, allowed: &[&str]) -> Option<Expr> {
        match Expr::compile(source) {
            Ok(e) => {
                for var in e.variables() {
                    if !allowed.contains(&var.as_str()) {
                        self.problem_at(
                            path,
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
                let offset = byte_offset(source, err.line, err.col);
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
    pub(super) fn check_facts(
        &mut self,
        path: &[Seg],
        e: &Expr,
        ids: &[&str],
        step: Option<&StepSpec>,
    ) {
        let reachable = step.map(|s| self.required_closure(&s.id));
        // `has(facts.x)` alone asks whether step x has run; it needs no
        // `requires` (an optional earlier step, e.g. dropping a leftover).
        let tested = e.presence_tests("facts");
        // `before.<step>`: the facts as first gathered (a recheck runs later).
        for (fact_step, _) in e.selections("before") {
            if !ids.contains(&fact_step.as_str()) {
                let hint = did_you_mean(&fact_step, ids.iter().copied());
                self.problem_at(path, format!("`before.{fact_step}` names no step{hint}"));
            }
        }
        for (fact_step, field) in e.selections("facts") {
            if field.is_none() && tested.contains(&fact_step) && ids.contains(&fact_step.as_str()) {
                continue;
            }
            if !ids.contains(&fact_step.as_str()) {
                let hint = did_you_mean(&fact_step, ids.iter().copied());
                self.problem_at(path, format!("`facts.{fact_step}` names no step{hint}"));
            } else if let (Some(reach), Some(s)) = (&reachable, step)
                && !reach.contains(&fact_step)
            {
                self.problem_at(
                    path,
                    format!(
                        "step `{}` uses `facts.{fact_step}` but does not list `{fact_step}` in `requires`",
                        s.id
                    ),
                );
            }
        }
    }

    /// Every step `id` requires, directly or through others.
    pub(super) fn required_closure(&self, id: &str) -> BTreeSet<String> {
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

    /// `{step.fact}` (and `{before.step.fact}`) placeholders in a
    /// conclusion must name a step; bare
    /// `{fact}` names are looked up in every step's facts at run time.
    pub(super) fn check_placeholders(&mut self, i: usize, text: &str, ids: &[&str]) {
        let path = [Seg::Key("conclusions"), Seg::Index(i), Seg::Key("text")];
        self.check_template(&path, text, ids);
    }

    /// The `{step.fact}` placeholders of `text` (at `path`) name steps.
    pub(super) fn check_template(&mut self, path: &[Seg], text: &str, ids: &[&str]) {
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else { break };
            let name = &after[..close];
            // `{before.step.fact}`: the fact as first gathered.
            let name = name.strip_prefix("before.").unwrap_or(name);
            if let Some((step, _)) = name.split_once('.')
                && !ids.contains(&step)
            {
                let hint = did_you_mean(step, ids.iter().copied());
                self.problem_at(
                    path,
                    format!("placeholder `{{{name}}}` names no step `{step}`{hint}"),
                );
            }
            rest = &after[close + 1..];
        }
    }
}

/// The byte offset in `source` of CEL's position: a 1-based line and a
/// column in characters.
fn byte_offset(source: &str, line: usize, col: usize) -> usize {
    let line_start: usize = source
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    line_start
        + source[line_start.min(source.len())..]
            .char_indices()
            .nth(col.saturating_sub(1))
            .map_or(source.len().saturating_sub(line_start), |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::byte_offset;

    #[test]
    fn a_cel_position_counts_characters_not_bytes_and_lines_from_one() {
        assert_eq!(byte_offset("a + b", 1, 5), 4);
        assert_eq!(byte_offset("x\n'é' + y", 2, 7), 2 + 7);
        // Past the end points at the end.
        assert_eq!(byte_offset("ab", 1, 9), 2);
    }
}
