//! The exit-code table: the binary's own (`ward --help`, built from its
//! exit type) and the README's must say the same thing, and the codes the
//! table promises are the ones commands really exit with.

use crate::harness::{repo_root, ward};

/// `(code, meaning)` rows of the table under `ward --help`'s "Exit codes:".
fn help_table() -> Vec<(u8, String)> {
    let help = ward(&["--help"]).expect_code(0).stdout;
    let after = help
        .split_once("Exit codes:\n")
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    after
        .lines()
        .map_while(|l| {
            let (code, meaning) = l.trim_start().split_once("  ")?;
            Some((code.parse().ok()?, meaning.trim().to_string()))
        })
        .collect()
}

/// `(code, meaning)` rows of the README's "## Exit codes" table.
fn readme_table() -> Vec<(u8, String)> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let section = readme
        .split_once("## Exit codes\n")
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            Some((cells.first()?.parse().ok()?, cells.get(1)?.to_string()))
        })
        .collect()
}

#[test]
fn exit_codes_match_readme_table() {
    let help = help_table();
    assert_eq!(
        help.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        [0, 1, 2, 3, 3, 4, 5, 6],
        "{help:?}"
    );
    assert_eq!(readme_table(), help);
}

#[test]
fn audit_verify_exits_with_the_worst_log_it_was_given() {
    let log = repo_root().join("fixtures/audit/demo-headless.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let unsealed = dir.path().join("unsealed.jsonl");
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(
        &unsealed,
        format!("{}\n", lines[..lines.len() - 1].join("\n")),
    )
    .unwrap();
    let tampered = dir.path().join("tampered.jsonl");
    std::fs::write(
        &tampered,
        text.replacen("\"operator\":\"root\"", "\"operator\":\"eve\"", 1),
    )
    .unwrap();
    assert_ne!(std::fs::read_to_string(&tampered).unwrap(), text);
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    ward(&["audit", "verify", &path(&log)]).expect_code(0);
    ward(&["audit", "verify", &path(&unsealed)]).expect_code(3);
    ward(&["audit", "verify", &path(&tampered)]).expect_code(1);
    ward(&["audit", "verify", "no-such-session"]).expect_code(2);
}

#[test]
fn audit_verify_all_exits_with_tampering_before_an_unfinished_log() {
    let text = std::fs::read_to_string(repo_root().join("fixtures/audit/demo-headless.jsonl"))
        .expect("fixture log");
    let lines: Vec<&str> = text.lines().collect();
    let unsealed = format!("{}\n", lines[..lines.len() - 1].join("\n"));
    let tampered = text.replacen("\"operator\":\"root\"", "\"operator\":\"eve\"", 1);
    let verify_all = |logs: &[(&str, &str)]| {
        let dir = tempfile::tempdir().expect("tempdir");
        let sessions = dir.path().join(".ward/sessions");
        std::fs::create_dir_all(&sessions).expect("sessions dir");
        for (name, body) in logs {
            std::fs::write(sessions.join(name), body).expect("write log");
        }
        let repo = dir.path().to_str().expect("utf-8 path").to_string();
        ward(&["--repo", &repo, "audit", "verify", "--all"]).code
    };
    assert_eq!(verify_all(&[("a.jsonl", &text), ("b.jsonl", &unsealed)]), 3);
    assert_eq!(
        verify_all(&[
            ("a.jsonl", &unsealed),
            ("b.jsonl", &tampered),
            ("c.jsonl", &text)
        ]),
        1
    );
    assert_eq!(verify_all(&[("a.jsonl", &text)]), 0);
}
