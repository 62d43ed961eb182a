//! TUI costs, plain timing:
//! - render time of the session screen with 10,000 transcript entries at
//!   160x45 (p50/p99 over 300 frames; target p99 < 4 ms), following the
//!   newest entries, scrolled to the middle, and with the detail of a step
//!   that ran 2,000 times (sparklines over every run);
//! - time from start to the first frame of the home screen with 1,000
//!   runbooks in a temporary repository, loading them with
//!   `load_runbooks` as the real startup does (target < 150 ms), next to
//!   the full `contract::load_dir`.
//!
//!     cargo bench --bench tui

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use serde_json::{Value, json};

use ward::audit::{Event, FORMAT_VERSION, GENESIS};
use ward::config::Config;
use ward::tui::{App, Msg, Screen, SessionInfo, Theme, load_runbooks, update, view};

const FRAMES: usize = 300;

fn main() {
    let render = render_bench();
    let startup = startup_bench();
    match (render, startup) {
        (Ok(r), Ok(s)) => print!("{r}{s}"),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// Hash-chained events of a long session: `n` read-only proposals cycling
/// over a runbook's diagnostics, each proposed, analyzed, gated, executed
/// and summarized (four transcript entries each).
fn long_session(proposals: usize) -> Vec<Event> {
    let t0 = Utc
        .with_ymd_and_hms(2026, 11, 18, 20, 15, 0)
        .single()
        .unwrap_or_default();
    let mut events: Vec<Event> = Vec::new();
    let mut push = |kind: &str, data: Value, secs: i64| {
        let prev = events
            .last()
            .map_or_else(|| GENESIS.to_string(), |e| e.hash.clone());
        let mut ev = Event {
            v: FORMAT_VERSION,
            seq: events.len() as u64,
            ts: (t0 + chrono::Duration::seconds(secs))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            kind: kind.into(),
            data,
            prev,
            hash: String::new(),
        };
        ev.hash = ev.compute_hash();
        let h = ev.hash.clone();
        events.push(ev);
        h
    };
    push(
        "session_started",
        json!({"session_id": "bench", "operator": "alice", "host": "h", "ward_version": "0.1.0",
               "runbook": "pg-replication-lag", "runbook_version": 1,
               "target": {"name": "orders", "engine": "postgres", "environment": "prod"},
               "environment": "prod", "agent": {"provider": "offline"}, "dry_run": false,
               "provenance": {}}),
        0,
    );
    let steps = ["replication_headline", "replicas", "wal_receiver", "slots"];
    for i in 0..proposals {
        let secs = i as i64 * 3;
        let step = steps[i % steps.len()];
        let p = push(
            "proposed",
            json!({"step_id": step, "sql": format!("SELECT pid, state, replay_lag FROM pg_stat_replication WHERE {i} = {i}"),
                   "binds": [], "source": "runbook",
                   "rationale": "lag keeps growing; sample it again to see the trend"}),
            secs,
        );
        push(
            "analyzed",
            json!({"proposal": p, "risk": "read_only", "kinds": ["select"], "lock": "ACCESS SHARE",
                   "blocks": [], "findings": [], "tables": ["pg_stat_replication"],
                   "fingerprint": "0123456789abcdef"}),
            secs,
        );
        push(
            "gated",
            json!({"proposal": p, "decision": "allow", "approvers": 0, "risk": "read_only",
                   "rules": ["reads-run"], "policy": "default"}),
            secs,
        );
        push(
            "executing",
            json!({"proposal": p, "mode": "read_only"}),
            secs,
        );
        push(
            "executed",
            json!({"proposal": p, "rows_seen": 2, "rows_kept": 2, "capped": false,
                   "duration_ms": 12, "sha256": "ab".repeat(32)}),
            secs + 1,
        );
        push(
            "summarized",
            json!({"proposal": p, "summarizer": "builtin:rows",
                   "summary": format!("replica-a state=streaming replay_lag_seconds={}\nreplica-b state=streaming replay_lag_seconds={}", i % 97, i % 13),
                   "facts": {"max_lag_seconds": i % 97, "replicas": 2, "slots_inactive": i % 3},
                   "tokens": 30, "truncated": false}),
            secs + 1,
        );
    }
    events
}

fn key(c: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

fn frames(
    app: &mut App,
    label: &str,
    mut between: impl FnMut(&mut App, usize),
) -> Result<String, String> {
    let mut term = Terminal::new(TestBackend::new(160, 45)).map_err(|e| e.to_string())?;
    let mut times = Vec::with_capacity(FRAMES);
    for i in 0..FRAMES {
        between(app, i);
        let t = Instant::now();
        term.draw(|f| view(app, f)).map_err(|e| e.to_string())?;
        times.push(t.elapsed());
    }
    times.sort_unstable();
    Ok(format!(
        "  {label:<46} p50 {:>10}  p99 {:>10}  max {:>10}\n",
        ms(percentile(&times, 0.50)),
        ms(percentile(&times, 0.99)),
        ms(times[times.len() - 1]),
    ))
}

fn render_bench() -> Result<String, String> {
    let events = long_session(2_500);
    let t0 = Utc::now();
    let mut app = App::with_session(
        SessionInfo {
            runbook: None,
            target: "orders".into(),
            environment: "prod".into(),
            log_path: None,
        },
        "alice",
        Theme::new(false),
        t0,
    );
    app.size = (160, 45);
    let fold = Instant::now();
    for ev in events {
        update(&mut app, Msg::Event(Box::new(ev)));
    }
    let fold = fold.elapsed();
    let entries = app.session.as_ref().map_or(0, |s| s.cells.len());
    let mut out = format!(
        "session view, 160x45, {entries} transcript entries ({FRAMES} frames each; folding the events took {})\n",
        ms(fold)
    );
    let tick = |app: &mut App, i: usize| {
        update(
            app,
            Msg::Tick(t0 + chrono::Duration::milliseconds(100 * i as i64)),
        );
    };
    out += &frames(&mut app, "following the newest entries", tick)?;
    // Transcript focused, selection walked up into the middle.
    update(&mut app, key(KeyCode::Tab));
    for _ in 0..(entries / 2) / 5 {
        update(&mut app, key(KeyCode::PageUp));
    }
    out += &frames(
        &mut app,
        "scrolled to the middle, moving a line a frame",
        |app, i| {
            update(
                app,
                key(if i % 2 == 0 {
                    KeyCode::Up
                } else {
                    KeyCode::Down
                }),
            );
        },
    )?;
    // Step list focused: the detail of a step with 625 runs and sparklines.
    update(&mut app, key(KeyCode::Tab));
    update(&mut app, key(KeyCode::Tab));
    out += &frames(
        &mut app,
        "detail of a step run 625 times (sparklines)",
        tick,
    )?;
    Ok(out)
}

/// Copies `runbooks/*.yaml` into `dir/runbooks` under new ids until there
/// are `n`, with the summarizer scripts they name.
fn make_repo(dir: &Path, n: usize) -> Result<(), String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks");
    let dst = dir.join("runbooks");
    let io = |e: std::io::Error| e.to_string();
    std::fs::create_dir_all(dst.join("scripts")).map_err(io)?;
    for e in std::fs::read_dir(src.join("scripts")).map_err(io)? {
        let e = e.map_err(io)?;
        std::fs::copy(e.path(), dst.join("scripts").join(e.file_name())).map_err(io)?;
    }
    let mut originals = Vec::new();
    for e in std::fs::read_dir(&src).map_err(io)? {
        let p = e.map_err(io)?.path();
        if p.extension().is_some_and(|x| x == "yaml") {
            originals.push(std::fs::read_to_string(&p).map_err(io)?);
        }
    }
    originals.sort();
    for i in 0..n {
        let text = &originals[i % originals.len()];
        let renamed = text.replacen("\nid: ", &format!("\nid: copy{i:04}-"), 1);
        let renamed = if renamed == *text {
            text.replacen("id: ", &format!("id: copy{i:04}-"), 1)
        } else {
            renamed
        };
        let file = dst.join(format!("rb{i:04}.yaml"));
        std::fs::write(&file, renamed).map_err(io)?;
        backdate(&file)?;
    }
    Ok(())
}

/// Sets a file's mtime an hour back, as in a checkout (the list cache does
/// not trust files modified in the last two seconds).
fn backdate(file: &Path) -> Result<(), String> {
    let f = std::fs::File::options()
        .write(true)
        .open(file)
        .map_err(|e| e.to_string())?;
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .map_err(|e| e.to_string())
}

fn startup_bench() -> Result<String, String> {
    let dir = std::env::temp_dir().join(format!("ward-tui-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    make_repo(&dir, 1_000)?;
    let mut out = String::from(
        "home screen, 160x45, 1,000 runbooks: run 1 without the list cache (.ward/cache), runs 2-3 with it, run 4 after editing 10 runbooks\n",
    );
    for run in 1..=4 {
        if run == 4 {
            for i in (0..1_000).step_by(100) {
                let f = dir.join(format!("runbooks/rb{i:04}.yaml"));
                let text = std::fs::read_to_string(&f).map_err(|e| e.to_string())?;
                std::fs::write(&f, text + "\n# edited\n").map_err(|e| e.to_string())?;
                backdate(&f)?;
            }
        }
        let start = Instant::now();
        let cfg = Config::discover(&dir).map_err(|p| p.to_string())?;
        let mut app = App::new(Screen::Home, "alice", Theme::new(false), Utc::now());
        app.size = (160, 45);
        let mut term = Terminal::new(TestBackend::new(160, 45)).map_err(|e| e.to_string())?;
        term.draw(|f| view(&app, f)).map_err(|e| e.to_string())?;
        let first = start.elapsed();
        // What the loader job does off the UI loop, then the frame with the list.
        let (runbooks, problems) = load_runbooks(&cfg);
        let loaded = start.elapsed();
        let count = runbooks.len();
        update(&mut app, Msg::RunbooksLoaded { runbooks, problems });
        term.draw(|f| view(&app, f)).map_err(|e| e.to_string())?;
        let listed = start.elapsed();
        if count != 1_000 || problems != 0 {
            return Err(format!("loaded {count} runbooks with {problems} problems"));
        }
        out += &format!(
            "  run {run}: first frame (loading…) {:>10}   runbooks loaded {:>10}   first frame with the list {:>10}\n",
            ms(first),
            ms(loaded),
            ms(listed)
        );
    }
    // For comparison: the full load (SQL analysis, CEL compilation) that
    // `ward check` and starting a session do, which the list no longer waits for.
    let start = Instant::now();
    let cfg = Config::discover(&dir).map_err(|p| p.to_string())?;
    let (contracts, _) = ward::contract::load_dir(&cfg.runbooks, &cfg.runbook_analyzer());
    out += &format!(
        "  for comparison: contract::load_dir (full validation) of {} runbooks {:>10}\n",
        contracts.len(),
        ms(start.elapsed())
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(out)
}
