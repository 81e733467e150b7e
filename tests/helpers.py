"""Helpers shared by the scenario tests (tests/test_*.py).

tests/run.py puts this directory on sys.path, so a test file imports what it
needs with `from helpers import ...`.  Every function is plain: it takes the
test's Ctx (see tests/run.py) where it needs the shell, the database or the
fake server, and fails with AssertionError like the tests themselves.
"""
import json
import os
import signal
import socket
import subprocess
import time
from datetime import datetime, timezone

ACC = "ACC0000000000000000000000000000001"
COMPANIES = "/v3/a/{account_id}/companies.json"
COMPANY = "/v3/a/{account_id}/companies/{company_id}.json"
NO_QUOTA = {"general": {"hour": None, "day": None, "minute": None, "second": None}}


# -- SQL text ---------------------------------------------------------------------------------

def q(s):
    """An SQL string literal."""
    return "'" + str(s).replace("'", "''") + "'"


def dest_sql(name, cfg, active=True, cred="fake"):
    """SQL that defines destination name with config cfg (credential cred
    unless cfg names one) and, with active, activates it."""
    c = {"credential": cred}
    c.update(cfg)
    s = "SELECT callrail_destination(%s, %s);\n" % (q(name), q(json.dumps(c)))
    if active:
        s += "SELECT callrail_activate(%s);\n" % q(name)
    return s


def companies_dest(**extra):
    """Config of a POST to the companies of account ACC with short retry
    delays, updated with extra."""
    cfg = {"url": COMPANIES, "params": {"account_id": ACC}, "retry": {"base_delay_ms": 10}}
    cfg.update(extra)
    return cfg


def names_query(n, prefix="Shop", first=1):
    """n records {"name": "<prefix> i"}, i = first..first+n-1, in order."""
    return ("WITH RECURSIVE s(i) AS (SELECT %d UNION ALL SELECT i+1 FROM s WHERE i<%d) "
            "SELECT '%s ' || i AS name FROM s ORDER BY i" % (first, first + n - 1, prefix))


def names(n, prefix="Shop", first=1):
    """The names names_query(n, prefix, first) yields, in order."""
    return ["%s %d" % (prefix, i) for i in range(first, first + n)]


def send_query(dest, query):
    """SQL selecting every result row of callrail_send(dest, query)."""
    return "SELECT * FROM callrail_send(%s, %s);" % (q(dest), q(query))


# -- running the shell ------------------------------------------------------------------------

def split_output(out):
    """The JSON arrays the shell printed in .mode json, and any other text."""
    dec = json.JSONDecoder()
    arrays, rest, i = [], [], 0
    while i < len(out):
        if out[i].isspace():
            i += 1
            continue
        if out[i] == "[":
            try:
                obj, i = dec.raw_decode(out, i)
                arrays.append(obj)
                continue
            except ValueError:
                pass
        j = out.find("\n", i)
        j = len(out) if j < 0 else j + 1
        rest.append(out[i:j])
        i = j
    return arrays, "".join(rest)


def script_of(ctx, setup, query, cred=True):
    """A shell script: the credential (with cred) and setup quietly, then
    query in JSON mode."""
    return (".output /dev/null\n" + (ctx.setup_credential() if cred else "") + setup +
            ".output stdout\n.mode json\n" + query + "\n")


def run(ctx, setup, query, cred=True, expect_error=False, db=None):
    """Runs setup quietly, then query in JSON mode.  Returns (rows of the
    query, other output).  Without expect_error any error text fails."""
    rc, out = ctx.sql(script_of(ctx, setup, query, cred), db=db, check=False)
    arrays, rest = split_output(out)
    if not expect_error:
        assert rc == 0 and rest.strip() == "", "unexpected shell output (rc %d):\n%s" % (rc, out)
    rows = [r for a in arrays for r in a]
    return rows, rest


def run_cases(ctx, prelude, stmts, db=None, env=None, one_each=False):
    """Runs prelude, then each statement after a marker line; returns the
    output of each statement (stdout and stderr).  The shell must not
    crash (the runner also fails on any sanitizer report).  With one_each
    there must be exactly one output per statement."""
    script = prelude + ".print @@start\n"
    for i, stmt in enumerate(stmts):
        script += ".print @@case %d\n%s\n" % (i, stmt)
    script += ".print @@end\n"
    rc, out = ctx.sql(script, db=db, env=env, check=False)
    assert rc in (0, 1), "sqlite3 exited %d (crash?):\n%s" % (rc, out[-3000:])
    assert "@@end" in out, "sqlite3 stopped early:\n" + out[-3000:]
    body = out.split("@@start\n", 1)[1].split("@@end", 1)[0]
    parts = body.split("@@case ")[1:]
    if one_each:
        assert len(parts) == len(stmts)
    return [p.split("\n", 1)[1] if "\n" in p else "" for p in parts]


def wait_for(proc, ready, timeout=60, ended="the shell ended too early",
             never="the run never got there"):
    """Polls ready() until it is true.  Fails with `ended` (and the shell's
    output) if the shell exits first, or kills it and fails with `never`
    after timeout seconds."""
    deadline = time.time() + timeout
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(ended + ":\n" + proc.stdout.read())
        if time.time() > deadline:
            proc.kill()
            raise AssertionError(never)
        time.sleep(0.02)


def finish(ctx, proc, timeout=60, late="the shell did not finish"):
    """Waits for a spawned shell to exit (killing it and failing with `late`
    after timeout seconds) and fails on a sanitizer report.  Returns (exit
    code, output)."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(late + ":\n" + out)
    report = ctx.mode.sanitizer_report(out)
    assert not report and proc.returncode not in (97, 98), "%s report:\n%s" % (report, out)
    return proc.returncode, out


def interrupt_when(ctx, proc, ready, timeout=60, output=None):
    """Waits for ready(), sends SIGINT to the shell's process group (as Ctrl-C
    does) and waits for the shell to exit.  Returns (seconds from the signal
    to the exit, output, time of the signal).  output: the Output reading
    the shell's, if there is one."""
    wait_for(proc, ready, timeout, ended="the shell ended before the interrupt",
             never="the run never reached the point to interrupt")
    t0 = time.time()
    os.killpg(proc.pid, signal.SIGINT)
    if output:
        _, out = output.done(ctx, timeout=30)
    else:
        _, out = finish(ctx, proc, timeout=30, late="the shell still ran 30 s after SIGINT")
    latency = time.time() - t0
    return latency, out, t0


def exit_limit(ctx):
    """SPEC: a run stops within a second.  Valgrind's own exit (leak check)
    comes on top of that; the run's finished_at is checked in every mode."""
    return 1.0 if ctx.mode.name != "valgrind" else 6.0


# -- the fake server and the audit tables -----------------------------------------------------

def seed_companies(ctx, n):
    """Creates companies "Seed 1".."Seed n" in the fake's account ACC;
    returns them as the fake stored them (with their ids)."""
    objs = [{"name": "Seed %d" % i} for i in range(1, n + 1)]
    return ctx.fake.call("POST", "/__fake/seed",
                         {"account": ACC, "resource": "companies", "objects": objs})


def responses(ctx, db=None):
    """The rows of callrail_responses, oldest first."""
    return ctx.rows("SELECT * FROM callrail_responses ORDER BY id", db=db)


def runs(ctx, db=None):
    """The rows of callrail_runs, oldest first."""
    return ctx.rows("SELECT * FROM callrail_runs ORDER BY run_id", db=db)


def log_url(ctx, e):
    """The full URL of the fake's log entry e, as callrail_responses writes it."""
    return ctx.base + e["path"] + ("?" + e["query"] if e["query"] else "")


def iso_seconds(z):
    """Seconds of an ISO time as the extension writes it (2024-01-01T00:00:00.123Z)."""
    return datetime.strptime(z, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def body_name(body):
    """The "name" of a JSON request body."""
    return json.loads(body)["name"]


def committed_posts(log):
    """How many times the fake created each POSTed body: {body: count}
    over the POSTs it answered with a 2xx (one it had answered when the
    client was gone counts too: the fake logs its status all the same)."""
    counts = {}
    for e in log:
        if e["method"] == "POST" and 200 <= (e["status"] or 0) < 300:
            counts[e["body"]] = counts.get(e["body"], 0) + 1
    return counts


def settled_log(ctx, quiet=0.3, timeout=10):
    """The fake's log once it has stopped growing for `quiet` seconds: after
    a kill -9, a request already written to the socket may still be on its
    way in.  (The only wait on time, and only after the process is gone.)"""
    log, deadline = ctx.fake.log(), time.time() + timeout
    while time.time() < deadline:
        time.sleep(quiet)
        now = ctx.fake.log()
        if len(now) == len(log):
            break
        log = now
    return log


def post_bodies(log):
    """Bodies of the POSTs CallRail may have acted on (a 429 is a refusal)."""
    return [e["body"] for e in log if e["method"] == "POST" and e["status"] != 429]


# -- assertions -------------------------------------------------------------------------------

def assert_run(run_row, **counts):
    """Each column named in counts has that value in the callrail_runs row."""
    for k, v in counts.items():
        assert run_row[k] == v, "run %s: %s is %r, expected %r (%r)" % (
            run_row["run_id"], k, run_row[k], v, run_row)


def assert_rows_match_table(result_rows, table):
    """Every result row states the same facts as its callrail_responses row."""
    by_id = {r["id"]: r for r in table}
    assert len(by_id) == len(table)
    for r in result_rows:
        t = by_id.get(r["response_id"])
        assert t is not None, "no callrail_responses row %r" % r["response_id"]
        for col in ("batch", "records", "method", "url", "status", "state", "error",
                    "response_body", "attempts", "duration_ms"):
            want = t["response_body" if col == "response_body" else col]
            assert r[col] == want, "response %d: %s is %r in the result, %r in the table" % (
                r["response_id"], col, r[col], want)


def assert_no_post_twice(log):
    """No body was POSTed more than once (429 refusals aside)."""
    seen, twice = set(), []
    for b in post_bodies(log):
        if b in seen:
            twice.append(b)
        seen.add(b)
    assert not twice, "POSTed more than once: %r" % twice


def assert_run_counts_match_rows(run_row, table):
    """The run's totals are those of its rows."""
    mine = [t for t in table if t["run_id"] == run_row["run_id"]]

    def total(state):
        return sum(t["records"] for t in mine if t["state"] == state)
    assert_run(run_row, requests=sum(1 for t in mine if t["state"] != "invalid"), ok=total("ok"),
               failed=total("failed"), unknown=total("unknown"), invalid=total("invalid"))


def check_audit(ctx, log, table, maybe_unsent=(), db=None):
    """The fake's request log against callrail_responses, request for request.

    - every request the fake received belongs to a row with the same method,
      URL and body: nothing is lost;
    - a row made exactly `attempts` requests; a `pending` row, a row cut off
      by an interrupt, or a row in maybe_unsent (pending when its process
      died) at most that many, since it may have been written just before the
      request left;
    - only a row's last request may have been a 2xx, unless an idempotent
      request's answer came too late (timeout): no success is ever repeated;
    - a row with a status has the status of its last request; an `ok` row's is
      a 2xx; a `pending` or `unknown` row has none.
    - the database passes PRAGMA integrity_check, which checks the schema's
      CHECK constraints: the audit connection writes with them off.
    db is the database file (default: the test's).
    Returns {row id: [its log entries]}."""
    integrity = ctx.rows("PRAGMA integrity_check", db=db)
    assert integrity == [{"integrity_check": "ok"}], integrity
    maybe_unsent = set(maybe_unsent)
    entries = {}
    for e in sorted(log, key=lambda e: e["seq"]):
        key = (e["method"], log_url(ctx, e), e["body"] if e["body"] != "" else None)
        entries.setdefault(key, []).append(e)
    rows = {}
    for t in table:
        if t["state"] != "invalid":
            rows.setdefault((t["method"], t["url"], t["request_body"]), []).append(t)
    lost = [k for k in entries if k not in rows]
    assert not lost, "%d requests reached the fake without a row, e.g. %r" % (len(lost), lost[:3])
    out = {}
    for key, ts in rows.items():
        es = entries.get(key, [])
        # later rows own the later requests: walk both from the end
        for t in sorted(ts, key=lambda t: -t["id"]):
            short_ok = (t["state"] == "pending" or t["id"] in maybe_unsent or
                        "interrupted" in (t["error"] or ""))
            n = t["attempts"]
            mine = es[-n:] if n else []
            assert len(mine) == n or short_ok, (
                "row %d (%s, attempts %d) has %d requests in the fake's log: %r"
                % (t["id"], t["state"], n, len(mine), t))
            es = es[:len(es) - len(mine)]
            out[t["id"]] = mine
            for e in mine[:-1]:
                assert not (200 <= (e["status"] or 0) < 300) or (
                    e["fault"] == "delay" and e["method"] in ("PUT", "DELETE")), (
                    "row %d: a request answered %s was sent again" % (t["id"], e["status"]))
            if t["status"] is not None:
                assert mine and mine[-1]["status"] == t["status"], (
                    "row %d has status %s, the fake answered %r" % (
                        t["id"], t["status"], [e["status"] for e in mine]))
            if t["state"] == "ok":
                assert t["status"] is not None and 200 <= t["status"] < 300, t
            if t["state"] in ("pending", "unknown"):
                assert t["status"] is None, t
            if t["state"] in ("failed", "unknown"):
                assert t["error"], "row %d is %s without an error" % (t["id"], t["state"])
        assert not es, "%d requests reached the fake without a row: %r" % (len(es), es[:2])
    return out


# -- other local servers ----------------------------------------------------------------------

def free_port():
    """A loopback port with nothing listening on it."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def self_signed_cert(directory):
    """Makes cert.pem and key.pem for 127.0.0.1 in directory (a test's TLS
    server); returns their paths."""
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


# -- other processes on the test database -----------------------------------------------------

class LockHolder:
    """Another process holding the database's write lock: a plain sqlite3
    shell (no extension) inside BEGIN IMMEDIATE with a row inserted, until
    release().  Its own wait for the lock (when a run writes) is 60 s."""

    def __init__(self, ctx, db=None):
        self.proc = subprocess.Popen(["sqlite3", "-batch", db or ctx.db], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     cwd=ctx.dir, start_new_session=True)
        self.proc.stdin.write(".timeout 60000\nCREATE TABLE IF NOT EXISTS lock_holder(x);\n"
                              "BEGIN IMMEDIATE;\nINSERT INTO lock_holder VALUES (1);\n"
                              ".print holding\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line == "holding\n", "the lock holder failed: %r" % (line + self.proc.stdout.read())

    def release(self):
        """Commits (its row stays: the table is the holder's own) and exits."""
        if self.proc.poll() is None:
            self.proc.stdin.write("COMMIT;\n")
            self.proc.stdin.close()
        out = self.proc.stdout.read()
        assert self.proc.wait(30) == 0 and out == "", "the lock holder failed: %r" % out


def write_locked(ctx, db=None):
    """True while another connection holds the database's write lock (this
    probe takes it for an instant when it is free)."""
    import sqlite3
    con = sqlite3.connect(db or ctx.db, timeout=0, isolation_level=None)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as e:
        assert "locked" in str(e) or "busy" in str(e), e
        return True
    finally:
        con.close()


def dead_pid():
    """A pid no process of this host has (the highest free one)."""
    pid = int(open("/proc/sys/kernel/pid_max").read()) - 1
    while os.path.exists("/proc/%d" % pid):
        pid -= 1
    return pid


class Output:
    """Collects a spawned shell's output while it runs (stderr, where errors
    and the progress line go, is unbuffered), so that a test can wait for a
    text; done() waits for the exit like finish()."""

    def __init__(self, proc):
        import threading
        self.proc, self.chunks = proc, []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for chunk in iter(lambda: self.proc.stdout.read(1), ""):
            self.chunks.append(chunk)

    def text(self):
        return "".join(self.chunks)

    def has(self, s):
        return s in self.text()

    def done(self, ctx, timeout=60):
        """(exit code, output) once the shell exited; fails on a sanitizer
        report or when it runs longer than timeout seconds."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("the shell did not finish:\n" + self.text())
        self.thread.join(10)
        out = self.text()
        report = ctx.mode.sanitizer_report(out)
        assert not report and self.proc.returncode not in (97, 98), "%s report:\n%s" % (report, out)
        return self.proc.returncode, out
