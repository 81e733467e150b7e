"""SQLITE_DIRECTONLY (README "Functions" and README "Guarantees"): a view, trigger or DEFAULT expression in a
database file cannot call callrail_credential, callrail_destination,
callrail_activate, callrail_deactivate or callrail_test, nor select from
callrail_preview, callrail_send or callrail_accounts, even with
trusted_schema ON: each use is refused with "unsafe use of ...", nothing is
sent (the fake server's log stays empty) and nothing changes.  Called
directly, the same functions work; callrail_version() is innocuous and works
in views and triggers."""
import subprocess

from helpers import run_cases

ACC1 = "ACC0000000000000000000000000000001"
CONFIG = '{"credential":"fake","url":"/v3/a/%s/companies.json"}' % ACC1

# name -> the SQL expression a view or trigger would use
SCALARS = {
    "callrail_credential": "callrail_credential('evil', 'tok')",
    "callrail_destination": ("callrail_destination('evil', '{\"credential\":\"fake\","
                             "\"url\":\"/v3/a.json\"}')"),
    "callrail_activate": "callrail_activate('d')",
    "callrail_deactivate": "callrail_deactivate('d')",
    "callrail_test": "callrail_test('d', '{\"name\":\"from a view\"}')",
}
TABLES = {
    "callrail_preview": "callrail_preview('d', 'SELECT ''x'' AS name')",
    "callrail_send": "callrail_send('d', 'SELECT ''x'' AS name')",
    "callrail_accounts": "callrail_accounts('fake')",
}


def setup_sql(ctx, active=False):
    sql = ctx.setup_credential()
    sql += "SELECT callrail_destination('d', '%s');\n" % CONFIG
    if active:
        sql += "SELECT callrail_activate('d');\n"
    return sql


def plain_sqlite(ctx, script):
    """Runs script with the system sqlite3 and no extension: a database
    file prepared by someone else."""
    proc = subprocess.run(["sqlite3", "-batch", ctx.db], input=script, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def assert_nothing_happened(ctx, active=0):
    log = ctx.fake.log()
    assert log == [], "requests were sent: %r" % [(e["method"], e["path"]) for e in log]
    creds = ctx.rows("SELECT name FROM callrail_credentials ORDER BY name")
    assert creds == [{"name": "fake"}], creds
    dests = ctx.rows("SELECT name, active FROM callrail_destinations ORDER BY name")
    assert dests == [{"name": "d", "active": active}], dests
    runs = ctx.rows("SELECT count(*) AS n FROM callrail_runs")
    assert runs == [{"n": 0}], runs


def test_views_calling_side_effect_functions_are_refused_and_send_nothing(ctx):
    ctx.sql(setup_sql(ctx, active=True))
    # The views are written by a plain sqlite3 without the extension, as in
    # a database file received from elsewhere.
    views = ""
    for name, expr in SCALARS.items():
        views += "CREATE VIEW v_%s AS SELECT %s AS r;\n" % (name, expr)
    for name, expr in TABLES.items():
        views += "CREATE VIEW v_%s AS SELECT * FROM %s;\n" % (name, expr)
    plain_sqlite(ctx, views)
    names = list(SCALARS) + list(TABLES)
    outs = run_cases(ctx, "PRAGMA trusted_schema=ON;\n" + ctx.setup_credential(),
                     ["SELECT * FROM v_%s;" % n for n in names])
    for name, out in zip(names, outs):
        assert "unsafe use of" in out and name in out, "view calling %s: %r" % (name, out)
    assert_nothing_happened(ctx, active=1)
    # Sanity: called directly, the same function does send.
    _, out = ctx.sql(ctx.setup_credential()
                     + "SELECT json_extract(callrail_test('d', '{\"name\":\"direct\"}'), '$.state');")
    assert out.split() == ["fake", "ok"], out
    assert len(ctx.fake.log()) == 1


def test_triggers_calling_side_effect_functions_are_refused_and_roll_back(ctx):
    script = setup_sql(ctx, active=True)
    names = list(SCALARS) + list(TABLES)
    for name in names:
        script += "CREATE TABLE t_%s(x);\n" % name
        if name in SCALARS:
            body = "SELECT %s;" % SCALARS[name]
        else:
            body = "SELECT count(*) FROM %s;" % TABLES[name]
        script += "CREATE TRIGGER tr_%s AFTER INSERT ON t_%s BEGIN %s END;\n" % (name, name, body)
    # A DEFAULT expression is schema too.
    script += "CREATE TABLE t_default(x, y DEFAULT (callrail_deactivate('d')));\n"
    ctx.sql(script)
    stmts = ["INSERT INTO t_%s VALUES(1);" % n for n in names]
    stmts.append("INSERT INTO t_default(x) VALUES(1);")
    outs = run_cases(ctx, "PRAGMA trusted_schema=ON;\n" + ctx.setup_credential(), stmts)
    for name, out in zip(names + ["callrail_deactivate"], outs):
        assert "unsafe use of" in out and name in out, "trigger calling %s: %r" % (name, out)
    for name in names + ["default"]:
        rows = ctx.rows("SELECT count(*) AS n FROM t_%s" % name)
        assert rows == [{"n": 0}], "insert into t_%s was not rolled back" % name
    assert_nothing_happened(ctx, active=1)


def test_view_in_the_query_of_send_or_preview_is_refused(ctx):
    ctx.sql(setup_sql(ctx, active=True)
            + "CREATE VIEW v_evil AS SELECT callrail_test('d', '{\"name\":\"evil\"}') AS name;\n"
            + "CREATE VIEW v_evil2 AS SELECT * FROM callrail_send('d', 'SELECT 1 AS name');\n")
    outs = run_cases(ctx, "PRAGMA trusted_schema=ON;\n" + ctx.setup_credential(), [
        "SELECT * FROM callrail_send('d', 'SELECT * FROM v_evil');",
        "SELECT * FROM callrail_send('d', 'v_evil');",
        "SELECT * FROM callrail_preview('d', 'SELECT * FROM v_evil');",
        "SELECT * FROM callrail_send('d', 'SELECT * FROM v_evil2');",
    ])
    for out in outs:
        assert "unsafe use of" in out, out
    assert ctx.fake.log() == []
    assert ctx.rows("SELECT count(*) AS n FROM callrail_responses") == [{"n": 0}]


def test_version_works_in_views_and_triggers_with_or_without_trusted_schema(ctx):
    ctx.sql("CREATE VIEW v AS SELECT callrail_version() AS v;\n"
            "CREATE TABLE t(x);\nCREATE TABLE seen(v);\n"
            "CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO seen SELECT callrail_version(); END;\n")
    for trusted in ("ON", "OFF"):
        outs = run_cases(ctx, "PRAGMA trusted_schema=%s;\n" % trusted, [
            "SELECT v LIKE 'callrail-sqlite %' FROM v;",
            "INSERT INTO t VALUES(1);",
            "SELECT count(*), min(v LIKE 'callrail-sqlite %') FROM seen;",
        ])
        assert outs[0] == "1\n", (trusted, outs)
        assert outs[1] == "", (trusted, outs)
    assert outs[2] == "2|1\n", outs
    assert ctx.fake.log() == []
