/*
** cr_cred.c - credentials: where an API key comes from, and where it may go.
**
** callrail_credentials stores only a reference to a key ('env:VAR',
** 'file:PATH') or the word 'memory'; a key given inline lives in this
** connection's memory (cr_credreg) and is wiped when the connection
** closes.  So no table, file, WAL or journal ever holds a key.
**
** The key is sent only to its credential's api_base origin.  api_base must
** be https, except a loopback address for tests; cr_origin_check() compares
** scheme, host and port of every URL with it before a request is made.
**
** And a database file must not choose that origin: its rows may have been
** written by someone else.  cr_cred_load(), the one place a key is
** resolved, resolves it only for a row this connection registered as it
** is, or for CallRail's own api_base (cr_cred_trusted()).
*/
#include "cr_internal.h"
SQLITE_EXTENSION_INIT3

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* Keys longer than this are not CallRail keys (they are 32 hex digits). */
#define CR_MAX_TOKEN 4096

/* A credential registered by callrail_credential() on this connection:
** what the user named in their own process.  Only such a registration (or
** CallRail's own api_base) lets a key leave; see cr_cred_trusted(). */
struct cr_credreg {
  char *zName;
  char *zSource;  /* 'env:VAR', 'file:PATH' or 'memory' */
  char *zApiBase; /* normalised */
  char *zCaFile;  /* or NULL */
  char *zToken;   /* the key of a 'memory' credential, else NULL */
  cr_credreg *pNext;
};

/* Overwrites a secret before its memory is freed. */
static void cr_wipe_free(char *z) {
  if (z) {
    volatile char *p = z;
    while (*p)
      *p++ = 0;
    sqlite3_free(z);
  }
}

static void cr_credreg_clear(cr_credreg *p) {
  sqlite3_free(p->zSource);
  sqlite3_free(p->zApiBase);
  sqlite3_free(p->zCaFile);
  cr_wipe_free(p->zToken);
  p->zSource = p->zApiBase = p->zCaFile = p->zToken = 0;
}

static cr_credreg *cr_credreg_find(cr_conn *pConn, const char *zName) {
  cr_credreg *p;
  for (p = pConn->pCreds; p && strcmp(p->zName, zName) != 0; p = p->pNext) {
  }
  return p;
}

int cr_cred_register(cr_conn *pConn, const char *zName, const char *zSource, const char *zApiBase,
                     const char *zCaFile, const char *zToken) {
  cr_credreg *p = cr_credreg_find(pConn, zName);
  if (p == 0) {
    p = sqlite3_malloc(sizeof(*p));
    if (p == 0) return SQLITE_NOMEM;
    memset(p, 0, sizeof(*p));
    p->zName = cr_strdup(zName);
    if (p->zName == 0) {
      sqlite3_free(p);
      return SQLITE_NOMEM;
    }
    p->pNext = pConn->pCreds;
    pConn->pCreds = p;
  }
  cr_credreg_clear(p);
  p->zSource = cr_strdup(zSource);
  p->zApiBase = cr_strdup(zApiBase);
  p->zCaFile = cr_strdup(zCaFile);
  p->zToken = cr_strdup(zToken);
  if (p->zSource && p->zApiBase && (p->zCaFile || !zCaFile) && (p->zToken || !zToken)) {
    return SQLITE_OK;
  }
  cr_credreg_clear(p); /* half a registration must not match any row */
  return SQLITE_NOMEM;
}

void cr_cred_forget_all(cr_conn *pConn) {
  while (pConn->pCreds) {
    cr_credreg *p = pConn->pCreds;
    pConn->pCreds = p->pNext;
    cr_credreg_clear(p);
    sqlite3_free(p->zName);
    sqlite3_free(p);
  }
}

void cr_cred_free(cr_cred *p) {
  if (p) {
    sqlite3_free(p->zName);
    sqlite3_free(p->zApiBase);
    sqlite3_free(p->zCaFile);
    cr_wipe_free(p->zToken);
    sqlite3_free(p);
  }
}

/* ------------------------------------------------------------------------
** URLs and origins
*/

/* The parts of an absolute URL that make its origin. */
typedef struct cr_origin {
  char *zScheme;
  char *zHost;
  char *zPort;
} cr_origin;

static void cr_origin_clear(cr_origin *o) {
  curl_free(o->zScheme);
  curl_free(o->zHost);
  curl_free(o->zPort);
  memset(o, 0, sizeof(*o));
}

/* Splits zUrl into its origin; CURLUE_OK or libcurl's parse error. */
static CURLUcode cr_origin_parse(const char *zUrl, cr_origin *o, CURLU **ppUrl) {
  CURLU *pUrl = curl_url();
  CURLUcode uc = pUrl ? curl_url_set(pUrl, CURLUPART_URL, zUrl, 0) : CURLUE_OUT_OF_MEMORY;
  memset(o, 0, sizeof(*o));
  if (uc == CURLUE_OK) uc = curl_url_get(pUrl, CURLUPART_SCHEME, &o->zScheme, 0);
  if (uc == CURLUE_OK) uc = curl_url_get(pUrl, CURLUPART_HOST, &o->zHost, 0);
  if (uc == CURLUE_OK) uc = curl_url_get(pUrl, CURLUPART_PORT, &o->zPort, CURLU_DEFAULT_PORT);
  if (uc != CURLUE_OK) cr_origin_clear(o);
  if (ppUrl && uc == CURLUE_OK)
    *ppUrl = pUrl;
  else
    curl_url_cleanup(pUrl);
  return uc;
}

/* localhost, [::1] or an IPv4 literal in 127.0.0.0/8 (not a name such as
** 127.0.0.1.example.com, which DNS may send anywhere). */
static int cr_host_is_loopback(const char *zHost) {
  struct in_addr a;
  if (strcasecmp(zHost, "localhost") == 0 || strcmp(zHost, "[::1]") == 0) return 1;
  return inet_pton(AF_INET, zHost, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

int cr_url_is_loopback(const char *zUrl) {
  cr_origin o;
  int res = 0;
  if (cr_origin_parse(zUrl, &o, 0) == CURLUE_OK) {
    res = cr_host_is_loopback(o.zHost);
    cr_origin_clear(&o);
  }
  return res;
}

int cr_origin_check(const char *zApiBase, const char *zUrl, char **pzErr) {
  cr_origin a, b;
  int rc = SQLITE_ERROR;
  size_t n = strlen(zApiBase);
  /* The usual case, a path joined to the normalised api_base (which names
  ** scheme, host and port): the same origin without parsing. */
  if (strncmp(zUrl, zApiBase, n) == 0 && zUrl[n] == '/') return SQLITE_OK;
  if (cr_origin_parse(zApiBase, &a, 0) != CURLUE_OK) {
    cr_set_error(pzErr, "api_base \"%s\" is not a valid URL", zApiBase);
    return SQLITE_ERROR;
  }
  if (cr_origin_parse(zUrl, &b, 0) != CURLUE_OK) {
    cr_set_error(pzErr, "\"%s\" is not a valid URL", zUrl);
  } else if (strcasecmp(a.zScheme, b.zScheme) != 0 || strcasecmp(a.zHost, b.zHost) != 0 ||
             strcmp(a.zPort, b.zPort) != 0) {
    cr_set_error(pzErr, "URL origin %s://%s:%s differs from the credential's api_base %s://%s:%s",
                 b.zScheme, b.zHost, b.zPort, a.zScheme, a.zHost, a.zPort);
  } else {
    rc = SQLITE_OK;
  }
  cr_origin_clear(&a);
  cr_origin_clear(&b);
  return rc;
}

/* Refuses an api_base that has more than an origin. */
static int cr_api_base_bare(CURLU *pUrl) {
  static const CURLUPart aPart[] = {CURLUPART_USER, CURLUPART_PASSWORD, CURLUPART_QUERY,
                                    CURLUPART_FRAGMENT};
  char *zPath = 0;
  size_t i;
  int bare = 1;
  for (i = 0; i < sizeof(aPart) / sizeof(aPart[0]); i++) {
    char *z = 0;
    if (curl_url_get(pUrl, aPart[i], &z, 0) == CURLUE_OK) bare = 0;
    curl_free(z);
  }
  if (curl_url_get(pUrl, CURLUPART_PATH, &zPath, 0) == CURLUE_OK && strcmp(zPath, "/") != 0) {
    bare = 0;
  }
  curl_free(zPath);
  return bare;
}

int cr_api_base_normalize(const char *zCred, const char *zBase, char **pzOut, char **pzErr) {
  cr_origin o;
  CURLU *pUrl = 0;
  int rc = SQLITE_ERROR;
  if (zBase == 0 || strpbrk(zBase, "\r\n\t ") || cr_origin_parse(zBase, &o, &pUrl) != CURLUE_OK) {
    cr_set_error(pzErr, "credential \"%s\": api_base \"%s\" is not a valid URL", zCred,
                 zBase ? zBase : "(NULL)");
    return SQLITE_ERROR;
  }
  if (!cr_api_base_bare(pUrl)) {
    cr_set_error(pzErr,
                 "credential \"%s\": api_base \"%s\" must be an origin only "
                 "(scheme://host[:port]), with no path, query or user info",
                 zCred, zBase);
  } else if (strcasecmp(o.zScheme, "https") != 0 &&
             !(strcasecmp(o.zScheme, "http") == 0 && cr_host_is_loopback(o.zHost))) {
    cr_set_error(pzErr,
                 "credential \"%s\": api_base \"%s\" must use https "
                 "(http is allowed only for a loopback address, for testing)",
                 zCred, zBase);
  } else {
    *pzOut = sqlite3_mprintf("%s://%s:%s", o.zScheme, o.zHost, o.zPort);
    rc = *pzOut ? SQLITE_OK : SQLITE_NOMEM;
  }
  cr_origin_clear(&o);
  curl_url_cleanup(pUrl);
  return rc;
}

/* ------------------------------------------------------------------------
** Resolving the key
*/

/* Reads a key from a file that only its owner may read (like ssh). */
static int cr_token_from_file(const char *zCred, const char *zPath, char **pzToken, char **pzErr) {
  struct stat st;
  char aBuf[CR_MAX_TOKEN + 2];
  ssize_t n;
  int fd = open(zPath, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    cr_set_error(pzErr, "credential \"%s\": cannot read key file %s: %s", zCred, zPath,
                 strerror(errno));
    return SQLITE_ERROR;
  }
  if (fstat(fd, &st) != 0 || (st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    close(fd);
    cr_set_error(pzErr,
                 "credential \"%s\": key file %s is readable by other users; "
                 "run: chmod 600 %s",
                 zCred, zPath, zPath);
    return SQLITE_ERROR;
  }
  n = read(fd, aBuf, CR_MAX_TOKEN + 1);
  close(fd);
  if (n < 0 || n > CR_MAX_TOKEN) {
    cr_set_error(pzErr, "credential \"%s\": key file %s is unreadable or too large", zCred, zPath);
    return SQLITE_ERROR;
  }
  while (n > 0 && (aBuf[n - 1] == '\n' || aBuf[n - 1] == '\r' || aBuf[n - 1] == ' '))
    n--;
  aBuf[n] = 0;
  *pzToken = cr_strdup(aBuf);
  memset(aBuf, 0, sizeof(aBuf));
  return SQLITE_OK;
}

/* The key of a credential whose use cr_cred_trusted() allowed; pReg is
** its registration on this connection, if any. */
static int cr_token_resolve(const cr_credreg *pReg, const char *zCred, const char *zSource,
                            char **pzToken, char **pzErr) {
  if (strncmp(zSource, "env:", 4) == 0) {
    const char *zVal = getenv(zSource + 4);
    if (zVal == 0 || zVal[0] == 0) {
      cr_set_error(pzErr, "credential \"%s\": environment variable %s is not set", zCred,
                   zSource + 4);
      return SQLITE_ERROR;
    }
    *pzToken = cr_strdup(zVal);
    return SQLITE_OK;
  }
  if (strncmp(zSource, "file:", 5) == 0) {
    return cr_token_from_file(zCred, zSource + 5, pzToken, pzErr);
  }
  if (strcmp(zSource, "memory") != 0 || pReg == 0 || pReg->zToken == 0) {
    cr_set_error(pzErr, "credential \"%s\" has an unknown source \"%s\"", zCred, zSource);
    return SQLITE_ERROR;
  }
  /* cr_cred_trusted() let a 'memory' row through only as registered. */
  *pzToken = cr_strdup(pReg->zToken);
  return *pzToken ? SQLITE_OK : SQLITE_NOMEM;
}

/* A key with a quote, CR or LF could forge headers: refuse it, unshown. */
int cr_token_check(const char *zCred, const char *zToken, char **pzErr) {
  if (strlen(zToken) > CR_MAX_TOKEN) {
    cr_set_error(pzErr, "credential \"%s\": the key is longer than %d bytes", zCred, CR_MAX_TOKEN);
    return SQLITE_ERROR;
  }
  if (zToken[0] == 0 || strpbrk(zToken, "\"\r\n")) {
    cr_set_error(pzErr, "credential \"%s\": the key is empty or holds a quote, CR or LF", zCred);
    return SQLITE_ERROR;
  }
  return SQLITE_OK;
}

/* Reads name, source and api_base of credential zName. */
static int cr_cred_row(sqlite3 *db, const char *zName, cr_cred **ppCred, char **pzSource,
                       char **pzErr) {
  sqlite3_stmt *pStmt = 0;
  int rc;
  if (zName == 0) {
    cr_set_error(pzErr, "credential name is NULL");
    return SQLITE_ERROR;
  }
  rc = cr_prepare(db, "SELECT source, api_base, ca_file FROM callrail_credentials WHERE name=?1",
                  &pStmt, pzErr);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(pStmt, 1, zName, -1, SQLITE_STATIC);
    if (sqlite3_step(pStmt) != SQLITE_ROW) {
      cr_set_error(pzErr, "unknown credential \"%s\"", zName);
      rc = SQLITE_ERROR;
    }
  }
  if (rc == SQLITE_OK) {
    cr_cred *p = sqlite3_malloc(sizeof(*p));
    if (p == 0) {
      rc = SQLITE_NOMEM;
    } else {
      p->zName = cr_strdup(zName);
      p->zApiBase = 0;
      p->zToken = 0;
      p->zCaFile = cr_strdup((const char *)sqlite3_column_text(pStmt, 2));
      /* The table may have been edited (or come with a file someone else
      ** wrote): its api_base passes the same rules again before any use. */
      rc = cr_api_base_normalize(zName, (const char *)sqlite3_column_text(pStmt, 1), &p->zApiBase,
                                 pzErr);
      p->isLoopback = rc == SQLITE_OK && cr_url_is_loopback(p->zApiBase);
      if (pzSource) *pzSource = cr_strdup((const char *)sqlite3_column_text(pStmt, 0));
      *ppCred = p;
    }
  }
  sqlite3_finalize(pStmt);
  return rc;
}

int cr_cred_load_public(sqlite3 *db, const char *zName, cr_cred **ppCred, char **pzErr) {
  return cr_cred_row(db, zName, ppCred, 0, pzErr);
}

/* True if a's and b's text is the same (both may be NULL). */
static int cr_same_text(const char *a, const char *b) {
  return a == b || (a && b && strcmp(a, b) == 0);
}

/* True if the row (pCred, zSource) is exactly what this connection
** registered under its name. */
static int cr_cred_matches(const cr_credreg *pReg, const cr_cred *pCred, const char *zSource) {
  return pReg && pReg->zSource && strcmp(pReg->zSource, zSource) == 0 &&
         strcmp(pReg->zApiBase, pCred->zApiBase) == 0 &&
         cr_same_text(pReg->zCaFile, pCred->zCaFile);
}

/* True if the row sends its key to CallRail itself, verified with the
** system's certificates. */
static int cr_cred_is_callrail(const cr_cred *pCred) {
  char *zCallRail = 0;
  char *zIgnored = 0;
  int res = 0;
  if (pCred->zCaFile == 0 &&
      cr_api_base_normalize("", CR_DEFAULT_API_BASE, &zCallRail, &zIgnored) == SQLITE_OK) {
    res = strcasecmp(zCallRail, pCred->zApiBase) == 0;
  }
  sqlite3_free(zCallRail);
  sqlite3_free(zIgnored);
  return res;
}

/* The call that registers the row as it is (a 'memory' key must be typed
** again). */
static char *cr_confirm_call(const cr_cred *p, const char *zSource) {
  const char *zArg = strcmp(zSource, "memory") == 0 ? "<key>" : zSource;
  if (p->zCaFile) {
    return sqlite3_mprintf("SELECT callrail_credential('%q', '%q', '%q', '%q');", p->zName, zArg,
                           p->zApiBase, p->zCaFile);
  }
  return sqlite3_mprintf("SELECT callrail_credential('%q', '%q', '%q');", p->zName, zArg,
                         p->zApiBase);
}

/* The rule that keeps a database file from choosing where a key goes.  A
** row of callrail_credentials may come with a file written by someone else,
** or be changed by a trigger or another process; its source can name any
** variable or file of the user.  So a key is resolved only when the row is
** exactly what callrail_credential() registered on this connection (source,
** api_base and ca_file), or when it goes to CallRail's own api_base with
** no ca_file; a 'memory' key only in the first case (it was typed for its
** registration's api_base).  Otherwise nothing is resolved or sent. */
static int cr_cred_trusted(const cr_credreg *pReg, const cr_cred *pCred, const char *zSource,
                           char **pzErr) {
  if (cr_cred_matches(pReg, pCred, zSource)) return SQLITE_OK;
  if (strcmp(zSource, "memory") != 0 && cr_cred_is_callrail(pCred)) return SQLITE_OK;
  if (strcmp(zSource, "memory") == 0 && pReg == 0) {
    cr_set_error(pzErr,
                 "credential \"%s\" keeps its key in the memory of the connection that "
                 "registered it; call callrail_credential('%s', ...) on this connection "
                 "(nothing was sent)",
                 pCred->zName, pCred->zName);
  } else {
    char *zConfirm = cr_confirm_call(pCred, zSource);
    cr_set_error(pzErr,
                 "credential \"%s\" (key from %s) would send its key to api_base %s%s%s, "
                 "which was not registered on this connection: the database may come from "
                 "someone else, or its row was changed since.  Nothing was sent.  If that "
                 "server is yours, confirm it on this connection: %s",
                 pCred->zName, zSource, pCred->zApiBase, pCred->zCaFile ? " with ca_file " : "",
                 pCred->zCaFile ? pCred->zCaFile : "",
                 zConfirm ? zConfirm : "callrail_credential()");
    sqlite3_free(zConfirm);
  }
  return SQLITE_ERROR;
}

int cr_cred_load(sqlite3 *db, cr_conn *pConn, const char *zName, cr_cred **ppCred, char **pzErr) {
  char *zSource = 0;
  cr_cred *pCred = 0;
  const cr_credreg *pReg = zName ? cr_credreg_find(pConn, zName) : 0;
  int rc = cr_cred_row(db, zName, &pCred, &zSource, pzErr);
  if (rc == SQLITE_OK && zSource == 0) {
    cr_set_error(pzErr, "credential \"%s\" has no source", zName);
    rc = SQLITE_ERROR;
  }
  if (rc == SQLITE_OK) rc = cr_cred_trusted(pReg, pCred, zSource, pzErr);
  if (rc == SQLITE_OK) rc = cr_token_resolve(pReg, zName, zSource, &pCred->zToken, pzErr);
  if (rc == SQLITE_OK) rc = cr_token_check(zName, pCred->zToken, pzErr);
  sqlite3_free(zSource);
  if (rc != SQLITE_OK) {
    cr_cred_free(pCred);
    pCred = 0;
  }
  *ppCred = pCred;
  return rc;
}
