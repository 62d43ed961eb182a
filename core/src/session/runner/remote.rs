//! The running session's side of the team store: who the operator at
//! this terminal is (the role PostgreSQL authenticated), and requests
//! from other hosts (approvals, rejections, standing approvals,
//! revocations, answers to the agent's questions), taken while the
//! session waits, woken by `LISTEN ward_requests` and polled as well
//! (a notification sent while the listener reconnects is lost).
//!
//! Identity with a store: an operator is the role the store
//! authenticated, and their policy roles are their PostgreSQL role
//! memberships (`<role_prefix>R`), never the roster's. A name that the
//! store did not authenticate holds no role. Nothing here decides whether
//! an approval counts: `gate::admit` does, on the roles gathered here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::journal::events::*;
use crate::session::inbox::Answer;
use crate::store::requests::{StoreOp, StoredRequest, Watch};

use super::{Approval, Gating, Op, RunError, Runner, StepEnd};

/// How often the store is asked for requests when no notification came.
pub(super) const STORE_POLL: Duration = Duration::from_secs(2);

/// How long the session waits for its mirror before it waits for, or
/// answers, other hosts.
const MIRROR_NOW_WAIT: Duration = Duration::from_secs(1);

/// The store's side of a running session.
pub(super) struct Remote {
    /// Operators the store authenticated, and the policy roles their
    /// PostgreSQL role memberships give.
    pub(super) authenticated: BTreeMap<String, Vec<String>>,
    /// Why an operator's roles could not be checked (the store was
    /// unreachable): said when their approval does not count.
    pub(super) unverified: BTreeMap<String, String>,
    /// The role the store authenticated for this terminal.
    pub(super) whoami: Option<String>,
    /// Woken by a notification naming this session.
    pub(super) wake: Arc<Notify>,
    watch: Option<Watch>,
    /// When the store is asked next without a notification.
    pub(super) next_poll: tokio::time::Instant,
}

impl Default for Remote {
    fn default() -> Remote {
        Remote {
            authenticated: BTreeMap::new(),
            unverified: BTreeMap::new(),
            whoami: None,
            wake: Arc::new(Notify::new()),
            watch: None,
            next_poll: tokio::time::Instant::now(),
        }
    }
}

impl Runner {
    /// With a store: the session's operator becomes the role the store
    /// authenticates (with the policy roles its memberships give), and
    /// requests for this session are listened for. A store that cannot
    /// be reached leaves the claimed name, holding no role.
    pub(super) async fn store_start(&mut self) {
        let Some(link) = self.cfg.store.clone() else {
            return;
        };
        match link.store.whoami().await {
            Ok(me) => {
                match link.store.my_roles(&link.role_prefix).await {
                    Ok(roles) => {
                        self.remote.authenticated.insert(me.clone(), roles);
                    }
                    Err(e) => {
                        self.remote.authenticated.insert(me.clone(), Vec::new());
                        self.remote.unverified.insert(me.clone(), e.to_string());
                    }
                }
                self.cfg.operator = me.clone();
                self.remote.whoami = Some(me);
            }
            Err(e) => {
                self.remote.unverified.insert(
                    self.cfg.operator.clone(),
                    format!(
                        "the team store did not authenticate `{}` when the session started ({e}), so it holds no role",
                        self.cfg.operator
                    ),
                );
            }
        }
        self.remote.watch = Some(
            link.store
                .watch_requests(&self.cfg.session_id, self.remote.wake.clone()),
        );
    }

    /// Whether `operator` is the role the store authenticated: `store`
    /// for the `approved` event.
    pub(super) fn authenticated_by(&self, operator: &str) -> Option<String> {
        (self.cfg.store.is_some() && self.remote.authenticated.contains_key(operator))
            .then(|| "store".to_string())
    }

    /// The policy roles of `operator` as the store authenticated them.
    pub(super) fn store_roles_of(&self, operator: &str) -> Vec<String> {
        self.remote
            .authenticated
            .get(operator)
            .cloned()
            .unwrap_or_default()
    }

    /// Waits (up to [`MIRROR_NOW_WAIT`]) for the session's mirror to hold
    /// every event so far, so other hosts see the waiting proposal and the
    /// decisions on it before the session waits or answers. A store that
    /// cannot be reached is caught up later by the mirror.
    pub(super) async fn mirror_now(&mut self) {
        // The mirror task is the store's only writer for this session: a
        // second writer would race it past the store's chain check.
        if let Some(m) = &self.mirror {
            m.wait_caught_up(MIRROR_NOW_WAIT).await;
        }
    }

    /// Resolves when the store should be asked for requests: a
    /// notification named this session, or the poll is due. Never
    /// without a store.
    pub(super) async fn store_due(wake: Arc<Notify>, at: tokio::time::Instant, on: bool) {
        if !on {
            return std::future::pending().await;
        }
        tokio::select! {
            () = wake.notified() => {},
            () = tokio::time::sleep_until(at) => {},
        }
    }

    /// The session's unanswered store requests (none when the store
    /// cannot be reached: asked again at the next poll).
    async fn store_requests(&mut self) -> Vec<StoredRequest> {
        self.remote.next_poll = tokio::time::Instant::now() + STORE_POLL;
        let Some(link) = self.cfg.store.clone() else {
            return Vec::new();
        };
        let reqs = link
            .store
            .unanswered(&self.cfg.session_id)
            .await
            .unwrap_or_default();
        // From the answer, not the question: a store that is down takes
        // seconds to say so, and the next poll must not be due at once
        // (it would starve the file inbox and the store's health notices).
        self.remote.next_poll = tokio::time::Instant::now() + STORE_POLL;
        for r in &reqs {
            self.remote
                .authenticated
                .insert(r.operator.clone(), r.policy_roles(&link.role_prefix));
            self.remote.unverified.remove(&r.operator);
        }
        reqs
    }

    /// Tells the operator behind a store request what became of it, after
    /// the events it caused are in the store.
    async fn store_answer(&mut self, id: i64, answer: &Answer) {
        self.mirror_now().await;
        if let Some(link) = self.cfg.store.clone() {
            let _ = link.store.answer(id, answer).await;
        }
    }

    /// Applies the store's requests while `pid` waits for approval and
    /// answers each one. `Some` ends the wait.
    pub(super) async fn take_store_requests(
        &mut self,
        pid: &ProposalId,
        g: &Gating,
    ) -> Result<Option<Approval>, RunError> {
        let mut ended = None;
        for req in self.store_requests().await {
            let answer = if ended.is_some()
                || self.admission(pid, g, None).admit == crate::gate::Admit::Run
            {
                Answer::Refused {
                    reason: format!("proposal {} no longer waits for approval", pid.short()),
                }
            } else {
                let (end, answer) = self.apply_store_request(pid, g, &req)?;
                ended = end;
                answer
            };
            self.store_answer(req.id, &answer).await;
        }
        Ok(ended)
    }

    fn apply_store_request(
        &mut self,
        pid: &ProposalId,
        g: &Gating,
        req: &StoredRequest,
    ) -> Result<(Option<Approval>, Answer), RunError> {
        let op = match req.op {
            StoreOp::Approve | StoreOp::ApproveForSession | StoreOp::Reject => {
                if let Some(reason) = self.not_waiting(pid, &req.subject) {
                    return Ok((None, Answer::Refused { reason }));
                }
                if req.op == StoreOp::Reject {
                    Op::Reject {
                        proposal: pid.clone(),
                        operator: req.operator.clone(),
                        reason: req.reason.clone(),
                    }
                } else {
                    Op::Approve {
                        proposal: pid.clone(),
                        operator: req.operator.clone(),
                        reason: req.reason.clone(),
                        for_session: req.op == StoreOp::ApproveForSession,
                    }
                }
            }
            StoreOp::Revoke => Op::Revoke {
                fingerprint: req.subject.clone(),
                operator: req.operator.clone(),
            },
            StoreOp::Answer => Op::Answer {
                operator: req.operator.clone(),
                text: req.reason.clone(),
            },
        };
        self.handle_op(pid, g, op)
    }

    /// While the agent's question is open: a store request answering it
    /// is recorded (the first one); anything else is refused and why.
    pub(super) async fn take_store_answer(&mut self) -> Result<Option<StepEnd>, RunError> {
        let mut ended = None;
        for req in self.store_requests().await {
            let answer = match req.op {
                _ if ended.is_some() => Answer::Refused {
                    reason: "the agent's question was answered already".into(),
                },
                StoreOp::Answer if !req.reason.trim().is_empty() => {
                    self.record(EventData::Answered(Answered {
                        operator: req.operator.clone(),
                        text: req.reason.clone(),
                    }))?;
                    ended = Some(StepEnd::Continue);
                    Answer::Recorded
                }
                StoreOp::Answer => Answer::Refused {
                    reason: "an answer needs a text".into(),
                },
                _ => Answer::Refused {
                    reason: "no proposal waits for approval: the agent asked a question; answer it (ward answer)".into(),
                },
            };
            self.store_answer(req.id, &answer).await;
        }
        Ok(ended)
    }

    /// Answers the requests no one will read now that the session ends.
    pub(super) async fn store_close(&mut self, outcome: Outcome) {
        if self.cfg.store.is_none() {
            return;
        }
        let reason = format!(
            "session ended ({}) before it read the request",
            outcome.words()
        );
        for req in self.store_requests().await {
            self.store_answer(
                req.id,
                &Answer::Refused {
                    reason: reason.clone(),
                },
            )
            .await;
        }
        self.mirror_now().await;
        self.remote.watch = None;
    }

    /// An op from this terminal's front end: with a store, it is the
    /// authenticated operator's (whatever name the front end sent), and
    /// an approval's roles are read from the store now. A store that
    /// cannot be asked leaves no role (the approval counts only where no
    /// role is needed, and the refusal says why).
    pub(super) async fn authenticate_op(&mut self, op: Op) -> Op {
        let Some(link) = self.cfg.store.clone() else {
            return op;
        };
        let Some(me) = self.remote.whoami.clone() else {
            return op;
        };
        let op = match op {
            Op::Approve {
                proposal,
                reason,
                for_session,
                ..
            } => Op::Approve {
                proposal,
                operator: me.clone(),
                reason,
                for_session,
            },
            Op::Reject {
                proposal, reason, ..
            } => Op::Reject {
                proposal,
                operator: me.clone(),
                reason,
            },
            Op::Revoke { fingerprint, .. } => Op::Revoke {
                fingerprint,
                operator: me.clone(),
            },
            Op::Answer { text, .. } => Op::Answer {
                operator: me.clone(),
                text,
            },
            Op::Follow { .. } => Op::Follow {
                operator: me.clone(),
            },
            other => other,
        };
        if matches!(op, Op::Approve { .. }) {
            match link.store.my_roles(&link.role_prefix).await {
                Ok(roles) => {
                    self.remote.authenticated.insert(me.clone(), roles);
                    self.remote.unverified.remove(&me);
                }
                Err(e) => {
                    self.remote.authenticated.insert(me.clone(), Vec::new());
                    self.remote.unverified.insert(
                        me,
                        format!("the team store could not be asked for the roles ({e})"),
                    );
                }
            }
        }
        op
    }
}
