# README "Retries" and "Guarantees" "nothing is lost / never a second POST":
# what is retried, how often, and what is never sent twice.
#
# Properties checked (fake request log vs. callrail_responses vs. the rows
# callrail_send returns, exact counts):
#   - a 429 is retried for POST and then succeeds (attempts 2, the record
#     reaches the fake exactly twice),
#     with Retry-After honoured (the second attempt comes >= 1 s later) and,
#     without Retry-After, after a short backoff;
#   - a 5xx is retried for PUT and DELETE, not for POST (1 request, failed)
#     unless retry.retry_post is true;
#   - retry.max_attempts is respected exactly (5xx and 429);
#   - a connect failure (nothing listening) is retried even for POST, up to
#     max_attempts, and ends failed with an error naming the connect;
#   - commit-then-drop: every POST reaches the fake exactly once, including
#     on reused keep-alive connections where libcurl would re-send on its
#     own; the dropped ones are `unknown`, saying the connection dropped;
#     a PUT whose connection drops is retried;
#   - timeouts: a POST that timed out is `unknown` naming the timeout; a PUT
#     is retried, then failed;
#   - a redirect ends `failed` naming the Location; the target gets nothing;
#   - batch bisection: a batch rejected with 422 is split until the bad
#     record is alone; the other 99 are delivered; every row's `records`
#     (result and table alike) is the number of records its request carried.
import json

from helpers import (
    ACC, NO_QUOTA, assert_rows_match_table, assert_run, companies_dest, dest_sql, free_port,
    names_query, q, responses, run, runs, seed_companies, send_query)


# -- tests ----------------------------------------------------------------------------------

def one_row(ctx, rows):
    table = responses(ctx)
    assert len(rows) == 1 and len(table) == 1, (rows, table)
    assert_rows_match_table(rows, table)
    return rows[0]


def test_429_with_retry_after_is_retried_for_post_no_sooner_than_retry_after(ctx):
    # one request a second: the first record uses the quota, the second gets
    # a 429 with Retry-After: 1 and must wait that long before its retry
    ctx.fake.config(quota={"general": {"second": 1}}, quota_retry_after=1)
    rows, _ = run(ctx, dest_sql("co", companies_dest(concurrency=1)),
                  send_query("co", names_query(2)))
    log = ctx.fake.log()
    assert [(json.loads(e["body"])["name"], e["status"]) for e in log] == [
        ("Shop 1", 201), ("Shop 2", 429), ("Shop 2", 201)], [(e["body"], e["status"]) for e in log]
    wait = log[2]["time"] - log[1]["time"]
    assert wait >= 1.0, "retry %.3f s after a 429 with Retry-After: 1" % wait
    assert [(r["state"], r["status"], r["attempts"]) for r in rows] == [
        ("ok", 201, 1), ("ok", 201, 2)], rows
    assert rows[1]["response_body"] == log[2]["response"]
    assert_rows_match_table(rows, responses(ctx))
    assert_run(runs(ctx)[0], records=2, requests=2, ok=2, failed=0, status="done")
    assert len(ctx.fake.state()["objects"]["companies"]) == 2


def test_429_without_retry_after_is_retried_for_post_after_a_backoff(ctx):
    ctx.fake.config(rules=[{"method": "POST", "status": 429, "times": 1}])
    rows, _ = run(ctx, dest_sql("co", companies_dest()), send_query("co", "SELECT 'A' AS name"))
    log = ctx.fake.log()
    assert [(e["method"], e["status"]) for e in log] == [("POST", 429), ("POST", 201)], log
    r = one_row(ctx, rows)
    assert (r["state"], r["status"], r["attempts"]) == ("ok", 201, 2), r
    assert_run(runs(ctx)[0], records=1, requests=1, ok=1, status="done")
    assert len(ctx.fake.state()["objects"]["companies"]) == 1


def put_companies(ctx, n, method="PUT", **extra):
    seeded = seed_companies(ctx, n)
    values = " UNION ALL ".join("SELECT %s AS company_id, %s AS name" % (q(c["id"]), q("N%d" % i))
                                for i, c in enumerate(seeded, 1))
    cfg = {"method": method, "url": "/v3/a/{account_id}/companies/{company_id}.json",
           "params": {"account_id": ACC}, "exclude": ["company_id"], "concurrency": 1,
           "retry": {"base_delay_ms": 10}}
    cfg.update(extra)
    return cfg, values


def test_5xx_is_retried_for_put_and_delete(ctx):
    for method, ok_status in (("PUT", 200), ("DELETE", 204)):
        ctx.fake.reset()
        cfg, values = put_companies(ctx, 2, method)
        ctx.fake.config(faults={"fail_every": 2, "fail_status": 503})
        rows, _ = run(ctx, dest_sql("d", cfg), send_query("d", values))
        log = ctx.fake.log()
        # request 1 ok, request 2 (the second record) 503, its retry ok
        assert [(e["method"], e["status"]) for e in log] == [
            (method, ok_status), (method, 503), (method, ok_status)], log
        assert log[1]["path"] == log[2]["path"] != log[0]["path"]
        assert [(r["state"], r["status"]) for r in rows] == [("ok", ok_status)] * 2, rows
        assert sorted(r["attempts"] for r in rows) == [1, 2]
        run_id = runs(ctx)[-1]["run_id"]
        table = [t for t in responses(ctx) if t["run_id"] == run_id]
        assert len(table) == 2
        assert_rows_match_table(rows, table)
        assert_run(runs(ctx)[-1], records=2, requests=2, ok=2, failed=0)


def test_5xx_is_not_retried_for_post(ctx):
    ctx.fake.config(faults={"fail_every": 1, "fail_status": 500})
    rows, _ = run(ctx, dest_sql("co", companies_dest()), send_query("co", "SELECT 'A' AS name"))
    log = ctx.fake.log()
    assert len(log) == 1 and log[0]["method"] == "POST" and log[0]["status"] == 500
    r = one_row(ctx, rows)
    assert (r["state"], r["status"], r["attempts"]) == ("failed", 500, 1), r
    assert r["error"].startswith("HTTP 500"), r["error"]
    assert_run(runs(ctx)[0], records=1, requests=1, ok=0, failed=1, unknown=0)


def test_5xx_is_retried_for_post_with_retry_post(ctx):
    ctx.fake.config(faults={"fail_every": 2, "fail_status": 502})
    cfg = companies_dest(concurrency=1, retry={"base_delay_ms": 10, "retry_post": True})
    rows, _ = run(ctx, dest_sql("co", cfg), send_query("co", names_query(2)))
    log = ctx.fake.log()
    assert [(json.loads(e["body"])["name"], e["status"]) for e in log] == [
        ("Shop 1", 201), ("Shop 2", 502), ("Shop 2", 201)], log
    assert [(r["state"], r["attempts"]) for r in rows] == [("ok", 1), ("ok", 2)], rows
    assert_rows_match_table(rows, responses(ctx))
    assert_run(runs(ctx)[0], records=2, requests=2, ok=2)
    assert len(ctx.fake.state()["objects"]["companies"]) == 2


def test_max_attempts_is_respected_exactly(ctx):
    for attempts in (1, 3):
        ctx.fake.reset()
        cfg, values = put_companies(ctx, 1, retry={"base_delay_ms": 10, "max_attempts": attempts})
        ctx.fake.config(faults={"fail_every": 1, "fail_status": 500})
        rows, _ = run(ctx, dest_sql("d", cfg), send_query("d", values))
        log = ctx.fake.log()
        assert len(log) == attempts and all(e["status"] == 500 for e in log), log
        (r,) = rows
        assert (r["state"], r["status"], r["attempts"]) == ("failed", 500, attempts), r
        (t,) = [t for t in responses(ctx) if t["id"] == r["response_id"]]
        assert t["attempts"] == attempts and t["state"] == "failed"
    # a 429 that never ends: max_attempts POSTs, then failed
    ctx.fake.reset()
    ctx.fake.config(rules=[{"method": "POST", "status": 429}])
    cfg = companies_dest(retry={"base_delay_ms": 10, "max_attempts": 4})
    rows, _ = run(ctx, dest_sql("co", cfg), send_query("co", "SELECT 'A' AS name"))
    log = ctx.fake.log()
    assert len(log) == 4 and all(e["status"] == 429 for e in log), log
    (r,) = rows
    assert (r["state"], r["status"], r["attempts"]) == ("failed", 429, 4), r
    assert r["error"].startswith("HTTP 429"), r["error"]


def test_connect_failure_is_retried_even_for_post_then_failed_naming_connect(ctx):
    port = free_port()
    setup = ("SELECT callrail_credential('dead', 'test-token', 'http://127.0.0.1:%d');\n" % port +
             dest_sql("co", companies_dest(retry={"base_delay_ms": 10, "max_attempts": 3}),
                      cred="dead"))
    rows, _ = run(ctx, setup, send_query("co", "SELECT 'A' AS name"))
    assert ctx.fake.log() == []
    r = one_row(ctx, rows)
    assert (r["state"], r["status"], r["attempts"]) == ("failed", None, 3), r
    assert "connect" in r["error"].lower(), r["error"]
    assert_run(runs(ctx)[0], records=1, requests=1, failed=1, unknown=0)


def check_drops(ctx, n, every, concurrency=1):
    ctx.fake.config(faults={"drop_after_commit_every": every})
    cfg = companies_dest(concurrency=concurrency, key="name")
    rows, _ = run(ctx, dest_sql("co", cfg), send_query("co", names_query(n)))
    log = ctx.fake.log()
    names = ["Shop %d" % i for i in range(1, n + 1)]
    # every record reached the fake exactly once: no second POST
    assert sorted(json.loads(e["body"])["name"] for e in log) == sorted(names), [
        e["body"] for e in log]
    dropped = {json.loads(e["body"])["name"] for e in log if e["fault"] == "drop_after_commit"}
    assert len(dropped) == n // every, dropped
    if concurrency == 1:  # in query order: every `every`th one
        assert [json.loads(e["body"])["name"] for e in log] == names
        assert dropped == {"Shop %d" % i for i in range(every, n + 1, every)}, dropped
    assert len(ctx.fake.state()["objects"]["companies"]) == n  # all committed
    table = responses(ctx)
    assert len(rows) == n and len(table) == n
    assert_rows_match_table(rows, table)
    for t in table:
        name = json.loads(t["request_body"])["name"]
        if name in dropped:
            assert (t["state"], t["status"], t["attempts"]) == ("unknown", None, 1), t
            assert "connection dropped" in t["error"], t["error"]
        else:
            assert (t["state"], t["status"]) == ("ok", 201), t
    assert_run(runs(ctx)[0], records=n, requests=n, ok=n - len(dropped), unknown=len(dropped),
               failed=0)
    return table


def test_commit_then_drop_every_post_sends_each_record_exactly_once(ctx):
    check_drops(ctx, 4, 1)


def test_commit_then_drop_on_reused_connections_never_resends_a_post(ctx):
    # every 2nd POST is dropped after its commit on a keep-alive connection
    # that served the one before: libcurl's own re-send must not happen
    check_drops(ctx, 8, 2)


def test_commit_then_drop_on_parallel_reused_connections_never_resends_a_post(ctx):
    check_drops(ctx, 24, 3, concurrency=4)


def test_put_whose_connection_drops_is_retried(ctx):
    cfg, values = put_companies(ctx, 1)
    ctx.fake.config(rules=[{"method": "PUT", "drop": True, "times": 1}])
    rows, _ = run(ctx, dest_sql("d", cfg), send_query("d", values))
    log = ctx.fake.log()
    assert [(e["method"], e["status"]) for e in log] == [("PUT", None), ("PUT", 200)], log
    assert log[0]["body"] == log[1]["body"] == '{"name":"N1"}'
    r = one_row(ctx, rows)
    assert (r["state"], r["status"], r["attempts"]) == ("ok", 200, 2), r


def test_put_dropped_on_a_reused_connection_is_delivered(ctx):
    cfg, values = put_companies(ctx, 3)
    ctx.fake.config(faults={"drop_before_response_every": 2})
    rows, _ = run(ctx, dest_sql("d", cfg), send_query("d", values))
    log = ctx.fake.log()
    # requests 2 and 4 are dropped; each is sent again (by libcurl on a new
    # connection, or by the retry) as the next request
    assert [e["status"] for e in log] == [200, None, 200, None, 200], log
    assert [e["path"] for e in log][1:3] == [log[1]["path"]] * 2
    assert [e["path"] for e in log][3:5] == [log[3]["path"]] * 2
    assert [(r["state"], r["status"]) for r in rows] == [("ok", 200)] * 3, rows
    got = {c["id"]: c["name"] for c in ctx.fake.state()["objects"]["companies"]}
    assert sorted(got.values()) == ["N1", "N2", "N3"]


def test_timeout_of_a_post_is_unknown_and_not_retried(ctx):
    ctx.fake.config(faults={"delay_ms": 1500})
    cfg = companies_dest(timeout_ms=300)
    rows, _ = run(ctx, dest_sql("co", cfg), send_query("co", "SELECT 'A' AS name"))
    log = ctx.fake.log()
    assert len(log) == 1 and log[0]["method"] == "POST", log
    r = one_row(ctx, rows)
    assert (r["state"], r["status"], r["attempts"]) == ("unknown", None, 1), r
    assert "timed out" in r["error"] or "timeout" in r["error"], r["error"]
    assert_run(runs(ctx)[0], records=1, requests=1, unknown=1, ok=0, failed=0)


def test_timeout_of_a_put_is_retried_then_failed(ctx):
    cfg, values = put_companies(ctx, 1, timeout_ms=300,
                                retry={"base_delay_ms": 10, "max_attempts": 2})
    ctx.fake.config(faults={"delay_ms": 1500})
    rows, _ = run(ctx, dest_sql("d", cfg), send_query("d", values))
    log = ctx.fake.log()
    assert [e["method"] for e in log] == ["PUT", "PUT"], log
    r = one_row(ctx, rows)
    assert (r["state"], r["status"], r["attempts"]) == ("failed", None, 2), r
    assert "timed out" in r["error"] or "timeout" in r["error"], r["error"]


def test_redirect_is_failed_naming_the_location_and_is_not_followed(ctx):
    target = ctx.base + "/v3/a/%s/elsewhere.json" % ACC
    ctx.fake.config(faults={"redirect_to": target})
    for method in ("POST", "PUT"):
        ctx.fake.reset()
        ctx.fake.config(faults={"redirect_to": target})
        cfg = companies_dest(method=method)
        rows, _ = run(ctx, dest_sql("co", cfg), send_query("co", "SELECT 'A' AS name"))
        log = ctx.fake.log()
        assert len(log) == 1 and log[0]["path"] == "/v3/a/%s/companies.json" % ACC, log
        (r,) = rows
        assert (r["state"], r["status"], r["attempts"]) == ("failed", 302, 1), r
        assert target in r["error"], r["error"]


def bisect_requests(n, bad):
    """Requests made to isolate record `bad` (0-based) of a rejected batch of n
    when each rejected batch is split into n//2 and n - n//2."""
    count = 1
    while n > 1:
        count += 2
        first = n // 2
        if bad < first:
            n = first
        else:
            bad -= first
            n -= first
    return count


def test_batch_rejected_with_422_is_bisected_until_the_bad_record_is_alone(ctx):
    ctx.fake.config(accept_arrays=True, quota=NO_QUOTA,
                    rules=[{"method": "POST", "when_body_contains": "BAD", "status": 422,
                            "body": {"error": "Name is BAD"}}])
    query = ("WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i<100) "
             "SELECT 'k' || i AS k, CASE WHEN i=37 THEN 'BAD 37' ELSE 'Shop ' || i END AS name"
             " FROM s ORDER BY i")
    cfg = companies_dest(key="k", batch={"size": 100}, concurrency=1)
    rows, _ = run(ctx, dest_sql("co", cfg), send_query("co", query))
    log = ctx.fake.log()
    table = responses(ctx)
    want = bisect_requests(100, 36)
    assert len(log) == want == len(table) == len(rows), (len(log), want, len(table), len(rows))
    # the fake received: one request per row, each body the row's request_body
    assert sorted(e["body"] for e in log) == sorted(t["request_body"] for t in table)
    ok = [t for t in table if t["state"] == "ok"]
    failed = [t for t in table if t["state"] == "failed"]
    assert sum(t["records"] for t in ok) == 99
    assert len(ok) + len(failed) == len(table)
    alone = [t for t in failed if t["records"] == 1]
    assert len(alone) == 1, failed
    assert json.loads(alone[0]["record_keys"]) == ["k37"]
    assert json.loads(alone[0]["request_body"]) == [{"k": "k37", "name": "BAD 37"}]
    assert alone[0]["status"] == 422 and "Name is BAD" in alone[0]["error"], alone[0]
    delivered = ctx.rows("SELECT record_key FROM callrail_delivered WHERE destination='co'")
    assert sorted(d["record_key"] for d in delivered) == sorted(
        "k%d" % i for i in range(1, 101) if i != 37)
    assert len(ctx.fake.state()["objects"]["companies"]) == 99
    assert_run(runs(ctx)[0], records=100, requests=want, ok=99, failed=1, unknown=0, invalid=0)
    # each row's `records` is the number of records its request carried
    for t in table:
        assert t["records"] == len(json.loads(t["request_body"])), t
    assert_rows_match_table(rows, table)
