//! Token economy: per example runbook, the tokens a model would be sent
//! over a whole session when tool results carry ward's summaries, against
//! the same session when they carry the raw rows. No model is called.
//!
//!     cargo bench --bench tokens
//!
//! Each runbook's session is its main scenario (fixtures/scenarios/<id>.yaml)
//! run through the real runner, gate and summarizers with the offline
//! planner, approving what the scenario approves. The OpenAI agent's own
//! request builder then renders, for every turn of that session (one per
//! proposal, and one to conclude), the request a model would receive: the
//! system prompt, the tools and the conversation so far. Tokens are counted
//! as ward counts them for its budgets: bytes / 4, rounded up. The raw
//! variant renders the same requests with each result's evidence replaced
//! by the step's rows as JSON, one row per line, and no facts.
//!
//! Two sizes of evidence: the rows as recorded in the scenario, and the same
//! session at scale, where every step that returned several rows returns
//! its `max_rows` cap (the recorded rows repeated): what the raw variant
//! would send on a big, busy server, where the summaries stay bounded.
//!
//! Besides the tokens sent, it counts those a provider's prompt cache would
//! not serve (the prompt laid out as tools then messages, the prefix shared
//! with an earlier request of the session served by OpenAI's rule), and the
//! same for the other layout it was weighed against: tools cut to the steps
//! that can run now (the `run_step` tool's `step` enum narrowed to them),
//! instead of every step and a last message naming them.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use ward::agent::openai::{ApiKey, OpenAi, OpenAiConfig};
use ward::agent::{AgentView, Budget};
use ward::config::Config;
use ward::contract::{self, Contract};
use ward::evidence::estimate_tokens;
use ward::scenario::{self, Repo, Scenario};
use ward::session::SessionState;

/// Whether the scenario's expectations must hold.
#[derive(PartialEq, Eq, Clone, Copy)]
enum Strict {
    Yes,
    No,
}

struct Session {
    turns: usize,
    summarized: usize,
    /// Of `summarized`, the tokens a provider's prompt cache would not
    /// serve (see [`cacheable`]).
    uncached: usize,
    /// The same requests if the tool list were cut to the steps that can
    /// run now (instead of naming them in the last message): tokens sent,
    /// and of those, not served by a prompt cache.
    filtered: usize,
    filtered_uncached: usize,
    raw: usize,
    /// The tool results alone (evidence, facts, verdicts, provenance).
    summarized_results: usize,
    raw_results: usize,
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = Config::discover(root).expect("ward.yaml loads");
    let analyzer = config.runbook_analyzer();
    let (contracts, problems) = contract::load_dir(&config.runbooks, &analyzer);
    assert!(problems.is_empty(), "{problems:?}");
    let policy = config.active_policy().expect("policy loads");
    let logs = tempfile::tempdir().expect("temp dir");
    let repo = Repo {
        config: &config,
        contracts: &contracts,
        policy: &policy,
        operators: None,
        analyzer: &analyzer,
        log_dir: logs.path(),
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    let agent = OpenAi::new(OpenAiConfig::new(
        "gpt-4o",
        "http://127.0.0.1:9/v1",
        ApiKey::new("sk-bench-not-sent").expect("key"),
    ))
    .expect("agent");

    println!(
        "{:<30} {:>5} | {:>9} {:>9} {:>9} {:>6} | {:>9} {:>10} {:>6} | {:>7}",
        "runbook (main scenario)",
        "turns",
        "summaries",
        "uncached",
        "raw rows",
        "ratio",
        "at scale",
        "raw scale",
        "ratio",
        "results"
    );
    let mut totals = [0usize; 5];
    let mut ab = [0usize; 4];
    let mut mins = (f64::MAX, f64::MAX);
    for c in &contracts {
        let path = root.join(format!("fixtures/scenarios/{}.yaml", c.id()));
        let s = Scenario::load(&path).expect("scenario loads");
        let recorded = measure(&runtime, &agent, &repo, c, &s, Strict::Yes);
        let at_scale = measure(&runtime, &agent, &repo, c, &scaled(&s, c), Strict::No);
        let ratio = recorded.raw as f64 / recorded.summarized as f64;
        let ratio_scale = at_scale.raw as f64 / at_scale.summarized as f64;
        let results = at_scale.raw_results as f64 / at_scale.summarized_results.max(1) as f64;
        println!(
            "{:<30} {:>5} | {:>9} {:>9} {:>9} {:>5.1}x | {:>9} {:>10} {:>5.1}x | {:>6.1}x",
            c.id(),
            recorded.turns,
            recorded.summarized,
            recorded.uncached,
            recorded.raw,
            ratio,
            at_scale.summarized,
            at_scale.raw,
            ratio_scale,
            results,
        );
        totals[0] += recorded.summarized;
        totals[1] += recorded.raw;
        totals[2] += at_scale.summarized;
        totals[3] += at_scale.raw;
        totals[4] += recorded.uncached;
        ab[0] += recorded.summarized;
        ab[1] += recorded.uncached;
        ab[2] += recorded.filtered;
        ab[3] += recorded.filtered_uncached;
        mins.0 = mins.0.min(ratio);
        mins.1 = mins.1.min(ratio_scale);
    }
    println!(
        "{:<30} {:>5} | {:>9} {:>9} {:>9} {:>5.1}x | {:>9} {:>10} {:>5.1}x |",
        "all runbooks",
        "",
        totals[0],
        totals[4],
        totals[1],
        totals[1] as f64 / totals[0] as f64,
        totals[2],
        totals[3],
        totals[3] as f64 / totals[2] as f64,
    );
    println!(
        "lowest ratio: {:.1}x as recorded, {:.1}x at scale (target: 10x); \"results\" is the ratio of the tool results alone, at scale",
        mins.0, mins.1
    );
    println!(
        "as recorded, all runbooks: every step's tool, steps that can run now in the last message: {} sent, {} uncached; tools of the steps that can run now only: {} sent, {} uncached",
        ab[0], ab[1], ab[2], ab[3]
    );
    println!(
        "\"uncached\": of the summaries' tokens, those a prompt cache would not serve (a prefix shared with an earlier request of the session, from 1,024 tokens on, in steps of 128)"
    );
}

/// Runs `s` and counts the tokens of every request of its session, with
/// summaries and with raw rows.
fn measure(
    runtime: &tokio::runtime::Runtime,
    agent: &OpenAi,
    repo: &Repo<'_>,
    c: &Contract,
    s: &Scenario,
    strict: Strict,
) -> Session {
    let report = runtime.block_on(scenario::run(s, repo));
    // At scale the counts in the scenario's expectations change; the
    // session must still have run to its end.
    assert!(
        report.passed() || (strict == Strict::No && report.outcome.is_some()),
        "{}: {:?}",
        s.path.display(),
        report.failures
    );
    let state = report.state;
    let raw_state = with_raw_rows(&state, s);
    let mut out = Session {
        turns: state.proposals.len() + 1,
        summarized: 0,
        uncached: 0,
        filtered: 0,
        filtered_uncached: 0,
        raw: 0,
        summarized_results: 0,
        raw_results: 0,
    };
    // One request before each proposal, and one that concludes.
    let mut earlier: Vec<String> = Vec::new();
    let mut earlier_filtered: Vec<String> = Vec::new();
    for k in 0..=state.proposals.len() {
        let (a, ra, prompt, filtered) = request_tokens(agent, c, &state, &s.spec.inputs, k);
        let (b, rb, _, _) = request_tokens(agent, c, &raw_state, &s.spec.inputs, k);
        out.uncached += a.saturating_sub(cached(&earlier, &prompt));
        earlier.push(prompt);
        let f = estimate_tokens(&filtered.to_string());
        let prompt = prompt_text(&filtered);
        out.filtered += f;
        out.filtered_uncached += f.saturating_sub(cached(&earlier_filtered, &prompt));
        earlier_filtered.push(prompt);
        out.summarized += a;
        out.raw += b;
        out.summarized_results += ra;
        out.raw_results += rb;
    }
    out
}

/// Tokens of `prompt` a cache of the `earlier` prompts would serve.
fn cached(earlier: &[String], prompt: &str) -> usize {
    let shared = earlier
        .iter()
        .map(|e| common_prefix(e, prompt))
        .max()
        .unwrap_or(0);
    cacheable(estimate_tokens(&prompt[..shared]))
}

/// Bytes `a` and `b` share from their start (on a character boundary).
fn common_prefix(a: &str, b: &str) -> usize {
    let n = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    (0..=n).rev().find(|&i| b.is_char_boundary(i)).unwrap_or(0)
}

/// Of a prefix of `tokens` shared with an earlier request, what a prompt
/// cache serves: OpenAI's rule, nothing under 1,024 tokens, then in steps
/// of 128 (Anthropic's and vLLM's block caches work alike).
fn cacheable(tokens: usize) -> usize {
    if tokens < 1024 {
        0
    } else {
        tokens - (tokens - 1024) % 128
    }
}

/// The prompt as a provider lays it out for its cache: the tool
/// definitions, then the messages in order (system prompt first).
fn prompt_text(body: &Value) -> String {
    let mut out = body["tools"].to_string();
    for m in body["messages"].as_array().into_iter().flatten() {
        out.push('\n');
        out.push_str(&m.to_string());
    }
    out
}

/// Tokens of the request a model receives after the first `k` proposals,
/// of its tool results alone, the prompt as a cache sees it, and the
/// request as it would be with the tool list cut to the steps that can
/// run now (and no last message saying which).
fn request_tokens(
    agent: &OpenAi,
    c: &Contract,
    state: &SessionState,
    inputs: &BTreeMap<String, Value>,
    k: usize,
) -> (usize, usize, String, Value) {
    let mut upto = state.clone();
    upto.proposals.truncate(k);
    let inputs = serde_json::to_value(inputs).expect("inputs");
    let view = AgentView {
        contract: c,
        state: &upto,
        inputs: &inputs,
        environment: &state.environment,
        policy_brief: "reads run; writes and schema changes wait for a human",
        budget: Budget::default(),
    };
    let body = agent.request_json(&view);
    if std::env::var_os("WARD_TOKENS_DUMP").is_some() && k == state.proposals.len() {
        println!(
            "{}",
            serde_json::to_string_pretty(&body).unwrap_or_default()
        );
    }
    let results: usize = body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| estimate_tokens(m["content"].as_str().unwrap_or("")))
        .sum();
    let mut filtered = body.clone();
    let ready: Vec<String> = ward::agent::offline::runnable(&view)
        .into_iter()
        .map(|r| r.step)
        .collect();
    if let Some(tools) = filtered["tools"].as_array_mut() {
        tools.retain(|t| {
            let name = t["function"]["name"].as_str().unwrap_or("");
            c.step(name).is_none() || ready.iter().any(|r| r == name)
        });
        // One generic tool for every step: its `step` enum is what
        // narrows (and the tool goes when no step can run).
        for t in tools.iter_mut() {
            if t["function"]["name"] == ward::agent::tools::RUN_STEP_TOOL
                && let Some(ids) =
                    t["function"]["parameters"]["properties"]["step"]["enum"].as_array_mut()
            {
                ids.retain(|id| ready.iter().any(|r| id == r.as_str()));
            }
        }
        tools.retain(|t| {
            t["function"]["name"] != ward::agent::tools::RUN_STEP_TOOL
                || t["function"]["parameters"]["properties"]["step"]["enum"]
                    .as_array()
                    .is_some_and(|ids| !ids.is_empty())
        });
    }
    if let Some(messages) = filtered["messages"].as_array_mut()
        && let Some(last) = messages.last_mut()
        && let Some(text) = last["content"].as_str()
    {
        match text.rsplit_once("\n\nCan run now: ") {
            Some((before, _)) => last["content"] = Value::String(before.to_string()),
            None if text.starts_with("Can run now: ") => {
                messages.pop();
            }
            None => {}
        }
    }
    (
        estimate_tokens(&body.to_string()),
        results,
        prompt_text(&body),
        filtered,
    )
}

/// The session with each step's evidence replaced by its raw rows.
fn with_raw_rows(state: &SessionState, s: &Scenario) -> SessionState {
    let mut raw = state.clone();
    for p in &mut raw.proposals {
        let Some(step) = p.step_id.as_deref() else {
            continue;
        };
        let Some(rows) = s.spec.evidence.get(step).map(|e| &e.rows) else {
            continue;
        };
        if p.summary.is_none() {
            continue;
        }
        let lines: Vec<String> = rows
            .iter()
            .map(|r| serde_json::to_string(r).expect("row"))
            .collect();
        p.summary = Some(lines.join("\n"));
        p.facts = None;
    }
    raw
}

/// The scenario with every multi-row step returning its `max_rows` cap.
fn scaled(s: &Scenario, c: &Contract) -> Scenario {
    let mut big = s.clone();
    for (step, e) in &mut big.spec.evidence {
        let Some(cap) = c.step(step).and_then(|st| st.spec.max_rows) else {
            continue;
        };
        let cap = usize::try_from(cap).unwrap_or(usize::MAX).min(10_000);
        if e.rows.len() < 2 || e.rows.len() >= cap {
            continue;
        }
        let base = e.rows.clone();
        e.rows = base.iter().cycle().take(cap).cloned().collect();
    }
    big
}
