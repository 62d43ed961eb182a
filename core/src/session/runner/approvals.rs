//! Admission and approvals: whether a proposal may run now (`gate::admit`
//! on fresh facts), waiting for approvals from distinct operators through
//! the front end's channel and the inbox, and logging the verdict again
//! right before execution.
//!
//! Nothing here decides on its own: `gate::admit` decides; this gathers
//! what it decides on and logs what it said.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::exec::step::Origin;
use crate::gate::{self, Admission, Admit, Admitted, GateInput, Given};
use crate::journal::events::*;
use crate::policy::operators;
use crate::policy::{Decision, Policy};
use crate::session::inbox::{Answer, Inbox, RequestOp, Taken};

use super::{
    Approval, DENIALS_BEFORE_HANDOVER, Gating, Op, RunError, Runner, StepEnd, policy_brief,
};

pub use crate::gate::standing_allowed;

impl Runner {
    /// An approval (or a standing one) as admission counts it: the roles
    /// its operator holds in the roster, or with a team store, only their
    /// PostgreSQL role memberships as the store authenticated them (the
    /// roster grants nothing to store identities; a name the store did not
    /// authenticate holds no role).
    pub(super) fn given(&self, operator: &str) -> Given {
        let roles = if self.cfg.store.is_some() {
            self.store_roles_of(operator.trim())
        } else {
            self.cfg
                .operators
                .as_ref()
                .map(|o| o.roles_of(operator.trim()))
                .unwrap_or_default()
        };
        Given {
            operator: operator.to_string(),
            roles,
        }
    }

    /// `gate::admit` for `pid` on `g`, with the approvals logged so far
    /// (and `extra`, an approval being considered).
    pub(super) fn admission(&self, pid: &ProposalId, g: &Gating, extra: Option<&str>) -> Admitted {
        let p = self.state.proposal(pid);
        let mut approvals: Vec<Given> = p
            .map(|p| p.approvals.iter().map(|(o, _)| self.given(o)).collect())
            .unwrap_or_default();
        if let Some(op) = extra {
            approvals.push(self.given(op));
        }
        let standing = p
            .and_then(|p| p.fingerprint.as_deref())
            .and_then(|fp| self.state.standing.iter().find(|(f, _, _)| f == fp))
            .map(|(_, op, _)| self.given(op));
        let adhoc = (g.resolved.origin == Origin::Adhoc).then_some(self.cfg.contract.spec.adhoc);
        gate::admit(&Admission {
            policy: &self.cfg.policy,
            gate: GateInput {
                analysis: &g.resolved.analysis,
                declared_risk: g.declared,
                environment: &self.cfg.target.environment,
                runbook: Some(self.cfg.contract.id()),
                step_kind: Some(if adhoc.is_some() {
                    "adhoc"
                } else {
                    g.resolved.kind.name()
                }),
                table_size: g.table_size,
                now: g.now,
                connected_as_superuser: self.connected_as_superuser,
            },
            adhoc,
            mode: g.resolved.mode,
            dry_run: self.cfg.dry_run,
            approvals: &approvals,
            standing: standing.as_ref(),
            roster: self.cfg.operators.as_ref().map(|o| o.path.as_path()),
            store_roles: self.cfg.store.as_ref().map(|s| s.role_prefix.as_str()),
        })
    }

    /// A proposal that was denied: the agent hears it through the state
    /// (rules and message), the session goes on; after
    /// [`DENIALS_BEFORE_HANDOVER`] in a row the agent is stopped.
    pub(super) fn denied(&mut self) -> Result<StepEnd, RunError> {
        self.denied_any = true;
        self.denials_in_a_row += 1;
        let offline = self.state.agent.get("provider").and_then(Value::as_str) == Some("offline");
        if self.denials_in_a_row >= DENIALS_BEFORE_HANDOVER
            && !self.state.agent_handed_over
            && !offline
            && self.agent.may_hand_over()
        {
            self.record(EventData::AgentError(AgentError {
                message: format!(
                    "{} proposals in a row were denied by policy; the agent is stopped and the offline planner goes on",
                    self.denials_in_a_row
                ),
                handover: true,
                ..AgentError::default()
            }))?;
        }
        Ok(StepEnd::Continue)
    }

    /// Re-reads the policy and the roster from their files (where the
    /// session has files): a policy changed since the proposal decides.
    /// A policy that no longer loads denies everything.
    pub(super) fn reload(&mut self) {
        if !self.cfg.reload_policy {
            return;
        }
        let path = self.cfg.policy.path.clone();
        let loaded = crate::yaml::Doc::read(&path)
            .map_err(|p| vec![p])
            .and_then(|d| crate::policy::load_doc(&d));
        self.cfg.policy = match loaded {
            Ok(p) => p,
            Err(problems) => Policy {
                id: format!(
                    "{} (its file no longer loads: {})",
                    self.cfg.policy.id,
                    problems
                        .first()
                        .map(ToString::to_string)
                        .unwrap_or_default()
                ),
                path: path.clone(),
                windows: BTreeMap::new(),
                rules: Vec::new(),
                default: Decision::Deny,
                concurrent_sessions: Default::default(),
            },
        };
        self.policy_brief = policy_brief(&self.cfg.policy);
        // A roster that no longer loads holds no roles.
        self.cfg.operators = path
            .parent()
            .and_then(|dir| operators::load(dir).ok().flatten());
    }

    /// Logs the admission right before execution, with the verdict it
    /// replaces and why it changed.
    pub(super) fn readmitted(
        &mut self,
        pid: &ProposalId,
        g: &Gating,
        a: &Admitted,
    ) -> Result<(), RunError> {
        let (roles, requires_roles) = roles_of(&a.verdict.decision);
        let previous = self
            .state
            .proposal(pid)
            .map(|p| VerdictWords::new(p.decision, p.approvers_needed, &p.roles_required))
            .unwrap_or_default();
        let now = VerdictWords::new(
            Some(a.verdict.decision.kind()),
            a.verdict.decision.approvers(),
            &roles,
        );
        let changed = previous != now;
        let mut why = Vec::new();
        if changed {
            why.push(format!(
                "at {} the verdict is {now} (was {previous}); rules: {}",
                g.now.to_rfc3339(),
                a.verdict
                    .rules
                    .iter()
                    .map(|m| m.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        why.extend(admission_message(&a.admit));
        why.extend(a.refused.iter().map(|(_, r)| r.clone()));
        self.record(EventData::Readmitted(Readmitted {
            proposal: pid.clone(),
            decision: a.verdict.decision.kind(),
            approvers: a.verdict.decision.approvers(),
            roles,
            requires_roles,
            risk: a.verdict.risk,
            rules: a.verdict.rules.iter().map(|m| m.id.clone()).collect(),
            policy: a.verdict.policy.clone(),
            admit: a.admit.kind(),
            previous,
            changed,
            why: why.join("; "),
            table_size: g
                .table_size
                .map(|t| json!({"rows": t.rows, "bytes": t.bytes})),
        }))?;
        Ok(())
    }

    /// Logs the standing approval that answered `pid`, once.
    pub(super) fn standing_used(&mut self, pid: &ProposalId, a: &Admitted) -> Result<(), RunError> {
        if !a.by_standing {
            return Ok(());
        }
        let Some(p) = self.state.proposal(pid) else {
            return Ok(());
        };
        let Some((fp, operator, reason)) = p
            .fingerprint
            .as_deref()
            .and_then(|fp| self.state.standing.iter().find(|(f, _, _)| f == fp))
            .cloned()
        else {
            return Ok(());
        };
        if p.approvals.iter().any(|(o, _)| *o == operator) {
            return Ok(());
        }
        let holds_roles = self.given(&operator).roles.join(",");
        let authenticated = self.authenticated_by(&operator);
        self.record(EventData::Approved(Decided {
            proposal: pid.clone(),
            operator,
            reason: format!("standing approval for this statement: {reason}"),
            standing: Some(fp),
            holds_roles,
            authenticated,
        }))?;
        Ok(())
    }

    /// Waits until admission lets `pid` run on `g`: for approvals from
    /// distinct operators holding the required roles, from the front end's
    /// channel and from other operators' `ward approve` requests, polled
    /// every 250 ms. A standing approval answers it at once where allowed.
    pub(super) async fn collect_approvals(
        &mut self,
        pid: &ProposalId,
        g: &Gating,
    ) -> Result<Approval, RunError> {
        let first = self.admission(pid, g, None);
        if first.admit == Admit::Run {
            self.standing_used(pid, &first)?;
            return Ok(Approval::Granted);
        }
        let Some(wait) = self.cfg.wait_for_approval else {
            return Ok(Approval::Pending);
        };
        let deadline = tokio::time::Instant::now() + wait;
        // Other hosts see the proposal that waits.
        self.mirror_now().await;
        let store = self.cfg.store.is_some();
        loop {
            if self.admission(pid, g, None).admit == Admit::Run {
                return Ok(Approval::Granted);
            }
            if let Some(op) = self.queued.pop_front() {
                let op = self.authenticate_op(op).await;
                let (end, _) = self.handle_op(pid, g, op)?;
                self.mirror_now().await;
                if let Some(a) = end {
                    return Ok(a);
                }
                continue;
            }
            let poll = tokio::time::Instant::now() + Duration::from_millis(250);
            let wake = self.remote.wake.clone();
            let store_at = self.remote.next_poll;
            tokio::select! {
                op = self.ops.recv() => match op {
                    Some(op) => self.queued.push_back(op),
                    None => tokio::time::sleep_until(poll.min(deadline)).await,
                },
                () = tokio::time::sleep_until(deadline) => return Ok(Approval::Pending),
                () = Runner::store_due(wake, store_at, store) => {
                    self.store_news()?;
                    if let Some(a) = self.take_store_requests(pid, g).await? {
                        return Ok(a);
                    }
                }
                () = tokio::time::sleep_until(poll) => {
                    self.store_news()?;
                    let mut ended = None;
                    for taken in self.inbox().map(|i| i.take()).unwrap_or_default() {
                        if let Some(link) = self.cfg.store.as_ref() {
                            // With a team store, identity is the role it
                            // authenticates; a file request only claims a name.
                            let reason = format!(
                                "this session takes approvals through the team store ({}), where your identity is your PostgreSQL role; configure `store:` and run the command again",
                                link.store.url()
                            );
                            if let Some(inbox) = self.inbox() {
                                inbox.answer(&taken, &Answer::Refused { reason });
                            }
                            continue;
                        }
                        // Requests behind one that ended the wait, or behind
                        // the approval that sufficed, are answered too.
                        if ended.is_some() || self.admission(pid, g, None).admit == Admit::Run {
                            if let Some(inbox) = self.inbox() {
                                inbox.answer(&taken, &Answer::Refused {
                                    reason: format!(
                                        "proposal {} no longer waits for approval",
                                        pid.short()
                                    ),
                                });
                            }
                            continue;
                        }
                        ended = self.handle_request(pid, g, &taken)?;
                    }
                    if let Some(a) = ended {
                        return Ok(a);
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline && self.queued.is_empty() {
                return Ok(Approval::Pending);
            }
        }
    }

    /// The inbox other operators' `ward approve` / `ward reject` write to.
    pub(super) fn inbox(&self) -> Option<Inbox> {
        self.cfg.ops_dir.as_deref().map(Inbox::new)
    }

    /// Applies a request from the inbox while `pid` waits and answers it:
    /// recorded, or refused with the reason (a request for a proposal that
    /// does not wait is refused, never dropped). `Some` ends the wait.
    pub(super) fn handle_request(
        &mut self,
        pid: &ProposalId,
        g: &Gating,
        taken: &Taken,
    ) -> Result<Option<Approval>, RunError> {
        let req = &taken.request;
        if let Some(reason) = self.not_waiting(pid, &req.proposal) {
            if let Some(inbox) = self.inbox() {
                inbox.answer(taken, &Answer::Refused { reason });
            }
            return Ok(None);
        }
        let op = match req.op {
            RequestOp::Approve => Op::Approve {
                proposal: pid.clone(),
                operator: req.operator.clone(),
                reason: req.reason.clone(),
                for_session: false,
            },
            RequestOp::Reject => Op::Reject {
                proposal: pid.clone(),
                operator: req.operator.clone(),
                reason: req.reason.clone(),
            },
        };
        let (end, answer) = self.handle_op(pid, g, op)?;
        if let Some(inbox) = self.inbox() {
            inbox.answer(taken, &answer);
        }
        Ok(end)
    }

    /// Why a request naming `named` does not apply to `pid`, the proposal
    /// that waits; `None` when it names it.
    pub(super) fn not_waiting(&self, pid: &ProposalId, named: &str) -> Option<String> {
        if pid.is_named_by(named) {
            return None;
        }
        Some(
            match self
                .state
                .proposals
                .iter()
                .find(|p| p.id.is_named_by(named))
            {
                Some(p) => format!(
                    "proposal {} no longer waits for approval (it is {})",
                    p.id.short(),
                    p.status.words()
                ),
                None => format!("session has no proposal `{named}`"),
            },
        )
    }

    /// Applies one op while `pid` waits: `Some` ends the wait; the answer
    /// says whether it was logged, and if not, why.
    pub(super) fn handle_op(
        &mut self,
        pid: &ProposalId,
        g: &Gating,
        op: Op,
    ) -> Result<(Option<Approval>, Answer), RunError> {
        let refused = |reason: String| Answer::Refused { reason };
        match op {
            Op::Cancel => {
                self.cancelled = true;
                Ok((Some(Approval::Cancelled), Answer::Recorded))
            }
            Op::Leave => Ok((Some(Approval::Pending), Answer::Recorded)),
            Op::Approve {
                proposal,
                operator,
                reason,
                for_session,
            } if proposal == *pid => {
                // The same operator never counts twice; a reason is required.
                let already = self
                    .state
                    .proposal(pid)
                    .is_some_and(|p| p.approvals.iter().any(|(o, _)| *o == operator));
                if already {
                    return Ok((
                        None,
                        refused(format!(
                            "{operator} already approved proposal {}; another approval must come from another operator",
                            pid.short()
                        )),
                    ));
                }
                if reason.trim().is_empty() || operator.trim().is_empty() {
                    return Ok((
                        None,
                        refused("an approval needs an operator and a reason".into()),
                    ));
                }
                // Admission says whether it counts (the roles it needs).
                let trial = self.admission(pid, g, Some(&operator));
                if let Some((_, why)) = trial.refused.iter().find(|(o, _)| o == operator.trim()) {
                    // Roles the store could not be asked for are not held:
                    // the refusal says why.
                    let why = match self.remote.unverified.get(operator.trim()) {
                        Some(u) => format!("{why}; {u}"),
                        None => why.clone(),
                    };
                    self.record(EventData::ApprovalRefused(ApprovalRefused {
                        proposal,
                        operator,
                        reason: why.clone(),
                    }))?;
                    return Ok((None, refused(why)));
                }
                let holds_roles = self.given(&operator).roles.join(",");
                let authenticated = self.authenticated_by(&operator);
                self.record(EventData::Approved(Decided {
                    proposal: proposal.clone(),
                    operator: operator.clone(),
                    reason: reason.clone(),
                    standing: None,
                    holds_roles,
                    authenticated,
                }))?;
                let p = self.state.proposal(pid);
                let risk = p.and_then(|p| p.risk);
                let fingerprint = p.and_then(|p| p.fingerprint.clone());
                if for_session
                    && standing_allowed(risk, trial.verdict.decision.approvers())
                    && let Some(fingerprint) = fingerprint
                {
                    self.record(EventData::StandingApproved(StandingApproved {
                        fingerprint,
                        target: self.cfg.target.name.clone(),
                        operator,
                        reason,
                        proposal,
                    }))?;
                }
                Ok((None, Answer::Recorded))
            }
            Op::Reject {
                proposal,
                operator,
                reason,
            } if proposal == *pid => {
                let authenticated = self.authenticated_by(&operator);
                self.record(EventData::Rejected(Decided {
                    proposal,
                    operator,
                    reason,
                    standing: None,
                    holds_roles: String::new(),
                    authenticated,
                }))?;
                Ok((Some(Approval::Rejected), Answer::Recorded))
            }
            Op::Revoke {
                fingerprint,
                operator,
            } => {
                if !self
                    .state
                    .standing
                    .iter()
                    .any(|(f, _, _)| *f == fingerprint)
                {
                    return Ok((None, refused("no such standing approval".into())));
                }
                self.record(EventData::Revoked(Revoked {
                    fingerprint,
                    operator,
                }))?;
                Ok((None, Answer::Recorded))
            }
            // Approvals for other proposals are not carried over; answers
            // only answer questions.
            Op::Approve { .. } | Op::Reject { .. } => Ok((
                None,
                refused("that proposal is not the one waiting for approval".into()),
            )),
            Op::Answer { .. } => Ok((None, refused("no question is open".into()))),
            Op::Follow { .. } => Ok((
                None,
                refused(
                    "the runbook has not concluded yet; there is nothing to continue into".into(),
                ),
            )),
        }
    }
}

/// A decision's roles, as a list and comma-joined (for `audit verify`).
pub(super) fn roles_of(d: &Decision) -> (Vec<String>, String) {
    match d {
        Decision::Approve { roles, .. } => (roles.clone(), roles.join(",")),
        _ => (Vec::new(), String::new()),
    }
}

/// Why admission holds a proposal back, for the log and the agent.
pub(super) fn admission_message(a: &Admit) -> Option<String> {
    match a {
        Admit::Deny { message, .. } => Some(message.clone()),
        Admit::NeedsApprovals {
            more,
            missing_roles,
            note,
        } => {
            let roles = if missing_roles.is_empty() {
                String::new()
            } else {
                format!(
                    ", among them holders of role {}",
                    missing_roles
                        .iter()
                        .map(|r| format!("`{r}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            let mut m = format!("needs {more} more approval(s) from distinct operators{roles}");
            if let Some(n) = note {
                m.push_str("; ");
                m.push_str(n);
            }
            Some(m)
        }
        Admit::Run | Admit::DryRunSkip => None,
    }
}
