//! Which columns a statement filters and joins on, per table, read from its
//! parse tree (the real PostgreSQL grammar, through `pg_query`).
//!
//! The statement is a normalised pg_stat_statements text (`$1`
//! placeholders). Only what a btree can serve is collected, and only from
//! conjunctions: a predicate under `OR` or `NOT` never yields a column, and
//! a column wrapped in a function or a cast is reported as an expression,
//! never as the plain column. This module never guesses a table for a
//! column it cannot place.

use pg_query::NodeEnum;
use pg_query::protobuf::{self, AExprKind, BoolExprType, NullTestType, SetOperation};

/// How a statement uses one table (all its occurrences merged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableUse {
    /// `schema.table`; an unqualified name gets the default schema.
    pub table: String,
    /// Columns compared with `=`, `IN (...)`, `= ANY(...)` or `IS NULL`
    /// against a value (a parameter, a constant or an outer column), in
    /// order of appearance.
    pub equality: Vec<String>,
    /// Columns compared with `<`, `<=`, `>`, `>=` or `BETWEEN`.
    pub range: Vec<String>,
    /// Columns equated with another table's column (join conditions).
    pub join: Vec<String>,
    /// `ORDER BY` columns of a statement with a `LIMIT`, single-table only.
    pub order_by: Vec<String>,
    /// Predicates on an expression of a column (`lower(email) = $1`,
    /// `created_at::date = $1`), as `lower(email)`: no plain index serves
    /// them.
    pub expressions: Vec<String>,
    /// Columns compared with `LIKE`/`ILIKE`/`~`: a plain btree serves a
    /// prefix only with `text_pattern_ops` or the C collation, and a
    /// parameter's pattern is unknown.
    pub pattern: Vec<String>,
}

/// The statement could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    #[error("the statement does not parse: {0}")]
    Parse(String),
}

/// Column uses per table of `query`, tables in order of first appearance.
/// `default_schema` qualifies unqualified table names; `columns_of` says
/// which columns a table has (to place an unqualified column when several
/// tables are in scope; `None` when unknown).
pub fn extract(
    query: &str,
    default_schema: &str,
    columns_of: &dyn Fn(&str) -> Option<Vec<String>>,
) -> Result<Vec<TableUse>, ExtractError> {
    let parsed = pg_query::parse(query, 0).map_err(|e| ExtractError::Parse(e.to_string()))?;
    let mut w = Walker {
        default_schema,
        columns_of,
        uses: Vec::new(),
    };
    for raw in &parsed.protobuf.stmts {
        if let Some(node) = raw.stmt.as_ref().and_then(|n| n.node.as_ref()) {
            w.statement(node, &[], &[]);
        }
    }
    Ok(w.uses)
}

/// One table in a query level's scope: the name it is referred to by.
#[derive(Debug, Clone)]
struct Entry {
    /// The alias, or the table's own name.
    refname: String,
    /// `schema.table`, `None` for a CTE or a subquery.
    table: Option<String>,
}

struct Walker<'a> {
    default_schema: &'a str,
    columns_of: &'a dyn Fn(&str) -> Option<Vec<String>>,
    uses: Vec<TableUse>,
}

enum Side {
    /// A column of a table in scope: (schema.table, column).
    Column(String, String),
    /// A parameter, constant or anything not depending on the current row.
    Value,
    /// A function or cast of a column: its text.
    Expression(String),
    /// Something else (a column that cannot be placed, a subquery).
    Other,
}

fn push_unique(v: &mut Vec<String>, s: &str) {
    if !v.iter().any(|x| x == s) {
        v.push(s.to_string());
    }
}

fn op_name(names: &[protobuf::Node]) -> String {
    names
        .iter()
        .filter_map(|n| match &n.node {
            Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
            _ => None,
        })
        .next_back()
        .unwrap_or("")
        .to_string()
}

impl Walker<'_> {
    fn use_of(&mut self, table: &str) -> &mut TableUse {
        if let Some(i) = self.uses.iter().position(|u| u.table == table) {
            return &mut self.uses[i];
        }
        self.uses.push(TableUse {
            table: table.to_string(),
            ..TableUse::default()
        });
        let last = self.uses.len() - 1;
        &mut self.uses[last]
    }

    /// One statement; `outer` is the enclosing levels' scope (correlated
    /// subqueries), `ctes` the CTE names visible here.
    fn statement(&mut self, node: &NodeEnum, outer: &[Entry], ctes: &[String]) {
        match node {
            NodeEnum::SelectStmt(s) => self.select(s, outer, ctes),
            NodeEnum::UpdateStmt(u) => {
                let ctes = self.with(u.with_clause.as_ref(), outer, ctes);
                let mut scope = Vec::new();
                if let Some(rv) = &u.relation {
                    self.range_var(rv, &mut scope, &ctes);
                }
                for f in &u.from_clause {
                    self.add_from_item(f, &mut scope, outer, &ctes);
                }
                self.where_clause(u.where_clause.as_deref(), &scope, outer, &ctes);
            }
            NodeEnum::DeleteStmt(d) => {
                let ctes = self.with(d.with_clause.as_ref(), outer, ctes);
                let mut scope = Vec::new();
                if let Some(rv) = &d.relation {
                    self.range_var(rv, &mut scope, &ctes);
                }
                for f in &d.using_clause {
                    self.add_from_item(f, &mut scope, outer, &ctes);
                }
                self.where_clause(d.where_clause.as_deref(), &scope, outer, &ctes);
            }
            // INSERT ... SELECT: the SELECT's predicates (the target is written, not read).
            NodeEnum::InsertStmt(i) => {
                let ctes = self.with(i.with_clause.as_ref(), outer, ctes);
                if let Some(q) = i.select_stmt.as_ref().and_then(|n| n.node.as_ref()) {
                    self.statement(q, outer, &ctes);
                }
            }
            NodeEnum::ExplainStmt(e) => {
                if let Some(q) = e.query.as_ref().and_then(|n| n.node.as_ref()) {
                    self.statement(q, outer, ctes);
                }
            }
            _ => {}
        }
    }

    fn with(
        &mut self,
        with: Option<&protobuf::WithClause>,
        outer: &[Entry],
        ctes: &[String],
    ) -> Vec<String> {
        let mut names = ctes.to_vec();
        if let Some(w) = with {
            for c in &w.ctes {
                if let Some(NodeEnum::CommonTableExpr(cte)) = &c.node {
                    names.push(cte.ctename.clone());
                    if let Some(q) = cte.ctequery.as_ref().and_then(|n| n.node.as_ref()) {
                        self.statement(q, outer, &names);
                    }
                }
            }
        }
        names
    }

    fn select(&mut self, s: &protobuf::SelectStmt, outer: &[Entry], ctes: &[String]) {
        let ctes = self.with(s.with_clause.as_ref(), outer, ctes);
        if s.op != SetOperation::SetopNone as i32 && s.op != SetOperation::Undefined as i32 {
            if let Some(l) = &s.larg {
                self.select(l, outer, &ctes);
            }
            if let Some(r) = &s.rarg {
                self.select(r, outer, &ctes);
            }
            return;
        }
        let mut scope = Vec::new();
        for f in &s.from_clause {
            self.add_from_item(f, &mut scope, outer, &ctes);
        }
        self.where_clause(s.where_clause.as_deref(), &scope, outer, &ctes);
        // ORDER BY ... LIMIT on one table: an index in that order stops the
        // scan after LIMIT rows.
        let tables: Vec<&Entry> = scope.iter().filter(|e| e.table.is_some()).collect();
        if s.limit_count.is_some() && scope.len() == 1 && tables.len() == 1 {
            for sb in &s.sort_clause {
                let Some(NodeEnum::SortBy(sb)) = &sb.node else {
                    break;
                };
                match sb.node.as_deref().map(|n| self.side(n, &scope, &[])) {
                    Some(Side::Column(t, c)) => push_unique(&mut self.use_of(&t).order_by, &c),
                    _ => break,
                }
            }
        }
        // Subqueries in the select list (correlated lookups).
        let mut inner_outer: Vec<Entry> = scope.clone();
        inner_outer.extend(outer.iter().cloned());
        for t in &s.target_list {
            self.sublinks(t, &inner_outer, &ctes);
        }
    }

    fn range_var(&mut self, rv: &protobuf::RangeVar, scope: &mut Vec<Entry>, ctes: &[String]) {
        let refname = rv
            .alias
            .as_ref()
            .map_or_else(|| rv.relname.clone(), |a| a.aliasname.clone());
        let is_cte = rv.schemaname.is_empty() && ctes.contains(&rv.relname);
        let table = (!is_cte).then(|| {
            let schema = if rv.schemaname.is_empty() {
                self.default_schema
            } else {
                rv.schemaname.as_str()
            };
            format!("{schema}.{}", rv.relname)
        });
        if let Some(t) = &table {
            // Every table read is listed, with or without a usable predicate.
            self.use_of(t);
        }
        scope.push(Entry { refname, table });
    }

    fn add_from_item(
        &mut self,
        node: &protobuf::Node,
        scope: &mut Vec<Entry>,
        outer: &[Entry],
        ctes: &[String],
    ) {
        match &node.node {
            Some(NodeEnum::RangeVar(rv)) => self.range_var(rv, scope, ctes),
            Some(NodeEnum::JoinExpr(j)) => {
                if let Some(l) = &j.larg {
                    self.add_from_item(l, scope, outer, ctes);
                }
                if let Some(r) = &j.rarg {
                    self.add_from_item(r, scope, outer, ctes);
                }
                let snapshot = scope.clone();
                self.where_clause(j.quals.as_deref(), &snapshot, outer, ctes);
            }
            Some(NodeEnum::RangeSubselect(rs)) => {
                if let Some(q) = rs.subquery.as_ref().and_then(|n| n.node.as_ref()) {
                    // A LATERAL subquery sees the FROM items before it.
                    let mut o: Vec<Entry> = if rs.lateral {
                        scope.clone()
                    } else {
                        Vec::new()
                    };
                    o.extend(outer.iter().cloned());
                    self.statement(q, &o, ctes);
                }
                let refname = rs
                    .alias
                    .as_ref()
                    .map(|a| a.aliasname.clone())
                    .unwrap_or_default();
                scope.push(Entry {
                    refname,
                    table: None,
                });
            }
            _ => {}
        }
    }

    fn where_clause(
        &mut self,
        node: Option<&protobuf::Node>,
        scope: &[Entry],
        outer: &[Entry],
        ctes: &[String],
    ) {
        let Some(node) = node else { return };
        let mut inner_outer: Vec<Entry> = scope.to_vec();
        inner_outer.extend(outer.iter().cloned());
        self.sublinks(node, &inner_outer, ctes);
        self.conjunct(node, scope, outer);
    }

    /// Walks into every subquery under `node` (IN/EXISTS/scalar), whatever
    /// the boolean structure around it.
    fn sublinks(&mut self, node: &protobuf::Node, outer: &[Entry], ctes: &[String]) {
        match &node.node {
            Some(NodeEnum::SubLink(sl)) => {
                if let Some(q) = sl.subselect.as_ref().and_then(|n| n.node.as_ref()) {
                    self.statement(q, outer, ctes);
                }
                if let Some(t) = &sl.testexpr {
                    self.sublinks(t, outer, ctes);
                }
            }
            Some(NodeEnum::BoolExpr(b)) => {
                for a in &b.args {
                    self.sublinks(a, outer, ctes);
                }
            }
            Some(NodeEnum::AExpr(e)) => {
                for side in [&e.lexpr, &e.rexpr].into_iter().flatten() {
                    self.sublinks(side, outer, ctes);
                }
            }
            Some(NodeEnum::ResTarget(r)) => {
                if let Some(v) = &r.val {
                    self.sublinks(v, outer, ctes);
                }
            }
            _ => {}
        }
    }

    /// One conjunct of a WHERE or ON clause.
    fn conjunct(&mut self, node: &protobuf::Node, scope: &[Entry], outer: &[Entry]) {
        match &node.node {
            Some(NodeEnum::BoolExpr(b)) if b.boolop == BoolExprType::AndExpr as i32 => {
                for a in &b.args {
                    self.conjunct(a, scope, outer);
                }
            }
            Some(NodeEnum::AExpr(e)) => self.comparison(e, scope, outer),
            Some(NodeEnum::NullTest(n)) if n.nulltesttype == NullTestType::IsNull as i32 => {
                match n.arg.as_deref().map(|a| self.side(a, scope, outer)) {
                    Some(Side::Column(t, c)) => push_unique(&mut self.use_of(&t).equality, &c),
                    Some(Side::Expression(x)) => {
                        self.expression_of(n.arg.as_deref(), scope, &x);
                    }
                    _ => {}
                }
            }
            Some(NodeEnum::SubLink(sl))
                if sl.sub_link_type == protobuf::SubLinkType::AnySublink as i32 =>
            {
                // col IN (SELECT ...): the column is looked up by value.
                if let Some(Side::Column(t, c)) =
                    sl.testexpr.as_deref().map(|a| self.side(a, scope, outer))
                {
                    push_unique(&mut self.use_of(&t).equality, &c);
                }
            }
            _ => {}
        }
    }

    fn comparison(&mut self, e: &protobuf::AExpr, scope: &[Entry], outer: &[Entry]) {
        let op = op_name(&e.name);
        let kind = e.kind;
        let l = e.lexpr.as_deref().map(|n| self.side(n, scope, outer));
        let r = e.rexpr.as_deref().map(|n| self.side(n, scope, outer));
        let is = |k: AExprKind| kind == k as i32;
        if is(AExprKind::AexprLike)
            || is(AExprKind::AexprIlike)
            || is(AExprKind::AexprSimilar)
            || (is(AExprKind::AexprOp) && op.starts_with('~'))
        {
            if let Some(Side::Column(t, c)) = l {
                push_unique(&mut self.use_of(&t).pattern, &c);
            }
            return;
        }
        let equality = (op == "="
            && (is(AExprKind::AexprOp) || is(AExprKind::AexprIn) || is(AExprKind::AexprOpAny)))
            || is(AExprKind::AexprNotDistinct);
        let range = is(AExprKind::AexprOp) && matches!(op.as_str(), "<" | "<=" | ">" | ">=");
        let between = is(AExprKind::AexprBetween) || is(AExprKind::AexprBetweenSym);
        if !(equality || range || between) {
            return;
        }
        // Column against column: a join condition (a self-join too).
        if let (Some(Side::Column(lt, lc)), Some(Side::Column(rt, rc))) = (&l, &r) {
            if equality && (lt != rt || lc != rc) {
                push_unique(&mut self.use_of(lt).join, lc);
                push_unique(&mut self.use_of(rt).join, rc);
            }
            return;
        }
        let mirrored = matches!((&l, &r), (Some(Side::Value), Some(Side::Column(..))));
        let (col, other) = if mirrored { (r, l) } else { (l, r) };
        let value_side = between || matches!(other, Some(Side::Value));
        match col {
            Some(Side::Column(t, c)) if value_side => {
                let u = self.use_of(&t);
                if equality {
                    push_unique(&mut u.equality, &c);
                } else {
                    push_unique(&mut u.range, &c);
                }
            }
            Some(Side::Expression(x)) if value_side => {
                let arg = if mirrored {
                    e.rexpr.as_deref()
                } else {
                    e.lexpr.as_deref()
                };
                self.expression_of(arg, scope, &x);
            }
            _ => {}
        }
    }

    /// Records an expression predicate on the table of the column inside it.
    fn expression_of(&mut self, node: Option<&protobuf::Node>, scope: &[Entry], text: &str) {
        if let Some(t) = node.and_then(|n| self.column_inside(n, scope)) {
            push_unique(&mut self.use_of(&t).expressions, text);
        }
    }

    fn column_inside(&self, node: &protobuf::Node, scope: &[Entry]) -> Option<String> {
        match &node.node {
            Some(NodeEnum::ColumnRef(c)) => match self.place(c, scope, &[]) {
                Some(Some((t, _))) => Some(t),
                _ => None,
            },
            Some(NodeEnum::FuncCall(f)) => f.args.iter().find_map(|a| self.column_inside(a, scope)),
            Some(NodeEnum::TypeCast(c)) => {
                c.arg.as_deref().and_then(|a| self.column_inside(a, scope))
            }
            Some(NodeEnum::AExpr(e)) => [&e.lexpr, &e.rexpr]
                .into_iter()
                .flatten()
                .find_map(|a| self.column_inside(a, scope)),
            _ => None,
        }
    }

    /// What one side of a comparison is.
    fn side(&self, node: &protobuf::Node, scope: &[Entry], outer: &[Entry]) -> Side {
        match &node.node {
            Some(NodeEnum::ColumnRef(c)) => match self.place(c, scope, &[]) {
                Some(Some((t, col))) => Side::Column(t, col),
                Some(None) => Side::Other,
                // A column of an enclosing query: a value for this level.
                None if self.place(c, &[], outer).is_some() => Side::Value,
                None => Side::Other,
            },
            Some(NodeEnum::SubLink(sl))
                if sl.sub_link_type == protobuf::SubLinkType::ExprSublink as i32 =>
            {
                Side::Value
            }
            Some(NodeEnum::ParamRef(_)) | Some(NodeEnum::AConst(_)) => Side::Value,
            Some(NodeEnum::AArrayExpr(_))
            | Some(NodeEnum::List(_))
            | Some(NodeEnum::RowExpr(_)) => Side::Value,
            Some(NodeEnum::TypeCast(tc)) => {
                match tc.arg.as_deref().map(|a| self.side(a, scope, outer)) {
                    Some(Side::Value) => Side::Value,
                    Some(Side::Column(_, c)) => Side::Expression(format!("{c}::{}", type_name(tc))),
                    Some(Side::Expression(x)) => {
                        Side::Expression(format!("({x})::{}", type_name(tc)))
                    }
                    _ => Side::Other,
                }
            }
            Some(NodeEnum::FuncCall(f)) => {
                let name = op_name(&f.funcname);
                let args: Vec<Side> = f.args.iter().map(|a| self.side(a, scope, outer)).collect();
                if args.iter().all(|a| matches!(a, Side::Value)) {
                    // now(), $1 + interval: a value for this row.
                    Side::Value
                } else if let Some(Side::Column(_, c)) =
                    args.iter().find(|a| matches!(a, Side::Column(..)))
                {
                    Side::Expression(format!("{name}({c})"))
                } else {
                    Side::Other
                }
            }
            Some(NodeEnum::AExpr(e)) if e.kind == AExprKind::AexprOp as i32 => {
                let sides: Vec<Side> = [&e.lexpr, &e.rexpr]
                    .into_iter()
                    .flatten()
                    .map(|n| self.side(n, scope, outer))
                    .collect();
                if sides.iter().all(|s| matches!(s, Side::Value)) {
                    Side::Value
                } else if let Some(Side::Column(_, c)) =
                    sides.iter().find(|s| matches!(s, Side::Column(..)))
                {
                    Side::Expression(format!("{c} {} ...", op_name(&e.name)))
                } else {
                    Side::Other
                }
            }
            _ => Side::Other,
        }
    }

    /// The table and column a column reference names: `Some(Some(..))`
    /// placed in `scope` or `outer`; `Some(None)` a reference to a CTE or
    /// subquery column; `None` not placed.
    fn place(
        &self,
        c: &protobuf::ColumnRef,
        scope: &[Entry],
        outer: &[Entry],
    ) -> Option<Option<(String, String)>> {
        let parts: Vec<&str> = c
            .fields
            .iter()
            .filter_map(|f| match &f.node {
                Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
                _ => None,
            })
            .collect();
        if parts.len() != c.fields.len() {
            return None;
        }
        let levels = [scope, outer];
        match parts.as_slice() {
            [qual, col] => {
                for level in levels {
                    if let Some(e) = level.iter().find(|e| e.refname == *qual) {
                        return Some(e.table.clone().map(|t| (t, (*col).to_string())));
                    }
                }
                None
            }
            [schema, table, col] => {
                let full = format!("{schema}.{table}");
                for level in levels {
                    if let Some(e) = level.iter().find(|e| e.table.as_deref() == Some(&full)) {
                        return Some(e.table.clone().map(|t| (t, (*col).to_string())));
                    }
                }
                None
            }
            [col] => {
                for level in levels {
                    if level.is_empty() {
                        continue;
                    }
                    if level.len() == 1 {
                        return Some(level[0].table.clone().map(|t| (t, (*col).to_string())));
                    }
                    // Several tables: the one whose columns include it.
                    let mut found = None;
                    for e in level {
                        let Some(t) = &e.table else { return None };
                        let has = (self.columns_of)(t)?.iter().any(|x| x == col);
                        if has {
                            if found.is_some() {
                                return None;
                            }
                            found = Some(t.clone());
                        }
                    }
                    if let Some(t) = found {
                        return Some(Some((t, (*col).to_string())));
                    }
                }
                None
            }
            _ => None,
        }
    }
}

fn type_name(tc: &protobuf::TypeCast) -> String {
    tc.type_name
        .as_ref()
        .map(|t| op_name(&t.names))
        .unwrap_or_default()
}
