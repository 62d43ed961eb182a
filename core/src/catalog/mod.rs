//! Catalog-aware classification: what a statement's names resolve to on the
//! target, and whether any of it can run code that changes something.
//!
//! In PostgreSQL the catalog decides what a `SELECT` does: a view can call
//! `pg_terminate_backend`, an operator or aggregate can be anyone's
//! function, a domain's CHECK or a type's input function runs on every
//! value. The text-only analysis (`crate::sql`) cannot see any of that, so
//! before a read-only verdict stands, every name is resolved against the
//! live catalog in one round trip (`lookup.sql`) and [`refine`] keeps the
//! statement `read_only` only when everything it reaches is provably
//! harmless: objects that are the server's own (oid below 16384), plain
//! tables and materialized views, and views whose every dependency is
//! itself admissible. Anything else makes the statement `unknown`, so a
//! human must approve it.
//!
//! This module only ever raises a class, never lowers one. Objects with an
//! oid below 16384 are trusted as shipped: a superuser who rewrites a
//! built-in function in place is stopped by the least-privileged read role
//! ward executes as, not by this module.

pub mod not_null;
pub mod refs;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::sql::{Analysis, Analyzer, Engine, Risk};
pub use refs::{QualName, References};

/// The query behind [`Facts`]; `$1` is [`request`]'s JSON.
pub const LOOKUP_SQL: &str = include_str!("lookup.sql");

/// The first oid PostgreSQL hands out after initdb: below it, the server's
/// own objects.
pub const FIRST_NORMAL_OID: i64 = 16384;

/// Extension functions ward trusts to only read: (extension, functions).
/// Trusted only when the function is a member of that extension and is C
/// code from the extension's own library.
const TRUSTED_EXTENSION_FUNCTIONS: &[(&str, &[&str])] = &[
    (
        "pg_stat_statements",
        &["pg_stat_statements", "pg_stat_statements_info"],
    ),
    (
        "pgstattuple",
        &[
            "pgstattuple",
            "pgstattuple_approx",
            "pgstatindex",
            "pgstatginindex",
            "pgstathashindex",
            "pg_relpages",
        ],
    ),
    (
        "pg_buffercache",
        &[
            "pg_buffercache_pages",
            "pg_buffercache_summary",
            "pg_buffercache_usage_counts",
        ],
    ),
];

/// The lookup's request for a statement's names.
pub fn request(refs: &References) -> String {
    let list = |names: &BTreeSet<QualName>| -> Vec<serde_json::Value> {
        names
            .iter()
            .map(|q| serde_json::json!({"schema": q.schema, "name": q.name}))
            .collect()
    };
    serde_json::json!({
        "relations": list(&refs.relations),
        "functions": list(&refs.functions),
        "operators": list(&refs.operators),
        "types": list(&refs.types),
    })
    .to_string()
}

/// A requested name and the object it resolved to.
#[derive(Debug, Clone, Deserialize)]
pub struct Hit {
    pub schema: Option<String>,
    pub name: String,
    pub oid: i64,
}

/// A requested function or operator name: how many of the server's own
/// objects have it, and the others that do.
#[derive(Debug, Clone, Deserialize)]
pub struct NameHit {
    pub schema: Option<String>,
    pub name: String,
    pub builtin: i64,
    pub oids: Vec<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Relation {
    pub oid: i64,
    pub schema: String,
    pub name: String,
    pub relkind: String,
    pub rls: bool,
    pub rules: bool,
    /// A table access method or an index operator class that is not the
    /// server's own.
    #[serde(default)]
    pub user_access_code: bool,
    /// A view's definition (`pg_get_viewdef`), when it was safe to deparse.
    pub definition: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Edge {
    pub from: i64,
    pub to: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Function {
    pub oid: i64,
    pub schema: String,
    pub name: String,
    pub volatility: String,
    pub language: String,
    pub probin: Option<String>,
    pub signature: String,
    pub extension: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Operator {
    pub oid: i64,
    pub schema: String,
    pub name: String,
    pub signature: String,
    pub function: String,
}

/// A type that is not the server's own, with what decides whether using
/// it can run code.
#[derive(Debug, Clone, Deserialize)]
pub struct Type {
    pub oid: i64,
    pub schema: String,
    pub name: String,
    pub typtype: String,
    pub io_builtin: bool,
    pub has_check: bool,
    pub range_builtin: bool,
    pub components: Vec<i64>,
}

/// What the lookup returned for one statement.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Facts {
    pub rel_hits: Vec<Hit>,
    pub relations: Vec<Relation>,
    pub edges: Vec<Edge>,
    pub rel_types: Vec<Edge>,
    pub view_functions: Vec<Edge>,
    pub view_operators: Vec<Edge>,
    pub fn_hits: Vec<NameHit>,
    pub functions: Vec<Function>,
    pub op_hits: Vec<NameHit>,
    pub operators: Vec<Operator>,
    pub ty_hits: Vec<Hit>,
    pub types: Vec<Type>,
    /// Functions and operators in pg_catalog that are not the server's own.
    pub planted_functions: Vec<Planted>,
    pub planted_operators: Vec<String>,
    /// User-defined casts between built-in types (they change what any
    /// expression over those types calls).
    pub bad_casts: Vec<String>,
}

/// A function in pg_catalog that is not the server's own: an unqualified
/// call of its name may reach it.
#[derive(Debug, Clone, Deserialize)]
pub struct Planted {
    pub name: String,
    pub language: String,
    pub probin: Option<String>,
    pub extension: Option<String>,
}

/// What one name resolved to, for `ward explain` and the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolution {
    /// relation, function, operator or type.
    pub kind: &'static str,
    /// As written in the SQL.
    pub name: String,
    /// What it is on the server, e.g. `pg_catalog.pg_stat_activity (view, built-in)`.
    pub resolved: String,
    /// Why it makes the statement not provably read-only; `None` when it is
    /// harmless.
    pub problem: Option<String>,
}

/// Why reading a relation or a value of a type is not provably harmless.
/// The wording is what `ward explain` shows and the log records as a
/// resolution's `problem`; a relation's problem names the path to the
/// harmful part (`a.v reads a.t has a column of type a.d, a domain ...`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Harm {
    #[error("views nest too deep to inspect")]
    NestsTooDeep,
    #[error("relation oid {oid} was not in the catalog lookup")]
    RelationNotLooked { oid: i64 },
    #[error("{name} is a foreign table: reading it runs its foreign-data wrapper")]
    ForeignTable { name: String },
    #[error("{name} has row-level security: its policies run on every read")]
    RowLevelSecurity { name: String },
    #[error("{name} has rules")]
    Rules { name: String },
    #[error(
        "{name} uses a table access method or an index operator class that is not the server's own (the planner and executor call it on reads)"
    )]
    AccessMethod { name: String },
    #[error("view {name} uses a type with code of its own, so ward did not deparse it")]
    ViewNotDeparsed { name: String },
    #[error("view {name}'s definition {reasons}")]
    ViewDefinition { name: String, reasons: String },
    #[error("view {name} {planted}")]
    ViewPlanted { name: String, planted: String },
    #[error("view {name} calls {problem}")]
    ViewCalls { name: String, problem: String },
    #[error("view {name} uses operator {signature} (not the server's own; runs {function})")]
    ViewOperator {
        name: String,
        signature: String,
        function: String,
    },
    #[error("{name} is a relation of kind `{kind}`")]
    RelationKind { name: String, kind: String },
    // The inner reason is part of the sentence (the path to the harm), so
    // it is shown here rather than left to a `source()` walk.
    #[error("{name} has a column of {why}")]
    Column { name: String, why: Box<Harm> },
    #[error("{name} reads {why}")]
    Reads { name: String, why: Box<Harm> },
    #[error("type oid {oid}, not in the catalog lookup")]
    TypeNotLooked { oid: i64 },
    #[error("{name}, nested too deep to inspect")]
    TypeNestsTooDeep { name: String },
    #[error("{name}, a pseudo-type")]
    PseudoType { name: String },
    #[error("{name}, a domain whose CHECK constraints run on every value")]
    DomainCheck { name: String },
    #[error("{name}, a range with functions of its own")]
    RangeFunctions { name: String },
    #[error("{name}, whose input/output functions are not the server's own")]
    TypeIo { name: String },
}

/// Decides, from the facts, which names are harmless.
struct Judge<'a> {
    facts: &'a Facts,
    analyzer: Analyzer,
    relations: HashMap<i64, &'a Relation>,
    functions: HashMap<i64, &'a Function>,
    operators: HashMap<i64, &'a Operator>,
    types: HashMap<i64, &'a Type>,
    planted_functions: BTreeSet<&'a str>,
    planted_operators: BTreeSet<&'a str>,
    memo: HashMap<i64, Result<(), Harm>>,
}

impl<'a> Judge<'a> {
    fn new(analyzer: &Analyzer, facts: &'a Facts) -> Judge<'a> {
        let functions: HashMap<i64, &Function> =
            facts.functions.iter().map(|f| (f.oid, f)).collect();
        // Inside view definitions, functions the catalog shows to be
        // trusted extension members, and the server's own stable or
        // immutable helpers outside pg_catalog (information_schema's), read
        // as pure.
        let mut options = analyzer.options.clone();
        for f in functions.values() {
            if trusted_extension_function(f) || (f.oid < FIRST_NORMAL_OID && f.volatility != "v") {
                options
                    .pure_functions
                    .insert(format!("{}.{}", f.schema, f.name));
            }
        }
        Judge {
            facts,
            analyzer: Analyzer::new(options),
            relations: facts.relations.iter().map(|r| (r.oid, r)).collect(),
            functions,
            operators: facts.operators.iter().map(|o| (o.oid, o)).collect(),
            types: facts.types.iter().map(|t| (t.oid, t)).collect(),
            // A trusted extension installed into pg_catalog (some guides
            // do that with pg_stat_statements) is not a plant.
            planted_functions: facts
                .planted_functions
                .iter()
                .filter(|p| {
                    !trusted_member(
                        p.extension.as_deref(),
                        &p.name,
                        &p.language,
                        p.probin.as_deref(),
                    )
                })
                .map(|p| p.name.as_str())
                .collect(),
            planted_operators: facts.planted_operators.iter().map(String::as_str).collect(),
            memo: HashMap::new(),
        }
    }

    /// Whether reading relation `oid` can only read.
    fn relation(&mut self, oid: i64, depth: usize) -> Result<(), Harm> {
        if let Some(done) = self.memo.get(&oid) {
            return done.clone();
        }
        if depth > 64 {
            return Err(Harm::NestsTooDeep);
        }
        // A cycle cannot make a view more harmful than its other parts.
        self.memo.insert(oid, Ok(()));
        let verdict = self.relation_uncached(oid, depth);
        self.memo.insert(oid, verdict.clone());
        verdict
    }

    fn relation_uncached(&mut self, oid: i64, depth: usize) -> Result<(), Harm> {
        let Some(rel) = self.relations.get(&oid).copied() else {
            return Err(Harm::RelationNotLooked { oid });
        };
        let name = format!("{}.{}", rel.schema, rel.name);
        match rel.relkind.as_str() {
            "f" => {
                return Err(Harm::ForeignTable { name });
            }
            "r" | "p" => {
                if rel.rls {
                    return Err(Harm::RowLevelSecurity { name });
                }
                if rel.rules {
                    return Err(Harm::Rules { name });
                }
            }
            _ => {}
        }
        if rel.user_access_code {
            return Err(Harm::AccessMethod { name });
        }
        match rel.relkind.as_str() {
            "f" | "r" | "p" => {}
            "v" => {
                let Some(def) = &rel.definition else {
                    return Err(Harm::ViewNotDeparsed { name });
                };
                self.view_definition(&name, def)?;
                for e in self.facts.view_functions.iter().filter(|e| e.from == oid) {
                    if let Some(problem) = self.function_problem(e.to) {
                        return Err(Harm::ViewCalls { name, problem });
                    }
                }
                for e in self.facts.view_operators.iter().filter(|e| e.from == oid) {
                    if let Some(op) = self.operators.get(&e.to) {
                        return Err(Harm::ViewOperator {
                            name,
                            signature: op.signature.clone(),
                            function: op.function.clone(),
                        });
                    }
                }
            }
            "m" | "S" | "i" | "I" | "t" | "c" => {}
            other => {
                return Err(Harm::RelationKind {
                    name,
                    kind: other.to_string(),
                });
            }
        }
        let types: Vec<i64> = self
            .facts
            .rel_types
            .iter()
            .filter(|e| e.from == oid)
            .map(|e| e.to)
            .collect();
        for t in types {
            self.type_ok(t, 0).map_err(|why| Harm::Column {
                name: name.clone(),
                why: Box::new(why),
            })?;
        }
        let reached: Vec<i64> = self
            .facts
            .edges
            .iter()
            .filter(|e| e.from == oid)
            .map(|e| e.to)
            .collect();
        for child in reached {
            self.relation(child, depth + 1).map_err(|why| Harm::Reads {
                name: name.clone(),
                why: Box::new(why),
            })?;
        }
        Ok(())
    }

    /// A view's definition must itself be a read that calls only pure
    /// functions and no name planted in pg_catalog.
    fn view_definition(&self, name: &str, def: &str) -> Result<(), Harm> {
        let text = def.trim().trim_end_matches(';');
        let analysis = self.analyzer.analyze(Engine::Postgres, text);
        if analysis.risk != Risk::ReadOnly {
            let reasons: Vec<String> = analysis
                .statements
                .iter()
                .flat_map(|s| s.reasons.iter().cloned())
                .collect();
            return Err(Harm::ViewDefinition {
                name: name.to_string(),
                reasons: reasons.join("; "),
            });
        }
        if let Some(refs) = References::of(text)
            && let Some(p) = self.planted_in(&refs)
        {
            return Err(Harm::ViewPlanted {
                name: name.to_string(),
                planted: p,
            });
        }
        Ok(())
    }

    /// An unqualified function or operator name that a planted pg_catalog
    /// object answers to.
    fn planted_in(&self, refs: &References) -> Option<String> {
        for f in refs.functions.iter().filter(|f| f.schema.is_none()) {
            if self.planted_functions.contains(f.name.as_str()) {
                return Some(format!(
                    "calls {}(), and pg_catalog has a function of that name that is not the server's own",
                    f.name
                ));
            }
        }
        for o in refs.operators.iter().filter(|o| o.schema.is_none()) {
            if self.planted_operators.contains(o.name.as_str()) {
                return Some(format!(
                    "uses operator {}, and pg_catalog has an operator of that name that is not the server's own",
                    o.name
                ));
            }
        }
        None
    }

    /// Why calling function `oid` is not harmless, if it is not.
    fn function_problem(&self, oid: i64) -> Option<String> {
        if oid < FIRST_NORMAL_OID {
            return None;
        }
        let Some(f) = self.functions.get(&oid) else {
            return Some(format!("function oid {oid}, not the server's own"));
        };
        let declared = self
            .analyzer
            .options
            .pure_functions
            .contains(&format!("{}.{}", f.schema, f.name));
        if declared || trusted_extension_function(f) {
            return None;
        }
        Some(format!(
            "{} ({} function, not the server's own)",
            f.signature, f.language
        ))
    }

    /// Whether values of type `oid` can be read, compared and printed
    /// without running anyone's code.
    fn type_ok(&self, oid: i64, depth: usize) -> Result<(), Harm> {
        if oid < FIRST_NORMAL_OID {
            return Ok(());
        }
        let Some(t) = self.types.get(&oid) else {
            return Err(Harm::TypeNotLooked { oid });
        };
        let name = format!("type {}.{}", t.schema, t.name);
        if depth > 16 {
            return Err(Harm::TypeNestsTooDeep { name });
        }
        match t.typtype.as_str() {
            "e" => return Ok(()),
            "p" => return Err(Harm::PseudoType { name }),
            "d" if t.has_check => return Err(Harm::DomainCheck { name }),
            "r" | "m" if !t.range_builtin => return Err(Harm::RangeFunctions { name }),
            _ => {}
        }
        if !t.io_builtin {
            return Err(Harm::TypeIo { name });
        }
        for c in &t.components {
            self.type_ok(*c, depth + 1)?;
        }
        Ok(())
    }
}

fn trusted_extension_function(f: &Function) -> bool {
    trusted_member(
        f.extension.as_deref(),
        &f.name,
        &f.language,
        f.probin.as_deref(),
    )
}

/// Whether a function is one of [`TRUSTED_EXTENSION_FUNCTIONS`]: a member of
/// that extension, in C, from the extension's own library.
fn trusted_member(
    extension: Option<&str>,
    name: &str,
    language: &str,
    probin: Option<&str>,
) -> bool {
    let Some(ext) = extension else {
        return false;
    };
    TRUSTED_EXTENSION_FUNCTIONS.iter().any(|(e, names)| {
        *e == ext
            && names.contains(&name)
            && language == "c"
            && probin == Some(format!("$libdir/{ext}").as_str())
    })
}

fn hit_key(schema: &Option<String>, name: &str) -> (Option<String>, String) {
    (schema.clone(), name.to_string())
}

/// The analysis of one statement with what the catalog says of its names:
/// the class raised to `unknown` (with a reason per name) when anything it
/// reaches is not provably harmless; never lowered. Also every name's
/// resolution, for people.
pub fn refine(
    analyzer: &Analyzer,
    analysis: &Analysis,
    refs: &References,
    facts: &Facts,
) -> (Analysis, Vec<Resolution>) {
    let mut judge = Judge::new(analyzer, facts);
    let mut out: Vec<Resolution> = Vec::new();
    let rel_hits: BTreeMap<_, i64> = facts
        .rel_hits
        .iter()
        .map(|h| (hit_key(&h.schema, &h.name), h.oid))
        .collect();
    for q in &refs.relations {
        let resolution = match rel_hits.get(&hit_key(&q.schema, &q.name)) {
            None => Resolution {
                kind: "relation",
                name: q.to_string(),
                resolved: "nothing (not a relation ward can see; a CTE, or the statement fails)"
                    .into(),
                problem: None,
            },
            Some(oid) => {
                let resolved = describe_relation(facts, *oid);
                Resolution {
                    kind: "relation",
                    name: q.to_string(),
                    resolved,
                    problem: judge.relation(*oid, 0).err().map(|h| h.to_string()),
                }
            }
        };
        out.push(resolution);
    }
    let fn_hits: BTreeMap<_, &NameHit> = facts
        .fn_hits
        .iter()
        .map(|h| (hit_key(&h.schema, &h.name), h))
        .collect();
    for q in &refs.functions {
        let hit = fn_hits.get(&hit_key(&q.schema, &q.name));
        let schema = q.schema.as_deref().unwrap_or("pg_catalog");
        let (resolved, problem) = match hit {
            None => (format!("nothing in {schema} (the call fails)"), None),
            Some(h) => {
                let problems: Vec<String> = h
                    .oids
                    .iter()
                    .filter_map(|o| judge.function_problem(*o))
                    .collect();
                let mut what = Vec::new();
                if h.builtin > 0 {
                    what.push(format!("{schema}.{} (built-in)", q.name));
                }
                for o in &h.oids {
                    if let Some(f) = judge.functions.get(o) {
                        what.push(format!("{} (oid {})", f.signature, f.oid));
                    }
                }
                (
                    what.join(", "),
                    (!problems.is_empty())
                        .then(|| format!("{}() may resolve to {}", q, problems.join(", "))),
                )
            }
        };
        out.push(Resolution {
            kind: "function",
            name: q.to_string(),
            resolved,
            problem,
        });
    }
    let op_hits: BTreeMap<_, &NameHit> = facts
        .op_hits
        .iter()
        .map(|h| (hit_key(&h.schema, &h.name), h))
        .collect();
    for q in &refs.operators {
        let Some(h) = op_hits.get(&hit_key(&q.schema, &q.name)) else {
            continue;
        };
        let user: Vec<String> = h
            .oids
            .iter()
            .filter_map(|o| judge.operators.get(o))
            .map(|o| format!("{} (runs {})", o.signature, o.function))
            .collect();
        if user.is_empty() {
            // Built-in operators (most of them implicit) are not news.
            continue;
        }
        out.push(Resolution {
            kind: "operator",
            name: q.to_string(),
            resolved: user.join(", "),
            problem: (!user.is_empty())
                .then(|| format!("operator {q} may resolve to {}", user.join(", "))),
        });
    }
    let ty_hits: BTreeMap<_, i64> = facts
        .ty_hits
        .iter()
        .map(|h| (hit_key(&h.schema, &h.name), h.oid))
        .collect();
    for q in &refs.types {
        let Some(oid) = ty_hits.get(&hit_key(&q.schema, &q.name)) else {
            continue;
        };
        let resolved = match judge.types.get(oid) {
            Some(t) => format!("{}.{} (oid {})", t.schema, t.name, t.oid),
            None => "built-in".into(),
        };
        out.push(Resolution {
            kind: "type",
            name: q.to_string(),
            resolved,
            problem: judge.type_ok(*oid, 0).err().map(|h| h.to_string()),
        });
    }
    let mut problems: Vec<String> = out.iter().filter_map(|r| r.problem.clone()).collect();
    if let Some(p) = judge.planted_in(refs) {
        problems.push(format!("the statement {p}"));
    }
    for c in &facts.bad_casts {
        problems.push(format!(
            "the database has a user-defined cast between built-in types ({c}), which any expression may call"
        ));
    }
    let mut refined = analysis.clone();
    for p in &problems {
        refined.raise(Risk::Unknown, &format!("catalog: {p}"));
    }
    (refined, out)
}

fn describe_relation(facts: &Facts, oid: i64) -> String {
    let Some(r) = facts.relations.iter().find(|r| r.oid == oid) else {
        return format!("oid {oid}");
    };
    let kind = match r.relkind.as_str() {
        "r" => "table",
        "p" => "partitioned table",
        "v" => "view",
        "m" => "materialized view",
        "f" => "foreign table",
        "S" => "sequence",
        "i" | "I" => "index",
        _ => "relation",
    };
    let origin = if oid < FIRST_NORMAL_OID {
        "built-in"
    } else {
        "user"
    };
    format!("{}.{} ({kind}, {origin}, oid {oid})", r.schema, r.name)
}

#[cfg(test)]
mod tests;
