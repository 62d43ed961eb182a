//! `ward step` is a logged session: the same admission as `ward run`
//! (table sizes included, so `min_rows` rules fire), a hash-chained log
//! under `.ward/sessions`, exit 3 for what needs approval, 4 for a deny.

use crate::run::{fixture, use_policy};

const RUNBOOK: &str = r#"id: orders-shape
title: Look at and reshape orders
version: 1
engines: [postgres]
steps:
  - id: count_orders
    kind: diagnostic
    sql: SELECT count(*) AS n FROM public.orders
  - id: add_note
    kind: migration
    sql: ALTER TABLE public.orders ADD COLUMN note text
    rollback: ALTER TABLE public.orders DROP COLUMN note
conclusions:
  - when: "true"
    text: looked
"#;

/// Schema changes wait for a human, except on tables of 50 rows or more,
/// which this team never changes from ward.
const POLICY: &str = "id: default\nrules:\n  - id: reads-run\n    when: { risk: read_only }\n    decision: allow\n  - id: big-tables-never\n    when: { risk: schema, min_rows: 50 }\n    decision: deny\n    message: tables this big are changed by a migration tool\n  - id: schema-needs-one\n    when: { risk: schema }\n    decision: approve\n";

fn logs(repo: &crate::harness::TempRepo) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(repo.path().join(".ward/sessions"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn events(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("log")
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn ward_step_logs_a_session_and_a_min_rows_rule_fires_on_the_table_size() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = fixture(pg);
    pg.psql(&url, "ANALYZE orders");
    let repo = crate::harness::TempRepo::copy_of_repo();
    repo.write("runbooks/orders-shape.yaml", RUNBOOK);
    use_policy(&repo, POLICY);

    let read = repo
        .ward(&[
            "step",
            "orders-shape",
            "count_orders",
            "--url",
            &url,
            "--env",
            "dev",
            "--format",
            "json",
        ])
        .expect_code(0);
    let v = read.json();
    assert_eq!(v["step_id"], "count_orders");
    assert_eq!(v["evidence"]["facts"]["n"], 60, "{v}");
    let all = logs(&repo);
    assert_eq!(all.len(), 1, "one session log");
    assert_eq!(v["log"], all[0].display().to_string());
    let kinds: Vec<String> = events(&all[0])
        .iter()
        .filter_map(|e| e["kind"].as_str().map(str::to_string))
        .collect();
    for k in [
        "session_started",
        "proposed",
        "gated",
        "readmitted",
        "executing",
        "executed",
        "session_ended",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing from {kinds:?}");
    }
    let id = all[0].file_stem().and_then(|s| s.to_str()).expect("id");
    repo.ward(&["audit", "verify", id]).expect_code(0);

    let change = repo
        .ward(&[
            "step",
            "orders-shape",
            "add_note",
            "--url",
            &url,
            "--env",
            "dev",
        ])
        .expect_code(4);
    assert!(
        change.stderr.contains("big-tables-never")
            && change
                .stderr
                .contains("tables this big are changed by a migration tool"),
        "{}",
        change.stderr
    );
    let after = logs(&repo);
    assert_eq!(after.len(), 2, "the refused step has its session log too");
    let new = after.iter().find(|p| !all.contains(p)).expect("a new log");
    let ev = events(new);
    let analyzed = ev
        .iter()
        .find(|e| e["kind"] == "analyzed")
        .expect("analyzed");
    assert_eq!(analyzed["data"]["table_size"]["rows"], 60, "{analyzed}");
    let gated = ev.iter().find(|e| e["kind"] == "gated").expect("gated");
    assert_eq!(gated["data"]["decision"], "deny");
    assert!(!ev.iter().any(|e| e["kind"] == "executing"));
    assert_eq!(
        pg.psql(&url, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'note'"),
        "0"
    );

    // On a small table the same step only needs a human: exit 3, not run.
    let small = pg.fresh_db("stepsmall");
    pg.psql(
        &small,
        "CREATE TABLE orders (id int); INSERT INTO orders VALUES (1); ANALYZE orders;",
    );
    let waits = repo
        .ward(&[
            "step",
            "orders-shape",
            "add_note",
            "--url",
            &small,
            "--env",
            "dev",
        ])
        .expect_code(3);
    assert!(
        waits.stderr.contains("needs 1 approval"),
        "{}",
        waits.stderr
    );
}

#[test]
fn a_min_rows_rule_fires_on_a_quoted_mixed_case_table() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("stepquoted");
    pg.psql(
        &url,
        r#"CREATE TABLE public."BigOrders" (id int); INSERT INTO public."BigOrders" SELECT generate_series(1, 60); ANALYZE public."BigOrders""#,
    );
    let repo = crate::harness::TempRepo::copy_of_repo();
    repo.write(
        "runbooks/orders-shape.yaml",
        &RUNBOOK.replace("public.orders", r#"public."BigOrders""#),
    );
    use_policy(&repo, POLICY);
    let change = repo
        .ward(&[
            "step",
            "orders-shape",
            "add_note",
            "--url",
            &url,
            "--env",
            "dev",
        ])
        .expect_code(4);
    assert!(
        change.stderr.contains("big-tables-never"),
        "{}",
        change.stderr
    );
    let ev = events(logs(&repo).last().expect("a log"));
    let analyzed = ev
        .iter()
        .find(|e| e["kind"] == "analyzed")
        .expect("analyzed");
    assert_eq!(analyzed["data"]["table_size"]["rows"], 60, "{analyzed}");
}
