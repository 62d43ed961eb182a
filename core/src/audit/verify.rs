//! Verifying a session log: the hash chain, the exact bytes of every line and
//! the safety invariants, in one streaming pass.
//!
//! Memory stays flat in the size of the file: two line buffers and the
//! per-proposal invariant state. The verifier must never accept a line whose
//! bytes differ from the canonical encoding of the event it parses to;
//! otherwise an edit that keeps the meaning (a re-cased `\u` escape, a
//! reordered key) would slip past the hash.
//!
//! A line is first read by a validating scanner that accepts only canonical
//! text and borrows the few fields the checks need, so no `Value` is built
//! for `data`. Any line it refuses takes the slow path: a full parse and a
//! re-encode compared against the line, as before. The scanner accepts no
//! line the slow path would refuse, so verdicts and reasons are the slow
//! path's; it only decides how fast a good line passes.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use serde::Serialize;
use serde_json::error::Category;
use sha2::{Digest, Sha256};

use super::canonical::{Compare, Scalar, Scanner};
use super::invariants::{Checker, Data, Facts, Field, name};
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
}

/// What the checks read from a line, whichever way it was parsed.
#[derive(Debug, PartialEq)]
struct Parsed<'a> {
    v: u32,
    seq: u64,
    prev: &'a str,
    facts: Facts<'a>,
}

impl<'a> Parsed<'a> {
    fn of_event(ev: &'a Event) -> Parsed<'a> {
        Parsed {
            v: ev.v,
            seq: ev.seq,
            prev: &ev.prev,
            facts: Facts::of_event(ev),
        }
    }
}

/// Reads a line that is exactly the canonical encoding of an event, and
/// nothing else: the members in their fixed order, every value in canonical
/// form. `None` means "not certainly good" and sends the line to the slow
/// path, which gives the verdict; so a line with an escape in `hash`, `kind`
/// or `prev` (never written by ward, but not by itself wrong) goes there too.
fn parse_canonical(line: &[u8]) -> Option<Parsed<'_>> {
    let text = std::str::from_utf8(line).ok()?;
    let mut s = Scanner::new(text);
    let mut data = Data::default();
    s.expect("{\"data\":")?;
    s.value(&mut |key, value| {
        if let Some(slot) = key.plain().and_then(|k| data.slot(k)) {
            *slot = Some(Field::of_scalar(value));
        }
    })?;
    s.expect(",\"hash\":")?;
    let hash = s.string()?.plain()?;
    s.expect(",\"kind\":")?;
    let kind = s.string()?.plain()?;
    s.expect(",\"prev\":")?;
    let prev = s.string()?.plain()?;
    s.expect(",\"seq\":")?;
    let Scalar::UInt(seq) = s.scalar()? else {
        return None;
    };
    s.expect(",\"ts\":")?;
    s.string()?;
    s.expect(",\"v\":")?;
    let Scalar::UInt(v) = s.scalar()? else {
        return None;
    };
    s.expect("}")?;
    s.at_end().then_some(Parsed {
        v: u32::try_from(v).ok()?,
        seq,
        prev,
        facts: Facts { kind, hash, data },
    })
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
    fn line(&mut self, line: &[u8], is_last: bool) -> Result<(), Verification> {
        match parse_canonical(line) {
            Some(parsed) => self.accept(&parsed, line),
            None => {
                let ev = self.parse_slowly(line, is_last)?;
                self.accept(&Parsed::of_event(&ev), line)
            }
        }
    }

    /// Parses a line the scanner refused and finds what is wrong with it, if
    /// anything.
    fn parse_slowly(&self, line: &[u8], is_last: bool) -> Result<Event, Verification> {
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
        Ok(ev)
    }

    /// The checks on a line in canonical form.
    fn accept(&mut self, ev: &Parsed<'_>, line: &[u8]) -> Result<(), Verification> {
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
        if line_hash(ev.prev, line).as_ref().map(<[u8; 64]>::as_slice)
            != Some(ev.facts.hash.as_bytes())
        {
            return Err(self.tampered("hash does not match the event"));
        }
        if let Err(v) = self.checker.check_facts(&ev.facts) {
            return Err(self.tampered(v.to_string()));
        }
        self.checker.apply_facts(&ev.facts);
        self.next_seq += 1;
        self.prev.clear();
        self.prev.push_str(ev.facts.hash);
        Ok(())
    }
}

/// The hash of a canonical line: sha256 over `prev` and the line with its
/// top-level `,"hash":"…"` member cut out, which is exactly the canonical
/// JSON of the event without `hash`. This saves encoding `data` a second
/// time. The top-level member is the last `,"hash":` in the line: after it
/// come only `kind`, `prev`, `seq`, `ts` and `v`, and inside a JSON string a
/// quote is always escaped, so `,"` cannot occur within a string literal.
/// The result is lowercase hex, as `Event::compute_hash` spells it.
fn line_hash(prev: &str, line: &[u8]) -> Option<[u8; 64]> {
    const KEY: &[u8] = b",\"hash\":";
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let start = line.windows(KEY.len()).rposition(|w| w == KEY)?;
    let after = start + KEY.len();
    let end = after + line.get(after..)?.windows(2).position(|w| w == b",\"")?;
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(line.get(..start)?);
    h.update(line.get(end..)?);
    let mut out = [0u8; 64];
    for (pair, b) in out.chunks_exact_mut(2).zip(h.finalize()) {
        pair.copy_from_slice(&[DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]]);
    }
    Some(out)
}

/// Scans a whole log from `reader`, handing each verified line (without its
/// newline) to `on_line`. Stops at the first problem.
pub(crate) fn scan<R: BufRead>(mut reader: R, mut on_line: impl FnMut(&[u8])) -> io::Result<Scan> {
    let mut chain = Chain {
        next_seq: 0,
        prev: GENESIS.to_string(),
        good_len: 0,
        checker: Checker::default(),
    };
    let mut buf = Vec::new();
    // The last verified line, kept (by swapping buffers, not copying) so that
    // only it is ever parsed into an `Event`.
    let mut last_line = Vec::new();
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
            Ok(()) => {
                on_line(line);
                chain.good_len += n as u64;
                std::mem::swap(&mut buf, &mut last_line);
            }
            Err(verdict) => break verdict,
        }
    };
    let last = match last_line.strip_suffix(b"\n") {
        Some(line) => Some(
            // It verified, so it parses. Should it not (a scanner bug), a
            // `None` here would let the writer restart the chain at seq 0.
            serde_json::from_slice(line)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
        ),
        None => None,
    };
    Ok(Scan {
        verdict,
        good_len: chain.good_len,
        checker: chain.checker,
        last,
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
    read_events_bytes(&bytes).map_err(|e| AuditError::io(path, e))
}

/// [`read_events`] of a log held in memory (a log rebuilt from the team
/// store's rows): the same verifier, the same verdicts.
pub fn read_events_bytes(bytes: &[u8]) -> io::Result<(Vec<Event>, Verification)> {
    let verdict = scan(bytes, |_| {})?.verdict;
    let events = bytes
        .split(|b| *b == b'\n')
        .filter_map(|line| serde_json::from_slice::<Event>(line).ok())
        .collect();
    Ok((events, verdict))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// Appends a correctly chained event, without the writer's invariant
    /// checks, and returns its hash.
    fn push(log: &mut Vec<Event>, kind: &str, data: Value) -> String {
        let seq = log.len() as u64;
        let mut ev = Event {
            v: FORMAT_VERSION,
            seq,
            ts: format!("2025-01-02T03:04:{:02}.000Z", seq % 60),
            kind: kind.to_string(),
            data,
            prev: log
                .last()
                .map_or_else(|| GENESIS.to_string(), |e| e.hash.clone()),
            hash: String::new(),
        };
        ev.hash = ev.compute_hash();
        log.push(ev);
        log.last().map(|e| e.hash.clone()).unwrap_or_default()
    }

    fn forge(events: &[(&str, Value)]) -> Vec<Event> {
        let mut out = Vec::new();
        for (kind, data) in events {
            push(&mut out, kind, data.clone());
        }
        out
    }

    fn bytes(events: &[Event]) -> Vec<u8> {
        let mut out = Vec::new();
        for e in events {
            out.extend_from_slice(e.canonical_line().as_bytes());
            out.push(b'\n');
        }
        out
    }

    fn verdict(bytes: &[u8]) -> Verification {
        scan(bytes, |_| {}).unwrap().verdict
    }

    /// A sealed session with every kind the checker reads, and data of every
    /// shape.
    fn session() -> Vec<Event> {
        let mut log = Vec::new();
        push(
            &mut log,
            "session_started",
            json!({"operator": "alice", "host": "h", "git": {"git": false}}),
        );
        let p = push(
            &mut log,
            "proposed",
            json!({"step_id": null, "sql": "SELECT \"x\"\n\tFROM t -- é 😀"}),
        );
        push(
            &mut log,
            "gated",
            json!({"proposal": p, "decision": "approve", "approvers": 2, "risk": "write", "rules": ["r"]}),
        );
        push(
            &mut log,
            "approved",
            json!({"proposal": p, "operator": "o\"q\n", "reason": "ok"}),
        );
        push(
            &mut log,
            "approved",
            json!({"proposal": p, "operator": "bob", "reason": "ok"}),
        );
        push(
            &mut log,
            "executing",
            json!({"proposal": p, "mode": "write"}),
        );
        push(
            &mut log,
            "executed",
            json!({"proposal": p, "rows_seen": 3, "ratio": 0.125, "neg": -4, "big": 1e300}),
        );
        push(&mut log, "failed", json!({"proposal": null, "error": "x"}));
        push(&mut log, "verified", json!([1, {"b": 2, "a": 1}]));
        push(&mut log, "summarized", json!("just a string"));
        push(&mut log, "session_ended", json!({}));
        log
    }

    /// Whether the slow path takes `line` as canonical, and what it reads.
    fn slow(line: &[u8]) -> Option<Event> {
        let ev: Event = serde_json::from_slice(line).ok()?;
        let mut cmp = Compare::new(line);
        ev.write_canonical(&mut cmp, true);
        cmp.is_equal().then_some(ev)
    }

    #[test]
    fn the_scanner_reads_every_line_ward_writes_as_the_parser_does() {
        for ev in session() {
            let line = ev.canonical_line();
            let fast = parse_canonical(line.as_bytes());
            assert_eq!(fast, Some(Parsed::of_event(&ev)), "{line}");
        }
    }

    #[test]
    fn the_scanner_accepts_no_line_the_slow_path_refuses() {
        let events = session();
        let mut rng = 0x1234_5678_9abc_def0_u64;
        let mut next = move || {
            // xorshift64: deterministic and enough to scatter edits.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut accepted = 0;
        for ev in &events {
            let line = ev.canonical_line().into_bytes();
            for _ in 0..300 {
                let mut m = line.clone();
                let at = (next() % m.len() as u64) as usize;
                const BYTES: &[u8] = b" \"\\,:{}[]0123456789.eE+-nuabtfr\x01\xc3";
                let byte = BYTES[(next() % BYTES.len() as u64) as usize];
                match next() % 3 {
                    0 => m.insert(at, byte),
                    1 => m[at] = byte,
                    _ => {
                        m.remove(at);
                    }
                }
                if let Some(fast) = parse_canonical(&m) {
                    let ev = slow(&m)
                        .unwrap_or_else(|| panic!("scanner took {}", String::from_utf8_lossy(&m)));
                    assert_eq!(fast, Parsed::of_event(&ev));
                    accepted += 1;
                }
            }
        }
        // Some edits keep the line canonical (a digit for a digit); they must
        // read the same both ways.
        assert!(accepted > 0);
    }

    #[test]
    fn spellings_that_keep_the_meaning_are_tampering() {
        let events = forge(&[
            (
                "session_started",
                json!({"a": 1, "b": "é", "c": 1.5, "d": {"x": [1, 2], "y": null}}),
            ),
            ("session_ended", json!({})),
        ]);
        let good = String::from_utf8(bytes(&events)).unwrap();
        assert_eq!(verdict(good.as_bytes()), Verification::Ok { events: 2 });
        let not_canonical = "line is not in canonical form";
        let not_json = "line is not valid JSON";
        let cases = [
            (r#""a":1,"#, r#""a": 1,"#, not_canonical),
            (r#"{"a":1,"b":"é""#, r#"{"b":"é","a":1"#, not_canonical),
            (
                r#""x":[1,2],"y""#,
                r#""y":null,"x":[1,2],"y""#,
                not_canonical,
            ),
            (r#""a":1,"#, r#""a":1,"a":1,"#, not_canonical),
            (r#""é""#, r#""\u00e9""#, not_canonical),
            (r#""é""#, r#""\u00E9""#, not_canonical),
            ("1.5", "1.50", not_canonical),
            ("1.5", "15e-1", not_canonical),
            (r#""a":1,"#, r#""a":1e0,"#, not_canonical),
            (r#""a":1,"#, r#""a":01,"#, not_json),
            // `1.0` is canonical too, but for a float: a different event.
            (r#""a":1,"#, r#""a":1.0,"#, "hash does not match the event"),
        ];
        for (from, to, reason) in cases {
            let m = good.replacen(from, to, 1);
            assert_ne!(m, good);
            match verdict(m.as_bytes()) {
                Verification::Tampered { seq: 0, reason: r } => {
                    assert!(r.starts_with(reason), "{to}: {r}");
                }
                other => panic!("{to}: {other:?}"),
            }
        }
    }

    #[test]
    fn lines_the_scanner_leaves_to_the_slow_path_still_verify() {
        let mut deep = json!(1);
        for _ in 0..100 {
            deep = json!([deep]);
        }
        let events = forge(&[
            ("session_started", json!({"deep": deep})),
            ("note\u{1}", json!({})),
            ("session_ended", json!({})),
        ]);
        let log = bytes(&events);
        for line in log.split(|b| *b == b'\n').filter(|l| !l.is_empty()).take(2) {
            assert_eq!(parse_canonical(line), None);
        }
        let found = scan(&log[..], |_| {}).unwrap();
        assert_eq!(found.verdict, Verification::Ok { events: 3 });
        assert_eq!(found.last.as_ref(), events.last());
    }

    #[test]
    fn verify_reports_each_verified_line() {
        let events = session();
        let log = bytes(&events);
        let mut seen = Vec::new();
        let found = scan(&log[..], |line| seen.push(line.to_vec())).unwrap();
        assert_eq!(found.verdict, Verification::Ok { events: 11 });
        assert_eq!(found.good_len, log.len() as u64);
        assert_eq!(found.last.as_ref(), events.last());
        let expected: Vec<Vec<u8>> = events
            .iter()
            .map(|e| e.canonical_line().into_bytes())
            .collect();
        assert_eq!(seen, expected);
    }
}
