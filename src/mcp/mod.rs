//! `ward mcp`: ward's sessions as governed database tools for MCP clients
//! (Claude Code, Codex, Cursor, ...), over stdio with the official Rust
//! SDK.
//!
//! The client is the session's agent: each tool call becomes a proposal
//! that the runner resolves against the contract, analyzes, gates by the
//! policy and (where the verdict says so) holds for approvals from people,
//! exactly as for every other front end ([`relay::Relay`]). The first call
//! that needs a runbook starts a session with its own hash-chained log;
//! `conclude` seals it and a later call starts the next. Results carry
//! summaries and facts, never raw rows. A call that needs approval answers
//! at once (or after the wait the client asks for) with the proposal id,
//! the SQL, the rules and the `ward approve` command; a denied call is a
//! tool error naming the rule. No tool approves.
//!
//! This module never writes to stdout or stderr itself: stdout carries the
//! protocol only (rmcp writes it), logs go to the tracing file.

pub mod catalog;
pub mod relay;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, ListResourcesResult,
    ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, Resource, ResourceContents, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, watch};

use crate::agent::Proposal;
use crate::contract::Contract;
use crate::session::Status;
use crate::session::runner::{self, Op, RunConfig};
use catalog::Call;
use relay::{Ended, Progress, Relay};

/// Builds the configuration of a new session on a runbook (the CLI's
/// `prepare`: policy, roster, provenance, session id and log path).
pub type Prepare = Box<dyn Fn(&Contract) -> Result<RunConfig, String> + Send + Sync>;

/// Everything the server needs, checked before the protocol starts.
pub struct Setup {
    /// The runbooks served (their steps are the tools).
    pub runbooks: Vec<Contract>,
    /// The policy, for `explain` and the policy resource.
    pub policy: crate::policy::Policy,
    pub analyzer: crate::sql::Analyzer,
    /// The target's name, engine and environment.
    pub target: String,
    pub engine: crate::sql::Engine,
    pub environment: String,
    /// ward.yaml has a team store: approvals come from any host, as the
    /// role each approver's store URL authenticates.
    pub team_store: bool,
    pub prepare: Prepare,
}

/// The MCP server of one connection.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

struct Inner {
    setup: Setup,
    tools: Vec<Tool>,
    /// The session calls go to; taken by one call at a time.
    slot: tokio::sync::Mutex<Option<Live>>,
    /// The session now or last, for `status` while a call holds the slot.
    shown: Mutex<Option<View>>,
}

/// A session as `status` reads it.
#[derive(Clone)]
struct View {
    id: String,
    log: PathBuf,
    progress: watch::Receiver<Progress>,
    /// To cancel the session without waiting for a call in progress.
    ops: mpsc::UnboundedSender<Op>,
}

struct Live {
    view: View,
    runbook: String,
    calls: mpsc::UnboundedSender<Proposal>,
    task: tokio::task::JoinHandle<()>,
    /// Counts the proposals handed over (`Progress::handed`).
    progress: watch::Sender<Progress>,
}

impl Server {
    pub fn new(setup: Setup) -> Server {
        let tools = catalog::tools(&setup.runbooks);
        Server {
            inner: Arc::new(Inner {
                setup,
                tools,
                slot: tokio::sync::Mutex::new(None),
                shown: Mutex::new(None),
            }),
        }
    }

    /// The tools a client lists.
    pub fn tools(&self) -> &[Tool] {
        &self.inner.tools
    }

    /// Ends the open session, if any (the client went away or ward was
    /// stopped): it is cancelled, its log sealed. Returns its id and how it
    /// ended.
    pub async fn shutdown(&self) -> Option<(String, Option<Ended>)> {
        // Cancelled first: a call still waiting (for an approval, a
        // statement) then sees the session end and lets go of the slot.
        let shown = self.inner.shown.lock().ok().and_then(|s| s.clone());
        if let Some(v) = shown {
            let _ = v.ops.send(Op::Cancel);
        }
        let live = self.inner.slot.lock().await.take()?;
        drop(live.calls);
        let _ = live.task.await;
        let ended = live.view.progress.borrow().ended.clone();
        Some((live.view.id, ended))
    }

    /// Answers one tool call.
    pub async fn call(
        &self,
        name: &str,
        args: &Map<String, Value>,
        client: Value,
    ) -> CallToolResult {
        match catalog::parse(&self.inner.setup.runbooks, name, args) {
            Err(e) => error(json!({"status": "refused", "message": e})),
            Ok(Call::Explain { sql }) => self.explain(&sql),
            Ok(Call::Status { proposal, wait }) => self.status(proposal.as_deref(), wait).await,
            Ok(Call::Propose {
                runbook,
                proposal,
                wait,
            }) => self.propose(runbook, proposal, wait, client).await,
        }
    }

    fn explain(&self, sql: &str) -> CallToolResult {
        let s = &self.inner.setup;
        let ex = crate::explain::explain(
            &s.analyzer,
            &s.policy,
            s.engine,
            sql,
            &s.environment,
            chrono::Utc::now(),
        );
        let statements: Vec<Value> = ex
            .analysis
            .statements
            .iter()
            .map(|st| {
                json!({
                    "sql": st.sql,
                    "kind": st.kind,
                    "risk": st.risk,
                    "lock": st.lock.map(|l| l.name()),
                    "blocks": st.blocks,
                    "findings": st.findings,
                    "reasons": st.reasons,
                })
            })
            .collect();
        success(json!({
            "environment": s.environment,
            "policy": ex.verdict.policy,
            "risk": ex.verdict.risk,
            "decision": ex.verdict.decision.name(),
            "approvers": ex.verdict.decision.approvers(),
            "rules": self.rules(ex.verdict.rules.iter().map(|m| m.id.as_str())),
            "statements": statements,
            "note": "nothing ran; a proposal is gated again with the table sizes and the clock at that moment",
        }))
    }

    /// The rules named, with their messages from the policy.
    fn rules<'a>(&self, ids: impl Iterator<Item = &'a str>) -> Vec<Value> {
        ids.map(|id| {
            let message = self
                .inner
                .setup
                .policy
                .rules
                .iter()
                .find(|r| r.id == id)
                .and_then(|r| r.message.clone());
            json!({"id": id, "message": message})
        })
        .collect()
    }

    async fn status(&self, proposal: Option<&str>, wait: Duration) -> CallToolResult {
        let shown = self.inner.shown.lock().ok().and_then(|s| s.clone());
        let Some(view) = shown else {
            return success(json!({
                "session": null,
                "message": "no session yet: the first step (or query) call starts one",
            }));
        };
        if !wait.is_zero() {
            // Until the runner is done with every call handed to it
            // (approved, run and verified, or rejected), or the wait is up.
            let mut rx = view.progress.clone();
            let _ = tokio::time::timeout(wait, rx.wait_for(idle)).await;
        }
        let p = view.progress.borrow().clone();
        let state = &p.state;
        let wanted: Vec<Value> = state
            .proposals
            .iter()
            .filter(|q| proposal.is_none_or(|n| q.id.is_named_by(n)))
            .map(|q| self.proposal_json(&view, q))
            .collect();
        if let Some(n) = proposal
            && wanted.is_empty()
        {
            return error(json!({
                "status": "refused",
                "message": format!("session {} has no proposal `{n}`", view.id),
            }));
        }
        let mut out = json!({
            "session": view.id,
            "log": view.log,
            "runbook": state.runbook,
            "environment": state.environment,
            "proposals": wanted,
            "conclusion": state.conclusion,
        });
        ended_into(&mut out, &view, &p);
        success(out)
    }

    async fn propose(
        &self,
        runbook: Option<String>,
        proposal: Proposal,
        wait: Duration,
        client: Value,
    ) -> CallToolResult {
        let mut slot = self.inner.slot.lock().await;
        if slot
            .as_ref()
            .is_some_and(|l| l.view.progress.borrow().ended.is_some())
        {
            *slot = None;
        }
        let concluding = matches!(proposal, Proposal::Conclude { .. });
        if slot.is_none() {
            if concluding {
                return error(json!({
                    "status": "refused",
                    "message": "no session is open: there is nothing to conclude",
                }));
            }
            match self.start(runbook.as_deref(), client) {
                Ok(live) => *slot = Some(live),
                Err(e) => return error(json!({"status": "refused", "message": e})),
            }
        }
        let Some(live) = slot.as_mut() else {
            return error(json!({"status": "refused", "message": "no session"}));
        };
        if let Some(r) = &runbook
            && *r != live.runbook
        {
            return error(json!({
                "status": "refused",
                "session": live.view.id,
                "message": format!(
                    "session {} investigates {}; call `conclude` to end it before using {r}'s tools (the next call then starts a new session)",
                    live.view.id, live.runbook
                ),
            }));
        }
        let mut rx = live.view.progress.clone();
        let handed = rx.borrow().handed;
        let now = loop {
            // Ready when the runner asks for the next proposal, holds one
            // for approval, or has ended.
            let _ = rx
                .wait_for(|p| p.asked > handed || p.ended.is_some() || awaiting(p))
                .await;
            let now = rx.borrow().clone();
            if now.ended.is_some() || now.asked > handed || awaiting(&now) {
                break now;
            }
            // Approved a moment ago: it runs; wait until it has.
            let _ = rx.wait_for(idle).await;
        };
        if now.ended.is_some() {
            let mut out = json!({
                "status": "session_ended",
                "message": failure(&now).unwrap_or_else(|| "the session ended before it could take the call".into()),
            });
            ended_into(&mut out, &live.view, &now);
            *slot = None;
            return error(out);
        }
        if now.asked <= handed {
            let state = &now.state;
            let Some(waiting) = state
                .proposals
                .iter()
                .find(|q| q.status == Status::AwaitingApproval)
            else {
                return error(json!({"status": "refused", "message": "the session is busy"}));
            };
            if !same_call(waiting, &proposal) {
                return error(json!({
                    "status": "refused",
                    "session": live.view.id,
                    "message": format!(
                        "proposal {} ({}) waits for approval; nothing else runs in this session until a person approves or rejects it (`ward approve {} {} --reason ...` / `ward reject ...`). Call `status` with the proposal id to follow it.",
                        waiting.id.short(),
                        crate::session::describe::step_label(waiting.step_id.as_deref()),
                        live.view.id,
                        waiting.id.short()
                    ),
                }));
            }
            // The same call again: where that proposal stands now.
            let id = waiting.id.clone();
            if !wait.is_zero() {
                let _ = tokio::time::timeout(wait, rx.wait_for(idle)).await;
            }
            let p = rx.borrow().clone();
            let state = &p.state;
            let mut out = state
                .proposal(&id)
                .map(|q| self.proposal_json(&live.view, q))
                .unwrap_or(Value::Null);
            ended_into(&mut out, &live.view, &p);
            return result_of(out);
        }
        let mark = now.events.last().map_or(0, |e| e.seq);
        if live.calls.send(proposal).is_err() {
            return error(
                json!({"status": "refused", "message": "the session has stopped taking calls"}),
            );
        }
        live.progress.send_modify(|p| p.handed += 1);
        let handed = handed + 1;
        let settled = |p: &Progress| {
            p.ended.is_some() || (!concluding && (p.asked > handed || awaiting_after(p, mark)))
        };
        let _ = rx.wait_for(settled).await;
        if !wait.is_zero() && awaiting_after(&rx.borrow(), mark) {
            let _ = tokio::time::timeout(wait, rx.wait_for(idle)).await;
        }
        let p = rx.borrow().clone();
        let view = live.view.clone();
        let out = self.outcome(&view, &p, mark, concluding);
        if p.ended.is_some() {
            *slot = None;
        }
        out
    }

    /// Starts a session on `runbook` (or the only runbook served).
    fn start(&self, runbook: Option<&str>, client: Value) -> Result<Live, String> {
        let runbooks = &self.inner.setup.runbooks;
        let contract = match runbook {
            Some(id) => runbooks.iter().find(|c| c.id() == id),
            None if runbooks.len() == 1 => runbooks.first(),
            None => {
                return Err(format!(
                    "no session is open and several runbooks are served: start with a runbook's step, or give `runbook` (one of {})",
                    runbooks.iter().map(Contract::id).collect::<Vec<_>>().join(", ")
                ));
            }
        }
        .ok_or_else(|| format!("no runbook `{}` is served here", runbook.unwrap_or("")))?;
        let cfg = (self.inner.setup.prepare)(contract)?;
        let view_id = cfg.session_id.clone();
        let log = cfg.log_path.clone();
        let (calls_tx, calls_rx) = mpsc::unbounded_channel();
        let (progress_tx, progress_rx) = watch::channel(Progress::default());
        let (ops_tx, ops_rx) = mpsc::unbounded_channel();
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
        let (asks_tx, mut asks_rx) = mpsc::unbounded_channel();
        let relay = Relay::new(client, calls_rx, asks_tx);
        let counter = progress_tx.clone();
        let task = tokio::spawn(async move {
            let run = runner::run(cfg, Box::new(relay), ops_rx, Some(ev_tx));
            tokio::pin!(run);
            // Events first: every event the runner sent before it asked
            // for the next proposal is in `progress` before the ask is.
            let result = loop {
                tokio::select! {
                    biased;
                    Some(e) = ev_rx.recv() => progress_tx.send_modify(|p| p.push(e)),
                    Some(()) = asks_rx.recv() => progress_tx.send_modify(|p| p.asked += 1),
                    r = &mut run => break r,
                }
            };
            while let Ok(e) = ev_rx.try_recv() {
                progress_tx.send_modify(|p| p.push(e));
            }
            let ended = match result {
                Ok((_, outcome)) => Ended::Sealed(outcome),
                Err(e) => Ended::Error(e.to_string()),
            };
            tracing::info!(?ended, "mcp session ended");
            progress_tx.send_modify(|p| p.ended = Some(ended));
        });
        let view = View {
            id: view_id,
            log,
            progress: progress_rx,
            ops: ops_tx,
        };
        if let Ok(mut shown) = self.inner.shown.lock() {
            *shown = Some(view.clone());
        }
        Ok(Live {
            view,
            runbook: contract.id().to_string(),
            calls: calls_tx,
            task,
            progress: counter,
        })
    }

    /// The answer to a proposal handed over after event `mark`.
    fn outcome(&self, view: &View, p: &Progress, mark: u64, concluding: bool) -> CallToolResult {
        let state = &p.state;
        let new: Vec<&crate::session::ProposalState> =
            state.proposals.iter().filter(|q| q.seq > mark).collect();
        if concluding && state.conclusion.is_some() {
            let mut out = json!({
                "status": "concluded",
                "session": view.id,
                "conclusion": state.conclusion,
                "recommendation": state.recommendation,
                "rechecked": new.iter().map(|q| self.proposal_json(view, q)).collect::<Vec<_>>(),
            });
            ended_into(&mut out, view, p);
            return success(out);
        }
        let refused: Vec<String> = p
            .events
            .iter()
            .filter(|e| e.seq > mark && e.kind == "agent_error")
            .filter(|e| e.data.get("refused").and_then(Value::as_bool) == Some(true))
            .filter_map(|e| {
                e.data
                    .get("message")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .collect();
        let mut out = match new.first() {
            Some(q) => self.proposal_json(view, q),
            None if !refused.is_empty() => json!({
                "status": "refused",
                "session": view.id,
                "message": refused.join("; "),
            }),
            None => json!({
                "status": "not_run",
                "session": view.id,
                "message": failure(p).unwrap_or_else(|| "the session recorded no proposal for this call".into()),
            }),
        };
        ended_into(&mut out, view, p);
        result_of(out)
    }

    /// A proposal as a client reads it: what it is and what became of it,
    /// with the summary and facts of what ran (never rows).
    fn proposal_json(&self, view: &View, q: &crate::session::ProposalState) -> Value {
        let mut out = json!({
            "status": q.status.name(),
            "session": view.id,
            "proposal": q.id.short(),
            "runbook": q.runbook,
            "step": q.step_id,
            "risk": q.risk,
            "decision": q.decision,
            "rules": self.rules(q.rules.iter().map(String::as_str)),
        });
        let Some(m) = out.as_object_mut() else {
            return out;
        };
        if !q.inputs.is_empty() {
            m.insert("inputs".into(), json!(q.inputs));
        }
        match q.status {
            Status::Done => {
                m.insert("summary".into(), json!(q.summary));
                m.insert("facts".into(), q.facts.clone().unwrap_or(Value::Null));
                m.insert("rows_seen".into(), json!(q.rows_seen));
                m.insert("duration_ms".into(), json!(q.duration_ms));
                if let Some(v) = q.verified {
                    m.insert("verified".into(), json!(v));
                }
                if !q.approvals.is_empty() {
                    m.insert("approved_by".into(), json!(operators(&q.approvals)));
                }
            }
            Status::AwaitingApproval => {
                let short = q.id.short();
                m.insert("sql".into(), json!(q.sql));
                m.insert("approvers_needed".into(), json!(q.approvers_needed));
                m.insert("approved_by".into(), json!(operators(&q.approvals)));
                if !q.roles_required.is_empty() {
                    m.insert("roles_required".into(), json!(q.roles_required));
                }
                m.insert("why".into(), json!(q.message));
                m.extend(how_to_approve(&view.id, short, self.inner.setup.team_store));
            }
            Status::Denied => {
                // The rules that deny it: the policy's deny rules and the
                // contract's own, among all that matched.
                let policy = &self.inner.setup.policy;
                let denying: Vec<&str> =
                    q.rules
                        .iter()
                        .map(String::as_str)
                        .filter(|id| {
                            id.starts_with("contract:")
                                || policy.rules.iter().any(|r| {
                                    r.id == *id && r.decision == crate::policy::Decision::Deny
                                })
                        })
                        .collect();
                m.insert("denied_by".into(), json!(denying));
                m.insert("message".into(), json!(q.message));
            }
            Status::Rejected => {
                m.insert(
                    "rejected_by".into(),
                    json!(
                        q.rejections
                            .iter()
                            .map(|(o, r)| json!({"operator": o, "reason": r}))
                            .collect::<Vec<_>>()
                    ),
                );
            }
            Status::Failed => {
                m.insert("error".into(), json!(q.error));
            }
            _ => {}
        }
        out
    }
}

/// Whether the runner holds a proposal for approvals (or for its
/// readmission and execution right after them).
fn awaiting(p: &Progress) -> bool {
    p.state
        .proposals
        .iter()
        .any(|q| q.status == Status::AwaitingApproval)
}

fn awaiting_after(p: &Progress, mark: u64) -> bool {
    p.state
        .proposals
        .iter()
        .any(|q| q.seq > mark && q.status == Status::AwaitingApproval)
}

/// Whether the runner is done with every call handed to it (and asks
/// for the next), or the session ended.
fn idle(p: &Progress) -> bool {
    p.ended.is_some() || p.asked > p.handed
}

/// Whether `proposal` asks again for the proposal `q` (same step, or the
/// same ad-hoc SQL).
fn same_call(q: &crate::session::ProposalState, proposal: &Proposal) -> bool {
    match proposal {
        Proposal::Step { step_id, .. } => q.step_id.as_deref() == Some(step_id.as_str()),
        Proposal::Adhoc { sql, .. } => q.step_id.is_none() && q.sql == *sql,
        _ => false,
    }
}

fn operators(list: &[(String, String)]) -> Vec<&str> {
    list.iter().map(|(o, _)| o.as_str()).collect()
}

/// The session-level failure the log records (cannot connect, ...).
fn failure(p: &Progress) -> Option<String> {
    p.events
        .iter()
        .rev()
        .find(|e| e.kind == "failed" && e.data.get("proposal").is_none_or(Value::is_null))
        .and_then(|e| e.data.get("message").and_then(Value::as_str))
        .map(str::to_string)
}

/// Adds how the session ended (when it did) to a result.
fn ended_into(out: &mut Value, view: &View, p: &Progress) {
    let Some(ended) = &p.ended else { return };
    let Some(m) = out.as_object_mut() else { return };
    let outcome = match ended {
        Ended::Sealed(o) => json!(o.name()),
        Ended::Error(e) => json!(format!("error: {e}")),
    };
    m.insert(
        "session_ended".into(),
        json!({
            "session": view.id,
            "outcome": outcome,
            "log": view.log,
            "verify": format!("ward audit verify {}", view.id),
            "next": "the next step or query call starts a new session",
        }),
    );
    // What failed, the likely cause and what to check, when the target
    // could not be reached.
    if let Some(d) = &p.state.unreachable
        && let Some(e) = m.get_mut("session_ended").and_then(Value::as_object_mut)
    {
        e.insert("diagnosis".into(), json!(d));
    }
}

/// A result: an error for what did not and will not run (denied,
/// rejected, failed, refused), else a success.
fn result_of(out: Value) -> CallToolResult {
    let status = out.get("status").and_then(Value::as_str).unwrap_or("");
    if matches!(
        status,
        "denied" | "rejected" | "failed" | "refused" | "not_run"
    ) {
        error(out)
    } else {
        success(out)
    }
}

fn success(v: Value) -> CallToolResult {
    CallToolResult::structured(v)
}

fn error(v: Value) -> CallToolResult {
    CallToolResult::structured_error(v)
}

/// How a person answers a proposal that waits: the commands, and where
/// they may run them (any host with a team store, where `ward attach`
/// also shows the proposal and its evidence in the TUI).
fn how_to_approve(session: &str, short: &str, team_store: bool) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert(
        "approve".into(),
        json!(format!("ward approve {session} {short} --reason \"...\"")),
    );
    m.insert(
        "reject".into(),
        json!(format!("ward reject {session} {short} --reason \"...\"")),
    );
    let place = if team_store {
        m.insert("attach".into(), json!(format!("ward attach {session}")));
        "on any host, through the team store, as their own PostgreSQL role (`ward attach` shows the proposal, its evidence and the approval dialog in the TUI there)"
    } else {
        "on this host"
    };
    m.insert(
        "next".into(),
        json!(format!(
            "A person runs the `approve` command {place} (never you: approvals are people's, and the log names who gave them), as another operator where the policy asks for distinct approvers. Then call `status` with proposal {short} (and wait_seconds), or this tool again, to get the result."
        )),
    );
    m
}

const INSTRUCTIONS: &str = "ward runs database runbooks under a policy gate. Each tool call is a proposal in a ward session with a hash-chained audit log: runbook steps are tools named RUNBOOK__STEP (typed inputs), `query` runs your own read-only SQL, `explain` shows the gate's verdict without running anything, `conclude` ends the session, `status` shows where it stands. Start with the runbook's diagnostic steps. Results carry summaries and facts, never raw rows. Changes wait for a person's approval: the result gives the proposal id and the `ward approve` command for a person to run; you cannot approve. A denied call is an error naming the policy rule; do not retry it in another form.";

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(
            Implementation::new("ward", env!("CARGO_PKG_VERSION"))
                .with_title("ward: governed database runbooks"),
        )
        .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.inner.tools.clone()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let client = context
            .peer
            .peer_info()
            .map(|i| serde_json::to_value(&i.client_info).unwrap_or(Value::Null))
            .unwrap_or_else(|| json!({"name": "unknown", "version": "?"}));
        let args = request.arguments.unwrap_or_default();
        tracing::info!(tool = %request.name, "mcp call");
        Ok(self.call(&request.name, &args, client).await.into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let mut out = vec![
            Resource::new(POLICY_URI, "policy")
                .with_title(format!("Approval policy `{}` in brief", self.inner.setup.policy.id))
                .with_description("Which statements run, which wait for whom, which never run, for this target's environment.")
                .with_mime_type("text/plain"),
        ];
        for c in &self.inner.setup.runbooks {
            let mut r = Resource::new(format!("{RUNBOOK_URI}{}", c.id()), c.id())
                .with_title(c.spec.title.clone())
                .with_mime_type("application/yaml");
            if let Some(d) = &c.spec.description {
                r = r.with_description(d.trim().to_string());
            }
            out.push(r);
        }
        Ok(ListResourcesResult::with_all_items(out))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let uri = request.uri;
        let setup = &self.inner.setup;
        let (text, mime) = if uri == POLICY_URI {
            (
                format!(
                    "policy {} ({}), environment {} of target {}:\n{}",
                    setup.policy.id,
                    setup.policy.path.display(),
                    setup.environment,
                    setup.target,
                    runner::policy_brief(&setup.policy)
                ),
                "text/plain",
            )
        } else if let Some(c) = uri
            .strip_prefix(RUNBOOK_URI)
            .and_then(|id| setup.runbooks.iter().find(|c| c.id() == id))
        {
            let text = std::fs::read_to_string(&c.path).map_err(|e| {
                McpError::internal_error(format!("cannot read {}: {e}", c.path.display()), None)
            })?;
            (text, "application/yaml")
        } else {
            return Err(McpError::resource_not_found(
                format!("no resource {uri}: ward serves {POLICY_URI} and {RUNBOOK_URI}ID"),
                None,
            ));
        };
        let mut contents = ResourceContents::text(text, uri);
        if let ResourceContents::TextResourceContents { mime_type, .. } = &mut contents {
            *mime_type = Some(mime.into());
        }
        Ok(ReadResourceResult::new(vec![contents]).into())
    }
}

/// The policy in brief.
pub const POLICY_URI: &str = "ward://policy";
/// A runbook's contract: this prefix and its id.
pub const RUNBOOK_URI: &str = "ward://runbooks/";

#[cfg(test)]
mod tests {
    use super::*;

    /// A server over the repository's runbooks `ids` and default policy,
    /// in `environment`, that cannot start a session (nothing here may).
    fn server(ids: &[&str], environment: &str) -> Server {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let analyzer = crate::sql::Analyzer::default();
        let (all, _) = crate::contract::load_dir(&root.join("runbooks"), &analyzer);
        let runbooks: Vec<Contract> = all.into_iter().filter(|c| ids.contains(&c.id())).collect();
        assert_eq!(runbooks.len(), ids.len());
        let doc = crate::yaml::Doc::read(&root.join("policies/default.yaml")).expect("policy");
        let policy = crate::policy::load_doc(&doc).expect("policy loads");
        Server::new(Setup {
            runbooks,
            policy,
            analyzer,
            target: "orders".into(),
            engine: crate::sql::Engine::Postgres,
            environment: environment.into(),
            team_store: false,
            prepare: Box::new(|c| Err(format!("no session may start here ({})", c.id()))),
        })
    }

    #[test]
    fn a_waiting_proposal_says_where_people_approve_it_any_host_only_with_a_team_store() {
        let local = how_to_approve("S1", "abcdef012345", false);
        assert_eq!(
            local["approve"],
            json!("ward approve S1 abcdef012345 --reason \"...\"")
        );
        assert!(local.get("attach").is_none());
        assert!(
            local["next"]
                .as_str()
                .is_some_and(|n| n.contains("on this host"))
        );
        let team = how_to_approve("S1", "abcdef012345", true);
        assert_eq!(team["attach"], json!("ward attach S1"));
        assert_eq!(team["approve"], local["approve"]);
        assert!(
            team["next"]
                .as_str()
                .is_some_and(|n| n.contains("any host, through the team store"))
        );
    }

    fn args(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn client() -> Value {
        json!({"name": "test", "version": "0"})
    }

    #[tokio::test]
    async fn explain_gives_the_verdict_with_the_rules_messages_and_starts_no_session() {
        let s = server(&["pg-lock-contention"], "prod");
        let r = s
            .call(
                "explain",
                &args(json!({"sql": "DROP TABLE public.orders"})),
                client(),
            )
            .await;
        assert_eq!(r.is_error, Some(false));
        let v = r.structured_content.expect("structured");
        assert_eq!(v["risk"], "destructive");
        assert_eq!(v["decision"], "approve");
        assert_eq!(v["approvers"], 2);
        assert!(
            v["rules"].as_array().expect("rules").iter().any(|r| r["id"]
                == "prod-destructive-two-person"
                && r["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("two people"))),
            "{v}"
        );
        let status = s.call("status", &Map::new(), client()).await;
        assert_eq!(
            status.structured_content.expect("structured")["session"],
            Value::Null
        );
    }

    #[tokio::test]
    async fn a_query_with_no_session_and_several_runbooks_asks_which_one() {
        let s = server(&["pg-lock-contention", "pg-idle-in-transaction"], "dev");
        let r = s
            .call(
                "query",
                &args(json!({"sql": "SELECT 1", "reason": "look"})),
                client(),
            )
            .await;
        assert_eq!(r.is_error, Some(true));
        let v = r.structured_content.expect("structured");
        assert_eq!(v["status"], "refused");
        assert_eq!(
            v["message"],
            "no session is open and several runbooks are served: start with a runbook's step, or give `runbook` (one of pg-idle-in-transaction, pg-lock-contention)"
        );
    }

    #[tokio::test]
    async fn a_session_that_cannot_be_prepared_is_a_refused_call_and_nothing_to_conclude() {
        let s = server(&["pg-lock-contention"], "dev");
        let step = s
            .call("pg-lock-contention__lock_headline", &Map::new(), client())
            .await;
        assert_eq!(step.is_error, Some(true));
        assert_eq!(
            step.structured_content.expect("structured")["message"],
            "no session may start here (pg-lock-contention)"
        );
        let conclude = s
            .call("conclude", &args(json!({"diagnosis": "done"})), client())
            .await;
        assert_eq!(
            conclude.structured_content.expect("structured")["message"],
            "no session is open: there is nothing to conclude"
        );
    }
}
