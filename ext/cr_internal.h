/*
** cr_internal.h - the contracts between the extension's modules.
**
** Data flows one way:
**
**   query --(cr_record.c)--> records --(cr_request.c)--> requests
**         --(cr_http.c)--> responses --(cr_store.c)--> audit tables
**
** cr_config.c turns a destination's JSON config into a cr_dest, cr_cred.c
** resolves credentials, and callrail.c, cr_preview.c, cr_send.c and
** cr_accounts.c are the SQL surface built on top of them.
**
** Error idiom used everywhere: a function returns an SQLite result code and,
** on failure, leaves a message from sqlite3_mprintf() in *pzErr (which the
** caller frees with sqlite3_free()).  Nothing returns an error without text.
*/
#ifndef CR_INTERNAL_H
#define CR_INTERNAL_H

#include "sqlite3ext.h"
#include <curl/curl.h>

#define CR_VERSION "0.2.0"
#define CR_USER_AGENT "callrail-sqlite/" CR_VERSION

/* Response bodies larger than this are cut off with an error (the
** destination's max_response_bytes). */
#define CR_DEFAULT_MAX_RESPONSE (8 * 1024 * 1024)

/* A request's URL and body may not be longer: the record is invalid. */
#define CR_MAX_URL 8192
#define CR_MAX_BODY (16 * 1024 * 1024)

/* The default origin of every credential that names none. */
#define CR_DEFAULT_API_BASE "https://api.callrail.com"

/* Replace *pzErr by a new formatted message (freeing any older one). */
void cr_set_error(char **pzErr, const char *zFmt, ...);

/* sqlite3_mprintf()-style duplicate; NULL in gives NULL out. */
char *cr_strdup(const char *z);

/* Milliseconds since an arbitrary fixed point (monotonic clock). */
sqlite3_int64 cr_now_ms(void);

/* Unix time in milliseconds (wall clock), for audit timestamps. */
sqlite3_int64 cr_wall_ms(void);

/* Writes wall time wallMs as an ISO 8601 UTC time (to the second) into
** zBuf of nBuf bytes (at least 21). */
void cr_format_utc(sqlite3_int64 wallMs, char *zBuf, size_t nBuf);

/* The text of an SQL argument, or NULL with an error naming zWhat when it
** is NULL or a BLOB. */
const char *cr_arg_text(sqlite3_value *pVal, const char *zWhat, char **pzErr);

/* False if the JSON text z has a member name that is not a string, which
** SQLite 3.40 wrongly accepts and then mishandles (see cr_util.c). */
int cr_json_names_are_strings(const char *z);

/* True if attribute name z can be a JSON path label ($."z"): SQLite's
** path syntax has no escapes, so no double quote, backslash or control
** character. */
int cr_name_is_plain(const char *z);

/* Runs a statement of SQL with no result rows on db; SQLITE_OK or error. */
int cr_exec(sqlite3 *db, const char *zSql, char **pzErr);

/* How long a write of the configuration functions waits for another
** connection's write lock (a run commits often, and briefly). */
#define CR_WRITE_WAIT_MS 10000

/* Steps pStmt, a write on the user's connection db; while another
** connection holds the write lock (SQLITE_BUSY) it tries again for up to
** CR_WRITE_WAIT_MS, unless the user interrupts: the user's connection may
** have no busy timeout.  Returns sqlite3_step()'s result. */
int cr_step_waiting(sqlite3 *db, sqlite3_stmt *pStmt);

/* Returns SQLITE_INTERRUPT once sqlite3_interrupt() was called on db (works
** on SQLite 3.40, which lacks sqlite3_is_interrupted()), else SQLITE_OK. */
int cr_check_interrupt(sqlite3 *db);

/* ------------------------------------------------------------------------
** Destination config (cr_config.c)
*/

#define CR_METHOD_POST 0
#define CR_METHOD_PUT 1
#define CR_METHOD_PATCH 2
#define CR_METHOD_DELETE 3
#define CR_METHOD_GET 4 /* only callrail_accounts reads */

/* The most requests a destination may keep in flight. */
#define CR_MAX_CONCURRENCY 64
extern const char *const cr_method_names[5]; /* CR_METHOD_*; a config names the first 4 */

#define CR_GROUP_COUNT 0
#define CR_GROUP_ATTRIBUTE 1
#define CR_GROUP_BYTES 2

/* `sync`: which keyed records a send sends. */
#define CR_SYNC_CHANGED 0 /* never delivered, or delivered with another request */
#define CR_SYNC_NEW 1     /* never delivered only */
#define CR_SYNC_UPSERT 2  /* never delivered to `url`, changed ones to `update.url` */

/* One piece of a URL template: literal text, or a {placeholder}. */
typedef struct cr_url_part {
  char *zText; /* literal text, or the placeholder's attribute name */
  int isPlaceholder;
  int recordOnly; /* {record.name}: never taken from params */
} cr_url_part;

typedef struct cr_dest {
  char *zName;       /* destination name */
  char *zCredential; /* credential name */
  int eMethod;       /* CR_METHOD_* */
  char *zUrl;        /* URL template as configured */
  int nUrlPart;
  cr_url_part *aUrlPart; /* the template, parsed */
  char *zParams;         /* JSON object text of constant placeholder values */
  int nHeader;
  char **azHeader; /* extra headers, each "Name: value" */
  int nExclude;
  char **azExclude; /* attributes left out of the body */
  int batchSize;    /* 0: batching off; else 1..1000 */
  int eGrouping;    /* CR_GROUP_* */
  int nGroupAttr;
  char **azGroupAttr;     /* batch.attributes */
  sqlite3_int64 maxBytes; /* batch.max_bytes, 0 when not set */
  char *zWrap;            /* batch.wrap or NULL */
  char *zKey;             /* key attribute or NULL */
  int concurrency;        /* 1..64 */
  int timeoutMs;
  int connectTimeoutMs;
  int maxAttempts;
  int baseDelayMs;
  int maxDelayMs;
  int retryPost;
  sqlite3_int64 perHour; /* rate_limit.*; -1 means "CallRail's default" */
  sqlite3_int64 perDay;
  sqlite3_int64 perSecond; /* -1: none */
  int onQuotaStop;         /* 0: wait, 1: stop */
  int captureResponses;
  int maxResponseBytes; /* larger response bodies are cut off, failing */
  int progress;         /* -1 auto, 0 off, 1 on */
  int eSync;            /* `sync`: CR_SYNC_*; default NEW for POST, CHANGED otherwise */
  int eUpdateMethod;    /* `update.method`: CR_METHOD_PUT (default) or CR_METHOD_PATCH */
  char *zUpdateUrl;     /* `update.url` template (sync "upsert" only), or NULL */
  int nUpdateUrlPart;
  cr_url_part *aUpdateUrlPart; /* `update.url`, parsed like url; has {remote_id} */
  char *zIdPath;               /* `id_path`: JSON path of the remote id, default "$.id" */
  int onBusyError;             /* `on_busy`: 0 "wait" (default), 1 "error" */
  sqlite3_int64 leaseMs;       /* `lease_ms`: a run silent this long is dead; default 60000 */
  int nJson;
  char **azJson; /* `json`: attributes whose TEXT value is parsed as JSON */
} cr_dest;

/* Parses and validates zConfig for destination zName.  Every key of SPEC
** section 4 is checked for type, range and allowed values; the first
** problem becomes an error naming the destination and the key.  db is used
** only to run SQLite's JSON functions. */
int cr_dest_parse(sqlite3 *db, const char *zName, const char *zConfig, cr_dest **ppDest,
                  char **pzErr);
void cr_dest_free(cr_dest *p);
/* Sets every field of *pDest to its default (README "Destination config"),
** names and lists empty. */
void cr_dest_defaults(cr_dest *pDest);

/* Loads destination zName from callrail_destinations and parses it;
** *pActive receives its active flag (pActive may be NULL). */
int cr_dest_load(sqlite3 *db, const char *zName, cr_dest **ppDest, int *pActive, char **pzErr);

/* ------------------------------------------------------------------------
** Credentials (cr_cred.c)
*/

typedef struct cr_cred {
  char *zName;
  char *zApiBase; /* scheme://host[:port], no trailing slash */
  char *zCaFile;  /* CA bundle to verify it with, or NULL */
  int isLoopback; /* api_base is a loopback address (http allowed) */
  char *zToken;   /* the secret; wiped by cr_cred_free() */
} cr_cred;

/* The rules of a destination that depend on its credential, which may be
** re-pointed after the destination was saved (cr_config.c): absolute `url`
** and `update.url` have the credential's origin, and no `batch` against
** CallRail's own api_base.  Call it when a destination is defined and
** whenever a run or preview loads it; the error names the destination. */
int cr_dest_check_cred(const cr_dest *pDest, const cr_cred *pCred, char **pzErr);

typedef struct cr_conn cr_conn;

/* Loads credential zName and resolves its token (env, file or memory),
** only if the row is what this connection registered or goes to CallRail's
** own api_base (see cr_cred.c); otherwise an error says how to confirm it. */
int cr_cred_load(sqlite3 *db, cr_conn *pConn, const char *zName, cr_cred **ppCred, char **pzErr);
/* Loads only name and api_base, no secret (for previews). */
int cr_cred_load_public(sqlite3 *db, const char *zName, cr_cred **ppCred, char **pzErr);
void cr_cred_free(cr_cred *p);
/* Refuses a key that is too long or could forge headers (quote, CR, LF),
** with an error that does not show it. */
int cr_token_check(const char *zCred, const char *zToken, char **pzErr);

/* Validates an api_base (https, or http on loopback; no path, query or
** user info) and returns it normalised as scheme://host[:port]. */
int cr_api_base_normalize(const char *zCred, const char *zBase, char **pzOut, char **pzErr);

/* Checks that the absolute URL zUrl has the origin (scheme, host, port)
** of zApiBase.  SQLITE_OK if it does, else an error naming both origins. */
int cr_origin_check(const char *zApiBase, const char *zUrl, char **pzErr);

/* True if the URL's host is a loopback address (127.0.0.0/8, localhost, ::1). */
int cr_url_is_loopback(const char *zUrl);

/* ------------------------------------------------------------------------
** Per-connection state (callrail.c)
*/
typedef struct cr_credreg cr_credreg;
typedef struct cr_http cr_http;
struct cr_conn {
  sqlite3 *db;
  int nRef;           /* functions and modules holding this state */
  cr_credreg *pCreds; /* credentials registered on this connection */
  cr_http *pHttp;     /* libcurl multi handle, created on first use */
  int nRuns;          /* runs open on this connection (never nested) */
  int schemaReady;
};

/* Creates the extension's tables, or upgrades them from an older schema,
** and refuses a file whose callrail_* names are not our tables
** (cr_schema.c). */
int cr_schema_ensure(cr_conn *pConn, char **pzErr);

/* Credentials registered on this connection (cr_cred.c): what the user
** named in their own process, the only rows besides CallRail's own origin
** whose key cr_cred_load() resolves.  zApiBase is normalised; zToken is
** the key of a 'memory' source (else NULL), kept here until the
** connection closes.  SQLITE_OK or SQLITE_NOMEM. */
int cr_cred_register(cr_conn *pConn, const char *zName, const char *zSource, const char *zApiBase,
                     const char *zCaFile, const char *zToken);
void cr_cred_forget_all(cr_conn *pConn);

/* ------------------------------------------------------------------------
** Request identity (cr_identity.c): method, normalised URL, canonical body.
*/
typedef struct cr_identity cr_identity;
/* The URL with scheme and host in lower case and the default port dropped. */
char *cr_url_normalize(const char *zUrl);
int cr_identity_open(sqlite3 *db, cr_identity **pp, char **pzErr);
void cr_identity_close(cr_identity *p);
/* The identity of a request as 16 hex digits (zBody NULL: no body), or
** NULL when out of memory. */
char *cr_identity_hash(cr_identity *p, const char *zMethod, const char *zUrl, const char *zBody);
/* Recomputes the identity of every delivered key from the request that
** delivered it (an upgrade from schema 1). */
int cr_identity_rehash_delivered(sqlite3 *db, char **pzErr);
/* Records every key of response iResponseId as delivered by it, with its
** identity recomputed from the stored request (callrail_resolve); a key
** delivered later by another request keeps that delivery. */
int cr_identity_deliver(sqlite3 *db, sqlite3_int64 iResponseId, const char *zRemoteId,
                        char **pzErr);

/* ------------------------------------------------------------------------
** Key sets (cr_keyset.c): sets of text keys kept in a temporary database.
*/
typedef struct cr_keyset cr_keyset;
int cr_keyset_open(cr_keyset **pp, char **pzErr);
void cr_keyset_close(cr_keyset *p);
/* Adds zKey; *pNew says whether it was not there yet. */
int cr_keyset_add(cr_keyset *p, const char *zKey, int *pNew, char **pzErr);
int cr_keyset_has(cr_keyset *p, const char *zKey);

/* ------------------------------------------------------------------------
** Records (cr_record.c): runs the user's query and turns each result row
** into a record: a JSON object, its body, its URL and its key.
*/

typedef struct cr_record {
  sqlite3_int64 iRow; /* 1-based position in the query result */
  char *zJson;        /* the whole record as a JSON object */
  char *zBody;        /* the record minus `exclude`, as a JSON object */
  char *zUrl;         /* the expanded URL (absolute) */
  char *zKey;         /* text of the key attribute, or NULL */
  char *zKeyJson;     /* the key as a JSON string, or NULL */
  char *zGroup;       /* batch.attributes values as a JSON array, or NULL */
  char *zError;       /* non-NULL: the record is invalid, and why */
  char *zHash;        /* its request identity (keyed records), once computed */
} cr_record;

typedef struct cr_records cr_records;

/* Checks zQuery (one read-only SELECT/WITH statement or a bare table name)
** and prepares it on db.  zApiBase resolves path URLs. */
int cr_records_open(sqlite3 *db, const cr_dest *pDest, const char *zApiBase, const char *zQuery,
                    cr_records **pp, char **pzErr);
/* Builds a record from a JSON object text instead of a query. */
int cr_records_open_json(sqlite3 *db, const cr_dest *pDest, const char *zApiBase, const char *zJson,
                         cr_records **pp, char **pzErr);
/* SQLITE_ROW with *pRec filled (owned by pRec, release with cr_record_clear),
** SQLITE_DONE at the end, or an error. */
int cr_records_next(cr_records *p, cr_record *pRec, char **pzErr);
void cr_records_close(cr_records *p);
/* How many rows zQuery returns (one extra pass, for the progress line). */
int cr_query_count(sqlite3 *db, const char *zQuery, sqlite3_int64 *pnRows, char **pzErr);
void cr_record_clear(cr_record *pRec);

/* The update URL of a record for sync "upsert": pDest->aUpdateUrlPart expanded like `url`
** (attributes, params), with {remote_id} replaced, percent-encoded, by zRemoteId.
** *pzUrl receives the absolute URL, or NULL with *pzWhy (sqlite3_malloc'ed) saying why the
** record is invalid (e.g. a missing placeholder value). rc is an error only for OOM. */
int cr_record_update_url(sqlite3 *db, const cr_dest *pDest, const char *zApiBase,
                         const char *zRecordJson, const char *zRemoteId, char **pzUrl,
                         char **pzWhy);

/* ------------------------------------------------------------------------
** Requests (cr_request.c): groups records into requests.
*/

typedef struct cr_request {
  sqlite3_int64 iBatch; /* 1, 2, ...; 0 for an invalid record */
  int nRecords;
  int eMethod;
  char *zUrl;
  char *zBody;         /* NULL for DELETE */
  char *zRecordKeys;   /* JSON array of record keys, or NULL */
  char *zRecordHashes; /* JSON array of each keyed record's request hash */
  char *zError;        /* invalid record: why */
  char *zRecordKey;    /* the key of a one-record request, or NULL */
  char *zRecordHash;   /* ... and its identity, if it is keyed and valid */
  int isChanged;       /* sync "new": a delivered record that changed; not sent */
  sqlite3_int64 iFirstRow;
} cr_request;

typedef struct cr_batcher cr_batcher;
int cr_batcher_new(sqlite3 *db, const cr_dest *pDest, cr_batcher **pp, char **pzErr);
/* Adds a record (taking ownership of its contents).  When a request is
** complete, *ppReq receives it (else NULL). */
int cr_batcher_add(cr_batcher *p, cr_record *pRec, cr_request **ppReq, char **pzErr);
/* At the end of the records: the last pending request, if any. */
int cr_batcher_flush(cr_batcher *p, cr_request **ppReq, char **pzErr);
void cr_batcher_free(cr_batcher *p);
/* The batcher's request identities (NULL without `key`). */
cr_identity *cr_batcher_identity(cr_batcher *p);
void cr_request_free(cr_request *p);
/* Splits a batch request in two halves (for isolating rejected records). */
int cr_request_split(sqlite3 *db, const cr_dest *pDest, const cr_request *pReq,
                     cr_request *aHalf[2], char **pzErr);

/* The pipeline: the query's records grouped into requests, exactly as a
** send makes them.  zJson instead of zQuery gives one record. */
typedef struct cr_pipeline cr_pipeline;
int cr_pipeline_open(sqlite3 *db, const cr_dest *pDest, const char *zApiBase, const char *zQuery,
                     const char *zJson, cr_pipeline **pp, char **pzErr);
/* Turns on change detection (needs `key`): records already delivered with
** the same request, or whose last request is unresolved, are skipped. */
int cr_pipeline_detect_changes(cr_pipeline *p, sqlite3 *db, char **pzErr);
sqlite3_int64 cr_pipeline_skipped(cr_pipeline *p);
/* Delivered records that changed but sync "new" does not send again. */
sqlite3_int64 cr_pipeline_changed(cr_pipeline *p);
/* *ppReq receives the next request, or NULL at the end. */
int cr_pipeline_next(cr_pipeline *p, cr_request **ppReq, char **pzErr);
sqlite3_int64 cr_pipeline_records(cr_pipeline *p);
void cr_pipeline_close(cr_pipeline *p);

/* The headers of a request of pDest (with or without a body) as a JSON
** object; the key is shown as "***". */
char *cr_headers_json(sqlite3 *db, const cr_dest *pDest, int hasBody);

/* ------------------------------------------------------------------------
** Transport (cr_http.c): libcurl multi handle, one per connection.
*/

typedef struct cr_xfer {
  /* inputs */
  int eMethod;
  const char *zUrl;
  const char *zBody;              /* NULL: no body */
  const cr_dest *pDest;           /* headers and timeouts */
  const cr_cred *pCred;           /* token and api_base */
  sqlite3_int64 maxResponse;      /* body cap in bytes */
  struct curl_slist *pHeaderList; /* from cr_http_headers(), or NULL: made here */
  /* outputs */
  int status;      /* HTTP status, 0 when none arrived */
  char *zResponse; /* body as received (NUL-terminated), or NULL */
  sqlite3_int64 nResponse;
  char *zError;      /* transport error, or NULL */
  int reachedServer; /* 0: provably never sent (may be retried) */
  sqlite3_int64 durationMs;
  char *zRetryAfter; /* Retry-After header value, or NULL */
  char *zLocation;   /* Location header value, or NULL */
  int cancelled;     /* cut off by cr_http_abort() */
  int bodyCut;       /* the body exceeded maxResponse (zError says so) */
  /* private */
  int eStage;             /* CR_XFER_*: where the transfer is */
  struct cr_xfer *pNextQ; /* in the transport's done list */
  CURL *pEasy;
  struct curl_slist *pHeaders;
  char zErrBuf[CURL_ERROR_SIZE];
  int nPrereq;
  sqlite3_int64 tStart;
  cr_http *pHttp;     /* the transport running it */
  long iConn;         /* libcurl's number of the attempt's connection, -1 */
  unsigned iStream;   /* the attempt's HTTP/2 stream, 0 if none */
  unsigned iLastKept; /* refused: the last stream the server kept */
  int refused;        /* the server provably did not process the attempt */
} cr_xfer;

#define CR_REFUSED_STREAM 1 /* libcurl saw the stream refused (REFUSED_STREAM) */
#define CR_REFUSED_GOAWAY 2 /* above the last stream of the server's GOAWAY */

#define CR_XFER_RUNNING 1 /* in libcurl */
#define CR_XFER_DONE 2    /* finished, back or on its way to the caller */

int cr_http_new(cr_http **pp, char **pzErr);
/* The header lines (key included) of every request to pDest with or
** without a body, for cr_xfer.pHeaderList; freed by cr_http_headers_free,
** which wipes the key. */
int cr_http_headers(const cr_dest *pDest, const cr_cred *pCred, int hasBody,
                    struct curl_slist **ppList);
void cr_http_headers_free(struct curl_slist *pList);
void cr_http_free(cr_http *p);
/* Starts a transfer; it runs while cr_http_wait() is called, and on the
** transport's worker thread while the caller is away. */
int cr_http_start(cr_http *p, cr_xfer *pX, char **pzErr);
/* Drives transfers for at most msWait ms; *ppDone receives a finished
** transfer or NULL.  A finished transfer is detached from libcurl. */
int cr_http_wait(cr_http *p, int msWait, cr_xfer **ppDone, char **pzErr);
/* Takes back a transfer not yet handed back by cr_http_wait(): cuts it off
** if it is still running (returns 1, with zError saying so), or returns 0
** when it finished meanwhile, its outcome intact. */
int cr_http_abort(cr_http *p, cr_xfer *pX);
void cr_xfer_clear(cr_xfer *pX);

/* Runs one transfer to completion, polling db for interrupts. */
int cr_http_perform(cr_http *p, sqlite3 *db, cr_xfer *pX, char **pzErr);

/* The message CallRail gave for an error response (its "error" string, its
** "errors" array or object, or the raw body, truncated). */
char *cr_response_error(sqlite3 *db, int status, const char *zBody);

/* ------------------------------------------------------------------------
** Quota (cr_quota.c)
*/

/* The CallRail rate-limit account and class of a request: zBucket is
** "origin/v3/a/ACCOUNT" (NULL when the URL names no account), zClass one
** of "general", "sms" (POST text-messages.json) or "calls" (POST
** calls.json). */
typedef struct cr_quota_key {
  char *zBucket;
  const char *zClass;
} cr_quota_key;
void cr_quota_key_of(int eMethod, const char *zUrl, cr_quota_key *pKey);
void cr_quota_key_clear(cr_quota_key *pKey);

/* The pacer keeps a run within CallRail's rate limits (and the
** destination's rate_limit), counting usage recorded by any run. */
typedef struct cr_pacer cr_pacer;
typedef struct cr_store cr_store;
int cr_pacer_new(const cr_dest *pDest, cr_pacer **pp);
void cr_pacer_free(cr_pacer *p);
/* *pmsWait receives 0 when a request to zUrl may start now (it is then
** counted, at *ptAdmitted), else how many ms to wait before asking again. */
int cr_pacer_admit(cr_pacer *p, cr_store *pStore, int eMethod, const char *zUrl,
                   sqlite3_int64 *pmsWait, sqlite3_int64 *ptAdmitted, char **pzErr);
/* Counts an admitted request at the moment its answer arrived instead:
** the server counted it at some moment in between, and network and server
** delays vary, so only the later moment is safe to slide windows from. */
void cr_pacer_restamp(cr_pacer *p, int eMethod, const char *zUrl, sqlite3_int64 tAdmitted);
/* Counts the requests other runs (of any process) recorded since the last
** call.  Call it while holding the store's write lock (cr_store_lock),
** before admitting the requests whose pending rows that lock will cover. */
int cr_pacer_sync(cr_pacer *p, cr_store *pStore, sqlite3_int64 iRunSelf, char **pzErr);
/* Which account, limit and window the last wait was for, and when it frees. */
const char *cr_pacer_wait_reason(cr_pacer *p);

/* ------------------------------------------------------------------------
** The sending engine (cr_run.c)
*/

/* A finished request (or invalid record): one result row. */
typedef struct cr_outcome cr_outcome;
struct cr_outcome {
  cr_request *pReq;
  sqlite3_int64 iResponseId; /* its row in callrail_responses */
  int status;                /* HTTP status, 0 if none */
  const char *zState;        /* ok, failed, unknown, invalid */
  char *zError;
  char *zBody;     /* response body (unless capture_responses is off) */
  char *zRemoteId; /* the id CallRail gave (id_path of the body), or NULL */
  int nAttempts;
  sqlite3_int64 durationMs;
  cr_outcome *pNext;
};
void cr_outcome_free(cr_outcome *p);

typedef struct cr_run cr_run;
/* Opens a run of kind "send" (zQuery; the destination must be active) or
** "test" (zJson, one record; active or not). */
int cr_run_open(cr_conn *pConn, const char *zDest, const char *zKind, const char *zQuery,
                const char *zJson, cr_run **ppRun, char **pzErr);
/* *ppOut receives the next outcome (the caller frees it), or NULL when the
** run is over.  SQLITE_INTERRUPT once the connection was interrupted. */
int cr_run_step(cr_run *pRun, cr_outcome **ppOut, char **pzErr);
/* Ends the run: what is in flight is finished and recorded first. */
void cr_run_close(cr_run *pRun);

/* The retry policy's delays, shared by sends and reads (callrail_get):
** Retry-After (seconds or an HTTP date) as ms from now, -1 if unusable;
** and full jitter, a random delay up to base * 2^(attempt-1), capped at
** the destination's max_delay_ms. */
sqlite3_int64 cr_retry_after_ms(const char *z);
sqlite3_int64 cr_backoff_ms(const cr_dest *d, int nAttempts);

/* ------------------------------------------------------------------------
** Liveness of runs (cr_live.c)
*/
int cr_live_runs_add(sqlite3_int64 iRun);
void cr_live_runs_remove(sqlite3_int64 iRun);
const char *cr_host_name(void);
/* The start time of process pid (clock ticks after boot), or -1. */
sqlite3_int64 cr_process_start(sqlite3_int64 pid);
/* A live run renews its heartbeat at least this often. */
#define CR_HEARTBEAT_MS 2000
/* Who ran a run, as its callrail_runs row says. */
typedef struct cr_run_owner {
  sqlite3_int64 iRun;
  const char *zHost;
  sqlite3_int64 pid;
  sqlite3_int64 pidStart;    /* -1 where the platform cannot tell */
  sqlite3_int64 heartbeatMs; /* wall ms of its last heartbeat, 0 if none */
} cr_run_owner;
/* Whether that run is still alive at wall time tNowMs (see cr_live.c). */
int cr_run_is_alive(const cr_run_owner *pOwner, sqlite3_int64 tNowMs, sqlite3_int64 leaseMs);

/* ------------------------------------------------------------------------
** Audit store (cr_store.c)
*/

typedef struct cr_run_counts {
  sqlite3_int64 records, requests, ok, failed, unknown, skipped, invalid, changed;
} cr_run_counts;

/* Opens the audit store for db: a second connection to the same file in
** WAL mode (so rows commit while the user's statement reads), or db itself
** for in-memory databases and inside an explicit transaction. */
int cr_store_open(sqlite3 *db, cr_store **pp, char **pzErr);
void cr_store_close(cr_store *p);
/* The connection the store writes with (reads of the audit tables that
** must see other runs' latest commits go through it too). */
sqlite3 *cr_store_db(cr_store *p);
/* Takes the file's write lock for writes that must be durable before
** anything is sent (a no-op on the user's connection); it is held until
** the next cr_store_flush().  Other writes open a transaction that commits
** without waiting for the disk (see cr_store_begin). */
int cr_store_lock(cr_store *p, char **pzErr);
/* Starts a run of zDest in one write transaction: recovers the dead runs
** of zDest (*pnRecovered: pending rows made unknown) and, unless another
** send of zDest is alive (a send only; *pzLive then describes that run and
** no run is started), writes the new run's row: *piRun. */
int cr_store_claim(cr_store *p, const char *zDest, const char *zKind, sqlite3_int64 leaseMs,
                   sqlite3_int64 *piRun, char **pzLive, sqlite3_int64 *pnRecovered, char **pzErr);
/* Marks the unknown rows of zDest whose keys were all delivered later as
** resolved by that delivery (cr_sql_settle), so that they no longer hold
** their keys back at the start of the next run. */
int cr_store_settle(cr_store *p, const char *zDest, char **pzErr);
/* Renews the run's heartbeat; zNote (if not NULL) becomes its error text,
** which tells a user outside a terminal what a running run waits for.
** *pLost: the run's row is no longer `running` (another run recovered it),
** so nothing was renewed.  Does not commit. */
int cr_store_heartbeat(cr_store *p, sqlite3_int64 iRun, const char *zNote, int *pLost,
                       char **pzErr);
/* *pLost: the run's row is no longer `running`.  Read in a refill's
** transaction, under the write lock, before its requests leave. */
int cr_store_owned(cr_store *p, sqlite3_int64 iRun, int *pLost, char **pzErr);
int cr_store_run_end(cr_store *p, sqlite3_int64 iRun, const cr_run_counts *pCounts,
                     const char *zStatus, const char *zError, char **pzErr);
/* Writes the `pending` row of a request before it leaves. */
int cr_store_pending(cr_store *p, sqlite3_int64 iRun, const char *zDest, const cr_request *pReq,
                     sqlite3_int64 *piId, char **pzErr);
/* Records the outcome pOut of the request with row id iId. */
int cr_store_outcome(cr_store *p, sqlite3_int64 iId, const cr_outcome *pOut, char **pzErr);
/* The text at zIdPath of a JSON response body, or NULL. */
char *cr_store_remote_id(cr_store *p, const char *zBody, const char *zIdPath);
/* Records that the keyed records of request iId were delivered. */
int cr_store_delivered(cr_store *p, const char *zDest, const cr_request *pReq, sqlite3_int64 iId,
                       const char *zRemoteId, char **pzErr);
/* Calls xRow with the send time of every request counted in zBucket (of
** class zClass, or of any class when NULL) sent after tSinceMs. */
int cr_store_usage(cr_store *p, const char *zBucket, const char *zClass, sqlite3_int64 tSinceMs,
                   void (*xRow)(void *, sqlite3_int64), void *pArg, char **pzErr);
/* Calls xRow(pArg, bucket, class, sent_ms) for every request of a run
** other than iRunSelf with a row id above *piAfter, which moves past them. */
int cr_store_ledger(cr_store *p, sqlite3_int64 iRunSelf, sqlite3_int64 *piAfter,
                    void (*xRow)(void *, const char *, const char *, sqlite3_int64), void *pArg,
                    char **pzErr);
/* Commits the writes made since the last commit (no-op when none). */
int cr_store_flush(cr_store *p, char **pzErr);
/* Drops the writes made since the last commit (its own connection only). */
void cr_store_rollback(cr_store *p);
/* Records an invalid record (never sent). */
int cr_store_invalid(cr_store *p, sqlite3_int64 iRun, const char *zDest, const cr_request *pReq,
                     sqlite3_int64 *piId, char **pzErr);

/* ------------------------------------------------------------------------
** Retention (cr_prune.c)
*/

/* The -wal file is cut back to this many bytes when a checkpoint lets it
** start over (PRAGMA journal_size_limit), on the connections the extension
** opens: without it the file keeps its peak size while any other
** connection is open. */
#define CR_JOURNAL_SIZE_LIMIT "4194304"

/* callrail_prune(older_than_days [, destination]) */
void cr_prune_func(sqlite3_context *ctx, int argc, sqlite3_value **argv);

/* UPDATE with :dest = a destination (or NULL: all) as its first
** parameter, :lo and :hi (ids, or NULL: all) next: its unknown rows whose
** every key was delivered later get resolved_by (the latest delivering
** request's id), which takes them out of the index a keyed run reads at
** start-up.  Pruning runs it; a run may run it on its audit connection
** once its deliveries are committed (binding only the destination). */
extern const char cr_sql_settle[];

/* ------------------------------------------------------------------------
** SQL surface registration
*/
int cr_register_preview(sqlite3 *db, cr_conn *pConn, char **pzErr);
int cr_register_send(sqlite3 *db, cr_conn *pConn, char **pzErr);
int cr_register_accounts(sqlite3 *db, cr_conn *pConn, char **pzErr);

/* callrail_resolve(response_id, outcome [, remote_id]) (cr_resolve.c);
** *pzState receives the row's new state. */
int cr_resolve(cr_conn *pConn, int argc, sqlite3_value **argv, const char **pzState, char **pzErr);

/* Releases one reference to pConn (a module or function destructor). */
void cr_conn_unref(void *pConn);

/* callrail_test(): sends one request built from zJson; *pzResult receives
** the JSON object {status, state, body, error}. */
int cr_test_record(cr_conn *pConn, const char *zDest, const char *zJson, char **pzResult,
                   char **pzErr);

/* Functions that call sqlite3_result_subtype() must say so, or a SQLite
** built with SQLITE_STRICT_SUBTYPE=1 raises an error after they ran.  The
** flag is 3.45's; with older headers it gets its real value, so the module
** built here still declares it when loaded into a newer SQLite, and older
** ones ignore the bit (sqlite3CreateFunc masks the flags it knows). */
#ifndef SQLITE_RESULT_SUBTYPE
#define SQLITE_RESULT_SUBTYPE 0x001000000
#endif

/* The skeleton of the table-valued functions (cr_vtab.c).  Each module
** describes itself with a cr_tvf_def; xConnect, xBestIndex, xDisconnect,
** xOpen and xRowid are shared, the rest is the module's own. */
typedef struct cr_tvf_def {
  const char *zName;    /* e.g. "callrail_send" */
  const char *zSchema;  /* CREATE TABLE x(...) with the HIDDEN arguments last */
  size_t nCursor;       /* size of the module's cursor */
  int iFirstHidden;     /* column number of the first argument */
  int nHidden;          /* number of arguments */
  int nRequired;        /* how many of them are required (text, first) */
  const char *azArg[3]; /* their names, for error messages */
} cr_tvf_def;

typedef struct cr_tvf {
  sqlite3_vtab base;
  cr_conn *pConn;
  const cr_tvf_def *pDef;
} cr_tvf;

/* Every module's cursor begins with this. */
typedef struct cr_tvf_cursor {
  sqlite3_vtab_cursor base;
  sqlite3_int64 iRowid;
} cr_tvf_cursor;

int cr_tvf_connect(sqlite3 *db, void *pAux, int argc, const char *const *argv,
                   sqlite3_vtab **ppVtab, char **pzErr);
int cr_tvf_best_index(sqlite3_vtab *pVtab, sqlite3_index_info *pInfo);
int cr_tvf_disconnect(sqlite3_vtab *pVtab);
int cr_tvf_open(sqlite3_vtab *pVtab, sqlite3_vtab_cursor **ppCursor);
int cr_tvf_rowid(sqlite3_vtab_cursor *cur, sqlite_int64 *pRowid);
/* Checks the required arguments of xFilter: present (idxNum) and text;
** azText[i] receives argument i.  SQLITE_OK, or the vtab's error set. */
int cr_tvf_args(sqlite3_vtab_cursor *cur, int idxNum, sqlite3_value **argv, const char **azText);
/* Reports zErr (freed) as the function's error, prefixed with its name. */
int cr_tvf_error(sqlite3_vtab_cursor *cur, char *zErr, int rc);
int cr_tvf_register(sqlite3 *db, cr_conn *pConn, const cr_tvf_def *pDef, const sqlite3_module *pMod,
                    char **pzErr);

/* Statement helpers shared by the surface modules */
int cr_prepare(sqlite3 *db, const char *zSql, sqlite3_stmt **ppStmt, char **pzErr);

/* ------------------------------------------------------------------------
** Reading lists page by page (cr_get.c): callrail_get and callrail_accounts
*/

/* A GET of a CallRail path that hands out the items of every page, one
** page in memory at a time.  A list response (an object with pagination
** fields and one array member) gives one row per item, a single object
** one row, a bare array one row per element. */
typedef struct cr_pager cr_pager;

/* Opens a read of zPath (a /v3/ path, or a URL of the credential's
** origin) with the query parameters of the JSON object zParams (or NULL)
** and fetches its first page.  zList names the member holding the items,
** or NULL to find it.  zCols are extra result columns over `value` (the
** item), after the item itself.  With isAudited the read is a run of kind
** `get` (credential name as its destination) with one callrail_responses
** row per page, and every GET is admitted by the pacer. */
int cr_pager_open(cr_conn *pConn, const char *zCred, const char *zPath, const char *zParams,
                  const char *zList, const char *zCols, int isAudited, cr_pager **pp, char **pzErr);
/* Moves to the next item, fetching the next page when needed: SQLITE_ROW,
** SQLITE_DONE, or an error. */
int cr_pager_next(cr_pager *p, char **pzErr);
/* Column i of the current item: 0 the item (JSON text), then zCols. */
sqlite3_value *cr_pager_value(cr_pager *p, int i);
/* The number and URL of the page the current item came from. */
int cr_pager_page(cr_pager *p);
const char *cr_pager_url(cr_pager *p);
/* Ends the read (its run row says how) and frees it. */
void cr_pager_close(cr_pager *p);

/* The cursor of a table-valued function that reads with a pager, and its
** slots: xFilter calls cr_pager_cursor_start (cr_pager_open's arguments)
** and xColumn reads cr_pager_value(((cr_pager_cursor *)cur)->pPager, i). */
typedef struct cr_pager_cursor {
  cr_tvf_cursor base; /* first: the shared part */
  cr_pager *pPager;
  int eof;
} cr_pager_cursor;
int cr_pager_cursor_start(sqlite3_vtab_cursor *cur, const char *zCred, const char *zPath,
                          const char *zParams, const char *zList, const char *zCols, int isAudited);
int cr_pager_cursor_next(sqlite3_vtab_cursor *cur);
int cr_pager_cursor_eof(sqlite3_vtab_cursor *cur);
int cr_pager_cursor_close(sqlite3_vtab_cursor *cur);

int cr_register_get(sqlite3 *db, cr_conn *pConn, char **pzErr);

#endif /* CR_INTERNAL_H */
