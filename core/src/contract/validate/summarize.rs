//! `summarize:` of a step: exactly one of a builtin (with what it needs) or
//! a script that exists inside the runbooks directory and can be run. The
//! script is looked at, never run.

use std::path::{Component, Path};

use super::{Validator, step_path};
use crate::contract::{Builtin, StepSpec, SummarizeSpec};
use crate::yaml::Seg;

impl Validator<'_> {
    pub(super) fn validate_summarize(&mut self, i: usize, step: &StepSpec) {
        let Some(s) = &step.summarize else { return };
        let path = step_path(i, "summarize");
        match (&s.builtin, &s.script) {
            (Some(_), Some(_)) | (None, None) => self.problem_at(
                &path,
                "summarize needs exactly one of `builtin` (rows, top, group, stats, schema, index_advice) or `script`",
            ),
            (Some(b), None) => {
                self.check_builtin(&path, *b, s);
                if !s.shows.is_empty() {
                    self.problem_at(
                        &path,
                        "`shows` names facts a script's summary draws; a builtin summary's facts are matched by ward itself",
                    );
                }
            }
            (None, Some(script)) => self.check_script(i, script),
        }
    }

    /// `top` and `group` need the column(s) to rank or group by.
    fn check_builtin(&mut self, path: &[Seg], builtin: Builtin, s: &SummarizeSpec) {
        if matches!(builtin, Builtin::Top | Builtin::Group) && s.by.is_none() {
            self.problem_at(
                path,
                format!(
                    "the `{}` summarizer needs `by`: the column(s) to rank or group by",
                    if builtin == Builtin::Top {
                        "top"
                    } else {
                        "group"
                    }
                ),
            );
        }
    }

    /// A script is a relative path inside the runbooks directory, to an
    /// executable file.
    fn check_script(&mut self, i: usize, script: &str) {
        let loc = self.doc.at(&[
            Seg::Key("steps"),
            Seg::Index(i),
            Seg::Key("summarize"),
            Seg::Key("script"),
        ]);
        let rel = Path::new(script);
        if rel.is_absolute() || rel.components().any(|c| matches!(c, Component::ParentDir)) {
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
            Ok(m) if !m.is_file() => self.problem(loc, format!("script `{script}` is not a file")),
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
                #[cfg(not(unix))]
                let _ = m;
            }
        }
    }
}
