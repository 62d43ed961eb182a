//! Conditions in runbooks: `when` on steps and conclusions, `verify.expect`.
//!
//! They are CEL (the Common Expression Language of Kubernetes admission
//! policies and Google IAM conditions), compiled when the runbook loads so a
//! bad expression is reported by `ward check`, not in the middle of an
//! incident. Evaluation comes with the session engine.

use std::collections::BTreeSet;
use std::sync::Arc;

use cel::IdedExpr;
use cel::common::ast::{EntryExpr, Expr as Ast};

const MAX_LEN: usize = 4096;
const MAX_DEPTH: usize = 64;

/// The offset where brackets or a run of unary operators nest deeper than
/// [`MAX_DEPTH`], ignoring quoted strings.
fn too_deep(source: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut unary_run = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in source.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' => quote = Some(c),
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if c == '!' || c == '-' {
            unary_run += 1;
        } else if !c.is_whitespace() {
            unary_run = 0;
        }
        if depth > MAX_DEPTH || unary_run > MAX_DEPTH {
            return Some(i);
        }
    }
    None
}

/// A compiled CEL expression and its source text.
#[derive(Debug, Clone)]
pub struct Expr {
    pub source: String,
    program: Arc<cel::Program>,
}

/// Why an expression does not compile: the message and the 1-based line and
/// column inside the expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    pub message: String,
    pub line: usize,
    pub col: usize,
}

/// Why an expression did not evaluate to a boolean.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// It evaluated, to something that is not a boolean.
    #[error("`{expr}` gave {value}, not true or false")]
    NotBoolean { expr: String, value: String },
    /// CEL could not evaluate it: a missing fact, a type mismatch, ...
    #[error("`{expr}`: {source}")]
    Execution {
        expr: String,
        source: cel::ExecutionError,
    },
}

impl Expr {
    pub fn compile(source: &str) -> Result<Expr, ExprError> {
        if source.trim().is_empty() {
            return Err(ExprError {
                message: "the expression is empty".into(),
                line: 1,
                col: 1,
            });
        }
        // The parser is recursive: keep absurdly long or deep input away
        // from it, and give it a thread with a generous stack of its own.
        if source.len() > MAX_LEN {
            return Err(ExprError {
                message: format!("the expression is longer than {MAX_LEN} characters"),
                line: 1,
                col: 1,
            });
        }
        if let Some(offset) = too_deep(source) {
            let (line, col) = crate::yaml::line_col(source, offset);
            return Err(ExprError {
                message: format!("the expression nests deeper than {MAX_DEPTH} levels"),
                line,
                col,
            });
        }
        let owned = source.to_string();
        let compiled = std::thread::Builder::new()
            .name("cel-compile".into())
            .stack_size(64 << 20)
            .spawn(move || cel::Program::compile(&owned))
            .map_err(|e| ExprError {
                message: format!("cannot start the compiler: {e}"),
                line: 1,
                col: 1,
            })?
            .join();
        match compiled {
            Ok(Ok(program)) => Ok(Expr {
                source: source.to_string(),
                program: Arc::new(program),
            }),
            Ok(Err(errors)) => {
                let first = errors.errors.first();
                let (line, col) = first.map_or((1, 1), |e| {
                    (
                        usize::try_from(e.pos.0).unwrap_or(1).max(1),
                        usize::try_from(e.pos.1).unwrap_or(0) + 1,
                    )
                });
                let message =
                    first.map_or_else(|| "does not compile".to_string(), |e| e.msg.clone());
                Err(ExprError { message, line, col })
            }
            Err(_) => Err(ExprError {
                message: "the expression could not be parsed".into(),
                line: 1,
                col: 1,
            }),
        }
    }

    pub fn program(&self) -> &cel::Program {
        &self.program
    }

    /// Evaluates the expression with `vars` (e.g. `facts`, `inputs`, `rows`)
    /// to a boolean. A missing fact or a non-boolean result is an error
    /// (callers treat it as "does not hold").
    pub fn eval_bool(&self, vars: &[(&str, &serde_json::Value)]) -> Result<bool, EvalError> {
        let mut ctx = cel::Context::default();
        for (name, value) in vars {
            ctx.add_variable_from_value(*name, to_cel(value));
        }
        match self.program.execute(&ctx) {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(EvalError::NotBoolean {
                expr: self.source.clone(),
                value: format!("{other:?}"),
            }),
            Err(source) => Err(EvalError::Execution {
                expr: self.source.clone(),
                source,
            }),
        }
    }

    /// Top-level variables the expression reads (`facts`, `inputs`, `rows`).
    pub fn variables(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut bound = Vec::new();
        walk(self.program.expression(), &mut bound, &mut |e, bound| {
            if let Ast::Ident(name) = &e.expr
                && !bound.iter().any(|b| b == name)
            {
                out.insert(name.clone());
            }
        });
        out
    }

    /// The `(first, second)` names of every `var.first.second` selection on a
    /// top-level variable `var`, e.g. `facts.connection_summary.idle`.
    pub fn selections(&self, var: &str) -> BTreeSet<(String, Option<String>)> {
        let mut out = BTreeSet::new();
        let mut bound = Vec::new();
        walk(self.program.expression(), &mut bound, &mut |e, bound| {
            if let Ast::Select(outer) = &e.expr {
                if let Ast::Ident(name) = &outer.operand.expr
                    && name == var
                    && !bound.iter().any(|b| b == name)
                {
                    out.insert((outer.field.clone(), None));
                }
                if let Ast::Select(inner) = &outer.operand.expr
                    && let Ast::Ident(name) = &inner.operand.expr
                    && name == var
                    && !bound.iter().any(|b| b == name)
                {
                    out.insert((inner.field.clone(), Some(outer.field.clone())));
                }
            }
        });
        let deep: BTreeSet<String> = out
            .iter()
            .filter(|(_, s)| s.is_some())
            .map(|(f, _)| f.clone())
            .collect();
        out.retain(|(f, s)| s.is_some() || !deep.contains(f));
        out
    }

    /// The fields of `var` this expression only tests for presence, as in
    /// `has(facts.drop_leftover)`.
    pub fn presence_tests(&self, var: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut bound = Vec::new();
        walk(self.program.expression(), &mut bound, &mut |e, bound| {
            if let Ast::Select(sel) = &e.expr
                && sel.test
                && let Ast::Ident(name) = &sel.operand.expr
                && name == var
                && !bound.iter().any(|b| b == name)
            {
                out.insert(sel.field.clone());
            }
        });
        out
    }
}

/// Visits every node; `bound` holds comprehension variables in scope.
fn walk(e: &IdedExpr, bound: &mut Vec<String>, f: &mut dyn FnMut(&IdedExpr, &[String])) {
    f(e, bound);
    match &e.expr {
        Ast::Call(c) => {
            if let Some(t) = &c.target {
                walk(t, bound, f);
            }
            for a in &c.args {
                walk(a, bound, f);
            }
        }
        Ast::Comprehension(c) => {
            walk(&c.iter_range, bound, f);
            walk(&c.accu_init, bound, f);
            let pushed = 2 + usize::from(c.iter_var2.is_some());
            bound.push(c.iter_var.clone());
            bound.push(c.accu_var.clone());
            if let Some(v) = &c.iter_var2 {
                bound.push(v.clone());
            }
            walk(&c.loop_cond, bound, f);
            walk(&c.loop_step, bound, f);
            walk(&c.result, bound, f);
            bound.truncate(bound.len() - pushed);
        }
        Ast::List(l) => l.elements.iter().for_each(|x| walk(x, bound, f)),
        Ast::Map(m) => {
            for entry in &m.entries {
                match &entry.expr {
                    EntryExpr::MapEntry(me) => {
                        walk(&me.key, bound, f);
                        walk(&me.value, bound, f);
                    }
                    EntryExpr::StructField(sf) => walk(&sf.value, bound, f),
                }
            }
        }
        Ast::Select(s) => walk(&s.operand, bound, f),
        Ast::Struct(s) => {
            for entry in &s.entries {
                if let EntryExpr::StructField(sf) = &entry.expr {
                    walk(&sf.value, bound, f);
                }
            }
        }
        Ast::Ident(_) | Ast::Literal(_) | Ast::Unspecified => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_and_lists_fact_references() {
        let e =
            Expr::compile("facts.connection_summary.idle > 20 && inputs.min_idle_seconds >= 60")
                .expect("compiles");
        assert_eq!(
            e.variables(),
            BTreeSet::from(["facts".to_string(), "inputs".to_string()])
        );
        assert_eq!(
            e.selections("facts"),
            BTreeSet::from([("connection_summary".to_string(), Some("idle".to_string()))])
        );
        let m = Expr::compile("rows.all(r, r.n < 5)").expect("compiles");
        assert_eq!(m.variables(), BTreeSet::from(["rows".to_string()]));
    }

    #[test]
    fn conditions_evaluate_over_facts_and_rows() {
        let facts = serde_json::json!({"headline": {"idle": 25, "pct_used": 91.5}});
        let e = Expr::compile("facts.headline.idle > 20 && facts.headline.pct_used >= 80.0")
            .expect("compiles");
        assert_eq!(e.eval_bool(&[("facts", &facts)]), Ok(true));
        let e = Expr::compile("facts.other.idle > 20").expect("compiles");
        assert!(
            matches!(
                e.eval_bool(&[("facts", &facts)]),
                Err(EvalError::Execution { .. })
            ),
            "a missing fact is an error, not true"
        );
        let rows = serde_json::json!([{"idle": 3}]);
        assert_eq!(
            Expr::compile("rows[0].idle < 5")
                .expect("compiles")
                .eval_bool(&[("rows", &rows)]),
            Ok(true)
        );
        assert_eq!(
            Expr::compile("1 + 1")
                .expect("compiles")
                .eval_bool(&[])
                .map_err(|e| e.to_string()),
            Err("`1 + 1` gave Int(2), not true or false".to_string())
        );
    }

    #[test]
    fn a_bad_expression_reports_where() {
        let err = Expr::compile("facts.x.idle >").expect_err("does not compile");
        assert_eq!(err.line, 1);
        assert!(err.col >= 14, "{err:?}");
        assert!(Expr::compile("  ").is_err());
        assert!(Expr::compile(&"(".repeat(10_000)).is_err());
        let deep = Expr::compile(&format!("{}1{}", "(".repeat(100), ")".repeat(100)))
            .expect_err("too deep");
        assert_eq!((deep.line, deep.col), (1, 65));
        assert!(Expr::compile(&"!".repeat(2000)).is_err());
        assert!(Expr::compile("a && ".repeat(800).trim_end_matches(" && ")).is_ok());
        assert!(
            Expr::compile(
                "'((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((' == x"
            )
            .is_ok()
        );
    }
}

/// JSON as CEL sees it. Every integer that fits is an `int`: serde would
/// make non-negative numbers `uint`, and CEL refuses `uint * int`, so a
/// runbook's `facts.x.slots * 2 > 0` would silently be an error (= false).
fn to_cel(v: &serde_json::Value) -> cel::Value {
    use serde_json::Value as J;
    use std::sync::Arc;
    match v {
        J::Null => cel::Value::Null,
        J::Bool(b) => cel::Value::Bool(*b),
        J::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => cel::Value::String(Arc::new(s.clone())),
        J::Array(a) => cel::Value::List(Arc::new(a.iter().map(to_cel).collect())),
        J::Object(m) => cel::Value::Map(cel::objects::Map {
            map: Arc::new(
                m.iter()
                    .map(|(k, v)| (cel::objects::Key::String(Arc::new(k.clone())), to_cel(v)))
                    .collect(),
            ),
        }),
    }
}

#[cfg(test)]
mod json_tests {
    use super::*;

    #[test]
    fn json_integers_mix_with_literal_ints_in_arithmetic() {
        let e = Expr::compile(
            "facts.a.slots * 2 > 3 && inputs.mb * 1048576 > 0 && facts.a.ratio / 2.0 < 1.0",
        )
        .unwrap();
        let facts = serde_json::json!({"a": {"slots": 2, "ratio": 0.5}});
        let inputs = serde_json::json!({"mb": 10});
        assert_eq!(
            e.eval_bool(&[("facts", &facts), ("inputs", &inputs)]),
            Ok(true)
        );
    }
}
