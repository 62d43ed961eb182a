//! Sessions: the event log is the single source of truth; state is a fold
//! over it.

pub mod backend;
pub mod describe;
pub mod events;
pub mod inbox;
pub mod markdown;
pub mod runner;
pub mod state;

pub use events::EventData;
pub use state::{ProposalState, SessionState, Status};
