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

int cr_tvf_connect(sqlite3 *db, void *pAux, const char *zSchema, sqlite3_vtab **ppVtab) {
  cr_tvf *pNew;
  int rc = sqlite3_declare_vtab(db, zSchema);
  if (rc != SQLITE_OK) return rc;
  sqlite3_vtab_config(db, SQLITE_VTAB_DIRECTONLY);
  pNew = sqlite3_malloc(sizeof(*pNew));
  if (pNew == 0) return SQLITE_NOMEM;
  memset(pNew, 0, sizeof(*pNew));
  pNew->pConn = (cr_conn *)pAux;
  *ppVtab = &pNew->base;
  return SQLITE_OK;
}

int cr_tvf_disconnect(sqlite3_vtab *pVtab) {
  sqlite3_free(pVtab);
  return SQLITE_OK;
}

int cr_tvf_cursor_new(size_t nByte, sqlite3_vtab_cursor **ppCursor) {
  sqlite3_vtab_cursor *pCur = sqlite3_malloc64(nByte);
  if (pCur == 0) return SQLITE_NOMEM;
  memset(pCur, 0, nByte);
  *ppCursor = pCur;
  return SQLITE_OK;
}

/* Reports zErr, prefixed with the function's name, as the vtab's error;
** zErr is freed. */
int cr_tvf_error(sqlite3_vtab_cursor *cur, const char *zFunc, char *zErr, int rc) {
  cr_set_error(&cur->pVtab->zErrMsg, "%s: %s", zFunc, zErr ? zErr : "failed");
  sqlite3_free(zErr);
  return rc;
}

int cr_tvf_best_index(sqlite3_vtab *pVtab, sqlite3_index_info *pInfo, const char *zFunc,
                      int iFirstHidden, int nHidden, int nRequired) {
  int aIdx[4] = {-1, -1, -1, -1};
  int i, n = 0, idxNum = 0;
  for (i = 0; i < pInfo->nConstraint; i++) {
    const struct sqlite3_index_constraint *pC = &pInfo->aConstraint[i];
    int iHidden = pC->iColumn - iFirstHidden;
    if (iHidden < 0 || iHidden >= nHidden || pC->op != SQLITE_INDEX_CONSTRAINT_EQ) continue;
    if (!pC->usable) return SQLITE_CONSTRAINT;
    aIdx[iHidden] = i;
  }
  for (i = 0; i < nHidden; i++) {
    if (aIdx[i] < 0) {
      if (i < nRequired) {
        cr_set_error(&pVtab->zErrMsg, "%s: argument %d is missing", zFunc, i + 1);
        return SQLITE_ERROR;
      }
      continue;
    }
    idxNum |= 1 << i;
    pInfo->aConstraintUsage[aIdx[i]].argvIndex = ++n;
    pInfo->aConstraintUsage[aIdx[i]].omit = 1;
  }
  pInfo->idxNum = idxNum;
  pInfo->estimatedCost = 1000;
  pInfo->estimatedRows = 1000;
  return SQLITE_OK;
}

int cr_tvf_register(sqlite3 *db, cr_conn *pConn, const char *zName, const sqlite3_module *pMod,
                    char **pzErr) {
  int rc;
  pConn->nRef++;
  rc = sqlite3_create_module_v2(db, zName, pMod, pConn, cr_conn_unref);
  if (rc != SQLITE_OK) cr_set_error(pzErr, "callrail: cannot register %s", zName);
  return rc;
}
