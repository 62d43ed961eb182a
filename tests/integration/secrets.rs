//! Secrets never leave ward: password hashes read from a real PostgreSQL's
//! catalogs, and passwords in connection URLs, appear in no output and no
//! file ward writes (stdout, stderr, session logs, anything under `.ward/`).

use std::path::Path;
use std::process::Command;

use crate::harness::{Run, TempRepo};
use crate::run::{ALLOW_ALL_IN_DEV, use_policy};

/// Every diagnostic reads stored credentials a different way. `{roles}` is
/// the quoted list of the test's roles.
const RUNBOOK: &str = r#"id: secrets-probe
title: Reads that touch stored credentials
version: 1
engines: [postgres]
triggers: [SecretsProbe]
adhoc: read_only
steps:
  - id: plain
    kind: diagnostic
    sql: SELECT rolname, rolpassword FROM pg_authid WHERE rolname IN ({roles}) ORDER BY rolname
  - id: aliased
    kind: diagnostic
    sql: SELECT rolpassword AS x FROM pg_authid WHERE rolname IN ({roles}) ORDER BY rolname
  - id: star
    kind: diagnostic
    sql: SELECT a.* FROM pg_authid a WHERE a.rolname IN ({roles}) ORDER BY a.rolname
  - id: as_json
    kind: diagnostic
    sql: SELECT row_to_json(a) AS j FROM pg_authid a WHERE a.rolname IN ({roles}) ORDER BY a.rolname
  - id: aggregated
    kind: diagnostic
    sql: SELECT string_agg(rolpassword, ',') AS s FROM pg_authid WHERE rolname IN ({roles})
  - id: grouped
    kind: diagnostic
    sql: SELECT rolname, rolpassword FROM pg_authid WHERE rolname IN ({roles})
    summarize: { builtin: group, by: rolpassword }
  - id: ranked
    kind: diagnostic
    sql: SELECT rolpassword, length(rolname) AS n FROM pg_authid WHERE rolname IN ({roles})
    summarize: { builtin: top, by: n }
  - id: as_bytes
    kind: diagnostic
    sql: SELECT convert_to(rolpassword, 'UTF8') AS b, encode(convert_to(rolpassword, 'UTF8'), 'base64') AS b64 FROM pg_authid WHERE rolname IN ({roles})
  - id: shadow
    kind: diagnostic
    sql: SELECT * FROM pg_shadow WHERE usename IN ({roles})
  - id: mappings
    kind: diagnostic
    sql: SELECT srvname, usename, umoptions FROM pg_user_mappings
  - id: subscriptions
    kind: diagnostic
    sql: SELECT subname, subconninfo FROM pg_subscription
conclusions:
  - when: "true"
    text: "probed the catalogs"
"#;

/// An agent reading the hash ad hoc: aliased, through `SELECT *`, as JSON,
/// and in a cast whose error message quotes the value.
const TRANSCRIPT: &str = r#"turns:
  - step: plain
    rationale: who has a password
  - adhoc: "SELECT rolname, rolpassword AS pw FROM pg_authid WHERE rolname = '{victim}'"
    reason: look at the hash
  - adhoc: "SELECT * FROM pg_authid WHERE rolname = '{victim}'"
    reason: everything about the role
  - adhoc: "SELECT row_to_json(a) AS j FROM pg_authid a WHERE rolname = '{victim}'"
    reason: as json
  - adhoc: "SELECT rolpassword::int AS n FROM pg_authid WHERE rolname = '{victim}'"
    reason: an error quoting the value
  - adhoc: "SELECT umoptions FROM pg_user_mappings"
    reason: mapping options
  - conclude: looked at the hashes
"#;

/// Every file under `dir`, as text (lossy), with its path.
fn files_under(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else if let Ok(bytes) = std::fs::read(&p) {
            out.push((
                p.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }
    out
}

/// Panics if any secret (or a telling piece of one) is in any output or any
/// file under `.ward/`; returns the text of those files for further checks.
fn assert_nowhere(repo: &TempRepo, runs: &[(String, Run)], secrets: &[String]) -> String {
    let mut all = String::new();
    let files = files_under(&repo.path().join(".ward"));
    assert!(!files.is_empty(), "ward wrote nothing under .ward/");
    let mut places: Vec<(String, &str)> = Vec::new();
    for (what, run) in runs {
        places.push((format!("stdout of {what}"), &run.stdout));
        places.push((format!("stderr of {what}"), &run.stderr));
    }
    for (path, text) in &files {
        places.push((path.clone(), text));
    }
    for (where_, text) in &places {
        for s in secrets {
            assert!(!text.contains(s.as_str()), "{where_} holds {s:?}:\n{text}");
        }
        all.push_str(text);
        all.push('\n');
    }
    all
}

/// The parts of a SCRAM verifier that are secret or identify it: the whole
/// value, the salt, StoredKey and ServerKey.
fn verifier_pieces(verifier: &str) -> Vec<String> {
    let mut out = vec![verifier.to_string()];
    // SCRAM-SHA-256$<iter>:<salt>$<storedkey>:<serverkey>
    let parts: Vec<&str> = verifier.split(['$', ':']).collect();
    assert_eq!(parts.len(), 5, "{verifier}");
    out.extend(
        parts[2..]
            .iter()
            .map(|p| p.trim_end_matches('=').to_string()),
    );
    out
}

fn ward_with_env(repo: &TempRepo, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ward"));
    cmd.args(args)
        .current_dir(repo.path())
        .env_remove("WARD_REPO")
        .env_remove("WARD_URL")
        .env("NO_COLOR", "1")
        .env("WARD_OPERATOR", "carol");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("ward runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn a_role_password_hash_read_any_way_reaches_no_output_and_no_log() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("secrets");
    let id = std::process::id();
    let (victim, legacy) = (format!("ward_victim_{id}"), format!("ward_legacy_{id}"));
    let mapping_pw = format!("Map/p@ss?{id}#x");
    let sub_pw = format!("SubPw{id}q");
    pg.psql(
        &url,
        &format!(
            "DROP ROLE IF EXISTS {victim}; DROP ROLE IF EXISTS {legacy};
             CREATE ROLE {victim} LOGIN PASSWORD 'Vict1m/@?#pw';
             SET password_encryption = 'md5';
             CREATE ROLE {legacy} LOGIN PASSWORD 'legacy-pw';
             CREATE FOREIGN DATA WRAPPER probe_fdw;
             CREATE SERVER probe_srv FOREIGN DATA WRAPPER probe_fdw OPTIONS (host 'elsewhere');
             CREATE USER MAPPING FOR CURRENT_USER SERVER probe_srv
               OPTIONS (user 'remote', password '{mapping_pw}');
             CREATE SUBSCRIPTION probe_sub_{id}
               CONNECTION 'host=elsewhere user=repl password={sub_pw} dbname=x'
               PUBLICATION p WITH (connect = false);"
        ),
    );
    let scram = pg.psql(
        &url,
        &format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{victim}'"),
    );
    assert!(scram.starts_with("SCRAM-SHA-256$"), "{scram}");
    let md5 = pg.psql(
        &url,
        &format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{legacy}'"),
    );
    assert!(md5.starts_with("md5") && md5.len() == 35, "{md5}");
    // The same hashes as bytea (hex) and base64, as a query can show them.
    let encoded = pg.psql(
        &url,
        &format!(
            "SELECT encode(convert_to(rolpassword, 'UTF8'), 'hex'), \
                    split_part(encode(convert_to(rolpassword, 'UTF8'), 'base64'), E'\\n', 1) \
             FROM pg_authid WHERE rolname IN ('{victim}', '{legacy}') ORDER BY rolname DESC"
        ),
    );
    let mut secrets = verifier_pieces(&scram);
    for line in encoded.lines() {
        for part in line.split('|') {
            // Past the encoded "SCRAM-SHA-256$" / "md5" prefix, and within
            // the 64 bytes of a bytea ward shows.
            assert!(part.len() > 40, "{part}");
            secrets.push(part[24..part.len().min(100)].to_string());
        }
    }
    secrets.push(md5[3..].to_string());
    secrets.push(mapping_pw.clone());
    secrets.push(sub_pw.clone());

    let repo = TempRepo::copy_of_repo();
    use_policy(&repo, ALLOW_ALL_IN_DEV);
    let roles = format!("'{victim}', '{legacy}'");
    repo.write(
        "runbooks/secrets-probe.yaml",
        &RUNBOOK.replace("{roles}", &roles),
    );
    repo.write("transcript.yaml", &TRANSCRIPT.replace("{victim}", &victim));

    let mut runs: Vec<(String, Run)> = Vec::new();
    for step in [
        "plain",
        "aliased",
        "star",
        "as_json",
        "aggregated",
        "grouped",
        "ranked",
        "as_bytes",
        "shadow",
        "mappings",
        "subscriptions",
    ] {
        for format in ["text", "json"] {
            let run = ward_with_env(
                &repo,
                &[
                    "step",
                    "secrets-probe",
                    step,
                    "--url",
                    &url,
                    "--env",
                    "dev",
                    "--format",
                    format,
                ],
                &[],
            );
            runs.push((format!("ward step {step} --format {format}"), run));
        }
    }
    let offline = ward_with_env(
        &repo,
        &[
            "run",
            "secrets-probe",
            "--url",
            &url,
            "--env",
            "dev",
            "--headless",
            "--report",
            "json",
        ],
        &[],
    );
    runs.push(("ward run (offline planner)".into(), offline));
    let agent = ward_with_env(
        &repo,
        &[
            "run",
            "secrets-probe",
            "--url",
            &url,
            "--env",
            "dev",
            "--headless",
            "--agent",
            "replay:transcript.yaml",
            "--report",
            "json",
        ],
        &[],
    );
    runs.push(("ward run (scripted agent)".into(), agent));
    let all = assert_nowhere(&repo, &runs, &secrets);

    // The reads did happen (the test would pass vacuously otherwise): the
    // steps ran, the hashes were seen and replaced, the error was logged.
    for (what, run) in &runs {
        assert_eq!(run.code, 0, "{what}\n{}\n{}", run.stdout, run.stderr);
    }
    let shown = runs
        .iter()
        .map(|(_, r)| r.stdout.as_str())
        .collect::<String>();
    for marker in ["[REDACTED-SCRAM]", "[REDACTED-MD5]", "password=***"] {
        assert!(shown.contains(marker), "{marker} not in\n{shown}");
    }
    assert!(
        all.contains("invalid input syntax for type integer"),
        "the failed cast is in the log"
    );
    assert!(
        all.contains("[REDACTED-SCRAM]"),
        "the session logs saw the hash"
    );
    assert!(
        all.contains("user=repl"),
        "conninfo keeps what is not secret"
    );

    pg.psql(
        &url,
        &format!(
            "ALTER SUBSCRIPTION probe_sub_{id} SET (slot_name = NONE); DROP SUBSCRIPTION probe_sub_{id};
             DROP USER MAPPING FOR CURRENT_USER SERVER probe_srv; DROP SERVER probe_srv;
             DROP FOREIGN DATA WRAPPER probe_fdw; DROP ROLE {victim}; DROP ROLE {legacy};"
        ),
    );
}

#[test]
fn a_url_password_holding_slash_at_question_mark_and_hash_reaches_no_output_and_no_log() {
    let password = "Sl/ash@Qu?Ha#sh:9";
    // A closed local port: the connection fails, and the messages about it
    // name the target.
    let url = format!("postgres://ward:{password}@127.0.0.1:1/app");
    let repo = TempRepo::copy_of_repo();
    use_policy(&repo, ALLOW_ALL_IN_DEV);
    repo.write(
        "runbooks/secrets-probe.yaml",
        &RUNBOOK.replace("{roles}", "'nobody'"),
    );
    repo.write(
        "ward.yaml",
        "targets:\n  orders:\n    engine: postgres\n    url_env: WARD_TEST_ORDERS_URL\n    environment: dev\n",
    );
    let env = [("WARD_TEST_ORDERS_URL", url.as_str())];
    let mut runs: Vec<(String, Run)> = Vec::new();
    for target in [["--url", url.as_str()], ["--target", "orders"]] {
        let mut step = vec!["step", "secrets-probe", "plain"];
        step.extend(target);
        step.extend(["--env", "dev"]);
        if target[0] == "--target" {
            step.truncate(step.len() - 2);
        }
        runs.push((
            format!("ward step {}", target[0]),
            ward_with_env(&repo, &step, &env),
        ));
        let mut run = vec!["run", "secrets-probe"];
        run.extend(target);
        run.extend(["--headless", "--report", "json"]);
        if target[0] == "--url" {
            run.extend(["--env", "dev"]);
        }
        runs.push((
            format!("ward run {}", target[0]),
            ward_with_env(&repo, &run, &env),
        ));
    }
    // Running a session creates .ward/ even when the connection fails; make
    // sure there is something to scan.
    std::fs::create_dir_all(repo.path().join(".ward")).expect("mkdir");
    repo.write(".ward/.keep", "");
    let mut secrets = vec![password.to_string()];
    secrets.extend(
        ["Sl/ash", "ash@Qu", "Qu?Ha", "Ha#sh", "sh:9"]
            .iter()
            .map(|s| s.to_string()),
    );
    assert_nowhere(&repo, &runs, &secrets);
    for (what, run) in &runs {
        assert_ne!(run.code, 0, "{what} cannot have connected");
        assert!(
            run.stderr.contains("127.0.0.1") || run.stdout.contains("127.0.0.1"),
            "{what}: the host is still named\n{}\n{}",
            run.stdout,
            run.stderr
        );
    }
}
