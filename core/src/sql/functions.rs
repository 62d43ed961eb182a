//! Which functions may be called by a read-only statement.
//!
//! Decided by allowlist, never by denylist: a Postgres function is pure when
//! it is in the table generated from a real catalog
//! (`scripts/gen-pure-functions.sh`: every `pg_catalog` overload immutable or
//! stable, which PostgreSQL promises cannot modify the database), or in the
//! short curated list of volatile functions that only read. Everything else
//! is not read-only; a few well-known ones get a precise class.

use std::collections::HashSet;
use std::sync::OnceLock;

use super::{Engine, Risk};

const PG_PURE: &str = include_str!("pg_pure_functions.txt");
const PG_HARMLESS_VOLATILE: &str = include_str!("pg_harmless_volatile.txt");

/// SQLite's built-in scalar, aggregate, window, date and math functions,
/// none of which can modify the database. `load_extension`, `readfile`,
/// `writefile` and `edit` are deliberately absent.
const SQLITE_PURE: &[&str] = &[
    "abs",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atan2",
    "atanh",
    "avg",
    "ceil",
    "ceiling",
    "changes",
    "char",
    "coalesce",
    "concat",
    "concat_ws",
    "cos",
    "cosh",
    "count",
    "cume_dist",
    "date",
    "datetime",
    "degrees",
    "dense_rank",
    "exp",
    "first_value",
    "floor",
    "format",
    "glob",
    "group_concat",
    "hex",
    "ifnull",
    "iif",
    "instr",
    "json",
    "json_array",
    "json_array_length",
    "json_each",
    "json_extract",
    "json_group_array",
    "json_group_object",
    "json_object",
    "json_quote",
    "json_tree",
    "json_type",
    "json_valid",
    "julianday",
    "lag",
    "last_insert_rowid",
    "last_value",
    "lead",
    "length",
    "like",
    "likelihood",
    "likely",
    "ln",
    "log",
    "log10",
    "log2",
    "lower",
    "ltrim",
    "max",
    "min",
    "mod",
    "nth_value",
    "ntile",
    "nullif",
    "octet_length",
    "percent_rank",
    "pi",
    "pow",
    "power",
    "printf",
    "quote",
    "radians",
    "random",
    "randomblob",
    "rank",
    "replace",
    "round",
    "row_number",
    "rtrim",
    "sign",
    "sin",
    "sinh",
    "soundex",
    "sqlite_compileoption_get",
    "sqlite_compileoption_used",
    "sqlite_source_id",
    "sqlite_version",
    "sqrt",
    "strftime",
    "string_agg",
    "substr",
    "substring",
    "sum",
    "tan",
    "tanh",
    "time",
    "total",
    "total_changes",
    "trim",
    "trunc",
    "typeof",
    "unhex",
    "unicode",
    "unixepoch",
    "unlikely",
    "upper",
    "zeroblob",
    "pragma_table_info",
    "pragma_index_list",
    "pragma_index_info",
    "pragma_foreign_key_list",
    "pragma_table_list",
    "dbstat",
];

/// What calling a function can do to the database or the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionEffect {
    /// Cannot modify data, schema, roles, settings or sessions.
    Pure,
    /// Known to have effects, with the class they amount to.
    Known(Risk),
    /// Not known to be pure: treated as `unknown`.
    Unlisted,
}

fn pg_pure() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| {
        PG_PURE
            .lines()
            .chain(PG_HARMLESS_VOLATILE.lines())
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    })
}

/// Functions PostgreSQL marks immutable or stable that nonetheless run
/// whatever a query text, relation, cursor or type names: the `*_to_xml`
/// family evaluates every view and function it reads, `ts_stat` and
/// `ts_rewrite` run a query given as text, and the type-input functions run
/// a domain's CHECK expressions. Never pure, whatever a catalog says.
pub fn pg_evaluates_objects(name: &str) -> bool {
    const NAMES: &[&str] = &[
        "ts_stat",
        "ts_rewrite",
        "domain_in",
        "domain_recv",
        "record_in",
        "record_recv",
        "array_in",
        "array_recv",
        "anyarray_recv",
        "range_in",
        "range_recv",
        "multirange_in",
        "multirange_recv",
        "pg_input_is_valid",
        "pg_input_error_info",
    ];
    let xml_family = [
        "query_to_xml",
        "table_to_xml",
        "schema_to_xml",
        "database_to_xml",
        "cursor_to_xml",
    ]
    .iter()
    .any(|p| name.starts_with(p));
    xml_family || NAMES.contains(&name)
}

/// Volatile functions whose effect is well known, so the verdict can say
/// more than "unknown".
fn pg_known(name: &str) -> Option<Risk> {
    let risk = match name {
        "pg_terminate_backend"
        | "pg_cancel_backend"
        | "nextval"
        | "pg_reload_conf"
        | "pg_rotate_logfile"
        | "pg_notify"
        | "pg_switch_wal"
        | "pg_create_restore_point"
        | "txid_current"
        | "pg_current_xact_id"
        | "pg_log_backend_memory_contexts"
        | "pg_stat_statements_reset"
        | "pg_wal_replay_pause"
        | "pg_wal_replay_resume"
        | "pg_checkpoint" => Risk::Write,
        n if n.starts_with("pg_advisory") || n.starts_with("pg_try_advisory") => Risk::Write,
        n if n.starts_with("pg_stat_reset") => Risk::Write,
        // Moves a sequence: later inserts can collide with existing keys.
        "setval" => Risk::Schema,
        // Any setting by name, `role` and `search_path` included: what the
        // session is allowed to do and which function a name calls.
        "set_config" => Risk::Privilege,
        "pg_drop_replication_slot"
        | "lo_unlink"
        | "pg_promote"
        | "pg_replication_origin_drop"
        | "pg_truncate_visibility_map" => Risk::Destructive,
        "pg_read_file"
        | "pg_read_binary_file"
        | "pg_ls_dir"
        | "lo_import"
        | "lo_export"
        | "pg_file_write"
        | "pg_file_unlink"
        | "pg_file_rename" => Risk::Privilege,
        _ => return None,
    };
    Some(risk)
}

pub(super) fn effect(engine: Engine, schema: Option<&str>, name: &str) -> FunctionEffect {
    match engine {
        Engine::Postgres => {
            // Names are exact (pg_query folds unquoted ones, keeps quoted
            // ones). Unqualified names resolve to pg_catalog: ward pins
            // search_path to `pg_catalog, pg_temp`, and functions are never
            // looked up in pg_temp. Any other schema (`"PG_CATALOG"`
            // included) is user code.
            if !matches!(schema, None | Some("pg_catalog")) {
                return FunctionEffect::Unlisted;
            }
            if pg_evaluates_objects(name) {
                return FunctionEffect::Known(Risk::Unknown);
            }
            if let Some(risk) = pg_known(name) {
                return FunctionEffect::Known(risk);
            }
            if pg_pure().contains(name) {
                FunctionEffect::Pure
            } else {
                FunctionEffect::Unlisted
            }
        }
        Engine::Sqlite => {
            let name = name.to_ascii_lowercase();
            let name = name.as_str();
            if schema.is_none() && SQLITE_PURE.contains(&name) {
                FunctionEffect::Pure
            } else if name == "load_extension" || name == "writefile" || name == "edit" {
                FunctionEffect::Known(Risk::Privilege)
            } else {
                FunctionEffect::Unlisted
            }
        }
    }
}

/// Whether every catalog overload of `name` is immutable or stable (the
/// generated table only; the curated harmless-but-volatile list does not
/// count). Used to tell a constant column default from one that forces a
/// table rewrite.
pub fn pg_is_nonvolatile(name: &str) -> bool {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| {
        PG_PURE
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    })
    .contains(name)
}
