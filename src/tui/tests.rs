//! Snapshot tests of every screen (fixed-size `TestBackend`, times and ids
//! filtered) and update tests (key sequences -> state and emitted commands).
//!
//! Sessions are built the way the engine builds them: real runbooks loaded
//! with `contract::load_dir`, SQL analyzed by the real analyzer, verdicts
//! from the real gate and `policies/default.yaml`, events hash-chained into
//! `audit::Event`s and folded by the app through `EventData::from_parts` +
//! `SessionState::apply`, exactly as a live session's events are.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, TimeZone, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind};
use futures_util::StreamExt;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Color;
use serde_json::{Value, json};

use super::*;
use crate::audit::{Event, FORMAT_VERSION, GENESIS, Verification};
use crate::session::events::{EventData, Outcome};
use crate::session::runner::Op;
use crate::sql::{Analyzer, AnalyzerOptions, Engine};

// ------------------------------------------------------------------ fixtures

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn t0() -> DateTime<Utc> {
    // A Wednesday afternoon in New York: peak hours in the default policy.
    Utc.with_ymd_and_hms(2026, 11, 18, 20, 15, 0)
        .single()
        .expect("a valid time")
}

fn analyzer() -> Analyzer {
    Analyzer::new(AnalyzerOptions {
        lock_timeout_managed: true,
        ..AnalyzerOptions::default()
    })
}

/// Every runbook of the repository, as the home screen lists them.
fn runbooks() -> Vec<RunbookInfo> {
    let (contracts, problems) = crate::contract::load_dir(&root().join("runbooks"), &analyzer());
    assert!(problems.is_empty(), "{problems:?}");
    contracts.iter().map(RunbookInfo::from).collect()
}

fn runbook(id: &str) -> RunbookInfo {
    runbooks()
        .into_iter()
        .find(|r| r.id == id)
        .expect("the runbook exists")
}

fn policy() -> crate::policy::Policy {
    let (mut ps, problems) = crate::policy::load_dir(&root().join("policies"));
    assert!(problems.is_empty(), "{problems:?}");
    ps.remove(0)
}

/// A session log under construction: each push is a real, hash-chained
/// event whose data is checked against the event schema.
struct Log {
    events: Vec<Event>,
    at: DateTime<Utc>,
    env: String,
    runbook: String,
}

impl Log {
    fn new(runbook: &str, target: &str, env: &str, operator: &str) -> Log {
        Log::with_provenance(
            runbook,
            target,
            env,
            operator,
            json!({"commit": "b45204c", "dirty": false}),
        )
    }

    fn with_provenance(
        runbook: &str,
        target: &str,
        env: &str,
        operator: &str,
        provenance: Value,
    ) -> Log {
        let mut log = Log {
            events: Vec::new(),
            at: t0(),
            env: env.into(),
            runbook: runbook.into(),
        };
        log.push(
            "session_started",
            json!({
                "session_id": "20261118T201500Z-1a2b3c",
                "operator": operator,
                "host": "oncall-laptop",
                "ward_version": "0.1.0",
                "runbook": runbook,
                "runbook_version": 1,
                "target": {"name": target, "engine": "postgres", "environment": env},
                "environment": env,
                "agent": {"provider": "offline"},
                "dry_run": false,
                "provenance": provenance,
            }),
        );
        log
    }

    /// Moves the clock `secs` forward for the next events.
    fn wait(&mut self, secs: i64) -> &mut Log {
        self.at += Duration::seconds(secs);
        self
    }

    fn push(&mut self, kind: &str, data: Value) -> String {
        if let Err(e) = EventData::from_parts(kind, &data) {
            panic!("test event does not match the schema: {e}");
        }
        let prev = self
            .events
            .last()
            .map_or_else(|| GENESIS.to_string(), |e| e.hash.clone());
        let mut ev = Event {
            v: FORMAT_VERSION,
            seq: self.events.len() as u64,
            ts: self.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            kind: kind.into(),
            data,
            prev,
            hash: String::new(),
        };
        ev.hash = ev.compute_hash();
        let h = ev.hash.clone();
        self.events.push(ev);
        h
    }

    /// Proposes `sql` (for `step`, or ad hoc), analyzes it with the real
    /// analyzer and gates it with the real policy, as the runner does.
    fn propose(
        &mut self,
        step: Option<&str>,
        sql: &str,
        rationale: Option<&str>,
        table_size: Option<(u64, u64)>,
    ) -> String {
        let p = self.push(
            "proposed",
            json!({"step_id": step, "sql": sql, "binds": [],
                   "source": if step.is_some() { "runbook" } else { "agent:offline" },
                   "rationale": rationale}),
        );
        let a = analyzer().analyze(Engine::Postgres, sql);
        let size = table_size.map(|(rows, bytes)| crate::policy::TableSize { rows, bytes });
        self.push(
            "analyzed",
            json!({
                "proposal": p,
                "risk": a.risk.name(),
                "kinds": a.kinds(),
                "lock": a.lock().map(|l| l.name()),
                "blocks": a.statements.iter().flat_map(|s| s.blocks.clone()).collect::<Vec<_>>(),
                "findings": a.findings().iter().map(|f| f.rule).collect::<Vec<_>>(),
                "tables": a.tables(),
                "table_size": table_size.map(|(rows, bytes)| json!({"rows": rows, "bytes": bytes})),
                "fingerprint": crate::sql::fingerprint(Engine::Postgres, sql),
            }),
        );
        let rb = self.runbook.clone();
        let v = crate::gate::decide(
            &policy(),
            &crate::gate::GateInput {
                analysis: &a,
                declared_risk: None,
                environment: &self.env,
                runbook: Some(&rb),
                step_kind: Some(if step.is_some() {
                    "remediation"
                } else {
                    "adhoc"
                }),
                table_size: size,
                now: self.at,
                connected_as_superuser: false,
            },
        );
        self.push(
            "gated",
            json!({
                "proposal": p,
                "decision": v.decision.name(),
                "approvers": v.decision.approvers(),
                "risk": v.risk.name(),
                "rules": v.rules.iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
                "policy": v.policy,
            }),
        );
        p
    }

    fn approve(&mut self, p: &str, operator: &str, reason: &str) {
        self.push(
            "approved",
            json!({"proposal": p, "operator": operator, "reason": reason}),
        );
    }

    fn standing(&mut self, p: &str, fingerprint: &str, operator: &str, reason: &str) {
        self.push(
            "standing_approved",
            json!({"fingerprint": fingerprint, "target": "orders", "operator": operator,
                   "reason": reason, "proposal": p}),
        );
    }

    fn start(&mut self, p: &str, mode: &str) {
        self.push("executing", json!({"proposal": p, "mode": mode}));
    }

    fn finish(&mut self, p: &str, rows: u64, ms: u64, summary: &str, facts: Value) {
        self.push(
            "executed",
            json!({"proposal": p, "rows_seen": rows, "rows_kept": rows, "capped": false,
                   "duration_ms": ms, "sha256": "ab".repeat(32)}),
        );
        self.push(
            "summarized",
            json!({"proposal": p, "summarizer": "builtin:rows", "summary": summary,
                   "facts": facts, "tokens": 40, "truncated": false}),
        );
    }

    /// A read-only step from proposal to summary.
    fn diagnostic(&mut self, step: &str, sql: &str, summary: &str, facts: Value) -> String {
        let p = self.propose(Some(step), sql, None, None);
        self.start(&p, "read_only");
        self.wait(1);
        self.finish(&p, 3, 42, summary, facts);
        p
    }

    fn fingerprint_of(&self, p: &str) -> String {
        self.events
            .iter()
            .find(|e| e.kind == "analyzed" && e.data["proposal"] == p)
            .and_then(|e| e.data["fingerprint"].as_str())
            .expect("analyzed with a fingerprint")
            .to_string()
    }
}

fn step_sql(rb: &RunbookInfo, step: &str) -> String {
    rb.step(step).expect("step").sql.clone()
}

/// Resolves `:name` identifiers and values the way a runbook's inputs
/// would (good enough for display and analysis).
fn bind(sql: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = sql.to_string();
    let mut pairs = pairs.to_vec();
    pairs.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
    for (k, v) in pairs {
        out = out.replace(&format!(":{k}"), v);
    }
    out
}

/// The lock-contention incident: steps in every status, a running one, a
/// denied ad-hoc statement, a blocking chain.
fn lock_session() -> (Log, RunbookInfo) {
    let rb = runbook("pg-lock-contention");
    let mut log = Log::new("pg-lock-contention", "orders", "prod", "alice");
    log.usage(1840, Some(20000));
    log.wait(2).diagnostic(
        "lock_headline",
        &step_sql(&rb, "lock_headline"),
        "blocked=3 root_blockers=1 max_wait_seconds=182 ungranted_locks=4",
        json!({"blocked": 3, "root_blockers": 1, "max_wait_seconds": 182, "ungranted_locks": 4}),
    );
    log.wait(3).diagnostic(
        "blocking_tree",
        &step_sql(&rb, "blocking_tree"),
        "3 blocked session(s) behind 1 root blocker(s); longest wait 3m02s\nroot pid 4242 user=u_7f3a app=billing-worker state=idle in transaction\n  waits pid 4300 app=web\n    waits pid 4301 app=web\n  waits pid 4310 app=cron",
        json!({
            "blocked": 3, "root_blockers": 1, "root_pid": 4242, "max_wait_seconds": 182,
            "chain": [
                {"pid": 4242, "blocked_by": [], "age_s": 302, "application": "billing-worker", "state": "idle in transaction"},
                {"pid": 4300, "blocked_by": [4242], "age_s": 182, "application": "web", "state": "active"},
                {"pid": 4301, "blocked_by": [4300], "age_s": 95, "application": "web", "state": "active"},
                {"pid": 4310, "blocked_by": [4242], "age_s": 31, "application": "cron", "state": "active"},
            ],
        }),
    );
    let failed = log.wait(2).propose(
        Some("lock_waits_by_object"),
        &step_sql(&rb, "lock_waits_by_object"),
        None,
        None,
    );
    log.start(&failed, "read_only");
    log.wait(10).push(
        "failed",
        json!({"proposal": failed, "kind": "statement_timeout", "message": "canceling statement due to statement timeout (10s)"}),
    );
    // Denied: a blocking index build on prod at peak hours.
    log.wait(1).propose(
        None,
        "CREATE INDEX orders_status_idx ON orders (status)",
        Some("An index on status would make the waiting queries finish sooner."),
        None,
    );
    log.wait(2).diagnostic(
        "blocker_detail",
        &bind(&step_sql(&rb, "blocker_detail"), &[("blocker_pid", "4242")]),
        "pid=4242 state=idle in transaction xact_seconds=302 blocked_count=3 is_root=true",
        json!({"pid": 4242, "state": "idle in transaction", "xact_seconds": 302, "blocked_count": 3}),
    );
    let cancel = log.wait(1).propose(
        Some("cancel_root_blocker"),
        &bind(
            &step_sql(&rb, "cancel_root_blocker"),
            &[("blocker_pid", "4242")],
        ),
        Some("pid 4242 has held its locks for 5 minutes and blocks 3 sessions."),
        None,
    );
    let _ = cancel;
    let running = log.wait(1).propose(
        Some("blocker_locks"),
        &bind(&step_sql(&rb, "blocker_locks"), &[("blocker_pid", "4242")]),
        None,
        None,
    );
    log.start(&running, "read_only");
    log.wait(12);
    (log, rb)
}

impl Log {
    fn usage(&mut self, total: u64, budget: Option<u64>) {
        self.push(
            "agent_usage",
            json!({"prompt_tokens": total / 2, "completion_tokens": total / 2,
                   "total": total, "budget": budget}),
        );
    }
}

/// The add-column migration in staging: repeated progress checks (a
/// sparkline), a write step approved for the rest of the session, a
/// second batch approved by that standing approval, a third waiting.
fn backfill_session(env: &str) -> (Log, RunbookInfo, String) {
    let rb = runbook("pg-add-column-backfill");
    let inputs = [
        ("table", "orders"),
        ("column", "total_cents_big"),
        ("source_column", "total_cents"),
        ("key_column", "id"),
        ("check_name", "orders_total_cents_big_not_null"),
        ("batch_size", "5000"),
        ("after_key", "0"),
    ];
    let mut log = Log::new("pg-add-column-backfill", "orders", env, "alice");
    log.wait(1).diagnostic(
        "table_overview",
        &bind(&step_sql(&rb, "table_overview"), &inputs),
        "rows=1204332 long_transactions=0",
        json!({"rows": 1_204_332, "long_transactions": 0, "column_not_null": 0}),
    );
    let add = log.wait(2).propose(
        Some("add_column"),
        &bind(&step_sql(&rb, "add_column"), &inputs),
        None,
        Some((1_204_332, 340_000_000)),
    );
    log.wait(20)
        .approve(&add, "alice", "catalog-only change, no long transactions");
    log.start(&add, "write");
    log.finish(&add, 0, 12, "ok", json!({}));
    log.push(
        "verified",
        json!({"proposal": add, "ok": true, "expect": "rows[0].column_exists == 1", "detail": "column_exists = 1"}),
    );
    let mut remaining = 15_000u64;
    let mut last_batch = String::new();
    for run in 0..3 {
        log.wait(5).diagnostic(
            "backfill_progress",
            &bind(&step_sql(&rb, "backfill_progress"), &inputs),
            &format!("remaining={remaining}"),
            json!({"total_rows": 1_204_332, "filled": 1_204_332 - remaining, "remaining": remaining,
                   "source_nulls": 0, "mismatched": 0, "state": "filling"}),
        );
        let batch = log.wait(1).propose(
            Some("backfill_batch"),
            &bind(&step_sql(&rb, "backfill_batch"), &inputs),
            Some("15000 rows remain; one batch of 5000 keeps row locks short."),
            Some((1_204_332, 340_000_000)),
        );
        last_batch = batch.clone();
        if run == 2 {
            break;
        }
        if run == 0 {
            log.wait(30).approve(
                &batch,
                "alice",
                "batches of 5000 rows, replication lag is flat",
            );
            let fp = log.fingerprint_of(&batch);
            log.standing(
                &batch,
                &fp,
                "alice",
                "batches of 5000 rows, replication lag is flat",
            );
        } else {
            let fp = log.fingerprint_of(&batch);
            log.push(
                "approved",
                json!({"proposal": batch, "operator": "alice",
                       "reason": "batches of 5000 rows, replication lag is flat", "standing": fp}),
            );
        }
        log.start(&batch, "write");
        log.wait(2).finish(
            &batch,
            5000,
            1830,
            "5000 rows updated",
            json!({"updated": 5000}),
        );
        remaining -= 5000;
    }
    (log, rb, last_batch)
}

/// The app with a live session that received `log`'s events through
/// `update`, the clock at the last event.
fn live_app(log: &Log, rb: Option<RunbookInfo>, size: (u16, u16)) -> App {
    let target = log.events[0].data["target"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let info = SessionInfo {
        runbook: rb,
        target,
        environment: log.env.clone(),
        log_path: None,
    };
    let mut app = App::with_session(info, "alice", Theme::new(false), log.at);
    app.size = size;
    for ev in &log.events {
        assert_eq!(update(&mut app, Msg::Event(Box::new(ev.clone()))), None);
    }
    assert_eq!(update(&mut app, Msg::Tick(log.at)), None);
    app
}

fn key(c: char) -> Msg {
    Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

fn code(c: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

fn ctrl(c: char) -> Msg {
    Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

/// Sends the messages; returns every command they emitted.
fn press(app: &mut App, msgs: impl IntoIterator<Item = Msg>) -> Vec<Cmd> {
    msgs.into_iter().filter_map(|m| update(app, m)).collect()
}

fn typed(text: &str) -> Vec<Msg> {
    text.chars().map(key).collect()
}

fn render(app: &App) -> String {
    let (w, h) = app.size;
    let mut term = Terminal::new(TestBackend::new(w, h)).expect("a test terminal");
    term.draw(|f| view(app, f)).expect("drawn");
    term.backend().to_string()
}

fn buffer(app: &App) -> ratatui::buffer::Buffer {
    let (w, h) = app.size;
    let mut term = Terminal::new(TestBackend::new(w, h)).expect("a test terminal");
    term.draw(|f| view(app, f)).expect("drawn");
    term.backend().buffer().clone()
}

macro_rules! snap {
    ($name:expr, $app:expr) => {{
        let mut settings = insta::Settings::clone_current();
        settings.set_prepend_module_to_snapshot(false);
        settings.add_filter(r"\b[0-9a-f]{64}\b", "[hash]");
        settings.add_filter(r"\b20\d{6}T\d{6}Z-[0-9a-f]{6}\b", "[session-id]");
        settings.add_filter(r"\b\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}\b", "[date]");
        settings.add_filter(r"\b\d{2}:\d{2}:\d{2}\b", "[time]");
        settings.bind(|| insta::assert_snapshot!($name, render($app)));
    }};
}

fn home_app(size: (u16, u16)) -> App {
    let mut app = App::new(Screen::Home, "alice", Theme::new(false), t0());
    app.size = size;
    app.home.targets = vec![
        TargetInfo {
            name: "orders".into(),
            engine: "postgres".into(),
            environment: "prod".into(),
        },
        TargetInfo {
            name: "orders-staging".into(),
            engine: "postgres".into(),
            environment: "staging".into(),
        },
        TargetInfo {
            name: "demo".into(),
            engine: "sqlite".into(),
            environment: "dev".into(),
        },
    ];
    update(
        &mut app,
        Msg::RunbooksLoaded {
            runbooks: runbooks(),
            problems: 0,
        },
    );
    update(&mut app, Msg::SessionsScanned(session_rows()));
    app
}

fn session_rows() -> Vec<SessionRow> {
    vec![
        SessionRow {
            path: PathBuf::from(".ward/sessions/20261118T201500Z-1a2b3c.jsonl"),
            id: "20261118T201500Z-1a2b3c".into(),
            started: Some("2026-11-18T20:15:00.000Z".into()),
            operator: "alice".into(),
            runbook: "pg-lock-contention".into(),
            environment: "prod".into(),
            outcome: Some(Outcome::Concluded),
            verification: Verification::Ok { events: 41 },
        },
        SessionRow {
            path: PathBuf::from(".ward/sessions/20261117T220000Z-9f8e7d.jsonl"),
            id: "20261117T220000Z-9f8e7d".into(),
            started: Some("2026-11-17T22:00:00.000Z".into()),
            operator: "bob".into(),
            runbook: "pg-add-column-backfill".into(),
            environment: "staging".into(),
            outcome: Some(Outcome::AwaitingApproval),
            verification: Verification::Tampered {
                seq: 14,
                reason: "bad hash".into(),
            },
        },
    ]
}

// ------------------------------------------------------------------ home

#[test]
fn home_lists_runbooks_targets_and_sessions() {
    let app = home_app((160, 45));
    snap!("home_160x45", &app);
}

#[test]
fn home_filters_runbooks_by_text_and_alert_name() {
    let mut app = home_app((100, 30));
    press(&mut app, [key('/')]);
    press(&mut app, typed("lock"));
    let ids: Vec<&str> = app
        .home
        .visible()
        .iter()
        .map(|i| app.home.runbooks[*i].id.as_str())
        .collect();
    // "deadlocks" contains "lock" too.
    assert_eq!(ids, vec!["pg-deadlocks", "pg-lock-contention"]);
    snap!("home_filter_100x30", &app);
    // By alert name, case-insensitive.
    press(&mut app, [code(KeyCode::Esc), key('/')]);
    press(&mut app, typed("postgresreplicationlag"));
    let ids: Vec<&str> = app
        .home
        .visible()
        .iter()
        .map(|i| app.home.runbooks[*i].id.as_str())
        .collect();
    assert_eq!(ids, vec!["pg-replication-lag"]);
}

#[test]
fn enter_on_a_runbook_starts_it_on_the_chosen_target() {
    let mut app = home_app((100, 30));
    press(&mut app, [key('/')]);
    press(&mut app, typed("lock-contention"));
    press(&mut app, [code(KeyCode::Enter)]);
    // Choose the staging target, back to the runbooks, start.
    let cmds = press(
        &mut app,
        [
            code(KeyCode::Tab),
            key('j'),
            code(KeyCode::Enter),
            code(KeyCode::Enter),
        ],
    );
    assert_eq!(
        cmds,
        vec![Cmd::StartSession(LaunchRequest {
            runbook: "pg-lock-contention".into(),
            target: "orders-staging".into(),
            concurrent: Vec::new(),
        })]
    );
    // The launcher's answer switches to the live session.
    update(
        &mut app,
        Msg::Attached(SessionInfo {
            runbook: Some(runbook("pg-lock-contention")),
            target: "orders-staging".into(),
            environment: "staging".into(),
            log_path: None,
        }),
    );
    assert_eq!(app.screen, Screen::Session);
    assert!(app.session.as_ref().is_some_and(SessionView::is_live));
}

#[test]
fn enter_on_a_runbook_without_targets_says_so_and_starts_nothing() {
    let mut app = home_app((100, 30));
    app.home.targets.clear();
    assert_eq!(press(&mut app, [code(KeyCode::Enter)]), vec![]);
    assert!(app.notice.as_ref().is_some_and(|n| n.error));
}

// ------------------------------------------------------------------ session

#[test]
fn session_shows_steps_in_every_status_with_spinner_and_elapsed() {
    let (log, rb) = lock_session();
    let mut app = live_app(&log, Some(rb), (160, 45));
    // The proposal waiting for approval opened the dialog; Esc closes it
    // (approving nothing) to show the screen beneath.
    assert!(app.dialog.is_some());
    assert_eq!(press(&mut app, [code(KeyCode::Esc)]), vec![]);
    let rows = app.session.as_ref().expect("session").step_rows();
    let statuses: Vec<(&str, StepStatus)> =
        rows.iter().map(|r| (r.id.as_str(), r.status)).collect();
    assert_eq!(
        statuses,
        vec![
            ("lock_headline", StepStatus::Done),
            ("blocking_tree", StepStatus::Done),
            ("lock_waits_by_object", StepStatus::Failed),
            ("blocker_detail", StepStatus::Done),
            ("blocker_locks", StepStatus::Running),
            ("ddl_waiter", StepStatus::Pending),
            ("cancel_ddl_waiter", StepStatus::Pending),
            ("cancel_root_blocker", StepStatus::AwaitingApproval),
            ("terminate_root_blocker", StepStatus::Pending),
            ("ad-hoc #1", StepStatus::Denied),
        ]
    );
    snap!("session_live_160x45", &app);
    app.size = (100, 30);
    snap!("session_live_100x30", &app);
}

#[test]
fn a_sealed_session_marks_unproposed_steps_skipped() {
    let (mut log, rb) = lock_session();
    log.push(
        "concluded",
        json!({"text": "Root blocker pid 4242 (idle in transaction) blocks 3 sessions.", "recommendation": "terminate it"}),
    );
    log.push(
        "session_ended",
        json!({"outcome": "awaiting_approval", "unapproved": []}),
    );
    let app = live_app(&log, Some(rb), (100, 30));
    let rows = app.session.as_ref().expect("session").step_rows();
    let terminate = rows
        .iter()
        .find(|r| r.id == "terminate_root_blocker")
        .expect("row");
    assert_eq!(terminate.status, StepStatus::Skipped);
    assert!(
        app.dialog.is_none(),
        "a sealed session offers nothing to approve"
    );
}

#[test]
fn detail_of_a_write_step_shows_lock_rules_table_rollback_and_history() {
    let (log, rb, _) = backfill_session("staging");
    let mut app = live_app(&log, Some(rb), (160, 45));
    press(&mut app, [code(KeyCode::Esc)]);
    let s = app.session.as_ref().expect("session");
    let (p, row) = s.detail_target();
    assert_eq!(row.map(|r| r.id), Some("backfill_batch".to_string()));
    let p = p.expect("a proposal");
    assert_eq!(p.risk, Some(crate::sql::Risk::Write));
    assert_eq!(p.rules, vec!["changes-need-approval".to_string()]);
    snap!("detail_write_step_160x45", &app);
}

#[test]
fn detail_of_a_schema_step_shows_findings_with_advice_and_verify() {
    let rb = runbook("pg-add-column-backfill");
    let mut log = Log::new("pg-add-column-backfill", "orders", "prod", "alice");
    log.wait(1).propose(
        Some("set_not_null"),
        &bind(
            &step_sql(&rb, "set_not_null"),
            &[("table", "orders"), ("column", "total_cents_big")],
        ),
        None,
        Some((1_204_332, 340_000_000)),
    );
    let mut app = live_app(&log, Some(rb), (160, 45));
    press(&mut app, [code(KeyCode::Esc)]);
    let s = app.session.as_ref().expect("session");
    let p = s.detail_target().0.expect("proposal");
    assert!(
        p.findings.contains(&"set-not-null-scans-table".to_string()),
        "{:?}",
        p.findings
    );
    snap!("detail_schema_step_160x45", &app);
}

#[test]
fn blocking_chain_is_drawn_as_a_tree_from_the_facts() {
    let (log, rb) = lock_session();
    let mut app = live_app(&log, Some(rb), (160, 45));
    press(&mut app, [code(KeyCode::Esc)]);
    // Select blocking_tree in the step list.
    press(&mut app, [key('g'), key('j')]);
    let s = app.session.as_ref().expect("session");
    assert_eq!(
        s.detail_target().1.map(|r| r.id),
        Some("blocking_tree".to_string())
    );
    snap!("blocking_tree_160x45", &app);
}

#[test]
fn numbers_sampled_more_than_once_get_sparklines() {
    let (log, rb, _) = backfill_session("staging");
    let mut app = live_app(&log, Some(rb), (160, 45));
    press(&mut app, [code(KeyCode::Esc)]);
    press(&mut app, [key('g'), key('j'), key('j')]);
    let s = app.session.as_ref().expect("session");
    assert_eq!(
        s.detail_target().1.map(|r| r.id),
        Some("backfill_progress".to_string())
    );
    let series = super::pictures::series(&s.state, "backfill_progress");
    let remaining = series
        .iter()
        .find(|x| x.name == "remaining")
        .expect("remaining");
    assert_eq!(remaining.values, vec![15000.0, 10000.0, 5000.0]);
    assert!(
        series.iter().all(|x| x.name != "state"),
        "text facts are not plotted"
    );
    snap!("sparklines_160x45", &app);
}

#[test]
fn transcript_cells_wrap_to_any_width() {
    let (log, rb) = lock_session();
    let app = live_app(&log, Some(rb), (160, 45));
    let s = app.session.as_ref().expect("session");
    for w in [12u16, 40, 77, 200] {
        for c in &s.cells {
            for l in c.display_lines(w, &app.theme) {
                assert!(l.width() <= usize::from(w.max(10)), "{l:?} at {w}");
            }
        }
    }
}

// ------------------------------------------------------------------ dialog

/// A live session whose last proposal waits for approval; the dialog is
/// open in its first stage.
fn waiting(env: &str) -> App {
    let (log, rb, _) = backfill_session(env);
    let app = live_app(&log, Some(rb), (100, 30));
    assert_eq!(
        app.dialog.as_ref().map(|d| d.mode),
        Some(DialogMode::Choose)
    );
    app
}

/// A destructive ad-hoc statement in prod: two approvers, alice approved.
fn two_person(operator: &str) -> App {
    let mut log = Log::new("pg-lock-contention", "orders", "prod", "alice");
    let p = log.wait(3).propose(
        None,
        "TRUNCATE orders_archive",
        Some("The archive holds 40 GB of rows nobody reads."),
        Some((48_000_000, 40_000_000_000)),
    );
    log.wait(40)
        .approve(&p, "alice", "checked with the archive owner");
    let mut app = live_app(&log, Some(runbook("pg-lock-contention")), (100, 30));
    app.operator = operator.into();
    app
}

#[test]
fn dialog_snapshots() {
    let mut app = waiting("staging");
    snap!("dialog_choose_100x30", &app);
    press(&mut app, [key('a'), code(KeyCode::Enter)]);
    snap!("dialog_empty_reason_100x30", &app);
    press(&mut app, typed("lag is flat, batches are small"));
    snap!("dialog_reason_typed_for_session_offered_100x30", &app);

    let mut app = waiting("prod");
    press(&mut app, [key('a')]);
    press(&mut app, typed("lag is flat"));
    press(&mut app, [code(KeyCode::Tab)]);
    snap!("dialog_prod_confirmation_required_100x30", &app);
    press(&mut app, typed("production"));
    press(&mut app, [code(KeyCode::Enter)]);
    snap!("dialog_prod_typed_wrong_100x30", &app);
    for _ in 0.."production".len() {
        press(&mut app, [code(KeyCode::Backspace)]);
    }
    press(&mut app, typed("prod"));
    snap!("dialog_prod_typed_right_100x30", &app);

    let mut app = two_person("bob");
    press(&mut app, [key('a')]);
    snap!("dialog_two_approvers_one_in_not_offered_100x30", &app);
    app.size = (160, 45);
    snap!("dialog_two_approvers_one_in_not_offered_160x45", &app);
}

fn approve_op(app: &App, reason: &str, for_session: bool) -> Cmd {
    let d = app.dialog.as_ref().expect("dialog open");
    Cmd::SendOp(Op::Approve {
        proposal: d.proposal.clone(),
        operator: "alice".into(),
        reason: reason.into(),
        for_session,
    })
}

#[test]
fn a_without_a_reason_does_not_approve() {
    let mut app = waiting("staging");
    assert_eq!(press(&mut app, [key('a'), code(KeyCode::Enter)]), vec![]);
    let d = app.dialog.as_ref().expect("still open");
    assert_eq!(d.error.as_deref(), Some("an approval needs a reason"));
    // Spaces are no reason either.
    assert_eq!(
        press(&mut app, [key(' '), key(' '), code(KeyCode::Enter)]),
        vec![]
    );
}

#[test]
fn a_reason_and_enter_approve_once_then_the_dialog_closes() {
    let mut app = waiting("staging");
    press(&mut app, [key('a')]);
    press(&mut app, typed("lag is flat"));
    let want = approve_op(&app, "lag is flat", false);
    assert_eq!(press(&mut app, [code(KeyCode::Enter)]), vec![want]);
    assert!(app.dialog.is_none());
    assert_eq!(press(&mut app, [code(KeyCode::Enter)]), vec![]);
}

#[test]
fn esc_in_the_dialog_approves_nothing_and_rejects_nothing() {
    for stage in [vec![], vec![key('a')], vec![key('r')]] {
        let mut app = waiting("staging");
        press(&mut app, stage);
        press(&mut app, typed("a reason"));
        assert_eq!(press(&mut app, [code(KeyCode::Esc)]), vec![]);
        assert!(app.dialog.is_none());
        let s = app.session.as_ref().expect("session");
        assert_eq!(s.state.awaiting_approval().len(), 1, "still waiting");
    }
}

#[test]
fn ctrl_c_in_the_dialog_closes_it_without_approving_or_quitting() {
    let mut app = waiting("staging");
    press(&mut app, [key('a')]);
    press(&mut app, typed("lag is flat"));
    assert_eq!(press(&mut app, [ctrl('c')]), vec![]);
    assert!(app.dialog.is_none());
    assert_eq!(app.screen, Screen::Session);
}

#[test]
fn prod_approval_without_the_environment_name_emits_nothing() {
    let mut app = waiting("prod");
    press(&mut app, [key('a')]);
    press(&mut app, typed("lag is flat"));
    assert_eq!(press(&mut app, [code(KeyCode::Enter)]), vec![]);
    let d = app.dialog.as_ref().expect("open");
    assert_eq!(
        d.field,
        Field::Confirm,
        "the cursor goes to what is missing"
    );
    press(&mut app, typed("PROD"));
    assert_eq!(
        press(&mut app, [code(KeyCode::Enter)]),
        vec![],
        "the name must match exactly"
    );
    for _ in 0..4 {
        press(&mut app, [code(KeyCode::Backspace)]);
    }
    press(&mut app, typed("prod"));
    let want = approve_op(&app, "lag is flat", false);
    assert_eq!(press(&mut app, [code(KeyCode::Enter)]), vec![want]);
}

#[test]
fn r_with_a_reason_sends_the_rejection_with_that_reason() {
    let mut app = waiting("staging");
    assert_eq!(press(&mut app, [key('r'), code(KeyCode::Enter)]), vec![]);
    press(&mut app, typed("wait for the nightly job to finish"));
    let proposal = app.dialog.as_ref().expect("open").proposal.clone();
    assert_eq!(
        press(&mut app, [code(KeyCode::Enter)]),
        vec![Cmd::SendOp(Op::Reject {
            proposal,
            operator: "alice".into(),
            reason: "wait for the nightly job to finish".into(),
        })]
    );
}

#[test]
fn approving_for_the_session_is_offered_for_writes_and_sent_when_ticked() {
    let mut app = waiting("staging");
    press(&mut app, [key('a')]);
    press(&mut app, typed("batches are small"));
    press(&mut app, [code(KeyCode::Tab), key(' ')]);
    let d = app.dialog.as_ref().expect("open");
    assert_eq!((d.field, d.for_session), (Field::ForSession, true));
    let want = approve_op(&app, "batches are small", true);
    assert_eq!(press(&mut app, [code(KeyCode::Enter)]), vec![want]);
}

#[test]
fn approving_for_the_session_is_never_offered_for_two_person_rules() {
    let mut app = two_person("bob");
    press(&mut app, [key('a')]);
    let s = app.session.as_ref().expect("session");
    let d = app.dialog.as_ref().expect("open");
    assert_eq!(
        super::app::dialog_fields(d, s),
        vec![Field::Reason, Field::Confirm]
    );
    // Space types into the reason; there is no box to tick.
    press(&mut app, typed("archive owner agrees"));
    press(&mut app, [code(KeyCode::Tab)]);
    press(&mut app, typed("prod"));
    press(&mut app, [code(KeyCode::Tab), key(' ')]);
    let cmds = press(&mut app, [code(KeyCode::Enter)]);
    let [
        Cmd::SendOp(Op::Approve {
            for_session,
            reason,
            operator,
            ..
        }),
    ] = cmds.as_slice()
    else {
        panic!("{cmds:?}");
    };
    assert_eq!(
        (*for_session, reason.as_str(), operator.as_str()),
        (false, "archive owner agrees", "bob")
    );
}

#[test]
fn the_same_operator_cannot_give_the_second_of_two_approvals() {
    let mut app = two_person("alice");
    press(&mut app, [key('a')]);
    press(&mut app, typed("still fine"));
    press(&mut app, [code(KeyCode::Tab)]);
    press(&mut app, typed("prod"));
    assert_eq!(press(&mut app, [code(KeyCode::Enter)]), vec![]);
    let err = app.dialog.as_ref().and_then(|d| d.error.clone());
    assert!(
        err.as_deref()
            .is_some_and(|e| e.contains("different operator")),
        "{err:?}"
    );
}

#[test]
fn the_dialog_closes_when_the_proposal_is_decided_elsewhere() {
    let (mut log, rb, batch) = backfill_session("staging");
    let mut app = live_app(&log, Some(rb), (100, 30));
    press(&mut app, [key('a')]);
    press(&mut app, typed("half-typed"));
    log.push(
        "rejected",
        json!({"proposal": batch, "operator": "bob", "reason": "hold on"}),
    );
    let last = log.events.last().cloned().expect("event");
    update(&mut app, Msg::Event(Box::new(last)));
    assert!(app.dialog.is_none());
    assert_eq!(press(&mut app, [code(KeyCode::Enter)]), vec![]);
}

#[test]
fn a_paste_never_submits() {
    let mut app = waiting("staging");
    press(&mut app, [key('a')]);
    assert_eq!(press(&mut app, [Msg::Paste("looks fine\n".into())]), vec![]);
    assert_eq!(
        app.dialog.as_ref().map(|d| d.reason.as_str()),
        Some("looks fine ")
    );
}

// ------------------------------------------------------------------ live keys

#[test]
fn esc_cancels_a_running_query_only_when_pressed_twice() {
    let (log, rb) = lock_session();
    let mut app = live_app(&log, Some(rb), (100, 30));
    press(&mut app, [code(KeyCode::Esc)]); // closes the approval dialog
    assert_eq!(press(&mut app, [code(KeyCode::Esc)]), vec![]);
    assert!(
        app.notice
            .as_ref()
            .is_some_and(|n| n.text.contains("Esc again"))
    );
    // Another key in between disarms it.
    assert_eq!(press(&mut app, [key('j'), code(KeyCode::Esc)]), vec![]);
    assert_eq!(
        press(&mut app, [code(KeyCode::Esc)]),
        vec![Cmd::SendOp(Op::Cancel)]
    );
}

#[test]
fn quitting_a_live_session_asks_then_leaves_it_waiting() {
    let (log, rb) = lock_session();
    let mut app = live_app(&log, Some(rb), (100, 30));
    press(&mut app, [code(KeyCode::Esc)]);
    assert_eq!(press(&mut app, [key('q')]), vec![]);
    assert_eq!(
        press(&mut app, [key('q')]),
        vec![Cmd::Batch(vec![Cmd::SendOp(Op::Leave), Cmd::Quit])]
    );
}

#[test]
fn standing_approvals_are_listed_and_revocable() {
    let (log, rb, batch) = backfill_session("staging");
    let fp = log.fingerprint_of(&batch);
    let mut app = live_app(&log, Some(rb), (100, 30));
    press(&mut app, [code(KeyCode::Esc)]);
    press(&mut app, [key('S')]);
    snap!("standing_list_100x30", &app);
    assert_eq!(
        press(&mut app, [key('x')]),
        vec![Cmd::SendOp(Op::Revoke {
            fingerprint: fp,
            operator: "alice".into(),
        })]
    );
}

#[test]
fn the_agents_question_is_answered_with_typed_text_and_esc_sends_nothing() {
    let (mut log, rb) = lock_session();
    log.push(
        "asked",
        json!({"question": "Is billing-worker allowed to be restarted during business hours?"}),
    );
    let mut app = live_app(&log, Some(rb), (100, 30));
    press(&mut app, [code(KeyCode::Esc)]);
    press(&mut app, [key('A')]);
    press(&mut app, typed("yes, it retries"));
    snap!("answer_100x30", &app);
    assert_eq!(press(&mut app, [code(KeyCode::Esc)]), vec![]);
    assert_eq!(app.answer, None);
    press(&mut app, [key('A')]);
    assert_eq!(press(&mut app, [code(KeyCode::Enter)]), vec![], "empty");
    press(&mut app, typed("yes, it retries"));
    assert_eq!(
        press(&mut app, [code(KeyCode::Enter)]),
        vec![Cmd::SendOp(Op::Answer {
            operator: "alice".into(),
            text: "yes, it retries".into(),
        })]
    );
}

#[test]
fn help_lists_the_same_keys_as_the_status_bar() {
    let (log, rb) = lock_session();
    let mut app = live_app(&log, Some(rb), (100, 30));
    press(&mut app, [code(KeyCode::Esc), key('?')]);
    assert_eq!(app.overlay, Some(Overlay::Help { scroll: 0 }));
    snap!("help_100x30", &app);
    app.size = (160, 45);
    snap!("help_160x45", &app);
    press(&mut app, [code(KeyCode::Esc)]);
    assert_eq!(app.overlay, None);
}

#[test]
fn mouse_wheel_scrolls_the_transcript_and_end_follows_again() {
    let (log, rb) = lock_session();
    let mut app = live_app(&log, Some(rb), (100, 30));
    press(&mut app, [code(KeyCode::Esc)]);
    let lay = app
        .session
        .as_ref()
        .expect("a session")
        .layout(ratatui::layout::Rect::new(0, 0, 100, 30));
    let wheel = |kind| {
        Msg::Mouse(MouseEvent {
            kind,
            column: lay.transcript.x + 2,
            row: lay.transcript.y + 2,
            modifiers: KeyModifiers::NONE,
        })
    };
    press(&mut app, [wheel(MouseEventKind::ScrollUp)]);
    let s = app.session.as_ref().expect("session");
    assert!(!s.scroll.follow);
    let up = s.scroll;
    press(&mut app, [wheel(MouseEventKind::ScrollUp)]);
    let s = app.session.as_ref().expect("session");
    assert!((s.scroll.top, s.scroll.line) < (up.top, up.line));
    for _ in 0..50 {
        press(&mut app, [wheel(MouseEventKind::ScrollDown)]);
    }
    assert!(app.session.as_ref().expect("session").scroll.follow);
}

#[test]
fn resize_changes_the_layout_not_the_state() {
    let (log, rb) = lock_session();
    let mut app = live_app(&log, Some(rb), (100, 30));
    let before = app.session.clone();
    update(&mut app, Msg::Resize(60, 20));
    assert_eq!(app.size, (60, 20));
    assert_eq!(app.session, before);
    // Tiny terminals render without panicking.
    for size in [(20, 5), (1, 1), (60, 20), (240, 70)] {
        app.size = size;
        let _ = render(&app);
    }
}

// ------------------------------------------------------------------ audit viewer

fn write_log(dir: &Path, name: &str, events: &[Event]) -> PathBuf {
    let path = dir.join(format!("{name}.jsonl"));
    let text: String = events
        .iter()
        .map(|e| format!("{}\n", e.canonical_line()))
        .collect();
    std::fs::write(&path, text).expect("write log");
    path
}

fn sealed_lock_log() -> Log {
    let (mut log, _) = lock_session();
    // Finish what runs; the rest is left to the next operator.
    let running = log
        .events
        .iter()
        .rev()
        .find(|e| e.kind == "executing")
        .map(|e| e.data["proposal"].as_str().unwrap_or_default().to_string())
        .expect("running");
    log.finish(
        &running,
        6,
        35,
        "relation orders RowExclusiveLock granted",
        json!({"locks": 6}),
    );
    log.push(
        "concluded",
        json!({"text": "Root blocker pid 4242 (billing-worker, idle in transaction for 5m) blocks 3 sessions.", "recommendation": "terminate_root_blocker"}),
    );
    log.push(
        "session_ended",
        json!({"outcome": "awaiting_approval", "unapproved": []}),
    );
    log
}

#[test]
fn audit_viewer_lists_sessions_with_their_verification_and_replays_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = sealed_lock_log();
    let good = write_log(dir.path(), "20261118T201500Z-1a2b3c", &log.events);
    // The same session with one reason edited after the fact.
    let mut bad = log.events.clone();
    let i = bad
        .iter()
        .position(|e| e.kind == "summarized")
        .expect("a summary");
    bad[i].data["summary"] = json!("nothing to see here");
    write_log(dir.path(), "20261117T220000Z-9f8e7d", &bad);

    let rows = scan_sessions(dir.path());
    let verdicts: Vec<(&str, &Verification)> = rows
        .iter()
        .map(|r| (r.id.as_str(), &r.verification))
        .collect();
    assert!(matches!(
        verdicts[0],
        ("20261118T201500Z-1a2b3c", Verification::Ok { .. })
    ));
    assert!(matches!(
        verdicts[1],
        ("20261117T220000Z-9f8e7d", Verification::Tampered { .. })
    ));

    let mut app = App::new(Screen::Audit, "carol", Theme::new(false), t0());
    app.size = (160, 45);
    update(
        &mut app,
        Msg::RunbooksLoaded {
            runbooks: runbooks(),
            problems: 0,
        },
    );
    update(&mut app, Msg::SessionsScanned(rows));
    snap!("audit_list_160x45", &app);
    app.size = (100, 30);
    snap!("audit_list_100x30", &app);

    // Enter asks for the log; the answer opens the replay at its start.
    let cmds = press(&mut app, [code(KeyCode::Enter)]);
    let [Cmd::OpenSession { request, path }] = cmds.as_slice() else {
        panic!("{cmds:?}");
    };
    assert_eq!(path, &good);
    let (events, verification) = crate::audit::read_events(path).expect("readable");
    update(
        &mut app,
        Msg::Loaded {
            request: *request,
            result: Ok(LoadedSession {
                path: path.clone(),
                events,
                verification,
                runbook: None,
            }),
        },
    );
    assert_eq!(app.screen, Screen::Session);
    let s = app.session.as_ref().expect("replay");
    assert_eq!(s.replay.as_ref().map(|r| r.cursor), Some(1));
    // Step by step, then to the end.
    press(&mut app, [key('n'), key('n'), key('n')]);
    assert_eq!(
        app.session
            .as_ref()
            .and_then(|s| s.replay.as_ref())
            .map(|r| r.cursor),
        Some(4)
    );
    press(&mut app, [key('p')]);
    assert_eq!(
        app.session
            .as_ref()
            .and_then(|s| s.replay.as_ref())
            .map(|r| r.cursor),
        Some(3)
    );
    press(&mut app, [key('N')]);
    let s = app.session.as_ref().expect("replay");
    assert!(s.state.sealed);
    assert!(app.dialog.is_none(), "a replay never offers approval");
    assert_eq!(press(&mut app, [key('a')]), vec![]);
    app.size = (160, 45);
    snap!("audit_replay_verified_160x45", &app);

    // Back to the list, open the tampered one.
    press(&mut app, [code(KeyCode::Esc), key('j')]);
    assert_eq!(app.screen, Screen::Audit);
    let cmds = press(&mut app, [code(KeyCode::Enter)]);
    let [Cmd::OpenSession { request, path }] = cmds.as_slice() else {
        panic!("{cmds:?}");
    };
    let (events, verification) = crate::audit::read_events(path).expect("readable");
    update(
        &mut app,
        Msg::Loaded {
            request: *request,
            result: Ok(LoadedSession {
                path: path.clone(),
                events,
                verification,
                runbook: None,
            }),
        },
    );
    // Step up to just past the edited event: the marker says where the
    // log stops verifying.
    press(&mut app, (0..8).map(|_| key('n')));
    let s = app.session.as_ref().expect("replay");
    assert!(
        s.cells
            .iter()
            .any(|c| matches!(c.body, Body::Tampered { .. }))
    );
    app.size = (100, 30);
    snap!("audit_replay_tampered_100x30", &app);
}

#[test]
fn a_stale_answer_to_an_open_request_is_dropped() {
    let mut app = home_app((100, 30));
    press(&mut app, [code(KeyCode::Tab), code(KeyCode::Tab)]);
    let first = press(&mut app, [code(KeyCode::Enter)]);
    let second = press(&mut app, [key('j'), code(KeyCode::Enter)]);
    let (Cmd::OpenSession { request: r1, .. }, Cmd::OpenSession { request: r2, .. }) =
        (&first[0], &second[0])
    else {
        panic!("{first:?} {second:?}");
    };
    assert_ne!(r1, r2);
    let loaded = |request| Msg::Loaded {
        request,
        result: Ok(LoadedSession {
            path: PathBuf::from("x.jsonl"),
            events: sealed_lock_log().events,
            verification: Verification::Ok { events: 1 },
            runbook: None,
        }),
    };
    update(&mut app, loaded(*r1));
    assert_eq!(app.screen, Screen::Home, "the first answer is stale");
    update(&mut app, loaded(*r2));
    assert_eq!(app.screen, Screen::Session);
}

// ------------------------------------------------------------------ NO_COLOR

#[test]
fn no_color_draws_without_colours_and_still_marks_prod() {
    let (log, rb) = lock_session();
    let mut app = live_app(&log, Some(rb), (100, 30));
    app.theme = Theme::new(true);
    let buf = buffer(&app);
    for cell in &buf.content {
        assert_eq!((cell.fg, cell.bg), (Color::Reset, Color::Reset), "{cell:?}");
    }
    // The prod badge is spelled out and reversed.
    let status_row = buf.area.height - 2;
    let badge: String = (0..6)
        .map(|x| buf[(x, status_row)].symbol().to_string())
        .collect();
    assert_eq!(badge, " PROD ");
    assert!(
        buf[(1, status_row)]
            .modifier
            .contains(ratatui::style::Modifier::REVERSED)
    );
    snap!("no_color_dialog_100x30", &app);

    // With colour, prod is white on red.
    app.theme = Theme::new(false);
    let buf = buffer(&app);
    assert_eq!(
        (buf[(1, status_row)].fg, buf[(1, status_row)].bg),
        (Color::White, Color::Red)
    );
}

// ------------------------------------------------------------------ the loop

#[tokio::test]
async fn the_loop_sends_the_approval_typed_at_the_keyboard_and_quits() {
    use crossterm::event::Event as TermEvent;
    let (log, rb, batch) = backfill_session("staging");
    let (channels, events_tx, mut ops_rx) = SessionChannels::pair();
    for ev in &log.events {
        events_tx.send(ev.clone()).expect("send");
    }
    let info = SessionInfo {
        runbook: Some(rb),
        target: "orders".into(),
        environment: "staging".into(),
        log_path: None,
    };
    let app = App::with_session(info, "alice", Theme::new(false), log.at);
    let rt = super::runtime::Runtime::new(Some(channels), None);
    let mut keys: Vec<TermEvent> = Vec::new();
    let k = |c: KeyCode| TermEvent::Key(KeyEvent::new(c, KeyModifiers::NONE));
    keys.push(k(KeyCode::Char('a')));
    keys.extend("lag is flat".chars().map(|c| k(KeyCode::Char(c))));
    keys.push(k(KeyCode::Enter));
    keys.push(k(KeyCode::Char('q')));
    keys.push(k(KeyCode::Char('q')));
    // Keys arrive only once the session's events are in.
    let input = futures_util::stream::iter(keys.into_iter().map(Ok)).then(|e| async move {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        e
    });
    let mut term = Terminal::new(TestBackend::new(100, 30)).expect("terminal");
    let (_, exit) = super::runtime::run_loop(&mut term, app, rt, input)
        .await
        .expect("the loop ends");
    assert_eq!(
        ops_rx.recv().await,
        Some(Op::Approve {
            proposal: batch.into(),
            operator: "alice".into(),
            reason: "lag is flat".into(),
            for_session: false,
        })
    );
    assert_eq!(ops_rx.recv().await, Some(Op::Leave));
    assert_eq!(
        exit,
        TuiExit {
            outcome: None,
            left: true
        }
    );
}

#[test]
fn counts_of_one_read_in_the_singular_in_the_live_view() {
    let rb = runbook("pg-lock-contention");
    let mut log = Log::new("pg-lock-contention", "orders", "prod", "alice");
    let p = log.wait(1).propose(
        Some("lock_headline"),
        &step_sql(&rb, "lock_headline"),
        None,
        Some((1, 8192)),
    );
    log.start(&p, "read_only");
    log.wait(1).finish(&p, 1, 4, "one row", json!({}));
    let screen = render(&live_app(&log, Some(rb), (160, 45)));
    assert!(screen.contains("1 row · "), "{screen}");
    for wrong in ["1 rows", "1 entries"] {
        assert!(!screen.contains(wrong), "{wrong}:\n{screen}");
    }
}

// ------------------------------------------------------------------ issue 12

/// The lock session cut where it stands: `blocker_locks` executing, no
/// outcome, no `session_ended` (the process died).
fn crashed_lock_log() -> Log {
    let (log, _) = lock_session();
    assert_eq!(
        log.events.last().map(|e| e.kind.as_str()),
        Some("executing")
    );
    log
}

/// The replay of `events` read back from a file, at its first event.
fn replay_app(dir: &Path, name: &str, events: &[Event], rb: Option<RunbookInfo>) -> App {
    let path = write_log(dir, name, events);
    let mut app = App::new(Screen::Audit, "carol", Theme::new(false), t0());
    app.size = (160, 45);
    update(
        &mut app,
        Msg::RunbooksLoaded {
            runbooks: rb.into_iter().collect(),
            problems: 0,
        },
    );
    update(&mut app, Msg::SessionsScanned(scan_sessions(dir)));
    let cmds = press(&mut app, [code(KeyCode::Enter)]);
    let [
        Cmd::OpenSession {
            request,
            path: asked,
        },
    ] = cmds.as_slice()
    else {
        panic!("{cmds:?}");
    };
    assert_eq!(asked, &path);
    let loaded = open_session(asked).expect("readable");
    update(
        &mut app,
        Msg::Loaded {
            request: *request,
            result: Ok(loaded),
        },
    );
    assert_eq!(app.screen, Screen::Session);
    app
}

fn step_row(app: &App, id: &str) -> StepRow {
    app.session
        .as_ref()
        .expect("a session")
        .step_rows()
        .into_iter()
        .find(|r| r.id == id)
        .expect("the row")
}

#[test]
fn replay_of_unsealed_session_shows_interrupted_not_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = crashed_lock_log();
    let mut app = replay_app(
        dir.path(),
        "20261118T201500Z-1a2b3c",
        &log.events,
        Some(runbook("pg-lock-contention")),
    );
    // The replay is looked at a day later: nothing may count up to now.
    app.now = t0() + Duration::days(1);
    let s = app.session.as_ref().expect("replay");
    assert!(matches!(
        s.replay.as_ref().map(|r| &r.verification),
        Some(Verification::Unsealed { .. })
    ));

    // Half way through the replay the step is running, as it was then:
    // its time counts to the event on screen, and nothing spins.
    // (`lock_waits_by_object` started, its timeout not yet logged.)
    let failed = log
        .events
        .iter()
        .position(|e| e.kind == "failed")
        .expect("a failure");
    app.session.as_mut().expect("replay").seek(failed);
    assert_eq!(
        step_row(&app, "lock_waits_by_object").status,
        StepStatus::Running
    );
    let screen = render(&app);
    assert!(screen.contains("▶ lock_waits_by_object"), "{screen}");
    assert!(screen.contains("running 0s"), "{screen}");
    assert!(
        !SPINNER_FRAMES.iter().any(|c| screen.contains(*c)),
        "{screen}"
    );

    // At the end of the log, its outcome was never recorded.
    press(&mut app, [key('N')]);
    assert_eq!(
        step_row(&app, "blocker_locks").status,
        StepStatus::Interrupted
    );
    assert!(!app.animating());
    let screen = render(&app);
    assert!(
        screen.contains("interrupted — no outcome recorded"),
        "{screen}"
    );
    assert!(!screen.contains("running"), "{screen}");
    assert!(
        !SPINNER_FRAMES.iter().any(|c| screen.contains(*c)),
        "{screen}"
    );
    // The elapsed time stops at the last event (25 s in), not a day later.
    assert!(screen.contains("elapsed 25s"), "{screen}");
    assert!(
        screen.contains("1 interrupted, outcome unknown"),
        "{screen}"
    );
    assert!(screen.contains("1 never approved"), "{screen}");
    snap!("replay_interrupted_160x45", &app);
}

const SPINNER_FRAMES: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

#[test]
fn a_live_session_whose_engine_goes_shows_its_running_step_interrupted() {
    let log = crashed_lock_log();
    let mut app = live_app(&log, Some(runbook("pg-lock-contention")), (160, 45));
    press(&mut app, [code(KeyCode::Esc)]);
    assert_eq!(step_row(&app, "blocker_locks").status, StepStatus::Running);
    assert!(app.animating());
    update(&mut app, Msg::EngineGone);
    update(&mut app, Msg::Tick(log.at + Duration::minutes(5)));
    assert_eq!(
        step_row(&app, "blocker_locks").status,
        StepStatus::Interrupted
    );
    assert!(!app.animating(), "nothing moves once the engine is gone");
    let screen = render(&app);
    assert!(
        screen.contains("interrupted — no outcome recorded"),
        "{screen}"
    );
    assert!(
        !SPINNER_FRAMES.iter().any(|c| screen.contains(*c)),
        "{screen}"
    );
    assert!(
        !screen.contains("elapsed 5m"),
        "the clock stopped with the engine: {screen}"
    );
}

/// The status bar's second line.
fn key_line(app: &App) -> String {
    let b = buffer(app);
    let y = b.area.height - 1;
    (0..b.area.width)
        .map(|x| b[(x, y)].symbol().to_string())
        .collect::<String>()
}

#[test]
fn status_bar_keeps_help_and_quit_at_120_columns_with_message() {
    let (log, rb) = lock_session();
    let mut app = live_app(&log, Some(rb), (120, 40));
    // Esc closes the dialog, which leaves a message in the bar.
    press(&mut app, [code(KeyCode::Esc)]);
    assert!(app.notice.is_some());
    let line = key_line(&app);
    assert!(line.contains("? help"), "{line}");
    assert!(line.contains("q/Ctrl-C quit"), "{line}");
    assert!(line.contains("closed: nothing approved"), "{line}");
    // A message longer than the line is cut; the keys stay.
    app.notice = Some(Notice {
        text: "x".repeat(300),
        error: true,
    });
    let line = key_line(&app);
    assert!(line.contains("? help"), "{line}");
    assert!(line.contains("q/Ctrl-C quit"), "{line}");
    assert!(line.contains("xxx…"), "{line}");
    // Even at 60 columns.
    app.size = (60, 30);
    let line = key_line(&app);
    assert!(line.contains("? help"), "{line}");
    assert!(line.contains("q/Ctrl-C quit"), "{line}");
}

#[test]
fn ended_session_offers_no_approve_keys() {
    let (mut log, rb) = lock_session();
    let live = live_app(&log, Some(rb.clone()), (120, 40));
    let line = key_line(&live);
    assert!(line.contains("a approve"), "while it runs: {line}");

    log.push(
        "session_ended",
        json!({"outcome": "awaiting_approval", "unapproved": []}),
    );
    let mut app = live_app(&log, Some(rb.clone()), (120, 40));
    let line = key_line(&app);
    for gone in ["approve", "reject", "cancel query", "answer"] {
        assert!(!line.contains(gone), "{gone} offered after the end: {line}");
    }
    assert!(line.contains("? help") && line.contains("quit"), "{line}");
    // And the keys do nothing either.
    assert_eq!(
        press(&mut app, [key('a'), key('r'), code(KeyCode::Esc)]),
        vec![]
    );
    assert!(app.dialog.is_none());

    // The same once the engine has gone without sealing.
    let (log, _) = lock_session();
    let mut app = live_app(&log, Some(rb), (120, 40));
    press(&mut app, [code(KeyCode::Esc)]);
    update(&mut app, Msg::EngineGone);
    let line = key_line(&app);
    assert!(!line.contains("approve"), "{line}");
    assert!(!line.contains("cancel query"), "{line}");
}

#[test]
fn opening_the_approval_form_clears_a_stale_message() {
    let mut app = waiting("staging");
    press(&mut app, [code(KeyCode::Esc)]);
    assert!(app.notice.is_some(), "closing leaves a message");
    press(&mut app, [key('a')]);
    assert_eq!(
        app.dialog.as_ref().map(|d| d.mode),
        Some(DialogMode::Approve)
    );
    assert_eq!(app.notice, None);
    assert!(!key_line(&app).contains("closed:"));

    // From the dialog's first stage too.
    let mut app = waiting("staging");
    app.notice = Some(Notice {
        text: "an old message".into(),
        error: false,
    });
    press(&mut app, [key('r')]);
    assert_eq!(
        app.dialog.as_ref().map(|d| d.mode),
        Some(DialogMode::Reject)
    );
    assert_eq!(app.notice, None);
}

#[test]
fn question_mark_opens_help_from_approval_dialog() {
    let mut app = waiting("staging");
    let before = app.dialog.clone();
    assert_eq!(press(&mut app, [key('?')]), vec![]);
    assert_eq!(app.overlay, Some(Overlay::Help { scroll: 0 }));
    assert!(render(&app).contains("Keys (? or Esc closes)"));
    // Keys go to the help while it is open: `a` does not approve.
    assert_eq!(press(&mut app, [key('a'), key('j')]), vec![]);
    assert_eq!(app.overlay, Some(Overlay::Help { scroll: 1 }));
    // Closing it shows the dialog as it was.
    press(&mut app, [code(KeyCode::Esc)]);
    assert_eq!(app.overlay, None);
    assert_eq!(app.dialog, before);
    // In the form, `?` is part of the reason.
    press(&mut app, [key('a')]);
    press(&mut app, typed("why?"));
    assert_eq!(app.overlay, None);
    assert_eq!(app.dialog.as_ref().map(|d| d.reason.as_str()), Some("why?"));
}

#[test]
fn capital_g_scrolls_help_to_bottom() {
    let (log, rb) = lock_session();
    let mut app = live_app(&log, Some(rb), (100, 30));
    press(&mut app, [code(KeyCode::Esc), key('?')]);
    let top = render(&app);
    press(&mut app, [key('G')]);
    let Some(Overlay::Help { scroll }) = app.overlay else {
        panic!("help closed: {:?}", app.overlay);
    };
    assert!(scroll > 0);
    let bottom = render(&app);
    assert_ne!(top, bottom);
    // The last binding of the last context is on screen.
    assert!(bottom.contains("send the answer to the agent"), "{bottom}");
    // G again stays; one k moves up at once (it does not scroll past the end).
    press(&mut app, [key('G')]);
    assert_eq!(app.overlay, Some(Overlay::Help { scroll }));
    press(&mut app, [key('k')]);
    assert_eq!(app.overlay, Some(Overlay::Help { scroll: scroll - 1 }));
    press(&mut app, [key('g')]);
    assert_eq!(app.overlay, Some(Overlay::Help { scroll: 0 }));
    assert_eq!(render(&app), top);
}

#[test]
fn steps_pane_shows_long_step_names_whole() {
    let (log, rb) = lock_session();
    for size in [(100, 30), (80, 30), (160, 45)] {
        let mut app = live_app(&log, Some(rb.clone()), size);
        press(&mut app, [code(KeyCode::Esc)]);
        let screen = render(&app);
        for id in [
            "terminate_root_blocker",
            "lock_waits_by_object",
            "cancel_root_blocker",
        ] {
            assert!(screen.contains(id), "{size:?}: {id} cut:\n{screen}");
        }
    }
    // A name longer than the pane can grow wraps instead of being cut.
    let mut long = runbook("pg-lock-contention");
    long.steps[0].id = "migrate_the_orders_table_to_the_new_partitioning_scheme".into();
    let mut app = live_app(
        &Log::new("pg-lock-contention", "orders", "prod", "alice"),
        Some(long),
        (100, 30),
    );
    app.size = (100, 30);
    let screen = render(&app);
    let joined: String = screen
        .lines()
        .filter_map(|l| l.split('│').nth(1))
        .map(|cell| cell.trim_start_matches(['○', ' ']).trim_end())
        .collect();
    assert!(
        joined.contains("migrate_the_orders_table_to_the_new_partitioning_scheme"),
        "{screen}"
    );
    assert!(!screen.contains("migrat…"), "{screen}");
}

/// The demo runbook, loaded the way `ward demo` loads it.
fn demo_contract() -> crate::contract::Contract {
    let (mut contracts, problems) =
        crate::contract::load_dir(&root().join("fixtures/demo/runbooks"), &analyzer());
    assert!(problems.is_empty(), "{problems:?}");
    contracts.remove(0)
}

/// The demo's incident up to the index it proposes, the proposal made by
/// the real offline planner from the facts.
fn demo_session(env: &str) -> (Log, RunbookInfo) {
    let c = demo_contract();
    let rb = RunbookInfo::from(&c);
    // The session names the runbook file it ran in its provenance, as
    // `ward run` records it; relative to the checkout (tests run from it),
    // so the events' hashes, and the ids on screen, do not depend on where
    // the repository is cloned.
    let path = c.path.strip_prefix(root()).unwrap_or(&c.path);
    let provenance = json!({"git": true, "files": [
        {"path": path.display().to_string(), "blob": null, "dirty": false},
    ]});
    let mut log = Log::with_provenance(
        "demo-slow-customer-orders",
        "demo",
        env,
        "alice",
        provenance,
    );
    let diagnostics = [
        (
            "table_sizes",
            "orders_rows=200000 customers_rows=5000 events_rows=0",
            json!({"orders_rows": 200_000, "customers_rows": 5000, "events_rows": 0}),
        ),
        (
            "order_indexes",
            "customer_indexes=0",
            json!({"customer_indexes": 0}),
        ),
        (
            "customer_lookup",
            "orders=41 total_cents=502311 refunded=2 (sequential scan of orders)",
            json!({"orders": 41, "total_cents": 502_311, "refunded": 2}),
        ),
        (
            "orders_by_status",
            "delivered 150000, shipped 30000",
            json!({"top": []}),
        ),
    ];
    for (step, summary, facts) in diagnostics {
        let sql = bind(&step_sql(&rb, step), &[("customer_id", "42")]);
        log.wait(1).diagnostic(step, &sql, summary, facts);
    }
    let state = crate::session::SessionState::from_events(&log.events);
    let inputs = json!({"customer_id": 42});
    let proposal = crate::agent::offline::plan(&crate::agent::AgentView {
        contract: &c,
        state: &state,
        inputs: &inputs,
        environment: env,
        policy_brief: "",
        budget: crate::agent::Budget::default(),
    });
    let crate::agent::Proposal::Step {
        step_id, rationale, ..
    } = proposal
    else {
        panic!("the planner proposes the index: {proposal:?}");
    };
    assert_eq!(step_id, "add_customer_index");
    log.wait(1).propose(
        Some("add_customer_index"),
        &step_sql(&rb, "add_customer_index"),
        rationale.as_deref(),
        Some((200_000, 9_400_000)),
    );
    (log, rb)
}

#[test]
fn approval_dialog_shows_evidence_behind_rationale() {
    let (log, rb) = demo_session("staging");
    let app = live_app(&log, Some(rb), (120, 40));
    assert_eq!(
        app.dialog.as_ref().map(|d| d.mode),
        Some(DialogMode::Choose),
        "the index waits for approval"
    );
    let screen = render(&app);
    // The reason in words, from the values the rule read.
    assert!(
        screen.contains("“the facts show order_indexes.customer_indexes = 0”"),
        "{screen}"
    );
    assert!(!screen.contains("holds on the facts"), "{screen}");
    // The rule itself, for reviewers.
    assert!(
        screen.contains("rule: when facts.order_indexes.customer_indexes == 0"),
        "{screen}"
    );
    // The evidence: what the rule read first, then the other diagnostics.
    assert!(
        screen.contains("evidence  order_indexes: customer_indexes=0"),
        "{screen}"
    );
    assert!(
        screen.contains("          table_sizes: orders_rows=200000 customers_rows=5000"),
        "{screen}"
    );
    assert!(screen.contains("(sequential scan of orders)"), "{screen}");
    snap!("dialog_evidence_120x40", &app);
}

#[test]
fn replay_detail_shows_rollback_and_verify_like_live() {
    // The demo's runbook is not in the directory `ward audit` lists: the
    // replay finds it through the file the log's provenance names.
    let (log, rb) = demo_session("staging");
    let mut live = live_app(&log, Some(rb), (160, 45));
    press(&mut live, [code(KeyCode::Esc)]);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut replay = replay_app(dir.path(), "20261118T201500Z-1a2b3c", &log.events, None);
    press(&mut replay, [key('N')]);
    let detail = |app: &App| {
        let s = app.session.as_ref().expect("a session");
        let lay = s.layout(ratatui::layout::Rect::new(0, 0, 160, 45));
        let b = buffer(app);
        (lay.detail.y..lay.detail.y + lay.detail.height)
            .map(|y| {
                (lay.detail.x..lay.detail.x + lay.detail.width)
                    .map(|x| b[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (live_detail, replay_detail) = (detail(&live), detail(&replay));
    for section in ["── Rollback", "── Verify", "rule: when facts.order_indexes"] {
        assert!(
            live_detail.contains(section),
            "live lacks {section}:\n{live_detail}"
        );
        assert!(
            replay_detail.contains(section),
            "replay lacks {section}:\n{replay_detail}"
        );
    }
    assert_eq!(live_detail, replay_detail);
}

// ------------------------------------------------------------------ hand-off

/// A lock-contention session whose conclusion hands off to
/// pg-idle-in-transaction, concluded and still open (an interactive
/// session waits for the key before it ends).
fn concluded_with_next() -> (Log, RunbookInfo) {
    let rb = runbook("pg-lock-contention");
    let mut log = Log::new("pg-lock-contention", "orders", "prod", "alice");
    log.wait(2).diagnostic(
        "lock_headline",
        &step_sql(&rb, "lock_headline"),
        "blocked=2 root_blockers=1 max_wait_seconds=88",
        json!({"blocked": 2, "root_blockers": 1, "max_wait_seconds": 88}),
    );
    log.wait(2).diagnostic(
        "blocking_tree",
        &step_sql(&rb, "blocking_tree"),
        "2 blocked session(s) behind 1 root blocker(s)\nroot pid 51210 app=billing-worker state=idle in transaction",
        json!({"blocked": 2, "root_blockers": 1, "root_pid": 51210, "root_application": "billing-worker", "root_state": "idle in transaction"}),
    );
    log.wait(1).push(
        "concluded",
        json!({
            "text": "Root blocker pid 51210 (application billing-worker) is 'idle in transaction'; pg-idle-in-transaction continues with application billing-worker.",
            "recommendation": "terminate_root_blocker was rejected",
            "next": {"runbook": "pg-idle-in-transaction", "inputs": {"application": "billing-worker", "max_idle_seconds": 95}},
        }),
    );
    (log, rb)
}

#[test]
fn a_conclusion_naming_a_next_runbook_offers_one_key_that_continues_into_it() {
    let (mut log, rb) = concluded_with_next();
    let mut app = live_app(&log, Some(rb), (120, 40));
    assert_eq!(
        app.contexts().first(),
        Some(&keys::Context::HandOff),
        "the key is offered while the concluded session waits"
    );
    snap!("session_hand_off_offered_120x40", &app);
    assert_eq!(
        press(&mut app, [key('n')]),
        vec![Cmd::SendOp(Op::Follow {
            operator: "alice".into()
        })]
    );
    // The engine continues: the hand-off and the next runbook's first
    // step arrive like any event; the key is no longer offered, and the
    // next runbook's steps are listed under its name.
    let from = log.events.len();
    log.wait(1).push(
        "handed_off",
        json!({"from": "pg-lock-contention", "to": "pg-idle-in-transaction", "runbook_version": 1,
               "inputs": {"application": "billing-worker", "max_idle_seconds": 95}, "depth": 1, "by": "alice"}),
    );
    log.wait(1).diagnostic(
        "iit_headline",
        "SELECT count(*) AS idle_in_transaction FROM pg_stat_activity",
        "idle_in_transaction=1 over_threshold=1",
        json!({"idle_in_transaction": 1, "over_threshold": 1}),
    );
    for ev in &log.events[from..] {
        assert_eq!(update(&mut app, Msg::Event(Box::new(ev.clone()))), None);
    }
    assert!(!app.contexts().contains(&keys::Context::HandOff));
    let s = app.session.as_ref().expect("session");
    assert_eq!(
        s.state.runbooks_run(),
        ["pg-lock-contention", "pg-idle-in-transaction"]
    );
    let ids: Vec<String> = s.step_rows().into_iter().map(|r| r.id).collect();
    assert!(
        ids.contains(&"pg-idle-in-transaction › iit_headline".to_string()),
        "{ids:?}"
    );
    snap!("session_handed_off_120x40", &app);
}

#[test]
fn the_next_runbook_key_does_nothing_before_a_conclusion_names_one() {
    let (log, rb) = concluded_with_next();
    // The same session before its conclusion.
    let mut early = Log::new("pg-lock-contention", "orders", "prod", "alice");
    early.events = log.events[..log.events.len() - 1].to_vec();
    early.at = log.at;
    let mut app = live_app(&early, Some(rb), (120, 40));
    assert!(!app.contexts().contains(&keys::Context::HandOff));
    assert_eq!(press(&mut app, [key('n')]), vec![]);
}

#[test]
fn leaving_a_session_that_offers_a_next_runbook_says_it_ends_without_it() {
    let (log, rb) = concluded_with_next();
    let mut app = live_app(&log, Some(rb), (120, 40));
    assert_eq!(press(&mut app, [key('q')]), vec![]);
    let notice = app
        .notice
        .as_ref()
        .map(|n| n.text.clone())
        .unwrap_or_default();
    assert_eq!(
        notice,
        "press q again to leave: the session ends without continuing into pg-idle-in-transaction (n continues)"
    );
    assert_eq!(
        press(&mut app, [key('q')]),
        vec![Cmd::Batch(vec![Cmd::SendOp(Op::Leave), Cmd::Quit])]
    );
}

// ------------------------------------------------------------------ team

fn team_rows() -> Vec<TeamRow> {
    vec![
        TeamRow {
            session_id: "20261118T200500Z-4c3df4".into(),
            owner: "bob".into(),
            host: "bob-laptop".into(),
            runbook: "pg-lock-contention".into(),
            target: "orders-staging".into(),
            environment: "staging".into(),
            since: "20:05 UTC".into(),
            started_at: "2026-11-18T20:05:00+00:00".into(),
            waiting: Some(
                "waiting for 1 more approval(s) (role dba): terminate_blocker 990883be16bc".into(),
            ),
        },
        TeamRow {
            session_id: "20261118T201000Z-0a0b0c".into(),
            owner: "carol".into(),
            host: "carol-laptop".into(),
            runbook: "pg-replication-lag".into(),
            target: "orders".into(),
            environment: "prod".into(),
            since: "20:10 UTC".into(),
            started_at: "2026-11-18T20:10:00+00:00".into(),
            waiting: None,
        },
    ]
}

fn team_app(size: (u16, u16)) -> App {
    let mut app = home_app(size);
    app.home.team = Some(Vec::new());
    update(&mut app, Msg::TeamLoaded(Ok(team_rows())));
    app
}

#[test]
fn home_with_a_team_store_lists_the_teams_live_sessions_and_what_each_waits_for() {
    let app = team_app((160, 45));
    snap!("home_team_160x45", &app);
}

#[test]
fn the_teams_list_is_read_again_every_few_seconds_on_the_home_screen_only() {
    let mut app = team_app((100, 30));
    assert_eq!(update(&mut app, Msg::Tick(t0())), Some(Cmd::LoadTeam));
    assert_eq!(
        update(&mut app, Msg::Tick(t0() + Duration::seconds(2))),
        None
    );
    assert_eq!(
        update(
            &mut app,
            Msg::Tick(t0() + Duration::seconds(TEAM_REFRESH_SECS_FOR_TESTS))
        ),
        Some(Cmd::LoadTeam)
    );
    // Without a store there is nothing to read.
    let mut alone = home_app((100, 30));
    assert_eq!(update(&mut alone, Msg::Tick(t0())), None);
}

const TEAM_REFRESH_SECS_FOR_TESTS: i64 = super::app::TEAM_REFRESH_SECS;

#[test]
fn starting_a_runbook_where_a_team_session_is_live_warns_whose_and_a_second_enter_acknowledges() {
    let mut app = team_app((100, 30));
    press(&mut app, [key('/')]);
    press(&mut app, typed("lock-contention"));
    press(&mut app, [code(KeyCode::Enter)]);
    // The staging target, where bob's session is live.
    let first = press(
        &mut app,
        [
            code(KeyCode::Tab),
            key('j'),
            code(KeyCode::Enter),
            code(KeyCode::Enter),
        ],
    );
    assert_eq!(first, vec![]);
    let notice = app.notice.clone().expect("a warning");
    assert!(notice.error);
    assert_eq!(
        notice.text,
        "session 20261118T200500Z-4c3df4 by bob (runbook pg-lock-contention, since 20:05 UTC) is live on orders-staging: Enter again to start beside it (recorded as acknowledged)"
    );
    snap!("home_team_warning_100x30", &app);
    let second = press(&mut app, [code(KeyCode::Enter)]);
    assert_eq!(
        second,
        vec![Cmd::StartSession(LaunchRequest {
            runbook: "pg-lock-contention".into(),
            target: "orders-staging".into(),
            concurrent: vec![team_rows()[0].concurrent(true)],
        })]
    );
}

#[test]
fn enter_on_a_team_session_follows_it_through_the_store() {
    let mut app = team_app((100, 30));
    // Runbooks -> targets -> team.
    let cmds = press(
        &mut app,
        [
            code(KeyCode::Tab),
            code(KeyCode::Tab),
            key('j'),
            code(KeyCode::Enter),
        ],
    );
    assert_eq!(cmds, vec![Cmd::Attach(team_rows()[1].clone())]);
}

#[test]
fn a_remote_sessions_answer_to_a_decision_made_here_shows_in_the_status_bar() {
    let mut app = team_app((100, 30));
    update(
        &mut app,
        Msg::Answered(crate::store::bridge::Answered {
            what: "approval of 990883be16bc".into(),
            answer: Some(crate::session::inbox::Answer::Refused {
                reason: "the approval of `carol` does not count".into(),
            }),
        }),
    );
    assert_eq!(
        app.notice,
        Some(Notice {
            text: "the session refused the approval of 990883be16bc: the approval of `carol` does not count".into(),
            error: true,
        })
    );
    update(
        &mut app,
        Msg::Answered(crate::store::bridge::Answered {
            what: "approval of 990883be16bc".into(),
            answer: Some(crate::session::inbox::Answer::Recorded),
        }),
    );
    assert_eq!(
        app.notice,
        Some(Notice {
            text: "the session recorded the approval of 990883be16bc".into(),
            error: false,
        })
    );
}

#[test]
fn status_bar_says_how_far_behind_an_unreachable_store_is_until_it_catches_up() {
    let (mut log, rb) = lock_session();
    log.push(
        "store_unreachable",
        json!({"error": "cannot reach the store postgres://alice@store/ward: connection refused", "behind": 2}),
    );
    log.usage(10, Some(20000));
    let app = live_app(&log, Some(rb.clone()), (200, 40));
    let screen = render(&app);
    // The two events before the notice, the notice itself and one after.
    assert!(
        screen.contains("store: unreachable, 4 events behind"),
        "{screen}"
    );
    log.push("store_caught_up", json!({"events": 5}));
    let app = live_app(&log, Some(rb), (200, 40));
    let screen = render(&app);
    assert!(!screen.contains("store:"), "{screen}");
}
