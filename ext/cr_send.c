/*
** cr_send.c - the SQL surface of the sending engine: callrail_send and
** callrail_test.
**
**   SELECT state, count(*) FROM callrail_send('companies', 'new_companies')
**    GROUP BY state;
**
**   SELECT callrail_test('companies', json_object('name', 'Widget Shop'));
**   -> {"status":201,"state":"ok","body":{"id":"COM...",...},"error":null}
**
** callrail_send is a table-valued function with the hidden columns
** destination and query, returning one row per request as it finishes
** (cr_run.c does the work).  A caller that stops reading early (LIMIT)
** ends the run: nothing new starts, and what is in flight is finished and
** recorded before the statement returns.
*/
#include "cr_internal.h"
SQLITE_EXTENSION_INIT3

#include <string.h>

typedef struct cr_send_cursor {
  cr_tvf_cursor base; /* first: the shared part */
  cr_run *pRun;
  cr_outcome *pOut; /* the current row, NULL at the end */
} cr_send_cursor;

#define CR_SEND_SCHEMA                                                                             \
  "CREATE TABLE x(response_id, batch, records, method, url, status, state, error,"                 \
  " response_body, attempts, duration_ms, record_key, remote_id, destination HIDDEN,"              \
  " query HIDDEN)"
#define CR_SEND_RESPONSE_ID 0
#define CR_SEND_BATCH 1
#define CR_SEND_RECORDS 2
#define CR_SEND_METHOD 3
#define CR_SEND_URL 4
#define CR_SEND_STATUS 5
#define CR_SEND_STATE 6
#define CR_SEND_ERROR 7
#define CR_SEND_RESPONSE_BODY 8
#define CR_SEND_ATTEMPTS 9
#define CR_SEND_DURATION_MS 10
#define CR_SEND_RECORD_KEY 11
#define CR_SEND_REMOTE_ID 12
#define CR_SEND_DESTINATION 13

static void cr_send_reset(cr_send_cursor *pCur) {
  cr_outcome_free(pCur->pOut);
  cr_run_close(pCur->pRun);
  pCur->pOut = 0;
  pCur->pRun = 0;
}

static int cr_send_close(sqlite3_vtab_cursor *cur) {
  cr_send_reset((cr_send_cursor *)cur);
  sqlite3_free(cur);
  return SQLITE_OK;
}

static int cr_send_next(sqlite3_vtab_cursor *cur) {
  cr_send_cursor *pCur = (cr_send_cursor *)cur;
  char *zErr = 0;
  int rc;
  cr_outcome_free(pCur->pOut);
  pCur->pOut = 0;
  rc = cr_run_step(pCur->pRun, &pCur->pOut, &zErr);
  pCur->base.iRowid++;
  if (rc != SQLITE_OK) return cr_tvf_error(cur, zErr, rc);
  return SQLITE_OK;
}

/* idxNum bits: 1 = destination, 2 = query (both required). */
static int cr_send_filter(sqlite3_vtab_cursor *cur, int idxNum, const char *idxStr, int argc,
                          sqlite3_value **argv) {
  cr_send_cursor *pCur = (cr_send_cursor *)cur;
  cr_conn *pConn = ((cr_tvf *)cur->pVtab)->pConn;
  char *zErr = 0;
  const char *azArg[2] = {0, 0};
  int rc = cr_tvf_args(cur, idxNum, argv, azArg);
  (void)idxStr, (void)argc;
  cr_send_reset(pCur);
  if (rc != SQLITE_OK) return rc;
  rc = cr_run_open(pConn, azArg[0], "send", azArg[1], 0, &pCur->pRun, &zErr);
  if (rc != SQLITE_OK) return cr_tvf_error(cur, zErr, rc);
  pCur->base.iRowid = 0;
  return cr_send_next(cur);
}

static int cr_send_eof(sqlite3_vtab_cursor *cur) {
  return ((cr_send_cursor *)cur)->pOut == 0;
}

static int cr_send_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int i) {
  const cr_outcome *o = ((cr_send_cursor *)cur)->pOut;
  switch (i) {
  case CR_SEND_RESPONSE_ID:
    sqlite3_result_int64(ctx, o->iResponseId);
    break;
  case CR_SEND_BATCH:
    if (o->pReq->iBatch > 0) sqlite3_result_int64(ctx, o->pReq->iBatch);
    break;
  case CR_SEND_RECORDS:
    sqlite3_result_int(ctx, o->pReq->nRecords);
    break;
  case CR_SEND_METHOD:
    sqlite3_result_text(ctx, cr_method_names[o->pReq->eMethod], -1, SQLITE_STATIC);
    break;
  case CR_SEND_URL:
    sqlite3_result_text(ctx, o->pReq->zUrl, -1, SQLITE_TRANSIENT);
    break;
  case CR_SEND_STATUS:
    if (o->status > 0) sqlite3_result_int(ctx, o->status);
    break;
  case CR_SEND_STATE:
    sqlite3_result_text(ctx, o->zState, -1, SQLITE_STATIC);
    break;
  case CR_SEND_ERROR:
    sqlite3_result_text(ctx, o->zError, -1, SQLITE_TRANSIENT);
    break;
  case CR_SEND_RESPONSE_BODY:
    sqlite3_result_text(ctx, o->zBody, -1, SQLITE_TRANSIENT);
    break;
  case CR_SEND_ATTEMPTS:
    sqlite3_result_int(ctx, o->nAttempts);
    break;
  case CR_SEND_DURATION_MS:
    if (o->nAttempts > 0) sqlite3_result_int64(ctx, o->durationMs);
    break;
  case CR_SEND_RECORD_KEY:
    sqlite3_result_text(ctx, o->pReq->zRecordKey, -1, SQLITE_TRANSIENT);
    break;
  case CR_SEND_REMOTE_ID:
    sqlite3_result_text(ctx, o->zRemoteId, -1, SQLITE_TRANSIENT);
    break;
  default:
    break; /* hidden columns read back as NULL */
  }
  return SQLITE_OK;
}

static const cr_tvf_def cr_send_def = {"callrail_send",
                                       CR_SEND_SCHEMA,
                                       sizeof(cr_send_cursor),
                                       CR_SEND_DESTINATION,
                                       2,
                                       2,
                                       {"destination name", "query"}};

/* The table-valued function's module.  Designated initialisers leave
** every slot not named here NULL, whatever SQLite's headers add (3.44
** added xIntegrity): callrail_send is eponymous-only, read-only and has no
** transactions, so xCreate, xDestroy, xUpdate .. xIntegrity stay NULL. */
static sqlite3_module cr_send_module = {
    .iVersion = 0,                    /* no xSavepoint and later slots */
    .xConnect = cr_tvf_connect,       /* shared skeleton (cr_vtab.c) */
    .xBestIndex = cr_tvf_best_index,  /* arguments by HIDDEN column */
    .xDisconnect = cr_tvf_disconnect, /* frees the vtab */
    .xOpen = cr_tvf_open,             /* a cursor of the def's size */
    .xClose = cr_send_close,          /* this module's cursor */
    .xFilter = cr_send_filter,        /* does the work of one call */
    .xNext = cr_send_next,            /* the next result row */
    .xEof = cr_send_eof,              /* no more rows */
    .xColumn = cr_send_column,        /* one result column */
    .xRowid = cr_tvf_rowid,           /* the row counter */
};

int cr_register_send(sqlite3 *db, cr_conn *pConn, char **pzErr) {
  return cr_tvf_register(db, pConn, &cr_send_def, &cr_send_module, pzErr);
}

/* ------------------------------------------------------------------------
** callrail_test(destination, record_json)
*/

/* {status, state, body, error}: body parsed when it is JSON. */
static int cr_test_result(sqlite3 *db, const cr_outcome *o, char **pzResult, char **pzErr) {
  sqlite3_stmt *pStmt = 0;
  int rc = cr_prepare(db,
                      "SELECT json_object('status', ?1, 'state', ?2, 'body',"
                      " CASE WHEN json_valid(?3) THEN json(?3) ELSE ?3 END, 'error', ?4)",
                      &pStmt, pzErr);
  if (rc == SQLITE_OK) {
    if (o->status > 0) sqlite3_bind_int(pStmt, 1, o->status);
    sqlite3_bind_text(pStmt, 2, o->zState, -1, SQLITE_STATIC);
    sqlite3_bind_text(pStmt, 3, o->zBody, -1, SQLITE_STATIC);
    sqlite3_bind_text(pStmt, 4, o->zError, -1, SQLITE_STATIC);
    if (sqlite3_step(pStmt) == SQLITE_ROW) {
      *pzResult = cr_strdup((const char *)sqlite3_column_text(pStmt, 0));
      if (*pzResult == 0) {
        cr_set_error(pzErr, "cannot build the result: out of memory");
        rc = SQLITE_NOMEM;
      }
    } else {
      cr_set_error(pzErr, "cannot build the result: %s", sqlite3_errmsg(db));
      rc = SQLITE_ERROR;
    }
  }
  sqlite3_finalize(pStmt);
  return rc;
}

/* An error once the request has left must not read as "nothing was sent":
** the user would run callrail_test again and, say, create a second company.
** So the message says that it was sent, how it ended and where it is. */
static void cr_test_sent_error(const char *zDest, const cr_outcome *o, char **pzErr) {
  char *zWhy = *pzErr;
  *pzErr = sqlite3_mprintf("destination \"%s\": the request was sent (state %s, status %d,"
                           " callrail_responses id %lld; do not repeat it blindly), then: %s",
                           zDest, o->zState, o->status, o->iResponseId, zWhy ? zWhy : "failed");
  sqlite3_free(zWhy);
}

int cr_test_record(cr_conn *pConn, const char *zDest, const char *zJson, char **pzResult,
                   char **pzErr) {
  cr_run *pRun = 0;
  cr_outcome *pOut = 0;
  int rc = cr_run_open(pConn, zDest, "test", 0, zJson, &pRun, pzErr);
  if (rc == SQLITE_OK) rc = cr_run_step(pRun, &pOut, pzErr);
  if (rc == SQLITE_OK && pOut == 0) {
    cr_set_error(pzErr, "destination \"%s\": the record made no request", zDest);
    rc = SQLITE_ERROR;
  }
  if (rc == SQLITE_OK) rc = cr_test_result(pConn->db, pOut, pzResult, pzErr);
  if (rc == SQLITE_OK) {
    /* One record makes one request: this step only ends the run. */
    cr_outcome *pNone = 0;
    rc = cr_run_step(pRun, &pNone, pzErr);
    cr_outcome_free(pNone);
  }
  if (rc != SQLITE_OK && pOut && strcmp(pOut->zState, "invalid") != 0) {
    cr_test_sent_error(zDest, pOut, pzErr);
  }
  cr_outcome_free(pOut);
  cr_run_close(pRun);
  return rc;
}
