#!/usr/bin/env python3
"""The compat suite: the extension on a newer SQLite than Debian's.

    make compat && python3 tests/compat/compat_driver.py

`make compat` (tests/compat/compat.mk) builds, from the amalgamation in
the npm package better-sqlite3, build/compat/plain/libsqlite3.so.0, the
same with SQLITE_STRICT_SUBTYPE=1 in build/compat/strict/, and the
extension compiled against the newer headers (build/compat/callrail.so).
This driver runs tests/compat/scenario.py in a Python whose sqlite3 module
can load extensions (Debian's python3 can; some builds cannot), once per
pass:

  system         the system SQLite and callrail.so
  plain          the newer SQLite and callrail.so (built on the system's
                 headers: one binary for both)
  strict         the newer SQLite with SQLITE_STRICT_SUBTYPE=1 and
                 callrail.so (SQLITE_RESULT_SUBTYPE must be declared even
                 though the system's headers predate it)
  strict-newhdr  the same with build/compat/callrail.so

Each pass gets a fresh fake server state and database; besides the
scenario's own checks, the fake must have received exactly the accounts
GET and four POSTs.  Nothing here is skipped: a missing library or
interpreter is a failure.  The last line is "N passed, N failed".
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from run import Fake  # noqa: E402  (the shell tests' fake-server wrapper)

COMPAT = os.path.join(ROOT, "build", "compat")
SCENARIO = os.path.join(ROOT, "tests", "compat", "scenario.py")
PROBE = "import sqlite3; sqlite3.connect(':memory:').enable_load_extension(True)"


def loading_python():
    """A python3 whose sqlite3 module has enable_load_extension, or None."""
    for exe in (sys.executable, "/usr/bin/python3", shutil.which("python3")):
        if exe and subprocess.run([exe, "-c", PROBE], capture_output=True).returncode == 0:
            return exe
    return None


def newer_version():
    with open(os.path.join(COMPAT, "src", "sqlite3.h")) as f:
        return re.search(r'#define SQLITE_VERSION\s+"([^"]+)"', f.read()).group(1)


def system_version():
    return subprocess.check_output(["pkg-config", "--modversion", "sqlite3"], text=True).strip()


def main():
    python = loading_python()
    if python is None:
        print("FAIL no python3 whose sqlite3 module can load extensions (Debian's can)")
        print("0 passed, 1 failed")
        return 1
    new = newer_version()
    passes = [("system", None, os.path.join(ROOT, "callrail"), system_version()),
              ("plain", "plain", os.path.join(ROOT, "callrail"), new),
              ("strict", "strict", os.path.join(ROOT, "callrail"), new),
              ("strict-newhdr", "strict", os.path.join(COMPAT, "callrail"), new)]
    passed = failed = 0
    top = tempfile.mkdtemp(prefix="callrail-compat-")
    fake = Fake(top)
    try:
        for label, libdir, ext, version in passes:
            fake.reset()
            env = dict(os.environ)
            env.pop("LD_LIBRARY_PATH", None)
            if libdir:
                env["LD_LIBRARY_PATH"] = os.path.join(COMPAT, libdir)
            db = os.path.join(tempfile.mkdtemp(dir=top), "compat.db")
            proc = subprocess.run([python, SCENARIO, ext, db, fake.base, version], env=env,
                                  capture_output=True, text=True, timeout=120)
            for line in proc.stdout.splitlines():
                if line.startswith("ok "):
                    passed += 1
                    print("ok   %s/%s" % (label, line[3:]), flush=True)
                elif line.startswith("FAIL "):
                    failed += 1
                    print("FAIL %s/%s" % (label, line[5:]), flush=True)
            if proc.returncode not in (0, 1) or not re.search(r"^\d+ passed, \d+ failed$",
                                                              proc.stdout, re.M):
                failed += 1
                print("FAIL %s/scenario exited %d" % (label, proc.returncode))
                print("     " + (proc.stdout + proc.stderr).replace("\n", "\n     "))
            seen = sorted((e["method"], e["path"]) for e in fake.log())
            want = sorted([("GET", "/v3/a.json")]
                          + [("POST", "/v3/a/ACC0000000000000000000000000000001/companies.json")] * 4)
            if seen == want:
                passed += 1
                print("ok   %s/fake_received_one_get_and_four_posts" % label)
            else:
                failed += 1
                print("FAIL %s/fake_received_one_get_and_four_posts: %s" % (label, seen))
    finally:
        fake.stop()
        shutil.rmtree(top, ignore_errors=True)
    print("compat (SQLite %s and %s, %s): %d passed, %d failed"
          % (system_version(), new, python, passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
