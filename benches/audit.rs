//! Audit log costs: appends per second with an fsync per event, and
//! `verify` throughput next to `sha256sum` on the same file in the same run.
//!
//!     cargo bench --bench audit

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/auditbench");
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("{}: {e}", dir.display());
        std::process::exit(2);
    }
    print!("{}", ward::audit::bench_report(&dir));
    let _ = std::fs::remove_dir_all(&dir);
}
