/*
** config_test.c - the destination config of README "Destination config", as parsed by
** ext/cr_config.c.
**
** A standalone program: cr_config.c and cr_util.c are compiled with
** -DSQLITE_CORE, so sqlite3ext.h maps nothing and SQLITE_EXTENSION_INIT3 is
** empty, and their sqlite3_* calls go straight to libsqlite3 (see
** tests/unit/Makefile.config).  It checks
**
**   - every default, on the smallest valid config;
**   - every key accepted with good values, and the fields it sets;
**   - for bad input, that parsing fails with a message that starts with
**     'destination "leads": ' and names the key (and, for a value of the
**     wrong JSON type, that type);
**   - that the first problem in document order is the one reported;
**   - cr_dest_load(): active flag, unknown and NULL names;
**   - that a failed allocation anywhere ends in an error, not a crash/leak.
**
** Prints one line per failed check and ends with "N passed, N failed".
*/
#include "cr_internal.h"

#include <stdio.h>
#include <string.h>

static int nPass = 0;
static int nFail = 0;
static sqlite3 *db = 0;

#define MINIMAL "\"credential\":\"c\",\"url\":\"/v3/a/{account_id}/companies.json\""

/* Records one check; zWhat says what was expected when it fails. */
static void check(int ok, int line, const char *zWhat, const char *zDetail) {
  if (ok) {
    nPass++;
  } else {
    nFail++;
    printf("FAIL line %d: expected %s%s%s\n", line, zWhat, zDetail ? "; got: " : "",
           zDetail ? zDetail : "");
  }
}

/* Parses zConfig as destination "leads"; the result must be a cr_dest. */
static cr_dest *parse_ok(int line, const char *zConfig) {
  cr_dest *p = 0;
  char *zErr = 0;
  int rc = cr_dest_parse(db, "leads", zConfig, &p, &zErr);
  check(rc == SQLITE_OK && p != 0 && zErr == 0, line, zConfig, zErr);
  sqlite3_free(zErr);
  return p;
}

/* A config that must be accepted (then freed). */
#define ACCEPT(zConfig) cr_dest_free(parse_ok(__LINE__, zConfig))

/* zConfig must be refused with a message that starts with the
** destination's name and contains zWant (and zWant2, if not NULL). */
static void expect_error(int line, const char *zConfig, const char *zWant, const char *zWant2) {
  const char *zPrefix = "destination \"leads\": ";
  cr_dest *p = 0;
  char *zErr = 0;
  int rc = cr_dest_parse(db, "leads", zConfig, &p, &zErr);
  int ok = rc != SQLITE_OK && p == 0 && zErr != 0 && strncmp(zErr, zPrefix, strlen(zPrefix)) == 0 &&
           strstr(zErr, zWant) != 0 && (zWant2 == 0 || strstr(zErr, zWant2) != 0);
  if (!ok) {
    char *zWhat = sqlite3_mprintf("%s should fail with [%s]%s%s%s", zConfig, zWant,
                                  zWant2 ? " and [" : "", zWant2 ? zWant2 : "", zWant2 ? "]" : "");
    check(0, line, zWhat, zErr ? zErr : "(accepted)");
    sqlite3_free(zWhat);
  } else {
    check(1, line, 0, 0);
  }
  cr_dest_free(p);
  sqlite3_free(zErr);
}
#define REFUSE(zConfig, zWant) expect_error(__LINE__, zConfig, zWant, 0)
#define REFUSE2(zConfig, zWant, zWant2) expect_error(__LINE__, zConfig, zWant, zWant2)

/* The message must be exactly zWant (prefix included). */
static void expect_message(int line, const char *zName, const char *zConfig, const char *zWant) {
  cr_dest *p = 0;
  char *zErr = 0;
  cr_dest_parse(db, zName, zConfig, &p, &zErr);
  check(p == 0 && zErr != 0 && strcmp(zErr, zWant) == 0, line, zWant, zErr ? zErr : "(accepted)");
  cr_dest_free(p);
  sqlite3_free(zErr);
}
#define MESSAGE(zConfig, zWant) expect_message(__LINE__, "leads", zConfig, zWant)

#define CHECK_INT(expr, want) check((expr) == (want), __LINE__, #expr " == " #want, 0)
#define CHECK_STR(expr, want)                                                                      \
  check((expr) != 0 && strcmp((expr), (want)) == 0, __LINE__, #expr " == " #want, (expr))

/* Every default, on the smallest valid config. */
static void test_defaults(void) {
  cr_dest *p = parse_ok(__LINE__, "{" MINIMAL "}");
  if (p == 0) return;
  CHECK_STR(p->zName, "leads");
  CHECK_STR(p->zCredential, "c");
  CHECK_INT(p->eMethod, CR_METHOD_POST);
  CHECK_STR(p->zUrl, "/v3/a/{account_id}/companies.json");
  CHECK_INT(p->nUrlPart, 3);
  if (p->nUrlPart == 3) {
    CHECK_STR(p->aUrlPart[0].zText, "/v3/a/");
    CHECK_INT(p->aUrlPart[0].isPlaceholder, 0);
    CHECK_STR(p->aUrlPart[1].zText, "account_id");
    CHECK_INT(p->aUrlPart[1].isPlaceholder, 1);
    CHECK_INT(p->aUrlPart[1].recordOnly, 0);
    CHECK_STR(p->aUrlPart[2].zText, "/companies.json");
    CHECK_INT(p->aUrlPart[2].isPlaceholder, 0);
  }
  CHECK_STR(p->zParams, "{}");
  CHECK_INT(p->nHeader, 0);
  CHECK_INT(p->nExclude, 0);
  CHECK_INT(p->batchSize, 0);
  CHECK_INT(p->eGrouping, CR_GROUP_COUNT);
  CHECK_INT(p->nGroupAttr, 0);
  CHECK_INT(p->maxBytes, 0);
  CHECK_INT(p->zWrap == 0, 1);
  CHECK_INT(p->zKey == 0, 1);
  CHECK_INT(p->concurrency, 4);
  CHECK_INT(p->timeoutMs, 30000);
  CHECK_INT(p->connectTimeoutMs, 10000);
  CHECK_INT(p->maxAttempts, 5);
  CHECK_INT(p->baseDelayMs, 500);
  CHECK_INT(p->maxDelayMs, 60000);
  CHECK_INT(p->retryPost, 0);
  CHECK_INT(p->perHour, -1);
  CHECK_INT(p->perDay, -1);
  CHECK_INT(p->perSecond, -1);
  CHECK_INT(p->onQuotaStop, 0);
  CHECK_INT(p->captureResponses, 1);
  CHECK_INT(p->progress, -1);
  CHECK_INT(p->eSync, CR_SYNC_NEW);
  CHECK_INT(p->eUpdateMethod, CR_METHOD_PUT);
  CHECK_INT(p->zUpdateUrl == 0, 1);
  CHECK_INT(p->nUpdateUrlPart, 0);
  CHECK_STR(p->zIdPath, "$.id");
  CHECK_INT(p->onBusyError, 0);
  CHECK_INT(p->leaseMs, 60000);
  CHECK_INT(p->nJson, 0);
  cr_dest_free(p);
  /* sync defaults to "changed" for every method but POST */
  p = parse_ok(__LINE__, "{" MINIMAL ",\"method\":\"PUT\"}");
  if (p) CHECK_INT(p->eSync, CR_SYNC_CHANGED);
  cr_dest_free(p);
  p = parse_ok(__LINE__, "{" MINIMAL ",\"method\":\"DELETE\",\"key\":\"k\"}");
  if (p) CHECK_INT(p->eSync, CR_SYNC_CHANGED);
  cr_dest_free(p);
}

/* Every key with a good value, and the fields it sets. */
static void test_every_key(void) {
  cr_dest *p =
      parse_ok(__LINE__,
               "{\"credential\":\"main\",\"method\":\"PUT\","
               " \"url\":\"https://api.callrail.com/v3/a/{account_id}/calls/{record.id}.json?x=1\","
               " \"params\":{\"account_id\":\"ACC1\",\"n\":5,\"r\":1.5},"
               " \"format\":\"json\","
               " \"headers\":{\"X-One\":\" 1 \",\"X_Two!\":\"two words\"},"
               " \"exclude\":[\"id\",\"secret\"],"
               " \"batch\":{\"size\":50,\"grouping\":\"attribute\",\"attributes\":[\"company_id\"],"
               "           \"wrap\":\"calls\"},"
               " \"key\":\"lead_id\",\"concurrency\":64,\"timeout_ms\":3600000,"
               " \"connect_timeout_ms\":1,"
               " \"retry\":{\"max_attempts\":100,\"base_delay_ms\":0,\"max_delay_ms\":86400000,"
               "           \"retry_post\":true},"
               " \"rate_limit\":{\"per_hour\":150,\"per_day\":1000,\"per_second\":3},"
               " \"on_quota\":\"stop\",\"capture_responses\":false,\"progress\":true}");
  if (p == 0) return;
  CHECK_STR(p->zCredential, "main");
  CHECK_INT(p->eMethod, CR_METHOD_PUT);
  CHECK_INT(p->nUrlPart, 5);
  if (p->nUrlPart == 5) {
    CHECK_STR(p->aUrlPart[0].zText, "https://api.callrail.com/v3/a/");
    CHECK_STR(p->aUrlPart[1].zText, "account_id");
    CHECK_STR(p->aUrlPart[2].zText, "/calls/");
    CHECK_STR(p->aUrlPart[3].zText, "id");
    CHECK_INT(p->aUrlPart[3].isPlaceholder, 1);
    CHECK_INT(p->aUrlPart[3].recordOnly, 1);
    CHECK_STR(p->aUrlPart[4].zText, ".json?x=1");
  }
  CHECK_STR(p->zParams, "{\"account_id\":\"ACC1\",\"n\":5,\"r\":1.5}");
  CHECK_INT(p->nHeader, 2);
  if (p->nHeader == 2) {
    CHECK_STR(p->azHeader[0], "X-One: 1");
    CHECK_STR(p->azHeader[1], "X_Two!: two words");
  }
  CHECK_INT(p->nExclude, 2);
  if (p->nExclude == 2) CHECK_STR(p->azExclude[1], "secret");
  CHECK_INT(p->batchSize, 50);
  CHECK_INT(p->eGrouping, CR_GROUP_ATTRIBUTE);
  CHECK_INT(p->nGroupAttr, 1);
  if (p->nGroupAttr == 1) CHECK_STR(p->azGroupAttr[0], "company_id");
  CHECK_STR(p->zWrap, "calls");
  CHECK_STR(p->zKey, "lead_id");
  CHECK_INT(p->concurrency, 64);
  CHECK_INT(p->timeoutMs, 3600000);
  CHECK_INT(p->connectTimeoutMs, 1);
  CHECK_INT(p->maxAttempts, 100);
  CHECK_INT(p->baseDelayMs, 0);
  CHECK_INT(p->maxDelayMs, 86400000);
  CHECK_INT(p->retryPost, 1);
  CHECK_INT(p->perHour, 150);
  CHECK_INT(p->perDay, 1000);
  CHECK_INT(p->perSecond, 3);
  CHECK_INT(p->onQuotaStop, 1);
  CHECK_INT(p->captureResponses, 0);
  CHECK_INT(p->progress, 1);
  cr_dest_free(p);
}

/* The keys of many runs (sync, update, id_path, on_busy, lease_ms) and
** json, with the fields they set. */
static void test_sync_keys(void) {
  cr_dest *p = parse_ok(__LINE__, "{" MINIMAL ",\"key\":\"id\",\"sync\":\"upsert\","
                                  "\"update\":{\"url\":\"/v3/a/{account_id}/companies/"
                                  "{remote_id}.json\",\"method\":\"PATCH\"},"
                                  "\"id_path\":\"$.company.id\",\"on_busy\":\"error\","
                                  "\"lease_ms\":10000,\"json\":[\"tags\",\"custom\"]}");
  if (p) {
    CHECK_INT(p->eSync, CR_SYNC_UPSERT);
    CHECK_INT(p->eUpdateMethod, CR_METHOD_PATCH);
    CHECK_STR(p->zUpdateUrl, "/v3/a/{account_id}/companies/{remote_id}.json");
    CHECK_INT(p->nUpdateUrlPart, 5);
    if (p->nUpdateUrlPart == 5) {
      CHECK_STR(p->aUpdateUrlPart[3].zText, "remote_id");
      CHECK_INT(p->aUpdateUrlPart[3].isPlaceholder && !p->aUpdateUrlPart[3].recordOnly, 1);
    }
    CHECK_STR(p->zIdPath, "$.company.id");
    CHECK_INT(p->onBusyError, 1);
    CHECK_INT(p->leaseMs, 10000);
    CHECK_INT(p->nJson, 2);
    if (p->nJson == 2) CHECK_STR(p->azJson[1], "custom");
  }
  cr_dest_free(p);
  p = parse_ok(__LINE__, "{" MINIMAL ",\"key\":\"id\",\"sync\":\"upsert\","
                         "\"update\":{\"url\":\"https://x/v3/a/{account_id}/companies/"
                         "{remote_id}.json\"}}");
  if (p) CHECK_INT(p->eUpdateMethod, CR_METHOD_PUT);
  cr_dest_free(p);
  p = parse_ok(__LINE__, "{" MINIMAL ",\"key\":\"id\",\"sync\":\"changed\"}");
  if (p) CHECK_INT(p->eSync, CR_SYNC_CHANGED);
  cr_dest_free(p);
  p = parse_ok(__LINE__,
               "{" MINIMAL ",\"method\":\"PUT\",\"key\":\"id\",\"sync\":\"new\","
               "\"on_busy\":\"wait\",\"lease_ms\":86400000,\"json\":[],\"id_path\":\"$\"}");
  if (p) {
    CHECK_INT(p->eSync, CR_SYNC_NEW);
    CHECK_INT(p->onBusyError, 0);
    CHECK_INT(p->leaseMs, 86400000);
    CHECK_STR(p->zIdPath, "$");
  }
  cr_dest_free(p);
  ACCEPT("{" MINIMAL ",\"id_path\":\"$.data[0].id\"}");
  ACCEPT("{" MINIMAL ",\"key\":\"id\",\"sync\":\"new\",\"batch\":{\"size\":10}}");
}

#define UPSERT "{" MINIMAL ",\"key\":\"id\",\"sync\":\"upsert\""
#define UPDATE_URL "\"url\":\"/v3/a/{account_id}/companies/{remote_id}.json\""

/* Bad values and broken rules of the keys of many runs. */
static void test_sync_rules(void) {
  REFUSE2("{" MINIMAL ",\"key\":\"id\",\"sync\":\"always\"}", "key \"sync\" must be one of",
          "\"changed\", \"new\", \"upsert\", got \"always\"");
  REFUSE2("{" MINIMAL ",\"key\":\"id\",\"sync\":1}", "key \"sync\"", "(integer)");
  MESSAGE("{" MINIMAL ",\"sync\":\"new\"}",
          "destination \"leads\": key \"sync\" needs \"key\": without it no record is known to "
          "have been delivered");
  REFUSE("{" MINIMAL ",\"sync\":\"upsert\",\"update\":{" UPDATE_URL "}}",
         "key \"sync\" needs \"key\"");
  MESSAGE(UPSERT ",\"method\":\"PUT\",\"update\":{" UPDATE_URL "}}",
          "destination \"leads\": key \"sync\": \"upsert\" creates records with POST, got "
          "method \"PUT\"");
  REFUSE(UPSERT "}", "key \"update\" is required when \"sync\" is \"upsert\"");
  REFUSE(UPSERT ",\"update\":{}}", "key \"update.url\" is required");
  REFUSE(UPSERT ",\"update\":{\"method\":\"PUT\"}}", "key \"update.url\" is required");
  MESSAGE(UPSERT ",\"update\":{\"url\":\"/v3/a/{account_id}/companies/{id}.json\"}}",
          "destination \"leads\": key \"update.url\" must contain {remote_id}, the id CallRail "
          "returned for the record");
  REFUSE(UPSERT ",\"update\":{\"url\":\"/v3/a/{account_id}/companies/{record.remote_id}.json\"}}",
         "key \"update.url\" must contain {remote_id}");
  REFUSE(UPSERT ",\"update\":{" UPDATE_URL "},\"batch\":{\"size\":2}}",
         "key \"batch\" is not allowed when \"sync\" is \"upsert\"");
  REFUSE("{" MINIMAL ",\"update\":{" UPDATE_URL "}}",
         "key \"update\" is only allowed when \"sync\" is \"upsert\"");
  REFUSE("{" MINIMAL ",\"key\":\"id\",\"sync\":\"changed\",\"update\":{" UPDATE_URL "}}",
         "key \"update\" is only allowed when \"sync\" is \"upsert\"");
  REFUSE2(UPSERT ",\"update\":\"/v3/a/x/{remote_id}\"}", "key \"update\" must be an object",
          "(text)");
  REFUSE(UPSERT ",\"update\":{" UPDATE_URL ",\"mehtod\":\"PUT\"}}",
         "unknown key \"update.mehtod\"");
  REFUSE2(UPSERT ",\"update\":{" UPDATE_URL ",\"method\":\"POST\"}}",
          "key \"update.method\" must be one of \"PUT\", \"PATCH\"", "got \"POST\"");
  REFUSE(UPSERT ",\"update\":{" UPDATE_URL ",\"method\":\"DELETE\"}}", "key \"update.method\"");
  REFUSE2(UPSERT ",\"update\":{\"url\":5}}", "key \"update.url\" must be a URL", "(integer)");
  REFUSE(UPSERT ",\"update\":{\"url\":\"/v3/a/{account_id}/companies/{remote_id\"}}",
         "key \"update.url\": unterminated placeholder starting at position");
  REFUSE(UPSERT ",\"update\":{\"url\":\"https://{h}/v3/a/x/{remote_id}\"}}",
         "key \"update.url\": placeholder at position 9 is in the scheme or host");
  REFUSE(UPSERT ",\"update\":{\"url\":\"companies/{remote_id}\"}}", "key \"update.url\" must be");
  MESSAGE(UPSERT ",\"update\":{\"url\":\"/v3/a.json?id={remote_id}\"}}",
          "destination \"leads\": key \"update.url\": every CallRail endpoint a destination "
          "writes to is under /v3/a/{account_id}/ (e.g. \"/v3/a/{account_id}/companies.json\"), "
          "and requests are paced per account; \"/v3/a.json?id={remote_id}\" names no account");
  REFUSE(UPSERT ",\"update\":{\"url\":\"/v3/a/{a\\\\b}/companies/{remote_id}.json\"}}",
         "key \"update.url\": placeholder {a\\b} may not hold a double quote or a backslash");
  REFUSE("{" MINIMAL ",\"id_path\":\"id\"}", "key \"id_path\" must be a JSON path starting with");
  REFUSE("{" MINIMAL ",\"id_path\":\"\"}", "key \"id_path\" must be a JSON path");
  REFUSE2("{" MINIMAL ",\"id_path\":\"$.[\"}", "key \"id_path\" must be a JSON path",
          "got \"$.[\"");
  REFUSE2("{" MINIMAL ",\"id_path\":[\"$.id\"]}", "key \"id_path\"", "(array)");
  REFUSE2("{" MINIMAL ",\"on_busy\":\"fail\"}", "key \"on_busy\" must be one of",
          "\"wait\", \"error\"");
  REFUSE2("{" MINIMAL ",\"on_busy\":true}", "key \"on_busy\"", "(boolean)");
  REFUSE2("{" MINIMAL ",\"lease_ms\":9999}", "key \"lease_ms\" must be an integer from 10000",
          "got 9999");
  REFUSE2("{" MINIMAL ",\"lease_ms\":\"60000\"}", "key \"lease_ms\"", "(text)");
  REFUSE2("{" MINIMAL ",\"lease_ms\":86400001}", "key \"lease_ms\"", "got 86400001");
  REFUSE2("{" MINIMAL ",\"json\":\"tags\"}", "key \"json\" must be an array of strings", "(text)");
  REFUSE2("{" MINIMAL ",\"json\":[\"tags\",1]}", "key \"json[1]\"", "(integer)");
  REFUSE("{" MINIMAL ",\"json\":[\"\"]}", "key \"json[0]\" must be a non-empty string");
  REFUSE("{" MINIMAL ",\"json\":[\"a\",\"b\\\"c\"]}",
         "key \"json[1]\": the name may not hold a double quote");
}

/* Every CallRail endpoint a destination writes to names an account. */
static void test_url_account(void) {
  MESSAGE("{\"credential\":\"c\",\"url\":\"/v3/a.json\"}",
          "destination \"leads\": key \"url\": every CallRail endpoint a destination writes to "
          "is under /v3/a/{account_id}/ (e.g. \"/v3/a/{account_id}/companies.json\"), and "
          "requests are paced per account; \"/v3/a.json\" names no account");
  REFUSE("{\"credential\":\"c\",\"url\":\"/v3/a/{account_id}.json\"}", "names no account");
  REFUSE("{\"credential\":\"c\",\"url\":\"/v3/a//companies.json\"}", "names no account");
  REFUSE("{\"credential\":\"c\",\"url\":\"/v3/companies.json\"}", "names no account");
  REFUSE("{\"credential\":\"c\",\"url\":\"/v3/x.json?u=/v3/a/1/x\"}", "names no account");
  REFUSE("{\"credential\":\"c\",\"url\":\"http://127.0.0.1:8080\"}", "names no account");
  REFUSE("{\"credential\":\"c\",\"url\":\"/v3/{a}{record.b}x{record}\"}", "names no account");
  ACCEPT("{\"credential\":\"c\",\"url\":\"/v3/a/ACC1/companies.json\"}");
  ACCEPT("{\"credential\":\"c\",\"url\":\"/v3/a/{record.account}/calls/{id}.json\"}");
  ACCEPT("{\"credential\":\"c\",\"url\":\"https://proxy.example/callrail/v3/a/{a}/x.json\"}");
}

/* Values of some keys that are accepted but not tested above. */
static void test_other_good_values(void) {
  cr_dest *p;
  p = parse_ok(__LINE__, "{" MINIMAL ",\"method\":\"DELETE\",\"progress\":\"auto\","
                         "\"batch\":{\"grouping\":\"bytes\",\"max_bytes\":64}}");
  if (p) {
    CHECK_INT(p->eMethod, CR_METHOD_DELETE);
    CHECK_INT(p->progress, -1);
    CHECK_INT(p->batchSize, 100);
    CHECK_INT(p->eGrouping, CR_GROUP_BYTES);
    CHECK_INT(p->maxBytes, 64);
    cr_dest_free(p);
  }
  p = parse_ok(__LINE__, "{" MINIMAL ",\"method\":\"PATCH\",\"progress\":false,\"batch\":{},"
                         "\"headers\":\" X-A : 1 ,X-B:b:c\"}");
  if (p) {
    CHECK_INT(p->eMethod, CR_METHOD_PATCH);
    CHECK_INT(p->progress, 0);
    CHECK_INT(p->batchSize, 100);
    CHECK_INT(p->eGrouping, CR_GROUP_COUNT);
    CHECK_INT(p->zWrap == 0, 1);
    CHECK_INT(p->nHeader, 2);
    if (p->nHeader == 2) {
      CHECK_STR(p->azHeader[0], "X-A: 1");
      CHECK_STR(p->azHeader[1], "X-B: b:c");
    }
    cr_dest_free(p);
  }
  p = parse_ok(__LINE__, "{" MINIMAL ",\"batch\":null,\"exclude\":[],\"headers\":{}}");
  if (p) {
    CHECK_INT(p->batchSize, 0);
    CHECK_INT(p->nHeader, 0);
    cr_dest_free(p);
  }
  p = parse_ok(__LINE__, "{\"url\":\"http://127.0.0.1:8080/v3/a/1/x\",\"credential\":\"c\","
                         "\"batch\":false,\"on_quota\":\"wait\",\"capture_responses\":true}");
  if (p) {
    CHECK_INT(p->batchSize, 0);
    CHECK_INT(p->nUrlPart, 1);
    CHECK_INT(p->onQuotaStop, 0);
    cr_dest_free(p);
  }
  p = parse_ok(__LINE__, "{" MINIMAL ",\"batch\":{\"size\":1000,\"wrap\":null}}");
  if (p) {
    CHECK_INT(p->batchSize, 1000);
    CHECK_INT(p->zWrap == 0, 1);
    cr_dest_free(p);
  }
  p = parse_ok(__LINE__, "{\"credential\":\"c\",\"url\":\"/v3/a/{a}{record.b}x{record}/\"}");
  if (p) {
    CHECK_INT(p->nUrlPart, 6);
    if (p->nUrlPart == 6) {
      CHECK_INT(p->aUrlPart[1].isPlaceholder && !p->aUrlPart[1].recordOnly, 1);
      CHECK_INT(p->aUrlPart[2].isPlaceholder && p->aUrlPart[2].recordOnly, 1);
      CHECK_STR(p->aUrlPart[4].zText, "record");
      CHECK_INT(p->aUrlPart[4].recordOnly, 0);
    }
    cr_dest_free(p);
  }
  ACCEPT("  {\n \"credential\" : \"c\" ,\n \"url\" : \"/v3/a/1/x.json\" }\n");
  ACCEPT("{" MINIMAL ",\"retry\":{},\"rate_limit\":{}}");
  ACCEPT("{" MINIMAL ",\"retry\":{\"base_delay_ms\":1000,\"max_delay_ms\":1000}}");
  ACCEPT("{" MINIMAL ",\"headers\":\"Accept:application/vnd.x+json,X-Tab:\\ta\\tb\"}");
  ACCEPT("{" MINIMAL ",\"params\":{\"account_id\":\"\"}}");
}

/* The document itself, and what is required. */
static void test_document(void) {
  MESSAGE("{", "destination \"leads\": config is not valid JSON");
  MESSAGE("", "destination \"leads\": config is not valid JSON");
  MESSAGE("{credential:1}", "destination \"leads\": config is not valid JSON");
  MESSAGE("[1,2]", "destination \"leads\": config must be a JSON object, got array");
  MESSAGE("\"x\"", "destination \"leads\": config must be a JSON object, got text");
  MESSAGE("{}", "destination \"leads\": key \"credential\" is required");
  MESSAGE("{\"credential\":\"c\"}", "destination \"leads\": key \"url\" is required");
  expect_message(__LINE__, "a \"b\" c", "{}",
                 "destination \"a \"b\" c\": key \"credential\" is required");
  {
    cr_dest *p = (cr_dest *)1;
    char *zErr = 0;
    int rc = cr_dest_parse(db, "leads", 0, &p, &zErr);
    check(rc != SQLITE_OK && p == 0 && zErr &&
              strcmp(zErr, "destination \"leads\": config is NULL") == 0,
          __LINE__, "NULL config", zErr);
    sqlite3_free(zErr);
    zErr = 0;
    rc = cr_dest_parse(db, 0, "{}", &p, &zErr);
    check(rc != SQLITE_OK && p == 0 && zErr && strcmp(zErr, "destination name is NULL") == 0,
          __LINE__, "NULL name", zErr);
    sqlite3_free(zErr);
  }
}

/* Unknown and repeated keys, and which problem is reported first. */
static void test_keys(void) {
  MESSAGE("{" MINIMAL ",\"concurency\":1}", "destination \"leads\": unknown key \"concurency\"");
  MESSAGE("{" MINIMAL ",\"batch\":{\"sise\":5}}",
          "destination \"leads\": unknown key \"batch.sise\"");
  REFUSE("{" MINIMAL ",\"retry\":{\"attempts\":5}}", "unknown key \"retry.attempts\"");
  REFUSE("{" MINIMAL ",\"rate_limit\":{\"per_minute\":5}}",
         "unknown key \"rate_limit.per_minute\"");
  REFUSE("{" MINIMAL ",\"Method\":\"POST\"}", "unknown key \"Method\"");
  REFUSE("{" MINIMAL ",\"concurrency\":2,\"concurrency\":3}", "duplicate key \"concurrency\"");
  REFUSE("{" MINIMAL ",\"retry\":{\"max_attempts\":2,\"max_attempts\":2}}",
         "duplicate key \"retry.max_attempts\"");
  REFUSE("{" MINIMAL ",\"params\":{\"a\":1,\"a\":2}}", "duplicate key \"params.a\"");
  /* first problem in document order */
  REFUSE("{\"bogus\":1,\"concurrency\":0}", "unknown key \"bogus\"");
  REFUSE("{\"concurrency\":0,\"bogus\":1}", "key \"concurrency\" must be an integer");
  REFUSE("{\"concurrency\":\"x\"," MINIMAL "}", "key \"concurrency\"");
  REFUSE("{\"url\":\"nope\"}", "key \"url\" must be");
  REFUSE("{\"url\":\"/v3/x\",\"batch\":{\"wrap\":\"\",\"size\":0}}", "key \"batch.wrap\"");
}

/* Integer keys: wrong JSON types and ranges. */
static void test_integers(void) {
  MESSAGE("{" MINIMAL ",\"concurrency\":\"8\"}",
          "destination \"leads\": key \"concurrency\" must be an integer from 1 to 64, "
          "got \"8\" (text)");
  MESSAGE("{" MINIMAL ",\"concurrency\":8.5}",
          "destination \"leads\": key \"concurrency\" must be an integer from 1 to 64, "
          "got 8.5 (real)");
  MESSAGE("{" MINIMAL ",\"concurrency\":65}",
          "destination \"leads\": key \"concurrency\" must be an integer from 1 to 64, got 65");
  REFUSE2("{" MINIMAL ",\"concurrency\":0}", "key \"concurrency\"", "got 0");
  REFUSE2("{" MINIMAL ",\"concurrency\":true}", "key \"concurrency\"", "(boolean)");
  REFUSE2("{" MINIMAL ",\"concurrency\":null}", "key \"concurrency\"", "(null)");
  REFUSE2("{" MINIMAL ",\"concurrency\":8.0}", "key \"concurrency\"", "(real)");
  REFUSE2("{" MINIMAL ",\"concurrency\":[8]}", "key \"concurrency\"", "got [8] (array)");
  REFUSE2("{" MINIMAL ",\"timeout_ms\":0}", "key \"timeout_ms\"", "from 1 to 3600000");
  REFUSE2("{" MINIMAL ",\"timeout_ms\":3600001}", "key \"timeout_ms\"", "got 3600001");
  REFUSE2("{" MINIMAL ",\"connect_timeout_ms\":600001}", "key \"connect_timeout_ms\"",
          "from 1 to 600000");
  REFUSE2("{" MINIMAL ",\"timeout_ms\":99999999999999999999}", "key \"timeout_ms\"",
          "got 99999999999999999999");
  REFUSE2("{" MINIMAL ",\"timeout_ms\":-1}", "key \"timeout_ms\"", "got -1");
  REFUSE2("{" MINIMAL ",\"retry\":{\"max_attempts\":0}}", "key \"retry.max_attempts\"",
          "from 1 to 100");
  REFUSE2("{" MINIMAL ",\"retry\":{\"max_attempts\":\"5\"}}", "key \"retry.max_attempts\"",
          "(text)");
  REFUSE2("{" MINIMAL ",\"retry\":{\"base_delay_ms\":-1}}", "key \"retry.base_delay_ms\"",
          "from 0 to 3600000");
  REFUSE2("{" MINIMAL ",\"retry\":{\"max_delay_ms\":86400001}}", "key \"retry.max_delay_ms\"",
          "from 0 to 86400000");
  MESSAGE("{" MINIMAL ",\"retry\":{\"base_delay_ms\":2000,\"max_delay_ms\":1000}}",
          "destination \"leads\": key \"retry.max_delay_ms\" must be at least "
          "\"retry.base_delay_ms\" (2000), got 1000");
  REFUSE2("{" MINIMAL ",\"retry\":{\"base_delay_ms\":100000}}", "key \"retry.max_delay_ms\"",
          "got 60000");
  REFUSE2("{" MINIMAL ",\"rate_limit\":{\"per_hour\":0}}", "key \"rate_limit.per_hour\"",
          "from 1 to 100000000");
  REFUSE2("{" MINIMAL ",\"rate_limit\":{\"per_day\":1.5}}", "key \"rate_limit.per_day\"", "(real)");
  REFUSE2("{" MINIMAL ",\"rate_limit\":{\"per_second\":100000001}}",
          "key \"rate_limit.per_second\"", "got 100000001");
  REFUSE2("{" MINIMAL ",\"batch\":{\"size\":0}}", "key \"batch.size\"", "from 1 to 1000");
  REFUSE2("{" MINIMAL ",\"batch\":{\"size\":1001}}", "key \"batch.size\"", "got 1001");
  REFUSE2("{" MINIMAL ",\"batch\":{\"size\":\"10\"}}", "key \"batch.size\"", "(text)");
}

/* Boolean keys want JSON true or false. */
static void test_booleans(void) {
  MESSAGE("{" MINIMAL ",\"capture_responses\":1}",
          "destination \"leads\": key \"capture_responses\" must be true or false, "
          "got 1 (integer)");
  REFUSE2("{" MINIMAL ",\"capture_responses\":\"true\"}", "key \"capture_responses\"",
          "got \"true\" (text)");
  REFUSE2("{" MINIMAL ",\"retry\":{\"retry_post\":0}}", "key \"retry.retry_post\"", "(integer)");
  REFUSE2("{" MINIMAL ",\"retry\":{\"retry_post\":null}}", "key \"retry.retry_post\"", "(null)");
  REFUSE2("{" MINIMAL ",\"progress\":1}", "key \"progress\" must be true, false or \"auto\"",
          "(integer)");
  REFUSE2("{" MINIMAL ",\"progress\":\"yes\"}", "key \"progress\"", "got \"yes\"");
}

/* String keys and their allowed values. */
static void test_strings(void) {
  MESSAGE("{\"credential\":\"\",\"url\":\"/v3/a.json\"}",
          "destination \"leads\": key \"credential\" must be a non-empty string, got \"\"");
  REFUSE2("{\"credential\":7,\"url\":\"/v3/a.json\"}", "key \"credential\"", "(integer)");
  REFUSE2("{\"credential\":\"a\\u0000b\",\"url\":\"/v3/a.json\"}", "key \"credential\"", "NUL");
  MESSAGE("{" MINIMAL ",\"method\":\"post\"}",
          "destination \"leads\": key \"method\" must be one of \"POST\", \"PUT\", \"PATCH\", "
          "\"DELETE\", got \"post\"");
  REFUSE2("{" MINIMAL ",\"method\":\"GET\"}", "key \"method\"", "\"DELETE\"");
  REFUSE2("{" MINIMAL ",\"method\":1}", "key \"method\"", "(integer)");
  MESSAGE("{" MINIMAL ",\"format\":\"xml\"}",
          "destination \"leads\": key \"format\": only \"json\" is supported, got \"xml\"");
  REFUSE2("{" MINIMAL ",\"format\":\"JSON\"}", "key \"format\"", "only \"json\"");
  REFUSE2("{" MINIMAL ",\"format\":null}", "key \"format\"", "(null)");
  REFUSE2("{" MINIMAL ",\"on_quota\":\"halt\"}", "key \"on_quota\"",
          "one of \"wait\", \"stop\", got \"halt\"");
  REFUSE2("{" MINIMAL ",\"on_quota\":false}", "key \"on_quota\"", "(boolean)");
  REFUSE2("{" MINIMAL ",\"key\":\"\"}", "key \"key\"", "non-empty string");
  REFUSE2("{" MINIMAL ",\"key\":[\"id\"]}", "key \"key\"", "(array)");
  REFUSE2("{" MINIMAL ",\"exclude\":\"id\"}", "key \"exclude\"", "(text)");
  REFUSE2("{" MINIMAL ",\"exclude\":[\"id\",\"\"]}", "key \"exclude[1]\"", "non-empty string");
  REFUSE2("{" MINIMAL ",\"exclude\":[\"id\",3]}", "key \"exclude[1]\"", "(integer)");
  REFUSE2("{" MINIMAL ",\"params\":[]}", "key \"params\" must be an object", "(array)");
  REFUSE2("{" MINIMAL ",\"params\":{\"a\":null}}", "key \"params.a\"", "(null)");
  REFUSE2("{" MINIMAL ",\"params\":{\"a\":{\"b\":1}}}", "key \"params.a\"", "(object)");
  REFUSE2("{" MINIMAL ",\"params\":{\"a\":true}}", "key \"params.a\" must be a string or a number",
          "(boolean)");
  REFUSE2("{" MINIMAL ",\"retry\":5}", "key \"retry\" must be an object", "(integer)");
  REFUSE2("{" MINIMAL ",\"rate_limit\":null}", "key \"rate_limit\"", "(null)");
}

/* The url key: forms, placeholders, forbidden characters. */
static void test_url(void) {
  MESSAGE("{\"credential\":\"c\",\"url\":\"/v3/a/{account_id\"}",
          "destination \"leads\": key \"url\": unterminated placeholder starting at position 7");
  REFUSE2("{\"credential\":\"c\",\"url\":\"v3/a.json\"}", "key \"url\" must be",
          "\"/v3/\", got \"v3/a.json\"");
  REFUSE("{\"credential\":\"c\",\"url\":\"/v2/a.json\"}", "key \"url\" must be");
  REFUSE("{\"credential\":\"c\",\"url\":\"ftp://x/v3/a.json\"}", "key \"url\" must be");
  REFUSE("{\"credential\":\"c\",\"url\":\"HTTPS://x/v3/a.json\"}", "key \"url\" must be");
  REFUSE("{\"credential\":\"c\",\"url\":\"\"}", "key \"url\" must be");
  REFUSE2("{\"credential\":\"c\",\"url\":7}", "key \"url\" must be", "(integer)");
  REFUSE("{\"credential\":\"c\",\"url\":\"https:///v3/a.json\"}", "key \"url\": no host");
  REFUSE("{\"credential\":\"c\",\"url\":\"/v3/{}\"}", "key \"url\": empty placeholder \"{}\"");
  REFUSE("{\"credential\":\"c\",\"url\":\"/v3/{record.}\"}",
         "key \"url\": empty placeholder \"{record.}\" at position 5");
  REFUSE("{\"credential\":\"c\",\"url\":\"/v3/{a{b}}\"}",
         "key \"url\": \"{\" inside a placeholder at position 7");
  REFUSE("{\"credential\":\"c\",\"url\":\"/v3/a}\"}",
         "key \"url\": \"}\" without a matching \"{\" at position 6");
  MESSAGE("{\"credential\":\"c\",\"url\":\"https://{host}/v3/a.json\"}",
          "destination \"leads\": key \"url\": placeholder at position 9 is in the scheme or host; "
          "only the path and query may have placeholders");
  REFUSE("{\"credential\":\"c\",\"url\":\"https://api.callrail.com:{port}/v3/a.json\"}",
         "key \"url\": placeholder at position 26 is in the scheme or host");
  REFUSE("{\"credential\":\"c\",\"url\":\"/v3/a b.json\"}",
         "key \"url\": space or control character at position 6");
  REFUSE("{\"credential\":\"c\",\"url\":\"/v3/a.json\\r\\nX-Evil: 1\"}",
         "key \"url\": space or control character");
  REFUSE("{\"credential\":\"c\",\"url\":\"/v3/{a\\nb}.json\"}",
         "key \"url\": space or control character");
  REFUSE("{\"credential\":\"c\",\"url\":\"/v3/\\u007f\"}", "key \"url\": space or control");
}

/* The headers key, in both of its forms. */
static void test_headers(void) {
  REFUSE("{" MINIMAL ",\"headers\":\"X-A:1,\"}", "key \"headers\": item 2 is empty");
  REFUSE("{" MINIMAL ",\"headers\":\"\"}", "key \"headers\": item 1 is empty");
  REFUSE("{" MINIMAL ",\"headers\":\"X-A:1,,X-B:2\"}", "key \"headers\": item 2 is empty");
  REFUSE("{" MINIMAL ",\"headers\":\"X-A\"}", "key \"headers\": item 1 (\"X-A\") has no \":\"");
  REFUSE("{" MINIMAL ",\"headers\":\"X-A:1\\r\\nX-B:2\"}",
         "key \"headers\" must not contain CR, LF or NUL");
  REFUSE("{" MINIMAL ",\"headers\":\"X-A:1\\n\"}", "key \"headers\" must not contain CR");
  REFUSE("{" MINIMAL ",\"headers\":{\"X-A\":\"1\\r\\nHost: evil\"}}",
         "key \"headers\" must not contain CR");
  REFUSE("{" MINIMAL ",\"headers\":{\"X-A\\n\":\"1\"}}", "key \"headers\" must not contain CR");
  REFUSE("{" MINIMAL ",\"headers\":{\"X-A\":\"a\\u0000b\"}}", "key \"headers\"");
  REFUSE("{" MINIMAL ",\"headers\":{\"X-A\":\"a\\u0001b\"}}",
         "key \"headers\": header \"X-A\" has a control character");
  REFUSE("{" MINIMAL ",\"headers\":\"authorization: Token token=x\"}",
         "key \"headers\": header \"authorization\" may not be set");
  REFUSE("{" MINIMAL ",\"headers\":{\"Content-Type\":\"text/plain\"}}",
         "header \"Content-Type\" may not be set");
  REFUSE("{" MINIMAL ",\"headers\":\"CONTENT-LENGTH:5\"}", "header \"CONTENT-LENGTH\" may not");
  REFUSE("{" MINIMAL ",\"headers\":\"Host:x\"}", "header \"Host\" may not be set");
  REFUSE("{" MINIMAL ",\"headers\":{\"transfer-encoding\":\"chunked\"}}",
         "header \"transfer-encoding\" may not be set");
  REFUSE("{" MINIMAL ",\"headers\":\"X-A:1,x-a:2\"}",
         "key \"headers\": header \"x-a\" is given twice");
  REFUSE("{" MINIMAL ",\"headers\":{\"X-A\":\"1\",\"x-A\":\"2\"}}",
         "header \"x-A\" is given twice");
  REFUSE("{" MINIMAL ",\"headers\":\"X A:1\"}",
         "key \"headers\": header name \"X A\" is not a valid HTTP token");
  REFUSE("{" MINIMAL ",\"headers\":{\"X(A)\":\"1\"}}", "header name \"X(A)\" is not a valid HTTP");
  REFUSE("{" MINIMAL ",\"headers\":\":1\"}", "key \"headers\": a header has an empty name");
  REFUSE("{" MINIMAL ",\"headers\":\"X-A: \"}",
         "key \"headers\": header \"X-A\" has an empty value");
  REFUSE2("{" MINIMAL ",\"headers\":{\"X-A\":1}}", "key \"headers.X-A\" must be a string",
          "(integer)");
  REFUSE2("{" MINIMAL ",\"headers\":[\"X-A:1\"]}", "key \"headers\" must be", "(array)");
}

/* The batch key and how its members depend on grouping. */
static void test_batch(void) {
  REFUSE2("{" MINIMAL ",\"batch\":true}", "key \"batch\" must be an object, null or false",
          "(boolean)");
  REFUSE2("{" MINIMAL ",\"batch\":100}", "key \"batch\"", "(integer)");
  REFUSE2("{" MINIMAL ",\"batch\":{\"grouping\":\"Count\"}}", "key \"batch.grouping\"",
          "one of \"count\", \"attribute\", \"bytes\"");
  MESSAGE("{" MINIMAL ",\"batch\":{\"grouping\":\"attribute\"}}",
          "destination \"leads\": key \"batch.attributes\" is required when \"batch.grouping\" "
          "is \"attribute\"");
  REFUSE2("{" MINIMAL ",\"batch\":{\"grouping\":\"attribute\",\"attributes\":[]}}",
          "key \"batch.attributes\" must be a non-empty array of strings", "got []");
  REFUSE("{" MINIMAL ",\"batch\":{\"attributes\":[\"a\"]}}",
         "key \"batch.attributes\" is only allowed when \"batch.grouping\" is \"attribute\"");
  REFUSE2("{" MINIMAL ",\"batch\":{\"grouping\":\"attribute\",\"attributes\":[1]}}",
          "key \"batch.attributes[0]\"", "(integer)");
  REFUSE2("{" MINIMAL ",\"batch\":{\"grouping\":\"attribute\",\"attributes\":\"a\"}}",
          "key \"batch.attributes\"", "(text)");
  REFUSE("{" MINIMAL ",\"batch\":{\"grouping\":\"bytes\"}}",
         "key \"batch.max_bytes\" is required when \"batch.grouping\" is \"bytes\"");
  REFUSE("{" MINIMAL ",\"batch\":{\"max_bytes\":1000}}",
         "key \"batch.max_bytes\" is only allowed when");
  REFUSE2("{" MINIMAL ",\"batch\":{\"grouping\":\"bytes\",\"max_bytes\":63}}",
          "key \"batch.max_bytes\"", "from 64 to 100000000");
  REFUSE2("{" MINIMAL ",\"batch\":{\"grouping\":\"bytes\",\"max_bytes\":100000001}}",
          "key \"batch.max_bytes\"", "got 100000001");
  REFUSE2("{" MINIMAL ",\"batch\":{\"wrap\":\"\"}}", "key \"batch.wrap\"",
          "null or a non-empty string");
  REFUSE2("{" MINIMAL ",\"batch\":{\"wrap\":false}}", "key \"batch.wrap\"", "(boolean)");
}

/* A long value is cut short in the message. */
static void test_long_value(void) {
  char *zConfig = sqlite3_mprintf("{" MINIMAL ",\"key\":[\"%0200d\"]}", 0);
  cr_dest *p = 0;
  char *zErr = 0;
  cr_dest_parse(db, "leads", zConfig, &p, &zErr);
  check(p == 0 && zErr && strstr(zErr, "...") && strlen(zErr) < 160, __LINE__,
        "long values are cut short", zErr);
  sqlite3_free(zErr);
  sqlite3_free(zConfig);
}

/* cr_dest_load(): a saved destination, its active flag, unknown names. */
static void test_load(void) {
  cr_dest *p = 0;
  char *zErr = 0;
  int active = -1, rc;
  rc = sqlite3_exec(db,
                    "CREATE TABLE callrail_destinations(name TEXT PRIMARY KEY, config TEXT,"
                    " active INTEGER NOT NULL DEFAULT 0, created_at, updated_at);"
                    "INSERT INTO callrail_destinations(name, config, active) VALUES"
                    " ('on', '{" MINIMAL ",\"concurrency\":2}', 1),"
                    " ('off', '{" MINIMAL "}', 0),"
                    " ('broken', '{" MINIMAL ",\"concurrency\":0}', 1),"
                    " ('null', NULL, 1);",
                    0, 0, 0);
  check(rc == SQLITE_OK, __LINE__, "create callrail_destinations", sqlite3_errmsg(db));
  rc = cr_dest_load(db, "on", &p, &active, &zErr);
  check(rc == SQLITE_OK && p && active == 1 && p->concurrency == 2 && zErr == 0, __LINE__,
        "load an active destination", zErr);
  check(p && strcmp(p->zName, "on") == 0, __LINE__, "loaded destination keeps its name", 0);
  cr_dest_free(p);
  rc = cr_dest_load(db, "off", &p, &active, &zErr);
  check(rc == SQLITE_OK && p && active == 0, __LINE__, "load an inactive destination", zErr);
  cr_dest_free(p);
  rc = cr_dest_load(db, "off", &p, 0, &zErr);
  check(rc == SQLITE_OK && p, __LINE__, "pActive may be NULL", zErr);
  cr_dest_free(p);
  rc = cr_dest_load(db, "nope", &p, &active, &zErr);
  check(rc != SQLITE_OK && p == 0 && zErr && strcmp(zErr, "unknown destination \"nope\"") == 0,
        __LINE__, "unknown destination", zErr);
  rc = cr_dest_load(db, 0, &p, &active, &zErr);
  check(rc != SQLITE_OK && p == 0 && zErr && strcmp(zErr, "destination name is NULL") == 0,
        __LINE__, "NULL destination name", zErr);
  rc = cr_dest_load(db, "broken", &p, &active, &zErr);
  check(rc != SQLITE_OK && p == 0 && zErr &&
            strstr(zErr, "destination \"broken\": key \"concurrency\""),
        __LINE__, "a saved config that is now invalid", zErr);
  rc = cr_dest_load(db, "null", &p, &active, &zErr);
  check(rc != SQLITE_OK && p == 0 && zErr &&
            strcmp(zErr, "destination \"null\": config is NULL") == 0,
        __LINE__, "a NULL saved config", zErr);
  sqlite3_free(zErr);
  cr_dest_free(0);
}

/* ------------------------------------------------------------------------
** Out of memory: an allocator that fails the Nth allocation from when it
** is armed.  Every failure must end in an error with no crash and no leak
** (AddressSanitizer reports leaks at exit).
*/
static sqlite3_mem_methods defaultMem;
static int nAllocLeft = -1; /* -1: never fail */

static void *faulty_malloc(int n) {
  if (nAllocLeft == 0) return 0;
  if (nAllocLeft > 0) nAllocLeft--;
  return defaultMem.xMalloc(n);
}

static void *faulty_realloc(void *p, int n) {
  if (nAllocLeft == 0) return 0;
  if (nAllocLeft > 0) nAllocLeft--;
  return defaultMem.xRealloc(p, n);
}

static void install_faulty_malloc(void) {
  sqlite3_mem_methods m;
  sqlite3_config(SQLITE_CONFIG_GETMALLOC, &defaultMem);
  m = defaultMem;
  m.xMalloc = faulty_malloc;
  m.xRealloc = faulty_realloc;
  sqlite3_config(SQLITE_CONFIG_MALLOC, &m);
}

/* Fails allocation 1, 2, 3, ... of parsing a config using every key until
** the parse gets through; each attempt must fail cleanly or succeed. */
static void test_out_of_memory_of(int line, const char *zConfig) {
  int i, rc = SQLITE_NOMEM, bad = 0;
  for (i = 0; i < 5000 && rc != SQLITE_OK; i++) {
    cr_dest *p = 0;
    char *zErr = 0;
    nAllocLeft = i;
    rc = cr_dest_parse(db, "leads", zConfig, &p, &zErr);
    nAllocLeft = -1;
    if ((rc == SQLITE_OK) != (p != 0)) bad++;
    cr_dest_free(p);
    sqlite3_free(zErr);
  }
  check(rc == SQLITE_OK && bad == 0, line, "allocation failures end cleanly", zConfig);
}

static void test_out_of_memory(void) {
  test_out_of_memory_of(
      __LINE__,
      "{\"credential\":\"c\",\"url\":\"https://x/v3/a/{a}/{record.b}.json\",\"params\":{\"a\":1},"
      "\"headers\":\"X-A:1,X-B:2\",\"exclude\":[\"p\",\"q\"],\"key\":\"k\",\"method\":\"PUT\","
      "\"batch\":{\"grouping\":\"attribute\",\"attributes\":[\"z\"],\"wrap\":\"w\"},"
      "\"retry\":{\"max_attempts\":2},\"rate_limit\":{\"per_hour\":5},\"progress\":\"auto\","
      "\"sync\":\"new\",\"id_path\":\"$.x\",\"on_busy\":\"error\",\"lease_ms\":20000,"
      "\"json\":[\"t\",\"u\"]}");
  test_out_of_memory_of(__LINE__, UPSERT ",\"update\":{" UPDATE_URL ",\"method\":\"PATCH\"}}");
}

int main(void) {
  install_faulty_malloc();
  if (sqlite3_open(":memory:", &db) != SQLITE_OK) {
    printf("cannot open an in-memory database\n");
    return 1;
  }
  test_defaults();
  test_every_key();
  test_other_good_values();
  test_document();
  test_keys();
  test_integers();
  test_booleans();
  test_strings();
  test_url();
  test_url_account();
  test_sync_keys();
  test_sync_rules();
  test_headers();
  test_batch();
  test_long_value();
  test_load();
  test_out_of_memory();
  sqlite3_close(db);
  printf("%d passed, %d failed\n", nPass, nFail);
  return nFail != 0;
}
