/*
** cr_preview.c - callrail_preview: the requests a send would make, with
** nothing sent.
**
**   SELECT batch, method, url, body
**     FROM callrail_preview('companies', 'SELECT name FROM shops', 10);
**
** The table-valued function has the hidden columns destination, query and
** limit (the first two required).  Requests are built by the same pipeline
** as callrail_send (cr_pipeline), from the same records and with the same
** change detection (`key`), so what the preview shows is what a send would
** send, for an active destination or not.  An invalid
** record shows as a row with `error` set.  The Authorization header is
** shown as Token token="***": previews never see the key.
**
** It reads the user's tables and the credential's api_base, so it is
** SQLITE_VTAB_DIRECTONLY like every function of this extension with an
** effect outside the statement.
*/
#include "cr_internal.h"
SQLITE_EXTENSION_INIT3

#include <string.h>

typedef struct cr_preview_cursor {
  cr_tvf_cursor base; /* first: the shared part */
  cr_dest *pDest;
  cr_pipeline *pPipe;
  char *zHeadersBody;   /* headers of a request with a body, as JSON */
  char *zHeadersNoBody; /* headers of a DELETE, as JSON */
  cr_request *pReq;     /* the current row */
  sqlite3_int64 nLimit; /* rows left to show; -1: no limit */
} cr_preview_cursor;

#define CR_PREVIEW_SCHEMA                                                                          \
  "CREATE TABLE x(batch, records, method, url, headers, body, error, state, record_key,"           \
  " destination HIDDEN, query HIDDEN, \"limit\" HIDDEN)"
#define CR_PREVIEW_BATCH 0
#define CR_PREVIEW_RECORDS 1
#define CR_PREVIEW_METHOD 2
#define CR_PREVIEW_URL 3
#define CR_PREVIEW_HEADERS 4
#define CR_PREVIEW_BODY 5
#define CR_PREVIEW_ERROR 6
#define CR_PREVIEW_STATE 7
#define CR_PREVIEW_RECORD_KEY 8
#define CR_PREVIEW_DESTINATION 9
#define CR_PREVIEW_QUERY 10
#define CR_PREVIEW_LIMIT 11

static void cr_preview_reset(cr_preview_cursor *pCur) {
  cr_request_free(pCur->pReq);
  cr_pipeline_close(pCur->pPipe);
  cr_dest_free(pCur->pDest);
  sqlite3_free(pCur->zHeadersBody);
  sqlite3_free(pCur->zHeadersNoBody);
  pCur->pReq = 0;
  pCur->pPipe = 0;
  pCur->pDest = 0;
  pCur->zHeadersBody = pCur->zHeadersNoBody = 0;
}

static int cr_preview_close(sqlite3_vtab_cursor *cur) {
  cr_preview_reset((cr_preview_cursor *)cur);
  sqlite3_free(cur);
  return SQLITE_OK;
}

static int cr_preview_next(sqlite3_vtab_cursor *cur) {
  cr_preview_cursor *pCur = (cr_preview_cursor *)cur;
  char *zErr = 0;
  int rc = SQLITE_OK;
  cr_request_free(pCur->pReq);
  pCur->pReq = 0;
  if (pCur->nLimit == 0) return SQLITE_OK;
  rc = cr_pipeline_next(pCur->pPipe, &pCur->pReq, &zErr);
  if (pCur->nLimit > 0) pCur->nLimit--;
  pCur->base.iRowid++;
  return rc == SQLITE_OK ? SQLITE_OK : cr_tvf_error(cur, zErr, rc);
}

/*
** idxNum bits: 1 = destination, 2 = query, 4 = limit; argv[] holds their
** values in that order.
*/
static int cr_preview_filter(sqlite3_vtab_cursor *cur, int idxNum, const char *idxStr, int argc,
                             sqlite3_value **argv) {
  cr_preview_cursor *pCur = (cr_preview_cursor *)cur;
  cr_conn *pConn = ((cr_tvf *)cur->pVtab)->pConn;
  cr_cred *pCred = 0;
  char *zErr = 0;
  const char *azArg[2] = {0, 0};
  int rc = cr_tvf_args(cur, idxNum, argv, azArg);
  (void)idxStr;

  cr_preview_reset(pCur);
  if (rc != SQLITE_OK) return rc;
  pCur->nLimit =
      argc > 2 && sqlite3_value_type(argv[2]) != SQLITE_NULL ? sqlite3_value_int64(argv[2]) : -1;
  if (pCur->nLimit < 0) pCur->nLimit = -1; /* negative: no limit, as SQL's LIMIT */
  rc = cr_schema_ensure(pConn, &zErr);
  if (rc == SQLITE_OK) rc = cr_dest_load(pConn->db, azArg[0], &pCur->pDest, 0, &zErr);
  if (rc == SQLITE_OK) rc = cr_cred_load_public(pConn->db, pCur->pDest->zCredential, &pCred, &zErr);
  if (rc == SQLITE_OK) rc = cr_dest_check_cred(pCur->pDest, pCred, &zErr);
  if (rc == SQLITE_OK) {
    rc =
        cr_pipeline_open(pConn->db, pCur->pDest, pCred->zApiBase, azArg[1], 0, &pCur->pPipe, &zErr);
  }
  if (rc == SQLITE_OK) rc = cr_pipeline_detect_changes(pCur->pPipe, pConn->db, &zErr);
  if (rc == SQLITE_OK) {
    pCur->zHeadersBody = cr_headers_json(pConn->db, pCur->pDest, 1);
    pCur->zHeadersNoBody = cr_headers_json(pConn->db, pCur->pDest, 0);
  }
  cr_cred_free(pCred);
  if (rc != SQLITE_OK) return cr_tvf_error(cur, zErr, rc);
  pCur->base.iRowid = 0;
  return cr_preview_next(cur);
}

static int cr_preview_eof(sqlite3_vtab_cursor *cur) {
  return ((cr_preview_cursor *)cur)->pReq == 0;
}

/* What a send would do with the row: send it, or not (invalid, or a
** delivered record that changed and sync "new" leaves alone). */
static const char *cr_preview_state(const cr_request *pReq) {
  return pReq->isChanged ? "changed" : pReq->zError ? "invalid" : "send";
}

static int cr_preview_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int i) {
  cr_preview_cursor *pCur = (cr_preview_cursor *)cur;
  const cr_request *pReq = pCur->pReq;
  if (pReq->isChanged && i >= CR_PREVIEW_METHOD && i <= CR_PREVIEW_BODY) return SQLITE_OK;
  switch (i) {
  case CR_PREVIEW_BATCH:
    if (pReq->iBatch > 0) sqlite3_result_int64(ctx, pReq->iBatch);
    break;
  case CR_PREVIEW_RECORDS:
    sqlite3_result_int(ctx, pReq->nRecords);
    break;
  case CR_PREVIEW_METHOD:
    sqlite3_result_text(ctx, cr_method_names[pReq->eMethod], -1, SQLITE_STATIC);
    break;
  case CR_PREVIEW_URL:
    sqlite3_result_text(ctx, pReq->zUrl, -1, SQLITE_TRANSIENT);
    break;
  case CR_PREVIEW_HEADERS:
    sqlite3_result_text(ctx, pReq->zBody ? pCur->zHeadersBody : pCur->zHeadersNoBody, -1,
                        SQLITE_TRANSIENT);
    sqlite3_result_subtype(ctx, 'J');
    break;
  case CR_PREVIEW_BODY:
    sqlite3_result_text(ctx, pReq->zBody, -1, SQLITE_TRANSIENT);
    if (pReq->zBody && pReq->zError == 0) sqlite3_result_subtype(ctx, 'J');
    break;
  case CR_PREVIEW_ERROR:
    sqlite3_result_text(ctx, pReq->zError, -1, SQLITE_TRANSIENT);
    break;
  case CR_PREVIEW_STATE:
    sqlite3_result_text(ctx, cr_preview_state(pReq), -1, SQLITE_STATIC);
    break;
  case CR_PREVIEW_RECORD_KEY:
    sqlite3_result_text(ctx, pReq->zRecordKey, -1, SQLITE_TRANSIENT);
    break;
  default:
    break; /* hidden columns read back as NULL */
  }
  return SQLITE_OK;
}

static const cr_tvf_def cr_preview_def = {"callrail_preview",
                                          CR_PREVIEW_SCHEMA,
                                          sizeof(cr_preview_cursor),
                                          CR_PREVIEW_DESTINATION,
                                          3,
                                          2,
                                          {"destination name", "query", "limit"}};

/* The table-valued function's module.  Designated initialisers leave
** every slot not named here NULL, whatever SQLite's headers add (3.44
** added xIntegrity): callrail_preview is eponymous-only, read-only and has no
** transactions, so xCreate, xDestroy, xUpdate .. xIntegrity stay NULL. */
static sqlite3_module cr_preview_module = {
    .iVersion = 0,                    /* no xSavepoint and later slots */
    .xConnect = cr_tvf_connect,       /* shared skeleton (cr_vtab.c) */
    .xBestIndex = cr_tvf_best_index,  /* arguments by HIDDEN column */
    .xDisconnect = cr_tvf_disconnect, /* frees the vtab */
    .xOpen = cr_tvf_open,             /* a cursor of the def's size */
    .xClose = cr_preview_close,       /* this module's cursor */
    .xFilter = cr_preview_filter,     /* does the work of one call */
    .xNext = cr_preview_next,         /* the next result row */
    .xEof = cr_preview_eof,           /* no more rows */
    .xColumn = cr_preview_column,     /* one result column */
    .xRowid = cr_tvf_rowid,           /* the row counter */
};

int cr_register_preview(sqlite3 *db, cr_conn *pConn, char **pzErr) {
  return cr_tvf_register(db, pConn, &cr_preview_def, &cr_preview_module, pzErr);
}
