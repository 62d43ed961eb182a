//! Pictures drawn from the facts a step's summarizer produced: a blocking
//! chain tree and sparklines of numbers sampled more than once.
//!
//! Drawn from facts only (`ProposalState::facts`), never from raw rows: the
//! raw rows are not kept, and the facts are what the agent saw. A fact of
//! the wrong shape draws nothing rather than something misleading.
//!
//! The blocking tree reads `facts.<step>.chain`, a list of
//! `{pid, blocked_by, age_s, application, state}`: `blocked_by` is the list
//! of pids from `pg_blocking_pids(pid)` (`[]` for a root; one integer is
//! accepted too), `age_s` is how long a waiting session has waited for its
//! lock, or for a root the age of its open transaction; `application` and
//! `state` are optional.

use std::collections::{BTreeMap, BTreeSet};

use ratatui::text::{Line, Span};
use serde_json::Value;

use super::text;
use super::theme::Theme;
use crate::session::{ProposalState, SessionState, Status};

/// One session in a blocking chain.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainNode {
    pub pid: i64,
    pub blocked_by: Vec<i64>,
    pub age_s: Option<f64>,
    pub application: Option<String>,
    pub state: Option<String>,
}

/// The chain in `facts.chain`, if the facts carry one.
pub fn chain(facts: &Value) -> Option<Vec<ChainNode>> {
    let items = facts.get("chain")?.as_array()?;
    let mut nodes: Vec<ChainNode> = Vec::new();
    for it in items {
        let pid = it.get("pid")?.as_i64()?;
        let blocked_by = match it.get("blocked_by") {
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_i64).collect(),
            Some(Value::Number(n)) => n.as_i64().into_iter().collect(),
            _ => Vec::new(),
        };
        let s = |k: &str| {
            it.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        nodes.push(ChainNode {
            pid,
            blocked_by: blocked_by.into_iter().filter(|b| *b != pid).collect(),
            age_s: it.get("age_s").and_then(Value::as_f64),
            application: s("application"),
            state: s("state"),
        });
    }
    // Blockers that are not listed themselves (a prepared transaction is
    // pid 0; a backend may have exited) still appear, as roots.
    let known: BTreeSet<i64> = nodes.iter().map(|n| n.pid).collect();
    let missing: BTreeSet<i64> = nodes
        .iter()
        .flat_map(|n| n.blocked_by.iter().copied())
        .filter(|b| !known.contains(b))
        .collect();
    for pid in missing {
        nodes.push(ChainNode {
            pid,
            blocked_by: Vec::new(),
            age_s: None,
            application: None,
            state: Some(if pid == 0 {
                "prepared transaction".into()
            } else {
                "unknown".into()
            }),
        });
    }
    (!nodes.is_empty()).then_some(nodes)
}

/// The chain as a tree, roots (blocking the most sessions) first.
pub fn tree_lines(nodes: &[ChainNode], width: usize, theme: &Theme) -> Vec<Line<'static>> {
    let by_pid: BTreeMap<i64, &ChainNode> = nodes.iter().map(|n| (n.pid, n)).collect();
    let mut children: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for n in nodes {
        for b in &n.blocked_by {
            children.entry(*b).or_default().push(n.pid);
        }
    }
    for c in children.values_mut() {
        c.sort_unstable();
        c.dedup();
    }
    let reach = |root: i64| {
        let mut seen = BTreeSet::new();
        let mut stack = children.get(&root).cloned().unwrap_or_default();
        while let Some(p) = stack.pop() {
            if p != root && seen.insert(p) {
                stack.extend(children.get(&p).cloned().unwrap_or_default());
            }
        }
        seen.len()
    };
    let mut roots: Vec<i64> = nodes
        .iter()
        .filter(|n| n.blocked_by.is_empty())
        .map(|n| n.pid)
        .collect();
    if roots.is_empty() {
        // A pure cycle (a deadlock not yet detected) has no root.
        roots = nodes.iter().map(|n| n.pid).min().into_iter().collect();
    }
    let mut roots: Vec<(usize, i64)> = roots.into_iter().map(|r| (reach(r), r)).collect();
    roots.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));

    let mut out = Vec::new();
    let mut printed = BTreeSet::new();
    for (n, root) in roots {
        let Some(node) = by_pid.get(&root) else {
            continue;
        };
        let mut spans = vec![
            Span::styled("● ", theme.bad()),
            Span::styled(format!("pid {root}"), theme.bold()),
        ];
        spans.extend(describe(node, true, theme));
        if n > 0 {
            spans.push(Span::styled(format!("  blocks {n}"), theme.bad()));
        }
        out.push(text::clip_spans(spans, width));
        printed.insert(root);
        walk(
            root,
            "",
            &children,
            &by_pid,
            &mut printed,
            &mut vec![root],
            &mut out,
            width,
            theme,
        );
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn walk(
    pid: i64,
    prefix: &str,
    children: &BTreeMap<i64, Vec<i64>>,
    by_pid: &BTreeMap<i64, &ChainNode>,
    printed: &mut BTreeSet<i64>,
    path: &mut Vec<i64>,
    out: &mut Vec<Line<'static>>,
    width: usize,
    theme: &Theme,
) {
    let kids = children.get(&pid).cloned().unwrap_or_default();
    for (i, kid) in kids.iter().enumerate() {
        let last = i + 1 == kids.len();
        let branch = if last { "└─ " } else { "├─ " };
        let mut spans = vec![Span::styled(format!("{prefix}{branch}"), theme.dim())];
        if path.contains(kid) {
            spans.push(Span::styled(
                format!("(cycle back to pid {kid})"),
                theme.bad(),
            ));
            out.push(text::clip_spans(spans, width));
            continue;
        }
        spans.push(Span::styled(format!("pid {kid}"), theme.bold()));
        let Some(node) = by_pid.get(kid) else {
            continue;
        };
        if !printed.insert(*kid) {
            spans.push(Span::styled(" (see above)", theme.dim()));
            out.push(text::clip_spans(spans, width));
            continue;
        }
        spans.extend(describe(node, false, theme));
        if node.blocked_by.len() > 1 {
            let others: Vec<String> = node
                .blocked_by
                .iter()
                .filter(|b| **b != pid)
                .map(ToString::to_string)
                .collect();
            spans.push(Span::styled(
                format!(" (also blocked by {})", others.join(", ")),
                theme.dim(),
            ));
        }
        out.push(text::clip_spans(spans, width));
        let next = format!("{prefix}{}", if last { "   " } else { "│  " });
        path.push(*kid);
        walk(
            *kid, &next, children, by_pid, printed, path, out, width, theme,
        );
        path.pop();
    }
}

fn describe(node: &ChainNode, root: bool, theme: &Theme) -> Vec<Span<'static>> {
    let mut spans = Vec::new();
    if let Some(app) = &node.application {
        spans.push(Span::raw(format!(" · {app}")));
    }
    if let Some(state) = &node.state {
        let st = if state.starts_with("idle in transaction") {
            theme.warn()
        } else {
            theme.plain()
        };
        spans.push(Span::raw(" · "));
        spans.push(Span::styled(state.clone(), st));
    }
    if let Some(age) = node.age_s {
        let what = if root { "xact open" } else { "waiting" };
        spans.push(Span::styled(
            format!(" · {what} {}", text::duration(age as i64)),
            theme.accent(),
        ));
    }
    spans
}

/// A number a step reported on each of its runs, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub values: Vec<f64>,
}

/// The numeric facts of every finished run of `step`, where it ran more
/// than once, in the order the facts first appear.
pub fn series(state: &SessionState, step: &str) -> Vec<Series> {
    let runs: Vec<&ProposalState> = state
        .proposals
        .iter()
        .filter(|p| p.step_id.as_deref() == Some(step) && p.status == Status::Done)
        .filter(|p| p.facts.as_ref().is_some_and(Value::is_object))
        .collect();
    if runs.len() < 2 {
        return Vec::new();
    }
    let mut out: Vec<Series> = Vec::new();
    for p in runs {
        let Some(Value::Object(m)) = &p.facts else {
            continue;
        };
        for (k, v) in m {
            let Some(x) = v.as_f64() else { continue };
            match out.iter_mut().find(|s| s.name == *k) {
                Some(s) => s.values.push(x),
                None => out.push(Series {
                    name: k.clone(),
                    values: vec![x],
                }),
            }
        }
    }
    out.retain(|s| s.values.len() >= 2);
    out
}

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// One character per value (the last `width`), scaled from the smallest to
/// the largest.
pub fn spark(values: &[f64], width: usize) -> String {
    let vals = &values[values.len().saturating_sub(width)..];
    let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    vals.iter()
        .map(|v| {
            if (hi - lo).abs() < f64::EPSILON {
                BARS[3]
            } else {
                let i = ((v - lo) / (hi - lo) * 7.0).round() as usize;
                BARS[i.min(7)]
            }
        })
        .collect()
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        let sign = if v < 0.0 { "-" } else { "" };
        format!("{sign}{}", text::thousands(v.abs() as u64))
    } else {
        format!("{v:.2}")
    }
}

/// `name  ▁▃▅█  12 → 48`, one line a series.
pub fn spark_lines(series: &[Series], width: usize, theme: &Theme) -> Vec<Line<'static>> {
    let name_w = series
        .iter()
        .map(|s| text::width(&s.name))
        .max()
        .unwrap_or(0)
        .min(width / 3);
    series
        .iter()
        .map(|s| {
            let first = s.values.first().copied().unwrap_or_default();
            let last = s.values.last().copied().unwrap_or_default();
            let tail = format!("  {} → {}", num(first), num(last));
            let room = width
                .saturating_sub(name_w + 2 + text::width(&tail))
                .clamp(1, 40);
            let style = if last > first {
                theme.warn()
            } else {
                theme.ok()
            };
            text::clip_spans(
                vec![
                    Span::raw(format!("{}  ", text::pad(&s.name, name_w))),
                    Span::styled(spark(&s.values, room), style),
                    Span::styled(tail, theme.dim()),
                ],
                width,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_chain_reads_from_facts_and_adds_unlisted_blockers() {
        let facts = json!({"chain": [
            {"pid": 10, "blocked_by": [], "age_s": 300, "application": "billing", "state": "idle in transaction"},
            {"pid": 11, "blocked_by": [10], "age_s": 120},
            {"pid": 12, "blocked_by": 0, "age_s": 5},
        ]});
        let nodes = chain(&facts).expect("a chain");
        assert_eq!(
            nodes.iter().map(|n| n.pid).collect::<Vec<_>>(),
            vec![10, 11, 12, 0]
        );
        assert_eq!(nodes[3].state.as_deref(), Some("prepared transaction"));
        assert_eq!(chain(&json!({"blocked": 3})), None);
        assert_eq!(chain(&json!({"chain": [{"pid": "x"}]})), None);
    }

    #[test]
    fn a_cycle_is_drawn_once_and_named() {
        let nodes = chain(&json!({"chain": [
            {"pid": 1, "blocked_by": [2]},
            {"pid": 2, "blocked_by": [1]},
        ]}))
        .expect("chain");
        let lines: Vec<String> = tree_lines(&nodes, 80, &Theme::new(true))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            vec![
                "● pid 1  blocks 1",
                "└─ pid 2",
                "   └─ (cycle back to pid 1)"
            ]
        );
    }

    #[test]
    fn sparks_scale_from_lowest_to_highest() {
        assert_eq!(spark(&[0.0, 7.0, 3.5], 10), "▁█▅");
        assert_eq!(spark(&[2.0, 2.0], 10), "▄▄");
        assert_eq!(spark(&[1.0, 2.0, 3.0], 2), "▁█");
    }
}
