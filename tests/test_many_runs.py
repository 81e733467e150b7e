# Many runs, one truth: one live run per destination across processes and
# threads, liveness with a lease, one quota ledger, audit tables that
# planted triggers cannot bend.
#
# Properties checked (fake request log vs. callrail_responses/callrail_runs):
#   - two and three sqlite3 processes running one keyed POST send (60
#     records, concurrency 4), started together and staggered (a later one
#     starts once the database holds the first one's first row), repeated:
#     every record is POSTed exactly once, each run's ok + skipped is every
#     record, the runs' ok add up to the records, no two runs of the
#     destination were live at once, and a later process says on its
#     progress line which run it waits for;
#   - the same with on_busy "error": a process that finds a live run fails at
#     once naming it (run id, host, pid, started_at), leaves no run row and
#     sends nothing;
#   - two and three threads of one process, one connection each: every
#     record is POSTed once;
#   - two destinations on one account in two processes against a fake that
#     enforces 30 requests an hour, rate_limit per_hour 30, on_quota "stop",
#     25 records each: zero 429s, at most 30 requests, and a stopped run's
#     error names the account, the window and when it frees;
#   - kill -9 of two overlapping processes at random moments (seeded), every
#     left-over row resolved with callrail_resolve from the fake's log, then
#     a clean run: every record created exactly once, no request without its
#     row;
#   - a run of another host with a fresh heartbeat blocks the destination
#     (on_busy "error" names it; its pending row stays pending); once its
#     heartbeat is older than lease_ms the next send recovers it (row unknown,
#     run interrupted) and runs, also when a send was already waiting for it;
#     Ctrl-C of a waiting send stops it within a second without a run row;
#     an `error` run's pending rows are recovered; a run taken for dead while
#     its caller was away (a slow query, a paused consumer) sends nothing
#     more when the caller comes back;
#   - triggers planted on each audit table change nothing: no record POSTed
#     twice, every request has exactly one row; a view named
#     callrail_delivered is refused with an error naming it, nothing sent;
#     in an in-memory database (audit rows written through the user's
#     connection) a trigger on an audit table is refused, nothing sent.
import os
import random
import signal
import socket
import subprocess
import time

from helpers import (
    ACC, COMPANIES, assert_no_post_twice, assert_run, assert_run_counts_match_rows, body_name,
    check_audit, committed_posts, companies_dest, dest_sql, exit_limit, finish, interrupt_when,
    iso_seconds, names, names_query, q, responses, runs, script_of, settled_log, split_output, wait_for)

N = 60
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def send_sql(dest="co", n=N, prefix="Shop"):
    return "SELECT state, count(*) AS n FROM callrail_send(%s, %s) GROUP BY state;" % (
        q(dest), q(names_query(n, prefix)))


def overlap_dest(**extra):
    """A keyed POST whose runs overlap: concurrency 4 against a slowed fake,
    progress on (the line a waiting run prints is checked)."""
    cfg = companies_dest(key="name", concurrency=4, progress=True)
    cfg.update(extra)
    return cfg


def fresh_db(ctx, label, setup):
    """A new database file in the test's directory with setup run in it
    (the schema exists before any sender starts, so its rows can be
    watched)."""
    db = os.path.join(ctx.dir, label + ".db")
    ctx.sql(".output /dev/null\n" + ctx.setup_credential() + setup, db=db)
    return db


def cron_script(ctx, send):
    """What a scheduled job runs: its own writes (callrail_credential) wait
    for a live run's audit commits instead of failing "database is locked"."""
    return ".timeout 10000\n" + script_of(ctx, "", send)


class Senders:
    """Shells started in a `with` block; any still running at its end (a
    failed assertion) is killed, so it cannot send into the next test."""

    def __init__(self):
        self.procs = []

    def __enter__(self):
        return self

    def add(self, proc):
        self.procs.append(proc)
        return proc

    def __exit__(self, *exc):
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.communicate()


def has_rows(ctx, db):
    """Ready when the database holds a callrail_responses row."""
    return lambda: ctx.rows("SELECT 1 FROM callrail_responses LIMIT 1", db=db) != []


def start_senders(ctx, senders, db, n_procs, staggered, send):
    """Starts n_procs shells running send on db: together, or each once the
    database holds a row of the first (its first pending request)."""
    procs = [senders.add(ctx.spawn(cron_script(ctx, send), db=db))]
    for _ in range(n_procs - 1):
        if staggered:
            wait_for(procs[0], has_rows(ctx, db), ended="the first run ended before its first row")
        procs.append(senders.add(ctx.spawn(cron_script(ctx, send), db=db)))
    return procs


def assert_runs_never_overlap(run_rows):
    """No two runs of a destination were live at once: ordered by start,
    each started after the previous one finished."""
    done = sorted(run_rows, key=lambda r: r["started_at"])
    for a, b in zip(done, done[1:]):
        assert iso_seconds(a["finished_at"]) <= iso_seconds(b["started_at"]), (
            "runs %d and %d of one destination were live at once: %r" % (
                a["run_id"], b["run_id"], run_rows))


def assert_each_record_once(log, n=N, prefix="Shop"):
    """Every record was created exactly once (and nothing else was)."""
    counts = {body_name(b): c for b, c in committed_posts(log).items()}
    assert counts == {k: 1 for k in names(n, prefix)}, "created not once: %r" % {
        k: c for k, c in counts.items() if c != 1} or sorted(set(names(n, prefix)) - set(counts))
    assert_no_post_twice(log)


def check_one_truth(ctx, db, n_runs, n=N):
    """After overlapping sends on db: each record POSTed once, each run done
    with ok + skipped = n, the ok add up, the audit matches the fake."""
    log = ctx.fake.log()
    table = responses(ctx, db=db)
    run_rows = runs(ctx, db=db)
    assert len(run_rows) == n_runs, run_rows
    assert_each_record_once(log, n)
    for r in run_rows:
        assert_run(r, status="done", records=n, failed=0, unknown=0)
        assert r["ok"] + r["skipped"] == n, r
        assert_run_counts_match_rows(r, table)
    assert sum(r["ok"] for r in run_rows) == n, run_rows
    assert_runs_never_overlap(run_rows)
    check_audit(ctx, log, table, db=db)
    return run_rows


# -- overlapping processes --------------------------------------------------------------------

def overlapping_rounds(ctx, rounds, on_busy_error):
    """Runs each (processes, staggered) case `rounds` times on a fresh file.
    Returns how many later processes found a live run (waited or failed)."""
    busy = 0
    cases = [(p, s) for p in (2, 3) for s in (False, True)]
    for i in range(rounds):
        for n_procs, staggered in cases:
            ctx.fake.reset()
            ctx.fake.config(faults={"delay_ms": 25})
            extra = {"on_busy": "error"} if on_busy_error else {}
            db = fresh_db(ctx, "r%d-%d-%d" % (i, n_procs, staggered),
                          dest_sql("co", overlap_dest(**extra)))
            with Senders() as senders:
                procs = start_senders(ctx, senders, db, n_procs, staggered, send_sql())
                outs = [finish(ctx, p) + (p.pid,) for p in procs]
            check = check_busy_error if on_busy_error else check_waited
            busy += check(ctx, db, outs, staggered)
    return busy


def check_waited(ctx, db, outs, staggered):
    """Every process ran to the end; the waiting ones said whom they waited for."""
    for rc, out, _ in outs:
        assert rc == 0 and "Error" not in out, out
    run_rows = check_one_truth(ctx, db, len(outs))
    waited = [out for _, out, _ in outs if "waiting for run " in out]
    for out in waited:
        assert "(host %s, pid " % socket.gethostname() in out and "started_at " in out, out
    if staggered:
        assert waited, "the later process never waited for the first: %r" % run_rows
    return len(waited)


def check_busy_error(ctx, db, outs, staggered):
    """One process sent; each other one either failed at once naming the
    live run, or started after it ended and skipped every record."""
    run_rows = runs(ctx, db=db)
    by_pid = {r["pid"]: r for r in run_rows}
    failed = [(out, pid) for rc, out, pid in outs if rc != 0]
    for out, pid in failed:
        assert pid not in by_pid, "a refused process has a run row: %r" % by_pid[pid]
        live = [r for r in run_rows if "is busy: run %d (host %s, pid %d, started_at %s) is "
                "sending to it" % (r["run_id"], r["host"], r["pid"], r["started_at"]) in out]
        assert len(live) == 1 and 'destination "co"' in out, out
        assert iso_seconds(live[0]["finished_at"]) > iso_seconds(live[0]["started_at"])
    for rc, out, _ in outs:
        assert rc != 0 or "Error" not in out, out
    check_one_truth(ctx, db, len(outs) - len(failed))
    if staggered:
        assert failed, "the later process found no live run: %r" % run_rows
    return len(failed)


def test_overlapping_processes_post_every_record_exactly_once_and_later_ones_wait(ctx):
    busy = overlapping_rounds(ctx, 2, on_busy_error=False)
    print("     8 overlapping rounds (2 and 3 processes, together and staggered): "
          "0 POSTs twice, %d later processes waited" % busy, flush=True)


def test_with_on_busy_error_a_later_process_fails_at_once_naming_the_live_run(ctx):
    busy = overlapping_rounds(ctx, 2, on_busy_error=True)
    print("     8 rounds with on_busy \"error\": 0 POSTs twice, %d processes refused" % busy,
          flush=True)


def test_on_busy_error_refuses_while_the_live_run_is_still_sending(ctx):
    """The refusal is at once: the live run is still running when the later
    process has already exited."""
    ctx.fake.config(faults={"delay_ms": 100})
    db = fresh_db(ctx, "busy", dest_sql("co", overlap_dest(on_busy="error")))
    with Senders() as senders:
        (a,) = start_senders(ctx, senders, db, 1, False, send_sql())
        wait_for(a, has_rows(ctx, db))
        b = senders.add(ctx.spawn(cron_script(ctx, send_sql()), db=db))
        rc, out = finish(ctx, b)
        (ra,) = runs(ctx, db=db)
        assert ra["status"] == "running", "A ended before B was refused: %r" % ra
        assert rc != 0 and "is busy: run %d (host %s, pid %d, started_at %s)" % (
            ra["run_id"], socket.gethostname(), a.pid, ra["started_at"]) in out, out
        ctx.fake.config(faults={"delay_ms": 0})
        rc, out = finish(ctx, a)
        assert rc == 0, out
    check_one_truth(ctx, db, 1)


# -- threads of one process -------------------------------------------------------------------

def build_many_threads(ctx):
    """Compiles tests/many_threads.c into the test's directory."""
    exe = os.path.join(ctx.dir, "many_threads")
    subprocess.run(["cc", "-std=c11", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-pthread",
                    "-D_XOPEN_SOURCE=700", "-o", exe, os.path.join(ROOT, "tests", "many_threads.c"),
                    "-lsqlite3"], check=True)
    return exe


def test_threads_of_one_process_each_with_its_connection_post_every_record_once(ctx):
    exe = build_many_threads(ctx)
    script = os.path.join(ctx.dir, "send.sql")
    with open(script, "w") as f:
        f.write(ctx.setup_credential() + send_sql())
    for i, (n_threads, how) in enumerate([(2, "together"), (3, "together"), (2, "stagger"),
                                          (3, "stagger")]):
        ctx.fake.reset()
        ctx.fake.config(faults={"delay_ms": 25})
        db = fresh_db(ctx, "t%d" % i, dest_sql("co", overlap_dest(progress=False)))
        proc = subprocess.Popen(ctx.mode.prefix + [exe, ctx.ext, db, script, str(n_threads), how],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=ctx.mode.env, cwd=ctx.dir)
        rc, out = finish(ctx, proc)
        assert rc == 0 and out.count(": ok\n") == n_threads, out
        check_one_truth(ctx, db, n_threads)


# -- one quota ledger -------------------------------------------------------------------------

def test_two_destinations_on_one_account_in_two_processes_share_the_hourly_quota(ctx):
    ctx.fake.config(quota={"general": {"hour": 30, "day": None, "minute": None, "second": None}},
                    faults={"delay_ms": 25})
    cfg = {"key": "name", "concurrency": 4, "rate_limit": {"per_hour": 30}, "on_quota": "stop"}
    db = fresh_db(ctx, "quota", dest_sql("a", companies_dest(**cfg)) +
                  dest_sql("b", companies_dest(**cfg)))
    with Senders() as senders:
        procs = [senders.add(ctx.spawn(cron_script(ctx, send_sql(d, 25, d.upper())), db=db))
                 for d in "ab"]
        for p in procs:
            rc, out = finish(ctx, p)
            assert rc == 0 and "Error" not in out, out
    log = ctx.fake.log()
    table = responses(ctx, db=db)
    n429 = sum(1 for e in log if e["status"] == 429)
    print("     shared quota: %d requests, %d answered 429" % (len(log), n429), flush=True)
    assert n429 == 0, "%d requests answered 429" % n429
    assert len(log) <= 30, "%d requests against a budget of 30" % len(log)
    check_audit(ctx, log, table, db=db)
    assert_no_post_twice(log)
    run_rows = runs(ctx, db=db)
    stopped = [r for r in run_rows if r["status"] == "quota_exhausted"]
    assert stopped and sum(r["ok"] for r in run_rows) == len(log), run_rows
    for r in stopped:
        assert_run_counts_match_rows(r, table)
        err = r["error"] or ""
        assert "account %s/v3/a/%s" % (ctx.base, ACC) in err and "30 requests per hour" in err, r
        frees = err.split("frees at ", 1)[1].split()[0].rstrip(".;,").replace("Z", ".0Z")
        first_sent = min(t["sent_ms"] for t in table) / 1000.0
        assert first_sent + 3600 - 5 <= iso_seconds(frees) <= time.time() + 3601, (frees, r)


# -- kill -9 of overlapping processes ---------------------------------------------------------

def kill_at(ctx, procs, thresholds, timeout=60):
    """Kills each process (SIGKILL to its group) once the fake has received
    its threshold of requests; a process that ends first is left alone."""
    deadline = time.time() + timeout
    pending = list(zip(procs, thresholds))
    while pending:
        n = len(ctx.fake.log())
        for p, t in list(pending):
            if p.poll() is not None:
                pending.remove((p, t))
            elif n >= t:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
                pending.remove((p, t))
        assert time.time() < deadline, "the senders neither reached %r nor ended" % thresholds
        time.sleep(0.01)
    for p in procs:
        p.communicate()


def resolve_from_log(ctx, db, log):
    """Resolves every pending or unknown row: delivered if the fake created
    its body, else not_delivered.  Returns how many of each."""
    created = committed_posts(log)
    left = [t for t in responses(ctx, db=db) if t["state"] in ("pending", "unknown")]
    outcome = {t["id"]: "delivered" if created.get(t["request_body"]) else "not_delivered"
               for t in left}
    stmts = "".join("SELECT callrail_resolve(%d, %s);\n" % (i, q(o)) for i, o in outcome.items())
    _, out = ctx.sql(".output /dev/null\n" + stmts, db=db)
    assert "rror" not in out, out
    states = {t["id"]: t["state"] for t in responses(ctx, db=db)}
    for i, o in outcome.items():
        assert states[i] == ("ok" if o == "delivered" else "failed"), (i, o, states[i])
    return sum(1 for o in outcome.values() if o == "delivered"), len(outcome)


def assert_every_request_has_its_row(log, table):
    """Sent-without-row: every request the fake received has a row with its
    body; and no body has two `ok` rows."""
    bodies = {t["request_body"] for t in table}
    orphans = [e["body"] for e in log if e["body"] not in bodies]
    assert not orphans, "%d requests without a row: %r" % (len(orphans), orphans[:3])
    ok = [t["request_body"] for t in table if t["state"] == "ok"]
    assert len(ok) == len(set(ok)), "a record has two ok rows"


def test_kill_9_of_two_overlapping_processes_then_resolve_then_one_run_creates_each_once(ctx):
    seed = 20261207
    rnd = random.Random(seed)
    dup_total = 0
    for i in range(5):
        ctx.fake.reset()
        ctx.fake.config(faults={"delay_ms": 30})
        db = fresh_db(ctx, "k%d" % i, dest_sql("co", overlap_dest(progress=False)))
        staggered = rnd.random() < 0.5
        thresholds = [rnd.randint(1, N - 5), rnd.randint(1, N - 5)]
        why = "seed %d, round %d, kill at %r requests" % (seed, i, thresholds)
        with Senders() as senders:
            kill_at(ctx, start_senders(ctx, senders, db, 2, staggered, send_sql()), thresholds)
        log = settled_log(ctx)
        delivered, resolved = resolve_from_log(ctx, db, log)
        ctx.fake.config(faults={"delay_ms": 0})
        rc, out = ctx.sql(cron_script(ctx, send_sql()), db=db, check=False)
        assert rc == 0 and "rror" not in out, why + "\n" + out
        log = ctx.fake.log()
        table = responses(ctx, db=db)
        try:
            assert_each_record_once(log)
            assert_every_request_has_its_row(log, table)
            assert ctx.rows("PRAGMA integrity_check", db=db) == [{"integrity_check": "ok"}]
            made = [c["name"] for c in ctx.fake.state()["objects"]["companies"]]
            assert sorted(made) == sorted(names(N)), "companies made: %d" % len(made)
            assert [t for t in table if t["state"] in ("pending", "unknown")] == []
        except AssertionError as e:
            raise AssertionError("%s: %s" % (why, e))
        dup_total += sum(c - 1 for c in committed_posts(log).values())
        print("     %s: %d left over, %d resolved delivered; 0 created twice" % (
            why, resolved, delivered), flush=True)
    assert dup_total == 0


test_kill_9_of_two_overlapping_processes_then_resolve_then_one_run_creates_each_once.slow = True


# -- a run of another host --------------------------------------------------------------------

def fabricate_run(ctx, db, status, heartbeat_age_ms, name):
    """A send run of "co" by host 'elsewhere' with one pending request for
    record name; returns (run id, response id)."""
    url = ctx.base + COMPANIES.replace("{account_id}", ACC)
    ctx.sql(".output /dev/null\n"
            "INSERT INTO callrail_runs(destination, kind, started_at, status, host, pid, pid_start,"
            " heartbeat_ms, heartbeat_at) VALUES('co', 'send', strftime('%%Y-%%m-%%dT%%H:%%M:%%fZ',"
            " 'now', '-1 minute'), %s, 'elsewhere', 4242, 99, CAST((julianday('now') - 2440587.5)"
            " * 86400000 AS INTEGER) - %d, strftime('%%Y-%%m-%%dT%%H:%%M:%%fZ','now'));\n"
            "INSERT INTO callrail_responses(run_id, destination, records, record_keys, method, url,"
            " request_body, state, attempts, record_key) VALUES(last_insert_rowid(), 'co', 1, "
            "json_array(%s), 'POST', %s, json_object('name', %s), 'pending', 1, %s);\n"
            % (q(status), heartbeat_age_ms, q(name), q(url), q(name), q(name)), db=db)
    row = responses(ctx, db=db)[-1]
    return row["run_id"], row["id"]


def row_state(ctx, db, rid):
    return [t for t in responses(ctx, db=db) if t["id"] == rid][0]


def run_state(ctx, db, run_id):
    return [r for r in runs(ctx, db=db) if r["run_id"] == run_id][0]


def test_a_run_of_another_host_blocks_until_its_lease_expires_then_is_recovered(ctx):
    db = fresh_db(ctx, "lease", dest_sql("co", companies_dest(
        key="name", on_busy="error", lease_ms=10000)))
    run_id, rid = fabricate_run(ctx, db, "running", 0, "Shop 1")
    rc, out = ctx.sql(script_of(ctx, "", send_sql(n=5)), db=db, check=False)
    (ra,) = runs(ctx, db=db)
    assert rc != 0 and "is busy: run %d (host elsewhere, pid 4242, started_at %s)" % (
        run_id, ra["started_at"]) in out, out
    assert ctx.fake.log() == []
    assert row_state(ctx, db, rid)["state"] == "pending"
    assert run_state(ctx, db, run_id)["status"] == "running"
    # its heartbeat is now older than lease_ms: the next send recovers it and runs
    ctx.sql("UPDATE callrail_runs SET heartbeat_ms = heartbeat_ms - 11000 WHERE run_id = %d;"
            % run_id, db=db)
    rc, out = ctx.sql(script_of(ctx, "", send_sql(n=5)), db=db)
    t = row_state(ctx, db, rid)
    assert t["state"] == "unknown" and t["error"], t
    dead = run_state(ctx, db, run_id)
    assert dead["status"] == "interrupted" and dead["finished_at"] and dead["error"], dead
    log = ctx.fake.log()
    assert sorted(body_name(e["body"]) for e in log) == names(4, first=2), log
    assert_run(runs(ctx, db=db)[-1], status="done", ok=4, skipped=1)


def test_a_waiting_send_goes_on_once_the_lease_of_the_live_run_expires(ctx):
    """A run of another host whose heartbeat stops is waited for until its
    lease runs out (here 1.5 s after the send starts), then recovered."""
    db = fresh_db(ctx, "expire", dest_sql("co", overlap_dest(lease_ms=10000)))
    run_id, rid = fabricate_run(ctx, db, "running", 8500, "Shop 1")
    rc, out = ctx.sql(cron_script(ctx, send_sql(n=3)), db=db)
    assert "waiting for run %d (host elsewhere, pid 4242, started_at " % run_id in out, out
    assert row_state(ctx, db, rid)["state"] == "unknown"
    assert run_state(ctx, db, run_id)["status"] == "interrupted"
    assert sorted(body_name(e["body"]) for e in ctx.fake.log()) == names(2, first=2)
    assert_run(runs(ctx, db=db)[-1], status="done", ok=2, skipped=1)


def test_sigint_while_waiting_for_a_live_run_stops_within_a_second_and_sends_nothing(ctx):
    """Ctrl-C of a send that waits for another run: it stops within a
    second, leaves no run row and sends nothing; the live run is untouched."""
    db = fresh_db(ctx, "waitint", dest_sql("co", overlap_dest()) + "CREATE TABLE started(x);\n")
    run_id, rid = fabricate_run(ctx, db, "running", 0, "Shop 1")
    script = ".timeout 10000\n" + script_of(ctx, "INSERT INTO started VALUES(1);\n", send_sql(n=3))
    with Senders() as senders:
        proc = senders.add(ctx.spawn(script, db=db))
        latency, out, _ = interrupt_when(
            ctx, proc, lambda: ctx.rows("SELECT x FROM started", db=db) != [])
    assert latency < exit_limit(ctx), "exit %.2f s after SIGINT" % latency
    assert "interrupted" in out, out
    assert ctx.fake.log() == []
    assert [r["run_id"] for r in runs(ctx, db=db)] == [run_id], runs(ctx, db=db)
    assert row_state(ctx, db, rid)["state"] == "pending"


SLOW_SQL = os.path.join(ROOT, "build", "slow_sql")


def held_sends(mark, go):
    """Two ways a run's caller is away while its statement is not stepped,
    held by slow_sql_wait_file() until the file go exists: the user's query
    computing record 3, and the consumer over its first result row."""
    wait = "slow_sql_wait_file(%s, %s)" % (q(mark), q(go))
    slow_query = ("WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i<5)"
                  " SELECT 'Shop ' || i AS name FROM s WHERE i <> 3 OR %s" % wait)
    return {
        "slow query": "SELECT state, count(*) AS n FROM callrail_send('co', %s) GROUP BY state;"
                      % q(slow_query),
        "paused consumer": "SELECT record_key, %s AS held FROM callrail_send('co', %s);"
                           % (wait, q(names_query(5))),
    }


def test_a_run_taken_for_dead_while_its_caller_was_away_sends_nothing_more(ctx):
    """A run whose caller is away (a slow query, a consumer pausing between
    rows) renews no heartbeat.  Seen from another host its lease runs out
    (simulated: its row is moved to host 'elsewhere' with an old heartbeat),
    and a second run recovers it and sends the records, whose answers the
    fake holds back.  When the first caller comes back, its run must not
    send them again (the second run's requests are in flight, so nothing in
    callrail_delivered tells it yet): it ends `error` saying it was taken for
    dead, and each record was POSTed once."""
    mark, go, hold = (os.path.join(ctx.dir, f) for f in ("held", "go", "hold"))
    for label, send in held_sends(mark, go).items():
        for f in (mark, go):
            if os.path.exists(f):
                os.remove(f)
        ctx.fake.reset()
        db = fresh_db(ctx, label.replace(" ", "-"), dest_sql("co", companies_dest(
            key="name", concurrency=2, lease_ms=10000)))
        with Senders() as senders:
            first = senders.add(ctx.spawn(cron_script(ctx, ".load %s\n" % SLOW_SQL + send), db=db))
            wait_for(first, lambda: os.path.exists(mark),
                     ended="%s: the first run ended before it was held" % label)
            (held,) = [r for r in runs(ctx, db=db) if r["status"] == "running"]
            ctx.sql("UPDATE callrail_runs SET host = 'elsewhere', heartbeat_ms = heartbeat_ms - 11000"
                    " WHERE run_id = %d;" % held["run_id"], db=db)
            open(hold, "w").close()
            try:
                ctx.fake.config(faults={"hold_while_exists": hold})
                n_before = len(ctx.fake.log())
                second = senders.add(ctx.spawn(cron_script(ctx, send_sql(n=5)), db=db))
                wait_for(second, lambda: len(ctx.fake.log()) > n_before,
                         ended="%s: the second run ended before its first request" % label)
                open(go, "w").close()  # the first caller comes back
                # until it ends, or (without the claim check) POSTs a record again
                deadline = time.time() + 60
                while (first.poll() is None and time.time() < deadline and
                       len(committed_posts(ctx.fake.log())) == len(ctx.fake.log())):
                    time.sleep(0.02)
            finally:
                os.remove(hold)  # the fake answers what it held, here and for later tests
            rc, out = finish(ctx, first)
            rc2, out2 = finish(ctx, second)
        assert rc2 == 0 and "Error" not in out2, out2
        assert rc != 0 and ("run %d of destination \"co\" was taken for dead by another run"
                            % held["run_id"]) in out, "%s: %s" % (label, out)
        first_run, second_run = runs(ctx, db=db)
        assert first_run["status"] == "error" and "taken for dead" in first_run["error"], first_run
        assert second_run["status"] == "done", second_run
        log = ctx.fake.log()
        assert_each_record_once(log, 5)
        check_audit(ctx, log, responses(ctx, db=db), db=db)
        print("     %s: run %d held, taken for dead; run %d sent %d meanwhile; 0 POSTed twice"
              % (label, first_run["run_id"], second_run["run_id"], second_run["ok"]))


def test_the_pending_rows_of_an_error_run_are_recovered_to_unknown(ctx):
    db = fresh_db(ctx, "err", dest_sql("co", companies_dest(key="name")))
    run_id, rid = fabricate_run(ctx, db, "error", 0, "Shop 1")
    ctx.sql("UPDATE callrail_runs SET finished_at = started_at, error = 'database is locked' "
            "WHERE run_id = %d;" % run_id, db=db)
    ctx.sql(script_of(ctx, "", send_sql(n=3)), db=db)
    t = row_state(ctx, db, rid)
    assert t["state"] == "unknown" and t["error"], t
    assert run_state(ctx, db, run_id)["status"] == "error"
    assert sorted(body_name(e["body"]) for e in ctx.fake.log()) == names(2, first=2)


# -- planted triggers and views ---------------------------------------------------------------

TRIGGERS = """
CREATE TRIGGER t1 AFTER INSERT ON callrail_delivered BEGIN DELETE FROM callrail_delivered; END;
CREATE TRIGGER t2 AFTER UPDATE ON callrail_responses BEGIN
  INSERT INTO callrail_responses(run_id, destination, method, url, request_body, state)
  VALUES(NEW.run_id, NEW.destination, NEW.method, NEW.url, NEW.request_body, 'ok'); END;
CREATE TRIGGER t3 BEFORE INSERT ON callrail_responses BEGIN SELECT RAISE(IGNORE); END;
CREATE TRIGGER t4 AFTER INSERT ON callrail_runs BEGIN
  UPDATE callrail_runs SET status = 'done' WHERE run_id = NEW.run_id; END;
CREATE TRIGGER t5 BEFORE UPDATE ON callrail_runs BEGIN SELECT RAISE(IGNORE); END;
CREATE TRIGGER t6 AFTER UPDATE ON callrail_delivered BEGIN DELETE FROM callrail_delivered; END;
"""


def test_triggers_planted_on_the_audit_tables_cause_no_duplicate_and_no_request_without_row(ctx):
    db = fresh_db(ctx, "trig", dest_sql("co", companies_dest(key="name", concurrency=4)) +
                  TRIGGERS)
    for n in (10, 12):
        rc, out = ctx.sql(script_of(ctx, "", send_sql(n=n)), db=db)
        arrays, rest = split_output(out)
        assert rest.strip() == "", out
    log = ctx.fake.log()
    table = responses(ctx, db=db)
    assert_each_record_once(log, 12)
    assert len(table) == len(log) == 12, "%d rows for %d requests" % (len(table), len(log))
    check_audit(ctx, log, table, db=db)
    r1, r2 = runs(ctx, db=db)
    assert_run(r1, status="done", ok=10)
    assert_run(r2, status="done", ok=2, skipped=10)
    delivered = ctx.rows("SELECT record_key FROM callrail_delivered", db=db)
    assert sorted(d["record_key"] for d in delivered) == sorted(names(12))


def test_a_view_named_callrail_delivered_is_refused_and_nothing_is_sent(ctx):
    db = os.path.join(ctx.dir, "view.db")
    subprocess.run(["sqlite3", db, "CREATE VIEW callrail_delivered AS SELECT 'co' AS destination,"
                    " 'Shop 1' AS record_key, 'x' AS record_hash, 1 AS response_id,"
                    " 'now' AS delivered_at, NULL AS remote_id;"], check=True)
    rc, out = ctx.sql(script_of(ctx, dest_sql("co", companies_dest(key="name")), send_sql(n=3)),
                      db=db, check=False)
    assert "callrail_delivered" in out and "view" in out, out
    assert ctx.fake.log() == []


def test_a_trigger_on_an_audit_table_of_an_in_memory_database_is_refused_before_sending(ctx):
    """Without a file there is no separate audit connection: the rows go
    through the user's, where triggers would run, so a trigger is refused."""
    setup = dest_sql("co", companies_dest(key="name")) + (
        "SELECT count(*) FROM callrail_delivered;\n" + TRIGGERS.split("\n")[1] + "\n")
    rc, out = ctx.sql(script_of(ctx, setup, send_sql(n=3)), db=":memory:", check=False)
    assert "trigger" in out and "callrail_delivered" in out, out
    assert ctx.fake.log() == []
