//! `ward resume`: continuing an unsealed log. Nothing that executed runs
//! again; a step interrupted mid-execution is settled by its `verify`
//! (never by re-running it); pending approvals stay pending and are
//! collected again.

use serde_json::Value;
use tokio::sync::mpsc;

use crate::agent::Agent;
use crate::audit::{AuditWriter, Event};
use crate::exec::step;
use crate::journal::events::*;
use crate::journal::state::{SessionState, Status};
use crate::session::backend::StatementBackend;

use super::{Op, RunConfig, RunError, Runner, StepEnd};

/// Continues an unsealed session log (`cfg.log_path`), whose events the
/// caller has read (it needed them to rebuild `cfg`). Nothing already
/// executed runs again; a proposal whose `executing` has no outcome is
/// settled by its step's `verify`; pending approvals stay pending and are
/// collected again.
pub async fn resume(
    cfg: RunConfig,
    logged: Vec<Event>,
    mut agent: Box<dyn Agent>,
    ops: mpsc::UnboundedReceiver<Op>,
    events: Option<mpsc::UnboundedSender<Event>>,
) -> Result<(SessionState, Outcome), RunError> {
    let log = AuditWriter::open_existing(&cfg.log_path).map_err(|source| RunError::Resume {
        path: cfg.log_path.clone(),
        source,
    })?;
    // Only the events the writer kept (a torn tail was cut off).
    let last = log.last().map(|e| e.seq);
    let kept: Vec<Event> = logged
        .into_iter()
        .filter(|e| last.is_some_and(|l| e.seq <= l))
        .collect();
    let state = SessionState::from_events(&kept);
    if state.session_id != cfg.session_id {
        return Err(RunError::ForeignLog {
            path: cfg.log_path.clone(),
            found: state.session_id.clone(),
            expected: cfg.session_id.clone(),
        });
    }
    if let Some(replay) = agent_skip(&state) {
        agent.skip_turns(replay);
    }
    let mut r = Runner::new(cfg, log, state, agent, ops, events);
    // The store may lack what the log holds (it was down, or the session
    // ran before it was configured): the mirror pushes it first.
    let refused = r.start_mirror(&kept).await;
    r.store_refused(refused)?;
    let interrupted: Vec<ProposalId> = r
        .state
        .proposals
        .iter()
        .filter(|p| p.status == Status::Running)
        .map(|p| p.id.clone())
        .collect();
    let pending: Vec<ProposalId> = r
        .state
        .proposals
        .iter()
        .filter(|p| matches!(p.status, Status::AwaitingApproval | Status::Ready))
        .map(|p| p.id.clone())
        .collect();
    r.record(EventData::Resumed(Resumed {
        operator: r.cfg.operator.clone(),
        interrupted: interrupted.clone(),
        pending: pending.clone(),
        allow_dirty: r.cfg.allow_dirty,
        allow_superuser: r.cfg.allow_superuser,
    }))?;
    let mut backend = match r.connect().await? {
        Ok(backend) => backend,
        Err(outcome) => return r.seal(outcome).await,
    };
    for pid in &interrupted {
        r.record(EventData::Failed(Failed {
            proposal: Some(pid.clone()),
            kind: FailureKind::Interrupted,
            message: "ward stopped while this ran; its outcome is unknown, so it is never run again: its verify decides"
                .into(),
            role: None,
            diagnosis: None,
        }))?;
        let step_id = r.state.proposal(pid).and_then(|p| p.step_id.clone());
        let has_verify = step_id
            .as_deref()
            .and_then(|id| r.cfg.contract.step(id))
            .is_some_and(|s| s.verify.is_some());
        match step_id {
            Some(id) if has_verify => r.verify(backend.as_mut(), pid, &id).await?,
            _ => {
                r.record(EventData::AgentError(AgentError::note(format!(
                    "proposal {} was interrupted and has no verify: check its effect by hand before going on",
                    pid.short()
                ))))?;
                return r.seal(Outcome::Failed).await;
            }
        }
    }
    for pid in &pending {
        if let StepEnd::Stop(o) = r.continue_pending(backend.as_mut(), pid).await? {
            return r.seal(o).await;
        }
    }
    let outcome = r.drive_and_follow(backend.as_mut()).await?;
    r.seal(outcome).await
}

/// How many turns a replayed transcript had answered before the session
/// stopped: its proposals (not the offline planner's after a handover), its
/// questions, and its proposals that were refused.
fn agent_skip(state: &SessionState) -> Option<usize> {
    (state.agent.get("provider").and_then(Value::as_str) == Some("replay")).then(|| {
        state
            .proposals
            .iter()
            .filter(|p| p.source == Source::Replay)
            .count()
            + state.questions.len()
            + state.refused_proposals
    })
}

impl Runner {
    /// A proposal a resumed session found waiting (for approvals, or
    /// approved and not yet started): admitted again like any other, then
    /// run exactly as proposed, or stopped if the runbook no longer
    /// resolves to the same statement.
    pub(super) async fn continue_pending(
        &mut self,
        backend: &mut dyn StatementBackend,
        pid: &ProposalId,
    ) -> Result<StepEnd, RunError> {
        let Some(p) = self.state.proposal(pid).cloned() else {
            return Ok(StepEnd::Continue);
        };
        let resolved = match &p.step_id {
            Some(id) => {
                let mut inputs = self.cfg.inputs.clone();
                inputs.extend(self.logged_inputs(pid));
                step::resolve(
                    &self.cfg.contract,
                    id,
                    &inputs,
                    self.cfg.target.engine,
                    &self.cfg.analyzer,
                )
                .ok()
            }
            None => None,
        };
        let Some(resolved) = resolved.filter(|r| r.sql == p.sql) else {
            self.record(EventData::Failed(Failed {
                proposal: Some(pid.clone()),
                kind: FailureKind::Resume,
                message: "the runbook no longer resolves to the statement that was proposed; propose it again".into(),
                role: None,
                diagnosis: None,
            }))?;
            return Ok(StepEnd::Stop(Outcome::Failed));
        };
        let declared = p
            .step_id
            .as_deref()
            .and_then(|id| self.cfg.contract.step(id))
            .and_then(|s| s.spec.risk);
        self.run_when_admitted(backend, pid, &resolved, declared, None)
            .await
    }
}
