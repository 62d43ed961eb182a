//! The session journal: the events a session log holds, the state folded
//! from them, and their one description in words (and as Markdown).
//!
//! This is data, below everything that acts on it: the agent reads the
//! state to plan, the runner (`session::runner`) writes the events, the
//! front ends show them. It never imports the agent or the runner, so the
//! dependency between them points one way.

pub mod describe;
pub mod events;
pub mod markdown;
pub mod state;

pub use events::EventData;
pub use state::{ProposalState, SessionState, Status};
