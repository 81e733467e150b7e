#!/bin/sh
# run_fuzz.sh - runs the libFuzzer targets of tests/fuzz/ (called by fuzz.mk).
#
#   sh tests/fuzz/run_fuzz.sh BUILD_DIR SECONDS_PER_TARGET TARGET...
#
# For each target, in order:
#   1. replays every seed of tests/fuzz/corpus/TARGET/ and every regression
#      input of tests/fuzz/crashers/TARGET/, one run each, with all checks
#      on (FUZZ_IGNORE unset);
#   2. copies the seeds into BUILD_DIR/corpus/TARGET/ (inputs found by
#      earlier runs stay there) and fuzzes that copy for SECONDS_PER_TARGET
#      seconds; nothing is written into tests/.  FUZZ_IGNORE, when set,
#      reaches the targets here only (see the targets' comments).
# A crash, sanitizer report or broken invariant is saved under
# BUILD_DIR/artifacts/TARGET/ and makes the script exit non-zero once every
# target has run.  Logs: BUILD_DIR/logs/TARGET.{replay,fuzz}.log.
set -u
BUILD=$1
SECONDS_PER_TARGET=$2
shift 2
HERE=tests/fuzz
failed=""
summary=""

# Options per target: input size, and a dictionary when there is one.
opts() {
  case $1 in
  headers) echo "-max_len=1024" ;;
  url_template) echo "-max_len=2048" ;;
  *) echo "-max_len=4096" ;;
  esac
  [ -f "$HERE/$1.dict" ] && echo "-dict=$HERE/$1.dict"
}

# The value of libFuzzer's final statistic NAME in log file $2.
stat() {
  sed -n "s/^stat::$1: *//p" "$2" | tail -n 1
}

mkdir -p "$BUILD/logs"
for t in "$@"; do
  bin="$BUILD/fuzz_$t"
  art="$BUILD/artifacts/$t"
  corpus="$BUILD/corpus/$t"
  mkdir -p "$art" "$corpus"

  # 1. Replay: seeds must pass; regression inputs must pass once fixed.
  # All inputs in one process first; one process per input only to name
  # the failing ones.
  inputs=$(find "$HERE/corpus/$t" "$HERE/crashers/$t" -type f ! -name '.*' ! -name 'README*' \
    2>/dev/null | sort)
  nIn=$(printf '%s\n' "$inputs" | grep -c . || true)
  nBad=0
  if ! env -u FUZZ_IGNORE "$bin" -runs=1 -artifact_prefix="$art/replay-" $(opts "$t") $inputs \
    >"$BUILD/logs/$t.replay.log" 2>&1; then
    for f in $inputs; do
      if ! env -u FUZZ_IGNORE "$bin" -runs=1 -artifact_prefix="$art/replay-" $(opts "$t") "$f" \
        >"$BUILD/logs/$t.replay1.log" 2>&1; then
        nBad=$((nBad + 1))
        msg=$(grep -a -m1 -E 'FUZZ INVARIANT BROKEN|ERROR: (Address|Leak|libFuzzer)|runtime error' \
          "$BUILD/logs/$t.replay1.log" | cut -c1-220)
        printf 'fuzz: %s: FAILS: %s\n      %s\n' "$t" "$f" "$msg"
        cat "$BUILD/logs/$t.replay1.log" >>"$BUILD/logs/$t.replay.log"
      fi
    done
    rm -f "$BUILD/logs/$t.replay1.log"
    # a failure that no single input repeats (state carried between inputs)
    [ "$nBad" -eq 0 ] && nBad=1 && echo "fuzz: $t: replaying all inputs in one process fails" \
      "(see $BUILD/logs/$t.replay.log)"
  fi
  echo "fuzz: $t: replayed $nIn seed and regression inputs, $nBad failing"
  [ "$nBad" -gt 0 ] && failed="$failed $t(replay)"

  # 2. Fuzz a copy of the seed corpus.
  if [ "$SECONDS_PER_TARGET" -gt 0 ]; then
    cp -R "$HERE/corpus/$t/." "$corpus/"
    log="$BUILD/logs/$t.fuzz.log"
    echo "fuzz: $t: fuzzing for ${SECONDS_PER_TARGET}s (log $log)"
    "$bin" -max_total_time="$SECONDS_PER_TARGET" -timeout=25 -rss_limit_mb=2560 \
      -print_final_stats=1 -artifact_prefix="$art/" $(opts "$t") "$corpus" >"$log" 2>&1
    rc=$?
    done_line=$(grep -a -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1)
    [ -z "$done_line" ] && done_line=$(grep -a -E '^#[0-9]+[[:space:]]' "$log" | tail -n 1)
    cov=$(echo "$done_line" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
    ft=$(echo "$done_line" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
    corp=$(echo "$done_line" | sed -n 's/.*corp: \([0-9]*\).*/\1/p')
    execs=$(stat number_of_executed_units "$log")
    eps=$(stat average_exec_per_sec "$log")
    line=$(printf '%-13s execs %-9s exec/s %-6s cov %-5s ft %-6s corpus %s' "$t" \
      "${execs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}")
    if [ $rc -ne 0 ]; then
      failed="$failed $t(fuzz)"
      echo "fuzz: $t: FOUND A PROBLEM (exit $rc); input saved under $art/:"
      grep -a -m3 -E 'FUZZ INVARIANT BROKEN|ERROR: |runtime error|Test unit written' "$log" |
        cut -c1-300 | sed 's/^/      /'
      line="$line  CRASH"
    fi
    summary="$summary$line
"
  fi
done

if [ -n "$summary" ]; then
  echo "fuzz: summary (libFuzzer's final statistics)"
  printf '%s' "$summary" | sed 's/^/  /'
fi
if [ -n "$failed" ]; then
  echo "fuzz: FAILED:$failed"
  exit 1
fi
echo "fuzz: OK"
