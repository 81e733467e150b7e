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

#include <string.h>
#include <unistd.h>

/* How long the store's connection waits for a lock held by another. */
#define CR_STORE_BUSY_MS 10000

struct cr_store {
  sqlite3 *db; /* where the rows go */
  int ownsDb;  /* db is the store's own connection */
  sqlite3_stmt *pRunBegin;
  sqlite3_stmt *pRunEnd;
  sqlite3_stmt *pPending;
  sqlite3_stmt *pOutcome;
  sqlite3_stmt *pInvalid;
  sqlite3_stmt *pDelivered;
};

#define CR_NOW "strftime('%Y-%m-%dT%H:%M:%fZ','now')"

static const char cr_sql_run_begin[] =
    "INSERT INTO callrail_runs(destination, kind, started_at, pid) VALUES(?1, ?2, " CR_NOW ", ?3)";
static const char cr_sql_run_end[] =
    "UPDATE callrail_runs SET finished_at=" CR_NOW ", records=?2, requests=?3, ok=?4, failed=?5,"
    " unknown=?6, skipped=?7, invalid=?8, status=?9 WHERE run_id=?1";
static const char cr_sql_pending[] =
    "INSERT INTO callrail_responses(run_id, destination, batch, records, record_keys, method, url,"
    " request_body, state, attempts, sent_at, sent_ms, quota_bucket, quota_class)"
    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', 1, " CR_NOW ", ?9, ?10, ?11)";
static const char cr_sql_outcome[] =
    "UPDATE callrail_responses SET status=?2, state=?3, response_body=?4, error=?5, attempts=?6,"
    " duration_ms=?7 WHERE id=?1";
static const char cr_sql_invalid[] =
    "INSERT INTO callrail_responses(run_id, destination, batch, records, record_keys, method, url,"
    " request_body, state, error, attempts) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'invalid',"
    " ?9, 0)";

static const char cr_sql_delivered[] =
    "INSERT INTO callrail_delivered(destination, record_key, record_hash, response_id,"
    " delivered_at) SELECT ?1, k.value, h.value, ?4, " CR_NOW
    " FROM json_each(?2) k JOIN json_each(?3) h ON h.key = k.key WHERE 1"
    " ON CONFLICT(destination, record_key) DO UPDATE SET record_hash=excluded.record_hash,"
    " response_id=excluded.response_id, delivered_at=excluded.delivered_at";

/* True if the store may use its own connection to db's file. */
static int cr_store_can_own(sqlite3 *db) {
  const char *zFile = sqlite3_db_filename(db, "main");
  sqlite3_stmt *pStmt = 0;
  int isWal = 0;
  if (zFile == 0 || zFile[0] == 0 || !sqlite3_get_autocommit(db)) return 0;
  if (sqlite3_prepare_v2(db, "PRAGMA main.journal_mode", -1, &pStmt, 0) == SQLITE_OK &&
      sqlite3_step(pStmt) == SQLITE_ROW) {
    isWal = sqlite3_stricmp((const char *)sqlite3_column_text(pStmt, 0), "wal") == 0;
  }
  sqlite3_finalize(pStmt);
  return isWal;
}

static int cr_store_connect(cr_store *p, sqlite3 *db, char **pzErr) {
  int rc;
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
  return SQLITE_OK;
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
  if (rc != SQLITE_OK) {
    cr_store_close(p);
    *pp = 0;
  }
  return rc;
}

void cr_store_close(cr_store *p) {
  if (p == 0) return;
  sqlite3_finalize(p->pRunBegin);
  sqlite3_finalize(p->pRunEnd);
  sqlite3_finalize(p->pPending);
  sqlite3_finalize(p->pOutcome);
  sqlite3_finalize(p->pInvalid);
  sqlite3_finalize(p->pDelivered);
  if (p->ownsDb) sqlite3_close(p->db);
  sqlite3_free(p);
}

/* Steps a write statement and resets it; an error names zWhat. */
static int cr_store_step(cr_store *p, sqlite3_stmt *pStmt, const char *zWhat, char **pzErr) {
  int rc = sqlite3_step(pStmt);
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
  sqlite3_bind_int64(p->pRunBegin, 3, (sqlite3_int64)getpid());
  rc = cr_store_step(p, p->pRunBegin, "the run", pzErr);
  *piRun = sqlite3_last_insert_rowid(p->db);
  return rc;
}

int cr_store_run_end(cr_store *p, sqlite3_int64 iRun, const cr_run_counts *c, const char *zStatus,
                     char **pzErr) {
  sqlite3_bind_int64(p->pRunEnd, 1, iRun);
  sqlite3_bind_int64(p->pRunEnd, 2, c->records);
  sqlite3_bind_int64(p->pRunEnd, 3, c->requests);
  sqlite3_bind_int64(p->pRunEnd, 4, c->ok);
  sqlite3_bind_int64(p->pRunEnd, 5, c->failed);
  sqlite3_bind_int64(p->pRunEnd, 6, c->unknown);
  sqlite3_bind_int64(p->pRunEnd, 7, c->skipped);
  sqlite3_bind_int64(p->pRunEnd, 8, c->invalid);
  sqlite3_bind_text(p->pRunEnd, 9, zStatus, -1, SQLITE_STATIC);
  return cr_store_step(p, p->pRunEnd, "the end of the run", pzErr);
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
  sqlite3_bind_int64(p->pPending, 9, cr_wall_ms());
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
