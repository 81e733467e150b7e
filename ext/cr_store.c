/*
** cr_store.c - the audit store: every SQL statement that writes the
** callrail_runs, callrail_responses and callrail_delivered tables.
**
** A request's `pending` row must be durable before the request leaves the
** process, while the user's SELECT (callrail_send, callrail_test) is still
** running on the user's connection.  So the store opens a second connection
** on the same database file: in WAL mode it commits while the user's
** statement reads (DESIGN-NOTES 1).  It falls back to the user's own
** connection when there is no file to open (in-memory and temporary
** databases), when the file is not in WAL mode, and when the user is inside
** an explicit transaction, which a second writer would wait on forever; the
** rows then commit with the user's statement or transaction.
*/
#include "cr_internal.h"
SQLITE_EXTENSION_INIT3

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* How long the store's connection waits for a lock held by another. */
#define CR_STORE_BUSY_MS 10000

/* The store connection's page cache, in KiB. */
#define CR_STORE_CACHE_KIB "256"

struct cr_store {
  sqlite3 *db;        /* where the rows go */
  int ownsDb;         /* db is the store's own connection */
  int inTxn;          /* a write transaction is open on db */
  sqlite3_int64 tTxn; /* when it was opened (cr_now_ms) */
  sqlite3_stmt *pRunBegin;
  sqlite3_stmt *pRunEnd;
  sqlite3_stmt *pPending;
  sqlite3_stmt *pOutcome;
  sqlite3_stmt *pInvalid;
  sqlite3_stmt *pDelivered;
  sqlite3_stmt *pBegin;  /* BEGIN IMMEDIATE */
  sqlite3_stmt *pCommit; /* COMMIT */
};

#define CR_NOW "strftime('%Y-%m-%dT%H:%M:%fZ','now')"

static const char cr_sql_run_begin[] =
    "INSERT INTO callrail_runs(destination, kind, started_at, host, pid, pid_start)"
    " VALUES(?1, ?2, " CR_NOW ", ?3, ?4, ?5)";
static const char cr_sql_run_end[] =
    "UPDATE callrail_runs SET finished_at=" CR_NOW ", records=?2, requests=?3, ok=?4, failed=?5,"
    " unknown=?6, skipped=?7, invalid=?8, status=?9 WHERE run_id=?1";
static const char cr_sql_pending[] =
    "INSERT INTO callrail_responses(run_id, destination, batch, records, record_keys, method, url,"
    " request_body, state, attempts, sent_at, sent_ms, quota_bucket, quota_class)"
    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', 1,"
    " strftime('%Y-%m-%dT%H:%M:%fZ', ?9 / 1000.0, 'unixepoch'), ?9, ?10, ?11)";
static const char cr_sql_outcome[] =
    "UPDATE callrail_responses SET status=?2, state=?3, response_body=?4, error=?5, attempts=?6,"
    " duration_ms=?7 WHERE id=?1";
static const char cr_sql_invalid[] =
    "INSERT INTO callrail_responses(run_id, destination, batch, records, record_keys, method, url,"
    " request_body, state, error, attempts) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'invalid',"
    " ?9, 0)";

static const char cr_sql_delivered[] =
    "INSERT INTO callrail_delivered(destination, record_key, record_hash, response_id,"
    " delivered_at) SELECT ?1, k.value, json_extract(?3, '$[' || k.key || ']'), ?4, " CR_NOW
    " FROM json_each(?2) k WHERE 1"
    " ON CONFLICT(destination, record_key) DO UPDATE SET record_hash=excluded.record_hash,"
    " response_id=excluded.response_id, delivered_at=excluded.delivered_at";

/* True if the store may use its own connection to db's file: the file is
** in WAL mode (a rollback journal would block the second writer while the
** user's statement reads).  A read transaction of the user's is no
** obstacle in WAL mode. */
static int cr_store_can_own(sqlite3 *db) {
  const char *zFile = sqlite3_db_filename(db, "main");
  sqlite3_stmt *pStmt = 0;
  int isWal = 0;
  if (zFile == 0 || zFile[0] == 0) return 0;
  if (sqlite3_prepare_v2(db, "PRAGMA main.journal_mode", -1, &pStmt, 0) == SQLITE_OK &&
      sqlite3_step(pStmt) == SQLITE_ROW) {
    isWal = sqlite3_stricmp((const char *)sqlite3_column_text(pStmt, 0), "wal") == 0;
  }
  sqlite3_finalize(pStmt);
  return isWal;
}

/* A transaction of the user's that has written holds the file's write
** lock: a second writer would wait for it forever, and writing audit rows
** into it would let a ROLLBACK (or an interrupt, which rolls it back) erase
** the record of requests that were sent.  So that case is refused. */
static int cr_store_check_txn(sqlite3 *db, char **pzErr) {
  if (sqlite3_txn_state(db, "main") == SQLITE_TXN_WRITE) {
    cr_set_error(pzErr, "this connection has an open transaction with uncommitted writes; "
                        "COMMIT (or ROLLBACK) it first, so that the audit rows of the requests "
                        "sent cannot be rolled back with it");
    return SQLITE_ERROR;
  }
  return SQLITE_OK;
}

static int cr_store_connect(cr_store *p, sqlite3 *db, char **pzErr) {
  int rc = cr_store_check_txn(db, pzErr);
  if (rc != SQLITE_OK) return rc;
  if (!cr_store_can_own(db)) {
    p->db = db;
    return SQLITE_OK;
  }
  rc = sqlite3_open_v2(sqlite3_db_filename(db, "main"), &p->db, SQLITE_OPEN_READWRITE, 0);
  if (rc != SQLITE_OK) {
    cr_set_error(pzErr, "cannot open the audit connection: %s",
                 p->db ? sqlite3_errmsg(p->db) : "out of memory");
    sqlite3_close(p->db);
    p->db = 0;
    return rc;
  }
  p->ownsDb = 1;
  sqlite3_busy_timeout(p->db, CR_STORE_BUSY_MS);
  /* While the user's statement reads, no checkpoint can get past its
  ** snapshot: trying after every commit only costs (about 12 % of a
  ** request's instructions).  The WAL is checkpointed by the connections
  ** that write after the run, or when the last one closes. */
  sqlite3_wal_autocheckpoint(p->db, 0);
  /* The store appends: the pages it revisits are the last few of each
  ** b-tree, so a small cache does (SQLite's default is 2 MiB).
  **
  ** The schema's CHECK (state IN (...)) constraints guard what users
  ** write; on every INSERT and UPDATE SQLite builds a temporary b-tree for
  ** such an IN list, a fifth of a request's instructions.  This connection
  ** writes only states, kinds and statuses that are constants of the
  ** extension, so it skips them; the tests run PRAGMA integrity_check,
  ** which checks them all. */
  /* journal_size_limit: once a checkpoint has emptied the -wal file, the
  ** next commit cuts it back to this size instead of leaving it at its peak
  ** (the user's statement pins the WAL for the whole run: see
  ** bench/README.md). */
  return cr_exec(p->db,
                 "PRAGMA cache_size=-" CR_STORE_CACHE_KIB "; PRAGMA ignore_check_constraints=ON;"
                 " PRAGMA journal_size_limit=" CR_JOURNAL_SIZE_LIMIT,
                 pzErr);
}

int cr_store_open(sqlite3 *db, cr_store **pp, char **pzErr) {
  cr_store *p = sqlite3_malloc(sizeof(*p));
  int rc;
  *pp = p;
  if (p == 0) return SQLITE_NOMEM;
  memset(p, 0, sizeof(*p));
  rc = cr_store_connect(p, db, pzErr);
  if (rc == SQLITE_OK) rc = cr_prepare(p->db, cr_sql_run_begin, &p->pRunBegin, pzErr);
  if (rc == SQLITE_OK) rc = cr_prepare(p->db, cr_sql_run_end, &p->pRunEnd, pzErr);
  if (rc == SQLITE_OK) rc = cr_prepare(p->db, cr_sql_pending, &p->pPending, pzErr);
  if (rc == SQLITE_OK) rc = cr_prepare(p->db, cr_sql_outcome, &p->pOutcome, pzErr);
  if (rc == SQLITE_OK) rc = cr_prepare(p->db, cr_sql_invalid, &p->pInvalid, pzErr);
  if (rc == SQLITE_OK) rc = cr_prepare(p->db, cr_sql_delivered, &p->pDelivered, pzErr);
  if (rc == SQLITE_OK) rc = cr_prepare(p->db, "BEGIN IMMEDIATE", &p->pBegin, pzErr);
  if (rc == SQLITE_OK) rc = cr_prepare(p->db, "COMMIT", &p->pCommit, pzErr);
  if (rc != SQLITE_OK) {
    cr_store_close(p);
    *pp = 0;
  }
  return rc;
}

void cr_store_close(cr_store *p) {
  if (p == 0) return;
  cr_store_flush(p, 0);
  sqlite3_finalize(p->pRunBegin);
  sqlite3_finalize(p->pRunEnd);
  sqlite3_finalize(p->pPending);
  sqlite3_finalize(p->pOutcome);
  sqlite3_finalize(p->pInvalid);
  sqlite3_finalize(p->pDelivered);
  sqlite3_finalize(p->pBegin);
  sqlite3_finalize(p->pCommit);
  if (p->ownsDb) sqlite3_close(p->db);
  sqlite3_free(p);
}

/* Writes are grouped: the first write after a commit opens a transaction
** on the store's own connection, and cr_store_flush() commits it - before
** every request leaves, and at least every few hundred ms while outcomes
** arrive.  (On the user's connection each write stands alone, or joins
** the user's transaction.) */
/* Steps BEGIN or COMMIT, prepared once. */
static int cr_store_exec(cr_store *p, sqlite3_stmt *pStmt, char **pzErr) {
  int rc = sqlite3_step(pStmt);
  sqlite3_reset(pStmt);
  if (rc == SQLITE_DONE) return SQLITE_OK;
  cr_set_error(pzErr, "%s", sqlite3_errmsg(p->db));
  return rc;
}

static int cr_store_begin(cr_store *p, char **pzErr) {
  int rc = SQLITE_OK;
  if (p->ownsDb && !p->inTxn) {
    rc = cr_store_exec(p, p->pBegin, pzErr);
    p->inTxn = rc == SQLITE_OK;
    p->tTxn = cr_now_ms();
  }
  return rc;
}

int cr_store_flush(cr_store *p, char **pzErr) {
  int rc = SQLITE_OK;
  if (p->inTxn) {
    rc = cr_store_exec(p, p->pCommit, pzErr);
    if (rc != SQLITE_OK) {
      cr_set_error(pzErr, "cannot commit to the audit tables: %s", sqlite3_errmsg(p->db));
      cr_exec(p->db, "ROLLBACK", 0);
    }
    p->inTxn = 0;
  }
  return rc;
}

int cr_store_flush_stale(cr_store *p, int ms, char **pzErr) {
  return p->inTxn && cr_now_ms() - p->tTxn >= ms ? cr_store_flush(p, pzErr) : SQLITE_OK;
}

/* Steps a write statement and resets it; an error names zWhat.
**
** On the user's connection (in-memory databases), nothing can be written
** once the user interrupted it: the write is skipped, and the rows stay as
** they were (a pending row becomes unknown when the next run recovers the
** dead run), rather than failing every step of the shutdown. */
static int cr_store_step(cr_store *p, sqlite3_stmt *pStmt, const char *zWhat, char **pzErr) {
  int rc = cr_store_begin(p, pzErr);
  if (rc != SQLITE_OK) return rc;
  if (!p->ownsDb && cr_check_interrupt(p->db) == SQLITE_INTERRUPT) {
    sqlite3_clear_bindings(pStmt);
    return SQLITE_OK;
  }
  rc = sqlite3_step(pStmt);
  sqlite3_reset(pStmt);
  sqlite3_clear_bindings(pStmt);
  if (rc != SQLITE_DONE) {
    cr_set_error(pzErr, "cannot record %s in the audit tables: %s", zWhat, sqlite3_errmsg(p->db));
    return rc == SQLITE_ROW ? SQLITE_ERROR : rc;
  }
  return SQLITE_OK;
}

int cr_store_run_begin(cr_store *p, const char *zDest, const char *zKind, sqlite3_int64 *piRun,
                       char **pzErr) {
  int rc;
  sqlite3_bind_text(p->pRunBegin, 1, zDest, -1, SQLITE_STATIC);
  sqlite3_bind_text(p->pRunBegin, 2, zKind, -1, SQLITE_STATIC);
  sqlite3_bind_text(p->pRunBegin, 3, cr_host_name(), -1, SQLITE_STATIC);
  sqlite3_bind_int64(p->pRunBegin, 4, (sqlite3_int64)getpid());
  sqlite3_bind_int64(p->pRunBegin, 5, cr_process_start((sqlite3_int64)getpid()));
  rc = cr_store_step(p, p->pRunBegin, "the run", pzErr);
  *piRun = sqlite3_last_insert_rowid(p->db);
  if (rc == SQLITE_OK) rc = cr_store_flush(p, pzErr);
  if (rc == SQLITE_OK) rc = cr_live_runs_add(*piRun) ? SQLITE_OK : SQLITE_NOMEM;
  return rc;
}

int cr_store_run_end(cr_store *p, sqlite3_int64 iRun, const cr_run_counts *c, const char *zStatus,
                     char **pzErr) {
  int rc;
  sqlite3_bind_int64(p->pRunEnd, 1, iRun);
  sqlite3_bind_int64(p->pRunEnd, 2, c->records);
  sqlite3_bind_int64(p->pRunEnd, 3, c->requests);
  sqlite3_bind_int64(p->pRunEnd, 4, c->ok);
  sqlite3_bind_int64(p->pRunEnd, 5, c->failed);
  sqlite3_bind_int64(p->pRunEnd, 6, c->unknown);
  sqlite3_bind_int64(p->pRunEnd, 7, c->skipped);
  sqlite3_bind_int64(p->pRunEnd, 8, c->invalid);
  sqlite3_bind_text(p->pRunEnd, 9, zStatus, -1, SQLITE_STATIC);
  rc = cr_store_step(p, p->pRunEnd, "the end of the run", pzErr);
  if (rc == SQLITE_OK) rc = cr_store_flush(p, pzErr);
  cr_live_runs_remove(iRun);
  return rc;
}

/* Binds the columns a pending row and an invalid row share, from ?2 on. */
static void cr_bind_request(sqlite3_stmt *pStmt, int iFirst, const char *zDest,
                            const cr_request *pReq) {
  sqlite3_bind_text(pStmt, iFirst, zDest, -1, SQLITE_STATIC);
  if (pReq->iBatch > 0) sqlite3_bind_int64(pStmt, iFirst + 1, pReq->iBatch);
  sqlite3_bind_int(pStmt, iFirst + 2, pReq->nRecords);
  sqlite3_bind_text(pStmt, iFirst + 3, pReq->zRecordKeys, -1, SQLITE_STATIC);
  sqlite3_bind_text(pStmt, iFirst + 4, cr_method_names[pReq->eMethod], -1, SQLITE_STATIC);
  sqlite3_bind_text(pStmt, iFirst + 5, pReq->zUrl, -1, SQLITE_STATIC);
  sqlite3_bind_text(pStmt, iFirst + 6, pReq->zBody, -1, SQLITE_STATIC);
}

int cr_store_pending(cr_store *p, sqlite3_int64 iRun, const char *zDest, const cr_request *pReq,
                     sqlite3_int64 *piId, char **pzErr) {
  cr_quota_key q;
  int rc;
  cr_quota_key_of(pReq->eMethod, pReq->zUrl, &q);
  sqlite3_bind_int64(p->pPending, 1, iRun);
  cr_bind_request(p->pPending, 2, zDest, pReq);
  sqlite3_bind_int64(p->pPending, 9, cr_wall_ms()); /* sent_ms, and sent_at from it */
  sqlite3_bind_text(p->pPending, 10, q.zBucket, -1, SQLITE_STATIC);
  sqlite3_bind_text(p->pPending, 11, q.zClass, -1, SQLITE_STATIC);
  rc = cr_store_step(p, p->pPending, "a pending request", pzErr);
  *piId = sqlite3_last_insert_rowid(p->db);
  cr_quota_key_clear(&q);
  return rc;
}

int cr_store_outcome(cr_store *p, sqlite3_int64 iId, int status, const char *zState,
                     const char *zBody, const char *zError, int nAttempts, sqlite3_int64 durationMs,
                     char **pzErr) {
  sqlite3_bind_int64(p->pOutcome, 1, iId);
  if (status > 0) sqlite3_bind_int(p->pOutcome, 2, status);
  sqlite3_bind_text(p->pOutcome, 3, zState, -1, SQLITE_STATIC);
  sqlite3_bind_text(p->pOutcome, 4, zBody, -1, SQLITE_STATIC);
  sqlite3_bind_text(p->pOutcome, 5, zError, -1, SQLITE_STATIC);
  sqlite3_bind_int(p->pOutcome, 6, nAttempts);
  sqlite3_bind_int64(p->pOutcome, 7, durationMs);
  return cr_store_step(p, p->pOutcome, "a response", pzErr);
}

int cr_store_invalid(cr_store *p, sqlite3_int64 iRun, const char *zDest, const cr_request *pReq,
                     sqlite3_int64 *piId, char **pzErr) {
  int rc;
  sqlite3_bind_int64(p->pInvalid, 1, iRun);
  cr_bind_request(p->pInvalid, 2, zDest, pReq);
  sqlite3_bind_text(p->pInvalid, 9, pReq->zError, -1, SQLITE_STATIC);
  rc = cr_store_step(p, p->pInvalid, "an invalid record", pzErr);
  *piId = sqlite3_last_insert_rowid(p->db);
  return rc;
}

int cr_store_delivered(cr_store *p, const char *zDest, const char *zKeys, const char *zHashes,
                       sqlite3_int64 iId, char **pzErr) {
  sqlite3_bind_text(p->pDelivered, 1, zDest, -1, SQLITE_STATIC);
  sqlite3_bind_text(p->pDelivered, 2, zKeys, -1, SQLITE_STATIC);
  sqlite3_bind_text(p->pDelivered, 3, zHashes, -1, SQLITE_STATIC);
  sqlite3_bind_int64(p->pDelivered, 4, iId);
  return cr_store_step(p, p->pDelivered, "delivered records", pzErr);
}

int cr_store_usage(cr_store *p, const char *zBucket, const char *zClass, sqlite3_int64 tSinceMs,
                   void (*xRow)(void *, sqlite3_int64), void *pArg, char **pzErr) {
  sqlite3_stmt *pStmt = 0;
  int rc = cr_prepare(p->db,
                      "SELECT sent_ms FROM callrail_responses WHERE quota_bucket=?1"
                      " AND sent_ms>?2 AND (?3 IS NULL OR quota_class=?3)",
                      &pStmt, pzErr);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(pStmt, 1, zBucket, -1, SQLITE_STATIC);
    sqlite3_bind_int64(pStmt, 2, tSinceMs);
    sqlite3_bind_text(pStmt, 3, zClass, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(pStmt)) == SQLITE_ROW)
      xRow(pArg, sqlite3_column_int64(pStmt, 0));
    rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    if (rc != SQLITE_OK) cr_set_error(pzErr, "cannot read quota usage: %s", sqlite3_errmsg(p->db));
  }
  sqlite3_finalize(pStmt);
  return rc;
}

/* ------------------------------------------------------------------------
** Recovering the rows of dead runs
*/

/* A dead run's pending rows become unknown: the request may have arrived. */
static const char cr_sql_recover_rows[] =
    "UPDATE callrail_responses SET state='unknown', error='the run that sent this request "
    "ended before its outcome was recorded (process killed?); check CallRail, then set state "
    "to ''failed'' to let a later run send it again' WHERE run_id=?1 AND state='pending'";

/* ... and the run ends interrupted, its totals recounted from its rows. */
static const char cr_sql_recover_run[] =
    "UPDATE callrail_runs SET status='interrupted', finished_at=" CR_NOW ","
    " error='the process running it died',"
    " records=(SELECT coalesce(sum(records),0) FROM callrail_responses WHERE run_id=?1),"
    " requests=(SELECT count(*) FROM callrail_responses WHERE run_id=?1 AND state<>'invalid'),"
    " ok=(SELECT coalesce(sum(records),0) FROM callrail_responses WHERE run_id=?1 AND state='ok'),"
    " failed=(SELECT coalesce(sum(records),0) FROM callrail_responses"
    "  WHERE run_id=?1 AND state='failed'),"
    " unknown=(SELECT coalesce(sum(records),0) FROM callrail_responses"
    "  WHERE run_id=?1 AND state='unknown'),"
    " invalid=(SELECT count(*) FROM callrail_responses WHERE run_id=?1 AND state='invalid')"
    " WHERE run_id=?1";

/* Runs zSql with ?1 = iRun; *pnChanged (if not NULL) grows by its changes. */
static int cr_store_run_sql(cr_store *p, const char *zSql, sqlite3_int64 iRun,
                            sqlite3_int64 *pnChanged, char **pzErr) {
  sqlite3_stmt *pStmt = 0;
  int rc = cr_prepare(p->db, zSql, &pStmt, pzErr);
  if (rc == SQLITE_OK) {
    sqlite3_bind_int64(pStmt, 1, iRun);
    rc = cr_store_step(p, pStmt, "the recovery of a dead run", pzErr);
    if (rc == SQLITE_OK && pnChanged) *pnChanged += sqlite3_changes(p->db);
  }
  sqlite3_finalize(pStmt);
  return rc;
}

int cr_store_recover(cr_store *p, const char *zDest, sqlite3_int64 *pnRecovered, char **pzErr) {
  sqlite3_stmt *pStmt = 0;
  int rc = cr_prepare(p->db,
                      "SELECT run_id, host, pid, pid_start FROM callrail_runs"
                      " WHERE destination=?1 AND status='running'",
                      &pStmt, pzErr);
  *pnRecovered = 0;
  if (rc == SQLITE_OK) rc = cr_store_begin(p, pzErr);
  if (rc == SQLITE_OK) sqlite3_bind_text(pStmt, 1, zDest, -1, SQLITE_STATIC);
  while (rc == SQLITE_OK && sqlite3_step(pStmt) == SQLITE_ROW) {
    sqlite3_int64 iRun = sqlite3_column_int64(pStmt, 0);
    if (cr_run_is_alive(iRun, (const char *)sqlite3_column_text(pStmt, 1),
                        sqlite3_column_int64(pStmt, 2), sqlite3_column_int64(pStmt, 3))) {
      continue;
    }
    rc = cr_store_run_sql(p, cr_sql_recover_rows, iRun, pnRecovered, pzErr);
    if (rc == SQLITE_OK) rc = cr_store_run_sql(p, cr_sql_recover_run, iRun, 0, pzErr);
  }
  sqlite3_finalize(pStmt);
  if (rc == SQLITE_OK) rc = cr_store_flush(p, pzErr);
  return rc;
}
