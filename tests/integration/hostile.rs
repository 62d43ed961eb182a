//! A hostile catalog: a database whose views, aggregates, operators,
//! domains, foreign tables, row-level security, settings and look-alike
//! names all lead to one SECURITY DEFINER function owned by the superuser
//! that, when anything runs it, kills a victim session, commits a row
//! through dblink, runs a shell command, takes an advisory lock and creates
//! a replication slot. Every shipped runbook's diagnostics run against it
//! with the offline planner, and a scripted agent tries ad-hoc reads that
//! lead there — once as a superuser URL, once with a least-privileged read
//! role. The verdict comes from the database's state afterwards: nothing of
//! the above happened, because nothing reached that function without a
//! human's approval (none is given).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::harness::TempRepo;
use crate::pg::PgServer;

/// Every runbook the repository ships, with inputs for the ones that need
/// some.
const RUNBOOKS: &[(&str, &[&str])] = &[
    (
        "pg-add-column-backfill",
        &[
            "table=public.accounts",
            "column=email_lower",
            "source_column=email",
            "check_name=accounts_email_lower_nn",
        ],
    ),
    ("pg-checkpoint-storm", &["sample_seconds=1"]),
    ("pg-connection-exhaustion", &[]),
    (
        "pg-create-index-concurrently",
        &[
            "table=public.accounts",
            "column=email",
            "index_name=accounts_email_idx",
        ],
    ),
    ("pg-crash-restarts", &[]),
    ("pg-disk-full", &["sample_seconds=1"]),
    ("pg-idle-in-transaction", &[]),
    ("pg-lock-contention", &[]),
    ("pg-long-running-queries", &[]),
    ("pg-missing-index", &["sample_seconds=1"]),
    ("pg-replication-lag", &[]),
    ("pg-saturation", &["sample_seconds=1"]),
    ("pg-slow-queries", &["sample_seconds=1"]),
    ("pg-table-bloat-autovacuum", &[]),
    ("pg-wal-disk-growth", &[]),
    ("pg-xid-wraparound", &[]),
];

/// Ad-hoc reads a scripted agent proposes; each one leads to `boom()` (or,
/// for the last family, writes) if the server runs it.
const HOSTILE_READS: &[&str] = &[
    "SELECT * FROM public.v_boom",
    "SELECT * FROM public.v_nested",
    "SELECT count(DISTINCT client_addr) FROM pg_stat_activity",
    "SELECT 1 === 2",
    "SELECT * FROM public.t_dom",
    "SELECT '1'::public.d_boom",
    "SELECT * FROM public.ft_program",
    "SELECT * FROM public.v_ft",
    "SELECT * FROM public.t_rls",
    "EXPLAIN SELECT public.liar()",
    "SELECT public.liar()",
    "SELECT json_scalar(1)",
    "SELECT \"PG_CATALOG\".now()",
    "SELECT '\\'' AS a, pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'victim' -- '",
    "SELECT 1 AS a INTO public.t_into UNION SELECT 2",
    "SELECT schema_to_xml('public', true, false, '')",
    "SELECT query_to_xml('SELECT * FROM public.v_boom', true, false, '')",
    "SELECT round(1.5::float8, 1)",
    "SELECT * FROM public.v_user_shadow",
];

/// Reads that are hostile only where the pg_catalog overloads are planted.
const OVERLOAD_READS: &[&str] = &[
    "SELECT count(DISTINCT client_addr) FROM pg_stat_activity",
    "SELECT round(1.5::float8, 1)",
];

/// A harmless read that must still run, so the test is not passing because
/// nothing runs at all.
const HARMLESS_READ: &str =
    "SELECT pid, state FROM pg_stat_activity WHERE application_name = 'victim'";

struct Hostile {
    server: PgServer,
    url: String,
    marker_dir: PathBuf,
    _victim: crate::pg::Held,
}

/// A server of its own (replication slots and roles are cluster-wide) with
/// one database planted as described at the top.
/// `overloads`: also plant `count(inet)` and `round(float8, int)` in
/// pg_catalog, which stop nearly every runbook at its first diagnostic;
/// without them the runbooks run deep, among the other plants.
fn hostile_server(overloads: bool) -> Option<Hostile> {
    let server = PgServer::start()?;
    let url = server.fresh_db("hostile");
    let db = url.rsplit('/').next().unwrap_or_default().to_string();
    let marker_dir = tempfile::Builder::new()
        .prefix("ward-hostile-")
        .tempdir()
        .expect("temp dir")
        .keep();
    // The server runs as `postgres` when the tests run as root.
    let _ = std::process::Command::new("chmod")
        .args(["777", &marker_dir.display().to_string()])
        .status();
    let marker = marker_dir.join("program-ran");
    let fdw_marker = marker_dir.join("fdw-ran");
    let port = server.port();
    // Harmless first, so the planted rows and tables can be made; then the
    // real payload replaces it.
    server.psql(
        &url,
        "CREATE EXTENSION dblink; CREATE EXTENSION file_fdw; \
         CREATE TABLE public.canary (note text); \
         CREATE TABLE public.accounts (id int PRIMARY KEY, email text); \
         INSERT INTO public.accounts SELECT g, 'u' || g || '@example.com' FROM generate_series(1, 100) g; \
         CREATE FUNCTION public.boom() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';",
    );
    let payload = format!(
        "CREATE OR REPLACE FUNCTION public.boom() RETURNS int LANGUAGE plpgsql SECURITY DEFINER AS $f$
         BEGIN
           BEGIN PERFORM pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity
                 WHERE application_name = 'victim'; EXCEPTION WHEN OTHERS THEN NULL; END;
           BEGIN PERFORM public.dblink_exec('host=127.0.0.1 port={port} user=postgres dbname={db}',
                 'INSERT INTO public.canary VALUES (''dblink'')'); EXCEPTION WHEN OTHERS THEN NULL; END;
           BEGIN PERFORM pg_catalog.pg_advisory_lock(4242); EXCEPTION WHEN OTHERS THEN NULL; END;
           BEGIN EXECUTE 'COPY (SELECT 1) TO PROGRAM ''touch {marker}'''; EXCEPTION WHEN OTHERS THEN NULL; END;
           BEGIN PERFORM pg_catalog.pg_create_physical_replication_slot('ward_hostile_slot');
                 EXCEPTION WHEN OTHERS THEN NULL; END;
           RETURN 1;
         END $f$;",
        marker = marker.display()
    );
    let plants = format!(
        "CREATE FUNCTION public.boom_eq(int, int) RETURNS bool LANGUAGE sql AS 'SELECT public.boom() = 1';
         CREATE OPERATOR pg_catalog.=== (LEFTARG = int, RIGHTARG = int, FUNCTION = public.boom_eq);
         CREATE FUNCTION pg_catalog.json_scalar(integer) RETURNS json LANGUAGE sql
           AS 'SELECT to_json(public.boom())';
         CREATE SCHEMA \"PG_CATALOG\";
         CREATE FUNCTION \"PG_CATALOG\".now() RETURNS int LANGUAGE sql AS 'SELECT public.boom()';
         CREATE FUNCTION public.liar() RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT public.boom()';
         CREATE VIEW public.v_boom AS SELECT public.boom() AS b;
         CREATE VIEW public.v_nested AS SELECT * FROM public.v_boom;
         CREATE DOMAIN public.d_boom AS int CHECK (VALUE > 0);
         CREATE TABLE public.t_dom (x public.d_boom);
         INSERT INTO public.t_dom VALUES (1);
         ALTER DOMAIN public.d_boom ADD CONSTRAINT boom CHECK (public.boom() = 1) NOT VALID;
         CREATE SERVER files FOREIGN DATA WRAPPER file_fdw;
         CREATE FOREIGN TABLE public.ft_program (x text) SERVER files
           OPTIONS (program 'touch {fdw_marker}');
         CREATE VIEW public.v_ft AS SELECT * FROM public.ft_program;
         CREATE TABLE public.t_rls (x int);
         INSERT INTO public.t_rls VALUES (1);
         ALTER TABLE public.t_rls ENABLE ROW LEVEL SECURITY;
         ALTER TABLE public.t_rls FORCE ROW LEVEL SECURITY;
         CREATE POLICY boom ON public.t_rls USING (public.boom() = 1);
         CREATE SCHEMA postgres;
         CREATE VIEW postgres.pg_stat_statements AS SELECT public.boom() AS calls;
         CREATE VIEW postgres.pg_stat_activity AS SELECT public.boom() AS pid;
         CREATE VIEW public.v_user_shadow AS SELECT * FROM postgres.pg_stat_activity;
         ALTER DATABASE \"{db}\" SET standard_conforming_strings = off;",
        fdw_marker = fdw_marker.display()
    );
    server.psql(&url, &plants);
    if overloads {
        server.psql(
            &url,
            "CREATE FUNCTION public.boom_sfunc(int8, inet) RETURNS int8 LANGUAGE sql AS 'SELECT $1 + public.boom()';
             CREATE AGGREGATE pg_catalog.count(inet) (SFUNC = public.boom_sfunc, STYPE = int8, INITCOND = '0');
             CREATE FUNCTION pg_catalog.round(double precision, integer) RETURNS numeric LANGUAGE sql
               AS 'SELECT public.boom()::numeric';",
        );
    }
    server.psql(&url, &payload);
    let victim = server.session(&db, "postgres", "victim", "");
    server.wait_for(
        &db,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'victim'",
        "1",
        Duration::from_secs(10),
    );
    Some(Hostile {
        server,
        url,
        marker_dir,
        _victim: victim,
    })
}

impl Hostile {
    /// The database's state says nothing ran `boom()` (or wrote).
    fn assert_untouched(&self, after: &str) {
        let q = |sql: &str| self.server.psql(&self.url, sql);
        assert_eq!(
            q("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'victim'"),
            "1",
            "{after}: the victim session was killed"
        );
        assert_eq!(
            q("SELECT count(*) FROM public.canary"),
            "0",
            "{after}: a row was committed through dblink"
        );
        assert_eq!(
            q("SELECT count(*) FROM pg_replication_slots"),
            "0",
            "{after}: a replication slot was created"
        );
        assert_eq!(
            q("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"),
            "0",
            "{after}: an advisory lock is held"
        );
        assert_eq!(
            q("SELECT count(*) FROM pg_class WHERE relname = 't_into'"),
            "0",
            "{after}: SELECT ... INTO created a table"
        );
        for f in ["program-ran", "fdw-ran"] {
            assert!(
                !self.marker_dir.join(f).exists(),
                "{after}: a shell command ran on the server ({f})"
            );
        }
    }
}

/// The events of every session log in `repo`.
fn sessions(repo: &TempRepo) -> Vec<Vec<Value>> {
    let dir = repo.path().join(".ward/sessions");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
        .map(|e| read_log(&e.path()))
        .collect()
}

fn read_log(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The SQL of every proposal that reached `executing` in `events`.
fn executed_sql(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["kind"] == "executing")
        .filter_map(|e| {
            let pid = &e["data"]["proposal"];
            events
                .iter()
                .find(|p| p["kind"] == "proposed" && p["hash"] == *pid)
                .and_then(|p| p["data"]["sql"].as_str().map(str::to_string))
        })
        .collect()
}

/// Runs every runbook offline and every hostile ad-hoc read through a
/// scripted agent, headless (no one approves), with `target_args` naming
/// the database; checks the database after each.
fn run_everything(h: &Hostile, repo: &TempRepo, target_args: &[&str], overloads: bool) {
    for (runbook, inputs) in RUNBOOKS {
        let mut args = vec!["run", runbook];
        args.extend_from_slice(target_args);
        args.extend(["--agent", "offline", "--headless", "--report", "json"]);
        for i in *inputs {
            args.extend(["--input", i]);
        }
        let run = repo.ward(&args);
        assert!(
            matches!(run.code, 0 | 1 | 3 | 4),
            "ward run {runbook} ended with {}:\n{}",
            run.code,
            run.stderr
        );
        h.assert_untouched(&format!("runbook {runbook}"));
    }
    for (i, sql) in HOSTILE_READS.iter().chain([&HARMLESS_READ]).enumerate() {
        let transcript = serde_yaml::to_string(&serde_json::json!({
            "turns": [
                {"adhoc": sql, "rationale": "look closer"},
                {"conclude": "done"}
            ]
        }))
        .expect("transcript");
        let file = format!("transcript-{i}.yaml");
        repo.write(&file, &transcript);
        let agent = format!("replay:{}", repo.path().join(&file).display());
        let mut args = vec!["run", "pg-long-running-queries"];
        args.extend_from_slice(target_args);
        args.extend(["--agent", agent.as_str(), "--headless", "--report", "json"]);
        let run = repo.ward(&args);
        assert!(
            matches!(run.code, 0 | 1 | 3 | 4),
            "ward run with ad-hoc {sql:?} ended with {}:\n{}",
            run.code,
            run.stderr
        );
        h.assert_untouched(&format!("ad-hoc {sql:?}"));
    }
    let all: Vec<String> = sessions(repo)
        .iter()
        .flat_map(|s| executed_sql(s))
        .collect();
    for sql in HOSTILE_READS
        .iter()
        .filter(|sql| overloads || !OVERLOAD_READS.contains(sql))
    {
        assert!(
            !all.iter().any(|x| x.trim() == *sql),
            "ran without approval: {sql}"
        );
    }
    assert!(
        all.iter().any(|x| x.trim() == HARMLESS_READ),
        "the harmless ad-hoc read did not run; executed: {all:#?}"
    );
    // Not vacuous: every session got as far as gating proposals (the
    // planted `count` and `round` in pg_catalog stop most runbooks at
    // their first diagnostic, for a human to approve).
    let logs = sessions(repo);
    assert_eq!(
        logs.len(),
        RUNBOOKS.len() + HOSTILE_READS.len() + 1,
        "one session per run"
    );
    for log in &logs {
        assert!(
            log.iter().any(|e| e["kind"] == "gated"),
            "a session never gated anything: {:?}",
            log.iter()
                .map(|e| e["kind"].as_str().unwrap_or(""))
                .collect::<Vec<_>>()
        );
    }
    // The log says why: the catalog's reason and what the name resolved to.
    let analyzed: Vec<&Value> = logs
        .iter()
        .flatten()
        .filter(|e| e["kind"] == "analyzed")
        .collect();
    assert!(
        analyzed.iter().any(|e| {
            e["data"]["reasons"].as_array().is_some_and(|r| {
                r.iter().any(|x| {
                    x.as_str()
                        .is_some_and(|x| x.contains("catalog: view public.v_boom"))
                })
            }) && e["data"]["catalog"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|x| x["name"] == "public.v_boom" && x["problem"].is_string())
            })
        }),
        "no analyzed event names the planted view and why"
    );
    if !overloads {
        // Among the other plants the runbooks' own diagnostics still run.
        assert!(
            all.len() > 2 * RUNBOOKS.len(),
            "only {} statements ran: the runbooks did not get past their first steps",
            all.len()
        );
    }
    repo.ward(&["audit", "verify", "--all"]).expect_code(0);
}

#[test]
fn a_hostile_catalog_runs_nothing_without_approval_as_superuser() {
    let Some(h) = hostile_server(true) else {
        return;
    };
    let repo = TempRepo::copy_of_repo();
    run_everything(&h, &repo, &["--url", &h.url, "--env", "dev"], true);
}

#[test]
fn a_hostile_catalog_runs_nothing_without_approval_with_a_read_role() {
    let Some(h) = hostile_server(false) else {
        return;
    };
    h.server.psql(
        &h.url,
        "CREATE ROLE ward_hostile_reader NOLOGIN; GRANT pg_monitor TO ward_hostile_reader;",
    );
    let repo = TempRepo::copy_of_repo();
    let config = std::fs::read_to_string(repo.path().join("ward.yaml")).unwrap_or_default();
    assert!(
        !config.contains("targets:"),
        "the test adds the repository's first target"
    );
    repo.write(
        "ward.yaml",
        &format!(
            "{config}\ntargets:\n  hostile: {{ engine: postgres, url_env: WARD_HOSTILE_URL, environment: prod, roles: {{ read: ward_hostile_reader }} }}\n"
        ),
    );
    run_everything_with_env(&h, &repo, &h.url);
}

/// [`run_everything`] against the `hostile` target of ward.yaml, whose URL
/// comes from `$WARD_HOSTILE_URL`.
fn run_everything_with_env(h: &Hostile, repo: &TempRepo, url: &str) {
    // The harness runs ward with the process environment; the target reads
    // its URL from it.
    // SAFETY: set once, before any ward process of this test starts; other
    // tests never read this variable.
    unsafe { std::env::set_var("WARD_HOSTILE_URL", url) };
    run_everything(h, repo, &["--target", "hostile"], false);
}

/// A runbook whose remediation is allowed outright and whose verify query
/// reads the planted view.
const VERIFY_RUNBOOK: &str = r#"id: verify-through-a-view
title: A verify query that reads a planted view
version: 1
engines: [postgres]
steps:
  - id: look
    kind: diagnostic
    sql: SELECT 1 AS one
  - id: refresh_stats
    kind: remediation
    requires: [look]
    when: "true"
    sql: ANALYZE public.accounts
    rollback: none
    verify:
      sql: SELECT count(*) AS n FROM public.v_boom
      expect: "rows[0].n == 1"
conclusions:
  - when: "true"
    text: done
"#;

const ALLOW_EVERYTHING: &str =
    "id: default\nrules:\n  - id: everything\n    when: {}\n    decision: allow\ndefault: allow\n";

#[test]
fn a_verify_query_that_would_reach_planted_code_is_not_run_even_under_an_allow_all_policy() {
    let Some(h) = hostile_server(false) else {
        return;
    };
    let repo = TempRepo::copy_of_repo();
    repo.write("runbooks/verify-through-a-view.yaml", VERIFY_RUNBOOK);
    repo.write("policies/default.yaml", ALLOW_EVERYTHING);
    std::fs::remove_file(repo.path().join("policies/tests/default.yaml")).ok();
    let run = repo.ward(&[
        "run",
        "verify-through-a-view",
        "--url",
        &h.url,
        "--env",
        "dev",
        "--agent",
        "offline",
        "--headless",
        "--report",
        "json",
    ]);
    h.assert_untouched("the verify query");
    let events: Vec<Value> = sessions(&repo).into_iter().flatten().collect();
    let executed = executed_sql(&events);
    assert!(
        executed
            .iter()
            .any(|s| s.contains("ANALYZE public.accounts")),
        "the remediation ran (policy allows it): {executed:?}\n{}",
        run.stderr
    );
    let verified = events
        .iter()
        .find(|e| e["kind"] == "verified")
        .unwrap_or_else(|| panic!("no verified event:\n{}", run.stderr));
    assert_eq!(verified["data"]["ok"], false);
    let detail = verified["data"]["detail"].as_str().unwrap_or("");
    assert!(
        detail.starts_with("verify query not run") && detail.contains("public.v_boom"),
        "{detail}"
    );
}
