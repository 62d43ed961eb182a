//! The Postgres executor: sqlx, one connection per session, every statement
//! wrapped in the transaction and timeouts its mode calls for.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, Connection, Executor as _, Statement as _};
use tokio::sync::Notify;

use super::decode::{pg_columns, pg_row};
use super::{
    Bind, Column, ExecError, Identity, Limits, Mode, Outcome, RowEvent, RowHasher, SecretUrl,
    Target,
};

/// Grace the client gives the server beyond `statement_timeout` before it
/// cancels on its own and stops waiting (a dead server must not hang ward).
const CLIENT_GRACE: Duration = Duration::from_secs(5);

pub(super) struct PgExec {
    conn: PgConnection,
    pub(super) pid: i32,
    pub(super) cancel: Arc<Notify>,
    pub(super) identity: Identity,
    url: SecretUrl,
}

fn options(
    url: &SecretUrl,
    target: &str,
    application_name: &str,
) -> Result<PgConnectOptions, ExecError> {
    let opts = PgConnectOptions::from_str(url.expose()).map_err(|e| ExecError::Connect {
        target: target.to_string(),
        message: crate::evidence::redact_text(&e.to_string()),
    })?;
    Ok(opts.application_name(application_name))
}

impl PgExec {
    pub(super) async fn connect(target: &Target, session_id: &str) -> Result<PgExec, ExecError> {
        let name = format!("{} ({})", target.name, target.url.redacted());
        let app = format!("ward {session_id}");
        let opts = options(&target.url, &name, &app)?;
        let mut conn =
            tokio::time::timeout(Duration::from_secs(15), PgConnection::connect_with(&opts))
                .await
                .map_err(|_| ExecError::Connect {
                    target: name.clone(),
                    message: "timed out after 15s".into(),
                })?
                .map_err(|e| ExecError::Connect {
                    target: name.clone(),
                    message: crate::evidence::redact_text(&e.to_string()),
                })?;
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| ExecError::Connect {
                target: name.clone(),
                message: e.to_string(),
            })?;
        Ok(PgExec {
            conn,
            pid,
            cancel: Arc::new(Notify::new()),
            identity: Identity::default(),
            url: target.url.clone(),
        })
    }

    async fn simple(&mut self, sql: String) -> Result<(), ExecError> {
        self.conn
            .execute(sqlx::raw_sql(AssertSqlSafe(sql)))
            .await
            .map(|_| ())
            .map_err(|e| map_error(e, &Limits::default()))
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
        let in_transaction = matches!(mode, Mode::ReadOnly | Mode::Write { transaction: true });
        let statement_ms = limits.statement_timeout.as_millis().max(1);
        let lock_ms = limits.lock_timeout.as_millis().max(1);
        if in_transaction {
            let begin = if mode == Mode::ReadOnly {
                "BEGIN READ ONLY"
            } else {
                "BEGIN"
            };
            self.simple(format!("{begin}; SET LOCAL statement_timeout = {statement_ms}; SET LOCAL lock_timeout = {lock_ms}"))
                .await?;
        } else {
            self.simple(format!(
                "SET statement_timeout = {statement_ms}; SET lock_timeout = {lock_ms}"
            ))
            .await?;
        }
        let result = self.stream(sql, binds, mode, limits, sink).await;
        let finish = if in_transaction {
            if result.is_ok() && mode != Mode::ReadOnly {
                "COMMIT"
            } else {
                "ROLLBACK"
            }
        } else {
            "RESET statement_timeout; RESET lock_timeout"
        };
        let finished = self.simple(finish.to_string()).await;
        let mut outcome = result?;
        // A failed COMMIT means the write did not happen.
        finished?;
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
        let deadline = tokio::time::Instant::now() + limits.statement_timeout + CLIENT_GRACE;
        let mut columns: Vec<Column> = Vec::new();
        let (mut seen, mut kept, mut capped) = (0u64, 0u64, false);
        let mut hasher = RowHasher::default();
        let mut stop_reading = false;
        let mut failure = None;
        {
            let mut rows = query.fetch(&mut self.conn);
            loop {
                let next = tokio::select! {
                    next = rows.next() => next,
                    () = tokio::time::sleep_until(deadline) => {
                        failure = Some(ExecError::StatementTimeout(limits.statement_timeout));
                        break;
                    }
                };
                let Some(next) = next else { break };
                let row = match next {
                    Ok(row) => row,
                    Err(e) => {
                        // After a cap the cancel we sent surfaces here: expected.
                        if !stop_reading {
                            failure = Some(map_error(e, limits));
                        }
                        break;
                    }
                };
                if stop_reading {
                    continue;
                }
                seen += 1;
                if columns.is_empty() {
                    columns = pg_columns(&row);
                    sink(RowEvent::Columns(&columns));
                }
                if limits.max_rows.is_some_and(|m| kept >= m) {
                    capped = true;
                    if mode == Mode::ReadOnly {
                        // Stop the server working on rows nobody will read.
                        stop_reading = true;
                        let _ = cancel_backend(&self.url, self.pid).await;
                    }
                    continue;
                }
                let json = pg_row(&row, &columns);
                hasher.row(&json);
                sink(RowEvent::Row(&json));
                kept += 1;
            }
        }
        if let Some(e) = failure {
            if matches!(e, ExecError::StatementTimeout(_)) {
                // Client-side guard fired: make sure the server stops too.
                let _ = cancel_backend(&self.url, self.pid).await;
            }
            return Err(e);
        }
        if columns.is_empty() {
            // No rows: still report the shape of the result.
            if let Ok(stmt) = self
                .conn
                .prepare(sqlx::SqlSafeStr::into_sql_str(AssertSqlSafe(
                    sql.to_string(),
                )))
                .await
            {
                columns = super::columns_of(stmt.columns());
            }
            sink(RowEvent::Columns(&columns));
        }
        Ok(Outcome {
            columns,
            rows_seen: seen,
            rows_kept: kept,
            capped,
            duration_ms: 0,
            sha256: hasher.hex(),
            role: None,
        })
    }
}

/// Asks the server to cancel what backend `pid` is running, from a second
/// connection (the way psql's Ctrl-C reaches the server).
pub(super) async fn cancel_backend(url: &SecretUrl, pid: i32) -> Result<(), ExecError> {
    let opts = options(url, "cancel", "ward cancel")?;
    let mut conn = tokio::time::timeout(Duration::from_secs(10), PgConnection::connect_with(&opts))
        .await
        .map_err(|_| {
            ExecError::Other(
                "could not reach the server to cancel the statement (timed out)".into(),
            )
        })?
        .map_err(|e| {
            ExecError::Other(format!(
                "could not reach the server to cancel the statement: {}",
                crate::evidence::redact_text(&e.to_string())
            ))
        })?;
    let _: Option<bool> = sqlx::query_scalar("SELECT pg_cancel_backend($1)")
        .bind(pid)
        .fetch_optional(&mut conn)
        .await
        .map_err(|e| ExecError::Other(format!("cancel failed: {e}")))?;
    let _ = conn.close().await;
    Ok(())
}

/// Maps a driver error to what happened, in the words an on-call engineer
/// needs.
fn map_error(e: sqlx::Error, limits: &Limits) -> ExecError {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            let message = crate::evidence::redact_text(db.message());
            match code.as_str() {
                "57014" if message.contains("statement timeout") => {
                    ExecError::StatementTimeout(limits.statement_timeout)
                }
                "57014" => ExecError::Cancelled,
                "55P03" if message.contains("lock timeout") => {
                    ExecError::LockTimeout(limits.lock_timeout)
                }
                "25006" => ExecError::ReadOnly(message),
                "57P01" | "57P02" | "57P03" | "08000" | "08003" | "08006" => {
                    ExecError::ConnectionLost(message)
                }
                _ => ExecError::Database { code, message },
            }
        }
        sqlx::Error::Io(e) => ExecError::ConnectionLost(e.to_string()),
        sqlx::Error::Protocol(m) => ExecError::ConnectionLost(m),
        sqlx::Error::WorkerCrashed => {
            ExecError::ConnectionLost("the connection worker stopped".into())
        }
        other => ExecError::Other(crate::evidence::redact_text(&other.to_string())),
    }
}
