//! `ward check` output: text for people, JSON for tools, GitHub Actions
//! annotations and SARIF 2.1.0 (GitHub code scanning) for CI.

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
    /// SARIF 2.1.0, for GitHub code scanning and other SARIF readers.
    Sarif,
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
        Format::Sarif => write_sarif(&report, config, &mut out),
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

/// The SARIF rules: one per kind of file a problem is found in, so code
/// scanning groups runbook, policy, policy-test and configuration problems.
const SARIF_RULES: [(&str, &str); 4] = [
    (
        "ward/runbook",
        "Runbook contract problem (format, SQL, conditions, versions)",
    ),
    ("ward/policy", "Approval policy or operator roster problem"),
    (
        "ward/policy-test",
        "A policy test whose expectation does not hold",
    ),
    ("ward/config", "ward.yaml configuration problem"),
];

/// Which of [`SARIF_RULES`] a problem in `file` belongs to.
fn sarif_rule(config: &Config, file: &std::path::Path) -> usize {
    if file.starts_with(config.policies.join("tests")) {
        2
    } else if file.starts_with(&config.policies) {
        1
    } else if file.starts_with(&config.runbooks) {
        0
    } else {
        3
    }
}

/// SARIF 2.1.0: one run of the `ward` driver, a result per problem at its
/// file (relative to the repository, `%SRCROOT%`), line and column.
pub fn write_sarif(
    report: &CheckReport,
    config: &Config,
    w: &mut impl Write,
) -> std::io::Result<()> {
    use serde_sarif::sarif::{
        ArtifactLocation, Location, Message, MultiformatMessageString, PhysicalLocation, Region,
        ReportingDescriptor, Result as SarifResult, ResultLevel, Run, Sarif, Tool, ToolComponent,
    };
    let rules: Vec<ReportingDescriptor> = SARIF_RULES
        .iter()
        .map(|(id, what)| {
            ReportingDescriptor::builder()
                .id(*id)
                .short_description(MultiformatMessageString::builder().text(*what).build())
                .build()
        })
        .collect();
    let results: Vec<SarifResult> = report
        .problems
        .iter()
        .map(|p| {
            let rule = sarif_rule(config, &p.location.file);
            let region = Region::builder()
                .start_line(i64::try_from(p.location.line.max(1)).unwrap_or(i64::MAX))
                .start_column(i64::try_from(p.location.col.max(1)).unwrap_or(i64::MAX))
                .build();
            let artifact = ArtifactLocation::builder()
                .uri(relative(config, &p.location.file))
                .uri_base_id("%SRCROOT%")
                .build();
            SarifResult::builder()
                .rule_id(SARIF_RULES[rule].0)
                .rule_index(rule as i64)
                .level(ResultLevel::Error)
                .message(Message::builder().text(p.message.clone()).build())
                .locations(vec![
                    Location::builder()
                        .physical_location(
                            PhysicalLocation::builder()
                                .artifact_location(artifact)
                                .region(region)
                                .build(),
                        )
                        .build(),
                ])
                .build()
        })
        .collect();
    let driver = ToolComponent::builder()
        .name("ward")
        .version(env!("CARGO_PKG_VERSION"))
        .rules(rules)
        .build();
    let sarif = Sarif::builder()
        .schema(serde_sarif::sarif::SCHEMA_URL)
        .version(serde_json::json!("2.1.0"))
        .runs(vec![
            Run::builder()
                .tool(Tool::builder().driver(driver).build())
                .results(results)
                .build(),
        ])
        .build();
    serde_json::to_writer_pretty(&mut *w, &sarif)?;
    writeln!(w)
}
