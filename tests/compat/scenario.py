#!/usr/bin/env python3
"""One pass of the compat suite, inside the Python whose sqlite3 module is
under test (tests/compat/compat_driver.py starts it, LD_LIBRARY_PATH naming
the SQLite library to use).

    python3 scenario.py EXTENSION DATABASE FAKE_BASE SQLITE_VERSION

Loads the extension the way README.md shows for Python, then does what a
user does: credential, destination, preview, callrail_test (its result
nested in json_object, which needs its JSON subtype: on a SQLite built
with SQLITE_STRICT_SUBTYPE=1 that is an error unless the function declares
SQLITE_RESULT_SUBTYPE), activate, send three records, send again (all
skipped), list the accounts.  Prints "ok NAME" or "FAIL NAME: why" per
check and "N passed, N failed"; the driver checks the fake's log.
"""
import json
import sqlite3
import sys

EXT, DB, BASE, VERSION = sys.argv[1:5]
ACC = "ACC0000000000000000000000000000001"
DEST = {"credential": "fake", "url": "/v3/a/{account_id}/companies.json",
        "params": {"account_id": ACC}, "key": "name"}
RECORDS = "SELECT 'Compat ' || value AS name FROM json_each('[1, 2, 3]')"
passed = failed = 0


def check(name, ok, why=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok %s" % name, flush=True)
    else:
        failed += 1
        print("FAIL %s: %s" % (name, why), flush=True)


def one(con, sql, *args):
    return con.execute(sql, args).fetchone()


def main():
    check("python_uses_sqlite_" + VERSION, sqlite3.sqlite_version == VERSION,
          "sqlite3.sqlite_version is %s" % sqlite3.sqlite_version)
    # The README's Python snippet.
    con = sqlite3.connect(DB, isolation_level=None)
    con.enable_load_extension(True)
    con.load_extension(EXT)
    con.enable_load_extension(False)
    (version,) = one(con, "SELECT callrail_version()")
    check("callrail_version_names_it", ("SQLite %s" % VERSION) in version, version)

    one(con, "SELECT callrail_credential('fake', 'test-token', ?)", BASE)
    one(con, "SELECT callrail_destination('co', ?)", json.dumps(DEST))
    rows = con.execute("SELECT json_extract(body, '$.name') FROM callrail_preview('co', ?)",
                       (RECORDS,)).fetchall()
    check("preview_builds_three_bodies", sorted(r[0] for r in rows) ==
          ["Compat 1", "Compat 2", "Compat 3"], rows)

    if tuple(int(x) for x in VERSION.split(".")[:2]) >= (3, 45):
        # A JSONB value (3.45+) is JSON, not a BLOB error; `json` names an
        # attribute whose subtype a sorter dropped.
        (body,) = one(con, "SELECT body FROM callrail_preview('co', 'SELECT ''J'' AS name,"
                           " jsonb_array(''VIP'', 1) AS tags')")
        check("jsonb_value_is_nested_json", json.loads(body)["tags"] == ["VIP", 1], body)
        one(con, "SELECT callrail_destination('cj', ?)",
            json.dumps(dict(DEST, json=["tags"])))
        (body,) = one(con, "SELECT body FROM callrail_preview('cj', 'SELECT name, tags FROM"
                           " (SELECT ''J'' AS name, json_array(''VIP'') AS tags) ORDER BY"
                           " random()')")
        check("json_key_restores_a_sorted_array", json.loads(body)["tags"] == ["VIP"], body)

    try:
        (nested,) = one(con, "SELECT json_object('result', callrail_test('co',"
                             " json_object('name', 'Compat test')))")
        result = json.loads(nested)["result"]
        check("callrail_test_result_nests_as_json", isinstance(result, dict)
              and result.get("state") == "ok" and result.get("status") == 201, nested)
    except sqlite3.Error as e:
        check("callrail_test_result_nests_as_json", False, "error: %s" % e)

    one(con, "SELECT callrail_activate('co')")
    sent = con.execute("SELECT state, status FROM callrail_send('co', ?)", (RECORDS,)).fetchall()
    check("send_delivers_three", sent == [("ok", 201)] * 3, sent)
    again = con.execute("SELECT state FROM callrail_send('co', ?)", (RECORDS,)).fetchall()
    (skipped,) = one(con, "SELECT skipped FROM callrail_runs WHERE kind = 'send'"
                          " ORDER BY run_id DESC LIMIT 1")
    check("second_send_skips_all", again == [] and skipped == 3, (again, skipped))
    accounts = [r[0] for r in con.execute("SELECT id FROM callrail_accounts('fake')")]
    check("accounts_listed", ACC in accounts, accounts)
    (states,) = one(con, "SELECT group_concat(state || ':' || n) FROM (SELECT state,"
                         " count(*) AS n FROM callrail_responses GROUP BY state)")
    check("four_requests_recorded_ok", states == "ok:4", states)
    check("integrity_check_ok", one(con, "PRAGMA integrity_check") == ("ok",))
    con.close()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
