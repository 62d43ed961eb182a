//! Streaming rows through summarizers: speed next to psql, memory at 10k vs
//! 1M rows, and how much smaller the evidence is than the raw rows.
//!
//!     cargo bench --bench evidence
//!
//! Starts its own throwaway PostgreSQL (initdb + pg_ctl, as the tests do).

#[allow(dead_code)]
#[path = "../tests/integration/pg.rs"]
mod pg;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ward::config::Config;
use ward::contract::{self, Contract, StepKind};
use ward::evidence::{Column, EvidenceConfig, Summarizer};
use ward::exec::step;
use ward::exec::{Executor, Target};
use ward::sql::{Analyzer, Engine};
use ward::yaml::Doc;

const QUERY: &str = "SELECT g AS id, g % 1000 AS bucket, (g::bigint * 7919) % 100000 AS amount, md5(g::text) AS label FROM generate_series(1, :n) g";

fn contract(spec: &str) -> Contract {
    let text = format!(
        "id: bench\ntitle: bench\nversion: 1\nengines: [postgres]\ninputs:\n  n: {{ type: integer, default: 1000 }}\nsteps:\n  - id: s\n    kind: diagnostic\n    sql: \"{QUERY}\"\n    summarize: {spec}\n    timeout: 10m\n"
    );
    contract::load_doc(
        &Doc::new("bench.yaml", text),
        Path::new("runbooks"),
        &Analyzer::default(),
    )
    .expect("bench runbook loads")
}

fn evidence_config() -> EvidenceConfig {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    EvidenceConfig {
        script_root: root.join("runbooks"),
        script_cwd: root.to_path_buf(),
        ..EvidenceConfig::default()
    }
}

/// Runs the bench step once: (seconds, rows, summary bytes).
fn run_ward(url: &str, spec: &str, n: u64) -> (f64, u64, usize) {
    let c = contract(spec);
    let inputs = BTreeMap::from([("n".to_string(), serde_json::Value::from(n))]);
    let resolved =
        step::resolve(&c, "s", &inputs, Engine::Postgres, &Analyzer::default()).expect("resolve");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let target = Target::from_url(url, "bench").expect("target");
        let mut ex = Executor::connect(&target, "bench", true)
            .await
            .expect("connect");
        let t = Instant::now();
        let r = step::execute(&mut ex, &resolved, &evidence_config()).await;
        assert!(r.error.is_none(), "{:?}", r.error);
        let secs = t.elapsed().as_secs_f64();
        (secs, r.rows_seen, r.evidence.map_or(0, |e| e.summary.len()))
    })
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_string)
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn main() {
    // Child mode: one run, report peak memory.
    if let Ok(args) = std::env::var("WARD_BENCH_CHILD") {
        let mut parts = args.splitn(3, '|');
        let (url, n, spec) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or("0"),
            parts.next().unwrap_or(""),
        );
        let n: u64 = n.parse().unwrap_or(0);
        let (secs, rows, _) = run_ward(url, spec, n);
        println!("{} {rows} {secs:.3}", peak_rss_kib());
        return;
    }
    let Some(server) = pg::PgServer::start() else {
        println!("evidence bench: skipped, no PostgreSQL server binaries");
        return;
    };
    let url = server.fresh_db("bench");
    let n: u64 = 1_000_000;
    let copy = QUERY.replace(":n", &n.to_string());
    let psql = server.bin_dir().join("psql");
    let psql_time = || {
        let t = Instant::now();
        let out = Command::new(&psql)
            .args([
                "-X",
                "-q",
                "-d",
                &url,
                "-c",
                &format!("COPY ({copy}) TO STDOUT"),
            ])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("psql runs");
        assert!(out.success());
        t.elapsed().as_secs_f64()
    };
    println!(
        "machine: {} cores; PostgreSQL on loopback; {n} rows of (id, bucket, amount, md5 label)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for (name, spec) in [
        ("stats", "{ builtin: stats }"),
        ("top", "{ builtin: top, by: amount, limit: 10 }"),
    ] {
        let mut ward = f64::MAX;
        let mut reference = f64::MAX;
        let mut summary = 0;
        for _ in 0..3 {
            reference = reference.min(psql_time());
            let (secs, rows, bytes) = run_ward(&url, spec, n);
            assert_eq!(rows, n);
            ward = ward.min(secs);
            summary = bytes;
        }
        println!(
            "{name:5}: ward {ward:.2}s, psql COPY TO STDOUT >/dev/null {reference:.2}s => {:.2}x psql; summary {summary} bytes",
            ward / reference
        );
    }
    // Peak memory, each size in a fresh process.
    let exe = std::env::current_exe().expect("exe");
    for (name, spec) in [
        ("stats", "{ builtin: stats }"),
        ("top", "{ builtin: top, by: amount, limit: 10 }"),
    ] {
        let mut line = format!("{name:5} peak RSS:");
        let mut peaks = Vec::new();
        for rows in [10_000u64, 1_000_000] {
            let out = Command::new(&exe)
                .env("WARD_BENCH_CHILD", format!("{url}|{rows}|{spec}"))
                .output()
                .expect("child runs");
            let text = String::from_utf8_lossy(&out.stdout);
            let kib: u64 = text
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            peaks.push(kib);
            line.push_str(&format!(" {rows} rows {:.1} MiB;", kib as f64 / 1024.0));
        }
        line.push_str(&format!(
            " ratio 1M/10k = {:.2}x",
            peaks[1] as f64 / peaks[0].max(1) as f64
        ));
        println!("{line}");
    }
    reduction();
}

/// Raw bytes vs summary bytes for every example diagnostic's summarizer fed
/// 1,000,000 synthetic rows of that step's own columns.
fn reduction() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = Config::discover(root).expect("config");
    let (contracts, _) = contract::load_dir(&config.runbooks, &Analyzer::default());
    let rows: u64 = std::env::var("WARD_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    println!(
        "reduction at {rows} rows per diagnostic (raw = JSON lines the summarizer read; summary = what reaches the model):"
    );
    let mut worst = 0usize;
    for c in &contracts {
        for s in c
            .steps
            .iter()
            .filter(|s| s.spec.kind == StepKind::Diagnostic)
        {
            let Some((_, rewritten, _)) = s
                .sql
                .per_engine
                .iter()
                .find(|(e, _, _)| *e == Engine::Postgres)
            else {
                continue;
            };
            let cols = step_columns(&rewritten.sql);
            if cols.is_empty() {
                println!(
                    "  {}/{}: skipped (output columns not found in the SQL)",
                    c.id(),
                    s.spec.id
                );
                continue;
            }
            let columns: Vec<Column> = cols
                .iter()
                .map(|n| Column {
                    name: n.clone(),
                    type_name: "TEXT".into(),
                })
                .collect();
            let mut summarizer =
                Summarizer::new(s.spec.summarize.as_ref(), &columns, &evidence_config());
            let mut raw: u64 = 0;
            let t = Instant::now();
            for i in 0..rows {
                let mut row = serde_json::Map::new();
                for (j, name) in cols.iter().enumerate() {
                    let v = if j % 2 == 0 {
                        serde_json::Value::from((i * 7919 + j as u64) % 100_003)
                    } else {
                        serde_json::Value::from(format!("{name}-{}", i % 5000))
                    };
                    row.insert(name.clone(), v);
                }
                raw += serde_json::to_vec(&row).map_or(0, |b| b.len() as u64 + 1);
                summarizer.push(&row);
            }
            let ev = summarizer.finish(rows, false);
            worst = worst.max(ev.summary.len());
            println!(
                "  {}/{} [{}]: raw {:.1} MB -> summary {} bytes ({} tokens) in {:.1}s",
                c.id(),
                s.spec.id,
                ev.summarizer,
                raw as f64 / 1e6,
                ev.summary.len(),
                ev.tokens,
                t.elapsed().as_secs_f64()
            );
        }
    }
    println!("largest summary: {worst} bytes");
    let _ = Duration::ZERO;
}

/// Output column names of a SELECT, from its text (good enough for the
/// repository's diagnostics, which name every output column).
fn step_columns(sql: &str) -> Vec<String> {
    let Ok(parsed) = pg_query::parse(sql, 0) else {
        return Vec::new();
    };
    let Some(raw) = parsed.protobuf.stmts.first() else {
        return Vec::new();
    };
    let Some(pg_query::NodeEnum::SelectStmt(sel)) = raw.stmt.as_ref().and_then(|s| s.node.as_ref())
    else {
        return Vec::new();
    };
    let mut sel = sel.as_ref();
    while sel.target_list.is_empty() {
        match sel.larg.as_deref() {
            Some(l) => sel = l,
            None => return Vec::new(),
        }
    }
    sel.target_list
        .iter()
        .enumerate()
        .map(|(i, t)| match t.node.as_ref() {
            Some(pg_query::NodeEnum::ResTarget(r)) if !r.name.is_empty() => r.name.clone(),
            Some(pg_query::NodeEnum::ResTarget(r)) => {
                match r.val.as_ref().and_then(|v| v.node.as_ref()) {
                    Some(pg_query::NodeEnum::ColumnRef(c)) => c
                        .fields
                        .last()
                        .and_then(|f| match f.node.as_ref() {
                            Some(pg_query::NodeEnum::String(s)) => Some(s.sval.clone()),
                            _ => None,
                        })
                        .unwrap_or_else(|| format!("col{i}")),
                    _ => format!("col{i}"),
                }
            }
            _ => format!("col{i}"),
        })
        .collect()
}
