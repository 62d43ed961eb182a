//! `ward test [PATH...]`: run scenario files headless against recorded
//! evidence and check their expectations (see `ward::scenario`). Prints a
//! line per scenario, or (`--format junit`) JUnit XML for CI systems: one
//! test case per scenario, its failures with the differences.

use super::exit::{Error, Exit, usage};
use std::path::PathBuf;

use ward::config::Config;
use ward::contract;
use ward::scenario::{self, Repo, Scenario};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// A line per scenario and a summary.
    Text,
    /// JUnit XML on stdout (one test suite, one test case per scenario).
    Junit,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Scenario files or directories (default: fixtures/scenarios).
    pub paths: Vec<PathBuf>,
    /// Keep each scenario's session log in DIR (default: a temporary
    /// directory, removed afterwards).
    #[arg(long, value_name = "DIR")]
    pub keep_logs: Option<PathBuf>,
}

pub fn run(config: &Config, args: &Args) -> Exit {
    let fail = |msg: String| {
        errln!("error: {msg}");
        Exit::Usage
    };
    if let Some(e) = super::no_repository(config) {
        return fail(e);
    }
    let paths = if args.paths.is_empty() {
        vec![config.root.join("fixtures/scenarios")]
    } else {
        args.paths.clone()
    };
    let files = match scenario::find(&paths) {
        Ok(f) if f.is_empty() => return usage("no scenario files found"),
        Ok(f) => f,
        Err(p) => return usage(p.to_string()),
    };
    let mut scenarios = Vec::new();
    for f in &files {
        match Scenario::load(f) {
            Ok(s) => scenarios.push(s),
            Err(p) => return usage(p.to_string()),
        }
    }
    let analyzer = config.runbook_analyzer();
    let (contracts, problems) = contract::load_dir(&config.runbooks, &analyzer);
    for p in &problems {
        errln!("warning: {p}");
    }
    let policy = match config.active_policy() {
        Ok(p) => p,
        Err(e) => return usage(e),
    };
    let temp;
    let log_dir = match &args.keep_logs {
        Some(d) => {
            if let Err(e) = std::fs::create_dir_all(d) {
                return usage(format!("cannot create {}: {e}", d.display()));
            }
            d.clone()
        }
        None => match tempfile_dir() {
            Ok(d) => {
                temp = d;
                temp.0.clone()
            }
            Err(e) => return usage(e),
        },
    };
    let runtime = match super::session::runtime() {
        Ok(r) => r,
        Err(e) => return usage(e),
    };
    let operators = match super::session::roster(config) {
        Ok(o) => o,
        Err(e) => return usage(e),
    };
    let repo = Repo {
        config,
        contracts: &contracts,
        policy: &policy,
        operators: operators.as_ref(),
        analyzer: &analyzer,
        log_dir: &log_dir,
    };
    let color = super::use_color();
    let mut failed = 0;
    let mut suite = quick_junit::TestSuite::new("ward test");
    let started = std::time::Instant::now();
    for s in &scenarios {
        let began = std::time::Instant::now();
        let report = runtime.block_on(scenario::run(s, &repo));
        let shown = s
            .path
            .strip_prefix(&config.root)
            .unwrap_or(&s.path)
            .display()
            .to_string();
        if !report.passed() {
            failed += 1;
        }
        match args.format {
            Format::Text => text_line(&report, &shown, color, args.keep_logs.is_some()),
            Format::Junit => {
                suite.add_test_case(junit_case(s, &report, &shown, began.elapsed()));
            }
        }
    }
    match args.format {
        Format::Text => outln!(
            "\n{}, {} passed, {failed} failed",
            ward::evidence::plural(scenarios.len() as u64, "scenario", "scenarios"),
            scenarios.len() - failed
        ),
        Format::Junit => {
            suite.set_time(started.elapsed());
            let mut junit = quick_junit::Report::new("ward");
            junit.add_test_suite(suite);
            match junit.to_string() {
                Ok(xml) => out!("{xml}"),
                Err(e) => return usage(format!("cannot write the JUnit report: {e}")),
            }
        }
    }
    if failed > 0 {
        Exit::Failed
    } else {
        Exit::Success
    }
}

fn text_line(report: &scenario::Report, shown: &str, color: bool, keep_logs: bool) {
    if report.passed() {
        outln!(
            "{} {shown}: {}",
            super::paint(color, "32", "ok  "),
            report.name
        );
        return;
    }
    outln!(
        "{} {shown}: {}",
        super::paint(color, "31", "FAIL"),
        report.name
    );
    for f in &report.failures {
        outln!("       {f}");
    }
    if keep_logs {
        outln!("       log: {}", report.log.display());
    }
}

/// One JUnit test case: named by the scenario, classed by its runbook,
/// with the file in `file` and, on failure, the first difference as the
/// message and every one in the body.
fn junit_case(
    s: &Scenario,
    report: &scenario::Report,
    shown: &str,
    took: std::time::Duration,
) -> quick_junit::TestCase {
    use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus};
    let status = if report.passed() {
        TestCaseStatus::success()
    } else {
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
        status
            .set_message(report.failures.first().cloned().unwrap_or_default())
            .set_type("scenario expectation")
            .set_description(report.failures.join("\n"));
        status
    };
    let mut case = TestCase::new(report.name.clone(), status);
    case.set_classname(s.spec.runbook.clone()).set_time(took);
    case.extra.insert("file".into(), shown.into());
    case
}

/// A temporary directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempfile_dir() -> Result<TempDir, Error> {
    let dir = std::env::temp_dir().join(format!(
        "ward-test-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(TempDir(dir))
}
