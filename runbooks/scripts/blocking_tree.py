#!/usr/bin/env python3
"""Summarize PostgreSQL lock-blocking chains as an indented tree.

Protocol (ward summarizer script): rows arrive as JSON Lines on stdin, one
object per row; the human summary goes to stdout and the LAST line is one JSON
object of facts.

Expected columns (see runbooks/pg-lock-contention.yaml, step blocking_tree):
  pid               integer, the backend (0 = a prepared transaction holds the lock)
  blocked_by        list of integers from pg_blocking_pids(pid) ([] for a root)
  usename           text
  application_name  text
  state             text (active, idle in transaction, ...)
  wait_seconds      number, how long the backend has waited for its lock (null if not waiting)
  xact_seconds      number, age of the backend's transaction (null if none)
  query             text, shown truncated to 60 characters (facts keep 120)
  backend_type      text, optional (client backend, autovacuum worker, ...)
  client_addr       text, optional
  tables            text, optional: tables a waiter waits on, or a root holds

Facts: blocked, root_blockers, max_wait_seconds, root_pid, root_blocked_count,
root_state, root_xact_seconds, root_application, root_user, root_client,
root_query, root_backend_type, root_tables, sessions, bad_lines.
The root is the one blocking the most sessions, preferring a client backend
(the only kind a runbook may signal) among roots that block as many.
"""
import json
import sys

MAX_QUERY = 60
MAX_FIELD = 24
MAX_LINES = 60


def clip(value, width):
    text = " ".join(str(value).split()) if value is not None else ""
    if len(text) > width:
        return text[: width - 3] + "..."
    return text


def as_int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            return int(float(value))
        except (TypeError, ValueError):
            return None


def as_num(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def parse_pids(value):
    """blocked_by may arrive as a JSON list, or as a Postgres array literal '{1,2}'."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [v for v in value.strip("{}").split(",") if v.strip()]
    if not isinstance(value, list):
        value = [value]
    pids = []
    for v in value:
        p = as_int(v)
        if p is not None and p not in pids:
            pids.append(p)
    return pids


def fmt_seconds(value):
    if value is None:
        return "-"
    value = int(value)
    if value >= 3600:
        return "%dh%02dm" % (value // 3600, (value % 3600) // 60)
    if value >= 60:
        return "%dm%02ds" % (value // 60, value % 60)
    return "%ds" % value


def main():
    sessions = {}
    bad_lines = 0
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
        pid = as_int(row.get("pid"))
        if pid is None:
            bad_lines += 1
            continue
        sessions[pid] = {
            "pid": pid,
            "blocked_by": [p for p in parse_pids(row.get("blocked_by")) if p != pid],
            "user": row.get("usename"),
            "app": row.get("application_name"),
            "state": row.get("state"),
            "wait": as_num(row.get("wait_seconds")),
            "xact": as_num(row.get("xact_seconds")),
            "query": row.get("query"),
            "backend_type": row.get("backend_type"),
            "client": row.get("client_addr"),
            "tables": row.get("tables"),
        }

    # Blockers that did not come back as rows (a prepared transaction is pid 0,
    # a backend may have exited meanwhile) still appear as tree nodes.
    for s in list(sessions.values()):
        for b in s["blocked_by"]:
            if b not in sessions:
                sessions[b] = {
                    "pid": b, "blocked_by": [], "user": None, "app": None,
                    "state": "prepared transaction" if b == 0 else "unknown",
                    "wait": None, "xact": None, "query": None,
                    "backend_type": "prepared transaction" if b == 0 else "unknown",
                    "client": None, "tables": None,
                }

    children = {pid: [] for pid in sessions}
    for s in sessions.values():
        for b in s["blocked_by"]:
            children[b].append(s["pid"])

    blocked = [s for s in sessions.values() if s["blocked_by"]]
    roots = sorted(pid for pid, s in sessions.items() if not s["blocked_by"] and children[pid])
    # A pure cycle (deadlock not yet detected) has no root: show its members as roots.
    if blocked and not roots:
        roots = sorted(s["pid"] for s in blocked)[:1]

    def descendants(pid):
        seen, stack = set(), list(children.get(pid, []))
        while stack:
            p = stack.pop()
            if p in seen or p == pid:
                continue
            seen.add(p)
            stack.extend(children.get(p, []))
        return seen

    reach = {pid: len(descendants(pid)) for pid in roots}
    def is_client(pid):
        return (sessions[pid].get("backend_type") or "client backend") == "client backend"

    root_pid = max(roots, key=lambda p: (reach[p], is_client(p), -p)) if roots else 0
    waits = [s["wait"] for s in blocked if s["wait"] is not None]
    max_wait = int(max(waits)) if waits else 0

    out = []
    if not blocked:
        out.append("no blocking")
    else:
        out.append("%d blocked session(s) behind %d root blocker(s); longest wait %s"
                   % (len(blocked), len(roots), fmt_seconds(max_wait)))
        printed = set()

        def render(pid, depth, path):
            if len(out) >= MAX_LINES:
                return
            s = sessions[pid]
            label = "root " if depth == 0 else "waits "
            extra = ""
            if len(s["blocked_by"]) > 1:
                extra = " (blocked by %s)" % ",".join(str(p) for p in s["blocked_by"])
            bt = s.get("backend_type")
            if bt and bt != "client backend":
                extra += " [%s]" % clip(bt, MAX_FIELD)
            if pid in printed:
                out.append("%s%spid %d (see above)%s" % ("  " * depth, label, pid, extra))
                return
            printed.add(pid)
            out.append("%s%spid %d user=%s app=%s state=%s wait=%s xact=%s%s | %s" % (
                "  " * depth, label, pid, clip(s["user"], MAX_FIELD) or "-",
                clip(s["app"], MAX_FIELD) or "-", clip(s["state"], MAX_FIELD) or "-",
                fmt_seconds(s["wait"]), fmt_seconds(s["xact"]), extra,
                clip(s["query"], MAX_QUERY) or "-"))
            for child in sorted(children.get(pid, [])):
                if child in path:
                    out.append("%s(cycle back to pid %d)" % ("  " * (depth + 1), child))
                    continue
                render(child, depth + 1, path | {child})

        for r in sorted(roots, key=lambda p: (-reach[p], p)):
            render(r, 0, {r})
        if len(out) >= MAX_LINES:
            out = out[:MAX_LINES]
            out.append("... (truncated)")
    if bad_lines:
        out.append("skipped %d unreadable line(s)" % bad_lines)

    root = sessions.get(root_pid) if roots else None
    facts = {
        "blocked": len(blocked),
        "root_blockers": len(roots),
        "max_wait_seconds": max_wait,
        "root_pid": root_pid,
        "root_blocked_count": reach.get(root_pid, 0) if roots else 0,
        "root_state": (root["state"] or "unknown") if root else "none",
        "root_xact_seconds": int(root["xact"]) if root and root["xact"] is not None else 0,
        "root_application": (clip(root["app"], 60) or "(none)") if root else "none",
        "root_user": (clip(root["user"], 60) or "(unknown)") if root else "none",
        "root_client": (clip(root["client"], 60) or "local") if root else "none",
        "root_query": (clip(root["query"], 120) or "(none)") if root else "none",
        "root_backend_type": (root["backend_type"] or "client backend") if root else "none",
        "root_tables": (clip(root["tables"], 120) or "(no table lock)") if root else "none",
        "sessions": len(sessions),
        "bad_lines": bad_lines,
    }
    # The edges, for the UI's tree: waiting sessions with their wait, roots
    # with the age of their open transaction. Capped to stay in budget.
    chain = []
    for pid in sorted(sessions, key=lambda p: (-reach.get(p, 0), p)):
        s = sessions[pid]
        if not s["blocked_by"] and not children[pid]:
            continue
        age = s["wait"] if s["blocked_by"] else s["xact"]
        chain.append({
            "pid": pid,
            "blocked_by": s["blocked_by"],
            "age_s": age if age is not None else 0,
            "application": clip(s["app"] or "", 40),
            "state": s["state"] or "unknown",
        })
    facts["chain"] = chain[:50]
    facts["chain_truncated"] = len(chain) > 50
    for line in out:
        print(line)
    print(json.dumps(facts, sort_keys=True))


if __name__ == "__main__":
    main()
