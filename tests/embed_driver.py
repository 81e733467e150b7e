#!/usr/bin/env python3
"""The embedding suite: C programs that link the extension statically.

    python3 tests/embed_driver.py

Starts the fake CallRail server (tests/fake_callrail.py, quota lifted) and
runs, resetting the fake before each:

  plain    build/embed_test BASE TMPDIR
  asan     build/asan/embed_test BASE TMPDIR   (ASan+UBSan; LeakSanitizer at
           exit, so closing the connections must have freed everything)
  example  build/embed (examples/embed.c) with CALLRAIL_API_KEY=test-token,
           twice on one database: the second run finds the account with
           callrail_accounts and sends nothing new (`key`)

Each check of the test programs is one test here; the example counts as a
few.  A sanitizer report, a crash or a missing summary line fails the
program.  The last line is "N passed, N failed"; the exit code is 1 if
anything failed.  tests/lsan.supp, if present, is passed to LeakSanitizer.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")
sys.path.insert(0, TESTS)
from run import Fake  # noqa: E402  (the same fake-server wrapper as the shell tests)

ACC1 = "ACC0000000000000000000000000000001"
NO_QUOTA = {"general": {"hour": None, "day": None}}
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "AddressSanitizer:DEADLYSIGNAL", "UndefinedBehaviorSanitizer")
TIMEOUT = 300


class Tally:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def ok(self, name):
        self.passed += 1
        print("ok   %s" % name, flush=True)

    def fail(self, name, why):
        self.failed += 1
        print("FAIL %s: %s" % (name, why), flush=True)

    def detail(self, text, limit=40):
        """Shows output indented (tests/run.sh prints lines starting with 5 spaces),
        without ASan's shadow-byte dump."""
        lines = text.rstrip("\n").splitlines()
        cut = [i for i, l in enumerate(lines) if l.startswith("Shadow bytes around")]
        if cut:
            lines = lines[:cut[0]]
        for line in lines[:limit]:
            print("     " + line)
        if len(lines) > limit:
            print("     ... (%d more lines)" % (len(lines) - limit))


def sanitizer_report(text):
    for marker in SANITIZER_MARKERS:
        if marker in text:
            return marker
    return None


def run_program(tally, label, argv, env, cwd):
    """Runs one test program and folds its ok/FAIL lines into the tally."""
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env, cwd=cwd, timeout=TIMEOUT)
        out, err, rc = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        rc = None
    summary = None
    p = f = 0
    for line in out.splitlines():
        m = re.match(r"^ok (\S+)$", line)
        if m:
            p += 1
            tally.ok("%s/%s" % (label, m.group(1)))
            continue
        m = re.match(r"^FAIL (\S+?): (.*)$", line)
        if m:
            f += 1
            tally.fail("%s/%s" % (label, m.group(1)), m.group(2))
            continue
        if line.startswith("#"):
            print("#    %s: %s" % (label, line.lstrip("# ")))
            continue
        m = re.match(r"^(\d+) passed, (\d+) failed$", line)
        if m:
            summary = (int(m.group(1)), int(m.group(2)))
    problems = []
    if rc is None:
        problems.append("timed out after %ds" % TIMEOUT)
    elif rc < 0:
        problems.append("killed by signal %d" % -rc)
    report = sanitizer_report(out + err)
    if report:
        problems.append("sanitizer report (%s)" % report)
    if summary is None:
        problems.append("no 'N passed, N failed' line")
    elif summary != (p, f):
        problems.append("summary says %d passed, %d failed; saw %d ok and %d FAIL lines"
                        % (summary[0], summary[1], p, f))
    if rc not in (0, 1, None) and not problems:
        problems.append("exit code %s" % rc)
    if rc == 1 and f == 0 and not problems:
        problems.append("exit code 1 with no failed check")
    if problems:
        tally.fail("%s/program" % label, "; ".join(problems) + " (exit code %s)" % rc)
        tally.detail(err if err.strip() else out)
    elif err.strip():
        # Not a failure, but worth seeing (e.g. progress or warnings).
        print("     (%s stderr)" % label)
        tally.detail(err, limit=20)


def fresh_fake(fake):
    fake.reset()
    fake.config(quota=NO_QUOTA)


def check_example(tally, fake, workdir):
    """Runs examples/embed.c twice against the fake and checks what it did."""
    exe = os.path.join(ROOT, "build", "embed")
    db = os.path.join(workdir, "example.db")
    env = dict(os.environ, CALLRAIL_API_KEY="test-token")

    def run(args, name):
        try:
            proc = subprocess.run([exe, db] + args, capture_output=True, text=True, env=env,
                                  cwd=workdir, timeout=120)
        except subprocess.TimeoutExpired:
            tally.fail(name, "timed out")
            return None
        if proc.returncode != 0:
            tally.fail(name, "exit code %d" % proc.returncode)
            tally.detail(proc.stdout + proc.stderr)
            return None
        return proc.stdout

    # First run: account on the command line; three companies sent.
    out = run([fake.base, ACC1], "example/first_run_exit_0")
    if out is not None:
        tally.ok("example/first_run_exit_0")
        sends = [l for l in out.splitlines() if l.startswith("send:")]
        good = [l for l in sends if " state=ok status=201 " in l and re.search(r"company=COM\w+", l)]
        previews = [l for l in out.splitlines() if l.startswith("preview:")]
        problems = []
        if len(sends) != 3 or len(good) != 3:
            problems.append("expected 3 'send: ... state=ok status=201 ... company=COM...' lines")
        if len(previews) != 3:
            problems.append("expected 3 preview lines")
        if not re.search(r'^test: \{"status":201,"state":"ok"', out, re.M):
            problems.append("no successful test line")
        if not re.search(r"^run: .* status=done records=3 ok=3 ", out, re.M):
            problems.append("no 'run: ... status=done records=3 ok=3' line")
        if "responses: state=ok status=201 requests=4" not in out:
            problems.append("callrail_responses summary is not 4 ok requests")
        if problems:
            tally.fail("example/first_run_printed_results", "; ".join(problems))
            tally.detail(out)
        else:
            tally.ok("example/first_run_printed_results")
        log = fake.log()
        posts = [e for e in log if e["method"] == "POST"]
        auth = {e["headers"].get("authorization") for e in posts}
        names = sorted(json.loads(e["body"])["name"] for e in posts)
        want = sorted(["callrail-sqlite example test", "Example Bakery", "Example Bikes",
                       "Example Books"])
        if (len(log) == 4 and names == want and auth == {'Token token="test-token"'}
                and all(e["path"] == "/v3/a/%s/companies.json" % ACC1 for e in posts)):
            tally.ok("example/first_run_fake_received")
        else:
            tally.fail("example/first_run_fake_received",
                       "fake log: %s" % [(e["method"], e["path"], e["body"]) for e in log])

    # Second run: no account given (callrail_accounts finds it), nothing new
    # to send: only the accounts GET and the test POST reach the server.
    fresh_fake(fake)
    out = run([fake.base], "example/second_run_exit_0")
    if out is not None:
        tally.ok("example/second_run_exit_0")
        log = fake.log()
        seen = [(e["method"], e["path"]) for e in log]
        if ("account: %s" % ACC1 in out
                and re.search(r"^run: .* status=done records=3 ok=0 .* skipped=3 ", out, re.M)
                and not any(l.startswith("send:") for l in out.splitlines())
                and seen == [("GET", "/v3/a.json"), ("POST", "/v3/a/%s/companies.json" % ACC1)]):
            tally.ok("example/second_run_skips_delivered")
        else:
            tally.fail("example/second_run_skips_delivered", "fake saw %s" % seen)
            tally.detail(out)

    # Without the key in the environment it says what to do.
    env.pop("CALLRAIL_API_KEY")
    proc = subprocess.run([exe, db, fake.base, ACC1], capture_output=True, text=True, env=env,
                          cwd=workdir, timeout=60)
    if proc.returncode != 0 and "CALLRAIL_API_KEY" in proc.stderr:
        tally.ok("example/missing_key_explained")
    else:
        tally.fail("example/missing_key_explained",
                   "exit %d, stderr %r" % (proc.returncode, proc.stderr))


def main():
    tally = Tally()
    make = subprocess.run(["make", "-s", "build/embed_test", "build/asan/embed_test",
                           "build/embed"], cwd=ROOT, capture_output=True, text=True)
    if make.returncode != 0:
        tally.fail("build", "make failed")
        tally.detail(make.stdout + make.stderr)
        print("%d passed, %d failed" % (tally.passed, tally.failed))
        return 1

    top = tempfile.mkdtemp(prefix="callrail-embed-")
    fake = Fake(top)
    try:
        supp = os.path.join(TESTS, "lsan.supp")
        asan_env = dict(os.environ)
        asan_env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0"
        asan_env["UBSAN_OPTIONS"] = "halt_on_error=1:print_stacktrace=1"
        if os.path.exists(supp):
            asan_env["LSAN_OPTIONS"] = "suppressions=%s:print_suppressions=0" % supp
        programs = [
            ("plain", os.path.join(ROOT, "build", "embed_test"), dict(os.environ)),
            ("asan", os.path.join(ROOT, "build", "asan", "embed_test"), asan_env),
        ]
        for label, exe, env in programs:
            fresh_fake(fake)
            workdir = os.path.join(top, label)
            os.mkdir(workdir)
            run_program(tally, label, [exe, fake.base, workdir], env, workdir)
        fresh_fake(fake)
        workdir = os.path.join(top, "example")
        os.mkdir(workdir)
        check_example(tally, fake, workdir)
    finally:
        fake.stop()
        if tally.failed == 0:
            shutil.rmtree(top, ignore_errors=True)
        else:
            print("test files kept in %s" % top)
    print("%d passed, %d failed" % (tally.passed, tally.failed))
    return 1 if tally.failed else 0


if __name__ == "__main__":
    sys.exit(main())
