//! `ward demo --headless`: zero setup, the SQLite incident database from
//! the seed, the demo runbook run to its end.

use crate::harness::TempRepo;

#[test]
fn every_headless_demo_starts_from_the_seed_and_keep_reuses_the_last_database() {
    let repo = TempRepo::copy_of_repo().with_fixtures();
    let first = repo
        .ward(&["demo", "--headless", "--report", "json"])
        .expect_code(0);
    let v = first.json();
    assert_eq!(v["outcome"], "concluded");
    assert!(
        v["conclusion"]
            .as_str()
            .is_some_and(|c| c.starts_with("orders has 200000 rows and no index on customer_id")),
        "{v}"
    );
    let steps = v["steps"].as_array().expect("steps");
    let index = steps
        .iter()
        .find(|s| s["step_id"] == "add_customer_index")
        .expect("the index is proposed");
    assert_eq!(
        (&index["decision"], &index["status"], &index["verified"]),
        (&"approve".into(), &"done".into(), &true.into())
    );
    assert!(repo.path().join(".ward/demo/app.db").is_file());
    let log = v["log"].as_str().expect("log");
    repo.ward(&["audit", "verify", log]).expect_code(0);
    // A second run starts from the seed again: the incident is there and
    // the same index is proposed, approved and verified.
    let second = repo
        .ward(&["demo", "--headless", "--report", "json"])
        .expect_code(0);
    let again = second.json();
    assert_eq!(
        (&again["outcome"], &again["conclusion"]),
        (&v["outcome"], &v["conclusion"]),
        "{again}"
    );
    assert_eq!(
        steps_of(&again, "add_customer_index"),
        steps_of(&v, "add_customer_index")
    );
    // `--keep` reuses the last run's database: the index is there now, so
    // nothing is proposed.
    let kept = repo
        .ward(&["demo", "--headless", "--keep", "--report", "json"])
        .expect_code(0);
    let v = kept.json();
    assert!(
        v["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .all(|s| s["step_id"] != "add_customer_index"),
        "{v}"
    );
    assert!(
        v["conclusion"]
            .as_str()
            .is_some_and(|c| c.contains("already indexed")),
        "{v}"
    );
}

/// The decision, status and verification of a step of a JSON report.
fn steps_of(report: &serde_json::Value, step: &str) -> Vec<(String, String, bool)> {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["step_id"] == step)
        .map(|s| {
            (
                s["decision"].as_str().unwrap_or_default().to_string(),
                s["status"].as_str().unwrap_or_default().to_string(),
                s["verified"].as_bool().unwrap_or_default(),
            )
        })
        .collect()
}

/// `ward demo --headless 2>&1 | head -2`: the reader goes away at once.
/// Writing to the closed pipe must not panic (exit 101) and the session
/// must still end sealed.
#[test]
fn a_headless_demo_whose_stdout_and_stderr_are_closed_still_ends_and_seals_its_log() {
    use std::process::{Command, Stdio};
    let repo = TempRepo::copy_of_repo().with_fixtures();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["demo", "--headless"])
        .current_dir(repo.path())
        .env_remove("WARD_REPO")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ward starts");
    // Drop the read ends before ward writes anything.
    drop(child.stdout.take());
    drop(child.stderr.take());
    let status = child.wait().expect("ward finishes");
    assert_eq!(status.code(), Some(0), "{status:?}");
    // Exit 3 would mean unsealed.
    let verified = repo.ward(&["audit", "verify", "--all"]).expect_code(0);
    assert!(verified.stdout.contains("sealed)"), "{}", verified.stdout);
}

/// Without a terminal the demo points at its own headless form, not at
/// `ward run`, which needs a runbook and a target.
#[test]
fn the_demo_without_a_terminal_suggests_ward_demo_headless() {
    let repo = TempRepo::copy_of_repo().with_fixtures();
    let run = repo.ward(&["demo"]).expect_code(2);
    assert!(
        run.stderr.contains("`ward demo --headless`") && !run.stderr.contains("ward run"),
        "{}",
        run.stderr
    );
}

/// `audit show` says "1 row", and `audit verify` on an unsealed log names
/// the sequence number, not `Some(..)`.
#[test]
fn audit_output_counts_one_row_in_the_singular_and_prints_a_bare_seq() {
    let repo = TempRepo::copy_of_repo().with_fixtures();
    let run = repo
        .ward(&["demo", "--headless", "--report", "json"])
        .expect_code(0);
    let log = run.json()["log"].as_str().expect("log").to_string();
    let shown = repo.ward(&["audit", "show", &log]).expect_code(0);
    assert!(
        shown.stdout.contains("executed        ") && shown.stdout.contains(" ms, 1 row\n"),
        "{}",
        shown.stdout
    );
    assert!(!shown.stdout.contains("1 rows"), "{}", shown.stdout);
    // Drop the sealing session_ended line: what a crash leaves.
    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<&str> = text.lines().collect();
    let kept = lines[..lines.len() - 1].join("\n") + "\n";
    std::fs::write(&log, kept).expect("write log");
    let verified = repo.ward(&["audit", "verify", &log]).expect_code(3);
    let last = lines.len() - 2;
    assert!(
        verified
            .stdout
            .contains(&format!("intact up to seq {last} ")),
        "{}",
        verified.stdout
    );
    assert!(!verified.stdout.contains("Some("), "{}", verified.stdout);
}
