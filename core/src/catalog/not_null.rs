//! Whether an `ALTER TABLE ... SET NOT NULL` will scan its table.
//!
//! PostgreSQL 12+ skips the full-table scan of `SET NOT NULL` when a
//! validated CHECK constraint already proves the column holds no NULLs
//! (`NotNullImpliedByRelConstraints`): the lock is then held only briefly,
//! which is how the add-column runbook sets a column NOT NULL on a big table.
//! The text alone cannot know that, so the analyzer reports
//! `set-not-null-scans-table`; [`refine`] drops that finding only when the
//! catalog shows, for every column the statement sets NOT NULL, a validated
//! CHECK whose expression is exactly `column IS NOT NULL`, on a plain table
//! with no inheritance children or partitions (each of those would be
//! checked, and maybe scanned, on its own). Anything else keeps the finding.
//!
//! The lookup ([`LOOKUP_SQL`]) reads only catalog columns and the stored
//! expression tree (`pg_constraint.conbin` as text), never a deparse
//! (`pg_get_constraintdef` would run the output functions of any constant's
//! type, which can be anyone's code); the tree is matched here, strictly,
//! and anything it does not recognise keeps the finding. It must only ever
//! drop this one finding, never lower a class or touch another finding.

use serde::Deserialize;

use crate::sql::{Analysis, NotNullTarget};

/// The finding this module may drop.
pub const FINDING: &str = "set-not-null-scans-table";

/// The catalog query: `$1` is the table as the statement names it (quoted
/// identifiers, resolved with the search path the statement runs with),
/// `$2` a JSON array of the column names. One row, one text column `facts`
/// (JSON), or no row when the table does not resolve. It runs like any
/// read (read role, read-only transaction, pinned search path), and, as in
/// `lookup.sql`, every comparison is between values of one type, so no
/// operator planted in pg_catalog can be a better match than the built-in.
pub const LOOKUP_SQL: &str = "\
SELECT jsonb_build_object(
  'relkind', c.relkind::text,
  'has_children', c.relhassubclass,
  'columns', coalesce((SELECT jsonb_agg(jsonb_build_object('name', a.attname::text, 'attnum', a.attnum::int8))
      FROM pg_catalog.pg_attribute a
      WHERE a.attrelid = c.oid AND a.attnum > 0::int2 AND NOT a.attisdropped
        AND a.attname::text IN (SELECT pg_catalog.jsonb_array_elements_text($2::text::jsonb))), '[]'::jsonb),
  'checks', coalesce((SELECT jsonb_agg(k.conbin::text)
      FROM pg_catalog.pg_constraint k
      WHERE k.conrelid = c.oid AND k.contype = 'c'::\"char\" AND k.convalidated), '[]'::jsonb)
)::text AS facts
FROM pg_catalog.pg_class c
WHERE c.oid = pg_catalog.to_regclass($1::text)::oid";

/// What [`LOOKUP_SQL`] returns.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Facts {
    /// `r` plain table, `p` partitioned, ...
    pub relkind: String,
    /// It has (or had) inheritance children or partitions.
    pub has_children: bool,
    /// The statement's columns that exist, with their numbers.
    pub columns: Vec<Column>,
    /// The stored expression of every validated CHECK constraint.
    pub checks: Vec<String>,
}

/// One column of the table.
#[derive(Debug, Clone, Deserialize)]
pub struct Column {
    pub name: String,
    pub attnum: i64,
}

/// The analysis with `set-not-null-scans-table` dropped from its one
/// statement when `facts` prove every column of `target` not null; else
/// the analysis as it is. Never lowers anything else.
pub fn refine(analysis: &Analysis, target: &NotNullTarget, facts: &Facts) -> Analysis {
    let mut out = analysis.clone();
    let [st] = out.statements.as_mut_slice() else {
        return out;
    };
    if facts.relkind != "r" || facts.has_children || target.columns.is_empty() {
        return out;
    }
    let proven = target.columns.iter().all(|name| {
        facts
            .columns
            .iter()
            .find(|c| &c.name == name)
            .is_some_and(|c| facts.checks.iter().any(|k| is_not_null_check(k, c.attnum)))
    });
    if proven && st.findings.iter().any(|f| f.rule == FINDING) {
        st.findings.retain(|f| f.rule != FINDING);
        let checks: Vec<String> = target
            .columns
            .iter()
            .map(|c| format!("CHECK ({c} IS NOT NULL)"))
            .collect();
        st.reasons.push(format!(
            "validated {} prove{} no NULLs: PostgreSQL skips the scan and holds the lock briefly",
            checks.join(", "),
            if checks.len() == 1 { "s" } else { "" }
        ));
    }
    out
}

/// Whether `conbin` (a stored expression, as text) is exactly
/// `column IS NOT NULL` on column number `attnum` of the constrained table:
/// `{NULLTEST :arg {VAR :varno 1 :varattno N ... :varlevelsup 0 ...}
/// :nulltesttype 1 :argisrow false :location L}`. The fields of `VAR`
/// differ between server versions, so only the ones that matter are read;
/// the rest of the tree must be exactly this.
pub fn is_not_null_check(conbin: &str, attnum: i64) -> bool {
    let Some(rest) = conbin.trim().strip_prefix("{NULLTEST :arg {VAR ") else {
        return false;
    };
    // A VAR holds no nested node, so its first `}` closes it.
    let Some((var, tail)) = rest.split_once('}') else {
        return false;
    };
    if var.contains('{') {
        return false;
    }
    let tokens: Vec<&str> = var.split_whitespace().collect();
    let field = |key: &str| {
        tokens
            .iter()
            .position(|t| *t == key)
            .and_then(|i| tokens.get(i + 1))
            .copied()
    };
    let attnum = attnum.to_string();
    if attnum.starts_with('-') || attnum == "0" {
        return false;
    }
    if field(":varno") != Some("1")
        || field(":varattno") != Some(attnum.as_str())
        || field(":varlevelsup") != Some("0")
    {
        return false;
    }
    // IS_NOT_NULL is 1; a row-wise test (argisrow) is not what SET NOT NULL
    // checks.
    match tail.split_whitespace().collect::<Vec<_>>().as_slice() {
        [
            ":nulltesttype",
            "1",
            ":argisrow",
            "false",
            ":location",
            last,
        ] => last
            .strip_suffix('}')
            .is_some_and(|l| l.parse::<i64>().is_ok()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As PostgreSQL 15 stores `CHECK (a IS NOT NULL)` with `a` column 2.
    const PG15_A: &str = "{NULLTEST :arg {VAR :varno 1 :varattno 2 :vartype 23 :vartypmod -1 :varcollid 0 :varlevelsup 0 :varnosyn 1 :varattnosyn 2 :location 77} :nulltesttype 1 :argisrow false :location 79}";
    /// PostgreSQL 16+ adds `:varnullingrels`, 18 `:varreturningtype`.
    const PG18_A: &str = "{NULLTEST :arg {VAR :varno 1 :varattno 2 :vartype 23 :vartypmod -1 :varcollid 0 :varnullingrels (b) :varlevelsup 0 :varreturningtype 0 :varnosyn 1 :varattnosyn 2 :location 77} :nulltesttype 1 :argisrow false :location 79}";

    #[test]
    fn a_stored_is_not_null_test_of_the_column_proves_it_on_every_version() {
        assert!(is_not_null_check(PG15_A, 2));
        assert!(is_not_null_check(PG18_A, 2));
    }

    #[test]
    fn anything_but_exactly_column_is_not_null_proves_nothing() {
        // Another column.
        assert!(!is_not_null_check(PG15_A, 3));
        // IS NULL.
        assert!(!is_not_null_check(
            &PG15_A.replace(":nulltesttype 1", ":nulltesttype 0"),
            2
        ));
        // A row-wise test.
        assert!(!is_not_null_check(
            &PG15_A.replace(":argisrow false", ":argisrow true"),
            2
        ));
        // An outer query's column.
        assert!(!is_not_null_check(
            &PG15_A.replace(":varlevelsup 0", ":varlevelsup 1"),
            2
        ));
        // `a IS NOT NULL AND b > 0`, as PostgreSQL 15 stores it.
        let and = "{BOOLEXPR :boolop and :args ({NULLTEST :arg {VAR :varno 1 :varattno 2 :vartype 23 :vartypmod -1 :varcollid 0 :varlevelsup 0 :varnosyn 1 :varattnosyn 2 :location 197} :nulltesttype 1 :argisrow false :location 199} {OPEXPR :opno 521 :opfuncid 147 :opresulttype 16 :opretset false :opcollid 0 :inputcollid 0 :args ({VAR :varno 1 :varattno 3 :vartype 23 :vartypmod -1 :varcollid 0 :varlevelsup 0 :varnosyn 1 :varattnosyn 3 :location 215} {CONST :consttype 23 :consttypmod -1 :constcollid 0 :constlen 4 :constbyval true :constisnull false :location 219 :constvalue 4 [ 0 0 0 0 0 0 0 0 ]}) :location 217}) :location 211}";
        assert!(!is_not_null_check(and, 2));
        // Something after the test.
        assert!(!is_not_null_check(&format!("{PG15_A} {{CONST}}"), 2));
        assert!(!is_not_null_check("", 2));
        assert!(!is_not_null_check(PG15_A, 0));
    }

    fn analysis(sql: &str) -> Analysis {
        crate::sql::Analyzer::default().analyze(crate::sql::Engine::Postgres, sql)
    }

    fn facts(relkind: &str, has_children: bool, checks: &[&str]) -> Facts {
        Facts {
            relkind: relkind.into(),
            has_children,
            columns: vec![
                Column {
                    name: "a".into(),
                    attnum: 2,
                },
                Column {
                    name: "b".into(),
                    attnum: 3,
                },
            ],
            checks: checks.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn findings(a: &Analysis) -> Vec<&str> {
        a.findings().iter().map(|f| f.rule).collect()
    }

    #[test]
    fn a_validated_check_drops_only_the_scan_finding_and_keeps_the_lock() {
        let sql = "ALTER TABLE public.t ALTER COLUMN a SET NOT NULL";
        let before = analysis(sql);
        assert_eq!(findings(&before), [FINDING, "require-lock-timeout"]);
        let target = crate::sql::set_not_null_target(sql).expect("a SET NOT NULL");
        let after = refine(&before, &target, &facts("r", false, &[PG15_A]));
        assert_eq!(findings(&after), ["require-lock-timeout"]);
        assert_eq!(after.risk, before.risk);
        assert_eq!(after.lock(), before.lock());
        assert_eq!(after.statements[0].blocks, before.statements[0].blocks);
        assert!(
            after.statements[0]
                .reasons
                .last()
                .is_some_and(|r| r.contains("validated CHECK (a IS NOT NULL) proves no NULLs")),
            "{:?}",
            after.statements[0].reasons
        );
    }

    #[test]
    fn the_scan_finding_stays_without_a_proof_for_every_column_or_on_a_table_with_children() {
        let one = "ALTER TABLE t ALTER COLUMN a SET NOT NULL";
        let both = "ALTER TABLE t ALTER COLUMN a SET NOT NULL, ALTER COLUMN b SET NOT NULL";
        let kept = |sql: &str, f: &Facts| {
            let a = analysis(sql);
            let target = crate::sql::set_not_null_target(sql).expect("a SET NOT NULL");
            findings(&refine(&a, &target, f)).contains(&FINDING)
        };
        assert!(kept(one, &facts("r", false, &[])));
        assert!(kept(both, &facts("r", false, &[PG15_A])));
        assert!(kept(one, &facts("r", true, &[PG15_A])));
        assert!(kept(one, &facts("p", false, &[PG15_A])));
        let b = PG15_A.replace(":varattno 2", ":varattno 3");
        assert!(!kept(both, &facts("r", false, &[PG15_A, &b])));
    }
}
