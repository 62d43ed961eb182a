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
use super::unreachable::{ConnectDiagnosis, ConnectFailure};
use super::{
    Admit, Bind, ExecError, Identity, Limits, Mode, Outcome, RoleKind, RowEvent, RowStream,
    SecretUrl, Target,
};
use crate::evidence::redact_text;
use crate::sql::ServerFacts;

/// Grace the client gives the server beyond `statement_timeout` before it
/// cancels on its own and stops waiting (a dead server must not hang ward).
const CLIENT_GRACE: Duration = Duration::from_secs(5);

/// The `statement_timeout` of the catalog lookup before a statement is
/// gated: one query over the catalog, which a healthy server answers in
/// milliseconds; past this the statement is simply not provably read-only.
const CATALOG_LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) struct PgExec {
    conn: PgConnection,
    pub(super) pid: i32,
    pub(super) cancel: Arc<Notify>,
    pub(super) identity: Identity,
    pub(super) server: ServerFacts,
    roles: crate::config::Roles,
    /// Catalog-aware analyses of this session, by SQL text.
    pub(super) catalog_cache: std::collections::HashMap<String, super::Refined>,
    url: SecretUrl,
}

fn options(
    url: &SecretUrl,
    target: &str,
    application_name: &str,
) -> Result<PgConnectOptions, ExecError> {
    let opts = PgConnectOptions::from_str(url.expose()).map_err(|e| ExecError::Connect {
        target: target.to_string(),
        message: redact_text(&e.to_string()),
        diagnosis: None,
    })?;
    // Pinned before the first query: names resolve in pg_catalog (pg_temp
    // last) and string literals lex as libpg_query lexes them, whatever
    // the database or role settings say.
    Ok(opts.application_name(application_name).options([
        ("search_path", PINNED_SEARCH_PATH.replace(' ', "")),
        ("standard_conforming_strings", "on".to_string()),
    ]))
}

/// The search_path of every ward connection: only pg_catalog resolves
/// unqualified names (functions and operators never resolve in pg_temp).
pub(super) const PINNED_SEARCH_PATH: &str = "pg_catalog, pg_temp";

/// Who the connection is; run before anything else, every name qualified.
const IDENTITY_SQL: &str = "SELECT session_user::text, r.rolsuper, \
  coalesce((SELECT array_agg(g.rolname::text ORDER BY g.rolname) FROM pg_catalog.pg_roles g \
    WHERE g.rolname::text = ANY ('{pg_execute_server_program,pg_write_server_files}'::text[]) \
      AND pg_catalog.pg_has_role(session_user, g.oid, 'MEMBER')), '{}'::text[]), \
  coalesce((SELECT array_agg(n.nspname::text ORDER BY n.nspname) FROM pg_catalog.pg_namespace n \
    WHERE (n.nspname = session_user OR n.nspname = 'public'::name) \
      AND pg_catalog.has_schema_privilege(session_user, n.oid, 'CREATE')), '{}'::text[]), \
  pg_catalog.current_setting('server_version_num')::int4 \
FROM pg_catalog.pg_roles r WHERE r.rolname = session_user";

/// A failed connection attempt, its message redacted and its cause
/// classified from the driver's error.
fn connect_failed(e: &sqlx::Error, target: &str, host: &str) -> ExecError {
    let message = redact_text(&e.to_string());
    let (sqlstate, io, tls) = match e {
        sqlx::Error::Database(db) => (db.code().map(|c| c.into_owned()), None, false),
        sqlx::Error::Io(io) => (None, Some(io.kind()), false),
        sqlx::Error::Tls(_) => (None, None, true),
        _ => (None, None, false),
    };
    let failure = ConnectFailure::classify(sqlstate.as_deref(), io, tls, &message);
    ExecError::Connect {
        target: target.to_string(),
        message,
        diagnosis: Some(Box::new(ConnectDiagnosis::new(failure, sqlstate, host))),
    }
}

/// A role name as a quoted identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl PgExec {
    pub(super) async fn connect(target: &Target, session_id: &str) -> Result<PgExec, ExecError> {
        let name = format!("{} ({})", target.name, target.url.redacted());
        let app = format!("ward {session_id}");
        let opts = options(&target.url, &name, &app)?;
        let host = opts.get_host().to_string();
        let mut conn =
            tokio::time::timeout(Duration::from_secs(15), PgConnection::connect_with(&opts))
                .await
                .map_err(|_| ExecError::Connect {
                    target: name.clone(),
                    message: "timed out after 15s".into(),
                    diagnosis: Some(Box::new(ConnectDiagnosis::new(
                        ConnectFailure::Timeout,
                        None,
                        &host,
                    ))),
                })?
                .map_err(|e| connect_failed(&e, &name, &host))?;
        let failed = |e: sqlx::Error| connect_failed(&e, &name, &host);
        // Belt and braces over the startup options: set them again, then
        // refuse a server that does not keep them.
        conn.execute(sqlx::raw_sql(AssertSqlSafe(format!(
            "SET search_path = {PINNED_SEARCH_PATH}; SET standard_conforming_strings = on"
        ))))
        .await
        .map_err(failed)?;
        let (scs, path): (String, String) = sqlx::query_as(
            "SELECT pg_catalog.current_setting('standard_conforming_strings'), \
                    pg_catalog.current_setting('search_path')",
        )
        .fetch_one(&mut conn)
        .await
        .map_err(failed)?;
        if scs != "on" || path.replace(' ', "") != PINNED_SEARCH_PATH.replace(' ', "") {
            return Err(ExecError::Connect {
                target: name,
                diagnosis: None,
                message: format!(
                    "the server does not keep standard_conforming_strings = on and search_path = {PINNED_SEARCH_PATH} (it says {scs:?}, {path:?}); ward reads SQL only as a server with those settings does"
                ),
            });
        }
        let pid: i32 = sqlx::query_scalar("SELECT pg_catalog.pg_backend_pid()")
            .fetch_one(&mut conn)
            .await
            .map_err(failed)?;
        let (user, superuser, dangerous_roles, creatable_path_schemas, version): (
            String,
            bool,
            Vec<String>,
            Vec<String>,
            i32,
        ) = sqlx::query_as(IDENTITY_SQL)
            .fetch_one(&mut conn)
            .await
            .map_err(failed)?;
        let extensions: Vec<(String, String)> = sqlx::query_as(
            "SELECT e.extname::text, n.nspname::text FROM pg_catalog.pg_extension e \
             JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace",
        )
        .fetch_all(&mut conn)
        .await
        .map_err(failed)?;
        let version_num = u32::try_from(version).unwrap_or(0);
        Ok(PgExec {
            conn,
            pid,
            cancel: Arc::new(Notify::new()),
            identity: Identity {
                user,
                superuser,
                dangerous_roles,
                creatable_path_schemas,
                server_version_num: version_num,
            },
            server: ServerFacts {
                version_num,
                extension_schemas: extensions.into_iter().collect(),
            },
            roles: target.roles.clone(),
            catalog_cache: std::collections::HashMap::new(),
            url: target.url.clone(),
        })
    }

    /// The role a statement of this kind runs as: the target's configured
    /// role, else the role that logged in.
    fn role_for(&self, mode: Mode, kind: RoleKind) -> Option<&str> {
        let kind = if mode == Mode::ReadOnly {
            RoleKind::Read
        } else {
            kind
        };
        match kind {
            RoleKind::Read => self.roles.read.as_deref(),
            RoleKind::Signal => self.roles.signal.as_deref(),
            RoleKind::Change => self.roles.change.as_deref(),
        }
    }

    /// The catalog facts for one statement's names: one query, read-only,
    /// as the read role.
    pub(super) async fn catalog_facts(
        &mut self,
        request: &str,
    ) -> Result<crate::catalog::Facts, ExecError> {
        let mut begin = format!(
            "BEGIN READ ONLY; SET LOCAL search_path = {PINNED_SEARCH_PATH}; SET LOCAL jit = off; SET LOCAL statement_timeout = {}",
            CATALOG_LOOKUP_TIMEOUT.as_millis()
        );
        if let Some(role) = &self.roles.read {
            begin.push_str(&format!("; SET LOCAL ROLE {}", quote_ident(role)));
        }
        self.simple(begin).await?;
        let result: Result<String, sqlx::Error> =
            sqlx::query_scalar(AssertSqlSafe(crate::catalog::LOOKUP_SQL))
                .bind(request)
                .fetch_one(&mut self.conn)
                .await;
        let rolled_back = self.simple("ROLLBACK".to_string()).await;
        let text = result.map_err(|e| map_error(e, &Limits::default()))?;
        rolled_back?;
        serde_json::from_str(&text)
            .map_err(|e| ExecError::Other(format!("the catalog lookup's answer did not read: {e}")))
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
        let lock_ms = limits.lock_timeout().as_millis().max(1);
        let role = self.role_for(mode, limits.role).map(str::to_string);
        if in_transaction {
            let mut begin = if mode == Mode::ReadOnly {
                // row_security = off: a table whose policies would apply is
                // an error, never a policy expression run on ward's behalf.
                "BEGIN READ ONLY; SET LOCAL row_security = off".to_string()
            } else {
                "BEGIN".to_string()
            };
            begin.push_str(&format!("; SET LOCAL search_path = {PINNED_SEARCH_PATH}; SET LOCAL statement_timeout = {statement_ms}; SET LOCAL lock_timeout = {lock_ms}"));
            if let Some(r) = &role {
                begin.push_str(&format!("; SET LOCAL ROLE {}", quote_ident(r)));
            }
            self.simple(begin).await?;
        } else {
            let mut set = format!(
                "SET search_path = {PINNED_SEARCH_PATH}; SET statement_timeout = {statement_ms}; SET lock_timeout = {lock_ms}"
            );
            if let Some(r) = &role {
                set.push_str(&format!("; SET ROLE {}", quote_ident(r)));
            }
            self.simple(set).await?;
        }
        let result = self.stream(sql, binds, mode, limits, sink).await;
        let finish = if in_transaction {
            if result.is_ok() && mode != Mode::ReadOnly {
                "COMMIT"
            } else if mode == Mode::ReadOnly {
                // A read cannot leave a session-level advisory lock behind.
                "ROLLBACK; SELECT pg_catalog.pg_advisory_unlock_all()"
            } else {
                "ROLLBACK"
            }
        } else {
            "RESET ROLE; RESET statement_timeout; RESET lock_timeout"
        };
        let finished = self.simple(finish.to_string()).await;
        let mut outcome = result?;
        // A failed COMMIT means the write did not happen.
        finished?;
        outcome.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        outcome.role = Some(role.unwrap_or_else(|| self.identity.user.clone()));
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
        let mut stream = RowStream::new(sink, limits.max_rows);
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
                match stream.admit(|| pg_columns(&row)) {
                    Admit::Keep => stream.keep(|columns| pg_row(&row, columns)),
                    Admit::Capped if mode == Mode::ReadOnly => {
                        // Stop the server working on rows nobody will read.
                        stop_reading = true;
                        let _ = cancel_backend(&self.url, self.pid).await;
                    }
                    Admit::Capped => {}
                }
            }
        }
        if let Some(e) = failure {
            if matches!(e, ExecError::StatementTimeout(_)) {
                // Client-side guard fired: make sure the server stops too.
                let _ = cancel_backend(&self.url, self.pid).await;
            }
            return Err(e);
        }
        // No rows: still report the shape of the result.
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
                redact_text(&e.to_string())
            ))
        })?;
    let _: Option<bool> = sqlx::query_scalar("SELECT pg_cancel_backend($1)")
        .bind(pid)
        .fetch_optional(&mut conn)
        .await
        .map_err(|e| ExecError::Other(format!("cancel failed: {}", redact_text(&e.to_string()))))?;
    let _ = conn.close().await;
    Ok(())
}

/// Maps a driver error to what happened, in the words an on-call engineer
/// needs.
fn map_error(e: sqlx::Error, limits: &Limits) -> ExecError {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            // Messages can quote values (`invalid input syntax for type
            // integer: "SCRAM-SHA-256$..."`): redacted like evidence.
            let message = redact_text(db.message());
            match code.as_str() {
                "57014" if message.contains("statement timeout") => {
                    ExecError::StatementTimeout(limits.statement_timeout)
                }
                "57014" => ExecError::Cancelled,
                "55P03" if message.contains("lock timeout") => {
                    ExecError::LockTimeout(limits.lock_timeout())
                }
                "25006" => ExecError::ReadOnly(message),
                "57P01" | "57P02" | "57P03" | "08000" | "08003" | "08006" => {
                    ExecError::ConnectionLost(message)
                }
                // Unqualified user objects are not found on purpose.
                "42P01" | "42883" | "42704" => ExecError::Database {
                    code,
                    message: format!(
                        "{message} (ward pins search_path to {PINNED_SEARCH_PATH}: name user objects with their schema, e.g. public.orders)"
                    ),
                },
                _ => ExecError::Database { code, message },
            }
        }
        sqlx::Error::Io(e) => ExecError::ConnectionLost(redact_text(&e.to_string())),
        sqlx::Error::Protocol(m) => ExecError::ConnectionLost(redact_text(&m)),
        sqlx::Error::WorkerCrashed => {
            ExecError::ConnectionLost("the connection worker stopped".into())
        }
        other => ExecError::Other(redact_text(&other.to_string())),
    }
}
