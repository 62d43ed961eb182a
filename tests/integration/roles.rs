//! `ward roles` against the harness's PostgreSQL: the printed SQL runs in
//! psql and creates least-privileged roles, and `--check` reports what the
//! login role and each configured role can really do. Role names are unique
//! per test: roles belong to the whole cluster, which the tests share.

use std::path::Path;
use std::process::{Command, Output};

use crate::harness::TempRepo;
use crate::pg::PgServer;

/// The database name of a harness URL.
fn db_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// Runs psql on a script file the way the SQL's header tells a DBA to:
/// `psql -X -v ON_ERROR_STOP=1 [-v k=v] -f FILE`, as `user`.
fn psql_file(pg: &PgServer, db: &str, user: &str, file: &Path, vars: &[&str]) -> Output {
    let psql = pg.bin_dir().join("psql");
    let mut cmd = Command::new(if psql.exists() { psql } else { "psql".into() });
    cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]);
    for v in vars {
        cmd.args(["-v", v]);
    }
    cmd.args(["-h", "127.0.0.1", "-p", &pg.port().to_string()])
        .args(["-U", user, "-d", db, "-f"])
        .arg(file);
    for var in [
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "PGPASSFILE",
        "PGSERVICE",
        "PGOPTIONS",
    ] {
        cmd.env_remove(var);
    }
    cmd.output().expect("psql runs")
}

fn expect_ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({})\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A repository whose ward.yaml has target `orders` at `url` with `roles`.
fn repo_with_target(url: &str, roles: &str) -> TempRepo {
    let repo = TempRepo::copy_of_repo();
    repo.write(
        "ward.yaml",
        &format!(
            "targets:\n  orders:\n    engine: postgres\n    url: {url}\n    environment: prod\n    roles: {roles}\n"
        ),
    );
    repo
}

/// Memberships of `roles` as `member|granted,granted` lines.
fn memberships(pg: &PgServer, db: &str, roles: &[&str]) -> String {
    let list = roles
        .iter()
        .map(|r| format!("'{r}'"))
        .collect::<Vec<_>>()
        .join(",");
    pg.psql(
        db,
        &format!(
            "SELECT r.rolname || '|' || string_agg(g.rolname, ',' ORDER BY g.rolname) \
             FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member JOIN pg_roles g ON g.oid = m.roleid \
             WHERE r.rolname IN ({list}) GROUP BY r.rolname ORDER BY r.rolname"
        ),
    )
}

fn problems_of(v: &serde_json::Value) -> Vec<String> {
    v["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| p["problem"].as_str().expect("problem").to_string())
        .collect()
}

#[test]
fn printed_roles_sql_runs_twice_in_psql_and_check_then_finds_the_roles_least_privileged() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("roles_setup");
    let db = db_name(&url);
    // The login role ward will use, and an application owner role that owns
    // a schema (the change role is granted, never created, by the SQL).
    pg.psql(
        db,
        "CREATE ROLE r1_ward LOGIN; CREATE ROLE r1_owner NOLOGIN; \
         CREATE SCHEMA app AUTHORIZATION r1_owner;",
    );
    let login_url = format!("postgres://r1_ward@127.0.0.1:{}/{db}", pg.port());
    let repo = repo_with_target(
        &login_url,
        "{ read: r1_reader, signal: r1_operator, change: r1_owner }",
    );

    let sql = repo.ward(&["roles", "orders"]).expect_code(0).stdout;
    assert!(sql.contains("GRANT \"r1_reader\" TO \"r1_ward\";"), "{sql}");
    let file = repo.path().join("ward-roles.sql");
    std::fs::write(&file, &sql).expect("write the SQL");
    expect_ok(&psql_file(pg, db, "postgres", &file, &[]), "the roles SQL");
    expect_ok(
        &psql_file(pg, db, "postgres", &file, &[]),
        "the roles SQL, a second time",
    );

    assert_eq!(
        memberships(pg, db, &["r1_reader", "r1_operator", "r1_ward"]),
        "r1_operator|pg_read_all_stats,pg_signal_backend\n\
         r1_reader|pg_monitor\n\
         r1_ward|r1_operator,r1_owner,r1_reader"
    );
    assert_eq!(
        pg.psql(
            db,
            "SELECT string_agg(rolname || ':' || rolcanlogin || rolsuper || rolcreaterole || rolcreatedb \
             || rolreplication || rolbypassrls, ' ' ORDER BY rolname) \
             FROM pg_roles WHERE rolname IN ('r1_reader', 'r1_operator')"
        ),
        "r1_operator:falsefalsefalsefalsefalsefalse r1_reader:falsefalsefalsefalsefalsefalse"
    );

    let run = repo.ward(&["roles", "orders", "--check", "--format", "json"]);
    let report = run.json();
    let run = run.expect_code(0);
    assert_eq!(report["ok"], true, "{}", run.stdout);
    assert_eq!(report["login"]["role"], "r1_ward");
    assert_eq!(report["login"]["facts"]["superuser"], false);
    let kinds: Vec<(&str, &str, bool, bool)> = report["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().expect("kind"),
                r["role"].as_str().expect("role"),
                r["ok"].as_bool().expect("ok"),
                r["facts"]["assumable"].as_bool().expect("assumable"),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("read", "r1_reader", true, true),
            ("signal", "r1_operator", true, true),
            ("change", "r1_owner", true, true),
        ]
    );
    assert_eq!(
        report["roles"][0]["facts"]["privileges_of"],
        serde_json::json!([
            "pg_monitor",
            "pg_read_all_settings",
            "pg_read_all_stats",
            "pg_stat_scan_tables"
        ])
    );
    assert_eq!(
        report["roles"][2]["facts"]["create_schemas"][0]["schema"], "app",
        "the owner role may create in its schema, and that is fine for changes"
    );

    // The text report says the same, in words.
    let text = repo
        .ward(&["roles", "orders", "--check"])
        .expect_code(0)
        .stdout;
    assert!(
        text.contains("read role \"r1_reader\" (diagnostics, verify queries, ad-hoc reads, catalog lookups): ok"),
        "{text}"
    );
    assert!(
        text.contains(
            "\nok: the login role and every configured role are least-privileged and usable\n"
        ),
        "{text}"
    );
}

#[test]
fn check_reports_a_read_role_given_pg_execute_server_program_and_a_role_the_login_cannot_assume() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("roles_excess");
    let db = db_name(&url);
    pg.psql(db, "CREATE ROLE r2_ward LOGIN");
    let login_url = format!("postgres://r2_ward@127.0.0.1:{}/{db}", pg.port());
    let repo = repo_with_target(&login_url, "{ read: r2_reader, signal: r2_operator }");
    let sql = repo.ward(&["roles", "orders"]).expect_code(0).stdout;
    let file = repo.path().join("ward-roles.sql");
    std::fs::write(&file, &sql).expect("write the SQL");
    expect_ok(&psql_file(pg, db, "postgres", &file, &[]), "the roles SQL");
    repo.ward(&["roles", "orders", "--check"]).expect_code(0);

    pg.psql(
        db,
        "GRANT pg_execute_server_program TO r2_reader; REVOKE r2_operator FROM r2_ward;",
    );
    let run = repo.ward(&["roles", "orders", "--check", "--format", "json"]);
    let report = run.json();
    let run = run.expect_code(1);
    assert_eq!(report["ok"], false, "{}", run.stdout);
    assert_eq!(
        problems_of(&report["roles"][0]),
        vec![
            "\"r2_reader\" has the privileges of pg_execute_server_program: it can run programs on the database server as its operating-system user"
        ]
    );
    assert_eq!(
        problems_of(&report["roles"][1]),
        vec!["the login role \"r2_ward\" cannot SET ROLE to \"r2_operator\""]
    );
    assert_eq!(
        report["roles"][1]["problems"][0]["fix"],
        "GRANT \"r2_operator\" TO \"r2_ward\";"
    );
    // The login role reaches it through the read role: any code in ward's
    // session could SET ROLE to pg_execute_server_program.
    assert_eq!(
        problems_of(&report["login"]),
        vec![
            "\"r2_ward\" may become pg_execute_server_program (run programs on the database server as its operating-system user), and so may any code running in ward's session"
        ]
    );
}

#[test]
fn check_on_a_superuser_url_reports_the_superuser_and_exits_1() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("roles_superuser");
    let repo = TempRepo::copy_of_repo();
    let run = repo.ward(&["roles", "--url", &url, "--check", "--format", "json"]);
    let report = run.json();
    run.expect_code(1);
    assert_eq!(report["login"]["role"], "postgres");
    assert_eq!(report["login"]["facts"]["superuser"], true);
    assert_eq!(report["roles"][0]["kind"], "read");
    assert_eq!(report["roles"][0]["configured"], false);
    assert_eq!(
        problems_of(&report["roles"][0]),
        vec![
            "no read role is configured, so reads run as the login role \"postgres\", and: \"postgres\" is a superuser"
        ]
    );
    let text = repo
        .ward(&["roles", "--url", &url, "--check"])
        .expect_code(1)
        .stdout;
    assert!(
        text.contains(
            "problem: \"postgres\" is a superuser. SET ROLE is checked against the login role"
        ),
        "{text}"
    );
    // Even with a least-privileged read role configured, a superuser login
    // stays a problem: the read role is no boundary for it (see the test below).
    let repo = repo_with_target(&url, "{ read: pg_monitor }");
    let run = repo.ward(&["roles", "orders", "--check", "--format", "json"]);
    let report = run.json();
    run.expect_code(1);
    assert_eq!(report["roles"][0]["role"], "pg_monitor");
    assert_eq!(report["roles"][0]["ok"], true);
    assert_eq!(report["login"]["ok"], false);
}

#[test]
fn set_role_is_no_boundary_for_code_running_under_a_superuser_login() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("roles_set_role");
    let db = db_name(&url);
    // A function anyone may call, as a hostile catalog would plant it.
    pg.psql(
        db,
        "CREATE ROLE r4_reader NOLOGIN; CREATE ROLE r4_ward LOGIN; GRANT r4_reader TO r4_ward; \
         CREATE FUNCTION public.back_to_login() RETURNS text LANGUAGE sql \
         AS $$ SELECT set_config('role', 'none', true) $$;",
    );
    let script = "BEGIN READ ONLY;\nSET LOCAL ROLE r4_reader;\nSELECT current_user;\n\
                  SELECT public.back_to_login();\nSELECT current_user;\nROLLBACK;\n";
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("escape.sql");
    std::fs::write(&file, script).expect("write");
    // Logged in as the superuser, the read role lasts until the function
    // switches back.
    assert_eq!(
        expect_ok(&psql_file(pg, db, "postgres", &file, &[]), "as postgres"),
        "r4_reader\nnone\npostgres"
    );
    // Logged in as a plain role, switching back gains nothing.
    assert_eq!(
        expect_ok(&psql_file(pg, db, "r4_ward", &file, &[]), "as r4_ward"),
        "r4_reader\nnone\nr4_ward"
    );
}

#[test]
fn sql_for_a_url_without_a_user_takes_the_login_role_from_a_psql_variable() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("roles_psql_var");
    let db = db_name(&url);
    pg.psql(db, "CREATE ROLE r5_ward LOGIN");
    let repo = repo_with_target(
        &format!("postgres://127.0.0.1:{}/{db}", pg.port()),
        "{ read: r5_reader, signal: r5_operator }",
    );
    let sql = repo.ward(&["roles", "orders"]).expect_code(0).stdout;
    let file = repo.path().join("ward-roles.sql");
    std::fs::write(&file, &sql).expect("write the SQL");

    let without = psql_file(pg, db, "postgres", &file, &[]);
    assert!(!without.status.success());
    assert!(
        String::from_utf8_lossy(&without.stderr).contains("psql variable ward_login is not set"),
        "{without:?}"
    );
    assert_eq!(
        pg.psql(
            db,
            "SELECT count(*) FROM pg_roles WHERE rolname IN ('r5_reader', 'r5_operator')"
        ),
        "0",
        "nothing is created when the login role is missing"
    );

    expect_ok(
        &psql_file(pg, db, "postgres", &file, &["ward_login=r5_ward"]),
        "the roles SQL with ward_login",
    );
    assert_eq!(
        memberships(pg, db, &["r5_ward"]),
        "r5_ward|r5_operator,r5_reader"
    );
}

#[test]
fn roles_refuses_sqlite_targets_json_without_check_and_a_missing_target() {
    let repo = TempRepo::copy_of_repo();
    let run = repo
        .ward(&["roles", "--url", "sqlite::memory:"])
        .expect_code(2);
    assert!(
        run.stderr.contains("roles are a PostgreSQL feature"),
        "{}",
        run.stderr
    );
    let run = repo
        .ward(&[
            "roles",
            "--url",
            "postgres://ward@db/app",
            "--format",
            "json",
        ])
        .expect_code(2);
    assert!(
        run.stderr.contains("--format json goes with --check"),
        "{}",
        run.stderr
    );
    let run = repo.ward(&["roles"]).expect_code(2);
    assert!(
        run.stderr
            .contains("give a target from ward.yaml (ward roles TARGET) or --url URL"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_signal_role_without_pg_read_all_stats_sees_no_state_of_other_sessions() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("roles_signal_stats");
    let db = db_name(&url);
    pg.psql(
        db,
        "CREATE ROLE r6_operator NOLOGIN; GRANT pg_signal_backend TO r6_operator; \
         CREATE ROLE r6_ward LOGIN; GRANT r6_operator TO r6_ward;",
    );
    let _victim = pg.session(db, "postgres", "r6-victim", "");
    pg.wait_for(
        db,
        "SELECT state FROM pg_stat_activity WHERE application_name = 'r6-victim'",
        "idle",
        std::time::Duration::from_secs(10),
    );
    // What the remediations filter on, as the signal role sees it.
    let script = "SET ROLE r6_operator;\n\
                  SELECT coalesce(state, 'NULL') FROM pg_stat_activity WHERE application_name = 'r6-victim';\n";
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("see.sql");
    std::fs::write(&file, script).expect("write");
    assert_eq!(
        expect_ok(&psql_file(pg, db, "r6_ward", &file, &[]), "without"),
        "NULL",
        "pg_signal_backend alone: `WHERE state = 'idle'` would match nothing"
    );
    pg.psql(db, "GRANT pg_read_all_stats TO r6_operator");
    assert_eq!(
        expect_ok(&psql_file(pg, db, "r6_ward", &file, &[]), "with"),
        "idle"
    );
}

#[test]
fn roles_help_teaches_with_examples_and_exit_codes() {
    let run = crate::harness::ward(&["roles", "--help"]).expect_code(0);
    for needle in [
        "Examples:",
        "ward roles orders --check",
        "--format json",
        "Exit codes: 0",
        "SET ROLE is checked against it",
    ] {
        assert!(run.stdout.contains(needle), "{needle:?} in\n{}", run.stdout);
    }
}
