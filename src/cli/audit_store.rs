//! `ward audit ... --store`: sessions read from the team store (every
//! host's), rebuilt from the stored lines and verified like local logs;
//! and `ward audit verify`'s check of a local log against the store's copy.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::audit::{ExportFormat, columns, verdict_words};
use super::exit::Exit;
use ward::audit::{Event, Verification};
use ward::config::Config;
use ward::evidence::plural;
use ward::session::SessionState;
use ward::session::describe::Timeline;
use ward::store::check::{self, StoredLog};
use ward::store::{Store, StoreError};

/// How long one read from the store may take.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A runtime and the store ward.yaml configures.
pub(super) struct Opened {
    pub runtime: tokio::runtime::Runtime,
    pub store: Store,
}

impl Opened {
    pub fn new(config: &Config) -> Result<Opened, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the async runtime: {e}"))?;
        let store = super::store::open(config)?;
        Ok(Opened { runtime, store })
    }

    /// Runs one store call, bounded in time.
    pub fn call<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.runtime
            .block_on(async { tokio::time::timeout(READ_TIMEOUT, f).await })
            .unwrap_or_else(|_| {
                Err(StoreError::Unreachable {
                    url: self.store.url().to_string(),
                    message: format!("no answer in {} s", READ_TIMEOUT.as_secs()),
                })
            })
    }

    /// A stored session's full id from an id or unique prefix.
    fn find(&self, id: &str) -> Result<String, String> {
        let sessions = self
            .call(self.store.sessions())
            .map_err(|e| e.to_string())?;
        let hits: Vec<&str> = sessions
            .iter()
            .map(|s| s.session_id.as_str())
            .filter(|s| s.starts_with(id))
            .collect();
        match hits.as_slice() {
            [one] => Ok((*one).to_string()),
            [] => Err(format!(
                "no session `{id}` in the store {}; `ward audit list --store` shows them",
                self.store.url()
            )),
            many => Err(format!(
                "`{id}` matches {} stored sessions; give more of the id",
                many.len()
            )),
        }
    }

    /// A stored session rebuilt from its rows and verified.
    fn log(&self, id: &str) -> Result<StoredLog, String> {
        let rows = self
            .call(self.store.events(id))
            .map_err(|e| e.to_string())?;
        Ok(check::rebuild(&rows))
    }
}

fn opened(config: &Config) -> Result<Opened, Exit> {
    Opened::new(config).map_err(|e| {
        errln!("error: {e}");
        Exit::Usage
    })
}

/// `ward audit list --store`.
pub fn list(config: &Config) -> Exit {
    let o = match opened(config) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let sessions = match o.call(o.store.sessions()) {
        Ok(s) => s,
        Err(e) => {
            errln!("error: {e}");
            return Exit::Usage;
        }
    };
    let mut rows = vec![
        [
            "session", "started", "owner", "host", "runbook", "target", "env", "events", "state",
        ]
        .map(String::from),
    ];
    for s in &sessions {
        rows.push([
            s.session_id.clone(),
            s.started_at.format("%Y-%m-%dT%H:%M:%S").to_string(),
            s.owner.clone(),
            s.host.clone(),
            s.runbook.clone(),
            s.target.clone(),
            s.environment.clone(),
            s.events.to_string(),
            if s.ended() { "sealed" } else { "open" }.to_string(),
        ]);
    }
    let mut out = std::io::stdout().lock();
    for line in columns(&rows) {
        let _ = writeln!(out, "{}", line.trim_end());
    }
    Exit::Success
}

/// `ward audit show --store ID`.
pub fn show(config: &Config, id: &str) -> Exit {
    let (o, id) = match opened_and_found(config, id) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let log = match o.log(&id) {
        Ok(l) => l,
        Err(e) => {
            errln!("error: {e}");
            return Exit::Usage;
        }
    };
    let mut out = std::io::stdout().lock();
    let mut timeline = Timeline::default();
    for e in &log.events {
        let _ = writeln!(out, "{} {}", e.ts, timeline.line(e));
    }
    let _ = writeln!(
        out,
        "log (store {}): {}",
        o.store.url(),
        super::session::verification_name(&log.verdict)
    );
    Exit::Success
}

/// `ward audit export --store ID`.
pub fn export(config: &Config, id: &str, format: ExportFormat) -> Exit {
    let (o, id) = match opened_and_found(config, id) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let log = match o.log(&id) {
        Ok(l) => l,
        Err(e) => {
            errln!("error: {e}");
            return Exit::Usage;
        }
    };
    let mut out = std::io::stdout().lock();
    let written = match format {
        ExportFormat::Json => serde_json::to_writer_pretty(
            &mut out,
            &json!({"session": SessionState::from_events(&log.events), "verification": log.verdict, "events": log.events, "source": "store"}),
        )
        .map_err(std::io::Error::other)
        .and_then(|()| writeln!(out)),
        ExportFormat::Md => ward::session::markdown::write(
            &log.events,
            None,
            Some(&format!(
                "{} (the team store's copy)",
                super::session::verification_name(&log.verdict)
            )),
            &mut out,
        ),
    };
    if written.is_err() {
        Exit::Usage
    } else {
        Exit::Success
    }
}

fn opened_and_found(config: &Config, id: &str) -> Result<(Opened, String), Exit> {
    let o = opened(config)?;
    match o.find(id) {
        Ok(full) => Ok((o, full)),
        Err(e) => {
            errln!("error: {e}");
            Err(Exit::Usage)
        }
    }
}

/// `ward audit verify --store [ID|--all]`: each stored session rebuilt
/// from its rows and verified (chain, bytes, invariants).
pub fn verify(config: &Config, id: Option<&str>, all: bool) -> Exit {
    let o = match opened(config) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let ids = if all {
        match o.call(o.store.sessions()) {
            Ok(s) => s.into_iter().map(|s| s.session_id).collect(),
            Err(e) => {
                errln!("error: {e}");
                return Exit::Usage;
            }
        }
    } else {
        match id.map(|i| o.find(i)) {
            Some(Ok(full)) => vec![full],
            Some(Err(e)) => {
                errln!("error: {e}");
                return Exit::Usage;
            }
            None => {
                errln!("error: give a session id, or --all");
                return Exit::Usage;
            }
        }
    };
    let mut out = std::io::stdout().lock();
    let mut worst = Exit::Success;
    for id in ids {
        let code = match o.log(&id) {
            Ok(log) => {
                let _ = writeln!(out, "{id} (store): {}", verdict_words(&log.verdict));
                Exit::from(&log.verdict)
            }
            Err(e) => {
                let _ = writeln!(out, "{id} (store): cannot verify: {e}");
                Exit::Usage
            }
        };
        worst = worst.worst(code);
    }
    worst
}

/// `ward audit verify`'s check of local logs against the store's copies,
/// when a store is configured.
pub(super) struct Against {
    opened: Option<Opened>,
}

impl Against {
    /// The store ward.yaml configures, if any. One that cannot be opened
    /// is said once; the local verdicts stand alone then.
    pub fn open(config: &Config) -> Option<Against> {
        config.spec.store.as_ref()?;
        match Opened::new(config) {
            Ok(o) => Some(Against { opened: Some(o) }),
            Err(e) => {
                errln!("store: {e}; local verdicts only");
                None
            }
        }
    }

    /// Holds one local log (its events and verdict) against the store's
    /// copy and says how they stand; the exit this adds.
    pub fn check(
        &mut self,
        file: &Path,
        events: &[Event],
        local: &Verification,
        out: &mut impl Write,
    ) -> Exit {
        let Some(o) = &self.opened else {
            return Exit::Success;
        };
        let id = events
            .first()
            .and_then(|e| e.data.get("session_id"))
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .or_else(|| {
                file.file_stem()
                    .and_then(|s| s.to_str())
                    .map(str::to_string)
            })
            .unwrap_or_default();
        let rows = match o.call(o.store.events(&id)) {
            Ok(r) => r,
            Err(e) => {
                let _ = writeln!(
                    out,
                    "{}: store: {} ({e}); the local verdict above stands alone",
                    file.display(),
                    if e.is_unreachable() {
                        "unreachable"
                    } else {
                        "refused"
                    }
                );
                if e.is_unreachable() {
                    // One timeout is enough to know: the rest go unchecked.
                    self.opened = None;
                }
                return Exit::Success;
            }
        };
        // Only the locally verified prefix is compared.
        let good = match local {
            Verification::Ok { .. } | Verification::Unsealed { .. } => events.len(),
            Verification::Tampered { seq, .. } => *seq as usize,
            Verification::Truncated { last_good_seq, .. } => {
                last_good_seq.map_or(0, |s| s as usize + 1)
            }
        }
        .min(events.len());
        let stored = check::rebuild(&rows);
        let against = check::compare(&events[..good], &stored);
        let words = against_words(&id, &against, &stored);
        let _ = writeln!(out, "{}: {words}", file.display());
        if against.is_tampering() || matches!(stored.verdict, Verification::Tampered { .. }) {
            Exit::Failed
        } else {
            Exit::Success
        }
    }
}

fn against_words(id: &str, a: &check::Against, stored: &StoredLog) -> String {
    use check::Against as A;
    let store_state = match &stored.verdict {
        Verification::Tampered { seq, reason } => {
            format!("; the store's copy is TAMPERED at seq {seq}: {reason}")
        }
        _ => String::new(),
    };
    let main = match a {
        A::NotStored => format!(
            "store: not stored (made offline or before the store was configured; `ward store sync {id}` pushes it)"
        ),
        A::Agrees { events } => format!(
            "store: agrees ({} with the same hashes)",
            plural(*events, "event", "events")
        ),
        A::StoreBehind { stored, missing } => format!(
            "store: holds the first {}, {missing} not pushed yet (`ward store sync {id}`)",
            plural(*stored, "event", "events")
        ),
        A::LocalCut {
            local,
            extra,
            sealed,
        } => format!(
            "TAMPERED against the store: the local log ends after {} but the store holds {} more{}: the local log was cut",
            if *local == 0 {
                "no event".to_string()
            } else {
                format!("seq {}", local - 1)
            },
            plural(*extra, "event", "events"),
            if *sealed {
                ", up to its session_ended"
            } else {
                ""
            }
        ),
        A::Diverged {
            seq,
            local,
            stored,
            store_intact: true,
        } => format!(
            "TAMPERED against the store: the local log diverges from the store's copy from seq {seq} (local hash {}, stored {}); the store's copy verifies, so the local log was altered",
            short(local),
            short(stored)
        ),
        A::Diverged {
            seq, local, stored, ..
        } => format!(
            "TAMPERED against the store: the store's copy diverges from the local log from seq {seq} (local hash {}, stored {}) and does not verify itself: a store row was altered",
            short(local),
            short(stored)
        ),
    };
    format!("{main}{store_state}")
}

fn short(h: &str) -> &str {
    h.get(..12).unwrap_or(h)
}
