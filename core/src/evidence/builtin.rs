//! The built-in summarizers. Each keeps a bounded state: `rows` at most
//! `limit` formatted rows, `top` a min-heap of `limit` entries, `group` at
//! most `MAX_GROUPS` keys, `stats` a fixed set of accumulators per column
//! (at most `MAX_COLUMNS`).

use super::p2::P2;
use super::redact::{cap_chars, redact_cow};
use super::table::{CELL_SCAN, cell, cell_text, fmt_num, num_value, render, value_text};
use super::{Column, FACT_SCAN, MAX_COLUMNS, MAX_GROUPS, Row};
use serde_json::{Map, Value};
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};

/// Number from a JSON value: numbers, and strings holding a finite number
/// (Postgres `numeric` often arrives as text). Anything else is `None`.
pub(crate) fn as_number(v: &Value) -> Option<f64> {
    let f = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => {
            let t = s.trim();
            if t.is_empty()
                || t.len() > 64
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
            {
                return None;
            }
            t.parse::<f64>().ok()?
        }
        _ => return None,
    };
    f.is_finite().then_some(f)
}

/// Whether a number-ish value is integral (for integer facts).
fn is_integral(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_i64() || n.is_u64(),
        Value::String(s) => s.trim().parse::<i64>().is_ok(),
        _ => false,
    }
}

/// Scalar columns of a row as facts (nested values skipped; strings pre-cut,
/// redacted and cut to the fact limit later).
pub(crate) fn scalar_facts(row: &Row) -> Map<String, Value> {
    let mut m = Map::new();
    for (k, v) in row.iter().take(MAX_COLUMNS) {
        match v {
            Value::Null | Value::Bool(_) | Value::Number(_) => {
                m.insert(k.clone(), v.clone());
            }
            Value::String(s) => {
                m.insert(
                    k.clone(),
                    Value::String(cap_chars(s, FACT_SCAN).into_owned()),
                );
            }
            Value::Array(_) | Value::Object(_) => {}
        }
    }
    m
}

/// Value of a column; a missing column is null.
fn get<'a>(row: &'a Row, name: &str) -> Option<&'a Value> {
    row.get(name)
}

fn cells(row: &Row, cols: &[Column]) -> Vec<String> {
    cols.iter().map(|c| cell(get(row, &c.name))).collect()
}

fn headers(cols: &[Column]) -> Vec<String> {
    cols.iter().map(|c| c.name.clone()).collect()
}

/// `n` with the singular or plural noun: "1 row", "2 rows", "0 rows".
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

// ---------------------------------------------------------------- rows

pub(crate) struct Rows {
    limit: usize,
    shown: Vec<Vec<String>>,
}

impl Rows {
    pub(crate) fn new(limit: usize) -> Rows {
        Rows {
            limit,
            shown: Vec::new(),
        }
    }
    pub(crate) fn push(&mut self, row: &Row, cols: &[Column]) {
        if self.shown.len() < self.limit {
            self.shown.push(cells(row, cols));
        }
    }
    pub(crate) fn state_len(&self) -> usize {
        self.shown.len()
    }
    pub(crate) fn render(&self, rows: u64, capped: &str, cols: &[Column]) -> Vec<String> {
        let shown = self.shown.len() as u64;
        let mut out = vec![if rows == 0 {
            format!("rows: 0 rows{capped}")
        } else {
            format!(
                "rows: first {shown} of {}{capped}",
                plural(rows, "row", "rows")
            )
        }];
        if rows > 0 {
            out.extend(render(&headers(cols), &self.shown));
        }
        if rows > shown {
            out.push(format!(
                "... {} more {}",
                rows - shown,
                if rows - shown == 1 { "row" } else { "rows" }
            ));
        }
        out
    }
}

// ---------------------------------------------------------------- top

/// Sum of a numeric column, integral when every value was.
#[derive(Default)]
pub(crate) struct NumSum {
    int: i128,
    float: f64,
    all_int: bool,
    n: u64,
}

impl NumSum {
    fn add(&mut self, v: &Value, f: f64) {
        if self.n == 0 {
            self.all_int = true;
        }
        self.n += 1;
        self.float += f;
        if self.all_int {
            let i = match v {
                Value::Number(n) => n
                    .as_i64()
                    .map(i128::from)
                    .or_else(|| n.as_u64().map(i128::from)),
                Value::String(s) => s.trim().parse::<i128>().ok(),
                _ => None,
            };
            match i.and_then(|i| self.int.checked_add(i)) {
                Some(s) => self.int = s,
                None => self.all_int = false,
            }
        }
    }
    fn value(&self) -> Value {
        if self.n == 0 {
            return Value::from(0);
        }
        if self.all_int
            && let Ok(i) = i64::try_from(self.int)
        {
            return Value::from(i);
        }
        Value::from(self.float)
    }
}

struct Entry {
    key: Option<f64>,
    seq: u64,
    cells: Vec<String>,
    facts: Map<String, Value>,
}

/// Greater = ranks higher: numbers descending, then non-numbers; ties keep arrival order.
fn rank(a: Option<f64>, aseq: u64, b: Option<f64>, bseq: u64) -> Ordering {
    match (a, b) {
        (Some(x), Some(y)) => x.total_cmp(&y).then(bseq.cmp(&aseq)),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => bseq.cmp(&aseq),
    }
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> Ordering {
        rank(self.key, self.seq, o.key, o.seq)
    }
}

/// Summary lines, the top row's facts, and the `<by>_total` fact.
pub(crate) type TopResult = (Vec<String>, Option<Map<String, Value>>, Map<String, Value>);

pub(crate) struct Top {
    pub(crate) by: Option<String>,
    limit: usize,
    /// Min-heap: the weakest kept entry on top.
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    total: NumSum,
}

impl Top {
    pub(crate) fn new(by: Option<String>, limit: usize) -> Top {
        Top {
            by,
            limit: limit.max(1),
            heap: BinaryHeap::new(),
            seq: 0,
            total: NumSum::default(),
        }
    }
    pub(crate) fn push(&mut self, row: &Row, cols: &[Column]) {
        let seq = self.seq;
        self.seq += 1;
        let v = self.by.as_deref().and_then(|b| get(row, b));
        let key = v.and_then(as_number);
        if let (Some(v), Some(f)) = (v, key) {
            self.total.add(v, f);
        }
        if self.heap.len() >= self.limit {
            match self.heap.peek() {
                Some(Reverse(w)) if rank(key, seq, w.key, w.seq) == Ordering::Greater => {
                    self.heap.pop();
                }
                _ => return,
            }
        }
        self.heap.push(Reverse(Entry {
            key,
            seq,
            cells: cells(row, cols),
            facts: scalar_facts(row),
        }));
    }
    pub(crate) fn state_len(&self) -> usize {
        self.heap.len()
    }
    pub(crate) fn finish(self, rows: u64, capped: &str, cols: &[Column]) -> TopResult {
        let by = self.by.clone().unwrap_or_else(|| "(none)".to_string());
        let sorted: Vec<Entry> = self
            .heap
            .into_sorted_vec()
            .into_iter()
            .map(|Reverse(e)| e)
            .collect();
        let mut out = vec![format!(
            "top {} of {} by {by}{capped}",
            sorted.len(),
            plural(rows, "row", "rows")
        )];
        if !sorted.is_empty() {
            let table: Vec<Vec<String>> = sorted.iter().map(|e| e.cells.clone()).collect();
            out.extend(render(&headers(cols), &table));
        }
        let mut specific = Map::new();
        if self.by.is_some() {
            specific.insert(format!("{by}_total"), self.total.value());
        }
        let top_facts = sorted.into_iter().next().map(|e| e.facts);
        (out, top_facts, specific)
    }
}

// ---------------------------------------------------------------- group

/// Label of the overflow group.
pub(crate) const OTHER: &str = "(other)";
/// Longest part of a group key, in chars.
const KEY_PART_MAX: usize = 200;

pub(crate) struct Group {
    pub(crate) by: Vec<String>,
    limit: usize,
    counts: HashMap<String, u64>,
    other: u64,
}

impl Group {
    pub(crate) fn new(by: Vec<String>, limit: usize) -> Group {
        Group {
            by,
            limit,
            counts: HashMap::new(),
            other: 0,
        }
    }
    fn key(&self, row: &Row) -> String {
        if self.by.is_empty() {
            return "(all)".to_string();
        }
        let mut k = String::new();
        for (i, b) in self.by.iter().enumerate() {
            if i > 0 {
                k.push('/');
            }
            match get(row, b) {
                None => k.push_str("null"),
                // Redacted while whole, then cut: a cut must not leave a
                // secret's unrecognisable prefix in the key.
                Some(v) => {
                    let text = value_text(v, CELL_SCAN);
                    k.push_str(&cap_chars(&redact_cow(&text), KEY_PART_MAX));
                }
            }
        }
        k
    }
    pub(crate) fn push(&mut self, row: &Row) {
        let k = self.key(row);
        if let Some(c) = self.counts.get_mut(&k) {
            *c += 1;
        } else if self.counts.len() < MAX_GROUPS {
            self.counts.insert(k, 1);
        } else {
            self.other += 1;
        }
    }
    pub(crate) fn state_len(&self) -> usize {
        self.counts.len()
    }
    pub(crate) fn overflowed(&self) -> bool {
        self.other > 0
    }
    pub(crate) fn finish(self, rows: u64, capped: &str) -> (Vec<String>, Map<String, Value>) {
        let label = if self.by.is_empty() {
            "(all)".to_string()
        } else {
            self.by.join("/")
        };
        let distinct = self.counts.len() as u64;
        let mut groups: Vec<(String, u64)> = self.counts.into_iter().collect();
        if self.other > 0 {
            groups.push((OTHER.to_string(), self.other));
        }
        groups.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let more = if self.other > 0 { "more than " } else { "" };
        let mut out = vec![format!(
            "group by {label}: {more}{} over {}{capped}",
            plural(distinct, "group", "groups"),
            plural(rows, "row", "rows")
        )];
        let shown: Vec<Vec<String>> = groups
            .iter()
            .take(self.limit)
            .map(|(k, c)| vec![c.to_string(), cell_text(k)])
            .collect();
        if !shown.is_empty() {
            out.extend(render(&["count".to_string(), label], &shown));
        }
        if groups.len() > shown.len() {
            out.push(format!("... {} more groups", groups.len() - shown.len()));
        }
        let mut facts = Map::new();
        facts.insert("groups".to_string(), Value::from(distinct));
        for (k, c) in groups {
            facts.entry(k).or_insert(Value::from(c));
        }
        (out, facts)
    }
}

// ---------------------------------------------------------------- stats

struct ColStats {
    name: String,
    type_name: String,
    numeric: u64,
    other: u64,
    nulls: u64,
    min: f64,
    max: f64,
    /// Neumaier-compensated sum.
    sum: f64,
    comp: f64,
    integral: bool,
    p50: P2,
    p95: P2,
}

impl ColStats {
    fn new(name: String, type_name: String) -> ColStats {
        ColStats {
            name,
            type_name,
            numeric: 0,
            other: 0,
            nulls: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sum: 0.0,
            comp: 0.0,
            integral: true,
            p50: P2::new(0.5),
            p95: P2::new(0.95),
        }
    }
    fn add(&mut self, v: Option<&Value>) {
        let v = match v {
            None | Some(Value::Null) => {
                self.nulls += 1;
                return;
            }
            Some(v) => v,
        };
        let Some(x) = as_number(v) else {
            self.other += 1;
            return;
        };
        self.numeric += 1;
        self.integral &= is_integral(v);
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        let t = self.sum + x;
        self.comp += if self.sum.abs() >= x.abs() {
            (self.sum - t) + x
        } else {
            (x - t) + self.sum
        };
        self.sum = t;
        self.p50.add(x);
        self.p95.add(x);
    }
}

pub(crate) struct Stats {
    cols: Vec<ColStats>,
}

impl Stats {
    pub(crate) fn new(cols: &[Column]) -> Stats {
        Stats {
            cols: cols
                .iter()
                .take(MAX_COLUMNS)
                .map(|c| ColStats::new(c.name.clone(), c.type_name.clone()))
                .collect(),
        }
    }
    pub(crate) fn push(&mut self, row: &Row) {
        for (i, (k, v)) in row.iter().enumerate() {
            // Fast path: the row's columns arrive in the declared order.
            let idx = match self.cols.get(i) {
                Some(c) if c.name == *k => Some(i),
                _ => self.cols.iter().position(|c| c.name == *k),
            };
            let idx = match idx {
                Some(i) => Some(i),
                None if self.cols.len() < MAX_COLUMNS => {
                    self.cols.push(ColStats::new(k.clone(), String::new()));
                    Some(self.cols.len() - 1)
                }
                None => None,
            };
            if let Some(c) = idx.and_then(|i| self.cols.get_mut(i)) {
                c.add(Some(v));
            }
        }
    }
    /// Accumulators held (each of constant size).
    pub(crate) fn state_len(&self) -> usize {
        self.cols.len()
    }
    pub(crate) fn finish(self, rows: u64, capped: &str) -> (Vec<String>, Map<String, Value>) {
        let estimated = self.cols.iter().any(|c| !c.p50.is_exact());
        let mut out = vec![format!(
            "stats over {}{capped}{}",
            plural(rows, "row", "rows"),
            if estimated {
                " (p50/p95 estimated)"
            } else {
                ""
            }
        )];
        let mut facts = Map::new();
        for c in &self.cols {
            // Columns absent from some rows count those rows as nulls.
            let nulls = c.nulls + rows.saturating_sub(c.nulls + c.numeric + c.other);
            if c.numeric == 0 {
                let ty = if c.type_name.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", c.type_name)
                };
                let non_null = c.other;
                out.push(if non_null == 0 {
                    format!("  {}: all null{ty}", c.name)
                } else {
                    format!("  {}: {non_null} non-null, {nulls} null{ty}", c.name)
                });
                continue;
            }
            let mean = (c.sum + c.comp) / c.numeric as f64;
            let p50 = c.p50.value().unwrap_or(mean);
            let p95 = c.p95.value().unwrap_or(mean);
            let extra = if c.other > 0 {
                format!(" non-numeric={}", c.other)
            } else {
                String::new()
            };
            out.push(format!(
                "  {}: min={} max={} mean={} p50={} p95={} nulls={nulls}{extra}",
                c.name,
                fmt_num(c.min),
                fmt_num(c.max),
                fmt_num(mean),
                fmt_num(p50),
                fmt_num(p95)
            ));
            facts.insert(format!("{}_min", c.name), num_value(c.min, c.integral));
            facts.insert(format!("{}_max", c.name), num_value(c.max, c.integral));
            facts.insert(format!("{}_mean", c.name), Value::from(mean));
            facts.insert(format!("{}_p50", c.name), Value::from(p50));
            facts.insert(format!("{}_p95", c.name), Value::from(p95));
            facts.insert(format!("{}_nulls", c.name), Value::from(nulls));
        }
        if self.cols.is_empty() {
            out.push("  (no columns)".to_string());
        }
        (out, facts)
    }
}

// ---------------------------------------------------------------- schema

pub(crate) fn schema_lines(rows: u64, capped: &str, cols: &[Column]) -> Vec<String> {
    let mut out = vec![format!(
        "schema: {}, {}{capped}",
        plural(cols.len() as u64, "column", "columns"),
        plural(rows, "row", "rows")
    )];
    if !cols.is_empty() {
        let table: Vec<Vec<String>> = cols
            .iter()
            .map(|c| {
                vec![
                    c.name.clone(),
                    if c.type_name.is_empty() {
                        "?".to_string()
                    } else {
                        c.type_name.clone()
                    },
                ]
            })
            .collect();
        out.extend(render(&["column".to_string(), "type".to_string()], &table));
    }
    out
}
