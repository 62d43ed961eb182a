//! ward: on-call database work with runbook contracts, a SQL risk gate and
//! an audit trail.
//!
//! The library is the core: it never prints and knows nothing of terminals.
//! The `ward` binary's `cli` module is a thin front end over it.

#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod agent;
pub mod audit;
pub mod catalog;
pub mod check;
pub mod config;
pub mod contract;
pub mod diag;
pub mod evidence;
pub mod exec;
pub mod explain;
pub mod expr;
pub mod gate;
pub mod policy;
pub mod scenario;
pub mod session;
pub mod sql;
pub mod tui;
pub mod yaml;
