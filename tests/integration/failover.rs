//! Primary down, failover and unreachable targets, on real PostgreSQL: the
//! `pg-failover` runbook on a standby of a private server (streaming, its
//! primary stopped, promoted), the diagnosis of a target ward cannot
//! connect to (nothing listening, a wrong password, a missing database),
//! and managed platforms (`platform: rds` leaves CHECKPOINT out).

use std::time::Duration;

use crate::harness::TempRepo;
use crate::pg::PgServer;

/// Runs `runbook` headless against `url` in dev, JSON report.
fn run_json(repo: &TempRepo, runbook: &str, url: &str) -> crate::harness::Run {
    repo.ward(&[
        "run",
        runbook,
        "--url",
        url,
        "--env",
        "dev",
        "--headless",
        "--report",
        "json",
    ])
}

fn conclusion(run: &crate::harness::Run) -> String {
    run.json()["conclusion"]
        .as_str()
        .unwrap_or_else(|| panic!("no conclusion:\n{}\n{}", run.stdout, run.stderr))
        .to_string()
}

#[test]
fn pg_failover_follows_a_standby_through_streaming_primary_loss_and_promotion() {
    let Some(primary) = PgServer::start_with(20) else {
        return;
    };
    primary.psql(
        "postgres",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g",
    );
    let standby = PgServer::standby_of(&primary, "standby_a");
    standby.wait_for(
        "postgres",
        "SELECT status FROM pg_stat_wal_receiver",
        "streaming",
        Duration::from_secs(30),
    );
    let repo = TempRepo::copy_of_repo();
    let primary_addr = format!("127.0.0.1:{}", primary.port());

    // Streaming: the standby names its primary, its slot and its lag.
    let run = run_json(&repo, "pg-failover", &standby.url("postgres")).expect_code(0);
    let text = conclusion(&run);
    assert!(
        text.starts_with(&format!(
            "This node is a STANDBY on timeline 1, streaming from primary {primary_addr} (slot 'standby_a')"
        )),
        "{text}"
    );
    assert!(text.contains("bytes of replay lag"), "{text}");

    // The primary sees its standby and the slot it streams through.
    let run = run_json(&repo, "pg-failover", &primary.url("postgres")).expect_code(0);
    let text = conclusion(&run);
    assert!(
        text.starts_with("This node is the PRIMARY on timeline 1, up ")
            && text.contains("with 1 standby(s) streaming")
            && text.contains("and 1 slot(s) (0 inactive)"),
        "{text}"
    );

    // The primary goes down: the standby's WAL receiver stops, and the
    // conclusion names the primary it can no longer reach.
    primary.stop();
    standby.wait_for(
        "postgres",
        "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'",
        "0",
        Duration::from_secs(30),
    );
    let run = run_json(&repo, "pg-failover", &standby.url("postgres")).expect_code(0);
    let text = conclusion(&run);
    assert!(
        text.starts_with("This node is a STANDBY (timeline 1) with its WAL receiver DOWN")
            || text.starts_with(
                "This node is a STANDBY (timeline 1) and its WAL receiver is not streaming"
            ),
        "{text}"
    );
    assert!(text.contains(&primary_addr), "names the primary: {text}");

    // Promoted: a new timeline, and none of the old primary's slots.
    standby.promote();
    standby.wait_for(
        "postgres",
        "SELECT pg_is_in_recovery()",
        "f",
        Duration::from_secs(30),
    );
    let run = run_json(&repo, "pg-failover", &standby.url("postgres")).expect_code(0);
    let text = conclusion(&run);
    assert!(
        text.starts_with("This node is the PRIMARY on timeline 2")
            && text.contains("it was promoted from a standby, and it has NO replication slots"),
        "{text}"
    );
}

/// A TCP port on 127.0.0.1 with nothing listening on it.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    port
}

/// The session log a JSON report names, read whole.
fn log_of(run: &crate::harness::Run) -> (String, String) {
    let path = run.json()["log"].as_str().expect("log path").to_string();
    let text = std::fs::read_to_string(&path).expect("read the session log");
    (path, text)
}

/// Checks an unreachable run: exit 6, outcome `unreachable`, the failure
/// class in the report and in the log's `failed` event, the log verifies,
/// and `secret` appears nowhere.
fn assert_unreachable(
    repo: &TempRepo,
    run: crate::harness::Run,
    failure: &str,
    sqlstate: Option<&str>,
    secret: &str,
) -> serde_json::Value {
    let run = run.expect_code(6);
    let v = run.json();
    assert_eq!(v["outcome"], "unreachable");
    assert_eq!(v["unreachable"]["failure"], failure, "{v:#}");
    assert_eq!(
        v["unreachable"]["sqlstate"].as_str(),
        sqlstate,
        "{:#}",
        v["unreachable"]
    );
    assert!(
        !v["unreachable"]["checks"]
            .as_array()
            .expect("checks")
            .is_empty()
    );
    let (path, log) = log_of(&run);
    let failed: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"))
        .filter(|e| e["kind"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{log}");
    assert_eq!(failed[0]["data"]["kind"], "connect");
    assert_eq!(failed[0]["data"]["diagnosis"], v["unreachable"]);
    for (what, text) in [
        ("stdout", &run.stdout),
        ("stderr", &run.stderr),
        ("log", &log),
    ] {
        assert!(!text.contains(secret), "the password is in {what}:\n{text}");
    }
    repo.ward(&["audit", "verify", &path]).expect_code(0);
    v
}

#[test]
fn a_port_with_nothing_listening_ends_unreachable_with_a_refused_diagnosis() {
    let repo = TempRepo::copy_of_repo();
    let secret = "N0-L1sten-Pw";
    let url = format!("postgres://app:{secret}@127.0.0.1:{}/orders", closed_port());
    let v = assert_unreachable(
        &repo,
        run_json(&repo, "pg-failover", &url),
        "refused",
        None,
        secret,
    );
    assert_eq!(
        v["unreachable"]["what"],
        "connection refused: nothing listens at that address"
    );
}

#[test]
fn a_wrong_password_is_diagnosed_as_authentication_failed_and_never_shown() {
    let Some(pg) = PgServer::start_with(20) else {
        return;
    };
    pg.psql(
        "postgres",
        "CREATE ROLE app LOGIN PASSWORD 'Right-Pw-1'; SET password_encryption = 'scram-sha-256'",
    );
    pg.require_passwords();
    let repo = TempRepo::copy_of_repo();
    let secret = "Wr0ng-S3cret-Pw";
    let url = format!("postgres://app:{secret}@127.0.0.1:{}/postgres", pg.port());
    assert_unreachable(
        &repo,
        run_json(&repo, "pg-failover", &url),
        "auth_failed",
        Some("28P01"),
        secret,
    );
    // The Markdown report says it for people, in the same words.
    let md = repo
        .ward(&[
            "run",
            "pg-failover",
            "--url",
            &url,
            "--env",
            "dev",
            "--headless",
        ])
        .expect_code(6);
    assert!(
        md.stdout.contains("## Cannot connect\n\n- what failed: **authentication failed** (`auth_failed`)\n- SQLSTATE: `28P01`"),
        "{}",
        md.stdout
    );
    assert!(!md.stdout.contains(secret) && !md.stderr.contains(secret));
}

#[test]
fn a_database_that_does_not_exist_is_diagnosed_as_such() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let repo = TempRepo::copy_of_repo();
    let url = pg.url("no_such_database_here");
    let v = assert_unreachable(
        &repo,
        run_json(&repo, "pg-failover", &url),
        "no_database",
        Some("3D000"),
        "no password here",
    );
    assert_eq!(v["unreachable"]["what"], "the database does not exist");
}

/// A ward.yaml with two targets on the same server: one self-managed, one
/// declared `platform: rds`.
fn two_platforms(repo: &TempRepo, url: &str) {
    repo.write(
        "ward.yaml",
        &format!(
            "targets:\n  selfhosted:\n    engine: postgres\n    url: {url}\n    environment: dev\n  orders_rds:\n    engine: postgres\n    url: {url}\n    environment: dev\n    platform: rds\n"
        ),
    );
}

#[test]
fn checkpoint_is_never_proposed_on_a_target_declared_rds_and_the_recommendation_says_why() {
    let Some(pg) = PgServer::start_with(20) else {
        return;
    };
    // pg_wal over max_wal_size, held by wal_keep_size (neither a slot nor
    // the archiver): the case where a CHECKPOINT is the fix.
    for setting in [
        "max_wal_size = '32MB'",
        "min_wal_size = '32MB'",
        "wal_keep_size = '512MB'",
    ] {
        pg.psql("postgres", &format!("ALTER SYSTEM SET {setting}"));
    }
    pg.psql("postgres", "SELECT pg_reload_conf()");
    pg.psql("postgres", "CREATE TABLE churn (x int)");
    for _ in 0..8 {
        pg.psql(
            "postgres",
            "INSERT INTO churn SELECT generate_series(1, 10); SELECT pg_switch_wal()",
        );
    }
    let repo = TempRepo::copy_of_repo();
    two_platforms(&repo, &pg.url("postgres"));
    let headless = |target: &str| {
        repo.ward(&[
            "run",
            "pg-wal-disk-growth",
            "--target",
            target,
            "--headless",
            "--report",
            "json",
        ])
    };
    let step_ids = |v: &serde_json::Value| -> Vec<String> {
        v["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .filter_map(|s| s["step_id"].as_str().map(str::to_string))
            .collect()
    };

    // Self-managed: the checkpoint is proposed and waits for approval.
    let run = headless("selfhosted").expect_code(3);
    let v = run.json();
    assert!(
        step_ids(&v).contains(&"checkpoint".to_string()),
        "{:?}",
        step_ids(&v)
    );

    // RDS: never proposed; the recommendation says why and what only the
    // provider's console can do.
    let run = headless("orders_rds").expect_code(0);
    let v = run.json();
    assert!(
        !step_ids(&v).contains(&"checkpoint".to_string()),
        "{:?}",
        step_ids(&v)
    );
    let recommendation = v["recommendation"].as_str().expect("recommendation");
    assert!(
        recommendation.contains(
            "checkpoint was left out: it does not work on RDS: CHECKPOINT needs superuser (or pg_checkpoint), which RDS keeps for itself"
        ) && recommendation.contains("on RDS and Aurora, raise max_wal_size in the DB parameter group"),
        "{recommendation}"
    );
}

#[test]
fn an_unknown_platform_is_refused_with_its_place_in_ward_yaml_and_in_a_runbook() {
    let repo = TempRepo::copy_of_repo();
    repo.write(
        "ward.yaml",
        "targets:\n  orders:\n    engine: postgres\n    url: postgres://ward@db/app\n    environment: prod\n    platform: heroku\n",
    );
    let run = repo.ward(&["check"]).expect_code(2);
    assert!(
        run.stderr.contains("ward.yaml:6:15: targets.orders.platform: unknown value `heroku`; valid values: self-managed, rds, aurora, cloudsql, azure"),
        "{}",
        run.stderr
    );

    let repo = TempRepo::copy_of_repo();
    repo.edit(
        "runbooks/pg-wal-disk-growth.yaml",
        "not_on: [rds, aurora, cloudsql, azure]",
        "not_on: [rds, heroku]",
    );
    let (line, col) = repo.position_of("runbooks/pg-wal-disk-growth.yaml", "heroku");
    let run = repo.ward(&["check"]).expect_code(1);
    assert!(
        run.stdout
            .contains(&format!("pg-wal-disk-growth.yaml:{line}:{col}")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("heroku"), "{}", run.stdout);
}

#[test]
fn a_step_with_both_platforms_and_not_on_is_refused_by_check() {
    let repo = TempRepo::copy_of_repo();
    repo.edit(
        "runbooks/pg-wal-disk-growth.yaml",
        "not_on: [rds, aurora, cloudsql, azure]",
        "not_on: [rds]\n    platforms: [self-managed]",
    );
    let run = repo.ward(&["check"]).expect_code(1);
    assert!(
        run.stdout.contains(
            "give `platforms` (where the step works) or `not_on` (where it does not), not both"
        ),
        "{}",
        run.stdout
    );
}

#[test]
fn a_server_with_no_free_connection_slot_is_diagnosed_as_too_many_connections() {
    // 5 slots, 3 kept for superusers: a plain role may connect only while,
    // its own slot taken, 3 are free. Two held sessions leave it none.
    // They are the superuser's, which no reserve ever refuses, so the
    // harness's own polling can never race them out of a slot.
    let Some(pg) = PgServer::start_with(5) else {
        return;
    };
    pg.psql("postgres", "CREATE ROLE app LOGIN");
    let _first = pg.session("postgres", "postgres", "pool-1", "");
    let _second = pg.session("postgres", "postgres", "pool-2", "");
    pg.wait_for(
        "postgres",
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pool-%'",
        "2",
        Duration::from_secs(20),
    );
    let repo = TempRepo::copy_of_repo();
    let url = format!("postgres://app@127.0.0.1:{}/postgres", pg.port());
    let v = assert_unreachable(
        &repo,
        run_json(&repo, "pg-failover", &url),
        "too_many_connections",
        Some("53300"),
        "no password here",
    );
    assert!(
        v["unreachable"]["checks"][1]
            .as_str()
            .is_some_and(|c| c.contains("pg-connection-exhaustion")),
        "{:#}",
        v["unreachable"]
    );
}

#[test]
fn a_standby_with_hot_standby_off_is_diagnosed_as_in_recovery() {
    let Some(primary) = PgServer::start_with(20) else {
        return;
    };
    let mut standby = PgServer::standby_of(&primary, "cold_standby");
    standby.restart_with("hot_standby = off");
    let repo = TempRepo::copy_of_repo();
    let v = assert_unreachable(
        &repo,
        run_json(&repo, "pg-failover", &standby.url("postgres")),
        "in_recovery",
        Some("57P03"),
        "no password here",
    );
    assert_eq!(
        v["unreachable"]["what"],
        "the server is in recovery and refuses connections"
    );
}

#[test]
fn ward_step_against_a_closed_port_exits_6_with_the_diagnosis_on_stderr() {
    let repo = TempRepo::copy_of_repo();
    let secret = "St3p-N0-L1sten";
    let url = format!("postgres://app:{secret}@127.0.0.1:{}/orders", closed_port());
    let run = repo
        .ward(&[
            "step",
            "pg-failover",
            "node_role",
            "--url",
            &url,
            "--env",
            "dev",
        ])
        .expect_code(6);
    assert!(
        run.stderr.contains(
            "error: cannot connect: connection refused: nothing listens at that address (refused)\nlikely cause: PostgreSQL is not running on that host and port"
        ),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(secret) && !run.stdout.contains(secret));
}

#[test]
fn every_signalling_statement_of_the_shipped_runbooks_spares_the_providers_admin_sessions() {
    let dir = crate::harness::repo_root().join("runbooks");
    let (contracts, problems) = ward::contract::load_dir(&dir, &ward::sql::Analyzer::default());
    assert!(problems.is_empty(), "{problems:?}");
    let mut signalling = 0;
    for c in &contracts {
        for s in &c.steps {
            let variants = std::iter::once(&s.spec.sql).chain(s.spec.sql_by_version.values());
            for sql in variants {
                if sql.contains("pg_cancel_backend") || sql.contains("pg_terminate_backend") {
                    signalling += 1;
                    assert!(
                        sql.contains(
                            "coalesce(a.usename, '') NOT IN ('rdsadmin', 'cloudsqladmin', 'azure_superuser')"
                        ),
                        "{}/{} may signal a managed service's own session (rdsadmin, cloudsqladmin, azure_superuser): add the exclusion to its SQL:\n{sql}",
                        c.id(),
                        s.spec.id
                    );
                }
            }
        }
    }
    assert!(signalling >= 6, "found {signalling} signalling statements");
}
