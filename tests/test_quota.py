# Quotas (README "Destination config" `rate_limit` and `on_quota`): the run paces itself
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
import time

from helpers import (
    assert_no_post_twice, assert_run, assert_run_counts_match_rows, body_name, check_audit,
    companies_dest, dest_sql, exit_limit, interrupt_when, iso_seconds, names, names_query, q,
    responses, run, runs, script_of, send_query)


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
