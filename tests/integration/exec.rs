//! Running steps against a real PostgreSQL server (started by the harness)
//! and real SQLite files.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use ward::config::Config;
use ward::contract::{self, Contract, StepKind};
use ward::evidence::EvidenceConfig;
use ward::exec::step::{self, StepResult};
use ward::exec::{Bind, ExecError, Executor, Limits, Mode, RowEvent, Target};
use ward::sql::{Analyzer, Engine};
use ward::yaml::Doc;

use crate::harness::repo_root;

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

pub(crate) fn pg_target(url: &str) -> Target {
    Target::from_url(url, "dev").expect("target")
}

pub(crate) fn evidence_config() -> EvidenceConfig {
    EvidenceConfig {
        script_root: repo_root().join("runbooks"),
        script_cwd: repo_root(),
        pseudonym_key: [7; 32],
        ..EvidenceConfig::default()
    }
}

/// Runs a statement, collecting rows (tests only: the product streams).
async fn collect(
    ex: &mut Executor,
    sql: &str,
    binds: &[Bind],
    mode: Mode,
    limits: &Limits,
) -> Result<(ward::exec::Outcome, Vec<ward::exec::Row>), ExecError> {
    let mut rows = Vec::new();
    let outcome = ex
        .run(sql, binds, mode, limits, &mut |e| {
            if let RowEvent::Row(r) = e {
                rows.push(r.clone());
            }
        })
        .await?;
    Ok((outcome, rows))
}

pub(crate) const FIXTURE: &str = "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int, total numeric(12,2), email text, note text);
INSERT INTO orders SELECT g, g % 100, g * 1.5, 'user' || g || '@example.com', NULL FROM generate_series(1, 5000) g;
CREATE INDEX orders_customer_idx ON orders (customer_id);
ANALYZE orders;";

/// Values for inputs that have no default, by name, for the fixture database.
pub(crate) fn fixture_inputs(c: &Contract) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    for (name, spec) in &c.spec.inputs {
        // Sampling windows sleep; a second keeps the suite fast.
        if name == "sample_seconds" {
            out.insert(name.clone(), serde_json::json!(1));
            continue;
        }
        if spec.default.is_some() {
            continue;
        }
        let v = match name.as_str() {
            "table" | "index_table" => "public.orders",
            "column" | "index_columns" => "customer_id",
            "source_column" => "id",
            "index_name" => "orders_customer_idx",
            "check_name" => "orders_customer_id_not_null",
            // pg-int-to-bigint's copy of `column`: an existing bigint column.
            "new_column" => "id",
            "old_column" => "customer_id_int",
            _ => continue,
        };
        out.insert(name.clone(), serde_json::Value::String(v.into()));
    }
    out
}

#[test]
fn every_example_runbooks_diagnostics_run_and_summarize_on_postgres() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("diagnostics");
    pg.psql(&url, FIXTURE);
    let config = Config::discover(&repo_root()).expect("config");
    let analyzer = Analyzer::new(config.analyzer_options());
    let (contracts, problems) = contract::load_dir(&config.runbooks, &analyzer);
    assert!(problems.is_empty(), "{problems:?}");
    let rt = runtime();
    let mut ran = 0;
    rt.block_on(async {
        let mut ex = Executor::connect(&pg_target(&url), "test-diagnostics", false)
            .await
            .expect("connect");
        // Steps for newer servers (pg_stat_io on 16+) are left out, as a
        // session leaves them out; versions.rs runs them where they apply.
        let major = ex.identity().expect("identity").server_version_num / 10000;
        for c in contracts
            .iter()
            .filter(|c| c.spec.engines.contains(&Engine::Postgres))
        {
            let inputs = fixture_inputs(c);
            for s in c
                .steps
                .iter()
                .filter(|s| s.spec.kind == StepKind::Diagnostic && s.spec.available_on(major))
            {
                let resolved = step::resolve(c, &s.spec.id, &inputs, Engine::Postgres, &analyzer)
                    .unwrap_or_else(|e| panic!("{}/{}: {e}", c.id(), s.spec.id));
                assert_eq!(resolved.mode, Mode::ReadOnly);
                let result: StepResult =
                    step::execute(&mut ex, &resolved, &evidence_config()).await;
                assert!(
                    result.error.is_none(),
                    "{}/{} failed: {:?}\n{}",
                    c.id(),
                    s.spec.id,
                    result.error,
                    resolved.sql
                );
                let ev = result
                    .evidence
                    .as_ref()
                    .unwrap_or_else(|| panic!("{}/{}: no evidence", c.id(), s.spec.id));
                assert!(!ev.summary.is_empty(), "{}/{}", c.id(), s.spec.id);
                assert_eq!(
                    ev.facts.get("row_count").and_then(|v| v.as_u64()),
                    Some(result.rows_seen),
                    "{}/{}",
                    c.id(),
                    s.spec.id
                );
                assert!(
                    ev.warnings.iter().all(|w| !w.contains("fell back")),
                    "{}/{}: {:?}\n{}",
                    c.id(),
                    s.spec.id,
                    ev.warnings,
                    ev.summary
                );
                ran += 1;
            }
        }
    });
    assert!(ran >= 40, "ran {ran} diagnostics");
}

#[test]
fn a_write_inside_a_diagnostic_is_refused_by_the_database() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("readonly");
    pg.psql(&url, "CREATE SEQUENCE s");
    runtime().block_on(async {
        let mut ex = Executor::connect(&pg_target(&url), "test-ro", false)
            .await
            .expect("connect");
        let err = collect(
            &mut ex,
            "CREATE TABLE sneaky (id int)",
            &[],
            Mode::ReadOnly,
            &Limits::default(),
        )
        .await
        .expect_err("refused");
        assert!(matches!(err, ExecError::ReadOnly(_)), "{err:?}");
        let err = collect(
            &mut ex,
            "SELECT nextval('public.s')",
            &[],
            Mode::ReadOnly,
            &Limits::default(),
        )
        .await
        .expect_err("refused");
        // A side-effecting function called from a SELECT: refused by the
        // database too, not only by the classifier.
        assert!(matches!(err, ExecError::ReadOnly(_)), "{err:?}");
        // The connection is still usable afterwards.
        let (_, rows) = collect(
            &mut ex,
            "SELECT 1 AS one",
            &[],
            Mode::ReadOnly,
            &Limits::default(),
        )
        .await
        .expect("select");
        assert_eq!(rows[0]["one"], 1);
    });
    assert_eq!(
        pg.psql(
            &url,
            "SELECT count(*) FROM pg_class WHERE relname = 'sneaky'"
        ),
        "0"
    );
    assert_eq!(
        pg.psql(&url, "SELECT is_called FROM s"),
        "f",
        "the sequence never advanced"
    );
}

#[test]
fn statement_timeout_fires_and_is_reported_as_such() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("stmt_timeout");
    runtime().block_on(async {
        let mut ex = Executor::connect(&pg_target(&url), "test-timeout", false)
            .await
            .expect("connect");
        let limits = Limits {
            statement_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let t = Instant::now();
        let err = collect(&mut ex, "SELECT pg_sleep(10)", &[], Mode::ReadOnly, &limits)
            .await
            .expect_err("times out");
        assert!(matches!(err, ExecError::StatementTimeout(_)), "{err:?}");
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!(err.kind(), ward::exec::ErrorKind::StatementTimeout);
    });
}

#[test]
fn lock_timeout_fires_on_a_real_lock_conflict() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("lock_timeout");
    pg.psql(&url, "CREATE TABLE t (id int)");
    let mut holder = pg.psql_background(&url, "SET application_name = 'holder'; BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(30);");
    pg.wait_for(&url, "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'holder' AND l.mode = 'AccessExclusiveLock' AND l.granted", "1", Duration::from_secs(10));
    runtime().block_on(async {
        let mut ex = Executor::connect(&pg_target(&url), "test-lock", false)
            .await
            .expect("connect");
        let limits = Limits {
            lock_timeout: Some(Duration::from_millis(300)),
            ..Limits::default()
        };
        let err = collect(
            &mut ex,
            "ALTER TABLE public.t ADD COLUMN x int",
            &[],
            Mode::Write { transaction: true },
            &limits,
        )
        .await
        .expect_err("lock timeout");
        assert!(matches!(err, ExecError::LockTimeout(_)), "{err:?}");
    });
    pg.psql(
        &url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'holder'",
    );
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(pg.psql(&url, "SELECT count(*) FROM information_schema.columns WHERE table_name = 't' AND column_name = 'x'"), "0");
}

#[test]
fn a_cancelled_query_really_stops_on_the_server() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("cancel");
    let rt = runtime();
    rt.block_on(async {
        let mut ex = Executor::connect(&pg_target(&url), "test-cancel", false)
            .await
            .expect("connect");
        let pid = ex.backend_pid().expect("pid");
        let canceller = ex.canceller();
        let limits = Limits {
            statement_timeout: Duration::from_secs(60),
            ..Limits::default()
        };
        let running = tokio::spawn(async move {
            let r = collect(&mut ex, "SELECT pg_sleep(30)", &[], Mode::ReadOnly, &limits).await;
            (r.map(|_| ()), ex)
        });
        // Wait until the server shows ward's statement running, under ward's name.
        let probe = format!(
            "SELECT state || '|' || application_name FROM pg_stat_activity WHERE pid = {pid}"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while pg.psql(&url, &probe) != "active|ward test-cancel" {
            assert!(
                Instant::now() < deadline,
                "ward's query never showed up as active: {}",
                pg.psql(&url, &probe)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let t = Instant::now();
        canceller.cancel().await.expect("cancel");
        let (result, mut ex) = running.await.expect("join");
        assert!(matches!(result, Err(ExecError::Cancelled)), "{result:?}");
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!(
            pg.psql(
                &url,
                &format!("SELECT state FROM pg_stat_activity WHERE pid = {pid}")
            ),
            "idle"
        );
        // Still usable.
        let (_, rows) = collect(
            &mut ex,
            "SELECT 2 AS two",
            &[],
            Mode::ReadOnly,
            &Limits::default(),
        )
        .await
        .expect("select");
        assert_eq!(rows[0]["two"], 2);
    });
}

#[test]
fn a_connection_dropped_mid_query_is_a_clear_error_not_a_hang() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("dropped");
    let rt = runtime();
    rt.block_on(async {
        let mut ex = Executor::connect(&pg_target(&url), "test-dropped", false)
            .await
            .expect("connect");
        let pid = ex.backend_pid().expect("pid");
        let limits = Limits {
            statement_timeout: Duration::from_secs(60),
            ..Limits::default()
        };
        let running = tokio::spawn(async move {
            collect(&mut ex, "SELECT pg_sleep(30)", &[], Mode::ReadOnly, &limits)
                .await
                .map(|_| ())
        });
        pg.wait_for(
            &url,
            &format!("SELECT state FROM pg_stat_activity WHERE pid = {pid}"),
            "active",
            Duration::from_secs(10),
        );
        let t = Instant::now();
        pg.psql(&url, &format!("SELECT pg_terminate_backend({pid})"));
        let result = tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .expect("no hang")
            .expect("join");
        let err = result.expect_err("lost");
        assert!(matches!(err, ExecError::ConnectionLost(_)), "{err:?}");
        assert!(
            err.to_string()
                .contains("connection to the database was lost"),
            "{err}"
        );
        assert!(t.elapsed() < Duration::from_secs(10));
    });
}

#[test]
fn rows_are_capped_and_the_cap_is_reported() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("cap");
    runtime().block_on(async {
        let mut ex = Executor::connect(&pg_target(&url), "test-cap", false)
            .await
            .expect("connect");
        let limits = Limits {
            max_rows: Some(10),
            ..Limits::default()
        };
        let t = Instant::now();
        // A set-returning function in the select list streams its rows
        // (one in FROM is materialized first).
        let (outcome, rows) = collect(
            &mut ex,
            "SELECT generate_series(1, 500000000) AS n",
            &[],
            Mode::ReadOnly,
            &limits,
        )
        .await
        .expect("capped");
        assert_eq!(
            (outcome.rows_kept, outcome.capped, rows.len()),
            (10, true, 10)
        );
        assert_eq!(
            rows.iter()
                .map(|r| r["n"].as_i64().unwrap_or(0))
                .collect::<Vec<_>>(),
            (1..=10).collect::<Vec<i64>>()
        );
        // Half a billion rows would take minutes: the server stopped.
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the server kept producing rows: {:?}",
            t.elapsed()
        );
        let pid = ex.backend_pid().expect("pid");
        assert_eq!(
            pg.psql(
                &url,
                &format!("SELECT state FROM pg_stat_activity WHERE pid = {pid}")
            ),
            "idle"
        );
        let (outcome, _) = collect(
            &mut ex,
            "SELECT $1::int + 1 AS n",
            &[Bind::Int(41)],
            Mode::ReadOnly,
            &limits,
        )
        .await
        .expect("binds");
        assert!(!outcome.capped);
    });
}

#[test]
fn values_of_common_types_come_back_as_json() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("types");
    runtime().block_on(async {
        let mut ex = Executor::connect(&pg_target(&url), "test-types", false).await.expect("connect");
        let sql = "SELECT 1::int2 AS a, 2::int4 AS b, 3::int8 AS c, 1.5::float8 AS d, 12.34::numeric AS e, 'x'::text AS f,
            true AS g, NULL::int AS h, '2026-01-02 03:04:05+00'::timestamptz AS i, interval '1 day 02:00:00' AS j,
            '10.0.0.1'::inet AS k, '0/16B3748'::pg_lsn AS l, ARRAY[1,2,3] AS m, '{\"k\": 1}'::jsonb AS n,
            'pg_class'::regclass::oid AS o, '8c6f2f3e-8d4c-4f53-9b1f-2b3c4d5e6f70'::uuid AS p, 'name'::name AS q, '4'::xid AS r";
        let (_, rows) = collect(&mut ex, sql, &[], Mode::ReadOnly, &Limits::default()).await.expect("select");
        let row = serde_json::Value::Object(rows[0].clone());
        assert_eq!(
            row,
            serde_json::json!({"a": 1, "b": 2, "c": 3, "d": 1.5, "e": 12.34, "f": "x", "g": true, "h": null,
                "i": "2026-01-02T03:04:05Z", "j": "1 days 02:00:00", "k": "10.0.0.1", "l": "0/16B3748", "m": [1, 2, 3],
                "n": {"k": 1}, "o": 1259, "p": "8c6f2f3e-8d4c-4f53-9b1f-2b3c4d5e6f70", "q": "name", "r": 4})
        );
    });
}

const SECRETS_RUNBOOK: &str = r#"id: secrets
title: Planted secrets
version: 1
engines: [postgres, sqlite]
steps:
  - id: accounts
    kind: diagnostic
    sql: SELECT email, token, dsn, note, n FROM main.accounts ORDER BY n
    summarize: { builtin: rows }
    redact: [email]
  - id: by_email
    kind: diagnostic
    sql: SELECT email, count(*) AS n FROM main.accounts GROUP BY email ORDER BY email
    summarize: { builtin: group, by: email }
    redact: [email]
  - id: stats
    kind: diagnostic
    sql: SELECT n, n * 2 AS doubled FROM main.accounts
    summarize: { builtin: stats }
  - id: top
    kind: diagnostic
    sql: SELECT email, n FROM main.accounts
    summarize: { builtin: top, by: n, limit: 2 }
  - id: schema
    kind: diagnostic
    sql: SELECT * FROM main.accounts
    summarize: { builtin: schema }
"#;

/// In `main.accounts`: SQLite's main database, and a schema of that name on
/// PostgreSQL ([`PG_MAIN_SCHEMA`] first), since ward reads Postgres with
/// search_path pinned to pg_catalog and every user table is named with its
/// schema.
const SECRETS_SQL: &str = "CREATE TABLE main.accounts (email text, token text, dsn text, note text, n int);
INSERT INTO main.accounts VALUES
 ('alice@corp.example', 'Bearer eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.sig', 'postgres://app:hunter2@db.internal/prod', 'AKIAIOSFODNN7EXAMPLE', 1),
 ('alice@corp.example', 'ok', 'host=db password=hunter2', 'fine', 2),
 ('bob@corp.example', 'ok', 'none', '-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----END RSA PRIVATE KEY-----', 3);";

const PG_MAIN_SCHEMA: &str = "CREATE SCHEMA main;";

const PLANTED: &[&str] = &[
    "alice@corp.example",
    "bob@corp.example",
    "hunter2",
    "eyJhbGciOiJIUzI1NiJ9",
    "AKIAIOSFODNN7EXAMPLE",
    "MIIBOgIBAAJBAKj34",
];

fn secrets_contract() -> Contract {
    let doc = Doc::new("runbooks/secrets.yaml", SECRETS_RUNBOOK);
    contract::load_doc(&doc, Path::new("runbooks"), &Analyzer::default()).expect("loads")
}

async fn run_all(ex: &mut Executor, c: &Contract, engine: Engine) -> Vec<StepResult> {
    let mut out = Vec::new();
    for s in &c.steps {
        let r = step::resolve(
            c,
            &s.spec.id,
            &BTreeMap::new(),
            engine,
            &Analyzer::default(),
        )
        .expect("resolve");
        out.push(step::execute(ex, &r, &evidence_config()).await);
    }
    out
}

fn assert_no_secret(results: &[StepResult]) {
    for r in results {
        assert!(r.error.is_none(), "{}: {:?}", r.step_id, r.error);
        let text = serde_json::to_string(&r.evidence).expect("json");
        for s in PLANTED {
            assert!(!text.contains(s), "{} leaked {s}:\n{text}", r.step_id);
        }
    }
}

#[test]
fn planted_secrets_appear_nowhere_in_summaries_or_facts() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("secrets");
    pg.psql(&url, &format!("{PG_MAIN_SCHEMA}{SECRETS_SQL}"));
    let c = secrets_contract();
    let results = runtime().block_on(async {
        let mut ex = Executor::connect(&pg_target(&url), "test-secrets", false)
            .await
            .expect("connect");
        run_all(&mut ex, &c, Engine::Postgres).await
    });
    assert_no_secret(&results);
    // Pseudonyms are stable: alice's two rows group together.
    let group = results[1].evidence.as_ref().expect("evidence");
    assert_eq!(
        group.facts.get("groups").and_then(|v| v.as_u64()),
        Some(2),
        "{}",
        group.summary
    );
}

/// The same summarizers give the same evidence on SQLite.
#[test]
fn sqlite_targets_summarize_like_postgres() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let sqlite_sql = SECRETS_SQL.replace("\\n", "\n");
    let c = secrets_contract();
    let rt = runtime();
    let lite = rt.block_on(async {
        let url = format!("sqlite://{}?mode=rwc", db.display());
        let target = Target::from_url(&url, "dev").expect("target");
        let mut setup = Executor::connect(&target, "setup", false)
            .await
            .expect("connect rw");
        for stmt in sqlite_sql
            .split(";\n")
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let stmt = stmt.trim_end_matches(';');
            collect(
                &mut setup,
                stmt,
                &[],
                Mode::Write { transaction: true },
                &Limits::default(),
            )
            .await
            .expect("setup");
        }
        drop(setup);
        let ro = Target::from_url(&format!("sqlite://{}", db.display()), "dev").expect("target");
        let mut ex = Executor::connect(&ro, "test-sqlite", true)
            .await
            .expect("connect ro");
        // A write on the read-only connection is refused by SQLite itself.
        let err = collect(
            &mut ex,
            "DELETE FROM main.accounts",
            &[],
            Mode::ReadOnly,
            &Limits::default(),
        )
        .await
        .expect_err("refused");
        assert!(matches!(err, ExecError::ReadOnly(_)), "{err:?}");
        run_all(&mut ex, &c, Engine::Sqlite).await
    });
    assert_no_secret(&lite);
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("parity");
    pg.psql(&url, &format!("{PG_MAIN_SCHEMA}{SECRETS_SQL}"));
    let pgr = rt.block_on(async {
        let mut ex = Executor::connect(&pg_target(&url), "test-parity", false)
            .await
            .expect("connect");
        run_all(&mut ex, &c, Engine::Postgres).await
    });
    for (l, p) in lite.iter().zip(&pgr) {
        let (le, pe) = (
            l.evidence.as_ref().expect("lite"),
            p.evidence.as_ref().expect("pg"),
        );
        // Column type names differ between engines (the schema summary shows
        // them); everything else must match.
        if l.step_id != "schema" {
            assert_eq!(le.facts, pe.facts, "{}", l.step_id);
            assert_eq!(le.summary, pe.summary, "{}", l.step_id);
        }
        assert_eq!(
            (l.rows_seen, l.sha256.clone()),
            (p.rows_seen, p.sha256.clone()),
            "{}",
            l.step_id
        );
    }
}

#[test]
fn a_crashing_script_falls_back_to_schema_without_leaking_rows() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("script");
    pg.psql(&url, &format!("{PG_MAIN_SCHEMA}{SECRETS_SQL}"));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("scripts")).expect("mkdir");
    let script = dir.path().join("scripts/crash.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\ncat\necho 'about to fail' >&2\nexit 3\n",
    )
    .expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let text = "id: crash\ntitle: t\nversion: 1\nengines: [postgres]\nsteps:\n  - id: s\n    kind: diagnostic\n    sql: SELECT email, note FROM main.accounts\n    summarize: { script: scripts/crash.sh }\n";
    let c = contract::load_doc(
        &Doc::new(dir.path().join("crash.yaml"), text),
        dir.path(),
        &Analyzer::default(),
    )
    .expect("loads");
    let mut cfg = evidence_config();
    cfg.script_root = dir.path().to_path_buf();
    let result = runtime().block_on(async {
        let mut ex = Executor::connect(&pg_target(&url), "test-script", false)
            .await
            .expect("connect");
        let r = step::resolve(
            &c,
            "s",
            &BTreeMap::new(),
            Engine::Postgres,
            &Analyzer::default(),
        )
        .expect("resolve");
        step::execute(&mut ex, &r, &cfg).await
    });
    let ev = result.evidence.expect("evidence");
    assert!(ev.summarizer.starts_with("schema"), "{}", ev.summarizer);
    assert!(
        ev.warnings.iter().any(|w| w.contains("crash.sh")),
        "{:?}",
        ev.warnings
    );
    assert!(ev.summary.contains("warning"), "{}", ev.summary);
    for s in [
        "alice@corp.example",
        "AKIAIOSFODNN7EXAMPLE",
        "about to fail",
    ] {
        assert!(!ev.summary.contains(s), "leaked {s}: {}", ev.summary);
    }
}

#[test]
fn ward_step_runs_an_allowed_diagnostic_and_refuses_what_needs_approval() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("wardstep");
    pg.psql(&url, FIXTURE);
    // trust auth ignores the password, which must still never be shown.
    let secret_url = url.replace("postgres@", "postgres:sekrit-pw@");
    let run = crate::harness::ward(&[
        "step",
        "pg-connection-exhaustion",
        "connection_headline",
        "--url",
        &secret_url,
        "--env",
        "dev",
        "--format",
        "json",
    ])
    .expect_code(0);
    let v = run.json();
    assert_eq!(v["step_id"], "connection_headline");
    assert!(
        v["evidence"]["facts"]["max_connections"]
            .as_u64()
            .is_some_and(|n| n >= 10),
        "{v}"
    );
    assert!(!run.stdout.contains("sekrit-pw") && !run.stderr.contains("sekrit-pw"));

    let run = crate::harness::ward(&[
        "step",
        "pg-table-bloat-autovacuum",
        "vacuum_table",
        "--url",
        &secret_url,
        "--env",
        "dev",
        "--input",
        "table=public.orders",
    ])
    .expect_code(3);
    assert!(run.stderr.contains("needs 1 approval"), "{}", run.stderr);
    assert!(!run.stderr.contains("sekrit-pw"));
    assert_eq!(pg.psql(&url, "SELECT coalesce(last_vacuum::text, 'never') FROM pg_stat_user_tables WHERE relname = 'orders'"), "never");

    let run = crate::harness::ward(&[
        "step",
        "pg-connection-exhaustion",
        "nope",
        "--url",
        &secret_url,
    ])
    .expect_code(2);
    assert!(run.stderr.contains("has no step `nope`"), "{}", run.stderr);
    let bad = secret_url.replace(&format!(":{}/", pg.port()), ":1/");
    let run = crate::harness::ward(&[
        "step",
        "pg-connection-exhaustion",
        "connection_headline",
        "--url",
        &bad,
        "--env",
        "dev",
    ])
    .expect_code(6);
    assert!(
        run.stderr
            .contains("error: cannot connect: connection refused"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("sekrit-pw"), "{}", run.stderr);
}

/// A runbook whose diagnostics report the lock timeout they run with; the
/// second sets its own.
const LOCK_TIMEOUT_RUNBOOK: &str = r#"id: lock-timeouts
title: What lock_timeout a step runs with
version: 1
engines: [postgres]
steps:
  - id: inherits
    kind: diagnostic
    sql: SELECT setting || unit AS lock_timeout FROM pg_settings WHERE name = 'lock_timeout'
  - id: own
    kind: diagnostic
    lock_timeout: 1200ms
    sql: SELECT setting || unit AS lock_timeout FROM pg_settings WHERE name = 'lock_timeout'
"#;

/// The `lock_timeout` the server reports for each step of
/// [`LOCK_TIMEOUT_RUNBOOK`], run against `target`. Its steps read the value
/// in effect (`pg_settings.setting`, ward's own), which is what is tested
/// here; `ward check` refuses `current_setting('lock_timeout')`, the usual
/// way a runbook mistakes ward's value for the server's.
fn server_lock_timeouts(target: &Target) -> Vec<String> {
    let doc = Doc::new("runbooks/lock-timeouts.yaml", LOCK_TIMEOUT_RUNBOOK);
    let c = contract::load_doc(&doc, Path::new("runbooks"), &Analyzer::default()).expect("loads");
    runtime().block_on(async {
        let mut ex = Executor::connect(target, "test-lock-timeout", false)
            .await
            .expect("connect");
        let mut out = Vec::new();
        for s in &c.steps {
            let r = step::resolve(
                &c,
                &s.spec.id,
                &BTreeMap::new(),
                Engine::Postgres,
                &Analyzer::default(),
            )
            .expect("resolve");
            let (_, rows) = collect(&mut ex, &r.sql, &r.binds, r.mode, &r.limits)
                .await
                .expect("runs");
            out.push(
                rows[0]["lock_timeout"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        out
    })
}

#[test]
fn lock_timeout_from_target_config_reaches_the_server() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("lock_timeout_config");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("ward.yaml");
    std::fs::write(
        &file,
        format!(
            "targets:\n  patient:\n    engine: postgres\n    url: {url}\n    environment: dev\n    lock_timeout: 750ms\n  plain:\n    engine: postgres\n    url: {url}\n    environment: dev\n"
        ),
    )
    .expect("write ward.yaml");
    let config = Config::load(&file).expect("ward.yaml loads");
    let patient = Target::from_config(&config, "patient").expect("target");
    assert_eq!(patient.lock_timeout, Some(Duration::from_millis(750)));
    // The target's value, unless the step sets its own.
    assert_eq!(server_lock_timeouts(&patient), ["750ms", "1200ms"]);
    // No setting anywhere: ward's default, as before.
    let plain = Target::from_config(&config, "plain").expect("target");
    assert_eq!(server_lock_timeouts(&plain), ["3000ms", "1200ms"]);
}

#[test]
fn a_lock_timeout_that_is_not_a_positive_duration_is_refused_where_it_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("ward.yaml");
    for (value, why) in [
        ("soon", "is not a duration"),
        ("0s", "must be more than zero"),
    ] {
        std::fs::write(
            &file,
            format!("targets:\n  t:\n    engine: sqlite\n    url: sqlite:x.db\n    environment: dev\n    lock_timeout: {value}\n"),
        )
        .expect("write ward.yaml");
        let p = Config::load(&file).expect_err("refused");
        assert_eq!((p.location.line, p.location.col), (6, 19), "{p}");
        assert!(
            p.message
                .contains(&format!("target `t`: lock_timeout `{value}` {why}")),
            "{p}"
        );
    }
    let text = LOCK_TIMEOUT_RUNBOOK.replace("lock_timeout: 1200ms", "lock_timeout: 0ms");
    let problems = contract::load_doc(
        &Doc::new("runbooks/lock-timeouts.yaml", &text),
        Path::new("runbooks"),
        &Analyzer::default(),
    )
    .expect_err("refused");
    assert_eq!(
        problems
            .iter()
            .map(|p| (p.location.line, p.message.as_str()))
            .collect::<Vec<_>>(),
        [(11, "lock_timeout `0ms` must be more than zero")]
    );
}

/// The findings of `sql` made catalog-aware on `url`, through the same
/// refinement admission uses (and `ward explain --url`'s, which resolves).
fn refined_findings(url: &str, sql: &str) -> (Vec<String>, Vec<String>) {
    let analyzer = Analyzer::default();
    let analysis = analyzer.analyze(Engine::Postgres, sql);
    runtime().block_on(async {
        let mut ex = Executor::connect(&pg_target(url), "test-not-null", false)
            .await
            .expect("connect");
        let refined = ex.refine(&analyzer, &analysis).await.expect("refine");
        let resolved = ex.resolve(&analyzer, &analysis).await.expect("resolve");
        let rules = |a: &ward::sql::Analysis| -> Vec<String> {
            a.findings().iter().map(|f| f.rule.to_string()).collect()
        };
        assert_eq!(refined.lock(), analysis.lock(), "the lock is kept");
        assert_eq!(refined.risk, analysis.risk, "the class is kept");
        (rules(&refined), rules(&resolved.analysis))
    })
}

#[test]
fn set_not_null_scans_the_table_unless_a_validated_check_proves_the_column_not_null() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("not_null_proof");
    pg.psql(
        &url,
        "CREATE TABLE public.accounts (id int, email text, phone text, note text, \"Nick\" text);
         INSERT INTO public.accounts SELECT g, 'a', 'b', 'c', 'd' FROM generate_series(1, 100) g;
         ALTER TABLE public.accounts ADD CONSTRAINT email_nn CHECK (email IS NOT NULL);
         ALTER TABLE public.accounts ADD CONSTRAINT phone_nn CHECK (phone IS NOT NULL) NOT VALID;
         ALTER TABLE public.accounts ADD CONSTRAINT note_nn CHECK (note IS NOT NULL AND id > 0);
         ALTER TABLE public.accounts ADD CONSTRAINT nick_nn CHECK (\"Nick\" IS NOT NULL);
         CREATE TABLE public.parent (id int, email text CHECK (email IS NOT NULL));
         CREATE TABLE public.child () INHERITS (public.parent);",
    );
    // (Text-only, a statement typed in also gets `require-lock-timeout`.)
    let scan = vec![
        "set-not-null-scans-table".to_string(),
        "require-lock-timeout".to_string(),
    ];
    let none = vec!["require-lock-timeout".to_string()];
    let case = |sql: &str| refined_findings(&url, sql);
    // A validated CHECK (email IS NOT NULL): PostgreSQL skips the scan.
    assert_eq!(
        case("ALTER TABLE public.accounts ALTER COLUMN email SET NOT NULL"),
        (none.clone(), none.clone())
    );
    assert_eq!(
        case("ALTER TABLE public.accounts ALTER COLUMN \"Nick\" SET NOT NULL"),
        (none.clone(), none.clone())
    );
    // NOT VALID, a CHECK that says more, no CHECK at all, one of two
    // columns, a table with a child: the finding stays.
    for sql in [
        "ALTER TABLE public.accounts ALTER COLUMN phone SET NOT NULL",
        "ALTER TABLE public.accounts ALTER COLUMN note SET NOT NULL",
        "ALTER TABLE public.accounts ALTER COLUMN id SET NOT NULL",
        "ALTER TABLE public.accounts ALTER COLUMN email SET NOT NULL, ALTER COLUMN id SET NOT NULL",
        "ALTER TABLE public.parent ALTER COLUMN email SET NOT NULL",
        "ALTER TABLE public.missing ALTER COLUMN email SET NOT NULL",
    ] {
        assert_eq!(case(sql), (scan.clone(), scan.clone()), "{sql}");
    }
    // The proven statement runs as the step would, and holds.
    pg.psql(
        &url,
        "ALTER TABLE public.accounts ALTER COLUMN email SET NOT NULL",
    );
    let verified = pg.psql(
        &url,
        "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'public.accounts'::regclass AND attname = 'email'",
    );
    assert_eq!(verified, "t");
}
