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
use std::path::{Path, PathBuf};

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

/// A transcript that cannot be played. Errors of a file name it; the
/// position is `line:column` of the YAML, or the turn's number.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    #[error("{}: cannot read the transcript: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}{line}:{column}: {source}", file(path))]
    Syntax {
        path: Option<PathBuf>,
        line: usize,
        column: usize,
        source: serde_yaml::Error,
    },
    #[error(
        "{}turn {turn}: give exactly one of step, adhoc, ask, conclude or tool",
        file(path)
    )]
    Turn { path: Option<PathBuf>, turn: usize },
}

/// `path:` before a position, or nothing for text that came from no file.
fn file(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!("{}:", p.display()))
        .unwrap_or_default()
}

impl TranscriptError {
    /// The same error, in the file at `at`.
    fn in_file(self, at: &Path) -> TranscriptError {
        match self {
            TranscriptError::Syntax {
                line,
                column,
                source,
                ..
            } => TranscriptError::Syntax {
                path: Some(at.to_path_buf()),
                line,
                column,
                source,
            },
            TranscriptError::Turn { turn, .. } => TranscriptError::Turn {
                path: Some(at.to_path_buf()),
                turn,
            },
            read @ TranscriptError::Read { .. } => read,
        }
    }
}

impl Transcript {
    /// Reads a transcript; errors name the file, line and column.
    pub fn load(path: &Path) -> Result<Transcript, TranscriptError> {
        let text = std::fs::read_to_string(path).map_err(|source| TranscriptError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Transcript::parse(&text).map_err(|e| e.in_file(path))
    }

    /// Parses a transcript; the error starts with `line:column: `.
    pub fn parse(text: &str) -> Result<Transcript, TranscriptError> {
        let t: Transcript = serde_yaml::from_str(text).map_err(|source| {
            let (line, column) = source.location().map_or((1, 1), |l| (l.line(), l.column()));
            TranscriptError::Syntax {
                path: None,
                line,
                column,
                source,
            }
        })?;
        t.validate()?;
        Ok(t)
    }

    /// Each turn must be exactly one action.
    pub fn validate(&self) -> Result<(), TranscriptError> {
        for (i, turn) in self.turns.iter().enumerate() {
            let kinds = [
                turn.step.is_some(),
                turn.adhoc.is_some(),
                turn.ask.is_some(),
                turn.conclude.is_some(),
                turn.tool.is_some(),
            ];
            if kinds.iter().filter(|k| **k).count() != 1 {
                return Err(TranscriptError::Turn {
                    path: None,
                    turn: i + 1,
                });
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
        assert!(
            matches!(
                err,
                TranscriptError::Turn {
                    path: None,
                    turn: 2
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "turn 2: give exactly one of step, adhoc, ask, conclude or tool"
        );
    }

    #[test]
    fn an_unknown_key_is_refused_with_line_and_column() {
        let err = Transcript::parse("turns:\n  - stpe: a\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("2:"), "{text}");
        assert!(text.contains("stpe"), "{text}");
        assert!(
            matches!(err, TranscriptError::Syntax { line: 2, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn a_bad_transcript_file_is_named_with_line_and_column() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.yaml");
        std::fs::write(&path, "turns:\n  - step: a\n    stpe: b\n").expect("write");
        let err = Transcript::load(&path).unwrap_err();
        let TranscriptError::Syntax {
            path: Some(at),
            line,
            column,
            ..
        } = &err
        else {
            panic!("not a syntax error in the file: {err:?}");
        };
        assert_eq!((at, *line, *column), (&path, 3, 5));
        assert!(
            err.to_string()
                .starts_with(&format!("{}:3:5: ", path.display())),
            "{err}"
        );

        std::fs::write(&path, "turns:\n  - {}\n").expect("write");
        assert_eq!(
            Transcript::load(&path).unwrap_err().to_string(),
            format!(
                "{}:turn 1: give exactly one of step, adhoc, ask, conclude or tool",
                path.display()
            )
        );

        let missing = dir.path().join("none.yaml");
        let err = Transcript::load(&missing).unwrap_err();
        assert!(
            matches!(&err, TranscriptError::Read { path, source } if *path == missing && source.kind() == std::io::ErrorKind::NotFound),
            "{err:?}"
        );
    }
}
