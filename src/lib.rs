//! ward: on-call database work with runbook contracts, a SQL risk gate and
//! an audit trail.
//!
//! The library is the core: it never prints and knows nothing of terminals.
//! The `ward` binary's `cli` module is a thin front end over it.

pub mod sql;
