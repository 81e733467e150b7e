/*
** cr_prune.c - callrail_prune(): retention of the audit tables.
**
**   SELECT callrail_prune(90);            -- every destination
**   SELECT callrail_prune(30, 'companies');
**
** deletes the callrail_responses rows older than that many days, then the
** finished callrail_runs rows older than that which no longer have any
** response, and returns how many rows it deleted.  An account sending
** 10,000 requests a day grows the audit by ~3.65 M rows a year, so old
** history has to go; what the engine still reads must not:
**
**   - the response each callrail_delivered row points to (the delivery
**     that change detection and resolving compare against);
**   - every pending and unknown row: such a request may have arrived, and
**     its keys stay held back until the user resolves it;
**   - every row of a run that is still `running` (a live run, or a dead one
**     not yet recovered: recovery turns its pending rows into unknown);
**   - every request sent in the last 24 hours: the quota pacer counts them
**     (CallRail's longest window is a day), so a prune never changes how
**     long the next run waits.
**
** A row's age is its send time (sent_ms); a row never sent (invalid) is as
** old as its run.  Ids are never reused (the tables are AUTOINCREMENT), so
** a deleted delivery can never make a new unknown row look older than it.
**
** The work is done in short transactions (about 10 ms of write lock each,
** so live runs keep committing in between), on a second
** connection to the file like the audit store's (the user's statement keeps
** no snapshot that would stop the prune's own checkpoints), and the user's
** connection is polled for an interrupt between them: an interrupted prune
** keeps what it deleted so far and can simply be run again.
**
** Before pruning, each destination's unknown rows whose keys have all been
** delivered by a later request are marked resolved_by that request
** (cr_sql_settle): they leave the index that every keyed run reads at
** start-up, which so stays as small as what is really unresolved.
*/
#include "cr_internal.h"
SQLITE_EXTENSION_INIT3

#include <string.h>

/* Rows per transaction: starts at CR_PRUNE_BATCH and adapts so that a
** batch holds the write lock for CR_PRUNE_HOLD_MS or so (a cold page cache
** makes each row cost a few random reads: its key in the by_key index,
** its delivery). */
#define CR_PRUNE_BATCH 1000
#define CR_PRUNE_BATCH_MIN 50
#define CR_PRUNE_BATCH_MAX 5000
#define CR_PRUNE_HOLD_MS 10

/* How long the prune waits for the write lock held by another writer. */
#define CR_PRUNE_BUSY_MS 10000

/* The quota pacer reads the requests of the last 24 hours. */
#define CR_PRUNE_QUOTA_MS (24 * 3600 * 1000LL)

#define CR_MS_PER_DAY (24 * 3600 * 1000LL)

/* :dest: a destination, or NULL for all; :lo..:hi the ids to look at, or
** NULL for all.  Marks each unknown row whose every
** key was delivered by a later request (a retry_post run, a resolve by
** hand) with the latest such request's id.  The state IN (...) term
** repeats the WHERE of the partial index callrail_responses_unresolved,
** so that only that index is read.  Exported so that the engine can run it
** at the end of a run, see cr_internal.h. */
const char cr_sql_settle[] =
    "UPDATE callrail_responses AS r SET resolved_by = (SELECT max(d.response_id)"
    "  FROM json_each(r.record_keys) k JOIN callrail_delivered d"
    "  ON d.destination = r.destination AND d.record_key = k.value)"
    " WHERE r.state IN ('pending','unknown') AND r.resolved_by IS NULL"
    " AND r.state = 'unknown' AND (:dest IS NULL OR r.destination = :dest)"
    /* +: the ids filter the index's rows, they must not replace it */
    " AND +r.id BETWEEN coalesce(:lo, 0) AND coalesce(:hi, 9223372036854775807)"
    " AND json_valid(r.record_keys) AND json_type(r.record_keys) = 'array'"
    " AND json_array_length(r.record_keys) > 0"
    " AND NOT EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid(r.record_keys)"
    "   THEN r.record_keys ELSE '[null]' END) k"
    "  LEFT JOIN callrail_delivered d"
    "  ON d.destination = r.destination AND d.record_key = k.value"
    "  WHERE d.response_id IS NULL OR d.response_id <= r.id)";

/* The first id at or after :cut_ms: rows from there on are all recent. */
static const char cr_sql_bound[] =
    "SELECT coalesce((SELECT id FROM callrail_responses WHERE sent_ms >= :cut_ms"
    " ORDER BY sent_ms LIMIT 1), (SELECT max(id) + 1 FROM callrail_responses), 0)";

/* One step of the prune, done in batches: the last id of the next batch
** from :lo, then the statement for the ids :lo..:hi (whose changes are
** counted when isDelete). */
typedef struct cr_prune_table {
  const char *zRange;
  const char *zDelete;
  int isDelete;
} cr_prune_table;

/* The settling of unknown rows, in batches too: cold, each row costs a
** read of its delivery. */
static const cr_prune_table cr_prune_settle = {
    "SELECT max(id) FROM (SELECT id FROM callrail_responses"
    " WHERE state IN ('pending','unknown') AND resolved_by IS NULL AND id >= :lo"
    " ORDER BY id LIMIT :n)",
    cr_sql_settle,
    0,
};

#define CR_CUT_ISO "strftime('%Y-%m-%dT%H:%M:%fZ', :cut_ms / 1000.0, 'unixepoch')"

static const cr_prune_table cr_prune_responses = {
    "SELECT max(id) FROM (SELECT id FROM callrail_responses"
    " WHERE id >= :lo AND id < :bound ORDER BY id LIMIT :n)",
    "DELETE FROM callrail_responses AS r WHERE r.id BETWEEN :lo AND :hi"
    " AND (:dest IS NULL OR r.destination = :dest)"
    " AND r.state NOT IN ('pending','unknown')"
    " AND CASE WHEN r.sent_ms IS NULL"
    "  THEN coalesce((SELECT u.started_at < " CR_CUT_ISO " FROM callrail_runs u"
    "   WHERE u.run_id = r.run_id), 1)"
    "  ELSE r.sent_ms < :keep_ms END"
    " AND NOT EXISTS (SELECT 1 FROM callrail_runs u"
    "  WHERE u.run_id = r.run_id AND u.status = 'running')"
    /* A key list that is not JSON cannot be checked: the row stays. */
    " AND json_valid(coalesce(r.record_keys, '[]'))"
    /* CROSS JOIN: each key looked up, not the destination's keys scanned */
    " AND NOT EXISTS (SELECT 1 FROM json_each(coalesce(r.record_keys, json_array(r.record_key))) k"
    "  CROSS JOIN callrail_delivered d"
    "  ON d.destination = r.destination AND d.record_key = k.value"
    "  WHERE d.response_id = r.id)",
    1,
};

static const cr_prune_table cr_prune_runs = {
    "SELECT max(run_id) FROM (SELECT run_id FROM callrail_runs"
    " WHERE run_id >= :lo ORDER BY run_id LIMIT :n)",
    "DELETE FROM callrail_runs AS u WHERE u.run_id BETWEEN :lo AND :hi"
    " AND (:dest IS NULL OR u.destination = :dest) AND u.status <> 'running'"
    " AND coalesce(u.finished_at, u.started_at) < " CR_CUT_ISO
    " AND NOT EXISTS (SELECT 1 FROM callrail_responses r WHERE r.run_id = u.run_id)",
    1,
};

typedef struct cr_prune {
  sqlite3 *dbUser;    /* the caller's connection: interrupts */
  sqlite3 *db;        /* where the deletes run */
  int ownsDb;         /* db is the prune's own connection */
  const char *zDest;  /* NULL: every destination */
  sqlite3_int64 cut;  /* rows older than this (unix ms) go */
  sqlite3_int64 keep; /* rows sent since this stay (the quota window) */
  sqlite3_int64 bound;
  sqlite3_int64 nDeleted;
  sqlite3_int64 tBatch; /* when the current batch began (cr_now_ms) */
  int nBatch;           /* rows per batch */
} cr_prune;

/* Binds every parameter of pStmt by its name. */
static void cr_prune_bind(cr_prune *p, sqlite3_stmt *pStmt, sqlite3_int64 lo, sqlite3_int64 hi) {
  int i;
  for (i = 1; i <= sqlite3_bind_parameter_count(pStmt); i++) {
    const char *z = sqlite3_bind_parameter_name(pStmt, i);
    if (z == 0) continue;
    if (strcmp(z, ":dest") == 0) {
      sqlite3_bind_text(pStmt, i, p->zDest, -1, SQLITE_STATIC);
    } else {
      sqlite3_int64 v = strcmp(z, ":cut_ms") == 0    ? p->cut
                        : strcmp(z, ":keep_ms") == 0 ? p->keep
                        : strcmp(z, ":bound") == 0   ? p->bound
                        : strcmp(z, ":n") == 0       ? p->nBatch
                        : strcmp(z, ":lo") == 0      ? lo
                                                     : hi;
      sqlite3_bind_int64(pStmt, i, v);
    }
  }
}

/* Runs zSql with the prune's parameters; *piOut (if not NULL) receives
** the first column of its row, or -1 when it gives none or NULL. */
static int cr_prune_sql(cr_prune *p, const char *zSql, sqlite3_int64 lo, sqlite3_int64 hi,
                        sqlite3_int64 *piOut, char **pzErr) {
  sqlite3_stmt *pStmt = 0;
  int rc = cr_prepare(p->db, zSql, &pStmt, pzErr);
  if (piOut) *piOut = -1;
  if (rc == SQLITE_OK) {
    cr_prune_bind(p, pStmt, lo, hi);
    rc = sqlite3_step(pStmt);
    if (rc == SQLITE_ROW && piOut && sqlite3_column_type(pStmt, 0) != SQLITE_NULL) {
      *piOut = sqlite3_column_int64(pStmt, 0);
    }
    rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
    if (rc != SQLITE_OK) cr_set_error(pzErr, "%s", sqlite3_errmsg(p->db));
  }
  sqlite3_finalize(pStmt);
  return rc;
}

/* One short write transaction (on the prune's own connection; on the
** user's, each statement stands alone). */
static int cr_prune_txn(cr_prune *p, const char *zSql, char **pzErr) {
  return p->ownsDb ? cr_exec(p->db, zSql, pzErr) : SQLITE_OK;
}

/* Deletes one batch of pT from id lo; *pNext receives the next batch's
** first id, or -1 after the last batch. */
static int cr_prune_batch(cr_prune *p, const cr_prune_table *pT, sqlite3_int64 lo,
                          sqlite3_int64 *pNext, char **pzErr) {
  sqlite3_int64 hi = -1;
  int rc = cr_prune_txn(p, "BEGIN IMMEDIATE", pzErr);
  if (rc == SQLITE_OK) rc = cr_prune_sql(p, pT->zRange, lo, 0, &hi, pzErr);
  if (rc == SQLITE_OK && hi >= 0) rc = cr_prune_sql(p, pT->zDelete, lo, hi, 0, pzErr);
  if (rc == SQLITE_OK && hi >= 0 && pT->isDelete) p->nDeleted += sqlite3_changes(p->db);
  if (rc == SQLITE_OK) {
    rc = cr_prune_txn(p, "COMMIT", pzErr);
  } else if (p->ownsDb) {
    cr_exec(p->db, "ROLLBACK", 0);
  }
  *pNext = hi >= 0 ? hi + 1 : -1;
  return rc;
}

/* After a batch, leaves the write lock free for as long as the batch held
** it: another writer waiting in a busy timeout sleeps up to 100 ms between
** tries, and a prune that took the lock back at once would starve it (a
** live run's commits would wait, then fail). */
static int cr_prune_yield(cr_prune *p, int rc) {
  sqlite3_int64 ms = cr_now_ms() - p->tBatch;
  if (ms > 2 * CR_PRUNE_HOLD_MS && p->nBatch / 2 >= CR_PRUNE_BATCH_MIN) p->nBatch /= 2;
  if (ms < CR_PRUNE_HOLD_MS / 2 && p->nBatch * 2 <= CR_PRUNE_BATCH_MAX) p->nBatch *= 2;
  if (p->ownsDb) sqlite3_sleep(ms > 1 ? (int)ms : 1);
  p->tBatch = cr_now_ms();
  return rc;
}

/* Prunes table pT batch by batch, checking for an interrupt in between. */
static int cr_prune_table_rows(cr_prune *p, const cr_prune_table *pT, char **pzErr) {
  sqlite3_int64 lo = 0;
  int rc = SQLITE_OK;
  p->tBatch = cr_now_ms();
  while (rc == SQLITE_OK && lo >= 0) {
    if (cr_check_interrupt(p->dbUser) == SQLITE_INTERRUPT) {
      cr_set_error(pzErr,
                   "interrupted after deleting %lld rows (they stay deleted: run it "
                   "again to go on)",
                   p->nDeleted);
      return SQLITE_INTERRUPT;
    }
    rc = cr_prune_yield(p, cr_prune_batch(p, pT, lo, &lo, pzErr));
  }
  return rc;
}

/* Waits for the write lock like a busy timeout, but gives up at once
** when the user interrupts. */
static int cr_prune_busy(void *pArg, int nTries) {
  cr_prune *p = (cr_prune *)pArg;
  if (nTries * 2 >= CR_PRUNE_BUSY_MS || cr_check_interrupt(p->dbUser) == SQLITE_INTERRUPT) {
    return 0;
  }
  sqlite3_sleep(2);
  return 1;
}

/* Opens the prune's own connection when the file is in WAL mode and the
** user holds no write transaction (which it would wait on forever);
** otherwise the deletes run on the user's connection. */
static int cr_prune_connect(cr_prune *p, char **pzErr) {
  const char *zFile = sqlite3_db_filename(p->dbUser, "main");
  int rc = SQLITE_OK;
  p->db = p->dbUser;
  if (zFile == 0 || zFile[0] == 0 || sqlite3_txn_state(p->dbUser, "main") == SQLITE_TXN_WRITE) {
    return SQLITE_OK;
  }
  rc = sqlite3_open_v2(zFile, &p->db, SQLITE_OPEN_READWRITE, 0);
  p->ownsDb = 1;
  if (rc == SQLITE_OK) {
    sqlite3_busy_handler(p->db, cr_prune_busy, p);
    rc = cr_exec(p->db, "PRAGMA journal_size_limit=" CR_JOURNAL_SIZE_LIMIT, pzErr);
  } else {
    cr_set_error(pzErr, "cannot open a connection to prune with: %s",
                 p->db ? sqlite3_errmsg(p->db) : "out of memory");
  }
  return rc;
}

/* Checks that zDest names a destination (or the credential of a
** callrail_get run). */
static int cr_prune_check_dest(sqlite3 *db, const char *zDest, char **pzErr) {
  sqlite3_stmt *pStmt = 0;
  int rc = cr_prepare(db,
                      "SELECT 1 FROM callrail_destinations WHERE name = ?1"
                      " UNION ALL SELECT 1 FROM callrail_credentials WHERE name = ?1",
                      &pStmt, pzErr);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(pStmt, 1, zDest, -1, SQLITE_STATIC);
    rc = sqlite3_step(pStmt);
    if (rc == SQLITE_DONE) {
      cr_set_error(pzErr,
                   "destination \"%s\" is unknown (no destination or credential has that name)",
                   zDest);
      rc = SQLITE_ERROR;
    } else {
      rc = rc == SQLITE_ROW ? SQLITE_OK : rc;
      if (rc != SQLITE_OK) cr_set_error(pzErr, "%s", sqlite3_errmsg(db));
    }
  }
  sqlite3_finalize(pStmt);
  return rc;
}

/* older_than_days: a number of days, 0 or more (fractions allowed). */
static int cr_prune_days(sqlite3_value *pVal, double *prDays, char **pzErr) {
  int eType = sqlite3_value_numeric_type(pVal);
  if (eType != SQLITE_INTEGER && eType != SQLITE_FLOAT) {
    cr_set_error(pzErr, "older_than_days must be a number of days, not %s",
                 eType == SQLITE_NULL ? "NULL" : "text or a BLOB");
    return SQLITE_ERROR;
  }
  *prDays = sqlite3_value_double(pVal);
  if (!(*prDays >= 0 && *prDays <= 1e6)) {
    cr_set_error(pzErr, "older_than_days must be between 0 and 1000000, not %s",
                 sqlite3_value_text(pVal));
    return SQLITE_ERROR;
  }
  return SQLITE_OK;
}

/* Gives the -wal file back when no reader is using it: a send leaves it
** at its peak while other connections are open.  Only tried: with a
** reader in the way it stays, and the prune still succeeded. */
static void cr_prune_shrink_wal(cr_prune *p) {
  sqlite3_busy_handler(p->db, 0, 0);
  sqlite3_wal_checkpoint_v2(p->db, "main", SQLITE_CHECKPOINT_TRUNCATE, 0, 0);
}

/* Settles, then prunes the responses, then the runs left without any. */
static int cr_prune_run(cr_prune *p, char **pzErr) {
  int rc = cr_prune_table_rows(p, &cr_prune_settle, pzErr);
  if (rc == SQLITE_OK) rc = cr_prune_sql(p, cr_sql_bound, 0, 0, &p->bound, pzErr);
  if (rc == SQLITE_OK) rc = cr_prune_table_rows(p, &cr_prune_responses, pzErr);
  if (rc == SQLITE_OK) rc = cr_prune_table_rows(p, &cr_prune_runs, pzErr);
  if (rc == SQLITE_OK && p->ownsDb) cr_prune_shrink_wal(p);
  return rc;
}

/* The work of callrail_prune(older_than_days [, destination]). */
static int cr_prune_call(cr_conn *pConn, int argc, sqlite3_value **argv, sqlite3_int64 *pnDeleted,
                         char **pzErr) {
  cr_prune p;
  double rDays = 0;
  int rc = SQLITE_ERROR;
  memset(&p, 0, sizeof(p));
  p.nBatch = CR_PRUNE_BATCH;
  if (argc < 1 || argc > 2) {
    cr_set_error(pzErr, "takes older_than_days and, optionally, a destination");
  } else {
    rc = cr_prune_days(argv[0], &rDays, pzErr);
  }
  p.dbUser = pConn->db;
  if (rc == SQLITE_OK && argc > 1) {
    p.zDest = cr_arg_text(argv[1], "destination", pzErr);
    rc = p.zDest ? SQLITE_OK : SQLITE_ERROR;
  }
  if (rc == SQLITE_OK) rc = cr_schema_ensure(pConn, pzErr);
  if (rc == SQLITE_OK && p.zDest) rc = cr_prune_check_dest(p.dbUser, p.zDest, pzErr);
  if (rc == SQLITE_OK) {
    sqlite3_int64 now = cr_wall_ms();
    p.cut = now - (sqlite3_int64)(rDays * CR_MS_PER_DAY);
    p.keep = p.cut < now - CR_PRUNE_QUOTA_MS ? p.cut : now - CR_PRUNE_QUOTA_MS;
    rc = cr_prune_connect(&p, pzErr);
  }
  if (rc == SQLITE_OK) rc = cr_prune_run(&p, pzErr);
  if (p.ownsDb) sqlite3_close(p.db);
  *pnDeleted = p.nDeleted;
  return rc;
}

void cr_prune_func(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  sqlite3_int64 nDeleted = 0;
  char *zErr = 0;
  int rc = cr_prune_call((cr_conn *)sqlite3_user_data(ctx), argc, argv, &nDeleted, &zErr);
  if (rc == SQLITE_OK) {
    sqlite3_result_int64(ctx, nDeleted);
  } else {
    char *zMsg = sqlite3_mprintf("callrail_prune: %s", zErr ? zErr : "failed");
    sqlite3_result_error(ctx, zMsg, -1);
    sqlite3_result_error_code(ctx, rc);
    sqlite3_free(zMsg);
  }
  sqlite3_free(zErr);
}
