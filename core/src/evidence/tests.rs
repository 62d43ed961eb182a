#![allow(clippy::unwrap_used)]

use super::p2::{self, P2};
use super::*;
use serde_json::json;
use std::path::Path;
use std::time::Instant;

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

fn spec(builtin: Builtin, by: Option<Columns>, limit: Option<u64>) -> SummarizeSpec {
    SummarizeSpec {
        builtin: Some(builtin),
        script: None,
        by,
        limit,
        shows: Vec::new(),
    }
}

fn by(c: &str) -> Option<Columns> {
    Some(Columns::One(c.to_string()))
}

fn run(
    spec: Option<&SummarizeSpec>,
    columns: &[Column],
    rows: &[Row],
    config: &EvidenceConfig,
) -> Evidence {
    let mut s = Summarizer::new(spec, columns, config);
    for r in rows {
        s.push(r);
    }
    s.finish(rows.len() as u64, false)
}

fn sessions() -> (Vec<Column>, Vec<Row>) {
    let c = cols(&[
        ("pid", "int4"),
        ("state", "text"),
        ("idle", "int8"),
        ("meta", "jsonb"),
    ]);
    let rows = vec![
        row(json!({"pid": 101, "state": "active", "idle": 3, "meta": {"a": 1}})),
        row(json!({"pid": 102, "state": "idle in transaction", "idle": 40, "meta": null})),
        row(json!({"pid": 103, "state": "idle", "idle": 7, "meta": [1, 2]})),
        row(json!({"pid": 104, "state": "active", "idle": null, "meta": null})),
    ];
    (c, rows)
}

// ------------------------------------------------------------ built-ins

#[test]
fn rows_text_and_facts() {
    let (c, rows) = sessions();
    let ev = run(Some(&spec(Builtin::Rows, None, Some(2))), &c, &rows, &cfg());
    assert_eq!(ev.summarizer, "rows");
    let lines: Vec<&str> = ev.summary.lines().collect();
    assert_eq!(lines[0], "rows: first 2 of 4 rows");
    assert_eq!(lines[1], "pid  state                idle  meta");
    assert_eq!(lines[2], "101  active               3     {\"a\":1}");
    assert_eq!(lines[3], "102  idle in transaction  40    null");
    assert_eq!(lines[4], "... 2 more rows");
    assert_eq!(lines.len(), 5);
    assert_eq!(ev.facts["row_count"], json!(4));
    assert_eq!(ev.facts["capped"], json!(false));
    assert_eq!(ev.facts["pid"], json!(101));
    assert_eq!(ev.facts["state"], json!("active"));
    assert!(
        !ev.facts.contains_key("meta"),
        "nested values are not facts"
    );
    assert!(!ev.truncated);
    assert_eq!(ev.tokens, estimate_tokens(&ev.summary));

    // No spec: rows with the default limit; capped is stated.
    let mut s = Summarizer::new(None, &c, &cfg());
    for r in &rows {
        s.push(r);
    }
    let ev = s.finish(4, true);
    assert!(
        ev.summary
            .starts_with("rows: first 4 of 4 rows (capped at 4 rows)\n"),
        "{}",
        ev.summary
    );
    assert_eq!(ev.facts["capped"], json!(true));
    assert!(!ev.summary.contains("more rows"));
}

#[test]
fn rows_cells_are_cut_to_60_chars_and_flattened() {
    let c = cols(&[("q", "text")]);
    let long = format!("select\n{}", "x".repeat(200));
    let ev = run(None, &c, &[row(json!({ "q": long }))], &cfg());
    let line = ev.summary.lines().nth(2).unwrap();
    assert_eq!(line.chars().count(), 60);
    assert!(line.starts_with("select xxx") && line.ends_with("..."));
}

#[test]
fn top_with_heap_smaller_than_rows() {
    let c = cols(&[("object", "text"), ("waiters", "int8")]);
    // 50 rows, values shuffled deterministically; plus a null and a non-numeric.
    let mut rows: Vec<Row> = (0..50u64)
        .map(|i| {
            let v = (i * 37) % 50;
            row(json!({"object": format!("t{v}"), "waiters": v}))
        })
        .collect();
    rows.insert(3, row(json!({"object": "n", "waiters": null})));
    rows.insert(9, row(json!({"object": "s", "waiters": "many"})));
    rows.push(row(json!({"object": "numeric-text", "waiters": "48.5"})));
    let ev = run(
        Some(&spec(Builtin::Top, by("waiters"), Some(5))),
        &c,
        &rows,
        &cfg(),
    );
    let lines: Vec<&str> = ev.summary.lines().collect();
    assert_eq!(lines[0], "top 5 of 53 rows by waiters");
    assert_eq!(lines[1], "object        waiters");
    assert_eq!(lines[2], "t49           49");
    assert_eq!(lines[3], "numeric-text  48.5");
    assert_eq!(lines[4], "t48           48");
    assert_eq!(lines[5], "t47           47");
    assert_eq!(lines[6], "t46           46");
    assert_eq!(lines.len(), 7);
    // Facts: the TOP row's columns, and the total over all rows (sum 0..49 + 48.5).
    assert_eq!(ev.facts["object"], json!("t49"));
    assert_eq!(ev.facts["waiters"], json!(49));
    assert_eq!(ev.facts["waiters_total"], json!(1225.0 + 48.5));
    assert_eq!(ev.facts["row_count"], json!(53));

    // Integral totals stay integers; null / non-numeric sort last, in arrival order.
    let rows = vec![
        row(json!({"object": "a", "waiters": null})),
        row(json!({"object": "b", "waiters": 2})),
        row(json!({"object": "c", "waiters": "x"})),
        row(json!({"object": "d", "waiters": 5})),
    ];
    let ev = run(
        Some(&spec(Builtin::Top, by("waiters"), Some(10))),
        &c,
        &rows,
        &cfg(),
    );
    let objs: Vec<&str> = ev.summary.lines().skip(2).map(|l| &l[..1]).collect();
    assert_eq!(objs, ["d", "b", "a", "c"]);
    assert_eq!(ev.facts["waiters_total"], json!(7));
}

#[test]
fn top_missing_by_column_is_null() {
    let c = cols(&[("a", "int4")]);
    let rows = vec![row(json!({"a": 1})), row(json!({"a": 2}))];
    let ev = run(
        Some(&spec(Builtin::Top, by("nope"), Some(1))),
        &c,
        &rows,
        &cfg(),
    );
    assert!(ev.summary.starts_with("top 1 of 2 rows by nope"));
    assert_eq!(ev.facts["a"], json!(1), "arrival order when all are null");
    assert_eq!(ev.facts["nope_total"], json!(0));
    assert!(
        ev.warnings
            .iter()
            .any(|w| w.contains("`nope` is not in the result")),
        "{:?}",
        ev.warnings
    );
    let ev = run(Some(&spec(Builtin::Top, None, Some(1))), &c, &rows, &cfg());
    assert!(ev.summary.starts_with("top 1 of 2 rows by (none)"));
    assert!(ev.warnings.iter().any(|w| w.contains("without `by`")));
}

#[test]
fn group_counts_largest_first() {
    let (c, rows) = sessions();
    let ev = run(
        Some(&spec(Builtin::Group, by("STATE"), Some(2))),
        &c,
        &rows,
        &cfg(),
    );
    let lines: Vec<&str> = ev.summary.lines().collect();
    assert_eq!(lines[0], "group by state: 3 groups over 4 rows");
    assert_eq!(lines[1], "count  state");
    assert_eq!(lines[2], "2      active");
    assert_eq!(lines[3], "1      idle");
    assert_eq!(lines[4], "... 1 more groups");
    assert_eq!(ev.facts["active"], json!(2));
    assert_eq!(ev.facts["idle in transaction"], json!(1));
    assert_eq!(ev.facts["groups"], json!(3));
    assert_eq!(ev.facts["pid"], json!(101), "first-row facts too");

    // Several columns: key joined with "/", nulls as "null".
    let sp = SummarizeSpec {
        builtin: Some(Builtin::Group),
        script: None,
        by: Some(Columns::Many(vec!["state".into(), "meta".into()])),
        limit: None,
        shows: Vec::new(),
    };
    let ev = run(Some(&sp), &c, &rows, &cfg());
    assert_eq!(ev.facts["active/null"], json!(1));
    assert_eq!(ev.facts["active/{\"a\":1}"], json!(1));
    assert_eq!(ev.facts["groups"], json!(4));
}

#[test]
fn group_caps_distinct_keys() {
    let c = cols(&[("k", "int4")]);
    let mut s = Summarizer::new(Some(&spec(Builtin::Group, by("k"), None)), &c, &cfg());
    for i in 0..(MAX_GROUPS as u64 + 5000) {
        s.push(&row(json!({ "k": i })));
    }
    assert_eq!(s.state_len(), MAX_GROUPS);
    let ev = s.finish(MAX_GROUPS as u64 + 5000, false);
    assert_eq!(ev.facts["(other)"], json!(5000));
    assert_eq!(ev.facts["groups"], json!(MAX_GROUPS));
    assert!(ev.warnings.iter().any(|w| w.contains("(other)")));
    assert!(
        ev.summary
            .lines()
            .next()
            .unwrap()
            .contains("more than 10000 groups")
    );
    assert!(ev.summary.lines().nth(2).unwrap().contains("(other)"));
}

#[test]
fn stats_text_and_facts() {
    let c = cols(&[
        ("idle", "int8"),
        ("ratio", "float8"),
        ("state", "text"),
        ("empty", "text"),
    ]);
    let rows: Vec<Row> = (1..=5)
        .map(|i| row(json!({"idle": i, "ratio": i as f64 / 4.0, "state": "x", "empty": null})))
        .chain([row(
            json!({"idle": null, "ratio": 0.5, "state": null, "empty": null}),
        )])
        .collect();
    let ev = run(Some(&spec(Builtin::Stats, None, None)), &c, &rows, &cfg());
    let lines: Vec<&str> = ev.summary.lines().collect();
    assert_eq!(lines[0], "stats over 6 rows");
    assert_eq!(lines[1], "  idle: min=1 max=5 mean=3 p50=3 p95=4.8 nulls=1");
    assert_eq!(
        lines[2],
        "  ratio: min=0.25 max=1.25 mean=0.7083 p50=0.625 p95=1.19 nulls=0"
    );
    assert_eq!(lines[3], "  state: 5 non-null, 1 null (text)");
    assert_eq!(lines[4], "  empty: all null (text)");
    assert_eq!(ev.facts["idle_min"], json!(1));
    assert_eq!(ev.facts["idle_max"], json!(5));
    assert_eq!(ev.facts["idle_mean"], json!(3.0));
    assert_eq!(ev.facts["idle_p50"], json!(3.0));
    assert!((ev.facts["idle_p95"].as_f64().unwrap() - 4.8).abs() < 1e-9);
    assert_eq!(ev.facts["idle_nulls"], json!(1));
    assert_eq!(ev.facts["ratio_min"], json!(0.25));
    assert!(!ev.facts.contains_key("state_min"));
    assert_eq!(ev.facts["idle"], json!(1), "first-row facts");
}

#[test]
fn schema_text_and_facts() {
    let (c, rows) = sessions();
    let ev = run(Some(&spec(Builtin::Schema, None, None)), &c, &rows, &cfg());
    let lines: Vec<&str> = ev.summary.lines().collect();
    assert_eq!(lines[0], "schema: 4 columns, 4 rows");
    assert_eq!(lines[1], "column  type");
    assert_eq!(lines[2], "pid     int4");
    assert_eq!(lines[5], "meta    jsonb");
    assert_eq!(ev.facts["columns"], json!(4));
    assert_eq!(ev.facts["row_count"], json!(4));
    // Columns inferred from the first row when the executor gives none.
    let ev = run(Some(&spec(Builtin::Schema, None, None)), &[], &rows, &cfg());
    assert!(ev.summary.contains("pid     integer"), "{}", ev.summary);
    assert!(ev.summary.contains("state   text"));
}

#[test]
fn p2_exact_up_to_five_and_accurate_on_uniform() {
    let mut p = P2::new(0.5);
    assert_eq!(p.value(), None);
    for x in [9.0, 1.0, 5.0, 3.0] {
        p.add(x);
    }
    assert_eq!(p.value(), Some(4.0)); // median of 1,3,5,9
    p.add(7.0);
    assert_eq!(p.value(), Some(5.0));

    // Exact (interpolated) up to EXACT values.
    let mut p = P2::new(0.95);
    for x in 0..p2::EXACT {
        p.add(x as f64);
    }
    assert!(p.is_exact());
    assert!((p.value().unwrap() - 0.95 * (p2::EXACT - 1) as f64).abs() < 1e-9);
    p.add(1e9); // markers take over
    assert!(!p.is_exact());
    assert!(p.held() == 5);

    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64 * 1000.0
    };
    let (mut p50, mut p95) = (P2::new(0.5), P2::new(0.95));
    for _ in 0..100_000 {
        let x = next();
        p50.add(x);
        p95.add(x);
    }
    let (a, b) = (p50.value().unwrap(), p95.value().unwrap());
    assert!((a - 500.0).abs() / 500.0 < 0.02, "p50 {a}");
    assert!((b - 950.0).abs() / 950.0 < 0.02, "p95 {b}");
    // Sorted arrivals (a common ORDER BY) stay accurate too.
    let (mut p50, mut p95) = (P2::new(0.5), P2::new(0.95));
    for i in 0..100_000 {
        p50.add(i as f64);
        p95.add(i as f64);
    }
    let (a, b) = (p50.value().unwrap(), p95.value().unwrap());
    assert!((a - 50_000.0).abs() / 50_000.0 < 0.02, "sorted p50 {a}");
    assert!((b - 95_000.0).abs() / 95_000.0 < 0.02, "sorted p95 {b}");
}

#[test]
fn types_can_cross_await_points() {
    fn send<T: Send>() {}
    send::<Summarizer>();
    send::<Evidence>();
    send::<EvidenceConfig>();
}

#[test]
fn state_does_not_grow_with_rows() {
    let c = cols(&[("id", "int8"), ("state", "text"), ("v", "float8")]);
    let make = |i: u64| {
        let state = ["a", "b", "c"][(i % 3) as usize];
        row(json!({"id": i, "state": state, "v": (i % 1000) as f64}))
    };
    let specs = [
        spec(Builtin::Stats, None, None),
        spec(Builtin::Top, by("v"), Some(10)),
        spec(Builtin::Group, by("state"), None),
        spec(Builtin::Rows, None, Some(10)),
    ];
    for sp in &specs {
        let mut s = Summarizer::new(Some(sp), &c, &cfg());
        for i in 0..1_000 {
            s.push(&make(i));
        }
        let early = s.state_len();
        for i in 1_000..200_000 {
            s.push(&make(i));
        }
        assert_eq!(s.state_len(), early, "{:?}", sp.builtin);
        assert!(early <= 10, "{:?}: {early}", sp.builtin);
        let ev = s.finish(200_000, true);
        assert_eq!(ev.facts["row_count"], json!(200_000));
        assert!(ev.summary.contains("(capped at 200000 rows)"));
    }
}

// ------------------------------------------------------------ redaction

const PEM: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAzSECRETKEYMATERIAL\nQWERTYsecretline2\n-----END RSA PRIVATE KEY-----";

fn planted() -> Vec<&'static str> {
    vec![
        "contact bob.smith@example.com now",
        "Authorization: Bearer abc.def.ghi",
        "key AKIAIOSFODNN7EXAMPLE here",
        "postgres://app:hunter2@db/x",
        "host=db user=app password=swordfish9 dbname=x",
        PEM,
    ]
}

const LEAKS: &[&str] = &[
    "bob.smith@example.com",
    "abc.def.ghi",
    "AKIAIOSFODNN7EXAMPLE",
    "hunter2",
    "swordfish9",
    "MIIEowIBAAKCAQEAz",
    "SECRETKEYMATERIAL",
    "QWERTYsecretline2",
];

fn assert_clean(what: &str, text: &str) {
    for leak in LEAKS {
        assert!(!text.contains(leak), "{what} leaks {leak:?}: {text}");
    }
}

fn assert_evidence_clean(ev: &Evidence) {
    assert_clean("summary", &ev.summary);
    assert_clean("facts", &serde_json::to_string(&ev.facts).unwrap());
    assert_clean("warnings", &ev.warnings.join("\n"));
    assert_clean("stderr", ev.script_stderr.as_deref().unwrap_or(""));
}

#[test]
fn all_rules_compile() {
    let (compiled, total) = redact::rule_count();
    assert_eq!(compiled, total);
}

#[test]
fn redact_text_masks_and_is_idempotent() {
    for s in planted() {
        let r = redact_text(s);
        assert_clean("redact_text", &r);
        assert_eq!(redact_text(&r), r, "not idempotent on {s:?}");
    }
    assert_eq!(
        redact_text("postgres://app:hunter2@db/x"),
        "postgres://app:***@db/x"
    );
    assert_eq!(
        redact_text("password=hunter2 user=x"),
        "password=*** user=x"
    );
    assert_eq!(
        redact_text("Authorization: Bearer abc.def.ghi"),
        "Authorization: ***"
    );
    assert_eq!(
        redact_text("token Bearer abc.def.ghi!"),
        "token Bearer ***!"
    );
    assert_eq!(redact_text(PEM), "[REDACTED-PRIVATE-KEY]");
    // A block cut short (no END line) is masked to the end.
    assert_eq!(
        redact_text("x -----BEGIN PRIVATE KEY-----\nMIIabc"),
        "x [REDACTED-PRIVATE-KEY]"
    );
    for s in [
        r#"{"password": "p w", "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}"#,
        "PGPASSWORD=hunter2 ghp_abcdefghijklmnopqrstuvwxyz0123 ASIAIOSFODNN7EXAMPLE",
        "mysql://root:p%40ss@h:3306/db?sslpassword=xyz x@y.io",
    ] {
        let r = redact_text(s);
        for leak in [
            "p w",
            "wJalrXUtnFEMI",
            "hunter2",
            "ghp_abc",
            "ASIAIOSFODNN7EXAMPLE",
            "p%40ss",
            "xyz",
            "x@y.io",
        ] {
            assert!(!r.contains(leak), "{leak} in {r}");
        }
        assert_eq!(redact_text(&r), r);
    }
    // Ordinary text survives.
    let plain = "active  idle in transaction  select * from t where id = $1; 42 tokens: ok";
    assert_eq!(redact_text(plain), plain);
}

#[test]
fn planted_secrets_never_reach_summary_or_facts() {
    let c = cols(&[("note", "text"), ("n", "int4")]);
    let rows: Vec<Row> = planted()
        .iter()
        .enumerate()
        .map(|(i, s)| row(json!({"note": s, "n": i})))
        .collect();
    let specs = [
        None,
        Some(spec(Builtin::Top, by("n"), None)),
        Some(spec(Builtin::Group, by("note"), None)),
        Some(spec(Builtin::Stats, None, None)),
        Some(spec(Builtin::Schema, None, None)),
    ];
    for sp in &specs {
        // Every row first, so each secret is "the first row" once.
        for start in 0..rows.len() {
            let mut rotated = rows.clone();
            rotated.rotate_left(start);
            let ev = run(sp.as_ref(), &c, &rotated, &cfg());
            assert_evidence_clean(&ev);
        }
    }
    let ev = run(
        Some(&spec(Builtin::Group, by("note"), None)),
        &c,
        &rows,
        &cfg(),
    );
    assert!(
        ev.summary.contains("postgres://app:***@db/x"),
        "{}",
        ev.summary
    );
    assert!(ev.facts.contains_key("[REDACTED-PRIVATE-KEY]"));
}

#[test]
fn pseudonyms_stable_distinct_and_groupable() {
    let c = cols(&[("UseName", "text"), ("n", "int4")]);
    let mut config = cfg();
    config.redact_columns = vec!["usename".into()];
    let rows = vec![
        row(json!({"UseName": "alice", "n": 1})),
        row(json!({"UseName": "bob", "n": 2})),
        row(json!({"UseName": "alice", "n": 3})),
        row(json!({"UseName": null, "n": 4})),
    ];
    let ev = run(None, &c, &rows, &config);
    assert!(
        !ev.summary.contains("alice") && !ev.summary.contains("bob"),
        "{}",
        ev.summary
    );
    let tok = |line: usize| {
        ev.summary
            .lines()
            .nth(line)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let (a1, b, a2) = (tok(2), tok(3), tok(4));
    assert!(
        a1.starts_with("UseName_") && a1.len() == "UseName_".len() + 8,
        "{a1}"
    );
    assert!(
        a1["UseName_".len()..]
            .chars()
            .all(|c| c.is_ascii_hexdigit())
    );
    assert_eq!(a1, a2);
    assert_ne!(a1, b);
    assert_eq!(tok(5), "null", "null stays null");
    assert_eq!(ev.facts["UseName"], json!(a1));

    // Grouping still works on pseudonyms; same key => same token across summarizers.
    let ev = run(
        Some(&spec(Builtin::Group, by("usename"), None)),
        &c,
        &rows,
        &config,
    );
    assert_eq!(ev.facts[a1.as_str()], json!(2));
    assert_eq!(ev.facts["groups"], json!(3));

    // Another key => other tokens.
    let mut other = config.clone();
    other.pseudonym_key = [8u8; 32];
    let ev = run(None, &c, &rows, &other);
    assert!(!ev.summary.contains(&a1));
}

#[test]
fn budget_truncates_at_line_boundary() {
    let c = cols(&[("id", "int4"), ("name", "text")]);
    let rows: Vec<Row> = (0..100)
        .map(|i| row(json!({"id": i, "name": format!("name number {i}")})))
        .collect();
    let mut config = cfg();
    config.budget_tokens = 60;
    let ev = run(
        Some(&spec(Builtin::Rows, None, Some(100))),
        &c,
        &rows,
        &config,
    );
    assert!(ev.truncated);
    assert!(ev.tokens <= 60, "{}", ev.tokens);
    assert_eq!(ev.tokens, estimate_tokens(&ev.summary));
    let lines: Vec<&str> = ev.summary.lines().collect();
    assert_eq!(lines[0], "rows: first 100 of 100 rows");
    assert_eq!(
        *lines.last().unwrap(),
        "... summary truncated to 60 tokens (budget)"
    );
    assert!(lines[2].starts_with("0  "), "whole lines only: {lines:?}");
    assert!(lines.len() > 3);
    // Fits => untouched.
    config.budget_tokens = 10_000;
    let ev = run(
        Some(&spec(Builtin::Rows, None, Some(100))),
        &c,
        &rows,
        &config,
    );
    assert!(!ev.truncated);
    assert!(ev.summary.ends_with("99  name number 99"));
    // Tiny budget: never panics, says so.
    config.budget_tokens = 0;
    let ev = run(None, &c, &rows, &config);
    assert!(ev.truncated);
    assert_eq!(ev.summary, "... summary truncated to 0 tokens (budget)");
}

#[test]
fn odd_input_never_panics() {
    let huge = "y".repeat(2_000_000);
    let mut nested = json!(1);
    for _ in 0..100 {
        nested = json!([nested]);
    }
    let rows = vec![
        row(json!({"": huge, "ü": u64::MAX, "n": "NaN", "arr": nested.clone(), "f": -0.0})),
        row(json!({"": null, "ü": i64::MIN, "n": "inf", "arr": {"k": huge}, "f": 1e308})),
        row(json!({"x": "1e999", "ü": "  12  "})),
        row(json!({})),
    ];
    let specs = [
        None,
        Some(spec(Builtin::Top, by("ü"), Some(0))),
        Some(spec(Builtin::Top, by("missing"), Some(u64::MAX))),
        Some(spec(Builtin::Group, by("arr"), None)),
        Some(spec(Builtin::Group, None, None)),
        Some(spec(Builtin::Stats, None, None)),
        Some(spec(Builtin::Schema, None, None)),
        Some(SummarizeSpec {
            builtin: None,
            script: None,
            by: None,
            limit: None,
            shows: Vec::new(),
        }),
    ];
    for sp in &specs {
        for columns in [vec![], cols(&[("", "text"), ("ü", "numeric")])] {
            let mut s = Summarizer::new(sp.as_ref(), &columns, &cfg());
            for r in &rows {
                s.push(r);
            }
            let ev = s.finish(0, false); // fewer than pushed: pushed wins
            assert_eq!(ev.facts["row_count"], json!(4));
            assert!(ev.tokens <= 2000);
            for v in ev.facts.values() {
                if let Value::String(s) = v {
                    assert!(s.chars().count() <= FACT_STRING_MAX);
                }
            }
        }
    }
    // Empty input.
    let ev =
        Summarizer::new(Some(&spec(Builtin::Top, by("x"), None)), &[], &cfg()).finish(0, false);
    assert_eq!(ev.facts["row_count"], json!(0));
    assert!(ev.summary.starts_with("top 0 of 0 rows by x"));
}

// ------------------------------------------------------------ scripts

fn script_env(timeout_ms: u64) -> (tempfile::TempDir, EvidenceConfig) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("scripts")).unwrap();
    let config = EvidenceConfig {
        script_root: dir.path().to_path_buf(),
        script_cwd: dir.path().to_path_buf(),
        script_timeout: Duration::from_millis(timeout_ms),
        ..cfg()
    };
    (dir, config)
}

fn write_script(dir: &Path, name: &str, body: &str) -> SummarizeSpec {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("scripts").join(name);
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    SummarizeSpec {
        builtin: None,
        script: Some(format!("scripts/{name}")),
        by: None,
        limit: None,
        shows: Vec::new(),
    }
}

fn assert_fallback(ev: &Evidence, name: &str, reason: &str) {
    let why = format!("script scripts/{name} {reason}");
    assert_eq!(ev.summarizer, format!("schema (fallback: {why})"));
    assert!(
        ev.warnings.contains(&format!("{why}; fell back to schema")),
        "{:?}",
        ev.warnings
    );
    let first = ev.summary.lines().next().unwrap();
    assert_eq!(first, format!("warning: {why}; showing the schema instead"));
    assert!(
        ev.summary.lines().nth(1).unwrap().starts_with("schema: "),
        "{}",
        ev.summary
    );
    assert!(ev.facts.contains_key("columns"));
}

#[test]
fn script_success_with_facts_and_redaction() {
    let (dir, mut config) = script_env(10_000);
    config.redact_columns = vec!["usename".into()];
    let body = format!(
        r#"#!/usr/bin/env python3
import json, sys
n = 0; total = 0; first = None
for line in sys.stdin:
    row = json.loads(line); n += 1; total += row["v"]
    first = first or row["usename"]
print("summed %d rows; first user %s" % (n, first))
print("mail bob.smith@example.com or postgres://app:hunter2@db/x")
sys.stderr.write({stderr:?})
print(json.dumps({{"n": n, "total": total, "contact": "bob.smith@example.com", "row_count": -1}}))
"#,
        stderr = planted().join("\n")
    );
    let sp = write_script(dir.path(), "sum.py", &body);
    let c = cols(&[("usename", "text"), ("v", "int4")]);
    let rows: Vec<Row> = (0..1000)
        .map(|i| row(json!({"usename": "alice", "v": i})))
        .collect();
    let ev = run(Some(&sp), &c, &rows, &config);
    assert_eq!(ev.summarizer, "script:scripts/sum.py", "{ev:?}");
    assert!(ev.warnings.is_empty(), "{:?}", ev.warnings);
    let lines: Vec<&str> = ev.summary.lines().collect();
    assert_eq!(lines[0], "script scripts/sum.py: 1000 rows");
    assert!(
        lines[1].starts_with("summed 1000 rows; first user usename_"),
        "{}",
        lines[1]
    );
    assert!(!ev.summary.contains("alice"));
    assert!(
        !ev.summary.contains("\"n\""),
        "facts line is not in the summary"
    );
    assert_eq!(ev.facts["n"], json!(1000));
    assert_eq!(ev.facts["total"], json!(499_500));
    assert_eq!(
        ev.facts["row_count"],
        json!(-1),
        "script facts are laid over row_count"
    );
    assert_eq!(ev.facts["capped"], json!(false));
    assert_eq!(ev.facts["contact"], json!("[REDACTED-EMAIL]"));
    let stderr = ev.script_stderr.clone().unwrap();
    assert!(stderr.contains("[REDACTED-PRIVATE-KEY]"), "{stderr}");
    assert_evidence_clean(&ev);
}

#[test]
fn script_crash_falls_back_without_stdout() {
    let (dir, config) = script_env(10_000);
    let sp = write_script(
        dir.path(),
        "crash.sh",
        "#!/bin/sh\necho partial-output-marker\necho oops >&2\nexit 3\n",
    );
    let (c, rows) = sessions();
    let ev = run(Some(&sp), &c, &rows, &config);
    assert_fallback(&ev, "crash.sh", "failed (exit 3)");
    assert!(!ev.summary.contains("partial-output-marker"));
    assert_eq!(ev.script_stderr.as_deref(), Some("oops\n"));
    assert_eq!(ev.facts["row_count"], json!(4));
    assert_eq!(ev.facts["columns"], json!(4));
}

fn sleeping(arg: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .is_ok_and(|c| c == format!("sleep\0{arg}\0").as_bytes())
    })
}

#[test]
fn script_hang_is_killed_at_deadline_without_blocking_push() {
    let (dir, config) = script_env(1_000);
    // Does not read stdin; its child `sleep` holds stdout open.
    let sp = write_script(
        dir.path(),
        "hang.sh",
        "#!/bin/sh\nsleep 59.125\necho late\n",
    );
    let c = cols(&[("payload", "text")]);
    let start = Instant::now();
    let mut s = Summarizer::new(Some(&sp), &c, &config);
    let line = "z".repeat(1000);
    for _ in 0..50_000 {
        s.push(&row(json!({ "payload": line })));
    }
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "push blocked {:?}",
        start.elapsed()
    );
    let ev = s.finish(50_000, true);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert_fallback(&ev, "hang.sh", "timed out after 1s");
    assert!(ev.summary.contains("(capped at 50000 rows)"));
    // The whole process group is gone.
    let gone = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        !sleeping("59.125")
    });
    assert!(gone, "sleep survived the kill");
}

#[test]
fn script_flood_is_capped() {
    let (dir, config) = script_env(10_000);
    let sp = write_script(
        dir.path(),
        "flood.py",
        "#!/usr/bin/env python3\nimport sys\nsys.stdout.write('x' * 10_000_000)\n",
    );
    let (c, rows) = sessions();
    let start = Instant::now();
    let ev = run(Some(&sp), &c, &rows, &config);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_fallback(&ev, "flood.py", "wrote more than 64 KiB of output");
    assert!(!ev.summary.contains("xxxx"));
}

#[test]
fn script_echoing_rows_then_failing_does_not_leak() {
    let (dir, config) = script_env(10_000);
    let sp = write_script(dir.path(), "echo.sh", "#!/bin/sh\ncat\nexit 1\n");
    let c = cols(&[("secret_col", "text")]);
    let rows: Vec<Row> = (0..100)
        .map(|i| row(json!({ "secret_col": format!("RAWROW-{i}") })))
        .collect();
    let mut s = Summarizer::new(Some(&sp), &c, &config);
    for r in &rows {
        s.push(r);
    }
    let ev = s.finish(100, false);
    assert_fallback(&ev, "echo.sh", "failed (exit 1)");
    let all = format!("{ev:?}");
    assert!(!all.contains("RAWROW-1"), "{all}");
    assert!(!all.contains("RAWROW-5"));
}

#[test]
fn script_sees_an_empty_environment() {
    // SAFETY: test-only; std serializes its own env access, and no other test reads this variable.
    unsafe { std::env::set_var("WARD_FAKE_SECRET_TOKEN", "parent-secret-value-123") };
    let (dir, config) = script_env(10_000);
    let sp = write_script(dir.path(), "env.sh", "#!/bin/sh\nenv\n");
    let ev = run(Some(&sp), &[], &[], &config);
    assert_eq!(ev.summarizer, "script:scripts/env.sh");
    assert!(ev.summary.contains("PATH=/usr/bin:/bin"), "{}", ev.summary);
    assert!(ev.summary.contains("LANG=C.UTF-8"));
    assert!(!ev.summary.contains("WARD_FAKE_SECRET_TOKEN"));
    assert!(!ev.summary.contains("parent-secret-value-123"));
    assert!(!ev.summary.contains("CARGO"), "{}", ev.summary);
    assert!(std::env::var("CARGO_MANIFEST_DIR").is_ok() || std::env::var("HOME").is_ok());
}

#[test]
fn script_other_failures() {
    let (dir, config) = script_env(5_000);
    let (c, rows) = sessions();
    // Invalid UTF-8 on stdout.
    let sp = write_script(
        dir.path(),
        "bin.sh",
        "#!/bin/sh\nprintf 'ok\\377\\376\\n'\n",
    );
    assert_fallback(
        &run(Some(&sp), &c, &rows, &config),
        "bin.sh",
        "wrote invalid UTF-8",
    );
    // Killed by a signal.
    let sp = write_script(dir.path(), "sig.sh", "#!/bin/sh\nkill -9 $$\n");
    assert_fallback(
        &run(Some(&sp), &c, &rows, &config),
        "sig.sh",
        "was killed by signal 9",
    );
    // Missing script / not executable / escaping the root.
    let sp = SummarizeSpec {
        builtin: None,
        script: Some("scripts/none.py".into()),
        by: None,
        limit: None,
        shows: Vec::new(),
    };
    let ev = run(Some(&sp), &c, &rows, &config);
    assert!(
        ev.summarizer
            .starts_with("schema (fallback: script scripts/none.py could not be started"),
        "{}",
        ev.summarizer
    );
    let sp = SummarizeSpec {
        builtin: None,
        script: Some("../../bin/sh".into()),
        by: None,
        limit: None,
        shows: Vec::new(),
    };
    let ev = run(Some(&sp), &c, &rows, &config);
    assert_eq!(
        ev.summarizer,
        "schema (fallback: script ../../bin/sh is not a relative path inside the runbooks directory)"
    );
    assert!(
        ev.summary
            .starts_with("warning: script ../../bin/sh is not a relative path")
    );
}

#[test]
fn script_that_stops_reading_early_succeeds_quickly() {
    let (dir, config) = script_env(5_000);
    let sp = write_script(
        dir.path(),
        "head.sh",
        "#!/bin/sh\nhead -n 1 >/dev/null\necho 'first only'\necho '{\"ok\": true}'\n",
    );
    let c = cols(&[("p", "text")]);
    let start = Instant::now();
    let mut s = Summarizer::new(Some(&sp), &c, &config);
    let payload = "q".repeat(500);
    for _ in 0..20_000 {
        s.push(&row(json!({ "p": payload })));
    }
    let ev = s.finish(20_000, false);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(ev.summarizer, "script:scripts/head.sh", "{ev:?}");
    assert_eq!(ev.facts["ok"], json!(true));
    assert!(ev.summary.ends_with("first only"));
}

fn real_runbooks() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../runbooks")
}

#[test]
fn real_script_blocking_tree() {
    let (dir, mut config) = script_env(10_000);
    config.script_root = real_runbooks();
    config.redact_columns = vec!["usename".into()];
    let sp = SummarizeSpec {
        builtin: None,
        script: Some("scripts/blocking_tree.py".into()),
        by: None,
        limit: None,
        shows: Vec::new(),
    };
    let c = cols(&[
        ("pid", "int4"),
        ("blocked_by", "_int4"),
        ("usename", "name"),
        ("application_name", "text"),
        ("state", "text"),
        ("wait_seconds", "int8"),
        ("xact_seconds", "int8"),
        ("query", "text"),
    ]);
    let rows = vec![
        row(
            json!({"pid": 100, "blocked_by": [], "usename": "alice", "application_name": "billing", "state": "idle in transaction", "wait_seconds": null, "xact_seconds": 900, "query": "update accounts set x = 1"}),
        ),
        row(
            json!({"pid": 101, "blocked_by": [100], "usename": "bob", "application_name": "api", "state": "active", "wait_seconds": 120, "xact_seconds": 121, "query": "update accounts set y = 2"}),
        ),
        row(
            json!({"pid": 102, "blocked_by": [101], "usename": "carol", "application_name": "api", "state": "active", "wait_seconds": 60, "xact_seconds": 61, "query": "select * from accounts for update"}),
        ),
        row(
            json!({"pid": 103, "blocked_by": "{100}", "usename": "dave", "application_name": "cron", "state": "active", "wait_seconds": 30, "xact_seconds": 31, "query": "alter table accounts add column z int"}),
        ),
    ];
    let ev = run(Some(&sp), &c, &rows, &config);
    drop(dir);
    assert_eq!(ev.summarizer, "script:scripts/blocking_tree.py", "{ev:?}");
    assert_eq!(ev.facts["blocked"], json!(3));
    assert_eq!(ev.facts["root_blockers"], json!(1));
    assert_eq!(ev.facts["root_pid"], json!(100));
    assert_eq!(ev.facts["root_blocked_count"], json!(3));
    assert_eq!(ev.facts["root_state"], json!("idle in transaction"));
    assert_eq!(ev.facts["root_xact_seconds"], json!(900));
    assert_eq!(ev.facts["max_wait_seconds"], json!(120));
    assert_eq!(ev.facts["sessions"], json!(4));
    assert_eq!(ev.facts["row_count"], json!(4));
    assert!(
        ev.summary.contains("root pid 100 user=usename_"),
        "{}",
        ev.summary
    );
    assert!(!ev.summary.contains("alice"));
}

#[test]
fn real_script_pg_stat_statements_digest() {
    let (dir, mut config) = script_env(10_000);
    config.script_root = real_runbooks();
    let sp = SummarizeSpec {
        builtin: None,
        script: Some("scripts/pg_stat_statements_digest.py".into()),
        by: None,
        limit: None,
        shows: Vec::new(),
    };
    let stmt = |id: i64, total: f64, calls: i64, temp: i64, q: &str| {
        row(
            json!({"queryid": id, "username": "app", "calls": calls, "total_exec_ms": total,
                   "mean_exec_ms": total / calls as f64, "rows": calls * 2, "shared_blks_hit": 900,
                   "shared_blks_read": 100, "temp_blks_written": temp, "all_total_ms": 10000.0, "query": q}),
        )
    };
    let rows = vec![
        stmt(11, 1000.0, 10, 0, "select 1"),
        stmt(
            -42,
            6000.0,
            3,
            5,
            "select * from big where email = 'bob.smith@example.com'",
        ),
        stmt(7, 2000.0, 100, 0, "update t set v = $1"),
    ];
    let ev = run(Some(&sp), &[], &rows, &config);
    drop(dir);
    assert_eq!(
        ev.summarizer, "script:scripts/pg_stat_statements_digest.py",
        "{ev:?}"
    );
    assert_eq!(ev.facts["statements"], json!(3));
    assert_eq!(ev.facts["top_queryid"], json!(-42));
    assert_eq!(ev.facts["top_total_ms"], json!(6000.0));
    assert_eq!(ev.facts["top_share_pct"], json!(60.0));
    assert_eq!(ev.facts["top_calls"], json!(3));
    assert_eq!(ev.facts["total_ms"], json!(10000.0));
    assert_eq!(ev.facts["temp_heavy"], json!(1));
    assert!(
        ev.summary.contains("3 statement(s) shown"),
        "{}",
        ev.summary
    );
    assert_evidence_clean(&ev);
}

fn advice_rows(indexes: serde_json::Value, query: &str) -> Vec<Row> {
    let statement = json!({
        "kind": "statement", "queryid": -42, "query": query, "calls": 1200,
        "total_exec_ms": 9000.5, "mean_exec_ms": 7.5, "rows": 1200, "share_pct": 91.2,
        "table_name": null, "indexes": null, "columns": null
    });
    let other = json!({
        "kind": "statement", "queryid": 7, "query": "SELECT 1", "calls": 3,
        "total_exec_ms": 1.0, "mean_exec_ms": 0.3, "rows": 3, "share_pct": 0.1
    });
    let table = json!({
        "kind": "table", "table_name": "public.orders", "n_live_tup": 200000,
        "window_seq_scan": 40, "window_seq_tup_read": 8000000, "seq_scan": 900,
        "seq_tup_read": 180000000, "table_size": "13 MB",
        "indexes": indexes,
        "columns": [
            {"name": "id", "n_distinct": -1.0, "correlation": 1.0, "null_frac": 0.0},
            {"name": "customer_id", "n_distinct": 2000.0, "correlation": 0.01, "null_frac": 0.0},
            {"name": "created_at", "n_distinct": -0.9, "correlation": 0.99, "null_frac": 0.0}
        ]
    });
    [statement, other, table]
        .into_iter()
        .map(|v| match v {
            serde_json::Value::Object(m) => m,
            _ => unreachable!(),
        })
        .collect()
}

#[test]
fn index_advice_proposes_the_missing_index_with_its_evidence_as_facts() {
    let rows = advice_rows(
        json!([{"name": "orders_pkey", "columns": ["id"], "predicate": null, "valid": true,
                "method": "btree", "definition": "CREATE UNIQUE INDEX orders_pkey ON public.orders USING btree (id)"}]),
        "SELECT count(*) FROM public.orders WHERE customer_id = $1",
    );
    let ev = run(
        Some(&spec(Builtin::IndexAdvice, None, None)),
        &[],
        &rows,
        &cfg(),
    );
    assert_eq!(ev.summarizer, "index_advice");
    let f = &ev.facts;
    assert_eq!(f["advice_count"], json!(1));
    assert_eq!(f["table"], json!("public.orders"));
    assert_eq!(f["columns"], json!("customer_id"));
    assert_eq!(f["index_name"], json!("orders_customer_id_idx"));
    assert_eq!(
        f["create_sql"],
        json!("CREATE INDEX CONCURRENTLY orders_customer_id_idx ON public.orders (customer_id)")
    );
    assert_eq!(
        f["query"],
        json!("SELECT count(*) FROM public.orders WHERE customer_id = $1")
    );
    assert_eq!(f["calls"], json!(1200));
    assert_eq!(f["mean_exec_ms"], json!(7.5));
    assert_eq!(f["window_seq_tup_read"], json!(8000000));
    assert_eq!(f["n_distinct"], json!(2000));
    assert_eq!(f["correlation"], json!(0.01));
    assert_eq!(f["statements"], json!(2));
    assert!(!f.contains_key("covered_by"), "{f:?}");
    assert!(
        ev.summary
            .contains("advise CREATE INDEX CONCURRENTLY orders_customer_id_idx"),
        "{}",
        ev.summary
    );
    assert!(
        ev.summary.contains("8000000 rows during the window"),
        "{}",
        ev.summary
    );
}

#[test]
fn index_advice_names_the_existing_index_that_already_serves_the_statement() {
    let rows = advice_rows(
        json!([{"name": "orders_customer_id_created_at_idx", "columns": ["customer_id", "created_at"],
                "predicate": null, "valid": true, "method": "btree",
                "definition": "CREATE INDEX orders_customer_id_created_at_idx ON public.orders USING btree (customer_id, created_at)"}]),
        "SELECT * FROM orders WHERE customer_id = $1",
    );
    let ev = run(
        Some(&spec(Builtin::IndexAdvice, None, None)),
        &[],
        &rows,
        &cfg(),
    );
    let f = &ev.facts;
    assert_eq!(f["advice_count"], json!(0));
    assert_eq!(f["covered_by"], json!("orders_customer_id_created_at_idx"));
    assert_eq!(f["covered_table"], json!("public.orders"));
    assert!(!f.contains_key("index_name"), "{f:?}");
}

#[test]
fn index_advice_gives_no_plain_column_advice_for_an_expression() {
    let rows = advice_rows(
        json!([]),
        "SELECT * FROM public.orders WHERE lower(email) = $1",
    );
    let ev = run(
        Some(&spec(Builtin::IndexAdvice, None, None)),
        &[],
        &rows,
        &cfg(),
    );
    let f = &ev.facts;
    assert_eq!(f["advice_count"], json!(0));
    assert_eq!(f["no_advice_table"], json!("public.orders"));
    assert!(
        f["no_advice_reason"]
            .as_str()
            .is_some_and(|r| r.contains("lower(email)")),
        "{f:?}"
    );
}

#[test]
fn index_advice_ranks_statements_by_window_time_and_reports_the_watched_one() {
    let mut rows = advice_rows(
        json!([]),
        "SELECT * FROM public.orders WHERE customer_id = $1",
    );
    // The watched statement arrives first and the small one before the big one.
    rows.reverse();
    let watched = json!({
        "kind": "watched", "queryid": -42, "query": "SELECT * FROM public.orders WHERE customer_id = $1",
        "calls": 1300, "total_exec_ms": 65.0, "mean_exec_ms": 0.05, "rows": 1300
    });
    if let serde_json::Value::Object(m) = watched {
        rows.insert(0, m);
    }
    let ev = run(
        Some(&spec(Builtin::IndexAdvice, None, None)),
        &[],
        &rows,
        &cfg(),
    );
    let f = &ev.facts;
    assert_eq!(f["top_queryid"], json!(-42));
    assert_eq!(f["top_mean_ms"], json!(7.5));
    assert_eq!(f["watched_queryid"], json!(-42));
    assert_eq!(f["watched_calls"], json!(1300));
    assert_eq!(f["watched_mean_ms"], json!(0.05));
    assert_eq!(f["statements"], json!(2));
    assert_eq!(f["index_name"], json!("orders_customer_id_idx"));
}
