/*
** callrail.c - entry point of the callrail SQLite extension.
**
** The extension sends the rows of a query to the CallRail REST API v3 and
** keeps every response in a table you can query:
**
**   .load ./callrail
**   SELECT callrail_credential('main', 'env:CALLRAIL_API_KEY');
**   SELECT callrail_destination('companies', json_object(
**     'credential', 'main',
**     'url', '/v3/a/{account_id}/companies.json',
**     'params', json_object('account_id', 'ACC...')));
**   SELECT * FROM callrail_preview('companies', 'SELECT name FROM shops');
**   SELECT callrail_activate('companies');
**   SELECT * FROM callrail_send('companies', 'SELECT name FROM shops');
**
** This file registers the SQL surface (table-driven, like sqlite-vec) and
** implements the configuration functions.  Every function that touches the
** network, reads the environment or files, or writes tables is registered
** SQLITE_DIRECTONLY, so that a view or trigger in a database file written
** by someone else can never make it send anything; callrail_version() alone
** is pure and SQLITE_INNOCUOUS.
**
** At load the extension switches a file database to WAL mode: the audit
** rows of a run are committed by a second connection while the user's
** statement is still reading, which a rollback journal would block.
*/
#include "cr_internal.h"
SQLITE_EXTENSION_INIT1

#include "callrail.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------------
** Per-connection state, shared by every function and module registered on
** one connection and freed when the last of them is destroyed.
*/
typedef struct cr_conn_ref {
  cr_conn *pConn;
  int nRef;
} cr_conn_ref;

void cr_conn_unref(void *pArg) {
  cr_conn *p = (cr_conn *)pArg;
  if (p == 0) return;
  if (--p->nRef > 0) return;
  cr_cred_forget_all(p);
  cr_http_free(p->pHttp);
  sqlite3_free(p);
}

/* ------------------------------------------------------------------------
** Helpers for the scalar functions
*/

/* Reports zErr (prefixed by the function's name) as the function's error. */
static void cr_fail(sqlite3_context *ctx, const char *zFunc, char *zErr, int rc) {
  char *zMsg = sqlite3_mprintf("%s: %s", zFunc, zErr ? zErr : "failed");
  sqlite3_result_error(ctx, zMsg, -1);
  if (rc != SQLITE_ERROR && rc != SQLITE_OK) sqlite3_result_error_code(ctx, rc);
  sqlite3_free(zMsg);
  sqlite3_free(zErr);
}

static cr_conn *cr_ctx_conn(sqlite3_context *ctx) {
  return (cr_conn *)sqlite3_user_data(ctx);
}

/* ------------------------------------------------------------------------
** callrail_version()
*/
static void cr_version_func(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  char *z;
  (void)argc;
  (void)argv;
  z = sqlite3_mprintf("callrail-sqlite %s (libcurl %s, SQLite %s)", CR_VERSION,
                      curl_version_info(CURLVERSION_NOW)->version, sqlite3_libversion());
  sqlite3_result_text(ctx, z, -1, sqlite3_free);
}

/* ------------------------------------------------------------------------
** callrail_credential(name, token_or_source [, api_base [, ca_file]])
*/
static int cr_credential_source(const char *zName, const char *zArg, const char **pzSource,
                                char **pzErr) {
  if (strncmp(zArg, "env:", 4) == 0 || strncmp(zArg, "file:", 5) == 0) {
    if (zArg[strncmp(zArg, "env:", 4) == 0 ? 4 : 5] == 0) {
      cr_set_error(pzErr, "credential \"%s\": \"%s\" names no variable or file", zName, zArg);
      return SQLITE_ERROR;
    }
    *pzSource = zArg;
    return SQLITE_OK;
  }
  if (cr_token_check(zName, zArg, pzErr) != SQLITE_OK) return SQLITE_ERROR;
  *pzSource = "memory";
  return SQLITE_OK;
}

static void cr_credential_func(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  cr_conn *pConn = cr_ctx_conn(ctx);
  char *zErr = 0;
  char *zBase = 0;
  const char *zSource = 0;
  sqlite3_stmt *pStmt = 0;
  const char *zName = cr_arg_text(argv[0], "credential name", &zErr);
  const char *zArg = zName ? cr_arg_text(argv[1], "token or source", &zErr) : 0;
  const char *zApi = CR_DEFAULT_API_BASE;
  const char *zCaFile = 0;
  int rc = zArg ? SQLITE_OK : SQLITE_ERROR;

  if (rc == SQLITE_OK && argc > 2 && sqlite3_value_type(argv[2]) != SQLITE_NULL) {
    zApi = cr_arg_text(argv[2], "api_base", &zErr);
    if (zApi == 0) rc = SQLITE_ERROR;
  }
  if (rc == SQLITE_OK && argc > 3 && sqlite3_value_type(argv[3]) != SQLITE_NULL) {
    zCaFile = cr_arg_text(argv[3], "ca_file", &zErr);
    if (zCaFile == 0) rc = SQLITE_ERROR;
    if (rc == SQLITE_OK && access(zCaFile, R_OK) != 0) {
      cr_set_error(&zErr, "credential \"%s\": cannot read ca_file %s: %s", zName, zCaFile,
                   strerror(errno));
      rc = SQLITE_ERROR;
    }
  }
  if (rc == SQLITE_OK) rc = cr_api_base_normalize(zName, zApi, &zBase, &zErr);
  if (rc == SQLITE_OK) rc = cr_schema_ensure(pConn, &zErr);
  if (rc == SQLITE_OK) rc = cr_credential_source(zName, zArg, &zSource, &zErr);
  if (rc == SQLITE_OK) {
    rc = cr_prepare(pConn->db,
                    "INSERT INTO callrail_credentials(name, source, api_base, ca_file)"
                    " VALUES(?1,?2,?3,?4) ON CONFLICT(name) DO UPDATE SET"
                    " source=excluded.source, api_base=excluded.api_base,"
                    " ca_file=excluded.ca_file",
                    &pStmt, &zErr);
  }
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(pStmt, 1, zName, -1, SQLITE_STATIC);
    sqlite3_bind_text(pStmt, 2, zSource, -1, SQLITE_STATIC);
    sqlite3_bind_text(pStmt, 3, zBase, -1, SQLITE_STATIC);
    sqlite3_bind_text(pStmt, 4, zCaFile, -1, SQLITE_STATIC);
    rc = cr_step_waiting(pConn->db, pStmt) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
    if (rc != SQLITE_OK)
      cr_set_error(&zErr, "cannot save credential: %s", sqlite3_errmsg(pConn->db));
  }
  /* What the user names here, in their own process, is what this
  ** connection may send the key to (cr_cred_load). */
  if (rc == SQLITE_OK) {
    rc = cr_cred_register(pConn, zName, zSource, zBase, zCaFile,
                          strcmp(zSource, "memory") == 0 ? zArg : 0);
  }
  sqlite3_finalize(pStmt);
  sqlite3_free(zBase);
  if (rc != SQLITE_OK) {
    cr_fail(ctx, "callrail_credential", zErr, rc);
  } else {
    sqlite3_result_text(ctx, zName, -1, SQLITE_TRANSIENT);
  }
}

/* ------------------------------------------------------------------------
** callrail_destination(name, config_json)
*/

/* What the config parser cannot know alone depends on the credential.
** An absolute template (url or update.url, named zKey) must have the
** credential's origin: the key is sent to no other host. */
static int cr_dest_check_origin(const cr_dest *pDest, const cr_cred *pCred, const char *zKey,
                                const char *zUrl, char **pzErr) {
  char *zErr = 0;
  int rc = zUrl && zUrl[0] != '/' ? cr_origin_check(pCred->zApiBase, zUrl, &zErr) : SQLITE_OK;
  if (rc != SQLITE_OK) {
    cr_set_error(pzErr, "destination \"%s\": key \"%s\": %s", pDest->zName, zKey, zErr);
  }
  sqlite3_free(zErr);
  return rc;
}

int cr_dest_check_cred(const cr_dest *pDest, const cr_cred *pCred, char **pzErr) {
  char *zErr = 0;
  int rc = cr_dest_check_origin(pDest, pCred, "url", pDest->zUrl, pzErr);
  if (rc == SQLITE_OK)
    rc = cr_dest_check_origin(pDest, pCred, "update.url", pDest->zUpdateUrl, pzErr);
  if (rc == SQLITE_OK && pDest->batchSize > 0 &&
      cr_origin_check(pCred->zApiBase, CR_DEFAULT_API_BASE "/", &zErr) == SQLITE_OK) {
    /* Measured: batch size 3 turned 3 texts into 5 failed POSTs. */
    cr_set_error(pzErr,
                 "destination \"%s\": key \"batch\": credential \"%s\" points at CallRail's "
                 "own API (%s), whose endpoints take one object per request: every batch "
                 "would be rejected and split, spending quota; batching is for proxies and "
                 "endpoints that take arrays",
                 pDest->zName, pCred->zName, CR_DEFAULT_API_BASE);
    rc = SQLITE_ERROR;
  }
  sqlite3_free(zErr);
  return rc;
}

/* The credential must exist, and the destination's rules that depend on it
** hold (see cr_dest_check_cred). */
static int cr_destination_check_cred(sqlite3 *db, const cr_dest *pDest, char **pzErr) {
  cr_cred *pCred = 0;
  char *zErr = 0;
  int rc = cr_cred_load_public(db, pDest->zCredential, &pCred, &zErr);
  if (rc != SQLITE_OK) {
    cr_set_error(pzErr, "destination \"%s\": key \"credential\": %s", pDest->zName, zErr);
  } else {
    rc = cr_dest_check_cred(pDest, pCred, pzErr);
  }
  sqlite3_free(zErr);
  cr_cred_free(pCred);
  return rc;
}

static void cr_destination_func(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  cr_conn *pConn = cr_ctx_conn(ctx);
  char *zErr = 0;
  cr_dest *pDest = 0;
  sqlite3_stmt *pStmt = 0;
  const char *zName = cr_arg_text(argv[0], "destination name", &zErr);
  const char *zConfig = 0;
  int rc = zName ? SQLITE_OK : SQLITE_ERROR;
  (void)argc;

  if (rc == SQLITE_OK) {
    char *zWhat = sqlite3_mprintf("destination \"%s\": config", zName);
    zConfig = cr_arg_text(argv[1], zWhat, &zErr);
    rc = zConfig ? SQLITE_OK : SQLITE_ERROR;
    sqlite3_free(zWhat);
  }
  if (rc == SQLITE_OK) rc = cr_schema_ensure(pConn, &zErr);
  if (rc == SQLITE_OK) rc = cr_dest_parse(pConn->db, zName, zConfig, &pDest, &zErr);
  if (rc == SQLITE_OK) rc = cr_destination_check_cred(pConn->db, pDest, &zErr);
  if (rc == SQLITE_OK) {
    rc = cr_prepare(pConn->db,
                    "INSERT INTO callrail_destinations(name, config) VALUES(?1, json(?2))"
                    " ON CONFLICT(name) DO UPDATE SET config=excluded.config,"
                    " updated_at=strftime('%Y-%m-%dT%H:%M:%fZ','now')",
                    &pStmt, &zErr);
  }
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(pStmt, 1, zName, -1, SQLITE_STATIC);
    sqlite3_bind_text(pStmt, 2, zConfig, -1, SQLITE_STATIC);
    rc = cr_step_waiting(pConn->db, pStmt) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
    if (rc != SQLITE_OK)
      cr_set_error(&zErr, "cannot save destination: %s", sqlite3_errmsg(pConn->db));
  }
  sqlite3_finalize(pStmt);
  cr_dest_free(pDest);
  if (rc != SQLITE_OK) {
    cr_fail(ctx, "callrail_destination", zErr, rc);
  } else {
    sqlite3_result_text(ctx, zName, -1, SQLITE_TRANSIENT);
  }
}

/* ------------------------------------------------------------------------
** callrail_activate(name) / callrail_deactivate(name)
*/
static void cr_set_active(sqlite3_context *ctx, sqlite3_value **argv, int bActive) {
  cr_conn *pConn = cr_ctx_conn(ctx);
  const char *zFunc = bActive ? "callrail_activate" : "callrail_deactivate";
  char *zErr = 0;
  sqlite3_stmt *pStmt = 0;
  const char *zName = cr_arg_text(argv[0], "destination name", &zErr);
  int rc = zName ? SQLITE_OK : SQLITE_ERROR;

  if (rc == SQLITE_OK) rc = cr_schema_ensure(pConn, &zErr);
  if (rc == SQLITE_OK) {
    rc = cr_prepare(pConn->db,
                    "UPDATE callrail_destinations SET active=?2,"
                    " updated_at=strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE name=?1",
                    &pStmt, &zErr);
  }
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(pStmt, 1, zName, -1, SQLITE_STATIC);
    sqlite3_bind_int(pStmt, 2, bActive);
    rc = cr_step_waiting(pConn->db, pStmt) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
    if (rc != SQLITE_OK) {
      cr_set_error(&zErr, "cannot update destination \"%s\": %s", zName, sqlite3_errmsg(pConn->db));
    } else if (sqlite3_changes(pConn->db) == 0) {
      cr_set_error(&zErr, "unknown destination \"%s\"", zName);
      rc = SQLITE_ERROR;
    }
  }
  sqlite3_finalize(pStmt);
  if (rc != SQLITE_OK) {
    cr_fail(ctx, zFunc, zErr, rc);
  } else {
    sqlite3_result_text(ctx, zName, -1, SQLITE_TRANSIENT);
  }
}

static void cr_activate_func(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc;
  cr_set_active(ctx, argv, 1);
}

static void cr_deactivate_func(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc;
  cr_set_active(ctx, argv, 0);
}

/* ------------------------------------------------------------------------
** callrail_test(destination, record_json): cr_send.c does the work.
*/
static void cr_test_func(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  cr_conn *pConn = cr_ctx_conn(ctx);
  char *zErr = 0;
  char *zResult = 0;
  const char *zDest = cr_arg_text(argv[0], "destination name", &zErr);
  const char *zJson = zDest ? cr_arg_text(argv[1], "record_json", &zErr) : 0;
  int rc = zJson ? SQLITE_OK : SQLITE_ERROR;
  (void)argc;

  if (rc == SQLITE_OK) rc = cr_schema_ensure(pConn, &zErr);
  if (rc == SQLITE_OK) rc = cr_test_record(pConn, zDest, zJson, &zResult, &zErr);
  if (rc != SQLITE_OK) {
    cr_fail(ctx, "callrail_test", zErr, rc);
  } else {
    sqlite3_result_text(ctx, zResult, -1, sqlite3_free);
    sqlite3_result_subtype(ctx, 'J');
  }
}

/* ------------------------------------------------------------------------
** callrail_resolve(response_id, outcome [, remote_id]): cr_resolve.c.
*/
static void cr_resolve_func(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  char *zErr = 0;
  const char *zState = 0;
  int rc = cr_resolve(cr_ctx_conn(ctx), argc, argv, &zState, &zErr);
  if (rc != SQLITE_OK) {
    cr_fail(ctx, "callrail_resolve", zErr, rc);
  } else {
    sqlite3_result_text(ctx, zState, -1, SQLITE_STATIC);
  }
}

/* ------------------------------------------------------------------------
** Registration
*/
#define CR_SIDE_EFFECTS (SQLITE_UTF8 | SQLITE_DIRECTONLY)
#define CR_PURE (SQLITE_UTF8 | SQLITE_INNOCUOUS | SQLITE_DETERMINISTIC)

static const struct {
  const char *zName;
  int nArg;
  int flags;
  void (*xFunc)(sqlite3_context *, int, sqlite3_value **);
} cr_functions[] = {
    {"callrail_version", 0, CR_PURE, cr_version_func},
    {"callrail_credential", 2, CR_SIDE_EFFECTS, cr_credential_func},
    {"callrail_credential", 3, CR_SIDE_EFFECTS, cr_credential_func},
    {"callrail_credential", 4, CR_SIDE_EFFECTS, cr_credential_func},
    {"callrail_destination", 2, CR_SIDE_EFFECTS, cr_destination_func},
    {"callrail_activate", 1, CR_SIDE_EFFECTS, cr_activate_func},
    {"callrail_deactivate", 1, CR_SIDE_EFFECTS, cr_deactivate_func},
    {"callrail_resolve", 2, CR_SIDE_EFFECTS, cr_resolve_func},
    {"callrail_resolve", 3, CR_SIDE_EFFECTS, cr_resolve_func},
    {"callrail_test", 2, CR_SIDE_EFFECTS | SQLITE_RESULT_SUBTYPE, cr_test_func},
    {"callrail_prune", -1, CR_SIDE_EFFECTS, cr_prune_func},
};

static int cr_register_functions(sqlite3 *db, cr_conn *pConn, char **pzErr) {
  int rc = SQLITE_OK;
  size_t i;
  for (i = 0; rc == SQLITE_OK && i < sizeof(cr_functions) / sizeof(cr_functions[0]); i++) {
    pConn->nRef++;
    rc = sqlite3_create_function_v2(db, cr_functions[i].zName, cr_functions[i].nArg,
                                    cr_functions[i].flags, pConn, cr_functions[i].xFunc, 0, 0,
                                    cr_conn_unref);
    if (rc != SQLITE_OK)
      cr_set_error(pzErr, "callrail: cannot register %s()", cr_functions[i].zName);
  }
  return rc;
}

/* WAL lets the audit connection commit while the user's statement reads
** (docs/design.md#durable-intent-the-second-connection).  In-memory and read-only databases keep
*their mode. */
static void cr_enable_wal(sqlite3 *db) {
  const char *zFile = sqlite3_db_filename(db, "main");
  if (zFile && zFile[0] && !sqlite3_db_readonly(db, "main")) {
    sqlite3_exec(db, "PRAGMA main.journal_mode=WAL", 0, 0, 0);
  }
}

CALLRAIL_EXPORT int sqlite3_callrail_init(sqlite3 *db, char **pzErrMsg,
                                          const sqlite3_api_routines *pApi) {
  int rc = SQLITE_OK;
  char *zErr = 0;
  cr_conn *pConn;
  SQLITE_EXTENSION_INIT2(pApi);

  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    cr_set_error(pzErrMsg, "callrail: libcurl failed to initialise");
    return SQLITE_ERROR;
  }
  pConn = sqlite3_malloc(sizeof(*pConn));
  if (pConn == 0) return SQLITE_NOMEM;
  memset(pConn, 0, sizeof(*pConn));
  pConn->db = db;
  pConn->nRef = 1;

  cr_enable_wal(db);
  rc = cr_register_functions(db, pConn, &zErr);
  if (rc == SQLITE_OK) rc = cr_register_preview(db, pConn, &zErr);
  if (rc == SQLITE_OK) rc = cr_register_send(db, pConn, &zErr);
  if (rc == SQLITE_OK) rc = cr_register_accounts(db, pConn, &zErr);
  if (rc == SQLITE_OK) rc = cr_register_get(db, pConn, &zErr);
  if (rc == SQLITE_OK && !sqlite3_db_readonly(db, "main")) {
    /* A failure here (say, a locked file) is retried at first use. */
    char *zIgnored = 0;
    cr_schema_ensure(pConn, &zIgnored);
    sqlite3_free(zIgnored);
  }
  cr_conn_unref(pConn);
  if (rc != SQLITE_OK) {
    if (pzErrMsg)
      *pzErrMsg = zErr;
    else
      sqlite3_free(zErr);
  }
  return rc;
}
