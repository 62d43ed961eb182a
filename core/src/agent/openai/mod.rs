//! `openai`: any OpenAI-compatible chat-completions endpoint (OpenAI, Azure
//! OpenAI's v1 or deployments API, vLLM, Ollama, llama.cpp's server) through
//! async-openai, with tool calling.
//!
//! The model is given the contract, the policy in brief and the environment,
//! then the session so far: every proposal is an assistant tool call
//! answered by a tool result rendered from the session state — its status,
//! the gate's decision, the summary ward made of its rows and its facts —
//! and last the steps that can run now (`conversation` keeps everything
//! before that stable for prompt caches). Raw rows never reach the model
//! (the state does not hold them), and evidence is fenced; the system
//! prompt says it is data, not instructions. The model's tool calls become proposals only through
//! [`tools::parse_call`]; anything else (an unknown tool, broken JSON, a
//! step of another runbook, anything that looks like approving) is answered
//! to the model as a tool error, reported in [`Turn::notes`], and never
//! executed.
//!
//! Everything is bounded: turns (requests) and tokens per session, the time
//! spent waiting for the model, retries (exponential backoff with full
//! jitter, on 429, 5xx, timeouts and connection errors only), the size of an
//! answer, and a model that makes the same call three times in a row.
//! async-openai's own retry layer is replaced by a plain HTTP service, so
//! the loop in `transport` is the only one that retries.
//!
//! The parts: `config` (what to reach and the bounds), `transport` (the
//! HTTP service, retries, what a failure means), `conversation` (the
//! session rendered as messages, the prompt text), `text` (small helpers)
//! and this module (the turn loop: ask, check the answer, turn a tool call
//! into a proposal).
//!
//! It must never: show the API key anywhere but the `Authorization` header
//! (not in errors, notes, `Debug` output or [`Agent::describe`]); send raw
//! rows; offer the model a tool that approves.

mod config;
mod conversation;
mod text;
mod transport;

use std::fmt;
use std::time::{Duration, Instant};

use async_openai::Client;
use async_openai::config::Config as ApiConfig;
use async_openai::types::chat::{ChatCompletionMessageToolCalls, ChatCompletionResponseMessage};
use serde_json::{Value, json};

pub use config::{
    ApiKey, ConfigError, DEFAULT_API_KEY_ENV, DEFAULT_BACKOFF_BASE, DEFAULT_BASE_URL_ENV,
    DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_MAX_RETRIES, DEFAULT_MAX_TURNS, DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_TOKEN_BUDGET, DEFAULT_WALL_TIME, KeyError, OPENAI_BASE_URL, OpenAiConfig, UrlError,
    display_url,
};
pub use conversation::render_result;
pub use transport::{ModelError, Moment};

use conversation::{Answer, Call, Exchange, Item, Link};
use text::{quote, scrub, truncate};

use super::tools::{self, ADHOC_TOOL, CallError};
use super::{Agent, AgentFailure, AgentFuture, AgentView, Proposal, Turn, Usage};

/// The same call this many times in a row stops the agent.
const REPEAT_LIMIT: u32 = 3;
/// The longest rationale kept from the model's text.
const MAX_RATIONALE_CHARS: usize = 2_000;

/// The model made the same call [`REPEAT_LIMIT`] times in a row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the model repeats itself: it made the call {call} {count} times in a row; the session goes on without it (a different model, or a clearer runbook description, may help)"
)]
struct Repeated {
    /// The call, `name(arguments)` with sorted keys, cut short.
    call: String,
    count: u32,
}

/// The openai agent. One per session: it keeps the conversation.
pub struct OpenAi {
    cfg: OpenAiConfig,
    client: Client<Box<dyn ApiConfig>>,
    history: Vec<Item>,
    /// Requests answered in this session.
    turns: u32,
    /// Tokens reported in this session.
    spent: Usage,
    /// Time spent in `next` in this session.
    busy: Duration,
    /// The signature of the last call and how many times in a row it came.
    streak: Option<(String, u32)>,
    /// How many of the session's `agent_error`s have been seen.
    errors_seen: usize,
    /// What this agent reported last time (the session logs it as agent
    /// errors; those are not news to the model).
    reported: Vec<String>,
    /// Numbers the tool calls that came without an id.
    unnamed_calls: u64,
    warned_no_usage: bool,
}

impl fmt::Debug for OpenAi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAi")
            .field("cfg", &self.cfg)
            .field("turns", &self.turns)
            .field("spent", &self.spent)
            .field("busy", &self.busy)
            .finish_non_exhaustive()
    }
}

impl OpenAi {
    /// A client for `cfg`; fails on a configuration it cannot use.
    pub fn new(cfg: OpenAiConfig) -> Result<OpenAi, ConfigError> {
        cfg.check()?;
        let client = transport::client(&cfg)?;
        Ok(OpenAi {
            cfg,
            client,
            history: Vec::new(),
            turns: 0,
            spent: Usage::default(),
            busy: Duration::ZERO,
            streak: None,
            errors_seen: 0,
            reported: Vec::new(),
            unnamed_calls: 0,
            warned_no_usage: false,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &OpenAiConfig {
        &self.cfg
    }

    /// Tokens reported so far in this session.
    pub fn spent(&self) -> Usage {
        self.spent
    }

    /// Requests answered so far in this session.
    pub fn turns(&self) -> u32 {
        self.turns
    }

    async fn turn(&mut self, view: &AgentView<'_>, started: Instant) -> Result<Turn, AgentFailure> {
        let mut usage = Usage::default();
        let mut notes = Vec::new();
        self.catch_up(view);
        let specs = tools::generic_tool_specs(view.contract);
        let fail = |message: String, usage: Usage, notes: Vec<String>| AgentFailure {
            message,
            usage,
            notes,
        };
        loop {
            if self.turns >= self.cfg.max_turns {
                return Err(fail(
                    format!(
                        "the model has had all {} turns (requests) of this session without finishing; raise `max_turns` under `agent:` in ward.yaml if the runbook needs more",
                        self.cfg.max_turns
                    ),
                    usage,
                    notes,
                ));
            }
            let limit = self.token_limit(view);
            if self.used(view, usage) >= limit {
                return Err(fail(self.budget_spent(view, usage, limit), usage, notes));
            }
            let request = self.request(view, &specs);
            let response = match self.send(request, started, &mut notes).await {
                Ok(r) => r,
                Err(e) => return Err(fail(e.to_string(), usage, notes)),
            };
            self.turns += 1;
            match &response.usage {
                Some(u) => {
                    let cached = u
                        .prompt_tokens_details
                        .as_ref()
                        .and_then(|d| d.cached_tokens)
                        .map_or(0, u64::from);
                    let u = Usage {
                        prompt_tokens: u64::from(u.prompt_tokens),
                        completion_tokens: u64::from(u.completion_tokens),
                        cached_prompt_tokens: cached.min(u64::from(u.prompt_tokens)),
                    };
                    usage.prompt_tokens += u.prompt_tokens;
                    usage.completion_tokens += u.completion_tokens;
                    usage.cached_prompt_tokens += u.cached_prompt_tokens;
                    self.spent.prompt_tokens += u.prompt_tokens;
                    self.spent.completion_tokens += u.completion_tokens;
                    self.spent.cached_prompt_tokens += u.cached_prompt_tokens;
                }
                None if !self.warned_no_usage => {
                    self.warned_no_usage = true;
                    notes.push(format!(
                        "the model server at {} reports no token usage, so the token budget of {limit} cannot be enforced",
                        display_url(&self.cfg.base_url)
                    ));
                }
                None => {}
            }
            if self.used(view, usage) > limit {
                return Err(fail(self.budget_spent(view, usage, limit), usage, notes));
            }
            let message = response.choices.into_iter().next().map(|c| c.message);
            match self.answer(view, &specs, message, &mut notes) {
                Ok(Some(proposal)) => {
                    return Ok(Turn {
                        proposal,
                        usage,
                        notes,
                    });
                }
                Ok(None) => {}
                Err(e) => return Err(fail(e.to_string(), usage, notes)),
            }
        }
    }

    /// The request body this agent would send for `view` now, as JSON:
    /// what the model reads (system prompt, tools, the conversation with
    /// every result ward rendered). The token-economy benchmark measures it.
    pub fn request_json(&self, view: &AgentView<'_>) -> Value {
        let specs = tools::generic_tool_specs(view.contract);
        serde_json::to_value(self.request(view, &specs)).unwrap_or(Value::Null)
    }

    fn token_limit(&self, view: &AgentView<'_>) -> u64 {
        view.budget
            .limit
            .map_or(self.cfg.token_budget, |l| l.min(self.cfg.token_budget))
    }

    /// Tokens of the session: what this agent counted, or what the session
    /// counted plus this turn, whichever is more.
    fn used(&self, view: &AgentView<'_>, this_turn: Usage) -> u64 {
        self.spent
            .total()
            .max(view.budget.used.saturating_add(this_turn.total()))
    }

    fn budget_spent(&self, view: &AgentView<'_>, this_turn: Usage, limit: u64) -> String {
        format!(
            "token budget of {limit} tokens spent: the session has used {} ({} prompt + {} completion in this turn); raise `token_budget` under `agent:` in ward.yaml, or go on without the model",
            self.used(view, this_turn),
            this_turn.prompt_tokens,
            this_turn.completion_tokens
        )
    }

    fn remaining(&self, started: Instant) -> Duration {
        self.cfg
            .wall_time
            .saturating_sub(self.busy + started.elapsed())
    }

    /// Turns the model's answer into a proposal, or records why not (the
    /// error goes back to the model on the next request). `Err` stops the
    /// agent.
    fn answer(
        &mut self,
        view: &AgentView<'_>,
        specs: &[tools::ToolSpec],
        message: Option<ChatCompletionResponseMessage>,
        notes: &mut Vec<String>,
    ) -> Result<Option<Proposal>, Repeated> {
        let (content, raw_calls, refusal) = match message {
            Some(m) => (m.content, m.tool_calls.unwrap_or_default(), m.refusal),
            None => (None, Vec::new(), None),
        };
        let content = content
            .map(|c| without_thinking(&c).trim().to_string())
            .filter(|c| !c.is_empty())
            .map(|c| truncate(&c, MAX_RATIONALE_CHARS));
        if raw_calls.is_empty() {
            let said = match (&refusal, &content) {
                (Some(r), _) => format!(" (it refused: {})", quote(r)),
                (None, Some(_)) => " (it answered in text)".to_string(),
                (None, None) => " (its answer was empty)".to_string(),
            };
            notes.push(format!("the model did not call a tool{said}"));
            self.history.push(Item::Exchange(Exchange {
                content,
                calls: Vec::new(),
                nudge: Some(
                    "ward acts only on tool calls, and your answer had none. Call exactly one tool: `run_step` with a step of the runbook, or `conclude` with your diagnosis."
                        .into(),
                ),
            }));
            self.streak = None;
            return Ok(None);
        }
        let mut chosen: Option<(Proposal, String)> = None;
        let mut first_signature = None;
        let mut calls = Vec::new();
        for raw in raw_calls {
            let (id, name, arguments, custom) = match raw {
                ChatCompletionMessageToolCalls::Function(c) => {
                    (c.id, c.function.name, c.function.arguments, false)
                }
                ChatCompletionMessageToolCalls::Custom(c) => {
                    (c.id, c.custom_tool.name, c.custom_tool.input, true)
                }
            };
            let id = if id.trim().is_empty() {
                self.unnamed_calls += 1;
                format!("ward_call_{}", self.unnamed_calls)
            } else {
                id
            };
            let signature = format!("{name}({})", canonical_arguments(&arguments));
            first_signature.get_or_insert_with(|| signature.clone());
            let answer = if let Some((_, taken)) = &chosen {
                Answer::Refused(format!(
                    "one call at a time: ward acted on your call of `{taken}` in this message and ignored this one; make it again later if you still need it"
                ))
            } else if custom {
                Answer::Refused(format!(
                    "`{name}` came as a custom tool call; ward's tools are functions: call one of them"
                ))
            } else {
                match parse(view, specs, &name, &arguments, content.as_deref()) {
                    Ok(proposal) => {
                        chosen = Some((proposal.clone(), name.clone()));
                        first_signature = Some(signature);
                        Answer::Accepted {
                            proposal,
                            link: Link::Pending,
                        }
                    }
                    Err(e) => Answer::Refused(e.to_string()),
                }
            };
            if let Answer::Refused(e) = &answer {
                notes.push(format!("tool call `{name}` refused: {e}"));
            }
            calls.push(Call {
                id,
                name,
                arguments,
                answer,
            });
        }
        self.history.push(Item::Exchange(Exchange {
            content,
            calls,
            nudge: None,
        }));
        if let Some(signature) = first_signature {
            let count = match &self.streak {
                Some((last, n)) if *last == signature => n + 1,
                _ => 1,
            };
            if count >= REPEAT_LIMIT {
                return Err(Repeated {
                    call: truncate(&signature, 200),
                    count,
                });
            }
            self.streak = Some((signature, count));
        }
        Ok(chosen.map(|(p, _)| p))
    }

    /// Scrubs the key from everything that leaves, and remembers what was
    /// reported.
    fn finish(&mut self, result: Result<Turn, AgentFailure>) -> Result<Turn, AgentFailure> {
        let key = self.cfg.api_key.expose().to_string();
        let clean = |s: String| scrub(&s, &key);
        match result {
            Ok(mut t) => {
                t.notes = t.notes.into_iter().map(clean).collect();
                match &mut t.proposal {
                    Proposal::Step {
                        rationale: Some(r), ..
                    } => *r = scrub(r, &key),
                    Proposal::Adhoc { reason, .. } => *reason = scrub(reason, &key),
                    _ => {}
                }
                self.reported = t.notes.clone();
                Ok(t)
            }
            Err(mut f) => {
                f.message = clean(f.message);
                f.notes = f.notes.into_iter().map(clean).collect();
                self.reported = f.notes.clone();
                self.reported.push(f.message.clone());
                Err(f)
            }
        }
    }
}

impl Agent for OpenAi {
    fn handed_off(&mut self) {
        // The next runbook's conversation: its system prompt comes from the
        // view; the old exchanges name proposals it does not see.
        self.history.clear();
        self.streak = None;
    }

    fn token_budget(&self) -> Option<u64> {
        Some(self.config().token_budget)
    }

    fn describe(&self) -> Value {
        json!({
            "provider": "openai",
            "model": self.cfg.model,
            "base_url": display_url(&self.cfg.base_url),
        })
    }

    fn next<'a>(&'a mut self, view: &'a AgentView<'a>) -> AgentFuture<'a> {
        Box::pin(async move {
            let started = Instant::now();
            let result = self.turn(view, started).await;
            self.busy += started.elapsed();
            self.finish(result)
        })
    }
}

/// A tool call as a proposal, or what is wrong with it.
fn parse(
    view: &AgentView<'_>,
    specs: &[tools::ToolSpec],
    name: &str,
    arguments: &str,
    content: Option<&str>,
) -> Result<Proposal, CallError> {
    let offered = specs.iter().any(|t| t.name == name);
    if !offered && name.to_ascii_lowercase().contains("approv") {
        return Err(CallError::Approval);
    }
    // The adhoc tool's `reason` may come as the message's text instead.
    let arguments = match (name, content) {
        (ADHOC_TOOL, Some(text)) => match serde_json::from_str::<Value>(arguments) {
            Ok(Value::Object(mut args))
                if args
                    .get("reason")
                    .and_then(Value::as_str)
                    .is_none_or(|r| r.trim().is_empty()) =>
            {
                args.insert("reason".into(), Value::String(text.to_string()));
                Value::Object(args).to_string()
            }
            _ => arguments.to_string(),
        },
        _ => arguments.to_string(),
    };
    // A step's own name is still taken (as the MCP server offers them);
    // the tools sent are `run_step`, `conclude` and maybe `adhoc_query`.
    let parsed = if name == tools::RUN_STEP_TOOL {
        tools::parse_run_step(view.contract, &arguments)?
    } else {
        tools::parse_call(view.contract, name, &arguments)?
    };
    match parsed {
        Proposal::Step {
            step_id, inputs, ..
        } => Ok(Proposal::Step {
            step_id,
            inputs,
            rationale: content.map(str::to_string),
        }),
        other => Ok(other),
    }
}

/// The arguments as JSON with sorted keys (or the text as sent), so that
/// two calls that differ only in key order are the same call.
fn canonical_arguments(arguments: &str) -> String {
    fn sort(v: Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut pairs: Vec<(String, Value)> = m.into_iter().collect();
                pairs.sort_by(|a, b| a.0.cmp(&b.0));
                Value::Object(pairs.into_iter().map(|(k, v)| (k, sort(v))).collect())
            }
            Value::Array(a) => Value::Array(a.into_iter().map(sort).collect()),
            other => other,
        }
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v) => sort(v).to_string(),
        Err(_) => arguments.trim().to_string(),
    }
}

/// The text after a reasoning model's `<think>...</think>` block (vLLM,
/// Ollama and llama.cpp pass it through in the content): the rationale is
/// what the model says, not how it got there.
fn without_thinking(text: &str) -> &str {
    let trimmed = text.trim_start();
    match (trimmed.strip_prefix("<think>"), trimmed.find("</think>")) {
        (Some(_), Some(end)) => &trimmed[end + "</think>".len()..],
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_that_differ_only_in_key_order_are_the_same_call() {
        assert_eq!(
            canonical_arguments(r#"{"b": 1, "a": {"d": 2, "c": 3}}"#),
            canonical_arguments(r#"{"a":{"c":3,"d":2},"b":1}"#)
        );
        assert_eq!(canonical_arguments(" {broken "), "{broken");
    }

    #[test]
    fn a_reasoning_models_thinking_is_not_its_rationale() {
        assert_eq!(
            without_thinking("<think>\nthe user wants...\n</think>\n\nStart with the headline."),
            "\n\nStart with the headline."
        );
        assert_eq!(without_thinking("no <think> here"), "no <think> here");
        assert_eq!(without_thinking("<think>unfinished"), "<think>unfinished");
    }
}
