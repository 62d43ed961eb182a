//! Property: whatever the agent proposes, whatever the humans answer, and
//! wherever the session crashes (and is resumed), the runner never writes a
//! log that breaks the safety invariants. Driven through the real runner
//! and audit writer against recorded evidence (no database), so each case
//! is fast and many interleavings are tried.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use tokio::sync::mpsc;

use ward::agent::replay::{Replay, ScriptedTurn, Transcript};
use ward::audit::{Event, Verification};
use ward::session::EventData;
use ward::session::runner::{self, Op, Recorded, RecordedStep, RunConfig};
use ward::yaml::Doc;

const RUNBOOK: &str = r#"id: props
title: Property runbook
version: 1
engines: [postgres]
adhoc: read_only
steps:
  - id: look
    kind: diagnostic
    sql: SELECT count(*) AS n FROM t
  - id: fix
    kind: remediation
    requires: [look]
    sql: UPDATE t SET x = 1
    rollback: UPDATE t SET x = 0
    verify: { sql: "SELECT count(*) AS n FROM t WHERE x = 1", expect: "rows[0].n > 0" }
  - id: reshape
    kind: migration
    sql: ALTER TABLE t ADD COLUMN y int
    rollback: ALTER TABLE t DROP COLUMN y
  - id: wipe
    kind: remediation
    sql: DROP TABLE t
    rollback: none
conclusions:
  - when: "true"
    text: done
"#;

const POLICY: &str = r#"id: default
rules:
  - id: reads-run
    when: { risk: read_only }
    decision: allow
  - id: no-drops-in-dev
    when: { risk: destructive, environment: dev }
    decision: deny
  - id: prod-destructive-two-person
    when: { risk: destructive, environment: prod }
    decision: { approve: { approvers: 2 } }
  - id: changes-need-approval
    when: { risk: [write, schema] }
    decision: { approve: { approvers: 1 } }
default: deny
"#;

#[derive(Debug, Clone)]
enum Move {
    Step(&'static str),
    Adhoc(&'static str),
    Ask,
    BadTool,
    Conclude,
}

#[derive(Debug, Clone)]
enum Answer {
    /// Approvals from these operators (repeats included), maybe for the session.
    Approve(Vec<&'static str>, bool),
    Reject,
    Leave,
    Cancel,
    /// An approval naming some other proposal.
    Stray,
}

fn moves() -> impl Strategy<Value = Move> {
    prop_oneof![
        4 => prop::sample::select(vec!["look", "fix", "reshape", "wipe", "nope"]).prop_map(Move::Step),
        1 => prop::sample::select(vec!["SELECT 1 AS one", "DELETE FROM t", "SELECT pg_terminate_backend(1)"]).prop_map(Move::Adhoc),
        1 => Just(Move::Ask),
        1 => Just(Move::BadTool),
        1 => Just(Move::Conclude),
    ]
}

fn answers() -> impl Strategy<Value = Answer> {
    prop_oneof![
        4 => (prop::collection::vec(prop::sample::select(vec!["alice", "bob", "carol", ""]), 0..4), any::<bool>())
            .prop_map(|(ops, s)| Answer::Approve(ops, s)),
        1 => Just(Answer::Reject),
        1 => Just(Answer::Leave),
        1 => Just(Answer::Cancel),
        1 => Just(Answer::Stray),
    ]
}

fn turn(m: &Move) -> ScriptedTurn {
    let mut t = ScriptedTurn::default();
    match m {
        Move::Step(s) => t.step = Some(s.to_string()),
        Move::Adhoc(sql) => {
            t.adhoc = Some(sql.to_string());
            t.reason = Some("look".into());
        }
        Move::Ask => t.ask = Some("which app?".into()),
        Move::BadTool => {
            t.tool = Some("fix".into());
            t.arguments = Some("{not json".into());
        }
        Move::Conclude => t.conclude = Some("scripted end".into()),
    }
    t
}

fn recorded(fail_fix: bool) -> Recorded {
    let row = |k: &str, v: i64| {
        let mut m = serde_json::Map::new();
        m.insert(k.into(), v.into());
        m
    };
    let mut steps = BTreeMap::new();
    steps.insert(
        "look".into(),
        RecordedStep {
            rows: vec![row("n", 3)],
            ..Default::default()
        },
    );
    steps.insert(
        "fix".into(),
        RecordedStep {
            rows: vec![],
            error: fail_fix.then(|| "deadlock detected".into()),
            verify_rows: Some(vec![row("n", 3)]),
            ..Default::default()
        },
    );
    steps.insert("reshape".into(), RecordedStep::default());
    steps.insert("wipe".into(), RecordedStep::default());
    steps.insert(
        "adhoc".into(),
        RecordedStep {
            rows: vec![row("one", 1)],
            ..Default::default()
        },
    );
    Recorded { steps }
}

fn config(dir: &Path, env: &str, fail_fix: bool) -> RunConfig {
    let analyzer = ward::sql::Analyzer::new(Default::default());
    let contract =
        ward::contract::load_doc(&Doc::new(dir.join("props.yaml"), RUNBOOK), dir, &analyzer)
            .expect("runbook loads");
    let policy =
        ward::policy::load_doc(&Doc::new(dir.join("p.yaml"), POLICY)).expect("policy loads");
    RunConfig {
        session_id: "props".into(),
        log_path: dir.join("props.jsonl"),
        contract,
        target: ward::exec::Target {
            name: "recorded".into(),
            engine: ward::sql::Engine::Postgres,
            url: ward::exec::SecretUrl::new("recorded:"),
            environment: env.into(),
            redact: vec![],
            roles: Default::default(),
        },
        inputs: BTreeMap::new(),
        policy,
        analyzer,
        evidence: Default::default(),
        dry_run: false,
        operator: "runner".into(),
        provenance: serde_json::Value::Null,
        allow_dirty: false,
        wait_for_approval: Some(Duration::from_secs(5)),
        ops_dir: None,
        clock: None,
        recorded: Some(recorded(fail_fix)),
        max_proposals: 30,
    }
}

/// Plays the humans: each approval request gets the next scripted answer;
/// the session is "crashed" (its task aborted) after `crash_at` events.
async fn drive(
    cfg: RunConfig,
    moves: &[Move],
    answers: &mut std::vec::IntoIter<Answer>,
    crash_at: Option<usize>,
    resume: bool,
) -> Option<Result<runner::Outcome, String>> {
    let transcript = Transcript {
        model: None,
        turns: moves.iter().map(turn).collect(),
    };
    // On resume the runner moves the transcript past the turns played.
    let agent = Box::new(Replay::new(transcript, "props"));
    let (ops_tx, ops_rx) = mpsc::unbounded_channel();
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<Event>();
    let handle = if resume {
        let (logged, _) = ward::audit::read_events(&cfg.log_path).expect("read the log");
        tokio::spawn(runner::resume(cfg, logged, agent, ops_rx, Some(ev_tx)))
    } else {
        tokio::spawn(runner::run(cfg, agent, ops_rx, Some(ev_tx)))
    };
    let mut seen = 0usize;
    while let Some(e) = ev_rx.recv().await {
        seen += 1;
        if crash_at == Some(seen) {
            handle.abort();
            let _ = handle.await;
            return None;
        }
        let g = match EventData::from_parts(&e.kind, &e.data) {
            Ok(EventData::Gated(g)) => g,
            Ok(EventData::Asked(_)) => {
                // Every other question is answered; the rest are left.
                let op = if seen.is_multiple_of(2) {
                    Op::Answer {
                        operator: "alice".into(),
                        text: "billing".into(),
                    }
                } else {
                    Op::Leave
                };
                let _ = ops_tx.send(op);
                continue;
            }
            _ => continue,
        };
        if g.decision != "approve" {
            continue;
        }
        let send = |op: Op| {
            let _ = ops_tx.send(op);
        };
        match answers.next().unwrap_or(Answer::Leave) {
            Answer::Approve(ops, for_session) => {
                for o in ops {
                    send(Op::Approve {
                        proposal: g.proposal.clone(),
                        operator: o.into(),
                        reason: "ok".into(),
                        for_session,
                    });
                }
                send(Op::Leave);
            }
            Answer::Reject => send(Op::Reject {
                proposal: g.proposal.clone(),
                operator: "alice".into(),
                reason: "no".into(),
            }),
            Answer::Leave => send(Op::Leave),
            Answer::Cancel => send(Op::Cancel),
            Answer::Stray => {
                send(Op::Approve {
                    proposal: "0".repeat(64),
                    operator: "alice".into(),
                    reason: "ok".into(),
                    for_session: false,
                });
                send(Op::Leave);
            }
        }
    }
    Some(match handle.await {
        Ok(Ok((_, o))) => Ok(o),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn no_interleaving_of_proposals_answers_and_crashes_breaks_the_safety_invariants(
        script in prop::collection::vec(moves(), 0..10),
        replies in prop::collection::vec(answers(), 0..8),
        prod in any::<bool>(),
        fail_fix in any::<bool>(),
        crash_at in prop::option::weighted(0.4, 1usize..40),
        resume_after_crash in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = if prod { "prod" } else { "dev" };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        let mut replies = replies.into_iter();
        let log = dir.path().join("props.jsonl");
        let first = rt.block_on(drive(config(dir.path(), env, fail_fix), &script, &mut replies, crash_at, false));
        if let Some(r) = &first {
            prop_assert!(r.is_ok(), "the runner refused its own event: {r:?}");
        }
        let v = ward::audit::verify(&log).expect("verify");
        match (&first, &v) {
            // A "crash" after the seal is just a finished session.
            (_, Verification::Ok { .. }) | (None, Verification::Unsealed { .. }) => {}
            _ => prop_assert!(false, "unexpected verdict {v:?} (crashed: {})", first.is_none()),
        }
        if first.is_none() && resume_after_crash && matches!(v, Verification::Unsealed { .. }) {
            let again = rt.block_on(drive(config(dir.path(), env, fail_fix), &script, &mut replies, None, true));
            prop_assert!(matches!(again, Some(Ok(_))), "resume: {again:?}");
            let v = ward::audit::verify(&log).expect("verify");
            prop_assert!(matches!(v, Verification::Ok { .. }), "after resume: {v:?}");
        }
        // An approval decision is never inferred: what still waits at the
        // end is named as unapproved.
        let (events, _) = ward::audit::read_events(&log).expect("read");
        let state = ward::session::SessionState::from_events(&events);
        if let Some(end) = events.iter().rev().find(|e| e.kind == "session_ended") {
            let unapproved: Vec<String> = state.awaiting_approval().iter().map(|p| p.id.clone()).collect();
            prop_assert_eq!(&end.data["unapproved"], &serde_json::json!(unapproved));
        }
    }
}
