//! `ward audit` over logs written by earlier wards (`fixtures/logs`): they
//! still verify, and `show` and the Markdown export describe their events
//! in the same words.

use crate::harness::{repo_root, ward};

fn old_log(name: &str) -> String {
    repo_root()
        .join("fixtures/logs")
        .join(name)
        .display()
        .to_string()
}

fn old_logs() -> Vec<String> {
    let mut logs: Vec<String> = std::fs::read_dir(repo_root().join("fixtures/logs"))
        .expect("fixtures/logs")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .map(|p| p.display().to_string())
        .collect();
    logs.sort();
    logs
}

#[test]
fn logs_written_before_events_were_typed_still_verify() {
    let logs = old_logs();
    assert!(logs.len() >= 5, "{logs:?}");
    for log in logs {
        let v = ward(&["audit", "verify", &log]).expect_code(0);
        assert!(v.stdout.contains(": chain intact ("), "{}", v.stdout);
    }
}

#[test]
fn markdown_export_shows_target_name_not_json() {
    let md = ward(&["audit", "export", &old_log("rare-events.jsonl")]).expect_code(0);
    assert!(
        md.stdout.contains("- target: orders [prod]\n"),
        "{}",
        md.stdout
    );
    assert!(
        !md.stdout.contains("{\"engine\"") && !md.stdout.contains("postgres://"),
        "{}",
        md.stdout
    );
}

#[test]
fn audit_show_and_the_markdown_export_say_the_same_of_every_event() {
    for log in old_logs() {
        let show = ward(&["audit", "show", &log]).expect_code(0);
        let md = ward(&["audit", "export", &log, "--format", "md"]).expect_code(0);
        let timeline: Vec<&str> = md
            .stdout
            .split("\n## Timeline\n")
            .nth(1)
            .expect("a timeline")
            .lines()
            .filter(|l| l.starts_with("- `"))
            .collect();
        let shown: Vec<&str> = show
            .stdout
            .lines()
            .filter(|l| !l.starts_with("log: "))
            .collect();
        assert_eq!(timeline.len(), shown.len(), "{log}");
        for (m, s) in timeline.iter().zip(&shown) {
            // `- `ts` [seq] headline` in Markdown; `ts [seq] kind  headline...` in show.
            let (_, headline) = m.split_once("] ").expect("a headline");
            assert!(
                s.contains(headline),
                "{log}: show says\n{s}\nthe export says\n{m}"
            );
        }
        assert!(!md.stdout.contains("awaiting_approval"), "{}", md.stdout);
    }
}

#[test]
fn a_status_reads_the_same_in_show_list_and_export() {
    let log = old_log("pg-connection-exhaustion--prompt-injection.jsonl");
    let show = ward(&["audit", "show", &log]).expect_code(0);
    let md = ward(&["audit", "export", &log]).expect_code(0);
    assert!(
        show.stdout.contains("session ended: awaiting approval"),
        "{}",
        show.stdout
    );
    assert!(
        md.stdout.contains("- outcome: **awaiting approval**")
            && md
                .stdout
                .contains("### terminate_idle (awaiting approval · write"),
        "{}",
        md.stdout
    );
}
