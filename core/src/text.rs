//! Small text helpers the front ends share: how a long, multi-line text
//! (SQL, a rationale) is shown on one line. Plain strings only: measuring
//! terminal cells is the TUI's business, and nothing here prints.

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

/// `text` cut to at most `max` characters, with `...` when it was longer.
pub fn clip_chars(text: &str, max: usize) -> String {
    if text.chars().count() > max {
        format!("{}...", text.chars().take(max).collect::<String>())
    } else {
        text.to_string()
    }
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
        assert_eq!(clip_chars("héllo wörld", 5), "héllo...");
    }
}
