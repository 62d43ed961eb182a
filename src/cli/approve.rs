//! `ward approve` / `ward reject`: a second operator's decision on a
//! proposal of a live session, picked up by the session within a second.
//! The session itself records it; the same operator never counts twice,
//! and an approval from an operator without a role the verdict needs is
//! refused there (this command waits a moment to say which).

use ward::audit;
use ward::config::Config;
use ward::session::events::ProposalId;
use ward::session::runner::{OpRequest, RequestOp, submit_request};
use ward::session::{SessionState, Status};

use super::{EXIT_FINDINGS, EXIT_OK, EXIT_USAGE};

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

pub fn run(config: &Config, args: &Args, approve: bool) -> u8 {
    let fail = |m: String| {
        errln!("error: {m}");
        EXIT_USAGE
    };
    if args.reason.trim().is_empty() {
        return fail("a reason is required (--reason TEXT)".into());
    }
    let log = match super::audit::find(config, &args.session) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let (events, _) = match audit::read_events(&log) {
        Ok(r) => r,
        Err(e) => return fail(e.to_string()),
    };
    let state = SessionState::from_events(&events);
    if state.sealed {
        return fail(format!(
            "session {} has ended ({}); nothing is waiting",
            state.session_id,
            state.outcome.map_or("unsealed", |o| o.words())
        ));
    }
    if args.proposal.len() < 8 {
        return fail("give at least 8 characters of the proposal id".into());
    }
    let matching: Vec<_> = state
        .proposals
        .iter()
        .filter(|p| p.id.is_named_by(&args.proposal))
        .collect();
    let [p] = matching.as_slice() else {
        return fail(format!(
            "no single proposal `{}` in session {}",
            args.proposal, state.session_id
        ));
    };
    if p.status != Status::AwaitingApproval {
        return fail(format!(
            "proposal {} is not waiting for approval (it is {})",
            p.id.short(),
            p.status.words()
        ));
    }
    let operator = audit::operator();
    if approve && p.approvals.iter().any(|(o, _)| *o == operator) {
        return fail(format!(
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
    let dir = log.with_extension("ops");
    match submit_request(&dir, &req) {
        Ok(_) if approve => settled(&log, &p.id, &operator, &state.session_id),
        Ok(_) => {
            errln!(
                "rejection by {operator} sent to session {}; it is recorded when the session picks it up (within a second)",
                state.session_id
            );
            EXIT_OK
        }
        Err(e) => fail(format!(
            "cannot write the request in {}: {e}",
            dir.display()
        )),
    }
}

/// Waits (a few seconds at most) for the session to record the approval or
/// refuse it, and says which: a refused approval (a role the verdict needs
/// that `operator` does not hold) exits 1 with the session's reason.
fn settled(log: &std::path::Path, proposal: &ProposalId, operator: &str, session: &str) -> u8 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let events = audit::read_events(log).map(|(e, _)| e).unwrap_or_default();
        let mine = |kind: &str| {
            events.iter().rev().find(|e| {
                e.kind == kind
                    && e.data.get("proposal").and_then(|v| v.as_str()) == Some(proposal.as_str())
                    && e.data.get("operator").and_then(|v| v.as_str()) == Some(operator)
            })
        };
        if let Some(e) = mine("approval_refused") {
            errln!(
                "error: session {session} refused the approval by {operator}: {}",
                e.data.get("reason").and_then(|v| v.as_str()).unwrap_or("")
            );
            return EXIT_FINDINGS;
        }
        if mine("approved").is_some() {
            errln!("approval by {operator} recorded in session {session}");
            return EXIT_OK;
        }
        if std::time::Instant::now() >= deadline {
            errln!(
                "approval by {operator} sent to session {session}; it is recorded when the session picks it up (within a second)"
            );
            return EXIT_OK;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
