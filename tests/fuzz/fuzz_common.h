/*
** fuzz_common.h - helpers shared by the libFuzzer targets in tests/fuzz/.
**
** The ext/ modules are compiled into each target with -DSQLITE_CORE, so
** sqlite3ext.h maps nothing and their sqlite3_* calls go straight to
** libsqlite3 (as in tests/unit/config_test.c).  Each target keeps one
** in-memory connection, opened on its first input and never closed.
**
** A broken invariant calls fz_fail(), which prints what was expected and
** aborts: libFuzzer then saves the input as a crash artifact.
*/
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include "cr_internal.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The connection every target uses (opened once). */
static inline sqlite3 *fz_db(void) {
  static sqlite3 *db = 0;
  if (db == 0) {
    if (sqlite3_open(":memory:", &db) != SQLITE_OK) {
      fprintf(stderr, "fuzz: cannot open an in-memory database\n");
      abort();
    }
  }
  return db;
}

/* Prints the broken invariant and aborts (libFuzzer saves the input). */
static inline void fz_fail(const char *zFmt, ...) {
  va_list ap;
  fprintf(stderr, "\nFUZZ INVARIANT BROKEN: ");
  va_start(ap, zFmt);
  vfprintf(stderr, zFmt, ap);
  va_end(ap);
  fprintf(stderr, "\n");
  fflush(stderr);
  abort();
}

/* FUZZ_VERBOSE=1 in the environment: targets say what happened to an input
** (for replaying one by hand). */
static inline int fz_verbose(void) {
  static int v = -1;
  if (v < 0) v = getenv("FUZZ_VERBOSE") != 0 && getenv("FUZZ_VERBOSE")[0] == '1';
  return v;
}

/* A NUL-terminated copy of the fuzzer's bytes (sqlite3_free it). */
static inline char *fz_text(const uint8_t *a, size_t n) {
  char *z = sqlite3_malloc64(n + 1);
  if (z == 0) abort();
  if (n) memcpy(z, a, n);
  z[n] = 0;
  return z;
}

/* A strict RFC 8259 grammar check, independent of SQLite: SQLite 3.40's
** json_valid() accepts texts that are not JSON, e.g. an object as a member
** name ({{"a":"b"}:"c"}).  Bytes >= 0x80 are accepted as they are (UTF-8
** is not checked).  Returns the end of the value at z, or NULL. */
static inline const char *fz_json_ws(const char *z) {
  while (*z == ' ' || *z == '\t' || *z == '\n' || *z == '\r')
    z++;
  return z;
}
static inline const char *fz_json_value(const char *z, int depth);
static inline const char *fz_json_string(const char *z) {
  if (*z != '"') return 0;
  for (z++; *z != '"'; z++) {
    unsigned char c = (unsigned char)*z;
    if (c < 0x20) return 0; /* includes the terminating NUL */
    if (c == '\\') {
      z++;
      if (*z == 'u') {
        int i;
        for (i = 1; i <= 4; i++) {
          char h = z[i];
          if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') || (h >= 'A' && h <= 'F'))) {
            return 0;
          }
        }
        z += 4;
      } else if (*z == 0 || strchr("\"\\/bfnrt", *z) == 0) {
        return 0;
      }
    }
  }
  return z + 1;
}
static inline const char *fz_json_number(const char *z) {
  if (*z == '-') z++;
  if (*z == '0') {
    z++;
  } else if (*z >= '1' && *z <= '9') {
    while (*z >= '0' && *z <= '9')
      z++;
  } else {
    return 0;
  }
  if (*z == '.') {
    z++;
    if (!(*z >= '0' && *z <= '9')) return 0;
    while (*z >= '0' && *z <= '9')
      z++;
  }
  if (*z == 'e' || *z == 'E') {
    z++;
    if (*z == '+' || *z == '-') z++;
    if (!(*z >= '0' && *z <= '9')) return 0;
    while (*z >= '0' && *z <= '9')
      z++;
  }
  return z;
}
static inline const char *fz_json_value(const char *z, int depth) {
  z = fz_json_ws(z);
  if (depth > 2000) return 0;
  switch (*z) {
  case '{':
    z = fz_json_ws(z + 1);
    if (*z == '}') return z + 1;
    for (;;) {
      z = fz_json_string(fz_json_ws(z));
      if (z == 0) return 0;
      z = fz_json_ws(z);
      if (*z != ':') return 0;
      z = fz_json_value(z + 1, depth + 1);
      if (z == 0) return 0;
      z = fz_json_ws(z);
      if (*z == '}') return z + 1;
      if (*z != ',') return 0;
      z++;
    }
  case '[':
    z = fz_json_ws(z + 1);
    if (*z == ']') return z + 1;
    for (;;) {
      z = fz_json_value(z, depth + 1);
      if (z == 0) return 0;
      z = fz_json_ws(z);
      if (*z == ']') return z + 1;
      if (*z != ',') return 0;
      z++;
    }
  case '"':
    return fz_json_string(z);
  case 't':
    return strncmp(z, "true", 4) == 0 ? z + 4 : 0;
  case 'f':
    return strncmp(z, "false", 5) == 0 ? z + 5 : 0;
  case 'n':
    return strncmp(z, "null", 4) == 0 ? z + 4 : 0;
  default:
    return fz_json_number(z);
  }
}
/* 1 if z is exactly one JSON value (RFC 8259), else 0. */
static inline int fz_json_strict(const char *z) {
  const char *zEnd = z ? fz_json_value(z, 0) : 0;
  return zEnd != 0 && *fz_json_ws(zEnd) == 0;
}

/* FUZZ_IGNORE (a comma-separated list) names known findings whose checks
** the targets skip while fuzzing, to look past them. */
static inline int fz_ignored(const char *zWhat) {
  const char *z = getenv("FUZZ_IGNORE");
  return z != 0 && strstr(z, zWhat) != 0;
}

/* True if SQLite 3.40's json_valid() accepts z although it is not JSON
** (an object or array as a member name): such texts make SQLite's
** json_each() crash and json() write invalid JSON.  With
** FUZZ_IGNORE=json-label, targets skip inputs holding one. */
static inline int fz_sqlite_accepts_bad_json(const char *z) {
  static sqlite3_stmt *pStmt = 0;
  int ok = 0;
  if (z == 0 || fz_json_strict(z)) return 0;
  if (pStmt == 0 &&
      sqlite3_prepare_v2(fz_db(), "SELECT json_valid(?1)", -1, &pStmt, 0) != SQLITE_OK) {
    fz_fail("cannot prepare json_valid: %s", sqlite3_errmsg(fz_db()));
  }
  sqlite3_bind_text(pStmt, 1, z, -1, SQLITE_STATIC);
  if (sqlite3_step(pStmt) == SQLITE_ROW) ok = sqlite3_column_int(pStmt, 0);
  sqlite3_reset(pStmt);
  return ok;
}

/* 1 if z is well-formed JSON (by the strict check above and by SQLite)
** whose json_type() is zType (any type when zType is NULL), else 0. */
static inline int fz_json_is(const char *z, const char *zType) {
  static sqlite3_stmt *pStmt = 0;
  int ok = 0;
  if (z == 0 || !fz_json_strict(z)) return 0;
  if (pStmt == 0 && sqlite3_prepare_v2(fz_db(),
                                       "SELECT json_valid(?1) AND (?2 IS NULL OR"
                                       " json_type(?1)=?2)",
                                       -1, &pStmt, 0) != SQLITE_OK) {
    fz_fail("cannot prepare the JSON check: %s", sqlite3_errmsg(fz_db()));
  }
  sqlite3_bind_text(pStmt, 1, z, -1, SQLITE_STATIC);
  sqlite3_bind_text(pStmt, 2, zType, -1, SQLITE_STATIC);
  if (sqlite3_step(pStmt) == SQLITE_ROW) ok = sqlite3_column_int(pStmt, 0);
  sqlite3_reset(pStmt);
  sqlite3_clear_bindings(pStmt);
  return ok;
}

/* json_array_length(z), or -1 when z is not a JSON array. */
static inline sqlite3_int64 fz_json_array_length(const char *z) {
  static sqlite3_stmt *pStmt = 0;
  sqlite3_int64 n = -1;
  if (z == 0 || !fz_json_strict(z)) return -1;
  if (pStmt == 0 && sqlite3_prepare_v2(fz_db(),
                                       "SELECT CASE WHEN json_valid(?1) AND json_type(?1)="
                                       "'array' THEN json_array_length(?1) ELSE -1 END",
                                       -1, &pStmt, 0) != SQLITE_OK) {
    fz_fail("cannot prepare the array check: %s", sqlite3_errmsg(fz_db()));
  }
  sqlite3_bind_text(pStmt, 1, z, -1, SQLITE_STATIC);
  if (sqlite3_step(pStmt) == SQLITE_ROW) n = sqlite3_column_int64(pStmt, 0);
  sqlite3_reset(pStmt);
  return n;
}

/* A message from the config parser must name the destination first. */
static inline void fz_check_dest_error(const char *zName, int rc, const cr_dest *pDest,
                                       const char *zErr) {
  char *zPrefix;
  if (rc == SQLITE_OK) return;
  if (pDest != 0) fz_fail("cr_dest_parse failed (rc=%d) but returned a destination", rc);
  if (zErr == 0) fz_fail("cr_dest_parse failed (rc=%d) without a message", rc);
  if (rc == SQLITE_NOMEM) return; /* "out of memory" */
  zPrefix = sqlite3_mprintf("destination \"%s\": ", zName);
  if (zPrefix == 0) abort();
  if (strncmp(zErr, zPrefix, strlen(zPrefix)) != 0) {
    fz_fail("config error does not start with [%s]: %s", zPrefix, zErr);
  }
  sqlite3_free(zPrefix);
}

/* An HTTP token character (RFC 7230 tchar). */
static inline int fz_is_tchar(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != 0);
}

/* The header names a config may never set (README "Destination config"). */
static inline int fz_header_forbidden(const char *z, int n) {
  static const char *const az[] = {"Authorization", "Content-Type", "Content-Length", "Host",
                                   "Transfer-Encoding"};
  size_t i;
  for (i = 0; i < sizeof(az) / sizeof(az[0]); i++) {
    if ((int)strlen(az[i]) == n && sqlite3_strnicmp(z, az[i], n) == 0) return 1;
  }
  return 0;
}

/* Every header of pDest is "Name: value" with a token name that may be set,
** a non-empty value without CR, LF or other control characters (tab aside),
** and no name twice. */
static inline void fz_check_headers(const cr_dest *p) {
  int i, j;
  for (i = 0; i < p->nHeader; i++) {
    const char *z = p->azHeader[i];
    const char *zColon = z ? strchr(z, ':') : 0;
    const char *zVal;
    int nName;
    if (zColon == 0) fz_fail("header %d has no ':': %s", i, z ? z : "(null)");
    nName = (int)(zColon - z);
    if (nName == 0) fz_fail("header %d has an empty name: %s", i, z);
    for (j = 0; j < nName; j++) {
      if (!fz_is_tchar((unsigned char)z[j])) fz_fail("header %d name is not a token: %s", i, z);
    }
    if (fz_header_forbidden(z, nName)) fz_fail("forbidden header accepted: %s", z);
    if (zColon[1] != ' ') fz_fail("header %d is not \"Name: value\": %s", i, z);
    zVal = zColon + 2;
    if (*zVal == 0 || *zVal == ' ' || *zVal == '\t') {
      fz_fail("header %d has an empty or untrimmed value: [%s]", i, z);
    }
    for (j = 0; zVal[j]; j++) {
      unsigned char c = (unsigned char)zVal[j];
      if ((c < ' ' && c != '\t') || c == 0x7f) {
        fz_fail("header %d value has control character 0x%02x: %s", i, c, z);
      }
    }
    if (zVal[j - 1] == ' ' || zVal[j - 1] == '\t') fz_fail("header %d value untrimmed: [%s]", i, z);
    for (j = 0; j < i; j++) {
      const char *zOld = p->azHeader[j];
      if ((int)strcspn(zOld, ":") == nName && sqlite3_strnicmp(zOld, z, nName) == 0) {
        fz_fail("header name given twice: [%s] and [%s]", zOld, z);
      }
    }
  }
}

/* Space or a control character: never valid in a URL template. */
static inline int fz_url_ctl(unsigned char c) {
  return c <= ' ' || c == 0x7f;
}

/* The invariants of a destination that cr_dest_parse() accepted. */
/* A URL template (url or update.url) as parsed: its parts give back the
** template, no part holds what the template syntax or a URL cannot, no
** placeholder sits in the origin, and it names an account:
** /v3/a/SEGMENT/ (every CallRail endpoint a destination writes to). */
static inline void fz_check_template(const char *zKey, const char *zTmpl, const cr_url_part *aPart,
                                     int nPart) {
  sqlite3_str *pUrl;
  char *zUrl;
  const char *zA;
  int i;
  if (strncmp(zTmpl, "/v3/", 4) != 0 && strncmp(zTmpl, "https://", 8) != 0 &&
      strncmp(zTmpl, "http://", 7) != 0) {
    fz_fail("%s accepted that is neither absolute nor /v3/: %s", zKey, zTmpl);
  }
  if (nPart < 1) fz_fail("%s %s parsed into no parts", zKey, zTmpl);
  pUrl = sqlite3_str_new(0);
  for (i = 0; i < nPart; i++) {
    const cr_url_part *pPart = &aPart[i];
    const char *z = pPart->zText;
    if (z == 0 || z[0] == 0) fz_fail("%s part %d is empty (%s)", zKey, i, zTmpl);
    if (strpbrk(z, "{}")) fz_fail("%s part %d holds a brace: %s", zKey, i, z);
    for (; *z; z++) {
      if (fz_url_ctl((unsigned char)*z)) fz_fail("%s part %d has a space/control char", zKey, i);
    }
    if (pPart->recordOnly && !pPart->isPlaceholder) fz_fail("literal part %d is recordOnly", i);
    if (pPart->isPlaceholder) {
      sqlite3_str_appendf(pUrl, "{%s%s}", pPart->recordOnly ? "record." : "", pPart->zText);
    } else {
      if (i > 0 && !aPart[i - 1].isPlaceholder) fz_fail("two literal parts in a row");
      sqlite3_str_appendall(pUrl, pPart->zText);
    }
  }
  zUrl = sqlite3_str_finish(pUrl);
  if (zUrl == 0 || strcmp(zUrl, zTmpl) != 0) {
    fz_fail("%s parts give [%s], the template is [%s]", zKey, zUrl ? zUrl : "(oom)", zTmpl);
  }
  sqlite3_free(zUrl);
  if (zTmpl[0] != '/') {
    /* No placeholder in scheme://host[:port]. */
    size_t nScheme = strncmp(zTmpl, "https://", 8) == 0 ? 8 : 7;
    size_t nOrigin = nScheme + strcspn(zTmpl + nScheme, "/");
    if (aPart[0].isPlaceholder || strlen(aPart[0].zText) < nOrigin) {
      fz_fail("placeholder inside the origin of %s", zTmpl);
    }
  }
  zA = strstr(zTmpl, "/v3/a/");
  if (zA == 0 || zA > zTmpl + strcspn(zTmpl, "?#") || strcspn(zA + 6, "/?#") == 0 ||
      zA[6 + strcspn(zA + 6, "/?#")] != '/') {
    fz_fail("%s accepted that names no account (/v3/a/X/): %s", zKey, zTmpl);
  }
}

/* The keys of many runs and json: ranges, and the rules between them. */
static inline void fz_check_sync(const cr_dest *p) {
  int i, hasRemoteId = 0;
  if (p->eSync < CR_SYNC_CHANGED || p->eSync > CR_SYNC_UPSERT) fz_fail("eSync %d", p->eSync);
  if (p->eSync != (p->eMethod == CR_METHOD_POST ? CR_SYNC_NEW : CR_SYNC_CHANGED) && !p->zKey) {
    fz_fail("sync %d without key", p->eSync);
  }
  if ((p->eSync == CR_SYNC_UPSERT) != (p->zUpdateUrl != 0)) fz_fail("update.url without upsert");
  if (p->eSync == CR_SYNC_UPSERT) {
    if (p->eMethod != CR_METHOD_POST) fz_fail("upsert with method %d", p->eMethod);
    if (p->batchSize != 0) fz_fail("upsert with batch");
    for (i = 0; i < p->nUpdateUrlPart; i++) {
      const cr_url_part *pPart = &p->aUpdateUrlPart[i];
      if (pPart->isPlaceholder && !pPart->recordOnly && strcmp(pPart->zText, "remote_id") == 0) {
        hasRemoteId = 1;
      }
    }
    if (!hasRemoteId) fz_fail("update.url without {remote_id}: %s", p->zUpdateUrl);
  }
  if (p->eUpdateMethod != CR_METHOD_PUT && p->eUpdateMethod != CR_METHOD_PATCH) {
    fz_fail("eUpdateMethod %d", p->eUpdateMethod);
  }
  if (p->zIdPath == 0 || p->zIdPath[0] != '$') fz_fail("id_path %s", p->zIdPath);
  if (p->onBusyError != 0 && p->onBusyError != 1) fz_fail("onBusyError %d", p->onBusyError);
  if (p->leaseMs < 10000 || p->leaseMs > 86400000) fz_fail("leaseMs %lld", p->leaseMs);
  for (i = 0; i < p->nJson; i++) {
    if (p->azJson[i] == 0 || !cr_name_is_plain(p->azJson[i])) fz_fail("json entry %d", i);
  }
}

static inline void fz_check_dest(sqlite3 *db, const char *zName, const cr_dest *p) {
  char *zHeaders;
  int i;
  if (p->zName == 0 || strcmp(p->zName, zName) != 0) fz_fail("zName is not \"%s\"", zName);
  if (p->zCredential == 0 || p->zCredential[0] == 0) fz_fail("accepted without a credential");
  if (p->eMethod < 0 || p->eMethod > CR_METHOD_DELETE) fz_fail("eMethod %d", p->eMethod);
  if (p->zUrl == 0) fz_fail("accepted without a url");
  if (!fz_json_is(p->zParams, "object")) fz_fail("zParams is not a JSON object: %s", p->zParams);

  fz_check_template("url", p->zUrl, p->aUrlPart, p->nUrlPart);
  if (p->zUpdateUrl)
    fz_check_template("update.url", p->zUpdateUrl, p->aUpdateUrlPart, p->nUpdateUrlPart);
  fz_check_sync(p);

  fz_check_headers(p);
  for (i = 0; i < p->nExclude; i++) {
    if (p->azExclude[i] == 0 || p->azExclude[i][0] == 0) fz_fail("empty exclude entry");
  }
  if (p->batchSize < 0 || p->batchSize > 1000) fz_fail("batchSize %d", p->batchSize);
  if (p->batchSize == 0 && (p->nGroupAttr || p->maxBytes || p->zWrap)) {
    /* batch: null/false with nothing else set is fine; anything set means on. */
    fz_fail("batch settings without batching");
  }
  if (p->eGrouping == CR_GROUP_ATTRIBUTE && p->nGroupAttr < 1) fz_fail("attribute, no attrs");
  if (p->eGrouping != CR_GROUP_ATTRIBUTE && p->nGroupAttr != 0) fz_fail("attrs, not attribute");
  if (p->eGrouping == CR_GROUP_BYTES && (p->maxBytes < 64 || p->maxBytes > 100000000)) {
    fz_fail("bytes grouping with max_bytes %lld", p->maxBytes);
  }
  if (p->eGrouping != CR_GROUP_BYTES && p->maxBytes != 0) fz_fail("max_bytes, not bytes");
  if (p->zWrap && p->zWrap[0] == 0) fz_fail("empty wrap");
  if (p->zKey && p->zKey[0] == 0) fz_fail("empty key");
  if (p->concurrency < 1 || p->concurrency > CR_MAX_CONCURRENCY) {
    fz_fail("concurrency %d", p->concurrency);
  }
  if (p->timeoutMs < 1 || p->connectTimeoutMs < 1) fz_fail("timeouts");
  if (p->maxAttempts < 1 || p->maxAttempts > 100) fz_fail("maxAttempts %d", p->maxAttempts);
  if (p->baseDelayMs < 0 || p->maxDelayMs < p->baseDelayMs) fz_fail("retry delays");
  if (p->perHour == 0 || p->perDay == 0 || p->perSecond == 0) fz_fail("zero rate limit");
  if (p->onQuotaStop != 0 && p->onQuotaStop != 1) fz_fail("onQuotaStop %d", p->onQuotaStop);
  if (p->progress < -1 || p->progress > 1) fz_fail("progress %d", p->progress);

  /* The headers as a preview shows them: a JSON object, key hidden. */
  zHeaders = cr_headers_json(db, p, 1);
  if (!fz_json_is(zHeaders, "object")) fz_fail("cr_headers_json: %s", zHeaders);
  if (strstr(zHeaders, "\"Authorization\":\"Token token=\\\"***\\\"\"") == 0) {
    fz_fail("cr_headers_json does not hide the key: %s", zHeaders);
  }
  sqlite3_free(zHeaders);
}

#endif /* FUZZ_COMMON_H */
