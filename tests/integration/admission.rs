//! Admission at execution time, through the real runner and audit writer
//! against recorded evidence: the clock moving into a window between a
//! proposal and its approval, the policy file changing, approver roles from
//! the roster, and denials told to the agent.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use ward::agent::Agent;
use ward::agent::offline::Offline;
use ward::agent::replay::{Replay, ScriptedTurn, Transcript};
use ward::audit::{Event, Verification};
use ward::session::EventData;
use ward::session::events::{AdmitKind, DecisionKind, ProposalId};
use ward::session::runner::{self, Clock, Op, Outcome, Recorded, RecordedStep, RunConfig};
use ward::yaml::Doc;

const RUNBOOK: &str = r#"id: orders-index
title: Index the orders table
version: 1
engines: [postgres]
adhoc: read_only
steps:
  - id: look
    kind: diagnostic
    sql: SELECT count(*) AS n FROM public.orders
  - id: build_index
    kind: migration
    requires: [look]
    sql: CREATE INDEX orders_customer_idx ON orders (customer_id)
    rollback: DROP INDEX orders_customer_idx
  - id: touch
    kind: remediation
    requires: [look]
    sql: UPDATE public.orders SET note = 'x' WHERE id = 1
    rollback: UPDATE public.orders SET note = NULL WHERE id = 1
conclusions:
  - when: "true"
    text: looked at the orders
"#;

/// 2026-11-18 is a Wednesday; 07:55 New York is 12:55Z, 09:30 is 14:30Z.
const BEFORE_PEAK: &str = "2026-11-18T12:55:00Z";
const AT_PEAK: &str = "2026-11-18T14:30:00Z";

fn at(t: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(t)
        .expect("time")
        .with_timezone(&chrono::Utc)
}

/// A session directory with `policy` (and `roster`, when given) as files.
fn config(dir: &Path, env: &str, policy: &str, roster: Option<&str>, clock: Clock) -> RunConfig {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).expect("mkdir");
    std::fs::write(policies.join("default.yaml"), policy).expect("write policy");
    if let Some(r) = roster {
        std::fs::write(policies.join("operators.yaml"), r).expect("write roster");
    }
    let analyzer = ward::sql::Analyzer::new(Default::default());
    let contract = ward::contract::load_doc(
        &Doc::new(dir.join("orders-index.yaml"), RUNBOOK),
        dir,
        &analyzer,
    )
    .expect("runbook loads");
    let policy =
        ward::policy::load_doc(&Doc::read(&policies.join("default.yaml")).expect("read policy"))
            .expect("policy loads");
    let row = |k: &str, v: i64| {
        let mut m = serde_json::Map::new();
        m.insert(k.into(), v.into());
        m
    };
    let mut steps = BTreeMap::new();
    steps.insert(
        "look".to_string(),
        RecordedStep {
            rows: vec![row("n", 48_000_000)],
            ..Default::default()
        },
    );
    for id in ["build_index", "touch", "adhoc"] {
        steps.insert(id.to_string(), RecordedStep::default());
    }
    RunConfig {
        store: None,
        concurrent: Vec::new(),
        session_id: "admission".into(),
        log_path: dir.join("admission.jsonl"),
        contract,
        target: ward::exec::Target {
            name: "recorded".into(),
            engine: ward::sql::Engine::Postgres,
            url: ward::exec::SecretUrl::new("recorded:"),
            environment: env.into(),
            redact: vec![],
            roles: Default::default(),
            lock_timeout: None,
        },
        inputs: BTreeMap::new(),
        policy,
        analyzer,
        evidence: Default::default(),
        dry_run: false,
        operator: "runner".into(),
        provenance: serde_json::Value::Null,
        allow_dirty: false,
        wait_for_approval: Some(Duration::from_secs(10)),
        ops_dir: None,
        clock,
        allow_superuser: false,
        operators: ward::policy::operators::load(&policies).expect("roster loads"),
        reload_policy: true,
        recorded: Some(Recorded { steps }),
        max_proposals: 30,
        runbooks: Vec::new(),
        follow: Default::default(),
    }
}

/// Runs a session; `human` sees every event and may answer through ops.
fn session(
    cfg: RunConfig,
    agent: Box<dyn Agent>,
    mut human: impl FnMut(&Event, &EventData, &mpsc::UnboundedSender<Op>),
) -> (Outcome, Vec<Event>) {
    let log = cfg.log_path.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let outcome = rt.block_on(async move {
        let (ops_tx, ops_rx) = mpsc::unbounded_channel();
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<Event>();
        let handle = tokio::spawn(runner::run(cfg, agent, ops_rx, Some(ev_tx)));
        while let Some(e) = ev_rx.recv().await {
            if let Ok(d) = EventData::from_parts(&e.kind, &e.data) {
                human(&e, &d, &ops_tx);
            }
        }
        handle.await.expect("join").expect("session").1
    });
    let v = ward::audit::verify(&log).expect("verify");
    assert!(matches!(v, Verification::Ok { .. }), "audit verify: {v:?}");
    let (events, _) = ward::audit::read_events(&log).expect("read");
    (outcome, events)
}

fn approve(ops: &mpsc::UnboundedSender<Op>, proposal: &ProposalId, operator: &str) {
    let _ = ops.send(Op::Approve {
        proposal: proposal.clone(),
        operator: operator.into(),
        reason: "checked".into(),
        for_session: false,
    });
}

fn step_of<'a>(events: &'a [Event], step: &str) -> &'a str {
    events
        .iter()
        .find(|e| e.kind == "proposed" && e.data["step_id"] == step)
        .map(|e| e.hash.as_str())
        .unwrap_or_else(|| panic!("{step} was never proposed"))
}

fn about<'a>(events: &'a [Event], kind: &str, proposal: &str) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| e.kind == kind && e.data["proposal"] == proposal)
        .collect()
}

fn script(turns: &[ScriptedTurn]) -> Box<dyn Agent> {
    Box::new(Replay::new(
        Transcript {
            model: None,
            turns: turns.to_vec(),
        },
        "admission",
    ))
}

fn step_turn(id: &str) -> ScriptedTurn {
    ScriptedTurn {
        step: Some(id.into()),
        ..Default::default()
    }
}

fn conclude() -> ScriptedTurn {
    ScriptedTurn {
        conclude: Some("done".into()),
        ..Default::default()
    }
}

fn default_policy() -> String {
    std::fs::read_to_string(crate::harness::repo_root().join("policies/default.yaml"))
        .expect("the shipped policy")
}

#[test]
fn a_blocking_index_proposed_at_0755_and_approved_at_0930_is_denied_when_it_would_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peak = Arc::new(AtomicBool::new(false));
    let moved = peak.clone();
    let clock = Clock::from_fn(move || {
        at(if moved.load(Ordering::SeqCst) {
            AT_PEAK
        } else {
            BEFORE_PEAK
        })
    });
    let cfg = config(dir.path(), "prod", &default_policy(), None, clock);
    let agent = script(&[step_turn("look"), step_turn("build_index"), conclude()]);
    let (outcome, events) = session(cfg, agent, |_, d, ops| {
        if let EventData::Gated(g) = d
            && g.decision == DecisionKind::Approve
        {
            // Approved at 09:30, after the window opened.
            peak.store(true, Ordering::SeqCst);
            approve(ops, &g.proposal, "alice");
        }
    });
    assert_eq!(outcome, Outcome::Denied);
    let idx = step_of(&events, "build_index");
    let gated = &about(&events, "gated", idx)[0].data;
    assert_eq!(
        gated["decision"], "approve",
        "at 07:55 it only needed a human"
    );
    assert_eq!(about(&events, "approved", idx).len(), 1);
    let re = &about(&events, "readmitted", idx)[0].data;
    assert_eq!(re["decision"], "deny");
    assert_eq!(re["admit"], "deny");
    assert_eq!(re["changed"], true);
    assert_eq!(re["previous"], "approve by 1");
    assert!(
        re["rules"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x == "no-blocking-index-at-peak")),
        "{re}"
    );
    assert!(
        re["why"]
            .as_str()
            .is_some_and(|w| w.contains("use CREATE INDEX CONCURRENTLY")),
        "{re}"
    );
    assert!(about(&events, "executing", idx).is_empty(), "it never ran");
    // The denial is an answer: the session goes on to a conclusion.
    assert!(events.iter().any(|e| e.kind == "concluded"));
}

const ONE_APPROVER: &str = "id: default\nrules:\n  - id: reads-run\n    when: { risk: read_only }\n    decision: allow\n  - id: changes-need-one\n    when: { risk: [write, schema] }\n    decision: approve\ndefault: deny\n";
const TWO_APPROVERS: &str = "id: default\nrules:\n  - id: reads-run\n    when: { risk: read_only }\n    decision: allow\n  - id: changes-need-two\n    when: { risk: [write, schema] }\n    decision: { approve: { approvers: 2 } }\ndefault: deny\n";

#[test]
fn a_policy_made_stricter_before_execution_collects_the_missing_approval_and_keeps_the_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        dir.path(),
        "dev",
        ONE_APPROVER,
        None,
        Clock::fixed(at(AT_PEAK)),
    );
    let policy_file = dir.path().join("policies/default.yaml");
    let agent = script(&[step_turn("look"), step_turn("touch"), conclude()]);
    let (outcome, events) = session(cfg, agent, |_, d, ops| match d {
        EventData::Gated(g) if g.decision == DecisionKind::Approve => {
            std::fs::write(&policy_file, TWO_APPROVERS).expect("tighten");
            approve(ops, &g.proposal, "alice");
        }
        EventData::Readmitted(r) if r.admit == AdmitKind::NeedsApprovals => {
            approve(ops, &r.proposal, "bob");
        }
        _ => {}
    });
    assert_eq!(outcome, Outcome::Concluded);
    let touch = step_of(&events, "touch");
    let re: Vec<&serde_json::Value> = about(&events, "readmitted", touch)
        .iter()
        .map(|e| &e.data)
        .collect();
    assert_eq!(re.len(), 2, "{re:#?}");
    assert_eq!(
        (&re[0]["admit"], &re[0]["changed"], &re[0]["previous"]),
        (
            &serde_json::json!("needs_approvals"),
            &serde_json::json!(true),
            &serde_json::json!("approve by 1")
        )
    );
    assert_eq!(re[0]["approvers"], 2);
    assert_eq!(re[1]["admit"], "run");
    let approvers: Vec<&str> = about(&events, "approved", touch)
        .iter()
        .filter_map(|e| e.data["operator"].as_str())
        .collect();
    assert_eq!(
        approvers,
        vec!["alice", "bob"],
        "alice's approval still counts"
    );
    assert_eq!(about(&events, "executed", touch).len(), 1);
}

const OWNER_REQUIRED: &str = "id: default\nrules:\n  - id: reads-run\n    when: { risk: read_only }\n    decision: allow\n  - id: schema-needs-an-owner\n    when: { risk: schema }\n    decision: { approve: { approvers: 1, roles: [owner] } }\ndefault: deny\n";

#[test]
fn an_approval_from_an_operator_without_the_required_role_is_refused_logged_and_does_not_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        dir.path(),
        "dev",
        OWNER_REQUIRED,
        Some("operators:\n  alice: [owner]\n  bob: [dba]\n"),
        Clock::fixed(at(BEFORE_PEAK)),
    );
    let agent = script(&[step_turn("look"), step_turn("build_index"), conclude()]);
    let (outcome, events) = session(cfg, agent, |_, d, ops| {
        if let EventData::Gated(g) = d
            && g.decision == DecisionKind::Approve
        {
            approve(ops, &g.proposal, "bob");
            approve(ops, &g.proposal, "alice");
        }
    });
    assert_eq!(outcome, Outcome::Concluded);
    let idx = step_of(&events, "build_index");
    assert_eq!(
        about(&events, "gated", idx)[0].data["requires_roles"],
        "owner"
    );
    let refused = about(&events, "approval_refused", idx);
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].data["operator"], "bob");
    let reason = refused[0].data["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("role `owner`") && reason.contains("operators.yaml"),
        "{reason}"
    );
    let approved = about(&events, "approved", idx);
    assert_eq!(approved.len(), 1, "only alice's approval is logged as one");
    assert_eq!(approved[0].data["operator"], "alice");
    assert_eq!(approved[0].data["holds_roles"], "owner");
    assert_eq!(about(&events, "executed", idx).len(), 1);
}

#[test]
fn without_a_roster_a_role_requirement_cannot_be_met_and_the_log_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(
        dir.path(),
        "dev",
        OWNER_REQUIRED,
        None,
        Clock::fixed(at(BEFORE_PEAK)),
    );
    cfg.wait_for_approval = None;
    let agent = script(&[step_turn("look"), step_turn("build_index")]);
    let (outcome, events) = session(cfg, agent, |_, _, _| {});
    assert_eq!(outcome, Outcome::AwaitingApproval);
    let idx = step_of(&events, "build_index");
    let message = about(&events, "gated", idx)[0].data["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("role `owner`") && message.contains("there is no"),
        "{message}"
    );
}

#[test]
fn three_denials_in_a_row_stop_the_agent_and_the_offline_planner_concludes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        dir.path(),
        "dev",
        ONE_APPROVER,
        None,
        Clock::fixed(at(BEFORE_PEAK)),
    );
    let write = |sql: &str| ScriptedTurn {
        adhoc: Some(sql.into()),
        reason: Some("try".into()),
        ..Default::default()
    };
    let agent = script(&[
        write("DELETE FROM public.orders WHERE id = 1"),
        write("UPDATE public.orders SET note = 'a' WHERE id = 2"),
        write("DROP TABLE orders"),
        // Never played: the agent is stopped after three denials.
        write("DELETE FROM public.orders WHERE id = 3"),
    ]);
    // The offline planner's changes are rejected: it goes on and concludes.
    let (outcome, events) = session(cfg, agent, |_, d, ops| {
        if let EventData::Gated(g) = d
            && g.decision == DecisionKind::Approve
        {
            let _ = ops.send(Op::Reject {
                proposal: g.proposal.clone(),
                operator: "alice".into(),
                reason: "not now".into(),
            });
        }
    });
    assert_eq!(outcome, Outcome::Denied, "the outcome still says it");
    let denied: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind == "gated" && e.data["decision"] == "deny")
        .collect();
    assert_eq!(denied.len(), 3);
    assert!(
        denied[0].data["message"]
            .as_str()
            .is_some_and(|m| m.contains("read-only SQL only")),
        "{:?}",
        denied[0].data
    );
    let handover = events
        .iter()
        .find(|e| e.kind == "agent_error" && e.data["handover"] == true)
        .expect("handover");
    assert!(
        handover.data["message"]
            .as_str()
            .is_some_and(|m| m.contains("denied")),
        "{:?}",
        handover.data
    );
    let after: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == "proposed" && e.seq > handover.seq)
        .filter_map(|e| e.data["source"].as_str())
        .collect();
    assert!(after.iter().all(|s| *s == "offline"), "{after:?}");
    assert!(events.iter().any(|e| e.kind == "concluded"));
}

const NO_REMEDIATION: &str = "id: default\nrules:\n  - id: reads-run\n    when: { risk: read_only }\n    decision: allow\n  - id: changes-need-one\n    when: { risk: schema }\n    decision: approve\n  - id: no-remediation\n    when: { step_kind: remediation }\n    decision: deny\n    message: remediations are frozen\ndefault: deny\n";

#[test]
fn the_offline_planner_never_proposes_a_denied_step_again_and_concludes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(
        dir.path(),
        "dev",
        NO_REMEDIATION,
        None,
        Clock::fixed(at(BEFORE_PEAK)),
    );
    cfg.wait_for_approval = Some(Duration::from_millis(200));
    let (outcome, events) = session(cfg, Box::new(Offline), |_, d, ops| {
        if let EventData::Gated(g) = d
            && g.decision == DecisionKind::Approve
        {
            approve(ops, &g.proposal, "alice");
        }
    });
    assert_eq!(outcome, Outcome::Denied);
    let touches = events
        .iter()
        .filter(|e| e.kind == "proposed" && e.data["step_id"] == "touch")
        .count();
    assert_eq!(touches, 1, "a denied step is proposed once");
    let state = ward::session::SessionState::from_events(&events);
    let touch = state
        .proposals
        .iter()
        .find(|p| p.step_id.as_deref() == Some("touch"))
        .expect("touch");
    assert_eq!(
        touch.message.as_deref(),
        Some("no-remediation: remediations are frozen"),
        "the agent hears which rule and why"
    );
    assert!(events.iter().any(|e| e.kind == "concluded"));
}

/// Runs `fut` (a runner call) to its end on a fresh runtime.
fn block_on<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt")
        .block_on(fut)
}

#[test]
fn a_session_whose_log_already_exists_fails_naming_the_path_with_the_audit_error_as_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        dir.path(),
        "staging",
        &default_policy(),
        None,
        Clock::from_fn(|| at(BEFORE_PEAK)),
    );
    let log = cfg.log_path.clone();
    std::fs::write(&log, "").expect("write log");
    let (_ops_tx, ops_rx) = mpsc::unbounded_channel();
    let err = match block_on(runner::run(cfg, script(&[conclude()]), ops_rx, None)) {
        Err(e) => e,
        Ok((_, outcome)) => panic!("ran to {outcome:?} over an existing log"),
    };
    match &err {
        runner::RunError::Log { path, source } => {
            assert_eq!(path, &log);
            assert!(matches!(source, ward::audit::AuditError::Exists { .. }));
        }
        other => panic!("expected RunError::Log, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "cannot write the session log {}: {}: already exists; a session log is never overwritten",
            log.display(),
            log.display()
        )
    );
    let source = std::error::Error::source(&err).map(|s| s.to_string());
    assert_eq!(
        source,
        Some(format!(
            "{}: already exists; a session log is never overwritten",
            log.display()
        ))
    );
}

#[test]
fn resuming_the_log_of_another_session_is_refused_naming_both_sessions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = || Clock::fixed(at(BEFORE_PEAK));
    let cfg = config(dir.path(), "staging", &default_policy(), None, clock());
    let log = cfg.log_path.clone();
    let (outcome, _) = session(cfg, script(&[step_turn("look"), conclude()]), |_, _, _| {});
    assert_eq!(outcome, Outcome::Concluded);
    // Unseal it, as a crash before session_ended would have left it.
    let text = std::fs::read_to_string(&log).expect("read log");
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("\"session_ended\""))
        .collect();
    std::fs::write(&log, kept.join("\n") + "\n").expect("unseal");
    let (events, _) = ward::audit::read_events(&log).expect("read");
    assert!(events.iter().all(|e| e.kind != "session_ended"));
    let mut other = config(dir.path(), "staging", &default_policy(), None, clock());
    other.session_id = "someone-else".into();
    let (_ops_tx, ops_rx) = mpsc::unbounded_channel();
    let err = match block_on(runner::resume(
        other,
        events,
        script(&[conclude()]),
        ops_rx,
        None,
    )) {
        Err(e) => e,
        Ok((_, outcome)) => panic!("resumed to {outcome:?} another session's log"),
    };
    assert_eq!(
        err.to_string(),
        format!(
            "cannot resume {}: the log belongs to session \"admission\", not \"someone-else\"",
            log.display()
        )
    );
}
