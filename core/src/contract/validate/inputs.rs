//! `inputs:`: names, types, bounds, defaults and `from_fact`.

use super::{Validator, did_you_mean, is_snake};
use crate::contract::{InputSpec, InputType, StepKind, check_value};
use crate::yaml::Seg;

/// `[inputs, name, key]`: where a field of an input is.
fn input_path<'a>(name: &'a str, key: &'a str) -> [Seg<'a>; 3] {
    [Seg::Key("inputs"), Seg::Key(name), Seg::Key(key)]
}

impl Validator<'_> {
    pub(super) fn validate_inputs(&mut self, ids: &[&str]) {
        for (name, input) in &self.spec.inputs {
            self.check_from_fact(name, input, ids);
            self.check_input_name(name);
            self.check_enum_values(name, input);
            self.check_bounds(name, input);
            self.check_default(name, input);
        }
    }

    /// `from_fact` must be `step.fact` of a diagnostic step.
    fn check_from_fact(&mut self, name: &str, input: &InputSpec, ids: &[&str]) {
        let Some(from) = &input.from_fact else { return };
        let step = from.split_once('.').map(|(s, _)| s);
        let known = step.and_then(|s| self.spec.steps.iter().find(|x| x.id == s));
        let why = match known {
            None if step.is_none() => format!(
                "`from_fact` of input `{name}` must be `step.fact`, e.g. blocking_tree.root_pid"
            ),
            None => format!(
                "`from_fact` of input `{name}` names no step of this runbook{}",
                did_you_mean(step.unwrap_or(""), ids.iter().copied())
            ),
            Some(s) if s.kind != StepKind::Diagnostic => format!(
                "`from_fact` of input `{name}` must name a diagnostic's fact; `{}` is not a diagnostic",
                s.id
            ),
            Some(_) => return,
        };
        self.problem_at(&input_path(name, "from_fact"), why);
    }

    fn check_input_name(&mut self, name: &str) {
        if !is_snake(name) {
            let at = self.doc.key_at(&[Seg::Key("inputs"), Seg::Key(name)]);
            self.problem(at, format!("input name `{name}` must be snake_case"));
        }
    }

    /// An enum input lists its values; no other input has any.
    fn check_enum_values(&mut self, name: &str, input: &InputSpec) {
        if input.ty == InputType::Enum && input.values.as_ref().is_none_or(Vec::is_empty) {
            self.problem_at(
                &[Seg::Key("inputs"), Seg::Key(name)],
                format!("enum input `{name}` needs `values`: the list of allowed values"),
            );
        }
        if input.ty != InputType::Enum && input.values.is_some() {
            self.problem_at(
                &input_path(name, "values"),
                format!("`values` only applies to enum inputs; `{name}` is not one"),
            );
        }
    }

    fn check_bounds(&mut self, name: &str, input: &InputSpec) {
        if let (Some(min), Some(max)) = (input.min, input.max)
            && min > max
        {
            self.problem_at(
                &input_path(name, "min"),
                format!("input `{name}` has min {min} greater than max {max}"),
            );
        }
    }

    /// A default must be a value the input accepts.
    fn check_default(&mut self, name: &str, input: &InputSpec) {
        if let Some(default) = &input.default
            && let Err(why) = check_value(input, default)
        {
            self.problem_at(
                &input_path(name, "default"),
                format!("default of input `{name}`: {why}"),
            );
        }
    }
}
