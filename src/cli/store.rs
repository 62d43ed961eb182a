//! `ward store ...`: the team's shared store (`store:` in ward.yaml), a
//! PostgreSQL database every operator reaches with their own role.

use super::exit::{Exit, usage};
use ward::config::Config;
use ward::store::{Store, StoreError};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: StoreCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    /// Create or migrate the store's schema (run once by the store's owner, again after upgrading ward).
    #[command(
        after_help = "Run it as a role that may create a schema and the NOLOGIN role `ward_operator` (the database's owner, or a superuser). It creates schema `ward` with append-only tables (operators get INSERT and SELECT only; triggers refuse UPDATE, DELETE and TRUNCATE to everyone) and applies the migrations this ward has that the store lacks, each in its own transaction. Running it again changes nothing.\n\nThen give each operator a login role of their own, a member of ward_operator, and members of ward_<role> for each policy role they hold:\n  CREATE ROLE alice LOGIN PASSWORD '...' IN ROLE ward_operator, ward_dba;\n\nExample:\n  WARD_STORE_URL=postgres://admin@store-host/ward ward store init\n\nExit codes: 0 the schema is current, 2 no store configured or it could not be reached or migrated."
    )]
    Init,
    /// Push local session logs to the store: those made offline, or by a session that lost the store.
    #[command(
        after_help = "Each log is verified locally first (a tampered log is never pushed; of a torn one, the intact part is), then held against the store's copy of the session: what the store holds must be the same events with the same hashes, and what it lacks is appended in order. Running it again appends nothing. Run it as the role that ran the session (the store lets only a session's owner append to it; a session the store has never seen becomes yours).\n\nExamples:\n  ward store sync 20261127-101500-a1b2\n  ward store sync --all\n\nExit codes: 0 every session is in the store, 1 a log was tampered or diverges from the store's copy (nothing appended to that session), 2 usage error, no store configured or the store refused, 6 the store could not be reached."
    )]
    Sync {
        /// Session ids (or unique prefixes), or log files.
        sessions: Vec<String>,
        /// Every session log in this repository.
        #[arg(long, conflicts_with = "sessions")]
        all: bool,
    },
}

pub fn run(config: &Config, args: &Args) -> Exit {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return usage(format!("cannot start the async runtime: {e}")),
    };
    let _tokio = runtime.enter();
    let store = match open(config) {
        Ok(s) => s,
        Err(e) => return usage(e),
    };
    match &args.command {
        StoreCommand::Init => match runtime.block_on(store.init()) {
            Ok(applied) if applied.is_empty() => {
                outln!(
                    "store {}: schema is current (version {})",
                    store.url(),
                    ward::store::SCHEMA_VERSION
                );
                Exit::Success
            }
            Ok(applied) => {
                for a in applied {
                    outln!(
                        "store {}: applied migration {} ({})",
                        store.url(),
                        a.version,
                        a.name
                    );
                }
                Exit::Success
            }
            Err(e) => usage(e.to_string()),
        },
        StoreCommand::Sync { sessions, all } => {
            let files = if *all {
                ward::audit::session_logs(&config.sessions)
            } else if sessions.is_empty() {
                return usage("give session ids or log files, or --all");
            } else {
                let mut files = Vec::new();
                for id in sessions {
                    match super::audit::find(config, id) {
                        Ok(f) => files.push(f),
                        Err(e) => return usage(e),
                    }
                }
                files
            };
            runtime.block_on(sync(&store, &files))
        }
    }
}

/// `ward store sync`: each log verified, held against the store's copy and
/// what the store lacks appended.
async fn sync(store: &Store, files: &[std::path::PathBuf]) -> Exit {
    use ward::audit::Verification;
    let mut worst = Exit::Success;
    for f in files {
        let name = f.display();
        let (events, verdict) = match ward::audit::read_events(f) {
            Ok(r) => r,
            Err(e) => {
                outln!("{name}: cannot read: {e}");
                worst = worst.worst(Exit::Usage);
                continue;
            }
        };
        let good = match &verdict {
            Verification::Ok { .. } | Verification::Unsealed { .. } => events.len(),
            Verification::Truncated { last_good_seq, .. } => {
                last_good_seq.map_or(0, |s| s as usize + 1)
            }
            Verification::Tampered { seq, reason } => {
                outln!("{name}: not pushed: the local log is TAMPERED at seq {seq}: {reason}");
                worst = worst.worst(Exit::Failed);
                continue;
            }
        }
        .min(events.len());
        let Some(id) = events
            .first()
            .and_then(|e| e.data.get("session_id"))
            .and_then(|v| v.as_str())
        else {
            outln!("{name}: nothing to push (no complete first event)");
            continue;
        };
        match ward::store::check::sync(store, id, &events[..good]).await {
            Ok(s) => outln!("{id}: appended {}, already there {}", s.appended, s.already),
            Err(e) => {
                outln!("{id}: not pushed: {e}");
                let code = match &e {
                    StoreError::Diverged { .. } | StoreError::Log { .. } => Exit::Failed,
                    e if e.is_unreachable() => Exit::Unreachable,
                    _ => Exit::Usage,
                };
                worst = worst.worst(code);
                if code == Exit::Unreachable {
                    break;
                }
            }
        }
    }
    worst
}

/// The store ward.yaml names, opened lazily (inside a Tokio runtime); an error says what to do
/// when there is none.
pub fn open(config: &Config) -> Result<Store, String> {
    let Some(spec) = &config.spec.store else {
        return Err(format!(
            "no store is configured; add `store: {{ url_env: WARD_STORE_URL }}` to {} and export WARD_STORE_URL with your own role",
            config
                .file
                .as_ref()
                .map_or_else(|| "ward.yaml".to_string(), |f| f.display().to_string())
        ));
    };
    let url = spec.url().map_err(|e: StoreError| e.to_string())?;
    Store::open(&url).map_err(|e| e.to_string())
}
