# make install and what it installs, checked as a user would use them:
#   - `make install DESTDIR=... PREFIX=...` puts the loadable module, the
#     header, the static library and callrail.pc under DESTDIR/PREFIX; the
#     README's C example (examples/embed.c) compiles with nothing but
#     `pkg-config --cflags --libs callrail` against that install, and runs
#     against the fake (three companies sent, the run done);
#   - the installed module loads in the sqlite3 shell;
#   - the loadable module exports the entry point and nothing else (no
#     internal cr_* symbol can clash with the application's).
# Plain mode only: they build with the system compiler, not under a
# sanitizer, and run no extension code of the mode under test.
import os
import subprocess

from helpers import ACC

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = "/opt/callrail"


def sh(argv, **kw):
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, **kw)
    assert proc.returncode == 0, "%s exited %d:\n%s%s" % (argv, proc.returncode, proc.stdout,
                                                          proc.stderr)
    return proc.stdout


def test_install_to_destdir_and_build_the_embed_example_with_pkg_config(ctx):
    stage = os.path.join(ctx.dir, "stage")
    sh(["make", "-s", "--no-print-directory", "install", "DESTDIR=" + stage, "PREFIX=" + PREFIX],
       cwd=ROOT)
    root = stage + PREFIX
    for f in ("lib/sqlite3/callrail.so", "include/callrail.h", "lib/libcallrail.a",
              "lib/pkgconfig/callrail.pc"):
        assert os.path.isfile(os.path.join(root, f)), "not installed: %s" % f
    pc = open(os.path.join(root, "lib/pkgconfig/callrail.pc")).read()
    assert "prefix=%s\n" % PREFIX in pc, pc  # DESTDIR only stages: the .pc names PREFIX
    # A staged install is found by pointing pkg-config at it and moving its prefix.
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(root, "lib/pkgconfig"))
    flags = sh(["pkg-config", "--define-variable=prefix=" + root, "--cflags", "--libs", "callrail"],
               env=env).split()
    assert "-I%s/include" % root in flags and "-lcallrail" in flags, flags
    exe = os.path.join(ctx.dir, "embed")
    sh(["cc", "-o", exe, os.path.join(ROOT, "examples", "embed.c")] + flags, cwd=ctx.dir)
    out = sh([exe, os.path.join(ctx.dir, "embed.db"), ctx.base, ACC], cwd=ctx.dir,
             env=dict(os.environ, CALLRAIL_API_KEY="test-token"))
    assert "status=done records=3 ok=3" in out, out
    posts = [e for e in ctx.fake.log() if e["method"] == "POST"]
    assert len(posts) == 4, posts  # the callrail_test record and the three shops
    shell = subprocess.run(["sqlite3", ":memory:", ".load %s/lib/sqlite3/callrail" % root,
                            "SELECT callrail_version();"], capture_output=True, text=True,
                           timeout=60)
    assert shell.stdout.startswith("callrail-sqlite "), shell.stdout + shell.stderr


test_install_to_destdir_and_build_the_embed_example_with_pkg_config.modes = ("plain",)


def test_loadable_module_exports_only_its_entry_point(ctx):
    out = sh(["nm", "-D", "--defined-only", os.path.join(ROOT, "callrail.so")])
    names = [line.split()[-1] for line in out.splitlines() if line.strip()]
    assert names == ["sqlite3_callrail_init"], "exported: %s" % names


test_loadable_module_exports_only_its_entry_point.modes = ("plain",)
