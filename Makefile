# callrail-sqlite: a SQLite extension that sends rows to the CallRail API v3.
#
#   make          build callrail.so (and libcallrail.a for static embedding)
#   make demo     the main job: send records to the bundled fake CallRail server
#   make test     every test, plain and under ASan+UBSan, plus valgrind
#   make fuzz     libFuzzer targets (FUZZ_SECONDS=N); make fuzz-smoke: ~1 minute
#   make bench    benchmarks side by side with curl and wrk (not part of test)
#   make lint     clang-format check
#   make clean
#
# `deps` installs the -dev packages with apt-get when run as root and
# missing, or says the exact command to run.

CC      ?= gcc
BUILD   := build
PKGS    := sqlite3 libcurl
DEBPKGS := libsqlite3-dev libcurl4-openssl-dev sqlite3 pkg-config python3 valgrind
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs libcurl 2>/dev/null)

# timegm() and strptime() are POSIX/BSD, hidden by -std=c11 alone.
DEFS    := -D_DEFAULT_SOURCE -D_XOPEN_SOURCE=700
WARN    := -Wall -Wextra -Werror
CFLAGS  ?= -O2 -g
ALL_CFLAGS = -std=c11 $(CFLAGS) $(WARN) $(DEFS) -pthread -fPIC -Iext -Iinclude -I$(BUILD) $(PKG_CFLAGS)
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

SRCS := ext/callrail.c ext/cr_util.c ext/cr_keyset.c ext/cr_config.c ext/cr_cred.c ext/cr_record.c \
        ext/cr_request.c ext/cr_http.c ext/cr_quota.c ext/cr_live.c ext/cr_store.c ext/cr_run.c \
        ext/cr_vtab.c ext/cr_preview.c ext/cr_send.c ext/cr_accounts.c \
        ext/cr_schema.c ext/cr_identity.c ext/cr_prune.c
HDRS := ext/cr_internal.h include/callrail.h $(BUILD)/cr_schema_sql.h

.PHONY: all deps demo test test-fast lint clean asan valgrind

all: callrail.so $(BUILD)/libcallrail.a

deps:
	@missing=""; \
	for p in $(PKGS); do pkg-config --exists $$p 2>/dev/null || missing=1; done; \
	for c in sqlite3 python3 valgrind pkg-config; do command -v $$c >/dev/null 2>&1 || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "deps: installing $(DEBPKGS)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEBPKGS) >/dev/null || exit 1; \
	  else \
	    echo "deps: missing build dependencies; run:"; \
	    echo "  sudo apt-get install -y $(DEBPKGS)"; exit 1; \
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

$(BUILD)/unit/config_test: tests/unit/config_test.c ext/cr_config.c ext/cr_util.c $(HDRS) | deps
	@mkdir -p $(BUILD)/unit
	$(CC) $(ALL_CFLAGS) -O1 $(SAN) -DSQLITE_CORE -o $@ tests/unit/config_test.c \
	  ext/cr_config.c ext/cr_util.c $(EMBED_LIBS)

demo: all
	sh examples/demo.sh

test: all asan $(BUILD)/embed_test $(BUILD)/asan/embed_test $(BUILD)/embed $(BUILD)/unit/config_test
	sh tests/run.sh

lint:
	clang-format --dry-run --Werror ext/*.c ext/*.h include/*.h tests/*.c tests/unit/*.c \
	  tests/fuzz/*.c tests/fuzz/*.h examples/*.c

clean:
	rm -rf $(BUILD) callrail.so tests/tmp

# Fuzzing (libFuzzer, clang): make fuzz FUZZ_SECONDS=N; rules in tests/fuzz/.
-include tests/fuzz/fuzz.mk

# Benchmarks (not part of make test): rules in bench/.
-include bench/bench.mk
