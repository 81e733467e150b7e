/*
** embed_test.c - the extension linked statically into a C program, the way
** an application embeds it (README "Embedding in a C program"), against the fake CallRail
** server.
**
**   build/embed_test BASE TMPDIR
**   build/asan/embed_test BASE TMPDIR     (ASan+UBSan, LeakSanitizer at exit)
**
** BASE is the fake server's base URL (http://127.0.0.1:PORT), TMPDIR an
** empty directory for the database files.  tests/embed_driver.py starts the
** fake and runs both builds.  The program talks to the fake's control
** endpoints (/__fake/...) itself, with libcurl, to reset it, slow it down
** and read its request log.
**
** Each check prints "ok NAME" or "FAIL NAME: why"; the last line is
** "N passed, N failed" and the exit code is 1 if anything failed.
** EMBED_TEST_SKIP=memory_interrupt skips the checks that have crashed the
** ASan build (t_fallback_interrupt); they run last for that reason.  Every
** connection is closed with sqlite3_close() (which fails on a leaked
** statement), so the ASan build's leak check covers the extension's
** per-connection state, its audit connection and its libcurl handles.
*/
#ifndef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700 /* clock_gettime, nanosleep (the Makefile sets it too) */
#endif
#include <curl/curl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "callrail.h"

#define ACC1 "ACC0000000000000000000000000000001"
#define TOKEN "test-token"

static const char *g_base; /* the fake's base URL */
static const char *g_tmp;  /* directory for database files */
static int g_pass, g_fail;

/* ------------------------------------------------------------------------
** Reporting
*/

/* Records one check: passes if zWhy is NULL, else fails with zWhy (an
** sqlite3_mprintf string, freed here).  Returns 1 on pass. */
static int report(const char *zName, char *zWhy) {
  if (zWhy == 0) {
    g_pass++;
    printf("ok %s\n", zName);
  } else {
    g_fail++;
    printf("FAIL %s: %s\n", zName, zWhy);
    sqlite3_free(zWhy);
  }
  fflush(stdout);
  return zWhy == 0;
}

/* A failure message, or NULL when cond holds. */
static char *why(int cond, const char *zFmt, ...) {
  va_list ap;
  char *z;
  if (cond) return 0;
  va_start(ap, zFmt);
  z = sqlite3_vmprintf(zFmt, ap);
  va_end(ap);
  return z;
}

/* Keeps the first failure message of a multi-step check. */
static void first(char **pzWhy, char *zNew) {
  if (*pzWhy == 0)
    *pzWhy = zNew;
  else
    sqlite3_free(zNew);
}

static sqlite3_int64 now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (sqlite3_int64)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (long)(ms % 1000) * 1000000L;
  nanosleep(&ts, 0);
}

/* ------------------------------------------------------------------------
** SQL helpers.  Each returns an error text (sqlite3_mprintf) or NULL.
*/

/* Runs zSql (any number of statements, no result needed). */
static char *exec(sqlite3 *db, const char *zSql) {
  char *zMsg = 0;
  char *zRet = 0;
  int rc = sqlite3_exec(db, zSql, 0, 0, &zMsg);
  if (rc != SQLITE_OK) {
    zRet = sqlite3_mprintf("%s -> rc=%d %s", zSql, rc, zMsg ? zMsg : sqlite3_errmsg(db));
  }
  sqlite3_free(zMsg);
  return zRet;
}

/* The first column of the first row of zSql as text (NULL stays NULL;
** *pzOut is an sqlite3_mprintf copy).  No row is an error. */
static char *query_text(sqlite3 *db, const char *zSql, char **pzOut) {
  sqlite3_stmt *pStmt = 0;
  char *zRet = 0;
  int rc;
  *pzOut = 0;
  rc = sqlite3_prepare_v2(db, zSql, -1, &pStmt, 0);
  if (rc != SQLITE_OK) {
    return sqlite3_mprintf("prepare %s -> rc=%d %s", zSql, rc, sqlite3_errmsg(db));
  }
  rc = sqlite3_step(pStmt);
  if (rc == SQLITE_ROW) {
    const char *z = (const char *)sqlite3_column_text(pStmt, 0);
    if (z) *pzOut = sqlite3_mprintf("%s", z);
  } else if (rc == SQLITE_DONE) {
    zRet = sqlite3_mprintf("%s -> no row", zSql);
  } else {
    zRet = sqlite3_mprintf("%s -> rc=%d %s", zSql, rc, sqlite3_errmsg(db));
  }
  sqlite3_finalize(pStmt);
  return zRet;
}

/* query_text() compared with zWant (NULL: the value must be NULL). */
static char *expect_text(sqlite3 *db, const char *zSql, const char *zWant) {
  char *zGot = 0;
  char *zErr = query_text(db, zSql, &zGot);
  if (zErr == 0) {
    int same = (zGot == 0 && zWant == 0) || (zGot && zWant && strcmp(zGot, zWant) == 0);
    if (!same) {
      zErr = sqlite3_mprintf("%s -> %s, expected %s", zSql, zGot ? zGot : "NULL",
                             zWant ? zWant : "NULL");
    }
  }
  sqlite3_free(zGot);
  return zErr;
}

static char *expect_int(sqlite3 *db, const char *zSql, sqlite3_int64 iWant) {
  char zWant[32];
  snprintf(zWant, sizeof(zWant), "%lld", (long long)iWant);
  return expect_text(db, zSql, zWant);
}

/* zSql must fail (at prepare or step) with a message containing zPart. */
static char *expect_error(sqlite3 *db, const char *zSql, const char *zPart) {
  sqlite3_stmt *pStmt = 0;
  char *zRet = 0;
  int rc = sqlite3_prepare_v2(db, zSql, -1, &pStmt, 0);
  if (rc == SQLITE_OK) {
    while ((rc = sqlite3_step(pStmt)) == SQLITE_ROW) {
    }
    if (rc == SQLITE_DONE) rc = SQLITE_OK;
  }
  if (rc == SQLITE_OK) {
    zRet = sqlite3_mprintf("%s succeeded; expected an error containing \"%s\"", zSql, zPart);
  } else if (strstr(sqlite3_errmsg(db), zPart) == 0) {
    zRet = sqlite3_mprintf("%s -> \"%s\"; expected it to contain \"%s\"", zSql, sqlite3_errmsg(db),
                           zPart);
  }
  sqlite3_finalize(pStmt);
  return zRet;
}

/* SELECT count(*) FROM zFrom, or -1 on error. */
static sqlite3_int64 count_rows(sqlite3 *db, const char *zFrom) {
  char *zSql = sqlite3_mprintf("SELECT count(*) FROM %s", zFrom);
  char *zOut = 0;
  char *zErr = query_text(db, zSql, &zOut);
  sqlite3_int64 n = zErr || zOut == 0 ? -1 : atoll(zOut);
  sqlite3_free(zErr);
  sqlite3_free(zOut);
  sqlite3_free(zSql);
  return n;
}

static char *db_path(const char *zName) {
  return sqlite3_mprintf("%s/%s", g_tmp, zName);
}

/* Opens a database (the auto extension, if registered, loads with it). */
static char *open_db(const char *zFile, sqlite3 **pDb) {
  int rc = sqlite3_open_v2(zFile, pDb, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, 0);
  if (rc != SQLITE_OK) {
    char *z = sqlite3_mprintf("open %s -> rc=%d %s", zFile, rc,
                              *pDb ? sqlite3_errmsg(*pDb) : "out of memory");
    sqlite3_close(*pDb);
    *pDb = 0;
    return z;
  }
  return 0;
}

/* sqlite3_close() must succeed: every statement of ours is finalized, and
** the extension must not leave one behind either. */
static char *close_db(sqlite3 *db) {
  int rc = sqlite3_close(db);
  return why(rc == SQLITE_OK, "sqlite3_close -> rc=%d (a statement left unfinalized?)", rc);
}

/* ------------------------------------------------------------------------
** The fake's control endpoints, through libcurl
*/

typedef struct buf {
  char *p;
  size_t n;
} buf;

static size_t buf_write(char *ptr, size_t sz, size_t nmemb, void *pArg) {
  buf *b = (buf *)pArg;
  size_t n = sz * nmemb;
  char *p = realloc(b->p, b->n + n + 1);
  if (p == 0) return 0;
  memcpy(p + b->n, ptr, n);
  b->p = p;
  b->n += n;
  b->p[b->n] = 0;
  return n;
}

/* POSTs zJson to (or GETs, when zJson is NULL) BASE/__fake/zWhat.  Returns
** the response body (free()) in *pzOut when pzOut is not NULL. */
static char *fake_call(const char *zWhat, const char *zJson, char **pzOut) {
  CURL *c = curl_easy_init();
  struct curl_slist *h = 0;
  buf b = {0, 0};
  char *zUrl = sqlite3_mprintf("%s/__fake/%s", g_base, zWhat);
  char *zRet = 0;
  long status = 0;
  CURLcode cc;
  if (pzOut) *pzOut = 0;
  if (c == 0 || zUrl == 0) {
    zRet = sqlite3_mprintf("fake %s: out of memory", zWhat);
  } else {
    curl_easy_setopt(c, CURLOPT_URL, zUrl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, buf_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (zJson) {
      h = curl_slist_append(h, "Content-Type: application/json");
      curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, zJson);
    }
    cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (cc != CURLE_OK || status != 200) {
      zRet =
          sqlite3_mprintf("fake %s: curl=%d HTTP %ld %s", zWhat, (int)cc, status, b.p ? b.p : "");
    }
  }
  if (zRet == 0 && pzOut) {
    *pzOut = b.p;
    b.p = 0;
  }
  free(b.p);
  curl_slist_free_all(h);
  if (c) curl_easy_cleanup(c);
  sqlite3_free(zUrl);
  return zRet;
}

/* Resets the fake (objects, log, fault counters) and lifts its quota, as
** the high-volume checks need. */
static char *fake_reset(void) {
  char *z = fake_call("reset", "{}", 0);
  if (z == 0) {
    z = fake_call("config", "{\"quota\":{\"general\":{\"hour\":null,\"day\":null}}}", 0);
  }
  return z;
}

/* Evaluates zSql on db with ?1 bound to the fake's request log (a JSON
** array) and returns its single text result. */
static char *fake_log_query(sqlite3 *db, const char *zSql, char **pzOut) {
  char *zLog = 0;
  sqlite3_stmt *pStmt = 0;
  char *zRet = fake_call("log", 0, &zLog);
  *pzOut = 0;
  if (zRet) return zRet;
  if (sqlite3_prepare_v2(db, zSql, -1, &pStmt, 0) != SQLITE_OK) {
    zRet = sqlite3_mprintf("prepare %s -> %s", zSql, sqlite3_errmsg(db));
  } else {
    sqlite3_bind_text(pStmt, 1, zLog, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(pStmt) == SQLITE_ROW) {
      const char *z = (const char *)sqlite3_column_text(pStmt, 0);
      *pzOut = sqlite3_mprintf("%s", z ? z : "NULL");
    } else {
      zRet = sqlite3_mprintf("%s -> %s", zSql, sqlite3_errmsg(db));
    }
  }
  sqlite3_finalize(pStmt);
  free(zLog);
  return zRet;
}

/* The number of API requests (not control calls) the fake has logged. */
static char *fake_request_count(sqlite3 *db, sqlite3_int64 *pN) {
  char *zOut = 0;
  char *zRet = fake_log_query(db, "SELECT json_array_length(?1)", &zOut);
  *pN = zOut ? atoll(zOut) : -1;
  sqlite3_free(zOut);
  return zRet;
}

/* ------------------------------------------------------------------------
** Setup shared by several checks
*/

/* Registers credential `fake` (memory token) and destination zDest posting
** companies for ACC1, with the extra config keys in zExtra (JSON members,
** "" for none). */
static char *setup_destination(sqlite3 *db, const char *zDest, const char *zExtra) {
  char *zSql = sqlite3_mprintf("SELECT callrail_credential('fake', %Q, %Q);"
                               "SELECT callrail_destination(%Q, '{\"credential\":\"fake\","
                               "\"url\":\"/v3/a/{account_id}/companies.json\","
                               "\"params\":{\"account_id\":\"" ACC1 "\"}%s%s}');",
                               TOKEN, g_base, zDest, zExtra[0] ? "," : "", zExtra);
  char *zErr = exec(db, zSql);
  sqlite3_free(zSql);
  return zErr;
}

/* A table zTable of n companies named "PREFIX i". */
static char *make_shops(sqlite3 *db, const char *zTable, const char *zPrefix, int n) {
  char *zSql =
      sqlite3_mprintf("CREATE TABLE %s(name TEXT);"
                      "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<%d)"
                      " INSERT INTO %s SELECT %Q || ' ' || i FROM c;",
                      zTable, n, zTable, zPrefix);
  char *zErr = exec(db, zSql);
  sqlite3_free(zSql);
  return zErr;
}

/* ------------------------------------------------------------------------
** Loading
*/

/* sqlite3_callrail_init() called directly on one connection, before any
** auto extension is registered. */
static void t_load_direct(void) {
  sqlite3 *db = 0;
  char *zErrMsg = 0;
  char *zWhy = open_db(":memory:", &db);
  int rc;
  if (zWhy == 0) {
    zWhy = expect_error(db, "SELECT callrail_version()", "no such function");
  }
  if (zWhy == 0) {
    rc = sqlite3_callrail_init(db, &zErrMsg, 0);
    zWhy = why(rc == SQLITE_OK && zErrMsg == 0, "sqlite3_callrail_init -> rc=%d %s", rc,
               zErrMsg ? zErrMsg : "(no message)");
  }
  if (zWhy == 0) {
    zWhy = expect_int(db, "SELECT callrail_version() LIKE 'callrail-sqlite %'", 1);
  }
  sqlite3_free(zErrMsg);
  if (db) first(&zWhy, close_db(db));
  report("load_direct_init", zWhy);
}

/* A file database in rollback-journal mode becomes WAL when the extension
** loads (callrail.h says so: the audit connection needs it). */
static void t_wal_switch(void) {
  sqlite3 *db = 0;
  char *zFile = db_path("journal.db");
  char *zErrMsg = 0;
  char *zWhy = open_db(zFile, &db);
  int rc;
  if (zWhy == 0) zWhy = exec(db, "PRAGMA journal_mode=DELETE; CREATE TABLE t(x);");
  if (zWhy == 0) zWhy = expect_text(db, "PRAGMA journal_mode", "delete");
  if (zWhy == 0) {
    rc = sqlite3_callrail_init(db, &zErrMsg, 0);
    zWhy = why(rc == SQLITE_OK, "sqlite3_callrail_init -> rc=%d %s", rc, zErrMsg);
  }
  if (zWhy == 0) zWhy = expect_text(db, "PRAGMA journal_mode", "wal");
  if (zWhy == 0) {
    /* The extension's tables were created at load. */
    zWhy = expect_int(db,
                      "SELECT count(*) FROM sqlite_schema WHERE type='table' AND name IN"
                      " ('callrail_credentials','callrail_destinations','callrail_runs',"
                      "'callrail_responses','callrail_delivered')",
                      5);
  }
  sqlite3_free(zErrMsg);
  if (db) first(&zWhy, close_db(db));
  /* WAL is persistent: a plain reopen (no extension registered yet) sees it. */
  if (zWhy == 0) {
    db = 0;
    zWhy = open_db(zFile, &db);
    if (zWhy == 0) zWhy = expect_text(db, "PRAGMA journal_mode", "wal");
    if (db) first(&zWhy, close_db(db));
  }
  sqlite3_free(zFile);
  report("file_db_switched_to_wal", zWhy);
}

/* callrail_version(): "callrail-sqlite V (libcurl V, SQLite V)" with the
** versions this program really runs on. */
static void t_version(sqlite3 *db) {
  char *zGot = 0;
  char *zTail = sqlite3_mprintf("(libcurl %s, SQLite %s)",
                                curl_version_info(CURLVERSION_NOW)->version, sqlite3_libversion());
  char *zWhy = query_text(db, "SELECT callrail_version()", &zGot);
  if (zWhy == 0) {
    size_t n = zGot ? strlen(zGot) : 0, m = strlen(zTail);
    zWhy = why(zGot && strncmp(zGot, "callrail-sqlite ", 16) == 0 && n > m + 16 &&
                   strcmp(zGot + n - m, zTail) == 0 && zGot[16] >= '0' && zGot[16] <= '9',
               "callrail_version() = \"%s\"; expected \"callrail-sqlite <version> %s\"",
               zGot ? zGot : "NULL", zTail);
  }
  sqlite3_free(zGot);
  sqlite3_free(zTail);
  report("auto_extension_version", zWhy);
}

/* The registered surface, exactly: every function but callrail_version is
** SQLITE_DIRECTONLY, callrail_version is innocuous; three table-valued
** functions (their DIRECTONLY is checked by t_directonly). */
static void t_surface(sqlite3 *db) {
  char *zSql = sqlite3_mprintf(
      "SELECT group_concat(x, ' ') FROM (SELECT name || '/' || narg || '/' ||"
      " CASE WHEN flags & %d THEN 'directonly' WHEN flags & %d THEN 'innocuous' ELSE '-' END"
      " AS x FROM pragma_function_list WHERE name GLOB 'callrail*' ORDER BY name, narg)",
      SQLITE_DIRECTONLY, SQLITE_INNOCUOUS);
  char *zWhy = expect_text(db, zSql,
                           "callrail_activate/1/directonly callrail_credential/2/directonly"
                           " callrail_credential/3/directonly callrail_credential/4/directonly"
                           " callrail_deactivate/1/directonly"
                           " callrail_destination/2/directonly callrail_prune/-1/directonly "
                           "callrail_resolve/2/directonly"
                           " callrail_resolve/3/directonly callrail_test/2/directonly"
                           " callrail_version/0/innocuous");
  report("function_list_exact", zWhy);
  zWhy = expect_text(db,
                     "SELECT group_concat(name, ' ') FROM (SELECT name FROM pragma_module_list"
                     " WHERE name GLOB 'callrail*' ORDER BY name)",
                     "callrail_accounts callrail_get callrail_preview callrail_send");
  report("module_list_exact", zWhy);
  sqlite3_free(zSql);
}

/* ------------------------------------------------------------------------
** The main flow on a file database: credential, destination, preview,
** test, activate, send.
*/

static void t_credential(sqlite3 *db) {
  char *zSql = sqlite3_mprintf("SELECT callrail_credential('fake', %Q, %Q)", TOKEN, g_base);
  char *zWhy = expect_text(db, zSql, "fake");
  sqlite3_free(zSql);
  if (zWhy == 0) {
    zSql = sqlite3_mprintf("SELECT source || ' ' || api_base FROM callrail_credentials"
                           " WHERE name='fake'");
    char *zWant = sqlite3_mprintf("memory %s", g_base);
    zWhy = expect_text(db, zSql, zWant);
    sqlite3_free(zWant);
    sqlite3_free(zSql);
  }
  report("credential_memory_token", zWhy);
}

static void t_destination(sqlite3 *db) {
  char *zWhy = expect_text(db,
                           "SELECT callrail_destination('companies', json_object("
                           "'credential', 'fake', 'url', '/v3/a/{account_id}/companies.json',"
                           " 'params', json_object('account_id', '" ACC1 "'),"
                           " 'concurrency', 8))",
                           "companies");
  if (zWhy == 0) {
    zWhy = expect_text(db,
                       "SELECT active || ' ' || json_extract(config, '$.concurrency')"
                       " FROM callrail_destinations WHERE name='companies'",
                       "0 8");
  }
  report("destination_created_inactive", zWhy);
}

/* callrail_preview through sqlite3_prepare/step: three requests, built as
** a send would, Authorization masked, nothing sent. */
static void t_preview(sqlite3 *db) {
  sqlite3_stmt *pStmt = 0;
  char *zWhy = 0;
  char *zUrl = sqlite3_mprintf("%s/v3/a/" ACC1 "/companies.json", g_base);
  sqlite3_int64 nBefore = 0, nAfter = 0;
  int rc, n = 0;
  first(&zWhy, fake_request_count(db, &nBefore));
  rc = sqlite3_prepare_v2(db,
                          "SELECT batch, records, method, url, body, error,"
                          " json_extract(headers, '$.Authorization'),"
                          " json_extract(headers, '$.Content-Type'), headers"
                          " FROM callrail_preview('companies', 'SELECT name FROM shops', 3)",
                          -1, &pStmt, 0);
  if (rc != SQLITE_OK) first(&zWhy, sqlite3_mprintf("prepare: %s", sqlite3_errmsg(db)));
  while (pStmt && (rc = sqlite3_step(pStmt)) == SQLITE_ROW) {
    const char *zMethod = (const char *)sqlite3_column_text(pStmt, 2);
    const char *zGotUrl = (const char *)sqlite3_column_text(pStmt, 3);
    const char *zBody = (const char *)sqlite3_column_text(pStmt, 4);
    const char *zAuth = (const char *)sqlite3_column_text(pStmt, 6);
    const char *zCtype = (const char *)sqlite3_column_text(pStmt, 7);
    const char *zHeaders = (const char *)sqlite3_column_text(pStmt, 8);
    char *zWantBody = sqlite3_mprintf("{\"name\":\"Shop %d\"}", n + 1);
    n++;
    first(&zWhy, why(sqlite3_column_int(pStmt, 0) == n && sqlite3_column_int(pStmt, 1) == 1,
                     "row %d: batch %d records %d", n, sqlite3_column_int(pStmt, 0),
                     sqlite3_column_int(pStmt, 1)));
    first(&zWhy, why(zMethod && strcmp(zMethod, "POST") == 0, "row %d: method %s", n, zMethod));
    first(&zWhy, why(zGotUrl && strcmp(zGotUrl, zUrl) == 0, "row %d: url %s, expected %s", n,
                     zGotUrl, zUrl));
    first(&zWhy, why(zBody && strcmp(zBody, zWantBody) == 0, "row %d: body %s, expected %s", n,
                     zBody, zWantBody));
    first(&zWhy, why(sqlite3_column_type(pStmt, 5) == SQLITE_NULL, "row %d: error %s", n,
                     sqlite3_column_text(pStmt, 5)));
    first(&zWhy, why(zAuth && strcmp(zAuth, "Token token=\"***\"") == 0, "row %d: Authorization %s",
                     n, zAuth));
    first(&zWhy, why(zCtype && strcmp(zCtype, "application/json") == 0, "row %d: Content-Type %s",
                     n, zCtype));
    first(&zWhy, why(zHeaders && strstr(zHeaders, TOKEN) == 0, "row %d: the token shows in %s", n,
                     zHeaders));
    sqlite3_free(zWantBody);
  }
  if (rc != SQLITE_DONE && rc != SQLITE_OK) {
    first(&zWhy, sqlite3_mprintf("step -> rc=%d %s", rc, sqlite3_errmsg(db)));
  }
  sqlite3_finalize(pStmt);
  first(&zWhy, why(n == 3, "%d preview rows, expected 3 (the limit)", n));
  first(&zWhy, fake_request_count(db, &nAfter));
  first(&zWhy, why(nAfter == nBefore, "the preview sent %lld requests", nAfter - nBefore));
  sqlite3_free(zUrl);
  report("preview_rows_via_step", zWhy);
}

/* callrail_test on the inactive destination: one POST, 201, state ok, the
** created company's id in body, audited as a `test` run. */
static void t_test_record(sqlite3 *db) {
  char *zRes = 0;
  char *zWhy =
      query_text(db, "SELECT callrail_test('companies', json_object('name', 'Test Co'))", &zRes);
  if (zWhy == 0) {
    char *zSql = sqlite3_mprintf(
        "SELECT json_extract(%Q, '$.state') = 'ok' AND json_extract(%Q, '$.status') = 201"
        " AND json_extract(%Q, '$.body.id') LIKE 'COM%%'"
        " AND json_extract(%Q, '$.body.name') = 'Test Co'"
        " AND json_type(%Q, '$.error') = 'null'",
        zRes, zRes, zRes, zRes, zRes);
    zWhy = expect_int(db, zSql, 1);
    if (zWhy) {
      sqlite3_free(zWhy);
      zWhy = sqlite3_mprintf("callrail_test returned %s", zRes);
    }
    sqlite3_free(zSql);
  }
  if (zWhy == 0) {
    zWhy = expect_text(db,
                       "SELECT kind || ' ' || status || ' ' || ok || ' ' || requests"
                       " FROM callrail_runs ORDER BY run_id DESC LIMIT 1",
                       "test done 1 1");
  }
  sqlite3_free(zRes);
  report("callrail_test_ok_201", zWhy);
}

static void t_send_inactive(sqlite3 *db) {
  char *zWhy = expect_error(db, "SELECT * FROM callrail_send('companies', 'shops')", "not active");
  report("send_refuses_inactive_destination", zWhy);
}

/* 50 records at concurrency 8: 50 result rows, all ok; the audit tables
** agree; the fake received exactly 50 POSTs, one per record. */
static void t_send50(sqlite3 *db) {
  sqlite3_stmt *pStmt = 0;
  char *zWhy = 0;
  int rc, nRows = 0, nOk = 0;
  sqlite3_int64 nBefore = 0, nAfter = 0;
  first(&zWhy, expect_text(db, "SELECT callrail_activate('companies')", "companies"));
  first(&zWhy, fake_request_count(db, &nBefore));
  rc = sqlite3_prepare_v2(db,
                          "SELECT state, status, response_id, method, attempts"
                          " FROM callrail_send('companies', 'SELECT name FROM shops')",
                          -1, &pStmt, 0);
  if (rc != SQLITE_OK) first(&zWhy, sqlite3_mprintf("prepare: %s", sqlite3_errmsg(db)));
  while (pStmt && (rc = sqlite3_step(pStmt)) == SQLITE_ROW) {
    const char *zState = (const char *)sqlite3_column_text(pStmt, 0);
    nRows++;
    if (zState && strcmp(zState, "ok") == 0 && sqlite3_column_int(pStmt, 1) == 201 &&
        sqlite3_column_int(pStmt, 4) == 1) {
      nOk++;
    } else {
      first(&zWhy, sqlite3_mprintf("row %d: state %s status %d attempts %d", nRows, zState,
                                   sqlite3_column_int(pStmt, 1), sqlite3_column_int(pStmt, 4)));
    }
  }
  if (rc != SQLITE_DONE && rc != SQLITE_OK) {
    first(&zWhy, sqlite3_mprintf("step -> rc=%d %s", rc, sqlite3_errmsg(db)));
  }
  sqlite3_finalize(pStmt);
  first(&zWhy, why(nRows == 50 && nOk == 50, "%d rows, %d ok; expected 50 and 50", nRows, nOk));
  report("send_50_rows_all_ok", zWhy);

  zWhy = expect_text(db,
                     "SELECT status || ' records=' || records || ' requests=' || requests ||"
                     " ' ok=' || ok || ' failed=' || failed || ' unknown=' || unknown ||"
                     " ' invalid=' || invalid || ' finished=' || (finished_at IS NOT NULL)"
                     " FROM callrail_runs WHERE kind='send' ORDER BY run_id DESC LIMIT 1",
                     "done records=50 requests=50 ok=50 failed=0 unknown=0 invalid=0 finished=1");
  report("send_50_run_row_done", zWhy);

  zWhy = expect_text(db,
                     "SELECT count(*) || ' ' || sum(state='ok') || ' ' || sum(status=201) || ' ' ||"
                     " count(DISTINCT json_extract(response_body, '$.id')) || ' ' ||"
                     " count(DISTINCT json_extract(request_body, '$.name'))"
                     " FROM callrail_responses WHERE run_id ="
                     " (SELECT max(run_id) FROM callrail_runs WHERE kind='send')",
                     "50 50 50 50 50");
  report("send_50_responses_table", zWhy);

  zWhy = fake_request_count(db, &nAfter);
  if (zWhy == 0) {
    zWhy = why(nAfter - nBefore == 50, "the fake received %lld requests, expected 50",
               nAfter - nBefore);
  }
  report("send_50_fake_received_50", zWhy);
}

/* ------------------------------------------------------------------------
** The transport hand-off: nobody may leave transfers undriven
*/

/* embed_gate(n, ms): a test-only SQL function for a records query that
** keeps the caller away: it returns 1 once the fake has logged n requests
** more than the count its user data points to, and ms milliseconds after
** that (0: at once).  An error when the fake never gets there (30 s). */
static void gate_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  sqlite3 *dbLog = 0;
  sqlite3_int64 nWant = *(sqlite3_int64 *)sqlite3_user_data(ctx) + sqlite3_value_int64(argv[0]);
  sqlite3_int64 n = -1;
  sqlite3_int64 tGiveUp = now_ms() + 30000;
  char *zErr = open_db(":memory:", &dbLog); /* parses the fake's log */
  (void)argc;
  while (zErr == 0 && (zErr = fake_request_count(dbLog, &n)) == 0 && n < nWant) {
    zErr = why(now_ms() < tGiveUp, "embed_gate: the fake logged %lld of %lld requests", n, nWant);
    sleep_ms(5);
  }
  if (zErr == 0) sleep_ms(sqlite3_value_int(argv[1]));
  sqlite3_close(dbLog);
  if (zErr) {
    sqlite3_result_error(ctx, zErr, -1);
    sqlite3_free(zErr);
  } else {
    sqlite3_result_int(ctx, 1);
  }
}

/* The hand-back case (docs/design.md): the records query is the caller's
** absence.  Concurrency 2, the fake answers every request after 600 ms,
** timeout_ms 2000:
**   - record 1 takes 50 ms, longer than a run reads records before it
**     starts their requests (CR_FILL_MS): request 1 leaves alone;
**   - record 2 comes 300 ms after request 1 reached the fake: the caller was
**     away, so the worker thread drives request 1;
**   - starting request 2, the caller takes the multi handle back from the
**     worker while request 1 is in flight (the hand-back), then drives until
**     request 1 is answered (300 ms before request 2) and returns its row;
**   - record 3 keeps the caller away for 3 s, longer than timeout_ms, while
**     request 2 is in flight: its answer comes 300 ms later, and only the
**     worker can take it in.  Undriven, it is judged timed out (unknown)
**     when the caller comes back.
** Every request must end ok, each sent once. */
static void t_hand_back(sqlite3 *db) {
  sqlite3_int64 nBefore = 0, nAfter = 0;
  char *zWhy = fake_call("config", "{\"faults\":{\"delay_ms\":600}}", 0);
  first(&zWhy, exec(db, "SELECT callrail_destination('handoff', json_set((SELECT config FROM"
                        " callrail_destinations WHERE name='companies'), '$.concurrency', 2,"
                        " '$.timeout_ms', 2000));"
                        "SELECT callrail_activate('handoff');"
                        "CREATE TABLE handoff(i INTEGER PRIMARY KEY, name TEXT);"
                        "INSERT INTO handoff VALUES (1, 'Hand 1'), (2, 'Hand 2'), (3, 'Hand 3');"));
  first(&zWhy, fake_request_count(db, &nBefore));
  if (sqlite3_create_function(db, "embed_gate", 2, SQLITE_UTF8, &nBefore, gate_fn, 0, 0) !=
      SQLITE_OK) {
    first(&zWhy, sqlite3_mprintf("embed_gate: %s", sqlite3_errmsg(db)));
  }
  first(&zWhy,
        expect_text(
            db,
            "SELECT group_concat(state || ' ' || coalesce(status, '-') || ' ' || attempts, ', ')"
            " FROM callrail_send('handoff', 'SELECT name FROM handoff WHERE embed_gate("
            "  CASE i WHEN 2 THEN 1 WHEN 3 THEN 2 ELSE 0 END,"
            "  CASE i WHEN 1 THEN 50 WHEN 2 THEN 300 ELSE 3000 END) ORDER BY i')",
            "ok 201 1, ok 201 1, ok 201 1"));
  first(&zWhy, fake_request_count(db, &nAfter));
  first(&zWhy, why(nAfter - nBefore == 3, "the fake received %lld requests, expected 3",
                   nAfter - nBefore));
  first(&zWhy, fake_call("config", "{\"faults\":{\"delay_ms\":0}}", 0));
  report("hand_back_answers_in_time_are_ok", zWhy);
}

/* A memory token belongs to the connection that registered it: a second
** connection to the same file sees the credential but not the token, and
** gets an error naming the credential (and sends nothing). */
static void t_memory_token_private(const char *zFile) {
  sqlite3 *db2 = 0;
  char *zWhy = open_db(zFile, &db2);
  sqlite3_int64 nBefore = 0, nAfter = 0;
  if (zWhy == 0) zWhy = fake_request_count(db2, &nBefore);
  if (zWhy == 0) {
    zWhy = expect_error(db2, "SELECT callrail_test('companies', json_object('name', 'x'))",
                        "\"fake\"");
  }
  if (zWhy == 0) zWhy = fake_request_count(db2, &nAfter);
  if (zWhy == 0) zWhy = why(nAfter == nBefore, "%lld requests sent", nAfter - nBefore);
  if (db2) first(&zWhy, close_db(db2));
  report("memory_token_not_shared_across_connections", zWhy);
}

/* ------------------------------------------------------------------------
** DIRECTONLY: a view or trigger stored in the database cannot call the
** functions with side effects, even when the application prepares a
** statement through the C API.  Nothing reaches the fake.
*/
static void t_directonly(sqlite3 *db, const char *zFile) {
  char *zWhy = 0;
  sqlite3_int64 nBefore = 0, nAfter = 0;
  sqlite3 *db2 = 0;
  first(&zWhy, fake_request_count(db, &nBefore));
  first(&zWhy, exec(db, "CREATE VIEW v_test AS SELECT callrail_test('companies',"
                        " json_object('name', 'From a view')) AS r;"
                        "CREATE VIEW v_send AS SELECT * FROM callrail_send('companies', 'shops');"
                        "CREATE VIEW v_cred AS SELECT callrail_credential('evil', 'tok', "
                        " 'http://127.0.0.1:9');"
                        "CREATE TABLE trig_src(x);"
                        "CREATE TRIGGER trig_send AFTER INSERT ON trig_src BEGIN"
                        " SELECT callrail_test('companies', json_object('name', new.x)); END;"));
  if (zWhy == 0) {
    first(&zWhy, expect_error(db, "SELECT * FROM v_test", "unsafe use of callrail_test()"));
    first(&zWhy, expect_error(db, "SELECT * FROM v_send", "unsafe use of virtual table"));
    first(&zWhy, expect_error(db, "SELECT * FROM v_cred", "unsafe use of callrail_credential()"));
    first(&zWhy, expect_error(db, "INSERT INTO trig_src VALUES('From a trigger')",
                              "unsafe use of callrail_test()"));
  }
  report("directonly_view_and_trigger_refused", zWhy);

  /* The same schema as a file someone else wrote: a fresh connection, which
  ** even trusts the schema (SQLITE_DBCONFIG_TRUSTED_SCHEMA on). */
  zWhy = open_db(zFile, &db2);
  if (zWhy == 0) {
    int on = -1;
    sqlite3_db_config(db2, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 1, &on);
    zWhy = why(on == 1, "could not turn on SQLITE_DBCONFIG_TRUSTED_SCHEMA");
    first(&zWhy, expect_error(db2, "SELECT * FROM v_test", "unsafe use of callrail_test()"));
    first(&zWhy, expect_error(db2, "SELECT * FROM v_send", "unsafe use of virtual table"));
    first(&zWhy, expect_error(db2, "INSERT INTO trig_src VALUES('From a trigger')",
                              "unsafe use of callrail_test()"));
    first(&zWhy, close_db(db2));
  }
  first(&zWhy, expect_int(db, "SELECT count(*) FROM callrail_credentials WHERE name='evil'", 0));
  first(&zWhy, expect_int(db, "SELECT count(*) FROM trig_src", 0));
  first(&zWhy, fake_request_count(db, &nAfter));
  first(&zWhy, why(nAfter == nBefore, "%lld requests reached the fake", nAfter - nBefore));
  report("directonly_fresh_connection_refused", zWhy);
  report("directonly_cleanup",
         exec(db, "DROP VIEW v_test; DROP VIEW v_send; DROP VIEW v_cred; DROP TABLE trig_src;"));
}

/* ------------------------------------------------------------------------
** sqlite3_interrupt() from another thread
*/

typedef struct intr_arg {
  sqlite3 *db;
  int afterMs;
  sqlite3_int64 tInterrupt;
} intr_arg;

static void *intr_thread(void *p) {
  intr_arg *a = (intr_arg *)p;
  sleep_ms(a->afterMs);
  a->tInterrupt = now_ms();
  sqlite3_interrupt(a->db);
  return 0;
}

/* Runs zSql, interrupting it from a thread after afterMs; *pRc gets the
** first non-ROW step result, *pMs how long after the interrupt it came,
** *pRows how many rows came back. */
static char *run_interrupted(sqlite3 *db, const char *zSql, int afterMs, int *pRc,
                             sqlite3_int64 *pMs, int *pRows) {
  sqlite3_stmt *pStmt = 0;
  pthread_t th;
  intr_arg a;
  sqlite3_int64 tEnd;
  int rc;
  *pRows = 0;
  *pRc = -1;
  *pMs = -1;
  if (sqlite3_prepare_v2(db, zSql, -1, &pStmt, 0) != SQLITE_OK) {
    return sqlite3_mprintf("prepare %s: %s", zSql, sqlite3_errmsg(db));
  }
  a.db = db;
  a.afterMs = afterMs;
  a.tInterrupt = 0;
  if (pthread_create(&th, 0, intr_thread, &a) != 0) {
    sqlite3_finalize(pStmt);
    return sqlite3_mprintf("pthread_create failed");
  }
  while ((rc = sqlite3_step(pStmt)) == SQLITE_ROW)
    (*pRows)++;
  tEnd = now_ms();
  pthread_join(th, 0);
  *pRc = rc;
  *pMs = a.tInterrupt ? tEnd - a.tInterrupt : -1;
  printf("# interrupted after %d ms: step returned %d (%s) %lld ms later, %d rows read\n", afterMs,
         rc, sqlite3_errmsg(db), (long long)*pMs, *pRows);
  sqlite3_finalize(pStmt);
  if (a.tInterrupt == 0 || tEnd < a.tInterrupt) {
    return sqlite3_mprintf("the statement ended (rc=%d, %d rows) before the interrupt", rc, *pRows);
  }
  return 0;
}

/* 200 records against a fake that answers each request after 200 ms (about
** 10 s of work at concurrency 4), interrupted after 0.7 s (requests are in
** flight: they leave in waves every 200 ms): the statement
** stops within ~1.5 s with SQLITE_INTERRUPT, the run is `interrupted`, no
** row stays `pending`.  A re-run with `key` then sends only the rest, no
** record twice. */
static void t_interrupt(void) {
  sqlite3 *db = 0;
  char *zFile = db_path("interrupt.db");
  char *zWhy = open_db(zFile, &db);
  int rc = 0, nRows = 0;
  sqlite3_int64 ms = 0;
  if (zWhy == 0) zWhy = fake_reset();
  if (zWhy == 0) zWhy = setup_destination(db, "slow", "\"key\":\"name\"");
  if (zWhy == 0) zWhy = exec(db, "SELECT callrail_activate('slow')");
  if (zWhy == 0) zWhy = make_shops(db, "shops200", "Slow shop", 200);
  if (zWhy == 0) zWhy = fake_call("config", "{\"faults\":{\"delay_ms\":200}}", 0);
  if (zWhy == 0) {
    zWhy = run_interrupted(db, "SELECT state FROM callrail_send('slow', 'shops200')", 700, &rc, &ms,
                           &nRows);
  }
  first(&zWhy, fake_call("config", "{\"faults\":{\"delay_ms\":0}}", 0));
  if (zWhy == 0) {
    zWhy = why(rc == SQLITE_INTERRUPT, "step returned rc=%d (%s) after %d rows, expected %d", rc,
               sqlite3_errstr(rc), nRows, SQLITE_INTERRUPT);
  }
  if (zWhy == 0) zWhy = why(ms <= 1500, "the statement stopped %lld ms after the interrupt", ms);
  report("interrupt_stops_send_with_SQLITE_INTERRUPT", zWhy);

  if (db) {
    zWhy = expect_text(db,
                       "SELECT status || ' ' || (finished_at IS NOT NULL) || ' ' || (ok < 200)"
                       " FROM callrail_runs WHERE destination='slow' ORDER BY run_id DESC LIMIT 1",
                       "interrupted 1 1");
    first(&zWhy,
          expect_int(db, "SELECT count(*) FROM callrail_responses WHERE state='pending'", 0));
    /* The run's counts agree with its rows. */
    first(&zWhy, expect_int(db,
                            "SELECT (SELECT ok + failed + unknown FROM callrail_runs"
                            " WHERE destination='slow') = (SELECT count(*) FROM callrail_responses"
                            " WHERE destination='slow')",
                            1));
    report("interrupt_run_interrupted_nothing_pending", zWhy);

    /* Resume: a keyed re-run sends the records not delivered, none twice. */
    zWhy = expect_int(db,
                      "SELECT count(*) FROM callrail_send('slow', 'shops200')"
                      " WHERE state <> 'ok'",
                      0);
    first(&zWhy, expect_int(db,
                            "SELECT (SELECT count(*) FROM callrail_delivered WHERE destination="
                            "'slow') + (SELECT count(*) FROM callrail_responses WHERE destination="
                            "'slow' AND state='unknown')",
                            200));
    if (zWhy == 0) {
      char *zOut = 0;
      zWhy = fake_log_query(db,
                            "SELECT count(*) || ' ' || count(DISTINCT json_extract("
                            "json_extract(value, '$.body'), '$.name')) FROM json_each(?1)"
                            " WHERE json_extract(value, '$.method') = 'POST'",
                            &zOut);
      if (zWhy == 0) {
        int nPost = 0, nDistinct = 0;
        sscanf(zOut, "%d %d", &nPost, &nDistinct);
        zWhy = why(nPost == 200 && nDistinct == 200, "the fake got %d POSTs of %d distinct records",
                   nPost, nDistinct);
      }
      sqlite3_free(zOut);
    }
    report("interrupt_resume_sends_rest_once", zWhy);
    report("interrupt_close_db", close_db(db));
  }
  sqlite3_free(zFile);
}

/* Ctrl-C in an application arrives while it handles a row, not only while
** sqlite3_step() waits: here sqlite3_interrupt() is called between two
** steps while slow requests (2.5 s each) are in flight and finished ones
** wait to be returned.  The next step must still end the statement within
** ~1.5 s (README "Guarantees": "stops a run within a second"), leaving nothing pending. */
static void t_interrupt_between_steps(void) {
  sqlite3 *db = 0;
  sqlite3_stmt *pStmt = 0;
  char *zFile = db_path("interrupt2.db");
  char *zWhy = open_db(zFile, &db);
  sqlite3_int64 t0 = 0, ms = -1;
  int rc = 0, nRows = 0;
  if (zWhy == 0) zWhy = fake_reset();
  if (zWhy == 0) zWhy = setup_destination(db, "slow2", "");
  if (zWhy == 0) zWhy = exec(db, "SELECT callrail_activate('slow2')");
  if (zWhy == 0) zWhy = make_shops(db, "shops40", "Slow shop", 40);
  if (zWhy == 0)
    zWhy = fake_call("config", "{\"faults\":{\"delay_ms\":2500,\"delay_every\":2}}", 0);
  if (zWhy == 0 && sqlite3_prepare_v2(db, "SELECT state FROM callrail_send('slow2', 'shops40')", -1,
                                      &pStmt, 0) != SQLITE_OK) {
    zWhy = sqlite3_mprintf("prepare: %s", sqlite3_errmsg(db));
  }
  if (zWhy == 0) {
    rc = sqlite3_step(pStmt);
    if (rc == SQLITE_ROW) {
      nRows++;
      t0 = now_ms();
      sqlite3_interrupt(db); /* as a SIGINT handler would, between steps */
      while ((rc = sqlite3_step(pStmt)) == SQLITE_ROW)
        nRows++;
      ms = now_ms() - t0;
    }
    printf("# interrupted between steps: step returned %d (%s) %lld ms later, %d rows read\n", rc,
           sqlite3_errstr(rc), (long long)ms, nRows);
    zWhy = why(rc == SQLITE_INTERRUPT && ms >= 0 && ms <= 1500,
               "rc=%d (%s) %lld ms after the interrupt; expected %d within 1500 ms", rc,
               sqlite3_errstr(rc), ms, SQLITE_INTERRUPT);
  }
  sqlite3_finalize(pStmt);
  first(&zWhy, fake_call("config", "{\"faults\":{\"delay_ms\":0}}", 0));
  if (db) {
    first(&zWhy, expect_text(db,
                             "SELECT status || ', pending rows: ' || (SELECT count(*) FROM"
                             " callrail_responses WHERE state='pending') FROM callrail_runs"
                             " WHERE destination='slow2'",
                             "interrupted, pending rows: 0"));
    first(&zWhy, close_db(db));
  }
  sqlite3_free(zFile);
  report("interrupt_between_steps_stops_promptly", zWhy);
}

/* ------------------------------------------------------------------------
** In-memory databases: no second connection; the audit rows are written
** by the user's own connection and commit with its statement.
*/
static void t_memory_db(void) {
  sqlite3 *db = 0;
  char *zWhy = open_db(":memory:", &db);
  if (zWhy == 0) zWhy = expect_text(db, "PRAGMA journal_mode", "memory");
  if (zWhy == 0) zWhy = setup_destination(db, "mem", "");
  if (zWhy == 0) zWhy = exec(db, "SELECT callrail_activate('mem')");
  if (zWhy == 0) zWhy = make_shops(db, "shops5", "Memory shop", 5);
  if (zWhy == 0) {
    zWhy = expect_text(db,
                       "SELECT count(*) || ' ' || sum(state='ok') FROM callrail_send('mem',"
                       " 'SELECT name FROM shops5')",
                       "5 5");
  }
  if (zWhy == 0) {
    zWhy = why(sqlite3_get_autocommit(db), "a transaction is left open after the statement");
  }
  if (zWhy == 0) {
    zWhy = expect_text(db,
                       "SELECT (SELECT status || ' ' || ok FROM callrail_runs WHERE kind='send')"
                       " || ' ' || (SELECT count(*) FROM callrail_responses WHERE state='ok')"
                       " || ' ' || (SELECT count(*) FROM callrail_responses)",
                       "done 5 5 5");
  }
  if (db) first(&zWhy, close_db(db));
  report("memory_db_send_and_audit", zWhy);
}

/* An interrupted send, in an in-memory database (whose audit rows are
** written by the interrupted connection itself) or inside BEGIN ... COMMIT
** on a file (where the extension's own connection writes them): the rows
** must end up resolved (README "Guarantees": an interrupt leaves the run resumable,
** nothing `pending`), in memory once the next run has recovered them.
** zFile NULL: in-memory; else a file database inside BEGIN ... COMMIT.
** EMBED_TEST_SKIP=memory_interrupt in the environment skips these checks
** (to see the leak report of everything else when they crash). */
static void t_fallback_interrupt(const char *zName, const char *zFile) {
  sqlite3 *db = 0;
  char *zPath = zFile ? db_path(zFile) : sqlite3_mprintf(":memory:");
  char *zWhy = open_db(zPath, &db);
  int rc = 0, nRows = 0;
  sqlite3_int64 ms = 0;
  if (zWhy == 0) zWhy = fake_reset();
  if (zWhy == 0) zWhy = setup_destination(db, "fbslow", "");
  if (zWhy == 0) zWhy = exec(db, "SELECT callrail_activate('fbslow')");
  if (zWhy == 0) zWhy = make_shops(db, "shops100", "Fallback slow shop", 100);
  if (zWhy == 0 && zFile) zWhy = exec(db, "BEGIN");
  if (zWhy == 0) zWhy = fake_call("config", "{\"faults\":{\"delay_ms\":200}}", 0);
  if (zWhy == 0) {
    zWhy = run_interrupted(db, "SELECT state FROM callrail_send('fbslow', 'shops100')", 700, &rc,
                           &ms, &nRows);
  }
  first(&zWhy, fake_call("config", "{\"faults\":{\"delay_ms\":0}}", 0));
  if (zWhy == 0) {
    zWhy = why(rc == SQLITE_INTERRUPT && ms <= 1500, "rc=%d after %lld ms", rc, ms);
  }
  if (db && zFile) {
    if (sqlite3_get_autocommit(db)) {
      sqlite3_int64 nSent = -1;
      sqlite3_free(fake_request_count(db, &nSent));
      first(&zWhy,
            sqlite3_mprintf("the interrupt rolled back the transaction, and with it every audit row"
                            " of the run (%lld callrail_runs rows left) although the fake received"
                            " %lld requests",
                            (long long)count_rows(db, "callrail_runs WHERE destination='fbslow'"),
                            (long long)nSent));
    } else {
      first(&zWhy, exec(db, "COMMIT"));
    }
  }
  if (db && !zFile) {
    /* In memory the rows go through the interrupted connection, on which
    ** nothing can be written until the statement ends (README,
    ** Guarantees): at most `concurrency` (4) rows stay pending, and the
    ** next run on the connection resolves them. */
    first(
        &zWhy,
        expect_text(db, "SELECT count(*) <= 4 FROM callrail_responses WHERE state='pending'", "1"));
    first(&zWhy, exec(db, "SELECT count(*) FROM callrail_send('fbslow', 'shops100')"));
  }
  if (db) {
    first(&zWhy, expect_text(db,
                             "SELECT status || ', pending rows: ' || (SELECT count(*) FROM"
                             " callrail_responses WHERE state='pending') FROM callrail_runs"
                             " WHERE destination='fbslow' ORDER BY run_id LIMIT 1",
                             "interrupted, pending rows: 0"));
    first(&zWhy, close_db(db));
  }
  sqlite3_free(zPath);
  report(zName, zWhy);
}

/* Loading twice on one connection (auto extension, then a direct call)
** works and leaks nothing: the first registration's state is released. */
static void t_double_init(void) {
  sqlite3 *db = 0;
  char *zErrMsg = 0;
  char *zWhy = open_db(":memory:", &db);
  int rc;
  if (zWhy == 0) {
    rc = sqlite3_callrail_init(db, &zErrMsg, 0);
    zWhy = why(rc == SQLITE_OK, "second sqlite3_callrail_init -> rc=%d %s", rc, zErrMsg);
  }
  if (zWhy == 0) zWhy = setup_destination(db, "twice", "");
  if (zWhy == 0) {
    zWhy = expect_text(db,
                       "SELECT json_extract(callrail_test('twice', json_object('name', 'Twice')),"
                       " '$.state')",
                       "ok");
  }
  sqlite3_free(zErrMsg);
  if (db) first(&zWhy, close_db(db));
  report("init_twice_on_one_connection", zWhy);
}

/* The token never reached the database file or its WAL. */
static void t_secret_scan(const char *zFile) {
  const char *azSuffix[] = {"", "-wal", "-journal"};
  char *zWhy = 0;
  size_t i, nToken = strlen(TOKEN);
  for (i = 0; i < sizeof(azSuffix) / sizeof(azSuffix[0]); i++) {
    char *zPath = sqlite3_mprintf("%s%s", zFile, azSuffix[i]);
    FILE *f = fopen(zPath, "rb");
    if (f) {
      char *p = 0;
      long n;
      fseek(f, 0, SEEK_END);
      n = ftell(f);
      fseek(f, 0, SEEK_SET);
      p = malloc((size_t)n + 1);
      if (p && fread(p, 1, (size_t)n, f) == (size_t)n) {
        long j;
        for (j = 0; j + (long)nToken <= n; j++) {
          if (memcmp(p + j, TOKEN, nToken) == 0) {
            first(&zWhy, sqlite3_mprintf("the token is in %s at offset %ld", zPath, j));
            break;
          }
        }
      }
      free(p);
      fclose(f);
    }
    sqlite3_free(zPath);
  }
  report("token_not_in_database_files", zWhy);
}

int main(int argc, char **argv) {
  sqlite3 *db = 0;
  char *zFile;
  char *zWhy;
  int rc;
  if (argc != 3) {
    fprintf(stderr, "usage: %s BASE_URL TMPDIR\n", argv[0]);
    return 2;
  }
  /* Line-buffered: LeakSanitizer's exit-time report ends the process
  ** without flushing stdio. */
  setvbuf(stdout, 0, _IOLBF, 0);
  g_base = argv[1];
  g_tmp = argv[2];
  curl_global_init(CURL_GLOBAL_DEFAULT);

  report("fake_reachable", fake_reset());

  /* Before any auto extension: direct calls. */
  t_load_direct();
  t_wal_switch();

  /* From here on, every connection opened loads the extension. */
  rc = sqlite3_auto_extension((void (*)(void))sqlite3_callrail_init);
  report("sqlite3_auto_extension", why(rc == SQLITE_OK, "rc=%d", rc));

  zFile = db_path("embed.db");
  zWhy = open_db(zFile, &db);
  if (report("open_file_db_with_auto_extension", zWhy)) {
    report("auto_extension_file_db_is_wal", expect_text(db, "PRAGMA journal_mode", "wal"));
    t_version(db);
    t_surface(db);
    report("setup_shops_table", make_shops(db, "shops", "Shop", 50));
    t_credential(db);
    t_destination(db);
    t_preview(db);
    t_test_record(db);
    t_send_inactive(db);
    t_send50(db);
    t_hand_back(db);
    t_memory_token_private(zFile);
    t_directonly(db, zFile);
    report("close_file_db", close_db(db));
    t_secret_scan(zFile);
  }
  sqlite3_free(zFile);

  t_interrupt();
  t_interrupt_between_steps();
  t_memory_db();
  t_double_init();
  /* Last, as it has crashed the ASan build (see the function). */
  if (getenv("EMBED_TEST_SKIP") && strstr(getenv("EMBED_TEST_SKIP"), "memory_interrupt")) {
    printf("# skipped: memory_db_interrupt_resolves_rows, transaction_interrupt_resolves_rows"
           " (EMBED_TEST_SKIP)\n");
  } else {
    t_fallback_interrupt("memory_db_interrupt_resolves_rows", 0);
    t_fallback_interrupt("transaction_interrupt_resolves_rows", "transaction.db");
  }

  sqlite3_reset_auto_extension();
  curl_global_cleanup();
  printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}
