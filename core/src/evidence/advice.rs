//! The `index_advice` summarizer: the index advisor (`crate::advisor`) over
//! a step whose rows are the top statements and their candidate tables.
//!
//! Rows come in two kinds, told apart by a `kind` column:
//!
//! * `statement`: `queryid`, `query` (the normalised text, `$1`
//!   placeholders), `calls`, `total_exec_ms`, `mean_exec_ms`, `rows`,
//!   `share_pct`, `sample_seconds`; in the order the statements rank.
//! * `table`: `table_name` (`schema.table`), `n_live_tup`,
//!   `window_seq_scan`, `window_seq_tup_read` (during the sampling window),
//!   `seq_scan`, `seq_tup_read`, `table_size`, `indexes` (a JSON array of
//!   `{name, columns, predicate, valid, method, definition}`; a column is
//!   `null` for an expression) and `columns` (a JSON array of `{name,
//!   n_distinct, correlation, null_frac}`).
//!
//! It keeps at most [`MAX_STATEMENTS`] statements and [`MAX_TABLES`]
//! tables (constant memory), and decides nothing a human does not approve:
//! its facts are proposals (`table`, `columns`, `index_name`) a runbook
//! passes on through `from_fact`.

use serde_json::{Map, Value};

use crate::advisor::{self, Advice, ColumnStats, IndexInfo, TableInfo};

/// Statements kept; later ones are counted, not advised on.
pub const MAX_STATEMENTS: usize = 50;
/// Candidate tables kept.
pub const MAX_TABLES: usize = 100;
/// Longest statement text parsed, in bytes.
const MAX_QUERY: usize = 16 * 1024;

struct Statement {
    row: Map<String, Value>,
    query: String,
}

struct Table {
    info: TableInfo,
    row: Map<String, Value>,
}

/// The summarizer's state.
#[derive(Default)]
pub(super) struct IndexAdvice {
    statements: Vec<Statement>,
    tables: Vec<Table>,
    /// The row of the statement the step was asked to watch, if it ran.
    watched: Option<Statement>,
    dropped: u64,
}

fn num(row: &Map<String, Value>, k: &str) -> Option<f64> {
    match row.get(k)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn text<'a>(row: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    row.get(k).and_then(Value::as_str)
}

/// A JSON column that may arrive parsed (PostgreSQL `json`) or as text.
fn json_list(v: Option<&Value>) -> Vec<Value> {
    match v {
        Some(Value::Array(a)) => a.clone(),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Array(a)) => a,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn shown(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9e15 {
        Value::from(x as i64)
    } else {
        Value::from((x * 100.0).round() / 100.0)
    }
}

impl IndexAdvice {
    pub(super) fn push(&mut self, row: &Map<String, Value>) {
        match text(row, "kind") {
            Some("statement") if self.statements.len() < MAX_STATEMENTS => {
                let mut query = text(row, "query").unwrap_or_default().to_string();
                if query.len() > MAX_QUERY {
                    // A cut statement does not parse; it is reported as such.
                    let mut end = MAX_QUERY;
                    while !query.is_char_boundary(end) {
                        end -= 1;
                    }
                    query.truncate(end);
                }
                let mut kept = row.clone();
                kept.remove("query");
                self.statements.push(Statement { row: kept, query });
            }
            Some("watched") if self.watched.is_none() => {
                let query = text(row, "query").unwrap_or_default().to_string();
                let mut kept = row.clone();
                kept.remove("query");
                self.watched = Some(Statement { row: kept, query });
            }
            Some("table") if self.tables.len() < MAX_TABLES => {
                let indexes = json_list(row.get("indexes"))
                    .into_iter()
                    .filter_map(|v| serde_json::from_value::<IndexInfo>(v).ok())
                    .collect();
                let columns = json_list(row.get("columns"))
                    .into_iter()
                    .filter_map(|v| serde_json::from_value::<ColumnStats>(v).ok())
                    .collect();
                let info = TableInfo {
                    table: text(row, "table_name").unwrap_or_default().to_string(),
                    live_rows: num(row, "n_live_tup").unwrap_or(0.0),
                    indexes,
                    columns,
                };
                let mut kept = row.clone();
                kept.remove("indexes");
                kept.remove("columns");
                self.tables.push(Table { info, row: kept });
            }
            _ => self.dropped += 1,
        }
    }

    pub(super) fn state_len(&self) -> usize {
        self.statements.len() + self.tables.len()
    }

    /// The table a statement names: exactly, else by its bare name when
    /// one candidate has it (the statement relied on a search_path).
    fn table(&self, name: &str, qualified: bool) -> Option<&Table> {
        if let Some(t) = self.tables.iter().find(|t| t.info.table == name) {
            return Some(t);
        }
        if qualified {
            return None;
        }
        let bare = name.rsplit('.').next().unwrap_or(name);
        let mut found = self
            .tables
            .iter()
            .filter(|t| t.info.table.rsplit('.').next() == Some(bare));
        match (found.next(), found.next()) {
            (Some(t), None) => Some(t),
            _ => None,
        }
    }

    /// Summary lines and facts.
    pub(super) fn finish(mut self) -> (Vec<String>, Map<String, Value>) {
        // Ranked by time in the window, whatever order the rows came in.
        self.statements.sort_by(|a, b| {
            let t = |s: &Statement| num(&s.row, "total_exec_ms").unwrap_or(0.0);
            t(b).partial_cmp(&t(a)).unwrap_or(std::cmp::Ordering::Equal)
        });
        let mut lines = Vec::new();
        let mut facts = Map::new();
        let mut proposals: Vec<advisor::Proposal> = Vec::new();
        let mut covered = false;
        let mut nothing = false;
        lines.push(format!(
            "index advice over {} statement(s) and {} candidate table(s){}:",
            self.statements.len(),
            self.tables.len(),
            if self.dropped > 0 {
                format!(" ({} row(s) beyond the limits not read)", self.dropped)
            } else {
                String::new()
            }
        ));
        for (i, st) in self.statements.iter().enumerate() {
            let head = statement_line(i + 1, st);
            lines.push(head);
            if i == 0 {
                put_str(&mut facts, "top_query", &clip(&st.query));
                copy(&mut facts, &st.row, "queryid", "top_queryid");
                copy(&mut facts, &st.row, "mean_exec_ms", "top_mean_ms");
            }
            let columns_of = |t: &str| {
                self.table(t, true)
                    .map(|t| t.info.columns.iter().map(|c| c.name.clone()).collect())
            };
            let uses = match advisor::extract(&st.query, "public", &columns_of) {
                Ok(u) => u,
                Err(e) => {
                    lines.push(format!("   not advised: {e}"));
                    continue;
                }
            };
            for u in &uses {
                let qualified = qualified_in(&st.query, &u.table);
                let Some(t) = self.table(&u.table, qualified) else {
                    continue;
                };
                let mut u = u.clone();
                u.table = t.info.table.clone();
                let seq = num(&t.row, "window_seq_scan");
                let advice = advisor::advise(&u, &t.info);
                match advice {
                    Advice::Create(p) if seq == Some(0.0) => {
                        lines.push(format!(
                            "   {}: would take ({}) but it was not read by a sequential scan during the window",
                            p.table,
                            p.columns.join(", ")
                        ));
                    }
                    Advice::Create(p) => {
                        let already = proposals
                            .iter()
                            .any(|q| q.table == p.table && q.columns == p.columns);
                        lines.push(format!(
                            "   {}: advise {}{}",
                            p.table,
                            p.sql,
                            table_note(t, &p.columns)
                        ));
                        if already {
                            continue;
                        }
                        if proposals.is_empty() {
                            proposal_facts(&mut facts, st, t, &p);
                        }
                        proposals.push(p);
                    }
                    Advice::Covered {
                        index,
                        definition,
                        columns,
                    } => {
                        lines.push(format!(
                            "   {}: already indexed by {index} ({})",
                            t.info.table,
                            columns.join(", ")
                        ));
                        if !covered {
                            covered = true;
                            put_str(&mut facts, "covered_by", &index);
                            put_str(&mut facts, "covered_definition", &definition);
                            put_str(&mut facts, "covered_table", &t.info.table);
                            put_str(&mut facts, "covered_columns", &columns.join(", "));
                            put_str(&mut facts, "covered_query", &clip(&st.query));
                        }
                    }
                    Advice::Nothing(why) => {
                        lines.push(format!("   {}: no plain index advice: {why}", t.info.table));
                        if !nothing {
                            nothing = true;
                            put_str(&mut facts, "no_advice_reason", &why);
                            put_str(&mut facts, "no_advice_table", &t.info.table);
                            put_str(&mut facts, "no_advice_query", &clip(&st.query));
                        }
                    }
                }
            }
        }
        if self.statements.is_empty() {
            lines.push("(no statement ran during the window)".to_string());
        }
        if let Some(w) = &self.watched {
            lines.push(format!(
                "watched statement: {}",
                statement_line(0, w).trim_start_matches("0. ")
            ));
            put_str(&mut facts, "watched_query", &clip(&w.query));
            copy(&mut facts, &w.row, "queryid", "watched_queryid");
            copy(&mut facts, &w.row, "calls", "watched_calls");
            copy(&mut facts, &w.row, "mean_exec_ms", "watched_mean_ms");
        }
        facts.insert("statements".into(), Value::from(self.statements.len()));
        facts.insert("tables".into(), Value::from(self.tables.len()));
        facts.insert("advice_count".into(), Value::from(proposals.len()));
        (lines, facts)
    }
}

fn statement_line(rank: usize, st: &Statement) -> String {
    let f = |k: &str| num(&st.row, k).map(shown).unwrap_or_else(|| "?".into());
    format!(
        "{rank}. {} calls, mean {} ms, total {} ms ({}% of the window): {}",
        f("calls"),
        f("mean_exec_ms"),
        f("total_exec_ms"),
        f("share_pct"),
        clip(&st.query)
    )
}

/// `; public.orders 200000 rows, 45 seq scans read 9000000 rows in the window; customer_id n_distinct 2000 correlation 0.01`
fn table_note(t: &Table, columns: &[String]) -> String {
    let mut out = format!(
        " ({} rows",
        num(&t.row, "n_live_tup")
            .map(shown)
            .unwrap_or_else(|| "?".into())
    );
    if let (Some(s), Some(r)) = (
        num(&t.row, "window_seq_scan"),
        num(&t.row, "window_seq_tup_read"),
    ) {
        out.push_str(&format!(
            "; {} sequential scans read {} rows during the window",
            shown(s),
            shown(r)
        ));
    }
    out.push_str("; ");
    out.push_str(&column_stats(&t.info, columns));
    out.push(')');
    out
}

fn column_stats(t: &TableInfo, columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| match t.columns.iter().find(|s| s.name == *c) {
            Some(ColumnStats {
                n_distinct: Some(nd),
                correlation,
                null_frac,
                ..
            }) => format!(
                "{c} n_distinct {} correlation {} null_frac {}",
                shown(*nd),
                correlation.map(shown).unwrap_or_else(|| "?".into()),
                null_frac.map(shown).unwrap_or_else(|| "?".into())
            ),
            _ => format!("{c} has no statistics (never analyzed)"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn proposal_facts(
    facts: &mut Map<String, Value>,
    st: &Statement,
    t: &Table,
    p: &advisor::Proposal,
) {
    put_str(facts, "table", &p.table);
    put_str(facts, "columns", &p.columns.join(", "));
    facts.insert("column_count".into(), Value::from(p.columns.len()));
    put_str(facts, "index_name", &p.name);
    put_str(facts, "create_sql", &p.sql);
    put_str(facts, "query", &clip(&st.query));
    for k in [
        "queryid",
        "calls",
        "mean_exec_ms",
        "total_exec_ms",
        "share_pct",
        "sample_seconds",
    ] {
        copy(facts, &st.row, k, k);
    }
    for k in [
        "n_live_tup",
        "window_seq_scan",
        "window_seq_tup_read",
        "seq_scan",
        "seq_tup_read",
        "table_size",
    ] {
        copy(facts, &t.row, k, k);
    }
    put_str(facts, "column_stats", &column_stats(&t.info, &p.columns));
    if let Some(lead) = p
        .columns
        .first()
        .and_then(|c| t.info.columns.iter().find(|s| s.name == *c))
    {
        if let Some(nd) = lead.n_distinct {
            facts.insert("n_distinct".into(), number(nd));
        }
        if let Some(c) = lead.correlation {
            facts.insert("correlation".into(), number(c));
        }
    }
}

fn put_str(facts: &mut Map<String, Value>, k: &str, v: &str) {
    facts.insert(k.to_string(), Value::String(v.to_string()));
}

fn copy(facts: &mut Map<String, Value>, row: &Map<String, Value>, from: &str, to: &str) {
    if let Some(v) = row.get(from).filter(|v| !v.is_null()) {
        let v = match v {
            // Integers (queryids) stay exact; floats are rounded for reading.
            Value::Number(n) if n.is_f64() => n.as_f64().map(number).unwrap_or_else(|| v.clone()),
            other => other.clone(),
        };
        facts.insert(to.to_string(), v);
    }
}

/// The statement's text on one line, at most 160 characters.
fn clip(q: &str) -> String {
    let one: String = q.split_whitespace().collect::<Vec<_>>().join(" ");
    crate::text::clip_chars(&one, 160)
}

/// Whether the statement names the table with its schema.
fn qualified_in(query: &str, table: &str) -> bool {
    query.to_lowercase().contains(&table.to_lowercase())
}
