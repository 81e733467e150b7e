#!/usr/bin/env python3
"""`make bench-compare`: this build against a reference build, side by side.

    make bench-compare [BENCH_REF=<git revision>] [BENCH_DEST=nginx_c16] [BENCH_RUNS=5]

The reference (default: 7c81d8e, callrail-sqlite 0.1.0) is built by the
Makefile in build/bench-ref/ from a git worktree.  Both builds send the same
20,000 records to the same nginx on loopback (bench/run_bench.py's section 1
set-up: a keyed destination with `exclude`), their runs interleaved so that
the machine's noise falls on both alike; then callgrind counts the
instructions per request of each (3,000 minus 1,000 requests, so that start-up
cancels out).  Prints requests/s (median of the runs), their ratio, the
median of the ratios of each back-to-back pair, and instructions per request.
"""
import os
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_bench as rb  # noqa: E402

N = 20000


def main():
    ref, new = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    dest = os.environ.get("BENCH_DEST") or "nginx_c16"
    rb.OUT.mkdir(parents=True, exist_ok=True)
    nginx, _ = rb.start_nginx()
    try:
        tmpl, rates = {}, {"ref": [], "new": []}
        for name, so in (("ref", ref), ("new", new)):
            (rb.OUT / name).mkdir(exist_ok=True)
            shutil.copyfile(so, rb.OUT / name / "callrail.so")
            rb.EXT = rb.OUT / name / "callrail.so"
            tmpl[name] = rb.OUT / name / "template.db"
            rb.make_template(tmpl[name], N, [nginx])
        for i in range(rb.RUNS):
            for name in ("ref", "new"):
                rb.EXT = rb.OUT / name / "callrail.so"
                r = rb.ours(tmpl[name], dest, N)
                rates[name].append(N / r["wall"] if r["ok"] else 0.0)
                rb.say("  run %d %s: %.0f req/s" % (i + 1, name, rates[name][-1]))
        med = {k: statistics.median(v) for k, v in rates.items()}
        # Each pair ran back to back: the median of their ratios is steadier
        # than the ratio of the medians when the machine's speed drifts.
        pairs = [n / r for r, n in zip(rates["ref"], rates["new"]) if r > 0]
        print("%s, %d records, median of %d interleaved runs: reference %.0f req/s, this build "
              "%.0f req/s: %.3f×; median of the pairs' ratios %.3f× (%s)"
              % (dest, N, rb.RUNS, med["ref"], med["new"], med["new"] / med["ref"],
                 statistics.median(pairs), ", ".join("%.2f" % x for x in pairs)))
        for name in ("ref", "new"):
            rb.EXT = rb.OUT / name / "callrail.so"
            ir = {}
            for m in (1000, 3000):
                db = rb.fresh_copy(tmpl[name], "cg.db")
                ir[m], _ = rb.callgrind(db, rb.send_script(dest, m), "compare-%s-%d" % (name, m))
            print("%s: %.0f instructions per request (callgrind)"
                  % ("reference" if name == "ref" else "this build", (ir[3000] - ir[1000]) / 2000))
    finally:
        nginx.stop()


if __name__ == "__main__":
    main()
