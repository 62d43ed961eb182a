//! `ward attach SESSION`: a live session of the team, on any host, in the
//! terminal UI, followed through the team store (its events as they are
//! stored). Approving or rejecting its pending proposal here (`a` / `r`,
//! reason required) stores a request as your own PostgreSQL role; the
//! session decides and its answer is shown.

use super::exit::{Exit, usage};
use ward::config::Config;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Needs the team store (`store:` in ward.yaml, your own role in its URL). The session's runbook, target, steps, evidence and the proposal waiting for approval are read from the store; the view follows new events as they are stored (LISTEN ward_events, and polled). Approvals count as the role PostgreSQL authenticated, with the policy roles its memberships give (ward_<role>).\n\nExample:\n  ward attach 20261127T123511Z-3cbeb4"
)]
pub struct Args {
    /// Session id (or a unique prefix), as `ward audit list --store` or the
    /// home screen's team list shows it.
    pub session: String,
}

pub fn run(config: &Config, args: &Args) -> Exit {
    if let Err(code) = super::session::need_terminal("ward approve SESSION PROPOSAL --reason ...") {
        return code;
    }
    super::session::init_log(config);
    let runtime = match super::session::runtime() {
        Ok(r) => r,
        Err(e) => return usage(e),
    };
    let _tokio = runtime.enter();
    let store = match super::store::open(config) {
        Ok(s) => s,
        Err(e) => return usage(e),
    };
    let found = runtime.block_on(async {
        let operator = store.whoami().await?;
        let session = store.find_session(&args.session).await?;
        let state = match &session {
            Some(s) => Some(store.session_state(s).await?),
            None => None,
        };
        Ok::<_, ward::store::StoreError>((operator, session, state))
    });
    let (operator, session, state) = match found {
        Ok((o, Some(s), Some(st))) => (o, s, st),
        Ok(_) => {
            return usage(format!(
                "the store {} has no single session `{}`",
                store.url(),
                args.session
            ));
        }
        Err(e) => return usage(e.to_string()),
    };
    let (runbooks, _) = ward::tui::load_runbooks(config);
    let info = ward::tui::SessionInfo {
        runbook: runbooks.into_iter().find(|r| r.id == state.runbook),
        target: state
            .target
            .get("name")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string(),
        environment: state.environment.clone(),
        log_path: None,
    };
    match runtime.block_on(ward::tui::run_attached(
        store,
        session,
        info,
        ward::tui::TuiOptions::new(operator),
    )) {
        Ok(_) => Exit::Success,
        Err(e) => {
            errln!("error: the terminal UI failed: {e}");
            Exit::Failed
        }
    }
}
