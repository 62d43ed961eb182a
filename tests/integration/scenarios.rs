//! `ward test`: the shipped scenarios pass, a wrong expectation fails, and a
//! malformed scenario is a usage error naming its line and column. No
//! database is needed.

use crate::harness::TempRepo;

#[test]
fn every_shipped_scenario_passes_and_there_is_one_per_runbook() {
    let repo = TempRepo::copy_of_repo().with_fixtures();
    let run = repo.ward(&["test"]).expect_code(0);
    let runbooks: Vec<String> = std::fs::read_dir(repo.path().join("runbooks"))
        .expect("runbooks")
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".yaml").map(str::to_string)
        })
        .collect();
    for id in &runbooks {
        assert!(
            run.stdout
                .contains(&format!("fixtures/scenarios/{id}.yaml")),
            "no scenario for runbook {id}:\n{}",
            run.stdout
        );
    }
    assert!(run.stdout.contains(" 0 failed"), "{}", run.stdout);
}

#[test]
fn a_scenario_whose_expectation_does_not_hold_fails_with_exit_1_and_says_what_differed() {
    let repo = TempRepo::copy_of_repo().with_fixtures();
    let rel = "fixtures/scenarios/pg-connection-exhaustion.yaml";
    repo.edit(
        rel,
        "verified: { terminate_idle: true }",
        "verified: { terminate_idle: false }",
    );
    let run = repo.ward(&["test", rel]).expect_code(1);
    assert!(run.stdout.contains("FAIL"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("verified of terminate_idle: expected false, got [Some(true)]"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_scenario_whose_human_does_not_approve_stops_awaiting_approval() {
    let repo = TempRepo::copy_of_repo().with_fixtures();
    let rel = "fixtures/scenarios/pg-connection-exhaustion.yaml";
    repo.edit(rel, "approve: [terminate_idle]", "approve: []");
    let run = repo.ward(&["test", rel]).expect_code(1);
    assert!(
        run.stdout
            .contains("outcome: expected concluded, got awaiting_approval"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_malformed_scenario_is_a_usage_error_naming_file_line_and_column() {
    let repo = TempRepo::copy_of_repo().with_fixtures();
    let rel = "fixtures/scenarios/pg-connection-exhaustion.yaml";
    repo.edit(rel, "approve: [terminate_idle]", "aprove: [terminate_idle]");
    let (line, col) = repo.position_of(rel, "aprove");
    let run = repo.ward(&["test", rel]).expect_code(2);
    assert!(
        run.stderr
            .contains(&format!("pg-connection-exhaustion.yaml:{line}:{col}")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("approve"),
        "suggests the valid key: {}",
        run.stderr
    );
}

/// One scenario is counted in the singular.
#[test]
fn a_single_scenario_is_counted_as_one_scenario() {
    let run =
        crate::harness::ward(&["test", "fixtures/scenarios/pg-slow-queries.yaml"]).expect_code(0);
    assert!(
        run.stdout.ends_with("\n1 scenario, 1 passed, 0 failed\n"),
        "{}",
        run.stdout
    );
}

#[test]
fn junit_output_has_one_case_per_scenario_and_the_differences_of_a_failing_one() {
    let repo = TempRepo::copy_of_repo().with_fixtures();
    let broken = "fixtures/scenarios/pg-connection-exhaustion.yaml";
    let fine = "fixtures/scenarios/pg-xid-wraparound.yaml";
    repo.edit(
        broken,
        "verified: { terminate_idle: true }",
        "verified: { terminate_idle: false }",
    );
    let run = repo
        .ward(&["test", "--format", "junit", broken, fine])
        .expect_code(1);
    let report = quick_junit::Report::deserialize_from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JUnit XML: {e}\n{}", run.stdout));
    assert_eq!((report.tests, report.failures), (2, 1), "{}", run.stdout);
    let cases = &report.test_suites[0].test_cases;
    let failing: Vec<_> = cases
        .iter()
        .filter(|c| !matches!(c.status, quick_junit::TestCaseStatus::Success { .. }))
        .collect();
    assert_eq!(failing.len(), 1);
    assert_eq!(
        failing[0].classname.as_ref().map(|c| c.as_str()),
        Some("pg-connection-exhaustion")
    );
    let quick_junit::TestCaseStatus::NonSuccess {
        kind, description, ..
    } = &failing[0].status
    else {
        panic!("{:?}", failing[0].status)
    };
    assert_eq!(*kind, quick_junit::NonSuccessKind::Failure);
    assert!(
        description.as_ref().is_some_and(|d| d
            .as_str()
            .contains("verified of terminate_idle: expected false, got [Some(true)]")),
        "{}",
        run.stdout
    );
    assert_eq!(
        failing[0].extra.get("file").map(|f| f.as_str()),
        Some(broken)
    );
}
