//! A session as Markdown, for an incident ticket: the one renderer behind
//! `ward run --report md` and `ward audit export --format md`, built from
//! the fold and the events' own descriptions so it says what every other
//! view says, in the same words.
//!
//! It writes to whatever it is given and never prints.

use std::io::Write;

use super::describe::{
    Context, Label, decision_words, hand_off_words, joined, step_label, target_name,
};
use super::events::EventData;
use super::state::SessionState;
use crate::audit::Event;
use crate::text::rows;

/// Writes the session of `events` as Markdown. `log` is where the log is,
/// `verification` what `ward audit verify` says of it (when known).
pub fn write(
    events: &[Event],
    log: Option<&str>,
    verification: Option<&str>,
    w: &mut impl Write,
) -> std::io::Result<()> {
    let s = SessionState::from_events(events);
    writeln!(
        w,
        "# ward session {} — {}",
        s.session_id,
        s.runbooks_run().join(" → ")
    )?;
    writeln!(w)?;
    writeln!(
        w,
        "- target: {} [{}]{}",
        target_name(&s.target),
        s.environment,
        if s.dry_run { " (dry run)" } else { "" }
    )?;
    writeln!(
        w,
        "- started: {} by **{}**",
        s.started_at.as_deref().unwrap_or("?"),
        s.operator
    )?;
    writeln!(
        w,
        "- outcome: **{}**",
        s.outcome
            .map_or("unsealed (running or crashed)", |o| o.words())
    )?;
    if s.tokens_used > 0 {
        writeln!(
            w,
            "- model tokens: {} ({} prompt, of which {} served from the provider's prompt cache)",
            crate::text::thousands(s.tokens_used),
            crate::text::thousands(s.prompt_tokens),
            crate::text::thousands(s.tokens_cached)
        )?;
    }
    if let Some(v) = verification {
        writeln!(w, "- audit log verification: **{v}**")?;
    }
    if let Some(log) = log {
        writeln!(w, "- log: `{log}`")?;
    }
    if let Some(d) = &s.unreachable {
        writeln!(w, "\n## Cannot connect\n")?;
        writeln!(w, "- what failed: **{}** (`{}`)", d.what, d.failure)?;
        if let Some(code) = &d.sqlstate {
            writeln!(w, "- SQLSTATE: `{code}`")?;
        }
        writeln!(w, "- likely cause: {}", d.cause)?;
        writeln!(w, "- check next:")?;
        for (n, check) in d.checks.iter().enumerate() {
            writeln!(w, "  {}. {check}", n + 1)?;
        }
    }
    if let Some(c) = &s.conclusion {
        writeln!(w, "\n## Conclusion\n\n{c}")?;
    }
    if let Some(r) = &s.recommendation {
        writeln!(w, "\nRecommendation: {r}")?;
    }
    if let Some(n) = &s.next {
        writeln!(
            w,
            "\nNext runbook: **{}**{}",
            hand_off_words(&n.runbook, &n.inputs),
            s.not_followed
                .as_ref()
                .map(|why| format!(" (not followed: {why})"))
                .unwrap_or_default()
        )?;
        for d in &n.dropped {
            writeln!(w, "- input `{}` dropped: {}", d.name, d.reason)?;
        }
    }
    if !s.earlier.is_empty() {
        writeln!(w, "\n## Earlier runbooks of this session")?;
        for (part, h) in s.earlier.iter().zip(&s.handoffs) {
            writeln!(w, "\n### {}\n", part.runbook)?;
            if let Some(c) = &part.conclusion {
                writeln!(w, "{c}\n")?;
            }
            writeln!(
                w,
                "- handed off to **{}** (hand-off {}, by {})",
                hand_off_words(&h.to, &h.inputs),
                h.depth,
                h.by
            )?;
            for d in &h.dropped {
                writeln!(w, "- input `{}` dropped: {}", d.name, d.reason)?;
            }
        }
    }
    writeln!(w, "\n## Steps")?;
    for p in &s.proposals {
        let mut facts = vec![p.status.words().to_string()];
        if let Some(r) = p.risk {
            facts.push(r.name().to_string());
        }
        if let Some(d) = p.decision {
            let words = decision_words(d, p.approvers_needed, &p.roles_required);
            // `denied · write · denied` says it twice.
            if words != p.status.words() {
                facts.push(words);
            }
        }
        if let Some(n) = p.rows_seen {
            facts.push(rows(n));
        }
        // After a hand-off, each step says which runbook it belongs to.
        let runbook = if s.earlier.is_empty() {
            String::new()
        } else {
            format!("{} › ", p.runbook)
        };
        writeln!(
            w,
            "\n### {runbook}{} ({}) [id {}]\n",
            step_label(p.step_id.as_deref()),
            facts.join(" · "),
            p.id.short()
        )?;
        writeln!(w, "```sql\n{}\n```", p.sql.trim())?;
        for (op, reason) in &p.approvals {
            writeln!(w, "- approved by **{op}**: {reason}")?;
        }
        for (op, reason) in &p.refused_approvals {
            writeln!(w, "- approval by **{op}** refused: {reason}")?;
        }
        for (op, reason) in &p.rejections {
            writeln!(w, "- rejected by **{op}**: {reason}")?;
        }
        if !p.rules.is_empty() {
            writeln!(w, "- policy rules: {}", p.rules.join(", "))?;
        }
        if let Some(m) = &p.message {
            writeln!(w, "- {m}")?;
        }
        if let Some(ok) = p.verified {
            writeln!(w, "- verify: {}", if ok { "passed" } else { "FAILED" })?;
        }
        if let Some(e) = &p.error {
            writeln!(w, "- error: {e}")?;
        }
    }
    writeln!(w, "\n## Timeline\n")?;
    let mut seen = SessionState::default();
    for e in events {
        let Ok(data) = EventData::from_parts(&e.kind, &e.data) else {
            writeln!(w, "- `{}` [{}] unreadable `{}` event", e.ts, e.seq, e.kind)?;
            continue;
        };
        seen.apply(e.seq, &e.ts, &e.hash, &data);
        let step = data
            .proposal()
            .and_then(|id| seen.proposal(id))
            .map(|p| step_label(p.step_id.as_deref()).to_string());
        let d = data.describe(Context {
            hash: &e.hash,
            step: step.as_deref(),
        });
        writeln!(w, "- `{}` [{}] {}", e.ts, e.seq, d.headline)?;
        for (label, value) in &d.details {
            match label {
                // The statement is shown under its step above.
                Label::Sql => {}
                Label::Fact(word) => writeln!(w, "  - {word}: {}", joined(value))?,
                Label::AgentText => writeln!(w, "  - > {}", joined(value))?,
                Label::Evidence | Label::Message => writeln!(w, "  - {}", joined(value))?,
            }
        }
    }
    Ok(())
}
