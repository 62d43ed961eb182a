//! The session's side of the team store: starting the background mirror
//! (after a bounded schema check) and logging its health as it changes
//! (`store_unreachable`, `store_caught_up`). The mirror never fails or
//! holds up the session; only the local log decides what happened.

use std::time::Duration;

use crate::audit::Event;
use crate::journal::events::*;

use super::{RunError, Runner};

/// What the session log last said about the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StoreSaid {
    Ok,
    Unreachable,
    Stopped,
}

/// How long a session waits at seal for the store to catch up.
pub const STORE_SEAL_WAIT: Duration = Duration::from_secs(3);

/// How long a session waits at start for the store's schema version.
pub const STORE_CHECK_WAIT: Duration = Duration::from_secs(1);

impl Runner {
    /// Starts mirroring to the team store, if one is configured, handing
    /// it `earlier` events first (a resumed session's). A store at another
    /// schema version, or one that refuses, is not mirrored to: the error
    /// is returned for the log (which may not have begun yet).
    pub(super) async fn start_mirror(&mut self, earlier: &[Event]) -> Option<String> {
        let link = self.cfg.store.as_ref()?;
        // Bounded: a store that is down must not hold the session up.
        let check = tokio::time::timeout(STORE_CHECK_WAIT, link.store.check_schema()).await;
        match check {
            Ok(Err(e)) if !e.is_unreachable() => {
                tracing::warn!("store: not mirroring session {}: {e}", self.cfg.session_id);
                return Some(e.to_string());
            }
            // Unreachable now: the mirror retries and catches up.
            Ok(_) | Err(_) => {}
        }
        let m =
            crate::store::mirror::Mirror::start(link.store.clone(), self.cfg.session_id.clone());
        for e in earlier {
            m.push(e.clone());
        }
        self.mirror = Some(m);
        None
    }

    /// Logs a store that refused at start (mirroring never began).
    pub(super) fn store_refused(&mut self, refused: Option<String>) -> Result<(), RunError> {
        let Some(error) = refused else {
            return Ok(());
        };
        let behind = self.state.last_seq.map_or(0, |l| l + 1);
        self.store_said = StoreSaid::Stopped;
        self.append(EventData::StoreUnreachable(StoreUnreachable {
            error,
            behind,
            stopped: true,
        }))?;
        Ok(())
    }

    /// Logs a change in the store mirror's health since the log last said
    /// (unreachable, stopped, caught up).
    pub(super) fn store_news(&mut self) -> Result<(), RunError> {
        use crate::store::mirror::Health;
        let Some(m) = &self.mirror else {
            return Ok(());
        };
        let s = m.status();
        let news = match (&s.health, self.store_said) {
            (Health::Unreachable { error }, StoreSaid::Ok) => Some((
                StoreSaid::Unreachable,
                EventData::StoreUnreachable(StoreUnreachable {
                    error: error.clone(),
                    behind: s.behind(),
                    stopped: false,
                }),
            )),
            (Health::Stopped { error }, StoreSaid::Ok | StoreSaid::Unreachable) => Some((
                StoreSaid::Stopped,
                EventData::StoreUnreachable(StoreUnreachable {
                    error: error.clone(),
                    behind: s.behind(),
                    stopped: true,
                }),
            )),
            (Health::Ok, StoreSaid::Unreachable) => Some((
                StoreSaid::Ok,
                EventData::StoreCaughtUp(StoreCaughtUp {
                    events: s.since_outage,
                }),
            )),
            _ => None,
        };
        if let Some((said, e)) = news {
            self.store_said = said;
            self.append(e)?;
        }
        Ok(())
    }

    /// Before the seal: gives the store a bounded time to catch up;
    /// whether it did.
    pub(super) async fn store_settle(&mut self) -> bool {
        match &self.mirror {
            Some(m) => m.wait_caught_up(STORE_SEAL_WAIT).await.behind() == 0,
            None => false,
        }
    }

    /// After the seal: waits (bounded) for the seal to reach a store that
    /// kept up, and says in the log file what it still lacks.
    pub(super) async fn store_flush(&mut self, store_up: bool) {
        let Some(m) = &self.mirror else {
            return;
        };
        let s = if store_up {
            m.wait_caught_up(STORE_SEAL_WAIT).await
        } else {
            m.status()
        };
        if s.behind() > 0 {
            tracing::warn!(
                "store: session {} sealed with {} events not in the store; `ward store sync {}` pushes them",
                self.cfg.session_id,
                s.behind(),
                self.cfg.session_id
            );
        }
    }
}
