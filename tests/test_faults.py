# Fault injection (SPEC section 4 `retry`, section 6 "nothing is lost", "never a
# second POST"): every test compares the fake's request log with
# callrail_responses and callrail_runs and asserts exact counts.
#
# Properties checked:
#   - 500/503 on every Nth request: a POST is not retried and the failed rows
#     are exactly the faulted requests (bodies compared), at concurrency 1
#     and 4; a PUT is retried until every record is ok, and the faulted
#     requests equal the sum of (attempts - 1);
#   - answers later than timeout_ms: a POST ends `unknown` naming the timeout
#     and is not sent again; a PUT is retried until ok;
#   - an answer that arrives within timeout_ms is `ok` even while the user's
#     query spends longer than timeout_ms computing the next record;
#   - commit-then-drop of every 3rd POST (30 records, concurrency 1 and 4):
#     exactly 30 POSTs reach the fake, the dropped ones are `unknown`, the
#     others `ok`, all 30 companies exist, delivered = the ok ones;
#   - 429 bursts from a CallRail limit the destination does not know (the
#     fake's per-second quota), with and without Retry-After: every record
#     ends ok, attempts are recorded, and the 429s in the log equal the sum
#     of (attempts - 1); with Retry-After the run pauses;
#   - throughout: every request the fake received has a row with the same
#     method, URL and body, a row made exactly `attempts` requests, its status
#     is the fake's last answer, no body is POSTed twice (429s aside), and the
#     run's totals are its rows' totals.
import json

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


# -- tests ----------------------------------------------------------------------------------

def seed_companies(ctx, n):
    objs = [{"name": "Seed %d" % i} for i in range(1, n + 1)]
    return ctx.fake.call("POST", "/__fake/seed",
                         {"account": ACC, "resource": "companies", "objects": objs})


def put_setup(ctx, n, **extra):
    """A PUT destination renaming n seeded companies to "N i", and the query."""
    seeded = seed_companies(ctx, n)
    values = " UNION ALL ".join("SELECT %s AS company_id, %s AS name" % (q(c["id"]), q("N%d" % i))
                                for i, c in enumerate(seeded, 1))
    cfg = {"method": "PUT", "url": COMPANY, "params": {"account_id": ACC},
           "exclude": ["company_id"], "retry": {"base_delay_ms": 10, "max_attempts": 10}}
    cfg.update(extra)
    return dest_sql("upd", cfg), send_query("upd", values), seeded


def test_post_5xx_every_nth_request_fails_exactly_the_faulted_records_and_is_not_retried(ctx):
    for status, every, conc in ((500, 4, 1), (503, 3, 4)):
        ctx.fake.reset()
        ctx.fake.config(faults={"fail_every": every, "fail_status": status})
        n = 20
        rows, _ = run(ctx, dest_sql("co", companies_dest(concurrency=conc)),
                      send_query("co", names_query(n)))
        log = ctx.fake.log()
        table = [t for t in responses(ctx) if t["run_id"] == runs(ctx)[-1]["run_id"]]
        assert len(rows) == len(table) == n == len(log), (len(rows), len(table), len(log))
        check_audit(ctx, log, table)
        assert_no_post_twice(log)
        faulted = {e["body"] for e in log if e["fault"] == "fail"}
        assert len(faulted) == n // every, faulted
        assert all(e["status"] == status for e in log if e["fault"] == "fail")
        failed = {t["request_body"] for t in table if t["state"] == "failed"}
        assert failed == faulted, "failed rows %r, faulted requests %r" % (failed, faulted)
        for t in table:
            if t["state"] == "failed":
                assert (t["status"], t["attempts"]) == (status, 1), t
                assert t["error"].startswith("HTTP %d" % status), t["error"]
            else:
                assert (t["state"], t["status"], t["attempts"]) == ("ok", 201, 1), t
        assert_run(runs(ctx)[-1], status="done", records=n, requests=n, ok=n - len(faulted),
                   failed=len(faulted), unknown=0)
        assert_run_counts_match_rows(runs(ctx)[-1], table)
        assert len(ctx.fake.state()["objects"].get("companies", [])) == n - len(faulted)


def test_put_5xx_every_nth_request_is_retried_until_every_record_is_ok(ctx):
    for status, every, conc in ((503, 3, 1), (500, 2, 4)):
        ctx.fake.reset()
        setup, query, seeded = put_setup(ctx, 12, concurrency=conc)
        ctx.fake.config(faults={"fail_every": every, "fail_status": status})
        rows, _ = run(ctx, setup, query)
        log = ctx.fake.log()
        run_row = runs(ctx)[-1]
        table = [t for t in responses(ctx) if t["run_id"] == run_row["run_id"]]
        assert len(rows) == len(table) == 12, (len(rows), len(table))
        check_audit(ctx, log, table)
        faults = [e for e in log if e["fault"] == "fail"]
        assert faults and all(e["status"] == status for e in faults)
        assert [t["state"] for t in table] == ["ok"] * 12, table
        assert all(t["status"] == 200 for t in table)
        # every faulted request was followed by exactly one more attempt
        assert sum(t["attempts"] - 1 for t in table) == len(faults), (
            [t["attempts"] for t in table], len(faults))
        assert len(log) == 12 + len(faults)
        assert_run(run_row, status="done", records=12, requests=12, ok=12, failed=0)
        got = {c["id"]: c["name"] for c in ctx.fake.state()["objects"]["companies"]}
        assert got == {c["id"]: "N%d" % i for i, c in enumerate(seeded, 1)}


def test_post_slower_than_timeout_ms_is_unknown_and_never_sent_again(ctx):
    # every 3rd request is answered after 1.5 s; timeout_ms is 400
    ctx.fake.config(faults={"delay_ms": 1500, "delay_every": 3})
    n = 9
    rows, _ = run(ctx, dest_sql("co", companies_dest(concurrency=3, timeout_ms=400)),
                  send_query("co", names_query(n)))
    log = ctx.fake.log()
    table = responses(ctx)
    assert len(rows) == len(table) == len(log) == n, (len(rows), len(table), len(log))
    check_audit(ctx, log, table)
    assert_no_post_twice(log)
    slow = {e["body"] for e in log if e["fault"] == "delay"}
    assert len(slow) == 3, slow
    for t in table:
        if t["request_body"] in slow:
            assert (t["state"], t["status"], t["attempts"]) == ("unknown", None, 1), t
            assert "timed out" in t["error"] or "timeout" in t["error"], t["error"]
        else:
            assert (t["state"], t["status"], t["attempts"]) == ("ok", 201, 1), t
    (r,) = runs(ctx)
    assert_run(r, status="done", records=n, requests=n, ok=n - 3, unknown=3, failed=0)
    assert_run_counts_match_rows(r, table)


def test_put_slower_than_timeout_ms_is_retried_until_ok(ctx):
    setup, query, seeded = put_setup(ctx, 6, concurrency=1, timeout_ms=400)
    ctx.fake.config(faults={"delay_ms": 1500, "delay_every": 3})
    rows, _ = run(ctx, setup, query)
    log = ctx.fake.log()
    table = responses(ctx)
    assert len(rows) == len(table) == 6
    check_audit(ctx, log, table)
    slow = [e for e in log if e["fault"] == "delay"]
    # every 3rd request times out (a retry may be one of them); each timed-out
    # request is followed by one more attempt of the same record
    assert [e["seq"] - log[0]["seq"] + 1 for e in slow] == list(range(3, len(log) + 1, 3)), (
        [(e["seq"], e["fault"]) for e in log])
    assert len(slow) >= 2 and len(log) == 6 + len(slow), (len(log), len(slow))
    assert [(t["state"], t["status"]) for t in table] == [("ok", 200)] * 6, table
    assert sum(t["attempts"] - 1 for t in table) == len(slow), [t["attempts"] for t in table]
    (r,) = runs(ctx)
    assert_run(r, status="done", records=6, requests=6, ok=6, failed=0, unknown=0)


def check_commit_then_drop(ctx, conc):
    ctx.fake.reset()
    ctx.fake.config(faults={"drop_after_commit_every": 3})
    n = 30
    rows, _ = run(ctx, dest_sql("co", companies_dest(concurrency=conc, key="name")),
                  send_query("co", names_query(n)))
    log = ctx.fake.log()
    table = responses(ctx)
    posts = [e for e in log if e["method"] == "POST"]
    assert len(posts) == len(log) == n, "%d POSTs for %d records" % (len(posts), n)
    assert sorted(body_name(e["body"]) for e in posts) == sorted(names(n))
    assert_no_post_twice(log)
    assert len(rows) == len(table) == n
    check_audit(ctx, log, table)
    dropped = {e["body"] for e in log if e["fault"] == "drop_after_commit"}
    assert len(dropped) == n // 3, dropped
    assert all(e["status"] is None for e in log if e["fault"] == "drop_after_commit")
    for t in table:
        if t["request_body"] in dropped:
            assert (t["state"], t["status"], t["attempts"]) == ("unknown", None, 1), t
            assert "connection dropped" in t["error"], t["error"]
        else:
            assert (t["state"], t["status"], t["attempts"]) == ("ok", 201, 1), t
    (r,) = runs(ctx)
    assert_run(r, status="done", records=n, requests=n, ok=n - n // 3, unknown=n // 3, failed=0)
    assert_run_counts_match_rows(r, table)
    assert len(ctx.fake.state()["objects"]["companies"]) == n  # every one was created
    delivered = ctx.rows("SELECT record_key FROM callrail_delivered")
    assert sorted(d["record_key"] for d in delivered) == sorted(
        body_name(b) for b in {t["request_body"] for t in table} - dropped)


def test_commit_then_drop_every_3rd_post_at_concurrency_1_sends_30_posts_dropped_unknown(ctx):
    check_commit_then_drop(ctx, 1)


def test_commit_then_drop_every_3rd_post_at_concurrency_4_sends_30_posts_dropped_unknown(ctx):
    check_commit_then_drop(ctx, 4)


def check_429_burst(ctx, retry_after):
    ctx.fake.reset()
    # CallRail's per-second limit, unknown to the destination: bursts get 429s
    ctx.fake.config(quota={"general": {"second": 5}}, quota_retry_after=retry_after)
    n = 20
    cfg = companies_dest(concurrency=4, retry={"base_delay_ms": 50, "max_delay_ms": 1000,
                                               "max_attempts": 30})
    rows, _ = run(ctx, dest_sql("co", cfg), send_query("co", names_query(n)))
    log = ctx.fake.log()
    table = responses(ctx)
    assert len(rows) == len(table) == n
    check_audit(ctx, log, table)
    assert_no_post_twice(log)
    n429 = sum(1 for e in log if e["status"] == 429)
    assert n429 > 0, "no 429 burst happened: the test proves nothing"
    assert [t["state"] for t in table] == ["ok"] * n, [(t["state"], t["error"]) for t in table]
    assert all(t["status"] == 201 for t in table)
    assert n429 == sum(t["attempts"] - 1 for t in table), (
        "%d 429s in the log, attempts %r" % (n429, [t["attempts"] for t in table]))
    assert len(log) == n + n429
    assert sorted(body_name(e["body"]) for e in log if e["status"] == 201) == sorted(names(n))
    if retry_after:
        # after a 429 with Retry-After: 1 nothing is sent for a second,
        # except what was already on its way
        for i, e in enumerate(log):
            if e["status"] == 429:
                later = [f for f in log[i + 1:] if f["time"] - e["time"] < 0.9]
                assert len(later) < 4, "%d requests within 0.9 s of a Retry-After: 1 429" % len(later)
    (r,) = runs(ctx)
    assert_run(r, status="done", records=n, requests=n, ok=n, failed=0, unknown=0)
    assert len(ctx.fake.state()["objects"]["companies"]) == n
    print("     429 burst (Retry-After %s): %d requests, %d x 429, attempts up to %d"
          % (retry_after, len(log), n429, max(t["attempts"] for t in table)), flush=True)


def test_429_bursts_with_retry_after_end_all_ok_and_429s_equal_extra_attempts(ctx):
    check_429_burst(ctx, 1)


def test_429_bursts_without_retry_after_end_all_ok_and_429s_equal_extra_attempts(ctx):
    check_429_burst(ctx, None)


def slow_count_query_n(ctx, seconds):
    """The N for which `WITH RECURSIVE ... i<N SELECT count(*)` takes about
    `seconds` in this mode's shell (measured with .timer)."""
    import re
    import subprocess
    n0 = 200000
    sql = ".timer on\nWITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i<%d)" \
          " SELECT count(*) FROM s;\n" % n0
    proc = subprocess.run(ctx.mode.prefix + ["sqlite3", "-batch", ":memory:"], input=sql,
                          capture_output=True, text=True, env=ctx.mode.env, timeout=300)
    secs = float(re.findall(r"Run Time: real ([0-9.]+)", proc.stdout)[-1])
    return max(n0, int(n0 * seconds / max(secs, 0.001)))


def test_answer_within_timeout_ms_is_ok_even_while_the_users_query_is_slow(ctx):
    # record x2's answer comes after 300 ms (timeout_ms 1000); meanwhile the
    # user's query takes ~2.5 s to produce x3.  The request was answered in
    # time: it must not end `unknown` because the transfer loop was not driven.
    ctx.fake.config(faults={"delay_ms": 300, "delay_every": 2})
    n = slow_count_query_n(ctx, 2.5)
    slow = ("SELECT 'x1' AS name UNION ALL SELECT 'x2' UNION ALL SELECT 'x3' WHERE"
            " (WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < %d)"
            " SELECT count(*) FROM s) > 0" % n)
    rows, _ = run(ctx, dest_sql("co", companies_dest(concurrency=2, timeout_ms=1000)),
                  send_query("co", slow))
    log = ctx.fake.log()
    table = responses(ctx)
    assert [body_name(e["body"]) for e in log] == ["x1", "x2", "x3"], log
    assert log[1]["fault"] == "delay" and log[2]["time"] - log[1]["time"] > 1.2, (
        "the query was not slow enough to prove anything: %.2f s"
        % (log[2]["time"] - log[1]["time"]))
    assert len(rows) == len(table) == 3
    check_audit(ctx, log, table)
    assert_no_post_twice(log)
    bad = [(body_name(t["request_body"]), t["state"], t["error"]) for t in table
           if t["state"] != "ok"]
    assert not bad, "answered within timeout_ms but recorded %r" % bad
