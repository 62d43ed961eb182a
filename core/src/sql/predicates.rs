//! What a Postgres WHERE clause limits: whether an UPDATE/DELETE/MERGE
//! predicate really picks some rows of its target (or lets every row
//! through, like `WHERE true`, `x = x` or `... OR 1=1`), and whether a call
//! of a signal function is scoped to one backend, application or user.
//!
//! Both answers only ever err towards "unbounded" / "unscoped": a predicate
//! this module cannot read is not trusted to limit anything.

use pg_query::NodeEnum;
use pg_query::protobuf::{
    AExprKind, BoolExprType, BoolTestType, Node, NullTestType, SelectStmt, SubLinkType, a_const,
};

use super::walk::{SIGNAL_FUNCTIONS, Scan};

/// The names a column of the target can be qualified with: its alias, or
/// else its name (and `schema.name`).
pub(super) struct Target {
    names: Vec<String>,
    relname: Option<String>,
}

impl Target {
    pub fn of(rv: Option<&pg_query::protobuf::RangeVar>) -> Target {
        let mut names = Vec::new();
        if let Some(rv) = rv {
            match rv.alias.as_ref() {
                Some(a) if !a.aliasname.is_empty() => names.push(a.aliasname.clone()),
                _ => {
                    names.push(rv.relname.clone());
                    if !rv.schemaname.is_empty() {
                        names.push(format!("{}.{}", rv.schemaname, rv.relname));
                    }
                }
            }
        }
        Target {
            names,
            relname: rv.map(|r| r.relname.clone()),
        }
    }

    /// Whether a column reference (its name parts) may be a column of the
    /// target: unqualified, or qualified with the target's name.
    fn owns(&self, parts: &[String]) -> bool {
        match parts {
            [] => false,
            [_] => true,
            [q, _] => self.names.iter().any(|n| n == q),
            [s, r, ..] => {
                let two = format!("{s}.{r}");
                self.names.iter().any(|n| *n == two || n == s)
            }
        }
    }

    /// `col IN (SELECT col FROM target)`: every row whose `col` is not null.
    fn selects_itself(&self, s: &pg_query::protobuf::SubLink) -> bool {
        let last = |n: &Node| match kind(n) {
            Some(NodeEnum::ColumnRef(c)) => c.fields.last().and_then(|f| match kind(f)? {
                NodeEnum::String(s) => Some(s.sval.clone()),
                _ => None,
            }),
            _ => None,
        };
        if s.sub_link_type != SubLinkType::AnySublink as i32 {
            return false;
        }
        let (Some(test), Some(Some(NodeEnum::SelectStmt(sel)))) = (
            s.testexpr.as_deref(),
            s.subselect.as_deref().map(|n| n.node.as_ref()),
        ) else {
            return false;
        };
        let plain = sel.where_clause.is_none()
            && sel.having_clause.is_none()
            && sel.limit_count.is_none()
            && sel.limit_offset.is_none()
            && sel.group_clause.is_empty()
            && sel.target_list.len() == 1
            && sel.from_clause.len() == 1;
        if !plain {
            return false;
        }
        let same_table = matches!(kind(&sel.from_clause[0]), Some(NodeEnum::RangeVar(rv))
            if self.relname.as_deref() == Some(rv.relname.as_str()));
        let selected = match kind(&sel.target_list[0]) {
            Some(NodeEnum::ResTarget(r)) => r.val.as_deref().and_then(last),
            _ => None,
        };
        same_table && selected.is_some() && selected == last(test)
    }

    fn referenced_by(&self, node: &Node) -> bool {
        Scan::of(node).columns.iter().any(|c| self.owns(c))
    }
}

fn kind(node: &Node) -> Option<&NodeEnum> {
    node.node.as_ref()
}

/// Whether `pred` limits the target's rows to some of them. `false` for a
/// predicate that does not read the target at all (every row or none), one
/// that is always true (`x = x`, `x IS NULL OR x IS NOT NULL`), and an OR
/// with any arm that does not limit.
pub(super) fn limits(pred: &Node, target: &Target) -> bool {
    match kind(pred) {
        Some(NodeEnum::BoolExpr(b)) => match BoolExprType::try_from(b.boolop) {
            Ok(BoolExprType::AndExpr) => b.args.iter().any(|a| limits(a, target)),
            Ok(BoolExprType::OrExpr) => {
                b.args.iter().all(|a| limits(a, target)) && !has_complements(&b.args)
            }
            Ok(BoolExprType::NotExpr) => target.referenced_by(pred) && truth(pred) != Some(true),
            _ => false,
        },
        Some(NodeEnum::CurrentOfExpr(_)) => true,
        Some(NodeEnum::SubLink(s)) if target.selects_itself(s) => false,
        Some(_) => target.referenced_by(pred) && truth(pred) != Some(true),
        None => false,
    }
}

/// Two arms of an OR that together are always true: `p` and `NOT p`,
/// `x IS NULL` and `x IS NOT NULL`, `x IS TRUE` and `x IS NOT TRUE`, ...
fn has_complements(arms: &[Node]) -> bool {
    let mut nulls = Vec::new();
    let mut nots = Vec::new();
    let mut tests = Vec::new();
    let mut comparisons: Vec<(String, &str, String)> = Vec::new();
    for a in arms {
        match kind(a) {
            Some(NodeEnum::AExpr(e)) if e.kind == AExprKind::AexprOp as i32 => {
                if let (Some(l), Some(r), Some(op)) =
                    (e.lexpr.as_deref(), e.rexpr.as_deref(), op_name(&e.name))
                {
                    let (l, r) = (canon(l), canon(r));
                    // Written the other way round: `5 < x` is `x > 5`.
                    let flipped = match op {
                        "<" => ">",
                        ">" => "<",
                        "<=" => ">=",
                        ">=" => "<=",
                        other => other,
                    };
                    comparisons.push((r.clone(), flipped, l.clone()));
                    comparisons.push((l, op, r));
                }
            }
            Some(NodeEnum::NullTest(n)) => {
                if let Some(arg) = n.arg.as_deref() {
                    nulls.push((canon(arg), n.nulltesttype == NullTestType::IsNull as i32));
                }
            }
            Some(NodeEnum::BooleanTest(t)) => {
                if let Some(arg) = t.arg.as_deref() {
                    tests.push((canon(arg), t.booltesttype));
                }
            }
            Some(NodeEnum::BoolExpr(b)) if b.boolop == BoolExprType::NotExpr as i32 => {
                if let Some(arg) = b.args.first() {
                    nots.push(canon(arg));
                }
            }
            _ => {}
        }
    }
    let plain: Vec<String> = arms.iter().map(canon).collect();
    let pair = |x: i32, y: i32| {
        tests
            .iter()
            .any(|(e, t)| *t == x && tests.iter().any(|(f, u)| *u == y && e == f))
    };
    let opposite = |op: &str| match op {
        "=" => &["<>", "!="][..],
        "<>" | "!=" => &["="][..],
        "<" => &[">="][..],
        ">=" => &["<"][..],
        ">" => &["<="][..],
        "<=" => &[">"][..],
        _ => &[][..],
    };
    // `x > 5 OR x <= 5`: every row with a non-null x.
    let complementary = comparisons.iter().any(|(l, op, r)| {
        comparisons
            .iter()
            .any(|(l2, op2, r2)| l == l2 && r == r2 && opposite(op).contains(op2))
    });
    complementary
        || nulls
            .iter()
            .any(|(e, is)| nulls.iter().any(|(f, other)| e == f && is != other))
        || nots.iter().any(|n| plain.contains(n))
        || pair(BoolTestType::IsTrue as i32, BoolTestType::IsNotTrue as i32)
        || pair(
            BoolTestType::IsFalse as i32,
            BoolTestType::IsNotFalse as i32,
        )
        || pair(
            BoolTestType::IsUnknown as i32,
            BoolTestType::IsNotUnknown as i32,
        )
}

/// A node's shape without its source positions, to tell `x = x` apart.
fn canon(node: &Node) -> String {
    let s = format!("{node:?}");
    let mut out = String::with_capacity(s.len());
    let mut rest = s.as_str();
    while let Some(at) = rest.find("location: ") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "location: ".len()..];
        let digits = after
            .find(|c: char| !(c.is_ascii_digit() || c == '-'))
            .unwrap_or(after.len());
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// A constant value, as far as this module needs to compare them.
#[derive(Debug, Clone, PartialEq)]
enum Const {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
}

fn parse_bool(s: &str) -> Option<bool> {
    let v = s.trim().to_ascii_lowercase();
    if v.is_empty() {
        return None;
    }
    let is = |word: &str, min: usize| v.len() >= min && word.starts_with(v.as_str());
    if is("true", 1) || is("yes", 1) || v == "on" || v == "1" {
        Some(true)
    } else if is("false", 1) || is("no", 1) || is("off", 2) || v == "0" {
        Some(false)
    } else {
        None
    }
}

fn constant(node: &Node) -> Option<Const> {
    match kind(node)? {
        NodeEnum::AConst(c) => {
            if c.isnull {
                return Some(Const::Null);
            }
            Some(match c.val.as_ref()? {
                a_const::Val::Ival(i) => Const::Num(f64::from(i.ival)),
                a_const::Val::Fval(f) => Const::Num(f.fval.parse().ok()?),
                a_const::Val::Boolval(b) => Const::Bool(b.boolval),
                a_const::Val::Sval(s) => Const::Str(s.sval.clone()),
                a_const::Val::Bsval(b) => Const::Str(b.bsval.clone()),
            })
        }
        NodeEnum::TypeCast(t) => {
            let inner = constant(t.arg.as_deref()?)?;
            let ty = t
                .type_name
                .as_ref()
                .and_then(|tn| tn.names.last())
                .and_then(|n| match kind(n)? {
                    NodeEnum::String(s) => Some(s.sval.to_ascii_lowercase()),
                    _ => None,
                })
                .unwrap_or_default();
            Some(match (ty.as_str(), inner) {
                (_, Const::Null) => Const::Null,
                ("bool" | "boolean", Const::Str(s)) => Const::Bool(parse_bool(&s)?),
                ("bool" | "boolean", Const::Num(n)) => Const::Bool(n != 0.0),
                ("int2" | "int4" | "int8" | "numeric" | "float4" | "float8", Const::Str(s)) => {
                    Const::Num(s.trim().parse().ok()?)
                }
                ("text" | "varchar" | "bpchar" | "name", Const::Bool(b)) => {
                    Const::Str(if b { "true" } else { "false" }.into())
                }
                (_, c) => c,
            })
        }
        NodeEnum::CollateClause(c) => constant(c.arg.as_deref()?),
        _ => None,
    }
}

fn as_bool(c: &Const) -> Option<bool> {
    match c {
        Const::Bool(b) => Some(*b),
        Const::Str(s) => parse_bool(s),
        _ => None,
    }
}

fn cmp(a: &Const, b: &Const) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Const::Num(x), Const::Num(y)) => x.partial_cmp(y),
        (Const::Num(x), Const::Str(s)) => x.partial_cmp(&s.trim().parse::<f64>().ok()?),
        (Const::Str(s), Const::Num(y)) => s.trim().parse::<f64>().ok()?.partial_cmp(y),
        (Const::Bool(x), Const::Bool(y)) => Some(x.cmp(y)),
        (Const::Bool(x), Const::Str(s)) => Some(x.cmp(&parse_bool(s)?)),
        (Const::Str(s), Const::Bool(y)) => Some(parse_bool(s)?.cmp(y)),
        // Equality of text does not depend on the collation's order.
        (Const::Str(x), Const::Str(y)) if x == y => Some(std::cmp::Ordering::Equal),
        _ => None,
    }
}

fn op_name(names: &[Node]) -> Option<&str> {
    match kind(names.last()?)? {
        NodeEnum::String(s) => Some(s.sval.as_str()),
        _ => None,
    }
}

/// Whether a predicate is always true (`Some(true)`), always false, or
/// depends on the data (`None`).
fn truth(node: &Node) -> Option<bool> {
    use std::cmp::Ordering::*;
    match kind(node)? {
        NodeEnum::BoolExpr(b) => match BoolExprType::try_from(b.boolop).ok()? {
            BoolExprType::AndExpr => {
                let v: Vec<Option<bool>> = b.args.iter().map(truth).collect();
                if v.contains(&Some(false)) {
                    Some(false)
                } else if v.iter().all(|x| *x == Some(true)) {
                    Some(true)
                } else {
                    None
                }
            }
            BoolExprType::OrExpr => {
                let v: Vec<Option<bool>> = b.args.iter().map(truth).collect();
                if v.contains(&Some(true)) || has_complements(&b.args) {
                    Some(true)
                } else if v.iter().all(|x| *x == Some(false)) {
                    Some(false)
                } else {
                    None
                }
            }
            BoolExprType::NotExpr => truth(b.args.first()?).map(|t| !t),
            BoolExprType::Undefined => None,
        },
        NodeEnum::NullTest(n) => {
            let is_null = n.nulltesttype == NullTestType::IsNull as i32;
            match constant(n.arg.as_deref()?)? {
                Const::Null => Some(is_null),
                _ => Some(!is_null),
            }
        }
        NodeEnum::BooleanTest(t) => {
            let arg = t.arg.as_deref()?;
            let v = match constant(arg) {
                Some(Const::Null) => None,
                _ => Some(truth(arg)?),
            };
            Some(match BoolTestType::try_from(t.booltesttype).ok()? {
                BoolTestType::IsTrue => v == Some(true),
                BoolTestType::IsNotTrue => v != Some(true),
                BoolTestType::IsFalse => v == Some(false),
                BoolTestType::IsNotFalse => v != Some(false),
                BoolTestType::IsUnknown => v.is_none(),
                BoolTestType::IsNotUnknown => v.is_some(),
                BoolTestType::Undefined => return None,
            })
        }
        NodeEnum::AExpr(e) => {
            let l = e.lexpr.as_deref();
            let r = e.rexpr.as_deref();
            // Only worth comparing shapes when neither side is a constant.
            let same = matches!((l, r), (Some(l), Some(r))
                if constant(l).is_none() && constant(r).is_none() && canon(l) == canon(r));
            let consts = || Some((constant(l?)?, constant(r?)?));
            match AExprKind::try_from(e.kind).ok()? {
                AExprKind::AexprOp => {
                    let op = op_name(&e.name)?;
                    if same {
                        return match op {
                            "=" | "<=" | ">=" => Some(true),
                            "<>" | "!=" | "<" | ">" => Some(false),
                            _ => None,
                        };
                    }
                    let (a, b) = consts()?;
                    if a == Const::Null || b == Const::Null {
                        return None;
                    }
                    let o = cmp(&a, &b);
                    match op {
                        "=" => o.map(|o| o == Equal),
                        "<>" | "!=" => match o {
                            Some(o) => Some(o != Equal),
                            None if matches!((&a, &b), (Const::Str(_), Const::Str(_))) => {
                                Some(true)
                            }
                            None => None,
                        },
                        "<" => o.map(|o| o == Less),
                        ">" => o.map(|o| o == Greater),
                        "<=" => o.map(|o| o != Greater),
                        ">=" => o.map(|o| o != Less),
                        _ => None,
                    }
                }
                AExprKind::AexprNotDistinct | AExprKind::AexprDistinct => {
                    let not = e.kind == AExprKind::AexprNotDistinct as i32;
                    if same {
                        return Some(not);
                    }
                    let (a, b) = consts()?;
                    let eq = match (&a, &b) {
                        (Const::Null, Const::Null) => true,
                        (Const::Null, _) | (_, Const::Null) => false,
                        _ => cmp(&a, &b)? == Equal,
                    };
                    Some(eq == not)
                }
                AExprKind::AexprIn => {
                    let items = match kind(r?)? {
                        NodeEnum::List(list) => &list.items,
                        _ => return None,
                    };
                    let negated = op_name(&e.name) == Some("<>");
                    let lc = canon(l?);
                    if items.iter().any(|i| canon(i) == lc) {
                        return Some(!negated);
                    }
                    let a = constant(l?)?;
                    let mut all_known = true;
                    for i in items {
                        match constant(i).and_then(|b| cmp(&a, &b)) {
                            Some(Equal) => return Some(!negated),
                            Some(_) => {}
                            None => all_known = false,
                        }
                    }
                    all_known.then_some(negated)
                }
                AExprKind::AexprLike | AExprKind::AexprIlike => {
                    // `x LIKE '%'` lets every non-null row through.
                    match constant(r?)? {
                        Const::Str(p) if !p.is_empty() && p.chars().all(|c| c == '%') => {
                            Some(op_name(&e.name).is_some_and(|o| !o.starts_with('!')))
                        }
                        _ => None,
                    }
                }
                AExprKind::AexprBetween
                | AExprKind::AexprBetweenSym
                | AExprKind::AexprNotBetween
                | AExprKind::AexprNotBetweenSym => {
                    let negated = matches!(
                        AExprKind::try_from(e.kind),
                        Ok(AExprKind::AexprNotBetween | AExprKind::AexprNotBetweenSym)
                    );
                    let bounds = match kind(r?)? {
                        NodeEnum::List(list) if list.items.len() == 2 => &list.items,
                        _ => return None,
                    };
                    let lc = canon(l?);
                    if bounds.iter().all(|b| canon(b) == lc) {
                        return Some(!negated);
                    }
                    let x = constant(l?)?;
                    let lo = constant(&bounds[0])?;
                    let hi = constant(&bounds[1])?;
                    let inside = cmp(&x, &lo)? != Less && cmp(&x, &hi)? != Greater;
                    Some(inside != negated)
                }
                AExprKind::AexprOpAny => {
                    if op_name(&e.name)? != "=" {
                        return None;
                    }
                    let a = constant(l?)?;
                    match kind(r?)? {
                        NodeEnum::AArrayExpr(arr) => arr
                            .elements
                            .iter()
                            .any(|x| constant(x).and_then(|b| cmp(&a, &b)) == Some(Equal))
                            .then_some(true),
                        _ => None,
                    }
                }
                _ => None,
            }
        }
        NodeEnum::SubLink(s) if s.sub_link_type == SubLinkType::ExistsSublink as i32 => {
            match kind(s.subselect.as_deref()?)? {
                NodeEnum::SelectStmt(sel) => exists_always(sel),
                _ => None,
            }
        }
        NodeEnum::CoalesceExpr(c) => {
            for a in &c.args {
                if constant(a) == Some(Const::Null) {
                    continue;
                }
                return truth(a);
            }
            None
        }
        _ => as_bool(&constant(node)?),
    }
}

/// `EXISTS (SELECT 1)`: a subquery with no FROM and no limiting clause
/// always returns its row.
fn exists_always(sel: &SelectStmt) -> Option<bool> {
    let plain = sel.from_clause.is_empty()
        && sel.op == pg_query::protobuf::SetOperation::SetopNone as i32
        && sel.having_clause.is_none()
        && sel.limit_count.is_none()
        && sel.limit_offset.is_none()
        && sel.values_lists.is_empty();
    if !plain {
        return None;
    }
    match sel.where_clause.as_deref() {
        None => Some(true),
        Some(w) => truth(w).filter(|t| *t),
    }
}

/// Columns a signal may be scoped by: one backend, application or user.
const SCOPE_COLUMNS: [&str; 4] = ["pid", "application_name", "usename", "usesysid"];

/// Whether an expression is only constants and parameters.
fn is_fixed(node: &Node) -> bool {
    match kind(node) {
        Some(NodeEnum::AConst(_) | NodeEnum::ParamRef(_)) => true,
        Some(NodeEnum::TypeCast(t)) => t.arg.as_deref().is_some_and(is_fixed),
        Some(NodeEnum::NamedArgExpr(n)) => n.arg.as_deref().is_some_and(is_fixed),
        Some(NodeEnum::AArrayExpr(a)) => a.elements.iter().all(is_fixed),
        Some(NodeEnum::List(l)) => l.items.iter().all(is_fixed),
        Some(NodeEnum::AExpr(e)) if e.kind == AExprKind::AexprOp as i32 => {
            e.lexpr.as_deref().is_none_or(is_fixed) && e.rexpr.as_deref().is_some_and(is_fixed)
        }
        _ => false,
    }
}

fn scope_column(node: &Node, cols: &[&str]) -> bool {
    match kind(node) {
        Some(NodeEnum::ColumnRef(c)) => c.fields.last().is_some_and(
            |f| matches!(kind(f), Some(NodeEnum::String(s)) if cols.contains(&s.sval.as_str())),
        ),
        Some(NodeEnum::TypeCast(t)) => t.arg.as_deref().is_some_and(|a| scope_column(a, cols)),
        _ => false,
    }
}

/// A WHERE with, AND-ed at its top, `pid = $1`, `application_name IN
/// ('a','b')`, `usename = 'x'`, `pid = ANY($1)` or the like, on one of
/// `cols`; with `single`, only `col = <fixed>` counts (one value).
fn where_scopes(pred: Option<&Node>, cols: &[&str], single: bool) -> bool {
    let Some(pred) = pred else { return false };
    match kind(pred) {
        Some(NodeEnum::BoolExpr(b)) if b.boolop == BoolExprType::AndExpr as i32 => {
            b.args.iter().any(|a| where_scopes(Some(a), cols, single))
        }
        Some(NodeEnum::AExpr(e)) => {
            let (Some(l), Some(r)) = (e.lexpr.as_deref(), e.rexpr.as_deref()) else {
                return false;
            };
            let eq = op_name(&e.name) == Some("=");
            match AExprKind::try_from(e.kind) {
                Ok(AExprKind::AexprOp) if eq => {
                    (scope_column(l, cols) && is_fixed(r)) || (scope_column(r, cols) && is_fixed(l))
                }
                Ok(AExprKind::AexprIn | AExprKind::AexprOpAny) if eq && !single => {
                    scope_column(l, cols) && is_fixed(r)
                }
                _ => false,
            }
        }
        _ => false,
    }
}

/// Whether some call of `pg_terminate_backend`/`pg_cancel_backend` in the
/// statement runs over a set of rows without a scoping predicate.
pub(super) fn unscoped_signal(stmt: &NodeEnum) -> bool {
    let mut h = Hunt {
        cols: &SCOPE_COLUMNS,
        single: false,
        found: false,
    };
    walk_signals(stmt, false, &mut h);
    h.found
}

/// Whether some call of `pg_terminate_backend`/`pg_cancel_backend` in the
/// statement may reach more than one backend: it runs over a set of rows
/// that no `pid = <constant or parameter>` pins to one (a scope by
/// application or user still signals every session of it).
pub(super) fn multi_session_signal(stmt: &NodeEnum) -> bool {
    let mut h = Hunt {
        cols: &["pid"],
        single: true,
        found: false,
    };
    walk_signals(stmt, false, &mut h);
    h.found
}

/// What a walk over signal calls looks for: calls not scoped by a
/// predicate on `cols` (with `single`, an equality), found or not yet.
struct Hunt {
    cols: &'static [&'static str],
    single: bool,
    found: bool,
}

fn walk_node(node: &Node, scoped: bool, h: &mut Hunt) {
    if let Some(n) = kind(node) {
        walk_signals(n, scoped, h);
    }
}

fn walk_all(nodes: &[Node], scoped: bool, h: &mut Hunt) {
    for n in nodes {
        walk_node(n, scoped, h);
    }
}

fn walk_opt(node: Option<&Node>, scoped: bool, h: &mut Hunt) {
    if let Some(n) = node {
        walk_node(n, scoped, h);
    }
}

fn walk_signals(node: &NodeEnum, scoped: bool, h: &mut Hunt) {
    if h.found {
        return;
    }
    match node {
        NodeEnum::FuncCall(f) => {
            let is_signal = f.funcname.last().is_some_and(|n| {
                matches!(kind(n), Some(NodeEnum::String(s)) if SIGNAL_FUNCTIONS.contains(&s.sval.as_str()))
            });
            if is_signal && !scoped && !f.args.iter().all(is_fixed) {
                h.found = true;
            }
            walk_all(&f.args, scoped, h);
            walk_opt(f.agg_filter.as_deref(), scoped, h);
            walk_all(&f.agg_order, scoped, h);
            if let Some(w) = &f.over {
                walk_all(&w.partition_clause, scoped, h);
                walk_all(&w.order_clause, scoped, h);
            }
        }
        NodeEnum::SelectStmt(s) => walk_select(s, scoped, h),
        NodeEnum::ResTarget(r) => walk_opt(r.val.as_deref(), scoped, h),
        NodeEnum::AExpr(e) => {
            walk_opt(e.lexpr.as_deref(), scoped, h);
            walk_opt(e.rexpr.as_deref(), scoped, h);
        }
        NodeEnum::BoolExpr(b) => walk_all(&b.args, scoped, h),
        NodeEnum::SubLink(s) => {
            walk_opt(s.testexpr.as_deref(), scoped, h);
            walk_opt(s.subselect.as_deref(), scoped, h);
        }
        NodeEnum::TypeCast(t) => walk_opt(t.arg.as_deref(), scoped, h),
        NodeEnum::CollateClause(c) => walk_opt(c.arg.as_deref(), scoped, h),
        NodeEnum::NamedArgExpr(n) => walk_opt(n.arg.as_deref(), scoped, h),
        NodeEnum::AIndirection(a) => walk_opt(a.arg.as_deref(), scoped, h),
        NodeEnum::NullTest(n) => walk_opt(n.arg.as_deref(), scoped, h),
        NodeEnum::BooleanTest(n) => walk_opt(n.arg.as_deref(), scoped, h),
        NodeEnum::CaseExpr(c) => {
            walk_opt(c.arg.as_deref(), scoped, h);
            walk_all(&c.args, scoped, h);
            walk_opt(c.defresult.as_deref(), scoped, h);
        }
        NodeEnum::CaseWhen(w) => {
            walk_opt(w.expr.as_deref(), scoped, h);
            walk_opt(w.result.as_deref(), scoped, h);
        }
        NodeEnum::CoalesceExpr(c) => walk_all(&c.args, scoped, h),
        NodeEnum::MinMaxExpr(c) => walk_all(&c.args, scoped, h),
        NodeEnum::RowExpr(c) => walk_all(&c.args, scoped, h),
        NodeEnum::AArrayExpr(a) => walk_all(&a.elements, scoped, h),
        NodeEnum::List(l) => walk_all(&l.items, scoped, h),
        NodeEnum::SortBy(s) => walk_opt(s.node.as_deref(), scoped, h),
        NodeEnum::RangeSubselect(r) => walk_opt(r.subquery.as_deref(), false, h),
        NodeEnum::RangeFunction(r) => walk_all(&r.functions, false, h),
        NodeEnum::JoinExpr(j) => {
            walk_opt(j.larg.as_deref(), false, h);
            walk_opt(j.rarg.as_deref(), false, h);
            walk_opt(j.quals.as_deref(), false, h);
        }
        NodeEnum::CommonTableExpr(c) => walk_opt(c.ctequery.as_deref(), false, h),
        NodeEnum::ColumnRef(_)
        | NodeEnum::AConst(_)
        | NodeEnum::ParamRef(_)
        | NodeEnum::RangeVar(_)
        | NodeEnum::AStar(_)
        | NodeEnum::SqlvalueFunction(_) => {}
        // Anything this walk does not read: a signal name anywhere in it is
        // taken as an unscoped call.
        other => {
            if Scan::of(other).signal_name {
                h.found = true;
            }
        }
    }
}

fn walk_select(s: &SelectStmt, scoped: bool, h: &mut Hunt) {
    let own = where_scopes(s.where_clause.as_deref(), h.cols, h.single);
    let ctx = if s.from_clause.is_empty() && s.values_lists.is_empty() {
        scoped || own
    } else {
        own
    };
    walk_all(&s.target_list, ctx, h);
    walk_all(&s.from_clause, false, h);
    walk_opt(s.where_clause.as_deref(), false, h);
    walk_all(&s.group_clause, false, h);
    walk_opt(s.having_clause.as_deref(), false, h);
    walk_all(&s.sort_clause, false, h);
    walk_all(&s.values_lists, false, h);
    walk_all(&s.distinct_clause, false, h);
    walk_opt(s.limit_count.as_deref(), false, h);
    walk_opt(s.limit_offset.as_deref(), false, h);
    walk_all(&s.window_clause, false, h);
    if let Some(w) = &s.with_clause {
        walk_all(&w.ctes, false, h);
    }
    if let Some(l) = &s.larg {
        walk_select(l, false, h);
    }
    if let Some(r) = &s.rarg {
        walk_select(r, false, h);
    }
}
