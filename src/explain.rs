//! `ward explain`: the analysis of a piece of SQL and the gate's verdict on
//! it in a given environment at a given time.

use chrono::{DateTime, Utc};

use crate::gate::{self, GateInput, Verdict};
use crate::policy::Policy;
use crate::sql::{Analysis, Analyzer, Engine};

#[derive(Debug)]
pub struct Explanation {
    pub analysis: Analysis,
    pub verdict: Verdict,
    /// What each name resolved to on a connected target; `None` when the
    /// verdict is text-only (no connection).
    pub catalog: Option<Vec<crate::catalog::Resolution>>,
}

/// The verdict on an analysis that was already made (e.g. catalog-aware).
pub fn verdict(
    policy: &Policy,
    analysis: &Analysis,
    environment: &str,
    now: DateTime<Utc>,
) -> Verdict {
    gate::decide(
        policy,
        &GateInput {
            analysis,
            declared_risk: None,
            environment,
            runbook: None,
            step_kind: None,
            table_size: None,
            now,
            connected_as_superuser: false,
        },
    )
}

pub fn explain(
    analyzer: &Analyzer,
    policy: &Policy,
    engine: Engine,
    sql: &str,
    environment: &str,
    now: DateTime<Utc>,
) -> Explanation {
    let analysis = analyzer.analyze(engine, sql);
    let verdict = verdict(policy, &analysis, environment, now);
    Explanation {
        analysis,
        verdict,
        catalog: None,
    }
}
