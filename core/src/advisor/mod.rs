//! The index advisor: from a statement's text (as pg_stat_statements keeps
//! it, `$1` placeholders) and a table's existing indexes and column
//! statistics, either the index that already serves the statement's
//! predicate or a concrete `CREATE INDEX CONCURRENTLY` to propose.
//!
//! Pure: it reads no database and runs nothing. What it returns is a
//! proposal a human approves (the runbooks pass it as `from_fact` inputs);
//! it must never propose an index for a predicate it cannot read plainly
//! (under `OR`, on an expression, a pattern match), and it errs towards "an
//! existing index already serves this" rather than a redundant index.

mod extract;
#[cfg(test)]
mod tests;

pub use extract::{ExtractError, TableUse, extract};

/// Longest index name PostgreSQL keeps (NAMEDATALEN - 1 bytes).
pub const MAX_NAME_BYTES: usize = 63;
/// At most this many equality columns lead a proposed index.
pub const MAX_EQUALITY_COLUMNS: usize = 3;

/// An existing index of a table, as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize)]
pub struct IndexInfo {
    pub name: String,
    /// Key columns in order; `None` for an expression.
    #[serde(default)]
    pub columns: Vec<Option<String>>,
    /// The partial index's predicate (`pg_get_expr(indpred)`), if any.
    #[serde(default)]
    pub predicate: Option<String>,
    /// `indisvalid AND indisready`.
    #[serde(default = "yes")]
    pub valid: bool,
    /// The access method: `btree`, `hash`, `gin`, ...
    #[serde(default = "btree")]
    pub method: String,
    /// `pg_get_indexdef`, for the facts.
    #[serde(default)]
    pub definition: String,
}

fn yes() -> bool {
    true
}

fn btree() -> String {
    "btree".to_string()
}

/// One column's planner statistics (`pg_stats`).
#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize)]
pub struct ColumnStats {
    pub name: String,
    /// Negative: a fraction of the rows (-1 = unique).
    #[serde(default)]
    pub n_distinct: Option<f64>,
    #[serde(default)]
    pub correlation: Option<f64>,
    #[serde(default)]
    pub null_frac: Option<f64>,
}

/// A table the advisor may propose an index on.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TableInfo {
    /// `schema.table`.
    pub table: String,
    pub live_rows: f64,
    pub indexes: Vec<IndexInfo>,
    /// Every column of the table, with its statistics where there are any.
    pub columns: Vec<ColumnStats>,
}

impl TableInfo {
    fn column(&self, name: &str) -> Option<&ColumnStats> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Estimated distinct values of a column, when its statistics say.
    pub fn distinct(&self, column: &str) -> Option<f64> {
        let nd = self.column(column)?.n_distinct?;
        Some(if nd < 0.0 { -nd * self.live_rows } else { nd })
    }

    fn table_name(&self) -> &str {
        self.table.rsplit('.').next().unwrap_or(&self.table)
    }
}

/// What the advisor says about one table of one statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Advice {
    /// Build this index.
    Create(Proposal),
    /// An existing valid index already serves the predicate.
    Covered {
        index: String,
        definition: String,
        /// The predicate's columns that index serves, in index order.
        columns: Vec<String>,
    },
    /// No plain index to propose, and why.
    Nothing(String),
}

/// A proposed index.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    /// `schema.table`.
    pub table: String,
    /// Equality columns (most selective first), then one range or ORDER BY column.
    pub columns: Vec<String>,
    pub name: String,
    /// `CREATE INDEX CONCURRENTLY name ON schema.table (cols)`, identifiers
    /// quoted only where needed.
    pub sql: String,
}

/// Advice for one statement's use of `table`.
pub fn advise(usage: &TableUse, table: &TableInfo) -> Advice {
    let known = |c: &String| table.columns.is_empty() || table.column(c).is_some();
    let mut equality: Vec<String> = usage
        .equality
        .iter()
        .filter(|c| known(c))
        .cloned()
        .collect();
    if equality.is_empty() {
        equality = usage.join.iter().filter(|c| known(c)).cloned().collect();
    }
    // The most selective equality column leads (stable for unknown stats).
    equality.sort_by(|a, b| {
        let da = table.distinct(a).unwrap_or(0.0);
        let db = table.distinct(b).unwrap_or(0.0);
        db.partial_cmp(&da).unwrap_or(std::cmp::Ordering::Equal)
    });
    equality.truncate(MAX_EQUALITY_COLUMNS);
    let tail = usage
        .range
        .iter()
        .chain(usage.order_by.iter())
        .find(|c| known(c) && !equality.contains(c))
        .cloned();
    if equality.is_empty() && tail.is_none() {
        let why = if let Some(x) = usage.expressions.first() {
            format!(
                "the statement filters on the expression {x}: no plain-column index serves it (an expression index would, as a reviewed change)"
            )
        } else if let Some(p) = usage.pattern.first() {
            format!(
                "the statement matches {p} with a pattern (LIKE/regex): a plain btree serves only a known prefix, with text_pattern_ops or the C collation"
            )
        } else {
            "the statement has no equality, range or join predicate on a plain column of this table (an OR or a function hides it, or it reads the whole table)".to_string()
        };
        return Advice::Nothing(why);
    }
    if let Some(lead) = equality.first()
        && let Some(d) = table.distinct(lead)
        && equality.len() == 1
        && tail.is_none()
        && d > 0.0
        && table.live_rows / d > table.live_rows * 0.2
        && table.live_rows > 0.0
    {
        return Advice::Nothing(format!(
            "{lead} has about {d:.0} distinct values in {:.0} rows: an index on it alone would still read a large share of the table",
            table.live_rows
        ));
    }
    if let Some(c) = covered_by(&equality, tail.as_deref(), table) {
        return c;
    }
    let mut columns = equality;
    columns.extend(tail);
    let name = index_name(table, &columns);
    let sql = format!(
        "CREATE INDEX CONCURRENTLY {} ON {} ({})",
        show_ident(&name),
        table
            .table
            .split('.')
            .map(show_ident)
            .collect::<Vec<_>>()
            .join("."),
        columns
            .iter()
            .map(|c| show_ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Advice::Create(Proposal {
        table: table.table.clone(),
        columns,
        name,
        sql,
    })
}

/// The existing valid index that serves `equality` (all of them as its
/// leading columns, in any order) or, with no equality column, `tail` as
/// its first column. A partial index counts only when its predicate is a
/// trivial consequence of the statement's (`col IS NOT NULL` on an
/// equality column); a hash index only for one equality column.
fn covered_by(equality: &[String], tail: Option<&str>, table: &TableInfo) -> Option<Advice> {
    for ix in &table.indexes {
        if !ix.valid {
            continue;
        }
        if let Some(p) = &ix.predicate
            && !implied(p, equality)
        {
            continue;
        }
        let lead: Vec<&str> = ix.columns.iter().map_while(|c| c.as_deref()).collect();
        let served: Vec<String> = match ix.method.as_str() {
            "btree" if !equality.is_empty() => {
                let prefix: Vec<&str> = lead
                    .iter()
                    .take_while(|c| equality.iter().any(|e| e == *c))
                    .copied()
                    .collect();
                if equality.iter().all(|e| prefix.contains(&e.as_str())) {
                    prefix.iter().map(|s| s.to_string()).collect()
                } else {
                    continue;
                }
            }
            "btree" => match (lead.first(), tail) {
                (Some(first), Some(t)) if *first == t => vec![t.to_string()],
                _ => continue,
            },
            "hash" if equality.len() == 1 && lead.first() == Some(&equality[0].as_str()) => {
                vec![equality[0].clone()]
            }
            _ => continue,
        };
        return Some(Advice::Covered {
            index: ix.name.clone(),
            definition: ix.definition.clone(),
            columns: served,
        });
    }
    None
}

/// A partial index's predicate that every row the statement wants meets,
/// recognised only in its simplest form: `(col IS NOT NULL)` where `col`
/// is compared with `=` (an equality never matches NULL).
fn implied(predicate: &str, equality: &[String]) -> bool {
    let p = predicate
        .trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .trim();
    p.strip_suffix(" IS NOT NULL")
        .map(|c| c.trim().trim_matches('"'))
        .is_some_and(|c| equality.iter().any(|e| e == c))
}

/// How a table's existing indexes are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamePattern {
    /// `<table>_<cols>_idx`, PostgreSQL's own.
    TableColsIdx,
    /// `idx_<table>_<cols>`.
    IdxTableCols,
    /// `ix_<table>_<cols>` (SQLAlchemy's).
    IxTableCols,
    /// `<table>_<cols>_index`.
    TableColsIndex,
}

/// The naming pattern most of the table's indexes follow (primary keys and
/// other constraint indexes named `_pkey`/`_key` are not counted), else
/// PostgreSQL's own.
pub fn name_pattern(table: &TableInfo) -> NamePattern {
    let t = table.table_name();
    let mut counts = [0usize; 4];
    for ix in &table.indexes {
        let n = ix.name.as_str();
        if n.starts_with(&format!("idx_{t}_")) || n.starts_with("idx_") {
            counts[1] += 1;
        } else if n.starts_with(&format!("ix_{t}_")) || n.starts_with("ix_") {
            counts[2] += 1;
        } else if n.ends_with("_index") {
            counts[3] += 1;
        } else if n.ends_with("_idx") {
            counts[0] += 1;
        }
    }
    let patterns = [
        NamePattern::TableColsIdx,
        NamePattern::IdxTableCols,
        NamePattern::IxTableCols,
        NamePattern::TableColsIndex,
    ];
    let best = counts
        .iter()
        .enumerate()
        .max_by_key(|(i, c)| (**c, usize::MAX - i))
        .map_or(0, |(i, _)| i);
    if counts[best] == 0 {
        NamePattern::TableColsIdx
    } else {
        patterns[best]
    }
}

/// A name for an index on `columns` of `table` that follows the table's
/// pattern, fits in 63 bytes (the middle part is cut, as PostgreSQL does)
/// and is not the name of one of its indexes (a digit is appended then).
pub fn index_name(table: &TableInfo, columns: &[String]) -> String {
    let t = table.table_name();
    let cols = columns.join("_");
    let (prefix, middle, suffix) = match name_pattern(table) {
        NamePattern::TableColsIdx => (String::new(), format!("{t}_{cols}"), "_idx"),
        NamePattern::IdxTableCols => ("idx_".to_string(), format!("{t}_{cols}"), ""),
        NamePattern::IxTableCols => ("ix_".to_string(), format!("{t}_{cols}"), ""),
        NamePattern::TableColsIndex => (String::new(), format!("{t}_{cols}"), "_index"),
    };
    let taken = |n: &str| table.indexes.iter().any(|ix| ix.name == n);
    for n in 0..1000u32 {
        let digit = if n == 0 { String::new() } else { n.to_string() };
        let room = MAX_NAME_BYTES.saturating_sub(prefix.len() + suffix.len() + digit.len());
        let mut mid = middle.clone();
        while mid.len() > room {
            mid.pop();
        }
        let mid = mid.trim_end_matches('_');
        let name = format!("{prefix}{mid}{suffix}{digit}");
        if !taken(&name) {
            return name;
        }
    }
    format!("{prefix}{suffix}")
}

/// An identifier as SQL shows it: bare when it is a plain lower-case
/// name, double-quoted otherwise.
pub fn show_ident(s: &str) -> String {
    let plain = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if plain {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}
