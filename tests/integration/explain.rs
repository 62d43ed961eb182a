use crate::harness::{repo_root, ward, ward_in};

fn explain_json(sql: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["explain", "--format", "json"];
    args.extend_from_slice(extra);
    args.push(sql);
    ward(&args).expect_code(0).json()
}

#[test]
fn json_has_exactly_the_documented_shape() {
    let v = explain_json("SELECT 1", &[]);
    let keys: Vec<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        vec![
            "risk",
            "decision",
            "approvers",
            "rules",
            "statements",
            "catalog"
        ]
    );
    let st = &v["statements"][0];
    let keys: Vec<&str> = st
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        vec!["sql", "kind", "risk", "lock", "blocks", "findings"]
    );
    assert_eq!(
        v,
        serde_json::json!({
            "risk": "read_only", "decision": "allow", "approvers": 0, "rules": ["reads-run"],
            "statements": [{"sql": "SELECT 1", "kind": "select", "risk": "read_only", "lock": "ACCESS SHARE", "blocks": [], "findings": []}],
            "catalog": null
        })
    );
}

#[test]
fn plain_diagnostics_are_read_only_and_allowed() {
    for sql in [
        "SELECT pid, state, query FROM pg_stat_activity WHERE state <> 'idle'",
        "SELECT relname, n_dead_tup FROM pg_stat_user_tables ORDER BY n_dead_tup DESC LIMIT 10",
        "SHOW max_connections",
        "EXPLAIN SELECT * FROM orders WHERE customer_id = 42",
    ] {
        let v = explain_json(sql, &[]);
        assert_eq!(
            (v["risk"].as_str(), v["decision"].as_str()),
            (Some("read_only"), Some("allow")),
            "{sql}"
        );
    }
}

#[test]
fn statements_that_only_look_like_reads_are_never_read_only() {
    for sql in [
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE state = 'idle'",
        "SELECT pg_cancel_backend(1)",
        "SELECT set_config('statement_timeout', '0', false)",
        "SELECT nextval('orders_id_seq')",
        "SELECT setval('orders_id_seq', 1)",
        "SELECT pg_reload_conf()",
        "SELECT lo_unlink(42)",
        "SELECT dblink_exec('host=x', 'DELETE FROM t')",
        "SELECT pg_drop_replication_slot('replica1')",
        "SELECT * FROM orders FOR UPDATE",
        "SELECT * FROM orders FOR SHARE",
        "WITH gone AS (DELETE FROM orders WHERE id = 1 RETURNING id) SELECT * FROM gone",
        "EXPLAIN ANALYZE DELETE FROM orders WHERE id = 1",
        "COPY orders FROM '/tmp/orders.csv'",
        "COPY orders TO PROGRAM 'gzip > /tmp/o.gz'",
        "DO $$ BEGIN PERFORM 1; END $$",
        "CALL refresh_everything()",
        "SET ROLE admin",
        "SELECT 1; SELECT 2",
    ] {
        let v = explain_json(sql, &[]);
        assert_ne!(v["risk"], "read_only", "{sql}");
        assert_ne!(v["decision"], "allow", "{sql}");
    }
}

#[test]
fn blocking_index_in_prod_at_a_weekday_afternoon_in_new_york_is_denied() {
    let sql = "CREATE INDEX orders_customer_idx ON orders (customer_id)";
    let v = explain_json(sql, &["--env", "prod", "--at", "2026-11-18T15:00:00-05:00"]);
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["statements"][0]["lock"], "SHARE");
    assert_eq!(v["statements"][0]["blocks"], serde_json::json!(["writes"]));
    assert!(
        v["rules"]
            .as_array()
            .expect("rules")
            .contains(&serde_json::json!("no-blocking-index-at-peak"))
    );
    let night = explain_json(sql, &["--env", "prod", "--at", "2026-11-18T22:00:00-05:00"]);
    assert_eq!(
        (night["decision"].as_str(), night["approvers"].as_u64()),
        (Some("approve"), Some(1))
    );
}

#[test]
fn drop_table_in_prod_needs_two_approvers() {
    let v = explain_json("DROP TABLE orders", &[]);
    assert_eq!(
        (
            v["risk"].as_str(),
            v["decision"].as_str(),
            v["approvers"].as_u64()
        ),
        (Some("destructive"), Some("approve"), Some(2))
    );
    let staging = explain_json("DROP TABLE orders", &["--env", "staging"]);
    assert_eq!(staging["approvers"], 1);
}

#[test]
fn text_output_explains_the_lock_in_plain_words_and_the_rule() {
    let run = ward(&[
        "explain",
        "--at",
        "2026-11-18T15:00:00-05:00",
        "CREATE INDEX i ON orders (customer_id)",
    ])
    .expect_code(0);
    assert!(
        run.stdout
            .contains("SHARE — blocks writes to orders until done"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("require-concurrent-index-creation"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("decision in prod: deny"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("by rule no-blocking-index-at-peak: never build a blocking index"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains('\x1b'), "NO_COLOR is respected");
}

#[test]
fn sql_can_come_from_stdin() {
    let run = ward_in(
        &repo_root(),
        &["explain", "--format", "json", "-"],
        Some("TRUNCATE orders\n"),
    )
    .expect_code(0);
    assert_eq!(run.json()["statements"][0]["kind"], "truncate");
}

#[test]
fn usage_errors_exit_2_with_advice() {
    let run = ward(&["explain", "--at", "yesterday", "SELECT 1"]).expect_code(2);
    assert!(
        run.stderr.contains("not an RFC 3339 time"),
        "{}",
        run.stderr
    );
    let empty = tempfile::tempdir().expect("tempdir");
    let run = ward_in(empty.path(), &["explain", "SELECT 1"], None).expect_code(2);
    assert!(run.stderr.contains("pass --policy FILE"), "{}", run.stderr);
    let run = ward(&["explain"]).expect_code(2);
    assert!(run.stderr.contains("Usage"), "{}", run.stderr);
}

#[test]
fn empty_or_blank_sql_is_a_usage_error_not_a_verdict() {
    for sql in ["", "   \n\t"] {
        let run = ward(&["explain", sql]).expect_code(2);
        assert!(run.stdout.is_empty(), "{}", run.stdout);
        assert!(run.stderr.contains("no SQL to explain"), "{}", run.stderr);
    }
    let run = ward_in(&repo_root(), &["explain", "-"], Some("\n")).expect_code(2);
    assert!(run.stderr.contains("no SQL to explain"), "{}", run.stderr);
}

#[test]
fn outside_a_repository_the_advice_is_given_once_and_names_cd_and_repo() {
    let empty = tempfile::tempdir().expect("tempdir");
    let run = ward_in(empty.path(), &["explain", "SELECT 1"], None).expect_code(2);
    assert_eq!(
        run.stderr.matches("--policy FILE").count(),
        1,
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("`cd` into the repository") && run.stderr.contains("--repo DIR"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_explicit_policy_file_is_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("strict.yaml");
    std::fs::write(&file, "id: strict\nrules: []\n").expect("write");
    let run = ward(&[
        "explain",
        "--format",
        "json",
        "--policy",
        file.to_str().expect("utf8"),
        "SELECT 1",
    ])
    .expect_code(0);
    assert_eq!(
        (
            run.json()["decision"].as_str(),
            run.json()["rules"].as_array().map(Vec::len)
        ),
        (Some("deny"), Some(0))
    );
}

#[test]
fn help_teaches_with_examples_and_exit_codes() {
    let run = ward(&["--help"]).expect_code(0);
    assert!(
        run.stdout.contains("Examples:") && run.stdout.contains("Exit codes"),
        "{}",
        run.stdout
    );
    let run = ward(&["explain", "--help"]).expect_code(0);
    assert!(
        run.stdout.contains("--env") && run.stdout.contains("2026-11-18T15:00:00-05:00"),
        "{}",
        run.stdout
    );
}

#[test]
fn without_a_connection_the_verdict_says_it_is_text_only() {
    let out = ward(&["explain", "SELECT * FROM pg_stat_activity"]).expect_code(0);
    assert!(
        out.stdout.contains("this verdict is text-only"),
        "{}",
        out.stdout
    );
}

#[test]
fn with_a_url_every_name_is_resolved_and_a_planted_view_is_not_read_only() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("explain_catalog");
    pg.psql(
        &url,
        "CREATE TABLE public.orders (id int); \
         CREATE VIEW public.v_kill AS SELECT pg_terminate_backend(pid) AS k FROM pg_stat_activity;",
    );
    let plain = explain_json("SELECT count(*) FROM public.orders", &["--url", &url]);
    assert_eq!(plain["risk"], "read_only");
    assert_eq!(plain["decision"], "allow");
    let names: Vec<(&str, &str)> = plain["catalog"]
        .as_array()
        .expect("resolved names")
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap_or(""),
                r["name"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![("relation", "public.orders"), ("function", "count")]
    );
    let hostile = explain_json("SELECT * FROM public.v_kill", &["--url", &url]);
    assert_eq!(hostile["risk"], "unknown");
    assert_ne!(hostile["decision"], "allow");
    let problem = hostile["catalog"][0]["problem"].as_str().unwrap_or("");
    assert!(problem.contains("pg_terminate_backend"), "{hostile}");
}
