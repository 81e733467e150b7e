"""Bad input to every function and table-valued function is an SQL error or an
`invalid` record naming what is wrong, never a crash (exit code 0 or 1, no
sanitizer report) and never a request the user did not ask for (the fake
server's log): NULL/unknown names, inactive destinations, queries that are not
one read-only SELECT (nothing runs: tables unchanged), record_json that is not
an object, BLOB/infinite/NaN values, 1 MB values, many columns, and hostile
URL placeholder values, which are percent-encoded identically in the preview
and in the request the server receives."""
import json
import os
import sqlite3
import urllib.parse

import helpers
from helpers import q

ACC1 = "ACC0000000000000000000000000000001"
URL = "/v3/a/%s/companies.json" % ACC1
PUT_URL = "/v3/a/%s/companies/{id}.json" % ACC1
MB = 1000000


def dest_sql(name, cfg, active=True):
    sql = "SELECT callrail_destination(%s, %s);\n" % (q(name), q(json.dumps(cfg)))
    if active:
        sql += "SELECT callrail_activate(%s);\n" % q(name)
    return sql


def setup(ctx, active=True):
    """Credential `fake`, destinations d (POST companies) and p (PUT
    companies/{id}.json, one request at a time, no retries)."""
    return (ctx.setup_credential()
            + dest_sql("d", {"credential": "fake", "url": URL}, active)
            + dest_sql("p", {"credential": "fake", "method": "PUT", "url": PUT_URL,
                             "concurrency": 1, "retry": {"max_attempts": 1}}, active))


def make_table(ctx):
    ctx.sql("CREATE TABLE t(name TEXT);\n"
            "INSERT INTO t VALUES('Acme'), ('Globex');\n")


def run_cases(ctx, prelude, stmts, env=None):
    """helpers.run_cases, with exactly one output per statement."""
    return helpers.run_cases(ctx, prelude, stmts, env=env, one_each=True)


def assert_errors(outs, stmts, expected):
    """Each output is one SQL error containing every expected substring."""
    for stmt, out, subs in zip(stmts, outs, expected):
        assert out.startswith(("Runtime error", "Parse error")), "no error for %s: %r" % (stmt, out)
        for sub in subs:
            assert sub in out, "error for %s lacks %r: %r" % (stmt, sub, out)


def assert_nothing_sent(ctx):
    log = ctx.fake.log()
    assert log == [], "requests were sent: %r" % [(e["method"], e["path"]) for e in log]
    rows = ctx.rows("SELECT count(*) AS n FROM callrail_responses")
    assert rows == [{"n": 0}], rows


def pct(value):
    """RFC 3986 percent-encoding: only unreserved characters stay."""
    return urllib.parse.quote(value, safe="")


# ---------------------------------------------------------------------------
# Names

def test_null_or_unknown_names_are_errors_naming_them_and_send_nothing(ctx):
    stmts = [
        ("SELECT callrail_test(NULL, '{}');", ["destination", "NULL"]),
        ("SELECT callrail_test('nosuch', '{}');", ['"nosuch"']),
        ("SELECT * FROM callrail_preview(NULL, 'SELECT 1 AS name');", ["destination", "NULL"]),
        ("SELECT * FROM callrail_preview('nosuch', 'SELECT 1 AS name');", ['"nosuch"']),
        ("SELECT * FROM callrail_preview('d', NULL);", ["query", "NULL"]),
        ("SELECT * FROM callrail_send(NULL, 'SELECT 1 AS name');", ["destination", "NULL"]),
        ("SELECT * FROM callrail_send('nosuch', 'SELECT 1 AS name');", ['"nosuch"']),
        ("SELECT * FROM callrail_send('d', NULL);", ["query", "NULL"]),
        ("SELECT * FROM callrail_accounts(NULL);", ["credential", "NULL"]),
        ("SELECT * FROM callrail_accounts('nosuch');", ['"nosuch"']),
        ("SELECT callrail_activate('nosuch');", ['"nosuch"']),
        ("SELECT callrail_deactivate(NULL);", ["destination", "NULL"]),
        ("SELECT callrail_credential(NULL, 'tok');", ["credential", "NULL"]),
        ("SELECT callrail_credential('c', NULL);", ["token or source", "NULL"]),
        ("SELECT callrail_destination(NULL, '{}');", ["destination", "NULL"]),
        ("SELECT * FROM callrail_send('d');", ["callrail_send", "argument 2"]),
    ]
    outs = run_cases(ctx, setup(ctx), [s for s, _ in stmts])
    assert_errors(outs, [s for s, _ in stmts], [e for _, e in stmts])
    assert_nothing_sent(ctx)


def test_null_or_blob_config_is_an_error_naming_the_destination(ctx):
    stmts = ["SELECT callrail_destination('nullcfg', NULL);",
             "SELECT callrail_destination('blobcfg', x'7b7d');"]
    outs = run_cases(ctx, ctx.setup_credential(), stmts)
    assert_errors(outs, stmts, [['"nullcfg"', "config", "NULL"], ['"blobcfg"', "config"]])
    assert ctx.rows("SELECT count(*) AS n FROM callrail_destinations") == [{"n": 0}]


def test_nul_in_config_member_names_is_not_silently_cut(ctx):
    # JSON member names may hold an escaped NUL; the config must not read
    # "concurrency\u0000junk" as "concurrency", nor drop what follows the NUL
    # of a header name (CR/LF anywhere in headers is an error, README "Destination config").
    stmts = [
        r"""SELECT callrail_destination('k_top', '{"credential":"fake","url":"/v3/a/{account_id}/companies.json","concurrency\u0000junk":5}');""",
        r"""SELECT callrail_destination('k_batch', '{"credential":"fake","url":"/v3/a/{account_id}/companies.json","batch":{"size\u0000x":5}}');""",
        r"""SELECT callrail_destination('k_hdr', '{"credential":"fake","url":"/v3/a/{account_id}/companies.json","headers":{"X-A\u0000\r\nX-Evil: 1":"1"}}');""",
    ]
    outs = run_cases(ctx, ctx.setup_credential(), stmts)
    assert_errors(outs, stmts, [['"k_top"', "concurrency"], ['"k_batch"', "size"],
                                ['"k_hdr"', "headers"]])
    assert ctx.rows("SELECT count(*) AS n FROM callrail_destinations") == [{"n": 0}]


def test_config_edited_in_the_table_is_checked_again_at_every_use(ctx):
    # A config written into callrail_destinations by hand (or by another
    # tool) is parsed again by preview, test and send: the same errors,
    # naming the destination and key, and nothing is sent.
    ctx.sql(setup(ctx) + "UPDATE callrail_destinations SET config = "
            + q('{"credential":"fake","url":"/v3/a/{account_id}/companies.json","concurrency":"8"}') + " WHERE name = 'd';\n"
            + "UPDATE callrail_destinations SET config = "
            + q('{"credential":"gone","url":"/v3/a/{x/companies.json"}') + " WHERE name = 'p';\n")
    stmts = [
        "SELECT * FROM callrail_preview('d', 'SELECT 1 AS name');",
        "SELECT callrail_test('d', '{\"name\":\"x\"}');",
        "SELECT * FROM callrail_send('d', 'SELECT 1 AS name');",
        "SELECT * FROM callrail_preview('p', 'SELECT 1 AS name');",
        "SELECT * FROM callrail_send('p', 'SELECT 1 AS name');",
    ]
    outs = run_cases(ctx, ctx.setup_credential(), stmts)
    assert_errors(outs, stmts, [['"d"', '"concurrency"', '"8"']] * 3 + [['"p"', '"url"']] * 2)
    assert_nothing_sent(ctx)


def test_send_to_an_inactive_destination_is_refused_and_sends_nothing(ctx):
    stmts = [
        "SELECT * FROM callrail_send('d', 'SELECT ''x'' AS name');",
        "SELECT callrail_activate('d');",
        "SELECT callrail_deactivate('d');",
        "SELECT * FROM callrail_send('d', 'SELECT ''x'' AS name');",
        "SELECT * FROM callrail_send('d', 't');",
    ]
    outs = run_cases(ctx, setup(ctx, active=False), stmts)
    for i in (0, 3, 4):  # 4: a bare table name, the table need not exist
        assert outs[i].startswith("Runtime error") and '"d"' in outs[i] \
            and "not active" in outs[i], outs[i]
    assert_nothing_sent(ctx)
    # callrail_test is allowed on an inactive destination (README "Functions").
    _, out = ctx.sql(ctx.setup_credential()
                     + "SELECT json_extract(callrail_test('d', '{\"name\":\"t\"}'), '$.state');")
    assert out.split() == ["fake", "ok"], out
    assert len(ctx.fake.log()) == 1


# ---------------------------------------------------------------------------
# The query

BAD_QUERIES = [
    "INSERT INTO t VALUES('evil')",
    "INSERT INTO t VALUES('evil') RETURNING name",
    "DELETE FROM t",
    "DELETE FROM t RETURNING name",
    "UPDATE t SET name = 'evil'",
    "REPLACE INTO t VALUES('evil')",
    "DROP TABLE t",
    "CREATE TABLE evil(x)",
    "ALTER TABLE t RENAME TO evil",
    "WITH x AS (SELECT 1) DELETE FROM t",
    "WITH x AS (SELECT 1) INSERT INTO t SELECT 'evil' FROM x",
    "SELECT name FROM t; DELETE FROM t",
    "SELECT 1; SELECT 2",
    "SELECT name FROM t;; INSERT INTO t VALUES('evil')",
    "SELEC name FROM t",
    "SELECT FROM t",
    "SELECT name FROM nosuch_table",
    "nosuch_table",
    "t; DROP TABLE t",
    "PRAGMA user_version = 5",
    "PRAGMA table_info(t)",
    "ATTACH 'evil.db' AS evil",
    "DETACH main",
    "VACUUM",
    "BEGIN",
    "EXPLAIN SELECT 1",
    "",
    "   ",
    "-- only a comment",
    "/* unterminated comment",
]


def test_query_that_is_not_one_read_only_select_is_an_error_and_runs_nothing(ctx):
    make_table(ctx)
    stmts = []
    for query in BAD_QUERIES:
        stmts.append("SELECT * FROM callrail_send('d', %s);" % q(query))
        stmts.append("SELECT * FROM callrail_preview('d', %s);" % q(query))
    outs = run_cases(ctx, setup(ctx), stmts)
    for stmt, out in zip(stmts, outs):
        assert out.startswith("Runtime error"), "accepted: %s -> %r" % (stmt, out)
        assert out.count("\n") == 1, "rows came back for %s: %r" % (stmt, out)
    assert ctx.rows("SELECT name FROM t ORDER BY rowid") == [{"name": "Acme"}, {"name": "Globex"}]
    tables = ctx.rows("SELECT name FROM sqlite_schema WHERE name IN ('t', 'evil')")
    assert tables == [{"name": "t"}], tables
    assert ctx.rows("PRAGMA user_version") == [{"user_version": 0}]
    assert not os.path.exists(os.path.join(ctx.dir, "evil.db"))
    assert_nothing_sent(ctx)


def test_table_names_with_semicolons_and_comments_are_accepted_as_queries(ctx):
    # The counterpart of the refusals above: what README "Functions" allows does work.
    make_table(ctx)
    queries = ["t", "main.t", "SELECT name FROM t;", "  SELECT name FROM t ;; ",
               "-- c\nSELECT name FROM t -- trailing", "/* c */ WITH x AS (SELECT name FROM t) SELECT * FROM x"]
    outs = run_cases(ctx, setup(ctx), ["SELECT group_concat(body, ' ') FROM callrail_preview('d', %s);"
                                       % q(s) for s in queries])
    for query, out in zip(queries, outs):
        assert out == '{"name":"Acme"} {"name":"Globex"}\n', (query, out)
    assert ctx.fake.log() == []


# ---------------------------------------------------------------------------
# callrail_test's record_json

def test_callrail_test_record_json_that_is_not_an_object_is_an_error(ctx):
    values = ["'[]'", "'[{\"name\":\"x\"}]'", "'5'", "'\"name\"'", "'true'", "'null'", "'{broken'",
              "'{\"name\":NaN}'", "''", "'   '", "NULL", "x'7b7d'", "42", "json_array(1)"]
    stmts = ["SELECT callrail_test('d', %s);" % v for v in values]
    outs = run_cases(ctx, setup(ctx), stmts)
    assert_errors(outs, stmts, [["callrail_test", "record_json"]] * len(values))
    assert_nothing_sent(ctx)


# ---------------------------------------------------------------------------
# Values JSON cannot hold

def test_blob_column_makes_only_that_record_invalid_naming_the_column(ctx):
    query = ("SELECT 'a' AS name, NULL AS logo UNION ALL SELECT 'b', x'00ff' "
             "UNION ALL SELECT 'c', zeroblob(0) UNION ALL SELECT 'd', 'text'")
    outs = run_cases(ctx, setup(ctx), [
        "SELECT records, error FROM callrail_preview('d', %s);" % q(query),
        "SELECT state, error FROM callrail_send('d', %s) ORDER BY response_id;" % q(query),
        "SELECT state, error FROM callrail_send('d', 'SELECT x''0102'' AS blobcol');",
    ])
    preview = outs[0].splitlines()
    assert preview[0] == "1|" and preview[3] == "1|", preview
    for i, line in ((1, preview[1]), (2, preview[2])):
        assert "record %d" % (i + 1) in line and '"logo"' in line and "BLOB" in line, line
    sent = outs[1].splitlines()
    assert [s.split("|")[0] for s in sent] == ["ok", "invalid", "invalid", "ok"], sent
    assert "record 2" in sent[1] and '"logo"' in sent[1], sent
    assert outs[2].startswith("invalid|") and '"blobcol"' in outs[2], outs[2]
    bodies = sorted(e["body"] for e in ctx.fake.log())
    assert bodies == ['{"name":"a","logo":null}', '{"name":"d","logo":"text"}'], bodies


def test_infinite_values_are_invalid_and_nan_becomes_null(ctx):
    outs = run_cases(ctx, setup(ctx), [
        "SELECT error FROM callrail_preview('d', 'SELECT ''x'' AS name, 1e999 AS big');",
        "SELECT error FROM callrail_preview('d', 'SELECT ''x'' AS name, -1e999 AS small');",
        "SELECT body FROM callrail_preview('d', 'SELECT ''x'' AS name, (1e999 - 1e999) AS nan');",
        "SELECT state, error FROM callrail_send('d', 'SELECT ''x'' AS name, 1e999 AS big');",
        "SELECT json_extract(callrail_test('d', '{\"name\":\"x\",\"big\":1e999}'), '$.state') IS NOT NULL;",
        "SELECT callrail_test('d', '{\"name\":\"x\",\"big\":Infinity}');",
    ])
    assert '"big"' in outs[0] and "infinite" in outs[0], outs[0]
    assert '"small"' in outs[1] and "infinite" in outs[1], outs[1]
    assert outs[2] == '{"name":"x","nan":null}\n', outs[2]
    assert outs[3].startswith("invalid|") and '"big"' in outs[3], outs[3]
    assert outs[4] == "1\n", outs[4]
    assert outs[5].startswith("Runtime error") and "record_json" in outs[5], outs[5]


# ---------------------------------------------------------------------------
# Size

def test_one_megabyte_values_do_not_crash(ctx):
    big = "printf('%%.*c', %d, '%s')"
    outs = run_cases(ctx, setup(ctx), [
        # 1 MB attribute: previewed and sent whole.
        "SELECT length(body), error IS NULL FROM callrail_preview('d', %s);"
        % q("SELECT %s AS name" % (big % (MB, "x"))),
        "SELECT state FROM callrail_send('d', %s);" % q("SELECT %s AS name" % (big % (MB, "x"))),
        "SELECT json_extract(callrail_test('d', json_object('name', %s)), '$.state');" % (big % (MB, "y")),
        # 1 MB URL placeholder (3 MB encoded): the server refuses it; a row, no crash.
        "SELECT length(url) FROM callrail_preview('p', %s);" % q("SELECT %s AS id" % (big % (MB, "/"))),
        "SELECT state IN ('failed', 'invalid') FROM callrail_send('p', %s);"
        % q("SELECT %s AS id" % (big % (MB, "z"))),
        # 1 MB names, keys, headers, tokens and query text.
        "SELECT length(callrail_destination(%s, '{\"credential\":\"fake\",\"url\":\"/v3/a/{account_id}/companies.json\"}'));"
        % (big % (MB, "n")),
        "SELECT callrail_destination('bigkey', json_object('credential', 'fake', 'url', '/v3/a/{account_id}/companies.json', %s, 1));"
        % (big % (MB, "k")),
        "SELECT callrail_destination('bighdr', json_object('credential', 'fake', 'url', '/v3/a/{account_id}/companies.json', 'headers', 'X-A:' || %s));"
        % (big % (MB, "v")),
        "SELECT length(callrail_credential(%s, 'tok'));" % (big % (MB, "c")),
        "SELECT callrail_credential('bigtok', %s, '{{BASE}}');" % (big % (MB, "t")),
        "SELECT callrail_destination('bt', '{\"credential\":\"bigtok\",\"url\":\"/v3/a/{account_id}/companies.json\"}');",
        "SELECT callrail_test('bt', '{\"name\":\"x\"}');",
        "SELECT count(*) FROM callrail_preview('d', 'SELECT ''x'' AS name' || %s);" % (big % (MB, " ")),
        "SELECT callrail_test(%s, '{}');" % (big % (MB, "u")),
        "SELECT * FROM callrail_send('d', %s);" % (big % (MB, "(")),
    ])
    assert outs[0] == "%d|1\n" % (MB + 11), outs[0][:200]
    assert outs[1] == "ok\n" and outs[2] == "ok\n", (outs[1][:200], outs[2][:200])
    assert outs[3] == "%d\n" % (len(ctx.base) + len(PUT_URL) - 4 + 3 * MB), outs[3][:200]
    assert outs[4] == "1\n", outs[4][:200]
    assert outs[5] == "%d\n" % MB, outs[5][:200]
    assert outs[6].startswith("Runtime error") and '"bigkey"' in outs[6], outs[6][:200]
    assert outs[8] == "%d\n" % MB, outs[8][:200]
    # a 1 MB key is refused when registered (keys are 32 hex digits), so
    # the destination naming it and the test of that destination fail too
    assert outs[9].startswith("Runtime error") and "longer than" in outs[9], outs[9][:200]
    assert outs[10].startswith("Runtime error") and '"bigtok"' in outs[10], outs[10][:200]
    assert outs[11].startswith("Runtime error") and '"bt"' in outs[11], outs[11][:200]
    assert outs[12] == "1\n", outs[12][:200]
    assert outs[13].startswith("Runtime error") and outs[14].startswith("Runtime error")
    sizes = sorted(len(e["body"]) for e in ctx.fake.log())
    assert sizes[-2:] == [MB + 11, MB + 11], sizes


def test_records_with_many_attributes_are_built(ctx):
    # Every column becomes an attribute (README "Functions"): 200 columns, a config that
    # callrail_destination accepted with 150 excluded names or 150 batch
    # attributes, are no reason for an internal error at use.
    cols = ", ".join("%d AS c%d" % (i, i) for i in range(200))
    many = (dest_sql("many_excl", {"credential": "fake", "url": URL,
                                   "exclude": ["c%d" % i for i in range(150)]})
            + dest_sql("many_attr", {"credential": "fake", "url": URL,
                                     "batch": {"grouping": "attribute",
                                               "attributes": ["c%d" % i for i in range(150)]}}))
    two_rows = "SELECT %s UNION ALL SELECT %s" % (cols, cols)
    outs = run_cases(ctx, setup(ctx) + many, [
        "SELECT error, (SELECT count(*) FROM json_each(body)) FROM callrail_preview('d', %s);" % q("SELECT " + cols),
        "SELECT error, (SELECT count(*) FROM json_each(body)) FROM callrail_preview('many_excl', %s);"
        % q("SELECT " + cols),
        "SELECT records, error FROM callrail_preview('many_attr', %s);" % q(two_rows),
        "SELECT state FROM callrail_send('d', %s);" % q("SELECT 'many' AS name, " + cols),
    ])
    assert outs == ["|200\n", "|50\n", "2|\n", "ok\n"], outs


# ---------------------------------------------------------------------------
# URL placeholders

HOSTILE = ["../", "/", "?", "#", "@", "%", " ", "\u00e9", "a/../../v3/a.json", "?x=1#frag",
           "%2e%2e%2f", "+", "&a=b;c", "\\", "\t", "\u65e5\u672c", "'\"<>", "{id}",
           "http://evil.example/", "//evil.example", "a\r\nX-Evil: 1", "~._-"]


def test_hostile_placeholder_values_are_percent_encoded_in_preview_and_request(ctx):
    # Written with Python's sqlite3 module: no shell quoting in the way.
    con = sqlite3.connect(ctx.db)
    con.execute("CREATE TABLE hostile(i INTEGER, id TEXT)")
    con.executemany("INSERT INTO hostile VALUES(?, ?)", list(enumerate(HOSTILE)))
    con.commit()
    con.close()
    query = "SELECT id FROM hostile ORDER BY i"
    outs = run_cases(ctx, setup(ctx), [
        "SELECT url FROM callrail_preview('p', %s);" % q(query),
        "SELECT url FROM callrail_send('p', %s) ORDER BY response_id;" % q(query),
        "SELECT json_extract(callrail_test('p', json_object('id', 'x/../?#@% y')), '$.status');",
    ])
    want_paths = [PUT_URL.replace("{id}", pct(v)) for v in HOSTILE]
    want_urls = [ctx.base + p for p in want_paths]
    assert outs[0].split("\n")[:-1] == want_urls, (outs[0], want_urls)
    assert outs[1].split("\n")[:-1] == want_urls, (outs[1], want_urls)
    log = ctx.fake.log()
    got = [e["path"] for e in log]
    assert got[:len(HOSTILE)] == want_paths, got
    assert got[-1] == PUT_URL.replace("{id}", "x%2F..%2F%3F%23%40%25%20y"), got[-1]
    assert all(e["query"] == "" and e["headers"]["host"] == ctx.base.split("//")[1] for e in log)
    assert all("x-evil" not in e["headers"] for e in log)


def test_hostile_params_record_and_query_placeholders_are_percent_encoded(ctx):
    cfg = {"credential": "fake", "method": "PUT", "concurrency": 1,
           "url": "/v3/a/{account_id}/companies/{record.id}.json?search={q}",
           "params": {"account_id": "ACC/../../x?y#z", "q": "default q&x=1"}}
    outs = run_cases(ctx, setup(ctx) + dest_sql("h", cfg), [
        "SELECT url, error FROM callrail_preview('h', 'SELECT ''a b'' AS id');",
        "SELECT url FROM callrail_preview('h', 'SELECT ''1'' AS id, ''../x#'' AS q, ''ACC1'' AS account_id');",
        "SELECT json_extract(callrail_test('h', '{\"id\":\"a b\"}'), '$.state') IS NOT NULL;",
        "SELECT json_extract(callrail_test('h', '{\"id\":7, \"q\":1.5}'), '$.state') IS NOT NULL;",
        # {record.id} does not fall back to params.
        "SELECT state, error FROM callrail_send('h', 'SELECT ''n'' AS name');",
    ])
    acc = pct("ACC/../../x?y#z")
    assert outs[0] == "%s/v3/a/%s/companies/a%%20b.json?search=%s|\n" % (
        ctx.base, acc, pct("default q&x=1")), outs[0]
    assert outs[1] == "%s/v3/a/ACC1/companies/1.json?search=..%%2Fx%%23\n" % ctx.base, outs[1]
    assert outs[2] == "1\n" and outs[3] == "1\n", outs
    assert outs[4].startswith("invalid|") and "{record.id}" in outs[4], outs[4]
    log = ctx.fake.log()
    assert [(e["path"], e["query"]) for e in log] == [
        ("/v3/a/%s/companies/a%%20b.json" % acc, "search=" + pct("default q&x=1")),
        ("/v3/a/%s/companies/7.json" % acc, "search=1.5")], log


def test_dot_segment_placeholder_values_cannot_change_the_request_path(ctx):
    # "." and ".." are unreserved, but as a whole path segment libcurl
    # removes them (RFC 3986 5.2.4): /v3/a/../companies/x.json would go to
    # /v3/companies/x.json.  The request must go where the preview says,
    # keeping the segment, or the record must be invalid.
    cfg = {"credential": "fake", "method": "PUT", "concurrency": 1,
           "url": "/v3/a/{acc}/companies/{id}.json"}
    query = "SELECT '..' AS acc, 'x' AS id UNION ALL SELECT '.', 'y'"
    outs = run_cases(ctx, setup(ctx) + dest_sql("dots", cfg), [
        "SELECT url, error FROM callrail_preview('dots', %s);" % q(query),
        "SELECT url, state, error FROM callrail_send('dots', %s) ORDER BY response_id;" % q(query),
    ])
    previews = [line.split("|") for line in outs[0].splitlines()]
    sent_paths = [e["path"] for e in ctx.fake.log()]
    expected = []
    for (url, error), ident in zip(previews, ("x", "y")):
        if error:
            continue
        path = url[len(ctx.base):]
        segs = path.split("/")
        assert segs[:3] == ["", "v3", "a"] and segs[4:] == ["companies", ident + ".json"] \
            and segs[3] not in (".", ".."), "preview URL %s changes the path" % url
        expected.append(path)
    assert sent_paths == expected, "preview shows %r, the server received %r" % (expected, sent_paths)


def test_nul_in_a_placeholder_value_does_not_truncate_the_url(ctx):
    # 'a' || char(0) || 'b' must not become "a": that is another record's URL.
    query = "SELECT 'a' || char(0) || 'b' AS id"
    outs = run_cases(ctx, setup(ctx), [
        "SELECT url, error FROM callrail_preview('p', %s);" % q(query),
        "SELECT state FROM callrail_send('p', %s);" % q(query),
    ])
    url, error = outs[0].rstrip("\n").split("|")
    truncated = ctx.base + PUT_URL.replace("{id}", "a")
    assert error or url != truncated, "the URL was cut at the NUL: %s" % url
    assert all(e["path"] != truncated[len(ctx.base):] for e in ctx.fake.log()), ctx.fake.log()


def test_missing_or_null_placeholder_value_makes_only_that_record_invalid(ctx):
    query = ("SELECT 'one' AS id UNION ALL SELECT NULL UNION ALL SELECT json_object('x', 1) "
             "UNION ALL SELECT 'four'")
    outs = run_cases(ctx, setup(ctx), [
        "SELECT error FROM callrail_preview('p', %s);" % q(query),
        "SELECT state, error FROM callrail_send('p', %s) ORDER BY response_id;" % q(query),
        "SELECT callrail_test('p', '{\"name\":\"no id\"}');",
        "SELECT state, error FROM callrail_send('p', 'SELECT ''x'' AS name');",
    ])
    errors = outs[0].split("\n")[:4]
    assert errors[0] == "" and errors[3] == "", errors
    assert "record 2" in errors[1] and "{id}" in errors[1] and "NULL" in errors[1], errors
    assert "record 3" in errors[2] and "{id}" in errors[2], errors
    states = [line.split("|")[0] for line in outs[1].splitlines()]
    assert states.count("invalid") == 2 and len(states) == 4, outs[1]
    res = json.loads(outs[2])
    assert res["state"] == "invalid" and res["status"] is None and "{id}" in res["error"], res
    assert outs[3].startswith("invalid|") and "record 1" in outs[3], outs[3]
    paths = sorted(e["path"] for e in ctx.fake.log())
    assert paths == [PUT_URL.replace("{id}", "four"), PUT_URL.replace("{id}", "one")], paths


# ---------------------------------------------------------------------------
# Odd uses

def test_duplicate_column_names_and_unaddressable_attributes_are_errors(ctx):
    cfg = {"credential": "fake", "url": URL, "exclude": ['a"b']}
    stmts = [
        "SELECT * FROM callrail_preview('d', 'SELECT 1 AS a, 2 AS a');",
        "SELECT * FROM callrail_send('d', 'SELECT 1 AS name, 2 AS name');",
        "SELECT * FROM callrail_preview('quote', 'SELECT 1 AS name');",
    ]
    outs = run_cases(ctx, setup(ctx) + dest_sql("quote", cfg), stmts)
    assert_errors(outs, stmts, [['"a"'], ['"name"'], ['"quote"', "exclude"]])
    assert_nothing_sent(ctx)


def test_preview_limit_values_do_not_crash(ctx):
    query = q("SELECT value AS name FROM generate_series(1, 5)")
    # a negative limit means none (as in SQL); text and BLOB read as 0
    limits = ["-5", "0", "1", "5", "9223372036854775807", "-9223372036854775808", "'abc'", "NULL",
              "2.7", "x'00'"]
    outs = run_cases(ctx, setup(ctx), ["SELECT count(*) FROM callrail_preview('d', %s, %s);"
                                       % (query, lim) for lim in limits])
    counts = [o.strip() for o in outs]
    assert counts[:4] == ["5", "0", "1", "5"], counts  # negative: no limit, as SQL
    assert counts[4] == "5" and counts[7] == "5", counts
    assert ctx.fake.log() == []


def test_nested_calls_inside_a_query_do_not_crash(ctx):
    # (callrail_send inside callrail_send's query is left out: it waits 30 s
    # on its own database lock before failing.)
    stmts = [
        "SELECT state FROM callrail_send('d', 'SELECT json_extract(callrail_test(''d'', ''{\"name\":\"in\"}''), ''$.state'') AS name');",
        "SELECT count(*) FROM callrail_preview('d', 'SELECT url AS name FROM callrail_preview(''d'', ''SELECT 1 AS name'')');",
        "SELECT count(*) FROM callrail_send('d', 'SELECT name FROM callrail_accounts(''fake'')');",
    ]
    run_cases(ctx, setup(ctx), stmts)
