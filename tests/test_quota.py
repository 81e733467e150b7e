# Quotas (SPEC section 4 `rate_limit` and `on_quota`): the run paces itself
# so CallRail never answers 429 when the limits are configured right.
#
# Properties checked (fake request log vs. callrail_responses/callrail_runs,
# exact counts):
#   - CallRail quota 40/hour, rate_limit per_hour 40, 100 keyed records,
#     on_quota "stop": exactly 40 requests, zero 429s, run status
#     quota_exhausted, no SQL error, 60 records without a row; a second run
#     sends nothing and also ends quota_exhausted; an hour later a third run
#     resumes with the next 40 records and POSTs none twice;
#   - usage recorded by a previous run of another destination on the same
#     account counts: A sends 30, then B (per_hour 40) sends only 10;
#   - on_quota "wait": the run sends 40 and waits; SIGINT stops it within a
#     second, status interrupted, no pending row;
#   - per-second pacing: CallRail 5/s and rate_limit per_second 5, 30 records
#     at concurrency 8: zero 429s and at least (30/5 - 1) s from first to last.
#   - per_day: usage recorded two hours earlier counts (30 of 50 used: 20 go);
#   - on_quota "stop" with a limit set higher than CallRail's: the run ends
#     quota_exhausted at CallRail's first 429, whose row is `failed`.
import json
import os
import signal
import subprocess
import time
from datetime import datetime

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
    from datetime import timezone
    return datetime.strptime(z, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


# -- tests ----------------------------------------------------------------------------------

def rows_by_name(table):
    return {body_name(t["request_body"]): t for t in table if t["request_body"]}


def quota_dest(**extra):
    cfg = companies_dest(key="name", concurrency=4, rate_limit={"per_hour": 40})
    cfg.update(extra)
    return cfg


def check_quota_run(ctx, out_rows, rest, n_sent_total, status="quota_exhausted"):
    """After a run: what the fake received equals what the table holds."""
    log = ctx.fake.log()
    table = responses(ctx)
    assert len(log) == n_sent_total, "%d requests, expected %d" % (len(log), n_sent_total)
    assert sum(1 for e in log if e["status"] == 429) == 0, [e["status"] for e in log]
    assert len(table) == n_sent_total
    check_audit(ctx, log, table)
    assert_no_post_twice(log)
    assert all(t["state"] == "ok" for t in table), table
    r = runs(ctx)[-1]
    assert r["status"] == status and r["finished_at"], r
    assert_run_counts_match_rows(r, table)
    return log, table, r


def test_on_quota_stop_sends_exactly_the_hourly_quota_then_ends_quota_exhausted_and_resumes(ctx):
    ctx.fake.config(quota={"general": {"hour": 40}})
    setup = dest_sql("co", quota_dest(on_quota="stop"))
    send = "SELECT state, count(*) AS n FROM callrail_send('co', %s) GROUP BY state;" % q(
        names_query(100))
    # run 1: 40 requests, no 429, no SQL error, 60 records without a row
    rows, rest = run(ctx, setup, send)
    assert rows == [{"state": "ok", "n": 40}], rows
    log, table, r = check_quota_run(ctx, rows, rest, 40)
    assert_run(r, requests=40, ok=40, failed=0, unknown=0)
    without_row = set(names(100)) - set(rows_by_name(table))
    assert len(without_row) == 60, len(without_row)
    # run 2: nothing more is sent, and it also ends quota_exhausted
    rows, rest = run(ctx, "", send)
    assert rows == [], rows
    log, table, r = check_quota_run(ctx, rows, rest, 40)
    assert_run(r, requests=0, ok=0, skipped=40)
    assert len(runs(ctx)) == 2
    # an hour later (the audit's send times moved back, CallRail's window too)
    ctx.rows("UPDATE callrail_responses SET sent_ms = sent_ms - 3601000")
    ctx.fake.config(quota={"general": {"hour": 80}})
    rows, rest = run(ctx, "", send)
    assert rows == [{"state": "ok", "n": 40}], rows
    log, table, r = check_quota_run(ctx, rows, rest, 80)
    assert_run(r, requests=40, ok=40, skipped=40)
    sent = [body_name(e["body"]) for e in log]
    assert len(set(sent)) == 80 and set(sent) <= set(names(100)), sent
    assert set(sent[40:]) == set(names(40, first=41)), sorted(sent[40:])


def test_usage_of_another_destination_on_the_same_account_counts_against_per_hour(ctx):
    ctx.fake.config(quota={"general": {"hour": 40}})
    setup = dest_sql("a", companies_dest(concurrency=4)) + dest_sql("b", quota_dest(on_quota="stop"))
    rows, _ = run(ctx, setup, send_query("a", names_query(30, "A")))
    assert [r["state"] for r in rows] == ["ok"] * 30
    rows, _ = run(ctx, "", send_query("b", names_query(100, "B")))
    assert len(rows) == 10 and [r["state"] for r in rows] == ["ok"] * 10, rows
    log = ctx.fake.log()
    table = responses(ctx)
    assert len(log) == len(table) == 40
    assert sum(1 for e in log if e["status"] == 429) == 0
    check_audit(ctx, log, table)
    assert_no_post_twice(log)
    ra, rb = runs(ctx)
    assert_run(ra, destination="a", status="done", requests=30, ok=30)
    assert_run(rb, destination="b", status="quota_exhausted", requests=10, ok=10)
    assert_run_counts_match_rows(ra, table)
    assert_run_counts_match_rows(rb, table)
    assert sorted(body_name(e["body"]) for e in log if e["body"].startswith('{"name":"B')) == \
        sorted(names(10, "B"))


def interrupt_when(ctx, proc, ready, timeout=60):
    """Waits for ready(), sends SIGINT to the shell's process group and waits
    for it to exit.  Returns (seconds from signal to exit, output, signal time)."""
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


def test_on_quota_wait_sends_the_quota_then_waits_and_sigint_stops_it_within_a_second(ctx):
    ctx.fake.config(quota={"general": {"hour": 40}})
    script = script_of(ctx, dest_sql("co", quota_dest(on_quota="wait")),
                       "SELECT state, count(*) FROM callrail_send('co', %s) GROUP BY state;"
                       % q(names_query(100)))
    proc = ctx.spawn(script)
    t_40 = []

    def waiting():
        if len(ctx.fake.log()) >= 40:
            t_40.append(time.time()) if not t_40 else None
            return time.time() - t_40[0] > 1.0  # it has been waiting for a while
        return False
    latency, out, t0 = interrupt_when(ctx, proc, waiting)
    assert "interrupted" in out, out
    assert latency <= exit_limit(ctx), "the shell exited %.2f s after SIGINT" % latency
    log = ctx.fake.log()
    table = responses(ctx)
    assert len(log) == len(table) == 40, (len(log), len(table))
    assert sum(1 for e in log if e["status"] == 429) == 0
    check_audit(ctx, log, table)
    assert_no_post_twice(log)
    assert [t for t in table if t["state"] == "pending"] == []
    assert all(t["state"] == "ok" for t in table)
    (r,) = runs(ctx)
    assert_run(r, status="interrupted", requests=40, ok=40)
    assert_run_counts_match_rows(r, table)
    assert iso_seconds(r["finished_at"]) - t0 <= 1.0, "the run ended %.2f s after SIGINT" % (
        iso_seconds(r["finished_at"]) - t0)
    print("     on_quota wait: exit %.3f s after SIGINT" % latency, flush=True)


def test_per_second_pacing_5_per_second_at_concurrency_8_gets_no_429(ctx):
    ctx.fake.config(quota={"general": {"second": 5}})
    n = 30
    cfg = companies_dest(concurrency=8, rate_limit={"per_second": 5})
    rows, _ = run(ctx, dest_sql("co", cfg), send_query("co", names_query(n)))
    log = ctx.fake.log()
    table = responses(ctx)
    n429 = sum(1 for e in log if e["status"] == 429)
    assert n429 == 0, "%d x 429 with per_second set to CallRail's limit" % n429
    assert len(rows) == len(table) == len(log) == n
    check_audit(ctx, log, table)
    assert_no_post_twice(log)
    assert [t["attempts"] for t in table] == [1] * n
    (r,) = runs(ctx)
    assert_run(r, status="done", requests=n, ok=n)
    secs = iso_seconds(r["finished_at"]) - iso_seconds(r["started_at"])
    span = log[-1]["time"] - log[0]["time"]
    assert secs >= n / 5 - 1 and span >= n / 5 - 1 - 0.05, (secs, span)
    times = [e["time"] for e in log]
    for i, t in enumerate(times):
        assert sum(1 for u in times[i:] if u - t < 0.99) <= 5, "more than 5 requests in a second"
    print("     per_second 5: %d requests in %.2f s (first to last %.2f s), 0 x 429"
          % (n, secs, span), flush=True)


def test_per_day_counts_usage_recorded_earlier_in_the_day(ctx):
    # 30 requests two hours ago (outside the hour, inside the day): with
    # per_day 50 only 20 more may go today
    ctx.fake.config(quota={"general": {"hour": None, "day": 50}})
    setup = dest_sql("co", quota_dest(on_quota="stop", rate_limit={"per_hour": 40, "per_day": 50}))
    rows, _ = run(ctx, setup, send_query("co", names_query(30)))
    assert len(rows) == 30
    ctx.rows("UPDATE callrail_responses SET sent_ms = sent_ms - 7200000")
    rows, _ = run(ctx, "", send_query("co", names_query(100)))
    assert len(rows) == 20 and all(r["state"] == "ok" for r in rows), rows
    log, table, r = check_quota_run(ctx, rows, "", 50)
    assert_run(r, requests=20, ok=20, skipped=30)
    assert sorted(body_name(e["body"]) for e in log[30:]) == sorted(names(20, first=31))


def test_on_quota_stop_ends_at_callrails_429_when_the_configured_limit_is_too_high(ctx):
    # misconfigured: CallRail allows 10 an hour, the destination believes 40
    ctx.fake.config(quota={"general": {"hour": 10}})
    rows, _ = run(ctx, dest_sql("co", quota_dest(on_quota="stop", concurrency=1)),
                  send_query("co", names_query(20)))
    log = ctx.fake.log()
    table = responses(ctx)
    assert [e["status"] for e in log] == [201] * 10 + [429], [e["status"] for e in log]
    assert len(rows) == len(table) == 11
    check_audit(ctx, log, table)
    assert_no_post_twice(log)
    (t,) = [t for t in table if t["status"] == 429]
    assert (t["state"], t["attempts"]) == ("failed", 1) and "429" in t["error"], t
    (r,) = runs(ctx)
    assert_run(r, status="quota_exhausted", requests=11, ok=10, failed=1)
    assert_run_counts_match_rows(r, table)
