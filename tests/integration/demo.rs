//! `ward demo --headless`: zero setup, the SQLite incident database from
//! the seed, the demo runbook run to its end.

use crate::harness::{TempRepo, ward_in};

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

/// The demo's seed, runbook and policy are built into the binary: it runs
/// in a directory with no repository at all, and writes only `.ward/`.
#[test]
fn demo_runs_from_a_directory_outside_the_repository() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = ward_in(
        dir.path(),
        &["demo", "--headless", "--report", "json"],
        None,
    )
    .expect_code(0);
    let v = run.json();
    assert_eq!(v["outcome"], "concluded", "{v}");
    assert!(
        v["conclusion"]
            .as_str()
            .is_some_and(|c| c.starts_with("orders has 200000 rows and no index on customer_id")),
        "{v}"
    );
    assert_eq!(
        steps_of(&v, "add_customer_index"),
        vec![("approve".to_string(), "done".to_string(), true)]
    );
    let mut written: Vec<String> = walk(dir.path())
        .into_iter()
        .filter(|p| !p.starts_with(".ward/sessions/"))
        .collect();
    written.sort();
    assert_eq!(
        written,
        [
            ".ward/demo/app.db",
            ".ward/demo/policies/default.yaml",
            ".ward/demo/runbooks/demo-slow-customer-orders.yaml",
        ]
    );
    let log = v["log"].as_str().expect("log");
    ward_in(dir.path(), &["audit", "verify", log], None).expect_code(0);
}

/// Files under `dir`, as paths relative to it with `/` separators.
fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let rel = path.strip_prefix(dir).expect("under dir");
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out
}

/// A sealed demo session and three damaged copies of its log (unsealed,
/// torn, tampered) in `dir`'s `.ward/sessions`; returns the sealed log.
fn sessions_in_every_state(dir: &std::path::Path) -> std::path::PathBuf {
    let run = ward_in(dir, &["demo", "--headless", "--report", "json"], None).expect_code(0);
    let log = std::path::PathBuf::from(run.json()["log"].as_str().expect("log"));
    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<&str> = text.lines().collect();
    let sessions = log.parent().expect("sessions dir");
    let unsealed = lines[..lines.len() - 1].join("\n") + "\n";
    std::fs::write(sessions.join("20990101T000001Z-aaaaaa.jsonl"), unsealed).expect("write");
    let torn = format!(
        "{}\n{}",
        lines[..lines.len() - 1].join("\n"),
        &lines[lines.len() - 1][..20]
    );
    std::fs::write(sessions.join("20990101T000002Z-bbbbbb.jsonl"), torn).expect("write");
    let mut forged: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    forged[5] = forged[5].replacen("\"seq\":5", "\"seq\":6", 1);
    std::fs::write(
        sessions.join("20990101T000003Z-cccccc.jsonl"),
        forged.join("\n") + "\n",
    )
    .expect("write");
    log
}

/// `ward audit list` lays its columns out from the widest cell, so a long
/// outcome (`running or crashed`) or log status never shifts the next
/// column.
#[test]
fn audit_list_columns_align_for_unsealed_sessions() {
    let dir = tempfile::tempdir().expect("tempdir");
    sessions_in_every_state(dir.path());
    let list = ward_in(dir.path(), &["audit", "list"], None).expect_code(0);
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", list.stdout);
    let header = lines[0];
    let starts: Vec<usize> = ["started", "operator", "runbook", "env", "outcome", "log"]
        .iter()
        .map(|h| header.find(&format!("  {h}")).expect("header column") + 2)
        .collect();
    for line in &lines[1..] {
        for &at in &starts {
            let (before, after) = line.split_at(at);
            assert!(
                before.ends_with("  ") && !after.starts_with(' '),
                "column at {at} does not line up:\n{}",
                list.stdout
            );
        }
    }
    let statuses: Vec<&str> = lines[1..].iter().map(|l| &l[starts[5]..]).collect();
    assert_eq!(
        statuses,
        [
            "chain intact, sealed",
            "chain intact, unsealed",
            "torn last line (truncated)",
            "TAMPERED at seq 5",
        ],
        "{}",
        list.stdout
    );
    let outcomes: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l[starts[4]..starts[5]].trim_end())
        .collect();
    assert_eq!(
        outcomes,
        [
            "concluded",
            "running or crashed",
            "running or crashed",
            "concluded"
        ],
        "{}",
        list.stdout
    );
}

/// "verified" is kept for a fix whose verify query passed; what the log's
/// own check found is named after the hash chain, in `audit list`,
/// `audit verify` and `audit show`.
#[test]
fn audit_list_says_chain_intact_not_verified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = sessions_in_every_state(dir.path());
    let list = ward_in(dir.path(), &["audit", "list"], None).expect_code(0);
    assert!(
        list.stdout
            .lines()
            .next()
            .is_some_and(|h| h.ends_with("  log")),
        "{}",
        list.stdout
    );
    assert!(!list.stdout.contains("verif"), "{}", list.stdout);
    let log = log.to_str().expect("utf-8 path");
    let verified = ward_in(dir.path(), &["audit", "verify", log], None).expect_code(0);
    assert!(
        verified
            .stdout
            .strip_prefix(&format!("{log}: chain intact ("))
            .is_some_and(|rest| rest.ends_with(" events, sealed)\n")),
        "{}",
        verified.stdout
    );
    let shown = ward_in(dir.path(), &["audit", "show", log], None).expect_code(0);
    assert!(
        shown.stdout.ends_with("\nlog: chain intact, sealed\n"),
        "{}",
        shown.stdout
    );
    // The fix itself is still "verified", in the step's own event.
    assert!(shown.stdout.contains("] verified "), "{}", shown.stdout);
}

#[test]
fn demo_without_a_terminal_says_use_headless_and_creates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = ward_in(dir.path(), &["demo"], None).expect_code(2);
    assert!(
        run.stderr.contains("`ward demo --headless`"),
        "{}",
        run.stderr
    );
    assert_eq!(walk(dir.path()), Vec::<String>::new());
}
