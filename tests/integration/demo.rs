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
