//! The agent of a `ward mcp` session: the MCP client itself. Each of its
//! turns is the next tool call, relayed over a channel; the runner then
//! resolves, gates and runs it like any agent's proposal. The relay never
//! proposes anything of its own (no planner behind it, no hand-over), and
//! it has no way to approve: approvals come through the runner's ops and
//! the inbox, from people.

use serde_json::Value;
use tokio::sync::mpsc;

use crate::agent::{Agent, AgentFuture, AgentView, Proposal, Turn};
use crate::audit::Event;
use crate::session::runner::Outcome;

/// What the server knows of its running session: every event so far (as
/// the runner sent them), how many times the runner asked the relay for a
/// proposal, and how the session ended.
#[derive(Debug, Default, Clone)]
pub struct Progress {
    pub events: Vec<Event>,
    /// The events folded, as they came.
    pub state: crate::session::SessionState,
    /// Times the runner asked for the next proposal: one more than the
    /// proposals handed over means it finished with the last one.
    pub asked: u64,
    /// Proposals the server handed to the runner (through the relay).
    pub handed: u64,
    pub ended: Option<Ended>,
}

impl Progress {
    /// Takes in the runner's next event.
    pub fn push(&mut self, e: Event) {
        if let Ok(d) = crate::session::EventData::from_parts(&e.kind, &e.data) {
            self.state.apply(e.seq, &e.ts, &e.hash, &d);
        }
        self.events.push(e);
    }
}

/// How a session's task finished.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    /// Sealed with this outcome.
    Sealed(Outcome),
    /// The log could not be written (the session could not go on).
    Error(String),
}

/// The [`Agent`] whose turns are the MCP client's tool calls.
pub struct Relay {
    describe: Value,
    calls: mpsc::UnboundedReceiver<Proposal>,
    /// One message per time the runner asks. A channel, not a counter: the
    /// server reads it after the events the runner sent before asking, so
    /// a call is answered from the events of its own proposal.
    asks: mpsc::UnboundedSender<()>,
    /// The conclusion handed over last. The runner asks again after a
    /// conclusion only when the runbook's rechecks had to run first; it
    /// gets the same conclusion, not a new question to the client.
    concluding: Option<Proposal>,
}

impl Relay {
    /// A relay for the client named `client` (its `initialize` clientInfo),
    /// reading proposals from `calls` and saying on `asks` when the runner
    /// asks for one.
    pub fn new(
        client: Value,
        calls: mpsc::UnboundedReceiver<Proposal>,
        asks: mpsc::UnboundedSender<()>,
    ) -> Relay {
        let name = client.get("name").and_then(Value::as_str).unwrap_or("?");
        let version = client.get("version").and_then(Value::as_str).unwrap_or("?");
        Relay {
            describe: serde_json::json!({
                "provider": "mcp",
                "model": format!("{name} {version}"),
                "client": client,
            }),
            calls,
            asks,
            concluding: None,
        }
    }
}

impl Agent for Relay {
    fn describe(&self) -> Value {
        self.describe.clone()
    }

    fn next<'a>(&'a mut self, _view: &'a AgentView<'a>) -> AgentFuture<'a> {
        Box::pin(async move {
            if let Some(c) = &self.concluding {
                return Ok(Turn::plain(c.clone()));
            }
            let _ = self.asks.send(());
            // The server cancels the session before it drops the channel
            // (the runner checks for the cancel before acting on this), so
            // a closed channel never turns into a step.
            let proposal = self.calls.recv().await.unwrap_or(Proposal::Conclude {
                diagnosis: "the MCP client went away before concluding".into(),
                recommendation: None,
            });
            if matches!(proposal, Proposal::Conclude { .. }) {
                self.concluding = Some(proposal.clone());
            }
            Ok(Turn::plain(proposal))
        })
    }

    fn may_hand_over(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Contract;

    fn view_parts() -> (Contract, crate::session::SessionState, Value) {
        let analyzer = crate::sql::Analyzer::default();
        let (contracts, problems) = crate::contract::load_dir(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks"),
            &analyzer,
        );
        assert!(problems.is_empty(), "{problems:?}");
        let c = contracts
            .into_iter()
            .find(|c| c.id() == "pg-lock-contention")
            .expect("pg-lock-contention loads");
        (c, Default::default(), serde_json::json!({}))
    }

    #[tokio::test]
    async fn a_relayed_conclusion_is_repeated_when_the_runner_asks_again_after_rechecks() {
        let (tx, rx) = mpsc::unbounded_channel();
        let (asks, mut asked) = mpsc::unbounded_channel();
        let mut relay = Relay::new(
            serde_json::json!({"name": "claude-code", "version": "2.1.0"}),
            rx,
            asks,
        );
        assert_eq!(relay.describe()["model"], "claude-code 2.1.0");
        assert!(!relay.may_hand_over());
        let (contract, state, inputs) = view_parts();
        let view = AgentView {
            contract: &contract,
            state: &state,
            inputs: &inputs,
            environment: "dev",
            policy_brief: "",
            budget: Default::default(),
        };
        let conclude = Proposal::Conclude {
            diagnosis: "a forgotten transaction held the row lock".into(),
            recommendation: None,
        };
        tx.send(conclude.clone()).expect("relay listens");
        let first = relay.next(&view).await.expect("a turn");
        assert_eq!(first.proposal, conclude);
        assert_eq!(asked.try_recv(), Ok(()));
        // Asked again (the rechecks ran): the same conclusion, and the
        // client is not asked for another call.
        let again = relay.next(&view).await.expect("a turn");
        assert_eq!(again.proposal, conclude);
        assert!(asked.try_recv().is_err());
    }
}
