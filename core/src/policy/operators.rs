//! Who holds which approver role: `policies/operators.yaml`, reviewed like
//! code, until an authenticated source of roles exists.
//!
//! ```yaml
//! operators:
//!   alice: [owner, dba]
//!   bob: [dba]
//! ```
//!
//! A policy rule `approve: { approvers: 2, roles: [owner] }` counts an
//! approval toward `owner` only from an operator this file says holds it.
//! Without the file no one holds any role, so a rule that names roles can
//! never be satisfied (the admission says so; it never ignores the roles).
//!
//! This module only loads and validates the file; it never decides whether
//! an approval counts (that is `gate::admit`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::diag::{Problem, nearest};
use crate::yaml::{Doc, Seg};

/// The file name, inside the policies directory.
pub const FILE_NAME: &str = "operators.yaml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct OperatorsSpec {
    operators: BTreeMap<String, Vec<String>>,
}

/// The loaded roster: each operator and the roles they hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Operators {
    /// The file it came from (named in refusals).
    pub path: PathBuf,
    pub holders: BTreeMap<String, BTreeSet<String>>,
}

impl Operators {
    /// The roles `operator` holds (none for an operator not in the file).
    pub fn roles_of(&self, operator: &str) -> Vec<String> {
        self.holders
            .get(operator)
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every role some operator holds.
    pub fn known_roles(&self) -> BTreeSet<&str> {
        self.holders
            .values()
            .flat_map(|r| r.iter().map(String::as_str))
            .collect()
    }
}

/// A role or operator name: lowercase letters, digits, `_`, `-`, `.`, `@`
/// (no commas or spaces: the session log joins roles with commas).
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.' | '@')
        })
}

/// Loads and validates a roster from its text.
pub fn load_doc(doc: &Doc) -> Result<Operators, Vec<Problem>> {
    let spec: OperatorsSpec = doc.parse().map_err(|p| vec![p])?;
    let mut problems = Vec::new();
    let mut holders = BTreeMap::new();
    for (op, roles) in &spec.operators {
        let at = || doc.key_at(&[Seg::Key("operators"), Seg::Key(op.as_str())]);
        if op.trim().is_empty() || op.contains(',') || op.chars().any(char::is_whitespace) {
            problems.push(Problem::new(
                at(),
                format!("`{op}` is not an operator name (no spaces or commas)"),
            ));
        }
        if roles.is_empty() {
            problems.push(Problem::new(
                at(),
                format!("operator `{op}` holds no role; list at least one, or remove the entry"),
            ));
        }
        let mut set = BTreeSet::new();
        for (i, r) in roles.iter().enumerate() {
            if !valid_name(r) {
                problems.push(Problem::new(
                    doc.at(&[Seg::Key("operators"), Seg::Key(op.as_str()), Seg::Index(i)]),
                    format!("`{r}` is not a role name; use lowercase letters, digits, `_` and `-`"),
                ));
            }
            set.insert(r.clone());
        }
        holders.insert(op.clone(), set);
    }
    if problems.is_empty() {
        Ok(Operators {
            path: doc.path.clone(),
            holders,
        })
    } else {
        problems.sort();
        Err(problems)
    }
}

/// Loads `dir/operators.yaml`; `Ok(None)` when there is no such file.
pub fn load(dir: &Path) -> Result<Option<Operators>, Vec<Problem>> {
    let path = dir.join(FILE_NAME);
    if !path.is_file() {
        return Ok(None);
    }
    let doc = Doc::read(&path).map_err(|p| vec![p])?;
    load_doc(&doc).map(Some)
}

/// Problems with the roles a policy names: a role no operator holds (a
/// typo, or a rule no approval could ever satisfy), or any role at all when
/// there is no roster. `doc` is the policy's file.
pub fn check_policy_roles(
    doc: &Doc,
    policy: &super::Policy,
    roster: Option<&Operators>,
    roster_path: &Path,
) -> Vec<Problem> {
    let mut out = Vec::new();
    for (i, rule) in policy.rules.iter().enumerate() {
        let super::Decision::Approve { roles, .. } = &rule.decision else {
            continue;
        };
        let at = || doc.at(&[Seg::Key("rules"), Seg::Index(i), Seg::Key("decision")]);
        for role in roles {
            match roster {
                None => out.push(Problem::new(
                    at(),
                    format!(
                        "rule `{}` requires an approver with role `{role}`, but there is no {}: no approval can satisfy it (create the file: `operators: {{ NAME: [{role}] }}`)",
                        rule.id,
                        roster_path.display()
                    ),
                )),
                Some(r) if !r.known_roles().contains(role.as_str()) => {
                    let hint = nearest(role, r.known_roles())
                        .map(|x| format!(" (did you mean `{x}`?)"))
                        .unwrap_or_default();
                    out.push(Problem::new(
                        at(),
                        format!(
                            "rule `{}` requires role `{role}`, which no operator in {} holds{hint}",
                            rule.id,
                            r.path.display()
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Doc {
        Doc::new("policies/operators.yaml", text)
    }

    #[test]
    fn a_roster_maps_each_operator_to_the_roles_they_hold() {
        let r = load_doc(&doc("operators:\n  alice: [owner, dba]\n  bob: [dba]\n")).expect("loads");
        assert_eq!(
            r.roles_of("alice"),
            vec!["dba".to_string(), "owner".to_string()]
        );
        assert_eq!(r.roles_of("bob"), vec!["dba".to_string()]);
        assert!(r.roles_of("mallory").is_empty());
        assert_eq!(r.known_roles(), BTreeSet::from(["dba", "owner"]));
    }

    #[test]
    fn a_bad_role_name_and_an_unknown_key_are_reported_with_line_and_column() {
        let errs = load_doc(&doc("operators:\n  alice: [owner, \"D B A\"]\n")).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!((errs[0].location.line, errs[0].location.col), (2, 18));
        assert!(
            errs[0].message.contains("not a role name"),
            "{}",
            errs[0].message
        );
        let errs = load_doc(&doc("operator:\n  alice: [owner]\n")).unwrap_err();
        assert_eq!(errs[0].location.line, 1);
        assert!(errs[0].message.contains("operators"), "{}", errs[0].message);
        let errs = load_doc(&doc("operators:\n  alice: []\n")).unwrap_err();
        assert!(
            errs[0].message.contains("holds no role"),
            "{}",
            errs[0].message
        );
    }

    #[test]
    fn a_policy_role_no_operator_holds_is_reported_at_the_rule() {
        let policy_text = "id: p\nrules:\n  - id: two-owners\n    when: { risk: destructive }\n    decision: { approve: { approvers: 2, roles: [ownr] } }\n";
        let pdoc = Doc::new("policies/p.yaml", policy_text);
        let policy = super::super::load_doc(&pdoc).expect("policy loads");
        let roster = load_doc(&doc("operators:\n  alice: [owner]\n")).expect("loads");
        let problems = check_policy_roles(
            &pdoc,
            &policy,
            Some(&roster),
            Path::new("policies/operators.yaml"),
        );
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].location.line, 5);
        assert!(
            problems[0].message.contains("did you mean `owner`"),
            "{}",
            problems[0].message
        );
        let problems =
            check_policy_roles(&pdoc, &policy, None, Path::new("policies/operators.yaml"));
        assert!(
            problems[0]
                .message
                .contains("there is no policies/operators.yaml"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn loading_the_policies_directory_checks_the_roster_and_the_roles_policies_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("default.yaml"),
            "id: default\nrules:\n  - id: owners\n    when: { risk: schema }\n    decision: { approve: { approvers: 1, roles: [owner] } }\n",
        )
        .expect("write");
        // No roster: the role can never be satisfied, and check says so.
        let (policies, problems) = super::super::load_dir(dir.path());
        assert_eq!(policies.len(), 1, "{problems:?}");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].message.contains("no approval can satisfy it"),
            "{}",
            problems[0]
        );
        // A roster that is not a policy is not loaded as one.
        std::fs::write(dir.path().join(FILE_NAME), "operators:\n  alice: [owner]\n")
            .expect("write");
        let (policies, problems) = super::super::load_dir(dir.path());
        assert_eq!((policies.len(), problems.len()), (1, 0), "{problems:?}");
        // A broken roster is reported at its line.
        std::fs::write(dir.path().join(FILE_NAME), "operators:\n  alice: owner\n").expect("write");
        let (_, problems) = super::super::load_dir(dir.path());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].location.file.ends_with(FILE_NAME));
        assert_eq!(problems[0].location.line, 2);
    }
}
