/*
** cr_store.c - the audit store: every SQL statement that writes the
** callrail_runs, callrail_responses and callrail_delivered tables.
**
** A request's `pending` row must be durable before the request leaves the
** process, while the user's SELECT (callrail_send, callrail_test) is still
** running on the user's connection.  So the store opens a second connection
** on the same database file: in WAL mode it commits while the user's
** statement reads (docs/design.md#durable-intent-the-second-connection).  It falls back to the
*user's own
** connection when there is no file to open (in-memory and temporary
** databases), when the file is not in WAL mode, and when the user is inside
** an explicit transaction, which a second writer would wait on forever; the
** rows then commit with the user's statement or transaction.
**
** The store's own connection runs no triggers: a database file from
** someone else must not be able to drop, hide or duplicate an audit row
** (and on the user's connection a file with triggers on the audit tables is
** refused).  Its lock waits give up within a second of an interrupt.
**
** It also decides which run of a destination may send (cr_store_claim: one
** live run per destination, across processes), keeps that run's heartbeat,
** recovers the rows of runs that are dead, and reads the quota ledger that
** every run shares.  See docs/design.md#many-runs-one-truth.
*/
#include "cr_internal.h"
SQLITE_EXTENSION_INIT3

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* How long the store's connection waits for a lock held by another, and
** how long it sleeps between two looks (an interrupt is noticed then). */
#define CR_STORE_BUSY_MS 10000
#define CR_STORE_BUSY_STEP_MS 20

/* The store connection's page cache, in KiB. */
#define CR_STORE_CACHE_KIB "256"

struct cr_store {
  sqlite3 *db;         /* where the rows go */
  sqlite3 *dbUser;     /* the user's connection (interrupts are seen there) */
  int ownsDb;          /* db is the store's own connection */
  int busyInterrupted; /* a lock wait ended because of an interrupt */
  int inTxn;           /* a write transaction is open on db */
  int txnDurable;      /* ... and it commits with synchronous FULL */
  int syncDurable;     /* the connection's synchronous level is FULL */
  sqlite3_stmt *pRunBegin;
  sqlite3_stmt *pRunEnd;
  sqlite3_stmt *pPending;
  sqlite3_stmt *pOutcome;
  sqlite3_stmt *pInvalid;
  sqlite3_stmt *pDelivered;
  sqlite3_stmt *pDeliveredOne;
  sqlite3_stmt *pRemoteId; /* a response's remote id at id_path */
  sqlite3_stmt *pHeartbeat;
  sqlite3_stmt *pOwned;      /* is the run's row still running? */
  sqlite3_stmt *pLedger;     /* other runs' requests since a row id */
  sqlite3_stmt *pBegin;      /* BEGIN IMMEDIATE */
  sqlite3_stmt *pSyncNormal; /* PRAGMA synchronous=NORMAL */
  sqlite3_stmt *pSyncFull;   /* PRAGMA synchronous=FULL */
  sqlite3_stmt *pCommit;     /* COMMIT */
};

#define CR_NOW "strftime('%Y-%m-%dT%H:%M:%fZ','now')"

/* An ISO time from wall ms in parameter N. */
#define CR_ISO(N) "strftime('%Y-%m-%dT%H:%M:%fZ', ?" #N " / 1000.0, 'unixepoch')"

static const char cr_sql_run_begin[] =
    "INSERT INTO callrail_runs(destination, kind, started_at, host, pid, pid_start, heartbeat_ms,"
    " heartbeat_at) VALUES(?1, ?2, " CR_ISO(6) ", ?3, ?4, ?5, ?6, " CR_ISO(6) ")";
/* A dead run's totals of requests and records by state, counted from its
** rows (a split batch's own row is counted too: the run did not say). */
#define CR_SQL_RECOUNT                                                                             \
  "(requests, ok, failed, unknown, invalid) = (SELECT count(*) FILTER (WHERE state<>'invalid'),"   \
  " coalesce(sum(records) FILTER (WHERE state='ok'), 0),"                                          \
  " coalesce(sum(records) FILTER (WHERE state='failed'), 0),"                                      \
  " coalesce(sum(records) FILTER (WHERE state='unknown'), 0),"                                     \
  " count(*) FILTER (WHERE state='invalid') FROM callrail_responses WHERE run_id=?1)"

static const char cr_sql_run_end[] =
    "UPDATE callrail_runs SET finished_at=" CR_NOW ", records=?2, requests=?3, ok=?4, failed=?5,"
    " unknown=?6, skipped=?7, invalid=?8, status=?9, error=?10, changed=?11 WHERE run_id=?1";
/* Only a run that still holds its claim renews it: see cr_store_heartbeat. */
static const char cr_sql_heartbeat[] =
    "UPDATE callrail_runs SET heartbeat_ms=?2, heartbeat_at=" CR_ISO(
        2) ","
           " error=coalesce(?3, error) WHERE run_id=?1 AND status='running'";
static const char cr_sql_pending[] =
    "INSERT INTO callrail_responses(run_id, destination, batch, records, record_keys, method, url,"
    " request_body, state, attempts, sent_at, sent_ms, quota_bucket, quota_class, record_key)"
    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', 1, " CR_ISO(9) ", ?9, ?10, ?11, ?12)";
static const char cr_sql_outcome[] =
    "UPDATE callrail_responses SET status=?2, state=?3, response_body=?4, error=?5, attempts=?6,"
    " duration_ms=?7, remote_id=?8 WHERE id=?1";
static const char cr_sql_invalid[] =
    "INSERT INTO callrail_responses(run_id, destination, batch, records, record_keys, method, url,"
    " request_body, state, error, attempts, record_key) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8,"
    " 'invalid', ?9, 0, ?12)";

/* A key delivered again keeps the remote id it had unless the response
** names one (an update's answer may not). */
#define CR_SQL_DELIVERED_UPSERT                                                                    \
  " ON CONFLICT(destination, record_key) DO UPDATE SET record_hash=excluded.record_hash,"          \
  " response_id=excluded.response_id, delivered_at=excluded.delivered_at,"                         \
  " remote_id=coalesce(excluded.remote_id, remote_id)"
static const char cr_sql_delivered[] =
    "INSERT INTO callrail_delivered(destination, record_key, record_hash, response_id,"
    " delivered_at, remote_id) SELECT ?1, k.value, json_extract(?3, '$[' || k.key || ']'), "
    "?4, " CR_NOW ", ?5 FROM json_each(?2) k WHERE 1" CR_SQL_DELIVERED_UPSERT;
/* The same for the one key of a one-record request, without parsing the
** JSON arrays of keys and identities: most requests are of one record. */
static const char cr_sql_delivered_one[] =
    "INSERT INTO callrail_delivered(destination, record_key, record_hash, response_id,"
    " delivered_at, remote_id) VALUES(?1, ?2, ?3, ?4, " CR_NOW ", ?5)" CR_SQL_DELIVERED_UPSERT;

/* The requests written after row id ?1, and whether each is another
** run's (?2 is this run) with a quota bucket: the shared quota ledger, read
** by row id (ids only grow, and every writer holds the file's write lock in
** turn, so a later commit never brings a smaller id).  This run's own rows
** are stepped over here, so that the next look starts after them. */
static const char cr_sql_ledger[] =
    "SELECT id, run_id <> ?2 AND quota_bucket IS NOT NULL, quota_bucket, quota_class, sent_ms"
    " FROM callrail_responses WHERE id > ?1";

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

/* On the user's connection triggers would run: a file whose audit tables
** have any is refused there. */
static int cr_store_check_triggers(sqlite3 *db, char **pzErr) {
  sqlite3_stmt *pStmt = 0;
  int rc = cr_prepare(db,
                      "SELECT name, tbl_name FROM main.sqlite_schema WHERE type='trigger' AND"
                      " tbl_name IN ('callrail_runs','callrail_responses','callrail_delivered')",
                      &pStmt, pzErr);
  if (rc == SQLITE_OK && sqlite3_step(pStmt) == SQLITE_ROW) {
    cr_set_error(pzErr,
                 "trigger %s on %s would run on the audit rows; drop it (the audit tables "
                 "must not run triggers)",
                 sqlite3_column_text(pStmt, 0), sqlite3_column_text(pStmt, 1));
    rc = SQLITE_ERROR;
  }
  sqlite3_finalize(pStmt);
  return rc;
}

/* The busy handler of the store's connection: waits for another
** process's lock in short steps, giving up at once when the user
** interrupts (Ctrl-C must stop a run within a second) or after
** CR_STORE_BUSY_MS. */
static int cr_store_busy(void *pArg, int nCalls) {
  cr_store *p = (cr_store *)pArg;
  if (cr_check_interrupt(p->dbUser) == SQLITE_INTERRUPT) {
    p->busyInterrupted = 1;
    return 0;
  }
  if ((sqlite3_int64)nCalls * CR_STORE_BUSY_STEP_MS >= CR_STORE_BUSY_MS) return 0;
  sqlite3_sleep(CR_STORE_BUSY_STEP_MS);
  return 1;
}

static int cr_store_connect(cr_store *p, sqlite3 *db, char **pzErr) {
  int rc = cr_store_check_txn(db, pzErr);
  p->dbUser = db;
  if (rc != SQLITE_OK) return rc;
  if (!cr_store_can_own(db)) {
    p->db = db;
    return cr_store_check_triggers(db, pzErr);
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
  sqlite3_busy_handler(p->db, cr_store_busy, p);
  sqlite3_db_config(p->db, SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, (int *)0);
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
  p->syncDurable = 1;
  return cr_exec(p->db,
                 "PRAGMA cache_size=-" CR_STORE_CACHE_KIB "; PRAGMA ignore_check_constraints=ON;"
                 " PRAGMA synchronous=FULL; PRAGMA journal_size_limit=" CR_JOURNAL_SIZE_LIMIT,
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
  if (rc == SQLITE_OK) rc = cr_prepare(p->db, cr_sql_delivered_one, &p->pDeliveredOne, pzErr);
  if (rc == SQLITE_OK) rc = cr_prepare(p->db, "SELECT json_extract(?1, ?2)", &p->pRemoteId, pzErr);
  if (rc == SQLITE_OK) rc = cr_prepare(p->db, cr_sql_heartbeat, &p->pHeartbeat, pzErr);
  if (rc == SQLITE_OK) {
    rc = cr_prepare(p->db, "SELECT 1 FROM callrail_runs WHERE run_id=?1 AND status='running'",
                    &p->pOwned, pzErr);
  }
  if (rc == SQLITE_OK) rc = cr_prepare(p->db, cr_sql_ledger, &p->pLedger, pzErr);
  if (rc == SQLITE_OK) rc = cr_prepare(p->db, "BEGIN IMMEDIATE", &p->pBegin, pzErr);
  if (rc == SQLITE_OK) rc = cr_prepare(p->db, "PRAGMA synchronous=NORMAL", &p->pSyncNormal, pzErr);
  if (rc == SQLITE_OK) rc = cr_prepare(p->db, "PRAGMA synchronous=FULL", &p->pSyncFull, pzErr);
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
  sqlite3_finalize(p->pDeliveredOne);
  sqlite3_finalize(p->pRemoteId);
  sqlite3_finalize(p->pHeartbeat);
  sqlite3_finalize(p->pOwned);
  sqlite3_finalize(p->pLedger);
  sqlite3_finalize(p->pBegin);
  sqlite3_finalize(p->pSyncNormal);
  sqlite3_finalize(p->pSyncFull);
  sqlite3_finalize(p->pCommit);
  if (p->ownsDb) sqlite3_close(p->db);
  sqlite3_free(p);
}

/* ------------------------------------------------------------------------
** Writing
**
** Writes are grouped: the first write after a commit opens a transaction
** on the store's own connection, and cr_store_flush() commits it - before
** every request leaves, and at least every few hundred ms while outcomes
** arrive.  (On the user's connection each write stands alone, or joins
** the user's transaction.)
*/

/* The error of a failed statement: an interrupted lock wait is reported as
** an interrupt, anything else with SQLite's message after zWhat. */
static int cr_store_failed(cr_store *p, int rc, const char *zWhat, char **pzErr) {
  if (p->busyInterrupted) {
    p->busyInterrupted = 0;
    cr_set_error(pzErr,
                 "interrupted while waiting for another connection's lock on the database"
                 " (%s)",
                 zWhat);
    return SQLITE_INTERRUPT;
  }
  cr_set_error(pzErr, "%s: %s", zWhat, sqlite3_errmsg(p->db));
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_ERROR : rc;
}

/* Steps BEGIN or COMMIT, prepared once. */
static int cr_store_exec(cr_store *p, sqlite3_stmt *pStmt, const char *zWhat, char **pzErr) {
  int rc = sqlite3_step(pStmt);
  sqlite3_reset(pStmt);
  return rc == SQLITE_DONE ? SQLITE_OK : cr_store_failed(p, rc, zWhat, pzErr);
}

/* Opens the write transaction.  A durable one (intent: pending rows, a
** run's claim) commits with synchronous FULL; the others (outcomes,
** heartbeats) with NORMAL, which does not wait for the disk: a request's
** intent is already durable then, and should the machine lose such a
** commit, its row is still `pending` and becomes `unknown` - never sent
** again by itself.  The next durable commit makes them durable too.  The
** level can only change between transactions, so a lazy transaction open
** when a durable one is wanted is committed first. */
static int cr_store_begin(cr_store *p, int isDurable, char **pzErr) {
  int rc = SQLITE_OK;
  if (!p->ownsDb || (p->inTxn && (p->txnDurable || !isDurable))) return SQLITE_OK;
  if (p->inTxn) rc = cr_store_flush(p, pzErr);
  if (rc == SQLITE_OK && p->syncDurable != isDurable) {
    rc = cr_store_exec(p, isDurable ? p->pSyncFull : p->pSyncNormal,
                       "cannot set the audit connection's synchronous level", pzErr);
    p->syncDurable = rc == SQLITE_OK ? isDurable : p->syncDurable;
  }
  if (rc == SQLITE_OK)
    rc = cr_store_exec(p, p->pBegin, "cannot start writing to the audit tables", pzErr);
  p->inTxn = rc == SQLITE_OK;
  p->txnDurable = isDurable;
  return rc;
}

int cr_store_lock(cr_store *p, char **pzErr) {
  return cr_store_begin(p, 1, pzErr);
}

int cr_store_flush(cr_store *p, char **pzErr) {
  int rc = SQLITE_OK;
  if (p->inTxn) {
    rc = cr_store_exec(p, p->pCommit, "cannot commit to the audit tables", pzErr);
    if (rc != SQLITE_OK) cr_exec(p->db, "ROLLBACK", 0);
    p->inTxn = 0;
  }
  return rc;
}

void cr_store_rollback(cr_store *p) {
  if (p->inTxn) cr_exec(p->db, "ROLLBACK", 0);
  p->inTxn = 0;
}

sqlite3 *cr_store_db(cr_store *p) {
  return p->db;
}

/* Steps a write statement and resets it; an error names zWhat.
**
** On the user's connection (in-memory databases), nothing can be written
** once the user interrupted it: the write is skipped, and the rows stay as
** they were (a pending row becomes unknown when the next run recovers the
** dead run), rather than failing every step of the shutdown. */
static int cr_store_step(cr_store *p, sqlite3_stmt *pStmt, const char *zWhat, char **pzErr) {
  int rc = cr_store_begin(p, 0, pzErr);
  if (rc != SQLITE_OK) return rc;
  if (!p->ownsDb && cr_check_interrupt(p->db) == SQLITE_INTERRUPT) {
    sqlite3_clear_bindings(pStmt);
    return SQLITE_OK;
  }
  rc = sqlite3_step(pStmt);
  sqlite3_reset(pStmt);
  sqlite3_clear_bindings(pStmt);
  if (rc == SQLITE_DONE) return SQLITE_OK;
  return cr_store_failed(p, rc, zWhat, pzErr);
}

int cr_store_run_end(cr_store *p, sqlite3_int64 iRun, const cr_run_counts *c, const char *zStatus,
                     const char *zError, char **pzErr) {
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
  sqlite3_bind_text(p->pRunEnd, 10, zError, -1, SQLITE_STATIC);
  sqlite3_bind_int64(p->pRunEnd, 11, c->changed);
  rc = cr_store_step(p, p->pRunEnd, "cannot record the end of the run", pzErr);
  if (rc == SQLITE_OK) rc = cr_store_flush(p, pzErr);
  cr_live_runs_remove(iRun);
  return rc;
}

int cr_store_settle(cr_store *p, const char *zDest, char **pzErr) {
  sqlite3_stmt *pStmt = 0;
  int rc = cr_prepare(p->db, cr_sql_settle, &pStmt, pzErr);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(pStmt, sqlite3_bind_parameter_index(pStmt, ":dest"), zDest, -1,
                      SQLITE_STATIC);
    rc = cr_store_step(p, pStmt, "cannot settle the unknown rows delivered since", pzErr);
  }
  sqlite3_finalize(pStmt);
  if (rc == SQLITE_OK) rc = cr_store_flush(p, pzErr);
  return rc;
}

int cr_store_heartbeat(cr_store *p, sqlite3_int64 iRun, const char *zNote, int *pLost,
                       char **pzErr) {
  int rc;
  sqlite3_bind_int64(p->pHeartbeat, 1, iRun);
  sqlite3_bind_int64(p->pHeartbeat, 2, cr_wall_ms());
  sqlite3_bind_text(p->pHeartbeat, 3, zNote, -1, SQLITE_STATIC);
  rc = cr_store_step(p, p->pHeartbeat, "cannot renew the run's heartbeat", pzErr);
  *pLost = rc == SQLITE_OK && sqlite3_changes(p->db) == 0;
  return rc;
}

int cr_store_owned(cr_store *p, sqlite3_int64 iRun, int *pLost, char **pzErr) {
  int rc;
  sqlite3_bind_int64(p->pOwned, 1, iRun);
  rc = sqlite3_step(p->pOwned);
  *pLost = rc == SQLITE_DONE;
  sqlite3_reset(p->pOwned);
  if (rc == SQLITE_ROW || rc == SQLITE_DONE) return SQLITE_OK;
  cr_set_error(pzErr, "cannot read the run's row: %s", sqlite3_errmsg(p->db));
  return rc;
}

/* Binds the columns a pending row and an invalid row share, from ?2 on,
** and its record_key as ?12. */
static void cr_bind_request(sqlite3_stmt *pStmt, int iFirst, const char *zDest,
                            const cr_request *pReq) {
  sqlite3_bind_text(pStmt, iFirst, zDest, -1, SQLITE_STATIC);
  if (pReq->iBatch > 0) sqlite3_bind_int64(pStmt, iFirst + 1, pReq->iBatch);
  sqlite3_bind_int(pStmt, iFirst + 2, pReq->nRecords);
  sqlite3_bind_text(pStmt, iFirst + 3, pReq->zRecordKeys, -1, SQLITE_STATIC);
  sqlite3_bind_text(pStmt, iFirst + 4, cr_method_names[pReq->eMethod], -1, SQLITE_STATIC);
  sqlite3_bind_text(pStmt, iFirst + 5, pReq->zUrl, -1, SQLITE_STATIC);
  sqlite3_bind_text(pStmt, iFirst + 6, pReq->zBody, -1, SQLITE_STATIC);
  sqlite3_bind_text(pStmt, 12, pReq->zRecordKey, -1, SQLITE_STATIC);
}

int cr_store_pending(cr_store *p, sqlite3_int64 iRun, const char *zDest, const cr_request *pReq,
                     sqlite3_int64 *piId, char **pzErr) {
  cr_quota_key q;
  int rc;
  rc = cr_store_lock(p, pzErr); /* intent is durable */
  if (rc != SQLITE_OK) return rc;
  cr_quota_key_of(pReq->eMethod, pReq->zUrl, &q);
  sqlite3_bind_int64(p->pPending, 1, iRun);
  cr_bind_request(p->pPending, 2, zDest, pReq);
  sqlite3_bind_int64(p->pPending, 9, cr_wall_ms()); /* sent_ms, and sent_at from it */
  sqlite3_bind_text(p->pPending, 10, q.zBucket, -1, SQLITE_STATIC);
  sqlite3_bind_text(p->pPending, 11, q.zClass, -1, SQLITE_STATIC);
  rc = cr_store_step(p, p->pPending, "cannot record a pending request", pzErr);
  *piId = sqlite3_last_insert_rowid(p->db);
  cr_quota_key_clear(&q);
  return rc;
}

int cr_store_outcome(cr_store *p, sqlite3_int64 iId, const cr_outcome *pOut, char **pzErr) {
  sqlite3_bind_int64(p->pOutcome, 1, iId);
  if (pOut->status > 0) sqlite3_bind_int(p->pOutcome, 2, pOut->status);
  sqlite3_bind_text(p->pOutcome, 3, pOut->zState, -1, SQLITE_STATIC);
  sqlite3_bind_text(p->pOutcome, 4, pOut->zBody, -1, SQLITE_STATIC);
  sqlite3_bind_text(p->pOutcome, 5, pOut->zError, -1, SQLITE_STATIC);
  sqlite3_bind_int(p->pOutcome, 6, pOut->nAttempts);
  sqlite3_bind_int64(p->pOutcome, 7, pOut->durationMs);
  sqlite3_bind_text(p->pOutcome, 8, pOut->zRemoteId, -1, SQLITE_STATIC);
  return cr_store_step(p, p->pOutcome, "cannot record a response", pzErr);
}

int cr_store_invalid(cr_store *p, sqlite3_int64 iRun, const char *zDest, const cr_request *pReq,
                     sqlite3_int64 *piId, char **pzErr) {
  int rc;
  sqlite3_bind_int64(p->pInvalid, 1, iRun);
  cr_bind_request(p->pInvalid, 2, zDest, pReq);
  sqlite3_bind_text(p->pInvalid, 9, pReq->zError, -1, SQLITE_STATIC);
  rc = cr_store_step(p, p->pInvalid, "cannot record an invalid record", pzErr);
  *piId = sqlite3_last_insert_rowid(p->db);
  return rc;
}

char *cr_store_remote_id(cr_store *p, const char *zBody, const char *zIdPath) {
  char *zId = 0;
  if (zBody == 0) return 0;
  sqlite3_bind_text(p->pRemoteId, 1, zBody, -1, SQLITE_STATIC);
  sqlite3_bind_text(p->pRemoteId, 2, zIdPath, -1, SQLITE_STATIC);
  /* A body that is not JSON, or has nothing there, just has no id. */
  if (sqlite3_step(p->pRemoteId) == SQLITE_ROW) {
    zId = cr_strdup((const char *)sqlite3_column_text(p->pRemoteId, 0));
  }
  sqlite3_reset(p->pRemoteId);
  return zId;
}

int cr_store_delivered(cr_store *p, const char *zDest, const cr_request *pReq, sqlite3_int64 iId,
                       const char *zRemoteId, char **pzErr) {
  sqlite3_stmt *pStmt = pReq->zRecordKey && pReq->zRecordHash ? p->pDeliveredOne : p->pDelivered;
  sqlite3_bind_text(pStmt, 1, zDest, -1, SQLITE_STATIC);
  if (pStmt == p->pDeliveredOne) {
    sqlite3_bind_text(pStmt, 2, pReq->zRecordKey, -1, SQLITE_STATIC);
    sqlite3_bind_text(pStmt, 3, pReq->zRecordHash, -1, SQLITE_STATIC);
  } else {
    sqlite3_bind_text(pStmt, 2, pReq->zRecordKeys, -1, SQLITE_STATIC);
    sqlite3_bind_text(pStmt, 3, pReq->zRecordHashes, -1, SQLITE_STATIC);
  }
  sqlite3_bind_int64(pStmt, 4, iId);
  if (pReq->nRecords == 1) sqlite3_bind_text(pStmt, 5, zRemoteId, -1, SQLITE_STATIC);
  return cr_store_step(p, pStmt, "cannot record delivered records", pzErr);
}

/* ------------------------------------------------------------------------
** The quota ledger
*/

/* The highest row id of callrail_responses (0 when empty). */
static int cr_store_max_id(cr_store *p, sqlite3_int64 *piMax, char **pzErr) {
  sqlite3_stmt *pStmt = 0;
  int rc = cr_prepare(p->db, "SELECT coalesce(max(id), 0) FROM callrail_responses", &pStmt, pzErr);
  if (rc == SQLITE_OK) {
    rc = sqlite3_step(pStmt);
    *piMax = sqlite3_column_int64(pStmt, 0);
    rc = rc == SQLITE_ROW ? SQLITE_OK
                          : cr_store_failed(p, rc, "cannot read the quota ledger", pzErr);
  }
  sqlite3_finalize(pStmt);
  return rc;
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
    rc = rc == SQLITE_DONE ? SQLITE_OK : cr_store_failed(p, rc, "cannot read quota usage", pzErr);
  }
  sqlite3_finalize(pStmt);
  return rc;
}

int cr_store_ledger(cr_store *p, sqlite3_int64 iRunSelf, sqlite3_int64 *piAfter,
                    void (*xRow)(void *, const char *, const char *, sqlite3_int64), void *pArg,
                    char **pzErr) {
  int rc;
  if (*piAfter < 0) {
    /* The first look: what is there is counted by the buckets' loads. */
    rc = cr_store_max_id(p, piAfter, pzErr);
    return rc;
  }
  sqlite3_bind_int64(p->pLedger, 1, *piAfter);
  sqlite3_bind_int64(p->pLedger, 2, iRunSelf);
  while ((rc = sqlite3_step(p->pLedger)) == SQLITE_ROW) {
    *piAfter = sqlite3_column_int64(p->pLedger, 0);
    if (sqlite3_column_int(p->pLedger, 1) == 0) continue;
    xRow(pArg, (const char *)sqlite3_column_text(p->pLedger, 2),
         (const char *)sqlite3_column_text(p->pLedger, 3), sqlite3_column_int64(p->pLedger, 4));
  }
  sqlite3_reset(p->pLedger);
  return rc == SQLITE_DONE ? SQLITE_OK
                           : cr_store_failed(p, rc, "cannot read the quota ledger", pzErr);
}

/* ------------------------------------------------------------------------
** Runs: recovery of the dead, and one live run per destination
*/

/* A dead or ended run's pending rows become unknown: the request may have
** arrived.  (?1: the run; ?2: the destination, for the ended-runs sweep.) */
#define CR_RECOVERED_ERROR                                                                         \
  "'the run that sent this request ended before its outcome was recorded (its process died, or "   \
  "it could not write to the database); check CallRail, then record what happened with "           \
  "callrail_resolve(id, ''delivered'') or callrail_resolve(id, ''not_delivered'')'"
static const char cr_sql_recover_rows[] =
    "UPDATE callrail_responses SET state='unknown', error=" CR_RECOVERED_ERROR
    " WHERE run_id=?1 AND state='pending'";
static const char cr_sql_recover_ended[] =
    "UPDATE callrail_responses SET state='unknown', error=" CR_RECOVERED_ERROR
    " WHERE destination=?1 AND state IN ('pending','unknown') AND state='pending'"
    " AND run_id NOT IN (SELECT run_id FROM callrail_runs WHERE status='running')";

/* ... and the run ends interrupted, its totals recounted from its rows. */
static const char cr_sql_recover_run[] =
    "UPDATE callrail_runs SET status='interrupted', finished_at=" CR_NOW ","
    " error='the run ended without recording its end (its process died, or its heartbeat"
    " stopped for longer than lease_ms)',"
    " records=(SELECT coalesce(sum(records),0) FROM callrail_responses WHERE "
    "run_id=?1), " CR_SQL_RECOUNT " WHERE run_id=?1";

/* The running runs of a destination with what tells whether they live;
** a run of 0.1.0 has no heartbeat: its start stands in for one. */
static const char cr_sql_running[] =
    "SELECT run_id, host, pid, pid_start,"
    " coalesce(heartbeat_ms, CAST((julianday(started_at) - 2440587.5) * 86400000 AS INTEGER)),"
    " kind, started_at FROM callrail_runs WHERE destination=?1 AND status='running'";

/* Runs zSql with ?1 = iRun (or zDest); *pnChanged (if not NULL) grows by
** its changes. */
static int cr_store_run_sql(cr_store *p, const char *zSql, sqlite3_int64 iRun, const char *zDest,
                            sqlite3_int64 *pnChanged, char **pzErr) {
  sqlite3_stmt *pStmt = 0;
  int rc = cr_prepare(p->db, zSql, &pStmt, pzErr);
  if (rc == SQLITE_OK) {
    if (zDest) {
      sqlite3_bind_text(pStmt, 1, zDest, -1, SQLITE_STATIC);
    } else {
      sqlite3_bind_int64(pStmt, 1, iRun);
    }
    rc = cr_store_step(p, pStmt, "cannot recover the rows of a dead run", pzErr);
    if (rc == SQLITE_OK && pnChanged) *pnChanged += sqlite3_changes(p->db);
  }
  sqlite3_finalize(pStmt);
  return rc;
}

/* The owner of the running run in the current row of cr_sql_running. */
static void cr_store_owner(sqlite3_stmt *pStmt, cr_run_owner *o) {
  o->iRun = sqlite3_column_int64(pStmt, 0);
  o->zHost = (const char *)sqlite3_column_text(pStmt, 1);
  o->pid = sqlite3_column_int64(pStmt, 2);
  o->pidStart = sqlite3_column_int64(pStmt, 3);
  o->heartbeatMs = sqlite3_column_int64(pStmt, 4);
}

/* Recovers the dead runs of zDest; *pzLive receives a description of a
** live send run of zDest if there is one (caller frees).  Runs inside the
** store's write transaction; an interrupt stops it between two runs. */
static int cr_store_recover(cr_store *p, const char *zDest, sqlite3_int64 leaseMs, char **pzLive,
                            sqlite3_int64 *pnRecovered, char **pzErr) {
  sqlite3_stmt *pStmt = 0;
  sqlite3_int64 tNow = cr_wall_ms();
  int rc = cr_prepare(p->db, cr_sql_running, &pStmt, pzErr);
  if (rc == SQLITE_OK) sqlite3_bind_text(pStmt, 1, zDest, -1, SQLITE_STATIC);
  while (rc == SQLITE_OK && sqlite3_step(pStmt) == SQLITE_ROW) {
    cr_run_owner o;
    cr_store_owner(pStmt, &o);
    if (cr_check_interrupt(p->dbUser) == SQLITE_INTERRUPT) {
      cr_set_error(pzErr, "interrupted while recovering the runs of destination \"%s\"", zDest);
      rc = SQLITE_INTERRUPT;
    } else if (cr_run_is_alive(&o, tNow, leaseMs)) {
      if (*pzLive == 0 && strcmp((const char *)sqlite3_column_text(pStmt, 5), "send") == 0) {
        *pzLive = sqlite3_mprintf("run %lld (host %s, pid %lld, started_at %s)", o.iRun,
                                  o.zHost ? o.zHost : "?", o.pid, sqlite3_column_text(pStmt, 6));
      }
    } else {
      rc = cr_store_run_sql(p, cr_sql_recover_rows, o.iRun, 0, pnRecovered, pzErr);
      if (rc == SQLITE_OK) rc = cr_store_run_sql(p, cr_sql_recover_run, o.iRun, 0, 0, pzErr);
    }
  }
  sqlite3_finalize(pStmt);
  if (rc == SQLITE_OK) rc = cr_store_run_sql(p, cr_sql_recover_ended, 0, zDest, pnRecovered, pzErr);
  return rc;
}

/* Inserts the run's row, as live, in the current transaction. */
static int cr_store_run_insert(cr_store *p, const char *zDest, const char *zKind,
                               sqlite3_int64 *piRun, char **pzErr) {
  sqlite3_int64 pid = (sqlite3_int64)getpid();
  int rc;
  sqlite3_bind_text(p->pRunBegin, 1, zDest, -1, SQLITE_STATIC);
  sqlite3_bind_text(p->pRunBegin, 2, zKind, -1, SQLITE_STATIC);
  sqlite3_bind_text(p->pRunBegin, 3, cr_host_name(), -1, SQLITE_STATIC);
  sqlite3_bind_int64(p->pRunBegin, 4, pid);
  sqlite3_bind_int64(p->pRunBegin, 5, cr_process_start(pid));
  sqlite3_bind_int64(p->pRunBegin, 6, cr_wall_ms());
  rc = cr_store_step(p, p->pRunBegin, "cannot record the run", pzErr);
  *piRun = sqlite3_last_insert_rowid(p->db);
  /* Live before it commits: no other connection of this process may see
  ** the row without also seeing it alive. */
  if (rc == SQLITE_OK && !cr_live_runs_add(*piRun)) rc = SQLITE_NOMEM;
  return rc;
}

int cr_store_claim(cr_store *p, const char *zDest, const char *zKind, sqlite3_int64 leaseMs,
                   sqlite3_int64 *piRun, char **pzLive, sqlite3_int64 *pnRecovered, char **pzErr) {
  int rc = cr_store_lock(p, pzErr);
  *piRun = 0;
  *pzLive = 0;
  if (rc == SQLITE_OK) rc = cr_store_recover(p, zDest, leaseMs, pzLive, pnRecovered, pzErr);
  if (rc == SQLITE_OK && (*pzLive == 0 || strcmp(zKind, "send") != 0)) {
    sqlite3_free(*pzLive);
    *pzLive = 0;
    rc = cr_store_run_insert(p, zDest, zKind, piRun, pzErr);
  }
  if (rc == SQLITE_OK) {
    rc = cr_store_flush(p, pzErr);
  } else {
    cr_store_flush(p, 0); /* what was recovered stays recovered */
  }
  if (rc != SQLITE_OK && *piRun) {
    cr_live_runs_remove(*piRun);
    *piRun = 0;
  }
  return rc;
}
