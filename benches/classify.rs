//! Classification speed: SQL analysis + gate decisions per second over every
//! statement in the repository's runbooks, on one core, next to squawk
//! linting the same statements in the same run (when `squawk` is on PATH;
//! `pip install squawk-cli`).
//!
//!     cargo bench --bench classify
//!
//! Plain harness (no criterion) to keep CI builds small.

use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::Utc;
use ward::config::Config;
use ward::contract;
use ward::gate::{self, GateInput};
use ward::policy;
use ward::sql::{Analyzer, Engine};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = Config::discover(root).expect("config");
    let analyzer = Analyzer::new(config.analyzer_options());
    let (contracts, problems) = contract::load_dir(&config.runbooks, &analyzer);
    assert!(problems.is_empty(), "runbooks must load: {problems:?}");
    let (policies, _) = policy::load_dir(&config.policies);
    let policy = policies
        .iter()
        .find(|p| p.id == config.policy)
        .expect("policy");

    // Every statement ward analyzes for the runbooks: steps, verifies, rollbacks,
    // as the executor will see them (positional parameters).
    let mut sqls: Vec<String> = Vec::new();
    for c in &contracts {
        for s in &c.steps {
            let prepared = std::iter::once(&s.sql)
                .chain(s.verify.as_ref().map(|(v, _)| v))
                .chain(s.rollback_sql.as_ref());
            for p in prepared {
                for (engine, rewritten, _) in &p.per_engine {
                    if *engine == Engine::Postgres {
                        sqls.push(rewritten.sql.clone());
                    }
                }
            }
        }
    }
    let bytes: usize = sqls.iter().map(String::len).sum();
    println!(
        "corpus: {} statements from {} runbooks, {} bytes (mean {} bytes)",
        sqls.len(),
        contracts.len(),
        bytes,
        bytes / sqls.len().max(1)
    );

    let now = Utc::now();
    let run = |n: usize| {
        for _ in 0..n {
            for sql in &sqls {
                let analysis = analyzer.analyze(Engine::Postgres, sql);
                let verdict = gate::decide(
                    policy,
                    &GateInput {
                        analysis: &analysis,
                        declared_risk: None,
                        environment: "prod",
                        runbook: None,
                        step_kind: None,
                        table_size: None,
                        now,
                        connected_as_superuser: false,
                    },
                );
                black_box(verdict);
            }
        }
    };
    let analysis_only = |n: usize| {
        for _ in 0..n {
            for sql in &sqls {
                black_box(analyzer.analyze(Engine::Postgres, sql));
            }
        }
    };
    // The floor any classifier built on libpg_query pays: one summary call
    // (parse + C tree walk), measured in the same run.
    let floor = |n: usize| {
        for _ in 0..n {
            for sql in &sqls {
                black_box(pg_query::summary(sql, 0, -1).ok());
            }
        }
    };
    run(3); // warm up
    // This machine is a shared VM: interleave the three measurements in
    // rounds and keep each one's best round.
    let (mut per_sec, mut best_an, mut best_floor) = (0f64, 0f64, 0f64);
    let rate = |f: &dyn Fn(usize)| {
        let (iters, elapsed) = timed(Duration::from_millis(700), f);
        (iters * sqls.len()) as f64 / elapsed.as_secs_f64()
    };
    for _ in 0..5 {
        per_sec = per_sec.max(rate(&run));
        best_an = best_an.max(rate(&analysis_only));
        best_floor = best_floor.max(rate(&floor));
    }
    println!(
        "ward analyze+gate: {:.0} statements/s ({:.1} us/statement), 1 thread, best of 5 rounds",
        per_sec,
        1e6 / per_sec
    );
    println!(
        "ward analyze only: {:.0} statements/s ({:.1} us/statement)",
        best_an,
        1e6 / best_an
    );
    println!(
        "reference, pg_query::summary alone: {:.0} statements/s ({:.1} us/statement)",
        best_floor,
        1e6 / best_floor
    );

    let analysis = analyzer.analyze(Engine::Postgres, &sqls[0]);
    let gate_only = |n: usize| {
        for _ in 0..n {
            black_box(gate::decide(
                policy,
                &GateInput {
                    analysis: &analysis,
                    declared_risk: None,
                    environment: "prod",
                    runbook: None,
                    step_kind: None,
                    table_size: None,
                    now,
                    connected_as_superuser: false,
                },
            ));
        }
    };
    let (iters, elapsed) = timed(Duration::from_secs(1), &gate_only);
    println!(
        "gate decision only: {:.0} decisions/s",
        iters as f64 / elapsed.as_secs_f64()
    );

    squawk(&sqls, per_sec);
}

/// Runs `f(n)` with growing n until it takes at least `min`; returns (n, time).
fn timed(min: Duration, f: &dyn Fn(usize)) -> (usize, Duration) {
    let mut n = 1;
    loop {
        let t = Instant::now();
        f(n);
        let e = t.elapsed();
        if e >= min {
            return (n, e);
        }
        n = (n * 2).max((n as f64 * min.as_secs_f64() / e.as_secs_f64().max(1e-6) * 1.1) as usize);
    }
}

fn squawk(sqls: &[String], ward_per_sec: f64) {
    let Ok(version) = Command::new("squawk").arg("--version").output() else {
        println!("squawk: not on PATH, skipped (pip install squawk-cli)");
        return;
    };
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    let dir = std::env::temp_dir().join(format!("ward-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    // One copy of the corpus per file: squawk's time grows faster than
    // linearly with the size of one file (50 copies take ~200x one copy), so
    // bigger files would understate it. Start-up is measured on a one-line
    // file and subtracted; best of 20 runs each.
    let copies = 1;
    let file = dir.join("corpus.sql");
    let mut f = std::fs::File::create(&file).expect("create");
    for _ in 0..copies {
        for sql in sqls {
            writeln!(f, "{};", sql.trim_end().trim_end_matches(';')).expect("write");
        }
    }
    drop(f);
    let tiny = dir.join("one.sql");
    std::fs::write(&tiny, "SELECT 1;\n").expect("write");
    let time = |path: &Path| {
        let t = Instant::now();
        let _ = Command::new("squawk")
            .arg(path)
            .output()
            .expect("squawk runs");
        t.elapsed()
    };
    let startup = (0..20).map(|_| time(&tiny)).min().unwrap_or_default();
    let whole = (0..20).map(|_| time(&file)).min().unwrap_or_default();
    let statements = copies * sqls.len();
    let per_sec = statements as f64 / (whole.saturating_sub(startup)).as_secs_f64().max(1e-9);
    println!(
        "{version}: {statements} statements in {:.2}s (start-up {:.3}s subtracted) = {:.0} statements/s ({:.1} us/statement), 1 process",
        whole.as_secs_f64(),
        startup.as_secs_f64(),
        per_sec,
        1e6 / per_sec
    );
    println!(
        "ward/squawk per-statement speed ratio: {:.2}x",
        ward_per_sec / per_sec
    );
    std::fs::remove_dir_all(&dir).ok();
}
