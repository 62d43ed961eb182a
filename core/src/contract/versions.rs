//! PostgreSQL versions and runbook steps: which steps a server of a given
//! major version can run (`min_version`, `max_version`), which of a step's
//! SQL alternatives it runs (`sql_by_version`), and a small table of
//! catalog columns, views, functions and settings that appeared in (or
//! left) a known major version, so `ward check` can report a step that
//! uses one outside its declared versions.
//!
//! The table is deliberately small and matched on tokens, not on a parse
//! tree: it can miss a use (then the version matrix test finds it on a real
//! server), it must never report a use that is not one.

use serde::Serialize;

use std::collections::BTreeMap;

use super::{Contract, StepSpec, VerifySpec};
use crate::platform::Platform;

/// The oldest PostgreSQL major version runbooks are checked against.
pub const OLDEST_SUPPORTED: u32 = 13;
/// The newest PostgreSQL major version runbooks are checked against.
pub const NEWEST_SUPPORTED: u32 = 18;

/// The major version of a `server_version_num` (150004 -> 15; 90624 -> 9).
pub fn major_of(version_num: u32) -> u32 {
    version_num / 10_000
}

/// A step a session left out because the server's version or the target's
/// platform lacks what it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeftOut {
    pub step: String,
    /// Why, in words that follow "left out: " ("it needs PostgreSQL 14 or
    /// later, and this server is PostgreSQL 13", "it does not work on RDS:
    /// ...").
    pub why: String,
    /// Left out for the server's version (not its platform).
    pub for_version: bool,
}

impl StepSpec {
    /// Whether the step works on `platform` (`platforms:` / `not_on:`).
    pub fn works_on(&self, platform: Platform) -> bool {
        (self.platforms.is_empty() || self.platforms.contains(&platform))
            && !self.not_on.contains(&platform)
    }

    /// Whether a server of major version `major` can run the step.
    pub fn available_on(&self, major: u32) -> bool {
        self.min_version.is_none_or(|min| major >= min)
            && self.max_version.is_none_or(|max| major <= max)
    }

    /// The versions the step needs, in words: "PostgreSQL 14 or later",
    /// "PostgreSQL 16 or earlier", "PostgreSQL 14 to 16".
    pub fn versions_needed(&self) -> String {
        match (self.min_version, self.max_version) {
            (Some(min), Some(max)) => format!("PostgreSQL {min} to {max}"),
            (Some(min), None) => format!("PostgreSQL {min} or later"),
            (None, Some(max)) => format!("PostgreSQL {max} or earlier"),
            (None, None) => "any PostgreSQL version".to_string(),
        }
    }

    /// The SQL a server of major version `major` runs: the `sql_by_version`
    /// entry with the highest key at most `major`, else `sql`. Unknown
    /// version (`None`, no server): `sql`.
    pub fn sql_for(&self, major: Option<u32>) -> &str {
        pick(&self.sql, &self.sql_by_version, major)
    }

    /// Each of the step's statements (`sql`, then every `sql_by_version`
    /// entry) with the major versions it runs on, inclusive, within
    /// [`OLDEST_SUPPORTED`]..=[`NEWEST_SUPPORTED`] where the step does not
    /// say. `None` for the key of `sql` itself.
    pub fn sql_variants(&self) -> Vec<(Option<u32>, &str, u32, u32)> {
        variants(
            &self.sql,
            &self.sql_by_version,
            self.min_version,
            self.max_version,
        )
    }

    /// [`StepSpec::sql_variants`] of the step's `verify` query, within the
    /// step's versions.
    pub fn verify_variants(&self) -> Vec<(Option<u32>, &str, u32, u32)> {
        self.verify.as_ref().map_or_else(Vec::new, |v| {
            variants(
                &v.sql,
                &v.sql_by_version,
                self.min_version,
                self.max_version,
            )
        })
    }
}

impl VerifySpec {
    /// The verify query a server of major version `major` runs, chosen
    /// like [`StepSpec::sql_for`].
    pub fn sql_for(&self, major: Option<u32>) -> &str {
        pick(&self.sql, &self.sql_by_version, major)
    }
}

/// The entry of `by_version` with the highest key at most `major`, else
/// `base`; `base` when the version is unknown.
fn pick<'a>(base: &'a str, by_version: &'a BTreeMap<u32, String>, major: Option<u32>) -> &'a str {
    major
        .and_then(|m| by_version.range(..=m).next_back())
        .map_or(base, |(_, sql)| sql.as_str())
}

/// `base` and each alternative of `by_version` with the major versions it
/// runs on, inclusive, within `min`..=`max` (unset: the supported range).
fn variants<'a>(
    base: &'a str,
    by_version: &'a BTreeMap<u32, String>,
    min: Option<u32>,
    max: Option<u32>,
) -> Vec<(Option<u32>, &'a str, u32, u32)> {
    let lo = min.unwrap_or(OLDEST_SUPPORTED);
    let hi = max.unwrap_or(NEWEST_SUPPORTED.max(lo));
    let keys: Vec<u32> = by_version.keys().copied().collect();
    let mut out = Vec::new();
    let base_hi = keys.first().map_or(hi, |k| k.saturating_sub(1).min(hi));
    out.push((None, base, lo, base_hi));
    for (n, (key, sql)) in by_version.iter().enumerate() {
        let until = keys
            .get(n + 1)
            .map_or(hi, |next| next.saturating_sub(1).min(hi));
        out.push((Some(*key), sql.as_str(), (*key).max(lo), until));
    }
    out
}

impl Contract {
    /// Takes out the steps a server of major version `major` cannot run,
    /// recording each in [`Contract::left_out`], so neither the planner nor
    /// an agent's tool list ever proposes one.
    pub fn keep_steps_for(&mut self, major: u32) {
        let (keep, drop): (Vec<_>, Vec<_>) = std::mem::take(&mut self.steps)
            .into_iter()
            .partition(|s| s.spec.available_on(major));
        self.steps = keep;
        self.left_out.extend(drop.into_iter().map(|s| LeftOut {
            why: format!(
                "it needs {}, and this server is PostgreSQL {major}",
                s.spec.versions_needed()
            ),
            step: s.spec.id,
            for_version: true,
        }));
    }

    /// Takes out the steps that do not work on `platform` (`platforms:`,
    /// `not_on:`), recording each with its `platform_note` in
    /// [`Contract::left_out`], so neither the planner nor an agent's tool
    /// list ever proposes one.
    pub fn keep_steps_for_platform(&mut self, platform: Platform) {
        let (keep, drop): (Vec<_>, Vec<_>) = std::mem::take(&mut self.steps)
            .into_iter()
            .partition(|s| s.spec.works_on(platform));
        self.steps = keep;
        self.left_out.extend(drop.into_iter().map(|s| {
            let why = match &s.spec.platform_note {
                Some(note) => format!(
                    "it does not work on {}: {}",
                    platform.display(),
                    note.replace("{platform}", platform.display()).trim_end()
                ),
                None => format!("it does not work on {}", platform.display()),
            };
            LeftOut {
                step: s.spec.id,
                why,
                for_version: false,
            }
        }));
    }
}

/// How a version-gated name shows in SQL.
#[derive(Debug, Clone, Copy)]
enum Use {
    /// The identifier anywhere (a view, a column with a distinctive name, a
    /// role).
    Word,
    /// A column read through a qualifier (`a.query_id`), since the bare
    /// name is common as an alias or an input.
    Qualified,
    /// `current_setting('name')` without `missing_ok`, or `SHOW name`,
    /// which fail when the setting does not exist (reading `pg_settings`
    /// by name does not).
    Setting,
    /// A call of the function with this many arguments.
    Call(usize),
}

/// A catalog name that appeared in `since` (and left in `until`, when
/// PostgreSQL removed it).
struct Gated {
    name: &'static str,
    used: Use,
    what: &'static str,
    since: u32,
    until: Option<u32>,
}

const fn added(name: &'static str, used: Use, what: &'static str, since: u32) -> Gated {
    Gated {
        name,
        used,
        what,
        since,
        until: None,
    }
}

const fn removed(name: &'static str, used: Use, what: &'static str, until: u32) -> Gated {
    Gated {
        name,
        used,
        what,
        since: 0,
        until: Some(until),
    }
}

/// Known version-gated names, by the release notes of PostgreSQL 14-18.
const GATED: &[Gated] = &[
    added("waitstart", Use::Word, "pg_locks.waitstart", 14),
    added("query_id", Use::Qualified, "pg_stat_activity.query_id", 14),
    added("pg_stat_wal", Use::Word, "the view pg_stat_wal", 14),
    added(
        "pg_terminate_backend",
        Use::Call(2),
        "pg_terminate_backend(pid, timeout)",
        14,
    ),
    added(
        "pg_stat_statements_info",
        Use::Word,
        "the view pg_stat_statements_info",
        14,
    ),
    added(
        "pg_stat_progress_copy",
        Use::Word,
        "the view pg_stat_progress_copy",
        14,
    ),
    added(
        "pg_stat_replication_slots",
        Use::Word,
        "the view pg_stat_replication_slots",
        14,
    ),
    added(
        "vacuum_failsafe_age",
        Use::Setting,
        "the setting vacuum_failsafe_age",
        14,
    ),
    added(
        "vacuum_multixact_failsafe_age",
        Use::Setting,
        "the setting vacuum_multixact_failsafe_age",
        14,
    ),
    added(
        "idle_session_timeout",
        Use::Setting,
        "the setting idle_session_timeout",
        14,
    ),
    added(
        "archive_library",
        Use::Setting,
        "the setting archive_library",
        15,
    ),
    added(
        "reserved_connections",
        Use::Setting,
        "the setting reserved_connections",
        16,
    ),
    added("pg_stat_io", Use::Word, "the view pg_stat_io", 16),
    added(
        "last_seq_scan",
        Use::Word,
        "pg_stat_*_tables.last_seq_scan",
        16,
    ),
    added(
        "last_idx_scan",
        Use::Word,
        "pg_stat_*_tables.last_idx_scan",
        16,
    ),
    added(
        "confl_active_logicalslot",
        Use::Word,
        "pg_stat_database_conflicts.confl_active_logicalslot",
        16,
    ),
    added(
        "pg_stat_checkpointer",
        Use::Word,
        "the view pg_stat_checkpointer",
        17,
    ),
    added(
        "inactive_since",
        Use::Word,
        "pg_replication_slots.inactive_since",
        17,
    ),
    added(
        "invalidation_reason",
        Use::Word,
        "pg_replication_slots.invalidation_reason",
        17,
    ),
    added("pg_maintain", Use::Word, "the role pg_maintain", 17),
    added(
        "pg_stat_subscription_stats",
        Use::Word,
        "the view pg_stat_subscription_stats",
        15,
    ),
    added(
        "subdisableonerr",
        Use::Word,
        "pg_subscription.subdisableonerr",
        15,
    ),
    added(
        "conflicting",
        Use::Qualified,
        "pg_replication_slots.conflicting",
        16,
    ),
    added(
        "dead_tuple_bytes",
        Use::Word,
        "pg_stat_progress_vacuum.dead_tuple_bytes",
        17,
    ),
    removed(
        "num_dead_tuples",
        Use::Word,
        "pg_stat_progress_vacuum.num_dead_tuples (num_dead_item_ids from 17)",
        17,
    ),
    added(
        "confl_insert_exists",
        Use::Word,
        "pg_stat_subscription_stats.confl_insert_exists",
        18,
    ),
    added(
        "confl_update_missing",
        Use::Word,
        "pg_stat_subscription_stats.confl_update_missing",
        18,
    ),
    added(
        "confl_multiple_unique_conflicts",
        Use::Word,
        "pg_stat_subscription_stats.confl_multiple_unique_conflicts",
        18,
    ),
    added(
        "shared_blk_read_time",
        Use::Word,
        "pg_stat_statements.shared_blk_read_time",
        17,
    ),
    added(
        "pg_signal_autovacuum_worker",
        Use::Word,
        "the role pg_signal_autovacuum_worker",
        18,
    ),
    removed(
        "checkpoints_timed",
        Use::Word,
        "pg_stat_bgwriter.checkpoints_timed (pg_stat_checkpointer.num_timed from 17)",
        17,
    ),
    removed(
        "checkpoints_req",
        Use::Word,
        "pg_stat_bgwriter.checkpoints_req (pg_stat_checkpointer.num_requested from 17)",
        17,
    ),
    removed(
        "checkpoint_write_time",
        Use::Word,
        "pg_stat_bgwriter.checkpoint_write_time (pg_stat_checkpointer.write_time from 17)",
        17,
    ),
    removed(
        "buffers_checkpoint",
        Use::Word,
        "pg_stat_bgwriter.buffers_checkpoint (pg_stat_checkpointer.buffers_written from 17)",
        17,
    ),
    removed(
        "buffers_backend",
        Use::Word,
        "pg_stat_bgwriter.buffers_backend (pg_stat_io from 16)",
        17,
    ),
    removed(
        "blk_read_time",
        Use::Word,
        "pg_stat_statements.blk_read_time (shared_blk_read_time from 17)",
        17,
    ),
    removed(
        "blk_write_time",
        Use::Word,
        "pg_stat_statements.blk_write_time (shared_blk_write_time from 17)",
        17,
    ),
    removed(
        "wal_write_time",
        Use::Word,
        "pg_stat_wal.wal_write_time (pg_stat_io from 18)",
        18,
    ),
    removed(
        "wal_sync_time",
        Use::Word,
        "pg_stat_wal.wal_sync_time (pg_stat_io from 18)",
        18,
    ),
];

/// Why `sql`, run on major versions `lo..=hi`, uses something one of them
/// lacks: one message per name, e.g. "uses pg_locks.waitstart, which
/// PostgreSQL 14 added, but runs on 13".
pub fn version_problems(sql: &str, lo: u32, hi: u32) -> Vec<String> {
    let tokens = tokens(sql);
    let mut out = Vec::new();
    for g in GATED {
        if !uses(&tokens, g) {
            continue;
        }
        if g.since > lo {
            out.push(format!(
                "uses {}, which PostgreSQL {} added, but runs on {lo}; add `min_version: {}` or an `sql_by_version` alternative",
                g.what, g.since, g.since
            ));
        }
        if let Some(until) = g.until
            && hi >= until
        {
            out.push(format!(
                "uses {}, which PostgreSQL {until} removed, but runs on {hi}; add `max_version: {}` or an `sql_by_version: {{{until}: ...}}` alternative",
                g.what,
                until - 1
            ));
        }
    }
    out
}

/// Settings ward itself sets with `SET LOCAL` around a step (see
/// `exec::pg`): read with `current_setting()` or `SHOW` inside that
/// transaction they give ward's value, not the server's.
pub const WARDS_OWN_SETTINGS: &[&str] = &[
    "statement_timeout",
    "lock_timeout",
    "search_path",
    "jit",
    "row_security",
    "role",
];

/// Why `sql` would report one of ward's own `SET LOCAL` values as the
/// server's: one message per setting it reads with `current_setting()` or
/// `SHOW` (reading `pg_settings.reset_val` is what it should do instead).
pub fn own_setting_reads(sql: &str) -> Vec<String> {
    let tokens = tokens(sql);
    WARDS_OWN_SETTINGS
        .iter()
        .filter(|name| {
            (0..tokens.len()).any(|i| {
                let quoted = matches!(&tokens[i], Tok::Str(s) if s == *name);
                let current_setting = quoted
                    && i >= 2
                    && tokens[i - 1] == Tok::Punct('(')
                    && matches!(&tokens[i - 2], Tok::Word(w) if w == "current_setting");
                let show = matches!(&tokens[i], Tok::Word(w) if w == *name)
                    && i > 0
                    && matches!(&tokens[i - 1], Tok::Word(w) if w == "show");
                current_setting || show
            })
        })
        .map(|name| {
            format!(
                "reads {name} with current_setting() or SHOW, which inside ward's transaction gives ward's own SET LOCAL value, not the server's; read it from pg_settings.reset_val"
            )
        })
        .collect()
}

/// A token of SQL text: an identifier or keyword (lower case), a string
/// literal's content, or one punctuation character. Comments are dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Str(String),
    Punct(char),
}

fn tokens(sql: &str) -> Vec<Tok> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if c == '\'' || c == '"' {
            let mut text = String::new();
            i += 1;
            while i < chars.len() {
                if chars[i] == c {
                    if chars.get(i + 1) == Some(&c) {
                        text.push(c);
                        i += 2;
                        continue;
                    }
                    break;
                }
                text.push(chars[i]);
                i += 1;
            }
            i += 1;
            out.push(if c == '"' {
                Tok::Word(text)
            } else {
                Tok::Str(text.to_lowercase())
            });
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            out.push(Tok::Word(
                chars[start..i].iter().collect::<String>().to_lowercase(),
            ));
        } else {
            if !c.is_whitespace() {
                out.push(Tok::Punct(c));
            }
            i += 1;
        }
    }
    out
}

fn uses(tokens: &[Tok], g: &Gated) -> bool {
    let word = |t: &Tok| matches!(t, Tok::Word(w) if w == g.name);
    (0..tokens.len()).any(|i| match g.used {
        Use::Word => word(&tokens[i]) || matches!(&tokens[i], Tok::Str(s) if s == g.name),
        Use::Qualified => word(&tokens[i]) && i > 0 && tokens[i - 1] == Tok::Punct('.'),
        Use::Setting => {
            let quoted = matches!(&tokens[i], Tok::Str(s) if s == g.name);
            let current_setting = quoted
                && i >= 2
                && tokens[i - 1] == Tok::Punct('(')
                && matches!(&tokens[i - 2], Tok::Word(w) if w == "current_setting")
                && tokens.get(i + 1) == Some(&Tok::Punct(')'));
            let show =
                word(&tokens[i]) && i > 0 && matches!(&tokens[i - 1], Tok::Word(w) if w == "show");
            current_setting || show
        }
        Use::Call(args) => {
            word(&tokens[i])
                && tokens.get(i + 1) == Some(&Tok::Punct('('))
                && call_arguments(&tokens[i + 2..]) == args
        }
    })
}

/// How many arguments a call has, given the tokens after its `(`.
fn call_arguments(after: &[Tok]) -> usize {
    let mut depth = 0usize;
    let mut args = 0;
    let mut empty = true;
    for t in after {
        match t {
            Tok::Punct('(') | Tok::Punct('[') => depth += 1,
            Tok::Punct(')') | Tok::Punct(']') if depth == 0 => break,
            Tok::Punct(')') | Tok::Punct(']') => depth -= 1,
            Tok::Punct(',') if depth == 0 => args += 1,
            _ => {}
        }
        empty = false;
    }
    if empty { 0 } else { args + 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_column_newer_than_the_oldest_declared_version_is_reported() {
        let sql = "SELECT now() - l.waitstart FROM pg_locks l";
        assert_eq!(
            version_problems(sql, 13, 18),
            vec![
                "uses pg_locks.waitstart, which PostgreSQL 14 added, but runs on 13; add `min_version: 14` or an `sql_by_version` alternative"
                    .to_string()
            ]
        );
        assert!(version_problems(sql, 14, 18).is_empty());
    }

    #[test]
    fn a_column_removed_before_the_newest_declared_version_is_reported() {
        let sql = "SELECT checkpoints_timed FROM pg_stat_bgwriter";
        assert_eq!(
            version_problems(sql, 13, 18),
            vec![
                "uses pg_stat_bgwriter.checkpoints_timed (pg_stat_checkpointer.num_timed from 17), which PostgreSQL 17 removed, but runs on 18; add `max_version: 16` or an `sql_by_version: {17: ...}` alternative"
                    .to_string()
            ]
        );
        assert!(version_problems(sql, 13, 16).is_empty());
    }

    #[test]
    fn only_the_two_argument_terminate_and_a_failing_setting_read_are_version_gated() {
        let two = "SELECT pg_terminate_backend(a.pid, 5000) FROM pg_stat_activity a";
        let one = "SELECT pg_terminate_backend(coalesce(a.pid, 0)) FROM pg_stat_activity a";
        assert_eq!(version_problems(two, 13, 18).len(), 1);
        assert!(version_problems(one, 13, 18).is_empty());
        // pg_settings by name is safe on any version; current_setting is not.
        let by_name = "SELECT setting FROM pg_settings WHERE name IN ('reserved_connections')";
        assert!(version_problems(by_name, 13, 18).is_empty());
        let read = "SELECT current_setting('reserved_connections')";
        assert_eq!(version_problems(read, 13, 18).len(), 1);
        let missing_ok = "SELECT current_setting('reserved_connections', true)";
        assert!(version_problems(missing_ok, 13, 18).is_empty());
        // An alias or an input named query_id is not the column.
        let alias = "SELECT :query_id AS query_id -- a.query_id in a comment";
        assert!(version_problems(alias, 13, 18).is_empty());
    }

    #[test]
    fn reading_a_setting_ward_sets_locally_is_reported_and_reset_val_is_not() {
        assert_eq!(
            own_setting_reads("SELECT current_setting('statement_timeout', true); SHOW lock_timeout"),
            vec![
                "reads statement_timeout with current_setting() or SHOW, which inside ward's transaction gives ward's own SET LOCAL value, not the server's; read it from pg_settings.reset_val".to_string(),
                "reads lock_timeout with current_setting() or SHOW, which inside ward's transaction gives ward's own SET LOCAL value, not the server's; read it from pg_settings.reset_val".to_string(),
            ]
        );
        let server = "SELECT reset_val FROM pg_settings WHERE name = 'statement_timeout'";
        assert!(own_setting_reads(server).is_empty());
        assert!(own_setting_reads("SELECT current_setting('deadlock_timeout')").is_empty());
    }

    #[test]
    fn the_newest_alternative_at_most_the_servers_version_is_chosen() {
        let step: StepSpec = serde_yaml::from_str(
            "id: s\nkind: diagnostic\nsql: old\nmin_version: 14\nsql_by_version: {17: new, 18: newest}",
        )
        .expect("step");
        assert_eq!(step.sql_for(Some(16)), "old");
        assert_eq!(step.sql_for(Some(17)), "new");
        assert_eq!(step.sql_for(Some(19)), "newest");
        assert_eq!(step.sql_for(None), "old");
        assert!(!step.available_on(13));
        assert!(step.available_on(14));
        assert_eq!(
            step.sql_variants(),
            vec![
                (None, "old", 14, 16),
                (Some(17), "new", 17, 17),
                (Some(18), "newest", 18, 18)
            ]
        );
    }

    #[test]
    fn a_verify_query_has_its_own_alternatives_chosen_like_the_steps() {
        let step: StepSpec = serde_yaml::from_str(
            "id: s\nkind: remediation\nsql: fix\nmax_version: 17\nverify: {sql: old, sql_by_version: {14: new}, expect: 'true'}",
        )
        .expect("step");
        let verify = step.verify.as_ref().expect("verify");
        assert_eq!(verify.sql_for(Some(13)), "old");
        assert_eq!(verify.sql_for(Some(14)), "new");
        assert_eq!(verify.sql_for(None), "old");
        assert_eq!(
            step.verify_variants(),
            vec![(None, "old", 13, 13), (Some(14), "new", 14, 17)]
        );
    }
}
