//! `ward explain`: the class, the lock in plain words, findings with advice,
//! and the decision with the rule that made it.

use super::exit::{Error, Exit};
use std::io::{Read, Write};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::ValueEnum;

use ward::config::Config;
use ward::explain::{Explanation, explain};
use ward::policy::{self, Decision, Policy};
use ward::session::describe::Tone;
use ward::sql::{Analyzer, Engine};
use ward::yaml::Doc;

use super::{paint, use_color};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EngineArg {
    Postgres,
    Sqlite,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The SQL to explain, or `-` to read it from stdin.
    pub sql: String,
    /// Environment the statement would run in (matched by policy rules);
    /// default: the --target's environment, else prod.
    #[arg(long = "env", value_name = "ENV")]
    pub environment: Option<String>,
    /// Resolve every name against this target's catalog (from ward.yaml):
    /// views, functions, operators, casts and types decide what a SELECT does.
    #[arg(long, conflicts_with = "url")]
    pub target: Option<String>,
    /// Like --target, with a connection URL (postgres://...).
    #[arg(long, env = "WARD_URL", hide_env_values = true)]
    pub url: Option<String>,
    /// When it would run (RFC 3339, e.g. 2026-11-18T15:00:00-05:00); default: now.
    #[arg(long, value_name = "RFC3339")]
    pub at: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// SQL dialect.
    #[arg(long, value_enum, default_value = "postgres")]
    pub engine: EngineArg,
    /// Policy file to use instead of the repository's configured policy.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
}

fn load_policy(config: &Config, file: Option<&PathBuf>) -> Result<Policy, Error> {
    let render = |ps: Vec<ward::diag::Problem>| {
        ps.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    };
    if let Some(file) = file {
        let doc = Doc::read(file).map_err(|p| p.to_string())?;
        return Ok(policy::load_doc(&doc).map_err(render)?);
    }
    Ok(config.active_policy()?)
}

pub fn run(config: &Config, args: &Args) -> Exit {
    let sql = if args.sql == "-" {
        let mut s = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut s) {
            errln!("error: cannot read SQL from stdin: {e}");
            return Exit::Usage;
        }
        s
    } else {
        args.sql.clone()
    };
    if sql.trim().is_empty() {
        errln!(
            "error: no SQL to explain; pass a statement, e.g. ward explain 'SELECT 1', or - to read it from stdin"
        );
        return Exit::Usage;
    }
    let now = match &args.at {
        None => Utc::now(),
        Some(t) => match DateTime::parse_from_rfc3339(t) {
            Ok(t) => t.with_timezone(&Utc),
            Err(e) => {
                errln!(
                    "error: --at `{t}` is not an RFC 3339 time ({e}); write e.g. 2026-11-18T15:00:00-05:00"
                );
                return Exit::Usage;
            }
        },
    };
    let policy = match load_policy(config, args.policy.as_ref()) {
        Ok(p) => p,
        Err(e) => {
            errln!("error: {e}");
            return Exit::Usage;
        }
    };
    let engine = match args.engine {
        EngineArg::Postgres => Engine::Postgres,
        EngineArg::Sqlite => Engine::Sqlite,
    };
    let analyzer = Analyzer::new(config.analyzer_options());
    let connect = args.target.is_some() || args.url.is_some();
    let target = if connect {
        match super::resolve_target(
            config,
            args.target.as_deref(),
            args.url.as_deref(),
            args.environment.as_deref().unwrap_or("prod"),
        ) {
            Ok(t) => Some(t),
            Err(e) => {
                errln!("error: {e}");
                return Exit::Usage;
            }
        }
    } else {
        None
    };
    let environment = args
        .environment
        .clone()
        .or_else(|| target.as_ref().map(|t| t.environment.clone()))
        .unwrap_or_else(|| "prod".to_string());
    let ex = match &target {
        None => explain(&analyzer, &policy, engine, &sql, &environment, now),
        Some(t) => match catalog_aware(&analyzer, &policy, t, &sql, &environment, now) {
            Ok(ex) => ex,
            Err(e) => {
                errln!("error: {e}");
                return Exit::Usage;
            }
        },
    };
    let mut out = std::io::stdout().lock();
    let written = match args.format {
        Format::Json => write_json(&ex, &mut out),
        Format::Text => write_text(&ex, &environment, target.is_some(), &mut out, use_color()),
    };
    if let Err(e) = written {
        errln!("error: cannot write: {e}");
        return Exit::Usage;
    }
    Exit::Success
}

/// The explanation with every name resolved on `target`: one read-only
/// connection, the analyzer reading SQL as that server does.
fn catalog_aware(
    analyzer: &Analyzer,
    policy: &Policy,
    target: &ward::exec::Target,
    sql: &str,
    environment: &str,
    now: DateTime<Utc>,
) -> Result<Explanation, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        let mut ex = ward::exec::Executor::connect(target, "explain", true).await?;
        let mut options = analyzer.options.clone();
        options.server = ex.server_facts();
        let analyzer = Analyzer::new(options);
        let analysis = analyzer.analyze(target.engine, sql);
        let refined = ex
            .resolve(&analyzer, &analysis)
            .await
            .map_err(|e| format!("the catalog lookup failed: {e}"))?;
        let verdict = ward::explain::verdict(policy, &refined.analysis, environment, now);
        Ok(Explanation {
            analysis: refined.analysis,
            verdict,
            catalog: refined.looked_up.then_some(refined.resolved),
        })
    })
}

pub fn to_json(ex: &Explanation) -> serde_json::Value {
    let statements: Vec<serde_json::Value> = ex
        .analysis
        .statements
        .iter()
        .map(|s| {
            serde_json::json!({
                "sql": s.sql,
                "kind": s.kind,
                "risk": s.risk,
                "lock": s.lock.map(|l| l.name()),
                "blocks": s.blocks,
                "findings": s.findings,
            })
        })
        .collect();
    serde_json::json!({
        "risk": ex.verdict.risk,
        "decision": ex.verdict.decision.name(),
        "approvers": ex.verdict.decision.approvers(),
        "rules": ex.verdict.rules.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        "statements": statements,
        "catalog": ex.catalog,
    })
}

pub fn write_json(ex: &Explanation, w: &mut impl Write) -> std::io::Result<()> {
    serde_json::to_writer(&mut *w, &to_json(ex))?;
    writeln!(w)
}

/// "blocks writes to orders until done"
pub fn write_text(
    ex: &Explanation,
    env: &str,
    connected: bool,
    w: &mut impl Write,
    color: bool,
) -> std::io::Result<()> {
    let many = ex.analysis.statements.len() > 1;
    for (i, st) in ex.analysis.statements.iter().enumerate() {
        if many {
            writeln!(w, "{}", paint(color, "1", &format!("statement {}:", i + 1)))?;
        }
        writeln!(w, "  {}", st.sql.lines().collect::<Vec<_>>().join("\n  "))?;
        writeln!(w, "  kind:  {}", st.kind)?;
        let why = if st.reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", st.reasons.join("; "))
        };
        writeln!(
            w,
            "  risk:  {}{why}",
            paint(color, tone_code(Tone::of_risk(st.risk)), st.risk.name())
        )?;
        let tables: Vec<&str> = st.tables.iter().map(String::as_str).collect();
        if let Some(words) = ward::sql::lock_words(st.lock.map(|l| l.name()), &st.blocks, &tables) {
            writeln!(w, "  lock:  {words}")?;
        }
        for f in &st.findings {
            writeln!(
                w,
                "  {} {}: {}",
                paint(color, tone_code(Tone::Warn), "finding"),
                f.rule,
                f.message
            )?;
        }
    }
    if let Some(err) = &ex.analysis.parse_error {
        writeln!(
            w,
            "  {} {}",
            paint(color, "31", "does not parse:"),
            err.message
        )?;
    }
    match &ex.catalog {
        // Connected but nothing looked up: SQLite (no catalog of code), or
        // SQL that is not one parsed statement; the text decides.
        None if connected => writeln!(
            w,
            "  catalog: not consulted (SQLite, or not one statement that parses); the verdict is text-only"
        )?,
        None => writeln!(
            w,
            "  catalog: not consulted; this verdict is text-only (give --target or --url to resolve names on the server)"
        )?,
        Some(names) => {
            writeln!(w, "  catalog: every name resolved on the target")?;
            for r in names {
                let mark = match &r.problem {
                    None => paint(color, tone_code(Tone::Ok), "ok"),
                    Some(_) => paint(color, tone_code(Tone::Bad), "NOT harmless"),
                };
                writeln!(w, "    {} {} -> {} [{mark}]", r.kind, r.name, r.resolved)?;
                if let Some(p) = &r.problem {
                    writeln!(w, "      {p}")?;
                }
            }
        }
    }
    writeln!(w)?;
    if many {
        writeln!(
            w,
            "overall risk: {} (several statements in one are gated as unknown)",
            ex.analysis.risk
        )?;
    }
    let tone = tone_code(Tone::of_decision(ex.verdict.decision.kind()));
    let decision = match &ex.verdict.decision {
        Decision::Allow => paint(color, tone, "allow"),
        Decision::Deny => paint(color, tone, "deny"),
        Decision::Approve { approvers, roles } => {
            let who = if *approvers == 1 {
                "1 approver".to_string()
            } else {
                format!("{approvers} approvers")
            };
            let roles = if roles.is_empty() {
                String::new()
            } else {
                format!(" (roles: {})", roles.join(", "))
            };
            paint(color, tone, &format!("needs approval by {who}{roles}"))
        }
    };
    writeln!(w, "decision in {env}: {decision}")?;
    if ex.verdict.defaulted {
        writeln!(
            w,
            "  no rule matched; policy `{}` default applies",
            ex.verdict.policy
        )?;
    }
    for m in ex.verdict.deciding_rules() {
        let msg = m
            .message
            .as_deref()
            .map(|x| format!(": {x}"))
            .unwrap_or_default();
        writeln!(w, "  by rule {}{msg}", m.id)?;
    }
    let others: Vec<&str> = ex
        .verdict
        .rules
        .iter()
        .filter(|m| !ex.verdict.deciding_rules().iter().any(|d| d.id == m.id))
        .map(|m| m.id.as_str())
        .collect();
    if !others.is_empty() {
        writeln!(w, "  also matched: {}", others.join(", "))?;
    }
    Ok(())
}

/// The ANSI style of a tone, as the TUI's theme colours it: green, yellow,
/// bold red.
fn tone_code(tone: Tone) -> &'static str {
    match tone {
        Tone::Ok => "32",
        Tone::Warn => "33",
        Tone::Bad => "1;31",
        Tone::Info => "34",
        Tone::Agent => "35",
        Tone::Plain => "0",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(sql: &str, policy: &str) -> String {
        let policy =
            policy::load_doc(&Doc::new(PathBuf::from("test.yaml"), policy)).expect("policy");
        let analyzer = Analyzer::new(Default::default());
        let now = DateTime::parse_from_rfc3339("2026-11-18T03:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let ex = explain(&analyzer, &policy, Engine::Postgres, sql, "prod", now);
        let mut out = Vec::new();
        write_text(&ex, "prod", false, &mut out, true).expect("write");
        String::from_utf8(out).expect("utf-8")
    }

    const ALLOW_ALL: &str = "id: test\nrules: []\ndefault: allow\n";
    const DENY_ALL: &str = "id: test\nrules: []\ndefault: deny\n";

    #[test]
    fn risk_and_decision_are_coloured_by_their_class_as_the_tui_colours_them() {
        let read = text("SELECT 1", ALLOW_ALL);
        assert!(read.contains("risk:  \x1b[32mread_only\x1b[0m"), "{read}");
        assert!(
            read.contains("decision in prod: \x1b[32mallow\x1b[0m"),
            "{read}"
        );
        let schema = text("CREATE INDEX i ON t (a)", ALLOW_ALL);
        assert!(schema.contains("risk:  \x1b[33mschema\x1b[0m"), "{schema}");
        let drop = text("DROP TABLE t", DENY_ALL);
        assert!(
            drop.contains("risk:  \x1b[1;31mdestructive\x1b[0m"),
            "{drop}"
        );
        assert!(
            drop.contains("decision in prod: \x1b[1;31mdeny\x1b[0m"),
            "{drop}"
        );
    }
}
