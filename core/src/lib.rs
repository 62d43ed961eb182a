//! ward-core: runbook contracts, the SQL risk gate, approval policies, the
//! agent, evidence summarizers, executors and the hash-chained audit log.
//!
//! This crate is the core every front end stands on. It never prints, knows
//! nothing of terminals or argument parsing, and depends on no front end:
//! the TUI, the command line and `ward test` live in the `ward` package
//! above it, and the dependency only ever points down, into this crate.

#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod advisor;
pub mod agent;
pub mod alerts;
pub mod audit;
pub mod catalog;
pub mod config;
pub mod contract;
pub mod diag;
pub mod evidence;
pub mod exec;
pub mod expr;
pub mod gate;
pub mod journal;
pub mod platform;
pub mod policy;
pub mod session;
pub mod sql;
pub mod store;
pub mod text;
pub mod yaml;
