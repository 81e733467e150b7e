/*
** cr_http.c - the transport: libcurl's multi interface, one per connection.
**
** One multi handle lives with the database connection, so its connection
** cache, DNS cache and TLS sessions serve every request and every run;
** HTTP/2 multiplexing is used where the server offers it.  The caller
** hands transfers over with cr_http_start() and takes finished ones back
** with cr_http_wait().
**
** One thread at a time drives the multi handle (the driver).  Usually it
** is the caller's own thread, inside cr_http_wait(): no thread switch per
** request.  A worker thread of the connection takes over when the caller
** has been away for CR_TAKEOVER_MS - stepping a user's query that takes
** seconds per row, committing, or waiting for the consumer of its rows -
** so that an answer in flight is never read late and judged timed out.
** The caller takes the multi handle back the next time it calls in.
**
** Safety rules that every request follows (README "Guarantees"):
**   - the URL's origin must be the credential's api_base, checked here,
**     before the transfer gets the header that carries the key;
**   - only https (http for loopback bases) and no redirects: a 3xx is an
**     answer, recorded with its Location;
**   - TLS peers and host names are always verified;
**   - libcurl re-sends a request on its own when a reused keep-alive
**     connection turns out dead before any response byte
*(docs/design.md#no-second-post-the-prereqfunction-block).
**     For POST and PATCH that may duplicate a phone call, so the
**     CURLOPT_PREREQFUNCTION callback, which runs once per attempt to send,
**     aborts the second attempt.  The transfer then reports a dropped
**     connection and the caller decides (a POST is `unknown`) - unless
**     the server provably never processed it: an HTTP/2 stream above the
**     last stream id of the server's GOAWAY (a graceful close, e.g. nginx's
**     keepalive_requests), or one libcurl saw refused (REFUSED_STREAM).
**     Such an attempt did not arrive (reachedServer 0), whether libcurl
**     tries to re-send it or ends it with CURLE_HTTP2, and is retried like
**     a refused connect.  libcurl 7.88 says so only in its verbose text,
**     which cr_on_debug() reads (see cr_xfer_note()); text it does not
**     recognise leaves the request `unknown`, the safe side.
*/
#include "cr_internal.h"
SQLITE_EXTENSION_INIT3

/* CURLOPT_PROTOCOLS_STR (below) is 7.85.0's; CURLOPT_PREREQFUNCTION 7.80's. */
#if LIBCURL_VERSION_NUM < 0x075500
#error "callrail needs libcurl >= 7.85.0 (CURLOPT_PROTOCOLS_STR); these headers are older"
#endif

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* A list of transfers, linked through pNextQ, in order. */
typedef struct cr_xfer_list {
  cr_xfer *pHead;
  cr_xfer *pTail;
} cr_xfer_list;

/* A connection's GOAWAY: the server processes no stream above lastStream.
** Consulted right after it arrives, when libcurl gives up the streams it
** refused, so a few slots (oldest overwritten) are enough. */
typedef struct cr_goaway {
  long iConn; /* libcurl's connection number, -1: empty */
  unsigned lastStream;
} cr_goaway;
#define CR_GOAWAY_SLOTS (2 * CR_MAX_CONCURRENCY)

/* The worker takes the multi handle over once the caller has been away
** this long with transfers in flight. */
#define CR_TAKEOVER_MS 5

/* Who drives the multi handle. */
#define CR_DRIVER_NONE 0   /* nobody: nothing to drive */
#define CR_DRIVER_CALLER 1 /* the caller's thread, in a call or just out */
#define CR_DRIVER_WORKER 2 /* the worker thread */

struct cr_http {
  /* the driver's */
  CURLM *pMulti;
  CURLSH *pShare;
  cr_xfer_list done; /* finished, not yet handed back */
  int nActive;       /* transfers in libcurl */
  /* the caller's */
  int nRunning; /* started and not yet handed back */
  /* Easy handles of finished transfers, reset for the next: creating and
  ** destroying one per request cost about 4 % of a request's instructions. */
  CURL *apIdle[CR_MAX_CONCURRENCY];
  int nIdle;
  pthread_t worker;
  int hasWorker;
  /* guarded by mutex */
  pthread_mutex_t mutex;
  pthread_cond_t callerCond; /* the worker gave the multi handle back */
  pthread_cond_t workerCond; /* the worker may have something to drive */
  int eDriver;               /* CR_DRIVER_* */
  int anyActive;             /* nActive > 0 when the caller last left */
  int workerIdle;            /* the worker sleeps until signalled */
  int callerBusy;            /* the caller is driving, in a call */
  int callerWants;           /* the caller waits to take it back */
  sqlite3_int64 tBusyUntil;  /* monotonic ms that call ends at the latest */
  sqlite3_int64 tCallerLeft; /* monotonic ms the caller last left */
  int stop;                  /* the worker should exit */
  /* the driver's: the last GOAWAYs received, by libcurl connection number */
  cr_goaway aGoaway[CR_GOAWAY_SLOTS];
  int iGoaway; /* the slot the next one takes */
};

static void cr_list_push(cr_xfer_list *pList, cr_xfer *pX) {
  pX->pNextQ = 0;
  if (pList->pTail)
    pList->pTail->pNextQ = pX;
  else
    pList->pHead = pX;
  pList->pTail = pX;
}

static cr_xfer *cr_list_pop(cr_xfer_list *pList) {
  cr_xfer *pX = pList->pHead;
  if (pX) {
    pList->pHead = pX->pNextQ;
    if (pList->pHead == 0) pList->pTail = 0;
    pX->pNextQ = 0;
  }
  return pX;
}

/* Takes pX out of the list if it is there. */
static void cr_list_remove(cr_xfer_list *pList, cr_xfer *pX) {
  cr_xfer **pp;
  cr_xfer *pPrev = 0;
  for (pp = &pList->pHead; *pp; pPrev = *pp, pp = &(*pp)->pNextQ) {
    if (*pp == pX) {
      *pp = pX->pNextQ;
      if (pList->pTail == pX) pList->pTail = pPrev;
      pX->pNextQ = 0;
      return;
    }
  }
}

/* Sets one option, naming it in the error when libcurl refuses it. */
#define CR_SETOPT(rc, pX, opt, val, pzErr)                                                         \
  do {                                                                                             \
    if ((rc) == SQLITE_OK && curl_easy_setopt((pX)->pEasy, opt, val) != CURLE_OK) {                \
      cr_set_error(pzErr, "libcurl refused option %s", #opt);                                      \
      (rc) = SQLITE_ERROR;                                                                         \
    }                                                                                              \
  } while (0)

int cr_http_new(cr_http **pp, char **pzErr) {
  cr_http *p = sqlite3_malloc(sizeof(*p));
  int i;
  *pp = p;
  if (p == 0) return SQLITE_NOMEM;
  memset(p, 0, sizeof(*p));
  for (i = 0; i < CR_GOAWAY_SLOTS; i++)
    p->aGoaway[i].iConn = -1;
  if (!sqlite3_threadsafe()) {
    cr_set_error(pzErr, "callrail needs SQLite built thread-safe (its transfers run on a thread)");
    return SQLITE_ERROR;
  }
  p->pMulti = curl_multi_init();
  p->pShare = curl_share_init();
  if (p->pMulti == 0 || p->pShare == 0) {
    cr_set_error(pzErr, "libcurl cannot create a multi handle");
    return SQLITE_ERROR;
  }
  pthread_mutex_init(&p->mutex, 0);
  pthread_cond_init(&p->callerCond, 0);
  pthread_cond_init(&p->workerCond, 0);
  curl_share_setopt(p->pShare, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  curl_share_setopt(p->pShare, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  curl_multi_setopt(p->pMulti, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  /* libcurl's cache otherwise holds 4 x the transfers in flight; as each
  ** request has its own handle, idle keep-alive connections (TLS sessions
  ** against CallRail) would be closed between refills. */
  curl_multi_setopt(p->pMulti, CURLMOPT_MAXCONNECTS, (long)CR_MAX_CONCURRENCY);
  return SQLITE_OK;
}

void cr_http_free(cr_http *p) {
  if (p == 0) return;
  if (p->hasWorker) {
    pthread_mutex_lock(&p->mutex);
    p->stop = 1;
    pthread_cond_signal(&p->workerCond);
    pthread_mutex_unlock(&p->mutex);
    curl_multi_wakeup(p->pMulti);
    pthread_join(p->worker, 0);
  }
  if (p->pMulti) {
    pthread_mutex_destroy(&p->mutex);
    pthread_cond_destroy(&p->callerCond);
    pthread_cond_destroy(&p->workerCond);
    curl_multi_cleanup(p->pMulti);
  }
  while (p->nIdle > 0)
    curl_easy_cleanup(p->apIdle[--p->nIdle]);
  if (p->pShare) curl_share_cleanup(p->pShare);
  sqlite3_free(p);
}

/* The header list holds the key: wipe it before it is freed. */
void cr_http_headers_free(struct curl_slist *pList) {
  struct curl_slist *p;
  for (p = pList; p; p = p->next)
    memset(p->data, 0, strlen(p->data));
  curl_slist_free_all(pList);
}

void cr_xfer_clear(cr_xfer *pX) {
  cr_http *p = pX->pHttp;
  if (pX->pEasy && p && p->nIdle < CR_MAX_CONCURRENCY) {
    curl_easy_reset(pX->pEasy); /* every option of the last request is gone */
    p->apIdle[p->nIdle++] = pX->pEasy;
  } else if (pX->pEasy) {
    curl_easy_cleanup(pX->pEasy);
  }
  cr_http_headers_free(pX->pHeaders);
  sqlite3_free(pX->zResponse);
  sqlite3_free(pX->zError);
  sqlite3_free(pX->zRetryAfter);
  sqlite3_free(pX->zLocation);
  pX->pEasy = 0;
  pX->pHeaders = 0;
  pX->zResponse = pX->zError = pX->zRetryAfter = pX->zLocation = 0;
}

/* ------------------------------------------------------------------------
** Headers: the one list that both a request and its preview use.
*/

/* True if the destination sets header zName itself (replacing ours). */
static int cr_dest_sets_header(const cr_dest *pDest, const char *zName) {
  size_t n = strlen(zName);
  int i;
  for (i = 0; i < pDest->nHeader; i++) {
    if (strncasecmp(pDest->azHeader[i], zName, n) == 0 && pDest->azHeader[i][n] == ':') return 1;
  }
  return 0;
}

/* Calls xLine for each header line of a request to pDest, in order; the
** Authorization line carries zToken ("***" in previews). */
static int cr_headers_each(const cr_dest *pDest, const char *zToken, int hasBody,
                           int (*xLine)(void *, const char *, const char *), void *pArg) {
  char *zAuth = sqlite3_mprintf("Token token=\"%s\"", zToken);
  int i, rc = zAuth ? SQLITE_OK : SQLITE_NOMEM;
  if (rc == SQLITE_OK) rc = xLine(pArg, "Authorization", zAuth);
  if (rc == SQLITE_OK && !cr_dest_sets_header(pDest, "Accept")) {
    rc = xLine(pArg, "Accept", "application/json");
  }
  if (rc == SQLITE_OK && !cr_dest_sets_header(pDest, "User-Agent")) {
    rc = xLine(pArg, "User-Agent", CR_USER_AGENT);
  }
  if (rc == SQLITE_OK && hasBody) rc = xLine(pArg, "Content-Type", "application/json");
  for (i = 0; rc == SQLITE_OK && i < pDest->nHeader; i++) {
    const char *zColon = strchr(pDest->azHeader[i], ':');
    char *zName = sqlite3_mprintf("%.*s", (int)(zColon - pDest->azHeader[i]), pDest->azHeader[i]);
    const char *zVal = zColon + 1;
    while (*zVal == ' ')
      zVal++;
    rc = zName ? xLine(pArg, zName, zVal) : SQLITE_NOMEM;
    sqlite3_free(zName);
  }
  if (zAuth) memset(zAuth, 0, strlen(zAuth));
  sqlite3_free(zAuth);
  return rc;
}

static int cr_header_to_slist(void *pArg, const char *zName, const char *zVal) {
  struct curl_slist **ppList = (struct curl_slist **)pArg;
  char *zLine = sqlite3_mprintf("%s: %s", zName, zVal);
  struct curl_slist *pNew = zLine ? curl_slist_append(*ppList, zLine) : 0;
  if (zLine) memset(zLine, 0, strlen(zLine));
  sqlite3_free(zLine);
  if (pNew == 0) return SQLITE_NOMEM;
  *ppList = pNew;
  return SQLITE_OK;
}

int cr_http_headers(const cr_dest *pDest, const cr_cred *pCred, int hasBody,
                    struct curl_slist **ppList) {
  int rc = cr_headers_each(pDest, pCred->zToken, hasBody, cr_header_to_slist, ppList);
  /* Without this libcurl adds "Expect: 100-continue" to large bodies. */
  if (rc == SQLITE_OK) rc = cr_header_to_slist(ppList, "Expect", "");
  return rc;
}

typedef struct cr_json_headers {
  sqlite3_stmt *pSet; /* SELECT json_set(?1, '$."' || ?2 || '"', ?3) */
  char *zJson;
} cr_json_headers;

static int cr_header_to_json(void *pArg, const char *zName, const char *zVal) {
  cr_json_headers *p = (cr_json_headers *)pArg;
  int rc = SQLITE_NOMEM;
  sqlite3_bind_text(p->pSet, 1, p->zJson, -1, SQLITE_STATIC);
  sqlite3_bind_text(p->pSet, 2, zName, -1, SQLITE_STATIC);
  sqlite3_bind_text(p->pSet, 3, zVal, -1, SQLITE_STATIC);
  if (sqlite3_step(p->pSet) == SQLITE_ROW) {
    char *zNew = cr_strdup((const char *)sqlite3_column_text(p->pSet, 0));
    if (zNew) {
      sqlite3_free(p->zJson);
      p->zJson = zNew;
      rc = SQLITE_OK;
    }
  }
  sqlite3_reset(p->pSet);
  return rc;
}

char *cr_headers_json(sqlite3 *db, const cr_dest *pDest, int hasBody) {
  cr_json_headers h = {0, 0};
  int rc = sqlite3_prepare_v2(db, "SELECT json_set(?1, '$.\"' || ?2 || '\"', ?3)", -1, &h.pSet, 0);
  h.zJson = cr_strdup("{}");
  if (rc == SQLITE_OK && h.zJson) {
    rc = cr_headers_each(pDest, "***", hasBody, cr_header_to_json, &h);
  }
  sqlite3_finalize(h.pSet);
  if (rc != SQLITE_OK) {
    sqlite3_free(h.zJson);
    h.zJson = 0;
  }
  return h.zJson;
}

/* ------------------------------------------------------------------------
** Callbacks
*/

static size_t cr_on_body(char *pData, size_t size, size_t nmemb, void *pArg) {
  cr_xfer *pX = (cr_xfer *)pArg;
  size_t n = size * nmemb;
  char *zNew;
  if (pX->nResponse + (sqlite3_int64)n > pX->maxResponse) {
    cr_set_error(&pX->zError, "response body larger than %lld bytes; cut off", pX->maxResponse);
    pX->bodyCut = 1;
    return 0; /* makes libcurl fail the transfer with CURLE_WRITE_ERROR */
  }
  zNew = sqlite3_realloc64(pX->zResponse, pX->nResponse + n + 1);
  if (zNew == 0) return 0;
  memcpy(zNew + pX->nResponse, pData, n);
  pX->nResponse += n;
  zNew[pX->nResponse] = 0;
  pX->zResponse = zNew;
  return n;
}

/* Keeps the value of header zName if zLine is that header. */
static void cr_keep_header(const char *zLine, size_t n, const char *zName, char **pzOut) {
  size_t nName = strlen(zName);
  if (n > nName + 1 && strncasecmp(zLine, zName, nName) == 0 && zLine[nName] == ':') {
    const char *z = zLine + nName + 1;
    size_t m = n - nName - 1;
    while (m > 0 && (*z == ' ' || *z == '\t'))
      z++, m--;
    while (m > 0 && (z[m - 1] == '\r' || z[m - 1] == '\n' || z[m - 1] == ' '))
      m--;
    sqlite3_free(*pzOut);
    *pzOut = sqlite3_mprintf("%.*s", (int)m, z);
  }
}

static size_t cr_on_header(char *pData, size_t size, size_t nmemb, void *pArg) {
  cr_xfer *pX = (cr_xfer *)pArg;
  size_t n = size * nmemb;
  cr_keep_header(pData, n, "Retry-After", &pX->zRetryAfter);
  cr_keep_header(pData, n, "Location", &pX->zLocation);
  return n;
}

/* Runs before each attempt to send.  A second attempt of one transfer is
** libcurl's silent re-send after a dead reused connection: refused for
** requests that are not idempotent. */
static int cr_on_prereq(void *pArg, char *zConnIp, char *zLocalIp, int connPort, int localPort) {
  cr_xfer *pX = (cr_xfer *)pArg;
  (void)zConnIp, (void)zLocalIp, (void)connPort, (void)localPort;
  pX->nPrereq++;
  if (pX->nPrereq > 1 && (pX->eMethod == CR_METHOD_POST || pX->eMethod == CR_METHOD_PATCH)) {
    return CURL_PREREQFUNC_ABORT; /* what refused the last attempt still holds */
  }
  pX->iStream = 0; /* a new attempt; cr_xfer_note() learns its stream */
  pX->refused = 0;
  return CURL_PREREQFUNC_OK;
}

/* ------------------------------------------------------------------------
** Refused HTTP/2 streams, from libcurl's verbose text (its 7.88 wording)
*/

static void cr_goaway_note(cr_http *p, long iConn, unsigned lastStream) {
  p->aGoaway[p->iGoaway].iConn = iConn;
  p->aGoaway[p->iGoaway].lastStream = lastStream;
  p->iGoaway = (p->iGoaway + 1) % CR_GOAWAY_SLOTS;
}

/* Marks pX refused if its attempt's stream is above the last stream that
** a GOAWAY on its connection kept. */
static void cr_goaway_check(cr_xfer *pX) {
  int i;
  for (i = 0; i < CR_GOAWAY_SLOTS && pX->iConn >= 0 && pX->iStream > 0; i++) {
    const cr_goaway *g = &pX->pHttp->aGoaway[i];
    if (g->iConn == pX->iConn && pX->iStream > g->lastStream) {
      pX->refused = CR_REFUSED_GOAWAY;
      pX->iLastKept = g->lastStream;
    }
  }
}

/* Follows one line of libcurl's text about transfer pX: the connection
** and stream of each attempt, GOAWAYs, and the moment libcurl gives the
** attempt up to re-send it ("Connection died" after a refused stream too).
** A GOAWAY is reported on a transfer of its connection; one that has not
** named its connection yet (iConn -1) may be checking another: ignored. */
static void cr_xfer_note(cr_xfer *pX, const char *zLine) {
  const char *z = strrchr(zLine, '#');
  long iConn;
  unsigned u;
  int iErr;
  if (sscanf(zLine, "Re-using existing connection #%ld", &iConn) == 1) {
    pX->iConn = iConn;
  } else if (strncmp(zLine, "Connected to ", 13) == 0 && z && z > zLine && z[-1] == '(' &&
             sscanf(z, "#%ld)", &iConn) == 1) {
    pX->iConn = iConn;
  } else if (sscanf(zLine, "Using Stream ID: %u", &u) == 1) {
    pX->iStream = u;
  } else if ((z = strstr(zLine, "GOAWAY, error=")) != 0 &&
             sscanf(z, "GOAWAY, error=%d, last_stream=%u", &iErr, &u) == 2 && pX->iConn >= 0) {
    cr_goaway_note(pX->pHttp, pX->iConn, u);
  } else if (strncmp(zLine, "REFUSED_STREAM, retrying", 24) == 0) {
    pX->refused = CR_REFUSED_STREAM;
  } else if (strncmp(zLine, "Connection died, retrying", 25) == 0) {
    cr_goaway_check(pX);
    /* Until the next attempt names its connection, a GOAWAY reported on
    ** pX comes from libcurl checking some idle connection's liveness with
    ** it: pX's number would be the wrong one. */
    pX->iConn = -1;
  }
}

/* Only CURLINFO_TEXT is read: the header and data lines carry the key. */
static int cr_on_debug(CURL *pEasy, curl_infotype eType, char *zData, size_t n, void *pArg) {
  char aLine[128];
  (void)pEasy;
  if (eType == CURLINFO_TEXT) {
    if (n >= sizeof(aLine)) n = sizeof(aLine) - 1;
    memcpy(aLine, zData, n);
    aLine[n] = 0;
    cr_xfer_note((cr_xfer *)pArg, aLine);
  }
  return 0;
}

/* ------------------------------------------------------------------------
** Starting a transfer
*/

static int cr_xfer_method(cr_xfer *pX, char **pzErr) {
  int rc = SQLITE_OK;
  if (pX->eMethod == CR_METHOD_GET) {
    CR_SETOPT(rc, pX, CURLOPT_HTTPGET, 1L, pzErr);
    return rc;
  }
  if (pX->eMethod != CR_METHOD_POST) {
    CR_SETOPT(rc, pX, CURLOPT_CUSTOMREQUEST, cr_method_names[pX->eMethod], pzErr);
  }
  if (pX->zBody) {
    CR_SETOPT(rc, pX, CURLOPT_POSTFIELDS, pX->zBody, pzErr);
    CR_SETOPT(rc, pX, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(pX->zBody), pzErr);
  } else if (pX->eMethod == CR_METHOD_POST) {
    CR_SETOPT(rc, pX, CURLOPT_POSTFIELDS, "", pzErr);
  }
  return rc;
}

static int cr_xfer_setup(cr_http *p, cr_xfer *pX, char **pzErr) {
  int loopback = pX->pCred->isLoopback;
  const char *zProto = loopback ? "http,https" : "https";
  int rc = SQLITE_OK;
  CR_SETOPT(rc, pX, CURLOPT_URL, pX->zUrl, pzErr);
  CR_SETOPT(rc, pX, CURLOPT_SHARE, p->pShare, pzErr);
  CR_SETOPT(rc, pX, CURLOPT_PRIVATE, pX, pzErr);
  CR_SETOPT(rc, pX, CURLOPT_PROTOCOLS_STR, zProto, pzErr);
  CR_SETOPT(rc, pX, CURLOPT_REDIR_PROTOCOLS_STR, zProto, pzErr);
  CR_SETOPT(rc, pX, CURLOPT_FOLLOWLOCATION, 0L, pzErr);
  CR_SETOPT(rc, pX, CURLOPT_SSL_VERIFYPEER, 1L, pzErr);
  CR_SETOPT(rc, pX, CURLOPT_SSL_VERIFYHOST, 2L, pzErr);
  CR_SETOPT(rc, pX, CURLOPT_NOSIGNAL, 1L, pzErr);
  /* A record value may hold "..": it is sent as it is, never resolved. */
  CR_SETOPT(rc, pX, CURLOPT_PATH_AS_IS, 1L, pzErr);
  CR_SETOPT(rc, pX, CURLOPT_HTTPHEADER, pX->pHeaderList ? pX->pHeaderList : pX->pHeaders, pzErr);
  CR_SETOPT(rc, pX, CURLOPT_TIMEOUT_MS, (long)pX->pDest->timeoutMs, pzErr);
  CR_SETOPT(rc, pX, CURLOPT_CONNECTTIMEOUT_MS, (long)pX->pDest->connectTimeoutMs, pzErr);
  CR_SETOPT(rc, pX, CURLOPT_WRITEFUNCTION, cr_on_body, pzErr);
  CR_SETOPT(rc, pX, CURLOPT_WRITEDATA, pX, pzErr);
  CR_SETOPT(rc, pX, CURLOPT_HEADERFUNCTION, cr_on_header, pzErr);
  CR_SETOPT(rc, pX, CURLOPT_HEADERDATA, pX, pzErr);
  CR_SETOPT(rc, pX, CURLOPT_PREREQFUNCTION, cr_on_prereq, pzErr);
  CR_SETOPT(rc, pX, CURLOPT_PREREQDATA, pX, pzErr);
  CR_SETOPT(rc, pX, CURLOPT_ERRORBUFFER, pX->zErrBuf, pzErr);
  /* HTTP/2 is negotiated only over TLS (plain http stays HTTP/1.1), and
  ** only HTTP/2's refused streams need libcurl's verbose text; making that
  ** text costs about 4 % of a request's instructions.  PIPEWAIT: transfers
  ** started together wait for the first TLS handshake to tell whether the
  ** origin multiplexes, so an HTTP/2 API gets one connection carrying up to
  ** `concurrency` streams, not one handshake per transfer.  (Over plain http
  ** libcurl would learn that only from the first answer, so a slow first
  ** request would hold back the others.) */
  if (strncmp(pX->zUrl, "https:", 6) == 0) {
    CR_SETOPT(rc, pX, CURLOPT_PIPEWAIT, 1L, pzErr);
    CR_SETOPT(rc, pX, CURLOPT_DEBUGFUNCTION, cr_on_debug, pzErr);
    CR_SETOPT(rc, pX, CURLOPT_DEBUGDATA, pX, pzErr);
    CR_SETOPT(rc, pX, CURLOPT_VERBOSE, 1L, pzErr); /* to cr_on_debug(), not stderr */
  }
  /* The credential's ca_file, else the curl tool's CURL_CA_BUNDLE (which
  ** libcurl itself ignores), else the system's certificates. */
  if (pX->pCred->zCaFile) {
    CR_SETOPT(rc, pX, CURLOPT_CAINFO, pX->pCred->zCaFile, pzErr);
  } else if (getenv("CURL_CA_BUNDLE")) {
    CR_SETOPT(rc, pX, CURLOPT_CAINFO, getenv("CURL_CA_BUNDLE"), pzErr);
  }
  if (rc == SQLITE_OK) rc = cr_xfer_method(pX, pzErr);
  return rc;
}

/* Makes pX's easy handle, its origin checked first. */
static int cr_xfer_prepare(cr_http *p, cr_xfer *pX, char **pzErr) {
  int rc = cr_origin_check(pX->pCred->zApiBase, pX->zUrl, pzErr);
  pX->status = 0;
  pX->nPrereq = 0;
  pX->pHttp = p;
  pX->iConn = -1;
  pX->iStream = 0;
  pX->refused = 0;
  pX->zErrBuf[0] = 0;
  if (pX->maxResponse <= 0) pX->maxResponse = CR_DEFAULT_MAX_RESPONSE;
  if (rc == SQLITE_OK) {
    pX->pEasy = p->nIdle > 0 ? p->apIdle[--p->nIdle] : curl_easy_init();
    if (pX->pEasy == 0) {
      cr_set_error(pzErr, "libcurl cannot create a transfer");
      rc = SQLITE_ERROR;
    }
  }
  if (rc == SQLITE_OK && pX->pHeaderList == 0) {
    rc = cr_http_headers(pX->pDest, pX->pCred, pX->zBody != 0, &pX->pHeaders);
  }
  if (rc == SQLITE_OK) rc = cr_xfer_setup(p, pX, pzErr);
  return rc;
}

/* ------------------------------------------------------------------------
** Finishing a transfer
*/

/* The message for an answer whose headers libcurl refused to read, else
** NULL.  libcurl 7.88 reports a header line longer than
** CURL_MAX_HTTP_HEADER as CURLE_OUT_OF_MEMORY with no text (its buffer
** refuses to grow), and headers over its total limit as CURLE_RECV_ERROR
** "Too large response headers": neither is a lack of memory or a dropped
** connection, and a user needs to know which limit the server broke. */
static char *cr_header_overflow(cr_xfer *pX, CURLcode cc, const char *zDetail) {
  unsigned long nGot = 0, nMax = 0;
  long status = 0;
  curl_easy_getinfo(pX->pEasy, CURLINFO_RESPONSE_CODE, &status);
  if (cc == CURLE_OUT_OF_MEMORY && status > 0 && pX->nResponse == 0) {
    return sqlite3_mprintf("response header too large: after status %ld, a header line was "
                           "longer than libcurl's limit of %d bytes; the response was not read",
                           status, CURL_MAX_HTTP_HEADER);
  }
  if (cc == CURLE_RECV_ERROR &&
      sscanf(zDetail, "Too large response headers: %lu > %lu", &nGot, &nMax) == 2) {
    return sqlite3_mprintf("response headers too large: %lu bytes, more than libcurl's limit of "
                           "%lu; the response was not read",
                           nGot, nMax);
  }
  return 0;
}

/* A stream the server refused, or left unprocessed above its GOAWAY's last
** stream, provably did not arrive (RFC 9113, 6.8): it is retried like a
** refused connect. */
static void cr_xfer_refused(cr_xfer *pX) {
  pX->reachedServer = 0;
  pX->zError = pX->refused == CR_REFUSED_GOAWAY
                   ? sqlite3_mprintf("HTTP/2 stream refused: the server closed the connection "
                                     "(GOAWAY) after stream %u, before processing this "
                                     "request; it did not arrive",
                                     pX->iLastKept)
                   : sqlite3_mprintf("HTTP/2 stream refused by the server (REFUSED_STREAM); "
                                     "the request did not arrive");
}

/* Explains a libcurl failure by phase, and whether the request may have
** reached the server. */
static void cr_xfer_failed(cr_xfer *pX, CURLcode cc) {
  const char *zDetail = pX->zErrBuf[0] ? pX->zErrBuf : curl_easy_strerror(cc);
  long nConnect = 0;
  curl_easy_getinfo(pX->pEasy, CURLINFO_CONNECT_TIME_T, &nConnect);
  /* Never handed to a connection: it cannot have arrived. */
  pX->reachedServer = pX->nPrereq > 0;
  if (pX->zError) return; /* set by a callback, e.g. the body size cap */
  /* libcurl may also end a stream above a GOAWAY's last stream with
  ** CURLE_HTTP2 ("Error in the HTTP2 framing layer") instead of retrying
  ** it: the server still never processed it. */
  if (!pX->refused) cr_goaway_check(pX);
  if (pX->refused) {
    cr_xfer_refused(pX);
    return;
  }
  pX->zError = cr_header_overflow(pX, cc, zDetail);
  if (pX->zError) return;
  switch (cc) {
  case CURLE_COULDNT_RESOLVE_HOST:
    pX->zError = sqlite3_mprintf("DNS lookup failed: %s", zDetail);
    break;
  case CURLE_COULDNT_CONNECT:
    pX->zError = sqlite3_mprintf("connect failed: %s", zDetail);
    break;
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CACERT_BADFILE:
    pX->zError = sqlite3_mprintf("TLS handshake failed: %s", zDetail);
    break;
  case CURLE_OPERATION_TIMEDOUT:
    pX->zError = pX->reachedServer
                     ? sqlite3_mprintf("timed out after %lld ms waiting for the response "
                                       "(timeout_ms %d)",
                                       pX->durationMs, pX->pDest->timeoutMs)
                     : sqlite3_mprintf("connect timed out after %lld ms", pX->durationMs);
    break;
  case CURLE_ABORTED_BY_CALLBACK:
    pX->zError = sqlite3_mprintf("connection dropped before any response; libcurl's automatic "
                                 "re-send was stopped (the request may have arrived)");
    break;
  case CURLE_GOT_NOTHING:
  case CURLE_RECV_ERROR:
  case CURLE_SEND_ERROR:
  case CURLE_PARTIAL_FILE:
    pX->zError = sqlite3_mprintf("connection dropped: %s", zDetail);
    break;
  default:
    pX->zError = sqlite3_mprintf("transfer failed: %s", zDetail);
    break;
  }
}

/* ------------------------------------------------------------------------
** Driving libcurl (whichever thread is the driver)
*/

/* Records how a transfer ended and takes it out of libcurl. */
static void cr_xfer_done(cr_http *p, cr_xfer *pX, CURLcode cc) {
  long status = 0;
  pX->durationMs = cr_now_ms() - pX->tStart;
  curl_easy_getinfo(pX->pEasy, CURLINFO_RESPONSE_CODE, &status);
  curl_multi_remove_handle(p->pMulti, pX->pEasy);
  p->nActive--;
  pX->eStage = CR_XFER_DONE;
  if (cc == CURLE_OK || (cc == CURLE_WRITE_ERROR && pX->bodyCut)) {
    /* A body cut off at max_response_bytes still came with its status:
    ** the answer is known, only the body (dropped, not kept half) is not. */
    pX->status = (int)status;
    pX->reachedServer = 1;
    if (pX->bodyCut) {
      sqlite3_free(pX->zResponse);
      pX->zResponse = 0;
      pX->nResponse = 0;
    }
  } else {
    cr_xfer_failed(pX, cc);
  }
}

/* Lets libcurl move every transfer on and moves the finished ones to the
** done list.  Returns how many are still running. */
static int cr_http_pump(cr_http *p) {
  int nStill = 0, nMsg = 0;
  CURLMsg *pMsg;
  curl_multi_perform(p->pMulti, &nStill);
  while ((pMsg = curl_multi_info_read(p->pMulti, &nMsg)) != 0) {
    if (pMsg->msg == CURLMSG_DONE) {
      cr_xfer *pX = 0;
      CURLcode cc = pMsg->data.result;
      curl_easy_getinfo(pMsg->easy_handle, CURLINFO_PRIVATE, (char **)&pX);
      cr_xfer_done(p, pX, cc);
      cr_list_push(&p->done, pX);
    }
  }
  return nStill;
}

/* ------------------------------------------------------------------------
** Handing the multi handle between the caller and the worker
*/

/* Makes the caller's thread the driver until cr_caller_leave(), taking the
** multi handle back from the worker if it has it.  tUntil: when the call
** will be over at the latest (the worker does not take over before). */
static void cr_caller_enter(cr_http *p, sqlite3_int64 tUntil) {
  pthread_mutex_lock(&p->mutex);
  if (p->eDriver == CR_DRIVER_WORKER) {
    p->callerWants = 1;
    curl_multi_wakeup(p->pMulti);
    while (p->eDriver == CR_DRIVER_WORKER)
      pthread_cond_wait(&p->callerCond, &p->mutex);
    p->callerWants = 0;
  }
  p->eDriver = CR_DRIVER_CALLER;
  p->callerBusy = 1;
  p->tBusyUntil = tUntil;
  pthread_mutex_unlock(&p->mutex);
}

/* The caller stays the driver but stops driving: if it does not call in
** again within CR_TAKEOVER_MS, the worker takes over. */
static void cr_caller_leave(cr_http *p) {
  pthread_mutex_lock(&p->mutex);
  if (p->workerIdle && p->nActive > 0) {
    /* It slept with nothing to watch (nothing ran, or it just handed the
    ** multi handle back): it must time the caller's absence again. */
    pthread_cond_signal(&p->workerCond);
  }
  p->anyActive = p->nActive > 0;
  p->callerBusy = 0;
  p->tCallerLeft = cr_now_ms();
  pthread_mutex_unlock(&p->mutex);
}

/* Whether the worker should drive now: 0 to take over, else how long to
** sleep before looking again (-1: until signalled).  Under the mutex. */
static sqlite3_int64 cr_worker_turn(cr_http *p) {
  sqlite3_int64 t;
  if (p->eDriver != CR_DRIVER_CALLER || !p->anyActive) return -1;
  t = (p->callerBusy ? p->tBusyUntil : p->tCallerLeft) + CR_TAKEOVER_MS - cr_now_ms();
  if (p->callerBusy && t < CR_TAKEOVER_MS) t = CR_TAKEOVER_MS;
  return t > 0 ? t : 0;
}

static void cr_cond_wait_ms(pthread_cond_t *pCond, pthread_mutex_t *pMutex, sqlite3_int64 ms) {
  struct timespec ts;
  if (ms < 0) {
    pthread_cond_wait(pCond, pMutex);
    return;
  }
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += ms / 1000;
  ts.tv_nsec += (long)(ms % 1000) * 1000000;
  if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
  pthread_cond_timedwait(pCond, pMutex, &ts);
}

/* True once the worker must hand the multi handle back. */
static int cr_worker_must_yield(cr_http *p) {
  int yield;
  pthread_mutex_lock(&p->mutex);
  yield = p->callerWants || p->stop;
  pthread_mutex_unlock(&p->mutex);
  return yield;
}

/* Drives until nothing runs or the caller wants the multi handle back. */
static void cr_worker_drive(cr_http *p) {
  while (cr_http_pump(p) > 0 && !cr_worker_must_yield(p)) {
    curl_multi_poll(p->pMulti, 0, 0, 1000, 0);
  }
}

/* Signals are the caller's (Ctrl-C must reach the shell's handler), so the
** worker blocks them all. */
static void *cr_worker_main(void *pArg) {
  cr_http *p = (cr_http *)pArg;
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, 0);
  pthread_mutex_lock(&p->mutex);
  while (!p->stop) {
    sqlite3_int64 ms = cr_worker_turn(p);
    if (ms == 0) {
      p->eDriver = CR_DRIVER_WORKER;
      pthread_mutex_unlock(&p->mutex);
      cr_worker_drive(p);
      pthread_mutex_lock(&p->mutex);
      p->eDriver = CR_DRIVER_NONE;
      p->anyActive = p->nActive > 0;
      pthread_cond_signal(&p->callerCond);
    } else {
      p->workerIdle = ms < 0;
      cr_cond_wait_ms(&p->workerCond, &p->mutex, ms);
      p->workerIdle = 0;
    }
  }
  pthread_mutex_unlock(&p->mutex);
  return 0;
}

static int cr_worker_start(cr_http *p, char **pzErr) {
  if (pthread_create(&p->worker, 0, cr_worker_main, p) != 0) {
    cr_set_error(pzErr, "cannot start the transfer thread");
    return SQLITE_ERROR;
  }
  p->hasWorker = 1;
  return SQLITE_OK;
}

/* ------------------------------------------------------------------------
** The caller's side
*/

int cr_http_start(cr_http *p, cr_xfer *pX, char **pzErr) {
  int rc = cr_xfer_prepare(p, pX, pzErr);
  if (rc == SQLITE_OK && !p->hasWorker) rc = cr_worker_start(p, pzErr);
  if (rc == SQLITE_OK) {
    pX->tStart = cr_now_ms();
    cr_caller_enter(p, pX->tStart);
    if (curl_multi_add_handle(p->pMulti, pX->pEasy) == CURLM_OK) {
      pX->eStage = CR_XFER_RUNNING;
      p->nActive++;
      p->nRunning++;
    } else {
      cr_set_error(pzErr, "libcurl cannot start the transfer");
      rc = SQLITE_ERROR;
    }
    cr_caller_leave(p);
  }
  return rc;
}

int cr_http_wait(cr_http *p, int msWait, cr_xfer **ppDone, char **pzErr) {
  sqlite3_int64 tEnd = cr_now_ms() + msWait;
  (void)pzErr;
  cr_caller_enter(p, tEnd);
  *ppDone = cr_list_pop(&p->done);
  while (*ppDone == 0 && p->nActive > 0) {
    int ms;
    cr_http_pump(p);
    *ppDone = cr_list_pop(&p->done);
    ms = (int)(tEnd - cr_now_ms());
    if (*ppDone || ms <= 0) break;
    curl_multi_poll(p->pMulti, 0, 0, ms, 0);
  }
  if (*ppDone) p->nRunning--;
  cr_caller_leave(p);
  return SQLITE_OK;
}

int cr_http_abort(cr_http *p, cr_xfer *pX) {
  cr_caller_enter(p, cr_now_ms());
  if (pX->eStage == CR_XFER_RUNNING) {
    curl_multi_remove_handle(p->pMulti, pX->pEasy);
    p->nActive--;
    pX->eStage = CR_XFER_DONE;
    pX->durationMs = cr_now_ms() - pX->tStart;
    pX->reachedServer = pX->nPrereq > 0;
    pX->cancelled = 1;
    if (pX->zError == 0) {
      pX->zError = pX->reachedServer ? sqlite3_mprintf("interrupted before the response arrived")
                                     : sqlite3_mprintf("interrupted before it was sent");
    }
  } else {
    cr_list_remove(&p->done, pX); /* finished meanwhile: its answer stands */
  }
  p->nRunning--;
  cr_caller_leave(p);
  return pX->cancelled;
}

int cr_http_perform(cr_http *p, sqlite3 *db, cr_xfer *pX, char **pzErr) {
  cr_xfer *pDone = 0;
  int rc = cr_http_start(p, pX, pzErr);
  while (rc == SQLITE_OK && pDone == 0) {
    rc = cr_http_wait(p, 100, &pDone, pzErr);
    if (rc == SQLITE_OK && pDone == 0 && cr_check_interrupt(db) == SQLITE_INTERRUPT) {
      (void)cr_http_abort(p, pX);
      cr_set_error(pzErr, "interrupted");
      rc = SQLITE_INTERRUPT;
    }
  }
  return rc;
}

/* ------------------------------------------------------------------------
** Error text of an answer
*/
char *cr_response_error(sqlite3 *db, int status, const char *zBody) {
  static const char zSql[] =
      "SELECT CASE"
      " WHEN NOT json_valid(?1) THEN NULL"
      " WHEN json_type(?1,'$.error')='text' THEN json_extract(?1,'$.error')"
      " WHEN json_type(?1,'$.errors')='array' THEN"
      "  (SELECT group_concat(CASE WHEN type='text' THEN value ELSE json_quote(value) END, '; ')"
      "   FROM json_each(?1,'$.errors'))"
      " WHEN json_type(?1,'$.errors')='object' THEN"
      "  (SELECT group_concat(e.key || ' ' || v.value, '; ')"
      "   FROM json_each(?1,'$.errors') e,"
      "        json_each(CASE WHEN e.type='array' THEN e.value ELSE json_array(e.value) END) v)"
      " END";
  sqlite3_stmt *pStmt = 0;
  char *zMsg = 0;
  if (zBody && zBody[0] && sqlite3_prepare_v2(db, zSql, -1, &pStmt, 0) == SQLITE_OK) {
    sqlite3_bind_text(pStmt, 1, zBody, -1, SQLITE_STATIC);
    if (sqlite3_step(pStmt) == SQLITE_ROW && sqlite3_column_type(pStmt, 0) != SQLITE_NULL) {
      zMsg = sqlite3_mprintf("HTTP %d: %s", status, sqlite3_column_text(pStmt, 0));
    }
  }
  sqlite3_finalize(pStmt);
  if (zMsg == 0) {
    zMsg = (zBody && zBody[0]) ? sqlite3_mprintf("HTTP %d: %.200s", status, zBody)
                               : sqlite3_mprintf("HTTP %d with an empty body", status);
  }
  return zMsg;
}
