/*
** cr_get.c - callrail_get: any CallRail read as rows, every page followed,
** one page in memory at a time.
**
**   SELECT id, json_extract(item, '$.customer_phone_number') AS phone
**     FROM callrail_get('main', '/v3/a/ACC.../calls.json',
**                       json_object('start_date', '2026-12-01',
**                                   'fields', 'id,customer_phone_number'));
**
** Columns: item (the JSON object, subtype JSON), id ($.id of the item),
** page (1, 2, ...) and url (of the page the item came from); the hidden
** arguments are credential, path and params.  path is a /v3/ path joined
** to the credential's api_base, or an absolute URL of that same origin.
** params, a JSON object, becomes the query string (percent-encoded by
** libcurl; an array becomes repeated name[]=value).
**
** A list response - an object with CallRail's pagination fields and one
** array member (calls, companies, conversations, ...) - gives one row per
** item, and every page is read: page-numbered lists up to total_pages
** (per_page defaults to 250, CallRail's maximum, so that a list costs as
** few requests of the hourly quota as possible), relative pagination
** (calls) by following next_page while has_next_page, but only to the
** credential's own origin.  Any other object is one row.
**
** The pager below is shared with callrail_accounts.  Reads are requests
** like any other: each GET is admitted by the pacer (waiting for the
** account's quota, interruptibly), and a read is a callrail_runs row of
** kind `get` whose destination column holds the credential's name, with
** one callrail_responses row per page (batch = page number, no body kept),
** so the pacer of any later run on the account counts them.  A 429, a 5xx
** or a transport error is retried with the sends' backoff (GET is safe);
** any other error status ends the statement with CallRail's message.
**
** It uses a key and the network, so it is SQLITE_VTAB_DIRECTONLY.
*/
#include "cr_internal.h"
SQLITE_EXTENSION_INIT3

#include <string.h>

/* Waits are cut into slices this long, so an interrupt ends them. */
#define CR_GET_POLL_MS 100

/* A page may be this large: account and call objects are big, and only
** one page is held at a time. */
#define CR_GET_MAX_RESPONSE (64 * 1024 * 1024)

/* CallRail's largest page, the default per_page. */
#define CR_GET_PER_PAGE 250

struct cr_pager {
  cr_conn *pConn;
  cr_cred *pCred;
  cr_dest dest;        /* defaults of a destination: timeouts, retries */
  const char *zList;   /* the member holding the items, or NULL: find it */
  const char *zCols;   /* extra columns over `value` */
  char *zBase;         /* the URL without per_page and page */
  char *zPerPage;      /* per_page as given, or NULL for the default */
  int iPage;           /* number of the next page to fetch */
  int iRowsPage;       /* number of the page held */
  int explicitPage;    /* the first URL names a page (params had one) */
  char *zNext;         /* URL of the next page, or NULL: none */
  char *zUrl;          /* URL of the page held */
  char *zBody;         /* the page held */
  sqlite3_stmt *pRows; /* its items */
  cr_store *pStore;    /* NULL: not audited */
  cr_pacer *pPacer;
  sqlite3_int64 iRun;
  cr_run_counts counts;
  const char *zStatus; /* how the run ended */
  char *zEndError;     /* why, when it ended error */
};

/* ------------------------------------------------------------------------
** URLs
*/

/* Appends the query-string pair name=value (both percent-encoded) to *pz. */
static int cr_query_add(char **pz, const char *zName, int isArray, const char *zVal) {
  char *zN = curl_easy_escape(0, zName, 0);
  char *zV = curl_easy_escape(0, zVal ? zVal : "", 0);
  char *zNew = 0;
  if (zN && zV) {
    zNew =
        sqlite3_mprintf("%s%s%s%s=%s", *pz ? *pz : "", *pz ? "&" : "", zN, isArray ? "[]" : "", zV);
  }
  curl_free(zN);
  curl_free(zV);
  sqlite3_free(*pz);
  *pz = zNew;
  return zNew ? SQLITE_OK : SQLITE_NOMEM;
}

/* The parameters other than page and per_page, arrays as one row per
** element; a nested object has no query-string form. */
static const char cr_sql_params[] =
    "SELECT p.key, p.type = 'array', coalesce(e.type, p.type),"
    " CASE coalesce(e.type, p.type) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false'"
    "  WHEN 'null' THEN '' ELSE CASE WHEN e.key IS NULL THEN p.value ELSE e.value END END"
    " FROM json_each(?1) p"
    " LEFT JOIN json_each(CASE WHEN p.type = 'array' THEN p.value END) e"
    " WHERE p.key NOT IN ('page', 'per_page') AND (p.type <> 'array' OR e.key IS NOT NULL)"
    " ORDER BY p.id, e.id";

static const char cr_params_hint[] =
    "params must be a JSON object, e.g. json_object('per_page', 100)";

/* Turns the JSON object zParams into a query string (*pzQuery, NULL when
** empty); page and per_page are kept apart, as the pager sets them. */
static int cr_params_query(cr_pager *p, const char *zParams, char **pzQuery, char **pzErr) {
  sqlite3 *db = p->pConn->db;
  sqlite3_stmt *pStmt = 0;
  int rc = SQLITE_OK;
  *pzQuery = 0;
  if (zParams == 0) return SQLITE_OK;
  if (!cr_json_names_are_strings(zParams)) {
    cr_set_error(pzErr, "%s", cr_params_hint);
    return SQLITE_ERROR;
  }
  rc = cr_prepare(db,
                  "SELECT json_valid(?1) AND json_type(?1) = 'object',"
                  " json_extract(?1, '$.page'), json_extract(?1, '$.per_page')",
                  &pStmt, pzErr);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(pStmt, 1, zParams, -1, SQLITE_STATIC);
    if (sqlite3_step(pStmt) != SQLITE_ROW || sqlite3_column_int(pStmt, 0) == 0) {
      cr_set_error(pzErr, "%s", cr_params_hint);
      rc = SQLITE_ERROR;
    } else {
      if (sqlite3_column_type(pStmt, 1) != SQLITE_NULL) {
        p->iPage = sqlite3_column_int(pStmt, 1);
        p->explicitPage = 1;
      }
      p->zPerPage = cr_strdup((const char *)sqlite3_column_text(pStmt, 2));
    }
  }
  sqlite3_finalize(pStmt);
  pStmt = 0;
  if (p->iPage < 1) p->iPage = 1;
  if (rc == SQLITE_OK) rc = cr_prepare(db, cr_sql_params, &pStmt, pzErr);
  if (rc == SQLITE_OK) sqlite3_bind_text(pStmt, 1, zParams, -1, SQLITE_STATIC);
  while (rc == SQLITE_OK && sqlite3_step(pStmt) == SQLITE_ROW) {
    const char *zName = (const char *)sqlite3_column_text(pStmt, 0);
    if (strcmp((const char *)sqlite3_column_text(pStmt, 2), "object") == 0) {
      cr_set_error(pzErr, "params: \"%s\" is an object, which a query string cannot hold", zName);
      rc = SQLITE_ERROR;
    } else {
      rc = cr_query_add(pzQuery, zName, sqlite3_column_int(pStmt, 1),
                        (const char *)sqlite3_column_text(pStmt, 3));
    }
  }
  sqlite3_finalize(pStmt);
  return rc;
}

/* The URL of zPath: a /v3/ path joined to api_base, or an absolute URL of
** the credential's origin (anything else is refused before sending). */
static int cr_get_url(const cr_cred *pCred, const char *zPath, char **pzUrl, char **pzErr) {
  int rc = SQLITE_OK;
  if (strncmp(zPath, "/v3/", 4) == 0) {
    *pzUrl = sqlite3_mprintf("%s%s", pCred->zApiBase, zPath);
  } else if (sqlite3_strnicmp(zPath, "http://", 7) == 0 ||
             sqlite3_strnicmp(zPath, "https://", 8) == 0) {
    rc = cr_origin_check(pCred->zApiBase, zPath, pzErr);
    *pzUrl = rc == SQLITE_OK ? cr_strdup(zPath) : 0;
  } else {
    cr_set_error(pzErr, "path \"%s\" must start with /v3/ (or be a URL of %s)", zPath,
                 pCred->zApiBase);
    return SQLITE_ERROR;
  }
  if (rc == SQLITE_OK && *pzUrl == 0) rc = SQLITE_NOMEM;
  return rc;
}

/* The URL of page iPage; the first one names its page only if the user's
** params did (an endpoint that is not a list ignores per_page). */
static char *cr_pager_page_url(cr_pager *p, int withPage) {
  char *zPer =
      p->zPerPage ? sqlite3_mprintf("%s", p->zPerPage) : sqlite3_mprintf("%d", CR_GET_PER_PAGE);
  char *zEsc = zPer ? curl_easy_escape(0, zPer, 0) : 0;
  char *zPage = withPage ? sqlite3_mprintf("&page=%d", p->iPage) : sqlite3_mprintf("");
  char *zUrl = 0;
  if (zEsc && zPage) {
    zUrl = sqlite3_mprintf("%s%cper_page=%s%s", p->zBase, strchr(p->zBase, '?') ? '&' : '?', zEsc,
                           zPage);
  }
  sqlite3_free(zPage);
  curl_free(zEsc);
  sqlite3_free(zPer);
  return zUrl;
}

/* ------------------------------------------------------------------------
** Requests: paced, retried, recorded
*/

/* Sleeps ms in slices, returning SQLITE_INTERRUPT as soon as the user's
** connection is interrupted. */
static int cr_pager_sleep(cr_pager *p, sqlite3_int64 ms, char **pzErr) {
  sqlite3_int64 tEnd = cr_now_ms() + ms;
  for (;;) {
    sqlite3_int64 msLeft = tEnd - cr_now_ms();
    if (cr_check_interrupt(p->pConn->db) == SQLITE_INTERRUPT) {
      cr_set_error(pzErr, "interrupted");
      return SQLITE_INTERRUPT;
    }
    if (msLeft <= 0) return SQLITE_OK;
    sqlite3_sleep((int)(msLeft < CR_GET_POLL_MS ? msLeft : CR_GET_POLL_MS));
  }
}

/* True if a GET of zUrl counts against an account's quota (its URL names
** the account), so that the pacer can place it. */
static int cr_url_has_bucket(const char *zUrl) {
  cr_quota_key q;
  int has;
  cr_quota_key_of(CR_METHOD_GET, zUrl, &q);
  has = q.zBucket != 0;
  cr_quota_key_clear(&q);
  return has;
}

/* Waits until the pacer lets a GET of zUrl go.  Reads always wait for
** quota (on_quota "wait"): they have nothing to resume from. */
static int cr_pager_admit(cr_pager *p, const char *zUrl, sqlite3_int64 *ptAdmitted, char **pzErr) {
  sqlite3_int64 msWait = 1;
  int rc = SQLITE_OK;
  if (p->pPacer == 0 || !cr_url_has_bucket(zUrl)) return SQLITE_OK;
  while (rc == SQLITE_OK && msWait > 0) {
    /* Under the write lock, as a send admits (cr_pacer_sync); the lock is
    ** let go by cr_pager_intend once the page's pending row is written. */
    rc = cr_store_lock(p->pStore, pzErr);
    if (rc == SQLITE_OK) rc = cr_pacer_sync(p->pPacer, p->pStore, p->iRun, pzErr);
    if (rc == SQLITE_OK) {
      rc = cr_pacer_admit(p->pPacer, p->pStore, CR_METHOD_GET, zUrl, &msWait, ptAdmitted, pzErr);
    }
    if (rc == SQLITE_OK && msWait > 0) rc = cr_store_flush(p->pStore, pzErr);
    if (rc == SQLITE_OK && msWait > 0) rc = cr_pager_sleep(p, msWait, pzErr);
  }
  return rc;
}

/* How long to wait before another attempt of a finished GET, or -1: it is
** final.  429, 5xx and transport errors are retried (GET is safe). */
static sqlite3_int64 cr_pager_retry_delay(const cr_dest *d, const cr_xfer *pX, int nAttempts) {
  sqlite3_int64 ms;
  int st = pX->status;
  if (nAttempts >= d->maxAttempts || pX->cancelled) return -1;
  if (st != 429 && st < 500 && !(st == 0 && pX->zError)) return -1;
  /* A Retry-After longer than max_delay_ms means the quota is spent: a read
  ** waits for it (interruptibly) rather than spend its attempts. */
  ms = cr_retry_after_ms(pX->zRetryAfter);
  return ms >= 0 ? ms : cr_backoff_ms(d, nAttempts);
}

/* Writes the `pending` row of the page (once, after its first admission,
** as for sends) and commits it: other runs' pacers count it from then on. */
static int cr_pager_intend(cr_pager *p, const char *zUrl, sqlite3_int64 *piId, char **pzErr) {
  cr_request req;
  int rc = SQLITE_OK;
  if (p->pStore == 0) return SQLITE_OK;
  if (*piId == 0) {
    memset(&req, 0, sizeof(req));
    req.iBatch = p->iRowsPage;
    req.eMethod = CR_METHOD_GET;
    req.zUrl = (char *)zUrl;
    rc = cr_store_pending(p->pStore, p->iRun, p->pCred->zName, &req, piId, pzErr);
    p->counts.requests++;
  }
  if (rc == SQLITE_OK) rc = cr_store_flush(p->pStore, pzErr);
  return rc;
}

/* GETs zUrl into *pX, with admissions and retries; *pnAttempts counts
** them, *piId receives the page's audit row (0: none was written). */
static int cr_pager_get(cr_pager *p, const char *zUrl, cr_xfer *pX, sqlite3_int64 *piId,
                        int *pnAttempts, char **pzErr) {
  int rc = SQLITE_OK;
  for (;;) {
    sqlite3_int64 tAdmitted = 0, msDelay;
    cr_xfer_clear(pX);
    memset(pX, 0, sizeof(*pX));
    pX->eMethod = CR_METHOD_GET;
    pX->zUrl = zUrl;
    pX->pDest = &p->dest;
    pX->pCred = p->pCred;
    pX->maxResponse = CR_GET_MAX_RESPONSE;
    rc = cr_pager_admit(p, zUrl, &tAdmitted, pzErr);
    if (rc == SQLITE_OK) rc = cr_pager_intend(p, zUrl, piId, pzErr);
    if (rc == SQLITE_OK) {
      (*pnAttempts)++;
      rc = cr_http_perform(p->pConn->pHttp, p->pConn->db, pX, pzErr);
    }
    if (rc != SQLITE_OK) return rc;
    if (tAdmitted) cr_pacer_restamp(p->pPacer, CR_METHOD_GET, zUrl, tAdmitted);
    msDelay = cr_pager_retry_delay(&p->dest, pX, *pnAttempts);
    if (msDelay < 0) return SQLITE_OK;
    rc = cr_pager_sleep(p, msDelay + 1, pzErr); /* +1: Retry-After means "at least" */
    if (rc != SQLITE_OK) return rc;
  }
}

/* Why a finished GET failed, or NULL if it succeeded. */
static char *cr_pager_failure(cr_pager *p, const cr_xfer *pX) {
  int st = pX->status;
  if (st >= 200 && st < 300 && pX->zError == 0) return 0;
  if (st >= 300 && st < 400) {
    return sqlite3_mprintf("HTTP %d redirect to %s not followed", st,
                           pX->zLocation ? pX->zLocation : "(no Location)");
  }
  if (st >= 400) return cr_response_error(p->pConn->db, st, pX->zResponse);
  return cr_strdup(pX->zError ? pX->zError : "no answer");
}

/* Writes the outcome of the page's row and commits it. */
static int cr_pager_record(cr_pager *p, sqlite3_int64 iId, const cr_xfer *pX, const char *zWhy,
                           int nAttempts, char **pzErr) {
  cr_outcome o;
  int rc;
  if (p->pStore == 0) return SQLITE_OK;
  memset(&o, 0, sizeof(o));
  o.status = pX->status;
  o.zState = zWhy ? "failed" : "ok";
  o.zError = (char *)zWhy;
  o.nAttempts = nAttempts;
  o.durationMs = pX->durationMs;
  if (zWhy)
    p->counts.failed++;
  else
    p->counts.ok++;
  rc = cr_store_outcome(p->pStore, iId, &o, pzErr);
  if (rc == SQLITE_OK) rc = cr_store_flush(p->pStore, pzErr);
  return rc;
}

/* Fetches p->zNext into p->zBody, recording its outcome. */
static int cr_pager_fetch(cr_pager *p, char **pzErr) {
  cr_xfer x;
  sqlite3_int64 iId = 0;
  int nAttempts = 0, rc;
  char *zWhy = 0;
  sqlite3_free(p->zUrl);
  p->zUrl = p->zNext;
  p->zNext = 0;
  memset(&x, 0, sizeof(x));
  p->iRowsPage = p->iPage;
  rc = cr_pager_get(p, p->zUrl, &x, &iId, &nAttempts, pzErr);
  if (rc == SQLITE_OK) zWhy = cr_pager_failure(p, &x);
  if (iId) {
    int rc2 = cr_pager_record(p, iId, &x, rc == SQLITE_OK ? zWhy : *pzErr, nAttempts,
                              rc == SQLITE_OK ? pzErr : 0);
    if (rc == SQLITE_OK) rc = rc2;
  }
  if (rc == SQLITE_OK && zWhy) {
    cr_set_error(pzErr, "GET %s failed: %s", p->zUrl, zWhy);
    rc = SQLITE_ERROR;
  }
  if (rc == SQLITE_OK) {
    p->zBody = x.zResponse;
    x.zResponse = 0;
  }
  sqlite3_free(zWhy);
  cr_xfer_clear(&x);
  return rc;
}

/* ------------------------------------------------------------------------
** Pages: what a response holds and where the next one is
*/

/* The shape of a response (no row: it is not JSON).  Pagination fields
** tell a list from an object; a list's items are its one array member. */
static const char cr_sql_shape[] =
    "SELECT json_type(?1),"
    " EXISTS(SELECT 1 FROM json_each(?1) WHERE key IN"
    "  ('total_pages', 'total_records', 'has_next_page', 'next_page')),"
    " (SELECT count(*) FROM json_each(?1) WHERE type = 'array' AND (?2 IS NULL OR key = ?2)),"
    " (SELECT key FROM json_each(?1) WHERE type = 'array' AND (?2 IS NULL OR key = ?2)),"
    " json_extract(?1, '$.total_pages'), json_type(?1, '$.has_next_page'),"
    " json_extract(?1, '$.next_page')"
    " WHERE json_valid(?1)";

/* Where the next page is, from a list response's pagination fields:
** has_next_page/next_page (relative pagination), else total_pages. */
static int cr_pager_plan_next(cr_pager *p, sqlite3_stmt *pShape, char **pzErr) {
  const char *zHasNext = (const char *)sqlite3_column_text(pShape, 5);
  const char *zNext = (const char *)sqlite3_column_text(pShape, 6);
  int rc = SQLITE_OK;
  if (zHasNext) {
    if (strcmp(zHasNext, "true") != 0) return SQLITE_OK;
    if (zNext == 0) {
      cr_set_error(pzErr, "GET %s: has_next_page is true but next_page is not a URL", p->zUrl);
      return SQLITE_ERROR;
    }
    /* next_page comes from the server: the key goes to the credential's
    ** origin only, whatever a response says. */
    rc = cr_origin_check(p->pCred->zApiBase, zNext, pzErr);
    if (rc != SQLITE_OK) {
      char *zWhy = *pzErr;
      *pzErr = sqlite3_mprintf("GET %s: next_page not followed: %s", p->zUrl, zWhy);
      sqlite3_free(zWhy);
      return rc;
    }
    p->iPage++;
    p->zNext = cr_strdup(zNext);
  } else if (p->iPage < sqlite3_column_int(pShape, 4)) {
    p->iPage++;
    p->zNext = cr_pager_page_url(p, 1);
  } else {
    return SQLITE_OK;
  }
  return p->zNext ? SQLITE_OK : SQLITE_NOMEM;
}

/* Prepares the rows of the page held: the items of a list, the elements of
** an array, or the object itself. */
static int cr_pager_rows(cr_pager *p, const char *zType, int isList, const char *zKey,
                         char **pzErr) {
  int isEach = isList || strcmp(zType, "array") == 0;
  /* An element may be a string or a number: json_quote() makes every item
  ** JSON text (objects and arrays pass through it unchanged).  A single
  ** object is read as a one-element array, so that `value` is JSON in the
  ** extra columns too (a subquery would drop its JSON subtype). */
  char *zSql = sqlite3_mprintf("SELECT json_quote(value)%s%s FROM %s", p->zCols ? ", " : "",
                               p->zCols ? p->zCols : "",
                               isEach ? "json_each(?1, ?2)" : "json_each(json_array(json(?1)))");
  char *zPath = isList ? sqlite3_mprintf("$.\"%s\"", zKey) : sqlite3_mprintf("$");
  int rc = zSql && zPath ? SQLITE_OK : SQLITE_NOMEM;
  if (rc == SQLITE_OK) rc = cr_prepare(p->pConn->db, zSql, &p->pRows, pzErr);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(p->pRows, 1, p->zBody, -1, SQLITE_STATIC);
    if (isEach) sqlite3_bind_text(p->pRows, 2, zPath, -1, SQLITE_TRANSIENT);
  }
  sqlite3_free(zSql);
  sqlite3_free(zPath);
  return rc;
}

/* Reads the shape of the page held: its rows and where the next page is. */
static int cr_pager_parse(cr_pager *p, char **pzErr) {
  sqlite3_stmt *pShape = 0;
  int rc = cr_prepare(p->pConn->db, cr_sql_shape, &pShape, pzErr);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(pShape, 1, p->zBody, -1, SQLITE_STATIC);
    sqlite3_bind_text(pShape, 2, p->zList, -1, SQLITE_STATIC);
    if (sqlite3_step(pShape) != SQLITE_ROW) {
      cr_set_error(pzErr, "GET %s: the response is not JSON", p->zUrl);
      rc = SQLITE_ERROR;
    }
  }
  if (rc == SQLITE_OK) {
    const char *zType = (const char *)sqlite3_column_text(pShape, 0);
    const char *zKey = (const char *)sqlite3_column_text(pShape, 3);
    int isList = strcmp(zType, "object") == 0 && (sqlite3_column_int(pShape, 1) || p->zList);
    if (isList && (sqlite3_column_int(pShape, 2) != 1 || !cr_name_is_plain(zKey))) {
      cr_set_error(pzErr, "GET %s: a list response without %s", p->zUrl,
                   p->zList ? p->zList : "exactly one array member to read the items from");
      rc = SQLITE_ERROR;
    }
    if (rc == SQLITE_OK) rc = cr_pager_rows(p, zType, isList, zKey, pzErr);
    if (rc == SQLITE_OK && isList) rc = cr_pager_plan_next(p, pShape, pzErr);
  }
  sqlite3_finalize(pShape);
  return rc;
}

/* ------------------------------------------------------------------------
** The pager
*/

int cr_pager_next(cr_pager *p, char **pzErr) {
  int rc = SQLITE_OK;
  while (rc == SQLITE_OK) {
    if (p->pRows) {
      rc = sqlite3_step(p->pRows);
      if (rc == SQLITE_ROW) {
        p->counts.records++;
        return rc;
      }
      if (rc != SQLITE_DONE) {
        cr_set_error(pzErr, "GET %s: %s", p->zUrl, sqlite3_errmsg(p->pConn->db));
        break;
      }
      rc = SQLITE_OK;
      sqlite3_finalize(p->pRows);
      sqlite3_free(p->zBody);
      p->pRows = 0;
      p->zBody = 0;
    }
    if (p->zNext == 0) return SQLITE_DONE;
    rc = cr_pager_fetch(p, pzErr);
    if (rc == SQLITE_OK) rc = cr_pager_parse(p, pzErr);
  }
  p->zStatus = rc == SQLITE_INTERRUPT ? "interrupted" : "error";
  if (rc != SQLITE_INTERRUPT && p->zEndError == 0) p->zEndError = cr_strdup(*pzErr);
  return rc;
}

sqlite3_value *cr_pager_value(cr_pager *p, int i) {
  return sqlite3_column_value(p->pRows, i);
}

int cr_pager_page(cr_pager *p) {
  return p->iRowsPage;
}

const char *cr_pager_url(cr_pager *p) {
  return p->zUrl;
}

/* Starts the audit of an audited read: its run row, and the pacer. */
static int cr_pager_audit(cr_pager *p, char **pzErr) {
  sqlite3_int64 nRecovered = 0;
  char *zLive = 0;
  int rc = cr_store_open(p->pConn->db, &p->pStore, pzErr);
  if (rc == SQLITE_OK) {
    rc = cr_store_claim(p->pStore, p->pCred->zName, "get", p->dest.leaseMs, &p->iRun, &zLive,
                        &nRecovered, pzErr);
  }
  if (rc == SQLITE_OK) rc = cr_pacer_new(&p->dest, &p->pPacer);
  return rc;
}

/* The first page's URL: zPath, the params' query string, per_page. */
static int cr_pager_first_url(cr_pager *p, const char *zPath, const char *zParams, char **pzErr) {
  char *zUrl = 0, *zQuery = 0;
  int rc = cr_get_url(p->pCred, zPath, &zUrl, pzErr);
  if (rc == SQLITE_OK) rc = cr_params_query(p, zParams, &zQuery, pzErr);
  if (rc == SQLITE_OK) {
    p->zBase = zQuery ? sqlite3_mprintf("%s%c%s", zUrl, strchr(zUrl, '?') ? '&' : '?', zQuery)
                      : cr_strdup(zUrl);
    p->zNext = p->zBase ? cr_pager_page_url(p, p->explicitPage) : 0;
    if (p->zNext == 0) rc = SQLITE_NOMEM;
  }
  sqlite3_free(zUrl);
  sqlite3_free(zQuery);
  return rc;
}

/* The settings of every read: a destination's defaults (timeouts, retry
** policy, CallRail's rate limits) and no extra headers. */
static void cr_pager_dest(cr_pager *p, const char *zCred) {
  cr_dest *d = &p->dest;
  cr_dest_defaults(d);
  d->zName = (char *)zCred;
  d->eMethod = CR_METHOD_GET;
  d->concurrency = 1;
  d->maxResponseBytes = CR_GET_MAX_RESPONSE;
}

int cr_pager_open(cr_conn *pConn, const char *zCred, const char *zPath, const char *zParams,
                  const char *zList, const char *zCols, int isAudited, cr_pager **pp,
                  char **pzErr) {
  cr_pager *p = sqlite3_malloc(sizeof(*p));
  int rc = p ? SQLITE_OK : SQLITE_NOMEM;
  *pp = p;
  if (rc != SQLITE_OK) return rc;
  memset(p, 0, sizeof(*p));
  p->pConn = pConn;
  p->zList = zList;
  p->zCols = zCols;
  p->iPage = 1;
  if (pConn->nRuns > 0) {
    /* The run's audit connection may hold the write lock while it reads
    ** its query: this read's rows would wait for it.  And the run's
    ** transfers share the connection's transport with this read's, whose
    ** wait could be handed one of theirs. */
    cr_set_error(pzErr, "cannot run inside the query of callrail_send or callrail_test; "
                        "read into a table first (CREATE TEMP TABLE t AS SELECT ...)");
    return SQLITE_ERROR;
  }
  rc = cr_schema_ensure(pConn, pzErr);
  if (rc == SQLITE_OK) rc = cr_cred_load(pConn->db, pConn, zCred, &p->pCred, pzErr);
  if (rc == SQLITE_OK) {
    cr_pager_dest(p, p->pCred->zName);
    rc = cr_pager_first_url(p, zPath, zParams, pzErr);
  }
  if (rc == SQLITE_OK && pConn->pHttp == 0) rc = cr_http_new(&pConn->pHttp, pzErr);
  if (rc == SQLITE_OK && isAudited) rc = cr_pager_audit(p, pzErr);
  return rc;
}

void cr_pager_close(cr_pager *p) {
  if (p == 0) return;
  if (p->pStore && p->iRun) {
    char *zErr = 0;
    /* A read the caller stopped early (LIMIT) is done: nothing is owed. */
    cr_store_run_end(p->pStore, p->iRun, &p->counts, p->zStatus ? p->zStatus : "done", p->zEndError,
                     &zErr);
    sqlite3_free(zErr);
  }
  sqlite3_free(p->zEndError);
  sqlite3_finalize(p->pRows);
  cr_store_close(p->pStore);
  cr_pacer_free(p->pPacer);
  cr_cred_free(p->pCred);
  sqlite3_free(p->zBase);
  sqlite3_free(p->zPerPage);
  sqlite3_free(p->zNext);
  sqlite3_free(p->zUrl);
  sqlite3_free(p->zBody);
  sqlite3_free(p);
}

/* ------------------------------------------------------------------------
** The table-valued function callrail_get
*/

/* The cursor of callrail_get and callrail_accounts: a pager. */

int cr_pager_cursor_close(sqlite3_vtab_cursor *cur) {
  cr_pager_close(((cr_pager_cursor *)cur)->pPager);
  sqlite3_free(cur);
  return SQLITE_OK;
}

int cr_pager_cursor_next(sqlite3_vtab_cursor *cur) {
  cr_pager_cursor *pCur = (cr_pager_cursor *)cur;
  char *zErr = 0;
  int rc = cr_pager_next(pCur->pPager, &zErr);
  pCur->base.iRowid++;
  pCur->eof = rc != SQLITE_ROW;
  if (rc == SQLITE_ROW || rc == SQLITE_DONE) return SQLITE_OK;
  return cr_tvf_error(cur, zErr, rc);
}

int cr_pager_cursor_eof(sqlite3_vtab_cursor *cur) {
  return ((cr_pager_cursor *)cur)->eof;
}

int cr_pager_cursor_start(sqlite3_vtab_cursor *cur, const char *zCred, const char *zPath,
                          const char *zParams, const char *zList, const char *zCols,
                          int isAudited) {
  cr_pager_cursor *pCur = (cr_pager_cursor *)cur;
  char *zErr = 0;
  int rc;
  cr_pager_close(pCur->pPager);
  pCur->pPager = 0;
  pCur->eof = 1;
  rc = cr_pager_open(((cr_tvf *)cur->pVtab)->pConn, zCred, zPath, zParams, zList, zCols, isAudited,
                     &pCur->pPager, &zErr);
  if (rc != SQLITE_OK) return cr_tvf_error(cur, zErr, rc);
  pCur->base.iRowid = 0;
  return cr_pager_cursor_next(cur);
}

#define CR_GET_SCHEMA                                                                              \
  "CREATE TABLE x(item, id, page, url, credential HIDDEN, path HIDDEN, params HIDDEN)"
#define CR_GET_ITEM 0
#define CR_GET_ID 1
#define CR_GET_PAGE 2
#define CR_GET_URL 3
#define CR_GET_CREDENTIAL 4

/* The id column: $.id of an object item, NULL for any other item (an
** element of a bare array may be a string, which is not JSON text). */
#define CR_GET_ID_SQL "json_extract(json_quote(value), '$.id')"

/* The optional third argument: NULL there is an error, not "no params". */
static int cr_get_params(sqlite3_vtab_cursor *cur, int idxNum, sqlite3_value **argv,
                         const char **pzParams) {
  char *zErr = 0;
  *pzParams = 0;
  if ((idxNum & 4) == 0) return SQLITE_OK;
  *pzParams = cr_arg_text(argv[2], "params (a JSON object)", &zErr);
  return *pzParams ? SQLITE_OK : cr_tvf_error(cur, zErr, SQLITE_ERROR);
}

/* idxNum bits 1, 2, 4: credential, path, params present (in that order in
** argv). */
static int cr_get_filter(sqlite3_vtab_cursor *cur, int idxNum, const char *idxStr, int argc,
                         sqlite3_value **argv) {
  const char *azArg[2] = {0, 0};
  const char *zParams = 0;
  (void)idxStr, (void)argc;
  ((cr_pager_cursor *)cur)->eof = 1;
  if (cr_tvf_args(cur, idxNum, argv, azArg) != SQLITE_OK) return SQLITE_ERROR;
  if (cr_get_params(cur, idxNum, argv, &zParams) != SQLITE_OK) return SQLITE_ERROR;
  return cr_pager_cursor_start(cur, azArg[0], azArg[1], zParams, 0, CR_GET_ID_SQL, 1);
}

static int cr_get_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int i) {
  cr_pager *p = ((cr_pager_cursor *)cur)->pPager;
  switch (i) {
  case CR_GET_ITEM:
    sqlite3_result_value(ctx, cr_pager_value(p, 0));
    /* JSON, not text, when passed on to json_object() and the like. */
    sqlite3_result_subtype(ctx, 'J');
    break;
  case CR_GET_ID:
    sqlite3_result_value(ctx, cr_pager_value(p, 1));
    break;
  case CR_GET_PAGE:
    sqlite3_result_int(ctx, cr_pager_page(p));
    break;
  case CR_GET_URL:
    sqlite3_result_text(ctx, cr_pager_url(p), -1, SQLITE_TRANSIENT);
    break;
  default:
    break; /* the hidden arguments read back as NULL */
  }
  return SQLITE_OK;
}

static const cr_tvf_def cr_get_def = {"callrail_get",
                                      CR_GET_SCHEMA,
                                      sizeof(cr_pager_cursor),
                                      CR_GET_CREDENTIAL,
                                      3,
                                      2,
                                      {"credential name", "path", "params"}};

static sqlite3_module cr_get_module = {
    .iVersion = 0,                    /* no xSavepoint and later slots needed */
    .xCreate = 0,                     /* eponymous only: no CREATE VIRTUAL TABLE */
    .xConnect = cr_tvf_connect,       /* declares the schema, DIRECTONLY */
    .xBestIndex = cr_tvf_best_index,  /* the arguments as EQ constraints */
    .xDisconnect = cr_tvf_disconnect, /* frees the vtab */
    .xDestroy = 0,                    /* eponymous only */
    .xOpen = cr_tvf_open,             /* a zeroed cr_pager_cursor */
    .xClose = cr_pager_cursor_close,  /* ends the read and its run */
    .xFilter = cr_get_filter,         /* fetches the first page */
    .xNext = cr_pager_cursor_next,    /* the next item, fetching pages */
    .xEof = cr_pager_cursor_eof,      /* after the last page */
    .xColumn = cr_get_column,         /* item, id, page, url */
    .xRowid = cr_tvf_rowid,           /* 1, 2, ... */
    .xUpdate = 0,                     /* read-only */
    .xBegin = 0,                      /* no transactions */
    .xSync = 0,                       /* no transactions */
    .xCommit = 0,                     /* no transactions */
    .xRollback = 0,                   /* no transactions */
    .xFindFunction = 0,               /* no overloaded functions */
    .xRename = 0,                     /* cannot be renamed */
    .xSavepoint = 0,                  /* iVersion 2: none */
    .xRelease = 0,                    /* iVersion 2: none */
    .xRollbackTo = 0,                 /* iVersion 2: none */
    .xShadowName = 0,                 /* iVersion 3: no shadow tables */
};

int cr_register_get(sqlite3 *db, cr_conn *pConn, char **pzErr) {
  return cr_tvf_register(db, pConn, &cr_get_def, &cr_get_module, pzErr);
}
