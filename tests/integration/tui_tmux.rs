//! The terminal UI in a real terminal: tmux runs `ward demo`, keys drive it
//! through a whole session including an approval, capture-pane checks what
//! a person sees, and the session log verifies afterwards.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::TempRepo;

pub(crate) fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux").args(args).output().expect("tmux runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn screen(session: &str) -> String {
    tmux(&["capture-pane", "-p", "-t", session])
}

/// Waits until the screen shows `needle`; panics with the screen if not.
pub(crate) fn wait_for(session: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = screen(session);
        if s.contains(needle) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {needle:?}; the screen shows:\n{s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub(crate) fn tmux_available() -> bool {
    let found = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").ok().as_deref() != Some("true"),
            "tmux is required in CI (apt-get install tmux)"
        );
        eprintln!("SKIPPED: tmux is not installed; the terminal end-to-end test did not run");
    }
    found
}

pub(crate) struct Kill(pub(crate) String);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .output();
    }
}

#[test]
fn a_person_approves_the_demo_index_in_a_real_terminal_and_the_log_verifies() {
    if !tmux_available() {
        return;
    }
    let repo = TempRepo::copy_of_repo().with_fixtures();
    let session = format!("ward-e2e-{}", std::process::id());
    let _kill = Kill(session.clone());
    let exit_file = repo.path().join("exit-code");
    let cmd = format!(
        "cd {} && WARD_OPERATOR=alice TERM=xterm-256color {} demo; echo $? > {}; sleep 30",
        shell_quote(repo.path()),
        shell_quote(Path::new(env!("CARGO_BIN_EXE_ward"))),
        shell_quote(&exit_file)
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "160",
        "-y",
        "45",
        &cmd,
    ]);
    // The session runs its diagnostics and stops at the index, asking.
    let asking = wait_for(&session, "add_customer_index");
    let asking = if asking.contains("approve") {
        asking
    } else {
        wait_for(&session, "approve")
    };
    assert!(
        asking.contains("DEV") || asking.contains("dev"),
        "the environment is on screen:\n{asking}"
    );
    std::thread::sleep(Duration::from_millis(500));
    tmux(&["send-keys", "-t", &session, "a"]);
    std::thread::sleep(Duration::from_millis(300));
    tmux(&["send-keys", "-t", &session, "-l", "demo index, checked"]);
    std::thread::sleep(Duration::from_millis(300));
    tmux(&["send-keys", "-t", &session, "Enter"]);
    let done = wait_for(&session, "Index orders.customer_id");
    assert!(!done.contains("panicked"), "{done}");
    // Leave: the session has ended, so one or two presses quit.
    for _ in 0..2 {
        tmux(&["send-keys", "-t", &session, "q"]);
        std::thread::sleep(Duration::from_millis(400));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !exit_file.exists() {
        assert!(
            Instant::now() < deadline,
            "ward did not quit:\n{}",
            screen(&session)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let code = std::fs::read_to_string(&exit_file).expect("exit code");
    assert_eq!(
        code.trim(),
        "0",
        "ward demo exit code; screen:\n{}",
        screen(&session)
    );
    // The log: approved by alice with her reason, executed, verified, sealed.
    let sessions = repo.path().join(".ward/sessions");
    let log = std::fs::read_dir(&sessions)
        .expect("sessions")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .expect("a session log");
    let text = std::fs::read_to_string(&log).expect("log");
    let events: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let approved = events
        .iter()
        .find(|e| e["kind"] == "approved")
        .expect("approved");
    assert_eq!(approved["data"]["operator"], "alice");
    assert_eq!(approved["data"]["reason"], "demo index, checked");
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "verified" && e["data"]["ok"] == true)
    );
    let log_s = log.display().to_string();
    repo.ward(&["audit", "verify", &log_s]).expect_code(0);
}

pub(crate) fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}
