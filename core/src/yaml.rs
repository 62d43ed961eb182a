//! Loading YAML with positions.
//!
//! Typed deserialization goes through `serde_yaml` (the maintained
//! `serde_norway` fork), whose errors carry a line and column. Checks that
//! happen after deserialization (a `requires` naming no step, SQL that does
//! not parse) need the position of a value too, so the same text is also read
//! into a position index with marked-yaml, addressed by path.

use std::path::{Path, PathBuf};

use marked_yaml::Node;
use serde::de::DeserializeOwned;

use crate::diag::{Location, Problem, nearest};

/// One step of a path into a YAML document.
#[derive(Debug, Clone, Copy)]
pub enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// A YAML file's text and its position index.
#[derive(Debug)]
pub struct Doc {
    pub path: PathBuf,
    pub text: String,
    /// Built on first use. Only documents that serde accepted (which bounds
    /// their nesting depth) are ever indexed, so the recursive indexer never
    /// sees hostile nesting.
    root: std::sync::OnceLock<Option<Node>>,
}

impl Doc {
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Doc {
        Doc {
            path: path.into(),
            text: text.into(),
            root: std::sync::OnceLock::new(),
        }
    }

    pub fn read(path: &Path) -> Result<Doc, Problem> {
        let bytes = std::fs::read(path).map_err(|e| {
            Problem::new(
                Location::start_of(path),
                format!("cannot read the file: {e}"),
            )
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let (line, col) = line_col(
                &String::from_utf8_lossy(e.as_bytes()),
                e.utf8_error().valid_up_to(),
            );
            Problem::new(
                Location::new(path, line, col),
                "the file is not valid UTF-8",
            )
        })?;
        Ok(Doc::new(path, text))
    }

    /// Deserializes the whole document, turning serde's message into one a
    /// person can act on (with the nearest valid name for a typo).
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, Problem> {
        serde_yaml::from_str(&self.text).map_err(|e| {
            let (line, col) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
            Problem::new(
                Location::new(&self.path, line, col),
                humanize(&e.to_string()),
            )
        })
    }

    fn node(&self, path: &[Seg]) -> Option<&Node> {
        let root = self.root.get_or_init(|| {
            let nested_ok = serde_yaml::from_str::<serde_yaml::Value>(&self.text).is_ok();
            nested_ok
                .then(|| marked_yaml::parse_yaml(0, &self.text).ok())
                .flatten()
        });
        let mut node = root.as_ref()?;
        for seg in path {
            node = match seg {
                Seg::Key(k) => node.as_mapping()?.get_node(k)?,
                Seg::Index(i) => node.as_sequence()?.get_node(*i)?,
            };
        }
        Some(node)
    }

    /// Where the value at `path` starts, or the nearest enclosing value that
    /// exists, or the start of the file.
    pub fn at(&self, path: &[Seg]) -> Location {
        for n in (1..=path.len()).rev() {
            if let Some(m) = self.node(&path[..n]).and_then(|node| node.span().start()) {
                return Location::new(&self.path, m.line(), m.column());
            }
        }
        Location::start_of(&self.path)
    }

    /// Where the key of the mapping entry at `path` is written.
    pub fn key_at(&self, path: &[Seg]) -> Location {
        if let Some((Seg::Key(k), parent)) = path.split_last()
            && let Some(map) = self.node(parent).and_then(Node::as_mapping)
        {
            for (key, _) in map.iter() {
                if key.as_str() == *k
                    && let Some(m) = key.span().start()
                {
                    return Location::new(&self.path, m.line(), m.column());
                }
            }
        }
        self.at(path)
    }

    /// Where byte `offset` of the scalar string at `path` is written, for
    /// plain, quoted and block (`|`, `>`) scalars alike.
    pub fn at_offset(&self, path: &[Seg], value: &str, offset: usize) -> Location {
        let start = self.at(path);
        let lines: Vec<&str> = self.text.lines().collect();
        let Some(first) = lines.get(start.line - 1) else {
            return start;
        };
        let rest: String = first.chars().skip(start.col - 1).collect();
        let before = &value[..floor_char_boundary(value, offset)];
        let line_in_value = before.matches('\n').count();
        let col_in_line = before.len() - before.rfind('\n').map_or(0, |i| i + 1);
        if rest.starts_with('|') || rest.starts_with('>') {
            // Marker on the block indicator: content starts on the next
            // non-empty line, indented.
            let mut content_line = start.line; // 1-based index of the indicator line
            while lines.get(content_line).is_some_and(|l| l.trim().is_empty()) {
                content_line += 1;
            }
            let indent = lines
                .get(content_line)
                .map_or(0, |l| l.len() - l.trim_start().len());
            return Location::new(
                &self.path,
                content_line + 1 + line_in_value,
                indent + col_in_line + 1,
            );
        }
        let prev = start
            .line
            .checked_sub(2)
            .and_then(|i| lines.get(i))
            .map_or("", |l| l.trim_end());
        let block = prev.ends_with(['|', '>', '-', '+'])
            && (prev.contains(": |")
                || prev.contains(": >")
                || prev.contains("- |")
                || prev.contains("- >"));
        if block {
            // Marker on the first content line.
            return Location::new(
                &self.path,
                start.line + line_in_value,
                start.col + col_in_line,
            );
        }
        let quoted = rest.starts_with('"') || rest.starts_with('\'');
        if line_in_value == 0 {
            return Location::new(
                &self.path,
                start.line,
                start.col + col_in_line + usize::from(quoted),
            );
        }
        start
    }
}

/// The largest char boundary of `s` at or below `i`.
pub fn floor_char_boundary(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

/// Rewrites serde's messages: drops the trailing position (we print our own)
/// and suggests the nearest valid name for unknown fields and variants.
fn humanize(message: &str) -> String {
    let mut msg = match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    };
    for (what, label) in [("unknown field `", "field"), ("unknown variant `", "value")] {
        let Some(start) = msg.find(what) else {
            continue;
        };
        let name_start = start + what.len();
        let Some(name_len) = msg[name_start..].find('`') else {
            continue;
        };
        let name = msg[name_start..name_start + name_len].to_string();
        let expected: Vec<String> = msg[name_start + name_len..]
            .split('`')
            .skip(2)
            .step_by(2)
            .map(str::to_string)
            .collect();
        let prefix = &msg[..start];
        let mut out = format!("{prefix}unknown {label} `{name}`");
        if let Some(best) = nearest(&name, expected.iter().map(String::as_str)) {
            out.push_str(&format!(" (did you mean `{best}`?)"));
        }
        if !expected.is_empty() {
            out.push_str(&format!("; valid {label}s: {}", expected.join(", ")));
        }
        msg = out;
        break;
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_names_the_nearest_valid_one() {
        let msg = humanize(
            "steps[0]: unknown field `sqll`, expected one of `id`, `sql`, `kind` at line 4 column 5",
        );
        assert_eq!(
            msg,
            "steps[0]: unknown field `sqll` (did you mean `sql`?); valid fields: id, sql, kind"
        );
    }

    #[test]
    fn positions_of_values_keys_and_offsets_inside_block_scalars() {
        let doc = Doc::new(
            "x.yaml",
            "id: a\nsteps:\n  - id: s1\n    sql: |\n      SELECT 1\n      FROMM t\n    when: \"x > \"\n",
        );
        let sql = [Seg::Key("steps"), Seg::Index(0), Seg::Key("sql")];
        assert_eq!(
            doc.at(&[Seg::Key("steps"), Seg::Index(0), Seg::Key("id")])
                .to_string(),
            "x.yaml:3:9"
        );
        assert_eq!(doc.key_at(&sql).to_string(), "x.yaml:4:5");
        assert_eq!(
            doc.at_offset(&sql, "SELECT 1\nFROMM t\n", 9).to_string(),
            "x.yaml:6:7"
        );
        let when = [Seg::Key("steps"), Seg::Index(0), Seg::Key("when")];
        assert_eq!(doc.at_offset(&when, "x > ", 2).to_string(), "x.yaml:7:14");
        assert_eq!(
            doc.at(&[Seg::Key("nope"), Seg::Index(3)]).to_string(),
            "x.yaml:1:1"
        );
    }
}
