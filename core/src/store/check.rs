//! A session's local log held against the team store's copy: the store's
//! rows rebuilt into a log and verified like a local one, the two chains
//! compared event by event, and what the store lacks pushed (`ward store
//! sync`).
//!
//! The store anchors the chain outside the machine that wrote it: a local
//! log cut at a line boundary (which by itself reads as merely unsealed),
//! or edited and re-hashed (which by itself verifies), disagrees with the
//! store. This module never prints and never changes a local log.

use crate::audit::{Event, Verification, read_events_bytes};

use super::mirror::BATCH;
use super::{Store, StoreError, StoredEvent};

/// The store's copy of a session, rebuilt from its rows' lines and run
/// through the same verifier as a local log.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredLog {
    pub events: Vec<Event>,
    pub verdict: Verification,
}

/// Rebuilds a session's log from its stored rows and verifies it: the
/// chain, the exact bytes and the invariants. A row whose own columns
/// (seq, hash) disagree with its line is tampered too: the store's
/// idempotency check reads the columns.
pub fn rebuild(rows: &[StoredEvent]) -> StoredLog {
    let mut bytes = Vec::new();
    for r in rows {
        bytes.extend_from_slice(r.line.as_bytes());
        bytes.push(b'\n');
    }
    let (events, mut verdict) = match read_events_bytes(&bytes) {
        Ok(r) => r,
        Err(e) => (
            Vec::new(),
            Verification::Tampered {
                seq: 0,
                reason: format!("the stored lines cannot be read: {e}"),
            },
        ),
    };
    let columns_lie = rows.iter().enumerate().find(|(i, r)| {
        events
            .get(*i)
            .is_none_or(|e| e.seq != r.seq || e.hash != r.hash)
    });
    if let Some((i, r)) = columns_lie {
        let first_bad = match &verdict {
            Verification::Tampered { seq, .. } => Some(*seq),
            _ => None,
        };
        if first_bad.is_none_or(|s| s > i as u64) {
            verdict = Verification::Tampered {
                seq: i as u64,
                reason: format!(
                    "stored row {i} (seq {}, hash {}) does not match its line",
                    r.seq,
                    short(&r.hash)
                ),
            };
        }
    }
    StoredLog { events, verdict }
}

/// How a local log stands against the store's copy of it.
#[derive(Debug, Clone, PartialEq)]
pub enum Against {
    /// The store holds no event of this session.
    NotStored,
    /// Every event in both is the same, and the store holds all the local
    /// log's (`events` of them).
    Agrees { events: u64 },
    /// The store lacks the local log's last `missing` events (it was down,
    /// or the session is still running); what both hold agrees.
    StoreBehind { stored: u64, missing: u64 },
    /// The store holds `extra` events past the local log's end (`sealed`:
    /// up to a `session_ended`): the local log was cut.
    LocalCut {
        local: u64,
        extra: u64,
        sealed: bool,
    },
    /// The two differ from `seq` on; `store_intact` says whether the
    /// store's copy verifies by itself (then the local side was altered).
    Diverged {
        seq: u64,
        local: String,
        stored: String,
        store_intact: bool,
    },
}

impl Against {
    /// Whether this shows a log was altered (the local one, or the store's).
    pub fn is_tampering(&self) -> bool {
        matches!(self, Against::LocalCut { .. } | Against::Diverged { .. })
    }
}

/// Compares a local log's verified events with the store's copy.
pub fn compare(local: &[Event], stored: &StoredLog) -> Against {
    let theirs = &stored.events;
    if theirs.is_empty() {
        return Against::NotStored;
    }
    for (seq, (l, s)) in local.iter().zip(theirs).enumerate() {
        if l.hash != s.hash || l.canonical_line() != s.canonical_line() {
            return Against::Diverged {
                seq: seq as u64,
                local: l.hash.clone(),
                stored: s.hash.clone(),
                store_intact: !matches!(stored.verdict, Verification::Tampered { seq: t, .. } if t <= seq as u64),
            };
        }
    }
    let (l, s) = (local.len() as u64, theirs.len() as u64);
    if s > l {
        Against::LocalCut {
            local: l,
            extra: s - l,
            sealed: theirs.last().is_some_and(|e| e.kind == "session_ended"),
        }
    } else if s < l {
        Against::StoreBehind {
            stored: s,
            missing: l - s,
        }
    } else {
        Against::Agrees { events: l }
    }
}

/// What `ward store sync` did for one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    /// Events appended now.
    pub appended: u64,
    /// Events the store already held (with the same hash).
    pub already: u64,
}

/// Pushes what the store lacks of a local log's verified `events`, in
/// batches; refuses (changing nothing) when the store's copy diverges from
/// them or holds more.
pub async fn sync(store: &Store, session: &str, events: &[Event]) -> Result<Synced, StoreError> {
    let stored = rebuild(&store.events(session).await?);
    match compare(events, &stored) {
        Against::Diverged {
            seq, local, stored, ..
        } => {
            return Err(StoreError::Diverged {
                session: session.to_string(),
                seq,
                stored,
                local,
            });
        }
        Against::LocalCut { local, extra, .. } => {
            return Err(StoreError::Log {
                session: session.to_string(),
                message: format!(
                    "the store holds {extra} events past the local log's {local}: the local log was cut"
                ),
            });
        }
        Against::NotStored | Against::Agrees { .. } | Against::StoreBehind { .. } => {}
    }
    let already = stored.events.len().min(events.len());
    let mut appended = 0;
    for chunk in events[already..].chunks(BATCH) {
        appended += store.append(session, chunk).await?;
    }
    Ok(Synced {
        appended,
        already: already as u64,
    })
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::GENESIS;
    use serde_json::json;

    fn log(kinds: &[&str]) -> Vec<Event> {
        let mut out: Vec<Event> = Vec::new();
        for (seq, kind) in kinds.iter().enumerate() {
            let data = match *kind {
                "session_started" => json!({"session_id": "s"}),
                "session_ended" => json!({"outcome": "concluded", "unapproved": []}),
                _ => json!({}),
            };
            let mut ev = Event {
                v: crate::audit::FORMAT_VERSION,
                seq: seq as u64,
                ts: format!("2026-01-02T03:04:{:02}.000Z", seq),
                kind: kind.to_string(),
                data,
                prev: out
                    .last()
                    .map_or_else(|| GENESIS.to_string(), |e| e.hash.clone()),
                hash: String::new(),
            };
            ev.hash = ev.compute_hash();
            out.push(ev);
        }
        out
    }

    fn rows(events: &[Event]) -> Vec<StoredEvent> {
        events
            .iter()
            .map(|e| StoredEvent {
                seq: e.seq,
                hash: e.hash.clone(),
                line: e.canonical_line(),
                stored_by: "alice".into(),
                stored_at: chrono::DateTime::UNIX_EPOCH,
            })
            .collect()
    }

    const SEALED: &[&str] = &["session_started", "concluded", "session_ended"];

    #[test]
    fn a_local_log_cut_at_a_line_boundary_is_caught_by_the_sealed_store_copy() {
        let full = log(SEALED);
        let stored = rebuild(&rows(&full));
        assert_eq!(stored.verdict, Verification::Ok { events: 3 });
        assert_eq!(
            compare(&full[..2], &stored),
            Against::LocalCut {
                local: 2,
                extra: 1,
                sealed: true
            }
        );
        assert!(compare(&full[..2], &stored).is_tampering());
    }

    #[test]
    fn a_local_event_edited_and_rehashed_diverges_from_an_intact_store() {
        let full = log(SEALED);
        let stored = rebuild(&rows(&full));
        let mut forged = full.clone();
        forged[1].data = json!({"text": "nothing to see"});
        for i in 1..forged.len() {
            forged[i].prev = forged[i - 1].hash.clone();
            forged[i].hash = forged[i].compute_hash();
        }
        assert_eq!(
            compare(&forged, &stored),
            Against::Diverged {
                seq: 1,
                local: forged[1].hash.clone(),
                stored: full[1].hash.clone(),
                store_intact: true
            }
        );
    }

    #[test]
    fn a_store_row_whose_line_was_edited_fails_verification_at_that_seq() {
        let full = log(SEALED);
        let mut r = rows(&full);
        r[1].line = r[1].line.replace("concluded", "conclude_");
        let stored = rebuild(&r);
        assert!(
            matches!(stored.verdict, Verification::Tampered { seq: 1, .. }),
            "{:?}",
            stored.verdict
        );
        // A column that disagrees with its line is tampering too.
        let mut r = rows(&full);
        r[2].hash = "f".repeat(64);
        assert!(
            matches!(&rebuild(&r).verdict, Verification::Tampered { seq: 2, reason } if reason.contains("does not match its line")),
            "{:?}",
            rebuild(&r).verdict
        );
    }

    #[test]
    fn a_store_that_lags_is_behind_not_tampered_and_an_equal_one_agrees() {
        let full = log(SEALED);
        let stored = rebuild(&rows(&full[..1]));
        let behind = compare(&full, &stored);
        assert_eq!(
            behind,
            Against::StoreBehind {
                stored: 1,
                missing: 2
            }
        );
        assert!(!behind.is_tampering());
        assert_eq!(
            compare(&full, &rebuild(&rows(&full))),
            Against::Agrees { events: 3 }
        );
        assert_eq!(compare(&full, &rebuild(&[])), Against::NotStored);
    }
}
