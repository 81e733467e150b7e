# README "Destination config" `key`: change detection, and the guarantee that a record
# whose POST may have arrived is never sent again by itself.
#
# Properties checked (fake request log vs. callrail_runs / callrail_responses /
# callrail_delivered vs. the rows callrail_send returns, exact counts):
#   - a re-run with `key` and unchanged records sends nothing: the run counts
#     every record as skipped and the fake receives no request;
#   - after 5 of 20 records change, the next run sends exactly those 5;
#   - a record that failed is sent again by the next run;
#   - an `unknown` record (its POST was committed, then the connection
#     dropped) is not resent by a POST destination, and is resent once the
#     user sets its row's state to 'failed';
#   - a PUT destination resends an `unknown` record (PUT is idempotent);
#   - a NULL key and a key repeated within a run make the record `invalid`;
#   - callrail_delivered has one row per key, whose response_id is the
#     request that delivered it (also when records travel in batches).
import json

from helpers import (
    ACC, assert_rows_match_table, assert_run, companies_dest, dest_sql, q, responses, run,
    runs, seed_companies, send_query)


# -- tests ----------------------------------------------------------------------------------

def make_table(ctx, n, name="Shop"):
    """recs(k, name): k1..kn, '<name> i'."""
    ctx.rows("CREATE TABLE recs(id INTEGER PRIMARY KEY, k TEXT, name TEXT);"
             "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i<%d)"
             " INSERT INTO recs SELECT i, 'k' || i, '%s ' || i FROM s;" % (n, name))


KEYED = "SELECT k, name FROM recs ORDER BY id"


def keyed_dest(**extra):
    return companies_dest(key="k", **extra)


def new_log(ctx, before):
    return [e for e in ctx.fake.log() if e["seq"] > before]


def last_seq(ctx):
    log = ctx.fake.log()
    return log[-1]["seq"] if log else 0


def send_again(ctx, cfg, query=KEYED):
    """One more run of destination 'co'; returns (rows, new fake log, run row)."""
    before = last_seq(ctx)
    rows, _ = run(ctx, dest_sql("co", cfg), send_query("co", query))
    return rows, new_log(ctx, before), runs(ctx)[-1]


def delivered(ctx):
    return {d["record_key"]: d for d in ctx.rows("SELECT * FROM callrail_delivered"
                                                 " WHERE destination='co'")}


def keys_of(e):
    b = json.loads(e["body"])
    return [r["k"] for r in b] if isinstance(b, list) else [b["k"]]


def test_rerun_with_key_of_unchanged_records_sends_nothing(ctx):
    make_table(ctx, 10)
    rows, log, r1 = send_again(ctx, keyed_dest())
    assert len(rows) == 10 and len(log) == 10
    assert_run(r1, records=10, requests=10, ok=10, skipped=0)
    rows, log, r2 = send_again(ctx, keyed_dest())
    assert rows == [] and log == [], (rows, log)
    assert r2["run_id"] != r1["run_id"]
    assert_run(r2, kind="send", status="done", records=10, skipped=10, requests=0, ok=0,
               failed=0, unknown=0, invalid=0)
    assert len(responses(ctx)) == 10


def test_after_5_of_20_records_change_exactly_those_5_are_sent(ctx):
    # sync "changed" sends changed records again (a POST's default, "new",
    # would not: test_sync.py covers that)
    make_table(ctx, 20)
    rows, log, _ = send_again(ctx, keyed_dest(sync="changed"))
    assert len(rows) == 20 and len(log) == 20
    first = delivered(ctx)
    changed = {3, 6, 9, 12, 15}
    ctx.rows("UPDATE recs SET name = name || ' v2' WHERE id IN (%s)" % ",".join(map(str, changed)))
    rows, log, r2 = send_again(ctx, keyed_dest(sync="changed"))
    assert len(rows) == 5 and len(log) == 5
    assert sorted(json.loads(e["body"])["name"] for e in log) == sorted(
        "Shop %d v2" % i for i in changed)
    assert [r["state"] for r in rows] == ["ok"] * 5
    assert_run(r2, records=20, skipped=15, requests=5, ok=5, failed=0, invalid=0)
    # the 5 now point at their new delivery, the other 15 at the first
    after = delivered(ctx)
    assert sorted(after) == sorted("k%d" % i for i in range(1, 21))
    new_ids = {r["response_id"] for r in rows}
    for k, d in after.items():
        if int(k[1:]) in changed:
            assert d["response_id"] in new_ids and d["record_hash"] != first[k]["record_hash"], d
        else:
            assert d == first[k], (d, first[k])
    # and a third run sends nothing again
    rows, log, r3 = send_again(ctx, keyed_dest(sync="changed"))
    assert rows == [] and log == []
    assert_run(r3, records=20, skipped=20, requests=0)


def test_failed_record_is_sent_again_by_the_next_run(ctx):
    make_table(ctx, 5)
    ctx.fake.config(rules=[{"method": "POST", "when_body_contains": "Shop 3", "status": 400,
                            "times": 1}])
    rows, log, r1 = send_again(ctx, keyed_dest())
    assert len(log) == 5
    assert sorted((r["state"]) for r in rows) == ["failed"] + ["ok"] * 4
    assert_run(r1, records=5, requests=5, ok=4, failed=1)
    assert sorted(delivered(ctx)) == ["k1", "k2", "k4", "k5"]
    rows, log, r2 = send_again(ctx, keyed_dest())
    assert [keys_of(e) for e in log] == [["k3"]] and log[0]["status"] == 201
    assert [(r["state"], r["status"]) for r in rows] == [("ok", 201)]
    assert_run(r2, records=5, skipped=4, requests=1, ok=1, failed=0)
    d = delivered(ctx)
    assert sorted(d) == ["k%d" % i for i in range(1, 6)]
    assert d["k3"]["response_id"] == rows[0]["response_id"]


def test_unknown_post_is_not_resent_until_the_user_marks_it_failed(ctx):
    make_table(ctx, 5)
    ctx.fake.config(faults={"drop_after_commit_every": 3})
    rows, log, r1 = send_again(ctx, keyed_dest(concurrency=1))
    assert len(log) == 5 and [keys_of(e) for e in log if e["status"] is None] == [["k3"]]
    assert_run(r1, records=5, requests=5, ok=4, unknown=1)
    (unk,) = [t for t in responses(ctx) if t["state"] == "unknown"]
    assert json.loads(unk["record_keys"]) == ["k3"]
    ctx.fake.config(faults={"drop_after_commit_every": 0})
    # the POST of k3 may have arrived (it did): not sent again
    rows, log, r2 = send_again(ctx, keyed_dest(concurrency=1))
    assert rows == [] and log == [], log
    assert_run(r2, records=5, skipped=5, requests=0, unknown=0)
    # the user checked CallRail and releases it
    ctx.rows("UPDATE callrail_responses SET state='failed' WHERE id=%d" % unk["id"])
    rows, log, r3 = send_again(ctx, keyed_dest(concurrency=1))
    assert [keys_of(e) for e in log] == [["k3"]] and log[0]["status"] == 201
    assert [(r["state"], r["status"]) for r in rows] == [("ok", 201)]
    assert_run(r3, records=5, skipped=4, requests=1, ok=1)
    assert sorted(delivered(ctx)) == ["k%d" % i for i in range(1, 6)]
    # the fake holds k3 twice now: once from the dropped POST, once from the release
    names = sorted(c["name"] for c in ctx.fake.state()["objects"]["companies"])
    assert names == sorted(["Shop 1", "Shop 2", "Shop 3", "Shop 3", "Shop 4", "Shop 5"])


def test_put_destination_resends_an_unknown_record(ctx):
    seeded = seed_companies(ctx, 3)
    ctx.rows("CREATE TABLE recs(id INTEGER PRIMARY KEY, k TEXT, name TEXT);" + "".join(
        "INSERT INTO recs VALUES(%d, %s, %s);" % (i, q(c["id"]), q("New %d" % i))
        for i, c in enumerate(seeded, 1)))
    cfg = {"method": "PUT", "url": "/v3/a/{account_id}/companies/{k}.json",
           "params": {"account_id": ACC}, "exclude": ["k"], "key": "k", "concurrency": 1,
           "retry": {"max_attempts": 1}}
    # record 2 fails (500, no retry); its row is then made `unknown`, as a
    # run killed while the request was in flight leaves it
    ctx.fake.config(rules=[{"method": "PUT", "when_body_contains": "New 2", "status": 500,
                            "times": 1}])
    rows, log, r1 = send_again(ctx, cfg, "SELECT k, name FROM recs ORDER BY id")
    assert [e["status"] for e in log] == [200, 500, 200]
    assert_run(r1, records=3, requests=3, ok=2, failed=1)
    ctx.rows("UPDATE callrail_responses SET state='unknown' WHERE state='failed'")
    rows, log, r2 = send_again(ctx, cfg, "SELECT k, name FROM recs ORDER BY id")
    assert [(e["method"], e["path"], e["status"]) for e in log] == [
        ("PUT", "/v3/a/%s/companies/%s.json" % (ACC, seeded[1]["id"]), 200)], log
    assert json.loads(log[0]["body"]) == {"name": "New 2"}
    assert [(r["state"], r["status"]) for r in rows] == [("ok", 200)]
    assert_run(r2, records=3, skipped=2, requests=1, ok=1)
    assert sorted(delivered(ctx)) == sorted(c["id"] for c in seeded)


def test_null_and_duplicate_keys_within_a_run_are_invalid(ctx):
    ctx.rows("CREATE TABLE recs(id INTEGER PRIMARY KEY, k TEXT, name TEXT);"
             "INSERT INTO recs VALUES(1,'k1','A'),(2,NULL,'B'),(3,'k2','C'),(4,'k1','D');")
    rows, log, r1 = send_again(ctx, keyed_dest(concurrency=1))
    assert [keys_of(e) for e in log] == [["k1"], ["k2"]]
    assert [r["state"] for r in rows] == ["ok", "invalid", "ok", "invalid"], rows
    null_row, dup_row = rows[1], rows[3]
    assert "record 2" in null_row["error"] and "NULL" in null_row["error"], null_row["error"]
    assert '"k"' in null_row["error"], null_row["error"]
    assert "record 4" in dup_row["error"] and "duplicate" in dup_row["error"], dup_row["error"]
    for r in (null_row, dup_row):
        assert r["status"] is None and r["attempts"] == 0
    assert_rows_match_table(rows, responses(ctx))
    assert_run(r1, records=4, requests=2, ok=2, invalid=2, skipped=0)
    assert sorted(delivered(ctx)) == ["k1", "k2"]
    # next run: k1, k2 skipped; the NULL and the repeated key are invalid again
    rows, log, r2 = send_again(ctx, keyed_dest(concurrency=1))
    assert log == [] and [r["state"] for r in rows] == ["invalid", "invalid"]
    assert_run(r2, records=4, requests=0, skipped=2, invalid=2)
    assert sorted(delivered(ctx)) == ["k1", "k2"]


def test_delivered_has_one_row_per_key_naming_the_delivering_request(ctx):
    ctx.fake.config(accept_arrays=True)
    make_table(ctx, 7)
    rows, log, r1 = send_again(ctx, keyed_dest(batch={"size": 3}, concurrency=1))
    assert [keys_of(e) for e in log] == [["k1", "k2", "k3"], ["k4", "k5", "k6"], ["k7"]]
    assert [(r["records"], r["state"]) for r in rows] == [(3, "ok"), (3, "ok"), (1, "ok")]
    assert_run(r1, records=7, requests=3, ok=7)
    d = ctx.rows("SELECT record_key, response_id FROM callrail_delivered ORDER BY record_key")
    assert len(d) == 7 and len({x["record_key"] for x in d}) == 7
    by_key = {}
    for t in responses(ctx):
        for k in json.loads(t["record_keys"]):
            by_key[k] = t["id"]
    assert {x["record_key"]: x["response_id"] for x in d} == by_key
    assert sorted(set(by_key.values())) == sorted(r["response_id"] for r in rows)
