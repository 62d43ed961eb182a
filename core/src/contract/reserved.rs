//! Names a runbook step cannot take, because ward or its agent already
//! uses them.
//!
//! They live here, below the agent: the contract refuses them as step ids
//! and the agent's tools are named after them, so the dependency runs one
//! way (agent → contract). Nothing here may depend on the agent.

/// The agent's tool for its own read-only SQL.
pub const ADHOC_TOOL: &str = "adhoc_query";

/// The agent's tool that ends an investigation.
pub const CONCLUDE_TOOL: &str = "conclude";

/// The OpenAI agent's one tool for every step of the runbook (its
/// `step` argument names the step).
pub const RUN_STEP_TOOL: &str = "run_step";

/// What ward calls an ad-hoc query where a step id would stand.
pub const ADHOC_STEP_ID: &str = "adhoc";

/// Every name a step cannot have.
pub const RESERVED_STEP_IDS: &[&str] = &[ADHOC_STEP_ID, ADHOC_TOOL, CONCLUDE_TOOL, RUN_STEP_TOOL];

/// Whether a step may not be called `id`.
pub fn is_reserved(id: &str) -> bool {
    RESERVED_STEP_IDS.contains(&id)
}
