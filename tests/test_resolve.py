"""callrail_resolve(response_id, 'delivered' | 'not_delivered' [, remote_id]):
the user records what became of a request whose outcome is not known.

Properties checked (the fake's log vs. callrail_responses/callrail_delivered):
  - on an `unknown` row (a POST the fake committed, then dropped the
    connection): 'delivered' returns 'ok', makes the row ok (its error says
    it was resolved by hand, when, and what it was), gives the key the
    remote id passed, and the next run sends nothing and counts no change;
    'not_delivered' returns 'failed' and the next run sends the record
    exactly once;
  - on the `pending` rows of a run killed with SIGKILL (requests in flight):
    refused while the run is alive, then allowed both ways once it is dead;
  - on an unknown batch: every key of the batch becomes delivered with the
    identity of its own element (sync "changed" sends nothing after);
  - every error (no such id, a row that is ok/failed/invalid or already
    resolved, a bad outcome, a remote_id with 'not_delivered', a response_id
    that is not an integer, NULL arguments, a wrong number of arguments)
    is an SQL error saying why, and changes nothing;
  - DIRECTONLY: a view or a trigger cannot call it, even with
    trusted_schema ON (the surface is in tests/sql/surface.sql).
"""
import json
import os
import signal

from helpers import (
    companies_dest, dest_sql, q, responses, run, run_cases, runs, script_of, send_query,
    wait_for)

SHOPS = "SELECT id, name FROM shops ORDER BY id"
RESOLVED = "resolved by hand as "


# -- helpers ----------------------------------------------------------------------------------

def make_shops(ctx, n):
    ctx.rows("CREATE TABLE shops(id INTEGER PRIMARY KEY, name TEXT);" + "".join(
        "INSERT INTO shops VALUES(%d, 'Shop %d');" % (i, i) for i in range(1, n + 1)))


def shops_dest(**extra):
    cfg = {"key": "id", "exclude": ["id"], "concurrency": 1}
    cfg.update(extra)
    return companies_dest(**cfg)


def last_seq(ctx):
    log = ctx.fake.log()
    return log[-1]["seq"] if log else 0


def send(ctx, cfg=None, query=SHOPS):
    """One run of 'co'; returns (its rows, the requests it made, its run row)."""
    before = last_seq(ctx)
    rows, _ = run(ctx, dest_sql("co", cfg or shops_dest()), send_query("co", query))
    return rows, [e for e in ctx.fake.log() if e["seq"] > before], runs(ctx)[-1]


def resolve(ctx, *args):
    """callrail_resolve(args...) in a new shell; returns (value, error text)."""
    call = "SELECT callrail_resolve(%s) AS v;" % ", ".join(
        "NULL" if a is None else str(a) if isinstance(a, (int, float)) else q(a) for a in args)
    rows, rest = run(ctx, "", call, expect_error=True)
    return (rows[0]["v"] if rows else None), rest


def row(ctx, rid):
    (t,) = [t for t in responses(ctx) if t["id"] == rid]
    return t


def delivered(ctx):
    return {d["record_key"]: d for d in ctx.rows(
        "SELECT * FROM callrail_delivered WHERE destination='co'")}


def make_unknown(ctx, n=4, which=3):
    """Sends shops 1..n; the fake commits shop `which` and drops the
    connection, so its row is `unknown`.  Returns (that row, the company
    the fake created for it)."""
    make_shops(ctx, n)
    ctx.fake.config(faults={"drop_after_commit_every": which})
    _, log, r1 = send(ctx)
    ctx.fake.config(faults={"drop_after_commit_every": 0})
    assert len(log) == n and r1["unknown"] == 1, (log, r1)
    (unk,) = [t for t in responses(ctx) if t["state"] == "unknown"]
    assert unk["record_key"] == str(which), unk
    (company,) = [c for c in ctx.fake.state()["objects"]["companies"]
                  if c["name"] == "Shop %d" % which]
    return unk, company


# -- resolving an unknown ---------------------------------------------------------------------

def test_unknown_resolved_delivered_is_never_sent_again(ctx):
    unk, company = make_unknown(ctx)
    v, err = resolve(ctx, unk["id"], "delivered", company["id"])
    assert (v, err) == ("ok", ""), err
    t = row(ctx, unk["id"])
    assert t["state"] == "ok" and t["remote_id"] == company["id"], t
    assert t["error"].startswith(RESOLVED + "delivered at 20"), t["error"]
    assert "(was: " + unk["error"] + ")" in t["error"], t["error"]
    assert t["status"] is None and t["attempts"] == unk["attempts"], t
    d = delivered(ctx)["3"]
    assert d["response_id"] == unk["id"] and d["remote_id"] == company["id"], d
    # the next run skips it; its identity is the record's (no change counted)
    rows, log, r2 = send(ctx)
    assert log == [] and rows == [], log
    assert r2["skipped"] == 4 and r2["changed"] == 0 and r2["requests"] == 0, r2
    _, log, r3 = send(ctx, shops_dest(sync="changed"))
    assert log == [] and r3["skipped"] == 4, log
    # and the mapping knows CallRail's id for key 3
    assert ctx.rows("SELECT remote_id FROM callrail_delivered WHERE destination = 'co'"
                    " AND record_key = '3'") == [{"remote_id": company["id"]}]


def test_unknown_resolved_delivered_without_remote_id(ctx):
    unk, _ = make_unknown(ctx, n=3)
    v, err = resolve(ctx, unk["id"], "delivered")
    assert (v, err) == ("ok", ""), err
    assert delivered(ctx)["3"]["remote_id"] is None
    _, log, r2 = send(ctx)
    assert log == [] and r2["skipped"] == 3


def test_unknown_resolved_not_delivered_is_sent_exactly_once(ctx):
    unk, _ = make_unknown(ctx)
    v, err = resolve(ctx, unk["id"], "not_delivered")
    assert (v, err) == ("failed", ""), err
    t = row(ctx, unk["id"])
    assert t["state"] == "failed" and t["remote_id"] is None, t
    assert t["error"].startswith(RESOLVED + "not delivered at 20"), t["error"]
    assert "3" not in delivered(ctx)
    rows, log, r2 = send(ctx)
    assert [(e["method"], json.loads(e["body"])["name"], e["status"]) for e in log] == [
        ("POST", "Shop 3", 201)], log
    assert [(r["record_key"], r["state"]) for r in rows] == [("3", "ok")]
    assert r2["requests"] == 1 and r2["skipped"] == 3, r2
    assert delivered(ctx)["3"]["remote_id"] == json.loads(log[0]["response"])["id"]
    _, log, _ = send(ctx)
    assert log == []


def test_an_unknown_batch_resolved_delivered_delivers_each_key_with_its_own_identity(ctx):
    ctx.fake.config(accept_arrays=True, faults={"drop_after_commit_every": 2})
    make_shops(ctx, 4)
    cfg = companies_dest(key="id", sync="changed", concurrency=1, batch={"size": 2})
    _, log, _ = send(ctx, cfg)
    ctx.fake.config(faults={"drop_after_commit_every": 0})
    assert [e["status"] for e in log] == [201, None], log
    (unk,) = [t for t in responses(ctx) if t["state"] == "unknown"]
    assert json.loads(unk["record_keys"]) == ["3", "4"]
    assert resolve(ctx, unk["id"], "delivered") == ("ok", "")
    assert sorted(delivered(ctx)) == ["1", "2", "3", "4"]
    _, log, r2 = send(ctx, cfg)
    assert log == [] and r2["skipped"] == 4, log
    ctx.rows("UPDATE shops SET name = 'Shop 4 v2' WHERE id = 4")
    _, log, r3 = send(ctx, cfg)
    assert [json.loads(e["body"]) for e in log] == [[{"id": 4, "name": "Shop 4 v2"}]], log


def test_in_memory_database_resolves_many_rows_in_one_statement(ctx):
    """In memory, the audit is written through the user's own connection,
    inside the user's statement: every row of the statement is resolved,
    and nothing the extension used for it is left on the connection."""
    ctx.fake.config(faults={"drop_after_commit_every": 1})
    query = "SELECT 1 AS id, 'A' AS name UNION ALL SELECT 2, 'B' UNION ALL SELECT 3, 'C'"
    script = (ctx.setup_credential() + dest_sql("co", companies_dest(key="id", concurrency=1)) +
              send_query("co", query) + "\n.print @@resolve\n"
              "SELECT id, callrail_resolve(id, 'delivered', 'COM' || id) FROM callrail_responses"
              " WHERE state = 'unknown' ORDER BY id;\n"
              ".print @@after\n"
              "SELECT count(*) FROM pragma_function_list WHERE name = 'callrail_identity';\n"
              "SELECT record_key, remote_id FROM callrail_delivered ORDER BY 1;\n"
              "SELECT count(*) FROM callrail_send('co', %s);\n" % q(query))
    _, out = ctx.sql(script, db=":memory:")
    assert len(ctx.fake.log()) == 3, ctx.fake.log()
    resolved = out.split("@@resolve\n")[1]
    assert resolved == ("1|ok\n2|ok\n3|ok\n@@after\n0\n"
                        "1|COM1\n2|COM2\n3|COM3\n0\n"), out


# -- resolving the pending rows of a dead run -------------------------------------------------

def test_pending_rows_of_a_killed_run_are_refused_while_alive_then_resolved(ctx):
    make_shops(ctx, 3)
    ctx.fake.config(faults={"delay_ms": 30000})  # held until the shell is killed
    proc = ctx.spawn(script_of(ctx, dest_sql("co", shops_dest(concurrency=2)),
                               send_query("co", "SELECT id, name FROM shops WHERE id <= 2")))
    try:
        wait_for(proc, lambda: len(ctx.fake.log()) == 2 and len(
            [t for t in responses(ctx) if t["state"] == "pending"]) == 2)
        pending = sorted(t["id"] for t in responses(ctx))
        (live,) = runs(ctx)
        v, err = resolve(ctx, pending[0], "delivered")
        assert v is None and (
            "response %d is pending in run %d, which is still alive" % (pending[0], live["run_id"])
            in err), err
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    ctx.fake.config(faults={"delay_ms": 0})
    ids = {json.loads(t["request_body"])["name"]: t["id"] for t in responses(ctx)}
    made = {c["name"]: c["id"] for c in ctx.fake.state()["objects"]["companies"]}
    assert resolve(ctx, ids["Shop 1"], "delivered", made["Shop 1"]) == ("ok", "")
    assert resolve(ctx, ids["Shop 2"], "not_delivered") == ("failed", "")
    t1, t2 = row(ctx, ids["Shop 1"]), row(ctx, ids["Shop 2"])
    assert t1["state"] == "ok" and t1["error"].startswith(RESOLVED + "delivered"), t1
    assert t2["state"] == "failed" and t2["error"].startswith(RESOLVED + "not delivered"), t2
    assert delivered(ctx)["1"]["remote_id"] == made["Shop 1"]
    # the next run sends Shop 2 again and Shop 3 (never sent), not Shop 1
    rows, log, r2 = send(ctx)
    assert sorted(json.loads(e["body"])["name"] for e in log) == ["Shop 2", "Shop 3"], log
    assert r2["skipped"] == 1 and r2["requests"] == 2, r2
    (dead, _) = runs(ctx)
    assert dead["status"] == "interrupted", dead


# -- errors -----------------------------------------------------------------------------------

def test_errors_say_why_and_change_nothing(ctx):
    ctx.fake.config(rules=[{"method": "POST", "when_body_contains": "Shop 2", "status": 422,
                            "body": {"error": "Name is invalid"}}])
    unk, _ = make_unknown(ctx, n=4, which=3)
    ctx.fake.config(rules=[])
    by_state = {}
    for t in responses(ctx):
        by_state.setdefault(t["state"], t["id"])
    ok_id, failed_id, unk_id = by_state["ok"], by_state["failed"], unk["id"]
    # an invalid row: a NULL key
    run(ctx, dest_sql("co", shops_dest()), send_query("co", "SELECT NULL AS id, 'X' AS name"))
    invalid_id = [t for t in responses(ctx) if t["state"] == "invalid"][0]["id"]
    before = (responses(ctx), delivered(ctx))
    msg = "only an unknown request (or a pending one of a run that is no longer alive) can be" \
          " resolved"
    cases = [
        ("999, 'delivered'", "no response with id 999"),
        ("%d, 'delivered'" % ok_id, "response %d is ok: %s" % (ok_id, msg)),
        ("%d, 'not_delivered'" % failed_id, "response %d is failed: %s" % (failed_id, msg)),
        ("%d, 'delivered'" % invalid_id, "response %d is invalid: %s" % (invalid_id, msg)),
        ("%d, 'arrived'" % unk_id, "outcome must be 'delivered' or 'not_delivered', not 'arrived'"),
        ("%d, 'DELIVERED'" % unk_id, "outcome must be 'delivered' or 'not_delivered', not"),
        ("%d, 'not_delivered', 'COM1'" % unk_id, "a remote_id goes only with 'delivered'"),
        ("'%d', 'delivered'" % unk_id, "response_id must be an integer"),
        ("%d.0, 'delivered'" % unk_id, "response_id must be an integer"),
        ("x'01', 'delivered'", "response_id must be an integer"),
        ("NULL, 'delivered'", "response_id must be an integer"),
        ("%d, NULL" % unk_id, "outcome is NULL"),
        ("%d, x'00'" % unk_id, "outcome is a BLOB"),
        ("%d, 'delivered', x'00'" % unk_id, "remote_id is a BLOB"),
        ("%d" % unk_id, "wrong number of arguments to function callrail_resolve()"),
        ("%d, 'delivered', 'a', 'b'" % unk_id,
         "wrong number of arguments to function callrail_resolve()"),
    ]
    outs = run_cases(ctx, "", ["SELECT callrail_resolve(%s);" % a for a, _ in cases],
                     one_each=True)
    for (args, want), out in zip(cases, outs):
        assert want in out and "error" in out.lower(), "callrail_resolve(%s): %r" % (args, out)
    assert (responses(ctx), delivered(ctx)) == before, "a refused call changed something"
    # resolved once, a row cannot be resolved again
    assert resolve(ctx, unk_id, "not_delivered") == ("failed", "")
    v, err = resolve(ctx, unk_id, "delivered")
    assert v is None and "response %d is failed: %s" % (unk_id, msg) in err, err


def test_a_remote_id_of_another_type_is_kept_as_text(ctx):
    unk, _ = make_unknown(ctx, n=3)
    assert resolve(ctx, unk["id"], "delivered", 12345) == ("ok", "")
    assert delivered(ctx)["3"]["remote_id"] == "12345"


# -- DIRECTONLY -------------------------------------------------------------------------------

def test_views_and_triggers_cannot_resolve(ctx):
    unk, _ = make_unknown(ctx, n=3)
    ctx.rows("CREATE VIEW v_resolve AS SELECT callrail_resolve(%d, 'not_delivered') AS r;"
             "CREATE TABLE t(x);"
             "CREATE TRIGGER tr AFTER INSERT ON t BEGIN"
             " SELECT callrail_resolve(%d, 'delivered'); END;" % (unk["id"], unk["id"]))
    outs = run_cases(ctx, "PRAGMA trusted_schema=ON;\n",
                     ["SELECT * FROM v_resolve;", "INSERT INTO t VALUES(1);"], one_each=True)
    for out in outs:
        assert "unsafe use of callrail_resolve" in out, out
    assert row(ctx, unk["id"])["state"] == "unknown"
    assert ctx.rows("SELECT count(*) AS n FROM t") == [{"n": 0}]
    assert "3" not in delivered(ctx)
    # called directly, it works
    assert resolve(ctx, unk["id"], "not_delivered") == ("failed", "")
