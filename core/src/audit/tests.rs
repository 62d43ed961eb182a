//! Behaviour of the log as a whole: durability rules, tamper evidence, the
//! safety invariants and crash recovery.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::invariants::name;
use super::verify::scan;
use super::*;

fn at(i: u64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_750_000_000_000 + i as i64 * 1_234)
        .single()
        .unwrap()
}

fn verdict(bytes: &[u8]) -> Verification {
    scan(bytes, |_| {}).unwrap().verdict
}

/// Builds a correctly chained log without the writer's invariant checks, to
/// forge logs that tell an unsafe story.
#[derive(Default)]
struct Forge {
    events: Vec<Event>,
}

impl Forge {
    fn push(&mut self, kind: &str, data: Value) -> String {
        let seq = self.events.len() as u64;
        let mut ev = Event {
            v: 1,
            seq,
            ts: at(seq).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            kind: kind.into(),
            data,
            prev: self
                .events
                .last()
                .map_or_else(|| GENESIS.to_string(), |e| e.hash.clone()),
            hash: String::new(),
        };
        ev.hash = ev.compute_hash();
        let hash = ev.hash.clone();
        self.events.push(ev);
        hash
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for e in &self.events {
            out.extend_from_slice(e.canonical_line().as_bytes());
            out.push(b'\n');
        }
        out
    }
}

/// Appends through the writer with a deterministic clock.
struct Session {
    w: AuditWriter,
    n: u64,
}

impl Session {
    fn new(path: &Path) -> Session {
        Session {
            w: AuditWriter::create(path).unwrap(),
            n: 0,
        }
    }

    fn try_add(&mut self, kind: &str, data: Value) -> Result<Event, AuditError> {
        self.n += 1;
        self.w.append_at(kind, data, at(self.n))
    }

    fn add(&mut self, kind: &str, data: Value) -> String {
        self.try_add(kind, data).unwrap().hash
    }
}

/// A sealed session of 40 events exercising every event kind, including a
/// write that needed two approvals from distinct operators.
fn sealed_session(path: &Path) -> Vec<u8> {
    let mut s = Session::new(path);
    s.add(
        "session_started",
        json!({"operator": "alice", "host": "db-ops-1", "git": {"git": true, "head": "ab".repeat(20)},
               "target": {"name": "orders", "env": "prod"}, "agent": {"provider": "offline"}}),
    );
    let p1 = s.add("proposed", json!({"step_id": "inspect", "sql": "SELECT pid, state FROM pg_stat_activity WHERE wait_event IS NOT NULL"}));
    s.add(
        "analyzed",
        json!({"proposal": p1, "statements": 1, "risk": "read_only"}),
    );
    s.add("gated", json!({"proposal": p1, "decision": "allow", "approvers": 0, "risk": "read_only", "rules": ["read-only is free"]}));
    s.add("executing", json!({"proposal": p1, "mode": "read_only"}));
    s.add(
        "executed",
        json!({"proposal": p1, "rows_seen": 17, "duration_ms": 42, "sha256": "cd".repeat(32)}),
    );
    s.add("summarized", json!({"proposal": p1, "text": "17 sessions waiting on \"Lock\"\n- pid 4242 holds it\t(ü, 😀)"}));
    for i in 0..5 {
        let p = s.add("proposed", json!({"step_id": null, "sql": format!("SELECT count(*) FROM t{i} WHERE x > {}", i * 7)}));
        s.add("gated", json!({"proposal": p, "decision": "allow", "approvers": 0, "risk": "read_only", "rules": []}));
        s.add("executing", json!({"proposal": p, "mode": "read_only"}));
        s.add(
            "executed",
            json!({"proposal": p, "rows_seen": i * 1009, "ratio": 0.25 + i as f64}),
        );
    }
    let p2 = s.add(
        "proposed",
        json!({"step_id": "kill", "sql": "SELECT pg_terminate_backend(4242)"}),
    );
    s.add("gated", json!({"proposal": p2, "decision": "approve", "approvers": 2, "risk": "write", "rules": ["two-person rule"]}));
    s.add(
        "approved",
        json!({"proposal": p2, "operator": "alice", "reason": "blocking checkout"}),
    );
    s.add(
        "approved",
        json!({"proposal": p2, "operator": "bob", "reason": "agreed"}),
    );
    s.add("executing", json!({"proposal": p2, "mode": "write"}));
    s.add("executed", json!({"proposal": p2, "rows_seen": 1}));
    s.add("verified", json!({"check": "no waiters", "ok": true}));
    let p3 = s.add(
        "proposed",
        json!({"step_id": null, "sql": "DROP TABLE orders"}),
    );
    s.add("gated", json!({"proposal": p3, "decision": "deny", "approvers": 0, "risk": "destructive", "rules": ["no drops"]}));
    s.add(
        "agent_error",
        json!({"message": "model timed out after 30 s"}),
    );
    s.add(
        "failed",
        json!({"proposal": null, "error": "agent unavailable"}),
    );
    s.add(
        "concluded",
        json!({"outcome": "mitigated", "notes": "lock holder terminated"}),
    );
    s.add("session_ended", json!({"reason": "concluded"}));
    assert_eq!(s.w.last().unwrap().seq, 39);
    std::fs::read(path).unwrap()
}

fn lines_of(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split_inclusive(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

// ---------------------------------------------------------------- basics

#[test]
fn appended_events_round_trip_and_chain_from_genesis() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.jsonl");
    let mut s = Session::new(&path);
    let a = s
        .try_add("session_started", json!({"operator": "alice"}))
        .unwrap();
    let b = s
        .try_add("proposed", json!({"step_id": null, "sql": "SELECT 1"}))
        .unwrap();
    let c = s.try_add("session_ended", json!({})).unwrap();
    assert_eq!(s.w.last(), Some(&c));
    assert_eq!(s.w.path(), path.as_path());

    assert_eq!((a.seq, a.prev.as_str()), (0, GENESIS));
    assert_eq!((b.seq, b.prev.as_str()), (1, a.hash.as_str()));
    assert_eq!((c.seq, c.prev.as_str()), (2, b.hash.as_str()));
    assert_eq!(a.ts, "2025-06-15T15:06:41.234Z");
    for e in [&a, &b, &c] {
        assert_eq!(e.compute_hash(), e.hash);
    }
    let (events, v) = read_events(&path).unwrap();
    assert_eq!(events, vec![a.clone(), b, c]);
    assert_eq!(v, Verification::Ok { events: 3 });
    assert_eq!(verify(&path).unwrap(), Verification::Ok { events: 3 });

    let text = std::fs::read_to_string(&path).unwrap();
    let first = text.lines().next().unwrap();
    assert_eq!(first, canonical_json(&serde_json::to_value(&a).unwrap()));
    assert!(text.ends_with("}\n"));
}

#[test]
fn append_stamps_utc_millis() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = AuditWriter::create(&dir.path().join("s.jsonl")).unwrap();
    let e = w.append("session_started", json!({})).unwrap();
    let parsed = DateTime::parse_from_rfc3339(&e.ts).unwrap();
    assert!(
        (Utc::now() - parsed.with_timezone(&Utc))
            .num_seconds()
            .abs()
            < 60
    );
    assert_eq!(e.ts.len(), "2025-01-01T00:00:00.000Z".len());
    assert!(e.ts.ends_with('Z'));
}

#[cfg(unix)]
#[test]
fn log_is_private_and_created_dirs_are_0700() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".ward/sessions/s.jsonl");
    let mut w = AuditWriter::create(&path).unwrap();
    w.append("session_started", json!({})).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join(".ward/sessions")), 0o700);
    assert_eq!(mode(&dir.path().join(".ward")), 0o700);
}

#[test]
fn create_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.jsonl");
    std::fs::write(&path, b"precious\n").unwrap();
    assert!(matches!(
        AuditWriter::create(&path),
        Err(AuditError::Exists { .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), b"precious\n");
}

#[test]
fn a_second_writer_on_the_same_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.jsonl");
    let mut w = AuditWriter::create(&path).unwrap();
    w.append("session_started", json!({})).unwrap();
    assert!(matches!(
        AuditWriter::open_existing(&path),
        Err(AuditError::Locked { .. })
    ));
    drop(w);
    assert!(AuditWriter::open_existing(&path).is_ok());
}

#[test]
fn nothing_can_be_appended_after_the_seal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.jsonl");
    let mut s = Session::new(&path);
    s.add("session_started", json!({}));
    s.add("session_ended", json!({}));
    let before = std::fs::read(&path).unwrap();
    assert!(matches!(
        s.try_add("verified", json!({})),
        Err(AuditError::Sealed { .. })
    ));
    drop(s);
    assert!(matches!(
        AuditWriter::open_existing(&path),
        Err(AuditError::Sealed { .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn verification_serializes_with_a_status_tag() {
    let v = Verification::Tampered {
        seq: 4,
        reason: "x".into(),
    };
    assert_eq!(
        serde_json::to_value(&v).unwrap(),
        json!({"status": "tampered", "seq": 4, "reason": "x"})
    );
}

// ------------------------------------------------------ torn and unsealed

fn unsealed_session(path: &Path) -> Vec<Event> {
    let mut s = Session::new(path);
    let a = s.try_add("session_started", json!({})).unwrap();
    let p = s
        .try_add("proposed", json!({"step_id": null, "sql": "SELECT 1"}))
        .unwrap();
    let g = s
        .try_add("gated", json!({"proposal": p.hash, "decision": "allow", "approvers": 0, "risk": "read_only", "rules": []}))
        .unwrap();
    vec![a, p, g]
}

#[test]
fn intact_log_without_seal_is_unsealed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.jsonl");
    unsealed_session(&path);
    assert_eq!(
        verify(&path).unwrap(),
        Verification::Unsealed { last_seq: Some(2) }
    );
    std::fs::write(dir.path().join("empty.jsonl"), b"").unwrap();
    assert_eq!(
        verify(&dir.path().join("empty.jsonl")).unwrap(),
        Verification::Unsealed { last_seq: None }
    );
}

#[test]
fn torn_last_line_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.jsonl");
    let events = unsealed_session(&path);
    let good = std::fs::read(&path).unwrap();
    let next = events[2].canonical_line().replace("\"seq\":2", "\"seq\":3");

    // Half a JSON object, no newline.
    let mut torn = good.clone();
    torn.extend_from_slice(&next.as_bytes()[..next.len() / 2]);
    assert!(matches!(
        verdict(&torn),
        Verification::Truncated {
            last_good_seq: Some(2),
            ..
        }
    ));
    // A whole object whose newline never made it.
    let mut no_newline = good.clone();
    no_newline.extend_from_slice(next.as_bytes());
    assert!(matches!(
        verdict(&no_newline),
        Verification::Truncated {
            last_good_seq: Some(2),
            ..
        }
    ));
    // Half an object followed by a newline (or by zeros from the file system).
    let mut half = good.clone();
    half.extend_from_slice(&next.as_bytes()[..40]);
    half.push(b'\n');
    assert!(matches!(
        verdict(&half),
        Verification::Truncated {
            last_good_seq: Some(2),
            ..
        }
    ));
    let mut zeros = good;
    zeros.extend_from_slice(&[0; 300]);
    assert!(matches!(
        verdict(&zeros),
        Verification::Truncated {
            last_good_seq: Some(2),
            ..
        }
    ));
    // The same garbage in the middle of the log is tampering.
    let mut middle = half.clone();
    middle.extend_from_slice(events[0].canonical_line().as_bytes());
    middle.push(b'\n');
    assert!(matches!(
        verdict(&middle),
        Verification::Tampered { seq: 3, .. }
    ));
}

#[test]
fn reopening_after_a_torn_line_keeps_the_good_prefix_and_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.jsonl");
    let events = unsealed_session(&path);
    let good = std::fs::read(&path).unwrap();
    let mut torn = good.clone();
    torn.extend_from_slice(b"{\"data\":{\"proposal\":\"ab");
    std::fs::write(&path, &torn).unwrap();

    let mut w = AuditWriter::open_existing(&path).unwrap();
    assert_eq!(w.last(), Some(&events[2]));
    assert_eq!(std::fs::read(&path).unwrap(), good);
    let mut saved = PathBuf::from(&path).into_os_string();
    saved.push(".torn-1");
    assert_eq!(std::fs::read(&saved).unwrap(), torn);

    let next = w
        .append_at(
            "executing",
            json!({"proposal": events[1].hash, "mode": "read_only"}),
            at(9),
        )
        .unwrap();
    assert_eq!((next.seq, next.prev.as_str()), (3, events[2].hash.as_str()));
    w.append_at("session_ended", json!({}), at(10)).unwrap();
    assert_eq!(verify(&path).unwrap(), Verification::Ok { events: 5 });
}

#[test]
fn a_second_tear_gets_its_own_copy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.jsonl");
    unsealed_session(&path);
    let copy = |n: u32| {
        let mut p = PathBuf::from(&path).into_os_string();
        p.push(format!(".torn-{n}"));
        PathBuf::from(p)
    };
    for n in 1..=2u32 {
        let mut torn = std::fs::read(&path).unwrap();
        torn.extend_from_slice(format!("{{\"tear\":{n}").as_bytes());
        std::fs::write(&path, &torn).unwrap();
        drop(AuditWriter::open_existing(&path).unwrap());
        assert_eq!(std::fs::read(copy(n)).unwrap(), torn);
    }
    assert_eq!(
        verify(&path).unwrap(),
        Verification::Unsealed { last_seq: Some(2) }
    );
}

#[test]
fn open_existing_continues_an_unsealed_log_and_refuses_a_tampered_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.jsonl");
    let events = unsealed_session(&path);
    let mut w = AuditWriter::open_existing(&path).unwrap();
    assert_eq!(w.last(), Some(&events[2]));
    // The invariant state is restored too: this proposal was gated already.
    assert!(matches!(
        w.append_at("gated", json!({"proposal": events[1].hash, "decision": "allow", "approvers": 0, "risk": "read_only", "rules": []}), at(5)),
        Err(AuditError::Refused { seq: 3, .. })
    ));
    drop(w);

    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("SELECT 1", "SELECT 2", 1)).unwrap();
    match AuditWriter::open_existing(&path) {
        Err(AuditError::Tampered { seq, .. }) => assert_eq!(seq, 1),
        other => panic!("expected Tampered, got {other:?}"),
    }
}

// ------------------------------------------------------- tamper evidence

/// Where a mutation of line `i` must be reported: at line `i` itself, either
/// as tampering or (for the last line) as a torn write.
fn localized(v: &Verification, i: u64) -> bool {
    match v {
        Verification::Tampered { seq, .. } => *seq == i,
        Verification::Truncated { last_good_seq, .. } => *last_good_seq == i.checked_sub(1),
        _ => false,
    }
}

/// A tiny deterministic PRNG (splitmix64), so failures are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn every_mutation_of_a_sealed_log_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = sealed_session(&dir.path().join("s.jsonl"));
    assert_eq!(verdict(&bytes), Verification::Ok { events: 40 });
    let lines = lines_of(&bytes);
    let n = lines.len();
    assert_eq!(n, 40);
    let starts: Vec<usize> = lines
        .iter()
        .scan(0, |pos, l| {
            let s = *pos;
            *pos += l.len();
            Some(s)
        })
        .collect();
    let line_at = |pos: usize| starts.iter().rposition(|s| *s <= pos).unwrap() as u64;
    let mut checked = 0u32;

    // Delete a line: only deleting the seal reads as a crash.
    for i in 0..n {
        let mut m = lines.clone();
        m.remove(i);
        let v = verdict(&m.concat());
        if i == n - 1 {
            assert_eq!(v, Verification::Unsealed { last_seq: Some(38) });
        } else {
            assert!(localized(&v, i as u64), "delete line {i}: {v:?}");
        }
        checked += 1;
    }
    // Duplicate a line.
    for i in 0..n {
        let mut m = lines.clone();
        m.insert(i + 1, lines[i].clone());
        let v = verdict(&m.concat());
        assert!(localized(&v, i as u64 + 1), "duplicate line {i}: {v:?}");
        checked += 1;
    }
    // Swap two lines.
    for i in 0..n {
        for j in i + 1..n {
            let mut m = lines.clone();
            m.swap(i, j);
            let v = verdict(&m.concat());
            assert!(localized(&v, i as u64), "swap {i} and {j}: {v:?}");
            checked += 1;
        }
    }
    // Truncate (every 9th offset): inside a line it is a torn write, at a line
    // boundary it cannot be told from a crash (documented: Unsealed).
    for cut in (0..bytes.len()).step_by(9) {
        let v = verdict(&bytes[..cut]);
        let line = line_at(cut);
        if starts.contains(&cut) {
            assert_eq!(
                v,
                Verification::Unsealed {
                    last_seq: line.checked_sub(1)
                },
                "cut at {cut}"
            );
        } else {
            assert!(
                matches!(v, Verification::Truncated { .. }),
                "cut at {cut}: {v:?}"
            );
            assert!(localized(&v, line), "cut at {cut}: {v:?}");
        }
        checked += 1;
    }
    // Flip bits in a random byte.
    let mut rng = Rng(0x5EED_A0D1);
    for _ in 0..1200 {
        let pos = rng.below(bytes.len());
        let mask = 1 + rng.below(255) as u8;
        let mut m = bytes.clone();
        m[pos] ^= mask;
        let v = verdict(&m);
        // A byte turned into a newline splits its line; the first half is
        // then the bad line. Flipping a newline merges two lines.
        assert!(
            localized(&v, line_at(pos)),
            "flip {mask:#04x} at {pos}: {v:?}"
        );
        checked += 1;
    }
    // Change a digit inside data.
    for (i, line) in lines.iter().enumerate() {
        let ev: Event = serde_json::from_slice(line).unwrap();
        let data_end = "{\"data\":".len() + canonical_json(&ev.data).len();
        // Every other digit, to keep the test quick in debug builds.
        for pos in (8..data_end)
            .filter(|p| line[*p].is_ascii_digit())
            .step_by(2)
        {
            let mut m = lines.clone();
            let d = line[pos] - b'0';
            m[i][pos] = b'0' + (d + 1 + rng.below(9) as u8) % 10;
            let v = verdict(&m.concat());
            assert!(
                localized(&v, i as u64),
                "digit at line {i} byte {pos}: {v:?}"
            );
            checked += 1;
        }
    }
    assert!(checked > 3_500, "only {checked} mutations");
}

#[test]
fn edits_that_keep_the_meaning_are_still_tampering() {
    let mut f = Forge::default();
    f.push("session_started", json!({"note": "ctl\u{1f}"}));
    f.push("session_ended", json!({}));
    let good = String::from_utf8(f.bytes()).unwrap();
    assert_eq!(verdict(good.as_bytes()), Verification::Ok { events: 2 });
    let variants = [
        good.replacen("\\u001f", "\\u001F", 1),
        good.replacen("{\"data\":{\"note\"", "{ \"data\":{\"note\"", 1),
        good.replacen("\"v\":1}", "\"v\":1,\"extra\":0}", 1),
        good.replacen("\"v\":1}", "\"v\":1.0}", 1),
    ];
    for m in variants {
        assert_ne!(m, good);
        assert!(localized(&verdict(m.as_bytes()), 0), "{m}");
    }
}

// ------------------------------------------------------------ invariants

fn started(f: &mut Forge) {
    f.push("session_started", json!({"operator": "alice"}));
}

fn propose(f: &mut Forge) -> String {
    f.push(
        "proposed",
        json!({"step_id": null, "sql": "UPDATE t SET x = 1"}),
    )
}

fn gate(f: &mut Forge, p: &str, decision: &str, approvers: u64, risk: &str) {
    f.push(
        "gated",
        json!({"proposal": p, "decision": decision, "approvers": approvers, "risk": risk, "rules": []}),
    );
}

fn approve(f: &mut Forge, p: &str, op: &str) {
    f.push(
        "approved",
        json!({"proposal": p, "operator": op, "reason": "ok"}),
    );
}

fn execute(f: &mut Forge, p: &str, mode: &str) {
    f.push("executing", json!({"proposal": p, "mode": mode}));
}

/// The forged log must be reported as tampered at its last event, for the
/// named invariant; and the writer must refuse to write that last event.
fn assert_violates(f: &Forge, invariant: &str) {
    let last = f.events.len() as u64 - 1;
    match verdict(&f.bytes()) {
        Verification::Tampered { seq, reason } => {
            assert_eq!(seq, last, "{reason}");
            assert!(
                reason.starts_with(invariant),
                "{reason:?} does not name {invariant:?}"
            );
        }
        other => panic!("expected Tampered for {invariant:?}, got {other:?}"),
    }
    // Without the offending event the log is fine, and the writer refuses it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.jsonl");
    let (ok, bad) = f.events.split_at(f.events.len() - 1);
    let prefix = Forge {
        events: ok.to_vec(),
    };
    if !prefix.events.is_empty() {
        std::fs::write(&path, prefix.bytes()).unwrap();
        assert_eq!(
            verdict(&prefix.bytes()),
            Verification::Unsealed {
                last_seq: last.checked_sub(1)
            }
        );
    } else {
        std::fs::write(&path, b"").unwrap();
    }
    let mut w = AuditWriter::open_existing(&path).unwrap();
    match w.append_at(&bad[0].kind, bad[0].data.clone(), at(last)) {
        Err(AuditError::Refused { seq, reason, .. }) => {
            assert_eq!(seq, last);
            assert!(reason.starts_with(invariant), "{reason}");
        }
        other => panic!("writer accepted {invariant:?}: {other:?}"),
    }
    assert_eq!(
        std::fs::read(&path).unwrap().len(),
        ok.iter()
            .map(|e| e.canonical_line().len() + 1)
            .sum::<usize>()
    );
}

#[test]
fn execution_without_gate_is_tampering() {
    let mut f = Forge::default();
    started(&mut f);
    let p = propose(&mut f);
    execute(&mut f, &p, "read_only");
    assert_violates(&f, name::NOT_GATED);
}

#[test]
fn nothing_executes_after_a_deny() {
    let mut f = Forge::default();
    started(&mut f);
    let p = propose(&mut f);
    gate(&mut f, &p, "deny", 0, "destructive");
    execute(&mut f, &p, "read_only");
    assert_violates(&f, name::AFTER_DENY);
}

#[test]
fn one_of_two_approvals_is_not_enough() {
    let mut f = Forge::default();
    started(&mut f);
    let p = propose(&mut f);
    gate(&mut f, &p, "approve", 2, "write");
    approve(&mut f, &p, "alice");
    execute(&mut f, &p, "write");
    assert_violates(&f, name::APPROVALS);
}

#[test]
fn two_approvals_by_the_same_operator_count_once() {
    let mut f = Forge::default();
    started(&mut f);
    let p = propose(&mut f);
    gate(&mut f, &p, "approve", 2, "write");
    approve(&mut f, &p, "alice");
    approve(&mut f, &p, "alice");
    execute(&mut f, &p, "write");
    assert_violates(&f, name::APPROVALS);
}

#[test]
fn approvals_of_another_proposal_do_not_count() {
    let mut f = Forge::default();
    started(&mut f);
    let p = propose(&mut f);
    let q = propose(&mut f);
    gate(&mut f, &p, "approve", 1, "write");
    gate(&mut f, &q, "approve", 1, "write");
    approve(&mut f, &q, "alice");
    execute(&mut f, &p, "write");
    assert_violates(&f, name::APPROVALS);
}

#[test]
fn a_rejection_blocks_execution_even_with_enough_approvals() {
    let mut f = Forge::default();
    started(&mut f);
    let p = propose(&mut f);
    gate(&mut f, &p, "approve", 1, "write");
    approve(&mut f, &p, "alice");
    f.push(
        "rejected",
        json!({"proposal": p, "operator": "bob", "reason": "wrong host"}),
    );
    execute(&mut f, &p, "write");
    assert_violates(&f, name::AFTER_REJECT);
}

#[test]
fn write_after_a_read_only_gate_is_tampering() {
    let mut f = Forge::default();
    started(&mut f);
    let p = propose(&mut f);
    gate(&mut f, &p, "allow", 0, "read_only");
    execute(&mut f, &p, "write");
    assert_violates(&f, name::WRITE_ON_READ_ONLY);
}

#[test]
fn executed_without_executing_is_tampering() {
    let mut f = Forge::default();
    started(&mut f);
    let p = propose(&mut f);
    gate(&mut f, &p, "allow", 0, "read_only");
    execute(&mut f, &p, "read_only");
    f.push("executed", json!({"proposal": p, "rows_seen": 1}));
    f.push("executed", json!({"proposal": p, "rows_seen": 1}));
    assert_violates(&f, name::EXECUTED_WITHOUT_EXECUTING);
}

#[test]
fn approvals_and_gates_must_name_a_real_proposal() {
    let fake = "f".repeat(64);
    for kind in ["gated", "approved", "rejected", "executing", "failed"] {
        let mut f = Forge::default();
        started(&mut f);
        propose(&mut f);
        f.push(
            kind,
            json!({"proposal": fake, "decision": "allow", "approvers": 0, "risk": "read_only",
                   "operator": "alice", "reason": "x", "mode": "read_only"}),
        );
        assert_violates(&f, name::UNKNOWN_PROPOSAL);
    }
}

#[test]
fn a_proposal_is_gated_once() {
    let mut f = Forge::default();
    started(&mut f);
    let p = propose(&mut f);
    gate(&mut f, &p, "deny", 0, "destructive");
    gate(&mut f, &p, "allow", 0, "destructive");
    assert_violates(&f, name::REGATED);
}

#[test]
fn the_log_starts_with_session_started_and_ends_at_the_seal() {
    let mut f = Forge::default();
    propose(&mut f);
    assert_violates(&f, name::FIRST_EVENT);

    let mut f = Forge::default();
    started(&mut f);
    started(&mut f);
    assert_violates(&f, name::FIRST_EVENT);

    let mut f = Forge::default();
    started(&mut f);
    f.push("session_ended", json!({}));
    f.push("verified", json!({}));
    match verdict(&f.bytes()) {
        Verification::Tampered { seq: 2, reason } => assert!(reason.starts_with(name::AFTER_SEAL)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_protocol_events_are_tampering() {
    let mut f = Forge::default();
    started(&mut f);
    let p = propose(&mut f);
    gate(&mut f, &p, "maybe", 0, "write");
    assert_violates(&f, name::MALFORMED);

    let mut f = Forge::default();
    started(&mut f);
    let p = propose(&mut f);
    gate(&mut f, &p, "allow", 0, "read_only");
    execute(&mut f, &p, "sudo");
    assert_violates(&f, name::MALFORMED);
}

// ------------------------------------------- random sessions vs a model

#[derive(Debug, Clone)]
enum Action {
    Propose,
    Gate {
        p: usize,
        decision: u8,
        approvers: u64,
        risk: u8,
    },
    Approve {
        p: usize,
        op: u8,
    },
    Reject {
        p: usize,
        op: u8,
    },
    Execute {
        p: usize,
        write: bool,
    },
    Executed {
        p: usize,
    },
    Note,
    Crash,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => Just(Action::Propose),
        3 => (0..8usize, 0..3u8, 0..4u64, 0..6u8)
            .prop_map(|(p, decision, approvers, risk)| Action::Gate { p, decision, approvers, risk }),
        4 => (0..8usize, 0..3u8).prop_map(|(p, op)| Action::Approve { p, op }),
        1 => (0..8usize, 0..3u8).prop_map(|(p, op)| Action::Reject { p, op }),
        4 => (0..8usize, any::<bool>()).prop_map(|(p, write)| Action::Execute { p, write }),
        2 => (0..8usize).prop_map(|p| Action::Executed { p }),
        1 => Just(Action::Note),
        1 => Just(Action::Crash),
    ]
}

const DECISIONS: [&str; 3] = ["allow", "approve", "deny"];
const RISKS: [&str; 6] = [
    "read_only",
    "write",
    "schema",
    "destructive",
    "privilege",
    "unknown",
];
const OPERATORS: [&str; 3] = ["alice", "bob", "carol"];

/// The reference model of when a proposal may execute, written from the
/// rules rather than from the checker.
#[derive(Default)]
struct ModelProposal {
    hash: String,
    gate: Option<(u8, u64, u8)>,
    approvers: BTreeSet<u8>,
    rejected: bool,
    open: u32,
}

impl ModelProposal {
    fn may_execute(&self, write: bool) -> bool {
        let Some((decision, needed, risk)) = self.gate else {
            return false;
        };
        let decided = match DECISIONS[usize::from(decision)] {
            "allow" => true,
            "approve" => !self.rejected && self.approvers.len() as u64 >= needed,
            _ => false,
        };
        decided && !(write && RISKS[usize::from(risk)] == "read_only")
    }
}

/// Plays `actions` and returns the events to write (kind, data), the seq of
/// the first execution the model forbids (when `reckless` executes anyway),
/// and whether the session was sealed.
fn play(
    actions: &[Action],
    reckless: bool,
    mut emit: impl FnMut(&str, Value) -> String,
) -> (Option<u64>, bool) {
    let seq = std::cell::Cell::new(0u64);
    let mut emit = |kind: &str, data: Value| {
        seq.set(seq.get() + 1);
        emit(kind, data)
    };
    emit("session_started", json!({"operator": "alice"}));
    let mut ps: Vec<ModelProposal> = Vec::new();
    let mut first_bad = None;
    for a in actions {
        match *a {
            Action::Crash => return (first_bad, false),
            Action::Note => {
                emit("analyzed", json!({"note": "n"}));
            }
            Action::Propose => {
                let hash = emit(
                    "proposed",
                    json!({"step_id": null, "sql": format!("SELECT {}", ps.len())}),
                );
                ps.push(ModelProposal {
                    hash,
                    ..ModelProposal::default()
                });
            }
            _ if ps.is_empty() => {}
            Action::Gate {
                p,
                decision,
                approvers,
                risk,
            } => {
                let n = ps.len();
                let m = &mut ps[p % n];
                if m.gate.is_none() {
                    emit(
                        "gated",
                        json!({"proposal": m.hash, "decision": DECISIONS[usize::from(decision)],
                        "approvers": approvers, "risk": RISKS[usize::from(risk)], "rules": []}),
                    );
                    m.gate = Some((decision, approvers, risk));
                }
            }
            Action::Approve { p, op } => {
                let n = ps.len();
                let m = &mut ps[p % n];
                emit(
                    "approved",
                    json!({"proposal": m.hash, "operator": OPERATORS[usize::from(op)], "reason": "ok"}),
                );
                m.approvers.insert(op);
            }
            Action::Reject { p, op } => {
                let n = ps.len();
                let m = &mut ps[p % n];
                emit(
                    "rejected",
                    json!({"proposal": m.hash, "operator": OPERATORS[usize::from(op)], "reason": "no"}),
                );
                m.rejected = true;
            }
            Action::Execute { p, write } => {
                let n = ps.len();
                let m = &mut ps[p % n];
                let allowed = m.may_execute(write);
                if allowed || reckless {
                    if !allowed && first_bad.is_none() {
                        first_bad = Some(seq.get());
                    }
                    emit(
                        "executing",
                        json!({"proposal": m.hash, "mode": if write { "write" } else { "read_only" }}),
                    );
                    m.open += 1;
                }
            }
            Action::Executed { p } => {
                let n = ps.len();
                let m = &mut ps[p % n];
                if m.open > 0 {
                    emit("executed", json!({"proposal": m.hash, "rows_seen": 3}));
                    m.open -= 1;
                }
            }
        }
    }
    emit("session_ended", json!({}));
    (first_bad, true)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn sessions_the_model_allows_always_verify(actions in prop::collection::vec(action(), 0..60)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        let mut s = Session::new(&path);
        let (bad, sealed) = play(&actions, false, |kind, data| s.add(kind, data));
        prop_assert_eq!(bad, None);
        let events = s.w.last().unwrap().seq + 1;
        let expected = if sealed {
            Verification::Ok { events }
        } else {
            Verification::Unsealed { last_seq: Some(events - 1) }
        };
        prop_assert_eq!(verify(&path).unwrap(), expected);
    }

    #[test]
    fn executing_what_the_model_forbids_is_always_caught(actions in prop::collection::vec(action(), 0..60)) {
        let mut f = Forge::default();
        let (bad, sealed) = play(&actions, true, |kind, data| f.push(kind, data));
        let v = verdict(&f.bytes());
        let events = f.events.len() as u64;
        match bad {
            Some(seq) => {
                prop_assert!(matches!(v, Verification::Tampered { seq: s, .. } if s == seq), "{:?} at {}", v, seq);
            }
            None if sealed => prop_assert_eq!(v, Verification::Ok { events }),
            None => prop_assert_eq!(v, Verification::Unsealed { last_seq: Some(events - 1) }),
        }
    }
}

#[test]
fn read_events_returns_everything_parsable_with_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.jsonl");
    let events = unsealed_session(&path);
    let text = std::fs::read_to_string(&path).unwrap();
    // Edit the middle event: it still parses, but the chain breaks there.
    std::fs::write(&path, text.replacen("SELECT 1", "SELECT 2", 1)).unwrap();
    let (got, v) = read_events(&path).unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!((&got[0], &got[2]), (&events[0], &events[2]));
    assert_eq!(got[1].data["sql"], json!("SELECT 2"));
    assert_eq!(
        v,
        Verification::Tampered {
            seq: 1,
            reason: "hash does not match the event".into()
        }
    );
}

// ---------------------------------------------- admission at execution (v2)

fn started_v2(f: &mut Forge) {
    f.push(
        "session_started",
        json!({"operator": "alice", "events_version": 2}),
    );
}

fn readmit(f: &mut Forge, p: &str, decision: &str, approvers: u64, admit: &str, roles: &str) {
    f.push(
        "readmitted",
        json!({"proposal": p, "decision": decision, "approvers": approvers, "risk": "write",
               "rules": [], "admit": admit, "requires_roles": roles}),
    );
}

fn approve_holding(f: &mut Forge, p: &str, op: &str, roles: &str) {
    f.push(
        "approved",
        json!({"proposal": p, "operator": op, "reason": "ok", "holds_roles": roles}),
    );
}

#[test]
fn from_version_2_an_execution_needs_a_readmission_right_before_it() {
    let mut f = Forge::default();
    started_v2(&mut f);
    let p = propose(&mut f);
    gate(&mut f, &p, "allow", 0, "read_only");
    execute(&mut f, &p, "read_only");
    assert_violates(&f, name::NOT_READMITTED);

    // A readmission that did not say run, or one with an event between it
    // and the execution, does not let it run either.
    let mut f = Forge::default();
    started_v2(&mut f);
    let p = propose(&mut f);
    gate(&mut f, &p, "approve", 1, "write");
    readmit(&mut f, &p, "approve", 1, "needs_approvals", "");
    approve(&mut f, &p, "alice");
    execute(&mut f, &p, "write");
    assert_violates(&f, name::NOT_READMITTED);
}

#[test]
fn the_latest_admission_decides_a_deny_at_execution_stops_it() {
    let mut f = Forge::default();
    started_v2(&mut f);
    let p = propose(&mut f);
    gate(&mut f, &p, "approve", 1, "write");
    approve(&mut f, &p, "alice");
    // A forged readmission that claims run over a deny verdict.
    readmit(&mut f, &p, "deny", 0, "run", "");
    execute(&mut f, &p, "write");
    assert_violates(&f, name::AFTER_DENY);
}

#[test]
fn approvals_that_count_must_hold_the_required_roles_as_logged() {
    let mut f = Forge::default();
    started_v2(&mut f);
    let p = propose(&mut f);
    gate(&mut f, &p, "approve", 1, "schema");
    approve_holding(&mut f, &p, "bob", "dba");
    readmit(&mut f, &p, "approve", 1, "run", "owner");
    execute(&mut f, &p, "write");
    assert_violates(&f, name::ROLES);

    // With an owner among the approvers the same log is fine.
    let mut f = Forge::default();
    started_v2(&mut f);
    let p = propose(&mut f);
    gate(&mut f, &p, "approve", 1, "schema");
    approve_holding(&mut f, &p, "bob", "dba");
    approve_holding(&mut f, &p, "alice", "dba,owner");
    readmit(&mut f, &p, "approve", 1, "run", "owner");
    execute(&mut f, &p, "write");
    assert!(
        matches!(verdict(&f.bytes()), Verification::Unsealed { .. }),
        "{:?}",
        verdict(&f.bytes())
    );
}
