//! The catalog lookup's cost: how long resolving one read's names on a live
//! PostgreSQL takes (one round trip, uncached), the same from the session's
//! cache, next to running the statement itself and a bare `SELECT 1` round
//! trip on the same connection in the same run.
//!
//!     WARD_BENCH_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench --bench catalog
//!
//! Without `WARD_BENCH_URL` it says so and measures nothing. Plain harness.

use std::path::Path;
use std::time::{Duration, Instant};

use ward::config::Config;
use ward::contract;
use ward::exec::{Executor, Limits, Mode, RowEvent, Target};
use ward::sql::{Analyzer, Engine, Risk};

const ROUNDS: usize = 5;

fn main() {
    let Ok(url) = std::env::var("WARD_BENCH_URL") else {
        println!(
            "WARD_BENCH_URL is not set: no server to measure against (see the header of benches/catalog.rs)"
        );
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = Config::discover(root).expect("config");
    let analyzer = Analyzer::new(config.analyzer_options());
    let (contracts, problems) = contract::load_dir(&config.runbooks, &analyzer);
    assert!(problems.is_empty(), "runbooks must load: {problems:?}");
    // Every read-only diagnostic of the runbooks, as the executor sees it.
    let mut sqls: Vec<(String, bool)> = Vec::new();
    for c in &contracts {
        for s in &c.steps {
            for (engine, rewritten, analysis) in &s.sql.per_engine {
                if *engine == Engine::Postgres && analysis.risk == Risk::ReadOnly {
                    sqls.push((rewritten.sql.clone(), rewritten.binds.is_empty()));
                }
            }
        }
    }
    let target = Target::from_url(&url, "dev").expect("target");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut uncached = Vec::new();
    let mut cached = Vec::new();
    let mut executed = Vec::new();
    let mut select_one = Vec::new();
    let mut raised = 0;
    runtime.block_on(async {
        for round in 0..ROUNDS {
            // A new connection: an empty cache, as at a session's start.
            let mut ex = Executor::connect(&target, "bench-catalog", true)
                .await
                .expect("connect");
            let mut options = analyzer.options.clone();
            options.server = ex.server_facts();
            let an = Analyzer::new(options);
            for (sql, plain) in &sqls {
                let analysis = an.analyze(Engine::Postgres, sql);
                let t = Instant::now();
                let refined = ex.refine(&an, &analysis).await.expect("lookup");
                uncached.push(t.elapsed());
                if round == 0 && refined.risk != Risk::ReadOnly {
                    raised += 1;
                    eprintln!("raised: {}", sql.lines().next().unwrap_or_default());
                }
                let t = Instant::now();
                let _ = ex.refine(&an, &analysis).await.expect("cached");
                cached.push(t.elapsed());
                if *plain {
                    let t = Instant::now();
                    let mut sink = |_: RowEvent<'_>| {};
                    let limits = Limits {
                        max_rows: Some(1000),
                        ..Limits::default()
                    };
                    let _ = ex.run(sql, &[], Mode::ReadOnly, &limits, &mut sink).await;
                    executed.push(t.elapsed());
                }
                let t = Instant::now();
                let mut sink = |_: RowEvent<'_>| {};
                ex.run(
                    "SELECT 1",
                    &[],
                    Mode::ReadOnly,
                    &Limits::default(),
                    &mut sink,
                )
                .await
                .expect("select 1");
                select_one.push(t.elapsed());
            }
        }
    });
    println!(
        "corpus: {} read-only diagnostics of {} runbooks, {} rounds on {}",
        sqls.len(),
        contracts.len(),
        ROUNDS,
        target.url.redacted()
    );
    println!(
        "{raised} of them raised above read_only by the catalog (expected 0 on a clean server)"
    );
    report("catalog lookup, uncached (one round trip)", &mut uncached);
    report("catalog lookup, cached", &mut cached);
    report(
        "reference: running the diagnostic itself (read-only txn)",
        &mut executed,
    );
    report(
        "reference: SELECT 1 through the same executor",
        &mut select_one,
    );
}

fn report(what: &str, samples: &mut [Duration]) {
    samples.sort();
    let n = samples.len().max(1);
    let median = samples.get(n / 2).copied().unwrap_or_default();
    let p95 = samples.get(n * 95 / 100).copied().unwrap_or_default();
    let mean = samples.iter().sum::<Duration>() / u32::try_from(n).unwrap_or(1);
    println!(
        "{what:<58} median {:>9.3} ms  p95 {:>9.3} ms  mean {:>9.3} ms  (n={})",
        median.as_secs_f64() * 1e3,
        p95.as_secs_f64() * 1e3,
        mean.as_secs_f64() * 1e3,
        samples.len()
    );
}
