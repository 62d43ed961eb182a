//! Approvals across hosts through the team store: a session run by alice
//! in one process, approvals from bob (`ward_dba`) and carol in others,
//! each connecting as their own PostgreSQL role; identity and roles are
//! what PostgreSQL authenticated. And the warning when a second session
//! starts on a target where one is live.

use std::io::Read;
use std::process::{Child, Command, Stdio};

use crate::harness::Run;
use crate::store::StoreFixture;

/// Writes, deletes and schema changes in staging need two approvers,
/// among them a holder of role `dba`.
const TWO_WITH_DBA: &str = "id: default
rules:
  - id: reads-run
    when: { risk: read_only }
    decision: allow
  - id: staging-two-with-dba
    when: { environment: staging, risk: write }
    decision: { approve: { approvers: 2, roles: [dba] } }
";

/// The fixture's repository with the orders runbook, the two-person
/// policy and a staging target `orders` whose URL is in $ORDERS_URL.
fn team_repo(fx: &StoreFixture, policy: &str) {
    fx.repo
        .write("runbooks/orders-cleanup.yaml", crate::run::RUNBOOK);
    crate::run::use_policy(&fx.repo, policy);
    fx.repo.write(
        "ward.yaml",
        "store: { url_env: WARD_STORE_URL }\ntargets:\n  orders: { engine: postgres, url_env: ORDERS_URL, environment: staging }\n",
    );
}

/// `ward run orders-cleanup --target orders` as `who` (their store URL;
/// `$WARD_OPERATOR` claims another name, which the store overrides),
/// headless, waiting up to 60 s for approvals.
fn start_run(fx: &StoreFixture, who: &str, orders_url: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["run", "orders-cleanup", "--target", "orders", "--headless"])
        .args(["--report", "json", "--wait-for-approval", "60"])
        .args(extra)
        .current_dir(fx.repo.path())
        .env_remove("WARD_REPO")
        .env("NO_COLOR", "1")
        .env("WARD_STORE_URL", fx.url_of(who))
        .env("WARD_OPERATOR", format!("claims-to-be-{who}"))
        .env("ORDERS_URL", orders_url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ward run starts")
}

fn finish(mut child: Child) -> Run {
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_string(&mut stdout).expect("stdout");
    }
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut stderr).expect("stderr");
    }
    let status = child.wait().expect("ward run ends");
    Run {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

/// The events of `id`'s log so far (a line the session is writing right
/// now is left for the next read).
fn events(fx: &StoreFixture, id: &str) -> Vec<serde_json::Value> {
    let log = fx.repo.path().join(format!(".ward/sessions/{id}.jsonl"));
    let text = std::fs::read_to_string(log).expect("log");
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete
        .lines()
        .map(|l| serde_json::from_str(l).expect("event"))
        .collect()
}

/// The events of `kind` in `id`'s log, as (operator, holds_roles,
/// authenticated).
fn decided(fx: &StoreFixture, id: &str, kind: &str) -> Vec<(String, String, String)> {
    events(fx, id)
        .iter()
        .filter(|e| e["kind"] == kind)
        .map(|e| {
            let d = &e["data"];
            let s = |k: &str| d[k].as_str().unwrap_or("").to_string();
            (s("operator"), s("holds_roles"), s("authenticated"))
        })
        .collect()
}

#[test]
fn a_two_person_rule_with_a_role_is_met_by_two_store_authenticated_approvers_in_other_processes() {
    let Some(fx) = StoreFixture::start() else {
        return;
    };
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let orders = crate::run::fixture(pg);
    team_repo(&fx, TWO_WITH_DBA);
    let run = start_run(&fx, "alice", &orders, &[]);
    let (id, first, gated) = crate::run::wait_until_waiting(&fx.repo);
    // The operator is the role the store authenticated, not the claim.
    assert_eq!(first[0]["data"]["operator"], "alice");
    let pid = gated["data"]["proposal"].as_str().expect("proposal")[..12].to_string();
    let approve = |who: &str| {
        fx.ward_as(
            who,
            &["approve", &id, &pid, "--reason", "checked the count"],
        )
    };

    // carol counts as one of the two, but holds no `dba`.
    let carol = approve("carol").expect_code(0);
    assert!(
        carol.stderr.contains("recorded in session") && carol.stderr.contains("by carol"),
        "{}",
        carol.stderr
    );
    // alice (no `dba` either) cannot be the second: refused, and why.
    let alice = approve("alice").expect_code(1);
    assert!(
        alice.stderr.contains("refused")
            && alice
                .stderr
                .contains("not a member of PostgreSQL role `ward_dba`"),
        "{}",
        alice.stderr
    );
    // carol again: the same person never counts twice.
    let again = approve("carol").expect_code(2);
    assert!(
        again.stderr.contains("carol already approved"),
        "{}",
        again.stderr
    );
    // A login that is not a ward operator is refused by the database.
    fx.pg
        .psql(&fx.db, "CREATE ROLE mallory LOGIN PASSWORD 'mallory-pw'");
    let mallory = approve("mallory").expect_code(2);
    assert!(
        mallory.stderr.contains("permission denied"),
        "{}",
        mallory.stderr
    );
    let forged = fx
        .psql_as(
            "mallory",
            &format!("INSERT INTO ward.requests (session_id, op, reason, operator, roles, requested_at) VALUES ('{id}', 'approve', 'x', 'bob', '{{ward_dba}}', now())"),
        )
        .unwrap_err();
    assert!(forged.contains("permission denied"), "{forged}");
    // bob holds `dba`: the rule is met and the delete runs.
    let bob = approve("bob").expect_code(0);
    assert!(bob.stderr.contains("recorded"), "{}", bob.stderr);
    let done = finish(run).expect_code(0);
    assert_eq!(done.json()["outcome"], "concluded", "{}", done.stderr);

    assert_eq!(
        decided(&fx, &id, "approved"),
        [
            ("carol".to_string(), String::new(), "store".to_string()),
            ("bob".to_string(), "dba".to_string(), "store".to_string()),
        ]
    );
    let refused: Vec<String> = events(&fx, &id)
        .iter()
        .filter(|e| e["kind"] == "approval_refused")
        .map(|e| format!("{} {}", e["data"]["operator"], e["data"]["reason"]))
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].starts_with("\"alice\""), "{refused:?}");
    assert_eq!(
        pg.psql(
            &orders,
            "SELECT count(*) FROM orders WHERE created < now() - interval '30 days'"
        ),
        "0"
    );
    // Every request was answered, by the session's owner, through the store.
    assert_eq!(
        fx.pg.psql(
            &fx.db,
            "SELECT string_agg(q.operator || ':' || (a.answer->>'answer') || ':' || a.answered_by, ' ' ORDER BY q.id)
               FROM ward.requests q JOIN ward.answers a ON a.request_id = q.id"
        ),
        "carol:recorded:alice alice:refused:alice bob:recorded:alice"
    );
    fx.ward_as("alice", &["audit", "verify", &id])
        .expect_code(0);
}

#[test]
fn starting_a_session_on_a_target_with_a_live_one_warns_and_a_policy_can_require_acknowledging_it()
{
    let Some(fx) = StoreFixture::start() else {
        return;
    };
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let orders = crate::run::fixture(pg);
    team_repo(&fx, TWO_WITH_DBA);
    let first = start_run(&fx, "alice", &orders, &[]);
    let (id, _, _) = crate::run::wait_until_waiting(&fx.repo);
    let second = |extra: &[&str]| {
        finish(start_run(
            &fx,
            "carol",
            &orders,
            &[&["--dry-run"], extra].concat(),
        ))
    };
    // warn (the default): it starts, says who works there, and logs it.
    let warned = second(&[]).expect_code(0);
    assert!(
        warned.stderr.contains(&format!(
            "warning: session {id} by alice (runbook orders-cleanup"
        )) && warned
            .stderr
            .contains("live on target orders; waiting for 2 more approval(s) (role dba)"),
        "{}",
        warned.stderr
    );
    let second_id = warned.json()["session_id"]
        .as_str()
        .expect("id")
        .to_string();
    let concurrent = &events(&fx, &second_id)[0]["data"]["concurrent"];
    assert_eq!(
        (
            concurrent[0]["session_id"].as_str(),
            concurrent[0]["owner"].as_str(),
            concurrent[0]["acknowledged"].as_bool()
        ),
        (Some(id.as_str()), Some("alice"), Some(false))
    );
    // acknowledge: not without naming it, then recorded as acknowledged.
    fx.repo.write(
        "policies/default.yaml",
        &format!("{TWO_WITH_DBA}concurrent_sessions: acknowledge\n"),
    );
    let refused = second(&[]).expect_code(2);
    assert!(
        refused
            .stderr
            .contains(&format!("run again with --acknowledge {id}")),
        "{}",
        refused.stderr
    );
    let acked = second(&["--acknowledge", &id[..20]]).expect_code(0);
    let acked_id = acked.json()["session_id"].as_str().expect("id").to_string();
    assert_eq!(
        events(&fx, &acked_id)[0]["data"]["concurrent"][0]["acknowledged"],
        true
    );
    // The first session, rejected from another host, goes on to its end.
    fx.ward_as(
        "bob",
        &["reject", &id, &first_pid(&fx, &id), "--reason", "not now"],
    )
    .expect_code(0);
    finish(first).expect_code(0);
    assert_eq!(
        decided(&fx, &id, "rejected"),
        [("bob".to_string(), String::new(), "store".to_string())]
    );
}

/// The proposal of session `id` that waits for approval (12 characters).
fn first_pid(fx: &StoreFixture, id: &str) -> String {
    events(fx, id)
        .iter()
        .find(|e| e["kind"] == "gated" && e["data"]["decision"] == "approve")
        .and_then(|e| e["data"]["proposal"].as_str())
        .expect("waiting proposal")[..12]
        .to_string()
}

/// A runbook of `n` remediation steps, each bumping a counter (a write,
/// so each waits for one approval).
fn counter_runbook(n: usize) -> String {
    let mut s = String::from(
        "id: counter-bumps\ntitle: Bump a counter\nversion: 1\nengines: [postgres]\nsteps:\n  - id: look\n    kind: diagnostic\n    sql: SELECT n FROM public.counter\n",
    );
    for i in 0..n {
        s.push_str(&format!(
            "  - id: bump_{i}\n    kind: remediation\n    requires: [look]\n    sql: UPDATE public.counter SET n = n + 1 WHERE id = 1\n    rollback: none\n"
        ));
    }
    s.push_str("conclusions:\n  - when: \"true\"\n    text: bumped\n");
    s
}

/// Waits until `count` proposals of session `id` have waited for
/// approval; the last one's id (12 characters).
fn nth_waiting(fx: &StoreFixture, id: &str, count: usize) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let gated: Vec<String> = events(fx, id)
            .iter()
            .filter(|e| e["kind"] == "gated" && e["data"]["decision"] == "approve")
            .filter_map(|e| e["data"]["proposal"].as_str().map(|p| p[..12].to_string()))
            .collect();
        if gated.len() >= count {
            return gated[count - 1].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "proposal {count} never waited"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Approval latency through the store, from starting `ward approve` on
/// another "host" (process, own role) to the `approved` event in the
/// session's log; prints p50/p99 (docs/performance.md). Samples:
/// $WARD_APPROVAL_SAMPLES, default 30.
#[test]
fn approval_latency_from_ward_approve_to_the_approved_event_through_the_store() {
    let Some(fx) = StoreFixture::start() else {
        return;
    };
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let n: usize = std::env::var("WARD_APPROVAL_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let orders = counter_repo(&fx, pg, n);
    let run = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["run", "counter-bumps", "--target", "orders", "--headless"])
        .args(["--report", "json", "--wait-for-approval", "60"])
        .current_dir(fx.repo.path())
        .env_remove("WARD_REPO")
        .env("WARD_STORE_URL", fx.url_of("alice"))
        .env("ORDERS_URL", &orders)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ward run starts");
    let sessions = fx.repo.path().join(".ward/sessions");
    let (id, _) = crate::run::wait_log(&sessions, |ev| !ev.is_empty());
    let mut samples = Vec::with_capacity(n);
    for k in 1..=n {
        let pid = nth_waiting(&fx, &id, k);
        let started = std::time::Instant::now();
        let approver = Command::new(env!("CARGO_BIN_EXE_ward"))
            .args(["approve", &id, &pid, "--reason", "bump"])
            .current_dir(fx.repo.path())
            .env_remove("WARD_REPO")
            .env("WARD_STORE_URL", fx.url_of("bob"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ward approve starts");
        loop {
            let approved = events(&fx, &id)
                .iter()
                .filter(|e| e["kind"] == "approved")
                .count();
            if approved >= k {
                break;
            }
            assert!(
                started.elapsed().as_secs() < 20,
                "approval {k} never recorded"
            );
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        samples.push(started.elapsed());
        let status = approver
            .wait_with_output()
            .expect("ward approve ends")
            .status;
        assert!(status.success(), "ward approve {k}: {status}");
    }
    finish(run).expect_code(0);
    assert_eq!(pg.psql(&orders, "SELECT n FROM counter"), n.to_string());
    samples.sort();
    let at =
        |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    println!(
        "approval latency through the store (ward approve start -> approved event in the log), {n} approvals: p50 {} ms, p99 {} ms, max {} ms",
        at(0.50).as_millis(),
        at(0.99).as_millis(),
        samples[samples.len() - 1].as_millis()
    );
    // Woken by LISTEN/NOTIFY, not by the 2 s poll: within a second.
    assert!(at(0.50) < std::time::Duration::from_secs(1), "{samples:?}");
}

/// `ward attach` in a real terminal on "another host": bob sees alice's
/// waiting proposal, approves it with `a` and a reason, and the session
/// (which already has carol's approval) records his and runs.
#[test]
fn bob_approves_in_ward_attach_on_another_host_and_the_session_records_it_as_his() {
    use crate::tui_tmux::{Kill, screen, shell_quote, tmux, tmux_available, wait_for};
    if !tmux_available() {
        return;
    }
    let Some(fx) = StoreFixture::start() else {
        return;
    };
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let orders = crate::run::fixture(pg);
    team_repo(&fx, TWO_WITH_DBA);
    let run = start_run(&fx, "alice", &orders, &[]);
    let (id, _, _) = crate::run::wait_until_waiting(&fx.repo);
    let pid = first_pid(&fx, &id);
    fx.ward_as("carol", &["approve", &id, &pid, "--reason", "checked"])
        .expect_code(0);
    let tmux_session = format!("ward-attach-{}", std::process::id());
    let _kill = Kill(tmux_session.clone());
    let cmd = format!(
        "cd {} && WARD_STORE_URL='{}' TERM=xterm-256color {} attach {id}; sleep 30",
        shell_quote(fx.repo.path()),
        fx.url_of("bob"),
        shell_quote(std::path::Path::new(env!("CARGO_BIN_EXE_ward"))),
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &tmux_session,
        "-x",
        "160",
        "-y",
        "45",
        &cmd,
    ]);
    let shown = wait_for(&tmux_session, "delete_stale");
    assert!(shown.contains("STAGING"), "{shown}");
    wait_for(&tmux_session, "approve");
    std::thread::sleep(std::time::Duration::from_millis(500));
    tmux(&["send-keys", "-t", &tmux_session, "a"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    tmux(&[
        "send-keys",
        "-t",
        &tmux_session,
        "-l",
        "looked at it from home",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    tmux(&["send-keys", "-t", &tmux_session, "Enter"]);
    let answered = wait_for(&tmux_session, "the session recorded the approval");
    assert!(!answered.contains("panicked"), "{answered}");
    finish(run).expect_code(0);
    assert_eq!(
        decided(&fx, &id, "approved"),
        [
            ("carol".to_string(), String::new(), "store".to_string()),
            ("bob".to_string(), "dba".to_string(), "store".to_string()),
        ],
        "{}",
        screen(&tmux_session)
    );
}

/// The counter runbook and a one-approver policy for writes, on a fresh
/// target database; returns its URL.
fn counter_repo(fx: &StoreFixture, pg: &crate::pg::PgServer, bumps: usize) -> String {
    let orders = pg.fresh_db("counter");
    pg.psql(
        &orders,
        "CREATE TABLE counter (id int PRIMARY KEY, n int); INSERT INTO counter VALUES (1, 0)",
    );
    fx.repo
        .write("runbooks/counter-bumps.yaml", &counter_runbook(bumps));
    crate::run::use_policy(
        &fx.repo,
        "id: default\nrules:\n  - id: reads-run\n    when: { risk: read_only }\n    decision: allow\n  - id: writes-one\n    when: { risk: write }\n    decision: { approve: { approvers: 1 } }\n",
    );
    fx.repo.write(
        "ward.yaml",
        "store: { url_env: WARD_STORE_URL }\ntargets:\n  orders: { engine: postgres, url_env: ORDERS_URL, environment: staging }\n",
    );
    orders
}

fn start_counter(fx: &StoreFixture, orders: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["run", "counter-bumps", "--target", "orders", "--headless"])
        .args(["--report", "json", "--wait-for-approval", "60"])
        .args(extra)
        .current_dir(fx.repo.path())
        .env_remove("WARD_REPO")
        .env("WARD_STORE_URL", fx.url_of("alice"))
        .env("ORDERS_URL", orders)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ward run starts")
}

#[test]
fn a_standing_approval_given_from_another_host_covers_the_same_statement_for_the_rest_of_the_session()
 {
    let Some(fx) = StoreFixture::start() else {
        return;
    };
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let orders = counter_repo(&fx, pg, 3);
    let run = start_counter(&fx, &orders, &[]);
    let sessions = fx.repo.path().join(".ward/sessions");
    let (id, _) = crate::run::wait_log(&sessions, |ev| !ev.is_empty());
    let pid = nth_waiting(&fx, &id, 1);
    fx.ward_as(
        "bob",
        &[
            "approve",
            &id,
            &pid,
            "--reason",
            "same bump each time",
            "--for-session",
        ],
    )
    .expect_code(0);
    finish(run).expect_code(0);
    assert_eq!(pg.psql(&orders, "SELECT n FROM counter"), "3");
    let log = events(&fx, &id);
    let standing: Vec<(&str, &str)> = log
        .iter()
        .filter(|e| e["kind"] == "standing_approved")
        .map(|e| {
            (
                e["data"]["operator"].as_str().unwrap_or(""),
                e["data"]["reason"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(standing, [("bob", "same bump each time")]);
    // The later bumps ran on it: each approval is bob's, authenticated.
    let approved: Vec<(String, bool, String)> = log
        .iter()
        .filter(|e| e["kind"] == "approved")
        .map(|e| {
            let d = &e["data"];
            (
                d["operator"].as_str().unwrap_or("").to_string(),
                d.get("standing").is_some(),
                d["authenticated"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        approved,
        [
            ("bob".to_string(), false, "store".to_string()),
            ("bob".to_string(), true, "store".to_string()),
            ("bob".to_string(), true, "store".to_string()),
        ]
    );
}

#[test]
fn the_agents_question_is_answered_from_another_host_through_the_store() {
    let Some(fx) = StoreFixture::start() else {
        return;
    };
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let orders = counter_repo(&fx, pg, 1);
    fx.repo.write(
        "transcript.yaml",
        "turns:\n  - ask: Which team owns the counter?\n  - conclude: asked and answered\n",
    );
    let run = start_counter(&fx, &orders, &["--agent", "replay:transcript.yaml"]);
    let sessions = fx.repo.path().join(".ward/sessions");
    let (id, _) = crate::run::wait_log(&sessions, |ev| ev.iter().any(|e| e["kind"] == "asked"));
    // A `ward attach` sends this when bob presses A and types the answer.
    fx.psql_as(
        "bob",
        &format!(
            "INSERT INTO ward.requests (session_id, op, reason, operator, roles, requested_at)
             VALUES ('{id}', 'answer', 'the billing team', '', '{{}}', now())"
        ),
    )
    .expect("bob may ask");
    finish(run).expect_code(0);
    let answered: Vec<(String, String)> = events(&fx, &id)
        .iter()
        .filter(|e| e["kind"] == "answered")
        .map(|e| {
            (
                e["data"]["operator"].as_str().unwrap_or("").to_string(),
                e["data"]["text"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        answered,
        [("bob".to_string(), "the billing team".to_string())]
    );
    assert_eq!(
        fx.pg
            .psql(&fx.db, "SELECT answer->>'answer' FROM ward.answers"),
        "recorded"
    );
}

#[test]
fn a_session_whose_store_is_down_runs_locally_under_the_claimed_name_holding_no_role() {
    let Some(fx) = StoreFixture::start() else {
        return;
    };
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let orders = crate::run::fixture(pg);
    team_repo(&fx, TWO_WITH_DBA);
    // Nothing listens there.
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = l.local_addr().expect("addr").port();
        drop(l);
        format!("postgres://alice:alice-pw@127.0.0.1:{port}/ward_store")
    };
    let started = std::time::Instant::now();
    let run = crate::harness::ward_in_env(
        fx.repo.path(),
        &[
            "run",
            "orders-cleanup",
            "--target",
            "orders",
            "--headless",
            "--report",
            "json",
        ],
        None,
        &[
            ("WARD_STORE_URL", down.as_str()),
            ("WARD_OPERATOR", "claims-to-be-alice"),
            ("ORDERS_URL", orders.as_str()),
        ],
    )
    .expect_code(3);
    assert!(started.elapsed().as_secs() < 30, "{:?}", started.elapsed());
    assert!(
        run.stderr
            .contains("cannot look for other live sessions on orders"),
        "{}",
        run.stderr
    );
    let v = run.json();
    let id = v["session_id"].as_str().expect("id");
    let first = &events(&fx, id)[0];
    assert_eq!(first["data"]["operator"], "claims-to-be-alice");
    assert_eq!(v["outcome"], "awaiting_approval");
}
