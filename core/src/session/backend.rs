//! Where a session's statements go: a database ([`Database`]), or the
//! evidence a scenario recorded ([`RecordedEvidence`], `ward test`). The
//! runner asks a [`StatementBackend`] and never asks which one it has.
//!
//! A backend runs what it is given; it never decides whether anything may
//! run (admission does) and never writes the session log (the runner does).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use serde::Deserialize;
use serde_json::Value;

use crate::evidence::{EvidenceConfig, Row};
use crate::exec::step::{self, Resolved, StepResult};
use crate::exec::{Bind, Canceller, ExecError, Executor, Limits, Mode, Refined, RowEvent};
use crate::policy::TableSize;
use crate::sql::{Analyzer, Engine, Risk};

/// A backend's answer, later.
pub type BackendFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub use crate::exec::VERIFY_MAX_ROWS;

/// What became of a step's verify query.
#[derive(Debug, Clone, PartialEq)]
pub enum VerifyRows {
    Rows(Vec<Value>),
    /// Not run: it is not provably read-only on this target (why).
    NotRun(String),
    /// It ran and failed, or there is nothing recorded for it.
    Failed(String),
}

/// Where statements go.
pub trait StatementBackend: Send {
    /// The analysis of `resolved` made catalog-aware, where the backend has
    /// a catalog: `None` where it has none (recorded evidence).
    fn refine<'a>(
        &'a mut self,
        analyzer: &'a Analyzer,
        resolved: &'a Resolved,
    ) -> BackendFuture<'a, Option<Result<Refined, ExecError>>>;

    /// Estimated rows and bytes of the largest table the statement touches.
    fn table_size<'a>(&'a mut self, resolved: &'a Resolved)
    -> BackendFuture<'a, Option<TableSize>>;

    /// What cancels a running statement on the server, where there is one.
    fn canceller(&self) -> Option<Canceller>;

    /// Runs the step and summarizes what it returned.
    fn execute<'a>(
        &'a mut self,
        resolved: &'a Resolved,
        evidence: &'a EvidenceConfig,
    ) -> BackendFuture<'a, StepResult>;

    /// The rows of step `step_id`'s verify query (`sql` with `binds`),
    /// run only if the target says it can only read.
    fn verify_rows<'a>(
        &'a mut self,
        analyzer: &'a Analyzer,
        engine: Engine,
        step_id: &'a str,
        sql: &'a str,
        binds: &'a [Bind],
    ) -> BackendFuture<'a, VerifyRows>;
}

/// A live database.
pub struct Database(pub Box<Executor>);

impl StatementBackend for Database {
    fn refine<'a>(
        &'a mut self,
        analyzer: &'a Analyzer,
        resolved: &'a Resolved,
    ) -> BackendFuture<'a, Option<Result<Refined, ExecError>>> {
        Box::pin(async move {
            // Only a read can be made worse by the catalog; anything else
            // already waits for a human.
            let refined = if resolved.analysis.risk == Risk::ReadOnly {
                self.0.resolve(analyzer, &resolved.analysis).await
            } else {
                // A finding the catalog disproves (a SET NOT NULL that a
                // validated CHECK spares the scan) is dropped.
                self.0
                    .refine(analyzer, &resolved.analysis)
                    .await
                    .map(|analysis| Refined {
                        analysis,
                        resolved: Vec::new(),
                        looked_up: false,
                    })
            };
            Some(refined)
        })
    }

    fn table_size<'a>(
        &'a mut self,
        resolved: &'a Resolved,
    ) -> BackendFuture<'a, Option<TableSize>> {
        Box::pin(async move {
            if resolved.engine == Engine::Postgres {
                largest_table(&mut self.0, resolved).await
            } else {
                None
            }
        })
    }

    fn canceller(&self) -> Option<Canceller> {
        Some(self.0.canceller())
    }

    fn execute<'a>(
        &'a mut self,
        resolved: &'a Resolved,
        evidence: &'a EvidenceConfig,
    ) -> BackendFuture<'a, StepResult> {
        Box::pin(step::execute(&mut self.0, resolved, evidence))
    }

    fn verify_rows<'a>(
        &'a mut self,
        analyzer: &'a Analyzer,
        engine: Engine,
        _step_id: &'a str,
        sql: &'a str,
        binds: &'a [Bind],
    ) -> BackendFuture<'a, VerifyRows> {
        Box::pin(async move {
            // A verify query is a read like any other: it runs only if the
            // text and the target's catalog both say it can only read (a
            // planted view or aggregate would otherwise run right after an
            // approval, unseen).
            let analysis = analyzer.analyze(engine, sql);
            match self.0.refine(analyzer, &analysis).await {
                Ok(a) if a.risk == Risk::ReadOnly => {}
                Ok(a) => {
                    return VerifyRows::NotRun(format!(
                        "it is {} here, not provably read-only: {}",
                        a.risk,
                        a.statements
                            .iter()
                            .flat_map(|s| s.reasons.iter().map(String::as_str))
                            .collect::<Vec<_>>()
                            .join("; ")
                    ));
                }
                Err(e) => return VerifyRows::NotRun(format!("the catalog lookup failed: {e}")),
            }
            let mut rows: Vec<Value> = Vec::new();
            let limits = Limits {
                max_rows: Some(VERIFY_MAX_ROWS),
                ..Limits::default()
            };
            let ran = self
                .0
                .run(sql, binds, Mode::ReadOnly, &limits, &mut |e| {
                    if let RowEvent::Row(r) = e {
                        rows.push(Value::Object(r.clone()));
                    }
                })
                .await;
            match ran {
                Ok(_) => VerifyRows::Rows(rows),
                Err(e) => VerifyRows::Failed(e.to_string()),
            }
        })
    }
}

/// Recorded evidence per step id, for sessions with no database.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Recorded {
    pub steps: BTreeMap<String, RecordedStep>,
}

/// What a step returned when it was recorded.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedStep {
    /// The rows, summarized exactly as live rows would be.
    #[serde(default)]
    pub rows: Vec<Row>,
    /// The database error the step failed with, instead of rows.
    #[serde(default)]
    pub error: Option<String>,
    /// The rows of the step's `verify` query after it ran.
    #[serde(default)]
    pub verify_rows: Option<Vec<Row>>,
    /// The rows the step returns when it runs again (a runbook's `recheck`
    /// after a change); without them, `rows` again.
    #[serde(default)]
    pub rows_after: Option<Vec<Row>>,
    /// Estimated rows and bytes of the table it touches.
    #[serde(default)]
    pub table_size: Option<RecordedSize>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedSize {
    pub rows: u64,
    pub bytes: u64,
}

/// Recorded evidence as a backend: each step answers with what was
/// recorded for it (ad-hoc SQL under `adhoc`); a step run again answers
/// with its `rows_after`.
pub struct RecordedEvidence {
    recorded: Recorded,
    /// Times each step (by label) has executed so far.
    runs: BTreeMap<String, u32>,
}

impl RecordedEvidence {
    /// A backend answering from `recorded`.
    pub fn new(recorded: Recorded) -> RecordedEvidence {
        RecordedEvidence {
            recorded,
            runs: BTreeMap::new(),
        }
    }

    fn step(&self, resolved: &Resolved) -> Option<&RecordedStep> {
        self.recorded.steps.get(resolved.origin.label())
    }
}

impl StatementBackend for RecordedEvidence {
    fn refine<'a>(
        &'a mut self,
        _analyzer: &'a Analyzer,
        _resolved: &'a Resolved,
    ) -> BackendFuture<'a, Option<Result<Refined, ExecError>>> {
        Box::pin(async { None })
    }

    fn table_size<'a>(
        &'a mut self,
        resolved: &'a Resolved,
    ) -> BackendFuture<'a, Option<TableSize>> {
        let size = self
            .step(resolved)
            .and_then(|r| r.table_size)
            .map(|t| TableSize {
                rows: t.rows,
                bytes: t.bytes,
            });
        Box::pin(async move { size })
    }

    fn canceller(&self) -> Option<Canceller> {
        None
    }

    fn execute<'a>(
        &'a mut self,
        resolved: &'a Resolved,
        evidence: &'a EvidenceConfig,
    ) -> BackendFuture<'a, StepResult> {
        let label = resolved.origin.label().to_string();
        let runs = self.runs.get(&label).copied().unwrap_or(0);
        self.runs.insert(label, runs + 1);
        let result = match self.step(resolved) {
            Some(r) => match &r.error {
                Some(e) => step::recorded_failure(resolved, e),
                None => {
                    let rows = match (&r.rows_after, runs) {
                        (Some(after), 1..) => after,
                        _ => &r.rows,
                    };
                    step::summarize_recorded(resolved, rows, evidence)
                }
            },
            None => step::recorded_failure(
                resolved,
                &format!(
                    "no recorded evidence for step `{}`",
                    resolved.origin.label()
                ),
            ),
        };
        Box::pin(async move { result })
    }

    fn verify_rows<'a>(
        &'a mut self,
        _analyzer: &'a Analyzer,
        _engine: Engine,
        step_id: &'a str,
        _sql: &'a str,
        _binds: &'a [Bind],
    ) -> BackendFuture<'a, VerifyRows> {
        let rows = match self
            .recorded
            .steps
            .get(step_id)
            .and_then(|r| r.verify_rows.clone())
        {
            Some(rows) => VerifyRows::Rows(rows.into_iter().map(Value::Object).collect()),
            None => VerifyRows::Failed(format!("no recorded verify_rows for step `{step_id}`")),
        };
        Box::pin(async move { rows })
    }
}

/// The catalog query behind [`StatementBackend::table_size`] on
/// PostgreSQL: the planner's row estimate and the total size of a table.
const TABLE_SIZE_SQL: &str = "SELECT greatest(c.reltuples, 0)::bigint AS rows, pg_total_relation_size(c.oid) AS bytes FROM pg_class c WHERE c.oid = to_regclass($1)";

/// The parser's name of a table (`name` or `schema.name`, case as written
/// and unquoted) as text `to_regclass` reads back as the same relation:
/// each part double-quoted, so `"BigOrders"` is not folded to `bigorders`
/// (which would find no table, no size, and no `min_rows` rule).
fn regclass_text(table: &str) -> String {
    let quote = |part: &str| format!("\"{}\"", part.replace('"', "\"\""));
    match table.split_once('.') {
        Some((schema, name)) => format!("{}.{}", quote(schema), quote(name)),
        None => quote(table),
    }
}

/// Estimated rows and total size of the largest table a statement touches,
/// from the catalog (a read-only query), so "ALTER TABLE on 40M rows" is
/// visible before anyone approves it.
async fn largest_table(ex: &mut Executor, resolved: &Resolved) -> Option<TableSize> {
    let mut best: Option<TableSize> = None;
    for table in resolved.analysis.tables() {
        let mut found: Option<TableSize> = None;
        let _ = ex
            .run(
                TABLE_SIZE_SQL,
                &[Bind::Text(regclass_text(table))],
                Mode::ReadOnly,
                &Limits {
                    max_rows: Some(1),
                    ..Limits::default()
                },
                &mut |e| {
                    if let RowEvent::Row(r) = e {
                        found = Some(TableSize {
                            rows: r.get("rows").and_then(Value::as_u64).unwrap_or(0),
                            bytes: r.get("bytes").and_then(Value::as_u64).unwrap_or(0),
                        });
                    }
                },
            )
            .await;
        if let Some(f) = found
            && best.is_none_or(|b| f.rows > b.rows)
        {
            best = Some(f);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn table_names_are_quoted_part_by_part_for_to_regclass() {
        assert_eq!(
            super::regclass_text("public.orders"),
            "\"public\".\"orders\""
        );
        assert_eq!(super::regclass_text("BigOrders"), "\"BigOrders\"");
        assert_eq!(super::regclass_text("s.we\"ird"), "\"s\".\"we\"\"ird\"");
    }

    use super::*;
    use crate::sql::Analyzer;

    fn headline() -> Resolved {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let analyzer = Analyzer::default();
        let contract = crate::contract::load_file(
            &root.join("runbooks/pg-connection-exhaustion.yaml"),
            &root,
            &analyzer,
        )
        .unwrap();
        step::resolve(
            &contract,
            "connection_headline",
            &BTreeMap::new(),
            Engine::Postgres,
            &analyzer,
        )
        .unwrap()
    }

    fn block_on<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn recorded_evidence_answers_with_what_was_recorded_and_says_what_is_missing() {
        let resolved = headline();
        let mut row = Row::new();
        row.insert("total".into(), serde_json::json!(97));
        let mut steps = BTreeMap::new();
        steps.insert(
            "connection_headline".to_string(),
            RecordedStep {
                rows: vec![row],
                table_size: Some(RecordedSize {
                    rows: 5,
                    bytes: 8192,
                }),
                ..RecordedStep::default()
            },
        );
        let mut backend: Box<dyn StatementBackend> =
            Box::new(RecordedEvidence::new(Recorded { steps }));
        let analyzer = Analyzer::default();
        let evidence = EvidenceConfig::default();
        block_on(async {
            assert!(
                backend.refine(&analyzer, &resolved).await.is_none(),
                "no catalog"
            );
            assert!(backend.canceller().is_none());
            assert_eq!(
                backend.table_size(&resolved).await,
                Some(TableSize {
                    rows: 5,
                    bytes: 8192
                })
            );
            let ran = backend.execute(&resolved, &evidence).await;
            assert_eq!((ran.rows_seen, ran.error.is_none()), (1, true));
            assert_eq!(
                backend
                    .verify_rows(
                        &analyzer,
                        Engine::Postgres,
                        "connection_headline",
                        "SELECT 1",
                        &[]
                    )
                    .await,
                VerifyRows::Failed("no recorded verify_rows for step `connection_headline`".into())
            );
            let mut other = resolved.clone();
            other.origin = step::Origin::Adhoc;
            let missing = backend.execute(&other, &evidence).await;
            assert_eq!(
                missing.error.map(|e| (e.kind, e.message)),
                Some((
                    crate::exec::ErrorKind::Database,
                    "no recorded evidence for step `adhoc`".to_string()
                ))
            );
        });
    }
}
