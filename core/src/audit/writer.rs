//! Appending to a session log.
//!
//! Every append is written and fsynced before it returns, so the caller can
//! perform the action it announces knowing the record is durable. The writer
//! checks the safety invariants before writing and refuses an event that
//! would break one: the log can never be made to tell an unsafe story by the
//! engine itself. It never overwrites a log, and holds an exclusive lock on
//! the file so two processes cannot interleave appends.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};

use super::invariants::Checker;
use super::verify::{Verification, scan};
use super::{AuditError, Event, FORMAT_VERSION, GENESIS};

/// Appends events to one session log.
#[derive(Debug)]
pub struct AuditWriter {
    path: PathBuf,
    file: File,
    last: Option<Event>,
    checker: Checker,
    fsync: bool,
    poisoned: bool,
    line: Vec<u8>,
}

#[cfg(unix)]
fn restrict_file(opts: &mut OpenOptions) {
    use std::os::unix::fs::OpenOptionsExt;
    opts.mode(0o600);
}

#[cfg(not(unix))]
fn restrict_file(_: &mut OpenOptions) {}

/// Creates the missing ancestors of `dir`, each with mode 0700.
fn create_dirs(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Makes a new directory entry durable. Best effort: some file systems
/// refuse to fsync a directory, and the entry is then as durable as they
/// make it.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// How long a lock held by someone else is waited for before the log counts
/// as in use. A writer that just closed can still hold it for a moment: a
/// child process forked at that instant (a summarizer script, git) shares
/// the open file, and the lock, until it execs.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_millis(500);

fn lock(file: &File, path: &Path) -> Result<(), AuditError> {
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(AuditError::Locked {
                    path: path.to_path_buf(),
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(AuditError::io(path, e)),
        }
    }
}

impl AuditWriter {
    /// Creates a new, empty log at `path`; refuses if anything is there.
    pub fn create(path: &Path) -> Result<AuditWriter, AuditError> {
        let dir = parent_of(path);
        create_dirs(dir).map_err(|e| AuditError::io(dir, e))?;
        let mut opts = OpenOptions::new();
        opts.append(true).create_new(true);
        restrict_file(&mut opts);
        let file = opts.open(path).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => AuditError::Exists {
                path: path.to_path_buf(),
            },
            _ => AuditError::io(path, e),
        })?;
        lock(&file, path)?;
        sync_dir(dir);
        Ok(AuditWriter {
            path: path.to_path_buf(),
            file,
            last: None,
            checker: Checker::default(),
            fsync: true,
            poisoned: false,
            line: Vec::new(),
        })
    }

    /// Reopens an unsealed log to continue it. Refuses a sealed or tampered
    /// log. A torn last line (a crash mid-write) is copied with the whole
    /// file to `<path>.torn-<n>` and then cut off, and appends continue after
    /// the last good event.
    pub fn open_existing(path: &Path) -> Result<AuditWriter, AuditError> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)
            .map_err(|e| AuditError::io(path, e))?;
        lock(&file, path)?;
        let found = scan(BufReader::with_capacity(1 << 18, &file), |_| {})
            .map_err(|e| AuditError::io(path, e))?;
        match found.verdict {
            Verification::Ok { .. } => {
                return Err(AuditError::Sealed {
                    path: path.to_path_buf(),
                });
            }
            Verification::Tampered { seq, reason } => {
                return Err(AuditError::Tampered {
                    path: path.to_path_buf(),
                    seq,
                    reason,
                });
            }
            Verification::Truncated { .. } => {
                save_torn_copy(&mut file, path).map_err(|e| AuditError::io(path, e))?;
                file.set_len(found.good_len)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| AuditError::io(path, e))?;
            }
            Verification::Unsealed { .. } => {}
        }
        Ok(AuditWriter {
            path: path.to_path_buf(),
            file,
            last: found.last,
            checker: found.checker,
            fsync: true,
            poisoned: false,
            line: Vec::new(),
        })
    }

    /// Appends an event stamped now (UTC, RFC 3339 with milliseconds). It is
    /// on disk and fsynced when this returns; its `hash` names it.
    pub fn append(&mut self, kind: &str, data: serde_json::Value) -> Result<Event, AuditError> {
        self.append_at(kind, data, Utc::now())
    }

    /// `append` with the clock passed in.
    pub fn append_at(
        &mut self,
        kind: &str,
        data: serde_json::Value,
        ts: DateTime<Utc>,
    ) -> Result<Event, AuditError> {
        if self.poisoned {
            return Err(AuditError::Poisoned {
                path: self.path.clone(),
            });
        }
        let mut ev = Event {
            v: FORMAT_VERSION,
            seq: self.last.as_ref().map_or(0, |e| e.seq + 1),
            ts: ts.to_rfc3339_opts(SecondsFormat::Millis, true),
            kind: kind.to_string(),
            data,
            prev: self
                .last
                .as_ref()
                .map_or_else(|| GENESIS.to_string(), |e| e.hash.clone()),
            hash: String::new(),
        };
        ev.hash = ev.compute_hash();
        if let Err(v) = self.checker.check(&ev) {
            return Err(if self.checker.is_sealed() {
                AuditError::Sealed {
                    path: self.path.clone(),
                }
            } else {
                AuditError::Refused {
                    path: self.path.clone(),
                    seq: ev.seq,
                    kind: ev.kind,
                    reason: v.to_string(),
                }
            });
        }
        self.line.clear();
        ev.write_canonical(&mut self.line, true);
        self.line.push(b'\n');
        let written = self.file.write_all(&self.line).and_then(|()| {
            if self.fsync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            // A partial line may be on disk; appending after it would bury
            // it mid-file. Reopening repairs it as a torn line.
            self.poisoned = true;
            return Err(AuditError::io(&self.path, e));
        }
        self.checker.apply(&ev);
        self.last = Some(ev.clone());
        Ok(ev)
    }

    /// The last event in the log, if any.
    pub fn last(&self) -> Option<&Event> {
        self.last.as_ref()
    }

    /// Where the log lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Turns the per-event fsync off, for bulk writers in benchmarks only: a
    /// session must never run like this.
    pub fn set_fsync(&mut self, on: bool) {
        self.fsync = on;
    }

    /// Flushes everything written to disk.
    pub fn sync(&self) -> Result<(), AuditError> {
        self.file
            .sync_all()
            .map_err(|e| AuditError::io(&self.path, e))
    }
}

/// Copies the whole file to the first free `<path>.torn-<n>`, n from 1.
fn save_torn_copy(file: &mut File, path: &Path) -> io::Result<PathBuf> {
    for n in 1u32.. {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".torn-{n}"));
        let copy_path = PathBuf::from(name);
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        restrict_file(&mut opts);
        let mut copy = match opts.open(&copy_path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        };
        file.seek(SeekFrom::Start(0))?;
        io::copy(file, &mut copy)?;
        copy.sync_all()?;
        sync_dir(parent_of(path));
        return Ok(copy_path);
    }
    Err(io::Error::other("no free name for the torn copy"))
}
