//! Canonical JSON: compact, object keys sorted bytewise at every level, and
//! serde_json's own string escaping and number formatting.
//!
//! serde_json is built with `preserve_order`, so its `Map` keeps insertion
//! order and must never be serialized directly where a hash depends on it.
//! The writer is generic over a byte sink so the same code produces a line,
//! feeds a hasher, or compares against a line already on disk without
//! allocating a copy of it.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Somewhere canonical bytes go. Sinks never fail, which is what keeps the
/// writer free of error paths.
pub(crate) trait Sink {
    fn put(&mut self, bytes: &[u8]);

    /// A float, as serde_json formats it (shortest round-trip form).
    fn put_f64(&mut self, f: f64) {
        let written = serde_json::to_writer(Adapter(self), &f);
        debug_assert!(written.is_ok());
    }
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

    /// serde_json's parser (without its `float_roundtrip` feature) may land
    /// one ulp away from the float a line spells, so re-formatting the parsed
    /// value would call a correct line non-canonical. Instead, the number
    /// token in the line is parsed with std's exact parser and must be what
    /// serde_json writes for that float.
    fn put_f64(&mut self, _parsed: f64) {
        if !self.equal {
            return;
        }
        let rest = &self.expected[self.pos..];
        let len = rest
            .iter()
            .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
            .unwrap_or(rest.len());
        let token = &rest[..len];
        let exact = std::str::from_utf8(token)
            .ok()
            .and_then(|t| t.parse::<f64>().ok())
            .filter(|f| f.is_finite());
        let mut formatted = Vec::new();
        if let Some(f) = exact {
            formatted.put_f64(f);
        }
        if exact.is_some() && formatted == token {
            self.pos += len;
        } else {
            self.equal = false;
        }
    }
}

/// Adapts a `Sink` to `io::Write` so serde_json's escaping and number
/// formatting can write into it.
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

/// Writes a JSON string literal with serde_json's escaping.
pub(crate) fn put_str<S: Sink + ?Sized>(sink: &mut S, s: &str) {
    // Serializing a `str` can only fail if the writer does, and `Adapter`
    // never does.
    let written = serde_json::to_writer(Adapter(sink), s);
    debug_assert!(written.is_ok());
}

/// Writes an unsigned integer the way serde_json does.
pub(crate) fn put_u64<S: Sink + ?Sized>(sink: &mut S, n: u64) {
    let written = serde_json::to_writer(Adapter(sink), &n);
    debug_assert!(written.is_ok());
}

/// Writes `v` as canonical JSON into `sink`.
pub(crate) fn write_canonical<S: Sink + ?Sized>(sink: &mut S, v: &Value) {
    match v {
        Value::Null => sink.put(b"null"),
        Value::Bool(true) => sink.put(b"true"),
        Value::Bool(false) => sink.put(b"false"),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => sink.put_f64(f),
            _ => {
                let written = serde_json::to_writer(Adapter(sink), n);
                debug_assert!(written.is_ok());
            }
        },
        Value::String(s) => put_str(sink, s),
        Value::Array(items) => {
            sink.put(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    sink.put(b",");
                }
                write_canonical(sink, item);
            }
            sink.put(b"]");
        }
        Value::Object(map) => {
            // `String`'s `Ord` is bytewise over UTF-8, which is the order we
            // promise; keys in a `Map` are unique, so the sort is total.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            sink.put(b"{");
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    sink.put(b",");
                }
                put_str(sink, key);
                sink.put(b":");
                write_canonical(sink, value);
            }
            sink.put(b"}");
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

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
    fn floats_serde_json_parses_inexactly_still_compare_equal() {
        // serde_json without float_roundtrip parses this one ulp off.
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn matches_serde_json_on_sorted_values_and_round_trips(v in arb_json()) {
            let canon = canonical_json(&v);
            prop_assert_eq!(&canon, &serde_json::to_string(&sorted(&v)).unwrap());
            // What the verifier relies on: parsing the text back and
            // comparing it against itself accepts it, floats included.
            let back: Value = serde_json::from_str(&canon).unwrap();
            let mut cmp = Compare::new(canon.as_bytes());
            write_canonical(&mut cmp, &back);
            prop_assert!(cmp.is_equal(), "{}", canon);
        }
    }
}
