//! The TUI's file reading, kept out of the pure [`update`](super::update):
//! the runbook list, the scan of recorded sessions and the opening of one
//! log. The runtime runs these off the UI loop and hands the results to
//! `update` as messages.
//!
//! Nothing here writes a file or touches the terminal.

use std::path::{Path, PathBuf};

use crate::audit;
use crate::config::Config;
use crate::session::SessionState;

use super::app::{LoadedSession, SessionRow};
use super::list_cache;
use super::session::RunbookInfo;

/// The runbooks of a configuration as the TUI lists them, and how many
/// files did not parse. The list needs only what the files say, so it
/// parses them (on every core) without analysing their SQL; a runbook
/// that `ward check` would refuse is listed, and refused with the reason
/// when it is started (the launcher loads it fully).
pub fn load_runbooks(cfg: &Config) -> (Vec<RunbookInfo>, usize) {
    let Ok(files) = crate::contract::yaml_files(&cfg.runbooks) else {
        return (Vec::new(), 1);
    };
    let cache = cfg
        .sessions
        .parent()
        .map_or_else(|| cfg.root.join(".ward"), Path::to_path_buf)
        .join("cache/runbook-list.json");
    let parsed = list_cache::load(&cache, &files, parse_in_parallel);
    let problems = parsed.iter().filter(|p| p.is_none()).count();
    let mut runbooks: Vec<RunbookInfo> = parsed.into_iter().flatten().collect();
    runbooks.sort_by(|a, b| a.id.cmp(&b.id));
    (runbooks, problems)
}

/// What the list shows of one runbook file; `None` when it does not parse.
fn parse_runbook(file: &Path) -> Option<RunbookInfo> {
    let text = std::fs::read_to_string(file).ok()?;
    let spec: crate::contract::RunbookSpec = serde_yaml::from_str(&text).ok()?;
    Some(RunbookInfo::from_spec(&spec))
}

/// [`parse_runbook`] of each file, on up to 8 threads.
fn parse_in_parallel(files: &[PathBuf]) -> Vec<Option<RunbookInfo>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let chunk = files.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let jobs: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || part.iter().map(|f| parse_runbook(f)).collect::<Vec<_>>())
            })
            .collect();
        jobs.into_iter()
            .flat_map(|j| j.join().unwrap_or_default())
            .collect()
    })
}

/// Reads and verifies every session log in `dir`, newest first.
pub fn scan_sessions(dir: &Path) -> Vec<SessionRow> {
    let mut files = audit::session_logs(dir);
    files.reverse();
    files
        .into_iter()
        .filter_map(|path| {
            let (events, verification) = match audit::read_events(&path) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read a session log");
                    return None;
                }
            };
            let s = SessionState::from_events(&events);
            Some(SessionRow {
                id: path
                    .file_stem()
                    .and_then(|x| x.to_str())
                    .unwrap_or_default()
                    .to_string(),
                path,
                started: s.started_at,
                operator: s.operator,
                runbook: s.runbook,
                environment: s.environment,
                outcome: s.outcome,
                verification,
            })
        })
        .collect()
}

/// Reads one session log for the replay, with the runbook file the
/// session recorded in its provenance when that file still says the same
/// runbook id (a runbook outside the listed directory, such as the demo's,
/// would otherwise leave the replay without its steps' rollback and
/// verify).
pub fn open_session(path: &Path) -> Result<LoadedSession, audit::AuditError> {
    let (events, verification) = audit::read_events(path)?;
    let runbook = recorded_runbook(&events);
    Ok(LoadedSession {
        path: path.to_path_buf(),
        events,
        verification,
        runbook,
    })
}

fn recorded_runbook(events: &[audit::Event]) -> Option<RunbookInfo> {
    let started = events.first().filter(|e| e.kind == "session_started")?;
    let id = started.data.get("runbook")?.as_str()?;
    let files = started.data.get("provenance")?.get("files")?.as_array()?;
    files
        .iter()
        .filter_map(|f| f.get("path")?.as_str())
        .filter(|p| p.ends_with(".yaml") || p.ends_with(".yml"))
        .filter_map(|p| parse_runbook(Path::new(p)))
        .find(|r| r.id == id)
}
