//! `next:` of a conclusion, as far as one file can tell: a runbook id that
//! could exist (kebab-case, not this runbook), snake_case input names, and
//! placeholders that name steps of this runbook. Whether the runbook exists
//! and declares those inputs is checked across the directory
//! ([`crate::contract::check_hand_offs`]).

use super::{Validator, is_kebab, is_snake};
use crate::contract::NextSpec;
use crate::yaml::Seg;

impl Validator<'_> {
    pub(super) fn check_next(&mut self, i: usize, next: Option<&NextSpec>, ids: &[&str]) {
        let Some(next) = next else { return };
        let runbook = [
            Seg::Key("conclusions"),
            Seg::Index(i),
            Seg::Key("next"),
            Seg::Key("runbook"),
        ];
        if !is_kebab(&next.runbook) {
            self.problem_at(
                &runbook,
                format!(
                    "`next.runbook` `{}` is not a runbook id (kebab-case)",
                    next.runbook
                ),
            );
        } else if next.runbook == self.spec.id {
            self.problem_at(
                &runbook,
                format!(
                    "a conclusion cannot hand off to its own runbook `{}`",
                    next.runbook
                ),
            );
        }
        for (name, value) in &next.inputs {
            let path = [
                Seg::Key("conclusions"),
                Seg::Index(i),
                Seg::Key("next"),
                Seg::Key("inputs"),
                Seg::Key(name),
            ];
            if !is_snake(name) {
                let at = self.doc.key_at(&path);
                self.problem(at, format!("input name `{name}` must be snake_case"));
            }
            if let serde_yaml::Value::String(text) = value {
                self.check_template(&path, text, ids);
            }
        }
    }
}
