/*
** cr_identity.c - when two requests are the same request.
**
** Change detection skips a keyed record whose request was already
** delivered.  "The same request" must not depend on how the user happened
** to write the query, so a record's identity is:
**
**   - its method;
**   - its URL, normalised: scheme and host in lower case, the default port
**     dropped, so https://API.callrail.com:443/x and
**     https://api.callrail.com/x are one target (a different server, such
**     as a local fake instead of the real API, stays a different target);
**   - its body as canonical JSON: object members in any order, any
**     insignificant whitespace, numbers as SQLite reads them (1.50 = 1.5).
**
** The body is walked with SQLite's json_each(), one level at a time: each
** node contributes a 64-bit hash of (path, type, value), and the
** contributions are added up.  Addition does not care about order, so
** reordered members give the same sum without sorting them, while the path
** (a hash of the member names and array indexes leading to the node) keeps
** array elements in their places and members under their names.  The path
** is built from json_each's `key`, not json_tree's `fullkey`, whose quoting
** differs between SQLite versions: the identity must not change when the
** user upgrades SQLite.  The identity is 64 bits, written
** as 16 hex digits in callrail_delivered.record_hash (a collision, which
** would skip one changed record, has a chance of 2^-64).
*/
#include "cr_internal.h"
SQLITE_EXTENSION_INIT3

#include <ctype.h>
#include <string.h>

/* Containers nested deeper than this are hashed as their text. */
#define CR_IDENTITY_DEPTH 8

struct cr_identity {
  sqlite3 *db;
  sqlite3_stmt *apEach[CR_IDENTITY_DEPTH]; /* json_each, one per level in use */
};

#define CR_FNV_OFFSET 14695981039346656037ULL
#define CR_FNV_PRIME 1099511628211ULL

/* FNV-1a over the text z (NULL: empty), then a field separator, so that
** ("ab","c") and ("a","bc") differ. */
static sqlite3_uint64 cr_fnv(sqlite3_uint64 h, const char *z) {
  for (; z && *z; z++) {
    h ^= (unsigned char)*z;
    h *= CR_FNV_PRIME;
  }
  h ^= 0xff;
  return h * CR_FNV_PRIME;
}

/* splitmix64's finaliser: spreads every input bit over the output, so
** that sums of node hashes do not cancel out in a pattern. */
static sqlite3_uint64 cr_mix(sqlite3_uint64 h) {
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  return h ^ (h >> 31);
}

/* Length of the scheme://host[:port] part of zUrl, or 0 if it has none. */
static size_t cr_origin_len(const char *zUrl) {
  const char *z = strstr(zUrl, "://");
  if (z == 0) return 0;
  z += 3;
  return (size_t)(z - zUrl) + strcspn(z, "/?#");
}

char *cr_url_normalize(const char *zUrl) {
  size_t nOrigin = cr_origin_len(zUrl);
  char *zOut = cr_strdup(zUrl);
  size_t i, nPort = 0;
  if (zOut == 0 || nOrigin == 0) return zOut;
  for (i = 0; i < nOrigin; i++)
    zOut[i] = (char)tolower((unsigned char)zOut[i]);
  if (nOrigin > 4 && strncmp(zOut + nOrigin - 4, ":443", 4) == 0 &&
      strncmp(zOut, "https://", 8) == 0) {
    nPort = 4;
  } else if (nOrigin > 3 && strncmp(zOut + nOrigin - 3, ":80", 3) == 0 &&
             strncmp(zOut, "http://", 7) == 0) {
    nPort = 3;
  }
  if (nPort) memmove(zOut + nOrigin - nPort, zOut + nOrigin, strlen(zOut + nOrigin) + 1);
  return zOut;
}

#define CR_SQL_EACH "SELECT key, type, atom, value FROM json_each(?1)"

int cr_identity_open(sqlite3 *db, cr_identity **pp, char **pzErr) {
  cr_identity *p = sqlite3_malloc(sizeof(*p));
  int rc;
  *pp = p;
  if (p == 0) return SQLITE_NOMEM;
  memset(p, 0, sizeof(*p));
  p->db = db;
  rc = cr_prepare(db, CR_SQL_EACH, &p->apEach[0], pzErr);
  if (rc != SQLITE_OK) {
    cr_identity_close(p);
    *pp = 0;
  }
  return rc;
}

void cr_identity_close(cr_identity *p) {
  int i;
  if (p) {
    for (i = 0; i < CR_IDENTITY_DEPTH; i++)
      sqlite3_finalize(p->apEach[i]);
    sqlite3_free(p);
  }
}

/* Adds to *pSum the hashes of the nodes inside the container zJson, whose
** path hashes to hPath, at nesting level iDepth.  Text that is not JSON
** (never made by the extension; possible in old audit rows) is hashed as it
** is: it then only equals itself. */
static void cr_json_sum(cr_identity *p, const char *zJson, sqlite3_uint64 hPath, int iDepth,
                        sqlite3_uint64 *pSum) {
  sqlite3_stmt *pEach;
  int rc;
  if (iDepth >= CR_IDENTITY_DEPTH ||
      (p->apEach[iDepth] == 0 &&
       sqlite3_prepare_v2(p->db, CR_SQL_EACH, -1, &p->apEach[iDepth], 0) != SQLITE_OK)) {
    *pSum += cr_mix(cr_fnv(hPath, zJson));
    return;
  }
  pEach = p->apEach[iDepth];
  sqlite3_bind_text(pEach, 1, zJson, -1, SQLITE_STATIC);
  while ((rc = sqlite3_step(pEach)) == SQLITE_ROW) {
    const char *zType = (const char *)sqlite3_column_text(pEach, 1);
    sqlite3_uint64 h = cr_fnv(hPath, (const char *)sqlite3_column_text(pEach, 0));
    *pSum += cr_mix(cr_fnv(cr_fnv(h, zType), (const char *)sqlite3_column_text(pEach, 2)));
    if (zType && (strcmp(zType, "object") == 0 || strcmp(zType, "array") == 0)) {
      cr_json_sum(p, (const char *)sqlite3_column_text(pEach, 3), h, iDepth + 1, pSum);
    }
  }
  sqlite3_reset(pEach);
  if (rc != SQLITE_DONE) *pSum += cr_mix(cr_fnv(hPath ^ 1, zJson));
}

char *cr_identity_hash(cr_identity *p, const char *zMethod, const char *zUrl, const char *zBody) {
  char *zNorm = cr_url_normalize(zUrl ? zUrl : "");
  sqlite3_uint64 h = CR_FNV_OFFSET;
  if (zNorm == 0) return 0;
  h = cr_fnv(h, zMethod);
  h = cr_fnv(h, zNorm);
  if (zBody) {
    sqlite3_uint64 sum = 0;
    cr_json_sum(p, zBody, CR_FNV_OFFSET, 0, &sum);
    h = cr_mix(h + sum);
  }
  sqlite3_free(zNorm);
  return sqlite3_mprintf("%016llx", h);
}

/* ------------------------------------------------------------------------
** Identities of requests already in the audit table
**
** The identity of each key of a stored request: its method and URL, and
** its body - for a batch, the key's element of the array (unwrapped by the
** destination's batch.wrap).  Used when an upgrade recomputes the
** identities of delivered keys, and when callrail_resolve() records an
** unknown request as delivered.  The query reads each key's request; the
** identity is computed here in C and written by a second statement.  (Not
** by an SQL function registered for the occasion: on the user's connection
** - in-memory databases, or an upgrade at first use - a function cannot be
** removed again while the user's statement runs, so it would stay behind
** pointing at freed memory, and the next registration would fail.)
** Appended: the WHERE clause saying which responses.
*/
#define CR_SQL_KEY_REQUESTS                                                                        \
  "SELECT r.destination, k.value, r.id, r.method, r.url,"                                          \
  " CASE WHEN r.method = 'DELETE' OR r.request_body IS NULL THEN NULL"                             \
  "  WHEN json_type(r.request_body) = 'array'"                                                     \
  "   THEN json_extract(r.request_body, '$[' || k.key || ']')"                                     \
  "  WHEN c.wrap IS NOT NULL AND json_type(r.request_body, '$.\"' || c.wrap || '\"') = 'array'"    \
  "   THEN json_extract(r.request_body, '$.\"' || c.wrap || '\"[' || k.key || ']')"                \
  "  ELSE r.request_body END"                                                                      \
  " FROM callrail_responses r"                                                                     \
  " JOIN json_each(CASE WHEN json_valid(r.record_keys) THEN r.record_keys END) k"                  \
  " LEFT JOIN (SELECT name, json_extract(config, '$.batch.wrap') AS wrap"                          \
  "  FROM callrail_destinations) c ON c.name = r.destination"                                      \
  " WHERE "

/* Writes one key's identity with pWrite: ?1 destination, ?2 key, ?3 the
** identity, ?4 response id (from the query's row pRead), ?5 zRemoteId. */
static int cr_identity_write(cr_identity *pIdent, sqlite3_stmt *pRead, sqlite3_stmt *pWrite,
                             const char *zRemoteId, char **pzErr) {
  char *zHash = cr_identity_hash(pIdent, (const char *)sqlite3_column_text(pRead, 3),
                                 (const char *)sqlite3_column_text(pRead, 4),
                                 (const char *)sqlite3_column_text(pRead, 5));
  int rc = SQLITE_OK;
  if (zHash == 0) return SQLITE_NOMEM;
  sqlite3_bind_value(pWrite, 1, sqlite3_column_value(pRead, 0));
  sqlite3_bind_value(pWrite, 2, sqlite3_column_value(pRead, 1));
  sqlite3_bind_text(pWrite, 3, zHash, -1, sqlite3_free);
  sqlite3_bind_value(pWrite, 4, sqlite3_column_value(pRead, 2));
  if (sqlite3_bind_parameter_count(pWrite) >= 5) {
    sqlite3_bind_text(pWrite, 5, zRemoteId, -1, SQLITE_STATIC);
  }
  if (sqlite3_step(pWrite) != SQLITE_DONE) {
    cr_set_error(pzErr, "%s", sqlite3_errmsg(sqlite3_db_handle(pWrite)));
    rc = SQLITE_ERROR;
  }
  sqlite3_reset(pWrite);
  return rc;
}

/* For each key of the responses zWhere selects (binding ?1 to iArg), writes
** its identity with zWrite (see cr_identity_write). */
static int cr_identity_each(sqlite3 *db, const char *zWhere, sqlite3_int64 iArg, const char *zWrite,
                            const char *zRemoteId, char **pzErr) {
  cr_identity *pIdent = 0;
  sqlite3_stmt *pRead = 0;
  sqlite3_stmt *pWrite = 0;
  char *zRead = sqlite3_mprintf(CR_SQL_KEY_REQUESTS "%s", zWhere);
  int rc = zRead ? cr_identity_open(db, &pIdent, pzErr) : SQLITE_NOMEM;
  int step = SQLITE_DONE;
  if (rc == SQLITE_OK) rc = cr_prepare(db, zRead, &pRead, pzErr);
  if (rc == SQLITE_OK) rc = cr_prepare(db, zWrite, &pWrite, pzErr);
  if (rc == SQLITE_OK && sqlite3_bind_parameter_count(pRead) >= 1) {
    sqlite3_bind_int64(pRead, 1, iArg);
  }
  while (rc == SQLITE_OK && (step = sqlite3_step(pRead)) == SQLITE_ROW) {
    rc = cr_identity_write(pIdent, pRead, pWrite, zRemoteId, pzErr);
  }
  if (rc == SQLITE_OK && step != SQLITE_DONE) {
    cr_set_error(pzErr, "%s", sqlite3_errmsg(db));
    rc = SQLITE_ERROR;
  }
  sqlite3_finalize(pRead);
  sqlite3_finalize(pWrite);
  cr_identity_close(pIdent);
  sqlite3_free(zRead);
  return rc;
}

int cr_identity_rehash_delivered(sqlite3 *db, char **pzErr) {
  return cr_identity_each(db, "r.id IN (SELECT response_id FROM callrail_delivered)", 0,
                          "UPDATE callrail_delivered SET record_hash = ?3"
                          " WHERE destination = ?1 AND record_key = ?2 AND response_id = ?4",
                          0, pzErr);
}

int cr_identity_deliver(sqlite3 *db, sqlite3_int64 iResponseId, const char *zRemoteId,
                        char **pzErr) {
  return cr_identity_each(
      db, "r.id = ?1", iResponseId,
      "INSERT INTO callrail_delivered(destination, record_key, record_hash, response_id,"
      " delivered_at, remote_id) VALUES(?1, ?2, ?3, ?4, strftime('%Y-%m-%dT%H:%M:%fZ','now'), ?5)"
      " ON CONFLICT(destination, record_key) DO UPDATE SET record_hash=excluded.record_hash,"
      " response_id=excluded.response_id, delivered_at=excluded.delivered_at,"
      " remote_id=coalesce(excluded.remote_id, remote_id)"
      " WHERE excluded.response_id > callrail_delivered.response_id",
      zRemoteId, pzErr);
}
