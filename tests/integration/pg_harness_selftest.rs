//! The throwaway-PostgreSQL harness does what the other tests rely on.

use std::time::Duration;

#[test]
fn server_starts_and_answers() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    assert!(pg.port() > 0);
    assert!(
        pg.bin_dir().join("pg_ctl").is_file(),
        "{}",
        pg.bin_dir().display()
    );
    assert_eq!(pg.psql("postgres", "SELECT 1"), "1");
    assert_eq!(
        pg.url("x"),
        format!("postgres://postgres@127.0.0.1:{}/x", pg.port())
    );
    // The shared server is one server.
    let again = crate::pg::server().expect("started once, still there");
    assert_eq!(again.port(), pg.port());
}

#[test]
fn pg_stat_statements_is_loaded_in_fresh_databases() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("pgss");
    assert!(
        pg.psql(&url, "SHOW shared_preload_libraries")
            .contains("pg_stat_statements"),
        "pg_stat_statements is not preloaded"
    );
    assert_eq!(
        pg.psql(
            &url,
            "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'"
        ),
        "1"
    );
    pg.psql(&url, "SELECT 42 AS answer_for_pgss");
    let seen = pg.psql(
        &url,
        "SELECT count(*) > 0 FROM pg_stat_statements WHERE query LIKE '%answer_for_pgss%'",
    );
    assert_eq!(seen, "t");
}

#[test]
fn fresh_databases_are_isolated_and_locks_conflict() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let a = pg.fresh_db("locks");
    let b = pg.fresh_db("locks");
    assert_ne!(a, b);
    pg.psql(&a, "CREATE TABLE t (id int)");
    assert_eq!(
        pg.psql(&b, "SELECT to_regclass('t') IS NULL"),
        "t",
        "b sees a's table"
    );

    let mut holder = pg.psql_background(&a, "BEGIN; LOCK TABLE t; SELECT pg_sleep(30);");
    pg.wait_for(
        &a,
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
         WHERE c.relname = 't' AND l.mode = 'AccessExclusiveLock' AND l.granted",
        "1",
        Duration::from_secs(10),
    );
    let blocked = pg.try_psql(
        &a,
        "SET lock_timeout = '200ms'; LOCK TABLE t IN ACCESS SHARE MODE",
    );
    let _ = holder.kill();
    let _ = holder.wait();
    let err = blocked.expect_err("a second session got a lock the first one holds");
    assert!(err.contains("lock timeout"), "{err}");

    // Killing psql does not end a backend busy in pg_sleep; terminate it,
    // and the lock is free again.
    pg.psql(
        &a,
        "SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
         WHERE c.relname = 't' AND l.pid <> pg_backend_pid()",
    );
    pg.wait_for(
        &a,
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 't'",
        "0",
        Duration::from_secs(10),
    );
    pg.psql(
        &a,
        "SET lock_timeout = '2s'; LOCK TABLE t IN ACCESS SHARE MODE",
    );
}
