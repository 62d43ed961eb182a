//! Password hashes and stored credentials never leave through evidence,
//! whatever the query calls them and wherever they sit inside a value.

#![allow(clippy::unwrap_used)]

use super::redact::{self, may_hold_secret};
use super::*;
use serde_json::json;

/// A verifier in PostgreSQL's format (16-byte salt, 32-byte keys).
const SCRAM: &str = "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0c2FsdA==$J3H1t0bq4nUmbqfOX0Xb0nJt1VXcGjqLhoVdVKkrC8k=:Zk2YJfV5c0Kp6JbZ0fGq0cQyqHc8d9Z6oY6mQ1Z0yvA=";
const SCRAM_2: &str = "SCRAM-SHA-256$4096:b3RoZXJzYWx0b3RoZXJzYQ==$Q2xhc3NpZmllZFN0b3JlZEtleVRoYXRJc0xvbmdFbm8=:U2VydmVyS2V5VGhhdElzQWxzb0xvbmdFbm91Z2hYWFg=";
const MD5: &str = "md5a3556571e93b0d20722ba62be61e8c2d";

/// Pieces of the secrets above that must never be seen.
const PIECES: &[&str] = &[
    "c2FsdHNhbHRzYWx0c2FsdA",
    "J3H1t0bq4nUmbqfOX0Xb0nJt1VXc",
    "Zk2YJfV5c0Kp6JbZ0fGq0cQy",
    "b3RoZXJzYWx0b3RoZXJzYQ",
    "Q2xhc3NpZmllZFN0b3JlZEtl",
    "U2VydmVyS2V5VGhhdElzQWxz",
    "a3556571e93b0d20722ba62be61e8c2d",
    "hunter2",
    "s3cr3t,pw",
    "Sl/ash?Qu#Ha@sh",
];

fn assert_no_piece(what: &str, text: &str) {
    for p in PIECES {
        assert!(!text.contains(p), "{what} leaks {p:?}: {text}");
    }
}

fn assert_evidence_has_no_piece(ev: &Evidence) {
    assert_no_piece("summary", &ev.summary);
    assert_no_piece("facts", &serde_json::to_string(&ev.facts).unwrap());
    assert_no_piece("warnings", &ev.warnings.join("\n"));
    assert_no_piece("stderr", ev.script_stderr.as_deref().unwrap_or(""));
    assert_no_piece("summarizer", &ev.summarizer);
}

fn row(v: Value) -> Row {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn cols(spec: &[(&str, &str)]) -> Vec<Column> {
    spec.iter().map(|(n, t)| Column::new(*n, *t)).collect()
}

fn cfg() -> EvidenceConfig {
    EvidenceConfig {
        pseudonym_key: [7u8; 32],
        ..EvidenceConfig::default()
    }
}

fn builtin(b: Builtin, by: Option<&str>) -> SummarizeSpec {
    SummarizeSpec {
        builtin: Some(b),
        script: None,
        by: by.map(|c| Columns::One(c.to_string())),
        limit: None,
        shows: Vec::new(),
    }
}

fn run(spec: Option<&SummarizeSpec>, columns: &[Column], rows: &[Row]) -> Evidence {
    let mut s = Summarizer::new(spec, columns, &cfg());
    for r in rows {
        s.push(r);
    }
    s.finish(rows.len() as u64, false)
}

/// Every built-in, grouping and ranking by `col` where it takes a column.
fn every_builtin(col: &str) -> Vec<Option<SummarizeSpec>> {
    vec![
        None,
        Some(builtin(Builtin::Rows, None)),
        Some(builtin(Builtin::Top, Some(col))),
        Some(builtin(Builtin::Group, Some(col))),
        Some(builtin(Builtin::Stats, None)),
        Some(builtin(Builtin::Schema, None)),
    ]
}

/// Lower-case hex, as bytea output shows it.
fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Base64 wrapped at 76 chars, as `encode(x, 'base64')` gives it.
fn base64_76(s: &str) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in s.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    let mut wrapped = String::new();
    for (i, c) in out.chars().enumerate() {
        if i > 0 && i % 76 == 0 {
            wrapped.push('\n');
        }
        wrapped.push(c);
    }
    wrapped
}

#[test]
fn password_hashes_and_conninfo_passwords_are_masked_wherever_they_sit_in_text() {
    let cases: &[(String, &str)] = &[
        (SCRAM.to_string(), "[REDACTED-SCRAM]"),
        (MD5.to_string(), "[REDACTED-MD5]"),
        (
            format!("role app has {SCRAM} since monday"),
            "role app has [REDACTED-SCRAM] since monday",
        ),
        (
            format!("{SCRAM},{SCRAM_2},{MD5}"),
            "[REDACTED-SCRAM],[REDACTED-SCRAM],[REDACTED-MD5]",
        ),
        (
            format!(r#"{{"rolname":"app","rolpassword":"{SCRAM}"}}"#),
            r#"{"rolname":"app","rolpassword":***}"#,
        ),
        (
            format!(r#"[{{"a": ["{MD5}"]}}]"#),
            r#"[{"a": ["[REDACTED-MD5]"]}]"#,
        ),
        // Cut short, as a narrow cell would be.
        (SCRAM[..40].to_string(), "[REDACTED-SCRAM]"),
        // The verifier's body without its prefix, and its two keys alone.
        (SCRAM[14..].to_string(), "[REDACTED-SCRAM]"),
        (
            SCRAM.rsplit('$').next().unwrap().to_string(),
            "[REDACTED-SCRAM]",
        ),
        // Read as bytea (hex) or base64, as PostgreSQL prints them.
        (format!("\\x{}", hex(SCRAM)), "[REDACTED-SCRAM]"),
        (format!("\\x{}", hex(MD5)), "[REDACTED-MD5]"),
        (base64_76(SCRAM), "[REDACTED-SCRAM]"),
        (base64_76(MD5), "[REDACTED-MD5]"),
        // pg_user_mappings.umoptions, srvoptions, pg_db_role_setting.setconfig.
        (
            "{user=app,password=hunter2}".to_string(),
            "{user=app,password=***}",
        ),
        (
            r#"{user=app,"password=s3cr3t,pw"}"#.to_string(),
            r#"{user=app,"password=***"}"#,
        ),
        (
            "{search_path=public,app.api_password=hunter2}".to_string(),
            "{search_path=public,app.api_password=***}",
        ),
        // pg_subscription.subconninfo, pg_stat_wal_receiver.conninfo.
        (
            "host=primary port=5432 user=repl password=hunter2 passfile=/etc/pgpass dbname=app"
                .to_string(),
            "host=primary port=5432 user=repl password=*** passfile=*** dbname=app",
        ),
        (
            r"host=primary password='hunter2 it\'s' user=repl".to_string(),
            "host=primary password=*** user=repl",
        ),
        // SQL text (pg_stat_activity.query) setting a password.
        (
            "ALTER ROLE app ENCRYPTED PASSWORD 'hunter2'".to_string(),
            "ALTER ROLE app ENCRYPTED PASSWORD '***'",
        ),
        (
            "CREATE USER MAPPING FOR app SERVER s OPTIONS (user 'app', password 'it''s hunter2')"
                .to_string(),
            "CREATE USER MAPPING FOR app SERVER s OPTIONS (user 'app', password '***')",
        ),
        // A URL whose password holds / ? # @ in the middle of a message.
        (
            "could not connect to postgres://app:Sl/ash?Qu#Ha@sh@db:5432/orders: refused"
                .to_string(),
            "could not connect to postgres://app:***@db:5432/orders: refused",
        ),
    ];
    for (input, want) in cases {
        let got = redact_text(input);
        assert_eq!(&got, want, "{input}");
        assert_no_piece(input, &got);
        assert_eq!(redact_text(&got), got, "idempotent on {input}");
        assert!(
            may_hold_secret(input),
            "the prefilter lets {input:?} through"
        );
    }
}

#[test]
fn text_without_secrets_skips_the_rules_and_comes_back_unchanged() {
    for plain in [
        "active",
        "idle in transaction",
        "select * from t where id = $1",
        "5d41402abc4b2a76b9719d911017c592",
        "autovacuum: VACUUM public.orders (to prevent wraparound)",
        "password authentication failed for user \"app\"",
    ] {
        assert_eq!(redact_text(plain), plain);
    }
    assert!(!may_hold_secret("autovacuum: VACUUM public.orders"));
    assert!(!may_hold_secret("5d41402abc4b2a76b9719d911017c592"));
}

#[test]
fn credential_columns_are_masked_whatever_the_runbook_says() {
    let c = cols(&[("rolname", "name"), ("rolpassword", "text"), ("n", "int4")]);
    let rows = vec![
        row(json!({"rolname": "app", "rolpassword": SCRAM, "n": 3})),
        row(json!({"rolname": "legacy", "rolpassword": MD5, "n": 2})),
        row(json!({"rolname": "plain", "rolpassword": "hunter2", "n": 1})),
        row(json!({"rolname": "nologin", "rolpassword": null, "n": 0})),
    ];
    for sp in every_builtin("rolpassword") {
        for start in 0..rows.len() {
            let mut rotated = rows.clone();
            rotated.rotate_left(start);
            let ev = run(sp.as_ref(), &c, &rotated);
            assert_evidence_has_no_piece(&ev);
        }
    }
    // The kind of hash stays visible; a role without a password stays null.
    let ev = run(None, &c, &rows);
    assert_eq!(ev.facts["rolpassword"], json!("[REDACTED-SCRAM]"));
    assert_eq!(
        ev.summary,
        "rows: first 4 of 4 rows\n\
         rolname  rolpassword       n\n\
         app      [REDACTED-SCRAM]  3\n\
         legacy   [REDACTED-MD5]    2\n\
         plain    ***               1\n\
         nologin  null              0"
    );
    let ev = run(None, &c, &rows[3..]);
    assert_eq!(ev.facts["rolpassword"], Value::Null);
    // Pseudonymizing a credential column is allowed: the pseudonym is a keyed hash.
    let mut config = cfg();
    config.redact_columns = vec!["rolpassword".into()];
    let mut s = Summarizer::new(None, &c, &config);
    s.push(&rows[2]);
    let ev = s.finish(1, false);
    let shown = ev.facts["rolpassword"].as_str().unwrap();
    assert!(shown.starts_with("rolpassword_"), "{shown}");
}

#[test]
fn aliases_select_star_row_to_json_and_string_agg_are_redacted_by_value() {
    // SELECT rolpassword AS x / a.* / row_to_json(a) / string_agg(rolpassword, ',')
    // / array_agg(...) as the executor hands them over.
    let c = cols(&[
        ("x", "text"),
        ("row_to_json", "json"),
        ("string_agg", "text"),
        ("array_agg", "_text"),
        ("umoptions", "_text"),
    ]);
    let rows = vec![
        row(json!({
            "x": SCRAM,
            "row_to_json": {"rolname": "app", "rolpassword": SCRAM_2, "nested": {"p": [MD5]}},
            "string_agg": format!("{SCRAM},{SCRAM_2}"),
            "array_agg": [SCRAM, MD5, null],
            "umoptions": ["user=app", "password=hunter2"],
        })),
        row(json!({
            "x": MD5,
            "row_to_json": {"rolname": "plain", "password": "hunter2"},
            "string_agg": format!("{MD5},{SCRAM}"),
            "array_agg": [],
            "umoptions": ["user=app", "password=s3cr3t,pw"],
        })),
    ];
    for col in ["x", "row_to_json", "string_agg", "array_agg", "umoptions"] {
        for sp in every_builtin(col) {
            let ev = run(sp.as_ref(), &c, &rows);
            assert_evidence_has_no_piece(&ev);
        }
    }
    let ev = run(None, &c, &rows);
    assert_eq!(ev.facts["x"], json!("[REDACTED-SCRAM]"));
    assert_eq!(
        ev.facts["string_agg"],
        json!("[REDACTED-SCRAM],[REDACTED-SCRAM]")
    );
}

#[test]
fn a_secret_past_the_cut_of_a_group_key_is_still_recognised_whole() {
    let c = cols(&[("note", "text")]);
    let long = format!(
        "{} postgres://app:Sl/ash?Qu#Ha@sh@db:5432/orders",
        "x".repeat(180)
    );
    let ev = run(
        Some(&builtin(Builtin::Group, Some("note"))),
        &c,
        &[row(json!({ "note": long }))],
    );
    assert_evidence_has_no_piece(&ev);
    let ev = run(
        Some(&builtin(Builtin::Group, Some("note"))),
        &c,
        &[row(
            json!({ "note": format!("{} {SCRAM}", "y".repeat(190)) }),
        )],
    );
    assert_evidence_has_no_piece(&ev);
}

#[test]
fn facts_named_like_a_credential_are_masked_even_from_a_script() {
    let facts = json!({
        "password": "hunter2",
        "db_password": "",
        "token": 5,
        "nested": {"client_secret": "hunter2", "list": [{"api_key": "hunter2"}]},
        "ok": "fine",
    });
    let Value::Object(m) = facts else {
        unreachable!()
    };
    let cleaned = clean_map(m);
    assert_eq!(
        Value::Object(cleaned),
        json!({
            "password": "***",
            "db_password": "",
            "token": 5,
            "nested": {"client_secret": "***", "list": [{"api_key": "***"}]},
            "ok": "fine",
        })
    );
}

#[test]
fn a_script_is_fed_redacted_rows_and_its_output_is_redacted() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("scripts")).unwrap();
    // Keeps a copy of its stdin, then prints it back as summary, facts and stderr.
    let script = dir.path().join("scripts/tee.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\ntee seen.jsonl >&2\necho 'saw rows'\ncat seen.jsonl\necho '{\"password\": \"hunter2\"}'\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = EvidenceConfig {
        script_root: dir.path().to_path_buf(),
        script_cwd: dir.path().to_path_buf(),
        ..cfg()
    };
    let sp = SummarizeSpec {
        builtin: None,
        script: Some("scripts/tee.sh".into()),
        by: None,
        limit: None,
        shows: Vec::new(),
    };
    let c = cols(&[("rolname", "name"), ("x", "text"), ("doc", "jsonb")]);
    let mut s = Summarizer::new(Some(&sp), &c, &config);
    s.push(&row(json!({"rolname": "app", "x": SCRAM, "doc": {"password": "hunter2", "url": "postgres://u:Sl/ash?Qu#Ha@sh@h/db"}})));
    s.push(&row(
        json!({"rolname": "legacy", "x": MD5, "doc": [format!("host=h password=hunter2")]}),
    ));
    let ev = s.finish(2, false);
    assert_eq!(ev.summarizer, "script:scripts/tee.sh", "{ev:?}");
    let seen = std::fs::read_to_string(dir.path().join("seen.jsonl")).unwrap();
    assert_no_piece("the script's stdin", &seen);
    assert_eq!(
        seen.lines().next().unwrap(),
        r#"{"rolname":"app","x":"[REDACTED-SCRAM]","doc":{"password":"***","url":"postgres://u:***@h/db"}}"#
    );
    assert_evidence_has_no_piece(&ev);
    assert_eq!(ev.facts["password"], json!("***"));
}

#[test]
fn prefilter_and_name_patterns_compile() {
    let (compiled, total) = redact::rule_count();
    assert_eq!(compiled, total);
    for name in [
        "rolpassword",
        "passwd",
        "PGPASSWORD",
        "client_secret",
        "api_key",
    ] {
        assert!(redact::is_secret_name(name), "{name}");
    }
    for name in [
        "rolname",
        "umoptions",
        "tokens",
        "password_changed_at",
        "keys",
    ] {
        assert!(!redact::is_secret_name(name), "{name}");
    }
}
