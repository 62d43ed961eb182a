//! How to reach an OpenAI-compatible model and how far it may go: the
//! model, the base URL and the API key (from the environment), and the
//! session's bounds (from `agent:` in ward.yaml).
//!
//! It must never show the API key: [`ApiKey`] has no `Display`, its `Debug`
//! is masked, and [`display_url`] drops credentials from a URL.

use std::fmt;
use std::time::Duration;

use crate::config::AgentSpec;

/// The environment variable holding the base URL unless configured otherwise.
pub const DEFAULT_BASE_URL_ENV: &str = "OPENAI_BASE_URL";
/// The environment variable holding the API key unless configured otherwise.
pub const DEFAULT_API_KEY_ENV: &str = "OPENAI_API_KEY";
/// The base URL when its environment variable is not set.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

/// Requests to the model per session unless ward.yaml says otherwise.
pub const DEFAULT_MAX_TURNS: u32 = 20;
/// Prompt plus completion tokens per session.
pub const DEFAULT_TOKEN_BUDGET: u64 = 60_000;
/// Time spent waiting for the model per session.
pub const DEFAULT_WALL_TIME: Duration = Duration::from_secs(10 * 60);
/// One attempt of one request.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Further attempts of a request that failed in a way worth retrying.
pub const DEFAULT_MAX_RETRIES: u32 = 4;
/// The first backoff ceiling; it doubles per retry.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(500);
/// The largest answer read; a larger one is a failure.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// The smallest answer cap that still holds a chat completion.
const MIN_RESPONSE_BYTES: usize = 1024;

/// What is wrong with an API key; it never shows the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the API key is empty")]
    Empty,
    #[error(
        "the API key has characters that cannot be sent in an HTTP header (spaces, line breaks or non-ASCII)"
    )]
    NotHeaderSafe,
}

/// url's parse error, named through reqwest (which re-exports only `Url`).
type UrlParseError = <reqwest::Url as std::str::FromStr>::Err;

/// What is wrong with a base URL; it shows the URL without credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("`{shown}` is not an http(s) URL; give the API root, such as {OPENAI_BASE_URL}")]
    NotHttp { shown: String },
    #[error("`{shown}` is not a URL ({source}); give the API root, such as {OPENAI_BASE_URL}")]
    Unparsable {
        shown: String,
        source: UrlParseError,
    },
}

/// A configuration the openai agent cannot use. Each message says what to
/// set, and where.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("agent `openai` needs a model: set `model:` under `agent:` in ward.yaml")]
    NoModel,
    #[error("agent.{key}: `{text}` is not a duration; write it like 90s or 10m")]
    Duration { key: &'static str, text: String },
    #[error(
        "{env} is set but empty: set it to the API root of an OpenAI-compatible server (e.g. http://localhost:11434/v1 for Ollama), or unset it to use {OPENAI_BASE_URL}"
    )]
    EmptyBaseUrl { env: String },
    #[error("{env}: {source}")]
    BaseUrl { env: String, source: UrlError },
    #[error(
        "{env} is not set: export {env} with the API key of {server} (a server that needs no key, such as Ollama, accepts any value)"
    )]
    KeyNotSet { env: String, server: String },
    #[error("{env}: {source}; set it to the API key of {server}")]
    Key {
        env: String,
        server: String,
        source: KeyError,
    },
    #[error("agent.max_turns must be at least 1")]
    NoTurns,
    #[error("agent.request_timeout and agent.wall_time must be longer than zero")]
    NoTime,
    #[error("agent.max_response_bytes must be at least {MIN_RESPONSE_BYTES}")]
    ResponseCap,
    #[error("agent.azure_api_version `{0}` is not an API version; write it like 2024-10-21")]
    AzureVersion(String),
    #[error("agent.model `{0}` is not an Azure deployment name (letters, digits, - _ .)")]
    AzureDeployment(String),
    #[error("cannot set up the HTTP client for the model: {0}")]
    HttpClient(#[source] reqwest::Error),
}

/// An API key. It has no `Display`, its `Debug` is `ApiKey(***)`, and it is
/// only ever written into the `Authorization` header.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Takes a key, without surrounding whitespace (a key read with `$(cat
    /// file)` often ends in a newline). Says what is wrong without showing
    /// the key.
    pub fn new(key: impl Into<String>) -> Result<ApiKey, KeyError> {
        let key = key.into().trim().to_string();
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(KeyError::NotHeaderSafe);
        }
        Ok(ApiKey(key))
    }

    pub(super) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// How to reach the model and how far it may go.
#[derive(Clone)]
pub struct OpenAiConfig {
    pub model: String,
    /// The API root, e.g. `https://api.openai.com/v1` or
    /// `http://localhost:11434/v1`; `/chat/completions` is appended.
    pub base_url: String,
    pub api_key: ApiKey,
    /// The variable names the values came from, for messages that say what
    /// to check.
    pub base_url_env: String,
    pub api_key_env: String,
    /// Set for Azure OpenAI's deployments API: requests go to
    /// `{base_url}/openai/deployments/{model}/chat/completions?api-version=`
    /// this, with the key in the `api-key` header. (Azure's newer `/openai/v1`
    /// API is plain OpenAI-compatible and needs none of this.)
    pub azure_api_version: Option<String>,
    /// Requests to the model per session (retries of one request count once).
    pub max_turns: u32,
    /// Prompt plus completion tokens per session, as the API reports them.
    pub token_budget: u64,
    /// Time spent waiting for the model per session, summed over turns (the
    /// time a human takes to approve is not counted).
    pub wall_time: Duration,
    /// One attempt of one request.
    pub request_timeout: Duration,
    /// Further attempts of one request after 429, 5xx, a timeout or a
    /// connection error.
    pub max_retries: u32,
    /// The first backoff ceiling; it doubles per retry (up to 30 s) and the
    /// wait is drawn uniformly below it.
    pub backoff_base: Duration,
    /// An answer larger than this is a failure, not retried.
    pub max_response_bytes: usize,
}

impl fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("model", &self.model)
            .field("base_url", &display_url(&self.base_url))
            .field("api_key", &self.api_key)
            .field("base_url_env", &self.base_url_env)
            .field("api_key_env", &self.api_key_env)
            .field("azure_api_version", &self.azure_api_version)
            .field("max_turns", &self.max_turns)
            .field("token_budget", &self.token_budget)
            .field("wall_time", &self.wall_time)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .field("backoff_base", &self.backoff_base)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish()
    }
}

impl OpenAiConfig {
    /// A configuration with the default bounds.
    pub fn new(model: impl Into<String>, base_url: impl Into<String>, api_key: ApiKey) -> Self {
        OpenAiConfig {
            model: model.into(),
            base_url: base_url.into(),
            api_key,
            base_url_env: DEFAULT_BASE_URL_ENV.into(),
            api_key_env: DEFAULT_API_KEY_ENV.into(),
            azure_api_version: None,
            max_turns: DEFAULT_MAX_TURNS,
            token_budget: DEFAULT_TOKEN_BUDGET,
            wall_time: DEFAULT_WALL_TIME,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
            backoff_base: DEFAULT_BACKOFF_BASE,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }

    /// The base URL and the key from the environment variables named
    /// `base_url_env` and `api_key_env` (`OPENAI_BASE_URL` and
    /// `OPENAI_API_KEY` when `None`). The key must be set; an unset base URL
    /// means OpenAI's.
    pub fn from_env(
        model: &str,
        base_url_env: Option<&str>,
        api_key_env: Option<&str>,
    ) -> Result<Self, ConfigError> {
        Self::from_lookup(model, base_url_env, api_key_env, |name| {
            std::env::var(name).ok()
        })
    }

    /// `agent:` of ward.yaml (`provider: openai`): the model and the bounds
    /// it sets, the base URL and the key from the environment.
    pub fn from_spec(spec: &AgentSpec) -> Result<Self, ConfigError> {
        let Some(model) = spec.model.as_deref() else {
            return Err(ConfigError::NoModel);
        };
        let mut cfg = Self::from_env(
            model,
            spec.base_url_env.as_deref(),
            spec.api_key_env.as_deref(),
        )?;
        cfg.apply(spec)?;
        Ok(cfg)
    }

    /// The bounds `spec` sets; the others keep their values.
    pub fn apply(&mut self, spec: &AgentSpec) -> Result<(), ConfigError> {
        let duration =
            |key: &'static str, text: &Option<String>| -> Result<Option<Duration>, ConfigError> {
                text.as_deref()
                    .map(|t| {
                        crate::contract::parse_duration(t)
                            .filter(|d| !d.is_zero())
                            .ok_or_else(|| ConfigError::Duration {
                                key,
                                text: t.to_string(),
                            })
                    })
                    .transpose()
            };
        if let Some(n) = spec.max_turns {
            self.max_turns = n;
        }
        if let Some(n) = spec.token_budget {
            self.token_budget = n;
        }
        if let Some(d) = duration("wall_time", &spec.wall_time)? {
            self.wall_time = d;
        }
        if let Some(d) = duration("request_timeout", &spec.request_timeout)? {
            self.request_timeout = d;
        }
        if let Some(n) = spec.max_retries {
            self.max_retries = n;
        }
        if let Some(n) = spec.max_response_bytes {
            self.max_response_bytes = n;
        }
        if let Some(v) = &spec.azure_api_version {
            self.azure_api_version = Some(v.trim().to_string());
        }
        self.check()
    }

    /// [`from_env`](Self::from_env) with the environment given as a
    /// function, for tests and for callers that hold their own environment.
    pub fn from_lookup(
        model: &str,
        base_url_env: Option<&str>,
        api_key_env: Option<&str>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let base_url_env = base_url_env.unwrap_or(DEFAULT_BASE_URL_ENV);
        let api_key_env = api_key_env.unwrap_or(DEFAULT_API_KEY_ENV);
        let model = model.trim();
        if model.is_empty() {
            return Err(ConfigError::NoModel);
        }
        let base_url = match lookup(base_url_env) {
            Some(url) if !url.trim().is_empty() => url.trim().to_string(),
            Some(_) => {
                return Err(ConfigError::EmptyBaseUrl {
                    env: base_url_env.to_string(),
                });
            }
            None => OPENAI_BASE_URL.to_string(),
        };
        check_base_url(&base_url).map_err(|source| ConfigError::BaseUrl {
            env: base_url_env.to_string(),
            source,
        })?;
        let Some(key) = lookup(api_key_env) else {
            return Err(ConfigError::KeyNotSet {
                env: api_key_env.to_string(),
                server: display_url(&base_url),
            });
        };
        let api_key = ApiKey::new(key).map_err(|source| ConfigError::Key {
            env: api_key_env.to_string(),
            server: display_url(&base_url),
            source,
        })?;
        let mut cfg = OpenAiConfig::new(model, base_url, api_key);
        cfg.base_url_env = base_url_env.to_string();
        cfg.api_key_env = api_key_env.to_string();
        Ok(cfg)
    }

    /// Checks what [`OpenAi::new`] would refuse.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.model.trim().is_empty() {
            return Err(ConfigError::NoModel);
        }
        check_base_url(&self.base_url).map_err(|source| ConfigError::BaseUrl {
            env: self.base_url_env.clone(),
            source,
        })?;
        if self.max_turns == 0 {
            return Err(ConfigError::NoTurns);
        }
        if self.request_timeout.is_zero() || self.wall_time.is_zero() {
            return Err(ConfigError::NoTime);
        }
        if self.max_response_bytes < MIN_RESPONSE_BYTES {
            return Err(ConfigError::ResponseCap);
        }
        if let Some(v) = &self.azure_api_version {
            let ok = !v.is_empty()
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !ok {
                return Err(ConfigError::AzureVersion(v.clone()));
            }
            if !self
                .model
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                return Err(ConfigError::AzureDeployment(self.model.clone()));
            }
        }
        Ok(())
    }
}

fn check_base_url(url: &str) -> Result<(), UrlError> {
    let shown = display_url(url);
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        Ok(_) => Err(UrlError::NotHttp { shown }),
        Err(source) => Err(UrlError::Unparsable { shown, source }),
    }
}

/// `url` without user, password, or the values of query parameters that
/// look secret: what may be logged.
pub fn display_url(url: &str) -> String {
    let Ok(mut u) = reqwest::Url::parse(url.trim()) else {
        return "(not a URL)".into();
    };
    let _ = u.set_username("");
    let _ = u.set_password(None);
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let lower = k.to_ascii_lowercase();
                let secret = ["key", "token", "secret", "password", "sig", "auth"]
                    .iter()
                    .any(|s| lower.contains(s));
                (
                    k.into_owned(),
                    if secret { "***".into() } else { v.into_owned() },
                )
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.as_str().trim_end_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::Agent;
    use crate::agent::openai::OpenAi;
    use serde_json::json;
    #[test]
    fn the_key_never_shows_in_debug_output() {
        let key = ApiKey::new("  sk-test-SECRET123\n").expect("key");
        assert_eq!(key.expose(), "sk-test-SECRET123");
        let cfg = OpenAiConfig::new("m", "https://user:pw@example.com/v1?api-key=zz&v=1", key);
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("SECRET123"), "{shown}");
        assert!(!shown.contains("pw"), "{shown}");
        assert!(!shown.contains("zz"), "{shown}");
        assert!(shown.contains("ApiKey(***)"), "{shown}");
        let agent = OpenAi::new(cfg).expect("agent");
        let shown = format!("{agent:?} {}", agent.describe());
        assert!(!shown.contains("SECRET123"), "{shown}");
        assert_eq!(
            agent.describe(),
            json!({"provider": "openai", "model": "m", "base_url": "https://example.com/v1?api-key=***&v=1"})
        );
        assert_eq!(ApiKey::new("sk bad"), Err(KeyError::NotHeaderSafe));
        assert_eq!(ApiKey::new(" \n"), Err(KeyError::Empty));
    }

    #[test]
    fn from_lookup_says_which_variable_to_set() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let err = OpenAiConfig::from_lookup("gpt", None, None, env(&[])).unwrap_err();
        assert!(
            matches!(&err, ConfigError::KeyNotSet { env, server } if env == "OPENAI_API_KEY" && server == OPENAI_BASE_URL),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("OPENAI_API_KEY is not set: export OPENAI_API_KEY"),
            "{err}"
        );
        let err = OpenAiConfig::from_lookup(
            "gpt",
            Some("MY_URL"),
            Some("MY_KEY"),
            env(&[("MY_URL", "localhost:11434")]),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "MY_URL: `localhost:11434` is not an http(s) URL; give the API root, such as https://api.openai.com/v1"
        );
        let ConfigError::BaseUrl { env: name, source } = err else {
            panic!("not a base URL error: {err:?}");
        };
        assert_eq!(
            (name.as_str(), source),
            (
                "MY_URL",
                UrlError::NotHttp {
                    shown: "localhost:11434".into()
                }
            )
        );
        let err =
            OpenAiConfig::from_lookup("gpt", None, Some("MY_KEY"), env(&[("MY_KEY", "two words")]))
                .unwrap_err();
        assert!(
            matches!(&err, ConfigError::Key { env, source: KeyError::NotHeaderSafe, .. } if env == "MY_KEY"),
            "{err:?}"
        );
        let shown = format!("{err} {err:?}");
        assert!(
            shown.starts_with("MY_KEY: the API key has characters"),
            "{shown}"
        );
        assert!(!shown.contains("two words"), "{shown}");
        let err = OpenAiConfig::from_lookup(" ", None, None, env(&[("OPENAI_API_KEY", "k")]))
            .unwrap_err();
        assert!(matches!(err, ConfigError::NoModel), "{err:?}");
        assert!(err.to_string().contains("needs a model"), "{err}");
        let cfg = OpenAiConfig::from_lookup(
            "llama3",
            Some("MY_URL"),
            Some("MY_KEY"),
            env(&[
                ("MY_URL", "http://localhost:11434/v1/"),
                ("MY_KEY", "ollama"),
            ]),
        )
        .expect("config");
        assert_eq!(
            (
                cfg.model.as_str(),
                cfg.base_url.as_str(),
                cfg.api_key_env.as_str(),
                cfg.max_turns,
                cfg.token_budget
            ),
            ("llama3", "http://localhost:11434/v1/", "MY_KEY", 20, 60_000)
        );
        let cfg = OpenAiConfig::from_lookup("gpt", None, None, env(&[("OPENAI_API_KEY", "k")]))
            .expect("config");
        assert_eq!(cfg.base_url, OPENAI_BASE_URL);
    }

    #[test]
    fn ward_yaml_sets_the_bounds_and_a_bad_one_is_named() {
        let spec: AgentSpec = serde_yaml::from_str(
            "provider: openai\nmodel: m\nmax_turns: 5\ntoken_budget: 9000\nwall_time: 2m\nrequest_timeout: 30s\nmax_retries: 1\nmax_response_bytes: 65536\n",
        )
        .expect("spec");
        let mut cfg = OpenAiConfig::new("m", OPENAI_BASE_URL, ApiKey::new("k").expect("key"));
        cfg.apply(&spec).expect("bounds");
        assert_eq!(
            (
                cfg.max_turns,
                cfg.token_budget,
                cfg.wall_time,
                cfg.request_timeout,
                cfg.max_retries,
                cfg.max_response_bytes
            ),
            (
                5,
                9000,
                Duration::from_secs(120),
                Duration::from_secs(30),
                1,
                65536
            )
        );
        assert_eq!(
            cfg.backoff_base, DEFAULT_BACKOFF_BASE,
            "what ward.yaml does not set stays"
        );
        let spec: AgentSpec =
            serde_yaml::from_str("provider: openai\nwall_time: soon\n").expect("spec");
        let err = cfg.apply(&spec).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Duration { key: "wall_time", text } if text == "soon"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "agent.wall_time: `soon` is not a duration; write it like 90s or 10m"
        );
        let spec: AgentSpec =
            serde_yaml::from_str("provider: openai\nmax_turns: 0\n").expect("spec");
        let err = cfg.apply(&spec).unwrap_err();
        assert!(matches!(err, ConfigError::NoTurns), "{err:?}");
        assert_eq!(err.to_string(), "agent.max_turns must be at least 1");
    }
}
