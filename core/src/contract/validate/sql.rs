//! A statement of a runbook: its `:name` parameters rewritten for each
//! engine, then parsed and classified by the analyzer. Problems point at
//! the parameter or the token in the YAML source.

use crate::contract::{InputType, PreparedSql};
use crate::sql::params::{self, Rewritten, Substitution};
use crate::sql::{Analysis, Engine};
use crate::yaml::Seg;

use super::Validator;

impl Validator<'_> {
    /// Rewrites `:name` parameters and analyzes the SQL for every engine.
    /// A statement with a problem in its parameters has no engine.
    pub(super) fn prepare(&mut self, path: &[Seg], written: &str) -> PreparedSql {
        let unprepared = || PreparedSql {
            source: written.to_string(),
            per_engine: Vec::new(),
        };
        // `@extschema:NAME@` reads as `public` here; the server's own schema
        // replaces it when a session resolves the step.
        let expanded = match crate::exec::step::expand_extension_schemas(written, None) {
            Ok(e) => e,
            Err(e) => {
                self.problem_at(path, e.to_string());
                return unprepared();
            }
        };
        let mut per_engine = Vec::new();
        for &engine in &self.spec.engines {
            let Some(rewritten) = self.rewrite(path, &expanded, engine) else {
                return unprepared();
            };
            let analysis = self.analyze(path, &expanded, engine, &rewritten);
            per_engine.push((engine, rewritten, analysis));
        }
        PreparedSql {
            source: written.to_string(),
            per_engine,
        }
    }

    /// `source` with its parameters as `engine`'s placeholders; identifier
    /// inputs are shown quoted (their default, or their name). `None` after
    /// a problem: a parameter that names no input.
    fn rewrite(&mut self, path: &[Seg], source: &str, engine: Engine) -> Option<Rewritten> {
        let inputs = &self.spec.inputs;
        let rewritten = params::rewrite(source, engine, |name| {
            let input = inputs.get(name)?;
            if input.ty == InputType::IdentifierList {
                let shown = input
                    .default
                    .as_ref()
                    .and_then(|d| d.as_str())
                    .unwrap_or(name);
                Some(Substitution::Identifier(
                    params::quote_identifier_list(shown).unwrap_or_else(|_| format!("\"{name}\"")),
                ))
            } else if input.ty == InputType::Identifier {
                let shown = input
                    .default
                    .as_ref()
                    .and_then(|d| d.as_str())
                    .unwrap_or(name);
                Some(Substitution::Identifier(
                    params::quote_identifier(shown).unwrap_or_else(|_| format!("\"{name}\"")),
                ))
            } else {
                Some(Substitution::Bind)
            }
        });
        match rewritten {
            Ok(r) => Some(r),
            Err(p) => {
                let loc = self.doc.at_offset(path, source, p.start);
                let hint = crate::diag::nearest(&p.name, inputs.keys().map(String::as_str))
                    .map(|n| format!(" (did you mean `:{n}`?)"))
                    .unwrap_or_default();
                self.problem(
                    loc,
                    format!(
                        "`:{}` is not a declared input{hint}; declare it under `inputs`",
                        p.name
                    ),
                );
                None
            }
        }
    }

    /// The analyzer's verdict on the rewritten SQL; a parse error is a
    /// problem at its place in `source`.
    fn analyze(
        &mut self,
        path: &[Seg],
        source: &str,
        engine: Engine,
        rewritten: &Rewritten,
    ) -> Analysis {
        let analysis = self.analyzer.analyze(engine, &rewritten.sql);
        if let Some(err) = &analysis.parse_error {
            // Map the offset in the rewritten SQL back to the source when
            // no parameter precedes it; otherwise point at the value.
            let loc = match err.offset {
                Some(off) => self
                    .doc
                    .at_offset(path, source, rewritten.source_offset(off)),
                None => self.doc.at(path),
            };
            self.problem(
                loc,
                format!("SQL does not parse as {engine}: {}", err.message),
            );
        }
        analysis
    }
}
