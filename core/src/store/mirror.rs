//! Mirroring a running session's events to the team store, in the
//! background: the runner hands over each event after its local fsync and
//! never waits for the store (except, briefly, at seal).
//!
//! Events are appended in order, one transaction per event while the
//! mirror keeps up and in batches when it is behind. An unreachable store
//! is retried with backoff (at most 2 s apart) and caught up when it is
//! back; the store's primary key and hash check make a retry harmless. A
//! refusal or a divergence stops mirroring for the session. This module
//! never prints and never fails the session: it reports its health for
//! the runner to log.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use super::{Store, StoreError};
use crate::audit::Event;

/// Events appended in one transaction at most when catching up.
pub const BATCH: usize = 500;

/// The longest pause between two attempts on an unreachable store.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How long one append may take before the store counts as unreachable.
const APPEND_TIMEOUT: Duration = Duration::from_secs(5);

/// The mirror's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Every event handed over so far is stored, or on its way.
    Ok,
    /// The store cannot be reached; retrying.
    Unreachable { error: String },
    /// The store refused or diverged; mirroring ended.
    Stopped { error: String },
}

/// What the mirror has done so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorStatus {
    pub health: Health,
    /// Events handed over.
    pub pushed: u64,
    /// Events the store holds (appended now or found already there).
    pub stored: u64,
    /// Events appended since the last outage began (0 when none).
    pub since_outage: u64,
}

impl MirrorStatus {
    /// Events handed over that the store does not hold yet.
    pub fn behind(&self) -> u64 {
        self.pushed.saturating_sub(self.stored)
    }
}

struct Shared {
    status: Mutex<MirrorStatus>,
    changed: Notify,
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut MirrorStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
        self.changed.notify_waiters();
    }

    fn get(&self) -> MirrorStatus {
        match self.status.lock() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// The runner's handle on a session's mirror task.
pub struct Mirror {
    tx: mpsc::UnboundedSender<Event>,
    shared: Arc<Shared>,
}

impl Mirror {
    /// Starts mirroring `session` (call inside a Tokio runtime); events
    /// are appended in the order they are pushed, from seq 0 (a resumed
    /// session pushes its earlier events first: those already stored are
    /// skipped by hash).
    pub fn start(store: Store, session: String) -> Mirror {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            status: Mutex::new(MirrorStatus {
                health: Health::Ok,
                pushed: 0,
                stored: 0,
                since_outage: 0,
            }),
            changed: Notify::new(),
        });
        tokio::spawn(run(store, session, rx, shared.clone()));
        Mirror { tx, shared }
    }

    /// Hands an event over (already fsynced locally). Never blocks.
    pub fn push(&self, event: Event) {
        self.shared.update(|s| s.pushed += 1);
        if self.tx.send(event).is_err() {
            tracing::warn!("store mirror: the task has ended; event not mirrored");
        }
    }

    /// The mirror's status now.
    pub fn status(&self) -> MirrorStatus {
        self.shared.get()
    }

    /// Waits up to `limit` for the store to hold every event handed over
    /// (or for mirroring to have stopped); returns the status then.
    pub async fn wait_caught_up(&self, limit: Duration) -> MirrorStatus {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let changed = self.shared.changed.notified();
            let s = self.status();
            if s.behind() == 0 || matches!(s.health, Health::Stopped { .. }) {
                return s;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.status();
            }
        }
    }
}

async fn run(
    store: Store,
    session: String,
    mut rx: mpsc::UnboundedReceiver<Event>,
    shared: Arc<Shared>,
) {
    let mut queue: VecDeque<Event> = VecDeque::new();
    let mut backoff = Duration::from_millis(100);
    let mut stopped = false;
    loop {
        if queue.is_empty() {
            match rx.recv().await {
                Some(e) => queue.push_back(e),
                None => return,
            }
        }
        while let Ok(e) = rx.try_recv() {
            queue.push_back(e);
        }
        if stopped {
            // The events stay local; `ward store sync` says why.
            queue.clear();
            continue;
        }
        let n = queue.len().min(BATCH);
        let batch: Vec<Event> = queue.iter().take(n).cloned().collect();
        let result =
            match tokio::time::timeout(APPEND_TIMEOUT, store.append(&session, &batch)).await {
                Ok(r) => r,
                Err(_) => Err(StoreError::Unreachable {
                    url: store.url().to_string(),
                    message: format!("no answer in {} s", APPEND_TIMEOUT.as_secs()),
                }),
            };
        match result {
            Ok(_) => {
                queue.drain(..n);
                backoff = Duration::from_millis(100);
                shared.update(|s| {
                    s.stored += n as u64;
                    if s.health != Health::Ok {
                        s.since_outage += n as u64;
                        if queue.is_empty() && s.stored >= s.pushed {
                            s.health = Health::Ok;
                        }
                    }
                });
            }
            Err(e) if e.is_unreachable() => {
                let error = e.to_string();
                tracing::warn!(session = %session, "store unreachable, retrying: {error}");
                shared.update(|s| {
                    if s.health == Health::Ok {
                        s.since_outage = 0;
                    }
                    s.health = Health::Unreachable { error };
                });
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) => {
                let error = e.to_string();
                tracing::warn!(session = %session, "store refused, mirroring stopped: {error}");
                shared.update(|s| s.health = Health::Stopped { error });
                stopped = true;
                queue.clear();
            }
        }
    }
}
