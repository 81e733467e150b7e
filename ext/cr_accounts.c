/*
** cr_accounts.c - callrail_accounts: the accounts an API key can see.
**
**   SELECT id, name, numeric_id FROM callrail_accounts('main');
**
** One GET {api_base}/v3/a.json per page of 250, through the same transport
** as every other request (origin pinned, no redirects).  The account id is
** what destination URLs need in /v3/a/{account_id}/...  The hidden column
** is `credential`.  This only reads, so it writes no audit rows, but it
** uses a key and the network and is SQLITE_VTAB_DIRECTONLY.
*/
#include "cr_internal.h"
SQLITE_EXTENSION_INIT3

#include <string.h>

typedef struct cr_accounts_cursor {
  cr_tvf_cursor base;  /* first: the shared part */
  sqlite3_stmt *pRows; /* json_each over the accounts of all pages */
  char *zAll;          /* JSON array of every account object */
  int eof;
} cr_accounts_cursor;

#define CR_ACCOUNTS_SCHEMA                                                                         \
  "CREATE TABLE x(id, name, numeric_id, outbound_recording_enabled, hipaa_account, json,"          \
  " credential HIDDEN)"
#define CR_ACCOUNTS_JSON 5
#define CR_ACCOUNTS_CREDENTIAL 6

/* Pages of accounts fetched at most; 250 per page, so 25,000 accounts. */
#define CR_ACCOUNTS_MAX_PAGES 100

static int cr_accounts_close(sqlite3_vtab_cursor *cur) {
  cr_accounts_cursor *pCur = (cr_accounts_cursor *)cur;
  sqlite3_finalize(pCur->pRows);
  sqlite3_free(pCur->zAll);
  sqlite3_free(pCur);
  return SQLITE_OK;
}

/* A destination-like config for GETs: default timeouts, no extra headers. */
static void cr_accounts_dest(cr_dest *pDest) {
  memset(pDest, 0, sizeof(*pDest));
  pDest->zName = "callrail_accounts";
  pDest->eMethod = CR_METHOD_GET;
  pDest->timeoutMs = 30000;
  pDest->connectTimeoutMs = 10000;
}

/* GETs one page; on success *pzBody is the response body. */
static int cr_accounts_page(cr_conn *pConn, const cr_cred *pCred, int iPage, char **pzBody,
                            char **pzErr) {
  cr_dest dest;
  cr_xfer x;
  char *zUrl = sqlite3_mprintf("%s/v3/a.json?per_page=250&page=%d", pCred->zApiBase, iPage);
  int rc = zUrl ? SQLITE_OK : SQLITE_NOMEM;
  cr_accounts_dest(&dest);
  memset(&x, 0, sizeof(x));
  x.eMethod = CR_METHOD_GET;
  x.zUrl = zUrl;
  x.pDest = &dest;
  x.pCred = pCred;
  if (rc == SQLITE_OK && pConn->pHttp == 0) rc = cr_http_new(&pConn->pHttp, pzErr);
  if (rc == SQLITE_OK) rc = cr_http_perform(pConn->pHttp, pConn->db, &x, pzErr);
  if (rc == SQLITE_OK && x.status != 200) {
    char *zWhy = x.status ? cr_response_error(pConn->db, x.status, x.zResponse) : 0;
    cr_set_error(pzErr, "GET /v3/a.json failed: %s", zWhy ? zWhy : x.zError);
    sqlite3_free(zWhy);
    rc = SQLITE_ERROR;
  }
  if (rc == SQLITE_OK) {
    *pzBody = x.zResponse;
    x.zResponse = 0;
  }
  cr_xfer_clear(&x);
  sqlite3_free(zUrl);
  return rc;
}

/* Fetches every page and gathers the accounts into one JSON array. */
static int cr_accounts_fetch(cr_conn *pConn, const cr_cred *pCred, char **pzAll, char **pzErr) {
  sqlite3_stmt *pJoin = 0;
  int iPage, nPages = 1;
  int rc = cr_prepare(pConn->db,
                      "SELECT (SELECT json_group_array(json(value)) FROM"
                      "  (SELECT value FROM json_each(?1)"
                      "   UNION ALL SELECT value FROM json_each(?2, '$.accounts'))),"
                      " coalesce(json_extract(?2, '$.total_pages'), 1)",
                      &pJoin, pzErr);
  *pzAll = cr_strdup("[]");
  for (iPage = 1; rc == SQLITE_OK && iPage <= nPages && iPage <= CR_ACCOUNTS_MAX_PAGES; iPage++) {
    char *zBody = 0;
    rc = cr_accounts_page(pConn, pCred, iPage, &zBody, pzErr);
    if (rc == SQLITE_OK) {
      sqlite3_bind_text(pJoin, 1, *pzAll, -1, SQLITE_STATIC);
      sqlite3_bind_text(pJoin, 2, zBody, -1, SQLITE_STATIC);
      if (sqlite3_step(pJoin) == SQLITE_ROW) {
        char *zNew = cr_strdup((const char *)sqlite3_column_text(pJoin, 0));
        nPages = sqlite3_column_int(pJoin, 1);
        sqlite3_free(*pzAll);
        *pzAll = zNew;
      } else {
        cr_set_error(pzErr, "GET /v3/a.json returned no accounts list: %s",
                     sqlite3_errmsg(pConn->db));
        rc = SQLITE_ERROR;
      }
      sqlite3_reset(pJoin);
    }
    sqlite3_free(zBody);
  }
  sqlite3_finalize(pJoin);
  return rc;
}

static int cr_accounts_next(sqlite3_vtab_cursor *cur) {
  cr_accounts_cursor *pCur = (cr_accounts_cursor *)cur;
  pCur->eof = sqlite3_step(pCur->pRows) != SQLITE_ROW;
  pCur->base.iRowid++;
  return SQLITE_OK;
}

/* idxNum bit 1: the credential is argv[0]. */
static int cr_accounts_filter(sqlite3_vtab_cursor *cur, int idxNum, const char *idxStr, int argc,
                              sqlite3_value **argv) {
  cr_accounts_cursor *pCur = (cr_accounts_cursor *)cur;
  cr_conn *pConn = ((cr_tvf *)cur->pVtab)->pConn;
  cr_cred *pCred = 0;
  char *zErr = 0;
  int rc;
  (void)idxNum, (void)idxStr, (void)argc;
  sqlite3_finalize(pCur->pRows);
  sqlite3_free(pCur->zAll);
  pCur->pRows = 0;
  pCur->zAll = 0;
  const char *azArg[1] = {0};
  if (cr_tvf_args(cur, idxNum, argv, azArg) != SQLITE_OK) return SQLITE_ERROR;
  rc = cr_schema_ensure(pConn, &zErr);
  if (rc == SQLITE_OK) rc = cr_cred_load(pConn->db, pConn, azArg[0], &pCred, &zErr);
  if (rc == SQLITE_OK) rc = cr_accounts_fetch(pConn, pCred, &pCur->zAll, &zErr);
  if (rc == SQLITE_OK) {
    rc = cr_prepare(pConn->db,
                    "SELECT json_extract(value,'$.id'), json_extract(value,'$.name'),"
                    " json_extract(value,'$.numeric_id'),"
                    " json_extract(value,'$.outbound_recording_enabled'),"
                    " json_extract(value,'$.hipaa_account'), value FROM json_each(?1)",
                    &pCur->pRows, &zErr);
  }
  cr_cred_free(pCred);
  if (rc != SQLITE_OK) return cr_tvf_error(cur, zErr, rc);
  sqlite3_bind_text(pCur->pRows, 1, pCur->zAll, -1, SQLITE_STATIC);
  pCur->base.iRowid = 0;
  return cr_accounts_next(cur);
}

static int cr_accounts_eof(sqlite3_vtab_cursor *cur) {
  return ((cr_accounts_cursor *)cur)->eof;
}

static int cr_accounts_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int i) {
  cr_accounts_cursor *pCur = (cr_accounts_cursor *)cur;
  if (i <= CR_ACCOUNTS_JSON) {
    sqlite3_result_value(ctx, sqlite3_column_value(pCur->pRows, i));
    if (i == CR_ACCOUNTS_JSON) sqlite3_result_subtype(ctx, 'J');
  }
  return SQLITE_OK;
}

static const cr_tvf_def cr_accounts_def = {"callrail_accounts",
                                           CR_ACCOUNTS_SCHEMA,
                                           sizeof(cr_accounts_cursor),
                                           CR_ACCOUNTS_CREDENTIAL,
                                           1,
                                           1,
                                           {"credential name"}};

/* The table-valued function's module.  Designated initialisers leave
** every slot not named here NULL, whatever SQLite's headers add (3.44
** added xIntegrity): callrail_accounts is eponymous-only, read-only and has no
** transactions, so xCreate, xDestroy, xUpdate .. xIntegrity stay NULL. */
static sqlite3_module cr_accounts_module = {
    .iVersion = 0,                    /* no xSavepoint and later slots */
    .xConnect = cr_tvf_connect,       /* shared skeleton (cr_vtab.c) */
    .xBestIndex = cr_tvf_best_index,  /* arguments by HIDDEN column */
    .xDisconnect = cr_tvf_disconnect, /* frees the vtab */
    .xOpen = cr_tvf_open,             /* a cursor of the def's size */
    .xClose = cr_accounts_close,      /* this module's cursor */
    .xFilter = cr_accounts_filter,    /* does the work of one call */
    .xNext = cr_accounts_next,        /* the next result row */
    .xEof = cr_accounts_eof,          /* no more rows */
    .xColumn = cr_accounts_column,    /* one result column */
    .xRowid = cr_tvf_rowid,           /* the row counter */
};

int cr_register_accounts(sqlite3 *db, cr_conn *pConn, char **pzErr) {
  return cr_tvf_register(db, pConn, &cr_accounts_def, &cr_accounts_module, pzErr);
}
