//! `ward.yaml`: where the runbooks and policies are, which policy applies,
//! and the targets. Connection URLs with credentials come from environment
//! variables (`url_env`), never from this file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::diag::{Location, Problem};
use crate::sql::{AnalyzerOptions, Engine};
use crate::yaml::{Doc, Seg};

pub const FILE_NAME: &str = "ward.yaml";

/// Why the configured policy cannot be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "no policies directory at {}; `cd` into the repository, pass --repo DIR, or pass --policy FILE",
        .0.display()
    )]
    NoDirectory(PathBuf),
    /// The policy is not among those that load; these are the problems of
    /// the ones that did not, each with its file, line and column.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    DoesNotLoad(Vec<Problem>),
    #[error("no policy with id `{id}` in {}", .dir.display())]
    NoSuchPolicy { id: String, dir: PathBuf },
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConfigSpec {
    #[serde(default)]
    pub runbooks: Option<PathBuf>,
    #[serde(default)]
    pub policies: Option<PathBuf>,
    #[serde(default)]
    pub sessions: Option<PathBuf>,
    /// The id of the policy that applies; `default` when absent.
    #[serde(default)]
    pub policy: Option<String>,
    /// Functions the team declares pure (cannot modify anything), e.g.
    /// `reporting.order_totals`, so a SELECT calling them stays read-only.
    #[serde(default)]
    pub pure_functions: Vec<String>,
    #[serde(default)]
    pub targets: BTreeMap<String, TargetSpec>,
    #[serde(default)]
    pub agent: Option<AgentSpec>,
    /// How `ward serve` maps Alertmanager alerts to targets.
    #[serde(default)]
    pub alerts: crate::alerts::AlertsSpec,
    /// The team's shared store (a PostgreSQL database), if any.
    #[serde(default)]
    pub store: Option<crate::store::StoreSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    pub engine: Engine,
    /// A URL without credentials (e.g. `sqlite:fixtures/demo/app.db`).
    #[serde(default)]
    pub url: Option<String>,
    /// The environment variable holding the URL.
    #[serde(default)]
    pub url_env: Option<String>,
    pub environment: String,
    /// Columns to pseudonymize in every summary from this target.
    #[serde(default)]
    pub redact: Vec<String>,
    /// The roles ward runs statements as on this target, per kind.
    #[serde(default)]
    pub roles: Roles,
    /// How long a statement on this target waits for a lock before the
    /// server cancels it (e.g. `3s`, `500ms`); a step's own `lock_timeout`
    /// wins. Unset: [`crate::exec::DEFAULT_LOCK_TIMEOUT`].
    #[serde(default)]
    pub lock_timeout: Option<String>,
    /// Where the server runs (`self-managed`, `rds`, `aurora`, `cloudsql`,
    /// `azure`): steps that cannot run there are left out of its sessions.
    #[serde(default)]
    pub platform: crate::platform::Platform,
}

/// The roles ward executes as, per kind of statement (`SET ROLE` after
/// connecting). Unset: the role the URL logs in as.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Roles {
    /// Diagnostics, verify queries, ad-hoc reads and ward's catalog lookups.
    #[serde(default)]
    pub read: Option<String>,
    /// Remediations that signal other backends.
    #[serde(default)]
    pub signal: Option<String>,
    /// Migrations and other changes.
    #[serde(default)]
    pub change: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    pub provider: String,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub base_url_env: Option<String>,
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Azure OpenAI's deployments API (`api-version`, e.g. `2024-10-21`):
    /// `model` is then the deployment name, the base URL the resource's
    /// endpoint, and the key goes in the `api-key` header.
    #[serde(default)]
    pub azure_api_version: Option<String>,
    /// The bounds of a model agent; each defaults as documented in
    /// `agent::openai`. Durations are written like `90s` or `10m`.
    #[serde(default)]
    pub max_turns: Option<u32>,
    #[serde(default)]
    pub token_budget: Option<u64>,
    #[serde(default)]
    pub wall_time: Option<String>,
    #[serde(default)]
    pub request_timeout: Option<String>,
    #[serde(default)]
    pub max_retries: Option<u32>,
    #[serde(default)]
    pub max_response_bytes: Option<usize>,
}

/// The validated configuration, with paths resolved against the repository.
#[derive(Debug, Clone)]
pub struct Config {
    /// The repository root: where `ward.yaml` is, or the starting directory.
    pub root: PathBuf,
    /// The `ward.yaml` that was read, if any.
    pub file: Option<PathBuf>,
    pub runbooks: PathBuf,
    pub policies: PathBuf,
    pub sessions: PathBuf,
    pub policy: String,
    pub spec: ConfigSpec,
}

impl Config {
    /// Finds `ward.yaml` in `start` or its parents; without one, `start` is
    /// the root and the defaults apply.
    pub fn discover(start: &Path) -> Result<Config, Problem> {
        let mut dir = Some(start);
        while let Some(d) = dir {
            let candidate = d.join(FILE_NAME);
            if candidate.is_file() {
                return Config::load(&candidate);
            }
            dir = d.parent();
        }
        Ok(Config::from_spec(
            start.to_path_buf(),
            None,
            ConfigSpec::default(),
        ))
    }

    pub fn load(file: &Path) -> Result<Config, Problem> {
        let doc = Doc::read(file)?;
        let spec: ConfigSpec = doc.parse()?;
        for (name, t) in &spec.targets {
            let at = doc.at(&[Seg::Key("targets"), Seg::Key(name.as_str())]);
            match (&t.url, &t.url_env) {
                (Some(_), Some(_)) | (None, None) => {
                    return Err(Problem::new(
                        at,
                        format!(
                            "target `{name}` needs exactly one of `url_env` (an environment variable holding the URL) or `url`"
                        ),
                    ));
                }
                (Some(url), None) if url_has_password(url) => {
                    return Err(Problem::new(
                        doc.at(&[
                            Seg::Key("targets"),
                            Seg::Key(name.as_str()),
                            Seg::Key("url"),
                        ]),
                        format!(
                            "target `{name}` has a password in its url; credentials never go in ward.yaml: put the URL in an environment variable and name it with `url_env`"
                        ),
                    ));
                }
                _ => {}
            }
            if let Some(text) = &t.lock_timeout
                && let Err(why) = crate::contract::positive_duration(text)
            {
                return Err(Problem::new(
                    doc.at(&[
                        Seg::Key("targets"),
                        Seg::Key(name.as_str()),
                        Seg::Key("lock_timeout"),
                    ]),
                    format!("target `{name}`: lock_timeout {why}"),
                ));
            }
        }
        for (i, entry) in spec.pure_functions.iter().enumerate() {
            if qualified_function(entry).is_none() {
                return Err(Problem::new(
                    doc.at(&[Seg::Key("pure_functions"), Seg::Index(i)]),
                    format!(
                        "pure_functions entry `{entry}` must be schema-qualified, exactly as the catalog spells it (e.g. `reporting.order_totals`): ward pins search_path to pg_catalog, so an unqualified call is always a pg_catalog function and an unqualified entry would match nothing"
                    ),
                ));
            }
        }
        for (i, route) in spec.alerts.routes.iter().enumerate() {
            if !spec.targets.contains_key(&route.target) {
                return Err(Problem::new(
                    doc.at(&[
                        Seg::Key("alerts"),
                        Seg::Key("routes"),
                        Seg::Index(i),
                        Seg::Key("target"),
                    ]),
                    format!(
                        "alerts route {i} names target `{}`, which is not among `targets` ({})",
                        route.target,
                        spec.targets.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
        if let Some(text) = &spec.alerts.dedup_window
            && let Err(why) = crate::contract::positive_duration(text)
        {
            return Err(Problem::new(
                doc.at(&[Seg::Key("alerts"), Seg::Key("dedup_window")]),
                format!("alerts.dedup_window {why}"),
            ));
        }
        if spec.alerts.concurrency == Some(0) {
            return Err(Problem::new(
                doc.at(&[Seg::Key("alerts"), Seg::Key("concurrency")]),
                "alerts.concurrency must be at least 1",
            ));
        }
        let root = file
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        Ok(Config::from_spec(root, Some(file.to_path_buf()), spec))
    }

    fn from_spec(root: PathBuf, file: Option<PathBuf>, spec: ConfigSpec) -> Config {
        let resolve = |p: &Option<PathBuf>, default: &str| {
            root.join(p.clone().unwrap_or_else(|| PathBuf::from(default)))
        };
        Config {
            runbooks: resolve(&spec.runbooks, "runbooks"),
            policies: resolve(&spec.policies, "policies"),
            sessions: resolve(&spec.sessions, ".ward/sessions"),
            policy: spec.policy.clone().unwrap_or_else(|| "default".into()),
            root,
            file,
            spec,
        }
    }

    pub fn analyzer_options(&self) -> AnalyzerOptions {
        AnalyzerOptions {
            pure_functions: self
                .spec
                .pure_functions
                .iter()
                .filter_map(|f| qualified_function(f))
                .collect::<BTreeSet<_>>(),
            lock_timeout_managed: false,
            server: None,
        }
    }

    /// The analyzer for runbook steps: ward's executor sets `lock_timeout`
    /// itself, so its absence from step SQL is not a finding.
    /// Evidence settings for sessions in this repository: summarizer
    /// scripts live under the runbooks directory and run from the root.
    pub fn evidence_config(&self) -> crate::evidence::EvidenceConfig {
        crate::evidence::EvidenceConfig {
            script_root: self.runbooks.clone(),
            script_cwd: self.root.clone(),
            ..crate::evidence::EvidenceConfig::default()
        }
    }

    pub fn runbook_analyzer(&self) -> crate::sql::Analyzer {
        let mut options = self.analyzer_options();
        options.lock_timeout_managed = true;
        crate::sql::Analyzer::new(options)
    }

    /// The configured policy (`policy:` in ward.yaml, `default` otherwise),
    /// or why it cannot be had.
    pub fn active_policy(&self) -> Result<crate::policy::Policy, PolicyError> {
        if !self.policies.is_dir() {
            return Err(PolicyError::NoDirectory(self.policies.clone()));
        }
        let (policies, problems) = crate::policy::load_dir(&self.policies);
        match policies.into_iter().find(|p| p.id == self.policy) {
            Some(p) => Ok(p),
            None if !problems.is_empty() => Err(PolicyError::DoesNotLoad(problems)),
            None => Err(PolicyError::NoSuchPolicy {
                id: self.policy.clone(),
                dir: self.policies.clone(),
            }),
        }
    }

    /// The platform of the target named `name` (`platform:` in ward.yaml);
    /// self-managed for a target given by `--url` (named `url`) or not
    /// in ward.yaml.
    pub fn platform_of(&self, name: &str) -> crate::platform::Platform {
        if name == "url" {
            return crate::platform::Platform::default();
        }
        self.spec
            .targets
            .get(name)
            .map(|t| t.platform)
            .unwrap_or_default()
    }

    /// Where a problem about the configuration itself points.
    pub fn location(&self) -> Location {
        Location::start_of(self.file.as_deref().unwrap_or(Path::new(FILE_NAME)))
    }
}

/// A `pure_functions` entry as the analyzer matches it, `schema.name` with
/// the names exact: each part is written as is (case kept, no folding) or
/// double-quoted (`"Reporting".order_totals`, `""` for a quote inside).
/// `None` unless there are exactly two non-empty parts.
pub fn qualified_function(entry: &str) -> Option<String> {
    let mut parts: Vec<String> = vec![String::new()];
    let mut chars = entry.trim().chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        let part = parts.last_mut()?;
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                part.push('"');
            }
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(String::new()),
            c => part.push(c),
        }
    }
    match parts.as_slice() {
        [schema, name] if !quoted && !schema.is_empty() && !name.is_empty() => {
            Some(format!("{schema}.{name}"))
        }
        _ => None,
    }
}

/// A `scheme://` URL cut at its userinfo: the scheme, the userinfo (if
/// any) and what follows its `@`. The userinfo runs to the LAST `@`, so a
/// password holding unencoded `/ ? # @ :` stays inside it; when the query
/// or fragment holds an `@` this takes more as userinfo, never less.
fn split_userinfo(url: &str) -> Option<(&str, Option<&str>, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    Some(match rest.rfind('@') {
        Some(at) => (scheme, Some(&rest[..at]), &rest[at + 1..]),
        None => (scheme, None, rest),
    })
}

/// Whether a query parameter (`key=value`) names a secret (`password`,
/// `sslpassword`, `passfile`, ...): its value is not shown.
fn secret_param(kv: &str) -> bool {
    kv.split_once('=')
        .is_some_and(|(k, _)| crate::evidence::is_secret_name(k.trim()))
}

/// Whether a key holds a credential itself (a `passfile` only names a file).
fn holds_password(key: &str) -> bool {
    crate::evidence::is_secret_name(key) && !key.eq_ignore_ascii_case("passfile")
}

/// Whether a connection string carries a password: in a URL's userinfo
/// (`scheme://user:password@host`, the password possibly holding unencoded
/// `/ ? # @`), as a URL query parameter (`?password=`, `sslpassword=`), or
/// as a libpq conninfo keyword (`host=db password = x`).
pub fn url_has_password(url: &str) -> bool {
    match split_userinfo(url) {
        Some((_, userinfo, after)) => {
            userinfo.is_some_and(|u| u.contains(':'))
                || after.split(['?', '&', '#']).skip(1).any(|kv| {
                    kv.split_once('=')
                        .is_some_and(|(k, _)| holds_password(k.trim()))
                })
        }
        None => url.match_indices('=').any(|(i, _)| {
            let before = url[..i].trim_end();
            let key_start = before
                .char_indices()
                .rev()
                .find(|(_, c)| !(c.is_ascii_alphanumeric() || "_.-".contains(*c)))
                .map_or(0, |(j, c)| j + c.len_utf8());
            holds_password(&before[key_start..])
        }),
    }
}

/// Removes credentials from a connection string for display or logging:
/// `postgres://user:***@host:5432/db?sslmode=require&password=***`. A URL's
/// password goes whole whatever it holds; user, host and database are kept
/// where they can be told apart. A libpq conninfo string (`host=db
/// password=x`) keeps everything but the secrets. Idempotent.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, userinfo, after)) = split_userinfo(url) else {
        return crate::evidence::redact_text(url);
    };
    let mut out = format!("{scheme}://");
    if let Some(userinfo) = userinfo {
        match userinfo.split_once(':') {
            Some((user, _)) => {
                out.push_str(user);
                out.push_str(":***@");
            }
            None => {
                out.push_str(userinfo);
                out.push('@');
            }
        }
    }
    // Query parameters naming a secret lose their value, up to the next `&`.
    let mut rest = after;
    while let Some(i) = rest.find(['?', '&']) {
        out.push_str(&rest[..=i]);
        rest = &rest[i + 1..];
        let end = rest.find('&').unwrap_or(rest.len());
        let param = &rest[..end];
        if secret_param(param) {
            let key = param.split('=').next().unwrap_or("");
            out.push_str(key);
            out.push_str("=***");
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_detected_and_removed() {
        assert!(url_has_password("postgres://ward:s3cret@db:5432/app"));
        assert!(!url_has_password("postgres://ward@db:5432/app"));
        assert!(!url_has_password("sqlite:fixtures/demo/app.db"));
        assert_eq!(
            redact_url("postgres://ward:s3cret@db:5432/app"),
            "postgres://ward:***@db:5432/app"
        );
        assert!(!redact_url("postgres://db/app?user=x&password=hunter2").contains("hunter2"));
    }

    /// (url, the secret, what redaction must give).
    const NASTY: &[(&str, &str, &str)] = &[
        (
            "postgres://u:a/b@host/db",
            "a/b",
            "postgres://u:***@host/db",
        ),
        (
            "postgres://u:Sl/ash?Qu#Ha@sh@host:5432/db?sslmode=require",
            "Sl/ash?Qu#Ha@sh",
            "postgres://u:***@host:5432/db?sslmode=require",
        ),
        (
            "postgresql://app:p@ss@w0rd@db.internal:6432/orders",
            "p@ss@w0rd",
            "postgresql://app:***@db.internal:6432/orders",
        ),
        (
            "postgres://u:co:lon:s@host/db",
            "co:lon:s",
            "postgres://u:***@host/db",
        ),
        (
            "postgres://u:pct%40enc%2Fded@host/db",
            "pct%40enc%2Fded",
            "postgres://u:***@host/db",
        ),
        (
            "postgres://u:with space s@host/db",
            "with space s",
            "postgres://u:***@host/db",
        ),
        (
            "postgres://u:/?#@@host/db",
            "/?#@",
            "postgres://u:***@host/db",
        ),
        (
            "postgres://:onlyPw9@host/db",
            "onlyPw9",
            "postgres://:***@host/db",
        ),
        (
            "postgres://u:MultiH0st@h1:5432,h2:5433/db",
            "MultiH0st",
            "postgres://u:***@h1:5432,h2:5433/db",
        ),
        (
            "postgres://u:v6Pass@[::1]:5432/db",
            "v6Pass",
            "postgres://u:***@[::1]:5432/db",
        ),
        (
            "postgresql://u@host/db?sslmode=require&password=x/y#z&application_name=w",
            "x/y#z",
            "postgresql://u@host/db?sslmode=require&password=***&application_name=w",
        ),
        (
            "postgresql://host/db?PASSWORD=QueryPw&sslpassword=KeyPw",
            "QueryPw",
            "postgresql://host/db?PASSWORD=***&sslpassword=***",
        ),
        (
            "host=db port=5432 password=ConnInfoPw dbname=orders",
            "ConnInfoPw",
            "host=db port=5432 password=*** dbname=orders",
        ),
        (
            "host=db password = 'quoted pw' user=ward",
            "quoted pw",
            "host=db password = *** user=ward",
        ),
    ];

    #[test]
    fn nasty_passwords_never_survive_url_redaction_and_user_host_db_stay() {
        for (url, secret, want) in NASTY {
            let got = redact_url(url);
            assert!(!got.contains(secret), "{url} -> {got}");
            assert_eq!(&got, want, "{url}");
            assert_eq!(redact_url(&got), got, "idempotent on {url}");
            assert!(url_has_password(url), "{url} has a password");
            // Driver errors quote URLs inside free text.
            let text = crate::evidence::redact_text(&format!("cannot connect to {url}: refused"));
            assert!(!text.contains(secret), "{url} in text -> {text}");
        }
    }

    #[test]
    fn urls_without_a_password_are_shown_whole() {
        for url in [
            "postgres://ward@db:5432/app",
            "postgres://db/app?sslmode=require&application_name=ward",
            "postgresql://ward@db/app?passfile=/home/ward/.pgpass",
            "sqlite:///abs/x.db?mode=ro",
            "sqlite:fixtures/demo/app.db",
            "host=db port=5432 user=ward dbname=app",
        ] {
            assert!(!url_has_password(url), "{url}");
            assert_eq!(redact_url(url), url.replace("/home/ward/.pgpass", "***"));
        }
    }

    #[test]
    fn an_unqualified_pure_function_is_refused_with_its_place() {
        let dir = std::env::temp_dir().join(format!("ward-config-pure-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let file = dir.join("ward.yaml");
        std::fs::write(
            &file,
            "pure_functions:\n  - reporting.order_totals\n  - order_totals\n",
        )
        .expect("write");
        let err = Config::load(&file).expect_err("refused");
        assert_eq!((err.location.line, err.location.col), (3, 5));
        assert!(err.message.contains("schema-qualified"), "{}", err.message);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn pure_function_entries_keep_their_exact_names() {
        assert_eq!(
            qualified_function("reporting.order_totals").as_deref(),
            Some("reporting.order_totals")
        );
        assert_eq!(
            qualified_function("\"Reporting\".order_totals").as_deref(),
            Some("Reporting.order_totals")
        );
        assert_eq!(
            qualified_function("\"a.b\".\"F\"\"x\"").as_deref(),
            Some("a.b.F\"x")
        );
        for bad in ["order_totals", "a.b.c", ".f", "s.", "\"s.f"] {
            assert_eq!(qualified_function(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_password_in_ward_yaml_is_refused_with_its_place() {
        let dir = std::env::temp_dir().join(format!("ward-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let file = dir.join("ward.yaml");
        std::fs::write(&file, "targets:\n  orders:\n    engine: postgres\n    url: postgres://a:b@h/db\n    environment: prod\n").expect("write");
        let err = Config::load(&file).expect_err("refused");
        assert_eq!((err.location.line, err.location.col), (4, 10));
        assert!(err.message.contains("url_env"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
