/*
** cr_run.c - the sending engine behind callrail_send and callrail_test.
**
** A run pulls requests from the pipeline (cr_pipeline: the same requests
** callrail_preview shows) only as transfer slots free up, keeps up to
** `concurrency` of them in flight on the connection's libcurl multi
** handle, and returns one row per request as it finishes (and one per
** invalid record).  Memory holds the requests in flight and the rows not
** yet returned, never the query's result.
**
** Before a request leaves, its `pending` row is committed (cr_store); when
** it ends, its outcome.  Retries follow README "Destination config": a 429 is retried
** for every method; a 5xx or a transport error only for PUT and DELETE,
** and for POST/PATCH only when the request provably never left (connect
** refused) or `retry_post` is set, because CallRail has no idempotency keys
** and a second POST can ring a phone twice.  Such a request ends `unknown`.
** Retry-After is honoured, otherwise exponential backoff with full jitter.
** A 429 pauses the whole run, not just the request that got it.  A batch
** that CallRail rejects with 400/422 is split in halves until the bad
** records are alone, so the good ones still arrive.
*/
#include "cr_internal.h"
SQLITE_EXTENSION_INIT3

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* How long one wait for transfers lasts before the interrupt flag is
** polled again: Ctrl-C stops a run well within a second. */
#define CR_POLL_MS 100

/* After an interrupt, in-flight transfers get this long to finish before
** they are cut off (and recorded as such). */
#define CR_DRAIN_MS 700

/* Reading records for one refill stops after this long, so that those
** already read leave while the user's query computes the next. */
#define CR_FILL_MS 20

/* A free transfer slot waits at most this long for others to free up, so
** that one commit (an fsync) starts several requests. */
#define CR_REFILL_MS 2

/* One request on its way: its audit row, attempts and transfer. */
typedef struct cr_job cr_job;
struct cr_job {
  cr_request *pReq;
  sqlite3_int64 iResponseId; /* its audit row; 0 until written */
  int nAttempts;
  sqlite3_int64 tNotBefore; /* monotonic ms of the next attempt */
  sqlite3_int64 tAdmitted;  /* wall ms the pacer let it go */
  cr_xfer x;
  cr_job *pNext;
};

struct cr_run {
  cr_conn *pConn;
  cr_dest *pDest;
  cr_cred *pCred;
  cr_store *pStore;
  cr_pipeline *pPipe;
  sqlite3_int64 iRun;
  cr_run_counts counts;
  cr_job *pQueue;  /* jobs waiting to start (new, retries, halves) */
  cr_job *pFlying; /* jobs in flight */
  int nFlying;
  cr_outcome *pHead; /* outcomes recorded, not yet returned */
  cr_outcome *pTail;
  cr_outcome *pUnwritten; /* outcomes (and invalid records) not yet recorded */
  cr_outcome *pUnwrittenTail;
  int pipelineDone;
  int stopping;              /* start nothing new */
  int interrupted;           /* ... not even what was already admitted */
  const char *zStatus;       /* final status once stopping */
  sqlite3_int64 tFilled;     /* when requests were last started */
  sqlite3_int64 tPauseUntil; /* a 429 pauses every request until then */
  sqlite3_int64 tQuotaUntil; /* the pacer holds requests back until then */
  cr_pacer *pPacer;
  int ledgerSynced;                /* this fill has read the other runs' requests */
  char *zEndError;                 /* why the run ends error or quota_exhausted */
  sqlite3_int64 tBeat;             /* when the heartbeat was last renewed */
  char *zWaitingFor;               /* the live run this one waits for, or NULL */
  char *zQuotaNote;                /* the quota a Retry-After said is exhausted */
  cr_request *pInvalid;            /* an invalid record read after a refill's jobs */
  struct curl_slist *apHeaders[2]; /* header lines, without and with a body */
  int ended;
  int counted;              /* holds one of pConn->nRuns */
  sqlite3_int64 nRecovered; /* pending rows of dead runs made unknown */
  /* progress */
  int showProgress;
  sqlite3_int64 nTotal; /* records the query returns, -1 if not counted */
  sqlite3_int64 tStart;
  sqlite3_int64 tLastProgress;
};

/* ------------------------------------------------------------------------
** Outcomes
*/

void cr_outcome_free(cr_outcome *p) {
  if (p) {
    cr_request_free(p->pReq);
    sqlite3_free(p->zError);
    sqlite3_free(p->zBody);
    sqlite3_free(p->zRemoteId);
    sqlite3_free(p);
  }
}

/* Appends p to the list (*ppHead, *ppTail). */
static void cr_outcome_append(cr_outcome **ppHead, cr_outcome **ppTail, cr_outcome *p) {
  p->pNext = 0;
  if (*ppTail)
    (*ppTail)->pNext = p;
  else
    *ppHead = p;
  *ppTail = p;
}

/* Queues an outcome to be recorded (cr_run_record), then returned. */
static void cr_run_push(cr_run *pRun, cr_outcome *p) {
  cr_outcome_append(&pRun->pUnwritten, &pRun->pUnwrittenTail, p);
}

/* Writes one outcome (an invalid record: its row) in the open transaction. */
static int cr_run_write(cr_run *pRun, cr_outcome *pOut, char **pzErr) {
  const char *zDest = pRun->pDest->zName;
  int rc;
  if (strcmp(pOut->zState, "invalid") == 0) {
    return cr_store_invalid(pRun->pStore, pRun->iRun, zDest, pOut->pReq, &pOut->iResponseId, pzErr);
  }
  rc = cr_store_outcome(pRun->pStore, pOut->iResponseId, pOut, pzErr);
  if (rc == SQLITE_OK && strcmp(pOut->zState, "ok") == 0 && pOut->pReq->zRecordKeys) {
    rc = cr_store_delivered(pRun->pStore, zDest, pOut->pReq, pOut->iResponseId, pOut->zRemoteId,
                            pzErr);
  }
  return rc;
}

/* Records the queued outcomes in the store's open transaction (or a new
** one that does not wait for the disk) and makes them the rows to return.
** Outcomes wait in memory until then, not in an open transaction: the file's
** write lock is never held while the user's query computes or the consumer
** reads a row.  A refill records them with its pending rows, in one commit. */
static int cr_run_record(cr_run *pRun, char **pzErr) {
  int rc = SQLITE_OK;
  while (pRun->pUnwritten) {
    cr_outcome *pOut = pRun->pUnwritten;
    int rc2 = cr_run_write(pRun, pOut, pzErr);
    if (rc == SQLITE_OK) rc = rc2; /* the first error; every row is still returned */
    pRun->pUnwritten = pOut->pNext;
    if (pRun->pUnwritten == 0) pRun->pUnwrittenTail = 0;
    cr_outcome_append(&pRun->pHead, &pRun->pTail, pOut);
  }
  return rc;
}

/* Counts a request's records under its final state. */
static void cr_run_count(cr_run *pRun, const char *zState, int nRecords) {
  cr_run_counts *c = &pRun->counts;
  if (strcmp(zState, "ok") == 0)
    c->ok += nRecords;
  else if (strcmp(zState, "failed") == 0)
    c->failed += nRecords;
  else if (strcmp(zState, "unknown") == 0)
    c->unknown += nRecords;
  else if (strcmp(zState, "invalid") == 0)
    c->invalid += nRecords;
}

/* Sets the text the run's row ends with (status error or
** quota_exhausted), keeping the first. */
static void cr_run_why(cr_run *pRun, const char *zWhy) {
  if (pRun->zEndError == 0 && zWhy) pRun->zEndError = cr_strdup(zWhy);
}

/* Ends a job: queues its outcome to be recorded; bCount says whether
** its records are counted under zState (not for a split batch, whose
** records are counted through its halves). */
static int cr_job_finish(cr_run *pRun, cr_job *pJob, const char *zState, char *zError, int bCount) {
  cr_outcome *pOut = sqlite3_malloc(sizeof(*pOut));
  cr_xfer *pX = &pJob->x;
  int rc = pOut ? SQLITE_OK : SQLITE_NOMEM;
  if (rc == SQLITE_OK) {
    memset(pOut, 0, sizeof(*pOut));
    pOut->pReq = pJob->pReq;
    pOut->iResponseId = pJob->iResponseId;
    pOut->status = pX->status;
    pOut->zState = zState;
    pOut->zError = zError;
    pOut->nAttempts = pJob->nAttempts;
    pOut->durationMs = pX->durationMs;
    if (strcmp(zState, "ok") == 0) {
      pOut->zRemoteId = cr_store_remote_id(pRun->pStore, pX->zResponse, pRun->pDest->zIdPath);
    }
    if (pRun->pDest->captureResponses) {
      pOut->zBody = pX->zResponse;
      pX->zResponse = 0;
    }
    pJob->pReq = 0;
    if (bCount) cr_run_count(pRun, zState, pOut->pReq->nRecords);
    cr_run_push(pRun, pOut);
  } else {
    sqlite3_free(zError);
  }
  cr_xfer_clear(pX);
  cr_request_free(pJob->pReq);
  sqlite3_free(pJob);
  return rc;
}

/* Ends a job: writes its outcome, counts its records and queues its row. */
static int cr_job_end(cr_run *pRun, cr_job *pJob, const char *zState, char *zError) {
  return cr_job_finish(pRun, pJob, zState, zError, 1);
}

/* An invalid record: its row, never a request. */
static int cr_run_invalid(cr_run *pRun, cr_request *pReq) {
  cr_outcome *pOut = sqlite3_malloc(sizeof(*pOut));
  int rc = pOut ? SQLITE_OK : SQLITE_NOMEM;
  if (rc == SQLITE_OK) {
    memset(pOut, 0, sizeof(*pOut));
    pOut->pReq = pReq;
    pOut->zState = "invalid";
    pOut->zError = cr_strdup(pReq->zError);
    cr_run_count(pRun, "invalid", pReq->nRecords);
    cr_run_push(pRun, pOut);
  } else {
    cr_request_free(pReq);
  }
  return rc;
}

/* ------------------------------------------------------------------------
** Retry policy
*/

static int cr_method_idempotent(int eMethod) {
  return eMethod == CR_METHOD_PUT || eMethod == CR_METHOD_DELETE;
}

sqlite3_int64 cr_retry_after_ms(const char *z) {
  struct tm tm;
  if (z == 0 || z[0] == 0) return -1;
  if (z[strspn(z, "0123456789")] == 0) return (sqlite3_int64)atoll(z) * 1000;
  memset(&tm, 0, sizeof(tm));
  if (strptime(z, "%a, %d %b %Y %H:%M:%S GMT", &tm) != 0) {
    sqlite3_int64 ms = ((sqlite3_int64)timegm(&tm)) * 1000 - cr_wall_ms();
    return ms > 0 ? ms : 0;
  }
  return -1;
}

sqlite3_int64 cr_backoff_ms(const cr_dest *d, int nAttempts) {
  sqlite3_int64 cap = d->baseDelayMs;
  sqlite3_uint64 r;
  int i;
  for (i = 1; i < nAttempts && cap < d->maxDelayMs; i++)
    cap *= 2;
  if (cap > d->maxDelayMs) cap = d->maxDelayMs;
  if (cap <= 0) return 0;
  sqlite3_randomness(sizeof(r), &r);
  return (sqlite3_int64)(r % (sqlite3_uint64)(cap + 1));
}

/* Queues a job for another attempt after its delay. */
static void cr_job_retry(cr_run *pRun, cr_job *pJob, sqlite3_int64 msDelay) {
  if (msDelay > pRun->pDest->maxDelayMs) msDelay = pRun->pDest->maxDelayMs;
  cr_xfer_clear(&pJob->x);
  /* +1: cr_now_ms() truncates, and Retry-After means "at least". */
  pJob->tNotBefore = cr_now_ms() + msDelay + 1;
  pJob->pNext = pRun->pQueue;
  pRun->pQueue = pJob;
}

/* Splits a rejected batch into two halves queued in its place; the
** batch's own row ends `failed`, naming the split. */
static int cr_job_bisect(cr_run *pRun, cr_job *pJob, char *zWhy, char **pzErr) {
  cr_request *aHalf[2] = {0, 0};
  int rc = cr_request_split(pRun->pConn->db, pRun->pDest, pJob->pReq, aHalf, pzErr);
  int i;
  for (i = 1; rc == SQLITE_OK && i >= 0; i--) {
    cr_job *pNew = sqlite3_malloc(sizeof(*pNew));
    if (pNew == 0) {
      rc = SQLITE_NOMEM;
      break;
    }
    memset(pNew, 0, sizeof(*pNew));
    pNew->pReq = aHalf[i];
    aHalf[i] = 0;
    pNew->pNext = pRun->pQueue;
    pRun->pQueue = pNew;
  }
  cr_request_free(aHalf[0]);
  cr_request_free(aHalf[1]);
  if (rc != SQLITE_OK) {
    sqlite3_free(zWhy);
    return rc;
  }
  rc = cr_job_finish(
      pRun, pJob, "failed",
      sqlite3_mprintf("%s; batch split in two to isolate the rejected records", zWhy), 0);
  sqlite3_free(zWhy);
  return rc;
}

/* A 429 whose Retry-After is longer than retry.max_delay_ms is not a
** moment's throttling but a spent hour or day budget: with on_quota
** "stop" the run ends quota_exhausted, with "wait" it waits (the retry
** and the pause take the whole Retry-After); either way the run's row says
** which account and until when, so a run outside a terminal is not silent. */
static void cr_run_quota_exhausted(cr_run *pRun, cr_job *pJob, sqlite3_int64 msAfter) {
  cr_quota_key q;
  char zWhen[32];
  char *zWhy;
  cr_quota_key_of(pJob->pReq->eMethod, pJob->pReq->zUrl, &q);
  cr_format_utc(cr_wall_ms() + msAfter, zWhen, sizeof(zWhen));
  zWhy = sqlite3_mprintf("account %s: CallRail answered 429 with Retry-After %lld s (longer "
                         "than retry.max_delay_ms %d): its %s quota is exhausted and frees at "
                         "%s",
                         q.zBucket ? q.zBucket : pJob->pReq->zUrl, msAfter / 1000,
                         pRun->pDest->maxDelayMs, q.zClass, zWhen);
  cr_quota_key_clear(&q);
  if (pRun->pDest->onQuotaStop) {
    cr_run_why(pRun, zWhy);
    pRun->stopping = 1;
    pRun->zStatus = "quota_exhausted";
  } else {
    sqlite3_free(pRun->zQuotaNote);
    pRun->zQuotaNote = zWhy;
    zWhy = 0;
    pRun->tBeat = 0; /* say it now */
  }
  sqlite3_free(zWhy);
}

/* Decides what a finished transfer means. */
static int cr_job_finished(cr_run *pRun, cr_job *pJob, char **pzErr) {
  const cr_dest *d = pRun->pDest;
  cr_xfer *pX = &pJob->x;
  /* The server counted it somewhere between admission and now: from now
  ** on, the pacer's windows slide from the latest moment it can have. */
  cr_pacer_restamp(pRun->pPacer, pX->eMethod, pX->zUrl, pJob->tAdmitted);
  int st = pX->status;
  int idem = cr_method_idempotent(pJob->pReq->eMethod);
  int canRetry = pJob->nAttempts < d->maxAttempts && !pRun->stopping;
  sqlite3_int64 msAfter;

  if (st >= 200 && st < 300) return cr_job_end(pRun, pJob, "ok", cr_strdup(pX->zError));
  if (st >= 300 && st < 400) {
    return cr_job_end(pRun, pJob, "failed",
                      sqlite3_mprintf("HTTP %d redirect to %s not followed", st,
                                      pX->zLocation ? pX->zLocation : "(no Location)"));
  }
  if (st == 429) {
    msAfter = cr_retry_after_ms(pX->zRetryAfter);
    if (msAfter > d->maxDelayMs) {
      cr_run_quota_exhausted(pRun, pJob, msAfter);
      canRetry = canRetry && !d->onQuotaStop;
    } else if (d->onQuotaStop) {
      cr_run_why(pRun, "CallRail answered 429 (quota exhausted) and on_quota is \"stop\"");
      pRun->stopping = 1;
      pRun->zStatus = "quota_exhausted";
      canRetry = 0;
    }
    if (msAfter < 0) msAfter = cr_backoff_ms(d, pJob->nAttempts);
    if (canRetry) {
      sqlite3_int64 tUntil = cr_now_ms() + msAfter + 1; /* +1: as in cr_job_retry() */
      if (tUntil > pRun->tPauseUntil) pRun->tPauseUntil = tUntil;
      cr_job_retry(pRun, pJob, msAfter);
      pJob->tNotBefore = tUntil; /* a Retry-After past max_delay_ms still holds */
      return SQLITE_OK;
    }
    return cr_job_end(pRun, pJob, "failed", cr_response_error(pRun->pConn->db, st, pX->zResponse));
  }
  if (st >= 500) {
    if (canRetry && (idem || d->retryPost)) {
      msAfter = cr_retry_after_ms(pX->zRetryAfter);
      cr_job_retry(pRun, pJob, msAfter >= 0 ? msAfter : cr_backoff_ms(d, pJob->nAttempts));
      return SQLITE_OK;
    }
    return cr_job_end(pRun, pJob, "failed", cr_response_error(pRun->pConn->db, st, pX->zResponse));
  }
  if (st >= 400) {
    char *zWhy = cr_response_error(pRun->pConn->db, st, pX->zResponse);
    if ((st == 400 || st == 422) && pJob->pReq->nRecords > 1 && !pRun->stopping) {
      return cr_job_bisect(pRun, pJob, zWhy, pzErr);
    }
    return cr_job_end(pRun, pJob, "failed", zWhy);
  }
  /* No HTTP answer: a transport failure. */
  if (canRetry && (!pX->reachedServer || idem || d->retryPost)) {
    cr_job_retry(pRun, pJob, cr_backoff_ms(d, pJob->nAttempts));
    return SQLITE_OK;
  }
  return cr_job_end(pRun, pJob, pX->reachedServer && !idem ? "unknown" : "failed",
                    cr_strdup(pX->zError));
}

/* ------------------------------------------------------------------------
** Starting requests
*/

/* Writes a job's `pending` row (once; retries reuse it). */
static int cr_job_intend(cr_run *pRun, cr_job *pJob, char **pzErr) {
  int rc = SQLITE_OK;
  if (pJob->iResponseId == 0) {
    rc = cr_store_pending(pRun->pStore, pRun->iRun, pRun->pDest->zName, pJob->pReq,
                          &pJob->iResponseId, pzErr);
    if (rc == SQLITE_OK) pRun->counts.requests++;
  }
  return rc;
}

/* The header lines of the run's requests with or without a body: built
** once, as every request of a run has the same.  NULL when out of memory:
** the transfer then makes its own, and reports if it cannot. */
static struct curl_slist *cr_run_headers(cr_run *pRun, int hasBody) {
  if (pRun->apHeaders[hasBody] == 0) {
    (void)cr_http_headers(pRun->pDest, pRun->pCred, hasBody, &pRun->apHeaders[hasBody]);
  }
  return pRun->apHeaders[hasBody];
}

/* Hands a job whose pending row is committed to libcurl. */
static int cr_job_start(cr_run *pRun, cr_job *pJob) {
  cr_xfer *pX = &pJob->x;
  char *zErr = 0;
  memset(pX, 0, sizeof(*pX));
  pX->pHeaderList = cr_run_headers(pRun, pJob->pReq->zBody != 0);
  pX->eMethod = pJob->pReq->eMethod;
  pX->zUrl = pJob->pReq->zUrl;
  pX->zBody = pJob->pReq->zBody;
  pX->pDest = pRun->pDest;
  pX->pCred = pRun->pCred;
  pX->maxResponse = pRun->pDest->maxResponseBytes;
  pJob->nAttempts++;
  if (cr_http_start(pRun->pConn->pHttp, pX, &zErr) != SQLITE_OK) {
    /* Refused before leaving (e.g. the origin check): never retried. */
    pX->reachedServer = 0;
    return cr_job_end(pRun, pJob, "failed", zErr);
  }
  pJob->pNext = pRun->pFlying;
  pRun->pFlying = pJob;
  pRun->nFlying++;
  return SQLITE_OK;
}

/* Takes the first queued job whose delay is over, or NULL. */
static cr_job *cr_queue_take(cr_run *pRun, sqlite3_int64 tNow) {
  cr_job **pp;
  for (pp = &pRun->pQueue; *pp; pp = &(*pp)->pNext) {
    if ((*pp)->tNotBefore <= tNow) {
      cr_job *pJob = *pp;
      *pp = pJob->pNext;
      pJob->pNext = 0;
      return pJob;
    }
  }
  return 0;
}

/* The next job to start: a queued one that is due, else a new request
** from the pipeline.  NULL when none is ready now. */
static int cr_run_next_job(cr_run *pRun, int nGathered, cr_job **ppJob, char **pzErr) {
  cr_request *pReq = 0;
  int rc = SQLITE_OK;
  *ppJob = cr_queue_take(pRun, cr_now_ms());
  while (*ppJob == 0 && rc == SQLITE_OK && !pRun->pipelineDone && pRun->pInvalid == 0) {
    rc = cr_pipeline_next(pRun->pPipe, &pReq, pzErr);
    if (rc != SQLITE_OK) break;
    if (pReq == 0) {
      pRun->pipelineDone = 1;
    } else if (pReq->isChanged) {
      cr_request_free(pReq); /* sync "new": counted by the pipeline, not sent */
    } else if (pReq->zError && nGathered > 0) {
      pRun->pInvalid = pReq; /* its row after the gathered ones': ids in query order */
    } else if (pReq->zError) {
      rc = cr_run_invalid(pRun, pReq);
      break; /* record it and hand its row back first */
    } else {
      cr_job *pJob = sqlite3_malloc(sizeof(*pJob));
      if (pJob == 0) {
        cr_request_free(pReq);
        return SQLITE_NOMEM;
      }
      memset(pJob, 0, sizeof(*pJob));
      pJob->pReq = pReq;
      *ppJob = pJob;
    }
  }
  return rc;
}

/* Puts a job back at the head of the queue, due after msWait. */
static void cr_queue_push(cr_run *pRun, cr_job *pJob, sqlite3_int64 msWait) {
  pJob->tNotBefore = cr_now_ms() + msWait;
  pJob->pNext = pRun->pQueue;
  pRun->pQueue = pJob;
}

/* Asks the pacer whether pJob may go now.  When the quota is used up, the
** job waits (on_quota "wait") or the run stops ("stop"): a wait longer than
** a second is a spent hour or day budget, not per-second pacing. */
static int cr_run_admit(cr_run *pRun, cr_job *pJob, int *pOk, char **pzErr) {
  sqlite3_int64 msWait = 0;
  int rc = SQLITE_OK;
  /* Other runs' requests are counted under the write lock that will also
  ** cover this fill's pending rows: no two runs admit the same room. */
  if (!pRun->ledgerSynced) {
    rc = cr_store_lock(pRun->pStore, pzErr);
    if (rc == SQLITE_OK) rc = cr_pacer_sync(pRun->pPacer, pRun->pStore, pRun->iRun, pzErr);
    pRun->ledgerSynced = rc == SQLITE_OK;
  }
  if (rc == SQLITE_OK) {
    rc = cr_pacer_admit(pRun->pPacer, pRun->pStore, pJob->pReq->eMethod, pJob->pReq->zUrl, &msWait,
                        &pJob->tAdmitted, pzErr);
  }
  *pOk = rc == SQLITE_OK && msWait == 0;
  if (rc == SQLITE_OK && msWait > 0) {
    int spent = msWait > 1000; /* an hour or day budget, not per-second pacing */
    cr_queue_push(pRun, pJob, msWait);
    pRun->tQuotaUntil = cr_now_ms() + msWait;
    if (spent && pRun->pDest->onQuotaStop) {
      cr_run_why(pRun, cr_pacer_wait_reason(pRun->pPacer));
      pRun->stopping = 1;
      pRun->zStatus = "quota_exhausted";
    } else if (spent && pRun->tBeat > 0) {
      pRun->tBeat = 0; /* the heartbeat says what the run waits for now */
    }
  }
  return rc;
}

static int cr_run_stop(cr_run *pRun, const char *zStatus, char **pzErr);
static int cr_run_lost(cr_run *pRun, char **pzErr);

/* How long to wait before refilling: each refill costs a commit (an
** fsync), so one request per commit would make the disk, not the network,
** the limit.  Refill once half the slots are free, or CR_REFILL_MS after
** the last refill once any is: against a slow server slots free up one by
** one, and a free slot must not idle for long.  -1: no slot is free. */
static int cr_run_refill_wait(cr_run *pRun, sqlite3_int64 tNow) {
  int nFree = pRun->pDest->concurrency - pRun->nFlying;
  sqlite3_int64 ms = pRun->tFilled + CR_REFILL_MS - tNow;
  if (nFree <= 0) return -1;
  if (pRun->nFlying == 0 || nFree >= pRun->pDest->concurrency / 2 || ms <= 0) return 0;
  return (int)ms;
}

/* Reads the jobs of a refill: queued ones that are due, then new requests
** from the user's query, for at most CR_FILL_MS (a slow query must not
** hold back the requests already read).  No lock is held meanwhile. */
static int cr_run_gather(cr_run *pRun, cr_job **apJob, int *pn, char **pzErr) {
  sqlite3_int64 tStart = cr_now_ms();
  int rc = SQLITE_OK;
  *pn = 0;
  while (rc == SQLITE_OK && !pRun->stopping && cr_now_ms() - tStart < CR_FILL_MS &&
         pRun->nFlying + *pn < pRun->pDest->concurrency && cr_now_ms() >= pRun->tPauseUntil &&
         pRun->pUnwrittenTail == 0) {
    cr_job *pJob = 0;
    rc = cr_run_next_job(pRun, *pn, &pJob, pzErr);
    if (rc == SQLITE_INTERRUPT) {
      /* Ctrl-C while the user's query computed its next row. */
      sqlite3_free(*pzErr);
      *pzErr = 0;
      pRun->pipelineDone = 1;
      rc = cr_run_stop(pRun, "interrupted", pzErr);
      break;
    }
    if (rc != SQLITE_OK || pJob == 0) break;
    apJob[(*pn)++] = pJob;
  }
  return rc;
}

/* Starts jobs until `concurrency` are in flight or none is ready.
**
** The records are read with no lock held: the file's write lock is taken
** only to record the outcomes that came in since the last refill, count
** other runs' requests, admit this refill's requests and write their
** pending rows - one transaction, committed before any of them leaves.  So
** other writers (another run, the user) never wait on the user's query or
** on this run's consumer. */
static int cr_run_fill(cr_run *pRun, char **pzErr) {
  cr_job *apJob[CR_MAX_CONCURRENCY];
  int i, n = 0, nStart = 0, ok = 1;
  int rc = SQLITE_OK;
  if (cr_run_refill_wait(pRun, cr_now_ms()) != 0) return SQLITE_OK;
  pRun->ledgerSynced = 0;
  rc = cr_run_gather(pRun, apJob, &n, pzErr);
  /* Durable if requests will leave; else the outcomes need not wait. */
  if (rc == SQLITE_OK && n > 0) rc = cr_store_lock(pRun->pStore, pzErr);
  if (rc == SQLITE_OK && n > 0) {
    int lost = 0; /* another run may have taken this one for dead meanwhile */
    rc = cr_store_owned(pRun->pStore, pRun->iRun, &lost, pzErr);
    if (rc == SQLITE_OK && lost) rc = cr_run_lost(pRun, pzErr);
  }
  if (rc == SQLITE_OK) rc = cr_run_record(pRun, pzErr);
  for (i = 0; i < n; i++) {
    int admitted = 0;
    if (rc == SQLITE_OK && ok && !pRun->stopping) {
      rc = cr_run_admit(pRun, apJob[i], &ok, pzErr);
      if (rc == SQLITE_OK && !ok) continue; /* the pacer queued it */
      admitted = rc == SQLITE_OK;
    }
    if (admitted) {
      rc = cr_job_intend(pRun, apJob[i], pzErr);
      apJob[nStart++] = apJob[i];
    } else {
      cr_queue_push(pRun, apJob[i], 0); /* not admitted: back in the queue */
    }
  }
  if (rc == SQLITE_OK) rc = cr_store_flush(pRun->pStore, pzErr);
  if (nStart > 0) pRun->tFilled = cr_now_ms();
  for (i = 0; i < nStart; i++) {
    if (rc == SQLITE_OK && !pRun->interrupted) {
      rc = cr_job_start(pRun, apJob[i]);
    } else {
      cr_queue_push(pRun, apJob[i], 0); /* ended by cr_run_drop_queue */
    }
  }
  if (rc == SQLITE_OK && pRun->pInvalid) {
    cr_request *pReq = pRun->pInvalid;
    pRun->pInvalid = 0;
    rc = cr_run_invalid(pRun, pReq);
  }
  return rc;
}

/* Removes a finished transfer's job from the in-flight list. */
static cr_job *cr_flying_take(cr_run *pRun, cr_xfer *pX) {
  cr_job **pp;
  for (pp = &pRun->pFlying; *pp; pp = &(*pp)->pNext) {
    if (&(*pp)->x == pX) {
      cr_job *pJob = *pp;
      *pp = pJob->pNext;
      pRun->nFlying--;
      return pJob;
    }
  }
  return 0;
}

/* ------------------------------------------------------------------------
** Progress on stderr
*/

/* What the run is waiting for, if it is. */
static const char *cr_run_waiting(cr_run *pRun, sqlite3_int64 tNow) {
  if (tNow < pRun->tPauseUntil)
    return pRun->zQuotaNote ? pRun->zQuotaNote : "paused after HTTP 429";
  if (tNow < pRun->tQuotaUntil) return cr_pacer_wait_reason(pRun->pPacer);
  return 0;
}

/* One line, rewritten in place: records done/total, states, rate, ETA. */
static void cr_run_progress(cr_run *pRun, int final) {
  const cr_run_counts *c = &pRun->counts;
  sqlite3_int64 tNow = cr_now_ms();
  sqlite3_int64 nDone = c->ok + c->failed + c->unknown + c->invalid +
                        cr_pipeline_skipped(pRun->pPipe) + cr_pipeline_changed(pRun->pPipe);
  double secs = (tNow - pRun->tStart) / 1000.0;
  double rate = secs > 0 ? nDone / secs : 0.0;
  char zTotal[32] = "";
  char zEta[32] = "";
  if (!pRun->showProgress || (!final && tNow - pRun->tLastProgress < 200)) return;
  pRun->tLastProgress = tNow;
  if (pRun->nTotal >= 0) snprintf(zTotal, sizeof(zTotal), "/%lld", pRun->nTotal);
  if (pRun->nTotal > nDone && rate > 0 && !final) {
    snprintf(zEta, sizeof(zEta), ", ETA %.0fs", (pRun->nTotal - nDone) / rate);
  }
  const char *zWait = final ? 0 : cr_run_waiting(pRun, tNow);
  fprintf(stderr,
          "\rcallrail_send %s: %lld%s records, %lld ok, %lld failed, %lld unknown, %lld invalid,"
          " %lld skipped, %lld changed, %.0f records/s%s%s%s%s\033[K",
          pRun->pDest->zName, nDone, zTotal, c->ok, c->failed, c->unknown, c->invalid,
          cr_pipeline_skipped(pRun->pPipe), cr_pipeline_changed(pRun->pPipe), rate, zEta,
          zWait ? "; waiting: " : "", zWait ? zWait : "", final ? "\n" : "");
  fflush(stderr);
}

/* ------------------------------------------------------------------------
** The loop
*/

/* Waits up to msWait for transfers, then handles every one that finished. */
static int cr_run_wait(cr_run *pRun, int msWait, char **pzErr) {
  cr_xfer *pDone = 0;
  int rc = cr_http_wait(pRun->pConn->pHttp, msWait, &pDone, pzErr);
  while (rc == SQLITE_OK && pDone) {
    cr_job *pJob = cr_flying_take(pRun, pDone);
    rc = cr_job_finished(pRun, pJob, pzErr);
    if (rc == SQLITE_OK) rc = cr_http_wait(pRun->pConn->pHttp, 0, &pDone, pzErr);
  }
  return rc;
}

/* Cuts off the transfers still in flight after an interrupt. */
static int cr_run_abort_flying(cr_run *pRun, char **pzErr) {
  int rc = SQLITE_OK;
  while (pRun->pFlying) {
    cr_job *pJob = pRun->pFlying;
    int idem = cr_method_idempotent(pJob->pReq->eMethod);
    int rc2;
    pRun->pFlying = pJob->pNext;
    pRun->nFlying--;
    if (cr_http_abort(pRun->pConn->pHttp, &pJob->x)) {
      rc2 = cr_job_end(pRun, pJob, pJob->x.reachedServer && !idem ? "unknown" : "failed",
                       sqlite3_mprintf("run interrupted while the request was in flight"));
    } else {
      rc2 = cr_job_finished(pRun, pJob, pzErr); /* answered meanwhile; no retry (stopping) */
    }
    if (rc == SQLITE_OK) rc = rc2; /* the first error; every job is still freed */
  }
  return rc;
}

/* Queued retries and halves that will not start: a retry's last attempt
** is its outcome; a half never sent gets no row (a re-run sends it). */
static int cr_run_drop_queue(cr_run *pRun) {
  int rc = SQLITE_OK;
  while (pRun->pQueue) {
    cr_job *pJob = pRun->pQueue;
    pRun->pQueue = pJob->pNext;
    if (pJob->iResponseId) {
      char *zWhy = pJob->nAttempts == 0
                       ? sqlite3_mprintf("not sent: the run was stopped first")
                       : sqlite3_mprintf("not retried: the run was stopped after %d attempts",
                                         pJob->nAttempts);
      int rc2 = cr_job_end(pRun, pJob, "failed", zWhy);
      if (rc == SQLITE_OK) rc = rc2;
    } else {
      cr_request_free(pJob->pReq);
      sqlite3_free(pJob);
    }
  }
  return rc;
}

/* Stops starting requests; lets those in flight finish for a moment. */
static int cr_run_stop(cr_run *pRun, const char *zStatus, char **pzErr) {
  sqlite3_int64 tEnd = cr_now_ms() + CR_DRAIN_MS;
  int rc = SQLITE_OK;
  if (!pRun->stopping) {
    pRun->stopping = 1;
    pRun->zStatus = zStatus;
  }
  pRun->interrupted = 1;
  while (rc == SQLITE_OK && pRun->nFlying > 0 && cr_now_ms() < tEnd) {
    rc = cr_run_wait(pRun, CR_POLL_MS, pzErr);
  }
  if (rc == SQLITE_OK) rc = cr_run_abort_flying(pRun, pzErr);
  if (rc == SQLITE_OK) rc = cr_run_drop_queue(pRun);
  return rc;
}

/* The earliest moment something queued may start, or 0. */
static sqlite3_int64 cr_run_next_due(cr_run *pRun) {
  sqlite3_int64 t = pRun->pQueue ? 0 : pRun->tPauseUntil;
  cr_job *p;
  for (p = pRun->pQueue; p; p = p->pNext) {
    if (t == 0 || p->tNotBefore < t) t = p->tNotBefore;
  }
  if (t && t < pRun->tPauseUntil) t = pRun->tPauseUntil;
  return t;
}

/* True when nothing more will happen: every record has its outcome, or
** the run is stopping and nothing is in flight. */
static int cr_run_over(cr_run *pRun) {
  if (pRun->nFlying > 0) return 0;
  return pRun->stopping || (pRun->pipelineDone && pRun->pQueue == 0);
}

/* Sleeps until something queued is due (a retry's backoff, a 429 pause,
** quota), at most CR_POLL_MS so that interrupts are noticed. */
static int cr_run_doze(cr_run *pRun, char **pzErr) {
  sqlite3_int64 msSleep = cr_run_next_due(pRun) - cr_now_ms();
  int rc = cr_store_flush(pRun->pStore, pzErr);
  if (msSleep > CR_POLL_MS) msSleep = CR_POLL_MS;
  if (msSleep < 1) msSleep = 1;
  sqlite3_sleep((int)msSleep);
  return rc;
}

static int cr_run_end(cr_run *pRun, char **pzErr);

/* The error of a run that lost its claim (see cr_run_beat). */
static int cr_run_lost(cr_run *pRun, char **pzErr) {
  cr_set_error(pzErr,
               "run %lld of destination \"%s\" was taken for dead by another run and its "
               "pending requests were recorded unknown: its heartbeat, last renewed %lld ms ago, "
               "was older than lease_ms %lld while the statement was not stepped (or the "
               "clocks of the two hosts differ); it sent nothing more",
               pRun->iRun, pRun->pDest->zName, cr_now_ms() - pRun->tBeat, pRun->pDest->leaseMs);
  return SQLITE_ERROR;
}

/* Renews the run's heartbeat every CR_HEARTBEAT_MS (other runs judge it
** dead when it stops); while the run waits for a spent quota, the
** heartbeat also writes what it waits for into its error column.
**
** The heartbeat is renewed only while the statement is stepped.  A caller
** away for longer than lease_ms (a consumer pausing between result rows, a
** slow query) may meanwhile have been taken for dead by a run on another
** host, which recovered this run and now sends the destination's records.
** Such a run must send nothing more: the renewal succeeds only while the
** run's row is still `running`, and each refill checks that under the
** write lock before its requests leave (cr_run_fill). */
static int cr_run_beat(cr_run *pRun, char **pzErr) {
  sqlite3_int64 tNow = cr_now_ms();
  const char *zNote = 0;
  char *zText = 0;
  int rc, lost = 0;
  if (pRun->tBeat && tNow - pRun->tBeat < CR_HEARTBEAT_MS) return SQLITE_OK;
  if (tNow < pRun->tPauseUntil) zNote = pRun->zQuotaNote;
  if (tNow + 1000 < pRun->tQuotaUntil) zNote = cr_pacer_wait_reason(pRun->pPacer);
  if (zNote) zText = sqlite3_mprintf("waiting: %s", zNote);
  rc = cr_store_heartbeat(pRun->pStore, pRun->iRun, zText, &lost, pzErr);
  sqlite3_free(zText);
  if (rc == SQLITE_OK) rc = cr_store_flush(pRun->pStore, pzErr);
  if (rc == SQLITE_OK && lost) return cr_run_lost(pRun, pzErr);
  pRun->tBeat = tNow;
  return rc;
}

int cr_run_step(cr_run *pRun, cr_outcome **ppOut, char **pzErr) {
  int rc = SQLITE_OK;
  *ppOut = 0;
  while (rc == SQLITE_OK && pRun->pHead == 0 && !cr_run_over(pRun)) {
    if (!pRun->stopping && cr_check_interrupt(pRun->pConn->db) == SQLITE_INTERRUPT) {
      rc = cr_run_stop(pRun, "interrupted", pzErr);
      break;
    }
    rc = cr_run_beat(pRun, pzErr);
    if (rc == SQLITE_OK && !pRun->stopping) rc = cr_run_fill(pRun, pzErr);
    if (rc != SQLITE_OK || pRun->pHead) break;
    if (pRun->nFlying > 0) {
      int ms = cr_run_refill_wait(pRun, cr_now_ms());
      rc = cr_run_wait(pRun, ms > 0 && ms < CR_POLL_MS ? ms : CR_POLL_MS, pzErr);
    } else if (!pRun->stopping) {
      rc = cr_run_doze(pRun, pzErr);
    }
    cr_run_progress(pRun, 0);
  }
  if (rc == SQLITE_OK && pRun->pHead == 0) {
    rc = cr_run_drop_queue(pRun);
    if (rc == SQLITE_OK) rc = cr_run_end(pRun, pzErr);
  }
  if (rc == SQLITE_INTERRUPT && !pRun->stopping) {
    /* Interrupted while waiting for another connection's lock: what is in
    ** flight is cut off, and rows that cannot be written stay pending for
    ** the next run to recover. */
    cr_run_stop(pRun, "interrupted", pzErr);
  } else if (rc != SQLITE_OK && !pRun->stopping) {
    pRun->stopping = 1;
    pRun->zStatus = "error";
    cr_run_why(pRun, *pzErr);
  }
  if (pRun->pHead) {
    /* The consumer may take its time over the row: no lock is held then. */
    if (rc == SQLITE_OK) rc = cr_store_flush(pRun->pStore, pzErr);
    *ppOut = pRun->pHead;
    pRun->pHead = pRun->pHead->pNext;
    if (pRun->pHead == 0) pRun->pTail = 0;
  }
  return rc;
}

/* ------------------------------------------------------------------------
** Opening and ending a run
*/

/* How often a run waiting for another run of its destination looks again. */
#define CR_CLAIM_POLL_MS 250

/* Waits for ms, or less when the user interrupts (SQLITE_INTERRUPT, with
** zWhy in the error). */
static int cr_run_nap(cr_run *pRun, int ms, const char *zWhy, char **pzErr) {
  sqlite3_int64 tEnd = cr_now_ms() + ms;
  while (cr_now_ms() < tEnd) {
    if (cr_check_interrupt(pRun->pConn->db) == SQLITE_INTERRUPT) {
      cr_set_error(pzErr, "interrupted while %s", zWhy);
      return SQLITE_INTERRUPT;
    }
    sqlite3_sleep(ms < CR_POLL_MS ? ms : CR_POLL_MS);
  }
  return SQLITE_OK;
}

/* Becomes the one live run of the destination (a send; a test always
** starts): waits while another send of it is alive, or with on_busy
** "error" fails at once naming that run. */
static int cr_run_claim(cr_run *pRun, const char *zDest, const char *zKind, char **pzErr) {
  const cr_dest *d = pRun->pDest;
  char *zLive = 0;
  int rc;
  for (;;) {
    rc = cr_store_claim(pRun->pStore, zDest, zKind, d->leaseMs, &pRun->iRun, &zLive,
                        &pRun->nRecovered, pzErr);
    if (rc != SQLITE_OK || zLive == 0) break;
    sqlite3_free(pRun->zWaitingFor);
    pRun->zWaitingFor = zLive;
    if (d->onBusyError) {
      cr_set_error(pzErr, "destination \"%s\" is busy: %s is sending to it (on_busy is \"error\")",
                   zDest, zLive);
      rc = SQLITE_BUSY;
      break;
    }
    if (pRun->showProgress) {
      fprintf(stderr, "\rcallrail_send %s: waiting for %s to end\033[K", zDest, zLive);
      fflush(stderr);
    }
    zLive = sqlite3_mprintf("waiting for %s of destination \"%s\" to end", zLive, zDest);
    rc = zLive ? cr_run_nap(pRun, CR_CLAIM_POLL_MS, zLive, pzErr) : SQLITE_NOMEM;
    sqlite3_free(zLive);
    zLive = 0;
    if (rc != SQLITE_OK) break;
  }
  return rc;
}

/* Loads the destination and its credential, and checks that the run may
** use them. */
static int cr_run_load(cr_run *pRun, const char *zDest, int isTest, char **pzErr) {
  cr_conn *pConn = pRun->pConn;
  int active = 0;
  int rc = cr_schema_ensure(pConn, pzErr);
  if (rc == SQLITE_OK) rc = cr_dest_load(pConn->db, zDest, &pRun->pDest, &active, pzErr);
  if (rc == SQLITE_OK && !isTest && !active) {
    cr_set_error(pzErr,
                 "destination \"%s\" is not active: check it with callrail_preview and "
                 "callrail_test, then SELECT callrail_activate('%s')",
                 zDest, zDest);
    rc = SQLITE_ERROR;
  }
  if (rc == SQLITE_OK) {
    rc = cr_cred_load(pConn->db, pConn, pRun->pDest->zCredential, &pRun->pCred, pzErr);
  }
  if (rc == SQLITE_OK) rc = cr_dest_check_cred(pRun->pDest, pRun->pCred, pzErr);
  return rc;
}

int cr_run_open(cr_conn *pConn, const char *zDest, const char *zKind, const char *zQuery,
                const char *zJson, cr_run **ppRun, char **pzErr) {
  cr_run *pRun = sqlite3_malloc(sizeof(*pRun));
  int rc = pRun ? SQLITE_OK : SQLITE_NOMEM;
  *ppRun = pRun;
  if (rc != SQLITE_OK) return rc;
  memset(pRun, 0, sizeof(*pRun));
  pRun->pConn = pConn;
  pRun->tStart = cr_now_ms();
  pRun->nTotal = -1;
  if (pConn->nRuns > 0) {
    /* A run inside another's query would wait on the outer run's audit
    ** transaction: refuse it. */
    cr_set_error(pzErr, "callrail_send and callrail_test cannot run inside the query of another "
                        "callrail_send on the same connection");
    return SQLITE_ERROR;
  }
  pConn->nRuns++;
  pRun->counted = 1;
  rc = cr_run_load(pRun, zDest, zJson != 0, pzErr);
  if (rc == SQLITE_OK) {
    int prog = pRun->pDest->progress;
    pRun->showProgress = zJson == 0 && (prog == 1 || (prog == -1 && isatty(2)));
    rc = cr_pipeline_open(pConn->db, pRun->pDest, pRun->pCred->zApiBase, zQuery, zJson,
                          &pRun->pPipe, pzErr);
  }
  if (rc == SQLITE_OK && pConn->pHttp == 0) rc = cr_http_new(&pConn->pHttp, pzErr);
  if (rc == SQLITE_OK) rc = cr_store_open(pConn->db, &pRun->pStore, pzErr);
  if (rc == SQLITE_OK) rc = cr_run_claim(pRun, zDest, zKind, pzErr);
  /* What was delivered is read only now that no other run of the
  ** destination is alive, and through the audit connection, which sees
  ** the latest commits (the user's statement reads an older snapshot). */
  if (rc == SQLITE_OK && zJson == 0) {
    rc = cr_pipeline_detect_changes(pRun->pPipe, cr_store_db(pRun->pStore), pzErr);
  }
  if (rc == SQLITE_OK) rc = cr_pacer_new(pRun->pDest, &pRun->pPacer);
  /* Counting costs a pass over the query: only done for the progress line. */
  if (rc == SQLITE_OK && pRun->showProgress) {
    rc = cr_query_count(pConn->db, zQuery, &pRun->nTotal, pzErr);
  }
  return rc;
}

/* Writes the run's final row (once). */
static int cr_run_end(cr_run *pRun, char **pzErr) {
  int rc = SQLITE_OK;
  if (pRun->pStore && pRun->iRun && !pRun->ended) {
    pRun->ended = 1;
    rc = cr_run_record(pRun, pzErr);
    pRun->counts.records = cr_pipeline_records(pRun->pPipe);
    pRun->counts.skipped = cr_pipeline_skipped(pRun->pPipe);
    pRun->counts.changed = cr_pipeline_changed(pRun->pPipe);
    if (rc == SQLITE_OK) {
      rc = cr_store_run_end(pRun->pStore, pRun->iRun, &pRun->counts,
                            pRun->zStatus ? pRun->zStatus : "done", pRun->zEndError, pzErr);
    }
    if (rc == SQLITE_OK && pRun->pDest->zKey && pRun->counts.ok > 0) {
      rc = cr_store_settle(pRun->pStore, pRun->pDest->zName, pzErr);
    }
    cr_run_progress(pRun, 1);
  }
  return rc;
}

/* Stops a run early (the caller read no further), records everything in
** flight, and frees it. */
void cr_run_close(cr_run *pRun) {
  char *zErr = 0;
  if (pRun == 0) return;
  if (pRun->pStore && pRun->iRun && !pRun->ended) {
    /* The caller stopped reading (LIMIT) or an error ended the statement:
    ** start nothing new, but finish and record what is in flight. */
    if (cr_check_interrupt(pRun->pConn->db) == SQLITE_INTERRUPT) {
      cr_run_stop(pRun, "interrupted", &zErr); /* Ctrl-C between two rows */
    } else if (!pRun->stopping) {
      pRun->stopping = 1;
      pRun->zStatus = "interrupted";
    }
    while (pRun->nFlying > 0 && cr_run_wait(pRun, CR_POLL_MS, &zErr) == SQLITE_OK) {
    }
    cr_run_abort_flying(pRun, &zErr);
    cr_run_drop_queue(pRun);
    cr_run_end(pRun, &zErr);
  }
  while (pRun->pHead) {
    cr_outcome *p = pRun->pHead;
    pRun->pHead = p->pNext;
    cr_outcome_free(p);
  }
  sqlite3_free(zErr);
  if (pRun->counted) pRun->pConn->nRuns--;
  cr_pipeline_close(pRun->pPipe);
  cr_store_close(pRun->pStore);
  cr_pacer_free(pRun->pPacer);
  cr_http_headers_free(pRun->apHeaders[0]);
  cr_http_headers_free(pRun->apHeaders[1]);
  cr_cred_free(pRun->pCred);
  cr_dest_free(pRun->pDest);
  sqlite3_free(pRun->zEndError);
  sqlite3_free(pRun->zWaitingFor);
  sqlite3_free(pRun->zQuotaNote);
  cr_request_free(pRun->pInvalid);
  sqlite3_free(pRun);
}
