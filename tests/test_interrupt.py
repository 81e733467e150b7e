# Interrupts (README "Guarantees": "an interrupt (Ctrl-C, sqlite3_interrupt) stops a
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
import time

from helpers import (
    assert_no_post_twice, assert_run, assert_run_counts_match_rows, body_name, check_audit,
    companies_dest, dest_sql, exit_limit, interrupt_when, iso_seconds, names, names_query, q,
    responses, run, runs, script_of)


# -- tests ----------------------------------------------------------------------------------

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
    ctx.fake.quiesce()  # anything still travelling has reached the fake
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
