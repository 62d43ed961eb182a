//! ward's integration tests: one binary, a small harness (a temp repository,
//! a helper that runs `ward` and shows its output when an assertion fails).

mod check;
mod explain;
mod fuzz;
mod harness;
