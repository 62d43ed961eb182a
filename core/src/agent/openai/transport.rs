//! The way to the model: an HTTP service under async-openai that makes one
//! attempt with a capped body, and the loop above it that retries
//! (exponential backoff with full jitter, on 429, 5xx, timeouts and
//! connection errors only) within the session's wall time.
//!
//! async-openai's own retry layer is replaced by this plain service, so the
//! loop here is the only one that retries. It must never put the API key in
//! an error: the server's messages are quoted, never the request.

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

use super::config::{OpenAiConfig, display_url};
use super::text::{human, quote};
use super::OpenAi;

/// The longest wait between two attempts, Retry-After included.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The async-openai client for `cfg`: its HTTP service makes one attempt
/// per call and caps the answer.
pub(super) fn client(cfg: &OpenAiConfig) -> Result<Client<Box<dyn ApiConfig>>, String> {
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
            .map_err(|e| format!("cannot set up the HTTP client for the model: {e}"))?;
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
        Ok(Client::build(http.clone(), api).with_http_service(CappedHttp {
            client: http,
            max_bytes: cfg.max_response_bytes,
        }))
}

/// Why an attempt failed.
enum Problem {
    Retry {
        what: String,
        retry_after: Option<Duration>,
    },
    Fatal(String),
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
    fn wall_time_spent(&self, what: &str) -> String {
        format!(
            "the model's wall time of {} for this session is spent{what}; raise `wall_time` under `agent:` in ward.yaml, or find out why {} is slow",
            human(self.cfg.wall_time),
            display_url(&self.cfg.base_url)
        )
    }

    /// One request, with retries.
    pub(super) async fn send(
        &self,
        request: CreateChatCompletionRequest,
        started: Instant,
        notes: &mut Vec<String>,
    ) -> Result<CreateChatCompletionResponse, String> {
        let mut attempt: u32 = 0;
        loop {
            let remaining = self.remaining(started);
            if remaining.is_zero() {
                return Err(self.wall_time_spent(""));
            }
            let timeout = self.cfg.request_timeout.min(remaining);
            let result =
                tokio::time::timeout(timeout, self.client.chat().create(request.clone())).await;
            let problem = match result {
                Ok(Ok(response)) => return Ok(response),
                Err(_) if timeout < self.cfg.request_timeout => {
                    return Err(self.wall_time_spent(" waiting for an answer"));
                }
                Err(_) => Problem::Retry {
                    what: format!("no answer within {}", human(timeout)),
                    retry_after: None,
                },
                Ok(Err(e)) => self.classify(e),
            };
            let (what, retry_after) = match problem {
                Problem::Fatal(message) => return Err(message),
                Problem::Retry { what, retry_after } => (what, retry_after),
            };
            if attempt >= self.cfg.max_retries {
                return Err(format!(
                    "the model server at {} failed {} attempt(s) in a row, the last with {what}; check that it is up and reachable from here, or try again later",
                    display_url(&self.cfg.base_url),
                    attempt + 1
                ));
            }
            let wait = backoff(self.cfg.backoff_base, attempt, retry_after);
            if wait >= self.remaining(started) {
                return Err(self.wall_time_spent(&format!(" (the last attempt ended with {what})")));
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
        let url = display_url(&self.cfg.base_url);
        match e {
            OpenAIError::Boxed(b) => match b.downcast::<Transport>() {
                Ok(t) => match *t {
                    Transport::Status {
                        status,
                        retry_after,
                        location,
                        message,
                    } => self.status_problem(status, retry_after, location, &message),
                    Transport::Oversized { limit } => Problem::Fatal(format!(
                        "the answer of the model server at {url} is larger than max_response_bytes ({limit} bytes), so it was dropped and not retried; the model may be rambling, or {} points at something that is not a chat-completions API; raise `max_response_bytes` under `agent:` in ward.yaml if such answers are expected",
                        self.cfg.base_url_env
                    )),
                },
                Err(other) => Problem::Fatal(format!(
                    "the request to the model server at {url} failed: {other}"
                )),
            },
            OpenAIError::Reqwest(e) => reqwest_problem(&e, &url),
            OpenAIError::ApiError(a) => {
                self.status_problem(a.status_code.as_u16(), None, None, &a.api_error.message)
            }
            OpenAIError::JSONDeserialize(e, _) => Problem::Fatal(format!(
                "the answer of {url} is not a chat completion ({e}); check that {} is the API root of an OpenAI-compatible server (it usually ends in /v1)",
                self.cfg.base_url_env
            )),
            other => Problem::Fatal(format!(
                "the request to the model server at {url} failed: {other}"
            )),
        }
    }

    fn status_problem(
        &self,
        status: u16,
        retry_after: Option<Duration>,
        location: Option<String>,
        message: &str,
    ) -> Problem {
        let url = display_url(&self.cfg.base_url);
        let model = &self.cfg.model;
        let key_env = &self.cfg.api_key_env;
        let url_env = &self.cfg.base_url_env;
        let quoted = quote(message);
        let said = if quoted.is_empty() {
            String::new()
        } else {
            format!(": {quoted}")
        };
        match status {
            429 if message.contains("insufficient_quota")
                || message.contains("exceeded your current quota") =>
            {
                Problem::Fatal(format!(
                    "the model server at {url} says the account has no quota left (HTTP 429{said}); check the plan and billing of the key in {key_env}"
                ))
            }
            408 | 429 | 500..=599 => Problem::Retry {
                what: format!("HTTP {status}{said}"),
                retry_after,
            },
            401 => Problem::Fatal(format!(
                "the model server at {url} refused the API key (HTTP 401{said}); check that {key_env} holds a valid key for this server"
            )),
            403 => Problem::Fatal(format!(
                "the model server at {url} does not let this key use model `{model}` (HTTP 403{said}); check the permissions of the key in {key_env}, or the model name"
            )),
            404 => Problem::Fatal(format!(
                "the model server at {url} has no model `{model}` or no chat-completions API (HTTP 404{said}); check `model:` under `agent:` in ward.yaml and that {url_env} is the API root (it usually ends in /v1)"
            )),
            400 => Problem::Fatal(format!(
                "the model server at {url} refused the request (HTTP 400{said}); the model `{model}` may not support tool calling, or the conversation outgrew its context window"
            )),
            300..=399 => Problem::Fatal(format!(
                "the model server at {url} redirects (HTTP {status} to {}); set {url_env} to the address it redirects to",
                location
                    .as_deref()
                    .map_or_else(|| "an address it did not give".to_string(), display_url)
            )),
            _ => Problem::Fatal(format!(
                "the model server at {url} refused the request (HTTP {status}{said}); check {url_env}, {key_env} and the model name `{model}`"
            )),
        }
    }
}

fn reqwest_problem(e: &reqwest::Error, url: &str) -> Problem {
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
            what: format!("no connection to {url} ({what})"),
            retry_after: None,
        }
    } else if e.is_request() || e.is_body() || e.is_decode() {
        Problem::Retry {
            what: format!("a broken exchange ({what})"),
            retry_after: None,
        }
    } else {
        Problem::Fatal(format!(
            "the request to the model server at {url} failed: {what}"
        ))
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
