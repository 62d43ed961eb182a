//! The health runbooks (disk full outside WAL, CPU/IO saturation, crash
//! restarts and memory sizing, checkpoint storms) on real PostgreSQL, each
//! incident reproduced on a server of its own: a sort spilling to temp files
//! while the diagnosis runs (only that pid is cancelled), a backend killed
//! by SIGKILL (crash recovery, orphaned files), sessions busy in pg_sleep
//! (the dominant wait event named), a write load against a tiny
//! max_wal_size (a checkpoint storm, on every available major version).
//! Graded by the database's state and by what the conclusion names.

use std::time::Duration;

use serde_json::Value;

use crate::harness::TempRepo;
use crate::pg::PgServer;
use crate::planner_e2e::{
    approve_when_proposed, audit_verifies, finish, own_server, start_run, step,
};

/// `ward run RUNBOOK` headless with the offline planner, for a runbook that
/// proposes nothing to approve; the JSON report (exit 0).
fn diagnose(repo: &TempRepo, runbook: &str, url: &str, inputs: &[&str]) -> Value {
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
    ];
    for i in inputs {
        args.extend(["--input", i]);
    }
    repo.ward(&args).expect_code(0).json()
}

fn conclusion(report: &Value) -> &str {
    report["conclusion"].as_str().unwrap_or("")
}

fn assert_names(text: &str, needles: &[String]) {
    for needle in needles {
        assert!(text.contains(needle.as_str()), "{needle:?} not in {text}");
    }
}

#[test]
fn a_sort_spilling_to_temp_files_is_named_and_only_its_pid_is_cancelled() {
    let Some(pg) = own_server(30) else { return };
    let url = pg.fresh_db("tempspill");
    pg.psql(&url, "CREATE ROLE reporting LOGIN");
    // A sort of 2M rows with 64 kB of work_mem spills ~100 MB, then hands
    // out its rows slowly: its temp files stay while ward looks.
    let _spiller = pg.session(
        &url,
        "reporting",
        "month-end-report",
        "SET work_mem = '64kB'; SELECT m, pg_sleep(0.5) FROM (SELECT md5(g::text) AS m \
         FROM generate_series(1, 2000000) g ORDER BY 1) s LIMIT 400;",
    );
    // Another application's statement, which must be left running.
    let _other = pg.session(&url, "reporting", "nightly-etl", "SELECT pg_sleep(300);");
    let spiller_pid = {
        pg.wait_for(
            &url,
            "SELECT count(*) FROM pg_stat_activity a WHERE a.application_name = 'month-end-report' \
             AND EXISTS (SELECT 1 FROM pg_ls_tmpdir() f WHERE f.name LIKE 'pgsql_tmp' || a.pid || '.%')",
            "1",
            Duration::from_secs(30),
        );
        pg.psql(
            &url,
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'month-end-report'",
        )
    };
    let etl_pid = pg.psql(
        &url,
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'nightly-etl'",
    );

    let repo = TempRepo::copy_of_repo();
    let mut session = start_run(
        &repo,
        "pg-disk-full",
        &url,
        &["min_temp_mb=10", "sample_seconds=1"],
    );
    let (id, proposed) = approve_when_proposed(&repo, &mut session, "cancel_temp_spiller");
    assert_eq!(
        proposed["data"]["inputs"]["temp_pid"].to_string(),
        spiller_pid
    );
    let report = finish(session);
    assert_eq!(step(&report, "cancel_temp_spiller")["verified"], true);
    assert_eq!(report["outcome"], "concluded");
    assert_names(
        conclusion(&report),
        &[
            "The incident has cleared: live temp files".to_string(),
            format!(
                "after cancelling pid {spiller_pid} (application month-end-report, user reporting"
            ),
            "md5(g::text)".to_string(),
            "ALTER ROLE reporting SET temp_file_limit".to_string(),
        ],
    );

    // Graded by the database: the spiller's statement is gone with its temp
    // files (psql, stopping on the error, then disconnects); the other
    // application's statement runs on.
    assert_eq!(
        pg.psql(
            &url,
            &format!(
                "SELECT count(*) FROM pg_ls_tmpdir() WHERE name LIKE 'pgsql_tmp{spiller_pid}.%'"
            )
        ),
        "0"
    );
    pg.wait_for(
        &url,
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = {spiller_pid} AND state = 'active'"
        ),
        "0",
        Duration::from_secs(10),
    );
    assert_eq!(
        pg.psql(
            &url,
            &format!("SELECT state || ' ' || query FROM pg_stat_activity WHERE pid = {etl_pid}")
        ),
        "active SELECT pg_sleep(300);"
    );
    audit_verifies(&repo, &id);
}

#[test]
fn a_backend_killed_like_the_oom_killer_does_is_a_crash_recovery_and_leaves_orphaned_files() {
    let Some(pg) = own_server(100) else { return };
    let url = pg.fresh_db("crash");
    // Processes restarted by a crash recovery start later than the
    // postmaster: more than 10 s later, for ward to tell them apart.
    let age: f64 = pg
        .psql(
            &url,
            "SELECT extract(epoch FROM now() - pg_postmaster_start_time())",
        )
        .parse()
        .expect("server age");
    std::thread::sleep(Duration::from_secs_f64((12.0 - age).max(0.0)));
    // A bulk load whose table never commits: ~100 MB of files.
    let _load = pg.session(
        &url,
        "postgres",
        "bulk-load",
        "BEGIN; CREATE TABLE staging AS SELECT g, repeat('x', 500) AS pad \
         FROM generate_series(1, 200000) g;",
    );
    pg.wait_for(
        &url,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'bulk-load' \
         AND state = 'idle in transaction'",
        "1",
        Duration::from_secs(60),
    );
    let pid = pg.psql(
        &url,
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'bulk-load'",
    );
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .expect("run kill");
    assert!(killed.success(), "kill -9 {pid}");
    // The postmaster resets every session and runs crash recovery.
    pg.wait_for(&url, "SELECT 1", "1", Duration::from_secs(60));

    let repo = TempRepo::copy_of_repo();
    let report = diagnose(&repo, "pg-crash-restarts", &url, &["memory_mb=1024"]);
    assert_names(
        conclusion(&report),
        &[
            "The server went through crash recovery".to_string(),
            // The shared server's defaults: 128 MB + 100 x 4 MB x 2 + 3 x 64 + 64.
            "exceeds the 1024 MB this server has: shared_buffers 128 MB + max_connections 100 x work_mem 4.0 MB x hash_mem_multiplier 2 = 800 MB + autovacuum 3 x 64 MB + maintenance_work_mem 64 MB = 1184 MB".to_string(),
            "set work_mem = 1MB".to_string(),
        ],
    );

    let report = diagnose(&repo, "pg-disk-full", &url, &["sample_seconds=1"]);
    let oid = pg.psql(
        &url,
        "SELECT oid FROM pg_database WHERE datname = current_database()",
    );
    assert_names(
        conclusion(&report),
        &[
            format!("(oid {oid};"),
            "belongs to no relation: orphaned files".to_string(),
            format!("list base/{oid} with pg_ls_dir"),
        ],
    );
    // Graded by the database: the table never existed for it.
    assert_eq!(
        pg.psql(
            &url,
            "SELECT count(*) FROM pg_class WHERE relname = 'staging'"
        ),
        "0"
    );
}

#[test]
fn sessions_busy_in_pg_sleep_are_sampled_and_the_dominant_wait_event_and_application_named() {
    let Some(pg) = own_server(30) else { return };
    let url = pg.fresh_db("saturation");
    let _sleepers: Vec<_> = (0..4)
        .map(|_| pg.session(&url, "postgres", "batch-sleeper", "SELECT pg_sleep(120);"))
        .collect();
    pg.wait_for(
        &url,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'batch-sleeper' \
         AND wait_event = 'PgSleep'",
        "4",
        Duration::from_secs(20),
    );
    let repo = TempRepo::copy_of_repo();
    let report = diagnose(&repo, "pg-saturation", &url, &["sample_seconds=1"]);
    assert_names(
        conclusion(&report),
        &[
            "The dominant wait is Timeout:PgSleep".to_string(),
            "(4.0 sessions on average of".to_string(),
            "over 5 samples 1 s apart), mostly application batch-sleeper (user postgres, client backend"
                .to_string(),
            "SELECT pg_sleep(120);".to_string(),
            "The CPU count is unknown to SQL".to_string(),
        ],
    );
}

/// A write load on `url`: a 10k-row table updated over and over, each
/// UPDATE its own top-level statement (so pg_stat_statements counts it when
/// it ends), until the returned session is dropped. The statements fit in
/// the pipe to psql (2000 x 28 bytes < 64 KiB), so sending them never waits.
fn write_load(pg: &PgServer, url: &str) -> crate::pg::Held {
    pg.psql(
        url,
        "CREATE TABLE churn (id int PRIMARY KEY, v int, pad text); \
         INSERT INTO churn SELECT g, 0, repeat('x', 200) FROM generate_series(1, 10000) g;",
    );
    pg.session(
        url,
        "postgres",
        "churn-load",
        &"UPDATE churn SET v = v + 1;\n".repeat(2000),
    )
}

#[test]
fn a_write_load_against_a_tiny_max_wal_size_is_a_checkpoint_storm_on_every_version() {
    if crate::pg::server().is_none() {
        return;
    }
    for (major, bin) in crate::pg::versions() {
        let pg = PgServer::start_in(bin.clone(), 30);
        let url = pg.fresh_db("ckptstorm");
        // Its own server: max_wal_size is server-wide. 32 MB is the
        // smallest it may be (two segments).
        pg.psql(&url, "ALTER SYSTEM SET max_wal_size = '32MB'");
        pg.psql(&url, "SELECT pg_reload_conf()");
        let load = write_load(&pg, &url);
        std::thread::sleep(Duration::from_secs(2));

        let repo = TempRepo::copy_of_repo();
        let report = diagnose(&repo, "pg-checkpoint-storm", &url, &["sample_seconds=8"]);
        let text = conclusion(&report);
        assert_names(
            text,
            &[
                "Checkpoint storm:".to_string(),
                " requested vs 0 timed checkpoint(s) in the 8s window".to_string(),
                "and max_wal_size is 32 MB. Set max_wal_size = '".to_string(),
                "UPDATE churn SET v = v + $1".to_string(),
            ],
        );
        // The recommendation covers the measured write rate: more than now.
        let recommended: u64 = text
            .split("Set max_wal_size = '")
            .nth(1)
            .and_then(|rest| rest.split("MB'").next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("PostgreSQL {major}: no recommendation in {text}"));
        assert!(recommended > 32, "PostgreSQL {major}: {text}");
        drop(load);
    }
}

#[test]
fn a_login_without_pg_monitor_concludes_every_health_runbook_and_disk_full_names_the_missing_grant()
{
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let admin = pg.fresh_db("nomonitor");
    pg.psql(
        &admin,
        "DO $$ BEGIN CREATE ROLE ward_no_monitor LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$",
    );
    let url = admin.replacen("postgres://postgres@", "postgres://ward_no_monitor@", 1);
    let repo = TempRepo::copy_of_repo();
    let report = diagnose(&repo, "pg-disk-full", &url, &["sample_seconds=1"]);
    let ran: Vec<&str> = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["step_id"].as_str())
        .collect();
    for listing in [
        "file_usage",
        "temp_files",
        "server_logs",
        "cancel_temp_spiller",
    ] {
        assert!(!ran.contains(&listing), "{listing} ran: {ran:?}");
    }
    assert!(
        report["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .all(|s| s["status"] == "done"),
        "{report:#}"
    );
    assert_names(
        conclusion(&report),
        &[
            "ward's login ward_no_monitor cannot list server files".to_string(),
            "GRANT pg_monitor TO ward_no_monitor".to_string(),
            "the biggest grower in the 1s window is".to_string(),
        ],
    );
    // Nothing in the others needs more than a plain login either: each
    // runs to a conclusion (exit 0), none fails on a privilege.
    for runbook in ["pg-crash-restarts", "pg-saturation", "pg-checkpoint-storm"] {
        let report = diagnose(
            &repo,
            runbook,
            &url,
            &["sample_seconds=1"][..usize::from(runbook != "pg-crash-restarts")],
        );
        assert_eq!(report["outcome"], "concluded", "{runbook}: {report:#}");
    }
}
