//! `ward demo`: zero setup, no network, no server, from any directory. A
//! SQLite incident database is recreated from the seed embedded in the
//! binary at every run (so the incident is always there; `--keep` reuses
//! the last one), and the embedded demo runbook runs on it under the
//! embedded default policy with the offline planner, in the terminal UI or
//! headless. The demo never reads the repository's files, so it works
//! outside it; it writes only under `.ward/demo/`.

use super::exit::{Error, Exit, usage};
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

use ward::config::Config;
use ward::contract;
use ward::session::EventData;
use ward::session::events::DecisionKind;
use ward::session::runner::{self, Op};

use super::session::Report;

const RUNBOOK: &str = "demo-slow-customer-orders";

/// The demo's files, built into the binary so `ward demo` needs no
/// checkout: the seed of its database, its runbook and the policy it runs
/// under (the repository's default policy).
const SEED: &str = include_str!("../../fixtures/demo/seed.sql");
const RUNBOOK_FILE: (&str, &str) = (
    "demo-slow-customer-orders.yaml",
    include_str!("../../fixtures/demo/runbooks/demo-slow-customer-orders.yaml"),
);
const POLICY_FILE: (&str, &str) = ("default.yaml", include_str!("../../policies/default.yaml"));
const POLICY: &str = "default";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run without a terminal and print the report; the demo's own
    /// operator approves the index (this only ever touches the demo database).
    #[arg(long)]
    pub headless: bool,
    /// Reuse the demo database of the last run instead of recreating it
    /// from the seed (a fixed incident stays fixed).
    #[arg(long, conflicts_with = "reset")]
    pub keep: bool,
    /// Recreate the demo database from the seed: what every run does
    /// without `--keep`; accepted for older scripts.
    #[arg(long, hide = true)]
    pub reset: bool,
    #[arg(long, value_enum, default_value = "md")]
    pub report: Report,
}

pub fn run(config: &Config, args: &Args) -> Exit {
    // Before anything is created: a demo that cannot be shown leaves nothing.
    if !args.headless
        && let Err(code) = super::session::need_terminal("ward demo --headless")
    {
        return code;
    }
    let dir = config
        .sessions
        .parent()
        .unwrap_or(&config.sessions)
        .join("demo");
    let db = dir.join("app.db");
    let runtime = match super::session::runtime() {
        Ok(r) => r,
        Err(e) => return usage(e),
    };
    if args.keep && db.exists() {
        errln!(
            "ward demo: reusing {} (--keep): what the last run changed is still there",
            db.display()
        );
    } else {
        errln!(
            "ward demo: creating {} from the seed built into ward (--keep reuses the last one) ...",
            db.display()
        );
        if let Err(e) = runtime.block_on(create_db(&db)) {
            return usage(e);
        }
    }
    // The runbook and policy are written out (afresh every run) because a
    // session logs the files it ran under, and the TUI and `ward audit`
    // show their paths.
    let mut demo = config.clone();
    // The demo stays local and zero-setup, with or without a team store.
    demo.spec.store = None;
    demo.runbooks = dir.join("runbooks");
    demo.policies = dir.join("policies");
    demo.policy = POLICY.into();
    for (sub, (name, text)) in [
        (&demo.runbooks, RUNBOOK_FILE),
        (&demo.policies, POLICY_FILE),
    ] {
        if let Err(e) = write_file(sub, name, text) {
            return usage(e);
        }
    }
    let analyzer = demo.runbook_analyzer();
    let (contracts, problems) = contract::load_dir(&demo.runbooks, &analyzer);
    let Some(c) = contracts.into_iter().find(|c| c.id() == RUNBOOK) else {
        let why: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        return usage(format!(
            "the demo runbook does not load: {}",
            why.join("; ")
        ));
    };
    let target = match ward::exec::Target::from_url(&format!("sqlite:{}", db.display()), "dev") {
        Ok(mut t) => {
            t.name = "demo".into();
            t
        }
        Err(e) => return usage(e.to_string()),
    };
    let prepared = match super::session::prepare(
        &demo,
        super::session::Session {
            contract: c,
            target,
            inputs: Default::default(),
            agent: Some("offline"),
            dry_run: false,
            allow_dirty: true,
            allow_superuser: false,
            wait_for_approval: Some(super::session::INTERACTIVE_WAIT),
            runbooks: Vec::new(),
            follow: ward::session::runner::Follow::Never,
            loud: true,
        },
        analyzer,
    ) {
        Ok(p) => p,
        Err(e) => return usage(e),
    };
    if !args.headless {
        return super::session::interactive(prepared, "ward demo --headless");
    }
    let log = prepared.cfg.log_path.clone();
    let operator = prepared.cfg.operator.clone();
    let result = runtime.block_on(async move {
        let (ops_tx, ops_rx) = mpsc::unbounded_channel();
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<ward::audit::Event>();
        let task = tokio::spawn(runner::run(
            prepared.cfg,
            prepared.agent,
            ops_rx,
            Some(ev_tx),
        ));
        let mut timeline = ward::session::describe::Timeline::default();
        while let Some(e) = ev_rx.recv().await {
            errln!("ward: {}", timeline.line(&e));
            if let Ok(EventData::Gated(g)) = EventData::from_parts(&e.kind, &e.data)
                && g.decision == DecisionKind::Approve
                && !g.dry_run
            {
                let op = if g.approvers <= 1 {
                    Op::Approve {
                        proposal: g.proposal,
                        operator: operator.clone(),
                        reason: "approved by `ward demo --headless` (the demo database only)"
                            .into(),
                        for_session: false,
                    }
                } else {
                    Op::Leave
                };
                let _ = ops_tx.send(op);
            }
        }
        task.await
    });
    match result {
        Ok(Ok((state, outcome))) => {
            let mut out = std::io::stdout().lock();
            if let Err(e) =
                super::session::write_report(args.report, &state, outcome, &log, &mut out)
            {
                errln!("error: cannot write the report: {e}");
            }
            Exit::from(outcome)
        }
        Ok(Err(e)) => {
            errln!("error: {e}");
            Exit::Failed
        }
        Err(e) => {
            errln!("error: the session task failed: {e}");
            Exit::Failed
        }
    }
}

/// Writes one of the demo's embedded files to `dir/name`, replacing what a
/// previous run (or an older ward) left there.
fn write_file(dir: &Path, name: &str, text: &str) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, text)
        .map_err(|e| Error::from(format!("cannot write {}: {e}", path.display())))
}

/// Builds the demo database from the embedded seed next to its final path
/// and renames it into place, so an interrupted seed never leaves a
/// half-made database.
async fn create_db(db: &Path) -> Result<(), Error> {
    use sqlx::Connection;
    let dir = db.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let tmp: PathBuf = dir.join(format!(".app.db.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&tmp)
        .create_if_missing(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&opts)
        .await
        .map_err(|e| format!("cannot create the demo database: {e}"))?;
    // The seed is a reviewed file of the repository built into the binary,
    // not input.
    sqlx::raw_sql(sqlx::AssertSqlSafe(SEED))
        .execute(&mut conn)
        .await
        .map_err(|e| format!("the demo seed (fixtures/demo/seed.sql): {e}"))?;
    conn.close().await?;
    std::fs::rename(&tmp, db)
        .map_err(|e| Error::from(format!("cannot move the demo database into place: {e}")))
}
