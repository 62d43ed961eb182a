//! Event append throughput to the team store next to the local log's
//! append+fsync, on the same machine in the same run: the store one
//! transaction per event (the mirror keeping up with a session) and in
//! batches (the mirror catching up, `ward store sync`).
//!
//!     cargo bench --bench store
//!
//! Starts its own throwaway PostgreSQL (initdb + pg_ctl, as the tests do),
//! with `fsync=on` (the test harness turns it off), so a store commit is as
//! durable as a local append.

#[allow(dead_code)]
#[path = "../tests/integration/pg.rs"]
mod pg;

use std::time::Instant;

use serde_json::json;

use ward::audit::{AuditWriter, Event};
use ward::exec::SecretUrl;
use ward::store::Store;
use ward::store::mirror::BATCH;

const EVENTS: u64 = 2_000;

fn main() {
    let Some(pg) = pg::PgServer::start_with_options(20, &[("fsync", "on")]) else {
        println!(
            "no PostgreSQL server binaries found: nothing measured (see tests/integration/pg.rs)"
        );
        return;
    };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/storebench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");

    // The local log: append + fsync per event, as a session runs.
    let path = dir.join("bench.jsonl");
    let mut w = AuditWriter::create(&path).expect("log");
    let start = Instant::now();
    let mut events: Vec<Event> = Vec::new();
    events.push(
        w.append(
            "session_started",
            json!({"session_id": "bench", "host": "bench", "runbook": "bench", "environment": "dev", "target": {"name": "bench"}}),
        )
        .expect("append"),
    );
    for i in 1..EVENTS {
        events.push(
            w.append("verified", json!({"step": i, "ok": true}))
                .expect("append"),
        );
    }
    let local = start.elapsed().as_secs_f64();
    println!(
        "local append+fsync:          {EVENTS} events in {local:.2} s = {:.0} events/s",
        EVENTS as f64 / local
    );

    pg.psql("postgres", "CREATE DATABASE ward_store");
    let store = Store::open(&SecretUrl::new(pg.url("ward_store"))).expect("store");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        store.init().await.expect("ward store init");
        // Keeping up: one transaction per event.
        let start = Instant::now();
        for e in &events {
            let n = store
                .append("bench-one", std::slice::from_ref(e))
                .await
                .expect("append");
            assert_eq!(n, 1);
        }
        let one = start.elapsed().as_secs_f64();
        println!(
            "store, one event per commit: {EVENTS} events in {one:.2} s = {:.0} events/s",
            EVENTS as f64 / one
        );
        // Catching up: batches of BATCH events per commit.
        let start = Instant::now();
        for chunk in events.chunks(BATCH) {
            store.append("bench-batch", chunk).await.expect("append");
        }
        let batched = start.elapsed().as_secs_f64();
        println!(
            "store, {BATCH} events per commit: {EVENTS} events in {batched:.2} s = {:.0} events/s",
            EVENTS as f64 / batched
        );
        // Idempotent: pushing all again stores nothing.
        let start = Instant::now();
        for chunk in events.chunks(BATCH) {
            assert_eq!(store.append("bench-batch", chunk).await.expect("append"), 0);
        }
        let again = start.elapsed().as_secs_f64();
        println!(
            "store, already there ({BATCH} per commit): {EVENTS} events checked in {again:.2} s = {:.0} events/s",
            EVENTS as f64 / again
        );
    });
    println!(
        "(PostgreSQL {} on 127.0.0.1 with fsync=on; the local log in {})",
        pg.major(),
        dir.display()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
