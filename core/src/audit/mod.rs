//! The session log, which is also the audit log.
//!
//! A session is an append-only, hash-chained JSON Lines file
//! (`.ward/sessions/<id>.jsonl`). Every event is written and fsynced before the
//! action it announces, so the log can be replayed and verified afterwards.
//! `verify` checks the chain *and* the safety invariants of the session
//! protocol (nothing executes without a gate, after a deny, or without the
//! approvals the gate asked for), so a correctly re-hashed log that tells an
//! unsafe story is still reported as tampered.
//!
//! This module must never rewrite history: the writer only appends, and the
//! one place it shortens a file (a torn last line after a crash) first copies
//! the original aside.
//!
//! What the chain cannot tell by itself: a sealed log cut exactly at a line
//! boundary looks the same as a session that crashed there, so it is
//! reported as `Unsealed`, not `Tampered`; and an attacker who re-hashes the
//! whole file leaves a chain that verifies. Anchoring the chain elsewhere is
//! the cure: with a team store configured (`crate::store`), every event's
//! hash is also held by an append-only database, and `ward audit verify`
//! compares the two (`store::check`), so a cut or re-hashed local log is
//! caught there, and an edited store row by this same verifier run on the
//! store's copy.

mod canonical;
mod event;
mod invariants;
mod logs;
mod provenance;
mod verify;
mod writer;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use canonical::canonical_json;
pub use event::Event;
pub use logs::session_logs;
pub use provenance::{operator, provenance};
pub use verify::{Verification, read_events, read_events_bytes, verify};
pub use writer::AuditWriter;

/// The `prev` of the first event: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The log format version written in every event's `v`.
pub const FORMAT_VERSION: u32 = 1;

/// What went wrong while reading or writing a session log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: already exists; a session log is never overwritten")]
    Exists { path: PathBuf },
    #[error("{path}: another process is writing this session log")]
    Locked { path: PathBuf },
    #[error("{path}: tampered at seq {seq}: {reason}")]
    Tampered {
        path: PathBuf,
        seq: u64,
        reason: String,
    },
    #[error("{path}: the session is sealed by session_ended; nothing may be appended")]
    Sealed { path: PathBuf },
    /// The event would break a safety invariant; nothing was written, and the
    /// action it would have announced must not happen.
    #[error("{path}: refusing to append {kind} at seq {seq}: {reason}")]
    Refused {
        path: PathBuf,
        seq: u64,
        kind: String,
        reason: String,
    },
    #[error("{path}: an earlier write failed; reopen the log with open_existing to continue")]
    Poisoned { path: PathBuf },
}

impl AuditError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> AuditError {
        AuditError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
