/*
** cr_record.c - from the user's query to records.
**
** Each result row of the query is one record, a JSON object whose
** attributes are the row's columns:
**
**   SELECT 'Widget Shop' AS name, json_array('a','b') AS tags
**     -> {"name":"Widget Shop","tags":["a","b"]}
**
** INTEGER and REAL become numbers, TEXT strings, NULL null, and a value
** carrying SQLite's JSON subtype (from json(), json_object(), ...) nested
** JSON.  A query of one column whose value is a JSON object sends that
** object as the record.  A JSONB BLOB (SQLite 3.45 and later) is the JSON it
** holds; any other BLOB, or an infinite number, makes the record invalid:
** JSON cannot hold it.  The attributes the destination lists in `json` have
** their TEXT parsed as JSON, because SQLite loses the subtype in sorters,
** UNIONs and materialised CTEs.
**
** URL templates (`url`, and `update.url` of sync "upsert", whose
** {remote_id} is the id CallRail returned) are expanded by one piece of
** code, cr_tmpl_expand().
**
** The JSON is built by SQLite itself: a "builder" statement binds the row's
** values into json_object(), and a "shaper" statement takes the record
** apart again with json_remove() (for `exclude`) and json_extract() (URL
** placeholders, the key and the batch grouping attributes).  Both are
** prepared once per run.  The query is stepped one row at a time, so
** memory does not grow with the number of records; the set of keys seen in
** the run, needed to refuse duplicates, lives in a private temporary
** database that spills to disk.
*/
#include "cr_internal.h"
SQLITE_EXTENSION_INIT3

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Columns of the shaper statement, after the body (column 0). */
#define CR_SHAPE_BODY 0
#define CR_SHAPE_PLACE 1 /* then per placeholder: type, value, NUL flag */
#define CR_SHAPE_PER_PLACE 3

/* A URL template (`url` or `update.url`) and the params values of its
** placeholders, looked up once. */
typedef struct cr_tmpl {
  const cr_url_part *aPart;
  int nPart;
  int isPath;     /* a path, relative to the api_base */
  char **azParam; /* params value per part (placeholders only), or NULL */
} cr_tmpl;

struct cr_records {
  sqlite3 *db;
  const cr_dest *pDest;
  char *zApiBase;
  sqlite3_stmt *pQuery; /* the user's query, or NULL for one JSON record */
  char *zJson;          /* the one JSON record, until it is returned */
  int nCol;
  sqlite3_stmt *pBuild;
  sqlite3_stmt *pShape;
  int iShapeKey;            /* shaper column of the key's type, or -1 */
  int iShapeGroup;          /* shaper column of the grouping values, or -1 */
  cr_tmpl url;              /* the destination's url */
  sqlite3_stmt *pJsonProbe; /* `json` attributes: their text, if TEXT */
  sqlite3_stmt *pJsonFix;   /* `json` attributes: their text parsed */
  sqlite3_stmt *pJsonb;     /* a JSONB BLOB as JSON text; NULL before 3.45 */
  cr_keyset *pSeen;         /* keys seen in this run */
  sqlite3_stmt *pDup;       /* a member name used twice (records from JSON text) */
  sqlite3_int64 iRow;
};

/* ------------------------------------------------------------------------
** Checking the query text
*/

/* Skips white space and SQL comments. */
static const char *cr_skip_space(const char *z) {
  for (;;) {
    while (isspace((unsigned char)*z))
      z++;
    if (z[0] == '-' && z[1] == '-') {
      while (*z && *z != '\n')
        z++;
    } else if (z[0] == '/' && z[1] == '*') {
      const char *zEnd = strstr(z + 2, "*/");
      z = zEnd ? zEnd + 2 : z + strlen(z);
    } else {
      return z;
    }
  }
}

static int cr_starts_with_word(const char *z, const char *zWord) {
  size_t n = strlen(zWord);
  return sqlite3_strnicmp(z, zWord, (int)n) == 0 && !isalnum((unsigned char)z[n]) && z[n] != '_';
}

/* True if z is a table name, optionally schema-qualified: "t", "main.t". */
static int cr_is_bare_name(const char *z) {
  int nDot = 0;
  if (!isalpha((unsigned char)*z) && *z != '_') return 0;
  for (; *z; z++) {
    if (*z == '.') {
      if (++nDot > 1 || !(isalpha((unsigned char)z[1]) || z[1] == '_')) return 0;
    } else if (!isalnum((unsigned char)*z) && *z != '_' && *z != '$') {
      return 0;
    }
  }
  return 1;
}

/* The SELECT that reads a bare table name, each part quoted. */
static char *cr_bare_name_sql(const char *zName) {
  const char *zDot = strchr(zName, '.');
  if (zDot == 0) return sqlite3_mprintf("SELECT * FROM \"%w\"", zName);
  return sqlite3_mprintf("SELECT * FROM \"%.*w\".\"%w\"", (int)(zDot - zName), zName, zDot + 1);
}

static int cr_query_prepare(sqlite3 *db, const char *zQuery, sqlite3_stmt **ppStmt, char **pzErr) {
  const char *zSql = cr_skip_space(zQuery);
  char *zOwned = 0;
  const char *zTail = 0;
  size_t n = strlen(zSql);
  int rc = SQLITE_OK;

  while (n > 0 && (isspace((unsigned char)zSql[n - 1]) || zSql[n - 1] == ';'))
    n--;
  zOwned = sqlite3_mprintf("%.*s", (int)n, zSql);
  if (zOwned == 0) return SQLITE_NOMEM;
  if (cr_is_bare_name(zOwned)) {
    char *zSelect = cr_bare_name_sql(zOwned);
    sqlite3_free(zOwned);
    zOwned = zSelect;
  } else if (!cr_starts_with_word(zOwned, "SELECT") && !cr_starts_with_word(zOwned, "WITH") &&
             !cr_starts_with_word(zOwned, "VALUES")) {
    cr_set_error(pzErr, "query must be one read-only SELECT statement or a table name, got: %.60s",
                 zSql);
    rc = SQLITE_ERROR;
  }
  if (rc == SQLITE_OK && sqlite3_prepare_v2(db, zOwned, -1, ppStmt, &zTail) != SQLITE_OK) {
    cr_set_error(pzErr, "query: %s", sqlite3_errmsg(db));
    rc = SQLITE_ERROR;
  }
  if (rc == SQLITE_OK && *cr_skip_space(zTail) != 0) {
    cr_set_error(pzErr, "query must be a single statement; more follows: %.60s", zTail);
    rc = SQLITE_ERROR;
  } else if (rc == SQLITE_OK &&
             (!sqlite3_stmt_readonly(*ppStmt) || sqlite3_column_count(*ppStmt) == 0)) {
    cr_set_error(pzErr, "query must be one read-only SELECT statement or a table name");
    rc = SQLITE_ERROR;
  }
  if (rc != SQLITE_OK) {
    sqlite3_finalize(*ppStmt);
    *ppStmt = 0;
  }
  sqlite3_free(zOwned);
  return rc;
}
/* ------------------------------------------------------------------------
** The builder: row values -> record JSON.  Parameter 2*i+1 is column i's
** value and 2*i+2 says whether it carries the JSON subtype (bound values
** lose their subtype, so the builder re-applies json() where it was).
** json_object() takes at most CR_BUILD_CHUNK columns (SQLite limits a
** function's arguments); more are added with json_set(), in order.
*/
#define CR_BUILD_CHUNK 40

/* The value expression of column i. */
static void cr_build_value(sqlite3_str *pSql, int i) {
  sqlite3_str_appendf(pSql, "CASE WHEN ?%d THEN json(?%d) ELSE ?%d END", 2 * i + 2, 2 * i + 1,
                      2 * i + 1);
}

static char *cr_build_sql(sqlite3_stmt *pQuery) {
  int nCol = sqlite3_column_count(pQuery);
  sqlite3_str *pSql = sqlite3_str_new(0);
  int i;
  sqlite3_str_appendall(pSql, "SELECT ");
  if (nCol == 1) {
    sqlite3_str_appendall(pSql, "CASE WHEN (?2 OR typeof(?1)='text') AND json_valid(?1)"
                                " AND json_type(?1)='object' THEN json(?1) ELSE ");
  }
  for (i = CR_BUILD_CHUNK; i < nCol; i += CR_BUILD_CHUNK)
    sqlite3_str_appendall(pSql, "json_set(");
  sqlite3_str_appendall(pSql, "json_object(");
  for (i = 0; i < nCol; i++) {
    const char *zName = sqlite3_column_name(pQuery, i);
    if (i > 0 && i % CR_BUILD_CHUNK == 0) sqlite3_str_appendall(pSql, ")");
    if (i < CR_BUILD_CHUNK) {
      sqlite3_str_appendf(pSql, "%s%Q, ", i ? ", " : "", zName);
    } else {
      char *zPath = sqlite3_mprintf("$.\"%s\"", zName);
      sqlite3_str_appendf(pSql, ", %Q, ", zPath);
      sqlite3_free(zPath);
    }
    cr_build_value(pSql, i);
  }
  sqlite3_str_appendall(pSql, nCol == 1 ? ") END" : ")");
  return sqlite3_str_finish(pSql);
}

/* Column names become attribute names: two alike would be ambiguous, and
** past the first CR_BUILD_CHUNK a name is a JSON path label, which cannot
** hold a double quote. */
static int cr_check_columns(sqlite3_stmt *pQuery, char **pzErr) {
  int nCol = sqlite3_column_count(pQuery);
  int i, j;
  for (i = 0; i < nCol; i++) {
    if (i >= CR_BUILD_CHUNK && strchr(sqlite3_column_name(pQuery, i), '"')) {
      cr_set_error(pzErr,
                   "query column %d is named %s; a double quote cannot be used in the "
                   "name of a column past the %dth",
                   i + 1, sqlite3_column_name(pQuery, i), CR_BUILD_CHUNK);
      return SQLITE_ERROR;
    }
    for (j = 0; j < i; j++) {
      if (strcmp(sqlite3_column_name(pQuery, i), sqlite3_column_name(pQuery, j)) == 0) {
        cr_set_error(pzErr, "query returns two columns named \"%s\"; give them distinct names",
                     sqlite3_column_name(pQuery, i));
        return SQLITE_ERROR;
      }
    }
  }
  return SQLITE_OK;
}

/* ------------------------------------------------------------------------
** The shaper: record JSON (?1) -> body, placeholder values, key, group.
*/

/* Attribute zName is used in a JSON path ($."zName"), whose syntax has no
** escapes: names that JSON writes escaped could never match. */
static int cr_path_check(const cr_dest *pDest, const char *zName, const char *zKey, char **pzErr) {
  if (!cr_name_is_plain(zName)) {
    cr_set_error(pzErr,
                 "destination \"%s\": key \"%s\": attribute name \"%s\" holds a double quote, "
                 "a backslash or a control character",
                 pDest->zName, zKey, zName);
    return SQLITE_ERROR;
  }
  return SQLITE_OK;
}

/* Appends f(?1, path1, path2, ...) for the attributes azName, nested or
** concatenated by CR_BUILD_CHUNK (SQLite limits a function's arguments):
** zJoin NULL nests f (json_remove), else f takes each attribute's JSON
** text (?1 -> path, not json_extract: a number too large for a double
** would become Inf, which is no JSON and equal to any other such number)
** and the chunks are joined with zJoin. */
static int cr_shape_multi(const cr_dest *d, sqlite3_str *pSql, const char *zFunc, const char *zJoin,
                          char **azName, int nName, const char *zKey, char **pzErr) {
  int i, rc = SQLITE_OK;
  if (zJoin == 0) {
    for (i = CR_BUILD_CHUNK; i < nName; i += CR_BUILD_CHUNK)
      sqlite3_str_appendf(pSql, "%s(", zFunc);
    sqlite3_str_appendf(pSql, "%s(?1", zFunc);
  } else {
    sqlite3_str_appendf(pSql, "%s(", zFunc);
  }
  for (i = 0; rc == SQLITE_OK && i < nName; i++) {
    rc = cr_path_check(d, azName[i], zKey, pzErr);
    if (i > 0 && i % CR_BUILD_CHUNK == 0) {
      sqlite3_str_appendf(pSql, zJoin ? ") %s %s(" : "), ", zJoin, zFunc);
    } else if (zJoin == 0 || i > 0) {
      sqlite3_str_appendall(pSql, ", ");
    }
    sqlite3_str_appendf(pSql, zJoin ? "(?1 -> '$.\"%q\"')" : "'$.\"%q\"'", azName[i]);
  }
  sqlite3_str_appendall(pSql, ")");
  return rc;
}

/* Appends the shaper columns of each placeholder of the template t (named
** zKey in messages) and adds their number to *pnOut. */
static int cr_shape_places(const cr_dest *d, sqlite3_str *pSql, const cr_tmpl *t, const char *zKey,
                           int *pnOut, char **pzErr) {
  int i, rc = SQLITE_OK;
  for (i = 0; rc == SQLITE_OK && i < t->nPart; i++) {
    const char *zName = t->aPart[i].zText;
    if (!t->aPart[i].isPlaceholder) continue;
    rc = cr_path_check(d, zName, zKey, pzErr);
    /* type, value, and whether the JSON text escapes a NUL, which
    ** json_extract() of SQLite 3.40 would silently cut the value at */
    sqlite3_str_appendf(pSql,
                        ", json_type(?1,'$.\"%q\"'), json_extract(?1,'$.\"%q\"'),"
                        " instr(replace(?1 -> '$.\"%q\"', '\\\\', ''), '\\u0000')",
                        zName, zName, zName);
    *pnOut += CR_SHAPE_PER_PLACE;
  }
  return rc;
}

static int cr_shape_sql(cr_records *p, char **pzSql, char **pzErr) {
  const cr_dest *d = p->pDest;
  sqlite3_str *pSql = sqlite3_str_new(0);
  int nOut = 1;
  int rc = SQLITE_OK;

  sqlite3_str_appendall(pSql, "SELECT ");
  if (d->nExclude == 0) {
    sqlite3_str_appendall(pSql, "?1");
  } else {
    rc = cr_shape_multi(d, pSql, "json_remove", 0, d->azExclude, d->nExclude, "exclude", pzErr);
  }
  if (rc == SQLITE_OK) rc = cr_shape_places(d, pSql, &p->url, "url", &nOut, pzErr);
  p->iShapeKey = -1;
  if (rc == SQLITE_OK && d->zKey) {
    rc = cr_path_check(d, d->zKey, "key", pzErr);
    sqlite3_str_appendf(pSql,
                        ", json_type(?1,'$.\"%q\"'), CAST(json_extract(?1,'$.\"%q\"') AS TEXT),"
                        " json_quote(CAST(json_extract(?1,'$.\"%q\"') AS TEXT)),"
                        " instr(replace(?1 -> '$.\"%q\"', '\\\\', ''), '\\u0000')",
                        d->zKey, d->zKey, d->zKey, d->zKey);
    p->iShapeKey = nOut;
    nOut += 4;
  }
  p->iShapeGroup = -1;
  if (rc == SQLITE_OK && d->nGroupAttr > 0) {
    sqlite3_str_appendall(pSql, ", ");
    rc = cr_shape_multi(d, pSql, "json_array", "||", d->azGroupAttr, d->nGroupAttr,
                        "batch.attributes", pzErr);
    p->iShapeGroup = nOut;
  }
  *pzSql = sqlite3_str_finish(pSql);
  if (rc == SQLITE_OK && *pzSql == 0) rc = SQLITE_NOMEM;
  return rc;
}

/* Looks up each placeholder of t in params once, for records that lack it. */
static int cr_params_load(sqlite3 *db, const cr_dest *d, cr_tmpl *t, char **pzErr) {
  sqlite3_stmt *pStmt = 0;
  int i;
  int rc = cr_prepare(db, "SELECT json_extract(?1, '$.\"' || ?2 || '\"')", &pStmt, pzErr);
  if (rc == SQLITE_OK) {
    t->azParam = sqlite3_malloc(sizeof(char *) * (t->nPart + 1));
    if (t->azParam == 0)
      rc = SQLITE_NOMEM;
    else
      memset(t->azParam, 0, sizeof(char *) * (t->nPart + 1));
  }
  for (i = 0; rc == SQLITE_OK && i < t->nPart; i++) {
    if (!t->aPart[i].isPlaceholder || t->aPart[i].recordOnly) continue;
    sqlite3_bind_text(pStmt, 1, d->zParams ? d->zParams : "{}", -1, SQLITE_STATIC);
    sqlite3_bind_text(pStmt, 2, t->aPart[i].zText, -1, SQLITE_STATIC);
    if (sqlite3_step(pStmt) == SQLITE_ROW && sqlite3_column_type(pStmt, 0) != SQLITE_NULL) {
      t->azParam[i] = cr_strdup((const char *)sqlite3_column_text(pStmt, 0));
    }
    sqlite3_reset(pStmt);
  }
  sqlite3_finalize(pStmt);
  return rc;
}

static void cr_tmpl_clear(cr_tmpl *t) {
  int i;
  if (t->azParam == 0) return;
  for (i = 0; i < t->nPart; i++)
    sqlite3_free(t->azParam[i]);
  sqlite3_free(t->azParam);
  t->azParam = 0;
}

/* ------------------------------------------------------------------------
** `json` attributes: TEXT parsed as JSON.  SQLite drops the JSON subtype of
** a value that passes through a sorter (ORDER BY without an index), a UNION
** or a materialised CTE, so json_array('VIP') would arrive as the string
** "[\"VIP\"]"; the destination names the attributes that are JSON whatever
** path their value took.  The probe reads each one's text (and whether it
** holds a NUL), C checks it, and the fixer replaces it by its parse.
*/

/* Marks the record invalid; zMsg (from sqlite3_mprintf) is taken over. */
static void cr_record_invalid(cr_record *pRec, char *zMsg) {
  sqlite3_free(pRec->zError);
  if (pRec->zKey) {
    pRec->zError = sqlite3_mprintf("record %lld (key \"%s\"): %s", pRec->iRow, pRec->zKey, zMsg);
  } else {
    pRec->zError = sqlite3_mprintf("record %lld: %s", pRec->iRow, zMsg);
  }
  sqlite3_free(zMsg);
}

/* True if SQLite's json_valid() accepts z. */
static int cr_json_valid(sqlite3 *db, const char *z) {
  sqlite3_stmt *pStmt = 0;
  int valid = 0;
  if (sqlite3_prepare_v2(db, "SELECT json_valid(?1)", -1, &pStmt, 0) == SQLITE_OK) {
    sqlite3_bind_text(pStmt, 1, z, -1, SQLITE_STATIC);
    valid = sqlite3_step(pStmt) == SQLITE_ROW && sqlite3_column_int(pStmt, 0);
  }
  sqlite3_finalize(pStmt);
  return valid;
}

static int cr_json_attrs_prepare(cr_records *p, char **pzErr) {
  const cr_dest *d = p->pDest;
  sqlite3_str *pProbe = sqlite3_str_new(0);
  sqlite3_str *pFix = sqlite3_str_new(0);
  char *zProbe, *zFix;
  int i, rc = SQLITE_OK;
  sqlite3_str_appendall(pFix, "SELECT ");
  for (i = 0; rc == SQLITE_OK && i < d->nJson; i++) {
    const char *z = d->azJson[i];
    rc = cr_path_check(d, z, "json", pzErr);
    sqlite3_str_appendf(pProbe,
                        "%sCASE WHEN json_type(?1,'$.\"%q\"')='text' THEN ?1->>'$.\"%q\"' END,"
                        " instr(replace(?1 -> '$.\"%q\"', '\\\\', ''), '\\u0000')",
                        i ? ", " : "SELECT ", z, z, z);
    sqlite3_str_appendall(pFix, "json_replace(");
  }
  sqlite3_str_appendall(pFix, "?1");
  for (i = 0; rc == SQLITE_OK && i < d->nJson; i++) {
    const char *z = d->azJson[i];
    /* -> keeps numbers exact and marks its result as JSON */
    sqlite3_str_appendf(pFix,
                        ", '$.\"%q\"', CASE WHEN json_type(?1,'$.\"%q\"')='text'"
                        " THEN json(?1->>'$.\"%q\"') ELSE ?1->'$.\"%q\"' END)",
                        z, z, z, z);
  }
  zProbe = sqlite3_str_finish(pProbe);
  zFix = sqlite3_str_finish(pFix);
  if (rc == SQLITE_OK && (zProbe == 0 || zFix == 0)) rc = SQLITE_NOMEM;
  if (rc == SQLITE_OK) rc = cr_prepare(p->db, zProbe, &p->pJsonProbe, pzErr);
  if (rc == SQLITE_OK) rc = cr_prepare(p->db, zFix, &p->pJsonFix, pzErr);
  sqlite3_free(zProbe);
  sqlite3_free(zFix);
  return rc;
}

/* Why the text z of `json` attribute zName (iNul: where the record's JSON
** escapes a NUL in it) cannot be parsed, or NULL if it can. */
static char *cr_json_attr_problem(sqlite3 *db, const char *zName, const char *z, int iNul) {
  if (iNul > 0) {
    return sqlite3_mprintf("attribute \"%s\" (listed in \"json\") holds a NUL character", zName);
  }
  if (!cr_json_valid(db, z) || !cr_json_names_are_strings(z)) {
    return sqlite3_mprintf("attribute \"%s\" (listed in \"json\") is not valid JSON: %.60s%s",
                           zName, z, strlen(z) > 60 ? "..." : "");
  }
  return 0;
}

/* Parses the `json` attributes of the record, or marks it invalid. */
static int cr_json_attrs_apply(cr_records *p, cr_record *pRec) {
  const cr_dest *d = p->pDest;
  char *zWhy = 0;
  int i, nText = 0, rc = SQLITE_OK;
  sqlite3_bind_text(p->pJsonProbe, 1, pRec->zJson, -1, SQLITE_STATIC);
  if (sqlite3_step(p->pJsonProbe) != SQLITE_ROW) {
    zWhy = sqlite3_mprintf("cannot read its \"json\" attributes: %s", sqlite3_errmsg(p->db));
  }
  for (i = 0; zWhy == 0 && i < d->nJson; i++) {
    const char *z = (const char *)sqlite3_column_text(p->pJsonProbe, 2 * i);
    if (z == 0) continue;
    nText++;
    zWhy =
        cr_json_attr_problem(p->db, d->azJson[i], z, sqlite3_column_int(p->pJsonProbe, 2 * i + 1));
  }
  sqlite3_reset(p->pJsonProbe);
  if (zWhy == 0 && nText > 0) {
    sqlite3_bind_text(p->pJsonFix, 1, pRec->zJson, -1, SQLITE_STATIC);
    if (sqlite3_step(p->pJsonFix) == SQLITE_ROW) {
      char *zNew = cr_strdup((const char *)sqlite3_column_text(p->pJsonFix, 0));
      rc = zNew ? SQLITE_OK : SQLITE_NOMEM;
      sqlite3_free(pRec->zJson);
      pRec->zJson = zNew;
    } else {
      zWhy = sqlite3_mprintf("cannot parse its \"json\" attributes: %s", sqlite3_errmsg(p->db));
    }
    sqlite3_reset(p->pJsonFix);
  }
  if (zWhy) cr_record_invalid(pRec, zWhy);
  return rc;
}

/* ------------------------------------------------------------------------
** Opening
*/

static int cr_records_init(sqlite3 *db, const cr_dest *pDest, const char *zApiBase,
                           cr_records **pp) {
  cr_records *p = sqlite3_malloc(sizeof(*p));
  *pp = p;
  if (p == 0) return SQLITE_NOMEM;
  memset(p, 0, sizeof(*p));
  p->db = db;
  p->pDest = pDest;
  p->url.aPart = pDest->aUrlPart;
  p->url.nPart = pDest->nUrlPart;
  p->url.isPath = pDest->zUrl[0] == '/';
  p->zApiBase = cr_strdup(zApiBase);
  return p->zApiBase ? SQLITE_OK : SQLITE_NOMEM;
}

static int cr_records_prepare_shaper(cr_records *p, char **pzErr) {
  char *zSql = 0;
  int rc = cr_shape_sql(p, &zSql, pzErr);
  if (rc == SQLITE_OK) rc = cr_prepare(p->db, zSql, &p->pShape, pzErr);
  sqlite3_free(zSql);
  if (rc == SQLITE_OK) rc = cr_params_load(p->db, p->pDest, &p->url, pzErr);
  if (rc == SQLITE_OK && p->pDest->nJson > 0) rc = cr_json_attrs_prepare(p, pzErr);
  if (rc == SQLITE_OK && p->pDest->zKey) rc = cr_keyset_open(&p->pSeen, pzErr);
  if (rc == SQLITE_OK && (p->pQuery == 0 || p->nCol == 1)) {
    /* A record from JSON text may name a member twice; json_remove() and
    ** json_extract() would see only the first, the body keep both. */
    rc = cr_prepare(p->db, "SELECT key FROM json_each(?1) GROUP BY key HAVING count(*) > 1 LIMIT 1",
                    &p->pDup, pzErr);
  }
  return rc;
}

int cr_records_open(sqlite3 *db, const cr_dest *pDest, const char *zApiBase, const char *zQuery,
                    cr_records **pp, char **pzErr) {
  char *zBuild = 0;
  int rc = cr_records_init(db, pDest, zApiBase, pp);
  if (rc == SQLITE_OK && zQuery == 0) {
    cr_set_error(pzErr, "query is NULL");
    rc = SQLITE_ERROR;
  }
  if (rc == SQLITE_OK) rc = cr_query_prepare(db, zQuery, &(*pp)->pQuery, pzErr);
  if (rc == SQLITE_OK) rc = cr_check_columns((*pp)->pQuery, pzErr);
  if (rc == SQLITE_OK) {
    (*pp)->nCol = sqlite3_column_count((*pp)->pQuery);
    zBuild = cr_build_sql((*pp)->pQuery);
    rc = zBuild ? cr_prepare(db, zBuild, &(*pp)->pBuild, pzErr) : SQLITE_NOMEM;
  }
  if (rc == SQLITE_OK) {
    /* SQLite 3.45 and later: jsonb() values are BLOBs holding JSON.  Older
    ** versions have no two-argument json_valid(): no statement, and every
    ** BLOB stays binary data. */
    sqlite3_prepare_v2(db, "SELECT CASE WHEN json_valid(?1, 8) THEN json(?1) END", -1,
                       &(*pp)->pJsonb, 0);
  }
  sqlite3_free(zBuild);
  if (rc == SQLITE_OK) rc = cr_records_prepare_shaper(*pp, pzErr);
  if (rc != SQLITE_OK) {
    cr_records_close(*pp);
    *pp = 0;
  }
  return rc;
}

int cr_records_open_json(sqlite3 *db, const cr_dest *pDest, const char *zApiBase, const char *zJson,
                         cr_records **pp, char **pzErr) {
  sqlite3_stmt *pStmt = 0;
  int rc = cr_records_init(db, pDest, zApiBase, pp);
  if (rc == SQLITE_OK) {
    rc = cr_prepare(db,
                    "SELECT CASE WHEN json_valid(?1) AND json_type(?1)='object'"
                    " THEN json(?1) END",
                    &pStmt, pzErr);
  }
  if (rc == SQLITE_OK && !cr_json_names_are_strings(zJson)) {
    cr_set_error(pzErr, "record_json is not valid JSON (a member name is not a string)");
    rc = SQLITE_ERROR;
  }
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(pStmt, 1, zJson, -1, SQLITE_STATIC);
    if (sqlite3_step(pStmt) == SQLITE_ROW && sqlite3_column_type(pStmt, 0) == SQLITE_TEXT) {
      (*pp)->zJson = cr_strdup((const char *)sqlite3_column_text(pStmt, 0));
    } else {
      cr_set_error(pzErr, "record_json is not a JSON object: %.60s", zJson);
      rc = SQLITE_ERROR;
    }
  }
  sqlite3_finalize(pStmt);
  if (rc == SQLITE_OK) rc = cr_records_prepare_shaper(*pp, pzErr);
  if (rc != SQLITE_OK) {
    cr_records_close(*pp);
    *pp = 0;
  }
  return rc;
}

void cr_records_close(cr_records *p) {
  if (p == 0) return;
  sqlite3_finalize(p->pQuery);
  sqlite3_finalize(p->pBuild);
  sqlite3_finalize(p->pShape);
  cr_keyset_close(p->pSeen);
  sqlite3_finalize(p->pDup);
  sqlite3_finalize(p->pJsonProbe);
  sqlite3_finalize(p->pJsonFix);
  sqlite3_finalize(p->pJsonb);
  cr_tmpl_clear(&p->url);
  sqlite3_free(p->zJson);
  sqlite3_free(p->zApiBase);
  sqlite3_free(p);
}

void cr_record_clear(cr_record *pRec) {
  sqlite3_free(pRec->zJson);
  sqlite3_free(pRec->zBody);
  sqlite3_free(pRec->zUrl);
  sqlite3_free(pRec->zKey);
  sqlite3_free(pRec->zKeyJson);
  sqlite3_free(pRec->zHash);
  sqlite3_free(pRec->zGroup);
  sqlite3_free(pRec->zError);
  memset(pRec, 0, sizeof(*pRec));
}

/* ------------------------------------------------------------------------
** Building one record
*/

/* True if column i's value would be read as JSON by the builder: it has
** the JSON subtype, or it is the only column and TEXT. */
static int cr_column_is_json(sqlite3_stmt *pQuery, int i) {
  sqlite3_value *v = sqlite3_column_value(pQuery, i);
  return sqlite3_value_type(v) == SQLITE_TEXT &&
         (sqlite3_value_subtype(v) == 'J' || sqlite3_column_count(pQuery) == 1);
}

/* An infinite REAL cannot be JSON, nor JSON text that SQLite 3.40 would
** mangle (text that is not JSON at all is just a string): names the first
** such column.  BLOBs are checked as they are bound. */
static char *cr_row_unrepresentable(sqlite3 *db, sqlite3_stmt *pQuery) {
  int i;
  for (i = 0; i < sqlite3_column_count(pQuery); i++) {
    int t = sqlite3_column_type(pQuery, i);
    /* only a TEXT value is read as text: reading a BLOB so would make it TEXT */
    const char *zText = t == SQLITE_TEXT ? (const char *)sqlite3_column_text(pQuery, i) : 0;
    if (cr_column_is_json(pQuery, i) && !cr_json_names_are_strings(zText) &&
        cr_json_valid(db, zText)) {
      return sqlite3_mprintf("column \"%s\" holds malformed JSON (a member name that is not a "
                             "string)",
                             sqlite3_column_name(pQuery, i));
    }
    if (t == SQLITE_FLOAT && isinf(sqlite3_column_double(pQuery, i))) {
      return sqlite3_mprintf("column \"%s\" is an infinite number; JSON cannot hold it",
                             sqlite3_column_name(pQuery, i));
    }
  }
  return 0;
}

/* The shortest decimal text that reads back as exactly r (finite). */
static void cr_real_text(double r, char *zBuf, int nBuf) {
  int nDigit;
  for (nDigit = 15; nDigit <= 17; nDigit++) {
    snprintf(zBuf, nBuf, "%.*g", nDigit, r);
    if (strtod(zBuf, 0) == r) break;
  }
  /* A REAL stays a REAL to the reader: 1.0, not 1. */
  if (strpbrk(zBuf, ".e") == 0 && (int)strlen(zBuf) + 3 <= nBuf) strcat(zBuf, ".0");
}

/* Binds the BLOB v of column i: a JSONB value as the JSON text it holds;
** any other BLOB makes the record invalid, JSON cannot hold binary data.
** False if it did. */
static int cr_bind_blob(cr_records *p, cr_record *pRec, int i, sqlite3_value *v) {
  const char *zJson = 0;
  if (p->pJsonb) {
    sqlite3_bind_value(p->pJsonb, 1, v);
    if (sqlite3_step(p->pJsonb) == SQLITE_ROW)
      zJson = (const char *)sqlite3_column_text(p->pJsonb, 0);
  }
  if (zJson) {
    sqlite3_bind_text(p->pBuild, 2 * i + 1, zJson, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(p->pBuild, 2 * i + 2, 1);
  } else {
    cr_record_invalid(pRec, sqlite3_mprintf("column \"%s\" is a BLOB; JSON cannot hold binary data",
                                            sqlite3_column_name(p->pQuery, i)));
  }
  if (p->pJsonb) sqlite3_reset(p->pJsonb);
  return zJson != 0;
}

/* Runs the builder on the current row of the query. */
static int cr_record_build(cr_records *p, cr_record *pRec, char **pzErr) {
  char *zBad = cr_row_unrepresentable(p->db, p->pQuery);
  int i, rc = SQLITE_OK;
  if (zBad) {
    cr_record_invalid(pRec, zBad);
    return SQLITE_OK;
  }
  for (i = 0; i < p->nCol; i++) {
    sqlite3_value *v = sqlite3_column_value(p->pQuery, i);
    if (sqlite3_value_type(v) == SQLITE_BLOB) {
      if (!cr_bind_blob(p, pRec, i, v)) return SQLITE_OK;
      continue;
    }
    if (sqlite3_value_type(v) == SQLITE_FLOAT) {
      /* SQLite's JSON writes 15 digits; the shortest exact text, read by
      ** json() as a number literal, keeps every bit of a REAL. */
      char zNum[32];
      cr_real_text(sqlite3_value_double(v), zNum, sizeof(zNum));
      sqlite3_bind_text(p->pBuild, 2 * i + 1, zNum, -1, SQLITE_TRANSIENT);
      sqlite3_bind_int(p->pBuild, 2 * i + 2, 1);
      continue;
    }
    sqlite3_bind_value(p->pBuild, 2 * i + 1, v);
    sqlite3_bind_int(p->pBuild, 2 * i + 2, sqlite3_value_subtype(v) == 'J');
  }
  if (sqlite3_step(p->pBuild) == SQLITE_ROW) {
    pRec->zJson = cr_strdup((const char *)sqlite3_column_text(p->pBuild, 0));
    if (pRec->zJson == 0) rc = SQLITE_NOMEM;
  } else {
    cr_record_invalid(pRec, sqlite3_mprintf("cannot build JSON: %s", sqlite3_errmsg(p->db)));
  }
  sqlite3_reset(p->pBuild);
  (void)pzErr;
  return rc;
}

static int cr_unreserved(unsigned char c, int allDots) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '~' || (c == '.' && !allDots);
}

/* Appends z[0..n) percent-encoded: only RFC 3986 unreserved characters
** stay, so a value can never change the URL's host, path, query or
** fragment.  A value of only dots is encoded too: "." and ".." would be
** path segments that servers resolve.  Unreserved characters go a run at
** a time (ids are long). */
static void cr_percent_encode(sqlite3_str *pOut, const char *z, int n) {
  static const char hex[] = "0123456789ABCDEF";
  int allDots = n > 0 && (int)strspn(z, ".") >= n;
  int i, j;
  for (i = 0; i < n; i = j + 1) {
    for (j = i; j < n && cr_unreserved((unsigned char)z[j], allDots); j++) {
    }
    sqlite3_str_append(pOut, z + i, j - i);
    if (j < n) {
      unsigned char c = (unsigned char)z[j];
      char a[3] = {'%', hex[c >> 4], hex[c & 15]};
      sqlite3_str_append(pOut, a, 3);
    }
  }
}

/* The value of part i of the template t for a shaped record (its
** placeholder's columns start at iCol of pShape; *pn bytes, which may
** include NUL), or NULL with *pzWhy set.  zRemoteId, if not NULL, is the
** value of {remote_id}. */
static const char *cr_placeholder_value(const cr_tmpl *t, sqlite3_stmt *pShape, int i, int iCol,
                                        const char *zRemoteId, int *pn, char **pzWhy) {
  const cr_url_part *pPart = &t->aPart[i];
  const char *zType = (const char *)sqlite3_column_text(pShape, iCol);
  const char *zPrefix = pPart->recordOnly ? "record." : "";
  if (zRemoteId && !pPart->recordOnly && strcmp(pPart->zText, "remote_id") == 0) {
    *pn = (int)strlen(zRemoteId);
    return zRemoteId;
  }
  if (zType && (strcmp(zType, "true") == 0 || strcmp(zType, "false") == 0)) {
    *pn = (int)strlen(zType);
    return zType;
  }
  if (zType && sqlite3_column_int(pShape, iCol + 2) > 0) {
    *pzWhy = sqlite3_mprintf("URL placeholder {%s%s}: attribute \"%s\" holds a NUL character",
                             zPrefix, pPart->zText, pPart->zText);
    return 0;
  }
  if (zType && strcmp(zType, "object") != 0 && strcmp(zType, "array") != 0 &&
      strcmp(zType, "null") != 0) {
    const char *z = (const char *)sqlite3_column_text(pShape, iCol + 1);
    *pn = sqlite3_column_bytes(pShape, iCol + 1);
    if (*pn == 0) {
      /* An empty value leaves "//" or, next to a literal dot, a "."
      ** segment that would be resolved away: never a resource. */
      *pzWhy = sqlite3_mprintf("URL placeholder {%s%s}: attribute \"%s\" is empty", zPrefix,
                               pPart->zText, pPart->zText);
      return 0;
    }
    return z;
  }
  if (zType && (strcmp(zType, "object") == 0 || strcmp(zType, "array") == 0)) {
    *pzWhy = sqlite3_mprintf("URL placeholder {%s%s}: attribute \"%s\" is a JSON %s", zPrefix,
                             pPart->zText, pPart->zText, zType);
    return 0;
  }
  /* An empty params value is no resource either. */
  if (t->azParam[i] && t->azParam[i][0]) {
    *pn = (int)strlen(t->azParam[i]);
    return t->azParam[i];
  }
  *pzWhy = sqlite3_mprintf("URL placeholder {%s%s} has no value: attribute \"%s\" is %s%s", zPrefix,
                           pPart->zText, pPart->zText, zType ? "NULL" : "missing",
                           pPart->recordOnly ? ""
                           : t->azParam[i]   ? " and params has it empty"
                                             : " and params has none");
  return 0;
}

/* Expands the template t for the record shaped by pShape (placeholder
** columns from CR_SHAPE_PLACE on) into *pzUrl (NULL if out of memory).
** Returns why the record is invalid, or NULL. */
static char *cr_tmpl_expand(const cr_tmpl *t, const char *zApiBase, sqlite3_stmt *pShape,
                            const char *zRemoteId, char **pzUrl) {
  sqlite3_str *pUrl = sqlite3_str_new(0);
  char *zWhy = 0;
  int i, iCol = CR_SHAPE_PLACE;
  if (t->isPath) sqlite3_str_appendall(pUrl, zApiBase);
  for (i = 0; i < t->nPart && zWhy == 0; i++) {
    if (!t->aPart[i].isPlaceholder) {
      sqlite3_str_appendall(pUrl, t->aPart[i].zText);
    } else {
      int nVal = 0;
      const char *zVal = cr_placeholder_value(t, pShape, i, iCol, zRemoteId, &nVal, &zWhy);
      if (zVal) cr_percent_encode(pUrl, zVal, nVal);
      iCol += CR_SHAPE_PER_PLACE;
    }
  }
  *pzUrl = sqlite3_str_finish(pUrl);
  if (zWhy == 0 && *pzUrl && strlen(*pzUrl) > CR_MAX_URL) {
    zWhy = sqlite3_mprintf("its URL is %lld bytes, more than the limit of %d",
                           (sqlite3_int64)strlen(*pzUrl), CR_MAX_URL);
  }
  return zWhy;
}

/* Expands the URL template for the current shaped record. */
static void cr_url_expand(cr_records *p, cr_record *pRec) {
  char *zWhy = cr_tmpl_expand(&p->url, p->zApiBase, p->pShape, 0, &pRec->zUrl);
  if (zWhy == 0 && pRec->zBody && strlen(pRec->zBody) > CR_MAX_BODY) {
    zWhy = sqlite3_mprintf("its body is %lld bytes, more than the limit of %d",
                           (sqlite3_int64)strlen(pRec->zBody), CR_MAX_BODY);
  }
  if (zWhy) cr_record_invalid(pRec, zWhy);
}

/* Reads the key; NULL, nested or repeated keys make the record invalid. */
static int cr_record_key(cr_records *p, cr_record *pRec, char **pzErr) {
  const char *zType = (const char *)sqlite3_column_text(p->pShape, p->iShapeKey);
  int rc = SQLITE_OK, isNew = 0;
  if (zType == 0 || strcmp(zType, "null") == 0) {
    cr_record_invalid(
        pRec, sqlite3_mprintf("key \"%s\" is %s", p->pDest->zKey, zType ? "NULL" : "missing"));
    return SQLITE_OK;
  }
  if (strcmp(zType, "object") == 0 || strcmp(zType, "array") == 0) {
    cr_record_invalid(pRec, sqlite3_mprintf("key \"%s\" is a JSON %s", p->pDest->zKey, zType));
    return SQLITE_OK;
  }
  if (sqlite3_column_int(p->pShape, p->iShapeKey + 3) > 0) {
    cr_record_invalid(pRec, sqlite3_mprintf("key \"%s\" holds a NUL character", p->pDest->zKey));
    return SQLITE_OK;
  }
  pRec->zKey = cr_strdup((const char *)sqlite3_column_text(p->pShape, p->iShapeKey + 1));
  pRec->zKeyJson = cr_strdup((const char *)sqlite3_column_text(p->pShape, p->iShapeKey + 2));
  if (pRec->zKey == 0 || pRec->zKeyJson == 0) return SQLITE_NOMEM;
  rc = cr_keyset_add(p->pSeen, pRec->zKey, &isNew, pzErr);
  if (rc == SQLITE_OK && !isNew) {
    cr_record_invalid(pRec, sqlite3_mprintf("duplicate key: an earlier record of this run has "
                                            "the same key"));
  }
  return rc;
}

/* Takes the record apart: body, URL, key and grouping values. */
/* Names a member that the record has twice, or NULL. */
static char *cr_record_dup_name(cr_records *p, const cr_record *pRec) {
  char *zDup = 0;
  if (p->pDup == 0) return 0;
  sqlite3_bind_text(p->pDup, 1, pRec->zJson, -1, SQLITE_STATIC);
  if (sqlite3_step(p->pDup) == SQLITE_ROW) {
    zDup = sqlite3_mprintf("attribute \"%s\" appears twice", sqlite3_column_text(p->pDup, 0));
  }
  sqlite3_reset(p->pDup);
  return zDup;
}

static int cr_record_shape(cr_records *p, cr_record *pRec, char **pzErr) {
  int rc = SQLITE_OK;
  char *zDup = cr_record_dup_name(p, pRec);
  if (zDup) {
    cr_record_invalid(pRec, zDup);
    return SQLITE_OK;
  }
  sqlite3_bind_text(p->pShape, 1, pRec->zJson, -1, SQLITE_STATIC);
  if (sqlite3_step(p->pShape) != SQLITE_ROW) {
    cr_set_error(pzErr, "cannot shape record %lld: %s", pRec->iRow, sqlite3_errmsg(p->db));
    sqlite3_reset(p->pShape);
    return SQLITE_ERROR;
  }
  pRec->zBody = cr_strdup((const char *)sqlite3_column_text(p->pShape, CR_SHAPE_BODY));
  if (p->iShapeKey >= 0) rc = cr_record_key(p, pRec, pzErr);
  if (rc == SQLITE_OK) cr_url_expand(p, pRec);
  if (rc == SQLITE_OK && p->iShapeGroup >= 0) {
    pRec->zGroup = cr_strdup((const char *)sqlite3_column_text(p->pShape, p->iShapeGroup));
  }
  sqlite3_reset(p->pShape);
  return rc;
}

int cr_records_next(cr_records *p, cr_record *pRec, char **pzErr) {
  int rc = SQLITE_OK;
  memset(pRec, 0, sizeof(*pRec));
  if (p->pQuery == 0) {
    if (p->zJson == 0) return SQLITE_DONE;
    pRec->zJson = p->zJson;
    p->zJson = 0;
  } else {
    int step = sqlite3_step(p->pQuery);
    if (step == SQLITE_DONE) return SQLITE_DONE;
    if (step != SQLITE_ROW) {
      cr_set_error(pzErr, "query failed after %lld records: %s", p->iRow, sqlite3_errmsg(p->db));
      return step;
    }
  }
  pRec->iRow = ++p->iRow;
  if (p->pQuery) rc = cr_record_build(p, pRec, pzErr);
  if (rc == SQLITE_OK && pRec->zError == 0 && p->pJsonProbe) rc = cr_json_attrs_apply(p, pRec);
  if (rc == SQLITE_OK && pRec->zError == 0) rc = cr_record_shape(p, pRec, pzErr);
  return rc == SQLITE_OK ? SQLITE_ROW : rc;
}

int cr_query_count(sqlite3 *db, const char *zQuery, sqlite3_int64 *pnRows, char **pzErr) {
  sqlite3_stmt *pQuery = 0;
  sqlite3_stmt *pCount = 0;
  char *zSql = 0;
  int rc = cr_query_prepare(db, zQuery, &pQuery, pzErr);
  if (rc == SQLITE_OK) {
    zSql = sqlite3_mprintf("SELECT count(*) FROM (%s)", sqlite3_sql(pQuery));
    rc = zSql ? cr_prepare(db, zSql, &pCount, pzErr) : SQLITE_NOMEM;
  }
  if (rc == SQLITE_OK && sqlite3_step(pCount) != SQLITE_ROW) {
    cr_set_error(pzErr, "query: %s", sqlite3_errmsg(db));
    rc = SQLITE_ERROR;
  }
  if (rc == SQLITE_OK) *pnRows = sqlite3_column_int64(pCount, 0);
  sqlite3_finalize(pCount);
  sqlite3_finalize(pQuery);
  sqlite3_free(zSql);
  return rc;
}

/* ------------------------------------------------------------------------
** The update URL of sync "upsert"
*/

/* Shapes zRecordJson for the placeholders of t: one row, the same columns
** as the shaper's from CR_SHAPE_PLACE on. */
static int cr_update_shape(sqlite3 *db, const cr_dest *pDest, const cr_tmpl *t,
                           const char *zRecordJson, sqlite3_stmt **ppStmt, char **pzWhy) {
  sqlite3_str *pSql = sqlite3_str_new(0);
  char *zSql;
  int nOut = 1;
  int rc;
  sqlite3_str_appendall(pSql, "SELECT NULL");
  rc = cr_shape_places(pDest, pSql, t, "update.url", &nOut, pzWhy);
  zSql = sqlite3_str_finish(pSql);
  if (rc == SQLITE_OK && zSql == 0) rc = SQLITE_NOMEM;
  if (rc == SQLITE_OK) rc = cr_prepare(db, zSql, ppStmt, pzWhy);
  sqlite3_free(zSql);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(*ppStmt, 1, zRecordJson, -1, SQLITE_STATIC);
    if (sqlite3_step(*ppStmt) != SQLITE_ROW) {
      rc = sqlite3_errcode(db) == SQLITE_NOMEM ? SQLITE_NOMEM : SQLITE_ERROR;
      cr_set_error(pzWhy, "update.url: cannot read the record: %s", sqlite3_errmsg(db));
    }
  }
  return rc;
}

int cr_record_update_url(sqlite3 *db, const cr_dest *pDest, const char *zApiBase,
                         const char *zRecordJson, const char *zRemoteId, char **pzUrl,
                         char **pzWhy) {
  cr_tmpl t = {pDest->aUpdateUrlPart, pDest->nUpdateUrlPart, 0, 0};
  sqlite3_stmt *pStmt = 0;
  char *zWhy = 0;
  int rc = SQLITE_OK;
  *pzUrl = 0;
  *pzWhy = 0;
  if (pDest->zUpdateUrl == 0) {
    *pzWhy = sqlite3_mprintf("destination \"%s\" has no update.url", pDest->zName);
    return *pzWhy ? SQLITE_OK : SQLITE_NOMEM;
  }
  if (zRemoteId == 0 || zRemoteId[0] == 0) {
    /* The response that created it had nothing at id_path. */
    *pzWhy = sqlite3_mprintf("update.url: no remote id is known for the record (nothing was "
                             "found at \"%s\" in the response that created it)",
                             pDest->zIdPath ? pDest->zIdPath : "$.id");
    return *pzWhy ? SQLITE_OK : SQLITE_NOMEM;
  }
  t.isPath = pDest->zUpdateUrl[0] == '/';
  rc = cr_update_shape(db, pDest, &t, zRecordJson, &pStmt, pzWhy);
  if (rc == SQLITE_OK) rc = cr_params_load(db, pDest, &t, pzWhy);
  if (rc == SQLITE_OK) zWhy = cr_tmpl_expand(&t, zApiBase, pStmt, zRemoteId, pzUrl);
  if (rc == SQLITE_OK && *pzUrl == 0) rc = SQLITE_NOMEM;
  if (rc == SQLITE_OK && zWhy) {
    *pzWhy = sqlite3_mprintf("update.url: %z", zWhy);
    sqlite3_free(*pzUrl);
    *pzUrl = 0;
    if (*pzWhy == 0) rc = SQLITE_NOMEM;
  } else {
    sqlite3_free(zWhy);
  }
  sqlite3_finalize(pStmt);
  cr_tmpl_clear(&t);
  return rc;
}
