//! The way to the model: an HTTP service under async-openai that makes one
//! attempt with a capped body, and the loop above it that retries
//! (exponential backoff with full jitter, on 429, 5xx, timeouts and
//! connection errors only) within the session's wall time.
//!
//! async-openai's own retry layer is replaced by this plain service, so the
//! loop here is the only one that retries. It must never put the API key in
//! an error: the server's messages are quoted, never the request.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_openai::Client;
use async_openai::config::{AzureConfig, Config as ApiConfig, OpenAIConfig};
use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use async_openai::types::chat::{CreateChatCompletionRequest, CreateChatCompletionResponse};
use serde_json::Value;

use super::OpenAi;
use super::config::{ConfigError, OpenAiConfig, display_url};
use super::text::{human, quote};

/// The longest wait between two attempts, Retry-After included.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The async-openai client for `cfg`: its HTTP service makes one attempt
/// per call and caps the answer.
pub(super) fn client(cfg: &OpenAiConfig) -> Result<Client<Box<dyn ApiConfig>>, ConfigError> {
    // reqwest is built without a crypto provider of its own (no aws-lc,
    // no OpenSSL); ring is the one sqlx already brings. Installing it
    // fails harmlessly when a provider is already installed.
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let http = reqwest::Client::builder()
        .connect_timeout(cfg.request_timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("ward/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(ConfigError::HttpClient)?;
    let base = cfg.base_url.trim().trim_end_matches('/');
    let api: Box<dyn ApiConfig> = match &cfg.azure_api_version {
        None => Box::new(
            OpenAIConfig::new()
                .with_api_base(base)
                .with_api_key(cfg.api_key.expose()),
        ),
        Some(version) => Box::new(
            AzureConfig::new()
                .with_api_base(base)
                .with_deployment_id(cfg.model.clone())
                .with_api_version(version.clone())
                .with_api_key(cfg.api_key.expose()),
        ),
    };
    Ok(
        Client::build(http.clone(), api).with_http_service(CappedHttp {
            client: http,
            max_bytes: cfg.max_response_bytes,
        }),
    )
}

/// Why the model could not be asked. Each message names the server (its
/// URL without credentials) and what to check; none holds the key.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "the model's wall time of {} for this session is spent{moment}; raise `wall_time` under `agent:` in ward.yaml, or find out why {server} is slow",
        human(*limit)
    )]
    WallTime {
        limit: Duration,
        server: String,
        moment: Moment,
    },
    #[error(
        "the model server at {server} failed {attempts} attempt(s) in a row, the last with {last}; check that it is up and reachable from here, or try again later"
    )]
    GaveUp {
        server: String,
        attempts: u32,
        last: String,
    },
    #[error(
        "the model server at {server} says the account has no quota left (HTTP 429{}); check the plan and billing of the key in {key_env}",
        said(message)
    )]
    NoQuota {
        server: String,
        message: String,
        key_env: String,
    },
    #[error(
        "the model server at {server} refused the API key (HTTP 401{}); check that {key_env} holds a valid key for this server",
        said(message)
    )]
    KeyRefused {
        server: String,
        message: String,
        key_env: String,
    },
    #[error(
        "the model server at {server} does not let this key use model `{model}` (HTTP 403{}); check the permissions of the key in {key_env}, or the model name",
        said(message)
    )]
    Forbidden {
        server: String,
        model: String,
        message: String,
        key_env: String,
    },
    #[error(
        "the model server at {server} has no model `{model}` or no chat-completions API (HTTP 404{}); check `model:` under `agent:` in ward.yaml and that {url_env} is the API root (it usually ends in /v1)",
        said(message)
    )]
    NotFound {
        server: String,
        model: String,
        message: String,
        url_env: String,
    },
    #[error(
        "the model server at {server} refused the request (HTTP 400{}); the model `{model}` may not support tool calling, or the conversation outgrew its context window",
        said(message)
    )]
    BadRequest {
        server: String,
        model: String,
        message: String,
    },
    #[error(
        "the model server at {server} redirects (HTTP {status} to {}); set {url_env} to the address it redirects to",
        to.as_deref().map_or_else(|| "an address it did not give".to_string(), display_url)
    )]
    Redirect {
        server: String,
        status: u16,
        to: Option<String>,
        url_env: String,
    },
    #[error(
        "the model server at {server} refused the request (HTTP {status}{}); check {url_env}, {key_env} and the model name `{model}`",
        said(message)
    )]
    Refused {
        server: String,
        status: u16,
        message: String,
        url_env: String,
        key_env: String,
        model: String,
    },
    #[error(
        "the answer of the model server at {server} is larger than max_response_bytes ({limit} bytes), so it was dropped and not retried; the model may be rambling, or {url_env} points at something that is not a chat-completions API; raise `max_response_bytes` under `agent:` in ward.yaml if such answers are expected"
    )]
    Oversized {
        server: String,
        limit: usize,
        url_env: String,
    },
    #[error(
        "the answer of {server} is not a chat completion ({source}); check that {url_env} is the API root of an OpenAI-compatible server (it usually ends in /v1)"
    )]
    NotChatCompletion {
        server: String,
        url_env: String,
        source: serde_json::Error,
    },
    /// The exchange broke in a way no retry mends; `detail` is the chain of
    /// causes.
    #[error("the request to the model server at {server} failed: {detail}")]
    Failed { server: String, detail: String },
}

/// When the wall time ran out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moment {
    /// Before a request was sent.
    BeforeRequest,
    /// While waiting for an answer.
    Waiting,
    /// Before a retry; the last attempt ended with this.
    BeforeRetry(String),
}

impl fmt::Display for Moment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Moment::BeforeRequest => Ok(()),
            Moment::Waiting => f.write_str(" waiting for an answer"),
            Moment::BeforeRetry(what) => write!(f, " (the last attempt ended with {what})"),
        }
    }
}

/// `: <the server's message>`, on one line and short, or nothing.
fn said(message: &str) -> String {
    let quoted = quote(message);
    if quoted.is_empty() {
        String::new()
    } else {
        format!(": {quoted}")
    }
}

/// Why an attempt failed.
enum Problem {
    Retry {
        what: String,
        retry_after: Option<Duration>,
    },
    Fatal(ModelError),
}

/// What the HTTP service reports besides reqwest's own errors.
#[derive(Debug, thiserror::Error)]
enum Transport {
    #[error("HTTP {status}: {message}")]
    Status {
        status: u16,
        retry_after: Option<Duration>,
        location: Option<String>,
        message: String,
    },
    #[error("the answer is larger than {limit} bytes")]
    Oversized { limit: usize },
}

impl OpenAi {
    fn wall_time_spent(&self, moment: Moment) -> ModelError {
        ModelError::WallTime {
            limit: self.cfg.wall_time,
            server: display_url(&self.cfg.base_url),
            moment,
        }
    }

    /// One request, with retries.
    pub(super) async fn send(
        &self,
        request: CreateChatCompletionRequest,
        started: Instant,
        notes: &mut Vec<String>,
    ) -> Result<CreateChatCompletionResponse, ModelError> {
        let mut attempt: u32 = 0;
        loop {
            let remaining = self.remaining(started);
            if remaining.is_zero() {
                return Err(self.wall_time_spent(Moment::BeforeRequest));
            }
            let timeout = self.cfg.request_timeout.min(remaining);
            let result =
                tokio::time::timeout(timeout, self.client.chat().create(request.clone())).await;
            let problem = match result {
                Ok(Ok(response)) => return Ok(response),
                Err(_) if timeout < self.cfg.request_timeout => {
                    return Err(self.wall_time_spent(Moment::Waiting));
                }
                Err(_) => Problem::Retry {
                    what: format!("no answer within {}", human(timeout)),
                    retry_after: None,
                },
                Ok(Err(e)) => self.classify(e),
            };
            let (what, retry_after) = match problem {
                Problem::Fatal(e) => return Err(e),
                Problem::Retry { what, retry_after } => (what, retry_after),
            };
            if attempt >= self.cfg.max_retries {
                return Err(ModelError::GaveUp {
                    server: display_url(&self.cfg.base_url),
                    attempts: attempt + 1,
                    last: what,
                });
            }
            let wait = backoff(self.cfg.backoff_base, attempt, retry_after);
            if wait >= self.remaining(started) {
                return Err(self.wall_time_spent(Moment::BeforeRetry(what)));
            }
            attempt += 1;
            notes.push(format!(
                "model server: {what}; retry {attempt} of {} in {}",
                self.cfg.max_retries,
                human(wait)
            ));
            tokio::time::sleep(wait).await;
        }
    }

    fn classify(&self, e: OpenAIError) -> Problem {
        let server = display_url(&self.cfg.base_url);
        let url_env = self.cfg.base_url_env.clone();
        match e {
            OpenAIError::Boxed(b) => match b.downcast::<Transport>() {
                Ok(t) => match *t {
                    Transport::Status {
                        status,
                        retry_after,
                        location,
                        message,
                    } => self.status_problem(status, retry_after, location, message),
                    Transport::Oversized { limit } => Problem::Fatal(ModelError::Oversized {
                        server,
                        limit,
                        url_env,
                    }),
                },
                Err(other) => Problem::Fatal(ModelError::Failed {
                    server,
                    detail: other.to_string(),
                }),
            },
            OpenAIError::Reqwest(e) => reqwest_problem(&e, server),
            OpenAIError::ApiError(a) => {
                self.status_problem(a.status_code.as_u16(), None, None, a.api_error.message)
            }
            OpenAIError::JSONDeserialize(source, _) => {
                Problem::Fatal(ModelError::NotChatCompletion {
                    server,
                    url_env,
                    source,
                })
            }
            other => Problem::Fatal(ModelError::Failed {
                server,
                detail: other.to_string(),
            }),
        }
    }

    fn status_problem(
        &self,
        status: u16,
        retry_after: Option<Duration>,
        location: Option<String>,
        message: String,
    ) -> Problem {
        let server = display_url(&self.cfg.base_url);
        let model = self.cfg.model.clone();
        let key_env = self.cfg.api_key_env.clone();
        let url_env = self.cfg.base_url_env.clone();
        Problem::Fatal(match status {
            429 if message.contains("insufficient_quota")
                || message.contains("exceeded your current quota") =>
            {
                ModelError::NoQuota {
                    server,
                    message,
                    key_env,
                }
            }
            408 | 429 | 500..=599 => {
                return Problem::Retry {
                    what: format!("HTTP {status}{}", said(&message)),
                    retry_after,
                };
            }
            401 => ModelError::KeyRefused {
                server,
                message,
                key_env,
            },
            403 => ModelError::Forbidden {
                server,
                model,
                message,
                key_env,
            },
            404 => ModelError::NotFound {
                server,
                model,
                message,
                url_env,
            },
            400 => ModelError::BadRequest {
                server,
                model,
                message,
            },
            300..=399 => ModelError::Redirect {
                server,
                status,
                to: location,
                url_env,
            },
            _ => ModelError::Refused {
                server,
                status,
                message,
                url_env,
                key_env,
                model,
            },
        })
    }
}

fn reqwest_problem(e: &reqwest::Error, server: String) -> Problem {
    let mut what = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = source {
        let text = err.to_string();
        if !text.is_empty() && !what.contains(&text) {
            if !what.is_empty() {
                what.push_str(": ");
            }
            what.push_str(&text);
        }
        source = err.source();
    }
    if e.is_timeout() {
        Problem::Retry {
            what: format!("a timeout ({what})"),
            retry_after: None,
        }
    } else if e.is_connect() {
        Problem::Retry {
            what: format!("no connection to {server} ({what})"),
            retry_after: None,
        }
    } else if e.is_request() || e.is_body() || e.is_decode() {
        Problem::Retry {
            what: format!("a broken exchange ({what})"),
            retry_after: None,
        }
    } else {
        Problem::Fatal(ModelError::Failed {
            server,
            detail: what,
        })
    }
}

/// The wait before retry number `attempt + 1`: the server's Retry-After
/// when it gave one, else full jitter below `base * 2^attempt`; never more
/// than [`MAX_BACKOFF`].
fn backoff(base: Duration, attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(r) = retry_after {
        return r.min(MAX_BACKOFF);
    }
    let ceiling = base
        .saturating_mul(2u32.saturating_pow(attempt.min(16)))
        .min(MAX_BACKOFF);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(random() % (nanos + 1))
}

/// A random number, good enough for jitter.
fn random() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(Instant::now())
}

/// Retry-After as seconds or as an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// The message of an error body: OpenAI's `{"error": {"message": ...}}`,
/// Ollama's `{"error": "..."}`, or the text.
fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let found = v
            .pointer("/error/message")
            .or_else(|| v.get("error"))
            .or_else(|| v.get("message"))
            .or_else(|| v.get("detail"));
        let code = v
            .pointer("/error/code")
            .and_then(Value::as_str)
            .or_else(|| v.pointer("/error/type").and_then(Value::as_str));
        let text = match found {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => v.to_string(),
        };
        return match code {
            Some(c) if !text.contains(c) => format!("{text} ({c})"),
            _ => text,
        };
    }
    String::from_utf8_lossy(body).into_owned()
}

/// The HTTP transport under async-openai: one attempt, no retries (the
/// agent's loop retries), the body read with a cap, and failures as
/// [`Transport`] errors that keep the status and Retry-After.
#[derive(Clone)]
struct CappedHttp {
    client: reqwest::Client,
    max_bytes: usize,
}

type HttpFuture = Pin<Box<dyn Future<Output = Result<reqwest::Response, OpenAIError>> + Send>>;

fn boxed(t: Transport) -> OpenAIError {
    OpenAIError::Boxed(Box::new(t))
}

impl tower::Service<HttpRequestFactory> for CappedHttp {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = HttpFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), OpenAIError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, factory: HttpRequestFactory) -> HttpFuture {
        let client = self.client.clone();
        let limit = self.max_bytes;
        Box::pin(async move {
            let request = factory.build().await?;
            let mut response = client
                .execute(request)
                .await
                .map_err(|e| OpenAIError::Reqwest(e.without_url()))?;
            let status = response.status();
            let headers = response.headers().clone();
            if response.content_length().is_some_and(|n| n > limit as u64) {
                return Err(boxed(Transport::Oversized { limit }));
            }
            let mut body = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| OpenAIError::Reqwest(e.without_url()))?
            {
                if body.len() + chunk.len() > limit {
                    return Err(boxed(Transport::Oversized { limit }));
                }
                body.extend_from_slice(&chunk);
            }
            if !status.is_success() {
                return Err(boxed(Transport::Status {
                    status: status.as_u16(),
                    retry_after: retry_after(&headers),
                    location: headers
                        .get(reqwest::header::LOCATION)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string),
                    message: error_message(&body),
                }));
            }
            let mut rebuilt = http::Response::new(body);
            *rebuilt.status_mut() = status;
            *rebuilt.headers_mut() = headers;
            Ok(reqwest::Response::from(rebuilt))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::agent::openai::ApiKey;

    /// A server that answers each connection with the next of `responses`
    /// (whole HTTP responses) and counts the requests.
    async fn serve(responses: Vec<String>) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        tokio::spawn(async move {
            for response in responses {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // The head, then as much body as Content-Length says.
                loop {
                    let Ok(n) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                seen.fetch_add(1, Ordering::SeqCst);
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
        (format!("http://{addr}/v1"), count)
    }

    fn http(status: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    async fn ask(responses: Vec<String>, max_retries: u32) -> (ModelError, usize, String) {
        let (url, count) = serve(responses).await;
        let mut cfg = OpenAiConfig::new("m", url, ApiKey::new("sk-test-SECRET").expect("key"));
        cfg.max_retries = max_retries;
        cfg.backoff_base = Duration::from_millis(1);
        cfg.max_response_bytes = 1024;
        cfg.request_timeout = Duration::from_secs(5);
        let agent = OpenAi::new(cfg).expect("agent");
        let request = CreateChatCompletionRequest {
            model: "m".into(),
            ..Default::default()
        };
        let mut notes = Vec::new();
        let err = agent
            .send(request, Instant::now(), &mut notes)
            .await
            .expect_err("the server misbehaves");
        let shown = format!("{err} {err:?} {notes:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        (err, count.load(Ordering::SeqCst), notes.join("\n"))
    }

    #[tokio::test]
    async fn an_answer_that_is_not_a_chat_completion_is_a_typed_error_naming_the_variable() {
        let (err, requests, _) = ask(vec![http("200 OK", r#"{"hello": "world"}"#)], 2).await;
        assert!(
            matches!(&err, ModelError::NotChatCompletion { url_env, .. } if url_env == "OPENAI_BASE_URL"),
            "{err:?}"
        );
        assert_eq!(requests, 1, "a wrong answer is not retried");
        assert!(
            err.to_string()
                .contains("check that OPENAI_BASE_URL is the API root"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_oversized_answer_is_a_typed_error_and_not_retried() {
        let body = format!(r#"{{"pad": "{}"}}"#, "x".repeat(4096));
        let (err, requests, _) = ask(vec![http("200 OK", &body)], 2).await;
        assert!(
            matches!(err, ModelError::Oversized { limit: 1024, .. }),
            "{err:?}"
        );
        assert_eq!(requests, 1);
    }

    #[tokio::test]
    async fn a_refused_key_is_typed_and_quotes_the_server_on_one_line() {
        let (err, _, _) = ask(
            vec![http(
                "401 Unauthorized",
                r#"{"error": {"message": "bad\nkey", "code": "invalid_api_key"}}"#,
            )],
            0,
        )
        .await;
        let ModelError::KeyRefused {
            message, key_env, ..
        } = &err
        else {
            panic!("not a refused key: {err:?}");
        };
        assert_eq!(
            (message.as_str(), key_env.as_str()),
            ("bad\nkey (invalid_api_key)", "OPENAI_API_KEY")
        );
        assert!(
            err.to_string()
                .contains("refused the API key (HTTP 401: bad key (invalid_api_key)); check that OPENAI_API_KEY"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_server_that_keeps_failing_gives_up_after_the_retries_with_the_last_status() {
        let (err, requests, notes) = ask(
            (0..3)
                .map(|_| http("503 Service Unavailable", r#"{"error": "overloaded"}"#))
                .collect(),
            2,
        )
        .await;
        assert!(
            matches!(&err, ModelError::GaveUp { attempts: 3, last, .. } if last == "HTTP 503: overloaded"),
            "{err:?}"
        );
        assert_eq!(requests, 3);
        assert_eq!(notes.lines().count(), 2, "{notes}");
    }

    #[test]
    fn backoff_is_jittered_below_a_doubling_ceiling_and_honours_retry_after() {
        let base = Duration::from_millis(100);
        for attempt in 0..6 {
            for _ in 0..50 {
                let wait = backoff(base, attempt, None);
                assert!(
                    wait <= (base * 2u32.pow(attempt)).min(MAX_BACKOFF),
                    "{wait:?}"
                );
            }
        }
        assert!(backoff(Duration::from_secs(10), 10, None) <= MAX_BACKOFF);
        assert_eq!(
            backoff(base, 0, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            backoff(base, 0, Some(Duration::from_secs(3600))),
            MAX_BACKOFF
        );
    }

    #[test]
    fn error_bodies_of_openai_ollama_and_proxies_are_read() {
        assert_eq!(
            error_message(br#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#),
            "Rate limit reached (rate_limit_exceeded)"
        );
        assert_eq!(
            error_message(br#"{"error":"model 'x' not found"}"#),
            "model 'x' not found"
        );
        assert_eq!(
            error_message(b"<html>502 Bad Gateway</html>"),
            "<html>502 Bad Gateway</html>"
        );
    }
}
