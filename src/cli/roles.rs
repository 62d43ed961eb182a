//! `ward roles`: the SQL that creates the least-privileged roles a target's
//! statements run as, and (`--check`) what the role ward logs in as and each
//! configured role can actually do on the live server.
//!
//! It never changes a database: the SQL is printed for a DBA to review and
//! run, and `--check` only reads the catalog, in READ ONLY transactions, as
//! the login role (it sets no role itself). Names reach the SQL only quoted
//! as identifiers; the URL is shown only redacted.

use super::exit::{Error, Exit, usage};
use std::collections::BTreeSet;
use std::io::Write;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use ward::config::{Config, Roles};
use ward::exec::{Bind, Executor, Limits, Mode, RowEvent, Target};
use ward::sql::Engine;
use ward::sql::params::quote_identifier;

use super::{paint, use_color};

/// The read role's name when ward.yaml names none.
const DEFAULT_READ: &str = "ward_reader";
/// The signal role's name when ward.yaml names none.
const DEFAULT_SIGNAL: &str = "ward_operator";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Target name from ward.yaml (its `roles:` name the roles).
    #[arg(conflicts_with = "url")]
    pub target: Option<String>,
    /// Connection URL (postgres://...) instead of a ward.yaml target: no roles configured, so the SQL uses the default names.
    #[arg(long, env = "WARD_URL", hide_env_values = true)]
    pub url: Option<String>,
    /// Environment of a --url target (shown only).
    #[arg(long = "env", default_value = "prod")]
    pub environment: String,
    /// Connect and report what the login role and each configured role can do.
    #[arg(long)]
    pub check: bool,
    /// Output of --check.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

pub fn run(config: &Config, args: &Args) -> Exit {
    if args.format == Format::Json && !args.check {
        return usage("--format json goes with --check; without it ward roles prints SQL");
    }
    let target = match super::resolve_target(
        config,
        args.target.as_deref(),
        args.url.as_deref(),
        &args.environment,
    ) {
        Ok(t) => t,
        Err(e) => {
            return usage(if args.target.is_none() && args.url.is_none() {
                "give a target from ward.yaml (ward roles TARGET) or --url URL".into()
            } else {
                e
            });
        }
    };
    if target.engine != Engine::Postgres {
        return usage(format!(
            "target `{}` is {:?}: roles are a PostgreSQL feature",
            target.name, target.engine
        ));
    }
    let command = match &args.target {
        Some(name) => format!("ward roles {name}"),
        None => "ward roles --url URL".to_string(),
    };
    if !args.check {
        let login = url_user(&target.url.redacted());
        return match setup_sql(&target, &command, login.as_deref()) {
            Ok(sql) => {
                out!("{sql}");
                Exit::Success
            }
            Err(e) => usage(e),
        };
    }
    let names = match RoleNames::of(&target.roles) {
        Ok(n) => n,
        Err(e) => return usage(e),
    };
    let report = match collect(&target, &names, &command) {
        Ok(r) => r,
        Err(e) => return usage(e),
    };
    let mut out = std::io::stdout().lock();
    let written = match args.format {
        Format::Json => serde_json::to_writer_pretty(&mut out, &report)
            .map_err(std::io::Error::other)
            .and_then(|()| writeln!(out)),
        Format::Text => write_text(&report, &mut out, use_color()),
    };
    if let Err(e) = written {
        return usage(format!("cannot write: {e}"));
    }
    if report.ok {
        Exit::Success
    } else {
        Exit::Failed
    }
}

// ---------------------------------------------------------------------------
// Names and quoting

/// The roles of a target, validated: plain identifiers only, so they can be
/// quoted into SQL and compared with `pg_roles.rolname` exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RoleNames {
    read: Option<String>,
    signal: Option<String>,
    change: Option<String>,
}

impl RoleNames {
    fn of(roles: &Roles) -> Result<RoleNames, Error> {
        let check = |kind: &str, v: &Option<String>| -> Result<Option<String>, Error> {
            match v {
                Some(name) => role_ident(name)
                    .map(|_| Some(name.clone()))
                    .map_err(|e| Error::from(format!("roles.{kind}: {e}"))),
                None => Ok(None),
            }
        };
        let names = RoleNames {
            read: check("read", &roles.read)?,
            signal: check("signal", &roles.signal)?,
            change: check("change", &roles.change)?,
        };
        if let (Some(r), Some(s)) = (&names.read, &names.signal)
            && r == s
        {
            return Err(format!(
                "roles.read and roles.signal are both `{r}`: reads could then signal other sessions; give each kind its own role"
            ).into());
        }
        Ok(names)
    }
}

/// A role name from ward.yaml, double-quoted; refused unless it is a plain
/// identifier (no dots: roles have no schema).
fn role_ident(name: &str) -> Result<String, Error> {
    if name.contains('.') {
        return Err(format!("`{name}` is not a role name (roles have no schema)").into());
    }
    Ok(quote_identifier(name)?)
}

/// Any name (the URL's user, a schema from the catalog) as a quoted
/// identifier; control characters are refused rather than escaped.
fn ident_any(name: &str) -> Result<String, Error> {
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(format!(
            "{name:?} cannot be written as an identifier (empty, or control characters)"
        )
        .into());
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// `ident_any` for text shown in advice, where a refusal would hide the
/// advice: control characters become `?`.
fn shown_ident(name: &str) -> String {
    ident_any(name).unwrap_or_else(|_| {
        let clean: String = name
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        format!("\"{}\"", clean.replace('"', "\"\""))
    })
}

/// Text for a `--` comment: one line, whatever it was.
fn comment_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The user a (redacted) connection URL logs in as, when it names one:
/// `postgres://user@host/db` or `...?user=name`, percent-decoded.
fn url_user(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let from_authority = authority
        .rsplit_once('@')
        .map(|(userinfo, _)| userinfo.split(':').next().unwrap_or(""));
    let from_query = tail
        .split_once('?')
        .map(|(_, q)| q.split('#').next().unwrap_or(""))
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("user=")));
    let user = percent_decode(from_query.or(from_authority)?);
    (!user.is_empty()).then_some(user)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            // Two hex digits are at most 255.
            out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A dollar-quote tag that occurs in none of `names`.
fn dollar_tag(names: &[&str]) -> String {
    let mut n = 0;
    loop {
        let tag = if n == 0 {
            "$ward$".to_string()
        } else {
            format!("$ward{n}$")
        };
        if !names.iter().any(|name| name.contains(&tag)) {
            return tag;
        }
        n += 1;
    }
}

// ---------------------------------------------------------------------------
// The setup SQL

/// The script that creates the target's read and signal roles with the
/// least grants PostgreSQL offers and lets the login role `SET ROLE` to
/// them. `login`: the URL's user, or `None` for a psql variable.
fn setup_sql(target: &Target, command: &str, login: Option<&str>) -> Result<String, Error> {
    let names = RoleNames::of(&target.roles)?;
    let read = names.read.clone().unwrap_or_else(|| DEFAULT_READ.into());
    let signal = names
        .signal
        .clone()
        .unwrap_or_else(|| DEFAULT_SIGNAL.into());
    let (read_q, signal_q) = (role_ident(&read)?, role_ident(&signal)?);
    let change_q = names.change.as_deref().map(role_ident).transpose()?;
    let login_q = match login {
        Some(user) => ident_any(user)?,
        None => ":\"ward_login\"".to_string(),
    };
    let login_shown = login.map_or_else(|| "ward_login".to_string(), comment_safe);
    let mut all: Vec<&str> = vec![&read, &signal];
    all.extend(names.change.as_deref());
    let tag = dollar_tag(&all);

    let mut s = String::new();
    let mut line = |text: &str| {
        s.push_str(text);
        s.push('\n');
    };
    line(&format!(
        "-- Least-privileged roles for ward on target `{}` ({}): {}",
        comment_safe(&target.name),
        comment_safe(&target.environment),
        comment_safe(&target.url.redacted())
    ));
    line("--");
    line("-- Review it, then run it once as a superuser (PostgreSQL 13 to 17; safe to run again):");
    line(&format!("--   {} > ward-roles.sql", comment_safe(command)));
    if login.is_some() {
        line("--   psql -X -v ON_ERROR_STOP=1 -f ward-roles.sql 'postgres://ADMIN@HOST/DB'");
    } else {
        line(
            "--   psql -X -v ON_ERROR_STOP=1 -v ward_login=ROLE -f ward-roles.sql 'postgres://ADMIN@HOST/DB'",
        );
        line("-- (the target's URL names no user, so give the role ward logs in as: ward_login)");
    }
    line(&format!(
        "-- Then see what the roles can actually do: {} --check",
        comment_safe(command)
    ));
    line("--");
    line("-- ward.yaml names the roles ward executes as (these are the names used below):");
    let mut yaml = format!("read: {read}, signal: {signal}");
    if let Some(c) = &names.change {
        yaml.push_str(&format!(", change: {c}"));
    }
    // A --url target has no name in ward.yaml yet.
    let yaml_name = if command.contains("--url") {
        "NAME".to_string()
    } else {
        comment_safe(&target.name)
    };
    line(&format!(
        "--   targets: {{ {yaml_name}: {{ ..., roles: {{ {yaml} }} }} }}"
    ));
    line("--");
    line("-- Nothing below grants pg_read_server_files, pg_write_server_files or");
    line("-- pg_execute_server_program (reading or writing files on the database server,");
    line("-- running programs as its operating-system user), pg_read_all_data or");
    line("-- pg_write_all_data, CREATE on any schema or database, or a role attribute");
    line("-- (SUPERUSER, CREATEROLE, CREATEDB, REPLICATION, BYPASSRLS).");
    line("");
    if login.is_none() {
        line("\\if :{?ward_login}");
        line("\\else");
        line(
            "  \\echo 'ward-roles.sql: give the role ward logs in as: psql -v ward_login=ROLE ...'",
        );
        line(&format!(
            "  DO {tag} BEGIN RAISE EXCEPTION 'psql variable ward_login is not set'; END {tag};"
        ));
        line("\\endif");
        line("");
    }
    line("BEGIN;");
    line("");

    let create = |line: &mut dyn FnMut(&str), name: &str, quoted: &str| {
        if name.starts_with("pg_") {
            line(&format!(
                "-- {quoted} is one of PostgreSQL's predefined roles: it exists and is not created here."
            ));
            return;
        }
        line(&format!("DO {tag}"));
        line("BEGIN");
        // The name is a plain identifier (letters, digits, _ and $), so it
        // is a safe string literal as it is.
        line(&format!(
            "  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{name}') THEN"
        ));
        line(&format!(
            "    CREATE ROLE {quoted} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT;"
        ));
        line("  END IF;");
        line("END");
        line(&format!("{tag};"));
    };

    line("-- The read role: diagnostics, verify queries, ad-hoc reads and ward's own");
    line(&format!(
        "-- catalog lookups run as {read_q}, after SET LOCAL ROLE inside a READ ONLY"
    ));
    line("-- transaction. NOLOGIN: nobody connects as it; the login role switches to it.");
    create(&mut line, &read, &read_q);
    if !read.starts_with("pg_") {
        line("-- pg_monitor = pg_read_all_stats + pg_read_all_settings + pg_stat_scan_tables:");
        line("-- every session's state and query in pg_stat_activity and pg_stat_statements,");
        line("-- every setting, and the statistics functions that take ACCESS SHARE locks");
        line("-- (pgstattuple, pg_visibility, ...). It does NOT read table data, write,");
        line("-- cancel or terminate sessions, change settings or touch the server's files.");
        line(&format!("GRANT pg_monitor TO {read_q};"));
    }
    line("");

    line("-- The signal role: approved remediations that cancel or terminate other sessions");
    line(&format!(
        "-- (pg_cancel_backend, pg_terminate_backend) run as {signal_q}."
    ));
    create(&mut line, &signal, &signal_q);
    if !signal.starts_with("pg_") {
        line("-- pg_signal_backend: cancel or terminate the sessions of any role except");
        line("-- superusers. It does NOT read table data, write or change settings.");
        line(&format!("GRANT pg_signal_backend TO {signal_q};"));
        line("-- pg_read_all_stats: the remediations choose whom to signal by state, wait_event");
        line("-- and query_start in pg_stat_activity, which other roles' sessions show as NULL");
        line("-- without it (the WHERE would match nothing). It grants nothing else.");
        line(&format!("GRANT pg_read_all_stats TO {signal_q};"));
    }
    line("");

    line("-- The change role: approved migrations run as the application's owner role, so");
    line("-- what they create has the right owner. ward never creates or alters it.");
    match &change_q {
        Some(c) => line(&format!(
            "-- This target's change role is {c}: the login role may SET ROLE to it below."
        )),
        None => {
            line("-- This target has none (roles.change), so migrations run as the login role;");
            line("-- to name the owner role, set roles.change and grant it to the login role:");
            line(&format!("--   GRANT \"app_owner\" TO {login_q};"));
        }
    }
    line("");

    line(&format!(
        "-- The login role ({login_shown}, the role the target's URL logs in as) may SET ROLE"
    ));
    line("-- to each of them. It must itself be a plain LOGIN role: not a superuser, and");
    line("-- holding none of the predefined roles listed at the top. SET ROLE is checked");
    line("-- against the login role, so a function that a statement calls can switch back");
    line("-- to it (set_config('role', 'none', true)) or to any role it may become. If the");
    line("-- URL logs in as a superuser today, give ward a login role of its own and point");
    line("-- the URL at it:");
    line("--   CREATE ROLE ward LOGIN PASSWORD '...';");
    for (name, quoted) in [(&read, &read_q), (&signal, &signal_q)]
        .into_iter()
        .chain(names.change.iter().zip(change_q.iter()))
    {
        if login == Some(name.as_str()) {
            line(&format!(
                "-- ({quoted} is the login role itself: nothing to grant.)"
            ));
        } else {
            line(&format!("GRANT {quoted} TO {login_q};"));
        }
    }
    line("");
    line("COMMIT;");
    line("");
    line("-- PostgreSQL 14 and older let every role CREATE in schema public, and ward's");
    line("-- roles should create nothing anywhere. Unless an application relies on it,");
    line("-- take it away as PostgreSQL 15 does by default (run it yourself; not run here):");
    line("--   REVOKE CREATE ON SCHEMA public FROM PUBLIC;");
    line("--");
    line("-- No setup at all: when the URL logs in as a superuser, roles: { read: pg_monitor }");
    line("-- makes reads SET ROLE to PostgreSQL's predefined pg_monitor role. It keeps ward's");
    line("-- own statements within pg_monitor's rights, but it is no boundary against a");
    line("-- function planted in the database (that can switch back to the superuser).");
    Ok(s)
}

// ---------------------------------------------------------------------------
// --check

/// Predefined roles whose membership `--check` reports (those a server does
/// not have are skipped).
const PREDEFINED: &[&str] = &[
    "pg_monitor",
    "pg_read_all_settings",
    "pg_read_all_stats",
    "pg_stat_scan_tables",
    "pg_signal_backend",
    "pg_read_all_data",
    "pg_write_all_data",
    "pg_read_server_files",
    "pg_write_server_files",
    "pg_execute_server_program",
    "pg_checkpoint",
    "pg_maintain",
    "pg_create_subscription",
];

/// Predefined roles that reach outside the database: never for ward.
const SERVER_ROLES: &[(&str, &str)] = &[
    (
        "pg_execute_server_program",
        "run programs on the database server as its operating-system user",
    ),
    (
        "pg_write_server_files",
        "write files on the database server",
    ),
    (
        "pg_read_server_files",
        "read any file the database server can read",
    ),
];

/// Predefined roles that are more than reads or signals need.
const BROAD_ROLES: &[(&str, &str)] = &[
    ("pg_write_all_data", "write every table"),
    (
        "pg_read_all_data",
        "read every table's data, which diagnostics do not need",
    ),
    (
        "pg_maintain",
        "VACUUM, ANALYZE, REINDEX, CLUSTER, REFRESH and LOCK every table",
    ),
    ("pg_checkpoint", "force checkpoints"),
    (
        "pg_create_subscription",
        "create subscriptions that connect to other servers",
    ),
];

/// What the server says about one role, read with role-parameterized
/// catalog functions (no SET ROLE needed).
const FACTS_SQL: &str = r#"WITH r AS (
  SELECT oid, rolname, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication, rolcanlogin
  FROM pg_catalog.pg_roles WHERE rolname = $1::text
), reach AS (
  SELECT x.rolname::text AS name, x.rolsuper, x.rolcreaterole, x.rolcreatedb, x.rolbypassrls, x.rolreplication
  FROM pg_catalog.pg_roles x, r
  WHERE NOT r.rolsuper AND x.oid <> r.oid AND pg_catalog.pg_has_role(r.oid, x.oid, 'MEMBER')
), predefined AS (
  SELECT p.rolname::text AS name,
         pg_catalog.pg_has_role(r.oid, p.oid, 'MEMBER') AS member,
         pg_catalog.pg_has_role(r.oid, p.oid, 'USAGE') AS usage
  FROM pg_catalog.pg_roles p, r
  WHERE p.rolname::text = ANY (pg_catalog.string_to_array($2::text, ','))
), setting AS (
  SELECT pg_catalog.substr(s.s, 13) AS path,
         CASE WHEN d.setrole <> 0 AND d.setdatabase <> 0 THEN 0 WHEN d.setrole <> 0 THEN 1 ELSE 2 END AS rank
  FROM pg_catalog.pg_db_role_setting d
  CROSS JOIN r
  CROSS JOIN LATERAL pg_catalog.unnest(d.setconfig) AS s(s)
  WHERE d.setrole IN (r.oid, 0)
    AND d.setdatabase IN (0, (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()))
    AND NOT (d.setrole = 0 AND d.setdatabase = 0)
    AND pg_catalog.starts_with(s.s, 'search_path=')
), path AS (
  SELECT coalesce((SELECT path FROM setting ORDER BY rank LIMIT 1),
                  (SELECT reset_val FROM pg_catalog.pg_settings WHERE name = 'search_path')) AS path
), path_schemas AS (
  SELECT CASE WHEN t.e IN ('$user', '"$user"') THEN r.rolname::text ELSE pg_catalog.btrim(t.e, '"') END AS name
  FROM r, path
  CROSS JOIN LATERAL pg_catalog.unnest(pg_catalog.string_to_array(path.path, ',')) AS u(raw)
  CROSS JOIN LATERAL (SELECT pg_catalog.btrim(u.raw) AS e) AS t
), creatable AS (
  SELECT n.nspname::text AS schema,
         n.nspname::text IN (SELECT name FROM path_schemas) AS in_search_path,
         EXISTS (SELECT 1 FROM pg_catalog.aclexplode(n.nspacl) a
                 WHERE a.grantee = 0 AND a.privilege_type = 'CREATE') AS via_public,
         n.nspowner = r.oid AS owner
  FROM pg_catalog.pg_namespace n, r
  WHERE NOT r.rolsuper
    AND n.nspname !~ '^pg_(toast|temp_)'
    AND pg_catalog.has_schema_privilege(r.oid, n.oid, 'CREATE')
)
SELECT pg_catalog.json_build_object(
  'exists', EXISTS (SELECT 1 FROM r),
  'can_login', coalesce((SELECT rolcanlogin FROM r), false),
  'superuser', coalesce((SELECT rolsuper FROM r), false),
  'createrole', coalesce((SELECT rolcreaterole FROM r), false),
  'createdb', coalesce((SELECT rolcreatedb FROM r), false),
  'bypassrls', coalesce((SELECT rolbypassrls FROM r), false),
  'replication', coalesce((SELECT rolreplication FROM r), false),
  'superuser_via', coalesce((SELECT pg_catalog.json_agg(name ORDER BY name) FROM reach WHERE rolsuper), '[]'),
  'createrole_via', coalesce((SELECT pg_catalog.json_agg(name ORDER BY name) FROM reach WHERE rolcreaterole), '[]'),
  'member_of', coalesce((SELECT pg_catalog.json_agg(name ORDER BY name) FROM predefined WHERE member), '[]'),
  'privileges_of', coalesce((SELECT pg_catalog.json_agg(name ORDER BY name) FROM predefined WHERE usage), '[]'),
  'search_path', (SELECT path FROM path),
  'create_schemas', coalesce((SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
      'schema', schema, 'in_search_path', in_search_path, 'via_public', via_public, 'owner', owner)
      ORDER BY schema) FROM creatable), '[]'),
  'create_database', coalesce((SELECT NOT rolsuper AND pg_catalog.has_database_privilege(oid, pg_catalog.current_database(), 'CREATE') FROM r), false),
  'assumable', coalesce((SELECT CASE WHEN pg_catalog.current_setting('server_version_num')::int >= 160000
                                     THEN pg_catalog.pg_has_role(session_user, oid, 'SET')
                                     ELSE pg_catalog.pg_has_role(session_user, oid, 'MEMBER') END FROM r), false)
)::text AS facts"#;

const SERVER_SQL: &str = "SELECT pg_catalog.json_build_object(\
 'user', session_user, \
 'database', pg_catalog.current_database(), \
 'version', pg_catalog.current_setting('server_version'), \
 'version_num', pg_catalog.current_setting('server_version_num')::int)::text AS facts";

#[derive(Debug, Deserialize)]
struct Server {
    user: String,
    database: String,
    version: String,
    version_num: u32,
}

/// What one role can do, as the server says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Facts {
    exists: bool,
    can_login: bool,
    superuser: bool,
    createrole: bool,
    createdb: bool,
    bypassrls: bool,
    replication: bool,
    /// Superuser roles it may SET ROLE to.
    superuser_via: Vec<String>,
    /// CREATEROLE roles it may SET ROLE to.
    createrole_via: Vec<String>,
    /// Predefined roles it may SET ROLE to (or has the privileges of).
    member_of: Vec<String>,
    /// Predefined roles whose privileges it has without SET ROLE.
    privileges_of: Vec<String>,
    /// Its search_path setting (role, database, or server default).
    search_path: Option<String>,
    /// Schemas it may CREATE in.
    create_schemas: Vec<CreateSchema>,
    /// CREATE on the database (new schemas).
    create_database: bool,
    /// The login role may SET ROLE to it.
    assumable: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct CreateSchema {
    schema: String,
    in_search_path: bool,
    /// Granted to PUBLIC (every role has it).
    via_public: bool,
    /// The role owns the schema.
    owner: bool,
}

/// Something wrong with a role, and the SQL or setting that fixes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Problem {
    problem: String,
    fix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Read,
    Signal,
    Change,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Read => "read",
            Kind::Signal => "signal",
            Kind::Change => "change",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Kind::Read => "diagnostics, verify queries, ad-hoc reads, catalog lookups",
            Kind::Signal => "remediations that cancel or terminate sessions",
            Kind::Change => "migrations and other changes",
        }
    }
}

#[derive(Debug, Serialize)]
struct LoginReport {
    role: String,
    facts: Facts,
    ok: bool,
    problems: Vec<Problem>,
    notes: Vec<String>,
}

#[derive(Debug, Serialize)]
struct RoleReport {
    kind: Kind,
    /// The configured role, or the login role when none is configured.
    role: String,
    configured: bool,
    facts: Option<Facts>,
    ok: bool,
    problems: Vec<Problem>,
    notes: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    target: String,
    environment: String,
    url: String,
    database: String,
    server_version: String,
    server_version_num: u32,
    login: LoginReport,
    roles: Vec<RoleReport>,
    /// Everything configured is least-privileged and usable.
    ok: bool,
}

fn collect(target: &Target, names: &RoleNames, command: &str) -> Result<Report, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    // Connect as the login role and set no role: the facts of each role are
    // read with role-parameterized catalog functions.
    let mut bare = target.clone();
    bare.roles = Roles::default();
    let session = format!("roles-{}", std::process::id());
    runtime.block_on(async {
        let mut ex = Executor::connect(&bare, &session, true).await?;
        let server: Server = query_json(&mut ex, SERVER_SQL, &[]).await?;
        let login_facts = role_facts(&mut ex, server.user.clone()).await?;
        let mut configured = Vec::new();
        for (kind, name) in [
            (Kind::Read, &names.read),
            (Kind::Signal, &names.signal),
            (Kind::Change, &names.change),
        ] {
            let f = match name {
                Some(n) => Some(role_facts(&mut ex, n.clone()).await?),
                None => None,
            };
            configured.push((kind, name.clone(), f));
        }
        Ok(assess(target, server, login_facts, configured, command))
    })
}

async fn role_facts(ex: &mut Executor, role: String) -> Result<Facts, Error> {
    query_json(
        ex,
        FACTS_SQL,
        &[Bind::Text(role), Bind::Text(PREDEFINED.join(","))],
    )
    .await
}

/// Runs a query returning one row with one JSON text column, read only.
async fn query_json<T: serde::de::DeserializeOwned>(
    ex: &mut Executor,
    sql: &str,
    binds: &[Bind],
) -> Result<T, Error> {
    let mut text: Option<String> = None;
    let mut sink = |ev: RowEvent<'_>| {
        if let RowEvent::Row(row) = ev
            && text.is_none()
        {
            text = row
                .values()
                .next()
                .and_then(|v| v.as_str())
                .map(str::to_string);
        }
    };
    ex.run(sql, binds, Mode::ReadOnly, &Limits::default(), &mut sink)
        .await
        .map_err(|e| format!("reading the catalog failed: {e}"))?;
    let text = text.ok_or("reading the catalog returned no row")?;
    serde_json::from_str(&text)
        .map_err(|e| Error::from(format!("unexpected catalog answer ({e}): {text}")))
}

fn assess(
    target: &Target,
    server: Server,
    login_facts: Facts,
    configured: Vec<(Kind, Option<String>, Option<Facts>)>,
    command: &str,
) -> Report {
    let login = server.user.clone();
    let read_configured = configured
        .iter()
        .any(|(k, n, _)| *k == Kind::Read && n.is_some());
    let (login_problems, notes) = login_verdict(&login, &login_facts, read_configured, command);
    let mut roles = Vec::new();
    for (kind, name, facts) in configured {
        let report = match (name, facts) {
            (Some(role), Some(f)) => {
                let problems = role_verdict(kind, &role, &login, &f, &server.database, command);
                RoleReport {
                    kind,
                    role,
                    configured: true,
                    facts: Some(f),
                    ok: problems.is_empty(),
                    problems,
                    notes: Vec::new(),
                }
            }
            _ => unconfigured(kind, &login, &login_facts, &server.database, command),
        };
        roles.push(report);
    }
    let ok = login_problems.is_empty() && roles.iter().all(|r| r.ok);
    Report {
        target: target.name.clone(),
        environment: target.environment.clone(),
        url: target.url.redacted(),
        database: server.database,
        server_version: server.version,
        server_version_num: server.version_num,
        login: LoginReport {
            role: login,
            facts: login_facts,
            ok: login_problems.is_empty(),
            problems: login_problems,
            notes,
        },
        roles,
        ok,
    }
}

/// The login role is the real boundary: any code running in the session
/// can `SET ROLE` to whatever it may become, whichever role ward set.
fn login_verdict(
    login: &str,
    f: &Facts,
    read_configured: bool,
    command: &str,
) -> (Vec<Problem>, Vec<String>) {
    let q = shown_ident(login);
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    if f.superuser {
        problems.push(Problem {
            problem: format!(
                "{q} is a superuser. SET ROLE is checked against the login role, so a function that a read evaluates (a view, an operator, a cast planted in the database) can call set_config('role', 'none', true) and act as a superuser again, whatever read role is configured"
            ),
            fix: format!(
                "connect as a login role that is not a superuser (CREATE ROLE ward LOGIN PASSWORD '...'), point the target's URL at it and run the SQL from `{command}`"
            ),
        });
    }
    for s in &f.superuser_via {
        problems.push(Problem {
            problem: format!("{q} may SET ROLE to the superuser role {}", shown_ident(s)),
            fix: format!("REVOKE {} FROM {q};", shown_ident(s)),
        });
    }
    if !f.superuser {
        for (role, does) in SERVER_ROLES {
            if f.member_of.iter().any(|m| m == role) {
                problems.push(Problem {
                    problem: format!(
                        "{q} may become {role} ({does}), and so may any code running in ward's session"
                    ),
                    fix: format!(
                        "REVOKE {role} FROM {q}; (or from the role it has {role} through)"
                    ),
                });
            }
        }
        if f.createrole || !f.createrole_via.is_empty() {
            problems.push(Problem {
                problem: format!(
                    "{q} has CREATEROLE{}: it can grant itself and others more roles",
                    via_text(&f.createrole_via)
                ),
                fix: if f.createrole {
                    format!("ALTER ROLE {q} NOCREATEROLE;")
                } else {
                    format!("REVOKE {} FROM {q};", list_idents(&f.createrole_via))
                },
            });
        }
        if read_configured && f.member_of.iter().any(|m| m == "pg_signal_backend") {
            notes.push(format!(
                "{q} may become pg_signal_backend. SET ROLE is checked against the login role, so a function a read calls could switch to it: against objects planted in the database, reads are kept from signalling by ward's gate, not by the read role"
            ));
        }
    }
    (problems, notes)
}

fn via_text(via: &[String]) -> String {
    if via.is_empty() {
        String::new()
    } else {
        format!(" (through {})", list_idents(via))
    }
}

fn list_idents(names: &[String]) -> String {
    names
        .iter()
        .map(|n| shown_ident(n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What is wrong with `role` for statements of `kind`.
fn role_verdict(
    kind: Kind,
    role: &str,
    login: &str,
    f: &Facts,
    database: &str,
    command: &str,
) -> Vec<Problem> {
    let q = shown_ident(role);
    let lq = shown_ident(login);
    let mut problems = Vec::new();
    if !f.exists {
        problems.push(Problem {
            problem: format!("role {q} does not exist"),
            fix: match kind {
                Kind::Change => "roles.change names the application's owner role, which ward does not create: check the name in ward.yaml".to_string(),
                _ => format!("run the SQL from `{command}` as a superuser"),
            },
        });
        return problems;
    }
    if !f.assumable {
        problems.push(Problem {
            problem: format!("the login role {lq} cannot SET ROLE to {q}"),
            fix: format!("GRANT {q} TO {lq};"),
        });
    }
    if f.superuser {
        problems.push(Problem {
            problem: format!("{q} is a superuser"),
            fix: match kind {
                Kind::Change => format!(
                    "name the application's owner role in roles.change, not a superuser (or ALTER ROLE {q} NOSUPERUSER;)"
                ),
                _ => format!("ALTER ROLE {q} NOSUPERUSER; (or run the SQL from `{command}`)"),
            },
        });
        return problems;
    }
    for (r, does) in SERVER_ROLES {
        if f.privileges_of.iter().any(|m| m == r) {
            problems.push(Problem {
                problem: format!("{q} has the privileges of {r}: it can {does}"),
                fix: format!("REVOKE {r} FROM {q}; (or from the role it has {r} through)"),
            });
        }
    }
    if f.createrole {
        problems.push(Problem {
            problem: format!("{q} has CREATEROLE: it can grant itself and others more roles"),
            fix: format!("ALTER ROLE {q} NOCREATEROLE;"),
        });
    }
    if kind == Kind::Change {
        return problems;
    }
    if kind == Kind::Read && f.privileges_of.iter().any(|m| m == "pg_signal_backend") {
        problems.push(Problem {
            problem: format!(
                "{q} has the privileges of pg_signal_backend: reads could cancel or terminate other sessions"
            ),
            fix: format!(
                "REVOKE pg_signal_backend FROM {q}; (signals belong to the signal role)"
            ),
        });
    }
    for (r, does) in BROAD_ROLES {
        if f.privileges_of.iter().any(|m| m == r) {
            problems.push(Problem {
                problem: format!("{q} has the privileges of {r}: it can {does}"),
                fix: format!("REVOKE {r} FROM {q};"),
            });
        }
    }
    for (on, attr, does) in [
        (f.createdb, "CREATEDB", "create databases"),
        (
            f.replication,
            "REPLICATION",
            "create replication slots and stream WAL",
        ),
        (f.bypassrls, "BYPASSRLS", "read past row-level security"),
    ] {
        if on {
            problems.push(Problem {
                problem: format!("{q} has {attr}: it can {does}"),
                fix: format!("ALTER ROLE {q} NO{attr};"),
            });
        }
    }
    if !f.create_schemas.is_empty() {
        let shown: Vec<String> = f
            .create_schemas
            .iter()
            .map(|s| {
                format!(
                    "{}{}",
                    shown_ident(&s.schema),
                    if s.in_search_path {
                        " (in its search_path)"
                    } else {
                        ""
                    }
                )
            })
            .collect();
        let fixes: Vec<String> = f
            .create_schemas
            .iter()
            .map(|s| {
                let sq = shown_ident(&s.schema);
                if s.owner {
                    format!("ALTER SCHEMA {sq} OWNER TO <another role>;")
                } else if s.via_public {
                    format!(
                        "REVOKE CREATE ON SCHEMA {sq} FROM PUBLIC; (PostgreSQL 15 does this for public by default)"
                    )
                } else {
                    format!("REVOKE CREATE ON SCHEMA {sq} FROM {q};")
                }
            })
            .collect();
        problems.push(Problem {
            problem: format!(
                "{q} may CREATE in schema {}: a role that can create objects can plant them",
                shown.join(", ")
            ),
            fix: fixes.join(" "),
        });
    }
    if f.create_database {
        problems.push(Problem {
            problem: format!(
                "{q} may CREATE schemas in database {}",
                shown_ident(database)
            ),
            fix: format!(
                "REVOKE CREATE ON DATABASE {} FROM {q};",
                shown_ident(database)
            ),
        });
    }
    let has = |r: &str| f.privileges_of.iter().any(|m| m == r);
    match kind {
        Kind::Read if !has("pg_read_all_stats") => problems.push(Problem {
            problem: format!(
                "{q} lacks pg_read_all_stats: diagnostics see other sessions' queries as <insufficient privilege> and their state as NULL"
            ),
            fix: format!("GRANT pg_monitor TO {q};"),
        }),
        Kind::Signal => {
            if !has("pg_signal_backend") {
                problems.push(Problem {
                    problem: format!(
                        "{q} lacks pg_signal_backend: it cannot cancel or terminate other roles' sessions"
                    ),
                    fix: format!("GRANT pg_signal_backend TO {q};"),
                });
            }
            if !has("pg_read_all_stats") {
                problems.push(Problem {
                    problem: format!(
                        "{q} lacks pg_read_all_stats: remediations see other sessions' state, wait_event and query_start as NULL, so their WHERE matches nothing"
                    ),
                    fix: format!("GRANT pg_read_all_stats TO {q};"),
                });
            }
        }
        _ => {}
    }
    problems
}

/// A kind with no configured role runs as the login role.
fn unconfigured(
    kind: Kind,
    login: &str,
    login_facts: &Facts,
    database: &str,
    command: &str,
) -> RoleReport {
    let lq = shown_ident(login);
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    match kind {
        Kind::Read => {
            let why = role_verdict(Kind::Read, login, login, login_facts, database, command);
            if !why.is_empty() {
                problems.push(Problem {
                    problem: format!(
                        "no read role is configured, so reads run as the login role {lq}, and: {}",
                        why.iter()
                            .map(|p| p.problem.as_str())
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                    fix: format!(
                        "set roles.read in ward.yaml to a least-privileged role; `{command}` prints the SQL that creates one"
                    ),
                });
            }
        }
        Kind::Signal => notes.push(format!(
            "no signal role is configured: remediations that signal run as the login role {lq}"
        )),
        Kind::Change => notes.push(format!(
            "no change role is configured: migrations run as the login role {lq}"
        )),
    }
    RoleReport {
        kind,
        role: login.to_string(),
        configured: false,
        facts: None,
        ok: problems.is_empty(),
        problems,
        notes,
    }
}

fn attributes(f: &Facts) -> String {
    let mut a = vec![if f.can_login { "LOGIN" } else { "NOLOGIN" }];
    for (on, name) in [
        (f.superuser, "SUPERUSER"),
        (f.createrole, "CREATEROLE"),
        (f.createdb, "CREATEDB"),
        (f.replication, "REPLICATION"),
        (f.bypassrls, "BYPASSRLS"),
    ] {
        if on {
            a.push(name);
        }
    }
    a.join(" ")
}

fn or_none(list: &[String]) -> String {
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

fn write_facts(w: &mut impl Write, f: &Facts, login: bool) -> std::io::Result<()> {
    writeln!(w, "  attributes: {}", attributes(f))?;
    if f.superuser {
        writeln!(w, "  privileges: all (superuser)")?;
        return Ok(());
    }
    if login {
        let mut reach: BTreeSet<String> = f.member_of.iter().cloned().collect();
        reach.extend(f.superuser_via.iter().cloned());
        writeln!(
            w,
            "  may become: {}",
            or_none(&reach.into_iter().collect::<Vec<_>>())
        )?;
    } else {
        writeln!(w, "  privileges of: {}", or_none(&f.privileges_of))?;
    }
    let create: Vec<String> = f.create_schemas.iter().map(|s| s.schema.clone()).collect();
    writeln!(
        w,
        "  CREATE in: {}{} (search_path: {})",
        or_none(&create),
        if f.create_database {
            ", and new schemas in the database"
        } else {
            ""
        },
        f.search_path.as_deref().unwrap_or("?")
    )
}

fn write_verdict(
    w: &mut impl Write,
    color: bool,
    problems: &[Problem],
    notes: &[String],
) -> std::io::Result<()> {
    for p in problems {
        writeln!(w, "  {} {}", paint(color, "31", "problem:"), p.problem)?;
        writeln!(w, "    fix: {}", p.fix)?;
    }
    for n in notes {
        writeln!(w, "  note: {n}")?;
    }
    Ok(())
}

fn status(color: bool, ok: bool, problems: usize) -> String {
    if ok {
        paint(color, "32", "ok")
    } else {
        paint(
            color,
            "31",
            &format!("{problems} problem{}", if problems == 1 { "" } else { "s" }),
        )
    }
}

fn write_text(r: &Report, w: &mut impl Write, color: bool) -> std::io::Result<()> {
    writeln!(
        w,
        "target {} ({}) at {}, database {}, PostgreSQL {}",
        r.target, r.environment, r.url, r.database, r.server_version
    )?;
    writeln!(w)?;
    writeln!(
        w,
        "login role {} (the URL's user): {}",
        shown_ident(&r.login.role),
        status(color, r.login.ok, r.login.problems.len())
    )?;
    write_facts(w, &r.login.facts, true)?;
    write_verdict(w, color, &r.login.problems, &r.login.notes)?;
    for role in &r.roles {
        writeln!(w)?;
        if role.configured {
            writeln!(
                w,
                "{} role {} ({}): {}",
                role.kind.name(),
                shown_ident(&role.role),
                role.kind.what(),
                status(color, role.ok, role.problems.len())
            )?;
            if let Some(f) = &role.facts
                && f.exists
            {
                writeln!(
                    w,
                    "  the login role may SET ROLE to it: {}",
                    if f.assumable { "yes" } else { "no" }
                )?;
                write_facts(w, f, false)?;
            }
        } else {
            writeln!(
                w,
                "{} role: not configured ({}): {}",
                role.kind.name(),
                role.kind.what(),
                status(color, role.ok, role.problems.len())
            )?;
        }
        write_verdict(w, color, &role.problems, &role.notes)?;
    }
    writeln!(w)?;
    let count = r.login.problems.len() + r.roles.iter().map(|x| x.problems.len()).sum::<usize>();
    if r.ok {
        writeln!(
            w,
            "{}: the login role and every configured role are least-privileged and usable",
            paint(color, "32", "ok")
        )
    } else {
        writeln!(
            w,
            "{}: fix them and check again",
            paint(
                color,
                "31",
                &format!("{count} problem{}", if count == 1 { "" } else { "s" })
            )
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str, roles: Roles) -> Target {
        let mut t = Target::from_url(url, "prod").expect("target");
        t.name = "orders".into();
        t.roles = roles;
        t
    }

    fn roles(read: Option<&str>, signal: Option<&str>, change: Option<&str>) -> Roles {
        Roles {
            read: read.map(str::to_string),
            signal: signal.map(str::to_string),
            change: change.map(str::to_string),
        }
    }

    fn grants(sql: &str) -> Vec<&str> {
        sql.lines()
            .filter(|l| l.starts_with("GRANT ") || l.starts_with("REVOKE "))
            .collect()
    }

    #[test]
    fn default_roles_get_only_pg_monitor_and_pg_signal_backend_and_go_to_the_url_user() {
        let t = target("postgres://ward:hunter2@db/app", Roles::default());
        let sql = setup_sql(&t, "ward roles orders", Some("ward")).expect("sql");
        assert_eq!(
            grants(&sql),
            vec![
                "GRANT pg_monitor TO \"ward_reader\";",
                "GRANT pg_signal_backend TO \"ward_operator\";",
                "GRANT pg_read_all_stats TO \"ward_operator\";",
                "GRANT \"ward_reader\" TO \"ward\";",
                "GRANT \"ward_operator\" TO \"ward\";",
            ]
        );
        assert!(sql.contains(
            "    CREATE ROLE \"ward_reader\" NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT;"
        ));
        assert!(!sql.contains("hunter2"), "{sql}");
        assert!(
            !sql.contains("\\if"),
            "the URL names the user: no psql variable"
        );
    }

    #[test]
    fn a_configured_change_role_is_granted_not_created() {
        let t = target(
            "postgres://ward@db/app",
            roles(Some("reader"), Some("op"), Some("app_owner")),
        );
        let sql = setup_sql(&t, "ward roles orders", Some("ward")).expect("sql");
        assert!(sql.contains("GRANT \"app_owner\" TO \"ward\";"));
        assert!(!sql.contains("CREATE ROLE \"app_owner\""));
        assert!(sql.contains("CREATE ROLE \"reader\""));
        assert!(sql.contains("roles: { read: reader, signal: op, change: app_owner }"));
    }

    #[test]
    fn a_url_without_a_user_makes_the_login_role_a_psql_variable() {
        let t = target("postgres://db/app", Roles::default());
        assert_eq!(url_user(&t.url.redacted()), None);
        let sql = setup_sql(&t, "ward roles --url URL", None).expect("sql");
        assert!(sql.contains("\\if :{?ward_login}"));
        assert!(sql.contains("GRANT \"ward_reader\" TO :\"ward_login\";"));
    }

    #[test]
    fn url_users_are_read_from_the_authority_or_the_query_and_decoded() {
        assert_eq!(url_user("postgres://ward@db/app").as_deref(), Some("ward"));
        assert_eq!(
            url_user("postgres://ops%40corp@db:5432/app?sslmode=require").as_deref(),
            Some("ops@corp")
        );
        assert_eq!(
            url_user("postgresql://db/app?sslmode=require&user=ward_ops").as_deref(),
            Some("ward_ops")
        );
        assert_eq!(url_user("postgres:///app?host=/run/postgresql"), None);
    }

    #[test]
    fn odd_login_names_are_quoted_and_role_names_must_be_plain() {
        let t = target("postgres://x@db/app", Roles::default());
        let sql = setup_sql(&t, "ward roles orders", Some("we\"ird; DROP")).expect("sql");
        assert!(sql.contains("GRANT \"ward_reader\" TO \"we\"\"ird; DROP\";"));
        assert!(setup_sql(&t, "ward roles orders", Some("a\nb")).is_err());
        for bad in ["ward\"; DROP ROLE x; --", "public.reader", "", "1abc"] {
            let t = target("postgres://x@db/app", roles(Some(bad), None, None));
            assert!(
                setup_sql(&t, "ward roles orders", Some("x")).is_err(),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn one_role_for_reads_and_signals_is_refused() {
        let err = RoleNames::of(&roles(Some("ops"), Some("ops"), None))
            .expect_err("same role")
            .to_string();
        assert!(err.contains("reads could then signal"), "{err}");
    }

    #[test]
    fn comments_stay_one_line_and_dollar_tags_avoid_the_names() {
        let mut t = target("postgres://x@db/app", Roles::default());
        t.name = "orders\nDROP TABLE x;".into();
        let sql = setup_sql(&t, "ward roles orders", Some("x")).expect("sql");
        assert!(!sql.lines().any(|l| l.starts_with("DROP")), "{sql}");
        assert_eq!(dollar_tag(&["a$ward$b", "c"]), "$ward1$");
        assert_eq!(dollar_tag(&["plain"]), "$ward$");
    }

    #[test]
    fn predefined_read_roles_are_granted_but_not_created() {
        let t = target(
            "postgres://postgres@db/app",
            roles(Some("pg_monitor"), None, None),
        );
        let sql = setup_sql(&t, "ward roles orders", Some("postgres")).expect("sql");
        assert!(!sql.contains("CREATE ROLE \"pg_monitor\""));
        assert!(!sql.contains("GRANT pg_monitor TO \"pg_monitor\""));
        assert!(sql.contains("GRANT \"pg_monitor\" TO \"postgres\";"));
    }

    fn reader() -> Facts {
        Facts {
            exists: true,
            member_of: vec!["pg_monitor".into(), "pg_read_all_stats".into()],
            privileges_of: vec!["pg_monitor".into(), "pg_read_all_stats".into()],
            assumable: true,
            ..Facts::default()
        }
    }

    fn operator() -> Facts {
        Facts {
            exists: true,
            member_of: vec!["pg_read_all_stats".into(), "pg_signal_backend".into()],
            privileges_of: vec!["pg_read_all_stats".into(), "pg_signal_backend".into()],
            assumable: true,
            ..Facts::default()
        }
    }

    fn problems(kind: Kind, f: &Facts) -> Vec<String> {
        role_verdict(kind, "r", "ward", f, "app", "ward roles orders")
            .into_iter()
            .map(|p| p.problem)
            .collect()
    }

    #[test]
    fn least_privileged_read_and_signal_roles_have_no_problems() {
        assert_eq!(problems(Kind::Read, &reader()), Vec::<String>::new());
        assert_eq!(problems(Kind::Signal, &operator()), Vec::<String>::new());
    }

    #[test]
    fn a_read_role_that_can_run_server_programs_or_signal_is_a_problem() {
        let mut f = reader();
        f.privileges_of.push("pg_execute_server_program".into());
        f.privileges_of.push("pg_signal_backend".into());
        assert_eq!(
            problems(Kind::Read, &f),
            vec![
                "\"r\" has the privileges of pg_execute_server_program: it can run programs on the database server as its operating-system user".to_string(),
                "\"r\" has the privileges of pg_signal_backend: reads could cancel or terminate other sessions".to_string(),
            ]
        );
    }

    #[test]
    fn a_role_the_login_cannot_assume_is_a_problem_with_the_grant_as_fix() {
        let mut f = reader();
        f.assumable = false;
        let v = role_verdict(Kind::Read, "r", "ward", &f, "app", "ward roles orders");
        assert_eq!(
            v,
            vec![Problem {
                problem: "the login role \"ward\" cannot SET ROLE to \"r\"".into(),
                fix: "GRANT \"r\" TO \"ward\";".into(),
            }]
        );
    }

    #[test]
    fn create_on_a_public_schema_is_fixed_for_public() {
        let mut f = reader();
        f.create_schemas.push(CreateSchema {
            schema: "public".into(),
            in_search_path: true,
            via_public: true,
            owner: false,
        });
        let v = role_verdict(Kind::Read, "r", "ward", &f, "app", "ward roles orders");
        assert_eq!(v.len(), 1);
        assert_eq!(
            v[0].problem,
            "\"r\" may CREATE in schema \"public\" (in its search_path): a role that can create objects can plant them"
        );
        assert!(
            v[0].fix
                .starts_with("REVOKE CREATE ON SCHEMA \"public\" FROM PUBLIC;")
        );
    }

    #[test]
    fn a_change_role_may_create_but_not_run_server_programs() {
        let mut f = reader();
        f.privileges_of = vec![];
        f.create_schemas.push(CreateSchema {
            schema: "app".into(),
            owner: true,
            ..CreateSchema::default()
        });
        assert_eq!(problems(Kind::Change, &f), Vec::<String>::new());
        f.privileges_of.push("pg_write_server_files".into());
        assert_eq!(problems(Kind::Change, &f).len(), 1);
    }

    #[test]
    fn a_signal_role_without_pg_read_all_stats_is_a_problem() {
        let mut f = operator();
        f.privileges_of.retain(|r| r != "pg_read_all_stats");
        let p = problems(Kind::Signal, &f);
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("lacks pg_read_all_stats"), "{p:?}");
    }

    #[test]
    fn a_superuser_login_is_a_problem_even_with_a_read_role() {
        let f = Facts {
            exists: true,
            can_login: true,
            superuser: true,
            assumable: true,
            ..Facts::default()
        };
        let (p, _) = login_verdict("postgres", &f, true, "ward roles orders");
        assert_eq!(p.len(), 1);
        assert!(p[0].problem.starts_with(
            "\"postgres\" is a superuser. SET ROLE is checked against the login role"
        ));
    }

    #[test]
    fn a_plain_login_that_may_become_the_roles_is_fine_with_a_note() {
        let mut f = operator();
        f.can_login = true;
        f.member_of.push("pg_monitor".into());
        let (p, notes) = login_verdict("ward", &f, true, "ward roles orders");
        assert_eq!(p, Vec::<Problem>::new());
        assert_eq!(notes.len(), 1);
    }

    #[test]
    fn without_a_read_role_an_unsafe_login_fails_the_read_kind() {
        let f = Facts {
            exists: true,
            can_login: true,
            superuser: true,
            assumable: true,
            ..Facts::default()
        };
        let r = unconfigured(Kind::Read, "postgres", &f, "app", "ward roles orders");
        assert!(!r.ok);
        assert!(r.problems[0].fix.starts_with("set roles.read in ward.yaml"));
        let s = unconfigured(Kind::Signal, "postgres", &f, "app", "ward roles orders");
        assert!(s.ok);
    }
}
