/*
** cr_config.c - parses and validates a destination's JSON config.
**
** A destination (README "Destination config") is a JSON object kept in the config
** column of callrail_destinations.  callrail_destination() checks it when
** it is saved, and every use (send, preview, test) parses it again with the
** same code, so a config that was accepted always means the same thing.
**
**   SELECT callrail_destination('leads', '{
**     "credential": "main",
**     "url": "/v3/a/{account_id}/form_submissions.json",
**     "params": {"account_id": "ACC8154748ae6bd4e278a7cddd38a662f4f"},
**     "key": "lead_id",
**     "batch": {"size": 50, "wrap": "form_submissions"},
**     "retry": {"max_attempts": 3}
**   }');
**
** Everything is checked before anything is sent: unknown and duplicate
** keys, each value's JSON type, ranges, allowed strings, the headers and the
** URL template.  The first problem, in the order the keys are written,
** becomes the error, naming the destination and the key:
**
**   destination "leads": key "concurrency" must be an integer from 1 to 64, got "8" (text)
**   destination "leads": unknown key "batch.sise"
**   destination "leads": key "url": unterminated placeholder starting at position 7
**
** Why so strict: a misspelt key that was silently ignored would send
** requests the user never asked for (think "concurency": 1 against a
** rate-limited API), and a string "8" accepted where a number belongs hides
** a config written by a broken script.  When the JSON type is the problem the
** message shows it, next to the value as it was written.
**
** All JSON is read by SQLite itself: json_valid() for the document, then
** json_each() run on the caller's connection walks one object or array at a
** time, in document order; a nested object is walked by running json_each()
** again on the member's value.  There is no JSON parser in this file.
**
** Keys are table-driven: each object (top level, batch, retry, rate_limit)
** has an array of cfg_key giving the name, a handler that checks the value,
** and for plain integers and booleans the range and the cr_dest field to
** fill.  Cross-key rules (required keys, batch grouping, retry delays) are
** checked once the whole object was walked.
**
** The URL templates (`url`, and `update.url` of sync "upsert") are split
** here, once, into literal runs and placeholders (cr_url_part), so that
** building a request is a plain loop per record.  Each must name an account
** (/v3/a/{account_id}/...): every CallRail endpoint a destination writes to
** is under one, and the pacer counts quota per account.
**
** Rules that depend on the credential (origins, no batch against CallRail
** itself) are in cr_dest_check_cred() (callrail.c): a credential can be
** re-pointed after the destination was saved.
*/
#include "cr_internal.h"
SQLITE_EXTENSION_INIT3

#include <stdarg.h>
#include <stddef.h>
#include <string.h>

/* GET last: reads (callrail_get) are recorded too, but no destination sends it. */
const char *const cr_method_names[5] = {"POST", "PUT", "PATCH", "DELETE", "GET"};

/* Values longer than this many bytes are cut short in error messages. */
#define CFG_MAX_SHOWN 60

#define CFG_COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

typedef struct cfg_ctx cfg_ctx;
typedef struct cfg_item cfg_item;
typedef struct cfg_key cfg_key;
typedef struct cfg_obj cfg_obj;

/* The state of one cr_dest_parse() call. */
struct cfg_ctx {
  sqlite3 *db;       /* runs json_each() */
  const char *zName; /* destination name, for messages */
  cr_dest *pDest;    /* being filled in */
  char **pzErr;
};

/* One member of an object, or element of an array, as json_each() sees it.
** The pointers stay valid while the visitor of that member runs. */
struct cfg_item {
  const char *zKey;   /* member name; NULL for an array element */
  char *zPath;        /* "concurrency", "batch.size", "exclude[1]": for messages */
  const char *zType;  /* null, true, false, integer, real, text, array, object */
  const char *zText;  /* a string's content; the JSON text of an array or object */
  int nText;          /* bytes in zText */
  sqlite3_int64 iVal; /* an integer's value, if isInt64 */
  int isInt64;        /* an integer that fits in 64 bits */
  int hasNul;         /* a string holding a NUL character (\u0000) */
  const char *zJson;  /* the value as written in the config */
  int isDup;          /* an earlier member of the object has the same name */
};

/* A key of a config object.  The handler checks the member's value and
** stores it; the generic handlers (cfg_int, cfg_bool, ...) use iMin, iMax
** and the field at offset iOff of cr_dest. */
typedef int (*cfg_handler)(cfg_ctx *, const cfg_item *, const cfg_key *);
struct cfg_key {
  const char *zKey;
  cfg_handler xHandler;
  sqlite3_int64 iMin, iMax; /* range of an integer */
  size_t iOff;              /* offsetof(cr_dest, field) */
};

/* An object being walked: its keys and which of them were seen. */
struct cfg_obj {
  const cfg_key *aKey;
  int nKey;
  unsigned int seen; /* bit i: aKey[i] was present */
};

/* Called for each member of an object or element of an array. */
typedef int (*cfg_visit)(cfg_ctx *, const cfg_item *, void *);

/* The field at pKey->iOff of the cr_dest being filled, as a T*. */
#define CFG_FIELD(p, pKey, T) ((T *)((char *)(p)->pDest + (pKey)->iOff))

/* ------------------------------------------------------------------------
** Error messages
*/

static int cfg_nomem(cfg_ctx *p) {
  cr_set_error(p->pzErr, "out of memory");
  return SQLITE_NOMEM;
}

/* Sets the error to 'destination "NAME": ' followed by the formatted text. */
static int cfg_error(cfg_ctx *p, const char *zFmt, ...) {
  va_list ap;
  char *zMsg;
  va_start(ap, zFmt);
  zMsg = sqlite3_vmprintf(zFmt, ap);
  va_end(ap);
  if (zMsg == 0) return cfg_nomem(p);
  cr_set_error(p->pzErr, "destination \"%s\": %s", p->zName, zMsg);
  sqlite3_free(zMsg);
  return SQLITE_ERROR;
}

/* An SQL step that failed inside the parser (interrupt, out of memory). */
static int cfg_sql_error(cfg_ctx *p, int rc) {
  cfg_error(p, "internal SQL failed: %s", sqlite3_errmsg(p->db));
  return rc;
}

/* The JSON type as a message names it: true and false are "boolean". */
static const char *cfg_type_name(const cfg_item *pItem) {
  const char *z = pItem->zType;
  return (strcmp(z, "true") == 0 || strcmp(z, "false") == 0) ? "boolean" : z;
}

/* How many bytes of z to show: at most CFG_MAX_SHOWN, not splitting a
** UTF-8 character. */
static int cfg_clip(const char *z) {
  int n = (int)strlen(z);
  if (n <= CFG_MAX_SHOWN) return n;
  n = CFG_MAX_SHOWN;
  while (n > 0 && (z[n] & 0xc0) == 0x80)
    n--;
  return n;
}

/* The value as written, e.g. '"8"', cut short if long, and its type
** after it ('"8" (text)') when the type is what is wrong. */
static char *cfg_got(const cfg_item *pItem, int showType) {
  const char *z = pItem->zJson ? pItem->zJson : "?";
  int n = cfg_clip(z);
  char *zGot = sqlite3_mprintf("%.*s%s", n, z, z[n] ? "..." : "");
  if (zGot && showType) zGot = sqlite3_mprintf("%z (%s)", zGot, cfg_type_name(pItem));
  return zGot;
}

/* 'key "PATH" must be EXPECTATION, got VALUE[ (TYPE)]'. */
static int cfg_must(cfg_ctx *p, const cfg_item *pItem, int showType, const char *zFmt, ...) {
  va_list ap;
  char *zExpect, *zGot;
  int rc;
  va_start(ap, zFmt);
  zExpect = sqlite3_vmprintf(zFmt, ap);
  va_end(ap);
  zGot = cfg_got(pItem, showType);
  if (zExpect == 0 || zGot == 0) {
    rc = cfg_nomem(p);
  } else {
    rc = cfg_error(p, "key \"%s\" must be %s, got %s", pItem->zPath, zExpect, zGot);
  }
  sqlite3_free(zExpect);
  sqlite3_free(zGot);
  return rc;
}

/* ------------------------------------------------------------------------
** Walking JSON with json_each()
**
** One row per member, in document order: its name, JSON type and SQL value;
** "repr", the value as written (the -> operator returns the JSON text of a
** member; for a name it cannot address, the value is re-quoted); "dup",
** whether an earlier member has the same name; and whether a string holds
** an escaped NUL (\u0000 not preceded by another backslash), which SQLite
** 3.40 silently cuts off at.
*/
#define CFG_EACH_SQL                                                                               \
  "SELECT key, type, value, repr, dup,"                                                            \
  "       type='text' AND instr(replace(repr,'\\\\',''),'\\u0000')>0"                              \
  "  FROM (SELECT a.id, a.key, a.type, a.value,"                                                   \
  "               coalesce(?1 -> a.fullkey, CASE a.type WHEN 'text' THEN json_quote(a.value)"      \
  "                 WHEN 'true' THEN 'true' WHEN 'false' THEN 'false'"                             \
  "                 WHEN 'null' THEN 'null' ELSE a.value END) AS repr,"                            \
  "               EXISTS(SELECT 1 FROM json_each(?1) AS b"                                         \
  "                       WHERE b.key=a.key AND b.id<a.id) AS dup"                                 \
  "          FROM json_each(?1) AS a)"                                                             \
  " ORDER BY id"

/* Prepares zSql with zArg bound to ?1. */
static int cfg_prepare(cfg_ctx *p, const char *zSql, const char *zArg, sqlite3_stmt **ppStmt) {
  int rc = cr_prepare(p->db, zSql, ppStmt, p->pzErr);
  if (rc == SQLITE_OK) {
    rc = sqlite3_bind_text(*ppStmt, 1, zArg, -1, SQLITE_STATIC);
    if (rc != SQLITE_OK) rc = cfg_sql_error(p, rc);
  }
  return rc;
}

/* sqlite3_step(): SQLITE_ROW, SQLITE_DONE, or an error with its message. */
static int cfg_step(cfg_ctx *p, sqlite3_stmt *pStmt) {
  int rc = sqlite3_step(pStmt);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) rc = cfg_sql_error(p, rc);
  return rc;
}

/* "parent.key", "parent[i]", or "key" at the top level. */
static char *cfg_path(const char *zParent, const char *zKey, int iIndex) {
  if (zKey == 0) return sqlite3_mprintf("%s[%d]", zParent ? zParent : "", iIndex);
  if (zParent == 0) return sqlite3_mprintf("%s", zKey);
  return sqlite3_mprintf("%s.%s", zParent, zKey);
}

/* Fills *pItem from the current row of CFG_EACH_SQL. */
static int cfg_item_read(cfg_ctx *p, sqlite3_stmt *pStmt, const char *zParent, cfg_item *pItem) {
  int iIndex = 0;
  memset(pItem, 0, sizeof(*pItem));
  if (sqlite3_column_type(pStmt, 0) == SQLITE_TEXT) {
    pItem->zKey = (const char *)sqlite3_column_text(pStmt, 0);
  } else {
    iIndex = sqlite3_column_int(pStmt, 0);
  }
  pItem->zType = (const char *)sqlite3_column_text(pStmt, 1);
  if (sqlite3_column_type(pStmt, 2) == SQLITE_INTEGER) {
    pItem->isInt64 = 1;
    pItem->iVal = sqlite3_column_int64(pStmt, 2);
  }
  pItem->zText = (const char *)sqlite3_column_text(pStmt, 2);
  pItem->nText = sqlite3_column_bytes(pStmt, 2);
  pItem->zJson = (const char *)sqlite3_column_text(pStmt, 3);
  pItem->isDup = sqlite3_column_int(pStmt, 4);
  pItem->hasNul = sqlite3_column_int(pStmt, 5);
  if (pItem->zText && (int)strlen(pItem->zText) != pItem->nText) pItem->hasNul = 1;
  pItem->zPath = cfg_path(zParent, pItem->zKey, iIndex);
  return (pItem->zType == 0 || pItem->zPath == 0) ? cfg_nomem(p) : SQLITE_OK;
}

/* Reads the current row and hands it to xVisit; a repeated name is an
** error whatever the object. */
static int cfg_visit_row(cfg_ctx *p, sqlite3_stmt *pStmt, const char *zParent, cfg_visit xVisit,
                         void *pArg) {
  cfg_item item;
  int rc = cfg_item_read(p, pStmt, zParent, &item);
  if (rc == SQLITE_OK && item.isDup) rc = cfg_error(p, "duplicate key \"%s\"", item.zPath);
  if (rc == SQLITE_OK) rc = xVisit(p, &item, pArg);
  sqlite3_free(item.zPath);
  return rc;
}

/* Calls xVisit for each member of the object (or element of the array)
** zJson, in document order, until one fails.  zParent names the object in
** messages (NULL at the top level). */
static int cfg_each(cfg_ctx *p, const char *zJson, const char *zParent, cfg_visit xVisit,
                    void *pArg) {
  sqlite3_stmt *pStmt = 0;
  int rc = cfg_prepare(p, CFG_EACH_SQL, zJson, &pStmt);
  while (rc == SQLITE_OK && (rc = cfg_step(p, pStmt)) == SQLITE_ROW) {
    rc = cfg_visit_row(p, pStmt, zParent, xVisit, pArg);
  }
  if (rc == SQLITE_DONE) rc = SQLITE_OK;
  sqlite3_finalize(pStmt);
  return rc;
}

/* Visitor of an object with known keys: dispatches to the key's handler. */
static int cfg_member(cfg_ctx *p, const cfg_item *pItem, void *pArg) {
  cfg_obj *pObj = (cfg_obj *)pArg;
  int i = 0;
  while (i < pObj->nKey && strcmp(pObj->aKey[i].zKey, pItem->zKey) != 0)
    i++;
  if (i == pObj->nKey) {
    return cfg_error(p, "unknown key \"%.60s%s\"", pItem->zPath,
                     strlen(pItem->zPath) > 60 ? "..." : "");
  }
  pObj->seen |= 1u << i;
  return pObj->aKey[i].xHandler(p, pItem, &pObj->aKey[i]);
}

/* Walks the object zJson (named zParent) with the keys of pObj. */
static int cfg_object(cfg_ctx *p, const char *zJson, const char *zParent, cfg_obj *pObj) {
  return cfg_each(p, zJson, zParent, cfg_member, pObj);
}

/* True if key zKey of pObj was present. */
static int cfg_has(const cfg_obj *pObj, const char *zKey) {
  int i;
  for (i = 0; i < pObj->nKey; i++) {
    if (strcmp(pObj->aKey[i].zKey, zKey) == 0) return (pObj->seen >> i) & 1;
  }
  return 0;
}

static int cfg_is(const cfg_item *pItem, const char *zType) {
  return strcmp(pItem->zType, zType) == 0;
}

/* ------------------------------------------------------------------------
** Checking one value
*/

/* Appends z (taken over, NULL meaning out of memory) to an array of strings. */
static int cfg_push(cfg_ctx *p, char ***paz, int *pn, char *z) {
  char **azNew;
  if (z == 0) return cfg_nomem(p);
  azNew = sqlite3_realloc64(*paz, sizeof(char *) * (*pn + 1));
  if (azNew == 0) {
    sqlite3_free(z);
    return cfg_nomem(p);
  }
  azNew[(*pn)++] = z;
  *paz = azNew;
  return SQLITE_OK;
}

/* *pz = the value, which must be a non-empty string without NUL; zExpect
** says what else the key accepts. */
static int cfg_text(cfg_ctx *p, const cfg_item *pItem, const char *zExpect, const char **pz) {
  if (!cfg_is(pItem, "text")) return cfg_must(p, pItem, 1, "%s", zExpect);
  if (pItem->nText == 0) return cfg_must(p, pItem, 0, "%s", zExpect);
  if (pItem->hasNul)
    return cfg_error(p, "key \"%s\" must not contain a NUL character", pItem->zPath);
  *pz = pItem->zText;
  return SQLITE_OK;
}

/* *piChoice = the index in azChoice of the value, a string. */
static int cfg_choice(cfg_ctx *p, const cfg_item *pItem, const char *const *azChoice, int nChoice,
                      int *piChoice) {
  char *zExpect = sqlite3_mprintf("one of");
  int i, rc = SQLITE_ERROR;
  for (i = 0; i < nChoice; i++) {
    if (cfg_is(pItem, "text") && strcmp(pItem->zText, azChoice[i]) == 0 && !pItem->hasNul) {
      *piChoice = i;
      rc = SQLITE_OK;
    }
    zExpect = sqlite3_mprintf("%z%s \"%s\"", zExpect, i ? "," : "", azChoice[i]);
  }
  if (zExpect == 0) {
    rc = cfg_nomem(p);
  } else if (rc != SQLITE_OK) {
    rc = cfg_must(p, pItem, !cfg_is(pItem, "text"), "%s", zExpect);
  }
  sqlite3_free(zExpect);
  return rc;
}

/* *piVal = the value, an integer from pKey->iMin to pKey->iMax. */
static int cfg_integer(cfg_ctx *p, const cfg_item *pItem, const cfg_key *pKey,
                       sqlite3_int64 *piVal) {
  const char *zFmt = "an integer from %lld to %lld";
  if (!cfg_is(pItem, "integer")) return cfg_must(p, pItem, 1, zFmt, pKey->iMin, pKey->iMax);
  if (!pItem->isInt64 || pItem->iVal < pKey->iMin || pItem->iVal > pKey->iMax) {
    return cfg_must(p, pItem, 0, zFmt, pKey->iMin, pKey->iMax);
  }
  *piVal = pItem->iVal;
  return SQLITE_OK;
}

/* Handler: an integer in range, into an int field. */
static int cfg_int(cfg_ctx *p, const cfg_item *pItem, const cfg_key *pKey) {
  sqlite3_int64 v = 0;
  int rc = cfg_integer(p, pItem, pKey, &v);
  if (rc == SQLITE_OK) *CFG_FIELD(p, pKey, int) = (int)v;
  return rc;
}

/* Handler: an integer in range, into an sqlite3_int64 field. */
static int cfg_int64(cfg_ctx *p, const cfg_item *pItem, const cfg_key *pKey) {
  sqlite3_int64 v = 0;
  int rc = cfg_integer(p, pItem, pKey, &v);
  if (rc == SQLITE_OK) *CFG_FIELD(p, pKey, sqlite3_int64) = v;
  return rc;
}

/* Handler: JSON true or false, into an int field. */
static int cfg_bool(cfg_ctx *p, const cfg_item *pItem, const cfg_key *pKey) {
  if (!cfg_is(pItem, "true") && !cfg_is(pItem, "false")) {
    return cfg_must(p, pItem, 1, "true or false");
  }
  *CFG_FIELD(p, pKey, int) = cfg_is(pItem, "true");
  return SQLITE_OK;
}

/* Handler: a non-empty string, into a char* field. */
static int cfg_str(cfg_ctx *p, const cfg_item *pItem, const cfg_key *pKey) {
  const char *z = 0;
  int rc = cfg_text(p, pItem, "a non-empty string", &z);
  if (rc == SQLITE_OK) {
    *CFG_FIELD(p, pKey, char *) = cr_strdup(z);
    if (*CFG_FIELD(p, pKey, char *) == 0) rc = cfg_nomem(p);
  }
  return rc;
}

/* Where cfg_strings() puts the strings of an array. */
typedef struct cfg_list {
  char ***paz;
  int *pn;
} cfg_list;

static int cfg_list_item(cfg_ctx *p, const cfg_item *pItem, void *pArg) {
  cfg_list *pList = (cfg_list *)pArg;
  const char *z = 0;
  int rc = cfg_text(p, pItem, "a non-empty string", &z);
  if (rc == SQLITE_OK) rc = cfg_push(p, pList->paz, pList->pn, cr_strdup(z));
  return rc;
}

/* An array of non-empty strings (at least one if needOne) into *paz, *pn. */
static int cfg_strings(cfg_ctx *p, const cfg_item *pItem, char ***paz, int *pn, int needOne) {
  cfg_list list;
  const char *zExpect = needOne ? "a non-empty array of strings" : "an array of strings";
  int rc;
  if (!cfg_is(pItem, "array")) return cfg_must(p, pItem, 1, "%s", zExpect);
  list.paz = paz;
  list.pn = pn;
  rc = cfg_each(p, pItem->zText, pItem->zPath, cfg_list_item, &list);
  if (rc == SQLITE_OK && needOne && *pn == 0) rc = cfg_must(p, pItem, 0, "%s", zExpect);
  return rc;
}

/* ------------------------------------------------------------------------
** url: "https://host/v3/...{name}..." or "/v3/...", split into parts.
*/

/* A URL template being parsed: `url` or `update.url`, and the cr_dest
** fields it fills. */
typedef struct cfg_tmpl {
  const char *zPath; /* "url" or "update.url", for messages */
  char **pzUrl;
  int *pnPart;
  cr_url_part **paPart;
} cfg_tmpl;

/* Appends a part (a copy of z[0..n)) to the URL template. */
static int cfg_url_push(cfg_ctx *p, const cfg_tmpl *t, const char *z, int n, int isPlaceholder,
                        int recordOnly) {
  cr_url_part *aNew;
  char *zText = sqlite3_mprintf("%.*s", n, z);
  if (zText == 0) return cfg_nomem(p);
  aNew = sqlite3_realloc64(*t->paPart, sizeof(cr_url_part) * (*t->pnPart + 1));
  if (aNew == 0) {
    sqlite3_free(zText);
    return cfg_nomem(p);
  }
  aNew[*t->pnPart].zText = zText;
  aNew[*t->pnPart].isPlaceholder = isPlaceholder;
  aNew[*t->pnPart].recordOnly = recordOnly;
  (*t->pnPart)++;
  *t->paPart = aNew;
  return SQLITE_OK;
}

/* 'key "url": WHAT at position N' (N counts bytes from 1). */
static int cfg_url_error(cfg_ctx *p, const cfg_tmpl *t, const char *zWhat, int i) {
  return cfg_error(p, "key \"%s\": %s at position %d", t->zPath, zWhat, i + 1);
}

/* Space, or a control character: never valid in a URL. */
static int cfg_is_ctl(char c) {
  return (unsigned char)c <= ' ' || c == 0x7f;
}

/* Length of "scheme://host[:port]" of an absolute URL, 0 for a path starting
** "/v3/", -1 for anything else. */
static int cfg_url_origin_len(const char *z) {
  int n;
  if (strncmp(z, "/v3/", 4) == 0) return 0;
  if (strncmp(z, "https://", 8) == 0) {
    n = 8;
  } else if (strncmp(z, "http://", 7) == 0) {
    n = 7;
  } else {
    return -1;
  }
  return n + (int)strcspn(z + n, "/");
}

/* The placeholder whose "{" is at z[*pi]: checks it, appends it and sets
** *pi past its "}". */
static int cfg_url_placeholder(cfg_ctx *p, const cfg_tmpl *t, const char *z, int nOrigin, int *pi) {
  int i = *pi, j = i + 1, n, recordOnly;
  if (i < nOrigin) {
    return cfg_error(p,
                     "key \"%s\": placeholder at position %d is in the scheme or host; only "
                     "the path and query may have placeholders",
                     t->zPath, i + 1);
  }
  while (z[j] && z[j] != '}' && z[j] != '{' && !cfg_is_ctl(z[j]))
    j++;
  if (z[j] == 0) return cfg_url_error(p, t, "unterminated placeholder starting", i);
  if (z[j] == '{') return cfg_url_error(p, t, "\"{\" inside a placeholder", j);
  if (z[j] != '}') return cfg_url_error(p, t, "space or control character", j);
  n = j - i - 1;
  recordOnly = n >= 7 && strncmp(z + i + 1, "record.", 7) == 0;
  if (n == 0) return cfg_url_error(p, t, "empty placeholder \"{}\"", i);
  if (n == 7 && recordOnly) return cfg_url_error(p, t, "empty placeholder \"{record.}\"", i);
  *pi = j + 1;
  return cfg_url_push(p, t, z + i + 1 + 7 * recordOnly, n - 7 * recordOnly, 1, recordOnly);
}

/* Appends the literal z[0..n), if not empty. */
static int cfg_url_literal(cfg_ctx *p, const cfg_tmpl *t, const char *z, int n) {
  return n > 0 ? cfg_url_push(p, t, z, n, 0, 0) : SQLITE_OK;
}

/* Splits the template z into literal runs and placeholders. */
static int cfg_url_split(cfg_ctx *p, const cfg_tmpl *t, const char *z, int nOrigin) {
  int i = 0, iLiteral = 0, rc = SQLITE_OK;
  while (rc == SQLITE_OK && z[i]) {
    if (z[i] == '{') {
      rc = cfg_url_literal(p, t, z + iLiteral, i - iLiteral);
      if (rc == SQLITE_OK) rc = cfg_url_placeholder(p, t, z, nOrigin, &i);
      iLiteral = i;
    } else if (z[i] == '}') {
      rc = cfg_url_error(p, t, "\"}\" without a matching \"{\"", i);
    } else if (cfg_is_ctl(z[i])) {
      rc = cfg_url_error(p, t, "space or control character", i);
    } else {
      i++;
    }
  }
  if (rc == SQLITE_OK) rc = cfg_url_literal(p, t, z + iLiteral, i - iLiteral);
  return rc;
}

/* Parses the template in pItem into t. */
static int cfg_url_template(cfg_ctx *p, const cfg_item *pItem, const cfg_tmpl *t) {
  const char *zExpect = "a URL starting with \"https://\" or \"http://\", or a path starting "
                        "with \"/v3/\"";
  const char *z = 0;
  int nOrigin, rc;
  rc = cfg_text(p, pItem, zExpect, &z);
  if (rc != SQLITE_OK) return rc;
  nOrigin = cfg_url_origin_len(z);
  if (nOrigin < 0) return cfg_must(p, pItem, 0, "%s", zExpect);
  if (nOrigin > 0 && z[nOrigin - 1] == '/') {
    return cfg_error(p, "key \"%s\": no host after \"%.*s\"", t->zPath, nOrigin, z);
  }
  *t->pzUrl = cr_strdup(z);
  if (*t->pzUrl == 0) return cfg_nomem(p);
  return cfg_url_split(p, t, z, nOrigin);
}

static int cfg_url(cfg_ctx *p, const cfg_item *pItem, const cfg_key *pKey) {
  cr_dest *d = p->pDest;
  cfg_tmpl t = {"url", &d->zUrl, &d->nUrlPart, &d->aUrlPart};
  (void)pKey;
  return cfg_url_template(p, pItem, &t);
}

/* Every CallRail endpoint a destination can write to is under
** /v3/a/{account_id}/, and the pacer counts quota per account: a template
** without an account segment (e.g. "/v3/a.json") can never be sent. */
static int cfg_url_account(cfg_ctx *p, const char *zPath, const char *zUrl) {
  const char *zEnd = zUrl + strcspn(zUrl, "?#");
  const char *zA = strstr(zUrl, "/v3/a/");
  size_t nAccount = zA && zA < zEnd ? strcspn(zA + 6, "/?#") : 0;
  if (nAccount > 0 && zA[6 + nAccount] == '/') return SQLITE_OK;
  return cfg_error(p,
                   "key \"%s\": every CallRail endpoint a destination writes to is under "
                   "/v3/a/{account_id}/ (e.g. \"/v3/a/{account_id}/companies.json\"), and "
                   "requests are paced per account; \"%.60s\" names no account",
                   zPath, zUrl);
}

/* ------------------------------------------------------------------------
** headers: "Name1:value1,Name2:value2" or {"Name1": "value1", ...}
*/

/* Set by the extension or by libcurl, so a config may not. */
static const char *const cfg_azForbidden[] = {"Authorization", "Content-Type", "Content-Length",
                                              "Host", "Transfer-Encoding"};

/* A character of an HTTP token (RFC 7230 tchar). */
static int cfg_is_tchar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != 0);
}

static int cfg_is_token(const char *z, int n) {
  int i;
  for (i = 0; i < n; i++) {
    if (!cfg_is_tchar(z[i])) return 0;
  }
  return n > 0;
}

/* A control character other than horizontal tab: never valid in a value. */
static int cfg_has_ctl(const char *z, int n) {
  int i;
  for (i = 0; i < n; i++) {
    if (((unsigned char)z[i] < ' ' && z[i] != '\t') || z[i] == 0x7f) return 1;
  }
  return 0;
}

/* True if the name z[0..n) equals zName, ignoring case. */
static int cfg_same_name(const char *z, int n, const char *zName) {
  return (int)strlen(zName) == n && sqlite3_strnicmp(z, zName, n) == 0;
}

/* True if the header z[0..n) is one a config may not set. */
static int cfg_header_forbidden(const char *z, int n) {
  int i;
  for (i = 0; i < CFG_COUNT(cfg_azForbidden); i++) {
    if (cfg_same_name(z, n, cfg_azForbidden[i])) return 1;
  }
  return 0;
}

/* True if a header named z[0..n) was configured already. */
static int cfg_header_repeated(const cr_dest *pDest, const char *z, int n) {
  int i;
  for (i = 0; i < pDest->nHeader; i++) {
    const char *zOld = pDest->azHeader[i];
    if ((int)strcspn(zOld, ":") == n && sqlite3_strnicmp(zOld, z, n) == 0) return 1;
  }
  return 0;
}

/* Strips spaces and tabs from both ends of z[0..*pn). */
static const char *cfg_trim(const char *z, int *pn) {
  int n = *pn;
  while (n > 0 && (z[0] == ' ' || z[0] == '\t'))
    z++, n--;
  while (n > 0 && (z[n - 1] == ' ' || z[n - 1] == '\t'))
    n--;
  *pn = n;
  return z;
}

/* Checks the header zName: zValue and appends it as "Name: value". */
static int cfg_header_add(cfg_ctx *p, const char *zName, int nName, const char *zValue,
                          int nValue) {
  cr_dest *pDest = p->pDest;
  zValue = cfg_trim(zValue, &nValue);
  if (nName == 0) return cfg_error(p, "key \"headers\": a header has an empty name");
  if (!cfg_is_token(zName, nName)) {
    return cfg_error(p, "key \"headers\": header name \"%.*s\" is not a valid HTTP token", nName,
                     zName);
  }
  if (cfg_header_forbidden(zName, nName)) {
    return cfg_error(p, "key \"headers\": header \"%.*s\" may not be set", nName, zName);
  }
  if (cfg_has_ctl(zValue, nValue)) {
    return cfg_error(p, "key \"headers\": header \"%.*s\" has a control character in its value",
                     nName, zName);
  }
  if (nValue == 0) {
    return cfg_error(p, "key \"headers\": header \"%.*s\" has an empty value", nName, zName);
  }
  if (cfg_header_repeated(pDest, zName, nName)) {
    return cfg_error(p, "key \"headers\": header \"%.*s\" is given twice", nName, zName);
  }
  return cfg_push(p, &pDest->azHeader, &pDest->nHeader,
                  sqlite3_mprintf("%.*s: %.*s", nName, zName, nValue, zValue));
}

/* One comma-separated item "Name:value" (1-based number iItem) of the
** string form. */
static int cfg_header_item(cfg_ctx *p, const char *z, int n, int iItem) {
  const char *zColon = memchr(z, ':', n);
  const char *zName, *zValue;
  int nName, nValue, nAll = n;
  cfg_trim(z, &nAll);
  if (nAll == 0) return cfg_error(p, "key \"headers\": item %d is empty", iItem);
  if (zColon == 0) {
    return cfg_error(p, "key \"headers\": item %d (\"%.*s\") has no \":\"", iItem, n, z);
  }
  nName = (int)(zColon - z);
  nValue = n - nName - 1;
  zName = cfg_trim(z, &nName);
  zValue = zColon + 1;
  return cfg_header_add(p, zName, nName, zValue, nValue);
}

/* The string form, split on commas. */
static int cfg_headers_text(cfg_ctx *p, const cfg_item *pItem) {
  const char *z = pItem->zText;
  int i = 0, iItem = 1, rc = SQLITE_OK;
  if (pItem->hasNul || z[strcspn(z, "\r\n")] != 0) {
    return cfg_error(p, "key \"headers\" must not contain CR, LF or NUL");
  }
  while (rc == SQLITE_OK && i <= pItem->nText) {
    int n = (int)strcspn(z + i, ",");
    rc = cfg_header_item(p, z + i, n, iItem++);
    i += n + 1;
  }
  return rc;
}

/* One member of the object form. */
static int cfg_header_member(cfg_ctx *p, const cfg_item *pItem, void *pArg) {
  (void)pArg;
  if (!cfg_is(pItem, "text")) return cfg_must(p, pItem, 1, "a string");
  if (pItem->hasNul || pItem->zKey[strcspn(pItem->zKey, "\r\n")] != 0 ||
      pItem->zText[strcspn(pItem->zText, "\r\n")] != 0) {
    return cfg_error(p, "key \"headers\" must not contain CR, LF or NUL");
  }
  return cfg_header_add(p, pItem->zKey, (int)strlen(pItem->zKey), pItem->zText, pItem->nText);
}

static int cfg_headers(cfg_ctx *p, const cfg_item *pItem, const cfg_key *pKey) {
  (void)pKey;
  if (cfg_is(pItem, "text")) return cfg_headers_text(p, pItem);
  if (cfg_is(pItem, "object")) return cfg_each(p, pItem->zText, pItem->zPath, cfg_header_member, 0);
  return cfg_must(p, pItem, 1, "a string \"Name:value,...\" or an object of strings");
}

/* ------------------------------------------------------------------------
** The other keys that need more than a range check
*/

static int cfg_method(cfg_ctx *p, const cfg_item *pItem, const cfg_key *pKey) {
  (void)pKey;
  return cfg_choice(p, pItem, cr_method_names, 4, &p->pDest->eMethod);
}

/* A value of params: a string or a number. */
static int cfg_param(cfg_ctx *p, const cfg_item *pItem, void *pArg) {
  (void)pArg;
  if (cfg_is(pItem, "text") && pItem->hasNul) {
    return cfg_error(p, "key \"%s\" must not contain a NUL character", pItem->zPath);
  }
  if (cfg_is(pItem, "text") || cfg_is(pItem, "integer") || cfg_is(pItem, "real")) return SQLITE_OK;
  return cfg_must(p, pItem, 1, "a string or a number");
}

/* params is kept as JSON text: json_each() gives an object's value as
** minified JSON, exactly what json() would return. */
static int cfg_params(cfg_ctx *p, const cfg_item *pItem, const cfg_key *pKey) {
  int rc;
  (void)pKey;
  if (!cfg_is(pItem, "object")) return cfg_must(p, pItem, 1, "an object");
  rc = cfg_each(p, pItem->zText, pItem->zPath, cfg_param, 0);
  if (rc == SQLITE_OK) {
    p->pDest->zParams = cr_strdup(pItem->zText);
    if (p->pDest->zParams == 0) rc = cfg_nomem(p);
  }
  return rc;
}

static int cfg_format(cfg_ctx *p, const cfg_item *pItem, const cfg_key *pKey) {
  int isText = cfg_is(pItem, "text");
  char *zGot;
  int rc;
  (void)pKey;
  if (isText && !pItem->hasNul && strcmp(pItem->zText, "json") == 0) return SQLITE_OK;
  zGot = cfg_got(pItem, !isText);
  if (zGot == 0) return cfg_nomem(p);
  rc = cfg_error(p, "key \"format\": only \"json\" is supported, got %s", zGot);
  sqlite3_free(zGot);
  return rc;
}

static int cfg_exclude(cfg_ctx *p, const cfg_item *pItem, const cfg_key *pKey) {
  (void)pKey;
  return cfg_strings(p, pItem, &p->pDest->azExclude, &p->pDest->nExclude, 0);
}

static int cfg_on_quota(cfg_ctx *p, const cfg_item *pItem, const cfg_key *pKey) {
  static const char *const azOnQuota[] = {"wait", "stop"};
  (void)pKey;
  return cfg_choice(p, pItem, azOnQuota, 2, &p->pDest->onQuotaStop);
}

static int cfg_progress(cfg_ctx *p, const cfg_item *pItem, const cfg_key *pKey) {
  int isText = cfg_is(pItem, "text");
  (void)pKey;
  if (cfg_is(pItem, "true") || cfg_is(pItem, "false")) {
    p->pDest->progress = cfg_is(pItem, "true");
  } else if (isText && !pItem->hasNul && strcmp(pItem->zText, "auto") == 0) {
    p->pDest->progress = -1;
  } else {
    return cfg_must(p, pItem, !isText, "true, false or \"auto\"");
  }
  return SQLITE_OK;
}

/* ------------------------------------------------------------------------
** Many runs: sync, update, id_path, on_busy, lease_ms; and json
*/

static int cfg_sync(cfg_ctx *p, const cfg_item *pItem, const cfg_key *pKey) {
  /* In the order of the CR_SYNC_* values. */
  static const char *const azSync[] = {"changed", "new", "upsert"};
  (void)pKey;
  return cfg_choice(p, pItem, azSync, 3, &p->pDest->eSync);
}

/* update.method: PUT (CallRail's partial update) or PATCH (for proxies);
** POST would create another resource and DELETE is no update. */
static int cfg_update_method(cfg_ctx *p, const cfg_item *pItem, const cfg_key *pKey) {
  static const char *const azUpdate[] = {"PUT", "PATCH"};
  int i = 0;
  int rc = cfg_choice(p, pItem, azUpdate, 2, &i);
  (void)pKey;
  if (rc == SQLITE_OK) p->pDest->eUpdateMethod = i ? CR_METHOD_PATCH : CR_METHOD_PUT;
  return rc;
}

static int cfg_update_url(cfg_ctx *p, const cfg_item *pItem, const cfg_key *pKey) {
  cr_dest *d = p->pDest;
  cfg_tmpl t = {"update.url", &d->zUpdateUrl, &d->nUpdateUrlPart, &d->aUpdateUrlPart};
  (void)pKey;
  return cfg_url_template(p, pItem, &t);
}

static const cfg_key cfg_aUpdateKey[] = {
    {"url", cfg_update_url, 0, 0, 0},
    {"method", cfg_update_method, 0, 0, 0},
};

static int cfg_update(cfg_ctx *p, const cfg_item *pItem, const cfg_key *pKey) {
  cfg_obj obj = {cfg_aUpdateKey, CFG_COUNT(cfg_aUpdateKey), 0};
  int rc;
  (void)pKey;
  if (!cfg_is(pItem, "object")) return cfg_must(p, pItem, 1, "an object");
  rc = cfg_object(p, pItem->zText, pItem->zPath, &obj);
  if (rc == SQLITE_OK && !cfg_has(&obj, "url")) {
    rc = cfg_error(p, "key \"update.url\" is required");
  }
  return rc;
}

/* id_path: a JSON path that SQLite accepts, tried on an empty object. */
static int cfg_id_path(cfg_ctx *p, const cfg_item *pItem, const cfg_key *pKey) {
  sqlite3_stmt *pStmt = 0;
  const char *zExpect = "a JSON path starting with \"$\", e.g. \"$.id\"";
  const char *z = 0;
  int rc = cfg_text(p, pItem, zExpect, &z);
  if (rc == SQLITE_OK && z[0] != '$') rc = cfg_must(p, pItem, 0, "%s", zExpect);
  if (rc == SQLITE_OK) rc = cr_prepare(p->db, "SELECT json_extract('{}', ?1)", &pStmt, p->pzErr);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(pStmt, 1, z, -1, SQLITE_STATIC);
    if (sqlite3_step(pStmt) != SQLITE_ROW) {
      rc = cfg_must(p, pItem, 0, "%s (%s)", zExpect, sqlite3_errmsg(p->db));
    }
  }
  sqlite3_finalize(pStmt);
  return rc == SQLITE_OK ? cfg_str(p, pItem, pKey) : rc;
}

static int cfg_on_busy(cfg_ctx *p, const cfg_item *pItem, const cfg_key *pKey) {
  static const char *const azOnBusy[] = {"wait", "error"};
  (void)pKey;
  return cfg_choice(p, pItem, azOnBusy, 2, &p->pDest->onBusyError);
}

static int cfg_json(cfg_ctx *p, const cfg_item *pItem, const cfg_key *pKey) {
  int rc, i;
  (void)pKey;
  rc = cfg_strings(p, pItem, &p->pDest->azJson, &p->pDest->nJson, 0);
  for (i = 0; rc == SQLITE_OK && i < p->pDest->nJson; i++) {
    if (!cr_name_is_plain(p->pDest->azJson[i])) {
      /* It is a JSON path label ($."name") when the record is built. */
      rc = cfg_error(p,
                     "key \"json[%d]\": the name may not hold a double quote, a backslash or a "
                     "control character",
                     i);
    }
  }
  return rc;
}

/* ------------------------------------------------------------------------
** batch
*/

static int cfg_grouping(cfg_ctx *p, const cfg_item *pItem, const cfg_key *pKey) {
  /* In the order of the CR_GROUP_* values. */
  static const char *const azGrouping[] = {"count", "attribute", "bytes"};
  (void)pKey;
  return cfg_choice(p, pItem, azGrouping, 3, &p->pDest->eGrouping);
}

static int cfg_attributes(cfg_ctx *p, const cfg_item *pItem, const cfg_key *pKey) {
  (void)pKey;
  return cfg_strings(p, pItem, &p->pDest->azGroupAttr, &p->pDest->nGroupAttr, 1);
}

static int cfg_wrap(cfg_ctx *p, const cfg_item *pItem, const cfg_key *pKey) {
  const char *z = 0;
  int rc;
  (void)pKey;
  if (cfg_is(pItem, "null")) return SQLITE_OK;
  rc = cfg_text(p, pItem, "null or a non-empty string", &z);
  if (rc == SQLITE_OK && !cr_name_is_plain(z)) {
    /* It is a JSON path label when a rejected batch is split. */
    rc = cfg_error(p,
                   "key \"%s\": the name may not hold a double quote, a backslash or a "
                   "control character",
                   pItem->zPath);
  }
  if (rc == SQLITE_OK) {
    p->pDest->zWrap = cr_strdup(z);
    if (p->pDest->zWrap == 0) rc = cfg_nomem(p);
  }
  return rc;
}

static const cfg_key cfg_aBatchKey[] = {
    {"size", cfg_int, 1, 1000, offsetof(cr_dest, batchSize)},
    {"grouping", cfg_grouping, 0, 0, 0},
    {"attributes", cfg_attributes, 0, 0, 0},
    {"max_bytes", cfg_int64, 64, 100000000, offsetof(cr_dest, maxBytes)},
    {"wrap", cfg_wrap, 0, 0, 0},
};

/* batch.zKey must be present exactly when batch.grouping is zGrouping. */
static int cfg_batch_needs(cfg_ctx *p, const cfg_obj *pObj, const char *zKey, int eGrouping,
                           const char *zGrouping) {
  int isGrouping = p->pDest->eGrouping == eGrouping;
  if (isGrouping == cfg_has(pObj, zKey)) return SQLITE_OK;
  return cfg_error(p, "key \"batch.%s\" is %s when \"batch.grouping\" is \"%s\"", zKey,
                   isGrouping ? "required" : "only allowed", zGrouping);
}

static int cfg_batch(cfg_ctx *p, const cfg_item *pItem, const cfg_key *pKey) {
  cfg_obj obj = {cfg_aBatchKey, CFG_COUNT(cfg_aBatchKey), 0};
  int rc;
  (void)pKey;
  if (cfg_is(pItem, "null") || cfg_is(pItem, "false")) return SQLITE_OK;
  if (!cfg_is(pItem, "object")) return cfg_must(p, pItem, 1, "an object, null or false");
  p->pDest->batchSize = 100;
  rc = cfg_object(p, pItem->zText, pItem->zPath, &obj);
  if (rc == SQLITE_OK) {
    rc = cfg_batch_needs(p, &obj, "attributes", CR_GROUP_ATTRIBUTE, "attribute");
  }
  if (rc == SQLITE_OK) rc = cfg_batch_needs(p, &obj, "max_bytes", CR_GROUP_BYTES, "bytes");
  return rc;
}

/* ------------------------------------------------------------------------
** retry and rate_limit
*/

static const cfg_key cfg_aRetryKey[] = {
    {"max_attempts", cfg_int, 1, 100, offsetof(cr_dest, maxAttempts)},
    {"base_delay_ms", cfg_int, 0, 3600000, offsetof(cr_dest, baseDelayMs)},
    {"max_delay_ms", cfg_int, 0, 86400000, offsetof(cr_dest, maxDelayMs)},
    {"retry_post", cfg_bool, 0, 0, offsetof(cr_dest, retryPost)},
};

static int cfg_retry(cfg_ctx *p, const cfg_item *pItem, const cfg_key *pKey) {
  cfg_obj obj = {cfg_aRetryKey, CFG_COUNT(cfg_aRetryKey), 0};
  cr_dest *pDest = p->pDest;
  int rc;
  (void)pKey;
  if (!cfg_is(pItem, "object")) return cfg_must(p, pItem, 1, "an object");
  rc = cfg_object(p, pItem->zText, pItem->zPath, &obj);
  if (rc == SQLITE_OK && pDest->maxDelayMs < pDest->baseDelayMs) {
    rc = cfg_error(
        p, "key \"retry.max_delay_ms\" must be at least \"retry.base_delay_ms\" (%d), got %d",
        pDest->baseDelayMs, pDest->maxDelayMs);
  }
  return rc;
}

static const cfg_key cfg_aRateKey[] = {
    {"per_hour", cfg_int64, 1, 100000000, offsetof(cr_dest, perHour)},
    {"per_day", cfg_int64, 1, 100000000, offsetof(cr_dest, perDay)},
    {"per_second", cfg_int64, 1, 100000000, offsetof(cr_dest, perSecond)},
};

static int cfg_rate_limit(cfg_ctx *p, const cfg_item *pItem, const cfg_key *pKey) {
  cfg_obj obj = {cfg_aRateKey, CFG_COUNT(cfg_aRateKey), 0};
  (void)pKey;
  if (!cfg_is(pItem, "object")) return cfg_must(p, pItem, 1, "an object");
  return cfg_object(p, pItem->zText, pItem->zPath, &obj);
}

/* ------------------------------------------------------------------------
** The whole config
*/

static const cfg_key cfg_aTopKey[] = {
    {"credential", cfg_str, 0, 0, offsetof(cr_dest, zCredential)},
    {"method", cfg_method, 0, 0, 0},
    {"url", cfg_url, 0, 0, 0},
    {"params", cfg_params, 0, 0, 0},
    {"format", cfg_format, 0, 0, 0},
    {"headers", cfg_headers, 0, 0, 0},
    {"exclude", cfg_exclude, 0, 0, 0},
    {"batch", cfg_batch, 0, 0, 0},
    {"key", cfg_str, 0, 0, offsetof(cr_dest, zKey)},
    {"concurrency", cfg_int, 1, 64, offsetof(cr_dest, concurrency)},
    {"timeout_ms", cfg_int, 1, 3600000, offsetof(cr_dest, timeoutMs)},
    {"connect_timeout_ms", cfg_int, 1, 600000, offsetof(cr_dest, connectTimeoutMs)},
    {"retry", cfg_retry, 0, 0, 0},
    {"rate_limit", cfg_rate_limit, 0, 0, 0},
    {"on_quota", cfg_on_quota, 0, 0, 0},
    {"capture_responses", cfg_bool, 0, 0, offsetof(cr_dest, captureResponses)},
    {"max_response_bytes", cfg_int, 1024, 1073741824, offsetof(cr_dest, maxResponseBytes)},
    {"progress", cfg_progress, 0, 0, 0},
    {"sync", cfg_sync, 0, 0, 0},
    {"update", cfg_update, 0, 0, 0},
    {"id_path", cfg_id_path, 0, 0, offsetof(cr_dest, zIdPath)},
    {"on_busy", cfg_on_busy, 0, 0, 0},
    /* Heartbeats come at least every 5 s: a shorter lease would declare
    ** live runs dead. */
    {"lease_ms", cfg_int64, 10000, 86400000, offsetof(cr_dest, leaseMs)},
    {"json", cfg_json, 0, 0, 0},
};

void cr_dest_defaults(cr_dest *pDest) {
  memset(pDest, 0, sizeof(*pDest));
  pDest->eMethod = CR_METHOD_POST;
  pDest->eGrouping = CR_GROUP_COUNT;
  pDest->concurrency = 4;
  pDest->timeoutMs = 30000;
  pDest->maxResponseBytes = CR_DEFAULT_MAX_RESPONSE;
  pDest->connectTimeoutMs = 10000;
  pDest->maxAttempts = 5;
  pDest->baseDelayMs = 500;
  pDest->maxDelayMs = 60000;
  pDest->perHour = pDest->perDay = pDest->perSecond = -1;
  pDest->captureResponses = 1;
  pDest->progress = -1;
  pDest->eUpdateMethod = CR_METHOD_PUT;
  pDest->leaseMs = 60000;
}

/* A new cr_dest holding every default of README "Destination config". */
static int cfg_dest_new(cfg_ctx *p) {
  cr_dest *pDest = sqlite3_malloc64(sizeof(cr_dest));
  if (pDest == 0) return cfg_nomem(p);
  cr_dest_defaults(pDest);
  p->pDest = pDest;
  pDest->zName = cr_strdup(p->zName);
  return pDest->zName ? SQLITE_OK : cfg_nomem(p);
}

/* Where z has the JSON escape \u0000 (its backslash not itself escaped),
** or NULL. */
static const char *cfg_escaped_nul(const char *z) {
  const char *zAt;
  for (zAt = strstr(z, "\\u0000"); zAt; zAt = strstr(zAt + 1, "\\u0000")) {
    int nSlash = 0;
    while (zAt - nSlash > z && zAt[-nSlash - 1] == '\\')
      nSlash++;
    if (nSlash % 2 == 0) return zAt;
  }
  return 0;
}

/* Values are checked for an escaped NUL key by key; a key NAME with one
** would have been read cut short at it (SQLite 3.40's json_each), so the
** raw text is checked too, once the rest is known to be good.  The error
** names the object holding that name: the deepest one whose text has it. */
static int cfg_nul_in_names(cfg_ctx *p, const char *zConfig) {
  sqlite3_stmt *pStmt = 0;
  const char *zAt = cfg_escaped_nul(zConfig);
  const char *zStart, *zEnd;
  char *zName;
  int rc;
  if (zAt == 0) return SQLITE_OK;
  for (zStart = zAt; zStart > zConfig && zStart[-1] != '"'; zStart--) {
  }
  zEnd = strchr(zAt + 6, '"');
  zName = sqlite3_mprintf("%.*s", (int)((zEnd ? zEnd : zAt + 6) - zStart), zStart);
  rc = cfg_prepare(p,
                   "SELECT substr(fullkey, 3) FROM json_tree(?1) WHERE type='object'"
                   " AND instr(value, '\\u0000') > 0 ORDER BY length(fullkey) DESC LIMIT 1",
                   zConfig, &pStmt);
  if (rc == SQLITE_OK) rc = cfg_step(p, pStmt);
  if (rc == SQLITE_ROW && sqlite3_column_bytes(pStmt, 0) > 0) {
    rc = cfg_error(p,
                   "key \"%s\" has a member name holding an escaped NUL character (\\u0000): "
                   "\"%.60s\"",
                   sqlite3_column_text(pStmt, 0), zName);
  } else if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
    rc = cfg_error(p, "key name \"%.60s\" holds an escaped NUL character (\\u0000)", zName);
  }
  sqlite3_finalize(pStmt);
  sqlite3_free(zName);
  return rc;
}

/* The config must be valid JSON, and an object. */
static int cfg_document(cfg_ctx *p, const char *zConfig) {
  sqlite3_stmt *pStmt = 0;
  const char *zType;
  int rc;
  if (zConfig == 0) return cfg_error(p, "config is NULL");
  rc = cfg_prepare(p, "SELECT CASE WHEN json_valid(?1) THEN json_type(?1) END", zConfig, &pStmt);
  if (rc == SQLITE_OK) rc = cfg_step(p, pStmt);
  if (rc == SQLITE_ROW) {
    zType = (const char *)sqlite3_column_text(pStmt, 0);
    if (zType == 0) {
      rc = cfg_error(p, "config is not valid JSON");
    } else if (strcmp(zType, "object") != 0) {
      rc = cfg_error(p, "config must be a JSON object, got %s", zType);
    } else if (!cr_json_names_are_strings(zConfig)) {
      rc = cfg_error(p, "config is not valid JSON (a member name is not a string)");
    } else {
      rc = SQLITE_OK;
    }
  }
  sqlite3_finalize(pStmt);
  return rc;
}

/* True if the template has the placeholder {zName} (not {record.zName}). */
static int cfg_has_placeholder(const cr_url_part *aPart, int nPart, const char *zName) {
  int i;
  for (i = 0; i < nPart; i++) {
    if (aPart[i].isPlaceholder && !aPart[i].recordOnly && strcmp(aPart[i].zText, zName) == 0) {
      return 1;
    }
  }
  return 0;
}

/* sync "upsert" creates with POST and updates through `update`, one record
** per request: the id that names the resource is per record. */
static int cfg_upsert(cfg_ctx *p, const cfg_obj *pObj) {
  const cr_dest *d = p->pDest;
  int i;
  if (d->eMethod != CR_METHOD_POST) {
    return cfg_error(p, "key \"sync\": \"upsert\" creates records with POST, got method \"%s\"",
                     cr_method_names[d->eMethod]);
  }
  if (!cfg_has(pObj, "update")) {
    return cfg_error(p, "key \"update\" is required when \"sync\" is \"upsert\" (e.g. "
                        "{\"url\": \"/v3/a/{account_id}/companies/{remote_id}.json\"})");
  }
  if (!cfg_has_placeholder(d->aUpdateUrlPart, d->nUpdateUrlPart, "remote_id")) {
    return cfg_error(p, "key \"update.url\" must contain {remote_id}, the id CallRail "
                        "returned for the record");
  }
  for (i = 0; i < d->nUpdateUrlPart; i++) {
    /* Each is a JSON path label ($."name") when the update URL is built. */
    if (d->aUpdateUrlPart[i].isPlaceholder && !cr_name_is_plain(d->aUpdateUrlPart[i].zText)) {
      return cfg_error(p,
                       "key \"update.url\": placeholder {%s} may not hold a double quote or a "
                       "backslash",
                       d->aUpdateUrlPart[i].zText);
    }
  }
  if (d->batchSize > 0) {
    return cfg_error(p, "key \"batch\" is not allowed when \"sync\" is \"upsert\": each "
                        "update names one record's id");
  }
  return SQLITE_OK;
}

/* The sync mode and its companions: `sync` only with `key` (change
** detection needs it), `update` only with "upsert". */
static int cfg_finish_sync(cfg_ctx *p, const cfg_obj *pObj) {
  cr_dest *d = p->pDest;
  if (!cfg_has(pObj, "sync")) {
    /* A second POST of a delivered record would create a second resource. */
    d->eSync = d->eMethod == CR_METHOD_POST ? CR_SYNC_NEW : CR_SYNC_CHANGED;
  } else if (d->zKey == 0) {
    return cfg_error(p, "key \"sync\" needs \"key\": without it no record is known to have "
                        "been delivered");
  }
  if (d->eSync == CR_SYNC_UPSERT) return cfg_upsert(p, pObj);
  if (cfg_has(pObj, "update")) {
    return cfg_error(p, "key \"update\" is only allowed when \"sync\" is \"upsert\"");
  }
  return SQLITE_OK;
}

/* Sets *pz to a copy of zDefault if it is still NULL. */
static int cfg_default_str(cfg_ctx *p, char **pz, const char *zDefault) {
  if (*pz == 0) *pz = cr_strdup(zDefault);
  return *pz ? SQLITE_OK : cfg_nomem(p);
}

/* What only the whole object can tell: required keys, the rules between
** keys, and the defaults of strings. */
static int cfg_finish(cfg_ctx *p, const cfg_obj *pObj) {
  cr_dest *d = p->pDest;
  int rc = SQLITE_OK;
  if (!cfg_has(pObj, "credential")) return cfg_error(p, "key \"credential\" is required");
  if (!cfg_has(pObj, "url")) return cfg_error(p, "key \"url\" is required");
  rc = cfg_url_account(p, "url", d->zUrl);
  if (rc == SQLITE_OK && d->zUpdateUrl) rc = cfg_url_account(p, "update.url", d->zUpdateUrl);
  if (rc == SQLITE_OK) rc = cfg_finish_sync(p, pObj);
  if (rc == SQLITE_OK) rc = cfg_default_str(p, &d->zParams, "{}");
  if (rc == SQLITE_OK) rc = cfg_default_str(p, &d->zIdPath, "$.id");
  return rc;
}

int cr_dest_parse(sqlite3 *db, const char *zName, const char *zConfig, cr_dest **ppDest,
                  char **pzErr) {
  cfg_ctx ctx = {db, zName, 0, pzErr};
  cfg_obj obj = {cfg_aTopKey, CFG_COUNT(cfg_aTopKey), 0};
  int rc;
  *ppDest = 0;
  if (zName == 0) {
    cr_set_error(pzErr, "destination name is NULL");
    return SQLITE_ERROR;
  }
  rc = cfg_dest_new(&ctx);
  if (rc == SQLITE_OK) rc = cfg_document(&ctx, zConfig);
  if (rc == SQLITE_OK) rc = cfg_object(&ctx, zConfig, 0, &obj);
  if (rc == SQLITE_OK) rc = cfg_finish(&ctx, &obj);
  if (rc == SQLITE_OK) rc = cfg_nul_in_names(&ctx, zConfig);
  if (rc == SQLITE_OK) {
    *ppDest = ctx.pDest;
  } else {
    cr_dest_free(ctx.pDest);
  }
  return rc;
}

static void cfg_free_strings(char **az, int n) {
  int i;
  for (i = 0; i < n; i++)
    sqlite3_free(az[i]);
  sqlite3_free(az);
}

static void cfg_free_parts(cr_url_part *aPart, int nPart) {
  int i;
  for (i = 0; i < nPart; i++)
    sqlite3_free(aPart[i].zText);
  sqlite3_free(aPart);
}

void cr_dest_free(cr_dest *p) {
  if (p == 0) return;
  cfg_free_parts(p->aUrlPart, p->nUrlPart);
  cfg_free_parts(p->aUpdateUrlPart, p->nUpdateUrlPart);
  cfg_free_strings(p->azHeader, p->nHeader);
  cfg_free_strings(p->azJson, p->nJson);
  cfg_free_strings(p->azExclude, p->nExclude);
  cfg_free_strings(p->azGroupAttr, p->nGroupAttr);
  sqlite3_free(p->zName);
  sqlite3_free(p->zCredential);
  sqlite3_free(p->zUrl);
  sqlite3_free(p->zParams);
  sqlite3_free(p->zWrap);
  sqlite3_free(p->zKey);
  sqlite3_free(p->zUpdateUrl);
  sqlite3_free(p->zIdPath);
  sqlite3_free(p);
}

/* ------------------------------------------------------------------------
** Loading a saved destination
*/

/* Parses the row found by cr_dest_load()'s statement, if there is one. */
static int cfg_load_row(sqlite3 *db, sqlite3_stmt *pStmt, const char *zName, cr_dest **ppDest,
                        int *pActive, char **pzErr) {
  int rc = sqlite3_step(pStmt);
  if (rc == SQLITE_DONE) {
    cr_set_error(pzErr, "unknown destination \"%s\"", zName);
    return SQLITE_ERROR;
  }
  if (rc != SQLITE_ROW) {
    cr_set_error(pzErr, "callrail: reading destination \"%s\" failed: %s", zName,
                 sqlite3_errmsg(db));
    return rc;
  }
  rc = cr_dest_parse(db, zName, (const char *)sqlite3_column_text(pStmt, 0), ppDest, pzErr);
  if (rc == SQLITE_OK && pActive) *pActive = sqlite3_column_int(pStmt, 1) != 0;
  return rc;
}

int cr_dest_load(sqlite3 *db, const char *zName, cr_dest **ppDest, int *pActive, char **pzErr) {
  sqlite3_stmt *pStmt = 0;
  int rc;
  *ppDest = 0;
  if (pActive) *pActive = 0;
  if (zName == 0) {
    cr_set_error(pzErr, "destination name is NULL");
    return SQLITE_ERROR;
  }
  rc = cr_prepare(db, "SELECT config, active FROM callrail_destinations WHERE name=?1", &pStmt,
                  pzErr);
  if (rc == SQLITE_OK) {
    rc = sqlite3_bind_text(pStmt, 1, zName, -1, SQLITE_STATIC);
    if (rc != SQLITE_OK) cr_set_error(pzErr, "callrail: %s", sqlite3_errmsg(db));
  }
  if (rc == SQLITE_OK) rc = cfg_load_row(db, pStmt, zName, ppDest, pActive, pzErr);
  sqlite3_finalize(pStmt);
  return rc;
}
