use crate::harness::{TempRepo, ward};

#[test]
fn the_repository_checks_clean() {
    let run = ward(&["check"]).expect_code(0);
    assert!(
        run.stdout
            .contains("policy tests passed, 0 failed: no problems"),
        "{}",
        run.stdout
    );
    let n: usize = run
        .stdout
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("runbook count");
    assert!(
        n >= 10,
        "at least 8 incident and 2 migration runbooks: {}",
        run.stdout
    );
}

#[test]
fn check_json_counts_everything() {
    let run = ward(&["check", "--format", "json"]).expect_code(0);
    let v = run.json();
    assert_eq!(v["ok"], true);
    assert_eq!(v["problems"], serde_json::json!([]));
    assert!(v["policy_tests"]["passed"].as_u64().unwrap_or(0) >= 10);
    assert_eq!(v["policy_tests"]["failed"], 0);
}

#[test]
fn every_required_alert_is_answered_by_one_runbook() {
    let repo = TempRepo::copy_of_repo();
    let all: String = std::fs::read_dir(repo.path().join("runbooks"))
        .expect("runbooks")
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "yaml"))
        .map(|e| std::fs::read_to_string(e.path()).expect("read"))
        .collect();
    for alert in [
        "PostgreSQLMaxConnectionsReached",
        "PostgreSQLHighConnections",
        "PostgresLockContention",
        "PostgresIdleInTransaction",
        "PostgresLongRunningQuery",
        "PostgresReplicationLag",
        "PostgresTableBloat",
        "PostgreSQLSlowQueries",
        "PostgresXidWraparound",
    ] {
        assert!(all.contains(alert), "no runbook triggers on {alert}");
    }
    assert!(all.matches("kind: migration").count() >= 2);
}

/// Breaks one runbook and expects exit 1 with a problem at `needle`'s place.
fn broken(edit_from: &str, edit_to: &str, needle: &str, col_offset: usize, message: &str) {
    let repo = TempRepo::copy_of_repo();
    let file = "runbooks/pg-connection-exhaustion.yaml";
    repo.edit(file, edit_from, edit_to);
    let (line, col) = repo.position_of(file, needle);
    let run = repo.ward(&["check"]).expect_code(1);
    let want = format!("{file}:{line}:{}: error: ", col + col_offset);
    let hit = run.stdout.lines().find(|l| l.starts_with(&want));
    let hit = hit.unwrap_or_else(|| panic!("no problem at {want}\n{}", run.stdout));
    assert!(hit.contains(message), "{hit}");
    let gh = repo.ward(&["check", "--format", "github"]).expect_code(1);
    assert!(
        gh.stdout.contains(&format!(
            "::error file={file},line={line},col={}::",
            col + col_offset
        )),
        "{}",
        gh.stdout
    );
}

#[test]
fn an_unknown_field_fails_check_at_its_place_with_a_suggestion() {
    broken(
        "    summarize: { builtin: rows }\n    timeout: 5s\n",
        "    summarise: { builtin: rows }\n    timeout: 5s\n",
        "summarise:",
        0,
        "unknown field `summarise` (did you mean `summarize`?)",
    );
}

#[test]
fn a_dangling_requires_fails_check_at_the_name() {
    broken(
        "requires: [connection_headline, idle_culprit]",
        "requires: [connection_headlines, idle_culprit]",
        "connection_headlines, idle_culprit]",
        0,
        "`requires: connection_headlines` names no step (did you mean `connection_headline`?)",
    );
}

#[test]
fn a_missing_rollback_fails_check_at_the_step_kind() {
    broken(
        "    timeout: 2m\n    rollback: none\n",
        "    timeout: 2m\n",
        "kind: remediation",
        0,
        "has no `rollback`",
    );
}

#[test]
fn bad_sql_fails_check_at_the_bad_token() {
    // `SELECT ... FROMM pg_roles`: FROMM reads as a column alias, so the
    // parser stops at the next word.
    broken(
        "      FROM pg_roles r\n",
        "      FROMM pg_roles r\n",
        "FROMM pg_roles",
        6,
        "syntax error at or near \"pg_roles\"",
    );
}

#[test]
fn a_failing_policy_test_fails_check_at_its_expectation() {
    let repo = TempRepo::copy_of_repo();
    let file = "policies/tests/default.yaml";
    repo.edit(file, "    sql: DROP TABLE orders\n    environment: prod\n    expect: { approve: 2 }\n    rules: [prod-destructive-two-person, changes-need-approval]", "    sql: DROP TABLE orders\n    environment: prod\n    expect: allow\n    rules: [prod-destructive-two-person, changes-need-approval]");
    let (line, col) = repo.position_of(file, "allow\n    rules: [prod-destructive");
    let run = repo.ward(&["check"]).expect_code(1);
    assert!(
        run.stdout.contains(&format!("{file}:{line}:{col}: error: policy test `DROP TABLE in prod needs two approvers` failed: expected allow, got approve by 2")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("1 failed"), "{}", run.stdout);
}

#[test]
fn check_without_the_directories_is_a_usage_error() {
    // A repository (it has a ward.yaml) without its directories; with no
    // ward.yaml either, see check_outside_repository_suggests_cd_or_repo.
    let empty = tempfile::tempdir().expect("tempdir");
    std::fs::write(empty.path().join("ward.yaml"), "policy: default\n").expect("write");
    let run = crate::harness::ward_in(empty.path(), &["check"], None).expect_code(2);
    assert!(run.stderr.contains("runbooks directory"), "{}", run.stderr);
    assert!(run.stdout.is_empty());
}

#[test]
fn ward_yaml_paths_and_policy_are_honoured() {
    let repo = TempRepo::copy_of_repo();
    std::fs::rename(repo.path().join("runbooks"), repo.path().join("books")).expect("rename");
    repo.write("ward.yaml", "runbooks: books\npolicy: strict\n");
    let run = repo.ward(&["check"]).expect_code(1);
    assert!(
        run.stdout
            .contains("the configured policy `strict` is not among the loaded policies (default)"),
        "{}",
        run.stdout
    );
    repo.write("ward.yaml", "runbooks: books\nrunbok: x\n");
    let run = repo.ward(&["check"]).expect_code(2);
    assert!(
        run.stderr
            .contains("ward.yaml:2:1: unknown field `runbok` (did you mean `runbooks`?)"),
        "{}",
        run.stderr
    );
}

#[test]
fn counts_of_one_are_singular_in_the_check_summary() {
    // The repository ships exactly one policy.
    let run = ward(&["check"]).expect_code(0);
    assert!(run.stdout.contains(", 1 policy, "), "{}", run.stdout);
    assert!(!run.stdout.contains("1 policies"), "{}", run.stdout);
}

/// Outside any repository `ward check` (and `ward test`) do not ask to
/// create `runbooks/`: they say no repository was found and how to get to
/// one.
#[test]
fn check_outside_repository_suggests_cd_or_repo() {
    let dir = tempfile::tempdir().expect("tempdir");
    for command in [&["check"][..], &["test"][..]] {
        let run = crate::harness::ward_in(dir.path(), command, None).expect_code(2);
        assert!(
            run.stderr
                .starts_with("error: no ward repository here: no ward.yaml in ")
                && run
                    .stderr
                    .contains("`cd` into the repository or pass --repo DIR")
                && !run.stderr.contains("create it"),
            "{command:?}: {}",
            run.stderr
        );
    }
    // --repo pointing at the repository is the way out.
    let repo = crate::harness::repo_root();
    let run = crate::harness::ward_in(
        dir.path(),
        &["--repo", repo.to_str().expect("utf-8 path"), "check"],
        None,
    )
    .expect_code(0);
    assert!(run.stdout.contains("no problems"), "{}", run.stdout);
}

/// A `--target NAME` with no ward.yaml anywhere says where targets come
/// from instead of "no target in ward.yaml".
#[test]
fn a_target_outside_any_repository_points_at_ward_yaml_cd_and_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = crate::harness::ward_in(
        dir.path(),
        &[
            "step",
            "pg-missing-index",
            "seq_scan_tables",
            "--target",
            "orders",
        ],
        None,
    )
    .expect_code(2);
    assert!(
        run.stderr.contains(
            "no target `orders`: targets are defined in ward.yaml, and there is none in "
        ) && run
            .stderr
            .contains("--repo DIR, or give --url URL --env ENV"),
        "{}",
        run.stderr
    );
}

/// Every `--help` example that uses `--target orders` shows the ward.yaml
/// entry that defines `orders`.
#[test]
fn help_examples_with_target_orders_show_the_ward_yaml_that_defines_it() {
    for command in [&["--help"][..], &["step", "--help"], &["run", "--help"]] {
        let help = ward(command).expect_code(0);
        assert!(help.stdout.contains("--target orders"), "{command:?}");
        assert!(
            help.stdout.contains(
                "orders: { engine: postgres, url_env: ORDERS_DATABASE_URL, environment: prod }"
            ),
            "{command:?}: {}",
            help.stdout
        );
    }
}

#[test]
fn check_reports_a_step_reading_wards_own_set_local_value_as_the_servers() {
    let repo = TempRepo::copy_of_repo();
    let file = "runbooks/pg-long-running-queries.yaml";
    repo.edit(
        file,
        "(SELECT reset_val::bigint FROM pg_settings WHERE name = 'statement_timeout') AS statement_timeout_ms",
        "current_setting('statement_timeout') AS statement_timeout_ms",
    );
    let run = repo.ward(&["check"]).expect_code(1);
    assert!(
        run.stdout.contains(
            "error: step `long_headline` reads statement_timeout with current_setting() or SHOW, which inside ward's transaction gives ward's own SET LOCAL value, not the server's; read it from pg_settings.reset_val"
        ),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(": 1 problem"), "{}", run.stdout);
}

#[test]
fn check_reports_a_column_newer_than_the_steps_declared_versions() {
    let repo = TempRepo::copy_of_repo();
    let file = "runbooks/pg-lock-contention.yaml";
    // lock_headline's base `sql` runs on 13; reading pg_locks.waitstart
    // (14+) there, outside its `sql_by_version: {14: ...}`, is caught.
    repo.edit(
        file,
        "             (SELECT coalesce(max(extract(epoch FROM now() - a.state_change)), 0)::bigint\n                FROM pg_stat_activity a WHERE a.wait_event_type = 'Lock') AS max_wait_seconds,\n",
        "             (SELECT coalesce(max(extract(epoch FROM now() - l.waitstart)), 0)::bigint\n                FROM pg_locks l WHERE NOT l.granted) AS max_wait_seconds,\n",
    );
    // At the SQL itself: the block scalar's first line.
    let (line, _) = repo.position_of(file, "      WITH waiting AS (");
    let run = repo.ward(&["check"]).expect_code(1);
    let want = format!(
        "{file}:{}:7: error: step `lock_headline` uses pg_locks.waitstart, which PostgreSQL 14 added, but runs on 13; add `min_version: 14` or an `sql_by_version` alternative",
        line
    );
    assert!(
        run.stdout.lines().any(|l| l == want),
        "{want}\n{}",
        run.stdout
    );
    assert!(run.stdout.contains(": 1 problem"), "{}", run.stdout);
}

#[test]
fn check_reports_a_view_removed_before_the_newest_version_and_accepts_an_alternative() {
    let repo = TempRepo::copy_of_repo();
    let file = "runbooks/pg-wal-disk-growth.yaml";
    let old = "    sql: |\n      SELECT archived_count,\n";
    // Checkpoint counters moved from pg_stat_bgwriter to pg_stat_checkpointer in 17.
    repo.edit(
        file,
        old,
        "    sql: |\n      SELECT (SELECT checkpoints_timed FROM pg_stat_bgwriter) AS timed, archived_count,\n",
    );
    let run = repo.ward(&["check"]).expect_code(1);
    assert!(
        run.stdout.contains(
            "error: step `archiver_status` uses pg_stat_bgwriter.checkpoints_timed (pg_stat_checkpointer.num_timed from 17), which PostgreSQL 17 removed, but runs on 18; add `max_version: 16` or an `sql_by_version: {17: ...}` alternative"
        ),
        "{}",
        run.stdout
    );
    // The same statement for 17 on, reading pg_stat_checkpointer: clean.
    repo.edit(
        file,
        "    summarize: { builtin: rows }\n    timeout: 5s\n\n  - id: slot_retention",
        "    sql_by_version:\n      17: SELECT num_timed AS timed FROM pg_stat_checkpointer\n    summarize: { builtin: rows }\n    timeout: 5s\n\n  - id: slot_retention",
    );
    let run = repo.ward(&["check"]).expect_code(0);
    assert!(run.stdout.contains("no problems"), "{}", run.stdout);
}

#[test]
fn check_reports_a_verify_query_using_a_column_its_base_versions_lack() {
    let repo = TempRepo::copy_of_repo();
    let file = "runbooks/pg-long-running-queries.yaml";
    // cancel_long_queries' verify runs its base `sql` on 13, where
    // pg_stat_activity has no query_id; the 14 alternative may read it.
    repo.edit(
        file,
        "          AND :query_id::bigint IS NULL -- no query_id before 14\n          AND a.backend_type",
        "          AND (:query_id::bigint IS NULL OR a.query_id = :query_id::bigint)\n          AND a.backend_type",
    );
    let run = repo.ward(&["check"]).expect_code(1);
    assert!(
        run.stdout.contains(
            "error: the verify of step `cancel_long_queries` uses pg_stat_activity.query_id, which PostgreSQL 14 added, but runs on 13"
        ),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(": 1 problem"), "{}", run.stdout);
}

#[test]
fn sarif_output_places_each_problem_at_its_file_line_and_column() {
    let repo = TempRepo::copy_of_repo();
    let file = "runbooks/pg-connection-exhaustion.yaml";
    repo.edit(
        file,
        "    summarize: { builtin: rows }\n    timeout: 5s\n",
        "    summarise: { builtin: rows }\n    timeout: 5s\n",
    );
    let (line, col) = repo.position_of(file, "summarise:");
    let run = repo.ward(&["check", "--format", "sarif"]).expect_code(1);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("SARIF is JSON");
    assert_eq!(v["version"], "2.1.0");
    let sarif_run = &v["runs"][0];
    assert_eq!(sarif_run["tool"]["driver"]["name"], "ward");
    let results = sarif_run["results"].as_array().expect("results");
    assert_eq!(results.len(), 1, "{}", run.stdout);
    let r = &results[0];
    assert_eq!(r["ruleId"], "ward/runbook");
    assert_eq!(r["level"], "error");
    let rule = r["ruleIndex"].as_u64().expect("ruleIndex") as usize;
    assert_eq!(
        sarif_run["tool"]["driver"]["rules"][rule]["id"],
        "ward/runbook"
    );
    assert!(
        r["message"]["text"]
            .as_str()
            .is_some_and(|m| m.contains("unknown field `summarise`")),
        "{r}"
    );
    let at = &r["locations"][0]["physicalLocation"];
    assert_eq!(at["artifactLocation"]["uri"], file);
    assert_eq!(at["artifactLocation"]["uriBaseId"], "%SRCROOT%");
    assert_eq!(at["region"]["startLine"], line);
    assert_eq!(at["region"]["startColumn"], col);
    // A clean repository: a valid log with no results, exit 0.
    let clean = TempRepo::copy_of_repo()
        .ward(&["check", "--format", "sarif"])
        .expect_code(0);
    let v: serde_json::Value = serde_json::from_str(&clean.stdout).expect("SARIF is JSON");
    assert_eq!(v["runs"][0]["results"], serde_json::json!([]));
}
