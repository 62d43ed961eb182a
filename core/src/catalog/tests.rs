//! `refine` on catalog facts written by hand: each kind of object that can
//! run code makes a read `unknown`; the server's own objects and plain
//! tables keep it `read_only`; nothing ever lowers a class.

use super::*;
use crate::sql::{AnalyzerOptions, Risk};

fn analyzer() -> Analyzer {
    Analyzer::new(AnalyzerOptions::default())
}

fn refined(sql: &str, facts: &Facts) -> (Analysis, Vec<Resolution>) {
    let an = analyzer();
    let analysis = an.analyze(Engine::Postgres, sql);
    let refs = References::of(sql).expect("parses");
    refine(&an, &analysis, &refs, facts)
}

fn rel(oid: i64, schema: &str, name: &str, relkind: &str) -> Relation {
    Relation {
        oid,
        schema: schema.into(),
        name: name.into(),
        relkind: relkind.into(),
        rls: false,
        rules: false,
        user_access_code: false,
        definition: None,
    }
}

fn hit(schema: Option<&str>, name: &str, oid: i64) -> Hit {
    Hit {
        schema: schema.map(str::to_string),
        name: name.into(),
        oid,
    }
}

fn view(oid: i64, schema: &str, name: &str, def: &str) -> Relation {
    Relation {
        definition: Some(def.into()),
        ..rel(oid, schema, name, "v")
    }
}

#[test]
fn a_plain_user_table_stays_read_only() {
    let facts = Facts {
        rel_hits: vec![hit(Some("public"), "orders", 16500)],
        relations: vec![rel(16500, "public", "orders", "r")],
        ..Facts::default()
    };
    let (a, resolved) = refined("SELECT count(*) FROM public.orders", &facts);
    assert_eq!(a.risk, Risk::ReadOnly);
    assert_eq!(
        resolved.first(),
        Some(&Resolution {
            kind: "relation",
            name: "public.orders".into(),
            resolved: "public.orders (table, user, oid 16500)".into(),
            problem: None,
        })
    );
}

#[test]
fn a_view_whose_definition_terminates_backends_is_unknown() {
    let facts = Facts {
        rel_hits: vec![hit(Some("public"), "v", 16501)],
        relations: vec![view(
            16501,
            "public",
            "v",
            " SELECT pg_terminate_backend(pg_stat_activity.pid) AS k FROM pg_stat_activity;",
        )],
        ..Facts::default()
    };
    let (a, _) = refined("SELECT * FROM public.v", &facts);
    assert_eq!(a.risk, Risk::Unknown);
    assert!(
        a.statements[0]
            .reasons
            .iter()
            .any(|r| r.contains("pg_terminate_backend")),
        "{:?}",
        a.statements[0].reasons
    );
}

#[test]
fn a_view_over_a_foreign_table_is_unknown_through_the_chain() {
    let facts = Facts {
        rel_hits: vec![hit(Some("public"), "v", 16502)],
        relations: vec![
            view(16502, "public", "v", "SELECT x FROM public.ft"),
            rel(16503, "public", "ft", "f"),
        ],
        edges: vec![Edge {
            from: 16502,
            to: 16503,
        }],
        ..Facts::default()
    };
    let (a, resolved) = refined("SELECT * FROM public.v", &facts);
    assert_eq!(a.risk, Risk::Unknown);
    let problem = resolved[0].problem.clone().unwrap_or_default();
    assert!(problem.contains("foreign table"), "{problem}");
}

#[test]
fn row_level_security_rules_and_partitions_are_followed() {
    let mut secured = rel(16504, "public", "t", "r");
    secured.rls = true;
    let facts = Facts {
        rel_hits: vec![hit(Some("public"), "p", 16505)],
        relations: vec![rel(16505, "public", "p", "p"), secured],
        edges: vec![Edge {
            from: 16505,
            to: 16504,
        }],
        ..Facts::default()
    };
    let (a, _) = refined("SELECT * FROM public.p", &facts);
    assert_eq!(a.risk, Risk::Unknown, "a partition with RLS is read too");
}

#[test]
fn a_user_function_behind_an_unqualified_name_is_unknown_unless_declared() {
    let facts = Facts {
        fn_hits: vec![NameHit {
            schema: None,
            name: "count".into(),
            builtin: 2,
            oids: vec![16600],
        }],
        functions: vec![Function {
            oid: 16600,
            schema: "pg_catalog".into(),
            name: "count".into(),
            volatility: "i".into(),
            language: "internal".into(),
            probin: None,
            signature: "count(inet)".into(),
            extension: None,
        }],
        planted_functions: vec![Planted {
            name: "count".into(),
            language: "internal".into(),
            probin: None,
            extension: None,
        }],
        ..Facts::default()
    };
    let (a, _) = refined(
        "SELECT count(DISTINCT client_addr) FROM pg_stat_activity",
        &facts,
    );
    assert_eq!(a.risk, Risk::Unknown);
}

#[test]
fn user_operators_domains_with_checks_and_bad_casts_are_unknown() {
    let op = Facts {
        op_hits: vec![NameHit {
            schema: Some("public".into()),
            name: "===".into(),
            builtin: 0,
            oids: vec![16700],
        }],
        operators: vec![Operator {
            oid: 16700,
            schema: "public".into(),
            name: "===".into(),
            signature: "public.===(integer,integer)".into(),
            function: "public.evil(integer,integer)".into(),
        }],
        ..Facts::default()
    };
    assert_eq!(
        refined("SELECT 1 OPERATOR(public.===) 2", &op).0.risk,
        Risk::Unknown
    );
    let domain = Facts {
        ty_hits: vec![hit(Some("public"), "d", 16800)],
        types: vec![Type {
            oid: 16800,
            schema: "public".into(),
            name: "d".into(),
            typtype: "d".into(),
            io_builtin: true,
            has_check: true,
            range_builtin: true,
            components: vec![23],
        }],
        ..Facts::default()
    };
    assert_eq!(
        refined("SELECT '1'::public.d", &domain).0.risk,
        Risk::Unknown
    );
    let cast = Facts {
        bad_casts: vec!["integer -> text via public.evil(integer)".into()],
        ..Facts::default()
    };
    assert_eq!(refined("SELECT 1::text", &cast).0.risk, Risk::Unknown);
}

#[test]
fn an_enum_and_a_domain_without_checks_are_harmless() {
    let facts = Facts {
        ty_hits: vec![hit(Some("public"), "mood", 16900)],
        types: vec![Type {
            oid: 16900,
            schema: "public".into(),
            name: "mood".into(),
            typtype: "e".into(),
            io_builtin: true,
            has_check: false,
            range_builtin: true,
            components: vec![],
        }],
        ..Facts::default()
    };
    assert_eq!(
        refined("SELECT 'ok'::public.mood", &facts).0.risk,
        Risk::ReadOnly
    );
}

#[test]
fn a_trusted_extension_function_in_a_view_is_harmless_only_from_its_own_library() {
    let mut f = Function {
        oid: 17000,
        schema: "ext".into(),
        name: "pg_stat_statements".into(),
        volatility: "v".into(),
        language: "c".into(),
        probin: Some("$libdir/pg_stat_statements".into()),
        signature: "ext.pg_stat_statements(boolean)".into(),
        extension: Some("pg_stat_statements".into()),
    };
    let facts = |f: Function| Facts {
        rel_hits: vec![hit(Some("ext"), "pg_stat_statements", 17001)],
        relations: vec![view(
            17001,
            "ext",
            "pg_stat_statements",
            "SELECT calls FROM ext.pg_stat_statements(true) s(calls)",
        )],
        view_functions: vec![Edge {
            from: 17001,
            to: 17000,
        }],
        functions: vec![f],
        ..Facts::default()
    };
    let sql = "SELECT calls FROM ext.pg_stat_statements";
    assert_eq!(refined(sql, &facts(f.clone())).0.risk, Risk::ReadOnly);
    f.probin = Some("$libdir/evil".into());
    assert_eq!(refined(sql, &facts(f)).0.risk, Risk::Unknown);
}

#[test]
fn the_catalog_never_lowers_a_class() {
    let (a, _) = refined("SELECT pg_terminate_backend(1)", &Facts::default());
    assert_ne!(a.risk, Risk::ReadOnly);
}

#[test]
fn an_index_with_a_user_operator_class_makes_reading_its_table_unknown() {
    let mut t = rel(16510, "public", "orders", "r");
    t.user_access_code = true;
    let facts = Facts {
        rel_hits: vec![hit(Some("public"), "orders", 16510)],
        relations: vec![t],
        ..Facts::default()
    };
    assert_eq!(
        refined("SELECT * FROM public.orders WHERE id < 5", &facts)
            .0
            .risk,
        Risk::Unknown
    );
}

#[test]
fn a_trusted_extension_installed_into_pg_catalog_is_not_a_plant() {
    let planted = |extension: Option<&str>| Facts {
        planted_functions: vec![Planted {
            name: "pg_stat_statements".into(),
            language: "c".into(),
            probin: Some("$libdir/pg_stat_statements".into()),
            extension: extension.map(str::to_string),
        }],
        ..Facts::default()
    };
    let sql = "SELECT * FROM pg_stat_statements(true)";
    let an = analyzer();
    let mut options = an.options.clone();
    options
        .pure_functions
        .insert("pg_catalog.pg_stat_statements".into());
    let an = Analyzer::new(options);
    let analysis = an.analyze(Engine::Postgres, sql);
    let refs = References::of(sql).expect("parses");
    let trusted = refine(&an, &analysis, &refs, &planted(Some("pg_stat_statements"))).0;
    let planted_by_someone = refine(&an, &analysis, &refs, &planted(None)).0;
    assert_eq!(planted_by_someone.risk, Risk::Unknown);
    assert!(
        !trusted
            .statements
            .iter()
            .flat_map(|s| &s.reasons)
            .any(|r| r.contains("not the server's own")),
        "{:?}",
        trusted.statements[0].reasons
    );
}
