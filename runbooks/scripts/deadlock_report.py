#!/usr/bin/env python3
"""Deadlock reports from the server log: who waited for whom, in which statement.

Protocol (ward summarizer script): rows arrive as JSON Lines on stdin, one
object per row; the human summary goes to stdout and the LAST line is one JSON
object of facts.

Expected columns (see runbooks/pg-deadlocks.yaml, step deadlock_log):
  line_no  bigint, the line's number in the log tail (rows arrive in order)
  line     text, one line of the server log (stderr or csvlog format)

A deadlock report in the log reads (continuation lines start with a tab):
  ... [4242] ERROR:  deadlock detected
  ... [4242] DETAIL:  Process 4242 waits for ShareLock on transaction 771; blocked by process 4243.
          Process 4243 waits for ShareLock on transaction 770; blocked by process 4242.
          Process 4242: UPDATE accounts SET balance = balance - 1 WHERE id = 2
          Process 4243: UPDATE accounts SET balance = balance + 1 WHERE id = 1
  ... [4242] CONTEXT:  while updating tuple (0,2) in relation "accounts"
  ... [4242] STATEMENT:  UPDATE accounts SET balance = balance - 1 WHERE id = 2
With log_lock_waits, "process N still waiting for ShareLock on transaction
X after 1000.072 ms" lines (and their CONTEXT) come before it.

Facts (each string at most 200 characters, ward's limit): deadlocks_in_log,
lock_waits_in_log, last_victim_pid, last_cycle ("pid 4242 -> pid 4243 -> pid
4242"), statement_1 and statement_2 (the first two members' statements,
"pid N: UPDATE ..."), last_tables (comma-separated), first_table, lock_order
("pid 4242 took tuple (0,1) in accounts, then waited for tuple (0,2) in
accounts; ...": the rows each member locked and waited for, as far as the
log tells: the victim's row from the report, the others' from
log_lock_waits), bad_lines.
"""
import json
import re
import sys

MAX_QUERY = 160

START_RE = re.compile(r"deadlock detected")
WAITS_RE = re.compile(
    r"Process (\d+) waits for (\S+) on (.+?); blocked by process (\d+)")
QUERY_RE = re.compile(r"Process (\d+): (.*)$")
CONTEXT_RE = re.compile(
    r'while (\w+) tuple \((\d+,\d+)\) in relation "([^"]+)"')
STATEMENT_RE = re.compile(r"STATEMENT:\s+(.*)$")
STILL_WAITING_RE = re.compile(
    r"process (\d+) (?:still waiting|detected deadlock while waiting|acquired) (?:for )?(\S+) on (.+?) after ([\d.]+) ms")
PID_RE = re.compile(r"\[(\d+)\]")
TABLE_RE = re.compile(
    r'\b(?:from|join|update|into)\s+(?:only\s+)?((?:"[^"]+"|[a-z_][a-z0-9_$]*)(?:\.(?:"[^"]+"|[a-z_][a-z0-9_$]*))?)',
    re.IGNORECASE)
NOT_TABLES = {"select", "lateral", "unnest", "generate_series", "only"}


def clip(text, width=MAX_QUERY):
    text = " ".join((text or "").split())
    # A csvlog field ends at the closing quote; the rest is other fields.
    text = re.sub(r'",".*$', "", text).strip('"')
    if len(text) > width:
        return text[: width - 3] + "..."
    return text


def tables_of(query):
    seen = []
    for m in TABLE_RE.finditer(query or ""):
        name = m.group(1)
        if name.lower() in NOT_TABLES or name in seen:
            continue
        seen.append(name)
    return seen


def new_report(line):
    pid = PID_RE.search(line)
    return {
        "victim": int(pid.group(1)) if pid else None,
        "edges": [],
        "queries": {},
        "context": None,
        "statement": None,
    }


def main():
    reports = []
    waits = []  # log_lock_waits lines: (pid, lock, on, context)
    current = None
    pending_wait = None
    bad = 0
    for raw in sys.stdin:
        raw = raw.strip()
        if not raw:
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError:
            bad += 1
            continue
        line = row.get("line") or ""
        if START_RE.search(line):
            current = new_report(line)
            reports.append(current)
            pending_wait = None
            continue
        m = STILL_WAITING_RE.search(line)
        if m:
            pending_wait = {"pid": int(m.group(1)), "lock": m.group(2),
                            "on": m.group(3), "context": None}
            waits.append(pending_wait)
            continue
        m = WAITS_RE.search(line)
        if m and current is not None:
            current["edges"].append((int(m.group(1)), m.group(2), m.group(3), int(m.group(4))))
            continue
        m = QUERY_RE.search(line)
        if m and current is not None and "waits for" not in line:
            current["queries"][int(m.group(1))] = clip(m.group(2))
            continue
        m = CONTEXT_RE.search(line)
        if m:
            ctx = "%s tuple (%s) in %s" % (m.group(1), m.group(2), m.group(3))
            if current is not None and current["statement"] is None and current["edges"]:
                current["context"] = ctx
            elif pending_wait is not None and pending_wait["context"] is None:
                pending_wait["context"] = ctx
            continue
        m = STATEMENT_RE.search(line)
        if m:
            if current is not None and current["statement"] is None and current["edges"]:
                current["statement"] = clip(m.group(1))
                current = None
            elif pending_wait is not None:
                pending_wait["statement"] = clip(m.group(1))
                pending_wait = None

    facts = {
        "deadlocks_in_log": len(reports),
        "lock_waits_in_log": len(waits),
        "bad_lines": bad,
        "last_victim_pid": 0,
        "last_cycle": "",
        "statement_1": "",
        "statement_2": "",
        "last_tables": "",
        "first_table": "",
        "lock_order": "",
    }
    if not reports:
        print("No deadlock report in the log tail (%d lock wait(s) logged)." % len(waits))
        print(json.dumps(facts))
        return

    print("%d deadlock report(s) in the log tail; %d lock wait(s) logged." % (len(reports), len(waits)))
    for n, rep in enumerate(reports[-5:], start=max(1, len(reports) - 4)):
        print("deadlock %d (victim pid %s):" % (n, rep["victim"]))
        for waiter, lock, on, holder in rep["edges"]:
            print("  pid %d waits for pid %d (%s on %s) in: %s"
                  % (waiter, holder, lock, on, rep["queries"].get(waiter, "?")))
        if rep["context"]:
            print("  the victim was %s" % rep["context"])

    last = reports[-1]
    pids = [e[0] for e in last["edges"]]
    cycle = " -> ".join("pid %d" % p for p in pids + pids[:1])
    statements = ["pid %d: %s" % (p, last["queries"][p]) for p in pids if p in last["queries"]]
    tables = []
    for p in pids:
        for t in tables_of(last["queries"].get(p, "")):
            if t not in tables:
                tables.append(t)
    if last["context"]:
        rel = last["context"].rsplit(" in ", 1)[-1]
        if rel not in tables:
            tables.append(rel)
    # The row each member waited for: the victim's from the report's
    # CONTEXT, the others' from their log_lock_waits lines. What a member
    # waited for, the member it waited on had locked first.
    wanted = {}
    for w in waits:
        if w.get("context"):
            wanted[w["pid"]] = w["context"].split(" ", 1)[1] if " " in w["context"] else w["context"]
    if last["context"] and last["victim"] is not None:
        wanted[last["victim"]] = last["context"].split(" ", 1)[1]
    holder_of = {w: h for w, _, _, h in last["edges"]}
    waited_on_by = {h: w for w, _, _, h in last["edges"]}
    order = []
    for p in pids:
        took = wanted.get(waited_on_by.get(p))
        want = wanted.get(p)
        if took and want:
            order.append("pid %d took %s, then waited for %s" % (p, took, want))
        elif want:
            order.append("pid %d waited for %s, held by pid %d" % (p, want, holder_of.get(p, 0)))
        elif took:
            order.append("pid %d had taken %s first" % (p, took))
    facts.update({
        "last_victim_pid": last["victim"] or 0,
        "last_cycle": cycle,
        "statement_1": clip(statements[0], 190) if statements else "",
        "statement_2": clip(statements[1], 190) if len(statements) > 1 else "",
        "last_tables": ", ".join(tables),
        "first_table": tables[0] if tables else "",
        "lock_order": clip("; ".join(order), 200),
    })
    print(json.dumps(facts))


if __name__ == "__main__":
    main()
