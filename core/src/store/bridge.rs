//! A session on another host, seen through the store: its stored events
//! come in as they are stored (woken by `LISTEN ward_events`, polled as
//! well), and what the operator here decides goes out as store requests,
//! stamped by the database with the role it authenticated. The session
//! itself decides what each request is worth and answers it; the answer
//! comes back here.
//!
//! This lets a front end show a remote session exactly as a local one (a
//! stream of events in, ops out). It never writes events and never
//! decides anything.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use super::requests::StoreOp;
use super::{Store, StoreError};
use crate::audit::Event;
use crate::session::inbox::Answer;
use crate::session::runner::Op;

/// How often the store is read when no notification came.
const POLL: Duration = Duration::from_secs(2);

/// What became of a request sent from here: what it was, and the
/// session's answer (`None`: not answered in time).
#[derive(Debug, Clone, PartialEq)]
pub struct Answered {
    pub what: String,
    pub answer: Option<Answer>,
}

/// Follows `session` in the store: sends each stored event to `events`
/// (in order, each once) until the session is sealed or `events` closes;
/// turns each op from `ops` into a store request and sends the session's
/// answer to `answers`. Ops that only the session's own terminal may give
/// (cancel, continuing into the next runbook) are answered as refused.
pub async fn follow(
    store: Store,
    session: String,
    events: mpsc::UnboundedSender<Event>,
    mut ops: mpsc::UnboundedReceiver<Op>,
    answers: mpsc::UnboundedSender<Answered>,
) -> Result<(), StoreError> {
    let wake = Arc::new(Notify::new());
    let _watch = store.watch_events(&session, wake.clone());
    let mut sent = 0usize;
    let mut ops_open = true;
    loop {
        let stored = store.session_events(&session).await?;
        let mut sealed = false;
        for ev in stored.into_iter().skip(sent) {
            sealed |= ev.kind == "session_ended";
            sent += 1;
            if events.send(ev).is_err() {
                return Ok(());
            }
        }
        if sealed {
            return Ok(());
        }
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(POLL) => {}
            op = ops.recv(), if ops_open => match op {
                // Leaving the view here leaves the session running there.
                Some(Op::Leave) => {}
                Some(op) => {
                    let store = store.clone();
                    let session = session.clone();
                    let answers = answers.clone();
                    tokio::spawn(async move {
                        let a = send(&store, &session, op).await;
                        let _ = answers.send(a);
                    });
                }
                None => ops_open = false,
            },
        }
    }
}

/// One op as a store request, and the session's answer to it.
async fn send(store: &Store, session: &str, op: Op) -> Answered {
    let (op, subject, reason, what) = match op {
        Op::Approve {
            proposal,
            reason,
            for_session,
            ..
        } => (
            if for_session {
                StoreOp::ApproveForSession
            } else {
                StoreOp::Approve
            },
            proposal.to_string(),
            reason,
            format!("approval of {}", proposal.short()),
        ),
        Op::Reject {
            proposal, reason, ..
        } => (
            StoreOp::Reject,
            proposal.to_string(),
            reason,
            format!("rejection of {}", proposal.short()),
        ),
        Op::Revoke { fingerprint, .. } => (
            StoreOp::Revoke,
            fingerprint,
            "revoked".to_string(),
            "revocation".to_string(),
        ),
        Op::Answer { text, .. } => (StoreOp::Answer, String::new(), text, "answer".to_string()),
        Op::Cancel | Op::Leave | Op::Follow { .. } => {
            return Answered {
                what: "that".into(),
                answer: Some(Answer::Refused {
                    reason: "only the session's own terminal can cancel it or continue it".into(),
                }),
            };
        }
    };
    let answer = match store.request(session, op, &subject, &reason).await {
        Ok(id) => match store.wait_answer(id, Duration::from_secs(30)).await {
            Ok(a) => a,
            Err(e) => Some(Answer::Refused {
                reason: format!("stored, but its answer could not be read: {e}"),
            }),
        },
        Err(e) => Some(Answer::Refused {
            reason: format!("not stored: {e}"),
        }),
    };
    Answered { what, answer }
}
