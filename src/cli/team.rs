//! The team's other live sessions on a session's target, before it
//! starts: each is warned about on stderr (owner, runbook, host, since),
//! and where the policy says `concurrent_sessions: acknowledge`, the
//! operator must name it with `--acknowledge SESSION_ID` or the session
//! does not start. What was shown and acknowledged goes into the new
//! session's `session_started` event.

use super::exit::{Exit, usage};
use super::session::Prepared;
use ward::config::Config;
use ward::journal::events::Concurrent;
use ward::policy::ConcurrentSessions;
use ward::store::team::LiveSession;

/// The other live sessions on the target of `prepared` (none without a
/// store, or when it cannot be reached: then a warning says so).
pub fn live_on_target(config: &Config, target: &str) -> Vec<LiveSession> {
    if config.spec.store.is_none() {
        return Vec::new();
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(_) => return Vec::new(),
    };
    let _tokio = runtime.enter();
    let store = match super::store::open(config) {
        Ok(s) => s,
        Err(e) => {
            errln!("warning: cannot look for other live sessions on {target}: {e}");
            return Vec::new();
        }
    };
    match runtime.block_on(store.live_sessions(chrono::Utc::now())) {
        Ok(live) => live
            .into_iter()
            .filter(|l| l.session.target == target)
            .collect(),
        Err(e) => {
            errln!("warning: cannot look for other live sessions on {target}: {e}");
            Vec::new()
        }
    }
}

/// Warns about the other live sessions on the session's target and,
/// where the policy asks, requires each to be acknowledged
/// (`acknowledged` holds the ids given with `--acknowledge`; a unique
/// prefix will do). Records them in the session's configuration.
pub fn check(
    config: &Config,
    prepared: &mut Prepared,
    acknowledged: &[String],
) -> Result<(), Exit> {
    let target = prepared.cfg.target.name.clone();
    let live = live_on_target(config, &target);
    let policy = prepared.cfg.policy.concurrent_sessions;
    let mut missing = Vec::new();
    for l in &live {
        let s = &l.session;
        let ack = acknowledged
            .iter()
            .any(|a| !a.is_empty() && s.session_id.starts_with(a.as_str()));
        let waiting = l
            .waiting
            .as_ref()
            .map(|w| format!("; {} for proposal {}", w.words(), w.proposal))
            .unwrap_or_default();
        errln!(
            "warning: session {} by {} (runbook {}, host {}, since {}) is live on target {target}{waiting}",
            s.session_id,
            s.owner,
            s.runbook,
            s.host,
            s.started_at.format("%Y-%m-%d %H:%M UTC"),
        );
        if policy == ConcurrentSessions::Acknowledge && !ack {
            missing.push(s.session_id.clone());
        }
        prepared.cfg.concurrent.push(Concurrent {
            session_id: s.session_id.clone(),
            owner: s.owner.clone(),
            runbook: s.runbook.clone(),
            host: s.host.clone(),
            since: s.started_at.to_rfc3339(),
            acknowledged: ack,
        });
    }
    if !missing.is_empty() {
        return Err(usage(format!(
            "policy {} requires acknowledging other live sessions on target {target} (concurrent_sessions: acknowledge); talk to their owners, then run again with {}",
            prepared.cfg.policy.id,
            missing
                .iter()
                .map(|m| format!("--acknowledge {m}"))
                .collect::<Vec<_>>()
                .join(" ")
        )));
    }
    Ok(())
}
