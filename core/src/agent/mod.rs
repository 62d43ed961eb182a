//! The agent proposes; it never decides.
//!
//! An [`Agent`] looks at a read-only [`AgentView`] of the session (the
//! contract, the facts and summaries so far, the verdicts, the budget) and
//! returns a [`Proposal`]. Everything it says is data: a proposal goes
//! through the contract, the analyzer and the gate like any other, and no
//! agent has a way to approve, to lower a risk class, or to reach SQL text
//! except through a runbook step's bound inputs or an ad-hoc query that the
//! gate classifies from its own text.
//!
//! Providers: [`offline`] (deterministic, the default), [`replay`] (a
//! scripted transcript for tests, demos and `ward test`) and [`openai`] (any
//! OpenAI-compatible chat-completions endpoint).

pub mod offline;
pub mod openai;
pub mod outcome;
pub mod replay;
pub mod tools;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::contract::Contract;
use crate::journal::SessionState;

/// What an agent wants to happen next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Proposal {
    /// Run a runbook step, with inputs that override the session's.
    Step {
        step_id: String,
        #[serde(default)]
        inputs: BTreeMap<String, Value>,
        #[serde(default)]
        rationale: Option<String>,
    },
    /// Run the agent's own SQL (only where the contract says `adhoc:
    /// read_only`; the gate still classifies it from the text).
    Adhoc { sql: String, reason: String },
    /// Ask the human something.
    Ask { question: String },
    /// End the investigation with a diagnosis.
    Conclude {
        diagnosis: String,
        #[serde(default)]
        recommendation: Option<String>,
    },
}

/// Tokens reported by a model's API for one turn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Of `prompt_tokens`, how many the provider served from its prompt
    /// cache (`usage.prompt_tokens_details.cached_tokens`; 0 when the
    /// server does not say).
    #[serde(default)]
    pub cached_prompt_tokens: u64,
}

impl Usage {
    pub fn total(self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// One answer from an agent: the proposal, what it cost, and the problems
/// met on the way (tool errors fed back to a model, retries), each of which
/// the session logs as an `agent_error`.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub proposal: Proposal,
    pub usage: Usage,
    pub notes: Vec<String>,
}

impl Turn {
    pub fn plain(proposal: Proposal) -> Turn {
        Turn {
            proposal,
            usage: Usage::default(),
            notes: Vec::new(),
        }
    }
}

/// An agent that cannot go on (the model is unreachable for good, the
/// budget is spent, the transcript ended). The session says so and goes on
/// with the offline planner.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct AgentFailure {
    pub message: String,
    /// Tokens spent before the failure.
    pub usage: Usage,
    pub notes: Vec<String>,
}

impl AgentFailure {
    pub fn new(message: impl Into<String>) -> AgentFailure {
        AgentFailure {
            message: message.into(),
            usage: Usage::default(),
            notes: Vec::new(),
        }
    }
}

/// The token budget of a session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budget {
    pub used: u64,
    pub limit: Option<u64>,
}

/// A read-only view of the session for an agent.
pub struct AgentView<'a> {
    pub contract: &'a Contract,
    pub state: &'a SessionState,
    /// The session's inputs with the contract's defaults applied.
    pub inputs: &'a Value,
    pub environment: &'a str,
    /// The policy in short, one line per rule, for a model's system prompt.
    pub policy_brief: &'a str,
    pub budget: Budget,
}

impl AgentView<'_> {
    /// The facts so far as one object keyed by step id.
    pub fn facts(&self) -> Value {
        self.state.facts_value()
    }
}

pub type AgentFuture<'a> = Pin<Box<dyn Future<Output = Result<Turn, AgentFailure>> + Send + 'a>>;

/// Proposes the next step of a session.
pub trait Agent: Send {
    /// `{"provider": ..., "model": ...}` for the session log.
    fn describe(&self) -> Value;

    /// The next proposal, given everything so far.
    fn next<'a>(&'a mut self, view: &'a AgentView<'a>) -> AgentFuture<'a>;

    /// The session's token budget, when the agent has one.
    fn token_budget(&self) -> Option<u64> {
        None
    }

    /// A resumed session has played this many turns already (a scripted
    /// agent moves past them; others ignore it).
    fn skip_turns(&mut self, _turns: usize) {}

    /// The session handed off to another runbook: what follows is that
    /// runbook's (a conversation about the last one starts afresh; the
    /// budget stays the session's).
    fn handed_off(&mut self) {}

    /// Whether ward may stop this agent and go on with the offline planner
    /// after repeated denials or mistakes. An agent that relays the
    /// operator's own client (`ward mcp`) is never replaced: every refusal
    /// is answered to it, and nothing is proposed but what it asks for.
    fn may_hand_over(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_view_can_cross_threads() {
        fn sync<T: Sync>() {}
        sync::<super::AgentView<'_>>();
    }
}
