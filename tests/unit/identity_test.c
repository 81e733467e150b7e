/*
** identity_test.c - when two requests are the same request, as decided by
** ext/cr_identity.c.
**
** Change detection skips a keyed record whose request was already
** delivered, so the identity must ignore what does not change the request
** (how the origin is spelled, the order of object members, whitespace,
** how a number is written) and see everything that does.  A standalone
** program: cr_identity.c and cr_util.c are compiled with -DSQLITE_CORE, as
** for config_test.c.  It checks
**
**   - cr_url_normalize(): scheme and host in lower case, https's :443 and
**     http's :80 dropped, any other port kept, path and query untouched;
**   - cr_identity_hash(): insensitive to member order and whitespace, and
**     to 1.50 vs 1.5; sensitive to array order, values, types, names,
**     method and URL (after normalisation); DELETE has no body.
**
** Prints one line per failed check and ends with "N passed, N failed".
*/
#include "cr_internal.h"

#include <stdio.h>
#include <string.h>

static int nPass = 0;
static int nFail = 0;
static cr_identity *pIdent = 0;

/* Counts one check; prints what failed and why. */
static void expect(int ok, int line, const char *zWhat, const char *zGot) {
  if (ok) {
    nPass++;
    return;
  }
  nFail++;
  printf("FAIL line %d: %s%s%s\n", line, zWhat, zGot ? "; got: " : "", zGot ? zGot : "(NULL)");
}

/* cr_url_normalize(zIn) must be zWant. */
static void url_is(int line, const char *zIn, const char *zWant) {
  char *zGot = cr_url_normalize(zIn);
  char *zWhat = sqlite3_mprintf("%s -> %s", zIn, zWant);
  expect(zGot != 0 && strcmp(zGot, zWant) == 0, line, zWhat, zGot);
  sqlite3_free(zWhat);
  sqlite3_free(zGot);
}
#define URL(zIn, zWant) url_is(__LINE__, zIn, zWant)

static void test_url_normalize(void) {
  URL("https://API.CallRail.com:443/v3/x", "https://api.callrail.com/v3/x");
  URL("HTTPS://API.CALLRAIL.COM/v3/A/ACC1/Companies.json",
      "https://api.callrail.com/v3/A/ACC1/Companies.json");
  URL("https://api.callrail.com/v3/x", "https://api.callrail.com/v3/x");
  URL("https://api.callrail.com:443", "https://api.callrail.com");
  URL("https://api.callrail.com:443?q=A", "https://api.callrail.com?q=A");
  URL("http://127.0.0.1:80/v3/a.json", "http://127.0.0.1/v3/a.json");
  URL("HTTP://LocalHost:80/v3/X", "http://localhost/v3/X");
  /* other ports, and the other scheme's default, are other servers */
  URL("http://127.0.0.1:8080/v3/x", "http://127.0.0.1:8080/v3/x");
  URL("https://api.callrail.com:8443/v3/x", "https://api.callrail.com:8443/v3/x");
  URL("https://api.callrail.com:4430/v3/x", "https://api.callrail.com:4430/v3/x");
  URL("https://api.callrail.com:80/v3/x", "https://api.callrail.com:80/v3/x");
  URL("http://127.0.0.1:443/v3/x", "http://127.0.0.1:443/v3/x");
  /* only the origin: a ":443" or upper case later in the URL stays */
  URL("https://h.example/a:443/B?X=Y#Z", "https://h.example/a:443/B?X=Y#Z");
  URL("/v3/a/ACC/companies.json", "/v3/a/ACC/companies.json");
  URL("", "");
}

/* The identity of a request (never NULL: the checks compare strings). */
static char *hash(const char *zMethod, const char *zUrl, const char *zBody) {
  char *z = cr_identity_hash(pIdent, zMethod, zUrl, zBody);
  return z ? z : sqlite3_mprintf("(NULL)");
}

#define U "https://api.callrail.com/v3/a/ACC1/companies.json"

/* Two requests have the same identity (isSame) or not. */
static void same_or_not(int line, int isSame, const char *zM1, const char *zU1, const char *zB1,
                        const char *zM2, const char *zU2, const char *zB2) {
  char *z1 = hash(zM1, zU1, zB1);
  char *z2 = hash(zM2, zU2, zB2);
  char *zWhat = sqlite3_mprintf("%s %s %s %s %s %s %s", zM1, zU1, zB1 ? zB1 : "(no body)",
                                isSame ? "==" : "!=", zM2, zU2, zB2 ? zB2 : "(no body)");
  char *zGot = sqlite3_mprintf("%s vs %s", z1, z2);
  expect((strcmp(z1, z2) == 0) == isSame, line, zWhat, zGot);
  sqlite3_free(zWhat);
  sqlite3_free(zGot);
  sqlite3_free(z1);
  sqlite3_free(z2);
}
/* Bodies of POSTs to U: the same request, or another one. */
#define SAME(zB1, zB2) same_or_not(__LINE__, 1, "POST", U, zB1, "POST", U, zB2)
#define DIFFERENT(zB1, zB2) same_or_not(__LINE__, 0, "POST", U, zB1, "POST", U, zB2)

static void test_body(void) {
  SAME("{\"name\":\"A\",\"time_zone\":\"America/Denver\"}",
       "{\"time_zone\":\"America/Denver\",\"name\":\"A\"}");
  SAME("{\"a\":{\"x\":1,\"y\":[1,2]},\"b\":null}",
       "{ \"b\" : null ,\n\t\"a\" : { \"y\" : [ 1 , 2 ] , \"x\" : 1 } }");
  SAME("[{\"a\":1,\"b\":2}]", "[{\"b\":2,\"a\":1}]");
  SAME("{\"price\":1.50}", "{\"price\":1.5}");
  SAME("{\"a\":\"\\u0041\"}", "{\"a\":\"A\"}");
  SAME("not JSON at all", "not JSON at all");
  DIFFERENT("[1,2]", "[2,1]");
  DIFFERENT("{\"tags\":[\"x\",\"y\"]}", "{\"tags\":[\"y\",\"x\"]}");
  DIFFERENT("[[1],[2]]", "[[2],[1]]");
  DIFFERENT("{\"a\":1}", "{\"a\":2}");
  DIFFERENT("{\"price\":1.5}", "{\"price\":1.51}");
  DIFFERENT("{\"a\":1}", "{\"a\":\"1\"}");
  DIFFERENT("{\"a\":1}", "{\"a\":true}");
  DIFFERENT("{\"a\":null}", "{}");
  DIFFERENT("{\"a\":\"\"}", "{\"a\":null}");
  DIFFERENT("{\"a\":\"x\"}", "{\"b\":\"x\"}");
  DIFFERENT("{\"a\":{\"b\":1}}", "{\"a.b\":1}");
  DIFFERENT("{\"a\":[1]}", "{\"a\":1}");
  DIFFERENT("{\"a\":1,\"b\":1}", "{\"a\":1}");
  DIFFERENT("not JSON at all", "not JSON at all!");
  DIFFERENT("{}", 0);
}

static void test_method_and_url(void) {
  const char *zB = "{\"name\":\"A\"}";
  same_or_not(__LINE__, 0, "POST", U, zB, "PUT", U, zB);
  same_or_not(__LINE__, 0, "PUT", U, zB, "PATCH", U, zB);
  same_or_not(__LINE__, 0, "POST", U, zB, "POST", U "?x=1", zB);
  same_or_not(__LINE__, 0, "POST", U, zB, "POST",
              "https://api.callrail.com/v3/a/ACC2/companies.json", zB);
  same_or_not(__LINE__, 0, "POST", U, zB, "POST",
              "http://api.callrail.com/v3/a/ACC1/companies.json", zB);
  same_or_not(__LINE__, 0, "POST", U, zB, "POST",
              "https://api.callrail.com:8443/v3/a/ACC1/companies.json", zB);
  /* the origin spelled with the default port, or in capitals, is one */
  same_or_not(__LINE__, 1, "POST", U, zB, "POST",
              "https://API.CallRail.com:443/v3/a/ACC1/companies.json", zB);
  same_or_not(__LINE__, 1, "PUT", "http://127.0.0.1/v3/a/X/c/1.json", zB, "PUT",
              "http://127.0.0.1:80/v3/a/X/c/1.json", zB);
  /* but the path's case is the server's business */
  same_or_not(__LINE__, 0, "POST", U, zB, "POST",
              "https://api.callrail.com/v3/a/acc1/companies.json", zB);
  /* DELETE: no body */
  same_or_not(__LINE__, 1, "DELETE", U, 0, "DELETE",
              "https://api.callrail.com:443/v3/a/ACC1/companies.json", 0);
  same_or_not(__LINE__, 0, "DELETE", U, 0, "DELETE", U "/x", 0);
  same_or_not(__LINE__, 0, "DELETE", U, 0, "POST", U, 0);
}

/* The identity is 16 lower-case hex digits, the same at every call. */
static void test_shape(void) {
  char *z1 = hash("DELETE", U, 0);
  char *z2 = hash("DELETE", U, 0);
  expect(strlen(z1) == 16 && strspn(z1, "0123456789abcdef") == 16, __LINE__,
         "16 lower-case hex digits", z1);
  expect(strcmp(z1, z2) == 0, __LINE__, "the same identity twice", z2);
  sqlite3_free(z1);
  sqlite3_free(z2);
}

int main(void) {
  sqlite3 *db = 0;
  char *zErr = 0;
  if (sqlite3_open(":memory:", &db) != SQLITE_OK || cr_identity_open(db, &pIdent, &zErr)) {
    printf("cannot open the identity: %s\n", zErr ? zErr : "sqlite3_open failed");
    return 1;
  }
  test_url_normalize();
  test_body();
  test_method_and_url();
  test_shape();
  cr_identity_close(pIdent);
  sqlite3_close(db);
  printf("%d passed, %d failed\n", nPass, nFail);
  return nFail != 0;
}
