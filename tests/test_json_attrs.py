"""Config key `json`: the named attributes' TEXT values are parsed as JSON and
sent nested, whatever path the value took through the query.  SQLite drops
the JSON subtype of a value that passes through a sorter (ORDER BY without an
index), a UNION or a materialised CTE, so without `json` the value
json_array('VIP') reaches CallRail as the string "[\"VIP\"]"; with it, as the
array.  A value that is not JSON makes the record `invalid`, naming the record
and the attribute; NULL stays null; other attributes are untouched.  A JSONB
BLOB (SQLite 3.45 and later) is JSON, not a BLOB error.

Most checks read callrail_preview (the exact body a send would carry, no
traffic); one send checks that the fake server receives the array."""
import json
import os
import subprocess

from helpers import ACC, companies_dest, dest_sql

# The three paths that lose the subtype, each giving records a (score 2) and
# b (score 1) with tags = json_array('VIP').
LOSSY = {
    "sorter": "SELECT name, json_array('VIP') AS tags FROM t ORDER BY score",
    "union": ("SELECT name, json_array('VIP') AS tags FROM t WHERE name = 'a'"
              " UNION SELECT name, json_array('VIP') FROM t WHERE name = 'b'"),
    "cte": ("WITH c AS MATERIALIZED (SELECT name, json_array('VIP') AS tags FROM t)"
            " SELECT * FROM c ORDER BY name"),
}
TABLE = "CREATE TABLE t(name TEXT, score INTEGER); INSERT INTO t VALUES ('a', 2), ('b', 1);\n"


def setup(ctx):
    """Credential `fake`; destination `plain` (no `json`) and `j` (json: tags, extra)."""
    return (TABLE + ctx.setup_credential() + dest_sql("plain", companies_dest())
            + dest_sql("j", companies_dest(json=["tags", "extra"])))


def preview(ctx, dest, query):
    """[(body as parsed JSON or None, error)] of callrail_preview(dest, query),
    on a database made by setup()."""
    if not os.path.exists(ctx.db):
        ctx.sql(setup(ctx))
    out = ctx.sql(".mode json\nSELECT body, error FROM callrail_preview(%s, %s);\n"
                  % (json.dumps(dest).replace('"', "'"), "'" + query.replace("'", "''") + "'"))[1]
    rows = json.loads(out[out.index("["):])
    return [(json.loads(r["body"]) if r["body"] else None, r["error"]) for r in rows]


def test_json_attrs_lossy_paths_nested_only_with_json(ctx):
    """ORDER BY, UNION and a materialised CTE: without `json` the tags arrive as
    a string (SQLite lost the subtype), with `json` as the array."""
    for path, query in LOSSY.items():
        plain = preview(ctx, "plain", query)
        assert [b["tags"] for b, _ in plain] == ['["VIP"]'] * 2, (path, plain)
        nested = preview(ctx, "j", query)
        assert [(b["tags"], e) for b, e in nested] == [(["VIP"], None)] * 2, (path, nested)


def test_json_attrs_text_values_parsed_null_kept_others_untouched(ctx):
    """Objects, numbers and strings written as JSON text are parsed; NULL stays
    null; an attribute not listed keeps its text; a big integer stays exact."""
    rows = preview(ctx, "j", "SELECT 'x' AS name, '{\"a\": [1, 2]}' AS tags,"
                             " '12345678901234567890' AS extra, '[1]' AS other"
                             " UNION ALL SELECT 'y', NULL, '\"s\"', NULL")
    assert rows == [({"name": "x", "tags": {"a": [1, 2]}, "extra": 12345678901234567890,
                      "other": "[1]"}, None),
                    ({"name": "y", "tags": None, "extra": "s", "other": None}, None)], rows


def test_json_attrs_invalid_json_makes_record_invalid(ctx):
    """A listed attribute that is not valid JSON makes that record invalid,
    naming the record and the attribute; the other records are unaffected."""
    rows = preview(ctx, "j", "SELECT 'a' AS name, '[\"VIP\",' AS tags"
                             " UNION ALL SELECT 'b', '[\"ok\"]'"
                             " UNION ALL SELECT 'c', 'VIP'")
    assert rows[1] == ({"name": "b", "tags": ["ok"]}, None), rows
    for i, (body, error) in ((0, rows[0]), (2, rows[2])):
        assert body is None and error is not None, rows
        assert error.startswith("record %d: " % (i + 1)), error
        assert 'attribute "tags" (listed in "json") is not valid JSON' in error, error


def test_json_attrs_send_arrives_nested(ctx):
    """The request the server receives carries the array (ORDER BY query)."""
    ctx.sql(setup(ctx) + "SELECT state FROM callrail_send('j', %s);\n"
            % ("'" + LOSSY["sorter"].replace("'", "''") + "'"))
    posts = [e for e in ctx.fake.log() if e["method"] == "POST"]
    assert [json.loads(e["body"])["tags"] for e in posts] == [["VIP"]] * 2, posts
    assert all(e["path"] == "/v3/a/%s/companies.json" % ACC for e in posts), posts


JSONB_PROBE = "SELECT json(jsonb('[1]'));\n"


def shells_with_jsonb(ctx):
    """The sqlite3 shells at hand that have jsonb(): the one the suite runs
    (tests/run.py) and CALLRAIL_SQLITE3, a newer shell if the build has one."""
    found = []
    for shell in [None, os.environ.get("CALLRAIL_SQLITE3")]:
        if shell is None and found:
            continue
        argv = ctx.mode.prefix + [shell or "sqlite3", "-batch", ":memory:"]
        try:
            p = subprocess.run(argv, input=JSONB_PROBE, capture_output=True, text=True,
                               timeout=60, env=ctx.mode.env)
        except OSError:
            continue
        if p.returncode == 0 and p.stdout.strip() == "[1]":
            found.append(shell)
    return found


def test_json_attrs_jsonb_blob_is_json(ctx):
    """A jsonb() BLOB is sent as the JSON it holds (listed in `json` or not),
    and a JSONB object alone in a one-column query is the record; any other
    BLOB is still refused.  Needs SQLite 3.45 or later: skipped, saying why,
    when neither the suite's shell nor CALLRAIL_SQLITE3 has jsonb()."""
    shells = shells_with_jsonb(ctx)
    if not shells:
        print("     skip: jsonb() needs SQLite >= 3.45; the suite's sqlite3 is older and "
              "CALLRAIL_SQLITE3 names no newer shell")
        return
    script = (setup(ctx) + ".mode json\n"
              "SELECT body, error FROM callrail_preview('plain',"
              " 'SELECT name, jsonb(''[\"VIP\"]'') AS tags FROM t ORDER BY score');\n"
              "SELECT body, error FROM callrail_preview('plain',"
              " 'SELECT jsonb_object(''name'', name) AS r FROM t ORDER BY score');\n"
              "SELECT body, error FROM callrail_preview('plain', 'SELECT x''00ff'' AS b');\n")
    for shell in shells:
        argv = ctx.mode.prefix + [shell or "sqlite3", "-batch", ctx.db]
        p = subprocess.run(argv, input=".load %s\n%s" % (ctx.ext, script), capture_output=True,
                           text=True, timeout=120, env=ctx.mode.env, cwd=ctx.dir)
        assert ctx.mode.sanitizer_report(p.stdout + p.stderr) is None, p.stdout + p.stderr
        arrays = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("[")]
        flat = [r for a in arrays for r in a]
        assert [json.loads(r["body"]) for r in flat[:4]] == [
            {"name": "b", "tags": ["VIP"]}, {"name": "a", "tags": ["VIP"]},
            {"name": "b"}, {"name": "a"}], flat
        assert flat[4]["body"] is None and "is a BLOB" in flat[4]["error"], flat
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(ctx.db + suffix):
                os.remove(ctx.db + suffix)
