# callrail_send (README "Tables" and "Functions"): what it sends and what it records.
#
# Properties checked, each proven against the fake server's request log, the
# audit tables and the rows callrail_send returns:
#   - one result row per request (and per invalid record) with exactly the
#     README "Functions" columns, and the same facts in callrail_responses
#     (response_id = id, request_body = the body the fake received, url,
#     method, status, state, attempts, duration_ms);
#   - one callrail_runs row of kind 'send', status 'done', exact counts;
#   - response_body is the raw body: json_extract(response_body,'$.id') is
#     the id of the company the fake created;
#   - capture_responses:false keeps status and error, not bodies;
#   - concurrency: 8 in flight make 40 slow requests fast, never more than 8
#     at once; concurrency 1 sends strictly one at a time;
#   - an invalid record (NULL URL placeholder) gets an `invalid` row and the
#     other records still go;
#   - an inactive destination is refused and nothing is sent; a query with
#     no rows sends nothing and leaves one finished run with zero counts;
#   - PUT to /companies/{company_id}.json with exclude; DELETE -> 204 ok;
#   - errors: a 400 from CallRail, a 401 (wrong token), and the error shapes
#     errors_array / errors_object / plain-text 500 / plain-text 401 become
#     readable `error` text;
#   - LIMIT: a caller that stops reading leaves no request unrecorded;
#   - (slow) 100,000 records: all ok, peak RSS of the shell under 64 MB.
import json
import os
import re
import subprocess
import time

from helpers import (
    ACC, COMPANIES, NO_QUOTA, assert_rows_match_table, assert_run, companies_dest, dest_sql,
    iso_seconds, log_url, names_query, q, responses, run, runs, seed_companies, send_query)

SEND_COLUMNS = ["response_id", "batch", "records", "method", "url", "status", "state", "error",
                "response_body", "attempts", "duration_ms", "record_key", "remote_id"]


# -- tests ----------------------------------------------------------------------------------

def test_one_result_row_per_request_with_the_same_facts_as_the_audit_and_the_fake(ctx):
    rows, _ = run(ctx, dest_sql("co", companies_dest()), send_query("co", names_query(5)))
    log = ctx.fake.log()
    table = responses(ctx)
    # exactly the SPEC columns, one row per request
    assert len(rows) == 5 and len(log) == 5 and len(table) == 5, (len(rows), len(log), len(table))
    for r in rows:
        assert list(r.keys()) == SEND_COLUMNS, list(r.keys())
        assert r["method"] == "POST" and r["status"] == 201 and r["state"] == "ok"
        assert r["records"] == 1 and r["attempts"] == 1 and r["error"] is None
        assert r["url"] == ctx.base + "/v3/a/%s/companies.json" % ACC
        assert isinstance(r["duration_ms"], int) and r["duration_ms"] >= 0
    assert sorted(r["batch"] for r in rows) == [1, 2, 3, 4, 5]
    assert sorted(r["response_id"] for r in rows) == [t["id"] for t in table]
    assert_rows_match_table(rows, table)
    # callrail_responses holds what the fake received, request for request
    run_rows = runs(ctx)
    assert len(run_rows) == 1
    by_body = {}
    for e in log:
        by_body.setdefault(json.loads(e["body"])["name"], []).append(e)
    assert sorted(by_body) == ["Shop %d" % i for i in range(1, 6)]
    for t in table:
        sent = json.loads(t["request_body"])
        (e,) = by_body[sent["name"]]
        assert json.loads(e["body"]) == sent == {"name": sent["name"]}
        assert t["url"] == log_url(ctx, e) and t["method"] == e["method"] == "POST"
        assert t["status"] == e["status"] == 201 and t["state"] == "ok"
        assert t["response_body"] == e["response"], "response_body is not the raw body"
        assert t["run_id"] == run_rows[0]["run_id"] and t["destination"] == "co"
        assert t["attempts"] == 1 and t["sent_at"] and t["duration_ms"] >= 0
    # README "Functions" (headers) headers
    for e in log:
        h = e["headers"]
        assert h["authorization"] == 'Token token="test-token"', h
        assert h["accept"] == "application/json" and h["content-type"] == "application/json"
        assert h["user-agent"].startswith("callrail-sqlite/"), h
    # the run row
    assert_run(run_rows[0], destination="co", kind="send", status="done", records=5, requests=5,
               ok=5, failed=0, unknown=0, skipped=0, invalid=0)
    assert run_rows[0]["finished_at"] is not None
    # json_extract(response_body, '$.id') is the created company
    created = ctx.rows("SELECT json_extract(response_body, '$.id') AS cid,"
                       " json_extract(request_body, '$.name') AS name FROM callrail_responses")
    state = {c["id"]: c for c in ctx.fake.state()["objects"]["companies"]}
    assert len(state) == 5
    for c in created:
        assert c["cid"] in state and c["cid"].startswith("COM"), c
        assert state[c["cid"]]["name"] == c["name"]
    assert sorted(c["cid"] for c in created) == sorted(state)


def test_capture_responses_false_keeps_status_and_error_but_no_bodies(ctx):
    query = ("SELECT 'Kept' AS name UNION ALL SELECT NULL")  # the second has no name: 400
    rows, _ = run(ctx, dest_sql("co", companies_dest(capture_responses=False, concurrency=1)),
                  send_query("co", query))
    log = ctx.fake.log()
    table = responses(ctx)
    assert len(rows) == 2 and len(log) == 2 and len(table) == 2
    assert sorted((r["status"], r["state"]) for r in rows) == [(201, "ok"), (400, "failed")]
    for r in rows:
        assert r["response_body"] is None, r
    for t in table:
        assert t["response_body"] is None, t
        assert t["request_body"] is not None
    failed = [t["error"] for t in table if t["state"] == "failed"]
    assert failed == ["HTTP 400: Name can't be blank"], failed
    assert all(e["response"] for e in log)  # the fake did answer with bodies
    assert_rows_match_table(rows, table)
    assert_run(runs(ctx)[0], records=2, requests=2, ok=1, failed=1, invalid=0, status="done")


def max_overlap(log, seconds):
    """Most requests the fake was holding at one moment (each held `seconds`)."""
    times = sorted(e["time"] for e in log)
    best = 0
    for i, t in enumerate(times):
        best = max(best, sum(1 for u in times[: i + 1] if u + seconds > t))
    return best


def test_concurrency_8_sends_40_slow_requests_in_parallel_never_more_than_8(ctx):
    ctx.fake.config(faults={"delay_ms": 100})
    rows, _ = run(ctx, dest_sql("co", companies_dest(concurrency=8)),
                  send_query("co", names_query(40)))
    log = ctx.fake.log()
    assert len(rows) == 40 and len(log) == 40 and len(responses(ctx)) == 40
    assert [r["state"] for r in rows] == ["ok"] * 40
    r = runs(ctx)[0]
    assert_run(r, records=40, requests=40, ok=40, status="done")
    secs = iso_seconds(r["finished_at"]) - iso_seconds(r["started_at"])
    assert secs < 2.5, "40 requests of 100 ms at concurrency 8 took %.2f s" % secs
    peak = max_overlap(log, 0.1)
    assert peak <= 8, "the fake held %d requests at once with concurrency 8" % peak
    assert len(log) / 8 * 0.1 <= secs  # sanity: it did wait for the slow answers


def test_concurrency_1_sends_strictly_one_request_at_a_time(ctx):
    ctx.fake.config(faults={"delay_ms": 100})
    rows, _ = run(ctx, dest_sql("co", companies_dest(concurrency=1)),
                  send_query("co", names_query(5)))
    log = ctx.fake.log()
    assert len(rows) == 5 and len(log) == 5
    assert [json.loads(e["body"])["name"] for e in log] == ["Shop %d" % i for i in range(1, 6)]
    for a, b in zip(log, log[1:]):
        assert b["time"] >= a["time"] + 0.1, (
            "request %d arrived %.3f s after the previous one, before its answer (100 ms)"
            % (b["seq"], b["time"] - a["time"]))
    assert max_overlap(log, 0.1) == 1


def test_invalid_record_gets_an_invalid_row_and_the_others_still_go(ctx):
    # the account id comes from the record; record 3's is NULL, and params has none
    query = ("WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i<5) "
             "SELECT 'Shop ' || i AS name, CASE WHEN i=3 THEN NULL ELSE '%s' END AS account_id"
             " FROM s ORDER BY i" % ACC)
    cfg = {"url": COMPANIES, "exclude": ["account_id"], "concurrency": 1}
    rows, _ = run(ctx, dest_sql("co", cfg), send_query("co", query))
    log = ctx.fake.log()
    table = responses(ctx)
    assert len(rows) == 5 and len(table) == 5 and len(log) == 4
    assert sorted(json.loads(e["body"])["name"] for e in log) == [
        "Shop 1", "Shop 2", "Shop 4", "Shop 5"]
    assert all(json.loads(e["body"]).keys() == {"name"} for e in log)
    bad = [r for r in rows if r["state"] == "invalid"]
    assert len(bad) == 1 and [r["state"] for r in rows].count("ok") == 4
    (b,) = bad
    assert b["status"] is None and b["attempts"] == 0 and b["records"] == 1
    assert "record 3" in b["error"] and "account_id" in b["error"], b["error"]
    (tb,) = [t for t in table if t["state"] == "invalid"]
    assert tb["id"] == b["response_id"] and tb["status"] is None and tb["error"] == b["error"]
    assert_rows_match_table(rows, table)
    assert_run(runs(ctx)[0], records=5, requests=4, ok=4, invalid=1, failed=0, status="done")


def test_query_without_rows_sends_nothing_and_records_an_empty_run(ctx):
    rows, _ = run(ctx, dest_sql("co", companies_dest()),
                  send_query("co", "SELECT 'x' AS name WHERE 0"))
    assert rows == [] and ctx.fake.log() == [] and responses(ctx) == []
    (r,) = runs(ctx)
    assert_run(r, kind="send", status="done", records=0, requests=0, ok=0, failed=0, unknown=0,
               skipped=0, invalid=0)
    assert r["finished_at"] is not None


def test_inactive_destination_is_refused_and_nothing_is_sent(ctx):
    setup = dest_sql("never", companies_dest(), active=False)
    setup += dest_sql("paused", companies_dest())
    setup += "SELECT callrail_deactivate('paused');\n"
    rows, rest = run(ctx, setup, send_query("never", names_query(3)) + "\n" +
                     send_query("paused", names_query(3)), expect_error=True)
    assert rows == []
    errors = [l for l in rest.splitlines() if "error" in l.lower()]
    assert len(errors) == 2, rest
    assert '"never"' in errors[0] and "not active" in errors[0], errors[0]
    assert '"paused"' in errors[1] and "not active" in errors[1], errors[1]
    assert ctx.fake.log() == []
    assert responses(ctx) == []
    assert runs(ctx) == []


def test_put_updates_each_company_by_id_with_the_placeholder_excluded_from_the_body(ctx):
    seeded = seed_companies(ctx, 3)
    values = " UNION ALL ".join("SELECT %s AS company_id, %s AS name"
                                % (q(c["id"]), q("New %d" % i)) for i, c in enumerate(seeded, 1))
    cfg = {"method": "PUT", "url": "/v3/a/{account_id}/companies/{company_id}.json",
           "params": {"account_id": ACC}, "exclude": ["company_id"]}
    rows, _ = run(ctx, dest_sql("upd", cfg), send_query("upd", values))
    log = ctx.fake.log()
    table = responses(ctx)
    assert len(rows) == 3 and len(log) == 3 and len(table) == 3
    want = {"/v3/a/%s/companies/%s.json" % (ACC, c["id"]): {"name": "New %d" % i}
            for i, c in enumerate(seeded, 1)}
    assert sorted(e["path"] for e in log) == sorted(want)
    for e in log:
        assert e["method"] == "PUT" and e["status"] == 200
        assert json.loads(e["body"]) == want[e["path"]], e["body"]
    for r in rows:
        assert r["method"] == "PUT" and r["status"] == 200 and r["state"] == "ok"
    for t in table:
        assert json.loads(t["request_body"]) == want[t["url"][len(ctx.base):]]
    assert_rows_match_table(rows, table)
    state = {c["id"]: c["name"] for c in ctx.fake.state()["objects"]["companies"]}
    assert state == {c["id"]: "New %d" % i for i, c in enumerate(seeded, 1)}
    assert_run(runs(ctx)[0], records=3, requests=3, ok=3, status="done")


def test_delete_answered_204_is_ok_with_an_empty_body_and_sends_no_body(ctx):
    seeded = seed_companies(ctx, 2)
    values = " UNION ALL ".join("SELECT %s AS company_id" % q(c["id"]) for c in seeded)
    cfg = {"method": "DELETE", "url": "/v3/a/{account_id}/companies/{company_id}.json",
           "params": {"account_id": ACC}}
    rows, _ = run(ctx, dest_sql("del", cfg), send_query("del", values))
    log = ctx.fake.log()
    table = responses(ctx)
    assert len(rows) == 2 and len(log) == 2 and len(table) == 2
    for e in log:
        assert e["method"] == "DELETE" and e["status"] == 204 and e["body"] == ""
        assert "content-type" not in e["headers"], e["headers"]
    for r in rows:
        assert (r["method"], r["status"], r["state"], r["error"]) == ("DELETE", 204, "ok", None)
        assert r["response_body"] in (None, ""), r["response_body"]
    for t in table:
        assert t["request_body"] is None and t["response_body"] in (None, "")
    assert_rows_match_table(rows, table)
    assert sorted(e["path"] for e in log) == sorted(
        "/v3/a/%s/companies/%s.json" % (ACC, c["id"]) for c in seeded)
    assert {c["status"] for c in ctx.fake.state()["objects"]["companies"]} == {"disabled"}
    assert_run(runs(ctx)[0], records=2, requests=2, ok=2, status="done")


def test_http_400_from_callrail_is_failed_with_its_error_text(ctx):
    rows, _ = run(ctx, dest_sql("co", companies_dest()),
                  send_query("co", "SELECT 'America/Denver' AS time_zone"))
    log = ctx.fake.log()
    assert len(rows) == 1 and len(log) == 1 and log[0]["status"] == 400
    (r,) = rows
    assert (r["status"], r["state"], r["attempts"]) == (400, "failed", 1)
    assert r["error"] == "HTTP 400: Name can't be blank", r["error"]
    assert r["response_body"] == log[0]["response"]
    assert_rows_match_table(rows, responses(ctx))
    assert_run(runs(ctx)[0], records=1, requests=1, ok=0, failed=1, status="done")


def test_wrong_token_is_failed_naming_401_and_the_token_is_never_stored(ctx):
    setup = ctx.setup_credential("bad", "wrong-token-123") + dest_sql("co", companies_dest(),
                                                                       cred="bad")
    rows, _ = run(ctx, setup, send_query("co", names_query(2)))
    log = ctx.fake.log()
    assert len(rows) == 2 and len(log) == 2
    for e in log:
        assert e["status"] == 401
        assert e["headers"]["authorization"] == 'Token token="wrong-token-123"'
    for r in rows:
        assert (r["status"], r["state"], r["attempts"]) == (401, "failed", 1)
        assert "401" in r["error"], r["error"]
    assert_rows_match_table(rows, responses(ctx))
    assert_run(runs(ctx)[0], records=2, requests=2, failed=2, ok=0)
    _, dump = ctx.sql(".dump\n")
    assert "wrong-token-123" not in dump


def error_of(ctx, fake_cfg, query, dest_extra=None, setup_extra="", cred="fake"):
    ctx.fake.reset()
    ctx.fake.config(**fake_cfg)
    cfg = companies_dest(**(dest_extra or {}))
    rows, _ = run(ctx, setup_extra + dest_sql("co", cfg, cred=cred), send_query("co", query))
    log = ctx.fake.log()
    assert len(rows) == 1 and len(log) == 1, (rows, log)
    assert rows[0]["state"] == "failed" and rows[0]["status"] == log[0]["status"]
    return rows[0]["error"], log[0]["response"]


def test_error_shapes_become_readable_error_text(ctx):
    nameless = "SELECT 'America/Denver' AS time_zone"
    err, raw = error_of(ctx, {"error_shape": "errors_array"}, nameless)
    assert json.loads(raw) == {"errors": ["Name can't be blank"]}
    assert err == "HTTP 400: Name can't be blank", err
    err, raw = error_of(ctx, {"error_shape": "errors_object"}, nameless)
    assert json.loads(raw) == {"errors": {"name": ["Name can't be blank"]}}
    assert err.startswith("HTTP 400: ") and "Name can't be blank" in err, err
    assert not re.search(r'[\[\]{}"]', err), "error text is raw JSON: %r" % err
    err, raw = error_of(ctx, {"faults": {"fail_every": 1, "fail_status": 500}},
                        "SELECT 'A' AS name")
    assert raw == "<html>Internal Server Error</html>"
    assert err.startswith("HTTP 500") and "Internal Server Error" in err, err
    err, raw = error_of(ctx, {"plain_text_401": True}, "SELECT 'A' AS name",
                        setup_extra=ctx.setup_credential("bad", "nope"), cred="bad")
    assert raw == "HTTP Token: Access denied."
    assert err.startswith("HTTP 401") and "Access denied" in err, err


def test_limit_leaves_every_request_that_reached_the_fake_recorded_in_a_final_state(ctx):
    ctx.fake.config(faults={"delay_ms": 50})
    query = "SELECT * FROM callrail_send('co', %s) LIMIT 3;" % q(names_query(20))
    rows, _ = run(ctx, dest_sql("co", companies_dest(concurrency=4)), query)
    assert len(rows) == 3
    ctx.fake.quiesce()  # a request the shell wrote just before exiting is logged
    log = ctx.fake.log()
    table = responses(ctx)
    assert [t for t in table if t["state"] == "pending"] == [], table
    assert len(log) == len(table), "%d requests reached the fake, %d rows recorded" % (
        len(log), len(table))
    assert sorted(json.loads(e["body"])["name"] for e in log) == sorted(
        json.loads(t["request_body"])["name"] for t in table)
    for t in table:
        assert t["state"] == "ok" and t["status"] == 201, t
    (r,) = runs(ctx)
    assert r["status"] != "running" and r["finished_at"] is not None, r
    assert r["requests"] == len(table) and r["ok"] == len(table), r
    assert_rows_match_table(rows, table)


def vm_hwm_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def test_100k_records_all_ok_with_bounded_memory(ctx):
    n = 100000
    ctx.fake.config(quota=NO_QUOTA)
    cfg = companies_dest(concurrency=16,
                         rate_limit={"per_hour": 100000000, "per_day": 100000000})
    script = (".load %s\n.output /dev/null\n%s%s.output stdout\n"
              "SELECT state, count(*) FROM callrail_send('co', %s) GROUP BY state;\n"
              % (ctx.ext, ctx.setup_credential(), dest_sql("co", cfg), q(names_query(n))))
    time_out = os.path.join(ctx.dir, "time.txt")
    prefix = ["/usr/bin/time", "-v", "-o", time_out] if os.path.exists("/usr/bin/time") else []
    t0 = time.time()
    proc = subprocess.Popen(prefix + ctx.mode.prefix + ["sqlite3", "-batch", ctx.db],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=ctx.mode.env, cwd=ctx.dir)
    proc.stdin.write(script)
    proc.stdin.close()
    polled_kb = None
    while proc.poll() is None and time.time() - t0 < 1800:
        if not prefix:  # no /usr/bin/time: poll the peak while it runs
            polled_kb = vm_hwm_kb(proc.pid) or polled_kb
        time.sleep(0.2)
    if proc.poll() is None:
        proc.kill()
    out = proc.stdout.read()
    proc.wait()
    secs = time.time() - t0
    assert proc.returncode == 0 and out.strip() == "ok|%d" % n, out
    peak_kb = polled_kb
    if prefix:
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(time_out).read())
        peak_kb = int(m.group(1))
    (r,) = runs(ctx)
    assert_run(r, records=n, requests=n, ok=n, failed=0, unknown=0, invalid=0, status="done")
    counts = ctx.rows("SELECT state, count(*) AS n, count(DISTINCT request_body) AS bodies"
                      " FROM callrail_responses GROUP BY state")
    assert counts == [{"state": "ok", "n": n, "bodies": n}], counts
    log = ctx.fake.log()
    assert len(log) == n, len(log)
    assert len({e["body"] for e in log}) == n
    del log
    print("     100k: %.1f s wall, %.0f requests/s, peak RSS %s kB"
          % (secs, n / secs, peak_kb), flush=True)
    if peak_kb is not None and ctx.mode.name == "plain":
        assert peak_kb < 64 * 1024, "peak RSS %d kB for %d records" % (peak_kb, n)


test_100k_records_all_ok_with_bounded_memory.slow = True
