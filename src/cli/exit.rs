//! How `ward` exits: one type for every command, and the table `ward --help`
//! and the README print. Commands return an [`Exit`]; nothing else in the
//! binary spells a number.

use std::fmt::Display;

use ward::audit::Verification;
use ward::session::runner::Outcome;

/// The outcome of a command, as the process exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The command did what was asked: check clean, step ran, session
    /// concluded, log chain intact, every scenario passed.
    Success,
    /// Findings or a failure: problems found, a step, session or scenario
    /// failed, a role has too much privilege, a log was tampered with.
    Failed,
    /// Usage or configuration error: bad arguments, a bad `ward.yaml`, a
    /// missing directory, nothing to connect to.
    Usage,
    /// A session or step stopped at a step that needs approval (not run).
    NeedsApproval,
    /// `ward audit verify`: a log is truncated or unsealed (crashed or still
    /// running). Shares its code with [`Exit::NeedsApproval`]: both mean
    /// "not finished", and no command can end in both.
    Incomplete,
    /// A step was denied by the policy (not run).
    Denied,
    /// A session concluded after a change ran, but the runbook's recheck
    /// shows the incident is still there.
    Persists,
    /// A session could not connect to its target; the report and the log
    /// say what failed, the likely cause and what to check next.
    Unreachable,
}

impl Exit {
    /// Every exit, in the order of the table.
    pub const ALL: [Exit; 8] = [
        Exit::Success,
        Exit::Failed,
        Exit::Usage,
        Exit::NeedsApproval,
        Exit::Incomplete,
        Exit::Denied,
        Exit::Persists,
        Exit::Unreachable,
    ];

    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failed => 1,
            Exit::Usage => 2,
            Exit::NeedsApproval | Exit::Incomplete => 3,
            Exit::Denied => 4,
            Exit::Persists => 5,
            Exit::Unreachable => 6,
        }
    }

    /// What the code means, as the help and the README put it.
    pub fn meaning(self) -> &'static str {
        match self {
            Exit::Success => "success (check clean, step ran, session concluded, log chain intact)",
            Exit::Failed => {
                "findings or failure (problems found, a step or session failed, a log tampered with)"
            }
            Exit::Usage => "usage or configuration error",
            Exit::NeedsApproval => "run, step, resume, demo: stopped at a step that needs approval",
            Exit::Incomplete => "audit verify: a log is truncated or unsealed",
            Exit::Denied => "run, step, resume, demo: a step was denied",
            Exit::Persists => {
                "run, resume, demo: concluded after a change, but the recheck shows the incident persists"
            }
            Exit::Unreachable => {
                "run, step, resume: could not connect to the target; store sync: to the store"
            }
        }
    }

    /// Of two outcomes of one command over several things (`ward audit
    /// verify --all`), the one to exit with: tampering outranks an
    /// unfinished log, which outranks an unreadable one.
    pub fn worst(self, other: Exit) -> Exit {
        let rank = |e: Exit| match e {
            Exit::Success => 0,
            Exit::Usage => 1,
            Exit::NeedsApproval
            | Exit::Incomplete
            | Exit::Denied
            | Exit::Persists
            | Exit::Unreachable => 2,
            Exit::Failed => 3,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

/// How a session's outcome exits `run`, `resume` and `demo`.
impl From<Outcome> for Exit {
    fn from(outcome: Outcome) -> Exit {
        match outcome {
            Outcome::Concluded => Exit::Success,
            Outcome::Persists => Exit::Persists,
            Outcome::AwaitingApproval => Exit::NeedsApproval,
            Outcome::Denied => Exit::Denied,
            Outcome::Failed | Outcome::Cancelled => Exit::Failed,
            Outcome::Unreachable => Exit::Unreachable,
        }
    }
}

/// How `ward audit verify` exits for one log.
impl From<&Verification> for Exit {
    fn from(v: &Verification) -> Exit {
        match v {
            Verification::Ok { .. } => Exit::Success,
            Verification::Tampered { .. } => Exit::Failed,
            Verification::Truncated { .. } | Verification::Unsealed { .. } => Exit::Incomplete,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> std::process::ExitCode {
        std::process::ExitCode::from(e.code())
    }
}

/// The exit-code table, one line per code, for `ward --help`.
pub fn table() -> String {
    let mut out = String::from("Exit codes:");
    for e in Exit::ALL {
        out.push_str(&format!("\n  {}  {}", e.code(), e.meaning()));
    }
    out.push_str("\nEach command's --help lists its own.");
    out
}

/// Prints `error: {e}` on stderr; the exit for a usage or configuration
/// error.
pub fn usage(e: impl Display) -> Exit {
    errln!("error: {e}");
    Exit::Usage
}

/// An error at the command-line edge: any library error (its sources kept)
/// or a message of the binary's own. Printed once, by the command.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
