/*
** cr_resolve.c - callrail_resolve(): the user says what became of a request
** whose outcome the extension could not know.
**
**   SELECT callrail_resolve(42, 'delivered', 'COM8154748ae6bd4e278a7cddd38a662f4f');
**   SELECT callrail_resolve(43, 'not_delivered');
**
** An `unknown` request (a POST that timed out after its body left), or a
** `pending` one of a run that is no longer alive, holds its records back:
** no later run sends them again, because CallRail has no idempotency keys
** and a second POST could create a second company or ring a phone twice.
** Someone who has looked in CallRail records the answer here:
**
**   - 'delivered': the row becomes `ok` (its error says it was resolved by
**     hand, and when), its remote_id is set when given, and its keys become
**     delivered with that request's identity - no later run sends them
**     again unless the record changes;
**   - 'not_delivered': the row becomes `failed`, so the next run sends it.
**
** Anything else (another state, a pending row of a live run, an unknown
** id or outcome) is an SQL error saying why.  The rows are written through
** the audit connection (cr_store), like every audit row.  It writes the
** audit tables, so it is SQLITE_DIRECTONLY.
*/
#include "cr_internal.h"
SQLITE_EXTENSION_INIT3

#include <string.h>

/* The row to resolve, and what tells whether its run is still alive. */
static const char cr_sql_resolve_row[] =
    "SELECT r.state, r.run_id, u.status, u.host, u.pid, u.pid_start,"
    " coalesce(u.heartbeat_ms, CAST((julianday(u.started_at) - 2440587.5) * 86400000 AS INTEGER)),"
    " coalesce(json_extract(d.config, '$.lease_ms'), 60000)"
    " FROM callrail_responses r LEFT JOIN callrail_runs u ON u.run_id = r.run_id"
    " LEFT JOIN callrail_destinations d ON d.name = r.destination WHERE r.id = ?1";

static const char cr_sql_resolve_delivered[] =
    "UPDATE callrail_responses SET state = 'ok', remote_id = coalesce(?2, remote_id),"
    " error = 'resolved by hand as delivered at ' || strftime('%Y-%m-%dT%H:%M:%SZ','now')"
    " || coalesce(' (was: ' || error || ')', '') WHERE id = ?1";

static const char cr_sql_resolve_not_delivered[] =
    "UPDATE callrail_responses SET state = 'failed',"
    " error = 'resolved by hand as not delivered at ' || strftime('%Y-%m-%dT%H:%M:%SZ','now')"
    " || '; the next run sends it again' || coalesce(' (was: ' || error || ')', '')"
    " WHERE id = ?1";

/* Checks that response iId may be resolved: unknown, or pending in a run
** that is no longer alive. */
static int cr_resolve_check(sqlite3 *db, sqlite3_int64 iId, char **pzErr) {
  sqlite3_stmt *pStmt = 0;
  int rc = cr_prepare(db, cr_sql_resolve_row, &pStmt, pzErr);
  if (rc != SQLITE_OK) return rc;
  sqlite3_bind_int64(pStmt, 1, iId);
  if (sqlite3_step(pStmt) != SQLITE_ROW) {
    cr_set_error(pzErr, "no response with id %lld", iId);
    rc = SQLITE_ERROR;
  } else {
    const char *zState = (const char *)sqlite3_column_text(pStmt, 0);
    const char *zStatus = (const char *)sqlite3_column_text(pStmt, 2);
    cr_run_owner o;
    o.iRun = sqlite3_column_int64(pStmt, 1);
    o.zHost = (const char *)sqlite3_column_text(pStmt, 3);
    o.pid = sqlite3_column_int64(pStmt, 4);
    o.pidStart = sqlite3_column_int64(pStmt, 5);
    o.heartbeatMs = sqlite3_column_int64(pStmt, 6);
    if (strcmp(zState, "pending") == 0 && zStatus && strcmp(zStatus, "running") == 0 &&
        cr_run_is_alive(&o, cr_wall_ms(), sqlite3_column_int64(pStmt, 7))) {
      cr_set_error(pzErr,
                   "response %lld is pending in run %lld, which is still alive: its outcome "
                   "will be recorded when the answer comes",
                   iId, o.iRun);
      rc = SQLITE_ERROR;
    } else if (strcmp(zState, "unknown") != 0 && strcmp(zState, "pending") != 0) {
      cr_set_error(pzErr,
                   "response %lld is %s: only an unknown request (or a pending one of a run that "
                   "is no longer alive) can be resolved",
                   iId, zState);
      rc = SQLITE_ERROR;
    }
  }
  sqlite3_finalize(pStmt);
  return rc;
}

/* Writes the resolution of response iId. */
static int cr_resolve_write(sqlite3 *db, sqlite3_int64 iId, int isDelivered, const char *zRemoteId,
                            char **pzErr) {
  sqlite3_stmt *pStmt = 0;
  int rc = cr_prepare(db, isDelivered ? cr_sql_resolve_delivered : cr_sql_resolve_not_delivered,
                      &pStmt, pzErr);
  if (rc == SQLITE_OK) {
    sqlite3_bind_int64(pStmt, 1, iId);
    sqlite3_bind_text(pStmt, 2, zRemoteId, -1, SQLITE_STATIC);
    rc = sqlite3_step(pStmt) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
    if (rc != SQLITE_OK) cr_set_error(pzErr, "cannot resolve: %s", sqlite3_errmsg(db));
  }
  sqlite3_finalize(pStmt);
  if (rc == SQLITE_OK && isDelivered) rc = cr_identity_deliver(db, iId, zRemoteId, pzErr);
  return rc;
}

/* The arguments: a response id, an outcome, and (with 'delivered') an
** optional remote id. */
static int cr_resolve_args(int argc, sqlite3_value **argv, sqlite3_int64 *piId, int *pDelivered,
                           const char **pzRemoteId, char **pzErr) {
  const char *zOutcome;
  if (sqlite3_value_type(argv[0]) != SQLITE_INTEGER) {
    cr_set_error(pzErr, "response_id must be an integer (callrail_responses.id)");
    return SQLITE_ERROR;
  }
  *piId = sqlite3_value_int64(argv[0]);
  zOutcome = cr_arg_text(argv[1], "outcome", pzErr);
  if (zOutcome == 0) return SQLITE_ERROR;
  *pDelivered = strcmp(zOutcome, "delivered") == 0;
  if (!*pDelivered && strcmp(zOutcome, "not_delivered") != 0) {
    cr_set_error(pzErr, "outcome must be 'delivered' or 'not_delivered', not '%s'", zOutcome);
    return SQLITE_ERROR;
  }
  *pzRemoteId = 0;
  if (argc > 2 && sqlite3_value_type(argv[2]) != SQLITE_NULL) {
    if (!*pDelivered) {
      cr_set_error(pzErr, "a remote_id goes only with 'delivered'");
      return SQLITE_ERROR;
    }
    *pzRemoteId = cr_arg_text(argv[2], "remote_id", pzErr);
    if (*pzRemoteId == 0) return SQLITE_ERROR;
  }
  return SQLITE_OK;
}

int cr_resolve(cr_conn *pConn, int argc, sqlite3_value **argv, const char **pzState, char **pzErr) {
  cr_store *pStore = 0;
  sqlite3_int64 iId = 0;
  int isDelivered = 0;
  const char *zRemoteId = 0;
  int rc = cr_resolve_args(argc, argv, &iId, &isDelivered, &zRemoteId, pzErr);
  if (rc == SQLITE_OK) rc = cr_schema_ensure(pConn, pzErr);
  if (rc == SQLITE_OK) rc = cr_store_open(pConn->db, &pStore, pzErr);
  if (rc == SQLITE_OK) rc = cr_store_lock(pStore, pzErr);
  if (rc == SQLITE_OK) rc = cr_resolve_check(cr_store_db(pStore), iId, pzErr);
  if (rc == SQLITE_OK)
    rc = cr_resolve_write(cr_store_db(pStore), iId, isDelivered, zRemoteId, pzErr);
  if (rc == SQLITE_OK) {
    rc = cr_store_flush(pStore, pzErr);
  } else if (pStore) {
    cr_store_rollback(pStore);
  }
  cr_store_close(pStore);
  *pzState = isDelivered ? "ok" : "failed";
  return rc;
}
