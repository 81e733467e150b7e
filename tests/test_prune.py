# callrail_prune(older_than_days [, destination]): retention that keeps the
# guarantees.  Rows are aged by rewriting their times with plain SQL (no
# clocks are waited on), then pruned; each test checks one thing the engine
# must still answer the same way afterwards:
#   - a delivered record is not sent again (the delivery its callrail_delivered
#     row points to is kept), while old failed rows and empty runs go;
#   - an unknown row is kept and still holds its key back;
#   - ids are never reused: prune everything, send again, the new ids are
#     above the old maximum (and the "emptied responses table" scenario: a
#     user deleting every row by hand cannot make an unknown row look older
#     than its key's last delivery);
#   - the quota pacer's last 24 hours are kept: a run that stopped on a
#     spent budget before the prune stops the same way after it;
#   - rows of a run still `running`, and other destinations' rows when one
#     is named, are kept;
#   - an unknown row whose keys were delivered later is marked resolved_by
#     and leaves the start-up index; a still unresolved one stays in it;
#   - SIGINT mid-prune on a large table stops it within a second;
#   - argument errors name the argument.
import os
import signal
import time

from helpers import (
    ACC, COMPANY, NO_QUOTA, companies_dest, dest_sql, exit_limit, finish, names_query, q,
    responses, run, runs, seed_companies, send_query, wait_for)

DAY_MS = 86400000


def age(ctx, days, where="1"):
    """Moves the rows matching `where` (both tables) `days` into the past."""
    d = days * DAY_MS
    ctx.rows("UPDATE callrail_responses SET sent_ms = sent_ms - %d,"
             " sent_at = strftime('%%Y-%%m-%%dT%%H:%%M:%%fZ', (sent_ms - %d) / 1000.0,"
             " 'unixepoch') WHERE sent_ms IS NOT NULL AND %s;"
             "UPDATE callrail_runs SET started_at = strftime('%%Y-%%m-%%dT%%H:%%M:%%fZ',"
             " started_at, '-%d days'), finished_at = strftime('%%Y-%%m-%%dT%%H:%%M:%%fZ',"
             " finished_at, '-%d days') WHERE %s" % (d, d, where, days, days, where))


def prune(ctx, args):
    rows, _ = run(ctx, "", "SELECT callrail_prune(%s) AS n;" % args, cred=False)
    return rows[0]["n"]


def keyed(**extra):
    return companies_dest(key="name", concurrency=1, **extra)


def posted_names(log):
    return [e["body"] for e in log if e["method"] == "POST"]


def test_prune_keeps_deliveries_so_delivered_records_are_not_resent(ctx):
    ctx.fake.config(rules=[{"method": "POST", "when_body_contains": "Shop 2\"", "status": 422}])
    setup = dest_sql("co", keyed())
    run(ctx, setup, send_query("co", names_query(4)))
    age(ctx, 100)
    before = responses(ctx)
    assert [t["state"] for t in before] == ["ok", "failed", "ok", "ok"], before
    n = prune(ctx, 90)
    after = responses(ctx)
    assert n == 1 and [t["id"] for t in after] == [before[0]["id"]] + [t["id"] for t in before[2:]]
    assert len(runs(ctx)) == 1, "the run still has responses: it stays"
    ctx.fake.reset()
    ctx.fake.config(rules=[])
    run(ctx, "", send_query("co", names_query(4)))
    assert [e["body"] for e in ctx.fake.log()] == ['{"name":"Shop 2"}'], ctx.fake.log()


def test_prune_keeps_unknown_rows_and_they_still_hold_their_keys(ctx):
    ctx.fake.config(faults={"drop_after_commit_every": 2})
    run(ctx, dest_sql("co", keyed()), send_query("co", names_query(4)))
    ctx.fake.config(faults={"drop_after_commit_every": 0})
    age(ctx, 400)
    unknown = [t for t in responses(ctx) if t["state"] == "unknown"]
    assert len(unknown) == 2, responses(ctx)
    prune(ctx, 0)
    assert [t for t in responses(ctx) if t["state"] == "unknown"] == unknown
    ctx.fake.reset()
    run(ctx, "", send_query("co", names_query(4)))
    assert ctx.fake.log() == [], "an unknown record was POSTed again after the prune"


def test_ids_are_not_reused_after_pruning_everything(ctx):
    setup = dest_sql("co", companies_dest())
    run(ctx, setup, send_query("co", names_query(3)))
    old_ids = [t["id"] for t in responses(ctx)]
    old_run = runs(ctx)[0]["run_id"]
    age(ctx, 2)
    assert prune(ctx, 1) == 4, "three responses and their run"
    assert responses(ctx) == [] and runs(ctx) == []
    run(ctx, "", send_query("co", names_query(2)))
    assert min(t["id"] for t in responses(ctx)) > max(old_ids)
    assert runs(ctx)[0]["run_id"] > old_run


def test_emptied_responses_table_does_not_resend_an_unknown_held_record(ctx):
    """A user deletes every response by hand; a later unknown PATCH of a key
    delivered before must still hold it (its id is above the delivery's)."""
    seeded = seed_companies(ctx, 3)
    cfg = {"method": "PATCH", "url": COMPANY, "params": {"account_id": ACC},
           "exclude": ["company_id"], "key": "company_id", "concurrency": 1}

    def values(tag):
        return " UNION ALL ".join("SELECT %s AS company_id, %s AS name" % (
            q(c["id"]), q("%s %d" % (tag, i))) for i, c in enumerate(seeded))
    patched = {"method": "PATCH", "status": 200, "body": {"id": "COM1"}}  # the fake has no PATCH
    ctx.fake.config(rules=[patched])
    run(ctx, dest_sql("up", cfg), send_query("up", values("v1")))
    ctx.rows("DELETE FROM callrail_responses")
    last = seeded[-1]["id"]
    ctx.fake.config(rules=[{"method": "PATCH", "path_regex": last, "drop": True}, patched])
    run(ctx, "", send_query("up", values("v2")))
    table = responses(ctx)
    assert [t["state"] for t in table] == ["ok", "ok", "unknown"], table
    delivered = ctx.rows("SELECT response_id FROM callrail_delivered WHERE record_key = %s"
                         % q(last))
    assert table[2]["id"] > delivered[0]["response_id"], (table, delivered)
    ctx.fake.reset()
    ctx.fake.config(rules=[patched])
    run(ctx, "", send_query("up", values("v3")))
    assert [e for e in ctx.fake.log() if last in e["path"]] == [], "the unknown key was resent"


def test_prune_keeps_the_last_24_hours_so_quota_answers_do_not_change(ctx):
    ctx.fake.config(quota=NO_QUOTA)
    setup = dest_sql("co", companies_dest(rate_limit={"per_hour": 3, "per_day": 100},
                                          on_quota="stop"))
    run(ctx, setup, send_query("co", names_query(3)))
    # the requests were sent half an hour ago, their run began two days ago
    ctx.rows("UPDATE callrail_responses SET sent_ms = sent_ms - 1800000;"
             "UPDATE callrail_runs SET started_at = strftime('%Y-%m-%dT%H:%M:%fZ', started_at,"
             " '-2 days'), finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', finished_at, '-2 days')")
    blocked, _ = run(ctx, "", "SELECT count(*) AS n FROM callrail_send('co', %s);"
                     % q(names_query(1, "Late")))
    assert blocked == [{"n": 0}] and runs(ctx)[-1]["status"] == "quota_exhausted"
    prune(ctx, 0)
    assert len([t for t in responses(ctx) if t["state"] == "ok"]) == 3
    again, _ = run(ctx, "", "SELECT count(*) AS n FROM callrail_send('co', %s);"
                   % q(names_query(1, "Late")))
    assert again == [{"n": 0}] and runs(ctx)[-1]["status"] == "quota_exhausted"


def test_prune_keeps_running_runs_and_other_destinations(ctx):
    setup = dest_sql("a", companies_dest()) + dest_sql("b", companies_dest())
    run(ctx, setup, send_query("a", names_query(2)) + send_query("b", names_query(2)))
    age(ctx, 10)
    ctx.rows("UPDATE callrail_runs SET status = 'running' WHERE destination = 'a'")
    assert prune(ctx, "5, 'b'") == 3
    assert prune(ctx, 5) == 0, "a's run is running: its rows stay"
    assert {t["destination"] for t in responses(ctx)} == {"a"}


def test_an_unknown_delivered_later_leaves_the_start_up_index(ctx):
    ctx.fake.config(faults={"drop_after_commit_every": 2})
    run(ctx, dest_sql("co", keyed()), send_query("co", names_query(4)))
    ctx.fake.config(faults={"drop_after_commit_every": 0})
    # with retry_post the unknown records are sent again, and delivered
    run(ctx, dest_sql("co", keyed(retry={"base_delay_ms": 10, "retry_post": True})),
        send_query("co", names_query(4)))
    ctx.rows("INSERT INTO callrail_responses(run_id, destination, records, record_keys, state)"
             " VALUES(1, 'co', 1, '[\"never delivered\"]', 'unknown')")
    prune(ctx, 36500)
    table = responses(ctx)
    unknown = [t for t in table if t["state"] == "unknown"]
    assert len(unknown) == 3, table
    settled = {t["record_keys"]: t["resolved_by"] for t in unknown}
    assert settled['["never delivered"]'] is None
    for keys, by in settled.items():
        if keys != '["never delivered"]':
            assert by and table[[t["id"] for t in table].index(by)]["record_keys"] == keys
    indexed = ctx.rows("SELECT record_keys FROM callrail_responses"
                       " INDEXED BY callrail_responses_unresolved WHERE destination = 'co'"
                       " AND state IN ('pending','unknown') AND resolved_by IS NULL")
    assert indexed == [{"record_keys": '["never delivered"]'}]


def test_sigint_stops_a_large_prune_within_a_second(ctx):
    n = 400000
    ctx.sql(ctx.setup_credential() + dest_sql("co", companies_dest(), active=False) + """
BEGIN;
INSERT INTO callrail_runs(run_id, destination, kind, started_at, finished_at, status)
  VALUES(1, 'co', 'send', '2020-01-01T00:00:00.000Z', '2020-01-01T01:00:00.000Z', 'done');
WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < %d)
INSERT INTO callrail_responses(run_id, destination, records, record_keys, method, url,
  request_body, status, state, response_body, sent_at, sent_ms, quota_bucket, quota_class)
SELECT 1, 'co', 1, json_array('k' || i), 'POST', 'http://x/v3/a/A/companies.json',
  '{"name":"Shop ' || i || '"}', 422, 'failed', '{"error":"no"}',
  '2020-01-01T00:00:00.000Z', 1577836800000 + i, 'http://x/v3/a/A', 'general' FROM s;
COMMIT;
""" % n)
    proc = ctx.spawn("SELECT callrail_prune(1);\n")
    wait_for(proc, lambda: ctx.rows("SELECT min(id) AS m FROM callrail_responses")[0]["m"] > 5000,
             never="the prune never started deleting")
    t0 = time.time()
    os.killpg(proc.pid, signal.SIGINT)
    _, out = finish(ctx, proc, timeout=30)
    latency = time.time() - t0
    assert latency <= exit_limit(ctx), "the shell exited %.2f s after SIGINT" % latency
    assert "interrupted after deleting" in out, out
    left = ctx.rows("SELECT count(*) AS n FROM callrail_responses")[0]["n"]
    assert 0 < left < n, left


test_sigint_stops_a_large_prune_within_a_second.slow = True


def test_prune_argument_errors_name_the_argument(ctx):
    _, out = run(ctx, dest_sql("co", companies_dest()), "\n".join([
        "SELECT callrail_prune(-1);", "SELECT callrail_prune(NULL);",
        "SELECT callrail_prune('soon');", "SELECT callrail_prune(1, 'nope');",
        "SELECT callrail_prune(1, NULL);", "SELECT callrail_prune();"]), expect_error=True)
    for expected in ["older_than_days must be between 0 and 1000000, not -1",
                     "older_than_days must be a number of days, not NULL",
                     "older_than_days must be a number of days, not text",
                     'destination "nope" is unknown', "destination is NULL",
                     "takes older_than_days and, optionally, a destination"]:
        assert "callrail_prune: " + expected in out, (expected, out)


def test_prune_is_directonly_a_view_or_trigger_cannot_call_it(ctx):
    setup = dest_sql("co", companies_dest())
    run(ctx, setup, send_query("co", names_query(2)))
    age(ctx, 10)
    _, out = run(ctx, "", "CREATE VIEW v AS SELECT callrail_prune(0) AS n;\n"
                 "CREATE TABLE t(x);\n"
                 "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT callrail_prune(0); END;\n"
                 "SELECT * FROM v;\nINSERT INTO t VALUES(1);", cred=False, expect_error=True)
    assert out.count("unsafe use of callrail_prune") == 2, out
    assert len(responses(ctx)) == 2 and len(runs(ctx)) == 1, "nothing was pruned"
