//! `ward test`: scenario files that run a runbook headless against recorded
//! evidence (no database) or a ward.yaml target, with a pinned clock and an
//! optional scripted agent, and check the verdicts, what executed, what was
//! verified and the conclusion. Runbook and policy authors unit-test their
//! changes with them in CI.
//!
//! A scenario is driven through the same runner and the same queue pair as
//! every other session; its "human" approves (from distinct operators), or
//! rejects, exactly the steps the scenario names and leaves the rest
//! waiting. It never approves anything else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::agent::Agent;
use crate::agent::offline::Offline;
use crate::agent::replay::{Replay, ScriptedTurn, Transcript};
use crate::config::Config;
use crate::contract::Contract;
use crate::diag::{Location, Problem};
use crate::exec::Target;
use crate::exec::step::Origin;
use crate::policy::Policy;
use crate::session::events::{AdmitKind, DecisionKind, EventData};
use crate::session::runner::{self, Op, Outcome, RecordedStep, RunConfig};
use crate::session::{SessionState, Status};
use crate::sql::Analyzer;
use crate::yaml::Doc;

/// One scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSpec {
    /// What the scenario shows, for the report.
    pub name: String,
    pub runbook: String,
    /// Environment of the (recorded) target; default `prod`.
    #[serde(default = "prod")]
    pub environment: String,
    /// The gate's clock, RFC 3339 (policies with time windows depend on it).
    #[serde(default)]
    pub clock: Option<DateTime<Utc>>,
    #[serde(default)]
    pub inputs: BTreeMap<String, Value>,
    /// A ward.yaml target to run against instead of recorded evidence.
    #[serde(default)]
    pub target: Option<String>,
    /// The platform of the (recorded) target (`rds`, `cloudsql`, ...);
    /// default: the ward.yaml target's, else self-managed. Steps that do
    /// not work there are left out, as in a real session.
    #[serde(default)]
    pub platform: Option<crate::platform::Platform>,
    /// Recorded evidence per step id.
    #[serde(default)]
    pub evidence: BTreeMap<String, RecordedStep>,
    /// A scripted agent (the turns of a replay transcript); default: the
    /// offline planner.
    #[serde(default)]
    pub transcript: Option<Vec<ScriptedTurn>>,
    #[serde(default)]
    pub dry_run: bool,
    /// Steps the scenario's humans approve (as many distinct operators as
    /// the verdict needs).
    #[serde(default)]
    pub approve: Vec<String>,
    /// Steps the scenario's human rejects, with the reason.
    #[serde(default)]
    pub reject: BTreeMap<String, String>,
    pub expect: Expect,
}

fn prod() -> String {
    "prod".into()
}

/// What must be true when the session ends. Every field is optional; a
/// scenario checks what it names.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// concluded, persists, awaiting_approval, denied, failed.
    #[serde(default)]
    pub outcome: Option<String>,
    /// Step id -> allow | approve | deny (the gate's decision).
    #[serde(default)]
    pub verdicts: BTreeMap<String, String>,
    /// Exactly the steps that executed, in order.
    #[serde(default)]
    pub executed: Option<Vec<String>>,
    /// Steps that must not have been proposed.
    #[serde(default)]
    pub not_proposed: Vec<String>,
    /// Step id -> whether its verify held.
    #[serde(default)]
    pub verified: BTreeMap<String, bool>,
    #[serde(default)]
    pub conclusion_contains: Vec<String>,
    /// Text the recommendation (what ran, what persists) must contain.
    #[serde(default)]
    pub recommendation_contains: Vec<String>,
    /// Step id -> rule ids that must be among the matched rules.
    #[serde(default)]
    pub rules: BTreeMap<String, Vec<String>>,
    /// The runbook the conclusion hands off to (`next`); `none`: it names
    /// none.
    #[serde(default)]
    pub next_runbook: Option<String>,
    /// Inputs the hand-off passes on, each with its value as text.
    #[serde(default)]
    pub next_inputs: BTreeMap<String, String>,
}

/// A loaded scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub path: PathBuf,
    pub spec: ScenarioSpec,
}

impl Scenario {
    /// Reads a scenario; errors name the file, line and column.
    pub fn load(path: &Path) -> Result<Scenario, Problem> {
        let doc = Doc::read(path)?;
        let spec: ScenarioSpec = doc.parse()?;
        if spec.evidence.is_empty() && spec.target.is_none() {
            return Err(Problem::new(
                Location::start_of(path),
                "give recorded `evidence` per step, or a ward.yaml `target` to run against",
            ));
        }
        if let Some(turns) = &spec.transcript {
            Transcript {
                model: None,
                turns: turns.clone(),
            }
            .validate()
            .map_err(|e| {
                Problem::new(
                    doc.key_at(&[crate::yaml::Seg::Key("transcript")]),
                    e.to_string(),
                )
            })?;
        }
        Ok(Scenario {
            path: path.to_path_buf(),
            spec,
        })
    }
}

/// Every `*.yaml` / `*.yml` under the given paths (files or directories),
/// sorted.
pub fn find(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Problem> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            out.extend(crate::contract::yaml_files(p)?);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            return Err(Problem::new(
                Location::start_of(p),
                "no such file or directory",
            ));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// How a scenario went.
#[derive(Debug, Clone)]
pub struct Report {
    pub name: String,
    pub path: PathBuf,
    /// What did not match; empty when the scenario passed.
    pub failures: Vec<String>,
    pub outcome: Option<Outcome>,
    pub state: SessionState,
    pub log: PathBuf,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// What a scenario run needs from the repository.
pub struct Repo<'a> {
    pub config: &'a Config,
    pub contracts: &'a [Contract],
    pub policy: &'a Policy,
    /// Who holds which approver role (`policies/operators.yaml`).
    pub operators: Option<&'a crate::policy::operators::Operators>,
    pub analyzer: &'a Analyzer,
    /// Where session logs go.
    pub log_dir: &'a Path,
}

/// Runs one scenario to its end and checks its expectations.
pub async fn run(s: &Scenario, repo: &Repo<'_>) -> Report {
    let spec = &s.spec;
    let name = spec.name.clone();
    let stem = s
        .path
        .file_stem()
        .map(|x| x.to_string_lossy().into_owned())
        .unwrap_or_else(|| "scenario".into());
    let log = repo.log_dir.join(format!("{stem}.jsonl"));
    let report = |failures: Vec<String>, outcome, state| Report {
        name: name.clone(),
        path: s.path.clone(),
        failures,
        outcome,
        state,
        log: log.clone(),
    };
    let Some(contract) = repo.contracts.iter().find(|c| c.id() == spec.runbook) else {
        return report(
            vec![format!(
                "no runbook `{}` loads; run `ward check`",
                spec.runbook
            )],
            None,
            SessionState::default(),
        );
    };
    let target = match &spec.target {
        Some(t) => match Target::from_config(repo.config, t) {
            Ok(t) => t,
            Err(e) => return report(vec![e.to_string()], None, SessionState::default()),
        },
        None => Target {
            name: "recorded".into(),
            engine: contract
                .spec
                .engines
                .first()
                .copied()
                .unwrap_or(crate::sql::Engine::Postgres),
            url: crate::exec::SecretUrl::new("recorded:"),
            environment: spec.environment.clone(),
            redact: Vec::new(),
            roles: crate::config::Roles::default(),
            lock_timeout: None,
        },
    };
    let agent: Box<dyn Agent> = match &spec.transcript {
        Some(turns) => Box::new(Replay::new(
            Transcript {
                model: None,
                turns: turns.clone(),
            },
            s.path.display().to_string(),
        )),
        None => Box::new(Offline),
    };
    let _ = std::fs::remove_file(&log);
    let platform = spec.platform.unwrap_or_else(|| match &spec.target {
        Some(t) => repo.config.platform_of(t),
        None => Default::default(),
    });
    let cfg = RunConfig {
        store: None,
        concurrent: Vec::new(),
        session_id: format!("test-{stem}"),
        log_path: log.clone(),
        contract: {
            let mut c = contract.clone();
            c.keep_steps_for_platform(platform);
            c
        },
        target,
        inputs: spec.inputs.clone(),
        policy: repo.policy.clone(),
        analyzer: repo.analyzer.clone(),
        evidence: repo.config.evidence_config(),
        dry_run: spec.dry_run,
        operator: "ward-test".into(),
        provenance: serde_json::json!({"scenario": s.path.display().to_string()}),
        allow_dirty: true,
        wait_for_approval: Some(Duration::from_secs(3600)),
        ops_dir: None,
        clock: spec.clock.map(runner::Clock::fixed).unwrap_or_default(),
        allow_superuser: false,
        operators: repo.operators.cloned(),
        reload_policy: false,
        recorded: spec.target.is_none().then(|| runner::Recorded {
            steps: spec.evidence.clone(),
        }),
        max_proposals: runner::MAX_PROPOSALS,
        runbooks: repo
            .contracts
            .iter()
            .map(|c| {
                let mut c = c.clone();
                c.keep_steps_for_platform(platform);
                c
            })
            .collect(),
        follow: runner::Follow::Never,
    };
    let (ops_tx, ops_rx) = mpsc::unbounded_channel();
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<crate::audit::Event>();
    let session = tokio::spawn(runner::run(cfg, agent, ops_rx, Some(ev_tx)));
    // The scenario's humans: they answer each approval request the scenario
    // names, and leave every other one waiting.
    let mut seen = SessionState::default();
    while let Some(e) = ev_rx.recv().await {
        let Ok(data) = EventData::from_parts(&e.kind, &e.data) else {
            continue;
        };
        seen.apply(e.seq, &e.ts, &e.hash, &data);
        // An approval request: at the proposal, or again right before
        // execution when admission then asks for more.
        let (proposal, approvers) = match &data {
            EventData::Gated(g) if g.decision == DecisionKind::Approve && !g.dry_run => {
                (g.proposal.clone(), g.approvers)
            }
            EventData::Readmitted(r) if r.admit == AdmitKind::NeedsApprovals => {
                (r.proposal.clone(), r.approvers)
            }
            _ => continue,
        };
        let step = seen
            .proposal(&proposal)
            .and_then(|p| p.step_id.clone())
            .unwrap_or_else(|| Origin::Adhoc.label().into());
        if let Some(reason) = spec.reject.get(&step) {
            let _ = ops_tx.send(Op::Reject {
                proposal: proposal.clone(),
                operator: "approver-1".into(),
                reason: reason.clone(),
            });
        } else if spec.approve.contains(&step) {
            for n in 1..=approvers.max(1) {
                let _ = ops_tx.send(Op::Approve {
                    proposal: proposal.clone(),
                    operator: format!("approver-{n}"),
                    reason: format!("scenario {stem} approves {step}"),
                    for_session: false,
                });
            }
        } else {
            let _ = ops_tx.send(Op::Leave);
        }
    }
    match session.await {
        Ok(Ok((state, outcome))) => {
            let failures = check(&spec.expect, &state, outcome);
            report(failures, Some(outcome), state)
        }
        Ok(Err(e)) => report(vec![e.to_string()], None, seen),
        Err(e) => report(vec![format!("the session task failed: {e}")], None, seen),
    }
}

/// Compares a finished session with what the scenario expects.
pub fn check(expect: &Expect, state: &SessionState, outcome: Outcome) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(o) = &expect.outcome
        && o != outcome.name()
    {
        out.push(format!("outcome: expected {o}, got {}", outcome.name()));
    }
    fn by_step<'a>(
        state: &'a SessionState,
        id: &'a str,
    ) -> impl Iterator<Item = &'a crate::session::ProposalState> {
        state
            .proposals
            .iter()
            .filter(move |p| p.step_id.as_deref() == Some(id))
    }
    for (step, want) in &expect.verdicts {
        let got: Vec<String> = by_step(state, step)
            .filter_map(|p| p.decision.map(|d| d.name().to_string()))
            .collect();
        if got.is_empty() {
            out.push(format!(
                "verdict of {step}: expected {want}, but it was never gated"
            ));
        } else if got.iter().any(|g| g != want) {
            out.push(format!(
                "verdict of {step}: expected {want}, got {}",
                got.join(", ")
            ));
        }
    }
    for (step, rules) in &expect.rules {
        let got: Vec<&String> = by_step(state, step).flat_map(|p| p.rules.iter()).collect();
        for r in rules {
            if !got.contains(&r) {
                out.push(format!(
                    "rules of {step}: expected {r} among [{}]",
                    got.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    if let Some(want) = &expect.executed {
        let got: Vec<String> = state
            .proposals
            .iter()
            .filter(|p| p.status == Status::Done)
            .map(|p| {
                p.step_id
                    .clone()
                    .unwrap_or_else(|| Origin::Adhoc.label().into())
            })
            .collect();
        if &got != want {
            out.push(format!(
                "executed: expected [{}], got [{}]",
                want.join(", "),
                got.join(", ")
            ));
        }
    }
    for step in &expect.not_proposed {
        if by_step(state, step).next().is_some() {
            out.push(format!("{step} was proposed but must not be"));
        }
    }
    for (step, want) in &expect.verified {
        let got: Vec<Option<bool>> = by_step(state, step).map(|p| p.verified).collect();
        if !got.contains(&Some(*want)) {
            out.push(format!("verified of {step}: expected {want}, got {got:?}"));
        }
    }
    for needle in &expect.conclusion_contains {
        match &state.conclusion {
            Some(c) if c.contains(needle.as_str()) => {}
            Some(c) => out.push(format!("conclusion does not contain {needle:?}: {c:?}")),
            None => out.push(format!(
                "no conclusion (expected one containing {needle:?})"
            )),
        }
    }
    for needle in &expect.recommendation_contains {
        match &state.recommendation {
            Some(r) if r.contains(needle.as_str()) => {}
            Some(r) => out.push(format!("recommendation does not contain {needle:?}: {r:?}")),
            None => out.push(format!(
                "no recommendation (expected one containing {needle:?})"
            )),
        }
    }
    check_next(expect, state, &mut out);
    out
}

/// `next_runbook` and `next_inputs` against the conclusion's hand-off.
fn check_next(expect: &Expect, state: &SessionState, out: &mut Vec<String>) {
    let got = state.next.as_ref().map(|n| n.runbook.as_str());
    if let Some(want) = &expect.next_runbook {
        let want = (want != "none").then_some(want.as_str());
        if got != want {
            out.push(format!(
                "next runbook: expected {}, got {}",
                want.unwrap_or("none"),
                got.unwrap_or("none")
            ));
        }
    }
    for (name, want) in &expect.next_inputs {
        let value = state
            .next
            .as_ref()
            .and_then(|n| n.inputs.get(name))
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        if value.as_deref() != Some(want.as_str()) {
            let dropped = state
                .next
                .iter()
                .flat_map(|n| n.dropped.iter())
                .find(|d| &d.name == name)
                .map(|d| format!(" (dropped: {})", d.reason))
                .unwrap_or_default();
            out.push(format!(
                "next input {name}: expected {want}, got {}{dropped}",
                value.as_deref().unwrap_or("nothing")
            ));
        }
    }
}
