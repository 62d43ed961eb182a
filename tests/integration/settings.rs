//! Settings as the server applies them to the sessions that matter: a
//! timeout set per role, per database or per role in a database
//! (`pg_db_role_setting`) is what the culprit's sessions get, and the
//! conclusion names that value and where it comes from, never the server
//! default when a role overrides it, nor ward's own `SET LOCAL`.

use std::time::Duration;

use crate::harness::TempRepo;
use crate::planner_e2e::{
    approve_when_proposed, audit_verifies, finish, own_server, start_run, step,
};

#[test]
fn a_role_without_idle_in_transaction_timeout_is_named_with_its_value_not_the_servers() {
    let Some(pg) = own_server(20) else { return };
    let url = pg.fresh_db("rolesetting");
    // The server would end idle transactions after an hour; the role opts out.
    pg.psql(
        &url,
        "ALTER SYSTEM SET idle_in_transaction_session_timeout = '1h'",
    );
    pg.psql(&url, "SELECT pg_reload_conf()");
    pg.psql(
        &url,
        "CREATE TABLE invoices (id int PRIMARY KEY, status text); \
         INSERT INTO invoices SELECT g, 'open' FROM generate_series(1, 10) g; \
         CREATE ROLE billing LOGIN; GRANT ALL ON invoices TO billing; \
         ALTER ROLE billing SET idle_in_transaction_session_timeout = 0;",
    );
    let _workers: Vec<_> = (1..=2)
        .map(|n| {
            pg.session(
                &url,
                "billing",
                "invoice-worker",
                &format!("BEGIN; UPDATE invoices SET status = 'capturing' WHERE id = {n};"),
            )
        })
        .collect();
    pg.wait_for(
        &url,
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'",
        "2",
        Duration::from_secs(20),
    );
    // The runbook's smallest threshold is 30 s.
    std::thread::sleep(Duration::from_secs(31));

    let repo = TempRepo::copy_of_repo();
    let mut session = start_run(
        &repo,
        "pg-idle-in-transaction",
        &url,
        &["max_idle_seconds=30"],
    );
    let (id, proposed) =
        approve_when_proposed(&repo, &mut session, "terminate_idle_in_transaction");
    assert_eq!(proposed["data"]["inputs"]["application"], "invoice-worker");
    let report = finish(session);
    assert_eq!(
        step(&report, "terminate_idle_in_transaction")["verified"],
        true
    );
    let conclusion = report["conclusion"].as_str().unwrap_or("");
    assert!(
        conclusion.contains(
            "idle_in_transaction_session_timeout for user billing is 0 (from ALTER ROLE billing; 0 = off)"
        ),
        "the role's own value is not named: {conclusion}"
    );
    assert!(!conclusion.contains("3600000ms"), "{conclusion}");
    audit_verifies(&repo, &id);
}

#[test]
fn a_ddl_waiters_lock_timeout_is_read_for_its_role_in_its_database() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("locktimeout");
    let db = url.rsplit('/').next().unwrap_or(&url).to_string();
    pg.psql(
        &url,
        &format!(
            "CREATE TABLE accounts (id int PRIMARY KEY); \
             CREATE ROLE settings_deploy LOGIN; ALTER TABLE accounts OWNER TO settings_deploy; \
             ALTER DATABASE \"{db}\" SET lock_timeout = '1h'; \
             ALTER ROLE settings_deploy IN DATABASE \"{db}\" SET lock_timeout = 0;"
        ),
    );
    let _reader = pg.session(
        &url,
        "postgres",
        "report",
        "BEGIN; SELECT count(*) FROM accounts;",
    );
    pg.wait_for(
        &url,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'report' AND state = 'idle in transaction'",
        "1",
        Duration::from_secs(20),
    );
    let _ddl = pg.session(
        &url,
        "settings_deploy",
        "rails-migrate",
        "ALTER TABLE accounts ADD COLUMN risk_tier smallint;",
    );
    pg.wait_for(
        &url,
        "SELECT count(*) FROM pg_locks WHERE NOT granted AND mode = 'AccessExclusiveLock'",
        "1",
        Duration::from_secs(20),
    );
    let out = crate::harness::ward(&[
        "step",
        "pg-lock-contention",
        "ddl_waiter",
        "--url",
        &url,
        "--env",
        "dev",
        "--format",
        "json",
    ])
    .expect_code(0)
    .json();
    let facts = &out["evidence"]["facts"];
    assert_eq!(
        (
            facts["usename"].as_str(),
            facts["lock_timeout"].as_str(),
            facts["lock_timeout_set_by"].as_str()
        ),
        (
            Some("settings_deploy"),
            Some("0"),
            Some(format!("ALTER ROLE settings_deploy IN DATABASE {db}").as_str())
        ),
        "{out}"
    );
}
