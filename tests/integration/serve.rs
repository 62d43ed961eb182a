//! `ward serve`: Alertmanager webhooks over real HTTP start dry-run
//! sessions against a real incident, bad payloads get 400, a burst is held
//! to the concurrency limit, and SIGTERM stops it cleanly.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::TempRepo;

/// A running `ward serve` and the address it listens on.
struct Served {
    child: Child,
    addr: String,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(repo: &TempRepo, env: &[(&str, &str)], extra: &[&str]) -> Served {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ward"));
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .current_dir(repo.path())
        .env_remove("WARD_REPO")
        .env("NO_COLOR", "1")
        .env("WARD_OPERATOR", "alertmanager-intake")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("ward serve starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("ward serve says where it listens");
    let addr = first
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_string();
    Served {
        child,
        addr,
        stderr: rx,
    }
}

/// One HTTP/1.1 request; the status code and body.
fn http(addr: &str, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("write");
    s.write_all(body).expect("write body");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (code, body)
}

fn alert(name: &str, status: &str, labels: Value, fingerprint: &str) -> Value {
    let mut labels = labels;
    labels["alertname"] = json!(name);
    json!({
        "status": status, "labels": labels, "annotations": {"summary": "test"},
        "startsAt": "2026-11-27T03:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph", "fingerprint": fingerprint
    })
}

fn payload(alerts: Vec<Value>) -> Vec<u8> {
    json!({
        "version": "4", "groupKey": "{}:{alertname=\"x\"}", "truncatedAlerts": 0,
        "status": "firing", "receiver": "ward", "groupLabels": {}, "commonLabels": {},
        "commonAnnotations": {}, "externalURL": "http://alertmanager:9093", "alerts": alerts
    })
    .to_string()
    .into_bytes()
}

/// The lines of alerts.jsonl.
fn ledger(repo: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(repo.join(".ward/reports/alerts.jsonl")).unwrap_or_default();
    // Only whole lines: the server may be writing the next one.
    let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    whole
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn wait_for_finished(repo: &Path, n: usize, timeout: Duration) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let lines = ledger(repo);
        let done = lines.iter().filter(|l| l["event"] == "finished").count();
        if done >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {n} sessions finished: {lines:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_firing_alert_starts_a_dry_run_that_diagnoses_the_incident_and_changes_nothing() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("serve");
    pg.psql(
        &url,
        "CREATE TABLE accounts (id int PRIMARY KEY, credit_limit int NOT NULL); \
         INSERT INTO accounts SELECT g, 1000 FROM generate_series(1, 100) g;",
    );
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
    let mut waiter = pg.psql_background(&url, "UPDATE accounts SET credit_limit = 1 WHERE id = 7");
    pg.wait_for(
        &url,
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
        "1",
        Duration::from_secs(10),
    );

    let repo = TempRepo::copy_of_repo();
    repo.write(
        "ward.yaml",
        "targets:\n  orders: { engine: postgres, url_env: SERVE_TEST_URL, environment: staging }\n\
         alerts:\n  routes:\n    - match: { cluster: orders-prod }\n      target: orders\n  concurrency: 2\n  dedup_window: 10m\n",
    );
    let served = serve(&repo, &[("SERVE_TEST_URL", &url)], &[]);

    let firing = alert(
        "PostgresLockContention",
        "firing",
        json!({"cluster": "orders-prod", "severity": "page"}),
        "fp-lock-1",
    );
    let (code, body) = http(
        &served.addr,
        "POST",
        "/alerts",
        &payload(vec![firing.clone()]),
    );
    assert_eq!(code, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("JSON answer");
    assert_eq!(answer["alerts"][0]["action"], "queued", "{answer}");
    assert_eq!(answer["alerts"][0]["runbook"], "pg-lock-contention");
    assert_eq!(answer["alerts"][0]["target"], "orders");
    // Alertmanager re-sends it: nothing new starts.
    let (_, body) = http(&served.addr, "POST", "/alerts", &payload(vec![firing]));
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("JSON")["alerts"][0]["action"],
        "duplicate"
    );
    // An alert no runbook answers, one with no target, one resolved.
    let others = vec![
        alert(
            "DiskAlmostFullOnTheMoon",
            "firing",
            json!({"cluster": "orders-prod"}),
            "fp-2",
        ),
        alert(
            "PostgresLockContention",
            "firing",
            json!({"cluster": "elsewhere"}),
            "fp-3",
        ),
        alert(
            "PostgresLockContention",
            "resolved",
            json!({"cluster": "orders-prod"}),
            "fp-4",
        ),
    ];
    let (code, body) = http(&served.addr, "POST", "/alerts", &payload(others));
    assert_eq!(code, 200, "{body}");
    let actions: Vec<Value> = serde_json::from_str::<Value>(&body).expect("JSON")["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .map(|a| a["action"].clone())
        .collect();
    assert_eq!(
        actions,
        vec![json!("no_runbook"), json!("no_target"), json!("resolved")]
    );

    let lines = wait_for_finished(repo.path(), 1, Duration::from_secs(120));
    let finished = lines
        .iter()
        .find(|l| l["event"] == "finished")
        .expect("finished");
    assert_eq!(finished["exit"], 0, "{finished}");
    let session = finished["session"]
        .as_str()
        .expect("session id")
        .to_string();
    let report = std::fs::read_to_string(finished["report"].as_str().expect("report path"))
        .expect("the report file");
    assert!(report.contains("pg-lock-contention"), "{report}");
    assert!(
        report.contains("dry run") || report.contains("dry-run"),
        "{report}"
    );
    // The session log is sealed and intact.
    repo.ward(&["audit", "verify", &session]).expect_code(0);
    // Nothing was changed: the blocker still holds its lock, the update still waits.
    assert_eq!(
        pg.psql(
            &url,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'forgotten-psql' AND state = 'idle in transaction'"
        ),
        "1"
    );
    assert_eq!(
        pg.psql(
            &url,
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        ),
        "1"
    );
    // The summary line names the session and how to open it.
    let said: Vec<String> = served.stderr.try_iter().collect();
    assert!(
        said.iter().any(|l| l
            .contains("PostgresLockContention on orders -> pg-lock-contention: concluded")
            && l.contains(&format!("ward audit replay {session}"))),
        "{said:#?}"
    );
    let _ = waiter.kill();
    let _ = waiter.wait();
}

#[test]
fn bad_payloads_are_answered_400_with_the_reason_and_the_server_stays_up() {
    let repo = TempRepo::copy_of_repo();
    let served = serve(&repo, &[], &[]);
    let (code, body) = http(&served.addr, "POST", "/alerts", b"this is not json");
    assert_eq!(code, 400);
    assert!(
        body.contains("not an Alertmanager webhook payload"),
        "{body}"
    );
    let (code, body) = http(
        &served.addr,
        "POST",
        "/alerts",
        br#"{"version":"3","status":"firing","alerts":[]}"#,
    );
    assert_eq!(code, 400);
    assert!(body.contains("version \"3\" is not supported"), "{body}");
    let (code, body) = http(&served.addr, "POST", "/alerts", b"{\"version\":\"4\",\xff}");
    assert_eq!(code, 400, "{body}");
    let (code, body) = http(&served.addr, "POST", "/alerts", &payload(vec![]));
    assert_eq!((code, body.trim()), (400, "the payload has no alerts"));
    let (code, body) = http(&served.addr, "GET", "/healthz", b"");
    assert_eq!(code, 200, "{body}");
    let health: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(health["status"], "ok");
    let refused = ledger(repo.path())
        .iter()
        .filter(|l| l["event"] == "refused")
        .count();
    assert_eq!(refused, 4);
}

#[test]
fn a_burst_of_100_alerts_runs_at_most_concurrency_sessions_at_once_and_sigterm_stops_cleanly() {
    let repo = TempRepo::copy_of_repo();
    // Only a tiny SQLite runbook: the burst measures ward serve, not PostgreSQL.
    for entry in std::fs::read_dir(repo.path().join("runbooks")).expect("runbooks") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            std::fs::remove_file(path).expect("remove");
        }
    }
    repo.write(
        "runbooks/burst-check.yaml",
        "id: burst-check\ntitle: Burst check\nversion: 1\nowner: team-db\nengines: [sqlite]\n\
         triggers: [WardBurstTest]\ndescription: One read.\nsteps:\n  - id: headline\n    title: One number\n\
         \x20   kind: diagnostic\n    sql: SELECT 1 AS one\n    summarize: { builtin: rows }\n\
         conclusions:\n  - when: \"true\"\n    text: \"one is {headline.one}\"\nadhoc: none\n",
    );
    let db = repo.path().join("burst.db");
    std::fs::write(&db, b"").expect("an empty SQLite database");
    repo.write(
        "ward.yaml",
        &format!(
            "targets:\n  scratch: {{ engine: sqlite, url: \"sqlite:{}\", environment: dev }}\n\
             alerts:\n  routes:\n    - match: {{ team: db }}\n      target: scratch\n",
            db.display()
        ),
    );
    repo.ward(&["check"]).expect_code(0);
    let mut served = serve(&repo, &[], &["--concurrency", "2"]);
    let burst: Vec<Value> = (0..100)
        .map(|n| {
            alert(
                "WardBurstTest",
                "firing",
                json!({"team": "db", "n": n.to_string()}),
                &format!("fp-{n:03}"),
            )
        })
        .collect();
    let began = Instant::now();
    let (code, body) = http(&served.addr, "POST", "/alerts", &payload(burst));
    assert_eq!(code, 200, "{body}");
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "the webhook answers at once, sessions queue"
    );
    let lines = wait_for_finished(repo.path(), 100, Duration::from_secs(300));
    eprintln!(
        "burst: 100 alerts, 100 dry-run sessions at concurrency 2 in {:.1}s",
        began.elapsed().as_secs_f64()
    );
    // In the ledger's order a session holds its slot from `started` to
    // `finished`: never more than 2 at once.
    let (mut running, mut most) = (0i64, 0i64);
    for l in &lines {
        match l["event"].as_str() {
            Some("started") => running += 1,
            Some("finished") => running -= 1,
            _ => {}
        }
        most = most.max(running);
    }
    assert_eq!(most, 2, "at most 2 at once, and the burst used both");
    assert!(
        lines
            .iter()
            .filter(|l| l["event"] == "finished")
            .all(|l| l["exit"] == 0)
    );
    repo.ward(&["audit", "verify", "--all"]).expect_code(0);
    // SIGTERM: it stops accepting and exits 0.
    let pid = served.child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = served.child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "ward serve did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(0));
    let said: Vec<String> = served.stderr.try_iter().collect();
    assert!(
        said.iter()
            .any(|l| l.contains("ward serve: stopped (100 session(s) started, 100 finished)")),
        "{said:#?}"
    );
}

#[test]
fn an_alert_about_an_unreachable_target_ends_with_a_cannot_connect_report() {
    let repo = TempRepo::copy_of_repo();
    repo.write(
        "ward.yaml",
        "targets:\n  orders: { engine: postgres, url_env: SERVE_DOWN_URL, environment: staging }\n",
    );
    let served = serve(
        &repo,
        &[(
            "SERVE_DOWN_URL",
            "postgres://ward:sekrit-pw@127.0.0.1:1/app",
        )],
        &[],
    );
    let down = alert(
        "PostgresqlDown",
        "firing",
        json!({"ward_target": "orders"}),
        "fp-down",
    );
    let (code, body) = http(&served.addr, "POST", "/alerts", &payload(vec![down]));
    assert_eq!(code, 200, "{body}");
    let lines = wait_for_finished(repo.path(), 1, Duration::from_secs(60));
    let finished = lines
        .iter()
        .find(|l| l["event"] == "finished")
        .expect("finished");
    assert_eq!(finished["runbook"], "pg-failover");
    assert_eq!(finished["exit"], 6, "{finished}");
    assert_eq!(finished["outcome"], "unreachable");
    let report = std::fs::read_to_string(finished["report"].as_str().expect("report"))
        .expect("the report file");
    assert!(report.contains("Cannot connect"), "{report}");
    assert!(report.contains("connection refused"), "{report}");
    assert!(!report.contains("sekrit-pw"), "{report}");
    let ledger =
        std::fs::read_to_string(repo.path().join(".ward/reports/alerts.jsonl")).expect("ledger");
    assert!(!ledger.contains("sekrit-pw"));
}
