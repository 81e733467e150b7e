# callrail_get(credential, path [, params]): any CallRail read as rows.
#
# Properties checked, against the fake's request log and the audit tables:
#   - a list is read in full, every page, with per_page 250 (537 calls: 3
#     GETs), one row per item with its id, page and url; the read is a
#     callrail_runs row of kind `get` (destination = the credential's name)
#     with one callrail_responses row per page (GET, batch = page, no body);
#   - params become the percent-encoded query string (arrays as name[]=);
#   - relative pagination follows next_page until has_next_page is false;
#   - a single object is one row, and `item` is JSON to json_object();
#   - 404 and 401 are SQL errors with CallRail's message, no token anywhere;
#   - a 503 is retried (GET is safe);
#   - a path or a next_page of another origin is refused, nothing sent there;
#   - GETs count against the quota the pacer of a later send sees;
#   - a view or trigger cannot call it (DIRECTONLY), nor can a send's query;
#   - SIGINT mid-paging stops it within 1 s, the run `interrupted`;
#   - the README's worked examples that use it run as written.
import json
import os
import re
import socket
import threading

from helpers import (
    ACC, assert_run, companies_dest, dest_sql, exit_limit, interrupt_when, iso_seconds, q,
    responses, run, runs, script_of, send_query, names_query)
from test_directonly import plain_sqlite

CALLS = "/v3/a/%s/calls.json" % ACC


def get_sql(path, params=None, cols="id, page, url", cred="fake"):
    args = "%s, %s" % (q(cred), q(path))
    if params is not None:
        args += ", " + params
    return "SELECT %s FROM callrail_get(%s);" % (cols, args)


def seed_calls(ctx, n, **fields):
    """n calls in account ACC ("Caller 1".."Caller n")."""
    r = ctx.fake.call("POST", "/__fake/seed", {"resource": "calls", "count": n, "object": fields})
    assert r == {"count": n}, r


def fake_ids(ctx, resource):
    return {o["id"] for o in ctx.fake.state()["objects"].get(resource, [])}


def query_of(e):
    return dict(p.split("=", 1) for p in e["query"].split("&")) if e["query"] else {}


class Listener:
    """A second loopback listener that records every connection made to it:
    an origin the key must never reach."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.origin = "http://127.0.0.1:%d" % self.port
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self):
        self.sock.close()


# -- tests ----------------------------------------------------------------------------------

def test_537_calls_are_read_in_full_with_3_gets_of_250_and_audited_as_a_get_run(ctx):
    seed_calls(ctx, 537)
    rows, _ = run(ctx, "", get_sql(CALLS))
    assert len(rows) == 537 and {r["id"] for r in rows} == fake_ids(ctx, "calls"), len(rows)
    assert [r["page"] for r in rows] == [1] * 250 + [2] * 250 + [3] * 37
    log = ctx.fake.log()
    assert [(e["method"], e["path"], e["status"]) for e in log] == [("GET", CALLS, 200)] * 3, log
    assert [query_of(e) for e in log] == [{"per_page": "250"}, {"per_page": "250", "page": "2"},
                                          {"per_page": "250", "page": "3"}]
    urls = [ctx.base + e["path"] + "?" + e["query"] for e in log]
    assert [rows[0]["url"], rows[250]["url"], rows[500]["url"]] == urls
    (r,) = runs(ctx)
    assert_run(r, kind="get", destination="fake", status="done", records=537, requests=3, ok=3,
               failed=0)
    table = responses(ctx)
    assert [(t["method"], t["url"], t["batch"], t["state"], t["status"], t["response_body"],
             t["quota_bucket"], t["run_id"]) for t in table] == [
        ("GET", u, i + 1, "ok", 200, None, ctx.base + "/v3/a/" + ACC, r["run_id"])
        for i, u in enumerate(urls)]


def test_params_become_the_percent_encoded_query_string(ctx):
    params = ("json_object('start_date', '2026-12-01', 'fields', 'id,customer_phone_number',"
              " 'company_id', 'COM 1&2', 'answered', json('true'), 'tags', json_array('a b', 'c'),"
              " 'per_page', 10, 'page', 2)")
    rows, _ = run(ctx, "", get_sql(CALLS, params))
    assert rows == []
    (e,) = ctx.fake.log()
    assert e["query"] == ("start_date=2026-12-01&fields=id%2Ccustomer_phone_number"
                          "&company_id=COM%201%262&answered=true&tags[]=a%20b&tags[]=c"
                          "&per_page=10&page=2"), e["query"]


def test_a_filter_narrows_the_list(ctx):
    seed_calls(ctx, 30, company_id="COM1", start_time="2026-12-01T10:00:00.000-05:00")
    seed_calls(ctx, 20, company_id="COM2", start_time="2026-11-01T10:00:00.000-05:00")
    rows, _ = run(ctx, "", get_sql(CALLS, "json_object('company_id', 'COM2')", "count(*) AS n"))
    assert rows == [{"n": 20}]
    rows, _ = run(ctx, "", get_sql(CALLS, "json_object('start_date', '2026-12-01')",
                                   "count(*) AS n"))
    assert rows == [{"n": 30}]


def test_relative_pagination_follows_next_page_until_has_next_page_is_false(ctx):
    seed_calls(ctx, 7)
    rows, _ = run(ctx, "", get_sql(CALLS, "json_object('relative_pagination', 'true',"
                                          " 'per_page', 3)"))
    assert len({r["id"] for r in rows}) == 7 and len(rows) == 7
    assert [r["page"] for r in rows] == [1, 1, 1, 2, 2, 2, 3]
    log = ctx.fake.log()
    assert [query_of(e).get("offset") for e in log] == [None, "1", "2"], log
    assert all(query_of(e)["relative_pagination"] == "true" for e in log)
    assert rows[3]["url"] == json.loads(log[0]["response"])["next_page"]


def test_a_single_object_is_one_row_and_item_is_json(ctx):
    seed = ctx.fake.call("POST", "/__fake/seed", {"resource": "companies",
                                                  "object": {"name": "Shop 1"}})
    path = "/v3/a/%s/companies/%s.json" % (ACC, seed["id"])
    rows, _ = run(ctx, "", get_sql(path, cols="id, page, json(item) AS item,"
                                              " json_type(json_object('x', item), '$.x') AS t"))
    assert len(rows) == 1, rows
    assert (rows[0]["id"], rows[0]["page"], rows[0]["t"]) == (seed["id"], 1, "object")
    assert json.loads(rows[0]["item"]) == seed
    assert len(ctx.fake.log()) == 1


def test_a_bare_array_is_one_row_per_element_each_item_json(ctx):
    ctx.fake.config(rules=[{"method": "GET", "path_regex": "tags", "status": 200,
                            "body": ["a", 1, None, {"x": [2]}]}])
    rows, _ = run(ctx, "", get_sql("/v3/a/%s/tags.json" % ACC,
                                   cols="item, json_object('v', item) AS o"))
    assert [r["item"] for r in rows] == ['"a"', "1", "null", '{"x":[2]}'], rows
    assert [json.loads(r["o"])["v"] for r in rows] == ["a", 1, None, {"x": [2]}], rows


def test_404_and_401_are_sql_errors_with_callrails_message_and_no_token(ctx):
    token = "wrong-token-S3CRET"
    rows, rest = run(ctx, "", get_sql("/v3/a/%s/nothing.json" % ACC), expect_error=True)
    assert rows == [] and "callrail_get" in rest and "HTTP 404: Not found" in rest, rest
    setup = ctx.setup_credential("bad", token)
    rows, rest2 = run(ctx, setup, get_sql(CALLS, cred="bad"), expect_error=True)
    assert rows == [] and "HTTP 401: Access denied" in rest2, rest2
    log = ctx.fake.log()
    assert [e["status"] for e in log] == [404, 401], log
    dump = json.dumps(runs(ctx) + responses(ctx))
    for text in (rest, rest2, dump):
        assert token not in text and "test-token" not in text
    assert [r["status"] for r in runs(ctx)] == ["error", "error"]
    assert [(t["state"], t["status"]) for t in responses(ctx)] == [("failed", 404),
                                                                    ("failed", 401)]
    assert "Access denied" in responses(ctx)[1]["error"]


def test_a_503_is_retried(ctx):
    seed_calls(ctx, 3)
    ctx.fake.config(rules=[{"method": "GET", "path_regex": "calls", "status": 503, "times": 1}])
    rows, _ = run(ctx, "", get_sql(CALLS))
    assert len(rows) == 3
    assert [e["status"] for e in ctx.fake.log()] == [503, 200]
    (t,) = responses(ctx)
    assert (t["state"], t["attempts"]) == ("ok", 2), t


def test_a_path_or_next_page_of_another_origin_is_refused_and_nothing_is_sent_there(ctx):
    other = Listener()
    try:
        rows, rest = run(ctx, "", get_sql(other.origin + CALLS), expect_error=True)
        assert rows == [] and "differs from the credential's api_base" in rest, rest
        assert ctx.fake.log() == [] and runs(ctx) == []
        seed_calls(ctx, 5)
        ctx.fake.config(next_page_origin=other.origin)
        rows, rest = run(ctx, "", get_sql(CALLS, "json_object('relative_pagination', 'true',"
                                                 " 'per_page', 2)"), expect_error=True)
        assert "next_page not followed" in rest and other.origin in rest, rest
        assert len(ctx.fake.log()) == 1
        assert [r["status"] for r in runs(ctx)] == ["error"]
    finally:
        other.close()
    assert other.connections == 0, "%d connections to the other origin" % other.connections


def test_gets_count_against_the_quota_a_later_sends_pacer_sees(ctx):
    seed_calls(ctx, 537)
    send = send_query("co", names_query(10))
    setup = dest_sql("co", companies_dest(rate_limit={"per_hour": 5}, on_quota="stop",
                                          concurrency=1))
    run(ctx, setup, get_sql(CALLS, cols="count(*)"))
    rows, _ = run(ctx, "", send)
    posts = [e for e in ctx.fake.log() if e["method"] == "POST"]
    assert len(posts) == 2, "5 per hour minus 3 GETs: %d POSTs" % len(posts)
    assert runs(ctx)[1]["status"] == "quota_exhausted"


def test_a_view_or_trigger_cannot_call_it_and_nothing_is_sent(ctx):
    ctx.sql(ctx.setup_credential())
    plain_sqlite(ctx, "CREATE VIEW v AS SELECT * FROM callrail_get('fake', '%s');\n"
                      "CREATE TABLE t(x);\n"
                      "CREATE TRIGGER tr AFTER INSERT ON t BEGIN"
                      " SELECT count(*) FROM callrail_get('fake', '%s'); END;\n" % (CALLS, CALLS))
    _, out = ctx.sql("PRAGMA trusted_schema=ON;\n" + ctx.setup_credential()
                     + "SELECT * FROM v;\nINSERT INTO t VALUES(1);\n", check=False)
    assert out.count('unsafe use of virtual table "callrail_get"') == 2, out
    assert ctx.fake.log() == [] and runs(ctx) == []


def test_it_cannot_run_inside_a_sends_query(ctx):
    setup = dest_sql("co", companies_dest())
    query = "SELECT json_extract(item, '$.name') AS name FROM callrail_get('fake', '%s')" % CALLS
    rows, rest = run(ctx, setup, send_query("co", query), expect_error=True)
    assert "cannot run inside the query of callrail_send" in rest, rest
    assert ctx.fake.log() == []


def test_sigint_mid_paging_stops_within_a_second(ctx):
    seed_calls(ctx, 537)
    ctx.fake.config(faults={"delay_ms": 300})
    proc = ctx.spawn(script_of(ctx, "", get_sql(CALLS, "json_object('per_page', 25)",
                                                "count(*)")))
    latency, out, t0 = interrupt_when(ctx, proc, lambda: len(ctx.fake.log()) >= 2)
    assert "interrupt" in out, out
    assert latency <= exit_limit(ctx), "the shell exited %.2f s after SIGINT" % latency
    (r,) = runs(ctx)
    assert r["status"] == "interrupted", r
    assert iso_seconds(r["finished_at"]) - t0 <= 1.0
    table = responses(ctx)
    assert 2 <= len(table) < 22 and all(t["state"] in ("ok", "failed") for t in table), table


# -- the README's worked examples, run as written against the fake ------------------------

def readme_sql(start):
    """The README's ```sql block containing start, for account ACC."""
    text = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    (block,) = [b for b in re.findall(r"```sql\n(.*?)```", text, re.S) if start in b]
    return block.replace("ACC...", ACC)


README_SETUP = (
    "SELECT callrail_credential('main', 'test-token', '{{BASE}}');\n"
    "CREATE TABLE IF NOT EXISTS qualified_leads(phone TEXT);\n"
    "CREATE TABLE IF NOT EXISTS shops(shop_id INTEGER, name TEXT, time_zone TEXT);\n")


def has_resolve(ctx):
    _, out = ctx.sql("SELECT count(*) FROM pragma_function_list WHERE name = 'callrail_resolve';")
    return out.split()[-1] == "1"


def test_readme_example_tag_yesterdays_qualified_calls(ctx):
    yesterday = ctx.rows("SELECT date('now', '-1 day') AS d")[0]["d"]
    seed_calls(ctx, 5, start_time=yesterday + "T10:00:00.000-05:00")  # +1470555000{1..5}
    earlier = ctx.rows("SELECT date('now', '-3 day') AS d")[0]["d"]
    seed_calls(ctx, 3, start_time=earlier + "T10:00:00.000-05:00")     # not tagged
    dest = readme_sql("SELECT callrail_destination('tag_calls'").split("SELECT * FROM")[0]
    setup = README_SETUP + dest + ("INSERT INTO qualified_leads VALUES ('+14705550002'),"
                                   " ('+14705550004'), ('+14705550009');\n")
    rows, _ = run(ctx, setup, readme_sql("CREATE TEMP TABLE yesterday"), cred=False)
    assert rows == [{"state": "ok", "count(*)": 2}], rows
    puts = [e for e in ctx.fake.log() if e["method"] == "PUT"]
    tagged = {o["id"] for o in ctx.fake.state()["objects"]["calls"] if o["tags"] == ["Qualified"]}
    assert {e["path"].rsplit("/", 1)[1][:-5] for e in puts} == tagged and len(tagged) == 2


def test_readme_examples_company_ids_by_name_and_resolving_unknown_creations(ctx):
    setup = README_SETUP + readme_sql("SELECT callrail_destination('create_companies'") + (
        "SELECT callrail_activate('create_companies');\n"
        "INSERT INTO shops VALUES (1, 'Shop 1', 'America/New_York'),"
        " (2, 'Shop 2', 'America/New_York'), (3, 'Shop 3', 'America/Chicago');\n")
    # shops 1 and 2 are created, but their answers are lost: unknown
    ctx.fake.config(faults={"drop_after_commit_every": 1})
    run(ctx, setup, "SELECT count(*) FROM callrail_send('create_companies',"
                    " 'SELECT * FROM shops WHERE shop_id < 3');", cred=False)
    ctx.fake.config(faults={"drop_after_commit_every": 0})
    ids = {o["name"]: o["id"] for o in ctx.fake.state()["objects"]["companies"]}
    rows, _ = run(ctx, README_SETUP, readme_sql("FROM shops s LEFT JOIN callrail_companies"),
                  cred=False)
    assert rows == [{"shop_id": 1, "name": "Shop 1", "company_id": ids["Shop 1"]},
                    {"shop_id": 2, "name": "Shop 2", "company_id": ids["Shop 2"]},
                    {"shop_id": 3, "name": "Shop 3", "company_id": None}], rows
    # a third creation that never arrived: CallRail has no such company
    ctx.sql("UPDATE callrail_responses SET state = 'failed' WHERE id = 1;"
            "INSERT INTO callrail_responses(run_id, destination, records, method, url,"
            " request_body, state, attempts) SELECT run_id, destination, 1, method, url,"
            " '{\"name\":\"Shop 3\",\"time_zone\":\"America/Chicago\"}', 'unknown', 1"
            " FROM callrail_responses WHERE id = 2;")
    example = readme_sql("callrail_resolve(r.id, 'delivered'")
    if not has_resolve(ctx):  # the function lands separately; the rest is checked meanwhile
        example = example.replace("callrail_resolve(r.id, 'delivered', c.id)", "'delivered'")
        example = example.replace("callrail_resolve(r.id, 'not_delivered')", "'not_delivered'")
    rows, _ = run(ctx, README_SETUP, example, cred=False)
    assert [(r["response_id"], r.get("company_id")) for r in rows] == [
        (2, ids["Shop 2"]), (4, None)], rows
    if has_resolve(ctx):
        states = ctx.rows("SELECT id, state FROM callrail_responses WHERE id IN (2, 4)")
        assert states == [{"id": 2, "state": "ok"}, {"id": 4, "state": "failed"}], states


def test_a_spent_hourly_quota_holds_the_read_back_and_sigint_stops_it_within_a_second(ctx):
    """1,000 requests of the account in the last hour (CallRail's hourly
    limit) recorded by other runs: the read waits for quota, sends nothing,
    and Ctrl-C ends the wait within a second."""
    bucket = ctx.base + "/v3/a/" + ACC
    ctx.sql("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)"
            " INSERT INTO callrail_responses(run_id, destination, method, url, state, attempts,"
            " sent_ms, quota_bucket, quota_class)"
            " SELECT 0, 'other', 'POST', '%s/companies.json', 'ok', 1,"
            " CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) - 60000, '%s',"
            " 'general' FROM n;" % (bucket, bucket))
    proc = ctx.spawn(script_of(ctx, "", get_sql(CALLS, cols="count(*)")))
    latency, out, _ = interrupt_when(ctx, proc, lambda: len(runs(ctx)) == 1)
    assert "interrupt" in out, out
    assert latency <= exit_limit(ctx), "the shell exited %.2f s after SIGINT" % latency
    assert ctx.fake.log() == []
    (r,) = runs(ctx)
    assert (r["kind"], r["status"], r["requests"]) == ("get", "interrupted", 0), r
    assert [t["destination"] for t in responses(ctx)] == ["other"] * 1000
