//! `ward approve` / `ward reject`: a second operator's decision on a
//! proposal of a live session, picked up by the session within a second.
//! The session itself records it; the same operator never counts twice,
//! and an approval from an operator without a role the verdict needs is
//! refused there (this command waits a moment to say which).

use super::exit::{Exit, usage};
use ward::audit;
use ward::config::Config;
use ward::session::runner::{OpRequest, submit_request};
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
            state.outcome.unwrap_or_default()
        ));
    }
    if args.proposal.len() < 8 {
        return usage("give at least 8 characters of the proposal id");
    }
    let matching: Vec<_> = state
        .proposals
        .iter()
        .filter(|p| p.id.starts_with(&args.proposal))
        .collect();
    let [p] = matching.as_slice() else {
        return usage(format!(
            "no single proposal `{}` in session {}",
            args.proposal, state.session_id
        ));
    };
    if p.status != Status::AwaitingApproval {
        return usage(format!(
            "proposal {} is not waiting for approval (it is {:?})",
            super::audit::shown_id(&p.id),
            p.status
        ));
    }
    let operator = audit::operator();
    if approve && p.approvals.iter().any(|(o, _)| *o == operator) {
        return usage(format!(
            "{operator} already approved this proposal; a second approval must come from another operator"
        ));
    }
    let req = OpRequest {
        op: if approve { "approve" } else { "reject" }.into(),
        proposal: p.id.clone(),
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
            Exit::Success
        }
        Err(e) => usage(format!(
            "cannot write the request in {}: {e}",
            dir.display()
        )),
    }
}

/// Waits (a few seconds at most) for the session to record the approval or
/// refuse it, and says which: a refused approval (a role the verdict needs
/// that `operator` does not hold) exits 1 with the session's reason.
fn settled(log: &std::path::Path, proposal: &str, operator: &str, session: &str) -> Exit {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let events = audit::read_events(log).map(|(e, _)| e).unwrap_or_default();
        let mine = |kind: &str| {
            events.iter().rev().find(|e| {
                e.kind == kind
                    && e.data.get("proposal").and_then(|v| v.as_str()) == Some(proposal)
                    && e.data.get("operator").and_then(|v| v.as_str()) == Some(operator)
            })
        };
        if let Some(e) = mine("approval_refused") {
            errln!(
                "error: session {session} refused the approval by {operator}: {}",
                e.data.get("reason").and_then(|v| v.as_str()).unwrap_or("")
            );
            return Exit::Failed;
        }
        if mine("approved").is_some() {
            errln!("approval by {operator} recorded in session {session}");
            return Exit::Success;
        }
        if std::time::Instant::now() >= deadline {
            errln!(
                "approval by {operator} sent to session {session}; it is recorded when the session picks it up (within a second)"
            );
            return Exit::Success;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
