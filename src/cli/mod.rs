//! Command-line front end. stdout carries the result only; errors go to
//! stderr. Every command returns an [`Exit`] (see `exit.rs` for the codes).

// A closed stdout or stderr (`ward demo | head -2`) must never kill a
// session: `outln!` panics on EPIPE (Rust ignores SIGPIPE), which would
// leave the session log unsealed. These write and drop the error instead.
// Defined before the `mod` lines so every command module can use them.

/// `outln!` that ignores a closed stdout.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `print!` that ignores a closed stdout.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `errln!` that ignores a closed stderr.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

mod approve;
mod attach;
mod audit;
mod audit_store;
mod check;
mod demo;
mod exit;
mod explain;
mod mcp;
mod resume;
mod roles;
mod run;
mod serve;
mod session;
mod step;
mod store;
mod team;
mod test;

use exit::Error;
use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use ward::config::Config;

pub use exit::Exit;

/// Where the `orders` target of the help examples comes from; a macro so
/// that `concat!` can build each command's help text at compile time.
macro_rules! target_note {
    () => {
        "\n\n`orders` in these examples is a target defined in ward.yaml (ward looks for it in the current directory and its parents):\n  targets:\n    orders: { engine: postgres, url_env: ORDERS_DATABASE_URL, environment: prod }\nthe URL, with its password, lives in $ORDERS_DATABASE_URL. Or give --url URL --env ENV instead of --target."
    };
}

/// The examples `ward --help` ends with, before the exit-code table.
const EXAMPLES: &str = concat!(
    "Examples:\n  ward demo                           try it: a SQLite incident in the terminal UI, no setup\n  ward                                the terminal UI: runbooks, targets, recent sessions\n  ward check                          validate runbooks and policies, run policy tests\n  ward explain 'DROP TABLE orders'    what would the gate say in prod, now?\n  ward step pg-connection-exhaustion connection_headline --target orders\n  ward run --alert PostgresLockContention --target orders --headless --dry-run\n  ward roles orders --check           what can the roles ward runs as really do?\n  ward mcp --target orders --runbook pg-lock-contention   gated tools for Claude Code, Codex, Cursor\n  ward audit verify --all",
    target_note!()
);

/// Parses the command line; `--help` ends with the examples and the
/// exit-code table built from [`Exit`].
pub fn parse() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command()
        .after_help(format!("{EXAMPLES}\n\n{}", exit::table()))
        .get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

#[derive(Debug, Parser)]
#[command(
    name = "ward",
    version,
    about = "On-call database work with runbook contracts, a SQL risk gate and an audit trail",
    long_about = "ward runs database runbooks during incidents. Every statement is classified from the SQL \
itself (read_only, write, schema, destructive, privilege, unknown) and gated by the approval policy in \
policies/: reads run, writes wait for a human, forbidden things never run."
)]
pub struct Cli {
    /// Repository root (where ward.yaml is); default: search from the current directory upwards.
    #[arg(long, global = true, env = "WARD_REPO", value_name = "DIR")]
    pub repo: Option<PathBuf>,

    /// Without a command: the terminal UI (runbooks, targets, recent sessions).
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate every runbook and policy, analyze every step's SQL, run the policy tests.
    #[command(
        after_help = "Exit codes: 0 clean, 1 problems found, 2 could not load (missing directories, bad ward.yaml, usage).\n\nExample (GitHub Actions):\n  ward check --format github"
    )]
    Check(check::Args),
    /// Classify SQL and show what the gate would decide for it.
    #[command(
        after_help = "Examples:\n  ward explain 'SELECT * FROM pg_stat_activity'\n  ward explain --env prod --at 2026-11-18T15:00:00-05:00 'CREATE INDEX i ON orders (c)'\n  echo 'DROP TABLE orders' | ward explain --format json -\n\nExit codes: 0 explained, 2 usage or configuration error (e.g. no policy found)."
    )]
    Explain(explain::Args),
    /// Run one runbook step against a target and print its evidence (only steps the policy allows without approval).
    #[command(
        after_help = concat!("Examples:\n  ward step pg-connection-exhaustion connection_headline --target orders\n  ward step pg-missing-index seq_scan_tables --url postgres://ward@localhost/app --env staging --format json", target_note!(), "\n\nExit codes: 0 ran, 1 the step failed (timeout, cancelled, database error), 2 usage or configuration error, 3 needs approval (not run), 4 denied (not run), 6 could not connect (what failed, the likely cause and what to check next on stderr).")
    )]
    Step(step::Args),
    /// Run a runbook session against a target, in the terminal UI (or --headless: progress on stderr, report on stdout).
    #[command(
        after_help = concat!("Examples:\n  ward run pg-connection-exhaustion --target orders --headless --dry-run\n  ward run --alert PostgresLockContention --url postgres://ward@db/app --env staging --headless --report json\n  ward run pg-lock-contention --target orders --headless --follow --wait-for-approval 600", target_note!(), "\n\nWith --follow, when the conclusion names the runbook that fixes the cause (`next:`), the session continues into it in the same log (at most --follow-depth hand-offs, never back into a runbook it ran); the exit code is the last runbook's outcome.\n\nExit codes: 0 concluded, 1 failure, 2 usage or configuration error, 3 stopped at a step that needs approval, 4 a step was denied, 5 concluded after a change but the recheck shows the incident persists, 6 could not connect to the target (the report says what failed, the likely cause and what to check next).")
    )]
    Run(run::Args),
    /// Continue an unsealed session (crashed, or the connection dropped): nothing that ran runs again.
    #[command(
        after_help = "A step that was running when ward stopped has an unknown outcome: it is never re-run; its verify query decides (without one, ward stops and asks you to check by hand). Proposals waiting for approval stay waiting.\n\nExamples:\n  ward resume 20261122T031500Z-1a2b3c\n  ward resume 20261122T0315 --wait-for-approval 600\n\nExit codes: as ward run (0 concluded, 1 failure, 2 usage, 3 needs approval, 4 denied, 5 incident persists, 6 could not connect)."
    )]
    Resume(resume::Args),
    /// Zero setup: an embedded SQLite incident database and a demo runbook, in the terminal UI (or --headless).
    #[command(
        after_help = "Works from any directory: the seed, the demo runbook and its policy are built into ward. The database is created under .ward/demo/app.db (in the current directory, or the repository's .ward/) afresh at every run, so the incident is always there (--keep reuses the last run's database). No network, no server.\n\nExamples:\n  ward demo\n  ward demo --headless --report json\n  ward demo --keep                    the database as the last run left it\n\nExit codes: as ward run."
    )]
    Demo(demo::Args),
    /// Run scenario files (fixtures/scenarios): runbooks and policies against recorded evidence, no database needed.
    #[command(
        after_help = "A scenario names a runbook, recorded rows per step, the environment and clock, optionally a scripted agent, which steps its humans approve or reject, and what must hold at the end (verdicts, executed steps, verify results, conclusion text).\n\nExamples:\n  ward test\n  ward test fixtures/scenarios/pg-connection-exhaustion.yaml --keep-logs /tmp/logs\n\nExit codes: 0 all passed, 1 a scenario failed, 2 a scenario file or the repository could not be loaded."
    )]
    Test(test::Args),
    /// Review session logs: list, show, verify (hash chain and safety invariants), export.
    #[command(
        after_help = "Examples:\n  ward audit list\n  ward audit verify --all\n  ward audit export 20261122T0315 --format md > incident.md\n\nExit codes of verify: 0 chain intact and sealed, 1 tampered (first bad seq named), 3 truncated or unsealed (crashed or still running), 2 usage."
    )]
    Audit(audit::Args),
    /// Approve a proposal waiting in a live session (another operator; the session must be waiting: --wait-for-approval). With a team store: from any host, as your PostgreSQL role.
    #[command(
        after_help = "The proposal id is printed beside its proposed line by `ward audit show SESSION` ([id 3fa9c2d1e0b4]); a headless run with --wait-for-approval prints the whole `ward approve` command on stderr when it starts waiting.\n\nIdentity with a team store (`store:` in ward.yaml): the PostgreSQL role your store URL authenticates; the request goes through the store from any host, and a policy role R is membership of the PostgreSQL role ward_R (the roster grants nothing then). Without a store: $WARD_OPERATOR, else the OS user, on this host only; it is only as strong as who can set that variable or log in as that user on this host.\n\nExit codes: 0 recorded (or sent and not answered yet), 1 refused by the session (the reason is printed), 2 usage.\n\nExamples:\n  WARD_STORE_URL=postgres://bob@store-host/ward ward approve 20261122T0315 3fa9c2d1e0b4 --reason 'checked the blocker with the app team'\n  WARD_OPERATOR=bob ward approve 20261122T0315 3fa9c2d1e0b4 --reason 'checked the blocker with the app team'   (no store)"
    )]
    Approve(approve::Args),
    /// Reject a proposal waiting in a live session, with a reason.
    Reject(approve::Args),
    /// Follow a live session of the team from any host (needs the team store): its steps, evidence and pending proposal; a/r approve or reject it as your PostgreSQL role.
    Attach(attach::Args),
    /// Print the SQL that creates least-privileged roles for a target; --check reports what the roles can actually do.
    #[command(
        after_help = "ward executes as the roles a target names in ward.yaml (roles: { read: ward_reader, signal: ward_operator, change: app_owner }): reads after SET LOCAL ROLE read inside a READ ONLY transaction, signalling remediations as signal, migrations as change. Without --check, ward roles prints the SQL that creates the read and signal roles (NOLOGIN; pg_monitor for reads, pg_signal_backend and pg_read_all_stats for signals; nothing else) and lets the URL's user SET ROLE to them, for a DBA to review and run. It never changes the database itself.\n\n--check connects (read-only) as the URL's user and reports, for that login role and each configured role: superuser, CREATEROLE and the other attributes, membership in pg_execute_server_program / pg_write_server_files / pg_read_server_files / pg_signal_backend / pg_monitor / pg_read_all_data / pg_write_all_data, CREATE on schemas, and whether the login role may SET ROLE to it; each problem comes with its fix. The login role matters most: SET ROLE is checked against it, so code running in ward's session can switch to any role it may become. Log in as a plain role of its own, never a superuser.\n\nExamples:\n  ward roles orders > ward-roles.sql       review it, then run it as a superuser:\n  psql -X -v ON_ERROR_STOP=1 -f ward-roles.sql 'postgres://admin@db/app'\n  ward roles orders --check\n  ward roles --url postgres://ward@db/app --check --format json\n\nExit codes: 0 SQL printed, or (--check) everything configured is least-privileged and usable; 1 (--check) a role has too much privilege, lacks what its kind needs, or cannot be assumed; 2 usage, configuration or connection error."
    )]
    Roles(roles::Args),
    /// Receive Prometheus Alertmanager webhooks; each firing alert a runbook's triggers name starts a headless dry-run diagnostic session (reads only).
    #[command(
        after_help = "Alertmanager (alertmanager.yml):\n  receivers:\n    - name: ward\n      webhook_configs: [{ url: \"http://127.0.0.1:9464/alerts\", send_resolved: true }]\n\nThe alert's `ward_target` label names the ward.yaml target, or routes map labels to targets:\n  alerts:\n    routes:\n      - match: { cluster: orders-prod }\n        target: orders\n    concurrency: 2          # sessions at once; the rest queue\n    dedup_window: 10m       # the same alert (fingerprint) again starts nothing\n\nEach session is `ward run RUNBOOK --target T --headless --dry-run`: it runs reads only and records every change it would propose with its verdict. Reports go to .ward/reports/ (with alerts.jsonl, a line per alert received, session started and finished); a summary line per session goes to stderr with the command to open it (ward audit replay ID). GET /healthz answers 200 with counts (503 while stopping). A bad payload is answered 400 with the reason. SIGTERM or Ctrl-C: no new alerts, running sessions end cancelled with their logs sealed.\n\nExamples:\n  ward serve\n  ward serve --listen 0.0.0.0:9464 --concurrency 4\n\nExit codes: 0 stopped by a signal, 2 usage or configuration error (e.g. the address is in use)."
    )]
    Serve(serve::Args),
    /// The team's shared store (a PostgreSQL database in ward.yaml's `store:`): init, sync.
    Store(store::Args),
    /// Serve a target's runbooks to an MCP client (Claude Code, Codex, Cursor, ...) over stdio: every call gated, approved by people, logged.
    #[command(
        after_help = concat!("Tools: one per runbook step, named RUNBOOK__STEP, with the contract's inputs as JSON Schema; `query` (the client's own read-only SQL), `explain` (the gate's verdict, nothing runs), `conclude` and `status`. Resources: ward://policy (the policy in brief) and ward://runbooks/ID. No tool approves.\n\nEach connection's first step or query call starts a ward session with its own log in .ward/sessions (agent: the client's name and version); `conclude` seals it. Results carry summaries and facts, never rows. A change that needs approval answers at once with the proposal id, the SQL, the rules and the command a person runs (or waits up to the call's wait_seconds):\n  WARD_OPERATOR=bob ward approve SESSION PROPOSAL --reason '...'\nA denied call is a tool error naming the rule. stdout carries the protocol only; logs go to .ward/ward.log.\n\nRegister it with a client (README, \"ward mcp\"):\n  claude mcp add ward -- ward --repo /path/to/repo mcp --target orders --runbook pg-lock-contention\n\nExamples:\n  ward mcp --target orders --runbook pg-lock-contention --runbook pg-idle-in-transaction\n  ward mcp --url postgres://ward@localhost/app --env staging", target_note!(), "\n\nExit codes: 0 the client disconnected (or a signal stopped ward; an open session ends cancelled, its log sealed), 1 the client never initialized, 2 usage or configuration error (no such target or runbook, a policy that does not load), before the protocol starts.")
    )]
    Mcp(mcp::Args),
}

pub fn run(cli: Cli) -> Exit {
    let start = match &cli.repo {
        Some(r) => r.clone(),
        None => match std::env::current_dir() {
            Ok(d) => d,
            Err(e) => {
                errln!("error: cannot read the current directory: {e}");
                return Exit::Usage;
            }
        },
    };
    let config = match Config::discover(&start) {
        Ok(c) => c,
        Err(p) => {
            errln!("error: {p}");
            return Exit::Usage;
        }
    };
    let Some(command) = cli.command else {
        return session::home(&config);
    };
    match command {
        Command::Check(args) => check::run(&config, &args),
        Command::Explain(args) => explain::run(&config, &args),
        Command::Step(args) => step::run(&config, &args),
        Command::Run(args) => run::run(&config, &args),
        Command::Resume(args) => resume::run(&config, &args),
        Command::Test(args) => test::run(&config, &args),
        Command::Demo(args) => demo::run(&config, &args),
        Command::Audit(args) => audit::run(&config, &args),
        Command::Approve(args) => approve::run(&config, &args, true),
        Command::Reject(args) => approve::run(&config, &args, false),
        Command::Attach(args) => attach::run(&config, &args),
        Command::Roles(args) => roles::run(&config, &args),
        Command::Serve(args) => serve::run(&config, &args),
        Command::Store(args) => store::run(&config, &args),
        Command::Mcp(args) => mcp::run(&config, &args),
    }
}

/// When ward found no repository to work in (no `ward.yaml` in the start
/// directory or its parents, and no `runbooks/` there), the error that says
/// so and what to do instead; `None` inside a repository.
pub fn no_repository(config: &Config) -> Option<String> {
    (config.file.is_none() && !config.runbooks.is_dir()).then(|| {
        format!(
            "no ward repository here: no ward.yaml in {} or its parents, and no runbooks/ directory; `cd` into the repository or pass --repo DIR (to start a new one here, create runbooks/ and policies/)",
            config.root.display()
        )
    })
}

/// The target of `ward step` / `ward run`: a ward.yaml target, or a URL
/// given on the command line with its environment.
pub fn resolve_target(
    config: &Config,
    target: Option<&str>,
    url: Option<&str>,
    environment: &str,
) -> Result<ward::exec::Target, Error> {
    match (target, url) {
        (Some(name), _) => ward::exec::Target::from_config(config, name).map_err(|e| -> Error {
            match config.file {
                // Outside a repository the file is missing, not the target.
                None => format!(
                    "no target `{name}`: targets are defined in ward.yaml, and there is none in {} or its parents; `cd` into the repository, pass --repo DIR, or give --url URL --env ENV",
                    config.root.display()
                )
                .into(),
                Some(_) => e.into(),
            }
        }),
        (None, Some(url)) => Ok(ward::exec::Target::from_url(url, environment)?),
        (None, None) => Err("give --target NAME (from ward.yaml) or --url URL".into()),
    }
}

/// Whether to color output written to stdout: a terminal, and `NO_COLOR`
/// unset or empty (https://no-color.org).
pub fn use_color() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
}

/// Wraps `text` in an ANSI style when `on`.
pub fn paint(on: bool, style: &str, text: &str) -> String {
    if on {
        format!("\x1b[{style}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}
