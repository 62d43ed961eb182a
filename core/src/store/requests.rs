//! Requests between hosts through the store: another operator's
//! approval, rejection, answer, standing approval or revocation
//! (`ward.requests`), and the session's answer to each (`ward.answers`).
//!
//! Who asked is the role PostgreSQL authenticated (`operator`, set by the
//! database's trigger) and the roles it was a member of then (`roles`):
//! nothing the client sends names a person. This module only moves rows
//! and wakes waiters; the runner decides what a request is worth.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;

use super::{Store, StoreError};
use crate::session::inbox::Answer;

/// What a store request asks (`ward.requests.op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreOp {
    Approve,
    ApproveForSession,
    Reject,
    Answer,
    Revoke,
}

impl StoreOp {
    /// The word stored in `ward.requests.op`.
    pub fn name(self) -> &'static str {
        match self {
            StoreOp::Approve => "approve",
            StoreOp::ApproveForSession => "approve_for_session",
            StoreOp::Reject => "reject",
            StoreOp::Answer => "answer",
            StoreOp::Revoke => "revoke",
        }
    }

    fn parse(s: &str) -> Option<StoreOp> {
        Some(match s {
            "approve" => StoreOp::Approve,
            "approve_for_session" => StoreOp::ApproveForSession,
            "reject" => StoreOp::Reject,
            "answer" => StoreOp::Answer,
            "revoke" => StoreOp::Revoke,
            _ => return None,
        })
    }
}

/// A request as stored, stamped by the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRequest {
    pub id: i64,
    pub session_id: String,
    pub op: StoreOp,
    /// A proposal id (or prefix) for approve/reject, a fingerprint for
    /// revoke, empty for answer.
    pub subject: String,
    /// The reason (for an answer: the answer's text).
    pub reason: String,
    /// The role PostgreSQL authenticated (`session_user`).
    pub operator: String,
    /// Every role the operator was a member of when asking.
    pub roles: Vec<String>,
}

impl StoredRequest {
    /// The policy roles the operator held: `<prefix>R` membership means
    /// policy role `R`.
    pub fn policy_roles(&self, prefix: &str) -> Vec<String> {
        policy_roles(&self.roles, prefix)
    }
}

/// The policy roles among PostgreSQL `roles`: those named `<prefix>R`
/// give `R` (the prefix itself is never a role).
pub fn policy_roles(roles: &[String], prefix: &str) -> Vec<String> {
    let mut out: Vec<String> = roles
        .iter()
        .filter_map(|r| r.strip_prefix(prefix))
        .filter(|r| !r.is_empty() && *r != "operator")
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out
}

impl Store {
    /// Inserts a request for `session` as the connected role; the
    /// database stamps who asked and with which roles. Returns its id.
    pub async fn request(
        &self,
        session: &str,
        op: StoreOp,
        subject: &str,
        reason: &str,
    ) -> Result<i64, StoreError> {
        sqlx::query_scalar(
            "INSERT INTO ward.requests (session_id, op, subject, reason, operator, roles, requested_at)
             VALUES ($1, $2, $3, $4, '', '{}', now()) RETURNING id",
        )
        .bind(session)
        .bind(op.name())
        .bind(subject)
        .bind(reason)
        .fetch_one(self.pool())
        .await
        .map_err(|e| self.error(e))
    }

    /// The session's requests no one has answered yet, oldest first.
    pub async fn unanswered(&self, session: &str) -> Result<Vec<StoredRequest>, StoreError> {
        let rows = sqlx::query(
            "SELECT q.id, q.session_id, q.op, q.subject, q.reason, q.operator::text, q.roles
               FROM ward.requests q
              WHERE q.session_id = $1
                AND NOT EXISTS (SELECT 1 FROM ward.answers a WHERE a.request_id = q.id)
              ORDER BY q.id",
        )
        .bind(session)
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.error(e))?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(StoredRequest {
                    id: r.get(0),
                    session_id: r.get(1),
                    op: StoreOp::parse(r.get::<&str, _>(2))?,
                    subject: r.get(3),
                    reason: r.get(4),
                    operator: r.get(5),
                    roles: r.get(6),
                })
            })
            .collect())
    }

    /// Answers request `id` (only the session's owner may; once).
    pub async fn answer(&self, id: i64, answer: &Answer) -> Result<(), StoreError> {
        let value = serde_json::to_value(answer).map_err(|e| StoreError::Log {
            session: String::new(),
            message: e.to_string(),
        })?;
        sqlx::query(
            "INSERT INTO ward.answers (request_id, answer, answered_by, answered_at)
             VALUES ($1, $2, '', now()) ON CONFLICT (request_id) DO NOTHING",
        )
        .bind(id)
        .bind(value)
        .execute(self.pool())
        .await
        .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// The session's answer to request `id`, if it has answered.
    pub async fn answer_of(&self, id: i64) -> Result<Option<Answer>, StoreError> {
        let v: Option<serde_json::Value> =
            sqlx::query_scalar("SELECT answer FROM ward.answers WHERE request_id = $1")
                .bind(id)
                .fetch_optional(self.pool())
                .await
                .map_err(|e| self.error(e))?;
        Ok(v.and_then(|v| serde_json::from_value(v).ok()))
    }

    /// Waits up to `timeout` for the answer to request `id`: woken by
    /// `NOTIFY ward_answers`, and polled every second as well, since a
    /// notification sent while the listener reconnects is lost.
    pub async fn wait_answer(
        &self,
        id: i64,
        timeout: Duration,
    ) -> Result<Option<Answer>, StoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut listener = match PgListener::connect_with(self.pool()).await {
            Ok(mut l) => match l.listen("ward_answers").await {
                Ok(()) => Some(l),
                Err(_) => None,
            },
            Err(_) => None,
        };
        let wanted = id.to_string();
        loop {
            // Checked after LISTEN: an answer given before it is seen here.
            if let Some(a) = self.answer_of(id).await? {
                return Ok(Some(a));
            }
            let poll = (tokio::time::Instant::now() + Duration::from_secs(1)).min(deadline);
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            match listener.as_mut() {
                Some(l) => loop {
                    tokio::select! {
                        n = l.try_recv() => match n {
                            Ok(Some(n)) if n.payload() != wanted => continue,
                            Ok(_) => break,
                            Err(_) => { listener = None; break; }
                        },
                        () = tokio::time::sleep_until(poll) => break,
                    }
                },
                None => tokio::time::sleep_until(poll).await,
            }
        }
    }

    /// The policy roles the connected role holds: its PostgreSQL role
    /// memberships named `<prefix>R`.
    pub async fn my_roles(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let roles: Vec<String> = sqlx::query_scalar(
            "SELECT r.rolname::text FROM pg_catalog.pg_roles r
              WHERE pg_catalog.pg_has_role(session_user, r.oid, 'MEMBER') ORDER BY 1",
        )
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.error(e))?;
        Ok(policy_roles(&roles, prefix))
    }

    /// Starts a task that wakes `wake` whenever a request for `session`
    /// is stored (`NOTIFY ward_requests`), and after every (re)connect,
    /// since notifications sent while it was disconnected are lost. The
    /// task ends when the returned guard is dropped.
    pub fn watch_requests(&self, session: &str, wake: std::sync::Arc<Notify>) -> Watch {
        Watch(tokio::spawn(watch(
            self.clone(),
            "ward_requests",
            session.to_string(),
            wake,
        )))
    }

    /// Like [`Store::watch_requests`], for new events of `session`
    /// (`NOTIFY ward_events`): a viewer on another host refreshes.
    pub fn watch_events(&self, session: &str, wake: std::sync::Arc<Notify>) -> Watch {
        Watch(tokio::spawn(watch(
            self.clone(),
            "ward_events",
            session.to_string(),
            wake,
        )))
    }
}

/// A running LISTEN task; stopped when dropped.
#[derive(Debug)]
pub struct Watch(tokio::task::JoinHandle<()>);

impl Drop for Watch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn watch(store: Store, channel: &'static str, session: String, wake: std::sync::Arc<Notify>) {
    loop {
        let listener = match PgListener::connect_with(store.pool()).await {
            Ok(mut l) => l.listen(channel).await.map(|()| l).ok(),
            Err(_) => None,
        };
        let Some(mut l) = listener else {
            tokio::time::sleep(Duration::from_secs(2)).await;
            continue;
        };
        // Whatever was sent before LISTEN took effect is read by the
        // waiter's own query.
        wake.notify_one();
        loop {
            match l.try_recv().await {
                Ok(Some(n)) if n.payload() == session => wake.notify_one(),
                Ok(Some(_)) => {}
                Ok(None) => wake.notify_one(),
                Err(_) => break,
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_role_is_membership_of_the_prefixed_postgres_role_only() {
        let roles: Vec<String> = [
            "bob",
            "pg_monitor",
            "ward_dba",
            "ward_operator",
            "ward_",
            "dba",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(policy_roles(&roles, "ward_"), vec!["dba".to_string()]);
        assert_eq!(policy_roles(&roles, "team_"), Vec::<String>::new());
    }
}
