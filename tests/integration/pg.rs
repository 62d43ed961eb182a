//! A throwaway PostgreSQL server for integration tests.
//!
//! One server per test process, started on first use and torn down after the
//! process exits:
//!
//! ```ignore
//! let Some(pg) = crate::pg::server() else { return };
//! let url = pg.fresh_db("my_test");            // a database of its own
//! assert_eq!(pg.psql(&url, "SELECT 1"), "1");
//! ```
//!
//! Server binaries come from `$WARD_PG_BIN`, else the highest version under
//! `/usr/lib/postgresql/*/bin`, else `pg_config --bindir`. Without them the
//! PostgreSQL tests are skipped loudly, except in CI (`CI=true`), where a
//! missing server is a failure. As root (CI), the cluster runs as the
//! `postgres` system user, since initdb refuses root.
//!
//! Other major versions, for the version matrix: [`versions`] lists every
//! major found in `$WARD_PG_BINS` (bin directories separated by `:`), under
//! `/usr/lib/postgresql/*/bin` and the default above; [`server_of`] starts
//! one shared server per major on first use (the default major's is the
//! same server as [`server`]). With `CI=true`, a listed version that fails
//! to start is a failure; outside CI it is skipped loudly.
//!
//! Teardown: statics are never dropped, so every server has a watchdog, a
//! small shell loop in its own process group that waits for the test process
//! to exit, then stops the cluster (`pg_ctl stop -m immediate`) and deletes
//! its directory. A server from [`PgServer::start`] is also stopped on drop.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write as _};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long any harness command (initdb, pg_ctl, psql) may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the server may take to accept connections after `pg_ctl start`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running PostgreSQL cluster in a temporary directory, listening on
/// 127.0.0.1 with trust authentication for the `postgres` superuser.
pub struct PgServer {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    /// Run server-side commands as the `postgres` user (we are root).
    as_postgres: bool,
    max_connections: u32,
    /// More `-c name=value` server options (a test's own server).
    extra_options: String,
    watchdog: Option<Child>,
}

/// The shared server of this test process, started on first call; `None`
/// (after one loud message on stderr) when no server binaries exist outside
/// CI. Tests isolate themselves with [`PgServer::fresh_db`].
pub fn server() -> Option<&'static PgServer> {
    let Some(bin) = find_bin_dir() else {
        no_server_binaries();
        return None;
    };
    let major = major_of(&bin)
        .unwrap_or_else(|| panic!("`{}/postgres --version` could not be read", bin.display()));
    server_of(major)
}

/// No server binaries: a failure in CI, else one loud message on stderr.
fn no_server_binaries() {
    if in_ci() {
        panic!(
            "PostgreSQL server binaries not found; .ci/run must install Debian's \
             postgresql package (searched $WARD_PG_BIN, /usr/lib/postgresql/*/bin, \
             pg_config --bindir)"
        );
    }
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::SeqCst) {
        // Straight to stderr: eprintln! would be captured by the
        // test harness and never shown for a passing test.
        let _ = writeln!(
            std::io::stderr(),
            "\n=== SKIPPED: PostgreSQL tests (no server binaries found; \
             apt-get install postgresql, or set WARD_PG_BIN) ===\n"
        );
    }
}

/// The major versions (15, 17, 18, ...) whose server binaries this machine
/// has, with their bin directories, ascending: `$WARD_PG_BINS` (`:`
/// separated), `/usr/lib/postgresql/*/bin` and the default bin directory.
/// A directory named in `$WARD_PG_BINS` without initdb and pg_ctl, or whose
/// `postgres --version` cannot be read, panics: the list was a promise.
pub fn versions() -> &'static std::collections::BTreeMap<u32, PathBuf> {
    static VERSIONS: OnceLock<std::collections::BTreeMap<u32, PathBuf>> = OnceLock::new();
    VERSIONS.get_or_init(|| {
        let mut found = std::collections::BTreeMap::new();
        // The default first, so its major maps to the default bin directory
        // and server_of(its major) is the same server as server().
        if let Some(bin) = find_bin_dir()
            && let Some(major) = major_of(&bin)
        {
            found.insert(major, bin);
        }
        for dir in std::env::var("WARD_PG_BINS")
            .unwrap_or_default()
            .split(':')
            .filter(|d| !d.is_empty())
        {
            let dir = PathBuf::from(dir);
            assert!(
                usable_bin(&dir),
                "WARD_PG_BINS names {}, which has no initdb and pg_ctl",
                dir.display()
            );
            let major = major_of(&dir).unwrap_or_else(|| {
                panic!(
                    "WARD_PG_BINS names {}, whose `postgres --version` could not be read",
                    dir.display()
                )
            });
            found.entry(major).or_insert(dir);
        }
        for (_, bin) in debian_bin_dirs() {
            if let Some(major) = major_of(&bin) {
                found.entry(major).or_insert(bin);
            }
        }
        found
    })
}

/// The shared server of major version `major` (see [`versions`]), started
/// on first call; `None` when this machine has no binaries of that major,
/// or (outside CI, after a loud message) when they fail to start. In CI a
/// listed version that fails to start panics with the reason.
pub fn server_of(major: u32) -> Option<&'static PgServer> {
    type Started = OnceLock<Result<PgServer, String>>;
    static SERVERS: OnceLock<std::collections::BTreeMap<u32, Started>> = OnceLock::new();
    let servers =
        SERVERS.get_or_init(|| versions().keys().map(|m| (*m, OnceLock::new())).collect());
    let bin = versions().get(&major)?;
    let started = servers.get(&major)?.get_or_init(|| {
        // Remember a failed start, so the other tests fail fast with its
        // reason instead of each trying (and timing out) again.
        std::panic::catch_unwind(|| PgServer::start_in(bin.clone(), 100)).map_err(|payload| {
            payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "(non-string panic)".to_string())
        })
    });
    match started {
        Ok(server) => Some(server),
        Err(why) if in_ci() || Some(bin) == find_bin_dir().as_ref() => {
            panic!("the shared PostgreSQL {major} test server failed to start:\n{why}")
        }
        Err(why) => {
            static WARNED: AtomicBool = AtomicBool::new(false);
            if !WARNED.swap(true, Ordering::SeqCst) {
                let _ = writeln!(
                    std::io::stderr(),
                    "\n=== SKIPPED: PostgreSQL {major} ({}) failed to start: {why} ===\n",
                    bin.display()
                );
            }
            None
        }
    }
}

/// Every available major version's shared server, ascending (see
/// [`versions`]); empty only outside CI without any server binaries.
pub fn all_servers() -> Vec<(u32, &'static PgServer)> {
    versions()
        .keys()
        .filter_map(|major| server_of(*major).map(|pg| (*major, pg)))
        .collect()
}

impl PgServer {
    /// Initializes and starts a new cluster. `None` when no PostgreSQL server
    /// binaries are installed (outside CI); panics on any other problem.
    pub fn start() -> Option<PgServer> {
        Self::start_with(100)
    }

    /// Like [`start`](Self::start), with its own `max_connections` (a test
    /// that fills the connection slots needs a server of its own).
    pub fn start_with(max_connections: u32) -> Option<PgServer> {
        let Some(bin) = find_bin_dir() else {
            no_server_binaries();
            return None;
        };
        Some(Self::start_in(bin, max_connections))
    }

    /// Initializes and starts a new cluster from the binaries in `bin` (one
    /// of [`versions`]), with its own `max_connections`; panics on any
    /// problem.
    pub fn start_in(bin: PathBuf, max_connections: u32) -> PgServer {
        Self::start_in_with_options(bin, max_connections, &[])
    }

    /// Like [`start_with`](Self::start_with), with more server settings
    /// (`("logging_collector", "on")`), for a test that needs them on a
    /// server of its own.
    pub fn start_with_options(max_connections: u32, options: &[(&str, &str)]) -> Option<PgServer> {
        let Some(bin) = find_bin_dir() else {
            no_server_binaries();
            return None;
        };
        Some(Self::start_in_with_options(bin, max_connections, options))
    }

    /// Like [`start_in`](Self::start_in), with more server settings.
    pub fn start_in_with_options(
        bin: PathBuf,
        max_connections: u32,
        options: &[(&str, &str)],
    ) -> PgServer {
        let extra_options = options
            .iter()
            .map(|(name, value)| format!(" -c {name}={value}"))
            .collect();
        let mut pg = Self::new_in(bin, max_connections, extra_options);
        let mut initdb = pg.server_command("initdb");
        initdb.arg("-D").arg(pg.data_dir()).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        pg.run(&mut initdb);
        pg.launch();

        // In template1 too, so every fresh database has it.
        for db in ["postgres", "template1"] {
            pg.psql(db, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
        }
        pg
    }

    /// A standby of `primary`, started from a base backup of it
    /// (`pg_basebackup -R`, WAL streamed), on a port of its own, streaming
    /// from `primary` through the physical replication slot `slot` (created
    /// on the primary by the backup). Same binaries and settings as the
    /// primary.
    pub fn standby_of(primary: &PgServer, slot: &str) -> PgServer {
        let mut pg = Self::new_in(
            primary.bin.clone(),
            primary.max_connections,
            primary.extra_options.clone(),
        );
        let mut backup = pg.server_command("pg_basebackup");
        backup
            .arg("-D")
            .arg(pg.data_dir())
            .args(["-h", "127.0.0.1", "-p"])
            .arg(primary.port.to_string())
            .args([
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
                "-C",
                "-S",
                slot,
                "--no-sync",
            ]);
        pg.run(&mut backup);
        pg.launch();
        pg
    }

    /// Stops the server (`pg_ctl stop -m fast`); the directory stays until
    /// drop.
    pub fn stop(&self) {
        let mut stop = self.server_command("pg_ctl");
        stop.arg("-D")
            .arg(self.data_dir())
            .args(["stop", "-m", "fast", "-t", "30"]);
        self.run(&mut stop);
    }

    /// Starts a stopped server again on the same port and data, and waits
    /// until it accepts connections.
    pub fn start_again(&self) {
        let mut start = self.pg_ctl_start();
        let out = run_with_timeout(&mut start, COMMAND_TIMEOUT);
        if !out.status.is_some_and(|s| s.success()) {
            panic!("{}", self.failure("pg_ctl start", &out));
        }
        self.wait_ready();
    }

    /// Stops the server, appends `settings` (postgresql.conf lines) to its
    /// configuration and starts it again on the same port, without waiting
    /// for it to accept connections (a standby with `hot_standby = off`
    /// never does).
    pub fn restart_with(&mut self, settings: &str) {
        self.stop();
        let conf = self.data_dir().join("postgresql.conf");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .unwrap_or_else(|e| panic!("open {}: {e}", conf.display()));
        writeln!(file, "{settings}")
            .unwrap_or_else(|e| panic!("append to {}: {e}", conf.display()));
        drop(file);
        let mut start = self.pg_ctl_start();
        let out = run_with_timeout(&mut start, COMMAND_TIMEOUT);
        if !out.status.is_some_and(|s| s.success()) {
            panic!("{}", self.failure("pg_ctl start", &out));
        }
    }

    /// Promotes a standby (`pg_ctl promote`, waiting until it is done).
    pub fn promote(&self) {
        let mut promote = self.server_command("pg_ctl");
        promote
            .arg("-D")
            .arg(self.data_dir())
            .args(["promote", "-w", "-t", "30"]);
        self.run(&mut promote);
    }

    /// Replaces pg_hba.conf so TCP connections need a password
    /// (scram-sha-256), except the harness's own `postgres` superuser,
    /// which stays trusted; reloads the server.
    pub fn require_passwords(&self) {
        let hba = "local all all trust\n\
                   host all postgres 127.0.0.1/32 trust\n\
                   host replication postgres 127.0.0.1/32 trust\n\
                   host all all 127.0.0.1/32 scram-sha-256\n";
        let path = self.data_dir().join("pg_hba.conf");
        std::fs::write(&path, hba).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        self.psql("postgres", "SELECT pg_reload_conf()");
    }

    /// A new server directory with its watchdog, nothing in it yet.
    fn new_in(bin: PathBuf, max_connections: u32, extra_options: String) -> PgServer {
        let as_postgres = is_root();
        if as_postgres {
            let known = Command::new("id")
                .args(["-u", "postgres"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                known,
                "running as root, so the PostgreSQL test server must run as the `postgres` \
                 user, but there is no such user (Debian's postgresql package creates it)"
            );
        }

        let dir = tempfile::Builder::new()
            .prefix("ward-pg-")
            .tempdir_in(temp_base(as_postgres))
            .expect("create a temporary directory for PostgreSQL")
            .keep(); // deleted by Drop or the watchdog, never while the server runs
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod 0755 {}: {e}", dir.display()));

        let mut pg = PgServer {
            dir,
            bin,
            port: 0,
            as_postgres,
            max_connections,
            extra_options,
            watchdog: None,
        };
        // From here on, a panic drops `pg`, which stops and deletes the
        // cluster; the watchdog covers a process that dies without unwinding.
        pg.watchdog = Some(pg.spawn_watchdog());
        if as_postgres {
            pg.run(Command::new("chown").args(["-R", "postgres"]).arg(&pg.dir));
        }
        pg
    }

    /// Starts the cluster in the data directory on a free port and waits
    /// until it accepts connections.
    fn launch(&mut self) {
        // The port is free when we look; another process may take it before
        // the server binds it, so try a few.
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.port = free_port();
            let out = run_with_timeout(&mut self.pg_ctl_start(), COMMAND_TIMEOUT);
            if out.status.is_some_and(|s| s.success()) {
                break;
            }
            if attempt < 3 && self.log_tail(20).contains("could not bind") {
                continue;
            }
            panic!("{}", self.failure("pg_ctl start", &out));
        }
        self.wait_ready();
    }

    /// The server's major version (15, 17, 18, ...), from `server_version_num`.
    pub fn major(&self) -> u32 {
        let num: u32 = self
            .psql("postgres", "SHOW server_version_num")
            .parse()
            .unwrap_or_else(|e| panic!("server_version_num: {e}"));
        num / 10000
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding `initdb`, `pg_ctl`, `psql`, ...
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// The URL of database `db` for the `postgres` superuser (no password).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a new, uniquely named database (from template1, so it has
    /// pg_stat_statements) and returns its URL.
    pub fn fresh_db(&self, name_hint: &str) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let mut name: String = name_hint
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        if name.is_empty() {
            name.push_str("db");
        }
        let name = format!("{name}_{}", NEXT.fetch_add(1, Ordering::SeqCst));
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""));
        self.url(&name)
    }

    /// Runs `sql` with psql in database `db` (a name, or a URL from
    /// [`fresh_db`](Self::fresh_db)) and returns its output, unaligned and
    /// tuples only, trimmed. Panics with psql's stderr on failure.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        match self.try_psql(db, sql) {
            Ok(out) => out,
            Err(why) => panic!("{why}"),
        }
    }

    /// Like [`psql`](Self::psql), but a failure (an SQL error, a timeout) is
    /// returned as `Err` with psql's stderr, for tests that expect one.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = run_with_timeout(&mut self.psql_command(db, sql), COMMAND_TIMEOUT);
        if out.status.is_some_and(|s| s.success()) {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(self.failure(&format!("psql -d {db} -c {sql:?}"), &out))
        }
    }

    /// Starts psql running `sql` in the background, e.g. to hold a lock:
    /// `BEGIN; LOCK TABLE t; SELECT pg_sleep(30);`. stdout and stderr are
    /// piped. Killing the child does not end a server session busy in a
    /// query (the backend notices only when the query ends): terminate it
    /// with `pg_terminate_backend` if the test needs the lock back.
    pub fn psql_background(&self, db: &str, sql: &str) -> Child {
        self.psql_command(db, sql)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn psql in {}: {e}", self.bin.display()))
    }

    /// Opens a psql session to `db` (a name or a URL from
    /// [`fresh_db`](Self::fresh_db)) as `user`, with `application_name`
    /// `app`, sends it `sql` (may be empty) and leaves it connected, e.g.
    /// idle, or idle in transaction after `BEGIN; UPDATE ...;`. Dropping the
    /// returned handle disconnects it.
    pub fn session(&self, db: &str, user: &str, app: &str, sql: &str) -> Held {
        let name = db.rsplit('/').next().unwrap_or(db);
        let mut cmd = self.psql_base(name);
        cmd.args(["-U", user])
            .env("PGAPPNAME", app)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn psql in {}: {e}", self.bin.display()));
        if !sql.is_empty() {
            let stdin = child.stdin.as_mut().expect("psql stdin");
            writeln!(stdin, "{sql}").expect("send SQL to psql");
        }
        Held(child)
    }

    /// Polls `sql` in `db` until its output is `expected`, panicking after
    /// `timeout` with the last output (e.g. to wait until a background
    /// session holds its lock).
    pub fn wait_for(&self, db: &str, sql: &str, expected: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.try_psql(db, sql);
            if got.as_deref() == Ok(expected) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "waited {timeout:?} for {sql:?} to return {expected:?}; last: {got:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("log")
    }

    fn psql_command(&self, db: &str, sql: &str) -> Command {
        let mut cmd = self.psql_base(db);
        cmd.args(["-U", "postgres", "-c", sql]);
        cmd
    }

    /// psql with the harness's flags, connected to `db`, without a user.
    fn psql_base(&self, db: &str) -> Command {
        let psql = self.bin.join("psql");
        let mut cmd = Command::new(if psql.exists() {
            psql
        } else {
            PathBuf::from("psql")
        });
        cmd.args([
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
        ])
        .arg(self.port.to_string())
        .args(["-d", db]);
        clean_pg_env(&mut cmd);
        cmd
    }

    /// A server binary, run as `postgres` when we are root.
    fn server_command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        // The postgres user may not be able to enter our working directory.
        cmd.current_dir(&self.dir);
        clean_pg_env(&mut cmd);
        cmd
    }

    fn pg_ctl_start(&self) -> Command {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={} \
             -c shared_preload_libraries=pg_stat_statements -c fsync=off \
             -c max_connections={} -c log_min_messages=warning{}",
            self.port,
            self.dir.display(),
            self.max_connections,
            self.extra_options
        );
        let mut cmd = self.server_command("pg_ctl");
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_file())
            .args(["-w", "-t", "30", "-o", &options, "start"]);
        cmd
    }

    /// After `pg_ctl -w start`: polls until a TCP connection works.
    fn wait_ready(&self) {
        let isready = self.bin.join("pg_isready");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let out = if isready.exists() {
                let mut cmd = Command::new(&isready);
                cmd.args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                ])
                .args(["-d", "postgres", "-t", "2"]);
                clean_pg_env(&mut cmd);
                run_with_timeout(&mut cmd, Duration::from_secs(10))
            } else {
                run_with_timeout(
                    &mut self.psql_command("postgres", "SELECT 1"),
                    Duration::from_secs(10),
                )
            };
            if out.status.is_some_and(|s| s.success()) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}",
                    self.failure(
                        &format!("waiting {READY_TIMEOUT:?} for the server to accept connections"),
                        &out
                    )
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs a setup command, panicking with its output and the log tail.
    fn run(&self, cmd: &mut Command) {
        let out = run_with_timeout(cmd, COMMAND_TIMEOUT);
        if !out.status.is_some_and(|s| s.success()) {
            panic!("{}", self.failure(&format!("{cmd:?}"), &out));
        }
    }

    fn failure(&self, what: &str, out: &CmdOutput) -> String {
        let status = match out.status {
            Some(s) => s.to_string(),
            None => format!("timed out after {:?} and was killed", out.elapsed),
        };
        let mut msg = format!(
            "PostgreSQL test harness: {what} failed ({status})\n--- stdout\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&out.stdout).trim_end(),
            String::from_utf8_lossy(&out.stderr).trim_end(),
        );
        let tail = self.log_tail(40);
        if !tail.is_empty() {
            let _ = write!(
                msg,
                "\n--- server log ({}), last lines\n{tail}",
                self.log_file().display()
            );
        }
        msg
    }

    fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.log_file()).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// A shell loop, in its own process group (so Ctrl-C on the tests does
    /// not kill it), that tears the cluster down once this process is gone.
    fn spawn_watchdog(&self) -> Child {
        let pg_ctl = shell_quote(&self.bin.join("pg_ctl"));
        let stop = if self.as_postgres {
            format!("runuser -u postgres -- {pg_ctl}")
        } else {
            pg_ctl
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             {stop} -D {data} stop -m immediate -t 20 >/dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            data = shell_quote(&self.data_dir()),
            dir = shell_quote(&self.dir),
        );
        Command::new("sh")
            .args(["-c", &script])
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn the PostgreSQL watchdog: {e}"))
    }
}

/// A psql session opened by [`PgServer::session`]; dropping it disconnects.
pub struct Held(Child);

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.data_dir().join("postmaster.pid").exists() {
            let mut stop = self.server_command("pg_ctl");
            stop.arg("-D")
                .arg(self.data_dir())
                .args(["stop", "-m", "immediate", "-t", "20"]);
            run_with_timeout(&mut stop, COMMAND_TIMEOUT);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}

/// What a bounded command produced; `status` is `None` when it timed out.
struct CmdOutput {
    status: Option<std::process::ExitStatus>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    elapsed: Duration,
}

/// Runs `cmd` for at most `timeout`, killing it after. Output goes to
/// temporary files, not pipes, so a daemon that inherits them (pg_ctl's
/// postmaster) can never make us wait.
fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> CmdOutput {
    let start = Instant::now();
    let mut out_file = tempfile::tempfile().expect("temporary file for stdout");
    let mut err_file = tempfile::tempfile().expect("temporary file for stderr");
    let spawned = cmd
        .stdin(Stdio::null())
        .stdout(out_file.try_clone().expect("clone stdout file"))
        .stderr(err_file.try_clone().expect("clone stderr file"))
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            return CmdOutput {
                status: Some(exit_status(127)),
                stdout: Vec::new(),
                stderr: format!("could not run {cmd:?}: {e}").into_bytes(),
                elapsed: start.elapsed(),
            };
        }
    };
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if start.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for {cmd:?}: {e}"),
        }
    };
    CmdOutput {
        status,
        stdout: read_all(&mut out_file),
        stderr: read_all(&mut err_file),
        elapsed: start.elapsed(),
    }
}

fn read_all(file: &mut File) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = file.seek(SeekFrom::Start(0));
    let _ = file.read_to_end(&mut buf);
    buf
}

fn exit_status(code: i32) -> std::process::ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    std::process::ExitStatus::from_raw(code << 8)
}

/// `$WARD_PG_BIN`, else the highest /usr/lib/postgresql/<version>/bin with
/// initdb and pg_ctl, else `pg_config --bindir`.
fn find_bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WARD_PG_BIN").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        assert!(
            usable_bin(&dir),
            "WARD_PG_BIN={} has no initdb and pg_ctl",
            dir.display()
        );
        return Some(dir);
    }
    if let Some((_, bin)) = debian_bin_dirs().pop() {
        return Some(bin);
    }
    let out = run_with_timeout(
        Command::new("pg_config").arg("--bindir"),
        Duration::from_secs(10),
    );
    if out.status.is_some_and(|s| s.success()) {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if usable_bin(&dir) {
            return Some(dir);
        }
    }
    None
}

fn usable_bin(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("pg_ctl").is_file()
}

/// /usr/lib/postgresql/<version>/bin directories with initdb and pg_ctl,
/// ascending by version.
fn debian_bin_dirs() -> Vec<(Vec<u32>, PathBuf)> {
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version: Option<Vec<u32>> = name.split('.').map(|p| p.parse().ok()).collect();
            let bin = entry.path().join("bin");
            Some((version?, bin)).filter(|(_, bin)| usable_bin(bin))
        })
        .collect();
    versions.sort();
    versions
}

/// The major version of the server binaries in `bin`, from
/// `postgres --version` ("postgres (PostgreSQL) 17.10" -> 17).
fn major_of(bin: &Path) -> Option<u32> {
    static SEEN: OnceLock<std::sync::Mutex<std::collections::HashMap<PathBuf, Option<u32>>>> =
        OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    if let Some(major) = seen.lock().ok()?.get(bin) {
        return *major;
    }
    let out = run_with_timeout(
        Command::new(bin.join("postgres")).arg("--version"),
        Duration::from_secs(10),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let major = out
        .status
        .is_some_and(|s| s.success())
        .then(|| {
            text.split_whitespace()
                .last()?
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .flatten();
    seen.lock().ok()?.insert(bin.to_path_buf(), major);
    major
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("run `id -u`");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// Where to create the cluster's directory: the usual temp dir, unless its
/// path would not survive pg_ctl's shell quoting, overflow a Unix socket path,
/// or (as root) be unreachable for the postgres user; then /tmp.
fn temp_base(as_postgres: bool) -> PathBuf {
    let base = std::env::temp_dir();
    let text = base.to_string_lossy();
    let plain = text.len() < 60
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c));
    let reachable = !as_postgres
        || base
            .ancestors()
            .all(|dir| std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0));
    if plain && reachable {
        base
    } else {
        PathBuf::from("/tmp")
    }
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// libpq environment that could redirect or alter our connections.
fn clean_pg_env(cmd: &mut Command) {
    for var in [
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "PGPASSFILE",
        "PGSERVICE",
        "PGSERVICEFILE",
        "PGOPTIONS",
        "PGSSLMODE",
        "PGDATA",
        "PGTZ",
    ] {
        cmd.env_remove(var);
    }
}

fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', r"'\''"))
}
