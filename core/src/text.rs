//! Small text helpers every view of a session shares: how a long,
//! multi-line text (SQL, a rationale) is shown on one line, and how numbers
//! read. Plain strings only: measuring terminal cells is the TUI's
//! business, and nothing here prints.

/// The first line of `text`, trimmed, with ` …` when more lines follow.
pub fn first_line(text: &str) -> String {
    let mut lines = text.trim().lines();
    let first = lines.next().unwrap_or("").trim();
    if lines.next().is_some() {
        format!("{first} …")
    } else {
        first.to_string()
    }
}

/// `text` cut to at most `max` characters, with `…` where it was cut.
pub fn clip_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// 1234567 -> `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// `340 ms`, `2.4 s`.
pub fn millis(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// `n rows`, with thousands separators and the singular for one.
pub fn rows(n: u64) -> String {
    format!("{} {}", thousands(n), if n == 1 { "row" } else { "rows" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_marks_that_more_lines_follow() {
        assert_eq!(first_line("  SELECT 1\n  FROM t\n"), "SELECT 1 …");
        assert_eq!(first_line("\n  SELECT 1  \n\n"), "SELECT 1");
        assert_eq!(first_line(""), "");
    }

    #[test]
    fn clip_chars_counts_characters_not_bytes() {
        assert_eq!(clip_chars("héllo", 5), "héllo");
        assert_eq!(clip_chars("héllo wörld", 5), "héllo…");
    }
}
