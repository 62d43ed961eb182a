//! Approval policies: who must approve what, and what never runs.
//!
//! A policy is a list of rules. Every rule whose conditions all hold matches;
//! the most restrictive matching decision wins (deny > approve with more
//! approvers > approve > allow); when nothing matches, `default` applies
//! (deny unless stated). Evaluation is a pure function of the statement's
//! analysis and its context, clock included.

pub mod cases;
pub mod operators;
pub mod window;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::diag::{Problem, nearest};
use crate::sql::{Analysis, FINDING_RULES, LockMode, Risk};
use crate::yaml::{Doc, Seg};
use window::Window;

/// What the gate decides. Ordered from least to most restrictive, so the
/// verdict over matching rules is their `max`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allow,
    /// Needs this many distinct human approvers, including one holding each
    /// listed role when roles are given.
    Approve {
        approvers: u32,
        roles: Vec<String>,
    },
    Deny,
}

impl Decision {
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// Which of the three it is, without the approvals' details.
    pub fn kind(&self) -> DecisionKind {
        match self {
            Decision::Allow => DecisionKind::Allow,
            Decision::Approve { .. } => DecisionKind::Approve,
            Decision::Deny => DecisionKind::Deny,
        }
    }

    pub fn approvers(&self) -> u32 {
        match self {
            Decision::Approve { approvers, .. } => *approvers,
            _ => 0,
        }
    }
}

/// A [`Decision`] without its details: the word the session log stores
/// (`allow`, `approve`, `deny`) beside the approvers and roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    Allow,
    Approve,
    Deny,
}

impl DecisionKind {
    pub fn name(self) -> &'static str {
        match self {
            DecisionKind::Allow => "allow",
            DecisionKind::Approve => "approve",
            DecisionKind::Deny => "deny",
        }
    }
}

impl std::fmt::Display for DecisionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The YAML shape of a decision: `allow`, `deny`, `approve`, or
/// `{ approve: { approvers: 2, roles: [owner] } }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DecisionSpec {
    Word(String),
    Approve { approve: ApproveSpec },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveSpec {
    #[serde(default = "one")]
    pub approvers: u32,
    #[serde(default)]
    pub roles: Vec<String>,
}

fn one() -> u32 {
    1
}

/// One value or a list of them.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(x) => std::slice::from_ref(x),
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    #[serde(default)]
    pub days: Vec<String>,
    #[serde(default)]
    pub hours: Option<String>,
    #[serde(default)]
    pub tz: Option<String>,
}

/// Conditions of a rule; all that are given must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    /// Risk class of the whole step (`destructive` also matches `unknown`).
    pub risk: Option<OneOrMany<Risk>>,
    /// Statement kind, e.g. `create_index`, `drop_table`.
    pub statement: Option<OneOrMany<String>>,
    pub concurrently: Option<bool>,
    pub environment: Option<OneOrMany<String>>,
    /// Inside one of these windows.
    pub window: Option<OneOrMany<String>>,
    /// Outside all of these windows.
    pub outside_window: Option<OneOrMany<String>>,
    pub runbook: Option<OneOrMany<String>>,
    /// diagnostic, migration, remediation or adhoc.
    pub step_kind: Option<OneOrMany<String>>,
    /// Exactly one of these lock modes.
    pub lock: Option<OneOrMany<String>>,
    /// This lock mode or a stronger one.
    pub lock_at_least: Option<String>,
    /// The statement blocks `reads` or `writes`.
    pub blocks: Option<OneOrMany<String>>,
    /// Any of these finding ids.
    pub finding: Option<OneOrMany<String>>,
    /// Estimated rows of the largest table touched, at least this many.
    pub min_rows: Option<u64>,
    /// Estimated size of the largest table touched, at least this (bytes, or "10GB").
    pub min_bytes: Option<ByteSize>,
    /// `true`: the session reads as a role that can reach outside the
    /// database's privilege system (a superuser, a member of
    /// `pg_execute_server_program` / `pg_write_server_files`, or a role that
    /// may CREATE in a schema of its search_path) and the target configures
    /// no `roles.read` to drop to. In prod such a session is refused unless
    /// started with `--allow-superuser`; this condition lets a policy deny
    /// such sessions anyway, or ask more approvers of them, e.g.
    /// `when: { connected_as_superuser: true, risk: [write, schema] }` ->
    /// `{ approve: { approvers: 2 } }`. `false` matches the other sessions.
    pub connected_as_superuser: Option<bool>,
}

/// A byte count written as a number or with a unit (`512MB`, `10GB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => parse_bytes(&s).map(ByteSize).ok_or_else(|| {
                serde::de::Error::custom(format!("`{s}` is not a size; write e.g. 500MB or 10GB"))
            }),
        }
    }
}

pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..split].parse().ok()?;
    let mult: u64 = match s[split..].trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" | "K" | "KIB" => 1 << 10,
        "MB" | "M" | "MIB" => 1 << 20,
        "GB" | "G" | "GIB" => 1 << 30,
        "TB" | "T" | "TIB" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub id: String,
    #[serde(default)]
    pub when: When,
    pub decision: DecisionSpec,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    pub id: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub windows: BTreeMap<String, WindowSpec>,
    pub rules: Vec<RuleSpec>,
    #[serde(default)]
    pub default: Option<DecisionSpec>,
    /// What starting a session on a target where another live session of
    /// the team works (the team store knows) asks of the operator.
    #[serde(default)]
    pub concurrent_sessions: ConcurrentSessions,
}

/// `concurrent_sessions:` in a policy: a second live session on the same
/// target is only warned about (`warn`, the default), or must be
/// acknowledged by the operator starting it (`acknowledge`: headless
/// `--acknowledge SESSION_ID`, a confirmation in the TUI).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConcurrentSessions {
    #[default]
    Warn,
    Acknowledge,
}

/// A validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub when: When,
    pub decision: Decision,
    pub message: Option<String>,
    lock_at_least: Option<LockMode>,
    locks: Vec<LockMode>,
}

/// A loaded, validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub id: String,
    pub path: PathBuf,
    pub windows: BTreeMap<String, Window>,
    pub rules: Vec<Rule>,
    pub default: Decision,
    pub concurrent_sessions: ConcurrentSessions,
}

/// Sizes of the tables a statement touches, when the caller knows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TableSize {
    pub rows: u64,
    pub bytes: u64,
}

/// Everything a decision depends on besides the policy (the gate's input).
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub analysis: &'a Analysis,
    /// A runbook step's declared risk; ignored when lower than the analysis.
    pub declared_risk: Option<Risk>,
    pub environment: &'a str,
    pub runbook: Option<&'a str>,
    /// `diagnostic`, `migration`, `remediation` or `adhoc`.
    pub step_kind: Option<&'a str>,
    /// The largest table touched, when known.
    pub table_size: Option<TableSize>,
    pub now: DateTime<Utc>,
    /// Reads run as a role that `reads_unsafely` with no read role to drop
    /// to (see [`When::connected_as_superuser`]).
    pub connected_as_superuser: bool,
}

impl Context<'_> {
    /// The class rules match on: the analysis, raised by the declared risk.
    pub fn risk(&self) -> Risk {
        self.analysis.risk.raised_by(self.declared_risk)
    }
}

/// A rule that matched, as reported in a verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Matched {
    pub id: String,
    pub decision: Decision,
    pub message: Option<String>,
}

impl Policy {
    /// Evaluates every rule; returns the matches in policy order.
    pub fn matches(&self, ctx: &Context) -> Vec<Matched> {
        self.rules
            .iter()
            .filter(|r| self.rule_matches(r, ctx))
            .map(|r| Matched {
                id: r.id.clone(),
                decision: r.decision.clone(),
                message: r.message.clone(),
            })
            .collect()
    }

    /// The decision: the most restrictive of the matches (approver roles are
    /// the union over matching approve rules), or the default.
    pub fn decide(&self, matched: &[Matched]) -> Decision {
        let Some(top) = matched.iter().map(|m| &m.decision).max() else {
            return self.default.clone();
        };
        match top {
            Decision::Approve { approvers, .. } => {
                let roles: BTreeSet<&String> = matched
                    .iter()
                    .filter_map(|m| match &m.decision {
                        Decision::Approve { roles, .. } => Some(roles),
                        _ => None,
                    })
                    .flatten()
                    .collect();
                Decision::Approve {
                    approvers: *approvers,
                    roles: roles.into_iter().cloned().collect(),
                }
            }
            other => other.clone(),
        }
    }

    fn rule_matches(&self, rule: &Rule, ctx: &Context) -> bool {
        let w = &rule.when;
        let any = |field: &Option<OneOrMany<String>>, value: Option<&str>| match field {
            None => true,
            Some(list) => value.is_some_and(|v| list.as_slice().iter().any(|x| x == v)),
        };
        if let Some(risks) = &w.risk {
            let risk = ctx.risk();
            let hit = risks
                .as_slice()
                .iter()
                .any(|r| *r == risk || (*r == Risk::Destructive && risk == Risk::Unknown));
            if !hit {
                return false;
            }
        }
        if w.connected_as_superuser
            .is_some_and(|c| c != ctx.connected_as_superuser)
        {
            return false;
        }
        if !any(&w.environment, Some(ctx.environment))
            || !any(&w.runbook, ctx.runbook)
            || !any(&w.step_kind, ctx.step_kind)
        {
            return false;
        }
        if let Some(names) = &w.window
            && !names
                .as_slice()
                .iter()
                .any(|n| self.windows.get(n).is_some_and(|win| win.contains(ctx.now)))
        {
            return false;
        }
        if let Some(names) = &w.outside_window
            && names
                .as_slice()
                .iter()
                .any(|n| self.windows.get(n).is_some_and(|win| win.contains(ctx.now)))
        {
            return false;
        }
        if w.min_rows.is_some() || w.min_bytes.is_some() {
            let Some(size) = ctx.table_size else {
                return false;
            };
            if w.min_rows.is_some_and(|m| size.rows < m)
                || w.min_bytes.is_some_and(|m| size.bytes < m.0)
            {
                return false;
            }
        }
        // Statement-level conditions must all hold for one statement.
        let statement_level = w.statement.is_some()
            || w.concurrently.is_some()
            || w.lock.is_some()
            || w.lock_at_least.is_some()
            || w.blocks.is_some()
            || w.finding.is_some();
        if !statement_level {
            return true;
        }
        ctx.analysis.statements.iter().any(|st| {
            any(&w.statement, Some(&st.kind))
                && w.concurrently.is_none_or(|c| c == st.concurrently)
                && (rule.locks.is_empty() || st.lock.is_some_and(|l| rule.locks.contains(&l)))
                && rule
                    .lock_at_least
                    .is_none_or(|min| st.lock.is_some_and(|l| l >= min))
                && w.blocks
                    .as_ref()
                    .is_none_or(|b| b.as_slice().iter().any(|x| st.blocks.contains(&x.as_str())))
                && w.finding.as_ref().is_none_or(|f| {
                    f.as_slice()
                        .iter()
                        .any(|x| st.findings.iter().any(|g| g.rule == x))
                })
        })
    }
}

/// Loads every policy file directly in `dir` (`policies/tests/` holds test
/// cases and is read by [`cases`]; `operators.yaml` is the roster of
/// approver roles, validated here too, with the roles each policy names).
pub fn load_dir(dir: &Path) -> (Vec<Policy>, Vec<Problem>) {
    load_dir_for(dir, false)
}

/// [`load_dir`]; `roles_in_store`: approver roles are PostgreSQL role
/// memberships in the team store (`store:` in ward.yaml), so a rule's
/// roles are not checked against the roster, which grants nothing then.
pub fn load_dir_for(dir: &Path, roles_in_store: bool) -> (Vec<Policy>, Vec<Problem>) {
    let mut policies: Vec<Policy> = Vec::new();
    let mut problems = Vec::new();
    let files = match crate::contract::yaml_files(dir) {
        Ok(f) => f,
        Err(p) => return (policies, vec![p]),
    };
    let roster_path = dir.join(operators::FILE_NAME);
    // A roster that does not load is reported; the policies' roles are
    // then not checked against it.
    let (roster, roster_broken) = match operators::load(dir) {
        Ok(r) => (r, false),
        Err(mut ps) => {
            problems.append(&mut ps);
            (None, true)
        }
    };
    for file in files {
        if file.file_name().is_some_and(|n| n == operators::FILE_NAME) {
            continue;
        }
        let doc = match Doc::read(&file) {
            Ok(d) => d,
            Err(p) => {
                problems.push(p);
                continue;
            }
        };
        match load_doc(&doc) {
            Ok(p) => {
                if let Some(first) = policies.iter().find(|q| q.id == p.id) {
                    problems.push(Problem::new(
                        doc.at(&[Seg::Key("id")]),
                        format!(
                            "duplicate policy id `{}`: {} already uses it",
                            p.id,
                            first.path.display()
                        ),
                    ));
                } else {
                    if !roster_broken && !roles_in_store {
                        problems.extend(operators::check_policy_roles(
                            &doc,
                            &p,
                            roster.as_ref(),
                            &roster_path,
                        ));
                    }
                    policies.push(p);
                }
            }
            Err(mut ps) => problems.append(&mut ps),
        }
    }
    (policies, problems)
}

pub fn load_doc(doc: &Doc) -> Result<Policy, Vec<Problem>> {
    let spec: PolicySpec = doc.parse().map_err(|p| vec![p])?;
    let mut problems = Vec::new();
    let mut windows = BTreeMap::new();
    for (name, w) in &spec.windows {
        let base = [Seg::Key("windows"), Seg::Key(name.as_str())];
        let mut days = Vec::new();
        for (i, d) in w.days.iter().enumerate() {
            match window::parse_day(d) {
                Some(day) => days.push(day),
                None => problems.push(Problem::new(
                    doc.at(&[
                        Seg::Key("windows"),
                        Seg::Key(name.as_str()),
                        Seg::Key("days"),
                        Seg::Index(i),
                    ]),
                    format!("`{d}` is not a day; use mon, tue, wed, thu, fri, sat, sun"),
                )),
            }
        }
        let hours = match &w.hours {
            None => None,
            Some(h) => match window::parse_hours(h) {
                Some(h) => Some(h),
                None => {
                    problems.push(Problem::new(
                        doc.at(&[Seg::Key("windows"), Seg::Key(name.as_str()), Seg::Key("hours")]),
                        format!("`{h}` is not a span of hours; write HH:MM-HH:MM, e.g. 08:00-20:00 (22:00-06:00 wraps midnight)"),
                    ));
                    None
                }
            },
        };
        let tz_name = w.tz.as_deref().unwrap_or("UTC");
        let tz = match tz_name.parse::<chrono_tz::Tz>() {
            Ok(tz) => tz,
            Err(_) => {
                let hint = nearest(tz_name, chrono_tz::TZ_VARIANTS.iter().map(|t| t.name()))
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                problems.push(Problem::new(
                    doc.at(&[Seg::Key("windows"), Seg::Key(name.as_str()), Seg::Key("tz")]),
                    format!("`{tz_name}` is not an IANA time zone{hint}"),
                ));
                chrono_tz::UTC
            }
        };
        let _ = base;
        windows.insert(name.clone(), Window { days, hours, tz });
    }

    let mut rules = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, r) in spec.rules.iter().enumerate() {
        let at = |k: &'static str| doc.at(&[Seg::Key("rules"), Seg::Index(i), Seg::Key(k)]);
        let when_at = |k: &'static str| {
            doc.at(&[
                Seg::Key("rules"),
                Seg::Index(i),
                Seg::Key("when"),
                Seg::Key(k),
            ])
        };
        if !seen.insert(r.id.as_str()) {
            problems.push(Problem::new(
                at("id"),
                format!("duplicate rule id `{}`", r.id),
            ));
        }
        let decision = match decision(&r.decision) {
            Ok(d) => d,
            Err(e) => {
                problems.push(Problem::new(at("decision"), e.to_string()));
                Decision::Deny
            }
        };
        for (key, names) in [
            ("window", &r.when.window),
            ("outside_window", &r.when.outside_window),
        ] {
            for n in names.iter().flat_map(OneOrMany::as_slice) {
                if !windows.contains_key(n) {
                    let hint = nearest(n, windows.keys().map(String::as_str))
                        .map(|x| format!(" (did you mean `{x}`?)"))
                        .unwrap_or_default();
                    problems.push(Problem::new(
                        when_at(key),
                        format!("window `{n}` is not defined under `windows`{hint}"),
                    ));
                }
            }
        }
        for f in r.when.finding.iter().flat_map(OneOrMany::as_slice) {
            if !FINDING_RULES.iter().any(|x| x.id == f) {
                let hint = nearest(f, FINDING_RULES.iter().map(|x| x.id))
                    .map(|x| format!(" (did you mean `{x}`?)"))
                    .unwrap_or_default();
                problems.push(Problem::new(
                    when_at("finding"),
                    format!("`{f}` is not a finding ward reports{hint}"),
                ));
            }
        }
        for b in r.when.blocks.iter().flat_map(OneOrMany::as_slice) {
            if b != "reads" && b != "writes" {
                problems.push(Problem::new(
                    when_at("blocks"),
                    format!("`{b}`: blocks is `reads` or `writes`"),
                ));
            }
        }
        for k in r.when.step_kind.iter().flat_map(OneOrMany::as_slice) {
            if !matches!(
                k.as_str(),
                "diagnostic" | "migration" | "remediation" | "adhoc"
            ) {
                problems.push(Problem::new(
                    when_at("step_kind"),
                    format!("`{k}`: step_kind is diagnostic, migration, remediation or adhoc"),
                ));
            }
        }
        let mut locks = Vec::new();
        for l in r.when.lock.iter().flat_map(OneOrMany::as_slice) {
            match LockMode::parse(l) {
                Some(m) => locks.push(m),
                None => problems.push(Problem::new(when_at("lock"), lock_error(l))),
            }
        }
        let lock_at_least = match &r.when.lock_at_least {
            None => None,
            Some(l) => match LockMode::parse(l) {
                Some(m) => Some(m),
                None => {
                    problems.push(Problem::new(when_at("lock_at_least"), lock_error(l)));
                    None
                }
            },
        };
        rules.push(Rule {
            id: r.id.clone(),
            when: r.when.clone(),
            decision,
            message: r.message.clone(),
            lock_at_least,
            locks,
        });
    }
    let default = match &spec.default {
        None => Decision::Deny,
        Some(d) => decision(d).unwrap_or_else(|e| {
            problems.push(Problem::new(doc.at(&[Seg::Key("default")]), e.to_string()));
            Decision::Deny
        }),
    };
    if problems.is_empty() {
        Ok(Policy {
            id: spec.id,
            path: doc.path.clone(),
            windows,
            rules,
            default,
            concurrent_sessions: spec.concurrent_sessions,
        })
    } else {
        problems.sort();
        Err(problems)
    }
}

fn lock_error(l: &str) -> String {
    let names: Vec<&str> = LockMode::ALL.iter().map(|m| m.name()).collect();
    format!("`{l}` is not a lock mode; use one of {}", names.join(", "))
}

/// Why a rule's `decision:` (or the policy's `default:`) is refused; the
/// caller places it at the key in the policy file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecisionError {
    #[error(
        "`{0}` is not a decision; use allow, deny, approve or {{ approve: {{ approvers: N, roles: [...] }} }}"
    )]
    UnknownWord(String),
    #[error("approvers must be at least 1 (use `allow` for none)")]
    NoApprovers,
}

fn decision(spec: &DecisionSpec) -> Result<Decision, DecisionError> {
    match spec {
        DecisionSpec::Word(w) => match w.as_str() {
            "allow" => Ok(Decision::Allow),
            "deny" => Ok(Decision::Deny),
            "approve" => Ok(Decision::Approve {
                approvers: 1,
                roles: Vec::new(),
            }),
            other => Err(DecisionError::UnknownWord(other.to_string())),
        },
        DecisionSpec::Approve { approve } => {
            if approve.approvers == 0 {
                return Err(DecisionError::NoApprovers);
            }
            Ok(Decision::Approve {
                approvers: approve.approvers,
                roles: approve.roles.clone(),
            })
        }
    }
}

#[cfg(test)]
mod tests;
