//! Every name a Postgres statement can make the server look up in its
//! catalog: relations, functions (aggregates included), operators and types.
//!
//! The walk is over the whole raw parse tree, serialized generically, so a
//! node kind this file never heard of cannot hide a name from it: any
//! `FuncCall`, `AExpr`, `RangeVar`, `TypeName`, ... anywhere is found.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;

/// A name as written: optionally schema-qualified, case as the parser left
/// it (unquoted identifiers folded to lowercase, quoted ones kept).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct QualName {
    pub schema: Option<String>,
    pub name: String,
}

impl QualName {
    fn from_parts(parts: &[String]) -> Option<QualName> {
        match parts {
            [name] => Some(QualName {
                schema: None,
                name: name.clone(),
            }),
            [schema, name] => Some(QualName {
                schema: Some(schema.clone()),
                name: name.clone(),
            }),
            // catalog.schema.name: the catalog must be the current
            // database, so the schema and name are what matter.
            [_, schema, name] => Some(QualName {
                schema: Some(schema.clone()),
                name: name.clone(),
            }),
            _ => None,
        }
    }
}

impl std::fmt::Display for QualName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// The names one statement (or view definition) refers to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct References {
    pub relations: BTreeSet<QualName>,
    pub functions: BTreeSet<QualName>,
    pub operators: BTreeSet<QualName>,
    pub types: BTreeSet<QualName>,
}

/// Operators a statement uses without naming them: `IN`, `CASE x WHEN`,
/// `DISTINCT`, `ORDER BY`, `GROUP BY`, `BETWEEN`, joins with `USING`, `LIKE`.
/// Looked up always, so a planted one of the same name cannot hide.
const IMPLICIT_OPERATORS: [&str; 10] = ["=", "<>", "<", ">", "<=", ">=", "~~", "~~*", "!~~", "~"];

impl References {
    /// The names in `sql`, or `None` when it does not parse.
    pub fn of(sql: &str) -> Option<References> {
        let parsed = pg_query::parse(sql, 0).ok()?;
        let tree = serde_json::to_value(&parsed.protobuf).ok()?;
        let mut refs = References::default();
        refs.walk(&tree, 0);
        for op in IMPLICIT_OPERATORS {
            refs.operators.insert(QualName {
                schema: None,
                name: op.to_string(),
            });
        }
        Some(refs)
    }

    fn walk(&mut self, v: &Value, depth: usize) {
        // The parser itself refuses deeper nesting long before this.
        if depth > 10_000 {
            return;
        }
        match v {
            Value::Array(items) => items.iter().for_each(|i| self.walk(i, depth + 1)),
            Value::Object(map) => {
                self.node(v);
                for (key, inner) in map {
                    for name in syntax_functions(key) {
                        self.functions.insert(QualName {
                            schema: None,
                            name: (*name).to_string(),
                        });
                    }
                    self.walk(inner, depth + 1);
                }
            }
            _ => {}
        }
    }

    /// Takes the names out of one node, recognised by its shape: a node can
    /// sit in a list (wrapped, keyed by its kind) or directly in a field
    /// (`relation`, `type_name`), and either way has the same members.
    fn node(&mut self, v: &Value) {
        let has = |k: &str| v.get(k).is_some();
        let list = |field: &str| names(v.get(field));
        if has("relname") && has("inh") {
            let name = str_field(v, "relname");
            if !name.is_empty() {
                let schema = str_field(v, "schemaname");
                self.relations.insert(QualName {
                    schema: (!schema.is_empty()).then(|| schema.to_string()),
                    name: name.to_string(),
                });
            }
        }
        if has("funcname") {
            self.add_fn(&list("funcname"));
        }
        // TABLESAMPLE method: a handler function looked up by name.
        if has("method") && has("repeatable") {
            self.add_fn(&list("method"));
        }
        if has("names")
            && has("typemod")
            && let Some(q) = QualName::from_parts(&list("names"))
        {
            self.types.insert(q);
        }
        if has("lexpr") && has("rexpr") && has("name") {
            self.add_op(&list("name"));
        }
        for field in ["oper_name", "use_op", "opname"] {
            if has(field) {
                self.add_op(&list(field));
            }
        }
    }

    fn add_fn(&mut self, parts: &[String]) {
        if let Some(q) = QualName::from_parts(parts) {
            self.functions.insert(q);
        }
    }

    fn add_op(&mut self, parts: &[String]) {
        // Keyword "operators" (BETWEEN, SIMILAR ...) are not catalog names;
        // the comparisons they stand for are among the implicit ones.
        if parts
            .last()
            .is_some_and(|p| p.chars().any(|c| c.is_ascii_alphabetic()))
        {
            return;
        }
        if let Some(q) = QualName::from_parts(parts) {
            self.operators.insert(q);
        }
    }
}

/// Syntax that this parser knows and an older server reads as a call of a
/// function by that name (SQL/JSON arrived in PostgreSQL 16 and 17): the
/// names are looked up as functions too, so one planted under such a name
/// is seen.
fn syntax_functions(node_kind: &str) -> &'static [&'static str] {
    match node_kind {
        "JsonScalarExpr" => &["json_scalar"],
        "JsonSerializeExpr" => &["json_serialize"],
        "JsonParseExpr" => &["json"],
        "JsonFuncExpr" => &["json_value", "json_query", "json_exists"],
        "JsonTable" => &["json_table"],
        "JsonObjectConstructor" => &["json_object"],
        "JsonArrayConstructor" | "JsonArrayQueryConstructor" => &["json_array"],
        "JsonObjectAgg" => &["json_objectagg"],
        "JsonArrayAgg" => &["json_arrayagg"],
        "JsonIsPredicate" => &["json_is"],
        "MergeSupportFunc" => &["merge_action"],
        _ => &[],
    }
}

fn str_field<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or("")
}

/// The strings of a list of `String` nodes (`[{"node": {"String": {"sval": ..}}}]`).
fn names(v: Option<&Value>) -> Vec<String> {
    let Some(Value::Array(items)) = v else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|n| {
            n.get("node")?
                .get("String")?
                .get("sval")?
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(schema: Option<&str>, name: &str) -> QualName {
        QualName {
            schema: schema.map(str::to_string),
            name: name.to_string(),
        }
    }

    #[test]
    fn names_are_found_wherever_the_parser_puts_them() {
        let r = References::of(
            "SELECT ARRAY[evil(1)], x === 2, (SELECT public.f() FROM s.t), \
             '1'::\"MyType\", count(DISTINCT a) FILTER (WHERE b OPERATOR(public.~~~) c) \
             FROM pg_stat_activity JOIN LATERAL g() ON true ORDER BY 1 USING <",
        )
        .expect("parses");
        let fns: Vec<String> = r.functions.iter().map(ToString::to_string).collect();
        assert_eq!(fns, ["count", "evil", "g", "public.f"]);
        assert!(r.relations.contains(&q(None, "pg_stat_activity")));
        assert!(r.relations.contains(&q(Some("s"), "t")));
        assert!(r.operators.contains(&q(None, "===")));
        assert!(r.operators.contains(&q(Some("public"), "~~~")));
        assert!(r.types.contains(&q(None, "MyType")));
    }

    #[test]
    fn quoted_names_keep_their_case() {
        let r = References::of("SELECT \"PG_CATALOG\".now(), \"Reporting\".\"Totals\"()")
            .expect("parses");
        assert!(r.functions.contains(&q(Some("PG_CATALOG"), "now")));
        assert!(r.functions.contains(&q(Some("Reporting"), "Totals")));
    }

    #[test]
    fn sql_json_syntax_is_looked_up_as_the_function_an_older_server_calls() {
        let r =
            References::of("SELECT json_scalar(1), json_serialize('{}'::json)").expect("parses");
        assert!(r.functions.contains(&q(None, "json_scalar")));
        assert!(r.functions.contains(&q(None, "json_serialize")));
    }

    #[test]
    fn unparseable_sql_has_no_references() {
        assert_eq!(References::of("SELEC nope"), None);
    }
}
