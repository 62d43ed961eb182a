//! The team's view of the store: a session folded from its stored
//! events (for `ward approve` and the TUI on a host without the log), and
//! the sessions live now (the home screen's list, the warning when two
//! sessions work on the same target).
//!
//! This module reads; it never writes and never decides.

use chrono::{DateTime, Utc};

use super::{Store, StoreError, StoredSession};
use crate::audit::Event;
use crate::journal::state::{SessionState, Status};

/// A session is live when it is not sealed and stored an event within
/// this many minutes.
pub const LIVE_MINUTES: i64 = 30;

/// A live session of the team and what it waits for.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveSession {
    pub session: StoredSession,
    /// The proposal awaiting approval, if any: its short id, the step (or
    /// `adhoc`), approvals so far and what is still missing.
    pub waiting: Option<Waiting>,
}

/// A proposal that waits for approvals.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub proposal: String,
    pub step: String,
    /// Distinct operators who approved so far.
    pub approvals: Vec<String>,
    pub approvers_needed: u32,
    /// Policy roles no approval has brought yet.
    pub roles_missing: Vec<String>,
}

impl Waiting {
    /// "waiting for 1 more approval (role dba)", as the list shows it.
    pub fn words(&self) -> String {
        let more = (self.approvers_needed as usize).saturating_sub(self.approvals.len());
        let more = more.max(usize::from(!self.roles_missing.is_empty()));
        let mut s = format!("waiting for {more} more approval(s)");
        if !self.roles_missing.is_empty() {
            s.push_str(&format!(" (role {})", self.roles_missing.join(", ")));
        }
        s
    }
}

impl Store {
    /// A session's stored events, verified as a log is (chain, exact
    /// bytes, invariants): a stored log that does not verify is an error
    /// naming where.
    pub async fn session_events(&self, session: &str) -> Result<Vec<Event>, StoreError> {
        let log = super::check::rebuild(&self.events(session).await?);
        if let crate::audit::Verification::Tampered { seq, reason } = log.verdict {
            return Err(StoreError::Log {
                session: session.to_string(),
                message: format!("the stored log does not verify at seq {seq}: {reason}"),
            });
        }
        Ok(log.events)
    }

    /// A session folded from its stored events.
    pub async fn session_state(&self, session: &str) -> Result<SessionState, StoreError> {
        Ok(SessionState::from_events(
            &self.session_events(session).await?,
        ))
    }

    /// The stored session `prefix` names (a unique prefix of its id).
    pub async fn find_session(&self, prefix: &str) -> Result<Option<String>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT session_id FROM ward.sessions WHERE starts_with(session_id, $1) ORDER BY 1 LIMIT 2",
        )
        .bind(prefix)
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.error(e))?;
        Ok(match ids.as_slice() {
            [one] => Some(one.clone()),
            _ => ids.iter().find(|i| *i == prefix).cloned(),
        })
    }

    /// The team's live sessions at `now` (not sealed, an event within
    /// [`LIVE_MINUTES`]), newest first, each with what it waits for.
    pub async fn live_sessions(&self, now: DateTime<Utc>) -> Result<Vec<LiveSession>, StoreError> {
        let mut out = Vec::new();
        for s in self.sessions().await? {
            if !is_live(&s, now) {
                continue;
            }
            // A session whose stored events do not fold is listed without
            // what it waits for.
            let waiting = self
                .session_state(&s.session_id)
                .await
                .ok()
                .and_then(|st| waiting_of(&st));
            out.push(LiveSession {
                session: s,
                waiting,
            });
        }
        Ok(out)
    }
}

/// Live: not sealed, and an event stored within [`LIVE_MINUTES`] of `now`.
pub fn is_live(s: &StoredSession, now: DateTime<Utc>) -> bool {
    !s.ended()
        && s.last_at.is_some_and(|t| {
            now.signed_duration_since(t) <= chrono::Duration::minutes(LIVE_MINUTES)
        })
}

/// The proposal of `state` that awaits approval, and what it still needs.
pub fn waiting_of(state: &SessionState) -> Option<Waiting> {
    let p = state
        .proposals
        .iter()
        .rev()
        .find(|p| p.status == Status::AwaitingApproval)?;
    let mut approvals: Vec<String> = p.approvals.iter().map(|(o, _)| o.clone()).collect();
    approvals.sort();
    approvals.dedup();
    Some(Waiting {
        proposal: p.id.short().to_string(),
        step: p.step_id.clone().unwrap_or_else(|| "adhoc".into()),
        approvals,
        approvers_needed: p.approvers_needed,
        roles_missing: p
            .roles_required
            .iter()
            .filter(|r| !p.approved_roles.contains(r))
            .cloned()
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn stored(last_kind: &str, last_at: DateTime<Utc>) -> StoredSession {
        StoredSession {
            session_id: "s".into(),
            owner: "alice".into(),
            host: "h".into(),
            runbook: "r".into(),
            target: "orders".into(),
            environment: "prod".into(),
            started_at: last_at,
            events: 3,
            last_kind: Some(last_kind.into()),
            head: None,
            last_at: Some(last_at),
        }
    }

    #[test]
    fn a_session_is_live_until_it_is_sealed_or_quiet_for_longer_than_the_live_window() {
        let now = Utc
            .with_ymd_and_hms(2026, 11, 27, 12, 0, 0)
            .single()
            .unwrap();
        let quiet = |m: i64| now - chrono::Duration::minutes(m);
        assert!(is_live(&stored("gated", quiet(1)), now));
        assert!(is_live(&stored("gated", quiet(LIVE_MINUTES)), now));
        assert!(!is_live(&stored("gated", quiet(LIVE_MINUTES + 1)), now));
        assert!(!is_live(&stored("session_ended", quiet(1)), now));
    }

    #[test]
    fn what_a_session_waits_for_names_the_missing_approvals_and_roles() {
        let w = Waiting {
            proposal: "990883be16bc".into(),
            step: "delete_stale".into(),
            approvals: vec!["carol".into()],
            approvers_needed: 2,
            roles_missing: vec!["dba".into()],
        };
        assert_eq!(w.words(), "waiting for 1 more approval(s) (role dba)");
        // Enough approvers, a role still missing: one more, from its holder.
        let w = Waiting {
            approvals: vec!["carol".into(), "alice".into()],
            ..w
        };
        assert_eq!(w.words(), "waiting for 1 more approval(s) (role dba)");
    }
}
