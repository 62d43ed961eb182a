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
    }
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
