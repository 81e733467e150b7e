"""A response whose headers libcurl refuses to read says so: a single
header line of 2 MB ("response header too large", libcurl's per-line limit
of 102400 bytes), or 2 MB of headers in 40 lines ("response headers too
large", the total and the limit), never "Out of memory" or "connection
dropped".  The request reached the server, so a POST is `unknown`."""
import json

from helpers import run_cases

URL = "/v3/a/ACC0000000000000000000000000000001/companies.json"
DEST = ("SELECT callrail_destination('d', json_object('credential', 'fake', 'url', '%s'));\n"
        % URL)


def big_header_result(ctx, headers):
    ctx.fake.config(rules=[{"method": "POST", "status": 201, "body": {"id": 1},
                            "headers": headers}])
    outs = run_cases(ctx, ctx.setup_credential() + DEST,
                     ["SELECT callrail_test('d', '{\"name\":\"Big Header Co\"}');"], one_each=True)
    assert len(ctx.fake.log()) == 1, ctx.fake.log()
    return json.loads(outs[0])


def test_one_2mb_header_line_is_reported_as_a_too_large_header_with_the_limit(ctx):
    res = big_header_result(ctx, {"X-Big": "a" * 2000000})
    assert res["state"] == "unknown", res
    assert res["error"] == ("response header too large: after status 201, a header line was "
                            "longer than libcurl's limit of 102400 bytes; the response was not "
                            "read"), res


def test_2mb_of_header_lines_is_reported_as_too_large_headers_with_the_limit(ctx):
    res = big_header_result(ctx, {"X-Big%d" % i: "a" * 50000 for i in range(40)})
    assert res["state"] == "unknown", res
    assert res["error"].startswith("response headers too large: "), res
    assert "more than libcurl's limit of " in res["error"], res
    assert "Out of memory" not in res["error"] and "dropped" not in res["error"], res
