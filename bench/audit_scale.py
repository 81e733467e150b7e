#!/usr/bin/env python3
# Audit-table scale benchmark (not part of `make test`).
#
# Checks: how long a run takes to start when the audit tables hold a year of
# history for one account, compared with an empty database.  Target: run
# start-up under 100 ms.
#
#   python3 bench/audit_scale.py [--rows 3650000] [--delivered 1000000]
#                                [--unknown-every 1000] [--repeat 5]
#                                [--dir DIR] [--keep]
#
# It starts the fake CallRail server (tests/fake_callrail.py) on loopback,
# creates two databases with the real sqlite3 shell after `.load` of the
# extension (so the extension creates the schema and indexes):
#   - empty: only the credential row and the destination;
#   - year:  the same plus, inserted with one SQL statement each (recursive
#     CTEs), --rows callrail_responses rows spread evenly over the last 365
#     days for one account (ids 1..N, 1,000 per run, 10 runs a day; 1 %
#     failed, 0.1 % unknown (--unknown-every 1000; 0 for none), the rest ok;
#     half of the runs for the benchmarked destination),
#     the matching callrail_runs rows, and --delivered callrail_delivered
#     rows for the benchmarked destination;
# then runs each measured statement --repeat times in a fresh sqlite3 process
# per database and prints the medians:
#   - callrail_send of 1 keyed record to the fake (the run's start-up plus one
#     local HTTP request): the statement's time from the shell's `.timer`, and
#     the whole process (exec, .load, credential, statement, exit);
#   - callrail_preview with a `key` on 1,000 records;
#   - callrail_send of 1,000 new keyed records (per-record change detection
#     against the history), for scale.
# The year's last 24 h hold 10,000 requests, CallRail's default daily limit,
# so the destination raises rate_limit to measure start-up, not waiting.
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from run import Fake  # noqa: E402  (the test runner's fake server handle)

ACC = "ACC0000000000000000000000000000001"
DEST_CFG = {
    "credential": "fake", "url": "/v3/a/{account_id}/companies.json",
    "params": {"account_id": ACC}, "key": "k", "concurrency": 16,
    "rate_limit": {"per_hour": 1000000, "per_day": 10000000},
}


def q(s):
    return "'" + str(s).replace("'", "''") + "'"


def shell(db, script, ext, timeout=3600):
    """Runs script in `sqlite3 -batch db` after .load; returns (seconds, output)."""
    t0 = time.perf_counter()
    proc = subprocess.run(["sqlite3", "-batch", db], input=".load %s\n%s" % (ext, script),
                          capture_output=True, text=True, timeout=timeout)
    secs = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    if proc.returncode != 0 or "rror" in out:
        raise RuntimeError("sqlite3 failed (rc %d):\n%s" % (proc.returncode, out[-3000:]))
    return secs, out


def setup_sql(base):
    return (".output /dev/null\n"
            "SELECT callrail_credential('fake', 'test-token', %s);\n"
            "SELECT callrail_destination('co', %s);\n"
            "SELECT callrail_activate('co');\n"
            "SELECT callrail_destination('other', %s);\n"
            ".output stdout\n" % (q(base), q(json.dumps(DEST_CFG)), q(json.dumps(DEST_CFG))))


def year_sql(base, rows, delivered, now_ms, unknown_every):
    """One INSERT per table, each from a recursive CTE."""
    span = 365 * 86400000
    t0 = now_ms - span
    step = span / rows  # ms between two requests
    per_run = 1000
    nruns = (rows + per_run - 1) // per_run
    url = base + "/v3/a/%s/companies.json" % ACC
    bucket = base + "/v3/a/%s" % ACC
    iso = "strftime('%%Y-%%m-%%dT%%H:%%M:%%fZ', (%s) / 1000.0, 'unixepoch')"
    sent_ms = "CAST(%d + (i - 1) * %r AS INTEGER)" % (t0, step)
    return """
PRAGMA synchronous=OFF;
PRAGMA cache_size=-262144;
BEGIN;
WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {nruns})
INSERT INTO callrail_runs(run_id, destination, kind, started_at, finished_at, records, requests,
                          ok, failed, unknown, skipped, invalid, status, host, pid, pid_start)
SELECT i, CASE i % 2 WHEN 0 THEN 'co' ELSE 'other' END, 'send',
       {run_start}, {run_end}, {per_run}, {per_run}, {per_run} - 10 - {unk_per_run}, 10,
       {unk_per_run}, 0, 0, 'done',
       'bench-host', 1000 + i, i
FROM s;
WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {rows})
INSERT INTO callrail_responses(id, run_id, destination, batch, records, record_keys, method,
                               url, request_body, status, state, response_body, error, attempts,
                               sent_at, duration_ms, quota_bucket, quota_class, sent_ms)
SELECT i, (i - 1) / {per_run} + 1,
       CASE ((i - 1) / {per_run} + 1) % 2 WHEN 0 THEN 'co' ELSE 'other' END,
       (i - 1) % {per_run} + 1, 1, json_array('k' || i), 'POST', {url},
       json_object('k', 'k' || i, 'name', 'Shop ' || i),
       CASE WHEN {unk} THEN NULL WHEN i % 100 = 1 THEN 422 ELSE 201 END,
       CASE WHEN {unk} THEN 'unknown' WHEN i % 100 = 1 THEN 'failed' ELSE 'ok' END,
       CASE WHEN {unk} THEN NULL WHEN i % 100 = 1 THEN '{{"error":"Name is invalid"}}'
            ELSE json_object('id', printf('COM%032x', i), 'name', 'Shop ' || i) END,
       CASE WHEN {unk} THEN 'connection dropped: Empty reply from server'
            WHEN i % 100 = 1 THEN 'HTTP 422: Name is invalid' END,
       1, {sent_at}, 120 + i % 200, {bucket}, 'general', {sent_ms}
FROM s;
WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {delivered})
INSERT INTO callrail_delivered(destination, record_key, record_hash, response_id, delivered_at)
SELECT 'co', 'k' || i, printf('%016x%016x', i * 2654435761, i * 40503), i,
       {delivered_at}
FROM s;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
SELECT (SELECT count(*) FROM callrail_responses), (SELECT count(*) FROM callrail_runs),
       (SELECT count(*) FROM callrail_delivered);
""".format(nruns=nruns, per_run=per_run, rows=rows, delivered=delivered, url=q(url),
           bucket=q(bucket), sent_ms=sent_ms, sent_at=iso % sent_ms,
           run_start=iso % ("%d + ((i - 1) * %d) * %r" % (t0, per_run, step)),
           run_end=iso % ("%d + (i * %d - 1) * %r + 500" % (t0, per_run, step)),
           delivered_at=iso % sent_ms,
           unk="i %% %d = 0" % unknown_every if unknown_every > 0 else "0",
           unk_per_run=per_run // unknown_every if unknown_every > 0 else 0)


def timer_secs(out):
    """The `real` seconds of the last `.timer` line."""
    found = re.findall(r"Run Time: real ([0-9.]+)", out)
    if not found:
        raise RuntimeError("no .timer line in:\n" + out)
    return float(found[-1])


def measure(db, ext, base, label, statement, expect):
    script = (".output /dev/null\nSELECT callrail_credential('fake', 'test-token', %s);\n"
              ".output stdout\n.timer on\n%s\n" % (q(base), statement))
    wall, out = shell(db, script, ext, timeout=600)
    if expect not in out:
        raise RuntimeError("%s: expected %r in:\n%s" % (label, expect, out))
    return timer_secs(out), wall


def keyed_records(n, prefix):
    return ("WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < %d)"
            " SELECT '%s' || i AS k, 'Shop ' || i AS name FROM s" % (n, prefix))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=3650000)
    ap.add_argument("--delivered", type=int, default=1000000)
    ap.add_argument("--unknown-every", type=int, default=1000,
                    help="every Nth response is `unknown` (0: none)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dir", help="work directory (default: a new temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the databases")
    ap.add_argument("--ext", default=os.path.join(ROOT, "callrail"))
    args = ap.parse_args()
    if not os.path.exists(args.ext + ".so"):
        print("missing %s.so: run make first" % args.ext)
        return 2
    work = args.dir or tempfile.mkdtemp(prefix="callrail-audit-scale-")
    os.makedirs(work, exist_ok=True)
    fake = Fake(work)
    try:
        fake.config(quota={"general": {"hour": None, "day": None, "minute": None, "second": None}})
        base = fake.base
        dbs = {"empty": os.path.join(work, "empty.db"), "year": os.path.join(work, "year.db")}
        for db in dbs.values():
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(db + suffix):
                    os.remove(db + suffix)
            shell(db, setup_sql(base), args.ext)
        now_ms = int(time.time() * 1000)
        t0 = time.perf_counter()
        _, out = shell(dbs["year"], year_sql(base, args.rows, args.delivered, now_ms,
                                                      args.unknown_every), args.ext)
        build = time.perf_counter() - t0
        print("year database: %s (responses|runs|delivered), %d unknown, built in %.1f s, %.0f MB"
              % (out.strip().splitlines()[-1],
                 args.rows // args.unknown_every if args.unknown_every > 0 else 0, build,
                 os.path.getsize(dbs["year"]) / 1e6))

        cases = [
            ("callrail_send, 1 record", lambda tag: (
                "SELECT state FROM callrail_send('co', %s);" % q(
                    "SELECT 'bench-%s' AS k, 'Bench %s' AS name" % (tag, tag)), "ok")),
            ("callrail_preview, key, 1,000 records", lambda tag: (
                "SELECT count(*) FROM callrail_preview('co', %s);" % q(keyed_records(1000, "k")),
                "1000")),
            ("callrail_send, 1,000 new keyed records", lambda tag: (
                "SELECT count(*) FROM callrail_send('co', %s);" % q(
                    keyed_records(1000, "new-%s-" % tag)), "1000")),
        ]
        results = {}
        for label, make in cases:
            for name, db in dbs.items():
                stmt, wall = [], []
                for i in range(args.repeat):
                    sql, expect = make("%s-%d-%d" % (name, i, os.getpid()))
                    s, w = measure(db, args.ext, base, label, sql, expect)
                    stmt.append(s)
                    wall.append(w)
                results[(label, name)] = (statistics.median(stmt), statistics.median(wall))
        print()
        print("median of %d runs, ms        | empty: statement  process | year: statement  process"
              % args.repeat)
        print("-" * 92)
        for label, _ in cases:
            e, y = results[(label, "empty")], results[(label, "year")]
            print("%-38s | %16.1f %8.1f | %15.1f %8.1f"
                  % (label, e[0] * 1000, e[1] * 1000, y[0] * 1000, y[1] * 1000))
        start = results[("callrail_send, 1 record", "year")][0] * 1000
        print()
        print("run start-up (callrail_send of 1 record, year database): %.1f ms -> %s (target < 100 ms)"
              % (start, "OK" if start < 100 else "OVER TARGET"))
    finally:
        fake.stop()
        if not args.keep and not args.dir:
            shutil.rmtree(work, ignore_errors=True)
        elif args.keep:
            print("databases kept in %s" % work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
