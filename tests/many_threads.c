/*
** many_threads.c - N threads of one process, each with its own connection
** to one database file, run the same SQL script (a callrail_send) at the
** same time: the "one live run per destination" promise must hold between
** connections of one process as it does between processes.
**
**   many_threads EXT DB SCRIPT N [stagger]
**
** EXT is the extension to load (the test's build: plain or ASan), DB the
** database file, SCRIPT a file of SQL run by every thread with
** sqlite3_exec, N the number of threads.  The threads open and load first,
** then start the script together (a barrier); with "stagger", thread k>0
** starts only once the database holds a callrail_responses row (the first
** run has a request pending or done).  tests/test_many_runs.py compiles and
** runs it, and checks the fake's log and the audit tables.
**
** Each thread prints "thread K: ok" or "thread K: error: MESSAGE"; the exit
** code is 0 if every thread ran its script without error.
*/
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_THREADS 8

static const char *g_ext, *g_db, *g_script;
static int g_stagger;
static pthread_barrier_t g_barrier;

/* True once the database holds a row of callrail_responses. */
static int has_response(sqlite3 *db) {
  sqlite3_stmt *pStmt = 0;
  int found = 0;
  if (sqlite3_prepare_v2(db, "SELECT 1 FROM callrail_responses LIMIT 1", -1, &pStmt, 0) ==
      SQLITE_OK) {
    found = sqlite3_step(pStmt) == SQLITE_ROW;
  }
  sqlite3_finalize(pStmt);
  return found;
}

/* Opens a connection and loads the extension into it. */
static int open_loaded(sqlite3 **pDb, char **pzErr) {
  int rc = sqlite3_open(g_db, pDb);
  if (rc == SQLITE_OK) rc = sqlite3_enable_load_extension(*pDb, 1);
  if (rc == SQLITE_OK) rc = sqlite3_load_extension(*pDb, g_ext, 0, pzErr);
  if (rc == SQLITE_OK) rc = sqlite3_busy_timeout(*pDb, 10000);
  if (rc != SQLITE_OK && *pzErr == 0) *pzErr = sqlite3_mprintf("%s", sqlite3_errmsg(*pDb));
  return rc;
}

static void *thread_main(void *pArg) {
  int k = (int)(size_t)pArg;
  sqlite3 *db = 0;
  char *zErr = 0;
  int rc = open_loaded(&db, &zErr);
  pthread_barrier_wait(&g_barrier);
  while (rc == SQLITE_OK && g_stagger && k > 0 && !has_response(db))
    sqlite3_sleep(5);
  if (rc == SQLITE_OK) rc = sqlite3_exec(db, g_script, 0, 0, &zErr);
  if (rc == SQLITE_OK) {
    printf("thread %d: ok\n", k);
  } else {
    printf("thread %d: error: %s\n", k, zErr ? zErr : sqlite3_errstr(rc));
  }
  fflush(stdout);
  sqlite3_free(zErr);
  sqlite3_close(db);
  return (void *)(size_t)(rc != SQLITE_OK);
}

/* The whole of file zPath, or NULL (caller frees). */
static char *read_file(const char *zPath) {
  FILE *f = fopen(zPath, "rb");
  char *z = 0;
  long n;
  if (f == 0) return 0;
  if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
    z = malloc((size_t)n + 1);
    if (z && fread(z, 1, (size_t)n, f) == (size_t)n) {
      z[n] = 0;
    } else {
      free(z);
      z = 0;
    }
  }
  fclose(f);
  return z;
}

int main(int argc, char **argv) {
  pthread_t aThread[MAX_THREADS];
  char *zScript;
  int n, i, failed = 0;
  if (argc < 5 || (n = atoi(argv[4])) < 1 || n > MAX_THREADS) {
    fprintf(stderr, "usage: many_threads EXT DB SCRIPT N [stagger]\n");
    return 2;
  }
  g_ext = argv[1];
  g_db = argv[2];
  g_stagger = argc > 5 && strcmp(argv[5], "stagger") == 0;
  zScript = read_file(argv[3]);
  if (zScript == 0) {
    fprintf(stderr, "cannot read %s\n", argv[3]);
    return 2;
  }
  g_script = zScript;
  pthread_barrier_init(&g_barrier, 0, (unsigned)n);
  for (i = 0; i < n; i++)
    pthread_create(&aThread[i], 0, thread_main, (void *)(size_t)i);
  for (i = 0; i < n; i++) {
    void *pRet = 0;
    pthread_join(aThread[i], &pRet);
    failed |= pRet != 0;
  }
  pthread_barrier_destroy(&g_barrier);
  free(zScript);
  return failed;
}
