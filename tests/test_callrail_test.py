# callrail_test(destination, record_json) (README "Functions").
#
# Properties checked, against the fake's request log and the audit tables:
#   - it sends one request built from the record and returns a JSON object
#     {status, state, body, error} whose body is the parsed JSON response;
#   - it works on an inactive destination (callrail_send would refuse it),
#     with a record given as TEXT or as json_object(), and for a DELETE
#     answered 204 with no body;
#   - it is audited: one callrail_runs row of kind 'test' and one
#     callrail_responses row holding the same facts as the fake saw;
#   - an invalid record (missing URL placeholder) gives state `invalid` and
#     sends nothing;
#   - a record_json that is not a JSON object is an SQL error, nothing sent;
#   - a 4xx answer gives state `failed` with CallRail's error text; a body
#     that is not JSON comes back as text.
import json

from helpers import ACC, assert_run, companies_dest, dest_sql, q, responses, run, runs


# -- tests ----------------------------------------------------------------------------------

def call_test(ctx, setup, record_sql, expect_error=False):
    rows, rest = run(ctx, setup, "SELECT callrail_test('co', %s) AS r;" % record_sql,
                     expect_error=expect_error)
    if expect_error:
        return rows, rest
    (row,) = rows
    return json.loads(row["r"]), rest


def test_test_sends_one_request_and_returns_status_state_body_error_on_an_inactive_destination(ctx):
    setup = dest_sql("co", companies_dest(), active=False)
    res, _ = call_test(ctx, setup, q('{"name": "Widget Shop", "time_zone": "America/Denver"}'))
    log = ctx.fake.log()
    assert len(log) == 1 and log[0]["method"] == "POST"
    assert json.loads(log[0]["body"]) == {"name": "Widget Shop", "time_zone": "America/Denver"}
    assert sorted(res) == ["body", "error", "state", "status"], res
    assert (res["status"], res["state"], res["error"]) == (201, "ok", None), res
    assert isinstance(res["body"], dict), "body is not parsed JSON: %r" % (res["body"],)
    assert res["body"] == json.loads(log[0]["response"])
    assert res["body"]["name"] == "Widget Shop" and res["body"]["id"].startswith("COM")
    (company,) = ctx.fake.state()["objects"]["companies"]
    assert company["id"] == res["body"]["id"]
    # audited as a run of kind 'test' with one response row
    (r,) = runs(ctx)
    assert_run(r, destination="co", kind="test", records=1, requests=1, ok=1, failed=0,
               invalid=0, status="done")
    (t,) = responses(ctx)
    assert t["run_id"] == r["run_id"] and t["state"] == "ok" and t["status"] == 201
    assert json.loads(t["request_body"]) == json.loads(log[0]["body"])
    assert t["response_body"] == log[0]["response"]
    assert t["url"] == ctx.base + log[0]["path"] and t["method"] == "POST"
    assert t["attempts"] == 1
    # testing did not activate it
    assert ctx.rows("SELECT active FROM callrail_destinations WHERE name='co'") == [{"active": 0}]


def test_test_accepts_json_object_values_and_a_204_answer(ctx):
    (c,) = [ctx.fake.call("POST", "/__fake/seed", {"account": ACC, "resource": "companies",
                                                    "object": {"name": "Old"}})]
    cfg = {"method": "DELETE", "url": "/v3/a/{account_id}/companies/{company_id}.json",
           "params": {"account_id": ACC}}
    res, _ = call_test(ctx, dest_sql("co", cfg, active=False),
                       "json_object('company_id', %s)" % q(c["id"]))
    log = ctx.fake.log()
    assert [(e["method"], e["path"], e["status"]) for e in log] == [
        ("DELETE", "/v3/a/%s/companies/%s.json" % (ACC, c["id"]), 204)]
    assert (res["status"], res["state"], res["error"]) == (204, "ok", None), res
    assert res["body"] in (None, ""), res
    assert_run(runs(ctx)[0], kind="test", requests=1, ok=1)


def test_test_of_an_invalid_record_is_state_invalid_and_sends_nothing(ctx):
    cfg = {"url": "/v3/a/{account_id}/companies.json"}  # no params: the record must say
    res, _ = call_test(ctx, dest_sql("co", cfg, active=False), q('{"name": "A"}'))
    assert ctx.fake.log() == []
    assert res["state"] == "invalid" and res["status"] is None, res
    assert "account_id" in res["error"], res
    (r,) = runs(ctx)
    assert_run(r, kind="test", records=1, requests=0, ok=0, invalid=1)
    (t,) = responses(ctx)
    assert (t["state"], t["status"], t["attempts"]) == ("invalid", None, 0), t
    assert t["error"] == res["error"]


def test_test_with_record_json_that_is_not_an_object_is_an_sql_error(ctx):
    setup = dest_sql("co", companies_dest(), active=False)
    for bad in ("'[1, 2]'", "'\"name\"'", "'not json'", "42", "NULL", "json_array('a')"):
        rows, rest = call_test(ctx, setup, bad, expect_error=True)
        assert rows == [], (bad, rows)
        assert "error" in rest.lower() and "callrail_test" in rest, (bad, rest)
    assert ctx.fake.log() == []
    assert responses(ctx) == []
    assert [r for r in runs(ctx) if r["status"] == "running"] == []


def test_test_answered_4xx_is_failed_with_callrail_error_text(ctx):
    setup = dest_sql("co", companies_dest(), active=False)
    res, _ = call_test(ctx, setup, q('{"time_zone": "America/Denver"}'))
    log = ctx.fake.log()
    assert len(log) == 1 and log[0]["status"] == 400
    assert res == {"status": 400, "state": "failed", "body": {"error": "Name can't be blank"},
                   "error": "HTTP 400: Name can't be blank"}, res
    assert_run(runs(ctx)[0], kind="test", records=1, requests=1, ok=0, failed=1)
    (t,) = responses(ctx)
    assert (t["state"], t["status"], t["error"]) == ("failed", 400, "HTTP 400: Name can't be blank")


def test_test_of_a_non_json_answer_returns_the_body_as_text(ctx):
    ctx.fake.config(faults={"fail_every": 1, "fail_status": 500})
    setup = dest_sql("co", companies_dest(), active=False)
    res, _ = call_test(ctx, setup, q('{"name": "A"}'))
    log = ctx.fake.log()
    assert len(log) == 1 and log[0]["status"] == 500  # a POST: not retried
    assert res["status"] == 500 and res["state"] == "failed", res
    assert res["body"] == "<html>Internal Server Error</html>" == log[0]["response"], res
    assert res["error"].startswith("HTTP 500") and "Internal Server Error" in res["error"], res
