use std::path::Path;

use super::*;
use crate::sql::{AnalyzerOptions, LockMode};

const GOOD: &str = r#"id: demo-runbook
title: Demo
version: 1
engines: [postgres]
triggers: [DemoAlert]
inputs:
  min_idle_seconds: { type: integer, default: 600, min: 60, max: 86400 }
  table: { type: identifier, default: orders }
steps:
  - id: headline
    kind: diagnostic
    sql: |
      SELECT count(*) FILTER (WHERE state = 'idle') AS idle
      FROM pg_stat_activity
    summarize: { builtin: rows }
  - id: terminate_idle
    kind: remediation
    requires: [headline]
    when: "facts.headline.idle > 20"
    sql: |
      SELECT pg_terminate_backend(pid) FROM pg_stat_activity
      WHERE state = 'idle' AND now() - state_change > make_interval(secs => :min_idle_seconds)
    rollback: none
    verify:
      sql: SELECT count(*) AS idle FROM pg_stat_activity WHERE state = 'idle'
      expect: "rows[0].idle < 5"
  - id: vacuum_table
    kind: remediation
    sql: VACUUM (ANALYZE) :table
    rollback: none
conclusions:
  - when: "facts.headline.idle > 20"
    text: "{idle} idle sessions"
"#;

fn load(text: &str) -> Result<Contract, Vec<Problem>> {
    let doc = Doc::new("runbooks/demo.yaml", text);
    let analyzer = Analyzer::new(AnalyzerOptions {
        lock_timeout_managed: true,
        ..Default::default()
    });
    load_doc(&doc, Path::new("runbooks"), &analyzer)
}

/// Loads `text`, expecting exactly one problem; returns "line:col: message".
fn one_problem(text: &str) -> String {
    let problems = load(text).expect_err("should not load");
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let p = &problems[0];
    format!("{}:{}: {}", p.location.line, p.location.col, p.message)
}

#[test]
fn a_good_runbook_loads_with_analyzed_steps() {
    let c = load(GOOD).expect("loads");
    assert_eq!(c.id(), "demo-runbook");
    let headline = c.step("headline").expect("step");
    assert_eq!(headline.effective_risk(Engine::Postgres), Risk::ReadOnly);
    let term = c.step("terminate_idle").expect("step");
    assert_eq!(term.effective_risk(Engine::Postgres), Risk::Write);
    assert_eq!(term.rollback, Some(Rollback::Irreversible));
    let (_, rewritten, _) = &term.sql.per_engine[0];
    assert!(
        rewritten.sql.contains("make_interval(secs => $1)"),
        "{}",
        rewritten.sql
    );
    assert_eq!(rewritten.binds, vec!["min_idle_seconds"]);
    let vac = c.step("vacuum_table").expect("step");
    let (_, rewritten, analysis) = &vac.sql.per_engine[0];
    assert_eq!(rewritten.sql, "VACUUM (ANALYZE) \"orders\"");
    assert_eq!(analysis.lock(), Some(LockMode::ShareUpdateExclusive));
    assert_eq!(c.conclusions.len(), 1);
}

#[test]
fn unknown_field_names_the_nearest_valid_one_with_its_place() {
    let text = GOOD.replace(
        "    summarize: { builtin: rows }",
        "    sumarize: { builtin: rows }",
    );
    let p = one_problem(&text);
    assert!(p.starts_with("15:5: "), "{p}");
    assert!(
        p.contains("unknown field `sumarize` (did you mean `summarize`?)"),
        "{p}"
    );
}

#[test]
fn requires_that_names_no_step_is_reported_at_the_name() {
    let text = GOOD.replace("requires: [headline]", "requires: [headlin]");
    let problems = load(&text).expect_err("fails");
    let p = problems
        .iter()
        .find(|p| p.message.contains("requires"))
        .expect("requires problem");
    assert_eq!((p.location.line, p.location.col), (18, 16));
    assert!(
        p.message.contains("did you mean `headline`?"),
        "{}",
        p.message
    );
    // The `when` that uses facts.headline is now also unjustified.
    assert!(
        problems
            .iter()
            .any(|p| p.message.contains("does not list `headline` in `requires`"))
    );
}

#[test]
fn remediation_without_rollback_is_reported_at_its_kind() {
    let text = GOOD.replace(
        "    sql: VACUUM (ANALYZE) :table\n    rollback: none\n",
        "    sql: VACUUM (ANALYZE) :table\n",
    );
    let p = one_problem(&text);
    assert!(p.starts_with("28:5: "), "{p}");
    assert!(
        p.contains("remediation step `vacuum_table` has no `rollback`"),
        "{p}"
    );
}

#[test]
fn sql_that_does_not_parse_is_reported_at_the_bad_token() {
    let text = GOOD.replace(
        "      FROM pg_stat_activity\n    summarize",
        "      FROMM pg_stat_activity\n    summarize",
    );
    let p = one_problem(&text);
    assert!(p.starts_with("14:7: "), "{p}");
    assert!(
        p.contains("SQL does not parse as postgres: syntax error at or near \"FROMM\""),
        "{p}"
    );
}

#[test]
fn duplicate_step_ids_are_reported() {
    let text = GOOD.replace("  - id: vacuum_table", "  - id: headline");
    let problems = load(&text).expect_err("fails");
    let p = problems
        .iter()
        .find(|p| p.message.contains("duplicate step id"))
        .expect("dup");
    assert_eq!((p.location.line, p.location.col), (27, 9));
}

#[test]
fn an_input_type_that_does_not_exist_is_reported_with_the_valid_ones() {
    let text = GOOD.replace("{ type: integer, default: 600", "{ type: int, default: 600");
    let p = one_problem(&text);
    assert!(p.starts_with("7:"), "{p}");
    assert!(p.contains("unknown value `int`"), "{p}");
    assert!(p.contains("integer"), "{p}");
}

#[test]
fn a_when_that_does_not_compile_is_reported_inside_the_expression() {
    let text = GOOD.replace(
        "when: \"facts.headline.idle > 20\"\n    sql",
        "when: \"facts.headline.idle >\"\n    sql",
    );
    let p = one_problem(&text);
    assert!(p.starts_with("19:"), "{p}");
    assert!(p.contains("does not compile as CEL"), "{p}");
    let col: usize = p
        .split(':')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("col");
    assert!(col > 11, "points inside the expression: {p}");
}

#[test]
fn a_diagnostic_that_writes_is_refused() {
    let text = GOOD.replace(
        "      SELECT count(*) FILTER (WHERE state = 'idle') AS idle\n",
        "      SELECT nextval('s') AS idle\n",
    );
    let p = one_problem(&text);
    assert!(p.starts_with("13:7: "), "{p}");
    assert!(
        p.contains("must be read-only, but its SQL is write (calls nextval())"),
        "{p}"
    );
}

#[test]
fn an_undeclared_input_in_sql_is_reported_at_the_parameter() {
    let text = GOOD.replace(
        "make_interval(secs => :min_idle_seconds)",
        "make_interval(secs => :min_idle_secs)",
    );
    let p = one_problem(&text);
    assert!(p.starts_with("22:77: "), "{p}");
    assert!(
        p.contains("`:min_idle_secs` is not a declared input (did you mean `:min_idle_seconds`?)"),
        "{p}"
    );
}

#[test]
fn a_script_that_does_not_exist_is_reported() {
    let text = GOOD.replace(
        "    summarize: { builtin: rows }",
        "    summarize: { script: scripts/nope.sh }",
    );
    let p = one_problem(&text);
    assert!(p.starts_with("15:26: "), "{p}");
    assert!(p.contains("script `scripts/nope.sh` does not exist"), "{p}");
}

#[test]
fn shows_on_a_builtin_summary_is_reported() {
    let text = GOOD.replace(
        "    summarize: { builtin: rows }",
        "    summarize: { builtin: rows, shows: [idle] }",
    );
    let p = one_problem(&text);
    assert!(
        p.ends_with(
            "`shows` names facts a script's summary draws; a builtin summary's facts are matched by ward itself"
        ),
        "{p}"
    );
}

#[test]
fn a_script_that_is_not_executable_is_reported() {
    let dir = std::env::temp_dir().join(format!("ward-contract-script-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("scripts")).expect("mkdir");
    std::fs::write(dir.join("scripts/sum.sh"), "#!/bin/sh\ncat\n").expect("write");
    let text = GOOD.replace(
        "    summarize: { builtin: rows }",
        "    summarize: { script: scripts/sum.sh }",
    );
    let doc = Doc::new(dir.join("demo.yaml"), text);
    let problems = load_doc(&doc, &dir, &Analyzer::default()).expect_err("fails");
    assert!(
        problems
            .iter()
            .any(|p| p.message.contains("is not executable; run `chmod +x")),
        "{problems:#?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn rollback_naming_no_step_and_facts_naming_no_step_are_reported() {
    let text = GOOD.replace(
        "    sql: VACUUM (ANALYZE) :table\n    rollback: none",
        "    sql: VACUUM (ANALYZE) :table\n    rollback: undo_vacuum",
    );
    let p = one_problem(&text);
    assert!(
        p.contains("`rollback: undo_vacuum` names no other step"),
        "{p}"
    );
    let text = GOOD.replace(
        "  - when: \"facts.headline.idle > 20\"",
        "  - when: \"facts.headlines.idle > 20\"",
    );
    let p = one_problem(&text);
    assert!(
        p.contains("`facts.headlines` names no step (did you mean `headline`?)"),
        "{p}"
    );
}

#[test]
fn a_declared_risk_can_raise_but_not_lower() {
    let raised = GOOD.replace(
        "    summarize: { builtin: rows }",
        "    summarize: { builtin: rows }\n    risk: write",
    );
    // A diagnostic may be declared riskier than it is; the gate then uses the declared class.
    let c = load(&raised).expect("loads");
    assert_eq!(
        c.step("headline")
            .expect("step")
            .effective_risk(Engine::Postgres),
        Risk::Write
    );
    let lowered = GOOD.replace(
        "    rollback: none\n    verify:",
        "    rollback: none\n    risk: read_only\n    verify:",
    );
    let p = one_problem(&lowered);
    assert!(
        p.contains("declared risk `read_only` is lower than the analyzed `write`"),
        "{p}"
    );
}

#[test]
fn malformed_yaml_is_an_error_with_a_place_not_a_panic() {
    let p = one_problem("id: x\nsteps: [\n");
    assert!(p.starts_with("3:1: ") || p.starts_with("2:"), "{p}");
    let p = one_problem("- just\n- a list\n");
    assert!(
        p.contains("expected struct RunbookSpec") || p.contains("invalid type"),
        "{p}"
    );
}

#[test]
fn durations_parse() {
    assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
    assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
    assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
    for bad in ["", "5", "s", "5x", "-1s"] {
        assert_eq!(parse_duration(bad), None, "{bad}");
    }
}

#[test]
fn a_parse_error_after_a_parameter_points_at_the_source_text() {
    let text = GOOD.replace(
        "make_interval(secs => :min_idle_seconds)",
        "make_interval(secs => :min_idle_seconds) AND AND x",
    );
    let problems = load(&text).expect_err("fails");
    let p = problems
        .iter()
        .find(|p| p.message.contains("does not parse"))
        .expect("parse problem");
    let line = text.lines().nth(p.location.line - 1).expect("line");
    assert!(
        line[p.location.col - 1..].starts_with("AND x"),
        "{p} -> {line}"
    );
}

#[test]
fn conclusion_placeholders_must_name_steps() {
    let text = GOOD.replace(
        "text: \"{idle} idle sessions\"",
        "text: \"{headlin.idle} idle sessions\"",
    );
    let p = one_problem(&text);
    assert!(
        p.contains(
            "placeholder `{headlin.idle}` names no step `headlin` (did you mean `headline`?)"
        ),
        "{p}"
    );
}

#[test]
fn from_fact_must_name_a_fact_of_a_diagnostic_step() {
    let with = |from: &str| {
        GOOD.replace(
            "  table: { type: identifier, default: orders }",
            &format!("  table: {{ type: identifier, default: orders }}\n  pid: {{ type: integer, required: false, from_fact: {from} }}"),
        )
    };
    assert!(load(&with("headline.idle")).is_ok());
    let typo = one_problem(&with("headlin.idle"));
    assert!(
        typo.starts_with("9:53:")
            && typo.contains("names no step")
            && typo.contains("did you mean `headline`"),
        "{typo}"
    );
    let bare = one_problem(&with("idle"));
    assert!(bare.contains("must be `step.fact`"), "{bare}");
    let change = one_problem(&with("terminate_idle.pid"));
    assert!(
        change.contains("`terminate_idle` is not a diagnostic"),
        "{change}"
    );
}

#[test]
fn a_presence_test_of_another_steps_facts_needs_no_requires_but_reading_them_does() {
    let with = |when: &str| {
        GOOD.replace(
            r#"when: "facts.headline.idle > 20"
    sql: |"#,
            &format!("when: \"{when}\"\n    sql: |"),
        )
    };
    assert!(
        load(&with(
            "!has(facts.vacuum_table) && facts.headline.idle > 20"
        ))
        .is_ok()
    );
    let read = one_problem(&with(
        "facts.vacuum_table.row_count > 0 && facts.headline.idle > 20",
    ));
    assert!(
        read.contains("uses `facts.vacuum_table` but does not list `vacuum_table` in `requires`"),
        "{read}"
    );
}

#[test]
fn step_ids_that_ward_or_the_agent_use_themselves_are_refused() {
    for reserved in ["adhoc", "adhoc_query", "conclude"] {
        let text = GOOD.replace("  - id: vacuum_table", &format!("  - id: {reserved}"));
        let p = one_problem(&text);
        assert!(
            p.contains(&format!("step id `{reserved}` is reserved")),
            "{p}"
        );
    }
}

#[test]
fn a_default_outside_its_inputs_bounds_is_reported_at_the_default_with_the_bound() {
    let text = GOOD.replace(
        "min_idle_seconds: { type: integer, default: 600, min: 60, max: 86400 }",
        "min_idle_seconds: { type: integer, default: 30, min: 60, max: 86400 }",
    );
    assert_eq!(
        one_problem(&text),
        "7:47: default of input `min_idle_seconds`: 30 is below the minimum 60"
    );
    let text = GOOD.replace(
        "  table: { type: identifier, default: orders }\n",
        "  table: { type: identifier, default: orders }\n  mode: { type: enum, values: [fast, safe], default: slow }\n",
    );
    assert_eq!(
        one_problem(&text),
        format!(
            "{}: default of input `mode`: `slow` is not one of fast, safe",
            position_of(&text, "slow")
        )
    );
}

#[test]
fn a_problem_in_a_file_names_the_file_line_and_column() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("broken.yaml");
    let text = GOOD.replacen(
        "    kind: diagnostic\n",
        "    kind: diagnostic\n    timeout: soon\n",
        1,
    );
    std::fs::write(&path, &text).expect("write");
    let analyzer = Analyzer::new(AnalyzerOptions::default());
    let problems = load_file(&path, dir.path(), &analyzer).expect_err("does not load");
    let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        vec![format!(
            "{}:{}: timeout `soon` is not a duration; write e.g. 5s, 500ms, 2m",
            path.display(),
            position_of(&text, "soon")
        )]
    );
}

/// Where `needle` first is in `text`, as `line:col`.
fn position_of(text: &str, needle: &str) -> String {
    let (line, l) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(needle))
        .expect("the text has the needle");
    let col = l.find(needle).expect("needle") + 1;
    format!("{}:{col}", line + 1)
}

#[test]
fn a_recheck_runs_only_diagnostics_of_the_runbook_and_its_cleared_condition_names_steps() {
    let with = |recheck: &str| format!("{GOOD}recheck:\n{recheck}");
    let c = load(&with(
        "  steps: [headline]\n  cleared: \"facts.headline.idle <= before.headline.idle\"\n",
    ))
    .expect("loads");
    assert_eq!(
        c.recheck.as_ref().map(|r| r.steps.clone()),
        Some(vec!["headline".to_string()])
    );
    let problem = one_problem(&with(
        "  steps: [terminate_idle]\n  cleared: \"facts.headline.idle == 0\"\n",
    ));
    assert!(
        problem.ends_with(
            "`recheck` may only run diagnostics again; `terminate_idle` is a remediation"
        ),
        "{problem}"
    );
    let problem = one_problem(&with(
        "  steps: [headline]\n  cleared: \"before.headlin.idle == 0\"\n",
    ));
    assert!(
        problem.ends_with("`before.headlin` names no step (did you mean `headline`?)"),
        "{problem}"
    );
}

#[test]
fn a_conclusion_may_fill_a_placeholder_from_the_facts_as_first_gathered() {
    let text = GOOD.replace(
        "text: \"{idle} idle sessions\"",
        "text: \"{idle} idle sessions (was {before.headline.idle})\"",
    );
    assert!(load(&text).is_ok());
    let problem = one_problem(&GOOD.replace(
        "text: \"{idle} idle sessions\"",
        "text: \"was {before.headlin.idle}\"",
    ));
    assert!(problem.contains("names no step `headlin`"), "{problem}");
}
