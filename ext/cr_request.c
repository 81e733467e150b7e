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

/* FNV-1a over method, URL and body: identifies the request a record makes,
** so a record whose request is unchanged since it was delivered is skipped.
** (64 bits: a collision, which would skip a changed record, is 2^-64.) */
static void cr_hash_update(sqlite3_uint64 *pH, const char *z) {
  for (; z && *z; z++) {
    *pH ^= (unsigned char)*z;
    *pH *= 1099511628211ULL;
  }
  *pH ^= 0xff; /* field separator */
  *pH *= 1099511628211ULL;
}

static char *cr_record_hash(int eMethod, const cr_record *pRec) {
  sqlite3_uint64 h = 14695981039346656037ULL;
  cr_hash_update(&h, cr_method_names[eMethod]);
  cr_hash_update(&h, pRec->zUrl);
  if (eMethod != CR_METHOD_DELETE) cr_hash_update(&h, pRec->zBody);
  return sqlite3_mprintf("%016llx", h);
}

void cr_request_free(cr_request *p) {
  if (p) {
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
  if (pDest->zWrap) {
    p->zWrapKey = cr_json_quote(db, pDest->zWrap);
    if (p->zWrapKey == 0) {
      cr_set_error(pzErr, "cannot quote batch.wrap: %s", sqlite3_errmsg(db));
      return SQLITE_ERROR;
    }
  }
  return SQLITE_OK;
}

void cr_batcher_free(cr_batcher *p) {
  if (p) {
    sqlite3_free(sqlite3_str_finish(p->pBodies));
    sqlite3_free(sqlite3_str_finish(p->pKeys));
    sqlite3_free(sqlite3_str_finish(p->pHashes));
    sqlite3_free(p->zUrl);
    sqlite3_free(p->zGroup);
    sqlite3_free(p->zWrapKey);
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
    char *zHash = cr_record_hash(p->pDest->eMethod, pRec);
    pReq->zRecordHashes = sqlite3_mprintf("[\"%s\"]", zHash);
    sqlite3_free(zHash);
  }
  if (pRec->zKeyJson) pReq->zRecordKeys = sqlite3_mprintf("[%s]", pRec->zKeyJson);
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
    char *zHash = cr_record_hash(p->pDest->eMethod, pRec);
    sqlite3_str_appendall(p->pKeys, pRec->zKeyJson);
    sqlite3_str_appendf(p->pHashes, "\"%s\"", zHash);
    sqlite3_free(zHash);
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
*/
struct cr_pipeline {
  const cr_dest *pDest;
  cr_records *pRecords;
  cr_batcher *pBatcher;
  int recordsDone;
  sqlite3_int64 nRecords;   /* records read so far */
  sqlite3_int64 nSkipped;   /* records left out by change detection */
  sqlite3_stmt *pDelivered; /* hash of a key's last delivery */
  cr_keyset *pUnresolved;   /* keys whose last request is pending/unknown */
};

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
  if (zJson) {
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
                  "SELECT record_hash FROM callrail_delivered WHERE destination=?1"
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

/* True if the key was last delivered by a request with hash zHash. */
static int cr_delivered_same(sqlite3_stmt *pStmt, const cr_dest *pDest, const cr_record *pRec,
                             const char *zHash) {
  int hit = 0;
  sqlite3_bind_text(pStmt, 1, pDest->zName, -1, SQLITE_STATIC);
  sqlite3_bind_text(pStmt, 2, pRec->zKey, -1, SQLITE_STATIC);
  if (sqlite3_step(pStmt) == SQLITE_ROW) {
    hit = strcmp((const char *)sqlite3_column_text(pStmt, 0), zHash) == 0;
  }
  sqlite3_reset(pStmt);
  return hit;
}

/* True if change detection leaves this record out. */
static int cr_pipeline_skips(cr_pipeline *p, const cr_record *pRec) {
  char *zHash;
  int skip = 0;
  if (p->pDelivered == 0 || pRec->zError || pRec->zKey == 0) return 0;
  zHash = cr_record_hash(p->pDest->eMethod, pRec);
  if (zHash) skip = cr_delivered_same(p->pDelivered, p->pDest, pRec, zHash);
  if (!skip && p->pUnresolved) skip = cr_keyset_has(p->pUnresolved, pRec->zKey);
  sqlite3_free(zHash);
  return skip;
}

void cr_pipeline_close(cr_pipeline *p) {
  if (p) {
    sqlite3_finalize(p->pDelivered);
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
      if (cr_pipeline_skips(p, &rec)) {
        p->nSkipped++;
        cr_record_clear(&rec);
        continue;
      }
      rc = cr_batcher_add(p->pBatcher, &rec, ppReq, pzErr);
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
