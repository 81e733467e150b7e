/*
** cr_accounts.c - callrail_accounts: the accounts an API key can see.
**
**   SELECT id, name, numeric_id FROM callrail_accounts('main');
**
** GET {api_base}/v3/a.json, 250 accounts per page, every page, through the
** pager of callrail_get (cr_get.c): one page in memory at a time, rows
** handed out as they arrive, same transport (origin pinned, no redirects)
** and retries.  The account id is what destination URLs need in
** /v3/a/{account_id}/...  The hidden column is `credential`.  The account
** list is not an account's request (CallRail's quota is per account), so
** it is not paced and writes no audit rows; it uses a key and the network
** and is SQLITE_VTAB_DIRECTONLY.
*/
#include "cr_internal.h"
SQLITE_EXTENSION_INIT3

#define CR_ACCOUNTS_SCHEMA                                                                         \
  "CREATE TABLE x(id, name, numeric_id, outbound_recording_enabled, hipaa_account, json,"          \
  " credential HIDDEN)"
#define CR_ACCOUNTS_JSON 5
#define CR_ACCOUNTS_CREDENTIAL 6

/* The pager's columns after the account object itself (its column 0),
** in the order of the schema above. */
#define CR_ACCOUNTS_COLS                                                                           \
  "json_extract(value,'$.id'), json_extract(value,'$.name'), json_extract(value,'$.numeric_id'),"  \
  " json_extract(value,'$.outbound_recording_enabled'), json_extract(value,'$.hipaa_account')"

/* idxNum bit 1: the credential is argv[0]. */
static int cr_accounts_filter(sqlite3_vtab_cursor *cur, int idxNum, const char *idxStr, int argc,
                              sqlite3_value **argv) {
  const char *azArg[1] = {0};
  (void)idxStr, (void)argc;
  ((cr_pager_cursor *)cur)->eof = 1;
  if (cr_tvf_args(cur, idxNum, argv, azArg) != SQLITE_OK) return SQLITE_ERROR;
  return cr_pager_cursor_start(cur, azArg[0], "/v3/a.json", 0, "accounts", CR_ACCOUNTS_COLS, 0);
}

static int cr_accounts_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int i) {
  cr_pager *p = ((cr_pager_cursor *)cur)->pPager;
  if (i == CR_ACCOUNTS_JSON) {
    sqlite3_result_value(ctx, cr_pager_value(p, 0));
    sqlite3_result_subtype(ctx, 'J');
  } else if (i < CR_ACCOUNTS_JSON) {
    sqlite3_result_value(ctx, cr_pager_value(p, i + 1));
  }
  return SQLITE_OK;
}

static const cr_tvf_def cr_accounts_def = {
    "callrail_accounts", CR_ACCOUNTS_SCHEMA, sizeof(cr_pager_cursor), CR_ACCOUNTS_CREDENTIAL, 1, 1,
    {"credential name"}};

static sqlite3_module cr_accounts_module = {
    .iVersion = 0,                    /* no xSavepoint and later slots needed */
    .xCreate = 0,                     /* eponymous only: no CREATE VIRTUAL TABLE */
    .xConnect = cr_tvf_connect,       /* declares the schema, DIRECTONLY */
    .xBestIndex = cr_tvf_best_index,  /* the argument as an EQ constraint */
    .xDisconnect = cr_tvf_disconnect, /* frees the vtab */
    .xDestroy = 0,                    /* eponymous only */
    .xOpen = cr_tvf_open,             /* a zeroed cr_pager_cursor */
    .xClose = cr_pager_cursor_close,  /* ends the read */
    .xFilter = cr_accounts_filter,    /* fetches the first page */
    .xNext = cr_pager_cursor_next,    /* the next account, fetching pages */
    .xEof = cr_pager_cursor_eof,      /* after the last page */
    .xColumn = cr_accounts_column,    /* from the account object */
    .xRowid = cr_tvf_rowid,           /* 1, 2, ... */
    .xUpdate = 0,                     /* read-only */
    .xBegin = 0,                      /* no transactions */
    .xSync = 0,                       /* no transactions */
    .xCommit = 0,                     /* no transactions */
    .xRollback = 0,                   /* no transactions */
    .xFindFunction = 0,               /* no overloaded functions */
    .xRename = 0,                     /* cannot be renamed */
    .xSavepoint = 0,                  /* iVersion 2: none */
    .xRelease = 0,                    /* iVersion 2: none */
    .xRollbackTo = 0,                 /* iVersion 2: none */
    .xShadowName = 0,                 /* iVersion 3: no shadow tables */
};

int cr_register_accounts(sqlite3 *db, cr_conn *pConn, char **pzErr) {
  return cr_tvf_register(db, pConn, &cr_accounts_def, &cr_accounts_module, pzErr);
}
