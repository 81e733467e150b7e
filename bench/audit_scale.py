#!/usr/bin/env python3
# Section 7 of `make bench`: the audit at scale (also runs alone, see below).
#
# A synthesized account-year - ROWS callrail_responses rows (3.65 M by
# default: 10,000 requests a day for a year, spread evenly, one account),
# 1,000 requests per run, 1 % failed, 0.1 % unknown, one-record POSTs of
# 1,000,000 distinct keys (each sent ~3.65 times over the year), the last
# delivery of each key in callrail_delivered - is generated once with SQL
# (recursive CTEs) into a staging file, then copied into databases made with
# each schema, so that the sizes compare like with like:
#   - schema 1: the tables of callrail-sqlite 0.1.0 (tests/fixtures/v0_1_0.db);
#   - schema 2 as first written (sql/schema.sql of git 488cc07);
#   - schema 2 now (sql/schema.sql).
# On the last one, with the extension loaded, it measures:
#   - bytes per request: file size ÷ rows, and each table's and index's bytes
#     per row (dbstat);
#   - the start of a 10-record keyed callrail_send (statement time, `.timer`)
#     against the fake server: warm, and cold (the file's pages dropped from
#     the page cache with `dd iflag=nocache count=0`, as drop_caches needs
#     root), against an empty database;
#   - each query of README.md's "Auditing" section, warm and cold;
#   - callrail_prune(90) (what a daily cron job would do on this file once):
#     its time, the longest a writer on another connection waited for the
#     write lock meanwhile (a loop of one-row transactions: the prune's
#     longest hold, plus scheduling), the -wal file's peak, rows deleted;
#     then the start and the queries again.
#
#   python3 bench/audit_scale.py [--rows N] [--keys N] [--runs N] [--dir D]
#
# `make bench` runs it as section 7 with BENCH_AUDIT_ROWS (3,650,000;
# 365,000 with BENCH_QUICK).  The size comparison uses min(ROWS, 1,000,000)
# rows per schema (bytes per row do not depend on the count).
import argparse
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACC = "ACC0000000000000000000000000000001"
DAY_MS = 86400000
SCHEMA_2_0 = "488cc07"  # the commit that introduced schema 2


def q(s):
    return "'" + str(s).replace("'", "''") + "'"


def shell(db, script, ext=None, timeout=7200):
    """Runs script in `sqlite3 -batch db` (after .load of ext); returns output."""
    pre = ".load %s\n" % ext if ext else ""
    proc = subprocess.run(["sqlite3", "-batch", db], input=pre + script, capture_output=True,
                          text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0 or "rror" in proc.stderr:
        raise RuntimeError("sqlite3 failed (rc %d):\n%s" % (proc.returncode, out[-3000:]))
    return out


# -- the synthesized year -----------------------------------------------------------------------

def stage_sql(base, rows, keys, now_ms):
    """SQL that fills a staging file with the year's rows (schema 2's columns)."""
    span = 365 * DAY_MS
    t0 = now_ms - span
    step = span / rows
    url = base + "/v3/a/%s/companies.json" % ACC
    bucket = base + "/v3/a/%s" % ACC
    sent = "CAST(%d + (i - 1) * %r AS INTEGER)" % (t0, step)
    iso = "strftime('%%Y-%%m-%%dT%%H:%%M:%%fZ', (%s) / 1000.0, 'unixepoch')"
    key = "'k' || ((i - 1) %% %d + 1)" % keys
    # names of 6 to 85 characters: real rows vary, so page fill does not quantise
    # the sizes compared (a 4 KiB page holds a whole number of rows)
    name = ("'Shop ' || i || substr(' of the Greater Metropolitan Area Plumbing, Heating and "
            "Air Conditioning Company', 1, (i * 7919) % 80)")
    company = ("json_object('id', printf('COM%%032x', i), 'name', " + name + ", 'status', "
               "'active', 'time_zone', 'America/New_York', 'disabled_at', NULL, "
               "'callscore_enabled', json('false'), 'callscribe_enabled', json('false'), "
               "'lead_scoring_enabled', json('false'), 'swap_exclude_jquery', NULL, "
               "'swap_ppc_override', NULL, 'swap_landing_override', NULL, "
               "'swap_cookie_duration', 6, 'external_form_capture', json('false'), "
               "'keyword_spotting_enabled', json('false'), 'created_at', %s, 'script_url', "
               "'//cdn.callrail.com/companies/' || (100000000 + i) || '/' || "
               "printf('%%020x', i * 7919) || '/12/swap.js')" % (iso % sent))
    return """
PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-262144;
CREATE TABLE runs AS WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s
  WHERE i < ({rows} + 999) / 1000)
SELECT i AS run_id, 'co' AS destination, 'send' AS kind,
  {run_start} AS started_at, {run_end} AS finished_at, 1000 AS records, 1000 AS requests,
  989 AS ok, 10 AS failed, 1 AS unknown, 0 AS skipped, 0 AS invalid, 'done' AS status,
  'bench-host' AS host, 1000 + i AS pid, i AS pid_start FROM s;
CREATE TABLE responses AS WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s
  WHERE i < {rows})
SELECT i AS id, (i - 1) / 1000 + 1 AS run_id, 'co' AS destination, (i - 1) % 1000 + 1 AS batch,
  1 AS records, json_array({key}) AS record_keys, 'POST' AS method, {url} AS url,
  json_object('name', {name}, 'time_zone', 'America/New_York') AS request_body,
  CASE WHEN i % 1000 = 500 THEN NULL WHEN i % 100 = 1 THEN 422 ELSE 201 END AS status,
  CASE WHEN i % 1000 = 500 THEN 'unknown' WHEN i % 100 = 1 THEN 'failed' ELSE 'ok' END AS state,
  CASE WHEN i % 1000 = 500 THEN NULL WHEN i % 100 = 1 THEN '{{"error":"Name is invalid"}}'
       ELSE {company} END AS response_body,
  CASE WHEN i % 1000 = 500 THEN 'connection dropped before any response (the request may '
       || 'have arrived)' WHEN i % 100 = 1 THEN 'HTTP 422: Name is invalid' END AS error,
  1 AS attempts, {sent_at} AS sent_at, 120 + i % 200 AS duration_ms, {bucket} AS quota_bucket,
  'general' AS quota_class, {sent} AS sent_ms, {key} AS record_key,
  CASE WHEN i % 1000 <> 500 AND i % 100 <> 1 THEN printf('COM%032x', i) END AS remote_id
FROM s;
CREATE TABLE delivered AS SELECT destination, record_key,
  printf('%016x%016x', max(id) * 2654435761, max(id) * 40503) AS record_hash,
  max(id) AS response_id, max(sent_at) AS delivered_at, printf('COM%032x', max(id)) AS remote_id
FROM responses WHERE state = 'ok' GROUP BY record_key;
""".format(rows=rows, key=key, name=name, url=q(url), bucket=q(bucket), company=company, sent=sent,
           sent_at=iso % sent,
           run_start=iso % ("%d + (i - 1) * 1000 * %r" % (t0, step)),
           run_end=iso % ("%d + (i * 1000 - 1) * %r + 500" % (t0, step)))


def schema_ddl(which):
    """The DDL of schema 1 (from the 0.1.0 fixture), 2.0 or the current one."""
    if which == "1":
        fx = os.path.join(ROOT, "tests", "fixtures", "v0_1_0.db")
        return ";\n".join(r[0] for r in one(
            fx, "SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'"
            " ORDER BY type DESC")) + ";\n"
    if which == "2.0":
        text = subprocess.run(["git", "-C", ROOT, "show", SCHEMA_2_0 + ":sql/schema.sql"],
                              capture_output=True, text=True, check=True).stdout
    else:
        text = open(os.path.join(ROOT, "sql", "schema.sql")).read()
    return text + "INSERT INTO callrail_meta VALUES('schema_version', 2);\n"


def one(db, sql):
    """All rows of sql on db, read on a connection closed at once."""
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def columns(db, table):
    return [r[1] for r in one(db, "PRAGMA table_info(%s)" % table)]


def build(db, stage, which, limit, rows):
    """A database of schema `which` holding the first `limit` of the `rows`
    staged responses (and as large a share of the deliveries)."""
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    shell(db, schema_ddl(which))
    ins = ["PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF; PRAGMA cache_size=-262144;",
           "ATTACH %s AS st; BEGIN;" % q(stage)]
    for table, src, where in (("callrail_runs", "runs", "run_id <= (%d + 999) / 1000" % limit),
                              ("callrail_responses", "responses", "id <= %d" % limit),
                              ("callrail_delivered", "delivered",
                               "rowid <= %d * (SELECT count(*) FROM st.delivered) / %d"
                               % (limit, rows))):
        staged = set(columns(stage, src))
        cols = ", ".join(c for c in columns(db, table) if c in staged)
        ins.append("INSERT INTO main.%s(%s) SELECT %s FROM st.%s WHERE %s ORDER BY 1;"
                   % (table, cols, cols, src, where))
    ins.append("COMMIT; PRAGMA wal_checkpoint(TRUNCATE);")
    shell(db, "\n".join(ins))


def sizes(db, rows):
    """Bytes per response row: the file, and per table/index (dbstat)."""
    per = {name: size / rows for name, size in one(
        db, "SELECT name, sum(pgsize) FROM dbstat GROUP BY name")}
    return {"file": os.path.getsize(db) / rows, "objects": per}


# -- timings ------------------------------------------------------------------------------------

def drop_cache(db):
    """Drops the file's pages from the page cache, in another process: a
    close() of the file in this one would drop the POSIX locks that this
    process's own SQLite connections hold on it."""
    for suffix in ("", "-wal"):
        if os.path.exists(db + suffix):
            subprocess.run(["dd", "if=" + db + suffix, "iflag=nocache", "count=0",
                            "status=none"], check=True)


def timer(out):
    found = re.findall(r"Run Time: real ([0-9.]+)", out)
    if not found:
        raise RuntimeError("no .timer line in:\n" + out)
    return float(found[-1]) * 1000


def start_ms(db, ext, base, tag, cold):
    """Statement time of a 10-record keyed send (new keys), in ms."""
    if cold:
        drop_cache(db)
    recs = ("WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 10)"
            " SELECT 'new-%s-' || i AS k, 'Bench ' || i AS name FROM s" % tag)
    out = shell(db, ".output /dev/null\nSELECT callrail_credential('fake', 'test-token', %s);\n"
                ".output stdout\n.timer on\nSELECT count(*) FROM callrail_send('co', %s);\n"
                % (q(base), q(recs)), ext)
    if "\n10\n" not in "\n" + out:
        raise RuntimeError("the send did not return 10 rows:\n" + out)
    return timer(out)


def readme_queries():
    text = open(os.path.join(ROOT, "README.md")).read()
    section = text.split("\n## Auditing\n", 1)[1].split("\n## ", 1)[0]
    stmts = []
    for block in re.findall(r"```sql\n(.*?)```", section, re.S):
        name = None
        for part in block.split(";"):
            lines = [ln for ln in part.strip().splitlines()]
            comment = [ln[3:] for ln in lines if ln.startswith("-- ")]
            code = "\n".join(ln for ln in lines if not ln.startswith("--")).strip()
            if code:
                stmts.append((name or (comment[0] if comment else code[:40]), code))
                name = None
    return stmts


def query_ms(db, sql, cold):
    if cold:
        drop_cache(db)
    return timer(shell(db, ".output /dev/null\n.timer on\n%s;\n" % sql))


def median(f, n):
    return statistics.median(f(i) for i in range(n))


class LockProbe(threading.Thread):
    """Writes one row per transaction on its own connection while the prune
    runs; the longest wait for BEGIN IMMEDIATE is the prune's longest
    write-lock hold (plus scheduling).  Also samples the -wal size."""

    def __init__(self, db):
        super().__init__(daemon=True)
        self.db, self.stop, self.max_ms, self.wal_peak, self.n = db, False, 0.0, 0, 0

    def run(self):
        con = sqlite3.connect(self.db, timeout=60, isolation_level=None)
        con.execute("PRAGMA wal_autocheckpoint=0")  # its own checkpoints would add to its waits
        con.execute("CREATE TABLE IF NOT EXISTS bench_probe(x)")
        while not self.stop:
            t = time.perf_counter()
            con.execute("BEGIN IMMEDIATE")
            self.max_ms = max(self.max_ms, (time.perf_counter() - t) * 1000)
            con.execute("INSERT INTO bench_probe VALUES(1)")
            con.execute("COMMIT")
            self.n += 1
            w = self.db + "-wal"
            self.wal_peak = max(self.wal_peak, os.path.getsize(w) if os.path.exists(w) else 0)
            time.sleep(0.001)
        con.execute("DROP TABLE bench_probe")
        con.close()


def prune(db, ext):
    probe = LockProbe(db)
    probe.start()
    t = time.perf_counter()
    out = shell(db, "SELECT callrail_prune(90);\n", ext)
    secs = time.perf_counter() - t
    probe.stop = True
    probe.join()
    return {"deleted": int(out.strip().splitlines()[-1]), "seconds": secs,
            "max_lock_wait_ms": probe.max_ms, "probe_writes": probe.n,
            "wal_peak_bytes": probe.wal_peak}


UNRESOLVED = ("SELECT count(*) FROM callrail_responses WHERE state IN ('pending','unknown')"
              " AND resolved_by IS NULL")


# -- the section --------------------------------------------------------------------------------

def setup_sql(base):
    cfg = {"credential": "fake", "url": "/v3/a/{account_id}/companies.json",
           "params": {"account_id": ACC}, "key": "k", "concurrency": 10,
           "rate_limit": {"per_hour": 10 ** 8, "per_day": 10 ** 8}}
    return (".output /dev/null\nSELECT callrail_credential('fake', 'test-token', %s);\n"
            "SELECT callrail_destination('co', %s);\nSELECT callrail_activate('co');\n"
            % (q(base), q(json.dumps(cfg))))


def measure_year(db, empty, ext, base, runs, label):
    res = {}
    for name, path in (("empty", empty), (label, db)):
        res["start_warm_" + name] = median(
            lambda i: start_ms(path, ext, base, "%s-w%d-%d" % (name, i, time.time_ns()), False),
            runs)
        res["start_cold_" + name] = median(
            lambda i: start_ms(path, ext, base, "%s-c%d-%d" % (name, i, time.time_ns()), True),
            runs)
    res["queries"] = [(name, median(lambda i: query_ms(db, sql, False), runs),
                       median(lambda i: query_ms(db, sql, True), runs))
                      for name, sql in readme_queries()]
    return res


def run_section(work, ext, base, rows, keys, runs, say=print):
    """Builds, measures; returns a dict of results."""
    os.makedirs(work, exist_ok=True)
    stage = os.path.join(work, "stage.db")
    if os.path.exists(stage):
        os.remove(stage)
    t = time.perf_counter()
    shell(stage, stage_sql(base, rows, keys, int(time.time() * 1000)))
    say("  staged %d rows in %.0f s" % (rows, time.perf_counter() - t))
    res = {"rows": rows, "keys": keys, "size_rows": min(rows, 1000000), "sizes": {}}
    for which in ("1", "2.0"):
        db = os.path.join(work, "schema-%s.db" % which)
        build(db, stage, which, res["size_rows"], rows)
        res["sizes"][which] = sizes(db, res["size_rows"])
        os.remove(db)
        say("  schema %s: %.0f bytes/request" % (which, res["sizes"][which]["file"]))
    db, empty = os.path.join(work, "year.db"), os.path.join(work, "empty.db")
    t = time.perf_counter()
    build(db, stage, "now", rows, rows)
    res["build_s"] = time.perf_counter() - t
    os.remove(stage)
    res["sizes"]["now"] = sizes(db, rows)
    res["file_bytes"] = os.path.getsize(db)
    say("  schema now: %.0f bytes/request, %.2f GB (built in %.0f s)"
        % (res["sizes"]["now"]["file"], res["file_bytes"] / 1e9, res["build_s"]))
    res["unresolved_rows"] = one(db, UNRESOLVED)[0][0]
    for path in (db, empty):
        if path == empty and os.path.exists(empty):
            os.remove(empty)
        shell(path, setup_sql(base), ext)
    res["before"] = measure_year(db, empty, ext, base, runs, "year")
    say("  before prune: start warm %.0f ms / cold %.0f ms (empty %.0f / %.0f)"
        % (res["before"]["start_warm_year"], res["before"]["start_cold_year"],
           res["before"]["start_warm_empty"], res["before"]["start_cold_empty"]))
    res["prune"] = prune(db, ext)
    say("  prune(90): %(deleted)d rows in %(seconds).1f s, longest lock wait "
        "%(max_lock_wait_ms).1f ms, WAL peak %(wal_peak_bytes)d bytes" % res["prune"])
    res["unresolved_after"] = one(db, UNRESOLVED)[0][0]
    res["after"] = measure_year(db, empty, ext, base, runs, "year")
    res["file_bytes_after"] = os.path.getsize(db)
    res["freelist_after"] = one(db, "PRAGMA freelist_count")[0][0]
    res["check_after"] = one(db, "PRAGMA quick_check")[0][0]
    return res


def report_lines(r):
    """The section's Markdown."""
    s1, s20, now = r["sizes"]["1"], r["sizes"]["2.0"], r["sizes"]["now"]
    names = sorted(set(s1["objects"]) | set(s20["objects"]) | set(now["objects"]),
                   key=lambda n: -max(s.get(n, 0) for s in (s1["objects"], s20["objects"],
                                                             now["objects"])))
    out = ["## 8. Audit at scale", "",
           "A synthesized account-year built with SQL (`bench/audit_scale.py`): %s "
           "`callrail_responses` rows (10,000 requests a day for a year, one account, 1,000 per "
           "run, 1 %% failed, 0.1 %% unknown, company-sized bodies), %s distinct keys each sent "
           "~%.2f times, the last delivery of each in `callrail_delivered`. Sizes compare the "
           "same first %s rows in each schema. Times are the `callrail_send`/query statement's "
           "own (`.timer`), median of %d; *cold* = the file dropped from the page cache with "
           "`dd iflag=nocache count=0` first (`/proc/sys/vm/drop_caches` needs root)."
           % (format(r["rows"], ","), format(r["keys"], ","), r["rows"] / r["keys"],
              format(r["size_rows"], ","), r["runs"]), "",
           "| bytes per request | schema 1 (0.1.0) | schema 2 as first written | schema 2 now |",
           "|---|---|---|---|",
           "| **whole file** | %.0f | %.0f | %.0f |" % (s1["file"], s20["file"], now["file"])]
    for n in [n for n in names if any(s["objects"].get(n, 0) >= 0.5 for s in (s1, s20, now))]:
        out.append("| %s | %s | %s | %s |" % (n, *("%.0f" % s["objects"][n] if n in s["objects"]
                                                  else "–" for s in (s1, s20, now))))
    b, a, p = r["before"], r["after"], r["prune"]
    out += ["", "Database: %.2f GB for %s rows (%.0f bytes/request); %d rows unresolved "
            "(unknown, not delivered since) before the prune, %d after it (its settle step "
            "marks unknown rows whose keys were delivered later)."
            % (r["file_bytes"] / 1e9, format(r["rows"], ","), now["file"], r["unresolved_rows"],
               r["unresolved_after"]), "",
            "| start of a 10-record keyed send, ms | empty db warm | empty db cold | year warm "
            "| year cold |", "|---|---|---|---|---|"]
    for label, m in (("before the prune", b), ("after callrail_prune(90)", a)):
        out.append("| %s | %.0f | %.0f | %.0f | %.0f |" % (
            label, m["start_warm_empty"], m["start_cold_empty"], m["start_warm_year"],
            m["start_cold_year"]))
    out += ["", "| README audit query, ms | warm | cold | warm after prune | cold after prune |",
            "|---|---|---|---|---|"]
    for (name, w, c), (_, w2, c2) in zip(b["queries"], a["queries"]):
        out.append("| %s | %.1f | %.1f | %.1f | %.1f |" % (name, w, c, w2, c2))
    out += ["", "`callrail_prune(90)` on it: %s rows deleted in %.1f s; a writer on another "
            "connection (one-row transactions in a loop, %d of them meanwhile) waited at most "
            "%.1f ms for the write lock; the `-wal` file peaked at %.1f MiB; the file stays "
            "%.2f GB with %s free pages until VACUUM or incremental vacuum."
            % (format(p["deleted"], ","), p["seconds"], p["probe_writes"], p["max_lock_wait_ms"],
               p["wal_peak_bytes"] / 1048576, r["file_bytes_after"] / 1e9,
               format(r["freelist_after"], ",")), ""]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=3650000)
    ap.add_argument("--keys", type=int, default=1000000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", help="work directory (default: a new temporary one)")
    ap.add_argument("--ext", default=os.path.join(ROOT, "callrail"))
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from run import Fake  # the test runner's fake server handle
    work = args.dir or tempfile.mkdtemp(prefix="callrail-audit-scale-")
    os.makedirs(work, exist_ok=True)
    fake = Fake(work)
    try:
        fake.config(quota={"general": {"hour": None, "day": None, "minute": None,
                                       "second": None}})
        r = run_section(work, args.ext, fake.base, args.rows, args.keys, args.runs)
        r["runs"] = args.runs
        print("\n".join(report_lines(r)))
    finally:
        fake.stop()
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
