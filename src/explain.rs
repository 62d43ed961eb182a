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
    let verdict = gate::decide(
        policy,
        &GateInput {
            analysis: &analysis,
            declared_risk: None,
            environment,
            runbook: None,
            step_kind: None,
            table_size: None,
            now,
            connected_as_superuser: false,
        },
    );
    Explanation { analysis, verdict }
}
