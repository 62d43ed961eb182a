//! The version matrix: every shipped runbook's SQL on a real server of each
//! major version this machine has (Debian's 15; 17 and 18 from the wheels
//! `.ci/run` installs, see `crate::pg::versions`), one shared server per
//! version.

use std::collections::BTreeMap;

use ward::config::Config;
use ward::contract::{self, Contract, InputType, StepKind};
use ward::exec::step;
use ward::exec::{Executor, Limits, Mode};
use ward::sql::{Analyzer, Engine};

use crate::exec::{FIXTURE, evidence_config, fixture_inputs, pg_target, runtime};
use crate::harness::repo_root;

/// Inputs for every input of `c`: the fixture's where it has one, the
/// default, else a harmless value of the input's type (pid 0 or the
/// minimum: no session has it), so that verify and remediation SQL bind.
fn all_inputs(c: &Contract) -> BTreeMap<String, serde_json::Value> {
    let mut out = fixture_inputs(c);
    for (name, spec) in &c.spec.inputs {
        // Sampling windows and pauses at their shortest: the statements are
        // the same, the matrix only waits less.
        if (name == "sample_seconds" || name.ends_with("pause_seconds"))
            && !out.contains_key(name)
            && let Some(min) = spec.min
        {
            out.insert(name.clone(), serde_json::json!(min as i64));
            continue;
        }
        if out.contains_key(name) || spec.default.is_some() {
            continue;
        }
        let v = match spec.ty {
            InputType::Integer | InputType::Number => {
                serde_json::json!(spec.min.map_or(0, |m| m as i64))
            }
            InputType::Boolean => serde_json::json!(false),
            InputType::Duration => serde_json::json!("1s"),
            InputType::Enum => serde_json::json!(
                spec.values
                    .as_ref()
                    .and_then(|v| v.first())
                    .cloned()
                    .unwrap_or_default()
            ),
            InputType::String | InputType::Identifier | InputType::IdentifierList => {
                serde_json::json!("ward_matrix_none")
            }
        };
        out.insert(name.clone(), v);
    }
    out
}

/// Whether PostgreSQL can plan `sql` without running it (`EXPLAIN`): a
/// plain DML or SELECT statement, not a utility command.
fn explainable(sql: &str) -> bool {
    let first = sql
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    ["SELECT", "WITH", "UPDATE", "DELETE", "INSERT"].contains(&first.as_str())
}

/// What went wrong on one server: `runbook/step (what): error`.
fn run_every_step(pg: &crate::pg::PgServer, major: u32) -> (usize, Vec<String>) {
    let url = pg.fresh_db(&format!("matrix_{major}"));
    pg.psql(&url, FIXTURE);
    // Extensions shipped runbooks use besides pg_stat_statements (in
    // template1 already): amcheck (pg-invalid-index), from contrib.
    pg.psql(&url, "CREATE EXTENSION IF NOT EXISTS amcheck");
    let config = Config::discover(&repo_root()).expect("config");
    let mut analyzer = Analyzer::new(config.analyzer_options());
    let (contracts, problems) = contract::load_dir(&config.runbooks, &analyzer);
    assert!(problems.is_empty(), "{problems:?}");
    let mut failures = Vec::new();
    let mut ran = 0;
    runtime().block_on(async {
        let mut ex = Executor::connect(&pg_target(&url), "test-matrix", false)
            .await
            .expect("connect");
        let version = ex.identity().expect("identity").server_version_num;
        // As a session does: steps resolve for this server.
        analyzer.options.server = ex.server_facts();
        assert_eq!(version / 10000, major, "the server of major {major}");
        for c in contracts
            .iter()
            .filter(|c| c.spec.engines.contains(&Engine::Postgres))
        {
            let inputs = all_inputs(c);
            // Functions a runbook creates itself (pg-int-to-bigint's
            // helpers) are created first, on this throwaway database, so
            // the steps that call them can be planned; creating them checks
            // their bodies on this version too.
            for s in c.steps.iter().filter(|s| {
                s.spec.kind != StepKind::Diagnostic
                    && s.spec
                        .sql
                        .trim_start()
                        .starts_with("CREATE OR REPLACE FUNCTION")
                    && s.spec.available_on(major)
            }) {
                let id = &s.spec.id;
                let resolved = step::resolve(c, id, &inputs, Engine::Postgres, &analyzer)
                    .unwrap_or_else(|e| panic!("{}/{id}: {e}", c.id()));
                let got = ex
                    .run(
                        &resolved.sql,
                        &resolved.binds,
                        Mode::Write { transaction: true },
                        &Limits::default(),
                        &mut |_| {},
                    )
                    .await;
                if let Err(e) = got {
                    failures.push(format!("{}/{id} (creates a function): {e}", c.id()));
                }
                ran += 1;
            }
            for s in &c.steps {
                let id = &s.spec.id;
                if !s.spec.available_on(major) {
                    continue;
                }
                let resolved = step::resolve(c, id, &inputs, Engine::Postgres, &analyzer)
                    .unwrap_or_else(|e| panic!("{}/{id}: {e}", c.id()));
                if s.spec.kind == StepKind::Diagnostic {
                    let result = step::execute(&mut ex, &resolved, &evidence_config()).await;
                    if let Some(e) = result.error {
                        failures.push(format!("{}/{id} (diagnostic): {}", c.id(), e.message));
                    }
                    ran += 1;
                } else if explainable(&resolved.sql) {
                    // Planned, never run: its functions and columns exist.
                    let explain = format!("EXPLAIN {}", resolved.sql);
                    let got = ex
                        .run(
                            &explain,
                            &resolved.binds,
                            Mode::ReadOnly,
                            &Limits::default(),
                            &mut |_| {},
                        )
                        .await;
                    if let Err(e) = got {
                        failures.push(format!("{}/{id} ({}): {e}", c.id(), s.spec.kind.name()));
                    }
                    ran += 1;
                }
                let verify = step::verify_sql(
                    c,
                    id,
                    &inputs,
                    Engine::Postgres,
                    analyzer.options.server.as_ref(),
                )
                .unwrap_or_else(|e| panic!("{}/{id} verify: {e}", c.id()));
                if let Some((sql, binds)) = verify {
                    let got: Result<_, _> = ex
                        .run(
                            &sql,
                            &binds,
                            Mode::ReadOnly,
                            &Limits::default(),
                            &mut |_| {},
                        )
                        .await;
                    if let Err(e) = got {
                        failures.push(format!("{}/{id} (verify): {e}", c.id()));
                    }
                    ran += 1;
                }
            }
        }
    });
    (ran, failures)
}

#[test]
fn every_runbook_step_runs_on_every_available_server_version() {
    let servers = crate::pg::all_servers();
    if servers.is_empty() {
        return;
    }
    // One thread per version: most of the time is the servers' sampling
    // windows, not this process.
    let results: Vec<(u32, usize, Vec<String>)> = std::thread::scope(|scope| {
        let running: Vec<_> = servers
            .iter()
            .map(|(major, pg)| {
                scope.spawn(move || {
                    let (ran, failures) = run_every_step(pg, *major);
                    (*major, ran, failures)
                })
            })
            .collect();
        running
            .into_iter()
            .map(|h| h.join().expect("a version's matrix panicked"))
            .collect()
    });
    let mut report = Vec::new();
    for (major, ran, failures) in results {
        assert!(ran >= 60, "PostgreSQL {major}: ran only {ran} statements");
        report.extend(
            failures
                .into_iter()
                .map(|f| format!("PostgreSQL {major}: {f}")),
        );
    }
    assert!(
        report.is_empty(),
        "{} statement(s) failed:\n{}",
        report.len(),
        report.join("\n")
    );
}

#[test]
fn a_step_needing_a_newer_server_is_left_out_of_a_real_session_and_the_report_says_so() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let major = pg.major();
    let url = pg.fresh_db("left_out");
    let repo = crate::harness::TempRepo::copy_of_repo();
    repo.edit(
        "runbooks/pg-wal-disk-growth.yaml",
        "    title: WAL archiver status\n    kind: diagnostic\n",
        &format!(
            "    title: WAL archiver status\n    kind: diagnostic\n    min_version: {}\n",
            major + 1
        ),
    );
    let run = repo.ward(&[
        "run",
        "pg-wal-disk-growth",
        "--url",
        &url,
        "--env",
        "dev",
        "--agent",
        "offline",
        "--headless",
        "--report",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", run.stdout, run.stderr));
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["step_id"].as_str())
        .collect();
    assert!(steps.contains(&"wal_generation"), "{steps:?}");
    assert!(!steps.contains(&"archiver_status"), "{steps:?}");
    let recommendation = report["recommendation"].as_str().unwrap_or("");
    assert!(
        recommendation.contains(&format!(
            "archiver_status was left out: it needs PostgreSQL {} or later, and this server is PostgreSQL {major}",
            major + 1
        )),
        "{report:#}"
    );
}

#[test]
fn ward_step_on_a_server_too_old_for_the_step_says_which_version_it_needs() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let major = pg.major();
    let url = pg.fresh_db("step_too_old");
    let repo = crate::harness::TempRepo::copy_of_repo();
    repo.edit(
        "runbooks/pg-wal-disk-growth.yaml",
        "    title: WAL archiver status\n    kind: diagnostic\n",
        &format!(
            "    title: WAL archiver status\n    kind: diagnostic\n    min_version: {}\n",
            major + 1
        ),
    );
    let run = repo
        .ward(&[
            "step",
            "pg-wal-disk-growth",
            "archiver_status",
            "--url",
            &url,
            "--env",
            "dev",
        ])
        .expect_code(2);
    assert!(
        run.stderr.contains(&format!(
            "error: proposal refused: step `archiver_status` is left out on this server: it needs PostgreSQL {} or later, and this server is PostgreSQL {major}",
            major + 1
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn checkpoint_activity_reads_pg_stat_bgwriter_before_17_and_pg_stat_checkpointer_from_17() {
    for (major, pg) in crate::pg::all_servers() {
        let url = pg.fresh_db("checkpoints");
        // One requested checkpoint, so the counters are not all zero.
        pg.psql(&url, "CHECKPOINT");
        let out = crate::harness::ward(&[
            "step",
            "pg-wal-disk-growth",
            "checkpoint_activity",
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
        let requested = facts["requested"].as_i64().unwrap_or(-1);
        assert!(
            requested >= 1 && facts["timed"].as_i64().is_some_and(|t| t >= 0),
            "PostgreSQL {major}: {out}"
        );
        let pct = facts["requested_pct"].as_f64().unwrap_or(-1.0);
        assert!((0.0..=100.0).contains(&pct), "PostgreSQL {major}: {out}");
    }
}
