/*
** fuzz_url_template.c - libFuzzer target: URL template expansion.
**
** Input:  one selector byte, then "TEMPLATE\nRECORD_JSON[\nPARAMS_JSON]".
** Selector bits 0-1 pick the credential's api_base; bit 2 turns a path
** template into an absolute one by putting that api_base in front.
**
** The destination {"credential":"c","url":TEMPLATE,"params":PARAMS} (PARAMS
** replaced by a default holding reserved characters when it is not a JSON
** object) is parsed; an absolute template must pass cr_origin_check()
** against the api_base, as callrail_destination() demands.  The record goes
** through cr_records_open_json() + cr_records_next(), and for a valid record
** the expanded URL must:
**
**   - start with the api_base followed by "/" (path templates), or with the
**     template's own origin and pass cr_origin_check() (absolute ones);
**   - be the template with each placeholder replaced by a run of RFC 3986
**     unreserved characters and %XX escapes only, so no value can add a
**     space, CR, LF, "/", "?", "#", "@", ":" or anything else with meaning;
**     hence no "#" or "?" unless the template has one;
**   - when the record and params hold no JSON escapes (so SQLite's own
**     decoding is not in question), be the URL that a model of README
**     "Destination config" builds, each value decoding back to itself: {name} from the
**     record's attribute, else from params; {record.name} from the record only; a missing or null
*value,
**     or an object or array, makes the record invalid;
**   - have no placeholder that expands to a whole path segment "." or
**     "..": libcurl removes dot segments (RFC 3986 5.2.4) before sending, so
**     such a value would move the request to another path;
**   - not come from a string value holding \u0000, which SQLite 3.40 cuts
**     off (the URL would name another object) - the record must be invalid.
** A record whose URL or body exceeds CR_MAX_URL / CR_MAX_BODY is invalid
** whatever the model says (its URL is still checked).
**
** FUZZ_IGNORE (comma-separated) skips the checks of known findings while
** fuzzing: dot-segments and nul-values (the last two above), json-label
** (records and params that SQLite 3.40 wrongly takes for JSON).
*/
#include "fuzz_common.h"

#include <ctype.h>

static const char *const azBaseIn[4] = {"https://api.callrail.com", "http://127.0.0.1:8080",
                                        "http://[::1]:9000", "https://API.CallRail.com:8443"};
static char *azBase[4]; /* normalised by cr_api_base_normalize() */

static int is_unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}
static int is_upper_hex(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

/* Length of the escape or unreserved character at z, or 0. */
static int enc_token(const char *z) {
  if (is_unreserved((unsigned char)z[0])) return 1;
  if (z[0] == '%' && is_upper_hex((unsigned char)z[1]) && is_upper_hex((unsigned char)z[2])) {
    return 3;
  }
  return 0;
}

/* The matcher: can zUrl[iPos..] be parts iPart.. of the template, each
** placeholder an encoded run?  aFail memoises (position, part) pairs that
** cannot.  aEnd[iPart] receives where each part ends on success. */
typedef struct matcher {
  const cr_dest *pDest;
  const char *zUrl;
  int nUrl;
  unsigned char *aFail;
  int *aEnd;
} matcher;

static int match(matcher *m, int iPos, int iPart) {
  const cr_url_part *pPart;
  unsigned char *pFail;
  if (iPart == m->pDest->nUrlPart) return iPos == m->nUrl;
  pFail = &m->aFail[(size_t)iPos * m->pDest->nUrlPart + iPart];
  if (*pFail) return 0;
  pPart = &m->pDest->aUrlPart[iPart];
  if (!pPart->isPlaceholder) {
    int n = (int)strlen(pPart->zText);
    if (iPos + n <= m->nUrl && memcmp(m->zUrl + iPos, pPart->zText, n) == 0 &&
        match(m, iPos + n, iPart + 1)) {
      m->aEnd[iPart] = iPos + n;
      return 1;
    }
  } else {
    int i = iPos;
    for (;;) {
      int n;
      if (match(m, i, iPart + 1)) {
        m->aEnd[iPart] = i;
        return 1;
      }
      n = enc_token(m->zUrl + i);
      if (n == 0) break;
      i += n;
    }
  }
  *pFail = 1;
  return 0;
}

/* The model's value of a placeholder: the first member named zName of the
** JSON object zObj.  Returns 1 and *pz (sqlite3_free) for a usable value,
** 0 when absent or null, -1 for an object, an array or an empty string. */
static int member_value(sqlite3 *db, const char *zObj, const char *zName, char **pz) {
  static sqlite3_stmt *pStmt = 0;
  int res = 0;
  *pz = 0;
  if (pStmt == 0 && sqlite3_prepare_v2(db,
                                       "SELECT type, atom FROM json_each(?1) WHERE key=?2"
                                       " ORDER BY id LIMIT 1",
                                       -1, &pStmt, 0) != SQLITE_OK) {
    fz_fail("prepare: %s", sqlite3_errmsg(db));
  }
  sqlite3_bind_text(pStmt, 1, zObj, -1, SQLITE_STATIC);
  sqlite3_bind_text(pStmt, 2, zName, -1, SQLITE_STATIC);
  if (sqlite3_step(pStmt) == SQLITE_ROW) {
    const char *zType = (const char *)sqlite3_column_text(pStmt, 0);
    if (strcmp(zType, "object") == 0 || strcmp(zType, "array") == 0) {
      res = -1;
    } else if (strcmp(zType, "true") == 0 || strcmp(zType, "false") == 0) {
      *pz = cr_strdup(zType);
      res = 1;
    } else if (strcmp(zType, "null") != 0) {
      *pz = cr_strdup((const char *)sqlite3_column_text(pStmt, 1));
      /* an empty value is no resource (it would leave "//" or a "."
      ** segment): invalid, with no fall-back to params */
      res = sqlite3_column_bytes(pStmt, 1) > 0 ? 1 : -1;
    }
  }
  sqlite3_reset(pStmt);
  return res;
}

/* True if the JSON object zObj names a member twice. */
static int has_duplicate_member(sqlite3 *db, const char *zObj) {
  static sqlite3_stmt *pStmt = 0;
  int dup;
  if (pStmt == 0 &&
      sqlite3_prepare_v2(db, "SELECT 1 FROM json_each(?1) GROUP BY key HAVING count(*) > 1", -1,
                         &pStmt, 0) != SQLITE_OK) {
    fz_fail("prepare: %s", sqlite3_errmsg(db));
  }
  sqlite3_bind_text(pStmt, 1, zObj, -1, SQLITE_STATIC);
  dup = sqlite3_step(pStmt) == SQLITE_ROW;
  sqlite3_reset(pStmt);
  return dup;
}

/* Compares the expanded URL with the model: the literals as written, and
** each placeholder's value percent-encoded, however the encoder chose to
** write it (an unreserved character may be written as %XX, RFC 3986 2.3).
** Returns 0 when the record is invalid for the model, 1 after checking a
** valid one. */
static int check_model(sqlite3 *db, const cr_dest *d, const char *zBase, const char *zRecord,
                       const char *zUrl) {
  const char *z = zUrl;
  int i;
  char **azVal = calloc((size_t)d->nUrlPart + 1, sizeof(char *));
  int ok = 1;
  if (azVal == 0) abort();
  for (i = 0; ok && i < d->nUrlPart; i++) {
    const cr_url_part *pPart = &d->aUrlPart[i];
    int r;
    if (!pPart->isPlaceholder) continue;
    r = member_value(db, zRecord, pPart->zText, &azVal[i]);
    if (r == 0 && !pPart->recordOnly) r = member_value(db, d->zParams, pPart->zText, &azVal[i]);
    if (r <= 0) ok = 0;
  }
  if (ok && zUrl) {
    if (d->zUrl[0] == '/') {
      if (strncmp(z, zBase, strlen(zBase)) != 0) fz_fail("URL [%s] without api_base", zUrl);
      z += strlen(zBase);
    }
    for (i = 0; i < d->nUrlPart; i++) {
      const cr_url_part *pPart = &d->aUrlPart[i];
      const unsigned char *v;
      if (!pPart->isPlaceholder) {
        size_t n = strlen(pPart->zText);
        if (strncmp(z, pPart->zText, n) != 0) {
          fz_fail("URL [%s]: literal [%s] expected at [%s]", zUrl, pPart->zText, z);
        }
        z += n;
        continue;
      }
      for (v = (const unsigned char *)azVal[i]; *v; v++) {
        int n = enc_token(z), c;
        if (n == 0)
          fz_fail("URL [%s]: [%s] is not percent-encoded (value [%s])", zUrl, z, azVal[i]);
        c = n == 1 ? (unsigned char)z[0]
                   : ((z[1] <= '9' ? z[1] - '0' : z[1] - 'A' + 10) * 16 +
                      (z[2] <= '9' ? z[2] - '0' : z[2] - 'A' + 10));
        if (c != *v) {
          fz_fail("URL [%s]: placeholder {%s} does not decode to the value [%s] at [%s]", zUrl,
                  pPart->zText, azVal[i], z);
        }
        z += n;
      }
    }
    if (*z) fz_fail("URL [%s] has [%s] after the template's end", zUrl, z);
  }
  for (i = 0; i < d->nUrlPart; i++)
    sqlite3_free(azVal[i]);
  free(azVal);
  return ok;
}

/* A string attribute of the record holding an escaped NUL (\u0000):
** SQLite 3.40 cuts the value off there, so the URL would silently name
** another object ("A\u0000B" -> "A"). */
static void check_no_nul(sqlite3 *db, const cr_dest *d, const char *zRecord) {
  static sqlite3_stmt *pStmt = 0;
  int i;
  if (fz_ignored("nul-values")) return;
  if (pStmt == 0 && sqlite3_prepare_v2(db,
                                       "SELECT json_type(?1, ?2)='text' AND"
                                       " instr(replace(?1 -> ?2, '\\\\', ''), '\\u0000') > 0",
                                       -1, &pStmt, 0) != SQLITE_OK) {
    fz_fail("prepare: %s", sqlite3_errmsg(db));
  }
  for (i = 0; i < d->nUrlPart; i++) {
    char *zPath;
    int hasNul = 0;
    if (!d->aUrlPart[i].isPlaceholder) continue;
    zPath = sqlite3_mprintf("$.\"%s\"", d->aUrlPart[i].zText);
    sqlite3_bind_text(pStmt, 1, zRecord, -1, SQLITE_STATIC);
    sqlite3_bind_text(pStmt, 2, zPath, -1, SQLITE_STATIC);
    if (sqlite3_step(pStmt) == SQLITE_ROW) hasNul = sqlite3_column_int(pStmt, 0);
    sqlite3_reset(pStmt);
    sqlite3_free(zPath);
    if (hasNul) {
      fz_fail("placeholder {%s%s}: the record's value holds \\u0000 and the record is valid;"
              " the URL holds the value cut off at the NUL: %s",
              d->aUrlPart[i].recordOnly ? "record." : "", d->aUrlPart[i].zText, zRecord);
    }
  }
}

/* The checks on a valid record's URL. */
static void check_url(sqlite3 *db, const cr_dest *d, const char *zBase, const char *zUrl) {
  matcher m;
  int i, nPrefix = 0;
  char *zErr = 0;
  if (zUrl == 0) fz_fail("valid record without a URL");
  if (d->zUrl[0] == '/') {
    nPrefix = (int)strlen(zBase);
    if (strncmp(zUrl, zBase, nPrefix) != 0 || zUrl[nPrefix] != '/') {
      fz_fail("URL [%s] does not start with api_base [%s] and '/'", zUrl, zBase);
    }
  } else {
    /* The origin written in the template comes first, unchanged. */
    const char *zLit = d->aUrlPart[0].zText;
    if (d->aUrlPart[0].isPlaceholder || strncmp(zUrl, zLit, strlen(zLit)) != 0) {
      fz_fail("URL [%s] does not start with the template's [%s]", zUrl, zLit);
    }
  }
  if (cr_origin_check(zBase, zUrl, &zErr) != SQLITE_OK) {
    fz_fail("expanded URL [%s] leaves the api_base origin [%s]: %s", zUrl, zBase, zErr);
  }
  sqlite3_free(zErr);
  if (strpbrk(zUrl, " \r\n\t")) fz_fail("URL [%s] has white space", zUrl);
  if (strchr(zUrl, '#') && !strchr(d->zUrl, '#')) fz_fail("URL [%s] gained a '#'", zUrl);
  if (strchr(zUrl, '?') && !strchr(d->zUrl, '?')) fz_fail("URL [%s] gained a '?'", zUrl);
  if (strchr(zUrl, '@') && !strchr(d->zUrl, '@')) fz_fail("URL [%s] gained a '@'", zUrl);

  m.pDest = d;
  m.zUrl = zUrl + nPrefix;
  m.nUrl = (int)strlen(m.zUrl);
  m.aFail = calloc((size_t)(m.nUrl + 1) * d->nUrlPart + 1, 1);
  m.aEnd = calloc((size_t)d->nUrlPart + 1, sizeof(int));
  if (m.aFail == 0 || m.aEnd == 0) abort();
  if (!match(&m, 0, 0)) {
    fz_fail("URL [%s] is not template [%s] with encoded values only", zUrl, d->zUrl);
  }

  /* A value that is a whole path segment "." or "..": libcurl removes such
  ** segments, so the request would go to another path. */
  if (!fz_ignored("dot-segments")) {
    int nPath = (int)strcspn(m.zUrl, "?#");
    for (i = 0; i < d->nUrlPart; i++) {
      int iStart = i ? m.aEnd[i - 1] : 0, iEnd = m.aEnd[i], n;
      const char *zSeg;
      if (!d->aUrlPart[i].isPlaceholder || iEnd > nPath) continue;
      /* the whole segment around this expansion */
      while (iStart > 0 && m.zUrl[iStart - 1] != '/')
        iStart--;
      while (iEnd < nPath && m.zUrl[iEnd] != '/')
        iEnd++;
      zSeg = m.zUrl + iStart;
      n = iEnd - iStart;
      if (iStart > 0 && ((n == 1 && zSeg[0] == '.') || (n == 2 && memcmp(zSeg, "..", 2) == 0))) {
        fz_fail("placeholder {%s%s} makes the dot segment \"%.*s\" in [%s]: libcurl "
                "removes it and the request goes to another path",
                d->aUrlPart[i].recordOnly ? "record." : "", d->aUrlPart[i].zText, n, zSeg, zUrl);
      }
    }
  }
  free(m.aFail);
  free(m.aEnd);
  (void)db;
}

static void init_bases(void) {
  int i;
  for (i = 0; i < 4; i++) {
    char *zErr = 0;
    if (cr_api_base_normalize("c", azBaseIn[i], &azBase[i], &zErr) != SQLITE_OK) {
      fz_fail("api_base %s: %s", azBaseIn[i], zErr);
    }
  }
}

/* cr_record_update_url() with the same template as update.url agrees with
** the record's url: the same URL, or invalid for a placeholder or length
** reason too; a {remote_id} takes the given remote id, percent-encoded,
** instead of any attribute; without a remote id it is never a URL. */
static void check_update_url(sqlite3 *db, const cr_dest *pDest, const char *zBase,
                             const cr_record *pRec) {
  static const char zRemote[] = "r/../ ?#x";
  cr_dest d = *pDest;
  char *zUrl = 0, *zWhy = 0;
  int i, rc, hasRemote = 0, urlReason;
  d.zUpdateUrl = pDest->zUrl;
  d.aUpdateUrlPart = pDest->aUrlPart;
  d.nUpdateUrlPart = pDest->nUrlPart;
  for (i = 0; i < d.nUpdateUrlPart; i++) {
    const cr_url_part *pPart = &d.aUpdateUrlPart[i];
    if (pPart->isPlaceholder && !pPart->recordOnly && strcmp(pPart->zText, "remote_id") == 0) {
      hasRemote = 1;
    }
  }
  rc = cr_record_update_url(db, &d, zBase, pRec->zJson, 0, &zUrl, &zWhy);
  if (rc != SQLITE_OK || zUrl || zWhy == 0) fz_fail("update URL without a remote id");
  sqlite3_free(zWhy);
  zWhy = 0;
  rc = cr_record_update_url(db, &d, zBase, pRec->zJson, zRemote, &zUrl, &zWhy);
  if (fz_verbose()) fprintf(stderr, "update url %s\n  why %s\n", zUrl, zWhy ? zWhy : "-");
  if (rc != SQLITE_OK) fz_fail("cr_record_update_url rc %d: %s", rc, zWhy ? zWhy : "");
  if ((zUrl == 0) == (zWhy == 0)) fz_fail("update URL: not exactly one of URL and reason");
  if (zWhy && strncmp(zWhy, "update.url: ", 12) != 0) fz_fail("update URL reason: %s", zWhy);
  urlReason = pRec->zError &&
              (strstr(pRec->zError, "URL placeholder") || strstr(pRec->zError, "its URL is"));
  if (!hasRemote) {
    if (pRec->zError == 0 && (zUrl == 0 || strcmp(zUrl, pRec->zUrl) != 0)) {
      fz_fail("update URL %s, record URL %s", zUrl ? zUrl : zWhy, pRec->zUrl);
    }
    if (urlReason && zUrl) fz_fail("update URL valid, record URL not: %s", pRec->zError);
  } else if (zUrl && strstr(zUrl, "r%2F..%2F%20%3F%23x") == 0) {
    fz_fail("update URL without the encoded remote id: %s", zUrl);
  }
  if (zUrl) check_url(db, pDest, zBase, zUrl);
  sqlite3_free(zUrl);
  sqlite3_free(zWhy);
}

int LLVMFuzzerTestOneInput(const uint8_t *aData, size_t nData) {
  static sqlite3_stmt *pMake = 0;
  sqlite3 *db = fz_db();
  char *zIn, *zTemplate, *zRecord, *zParams, *zNl, *zConfig = 0, *zErr = 0;
  const char *zBase;
  cr_dest *pDest = 0;
  cr_records *pRecs = 0;
  cr_record rec;
  int sel, rc, nRows = 0;

  if (nData < 1 || nData > 20000) return 0;
  if (azBase[0] == 0) init_bases();
  sel = aData[0];
  zBase = azBase[sel & 3];
  zIn = fz_text(aData + 1, nData - 1);
  zTemplate = zIn;
  zNl = strchr(zTemplate, '\n');
  zRecord = zNl ? (*zNl = 0, zNl + 1) : (char *)"{}";
  zNl = strchr(zRecord, '\n');
  zParams = zNl ? (*zNl = 0, zNl + 1) : (char *)"";

  if (fz_ignored("json-label") &&
      (fz_sqlite_accepts_bad_json(zRecord) || fz_sqlite_accepts_bad_json(zParams))) {
    goto done;
  }
  if (pMake == 0 &&
      sqlite3_prepare_v2(db,
                         "SELECT json_object('credential','c','url',?1,'params',"
                         " CASE WHEN json_valid(?2) AND json_type(?2)='object' THEN json(?2)"
                         " ELSE json_object('account_id','AC C/../?#@:%x+\xc3\xa9','n',42,"
                         "'r',0.5) END)",
                         -1, &pMake, 0) != SQLITE_OK) {
    fz_fail("prepare: %s", sqlite3_errmsg(db));
  }
  sqlite3_bind_text(pMake, 1, zTemplate, -1, SQLITE_TRANSIENT);
  if ((sel & 4) && zTemplate[0] == '/') {
    char *zAbs = sqlite3_mprintf("%s%s", zBase, zTemplate);
    sqlite3_bind_text(pMake, 1, zAbs, -1, sqlite3_free);
  }
  sqlite3_bind_text(pMake, 2, zParams, -1, SQLITE_STATIC);
  if (sqlite3_step(pMake) == SQLITE_ROW) {
    zConfig = cr_strdup((const char *)sqlite3_column_text(pMake, 0));
  }
  sqlite3_reset(pMake);
  sqlite3_clear_bindings(pMake);
  if (zConfig == 0) goto done;

  rc = cr_dest_parse(db, "d", zConfig, &pDest, &zErr);
  fz_check_dest_error("d", rc, pDest, zErr);
  if (fz_verbose()) fprintf(stderr, "config %s: %s\n", zConfig, rc ? zErr : "accepted");
  if (rc != SQLITE_OK) goto done;
  fz_check_dest(db, "d", pDest);
  if (pDest->zUrl[0] != '/') {
    /* callrail_destination() refuses an absolute URL of another origin */
    if (cr_origin_check(zBase, pDest->zUrl, &zErr) != SQLITE_OK) goto done;
  }

  rc = cr_records_open_json(db, pDest, zBase, zRecord, &pRecs, &zErr);
  if (fz_verbose()) fprintf(stderr, "open %s: %s\n", zRecord, rc ? zErr : "ok");
  if (rc != SQLITE_OK) {
    if (zErr == 0) fz_fail("cr_records_open_json failed without a message");
    if (pRecs) fz_fail("cr_records_open_json failed but returned records");
    if (fz_json_is(zRecord, "object") && strstr(zErr, "double quote") == 0) {
      fz_fail("record refused that is a JSON object: %s", zErr);
    }
    goto done;
  }
  if (!fz_json_is(zRecord, "object")) fz_fail("record accepted that is no JSON object");

  while ((rc = cr_records_next(pRecs, &rec, &zErr)) == SQLITE_ROW) {
    nRows++;
    if (fz_verbose()) {
      fprintf(stderr, "record: url %s\n  error %s\n", rec.zUrl, rec.zError ? rec.zError : "-");
    }
    if (rec.iRow != nRows) fz_fail("iRow %lld for record %d", rec.iRow, nRows);
    if (!fz_json_is(rec.zJson, "object")) fz_fail("zJson is not an object: %s", rec.zJson);
    if (rec.zError == 0 && !fz_json_is(rec.zBody, "object")) {
      fz_fail("zBody is not an object: %s", rec.zBody);
    }
    if (rec.zKey || rec.zKeyJson || rec.zGroup) fz_fail("key or group without key or batch");
    if (rec.zError == 0) check_url(db, pDest, zBase, rec.zUrl);
    if (rec.zError == 0) check_no_nul(db, pDest, rec.zJson);
    check_update_url(db, pDest, zBase, &rec);
    if (strchr(rec.zJson, '\\') == 0 && strchr(pDest->zParams, '\\') == 0) {
      /* no JSON escapes: the model knows exactly which records are valid */
      /* A record over the size limits of cr_internal.h is invalid whatever
      ** the model says; its URL must still be right. */
      int tooBig = 0;
      int valid;
#ifdef CR_MAX_URL
      if (rec.zUrl && strlen(rec.zUrl) > CR_MAX_URL) tooBig = 1;
#endif
#ifdef CR_MAX_BODY
      if (rec.zBody && strlen(rec.zBody) > CR_MAX_BODY) tooBig = 1;
#endif
      /* a member named twice makes the record invalid (the body would
      ** keep both while URL and exclude see the first) */
      valid = !has_duplicate_member(db, rec.zJson) &&
              check_model(db, pDest, zBase, rec.zJson, rec.zError && !tooBig ? 0 : rec.zUrl);
      if (!valid && rec.zError == 0) fz_fail("record valid, the model says invalid: %s", rec.zUrl);
      if (valid && rec.zError != 0 && !tooBig) {
        fz_fail("record invalid, the model says valid: %s", rec.zError);
      }
      if (tooBig && rec.zError == 0) fz_fail("record over the size limits is valid");
    }
    if (rec.zError && strncmp(rec.zError, "record 1: ", 10) != 0) {
      fz_fail("invalid record message does not name the record: %s", rec.zError);
    }
    cr_record_clear(&rec);
  }
  if (rc != SQLITE_DONE) fz_fail("cr_records_next: rc %d %s", rc, zErr ? zErr : "");
  if (nRows != 1) fz_fail("%d records from one JSON record", nRows);
  if (cr_records_next(pRecs, &rec, &zErr) != SQLITE_DONE) fz_fail("a record after the end");

done:
  cr_records_close(pRecs);
  cr_dest_free(pDest);
  sqlite3_free(zErr);
  sqlite3_free(zConfig);
  sqlite3_free(zIn);
  return 0;
}
