//! `ward mcp` driven by a real MCP client over stdio: the official Python
//! SDK (`pip install mcp`; `.ci/run` installs it), through the small bridge
//! in `mcp_client.py`, which the test feeds one request per line. Against a
//! real PostgreSQL: the tools and resources are listed, a diagnostic runs
//! on a live lock incident and answers with its summary and facts, a write
//! waits for approval and runs once a second operator approves it with
//! `ward approve` in another process, something denied is a tool error
//! naming the rule, and the session's log verifies.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::TempRepo;
use crate::run::approve_as;

/// The MCP client process and the server it started.
struct Client {
    child: Child,
    stdin: ChildStdin,
    answers: mpsc::Receiver<String>,
    /// The server's `initialize` answer.
    init: Value,
}

/// `python3`, with the directory `.ci/run` installs the SDK into
/// (`$WARD_MCP_PYTHONPATH`) on its path when set.
fn python() -> Command {
    let mut cmd = Command::new("python3");
    if let Some(dir) = std::env::var_os("WARD_MCP_PYTHONPATH") {
        let mut path = dir;
        if let Some(rest) = std::env::var_os("PYTHONPATH") {
            path.push(":");
            path.push(rest);
        }
        cmd.env("PYTHONPATH", path);
    }
    cmd
}

/// Whether the Python SDK is importable: a failure in CI (where `.ci/run`
/// installs it), else a loud skip.
fn python_sdk() -> bool {
    let ok = python()
        .args(["-c", "import mcp"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    assert!(
        ok || !ci,
        "the MCP Python SDK is missing: .ci/run installs it and sets WARD_MCP_PYTHONPATH (or python3 -m pip install mcp)"
    );
    if !ok {
        let _ = writeln!(
            std::io::stderr(),
            "\n=== SKIPPED: ward mcp tests (python3 -m pip install mcp) ===\n"
        );
    }
    ok
}

impl Client {
    /// `ward mcp ARGS` in `repo` as carol, behind the Python client.
    fn start(repo: &TempRepo, args: &[&str]) -> Client {
        let bridge = crate::harness::repo_root().join("tests/integration/mcp_client.py");
        let mut child = python()
            .arg(bridge)
            .arg(env!("CARGO_BIN_EXE_ward"))
            .arg("mcp")
            .args(args)
            .current_dir(repo.path())
            .env("WARD_OPERATOR", "carol")
            .env_remove("WARD_REPO")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 starts");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, answers) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut c = Client {
            child,
            stdin,
            answers,
            init: Value::Null,
        };
        c.init = c.next_answer();
        c
    }

    fn next_answer(&mut self) -> Value {
        match self.answers.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => {
                let v: Value = serde_json::from_str(&line).expect("a JSON line");
                assert!(v.get("client_error").is_none(), "the client failed: {v}");
                v
            }
            Err(e) => {
                let _ = self.child.kill();
                let mut err = String::new();
                if let Some(mut s) = self.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut s, &mut err);
                }
                panic!("no answer from the MCP client ({e}); stderr:\n{err}")
            }
        }
    }

    fn ask(&mut self, request: Value) -> Value {
        writeln!(self.stdin, "{request}").expect("send to the client");
        self.next_answer()
    }

    /// A tool call's result: (structuredContent, isError).
    fn call(&mut self, name: &str, arguments: Value) -> (Value, bool) {
        let r = self.ask(json!({"op": "call", "name": name, "arguments": arguments}));
        let structured = r["structuredContent"].clone();
        // The text content carries the same JSON, for clients that read
        // only text.
        let text = r["content"][0]["text"].as_str().unwrap_or("");
        assert_eq!(
            serde_json::from_str::<Value>(text).ok().as_ref(),
            Some(&structured),
            "{r}"
        );
        (structured, r["isError"] == true)
    }

    /// Closes the connection and waits for the client (and the server it
    /// started) to exit; its stderr.
    fn close(self) -> String {
        drop(self.stdin);
        let out = self.child.wait_with_output().expect("the client exits");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "client exit {:?}: {err}", out.status);
        err
    }
}

/// The events of session `id`'s log.
fn log_of(repo: &TempRepo, id: &str) -> Vec<Value> {
    repo.read(&format!(".ward/sessions/{id}.jsonl"))
        .lines()
        .map(|l| serde_json::from_str(l).expect("a log line"))
        .collect()
}

const ACCOUNTS: &str = "CREATE TABLE accounts (id int PRIMARY KEY, credit_limit int NOT NULL); \
     INSERT INTO accounts SELECT g, 1000 FROM generate_series(1, 10) g;";

/// The whole path a coding agent takes through an incident: the tools,
/// a diagnostic on a live lock, a denied write, a terminate that waits for
/// a second operator's `ward approve` and then ends the incident, the
/// conclusion, and a log that verifies.
#[test]
fn an_mcp_client_diagnoses_a_lock_and_its_terminate_runs_only_after_a_person_approves() {
    // The lock is visible cluster-wide: a server of this test's own, so no
    // other test's sessions appear in the blocking tree.
    let Some(pg) = crate::planner_e2e::own_server(30) else {
        return;
    };
    if !python_sdk() {
        return;
    }
    let url = pg.fresh_db("mcp_locks");
    pg.psql(&url, ACCOUNTS);
    let _blocker = pg.session(
        &url,
        "postgres",
        "forgotten-psql",
        "BEGIN; UPDATE accounts SET credit_limit = 5000 WHERE id = 7;",
    );
    pg.wait_for(
        &url,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'forgotten-psql' AND state = 'idle in transaction'",
        "1",
        Duration::from_secs(10),
    );
    let blocker_pid: i64 = pg
        .psql(
            &url,
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'forgotten-psql'",
        )
        .parse()
        .expect("a pid");
    let mut waiter = pg.psql_background(
        &url,
        "UPDATE accounts SET credit_limit = credit_limit + 1 WHERE id = 7",
    );
    pg.wait_for(
        &url,
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
        "1",
        Duration::from_secs(10),
    );

    let repo = TempRepo::copy_of_repo();
    let mut client = Client::start(
        &repo,
        &[
            "--url",
            &url,
            "--env",
            "dev",
            "--runbook",
            "pg-lock-contention",
            "--input",
            "min_wait_seconds=1",
        ],
    );
    assert_eq!(client.init["serverInfo"]["name"], "ward", "{}", client.init);

    // Tools: the runbook's steps with typed inputs, the fixed four, and
    // nothing that approves.
    let listed = client.ask(json!({"op": "list_tools"}));
    let tools = listed["tools"].as_array().expect("tools");
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    for expected in [
        "pg-lock-contention__lock_headline",
        "pg-lock-contention__blocking_tree",
        "pg-lock-contention__terminate_root_blocker",
        "query",
        "explain",
        "conclude",
        "status",
    ] {
        assert!(names.contains(&expected), "{expected} not in {names:?}");
    }
    assert!(!names.iter().any(|n| n.contains("approve")), "{names:?}");
    let terminate = tools
        .iter()
        .find(|t| t["name"] == "pg-lock-contention__terminate_root_blocker")
        .expect("terminate tool");
    assert_eq!(
        terminate["inputSchema"]["properties"]["blocker_pid"]["type"],
        "integer"
    );
    assert_eq!(terminate["annotations"]["readOnlyHint"], false);

    // Resources: the policy in brief and the runbook.
    let resources = client.ask(json!({"op": "list_resources"}));
    let uris: Vec<&str> = resources["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r["uri"].as_str())
        .collect();
    assert_eq!(
        uris,
        ["ward://policy", "ward://runbooks/pg-lock-contention"]
    );
    let policy = client.ask(json!({"op": "read_resource", "uri": "ward://policy"}));
    let brief = policy["contents"][0]["text"].as_str().unwrap_or("");
    assert!(brief.contains("changes-need-approval"), "{brief}");

    // A diagnostic on the live lock: the summary and facts, never rows.
    let (tree, failed) = client.call("pg-lock-contention__blocking_tree", json!({}));
    assert!(!failed, "{tree}");
    assert_eq!(tree["status"], "done", "{tree}");
    assert_eq!(tree["facts"]["root_pid"], json!(blocker_pid), "{tree}");
    assert_eq!(
        tree["facts"]["root_application"], "forgotten-psql",
        "{tree}"
    );
    assert!(
        tree["summary"].as_str().is_some_and(|s| !s.is_empty()),
        "{tree}"
    );
    let mut keys: Vec<&str> = tree
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "decision",
            "duration_ms",
            "facts",
            "proposal",
            "risk",
            "rows_seen",
            "rules",
            "runbook",
            "session",
            "status",
            "step",
            "summary"
        ],
        "{tree}"
    );
    let session = tree["session"].as_str().expect("session id").to_string();

    // The client's own write is denied, by the contract's rule.
    let (denied, failed) = client.call(
        "query",
        json!({"sql": "UPDATE accounts SET credit_limit = 0", "reason": "reset the limits"}),
    );
    assert!(failed, "{denied}");
    assert_eq!(denied["status"], "denied", "{denied}");
    assert_eq!(
        denied["denied_by"],
        json!(["contract:adhoc-read-only"]),
        "{denied}"
    );
    assert!(
        denied["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("contract:adhoc-read-only: ")),
        "{denied}"
    );

    // explain: the verdict, and nothing proposed.
    let before = log_of(&repo, &session).len();
    let (verdict, failed) = client.call("explain", json!({"sql": "DROP TABLE accounts"}));
    assert!(!failed, "{verdict}");
    assert_eq!(verdict["risk"], "destructive", "{verdict}");
    assert_eq!(verdict["decision"], "approve", "{verdict}");
    assert_eq!(log_of(&repo, &session).len(), before);

    // The terminate waits for a person, and says how to approve it.
    let (waiting, failed) = client.call(
        "pg-lock-contention__terminate_root_blocker",
        json!({"blocker_pid": blocker_pid}),
    );
    assert!(!failed, "{waiting}");
    assert_eq!(waiting["status"], "awaiting_approval", "{waiting}");
    let proposal = waiting["proposal"]
        .as_str()
        .expect("proposal id")
        .to_string();
    assert_eq!(
        waiting["approve"],
        format!("ward approve {session} {proposal} --reason \"...\"")
    );
    assert!(
        waiting["sql"]
            .as_str()
            .is_some_and(|s| s.contains("pg_terminate_backend")),
        "{waiting}"
    );
    assert!(
        waiting["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .any(|r| r["id"] == "changes-need-approval"),
        "{waiting}"
    );
    // Nothing ran yet, and nothing else runs while it waits.
    assert_eq!(
        pg.psql(
            &url,
            &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {blocker_pid}")
        ),
        "1"
    );
    let (busy, failed) = client.call("pg-lock-contention__lock_headline", json!({}));
    assert!(failed, "{busy}");
    assert!(
        busy["message"]
            .as_str()
            .is_some_and(|m| m.contains("waits for approval")),
        "{busy}"
    );

    // The client calls the same tool again, waiting; meanwhile a second
    // operator approves from another process, and the answer is the run.
    let (ran, failed) = std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(500));
            approve_as(&repo, "bob", &session, &proposal, "checked the blocker");
        });
        client.call(
            "pg-lock-contention__terminate_root_blocker",
            json!({"blocker_pid": blocker_pid, "wait_seconds": 30}),
        )
    });
    assert!(!failed, "{ran}");
    assert_eq!(ran["status"], "done", "{ran}");
    assert_eq!(ran["proposal"], proposal.as_str(), "{ran}");
    assert_eq!(ran["verified"], true, "{ran}");
    assert_eq!(ran["approved_by"], json!(["bob"]), "{ran}");
    assert_eq!(ran["facts"]["row_count"], 1, "{ran}");
    // `status` says the same.
    let (status, failed) = client.call("status", json!({"proposal": proposal}));
    assert!(!failed, "{status}");
    assert_eq!(status["proposals"][0]["status"], "done", "{status}");
    assert_eq!(status["proposals"][0]["verified"], true, "{status}");

    // Graded by the database: the blocker is gone and the queued update
    // went through.
    assert!(waiter.wait().expect("the waiter ends").success());
    assert_eq!(
        pg.psql(
            &url,
            &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {blocker_pid}")
        ),
        "0"
    );
    assert_eq!(
        pg.psql(&url, "SELECT credit_limit FROM accounts WHERE id = 7"),
        "1001"
    );

    // The conclusion: the runbook's rechecks run first, then the log is
    // sealed (denied: the session's outcome keeps the denial on record).
    let (concluded, failed) = client.call(
        "conclude",
        json!({"diagnosis": "a forgotten psql transaction held the row lock; terminated"}),
    );
    assert!(!failed, "{concluded}");
    assert_eq!(concluded["status"], "concluded", "{concluded}");
    assert_eq!(
        concluded["session_ended"]["outcome"], "denied",
        "{concluded}"
    );
    let rechecked: Vec<&str> = concluded["rechecked"]
        .as_array()
        .expect("rechecked")
        .iter()
        .filter_map(|r| r["step"].as_str())
        .collect();
    // The recheck steps this session ran before the change (lock_headline
    // never ran: it was refused while the terminate waited).
    assert_eq!(rechecked, ["blocking_tree"], "{concluded}");
    assert_eq!(
        concluded["rechecked"][0]["facts"]["blocked"], 0,
        "{concluded}"
    );
    client.close();

    let events = log_of(&repo, &session);
    assert_eq!(
        events[0]["data"]["agent"]["model"],
        "ward-integration-tests 1.2.3"
    );
    assert_eq!(events[0]["data"]["agent"]["provider"], "mcp");
    assert_eq!(events[0]["data"]["operator"], "carol");
    assert_eq!(
        events[0]["data"]["inputs"],
        json!({"min_wait_seconds": "1"})
    );
    repo.ward(&["audit", "verify", &session]).expect_code(0);
}

/// A client that goes away mid-session, with a proposal waiting for
/// approval, leaves a sealed log, cancelled, the proposal named unapproved.
#[test]
fn a_client_that_disconnects_mid_session_leaves_a_sealed_cancelled_log() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    if !python_sdk() {
        return;
    }
    let url = pg.fresh_db("mcp_gone");
    let repo = TempRepo::copy_of_repo();
    let mut client = Client::start(
        &repo,
        &[
            "--url",
            &url,
            "--env",
            "dev",
            "--runbook",
            "pg-lock-contention",
        ],
    );
    let (headline, failed) = client.call("pg-lock-contention__lock_headline", json!({}));
    assert!(!failed, "{headline}");
    let session = headline["session"].as_str().expect("session").to_string();
    let (waiting, failed) = client.call(
        "pg-lock-contention__terminate_root_blocker",
        json!({"blocker_pid": 1}),
    );
    assert!(!failed, "{waiting}");
    assert_eq!(waiting["status"], "awaiting_approval", "{waiting}");
    let proposal = waiting["proposal"].as_str().expect("proposal");
    let stderr = client.close();
    assert!(
        stderr.contains(&format!("ward mcp: session {session} ended: cancelled")),
        "{stderr}"
    );
    let events = log_of(&repo, &session);
    let last = events.last().expect("events");
    assert_eq!(last["kind"], "session_ended");
    assert_eq!(last["data"]["outcome"], "cancelled");
    let unapproved = last["data"]["unapproved"].as_array().expect("unapproved");
    assert!(
        unapproved.len() == 1
            && unapproved[0]
                .as_str()
                .is_some_and(|id| id.starts_with(proposal)),
        "{last}"
    );
    repo.ward(&["audit", "verify", &session]).expect_code(0);
}

/// A bad target (or an input no runbook served declares) is an error on
/// stderr before the protocol starts, and stdout stays empty for the
/// client.
#[test]
fn an_unknown_target_is_a_usage_error_before_the_protocol_starts() {
    let repo = TempRepo::copy_of_repo();
    repo.write(
        "ward.yaml",
        "targets:\n  orders: { engine: postgres, url: \"postgres://ward@localhost/app\", environment: prod }\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["mcp", "--target", "nope"])
        .current_dir(repo.path())
        .env_remove("WARD_REPO")
        .stdin(Stdio::null())
        .output()
        .expect("ward runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no target `nope`") && err.contains("orders"),
        "{err}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args([
            "mcp",
            "--url",
            "postgres://ward@127.0.0.1:1/app",
            "--runbook",
            "pg-lock-contention",
            "--input",
            "application=billing",
        ])
        .current_dir(repo.path())
        .env_remove("WARD_REPO")
        .stdin(Stdio::null())
        .output()
        .expect("ward runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: --input application: no runbook served here declares an input `application`\n"
    );
}

/// Denials are answers to the client, never a reason to hand its session
/// to the offline planner: after three denied calls in a row the next
/// call is still the client's, and nothing else was proposed.
#[test]
fn three_denied_calls_in_a_row_leave_the_client_in_charge_of_its_session() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    if !python_sdk() {
        return;
    }
    let url = pg.fresh_db("mcp_denials");
    pg.psql(&url, ACCOUNTS);
    let repo = TempRepo::copy_of_repo();
    let mut client = Client::start(
        &repo,
        &[
            "--url",
            &url,
            "--env",
            "dev",
            "--runbook",
            "pg-lock-contention",
        ],
    );
    for sql in [
        "DELETE FROM accounts WHERE id = 1",
        "UPDATE accounts SET credit_limit = 0",
        "DROP TABLE accounts",
    ] {
        let (denied, failed) = client.call("query", json!({"sql": sql, "reason": "try"}));
        assert!(failed, "{denied}");
        assert_eq!(denied["status"], "denied", "{denied}");
    }
    let (read, failed) = client.call(
        "query",
        json!({"sql": "SELECT count(*) AS n FROM public.accounts", "reason": "how many"}),
    );
    assert!(!failed, "{read}");
    assert_eq!(read["facts"]["row_count"], 1, "{read}");
    let session = read["session"].as_str().expect("session").to_string();
    client.close();
    let events = log_of(&repo, &session);
    let sources: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "proposed")
        .filter_map(|e| e["data"]["source"].as_str())
        .collect();
    assert_eq!(sources, ["mcp"; 4]);
    assert!(
        !events
            .iter()
            .any(|e| e["kind"] == "agent_error" && e["data"]["handover"] == true)
    );
    assert_eq!(
        pg.psql(&url, "SELECT count(*) FROM accounts"),
        "10",
        "nothing was deleted"
    );
}

/// stdout is the protocol's: every line `ward mcp` writes there is a
/// JSON-RPC message answering the request sent, even when a session starts
/// and fails to connect (its logs go to .ward/ward.log). Raw JSON-RPC, no
/// SDK: what any client sees byte for byte.
#[test]
fn stdout_carries_only_protocol_messages() {
    let repo = TempRepo::copy_of_repo();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args([
            "mcp",
            "--url",
            "postgres://ward@127.0.0.1:1/app",
            "--env",
            "dev",
            "--runbook",
            "pg-lock-contention",
        ])
        .current_dir(repo.path())
        .env_remove("WARD_REPO")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ward mcp starts");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut exchange = |stdin: &mut ChildStdin, request: Value| -> Value {
        writeln!(stdin, "{request}").expect("send");
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
    };
    let init = exchange(
        &mut stdin,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}}),
    );
    assert_eq!(init["id"], 1);
    assert_eq!(init["result"]["serverInfo"]["name"], "ward", "{init}");
    writeln!(
        stdin,
        "{}",
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
    )
    .expect("send");
    let listed = exchange(
        &mut stdin,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    );
    assert_eq!(listed["id"], 2);
    assert!(
        listed["result"]["tools"]
            .as_array()
            .is_some_and(|t| t.len() > 4)
    );
    let step = exchange(
        &mut stdin,
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "pg-lock-contention__lock_headline", "arguments": {}}}),
    );
    assert_eq!(step["id"], 3);
    assert_eq!(step["result"]["isError"], true, "{step}");
    assert_eq!(
        step["result"]["structuredContent"]["session_ended"]["outcome"], "unreachable",
        "{step}"
    );
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).expect("read the rest");
    assert_eq!(rest, "", "nothing but answers on stdout");
    let status = child.wait().expect("ward exits");
    assert_eq!(status.code(), Some(0));
}
