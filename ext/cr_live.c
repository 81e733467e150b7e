/*
** cr_live.c - is a run still alive?
**
** A run's `pending` rows may only be turned into `unknown` once the run is
** dead: another process (or another connection of this one) may be
** sending them right now.  And only one run of a destination may be alive
** at a time, so a run that is wrongly judged dead could also be joined by
** a second sender.  So "dead" needs proof; what counts as proof depends on
** what can be checked from here:
**
**   - a run of this process: alive while it is in this process's list of
**     live runs (kept here, under a mutex, for every connection);
**   - a run of another process on this host: dead when the process is gone
**     - on Linux its pid no longer exists with the start time recorded
**     (so a reused pid is not mistaken for it), elsewhere kill(pid, 0)
**     says there is no such process.  A process that exists is alive on
**     Linux; where its start time cannot be read (a reused pid cannot be
**     told apart) it is alive while its heartbeat is fresh;
**   - a run of another host: alive while its heartbeat, renewed at least
**     every CR_HEARTBEAT_MS, is younger than the destination's lease_ms.
**     A run without a heartbeat (made by 0.1.0) is judged by its start.
**
** A platform facility that is missing never makes a run dead by itself:
** it only leaves the heartbeat as the judge.  See docs/design.md#liveness.
*/
#include "cr_internal.h"
SQLITE_EXTENSION_INIT3

#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <signal.h>
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

/* True if process pid of this host provably no longer exists. */
static int cr_process_gone(sqlite3_int64 pid, sqlite3_int64 pidStart, int *pKnown) {
  sqlite3_int64 tStart = pidStart >= 0 ? cr_process_start(pid) : -1;
  *pKnown = 0;
  if (tStart >= 0) {
    *pKnown = 1; /* /proc: the start time tells a reused pid apart */
    return tStart != pidStart;
  }
  if (pid <= 0 || pid > 0x7fffffff) return 0;
  return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

int cr_run_is_alive(const cr_run_owner *o, sqlite3_int64 tNowMs, sqlite3_int64 leaseMs) {
  int known = 0;
  if (o->zHost && strcmp(o->zHost, cr_host_name()) == 0) {
    if (o->pid == (sqlite3_int64)getpid() &&
        o->pidStart == cr_process_start((sqlite3_int64)getpid())) {
      return cr_live_runs_has(o->iRun);
    }
    if (cr_process_gone(o->pid, o->pidStart, &known)) return 0;
    if (known) return 1;
  }
  return o->heartbeatMs > 0 && tNowMs - o->heartbeatMs <= leaseMs;
}
