# Durability (README "Guarantees" "nothing is lost"): a request's `pending` row is
# durable before it leaves; a dead run's rows are recovered by the next run of
# the destination, a live run's are not; re-runs never POST a record twice.
#
# Properties checked (fake request log vs. callrail_responses/callrail_runs):
#   - kill -9 of the shell mid-run (answers delayed 300 ms, concurrency 4,
#     100 keyed records, killed after ~1.5 s): at most 4 rows are `pending`,
#     every request the fake received has a row (bodies matched); the re-run
#     turns those rows `unknown` (the error says why), marks the dead run
#     `interrupted` with totals recounted from its rows, sends exactly the
#     other records, and no body is POSTed twice; a third run still does not
#     resend the unknown records; after the user sets them `failed`, a fourth
#     run sends exactly them;
#   - the same with a PUT destination: the unknown rows' records are sent
#     again by the re-run (a PUT is idempotent), every company ends updated;
#   - a live run in another process is not recovered: while A has requests in
#     flight, B sends to the same destination; A's rows stay pending/ok and A
#     ends `done` with all 40 ok;
#   - callrail_send inside BEGIN ... COMMIT (after nothing or only reads)
#     neither deadlocks nor loses rows; after ROLLBACK the rows of requests
#     that left are still there; inside a transaction that holds the write
#     lock (after an INSERT, or BEGIN IMMEDIATE) it is refused with an error
#     naming the transaction, sends nothing and does not deadlock, and the
#     user's transaction goes on;
#   - an in-memory database (:memory:) sends, records and skips delivered keys.
import os
import signal
import time

from helpers import (
    ACC, COMPANY, assert_no_post_twice, assert_run, assert_run_counts_match_rows, body_name,
    check_audit, companies_dest, dest_sql, finish, log_url, names, names_query, q, responses,
    run, runs, script_of, send_query, split_output, wait_for)


# -- tests ----------------------------------------------------------------------------------

def in_flight(ctx, t_start, secs, n):
    """After secs and n requests, at a moment a request reached the fake less
    than 150 ms ago: its answer (300 ms) is still to come, so it is in flight."""
    def ready():
        log = ctx.fake.log()
        return (time.time() - t_start >= secs and len(log) >= n and
                time.time() - log[-1]["time"] < 0.15)
    return ready


def test_kill_9_mid_run_leaves_at_most_concurrency_pending_and_reruns_recover_without_resending(ctx):
    n = 100
    ctx.fake.config(faults={"delay_ms": 300})
    setup = dest_sql("co", companies_dest(concurrency=4, key="name"))
    send = "SELECT state, count(*) AS n FROM callrail_send('co', %s) GROUP BY state;" % q(
        names_query(n))
    proc = ctx.spawn(script_of(ctx, setup, send))
    t_start = time.time()
    wait_for(proc, in_flight(ctx, t_start, 1.5, 8))
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    ctx.fake.quiesce()  # anything already sent has reached the fake
    log1 = ctx.fake.log()
    table1 = responses(ctx)
    (dead,) = runs(ctx)
    assert dead["status"] == "running", dead
    pending = [t for t in table1 if t["state"] == "pending"]
    assert 1 <= len(pending) <= 4, "%d pending rows after kill -9 at concurrency 4" % len(pending)
    # every request the fake received has a row (pending or final)
    check_audit(ctx, log1, table1)
    assert len(table1) - len(pending) <= len(log1) <= len(table1), (len(log1), len(table1))
    assert {t["state"] for t in table1} <= {"ok", "pending"}, table1
    pending_ids = {t["id"] for t in pending}
    pending_names = {body_name(t["request_body"]) for t in pending}
    ok1 = {body_name(t["request_body"]) for t in table1 if t["state"] == "ok"}

    # run 2: the dead run's pending rows become unknown, the run interrupted,
    # and every other record is sent; nothing is POSTed twice
    ctx.fake.config(faults={"delay_ms": 0})
    rows, _ = run(ctx, "", send)
    log2 = ctx.fake.log()
    table2 = responses(ctx)
    dead2, r2 = runs(ctx)
    for t in table2:
        if t["id"] in pending_ids:
            assert t["state"] == "unknown" and t["status"] is None, t
            assert "killed" in t["error"] or "died" in t["error"] or "ended" in t["error"], t
    assert dead2["status"] == "interrupted" and dead2["finished_at"], dead2
    assert_run_counts_match_rows(dead2, table2)
    assert_run(dead2, requests=len(table1), ok=len(ok1), unknown=len(pending))
    sent2 = [body_name(e["body"]) for e in log2[len(log1):]]
    assert sorted(sent2) == sorted(set(names(n)) - ok1 - pending_names), sorted(sent2)
    assert_run(r2, status="done", records=n, skipped=len(ok1) + len(pending),
               requests=len(sent2), ok=len(sent2), unknown=0, failed=0)
    assert_run_counts_match_rows(r2, table2)
    check_audit(ctx, log2, table2, maybe_unsent=pending_ids)
    assert_no_post_twice(log2)
    assert [t for t in table2 if t["state"] == "pending"] == []

    # run 3: the unknown records are still not resent
    rows, _ = run(ctx, "", send)
    assert rows == [], rows
    assert len(ctx.fake.log()) == len(log2)
    assert_run(runs(ctx)[2], status="done", requests=0, skipped=n)

    # released by the user (state 'failed'), run 4 sends exactly them
    ctx.rows("UPDATE callrail_responses SET state='failed' WHERE state='unknown'")
    rows, _ = run(ctx, "", send)
    assert rows == [{"state": "ok", "n": len(pending)}], rows
    log4 = ctx.fake.log()
    assert sorted(body_name(e["body"]) for e in log4[len(log2):]) == sorted(pending_names)
    table4 = responses(ctx)
    check_audit(ctx, log4, table4, maybe_unsent=pending_ids)
    assert_run(runs(ctx)[3], status="done", requests=len(pending), ok=len(pending),
               skipped=n - len(pending))
    delivered = ctx.rows("SELECT record_key FROM callrail_delivered WHERE destination='co'")
    assert sorted(d["record_key"] for d in delivered) == sorted(names(n))
    print("     kill -9 after %d requests: %d pending, %d ok; re-run sent %d, "
          "POSTs twice before release: 0" % (len(log1), len(pending), len(ok1), len(sent2)),
          flush=True)
    # the dead run's totals were recounted: it read at least the records it sent
    assert dead2["records"] >= sum(t["records"] for t in table2 if t["run_id"] == dead["run_id"]), (
        "the recovered run says records=%d but has %d rows" % (
            dead2["records"], sum(1 for t in table2 if t["run_id"] == dead["run_id"])))


def test_kill_9_of_a_put_run_makes_its_pending_rows_unknown_and_the_rerun_sends_them_again(ctx):
    # a PUT is idempotent: unlike a POST, a record whose PUT is unknown is sent again
    n = 40
    seeded = ctx.fake.call("POST", "/__fake/seed", {
        "account": ACC, "resource": "companies",
        "objects": [{"name": "Seed %d" % i} for i in range(1, n + 1)]})
    values = " UNION ALL ".join("SELECT %s AS company_id, %s AS name" % (q(c["id"]), q("N%d" % i))
                                for i, c in enumerate(seeded, 1))
    cfg = {"method": "PUT", "url": COMPANY, "params": {"account_id": ACC},
           "exclude": ["company_id"], "key": "company_id", "concurrency": 4}
    send = "SELECT state, count(*) AS n FROM callrail_send('upd', %s) GROUP BY state;" % q(values)
    ctx.fake.config(faults={"delay_ms": 300})
    proc = ctx.spawn(script_of(ctx, dest_sql("upd", cfg), send))
    t_start = time.time()
    wait_for(proc, in_flight(ctx, t_start, 1.0, 4))
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    ctx.fake.quiesce()  # anything already sent has reached the fake
    log1 = ctx.fake.log()
    table1 = responses(ctx)
    pending = [t for t in table1 if t["state"] == "pending"]
    assert 1 <= len(pending) <= 4, len(pending)
    check_audit(ctx, log1, table1)
    ok1 = {t["url"] for t in table1 if t["state"] == "ok"}
    ctx.fake.config(faults={"delay_ms": 0})
    rows, _ = run(ctx, "", send)
    assert rows == [{"state": "ok", "n": n - len(ok1)}], rows
    log = ctx.fake.log()
    table = responses(ctx)
    check_audit(ctx, log, table, maybe_unsent={t["id"] for t in pending})
    assert {t["state"] for t in table if t["id"] in {p["id"] for p in pending}} == {"unknown"}
    sent2 = [log_url(ctx, e) for e in log[len(log1):]]
    assert sorted(sent2) == sorted(
        ctx.base + COMPANY.replace("{account_id}", ACC).replace("{company_id}", c["id"])
        for c in seeded if ctx.base + COMPANY.replace("{account_id}", ACC).replace(
            "{company_id}", c["id"]) not in ok1), "re-run sent %d" % len(sent2)
    dead, r2 = runs(ctx)
    assert dead["status"] == "interrupted", dead
    assert_run_counts_match_rows(dead, table)
    assert_run(r2, status="done", ok=n - len(ok1), skipped=len(ok1))
    got = {c["id"]: c["name"] for c in ctx.fake.state()["objects"]["companies"]}
    assert got == {c["id"]: "N%d" % i for i, c in enumerate(seeded, 1)}


def test_a_live_run_in_another_process_is_not_recovered_by_a_second_sender(ctx):
    """A second send of the destination recovers dead runs before it starts;
    it must leave a live run's pending rows alone (and, with on_busy
    "error", refuse to start, naming that run)."""
    n_a = 40
    ctx.fake.config(faults={"delay_ms": 500})
    setup = dest_sql("co", companies_dest(concurrency=2, key="name", on_busy="error"))
    ctx.sql(".output /dev/null\n" + ctx.setup_credential() + setup)
    send_a = "SELECT state, count(*) AS n FROM callrail_send('co', %s) GROUP BY state;" % q(
        names_query(n_a, "A"))
    send_b = "SELECT state, count(*) AS n FROM callrail_send('co', %s) GROUP BY state;" % q(
        names_query(1, "B"))
    proc_a = ctx.spawn(script_of(ctx, "", send_a))
    wait_for(proc_a, lambda: len(ctx.fake.log()) >= 3)
    # process B sends to the same destination while A has requests in flight
    rows, err = run(ctx, "", send_b, expect_error=True)
    assert rows == [] and "is busy: run 1 (host " in err and "pid %d" % proc_a.pid in err, err
    mid = responses(ctx)
    run_a = [r for r in runs(ctx) if r["run_id"] == 1][0]
    assert run_a["status"] == "running", "A ended before B was done: %r" % run_a
    a_rows = [t for t in mid if t["run_id"] == 1]
    assert [t for t in a_rows if t["state"] == "unknown"] == [], a_rows
    assert any(t["state"] == "pending" for t in a_rows), "A had nothing in flight: proves nothing"
    ctx.fake.config(faults={"delay_ms": 0})  # let A finish quickly
    rc, out = finish(ctx, proc_a)
    assert rc == 0 and '"n":%d' % n_a in out, out
    log = ctx.fake.log()
    table = responses(ctx)
    assert len(log) == len(table) == n_a
    check_audit(ctx, log, table)
    assert_no_post_twice(log)
    assert [t["state"] for t in table] == ["ok"] * n_a, table
    (ra,) = runs(ctx)
    assert_run(ra, status="done", requests=n_a, ok=n_a, unknown=0)


TXN_SEND = "SELECT state, count(*) AS n FROM callrail_send('co', %s) GROUP BY state;"


def check_txn(ctx, before, after, n=5):
    setup = dest_sql("co", companies_dest(concurrency=2)) + "CREATE TABLE t(x);\n"
    query = before + (TXN_SEND % q(names_query(n))) + "\n" + after
    rows, _ = run(ctx, setup, query)
    log = ctx.fake.log()
    table = responses(ctx)
    return rows, log, table


def fresh_db(ctx):
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(ctx.db + suffix):
            os.remove(ctx.db + suffix)


def test_send_inside_an_explicit_transaction_does_not_deadlock_and_its_rows_are_committed(ctx):
    for before in ("BEGIN;\n", "BEGIN DEFERRED;\nSELECT count(*) FROM callrail_runs;\n"):
        ctx.fake.reset()
        fresh_db(ctx)
        rows, log, table = check_txn(ctx, before, "COMMIT;\n")
        rows = [r for r in rows if "state" in r]
        assert rows == [{"state": "ok", "n": 5}], (before, rows)
        assert len(log) == len(table) == 5, (before, len(log), len(table))
        check_audit(ctx, log, table)
        assert_no_post_twice(log)
        (r,) = runs(ctx)
        assert_run(r, status="done", requests=5, ok=5)


def test_send_inside_a_transaction_that_has_written_is_refused_without_sending_or_deadlock(ctx):
    # its rows could be rolled back with the user's writes, and a second
    # writer would wait for the user's write lock forever: refused up front
    for before in ("BEGIN;\nINSERT INTO t VALUES(1);\n", "BEGIN IMMEDIATE;\n"):
        ctx.fake.reset()
        fresh_db(ctx)
        setup = dest_sql("co", companies_dest(concurrency=2)) + "CREATE TABLE t(x);\n"
        query = before + (TXN_SEND % q(names_query(5))) + "\nINSERT INTO t VALUES(2);\nCOMMIT;\n"
        t0 = time.time()
        rows, rest = run(ctx, setup, query, expect_error=True)
        assert time.time() - t0 < 20, "took %.1f s" % (time.time() - t0)
        assert rows == [], rows
        assert "callrail_send" in rest and "transaction" in rest, rest
        assert len(rest.strip().splitlines()) == 1, rest  # the rest of the script ran
        assert ctx.fake.log() == []
        assert responses(ctx) == [] and runs(ctx) == []
        assert [r["x"] for r in ctx.rows("SELECT x FROM t ORDER BY x")] == (
            [1, 2] if "INSERT" in before else [2])


def test_send_inside_a_transaction_that_is_rolled_back_keeps_its_audit_rows(ctx):
    # README "Guarantees" "nothing is lost": the requests left, so their rows must stay
    rows, log, table = check_txn(ctx, "BEGIN;\n", "ROLLBACK;\n")
    assert rows == [{"state": "ok", "n": 5}], rows
    assert len(log) == 5
    assert len(table) == 5, "%d requests reached the fake, %d rows after ROLLBACK" % (
        len(log), len(table))
    check_audit(ctx, log, table)


def test_in_memory_database_sends_and_records(ctx):
    setup = dest_sql("co", companies_dest(concurrency=2, key="name"))
    query = (send_query("co", names_query(5)) + "\n" + send_query("co", names_query(6)) + "\n" +
             "SELECT * FROM callrail_responses ORDER BY id;\n" +
             "SELECT * FROM callrail_runs ORDER BY run_id;\n" +
             "SELECT * FROM callrail_delivered ORDER BY record_key;\n")
    rc, out = ctx.sql(script_of(ctx, setup, query), db=":memory:", check=False)
    arrays, rest = split_output(out)
    assert rc == 0 and rest.strip() == "", out
    assert len(arrays) == 5, out
    first, second, table, run_rows, delivered = arrays
    assert [r["state"] for r in first] == ["ok"] * 5 and [r["state"] for r in second] == ["ok"]
    log = ctx.fake.log()
    assert len(log) == len(table) == 6
    check_audit(ctx, log, table)
    assert_no_post_twice(log)
    assert [body_name(e["body"]) for e in log if e["body"] == '{"name":"Shop 6"}'] == ["Shop 6"]
    r1, r2 = run_rows
    assert_run(r1, status="done", requests=5, ok=5)
    assert_run(r2, status="done", requests=1, ok=1, skipped=5)
    assert sorted(d["record_key"] for d in delivered) == sorted(names(6))
    assert not os.path.exists(os.path.join(ctx.dir, ":memory:"))
