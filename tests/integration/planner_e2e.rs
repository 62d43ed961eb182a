//! The offline planner end to end on real PostgreSQL: each test reproduces
//! an incident, runs the shipped runbook with `ward run` (offline agent,
//! default policy, env dev), approves the remediation the planner proposes
//! with `ward approve` as a second operator, and grades the result by the
//! database's state afterwards, not by the text.
//!
//! Incidents that are visible cluster-wide (pg_stat_activity) get a server
//! of their own, so other tests' sessions cannot change what the runbook
//! sees.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::TempRepo;
use crate::pg::PgServer;
use crate::run::{approve_as, wait_log};

/// A server of this test's own; `None` (skip) only outside CI without
/// PostgreSQL, as for the shared one.
pub(crate) fn own_server(max_connections: u32) -> Option<PgServer> {
    PgServer::start_with(max_connections)
}

/// `ward run RUNBOOK` as carol, offline, waiting for approvals.
pub(crate) fn start_run(repo: &TempRepo, runbook: &str, url: &str, inputs: &[&str]) -> Child {
    let mut args = vec![
        "run",
        runbook,
        "--url",
        url,
        "--env",
        "dev",
        "--agent",
        "offline",
        "--headless",
        "--report",
        "json",
        "--wait-for-approval",
        "120",
    ];
    for i in inputs {
        args.extend(["--input", i]);
    }
    Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(&args)
        .current_dir(repo.path())
        .env("WARD_OPERATOR", "carol")
        .env_remove("WARD_REPO")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ward run starts")
}

/// Waits until the planner's proposal of `step` waits for approval,
/// approves it as bob (and dave, when two are needed) and returns the session id and the proposal's
/// `proposed` event.
pub(crate) fn approve_when_proposed(
    repo: &TempRepo,
    session: &mut Child,
    step: &str,
) -> (String, Value) {
    let sessions = repo.path().join(".ward/sessions");
    let proposal_of = |events: &[Value]| {
        events
            .iter()
            .find(|e| e["kind"] == "proposed" && e["data"]["step_id"] == step)
            .cloned()
    };
    let session = std::cell::RefCell::new(session);
    let (id, events) = wait_log(&sessions, |ev| {
        proposal_of(ev).is_some_and(|p| {
            ev.iter().any(|e| {
                e["kind"] == "gated"
                    && e["data"]["proposal"] == p["hash"]
                    && e["data"]["decision"] == "approve"
            })
        }) || matches!(session.borrow_mut().try_wait(), Ok(Some(_)))
    });
    let Some(proposed) = proposal_of(&events) else {
        let mut stderr = String::new();
        if let Some(mut e) = session.borrow_mut().stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
        }
        panic!(
            "the planner never proposed {step}; events: {}\nfacts: {}\nward: {stderr}",
            kinds(&events),
            events
                .iter()
                .filter(|e| e["kind"] == "summarized")
                .map(|e| e["data"]["facts"].to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    };
    assert_eq!(proposed["data"]["source"], "offline");
    let hash = proposed["hash"].as_str().expect("hash");
    // As many distinct operators as the verdict needs (a signal over a set
    // of sessions, `unscoped-signal`, needs two).
    let needed = events
        .iter()
        .find(|e| e["kind"] == "gated" && e["data"]["proposal"] == proposed["hash"])
        .and_then(|g| g["data"]["approvers"].as_u64())
        .unwrap_or(1);
    for who in ["bob", "dave"]
        .iter()
        .take(usize::try_from(needed).unwrap_or(1))
    {
        approve_as(repo, who, &id, hash, "checked the evidence");
    }
    (id, proposed)
}

fn kinds(events: &[Value]) -> String {
    events
        .iter()
        .map(|e| match e["data"]["step_id"].as_str() {
            Some(s) => format!("{}({s})", e["kind"].as_str().unwrap_or("?")),
            None => e["kind"].as_str().unwrap_or("?").to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The session's JSON report after it ends with exit 0.
pub(crate) fn finish(session: Child) -> Value {
    let done = session.wait_with_output().expect("session ends");
    assert_eq!(
        done.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    serde_json::from_slice(&done.stdout).expect("json report")
}

/// The report's entry for `step`.
pub(crate) fn step<'a>(report: &'a Value, step: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["step_id"] == step)
        .unwrap_or_else(|| panic!("{step} not in the report: {report:#}"))
}

pub(crate) fn executed(report: &Value) -> Vec<&str> {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["status"] == "done")
        .filter_map(|s| s["step_id"].as_str())
        .collect()
}

pub(crate) fn audit_verifies(repo: &TempRepo, id: &str) {
    repo.ward(&["audit", "verify", id]).expect_code(0);
}

const ACCOUNTS: &str = "CREATE TABLE accounts (id int PRIMARY KEY, credit_limit int NOT NULL); \
     INSERT INTO accounts SELECT g, 1000 FROM generate_series(1, 100) g;";

#[test]
fn lock_contention_behind_an_idle_in_transaction_session_is_ended_by_terminating_the_root_blocker()
{
    let Some(pg) = own_server(100) else { return };
    lock_contention_is_ended_by_terminating_the_root_blocker(&pg);
}

/// The same incident on a server of every other available major version
/// (17 and 18 in CI; see `crate::pg::versions`), each a server of its own.
#[test]
fn lock_contention_is_ended_by_the_offline_planner_on_every_available_server_version() {
    let Some(default) = crate::pg::server() else {
        return;
    };
    let default_major = default.major();
    for (major, bin) in crate::pg::versions() {
        // The test above. On 13 the runbook runs its `sql` (wait times from
        // state_change, 1-argument pg_terminate_backend); from 14 on its
        // `sql_by_version` alternatives.
        if *major == default_major {
            continue;
        }
        let pg = PgServer::start_in(bin.clone(), 100);
        assert_eq!(pg.major(), *major);
        lock_contention_is_ended_by_terminating_the_root_blocker(&pg);
    }
}

/// An idle-in-transaction psql holds a row lock with two updates queued
/// behind it; `ward run pg-lock-contention` terminates it on approval.
fn lock_contention_is_ended_by_terminating_the_root_blocker(pg: &PgServer) {
    let url = pg.fresh_db("locks");
    pg.psql(&url, ACCOUNTS);
    // A forgotten psql transaction holds the row lock...
    let _blocker = pg.session(
        &url,
        "postgres",
        "forgotten-psql",
        "BEGIN; UPDATE accounts SET credit_limit = 5000 WHERE id = 7;",
    );
    pg.wait_for(
        &url,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'forgotten-psql' AND state = 'idle in transaction'",
        "1",
        Duration::from_secs(10),
    );
    let blocker_pid = pg.psql(
        &url,
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'forgotten-psql'",
    );
    // ... and two application sessions queue behind it.
    let mut waiters: Vec<Child> = (0..2)
        .map(|n| {
            pg.psql_background(
                &url,
                &format!(
                    "UPDATE accounts SET credit_limit = credit_limit + {} WHERE id = 7",
                    n + 1
                ),
            )
        })
        .collect();
    pg.wait_for(
        &url,
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
        "2",
        Duration::from_secs(10),
    );
    std::thread::sleep(Duration::from_millis(2100));

    let repo = TempRepo::copy_of_repo();
    let mut session = start_run(&repo, "pg-lock-contention", &url, &["min_wait_seconds=1"]);
    let (id, proposed) = approve_when_proposed(&repo, &mut session, "terminate_root_blocker");
    // The planner took the pid from the tree, and the approver saw it.
    assert_eq!(
        proposed["data"]["inputs"]["blocker_pid"].to_string(),
        blocker_pid
    );
    assert!(
        proposed["data"]["rationale"]
            .as_str()
            .unwrap_or("")
            .contains("from blocking_tree.root_pid"),
        "{proposed:#}"
    );
    let report = finish(session);

    // An idle-in-transaction blocker has no statement to cancel.
    assert!(
        report["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .all(|s| s["step_id"] != "cancel_root_blocker"),
        "{report:#}"
    );
    assert_eq!(step(&report, "terminate_root_blocker")["verified"], true);
    // Drawn from the recheck after the terminate: nobody waits any more,
    // and the blocker that was is named.
    let conclusion = report["conclusion"].as_str().unwrap_or("");
    assert!(
        conclusion.contains("The incident has cleared: 0 sessions wait on a lock now")
            && conclusion.contains(&format!(
                "The root blocker was pid {blocker_pid} (application forgotten-psql, user postgres, idle in transaction"
            ))
            && conclusion.contains("UPDATE accounts SET credit_limit = 5000 WHERE id = 7;"),
        "{conclusion}"
    );

    // Graded by the database: the blocker is gone, its update rolled back,
    // and both queued updates went through.
    for w in &mut waiters {
        assert!(w.wait().expect("waiter ends").success());
    }
    assert_eq!(
        pg.psql(
            &url,
            &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {blocker_pid}")
        ),
        "0"
    );
    assert_eq!(
        pg.psql(&url, "SELECT credit_limit FROM accounts WHERE id = 7"),
        "1003"
    );
    assert_eq!(
        pg.psql(
            &url,
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        ),
        "0"
    );
    audit_verifies(&repo, &id);
}

#[test]
fn sessions_idle_in_transaction_past_the_threshold_are_terminated_and_younger_ones_kept() {
    let Some(pg) = own_server(100) else { return };
    let url = pg.fresh_db("iit");
    pg.psql(&url, ACCOUNTS);
    pg.psql(&url, "CREATE ROLE app LOGIN");
    pg.psql(&url, "GRANT ALL ON accounts TO app");
    let _stuck = pg.session(
        &url,
        "app",
        "billing-worker",
        "BEGIN; UPDATE accounts SET credit_limit = 0 WHERE id = 3;",
    );
    pg.wait_for(
        &url,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'billing-worker' AND state = 'idle in transaction'",
        "1",
        Duration::from_secs(10),
    );
    let mut waiter =
        pg.psql_background(&url, "UPDATE accounts SET credit_limit = 2000 WHERE id = 3");
    // The runbook's smallest threshold is 30 s: let the incident age.
    std::thread::sleep(Duration::from_secs(31));
    // A young transaction that the threshold must spare.
    let _young = pg.session(&url, "app", "report-job", "BEGIN; SELECT 1;");
    pg.wait_for(
        &url,
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'",
        "2",
        Duration::from_secs(10),
    );

    let repo = TempRepo::copy_of_repo();
    let mut session = start_run(
        &repo,
        "pg-idle-in-transaction",
        &url,
        &["max_idle_seconds=30"],
    );
    let (id, _) = approve_when_proposed(&repo, &mut session, "terminate_idle_in_transaction");
    let report = finish(session);
    assert_eq!(
        step(&report, "terminate_idle_in_transaction")["verified"],
        true
    );
    // Drawn from the recheck after the terminate, not from the facts
    // that called for it.
    let conclusion = report["conclusion"].as_str().unwrap_or("");
    assert!(
        conclusion.contains(
            "The incident has cleared: 0 sessions idle in transaction over the threshold now (was 1), 0 blocking others (was 1)"
        ),
        "{conclusion}"
    );

    // Graded by the database.
    assert!(waiter.wait().expect("waiter ends").success());
    assert_eq!(
        pg.psql(&url, "SELECT credit_limit FROM accounts WHERE id = 3"),
        "2000"
    );
    assert_eq!(
        pg.psql(
            &url,
            "SELECT string_agg(application_name, ',') FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'"
        ),
        "report-job"
    );
    audit_verifies(&repo, &id);
}

#[test]
fn exhausted_connection_slots_held_by_an_idle_pool_are_freed_by_terminating_only_long_idle_sessions()
 {
    // 20 slots, 3 reserved for superusers: 17 for the application.
    let Some(pg) = own_server(20) else { return };
    let url = pg.fresh_db("conns");
    pg.psql(&url, "CREATE ROLE app LOGIN");
    let _old: Vec<_> = (0..13)
        .map(|_| pg.session(&url, "app", "leaky-pool", "SELECT 1;"))
        .collect();
    pg.wait_for(
        &url,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'leaky-pool' AND state = 'idle'",
        "13",
        Duration::from_secs(20),
    );
    // The runbook's smallest threshold is 60 s.
    std::thread::sleep(Duration::from_secs(61));
    let _fresh: Vec<_> = (0..3)
        .map(|_| pg.session(&url, "app", "leaky-pool", "SELECT 1;"))
        .collect();
    pg.wait_for(
        &url,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'leaky-pool' AND state = 'idle'",
        "16",
        Duration::from_secs(20),
    );

    let repo = TempRepo::copy_of_repo();
    let mut session = start_run(
        &repo,
        "pg-connection-exhaustion",
        &url,
        &["min_idle_seconds=60"],
    );
    let (id, _) = approve_when_proposed(&repo, &mut session, "terminate_idle");
    let report = finish(session);
    assert_eq!(step(&report, "terminate_idle")["verified"], true);
    let conclusion = report["conclusion"].as_str().unwrap_or("");
    // Drawn from the recheck after the terminate.
    assert!(
        conclusion.starts_with("The incident has cleared: "),
        "{conclusion}"
    );
    assert!(
        conclusion.contains("Application leaky-pool (user app"),
        "{conclusion}"
    );

    // Graded by the database: the 13 long-idle sessions are gone, the 3
    // fresh ones stay, and the slots are free again.
    assert_eq!(
        pg.psql(
            &url,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'leaky-pool'"
        ),
        "3"
    );
    audit_verifies(&repo, &id);
}

/// A client that runs `sql` over and over on its own thread until dropped:
/// the traffic a sampling window must see.
pub(crate) struct Traffic {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl Traffic {
    pub(crate) fn start(pg: &'static PgServer, url: &str, sql: &str) -> Traffic {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, url, sql) = (stop.clone(), url.to_string(), sql.to_string());
        let thread = std::thread::spawn(move || {
            let mut runs = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                pg.psql(&url, &sql);
                runs += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            runs
        });
        Traffic {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the client; how many times it ran the statement.
    pub(crate) fn stop(mut self) -> usize {
        self.halt()
    }

    fn halt(&mut self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread
            .take()
            .map_or(0, |t| t.join().expect("traffic thread"))
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.halt();
    }
}

#[test]
fn a_table_hit_by_sequential_scans_gets_a_valid_concurrent_index_that_the_planner_then_uses() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("missing_index");
    pg.psql(
        &url,
        "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int NOT NULL, total_cents int NOT NULL); \
         INSERT INTO orders SELECT g, g % 5000, g % 977 FROM generate_series(1, 50000) g; \
         CREATE TABLE customers (id int PRIMARY KEY, name text); \
         INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 20000) g; \
         ANALYZE;",
    );
    let plan = "EXPLAIN (COSTS OFF) SELECT * FROM orders WHERE customer_id = 42";
    assert!(pg.psql(&url, plan).contains("Seq Scan"));
    // The order-history page keeps looking orders up by customer, each a
    // full scan, while ward samples.
    let page = Traffic::start(
        pg,
        &url,
        "SELECT count(*) FROM orders WHERE customer_id = 42",
    );

    let repo = TempRepo::copy_of_repo();
    // The engineer names the column and the index; the table comes from
    // the evidence.
    let mut session = start_run(
        &repo,
        "pg-missing-index",
        &url,
        &[
            "column=customer_id",
            "index_name=orders_customer_id_idx",
            "min_seq_tup_read=100000",
            "sample_seconds=2",
        ],
    );
    let (id, proposed) = approve_when_proposed(&repo, &mut session, "create_index");
    assert_eq!(proposed["data"]["inputs"]["table"], "public.orders");
    // The engineer's --input wins over the advisor's (identical) proposal:
    // only the table is added from a fact.
    assert!(
        proposed["data"]["inputs"].get("column").is_none()
            && proposed["data"]["inputs"].get("index_name").is_none(),
        "{proposed:#}"
    );
    assert!(
        proposed["data"]["sql"]
            .as_str()
            .unwrap_or("")
            .contains("CREATE INDEX CONCURRENTLY IF NOT EXISTS"),
        "{proposed:#}"
    );
    let report = finish(session);
    assert!(page.stop() > 0);
    assert_eq!(step(&report, "create_index")["verified"], true);
    // The recheck samples again: the same lookups now use the index.
    assert_eq!(
        executed(&report),
        [
            "scan_headline",
            "seq_scan_heavy",
            "unused_indexes",
            "invalid_indexes",
            "table_indexes",
            "table_columns",
            "pgss_status",
            "index_advice",
            "index_name_taken",
            "cic_blockers",
            "create_index",
            "check_index_valid",
            "seq_scan_heavy"
        ]
    );
    let conclusion = report["conclusion"].as_str().unwrap_or("");
    assert!(
        conclusion.contains("The incident has cleared")
            && conclusion.contains("Before it, public.orders had")
            && conclusion.contains("(100.0% of its scans sequential)")
            && conclusion.contains("The new index is built and valid"),
        "{conclusion}"
    );

    // Graded by the database: a valid btree on orders(customer_id), used.
    assert_eq!(
        pg.psql(
            &url,
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE c.relname = 'orders_customer_id_idx' AND i.indrelid = 'orders'::regclass"
        ),
        "t"
    );
    pg.psql(&url, "ANALYZE orders");
    assert!(
        pg.psql(&url, plan).contains("orders_customer_id_idx"),
        "{}",
        pg.psql(&url, plan)
    );
    audit_verifies(&repo, &id);
}

/// On every server version found (the statistics snapshot works
/// differently before 15: a per-transaction file snapshot, then
/// `stats_fetch_consistency`).
#[test]
fn only_a_table_scanned_during_the_sampling_window_is_named_not_one_scanned_before_it() {
    if crate::pg::server().is_none() {
        return;
    }
    for major in crate::pg::versions().keys() {
        let Some(pg) = crate::pg::server_of(*major) else {
            continue;
        };
        only_the_table_scanned_during_the_window_is_named(pg);
    }
}

fn only_the_table_scanned_during_the_window_is_named(pg: &'static PgServer) {
    let url = pg.fresh_db("seq_scan_window");
    pg.psql(
        &url,
        "CREATE TABLE hot (id int, v int); INSERT INTO hot SELECT g, g % 100 FROM generate_series(1, 20000) g; \
         CREATE TABLE cold (id int, v int); INSERT INTO cold SELECT g, g % 100 FROM generate_series(1, 20000) g; \
         ANALYZE;",
    );
    // Last month's report: cold was read by full scans far more, in total,
    // than hot will be during the window.
    // `v + 0`: a filter no plain index serves, so the index advisor
    // proposes nothing and the session is diagnosis only.
    for _ in 0..40 {
        pg.psql(&url, "SELECT count(*) FROM cold WHERE v + 0 = 7");
    }
    let traffic = Traffic::start(pg, &url, "SELECT count(*) FROM hot WHERE v + 0 = 7");
    let repo = TempRepo::copy_of_repo();
    let session = start_run(
        &repo,
        "pg-missing-index",
        &url,
        &[
            "min_seq_tup_read=40000",
            "min_table_rows=1000",
            "sample_seconds=2",
        ],
    );
    let report = finish(session);
    assert!(traffic.stop() > 0);
    // One row: hot, the table scanned during the window; cold's larger
    // total since the reset is history.
    assert_eq!(step(&report, "seq_scan_heavy")["rows_seen"], 1);
    let conclusion = report["conclusion"].as_str().unwrap_or("");
    assert!(
        conclusion.starts_with("public.hot (")
            && conclusion.contains(
                "No plain-column index is advised for SELECT count(*) FROM hot WHERE v + $1 = $2"
            )
            && !conclusion.contains("cold"),
        "{conclusion}"
    );
    assert!(
        pg.psql(
            &url,
            "SELECT seq_tup_read >= 800000 FROM pg_stat_user_tables WHERE relname = 'cold'"
        ) == "t"
    );
}

#[test]
fn stale_statistics_are_analyzed_and_the_recheck_gives_the_top_statements_mean_before_and_after() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("slow_queries_recheck");
    // A bulk load autovacuum has not analyzed yet: every row changed since
    // the last ANALYZE.
    pg.psql(
        &url,
        "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; \
         CREATE TABLE items (id int, v int) WITH (autovacuum_enabled = off); \
         CREATE INDEX items_v_idx ON items (v); \
         INSERT INTO items SELECT g, g % 100 FROM generate_series(1, 50000) g;",
    );
    let traffic = Traffic::start(pg, &url, "SELECT count(*) FROM items WHERE v = 7");
    let repo = TempRepo::copy_of_repo();
    let mut session = start_run(&repo, "pg-slow-queries", &url, &["sample_seconds=2"]);
    let (id, proposed) = approve_when_proposed(&repo, &mut session, "analyze_table");
    assert_eq!(proposed["data"]["inputs"]["table"], "public.items");
    let report = finish(session);
    assert!(traffic.stop() > 0);
    assert_eq!(report["outcome"], "concluded", "{report:#}");
    assert_eq!(step(&report, "analyze_table")["verified"], true);
    // items is indexed on v: the advisor proposes no index, ANALYZE is the fix.
    assert_eq!(
        executed(&report)[executed(&report).len() - 4..],
        [
            "analyze_table",
            "top_statements",
            "stale_stats",
            "index_advice"
        ]
    );
    let conclusion = report["conclusion"].as_str().unwrap_or("");
    assert!(
        conclusion.contains(
            "Statistics are fresh again: public.items was analyzed (it had changed 100.0%); \
             no table has stale statistics now (was 1)."
        ) && conclusion.contains("in the 2s window before"),
        "{conclusion}"
    );
    // Graded by the database: the table has statistics now.
    assert_eq!(
        pg.psql(
            &url,
            "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'items'"
        ),
        "t"
    );
    audit_verifies(&repo, &id);
}

/// One `ward run pg-add-column-backfill` session: add_column and one
/// backfill batch approved; the report.
fn backfill_session(url: &str, extra: &[&str]) -> Value {
    // A repository per session: the approval helper watches the only log.
    let repo = &TempRepo::copy_of_repo();
    let mut inputs = vec![
        "table=public.accounts",
        "column=balance_big",
        "source_column=balance",
        "check_name=accounts_balance_big_nn",
        "batch_size=1000",
        "batch_pause_seconds=0",
    ];
    inputs.extend_from_slice(extra);
    let mut session = start_run(repo, "pg-add-column-backfill", url, &inputs);
    approve_when_proposed(repo, &mut session, "add_column");
    approve_when_proposed(repo, &mut session, "backfill_batch");
    finish(session)
}

#[test]
fn keyset_backfill_batches_start_after_the_previous_batchs_last_key_and_never_rewalk_filled_rows() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("keyset_backfill");
    pg.psql(
        &url,
        "CREATE TABLE accounts (id bigint PRIMARY KEY, balance int); \
         INSERT INTO accounts SELECT g, g % 1000 FROM generate_series(1, 5000) g; ANALYZE accounts;",
    );
    // Batch 1: no after_key; the planner takes it from backfill_progress
    // (the key before the first unfilled row).
    let first = backfill_session(&url, &[]);
    let conclusion = first["conclusion"].as_str().unwrap_or("");
    assert!(
        conclusion.contains("this batch filled 1000 rows, up to key 1000")
            && conclusion.contains("--input after_key=1000"),
        "{conclusion}"
    );
    // Batches 2 and 3 start after the last key the previous one filled.
    let second = backfill_session(&url, &["after_key=1000"]);
    assert!(
        second["conclusion"]
            .as_str()
            .unwrap_or("")
            .contains("this batch filled 1000 rows, up to key 2000"),
        "{second:#}"
    );
    let third = backfill_session(&url, &["after_key=2000"]);
    assert!(
        third["conclusion"]
            .as_str()
            .unwrap_or("")
            .contains("up to key 3000; before it 2000 of 5000 rows were filled"),
        "{third:#}"
    );
    assert_eq!(
        executed(&third),
        [
            "table_overview",
            "add_column",
            "backfill_progress",
            "batch_lag",
            "backfill_batch"
        ]
    );
    // Graded by the database: exactly keys 1..3000 filled, from the source.
    assert_eq!(
        pg.psql(
            &url,
            "SELECT count(*), min(id), max(id), bool_and(balance_big = balance) \
             FROM accounts WHERE balance_big IS NOT NULL"
        ),
        "3000|1|3000|t"
    );
    // The next batch's rows are found by an index range scan that starts
    // at after_key: the 3000 filled rows are not walked.
    let plan = pg.psql(
        &url,
        "SET enable_seqscan = off; EXPLAIN (COSTS OFF) SELECT id FROM accounts \
         WHERE id > 3000 AND balance_big IS NULL AND balance IS NOT NULL \
         ORDER BY id LIMIT 1000 FOR UPDATE SKIP LOCKED",
    );
    assert!(
        plan.contains("Index Scan using accounts_pkey") && plan.contains("Index Cond: (id > 3000)"),
        "{plan}"
    );
}
