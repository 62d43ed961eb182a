//! Summarizer scripts: a child process fed JSON Lines on stdin.
//!
//! Isolation: empty environment except `PATH=/usr/bin:/bin` and
//! `LANG=C.UTF-8`, working directory = repository root, its own process
//! group (killed as a whole on timeout), stdout capped, stderr capped.
//! Streaming: rows go through a bounded channel to a writer thread; when the
//! channel is full the caller retries with short sleeps until the script's
//! deadline, then stops sending. Nothing here blocks past the deadline
//! (measured from spawn) except a bounded grace period for reaping.

use super::Row;
use super::redact::cut_bytes;
use std::io::{BufWriter, Read, Write};
use std::path::{Component, Path};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// PATH given to scripts (so `#!/usr/bin/env python3` resolves).
pub(crate) const SAFE_PATH: &str = "/usr/bin:/bin";
/// Stderr kept for the log.
pub(crate) const STDERR_MAX: usize = 16 * 1024;
/// Extra stderr bytes read so that a secret crossing the cut is still redacted whole.
const STDERR_SLACK: usize = 1024;
/// Lines buffered between the caller and the writer thread.
const CHANNEL_LINES: usize = 64;
const POLL: Duration = Duration::from_millis(2);

#[derive(Default)]
struct Capture {
    buf: Mutex<Vec<u8>>,
    done: AtomicBool,
    over: AtomicBool,
}

impl Capture {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.buf.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Reads `pipe` into `cap`, keeping at most `keep` bytes. With `drain`, keeps
/// reading (and discarding) past the limit; otherwise stops and flags it.
fn spawn_reader(mut pipe: impl Read + Send + 'static, cap: Arc<Capture>, keep: usize, drain: bool) {
    let _ = thread::Builder::new()
        .name("ward-script-out".into())
        .spawn(move || {
            let mut chunk = [0u8; 8192];
            loop {
                match pipe.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        let mut buf = cap.buf.lock().unwrap_or_else(|e| e.into_inner());
                        let room = keep.saturating_sub(buf.len());
                        buf.extend_from_slice(&chunk[..n.min(room)]);
                        if n > room {
                            cap.over.store(true, Ordering::SeqCst);
                            if !drain {
                                break;
                            }
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            cap.done.store(true, Ordering::SeqCst);
        });
}

fn spawn_writer(stdin: ChildStdin) -> Option<SyncSender<Vec<u8>>> {
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(CHANNEL_LINES);
    let spawned = thread::Builder::new()
        .name("ward-script-in".into())
        .spawn(move || {
            let mut w = BufWriter::with_capacity(64 * 1024, stdin);
            loop {
                let line = match rx.try_recv() {
                    Ok(l) => l,
                    Err(TryRecvError::Empty) => {
                        if w.flush().is_err() {
                            return;
                        }
                        match rx.recv() {
                            Ok(l) => l,
                            Err(_) => break,
                        }
                    }
                    Err(TryRecvError::Disconnected) => break,
                };
                if w.write_all(&line).is_err() {
                    return; // the script stopped reading or died: the sender sees Disconnected
                }
            }
            let _ = w.flush(); // dropping `w` closes the script's stdin
        });
    spawned.ok().map(|_| tx)
}

pub(crate) fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn fmt_bytes(n: usize) -> String {
    if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        crate::evidence::plural(n as u64, "byte", "bytes")
    }
}

pub(crate) enum Outcome {
    /// Raw stdout (valid UTF-8, within the cap) of a script that exited 0.
    Ok {
        stdout: String,
        stderr: Option<String>,
    },
    /// Why it failed, e.g. "failed (exit 3)", "timed out after 10s". Stdout is discarded.
    Failed {
        reason: String,
        stderr: Option<String>,
    },
}

pub(crate) struct ScriptRun {
    child: Option<Child>,
    deadline: Instant,
    timeout: Duration,
    cap: usize,
    tx: Option<SyncSender<Vec<u8>>>,
    stdout: Arc<Capture>,
    stderr: Arc<Capture>,
    failure: Option<String>,
    /// Rows not delivered because the script stalled until the deadline.
    pub(crate) stalled: bool,
}

fn inside(script: &str) -> bool {
    let p = Path::new(script);
    !script.is_empty()
        && p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

impl ScriptRun {
    pub(crate) fn start(
        script: &str,
        root: &Path,
        cwd: &Path,
        timeout: Duration,
        cap: usize,
    ) -> ScriptRun {
        let start = Instant::now();
        let mut run = ScriptRun {
            child: None,
            deadline: start + timeout,
            timeout,
            cap,
            tx: None,
            stdout: Arc::default(),
            stderr: Arc::default(),
            failure: None,
            stalled: false,
        };
        if !inside(script) {
            run.failure = Some("is not a relative path inside the runbooks directory".to_string());
            return run;
        }
        let mut cmd = Command::new(root.join(script));
        cmd.env_clear()
            .env("PATH", SAFE_PATH)
            .env("LANG", "C.UTF-8")
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        // ETXTBSY: another thread of this process may briefly hold a write fd on a
        // freshly written script (fork/exec race); retry for a moment.
        let mut attempts = 0;
        let spawned = loop {
            match cmd.spawn() {
                Err(e) if e.raw_os_error() == Some(26) && attempts < 50 => {
                    attempts += 1;
                    thread::sleep(Duration::from_millis(10));
                }
                other => break other,
            }
        };
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                run.failure = Some(format!("could not be started ({e})"));
                return run;
            }
        };
        run.deadline = Instant::now() + timeout;
        if let Some(out) = child.stdout.take() {
            spawn_reader(out, run.stdout.clone(), cap, false);
        } else {
            run.stdout.done.store(true, Ordering::SeqCst);
        }
        if let Some(err) = child.stderr.take() {
            spawn_reader(err, run.stderr.clone(), STDERR_MAX + STDERR_SLACK, true);
        } else {
            run.stderr.done.store(true, Ordering::SeqCst);
        }
        run.tx = child.stdin.take().and_then(spawn_writer);
        run.child = Some(child);
        run
    }

    /// Sends one (already pseudonymized and redacted) row as a JSON line. Never blocks past the deadline.
    pub(crate) fn send(&mut self, row: &Row) {
        let Some(tx) = &self.tx else { return };
        if self.stdout.over.load(Ordering::SeqCst) {
            self.tx = None;
            return;
        }
        let Ok(mut msg) = serde_json::to_vec(row) else {
            return;
        };
        msg.push(b'\n');
        let mut stop = false;
        loop {
            match tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) => {
                    if Instant::now() >= self.deadline {
                        self.stalled = true;
                        stop = true;
                        break;
                    }
                    msg = m;
                    thread::sleep(POLL);
                }
                Err(TrySendError::Disconnected(_)) => {
                    stop = true;
                    break;
                }
            }
        }
        if stop {
            self.tx = None;
        }
    }

    /// Whether rows sent now still reach the script (it has not stalled,
    /// died or overflowed its output).
    pub(crate) fn accepting(&self) -> bool {
        self.tx.is_some() && !self.stdout.over.load(Ordering::SeqCst)
    }

    /// Bytes buffered in the channel at most (a constant), for the memory test.
    pub(crate) fn state_len(&self) -> usize {
        CHANNEL_LINES
    }

    /// Closes stdin, waits for the script until its deadline, kills it if needed.
    pub(crate) fn finish(mut self) -> Outcome {
        self.tx = None; // writer flushes and closes stdin
        let Some(mut child) = self.child.take() else {
            let reason = self
                .failure
                .take()
                .unwrap_or_else(|| "could not be started".to_string());
            return Outcome::Failed {
                reason,
                stderr: None,
            };
        };
        let mut failure: Option<String> = None;
        let mut status: Option<ExitStatus> = None;
        loop {
            if self.stdout.over.load(Ordering::SeqCst) {
                kill_tree(&mut child);
                failure = Some(format!("wrote more than {} of output", fmt_bytes(self.cap)));
                break;
            }
            match child.try_wait() {
                Ok(Some(s)) => {
                    status = Some(s);
                    break;
                }
                Ok(None) => {}
                Err(e) => {
                    kill_tree(&mut child);
                    failure = Some(format!("could not be waited for ({e})"));
                    break;
                }
            }
            if Instant::now() >= self.deadline {
                kill_tree(&mut child);
                failure = Some(format!("timed out after {}", fmt_duration(self.timeout)));
                break;
            }
            thread::sleep(POLL);
        }
        // Exited: stdout must reach EOF before the deadline (a background
        // child of the script could keep it open).
        if failure.is_none() {
            while !self.stdout.done.load(Ordering::SeqCst) && Instant::now() < self.deadline {
                thread::sleep(POLL);
            }
            if self.stdout.over.load(Ordering::SeqCst) {
                failure = Some(format!("wrote more than {} of output", fmt_bytes(self.cap)));
            } else if !self.stdout.done.load(Ordering::SeqCst) {
                kill_tree(&mut child);
                failure = Some(format!("timed out after {}", fmt_duration(self.timeout)));
            }
        }
        // Give stderr a moment to drain (bounded; readers of killed trees end at EOF).
        let grace = Instant::now() + Duration::from_millis(200);
        while !self.stderr.done.load(Ordering::SeqCst) && Instant::now() < grace {
            thread::sleep(POLL);
        }
        let stderr = self.stderr_text();
        if let (None, Some(s)) = (&failure, status)
            && !s.success()
        {
            failure = Some(describe(s));
        }
        if let Some(reason) = failure {
            return Outcome::Failed { reason, stderr };
        }
        match String::from_utf8(self.stdout.take()) {
            Ok(stdout) => Outcome::Ok { stdout, stderr },
            Err(_) => Outcome::Failed {
                reason: "wrote invalid UTF-8".to_string(),
                stderr,
            },
        }
    }

    /// Stderr as text (lossy), not yet redacted, at most STDERR_MAX + slack bytes.
    fn stderr_text(&self) -> Option<String> {
        let raw = self.stderr.take();
        if raw.is_empty() {
            return None;
        }
        let mut s = String::from_utf8_lossy(&raw).into_owned();
        if self.stderr.over.load(Ordering::SeqCst) || s.len() > STDERR_MAX {
            s.push_str("\n... (stderr truncated)");
        }
        Some(s)
    }
}

/// Cuts redacted stderr to the log limit.
pub(crate) fn cap_stderr(s: &str) -> String {
    if s.len() <= STDERR_MAX {
        return s.to_string();
    }
    let marker = "\n... (stderr truncated)";
    let body = cut_bytes(s, STDERR_MAX.saturating_sub(marker.len()));
    format!("{body}{marker}")
}

fn describe(s: ExitStatus) -> String {
    if let Some(code) = s.code() {
        return format!("failed (exit {code})");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = s.signal() {
            return format!("was killed by signal {sig}");
        }
    }
    "failed".to_string()
}

/// Kills the script's process group (the script and anything it started), then
/// the script itself, and reaps it. Called before the script is reaped, or
/// after it exited while a member of its group still holds its stdout, so the
/// group id cannot have been reused.
fn kill_tree(child: &mut Child) {
    #[cfg(unix)]
    {
        let pgid = format!("-{}", child.id());
        let _ = Command::new("kill")
            .env_clear()
            .env("PATH", SAFE_PATH)
            .args(["-KILL", "--", &pgid])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for ScriptRun {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(mut child) = self.child.take()
            && !matches!(child.try_wait(), Ok(Some(_)))
        {
            kill_tree(&mut child);
        }
    }
}
