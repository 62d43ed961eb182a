//! The file-based approval inbox of a running session
//! (`.ward/sessions/<id>.ops/`): other operators' `ward approve` and
//! `ward reject` drop a request in it; the session takes each one once and
//! answers every one it takes, recorded or refused with the reason, so no
//! request is ever dropped unseen.
//!
//! A request is `NAME.json` (written to a temporary file and renamed, mode
//! 0600); the session renames it to `NAME.taken` when it takes it and
//! writes `NAME.answer`. The inbox never decides anything: the runner
//! does, and says so through [`Inbox::answer`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::{Deserialize, Serialize};

/// A request another operator's `ward approve` / `ward reject` left for a
/// running session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpRequest {
    pub op: RequestOp,
    /// The proposal's id (the hash of its `proposed` event) or a unique
    /// prefix of at least 8 characters.
    pub proposal: String,
    pub operator: String,
    pub reason: String,
}

/// What another operator asks of a running session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestOp {
    Approve,
    Reject,
}

impl RequestOp {
    pub fn name(self) -> &'static str {
        match self {
            RequestOp::Approve => "approve",
            RequestOp::Reject => "reject",
        }
    }
}

/// The session's answer to a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum Answer {
    /// The session logged it.
    Recorded,
    /// The session did not log it, and why (already approved by the same
    /// operator, the proposal no longer waits, a role is missing, ...).
    Refused { reason: String },
}

/// A request the session took, to be answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Taken {
    pub request: OpRequest,
    /// `NAME`: the file name without `.json` (it has dots of its own).
    name: String,
}

/// A request sent: where its answer will appear.
#[derive(Debug, Clone, PartialEq)]
pub struct Ticket {
    answer: PathBuf,
}

impl Ticket {
    /// Waits up to `timeout` for the session's answer; `None` if it has not
    /// answered by then (it is not collecting approvals right now, or it is
    /// not running).
    pub fn wait(&self, timeout: Duration) -> Option<Answer> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(bytes) = std::fs::read(&self.answer)
                && let Ok(answer) = serde_json::from_slice::<Answer>(&bytes)
            {
                return Some(answer);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The inbox of one session.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbox {
    dir: PathBuf,
}

impl Inbox {
    pub fn new(dir: impl Into<PathBuf>) -> Inbox {
        Inbox { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Leaves a request for the session, atomically.
    pub fn submit(&self, req: &OpRequest) -> std::io::Result<Ticket> {
        std::fs::create_dir_all(&self.dir)?;
        // Time first, so requests sort oldest first; the counter keeps two
        // requests of one process in the same microsecond apart.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "{}-{}-{}-{}",
            Utc::now().format("%Y%m%dT%H%M%S%.6f"),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            req.op.name()
        );
        write_atomically(
            &self.dir,
            &name,
            &self.dir.join(format!("{name}.json")),
            &serde_json::to_vec(req).map_err(std::io::Error::other)?,
        )?;
        Ok(Ticket {
            answer: self.dir.join(format!("{name}.answer")),
        })
    }

    /// Takes the pending requests, oldest first (renaming each to
    /// `.taken`, so each is taken once). A request that does not read is
    /// answered at once.
    pub fn take(&self) -> Vec<Taken> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        let mut out = Vec::new();
        for f in files {
            let Some(name) = f.file_stem().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            let taken = self.dir.join(format!("{name}.taken"));
            if std::fs::rename(&f, &taken).is_err() {
                continue;
            }
            match std::fs::read(&taken)
                .ok()
                .and_then(|b| serde_json::from_slice::<OpRequest>(&b).ok())
            {
                Some(request) => out.push(Taken { request, name }),
                None => self.write_answer(
                    &name,
                    &Answer::Refused {
                        reason: "the request does not read as one".into(),
                    },
                ),
            }
        }
        out
    }

    /// Tells the operator behind `taken` what became of it. An answer that
    /// cannot be written leaves them waiting, never the session.
    pub fn answer(&self, taken: &Taken, answer: &Answer) {
        self.write_answer(&taken.name, answer);
    }

    fn write_answer(&self, name: &str, answer: &Answer) {
        if let Ok(bytes) = serde_json::to_vec(answer) {
            let dst = self.dir.join(format!("{name}.answer"));
            let _ = write_atomically(&self.dir, name, &dst, &bytes);
        }
    }
}

/// Writes `bytes` to `dst` through a temporary file in `dir`, mode 0600.
fn write_atomically(dir: &Path, name: &str, dst: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dst)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(op: RequestOp, operator: &str) -> OpRequest {
        OpRequest {
            op,
            proposal: "0123456789ab".into(),
            operator: operator.into(),
            reason: "checked".into(),
        }
    }

    #[test]
    fn every_request_taken_is_taken_once_and_its_answer_reaches_its_sender() {
        let dir = tempfile::tempdir().unwrap();
        // Request names have dots of their own (`...T072408.123456-...`).
        let inbox = Inbox::new(dir.path().join("s.ops"));
        let first = inbox.submit(&request(RequestOp::Approve, "alice")).unwrap();
        let second = inbox.submit(&request(RequestOp::Approve, "alice")).unwrap();
        let taken = inbox.take();
        assert_eq!(
            taken.iter().map(|t| t.request.clone()).collect::<Vec<_>>(),
            [
                request(RequestOp::Approve, "alice"),
                request(RequestOp::Approve, "alice")
            ]
        );
        assert!(inbox.take().is_empty(), "taken once");
        assert_eq!(first.wait(Duration::ZERO), None);
        inbox.answer(&taken[0], &Answer::Recorded);
        let refused = Answer::Refused {
            reason: "alice already approved it".into(),
        };
        inbox.answer(&taken[1], &refused);
        assert_eq!(first.wait(Duration::ZERO), Some(Answer::Recorded));
        assert_eq!(second.wait(Duration::ZERO), Some(refused));
    }

    #[test]
    fn a_request_that_does_not_read_is_answered_not_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::new(dir.path());
        std::fs::write(dir.path().join("x.json"), b"{\"op\": \"bless\"}").unwrap();
        assert!(inbox.take().is_empty());
        let ticket = Ticket {
            answer: dir.path().join("x.answer"),
        };
        assert!(matches!(
            ticket.wait(Duration::ZERO),
            Some(Answer::Refused { .. })
        ));
    }
}
