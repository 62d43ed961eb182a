use chrono::TimeZone;

use super::*;
use crate::gate::{GateInput, decide};
use crate::sql::{Analyzer, Engine};

fn policy(text: &str) -> Policy {
    load_doc(&Doc::new("policies/p.yaml", text)).expect("policy loads")
}

fn problems(text: &str) -> Vec<String> {
    load_doc(&Doc::new("policies/p.yaml", text))
        .expect_err("policy should not load")
        .iter()
        .map(|p| format!("{}:{}: {}", p.location.line, p.location.col, p.message))
        .collect()
}

fn verdict(p: &Policy, sql: &str, env: &str) -> (Decision, Vec<String>) {
    let analysis = Analyzer::default().analyze(Engine::Postgres, sql);
    let now = Utc
        .with_ymd_and_hms(2026, 11, 18, 20, 0, 0)
        .single()
        .expect("time");
    let v = decide(
        p,
        &GateInput {
            analysis: &analysis,
            declared_risk: None,
            environment: env,
            runbook: None,
            step_kind: None,
            table_size: None,
            now,
            connected_as_superuser: false,
        },
    );
    (v.decision, v.rules.into_iter().map(|m| m.id).collect())
}

const LAYERED: &str = r#"
id: layered
rules:
  - id: allow-all
    decision: allow
  - id: one
    when: { risk: [write, schema] }
    decision: approve
  - id: owner
    when: { statement: grant }
    decision: { approve: { approvers: 1, roles: [owner] } }
  - id: two
    when: { risk: [destructive, privilege], environment: prod }
    decision: { approve: { approvers: 2, roles: [dba] } }
  - id: never
    when: { statement: drop_database }
    decision: deny
"#;

#[test]
fn decisions_order_from_allow_to_deny() {
    let a = Decision::Allow;
    let one = Decision::Approve {
        approvers: 1,
        roles: vec![],
    };
    let two = Decision::Approve {
        approvers: 2,
        roles: vec![],
    };
    assert!(a < one && one < two && two < Decision::Deny);
}

#[test]
fn the_most_restrictive_matching_rule_wins_and_every_match_is_listed() {
    let p = policy(LAYERED);
    assert_eq!(
        verdict(&p, "SELECT 1", "prod"),
        (Decision::Allow, vec!["allow-all".to_string()])
    );
    assert_eq!(
        verdict(&p, "UPDATE t SET x = 1 WHERE id = 1", "prod"),
        (
            Decision::Approve {
                approvers: 1,
                roles: vec![]
            },
            vec!["allow-all".into(), "one".into()]
        )
    );
    assert_eq!(
        verdict(&p, "DROP DATABASE app", "prod"),
        (
            Decision::Deny,
            vec!["allow-all".into(), "two".into(), "never".into()]
        )
    );
}

#[test]
fn approver_roles_are_the_union_over_matching_approve_rules() {
    let p = policy(LAYERED);
    let (d, rules) = verdict(&p, "GRANT SELECT ON t TO app", "prod");
    assert_eq!(
        d,
        Decision::Approve {
            approvers: 2,
            roles: vec!["dba".into(), "owner".into()]
        }
    );
    assert_eq!(rules, vec!["allow-all", "owner", "two"]);
}

#[test]
fn unmatched_falls_to_the_default_which_is_deny_when_absent() {
    let p = policy(
        "id: p\nrules:\n  - id: reads\n    when: { risk: read_only }\n    decision: allow\n",
    );
    assert_eq!(
        verdict(&p, "DELETE FROM t WHERE id = 1", "dev"),
        (Decision::Deny, vec![])
    );
    let p = policy("id: p\nrules: []\ndefault: { approve: { approvers: 3 } }\n");
    assert_eq!(
        verdict(&p, "DELETE FROM t WHERE id = 1", "dev").0,
        Decision::Approve {
            approvers: 3,
            roles: vec![]
        }
    );
}

#[test]
fn destructive_rules_also_catch_unknown_statements() {
    let p = policy(
        "id: p\nrules:\n  - id: d\n    when: { risk: destructive }\n    decision: deny\ndefault: allow\n",
    );
    assert_eq!(verdict(&p, "DO $$ BEGIN END $$", "dev").0, Decision::Deny);
    assert_eq!(verdict(&p, "SELECT 1; SELECT 2", "dev").0, Decision::Deny);
    assert_eq!(
        verdict(&p, "GRANT SELECT ON t TO x", "dev").0,
        Decision::Allow,
        "privilege is its own class"
    );
}

#[test]
fn statement_conditions_must_hold_for_the_same_statement() {
    let p = policy(
        "id: p\nrules:\n  - id: blocking-index\n    when: { statement: create_index, concurrently: false }\n    decision: deny\ndefault: allow\n",
    );
    assert_eq!(
        verdict(&p, "CREATE INDEX CONCURRENTLY i ON t (c)", "dev").0,
        Decision::Allow
    );
    assert_eq!(
        verdict(&p, "CREATE INDEX i ON t (c)", "dev").0,
        Decision::Deny
    );
    assert_eq!(
        verdict(
            &p,
            "CREATE INDEX CONCURRENTLY a ON t (c); CREATE INDEX b ON t (d)",
            "dev"
        )
        .0,
        Decision::Deny
    );
}

#[test]
fn lock_blocks_and_finding_conditions_match() {
    let p = policy(
        r#"id: p
rules:
  - id: ae
    when: { lock: ACCESS EXCLUSIVE }
    decision: { approve: { approvers: 2 } }
  - id: strong
    when: { lock_at_least: share }
    decision: approve
  - id: reads
    when: { blocks: reads }
    decision: { approve: { approvers: 3 } }
  - id: rewrite
    when: { finding: table-rewrite }
    decision: deny
default: allow
"#,
    );
    assert_eq!(
        verdict(&p, "CREATE INDEX CONCURRENTLY i ON t (c)", "dev"),
        (Decision::Allow, vec![])
    );
    assert_eq!(
        verdict(&p, "CREATE INDEX i ON t (c)", "dev"),
        (
            Decision::Approve {
                approvers: 1,
                roles: vec![]
            },
            vec!["strong".into()]
        )
    );
    assert_eq!(
        verdict(&p, "ALTER TABLE t ADD COLUMN c int", "dev").1,
        vec!["ae", "strong", "reads"]
    );
    assert_eq!(verdict(&p, "VACUUM FULL t", "dev").0, Decision::Deny);
}

#[test]
fn size_conditions_need_known_sizes() {
    let p = policy(
        "id: p\nrules:\n  - id: big\n    when: { min_rows: 1000, min_bytes: 1GB }\n    decision: deny\ndefault: allow\n",
    );
    let analysis = Analyzer::default().analyze(Engine::Postgres, "ALTER TABLE t ADD COLUMN c int");
    let now = Utc::now();
    let at = |size: Option<TableSize>| {
        decide(
            &p,
            &GateInput {
                analysis: &analysis,
                declared_risk: None,
                environment: "prod",
                runbook: None,
                step_kind: None,
                table_size: size,
                now,
                connected_as_superuser: false,
            },
        )
        .decision
    };
    assert_eq!(at(None), Decision::Allow);
    assert_eq!(
        at(Some(TableSize {
            rows: 5000,
            bytes: 2 << 30
        })),
        Decision::Deny
    );
    assert_eq!(
        at(Some(TableSize {
            rows: 5000,
            bytes: 1 << 20
        })),
        Decision::Allow
    );
    assert_eq!(parse_bytes("10GB"), Some(10 << 30));
    assert_eq!(parse_bytes("10 parsecs"), None);
}

#[test]
fn runbook_and_step_kind_conditions_match() {
    let p = policy(
        "id: p\nrules:\n  - id: r\n    when: { runbook: pg-x, step_kind: [migration, remediation] }\n    decision: deny\ndefault: allow\n",
    );
    let analysis = Analyzer::default().analyze(Engine::Postgres, "SELECT 1");
    let d = |runbook, step_kind| {
        decide(
            &p,
            &GateInput {
                analysis: &analysis,
                declared_risk: None,
                environment: "prod",
                runbook,
                step_kind,
                table_size: None,
                now: Utc::now(),
                connected_as_superuser: false,
            },
        )
        .decision
    };
    assert_eq!(d(Some("pg-x"), Some("migration")), Decision::Deny);
    assert_eq!(d(Some("pg-x"), Some("diagnostic")), Decision::Allow);
    assert_eq!(d(Some("pg-y"), Some("migration")), Decision::Allow);
    assert_eq!(d(None, None), Decision::Allow);
}

#[test]
fn bad_policies_say_what_and_where() {
    let errs = problems(
        r#"id: p
windows:
  peak: { days: [mon, funday], hours: "8-20", tz: "America/New_Yrok" }
rules:
  - id: a
    when: { window: peek, finding: table-rewrit, lock: SHARED }
    decision: maybe
  - id: a
    decision: { approve: { approvers: 0 } }
"#,
    );
    let joined = errs.join("\n");
    for want in [
        "3:23: `funday` is not a day",
        "3:39: `8-20` is not a span of hours",
        "3:51: `America/New_Yrok` is not an IANA time zone (did you mean `America/New_York`?)",
        "6:21: window `peek` is not defined under `windows` (did you mean `peak`?)",
        "6:36: `table-rewrit` is not a finding ward reports (did you mean `table-rewrite`?)",
        "6:56: `SHARED` is not a lock mode",
        "7:15: `maybe` is not a decision",
        "8:9: duplicate rule id `a`",
        "9:15: approvers must be at least 1",
    ] {
        assert!(joined.contains(want), "missing {want:?} in:\n{joined}");
    }
    let unknown =
        problems("id: p\nrules:\n  - id: a\n    whne: { risk: write }\n    decision: allow\n");
    assert_eq!(unknown.len(), 1);
    assert!(unknown[0].starts_with("4:5: "), "{unknown:?}");
    assert!(unknown[0].contains("did you mean `when`?"), "{unknown:?}");
}

#[test]
fn concurrent_sessions_is_warn_unless_the_policy_asks_for_acknowledgement_and_nothing_else_loads() {
    let base = "id: p\nrules:\n  - id: r\n    when: { risk: read_only }\n    decision: allow\n";
    assert_eq!(policy(base).concurrent_sessions, ConcurrentSessions::Warn);
    assert_eq!(
        policy(&format!("{base}concurrent_sessions: acknowledge\n")).concurrent_sessions,
        ConcurrentSessions::Acknowledge
    );
    assert_eq!(
        problems(&format!("{base}concurrent_sessions: ask\n")),
        ["6:22: concurrent_sessions: unknown value `ask`; valid values: warn, acknowledge"]
    );
}
