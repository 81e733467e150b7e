#!/bin/sh
# make demo: starts the bundled fake CallRail server on 127.0.0.1, runs
# sql/demo.sql in the sqlite3 shell against a fresh demo.db, and stops the
# server.  Nothing leaves this machine.
set -e
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'kill $fake_pid 2>/dev/null; rm -rf "$work"' EXIT INT TERM
python3 tests/fake_callrail.py --port 0 --port-file "$work/port" --log "$work/requests.log" \
  --max-seconds 600 >/dev/null 2>&1 &
fake_pid=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.05; done
[ -s "$work/port" ] || { echo "demo: the fake CallRail server did not start"; exit 1; }
base="http://127.0.0.1:$(cat "$work/port")"
echo "fake CallRail API listening on $base"
rm -f demo.db demo.db-wal demo.db-shm
sed "s|{{BASE}}|$base|g" sql/demo.sql > "$work/demo.sql"
CALLRAIL_API_KEY=test-token sqlite3 -bail demo.db < "$work/demo.sql"
echo "== the fake server received $(wc -l < "$work/requests.log") requests; demo.db holds the audit trail"
