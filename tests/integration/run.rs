//! Headless sessions (`ward run --headless`) against a real PostgreSQL.

use crate::harness::TempRepo;

pub(crate) const RUNBOOK: &str = r#"id: orders-cleanup
title: Clean up stale orders
version: 1
engines: [postgres]
triggers: [OrdersPileUp]
inputs:
  older_than_days: { type: integer, default: 30, min: 1 }
steps:
  - id: headline
    kind: diagnostic
    sql: SELECT count(*) AS stale FROM public.orders WHERE created < now() - make_interval(days => :older_than_days::int)
  - id: delete_stale
    kind: remediation
    requires: [headline]
    when: "facts.headline.stale > 0"
    sql: DELETE FROM public.orders WHERE created < now() - make_interval(days => :older_than_days::int)
    rollback: none
    verify:
      sql: SELECT count(*) AS stale FROM public.orders WHERE created < now() - make_interval(days => :older_than_days::int)
      expect: "rows[0].stale == 0"
conclusions:
  - when: "facts.headline.stale > 0"
    text: "{stale} stale orders"
  - when: "true"
    text: "nothing stale"
"#;

/// A policy that allows everything in dev.
pub(crate) const ALLOW_ALL_IN_DEV: &str = "id: default\nrules:\n  - id: dev-anything\n    when: { environment: dev }\n    decision: allow\n";

/// Replaces the repository's policy (and drops its policy tests, which
/// test the default one).
pub(crate) fn use_policy(repo: &TempRepo, policy: &str) {
    repo.write("policies/default.yaml", policy);
    std::fs::remove_dir_all(repo.path().join("policies/tests")).expect("rm tests");
}

pub(crate) fn repo_with_runbook() -> TempRepo {
    let repo = TempRepo::copy_of_repo();
    repo.write("runbooks/orders-cleanup.yaml", RUNBOOK);
    repo
}

pub(crate) fn fixture(pg: &crate::pg::PgServer) -> String {
    let url = pg.fresh_db("run");
    pg.psql(&url, "CREATE TABLE orders (id int, created timestamptz); INSERT INTO orders SELECT g, now() - make_interval(days => g) + interval '12 hours' FROM generate_series(1, 60) g;");
    url
}

#[test]
fn a_headless_run_stops_at_a_step_that_needs_approval_and_runs_nothing_unapproved() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = fixture(pg);
    let repo = repo_with_runbook();
    let run = repo
        .ward(&[
            "run",
            "--alert",
            "OrdersPileUp",
            "--url",
            &url,
            "--env",
            "dev",
            "--headless",
            "--report",
            "json",
        ])
        .expect_code(3);
    let v = run.json();
    assert_eq!(v["outcome"], "awaiting_approval");
    let steps = v["steps"].as_array().expect("steps");
    assert_eq!(steps[0]["status"], "done");
    assert_eq!(
        (
            steps[1]["step_id"].as_str(),
            steps[1]["status"].as_str(),
            steps[1]["decision"].as_str()
        ),
        (
            Some("delete_stale"),
            Some("awaiting_approval"),
            Some("approve")
        )
    );
    assert_eq!(
        pg.psql(&url, "SELECT count(*) FROM orders"),
        "60",
        "nothing was deleted"
    );
    assert!(
        run.stderr.contains("gated") && run.stderr.contains("session_ended"),
        "{}",
        run.stderr
    );
    // The log is sealed and records the unapproved proposal.
    let log = std::fs::read_to_string(v["log"].as_str().expect("log")).expect("read log");
    let last: serde_json::Value =
        serde_json::from_str(log.lines().last().expect("line")).expect("json");
    assert_eq!(last["kind"], "session_ended");
    assert_eq!(last["data"]["unapproved"][0], steps[1]["proposal"]);
    assert!(
        !log.contains("\"executing\",\"data\":{\"mode\":\"write\""),
        "no write executed"
    );
}

#[test]
fn a_dry_run_executes_reads_and_records_the_verdict_of_everything_else() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = fixture(pg);
    let repo = repo_with_runbook();
    let run = repo
        .ward(&[
            "run",
            "orders-cleanup",
            "--url",
            &url,
            "--env",
            "prod",
            "--allow-superuser",
            "--headless",
            "--dry-run",
            "--report",
            "json",
        ])
        .expect_code(0);
    let v = run.json();
    assert_eq!(v["outcome"], "concluded");
    assert_eq!(v["conclusion"], "30 stale orders");
    assert_eq!(v["steps"][1]["status"], "dry_run");
    assert_eq!(v["steps"][1]["risk"], "write");
    assert_eq!(v["steps"][1]["decision"], "approve");
    assert_eq!(pg.psql(&url, "SELECT count(*) FROM orders"), "60");
}

#[test]
fn a_denied_step_is_told_to_the_agent_the_session_concludes_and_the_exit_code_is_4() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = fixture(pg);
    let repo = repo_with_runbook();
    use_policy(
        &repo,
        "id: default\nrules:\n  - id: reads-run\n    when: { risk: read_only }\n    decision: allow\n  - id: no-deletes\n    when: { statement: delete }\n    decision: deny\n",
    );
    let run = repo
        .ward(&[
            "run",
            "orders-cleanup",
            "--url",
            &url,
            "--env",
            "dev",
            "--headless",
        ])
        .expect_code(4);
    assert!(run.stdout.contains("outcome: **denied**"), "{}", run.stdout);
    // Denial is an answer: the planner went on to a conclusion.
    assert!(run.stdout.contains("## Conclusion"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("### delete_stale (denied · write) [id ")
            && run.stdout.contains("- policy rules: no-deletes"),
        "{}",
        run.stdout
    );
    assert_eq!(pg.psql(&url, "SELECT count(*) FROM orders"), "60");
}

#[test]
fn an_allowed_remediation_runs_and_its_verify_checks_the_database() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = fixture(pg);
    let repo = repo_with_runbook();
    use_policy(&repo, ALLOW_ALL_IN_DEV);
    let run = repo
        .ward(&[
            "run",
            "orders-cleanup",
            "--url",
            &url,
            "--env",
            "dev",
            "--headless",
            "--report",
            "json",
        ])
        .expect_code(0);
    let v = run.json();
    assert_eq!(v["steps"][1]["status"], "done");
    assert_eq!(v["steps"][1]["verified"], true);
    assert_eq!(pg.psql(&url, "SELECT count(*) FROM orders"), "30");
}

#[test]
fn an_ambiguous_or_unknown_alert_is_a_usage_error() {
    let repo = repo_with_runbook();
    repo.write(
        "runbooks/orders-cleanup-2.yaml",
        &RUNBOOK.replace("id: orders-cleanup", "id: orders-cleanup-two"),
    );
    let run = repo
        .ward(&[
            "run",
            "--alert",
            "OrdersPileUp",
            "--url",
            "postgres://x@127.0.0.1:1/x",
            "--headless",
        ])
        .expect_code(2);
    assert!(
        run.stderr
            .contains("matches several runbooks: orders-cleanup, orders-cleanup-two"),
        "{}",
        run.stderr
    );
    let run = repo
        .ward(&[
            "run",
            "--alert",
            "NoSuchAlert",
            "--url",
            "postgres://x@127.0.0.1:1/x",
            "--headless",
        ])
        .expect_code(2);
    assert!(
        run.stderr
            .contains("no runbook is triggered by alert `NoSuchAlert`"),
        "{}",
        run.stderr
    );
}

#[test]
fn session_logs_verify_and_tampering_is_caught_by_ward_audit() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = fixture(pg);
    let repo = repo_with_runbook();
    let run = repo
        .ward(&[
            "run",
            "orders-cleanup",
            "--url",
            &url,
            "--env",
            "dev",
            "--headless",
            "--report",
            "json",
        ])
        .expect_code(3);
    let v = run.json();
    let id = v["session_id"].as_str().expect("id").to_string();
    let log = std::path::PathBuf::from(v["log"].as_str().expect("log"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&log).expect("meta").permissions().mode() & 0o777,
            0o600
        );
    }
    let ok = repo.ward(&["audit", "verify", &id]).expect_code(0);
    assert!(ok.stdout.contains("chain intact ("), "{}", ok.stdout);
    let list = repo.ward(&["audit", "list"]).expect_code(0);
    assert!(
        list.stdout.contains(&id)
            && list.stdout.contains("awaiting approval")
            && list.stdout.contains("chain intact"),
        "{}",
        list.stdout
    );
    let md = repo
        .ward(&["audit", "export", &id, "--format", "md"])
        .expect_code(0);
    assert!(
        md.stdout.contains(
            "### delete_stale (awaiting approval · write · needs approval by 1 approver)"
        ) && md.stdout.contains("DELETE FROM public.orders"),
        "{}",
        md.stdout
    );
    let show = repo.ward(&["audit", "show", &id]).expect_code(0);
    assert!(
        show.stdout.contains("gated") && show.stdout.contains("log: chain intact, sealed"),
        "{}",
        show.stdout
    );

    // Change one digit in the middle of the log: tampered, with the line.
    let text = std::fs::read_to_string(&log).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    let mut forged: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    forged[5] = forged[5].replacen("\"seq\":5", "\"seq\":6", 1);
    std::fs::write(&log, forged.join("\n") + "\n").expect("write");
    let bad = repo.ward(&["audit", "verify", &id]).expect_code(1);
    assert!(
        bad.stdout.contains("TAMPERED: first bad event seq 5"),
        "{}",
        bad.stdout
    );

    // A torn last line (a crash mid-write) is truncated, not tampered.
    let torn = format!(
        "{}\n{}",
        lines[..lines.len() - 1].join("\n"),
        &lines[lines.len() - 1][..20]
    );
    std::fs::write(&log, torn).expect("write");
    let t = repo.ward(&["audit", "verify", &id]).expect_code(3);
    assert!(t.stdout.contains("truncated"), "{}", t.stdout);
    // Without the seal: unsealed.
    std::fs::write(&log, lines[..lines.len() - 1].join("\n") + "\n").expect("write");
    let u = repo.ward(&["audit", "verify", &id]).expect_code(3);
    assert!(u.stdout.contains("unsealed"), "{}", u.stdout);
}

pub(crate) fn ward_as(repo: &TempRepo, operator: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(args)
        .current_dir(repo.path())
        .env("WARD_OPERATOR", operator)
        .env_remove("WARD_REPO")
        .output()
        .expect("ward runs")
}

/// `ward approve ID PROPOSAL --reason REASON` as `operator`, which must
/// succeed (`proposal` may be a full hash; its first 12 characters are used).
pub(crate) fn approve_as(repo: &TempRepo, operator: &str, id: &str, proposal: &str, reason: &str) {
    let short = proposal.get(..12).unwrap_or(proposal);
    let out = ward_as(repo, operator, &["approve", id, short, "--reason", reason]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls the session's log until `pred` holds on its events.
/// `ward run orders-cleanup` against `url` in dev as carol, headless,
/// waiting up to 60 s for approvals, with `extra` arguments (e.g. an
/// agent); stdout is piped (the report), stderr as given.
pub(crate) fn start_waiting_run(
    repo: &TempRepo,
    url: &str,
    extra: &[&str],
    stderr: std::process::Stdio,
) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["run", "orders-cleanup", "--url", url, "--env", "dev"])
        .args(extra)
        .args([
            "--headless",
            "--report",
            "json",
            "--wait-for-approval",
            "60",
        ])
        .current_dir(repo.path())
        .env("WARD_OPERATOR", "carol")
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("ward run starts")
}

/// Waits until a proposal of the session in `repo` waits for approval:
/// the session id, the log so far and that proposal's `gated` event.
pub(crate) fn wait_until_waiting(
    repo: &TempRepo,
) -> (String, Vec<serde_json::Value>, serde_json::Value) {
    let sessions = repo.path().join(".ward/sessions");
    let waiting =
        |e: &serde_json::Value| e["kind"] == "gated" && e["data"]["decision"] == "approve";
    let (id, events) = wait_log(&sessions, |ev| ev.iter().any(waiting));
    let gated = events.iter().find(|e| waiting(e)).cloned().expect("gated");
    (id, events, gated)
}

pub(crate) fn wait_log(
    dir: &std::path::Path,
    pred: impl Fn(&[serde_json::Value]) -> bool,
) -> (String, Vec<serde_json::Value>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(log) = std::fs::read_dir(dir).ok().and_then(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
        }) {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let events: Vec<serde_json::Value> = text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            if pred(&events) {
                return (
                    log.file_stem()
                        .and_then(|s| s.to_str())
                        .unwrap_or("")
                        .to_string(),
                    events,
                );
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for the session log"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn the_proposal_id_printed_by_a_waiting_headless_run_and_by_audit_show_is_taken_by_ward_approve() {
    use std::io::BufRead;
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = fixture(pg);
    let repo = repo_with_runbook();
    use_policy(
        &repo,
        "id: default\nrules:\n  - id: reads-run\n    when: { risk: read_only }\n    decision: allow\n  - id: deletes-approved\n    when: { statement: delete }\n    decision: { approve: { approvers: 1 } }\n",
    );
    let mut session = start_waiting_run(&repo, &url, &[], std::process::Stdio::piped());
    // stderr is drained to the end so the session never blocks on it.
    let stderr = session.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let drain = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let waiting = loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("a waiting line before the session goes quiet");
        if line.contains("waiting for approval of") {
            break line;
        }
    };
    let (_, command) = waiting.split_once(": ward approve ").expect("the command");
    let words: Vec<&str> = command.split_whitespace().collect();
    let [id, proposal, "--reason", ..] = words.as_slice() else {
        panic!("not a ward approve command: {waiting}");
    };
    let (id, proposal) = (id.to_string(), proposal.to_string());
    // `ward audit show` prints the same id beside the proposed line.
    let show = repo.ward(&["audit", "show", &id]).expect_code(0);
    let shown: Vec<&str> = show
        .stdout
        .lines()
        .filter(|l| l.contains(" proposed "))
        .filter_map(|l| l.split_once("[id ").and_then(|(_, r)| r.split_once(']')))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(shown.last(), Some(&proposal.as_str()), "{}", show.stdout);
    let out = ward_as(
        &repo,
        "alice",
        &[
            "approve",
            &id,
            &proposal,
            "--reason",
            "checked with the app team",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = session.wait_with_output().expect("session ends");
    drain.join().expect("stderr drained");
    assert_eq!(done.status.code(), Some(0));
    assert_eq!(pg.psql(&url, "SELECT count(*) FROM orders"), "30");
}

#[test]
fn two_person_approval_comes_from_two_distinct_operators_via_ward_approve() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = fixture(pg);
    let repo = repo_with_runbook();
    use_policy(
        &repo,
        "id: default\nrules:\n  - id: reads-run\n    when: { risk: read_only }\n    decision: allow\n  - id: deletes-two-person\n    when: { statement: delete }\n    decision: { approve: { approvers: 2 } }\n",
    );
    let session = start_waiting_run(&repo, &url, &[], std::process::Stdio::null());
    let (id, _, gated) = wait_until_waiting(&repo);
    let sessions = repo.path().join(".ward/sessions");
    let proposal = gated["data"]["proposal"]
        .as_str()
        .expect("proposal")
        .to_string();
    let short = &proposal[..12];
    // A wrong proposal id is refused; nothing is sent.
    let out = ward_as(
        &repo,
        "alice",
        &["approve", &id, "deadbeefdead", "--reason", "x"],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    approve_as(&repo, "alice", &id, short, "checked with the app team");
    wait_log(&sessions, |ev| {
        ev.iter()
            .any(|e| e["kind"] == "approved" && e["data"]["operator"] == "alice")
    });
    // The same operator never counts twice.
    let out = ward_as(
        &repo,
        "alice",
        &["approve", &id, short, "--reason", "again"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must come from another operator"));
    assert_eq!(
        pg.psql(&url, "SELECT count(*) FROM orders"),
        "60",
        "one approval of two runs nothing"
    );
    approve_as(&repo, "bob", &id, short, "second pair of eyes");
    let done = session.wait_with_output().expect("session ends");
    assert_eq!(done.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&done.stdout).expect("json report");
    assert_eq!(report["steps"][1]["status"], "done");
    assert_eq!(report["steps"][1]["verified"], true);
    assert_eq!(pg.psql(&url, "SELECT count(*) FROM orders"), "30");
    let verify = ward_as(&repo, "carol", &["audit", "verify", &id]);
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let (_, events) = wait_log(&sessions, |_| true);
    let approvers: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "approved")
        .filter_map(|e| e["data"]["operator"].as_str())
        .collect();
    assert_eq!(approvers, vec!["alice", "bob"]);
}

#[test]
fn a_dirty_policy_is_refused_in_prod_unless_allow_dirty_is_given() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = fixture(pg);
    let repo = repo_with_runbook();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(repo.path())
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q"]);
    git(&["add", "runbooks", "policies"]);
    git(&["commit", "-qm", "init"]);
    let policy = repo.read("policies/default.yaml");
    repo.write(
        "policies/default.yaml",
        &format!("{policy}\n# local experiment\n"),
    );
    let run = repo
        .ward(&[
            "run",
            "orders-cleanup",
            "--url",
            &url,
            "--env",
            "prod",
            "--headless",
            "--dry-run",
            "--allow-superuser",
        ])
        .expect_code(2);
    assert!(
        run.stderr.contains("policy files have uncommitted changes"),
        "{}",
        run.stderr
    );
    let run = repo
        .ward(&[
            "run",
            "orders-cleanup",
            "--url",
            &url,
            "--env",
            "prod",
            "--headless",
            "--dry-run",
            "--allow-dirty",
            "--allow-superuser",
            "--report",
            "json",
        ])
        .expect_code(0);
    let log = std::fs::read_to_string(run.json()["log"].as_str().expect("log")).expect("read");
    let first: serde_json::Value =
        serde_json::from_str(log.lines().next().expect("line")).expect("json");
    assert_eq!(first["data"]["allow_dirty"], true);
    assert_eq!(first["data"]["provenance"]["policies_dirty"], true);
    assert!(
        first["data"]["provenance"]["head"]
            .as_str()
            .is_some_and(|h| h.len() == 40),
        "{}",
        first["data"]["provenance"]
    );
}

/// SIGKILL `ward run` at many points: every log left behind verifies as a
/// valid prefix (unsealed or torn), never as tampered, and the invariants
/// (nothing executed without its gate) hold on every prefix.
#[test]
fn killing_ward_run_at_random_points_leaves_only_valid_prefixes() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = fixture(pg);
    let repo = repo_with_runbook();
    // Slow the diagnostics down a little so kills land mid-session.
    repo.write(
        "runbooks/orders-cleanup.yaml",
        &RUNBOOK.replace(
            "  - id: delete_stale",
            "  - id: slow_one\n    kind: diagnostic\n    sql: SELECT pg_sleep(0.05) IS NULL AS slept\n  - id: slow_two\n    kind: diagnostic\n    sql: SELECT pg_sleep(0.05) IS NULL AS slept, count(*) AS n FROM public.orders\n  - id: delete_stale",
        ),
    );
    use_policy(&repo, ALLOW_ALL_IN_DEV);
    let mut seed: u64 = 0x5eed;
    let runs = 50;
    let mut outcomes = std::collections::BTreeMap::new();
    let sessions = repo.path().join(".ward/sessions");
    let logs_now = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&sessions)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                    .collect()
            })
            .unwrap_or_default()
    };
    for _ in 0..runs {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // Killed at a random point after its log is open (whatever the
        // machine's load, the kill lands in the session, not in start-up).
        let delay = std::time::Duration::from_millis((seed >> 33) % 400);
        let before = logs_now().len();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ward"))
            .args([
                "run",
                "orders-cleanup",
                "--url",
                &url,
                "--env",
                "dev",
                "--headless",
                "--report",
                "json",
            ])
            .current_dir(repo.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        let opened = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while logs_now().len() == before && std::time::Instant::now() < opened {
            if matches!(child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // Reset the data so every run has work to do.
        pg.psql(&url, "TRUNCATE orders; INSERT INTO orders SELECT g, now() - make_interval(days => g) + interval '12 hours' FROM generate_series(1, 60) g;");
    }
    let logs = logs_now();
    assert_eq!(
        logs.len(),
        runs,
        "every run opened its log before it was killed"
    );
    for log in &logs {
        let v = ward::audit::verify(log).expect("verify runs");
        let name = match &v {
            ward::audit::Verification::Ok { .. } => "ok",
            ward::audit::Verification::Unsealed { .. } => "unsealed",
            ward::audit::Verification::Truncated { .. } => "truncated",
            ward::audit::Verification::Tampered { seq, reason } => {
                panic!("{} tampered at {seq}: {reason}", log.display())
            }
        };
        *outcomes.entry(name).or_insert(0) += 1;
    }
    eprintln!(
        "crash-safety: {} logs from {runs} killed runs: {outcomes:?}",
        logs.len()
    );
    assert!(
        outcomes.get("unsealed").copied().unwrap_or(0) > 0,
        "some kills landed mid-session: {outcomes:?}"
    );
}

#[test]
fn verify_queries_bind_the_same_inputs_as_their_step() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = fixture(pg);
    let repo = TempRepo::copy_of_repo();
    repo.write(
        "runbooks/trim.yaml",
        "id: trim\ntitle: trim\nversion: 1\nengines: [postgres]\ninputs:\n  table: { type: identifier }\n  keep: { type: integer, default: 50 }\nsteps:\n  - id: trim_rows\n    kind: remediation\n    sql: DELETE FROM :table WHERE id > :keep\n    rollback: none\n    verify:\n      sql: SELECT count(*) AS n FROM :table WHERE id > :keep\n      expect: \"rows[0].n == 0\"\n",
    );
    use_policy(&repo, ALLOW_ALL_IN_DEV);
    let run = repo
        .ward(&[
            "run",
            "trim",
            "--url",
            &url,
            "--env",
            "dev",
            "--headless",
            "--report",
            "json",
            "--input",
            "table=public.orders",
            "--input",
            "keep=40",
        ])
        .expect_code(0);
    let v = run.json();
    assert_eq!(v["steps"][0]["status"], "done");
    assert_eq!(v["steps"][0]["verified"], true, "{v}");
    assert_eq!(pg.psql(&url, "SELECT count(*) FROM orders"), "40");
}

#[test]
fn ward_approve_by_an_operator_without_the_required_role_is_refused_and_says_which_role() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = fixture(pg);
    let repo = repo_with_runbook();
    use_policy(
        &repo,
        "id: default\nrules:\n  - id: reads-run\n    when: { risk: read_only }\n    decision: allow\n  - id: deletes-need-an-owner\n    when: { statement: delete }\n    decision: { approve: { approvers: 1, roles: [owner] } }\n",
    );
    repo.write(
        "policies/operators.yaml",
        "operators:\n  alice: [owner]\n  bob: [dba]\n",
    );
    let session = start_waiting_run(&repo, &url, &[], std::process::Stdio::null());
    let (id, _, gated) = wait_until_waiting(&repo);
    let sessions = repo.path().join(".ward/sessions");
    assert_eq!(gated["data"]["roles"], serde_json::json!(["owner"]));
    let proposal = gated["data"]["proposal"].as_str().expect("proposal");
    let short = &proposal[..12];
    let bob = ward_as(
        &repo,
        "bob",
        &["approve", &id, short, "--reason", "looks ok"],
    );
    let said = String::from_utf8_lossy(&bob.stderr);
    assert_eq!(bob.status.code(), Some(1), "{said}");
    assert!(
        said.contains("role `owner`") && said.contains("operators.yaml"),
        "{said}"
    );
    assert_eq!(pg.psql(&url, "SELECT count(*) FROM orders"), "60");
    approve_as(&repo, "alice", &id, proposal, "stale, checked");
    let done = session.wait_with_output().expect("session ends");
    assert_eq!(done.status.code(), Some(0));
    assert_eq!(pg.psql(&url, "SELECT count(*) FROM orders"), "30");
    let (_, events) = wait_log(&sessions, |ev| {
        ev.iter().any(|e| e["kind"] == "session_ended")
    });
    let approved: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "approved")
        .filter_map(|e| e["data"]["operator"].as_str())
        .collect();
    assert_eq!(approved, vec!["alice"], "bob's approval never counted");
    assert_eq!(
        events
            .iter()
            .filter(|e| e["kind"] == "approval_refused")
            .count(),
        1
    );
    let v = ward_as(&repo, "carol", &["audit", "verify", &id]);
    assert_eq!(
        v.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&v.stdout)
    );
}

#[test]
fn markdown_export_names_status_like_the_report() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = fixture(pg);
    let repo = repo_with_runbook();
    let run = repo
        .ward(&[
            "run",
            "orders-cleanup",
            "--url",
            &url,
            "--env",
            "dev",
            "--headless",
            "--report",
            "md",
        ])
        .expect_code(3);
    let log = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("- log: `")?.strip_suffix('`'))
        .expect("the report names its log")
        .to_string();
    let export = repo
        .ward(&["audit", "export", &log, "--format", "md"])
        .expect_code(0);
    // One renderer: the export is the report, less where the log is.
    let report: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| !l.starts_with("- log: "))
        .collect();
    assert_eq!(export.stdout.lines().collect::<Vec<_>>(), report);
    assert!(
        export.stdout.contains("- outcome: **awaiting approval**")
            && export.stdout.contains("(awaiting approval · write"),
        "{}",
        export.stdout
    );
    for wrong in ["awaiting_approval", "awaitingapproval"] {
        assert!(
            !export.stdout.contains(wrong),
            "{wrong} in\n{}",
            export.stdout
        );
    }
}

#[test]
fn second_approve_for_same_proposal_is_reported_not_dropped() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = fixture(pg);
    let repo = repo_with_runbook();
    use_policy(
        &repo,
        "id: default\nrules:\n  - id: reads-run\n    when: { risk: read_only }\n    decision: allow\n  - id: deletes-two-person\n    when: { statement: delete }\n    decision: { approve: { approvers: 2 } }\n",
    );
    let session = start_waiting_run(&repo, &url, &[], std::process::Stdio::null());
    let (id, _, gated) = wait_until_waiting(&repo);
    let proposal = gated["data"]["proposal"].as_str().expect("proposal");
    let short = proposal[..12].to_string();
    // alice approves twice at once: both pass the command's own check (the
    // log has no approval of hers yet); the session records one and
    // refuses the other, and each command says which.
    let racers: Vec<_> = (0..2)
        .map(|i| {
            let (dir, id, short) = (repo.path().to_path_buf(), id.clone(), short.clone());
            std::thread::spawn(move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_ward"))
                    .args(["approve", &id, &short, "--reason", &format!("try {i}")])
                    .current_dir(dir)
                    .env("WARD_OPERATOR", "alice")
                    .env_remove("WARD_REPO")
                    .output()
                    .expect("ward approve runs")
            })
        })
        .collect();
    let mut said: Vec<(Option<i32>, String)> = racers
        .into_iter()
        .map(|t| {
            let out = t.join().expect("racer");
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
        .collect();
    said.sort();
    let [(Some(0), recorded), (Some(refused_code), refused)] = said.as_slice() else {
        panic!("{said:?}");
    };
    assert!(recorded.contains("recorded in session"), "{said:?}");
    // Refused by the session (1), or by the command itself when the first
    // approval was already in the log (2): said either way, never "sent".
    assert!(
        (*refused_code == 1 && refused.contains("alice already approved"))
            || (*refused_code == 2 && refused.contains("must come from another operator")),
        "{said:?}"
    );
    let sessions = repo.path().join(".ward/sessions");
    let (_, events) = wait_log(&sessions, |ev| ev.iter().any(|e| e["kind"] == "approved"));
    let approvals = events
        .iter()
        .filter(|e| e["kind"] == "approved" && e["data"]["operator"] == "alice")
        .count();
    assert_eq!(approvals, 1);
    approve_as(&repo, "bob", &id, proposal, "second pair of eyes");
    let done = session.wait_with_output().expect("session ends");
    assert_eq!(done.status.code(), Some(0));
    assert_eq!(pg.psql(&url, "SELECT count(*) FROM orders"), "30");
}
