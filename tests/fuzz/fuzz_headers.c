/*
** fuzz_headers.c - libFuzzer target: the string form of "headers".
**
** The input bytes, whatever they are (NUL, CR, LF, invalid UTF-8), become
** the JSON string value of "headers" through SQL's json_object():
**
**   {"credential":"c","url":"/v3/a/A/x","headers": <input as a JSON string>}
**
** and the config is parsed.  A small model of README "Destination config" (below) says
** whether the string must be accepted and which headers it gives; the
** parser must agree exactly.  Whatever the model says, an accepted config
** must never hold CR, LF, NUL or another control character in a header, an
** empty or non-token name, a forbidden header or a name given twice.
*/
#include "fuzz_common.h"

/* The model: "Name:value" items separated by commas; name and value are
** trimmed of spaces and tabs; the name is an HTTP token that may be set
** and appears once (ignoring case); the value is not empty and has no
** control character but tab; CR, LF or NUL anywhere refuses the whole
** string.  Returns the number of headers, or -1 if the string must be
** refused; azOut receives "Name: value" (sqlite3_free each). */
static int model_headers(const char *a, int n, char **azOut, int nMax) {
  int i = 0, nOut = 0, k;
  for (k = 0; k < n; k++) {
    if (a[k] == 0 || a[k] == '\r' || a[k] == '\n') return -1;
  }
  for (;;) {
    int nItem = 0, nName, nValue, j;
    const char *zItem = a + i, *zName, *zValue, *zColon;
    while (i + nItem < n && a[i + nItem] != ',')
      nItem++;
    zColon = memchr(zItem, ':', nItem);
    if (zColon == 0) goto refuse;
    zName = zItem;
    nName = (int)(zColon - zItem);
    while (nName > 0 && (*zName == ' ' || *zName == '\t'))
      zName++, nName--;
    while (nName > 0 && (zName[nName - 1] == ' ' || zName[nName - 1] == '\t'))
      nName--;
    zValue = zColon + 1;
    nValue = nItem - (int)(zColon - zItem) - 1;
    while (nValue > 0 && (*zValue == ' ' || *zValue == '\t'))
      zValue++, nValue--;
    while (nValue > 0 && (zValue[nValue - 1] == ' ' || zValue[nValue - 1] == '\t'))
      nValue--;
    if (nName == 0 || nValue == 0) goto refuse;
    for (j = 0; j < nName; j++) {
      if (!fz_is_tchar((unsigned char)zName[j])) goto refuse;
    }
    if (fz_header_forbidden(zName, nName)) goto refuse;
    for (j = 0; j < nValue; j++) {
      unsigned char c = (unsigned char)zValue[j];
      if ((c < ' ' && c != '\t') || c == 0x7f) goto refuse;
    }
    for (j = 0; j < nOut; j++) {
      if ((int)strcspn(azOut[j], ":") == nName && sqlite3_strnicmp(azOut[j], zName, nName) == 0) {
        goto refuse;
      }
    }
    if (nOut == nMax) goto refuse; /* the caller's limit, not the parser's */
    azOut[nOut++] = sqlite3_mprintf("%.*s: %.*s", nName, zName, nValue, zValue);
    i += nItem;
    if (i >= n) break;
    i++; /* the comma: an item follows, even if empty */
  }
  return nOut;
refuse:
  for (k = 0; k < nOut; k++)
    sqlite3_free(azOut[k]);
  return -1;
}

#define MAX_MODEL_HEADERS 4096

int LLVMFuzzerTestOneInput(const uint8_t *aData, size_t nData) {
  static sqlite3_stmt *pMake = 0;
  static char *azWant[MAX_MODEL_HEADERS];
  sqlite3 *db = fz_db();
  cr_dest *pDest = 0;
  char *zErr = 0, *zConfig = 0;
  int rc, nWant, i;

  if (nData > 100000) return 0;
  if (pMake == 0 &&
      sqlite3_prepare_v2(db, "SELECT json_object('credential','c','url','/v3/a/A/x','headers',?1)",
                         -1, &pMake, 0) != SQLITE_OK) {
    fz_fail("prepare: %s", sqlite3_errmsg(db));
  }
  sqlite3_bind_text(pMake, 1, nData ? (const char *)aData : "", (int)nData, SQLITE_STATIC);
  if (sqlite3_step(pMake) != SQLITE_ROW) fz_fail("json_object: %s", sqlite3_errmsg(db));
  zConfig = cr_strdup((const char *)sqlite3_column_text(pMake, 0));
  sqlite3_reset(pMake);
  if (zConfig == 0) abort();

  rc = cr_dest_parse(db, "d", zConfig, &pDest, &zErr);
  fz_check_dest_error("d", rc, pDest, zErr);
  if (fz_verbose()) {
    fprintf(stderr, "config: %s\n%s\n", zConfig, rc == SQLITE_OK ? "accepted" : zErr);
  }
  if (rc == SQLITE_OK) fz_check_dest(db, "d", pDest);

  nWant = model_headers((const char *)aData, (int)nData, azWant, MAX_MODEL_HEADERS);
  if (rc == SQLITE_NOMEM) {
    /* nothing to compare */
  } else if (nWant < 0 && rc == SQLITE_OK) {
    fz_fail("headers accepted that must be refused (%d accepted): %s", pDest->nHeader, zConfig);
  } else if (nWant >= 0 && rc != SQLITE_OK) {
    fz_fail("headers refused that must be accepted: %s\n  error: %s", zConfig, zErr);
  } else if (nWant >= 0) {
    if (pDest->nHeader != nWant) {
      fz_fail("%d headers, the model has %d: %s", pDest->nHeader, nWant, zConfig);
    }
    for (i = 0; i < nWant; i++) {
      if (strcmp(pDest->azHeader[i], azWant[i]) != 0) {
        fz_fail("header %d is [%s], the model has [%s]", i, pDest->azHeader[i], azWant[i]);
      }
    }
  }
  for (i = 0; i < nWant; i++)
    sqlite3_free(azWant[i]);

  cr_dest_free(pDest);
  sqlite3_free(zErr);
  sqlite3_free(zConfig);
  return 0;
}
