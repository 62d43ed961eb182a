//! THE decision point: may this statement run here, now?
//!
//! `decide` is a pure function of the statement's analysis, the runbook's
//! declared risk, the target, the policy and the clock. It never trusts a
//! claim of risk from the model: the class comes from the SQL itself, and a
//! runbook's declared `risk` can only raise it.
//!
//! `admit` is the one admission path every front end goes through: the
//! policy's verdict plus the contract's rules (ad-hoc SQL is read-only, a
//! dry run executes reads only, standing approvals, approvals from distinct
//! operators holding the required roles). Sessions call it when a
//! statement is proposed and again right before it executes; nothing else
//! re-derives any part of it. Like `decide`, it never does I/O.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Serialize;

use crate::contract::Adhoc;
use crate::exec::{Identity, Mode, Target};
use crate::policy::{Decision, Matched, Policy};
use crate::sql::Risk;

/// What the gate is asked about: the analysis, the runbook's declared risk
/// (raise only), the target's environment, the runbook and step kind, table
/// sizes when known, and the clock.
pub use crate::policy::Context as GateInput;

/// The gate's answer, with everything needed to explain it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub decision: Decision,
    /// The class the decision used.
    pub risk: Risk,
    /// Every rule that matched, in policy order.
    pub rules: Vec<Matched>,
    /// True when no rule matched and the policy's default applied.
    pub defaulted: bool,
    pub policy: String,
}

impl Verdict {
    /// The rules whose decision equals the verdict: the ones that made it.
    pub fn deciding_rules(&self) -> Vec<&Matched> {
        self.rules
            .iter()
            .filter(|m| {
                m.decision.name() == self.decision.name()
                    && m.decision.approvers() == self.decision.approvers()
            })
            .collect()
    }
}

pub fn decide(policy: &Policy, input: &GateInput) -> Verdict {
    let rules = policy.matches(input);
    let decision = policy.decide(&rules);
    Verdict {
        defaulted: rules.is_empty(),
        decision,
        risk: input.risk(),
        rules,
        policy: policy.id.clone(),
    }
}

/// An approval given so far, with the roles its operator holds (from the
/// roster, `policies/operators.yaml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Given {
    pub operator: String,
    pub roles: Vec<String>,
}

/// Everything admission depends on: the gate's input (analysis, clock,
/// table size, environment, identity) and the contract's rules.
#[derive(Debug, Clone)]
pub struct Admission<'a> {
    pub policy: &'a Policy,
    pub gate: GateInput<'a>,
    /// `Some(what the contract allows)` when the proposal is the agent's
    /// own SQL; `None` for a runbook step.
    pub adhoc: Option<Adhoc>,
    /// How the statement would execute.
    pub mode: Mode,
    /// The session runs read-only statements only.
    pub dry_run: bool,
    /// Approvals logged for this proposal so far, in order (repeats
    /// included: the same operator never counts twice).
    pub approvals: &'a [Given],
    /// A standing approval (`for_session`) in force for this statement.
    pub standing: Option<&'a Given>,
    /// The roster's file, `None` when there is none (then no approval can
    /// satisfy a role).
    pub roster: Option<&'a Path>,
    /// `Some(prefix)` when roles are PostgreSQL role memberships the team
    /// store authenticated (policy role `R` is `<prefix>R`), not the
    /// roster's: the messages say so.
    pub store_roles: Option<&'a str>,
}

/// What admission decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// Run it now.
    Run,
    /// Needs `more` approvals from further distinct operators, among them
    /// holders of `missing_roles`. `note` says why that cannot happen when
    /// it cannot (no roster, or no one in it holds a role).
    NeedsApprovals {
        more: u32,
        missing_roles: Vec<String>,
        note: Option<String>,
    },
    /// Never runs: the rules that say so and why.
    Deny { rules: Vec<String>, message: String },
    /// A dry run records it with its verdict and does not run it.
    DryRunSkip,
}

impl Admit {
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// Which of the four it is, as the session log stores it.
    pub fn kind(&self) -> AdmitKind {
        match self {
            Admit::Run => AdmitKind::Run,
            Admit::NeedsApprovals { .. } => AdmitKind::NeedsApprovals,
            Admit::Deny { .. } => AdmitKind::Deny,
            Admit::DryRunSkip => AdmitKind::DryRun,
        }
    }
}

/// An [`Admit`] without its details: the word `readmitted` events store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdmitKind {
    Run,
    NeedsApprovals,
    Deny,
    DryRun,
}

impl AdmitKind {
    pub fn name(self) -> &'static str {
        match self {
            AdmitKind::Run => "run",
            AdmitKind::NeedsApprovals => "needs_approvals",
            AdmitKind::Deny => "deny",
            AdmitKind::DryRun => "dry_run",
        }
    }

    /// In words for people: `run`, `needs approvals`, `deny`, `dry run`.
    pub fn words(self) -> &'static str {
        match self {
            AdmitKind::Run => "run",
            AdmitKind::NeedsApprovals => "needs approvals",
            AdmitKind::Deny => "deny",
            AdmitKind::DryRun => "dry run",
        }
    }
}

/// Admission's answer: the verdict (the policy's, with the contract's rules
/// folded in), what to do now, and how the approvals were counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    pub verdict: Verdict,
    pub admit: Admit,
    /// Operators whose approval counts, in order.
    pub counted: Vec<String>,
    /// Approvals that do not count: (operator, why).
    pub refused: Vec<(String, String)>,
    /// The standing approval answered it.
    pub by_standing: bool,
}

/// Rule id of the contract's "ad-hoc SQL is read-only" rule.
pub const ADHOC_READ_ONLY: &str = "contract:adhoc-read-only";
/// Rule id of the contract's "no ad-hoc SQL in this runbook" rule.
pub const ADHOC_NONE: &str = "contract:no-adhoc";

/// Whether a verdict may be answered by a standing approval: one approver,
/// and never a destructive, privilege or unknown statement.
pub fn standing_allowed(risk: Option<Risk>, approvers: u32) -> bool {
    approvers <= 1 && matches!(risk, Some(Risk::ReadOnly | Risk::Write | Risk::Schema))
}

/// THE admission decision: may this proposal run now? Pure: the caller
/// gathers the clock, the policy, table sizes, identity and approvals, and
/// calls it when the statement is proposed and again right before it runs.
pub fn admit(a: &Admission<'_>) -> Admitted {
    let mut verdict = decide(a.policy, &a.gate);
    match a.adhoc {
        Some(Adhoc::None) => contract_deny(
            &mut verdict,
            ADHOC_NONE,
            "the runbook does not allow the agent's own SQL",
        ),
        // The contract allows the agent read-only SQL only, whatever the
        // policy would let a human run.
        Some(Adhoc::ReadOnly) if verdict.risk != Risk::ReadOnly => contract_deny(
            &mut verdict,
            ADHOC_READ_ONLY,
            "the runbook allows the agent read-only SQL only",
        ),
        _ => {}
    }
    let mut out = Admitted {
        verdict,
        admit: Admit::Run,
        counted: Vec::new(),
        refused: Vec::new(),
        by_standing: false,
    };
    // A dry run executes read-only statements only; everything else is
    // recorded with the verdict it would get.
    if a.dry_run && (a.mode != Mode::ReadOnly || out.verdict.risk != Risk::ReadOnly) {
        out.admit = Admit::DryRunSkip;
        return out;
    }
    let (needed, roles) = match &out.verdict.decision {
        Decision::Allow => return out,
        Decision::Deny => {
            out.admit = Admit::Deny {
                rules: out.verdict.rules.iter().map(|m| m.id.clone()).collect(),
                message: deny_message(&out.verdict),
            };
            return out;
        }
        Decision::Approve { approvers, roles } => (*approvers, roles.clone()),
    };
    let ruled_by = out
        .verdict
        .deciding_rules()
        .iter()
        .map(|m| format!("`{}`", m.id))
        .collect::<Vec<_>>()
        .join(", ");
    let roster = a
        .roster
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "operators.yaml".into());
    let mut covered: BTreeSet<&str> = BTreeSet::new();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let risk = Some(out.verdict.risk);
    let standing = a.standing.filter(|_| standing_allowed(risk, needed));
    let mut all: Vec<(&Given, bool)> = a.approvals.iter().map(|g| (g, false)).collect();
    if let Some(s) = standing {
        all.insert(0, (s, true));
    }
    for (g, is_standing) in all {
        let op = g.operator.trim();
        if op.is_empty() || !seen.insert(op) {
            continue;
        }
        let missing: Vec<&str> = roles
            .iter()
            .map(String::as_str)
            .filter(|r| !covered.contains(r))
            .collect();
        let slots = (needed as usize).saturating_sub(out.counted.len());
        let helps = g.roles.iter().any(|r| missing.contains(&r.as_str()));
        // Counted: it holds a role still missing, or a slot is free beyond
        // those the missing roles need (a surplus approval is harmless).
        if helps || missing.is_empty() || slots > missing.len() {
            for r in &g.roles {
                if let Some(want) = roles.iter().find(|x| *x == r) {
                    covered.insert(want.as_str());
                }
            }
            out.counted.push(op.to_string());
            out.by_standing |= is_standing;
        } else if !is_standing {
            let why = if let Some(prefix) = a.store_roles {
                format!(
                    "the approval of `{op}` does not count: {ruled_by} requires an approver with role {}, and `{op}` is not a member of {} in the team store",
                    quoted(&missing),
                    missing
                        .iter()
                        .map(|r| format!("PostgreSQL role `{prefix}{r}`"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                )
            } else if a.roster.is_none() {
                format!(
                    "the approval of `{op}` does not count: {ruled_by} requires an approver with role {} and there is no {roster}, so no one holds it",
                    quoted(&missing)
                )
            } else {
                format!(
                    "the approval of `{op}` does not count: {ruled_by} requires an approver with role {}, which `{op}` does not hold in {roster}",
                    quoted(&missing)
                )
            };
            out.refused.push((op.to_string(), why));
        }
    }
    let missing_roles: Vec<String> = roles
        .iter()
        .filter(|r| !covered.contains(r.as_str()))
        .cloned()
        .collect();
    let short = (needed as usize).saturating_sub(out.counted.len()) as u32;
    if short == 0 && missing_roles.is_empty() {
        return out;
    }
    let note = (!missing_roles.is_empty() && a.roster.is_none() && a.store_roles.is_none()).then(|| {
        format!(
            "{ruled_by} requires an approver with role {}, but there is no {roster}: no approval can satisfy it until the file names who holds the role",
            quoted(&missing_roles.iter().map(String::as_str).collect::<Vec<_>>())
        )
    });
    out.admit = Admit::NeedsApprovals {
        more: short.max(u32::from(!missing_roles.is_empty())),
        missing_roles,
        note,
    };
    out.by_standing = false;
    out
}

fn quoted(roles: &[&str]) -> String {
    roles
        .iter()
        .map(|r| format!("`{r}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn contract_deny(verdict: &mut Verdict, id: &str, message: &str) {
    verdict.decision = Decision::Deny;
    verdict.rules.push(Matched {
        id: id.into(),
        decision: Decision::Deny,
        message: Some(message.into()),
    });
}

/// Why a denied verdict denies, in the words of the rules that decided it.
pub fn deny_message(v: &Verdict) -> String {
    let deciding = v.deciding_rules();
    let said: Vec<String> = deciding
        .iter()
        .map(|m| match &m.message {
            Some(msg) => format!("{}: {msg}", m.id),
            None => format!("{}: denied by policy `{}`", m.id, v.policy),
        })
        .collect();
    if said.is_empty() {
        format!(
            "no rule of policy `{}` matched a {} statement and its default is deny",
            v.policy, v.risk
        )
    } else {
        said.join("; ")
    }
}

/// A prod session refused because ward would read as a role that can act
/// outside the database's privilege system, with no read role to drop to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "target `{target}` is prod and ward is connected as `{user}`, which can act outside the database's privilege system (superuser, server-file or server-program roles, or CREATE in a schema on its search_path), with no read role to drop to; configure `roles: {{ read: ward_reader }}` on the target in ward.yaml (`ward roles {target}` prints the SQL that creates it), or pass --allow-superuser to run anyway (logged, and the policy condition `connected_as_superuser` applies)"
)]
pub struct SuperuserRefused {
    pub target: String,
    pub user: String,
}

/// Whether a session may read through this connection. `Ok(true)` when
/// reads run as a role that `reads_unsafely` and the target configures no
/// read role to drop to (the policy condition `connected_as_superuser`);
/// in prod that is refused unless the operator passed `--allow-superuser`.
pub fn admit_connection(
    identity: Option<&Identity>,
    target: &Target,
    allow_superuser: bool,
) -> Result<bool, SuperuserRefused> {
    let unsafe_reads =
        identity.is_some_and(Identity::reads_unsafely) && target.roles.read.is_none();
    if unsafe_reads && target.environment == "prod" && !allow_superuser {
        let who = identity.map(|i| i.user.as_str()).unwrap_or("?");
        return Err(SuperuserRefused {
            target: target.name.clone(),
            user: who.to_string(),
        });
    }
    Ok(unsafe_reads)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::sql::{Analysis, Analyzer, Engine};
    use crate::yaml::Doc;

    const POLICY: &str = r#"id: p
rules:
  - id: reads-run
    when: { risk: read_only }
    decision: allow
  - id: writes-need-one
    when: { risk: write }
    decision: approve
  - id: schema-needs-an-owner
    when: { risk: schema }
    decision: { approve: { approvers: 2, roles: [owner] } }
  - id: drops-never
    when: { risk: destructive }
    decision: deny
    message: nothing is dropped here
  - id: superuser-reads-need-two
    when: { connected_as_superuser: true, risk: read_only }
    decision: { approve: { approvers: 2 } }
default: deny
"#;

    fn policy() -> Policy {
        crate::policy::load_doc(&Doc::new("p.yaml", POLICY)).expect("policy loads")
    }

    fn analysis(sql: &str) -> Analysis {
        Analyzer::default().analyze(Engine::Postgres, sql)
    }

    fn given(op: &str, roles: &[&str]) -> Given {
        Given {
            operator: op.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }

    /// Admission of `sql` as a runbook step run for real, with `approvals`.
    fn admit_sql(sql: &str, approvals: &[Given], f: impl FnOnce(&mut Admission<'_>)) -> Admitted {
        admit_with(sql, approvals, None, f)
    }

    fn admit_with(
        sql: &str,
        approvals: &[Given],
        standing: Option<&Given>,
        f: impl FnOnce(&mut Admission<'_>),
    ) -> Admitted {
        let p = policy();
        let a = analysis(sql);
        let roster = Path::new("policies/operators.yaml");
        let mut input = Admission {
            policy: &p,
            gate: GateInput {
                analysis: &a,
                declared_risk: None,
                environment: "prod",
                runbook: Some("r"),
                step_kind: Some("remediation"),
                table_size: None,
                now: Utc
                    .with_ymd_and_hms(2026, 11, 18, 12, 0, 0)
                    .single()
                    .unwrap_or_default(),
                connected_as_superuser: false,
            },
            adhoc: None,
            mode: Mode::Write { transaction: true },
            dry_run: false,
            approvals,
            standing,
            roster: Some(roster),
            store_roles: None,
        };
        f(&mut input);
        admit(&input)
    }

    use chrono::Utc;

    #[test]
    fn a_read_runs_and_a_drop_is_denied_with_its_rule_in_its_own_words() {
        assert_eq!(admit_sql("SELECT 1", &[], |_| {}).admit, Admit::Run);
        let denied = admit_sql("DROP TABLE t", &[], |_| {});
        assert_eq!(
            denied.admit,
            Admit::Deny {
                rules: vec!["drops-never".into()],
                message: "drops-never: nothing is dropped here".into(),
            }
        );
    }

    #[test]
    fn ad_hoc_sql_runs_only_when_read_only_and_only_where_the_contract_allows_it() {
        let read = admit_sql("SELECT 1", &[], |a| a.adhoc = Some(Adhoc::ReadOnly));
        assert_eq!(read.admit, Admit::Run);
        let write = admit_sql(
            "UPDATE t SET x = 1 WHERE id = 1",
            &[given("alice", &[])],
            |a| a.adhoc = Some(Adhoc::ReadOnly),
        );
        assert!(
            matches!(&write.admit, Admit::Deny { rules, .. } if rules.contains(&ADHOC_READ_ONLY.to_string())),
            "{:?}",
            write.admit
        );
        let none = admit_sql("SELECT 1", &[], |a| a.adhoc = Some(Adhoc::None));
        assert!(
            matches!(&none.admit, Admit::Deny { rules, .. } if rules.last() == Some(&ADHOC_NONE.to_string())),
            "{:?}",
            none.admit
        );
    }

    #[test]
    fn a_dry_run_executes_reads_only_and_records_the_rest() {
        let write = admit_sql(
            "UPDATE t SET x = 1 WHERE id = 1",
            &[given("alice", &[])],
            |a| a.dry_run = true,
        );
        assert_eq!(write.admit, Admit::DryRunSkip);
        assert_eq!(write.verdict.decision.name(), "approve");
        let read = admit_sql("SELECT 1", &[], |a| {
            a.dry_run = true;
            a.mode = Mode::ReadOnly;
        });
        assert_eq!(read.admit, Admit::Run);
        // A read-only statement that would run in write mode is not run either.
        let read_in_write_mode = admit_sql("SELECT 1", &[], |a| a.dry_run = true);
        assert_eq!(read_in_write_mode.admit, Admit::DryRunSkip);
    }

    #[test]
    fn the_same_operator_counts_once_and_an_empty_name_never() {
        let a = admit_sql(
            "UPDATE t SET x = 1 WHERE id = 1",
            &[given("", &[]), given("  ", &[])],
            |_| {},
        );
        assert_eq!(
            a.admit,
            Admit::NeedsApprovals {
                more: 1,
                missing_roles: vec![],
                note: None
            }
        );
        let ok = admit_sql(
            "UPDATE t SET x = 1 WHERE id = 1",
            &[given("alice", &[])],
            |_| {},
        );
        assert_eq!(ok.admit, Admit::Run);
        assert_eq!(ok.counted, vec!["alice".to_string()]);
        let twice = admit_sql(
            "ALTER TABLE t ADD COLUMN y int",
            &[given("alice", &["owner"]), given("alice", &["owner"])],
            |_| {},
        );
        assert_eq!(
            twice.admit,
            Admit::NeedsApprovals {
                more: 1,
                missing_roles: vec![],
                note: None
            }
        );
    }

    #[test]
    fn a_required_role_needs_a_holder_and_an_approval_without_it_is_refused_naming_role_and_file() {
        // Two approvers, one of them an owner: bob may be the other one,
        // carol (no role either) then cannot count.
        let a = admit_sql(
            "ALTER TABLE t ADD COLUMN y int",
            &[given("bob", &["dba"]), given("carol", &[])],
            |_| {},
        );
        assert_eq!(a.counted, vec!["bob".to_string()]);
        assert_eq!(a.refused.len(), 1);
        assert_eq!(a.refused[0].0, "carol");
        assert!(
            a.refused[0].1.contains("role `owner`")
                && a.refused[0].1.contains("policies/operators.yaml"),
            "{}",
            a.refused[0].1
        );
        assert_eq!(
            a.admit,
            Admit::NeedsApprovals {
                more: 1,
                missing_roles: vec!["owner".into()],
                note: None
            }
        );
        let done = admit_sql(
            "ALTER TABLE t ADD COLUMN y int",
            &[given("bob", &["dba"]), given("alice", &["owner"])],
            |_| {},
        );
        assert_eq!(done.admit, Admit::Run);
        // More approvals than needed (a policy loosened since) are no refusal.
        let surplus = admit_sql(
            "UPDATE t SET x = 1 WHERE id = 1",
            &[given("bob", &[]), given("carol", &[])],
            |_| {},
        );
        assert_eq!((surplus.admit, surplus.refused.len()), (Admit::Run, 0));
    }

    #[test]
    fn with_the_team_store_a_missing_role_is_named_as_the_postgres_role_to_join() {
        let a = admit_sql(
            "ALTER TABLE t ADD COLUMN y int",
            &[given("bob", &[]), given("alice", &[])],
            |a| {
                a.roster = None;
                a.store_roles = Some("ward_");
            },
        );
        let Admit::NeedsApprovals {
            missing_roles,
            note,
            ..
        } = &a.admit
        else {
            panic!("{:?}", a.admit);
        };
        assert_eq!(missing_roles, &vec!["owner".to_string()]);
        assert_eq!(note, &None, "the store, not a missing roster, holds roles");
        assert_eq!(
            a.refused,
            vec![(
                "alice".to_string(),
                "the approval of `alice` does not count: `schema-needs-an-owner` requires an approver with role `owner`, and `alice` is not a member of PostgreSQL role `ward_owner` in the team store".to_string()
            )]
        );
    }

    #[test]
    fn without_a_roster_a_role_can_never_be_satisfied_and_admission_says_so() {
        let a = admit_sql(
            "ALTER TABLE t ADD COLUMN y int",
            &[given("bob", &[]), given("alice", &[])],
            |a| a.roster = None,
        );
        let Admit::NeedsApprovals {
            missing_roles,
            note: Some(note),
            ..
        } = &a.admit
        else {
            panic!("expected a note: {:?}", a.admit);
        };
        assert_eq!(missing_roles, &vec!["owner".to_string()]);
        assert!(note.contains("there is no operators.yaml"), "{note}");
        assert!(
            a.refused[0].1.contains("there is no operators.yaml"),
            "{:?}",
            a.refused
        );
    }

    #[test]
    fn a_standing_approval_answers_one_approver_statements_only() {
        let standing = given("alice", &[]);
        let write = admit_with(
            "UPDATE t SET x = 1 WHERE id = 1",
            &[],
            Some(&standing),
            |_| {},
        );
        assert_eq!(write.admit, Admit::Run);
        assert!(write.by_standing);
        let schema = admit_with(
            "ALTER TABLE t ADD COLUMN y int",
            &[],
            Some(&standing),
            |_| {},
        );
        assert!(!schema.by_standing);
        assert!(
            matches!(schema.admit, Admit::NeedsApprovals { more: 2, .. }),
            "{:?}",
            schema.admit
        );
        assert!(standing_allowed(Some(Risk::Write), 1));
        assert!(!standing_allowed(Some(Risk::Destructive), 1));
        assert!(!standing_allowed(Some(Risk::Unknown), 1));
        assert!(!standing_allowed(Some(Risk::Write), 2));
    }

    #[test]
    fn reading_as_a_superuser_is_a_policy_condition() {
        let plain = admit_sql("SELECT 1", &[], |a| a.mode = Mode::ReadOnly);
        assert_eq!(plain.admit, Admit::Run);
        let superuser = admit_sql("SELECT 1", &[given("alice", &[])], |a| {
            a.mode = Mode::ReadOnly;
            a.gate.connected_as_superuser = true;
        });
        assert_eq!(
            superuser.admit,
            Admit::NeedsApprovals {
                more: 1,
                missing_roles: vec![],
                note: None
            }
        );
        assert!(
            superuser
                .verdict
                .rules
                .iter()
                .any(|m| m.id == "superuser-reads-need-two")
        );
    }

    fn target(env: &str, read_role: Option<&str>) -> Target {
        Target {
            name: "orders".into(),
            engine: Engine::Postgres,
            url: crate::exec::SecretUrl::new("postgres://x@h/db"),
            environment: env.into(),
            redact: vec![],
            roles: crate::config::Roles {
                read: read_role.map(str::to_string),
                ..Default::default()
            },
            lock_timeout: None,
        }
    }

    #[test]
    fn a_superuser_connection_in_prod_without_a_read_role_is_refused_naming_the_fix() {
        let root = Identity {
            user: "postgres".into(),
            superuser: true,
            ..Identity::default()
        };
        let refused = admit_connection(Some(&root), &target("prod", None), false).unwrap_err();
        assert_eq!(
            refused,
            SuperuserRefused {
                target: "orders".into(),
                user: "postgres".into()
            }
        );
        let err = refused.to_string();
        assert!(
            err.contains("roles: { read: ward_reader }")
                && err.contains("ward roles orders")
                && err.contains("--allow-superuser"),
            "{err}"
        );
        assert_eq!(
            admit_connection(Some(&root), &target("prod", None), true),
            Ok(true)
        );
        assert_eq!(
            admit_connection(Some(&root), &target("staging", None), false),
            Ok(true)
        );
        assert_eq!(
            admit_connection(Some(&root), &target("prod", Some("ward_reader")), false),
            Ok(false)
        );
        let creator = Identity {
            user: "app".into(),
            creatable_path_schemas: vec!["public".into()],
            ..Identity::default()
        };
        assert!(admit_connection(Some(&creator), &target("prod", None), false).is_err());
        let reader = Identity {
            user: "ward_reader".into(),
            ..Identity::default()
        };
        assert_eq!(
            admit_connection(Some(&reader), &target("prod", None), false),
            Ok(false)
        );
        assert_eq!(
            admit_connection(None, &target("prod", None), false),
            Ok(false)
        );
    }
}
