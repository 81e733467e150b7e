/*
** cr_request.c - from records to requests.
**
** With batching off each record is one request.  With `batch`, records are
** gathered into one request as a JSON array (or {"wrap": [...]}) until
** `size` records are in it, or the next record has another URL (records of
** one request always share one URL), or - by `grouping` - the next record's
** `attributes` differ from the previous one's, or its body would take the
** request past `max_bytes`.  Only the request being filled is in memory.
**
** An invalid record becomes a request of its own with zError set, so the
** preview and the audit table show it in place; it is never sent.
*/
#include "cr_internal.h"
SQLITE_EXTENSION_INIT3

#include <string.h>

struct cr_batcher {
  const cr_dest *pDest;
  cr_identity *pIdent;  /* request identities of keyed records */
  char *zWrapKey;       /* batch.wrap as a JSON string */
  sqlite3_int64 iBatch; /* number of the last request made */
  /* the request being filled */
  int nRec;
  sqlite3_str *pBodies; /* "b1,b2,..." */
  sqlite3_str *pKeys;   /* "k1,k2,..." */
  sqlite3_str *pHashes; /* "h1,h2,..." */
  char *zUrl;
  char *zGroup;
  sqlite3_int64 iFirstRow;
};

/* The identity of the request a keyed record makes (ext/cr_identity.c),
** computed once and kept in the record: a record whose request is
** unchanged since it was delivered is skipped. */
static const char *cr_record_hash(cr_identity *pIdent, const cr_dest *pDest, cr_record *pRec) {
  if (pRec->zHash == 0) {
    pRec->zHash = cr_identity_hash(pIdent, cr_method_names[pDest->eMethod], pRec->zUrl,
                                   pDest->eMethod == CR_METHOD_DELETE ? 0 : pRec->zBody);
  }
  return pRec->zHash;
}

void cr_request_free(cr_request *p) {
  if (p) {
    sqlite3_free(p->zRecordKey);
    sqlite3_free(p->zRecordHash);
    sqlite3_free(p->zRecordHashes);
    sqlite3_free(p->zUrl);
    sqlite3_free(p->zBody);
    sqlite3_free(p->zRecordKeys);
    sqlite3_free(p->zError);
    sqlite3_free(p);
  }
}

static cr_request *cr_request_new(const cr_dest *pDest) {
  cr_request *p = sqlite3_malloc(sizeof(*p));
  if (p) {
    memset(p, 0, sizeof(*p));
    p->eMethod = pDest->eMethod;
  }
  return p;
}

/* Quotes a string as JSON with SQLite's json_quote(). */
static char *cr_json_quote(sqlite3 *db, const char *z) {
  sqlite3_stmt *pStmt = 0;
  char *zOut = 0;
  if (sqlite3_prepare_v2(db, "SELECT json_quote(?1)", -1, &pStmt, 0) == SQLITE_OK) {
    sqlite3_bind_text(pStmt, 1, z, -1, SQLITE_STATIC);
    if (sqlite3_step(pStmt) == SQLITE_ROW) {
      zOut = cr_strdup((const char *)sqlite3_column_text(pStmt, 0));
    }
  }
  sqlite3_finalize(pStmt);
  return zOut;
}

int cr_batcher_new(sqlite3 *db, const cr_dest *pDest, cr_batcher **pp, char **pzErr) {
  cr_batcher *p = sqlite3_malloc(sizeof(*p));
  *pp = p;
  if (p == 0) return SQLITE_NOMEM;
  memset(p, 0, sizeof(*p));
  p->pDest = pDest;
  if (pDest->zKey && cr_identity_open(db, &p->pIdent, pzErr) != SQLITE_OK) return SQLITE_ERROR;
  if (pDest->zWrap) {
    p->zWrapKey = cr_json_quote(db, pDest->zWrap);
    if (p->zWrapKey == 0) {
      cr_set_error(pzErr, "cannot quote batch.wrap: %s", sqlite3_errmsg(db));
      return SQLITE_ERROR;
    }
  }
  return SQLITE_OK;
}

cr_identity *cr_batcher_identity(cr_batcher *p) {
  return p->pIdent;
}

void cr_batcher_free(cr_batcher *p) {
  if (p) {
    sqlite3_free(sqlite3_str_finish(p->pBodies));
    sqlite3_free(sqlite3_str_finish(p->pKeys));
    sqlite3_free(sqlite3_str_finish(p->pHashes));
    sqlite3_free(p->zUrl);
    sqlite3_free(p->zGroup);
    sqlite3_free(p->zWrapKey);
    cr_identity_close(p->pIdent);
    sqlite3_free(p);
  }
}

/* The request for one record, taking over the record's strings. */
static cr_request *cr_request_single(cr_batcher *p, cr_record *pRec) {
  cr_request *pReq = cr_request_new(p->pDest);
  if (pReq == 0) return 0;
  pReq->iBatch = pRec->zError ? 0 : ++p->iBatch;
  pReq->nRecords = 1;
  pReq->iFirstRow = pRec->iRow;
  if (pRec->zKeyJson && pRec->zError == 0) {
    pReq->zRecordHashes = sqlite3_mprintf("[\"%s\"]", cr_record_hash(p->pIdent, p->pDest, pRec));
    pReq->zRecordHash = pRec->zHash;
    pRec->zHash = 0;
  }
  if (pRec->zKeyJson) pReq->zRecordKeys = sqlite3_mprintf("[%s]", pRec->zKeyJson);
  pReq->zRecordKey = pRec->zKey;
  pRec->zKey = 0;
  pReq->zUrl = pRec->zUrl;
  pRec->zUrl = 0;
  if (p->pDest->eMethod != CR_METHOD_DELETE || pRec->zError) {
    pReq->zBody = pRec->zBody;
    pRec->zBody = 0;
  }
  pReq->zError = pRec->zError;
  pRec->zError = 0;
  return pReq;
}

/* Bytes the batch would have with one more body of nBody bytes. */
static sqlite3_int64 cr_batch_bytes(cr_batcher *p, sqlite3_int64 nBody) {
  sqlite3_int64 n = 2 + nBody; /* "[" body "]" */
  if (p->nRec > 0) n += sqlite3_str_length(p->pBodies) + 1;
  if (p->zWrapKey) n += (sqlite3_int64)strlen(p->zWrapKey) + 3; /* {key:...} */
  return n;
}

/* Closes the batch being filled into a request. */
static cr_request *cr_batch_close(cr_batcher *p) {
  cr_request *pReq = cr_request_new(p->pDest);
  char *zBodies = sqlite3_str_finish(p->pBodies);
  char *zKeys = sqlite3_str_finish(p->pKeys);
  char *zHashes = sqlite3_str_finish(p->pHashes);
  if (pReq) {
    pReq->iBatch = ++p->iBatch;
    pReq->nRecords = p->nRec;
    pReq->iFirstRow = p->iFirstRow;
    pReq->zUrl = p->zUrl;
    p->zUrl = 0;
    if (p->pDest->eMethod != CR_METHOD_DELETE) {
      pReq->zBody = p->zWrapKey ? sqlite3_mprintf("{%s:[%s]}", p->zWrapKey, zBodies)
                                : sqlite3_mprintf("[%s]", zBodies);
    }
    if (p->pDest->zKey) {
      pReq->zRecordKeys = sqlite3_mprintf("[%s]", zKeys);
      pReq->zRecordHashes = sqlite3_mprintf("[%s]", zHashes);
    }
  }
  sqlite3_free(zBodies);
  sqlite3_free(zKeys);
  sqlite3_free(zHashes);
  p->pBodies = p->pKeys = p->pHashes = 0;
  p->nRec = 0;
  sqlite3_free(p->zGroup);
  p->zGroup = 0;
  return pReq;
}

/* True if pRec cannot join the batch being filled. */
static int cr_batch_breaks(cr_batcher *p, const cr_record *pRec) {
  const cr_dest *d = p->pDest;
  if (p->nRec == 0) return 0;
  if (strcmp(p->zUrl, pRec->zUrl) != 0) return 1;
  if (d->eGrouping == CR_GROUP_ATTRIBUTE &&
      strcmp(p->zGroup ? p->zGroup : "", pRec->zGroup ? pRec->zGroup : "") != 0) {
    return 1;
  }
  if (d->eGrouping == CR_GROUP_BYTES &&
      cr_batch_bytes(p, (sqlite3_int64)strlen(pRec->zBody)) > d->maxBytes) {
    return 1;
  }
  /* Whatever the grouping, no request body grows past CR_MAX_BODY. */
  return cr_batch_bytes(p, (sqlite3_int64)strlen(pRec->zBody)) > CR_MAX_BODY;
}

static void cr_batch_append(cr_batcher *p, cr_record *pRec) {
  if (p->nRec == 0) {
    p->pBodies = sqlite3_str_new(0);
    p->pKeys = sqlite3_str_new(0);
    p->pHashes = sqlite3_str_new(0);
    p->iFirstRow = pRec->iRow;
    p->zUrl = pRec->zUrl;
    pRec->zUrl = 0;
    p->zGroup = pRec->zGroup;
    pRec->zGroup = 0;
  } else {
    sqlite3_str_appendchar(p->pBodies, 1, ',');
    sqlite3_str_appendchar(p->pKeys, 1, ',');
    sqlite3_str_appendchar(p->pHashes, 1, ',');
  }
  sqlite3_str_appendall(p->pBodies, pRec->zBody);
  if (pRec->zKeyJson) {
    sqlite3_str_appendall(p->pKeys, pRec->zKeyJson);
    sqlite3_str_appendf(p->pHashes, "\"%s\"", cr_record_hash(p->pIdent, p->pDest, pRec));
  }
  p->nRec++;
}

/* A record too large for any batch of `max_bytes` is invalid. */
static void cr_batch_check_size(cr_batcher *p, cr_record *pRec) {
  const cr_dest *d = p->pDest;
  sqlite3_int64 nAlone;
  if (d->eGrouping != CR_GROUP_BYTES || pRec->zError) return;
  nAlone = (sqlite3_int64)strlen(pRec->zBody) + 2 +
           (p->zWrapKey ? (sqlite3_int64)strlen(p->zWrapKey) + 3 : 0);
  if (nAlone > d->maxBytes) {
    pRec->zError = sqlite3_mprintf("record %lld: a request with this record alone would be %lld "
                                   "bytes, more than batch.max_bytes (%lld)",
                                   pRec->iRow, nAlone, d->maxBytes);
  }
}

int cr_batcher_add(cr_batcher *p, cr_record *pRec, cr_request **ppReq, char **pzErr) {
  cr_request *pOut = 0;
  (void)pzErr;
  *ppReq = 0;
  cr_batch_check_size(p, pRec);
  if (p->pDest->batchSize == 0 || pRec->zError) {
    pOut = cr_request_single(p, pRec);
  } else {
    if (cr_batch_breaks(p, pRec)) pOut = cr_batch_close(p);
    cr_batch_append(p, pRec);
    if (pOut == 0 && p->nRec >= p->pDest->batchSize) pOut = cr_batch_close(p);
  }
  cr_record_clear(pRec);
  *ppReq = pOut;
  return SQLITE_OK;
}

int cr_batcher_flush(cr_batcher *p, cr_request **ppReq, char **pzErr) {
  (void)pzErr;
  *ppReq = p->nRec > 0 ? cr_batch_close(p) : 0;
  return SQLITE_OK;
}

/* ------------------------------------------------------------------------
** Splitting a rejected batch
*/

/* Halves of the batch's records, keys and hashes, by position. */
static const char cr_sql_split[] =
    "WITH b(v) AS (SELECT CASE WHEN ?4 IS NULL THEN ?1"
    "  ELSE json_extract(?1, '$.\"' || ?4 || '\"') END)"
    " SELECT (SELECT json_group_array(json(e.value)) FROM b, json_each(b.v) e WHERE e.key < ?2),"
    "        (SELECT json_group_array(json(e.value)) FROM b, json_each(b.v) e WHERE e.key >= ?2),"
    "        (SELECT json_group_array(value) FROM json_each(?3) WHERE key < ?2),"
    "        (SELECT json_group_array(value) FROM json_each(?3) WHERE key >= ?2),"
    "        (SELECT json_group_array(value) FROM json_each(?5) WHERE key < ?2),"
    "        (SELECT json_group_array(value) FROM json_each(?5) WHERE key >= ?2)";

/* Half i of a split: its body (wrapped again) and keys. */
static cr_request *cr_request_half(sqlite3 *db, const cr_dest *pDest, const cr_request *pReq,
                                   sqlite3_stmt *pStmt, int i, int nRecords) {
  cr_request *pHalf = cr_request_new(pDest);
  const char *zArr = (const char *)sqlite3_column_text(pStmt, i);
  if (pHalf == 0) return 0;
  pHalf->iBatch = pReq->iBatch;
  pHalf->nRecords = nRecords;
  pHalf->iFirstRow = pReq->iFirstRow;
  pHalf->zUrl = cr_strdup(pReq->zUrl);
  if (pDest->zWrap) {
    char *zKey = cr_json_quote(db, pDest->zWrap);
    pHalf->zBody = sqlite3_mprintf("{%s:%s}", zKey, zArr);
    sqlite3_free(zKey);
  } else {
    pHalf->zBody = cr_strdup(zArr);
  }
  if (pReq->zRecordKeys) {
    pHalf->zRecordKeys = cr_strdup((const char *)sqlite3_column_text(pStmt, 2 + i));
    pHalf->zRecordHashes = cr_strdup((const char *)sqlite3_column_text(pStmt, 4 + i));
  }
  return pHalf;
}

int cr_request_split(sqlite3 *db, const cr_dest *pDest, const cr_request *pReq,
                     cr_request *aHalf[2], char **pzErr) {
  sqlite3_stmt *pStmt = 0;
  int nFirst = pReq->nRecords / 2;
  int rc = cr_prepare(db, cr_sql_split, &pStmt, pzErr);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(pStmt, 1, pReq->zBody, -1, SQLITE_STATIC);
    sqlite3_bind_int(pStmt, 2, nFirst);
    sqlite3_bind_text(pStmt, 3, pReq->zRecordKeys, -1, SQLITE_STATIC);
    sqlite3_bind_text(pStmt, 4, pDest->zWrap, -1, SQLITE_STATIC);
    sqlite3_bind_text(pStmt, 5, pReq->zRecordHashes, -1, SQLITE_STATIC);
    if (sqlite3_step(pStmt) != SQLITE_ROW) {
      cr_set_error(pzErr, "cannot split batch %lld: %s", pReq->iBatch, sqlite3_errmsg(db));
      rc = SQLITE_ERROR;
    }
  }
  if (rc == SQLITE_OK) {
    aHalf[0] = cr_request_half(db, pDest, pReq, pStmt, 0, nFirst);
    aHalf[1] = cr_request_half(db, pDest, pReq, pStmt, 1, pReq->nRecords - nFirst);
    if (aHalf[0] == 0 || aHalf[1] == 0) rc = SQLITE_NOMEM;
  }
  sqlite3_finalize(pStmt);
  return rc;
}

/* ------------------------------------------------------------------------
** The pipeline: query -> records -> requests, the one path that both
** callrail_preview and callrail_send take, so a preview shows exactly the
** requests a send makes.
**
** With `key`, each record is first compared with what was delivered for
** its key (sync modes, docs/design.md#sync-modes):
**   - a key whose last POST or PATCH is unresolved (pending or unknown) is
**     held: it may have arrived, and a second copy could ring a phone twice;
**   - a key delivered with the same request identity is skipped;
**   - a key delivered with another identity (the record changed) is sent
**     again by sync "changed", counted but not sent by "new" (a second POST
**     would create a second object), and sent to update.url with
**     {remote_id} by "upsert";
**   - a key never delivered is sent.
*/
struct cr_pipeline {
  const cr_dest *pDest;
  sqlite3 *db;    /* the user's connection (records, JSON functions) */
  char *zApiBase; /* resolves path URLs (a copy: the caller's may go first) */
  cr_records *pRecords;
  cr_batcher *pBatcher;
  int recordsDone;
  sqlite3_int64 nRecords;   /* records read so far */
  sqlite3_int64 nSkipped;   /* records left out by change detection */
  sqlite3_int64 nChanged;   /* delivered records that changed, not sent (sync "new") */
  sqlite3_stmt *pDelivered; /* identity and remote id of a key's delivery */
  cr_keyset *pUnresolved;   /* keys whose last request is pending/unknown */
};

/* What change detection does with a record. */
#define CR_SEND 0    /* send it to `url` */
#define CR_SKIP 1    /* leave it out */
#define CR_CHANGED 2 /* changed since delivered; sync "new" does not send it */
#define CR_UPDATE 3  /* changed since delivered; send it to `update.url` */

/* The keys whose last request is pending or unknown: a POST or PATCH of
** them might have arrived, so they are not resent until the user resolves
** that row.  Read once per run into a key set, not once per record, from
** the partial index callrail_responses_unresolved alone (it covers the
** query): it holds only the rows that are unresolved and not superseded,
** so start-up does not grow with the history.  A row whose keys were all
** delivered by a later request leaves it once it is marked resolved_by
** (cr_sql_settle); until then its keys stay held, which never sends
** anything twice. */
static const char cr_sql_unresolved[] =
    "SELECT DISTINCT k.value FROM callrail_responses r, json_each(r.record_keys) k"
    " WHERE r.destination=?1 AND r.state IN ('pending','unknown') AND r.resolved_by IS NULL";

int cr_pipeline_open(sqlite3 *db, const cr_dest *pDest, const char *zApiBase, const char *zQuery,
                     const char *zJson, cr_pipeline **pp, char **pzErr) {
  cr_pipeline *p = sqlite3_malloc(sizeof(*p));
  int rc;
  *pp = p;
  if (p == 0) return SQLITE_NOMEM;
  memset(p, 0, sizeof(*p));
  p->pDest = pDest;
  p->db = db;
  p->zApiBase = cr_strdup(zApiBase);
  if (p->zApiBase == 0) {
    rc = SQLITE_NOMEM;
  } else if (zJson) {
    rc = cr_records_open_json(db, pDest, zApiBase, zJson, &p->pRecords, pzErr);
  } else {
    rc = cr_records_open(db, pDest, zApiBase, zQuery, &p->pRecords, pzErr);
  }
  if (rc == SQLITE_OK) rc = cr_batcher_new(db, pDest, &p->pBatcher, pzErr);
  if (rc != SQLITE_OK) {
    cr_pipeline_close(p);
    *pp = 0;
  }
  return rc;
}

/* Fills the set of unresolved keys of the destination. */
static int cr_pipeline_load_unresolved(cr_pipeline *p, sqlite3 *db, char **pzErr) {
  sqlite3_stmt *pStmt = 0;
  int rc = cr_keyset_open(&p->pUnresolved, pzErr);
  if (rc == SQLITE_OK) rc = cr_prepare(db, cr_sql_unresolved, &pStmt, pzErr);
  if (rc == SQLITE_OK) sqlite3_bind_text(pStmt, 1, p->pDest->zName, -1, SQLITE_STATIC);
  while (rc == SQLITE_OK && sqlite3_step(pStmt) == SQLITE_ROW) {
    int isNew;
    rc = cr_keyset_add(p->pUnresolved, (const char *)sqlite3_column_text(pStmt, 0), &isNew, pzErr);
  }
  sqlite3_finalize(pStmt);
  return rc;
}

int cr_pipeline_detect_changes(cr_pipeline *p, sqlite3 *db, char **pzErr) {
  int rc;
  if (p->pDest->zKey == 0) return SQLITE_OK;
  rc = cr_prepare(db,
                  "SELECT record_hash, remote_id FROM callrail_delivered WHERE destination=?1"
                  " AND record_key=?2",
                  &p->pDelivered, pzErr);
  if (rc == SQLITE_OK && p->pDest->retryPost == 0 &&
      (p->pDest->eMethod == CR_METHOD_POST || p->pDest->eMethod == CR_METHOD_PATCH)) {
    rc = cr_pipeline_load_unresolved(p, db, pzErr);
  }
  return rc;
}

sqlite3_int64 cr_pipeline_skipped(cr_pipeline *p) {
  return p->nSkipped;
}

sqlite3_int64 cr_pipeline_changed(cr_pipeline *p) {
  return p->nChanged;
}

/* Decides what change detection does with pRec; for CR_UPDATE, *pzRemoteId
** receives the key's remote id (or NULL if its delivery named none). */
static int cr_pipeline_classify(cr_pipeline *p, cr_record *pRec, char **pzRemoteId) {
  const cr_dest *d = p->pDest;
  int eAction = CR_SEND;
  const char *zHash;
  if (p->pDelivered == 0 || pRec->zError || pRec->zKey == 0) return CR_SEND;
  if (p->pUnresolved && cr_keyset_has(p->pUnresolved, pRec->zKey)) return CR_SKIP;
  zHash = cr_record_hash(cr_batcher_identity(p->pBatcher), d, pRec);
  sqlite3_bind_text(p->pDelivered, 1, d->zName, -1, SQLITE_STATIC);
  sqlite3_bind_text(p->pDelivered, 2, pRec->zKey, -1, SQLITE_STATIC);
  if (zHash && sqlite3_step(p->pDelivered) == SQLITE_ROW) {
    if (strcmp((const char *)sqlite3_column_text(p->pDelivered, 0), zHash) == 0) {
      eAction = CR_SKIP;
    } else if (d->eSync == CR_SYNC_NEW) {
      eAction = CR_CHANGED;
    } else if (d->eSync == CR_SYNC_UPSERT) {
      eAction = CR_UPDATE;
      *pzRemoteId = cr_strdup((const char *)sqlite3_column_text(p->pDelivered, 1));
    }
  }
  sqlite3_reset(p->pDelivered);
  return eAction;
}

/* A record that sync "new" leaves alone: a row without a request. */
static cr_request *cr_pipeline_changed_row(cr_pipeline *p, cr_record *pRec) {
  cr_request *pReq = cr_request_new(p->pDest);
  if (pReq) {
    pReq->nRecords = 1;
    pReq->isChanged = 1;
    pReq->iFirstRow = pRec->iRow;
    pReq->zRecordKey = pRec->zKey;
    pRec->zKey = 0;
  }
  cr_record_clear(pRec);
  p->nChanged++;
  return pReq;
}

/* Points the request of a changed record of sync "upsert" at update.url
** with update.method; without a remote id, or with a placeholder that has
** no value, the record is invalid. */
static int cr_pipeline_to_update(cr_pipeline *p, const char *zRecordJson, const char *zRemoteId,
                                 cr_request *pReq) {
  char *zUrl = 0;
  char *zWhy = 0;
  int rc = SQLITE_OK;
  if (zRemoteId == 0) {
    zWhy = sqlite3_mprintf("key \"%s\" was delivered, but its response had no id at %s, so "
                           "update.url has no {remote_id}",
                           pReq->zRecordKey, p->pDest->zIdPath);
  } else {
    rc = cr_record_update_url(p->db, p->pDest, p->zApiBase, zRecordJson, zRemoteId, &zUrl, &zWhy);
  }
  if (zUrl) {
    sqlite3_free(pReq->zUrl);
    pReq->zUrl = zUrl;
    pReq->eMethod = p->pDest->eUpdateMethod;
  } else if (rc == SQLITE_OK) {
    pReq->zError = sqlite3_mprintf("record %lld: %s", pReq->iFirstRow, zWhy ? zWhy : "no URL");
    pReq->iBatch = 0;
  }
  sqlite3_free(zWhy);
  return rc;
}

/* Turns one record into its request (or none yet, while a batch fills). */
static int cr_pipeline_take(cr_pipeline *p, cr_record *pRec, cr_request **ppReq, char **pzErr) {
  char *zRemoteId = 0;
  char *zJson = 0;
  int rc = SQLITE_OK;
  switch (cr_pipeline_classify(p, pRec, &zRemoteId)) {
  case CR_SKIP:
    p->nSkipped++;
    cr_record_clear(pRec);
    break;
  case CR_CHANGED:
    *ppReq = cr_pipeline_changed_row(p, pRec);
    if (*ppReq == 0) rc = SQLITE_NOMEM;
    break;
  case CR_UPDATE:
    zJson = pRec->zJson; /* upsert is never batched: the request is this record's */
    pRec->zJson = 0;
    rc = cr_batcher_add(p->pBatcher, pRec, ppReq, pzErr);
    if (rc == SQLITE_OK && *ppReq) rc = cr_pipeline_to_update(p, zJson, zRemoteId, *ppReq);
    break;
  default:
    rc = cr_batcher_add(p->pBatcher, pRec, ppReq, pzErr);
  }
  sqlite3_free(zRemoteId);
  sqlite3_free(zJson);
  return rc;
}

void cr_pipeline_close(cr_pipeline *p) {
  if (p) {
    sqlite3_finalize(p->pDelivered);
    sqlite3_free(p->zApiBase);
    cr_keyset_close(p->pUnresolved);
    cr_records_close(p->pRecords);
    cr_batcher_free(p->pBatcher);
    sqlite3_free(p);
  }
}

sqlite3_int64 cr_pipeline_records(cr_pipeline *p) {
  return p->nRecords;
}

int cr_pipeline_next(cr_pipeline *p, cr_request **ppReq, char **pzErr) {
  int rc = SQLITE_OK;
  *ppReq = 0;
  while (rc == SQLITE_OK && *ppReq == 0 && !p->recordsDone) {
    cr_record rec;
    int step = cr_records_next(p->pRecords, &rec, pzErr);
    if (step == SQLITE_ROW) {
      p->nRecords++;
      rc = cr_pipeline_take(p, &rec, ppReq, pzErr);
    } else if (step == SQLITE_DONE) {
      p->recordsDone = 1;
      rc = cr_batcher_flush(p->pBatcher, ppReq, pzErr);
    } else {
      cr_record_clear(&rec);
      rc = step;
    }
  }
  return rc;
}
