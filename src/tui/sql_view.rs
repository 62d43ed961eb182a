//! SQL with syntax highlighting, for the detail pane and the approval
//! dialog. A small lexer for display only: it never decides anything (the
//! analyzer in `crate::sql` does), and a string it cannot lex is shown as
//! plain text, never hidden.

use ratatui::style::Style;
use ratatui::text::{Line, Span};
use unicode_width::UnicodeWidthChar;

use super::theme::Theme;

const KEYWORDS: &[&str] = &[
    "ADD",
    "ALL",
    "ALTER",
    "ANALYZE",
    "AND",
    "ANY",
    "ARRAY",
    "AS",
    "ASC",
    "BEGIN",
    "BETWEEN",
    "BY",
    "CASE",
    "CAST",
    "CHECK",
    "CLUSTER",
    "COLUMN",
    "COMMIT",
    "CONCURRENTLY",
    "CONSTRAINT",
    "CREATE",
    "CROSS",
    "DEFAULT",
    "DELETE",
    "DESC",
    "DISTINCT",
    "DROP",
    "ELSE",
    "END",
    "EXISTS",
    "EXPLAIN",
    "FALSE",
    "FILTER",
    "FOR",
    "FOREIGN",
    "FROM",
    "FULL",
    "GRANT",
    "GROUP",
    "HAVING",
    "IF",
    "ILIKE",
    "IN",
    "INDEX",
    "INNER",
    "INSERT",
    "INTERVAL",
    "INTO",
    "IS",
    "JOIN",
    "KEY",
    "LATERAL",
    "LEFT",
    "LIKE",
    "LIMIT",
    "LOCK",
    "NOT",
    "NOWAIT",
    "NULL",
    "NULLS",
    "OFFSET",
    "ON",
    "OR",
    "ORDER",
    "OUTER",
    "OVER",
    "PARTITION",
    "PRIMARY",
    "REFERENCES",
    "REINDEX",
    "RENAME",
    "RETURNING",
    "REVOKE",
    "RIGHT",
    "ROLLBACK",
    "SELECT",
    "SET",
    "SHOW",
    "TABLE",
    "THEN",
    "TO",
    "TRUE",
    "TRUNCATE",
    "UNION",
    "UNIQUE",
    "UPDATE",
    "USING",
    "VACUUM",
    "VALID",
    "VALIDATE",
    "VALUES",
    "VIEW",
    "WHEN",
    "WHERE",
    "WINDOW",
    "WITH",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Keyword,
    Str,
    Num,
    Comment,
    Param,
    Other,
}

fn style(theme: &Theme, t: Tok) -> Style {
    match t {
        Tok::Keyword => theme.sql_keyword(),
        Tok::Str => theme.sql_string(),
        Tok::Num => theme.sql_number(),
        Tok::Comment => theme.sql_comment(),
        Tok::Param => theme.sql_param(),
        Tok::Other => theme.plain(),
    }
}

/// Splits one line of SQL into tokens. `in_comment` carries a `/* */`
/// comment across lines.
fn lex_line(line: &str, in_comment: &mut bool) -> Vec<(Tok, String)> {
    let chars: Vec<char> = line.chars().collect();
    let mut out: Vec<(Tok, String)> = Vec::new();
    let mut push = |t: Tok, s: String| match out.last_mut() {
        Some((lt, ls)) if *lt == t && t == Tok::Other => ls.push_str(&s),
        _ => out.push((t, s)),
    };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let rest = |j: usize| chars[i..j.min(chars.len())].iter().collect::<String>();
        if *in_comment {
            let end = (i..chars.len().saturating_sub(1))
                .find(|&j| chars[j] == '*' && chars[j + 1] == '/')
                .map(|j| j + 2);
            let stop = end.unwrap_or(chars.len());
            push(Tok::Comment, rest(stop));
            *in_comment = end.is_none();
            i = stop;
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            push(Tok::Comment, rest(chars.len()));
            i = chars.len();
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            *in_comment = true;
            push(Tok::Comment, "/*".into());
            i += 2;
        } else if c == '\'' {
            let mut j = i + 1;
            while j < chars.len() {
                if chars[j] == '\'' {
                    if chars.get(j + 1) == Some(&'\'') {
                        j += 2;
                        continue;
                    }
                    break;
                }
                j += 1;
            }
            let stop = (j + 1).min(chars.len());
            push(Tok::Str, rest(stop));
            i = stop;
        } else if (c == '$' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
            || (c == ':'
                && chars
                    .get(i + 1)
                    .is_some_and(|n| n.is_ascii_alphabetic() || *n == '_')
                && (i == 0 || chars[i - 1] != ':'))
        {
            let mut j = i + 1;
            while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            push(Tok::Param, rest(j));
            i = j;
        } else if c.is_ascii_digit() {
            let mut j = i;
            while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == '.') {
                j += 1;
            }
            push(Tok::Num, rest(j));
            i = j;
        } else if c.is_alphabetic() || c == '_' {
            let mut j = i;
            while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            let word = rest(j);
            let upper = word.to_ascii_uppercase();
            let t = if KEYWORDS.binary_search(&upper.as_str()).is_ok() {
                Tok::Keyword
            } else {
                Tok::Other
            };
            push(t, word);
            i = j;
        } else {
            push(Tok::Other, c.to_string());
            i += 1;
        }
    }
    out
}

/// Where the wrapped lines of `chars` start (char indices, after the
/// first): at a space where one fits, inside a word where none does.
fn breaks(chars: &[char], width: usize, cont: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut room = width;
    let mut used = 0;
    let mut i = 0;
    while i < chars.len() {
        let cw = chars[i].width().unwrap_or(0);
        if used + cw > room && i > start {
            let at = (start + 1..i)
                .rev()
                .find(|&j| chars[j - 1] == ' ' && chars[j] != ' ')
                .unwrap_or(i);
            out.push(at);
            start = at;
            room = width.saturating_sub(cont).max(1);
            used = 0;
            i = at;
            continue;
        }
        used += cw;
        i += 1;
    }
    out
}

/// The SQL as highlighted lines, wrapped at `width` cells (continuation
/// lines keep the line's indentation plus two). Tabs become spaces.
pub fn highlight(sql: &str, width: usize, theme: &Theme) -> Vec<Line<'static>> {
    let width = width.max(8);
    let mut in_comment = false;
    let mut out = Vec::new();
    for raw in sql.trim_matches('\n').replace('\t', "    ").lines() {
        let chars: Vec<char> = raw.chars().collect();
        let indent = chars.iter().take_while(|c| **c == ' ').count();
        let cont = " ".repeat((indent + 2).min(width / 2));
        let cuts = breaks(&chars, width, cont.len());
        let mut next_cut = cuts.iter().copied().peekable();
        let mut spans: Vec<Span<'static>> = Vec::new();
        let mut at = 0usize;
        for (tok, text) in lex_line(raw, &mut in_comment) {
            let st = style(theme, tok);
            let mut piece = String::new();
            for ch in text.chars() {
                if next_cut.peek() == Some(&at) {
                    next_cut.next();
                    if !piece.is_empty() {
                        spans.push(Span::styled(std::mem::take(&mut piece), st));
                    }
                    out.push(Line::from(std::mem::take(&mut spans)));
                    spans.push(Span::raw(cont.clone()));
                }
                piece.push(ch);
                at += 1;
            }
            if !piece.is_empty() {
                spans.push(Span::styled(piece, st));
            }
        }
        out.push(Line::from(spans));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(line: &str) -> Vec<(Tok, String)> {
        lex_line(line, &mut false)
    }

    #[test]
    fn keywords_are_sorted_for_binary_search() {
        let mut sorted = KEYWORDS.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, KEYWORDS);
    }

    #[test]
    fn strings_params_numbers_and_comments_are_told_apart() {
        let toks = kinds("SELECT 'it''s', $1, :pid::int, 42 -- note");
        let want = vec![
            (Tok::Keyword, "SELECT".to_string()),
            (Tok::Other, " ".into()),
            (Tok::Str, "'it''s'".into()),
            (Tok::Other, ", ".into()),
            (Tok::Param, "$1".into()),
            (Tok::Other, ", ".into()),
            (Tok::Param, ":pid".into()),
            (Tok::Other, "::int, ".into()),
            (Tok::Num, "42".into()),
            (Tok::Other, " ".into()),
            (Tok::Comment, "-- note".into()),
        ];
        assert_eq!(toks, want);
    }

    #[test]
    fn highlighting_keeps_every_character_and_wraps_to_width() {
        let sql = "SELECT a.pid, pg_terminate_backend(a.pid) FROM pg_stat_activity a WHERE a.state = 'idle'";
        let lines = highlight(sql, 30, &Theme::new(false));
        let text: String = lines
            .iter()
            .map(|l| l.to_string().trim_start().to_string())
            .collect();
        assert_eq!(text.replace(' ', ""), sql.replace(' ', ""));
        assert!(lines.iter().all(|l| l.width() <= 30));
        let first = lines[0].to_string();
        assert!(
            first.ends_with(' ') || first.ends_with(','),
            "breaks at a space: {first:?}"
        );
    }
}
