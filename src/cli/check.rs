//! `ward check` output: text for people, JSON for tools, GitHub Actions
//! annotations for CI.

use super::exit::Exit;
use std::io::Write;

use clap::ValueEnum;

use ward::check::{CheckReport, check};
use ward::config::Config;
use ward::evidence::plural;

use super::{paint, use_color};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Github,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

pub fn run(config: &Config, args: &Args) -> Exit {
    if let Some(e) = super::no_repository(config) {
        errln!("error: {e}");
        return Exit::Usage;
    }
    let report = match check(config) {
        Ok(r) => r,
        Err(e) => {
            errln!("error: {e}");
            return Exit::Usage;
        }
    };
    let mut out = std::io::stdout().lock();
    let written = match args.format {
        Format::Text => write_text(&report, config, &mut out, use_color()),
        Format::Json => write_json(&report, &mut out),
        Format::Github => write_github(&report, config, &mut out),
    };
    if let Err(e) = written {
        errln!("error: cannot write the report: {e}");
        return Exit::Usage;
    }
    if report.is_clean() {
        Exit::Success
    } else {
        Exit::Failed
    }
}

fn relative(config: &Config, path: &std::path::Path) -> String {
    path.strip_prefix(&config.root)
        .unwrap_or(path)
        .display()
        .to_string()
}

pub fn write_text(
    report: &CheckReport,
    config: &Config,
    w: &mut impl Write,
    color: bool,
) -> std::io::Result<()> {
    for p in &report.problems {
        let loc = format!(
            "{}:{}:{}",
            relative(config, &p.location.file),
            p.location.line,
            p.location.col
        );
        writeln!(
            w,
            "{}: {} {}",
            paint(color, "1", &loc),
            paint(color, "31", "error:"),
            p.message
        )?;
    }
    let summary = format!(
        "{} ({}), {}, {} passed, {} failed: {}",
        plural(report.runbooks as u64, "runbook", "runbooks"),
        plural(report.steps as u64, "step", "steps"),
        plural(report.policies as u64, "policy", "policies"),
        plural(
            report.policy_tests_passed as u64,
            "policy test",
            "policy tests"
        ),
        report.policy_tests_failed,
        match report.problems.len() {
            0 => "no problems".to_string(),
            1 => "1 problem".to_string(),
            n => format!("{n} problems"),
        }
    );
    let style = if report.is_clean() { "32" } else { "31" };
    writeln!(w, "{}", paint(color, style, &summary))
}

pub fn write_json(report: &CheckReport, w: &mut impl Write) -> std::io::Result<()> {
    let problems: Vec<serde_json::Value> = report
        .problems
        .iter()
        .map(|p| {
            serde_json::json!({
                "file": p.location.file.display().to_string(),
                "line": p.location.line,
                "col": p.location.col,
                "message": p.message,
            })
        })
        .collect();
    let value = serde_json::json!({
        "ok": report.is_clean(),
        "runbooks": report.runbooks,
        "steps": report.steps,
        "policies": report.policies,
        "policy_tests": { "passed": report.policy_tests_passed, "failed": report.policy_tests_failed },
        "problems": problems,
    });
    serde_json::to_writer_pretty(&mut *w, &value)?;
    writeln!(w)
}

/// GitHub Actions workflow commands: `::error file=..,line=..,col=..::msg`.
pub fn write_github(
    report: &CheckReport,
    config: &Config,
    w: &mut impl Write,
) -> std::io::Result<()> {
    fn data(s: &str) -> String {
        s.replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A")
    }
    fn prop(s: &str) -> String {
        data(s).replace(':', "%3A").replace(',', "%2C")
    }
    for p in &report.problems {
        writeln!(
            w,
            "::error file={},line={},col={}::{}",
            prop(&relative(config, &p.location.file)),
            p.location.line,
            p.location.col,
            data(&p.message)
        )?;
    }
    Ok(())
}
