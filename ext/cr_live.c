/*
** cr_live.c - is a run still alive?
**
** A run's `pending` rows may only be turned into `unknown` once the run is
** dead: another process (or another connection of this one) may be
** sending them right now.  Each run records its host, pid and the start
** time of its process (from /proc, so a reused pid is not mistaken for the
** old process).  A run is alive when:
**   - it belongs to this process and is in this process's list of live
**     runs (kept here, under a mutex, for every connection);
**   - it belongs to another process on this host that still exists with
**     the same start time;
**   - it belongs to another host: that cannot be checked from here, so it
**     is presumed alive and its rows are left alone.
*/
#include "cr_internal.h"
SQLITE_EXTENSION_INIT3

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define CR_MAX_LIVE_RUNS 256

static sqlite3_int64 cr_live_runs[CR_MAX_LIVE_RUNS];
static int cr_n_live_runs;

static sqlite3_mutex *cr_live_mutex(void) {
  return sqlite3_mutex_alloc(SQLITE_MUTEX_STATIC_APP1);
}

int cr_live_runs_add(sqlite3_int64 iRun) {
  int ok;
  sqlite3_mutex_enter(cr_live_mutex());
  ok = cr_n_live_runs < CR_MAX_LIVE_RUNS;
  if (ok) cr_live_runs[cr_n_live_runs++] = iRun;
  sqlite3_mutex_leave(cr_live_mutex());
  return ok;
}

void cr_live_runs_remove(sqlite3_int64 iRun) {
  int i;
  sqlite3_mutex_enter(cr_live_mutex());
  for (i = 0; i < cr_n_live_runs; i++) {
    if (cr_live_runs[i] == iRun) {
      cr_live_runs[i] = cr_live_runs[--cr_n_live_runs];
      break;
    }
  }
  sqlite3_mutex_leave(cr_live_mutex());
}

static int cr_live_runs_has(sqlite3_int64 iRun) {
  int i, found = 0;
  sqlite3_mutex_enter(cr_live_mutex());
  for (i = 0; i < cr_n_live_runs && !found; i++)
    found = cr_live_runs[i] == iRun;
  sqlite3_mutex_leave(cr_live_mutex());
  return found;
}

const char *cr_host_name(void) {
  static char zHost[256];
  if (zHost[0] == 0 && gethostname(zHost, sizeof(zHost) - 1) != 0) strcpy(zHost, "?");
  return zHost;
}

sqlite3_int64 cr_process_start(sqlite3_int64 pid) {
  char zPath[64];
  char aBuf[1024];
  const char *z;
  long long start = 0;
  size_t n;
  int i;
  FILE *f;
  snprintf(zPath, sizeof(zPath), "/proc/%lld/stat", pid);
  f = fopen(zPath, "r");
  if (f == 0) return -1;
  n = fread(aBuf, 1, sizeof(aBuf) - 1, f);
  fclose(f);
  aBuf[n] = 0;
  /* Field 22 (starttime); the command name in field 2 may hold spaces. */
  z = strrchr(aBuf, ')');
  for (i = 2; z && i < 22; i++)
    z = strchr(z + 1, ' ');
  if (z == 0 || sscanf(z + 1, "%lld", &start) != 1) return -1;
  return start;
}

int cr_run_is_alive(sqlite3_int64 iRun, const char *zHost, sqlite3_int64 pid,
                    sqlite3_int64 pidStart) {
  if (zHost == 0 || strcmp(zHost, cr_host_name()) != 0) return 1;
  if (pid == (sqlite3_int64)getpid()) return cr_live_runs_has(iRun);
  return cr_process_start(pid) == pidStart && pidStart >= 0;
}
