//! The SQLite executor: embedded targets and the demo. Diagnostics run with
//! `query_only` on (and on a `mode=ro` connection when the executor was
//! opened read-only), so SQLite itself refuses writes.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{
    AssertSqlSafe, Connection, Executor as _, Row as _, Statement as _, TypeInfo as _,
    ValueRef as _,
};
use tokio::sync::Notify;

use crate::evidence::redact_text;

use super::{
    Admit, Bind, Column, ExecError, Limits, Mode, Outcome, Row, RowEvent, RowStream, Target,
};

pub(super) struct SqliteExec {
    conn: SqliteConnection,
    pub(super) cancel: Arc<Notify>,
}

impl SqliteExec {
    pub(super) async fn connect(target: &Target, read_only: bool) -> Result<SqliteExec, ExecError> {
        let name = format!("{} ({})", target.name, target.url.redacted());
        let opts = SqliteConnectOptions::from_str(target.url.expose())
            .map_err(|e| ExecError::Connect {
                target: name.clone(),
                message: redact_text(&e.to_string()),
                diagnosis: None,
            })?
            .read_only(read_only)
            .busy_timeout(Duration::from_secs(3));
        let conn = SqliteConnection::connect_with(&opts)
            .await
            .map_err(|e| ExecError::Connect {
                target: name,
                message: redact_text(&e.to_string()),
                diagnosis: None,
            })?;
        Ok(SqliteExec {
            conn,
            cancel: Arc::new(Notify::new()),
        })
    }

    async fn simple(&mut self, sql: &'static str) -> Result<(), ExecError> {
        self.conn
            .execute(sqlx::raw_sql(sql))
            .await
            .map(|_| ())
            .map_err(map_error)
    }

    pub(super) async fn run(
        &mut self,
        sql: &str,
        binds: &[Bind],
        mode: Mode,
        limits: &Limits,
        sink: &mut (dyn FnMut(RowEvent<'_>) + Send),
    ) -> Result<Outcome, ExecError> {
        let started = Instant::now();
        let busy = format!(
            "PRAGMA busy_timeout = {}",
            limits.lock_timeout().as_millis()
        );
        self.conn
            .execute(sqlx::raw_sql(AssertSqlSafe(busy)))
            .await
            .map_err(map_error)?;
        match mode {
            Mode::ReadOnly => self.simple("PRAGMA query_only = ON").await?,
            Mode::Write { transaction: true } => self.simple("BEGIN IMMEDIATE").await?,
            Mode::Write { transaction: false } => {}
        }
        let result = tokio::time::timeout(
            limits.statement_timeout,
            self.stream(sql, binds, mode, limits, sink),
        )
        .await;
        let result = match result {
            Ok(r) => r,
            Err(_) => Err(ExecError::StatementTimeout(limits.statement_timeout)),
        };
        match mode {
            Mode::ReadOnly => self.simple("PRAGMA query_only = OFF").await?,
            Mode::Write { transaction: true } => {
                self.simple(if result.is_ok() { "COMMIT" } else { "ROLLBACK" })
                    .await?;
            }
            Mode::Write { transaction: false } => {}
        }
        let mut outcome = result?;
        outcome.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(outcome)
    }

    async fn stream(
        &mut self,
        sql: &str,
        binds: &[Bind],
        mode: Mode,
        limits: &Limits,
        sink: &mut (dyn FnMut(RowEvent<'_>) + Send),
    ) -> Result<Outcome, ExecError> {
        let query = super::bound_query(sql, binds);
        let cancel = self.cancel.clone();
        let mut stream = RowStream::new(sink, limits.max_rows);
        {
            let mut rows = query.fetch(&mut self.conn);
            loop {
                let next = tokio::select! {
                    next = rows.next() => next,
                    () = cancel.notified() => return Err(ExecError::Cancelled),
                };
                let Some(next) = next else { break };
                let row = next.map_err(map_error)?;
                match stream.admit(|| super::columns_of(row.columns())) {
                    Admit::Keep => stream.keep(|columns| sqlite_row(&row, columns)),
                    // A read stops at the cap; a write must run to its end.
                    Admit::Capped if mode == Mode::ReadOnly => break,
                    Admit::Capped => {}
                }
            }
        }
        let mut described = None;
        if stream.needs_columns()
            && let Ok(stmt) = self
                .conn
                .prepare(sqlx::SqlSafeStr::into_sql_str(AssertSqlSafe(
                    sql.to_string(),
                )))
                .await
        {
            described = Some(super::columns_of(stmt.columns()));
        }
        Ok(stream.finish(described))
    }
}

/// A SQLite row as JSON, by each value's runtime storage class.
fn sqlite_row(row: &SqliteRow, columns: &[Column]) -> Row {
    let mut out = Row::with_capacity(columns.len());
    for (i, col) in columns.iter().enumerate() {
        let value = match row.try_get_raw(i) {
            Ok(v) if !v.is_null() => {
                let storage = v.type_info().name().to_ascii_uppercase();
                match storage.as_str() {
                    "INTEGER" | "BOOLEAN" => row
                        .try_get::<i64, _>(i)
                        .map(Value::from)
                        .unwrap_or(Value::Null),
                    "REAL" => row
                        .try_get::<f64, _>(i)
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                        .map_or(Value::Null, Value::Number),
                    "BLOB" => row
                        .try_get::<Vec<u8>, _>(i)
                        .map(|b| {
                            Value::String(format!(
                                "x'{}'",
                                b.iter()
                                    .take(64)
                                    .map(|x| format!("{x:02x}"))
                                    .collect::<String>()
                            ))
                        })
                        .unwrap_or(Value::Null),
                    _ => row
                        .try_get::<String, _>(i)
                        .map(Value::String)
                        .unwrap_or(Value::Null),
                }
            }
            _ => Value::Null,
        };
        out.insert(col.name.clone(), value);
    }
    out
}

fn map_error(e: sqlx::Error) -> ExecError {
    match e {
        sqlx::Error::Database(db) => {
            // Messages can quote values (and so secrets).
            let message = redact_text(db.message());
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            if message.contains("readonly")
                || message.contains("read-only")
                || message.contains("query_only")
            {
                ExecError::ReadOnly(message)
            } else if message.contains("database is locked") {
                ExecError::LockTimeout(Duration::ZERO)
            } else {
                ExecError::Database { code, message }
            }
        }
        sqlx::Error::Io(e) => ExecError::ConnectionLost(redact_text(&e.to_string())),
        other => ExecError::Other(redact_text(&other.to_string())),
    }
}
