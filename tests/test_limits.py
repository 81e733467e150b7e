"""Bounded resources (README "Guarantees"): a
response body over the destination's max_response_bytes is cut off: the
body is not kept, the error says so, and the status stands (a 201 is still
`ok`, so the record is not sent twice); a record whose URL would exceed
8 KiB is `invalid` and not sent."""
import json

from helpers import q


def _setup(ctx, extra):
    dest = {"credential": "fake", "url": "/v3/a/ACC0000000000000000000000000000001/{p}.json",
            "params": {"p": "companies"}, "retry": {"max_attempts": 1}}
    dest.update(extra)
    return (ctx.setup_credential() + "SELECT callrail_destination('d', %s);\n" % q(json.dumps(dest))
            + "SELECT callrail_activate('d');\n")


def test_response_larger_than_max_response_bytes_is_cut_off_and_its_status_stands(ctx):
    ctx.fake.config(rules=[{"method": "POST", "path_regex": "companies", "status": 201,
                            "body": "x" * 5000}])
    _, out = ctx.sql(_setup(ctx, {"max_response_bytes": 1024}) +
                     "SELECT state, status, error, response_body IS NULL"
                     " FROM callrail_send('d', 'SELECT ''a'' AS name');\n")
    last = out.splitlines()[-1]
    assert last == "ok|201|response body larger than 1024 bytes; cut off|1", out
    assert len(ctx.fake.log()) == 1


def test_url_longer_than_8_kib_is_invalid_and_not_sent(ctx):
    _, out = ctx.sql(_setup(ctx, {}) +
                     "SELECT state, error FROM callrail_send('d',"
                     " 'SELECT ''a'' AS name, printf(''%.9000c'', ''x'') AS p');\n")
    last = out.splitlines()[-1]
    assert last.startswith("invalid|record 1: its URL is") and "more than the limit of 8192" in last, out
    assert ctx.fake.log() == []
