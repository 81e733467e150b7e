/*
** cr_util.c - small helpers every module shares: error messages, clocks,
** statement preparation and interrupt detection.
*/
#include "cr_internal.h"
SQLITE_EXTENSION_INIT3

#include <stdarg.h>
#include <time.h>

void cr_set_error(char **pzErr, const char *zFmt, ...) {
  va_list ap;
  if (pzErr == 0) return;
  sqlite3_free(*pzErr);
  va_start(ap, zFmt);
  *pzErr = sqlite3_vmprintf(zFmt, ap);
  va_end(ap);
}

char *cr_strdup(const char *z) {
  return z ? sqlite3_mprintf("%s", z) : 0;
}

sqlite3_int64 cr_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (sqlite3_int64)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

sqlite3_int64 cr_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (sqlite3_int64)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int cr_prepare(sqlite3 *db, const char *zSql, sqlite3_stmt **ppStmt, char **pzErr) {
  int rc = sqlite3_prepare_v2(db, zSql, -1, ppStmt, 0);
  if (rc != SQLITE_OK) cr_set_error(pzErr, "callrail: internal SQL failed: %s", sqlite3_errmsg(db));
  return rc;
}

int cr_exec(sqlite3 *db, const char *zSql, char **pzErr) {
  char *zMsg = 0;
  int rc = sqlite3_exec(db, zSql, 0, 0, &zMsg);
  if (rc != SQLITE_OK) {
    cr_set_error(pzErr, "%s", zMsg ? zMsg : sqlite3_errmsg(db));
  }
  sqlite3_free(zMsg);
  return rc;
}

/*
** SQLite 3.40 has no sqlite3_is_interrupted(), but once sqlite3_interrupt()
** was called on a connection, stepping any statement on it returns
** SQLITE_INTERRUPT (docs/design.md#interrupts-probing-for-ctrl-c).  A trivial "SELECT 1" is that
*probe.
** The flag stays set while the user's statement runs, so probing does not
** consume it: the user's statement still ends with "interrupted".
*/
int cr_check_interrupt(sqlite3 *db) {
  sqlite3_stmt *pStmt = 0;
  int rc;
  if (sqlite3_prepare_v2(db, "SELECT 1", -1, &pStmt, 0) != SQLITE_OK) {
    return sqlite3_errcode(db) == SQLITE_INTERRUPT ? SQLITE_INTERRUPT : SQLITE_OK;
  }
  rc = sqlite3_step(pStmt);
  sqlite3_finalize(pStmt);
  return rc == SQLITE_INTERRUPT ? SQLITE_INTERRUPT : SQLITE_OK;
}

int cr_step_waiting(sqlite3 *db, sqlite3_stmt *pStmt) {
  int rc, ms = 0;
  while ((rc = sqlite3_step(pStmt)) == SQLITE_BUSY && ms < CR_WRITE_WAIT_MS &&
         cr_check_interrupt(db) != SQLITE_INTERRUPT) {
    sqlite3_reset(pStmt);
    sqlite3_sleep(10);
    ms += 10;
  }
  return rc;
}

const char *cr_arg_text(sqlite3_value *pVal, const char *zWhat, char **pzErr) {
  switch (sqlite3_value_type(pVal)) {
  case SQLITE_NULL:
    cr_set_error(pzErr, "%s is NULL", zWhat);
    return 0;
  case SQLITE_BLOB:
    cr_set_error(pzErr, "%s is a BLOB; expected text", zWhat);
    return 0;
  default:
    return (const char *)sqlite3_value_text(pVal);
  }
}

/*
** SQLite 3.40's JSON parser accepts an object whose members are all
** strings where a member name belongs ({{"a":"b"}:"c"}): json_valid() says
** 1, json() rewrites it into text that is not JSON, and json_each()'s
** fullkey crashes on it.  Text from a user (a config, a record) is checked
** with this before SQLite's JSON functions see it.  It is a structural scan
** for that one defect, of text json_valid() accepted, not a parser: outside
** strings, the first thing after "{" or after "," within an object must
** be a string (or the "}" of an empty object).
*/
#define CR_JSON_MAX_DEPTH 2048
int cr_json_names_are_strings(const char *z) {
  unsigned char aIsObj[CR_JSON_MAX_DEPTH];
  int nDepth = 0, expectName = 0;
  for (; *z; z++) {
    char c = *z;
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') continue;
    if (expectName && c != '"' && c != '}') return 0;
    expectName = 0;
    if (c == '"') {
      for (z++; *z && *z != '"'; z++) {
        if (*z == '\\' && z[1]) z++;
      }
      if (*z == 0) return 0;
    } else if (c == '{' || c == '[') {
      if (nDepth >= CR_JSON_MAX_DEPTH) return 0;
      aIsObj[nDepth++] = c == '{';
      expectName = c == '{';
    } else if (c == '}' || c == ']') {
      if (nDepth > 0) nDepth--;
    } else if (c == ',') {
      expectName = nDepth > 0 && aIsObj[nDepth - 1];
    }
  }
  return 1;
}

int cr_name_is_plain(const char *z) {
  for (; *z; z++) {
    if (*z == '"' || *z == '\\' || (unsigned char)*z < 0x20) return 0;
  }
  return 1;
}

void cr_format_utc(sqlite3_int64 wallMs, char *zBuf, size_t nBuf) {
  time_t t = (time_t)(wallMs / 1000);
  struct tm tm;
  if (nBuf == 0) return;
  zBuf[0] = 0;
  if (gmtime_r(&t, &tm)) strftime(zBuf, nBuf, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
