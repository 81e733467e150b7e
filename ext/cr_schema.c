/*
** cr_schema.c - the extension's tables: created, checked and upgraded.
**
** A database file outlives the extension that made it: a file written by
** 0.1.0 is opened by 0.2.0, and a file from someone else may hold anything
** under our names.  So at load (and at first use, if the file was locked or
** read-only then) the extension:
**
**   1. reads the schema version: callrail_meta.schema_version, or 1 for a
**      file that has our tables but no callrail_meta (0.1.0 made it), or 0
**      for a file without them;
**   2. creates the tables (version 0, sql/schema.sql) or runs the upgrade
**      scripts from that version on (sql/migrations/NNN.sql, compiled in),
**      inside one write transaction that reads the version again under its
**      lock, so two processes loading at once upgrade once;
**   3. refuses a file whose version is newer than this build knows, and a
**      file where a callrail_* name is a view rather than our table (the
**      audit must not be written through something that can hide rows).
**
** PRAGMA user_version is left alone: it belongs to the application.
*/
#include "cr_internal.h"
SQLITE_EXTENSION_INIT3

#include "cr_schema_sql.h"

#include <string.h>

/* The schema this build writes; one migration script per step up to it. */
#define CR_SCHEMA_VERSION 2

/* The tables of the schema, for the check that none is a view. */
static const char *const cr_schema_tables[] = {
    "callrail_meta", "callrail_credentials", "callrail_destinations",
    "callrail_runs", "callrail_responses",   "callrail_delivered",
};

/* Runs zSql (one statement, one integer or no row) into *piOut. */
static int cr_schema_int(sqlite3 *db, const char *zSql, int *piOut, char **pzErr) {
  sqlite3_stmt *pStmt = 0;
  int rc = cr_prepare(db, zSql, &pStmt, pzErr);
  *piOut = 0;
  if (rc == SQLITE_OK) {
    rc = sqlite3_step(pStmt);
    if (rc == SQLITE_ROW) *piOut = sqlite3_column_int(pStmt, 0);
    rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
    if (rc != SQLITE_OK) cr_set_error(pzErr, "%s", sqlite3_errmsg(db));
  }
  sqlite3_finalize(pStmt);
  return rc;
}

/* The schema version of db's main database (see the header comment). */
static int cr_schema_version(sqlite3 *db, int *piVersion, char **pzErr) {
  int hasMeta = 0, rc;
  rc = cr_schema_int(db,
                     "SELECT count(*) FROM main.sqlite_schema"
                     " WHERE type='table' AND name='callrail_meta'",
                     &hasMeta, pzErr);
  if (rc == SQLITE_OK && hasMeta) {
    return cr_schema_int(db, "SELECT value FROM main.callrail_meta WHERE key='schema_version'",
                         piVersion, pzErr);
  }
  if (rc == SQLITE_OK) {
    rc = cr_schema_int(db,
                       "SELECT count(*) > 0 FROM main.sqlite_schema"
                       " WHERE type='table' AND name='callrail_responses'",
                       piVersion, pzErr);
  }
  return rc;
}

/* Refuses a database where one of our names is not our table. */
static int cr_schema_check_tables(sqlite3 *db, char **pzErr) {
  sqlite3_stmt *pStmt = 0;
  size_t i;
  int rc = cr_prepare(db, "SELECT type FROM main.sqlite_schema WHERE name=?1", &pStmt, pzErr);
  for (i = 0; rc == SQLITE_OK && i < sizeof(cr_schema_tables) / sizeof(cr_schema_tables[0]); i++) {
    sqlite3_bind_text(pStmt, 1, cr_schema_tables[i], -1, SQLITE_STATIC);
    if (sqlite3_step(pStmt) == SQLITE_ROW &&
        strcmp((const char *)sqlite3_column_text(pStmt, 0), "table") != 0) {
      cr_set_error(pzErr,
                   "%s in this database is a %s, not the table callrail-sqlite keeps its audit "
                   "in; refusing to use the file (drop the %s to let the extension create it)",
                   cr_schema_tables[i], sqlite3_column_text(pStmt, 0),
                   sqlite3_column_text(pStmt, 0));
      rc = SQLITE_ERROR;
    }
    sqlite3_reset(pStmt);
  }
  sqlite3_finalize(pStmt);
  return rc;
}

/* ------------------------------------------------------------------------
** Upgrades
*/

/* Brings a database of version iFrom (>= 1) up to CR_SCHEMA_VERSION. */
static int cr_schema_upgrade(sqlite3 *db, int iFrom, char **pzErr) {
  int rc = SQLITE_OK;
  int v;
  for (v = iFrom + 1; rc == SQLITE_OK && v <= CR_SCHEMA_VERSION; v++) {
    rc = cr_exec(db, cr_migrations[v], pzErr);
    if (rc == SQLITE_OK && v == 2) rc = cr_identity_rehash_delivered(db, pzErr);
    if (rc != SQLITE_OK) {
      char *zWhy = *pzErr;
      *pzErr = 0;
      cr_set_error(pzErr, "cannot upgrade the callrail tables from schema %d to %d: %s", v - 1, v,
                   zWhy);
      sqlite3_free(zWhy);
    }
  }
  return rc;
}

/* Creates or upgrades the tables; the caller holds the write lock. */
static int cr_schema_apply(sqlite3 *db, char **pzErr) {
  int iVersion = 0;
  int rc = cr_schema_version(db, &iVersion, pzErr);
  if (rc == SQLITE_OK && iVersion > CR_SCHEMA_VERSION) {
    cr_set_error(pzErr,
                 "this database was written by a newer callrail-sqlite (schema %d); this is "
                 "callrail-sqlite " CR_VERSION " (schema %d): upgrade the extension",
                 iVersion, CR_SCHEMA_VERSION);
    return SQLITE_ERROR;
  }
  if (rc == SQLITE_OK && iVersion == CR_SCHEMA_VERSION) return SQLITE_OK;
  if (rc == SQLITE_OK) {
    rc = iVersion == 0 ? cr_exec(db, cr_schema_sql, pzErr) : cr_schema_upgrade(db, iVersion, pzErr);
  }
  if (rc == SQLITE_OK) {
    char *zSql = sqlite3_mprintf("INSERT OR REPLACE INTO main.callrail_meta(key, value)"
                                 " VALUES('schema_version', %d)",
                                 CR_SCHEMA_VERSION);
    rc = zSql ? cr_exec(db, zSql, pzErr) : SQLITE_NOMEM;
    sqlite3_free(zSql);
  }
  return rc;
}

/* Runs cr_schema_apply in its own write transaction, or in the user's
** (a savepoint) when one is open. */
static int cr_schema_upgrade_locked(sqlite3 *db, char **pzErr) {
  int inTxn = !sqlite3_get_autocommit(db);
  int rc = cr_exec(db, inTxn ? "SAVEPOINT callrail_schema" : "BEGIN IMMEDIATE", pzErr);
  if (rc == SQLITE_OK) rc = cr_schema_apply(db, pzErr);
  if (rc == SQLITE_OK) {
    rc = cr_exec(db, inTxn ? "RELEASE callrail_schema" : "COMMIT", pzErr);
  } else if (inTxn) {
    cr_exec(db, "ROLLBACK TO callrail_schema; RELEASE callrail_schema", 0);
  } else {
    cr_exec(db, "ROLLBACK", 0);
  }
  return rc;
}

int cr_schema_ensure(cr_conn *pConn, char **pzErr) {
  int iVersion = 0;
  int rc;
  if (pConn->schemaReady) return SQLITE_OK;
  rc = cr_schema_check_tables(pConn->db, pzErr);
  if (rc == SQLITE_OK) rc = cr_schema_version(pConn->db, &iVersion, pzErr);
  if (rc == SQLITE_OK && iVersion != CR_SCHEMA_VERSION) {
    rc = cr_schema_upgrade_locked(pConn->db, pzErr);
  }
  if (rc == SQLITE_OK) pConn->schemaReady = 1;
  return rc;
}
