//! One line of a session log and how it is hashed and encoded.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::canonical::{Sink, put_str, put_u64, write_canonical};

/// One event of a session log.
///
/// `hash = sha256(prev as ASCII hex || canonical JSON of the event without
/// "hash")`. On disk the line is the canonical JSON of the whole event, and
/// the verifier insists on exactly those bytes, so no byte of a line can
/// change without the verdict changing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub v: u32,
    pub seq: u64,
    pub ts: String,
    pub kind: String,
    pub data: serde_json::Value,
    pub prev: String,
    pub hash: String,
}

impl Event {
    /// The hash this event should carry, from all its fields but `hash`.
    pub fn compute_hash(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.prev.as_bytes());
        self.write_canonical(&mut hasher, false);
        hex(&hasher.finalize())
    }

    /// The event's line as written to the log, without the newline.
    pub fn canonical_line(&self) -> String {
        let mut out = Vec::new();
        self.write_canonical(&mut out, true);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Writes the event as canonical JSON. Keys in bytewise order are data,
    /// hash, kind, prev, seq, ts, v; writing them by hand avoids building a
    /// `Value` (and a copy of a large `data`) for every line.
    pub(crate) fn write_canonical<S: Sink + ?Sized>(&self, sink: &mut S, with_hash: bool) {
        sink.put(b"{\"data\":");
        write_canonical(sink, &self.data);
        if with_hash {
            sink.put(b",\"hash\":");
            put_str(sink, &self.hash);
        }
        sink.put(b",\"kind\":");
        put_str(sink, &self.kind);
        sink.put(b",\"prev\":");
        put_str(sink, &self.prev);
        sink.put(b",\"seq\":");
        put_u64(sink, self.seq);
        sink.put(b",\"ts\":");
        put_str(sink, &self.ts);
        sink.put(b",\"v\":");
        put_u64(sink, u64::from(self.v));
        sink.put(b"}");
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{GENESIS, canonical_json};
    use serde_json::json;

    fn sample() -> Event {
        let mut e = Event {
            v: 1,
            seq: 0,
            ts: "2025-01-02T03:04:05.678Z".into(),
            kind: "session_started".into(),
            data: json!({"z": 1, "a": "x\ny"}),
            prev: GENESIS.into(),
            hash: String::new(),
        };
        e.hash = e.compute_hash();
        e
    }

    #[test]
    fn line_is_canonical_json_of_the_whole_event() {
        let e = sample();
        let as_value = serde_json::to_value(&e).unwrap();
        assert_eq!(e.canonical_line(), canonical_json(&as_value));
    }

    #[test]
    fn hash_is_sha256_of_prev_and_canonical_event_without_hash() {
        let e = sample();
        let mut without = serde_json::to_value(&e).unwrap();
        without.as_object_mut().unwrap().remove("hash");
        let mut h = Sha256::new();
        h.update(GENESIS.as_bytes());
        h.update(canonical_json(&without).as_bytes());
        assert_eq!(e.hash, hex(&h.finalize()));
        assert_eq!(e.hash.len(), 64);
    }
}
