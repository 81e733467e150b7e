#!/bin/sh
# Runs every test suite, JOBS (default 2) at a time, and sums them up; the
# last line is "N passed, N failed".  `make test` builds what this needs
# first.
#
#   unit:      the config parser, linked into a program under ASan+UBSan
#   identity:  request identity (URL normalisation, canonical JSON), likewise
#   fake:      the fake CallRail server's own self-test
#   plain:     SQL and scenario tests through the sqlite3 shell (every
#              tests/sql/*.sql and tests/test_*.py, slow ones included)
#   embed:     a C program that links the extension statically (+ASan)
#   asan:      the shell tests again with the ASan+UBSan build
#   valgrind:  the tests in tests/valgrind.list under valgrind memcheck
#   compat:    a newer SQLite, plain and SQLITE_STRICT_SUBTYPE=1, through
#              Python's sqlite3 module (builds build/compat first)
#
# The suites are independent (each starts its own fake server on its own
# port and works in its own temporary directories), so they run side by
# side; new test files join their suite by name.  CALLRAIL_SKIP_SLOW=1
# skips the slow scenario tests in the asan and valgrind passes (they run
# in the plain pass).
#
#   sh tests/run.sh              every suite
#   sh tests/run.sh --suite NAME one suite: tests/tmp/NAME.out, exit code
cd "$(dirname "$0")/.." || exit 2
mkdir -p tests/tmp

# Longest first, so that the short ones fill the gaps.
SUITES="valgrind plain compat asan embed fake unit identity"

# Runs suite $1, its output in tests/tmp/$1.out; returns its exit code.
run_suite() {
  out=tests/tmp/$1.out
  case $1 in
    unit)     make -s build/unit/config_test >/dev/null && ./build/unit/config_test > "$out" 2>&1 ;;
    identity) make -s build/unit/identity_test >/dev/null && ./build/unit/identity_test > "$out" 2>&1 ;;
    fake)     python3 tests/fake_callrail_selftest.py > "$out" 2>&1
              rc=$?
              n=$(grep -Eo 'Ran [0-9]+ tests' "$out" | grep -Eo '[0-9]+')
              if [ $rc = 0 ]; then echo "fake: ${n:-0} passed, 0 failed"; else echo "fake: 0 passed, 1 failed"; fi >> "$out"
              return $rc ;;
    plain)    python3 tests/run.py --mode plain > "$out" 2>&1 ;;
    embed)    make -s build/embed_test build/asan/embed_test build/embed >/dev/null &&
              python3 tests/embed_driver.py > "$out" 2>&1 ;;
    asan|valgrind)
              CALLRAIL_SKIP_SLOW=1 python3 tests/run.py --mode "$1" > "$out" 2>&1 ;;
    compat)   { make -s compat && python3 tests/compat/compat_driver.py; } > "$out" 2>&1 ;;
    *)        echo "run.sh: no suite $1" > "$out"; return 2 ;;
  esac
}

if [ "$1" = "--suite" ]; then
  t0=$(date +%s)
  run_suite "$2"
  rc=$?
  echo $rc > "tests/tmp/$2.rc"
  echo "== $2 done in $(($(date +%s) - t0)) s: $(grep -E '[0-9]+ passed, [0-9]+ failed' "tests/tmp/$2.out" | tail -n 1)"
  exit $rc
fi

total_pass=0
total_fail=0
summary=""

# Adds the "N passed, N failed" of a suite's last such line to the totals;
# no such line, or a non-zero exit code without a failure, counts as one.
count() {
  name=$1
  line=$(grep -E '[0-9]+ passed, [0-9]+ failed' "tests/tmp/$name.out" 2>/dev/null | tail -n 1)
  rc=$(cat "tests/tmp/$name.rc" 2>/dev/null || echo 1)
  p=$(echo "$line" | grep -Eo '[0-9]+ passed' | grep -Eo '[0-9]+')
  f=$(echo "$line" | grep -Eo '[0-9]+ failed' | grep -Eo '[0-9]+')
  if [ -z "$line" ]; then p=0; f=1; fi
  if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi
  total_pass=$((total_pass + p))
  total_fail=$((total_fail + f))
  summary="$summary
  $name: $p passed, $f failed"
}

for s in $SUITES; do rm -f "tests/tmp/$s.out" "tests/tmp/$s.rc"; done
echo "== running $(echo $SUITES | wc -w) suites, ${JOBS:-2} at a time"
printf '%s\n' $SUITES | xargs -P "${JOBS:-2}" -I{} sh tests/run.sh --suite {}

for s in $SUITES; do
  if grep -q '^FAIL' "tests/tmp/$s.out" 2>/dev/null || [ "$(cat "tests/tmp/$s.rc" 2>/dev/null)" != 0 ]; then
    echo "== $s: failures"
    grep -E '^(FAIL|     )' "tests/tmp/$s.out" | head -n 60
    tail -n 5 "tests/tmp/$s.out"
  fi
  count "$s"
done

echo "== summary$summary"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" = 0 ]
