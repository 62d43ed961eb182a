//! Outcomes judged after the fact, on real PostgreSQL: after the offline
//! planner's remediation runs (approved by other operators), the runbook's
//! headline diagnostics run again (source `runbook`, through the gate) and
//! the conclusion and the outcome come from what they see now. A fix that
//! clears the incident concludes (exit 0); one that verified while a
//! superuser's forgotten transaction keeps the incident going ends
//! `persists` (exit 5) and names the session it left alone.

use std::time::Duration;

use serde_json::Value;

use crate::harness::TempRepo;
use crate::planner_e2e::{approve_when_proposed, audit_verifies, own_server, start_run, step};

const ACCOUNTS: &str = "CREATE TABLE accounts (id int PRIMARY KEY, credit_limit int NOT NULL); \
     INSERT INTO accounts SELECT g, 1000 FROM generate_series(1, 100) g; \
     CREATE ROLE app LOGIN; GRANT ALL ON accounts TO app;";

/// The session's exit code and JSON report.
fn ended(session: std::process::Child) -> (Option<i32>, Value) {
    let done = session.wait_with_output().expect("session ends");
    let report = serde_json::from_slice(&done.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&done.stderr)));
    (done.status.code(), report)
}

/// The steps that ran, with who proposed them, from the session log.
fn proposed_sources(repo: &TempRepo, id: &str) -> Vec<(String, String)> {
    let log = repo.path().join(format!(".ward/sessions/{id}.jsonl"));
    std::fs::read_to_string(&log)
        .expect("session log")
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["kind"] == "proposed")
        .map(|e| {
            (
                e["data"]["step_id"].as_str().unwrap_or("adhoc").to_string(),
                e["data"]["source"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect()
}

#[test]
fn a_terminate_that_verified_while_a_superuser_transaction_stays_open_ends_persists_and_names_it() {
    let Some(pg) = own_server(40) else { return };
    let url = pg.fresh_db("persists");
    pg.psql(&url, ACCOUNTS);
    let _workers: Vec<_> = (0..2)
        .map(|n| {
            pg.session(
                &url,
                "app",
                "invoice-worker",
                &format!(
                    "BEGIN; UPDATE accounts SET credit_limit = 0 WHERE id = {};",
                    n + 1
                ),
            )
        })
        .collect();
    let _dba = pg.session(
        &url,
        "postgres",
        "psql",
        "BEGIN; UPDATE accounts SET credit_limit = 7 WHERE id = 50;",
    );
    pg.wait_for(
        &url,
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'",
        "3",
        Duration::from_secs(20),
    );
    let dba_pid = pg.psql(
        &url,
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'psql' AND state = 'idle in transaction'",
    );
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
    let (code, report) = ended(session);

    assert_eq!(code, Some(5), "{report:#}");
    assert_eq!(report["outcome"], "persists");
    assert_eq!(
        step(&report, "terminate_idle_in_transaction")["verified"],
        true
    );
    let conclusion = report["conclusion"].as_str().unwrap_or("");
    for needle in [
        "The incident persists: 1 session(s) still idle in transaction over the threshold (was 3)"
            .to_string(),
        format!("pid {dba_pid} (user postgres, application psql"),
        "never terminates superuser sessions".to_string(),
        format!("SELECT pg_terminate_backend({dba_pid})"),
    ] {
        assert!(
            conclusion.contains(&needle),
            "{needle:?} not in {conclusion}"
        );
    }
    let recommendation = report["recommendation"].as_str().unwrap_or("");
    assert!(
        recommendation.contains("the incident PERSISTS"),
        "{recommendation}"
    );
    // The headline diagnostics ran again after the change, proposed by the
    // runbook and gated like any statement.
    let sources = proposed_sources(&repo, &id);
    let rechecked: Vec<&str> = sources
        .iter()
        .filter(|(_, s)| s == "runbook")
        .map(|(step, _)| step.as_str())
        .collect();
    assert_eq!(
        rechecked,
        ["iit_headline", "iit_sessions", "iit_by_application"]
    );

    // Graded by the database: the workers are gone, the DBA's transaction
    // is still open.
    assert_eq!(
        pg.psql(
            &url,
            "SELECT string_agg(application_name || '=' || n, ',' ORDER BY application_name) FROM \
             (SELECT application_name, count(*) AS n FROM pg_stat_activity \
               WHERE state = 'idle in transaction' GROUP BY 1) g"
        ),
        "psql=1"
    );
    audit_verifies(&repo, &id);
}

#[test]
fn a_terminate_that_clears_the_incident_concludes_from_the_new_facts() {
    let Some(pg) = own_server(40) else { return };
    let url = pg.fresh_db("clears");
    pg.psql(&url, ACCOUNTS);
    let _workers: Vec<_> = (0..3)
        .map(|n| {
            pg.session(
                &url,
                "app",
                "invoice-worker",
                &format!(
                    "BEGIN; UPDATE accounts SET credit_limit = 0 WHERE id = {};",
                    n + 1
                ),
            )
        })
        .collect();
    pg.wait_for(
        &url,
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'",
        "3",
        Duration::from_secs(20),
    );
    std::thread::sleep(Duration::from_secs(31));

    let repo = TempRepo::copy_of_repo();
    let mut session = start_run(
        &repo,
        "pg-idle-in-transaction",
        &url,
        &["max_idle_seconds=30"],
    );
    let (id, _) = approve_when_proposed(&repo, &mut session, "terminate_idle_in_transaction");
    let (code, report) = ended(session);

    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["outcome"], "concluded");
    assert_eq!(
        step(&report, "terminate_idle_in_transaction")["verified"],
        true
    );
    let conclusion = report["conclusion"].as_str().unwrap_or("");
    for needle in [
        "The incident has cleared: 0 sessions idle in transaction over the threshold now (was 3)",
        "The culprit was application invoice-worker (user app",
    ] {
        assert!(
            conclusion.contains(needle),
            "{needle:?} not in {conclusion}"
        );
    }
    assert!(
        !conclusion.contains("Terminate them"),
        "the conclusion still asks for the fix that ran: {conclusion}"
    );
    assert_eq!(
        pg.psql(
            &url,
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'"
        ),
        "0"
    );
    audit_verifies(&repo, &id);
}
