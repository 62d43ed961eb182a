//! ward's `:name` parameters in runbook SQL.
//!
//! Runbook SQL names its inputs as `:name`. Values are never spliced into the
//! text: they become positional parameters (`$1` for Postgres, `?1` for
//! SQLite) bound by the driver. Only `identifier` inputs, which cannot be
//! bound, are spliced — validated and double-quoted.
//!
//! The scanner skips string literals (including `E'..'` and dollar-quoted
//! bodies), quoted identifiers, comments and `::` casts, so a `:word` inside
//! any of those is text, not a parameter.

use super::Engine;

/// One `:name` occurrence: its name and its byte range in the SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedParam {
    pub name: String,
    pub start: usize,
    pub end: usize,
}

/// What to put in place of a `:name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Substitution {
    /// Bind a value: becomes the next positional placeholder.
    Bind,
    /// Splice this already-quoted identifier text.
    Identifier(String),
}

/// SQL with positional placeholders and the input bound to each, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    pub sql: String,
    /// `binds[i]` is the input for placeholder `i + 1`.
    pub binds: Vec<String>,
    /// Each substitution: its byte range in the source and in `sql`.
    pub edits: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
}

impl Rewritten {
    /// Maps a byte offset in the rewritten SQL back to the source.
    pub fn source_offset(&self, offset: usize) -> usize {
        let mut shift: isize = 0;
        for (src, dst) in &self.edits {
            if offset < dst.start {
                break;
            }
            if offset < dst.end {
                return src.start;
            }
            shift = src.end as isize - dst.end as isize;
        }
        (offset as isize + shift).max(0) as usize
    }
}

/// Finds every `:name` parameter outside literals, identifiers and comments.
pub fn scan(sql: &str) -> Vec<NamedParam> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\'' => {
                // E'..' strings allow backslash escapes.
                let escapes = i > 0 && (b[i - 1] == b'E' || b[i - 1] == b'e');
                i = skip_quoted(b, i + 1, b'\'', escapes);
            }
            b'"' => i = skip_quoted(b, i + 1, b'"', false),
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => i = skip_block_comment(b, i),
            b'$' => i = skip_dollar(b, i),
            b':' if b.get(i + 1) == Some(&b':') => i += 2,
            b':' if b.get(i + 1) == Some(&b'=') => i += 2,
            b':' => {
                let start = i;
                let mut j = i + 1;
                if j < b.len() && (b[j].is_ascii_alphabetic() || b[j] == b'_') {
                    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                        j += 1;
                    }
                    // `x:name` right after an identifier char is not ours
                    // (array slices use `[a:b]`, which we also skip).
                    let prev = if start > 0 { b[start - 1] } else { b' ' };
                    if !(prev.is_ascii_alphanumeric() || prev == b'_' || prev == b'[') {
                        out.push(NamedParam {
                            name: sql[start + 1..j].to_string(),
                            start,
                            end: j,
                        });
                    }
                }
                i = j.max(i + 1);
            }
            _ => i += 1,
        }
    }
    out
}

fn skip_quoted(b: &[u8], mut i: usize, quote: u8, escapes: bool) -> usize {
    while i < b.len() {
        if escapes && b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == quote {
            if b.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

fn skip_block_comment(b: &[u8], mut i: usize) -> usize {
    // Postgres block comments nest.
    let mut depth = 0usize;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

fn skip_dollar(b: &[u8], i: usize) -> usize {
    // $tag$ ... $tag$ (tag may be empty); `$1` is a positional parameter.
    let mut j = i + 1;
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
        j += 1;
    }
    if j >= b.len() || b[j] != b'$' || b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        return i + 1;
    }
    let tag = &b[i..=j];
    let mut k = j + 1;
    while k + tag.len() <= b.len() {
        if &b[k..k + tag.len()] == tag {
            return k + tag.len();
        }
        k += 1;
    }
    b.len()
}

/// Replaces every `:name` with what `substitute` says. Returns the name of
/// the first parameter `substitute` does not know (`None` from it).
pub fn rewrite(
    sql: &str,
    engine: Engine,
    mut substitute: impl FnMut(&str) -> Option<Substitution>,
) -> Result<Rewritten, NamedParam> {
    let mut out = String::with_capacity(sql.len());
    let mut binds: Vec<String> = Vec::new();
    let mut edits = Vec::new();
    let mut last = 0;
    for p in scan(sql) {
        out.push_str(&sql[last..p.start]);
        let dst_start = out.len();
        match substitute(&p.name) {
            Some(Substitution::Bind) => {
                let n = match binds.iter().position(|b| *b == p.name) {
                    Some(i) => i + 1,
                    None => {
                        binds.push(p.name.clone());
                        binds.len()
                    }
                };
                match engine {
                    Engine::Postgres => out.push_str(&format!("${n}")),
                    Engine::Sqlite => out.push_str(&format!("?{n}")),
                }
            }
            Some(Substitution::Identifier(text)) => out.push_str(&text),
            None => return Err(p),
        }
        edits.push((p.start..p.end, dst_start..out.len()));
        last = p.end;
    }
    out.push_str(&sql[last..]);
    Ok(Rewritten {
        sql: out,
        binds,
        edits,
    })
}

/// Why an identifier input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error("`{0}` has more than one dot; use name or schema.name")]
    TooManyDots(String),
    #[error(
        "`{0}` is not a plain identifier (letters, digits, _ and $, starting with a letter or _, at most 63 characters)"
    )]
    NotPlain(String),
    #[error("`{0}` is not a list of 1 to 32 plain column names separated by commas")]
    NotAList(String),
}

/// Validates an identifier input (`name` or `schema.name`) and returns it
/// double-quoted part by part, or says why it is refused.
pub fn quote_identifier(value: &str) -> Result<String, IdentifierError> {
    let parts: Vec<&str> = value.split('.').collect();
    if parts.len() > 2 {
        return Err(IdentifierError::TooManyDots(value.to_string()));
    }
    let mut quoted = Vec::with_capacity(parts.len());
    for part in parts {
        let ok = !part.is_empty()
            && part.len() <= 63
            && part
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
        if !ok {
            return Err(IdentifierError::NotPlain(value.to_string()));
        }
        quoted.push(format!("\"{part}\""));
    }
    Ok(quoted.join("."))
}

/// Validates an `identifier_list` input (`a`, or `a, b, c`: 1 to 32 plain
/// names, no schema) and returns the names double-quoted and joined by
/// `, `, e.g. for an index's column list.
pub fn quote_identifier_list(value: &str) -> Result<String, IdentifierError> {
    let parts: Vec<&str> = value.split(',').map(str::trim).collect();
    if parts.is_empty() || parts.len() > 32 {
        return Err(IdentifierError::NotAList(value.to_string()));
    }
    let mut quoted = Vec::with_capacity(parts.len());
    for part in parts {
        if part.contains('.') {
            return Err(IdentifierError::NotAList(value.to_string()));
        }
        quoted.push(
            quote_identifier(part).map_err(|_| IdentifierError::NotAList(value.to_string()))?,
        );
    }
    Ok(quoted.join(", "))
}
