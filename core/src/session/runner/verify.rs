//! A step's `verify` after it ran: its query (read-only, and only where the
//! target says it can only read) and its expectation over the rows. The
//! outcome is a verified state change, not anyone's word.

use serde_json::Value;

use crate::exec::step;
use crate::journal::events::*;
use crate::session::backend::{StatementBackend, VerifyRows};

use super::{RunError, Runner};

impl Runner {
    /// Runs the step's `verify` query (read-only) and evaluates `expect`
    /// over its rows, the inputs, the facts and `before` (the facts as
    /// first gathered, to compare with): the outcome is a verified state change, not anyone's
    /// word.
    pub(super) async fn verify(
        &mut self,
        backend: &mut dyn StatementBackend,
        pid: &ProposalId,
        step_id: &str,
    ) -> Result<(), RunError> {
        let Some(expect) = self
            .cfg
            .contract
            .step(step_id)
            .and_then(|s| s.verify.as_ref())
            .map(|(_, e)| e.clone())
        else {
            return Ok(());
        };
        let inputs = self.inputs_value();
        let mut step_inputs = self.cfg.inputs.clone();
        step_inputs.extend(self.logged_inputs(pid));
        // The same binding as the step itself: identifiers quoted, values bound.
        let bound = step::verify_sql(
            &self.cfg.contract,
            step_id,
            &step_inputs,
            self.cfg.target.engine,
            self.cfg.analyzer.options.server.as_ref(),
        );
        let (sql, binds) = match bound {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(()),
            Err(e) => {
                self.record(EventData::Verified(Verified {
                    proposal: pid.clone(),
                    ok: false,
                    expect: expect.source.clone(),
                    detail: format!("verify query could not be prepared: {e}"),
                }))?;
                return Ok(());
            }
        };
        let ran = match backend
            .verify_rows(
                &self.cfg.analyzer,
                self.cfg.target.engine,
                step_id,
                &sql,
                &binds,
            )
            .await
        {
            VerifyRows::Rows(rows) => Ok(rows),
            VerifyRows::Failed(e) => Err(e),
            VerifyRows::NotRun(why) => {
                self.record(EventData::Verified(Verified {
                    proposal: pid.clone(),
                    ok: false,
                    expect: expect.source.clone(),
                    detail: format!("verify query not run: {why}"),
                }))?;
                return Ok(());
            }
        };
        let facts = self.state.facts_value();
        let before = self.state.before_value();
        let (ok, detail) = match ran {
            Err(e) => (false, format!("verify query failed: {e}")),
            Ok(rows) => match expect.eval_bool(&[
                ("rows", &Value::Array(rows)),
                ("inputs", &inputs),
                ("facts", &facts),
                ("before", &before),
            ]) {
                Ok(true) => (true, "expectation holds".to_string()),
                Ok(false) => (false, "expectation does not hold".to_string()),
                // The error can quote a value of the verify rows, which never
                // pass through a summarizer: redacted like evidence.
                Err(e) => (false, crate::evidence::redact_text(&e.to_string())),
            },
        };
        self.record(EventData::Verified(Verified {
            proposal: pid.clone(),
            ok,
            expect: expect.source.clone(),
            detail,
        }))?;
        Ok(())
    }
}
