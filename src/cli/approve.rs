//! `ward approve` / `ward reject`: a second operator's decision on a
//! proposal of a live session, picked up by the session within a second.
//! The session itself records it; the same operator never counts twice,
//! and an approval from an operator without a role the verdict needs is
//! refused there. The session answers every request it takes; this command
//! waits a moment for the answer and says it: recorded, or refused and why
//! (a second approval that lost a race to the first is refused, not lost).
//!
//! With a team store (`store:` in ward.yaml) the request goes through the
//! store, from any host: the session and its proposal are read from the
//! store's events, the request is a row the database stamps with the role
//! it authenticated (your identity) and your role memberships, and the
//! session's answer comes back through the store. Without one, the request
//! is a file beside the session's log, on the same host, and the identity
//! is `$WARD_OPERATOR` (or the OS user), a claim.

use super::exit::{Exit, usage};
use ward::audit;
use ward::config::Config;
use ward::session::inbox::{Answer, Inbox, OpRequest, RequestOp};
use ward::session::{SessionState, Status};
use ward::store::requests::StoreOp;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Session id (or a unique prefix).
    pub session: String,
    /// Proposal id: the `[id ...]` beside its `proposed` line in `ward audit
    /// show SESSION`, or in the `waiting for approval of ...` line of a
    /// headless run (any unique prefix of 8+ characters of it).
    pub proposal: String,
    /// Why (required; goes into the audit log).
    #[arg(long)]
    pub reason: String,
    /// Also approve the same statement on the same target for the rest of
    /// the session, where the policy allows (needs a team store; `ward
    /// approve` only).
    #[arg(long)]
    pub for_session: bool,
}

/// How long `ward approve` waits for the session's answer.
const ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

pub fn run(config: &Config, args: &Args, approve: bool) -> Exit {
    if args.reason.trim().is_empty() {
        return usage("a reason is required (--reason TEXT)");
    }
    if config.spec.store.is_some() {
        return through_store(config, args, approve);
    }
    if args.for_session {
        return usage(
            "--for-session needs a team store (`store:` in ward.yaml); at the session's terminal, approve with the standing-approval key instead",
        );
    }
    let log = match super::audit::find(config, &args.session) {
        Ok(p) => p,
        Err(e) => return usage(e),
    };
    let (events, _) = match audit::read_events(&log) {
        Ok(r) => r,
        Err(e) => return usage(e.to_string()),
    };
    let state = SessionState::from_events(&events);
    let operator = audit::operator();
    let p = match waiting(&state, &args.proposal, approve.then_some(operator.as_str())) {
        Ok(p) => p,
        Err(e) => return usage(e),
    };
    let req = OpRequest {
        op: if approve {
            RequestOp::Approve
        } else {
            RequestOp::Reject
        },
        proposal: p.id.to_string(),
        operator: operator.clone(),
        reason: args.reason.clone(),
    };
    let inbox = Inbox::new(log.with_extension("ops"));
    let what = if approve { "approval" } else { "rejection" };
    let ticket = match inbox.submit(&req) {
        Ok(t) => t,
        Err(e) => {
            return usage(format!(
                "cannot write the request in {}: {e}",
                inbox.dir().display()
            ));
        }
    };
    // The session answers every request it takes; a second approval that
    // lost a race is refused there and said so here, never dropped.
    match ticket.wait(std::time::Duration::from_secs(5)) {
        Some(Answer::Recorded) => {
            errln!(
                "{what} of {} by {operator} recorded in session {}",
                p.id.short(),
                state.session_id
            );
            Exit::Success
        }
        Some(Answer::Refused { reason }) => {
            errln!(
                "error: session {} refused the {what} of {} by {operator}: {reason}",
                state.session_id,
                p.id.short()
            );
            Exit::Failed
        }
        None => {
            errln!(
                "{what} of {} by {operator} sent to session {}; it has not answered yet (it reads requests while it waits for approval): `ward audit show {}` shows whether it was recorded",
                p.id.short(),
                state.session_id,
                state.session_id
            );
            Exit::Success
        }
    }
}

/// The proposal `named` of `state` that waits for approval, or why not
/// (the session ended, no such proposal, not waiting, `approver` already
/// approved it).
fn waiting<'a>(
    state: &'a SessionState,
    named: &str,
    approver: Option<&str>,
) -> Result<&'a ward::session::ProposalState, String> {
    if state.sealed {
        return Err(format!(
            "session {} has ended ({}); nothing is waiting",
            state.session_id,
            state.outcome.map_or("unsealed", |o| o.words())
        ));
    }
    if named.len() < 8 {
        return Err("give at least 8 characters of the proposal id".into());
    }
    let matching: Vec<_> = state
        .proposals
        .iter()
        .filter(|p| p.id.is_named_by(named))
        .collect();
    let [p] = matching.as_slice() else {
        return Err(format!(
            "no single proposal `{named}` in session {}",
            state.session_id
        ));
    };
    if p.status != Status::AwaitingApproval {
        return Err(format!(
            "proposal {} is not waiting for approval (it is {})",
            p.id.short(),
            p.status.words()
        ));
    }
    if let Some(operator) = approver
        && p.approvals.iter().any(|(o, _)| o == operator)
    {
        return Err(format!(
            "{operator} already approved this proposal; a second approval must come from another operator"
        ));
    }
    Ok(p)
}

/// `ward approve` / `ward reject` through the team store: the session is
/// read from the store's events, the request is stored as your own
/// PostgreSQL role, and the session's answer is awaited (LISTEN
/// ward_answers, and polled).
fn through_store(config: &Config, args: &Args, approve: bool) -> Exit {
    let runtime = match super::session::runtime() {
        Ok(r) => r,
        Err(e) => return usage(e),
    };
    let _tokio = runtime.enter();
    let store = match super::store::open(config) {
        Ok(s) => s,
        Err(e) => return usage(e),
    };
    let what = if approve { "approval" } else { "rejection" };
    runtime.block_on(async {
        let operator = match store.whoami().await {
            Ok(me) => me,
            Err(e) => return usage(e.to_string()),
        };
        let session = match store.find_session(&args.session).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                return usage(format!(
                    "the store {} has no single session `{}` (`ward audit list --store` lists them)",
                    store.url(),
                    args.session
                ));
            }
            Err(e) => return usage(e.to_string()),
        };
        let state = match store.session_state(&session).await {
            Ok(s) => s,
            Err(e) => return usage(e.to_string()),
        };
        let p = match waiting(&state, &args.proposal, approve.then_some(operator.as_str())) {
            Ok(p) => p,
            Err(e) => return usage(e),
        };
        let op = match (approve, args.for_session) {
            (true, false) => StoreOp::Approve,
            (true, true) => StoreOp::ApproveForSession,
            (false, _) => StoreOp::Reject,
        };
        let id = match store
            .request(&session, op, p.id.as_str(), &args.reason)
            .await
        {
            Ok(id) => id,
            Err(e) => return usage(format!("the {what} was not stored: {e}")),
        };
        match store.wait_answer(id, ANSWER_WAIT).await {
            Ok(Some(Answer::Recorded)) => {
                errln!(
                    "{what} of {} by {operator} (authenticated by the store) recorded in session {session}",
                    p.id.short()
                );
                Exit::Success
            }
            Ok(Some(Answer::Refused { reason })) => {
                errln!(
                    "error: session {session} refused the {what} of {} by {operator}: {reason}",
                    p.id.short()
                );
                Exit::Failed
            }
            Ok(None) | Err(_) => {
                errln!(
                    "{what} of {} by {operator} stored as request {id} for session {session}; it has not answered yet (it reads requests while it waits for approval): `ward audit show {session}` shows whether it was recorded",
                    p.id.short()
                );
                Exit::Success
            }
        }
    })
}
