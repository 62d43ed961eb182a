//! The team's shared store: a PostgreSQL database the team already runs
//! (`store:` in `ward.yaml`), holding a copy of every session's events,
//! requests from other operators (approvals, rejections, answers) and the
//! sessions' answers to them.
//!
//! The store is a mirror and a mailbox, never the source of truth for a
//! running session: the local log is written and fsynced first, and a
//! session goes on when the store is unreachable. Its tables are
//! append-only by the database's own grants and triggers (see
//! `migrations/`), and every row names the role PostgreSQL authenticated,
//! set by a trigger, so identity here is authentication, not a claim.
//!
//! This module never prints and never decides whether anything may run;
//! it moves rows and reports what it found.

pub mod bridge;
pub mod requests;
pub mod team;

use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, Row};

use crate::audit::Event;
use crate::exec::SecretUrl;

pub mod check;
pub mod mirror;

/// `store:` in `ward.yaml`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StoreSpec {
    /// The environment variable holding the store's URL. Each operator
    /// sets their own (their own PostgreSQL role and password): the store
    /// never needs a shared password.
    pub url_env: String,
    /// A policy role `R` is held by members of the PostgreSQL role
    /// `<role_prefix>R` (default `ward_`, so `dba` is `ward_dba`).
    #[serde(default)]
    pub role_prefix: Option<String>,
}

impl StoreSpec {
    /// The prefix that maps a policy role to a PostgreSQL role.
    pub fn role_prefix(&self) -> &str {
        self.role_prefix.as_deref().unwrap_or(DEFAULT_ROLE_PREFIX)
    }

    /// The store's URL, read from the environment variable named.
    pub fn url(&self) -> Result<SecretUrl, StoreError> {
        std::env::var(&self.url_env)
            .map(SecretUrl::new)
            .map_err(|_| StoreError::NoUrl {
                var: self.url_env.clone(),
            })
    }
}

/// A session's link to the team store: the store and how policy roles
/// map to PostgreSQL roles.
#[derive(Debug, Clone)]
pub struct StoreLink {
    pub store: Store,
    pub role_prefix: String,
}

impl StoreLink {
    /// The store `ward.yaml` configures, if any, opened lazily (call it
    /// inside a Tokio runtime).
    pub fn from_config(config: &crate::config::Config) -> Result<Option<StoreLink>, StoreError> {
        let Some(spec) = &config.spec.store else {
            return Ok(None);
        };
        Ok(Some(StoreLink {
            store: Store::open(&spec.url()?)?,
            role_prefix: spec.role_prefix().to_string(),
        }))
    }
}

/// Default of [`StoreSpec::role_prefix`].
pub const DEFAULT_ROLE_PREFIX: &str = "ward_";

/// The schema's migrations, in order. Each runs once, in a transaction.
const MIGRATIONS: &[(i32, &str, &str)] = &[(1, "init", include_str!("migrations/001_init.sql"))];

/// The schema version this ward reads and writes.
pub const SCHEMA_VERSION: i32 = 1;

/// What went wrong talking to the store. Messages never hold the
/// password: URLs are shown redacted and driver errors are redacted.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the store's URL is read from ${var}, which is not set; export it with your own role (e.g. export {var}=postgres://you@store-host/ward)"
    )]
    NoUrl { var: String },
    #[error("cannot reach the store {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("the store {url} refused: {message}")]
    Refused { url: String, message: String },
    #[error(
        "the store {url} has schema version {found}, this ward needs {needed}; ask the store's owner to run `ward store init`"
    )]
    Schema {
        url: String,
        found: i32,
        needed: i32,
    },
    #[error(
        "session {session}, seq {seq}: the store holds hash {stored}, the local log {local}; one of them was altered"
    )]
    Diverged {
        session: String,
        seq: u64,
        stored: String,
        local: String,
    },
    #[error("session {session}: {message}")]
    Log { session: String, message: String },
}

impl StoreError {
    /// Whether the store could not be reached (as opposed to refusing
    /// what was asked): a session goes on and catches up later.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, StoreError::Unreachable { .. })
    }
}

/// One applied migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    pub version: i32,
    pub name: String,
}

/// A session as the store lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredSession {
    pub session_id: String,
    /// The role that authenticated when the session was first stored.
    pub owner: String,
    pub host: String,
    pub runbook: String,
    pub target: String,
    pub environment: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// Events stored, and the last one's seq, kind and hash.
    pub events: u64,
    pub last_kind: Option<String>,
    pub head: Option<String>,
    pub last_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl StoredSession {
    /// Sealed by a `session_ended` in the store.
    pub fn ended(&self) -> bool {
        self.last_kind.as_deref() == Some("session_ended")
    }
}

/// An event row as stored: the line exactly as in the local log, and who
/// stored it when.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub seq: u64,
    pub hash: String,
    pub line: String,
    pub stored_by: String,
    pub stored_at: chrono::DateTime<chrono::Utc>,
}

/// A connection pool to the store. Cheap to clone; reconnects by itself
/// after the store comes back.
#[derive(Clone)]
pub struct Store {
    opts: PgConnectOptions,
    /// Made on first use, inside the runtime that uses it (a front end
    /// opens the store before it starts its runtime); shared by clones.
    lazy: std::sync::Arc<std::sync::OnceLock<PgPool>>,
    url: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.url)
    }
}

impl Store {
    /// Opens a pool to the store (lazily: nothing is connected until the
    /// first use, so a session starts when the store is down). The pool is
    /// made by the first query, inside the runtime that runs it.
    pub fn open(url: &SecretUrl) -> Result<Store, StoreError> {
        let redacted = url.redacted();
        let opts = PgConnectOptions::from_str(url.expose())
            .map_err(|e| StoreError::Refused {
                url: redacted.clone(),
                message: crate::evidence::redact_text(&e.to_string()),
            })?
            .application_name("ward store")
            .options([("search_path", "pg_catalog,pg_temp")]);
        Ok(Store {
            opts,
            lazy: Default::default(),
            url: redacted,
        })
    }

    /// The store's URL without credentials.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The pool, for the store's own submodules.
    pub(crate) fn pool(&self) -> &PgPool {
        self.lazy.get_or_init(|| {
            PgPoolOptions::new()
                .max_connections(4)
                .min_connections(0)
                .acquire_timeout(Duration::from_secs(3))
                .connect_lazy_with(self.opts.clone())
        })
    }

    /// Sorts a driver error: the store is down, or it refused.
    pub(crate) fn error(&self, e: sqlx::Error) -> StoreError {
        let message = crate::evidence::redact_text(&e.to_string());
        // A server shutting down or restarting answers with an error of
        // its own (57P01 admin shutdown, 57P03 not yet accepting, class 08
        // connection exceptions): that is an outage, not a refusal.
        let outage = match &e {
            sqlx::Error::Database(d) => d
                .code()
                .is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c == "53300"),
            _ => false,
        };
        if outage {
            return StoreError::Unreachable {
                url: self.url.clone(),
                message,
            };
        }
        match e {
            sqlx::Error::Database(_)
            | sqlx::Error::RowNotFound
            | sqlx::Error::ColumnDecode { .. } => StoreError::Refused {
                url: self.url.clone(),
                message,
            },
            _ => StoreError::Unreachable {
                url: self.url.clone(),
                message,
            },
        }
    }

    /// The role PostgreSQL authenticated for this connection.
    pub async fn whoami(&self) -> Result<String, StoreError> {
        sqlx::query_scalar::<_, String>("SELECT session_user::text")
            .fetch_one(self.pool())
            .await
            .map_err(|e| self.error(e))
    }

    /// Creates or migrates the schema (`ward store init`): each missing
    /// migration in its own transaction, one `ward store init` at a time.
    /// Returns the migrations it applied (none when up to date).
    pub async fn init(&self) -> Result<Vec<Applied>, StoreError> {
        let mut conn = self.pool().acquire().await.map_err(|e| self.error(e))?;
        let err = |e| self.error(e);
        sqlx::raw_sql(
            "SELECT pg_advisory_lock(hashtext('ward store init'));
             CREATE SCHEMA IF NOT EXISTS ward;
             CREATE TABLE IF NOT EXISTS ward.migrations (
               version    int PRIMARY KEY,
               name       text NOT NULL,
               applied_by name NOT NULL DEFAULT session_user,
               applied_at timestamptz NOT NULL DEFAULT now());
             REVOKE ALL ON ward.migrations FROM PUBLIC;",
        )
        .execute(&mut *conn)
        .await
        .map_err(err)?;
        let mut applied = Vec::new();
        let result: Result<(), StoreError> = async {
            for (version, name, sql) in MIGRATIONS {
                let done: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM ward.migrations WHERE version = $1)",
                )
                .bind(version)
                .fetch_one(&mut *conn)
                .await
                .map_err(err)?;
                if done {
                    continue;
                }
                let mut tx = conn.begin().await.map_err(err)?;
                sqlx::raw_sql(AssertSqlSafe(*sql))
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                sqlx::query("INSERT INTO ward.migrations (version, name) VALUES ($1, $2)")
                    .bind(version)
                    .bind(name)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                sqlx::raw_sql("GRANT SELECT ON ward.migrations TO ward_operator")
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await.map_err(err)?;
                applied.push(Applied {
                    version: *version,
                    name: (*name).to_string(),
                });
            }
            Ok(())
        }
        .await;
        let _ = sqlx::raw_sql("SELECT pg_advisory_unlock(hashtext('ward store init'))")
            .execute(&mut *conn)
            .await;
        result.map(|()| applied)
    }

    /// Refuses a store whose schema is not the one this ward speaks.
    pub async fn check_schema(&self) -> Result<(), StoreError> {
        let found: Option<i32> = sqlx::query_scalar(
            "SELECT CASE WHEN to_regclass('ward.migrations') IS NULL THEN 0
                    ELSE (SELECT coalesce(max(version), 0) FROM ward.migrations) END",
        )
        .fetch_one(self.pool())
        .await
        .map_err(|e| self.error(e))?;
        let found = found.unwrap_or(0);
        if found != SCHEMA_VERSION {
            return Err(StoreError::Schema {
                url: self.url.clone(),
                found,
                needed: SCHEMA_VERSION,
            });
        }
        Ok(())
    }

    /// The last stored event of a session: its seq and hash (the chain
    /// head the store anchors).
    pub async fn head(&self, session: &str) -> Result<Option<(u64, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT seq, hash FROM ward.events WHERE session_id = $1 ORDER BY seq DESC LIMIT 1",
        )
        .bind(session)
        .fetch_optional(self.pool())
        .await
        .map_err(|e| self.error(e))?;
        Ok(row.map(|r| (r.get::<i64, _>(0) as u64, r.get::<String, _>(1))))
    }

    /// Appends `events` (consecutive, in order) of `session`, in one
    /// transaction. Idempotent: an event already stored with the same
    /// hash is skipped; one stored with another hash is a divergence and
    /// nothing is written. Event 0 (`session_started`) registers the
    /// session. Returns how many were new.
    pub async fn append(&self, session: &str, events: &[Event]) -> Result<u64, StoreError> {
        if events.is_empty() {
            return Ok(0);
        }
        let err = |e| self.error(e);
        let mut tx = self.pool().begin().await.map_err(err)?;
        let mut new = 0;
        for ev in events {
            if ev.seq == 0 {
                let d = &ev.data;
                let text = |k: &str| d.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
                let target = d
                    .pointer("/target/name")
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string();
                let started: chrono::DateTime<chrono::Utc> =
                    chrono::DateTime::parse_from_rfc3339(&ev.ts)
                        .map(|t| t.with_timezone(&chrono::Utc))
                        .map_err(|e| StoreError::Log {
                            session: session.to_string(),
                            message: format!("event 0 has an unreadable ts {:?}: {e}", ev.ts),
                        })?;
                sqlx::query(
                    "INSERT INTO ward.sessions (session_id, owner, host, runbook, target, environment, started_at, stored_at)
                     VALUES ($1, '', $2, $3, $4, $5, $6, now()) ON CONFLICT (session_id) DO NOTHING",
                )
                .bind(session)
                .bind(text("host"))
                .bind(text("runbook"))
                .bind(target)
                .bind(text("environment"))
                .bind(started)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            }
            let inserted = sqlx::query(
                "INSERT INTO ward.events (session_id, seq, kind, ts, prev, hash, line, stored_by, stored_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, '', now())
                 ON CONFLICT (session_id, seq) DO NOTHING",
            )
            .bind(session)
            .bind(ev.seq as i64)
            .bind(&ev.kind)
            .bind(&ev.ts)
            .bind(&ev.prev)
            .bind(&ev.hash)
            .bind(ev.canonical_line())
            .execute(&mut *tx)
            .await
            .map_err(err)?
            .rows_affected();
            if inserted == 1 {
                new += 1;
                continue;
            }
            let stored: String = sqlx::query_scalar(
                "SELECT hash FROM ward.events WHERE session_id = $1 AND seq = $2",
            )
            .bind(session)
            .bind(ev.seq as i64)
            .fetch_one(&mut *tx)
            .await
            .map_err(err)?;
            if stored != ev.hash {
                return Err(StoreError::Diverged {
                    session: session.to_string(),
                    seq: ev.seq,
                    stored,
                    local: ev.hash.clone(),
                });
            }
        }
        tx.commit().await.map_err(err)?;
        Ok(new)
    }

    /// Every stored event of a session, in seq order.
    pub async fn events(&self, session: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, hash, line, stored_by::text, stored_at FROM ward.events
              WHERE session_id = $1 ORDER BY seq",
        )
        .bind(session)
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.error(e))?;
        Ok(rows
            .into_iter()
            .map(|r| StoredEvent {
                seq: r.get::<i64, _>(0) as u64,
                hash: r.get(1),
                line: r.get(2),
                stored_by: r.get(3),
                stored_at: r.get(4),
            })
            .collect())
    }

    /// The sessions in the store, newest first.
    pub async fn sessions(&self) -> Result<Vec<StoredSession>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.session_id, s.owner::text, s.host, s.runbook, s.target, s.environment, s.started_at,
                    coalesce(h.n, 0), h.kind, h.hash, h.stored_at
               FROM ward.sessions s
               LEFT JOIN LATERAL (
                 SELECT e.kind, e.hash, e.stored_at,
                        (SELECT count(*) FROM ward.events c WHERE c.session_id = s.session_id) AS n
                   FROM ward.events e WHERE e.session_id = s.session_id
                  ORDER BY e.seq DESC LIMIT 1) h ON true
              ORDER BY s.started_at DESC, s.session_id",
        )
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.error(e))?;
        Ok(rows
            .into_iter()
            .map(|r| StoredSession {
                session_id: r.get(0),
                owner: r.get(1),
                host: r.get(2),
                runbook: r.get(3),
                target: r.get(4),
                environment: r.get(5),
                started_at: r.get(6),
                events: r.get::<i64, _>(7) as u64,
                last_kind: r.get(8),
                head: r.get(9),
                last_at: r.get(10),
            })
            .collect())
    }
}
