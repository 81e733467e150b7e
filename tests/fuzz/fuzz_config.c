/*
** fuzz_config.c - libFuzzer target: a destination config (README "Destination config").
**
** The input, as text, is the config JSON of destination "d":
**
**   cr_dest_parse(db, "d", input)
**
** A refused config must fail with a message naming the destination and no
** cr_dest; an accepted one must satisfy every rule of the config (see
** fz_check_dest()), parse the same way a second time, and free cleanly.
*/
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *aData, size_t nData) {
  sqlite3 *db = fz_db();
  char *zConfig = fz_text(aData, nData);
  cr_dest *pDest = 0, *pAgain = 0;
  char *zErr = 0, *zErr2 = 0;
  int rc, rc2;

  if (fz_ignored("json-label") && fz_sqlite_accepts_bad_json(zConfig)) {
    sqlite3_free(zConfig);
    return 0;
  }
  rc = cr_dest_parse(db, "d", zConfig, &pDest, &zErr);
  fz_check_dest_error("d", rc, pDest, zErr);
  if (fz_verbose()) fprintf(stderr, "config: %s\n", rc == SQLITE_OK ? "accepted" : zErr);
  if (rc == SQLITE_OK) {
    if (pDest == 0) fz_fail("cr_dest_parse returned SQLITE_OK and no destination");
    fz_check_dest(db, "d", pDest);
  }

  /* The same text is parsed the same way (a saved config keeps its meaning). */
  rc2 = cr_dest_parse(db, "d", zConfig, &pAgain, &zErr2);
  if (rc2 != rc) fz_fail("second parse gave rc %d, first %d", rc2, rc);
  if (rc != SQLITE_OK && strcmp(zErr, zErr2) != 0) {
    fz_fail("second parse gave another error:\n  %s\n  %s", zErr, zErr2);
  }
  if (rc == SQLITE_OK &&
      (pAgain->nUrlPart != pDest->nUrlPart || pAgain->nHeader != pDest->nHeader ||
       pAgain->eMethod != pDest->eMethod || strcmp(pAgain->zParams, pDest->zParams) != 0)) {
    fz_fail("second parse gave another destination");
  }

  cr_dest_free(pAgain);
  cr_dest_free(pDest);
  cr_dest_free(0);
  sqlite3_free(zErr);
  sqlite3_free(zErr2);
  sqlite3_free(zConfig);
  return 0;
}
