# tests/compat/compat.mk - a newer SQLite for the compat suite (included
# by the main Makefile; tests/run.sh runs `make compat`).
#
#   make compat   build/compat/{plain,strict}/libsqlite3.so.0 and
#                 build/compat/callrail.so (the extension built against the
#                 newer sqlite3.h/sqlite3ext.h, with -Werror)
#
# The amalgamation comes from the npm package better-sqlite3 (npm pack: the
# npm registry is the one package source CI can reach), downloaded once and
# cached in build/compat.  Without npm or the registry this fails, loudly:
# the compat suite must not pass by skipping.  strict/ is built with
# SQLITE_STRICT_SUBTYPE=1, which raises an error when a function sets a
# subtype without declaring SQLITE_RESULT_SUBTYPE.  The libraries carry the
# system's soname, so LD_LIBRARY_PATH swaps them in under Python's sqlite3
# module.  -O1: the suite's time is in compiling, not in running it.

COMPAT_DIR     := $(BUILD)/compat
COMPAT_PKG     := better-sqlite3-12.11.1
COMPAT_SRC     := $(COMPAT_DIR)/src
# The session and column-metadata APIs keep the library a drop-in for
# Debian's libsqlite3.so.0.
COMPAT_DEFS    := -DSQLITE_ENABLE_COLUMN_METADATA -DSQLITE_ENABLE_SESSION \
                  -DSQLITE_ENABLE_PREUPDATE_HOOK
COMPAT_LIBS    := $(COMPAT_DIR)/plain/libsqlite3.so.0 $(COMPAT_DIR)/strict/libsqlite3.so.0

.PHONY: compat

compat: $(COMPAT_LIBS) $(COMPAT_DIR)/callrail.so

$(COMPAT_DIR)/$(COMPAT_PKG).tgz:
	@mkdir -p $(COMPAT_DIR)
	@command -v npm >/dev/null 2>&1 || { echo "compat: npm is missing (apt-get install npm)"; exit 1; }
	cd $(COMPAT_DIR) && npm pack --loglevel=error $(COMPAT_PKG:better-sqlite3-%=better-sqlite3@%) \
	  >/dev/null || { echo "compat: npm pack failed; the npm registry must be reachable"; exit 1; }

$(COMPAT_SRC)/sqlite3.c: $(COMPAT_DIR)/$(COMPAT_PKG).tgz
	@mkdir -p $(COMPAT_SRC)
	tar -xzf $< -C $(COMPAT_SRC) --strip-components=3 package/deps/sqlite3/sqlite3.c \
	  package/deps/sqlite3/sqlite3.h package/deps/sqlite3/sqlite3ext.h
	touch $@

$(COMPAT_DIR)/plain/libsqlite3.so.0: $(COMPAT_SRC)/sqlite3.c
	@mkdir -p $(@D)
	$(CC) -O1 -fPIC -shared $(COMPAT_DEFS) -Wl,-soname,libsqlite3.so.0 -o $@ $< -lpthread -lm -ldl

$(COMPAT_DIR)/strict/libsqlite3.so.0: $(COMPAT_SRC)/sqlite3.c
	@mkdir -p $(@D)
	$(CC) -O1 -fPIC -shared $(COMPAT_DEFS) -DSQLITE_STRICT_SUBTYPE=1 -Wl,-soname,libsqlite3.so.0 \
	  -o $@ $< -lpthread -lm -ldl

# The check that the newer headers were the ones used: the dependency list
# must name them.
$(COMPAT_DIR)/callrail.so: $(SRCS) $(HDRS) $(COMPAT_SRC)/sqlite3.c | deps
	$(CC) -I$(COMPAT_SRC) $(ALL_CFLAGS) -MM ext/callrail.c | grep -q '$(COMPAT_SRC)/sqlite3ext.h' || \
	  { echo "compat: $(COMPAT_SRC)/sqlite3ext.h was not used"; exit 1; }
	$(CC) -I$(COMPAT_SRC) $(ALL_CFLAGS) -shared -o $@ $(SRCS) $(PKG_LIBS) -lpthread

# The README's Node snippet through better-sqlite3 (its own SQLite): not
# part of make test, see tests/compat/node_load.js.  Cached in build/compat.
.PHONY: compat-node
compat-node: callrail.so
	@mkdir -p $(COMPAT_DIR)/node
	[ -d $(COMPAT_DIR)/node/node_modules/better-sqlite3 ] || (cd $(COMPAT_DIR)/node && \
	  npm install --silent --no-audit --no-fund $(COMPAT_PKG:better-sqlite3-%=better-sqlite3@%))
	NODE_PATH=$(abspath $(COMPAT_DIR)/node/node_modules) node tests/compat/node_load.js $(abspath callrail)
