//! PostgreSQL analysis with libpg_query (the real PostgreSQL grammar).
//!
//! Two paths, one answer. Most runbook SQL is a single plain `SELECT`; for it
//! the cheap `pg_query::summary` (a C walk of the whole raw parse tree) gives
//! everything the class depends on: the statement type and every function
//! called, with names exactly as the server resolves them (quoted ones kept
//! as written). The fast path is only taken when the text cannot contain
//! anything else that matters: no `;`, none of the words a locking clause,
//! `INTO`, `OPERATOR(...)` or a data-modifying CTE needs, no SQL/JSON
//! keyword or `merge_action` (syntax nodes the summary does not list), and no
//! call of a signal function (whose scope needs the tree). Everything else is
//! parsed in full, walked completely (`walk`) and classified node by node.
//!
//! Every doubt resolves to the more severe class: a name, node or predicate
//! this module cannot read never makes a statement look safer. Text with a
//! backslash is also read as a server with `standard_conforming_strings =
//! off` would read it, and the more severe reading wins.

use pg_query::NodeEnum;
use pg_query::protobuf::{
    AlterTableCmd, AlterTableType, ConstrType, Constraint, ObjectType, SelectStmt,
};

use super::functions::{pg_evaluates_objects, pg_is_nonvolatile};
use super::predicates::{Target, limits, multi_session_signal, unscoped_signal};
use super::walk::{SIGNAL_FUNCTIONS, Scan};
use super::{Analysis, Analyzer, Engine, FunctionEffect, LockMode, Risk, StatementAnalysis};

/// Procedural languages PostgreSQL ships as trusted (their code cannot reach
/// outside the database). Any other language (`c`, `internal`, `plpython3u`,
/// `plperlu`, an unknown name) runs with the server's own rights.
const TRUSTED_LANGUAGES: [&str; 5] = ["sql", "plpgsql", "plperl", "pltcl", "plv8"];

/// The keywords of SQL/JSON syntax (`json_scalar(...)`, `IS JSON`,
/// `json_table`) and `merge_action`: parsed as syntax nodes that the summary
/// does not list. A keyword is never quoted, so a text without one of these
/// words (in any case) has none of those nodes; a text with one takes the
/// full path, where the tree is walked.
const SYNTAX_FUNCTION_WORDS: [&str; 12] = [
    "json",
    "json_array",
    "json_arrayagg",
    "json_exists",
    "json_object",
    "json_objectagg",
    "json_query",
    "json_scalar",
    "json_serialize",
    "json_table",
    "json_value",
    "merge_action",
];

fn may_be_syntax_function(hay: &[u8]) -> bool {
    let mut i = 0;
    while i < hay.len() {
        if !is_ident_byte(hay[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < hay.len() && is_ident_byte(hay[i]) {
            i += 1;
        }
        let run = &hay[start..i];
        if run.len() >= 4
            && run[..4].eq_ignore_ascii_case(b"json")
            && SYNTAX_FUNCTION_WORDS
                .iter()
                .any(|w| run.eq_ignore_ascii_case(w.as_bytes()))
            || run.eq_ignore_ascii_case(b"merge_action")
        {
            return true;
        }
    }
    false
}

/// The server version that first parses an SQL/JSON construct (or
/// `merge_action()`) as syntax; on an older server the same text is an
/// ordinary function call, looked up like any other.
fn syntax_since(name: &str) -> u32 {
    match name {
        "json_object" | "json_array" | "json_objectagg" | "json_arrayagg" | "IS JSON" => 160000,
        _ => 170000,
    }
}

/// Keywords whose presence in a plain `SELECT` needs a closer look: a
/// locking clause (`FOR UPDATE`, `FOR [KEY] SHARE`), `SELECT ... INTO`, and
/// (belt and braces: the summary's statement types already reveal them)
/// data-modifying CTEs, and `OPERATOR(schema.op)`. First matched
/// case-insensitively as whole words in the raw text — a cheap filter that a
/// word in a string or comment can only make more careful — then confirmed
/// among the scanner's keyword tokens.
const CLOSER_LOOK_WORDS: [&str; 7] = [
    "update", "share", "into", "delete", "insert", "merge", "operator",
];

/// Bytes that continue an identifier or keyword in PostgreSQL's lexer
/// (letters, digits, `_`, `$`, and any byte of a multi-byte character). A
/// keyword is always delimited by something else.
fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// Whether any of `words` (lowercase) occurs in `hay` as a whole word,
/// case-insensitively. One pass over the text.
fn contains_any_word_ci(hay: &[u8], words: &[&str]) -> bool {
    let mut i = 0;
    while i < hay.len() {
        if !is_ident_byte(hay[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < hay.len() && is_ident_byte(hay[i]) {
            i += 1;
        }
        let run = &hay[start..i];
        if words.iter().any(|w| run.eq_ignore_ascii_case(w.as_bytes())) {
            return true;
        }
    }
    false
}

pub(super) fn analyze(an: &Analyzer, sql: &str) -> Analysis {
    if sql.contains('\0') {
        return Analysis::unparsed(
            Engine::Postgres,
            sql,
            "the SQL contains a NUL byte".into(),
            sql.find('\0'),
        );
    }
    let primary = analyze_as(an, sql, false);
    // libpg_query reads strings with standard_conforming_strings = on. A
    // server (or database, or role) with it off reads a backslash in a plain
    // literal as an escape, so `'\'' , f() -- '` hides a call from one
    // reading and not the other. Where a backslash could matter, the text
    // is read both ways and the more severe reading wins.
    if !sql.contains('\\') || primary.risk == Risk::Unknown {
        return primary;
    }
    let legacy = analyze_as(an, sql, true);
    if legacy.parse_error.is_none() && legacy.risk.max(primary.risk) != primary.risk {
        let mut a = legacy;
        for st in &mut a.statements {
            st.reasons.push(
                "read as a server with standard_conforming_strings = off reads it (backslash escapes in plain literals)".into(),
            );
        }
        return a;
    }
    primary
}

/// One reading of the text: `legacy_strings` parses plain literals as
/// `standard_conforming_strings = off` does (and skips the fast path, whose
/// token checks assume the standard lexing).
fn analyze_as(an: &Analyzer, sql: &str, legacy_strings: bool) -> Analysis {
    let opts = if legacy_strings {
        pg_query::ParserOptions::DISABLE_STANDARD_CONFORMING_STRINGS.bits()
    } else {
        0
    };
    // One summary of the whole text serves the fast path and, when the text
    // is a single statement, the full path too.
    let summary = pg_query::summary(sql, opts, -1).ok();
    if !legacy_strings && let Some(fast) = summary.as_ref().and_then(|s| fast_select(an, sql, s)) {
        return fast;
    }
    full(an, sql, summary.as_ref(), opts)
}

/// The fast path for the common case, a single plain `SELECT`: one
/// `pg_query::summary` call (a C walk of the whole raw parse tree that lists
/// every statement type and every function called), plus a token scan only
/// when the text contains a word that could be a locking clause or `INTO`.
fn fast_select(an: &Analyzer, sql: &str, summary: &pg_query::SummaryResult) -> Option<Analysis> {
    let body = sql.trim_end().trim_end_matches(';');
    let bytes = body.as_bytes();
    if bytes.contains(&b';') {
        return None;
    }
    if summary.statement_types.len() != 1 || summary.statement_types[0] != "SelectStmt" {
        return None;
    }
    if contains_any_word_ci(bytes, &CLOSER_LOOK_WORDS) && has_keyword(sql, &CLOSER_LOOK_WORDS) {
        return None;
    }
    if may_be_syntax_function(bytes) {
        return None;
    }
    // A signal over a set of rows needs the tree to tell its scope.
    if summary
        .functions
        .iter()
        .any(|f| SIGNAL_FUNCTIONS.contains(&f.function_name.as_str()))
    {
        return None;
    }
    let mut st = StatementAnalysis::new(sql, "select", Risk::ReadOnly);
    st.lock = Some(LockMode::AccessShare);
    st.tables = summary_tables(summary);
    apply_functions(an, &mut st, summary);
    Some(Analysis::from_statements(Engine::Postgres, vec![st]))
}

/// Whether any of `words` occurs as a bare keyword or identifier token (not
/// in a literal, quoted identifier or comment). Errs on the side of yes.
fn has_keyword(sql: &str, words: &[&str]) -> bool {
    tokens(sql).is_none_or(|toks| {
        toks.iter()
            .any(|t| words.iter().any(|w| t.eq_ignore_ascii_case(w)))
    })
}

/// The scanner's tokens of `sql` as text, without comments (which separate
/// nothing); string literals and quoted identifiers keep their quotes, so
/// they never equal a keyword. `None` when the text cannot be scanned.
fn tokens(sql: &str) -> Option<Vec<&str>> {
    let scan = pg_query::scan(sql).ok()?;
    Some(
        scan.tokens
            .iter()
            .filter_map(|t| sql.get(usize::try_from(t.start).ok()?..usize::try_from(t.end).ok()?))
            .filter(|s| !s.starts_with("--") && !s.starts_with("/*"))
            .collect(),
    )
}

fn summary_tables(summary: &pg_query::SummaryResult) -> Vec<String> {
    let mut t: Vec<String> = summary.tables.iter().map(|t| t.name.clone()).collect();
    t.sort();
    t.dedup();
    t
}

/// Raises the statement's risk for every function it calls that is not pure.
fn apply_functions(an: &Analyzer, st: &mut StatementAnalysis, summary: &pg_query::SummaryResult) {
    let mut calls: Vec<&pg_query::Function> = summary
        .functions
        .iter()
        .filter(|f| f.context == pg_query::protobuf::summary_result::Context::Call)
        .collect();
    calls.sort_by(|a, b| a.name.cmp(&b.name));
    for f in calls {
        let catalog = matches!(f.schema_name.as_deref(), None | Some("pg_catalog"));
        if catalog && f.function_name == "setval" {
            st.finding("sequence-setval");
        }
        match an.function_effect(Engine::Postgres, f.schema_name.as_deref(), &f.function_name) {
            FunctionEffect::Pure => {}
            FunctionEffect::Known(risk) if catalog && pg_evaluates_objects(&f.function_name) => {
                st.raise(
                    risk,
                    format!("calls {}(), which evaluates arbitrary SQL/objects (views, functions, query text)", f.name),
                )
            }
            FunctionEffect::Known(risk) => st.raise(risk, format!("calls {}()", f.name)),
            FunctionEffect::Unlisted => st.raise(
                Risk::Unknown,
                format!("calls {}(), which is not known to be read-only (declare it in ward.yaml `pure_functions` if it is)", f.name),
            ),
        }
    }
}

fn full(an: &Analyzer, sql: &str, whole: Option<&pg_query::SummaryResult>, opts: i32) -> Analysis {
    let parsed = match pg_query::parse(sql, opts) {
        Ok(p) => p,
        Err(e) => {
            let message = match e {
                pg_query::Error::Parse(m) => m,
                other => other.to_string(),
            };
            let offset = error_offset(sql, &message);
            return Analysis::unparsed(Engine::Postgres, sql, message, offset);
        }
    };
    let mut statements = Vec::with_capacity(parsed.protobuf.stmts.len());
    let mut lock_timeout_set = an.options.lock_timeout_managed;
    for raw in &parsed.protobuf.stmts {
        let start = usize::try_from(raw.stmt_location)
            .unwrap_or(0)
            .min(sql.len());
        let end = match usize::try_from(raw.stmt_len) {
            Ok(0) | Err(_) => sql.len(),
            Ok(len) => (start + len).min(sql.len()),
        };
        let text = sql.get(start..end).unwrap_or(sql);
        let Some(node) = raw.stmt.as_ref().and_then(|n| n.node.as_ref()) else {
            continue;
        };
        let single = parsed.protobuf.stmts.len() == 1;
        let mut st = classify(an, text, node, 0, whole.filter(|_| single));
        if let NodeEnum::VariableSetStmt(v) = node
            && v.name == "lock_timeout"
        {
            lock_timeout_set = true;
        }
        if !lock_timeout_set && st.lock.is_some_and(|l| l >= LockMode::Share) {
            st.finding("require-lock-timeout");
        }
        statements.push(st);
    }
    Analysis::from_statements(Engine::Postgres, statements)
}

/// Where a parse error is: libpg_query names the offending token in its
/// message but the Rust API does not pass on the cursor position, so find
/// the token's first occurrence that reproduces the same error when the text
/// is cut right after it (a cut before the bad token parses, or fails only
/// "at end of input").
fn error_offset(sql: &str, message: &str) -> Option<usize> {
    if message.contains("at end of input") {
        return Some(sql.trim_end().len());
    }
    let start = message.find("at or near \"")? + "at or near \"".len();
    let token = message[start..].strip_suffix('"')?;
    if token.is_empty() {
        return None;
    }
    let needle = format!("at or near \"{token}\"");
    let candidates: Vec<usize> = match pg_query::scan(sql) {
        Ok(scan) => scan
            .tokens
            .iter()
            .filter_map(|t| {
                let (a, b) = (usize::try_from(t.start).ok()?, usize::try_from(t.end).ok()?);
                (sql.get(a..b)? == token).then_some(a)
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    for &at in &candidates {
        let cut = &sql[..at + token.len()];
        if let Err(pg_query::Error::Parse(m)) = pg_query::parse(cut, 0)
            && m.contains(&needle)
        {
            return Some(at);
        }
    }
    candidates.first().copied().or_else(|| sql.find(token))
}

fn range_name(rv: &pg_query::protobuf::RangeVar) -> String {
    if rv.schemaname.is_empty() {
        rv.relname.clone()
    } else {
        format!("{}.{}", rv.schemaname, rv.relname)
    }
}

fn node_names(nodes: &[pg_query::protobuf::Node]) -> Vec<String> {
    nodes
        .iter()
        .filter_map(|n| match n.node.as_ref()? {
            NodeEnum::RangeVar(rv) => Some(range_name(rv)),
            NodeEnum::List(l) => {
                let parts: Vec<String> = l
                    .items
                    .iter()
                    .filter_map(|i| match i.node.as_ref()? {
                        NodeEnum::String(s) => Some(s.sval.clone()),
                        _ => None,
                    })
                    .collect();
                Some(parts.join("."))
            }
            NodeEnum::String(s) => Some(s.sval.clone()),
            _ => None,
        })
        .collect()
}

fn defelem_on(options: &[pg_query::protobuf::Node], name: &str) -> bool {
    options.iter().any(|o| match o.node.as_ref() {
        Some(NodeEnum::DefElem(d)) if d.defname.eq_ignore_ascii_case(name) => {
            match d.arg.as_ref().and_then(|a| a.node.as_ref()) {
                None => true,
                Some(NodeEnum::Boolean(b)) => b.boolval,
                Some(NodeEnum::String(s)) => {
                    !matches!(s.sval.to_ascii_lowercase().as_str(), "false" | "off" | "0")
                }
                Some(NodeEnum::Integer(i)) => i.ival != 0,
                Some(_) => true,
            }
        }
        _ => false,
    })
}

fn lock_from_i32(mode: i32) -> Option<LockMode> {
    let idx = usize::try_from(mode).ok()?.checked_sub(1)?;
    LockMode::ALL.get(idx).copied()
}

/// Analyzes a statement nested in another (EXPLAIN ANALYZE, COPY (query),
/// CREATE TABLE AS) by deparsing it and running the full analysis on it.
fn nested(
    an: &Analyzer,
    node: Option<&pg_query::protobuf::Node>,
    depth: u8,
) -> Option<StatementAnalysis> {
    let inner = node?.node.as_ref()?;
    if depth > 8 {
        return None;
    }
    let text = inner.deparse(Default::default()).ok()?;
    let parsed = pg_query::parse(&text, 0).ok()?;
    let raw = parsed.protobuf.stmts.first()?;
    let node = raw.stmt.as_ref()?.node.as_ref()?;
    Some(classify(an, &text, node, depth + 1, None))
}

/// Classifies one statement. `summary` is the statement's summary when the
/// caller already has it.
fn classify(
    an: &Analyzer,
    text: &str,
    node: &NodeEnum,
    depth: u8,
    summary: Option<&pg_query::SummaryResult>,
) -> StatementAnalysis {
    use Risk::*;
    let mut st = StatementAnalysis::new(text, "other", ReadOnly);
    // One complete walk of the tree for what the summary does not list.
    let scan = Scan::of(node);
    match node {
        NodeEnum::SelectStmt(s) => select(an, &mut st, text, s, summary, &scan),
        NodeEnum::VariableShowStmt(_) => st.kind = "show".into(),
        NodeEnum::ExplainStmt(e) => {
            st.lock = Some(LockMode::AccessShare);
            if defelem_on(&e.options, "analyze") {
                st.kind = "explain_analyze".into();
                match nested(an, e.query.as_deref(), depth) {
                    Some(inner) => {
                        if inner.risk != ReadOnly {
                            st.finding("explain-analyze-executes");
                            st.raise(
                                inner.risk,
                                format!("EXPLAIN ANALYZE executes a {} statement", inner.kind),
                            );
                        }
                        st.lock = inner.lock.max(st.lock);
                        st.tables = inner.tables;
                        st.findings.extend(inner.findings);
                    }
                    None => st.raise(
                        Unknown,
                        "the statement under EXPLAIN ANALYZE could not be analyzed",
                    ),
                }
            } else {
                // Planning evaluates immutable and stable functions (and a
                // function may lie about its volatility), and takes the
                // statement's locks: plain EXPLAIN is as risky as its query.
                st.kind = "explain".into();
                match nested(an, e.query.as_deref(), depth) {
                    Some(inner) => {
                        if inner.risk != ReadOnly {
                            st.raise(
                                inner.risk,
                                format!("EXPLAIN plans a {} statement", inner.kind),
                            );
                            st.reasons.extend(inner.reasons);
                        }
                        st.lock = inner.lock.max(st.lock);
                        st.tables = inner.tables;
                        st.findings.extend(inner.findings);
                    }
                    None => st.raise(Unknown, "the statement under EXPLAIN could not be analyzed"),
                }
            }
        }
        NodeEnum::InsertStmt(i) => {
            st.kind = "insert".into();
            dml(an, &mut st, text, i.relation.as_ref(), summary);
        }
        NodeEnum::UpdateStmt(u) => {
            st.kind = "update".into();
            dml(an, &mut st, text, u.relation.as_ref(), summary);
        }
        NodeEnum::DeleteStmt(d) => {
            st.kind = "delete".into();
            dml(an, &mut st, text, d.relation.as_ref(), summary);
        }
        NodeEnum::MergeStmt(m) => {
            st.kind = "merge".into();
            dml(an, &mut st, text, m.relation.as_ref(), summary);
        }
        NodeEnum::CopyStmt(c) => copy(an, &mut st, c, depth),
        NodeEnum::TruncateStmt(t) => {
            st.kind = "truncate".into();
            st.tables = node_names(&t.relations);
            st.lock = Some(LockMode::AccessExclusive);
            st.finding("ban-truncate");
            st.raise(Destructive, "TRUNCATE removes every row");
            if t.restart_seqs {
                st.finding("sequence-restart");
            }
        }
        NodeEnum::LockStmt(l) => {
            st.kind = "lock_table".into();
            st.tables = node_names(&l.relations);
            st.lock = lock_from_i32(l.mode).or(Some(LockMode::AccessExclusive));
            st.raise(Write, "LOCK TABLE holds a lock until the transaction ends");
        }
        NodeEnum::VariableSetStmt(v) => {
            let name = v.name.to_ascii_lowercase();
            if name == "role" || name == "session_authorization" {
                st.kind = "set_role".into();
                st.raise(Privilege, "changes the session's role");
            } else if matches!(
                name.as_str(),
                "search_path" | "standard_conforming_strings" | "backslash_quote" | ""
            ) {
                // ward pins these per connection; changing (or resetting)
                // them changes which function a name calls or how a literal
                // reads for every later statement on the connection.
                st.kind = "set".into();
                st.raise(
                    Privilege,
                    format!(
                        "changes {}, which decides how later statements on the connection are read and resolved",
                        if name.is_empty() { "every setting (RESET ALL)" } else { &name }
                    ),
                );
            } else if name == "session_replication_role" {
                st.kind = "set".into();
                st.finding("disable-trigger");
                st.raise(
                    Privilege,
                    "session_replication_role turns off triggers and foreign-key checks for the session",
                );
            } else {
                st.kind = "set".into();
                st.raise(
                    Write,
                    format!(
                        "changes the session setting {}",
                        if name.is_empty() { "(all)" } else { &name }
                    ),
                );
            }
        }
        NodeEnum::TransactionStmt(_) => {
            st.kind = "transaction".into();
            st.raise(
                Unknown,
                "transaction control inside a step; ward manages transactions itself",
            );
        }
        NodeEnum::DoStmt(d) => {
            st.kind = "do".into();
            let language = defelem_str(&d.args, "language").unwrap_or("plpgsql");
            if trusted_language(language) {
                st.raise(
                    Unknown,
                    "DO runs an anonymous code block whose effects cannot be known from the SQL",
                );
            } else {
                st.raise(
                    Privilege,
                    format!("DO runs code in the untrusted language {language}, with the server's own rights"),
                );
            }
        }
        NodeEnum::CallStmt(_) => {
            st.kind = "call".into();
            st.raise(
                Unknown,
                "CALL runs a procedure whose effects cannot be known from the SQL",
            );
        }
        NodeEnum::ExecuteStmt(_) => {
            st.kind = "execute".into();
            st.raise(
                Unknown,
                "EXECUTE runs a prepared statement that is not visible here",
            );
        }
        NodeEnum::IndexStmt(i) => {
            st.kind = "create_index".into();
            st.concurrently = i.concurrent;
            if let Some(rv) = &i.relation {
                st.tables.push(range_name(rv));
            }
            st.raise(Schema, "creates an index");
            if i.concurrent {
                st.lock = Some(LockMode::ShareUpdateExclusive);
            } else {
                st.lock = Some(LockMode::Share);
                st.finding("require-concurrent-index-creation");
            }
        }
        NodeEnum::DropStmt(d) => drop(&mut st, d),
        NodeEnum::DropdbStmt(d) => {
            st.kind = "drop_database".into();
            st.tables.push(d.dbname.clone());
            st.finding("ban-drop-database");
            st.raise(Destructive, "drops a database");
        }
        NodeEnum::AlterTableStmt(a) => alter_table(an, &mut st, a),
        NodeEnum::RenameStmt(r) => {
            let obj = object_name(r.rename_type);
            st.kind = format!("rename_{obj}");
            if let Some(rv) = &r.relation {
                st.tables.push(range_name(rv));
            }
            st.lock = Some(if obj == "index" {
                LockMode::ShareUpdateExclusive
            } else {
                LockMode::AccessExclusive
            });
            st.raise(Schema, format!("renames a {obj}"));
            match obj {
                "column" => st.finding("renaming-column"),
                "table" => st.finding("renaming-table"),
                _ => {}
            }
        }
        NodeEnum::VacuumStmt(v) => {
            st.tables = v
                .rels
                .iter()
                .filter_map(|r| match r.node.as_ref()? {
                    NodeEnum::VacuumRelation(vr) => vr.relation.as_ref().map(range_name),
                    _ => None,
                })
                .collect();
            if v.is_vacuumcmd && defelem_on(&v.options, "full") {
                st.kind = "vacuum_full".into();
                st.lock = Some(LockMode::AccessExclusive);
                st.finding("table-rewrite");
                st.raise(Schema, "VACUUM FULL rewrites the table");
            } else {
                st.kind = if v.is_vacuumcmd { "vacuum" } else { "analyze" }.into();
                st.lock = Some(LockMode::ShareUpdateExclusive);
                if v.is_vacuumcmd && defelem_on(&v.options, "freeze") {
                    st.finding("vacuum-freeze");
                }
                st.raise(
                    Write,
                    "maintenance that updates visibility data and statistics",
                );
            }
        }
        NodeEnum::ReindexStmt(r) => {
            st.kind = "reindex".into();
            if let Some(rv) = &r.relation {
                st.tables.push(range_name(rv));
            } else if !r.name.is_empty() {
                st.tables.push(r.name.clone());
            }
            st.raise(Schema, "rebuilds indexes");
            if defelem_on(&r.params, "concurrently") {
                st.concurrently = true;
                st.lock = Some(LockMode::ShareUpdateExclusive);
            } else {
                st.lock = Some(LockMode::AccessExclusive);
                st.finding("require-concurrent-reindex");
            }
        }
        NodeEnum::ClusterStmt(c) => {
            st.kind = "cluster".into();
            if let Some(rv) = &c.relation {
                st.tables.push(range_name(rv));
            }
            st.lock = Some(LockMode::AccessExclusive);
            st.finding("table-rewrite");
            st.raise(Schema, "CLUSTER rewrites the table");
        }
        NodeEnum::RefreshMatViewStmt(r) => {
            st.kind = "refresh_materialized_view".into();
            if let Some(rv) = &r.relation {
                st.tables.push(range_name(rv));
            }
            st.concurrently = r.concurrent;
            st.raise(Write, "recomputes the materialized view's rows");
            if r.concurrent {
                st.lock = Some(LockMode::Exclusive);
            } else {
                st.lock = Some(LockMode::AccessExclusive);
                st.finding("refresh-matview-blocks-reads");
            }
        }
        NodeEnum::CreateStmt(c) => {
            st.kind = "create_table".into();
            if let Some(rv) = &c.relation {
                st.tables.push(range_name(rv));
            }
            st.raise(Schema, "creates a table");
            if !c.inh_relations.is_empty() || c.partbound.is_some() {
                st.lock = Some(LockMode::AccessExclusive);
            }
        }
        NodeEnum::CreateTableAsStmt(c) => {
            st.kind = if c.objtype == ObjectType::ObjectMatview as i32 {
                "create_materialized_view"
            } else {
                "create_table_as"
            }
            .into();
            st.raise(Schema, "creates a relation from a query");
            if let Some(inner) = nested(an, c.query.as_deref(), depth) {
                st.raise(inner.risk, "and runs its query");
                st.tables = inner.tables;
            }
        }
        NodeEnum::ViewStmt(_) => simple(&mut st, "create_view", Schema, "creates a view"),
        NodeEnum::CreateSeqStmt(_) => {
            simple(&mut st, "create_sequence", Schema, "creates a sequence")
        }
        NodeEnum::AlterSeqStmt(a) => {
            simple(&mut st, "alter_sequence", Schema, "alters a sequence");
            if let Some(rv) = &a.sequence {
                st.tables.push(range_name(rv));
            }
            if has_defelem(&a.options, "restart") {
                st.finding("sequence-restart");
                st.raise(
                    Schema,
                    "RESTART moves the sequence back: new keys can collide with existing rows",
                );
            }
        }
        NodeEnum::CreateFunctionStmt(f) => {
            let what = if f.is_procedure {
                "procedure"
            } else {
                "function"
            };
            simple(
                &mut st,
                &format!("create_{what}"),
                Schema,
                &format!("creates a {what}"),
            );
            let language = defelem_str(&f.options, "language").unwrap_or(if f.sql_body.is_some() {
                "sql"
            } else {
                "c"
            });
            if !trusted_language(language) {
                st.raise(
                    Privilege,
                    format!("LANGUAGE {language} is not a trusted language: its code runs with the server's own rights"),
                );
            }
            function_options_privilege(&mut st, &f.options);
            if qualified_in_catalog(&f.funcname) {
                st.raise(
                    Privilege,
                    "creates a function in pg_catalog, where ward resolves every unqualified name",
                );
            }
        }
        NodeEnum::AlterFunctionStmt(f) => {
            simple(&mut st, "alter_function", Schema, "alters a function");
            function_options_privilege(&mut st, &f.actions);
        }
        NodeEnum::DefineStmt(d) => {
            let obj = object_name(d.kind);
            let obj = match ObjectType::try_from(d.kind) {
                Ok(ObjectType::ObjectAggregate) => "aggregate",
                Ok(ObjectType::ObjectOperator) => "operator",
                Ok(ObjectType::ObjectCollation) => "collation",
                _ => obj,
            };
            simple(
                &mut st,
                &format!("create_{obj}"),
                Schema,
                &format!("creates a {obj}, which changes what other statements do"),
            );
            if qualified_in_catalog(&d.defnames) {
                st.raise(
                    Privilege,
                    format!(
                        "creates a {obj} in pg_catalog, where ward resolves every unqualified name"
                    ),
                );
            }
        }
        NodeEnum::CreateCastStmt(_) => simple(
            &mut st,
            "create_cast",
            Schema,
            "creates a cast, which changes what other statements do",
        ),
        NodeEnum::RuleStmt(r) => {
            simple(
                &mut st,
                "create_rule",
                Schema,
                "creates a rule, which rewrites other statements on the table",
            );
            if let Some(rv) = &r.relation {
                st.tables.push(range_name(rv));
            }
            st.lock = Some(LockMode::AccessExclusive);
        }
        NodeEnum::CreateRangeStmt(_) => simple(&mut st, "create_type", Schema, "creates a type"),
        NodeEnum::CreateOpClassStmt(_)
        | NodeEnum::CreateOpFamilyStmt(_)
        | NodeEnum::AlterOpFamilyStmt(_)
        | NodeEnum::AlterOperatorStmt(_)
        | NodeEnum::AlterTypeStmt(_)
        | NodeEnum::CreateConversionStmt(_) => simple(
            &mut st,
            "alter_operator_or_type",
            Schema,
            "changes an operator, type or conversion, which changes what other statements do",
        ),
        NodeEnum::CreatePlangStmt(_) => simple(
            &mut st,
            "create_language",
            Privilege,
            "installs a procedural language",
        ),
        NodeEnum::CreateFdwStmt(_)
        | NodeEnum::AlterFdwStmt(_)
        | NodeEnum::CreateForeignServerStmt(_)
        | NodeEnum::AlterForeignServerStmt(_)
        | NodeEnum::CreateUserMappingStmt(_)
        | NodeEnum::AlterUserMappingStmt(_)
        | NodeEnum::DropUserMappingStmt(_)
        | NodeEnum::ImportForeignSchemaStmt(_)
        | NodeEnum::CreateForeignTableStmt(_) => simple(
            &mut st,
            "foreign_data",
            Privilege,
            "changes how the server reaches outside data (wrappers, servers, user mappings, foreign tables)",
        ),
        NodeEnum::CreateTransformStmt(_)
        | NodeEnum::CreateAmStmt(_)
        | NodeEnum::CreateTableSpaceStmt(_)
        | NodeEnum::CreateSubscriptionStmt(_)
        | NodeEnum::AlterSubscriptionStmt(_) => simple(
            &mut st,
            "server_object",
            Privilege,
            "creates or alters a server-level object (transform, access method, tablespace, subscription)",
        ),
        NodeEnum::CreateTrigStmt(t) => {
            simple(&mut st, "create_trigger", Schema, "creates a trigger");
            if let Some(rv) = &t.relation {
                st.tables.push(range_name(rv));
            }
            st.lock = Some(LockMode::ShareRowExclusive);
        }
        NodeEnum::CreateExtensionStmt(_) => simple(
            &mut st,
            "create_extension",
            Privilege,
            "installs an extension, whose script runs with elevated rights",
        ),
        NodeEnum::AlterExtensionStmt(_) => simple(
            &mut st,
            "alter_extension",
            Privilege,
            "upgrades an extension, whose script runs with elevated rights",
        ),
        NodeEnum::CreateSchemaStmt(_) => {
            simple(&mut st, "create_schema", Schema, "creates a schema")
        }
        NodeEnum::CreateStatsStmt(_) => {
            simple(
                &mut st,
                "create_statistics",
                Schema,
                "creates extended statistics",
            );
            st.lock = Some(LockMode::ShareUpdateExclusive);
        }
        NodeEnum::CommentStmt(_) => {
            simple(&mut st, "comment", Schema, "changes a comment");
            st.lock = Some(LockMode::ShareUpdateExclusive);
        }
        NodeEnum::CompositeTypeStmt(_)
        | NodeEnum::CreateEnumStmt(_)
        | NodeEnum::CreateDomainStmt(_) => simple(&mut st, "create_type", Schema, "creates a type"),
        NodeEnum::AlterEnumStmt(_) => simple(&mut st, "alter_type", Schema, "alters an enum type"),
        NodeEnum::CreatedbStmt(_) => {
            simple(&mut st, "create_database", Schema, "creates a database")
        }
        NodeEnum::AlterDatabaseStmt(_)
        | NodeEnum::AlterDatabaseSetStmt(_)
        | NodeEnum::AlterDatabaseRefreshCollStmt(_) => simple(
            &mut st,
            "alter_database",
            Privilege,
            "changes database-wide settings",
        ),
        NodeEnum::GrantStmt(g) => {
            let kind = if g.is_grant { "grant" } else { "revoke" };
            simple(&mut st, kind, Privilege, "changes privileges");
        }
        NodeEnum::GrantRoleStmt(g) => {
            let kind = if g.is_grant {
                "grant_role"
            } else {
                "revoke_role"
            };
            simple(&mut st, kind, Privilege, "changes role membership");
        }
        NodeEnum::CreateRoleStmt(_) => simple(&mut st, "create_role", Privilege, "creates a role"),
        NodeEnum::AlterRoleStmt(_) => simple(&mut st, "alter_role", Privilege, "alters a role"),
        NodeEnum::AlterRoleSetStmt(_) => simple(
            &mut st,
            "alter_role_set",
            Privilege,
            "changes a role's settings",
        ),
        NodeEnum::DropRoleStmt(_) => simple(&mut st, "drop_role", Privilege, "drops a role"),
        NodeEnum::AlterDefaultPrivilegesStmt(_) => simple(
            &mut st,
            "alter_default_privileges",
            Privilege,
            "changes default privileges",
        ),
        NodeEnum::AlterOwnerStmt(_) => {
            simple(&mut st, "alter_owner", Privilege, "changes an owner")
        }
        NodeEnum::ReassignOwnedStmt(_) => {
            simple(&mut st, "reassign_owned", Privilege, "reassigns ownership")
        }
        NodeEnum::DropOwnedStmt(_) => simple(
            &mut st,
            "drop_owned",
            Destructive,
            "drops every object a role owns",
        ),
        NodeEnum::AlterSystemStmt(_) => simple(
            &mut st,
            "alter_system",
            Privilege,
            "changes server configuration",
        ),
        NodeEnum::CreatePolicyStmt(_) | NodeEnum::AlterPolicyStmt(_) => simple(
            &mut st,
            "row_security_policy",
            Privilege,
            "changes row-level security",
        ),
        NodeEnum::SecLabelStmt(_) => simple(
            &mut st,
            "security_label",
            Privilege,
            "changes a security label",
        ),
        NodeEnum::LoadStmt(_) => simple(
            &mut st,
            "load",
            Privilege,
            "loads a shared library into the server",
        ),
        NodeEnum::CreateEventTrigStmt(_) | NodeEnum::AlterEventTrigStmt(_) => simple(
            &mut st,
            "event_trigger",
            Privilege,
            "changes an event trigger",
        ),
        NodeEnum::CheckPointStmt(_) => simple(&mut st, "checkpoint", Write, "forces a checkpoint"),
        NodeEnum::DiscardStmt(d) => {
            simple(&mut st, "discard", Write, "discards session state");
            if d.target == pg_query::protobuf::DiscardMode::DiscardAll as i32 {
                st.raise(
                    Privilege,
                    "DISCARD ALL resets every setting, search_path and standard_conforming_strings included",
                );
            }
        }
        NodeEnum::NotifyStmt(_) | NodeEnum::ListenStmt(_) | NodeEnum::UnlistenStmt(_) => {
            simple(&mut st, "notify", Write, "changes notification state")
        }
        NodeEnum::PrepareStmt(_) | NodeEnum::DeallocateStmt(_) | NodeEnum::DeclareCursorStmt(_) => {
            simple(
                &mut st,
                "prepare",
                Unknown,
                "prepared statements and cursors hide what will run",
            )
        }
        _ => {
            st.kind = "unrecognized".into();
            st.raise(Unknown, "ward does not recognise this kind of statement");
        }
    }
    for name in &scan.json {
        let since = syntax_since(name);
        match an.options.server.as_ref().map(|f| f.version_num) {
            Some(v) if v >= since => {}
            Some(v) => st.raise(
                Unknown,
                format!("{name} is SQL/JSON syntax only from server version {since}; this server ({v}) looks it up as a function, which may be anyone's"),
            ),
            None => st.raise(
                Unknown,
                format!("{name} is SQL/JSON syntax only from server version {since}; on an older or unknown server it is a function lookup, which may be anyone's"),
            ),
        }
    }
    for schema in qualified_operator_schemas(text) {
        st.raise(
            Unknown,
            format!("uses an operator from schema {schema}, whose function may do anything"),
        );
    }
    if scan.cascade {
        st.raise(
            Destructive,
            "CASCADE also drops (or changes) every object that depends on it",
        );
    }
    if scan.signal_name && unscoped_signal(node) {
        st.finding("unscoped-signal");
        st.reasons.push(
            "signals every backend of a set: no single pid, application or user predicate".into(),
        );
    } else if scan.signal_name && multi_session_signal(node) {
        st.finding("multi-session-signal");
    }
    if let Some(reason) = unbounded_write(node) {
        st.finding("unbounded-write");
        st.raise(Destructive, reason);
    }
    st
}

/// The schemas of `OPERATOR(schema.op)` references other than pg_catalog,
/// as the server reads them (unquoted names folded to lowercase). Only
/// looked for when the word `operator` is in the text.
fn qualified_operator_schemas(text: &str) -> Vec<String> {
    if !contains_any_word_ci(text.as_bytes(), &["operator"]) {
        return Vec::new();
    }
    let Some(toks) = tokens(text) else {
        return vec!["(text that could not be scanned)".into()];
    };
    let mut found = Vec::new();
    for w in toks.windows(4) {
        if w[0].eq_ignore_ascii_case("operator") && w[1] == "(" && w[3] == "." {
            let schema = match w[2].strip_prefix('"').and_then(|q| q.strip_suffix('"')) {
                Some(quoted) => quoted.replace("\"\"", "\""),
                None => w[2].to_ascii_lowercase(),
            };
            if schema != "pg_catalog" && !found.contains(&schema) {
                found.push(schema);
            }
        }
    }
    found
}

/// Why an UPDATE or DELETE touches every row: it has no WHERE, or one that
/// does not limit the rows.
fn unbounded_reason(verb: &str, effect: &str, has_where: bool) -> String {
    if has_where {
        format!(
            "{verb} whose WHERE does not limit the rows (always true, or never reads the target) {effect} every row"
        )
    } else {
        format!("{verb} without WHERE {effect} every row")
    }
}

/// Why an UPDATE, DELETE or MERGE (top level or in a WITH clause) touches
/// every row of its target: no WHERE, or one that lets every row through
/// (`WHERE true`, `1=1`, `x = x`, `... OR true`, a predicate that never
/// reads the target).
fn unbounded_write(node: &NodeEnum) -> Option<String> {
    use pg_query::protobuf::{CmdType, WithClause};
    let ctes = |w: Option<&WithClause>| -> Option<String> {
        w?.ctes.iter().find_map(|c| match c.node.as_ref()? {
            NodeEnum::CommonTableExpr(c) => unbounded_write(c.ctequery.as_ref()?.node.as_ref()?),
            _ => None,
        })
    };
    match node {
        NodeEnum::UpdateStmt(u) => {
            let target = Target::of(u.relation.as_ref());
            match u.where_clause.as_deref() {
                Some(w) if limits(w, &target) => ctes(u.with_clause.as_ref()),
                w => Some(unbounded_reason("UPDATE", "rewrites", w.is_some())),
            }
        }
        NodeEnum::DeleteStmt(d) => {
            let target = Target::of(d.relation.as_ref());
            match d.where_clause.as_deref() {
                Some(w) if limits(w, &target) => ctes(d.with_clause.as_ref()),
                w => Some(unbounded_reason("DELETE", "removes", w.is_some())),
            }
        }
        NodeEnum::MergeStmt(m) => {
            let target = Target::of(m.relation.as_ref());
            let changes = m.merge_when_clauses.iter().any(|c| {
                matches!(c.node.as_ref(), Some(NodeEnum::MergeWhenClause(w))
                    if w.command_type == CmdType::CmdUpdate as i32 || w.command_type == CmdType::CmdDelete as i32)
            });
            let bounded = m
                .join_condition
                .as_deref()
                .is_some_and(|j| limits(j, &target));
            if changes && !bounded {
                Some(
                    "MERGE whose ON condition does not limit the target's rows changes every row"
                        .into(),
                )
            } else {
                ctes(m.with_clause.as_ref())
            }
        }
        NodeEnum::SelectStmt(s) => ctes(s.with_clause.as_ref()),
        NodeEnum::InsertStmt(i) => ctes(i.with_clause.as_ref()),
        _ => None,
    }
}

fn trusted_language(language: &str) -> bool {
    TRUSTED_LANGUAGES
        .iter()
        .any(|l| l.eq_ignore_ascii_case(language))
}

/// `SECURITY DEFINER` (the function runs as its owner) or `LEAKPROOF`
/// (trusted past row-level security) in a function's options.
fn function_options_privilege(st: &mut StatementAnalysis, options: &[pg_query::protobuf::Node]) {
    for o in options {
        if let Some(NodeEnum::DefElem(d)) = o.node.as_ref() {
            let on = match d.arg.as_ref().and_then(|a| a.node.as_ref()) {
                Some(NodeEnum::Boolean(b)) => b.boolval,
                Some(NodeEnum::Integer(i)) => i.ival != 0,
                _ => true,
            };
            match d.defname.as_str() {
                "security" if on => st.raise(
                    Risk::Privilege,
                    "SECURITY DEFINER runs the function with its owner's rights",
                ),
                "leakproof" if on => st.raise(
                    Risk::Privilege,
                    "LEAKPROOF functions are trusted past row-level security",
                ),
                _ => {}
            }
        }
    }
}

/// A name list (`schema.name`) whose schema is `pg_catalog`.
fn qualified_in_catalog(names: &[pg_query::protobuf::Node]) -> bool {
    names.len() >= 2
        && matches!(names[names.len() - 2].node.as_ref(), Some(NodeEnum::String(s)) if s.sval == "pg_catalog")
}

fn defelem_str<'a>(options: &'a [pg_query::protobuf::Node], name: &str) -> Option<&'a str> {
    options.iter().find_map(|o| match o.node.as_ref()? {
        NodeEnum::DefElem(d) if d.defname == name => match d.arg.as_ref()?.node.as_ref()? {
            NodeEnum::String(s) => Some(s.sval.as_str()),
            _ => None,
        },
        _ => None,
    })
}

fn has_defelem(options: &[pg_query::protobuf::Node], name: &str) -> bool {
    options
        .iter()
        .any(|o| matches!(o.node.as_ref(), Some(NodeEnum::DefElem(d)) if d.defname == name))
}

fn simple(st: &mut StatementAnalysis, kind: &str, risk: Risk, reason: &str) {
    st.kind = kind.into();
    st.raise(risk, reason);
}

/// A summary the caller lent, or one made here.
enum Summary<'a> {
    Lent(&'a pg_query::SummaryResult),
    Made(Box<pg_query::SummaryResult>),
}

impl std::ops::Deref for Summary<'_> {
    type Target = pg_query::SummaryResult;
    fn deref(&self) -> &pg_query::SummaryResult {
        match self {
            Summary::Lent(s) => s,
            Summary::Made(s) => s,
        }
    }
}

/// The statement's own summary, reusing the caller's when it has one.
fn summarize<'a>(text: &str, given: Option<&'a pg_query::SummaryResult>) -> Option<Summary<'a>> {
    match given {
        Some(s) => Some(Summary::Lent(s)),
        None => pg_query::summary(text, 0, -1)
            .ok()
            .map(|s| Summary::Made(Box::new(s))),
    }
}

fn select(
    an: &Analyzer,
    st: &mut StatementAnalysis,
    text: &str,
    _s: &SelectStmt,
    given: Option<&pg_query::SummaryResult>,
    scan: &Scan,
) {
    st.kind = "select".into();
    st.lock = Some(LockMode::AccessShare);
    // INTO in any arm of a set operation (`SELECT 1 AS a INTO t UNION
    // SELECT 2`) is CREATE TABLE AS to the server.
    if scan.into {
        st.kind = "select_into".into();
        st.raise(Risk::Schema, "SELECT INTO creates a table");
    }
    if let Some(summary) = summarize(text, given) {
        st.tables = summary_tables(&summary);
        let dml = summary.statement_types.iter().any(|t| {
            matches!(
                t.as_str(),
                "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt"
            )
        });
        if dml {
            st.lock = Some(LockMode::RowExclusive);
            st.raise(Risk::Write, "a data-modifying WITH clause writes rows");
        }
        apply_functions(an, st, &summary);
    } else {
        st.raise(Risk::Unknown, "could not summarize the query");
    }
    if scan.locking || has_locking_clause(text) {
        st.kind = "select_for_update".into();
        st.lock = st.lock.max(Some(LockMode::RowShare));
        st.raise(Risk::Write, "SELECT ... FOR UPDATE/SHARE locks rows");
    }
}

/// A locking clause anywhere in a SELECT (subqueries included): the keyword
/// FOR followed by UPDATE, SHARE, NO KEY or KEY SHARE, found among the
/// scanner's tokens (comments dropped), so literals and comments never count.
fn has_locking_clause(text: &str) -> bool {
    let Some(toks) = tokens(text) else {
        return true;
    };
    toks.windows(2).any(|w| {
        w[0].eq_ignore_ascii_case("FOR")
            && ["UPDATE", "SHARE", "NO", "KEY"]
                .iter()
                .any(|k| w[1].eq_ignore_ascii_case(k))
    })
}

fn dml(
    an: &Analyzer,
    st: &mut StatementAnalysis,
    text: &str,
    relation: Option<&pg_query::protobuf::RangeVar>,
    given: Option<&pg_query::SummaryResult>,
) {
    st.lock = Some(LockMode::RowExclusive);
    st.raise(
        Risk::Write,
        format!("{} changes rows", st.kind.to_uppercase()),
    );
    if let Some(summary) = summarize(text, given) {
        st.tables = summary_tables(&summary);
        apply_functions(an, st, &summary);
    }
    if let Some(rv) = relation {
        let name = range_name(rv);
        if !st.tables.contains(&name) {
            st.tables.insert(0, name);
        }
    }
}

fn copy(an: &Analyzer, st: &mut StatementAnalysis, c: &pg_query::protobuf::CopyStmt, depth: u8) {
    if let Some(rv) = &c.relation {
        st.tables.push(range_name(rv));
    }
    if c.is_program {
        st.kind = "copy_program".into();
        st.raise(
            Risk::Privilege,
            "COPY ... PROGRAM runs a shell command on the database server",
        );
        return;
    }
    if c.is_from {
        st.kind = "copy_from".into();
        st.lock = Some(LockMode::RowExclusive);
        st.raise(Risk::Write, "COPY FROM loads rows");
        if !c.filename.is_empty() {
            st.raise(
                Risk::Privilege,
                "COPY FROM a server file reads the server's file system",
            );
        }
        return;
    }
    st.kind = "copy_to".into();
    st.lock = Some(LockMode::AccessShare);
    if !c.filename.is_empty() {
        st.raise(
            Risk::Privilege,
            "COPY TO a server file writes to the server's file system",
        );
    }
    if c.query.is_some() {
        match nested(an, c.query.as_deref(), depth) {
            Some(inner) => {
                if inner.risk != Risk::ReadOnly {
                    st.raise(
                        inner.risk,
                        format!("its query is a {} statement", inner.kind),
                    );
                }
                st.tables = inner.tables;
                st.lock = st.lock.max(inner.lock);
            }
            None => st.raise(Risk::Unknown, "the query under COPY could not be analyzed"),
        }
    }
}

fn object_name(t: i32) -> &'static str {
    match ObjectType::try_from(t) {
        Ok(ObjectType::ObjectTable) => "table",
        Ok(ObjectType::ObjectIndex) => "index",
        Ok(ObjectType::ObjectColumn) => "column",
        Ok(ObjectType::ObjectView) => "view",
        Ok(ObjectType::ObjectMatview) => "materialized_view",
        Ok(ObjectType::ObjectSequence) => "sequence",
        Ok(ObjectType::ObjectSchema) => "schema",
        Ok(ObjectType::ObjectFunction) => "function",
        Ok(ObjectType::ObjectProcedure) => "procedure",
        Ok(ObjectType::ObjectTrigger) => "trigger",
        Ok(ObjectType::ObjectExtension) => "extension",
        Ok(ObjectType::ObjectType) => "type",
        Ok(ObjectType::ObjectDomain) => "domain",
        Ok(ObjectType::ObjectDatabase) => "database",
        Ok(ObjectType::ObjectTabconstraint) => "constraint",
        Ok(ObjectType::ObjectRole) => "role",
        Ok(ObjectType::ObjectPolicy) => "policy",
        Ok(ObjectType::ObjectForeignTable) => "foreign_table",
        Ok(ObjectType::ObjectStatisticExt) => "statistics",
        Ok(ObjectType::ObjectRule) => "rule",
        Ok(ObjectType::ObjectPublication) => "publication",
        Ok(ObjectType::ObjectSubscription) => "subscription",
        _ => "object",
    }
}

fn drop(st: &mut StatementAnalysis, d: &pg_query::protobuf::DropStmt) {
    let obj = object_name(d.remove_type);
    st.kind = format!("drop_{obj}");
    st.tables = node_names(&d.objects);
    st.lock = Some(LockMode::AccessExclusive);
    match obj {
        "table" | "foreign_table" => {
            st.finding("ban-drop-table");
            st.raise(Risk::Destructive, "drops a table and its data");
        }
        "schema" | "sequence" | "extension" | "database" | "publication" | "subscription" => st
            .raise(
                Risk::Destructive,
                format!("drops a {obj} and what depends on it"),
            ),
        "index" => {
            st.raise(Risk::Schema, "drops an index");
            if d.concurrent {
                st.concurrently = true;
                st.lock = Some(LockMode::ShareUpdateExclusive);
            } else {
                st.finding("require-concurrent-index-deletion");
            }
        }
        "role" | "policy" => st.raise(Risk::Privilege, format!("drops a {obj}")),
        _ => st.raise(Risk::Schema, format!("drops a {obj}")),
    }
    if matches!(obj, "function" | "procedure" | "type" | "domain") {
        st.lock = None;
    }
}

/// The table and columns of `sql` when it is one `ALTER TABLE` that sets
/// columns NOT NULL; `None` for anything else.
pub fn set_not_null_target(sql: &str) -> Option<super::NotNullTarget> {
    let parsed = pg_query::parse(sql, 0).ok()?;
    let [raw] = parsed.protobuf.stmts.as_slice() else {
        return None;
    };
    let Some(NodeEnum::AlterTableStmt(a)) = raw.stmt.as_ref()?.node.as_ref() else {
        return None;
    };
    if ObjectType::try_from(a.objtype) != Ok(ObjectType::ObjectTable) {
        return None;
    }
    let rv = a.relation.as_ref()?;
    let columns: Vec<String> = a
        .cmds
        .iter()
        .filter_map(|c| match c.node.as_ref()? {
            NodeEnum::AlterTableCmd(c)
                if AlterTableType::try_from(c.subtype) == Ok(AlterTableType::AtSetNotNull) =>
            {
                Some(c.name.clone())
            }
            _ => None,
        })
        .collect();
    if columns.is_empty() {
        return None;
    }
    Some(super::NotNullTarget {
        schema: (!rv.schemaname.is_empty()).then(|| rv.schemaname.clone()),
        table: rv.relname.clone(),
        columns,
    })
}

fn alter_table(an: &Analyzer, st: &mut StatementAnalysis, a: &pg_query::protobuf::AlterTableStmt) {
    let prefix = match ObjectType::try_from(a.objtype) {
        Ok(ObjectType::ObjectIndex) => "alter_index",
        Ok(ObjectType::ObjectSequence) => "alter_sequence",
        Ok(ObjectType::ObjectView) => "alter_view",
        Ok(ObjectType::ObjectMatview) => "alter_materialized_view",
        _ => "alter_table",
    };
    if let Some(rv) = &a.relation {
        st.tables.push(range_name(rv));
    }
    let cmds: Vec<&AlterTableCmd> = a
        .cmds
        .iter()
        .filter_map(|c| match c.node.as_ref()? {
            NodeEnum::AlterTableCmd(c) => Some(c.as_ref()),
            _ => None,
        })
        .collect();
    let mut suffixes = Vec::new();
    for cmd in &cmds {
        let (suffix, risk, lock) = alter_cmd(an, st, cmd);
        suffixes.push(suffix);
        st.raise(risk, format!("{prefix} {}", suffix.replace('_', " ")));
        st.lock = st.lock.max(Some(lock));
    }
    st.kind = match suffixes.as_slice() {
        [one] => format!("{prefix}_{one}"),
        _ => prefix.to_string(),
    };
}

/// One ALTER TABLE subcommand: its kind suffix, risk and lock, adding its
/// findings to `st`.
fn alter_cmd(
    an: &Analyzer,
    st: &mut StatementAnalysis,
    cmd: &AlterTableCmd,
) -> (&'static str, Risk, LockMode) {
    use LockMode::*;
    use Risk::*;
    let Ok(t) = AlterTableType::try_from(cmd.subtype) else {
        return ("unknown", Unknown, AccessExclusive);
    };
    match t {
        AlterTableType::AtAddColumn | AlterTableType::AtAddColumnToView => {
            if let Some(NodeEnum::ColumnDef(col)) = cmd.def.as_ref().and_then(|d| d.node.as_ref()) {
                let mut has_default = col.raw_default.is_some();
                let mut not_null = col.is_not_null;
                for c in &col.constraints {
                    if let Some(NodeEnum::Constraint(c)) = c.node.as_ref() {
                        match ConstrType::try_from(c.contype) {
                            Ok(ConstrType::ConstrDefault) => {
                                has_default = true;
                                if expr_is_volatile(an, c.raw_expr.as_deref()) {
                                    st.finding("adding-field-with-volatile-default");
                                }
                            }
                            Ok(ConstrType::ConstrNotnull) => not_null = true,
                            Ok(ConstrType::ConstrPrimary | ConstrType::ConstrUnique) => {
                                st.finding("disallowed-unique-constraint")
                            }
                            Ok(ConstrType::ConstrCheck | ConstrType::ConstrForeign)
                                if !c.skip_validation =>
                            {
                                st.finding("constraint-missing-not-valid")
                            }
                            _ => {}
                        }
                    }
                }
                if expr_is_volatile(an, col.raw_default.as_deref()) {
                    st.finding("adding-field-with-volatile-default");
                }
                if not_null && !has_default {
                    st.finding("adding-required-field");
                }
            }
            ("add_column", Schema, AccessExclusive)
        }
        AlterTableType::AtDropColumn => {
            st.finding("ban-drop-column");
            ("drop_column", Destructive, AccessExclusive)
        }
        AlterTableType::AtAlterColumnType => {
            st.finding("changing-column-type");
            ("alter_column_type", Schema, AccessExclusive)
        }
        AlterTableType::AtSetNotNull => {
            st.finding("set-not-null-scans-table");
            ("set_not_null", Schema, AccessExclusive)
        }
        AlterTableType::AtDropNotNull => ("drop_not_null", Schema, AccessExclusive),
        AlterTableType::AtColumnDefault => ("set_default", Schema, AccessExclusive),
        AlterTableType::AtAddConstraint => {
            let mut lock = AccessExclusive;
            if let Some(NodeEnum::Constraint(c)) = cmd.def.as_ref().and_then(|d| d.node.as_ref()) {
                lock = constraint_findings(st, c);
            }
            ("add_constraint", Schema, lock)
        }
        AlterTableType::AtValidateConstraint => {
            ("validate_constraint", Schema, ShareUpdateExclusive)
        }
        AlterTableType::AtDropConstraint => ("drop_constraint", Schema, AccessExclusive),
        AlterTableType::AtAddIndexConstraint => {
            ("add_constraint_using_index", Schema, AccessExclusive)
        }
        AlterTableType::AtChangeOwner => ("owner_to", Privilege, AccessExclusive),
        AlterTableType::AtSetStatistics => ("set_statistics", Schema, ShareUpdateExclusive),
        AlterTableType::AtSetRelOptions
        | AlterTableType::AtResetRelOptions
        | AlterTableType::AtReplaceRelOptions => {
            ("set_storage_parameters", Schema, ShareUpdateExclusive)
        }
        AlterTableType::AtClusterOn | AlterTableType::AtDropCluster => {
            ("cluster_on", Schema, ShareUpdateExclusive)
        }
        AlterTableType::AtEnableTrig
        | AlterTableType::AtEnableAlwaysTrig
        | AlterTableType::AtEnableReplicaTrig
        | AlterTableType::AtEnableTrigAll
        | AlterTableType::AtEnableTrigUser => ("enable_trigger", Schema, ShareRowExclusive),
        AlterTableType::AtDisableTrig
        | AlterTableType::AtDisableTrigAll
        | AlterTableType::AtDisableTrigUser => {
            st.finding("disable-trigger");
            ("disable_trigger", Schema, ShareRowExclusive)
        }
        AlterTableType::AtSetIdentity | AlterTableType::AtAddIdentity => {
            let restarts = match cmd.def.as_ref().and_then(|d| d.node.as_ref()) {
                Some(NodeEnum::List(l)) => has_defelem(&l.items, "restart"),
                Some(NodeEnum::Constraint(c)) => has_defelem(&c.options, "restart"),
                _ => false,
            };
            if restarts {
                st.finding("sequence-restart");
            }
            ("identity", Schema, AccessExclusive)
        }
        AlterTableType::AtAttachPartition => ("attach_partition", Schema, ShareUpdateExclusive),
        AlterTableType::AtDetachPartition | AlterTableType::AtDetachPartitionFinalize => {
            ("detach_partition", Schema, AccessExclusive)
        }
        AlterTableType::AtEnableRowSecurity
        | AlterTableType::AtDisableRowSecurity
        | AlterTableType::AtForceRowSecurity
        | AlterTableType::AtNoForceRowSecurity => ("row_security", Privilege, AccessExclusive),
        AlterTableType::AtSetTableSpace
        | AlterTableType::AtSetLogged
        | AlterTableType::AtSetUnLogged
        | AlterTableType::AtSetAccessMethod => {
            st.finding("table-rewrite");
            ("rewrite", Schema, AccessExclusive)
        }
        _ => ("other", Schema, AccessExclusive),
    }
}

/// Findings for ADD CONSTRAINT; returns the lock it takes on the table.
fn constraint_findings(st: &mut StatementAnalysis, c: &Constraint) -> LockMode {
    match ConstrType::try_from(c.contype) {
        Ok(ConstrType::ConstrForeign) => {
            if !c.skip_validation {
                st.finding("constraint-missing-not-valid");
            }
            if let Some(rv) = &c.pktable {
                st.tables.push(range_name(rv));
            }
            LockMode::ShareRowExclusive
        }
        Ok(ConstrType::ConstrCheck) => {
            if !c.skip_validation {
                st.finding("constraint-missing-not-valid");
            }
            LockMode::AccessExclusive
        }
        Ok(ConstrType::ConstrPrimary | ConstrType::ConstrUnique | ConstrType::ConstrExclusion) => {
            if c.indexname.is_empty() {
                st.finding("disallowed-unique-constraint");
            }
            LockMode::AccessExclusive
        }
        _ => LockMode::AccessExclusive,
    }
}

/// Whether a default expression calls a volatile function (which forces a
/// table rewrite when the column is added).
fn expr_is_volatile(an: &Analyzer, expr: Option<&pg_query::protobuf::Node>) -> bool {
    let Some(node) = expr.and_then(|n| n.node.as_ref()) else {
        return false;
    };
    match node {
        NodeEnum::FuncCall(f) => {
            let parts: Vec<&str> = f
                .funcname
                .iter()
                .filter_map(|n| match n.node.as_ref()? {
                    NodeEnum::String(s) => Some(s.sval.as_str()),
                    _ => None,
                })
                .collect();
            let (schema, name) = match parts.as_slice() {
                [name] => (None, *name),
                [schema, name] => (Some(*schema), *name),
                _ => return true,
            };
            let declared_pure = an.function_effect(Engine::Postgres, schema, name)
                == FunctionEffect::Pure
                && !matches!(schema, Some(s) if s != "pg_catalog");
            !(declared_pure && pg_is_nonvolatile(name))
                || f.args.iter().any(|a| expr_is_volatile(an, Some(a)))
        }
        NodeEnum::TypeCast(t) => expr_is_volatile(an, t.arg.as_deref()),
        NodeEnum::AExpr(e) => {
            expr_is_volatile(an, e.lexpr.as_deref()) || expr_is_volatile(an, e.rexpr.as_deref())
        }
        NodeEnum::AConst(_) | NodeEnum::SqlvalueFunction(_) => false,
        _ => false,
    }
}
