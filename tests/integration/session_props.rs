//! Property: whatever the agent proposes, whatever the humans answer, and
//! wherever the session crashes (and is resumed), the runner never writes a
//! log that breaks the safety invariants. Driven through the real runner
//! and audit writer against recorded evidence (no database), so each case
//! is fast and many interleavings are tried.
//!
//! Admission is evaluated again right before execution: while a proposal
//! waits for its approvals, the humans may move the clock into the peak
//! window or freeze the policy file, and approvals come from operators with
//! and without the role a rule requires. Nothing may run that the latest
//! admission did not allow.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use tokio::sync::mpsc;

use ward::agent::replay::{Replay, ScriptedTurn, Transcript};
use ward::audit::{Event, Verification};
use ward::session::EventData;
use ward::session::events::{AdmitKind, DecisionKind, ProposalId};
use ward::session::runner::{self, Clock, Op, Recorded, RecordedStep, RunConfig};
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
    sql: UPDATE t SET x = 1 WHERE id = 1
    rollback: UPDATE t SET x = 0 WHERE id = 1
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
windows:
  peak: { days: [mon, tue, wed, thu, fri], hours: "08:00-20:00", tz: America/New_York }
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
  - id: prod-schema-needs-an-owner
    when: { risk: schema, environment: prod }
    decision: { approve: { approvers: 1, roles: [owner] } }
  - id: no-remediation-at-peak
    when: { step_kind: remediation, window: peak, environment: prod }
    decision: deny
default: deny
"#;

/// What the policy file says after a freeze: no remediation, anywhere.
const FROZEN: &str = r#"id: default
rules:
  - id: reads-run
    when: { risk: read_only }
    decision: allow
  - id: changes-need-approval
    when: { risk: [write, schema] }
    decision: { approve: { approvers: 1 } }
  - id: frozen
    when: { step_kind: remediation }
    decision: deny
default: deny
"#;

/// Who holds the role `prod-schema-needs-an-owner` requires.
const OPERATORS: &str = "operators:\n  alice: [owner]\n  bob: [dba]\n";

#[derive(Debug, Clone)]
enum Move {
    Step(&'static str),
    Adhoc(&'static str),
    Ask,
    BadTool,
    Conclude,
}

/// What happens while a proposal waits for approval, before the answer.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Meanwhile {
    Nothing,
    /// The clock moves from 07:55 to 09:30 New York: into the peak window.
    ClockIntoPeak,
    /// The policy file is replaced by one that denies every remediation.
    FreezePolicy,
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

fn meanwhile() -> impl Strategy<Value = Meanwhile> {
    prop_oneof![
        2 => Just(Meanwhile::Nothing),
        1 => Just(Meanwhile::ClockIntoPeak),
        1 => Just(Meanwhile::FreezePolicy),
    ]
}

fn answers() -> impl Strategy<Value = (Meanwhile, Answer)> {
    (meanwhile(), answer())
}

fn answer() -> impl Strategy<Value = Answer> {
    prop_oneof![
        4 => (prop::collection::vec(prop::sample::select(vec!["alice", "bob", "carol", ""]), 0..4), any::<bool>())
            .prop_map(|(ops, s)| Answer::Approve(ops, s)),
        2 => Just(Answer::Approve(vec!["alice", "bob"], false)),
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

/// 07:55 New York on a Wednesday, or 09:30 once `peak` is set.
fn clock(peak: Arc<AtomicBool>) -> Clock {
    Clock::from_fn(move || {
        let t = if peak.load(Ordering::SeqCst) {
            "2026-11-18T14:30:00Z"
        } else {
            "2026-11-18T12:55:00Z"
        };
        chrono::DateTime::parse_from_rfc3339(t)
            .expect("time")
            .with_timezone(&chrono::Utc)
    })
}

fn config(dir: &Path, env: &str, fail_fix: bool, peak: Arc<AtomicBool>) -> RunConfig {
    let analyzer = ward::sql::Analyzer::new(Default::default());
    let contract =
        ward::contract::load_doc(&Doc::new(dir.join("props.yaml"), RUNBOOK), dir, &analyzer)
            .expect("runbook loads");
    // The policy and the roster are files: the runner re-reads them right
    // before each execution (a resume keeps a frozen policy frozen).
    let policy_path = dir.join("policies/default.yaml");
    if !policy_path.exists() {
        std::fs::create_dir_all(dir.join("policies")).expect("mkdir");
        std::fs::write(&policy_path, POLICY).expect("write policy");
        std::fs::write(dir.join("policies/operators.yaml"), OPERATORS).expect("write roster");
    }
    let policy = ward::policy::load_doc(&Doc::read(&policy_path).expect("read policy"))
        .expect("policy loads");
    let operators = ward::policy::operators::load(&dir.join("policies")).expect("roster loads");
    RunConfig {
        store: None,
        concurrent: Vec::new(),
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
        wait_for_approval: Some(Duration::from_secs(5)),
        ops_dir: None,
        clock: clock(peak),
        allow_superuser: false,
        operators,
        reload_policy: true,
        recorded: Some(recorded(fail_fix)),
        max_proposals: 30,
        runbooks: Vec::new(),
        follow: Default::default(),
    }
}

/// Where the humans changed the rules: the seq of the event they were
/// answering when they moved the clock into peak or froze the policy. The
/// runner was then waiting for that answer, so everything it executes
/// later was admitted under the new rules.
#[derive(Debug, Default)]
struct Changes {
    peak_at: Option<u64>,
    frozen_at: Option<u64>,
}

/// Plays the humans: each approval request gets the next scripted answer;
/// the session is "crashed" (its task aborted) after `crash_at` events.
#[allow(clippy::too_many_arguments)]
async fn drive(
    cfg: RunConfig,
    moves: &[Move],
    answers: &mut std::vec::IntoIter<(Meanwhile, Answer)>,
    crash_at: Option<usize>,
    resume: bool,
    peak: &AtomicBool,
    changes: &mut Changes,
) -> Option<Result<runner::Outcome, String>> {
    let policy_path = cfg.policy.path.clone();
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
    // Fingerprints with a standing approval: those proposals do not wait.
    let mut standing: BTreeSet<String> = BTreeSet::new();
    let mut fingerprint: BTreeMap<ProposalId, String> = BTreeMap::new();
    while let Some(e) = ev_rx.recv().await {
        seen += 1;
        if crash_at == Some(seen) {
            handle.abort();
            let _ = handle.await;
            return None;
        }
        let proposal = match EventData::from_parts(&e.kind, &e.data) {
            Ok(EventData::Gated(g)) if g.decision == DecisionKind::Approve && !g.dry_run => {
                g.proposal
            }
            Ok(EventData::Readmitted(r)) if r.admit == AdmitKind::NeedsApprovals => r.proposal,
            Ok(EventData::Analyzed(a)) => {
                if let Some(fp) = a.fingerprint {
                    fingerprint.insert(a.proposal, fp);
                }
                continue;
            }
            Ok(EventData::StandingApproved(s)) => {
                standing.insert(s.fingerprint);
                continue;
            }
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
        let send = |op: Op| {
            let _ = ops_tx.send(op);
        };
        let (meanwhile, answer) = answers
            .next()
            .unwrap_or((Meanwhile::Nothing, Answer::Leave));
        let waits = !fingerprint
            .get(&proposal)
            .is_some_and(|fp| standing.contains(fp));
        match meanwhile {
            Meanwhile::ClockIntoPeak if waits => {
                peak.store(true, Ordering::SeqCst);
                changes.peak_at.get_or_insert(e.seq);
            }
            Meanwhile::FreezePolicy if waits => {
                std::fs::write(&policy_path, FROZEN).expect("freeze the policy");
                changes.frozen_at.get_or_insert(e.seq);
            }
            _ => {}
        }
        match answer {
            Answer::Approve(ops, for_session) => {
                for o in ops {
                    send(Op::Approve {
                        proposal: proposal.clone(),
                        operator: o.into(),
                        reason: "ok".into(),
                        for_session,
                    });
                }
                send(Op::Leave);
            }
            Answer::Reject => send(Op::Reject {
                proposal: proposal.clone(),
                operator: "alice".into(),
                reason: "no".into(),
            }),
            Answer::Leave => send(Op::Leave),
            Answer::Cancel => send(Op::Cancel),
            Answer::Stray => {
                send(Op::Approve {
                    proposal: "0".repeat(64).into(),
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
        let peak = Arc::new(AtomicBool::new(false));
        let mut changes = Changes::default();
        let first = rt.block_on(drive(config(dir.path(), env, fail_fix, peak.clone()), &script, &mut replies, crash_at, false, &peak, &mut changes));
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
            let again = rt.block_on(drive(config(dir.path(), env, fail_fix, peak.clone()), &script, &mut replies, None, true, &peak, &mut changes));
            prop_assert!(matches!(again, Some(Ok(_))), "resume: {again:?}");
            let v = ward::audit::verify(&log).expect("verify");
            prop_assert!(matches!(v, Verification::Ok { .. }), "after resume: {v:?}");
        }
        // An approval decision is never inferred: what still waits at the
        // end is named as unapproved.
        let (events, _) = ward::audit::read_events(&log).expect("read");
        let state = ward::session::SessionState::from_events(&events);
        if let Some(end) = events.iter().rev().find(|e| e.kind == "session_ended") {
            let unapproved: Vec<ProposalId> = state.awaiting_approval().iter().map(|p| p.id.clone()).collect();
            prop_assert_eq!(&end.data["unapproved"], &serde_json::json!(unapproved));
        }
        if let Err(e) = nothing_ran_that_admission_did_not_allow(&events, &state, prod, &changes) {
            prop_assert!(false, "{e}\n{events:#?}");
        }
    }
}

/// Checked from the log and what the humans did, not from the runner's
/// own bookkeeping: every execution comes right after an admission that
/// runs it; no remediation runs once the clock is in peak (prod) or the
/// policy froze; a schema change in prod (before any freeze) runs only
/// with the approval of `alice`, the only `owner` in the roster.
fn nothing_ran_that_admission_did_not_allow(
    events: &[Event],
    state: &ward::session::SessionState,
    prod: bool,
    changes: &Changes,
) -> Result<(), String> {
    for (i, e) in events.iter().enumerate() {
        if e.kind != "executing" {
            continue;
        }
        let pid = e.data["proposal"].as_str().unwrap_or_default();
        let before = i.checked_sub(1).and_then(|j| events.get(j));
        let admitted = before.is_some_and(|b| {
            b.kind == "readmitted" && b.data["proposal"] == pid && b.data["admit"] == "run"
        });
        if !admitted {
            return Err(format!(
                "executing at seq {} without a readmission that runs it",
                e.seq
            ));
        }
        let Some(p) = state.proposal(&ProposalId::from(pid)) else {
            return Err(format!("executing names unknown proposal {pid}"));
        };
        let step = p.step_id.as_deref().unwrap_or("adhoc");
        let remediation = matches!(step, "fix" | "wipe");
        if remediation && prod && changes.peak_at.is_some_and(|at| e.seq > at) {
            return Err(format!(
                "{step} ran at seq {} after the clock moved into peak",
                e.seq
            ));
        }
        if remediation && changes.frozen_at.is_some_and(|at| e.seq > at) {
            return Err(format!(
                "{step} ran at seq {} after the policy froze",
                e.seq
            ));
        }
        let before_freeze = changes.frozen_at.is_none_or(|at| e.seq < at);
        if step == "reshape"
            && prod
            && before_freeze
            && !p.approvals.iter().any(|(op, _)| op == "alice")
        {
            return Err(format!(
                "reshape ran at seq {} without an owner's approval",
                e.seq
            ));
        }
    }
    Ok(())
}
