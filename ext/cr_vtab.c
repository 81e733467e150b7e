/*
** cr_vtab.c - the skeleton shared by the extension's table-valued
** functions (callrail_preview, callrail_send, callrail_accounts).
**
** Each is an eponymous-only virtual table whose arguments are HIDDEN
** columns.  They all read the user's tables or use the network, so every
** one is SQLITE_VTAB_DIRECTONLY: a view or trigger in a database file
** cannot call them.
*/
#include "cr_internal.h"
SQLITE_EXTENSION_INIT3

#include <string.h>

/* What a module's registration hands to its xConnect. */
typedef struct cr_tvf_aux {
  cr_conn *pConn;
  const cr_tvf_def *pDef;
} cr_tvf_aux;

static void cr_tvf_aux_free(void *p) {
  cr_conn_unref(((cr_tvf_aux *)p)->pConn);
  sqlite3_free(p);
}

int cr_tvf_connect(sqlite3 *db, void *pAux, int argc, const char *const *argv,
                   sqlite3_vtab **ppVtab, char **pzErr) {
  const cr_tvf_aux *pA = (const cr_tvf_aux *)pAux;
  cr_tvf *pNew;
  int rc = sqlite3_declare_vtab(db, pA->pDef->zSchema);
  (void)argc, (void)argv, (void)pzErr;
  if (rc != SQLITE_OK) return rc;
  sqlite3_vtab_config(db, SQLITE_VTAB_DIRECTONLY);
  pNew = sqlite3_malloc(sizeof(*pNew));
  if (pNew == 0) return SQLITE_NOMEM;
  memset(pNew, 0, sizeof(*pNew));
  pNew->pConn = pA->pConn;
  pNew->pDef = pA->pDef;
  *ppVtab = &pNew->base;
  return SQLITE_OK;
}

int cr_tvf_disconnect(sqlite3_vtab *pVtab) {
  sqlite3_free(pVtab);
  return SQLITE_OK;
}

int cr_tvf_open(sqlite3_vtab *pVtab, sqlite3_vtab_cursor **ppCursor) {
  size_t nByte = ((cr_tvf *)pVtab)->pDef->nCursor;
  sqlite3_vtab_cursor *pCur = sqlite3_malloc64(nByte);
  if (pCur == 0) return SQLITE_NOMEM;
  memset(pCur, 0, nByte);
  *ppCursor = pCur;
  return SQLITE_OK;
}

int cr_tvf_rowid(sqlite3_vtab_cursor *cur, sqlite_int64 *pRowid) {
  *pRowid = ((cr_tvf_cursor *)cur)->iRowid;
  return SQLITE_OK;
}

int cr_tvf_error(sqlite3_vtab_cursor *cur, char *zErr, int rc) {
  cr_set_error(&cur->pVtab->zErrMsg, "%s: %s", ((cr_tvf *)cur->pVtab)->pDef->zName,
               zErr ? zErr : "failed");
  sqlite3_free(zErr);
  return rc;
}

/*
** The arguments are EQ constraints on the hidden columns.  idxNum bit i
** says argument i is present; xFilter's argv[] holds the present ones in
** order.
*/
int cr_tvf_best_index(sqlite3_vtab *pVtab, sqlite3_index_info *pInfo) {
  const cr_tvf_def *pDef = ((cr_tvf *)pVtab)->pDef;
  int aIdx[4] = {-1, -1, -1, -1};
  int i, n = 0, idxNum = 0;
  for (i = 0; i < pInfo->nConstraint; i++) {
    const struct sqlite3_index_constraint *pC = &pInfo->aConstraint[i];
    int iHidden = pC->iColumn - pDef->iFirstHidden;
    if (iHidden < 0 || iHidden >= pDef->nHidden || pC->op != SQLITE_INDEX_CONSTRAINT_EQ) continue;
    if (!pC->usable) return SQLITE_CONSTRAINT;
    aIdx[iHidden] = i;
  }
  for (i = 0; i < pDef->nHidden; i++) {
    if (aIdx[i] < 0) continue;
    idxNum |= 1 << i;
    pInfo->aConstraintUsage[aIdx[i]].argvIndex = ++n;
    pInfo->aConstraintUsage[aIdx[i]].omit = 1;
  }
  pInfo->idxNum = idxNum;
  /* A plan without the required arguments is a last resort (a WHERE with
  ** OR makes SQLite try some); if chosen, xFilter names what is missing. */
  i = (idxNum & ((1 << pDef->nRequired) - 1)) == (1 << pDef->nRequired) - 1;
  pInfo->estimatedCost = i ? 1000 : 1e300;
  pInfo->estimatedRows = i ? 1000 : 2147483647;
  return SQLITE_OK;
}

int cr_tvf_args(sqlite3_vtab_cursor *cur, int idxNum, sqlite3_value **argv, const char **azText) {
  const cr_tvf_def *pDef = ((cr_tvf *)cur->pVtab)->pDef;
  char *zErr = 0;
  int i;
  for (i = 0; i < pDef->nRequired; i++) {
    if ((idxNum & (1 << i)) == 0) {
      zErr = sqlite3_mprintf("argument %d (%s) is missing", i + 1, pDef->azArg[i]);
      return cr_tvf_error(cur, zErr, SQLITE_ERROR);
    }
    azText[i] = cr_arg_text(argv[i], pDef->azArg[i], &zErr);
    if (azText[i] == 0) return cr_tvf_error(cur, zErr, SQLITE_ERROR);
  }
  return SQLITE_OK;
}

int cr_tvf_register(sqlite3 *db, cr_conn *pConn, const cr_tvf_def *pDef, const sqlite3_module *pMod,
                    char **pzErr) {
  cr_tvf_aux *pAux = sqlite3_malloc(sizeof(*pAux));
  int rc;
  if (pAux == 0) return SQLITE_NOMEM;
  pAux->pConn = pConn;
  pAux->pDef = pDef;
  pConn->nRef++;
  rc = sqlite3_create_module_v2(db, pDef->zName, pMod, pAux, cr_tvf_aux_free);
  if (rc != SQLITE_OK) cr_set_error(pzErr, "callrail: cannot register %s", pDef->zName);
  return rc;
}
