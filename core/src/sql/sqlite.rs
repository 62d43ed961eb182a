//! SQLite analysis with sqlparser's SQLite dialect.
//!
//! SQLite has no table-level lock modes: a writer takes the database-wide
//! write lock, so every statement that is not read-only "blocks writes".

use std::ops::ControlFlow;

use sqlparser::ast::{AlterTableOperation, Expr, ObjectType, Statement, visit_expressions};
use sqlparser::dialect::SQLiteDialect;
use sqlparser::parser::Parser;

use super::{Analysis, Analyzer, Engine, FunctionEffect, Risk, StatementAnalysis};

/// Pragmas that take an argument and only report.
const READ_PRAGMAS_WITH_ARGUMENT: &[&str] = &[
    "table_info",
    "table_xinfo",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "integrity_check",
    "quick_check",
    "table_list",
];

/// Pragmas that change the database even without an argument.
const ACTION_PRAGMAS: &[&str] = &[
    "optimize",
    "wal_checkpoint",
    "incremental_vacuum",
    "shrink_memory",
];

pub(super) fn analyze(an: &Analyzer, sql: &str) -> Analysis {
    let statements = match Parser::parse_sql(&SQLiteDialect {}, sql) {
        Ok(s) => s,
        Err(e) => {
            let message = e.to_string();
            let offset = error_offset(sql, &message);
            return Analysis::unparsed(Engine::Sqlite, sql, message, offset);
        }
    };
    let analyses = statements
        .iter()
        .map(|s| classify(an, &s.to_string(), s))
        .collect();
    Analysis::from_statements(Engine::Sqlite, analyses)
}

/// sqlparser puts "Line: L, Column: C" in its messages.
fn error_offset(sql: &str, message: &str) -> Option<usize> {
    let line_at = message.find("Line: ")? + "Line: ".len();
    let line: usize = message[line_at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    let col_at = message.find("Column: ")? + "Column: ".len();
    let col: usize = message[col_at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    let line_start: usize = sql
        .split_inclusive('\n')
        .take(line.checked_sub(1)?)
        .map(str::len)
        .sum();
    let off = line_start + col.saturating_sub(1);
    (off <= sql.len()).then_some(off)
}

fn classify(an: &Analyzer, text: &str, stmt: &Statement) -> StatementAnalysis {
    use Risk::*;
    let mut st = StatementAnalysis::new(text, "other", ReadOnly);
    match stmt {
        Statement::Query(_) => st.kind = "select".into(),
        Statement::Insert(i) => {
            st.kind = "insert".into();
            st.tables.push(i.table.to_string());
            st.raise(Write, "INSERT adds rows");
        }
        Statement::Update(u) => {
            st.kind = "update".into();
            st.tables.push(u.table.relation.to_string());
            st.raise(Write, "UPDATE changes rows");
            if u.selection.is_none() {
                st.finding("unbounded-write");
                st.raise(Destructive, "UPDATE without WHERE rewrites every row");
            }
        }
        Statement::Delete(d) => {
            st.kind = "delete".into();
            st.tables.extend(d.tables.iter().map(|t| t.to_string()));
            st.raise(Write, "DELETE removes rows");
            if d.selection.is_none() {
                st.finding("unbounded-write");
                st.raise(Destructive, "DELETE without WHERE removes every row");
            }
        }
        Statement::CreateTable(c) => {
            st.kind = if c.query.is_some() {
                "create_table_as"
            } else {
                "create_table"
            }
            .into();
            st.tables.push(c.name.to_string());
            st.raise(Schema, "creates a table");
        }
        Statement::CreateIndex(c) => {
            st.kind = "create_index".into();
            st.tables.push(c.table_name.to_string());
            st.raise(
                Schema,
                "creates an index (SQLite builds it while holding the write lock)",
            );
        }
        Statement::CreateView(_) => simple(&mut st, "create_view", Schema, "creates a view"),
        Statement::CreateTrigger(_) => {
            simple(&mut st, "create_trigger", Schema, "creates a trigger")
        }
        Statement::CreateVirtualTable { .. } => simple(
            &mut st,
            "create_virtual_table",
            Schema,
            "creates a virtual table",
        ),
        Statement::AlterTable(a) => {
            st.tables.push(a.name.to_string());
            let mut kind = "alter_table".to_string();
            for op in &a.operations {
                let (suffix, risk) = match op {
                    AlterTableOperation::AddColumn { .. } => ("add_column", Schema),
                    AlterTableOperation::DropColumn { .. } => {
                        st.finding("ban-drop-column");
                        ("drop_column", Destructive)
                    }
                    AlterTableOperation::RenameColumn { .. } => {
                        st.finding("renaming-column");
                        ("rename_column", Schema)
                    }
                    AlterTableOperation::RenameTable { .. } => {
                        st.finding("renaming-table");
                        ("rename_table", Schema)
                    }
                    _ => ("other", Schema),
                };
                st.raise(risk, format!("alter table {}", suffix.replace('_', " ")));
                kind = if a.operations.len() == 1 {
                    format!("alter_table_{suffix}")
                } else {
                    "alter_table".into()
                };
            }
            st.kind = kind;
        }
        Statement::Drop {
            object_type, names, ..
        } => {
            st.tables.extend(names.iter().map(|n| n.to_string()));
            match object_type {
                ObjectType::Table => {
                    st.kind = "drop_table".into();
                    st.finding("ban-drop-table");
                    st.raise(Destructive, "drops a table and its data");
                }
                ObjectType::Index => simple(&mut st, "drop_index", Schema, "drops an index"),
                ObjectType::View => simple(&mut st, "drop_view", Schema, "drops a view"),
                other => {
                    let kind = format!(
                        "drop_{}",
                        other.to_string().to_ascii_lowercase().replace(' ', "_")
                    );
                    simple(&mut st, &kind, Schema, "drops an object");
                }
            }
        }
        Statement::DropTrigger(_) => simple(&mut st, "drop_trigger", Schema, "drops a trigger"),
        Statement::Pragma { name, value, is_eq } => {
            let pragma = name
                .to_string()
                .rsplit('.')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            // `PRAGMA x = v` always sets; `PRAGMA x(v)` only reads for the
            // introspection pragmas; a few bare pragmas act on the database.
            let reads_with_arg = READ_PRAGMAS_WITH_ARGUMENT.contains(&pragma.as_str());
            let acts = ACTION_PRAGMAS.contains(&pragma.as_str());
            if *is_eq || (value.is_some() && !reads_with_arg) || acts {
                simple(
                    &mut st,
                    "pragma_set",
                    Write,
                    "this PRAGMA changes a setting or acts on the database",
                );
            } else {
                st.kind = "pragma".into();
            }
        }
        Statement::Explain {
            analyze, statement, ..
        } => {
            if *analyze {
                let inner = classify(an, &statement.to_string(), statement);
                st.kind = "explain_analyze".into();
                if inner.risk != ReadOnly {
                    st.finding("explain-analyze-executes");
                    st.raise(
                        inner.risk,
                        format!("EXPLAIN ANALYZE executes a {} statement", inner.kind),
                    );
                }
            } else {
                st.kind = "explain".into();
            }
            return st;
        }
        Statement::Vacuum(_) => simple(
            &mut st,
            "vacuum",
            Write,
            "VACUUM rebuilds the database file",
        ),
        Statement::Analyze(_) => simple(&mut st, "analyze", Write, "ANALYZE updates statistics"),
        Statement::AttachDatabase { .. } => simple(
            &mut st,
            "attach_database",
            Privilege,
            "ATTACH opens another database file",
        ),
        Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. } => simple(
            &mut st,
            "transaction",
            Unknown,
            "transaction control inside a step; ward manages transactions itself",
        ),
        _ => simple(
            &mut st,
            "unrecognized",
            Unknown,
            "ward does not recognise this kind of statement",
        ),
    }
    apply_functions(an, &mut st, stmt);
    st
}

fn simple(st: &mut StatementAnalysis, kind: &str, risk: Risk, reason: &str) {
    st.kind = kind.into();
    st.raise(risk, reason);
}

fn apply_functions(an: &Analyzer, st: &mut StatementAnalysis, stmt: &Statement) {
    let mut names: Vec<String> = Vec::new();
    let _ = visit_expressions(stmt, |e: &Expr| {
        if let Expr::Function(f) = e {
            names.push(f.name.to_string().to_ascii_lowercase());
        }
        ControlFlow::<()>::Continue(())
    });
    names.sort();
    names.dedup();
    for name in names {
        let (schema, fname) = match name.rsplit_once('.') {
            Some((s, f)) => (Some(s), f),
            None => (None, name.as_str()),
        };
        match an.function_effect(Engine::Sqlite, schema, fname) {
            FunctionEffect::Pure => {}
            FunctionEffect::Known(risk) => st.raise(risk, format!("calls {name}()")),
            FunctionEffect::Unlisted => st.raise(
                Risk::Unknown,
                format!("calls {name}(), which is not known to be read-only (declare it in ward.yaml `pure_functions` if it is)"),
            ),
        }
    }
}
