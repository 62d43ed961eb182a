//! Hand-offs between runbooks: `ward check` refusing a bad `next`, the
//! runner following a conclusion's `next` within one session log (scoped
//! facts, inputs typed by the next runbook, the depth bound, a cycle
//! stopping), and on a real PostgreSQL a lock incident behind an
//! idle-in-transaction session handed off to pg-idle-in-transaction, whose
//! remediation a second operator approves.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use ward::agent::offline::Offline;
use ward::audit::{Event, Verification};
use ward::contract::Contract;
use ward::session::runner::{self, Follow, Outcome, Recorded, RecordedStep, RunConfig};
use ward::yaml::Doc;

use crate::harness::TempRepo;
use crate::planner_e2e::{approve_when_proposed, audit_verifies, own_server, step};

// ------------------------------------------------------------ ward check

/// Edits one runbook of a copy of the repository and expects `ward check`
/// to fail with `message` at the line and column of `needle`.
fn check_fails_at(file: &str, from: &str, to: &str, needle: &str, message: &str) {
    check_fails_after(file, from, to, needle, 0, message);
}

/// As [`check_fails_at`], `offset` columns after the start of `needle`.
fn check_fails_after(file: &str, from: &str, to: &str, needle: &str, offset: usize, message: &str) {
    let repo = TempRepo::copy_of_repo();
    repo.edit(file, from, to);
    let (line, col) = repo.position_of(file, needle);
    let col = col + offset;
    let run = repo.ward(&["check"]).expect_code(1);
    let want = format!("{file}:{line}:{col}: error: ");
    let hit = run
        .stdout
        .lines()
        .find(|l| l.starts_with(&want))
        .unwrap_or_else(|| panic!("no problem at {want}\n{}", run.stdout));
    assert!(hit.contains(message), "{hit}");
}

#[test]
fn check_rejects_a_next_naming_a_runbook_the_repository_does_not_have() {
    check_fails_at(
        "runbooks/pg-connection-exhaustion.yaml",
        "    next:\n      runbook: pg-idle-in-transaction\n",
        "    next:\n      runbook: pg-idle-in-transactions\n",
        "pg-idle-in-transactions\n",
        "`next` names no runbook `pg-idle-in-transactions` in this repository (did you mean `pg-idle-in-transaction`?)",
    );
}

#[test]
fn check_rejects_a_next_input_the_next_runbook_does_not_declare() {
    check_fails_at(
        "runbooks/pg-lock-contention.yaml",
        "        max_idle_seconds: \"{blocker_detail.state_seconds}\"",
        "        max_idle_secs: \"{blocker_detail.state_seconds}\"",
        "max_idle_secs:",
        "runbook `pg-idle-in-transaction` declares no input `max_idle_secs` (did you mean `max_idle_seconds`?)",
    );
}

#[test]
fn check_rejects_a_next_input_template_naming_no_step() {
    check_fails_at(
        "runbooks/pg-lock-contention.yaml",
        "        application: \"{blocking_tree.root_application}\"",
        "        application: \"{blocking_trees.root_application}\"",
        "\"{blocking_trees.root_application}\"",
        "placeholder `{blocking_trees.root_application}` names no step `blocking_trees` (did you mean `blocking_tree`?)",
    );
}

#[test]
fn check_rejects_a_literal_next_input_the_next_runbook_would_refuse() {
    check_fails_after(
        "runbooks/pg-lock-contention.yaml",
        "        max_idle_seconds: \"{blocker_detail.state_seconds}\"",
        "        max_idle_seconds: 5",
        "max_idle_seconds: 5",
        "max_idle_seconds: ".len(),
        "input `max_idle_seconds` of runbook `pg-idle-in-transaction`: 5 is below the minimum 30",
    );
}

// ------------------------------------------------- the runner, recorded

/// A runbook `id` whose one diagnostic is `look` (the same step id in
/// every one of them) and whose conclusion hands off to `next`, if any.
fn chain_runbook(id: &str, next: Option<&str>) -> String {
    let next = next
        .map(|n| {
            format!(
                "    next:\n      runbook: {n}\n      inputs:\n        app: \"{{look.app}}\"\n        min_seconds: \"{{look.n}}\"\n"
            )
        })
        .unwrap_or_default();
    format!(
        r#"id: {id}
title: Runbook {id}
version: 1
engines: [postgres]
inputs:
  app:
    type: string
    required: false
  min_seconds:
    type: integer
    required: false
    min: 30
steps:
  - id: look
    kind: diagnostic
    sql: SELECT 'billing' AS app, 1 AS n
    summarize: {{ builtin: rows }}
conclusions:
  - when: "facts.look.n == 1"
    text: "{id} found {{look.app}}"
{next}"#
    )
}

/// Loads the runbooks `(id, next)` from a temporary directory.
fn runbooks(dir: &Path, chain: &[(&str, Option<&str>)]) -> Vec<Contract> {
    let analyzer = ward::sql::Analyzer::new(Default::default());
    let rb = dir.join("runbooks");
    std::fs::create_dir_all(&rb).expect("mkdir");
    for (id, next) in chain {
        std::fs::write(rb.join(format!("{id}.yaml")), chain_runbook(id, *next)).expect("write");
    }
    let (contracts, problems) = ward::contract::load_dir(&rb, &analyzer);
    assert!(problems.is_empty(), "{problems:?}");
    contracts
}

/// A session of the first runbook of `chain`, following as `follow` says,
/// against recorded evidence; its outcome and the events of its log (which
/// verifies).
fn follow_session(chain: &[(&str, Option<&str>)], follow: Follow) -> (Outcome, Vec<Event>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let contracts = runbooks(dir.path(), chain);
    let first = contracts
        .iter()
        .find(|c| c.id() == chain[0].0)
        .cloned()
        .expect("first runbook");
    let root = crate::harness::repo_root();
    let policy = ward::policy::load_doc(
        &Doc::read(&root.join("policies/default.yaml")).expect("read policy"),
    )
    .expect("policy loads");
    let mut row = serde_json::Map::new();
    row.insert("app".into(), json!("billing"));
    row.insert("n".into(), json!(1));
    let mut steps = BTreeMap::new();
    steps.insert(
        "look".to_string(),
        RecordedStep {
            rows: vec![row],
            ..Default::default()
        },
    );
    let log = dir.path().join("handoff.jsonl");
    let cfg = RunConfig {
        store: None,
        concurrent: Vec::new(),
        session_id: "handoff".into(),
        log_path: log.clone(),
        contract: first,
        target: ward::exec::Target {
            name: "recorded".into(),
            engine: ward::sql::Engine::Postgres,
            url: ward::exec::SecretUrl::new("recorded:"),
            environment: "dev".into(),
            redact: vec![],
            roles: Default::default(),
            lock_timeout: None,
        },
        inputs: BTreeMap::new(),
        policy,
        analyzer: ward::sql::Analyzer::new(Default::default()),
        evidence: Default::default(),
        dry_run: false,
        operator: "carol".into(),
        provenance: Value::Null,
        allow_dirty: false,
        wait_for_approval: None,
        ops_dir: None,
        clock: runner::Clock::system(),
        allow_superuser: false,
        operators: None,
        reload_policy: false,
        recorded: Some(Recorded { steps }),
        max_proposals: 30,
        runbooks: contracts,
        follow,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let (_ops_tx, ops_rx) = mpsc::unbounded_channel();
    let (_, outcome) = rt
        .block_on(runner::run(cfg, Box::new(Offline), ops_rx, None))
        .expect("session");
    let v = ward::audit::verify(&log).expect("verify");
    assert!(matches!(v, Verification::Ok { .. }), "audit verify: {v:?}");
    let (events, _) = ward::audit::read_events(&log).expect("read");
    (outcome, events)
}

fn of_kind<'a>(events: &'a [Event], kind: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| &e.data)
        .collect()
}

#[test]
fn follow_continues_into_the_next_runbook_in_the_same_log_with_typed_inputs_and_its_own_facts() {
    let (outcome, events) = follow_session(
        &[("first", Some("second")), ("second", None)],
        Follow::Auto { depth: 3 },
    );
    assert_eq!(outcome, Outcome::Concluded);
    let handed: Vec<&Value> = of_kind(&events, "handed_off");
    // The fact 1 is below the next runbook's minimum of 30: dropped with
    // its reason, never passed on.
    assert_eq!(
        handed,
        [&json!({
            "from": "first", "to": "second", "runbook_version": 1,
            "inputs": {"app": "billing"},
            "dropped": [{"name": "min_seconds", "reason": "1 is below the minimum 30"}],
            "depth": 1, "by": "--follow",
        })]
    );
    // Both runbooks have a step `look`: each ran its own, each gated.
    let looks: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind == "proposed" && e.data["step_id"] == "look")
        .collect();
    assert_eq!(looks.len(), 2);
    for l in &looks {
        assert!(
            events
                .iter()
                .any(|e| e.kind == "gated" && e.data["proposal"] == l.hash.as_str()),
            "every proposal is gated"
        );
    }
    let concluded = of_kind(&events, "concluded");
    assert_eq!(concluded.len(), 2);
    assert_eq!(concluded[0]["text"], "first found billing");
    assert_eq!(concluded[0]["next"]["runbook"], "second");
    assert_eq!(concluded[1]["text"], "second found billing");
    assert!(concluded[1].get("next").is_none());
    // The fold: the second runbook's part is current, the first's kept.
    let state = ward::session::SessionState::from_events(&events);
    assert_eq!(state.runbook, "second");
    assert_eq!(state.runbooks_run(), ["first", "second"]);
    assert_eq!(state.inputs, json!({"app": "billing"}));
    assert_eq!(
        state.earlier[0].conclusion.as_deref(),
        Some("first found billing")
    );
    assert_eq!(state.current().proposals.len(), 1);
    assert_eq!(state.proposals.len(), 2);
}

#[test]
fn follow_stops_at_a_runbook_that_already_ran_in_the_session() {
    let (outcome, events) = follow_session(
        &[("first", Some("second")), ("second", Some("first"))],
        Follow::Auto { depth: 3 },
    );
    assert_eq!(outcome, Outcome::Concluded);
    assert_eq!(of_kind(&events, "handed_off").len(), 1);
    let ended = of_kind(&events, "session_ended");
    assert_eq!(
        ended[0]["not_followed"],
        "first: first already ran in this session (runbooks so far: first -> second); following it again would go round in a cycle"
    );
}

#[test]
fn follow_stops_at_its_depth_bound() {
    let chain = [
        ("one", Some("two")),
        ("two", Some("three")),
        ("three", Some("four")),
        ("four", None),
    ];
    let (outcome, events) = follow_session(&chain, Follow::Auto { depth: 2 });
    assert_eq!(outcome, Outcome::Concluded);
    let depths: Vec<&Value> = of_kind(&events, "handed_off")
        .iter()
        .map(|h| &h["depth"])
        .collect();
    assert_eq!(depths, [&json!(1), &json!(2)]);
    let ended = of_kind(&events, "session_ended");
    assert_eq!(
        ended[0]["not_followed"],
        "four: 2 hand-off(s) already in this session, the most --follow-depth allows (2); run it on its own"
    );
}

#[test]
fn without_follow_the_conclusion_names_the_next_runbook_and_the_session_ends() {
    let (outcome, events) = follow_session(
        &[("first", Some("second")), ("second", None)],
        Follow::Never,
    );
    assert_eq!(outcome, Outcome::Concluded);
    assert!(of_kind(&events, "handed_off").is_empty());
    assert_eq!(
        of_kind(&events, "concluded")[0]["next"]["runbook"],
        "second"
    );
    assert!(
        of_kind(&events, "session_ended")[0]
            .get("not_followed")
            .is_none()
    );
}

// ------------------------------------------------- real PostgreSQL

const INVOICES: &str = "CREATE TABLE invoices (id int PRIMARY KEY, status text NOT NULL); \
     INSERT INTO invoices SELECT g, 'new' FROM generate_series(1, 100) g;";

/// A billing worker (not a superuser) leaves a transaction open holding a
/// row lock; two updates queue behind it. `ward run pg-lock-contention
/// --follow`: bob rejects terminating it from the lock runbook, whose
/// conclusion hands off to pg-idle-in-transaction with the application;
/// bob approves that runbook's scoped terminate, and the database shows
/// the blocker gone and the queued updates through.
#[test]
fn a_lock_behind_an_idle_transaction_is_handed_off_to_pg_idle_in_transaction_and_ended_there() {
    let Some(pg) = own_server(100) else { return };
    let url = pg.fresh_db("handoff");
    pg.psql(&url, INVOICES);
    pg.psql(&url, "CREATE ROLE billing LOGIN");
    pg.psql(&url, "GRANT ALL ON invoices TO billing");
    let _blocker = pg.session(
        &url,
        "billing",
        "billing-worker",
        "BEGIN; UPDATE invoices SET status = 'sent' WHERE id = 7;",
    );
    pg.wait_for(
        &url,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'billing-worker' AND state = 'idle in transaction'",
        "1",
        Duration::from_secs(10),
    );
    let blocker_pid = pg.psql(
        &url,
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'billing-worker'",
    );
    let mut waiters: Vec<std::process::Child> = (0..2)
        .map(|n| {
            pg.psql_background(
                &url,
                &format!("UPDATE invoices SET status = 'paid-{n}' WHERE id = 7"),
            )
        })
        .collect();
    pg.wait_for(
        &url,
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
        "2",
        Duration::from_secs(10),
    );
    // pg-idle-in-transaction's smallest threshold is 30 s: the hand-off
    // passes the blocker's idle time, so let it age past that.
    std::thread::sleep(Duration::from_secs(31));

    let repo = TempRepo::copy_of_repo();
    let mut session = std::process::Command::new(env!("CARGO_BIN_EXE_ward"))
        .args([
            "run",
            "pg-lock-contention",
            "--url",
            &url,
            "--env",
            "dev",
            "--agent",
            "offline",
            "--headless",
            "--follow",
            "--report",
            "json",
            "--wait-for-approval",
            "120",
            "--input",
            "min_wait_seconds=1",
        ])
        .current_dir(repo.path())
        .env("WARD_OPERATOR", "carol")
        .env_remove("WARD_REPO")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ward run starts");

    // The lock runbook proposes terminating the root blocker; bob rejects
    // it: the cause is the application's transaction.
    let sessions = repo.path().join(".ward/sessions");
    let (id, events) = crate::run::wait_log(&sessions, |ev| {
        ev.iter().any(|e| {
            e["kind"] == "gated"
                && ev.iter().any(|p| {
                    p["kind"] == "proposed"
                        && p["data"]["step_id"] == "terminate_root_blocker"
                        && p["hash"] == e["data"]["proposal"]
                })
        })
    });
    let terminate = events
        .iter()
        .find(|e| e["kind"] == "proposed" && e["data"]["step_id"] == "terminate_root_blocker")
        .and_then(|e| e["hash"].as_str())
        .expect("terminate proposed")
        .to_string();
    let rejected = crate::run::ward_as(
        &repo,
        "bob",
        &[
            "reject",
            &id,
            &terminate[..12],
            "--reason",
            "the billing worker's open transaction is the cause: end it from pg-idle-in-transaction",
        ],
    );
    assert_eq!(
        rejected.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&rejected.stderr)
    );

    // The session hands off, and the next runbook's scoped terminate
    // waits for bob's approval like any proposal.
    let (_, proposed) = approve_when_proposed(&repo, &mut session, "terminate_idle_in_transaction");
    // Scoped to the application the hand-off named, and to sessions idle
    // at least as long as the blocker was.
    assert_eq!(
        proposed["data"]["binds"][0], "billing-worker",
        "{proposed:#}"
    );
    assert!(
        proposed["data"]["binds"][1].as_i64().unwrap_or(0) >= 30,
        "{proposed:#}"
    );
    let done = session.wait_with_output().expect("session ends");
    assert_eq!(
        done.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    let report: Value = serde_json::from_slice(&done.stdout).expect("json report");

    assert_eq!(report["runbook"], "pg-idle-in-transaction");
    assert_eq!(report["outcome"], "concluded");
    let handoff = &report["handoffs"][0];
    assert_eq!(handoff["from"], "pg-lock-contention");
    assert_eq!(handoff["to"], "pg-idle-in-transaction");
    assert_eq!(handoff["inputs"]["application"], "billing-worker");
    assert!(
        handoff["inputs"]["max_idle_seconds"].as_i64().unwrap_or(0) >= 30,
        "{handoff:#}"
    );
    assert_eq!(
        report["earlier_runbooks"][0]["next"]["runbook"],
        "pg-idle-in-transaction"
    );
    assert_eq!(
        step(&report, "terminate_idle_in_transaction")["verified"],
        true
    );
    assert_eq!(
        step(&report, "terminate_idle_in_transaction")["runbook"],
        "pg-idle-in-transaction"
    );
    let conclusion = report["conclusion"].as_str().unwrap_or("");
    assert!(
        conclusion.contains("The incident has cleared")
            && conclusion.contains("The culprit was application billing-worker"),
        "{conclusion}"
    );

    // Graded by the database: the blocker is gone, both queued updates
    // went through, nobody waits.
    for w in &mut waiters {
        assert!(w.wait().expect("waiter ends").success());
    }
    assert_eq!(
        pg.psql(
            &url,
            &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {blocker_pid}")
        ),
        "0"
    );
    assert_eq!(
        pg.psql(
            &url,
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        ),
        "0"
    );
    assert!(
        pg.psql(&url, "SELECT status FROM invoices WHERE id = 7")
            .starts_with("paid-")
    );

    // The log verifies and `ward audit show` tells the hand-off.
    audit_verifies(&repo, &id);
    let shown = repo.ward(&["audit", "show", &id]).expect_code(0);
    assert!(
        shown.stdout.contains(
            "handed off: pg-lock-contention -> pg-idle-in-transaction (application=billing-worker"
        ),
        "{}",
        shown.stdout
    );
    assert!(
        shown
            .stdout
            .contains("next runbook: pg-idle-in-transaction"),
        "{}",
        shown.stdout
    );
    // The Markdown for the ticket tells both runbooks apart.
    let md = repo
        .ward(&["audit", "export", &id, "--format", "md"])
        .expect_code(0)
        .stdout;
    for want in [
        "— pg-lock-contention → pg-idle-in-transaction",
        "## Earlier runbooks of this session",
        "- handed off to **pg-idle-in-transaction (application=billing-worker",
        "### pg-idle-in-transaction › terminate_idle_in_transaction (done",
        "### pg-lock-contention › terminate_root_blocker (rejected",
    ] {
        assert!(md.contains(want), "{want:?} not in:\n{md}");
    }
}

/// A runbook that only looks, and hands off to orders-cleanup with a cutoff
/// from its facts; its step has the same id as orders-cleanup's.
const ORDERS_LOOK: &str = r#"id: orders-look
title: Look at old orders
version: 1
engines: [postgres]
steps:
  - id: headline
    kind: diagnostic
    sql: SELECT count(*) AS old, 45 AS cutoff FROM public.orders WHERE created < now() - interval '45 days'
conclusions:
  - when: "facts.headline.old > 0"
    text: "{headline.old} orders are older than {headline.cutoff} days"
    next:
      runbook: orders-cleanup
      inputs:
        older_than_days: "{headline.cutoff}"
"#;

/// A session killed while the runbook it handed off to waits for approval
/// resumes in that runbook, with the inputs the hand-off gave it.
#[test]
fn a_session_that_handed_off_resumes_in_the_next_runbook_with_its_inputs() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = crate::run::fixture(pg);
    let repo = crate::run::repo_with_runbook();
    repo.write("runbooks/orders-look.yaml", ORDERS_LOOK);
    let mut first = std::process::Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["run", "orders-look", "--url", &url, "--env", "dev"])
        .args(["--headless", "--follow", "--wait-for-approval", "60"])
        .current_dir(repo.path())
        .env("WARD_OPERATOR", "carol")
        .env_remove("WARD_REPO")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("ward run starts");
    let (id, events, _) = crate::run::wait_until_waiting(&repo);
    first.kill().expect("SIGKILL");
    let _ = first.wait();
    assert!(events.iter().any(|e| e["kind"] == "handed_off"));

    let resumed = std::process::Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["resume", &id, "--url", &url, "--wait-for-approval", "60"])
        .args(["--report", "json"])
        .current_dir(repo.path())
        .env("WARD_OPERATOR", "carol")
        .env_remove("WARD_REPO")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ward resume starts");
    let sessions = repo.path().join(".ward/sessions");
    let (_, events) =
        crate::run::wait_log(&sessions, |ev| ev.iter().any(|e| e["kind"] == "resumed"));
    let pending = events
        .iter()
        .find(|e| e["kind"] == "resumed")
        .and_then(|e| e["data"]["pending"][0].as_str())
        .expect("the delete still waits")
        .to_string();
    crate::run::approve_as(&repo, "alice", &id, &pending, "old orders, checked");
    let done = resumed.wait_with_output().expect("resume ends");
    assert_eq!(
        done.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let report: Value = serde_json::from_slice(&done.stdout).expect("json report");
    assert_eq!(report["runbook"], "orders-cleanup");
    assert_eq!(report["inputs"], json!({"older_than_days": 45}));
    assert_eq!(report["earlier_runbooks"][0]["runbook"], "orders-look");
    // Deleted with the hand-off's cutoff (45 days), not the default (30):
    // 15 of the 60 orders were older.
    assert_eq!(pg.psql(&url, "SELECT count(*) FROM orders"), "45");
    // Each runbook ran its own `headline`.
    let (events, _) = ward::audit::read_events(&sessions.join(format!("{id}.jsonl"))).expect("log");
    let headlines = events
        .iter()
        .filter(|e| e.kind == "proposed" && e.data["step_id"] == "headline")
        .count();
    assert_eq!(headlines, 2);
    audit_verifies(&repo, &id);
}
