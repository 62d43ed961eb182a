//! Every name a Postgres statement can make the server look up in its
//! catalog: relations, functions (aggregates included), operators and types.
//!
//! The walk is the classifier's complete walk of the raw parse tree
//! (`sql::walk`), so a node kind this file never heard of cannot hide a name
//! from it: any `FuncCall`, `AExpr`, `RangeVar`, `TypeName`, ... anywhere is
//! found. It only collects names; what they resolve to is decided elsewhere.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::sql::walk::{Visit, walk};

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
        let mut refs = walk(&parsed.protobuf, Collect::default()).refs;
        for op in IMPLICIT_OPERATORS {
            refs.operators.insert(QualName {
                schema: None,
                name: op.to_string(),
            });
        }
        Some(refs)
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

/// The fields whose presence makes a node's shape. A node is recognised by
/// the fields it has, not by its type's name, so a node kind added to the
/// parser with the same members is read the same way.
const SHAPE_FIELDS: [&str; 13] = [
    "relname",
    "inh",
    "funcname",
    "method",
    "repeatable",
    "names",
    "typemod",
    "lexpr",
    "rexpr",
    "name",
    "oper_name",
    "use_op",
    "opname",
];

fn bit(field: &str) -> u16 {
    SHAPE_FIELDS
        .iter()
        .position(|f| *f == field)
        .map_or(0, |i| 1 << i)
}

/// Where the walk is: inside a struct, a list or an enum variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Struct,
    Seq,
    Variant(&'static str),
}

/// What one struct of the tree holds that could make it a named node.
#[derive(Debug, Default)]
struct Frame {
    /// The field being walked.
    field: &'static str,
    /// Which of [`SHAPE_FIELDS`] it has.
    has: u16,
    relname: String,
    schemaname: String,
    /// The names in its lists of `String` nodes, by field, in order.
    lists: Vec<(&'static str, String)>,
}

impl Frame {
    fn has(&self, field: &str) -> bool {
        self.has & bit(field) != 0
    }

    /// The strings of the list of `String` nodes in `field`.
    fn list(&self, field: &str) -> Vec<String> {
        self.lists
            .iter()
            .filter(|(f, _)| *f == field)
            .map(|(_, s)| s.clone())
            .collect()
    }
}

/// The visitor that takes the names out of a tree. A node can sit in a list
/// (wrapped in a `Node`, keyed by its kind) or directly in a field
/// (`relation`, `type_name`); either way its members are the same.
#[derive(Default)]
struct Collect {
    refs: References,
    steps: Vec<Step>,
    frames: Vec<Frame>,
}

impl Collect {
    /// Takes the names out of one node that ended, recognised by its shape.
    fn node(&mut self, f: &Frame) {
        let refs = &mut self.refs;
        if f.has("relname") && f.has("inh") && !f.relname.is_empty() {
            refs.relations.insert(QualName {
                schema: (!f.schemaname.is_empty()).then(|| f.schemaname.clone()),
                name: f.relname.clone(),
            });
        }
        if f.has("funcname") {
            refs.add_fn(&f.list("funcname"));
        }
        // TABLESAMPLE method: a handler function looked up by name.
        if f.has("method") && f.has("repeatable") {
            refs.add_fn(&f.list("method"));
        }
        if f.has("names")
            && f.has("typemod")
            && let Some(q) = QualName::from_parts(&f.list("names"))
        {
            refs.types.insert(q);
        }
        if f.has("lexpr") && f.has("rexpr") && f.has("name") {
            refs.add_op(&f.list("name"));
        }
        for field in ["oper_name", "use_op", "opname"] {
            if f.has(field) {
                refs.add_op(&f.list(field));
            }
        }
    }

    /// The frame whose list field holds the string being passed, when it is
    /// the `sval` of a `String` node that is an element of that list.
    fn listed_in(&mut self) -> Option<&mut Frame> {
        let [
            ..,
            Step::Struct,
            Step::Seq,
            Step::Struct,
            Step::Variant("String"),
            Step::Struct,
        ] = self.steps.as_slice()
        else {
            return None;
        };
        let [.., owner, node, string] = self.frames.as_mut_slice() else {
            return None;
        };
        (string.field == "sval" && node.field == "node").then_some(owner)
    }
}

impl Visit for Collect {
    fn enter_struct(&mut self, _name: &'static str) {
        self.steps.push(Step::Struct);
        self.frames.push(Frame::default());
    }

    fn field(&mut self, key: &'static str) {
        if let Some(f) = self.frames.last_mut() {
            f.field = key;
            f.has |= bit(key);
        }
    }

    fn leave_struct(&mut self) {
        self.steps.pop();
        if let Some(f) = self.frames.pop() {
            self.node(&f);
        }
    }

    fn enter_seq(&mut self) {
        self.steps.push(Step::Seq);
    }

    fn leave_seq(&mut self) {
        self.steps.pop();
    }

    fn enter_variant(&mut self, variant: &'static str) {
        for name in syntax_functions(variant) {
            self.refs.functions.insert(QualName {
                schema: None,
                name: (*name).to_string(),
            });
        }
        self.steps.push(Step::Variant(variant));
    }

    fn leave_variant(&mut self) {
        self.steps.pop();
    }

    fn str(&mut self, v: &str) {
        if self.steps.last() == Some(&Step::Struct)
            && let Some(f) = self.frames.last_mut()
        {
            match f.field {
                "relname" => f.relname = v.to_string(),
                "schemaname" => f.schemaname = v.to_string(),
                _ => {}
            }
        }
        if let Some(owner) = self.listed_in() {
            let field = owner.field;
            if matches!(
                field,
                "funcname" | "method" | "names" | "name" | "oper_name" | "use_op" | "opname"
            ) {
                owner.lists.push((field, v.to_string()));
            }
        }
    }
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
