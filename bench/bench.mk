# Benchmarks: `make bench` (not part of `make test` or CI).
#
#   make bench                  everything, 5 runs per figure (about 15 minutes)
#   make bench BENCH_RUNS=3     fewer runs
#   make bench BENCH_QUICK=1    fewer records everywhere (a minute or two), for development
#   make bench-compare          this build against BENCH_REF (default 0.1.0), side by side
#   make bench BENCH_SECTIONS=1,5   only some sections (1 zero latency, 2 latency, 3 memory,
#                               4 CPU/instructions/profile, 5 pacing, 6 durability,
#                               7 reads, 8 audit at scale)
#
# Loopback only: nginx, bench/delay_server.py and tests/fake_callrail.py on 127.0.0.1,
# started and stopped by bench/run_bench.py.  Results: bench/results.md (the table also
# goes to stdout) and build/bench/ (configs, databases, callgrind and perf files).
# `bench-deps` installs what the run needs from Debian when run as root.

BENCH_TOOLS   := nginx wrk curl taskset valgrind callgrind_annotate
BENCH_OPTIONAL := strace eatmydata perf
BENCH_DEBPKGS := nginx-light wrk curl util-linux valgrind time strace eatmydata linux-perf

.PHONY: bench bench-deps

# Installs what is missing (as root); otherwise names the command.  strace (fsync counts),
# eatmydata (the no-fsync diagnostic) and perf (the profile) are optional: without them
# those figures are left out.
bench-deps:
	@missing=""; optional=""; \
	for c in $(BENCH_TOOLS); do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	[ -x /usr/bin/time ] || missing="$$missing /usr/bin/time"; \
	for c in $(BENCH_OPTIONAL); do command -v $$c >/dev/null 2>&1 || optional="$$optional $$c"; done; \
	if [ -n "$$missing$$optional" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "bench-deps: missing$$missing$$optional; installing $(BENCH_DEBPKGS)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends $(BENCH_DEBPKGS) >/dev/null || exit 1; \
	  elif [ -n "$$missing" ]; then \
	    echo "bench-deps: missing$$missing; run:"; \
	    echo "  sudo apt-get install -y $(BENCH_DEBPKGS)"; exit 1; \
	  else \
	    echo "bench-deps: without$$optional some figures are left out"; \
	  fi; \
	fi

bench: all bench-deps
	python3 bench/run_bench.py

# This build against a reference revision (default 0.1.0), side by side: bench/compare.py.
BENCH_REF ?= 7c81d8e
.PHONY: bench-compare
bench-compare: all bench-deps
	rm -rf $(BUILD)/bench-ref && git worktree prune && \
	  git worktree add --detach -f $(BUILD)/bench-ref $(BENCH_REF) >/dev/null && \
	  $(MAKE) --no-print-directory -C $(BUILD)/bench-ref callrail.so >/dev/null
	BENCH_OUT=$(BUILD)/bench-compare python3 bench/compare.py $(BUILD)/bench-ref/callrail.so callrail.so
	git worktree remove --force $(BUILD)/bench-ref
