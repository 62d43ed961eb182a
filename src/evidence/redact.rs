//! Text redaction, column pseudonyms, token estimate and small string helpers.

use regex::Regex;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::sync::OnceLock;

/// Rules applied in order. Every replacement is a fixed point of every rule,
/// so `redact_text(redact_text(s)) == redact_text(s)`.
const RULES: &[(&str, &str)] = &[
    // PEM private keys; an unterminated block (text cut short) is masked to the end.
    (
        r"(?s)-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END[A-Z0-9 ]*PRIVATE KEY-----|\z)",
        "[REDACTED-PRIVATE-KEY]",
    ),
    // Password in a URL's userinfo: postgres://user:PASS@host -> postgres://user:***@host
    (
        r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s:/@]*:)[^\s@]+@",
        "${1}***@",
    ),
    // Bearer tokens.
    (r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]+=*", "${1} ***"),
    // Authorization headers with any scheme.
    (
        r#"(?i)\b(authorization["']?\s*[:=]\s*["']?)(?:(?:bearer|basic|digest|token|negotiate)\s+)?[^\s"',;]+"#,
        "${1}***",
    ),
    // key=value / key: value / "key": "value" where the key names a secret
    // (password=, PGPASSWORD=, aws_secret_access_key=, api_key:, client_secret=, ...).
    (
        r#"(?i)\b([A-Za-z0-9_.\-]*(?:password|passwd|pwd|secret|token|api[_\-]?key|access[_\-]?key|private[_\-]?key|credentials?)["']?\s*[=:]\s*)(?:"[^"]*"|'[^']*'|[^\s,;&"'}\]]+)"#,
        "${1}***",
    ),
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

fn rules() -> &'static [(Regex, &'static str)] {
    static COMPILED: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    COMPILED.get_or_init(|| {
        RULES
            .iter()
            // The patterns are constants covered by a test (`all_rules_compile`).
            .filter_map(|(p, r)| Regex::new(p).ok().map(|re| (re, *r)))
            .collect()
    })
}

#[cfg(test)]
pub(crate) fn rule_count() -> (usize, usize) {
    (rules().len(), RULES.len())
}

/// Masks emails, bearer tokens and Authorization headers, AWS access key ids,
/// well-known token formats, secrets in `key=value` / `key: value` form
/// (password=, secret=, token=, api_key=, ...), passwords in URL userinfo
/// (`postgres://user:PASS@` -> `postgres://user:***@`) and PEM private key
/// blocks. Idempotent.
pub fn redact_text(s: &str) -> String {
    let mut out: Cow<'_, str> = Cow::Borrowed(s);
    for (re, rep) in rules() {
        if let Cow::Owned(replaced) = re.replace_all(&out, *rep) {
            out = Cow::Owned(replaced);
        }
    }
    out.into_owned()
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
