#!/usr/bin/env python3
"""Digest of pg_stat_statements: the top statements by total execution time.

Protocol (ward summarizer script): rows arrive as JSON Lines on stdin, one
object per row; the human summary goes to stdout and the LAST line is one JSON
object of facts.

Expected columns (see runbooks/pg-slow-queries.yaml, step top_statements):
  queryid           bigint
  username          text (role that ran it)
  calls             bigint
  total_exec_ms     number, total execution time in ms
  mean_exec_ms      number, mean execution time in ms
  rows              bigint, rows returned or affected in total
  shared_blks_hit   bigint
  shared_blks_read  bigint
  temp_blks_written bigint
  all_total_ms      number, total execution time of ALL statements (for the share)
  query             text, shown truncated to 60 characters
  sample_seconds    optional: the counters are deltas over a window this long

Facts: statements, total_ms, top_total_ms, top_share_pct, top_mean_ms,
top_calls, top_queryid, top_query (normalised, truncated to 120 characters),
top_user, top_tables (the tables its text names after FROM / JOIN / UPDATE /
INTO, comma-separated), top_hit_pct, top5_share_pct, temp_heavy, bad_lines,
sample_seconds (0 when the rows are totals since the reset).
"""
import json
import re
import sys

TOP = 10
MAX_QUERY = 60


def clip(value, width):
    text = " ".join(str(value).split()) if value is not None else ""
    if len(text) > width:
        return text[: width - 3] + "..."
    return text


TABLE_RE = re.compile(
    r'\b(?:from|join|update|into)\s+((?:"[^"]+"|[a-z_][a-z0-9_$]*)(?:\.(?:"[^"]+"|[a-z_][a-z0-9_$]*))?)',
    re.IGNORECASE)
NOT_TABLES = {"select", "lateral", "unnest", "generate_series", "only"}


def tables_of(query):
    """Table names a statement's text reads or writes, in order, once each."""
    seen = []
    for m in TABLE_RE.finditer(query or ""):
        name = m.group(1)
        if name.lower() in NOT_TABLES or name in seen:
            continue
        seen.append(name)
    return seen


def num(value):
    try:
        f = float(value)
    except (TypeError, ValueError):
        return 0.0
    return f if f == f else 0.0  # NaN -> 0


def fmt_ms(ms):
    if ms >= 3600000:
        return "%.1fh" % (ms / 3600000)
    if ms >= 60000:
        return "%.1fmin" % (ms / 60000)
    if ms >= 1000:
        return "%.1fs" % (ms / 1000)
    return "%.1fms" % ms


def main():
    rows = []
    bad_lines = 0
    all_total = 0.0
    sample_seconds = 0
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except ValueError:
            bad_lines += 1
            continue
        if not isinstance(row, dict):
            bad_lines += 1
            continue
        stmt = {
            "queryid": row.get("queryid"),
            "user": row.get("username"),
            "calls": int(num(row.get("calls"))),
            "total": num(row.get("total_exec_ms")),
            "mean": num(row.get("mean_exec_ms")),
            "rows": int(num(row.get("rows"))),
            "hit": num(row.get("shared_blks_hit")),
            "read": num(row.get("shared_blks_read")),
            "temp": num(row.get("temp_blks_written")),
            "query": row.get("query"),
        }
        if stmt["mean"] == 0.0 and stmt["calls"]:
            stmt["mean"] = stmt["total"] / stmt["calls"]
        all_total = max(all_total, num(row.get("all_total_ms")))
        sample_seconds = max(sample_seconds, int(num(row.get("sample_seconds"))))
        rows.append(stmt)

    rows.sort(key=lambda s: s["total"], reverse=True)
    fetched_total = sum(s["total"] for s in rows)
    total = max(all_total, fetched_total)

    def share(ms):
        return round(100.0 * ms / total, 1) if total > 0 else 0.0

    out = []
    if not rows:
        out.append("no statements")
    else:
        out.append("%d statement(s) shown, %s total execution time; top %d by total time:"
                   % (len(rows), fmt_ms(total), min(TOP, len(rows))))
        out.append("  #  total      share  calls       mean      rows/call  hit%   temp_blks  query")
        for i, s in enumerate(rows[:TOP], 1):
            blocks = s["hit"] + s["read"]
            hit_pct = "%5.1f" % (100.0 * s["hit"] / blocks) if blocks > 0 else "    -"
            per_call = s["rows"] / s["calls"] if s["calls"] else 0.0
            out.append("%3d  %-9s %5.1f%%  %-10d  %-9s %-10.1f %s  %-9d  %s" % (
                i, fmt_ms(s["total"]), share(s["total"]), s["calls"], fmt_ms(s["mean"]),
                per_call, hit_pct, int(s["temp"]), clip(s["query"], MAX_QUERY) or "-"))
    if bad_lines:
        out.append("skipped %d unreadable line(s)" % bad_lines)

    top = rows[0] if rows else None
    queryid = top["queryid"] if top else 0
    try:
        queryid = int(queryid)
    except (TypeError, ValueError):
        queryid = 0
    facts = {
        "statements": len(rows),
        "total_ms": round(total, 1),
        "top_total_ms": round(top["total"], 1) if top else 0.0,
        "top_share_pct": share(top["total"]) if top else 0.0,
        "top_mean_ms": round(top["mean"], 1) if top else 0.0,
        "top_calls": top["calls"] if top else 0,
        "top_queryid": queryid,
        "top_query": (clip(top["query"], 120) or "(no text)") if top else "none",
        "top_user": (clip(top["user"], 60) or "(unknown)") if top else "none",
        "top_tables": (", ".join(tables_of(top["query"])[:5]) or "(none named)") if top else "none",
        "top_hit_pct": (round(100.0 * top["hit"] / (top["hit"] + top["read"]), 1)
                        if top and top["hit"] + top["read"] > 0 else 100.0),
        "top5_share_pct": share(sum(s["total"] for s in rows[:5])),
        "temp_heavy": sum(1 for s in rows[:TOP] if s["temp"] > 0),
        "bad_lines": bad_lines,
        "sample_seconds": sample_seconds,
    }
    for line in out:
        print(line)
    print(json.dumps(facts, sort_keys=True))


if __name__ == "__main__":
    main()
