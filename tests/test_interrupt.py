# Interrupts (SPEC section 6: "an interrupt (Ctrl-C, sqlite3_interrupt) stops a
# run within a second, leaving it resumable"): SIGINT is sent to the sqlite3
# shell's process group, as a terminal's Ctrl-C would, and the time from the
# signal to the shell's exit is measured.
#
# Properties checked (fake request log vs. callrail_responses/callrail_runs):
#   - 200 records, answers delayed 200 ms, concurrency 4: the shell reports
#     "interrupted" and exits within 1 s of SIGINT, the run row is
#     `interrupted`, every request the fake received has a row in a final
#     state (ok, or unknown/failed with an error), no row is `pending`, the
#     run's totals are its rows'; a re-run with `key` sends exactly the
#     records not yet settled, and no body is POSTed twice across both runs;
#   - SIGINT while the run waits for a 429 backoff (no Retry-After,
#     base_delay_ms 20000) or a Retry-After of 30 s: it stops within 1 s, the
#     refused record's row is `failed`, and a re-run delivers every record;
#   - SIGINT while every request in flight hangs (answers after 10 s): it
#     stops within 1 s, the in-flight POSTs are `unknown` and are not resent
#     by the re-run, which sends the rest.
#   - SIGINT while the user's query is computing the next record: the run
#     stops within 1 s and is `interrupted` (not `error`); a re-run sends the
#     rest.
import json
import os
import signal
import subprocess
import time
from datetime import datetime, timezone

ACC = "ACC0000000000000000000000000000001"
COMPANIES = "/v3/a/{account_id}/companies.json"
COMPANY = "/v3/a/{account_id}/companies/{company_id}.json"
NO_QUOTA = {"general": {"hour": None, "day": None, "minute": None, "second": None}}


# -- helpers (each test file carries its own copy) ------------------------------------------

def q(s):
    """An SQL string literal."""
    return "'" + str(s).replace("'", "''") + "'"


def dest_sql(name, cfg, active=True, cred="fake"):
    c = {"credential": cred}
    c.update(cfg)
    s = "SELECT callrail_destination(%s, %s);\n" % (q(name), q(json.dumps(c)))
    if active:
        s += "SELECT callrail_activate(%s);\n" % q(name)
    return s


def companies_dest(**extra):
    cfg = {"url": COMPANIES, "params": {"account_id": ACC}, "retry": {"base_delay_ms": 10}}
    cfg.update(extra)
    return cfg


def names_query(n, prefix="Shop", first=1):
    """n records {"name": "<prefix> i"}, i = first..first+n-1, in order."""
    return ("WITH RECURSIVE s(i) AS (SELECT %d UNION ALL SELECT i+1 FROM s WHERE i<%d) "
            "SELECT '%s ' || i AS name FROM s ORDER BY i" % (first, first + n - 1, prefix))


def names(n, prefix="Shop", first=1):
    return ["%s %d" % (prefix, i) for i in range(first, first + n)]


def split_output(out):
    """The JSON arrays the shell printed in .mode json, and any other text."""
    dec = json.JSONDecoder()
    arrays, rest, i = [], [], 0
    while i < len(out):
        if out[i].isspace():
            i += 1
            continue
        if out[i] == "[":
            try:
                obj, i = dec.raw_decode(out, i)
                arrays.append(obj)
                continue
            except ValueError:
                pass
        j = out.find("\n", i)
        j = len(out) if j < 0 else j + 1
        rest.append(out[i:j])
        i = j
    return arrays, "".join(rest)


def script_of(ctx, setup, query):
    """A shell script: the credential and setup quietly, then query in JSON mode."""
    return (".output /dev/null\n" + ctx.setup_credential() + setup +
            ".output stdout\n.mode json\n" + query + "\n")


def run(ctx, setup, query, expect_error=False, db=None):
    """Runs setup quietly, then query in JSON mode.  Returns (rows of the
    query, other output).  Without expect_error any error text fails."""
    rc, out = ctx.sql(script_of(ctx, setup, query), db=db, check=False)
    arrays, rest = split_output(out)
    if not expect_error:
        assert rc == 0 and rest.strip() == "", "unexpected shell output (rc %d):\n%s" % (rc, out)
    rows = [r for a in arrays for r in a]
    return rows, rest


def send_query(dest, query):
    return "SELECT * FROM callrail_send(%s, %s);" % (q(dest), q(query))


def responses(ctx, db=None):
    return ctx.rows("SELECT * FROM callrail_responses ORDER BY id", db=db)


def runs(ctx, db=None):
    return ctx.rows("SELECT * FROM callrail_runs ORDER BY run_id", db=db)


def log_url(ctx, e):
    return ctx.base + e["path"] + ("?" + e["query"] if e["query"] else "")


def assert_run(run_row, **counts):
    for k, v in counts.items():
        assert run_row[k] == v, "run %s: %s is %r, expected %r (%r)" % (
            run_row["run_id"], k, run_row[k], v, run_row)


def body_name(body):
    return json.loads(body)["name"]


def post_bodies(log):
    """Bodies of the POSTs CallRail may have acted on (a 429 is a refusal)."""
    return [e["body"] for e in log if e["method"] == "POST" and e["status"] != 429]


def assert_no_post_twice(log):
    seen, twice = set(), []
    for b in post_bodies(log):
        if b in seen:
            twice.append(b)
        seen.add(b)
    assert not twice, "POSTed more than once: %r" % twice


def assert_run_counts_match_rows(run_row, table):
    """The run's totals are those of its rows."""
    mine = [t for t in table if t["run_id"] == run_row["run_id"]]

    def total(state):
        return sum(t["records"] for t in mine if t["state"] == state)
    assert_run(run_row, requests=sum(1 for t in mine if t["state"] != "invalid"), ok=total("ok"),
               failed=total("failed"), unknown=total("unknown"), invalid=total("invalid"))


def check_audit(ctx, log, table, maybe_unsent=()):
    """The fake's request log against callrail_responses, request for request.

    - every request the fake received belongs to a row with the same method,
      URL and body: nothing is lost;
    - a row made exactly `attempts` requests; a `pending` row, a row cut off
      by an interrupt, or a row in maybe_unsent (pending when its process
      died) at most that many, since it may have been written just before the
      request left;
    - only a row's last request may have been a 2xx, unless an idempotent
      request's answer came too late (timeout): no success is ever repeated;
    - a row with a status has the status of its last request; an `ok` row's is
      a 2xx; a `pending` or `unknown` row has none.
    Returns {row id: [its log entries]}."""
    maybe_unsent = set(maybe_unsent)
    entries = {}
    for e in sorted(log, key=lambda e: e["seq"]):
        key = (e["method"], log_url(ctx, e), e["body"] if e["body"] != "" else None)
        entries.setdefault(key, []).append(e)
    rows = {}
    for t in table:
        if t["state"] != "invalid":
            rows.setdefault((t["method"], t["url"], t["request_body"]), []).append(t)
    lost = [k for k in entries if k not in rows]
    assert not lost, "%d requests reached the fake without a row, e.g. %r" % (len(lost), lost[:3])
    out = {}
    for key, ts in rows.items():
        es = entries.get(key, [])
        # later rows own the later requests: walk both from the end
        for t in sorted(ts, key=lambda t: -t["id"]):
            short_ok = (t["state"] == "pending" or t["id"] in maybe_unsent or
                        "interrupted" in (t["error"] or ""))
            n = t["attempts"]
            mine = es[-n:] if n else []
            if short_ok and len(mine) < n:
                pass
            assert len(mine) == n or short_ok, (
                "row %d (%s, attempts %d) has %d requests in the fake's log: %r"
                % (t["id"], t["state"], n, len(mine), t))
            es = es[:len(es) - len(mine)]
            out[t["id"]] = mine
            for e in mine[:-1]:
                assert not (200 <= (e["status"] or 0) < 300) or (
                    e["fault"] == "delay" and e["method"] in ("PUT", "DELETE")), (
                    "row %d: a request answered %s was sent again" % (t["id"], e["status"]))
            if t["status"] is not None:
                assert mine and mine[-1]["status"] == t["status"], (
                    "row %d has status %s, the fake answered %r" % (
                        t["id"], t["status"], [e["status"] for e in mine]))
            if t["state"] == "ok":
                assert t["status"] is not None and 200 <= t["status"] < 300, t
            if t["state"] in ("pending", "unknown"):
                assert t["status"] is None, t
            if t["state"] in ("failed", "unknown"):
                assert t["error"], "row %d is %s without an error" % (t["id"], t["state"])
        assert not es, "%d requests reached the fake without a row: %r" % (len(es), es[:2])
    return out


def iso_seconds(z):
    """Seconds of an ISO time as the extension writes it (2024-01-01T00:00:00.123Z)."""
    return datetime.strptime(z, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


# -- tests ----------------------------------------------------------------------------------

def interrupt_when(ctx, proc, ready, timeout=60):
    """Waits for ready(), sends SIGINT to the shell's process group (as Ctrl-C
    does) and waits for the shell to exit.  Returns (seconds from the signal
    to the exit, output, time of the signal)."""
    deadline = time.time() + timeout
    while not ready():
        if proc.poll() is not None:
            raise AssertionError("the shell ended before the interrupt:\n" + proc.stdout.read())
        if time.time() > deadline:
            proc.kill()
            raise AssertionError("the run never reached the point to interrupt")
        time.sleep(0.02)
    t0 = time.time()
    os.killpg(proc.pid, signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError("the shell still ran 30 s after SIGINT:\n" + out)
    latency = time.time() - t0
    report = ctx.mode.sanitizer_report(out)
    assert not report and proc.returncode not in (97, 98), "%s report:\n%s" % (report, out)
    return latency, out, t0


def exit_limit(ctx):
    """SPEC: a run stops within a second.  Valgrind's own exit (leak check)
    comes on top of that; the run's finished_at is checked in every mode."""
    return 1.0 if ctx.mode.name != "valgrind" else 6.0


def assert_stopped_in_time(ctx, latency, t0, run_row):
    assert latency <= exit_limit(ctx), "the shell exited %.2f s after SIGINT" % latency
    ended = iso_seconds(run_row["finished_at"]) - t0
    assert ended <= 1.0, "the run ended %.2f s after SIGINT" % ended


def assert_final_rows(table):
    """No row is left pending; a row that did not end ok says why."""
    for t in table:
        assert t["state"] in ("ok", "unknown", "failed"), t
        if t["state"] != "ok":
            assert t["error"], t


def test_sigint_during_200_slow_posts_stops_within_1s_all_recorded_and_rerun_sends_the_rest(ctx):
    n = 200
    ctx.fake.config(faults={"delay_ms": 200})
    setup = dest_sql("co", companies_dest(concurrency=4, key="name"))
    send = "SELECT state, count(*) FROM callrail_send('co', %s) GROUP BY state;" % q(
        names_query(n))
    proc = ctx.spawn(script_of(ctx, setup, send))
    latency, out, t0 = interrupt_when(ctx, proc, lambda: len(ctx.fake.log()) >= 12)
    assert "interrupted" in out, out
    time.sleep(0.3)  # anything still travelling would reach the fake by now
    log1 = ctx.fake.log()
    table1 = responses(ctx)
    (r1,) = runs(ctx)
    assert r1["status"] == "interrupted", r1
    assert_stopped_in_time(ctx, latency, t0, r1)
    assert 12 <= len(log1) < n, len(log1)
    assert len(table1) == len(log1), "%d requests reached the fake, %d rows" % (
        len(log1), len(table1))
    check_audit(ctx, log1, table1)
    assert_final_rows(table1)
    assert_no_post_twice(log1)
    assert_run_counts_match_rows(r1, table1)
    # the re-run sends only what was not delivered (an unknown row is not
    # resent: its request may have arrived), never a second POST
    settled = {body_name(t["request_body"]) for t in table1 if t["state"] in ("ok", "unknown")}
    ctx.fake.config(faults={"delay_ms": 0})
    rows, _ = run(ctx, "", send)
    log = ctx.fake.log()
    table = responses(ctx)
    r2 = runs(ctx)[1]
    assert_run(r2, status="done", skipped=len(settled), records=n)
    sent2 = [body_name(e["body"]) for e in log[len(log1):]]
    assert sorted(sent2) == sorted(set(names(n)) - settled), "re-run sent %d" % len(sent2)
    check_audit(ctx, log, table)
    assert_no_post_twice(log)
    assert_run_counts_match_rows(r2, table)
    assert [t for t in table if t["state"] == "pending"] == []
    print("     SIGINT after %d requests: shell exited %.3f s later, %d rows (%s)" % (
        len(log1), latency, len(table1),
        ", ".join("%s %d" % (s, sum(1 for t in table1 if t["state"] == s))
                  for s in ("ok", "unknown", "failed"))), flush=True)


def check_interrupt_in_backoff(ctx, rule):
    ctx.fake.config(rules=[rule])
    cfg = companies_dest(concurrency=1, key="name",
                         retry={"base_delay_ms": 20000, "max_delay_ms": 60000, "max_attempts": 10})
    send = "SELECT state, count(*) FROM callrail_send('co', %s) GROUP BY state;" % q(
        names_query(3))
    proc = ctx.spawn(script_of(ctx, dest_sql("co", cfg), send))
    seen = []

    def waiting():  # a 429 arrived, and the run has been waiting a moment
        if not seen and any(e["status"] == 429 for e in ctx.fake.log()):
            seen.append(time.time())
        return seen and time.time() - seen[0] > 0.3
    latency, out, t0 = interrupt_when(ctx, proc, waiting)
    assert "interrupted" in out, out
    log = ctx.fake.log()
    table = responses(ctx)
    (r,) = runs(ctx)
    assert r["status"] == "interrupted", r
    assert_stopped_in_time(ctx, latency, t0, r)
    assert all(e["status"] == 429 for e in log), log
    check_audit(ctx, log, table)
    assert_final_rows(table)
    assert len(table) == 1 and table[0]["state"] == "failed", table  # a 429 is a refusal
    assert_run_counts_match_rows(r, table)
    # resumable: the re-run delivers all three, "Shop 1" included
    ctx.fake.config(rules=[])
    rows, _ = run(ctx, "", send)
    assert rows == [{"state": "ok", "count(*)": 3}], rows
    log = ctx.fake.log()
    check_audit(ctx, log, responses(ctx))
    assert sorted(body_name(e["body"]) for e in log if e["status"] == 201) == names(3)
    return latency


def test_sigint_while_waiting_for_a_429_backoff_without_retry_after_stops_within_1s(ctx):
    latency = check_interrupt_in_backoff(ctx, {"method": "POST", "status": 429})
    print("     SIGINT in backoff: exit %.3f s later" % latency, flush=True)


def test_sigint_while_waiting_for_a_429_retry_after_of_30s_stops_within_1s(ctx):
    latency = check_interrupt_in_backoff(
        ctx, {"method": "POST", "status": 429, "headers": {"Retry-After": "30"}})
    print("     SIGINT in Retry-After wait: exit %.3f s later" % latency, flush=True)


def test_sigint_while_requests_hang_stops_within_1s_and_they_end_unknown(ctx):
    # answers take 10 s: the run cannot wait for them, and a POST that may have
    # arrived must not be sent again by the next run
    ctx.fake.config(faults={"delay_ms": 10000})
    setup = dest_sql("co", companies_dest(concurrency=4, key="name"))
    send = "SELECT state, count(*) FROM callrail_send('co', %s) GROUP BY state;" % q(
        names_query(8))
    proc = ctx.spawn(script_of(ctx, setup, send))
    seen = []

    def all_four_arrived():
        if not seen and len(ctx.fake.log()) >= 4:
            seen.append(time.time())
        return seen and time.time() - seen[0] > 0.2
    latency, out, t0 = interrupt_when(ctx, proc, all_four_arrived)
    assert "interrupted" in out, out
    log = ctx.fake.log()
    table = responses(ctx)
    (r,) = runs(ctx)
    assert r["status"] == "interrupted", r
    assert_stopped_in_time(ctx, latency, t0, r)
    assert len(log) == len(table) == 4, (len(log), len(table))
    check_audit(ctx, log, table)
    assert_final_rows(table)
    assert [t["state"] for t in table] == ["unknown"] * 4, table
    assert_run(r, requests=4, unknown=4, ok=0)
    # the re-run sends the other 4 only
    ctx.fake.config(faults={"delay_ms": 0})
    rows, _ = run(ctx, "", send)
    log = ctx.fake.log()
    assert_no_post_twice(log)
    assert len(log) == 8 and sorted(body_name(e["body"]) for e in log) == sorted(names(8))
    check_audit(ctx, log, responses(ctx))
    assert_run(runs(ctx)[1], status="done", requests=4, ok=4, skipped=4)
    print("     SIGINT with 4 hanging requests: exit %.3f s later" % latency, flush=True)


def test_sigint_while_the_users_query_computes_the_next_record_ends_the_run_interrupted(ctx):
    # records 1 and 2 come at once, record 3 only after a very long computation
    slow = ("SELECT 'x1' AS name UNION ALL SELECT 'x2' UNION ALL SELECT 'x3' WHERE"
            " (WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s"
            " WHERE i < 10000000000) SELECT count(*) FROM s) > 0")
    setup = dest_sql("co", companies_dest(concurrency=1, key="name"))
    send = "SELECT state, count(*) FROM callrail_send('co', %s) GROUP BY state;"
    proc = ctx.spawn(script_of(ctx, setup, send % q(slow)))
    seen = []

    def computing():
        if not seen and len(ctx.fake.log()) >= 2:
            seen.append(time.time())
        return seen and time.time() - seen[0] > 0.3
    latency, out, t0 = interrupt_when(ctx, proc, computing)
    assert "interrupted" in out, out
    log = ctx.fake.log()
    table = responses(ctx)
    (r,) = runs(ctx)
    assert_stopped_in_time(ctx, latency, t0, r)
    assert len(log) == len(table) == 2
    check_audit(ctx, log, table)
    assert_final_rows(table)
    assert r["status"] == "interrupted", "an interrupted run has status %r: %r" % (r["status"], r)
    assert_run_counts_match_rows(r, table)
    rows, _ = run(ctx, "", send % q("SELECT 'x' || value AS name FROM json_each('[1,2,3]')"))
    log = ctx.fake.log()
    assert [body_name(e["body"]) for e in log] == ["x1", "x2", "x3"], log
    assert_no_post_twice(log)
