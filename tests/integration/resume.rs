//! `ward resume` on real PostgreSQL: a session killed mid-flight continues
//! from its log; nothing that executed (or may have) runs again.

use std::process::{Command, Stdio};

use crate::harness::TempRepo;
use crate::run::{
    ALLOW_ALL_IN_DEV, approve_as, fixture, repo_with_runbook, start_waiting_run, use_policy,
    wait_log, wait_until_waiting, ward_as,
};

fn events_of(repo: &TempRepo, id: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(repo.path().join(format!(".ward/sessions/{id}.jsonl")))
        .expect("log");
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// `ward resume ID` as carol, waiting for approvals, with a JSON report.
fn start_resume(repo: &TempRepo, id: &str, url: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["resume", id, "--url", url, "--wait-for-approval", "60"])
        .args(["--report", "json"])
        .current_dir(repo.path())
        .env("WARD_OPERATOR", "carol")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ward resume starts")
}

/// The proposal waiting for approval, once the resumed session has logged
/// `resumed`, and the events so far.
fn pending_after_resume(repo: &TempRepo) -> (String, Vec<serde_json::Value>) {
    let sessions = repo.path().join(".ward/sessions");
    let (_, events) = wait_log(&sessions, |ev| ev.iter().any(|e| e["kind"] == "resumed"));
    let proposal = events
        .iter()
        .find(|e| e["kind"] == "gated" && e["data"]["decision"] == "approve")
        .and_then(|e| e["data"]["proposal"].as_str())
        .expect("gated proposal")
        .to_string();
    (proposal, events)
}

fn count(events: &[serde_json::Value], kind: &str) -> usize {
    events.iter().filter(|e| e["kind"] == kind).count()
}

#[test]
fn a_session_killed_while_waiting_for_approval_resumes_with_the_approval_still_pending() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = fixture(pg);
    let repo = repo_with_runbook();
    let mut session = start_waiting_run(&repo, &url, &[], Stdio::null());
    let (id, _, _) = wait_until_waiting(&repo);
    session.kill().expect("SIGKILL");
    let _ = session.wait();
    let v = ward_as(&repo, "carol", &["audit", "verify", &id]);
    assert_eq!(v.status.code(), Some(3), "killed: unsealed");

    let resumed = start_resume(&repo, &id, &url);
    let (proposal, events) = pending_after_resume(&repo);
    let resumed_event = events
        .iter()
        .find(|e| e["kind"] == "resumed")
        .expect("resumed");
    assert_eq!(resumed_event["data"]["pending"][0], proposal.as_str());
    assert_eq!(
        pg.psql(&url, "SELECT count(*) FROM orders"),
        "60",
        "resuming approves nothing by itself"
    );
    approve_as(&repo, "alice", &id, &proposal, "stale orders, checked");
    let done = resumed.wait_with_output().expect("resume ends");
    assert_eq!(
        done.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&done.stdout).expect("json report");
    assert_eq!(report["outcome"], "concluded");
    assert_eq!(pg.psql(&url, "SELECT count(*) FROM orders"), "30");
    let events = events_of(&repo, &id);
    assert_eq!(count(&events, "session_started"), 1);
    // The headline ran once, before the kill; the delete once, after it.
    assert_eq!(count(&events, "executing"), 2);
    assert_eq!(count(&events, "proposed"), 2, "nothing proposed twice");
    let v = ward_as(&repo, "carol", &["audit", "verify", &id]);
    assert_eq!(
        v.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&v.stdout)
    );
}

const SLOW_WRITE: &str = r#"id: bump-counter
title: Bump the counter, slowly
version: 1
engines: [postgres]
steps:
  - id: look
    kind: diagnostic
    sql: SELECT n FROM public.counter WHERE id = 1
  - id: bump
    kind: remediation
    requires: [look]
    sql: UPDATE public.counter SET n = n + 1 WHERE id = 1 AND pg_sleep(4)::text = ''
    rollback: UPDATE public.counter SET n = n - 1 WHERE id = 1
    verify:
      sql: SELECT n FROM public.counter WHERE id = 1
      expect: "rows[0].n == 1"
conclusions:
  - when: "true"
    text: "counter looked at"
"#;

#[test]
fn a_step_interrupted_mid_execution_is_settled_by_its_verify_and_never_run_again() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("resume_slow");
    pg.psql(
        &url,
        "CREATE TABLE counter (id int PRIMARY KEY, n int); INSERT INTO counter VALUES (1, 0);",
    );
    let repo = TempRepo::copy_of_repo();
    repo.write("runbooks/bump-counter.yaml", SLOW_WRITE);
    use_policy(&repo, ALLOW_ALL_IN_DEV);
    let mut session = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args([
            "run",
            "bump-counter",
            "--url",
            &url,
            "--env",
            "dev",
            "--headless",
        ])
        .current_dir(repo.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ward run starts");
    let sessions = repo.path().join(".ward/sessions");
    let (id, _) = wait_log(&sessions, |ev| {
        ev.iter()
            .any(|e| e["kind"] == "executing" && e["data"]["mode"] == "write")
    });
    session.kill().expect("SIGKILL");
    let _ = session.wait();

    let out = ward_as(
        &repo,
        "dave",
        &["resume", &id, "--url", &url, "--report", "json"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = events_of(&repo, &id);
    let bump = events
        .iter()
        .find(|e| e["kind"] == "proposed" && e["data"]["step_id"] == "bump")
        .and_then(|e| e["hash"].as_str())
        .expect("bump proposed");
    let about = |kind: &str| {
        events
            .iter()
            .filter(|e| e["kind"] == kind && e["data"]["proposal"] == bump)
            .count()
    };
    assert_eq!(
        about("executing"),
        1,
        "the interrupted write is never re-run"
    );
    assert_eq!(about("executed"), 0, "no outcome is invented");
    let failed = events
        .iter()
        .find(|e| e["kind"] == "failed" && e["data"]["proposal"] == bump)
        .expect("failed");
    assert_eq!(failed["data"]["kind"], "interrupted");
    let verified = events
        .iter()
        .find(|e| e["kind"] == "verified" && e["data"]["proposal"] == bump)
        .expect("verify ran");
    // The killed connection's transaction never committed, and the database
    // says so.
    assert_eq!(verified["data"]["ok"], false);
    assert_eq!(pg.psql(&url, "SELECT n FROM counter WHERE id = 1"), "0");
    let resumed = events
        .iter()
        .find(|e| e["kind"] == "resumed")
        .expect("resumed");
    assert_eq!(resumed["data"]["operator"], "dave");
    assert_eq!(resumed["data"]["interrupted"][0], bump);
    let v = ward_as(&repo, "dave", &["audit", "verify", &id]);
    assert_eq!(
        v.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&v.stdout)
    );
    // A sealed session cannot be resumed.
    let again = ward_as(&repo, "dave", &["resume", &id, "--url", &url]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("sealed"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

/// Refused calls before the proposals: a resumed transcript must skip them
/// too, not count only the proposals that made it into the log.
const TRANSCRIPT: &str = r#"turns:
  - tool: approve_everything
    arguments: '{}'
  - tool: headline
    arguments: '{"older_than_days": "thirty"'
  - step: no_such_step
  - step: headline
    rationale: how many orders are stale
  - step: delete_stale
    rationale: they are stale
  - conclude: deleted the stale orders, as scripted
"#;

#[test]
fn a_resumed_transcript_continues_after_its_refused_calls_and_proposes_nothing_twice() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = fixture(pg);
    let repo = repo_with_runbook();
    repo.write("transcript.yaml", TRANSCRIPT);
    let mut session = start_waiting_run(
        &repo,
        &url,
        &["--agent", "replay:transcript.yaml"],
        Stdio::null(),
    );
    let (id, before, _) = wait_until_waiting(&repo);
    session.kill().expect("SIGKILL");
    let _ = session.wait();
    let refused_before = count(&before, "agent_error");
    assert_eq!(refused_before, 3, "{before:#?}");

    let resumed = start_resume(&repo, &id, &url);
    let (proposal, _) = pending_after_resume(&repo);
    approve_as(&repo, "alice", &id, &proposal, "checked");
    let done = resumed.wait_with_output().expect("resume ends");
    assert_eq!(
        done.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&done.stdout).expect("json report");
    assert_eq!(
        report["conclusion"], "deleted the stale orders, as scripted",
        "the transcript goes on where it stopped"
    );
    assert_eq!(pg.psql(&url, "SELECT count(*) FROM orders"), "30");
    let events = events_of(&repo, &id);
    assert_eq!(count(&events, "proposed"), 2, "nothing proposed twice");
    assert_eq!(
        count(&events, "agent_error"),
        refused_before,
        "no refused call is played again"
    );
}

/// The policy after the session stopped: deletes are never run.
const NO_DELETES: &str = "id: default\nrules:\n  - id: reads-run\n    when: { risk: read_only }\n    decision: allow\n  - id: no-deletes\n    when: { statement: delete }\n    decision: deny\n    message: deletes are frozen\n";

#[test]
fn a_resumed_session_admits_a_waiting_proposal_again_under_the_policy_as_it_is_now() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = fixture(pg);
    let repo = repo_with_runbook();
    let mut session = start_waiting_run(&repo, &url, &[], Stdio::null());
    let (id, _, _) = wait_until_waiting(&repo);
    session.kill().expect("SIGKILL");
    let _ = session.wait();
    // While no one was looking, the policy changed.
    use_policy(&repo, NO_DELETES);
    let out = ward_as(
        &repo,
        "dave",
        &["resume", &id, "--url", &url, "--report", "json"],
    );
    assert_eq!(
        out.status.code(),
        Some(4),
        "denied at re-admission: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(pg.psql(&url, "SELECT count(*) FROM orders"), "60");
    let events = events_of(&repo, &id);
    let delete = events
        .iter()
        .find(|e| e["kind"] == "proposed" && e["data"]["step_id"] == "delete_stale")
        .and_then(|e| e["hash"].as_str())
        .expect("delete proposed");
    let re = events
        .iter()
        .find(|e| e["kind"] == "readmitted" && e["data"]["proposal"] == delete)
        .expect("readmitted on resume");
    assert_eq!(re["data"]["decision"], "deny");
    assert_eq!(re["data"]["changed"], true);
    assert_eq!(re["data"]["previous"], "approve by 1");
    assert!(
        re["data"]["why"]
            .as_str()
            .is_some_and(|w| w.contains("deletes are frozen")),
        "{re}"
    );
    assert_eq!(count(&events, "executing"), 1, "only the headline ever ran");
    let v = ward_as(&repo, "dave", &["audit", "verify", &id]);
    assert_eq!(
        v.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&v.stdout)
    );
}

#[test]
fn ward_resume_refuses_a_dirty_policy_in_prod_like_ward_run() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = fixture(pg);
    let repo = repo_with_runbook();
    let git = |args: &[&str]| {
        let out = Command::new("git")
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
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q"]);
    git(&["add", "runbooks", "policies"]);
    git(&["commit", "-qm", "init"]);
    // A prod session that stops waiting for approval (clean policy).
    let run = ward_as(
        &repo,
        "carol",
        &[
            "run",
            "orders-cleanup",
            "--url",
            &url,
            "--env",
            "prod",
            "--headless",
            "--allow-superuser",
            "--report",
            "json",
        ],
    );
    assert_eq!(
        run.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).expect("json");
    let id = report["session_id"].as_str().expect("id").to_string();
    // The waiting proposal is sealed as unapproved; craft an unsealed
    // prefix (as if the process had died while waiting) to resume.
    let log = repo.path().join(format!(".ward/sessions/{id}.jsonl"));
    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&log, lines[..lines.len() - 1].join("\n") + "\n").expect("unseal");
    let policy = repo.read("policies/default.yaml");
    repo.write(
        "policies/default.yaml",
        &format!("{policy}\n# local experiment\n"),
    );
    let out = ward_as(
        &repo,
        "dave",
        &["resume", &id, "--url", &url, "--allow-superuser"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("policy files have uncommitted changes"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ward_as(
        &repo,
        "dave",
        &[
            "resume",
            &id,
            "--url",
            &url,
            "--allow-superuser",
            "--allow-dirty",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "still waiting for approval: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resumed = events_of(&repo, &id)
        .into_iter()
        .find(|e| e["kind"] == "resumed")
        .expect("resumed");
    assert_eq!(resumed["data"]["allow_dirty"], true);
    assert_eq!(pg.psql(&url, "SELECT count(*) FROM orders"), "60");
}
