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
    pub fn active_policy(&self) -> Result<crate::policy::Policy, String> {
        if !self.policies.is_dir() {
            return Err(format!(
                "no policies directory at {}; run ward inside a repository with policies/ or pass --policy FILE",
                self.policies.display()
            ));
        }
        let (policies, problems) = crate::policy::load_dir(&self.policies);
        match policies.into_iter().find(|p| p.id == self.policy) {
            Some(p) => Ok(p),
            None if !problems.is_empty() => Err(problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")),
            None => Err(format!(
                "no policy with id `{}` in {}",
                self.policy,
                self.policies.display()
            )),
        }
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

/// `scheme://user:password@host` — a password in a URL.
pub fn url_has_password(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
        || url.contains("password=")
}

/// Removes credentials from a URL for display or logging.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{user}@{host}")
        }
        None => authority.to_string(),
    };
    let tail: String = tail
        .split('&')
        .map(|kv| {
            if kv.starts_with("password=") || kv.contains("?password=") {
                kv.split('=').next().unwrap_or("").to_string() + "=***"
            } else {
                kv.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("&");
    format!("{scheme}://{authority}{tail}")
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
            "postgres://ward@db:5432/app"
        );
        assert!(!redact_url("postgres://db/app?user=x&password=hunter2").contains("hunter2"));
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
