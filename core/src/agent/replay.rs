//! `replay:FILE`: a scripted transcript for tests, demos and `ward test`.
//!
//! A transcript is YAML (or JSON): a list of turns, each either a proposal
//! written out (`step`, `adhoc`, `ask`, `conclude`) or a raw tool call as a
//! model would send it (`tool` + `arguments` as a JSON string), which goes
//! through exactly the validation a real model's call does. A bad raw call
//! is logged as an agent error and the next turn is played. When the
//! transcript runs out the agent fails, and the session goes on with the
//! offline planner.
//!
//! ```yaml
//! turns:
//!   - step: connection_summary
//!     rationale: start with who is connected
//!   - tool: terminate_idle
//!     arguments: '{"min_idle_seconds": 60}'
//!     usage: { prompt_tokens: 900, completion_tokens: 40 }
//!   - conclude: Idle connections exhaust the pool.
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Agent, AgentFailure, AgentFuture, AgentView, Proposal, Turn, Usage, tools};

/// One scripted turn.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedTurn {
    #[serde(default)]
    pub step: Option<String>,
    #[serde(default)]
    pub inputs: BTreeMap<String, Value>,
    #[serde(default)]
    pub rationale: Option<String>,
    #[serde(default)]
    pub adhoc: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub ask: Option<String>,
    #[serde(default)]
    pub conclude: Option<String>,
    #[serde(default)]
    pub recommendation: Option<String>,
    /// A raw tool call: the function name...
    #[serde(default)]
    pub tool: Option<String>,
    /// ...and its arguments as the JSON text a model sends.
    #[serde(default)]
    pub arguments: Option<String>,
    #[serde(default)]
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transcript {
    #[serde(default)]
    pub model: Option<String>,
    pub turns: Vec<ScriptedTurn>,
}

impl Transcript {
    /// Reads a transcript; errors name the file, line and column.
    pub fn load(path: &Path) -> Result<Transcript, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read the transcript: {e}", path.display()))?;
        Transcript::parse(&text).map_err(|e| format!("{}:{e}", path.display()))
    }

    /// Parses a transcript; the error starts with `line:column: `.
    pub fn parse(text: &str) -> Result<Transcript, String> {
        let t: Transcript = serde_yaml::from_str(text).map_err(|e| match e.location() {
            Some(l) => format!("{}:{}: {e}", l.line(), l.column()),
            None => format!("1:1: {e}"),
        })?;
        t.validate()?;
        Ok(t)
    }

    /// Each turn must be exactly one action.
    pub fn validate(&self) -> Result<(), String> {
        for (i, turn) in self.turns.iter().enumerate() {
            let kinds = [
                turn.step.is_some(),
                turn.adhoc.is_some(),
                turn.ask.is_some(),
                turn.conclude.is_some(),
                turn.tool.is_some(),
            ];
            if kinds.iter().filter(|k| **k).count() != 1 {
                return Err(format!(
                    "turn {}: give exactly one of step, adhoc, ask, conclude or tool",
                    i + 1
                ));
            }
        }
        Ok(())
    }
}

/// Plays a transcript, one turn per call.
#[derive(Debug, Clone)]
pub struct Replay {
    transcript: Transcript,
    next: usize,
    /// Turns a resumed session had already answered, skipped on the next
    /// call (which knows the contract, and so which raw calls were refused).
    to_skip: usize,
    source: String,
}

impl Replay {
    pub fn new(transcript: Transcript, source: impl Into<String>) -> Replay {
        Replay {
            transcript,
            next: 0,
            to_skip: 0,
            source: source.into(),
        }
    }

    /// Skips the first `n` answered turns (a resumed session has played
    /// them): each is a scripted turn that gave a proposal, after the raw
    /// tool calls before it that were refused.
    pub fn skip(&mut self, n: usize) {
        self.to_skip += n;
    }

    fn skip_answered(&mut self, contract: &crate::contract::Contract) {
        while self.to_skip > 0 {
            let Some(t) = self.transcript.turns.get(self.next) else {
                return;
            };
            self.next += 1;
            let refused = t.tool.as_deref().is_some_and(|name| {
                tools::parse_call(contract, name, t.arguments.as_deref().unwrap_or_default())
                    .is_err()
            });
            if !refused {
                self.to_skip -= 1;
            }
        }
    }

    fn turn(&mut self, view: &AgentView<'_>) -> Result<Turn, AgentFailure> {
        self.skip_answered(view.contract);
        let mut notes = Vec::new();
        let mut usage = Usage::default();
        while let Some(t) = self.transcript.turns.get(self.next).cloned() {
            self.next += 1;
            if let Some(u) = t.usage {
                usage.prompt_tokens += u.prompt_tokens;
                usage.completion_tokens += u.completion_tokens;
            }
            let proposal = if let Some(step_id) = t.step {
                Proposal::Step {
                    step_id,
                    inputs: t.inputs,
                    rationale: t.rationale,
                }
            } else if let Some(sql) = t.adhoc {
                Proposal::Adhoc {
                    sql,
                    reason: t.reason.unwrap_or_default(),
                }
            } else if let Some(question) = t.ask {
                Proposal::Ask { question }
            } else if let Some(diagnosis) = t.conclude {
                Proposal::Conclude {
                    diagnosis,
                    recommendation: t.recommendation,
                }
            } else {
                let name = t.tool.unwrap_or_default();
                let args = t.arguments.unwrap_or_default();
                match tools::parse_call(view.contract, &name, &args) {
                    Ok(Proposal::Step {
                        step_id, inputs, ..
                    }) => Proposal::Step {
                        step_id,
                        inputs,
                        rationale: t.rationale,
                    },
                    Ok(p) => p,
                    Err(e) => {
                        notes.push(format!("tool call `{name}` refused: {e}"));
                        continue;
                    }
                }
            };
            return Ok(Turn {
                proposal,
                usage,
                notes,
            });
        }
        Err(AgentFailure {
            message: format!("the transcript {} has no more turns", self.source),
            usage,
            notes,
        })
    }
}

impl Agent for Replay {
    fn describe(&self) -> Value {
        json!({"provider": "replay", "model": self.transcript.model, "transcript": self.source})
    }

    fn next<'a>(&'a mut self, view: &'a AgentView<'a>) -> AgentFuture<'a> {
        let turn = self.turn(view);
        Box::pin(async move { turn })
    }

    fn skip_turns(&mut self, turns: usize) {
        self.skip(turns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_with_two_actions_is_refused_with_its_number() {
        let err =
            Transcript::parse("turns:\n  - step: a\n  - step: b\n    conclude: x\n").unwrap_err();
        assert_eq!(
            err,
            "turn 2: give exactly one of step, adhoc, ask, conclude or tool"
        );
    }

    #[test]
    fn an_unknown_key_is_refused_with_line_and_column() {
        let err = Transcript::parse("turns:\n  - stpe: a\n").unwrap_err();
        assert!(err.starts_with("2:"), "{err}");
        assert!(err.contains("stpe"), "{err}");
    }
}
