#!/usr/bin/env python3
"""The test runner: real sqlite3 shell, real HTTP, fake CallRail on loopback.

    python3 tests/run.py [--mode plain|asan|valgrind] [--only SUBSTRING]

Two kinds of test, both run against one fake CallRail server
(tests/fake_callrail.py) that is reset before every test:

* tests/sql/NAME.sql with tests/sql/NAME.expected: the script is fed to the
  sqlite3 shell (with `.load` of the extension under test) and its output,
  stdout and stderr together, must equal the expected text.  {{BASE}} is
  replaced by the fake server's base URL in both files.

* tests/test_*.py: each function named test_* takes a Ctx and asserts;
  Ctx.sql() runs a script through the shell, Ctx.fake talks to the server
  (its request log is how a test proves what was sent).

--mode asan loads build/asan/callrail.so into the shell with libasan
preloaded; --mode valgrind runs the shell under valgrind memcheck.  Either
fails a test on any sanitizer or memcheck report.  Without --only, valgrind
runs the tests named in tests/valgrind.list (see tests/README.md for why
that subset); an entry that names no test fails.  A test function with a
`modes` attribute (e.g. ("plain",)) runs only in those modes.  The last
line is "N passed, N failed".
"""
import argparse
import difflib
import glob
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")
sys.path.insert(0, TESTS)  # the test modules import tests/helpers.py


class Fake:
    """The fake CallRail server: start, reset, configure, read its log."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.log_path = os.path.join(workdir, "fake.log")
        port_file = os.path.join(workdir, "fake.port")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(TESTS, "fake_callrail.py"), "--port", "0",
             "--port-file", port_file, "--log", self.log_path, "--max-seconds", "3000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 15
        while not os.path.exists(port_file):
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError("fake CallRail server did not start")
            time.sleep(0.02)
        self.port = int(open(port_file).read().strip())
        self.base = "http://127.0.0.1:%d" % self.port

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        # A guard against a hung fake, not a deadline: the log of a 100k
        # record run takes the fake many seconds to serialise on a busy machine.
        with urllib.request.urlopen(req, timeout=300) as resp:
            return json.loads(resp.read() or b"null")

    def reset(self):
        self.call("POST", "/__fake/reset", {})

    def config(self, **cfg):
        return self.call("POST", "/__fake/config", cfg)

    def log(self):
        """The API requests received since the last reset, oldest first."""
        return self.call("GET", "/__fake/log")

    def state(self):
        return self.call("GET", "/__fake/state")

    def quiesce(self):
        """Returns once every connection to the fake is closed and what came
        through them is handled and logged (after a shell exited or was
        killed: nothing is still on its way)."""
        self.call("GET", "/__fake/quiesce")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Mode:
    """How the sqlite3 shell runs: plain, under ASan+UBSan, or valgrind."""

    def __init__(self, name):
        self.name = name
        self.ext = os.path.join(ROOT, "callrail")
        self.env = dict(os.environ)
        self.prefix = []
        if name == "asan":
            self.ext = os.path.join(ROOT, "build", "asan", "callrail")
            libasan = subprocess.check_output(["gcc", "-print-file-name=libasan.so"], text=True).strip()
            self.env["LD_PRELOAD"] = libasan
            # The shell itself is not ours: leaks are checked by valgrind and
            # the embedding test instead; ASan here catches memory errors.
            self.env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=0:exitcode=97"
            self.env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1:exitcode=97"
        elif name == "valgrind":
            self.prefix = ["valgrind", "-q", "--error-exitcode=98", "--leak-check=full",
                           "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite",
                           "--suppressions=" + os.path.join(TESTS, "valgrind.supp")]

    def sanitizer_report(self, text):
        for marker in ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer",
                       "definitely lost in", "Invalid read", "Invalid write",
                       "Conditional jump or move depends", "uninitialised"):
            if marker in text:
                return marker
        return None


class Ctx:
    """What a test gets: a fresh database file, the fake server, the shell."""

    def __init__(self, mode, fake, workdir):
        self.mode = mode
        self.fake = fake
        self.base = fake.base
        self.dir = workdir
        self.db = os.path.join(workdir, "test.db")
        self.ext = mode.ext

    def sql(self, script, db=None, check=True, env=None, timeout=120):
        """Runs script in the sqlite3 shell after loading the extension.
        Returns (exit code, output).  With check, a non-zero exit code or a
        sanitizer report fails the test."""
        proc = self.spawn(script, db, env)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            raise AssertionError("sqlite3 timed out; output so far:\n" + out)
        report = self.mode.sanitizer_report(out)
        if report or proc.returncode in (97, 98):
            raise AssertionError("%s report from sqlite3:\n%s" % (report or "sanitizer", out))
        if check and proc.returncode != 0:
            raise AssertionError("sqlite3 exited %d:\n%s" % (proc.returncode, out))
        return proc.returncode, out

    def spawn(self, script, db=None, env=None, stdin_text=True):
        """Starts the shell on script without waiting (for kill/interrupt tests)."""
        full = ".load %s\n%s" % (self.ext, script.replace("{{BASE}}", self.base))
        e = dict(self.mode.env)
        e.update(env or {})
        proc = subprocess.Popen(self.mode.prefix + ["sqlite3", "-batch", db or self.db],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=e, cwd=self.dir,
                                start_new_session=True)
        proc.stdin.write(full)
        proc.stdin.close()
        proc.stdin = None
        return proc

    def rows(self, query, db=None):
        """Rows of a query on the test database, read with the shell in
        JSON mode (no extension needed to read our tables).  It waits for a
        lock (a shell that is still loading the extension switches the file
        to WAL and creates the tables) instead of failing at once."""
        proc = subprocess.run(["sqlite3", "-json", "-cmd", ".timeout 10000", db or self.db, query],
                              capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise AssertionError("query failed: %s\n%s" % (query, proc.stderr))
        return json.loads(proc.stdout or "[]")

    def setup_credential(self, name="fake", token="test-token"):
        return "SELECT callrail_credential('%s', '%s', '%s');\n" % (name, token, self.base)


def run_sql_test(ctx, path):
    script = open(path).read()
    expected_path = path[:-4] + ".expected"
    expected = open(expected_path).read() if os.path.exists(expected_path) else ""
    expected = expected.replace("{{BASE}}", ctx.base)
    _, out = ctx.sql(script, check=False)
    if out != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), out.splitlines(True),
                                            "expected", "actual"))
        raise AssertionError("output differs from %s:\n%s" % (os.path.basename(expected_path), diff))


VALGRIND_LIST = os.path.join(TESTS, "valgrind.list")


def valgrind_subset():
    """The entries of tests/valgrind.list (comments and blank lines aside)."""
    with open(VALGRIND_LIST) as f:
        return [l.strip() for l in f if l.strip() and not l.startswith("#")]


def collect(only, mode):
    tests = []
    for path in sorted(glob.glob(os.path.join(TESTS, "sql", "*.sql"))):
        name = "sql/" + os.path.basename(path)[:-4]
        tests.append((name, lambda ctx, p=path: run_sql_test(ctx, p)))
    for path in sorted(glob.glob(os.path.join(TESTS, "test_*.py"))):
        modname = os.path.basename(path)[:-3]
        spec = importlib.util.spec_from_file_location(modname, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        for attr in sorted(dir(mod)):
            fn = getattr(mod, attr)
            if attr.startswith("test_") and callable(fn):
                if getattr(fn, "slow", False) and os.environ.get("CALLRAIL_SKIP_SLOW"):
                    continue
                if mode not in getattr(fn, "modes", (mode,)):
                    continue
                tests.append(("%s.%s" % (modname, attr), fn))
    return [t for t in tests if not only or any(o in t[0] for o in only)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default="plain", choices=["plain", "asan", "valgrind"])
    ap.add_argument("--only", action="append")
    args = ap.parse_args()
    mode = Mode(args.mode)
    if not os.path.exists(mode.ext + ".so"):
        print("missing %s.so: run make first" % mode.ext)
        return 2
    listed = valgrind_subset() if args.only is None and args.mode == "valgrind" else []
    tests = collect(args.only or listed, args.mode)
    passed = failed = 0
    for entry in listed:
        if not any(entry in name for name, _ in tests):
            failed += 1
            print("FAIL %s matches no test (a renamed test?)" % entry, flush=True)
    top = tempfile.mkdtemp(prefix="callrail-test-")
    fake = Fake(top)
    try:
        for name, fn in tests:
            workdir = tempfile.mkdtemp(dir=top)
            ctx = Ctx(mode, fake, workdir)
            t0 = time.time()
            try:
                fake.reset()
                fn(ctx)
                passed += 1
                print("ok   %-60s %5.2fs" % (name, time.time() - t0), flush=True)
            except Exception as e:  # a failed assertion or a crash of the harness
                failed += 1
                print("FAIL %-60s %5.2fs" % (name, time.time() - t0), flush=True)
                detail = str(e) if isinstance(e, AssertionError) else traceback.format_exc()
                print("     " + detail.replace("\n", "\n     "), flush=True)
    finally:
        fake.stop()
        if failed == 0:
            shutil.rmtree(top, ignore_errors=True)
        else:
            print("test files kept in %s" % top)
    print("%s: %d passed, %d failed" % (mode.name, passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
