//! Statement analysis: what a piece of SQL is, how risky it is, which lock it
//! takes and what a careful DBA would warn about.
//!
//! Everything here is decided from the SQL text alone — never from what a
//! model or a runbook claims about it. Postgres SQL is parsed with the real
//! PostgreSQL grammar (libpg_query via `pg_query`); SQLite SQL with
//! sqlparser's SQLite dialect. Analysis is a pure function of its inputs.

mod findings;
mod functions;
pub mod params;
mod pg;
mod predicates;
mod sqlite;
pub(crate) mod walk;

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use findings::{FINDING_RULES, Finding, FindingRule};
pub use functions::FunctionEffect;
pub use pg::set_not_null_target;
pub use walk::SIGNAL_FUNCTIONS;

/// The table and the columns of an `ALTER TABLE ... ALTER COLUMN c SET NOT
/// NULL`, as written (the catalog checks whether a validated CHECK already
/// proves each column not null).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotNullTarget {
    pub schema: Option<String>,
    pub table: String,
    pub columns: Vec<String>,
}

impl NotNullTarget {
    /// The table as `to_regclass` reads it: every part a quoted identifier,
    /// so it resolves to exactly the relation the statement names.
    pub fn regclass(&self) -> String {
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        match &self.schema {
            Some(s) => format!("{}.{}", quote(s), quote(&self.table)),
            None => quote(&self.table),
        }
    }
}

/// Database engines ward can analyze and (later) run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Postgres,
    Sqlite,
}

impl Engine {
    pub const ALL: [Engine; 2] = [Engine::Postgres, Engine::Sqlite];

    pub fn name(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Sqlite => "sqlite",
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a statement can change. Ordered by [`Risk::rank`]:
/// `read_only` < `write` < `schema` < `destructive`; `privilege` ranks with
/// `destructive`, and `unknown` (unparseable, unrecognised, several
/// statements in one) is treated as `destructive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    ReadOnly,
    Write,
    Schema,
    Destructive,
    Privilege,
    Unknown,
}

impl Risk {
    pub const ALL: [Risk; 6] = [
        Risk::ReadOnly,
        Risk::Write,
        Risk::Schema,
        Risk::Destructive,
        Risk::Privilege,
        Risk::Unknown,
    ];

    /// The position of this class in the order of severity.
    pub fn rank(self) -> u8 {
        match self {
            Risk::ReadOnly => 0,
            Risk::Write => 1,
            Risk::Schema => 2,
            Risk::Destructive | Risk::Privilege | Risk::Unknown => 3,
        }
    }

    /// The more severe of two classes. On a tie of rank the more specific
    /// warning wins: `unknown` over `privilege` over `destructive`.
    pub fn max(self, other: Risk) -> Risk {
        let key = |r: Risk| {
            let tie = match r {
                Risk::Unknown => 2,
                Risk::Privilege => 1,
                _ => 0,
            };
            (r.rank(), tie)
        };
        if key(other) > key(self) { other } else { self }
    }

    /// This class raised (never lowered) by a declared one: a runbook may
    /// say a step is riskier than its SQL, never safer.
    pub fn raised_by(self, declared: Option<Risk>) -> Risk {
        match declared {
            Some(d) if d.rank() > self.rank() => d,
            _ => self,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Risk::ReadOnly => "read_only",
            Risk::Write => "write",
            Risk::Schema => "schema",
            Risk::Destructive => "destructive",
            Risk::Privilege => "privilege",
            Risk::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Risk> {
        Risk::ALL.into_iter().find(|r| r.name() == s)
    }
}

impl fmt::Display for Risk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// PostgreSQL table-level lock modes, weakest first (the documentation's
/// "Table-Level Lock Modes" list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LockMode {
    AccessShare,
    RowShare,
    RowExclusive,
    ShareUpdateExclusive,
    Share,
    ShareRowExclusive,
    Exclusive,
    AccessExclusive,
}

impl LockMode {
    pub const ALL: [LockMode; 8] = [
        LockMode::AccessShare,
        LockMode::RowShare,
        LockMode::RowExclusive,
        LockMode::ShareUpdateExclusive,
        LockMode::Share,
        LockMode::ShareRowExclusive,
        LockMode::Exclusive,
        LockMode::AccessExclusive,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LockMode::AccessShare => "ACCESS SHARE",
            LockMode::RowShare => "ROW SHARE",
            LockMode::RowExclusive => "ROW EXCLUSIVE",
            LockMode::ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            LockMode::Share => "SHARE",
            LockMode::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            LockMode::Exclusive => "EXCLUSIVE",
            LockMode::AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }

    /// Accepts `ACCESS EXCLUSIVE`, `access_exclusive` and `AccessExclusive`.
    pub fn parse(s: &str) -> Option<LockMode> {
        let norm: String = s
            .chars()
            .filter(|c| c.is_ascii_alphabetic())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        LockMode::ALL
            .into_iter()
            .find(|m| m.name().replace(' ', "") == norm)
    }

    /// What ordinary traffic this lock blocks while it is held: plain
    /// `SELECT`s take ACCESS SHARE, writes take ROW EXCLUSIVE.
    pub fn blocks(self) -> Vec<&'static str> {
        match self {
            LockMode::AccessExclusive => vec!["reads", "writes"],
            LockMode::Share | LockMode::ShareRowExclusive | LockMode::Exclusive => vec!["writes"],
            _ => vec![],
        }
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for LockMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// The analysis of one statement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatementAnalysis {
    pub sql: String,
    /// e.g. `select`, `create_index`, `alter_table_add_column`, `drop_table`.
    pub kind: String,
    pub risk: Risk,
    /// The strongest table-level lock it takes (Postgres only).
    pub lock: Option<LockMode>,
    /// What ordinary traffic waits while the statement runs: `reads`,
    /// `writes`. From the Postgres lock mode; for SQLite, every writer holds
    /// the database-wide write lock.
    pub blocks: Vec<&'static str>,
    /// Tables (or indexes) the statement touches, as written.
    pub tables: Vec<String>,
    /// `CREATE INDEX CONCURRENTLY`, `REINDEX ... CONCURRENTLY`, ...
    pub concurrently: bool,
    pub findings: Vec<Finding>,
    /// Why the risk is what it is, for people (e.g. "calls pg_terminate_backend()").
    pub reasons: Vec<String>,
}

impl StatementAnalysis {
    fn new(sql: &str, kind: impl Into<String>, risk: Risk) -> StatementAnalysis {
        StatementAnalysis {
            sql: sql.trim().to_string(),
            kind: kind.into(),
            risk,
            lock: None,
            blocks: Vec::new(),
            tables: Vec::new(),
            concurrently: false,
            findings: Vec::new(),
            reasons: Vec::new(),
        }
    }

    fn raise(&mut self, risk: Risk, reason: impl Into<String>) {
        self.risk = self.risk.max(risk);
        self.reasons.push(reason.into());
    }

    fn finding(&mut self, id: &'static str) {
        if !self.findings.iter().any(|f| f.rule == id) {
            self.findings.push(Finding::new(id));
        }
    }
}

/// The analysis of a piece of SQL (one runbook step, one `ward explain`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    pub engine: Engine,
    pub risk: Risk,
    pub statements: Vec<StatementAnalysis>,
    /// Set when the SQL did not parse: the parser's message and the byte
    /// offset into the SQL where it stopped, when known.
    pub parse_error: Option<ParseError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParseError {
    pub message: String,
    pub offset: Option<usize>,
}

impl Analysis {
    /// Every finding of every statement, in order, without repeats.
    pub fn findings(&self) -> Vec<&Finding> {
        let mut seen = BTreeSet::new();
        self.statements
            .iter()
            .flat_map(|s| &s.findings)
            .filter(|f| seen.insert(f.rule))
            .collect()
    }

    /// The strongest lock any statement takes.
    pub fn lock(&self) -> Option<LockMode> {
        self.statements.iter().filter_map(|s| s.lock).max()
    }

    pub fn kinds(&self) -> Vec<&str> {
        self.statements.iter().map(|s| s.kind.as_str()).collect()
    }

    pub fn tables(&self) -> Vec<&str> {
        let mut seen = BTreeSet::new();
        self.statements
            .iter()
            .flat_map(|s| &s.tables)
            .map(String::as_str)
            .filter(|t| seen.insert(*t))
            .collect()
    }

    /// Raises the whole and every statement to at least `risk` (never
    /// lowers), giving each statement `reason`: what a later look (the
    /// catalog, a failed lookup) found that the text did not show.
    pub fn raise(&mut self, risk: Risk, reason: &str) {
        self.risk = self.risk.max(risk);
        for st in &mut self.statements {
            st.raise(risk, reason);
        }
    }

    pub fn concurrently(&self) -> bool {
        !self.statements.is_empty() && self.statements.iter().all(|s| s.concurrently)
    }

    fn unparsed(engine: Engine, sql: &str, message: String, offset: Option<usize>) -> Analysis {
        let mut st = StatementAnalysis::new(sql, "unparsed", Risk::Unknown);
        st.reasons
            .push(format!("the SQL does not parse: {message}"));
        Analysis {
            engine,
            risk: Risk::Unknown,
            statements: vec![st],
            parse_error: Some(ParseError { message, offset }),
        }
    }

    fn from_statements(engine: Engine, mut statements: Vec<StatementAnalysis>) -> Analysis {
        let mut risk = statements
            .iter()
            .fold(Risk::ReadOnly, |acc, s| acc.max(s.risk));
        if statements.len() > 1 {
            // One gate verdict per statement: several statements in one step
            // could hide a write behind a read, so the whole is unknown.
            risk = Risk::Unknown;
            statements[0].finding("multiple-statements");
        }
        for st in &mut statements {
            st.blocks = match (engine, st.lock) {
                (_, Some(lock)) => lock.blocks(),
                (Engine::Sqlite, None) if st.risk != Risk::ReadOnly => vec!["writes"],
                _ => vec![],
            };
        }
        if statements.is_empty() {
            let mut st = StatementAnalysis::new("", "empty", Risk::Unknown);
            st.reasons.push("there is no statement".into());
            statements.push(st);
            risk = Risk::Unknown;
        }
        Analysis {
            engine,
            risk,
            statements,
            parse_error: None,
        }
    }
}

/// The lock a statement takes, in plain words, as `ward explain` and the TUI
/// say it: "ACCESS EXCLUSIVE — blocks reads and writes to orders until
/// done". `lock` is a lock mode's name; without one, a statement that still
/// blocks something holds SQLite's database-wide write lock. `None` when
/// there is nothing to say (a plain read).
pub fn lock_words(lock: Option<&str>, blocks: &[&str], tables: &[&str]) -> Option<String> {
    let mut what: Vec<&str> = Vec::new();
    for b in blocks {
        if !what.contains(b) {
            what.push(b);
        }
    }
    match lock {
        Some(lock) => {
            let target = if tables.is_empty() {
                "the table".to_string()
            } else {
                tables.join(", ")
            };
            let blocks = match what.as_slice() {
                [] => "does not block ordinary reads or writes".to_string(),
                [one] => format!("blocks {one} to {target} until done"),
                _ => format!("blocks reads and writes to {target} until done"),
            };
            Some(format!("{lock} — {blocks}"))
        }
        None if !what.is_empty() => Some(format!(
            "blocks {} (database-wide write lock)",
            what.join(" and ")
        )),
        None => None,
    }
}

/// The parse error of an analysis whose parser panicked (caught, and
/// answered as `unknown`).
pub const PARSER_PANICKED: &str = "the SQL parser failed on this text";

/// A key for "the same statement again": pg_query's fingerprint for Postgres
/// (ignores literal values, whitespace and comments); for SQLite, a hash of
/// the statement as sqlparser prints it back. `None` when it does not parse.
pub fn fingerprint(engine: Engine, sql: &str) -> Option<String> {
    match engine {
        Engine::Postgres => pg_query::fingerprint(sql, 0, 0).ok().map(|f| f.hex),
        Engine::Sqlite => {
            use std::hash::{Hash, Hasher};
            let stmts =
                sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::SQLiteDialect {}, sql)
                    .ok()?;
            let mut h = std::collections::hash_map::DefaultHasher::new();
            for s in stmts {
                s.to_string().hash(&mut h);
            }
            Some(format!("{:016x}", h.finish()))
        }
    }
}

/// Analysis settings that come from the repository (`ward.yaml`).
#[derive(Debug, Clone, Default)]
pub struct AnalyzerOptions {
    /// Functions the team declares pure (cannot modify anything), each
    /// schema-qualified as `schema.name`, exactly as the catalog spells the
    /// names (`reporting.order_totals`; a quoted `"Reporting"` is the
    /// schema `Reporting`). On Postgres only the exact, case-sensitive,
    /// qualified name matches; SQLite compares without case.
    pub pure_functions: BTreeSet<String>,
    /// The executor sets `lock_timeout` itself (runbook steps), so its absence
    /// in the SQL is not a finding.
    pub lock_timeout_managed: bool,
    /// What the connected server is, when there is one: SQL is read as that
    /// server reads it. `None`: text-only analysis, which assumes the worst.
    pub server: Option<ServerFacts>,
}

/// Facts about the target server that change how SQL is read, taken once
/// when a session connects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ServerFacts {
    /// `server_version_num`, e.g. 150004.
    pub version_num: u32,
    /// Installed extensions and the schema each lives in (`pg_extension`),
    /// for runbooks' `@extschema:NAME@`.
    pub extension_schemas: std::collections::BTreeMap<String, String>,
}

/// Classifies SQL for one engine. Cheap to share; analysis is pure.
#[derive(Debug, Clone, Default)]
pub struct Analyzer {
    pub options: AnalyzerOptions,
}

impl Analyzer {
    pub fn new(options: AnalyzerOptions) -> Analyzer {
        Analyzer { options }
    }

    /// Analyzes `sql`, which must already have ward's `:name` parameters
    /// replaced by positional ones (see [`params`]). Never panics.
    pub fn analyze(&self, engine: Engine, sql: &str) -> Analysis {
        // Parsers are third-party code fed untrusted text: a bug in one must
        // cost a conservative answer, never the process.
        let run = std::panic::AssertUnwindSafe(|| match engine {
            Engine::Postgres => pg::analyze(self, sql),
            Engine::Sqlite => sqlite::analyze(self, sql),
        });
        std::panic::catch_unwind(run).unwrap_or_else(|_| {
            Analysis::unparsed(
                engine,
                sql,
                "the SQL parser failed on this text".into(),
                None,
            )
        })
    }

    /// What calling `name` (optionally `schema`-qualified) can do. On
    /// Postgres the names are exact, as the parser or the catalog gives them
    /// (unquoted identifiers already folded to lowercase): `"PG_CATALOG"` is
    /// not `pg_catalog`, and an unqualified name is a `pg_catalog` function,
    /// so it never matches a `pure_functions` entry.
    pub fn function_effect(
        &self,
        engine: Engine,
        schema: Option<&str>,
        name: &str,
    ) -> FunctionEffect {
        let declared = match engine {
            Engine::Postgres => {
                schema.is_some_and(|s| self.options.pure_functions.contains(&format!("{s}.{name}")))
            }
            Engine::Sqlite => {
                let wanted = match schema {
                    Some(s) => format!("{s}.{name}"),
                    None => name.to_string(),
                };
                self.options
                    .pure_functions
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(&wanted))
            }
        };
        if declared {
            return FunctionEffect::Pure;
        }
        functions::effect(engine, schema, name)
    }
}

#[cfg(test)]
mod tests;
