/*
** cr_quota.c - CallRail's rate limits: which account and which limit a
** request counts against.
**
** CallRail limits requests per account: 1,000 an hour and 10,000 a day in
** general, and within those 150/h and 1,000/day for POST text-messages.json
** and 100/h and 2,000/day for POST calls.json.  Every request's row in
** callrail_responses carries its bucket (origin + account) and class, so
** usage recorded by any run, destination or process sharing the database
** file counts.
*/
#include "cr_internal.h"
SQLITE_EXTENSION_INIT3

#include <string.h>

/* Length of the text ending with "/v3/a/ACCOUNT" in zUrl, or 0. */
static size_t cr_account_prefix(const char *zUrl) {
  const char *zA = strstr(zUrl, "/v3/a/");
  size_t n;
  if (zA == 0) return 0;
  n = (size_t)(zA - zUrl) + 6;
  while (zUrl[n] && zUrl[n] != '/' && zUrl[n] != '?' && zUrl[n] != '#')
    n++;
  return n;
}

/* True if the URL's path ends with zTail (before any query). */
static int cr_path_ends(const char *zUrl, const char *zTail) {
  size_t n = strcspn(zUrl, "?#");
  size_t m = strlen(zTail);
  return n >= m && strncmp(zUrl + n - m, zTail, m) == 0;
}

void cr_quota_key_of(int eMethod, const char *zUrl, cr_quota_key *pKey) {
  size_t n = zUrl ? cr_account_prefix(zUrl) : 0;
  pKey->zBucket = n ? sqlite3_mprintf("%.*s", (int)n, zUrl) : 0;
  pKey->zClass = "general";
  if (eMethod == CR_METHOD_POST && zUrl) {
    if (cr_path_ends(zUrl, "/text-messages.json")) pKey->zClass = "sms";
    if (cr_path_ends(zUrl, "/calls.json")) pKey->zClass = "calls";
  }
}

void cr_quota_key_clear(cr_quota_key *pKey) {
  sqlite3_free(pKey->zBucket);
  pKey->zBucket = 0;
}
