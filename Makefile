# callrail-sqlite: a SQLite extension that sends rows to the CallRail API v3.
#
#   make          build callrail.so and build/libcallrail.a (build deps only)
#   make install  PREFIX=/usr/local DESTDIR= : module, header, library, .pc
#   make demo     the main job: send records to the bundled fake CallRail server
#   make test     every test, plain and under ASan+UBSan, plus valgrind and
#                 a newer SQLite (build/compat)
#   make fuzz     libFuzzer targets (FUZZ_SECONDS=N); make fuzz-smoke: ~1 minute
#   make bench    benchmarks side by side with curl and wrk (not part of test)
#   make lint     clang-format check
#   make clean
#
# `deps` (every compile needs it) only checks the build dependencies and
# names what is missing with the apt-get command; it never installs.
# `demo-deps` and `test-deps` (make demo, make test) install what those
# need with apt-get when run as root, or name it.

CC      ?= gcc
BUILD   := build
PKGS    := sqlite3 libcurl
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs libcurl 2>/dev/null)

# Installation (make install PREFIX=... DESTDIR=...).  The loadable module
# goes to its own directory so that `.load` can name it without a lib prefix.
PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MODULEDIR  ?= $(LIBDIR)/sqlite3
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
VERSION     = $(shell sed -n 's/^\#define CR_VERSION "\(.*\)"/\1/p' ext/cr_internal.h)

# timegm() and strptime() are POSIX/BSD, hidden by -std=c11 alone.
DEFS    := -D_DEFAULT_SOURCE -D_XOPEN_SOURCE=700
WARN    := -Wall -Wextra -Werror
CFLAGS  ?= -O2 -g
# Only sqlite3_callrail_init is exported (CALLRAIL_EXPORT in callrail.h).
ALL_CFLAGS = -std=c11 $(CFLAGS) $(WARN) $(DEFS) -pthread -fPIC -fvisibility=hidden \
             -Iext -Iinclude -I$(BUILD) $(PKG_CFLAGS)
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

SRCS := ext/callrail.c ext/cr_util.c ext/cr_keyset.c ext/cr_config.c ext/cr_cred.c ext/cr_record.c \
        ext/cr_request.c ext/cr_http.c ext/cr_quota.c ext/cr_live.c ext/cr_store.c ext/cr_run.c \
        ext/cr_vtab.c ext/cr_preview.c ext/cr_send.c ext/cr_accounts.c ext/cr_get.c \
        ext/cr_schema.c ext/cr_identity.c ext/cr_resolve.c ext/cr_prune.c
HDRS := ext/cr_internal.h include/callrail.h $(BUILD)/cr_schema_sql.h

.PHONY: all deps demo-deps test-deps demo test test-build install uninstall lint clean asan

all: callrail.so $(BUILD)/libcallrail.a

# Build dependencies: a C compiler, pkg-config and the two -dev packages.
deps:
	@missing=""; has() { printf '#include <%s>\n' $$1 | $(CC) -E - >/dev/null 2>&1; }; \
	command -v $(CC) >/dev/null 2>&1 || missing="$$missing build-essential"; \
	if command -v pkg-config >/dev/null 2>&1; then \
	  pkg-config --exists sqlite3 || missing="$$missing libsqlite3-dev"; \
	  pkg-config --exists libcurl || missing="$$missing libcurl4-openssl-dev"; \
	else \
	  missing="$$missing pkg-config"; \
	  has sqlite3.h || missing="$$missing libsqlite3-dev"; \
	  has curl/curl.h || missing="$$missing libcurl4-openssl-dev"; \
	fi; \
	if [ -n "$$missing" ]; then \
	  echo "make: missing build dependencies:$$missing; run:"; \
	  echo "  sudo apt-get install -y$$missing"; exit 1; \
	fi

# What make demo and make test run besides the build: installed with
# apt-get (with the build dependencies) as root, otherwise named.
demo-deps: TOOLS := sqlite3 python3
test-deps: TOOLS := sqlite3 python3 valgrind npm
demo-deps test-deps:
	@missing=""; \
	command -v $(CC) >/dev/null 2>&1 || missing="$$missing build-essential"; \
	command -v pkg-config >/dev/null 2>&1 || missing="$$missing pkg-config"; \
	pkg-config --exists sqlite3 2>/dev/null || missing="$$missing libsqlite3-dev"; \
	pkg-config --exists libcurl 2>/dev/null || missing="$$missing libcurl4-openssl-dev"; \
	for c in $(TOOLS); do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "$@: installing$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || exit 1; \
	  else \
	    echo "$@: missing$$missing; run:"; \
	    echo "  sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

# The schema lives in sql/schema.sql and its upgrades in sql/migrations/NNN.sql
# (NNN: the version it upgrades to); the extension carries them as strings,
# cr_migrations[NNN] being the script of version NNN.
MIGRATIONS := $(sort $(wildcard sql/migrations/*.sql))
SQL_TO_C = grep -v '^--' $(1) | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/  "/' -e 's/$$/\\n"/'
$(BUILD)/cr_schema_sql.h: sql/schema.sql $(MIGRATIONS)
	@mkdir -p $(BUILD)
	{ echo 'static const char cr_schema_sql[] ='; $(call SQL_TO_C,sql/schema.sql); echo ';'; \
	  echo 'static const char *const cr_migrations[] = {'; v=0; \
	  for f in $(MIGRATIONS); do n=$$(basename $$f .sql | sed 's/^0*//'); \
	    while [ $$v -lt $$n ]; do echo '  0,'; v=$$((v+1)); done; \
	    echo "  /* $$f */"; $(call SQL_TO_C,$$f); echo '  ,'; v=$$((v+1)); done; \
	  echo '};'; } > $@

callrail.so: $(SRCS) $(HDRS) | deps
	$(CC) $(ALL_CFLAGS) -shared -o $@ $(SRCS) $(PKG_LIBS) -lpthread

# For applications that link the extension in (SQLITE_CORE: direct calls).
STATIC_OBJS := $(SRCS:ext/%.c=$(BUILD)/static/%.o)
$(BUILD)/static/%.o: ext/%.c $(HDRS) | deps
	@mkdir -p $(BUILD)/static
	$(CC) $(ALL_CFLAGS) -DSQLITE_CORE -c -o $@ $<

$(BUILD)/libcallrail.a: $(STATIC_OBJS)
	rm -f $@
	ar rcs $@ $(STATIC_OBJS)

# Sanitizer build: the extension, loaded into the system sqlite3 shell with
# libasan preloaded, and the static library for the embedding test.
$(BUILD)/asan/callrail.so: $(SRCS) $(HDRS) | deps
	@mkdir -p $(BUILD)/asan
	$(CC) $(ALL_CFLAGS) -O1 $(SAN) -shared -o $@ $(SRCS) $(PKG_LIBS) -lpthread

asan: $(BUILD)/asan/callrail.so

# Test programs.  The embedding test links the extension statically, as an
# application would; its ASan build also checks for leaks (LeakSanitizer),
# which the shell-based passes cannot do for a library loaded into it.
EMBED_LIBS = -lsqlite3 $(PKG_LIBS) -lpthread
$(BUILD)/embed_test: tests/embed_test.c $(BUILD)/libcallrail.a
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libcallrail.a $(EMBED_LIBS)

$(BUILD)/asan/embed_test: tests/embed_test.c $(SRCS) $(HDRS) | deps
	@mkdir -p $(BUILD)/asan
	$(CC) $(ALL_CFLAGS) -O1 $(SAN) -DSQLITE_CORE -o $@ $< $(SRCS) $(EMBED_LIBS)

$(BUILD)/embed: examples/embed.c $(BUILD)/libcallrail.a
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libcallrail.a $(EMBED_LIBS)

# A test-only extension: slow_sql_sleep_ms(N) makes a user's query slow.
$(BUILD)/slow_sql.so: tests/slow_sql.c | deps
	$(CC) $(ALL_CFLAGS) -shared -o $@ $<

$(BUILD)/unit/config_test: tests/unit/config_test.c ext/cr_config.c ext/cr_util.c $(HDRS) | deps
	@mkdir -p $(BUILD)/unit
	$(CC) $(ALL_CFLAGS) -O1 $(SAN) -DSQLITE_CORE -o $@ tests/unit/config_test.c \
	  ext/cr_config.c ext/cr_util.c $(EMBED_LIBS)

$(BUILD)/unit/identity_test: tests/unit/identity_test.c ext/cr_identity.c ext/cr_util.c $(HDRS) | deps
	@mkdir -p $(BUILD)/unit
	$(CC) $(ALL_CFLAGS) -O1 $(SAN) -DSQLITE_CORE -o $@ tests/unit/identity_test.c \
	  ext/cr_identity.c ext/cr_util.c $(EMBED_LIBS)

demo: demo-deps
	@$(MAKE) --no-print-directory all
	sh examples/demo.sh

# The test programs are built two at a time; tests/run.sh then runs the
# suites in parallel too (and builds build/compat itself, in parallel).
JOBS ?= 2
test-build: all asan $(BUILD)/embed_test $(BUILD)/asan/embed_test $(BUILD)/embed \
            $(BUILD)/unit/config_test $(BUILD)/unit/identity_test $(BUILD)/slow_sql.so

test: test-deps
	@$(MAKE) --no-print-directory -j$(JOBS) test-build
	JOBS=$(JOBS) sh tests/run.sh

# make install [PREFIX=/usr/local] [DESTDIR=]: callrail.pc is written for
# PREFIX (DESTDIR is only where the files are staged).  The library is
# static only, so its users link sqlite3 and libcurl themselves: they are
# Requires, not Requires.private (`pkg-config --static` would also pull
# libcurl's private libraries, which Debian ships without .so links).
install: all
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(LIBDIR:$(PREFIX)%=$${prefix}%)' \
	  'includedir=$(INCLUDEDIR:$(PREFIX)%=$${prefix}%)' \
	  'moduledir=$(MODULEDIR:$(PREFIX)%=$${prefix}%)' '' 'Name: callrail' \
	  'Description: SQLite extension that sends rows to the CallRail API v3' \
	  'Version: $(VERSION)' 'Requires: sqlite3 libcurl' \
	  'Cflags: -I$${includedir}' 'Libs: -L$${libdir} -lcallrail -pthread' \
	  > $(BUILD)/callrail.pc
	install -d $(DESTDIR)$(MODULEDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR)
	install -m 0755 callrail.so $(DESTDIR)$(MODULEDIR)/callrail.so
	install -m 0644 include/callrail.h $(DESTDIR)$(INCLUDEDIR)/callrail.h
	install -m 0644 $(BUILD)/libcallrail.a $(DESTDIR)$(LIBDIR)/libcallrail.a
	install -m 0644 $(BUILD)/callrail.pc $(DESTDIR)$(PKGCONFIGDIR)/callrail.pc

uninstall:
	rm -f $(DESTDIR)$(MODULEDIR)/callrail.so $(DESTDIR)$(INCLUDEDIR)/callrail.h \
	  $(DESTDIR)$(LIBDIR)/libcallrail.a $(DESTDIR)$(PKGCONFIGDIR)/callrail.pc

lint:
	clang-format --dry-run --Werror ext/*.c ext/*.h include/*.h tests/*.c tests/unit/*.c \
	  tests/fuzz/*.c tests/fuzz/*.h examples/*.c

clean:
	rm -rf $(BUILD) callrail.so tests/tmp

# A newer SQLite (the amalgamation in the npm package better-sqlite3),
# plain and with SQLITE_STRICT_SUBTYPE=1: rules in tests/compat/.
-include tests/compat/compat.mk

# Fuzzing (libFuzzer, clang): make fuzz FUZZ_SECONDS=N; rules in tests/fuzz/.
-include tests/fuzz/fuzz.mk

# Benchmarks (not part of make test): rules in bench/.
-include bench/bench.mk
