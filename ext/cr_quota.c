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

#include <stdio.h>
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

/* ------------------------------------------------------------------------
** Pacing: sliding windows per (account, class)
**
** A window counts the requests of the last `span` ms in slots of `slot` ms
** (1 ms for the per-second window, 1 s for the hour, 10 s for the day).
** A request stays counted until a whole span has passed since the end of
** its slot, so the count never falls short of the truth: pacing errs on
** the safe side by at most one slot.
**
** Every request of any run, destination or process sharing the file has a
** row in callrail_responses, written before it was sent: that table is the
** one quota ledger.  A bucket's usage of the last day is loaded from it
** (through the quota index) when the bucket is first used; after that,
** cr_pacer_sync() adds the requests of other runs written since the last
** look, found by row id (an index lookup, however long the history).  The
** run syncs while it holds the file's write lock and admits and writes its
** pending rows before it lets go, so two runs never admit the same room.
** See docs/design.md#one-quota-ledger.
*/

#define CR_WINDOW_SECOND 0
#define CR_WINDOW_HOUR 1
#define CR_WINDOW_DAY 2
#define CR_N_WINDOW 3

/* CallRail's published limits (docs/callrail-api.md#rate-limits). */
static const sqlite3_int64 cr_default_limits[3][CR_N_WINDOW] = {
    /* general */ {0, 1000, 10000},
    /* sms */ {0, 150, 1000},
    /* calls */ {0, 100, 2000},
};
static const sqlite3_int64 cr_window_span[CR_N_WINDOW] = {1000, 3600000, 86400000};
static const sqlite3_int64 cr_window_slot[CR_N_WINDOW] = {1, 1000, 10000};

typedef struct cr_window {
  sqlite3_int64 limit; /* 0: no limit */
  sqlite3_int64 slotMs;
  int nSlot;
  int *aCount;         /* requests per slot, a ring */
  sqlite3_int64 iHead; /* absolute number of the newest slot */
  sqlite3_int64 nSum;  /* requests in the ring */
} cr_window;

typedef struct cr_bucket cr_bucket;
struct cr_bucket {
  char *zBucket;
  const char *zClass;
  cr_window aWin[CR_N_WINDOW];
  cr_bucket *pNext;
};

struct cr_pacer {
  const cr_dest *pDest;
  cr_bucket *pBuckets;
  sqlite3_int64 iLedger; /* row id of the ledger read up to; -1: none yet */
  char zWait[300];       /* what the last wait was for */
};

static int cr_class_index(const char *zClass) {
  return strcmp(zClass, "sms") == 0 ? 1 : strcmp(zClass, "calls") == 0 ? 2 : 0;
}

/* Moves the window's head to the slot of time tMs, emptying old slots. */
static void cr_window_advance(cr_window *w, sqlite3_int64 tMs) {
  sqlite3_int64 iSlot = tMs / w->slotMs;
  if (iSlot - w->iHead >= w->nSlot) {
    memset(w->aCount, 0, sizeof(int) * w->nSlot);
    w->nSum = 0;
    w->iHead = iSlot;
  }
  while (w->iHead < iSlot) {
    int *p = &w->aCount[++w->iHead % w->nSlot];
    w->nSum -= *p;
    *p = 0;
  }
}

static void cr_window_add(cr_window *w, sqlite3_int64 tMs) {
  sqlite3_int64 iSlot = tMs / w->slotMs;
  if (w->limit == 0 || iSlot <= w->iHead - w->nSlot) return;
  if (iSlot > w->iHead) cr_window_advance(w, tMs);
  w->aCount[iSlot % w->nSlot]++;
  w->nSum++;
}

/* Ms until the window has room for one more request at tMs (0: now). */
static sqlite3_int64 cr_window_wait(cr_window *w, sqlite3_int64 tMs) {
  sqlite3_int64 i, nFree;
  if (w->limit == 0) return 0;
  cr_window_advance(w, tMs);
  if (w->nSum < w->limit) return 0;
  /* The oldest slots must leave until one request's room is free. */
  nFree = w->nSum - w->limit + 1;
  for (i = w->iHead - w->nSlot + 1; i <= w->iHead; i++) {
    nFree -= w->aCount[i % w->nSlot];
    if (nFree <= 0) return (i + w->nSlot) * w->slotMs - tMs;
  }
  return w->nSlot * w->slotMs;
}

/* The limits of a bucket of class iClass for this destination: its own
** rate_limit applies to the class its requests count in. */
static void cr_bucket_limits(const cr_dest *d, int iClass, int ownClass, sqlite3_int64 *a) {
  int i;
  for (i = 0; i < CR_N_WINDOW; i++)
    a[i] = cr_default_limits[iClass][i];
  if (iClass != ownClass) return;
  if (d->perSecond > 0) a[CR_WINDOW_SECOND] = d->perSecond;
  if (d->perHour > 0) a[CR_WINDOW_HOUR] = d->perHour;
  if (d->perDay > 0) a[CR_WINDOW_DAY] = d->perDay;
}

static void cr_bucket_free(cr_bucket *b) {
  int i;
  for (i = 0; i < CR_N_WINDOW; i++)
    sqlite3_free(b->aWin[i].aCount);
  sqlite3_free(b->zBucket);
  sqlite3_free(b);
}

static cr_bucket *cr_bucket_new(const cr_dest *d, const char *zBucket, const char *zClass,
                                int ownClass) {
  cr_bucket *b = sqlite3_malloc(sizeof(*b));
  sqlite3_int64 aLimit[CR_N_WINDOW];
  int i, ok = b != 0;
  if (!ok) return 0;
  memset(b, 0, sizeof(*b));
  b->zBucket = cr_strdup(zBucket);
  b->zClass = zClass;
  cr_bucket_limits(d, cr_class_index(zClass), ownClass, aLimit);
  for (i = 0; ok && i < CR_N_WINDOW; i++) {
    cr_window *w = &b->aWin[i];
    w->limit = aLimit[i];
    w->slotMs = cr_window_slot[i];
    /* One slot more than the span: a request leaves the count only after
    ** a full span has passed since its slot ended. */
    w->nSlot = (int)(cr_window_span[i] / cr_window_slot[i]) + 1;
    w->aCount = sqlite3_malloc(sizeof(int) * w->nSlot);
    ok = w->aCount != 0;
    if (ok) memset(w->aCount, 0, sizeof(int) * w->nSlot);
  }
  if (!ok || b->zBucket == 0) {
    cr_bucket_free(b);
    return 0;
  }
  return b;
}

static void cr_bucket_count(void *pArg, sqlite3_int64 tSentMs) {
  cr_bucket *b = (cr_bucket *)pArg;
  int i;
  for (i = 0; i < CR_N_WINDOW; i++)
    cr_window_add(&b->aWin[i], tSentMs);
}

/* (Re)loads the bucket's usage of the last day from the audit table. */
static int cr_bucket_load(cr_bucket *b, cr_store *pStore, char **pzErr) {
  sqlite3_int64 tNow = cr_wall_ms();
  int i;
  for (i = 0; i < CR_N_WINDOW; i++) {
    cr_window *w = &b->aWin[i];
    memset(w->aCount, 0, sizeof(int) * w->nSlot);
    w->nSum = 0;
    w->iHead = tNow / w->slotMs;
  }
  return cr_store_usage(pStore, b->zBucket, strcmp(b->zClass, "general") ? b->zClass : 0,
                        tNow - cr_window_span[CR_WINDOW_DAY], cr_bucket_count, b, pzErr);
}

/* The bucket of (zBucket, zClass) if it exists. */
static cr_bucket *cr_pacer_find(cr_pacer *p, const char *zBucket, const char *zClass) {
  cr_bucket *b;
  for (b = p->pBuckets; b; b = b->pNext) {
    if (strcmp(b->zBucket, zBucket) == 0 && strcmp(b->zClass, zClass) == 0) break;
  }
  return b;
}

static int cr_pacer_bucket(cr_pacer *p, cr_store *pStore, const char *zBucket, const char *zClass,
                           int ownClass, cr_bucket **ppB, char **pzErr) {
  cr_bucket *b = cr_pacer_find(p, zBucket, zClass);
  int rc = SQLITE_OK;
  if (b == 0) {
    b = cr_bucket_new(p->pDest, zBucket, zClass, ownClass);
    if (b == 0) return SQLITE_NOMEM;
    b->pNext = p->pBuckets;
    p->pBuckets = b;
    rc = cr_bucket_load(b, pStore, pzErr);
  }
  *ppB = b;
  return rc;
}

int cr_pacer_new(const cr_dest *pDest, cr_pacer **pp) {
  cr_pacer *p = sqlite3_malloc(sizeof(*p));
  *pp = p;
  if (p == 0) return SQLITE_NOMEM;
  memset(p, 0, sizeof(*p));
  p->pDest = pDest;
  p->iLedger = -1;
  return SQLITE_OK;
}

/* Counts a request of another run in the buckets it belongs to. */
static void cr_pacer_count_other(void *pArg, const char *zBucket, const char *zClass,
                                 sqlite3_int64 tSentMs) {
  cr_pacer *p = (cr_pacer *)pArg;
  cr_bucket *b;
  for (b = p->pBuckets; b; b = b->pNext) {
    if (strcmp(b->zBucket, zBucket) == 0 &&
        (strcmp(b->zClass, "general") == 0 || (zClass && strcmp(b->zClass, zClass) == 0))) {
      cr_bucket_count(b, tSentMs);
    }
  }
}

int cr_pacer_sync(cr_pacer *p, cr_store *pStore, sqlite3_int64 iRunSelf, char **pzErr) {
  return cr_store_ledger(pStore, iRunSelf, &p->iLedger, cr_pacer_count_other, p, pzErr);
}

const char *cr_pacer_wait_reason(cr_pacer *p) {
  return p->zWait;
}

void cr_pacer_free(cr_pacer *p) {
  if (p == 0) return;
  while (p->pBuckets) {
    cr_bucket *b = p->pBuckets;
    p->pBuckets = b->pNext;
    cr_bucket_free(b);
  }
  sqlite3_free(p);
}

/* Moves one request counted at tFrom to tTo (later), if tFrom is still
** in the window. */
static void cr_window_move(cr_window *w, sqlite3_int64 tFrom, sqlite3_int64 tTo) {
  sqlite3_int64 iFrom = tFrom / w->slotMs;
  if (w->limit == 0) return;
  cr_window_advance(w, tTo);
  if (iFrom > w->iHead - w->nSlot && w->aCount[iFrom % w->nSlot] > 0) {
    w->aCount[iFrom % w->nSlot]--;
    w->nSum--;
  }
  cr_window_add(w, tTo);
}

void cr_pacer_restamp(cr_pacer *p, int eMethod, const char *zUrl, sqlite3_int64 tAdmitted) {
  cr_quota_key q;
  sqlite3_int64 tNow = cr_wall_ms();
  const char *azClass[2] = {"general", 0};
  int i, j;
  cr_quota_key_of(eMethod, zUrl, &q);
  azClass[1] = strcmp(q.zClass, "general") ? q.zClass : 0;
  for (i = 0; q.zBucket && tNow > tAdmitted && i < 2 && azClass[i]; i++) {
    cr_bucket *b = cr_pacer_find(p, q.zBucket, azClass[i]);
    for (j = 0; b && j < CR_N_WINDOW; j++)
      cr_window_move(&b->aWin[j], tAdmitted, tNow);
  }
  cr_quota_key_clear(&q);
}

static const char *const cr_window_names[CR_N_WINDOW] = {"second", "hour", "day"};

/* Says which window holds requests back, and until when, for the run's
** error text and progress line. */
static void cr_pacer_note_wait(cr_pacer *p, const cr_bucket *b, int iWin, sqlite3_int64 tFree) {
  char zWhen[32];
  cr_format_utc(tFree, zWhen, sizeof(zWhen));
  snprintf(p->zWait, sizeof(p->zWait),
           "account %s: the %s quota of %lld requests per %s is used up; it frees at %s",
           b->zBucket, b->zClass, b->aWin[iWin].limit, cr_window_names[iWin], zWhen);
}

int cr_pacer_admit(cr_pacer *p, cr_store *pStore, int eMethod, const char *zUrl,
                   sqlite3_int64 *pmsWait, sqlite3_int64 *ptAdmitted, char **pzErr) {
  cr_quota_key q;
  cr_bucket *aB[2] = {0, 0};
  sqlite3_int64 tNow = cr_wall_ms();
  sqlite3_int64 msWait = 0;
  int i, j, ownClass, rc;
  cr_quota_key_of(eMethod, zUrl, &q);
  ownClass = cr_class_index(q.zClass);
  rc = q.zBucket ? SQLITE_OK : SQLITE_ERROR;
  if (rc != SQLITE_OK) {
    cr_set_error(pzErr,
                 "URL %s names no CallRail account: quota is counted per account, and every "
                 "CallRail endpoint a destination writes to is under /v3/a/{account_id}/",
                 zUrl ? zUrl : "(none)");
  }
  if (rc == SQLITE_OK)
    rc = cr_pacer_bucket(p, pStore, q.zBucket, "general", ownClass, &aB[0], pzErr);
  if (rc == SQLITE_OK && ownClass != 0) {
    rc = cr_pacer_bucket(p, pStore, q.zBucket, q.zClass, ownClass, &aB[1], pzErr);
  }
  for (i = 0; rc == SQLITE_OK && i < 2 && aB[i]; i++) {
    for (j = 0; j < CR_N_WINDOW; j++) {
      sqlite3_int64 ms = cr_window_wait(&aB[i]->aWin[j], tNow);
      if (ms > msWait) {
        msWait = ms;
        cr_pacer_note_wait(p, aB[i], j, tNow + ms);
      }
    }
  }
  for (i = 0; rc == SQLITE_OK && msWait == 0 && i < 2 && aB[i]; i++) {
    cr_bucket_count(aB[i], tNow);
  }
  *ptAdmitted = tNow;
  cr_quota_key_clear(&q);
  *pmsWait = msWait;
  return rc;
}
