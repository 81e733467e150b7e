/*
** cr_keyset.c - a set of text keys that may grow past memory.
**
** A run remembers the keys it has seen (to refuse duplicates) and the keys
** whose last request is unresolved (not to resend them).  Either set can
** hold millions of keys, so it lives in a private temporary database (an
** empty file name): SQLite keeps a small page cache and spills the rest to
** a temporary file, and memory stays bounded whatever the number of keys.
*/
#include "cr_internal.h"
SQLITE_EXTENSION_INIT3

#include <string.h>

struct cr_keyset {
  sqlite3 *db;
  sqlite3_stmt *pAdd;
  sqlite3_stmt *pHas;
};

int cr_keyset_open(cr_keyset **pp, char **pzErr) {
  cr_keyset *p = sqlite3_malloc(sizeof(*p));
  int rc;
  *pp = p;
  if (p == 0) return SQLITE_NOMEM;
  memset(p, 0, sizeof(*p));
  rc = sqlite3_open_v2("", &p->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, 0);
  if (rc == SQLITE_OK) {
    rc = cr_exec(p->db,
                 "PRAGMA cache_size=-1024; PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
                 "CREATE TABLE k(k TEXT PRIMARY KEY) WITHOUT ROWID",
                 pzErr);
  }
  if (rc == SQLITE_OK)
    rc = cr_prepare(p->db, "INSERT OR IGNORE INTO k VALUES(?1)", &p->pAdd, pzErr);
  if (rc == SQLITE_OK) rc = cr_prepare(p->db, "SELECT 1 FROM k WHERE k=?1", &p->pHas, pzErr);
  if (rc != SQLITE_OK) {
    cr_keyset_close(p);
    *pp = 0;
  }
  return rc;
}

void cr_keyset_close(cr_keyset *p) {
  if (p) {
    sqlite3_finalize(p->pAdd);
    sqlite3_finalize(p->pHas);
    sqlite3_close(p->db);
    sqlite3_free(p);
  }
}

int cr_keyset_add(cr_keyset *p, const char *zKey, int *pNew, char **pzErr) {
  int rc;
  sqlite3_bind_text(p->pAdd, 1, zKey, -1, SQLITE_STATIC);
  rc = sqlite3_step(p->pAdd) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
  if (rc != SQLITE_OK) cr_set_error(pzErr, "cannot track keys: %s", sqlite3_errmsg(p->db));
  *pNew = rc == SQLITE_OK && sqlite3_changes(p->db) > 0;
  sqlite3_reset(p->pAdd);
  return rc;
}

int cr_keyset_has(cr_keyset *p, const char *zKey) {
  int has;
  sqlite3_bind_text(p->pHas, 1, zKey, -1, SQLITE_STATIC);
  has = sqlite3_step(p->pHas) == SQLITE_ROW;
  sqlite3_reset(p->pHas);
  return has;
}
