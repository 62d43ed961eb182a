//! Sessions: the runner that drives one (planner -> gate -> approvals ->
//! execution, every moment logged first), the backends its statements go
//! to, the inbox other operators' approvals arrive in, and the hand-off
//! from one runbook's conclusion to the next runbook.
//!
//! The events and the state folded from them live below, in `journal`
//! (re-exported here): the agent reads them without depending on the
//! runner that imports the agent.

pub mod backend;
pub mod handoff;
pub mod inbox;
pub mod runner;

pub use crate::journal::{EventData, ProposalState, SessionState, Status};
pub use crate::journal::{describe, events, markdown, state};
