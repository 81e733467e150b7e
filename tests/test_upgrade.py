"""A database written by callrail-sqlite 0.1.0 (tests/fixtures/v0_1_0.db, made
by tests/fixtures/make_v0_1_0.py) is upgraded to schema 2 when the extension
is loaded, and keeps its promises.

Properties checked:
  - after the load: callrail_meta says schema_version 2, PRAGMA
    integrity_check is ok, every row kept its id, sqlite_sequence holds the
    largest run and response ids, the new columns are filled from the old
    rows (record_key, remote_id), and PRAGMA user_version is left alone;
  - a send of the same 8 records (ids 1-8, 'Shop 1'..'Shop 8', key id,
    through the destination 0.1.0 defined) skips 1-5 (delivered, with their
    identities recomputed: no change is counted), holds 6-7 (unknown) and
    sends 8 (it failed), once: the fake's log has exactly that POST;
  - the run of "slow" that 0.1.0 left `running` (killed with SIGKILL) is
    recovered by the next send of "slow": its pending rows become unknown,
    the run interrupted, and nothing is sent again;
  - opening the upgraded file again changes nothing;
  - a file claiming schema_version 99 is refused, saying it was written by
    a newer callrail-sqlite, and is left as it is.

The fixture's rows name the fake server on 127.0.0.1:47231 (the origin is
part of a request's identity), so this test serves a second fake there.
"""
import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile

from helpers import ACC, q, run_cases, script_of
from run import Fake, TESTS

PORT = 47231
FIXTURE = os.path.join(TESTS, "fixtures", "v0_1_0.db")
TOKEN_ENV = {"CALLRAIL_FIXTURE_TOKEN": "test-token"}


class FixedFake(Fake):
    """The fake CallRail server on the fixed port the fixture names.  The
    suites of `make test` run side by side, each with this test, and so may
    the suites of another checkout: a lock file in the machine's temporary
    directory makes them all take the port in turn."""

    def __init__(self, workdir, port):
        path = os.path.join(tempfile.gettempdir(), "callrail-sqlite-port-%d.lock" % port)
        self.lock = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o666), "w")
        fcntl.flock(self.lock, fcntl.LOCK_EX)  # until the other suite's fake has stopped
        probe = socket.socket()
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as e:
            raise AssertionError("port %d on 127.0.0.1 is taken (%s): the 0.1.0 fixture's rows "
                                 "name that origin, so the upgrade test needs it free" % (port, e))
        finally:
            probe.close()
        self.workdir = workdir
        self.log_path = os.path.join(workdir, "fake-%d.log" % port)
        port_file = os.path.join(workdir, "fake-%d.port" % port)
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(TESTS, "fake_callrail.py"), "--port", str(port),
             "--port-file", port_file, "--log", self.log_path, "--max-seconds", "600"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        while not os.path.exists(port_file):
            if self.proc.poll() is not None:
                raise AssertionError("the fake server could not start on 127.0.0.1:%d (taken since "
                                     "it was probed?)" % port)
            try:
                self.proc.wait(0.02)
            except subprocess.TimeoutExpired:
                pass
        self.port = port
        self.base = "http://127.0.0.1:%d" % port

    def stop(self):
        Fake.stop(self)
        self.lock.close()  # the next suite may take the port


def upgraded_copy(ctx, name="v010.db"):
    db = os.path.join(ctx.dir, name)
    shutil.copyfile(FIXTURE, db)
    return db


def plain(db, sql):
    """Output of sql in the system sqlite3, without the extension."""
    return subprocess.run(["sqlite3", "-batch", db], input=sql, capture_output=True, text=True,
                          check=True, timeout=60).stdout


def snapshot(db):
    """Everything in the file, as text: schema and rows."""
    return plain(db, ".dump\n")


CRED = ("SELECT callrail_credential('fake', 'env:CALLRAIL_FIXTURE_TOKEN', 'http://127.0.0.1:%d');\n"
        % PORT)
SHOPS = " UNION ALL ".join("SELECT %d AS id, 'Shop %d' AS name" % (i, i) for i in range(1, 9))
SLOW = "SELECT 1 AS id, 'Slow 1' AS name UNION ALL SELECT 2, 'Slow 2'"


def send(ctx, db, dest, query):
    """A send through the destination 0.1.0 defined (not redefined)."""
    script = script_of(ctx, CRED, "SELECT * FROM callrail_send(%s, %s);" % (q(dest), q(query)),
                       cred=False)
    ctx.sql(script, db=db, env=TOKEN_ENV)


def test_a_0_1_0_database_is_upgraded_at_load_and_keeps_its_promises(ctx):
    db = upgraded_copy(ctx)
    old_responses = plain(db, "SELECT id, run_id, state FROM callrail_responses ORDER BY id;")
    old_runs = plain(db, "SELECT run_id, destination, status FROM callrail_runs ORDER BY 1;")
    assert "callrail_meta" not in plain(db, ".tables\n")
    ctx.sql("SELECT 1;", db=db)  # the load upgrades
    assert ctx.rows("SELECT key, value FROM callrail_meta", db=db) == [
        {"key": "schema_version", "value": 2}]
    assert ctx.rows("PRAGMA integrity_check", db=db) == [{"integrity_check": "ok"}]
    assert ctx.rows("PRAGMA user_version", db=db) == [{"user_version": 0}]
    assert plain(db, "SELECT id, run_id, state FROM callrail_responses ORDER BY id;") == \
        old_responses
    assert plain(db, "SELECT run_id, destination, status FROM callrail_runs ORDER BY 1;") == old_runs
    seq = {r["name"]: r["seq"] for r in ctx.rows("SELECT name, seq FROM sqlite_sequence", db=db)}
    maxes = ctx.rows("SELECT (SELECT max(run_id) FROM callrail_runs) AS runs,"
                     " (SELECT max(id) FROM callrail_responses) AS responses", db=db)[0]
    assert seq == {"callrail_runs": maxes["runs"], "callrail_responses": maxes["responses"]}, seq
    assert (maxes["runs"], maxes["responses"]) == (2, 10), maxes
    # the new columns, filled from the old rows
    resp = {r["id"]: r for r in ctx.rows("SELECT * FROM callrail_responses", db=db)}
    for i in range(1, 11):
        assert resp[i]["record_key"] == str(i if i <= 8 else i - 8), resp[i]
    for i in range(1, 6):
        assert resp[i]["remote_id"].startswith("COM"), resp[i]
    assert [resp[i]["remote_id"] for i in range(6, 11)] == [None] * 5
    delivered = ctx.rows("SELECT record_key, remote_id, response_id FROM callrail_delivered"
                         " ORDER BY record_key", db=db)
    assert [(d["record_key"], d["remote_id"]) for d in delivered] == [
        (str(i), resp[i]["remote_id"]) for i in range(1, 6)]
    # opened again: nothing changes
    before = snapshot(db)
    ctx.sql("SELECT 1;", db=db)
    assert snapshot(db) == before, "a second load changed the upgraded file"

    fake = FixedFake(ctx.dir, PORT)
    try:
        # the same 8 records: 1-5 skipped, 6-7 held, 8 sent once
        send(ctx, db, "companies", SHOPS)
        log = fake.log()
        assert [(e["method"], e["path"], e["body"], e["status"]) for e in log] == [
            ("POST", "/v3/a/%s/companies.json" % ACC, '{"id":8,"name":"Shop 8"}', 201)], log
        r3 = ctx.rows("SELECT * FROM callrail_runs WHERE run_id = 3", db=db)[0]
        assert (r3["destination"], r3["status"], r3["records"], r3["requests"], r3["ok"],
                r3["skipped"], r3["changed"]) == ("companies", "done", 8, 1, 1, 7, 0), r3
        new = ctx.rows("SELECT id, record_key, remote_id FROM callrail_responses WHERE id > 10",
                       db=db)
        assert [(t["id"], t["record_key"]) for t in new] == [(11, "8")], new
        assert new[0]["remote_id"] == json.loads(log[0]["response"])["id"]
        # recovery is per destination: the killed run of "slow" is still running
        (slow,) = ctx.rows("SELECT status FROM callrail_runs WHERE run_id = 2", db=db)
        assert slow["status"] == "running", slow
        # the next send of "slow" recovers it; its records stay held
        send(ctx, db, "slow", SLOW)
        assert len(fake.log()) == 1, fake.log()
        runs = {r["run_id"]: r for r in ctx.rows("SELECT * FROM callrail_runs", db=db)}
        assert runs[2]["status"] == "interrupted" and runs[2]["finished_at"], runs[2]
        assert runs[2]["unknown"] == 2, runs[2]
        assert (runs[4]["status"], runs[4]["requests"], runs[4]["skipped"]) == ("done", 0, 2)
        pend = ctx.rows("SELECT state, error FROM callrail_responses WHERE id IN (9, 10)", db=db)
        assert [p["state"] for p in pend] == ["unknown", "unknown"] and all(
            p["error"] for p in pend), pend
        # a third send of "companies": still only 6 and 7 unresolved, nothing sent
        send(ctx, db, "companies", SHOPS)
        assert len(fake.log()) == 1
        assert ctx.rows("PRAGMA integrity_check", db=db) == [{"integrity_check": "ok"}]
    finally:
        fake.stop()


def test_an_upgrade_inside_a_statement_leaves_nothing_behind(ctx):
    """Loaded with SELECT load_extension(...), the upgrade runs inside the
    user's statement, on the user's connection: it completes, and leaves no
    function of its own registered there."""
    db = upgraded_copy(ctx)
    proc = subprocess.run(
        ctx.mode.prefix + ["sqlite3", "-batch", db], capture_output=True, text=True, timeout=120,
        env=ctx.mode.env,
        input="SELECT load_extension(%s);\n"
              "SELECT value FROM callrail_meta WHERE key = 'schema_version';\n"
              "SELECT count(*) FROM pragma_function_list WHERE name = 'callrail_identity';\n"
              % q(ctx.ext))
    out = proc.stdout + proc.stderr
    assert not ctx.mode.sanitizer_report(out) and proc.returncode == 0, out
    assert out == "\n2\n0\n", out
    assert ctx.rows("PRAGMA integrity_check", db=db) == [{"integrity_check": "ok"}]
    assert [d["record_hash"] for d in ctx.rows("SELECT record_hash FROM callrail_delivered"
                                               " ORDER BY record_key", db=db)] == [
        d["record_hash"] for d in hashes_after_upgrade_at_load(ctx)]


def hashes_after_upgrade_at_load(ctx):
    """The identities an upgrade at load gives the fixture's delivered keys."""
    db = upgraded_copy(ctx, "reference.db")
    ctx.sql("SELECT 1;", db=db)
    return ctx.rows("SELECT record_hash FROM callrail_delivered ORDER BY record_key", db=db)


def test_a_database_of_a_newer_schema_is_refused(ctx):
    db = upgraded_copy(ctx, "newer.db")
    ctx.sql("SELECT 1;", db=db)
    plain(db, "UPDATE callrail_meta SET value = 99 WHERE key = 'schema_version';")
    before = snapshot(db)
    outs = run_cases(ctx, CRED, [
        "SELECT * FROM callrail_preview('companies', 'SELECT 8 AS id, ''Shop 8'' AS name');",
        "SELECT * FROM callrail_send('companies', 'SELECT 8 AS id, ''Shop 8'' AS name');",
        "SELECT callrail_resolve(6, 'not_delivered');",
    ], db=db, env=TOKEN_ENV, one_each=True)
    for out in outs:
        assert "this database was written by a newer callrail-sqlite (schema 99)" in out, out
    assert snapshot(db) == before, "a refused file was changed"
