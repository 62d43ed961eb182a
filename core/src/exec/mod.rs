//! Running statements against a target database, safely.
//!
//! Defence in depth around the gate: diagnostics run in `BEGIN READ ONLY`
//! transactions (Postgres) or on read-only connections (SQLite), every step
//! runs with a `statement_timeout`, writes run with a `lock_timeout`, rows are
//! streamed (never collected) and capped, and a running query can be
//! cancelled so the server really stops working on it. Nothing here decides
//! whether a statement may run — the caller has asked the gate first.
//! Credentials live only in the [`SecretUrl`] given at run time and never
//! appear in errors, logs or `Debug` output.

mod decode;
mod pg;
mod sqlite;
pub mod step;
pub mod unreachable;

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{Config, redact_url};
use crate::sql::Engine;

pub use crate::evidence::{Column, Row};

/// A connection URL that may hold a password. Shown only with credentials
/// removed.
#[derive(Clone)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> SecretUrl {
        SecretUrl(url.into())
    }

    /// The URL itself, for the driver only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// The URL without credentials, for people and logs.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({})", self.redacted())
    }
}

/// A database ward can connect to.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub engine: Engine,
    pub url: SecretUrl,
    pub environment: String,
    /// Columns to pseudonymize in every summary from this target.
    pub redact: Vec<String>,
    /// The roles statements run as, per kind (`roles:` in ward.yaml).
    pub roles: crate::config::Roles,
    /// How long statements wait for a lock, unless their step says
    /// (`lock_timeout:` in ward.yaml); `None`: [`DEFAULT_LOCK_TIMEOUT`].
    pub lock_timeout: Option<Duration>,
}

impl Target {
    /// The target named `name` in `ward.yaml`, its URL read from the
    /// environment variable the config names (or the credential-free `url`).
    pub fn from_config(config: &Config, name: &str) -> Result<Target, ExecError> {
        let spec = config.spec.targets.get(name).ok_or_else(|| {
            let known: Vec<&str> = config.spec.targets.keys().map(String::as_str).collect();
            ExecError::Config(format!(
                "no target `{name}` in ward.yaml (known: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })?;
        let url = match (&spec.url, &spec.url_env) {
            (Some(url), _) => url.clone(),
            (None, Some(var)) => std::env::var(var).map_err(|_| {
                ExecError::Config(format!("target `{name}` reads its URL from ${var}, which is not set; export it (e.g. export {var}=postgres://user@host/db)"))
            })?,
            (None, None) => return Err(ExecError::Config(format!("target `{name}` has neither url nor url_env"))),
        };
        let url = resolve_sqlite_path(spec.engine, &url, &config.root);
        Ok(Target {
            name: name.to_string(),
            engine: spec.engine,
            url: SecretUrl::new(url),
            environment: spec.environment.clone(),
            redact: spec.redact.clone(),
            // Config::load refused a lock_timeout that is not a positive
            // duration, so this only drops what it already reported.
            lock_timeout: spec
                .lock_timeout
                .as_deref()
                .and_then(|t| crate::contract::positive_duration(t).ok()),
            roles: spec.roles.clone(),
        })
    }

    /// A target given on the command line (`--url`); the engine is read
    /// from the scheme.
    pub fn from_url(url: &str, environment: &str) -> Result<Target, ExecError> {
        let engine = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Engine::Postgres
        } else if url.starts_with("sqlite:") {
            Engine::Sqlite
        } else {
            return Err(ExecError::Config(format!(
                "cannot tell the engine of `{}`; use postgres://... or sqlite:PATH",
                redact_url(url)
            )));
        };
        Ok(Target {
            name: "url".into(),
            engine,
            url: SecretUrl::new(url),
            environment: environment.to_string(),
            redact: Vec::new(),
            roles: crate::config::Roles::default(),
            lock_timeout: None,
        })
    }
}

/// Relative SQLite paths in ward.yaml are relative to the repository.
fn resolve_sqlite_path(engine: Engine, url: &str, root: &std::path::Path) -> String {
    if engine != Engine::Sqlite {
        return url.to_string();
    }
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (path, query) = path
        .split_once('?')
        .map_or((path, None), |(p, q)| (p, Some(q)));
    let p = std::path::Path::new(path);
    let full = if p.is_absolute() || path == ":memory:" {
        p.to_path_buf()
    } else {
        root.join(p)
    };
    match query {
        Some(q) => format!("sqlite://{}?{q}", full.display()),
        None => format!("sqlite://{}", full.display()),
    }
}

/// How a statement runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Diagnostics, verify queries, dry runs: the database itself refuses writes.
    ReadOnly,
    /// An approved migration or remediation.
    Write {
        /// Inside a transaction, unless the statement cannot run in one
        /// (e.g. `CREATE INDEX CONCURRENTLY`, `VACUUM`).
        transaction: bool,
    },
}

/// How long a statement waits for a lock when neither its step nor its
/// target says (`lock_timeout` in a runbook step or a `ward.yaml` target).
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(3);

/// The `statement_timeout` of what ward runs on its own account: ad-hoc
/// reads and verify queries (runbook steps have their own `timeout`).
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Rows an ad-hoc read passes on to its summarizer: enough for any
/// diagnosis a person reads, small enough that a `SELECT *` on a big table
/// stops early instead of streaming it all.
pub const ADHOC_MAX_ROWS: u64 = 10_000;

/// Rows a verify query's `expect` sees (`rows` in CEL): a verify checks a
/// fact, which never takes more than a handful of rows; the cap only bounds
/// a mistaken one.
pub const VERIFY_MAX_ROWS: u64 = 1000;

/// Limits for one statement.
#[derive(Debug, Clone)]
pub struct Limits {
    pub statement_timeout: Duration,
    /// The step's own lock timeout; `None`: the target's, else
    /// [`DEFAULT_LOCK_TIMEOUT`] (see [`Limits::lock_timeout`]).
    pub lock_timeout: Option<Duration>,
    /// Rows passed on to the sink; further rows are not read (read-only) or
    /// read and counted but not passed on (writes, which must finish).
    pub max_rows: Option<u64>,
    /// Which of the target's roles a write runs as; read-only statements
    /// always run as the read role.
    pub role: RoleKind,
}

/// The kind of statement, for choosing the role it runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleKind {
    /// Diagnostics, verify queries, ad-hoc reads, ward's catalog lookups.
    #[default]
    Read,
    /// Remediations that signal other backends (`pg_terminate_backend`).
    Signal,
    /// Migrations and other changes.
    Change,
}

/// An analysis made catalog-aware, with what each name resolved to.
#[derive(Debug, Clone, PartialEq)]
pub struct Refined {
    pub analysis: crate::sql::Analysis,
    pub resolved: Vec<crate::catalog::Resolution>,
    /// Whether the catalog was consulted (false: SQLite, or SQL that does
    /// not parse as one statement).
    pub looked_up: bool,
}

/// Who the connection is, as the server says (Postgres only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// The role that logged in (`session_user`).
    pub user: String,
    pub superuser: bool,
    /// Memberships that reach outside the database:
    /// `pg_execute_server_program`, `pg_write_server_files`, ...
    pub dangerous_roles: Vec<String>,
    /// Schemas of the role's own search_path it may CREATE in.
    pub creatable_path_schemas: Vec<String>,
    /// `server_version_num`.
    pub server_version_num: u32,
}

impl Identity {
    /// Whether reading as this role, without a least-privileged read role,
    /// leaves the database's privilege system no room to stop anything.
    pub fn reads_unsafely(&self) -> bool {
        self.superuser
            || !self.dangerous_roles.is_empty()
            || !self.creatable_path_schemas.is_empty()
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
            lock_timeout: None,
            max_rows: None,
            role: RoleKind::Read,
        }
    }
}

impl Limits {
    /// The lock timeout the statement runs with.
    pub fn lock_timeout(&self) -> Duration {
        self.lock_timeout.unwrap_or(DEFAULT_LOCK_TIMEOUT)
    }
}

/// A value bound to a positional parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    Int(i64),
    Float(f64),
    Text(String),
    Bool(bool),
    Null,
}

/// What the executor hands the summarizer, in order: the columns once, then
/// each row.
pub enum RowEvent<'a> {
    Columns(&'a [Column]),
    Row(&'a Row),
}

/// What happened when a statement ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub columns: Vec<Column>,
    /// Rows the database returned that ward read.
    pub rows_seen: u64,
    /// Rows passed on to the sink (at most `max_rows`).
    pub rows_kept: u64,
    /// `max_rows` was reached.
    pub capped: bool,
    pub duration_ms: u64,
    /// SHA-256 over the rows passed on, as JSON lines.
    pub sha256: String,
    /// The role the statement ran as (`current_user`), Postgres only.
    pub role: Option<String>,
}

/// Why a statement did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{0}")]
    Config(String),
    /// The target could not be reached; `diagnosis` says why where the
    /// driver's error allows (Postgres).
    #[error("cannot connect to {target}: {message}")]
    Connect {
        target: String,
        message: String,
        diagnosis: Option<Box<unreachable::ConnectDiagnosis>>,
    },
    #[error("statement_timeout: the statement ran longer than {0:?} and the server cancelled it")]
    StatementTimeout(Duration),
    #[error(
        "lock_timeout: the statement waited longer than {0:?} for a lock and the server cancelled it"
    )]
    LockTimeout(Duration),
    #[error("cancelled: the server stopped the statement at ward's request")]
    Cancelled,
    #[error("the database refused a write in a read-only transaction: {0}")]
    ReadOnly(String),
    #[error("the connection to the database was lost mid-statement: {0}")]
    ConnectionLost(String),
    #[error("database error {code}: {message}")]
    Database { code: String, message: String },
    #[error("{0}")]
    Other(String),
}

impl ExecError {
    /// Why the target could not be reached, when this is a connection
    /// failure ward could classify.
    pub fn diagnosis(&self) -> Option<&unreachable::ConnectDiagnosis> {
        match self {
            ExecError::Connect { diagnosis, .. } => diagnosis.as_deref(),
            _ => None,
        }
    }

    /// A short machine-readable kind, for reports and logs.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ExecError::Config(_) => ErrorKind::Config,
            ExecError::Connect { .. } => ErrorKind::Connect,
            ExecError::StatementTimeout(_) => ErrorKind::StatementTimeout,
            ExecError::LockTimeout(_) => ErrorKind::LockTimeout,
            ExecError::Cancelled => ErrorKind::Cancelled,
            ExecError::ReadOnly(_) => ErrorKind::ReadOnlyViolation,
            ExecError::ConnectionLost(_) => ErrorKind::ConnectionLost,
            ExecError::Database { .. } => ErrorKind::Database,
            ExecError::Other(_) => ErrorKind::Other,
        }
    }
}

/// What kind of [`ExecError`] a statement failed with, as the session log
/// stores it (`failed.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Config,
    Connect,
    StatementTimeout,
    LockTimeout,
    Cancelled,
    ReadOnlyViolation,
    ConnectionLost,
    Database,
    Other,
}

impl ErrorKind {
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Connect => "connect",
            ErrorKind::StatementTimeout => "statement_timeout",
            ErrorKind::LockTimeout => "lock_timeout",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::ReadOnlyViolation => "read_only_violation",
            ErrorKind::ConnectionLost => "connection_lost",
            ErrorKind::Database => "database",
            ErrorKind::Other => "other",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A query with `binds` bound in order, for any sqlx database.
pub(crate) fn bound_query<'q, DB>(
    sql: &str,
    binds: &[Bind],
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>
where
    DB: sqlx::Database,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    f64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    bool: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let mut query = sqlx::query::<DB>(sqlx::AssertSqlSafe(sql.to_string()));
    for b in binds {
        query = match b {
            Bind::Int(i) => query.bind(*i),
            Bind::Float(f) => query.bind(*f),
            Bind::Text(t) => query.bind(t.clone()),
            Bind::Bool(v) => query.bind(*v),
            Bind::Null => query.bind(None::<String>),
        };
    }
    query
}

/// Result columns as ward reports them.
pub(crate) fn columns_of<C: sqlx::Column>(cols: &[C]) -> Vec<Column> {
    use sqlx::TypeInfo as _;
    cols.iter()
        .map(|c| Column {
            name: c.name().to_string(),
            type_name: c.type_info().name().to_string(),
        })
        .collect()
}

/// Hashes rows as they stream.
#[derive(Default)]
pub(crate) struct RowHasher(Sha256);

impl RowHasher {
    pub(crate) fn row(&mut self, row: &Row) {
        if let Ok(line) = serde_json::to_vec(row) {
            self.0.update(&line);
        }
        self.0.update(b"\n");
    }

    pub(crate) fn hex(self) -> String {
        self.0
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// What to do with a row the engine just read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Pass it on.
    Keep,
    /// `max_rows` is reached: count it, pass nothing on. A read may stop
    /// reading here; a write must run to its end.
    Capped,
}

/// The engine-independent part of streaming one statement's rows: the
/// columns announced once, rows counted, capped at `max_rows`, hashed and
/// passed to the sink, and the [`Outcome`] that sums it up. Each engine
/// only reads rows and decodes them.
pub(crate) struct RowStream<'s> {
    sink: &'s mut (dyn FnMut(RowEvent<'_>) + Send),
    max_rows: Option<u64>,
    columns: Option<Vec<Column>>,
    seen: u64,
    kept: u64,
    capped: bool,
    hasher: RowHasher,
}

impl<'s> RowStream<'s> {
    pub(crate) fn new(
        sink: &'s mut (dyn FnMut(RowEvent<'_>) + Send),
        max_rows: Option<u64>,
    ) -> RowStream<'s> {
        RowStream {
            sink,
            max_rows,
            columns: None,
            seen: 0,
            kept: 0,
            capped: false,
            hasher: RowHasher::default(),
        }
    }

    /// Counts a row read from the server, announcing the columns first
    /// (`columns` is called for the first row only), and says whether it is
    /// passed on.
    pub(crate) fn admit(&mut self, columns: impl FnOnce() -> Vec<Column>) -> Admit {
        self.seen += 1;
        if self.columns.is_none() {
            let columns = columns();
            (self.sink)(RowEvent::Columns(&columns));
            self.columns = Some(columns);
        }
        if self.max_rows.is_some_and(|m| self.kept >= m) {
            self.capped = true;
            Admit::Capped
        } else {
            Admit::Keep
        }
    }

    /// Decodes an admitted row with the announced columns and passes it on.
    pub(crate) fn keep(&mut self, decode: impl FnOnce(&[Column]) -> Row) {
        let row = decode(self.columns.as_deref().unwrap_or_default());
        self.hasher.row(&row);
        (self.sink)(RowEvent::Row(&row));
        self.kept += 1;
    }

    /// Whether no row came, so the columns still have to be announced.
    pub(crate) fn needs_columns(&self) -> bool {
        self.columns.is_none()
    }

    /// The outcome; `described` gives the columns of a statement that
    /// returned no rows (announced here, so a summarizer always sees them).
    pub(crate) fn finish(mut self, described: Option<Vec<Column>>) -> Outcome {
        let columns = match self.columns.take() {
            Some(c) => c,
            None => {
                let columns = described.unwrap_or_default();
                (self.sink)(RowEvent::Columns(&columns));
                columns
            }
        };
        Outcome {
            columns,
            rows_seen: self.seen,
            rows_kept: self.kept,
            capped: self.capped,
            duration_ms: 0,
            sha256: self.hasher.hex(),
            role: None,
        }
    }
}

/// Asks a running statement to stop. Cheap to clone; usable from another task.
#[derive(Debug, Clone)]
pub struct Canceller {
    inner: CancelInner,
}

#[derive(Debug, Clone)]
enum CancelInner {
    Pg {
        url: SecretUrl,
        pid: i32,
        requested: std::sync::Arc<tokio::sync::Notify>,
    },
    Sqlite {
        requested: std::sync::Arc<tokio::sync::Notify>,
    },
}

impl Canceller {
    /// Requests cancellation of the statement running on the connection, if
    /// any. Postgres: the backend is cancelled server-side
    /// (`pg_cancel_backend` from a second connection).
    pub async fn cancel(&self) -> Result<(), ExecError> {
        match &self.inner {
            CancelInner::Pg {
                url,
                pid,
                requested,
            } => {
                requested.notify_one();
                pg::cancel_backend(url, *pid).await
            }
            CancelInner::Sqlite { requested } => {
                requested.notify_one();
                Ok(())
            }
        }
    }
}

/// An open connection to a target.
pub struct Executor {
    conn: Conn,
    target: Target,
    session_id: String,
}

enum Conn {
    Pg(Box<pg::PgExec>),
    Sqlite(sqlite::SqliteExec),
}

impl Executor {
    /// Connects. `application_name` is `ward <session_id>` so DBAs see ward
    /// in pg_stat_activity and in server logs. SQLite connections opened
    /// with `read_only` refuse writes (`mode=ro`, `query_only`).
    pub async fn connect(
        target: &Target,
        session_id: &str,
        read_only: bool,
    ) -> Result<Executor, ExecError> {
        let conn = match target.engine {
            Engine::Postgres => Conn::Pg(Box::new(pg::PgExec::connect(target, session_id).await?)),
            Engine::Sqlite => Conn::Sqlite(sqlite::SqliteExec::connect(target, read_only).await?),
        };
        Ok(Executor {
            conn,
            target: target.clone(),
            session_id: session_id.to_string(),
        })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The server process id of this connection (Postgres).
    pub fn backend_pid(&self) -> Option<i32> {
        match &self.conn {
            Conn::Pg(p) => Some(p.pid),
            Conn::Sqlite(_) => None,
        }
    }

    pub fn canceller(&self) -> Canceller {
        match &self.conn {
            Conn::Pg(p) => Canceller {
                inner: CancelInner::Pg {
                    url: self.target.url.clone(),
                    pid: p.pid,
                    requested: p.cancel.clone(),
                },
            },
            Conn::Sqlite(s) => Canceller {
                inner: CancelInner::Sqlite {
                    requested: s.cancel.clone(),
                },
            },
        }
    }

    /// Who the connection is (Postgres); `None` for SQLite.
    pub fn identity(&self) -> Option<&Identity> {
        match &self.conn {
            Conn::Pg(p) => Some(&p.identity),
            Conn::Sqlite(_) => None,
        }
    }

    /// The analysis of a statement made catalog-aware on this target: every
    /// name resolved against the live catalog, anything not provably
    /// harmless raising the class. One round trip at most, cached for the
    /// session. SQLite: the analysis as it is.
    pub async fn refine(
        &mut self,
        analyzer: &crate::sql::Analyzer,
        analysis: &crate::sql::Analysis,
    ) -> Result<crate::sql::Analysis, ExecError> {
        if analysis.risk != crate::sql::Risk::ReadOnly {
            // The catalog cannot make a change more harmful than it is
            // classed; it can only show a finding to be moot.
            return Ok(self.without_disproved_findings(analysis.clone()).await);
        }
        Ok(self.resolve(analyzer, analysis).await?.analysis)
    }

    /// `analysis` without the findings this target's catalog disproves:
    /// `set-not-null-scans-table` when validated CHECKs prove every column
    /// not null (see [`crate::catalog::not_null`]). Looked up afresh every
    /// time (a runbook validates the CHECK a step earlier); a failed lookup,
    /// SQLite or any doubt keeps every finding.
    async fn without_disproved_findings(
        &mut self,
        analysis: crate::sql::Analysis,
    ) -> crate::sql::Analysis {
        use crate::catalog::not_null;
        if !matches!(self.conn, Conn::Pg(_))
            || !analysis
                .findings()
                .iter()
                .any(|f| f.rule == not_null::FINDING)
        {
            return analysis;
        }
        let [st] = analysis.statements.as_slice() else {
            return analysis;
        };
        let Some(target) = crate::sql::set_not_null_target(&st.sql) else {
            return analysis;
        };
        let mut facts: Option<not_null::Facts> = None;
        let columns = serde_json::Value::from(target.columns.clone()).to_string();
        let looked_up = self
            .run(
                not_null::LOOKUP_SQL,
                &[Bind::Text(target.regclass()), Bind::Text(columns)],
                Mode::ReadOnly,
                &Limits {
                    max_rows: Some(1),
                    ..Limits::default()
                },
                &mut |e| {
                    if let RowEvent::Row(r) = e {
                        facts = r
                            .get("facts")
                            .and_then(serde_json::Value::as_str)
                            .and_then(|t| serde_json::from_str(t).ok());
                    }
                },
            )
            .await;
        match (looked_up, facts) {
            (Ok(_), Some(f)) => not_null::refine(&analysis, &target, &f),
            _ => analysis,
        }
    }

    /// What every name of a statement resolves to on this target, and the
    /// analysis made catalog-aware ([`refine`](Self::refine) keeps only
    /// the latter). One round trip for a statement not seen before in this
    /// session; SQLite and unparsed or multi-statement SQL: the analysis
    /// as it is.
    pub async fn resolve(
        &mut self,
        analyzer: &crate::sql::Analyzer,
        analysis: &crate::sql::Analysis,
    ) -> Result<Refined, ExecError> {
        let mut out = self.resolve_names(analyzer, analysis).await?;
        out.analysis = self.without_disproved_findings(out.analysis).await;
        Ok(out)
    }

    /// [`resolve`](Self::resolve)'s name lookup, cached per statement text.
    async fn resolve_names(
        &mut self,
        analyzer: &crate::sql::Analyzer,
        analysis: &crate::sql::Analysis,
    ) -> Result<Refined, ExecError> {
        let unchanged = || Refined {
            analysis: analysis.clone(),
            resolved: Vec::new(),
            looked_up: false,
        };
        let Conn::Pg(p) = &mut self.conn else {
            return Ok(unchanged());
        };
        let [st] = analysis.statements.as_slice() else {
            return Ok(unchanged());
        };
        if analysis.parse_error.is_some() {
            return Ok(unchanged());
        }
        if let Some(hit) = p.catalog_cache.get(&st.sql) {
            return Ok(hit.clone());
        }
        let Some(refs) = crate::catalog::References::of(&st.sql) else {
            return Ok(unchanged());
        };
        let facts = p.catalog_facts(&crate::catalog::request(&refs)).await?;
        let (refined, resolved) = crate::catalog::refine(analyzer, analysis, &refs, &facts);
        let out = Refined {
            analysis: refined,
            resolved,
            looked_up: true,
        };
        p.catalog_cache.insert(st.sql.clone(), out.clone());
        Ok(out)
    }

    /// What the connected server is (Postgres): its version and where its
    /// extensions live, for [`crate::sql::AnalyzerOptions::server`].
    pub fn server_facts(&self) -> Option<crate::sql::ServerFacts> {
        match &self.conn {
            Conn::Pg(p) => Some(p.server.clone()),
            Conn::Sqlite(_) => None,
        }
    }

    /// Runs one statement, streaming its rows into `sink`.
    pub async fn run(
        &mut self,
        sql: &str,
        binds: &[Bind],
        mode: Mode,
        limits: &Limits,
        sink: &mut (dyn FnMut(RowEvent<'_>) + Send),
    ) -> Result<Outcome, ExecError> {
        // The step's lock timeout, else the target's.
        let limits = &Limits {
            lock_timeout: limits.lock_timeout.or(self.target.lock_timeout),
            ..limits.clone()
        };
        match &mut self.conn {
            Conn::Pg(p) => p.run(sql, binds, mode, limits, sink).await,
            Conn::Sqlite(s) => s.run(sql, binds, mode, limits, sink).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_urls_never_show_their_password() {
        let u = SecretUrl::new("postgres://ward:hunter2@db:5432/app");
        assert!(!format!("{u:?}").contains("hunter2"));
        assert!(!u.redacted().contains("hunter2"));
        let t = Target::from_url("postgres://ward:hunter2@db/app", "prod").expect("target");
        assert!(!format!("{t:?}").contains("hunter2"));
        assert!(Target::from_url("mysql://x", "prod").is_err());
    }

    #[test]
    fn passwords_holding_url_delimiters_never_show_in_debug_or_errors() {
        for (url, secret) in [
            ("postgres://ward:a/b@db/app", "a/b"),
            (
                "postgres://ward:Sl/ash@Qu?Ha#sh@127.0.0.1:1/app",
                "Sl/ash@Qu?Ha#sh",
            ),
            ("postgresql://db/app?password=x/y#z", "x/y#z"),
        ] {
            let t = Target::from_url(url, "prod").expect("target");
            assert!(!format!("{t:?}").contains(secret), "{t:?}");
            let u = SecretUrl::new(url);
            assert!(!u.redacted().contains(secret), "{}", u.redacted());
            let wrong_scheme = url.replacen("postgres", "mysql", 1);
            let err = Target::from_url(&wrong_scheme, "prod").expect_err("unknown engine");
            assert!(!err.to_string().contains(secret), "{err}");
            assert!(!format!("{err:?}").contains(secret), "{err:?}");
        }
    }

    #[test]
    fn relative_sqlite_paths_are_relative_to_the_repository() {
        let url = resolve_sqlite_path(
            Engine::Sqlite,
            "sqlite:fixtures/demo/app.db",
            std::path::Path::new("/repo"),
        );
        assert_eq!(url, "sqlite:///repo/fixtures/demo/app.db");
        assert_eq!(
            resolve_sqlite_path(
                Engine::Sqlite,
                "sqlite:///abs/x.db?mode=ro",
                std::path::Path::new("/r")
            ),
            "sqlite:///abs/x.db?mode=ro"
        );
    }

    /// What a sink saw, in order.
    fn events_of(max_rows: Option<u64>, rows: u64, stop_at_cap: bool) -> (Vec<String>, Outcome) {
        let mut seen = Vec::new();
        let mut sink = |e: RowEvent<'_>| {
            seen.push(match e {
                RowEvent::Columns(c) => format!("columns {}", c.len()),
                RowEvent::Row(r) => format!("row {}", r["n"]),
            });
        };
        let mut stream = RowStream::new(&mut sink, max_rows);
        for n in 0..rows {
            match stream.admit(|| vec![Column::new("n", "int8")]) {
                Admit::Keep => stream.keep(|_| {
                    let mut r = Row::new();
                    r.insert("n".into(), n.into());
                    r
                }),
                Admit::Capped if stop_at_cap => break,
                Admit::Capped => {}
            }
        }
        let outcome = stream.finish(None);
        (seen, outcome)
    }

    #[test]
    fn a_row_stream_caps_counts_and_announces_columns_once() {
        let (seen, outcome) = events_of(Some(2), 5, false);
        assert_eq!(seen, ["columns 1", "row 0", "row 1"]);
        assert_eq!(
            (outcome.rows_seen, outcome.rows_kept, outcome.capped),
            (5, 2, true)
        );
        // A read stops at the first row over the cap, which it has counted.
        let (_, read) = events_of(Some(2), 5, true);
        assert_eq!((read.rows_seen, read.rows_kept, read.capped), (3, 2, true));
        assert_eq!(read.sha256, outcome.sha256);
        let (seen, all) = events_of(None, 3, true);
        assert_eq!(seen.len(), 4);
        assert_eq!((all.rows_seen, all.rows_kept, all.capped), (3, 3, false));
    }

    #[test]
    fn a_row_stream_without_rows_still_announces_the_columns() {
        let mut seen = Vec::new();
        let mut sink = |e: RowEvent<'_>| {
            if let RowEvent::Columns(c) = e {
                seen.push(c.to_vec());
            }
        };
        let stream = RowStream::new(&mut sink, None);
        assert!(stream.needs_columns());
        let outcome = stream.finish(Some(vec![Column::new("x", "text")]));
        assert_eq!(seen, [vec![Column::new("x", "text")]]);
        assert_eq!((outcome.rows_seen, outcome.capped), (0, false));
    }
}
