//! ward's front ends: the terminal UI, the `ward test` scenario runner,
//! the `check` / `explain` commands and the MCP server, over the
//! `ward-core` crate.
//!
//! Everything that decides (contracts, the gate, policies, the agent,
//! executors, the audit log) lives in `ward-core`, which builds without any
//! of this. The core's modules are re-exported here so the front ends and
//! the integration tests can name `ward::session` as one crate; nothing in
//! the core can name anything here.

#![deny(clippy::print_stdout, clippy::print_stderr)]

pub use ward_core::{
    agent, alerts, audit, catalog, config, contract, diag, evidence, exec, expr, gate, journal,
    platform, policy, session, sql, store, text, yaml,
};

pub mod check;
pub mod explain;
pub mod mcp;
pub mod scenario;
pub mod tui;
