#!/bin/sh
# Runs every test suite and sums them up; the last line is
# "N passed, N failed".  `make test` builds what this needs first.
#
#   1. unit:      the config parser, linked into a program under ASan+UBSan
#   2. fake:      the fake CallRail server's own self-test
#   3. plain:     SQL and scenario tests through the sqlite3 shell
#   4. embed:     a C program that links the extension statically (+ASan)
#   5. asan:      the shell tests again with the ASan+UBSan build
#   6. valgrind:  the shell tests again under valgrind memcheck
#
# CALLRAIL_SKIP_SLOW=1 skips the slow scenario tests in the asan and
# valgrind passes (they run in the plain pass).
cd "$(dirname "$0")/.." || exit 2
total_pass=0
total_fail=0
summary=""

# Adds the "N passed, N failed" of a suite's last such line to the totals.
count() {
  name=$1
  line=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$2" | tail -n 1)
  p=$(echo "$line" | grep -Eo '[0-9]+ passed' | grep -Eo '[0-9]+')
  f=$(echo "$line" | grep -Eo '[0-9]+ failed' | grep -Eo '[0-9]+')
  if [ -z "$line" ]; then p=0; f=1; fi
  if [ "$3" != 0 ] && [ "$f" = 0 ]; then f=1; fi
  total_pass=$((total_pass + p))
  total_fail=$((total_fail + f))
  summary="$summary
  $name: $p passed, $f failed"
}

mkdir -p tests/tmp

echo "== unit"
make -s build/unit/config_test >/dev/null && ./build/unit/config_test > tests/tmp/unit.out 2>&1
rc=$?; tail -n 3 tests/tmp/unit.out; count unit tests/tmp/unit.out $rc
make -s build/unit/identity_test >/dev/null && ./build/unit/identity_test > tests/tmp/identity.out 2>&1; rc=$?; tail -n 3 tests/tmp/identity.out; count identity tests/tmp/identity.out $rc

echo "== fake"
python3 tests/fake_callrail_selftest.py > tests/tmp/fake.out 2>&1
rc=$?; tail -n 3 tests/tmp/fake.out
if [ $rc = 0 ]; then
  n=$(grep -Eo 'Ran [0-9]+ tests' tests/tmp/fake.out | grep -Eo '[0-9]+')
  echo "fake: $n passed, 0 failed" >> tests/tmp/fake.out
else
  echo "fake: 0 passed, 1 failed" >> tests/tmp/fake.out
fi
count fake tests/tmp/fake.out $rc

for mode in plain embed asan valgrind; do
  echo "== $mode"
  case $mode in
    embed) make -s build/embed_test build/asan/embed_test >/dev/null &&
           python3 tests/embed_driver.py > tests/tmp/$mode.out 2>&1 ;;
    plain) python3 tests/run.py --mode plain > tests/tmp/$mode.out 2>&1 ;;
    *)     CALLRAIL_SKIP_SLOW=1 python3 tests/run.py --mode $mode > tests/tmp/$mode.out 2>&1 ;;
  esac
  rc=$?
  grep -E '^(FAIL|     )' tests/tmp/$mode.out | head -n 60
  tail -n 1 tests/tmp/$mode.out
  count $mode tests/tmp/$mode.out $rc
done

echo "== summary$summary"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" = 0 ]
