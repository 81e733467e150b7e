/*
** embed.c - an application that links the callrail extension statically.
**
**   make build/embed
**   CALLRAIL_API_KEY=... build/embed leads.db [API_BASE [ACCOUNT_ID]]
**
** API_BASE defaults to https://api.callrail.com ("" means the default too);
** without ACCOUNT_ID the first account the key can see is used.  Against
** the real API this CREATES COMPANIES in that account: try it against the
** bundled fake server first (python3 tests/fake_callrail.py --port 8080,
** API_BASE http://127.0.0.1:8080, key test-token).
**
** What it shows, in order:
**   1. sqlite3_auto_extension(): every connection opened afterwards has the
**      callrail_* functions, no load_extension() needed;
**   2. a credential that reads the key from $CALLRAIL_API_KEY when used (the
**      key itself is never stored in the database);
**   3. a destination: POST /v3/a/{account_id}/companies.json, one company
**      per row, with `key` so that a second run skips what was delivered;
**   4. callrail_preview (nothing sent), callrail_test (one request),
**      callrail_activate, callrail_send (one result row per request);
**   5. the results table, callrail_responses.
**
** Error handling: every call's result code is checked, and a failure
** prints sqlite3_errmsg(), which for the extension's functions names the
** function and what is wrong (the destination and config key, the missing
** environment variable, ...).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "callrail.h"

#define DESTINATION "example_companies"

/* Prints the failure of zWhat with SQLite's message; returns 1 (the exit
** code) so that callers can `return fail(...)`. */
static int fail(sqlite3 *db, const char *zWhat) {
  fprintf(stderr, "embed: %s: %s\n", zWhat, db ? sqlite3_errmsg(db) : "out of memory");
  return 1;
}

/* Runs zSql with its parameters ?1, ?2, ... bound to azArg (nArg of them),
** printing each result row as "zLabel: column=value ..." unless zLabel is
** NULL.  Returns SQLITE_OK, or the error code after printing the error. */
static int run(sqlite3 *db, const char *zLabel, const char *zSql, int nArg, const char **azArg) {
  sqlite3_stmt *pStmt = 0;
  int rc, i;

  rc = sqlite3_prepare_v2(db, zSql, -1, &pStmt, 0);
  if (rc != SQLITE_OK) {
    fail(db, zSql);
    return rc;
  }
  for (i = 0; i < nArg && rc == SQLITE_OK; i++) {
    rc = sqlite3_bind_text(pStmt, i + 1, azArg[i], -1, SQLITE_TRANSIENT);
  }
  /* The table-valued functions do their work inside sqlite3_step(): for
  ** callrail_send, each step returns the next request that finished. */
  while (rc == SQLITE_OK && (rc = sqlite3_step(pStmt)) == SQLITE_ROW) {
    if (zLabel) {
      printf("%s:", zLabel);
      for (i = 0; i < sqlite3_column_count(pStmt); i++) {
        const char *zVal = (const char *)sqlite3_column_text(pStmt, i);
        printf(" %s=%s", sqlite3_column_name(pStmt, i), zVal ? zVal : "NULL");
      }
      printf("\n");
    }
    rc = SQLITE_OK;
  }
  if (rc == SQLITE_DONE) rc = SQLITE_OK;
  if (rc != SQLITE_OK) fail(db, zLabel ? zLabel : zSql);
  /* Finalizing also ends a callrail_send that was not read to the end: what
  ** is in flight is finished and recorded first. */
  sqlite3_finalize(pStmt);
  return rc;
}

/* The first column of the first row of zSql (?1 bound to zArg) as a new
** string (free() it), or NULL after printing the error. */
static char *query_text(sqlite3 *db, const char *zSql, const char *zArg) {
  sqlite3_stmt *pStmt = 0;
  char *zOut = 0;
  int rc = sqlite3_prepare_v2(db, zSql, -1, &pStmt, 0);
  if (rc == SQLITE_OK && zArg) rc = sqlite3_bind_text(pStmt, 1, zArg, -1, SQLITE_TRANSIENT);
  if (rc == SQLITE_OK) rc = sqlite3_step(pStmt);
  if (rc == SQLITE_ROW && sqlite3_column_type(pStmt, 0) != SQLITE_NULL) {
    const char *z = (const char *)sqlite3_column_text(pStmt, 0);
    zOut = malloc(strlen(z) + 1);
    if (zOut) strcpy(zOut, z);
  } else if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
    fprintf(stderr, "embed: no result from: %s\n", zSql);
  } else {
    fail(db, zSql);
  }
  sqlite3_finalize(pStmt);
  return zOut;
}

int main(int argc, char **argv) {
  const char *zDbFile = argc > 1 ? argv[1] : 0;
  const char *zApiBase = argc > 2 && argv[2][0] ? argv[2] : "https://api.callrail.com";
  char *zAccount = 0;
  char *zTest = 0;
  sqlite3 *db = 0;
  int rc;

  if (zDbFile == 0 || argc > 4) {
    fprintf(stderr, "usage: %s DATABASE [API_BASE [ACCOUNT_ID]]\n", argv[0]);
    return 2;
  }
  if (getenv("CALLRAIL_API_KEY") == 0) {
    fprintf(stderr, "embed: set CALLRAIL_API_KEY to your CallRail API key\n");
    return 2;
  }

  /* 1. Register the extension for every connection this process opens.
  ** (For one connection only: sqlite3_callrail_init(db, &zErrMsg, 0).) */
  rc = sqlite3_auto_extension((void (*)(void))sqlite3_callrail_init);
  if (rc != SQLITE_OK) {
    fprintf(stderr, "embed: sqlite3_auto_extension: %s\n", sqlite3_errstr(rc));
    return 1;
  }
  /* Opening loads the extension: it creates its tables and switches a file
  ** database to WAL mode (its audit rows commit while a send runs). */
  rc = sqlite3_open(zDbFile, &db);
  if (rc != SQLITE_OK) {
    rc = fail(db, "sqlite3_open");
    sqlite3_close(db);
    return rc;
  }

  /* 2. The credential: a reference to the key, resolved at each use. */
  {
    const char *a[] = {zApiBase};
    rc = run(db, 0, "SELECT callrail_credential('main', 'env:CALLRAIL_API_KEY', ?1)", 1, a);
  }

  /* The account: from the command line, or the first the key can see. */
  if (rc == SQLITE_OK) {
    if (argc > 3) {
      zAccount = malloc(strlen(argv[3]) + 1);
      if (zAccount) strcpy(zAccount, argv[3]);
    } else {
      zAccount = query_text(db, "SELECT id FROM callrail_accounts('main') LIMIT 1", 0);
    }
    if (zAccount == 0)
      rc = SQLITE_ERROR;
    else
      printf("account: %s\n", zAccount);
  }

  /* 3. The destination (created inactive; replacing it keeps its state).
  ** {account_id} comes from params; the URL is a path, so it follows the
  ** credential's api_base. */
  if (rc == SQLITE_OK) {
    const char *a[] = {zAccount};
    rc = run(db, 0,
             "SELECT callrail_destination('" DESTINATION "', json_object("
             "'credential', 'main',"
             " 'url', '/v3/a/{account_id}/companies.json',"
             " 'params', json_object('account_id', ?1),"
             " 'key', 'name',"
             " 'concurrency', 2))",
             1, a);
  }

  /* The records: every column of each row becomes an attribute.  (run()
  ** prepares one statement, hence one call per statement.) */
  if (rc == SQLITE_OK) {
    rc =
        run(db, 0, "CREATE TABLE IF NOT EXISTS shops(name TEXT PRIMARY KEY, time_zone TEXT)", 0, 0);
  }
  if (rc == SQLITE_OK) {
    rc = run(db, 0,
             "INSERT OR IGNORE INTO shops VALUES"
             " ('Example Bakery', 'America/New_York'),"
             " ('Example Bikes', 'America/Chicago'),"
             " ('Example Books', 'America/Denver')",
             0, 0);
  }

  /* 4a. Preview: the requests a send would make, built the same way;
  ** nothing is sent and the key shows as "***". */
  if (rc == SQLITE_OK) {
    rc = run(db, "preview",
             "SELECT batch, method, url, body, error FROM callrail_preview('" DESTINATION "',"
             " 'SELECT name, time_zone FROM shops ORDER BY name')",
             0, 0);
  }

  /* 4b. One real request from one record (works while inactive). */
  if (rc == SQLITE_OK) {
    zTest = query_text(db,
                       "SELECT callrail_test('" DESTINATION "',"
                       " json_object('name', 'callrail-sqlite example test'))",
                       0);
    if (zTest == 0) {
      rc = SQLITE_ERROR;
    } else {
      char *zState = query_text(db, "SELECT json_extract(?1, '$.state')", zTest);
      printf("test: %s\n", zTest);
      if (zState == 0 || strcmp(zState, "ok") != 0) {
        fprintf(stderr, "embed: the test request did not succeed; not sending\n");
        rc = SQLITE_ERROR;
      }
      free(zState);
    }
  }

  /* 4c. Activate, then send: one row per request, as each one finishes. */
  if (rc == SQLITE_OK) rc = run(db, 0, "SELECT callrail_activate('" DESTINATION "')", 0, 0);
  if (rc == SQLITE_OK) {
    rc = run(db, "send",
             "SELECT batch, state, status, error, json_extract(response_body, '$.id') AS company"
             " FROM callrail_send('" DESTINATION "', 'SELECT name, time_zone FROM shops')",
             0, 0);
  }

  /* 5. The results table keeps every request and response; the last run's
  ** counts are in callrail_runs (records already delivered are `skipped`). */
  if (rc == SQLITE_OK) {
    rc = run(db, "responses",
             "SELECT state, status, count(*) AS requests FROM callrail_responses"
             " WHERE destination = '" DESTINATION "' GROUP BY state, status ORDER BY state",
             0, 0);
  }
  if (rc == SQLITE_OK) {
    rc = run(db, "run",
             "SELECT run_id, status, records, ok, failed, unknown, skipped, invalid"
             " FROM callrail_runs WHERE destination = '" DESTINATION "' AND kind = 'send'"
             " ORDER BY run_id DESC LIMIT 1",
             0, 0);
  }

  free(zTest);
  free(zAccount);
  /* Closing frees everything the extension holds for this connection. */
  if (sqlite3_close(db) != SQLITE_OK && rc == SQLITE_OK) rc = fail(db, "sqlite3_close");
  return rc == SQLITE_OK ? 0 : 1;
}
