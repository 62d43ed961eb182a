//! Migration findings in the spirit of squawk's rules: each has a stable id
//! (policies match on it) and one line of advice.

use serde::{Serialize, Serializer};

/// A rule the analyzer can report.
#[derive(Debug, PartialEq, Eq)]
pub struct FindingRule {
    pub id: &'static str,
    pub advice: &'static str,
}

/// Every finding the analyzer knows, in documentation order.
pub const FINDING_RULES: &[FindingRule] = &[
    FindingRule {
        id: "require-concurrent-index-creation",
        advice: "CREATE INDEX without CONCURRENTLY blocks writes to the table until the build ends; use CREATE INDEX CONCURRENTLY",
    },
    FindingRule {
        id: "require-concurrent-index-deletion",
        advice: "DROP INDEX without CONCURRENTLY takes ACCESS EXCLUSIVE on the table; use DROP INDEX CONCURRENTLY",
    },
    FindingRule {
        id: "require-concurrent-reindex",
        advice: "REINDEX without CONCURRENTLY blocks writes (and reads using the index); use REINDEX ... CONCURRENTLY",
    },
    FindingRule {
        id: "constraint-missing-not-valid",
        advice: "adding a CHECK or FOREIGN KEY constraint scans the table under lock; add it NOT VALID, then VALIDATE CONSTRAINT separately",
    },
    FindingRule {
        id: "disallowed-unique-constraint",
        advice: "adding a UNIQUE or PRIMARY KEY constraint builds its index under ACCESS EXCLUSIVE; CREATE UNIQUE INDEX CONCURRENTLY first, then ADD CONSTRAINT ... USING INDEX",
    },
    FindingRule {
        id: "changing-column-type",
        advice: "changing a column's type usually rewrites the whole table under ACCESS EXCLUSIVE; add a new column, backfill in batches and swap",
    },
    FindingRule {
        id: "set-not-null-scans-table",
        advice: "SET NOT NULL scans the whole table under ACCESS EXCLUSIVE; first add CHECK (col IS NOT NULL) NOT VALID and VALIDATE it (PostgreSQL 12+ then skips the scan)",
    },
    FindingRule {
        id: "adding-field-with-volatile-default",
        advice: "a column default that is not a constant (e.g. random(), clock_timestamp(), gen_random_uuid()) rewrites the table; add the column without it and backfill",
    },
    FindingRule {
        id: "adding-required-field",
        advice: "adding a NOT NULL column without a default fails on a non-empty table; add it nullable, backfill, then set NOT NULL",
    },
    FindingRule {
        id: "ban-drop-column",
        advice: "dropping a column breaks every client that still reads it and cannot be undone; deploy code that stops using it first",
    },
    FindingRule {
        id: "ban-drop-table",
        advice: "dropping a table loses its data for good; rename it aside and drop it after a grace period",
    },
    FindingRule {
        id: "ban-drop-database",
        advice: "dropping a database loses everything in it for good",
    },
    FindingRule {
        id: "ban-truncate",
        advice: "TRUNCATE removes every row at once under ACCESS EXCLUSIVE and is not MVCC-safe; make sure a backup exists",
    },
    FindingRule {
        id: "renaming-column",
        advice: "renaming a column breaks clients that use the old name; add the new column and migrate clients first",
    },
    FindingRule {
        id: "renaming-table",
        advice: "renaming a table breaks clients that use the old name; consider a view with the old name during the transition",
    },
    FindingRule {
        id: "unbounded-write",
        advice: "UPDATE, DELETE or MERGE without a limiting WHERE (none, or always true like `WHERE true`, `1=1`, `x = x`, `... OR true`) touches every row; add a real WHERE clause or work in batches",
    },
    FindingRule {
        id: "table-rewrite",
        advice: "VACUUM FULL and CLUSTER rewrite the table under ACCESS EXCLUSIVE, blocking reads and writes; consider pg_repack",
    },
    FindingRule {
        id: "vacuum-freeze",
        advice: "VACUUM (FREEZE) reads the whole table and writes every page it freezes (and WAL for each) for hours on a big one; prefer plain VACUUM unless wraparound is near, and throttle it",
    },
    FindingRule {
        id: "refresh-matview-blocks-reads",
        advice: "REFRESH MATERIALIZED VIEW without CONCURRENTLY blocks reads of the view; use CONCURRENTLY (needs a unique index)",
    },
    FindingRule {
        id: "require-lock-timeout",
        advice: "a statement that takes a strong lock should run with a lock_timeout so it cannot queue behind a long transaction and block everyone else; SET lock_timeout first",
    },
    FindingRule {
        id: "multiple-statements",
        advice: "several statements in one step are gated as one unknown statement; split them into separate steps",
    },
    FindingRule {
        id: "disable-trigger",
        advice: "disabling triggers (ALTER TABLE ... DISABLE TRIGGER, session_replication_role = replica) silently skips audit, cascade and integrity logic for every write until re-enabled; re-enable in the same change and check nothing else writes meanwhile",
    },
    FindingRule {
        id: "sequence-restart",
        advice: "restarting a sequence (ALTER SEQUENCE ... RESTART, RESTART IDENTITY) makes new keys collide with existing rows; set it past max(id) instead",
    },
    FindingRule {
        id: "sequence-setval",
        advice: "setval() moves a sequence: set below max(id), new inserts fail on duplicate keys; check the value against the table first",
    },
    FindingRule {
        id: "unscoped-signal",
        advice: "pg_terminate_backend/pg_cancel_backend over a set of sessions with no pid, application_name or usename predicate can signal every backend, ward's own and the applications' included; scope it to one pid, application or user",
    },
    FindingRule {
        id: "multi-session-signal",
        advice: "pg_terminate_backend/pg_cancel_backend scoped by application or user, not by one pid, signals every session that matches when it runs; check the scope and cap it (LIMIT) before approving",
    },
    FindingRule {
        id: "explain-analyze-executes",
        advice: "EXPLAIN ANALYZE really executes the statement; without ANALYZE it only plans",
    },
];

/// One finding on one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: &'static str,
    pub message: &'static str,
}

impl Finding {
    pub fn new(rule: &'static str) -> Finding {
        let message = FINDING_RULES
            .iter()
            .find(|r| r.id == rule)
            .map_or("", |r| r.advice);
        Finding { rule, message }
    }
}

impl Serialize for Finding {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Finding", 2)?;
        st.serialize_field("rule", self.rule)?;
        st.serialize_field("message", self.message)?;
        st.end()
    }
}
