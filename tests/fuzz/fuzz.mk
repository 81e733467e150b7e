# tests/fuzz/fuzz.mk - libFuzzer targets (included by the main Makefile).
#
#   make fuzz [FUZZ_SECONDS=N]   replay seeds and regression inputs, then fuzz
#                                each target for N/4 s (N defaults to 60)
#   make fuzz-smoke              replay, then ~10 s per target (CI)
#   make fuzz-build              only build build/fuzz/fuzz_<target>
#   make fuzz-replay             only replay tests/fuzz/corpus and crashers
#   make fuzz-clean              remove build/fuzz
#
# FUZZ_IGNORE=name,... skips named known-finding checks while fuzzing (never
# while replaying); see tests/fuzz/README.md.  Needs clang with libFuzzer
# (Debian: clang, libclang-rt-14-dev).

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 10
FUZZ_BUILD   := $(BUILD)/fuzz
FUZZ_TARGETS := config headers url_template record_json
FUZZ_CFLAGS  := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
                -fno-omit-frame-pointer -std=c11 -Wall -Wextra $(DEFS) -DSQLITE_CORE \
                -Iext -Iinclude -I$(BUILD) $(PKG_CFLAGS)
FUZZ_LIBS    := -lsqlite3 $(PKG_LIBS)

# Every target links all of ext/ (the main Makefile's SRCS, as the embedding
# test does), so that moving code between modules never breaks the build.
FUZZ_EXT := $(SRCS)
FUZZ_LIBS += -lpthread

FUZZ_BINS := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)

define FUZZ_TARGET_RULE
$(FUZZ_BUILD)/fuzz_$(1): tests/fuzz/fuzz_$(1).c tests/fuzz/fuzz_common.h $(FUZZ_EXT) $(HDRS) | deps
	@mkdir -p $(FUZZ_BUILD)/tmp
	TMPDIR=$(abspath $(FUZZ_BUILD))/tmp $(FUZZ_CC) $(FUZZ_CFLAGS) -o $$@ tests/fuzz/fuzz_$(1).c $(FUZZ_EXT) $(FUZZ_LIBS)
endef
$(foreach t,$(FUZZ_TARGETS),$(eval $(call FUZZ_TARGET_RULE,$(t))))

.PHONY: fuzz fuzz-smoke fuzz-build fuzz-replay fuzz-clean

fuzz-build: $(FUZZ_BINS)

fuzz: $(FUZZ_BINS)
	@secs=$$(( $(FUZZ_SECONDS) / $(words $(FUZZ_TARGETS)) )); [ $$secs -ge 1 ] || secs=1; \
	FUZZ_IGNORE="$(FUZZ_IGNORE)" sh tests/fuzz/run_fuzz.sh $(FUZZ_BUILD) $$secs $(FUZZ_TARGETS)

fuzz-smoke: $(FUZZ_BINS)
	@FUZZ_IGNORE="$(FUZZ_IGNORE)" sh tests/fuzz/run_fuzz.sh $(FUZZ_BUILD) $(FUZZ_SMOKE_SECONDS) \
	  $(FUZZ_TARGETS)

fuzz-replay: $(FUZZ_BINS)
	@sh tests/fuzz/run_fuzz.sh $(FUZZ_BUILD) 0 $(FUZZ_TARGETS)

fuzz-clean:
	rm -rf $(FUZZ_BUILD)
