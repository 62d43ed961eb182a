//! Canonical JSON: compact, object keys sorted bytewise at every level, and
//! serde_json's own string escaping and number formatting.
//!
//! The writer is serde_json itself, fed a view of the value whose objects are
//! sorted maps ([`Sorted`]). serde_json is built with `preserve_order`, so its
//! `Map` keeps insertion order and must never be serialized directly where a
//! hash depends on it. The bytes are the ones the earlier hand-written writer
//! produced; `logs_written_before_re_encode_to_the_same_bytes` holds every
//! line of the logs in `fixtures/audit` to that.
//!
//! The writer is generic over a byte sink so the same code produces a line,
//! feeds a hasher, or compares against a line already on disk without
//! allocating a copy of it.
//!
//! [`Scanner`] is the reading side: it accepts exactly the texts the writer
//! can produce (up to a nesting depth), without building a `Value`, so the
//! verifier can check a line's form at the speed of a byte scan and read only
//! the few members it needs.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde::{Serialize, Serializer};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Somewhere canonical bytes go. Sinks never fail, which is what keeps the
/// writer free of error paths.
pub(crate) trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Sink for Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

/// Checks that the bytes put into it spell out `expected` exactly.
///
/// Floats need no special care: serde_json is built with `float_roundtrip`,
/// so a float token parses to the float it spells, and re-formatting it
/// gives the same token exactly when the token is the shortest round-trip
/// form the writer produces.
pub(crate) struct Compare<'a> {
    expected: &'a [u8],
    pos: usize,
    equal: bool,
}

impl<'a> Compare<'a> {
    pub(crate) fn new(expected: &'a [u8]) -> Compare<'a> {
        Compare {
            expected,
            pos: 0,
            equal: true,
        }
    }

    /// How many bytes matched so far.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// True when everything put matched and nothing of `expected` is left.
    pub(crate) fn is_equal(&self) -> bool {
        self.equal && self.pos == self.expected.len()
    }
}

impl Sink for Compare<'_> {
    fn put(&mut self, bytes: &[u8]) {
        if self.equal && self.expected[self.pos..].starts_with(bytes) {
            self.pos += bytes.len();
        } else {
            self.equal = false;
        }
    }
}

/// Adapts a `Sink` to `io::Write` so serde_json can write into it.
struct Adapter<'s, S: Sink + ?Sized>(&'s mut S);

impl<S: Sink + ?Sized> std::io::Write for Adapter<'_, S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.put(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Serializes any `Serialize` value compactly into `sink` with serde_json.
fn put<S: Sink + ?Sized, T: Serialize + ?Sized>(sink: &mut S, value: &T) {
    // serde_json fails only when the writer does (`Adapter` never does) or
    // on a map key that is not a string (keys here are `String`s).
    let written = serde_json::to_writer(Adapter(sink), value);
    debug_assert!(written.is_ok());
}

/// Writes a JSON string literal with serde_json's escaping.
pub(crate) fn put_str<S: Sink + ?Sized>(sink: &mut S, s: &str) {
    put(sink, s);
}

/// Writes an unsigned integer the way serde_json does.
pub(crate) fn put_u64<S: Sink + ?Sized>(sink: &mut S, n: u64) {
    put(sink, &n);
}

/// A `Value` that serializes its objects with their keys in bytewise order
/// (a sorted map) and everything else as serde_json itself does. Arrays keep
/// their order: rows, columns and lists mean something by it.
struct Sorted<'v>(&'v Value);

impl Serialize for Sorted<'_> {
    fn serialize<Ser: Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        match self.0 {
            Value::Array(items) => serializer.collect_seq(items.iter().map(Sorted)),
            Value::Object(map) => {
                // `String`'s `Ord` is bytewise over UTF-8, which is the order
                // we promise; keys in a `Map` are unique, so the order is
                // total. A sorted vector is a sorted map without a tree's
                // allocations.
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                serializer.collect_map(entries.into_iter().map(|(k, v)| (k, Sorted(v))))
            }
            scalar => scalar.serialize(serializer),
        }
    }
}

/// Writes `v` as canonical JSON into `sink`.
pub(crate) fn write_canonical<S: Sink + ?Sized>(sink: &mut S, v: &Value) {
    put(sink, &Sorted(v));
}

/// `v` as canonical JSON: compact, keys sorted bytewise at every level.
pub fn canonical_json(v: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(&mut out, v);
    // Everything written is serde_json output or ASCII punctuation, so this
    // is valid UTF-8; the lossy path only exists to avoid a panic site.
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// How deep the scanner follows nested arrays and objects. Deeper text is
/// refused, and the verifier then parses it the slow way, so the limit only
/// costs speed; it keeps the recursion well inside serde_json's own limit and
/// the stack.
const MAX_DEPTH: u32 = 64;

/// A string literal as it stands in canonical text: the bytes between the
/// quotes, escapes and all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawStr<'a> {
    raw: &'a str,
    escaped: bool,
}

impl<'a> RawStr<'a> {
    /// The string itself when it needs no unescaping, which is the common
    /// case and never allocates.
    pub(crate) fn plain(self) -> Option<&'a str> {
        (!self.escaped).then_some(self.raw)
    }

    /// The string with its escapes decoded.
    pub(crate) fn text(self) -> Cow<'a, str> {
        if !self.escaped {
            return Cow::Borrowed(self.raw);
        }
        // Canonical escapes stand for single ASCII bytes, so replacing them
        // in valid UTF-8 leaves valid UTF-8; the lossy path only avoids a
        // panic site.
        let bytes: Vec<u8> = self.bytes().collect();
        match String::from_utf8(bytes) {
            Ok(s) => Cow::Owned(s),
            Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
        }
    }

    /// The decoded bytes, without allocating.
    fn bytes(self) -> impl Iterator<Item = u8> + 'a {
        let mut rest = self.raw.as_bytes();
        std::iter::from_fn(move || {
            let (&first, tail) = rest.split_first()?;
            if first != b'\\' {
                rest = tail;
                return Some(first);
            }
            let (byte, len) = unescape(rest)?;
            rest = rest.get(len..)?;
            Some(byte)
        })
    }

    /// Bytewise order of the decoded strings, which is the order the writer
    /// sorts keys in. Escaping does not keep that order (`\n` sorts before
    /// `"` but `\\n` after `\\"`), so escaped keys are compared decoded.
    fn cmp_decoded(self, other: RawStr<'_>) -> Ordering {
        if self.escaped || other.escaped {
            self.bytes().cmp(other.bytes())
        } else {
            self.raw.cmp(other.raw)
        }
    }
}

/// A scanned value, in as much detail as a reader of a few members needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scalar<'a> {
    Null,
    Str(RawStr<'a>),
    /// A non-negative integer (what `Value::as_u64` gives).
    UInt(u64),
    /// A boolean, a negative integer, a float, an array or an object.
    Other,
}

/// The byte a canonical escape at the start of `s` stands for, and the
/// escape's length; `None` for any escape the writer would not produce:
/// serde_json writes `\"`, `\\`, the five short forms for control characters
/// that have one, and `\u00xx` in lowercase hex for the other control
/// characters only.
fn unescape(s: &[u8]) -> Option<(u8, usize)> {
    let short = match *s.get(1)? {
        b'"' => b'"',
        b'\\' => b'\\',
        b'b' => 0x08,
        b't' => b'\t',
        b'n' => b'\n',
        b'f' => 0x0c,
        b'r' => b'\r',
        b'u' => {
            let hex = s.get(2..6)?;
            let high = match hex {
                [b'0', b'0', b'0', _] => 0,
                [b'0', b'0', b'1', _] => 0x10,
                _ => return None,
            };
            let low = match hex.get(3)? {
                d @ b'0'..=b'9' => d - b'0',
                d @ b'a'..=b'f' => d - b'a' + 10,
                _ => return None,
            };
            let byte = high | low;
            return (!matches!(byte, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d)).then_some((byte, 6));
        }
        _ => return None,
    };
    Some((short, 2))
}

/// True when one of the 8 bytes of `w` is `"`, `\` or below 0x20: the bytes
/// a string scan has to stop at.
fn has_special(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
    (zero_byte(w ^ (ONES * u64::from(b'"')))
        | zero_byte(w ^ (ONES * u64::from(b'\\')))
        | below_space)
        != 0
}

/// Reads canonical JSON and refuses anything else: whitespace, keys out of
/// bytewise order or repeated, any escape or number spelling other than the
/// one the writer produces. Every method returns `None` at the first byte
/// that is not canonical (or nests deeper than [`MAX_DEPTH`]); callers then
/// treat the text as suspect rather than guess.
pub(crate) struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(text: &'a str) -> Scanner<'a> {
        Scanner { text, pos: 0 }
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos == self.text.len()
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    /// Consumes `lit`, which must come next byte for byte.
    pub(crate) fn expect(&mut self, lit: &str) -> Option<()> {
        let rest = self.text.as_bytes().get(self.pos..)?;
        rest.starts_with(lit.as_bytes())
            .then(|| self.pos += lit.len())
    }

    /// One value, whose object members (if it is an object) are not needed.
    pub(crate) fn scalar(&mut self) -> Option<Scalar<'a>> {
        self.value_at(0, None)
    }

    /// One value; if it is an object, `member` sees each of its own members
    /// (not those of nested objects) as it is scanned.
    pub(crate) fn value(
        &mut self,
        member: &mut dyn FnMut(RawStr<'a>, Scalar<'a>),
    ) -> Option<Scalar<'a>> {
        self.value_at(0, Some(member))
    }

    fn value_at(
        &mut self,
        depth: u32,
        member: Option<&mut dyn FnMut(RawStr<'a>, Scalar<'a>)>,
    ) -> Option<Scalar<'a>> {
        match self.peek()? {
            b'"' => self.string().map(Scalar::Str),
            b'{' => self.object(depth + 1, member).map(|()| Scalar::Other),
            b'[' => self.array(depth + 1).map(|()| Scalar::Other),
            b'n' => self.expect("null").map(|()| Scalar::Null),
            b't' => self.expect("true").map(|()| Scalar::Other),
            b'f' => self.expect("false").map(|()| Scalar::Other),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn object(
        &mut self,
        depth: u32,
        mut member: Option<&mut dyn FnMut(RawStr<'a>, Scalar<'a>)>,
    ) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.pos += 1;
        if self.peek()? == b'}' {
            self.pos += 1;
            return Some(());
        }
        let mut prev: Option<RawStr<'a>> = None;
        loop {
            let key = self.string()?;
            // Strictly increasing also rules out a repeated key, which a
            // parser would silently collapse.
            if prev.is_some_and(|p| p.cmp_decoded(key) != Ordering::Less) {
                return None;
            }
            prev = Some(key);
            self.expect(":")?;
            let value = self.value_at(depth, None)?;
            if let Some(f) = member.as_deref_mut() {
                f(key, value);
            }
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn array(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.pos += 1;
        if self.peek()? == b']' {
            self.pos += 1;
            return Some(());
        }
        loop {
            self.value_at(depth, None)?;
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A string literal. The text is already known to be UTF-8, so only the
    /// bytes that end a run need a look: quote, backslash and raw control
    /// characters (which the writer always escapes).
    pub(crate) fn string(&mut self) -> Option<RawStr<'a>> {
        let bytes = self.text.as_bytes();
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.pos + 1;
        let mut i = start;
        let mut escaped = false;
        loop {
            while let Some(chunk) = bytes.get(i..i + 8) {
                let mut word = [0; 8];
                word.copy_from_slice(chunk);
                if has_special(u64::from_le_bytes(word)) {
                    break;
                }
                i += 8;
            }
            match *bytes.get(i)? {
                b'"' => break,
                b'\\' => {
                    let (_, len) = unescape(bytes.get(i..)?)?;
                    escaped = true;
                    i += len;
                }
                0..=0x1f => return None,
                _ => i += 1,
            }
        }
        let raw = self.text.get(start..i)?;
        self.pos = i + 1;
        Some(RawStr { raw, escaped })
    }

    /// A number as serde_json writes it: an integer for any integer it parsed
    /// as one, and the shortest round-trip form for a float.
    fn number(&mut self) -> Option<Scalar<'a>> {
        let bytes = self.text.as_bytes();
        let digits_from = |mut i: usize| {
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        let start = self.pos;
        let negative = bytes.get(start) == Some(&b'-');
        let int_start = start + usize::from(negative);
        // A leading zero stands alone; a digit after it fails at the caller,
        // which expects a separator.
        let int_end = match bytes.get(int_start)? {
            b'0' => int_start + 1,
            b'1'..=b'9' => digits_from(int_start + 1),
            _ => return None,
        };
        let mut end = int_end;
        if bytes.get(end) == Some(&b'.') {
            let frac_end = digits_from(end + 1);
            if frac_end == end + 1 {
                return None;
            }
            end = frac_end;
        }
        if matches!(bytes.get(end), Some(b'e' | b'E')) {
            let mut exp = end + 1;
            if matches!(bytes.get(exp), Some(b'+' | b'-')) {
                exp += 1;
            }
            let exp_end = digits_from(exp);
            if exp_end == exp {
                return None;
            }
            end = exp_end;
        }
        let token = self.text.get(start..end)?;
        self.pos = end;
        if end != int_end {
            return canonical_float(token).then_some(Scalar::Other);
        }
        // Too large for a u64 (or an i64 when negative), serde_json parses an
        // integer as a float and writes it in float form; `-0` too.
        let magnitude: u64 = self.text.get(int_start..int_end)?.parse().ok()?;
        if !negative {
            Some(Scalar::UInt(magnitude))
        } else if (1..=1 << 63).contains(&magnitude) {
            Some(Scalar::Other)
        } else {
            None
        }
    }
}

/// Whether a float token is what serde_json writes for the float it spells.
/// The token is read with std's exact parser, as `Compare` does.
fn canonical_float(token: &str) -> bool {
    let Some(f) = token.parse::<f64>().ok().filter(|f| f.is_finite()) else {
        return false;
    };
    let mut buf = [0u8; 32];
    let left = {
        let mut out: &mut [u8] = &mut buf;
        if serde_json::to_writer(&mut out, &f).is_err() {
            return false;
        }
        out.len()
    };
    buf.get(..buf.len() - left) == Some(token.as_bytes())
}

/// Whether `text` is exactly one value in canonical form.
#[cfg(test)]
pub(crate) fn is_canonical(text: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(text) else {
        return false;
    };
    let mut s = Scanner::new(text);
    s.scalar().is_some() && s.at_end()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// The hand-written writer this module used before it became serde_json
    /// over sorted maps, kept as the oracle the new one must match byte for
    /// byte.
    fn old_writer(out: &mut Vec<u8>, v: &Value) {
        match v {
            Value::Null => out.extend_from_slice(b"null"),
            Value::Bool(true) => out.extend_from_slice(b"true"),
            Value::Bool(false) => out.extend_from_slice(b"false"),
            Value::Number(n) => match n.as_f64() {
                Some(f) if n.is_f64() => serde_json::to_writer(&mut *out, &f).unwrap(),
                _ => serde_json::to_writer(&mut *out, n).unwrap(),
            },
            Value::String(s) => serde_json::to_writer(&mut *out, s).unwrap(),
            Value::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    old_writer(out, item);
                }
                out.push(b']');
            }
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                out.push(b'{');
                for (i, (key, value)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    serde_json::to_writer(&mut *out, key).unwrap();
                    out.push(b':');
                    old_writer(out, value);
                }
                out.push(b'}');
            }
        }
    }

    /// Logs the earlier writer produced: a headless demo, four `ward test`
    /// scenario runs, and forged events full of floats, escapes and
    /// unordered keys.
    fn fixture_logs() -> Vec<std::path::PathBuf> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/audit");
        let mut logs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        logs.sort();
        logs
    }

    #[test]
    fn logs_written_before_re_encode_to_the_same_bytes() {
        let logs = fixture_logs();
        assert!(logs.len() >= 6, "{logs:?}");
        let mut lines = 0;
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap();
            for line in text.lines() {
                let value: Value = serde_json::from_str(line).unwrap();
                let mut old = Vec::new();
                old_writer(&mut old, &value);
                assert_eq!(old, line.as_bytes(), "{}", log.display());
                assert_eq!(canonical_json(&value), line, "{}", log.display());
                let event: crate::audit::Event = serde_json::from_str(line).unwrap();
                assert_eq!(event.canonical_line(), line, "{}", log.display());
                assert_eq!(event.compute_hash(), event.hash, "{}", log.display());
                let mut cmp = Compare::new(line.as_bytes());
                event.write_canonical(&mut cmp, true);
                assert!(cmp.is_equal(), "{}", log.display());
                lines += 1;
            }
        }
        assert!(lines > 200, "{lines}");
    }

    #[test]
    fn real_logs_written_before_still_verify() {
        for log in fixture_logs() {
            let name = log.file_name().unwrap().to_string_lossy().into_owned();
            // The forged log's chain holds, but its events are not a session.
            if name.starts_with("tricky") {
                continue;
            }
            let verdict = crate::audit::verify(&log).unwrap();
            assert!(
                matches!(verdict, crate::audit::Verification::Ok { .. }),
                "{name}: {verdict:?}"
            );
        }
    }

    #[test]
    fn sorts_keys_at_every_level_and_is_compact() {
        let v = json!({"b": 1, "a": {"z": [3, {"y": null, "x": true}], "é": "q", "A": 1.5}});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"A":1.5,"z":[3,{"x":true,"y":null}],"é":"q"},"b":1}"#
        );
    }

    #[test]
    fn uses_serde_json_escaping_for_keys_and_values() {
        let v = json!({"k\"\n\u{1}": "tab\there \\ \u{7f} \u{2028} 😀"});
        assert_eq!(
            canonical_json(&v),
            "{\"k\\\"\\n\\u0001\":\"tab\\there \\\\ \u{7f} \u{2028} 😀\"}"
        );
    }

    #[test]
    fn float_tokens_compare_equal_only_in_their_shortest_form() {
        // serde_json without float_roundtrip parses this one ulp off, which
        // is why the crate enables it.
        let text = "[-5.184122369684464e-126,0.1,3.0,1e+300]";
        let back: Value = serde_json::from_str(text).unwrap();
        let mut cmp = Compare::new(text.as_bytes());
        write_canonical(&mut cmp, &back);
        assert!(cmp.is_equal());
        for wrong in [
            "[-5.1841223696844640e-126,0.1,3.0,1e+300]",
            "[-5.184122369684464e-126,0.10,3.0,1e+300]",
            "[-5.184122369684464e-126,0.1,3.00,1e+300]",
            "[-5.184122369684464e-126,0.1,3.0,1E+300]",
            "[-5.184122369684464e-126,0.1,3.0,1e300]",
        ] {
            let back: Value = serde_json::from_str(wrong).unwrap();
            let mut cmp = Compare::new(wrong.as_bytes());
            write_canonical(&mut cmp, &back);
            assert!(!cmp.is_equal(), "{wrong}");
        }
    }

    #[test]
    fn compare_sink_accepts_only_the_exact_bytes() {
        let v = json!({"a": [1, 2]});
        let mut same = Compare::new(br#"{"a":[1,2]}"#);
        write_canonical(&mut same, &v);
        assert!(same.is_equal());
        let mut longer = Compare::new(br#"{"a":[1,2]} "#);
        write_canonical(&mut longer, &v);
        assert!(!longer.is_equal());
        let mut different = Compare::new(br#"{"a":[1,3]}"#);
        write_canonical(&mut different, &v);
        assert!(!different.is_equal());
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((any::<String>(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// Sorts a value's objects by rebuilding them in key order; with
    /// `preserve_order` that makes serde_json's own compact output canonical,
    /// which gives an independent oracle.
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            Value::Object(m) => {
                let mut kv: Vec<_> = m.iter().collect();
                kv.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                Value::Object(
                    kv.into_iter()
                        .map(|(k, v)| (k.clone(), sorted(v)))
                        .collect(),
                )
            }
            other => other.clone(),
        }
    }

    /// The slow, obviously right definition the scanner must agree with:
    /// it parses, and re-encoding what it parses to gives the same bytes.
    fn parses_and_compares_equal(text: &[u8]) -> bool {
        serde_json::from_slice::<Value>(text).is_ok_and(|v| {
            let mut cmp = Compare::new(text);
            write_canonical(&mut cmp, &v);
            cmp.is_equal()
        })
    }

    #[test]
    fn scanner_accepts_exactly_the_writers_spellings() {
        let accepted = [
            r#"{"a":1,"b":[true,false,null],"c":{}}"#,
            // Keys sort by their decoded bytes: "\n" (0x0a) before "\"" (0x22),
            // though the escaped forms sort the other way round.
            r#"{"\n":1,"\"":2}"#,
            "\"é \u{7f} \u{2028} 😀 /\"",
            r#""\u001f\u0000\b\t\n\f\r\"\\""#,
            "-9223372036854775808",
            "18446744073709551615",
            "0",
            "1.5",
            "3.0",
            "-0.0",
            "1e+300",
            "5e-324",
            "[]",
        ];
        for text in accepted {
            assert!(is_canonical(text.as_bytes()), "{text}");
            assert!(parses_and_compares_equal(text.as_bytes()), "{text}");
        }
        let refused = [
            r#"{"a": 1}"#,
            r#" {"a":1}"#,
            r#"{"a":1} "#,
            r#"[1 ,2]"#,
            r#"{"b":1,"a":2}"#,
            r#"{"a":1,"a":1}"#,
            r#"{"a":{"y":1,"x":2}}"#,
            r#"{"\"":2,"\n":1}"#,
            r#""\u00e9""#,
            r#""\u001F""#,
            r#""\u0009""#,
            r#""\u007f""#,
            r#""\u0041""#,
            r#""\/""#,
            "\"tab\there\"",
            "\"\u{1f}\"",
            "1.50",
            "15e-1",
            "1.5e0",
            "1E+300",
            "1e300",
            "1e400",
            "-0",
            "01",
            "+1",
            ".5",
            "1.",
            "18446744073709551616",
            "-9223372036854775809",
            "tru",
            "nulll",
            "[1,]",
            r#"{"a":1,}"#,
            r#"{"a"}"#,
            "\"unterminated",
            "",
        ];
        for text in refused {
            assert!(!is_canonical(text.as_bytes()), "{text}");
            assert!(!parses_and_compares_equal(text.as_bytes()), "{text}");
        }
        assert!(!is_canonical(b"\"\xff\""));
        // Both are canonical, for different values (a float and an integer);
        // the hash tells them apart.
        assert!(is_canonical(b"1.0") && is_canonical(b"1"));
    }

    #[test]
    fn scanner_refuses_what_nests_deeper_than_it_follows() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(is_canonical(deep(MAX_DEPTH as usize).as_bytes()));
        assert!(!is_canonical(deep(MAX_DEPTH as usize + 1).as_bytes()));
    }

    #[test]
    fn decoded_strings_and_keys() {
        let mut s = Scanner::new(r#""a\"\\\n\u001fé""#);
        let raw = s.string().unwrap();
        assert_eq!(raw.plain(), None);
        assert_eq!(raw.text(), "a\"\\\n\u{1f}é");
        let mut s = Scanner::new(r#""plain""#);
        let raw = s.string().unwrap();
        assert_eq!(
            (raw.plain(), raw.text()),
            (Some("plain"), Cow::Borrowed("plain"))
        );
        let mut seen = Vec::new();
        let mut s = Scanner::new(r#"{"a":null,"b":"x","c":7,"d":-7,"e":{"f":1},"g\n":0.5}"#);
        let top = s.value(&mut |k, v| seen.push((k.text().into_owned(), v)));
        assert_eq!(top, Some(Scalar::Other));
        let kinds: Vec<_> = seen
            .iter()
            .map(|(k, v)| match v {
                Scalar::Null => format!("{k}=null"),
                Scalar::Str(s) => format!("{k}={}", s.text()),
                Scalar::UInt(n) => format!("{k}={n}"),
                Scalar::Other => format!("{k}=other"),
            })
            .collect();
        assert_eq!(
            kinds,
            ["a=null", "b=x", "c=7", "d=other", "e=other", "g\n=other"]
        );
    }

    /// Strings full of what escaping and key order get wrong.
    fn tricky_string() -> impl Strategy<Value = String> {
        let chars = vec![
            '\0', '\u{1}', '\u{8}', '\t', '\n', '\u{b}', '\u{c}', '\r', '\u{1f}', ' ', '"', '\\',
            '/', 'a', 'b', 'A', '\u{7f}', 'é', '\u{2028}', '😀',
        ];
        prop_oneof![
            any::<String>(),
            prop::collection::vec(prop::sample::select(chars), 0..5)
                .prop_map(|cs| cs.into_iter().collect()),
        ]
    }

    fn tricky_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            (-1000i32..1000).prop_map(|n| json!(f64::from(n) / 8.0)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            tricky_string().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((tricky_string(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// Bytes that make a small edit interesting.
    const EDIT_BYTES: &[u8] = b" \t\n\"\\/ubtnfrx0159aAfeE.+-,:{}[]\x7f\x1f\xc3\xa9";

    /// One small edit of `text`, picked by `(what, at, with)`.
    fn edit(text: &[u8], (what, at, with): (u8, usize, usize)) -> Vec<u8> {
        let mut m = text.to_vec();
        let byte = EDIT_BYTES[with % EDIT_BYTES.len()];
        if m.is_empty() {
            return vec![byte];
        }
        let at = at % m.len();
        match what % 5 {
            0 => m.insert(at, byte),
            1 => {
                m.remove(at);
            }
            2 => m[at] = byte,
            3 if at + 1 < m.len() => m.swap(at, at + 1),
            _ => {
                // Repeat a stretch: duplicates keys, members and escapes.
                let end = (at + 1 + with % 12).min(m.len());
                let stretch = m[at..end].to_vec();
                m.splice(end..end, stretch);
            }
        }
        m
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn scanner_agrees_with_parse_and_compare(
            v in tricky_json(),
            edits in prop::collection::vec((any::<u8>(), any::<usize>(), any::<usize>()), 0..3),
        ) {
            let canon = canonical_json(&v);
            prop_assert!(is_canonical(canon.as_bytes()), "{}", canon);
            let mut text = canon.into_bytes();
            for e in edits {
                text = edit(&text, e);
                prop_assert_eq!(
                    is_canonical(&text),
                    parses_and_compares_equal(&text),
                    "{}",
                    String::from_utf8_lossy(&text)
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn matches_serde_json_on_sorted_values_and_round_trips(v in arb_json()) {
            let canon = canonical_json(&v);
            prop_assert_eq!(&canon, &serde_json::to_string(&sorted(&v)).unwrap());
            let mut old = Vec::new();
            old_writer(&mut old, &v);
            prop_assert_eq!(canon.as_bytes(), &old[..]);
            // What the verifier relies on: parsing the text back and
            // comparing it against itself accepts it, floats included.
            let back: Value = serde_json::from_str(&canon).unwrap();
            let mut cmp = Compare::new(canon.as_bytes());
            write_canonical(&mut cmp, &back);
            prop_assert!(cmp.is_equal(), "{}", canon);
        }
    }
}
