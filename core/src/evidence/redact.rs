//! Text and value redaction, column pseudonyms, token estimate and small
//! string helpers.
//!
//! Redaction works on values, not on column names alone: a password hash
//! read through an alias, `SELECT *`, `row_to_json` or `string_agg` is
//! recognised by its shape (SCRAM verifier, `md5` + 32 hex, `password=` in a
//! conninfo string or an options array, a URL with credentials, ...). It is
//! never skipped for speed: the fast path skips only text holding none of
//! the literals the rules need, each rule at least one ([`may_hold_secret`]).

use regex::Regex;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::sync::OnceLock;

/// Names that mark a secret: as the key of `key=value` / `key: value` text,
/// as a JSON object key and as a column name (`rolpassword`, `passwd`,
/// `PGPASSWORD`, `aws_secret_access_key`, `api_key`, `client_secret`, ...).
const SECRET_NAME: &str = r"[A-Za-z0-9_.\-]*(?:password|passwd|passfile|pwd|secret|token|api[_\-]?key|access[_\-]?key|private[_\-]?key|credentials?)";

/// Rules applied in order. Every replacement is a fixed point of every rule,
/// so `redact_text(redact_text(s)) == redact_text(s)`.
fn rule_sources() -> Vec<(String, &'static str)> {
    let fixed: &[(&str, &str)] = &[
        // PEM private keys; an unterminated block (text cut short) is masked to the end.
        (
            r"(?s)-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END[A-Z0-9 ]*PRIVATE KEY-----|\z)",
            "[REDACTED-PRIVATE-KEY]",
        ),
        // SCRAM verifiers (pg_authid.rolpassword, pg_shadow.passwd):
        // SCRAM-SHA-256$<iter>:<salt>$<storedkey>:<serverkey>, also cut short.
        (
            r"(?i)SCRAM-SHA-256(?:-PLUS)?\$[A-Za-z0-9+/=:$._\-]*",
            "[REDACTED-SCRAM]",
        ),
        // A verifier's body without its prefix (substr(rolpassword, 15), ...).
        (
            r"(?:[0-9]+:)?[A-Za-z0-9+/]{16,}={0,2}\$[A-Za-z0-9+/]{40,}={0,2}:[A-Za-z0-9+/]{40,}={0,2}",
            "[REDACTED-SCRAM]",
        ),
        // StoredKey:ServerKey alone (split_part(rolpassword, '$', 3)).
        (r"[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=", "[REDACTED-SCRAM]"),
        // md5 password hashes: md5 + 32 hex.
        (r"(?i)md5[0-9a-f]{32}", "[REDACTED-MD5]"),
        // The same hashes read as bytea (rolpassword::bytea shows hex) or
        // base64 (encode(rolpassword::bytea, 'base64'), wrapped at 76 chars).
        (
            r"(?i)(?:\\x)?534352414d2d5348412d323536[0-9a-f]*",
            "[REDACTED-SCRAM]",
        ),
        (r"(?i)(?:\\x)?6d6435(?:3[0-9]|6[1-6]){32}", "[REDACTED-MD5]"),
        (r"U0NSQU0tU0hBLTI1Ni[A-Za-z0-9+/=\n]*", "[REDACTED-SCRAM]"),
        (r"bWQ1[A-Za-z0-9+/=\n]{40,}", "[REDACTED-MD5]"),
        // Password in a URL's userinfo: postgres://user:PASS@host -> postgres://user:***@host.
        // The password may hold unencoded / ? # : and @ (the userinfo runs to
        // the last @ of the token) and, when the token itself has no @, up
        // to two spaces. When in doubt this masks more, never less.
        (
            r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s:/]*:)[^\s@]*(?: [^\s@]*){0,2}@(?:[^\s]*@)?",
            "${1}***@",
        ),
        // SQL password literals: ALTER ROLE x [ENCRYPTED] PASSWORD 'p',
        // OPTIONS (password 'p'); also cut short (no closing quote).
        (
            r"(?i)\b((?:un)?(?:encrypted\s+)?password\s+)E?'(?:[^'\\]|''|\\.)*'?",
            "${1}'***'",
        ),
        // Bearer tokens.
        (r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]+=*", "${1} ***"),
        // Authorization headers with any scheme.
        (
            r#"(?i)\b(authorization["']?\s*[:=]\s*["']?)(?:(?:bearer|basic|digest|token|negotiate)\s+)?[^\s"',;]+"#,
            "${1}***",
        ),
    ];
    let mut out: Vec<(String, &'static str)> =
        fixed.iter().map(|(p, r)| ((*p).to_string(), *r)).collect();
    // An element of a Postgres text array quoted because it holds a comma
    // or a space: {user=x,"password=a,b"}.
    out.push((
        format!(r#"(?i)"({SECRET_NAME}\s*=)(?:[^"\\]|\\.)*""#),
        "\"${1}***\"",
    ));
    // key=value / key: value / "key": "value" where the key names a secret
    // (password=, PGPASSWORD=, passfile=, aws_secret_access_key=, api_key:, ...):
    // libpq conninfo strings, option arrays ({user=x,password=y}), URL query
    // strings, JSON.
    out.push((
        format!(
            r#"(?i)\b({SECRET_NAME}["']?\s*[=:]\s*)(?:"(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?|[^\s,;&"'}}\]]+)"#
        ),
        "${1}***",
    ));
    let tail: &[(&str, &str)] = &[
        // AWS access key ids (AKIA..., ASIA..., and the other documented prefixes).
        (
            r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|ABIA|ACCA)[A-Z0-9]{16}\b",
            "[REDACTED-AWS-KEY]",
        ),
        // Well-known token formats: GitHub, Slack, OpenAI-style, Google API keys, JWTs.
        (
            r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|xox[abposr]-[A-Za-z0-9\-]{10,}|sk-[A-Za-z0-9_\-]{20,}|AIza[0-9A-Za-z_\-]{35}|eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,})",
            "[REDACTED-TOKEN]",
        ),
        // Email addresses.
        (
            r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}",
            "[REDACTED-EMAIL]",
        ),
    ];
    out.extend(tail.iter().map(|(p, r)| ((*p).to_string(), *r)));
    out
}

/// Literals (ASCII case-insensitive) of which every rule needs at least one:
/// text holding none of them is returned as it is, without running the rules.
const TRIGGERS: &[&str] = &[
    "key", // PEM private keys, api_key, access_key, private_key
    "scram",
    "$",
    "=:",
    "md5",
    "534352414d", // hex of "SCRAM"
    "6d6435",     // hex of "md5"
    "u0nsqu0t",   // base64 of "SCRAM-"
    "bwq1",       // base64 of "md5"
    "://",
    "pass",
    "pwd",
    "secret",
    "token",
    "credential",
    "bearer",
    "authorization",
    "akia",
    "asia",
    "agpa",
    "aida",
    "aroa",
    "aipa",
    "anpa",
    "anva",
    "abia",
    "acca",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "xox",
    "sk-",
    "aiza",
    "eyj",
    "@",
];

struct Compiled {
    rules: Vec<(Regex, &'static str)>,
    triggers: Option<Regex>,
    secret_name: Option<Regex>,
}

fn compiled() -> &'static Compiled {
    static COMPILED: OnceLock<Compiled> = OnceLock::new();
    COMPILED.get_or_init(|| {
        let sources = rule_sources();
        // The patterns are constants covered by a test (`all_rules_compile`).
        let rules = sources
            .iter()
            .filter_map(|(p, r)| Regex::new(p).ok().map(|re| (re, *r)))
            .collect();
        let alternation: Vec<String> = TRIGGERS.iter().map(|t| regex::escape(t)).collect();
        Compiled {
            rules,
            triggers: Regex::new(&format!("(?i-u:{})", alternation.join("|"))).ok(),
            secret_name: Regex::new(&format!("(?i)^{SECRET_NAME}$")).ok(),
        }
    })
}

#[cfg(test)]
pub(crate) fn rule_count() -> (usize, usize) {
    let c = compiled();
    let extra = usize::from(c.triggers.is_some()) + usize::from(c.secret_name.is_some());
    (c.rules.len() + extra, rule_sources().len() + 2)
}

/// Whether `s` holds a literal some rule needs. `false` means no rule can
/// match; `true` means the rules must run. (If the trigger pattern could not
/// be compiled, every text goes through the rules.)
pub(crate) fn may_hold_secret(s: &str) -> bool {
    compiled().triggers.as_ref().is_none_or(|t| t.is_match(s))
}

/// Whether a column or JSON key names a secret (`rolpassword`, `passwd`,
/// `api_key`, `client_secret`, ...): its values are masked whatever they look like.
pub(crate) fn is_secret_name(name: &str) -> bool {
    compiled()
        .secret_name
        .as_ref()
        .is_some_and(|re| re.is_match(name))
}

/// Masks password hashes (SCRAM verifiers, `md5` + 32 hex), passwords in URL
/// userinfo (`postgres://user:PASS@` -> `postgres://user:***@`, PASS may
/// hold `/ ? # @ :`), secrets in `key=value` / `key: value` form (libpq
/// conninfo `password=`, `passfile=`, option arrays, URL query strings,
/// JSON), SQL `PASSWORD '...'` literals, emails, bearer tokens and
/// Authorization headers, AWS access key ids, well-known token formats and
/// PEM private key blocks, wherever they appear in the text. Idempotent.
pub fn redact_text(s: &str) -> String {
    redact_cow(s).into_owned()
}

/// [`redact_text`] without a copy when nothing is masked.
pub(crate) fn redact_cow(s: &str) -> Cow<'_, str> {
    if !may_hold_secret(s) {
        return Cow::Borrowed(s);
    }
    let mut out: Cow<'_, str> = Cow::Borrowed(s);
    for (re, rep) in &compiled().rules {
        if let Cow::Owned(replaced) = re.replace_all(&out, *rep) {
            out = Cow::Owned(replaced);
        }
    }
    out
}

/// The value of a column or key that names a secret: what the rules make of
/// it if they recognise anything (`[REDACTED-SCRAM]` keeps the kind of hash
/// visible), `***` otherwise. Null stays null (it tells "no password").
pub(crate) fn mask_secret(v: &Value) -> Value {
    match v {
        Value::Null => Value::Null,
        Value::String(s) if s.is_empty() || is_marker(s) => Value::String(s.clone()),
        Value::String(s) => match redact_cow(s) {
            Cow::Owned(r) => Value::String(r),
            Cow::Borrowed(_) => Value::String("***".to_string()),
        },
        _ => Value::String("***".to_string()),
    }
}

/// What a rule or [`mask_secret`] leaves in place of a whole value.
fn is_marker(s: &str) -> bool {
    s == "***"
        || (s.len() <= 32
            && s.starts_with("[REDACTED-")
            && s.ends_with(']')
            && !s.contains(char::is_whitespace))
}

/// `v` with every string redacted, recursively; values under keys that name
/// a secret are masked whole. `None` when nothing changes (no copy).
pub(crate) fn redact_value(v: &Value) -> Option<Value> {
    match v {
        Value::String(s) => match redact_cow(s) {
            Cow::Owned(r) => Some(Value::String(r)),
            Cow::Borrowed(_) => None,
        },
        Value::Array(a) => {
            let changed: Vec<Option<Value>> = a.iter().map(redact_value).collect();
            if changed.iter().all(Option::is_none) {
                return None;
            }
            Some(Value::Array(
                changed
                    .into_iter()
                    .zip(a)
                    .map(|(c, orig)| c.unwrap_or_else(|| orig.clone()))
                    .collect(),
            ))
        }
        Value::Object(m) => redact_map(m).map(Value::Object),
        _ => None,
    }
}

/// [`redact_value`] over an object's values (keys are kept; a key that
/// names a secret masks its scalar value).
pub(crate) fn redact_map(m: &Map<String, Value>) -> Option<Map<String, Value>> {
    let mut out: Option<Map<String, Value>> = None;
    for (i, (k, v)) in m.iter().enumerate() {
        let new = if is_secret_name(k) && !matches!(v, Value::Array(_) | Value::Object(_)) {
            let masked = mask_secret(v);
            (masked != *v).then_some(masked)
        } else {
            redact_value(v)
        };
        if let Some(new) = new {
            let o = out.get_or_insert_with(|| {
                m.iter()
                    .take(i)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            });
            o.insert(k.clone(), new);
        } else if let Some(o) = out.as_mut() {
            o.insert(k.clone(), v.clone());
        }
    }
    out
}

/// Token estimate used for the budget: `ceil(bytes / 4)` of the UTF-8 text.
/// Deliberately model-agnostic; English text and tables average 3.5-4.5
/// bytes per token with common BPE tokenizers.
pub fn estimate_tokens(s: &str) -> usize {
    s.len().div_ceil(4)
}

/// `<col>_<8 hex>` with hex = first 8 hex digits of
/// sha256(key || lowercase(column) || 0x00 || value), where value is the
/// string itself for strings and the JSON text otherwise.
pub(crate) fn pseudonym(key: &[u8; 32], column: &str, value: &Value) -> String {
    let mut h = Sha256::new();
    h.update(key);
    h.update(column.to_lowercase().as_bytes());
    h.update([0u8]);
    match value {
        Value::String(s) => h.update(s.as_bytes()),
        other => h.update(other.to_string().as_bytes()),
    }
    let digest = h.finalize();
    let mut hex = String::with_capacity(column.len() + 9);
    hex.push_str(column);
    hex.push('_');
    for b in digest.iter().take(4) {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

/// Whether `s` is what [`pseudonym`] makes of a value of `column`.
pub(crate) fn is_pseudonym(column: &str, s: &str) -> bool {
    s.strip_prefix(column)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|hex| hex.len() == 8 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// At most `max` chars; longer text is cut to `max - 3` chars plus "...".
pub(crate) fn cap_chars(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => Cow::Borrowed(s),
        Some(_) => {
            let keep = max.saturating_sub(3);
            let end = s.char_indices().nth(keep).map_or(s.len(), |(i, _)| i);
            Cow::Owned(format!("{}...", &s[..end]))
        }
    }
}

/// At most `max` bytes, cut at a char boundary (no marker).
pub(crate) fn cut_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// One-line cell text: whitespace controls become spaces, other controls are dropped.
pub(crate) fn flatten(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .filter_map(|c| match c {
                '\n' | '\r' | '\t' => Some(' '),
                c if c.is_control() => None,
                c => Some(c),
            })
            .collect(),
    )
}

/// Multi-line text: keeps newlines and tabs, drops other controls (ANSI escapes, NUL, CR).
pub(crate) fn strip_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
            .collect(),
    )
}
