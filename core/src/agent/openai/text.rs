//! Small text helpers shared by the openai agent's parts: quoting a
//! server's message, cutting text short, masking the key, durations for
//! people.

use std::time::Duration;

/// The longest piece of a server's error message quoted in ours.
const MAX_QUOTED_CHARS: usize = 300;

/// `text` with every occurrence of `key` masked.
pub(super) fn scrub(text: &str, key: &str) -> String {
    if key.len() < 4 || !text.contains(key) {
        return text.to_string();
    }
    text.replace(key, "***")
}

/// A server's message, on one line and short.
pub(super) fn quote(text: &str) -> String {
    truncate(
        &text.split_whitespace().collect::<Vec<_>>().join(" "),
        MAX_QUOTED_CHARS,
    )
}

pub(super) use crate::text::clip_chars as truncate;

pub(super) fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d < Duration::from_secs(120) {
        let s = d.as_secs_f64();
        if s.fract() < 0.05 {
            format!("{} s", d.as_secs())
        } else {
            format!("{s:.1} s")
        }
    } else {
        format!("{} min", d.as_secs() / 60)
    }
}
