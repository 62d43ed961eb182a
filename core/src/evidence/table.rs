//! Value formatting and fixed-width tables.

use super::redact::{cap_chars, flatten, redact_cow};
use serde_json::Value;
use std::borrow::Cow;
use std::io;

/// Widest cell shown in a table, in chars.
pub(crate) const CELL_MAX: usize = 60;
/// Text examined (and redacted) before a cell is cut to `CELL_MAX`: a secret
/// starting inside the visible part is still recognised whole.
pub(crate) const CELL_SCAN: usize = 1024;

/// JSON text of a value, at most about `limit` bytes (huge arrays are not serialized whole).
pub(crate) fn json_prefix(v: &Value, limit: usize) -> String {
    struct Limited {
        buf: Vec<u8>,
        limit: usize,
    }
    impl io::Write for Limited {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let room = self.limit.saturating_sub(self.buf.len());
            if room == 0 {
                return Err(io::Error::other("limit"));
            }
            let n = room.min(b.len());
            self.buf.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut w = Limited {
        buf: Vec::new(),
        limit,
    };
    let _ = serde_json::to_writer(&mut w, v);
    String::from_utf8_lossy(&w.buf).into_owned()
}

/// Raw text of a value (not redacted, not cut except for nested JSON).
pub(crate) fn value_text(v: &Value, limit: usize) -> Cow<'_, str> {
    match v {
        Value::Null => Cow::Borrowed("null"),
        Value::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        Value::Number(n) => Cow::Owned(n.to_string()),
        Value::String(s) => cap_chars(s, limit),
        other => Cow::Owned(json_prefix(other, limit)),
    }
}

/// A table cell: one line, redacted, at most `CELL_MAX` chars.
pub(crate) fn cell(v: Option<&Value>) -> String {
    let Some(v) = v else {
        return "null".to_string();
    };
    cell_text(&value_text(v, CELL_SCAN))
}

/// Text shown in a table: one line, redacted while whole, then cut to `CELL_MAX` chars.
pub(crate) fn cell_text(s: &str) -> String {
    let pre = cap_chars(s, CELL_SCAN);
    let flat = flatten(&pre);
    let red = redact_cow(&flat);
    cap_chars(&red, CELL_MAX).into_owned()
}

/// Fixed-width table: columns separated by two spaces, trailing spaces trimmed.
pub(crate) fn render(headers: &[String], rows: &[Vec<String>]) -> Vec<String> {
    let headers: Vec<String> = headers
        .iter()
        .map(|h| cap_chars(&flatten(h), CELL_MAX).into_owned())
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, w) in widths.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            let c = cells.get(i).map_or("", String::as_str);
            s.push_str(c);
            for _ in c.chars().count()..*w {
                s.push(' ');
            }
        }
        s.trim_end().to_string()
    };
    let mut out = Vec::with_capacity(rows.len() + 1);
    out.push(line(&headers));
    for r in rows {
        out.push(line(r));
    }
    out
}

/// Compact human number: integers without decimals, others with a few digits.
pub(crate) fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    let a = v.abs();
    let s = if a >= 1000.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a >= 0.001 {
        format!("{v:.4}")
    } else {
        return format!("{v:.3e}");
    };
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// JSON number for a fact: an integer when the value is integral and `integral` says so.
pub(crate) fn num_value(v: f64, integral: bool) -> Value {
    if integral && v.fract() == 0.0 && v.abs() < 9.0e15 {
        Value::from(v as i64)
    } else {
        Value::from(v)
    }
}
