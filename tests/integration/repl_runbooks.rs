//! pg-logical-replication, pg-autovacuum-stuck and pg-upgrade-precheck on
//! real PostgreSQL: each incident is reproduced on a server of its own (the
//! settings they need, wal_level=logical or max_prepared_transactions,
//! take a restart), once per available major version (15, 17 and 18 with
//! `WARD_PG_BINS`), run with `ward run` (offline planner, default policy,
//! env dev), approved by other operators with `ward approve`, and graded
//! by the database's state afterwards as well as by the names the
//! conclusion gives.

use std::time::Duration;

use crate::harness::TempRepo;
use crate::pg::PgServer;
use crate::planner_e2e::{
    approve_when_proposed, audit_verifies, executed, finish, start_run, step,
};

/// Runs `incident` on a new server of every available major version, each
/// started with `settings`.
fn on_every_version(settings: &[(&str, &str)], incident: impl Fn(&PgServer, u32)) {
    if crate::pg::server().is_none() {
        return;
    }
    for (major, bin) in crate::pg::versions() {
        let pg = PgServer::start_in_with_options(bin.clone(), 50, settings);
        assert_eq!(pg.major(), *major);
        incident(&pg, *major);
    }
}

#[test]
fn a_disabled_subscription_is_named_with_its_slot_lag_and_enabling_it_on_approval_clears_the_incident_on_all_server_versions()
 {
    on_every_version(&[("wal_level", "logical")], |pg, major| {
        let shop = pg.fresh_db("shop");
        let reporting = pg.fresh_db("reporting");
        let shop_db = shop.rsplit('/').next().unwrap_or_default().to_string();
        let table = "CREATE TABLE orders (id bigint PRIMARY KEY, total numeric, note text)";
        pg.psql(&shop, table);
        pg.psql(&shop, "CREATE PUBLICATION orders_pub FOR TABLE orders");
        // A subscription into the same cluster cannot create its slot (the
        // CREATE SUBSCRIPTION would wait for itself): the slot comes first.
        pg.psql(
            &shop,
            "SELECT pg_create_logical_replication_slot('orders_sub', 'pgoutput')",
        );
        pg.psql(&reporting, table);
        pg.psql(
            &reporting,
            &format!(
                "CREATE SUBSCRIPTION orders_sub CONNECTION 'host=127.0.0.1 port={} user=postgres dbname={shop_db}' \
                 PUBLICATION orders_pub WITH (create_slot = false, slot_name = 'orders_sub', copy_data = false)",
                pg.port()
            ),
        );
        pg.wait_for(
            &reporting,
            "SELECT count(*) FROM pg_stat_subscription WHERE subname = 'orders_sub' AND pid IS NOT NULL",
            "1",
            Duration::from_secs(30),
        );
        // Someone stops the subscriber; the publisher keeps writing.
        pg.psql(&reporting, "ALTER SUBSCRIPTION orders_sub DISABLE");
        pg.wait_for(
            &shop,
            "SELECT active FROM pg_replication_slots WHERE slot_name = 'orders_sub'",
            "f",
            Duration::from_secs(30),
        );
        pg.psql(
            &shop,
            "INSERT INTO orders SELECT g, g * 1.5, repeat('x', 200) FROM generate_series(1, 20000) g",
        );
        let lag: i64 = pg
            .psql(
                &shop,
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint \
                 FROM pg_replication_slots WHERE slot_name = 'orders_sub'",
            )
            .parse()
            .expect("lag");
        assert!(lag > 2 * 1048576, "PostgreSQL {major}: lag {lag}");

        let repo = TempRepo::copy_of_repo();
        let mut session = start_run(
            &repo,
            "pg-logical-replication",
            &reporting,
            &["max_lag_mb=1", "sample_seconds=1"],
        );
        let (id, proposed) = approve_when_proposed(&repo, &mut session, "enable_subscription");
        assert_eq!(
            proposed["data"]["inputs"]["subscription"], "orders_sub",
            "PostgreSQL {major}"
        );
        let report = finish(session);
        assert_eq!(step(&report, "enable_subscription")["verified"], true);
        let done = executed(&report);
        assert_eq!(
            done.contains(&"subscription_errors"),
            major >= 15,
            "PostgreSQL {major}: {done:?}"
        );
        let conclusion = report["conclusion"].as_str().unwrap_or("");
        for needle in [
            format!(
                "The incident has cleared: subscription orders_sub (database {}, owner postgres)",
                reporting.rsplit('/').next().unwrap_or_default()
            ),
            "its slot orders_sub caught up".to_string(),
            "0 subscription(s) disabled (was 1)".to_string(),
        ] {
            assert!(
                conclusion.contains(&needle),
                "PostgreSQL {major}: {needle:?} not in {conclusion}"
            );
        }
        // The facts before the fix (the first summary in the session log)
        // named the slot's plugin, database and lag.
        let log = std::fs::read_to_string(repo.path().join(format!(".ward/sessions/{id}.jsonl")))
            .expect("session log");
        let events: Vec<serde_json::Value> = log
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let proposal = events
            .iter()
            .find(|e| e["kind"] == "proposed" && e["data"]["step_id"] == "disabled_subscriptions")
            .map(|e| e["hash"].clone())
            .expect("disabled_subscriptions was proposed");
        let facts = events
            .iter()
            .find(|e| e["kind"] == "summarized" && e["data"]["proposal"] == proposal)
            .map(|e| e["data"]["facts"].clone())
            .expect("disabled_subscriptions was summarized");
        assert_eq!(facts["slot_plugin"], "pgoutput", "{facts}");
        assert_eq!(facts["slot_database"], shop_db.as_str(), "{facts}");
        assert!(
            facts["slot_lag_bytes"].as_i64().unwrap_or(0) >= lag,
            "{facts}"
        );

        // Graded by the databases: enabled, and the rows arrived.
        assert_eq!(
            pg.psql(
                &reporting,
                "SELECT subenabled FROM pg_subscription WHERE subname = 'orders_sub'"
            ),
            "t"
        );
        pg.wait_for(
            &reporting,
            "SELECT count(*) FROM orders",
            "20000",
            Duration::from_secs(30),
        );
        audit_verifies(&repo, &id);
    });
}

#[test]
fn an_idle_transaction_holding_the_vacuum_horizon_is_named_and_terminated_on_approval_on_all_server_versions()
 {
    on_every_version(&[("autovacuum_naptime", "1")], |pg, major| {
        let url = pg.fresh_db("horizon");
        pg.psql(
            &url,
            "CREATE ROLE app LOGIN; \
             CREATE TABLE invoices (id int PRIMARY KEY, status text); \
             INSERT INTO invoices SELECT g, 'open' FROM generate_series(1, 20000) g; \
             GRANT ALL ON invoices TO app;",
        );
        // A worker opens a transaction, writes, and waits on something else.
        let _holder = pg.session(
            &url,
            "app",
            "billing-worker",
            "BEGIN; UPDATE invoices SET status = 'paid' WHERE id = 1;",
        );
        pg.wait_for(
            &url,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'billing-worker' \
             AND state = 'idle in transaction' AND backend_xid IS NOT NULL",
            "1",
            Duration::from_secs(20),
        );
        let holder_pid = pg.psql(
            &url,
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'billing-worker'",
        );
        // Dead rows autovacuum cannot remove while that transaction lives.
        pg.psql(&url, "DELETE FROM invoices WHERE id > 15000");
        std::thread::sleep(Duration::from_secs(3));

        let repo = TempRepo::copy_of_repo();
        let mut session = start_run(
            &repo,
            "pg-autovacuum-stuck",
            &url,
            &["max_xact_seconds=2", "sample_seconds=1"],
        );
        let (id, proposed) = approve_when_proposed(&repo, &mut session, "terminate_horizon_holder");
        assert_eq!(
            proposed["data"]["inputs"]["holder_pid"].to_string(),
            holder_pid,
            "PostgreSQL {major}"
        );
        let report = finish(session);
        assert_eq!(step(&report, "terminate_horizon_holder")["verified"], true);
        let conclusion = report["conclusion"].as_str().unwrap_or("");
        for needle in [
            "The incident has cleared: no client transaction older than the threshold holds the xmin horizon now".to_string(),
            format!("The holder was pid {holder_pid} (application billing-worker, user app, client 127.0.0.1, idle in transaction)"),
            "UPDATE invoices SET status = 'paid' WHERE id = 1".to_string(),
        ] {
            assert!(
                conclusion.contains(&needle),
                "PostgreSQL {major}: {needle:?} not in {conclusion}"
            );
        }
        // Graded by the database: the session is gone, its update rolled
        // back, and a vacuum now removes the deleted rows.
        assert_eq!(
            pg.psql(
                &url,
                &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {holder_pid}")
            ),
            "0"
        );
        assert_eq!(
            pg.psql(&url, "SELECT status FROM invoices WHERE id = 1"),
            "open"
        );
        pg.psql(&url, "VACUUM invoices");
        assert_eq!(
            pg.psql(
                &url,
                "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'invoices'"
            ),
            "0",
            "PostgreSQL {major}"
        );
        audit_verifies(&repo, &id);
    });
}

#[test]
fn upgrade_precheck_names_the_prepared_transaction_the_invalid_index_and_the_outdated_extension_on_all_server_versions()
 {
    on_every_version(&[("max_prepared_transactions", "5")], |pg, major| {
        let url = pg.fresh_db("upgrade");
        pg.psql(
            &url,
            "CREATE TABLE customers (id int, email text); \
             INSERT INTO customers VALUES (1, 'a@example.com'), (2, 'a@example.com'); \
             CREATE TABLE jobs (id int, handler regproc, target regclass);",
        );
        // A failed concurrent build leaves an INVALID index behind.
        assert!(
            pg.try_psql(
                &url,
                "CREATE UNIQUE INDEX CONCURRENTLY customers_email_key ON customers (email)"
            )
            .is_err()
        );
        pg.psql(
            &url,
            "BEGIN; INSERT INTO jobs VALUES (1, NULL, NULL); PREPARE TRANSACTION 'pay_42'",
        );
        pg.psql(&url, "CREATE EXTENSION citext VERSION '1.4'");
        let default = pg.psql(
            &url,
            "SELECT default_version FROM pg_available_extensions WHERE name = 'citext'",
        );

        let repo = TempRepo::copy_of_repo();
        let session = start_run(&repo, "pg-upgrade-precheck", &url, &[]);
        let report = finish(session);
        let conclusion = report["conclusion"].as_str().unwrap_or("");
        for needle in [
            format!(
                "pg_upgrade from PostgreSQL {major} to 18 would REFUSE this cluster: 2 blocker(s)"
            ),
            "Prepared transactions (1, commit or roll back): pay_42 (database".to_string(),
            "reg* columns (1, change their type or drop them): public.jobs.handler regproc."
                .to_string(),
            "INVALID indexes (1, drop or REINDEX CONCURRENTLY): public.customers_email_key on public.customers"
                .to_string(),
            format!("(1, ALTER EXTENSION ... UPDATE): citext 1.4 (default {default})"),
        ] {
            assert!(
                conclusion.contains(&needle),
                "PostgreSQL {major}: {needle:?} not in {conclusion}"
            );
        }
        // Diagnostic only: nothing changed.
        assert_eq!(pg.psql(&url, "SELECT count(*) FROM pg_prepared_xacts"), "1");
        pg.psql(&url, "ROLLBACK PREPARED 'pay_42'");
    });
}

#[test]
fn a_subscription_disabled_by_an_apply_error_is_not_enabled_and_the_conclusion_says_why_on_all_server_versions()
 {
    on_every_version(&[("wal_level", "logical")], |pg, major| {
        // disable_on_error and pg_stat_subscription_stats are 15+.
        if major < 15 {
            return;
        }
        let crm = pg.fresh_db("crm");
        let analytics = pg.fresh_db("analytics");
        let crm_db = crm.rsplit('/').next().unwrap_or_default().to_string();
        let analytics_db = analytics.rsplit('/').next().unwrap_or_default().to_string();
        let table = "CREATE TABLE contacts (id int PRIMARY KEY, email text)";
        pg.psql(&crm, table);
        pg.psql(&crm, "CREATE PUBLICATION crm_pub FOR TABLE contacts");
        pg.psql(
            &crm,
            "SELECT pg_create_logical_replication_slot('crm_sub', 'pgoutput')",
        );
        pg.psql(&analytics, table);
        // Someone wrote on the subscriber: the next replicated insert collides.
        pg.psql(
            &analytics,
            "INSERT INTO contacts VALUES (7, 'local@example.com')",
        );
        pg.psql(
            &analytics,
            &format!(
                "CREATE SUBSCRIPTION crm_sub CONNECTION 'host=127.0.0.1 port={} user=postgres dbname={crm_db}' \
                 PUBLICATION crm_pub WITH (create_slot = false, slot_name = 'crm_sub', copy_data = false, \
                 disable_on_error = true)",
                pg.port()
            ),
        );
        pg.wait_for(
            &analytics,
            "SELECT count(*) FROM pg_stat_subscription WHERE subname = 'crm_sub' AND pid IS NOT NULL",
            "1",
            Duration::from_secs(30),
        );
        pg.psql(
            &crm,
            "INSERT INTO contacts VALUES (7, 'upstream@example.com')",
        );
        pg.wait_for(
            &analytics,
            "SELECT NOT subenabled AND (SELECT apply_error_count FROM pg_stat_subscription_stats \
             WHERE subname = 'crm_sub') > 0 FROM pg_subscription WHERE subname = 'crm_sub'",
            "t",
            Duration::from_secs(30),
        );

        let repo = TempRepo::copy_of_repo();
        let session = start_run(
            &repo,
            "pg-logical-replication",
            &analytics,
            &["max_lag_mb=1", "sample_seconds=1"],
        );
        let report = finish(session);
        let done = executed(&report);
        assert!(
            !done.contains(&"enable_subscription"),
            "PostgreSQL {major}: {done:?}"
        );
        let conclusion = report["conclusion"].as_str().unwrap_or("");
        for needle in [
            format!(
                "Subscription crm_sub (database {analytics_db}, owner postgres, publications crm_pub) was disabled by an apply error"
            ),
            "Enabling it would hit the same error, so it is not proposed".to_string(),
            "ALTER SUBSCRIPTION crm_sub SKIP".to_string(),
        ] {
            assert!(
                conclusion.contains(&needle),
                "PostgreSQL {major}: {needle:?} not in {conclusion}"
            );
        }
        // Nothing changed: still disabled, the local row kept.
        assert_eq!(
            pg.psql(
                &analytics,
                "SELECT subenabled FROM pg_subscription WHERE subname = 'crm_sub'"
            ),
            "f"
        );
        assert_eq!(
            pg.psql(&analytics, "SELECT email FROM contacts WHERE id = 7"),
            "local@example.com"
        );
    });
}
