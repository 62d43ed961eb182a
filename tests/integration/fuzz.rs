//! Arbitrary input to the loaders and the analyzer never panics.

use std::path::Path;

use proptest::prelude::*;
use ward::contract::load_doc;
use ward::expr::Expr;
use ward::sql::{Analyzer, Engine, params};
use ward::yaml::Doc;

const RUNBOOK: &str = include_str!("../../runbooks/pg-connection-exhaustion.yaml");
const POLICY: &str = include_str!("../../policies/default.yaml");

fn mutate(text: &str, edits: &[(usize, u8, u8)]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for &(at, op, byte) in edits {
        if bytes.is_empty() {
            break;
        }
        let i = at % bytes.len();
        match op % 3 {
            0 => bytes[i] = byte,
            1 => {
                bytes.remove(i);
            }
            _ => bytes.insert(i, byte),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Whether `analyze` had to catch a panic to produce this answer.
fn is_caught_panic(a: &ward::sql::Analysis) -> bool {
    a.parse_error
        .as_ref()
        .is_some_and(|e| e.message == ward::sql::PARSER_PANICKED)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn analyzer_never_panics_on_arbitrary_text(sql in "\\PC{0,200}") {
        let an = Analyzer::default();
        // `analyze` turns a parser panic into an unknown verdict; the test
        // asserts that never had to happen.
        for engine in [Engine::Postgres, Engine::Sqlite] {
            let a = an.analyze(engine, &sql);
            prop_assert!(!is_caught_panic(&a), "{engine} parser panicked on {sql:?}");
        }
        let _ = params::scan(&sql);
    }

    #[test]
    fn analyzer_never_panics_on_sql_like_text(
        parts in prop::collection::vec(prop::sample::select(vec![
            "SELECT", "FROM", "WHERE", "(", ")", "'", "\"", "$$", ";", "--", "/*", "*/", "FOR", "UPDATE",
            "WITH", "AS", "DELETE", "INSERT", "INTO", "x", "1", "::", ":a", ",", "EXPLAIN", "ANALYZE",
            "CREATE", "INDEX", "ON", "ALTER", "TABLE", "DROP", "COPY", "E'\\'", "\n", "nextval", "\0",
        ]), 0..40)
    ) {
        let sql = parts.join(" ");
        let an = Analyzer::default();
        let a = an.analyze(Engine::Postgres, &sql);
        // Whatever it is, a statement that did not parse is never read-only.
        if a.parse_error.is_some() {
            prop_assert_ne!(a.risk, ward::sql::Risk::ReadOnly);
        }
        prop_assert!(!is_caught_panic(&a), "postgres parser panicked on {sql:?}");
        prop_assert!(!is_caught_panic(&an.analyze(Engine::Sqlite, &sql)), "sqlite parser panicked on {sql:?}");
    }

    #[test]
    fn runbook_loader_never_panics_on_mutated_runbooks(
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..12)
    ) {
        let text = mutate(RUNBOOK, &edits);
        let doc = Doc::new("runbooks/x.yaml", text);
        let _ = load_doc(&doc, Path::new("runbooks"), &Analyzer::default());
    }

    #[test]
    fn policy_loader_never_panics_on_mutated_policies(
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..12)
    ) {
        let doc = Doc::new("policies/x.yaml", mutate(POLICY, &edits));
        let _ = ward::policy::load_doc(&doc);
    }

    #[test]
    fn loaders_never_panic_on_arbitrary_text(text in "\\PC{0,300}") {
        let _ = load_doc(&Doc::new("x.yaml", text.clone()), Path::new("runbooks"), &Analyzer::default());
        let _ = ward::policy::load_doc(&Doc::new("p.yaml", text.clone()));
        let _ = Expr::compile(&text);
    }
}

#[test]
fn deeply_nested_input_is_refused_not_a_crash() {
    let deep_yaml = "[".repeat(100_000);
    assert!(
        load_doc(
            &Doc::new("x.yaml", deep_yaml),
            Path::new("runbooks"),
            &Analyzer::default()
        )
        .is_err()
    );
    let deep_map = "a:\n".to_string() + &" b:\n".repeat(2000);
    assert!(ward::policy::load_doc(&Doc::new("p.yaml", deep_map)).is_err());
    let deep_sql = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
    let _ = Analyzer::default().analyze(Engine::Postgres, &deep_sql);
    let _ = Analyzer::default().analyze(Engine::Sqlite, &deep_sql);
    assert!(Expr::compile(&"(".repeat(4000)).is_err());
    assert!(Expr::compile(&format!("{}1{}", "(".repeat(2000), ")".repeat(2000))).is_err());
}
