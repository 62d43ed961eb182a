//! The data-level incident runbooks on real PostgreSQL: deadlocks,
//! sequences and integer keys near their maximum, the online int-to-bigint
//! key migration, and invalid indexes. Each test reproduces the incident
//! (a real deadlock between two psql sessions, a sequence set near its
//! maximum with `setval`, a unique index built concurrently over
//! duplicates), runs the shipped runbook with `ward run` (offline planner,
//! default policy, env dev), approves what it proposes as other operators,
//! and grades the database's state afterwards and what the conclusion
//! names.

use std::time::Duration;

use serde_json::Value;

use crate::harness::TempRepo;
use crate::pg::PgServer;
use crate::planner_e2e::{
    approve_when_proposed, audit_verifies, executed, finish, start_run, step,
};

/// The facts `step` gave in the session whose report this is (its last run
/// when a recheck ran it again), from the session log.
fn facts_of(report: &Value, step_id: &str) -> Value {
    let log = report["log"].as_str().expect("the report names its log");
    let text = std::fs::read_to_string(log).unwrap_or_else(|e| panic!("{log}: {e}"));
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    let proposals: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "proposed" && e["data"]["step_id"] == step_id)
        .map(|e| &e["hash"])
        .collect();
    events
        .iter()
        .rev()
        .find(|e| e["kind"] == "summarized" && proposals.contains(&&e["data"]["proposal"]))
        .map(|e| e["data"]["facts"].clone())
        .unwrap_or_else(|| panic!("{step_id} was not summarized in {log}"))
}

fn conclusion(report: &Value) -> &str {
    report["conclusion"].as_str().unwrap_or("")
}

fn assert_names(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }
}

const ACCOUNTS: &str = "CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL); \
     INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 10) g;";

/// Two psql sessions update rows 1 and 2 of accounts in opposite orders,
/// a second apart, each statement sent on its own (as an application
/// does): one of them is aborted with "deadlock detected".
fn make_a_deadlock(pg: &PgServer, url: &str) {
    let deadlocks = "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()";
    let before: i64 = pg.psql(url, deadlocks).parse().unwrap_or(0);
    let _first = pg.session(
        url,
        "postgres",
        "transfer-a",
        "BEGIN;\nUPDATE accounts SET balance = balance - 1 WHERE id = 1;\nSELECT pg_sleep(1);\n\
         UPDATE accounts SET balance = balance + 1 WHERE id = 2;\nCOMMIT;",
    );
    let _second = pg.session(
        url,
        "postgres",
        "transfer-b",
        "BEGIN;\nUPDATE accounts SET balance = balance - 1 WHERE id = 2;\nSELECT pg_sleep(1);\n\
         UPDATE accounts SET balance = balance + 1 WHERE id = 1;\nCOMMIT;",
    );
    pg.wait_for(
        url,
        &format!("SELECT ({deadlocks}) > {before}"),
        "t",
        Duration::from_secs(20),
    );
    pg.wait_for(
        url,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'transfer-%' AND state <> 'idle'",
        "0",
        Duration::from_secs(10),
    );
}

/// Waits until ward's sampling statement sleeps in its window.
fn wait_for_the_window(pg: &PgServer, url: &str) {
    pg.wait_for(
        url,
        "SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name LIKE 'ward %' \
         AND query LIKE '%pg_sleep%' AND state = 'active'",
        "t",
        Duration::from_secs(30),
    );
}

/// Server settings that make the log readable (a logging collector, so
/// pg_current_logfile) and log each lock wait with the row it waits for.
const LOGGED: &[(&str, &str)] = &[
    ("logging_collector", "on"),
    ("log_lock_waits", "on"),
    ("deadlock_timeout", "200ms"),
];

#[test]
fn a_deadlock_during_the_window_is_counted_and_the_server_log_names_both_statements_and_the_table()
{
    let Some(pg) = PgServer::start_with_options(30, LOGGED) else {
        return;
    };
    deadlock_is_named_from_the_server_log(&pg);
}

/// The same on a server of every other available major version (17 and
/// 18 in CI): the log's deadlock report is parsed the same way.
#[test]
fn the_deadlock_report_in_the_server_log_is_read_on_every_available_server_version() {
    let Some(default) = crate::pg::server() else {
        return;
    };
    let default_major = default.major();
    for (major, bin) in crate::pg::versions() {
        if *major == default_major {
            continue;
        }
        let pg = PgServer::start_in_with_options(bin.clone(), 30, LOGGED);
        assert_eq!(pg.major(), *major);
        deadlock_is_named_from_the_server_log(&pg);
    }
}

fn deadlock_is_named_from_the_server_log(pg: &PgServer) {
    let url = pg.fresh_db("deadlocks");
    pg.psql(&url, ACCOUNTS);
    let repo = TempRepo::copy_of_repo();
    let mut session = start_run(&repo, "pg-deadlocks", &url, &["sample_seconds=6"]);
    wait_for_the_window(pg, &url);
    make_a_deadlock(pg, &url);
    let (id, _) = approve_when_proposed(&repo, &mut session, "deadlock_log");
    let report = finish(session);

    let headline = facts_of(&report, "deadlock_headline");
    assert_eq!(headline["window_deadlocks"], 1, "{headline}");
    assert_eq!(headline["log_readable"], true, "{headline}");
    let log = facts_of(&report, "deadlock_log");
    assert_eq!(log["deadlocks_in_log"], 1, "{log}");
    assert_names(
        conclusion(&report),
        &[
            "1 deadlock(s) in deadlocks_",
            "during the 6s window",
            "The server log holds 1 deadlock report(s)",
            "UPDATE accounts SET balance = balance + 1 WHERE id = 2",
            "UPDATE accounts SET balance = balance + 1 WHERE id = 1",
            "Tables: accounts",
            "Lock order: pid ",
            "tuple (0,",
            "the transactions lock the same rows in opposite orders",
            "FOR UPDATE",
        ],
    );
    audit_verifies(&repo, &id);
}

#[test]
fn without_a_readable_log_a_deadlock_is_traced_to_the_table_its_statements_write() {
    // The shared server has no logging collector: the log cannot be read,
    // so pg_stat_statements names the statements.
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("deadlocks_nolog");
    pg.psql(&url, ACCOUNTS);
    let repo = TempRepo::copy_of_repo();
    let session = start_run(&repo, "pg-deadlocks", &url, &["sample_seconds=6"]);
    wait_for_the_window(pg, &url);
    make_a_deadlock(pg, &url);
    let report = finish(session);

    assert!(!executed(&report).contains(&"deadlock_log"), "{report:#}");
    assert_names(
        conclusion(&report),
        &[
            "1 deadlock(s) in deadlocks_nolog_",
            "The server log was not read (logging_collector off, readable by ward: false)",
            "the table written by the most row-locking statements is accounts",
            "UPDATE accounts SET balance = balance",
            "turn on log_lock_waits",
        ],
    );
}

/// `ward run pg-sequence-exhaustion` with a short window while `load`
/// inserts rows, the report afterwards.
fn sequence_session(
    pg: &'static PgServer,
    url: &str,
    load: &str,
    approve: Option<&str>,
) -> (TempRepo, String, Value) {
    let repo = TempRepo::copy_of_repo();
    let mut session = start_run(&repo, "pg-sequence-exhaustion", url, &["sample_seconds=3"]);
    wait_for_the_window(pg, url);
    let mut inserts = pg.psql_background(url, load);
    let id = match approve {
        Some(step_id) => approve_when_proposed(&repo, &mut session, step_id).0,
        None => String::new(),
    };
    let report = finish(session);
    assert!(inserts.wait().expect("inserts end").success());
    (repo, id, report)
}

#[test]
fn an_int4_serial_key_near_its_maximum_is_named_with_its_growth_and_days_left() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("seq_int4");
    pg.psql(
        &url,
        "CREATE TABLE public.orders (id serial PRIMARY KEY, note text); \
         CREATE TABLE public.audit (id bigserial PRIMARY KEY); \
         SELECT setval('public.orders_id_seq', 2100000000);",
    );
    // About 40 inserts a second during the 3 s window.
    let load = "DO $$ BEGIN FOR i IN 1..100 LOOP INSERT INTO public.orders (note) VALUES ('x'); \
                PERFORM pg_sleep(0.025); END LOOP; END $$;";
    let (_repo, _, report) = sequence_session(pg, &url, load, None);

    let usage = facts_of(&report, "sequence_usage");
    assert_eq!(usage["table_name"], "public.orders", "{usage}");
    assert_eq!(usage["column_type"], "integer", "{usage}");
    assert_eq!(usage["fix"], "pg-int-to-bigint", "{usage}");
    let growth = usage["window_growth"].as_i64().unwrap_or(0);
    assert!(growth > 0, "no growth in the window: {usage}");
    let days = usage["days_left"].as_f64().unwrap_or(-1.0);
    assert!(days > 0.0 && days < 100_000.0, "{usage}");
    // Nothing to widen: the column itself is int4.
    assert!(!executed(&report).contains(&"widen_sequence"));
    assert_names(
        conclusion(&report),
        &[
            "public.orders.id (integer) has used 97.",
            "(sequence public.orders_id_seq)",
            "per day (from the window)",
            "days left",
            "run pg-int-to-bigint --input table=public.orders --input column=id",
        ],
    );
}

#[test]
fn an_int_sequence_behind_a_bigint_column_is_widened_and_keeps_counting_past_the_int_range() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("seq_widen");
    pg.psql(
        &url,
        "CREATE SEQUENCE public.events_id_seq AS integer; \
         CREATE TABLE public.events (id bigint PRIMARY KEY DEFAULT nextval('public.events_id_seq'), kind text); \
         ALTER SEQUENCE public.events_id_seq OWNED BY public.events.id; \
         SELECT setval('public.events_id_seq', 2147000000);",
    );
    let load = "DO $$ BEGIN FOR i IN 1..60 LOOP INSERT INTO public.events (kind) VALUES ('x'); \
                PERFORM pg_sleep(0.03); END LOOP; END $$;";
    let (repo, id, report) = sequence_session(pg, &url, load, Some("widen_sequence"));

    assert_eq!(step(&report, "widen_sequence")["verified"], true);
    assert_eq!(report["outcome"], "concluded", "{report:#}");
    assert_names(
        conclusion(&report),
        &[
            "The incident has cleared: sequence public.events_id_seq",
            "(used by public.events.id, bigint) was declared integer",
            "it is bigint now",
        ],
    );
    // Graded by the database: the sequence is bigint and goes on past the
    // integer range.
    pg.psql(&url, "SELECT setval('public.events_id_seq', 2147483647)");
    assert_eq!(
        pg.psql(
            &url,
            "WITH i AS (INSERT INTO public.events (kind) VALUES ('after') RETURNING id) SELECT id FROM i"
        ),
        "2147483648"
    );
    assert_eq!(
        pg.psql(
            &url,
            "SELECT format_type(seqtypid, NULL) FROM pg_sequence WHERE seqrelid = 'public.events_id_seq'::regclass"
        ),
        "bigint"
    );
    audit_verifies(&repo, &id);
}

/// One `ward run pg-int-to-bigint` session approving `steps` in order.
fn migration_session(url: &str, steps: &[&str], extra: &[&str]) -> Value {
    let repo = &TempRepo::copy_of_repo();
    let mut inputs = vec![
        "table=public.accounts",
        "column=id",
        "new_column=id_big",
        "old_column=id_int",
        "index_name=accounts_id_big_key",
        "check_name=accounts_id_big_not_null",
        "batch_pause_seconds=0",
    ];
    inputs.extend_from_slice(extra);
    let mut session = start_run(repo, "pg-int-to-bigint", url, &inputs);
    let mut id = String::new();
    for s in steps {
        id = approve_when_proposed(repo, &mut session, s).0;
    }
    let report = finish(session);
    audit_verifies(repo, &id);
    report
}

/// The online key migration end to end on one server.
fn int_key_is_migrated_to_bigint_online(pg: &PgServer) {
    let url = pg.fresh_db("int_to_bigint");
    pg.psql(
        &url,
        "CREATE TABLE public.accounts (id serial PRIMARY KEY, balance int NOT NULL); \
         INSERT INTO public.accounts (balance) SELECT g % 1000 FROM generate_series(1, 3000) g; \
         ANALYZE public.accounts;",
    );
    let before = pg.psql(
        &url,
        "SELECT count(*), sum(id), sum(balance) + 1 FROM public.accounts",
    );

    // Session 1: the column, the trigger, and one batch that fills them all.
    let first = migration_session(
        &url,
        &[
            "add_bigint_column",
            "create_sync_function",
            "create_sync_trigger",
            "backfill_batch",
        ],
        &["batch_size=5000"],
    );
    assert_eq!(
        executed(&first),
        [
            "column_overview",
            "add_bigint_column",
            "create_sync_function",
            "create_sync_trigger",
            "backfill_progress",
            "batch_lag",
            "backfill_batch"
        ],
        "{first:#}"
    );
    assert_names(
        conclusion(&first),
        &["this batch filled 3000 rows, up to key 3000"],
    );
    // The application keeps writing: the trigger fills the copy.
    pg.psql(
        &url,
        "INSERT INTO public.accounts (balance) VALUES (7), (8); \
         UPDATE public.accounts SET balance = balance + 1 WHERE id = 5",
    );
    assert_eq!(
        pg.psql(
            &url,
            "SELECT count(*) FROM public.accounts WHERE id_big IS DISTINCT FROM id"
        ),
        "0"
    );

    // Session 2: validate, index, swap.
    let second = migration_session(
        &url,
        &[
            "add_not_null_check",
            "validate_not_null_check",
            "build_unique_index",
            "create_swap_function",
            "swap_key",
        ],
        &[],
    );
    assert_eq!(step(&second, "swap_key")["verified"], true, "{second:#}");
    assert_eq!(step(&second, "swap_key")["approvers"], 1, "{second:#}");
    assert_names(
        conclusion(&second),
        &[
            "Done: public.accounts.id is bigint and the primary key (accounts_pkey)",
            "sequence public.accounts_id_seq (bigint)",
            "kept as id_int",
        ],
    );

    // Graded by the database: a bigint primary key over the same rows, and
    // the sequence continues where it was.
    assert_eq!(
        pg.psql(
            &url,
            "SELECT format_type(a.atttypid, a.atttypmod) || ' ' || k.conname FROM pg_constraint k \
             JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1] \
             WHERE k.conrelid = 'public.accounts'::regclass AND k.contype = 'p'"
        ),
        "bigint accounts_pkey"
    );
    assert_eq!(
        pg.psql(
            &url,
            "SELECT count(*), sum(id), sum(balance) FROM public.accounts WHERE id <= 3000"
        ),
        before
    );
    assert_eq!(
        pg.psql(
            &url,
            "SELECT count(*) FROM public.accounts WHERE id_int IS DISTINCT FROM id"
        ),
        "0"
    );
    assert_eq!(
        pg.psql(
            &url,
            "WITH i AS (INSERT INTO public.accounts (balance) VALUES (9) RETURNING id) SELECT id FROM i"
        ),
        "3003"
    );
    assert_eq!(
        pg.psql(
            &url,
            "SELECT format_type(seqtypid, NULL) FROM pg_sequence WHERE seqrelid = 'public.accounts_id_seq'::regclass"
        ),
        "bigint"
    );
    assert_eq!(
        pg.psql(
            &url,
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.accounts'::regclass AND NOT tgisinternal"
        ),
        "0"
    );
    // Past the int range, which the old key could never hold.
    pg.psql(&url, "SELECT setval('public.accounts_id_seq', 2147483647)");
    assert_eq!(
        pg.psql(
            &url,
            "WITH i AS (INSERT INTO public.accounts (balance) VALUES (10) RETURNING id) SELECT id FROM i"
        ),
        "2147483648"
    );
}

#[test]
fn an_int4_serial_primary_key_is_migrated_to_bigint_online_with_the_same_rows_and_a_continuing_sequence()
 {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    int_key_is_migrated_to_bigint_online(pg);
}

/// The migration on every other available major version (17 and 18 in CI),
/// each on its shared server.
#[test]
fn the_int_to_bigint_migration_runs_end_to_end_on_every_available_server_version() {
    let Some(default) = crate::pg::server() else {
        return;
    };
    let default_major = default.major();
    for (major, pg) in crate::pg::all_servers() {
        if major == default_major {
            continue;
        }
        int_key_is_migrated_to_bigint_online(pg);
    }
}

#[test]
fn a_unique_leftover_of_a_failed_concurrent_build_is_dropped_and_an_index_being_built_is_left_alone()
 {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("invalid_idx");
    pg.psql(
        &url,
        "CREATE TABLE public.items (id int PRIMARY KEY, sku text); \
         INSERT INTO public.items SELECT g, 'sku-' || (g % 50) FROM generate_series(1, 2000) g; \
         CREATE TABLE public.notes (id int PRIMARY KEY, body text); \
         INSERT INTO public.notes SELECT g, 'n' FROM generate_series(1, 100) g;",
    );
    // A unique index built concurrently over duplicates fails and stays, INVALID.
    let failed = pg.try_psql(
        &url,
        "CREATE UNIQUE INDEX CONCURRENTLY items_sku_key ON public.items (sku)",
    );
    assert!(
        failed.is_err_and(|e| e.contains("could not create unique index")),
        "the build did not fail"
    );
    // A build in progress: it waits for a writer's open transaction.
    let _writer = pg.session(
        &url,
        "postgres",
        "writer",
        "BEGIN; UPDATE public.notes SET body = 'm' WHERE id = 1;",
    );
    pg.wait_for(
        &url,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'writer' AND state = 'idle in transaction'",
        "1",
        Duration::from_secs(10),
    );
    let _build = pg.session(
        &url,
        "postgres",
        "migrate",
        "CREATE INDEX CONCURRENTLY notes_body_idx ON public.notes (body);",
    );
    pg.wait_for(
        &url,
        "SELECT count(*) FROM pg_index WHERE indexrelid = to_regclass('public.notes_body_idx') AND NOT indisvalid",
        "1",
        Duration::from_secs(10),
    );

    let repo = TempRepo::copy_of_repo();
    let mut session = start_run(&repo, "pg-invalid-index", &url, &[]);
    let (id, proposed) = approve_when_proposed(&repo, &mut session, "drop_invalid");
    assert_eq!(proposed["data"]["inputs"]["index_name"], "items_sku_key");
    let report = finish(session);

    assert_eq!(step(&report, "drop_invalid")["verified"], true);
    assert!(!executed(&report).contains(&"rebuild_invalid"));
    assert_eq!(report["outcome"], "concluded", "{report:#}");
    assert_names(
        conclusion(&report),
        &[
            "The incident has cleared: the INVALID unique index public.items_sku_key on public.items",
            "CREATE UNIQUE INDEX items_sku_key ON public.items USING btree (sku)",
            "Remove the duplicates before building it again",
            "Builds in progress, left alone: 1 (public.notes_body_idx)",
        ],
    );
    let headline = facts_of(&report, "invalid_headline");
    assert_eq!(headline["building"], 1, "{headline}");
    assert_eq!(headline["leftovers"], 0, "{headline}");
    // Graded by the database: the leftover is gone, the build in progress
    // is still there (and still building).
    assert_eq!(
        pg.psql(
            &url,
            "SELECT coalesce(to_regclass('public.items_sku_key')::text, 'gone') || ' ' || \
             (SELECT count(*) FROM pg_stat_progress_create_index)"
        ),
        "gone 1"
    );
    assert_eq!(
        pg.psql(
            &url,
            "SELECT to_regclass('public.notes_body_idx') IS NOT NULL"
        ),
        "t"
    );
    audit_verifies(&repo, &id);
}

#[test]
fn a_non_unique_leftover_of_a_cancelled_build_is_rebuilt_concurrently_and_valid() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("rebuild_idx");
    pg.psql(
        &url,
        "CREATE TABLE public.shipments (id int PRIMARY KEY, tracking text); \
         INSERT INTO public.shipments SELECT g, 't' || g FROM generate_series(1, 2000) g;",
    );
    // A concurrent build waiting on a writer is cancelled: INVALID leftover.
    let writer = pg.session(
        &url,
        "postgres",
        "writer",
        "BEGIN; UPDATE public.shipments SET tracking = 'x' WHERE id = 1;",
    );
    pg.wait_for(
        &url,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'writer' AND state = 'idle in transaction'",
        "1",
        Duration::from_secs(10),
    );
    let _build = pg.session(
        &url,
        "postgres",
        "migrate",
        "CREATE INDEX CONCURRENTLY shipments_tracking_idx ON public.shipments (tracking);",
    );
    pg.wait_for(
        &url,
        "SELECT count(*) FROM pg_stat_progress_create_index",
        "1",
        Duration::from_secs(10),
    );
    pg.psql(
        &url,
        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'migrate'",
    );
    pg.wait_for(
        &url,
        "SELECT count(*) FROM pg_stat_progress_create_index",
        "0",
        Duration::from_secs(10),
    );
    drop(writer);
    pg.wait_for(
        &url,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name IN ('writer', 'migrate')",
        "0",
        Duration::from_secs(10),
    );

    let repo = TempRepo::copy_of_repo();
    let mut session = start_run(&repo, "pg-invalid-index", &url, &[]);
    let (id, _) = approve_when_proposed(&repo, &mut session, "rebuild_invalid");
    let report = finish(session);
    assert_eq!(step(&report, "rebuild_invalid")["verified"], true);
    assert_names(
        conclusion(&report),
        &[
            "The incident has cleared: the INVALID index public.shipments_tracking_idx on public.shipments",
            "was rebuilt with REINDEX INDEX CONCURRENTLY and is valid",
        ],
    );
    assert_eq!(
        pg.psql(
            &url,
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'public.shipments_tracking_idx'::regclass"
        ),
        "t"
    );
    audit_verifies(&repo, &id);
}

#[test]
fn amcheck_verifies_one_index_under_the_size_limit_after_approval() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("amcheck");
    pg.psql(
        &url,
        "CREATE EXTENSION amcheck; \
         CREATE TABLE public.big (id int PRIMARY KEY, v text); \
         INSERT INTO public.big SELECT g, md5(g::text) FROM generate_series(1, 20000) g; \
         CREATE INDEX big_v_idx ON public.big (v); \
         CREATE TABLE public.small (id int PRIMARY KEY);",
    );
    // big_v_idx is the largest index; the limit keeps it out.
    let limit = pg.psql(&url, "SELECT pg_relation_size('public.big_v_idx') - 1");
    let repo = TempRepo::copy_of_repo();
    let max = format!("max_amcheck_bytes={limit}");
    let mut session = start_run(&repo, "pg-invalid-index", &url, &[&max]);
    let (id, proposed) = approve_when_proposed(&repo, &mut session, "amcheck_verify");
    assert_eq!(proposed["data"]["inputs"]["amcheck_index"], "big_pkey");
    let report = finish(session);
    assert_names(
        conclusion(&report),
        &[
            "No invalid index. amcheck verified public.big_pkey",
            "bt_index_check found no corruption",
        ],
    );
    audit_verifies(&repo, &id);
}
