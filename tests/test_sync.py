"""Sync modes, remote ids and request identity, against the fake's request log.

Properties checked (exact counts, the fake's log vs. the audit tables):
  - sync "new" (a POST's default): a delivered record that changed is not
    sent again; the run counts it in `changed`, and callrail_preview shows it
    as a row with state 'changed' and no method, URL, headers or body;
  - sync "changed" (explicit for POST, and PUT's default): exactly the
    changed records are sent again, the others are skipped;
  - sync "upsert": the first run POSTs every record; after 2 records change
    and 1 is added, the next run PUTs the 2 to update.url with {remote_id} =
    the ids the fake returned for them, POSTs the new one and skips the
    rest, and callrail_preview showed exactly those requests beforehand;
  - remote ids: callrail_delivered.remote_id, callrail_responses.remote_id
    and callrail_send's remote_id are the ids the fake returned, and
    callrail_send rows carry their record_key; an `id_path` other than $.id
    finds a nested id; a record delivered without an id cannot be upserted
    (invalid, saying why);
  - the mapping query `SELECT record_key, remote_id FROM callrail_delivered
    WHERE destination = ?` gives each key's CallRail id;
  - request identity: reordered columns, reformatted JSON (member order,
    whitespace) and numbers written 1.50 vs 1.5 are not a change (0
    requests with sync "changed"), while a changed array order is.
The origin spelled with and without its default port is checked in C,
tests/unit/identity_test.c.
"""
import json
import sqlite3

from helpers import (
    ACC, COMPANIES, assert_run, companies_dest, dest_sql, q, responses, run, runs,
    seed_companies, send_query)

SHOPS = "SELECT id, name, time_zone FROM shops ORDER BY id"
ZONES = ["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"]
UPSERT = {"url": "/v3/a/{account_id}/companies/{remote_id}.json"}


# -- helpers ----------------------------------------------------------------------------------

def make_shops(ctx, n):
    """shops(id, name, time_zone): 1..n, 'Shop i', a US time zone."""
    ctx.rows("CREATE TABLE shops(id INTEGER PRIMARY KEY, name TEXT, time_zone TEXT);" + "".join(
        "INSERT INTO shops VALUES(%d, 'Shop %d', %s);" % (i, i, q(ZONES[i % len(ZONES)]))
        for i in range(1, n + 1)))


def shops_dest(**extra):
    """POST companies, key id (left out of the body)."""
    return companies_dest(key="id", exclude=["id"], **extra)


def last_seq(ctx):
    log = ctx.fake.log()
    return log[-1]["seq"] if log else 0


def send(ctx, cfg, query=SHOPS, dest="co"):
    """One run of dest; returns (its rows, the requests it made, its run row)."""
    before = last_seq(ctx)
    rows, _ = run(ctx, dest_sql(dest, cfg), send_query(dest, query))
    return rows, [e for e in ctx.fake.log() if e["seq"] > before], runs(ctx)[-1]


def preview(ctx, cfg, query=SHOPS, dest="co"):
    rows, _ = run(ctx, dest_sql(dest, cfg, active=False),
                  "SELECT * FROM callrail_preview(%s, %s);" % (q(dest), q(query)))
    return rows


def created(log):
    """{company name: id} of the companies the fake created in log."""
    return {json.loads(e["body"])["name"]: json.loads(e["response"])["id"]
            for e in log if e["method"] == "POST" and e["status"] == 201}


def delivered(ctx, dest="co"):
    return {d["record_key"]: d for d in ctx.rows(
        "SELECT * FROM callrail_delivered WHERE destination=%s" % q(dest))}


def fake_companies(ctx):
    return {c["id"]: c for c in ctx.fake.state()["objects"]["companies"]}


# -- sync "new" -------------------------------------------------------------------------------

def test_sync_new_counts_a_changed_record_and_sends_nothing(ctx):
    make_shops(ctx, 5)
    rows, log, r1 = send(ctx, shops_dest())
    assert len(log) == 5 and all(e["method"] == "POST" for e in log)
    assert_run(r1, records=5, requests=5, ok=5, changed=0)
    ctx.rows("UPDATE shops SET name = name || ' (renamed)' WHERE id IN (2, 4)")
    # the preview shows the two changed records, without a request
    p = preview(ctx, shops_dest())
    assert sorted(r["record_key"] for r in p) == ["2", "4"], p
    for r in p:
        assert r["state"] == "changed" and r["records"] == 1, r
        assert (r["method"], r["url"], r["headers"], r["body"]) == (None,) * 4, r
    assert ctx.fake.log() == log
    rows, log2, r2 = send(ctx, shops_dest())
    assert log2 == [], "sync new sent a delivered record again: %r" % log2
    assert_run(r2, records=5, requests=0, ok=0, skipped=3, changed=2, status="done")
    # a changed record of sync "new" makes no row: it made no request
    assert rows == [] and len(responses(ctx)) == 5, rows
    assert sorted(c["name"] for c in fake_companies(ctx).values()) == [
        "Shop %d" % i for i in range(1, 6)]
    # "new" is the POST default: saying it changes nothing
    rows, log3, r3 = send(ctx, shops_dest(sync="new"))
    assert log3 == [] and r3["changed"] == 2 and r3["skipped"] == 3


# -- sync "changed" ---------------------------------------------------------------------------

def test_sync_changed_on_post_resends_exactly_the_changed_records(ctx):
    make_shops(ctx, 6)
    _, log, _ = send(ctx, shops_dest(sync="changed"))
    assert len(log) == 6
    ctx.rows("UPDATE shops SET time_zone = 'America/Phoenix' WHERE id IN (1, 5)")
    rows, log, r2 = send(ctx, shops_dest(sync="changed"))
    assert sorted((e["method"], e["path"], e["body"]) for e in log) == [
        ("POST", COMPANIES.format(account_id=ACC),
         json.dumps({"name": "Shop %d" % i, "time_zone": "America/Phoenix"},
                    separators=(",", ":"))) for i in (1, 5)]
    assert sorted(r["record_key"] for r in rows) == ["1", "5"]
    assert_run(r2, records=6, requests=2, ok=2, skipped=4, changed=0)
    _, log, r3 = send(ctx, shops_dest(sync="changed"))
    assert log == [] and r3["skipped"] == 6


def test_put_destinations_resend_changed_records_by_default(ctx):
    seeded = seed_companies(ctx, 4)
    ctx.rows("CREATE TABLE upd(k TEXT PRIMARY KEY, name TEXT);" + "".join(
        "INSERT INTO upd VALUES(%s, 'Upd %d');" % (q(c["id"]), i)
        for i, c in enumerate(seeded, 1)))
    cfg = {"method": "PUT", "url": "/v3/a/{account_id}/companies/{k}.json",
           "params": {"account_id": ACC}, "exclude": ["k"], "key": "k"}
    query = "SELECT k, name FROM upd ORDER BY name"
    _, log, _ = send(ctx, cfg, query)
    assert len(log) == 4 and all(e["method"] == "PUT" and e["status"] == 200 for e in log)
    ctx.rows("UPDATE upd SET name = 'Upd 3 v2' WHERE name = 'Upd 3'")
    rows, log, r2 = send(ctx, cfg, query)
    assert [(e["method"], e["path"], e["body"]) for e in log] == [
        ("PUT", "/v3/a/%s/companies/%s.json" % (ACC, seeded[2]["id"]), '{"name":"Upd 3 v2"}')]
    assert_run(r2, records=4, requests=1, ok=1, skipped=3, changed=0)
    assert [r["record_key"] for r in rows] == [seeded[2]["id"]]


# -- sync "upsert" ----------------------------------------------------------------------------

def test_upsert_puts_changed_records_to_their_remote_id_and_posts_new_ones(ctx):
    make_shops(ctx, 4)
    cfg = shops_dest(sync="upsert", update=UPSERT)
    _, log, r1 = send(ctx, cfg)
    assert [e["method"] for e in log] == ["POST"] * 4
    assert_run(r1, records=4, requests=4, ok=4)
    ids = {int(name.split()[1]): cid for name, cid in created(log).items()}
    assert len(ids) == 4
    # 2 records change (name and time zone), 1 is new, 2 stay as they were
    ctx.rows("UPDATE shops SET name = name || ' v2', time_zone = 'America/Phoenix'"
             " WHERE id IN (2, 3); INSERT INTO shops VALUES(5, 'Shop 5', 'America/Denver')")
    p = preview(ctx, cfg)
    rows, log, r2 = send(ctx, cfg)
    want_puts = sorted(("PUT", "/v3/a/%s/companies/%s.json" % (ACC, ids[i]),
                        {"name": "Shop %d v2" % i, "time_zone": "America/Phoenix"})
                       for i in (2, 3))
    assert sorted((e["method"], e["path"], json.loads(e["body"])) for e in log
                  if e["method"] == "PUT") == want_puts, log
    posts = [e for e in log if e["method"] == "POST"]
    assert [(e["path"], json.loads(e["body"])) for e in posts] == [
        (COMPANIES.format(account_id=ACC), {"name": "Shop 5", "time_zone": "America/Denver"})]
    assert len(log) == 3 and all(e["status"] in (200, 201) for e in log)
    assert_run(r2, records=5, requests=3, ok=3, skipped=2, changed=0)
    # the preview showed exactly these requests
    assert sorted((r["state"], r["method"], r["url"], json.loads(r["body"])["name"]) for r in p) == \
        sorted(("send", e["method"], ctx.base + e["path"], json.loads(e["body"])["name"])
               for e in log), p
    assert sorted(r["record_key"] for r in p) == ["2", "3", "5"]
    # CallRail holds 5 companies, the 2 updated in place
    comps = fake_companies(ctx)
    assert len(comps) == 5
    assert comps[ids[2]]["name"] == "Shop 2 v2" and comps[ids[3]]["time_zone"] == "America/Phoenix"
    ids[5] = created(log)["Shop 5"]
    assert {k: d["remote_id"] for k, d in delivered(ctx).items()} == {
        str(i): cid for i, cid in ids.items()}
    by_key = {r["record_key"]: r for r in rows}
    assert by_key["2"]["remote_id"] == ids[2] and by_key["5"]["remote_id"] == ids[5]
    # nothing changed since: nothing is sent
    _, log, r3 = send(ctx, cfg)
    assert log == [] and r3["skipped"] == 5


def test_upsert_of_a_record_delivered_without_an_id_is_invalid_saying_why(ctx):
    make_shops(ctx, 2)
    # the fake answers Shop 1's creation without an id
    ctx.fake.config(rules=[{"method": "POST", "when_body_contains": "Shop 1", "status": 201,
                            "body": {"name": "Shop 1"}}])
    cfg = shops_dest(sync="upsert", update=UPSERT)
    _, log, _ = send(ctx, cfg)
    assert len(log) == 2
    d = delivered(ctx)
    assert d["1"]["remote_id"] is None and d["2"]["remote_id"] is not None
    ctx.rows("UPDATE shops SET name = name || ' v2'")
    rows, log, r2 = send(ctx, cfg)
    assert [(e["method"], json.loads(e["body"])["name"]) for e in log] == [("PUT", "Shop 2 v2")]
    (bad,) = [r for r in rows if r["state"] == "invalid"]
    assert bad["record_key"] == "1" and "remote_id" in bad["error"] and "$.id" in bad["error"], bad
    assert_run(r2, records=2, requests=1, ok=1, invalid=1)


# -- remote ids -------------------------------------------------------------------------------

def test_remote_ids_are_the_ids_the_fake_returned(ctx):
    make_shops(ctx, 5)
    rows, log, _ = send(ctx, shops_dest())
    ids = created(log)
    assert len(ids) == 5
    want = {str(i): ids["Shop %d" % i] for i in range(1, 6)}
    assert {r["record_key"]: r["remote_id"] for r in rows} == want, rows
    assert {r["record_key"]: r["remote_id"] for r in responses(ctx)} == want
    assert {k: d["remote_id"] for k, d in delivered(ctx).items()} == want
    for r in responses(ctx):
        assert json.loads(r["record_keys"]) == [r["record_key"]], r


def test_id_path_finds_a_nested_id_and_upsert_uses_it(ctx):
    make_shops(ctx, 2)
    # a proxy that wraps what it creates: {"company": {"id": ...}}
    ctx.fake.config(rules=[
        {"method": "POST", "when_body_contains": "Shop %d" % i, "status": 201,
         "body": {"company": {"id": "NEST-%d" % i, "name": "Shop %d" % i}}} for i in (1, 2)] + [
        {"method": "PUT", "path_regex": "/companies/NEST-1\\.json$", "status": 200,
         "body": {"company": {"id": "NEST-1"}}}])
    cfg = shops_dest(sync="upsert", update=UPSERT, id_path="$.company.id")
    rows, log, _ = send(ctx, cfg)
    assert sorted(r["remote_id"] for r in rows) == ["NEST-1", "NEST-2"]
    assert {k: d["remote_id"] for k, d in delivered(ctx).items()} == {"1": "NEST-1",
                                                                      "2": "NEST-2"}
    ctx.rows("UPDATE shops SET name = 'Shop 1 v2' WHERE id = 1")
    rows, log, _ = send(ctx, cfg)
    assert [(e["method"], e["path"], e["status"]) for e in log] == [
        ("PUT", "/v3/a/%s/companies/NEST-1.json" % ACC, 200)]
    assert [(r["record_key"], r["remote_id"]) for r in rows] == [("1", "NEST-1")]


def test_batch_rows_have_no_single_record_key(ctx):
    # a batch (even of one record) names its keys in record_keys only
    ctx.fake.config(accept_arrays=True)
    make_shops(ctx, 3)
    rows, log, _ = send(ctx, shops_dest(batch={"size": 2}, concurrency=1))
    assert len(log) == 2
    assert [(r["records"], r["record_key"]) for r in rows] == [(2, None), (1, None)], rows
    assert [(t["record_keys"], t["record_key"]) for t in responses(ctx)] == [
        ('["1","2"]', None), ('["3"]', None)]
    assert sorted(delivered(ctx)) == ["1", "2", "3"]


def test_mapping_query_gives_each_keys_callrail_id(ctx):
    make_shops(ctx, 3)
    _, log, _ = send(ctx, shops_dest())
    _, other, _ = send(ctx, shops_dest(), "SELECT 9 AS id, 'Elsewhere' AS name", dest="other")
    ids = created(log)
    # the query as the README gives it, with the destination bound as a parameter
    con = sqlite3.connect(ctx.db)
    try:
        got = con.execute("SELECT record_key, remote_id FROM callrail_delivered"
                          " WHERE destination = ?", ("co",)).fetchall()
    finally:
        con.close()
    assert sorted(got) == sorted((str(i), ids["Shop %d" % i]) for i in (1, 2, 3)), got


# -- request identity -------------------------------------------------------------------------

def test_reordered_columns_are_not_a_change(ctx):
    make_shops(ctx, 4)
    cfg = shops_dest(sync="changed")
    _, log, _ = send(ctx, cfg, "SELECT id, name, time_zone FROM shops")
    assert len(log) == 4
    _, log, r2 = send(ctx, cfg, "SELECT id, time_zone, name FROM shops")
    assert log == [], "a column reorder was sent again: %r" % log
    assert_run(r2, records=4, requests=0, skipped=4)
    _, log, r3 = send(ctx, cfg, "SELECT time_zone, name, id FROM shops")
    assert log == [] and r3["skipped"] == 4


def accept_everything(ctx):
    """The fake answers every POST 201 with an id (any body is fine)."""
    ctx.fake.config(rules=[{"method": "POST", "status": 201, "body": {"id": "X"}}])


def test_reformatted_json_is_not_a_change(ctx):
    accept_everything(ctx)
    cfg = companies_dest(key="id", sync="changed")
    # a json() column: members in another order (json() keeps the order)
    first = ("SELECT 1 AS id, 'A' AS name,"
             " json('{\"a\": 1, \"b\": [1, 2], \"c\": {\"x\": \"y\", \"z\": null}}') AS meta")
    again = ("SELECT 1 AS id, 'A' AS name,"
             " json('{\"c\":{\"z\":null,\"x\":\"y\"},\"b\":[1,2],\"a\":1}') AS meta")
    _, log, _ = send(ctx, cfg, first)
    assert len(log) == 1
    _, log, r2 = send(ctx, cfg, again)
    assert log == [] and r2["skipped"] == 1, log
    # a one-column record given as JSON text: whitespace and member order
    _, log, _ = send(ctx, cfg, "SELECT '{\"id\": 2, \"name\": \"B\", \"tags\": [\"x\", \"y\"]}'")
    assert len(log) == 1 and json.loads(log[0]["body"]) == {"id": 2, "name": "B", "tags": ["x", "y"]}
    _, log, r4 = send(ctx, cfg, "SELECT '{\n  \"tags\":[\"x\",\"y\"],\n  \"name\":\"B\",\"id\":2\n}'")
    assert log == [] and r4["skipped"] == 1, log
    # the control: array order is a change, and is sent
    _, log, _ = send(ctx, cfg, "SELECT '{\"id\": 2, \"name\": \"B\", \"tags\": [\"y\", \"x\"]}'")
    assert len(log) == 1, log


def test_numbers_written_differently_are_not_a_change(ctx):
    accept_everything(ctx)
    cfg = companies_dest(key="id", sync="changed")
    _, log, _ = send(ctx, cfg, "SELECT 1 AS id, json('{\"price\": 1.50, \"n\": 10}') AS meta")
    assert len(log) == 1 and "1.50" in log[0]["body"], log
    _, log, r2 = send(ctx, cfg, "SELECT 1 AS id, json('{\"n\": 10, \"price\": 1.5}') AS meta")
    assert log == [] and r2["skipped"] == 1, log
    _, log, _ = send(ctx, cfg, "SELECT 1 AS id, json('{\"price\": 1.51, \"n\": 10}') AS meta")
    assert len(log) == 1, "a changed number was not sent"
