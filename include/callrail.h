/*
** callrail.h - the public interface of the callrail SQLite extension.
**
** The extension is normally loaded at run time:
**
**   sqlite3> .load ./callrail
**   SELECT load_extension('./callrail');
**
** An application may also link it statically (libcallrail.a, built with
** SQLITE_CORE) and register it on every connection it opens:
**
**   #include <sqlite3.h>
**   #include "callrail.h"
**
**   sqlite3_auto_extension((void (*)(void))sqlite3_callrail_init);
**   sqlite3_open("leads.db", &db);          // callrail_* is now available
**
** or on one connection: sqlite3_callrail_init(db, &zErrMsg, 0).
**
** Loading switches a file database to WAL journal mode (a persistent
** change): the extension's audit rows are committed by a second connection
** while the statement that sends is still running.
*/
#ifndef CALLRAIL_H
#define CALLRAIL_H

#include <sqlite3.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The entry point is the one symbol the loadable module exports: it is
** built with -fvisibility=hidden, so everything else stays internal. */
#if defined(_WIN32)
#define CALLRAIL_EXPORT __declspec(dllexport)
#elif defined(__GNUC__)
#define CALLRAIL_EXPORT __attribute__((visibility("default")))
#else
#define CALLRAIL_EXPORT
#endif

/* Registers the callrail_* functions and tables on db.  Returns SQLITE_OK,
** or an error code with a message in *pzErrMsg (free it with sqlite3_free). */
CALLRAIL_EXPORT int sqlite3_callrail_init(sqlite3 *db, char **pzErrMsg,
                                          const sqlite3_api_routines *pApi);

#ifdef __cplusplus
}
#endif

#endif /* CALLRAIL_H */
