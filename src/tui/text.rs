//! Small text helpers for the views: word wrapping by display width,
//! clipping, durations and sizes. Pure functions of their input; no I/O.

use chrono::{DateTime, Utc};
use ratatui::text::{Line, Span};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

// Shared with every other view of a session, so numbers and lines read
// the same everywhere.
pub use crate::text::{first_line, millis, thousands};

/// Display width of `s` in terminal cells.
pub fn width(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

/// Wraps `text` at `width` cells: at spaces where it can, inside a word
/// where it must. Existing newlines are kept. Never returns an empty vector.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut out = Vec::new();
    for raw in text.split('\n') {
        let raw = raw.trim_end_matches('\r');
        let mut line = String::new();
        let mut line_w = 0usize;
        // Whether a word (even an empty one, from repeated spaces) is on
        // the line: keeps indentation and runs of spaces as written.
        let mut started = false;
        for word in raw.split(' ') {
            let w = self::width(word);
            let sep = usize::from(started);
            if line_w + sep + w <= width {
                if sep == 1 {
                    line.push(' ');
                }
                line.push_str(word);
                line_w += sep + w;
                started = true;
                continue;
            }
            if started && line_w > 0 {
                out.push(std::mem::take(&mut line));
            }
            line.clear();
            started = true;
            // A word longer than the line is cut into pieces.
            let mut piece = String::new();
            let mut piece_w = 0;
            for ch in word.chars() {
                let cw = ch.width().unwrap_or(0);
                if piece_w + cw > width && !piece.is_empty() {
                    out.push(std::mem::take(&mut piece));
                    piece_w = 0;
                }
                piece.push(ch);
                piece_w += cw;
            }
            line = piece;
            line_w = piece_w;
        }
        out.push(line);
    }
    if out.is_empty() {
        out.push(String::new());
    }
    out
}

/// `text` cut to `width` cells, with an ellipsis when cut.
pub fn clip(text: &str, width: usize) -> String {
    if self::width(text) <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut w = 0;
    for ch in text.chars() {
        let cw = ch.width().unwrap_or(0);
        if w + cw + 1 > width {
            break;
        }
        out.push(ch);
        w += cw;
    }
    out.push('…');
    out
}

/// `text` padded with spaces (or clipped) to exactly `width` cells.
pub fn pad(text: &str, width: usize) -> String {
    let clipped = clip(text, width);
    let w = self::width(&clipped);
    format!("{clipped}{}", " ".repeat(width.saturating_sub(w)))
}

/// `12s`, `4m05s`, `2h03m`.
pub fn duration(secs: i64) -> String {
    let secs = secs.max(0);
    if secs >= 3600 {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    } else if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}

/// `340 MB`, `1.2 GB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 || v >= 100.0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

pub fn parse_ts(ts: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(ts)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Seconds from `from` (RFC 3339) to `to`.
pub fn secs_since(from: &str, to: DateTime<Utc>) -> Option<i64> {
    parse_ts(from).map(|f| (to - f).num_seconds())
}

/// `HH:MM:SS` of an RFC 3339 time, as written (UTC in ward's logs).
pub fn clock(ts: &str) -> String {
    parse_ts(ts).map_or_else(|| "--:--:--".into(), |t| t.format("%H:%M:%S").to_string())
}

/// Lines of `text` wrapped at `width`, each indented by `indent` and styled.
pub fn wrapped_lines(
    text: &str,
    width: usize,
    indent: usize,
    style: ratatui::style::Style,
) -> Vec<Line<'static>> {
    let pad = " ".repeat(indent);
    wrap(text, width.saturating_sub(indent))
        .into_iter()
        .map(|l| Line::from(vec![Span::raw(pad.clone()), Span::styled(l, style)]))
        .collect()
}

/// Spans cut to `width` cells (the span that crosses the edge is clipped
/// with an ellipsis), as one line.
pub fn clip_spans(spans: Vec<Span<'static>>, width: usize) -> Line<'static> {
    let mut used = 0;
    let mut out = Vec::new();
    for s in spans {
        let w = self::width(&s.content);
        if used + w <= width {
            used += w;
            out.push(s);
        } else {
            let room = width.saturating_sub(used);
            if room > 0 {
                out.push(Span::styled(clip(&s.content, room), s.style));
            }
            break;
        }
    }
    Line::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_breaks_at_spaces_then_inside_long_words() {
        assert_eq!(
            wrap("the quick brown fox", 10),
            vec!["the quick", "brown fox"]
        );
        assert_eq!(wrap("abcdefghijkl", 5), vec!["abcde", "fghij", "kl"]);
        assert_eq!(wrap("a\nb", 5), vec!["a", "b"]);
        assert_eq!(wrap("", 5), vec![""]);
        assert_eq!(wrap("  root pid 1", 20), vec!["  root pid 1"]);
        for l in wrap("日本語のテキストを折り返す", 6) {
            assert!(width(&l) <= 6, "{l}");
        }
    }

    #[test]
    fn numbers_and_durations_read_like_people_write_them() {
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(65), "1m05s");
        assert_eq!(duration(7380), "2h03m");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(bytes(340_000_000), "340 MB");
        assert_eq!(bytes(1_200_000_000), "1.2 GB");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(pad("ab", 4), "ab  ");
        assert_eq!(millis(2400), "2.4 s");
    }
}
