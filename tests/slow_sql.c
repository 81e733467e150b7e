/*
** slow_sql.c - a test-only SQLite extension: slow_sql_sleep_ms(N) sleeps N
** milliseconds and returns N; slow_sql_wait_file(MARK, GO) creates the file
** MARK, then waits until the file GO exists, and returns 1.
**
** Tests that need the user's query to be slow (the extension must keep
** reading answers while the query computes its next row) put it in that
** query.  It makes the query slow by a fixed amount whatever the load of
** the machine, where a calibrated CPU-bound query ran too fast or too slow
** when other work ran beside it.  slow_sql_wait_file() holds a statement
** still until the test says so: MARK tells the test it is being held, and
** the test creates GO when it has done what it must do meanwhile.  Built as
** build/slow_sql.so by make test.
*/
#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT1

#include <stdio.h>
#include <time.h>
#include <unistd.h>

static void slow_sql_sleep_ms(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  sqlite3_int64 ms = sqlite3_value_int64(argv[0]);
  struct timespec ts;
  (void)argc;
  ts.tv_sec = (time_t)(ms / 1000);
  ts.tv_nsec = (long)(ms % 1000) * 1000000L;
  /* Restarted after a signal, with what is left of the time. */
  while (ms > 0 && nanosleep(&ts, &ts) != 0) {
  }
  sqlite3_result_int64(ctx, ms);
}

static void slow_sql_wait_file(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  const char *zMark = (const char *)sqlite3_value_text(argv[0]);
  const char *zGo = (const char *)sqlite3_value_text(argv[1]);
  struct timespec ts = {0, 10 * 1000000L};
  FILE *f = zMark ? fopen(zMark, "w") : 0;
  (void)argc;
  if (f) fclose(f);
  while (zGo && access(zGo, F_OK) != 0) {
    nanosleep(&ts, 0);
  }
  sqlite3_result_int(ctx, 1);
}

__attribute__((visibility("default"))) int sqlite3_slowsql_init(sqlite3 *db, char **pzErrMsg,
                                                                const sqlite3_api_routines *pApi) {
  SQLITE_EXTENSION_INIT2(pApi);
  (void)pzErrMsg;
  int rc =
      sqlite3_create_function(db, "slow_sql_sleep_ms", 1, SQLITE_UTF8, 0, slow_sql_sleep_ms, 0, 0);
  if (rc == SQLITE_OK) {
    rc = sqlite3_create_function(db, "slow_sql_wait_file", 2, SQLITE_UTF8, 0, slow_sql_wait_file, 0,
                                 0);
  }
  return rc;
}
