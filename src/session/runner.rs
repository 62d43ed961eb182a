//! The session runner: planner -> resolve -> analyze -> gate -> (approval)
//! -> execute -> summarize -> planner, writing every moment to the audit log
//! (and fsyncing it) before the action it announces.
//!
//! The front end talks to the runner over channels: it receives every event
//! and may send approvals, rejections (with reasons) and a cancel. Headless
//! runs send none, so they never approve. Nothing a planner or a model says
//! can approve: approvals come only through [`Op`], from a named operator.
//!
//! Until the agent lands, the planner is the minimal offline one: the
//! runbook's diagnostics in order, then every remediation or migration whose
//! `when` holds on the facts, then the first matching conclusion.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::events::*;
use super::state::{SessionState, Status};
use crate::audit::{AuditWriter, Event};
use crate::contract::{Contract, StepKind};
use crate::evidence::EvidenceConfig;
use crate::exec::step::{self, Resolved};
use crate::exec::{Bind, Executor, Limits, Mode, RowEvent, Target};
use crate::gate::{self, GateInput};
use crate::policy::{Decision, Policy, TableSize};
use crate::sql::{Analyzer, Engine, Risk};

/// What a front end may send a running session. There is no op a model can
/// send: ops come from a front end, each naming the operator behind it.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Approve the proposal (named by its id, the hash of its `proposed`
    /// event). `for_session` also approves the same statement (same
    /// fingerprint, same target) for the rest of the session, where the
    /// policy allows that: never for destructive, privilege or unknown
    /// statements, never where the verdict needs more than one approver.
    Approve {
        proposal: String,
        operator: String,
        reason: String,
        for_session: bool,
    },
    /// Reject the proposal; the reason goes back to the agent.
    Reject {
        proposal: String,
        operator: String,
        reason: String,
    },
    /// Withdraw a standing approval given with `for_session`.
    Revoke {
        fingerprint: String,
        operator: String,
    },
    /// Answer the agent's question.
    Answer { operator: String, text: String },
    /// Cancel the running query (if any) and end the session.
    Cancel,
    /// The front end will not approve now: the session stops at this step,
    /// awaiting approval (what a headless run does).
    Leave,
}

/// Everything a session needs, validated by the caller.
pub struct RunConfig {
    pub session_id: String,
    pub log_path: PathBuf,
    pub contract: Contract,
    pub target: Target,
    pub inputs: BTreeMap<String, Value>,
    pub policy: Policy,
    pub analyzer: Analyzer,
    pub evidence: EvidenceConfig,
    /// Run only read-only statements; record every other proposal with the
    /// verdict it would get.
    pub dry_run: bool,
    pub operator: String,
    pub provenance: Value,
    pub allow_dirty: bool,
    /// How long to wait for approvals before stopping at a step; `None`
    /// stops at once (headless).
    pub wait_for_approval: Option<Duration>,
    /// Where `ward approve` / `ward reject` from other operators drop their
    /// requests for this session (polled while waiting for approvals).
    pub ops_dir: Option<PathBuf>,
}

/// A request another operator's `ward approve` / `ward reject` left for a
/// running session.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OpRequest {
    /// `approve` or `reject`.
    pub op: String,
    /// The proposal's id (the hash of its `proposed` event) or a unique
    /// prefix of at least 8 characters.
    pub proposal: String,
    pub operator: String,
    pub reason: String,
}

/// Writes a request atomically (temp file + rename), mode 0600.
pub fn submit_request(dir: &std::path::Path, req: &OpRequest) -> std::io::Result<PathBuf> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let name = format!(
        "{}-{}-{}",
        Utc::now().format("%Y%m%dT%H%M%S%.6f"),
        std::process::id(),
        req.op
    );
    let tmp = dir.join(format!(".{name}.tmp"));
    let dst = dir.join(format!("{name}.json"));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(&serde_json::to_vec(req).unwrap_or_default())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &dst)?;
    Ok(dst)
}

/// Takes the pending requests out of `dir` (renaming each to `.taken`, so
/// each is applied once).
fn take_requests(dir: &std::path::Path) -> Vec<OpRequest> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let taken = f.with_extension("taken");
        if std::fs::rename(&f, &taken).is_err() {
            continue;
        }
        if let Ok(bytes) = std::fs::read(&taken)
            && let Ok(req) = serde_json::from_slice::<OpRequest>(&bytes)
        {
            out.push(req);
        }
    }
    out
}

/// How the session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Concluded,
    AwaitingApproval,
    Denied,
    Failed,
    Cancelled,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Concluded => "concluded",
            Outcome::AwaitingApproval => "awaiting_approval",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot write the session log {path}: {message}")]
    Log { path: String, message: String },
}

struct Runner {
    cfg: RunConfig,
    log: AuditWriter,
    state: SessionState,
    events: Option<mpsc::UnboundedSender<Event>>,
    ops: mpsc::UnboundedReceiver<Op>,
    /// Ops read from the ops directory, not yet applied.
    queued: std::collections::VecDeque<Op>,
    cancelled: bool,
}

enum StepEnd {
    Continue,
    Stop(Outcome),
}

/// Runs a session to its end. Returns the folded state and the outcome.
pub async fn run(
    cfg: RunConfig,
    ops: mpsc::UnboundedReceiver<Op>,
    events: Option<mpsc::UnboundedSender<Event>>,
) -> Result<(SessionState, Outcome), RunError> {
    let log = AuditWriter::create(&cfg.log_path).map_err(|e| RunError::Log {
        path: cfg.log_path.display().to_string(),
        message: e.to_string(),
    })?;
    let mut r = Runner {
        cfg,
        log,
        state: SessionState::default(),
        events,
        ops,
        queued: Default::default(),
        cancelled: false,
    };
    let outcome = r.session().await?;
    let unapproved: Vec<String> = r
        .state
        .awaiting_approval()
        .iter()
        .map(|p| p.id.clone())
        .collect();
    r.record(EventData::SessionEnded(SessionEnded {
        outcome: outcome.name().into(),
        unapproved,
    }))?;
    Ok((r.state, outcome))
}

impl Runner {
    /// Appends (and fsyncs) an event, folds it, and tells the front end.
    fn record(&mut self, e: EventData) -> Result<Event, RunError> {
        let (kind, data) = e.to_parts();
        let event = self.log.append(&kind, data).map_err(|err| RunError::Log {
            path: self.cfg.log_path.display().to_string(),
            message: err.to_string(),
        })?;
        self.state.apply(event.seq, &event.ts, &event.hash, &e);
        if let Some(tx) = &self.events {
            let _ = tx.send(event.clone());
        }
        Ok(event)
    }

    async fn session(&mut self) -> Result<Outcome, RunError> {
        let c = &self.cfg.contract;
        let started = SessionStarted {
            session_id: self.cfg.session_id.clone(),
            operator: self.cfg.operator.clone(),
            host: hostname(),
            ward_version: env!("CARGO_PKG_VERSION").into(),
            runbook: c.id().into(),
            runbook_version: c.spec.version,
            target: json!({
                "name": self.cfg.target.name,
                "engine": self.cfg.target.engine,
                "url": self.cfg.target.url.redacted(),
            }),
            environment: self.cfg.target.environment.clone(),
            agent: json!({"provider": "offline"}),
            dry_run: self.cfg.dry_run,
            provenance: self.cfg.provenance.clone(),
            inputs: serde_json::to_value(&self.cfg.inputs).unwrap_or(Value::Null),
            allow_dirty: self.cfg.allow_dirty,
        };
        self.record(EventData::SessionStarted(started))?;
        let mut ex =
            match Executor::connect(&self.cfg.target, &self.cfg.session_id, self.cfg.dry_run).await
            {
                Ok(ex) => ex,
                Err(e) => {
                    self.record(EventData::Failed(Failed {
                        proposal: None,
                        kind: e.kind().into(),
                        message: e.to_string(),
                    }))?;
                    return Ok(Outcome::Failed);
                }
            };
        let plan: Vec<String> = ordered_steps(&self.cfg.contract);
        let diagnostics: Vec<String> = plan
            .iter()
            .filter(|id| {
                self.cfg
                    .contract
                    .step(id)
                    .is_some_and(|s| s.spec.kind == StepKind::Diagnostic)
            })
            .cloned()
            .collect();
        for id in &diagnostics {
            if let StepEnd::Stop(o) = self.step(&mut ex, id).await? {
                return Ok(o);
            }
        }
        let changes: Vec<String> = plan
            .iter()
            .filter(|id| !diagnostics.contains(id))
            .cloned()
            .collect();
        for id in &changes {
            if !self.wanted(id) {
                continue;
            }
            if let StepEnd::Stop(o) = self.step(&mut ex, id).await? {
                return Ok(o);
            }
        }
        if let Some(text) = self.conclusion() {
            self.record(EventData::Concluded(Concluded {
                text,
                recommendation: None,
            }))?;
        }
        Ok(Outcome::Concluded)
    }

    fn facts_value(&self) -> Value {
        Value::Object(
            self.state
                .facts
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }

    fn inputs_value(&self) -> Value {
        let mut m = serde_json::Map::new();
        for (name, spec) in &self.cfg.contract.spec.inputs {
            if let Some(v) = self.cfg.inputs.get(name) {
                m.insert(name.clone(), v.clone());
            } else if let Some(d) = &spec.default {
                m.insert(name.clone(), serde_json::to_value(d).unwrap_or(Value::Null));
            }
        }
        Value::Object(m)
    }

    /// Whether the planner proposes a remediation/migration: its `requires`
    /// ran and its `when` (if any) holds on the facts.
    fn wanted(&self, id: &str) -> bool {
        let Some(s) = self.cfg.contract.step(id) else {
            return false;
        };
        let done = |req: &String| {
            self.state
                .proposals
                .iter()
                .any(|p| p.step_id.as_deref() == Some(req.as_str()) && p.status == Status::Done)
        };
        if !s.spec.requires.iter().all(done) {
            return false;
        }
        match &s.when {
            None => true,
            Some(w) => w
                .eval_bool(&[
                    ("facts", &self.facts_value()),
                    ("inputs", &self.inputs_value()),
                ])
                .unwrap_or(false),
        }
    }

    fn conclusion(&self) -> Option<String> {
        let facts = self.facts_value();
        let inputs = self.inputs_value();
        let c = self.cfg.contract.conclusions.iter().find(|c| {
            c.when
                .eval_bool(&[("facts", &facts), ("inputs", &inputs)])
                .unwrap_or(false)
        })?;
        Some(fill_placeholders(
            &c.text,
            &self.state.facts,
            &ordered_steps(&self.cfg.contract),
        ))
    }

    async fn step(&mut self, ex: &mut Executor, id: &str) -> Result<StepEnd, RunError> {
        if self.poll_cancel() {
            return Ok(StepEnd::Stop(Outcome::Cancelled));
        }
        let resolved = match step::resolve(
            &self.cfg.contract,
            id,
            &self.cfg.inputs,
            self.cfg.target.engine,
            &self.cfg.analyzer,
        ) {
            Ok(r) => r,
            Err(e) => {
                self.record(EventData::Failed(Failed {
                    proposal: None,
                    kind: "resolve".into(),
                    message: e.to_string(),
                }))?;
                return Ok(StepEnd::Stop(Outcome::Failed));
            }
        };
        let proposed = self.record(EventData::Proposed(Proposed {
            step_id: Some(id.to_string()),
            sql: resolved.sql.clone(),
            binds: resolved.binds.iter().map(bind_json).collect(),
            source: "runbook".into(),
            rationale: None,
        }))?;
        let pid = proposed.hash.clone();
        let table_size = if resolved.analysis.risk != Risk::ReadOnly
            && self.cfg.target.engine == Engine::Postgres
        {
            table_size(ex, &resolved).await
        } else {
            None
        };
        let a = &resolved.analysis;
        self.record(EventData::Analyzed(Analyzed {
            proposal: pid.clone(),
            risk: resolved.risk.name().into(),
            kinds: a.kinds().iter().map(|k| k.to_string()).collect(),
            lock: a.lock().map(|l| l.name().to_string()),
            blocks: a
                .statements
                .iter()
                .flat_map(|s| s.blocks.iter().map(|b| b.to_string()))
                .collect(),
            findings: a.findings().iter().map(|f| f.rule.to_string()).collect(),
            tables: a.tables().iter().map(|t| t.to_string()).collect(),
            table_size: table_size.map(|t| json!({"rows": t.rows, "bytes": t.bytes})),
            fingerprint: crate::sql::fingerprint(resolved.engine, &resolved.sql),
        }))?;
        let verdict = gate::decide(
            &self.cfg.policy,
            &GateInput {
                analysis: a,
                declared_risk: self.cfg.contract.step(id).and_then(|s| s.spec.risk),
                environment: &self.cfg.target.environment,
                runbook: Some(self.cfg.contract.id()),
                step_kind: Some(resolved.kind.name()),
                table_size,
                now: Utc::now(),
            },
        );
        // A dry run executes read-only statements only; everything else is
        // recorded with the verdict it would get.
        let would_write = resolved.mode != Mode::ReadOnly || verdict.risk != Risk::ReadOnly;
        let dry = self.cfg.dry_run && would_write;
        self.record(EventData::Gated(Gated {
            proposal: pid.clone(),
            decision: verdict.decision.name().into(),
            approvers: verdict.decision.approvers(),
            roles: match &verdict.decision {
                Decision::Approve { roles, .. } => roles.clone(),
                _ => Vec::new(),
            },
            risk: verdict.risk.name().into(),
            rules: verdict.rules.iter().map(|m| m.id.clone()).collect(),
            policy: verdict.policy.clone(),
            dry_run: dry,
        }))?;
        if dry {
            return Ok(StepEnd::Continue);
        }
        match &verdict.decision {
            Decision::Deny => return Ok(StepEnd::Stop(Outcome::Denied)),
            Decision::Approve { approvers, .. } => {
                match self.collect_approvals(&pid, *approvers).await? {
                    Approval::Granted => {}
                    Approval::Rejected => return Ok(StepEnd::Continue),
                    Approval::Pending => return Ok(StepEnd::Stop(Outcome::AwaitingApproval)),
                    Approval::Cancelled => return Ok(StepEnd::Stop(Outcome::Cancelled)),
                }
            }
            Decision::Allow => {}
        }
        self.execute(ex, &pid, &resolved).await
    }

    async fn execute(
        &mut self,
        ex: &mut Executor,
        pid: &str,
        resolved: &Resolved,
    ) -> Result<StepEnd, RunError> {
        let mode = if resolved.mode == Mode::ReadOnly {
            "read_only"
        } else {
            "write"
        };
        self.record(EventData::Executing(Executing {
            proposal: pid.to_string(),
            mode: mode.into(),
        }))?;
        let result = step::execute(ex, resolved, &self.cfg.evidence).await;
        if let Some(err) = &result.error {
            self.record(EventData::Failed(Failed {
                proposal: Some(pid.to_string()),
                kind: err.kind.into(),
                message: err.message.clone(),
            }))?;
            return Ok(StepEnd::Stop(Outcome::Failed));
        }
        self.record(EventData::Executed(Executed {
            proposal: pid.to_string(),
            rows_seen: result.rows_seen,
            rows_kept: result.rows_kept,
            capped: result.capped,
            duration_ms: result.duration_ms,
            sha256: result.sha256.clone(),
        }))?;
        if let Some(ev) = &result.evidence {
            self.record(EventData::Summarized(Summarized {
                proposal: pid.to_string(),
                summarizer: ev.summarizer.clone(),
                summary: ev.summary.clone(),
                facts: Value::Object(ev.facts.clone()),
                tokens: ev.tokens,
                truncated: ev.truncated,
                warnings: ev.warnings.clone(),
            }))?;
        }
        if resolved.kind != StepKind::Diagnostic {
            self.verify(ex, pid, &resolved.step_id).await?;
        }
        Ok(StepEnd::Continue)
    }

    /// Runs the step's `verify` query (read-only) and evaluates `expect`
    /// over its rows: the outcome is a verified state change, not anyone's
    /// word.
    async fn verify(
        &mut self,
        ex: &mut Executor,
        pid: &str,
        step_id: &str,
    ) -> Result<(), RunError> {
        let Some(expect) = self
            .cfg
            .contract
            .step(step_id)
            .and_then(|s| s.verify.as_ref())
            .map(|(_, e)| e.clone())
        else {
            return Ok(());
        };
        let inputs = self.inputs_value();
        // The same binding as the step itself: identifiers quoted, values bound.
        let bound = step::verify_sql(
            &self.cfg.contract,
            step_id,
            &self.cfg.inputs,
            self.cfg.target.engine,
        );
        let (sql, binds) = match bound {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(()),
            Err(e) => {
                self.record(EventData::Verified(Verified {
                    proposal: pid.to_string(),
                    ok: false,
                    expect: expect.source.clone(),
                    detail: format!("verify query could not be prepared: {e}"),
                }))?;
                return Ok(());
            }
        };
        let mut rows: Vec<Value> = Vec::new();
        let limits = Limits {
            max_rows: Some(1000),
            ..Limits::default()
        };
        let ran = ex
            .run(&sql, &binds, Mode::ReadOnly, &limits, &mut |e| {
                if let RowEvent::Row(r) = e {
                    rows.push(Value::Object(r.clone()));
                }
            })
            .await;
        let (ok, detail) = match ran {
            Err(e) => (false, format!("verify query failed: {e}")),
            Ok(_) => match expect.eval_bool(&[
                ("rows", &Value::Array(rows)),
                ("inputs", &inputs),
                ("facts", &self.facts_value()),
            ]) {
                Ok(true) => (true, "expectation holds".to_string()),
                Ok(false) => (false, "expectation does not hold".to_string()),
                Err(e) => (false, e),
            },
        };
        self.record(EventData::Verified(Verified {
            proposal: pid.to_string(),
            ok,
            expect: expect.source.clone(),
            detail,
        }))?;
        Ok(())
    }

    fn poll_cancel(&mut self) -> bool {
        while let Ok(op) = self.ops.try_recv() {
            if op == Op::Cancel {
                self.cancelled = true;
            }
        }
        self.cancelled
    }

    /// Waits for `needed` approvals from distinct operators naming `pid`:
    /// from the front end's channel, and from other operators' `ward approve`
    /// requests, polled every 250 ms.
    async fn collect_approvals(&mut self, pid: &str, needed: u32) -> Result<Approval, RunError> {
        let Some(wait) = self.cfg.wait_for_approval else {
            return Ok(Approval::Pending);
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if self
                .state
                .proposal(pid)
                .is_some_and(|p| p.distinct_approvers() >= needed as usize)
            {
                return Ok(Approval::Granted);
            }
            if let Some(op) = self.queued.pop_front() {
                if let Some(a) = self.handle_op(pid, op)? {
                    return Ok(a);
                }
                continue;
            }
            let poll = tokio::time::Instant::now() + Duration::from_millis(250);
            tokio::select! {
                op = self.ops.recv() => match op {
                    Some(op) => self.queued.push_back(op),
                    None => tokio::time::sleep_until(poll).await,
                },
                () = tokio::time::sleep_until(deadline) => return Ok(Approval::Pending),
                () = tokio::time::sleep_until(poll) => {
                    for req in self.cfg.ops_dir.as_deref().map(take_requests).unwrap_or_default() {
                        // A prefix names this proposal only if long enough.
                        let proposal = if req.proposal.len() >= 8 && pid.starts_with(&req.proposal) {
                            pid.to_string()
                        } else {
                            req.proposal.clone()
                        };
                        let op = match req.op.as_str() {
                            "approve" => Op::Approve { proposal, operator: req.operator, reason: req.reason, for_session: false },
                            "reject" => Op::Reject { proposal, operator: req.operator, reason: req.reason },
                            _ => continue,
                        };
                        self.queued.push_back(op);
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline && self.queued.is_empty() {
                return Ok(Approval::Pending);
            }
        }
    }

    /// Applies one op while `pid` waits; `Some` ends the wait.
    fn handle_op(&mut self, pid: &str, op: Op) -> Result<Option<Approval>, RunError> {
        match op {
            Op::Cancel => {
                self.cancelled = true;
                Ok(Some(Approval::Cancelled))
            }
            Op::Approve {
                proposal,
                operator,
                reason,
                ..
            } if proposal == pid => {
                // The same operator never counts twice; a reason is required.
                let already = self
                    .state
                    .proposal(pid)
                    .is_some_and(|p| p.approvals.iter().any(|(o, _)| *o == operator));
                if !already && !reason.trim().is_empty() && !operator.trim().is_empty() {
                    self.record(EventData::Approved(Decided {
                        proposal,
                        operator,
                        reason,
                        standing: None,
                    }))?;
                }
                Ok(None)
            }
            Op::Reject {
                proposal,
                operator,
                reason,
            } if proposal == pid => {
                self.record(EventData::Rejected(Decided {
                    proposal,
                    operator,
                    reason,
                    standing: None,
                }))?;
                Ok(Some(Approval::Rejected))
            }
            // Approvals for other proposals are not carried over.
            _ => Ok(None),
        }
    }
}

enum Approval {
    Granted,
    Rejected,
    Pending,
    Cancelled,
}

fn bind_json(b: &Bind) -> Value {
    match b {
        Bind::Int(i) => json!(i),
        Bind::Float(f) => json!(f),
        Bind::Text(t) => json!(t),
        Bind::Bool(v) => json!(v),
        Bind::Null => Value::Null,
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// Steps in file order, each after the steps it requires.
pub fn ordered_steps(c: &Contract) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    fn visit(c: &Contract, id: &str, out: &mut Vec<String>, depth: usize) {
        if out.iter().any(|x| x == id) || depth > 64 {
            return;
        }
        if let Some(s) = c.step(id) {
            for r in &s.spec.requires {
                visit(c, r, out, depth + 1);
            }
            if !out.iter().any(|x| x == id) {
                out.push(id.to_string());
            }
        }
    }
    for s in &c.steps {
        visit(c, &s.spec.id, &mut out, 0);
    }
    out
}

/// Fills `{step.fact}` and `{fact}` placeholders from the facts; unknown ones
/// stay as written.
pub fn fill_placeholders(text: &str, facts: &BTreeMap<String, Value>, order: &[String]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let name = &after[..close];
        let value = match name.split_once('.') {
            Some((step, fact)) => facts.get(step).and_then(|f| f.get(fact)).cloned(),
            None => order
                .iter()
                .filter_map(|s| facts.get(s).and_then(|f| f.get(name)))
                .next()
                .cloned(),
        };
        match value {
            Some(Value::String(s)) => out.push_str(&s),
            Some(v) => out.push_str(&v.to_string()),
            None => {
                out.push('{');
                out.push_str(name);
                out.push('}');
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Estimated rows and total size of the largest table a statement touches,
/// from the catalog (a read-only query), so "ALTER TABLE on 40M rows" is
/// visible before anyone approves it.
async fn table_size(ex: &mut Executor, resolved: &Resolved) -> Option<TableSize> {
    let mut best: Option<TableSize> = None;
    for table in resolved.analysis.tables() {
        let mut found: Option<TableSize> = None;
        let sql = "SELECT greatest(c.reltuples, 0)::bigint AS rows, pg_total_relation_size(c.oid) AS bytes FROM pg_class c WHERE c.oid = to_regclass($1)";
        let _ = ex
            .run(
                sql,
                &[Bind::Text(table.to_string())],
                Mode::ReadOnly,
                &Limits {
                    max_rows: Some(1),
                    ..Limits::default()
                },
                &mut |e| {
                    if let RowEvent::Row(r) = e {
                        found = Some(TableSize {
                            rows: r.get("rows").and_then(Value::as_u64).unwrap_or(0),
                            bytes: r.get("bytes").and_then(Value::as_u64).unwrap_or(0),
                        });
                    }
                },
            )
            .await;
        if let Some(f) = found
            && best.is_none_or(|b| f.rows > b.rows)
        {
            best = Some(f);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_fill_from_step_and_bare_facts() {
        let facts = BTreeMap::from([
            ("a".to_string(), json!({"idle": 25, "app": "billing"})),
            ("b".to_string(), json!({"idle": 3})),
        ]);
        let order = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            fill_placeholders(
                "{idle} idle ({b.idle} in b), app {app}, {nope}",
                &facts,
                &order
            ),
            "25 idle (3 in b), app billing, {nope}"
        );
        assert_eq!(
            fill_placeholders("open { brace", &facts, &order),
            "open { brace"
        );
    }
}
