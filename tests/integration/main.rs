//! ward's integration tests: one binary, a small harness (a temp repository,
//! a helper that runs `ward` and shows its output when an assertion fails).

mod admission;
mod agent_openai;
mod audit_logs;
mod check;
mod data_runbooks;
mod demo;
mod exec;
mod exit_codes;
mod explain;
mod failover;
mod fuzz;
mod handoff;
mod harness;
mod health_runbooks;
mod hostile;
mod index_advice;
mod outcome;
mod pg;
mod pg_harness_selftest;
mod planner_e2e;
mod repl_runbooks;
mod resume;
mod roles;
mod run;
mod runbook_scope;
mod scenarios;
mod secrets;
mod serve;
mod session_props;
mod settings;
mod step_session;
mod store;
mod store_approvals;
mod tui_tmux;
mod versions;
