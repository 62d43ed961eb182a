//! The team store on a real PostgreSQL server of its own: three operators
//! as three login roles with passwords, the schema from `ward store init`,
//! append-only enforced by the database.

use crate::harness::{Run, TempRepo, ward_in_env};
use crate::pg::PgServer;

/// A store server with its schema and three operators: alice (no policy
/// role), bob (`ward_dba`) and carol (no policy role).
pub struct StoreFixture {
    pub pg: PgServer,
    pub repo: TempRepo,
    /// The store database's name.
    pub db: String,
}

impl StoreFixture {
    /// Starts a private server (tests stop and restart it), creates the
    /// store database and runs `ward store init` as its owner.
    pub fn start() -> Option<StoreFixture> {
        let pg = PgServer::start_with(40)?;
        pg.require_passwords();
        pg.psql("postgres", "CREATE DATABASE ward_store");
        pg.psql("postgres", "CREATE ROLE ward_dba NOLOGIN");
        let repo = TempRepo::copy_of_repo();
        repo.write(
            "ward.yaml",
            "store: { url_env: WARD_STORE_URL }\ntargets: {}\n",
        );
        let fx = StoreFixture {
            pg,
            repo,
            db: "ward_store".into(),
        };
        let init = fx.ward_as_owner(&["store", "init"]).expect_code(0);
        assert!(
            init.stdout.contains("applied migration 1 (init)"),
            "{}",
            init.stdout
        );
        fx.pg.psql(
            &fx.db,
            "CREATE ROLE alice LOGIN PASSWORD 'alice-pw' IN ROLE ward_operator;
             CREATE ROLE bob LOGIN PASSWORD 'bob-pw' IN ROLE ward_operator, ward_dba;
             CREATE ROLE carol LOGIN PASSWORD 'carol-pw' IN ROLE ward_operator;",
        );
        Some(fx)
    }

    /// The store URL of an operator (`alice`, `bob`, `carol`), with their
    /// own password.
    pub fn url_of(&self, who: &str) -> String {
        format!(
            "postgres://{who}:{who}-pw@127.0.0.1:{}/{}",
            self.pg.port(),
            self.db
        )
    }

    /// Runs ward in the fixture's repository as the store's owner.
    pub fn ward_as_owner(&self, args: &[&str]) -> Run {
        let url = self.pg.url(&self.db);
        ward_in_env(self.repo.path(), args, None, &[("WARD_STORE_URL", &url)])
    }

    /// Runs ward in the fixture's repository as operator `who`.
    pub fn ward_as(&self, who: &str, args: &[&str]) -> Run {
        let url = self.url_of(who);
        ward_in_env(
            self.repo.path(),
            args,
            None,
            &[("WARD_STORE_URL", &url), ("WARD_OPERATOR", who)],
        )
    }

    /// psql as operator `who`: `Err` with the server's message when the
    /// database refuses.
    pub fn psql_as(&self, who: &str, sql: &str) -> Result<String, String> {
        self.pg.try_psql(&self.url_of(who), sql)
    }
}

#[test]
fn store_init_a_second_time_changes_nothing() {
    let Some(fx) = StoreFixture::start() else {
        return;
    };
    let again = fx.ward_as_owner(&["store", "init"]).expect_code(0);
    assert!(
        again.stdout.contains("schema is current (version 1)"),
        "{}",
        again.stdout
    );
    assert_eq!(
        fx.pg.psql(&fx.db, "SELECT count(*) FROM ward.migrations"),
        "1"
    );
}

#[test]
fn the_database_refuses_to_change_or_delete_stored_rows_and_stamps_who_wrote_them() {
    let Some(fx) = StoreFixture::start() else {
        return;
    };
    let genesis = "0".repeat(64);
    let hash = "a".repeat(64);
    // alice claims to be bob: the trigger writes who authenticated.
    fx.psql_as(
        "alice",
        &format!(
            "INSERT INTO ward.sessions VALUES ('s1', 'bob', 'h', 'rb', 't', 'prod', now(), now());
             INSERT INTO ward.events VALUES ('s1', 0, 'session_started', 'x', '{genesis}', '{hash}', '{{}}', 'bob', now());"
        ),
    )
    .unwrap();
    assert_eq!(
        fx.pg.psql(
            &fx.db,
            "SELECT owner || ' ' || (SELECT stored_by FROM ward.events) FROM ward.sessions"
        ),
        "alice alice"
    );
    // The event must follow the chain.
    let broken = fx
        .psql_as(
            "alice",
            &format!("INSERT INTO ward.events VALUES ('s1', 1, 'x', 'x', '{genesis}', '{}', '{{}}', '', now())", "b".repeat(64)),
        )
        .unwrap_err();
    assert!(
        broken.contains("does not follow the stored chain"),
        "{broken}"
    );
    // bob cannot append to alice's session.
    let foreign = fx
        .psql_as(
            "bob",
            &format!("INSERT INTO ward.events VALUES ('s1', 1, 'x', 'x', '{hash}', '{}', '{{}}', '', now())", "b".repeat(64)),
        )
        .unwrap_err();
    assert!(foreign.contains("belongs to alice"), "{foreign}");
    // Operators: no UPDATE, DELETE or TRUNCATE privilege.
    for sql in [
        "UPDATE ward.events SET line = '{}'",
        "DELETE FROM ward.events",
        "TRUNCATE ward.events",
        "UPDATE ward.sessions SET owner = 'bob'",
    ] {
        let refused = fx.psql_as("alice", sql).unwrap_err();
        assert!(refused.contains("permission denied"), "{sql}: {refused}");
    }
    // Even the owner (a superuser here) is refused by the triggers.
    for sql in [
        "UPDATE ward.events SET line = '{}'",
        "DELETE FROM ward.sessions",
        "TRUNCATE ward.events CASCADE",
    ] {
        let refused = fx.pg.try_psql(&fx.db, sql).unwrap_err();
        assert!(refused.contains("append-only"), "{sql}: {refused}");
    }
    assert_eq!(fx.pg.psql(&fx.db, "SELECT count(*) FROM ward.events"), "1");
}

// ------------------------------------------------------- mirroring

impl StoreFixture {
    /// The repository set up for `orders-cleanup` sessions under `policy`.
    fn with_runbook(&self, policy: &str) {
        self.repo
            .write("runbooks/orders-cleanup.yaml", crate::run::RUNBOOK);
        crate::run::use_policy(&self.repo, policy);
    }

    /// The one session log in the repository: its id and its lines.
    fn local_log(&self) -> (String, Vec<String>) {
        let dir = self.repo.path().join(".ward/sessions");
        let logs: Vec<_> = std::fs::read_dir(&dir)
            .expect("sessions dir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        assert_eq!(logs.len(), 1, "{logs:?}");
        let id = logs[0]
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("id")
            .to_string();
        let text = std::fs::read_to_string(&logs[0]).expect("read log");
        (id, text.lines().map(str::to_string).collect())
    }

    fn log_path(&self, id: &str) -> std::path::PathBuf {
        self.repo
            .path()
            .join(".ward/sessions")
            .join(format!("{id}.jsonl"))
    }

    /// The store's lines of a session, in seq order.
    fn stored_lines(&self, id: &str) -> Vec<String> {
        let out = self.pg.psql(
            &self.db,
            &format!("SELECT line FROM ward.events WHERE session_id = '{id}' ORDER BY seq"),
        );
        out.lines().map(str::to_string).collect()
    }

    /// `ward run orders-cleanup` as `who` against `url`, headless, with
    /// `extra` arguments; started, not waited for.
    /// `ward run orders-cleanup` on `url` (dev, headless) as `who`, to
    /// its end.
    fn run_cleanup(&self, who: &str, url: &str) -> Run {
        self.ward_as(
            who,
            &[
                "run",
                "orders-cleanup",
                "--url",
                url,
                "--env",
                "dev",
                "--headless",
            ],
        )
    }

    fn spawn_run(&self, who: &str, url: &str, extra: &[&str]) -> std::process::Child {
        std::process::Command::new(env!("CARGO_BIN_EXE_ward"))
            .args([
                "run",
                "orders-cleanup",
                "--url",
                url,
                "--env",
                "dev",
                "--headless",
            ])
            .args(extra)
            .current_dir(self.repo.path())
            .env_remove("WARD_REPO")
            .env("NO_COLOR", "1")
            .env("WARD_STORE_URL", self.url_of(who))
            .env("WARD_OPERATOR", who)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("ward run starts")
    }
}

fn kinds(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json line");
            v["kind"].as_str().unwrap_or("").to_string()
        })
        .collect()
}

#[test]
fn a_session_is_mirrored_line_for_line_and_a_local_log_cut_at_a_line_boundary_is_caught_by_the_store()
 {
    let Some(fx) = StoreFixture::start() else {
        return;
    };
    let Some(target) = crate::pg::server() else {
        return;
    };
    let url = crate::run::fixture(target);
    fx.with_runbook(crate::run::ALLOW_ALL_IN_DEV);
    let run = fx.run_cleanup("alice", &url).expect_code(0);
    let (id, local) = fx.local_log();
    assert!(
        !run.stderr.contains("store unreachable") && !run.stderr.contains("team store lacks"),
        "{}",
        run.stderr
    );
    // Every event once, byte for byte, stored by the role that ran it.
    assert_eq!(fx.stored_lines(&id), local);
    assert_eq!(
        fx.pg.psql(
            &fx.db,
            &format!("SELECT DISTINCT stored_by || ' ' || s.owner FROM ward.events JOIN ward.sessions s USING (session_id) WHERE session_id = '{id}'")
        ),
        "alice alice"
    );
    let store_verify = fx
        .ward_as("alice", &["audit", "verify", "--store", &id])
        .expect_code(0);
    assert!(
        store_verify.stdout.contains(&format!(
            "{id} (store): chain intact ({} events, sealed)",
            local.len()
        )),
        "{}",
        store_verify.stdout
    );
    let both = fx
        .ward_as("carol", &["audit", "verify", &id])
        .expect_code(0);
    assert!(
        both.stdout.contains(&format!(
            "store: agrees ({} events with the same hashes)",
            local.len()
        )),
        "{}",
        both.stdout
    );
    // Another operator lists and reads it from the store.
    let list = fx
        .ward_as("bob", &["audit", "list", "--store"])
        .expect_code(0);
    assert!(
        list.stdout.lines().any(|l| l.starts_with(&id)
            && l.contains("alice")
            && l.contains("orders-cleanup")
            && l.ends_with("sealed")),
        "{}",
        list.stdout
    );
    let show = fx
        .ward_as("bob", &["audit", "show", "--store", &id[..12]])
        .expect_code(0);
    assert!(
        show.stdout.contains("log (store") && show.stdout.contains("chain intact, sealed"),
        "{}",
        show.stdout
    );
    // Cut the sealed local log at a line boundary: alone it reads as
    // unsealed; the store holds the seal.
    let path = fx.log_path(&id);
    std::fs::write(&path, local[..local.len() - 1].join("\n") + "\n").expect("cut");
    let cut = fx
        .ward_as("alice", &["audit", "verify", &id])
        .expect_code(1);
    assert!(cut.stdout.contains("unsealed"), "{}", cut.stdout);
    assert!(
        cut.stdout.contains(&format!(
            "TAMPERED against the store: the local log ends after seq {} but the store holds 1 event more, up to its session_ended: the local log was cut",
            local.len() - 2
        )),
        "{}",
        cut.stdout
    );
    // Edit a line and re-hash the chain from there: alone it verifies;
    // against the store it diverges at that seq.
    let mut events: Vec<ward::audit::Event> = local
        .iter()
        .map(|l| serde_json::from_str(l).expect("event"))
        .collect();
    // (The seal: a proposal's id is its event's hash, so an earlier edit
    // would also have to rewrite every event naming it.)
    let last = events.len() - 1;
    events[last].ts = "2020-01-01T00:00:00.000Z".into();
    events[last].hash = events[last].compute_hash();
    let forged: Vec<String> = events.iter().map(|e| e.canonical_line()).collect();
    std::fs::write(&path, forged.join("\n") + "\n").expect("forge");
    let edited = fx
        .ward_as("alice", &["audit", "verify", &id])
        .expect_code(1);
    assert!(edited.stdout.contains("chain intact"), "{}", edited.stdout);
    assert!(
        edited.stdout.contains(&format!(
            "TAMPERED against the store: the local log diverges from the store's copy from seq {last}"
        )) && edited.stdout.contains("the store's copy verifies, so the local log was altered"),
        "{}",
        edited.stdout
    );
    // The store's copy is untouched and still verifies.
    fx.ward_as("alice", &["audit", "verify", "--store", &id])
        .expect_code(0);
}

#[test]
fn a_store_row_edited_by_the_superuser_past_the_triggers_fails_verify_store() {
    let Some(fx) = StoreFixture::start() else {
        return;
    };
    let Some(target) = crate::pg::server() else {
        return;
    };
    let url = crate::run::fixture(target);
    fx.with_runbook(crate::run::ALLOW_ALL_IN_DEV);
    fx.run_cleanup("alice", &url).expect_code(0);
    let (id, _) = fx.local_log();
    // The superuser bypasses the append-only triggers and backdates an
    // event.
    fx.pg.psql(
        &fx.db,
        &format!(
            "SET session_replication_role = replica;
             UPDATE ward.events SET line = replace(line, '\"seq\":2,\"ts\":\"2', '\"seq\":2,\"ts\":\"1')
              WHERE session_id = '{id}' AND seq = 2;"
        ),
    );
    assert_eq!(
        fx.pg.psql(
            &fx.db,
            &format!("SELECT count(*) FROM ward.events WHERE session_id = '{id}' AND line LIKE '%\"seq\":2,\"ts\":\"1%'")
        ),
        "1",
        "the row was rewritten"
    );
    let edited = [2];
    let v = fx
        .ward_as("carol", &["audit", "verify", "--store", &id])
        .expect_code(1);
    assert!(
        v.stdout.contains(&format!(
            "{id} (store): TAMPERED: first bad event seq {}",
            edited[0]
        )),
        "{}",
        v.stdout
    );
    // The local log verifies; against the store, the store's side is named.
    let local = fx
        .ward_as("alice", &["audit", "verify", &id])
        .expect_code(1);
    assert!(
        local.stdout.contains(&format!(
            "the store's copy diverges from the local log from seq {} (",
            edited[0]
        )) && local.stdout.contains("a store row was altered"),
        "{}",
        local.stdout
    );
}

#[test]
fn a_session_outlives_a_store_outage_and_the_store_catches_up_with_every_event_once() {
    let Some(fx) = StoreFixture::start() else {
        return;
    };
    let Some(target) = crate::pg::server() else {
        return;
    };
    let url = crate::run::fixture(target);
    fx.with_runbook(
        "id: default\nrules:\n  - id: reads-run\n    when: { risk: read_only }\n    decision: allow\n  - id: deletes-two-person\n    when: { statement: delete }\n    decision: { approve: { approvers: 2 } }\n",
    );
    // A slow read, so the session is in the middle of a step when the
    // store goes down, and logs its next events while the store is down.
    fx.repo.write(
        "runbooks/orders-cleanup.yaml",
        &crate::run::RUNBOOK
            .replace(
                "  - id: delete_stale\n    kind: remediation\n    requires: [headline]",
                "  - id: slow_look\n    kind: diagnostic\n    requires: [headline]\n    sql: SELECT pg_sleep(4) IS NOT NULL AS looked\n  - id: delete_stale\n    kind: remediation\n    requires: [headline, slow_look]",
            ),
    );
    let session = fx.spawn_run("alice", &url, &["--wait-for-approval", "60"]);
    let sessions = fx.repo.path().join(".ward/sessions");
    let slow =
        |e: &serde_json::Value| e["kind"] == "proposed" && e["data"]["step_id"] == "slow_look";
    let (id, _) = crate::run::wait_log(&sessions, |ev| ev.iter().any(slow));
    // Everything so far reaches the store while it is up.
    fx.pg.wait_for(
        &fx.db,
        &format!(
            "SELECT count(*) > 0 FROM ward.events WHERE session_id = '{id}' AND line LIKE '%slow_look%'"
        ),
        "t",
        std::time::Duration::from_secs(20),
    );
    fx.pg.stop();
    let (_, down) = crate::run::wait_log(&sessions, |ev| {
        ev.iter().any(|e| e["kind"] == "store_unreachable")
    });
    let unreachable = down
        .iter()
        .find(|e| e["kind"] == "store_unreachable")
        .expect("store_unreachable");
    assert!(
        unreachable["data"]["behind"].as_u64().expect("behind") >= 1,
        "{unreachable}"
    );
    assert!(
        unreachable["data"].get("stopped").is_none(),
        "{unreachable}"
    );
    // The session went on without the store: it waits for approval now.
    let (_, now) = crate::run::wait_log(&sessions, |ev| {
        ev.iter().any(|e| {
            (e["kind"] == "gated" && e["data"]["decision"] == "approve")
                || e["kind"] == "session_ended"
        })
    });
    let gated = now
        .iter()
        .find(|e| e["kind"] == "gated" && e["data"]["decision"] == "approve")
        .cloned()
        .unwrap_or_else(|| panic!("the session ended without waiting: {now:#?}"));
    let proposal = gated["data"]["proposal"]
        .as_str()
        .expect("proposal")
        .to_string();
    fx.pg.start_again();
    crate::run::wait_log(&sessions, |ev| {
        ev.iter().any(|e| e["kind"] == "store_caught_up")
    });
    // Approvals travel through the store, as each approver's own role.
    let short = &proposal[..12];
    fx.ward_as(
        "bob",
        &["approve", &id, short, "--reason", "looked at the rows"],
    )
    .expect_code(0);
    fx.ward_as(
        "carol",
        &["approve", &id, short, "--reason", "second pair of eyes"],
    )
    .expect_code(0);
    let done = session.wait_with_output().expect("session ends");
    assert_eq!(
        done.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let (_, local) = fx.local_log();
    let k = kinds(&local);
    let at = |kind: &str| k.iter().position(|x| x == kind).expect(kind);
    assert!(at("store_unreachable") < at("store_caught_up"), "{k:?}");
    assert!(at("store_caught_up") < at("session_ended"), "{k:?}");
    assert_eq!(
        k.iter().filter(|x| *x == "store_unreachable").count(),
        1,
        "{k:?}"
    );
    // Every event reached the store exactly once, in order, unchanged.
    assert_eq!(fx.stored_lines(&id), local);
    fx.ward_as("alice", &["audit", "verify", "--store", &id])
        .expect_code(0);
    let v = fx
        .ward_as("alice", &["audit", "verify", &id])
        .expect_code(0);
    assert!(v.stdout.contains("store: agrees"), "{}", v.stdout);
    let show = fx.ward_as("alice", &["audit", "show", &id]).expect_code(0);
    assert!(
        show.stdout.contains("store unreachable:") && show.stdout.contains("store caught up:"),
        "{}",
        show.stdout
    );
}

#[test]
fn store_sync_pushes_a_log_made_while_the_store_was_down_once() {
    let Some(fx) = StoreFixture::start() else {
        return;
    };
    let Some(target) = crate::pg::server() else {
        return;
    };
    let url = crate::run::fixture(target);
    fx.with_runbook(crate::run::ALLOW_ALL_IN_DEV);
    fx.pg.stop();
    let run = fx.run_cleanup("alice", &url).expect_code(0);
    let (id, local) = fx.local_log();
    assert!(
        kinds(&local).contains(&"store_unreachable".to_string()),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!(
            "the team store lacks {} of this session's events",
            local.len()
        )) && run
            .stderr
            .contains(&format!("`ward store sync {id}` pushes them")),
        "{}",
        run.stderr
    );
    // Unreachable: said, exit 6, nothing changes.
    let offline = fx.ward_as("alice", &["store", "sync", &id]).expect_code(6);
    assert!(offline.stdout.contains("not pushed"), "{}", offline.stdout);
    let v = fx
        .ward_as("alice", &["audit", "verify", &id])
        .expect_code(0);
    assert!(v.stdout.contains("store: unreachable"), "{}", v.stdout);
    fx.pg.start_again();
    let n = local.len();
    let first = fx
        .ward_as("alice", &["store", "sync", "--all"])
        .expect_code(0);
    assert_eq!(
        first.stdout.trim(),
        format!("{id}: appended {n}, already there 0")
    );
    let again = fx.ward_as("alice", &["store", "sync", &id]).expect_code(0);
    assert_eq!(
        again.stdout.trim(),
        format!("{id}: appended 0, already there {n}")
    );
    assert_eq!(fx.stored_lines(&id), local);
    fx.ward_as("bob", &["audit", "verify", "--store", &id])
        .expect_code(0);
    // A local log cut behind the store's copy is refused, not pushed.
    std::fs::write(fx.log_path(&id), local[..n - 1].join("\n") + "\n").expect("cut");
    let cut = fx.ward_as("alice", &["store", "sync", &id]).expect_code(1);
    assert!(
        cut.stdout.contains("the local log was cut"),
        "{}",
        cut.stdout
    );
}

#[test]
fn a_store_at_another_schema_version_is_not_written_and_the_session_runs_locally() {
    let Some(fx) = StoreFixture::start() else {
        return;
    };
    let Some(target) = crate::pg::server() else {
        return;
    };
    let url = crate::run::fixture(target);
    fx.with_runbook(crate::run::ALLOW_ALL_IN_DEV);
    // A newer ward migrated the store.
    fx.pg.psql(
        &fx.db,
        "INSERT INTO ward.migrations (version, name) VALUES (2, 'from the future')",
    );
    let run = fx.run_cleanup("alice", &url).expect_code(0);
    let (id, local) = fx.local_log();
    let notice: serde_json::Value = local
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .find(|e| e["kind"] == "store_unreachable")
        .expect("store_unreachable logged");
    assert_eq!(notice["seq"], 1, "right after session_started");
    assert_eq!(notice["data"]["stopped"], true);
    assert!(
        notice["data"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("has schema version 2, this ward needs 1")),
        "{notice}"
    );
    assert!(
        run.stderr.contains("store refused: mirroring stopped"),
        "{}",
        run.stderr
    );
    assert_eq!(
        fx.pg.psql(
            &fx.db,
            &format!("SELECT count(*) FROM ward.sessions WHERE session_id = '{id}'")
        ),
        "0"
    );
}

#[test]
fn a_resumed_session_first_pushes_what_the_store_missed_of_its_earlier_events() {
    let Some(fx) = StoreFixture::start() else {
        return;
    };
    let Some(target) = crate::pg::server() else {
        return;
    };
    let url = crate::run::fixture(target);
    fx.with_runbook(
        "id: default\nrules:\n  - id: reads-run\n    when: { risk: read_only }\n    decision: allow\n  - id: deletes-approved\n    when: { statement: delete }\n    decision: { approve: { approvers: 1 } }\n",
    );
    fx.pg.stop();
    let mut session = fx.spawn_run("alice", &url, &["--wait-for-approval", "60"]);
    let (id, _, _) = crate::run::wait_until_waiting(&fx.repo);
    session.kill().expect("SIGKILL");
    let _ = session.wait();
    fx.pg.start_again();
    assert_eq!(fx.stored_lines(&id), Vec::<String>::new());
    let resumed = fx
        .ward_as("alice", &["resume", &id, "--url", &url])
        .expect_code(3);
    let (_, local) = fx.local_log();
    assert_eq!(
        kinds(&local).last().map(String::as_str),
        Some("session_ended")
    );
    assert_eq!(fx.stored_lines(&id), local, "{}", resumed.stderr);
    fx.ward_as("bob", &["audit", "verify", "--store", &id])
        .expect_code(0);
}
