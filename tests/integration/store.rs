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
