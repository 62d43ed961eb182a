//! Verifying a session log: the hash chain, the exact bytes of every line and
//! the safety invariants, in one streaming pass.
//!
//! Memory stays flat in the size of the file: one line buffer and the
//! per-proposal invariant state. The verifier must never accept a line whose
//! bytes differ from the canonical encoding of the event it parses to;
//! otherwise an edit that keeps the meaning (a re-cased `\u` escape, a
//! reordered key) would slip past the hash.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use serde::Serialize;
use serde_json::error::Category;
use sha2::{Digest, Sha256};

use super::canonical::Compare;
use super::event::hex;
use super::invariants::{Checker, name};
use super::{AuditError, Event, FORMAT_VERSION, GENESIS};

/// The verdict on a session log.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Verification {
    /// Chain intact, invariants hold, sealed by a final `session_ended`.
    Ok { events: u64 },
    /// The first bad seq (the 0-based line number where the log stops
    /// verifying): a bad hash or link, a seq gap, duplicate or reorder, an
    /// unparsable line in the middle, content after the seal, or a broken
    /// safety invariant, named at the start of `reason`.
    Tampered { seq: u64, reason: String },
    /// The last line is torn (no trailing newline, or not JSON): a crash in
    /// the middle of a write. Everything before it verifies.
    Truncated {
        last_good_seq: Option<u64>,
        reason: String,
    },
    /// Intact but not sealed: the session crashed or is still running. A
    /// sealed log cut at a line boundary also reads like this.
    Unsealed { last_seq: Option<u64> },
}

/// The outcome of scanning a log, with what the writer needs to resume it.
pub(crate) struct Scan {
    pub verdict: Verification,
    /// Bytes of the verified prefix (whole lines, newline included).
    pub good_len: u64,
    pub checker: Checker,
    pub last: Option<Event>,
}

/// How far the chain has verified.
struct Chain {
    next_seq: u64,
    prev: String,
    good_len: u64,
    checker: Checker,
    last: Option<Event>,
}

impl Chain {
    fn last_seq(&self) -> Option<u64> {
        self.next_seq.checked_sub(1)
    }

    fn tampered(&self, reason: impl Into<String>) -> Verification {
        Verification::Tampered {
            seq: self.next_seq,
            reason: reason.into(),
        }
    }

    fn truncated(&self, reason: impl Into<String>) -> Verification {
        Verification::Truncated {
            last_good_seq: self.last_seq(),
            reason: reason.into(),
        }
    }

    /// Checks one complete line (without its newline); `Err` is the verdict.
    fn line(&mut self, line: &[u8], is_last: bool) -> Result<Event, Verification> {
        let ev: Event = match serde_json::from_slice(line) {
            Ok(ev) => ev,
            Err(e) => {
                let torn = matches!(e.classify(), Category::Syntax | Category::Eof);
                return Err(if torn && is_last {
                    self.truncated(format!("last line is not a complete event: {e}"))
                } else if torn {
                    self.tampered(format!("line is not valid JSON: {e}"))
                } else {
                    self.tampered(format!("line is not an event: {e}"))
                });
            }
        };
        let mut cmp = Compare::new(line);
        ev.write_canonical(&mut cmp, true);
        if !cmp.is_equal() {
            return Err(self.tampered(format!(
                "line is not in canonical form (differs at byte {})",
                cmp.pos()
            )));
        }
        if ev.v != FORMAT_VERSION {
            return Err(self.tampered(format!("unsupported format version {}", ev.v)));
        }
        if ev.seq != self.next_seq {
            return Err(self.tampered(format!(
                "seq {} where {} was expected (gap, duplicate or reorder)",
                ev.seq, self.next_seq
            )));
        }
        if ev.prev != self.prev {
            return Err(self.tampered("prev does not match the previous event's hash"));
        }
        if line_hash(&ev.prev, line).as_deref() != Some(ev.hash.as_str()) {
            return Err(self.tampered("hash does not match the event"));
        }
        if let Err(v) = self.checker.check(&ev) {
            return Err(self.tampered(v.to_string()));
        }
        self.checker.apply(&ev);
        self.next_seq += 1;
        self.prev.clone_from(&ev.hash);
        Ok(ev)
    }
}

/// The hash of a canonical line: sha256 over `prev` and the line with its
/// top-level `,"hash":"…"` member cut out, which is exactly the canonical
/// JSON of the event without `hash`. This saves encoding `data` a second
/// time. The top-level member is the last `,"hash":` in the line: after it
/// come only `kind`, `prev`, `seq`, `ts` and `v`, and inside a JSON string a
/// quote is always escaped, so `,"` cannot occur within a string literal.
fn line_hash(prev: &str, line: &[u8]) -> Option<String> {
    const KEY: &[u8] = b",\"hash\":";
    let start = line.windows(KEY.len()).rposition(|w| w == KEY)?;
    let after = start + KEY.len();
    let end = after + line[after..].windows(2).position(|w| w == b",\"")?;
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(&line[..start]);
    h.update(&line[end..]);
    Some(hex(&h.finalize()))
}

/// Scans a whole log from `reader`, handing each verified event to `on_event`.
/// Stops at the first problem.
pub(crate) fn scan<R: BufRead>(
    mut reader: R,
    mut on_event: impl FnMut(&Event),
) -> io::Result<Scan> {
    let mut chain = Chain {
        next_seq: 0,
        prev: GENESIS.to_string(),
        good_len: 0,
        checker: Checker::default(),
        last: None,
    };
    let mut buf = Vec::new();
    let verdict = loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf)?;
        if n == 0 {
            break if chain.checker.is_sealed() {
                Verification::Ok {
                    events: chain.next_seq,
                }
            } else {
                Verification::Unsealed {
                    last_seq: chain.last_seq(),
                }
            };
        }
        if chain.checker.is_sealed() {
            break chain.tampered(format!("{}: {n} more bytes", name::AFTER_SEAL));
        }
        let Some(line) = buf.strip_suffix(b"\n") else {
            break chain.truncated("last line has no trailing newline (torn write)");
        };
        let is_last = reader.fill_buf()?.is_empty();
        match chain.line(line, is_last) {
            Ok(ev) => {
                on_event(&ev);
                chain.good_len += n as u64;
                chain.last = Some(ev);
            }
            Err(verdict) => break verdict,
        }
    };
    Ok(Scan {
        verdict,
        good_len: chain.good_len,
        checker: chain.checker,
        last: chain.last,
    })
}

/// Verifies the log at `path` in one streaming pass.
pub fn verify(path: &Path) -> Result<Verification, AuditError> {
    let file = File::open(path).map_err(|e| AuditError::io(path, e))?;
    let reader = BufReader::with_capacity(1 << 18, file);
    scan(reader, |_| {})
        .map(|s| s.verdict)
        .map_err(|e| AuditError::io(path, e))
}

/// Every line that parses as an event (including any past the point where
/// verification stopped, for the viewer to show), and the verdict.
pub fn read_events(path: &Path) -> Result<(Vec<Event>, Verification), AuditError> {
    let bytes = std::fs::read(path).map_err(|e| AuditError::io(path, e))?;
    let verdict = scan(&bytes[..], |_| {})
        .map_err(|e| AuditError::io(path, e))?
        .verdict;
    let events = bytes
        .split(|b| *b == b'\n')
        .filter_map(|line| serde_json::from_slice::<Event>(line).ok())
        .collect();
    Ok((events, verdict))
}
