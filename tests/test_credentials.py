"""Credentials (README "Tables", README "Functions" and README "Guarantees"): callrail_credential(name, 'env:VAR' |
'file:PATH' | token [, api_base]) stores only the reference ('env:VAR',
'file:PATH' or 'memory'), never the key: not in any table, nor in the bytes of
the database file, its -wal or -shm, nor in any error message or preview
(Authorization shows Token token="***").  Requests carry exactly
Authorization: Token token="<key>".  A missing variable or key file is an error
naming the credential and the variable or file; a key file readable by group or
others is refused with a chmod hint; a trailing newline in a key file is
trimmed; http api_base only for real loopback hosts; a memory key is unusable
from another connection; the key goes only to the api_base origin."""
import glob
import json
import os

from helpers import run_cases

ACC1 = "ACC0000000000000000000000000000001"
ACC2 = "ACC0000000000000000000000000000002"
URL = "/v3/a/%s/companies.json" % ACC1
SECRET = "SECRETtok123"


def dest_sql(name="d", url=URL, cred="fake", active=True, extra=""):
    cfg = '{"credential":"%s","url":"%s"%s}' % (cred, url, extra)
    sql = "SELECT callrail_destination('%s', '%s');\n" % (name, cfg)
    if active:
        sql += "SELECT callrail_activate('%s');\n" % name
    return sql


def result_of(out):
    """The state of a callrail_test result line."""
    return json.loads(out.strip().splitlines()[-1])


def key_file(ctx, name, content, mode=0o600):
    path = os.path.join(ctx.dir, name)
    with open(path, "w") as f:
        f.write(content)
    os.chmod(path, mode)
    return path


def auth_headers(ctx):
    return [e["headers"].get("authorization") for e in ctx.fake.log()]


def test_env_credential_stores_reference_and_sends_exact_token_header(ctx):
    env = {"CR_TEST_KEY": "test-token"}
    outs = run_cases(ctx, "SELECT callrail_credential('fake', 'env:CR_TEST_KEY', '{{BASE}}');\n"
                     + dest_sql(), [
                         "SELECT callrail_test('d', '{\"name\":\"env co\"}');",
                         "SELECT count(*) FROM callrail_send('d', 'SELECT ''env send'' AS name');",
                         "SELECT id FROM callrail_accounts('fake');",
                     ], env=env)
    assert result_of(outs[0])["state"] == "ok", outs[0]
    assert outs[1] == "1\n", outs[1]
    assert outs[2] == ACC1 + "\n", outs[2]
    assert auth_headers(ctx) == ['Token token="test-token"'] * 3, auth_headers(ctx)
    rows = ctx.rows("SELECT name, source, api_base FROM callrail_credentials")
    assert rows == [{"name": "fake", "source": "env:CR_TEST_KEY", "api_base": ctx.base}], rows


def test_memory_token_sends_exact_header_and_preview_masks_it(ctx):
    outs = run_cases(ctx, ctx.setup_credential() + dest_sql(), [
        "SELECT headers FROM callrail_preview('d', 'SELECT ''a'' AS name');",
        "SELECT json_extract(callrail_test('d', '{\"name\":\"mem co\"}'), '$.state');",
    ])
    headers = json.loads(outs[0])
    assert headers["Authorization"] == 'Token token="***"', headers
    assert "test-token" not in outs[0]
    assert outs[1] == "ok\n", outs[1]
    assert auth_headers(ctx) == ['Token token="test-token"']
    rows = ctx.rows("SELECT source FROM callrail_credentials WHERE name = 'fake'")
    assert rows == [{"source": "memory"}], rows


def test_key_file_trailing_newline_is_trimmed(ctx):
    lf = key_file(ctx, "key-lf", "test-token\n")
    crlf = key_file(ctx, "key-crlf", "test-token\r\n")
    outs = run_cases(
        ctx,
        "SELECT callrail_credential('lf', 'file:%s', '{{BASE}}');\n" % lf
        + "SELECT callrail_credential('crlf', 'file:%s', '{{BASE}}');\n" % crlf
        + dest_sql("d_lf", cred="lf") + dest_sql("d_crlf", cred="crlf"), [
            "SELECT json_extract(callrail_test('d_lf', '{\"name\":\"lf\"}'), '$.status');",
            "SELECT json_extract(callrail_test('d_crlf', '{\"name\":\"crlf\"}'), '$.status');",
        ])
    assert outs == ["201\n", "201\n"], outs
    assert auth_headers(ctx) == ['Token token="test-token"'] * 2, auth_headers(ctx)
    rows = ctx.rows("SELECT name, source FROM callrail_credentials ORDER BY name")
    assert rows == [{"name": "crlf", "source": "file:" + crlf},
                    {"name": "lf", "source": "file:" + lf}], rows


def test_key_file_readable_by_group_or_others_is_refused_with_chmod_hint(ctx):
    paths = [key_file(ctx, "key-%o" % mode, "test-token\n", mode)
             for mode in (0o644, 0o640, 0o604, 0o660, 0o444)]
    prelude = ""
    stmts = []
    for i, path in enumerate(paths):
        prelude += "SELECT callrail_credential('c%d', 'file:%s', '{{BASE}}');\n" % (i, path)
        prelude += dest_sql("d%d" % i, cred="c%d" % i)
        stmts.append("SELECT callrail_test('d%d', '{\"name\":\"x\"}');" % i)
        stmts.append("SELECT * FROM callrail_send('d%d', 'SELECT ''x'' AS name');" % i)
        stmts.append("SELECT * FROM callrail_accounts('c%d');" % i)
    outs = run_cases(ctx, prelude, stmts)
    for j, out in enumerate(outs):
        i = j // 3
        assert '"c%d"' % i in out and paths[i] in out and "chmod 600" in out, out
        assert "test-token" not in out
    assert ctx.fake.log() == []
    assert ctx.rows("SELECT count(*) AS n FROM callrail_runs") == [{"n": 0}]


def test_missing_env_var_is_an_error_naming_credential_and_variable(ctx):
    prelude = ("SELECT callrail_credential('envcred', 'env:CR_TEST_UNSET_VAR', '{{BASE}}');\n"
               "SELECT callrail_credential('emptycred', 'env:CR_TEST_EMPTY_VAR', '{{BASE}}');\n"
               + dest_sql("d", cred="envcred") + dest_sql("e", cred="emptycred"))
    stmts = ["SELECT callrail_test('d', '{\"name\":\"x\"}');",
             "SELECT * FROM callrail_send('d', 'SELECT ''x'' AS name');",
             "SELECT * FROM callrail_accounts('envcred');",
             "SELECT callrail_test('e', '{\"name\":\"x\"}');",
             "SELECT * FROM callrail_accounts('emptycred');"]
    outs = run_cases(ctx, prelude, stmts, env={"CR_TEST_EMPTY_VAR": ""})
    for out in outs[:3]:
        assert '"envcred"' in out and "CR_TEST_UNSET_VAR" in out, out
    for out in outs[3:]:
        assert '"emptycred"' in out and "CR_TEST_EMPTY_VAR" in out, out
    assert ctx.fake.log() == []


def test_missing_key_file_is_an_error_naming_credential_and_file(ctx):
    path = os.path.join(ctx.dir, "no-such-key-file")
    prelude = ("SELECT callrail_credential('filecred', 'file:%s', '{{BASE}}');\n" % path
               + dest_sql("d", cred="filecred"))
    outs = run_cases(ctx, prelude, [
        "SELECT callrail_test('d', '{\"name\":\"x\"}');",
        "SELECT * FROM callrail_send('d', 'SELECT ''x'' AS name');",
        "SELECT * FROM callrail_accounts('filecred');",
    ])
    for out in outs:
        assert '"filecred"' in out and path in out, out
    assert ctx.fake.log() == []


def test_token_is_never_written_to_db_wal_or_shm(ctx):
    ctx.fake.config(tokens={SECRET: {"accounts": [ACC1], "admin": True}})
    snap = os.path.join(ctx.dir, "snap.sh")
    with open(snap, "w") as f:
        # Copies the files while the connection is still open (the WAL is
        # removed when the last connection closes).
        f.write("for f in test.db test.db-wal test.db-shm; do [ -e $f ] && cp $f snap-$f; done\n")
    script = ("SELECT callrail_credential('fake', '%s', '{{BASE}}');\n" % SECRET
              + dest_sql() + dest_sql("bad_acc", url="/v3/a/%s/companies.json" % ACC2)
              + dest_sql("keyed", extra=',"key":"k"')
              + "SELECT * FROM callrail_preview('d', 'SELECT ''p'' AS name');\n"
              + "SELECT callrail_test('d', '{\"name\":\"secret test\"}');\n"
              + "SELECT state FROM callrail_send('d', 'SELECT ''s'' || value AS name FROM generate_series(1, 3)');\n"
              + "SELECT state FROM callrail_send('keyed', 'SELECT value AS k, ''k'' || value AS name FROM generate_series(1, 2)');\n"
              + "SELECT callrail_test('bad_acc', '{\"name\":\"forbidden\"}');\n"
              + "SELECT id FROM callrail_accounts('fake');\n"
              + "SELECT callrail_credential('fake2', 'file:/nonexistent/%s');\n" % "x"
              + ".system sh %s\n" % snap)
    rc, out = ctx.sql(script, check=False)
    assert rc in (0, 1), out
    assert SECRET not in out, out
    assert out.count("ok") >= 5, out
    log = ctx.fake.log()
    assert len(log) >= 7 and all(e["headers"]["authorization"] == 'Token token="%s"' % SECRET
                                 for e in log), log
    files = glob.glob(os.path.join(ctx.dir, "*"))
    scanned = [os.path.basename(f) for f in files if "snap-test.db" in f or f.endswith(".db")]
    assert "snap-test.db-wal" in scanned and "snap-test.db" in scanned, scanned
    for f in files:
        if f.endswith("snap.sh"):
            continue
        data = open(f, "rb").read()
        assert SECRET.encode() not in data, "the token is in %s" % f
        assert SECRET.encode("utf-16-le") not in data, "the token is in %s" % f
    rows = ctx.rows("SELECT * FROM callrail_credentials")
    assert SECRET not in json.dumps(rows), rows
    assert rows[0]["source"] == "memory", rows


def test_token_never_appears_in_error_messages(ctx):
    bad_quote = key_file(ctx, "key-quote", 'SECRET"tok1\n')
    too_long = key_file(ctx, "key-long", "SECRETtok" + "x" * 5000)
    prelude = ("SELECT callrail_credential('wrong', 'SECRETwrong999', '{{BASE}}');\n"
               "SELECT callrail_credential('envq', 'env:CR_TEST_BAD', '{{BASE}}');\n"
               "SELECT callrail_credential('fq', 'file:%s', '{{BASE}}');\n" % bad_quote
               + "SELECT callrail_credential('fl', 'file:%s', '{{BASE}}');\n" % too_long
               + dest_sql("w", cred="wrong") + dest_sql("eq", cred="envq")
               + dest_sql("fq", cred="fq") + dest_sql("fl", cred="fl"))
    stmts = [
        "SELECT callrail_credential('q', 'SECRET\"tok2');",
        "SELECT callrail_credential('nl', 'SECRETtok3' || char(10));",
        "SELECT callrail_test('w', '{\"name\":\"x\"}');",
        "SELECT state, error FROM callrail_send('w', 'SELECT ''x'' AS name');",
        "SELECT * FROM callrail_accounts('wrong');",
        "SELECT callrail_test('eq', '{\"name\":\"x\"}');",
        "SELECT callrail_test('fq', '{\"name\":\"x\"}');",
        "SELECT callrail_test('fl', '{\"name\":\"x\"}');",
        "SELECT callrail_destination('w', '{\"credential\":\"wrong\",\"url\":\"/v3/a.json\",\"headers\":\"Authorization:SECRETtok5\"}');",
    ]
    outs = run_cases(ctx, prelude, stmts, env={"CR_TEST_BAD": 'SECRET"tok4'})
    assert '"q"' in outs[0] and '"nl"' in outs[1], outs
    assert "401" in outs[2] and "401" in outs[3] and "401" in outs[4], outs
    for name, out in zip(("envq", "fq", "fl"), outs[5:8]):
        assert '"%s"' % name in out, out
    assert '"w"' in outs[8] and "Authorization" in outs[8], outs[8]
    for out in outs:
        assert "SECRET" not in out, out
    rows = ctx.rows("SELECT * FROM callrail_responses")
    assert "SECRET" not in json.dumps(rows), rows
    # Only the three requests with the wrong token reached the server.
    assert auth_headers(ctx) == ['Token token="SECRETwrong999"'] * 3


def test_http_api_base_is_refused_for_hosts_that_only_look_like_loopback(ctx):
    # 127.0.0.0/8 is an address range: a host NAME starting "127." or
    # ending in a loopback address is any host on the internet.
    bases = ["http://127.evil.example", "http://127.0.0.1.nip.io", "http://127.0.0.1.evil.example:8080",
             "http://localhost.evil.example", "http://[::1].evil.example"]
    outs = run_cases(ctx, "", ["SELECT callrail_credential('c%d', 'tok', '%s');" % (i, b)
                               for i, b in enumerate(bases)])
    stored = ctx.rows("SELECT name, api_base FROM callrail_credentials")
    accepted = [b for b, out in zip(bases, outs) if not ("Runtime error" in out and b in out)]
    assert accepted == [], "http api_base accepted for non-loopback hosts %r; stored %r" % (
        accepted, stored)
    assert stored == [], stored


def test_memory_token_is_not_usable_from_a_second_connection(ctx):
    ctx.sql(ctx.setup_credential() + dest_sql())
    # A second sqlite3 process on the same database file.
    outs = run_cases(ctx, "", [
        "SELECT callrail_test('d', '{\"name\":\"x\"}');",
        "SELECT * FROM callrail_send('d', 'SELECT ''x'' AS name');",
        "SELECT * FROM callrail_accounts('fake');",
        "SELECT url, json_extract(headers, '$.Authorization') FROM callrail_preview('d', 'SELECT ''x'' AS name');",
    ])
    for out in outs[:3]:
        assert "Runtime error" in out and '"fake"' in out, out
        assert "test-token" not in out
    assert outs[3] == '%s%s|Token token="***"\n' % (ctx.base, URL), outs[3]
    assert ctx.fake.log() == []
    # Registering it again on this connection makes it usable here.
    _, out = ctx.sql(ctx.setup_credential()
                     + "SELECT json_extract(callrail_test('d', '{\"name\":\"x\"}'), '$.state');")
    assert out.split() == ["fake", "ok"], out


def test_replacing_a_credential_switches_source_and_api_base_of_path_destinations(ctx):
    localhost = ctx.base.replace("127.0.0.1", "localhost")
    outs = run_cases(ctx, ctx.setup_credential() + dest_sql(), [
        "SELECT url FROM callrail_preview('d', 'SELECT ''x'' AS name');",
        "SELECT callrail_credential('fake', 'env:CR_TEST_KEY', '%s');" % localhost,
        "SELECT source, api_base FROM callrail_credentials;",
        "SELECT url FROM callrail_preview('d', 'SELECT ''x'' AS name');",
        "SELECT json_extract(callrail_test('d', '{\"name\":\"x\"}'), '$.state');",
    ], env={"CR_TEST_KEY": "test-token"})
    assert outs[0] == ctx.base + URL + "\n", outs
    assert outs[2] == "env:CR_TEST_KEY|%s\n" % localhost, outs
    assert outs[3] == localhost + URL + "\n", outs
    assert outs[4] == "ok\n", outs
    log = ctx.fake.log()
    assert len(log) == 1 and log[0]["headers"]["host"] == localhost.split("//")[1], log


def test_key_is_not_sent_to_an_origin_other_than_api_base(ctx):
    # The destination names the fake's origin; the credential then moves to
    # another api_base: the run is refused when it loads the destination,
    # before anything is built or sent.
    outs = run_cases(ctx, ctx.setup_credential()
                     + dest_sql(url="%s/v3/a/%s/companies.json" % (ctx.base, ACC1)), [
        "SELECT callrail_credential('fake', 'test-token', 'https://api.callrail.com');",
        "SELECT callrail_test('d', '{\"name\":\"x\"}');",
        "SELECT state, error FROM callrail_send('d', 'SELECT ''x'' AS name');",
    ])
    for out in outs[1:]:
        assert "Runtime error" in out and "origin" in out, outs
    assert ctx.fake.log() == []
