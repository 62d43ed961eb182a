//! `ward approve` / `ward reject`: a second operator's decision on a
//! proposal of a live session, picked up by the session within a second.
//! The session itself records it; the same operator never counts twice,
//! and an approval from an operator without a role the verdict needs is
//! refused there. The session answers every request it takes; this command
//! waits a moment for the answer and says it: recorded, or refused and why
//! (a second approval that lost a race to the first is refused, not lost).

use super::exit::{Exit, usage};
use ward::audit;
use ward::config::Config;
use ward::session::inbox::{Answer, Inbox, OpRequest, RequestOp};
use ward::session::{SessionState, Status};

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
}

pub fn run(config: &Config, args: &Args, approve: bool) -> Exit {
    if args.reason.trim().is_empty() {
        return usage("a reason is required (--reason TEXT)");
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
    if state.sealed {
        return usage(format!(
            "session {} has ended ({}); nothing is waiting",
            state.session_id,
            state.outcome.map_or("unsealed", |o| o.words())
        ));
    }
    if args.proposal.len() < 8 {
        return usage("give at least 8 characters of the proposal id");
    }
    let matching: Vec<_> = state
        .proposals
        .iter()
        .filter(|p| p.id.is_named_by(&args.proposal))
        .collect();
    let [p] = matching.as_slice() else {
        return usage(format!(
            "no single proposal `{}` in session {}",
            args.proposal, state.session_id
        ));
    };
    if p.status != Status::AwaitingApproval {
        return usage(format!(
            "proposal {} is not waiting for approval (it is {})",
            p.id.short(),
            p.status.words()
        ));
    }
    let operator = audit::operator();
    if approve && p.approvals.iter().any(|(o, _)| *o == operator) {
        return usage(format!(
            "{operator} already approved this proposal; a second approval must come from another operator"
        ));
    }
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
