# hakmem: the optimized allocator, its instrumented twin, the workloads and the tests.
# `make` builds everything, `make test` runs every test, `make deps` installs what a fresh Debian machine lacks.

CC := gcc
CXX := g++
BUILD ?= build
PREFIX ?= /usr/local

WARN := -Wall -Wextra -Werror
BASE_CFLAGS := -std=gnu11 -g $(WARN) -pthread -MMD -MP
# The allocator must not be turned into calls to itself: no malloc/calloc builtins inside it.
ALLOC_CFLAGS := $(BASE_CFLAGS) -O2 -fPIC -fvisibility=hidden -fno-semantic-interposition -fno-plt \
	-fno-builtin-malloc -fno-builtin-calloc -fno-builtin-realloc -fno-builtin-free
PROG_CFLAGS := $(BASE_CFLAGS) -O2
CXXFLAGS_TEST := -std=c++17 -O2 -g $(WARN) -pthread -MMD -MP
SAN_ASAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
SAN_TSAN := -fsanitize=thread

ALLOC_SRC := $(wildcard alloc/*.c)
OPT_OBJ := $(ALLOC_SRC:%.c=$(BUILD)/opt/%.o)
COUNTERS_SRC := $(wildcard counters/*.c)
# trace/: the writer side is linked into libhakmem_prof.so, the reader side into hakprof and the tests.
TRACE_READER_SRC := trace/format.c trace/names.c trace/reader.c
TRACE_WRITER_SRC := $(filter-out trace/reader.c,$(wildcard trace/*.c))
PROF_OBJ := $(ALLOC_SRC:%.c=$(BUILD)/prof/%.o) $(COUNTERS_SRC:%.c=$(BUILD)/prof/%.o) \
	$(TRACE_WRITER_SRC:%.c=$(BUILD)/prof/%.o)
# hakprof: one binary, one file per verb; it reads recordings (trace/), stats segments (counters/) and
# symbolizes with elfutils' libdw (docs/hakprof.md says why).
HAKPROF_SRC := $(wildcard hakprof/*.c)
HAKPROF_OBJ := $(HAKPROF_SRC:%.c=$(BUILD)/tool/%.o) $(TRACE_READER_SRC:%.c=$(BUILD)/tool/%.o) \
	$(BUILD)/tool/counters/reader.o $(BUILD)/tool/counters/defs.o $(BUILD)/tool/counters/print.o
HAKPROF_LIBS := -lsqlite3 -ldw -lelf -lncursesw -lm
# Builds for tests that call hakmem by its hak_ names: no malloc override, optionally under a sanitizer.
NOOV_OBJ := $(ALLOC_SRC:%.c=$(BUILD)/noov/%.o)
ASAN_OBJ := $(ALLOC_SRC:%.c=$(BUILD)/asan/%.o)
TSAN_OBJ := $(ALLOC_SRC:%.c=$(BUILD)/tsan/%.o)
# The prof build (counters and the trace recorder) under ThreadSanitizer, called by hak_ names: the rings, the
# writer thread, the sampled-block table and sampled blocks' frees are checked for races.
TSAN_PROF_OBJ := $(PROF_OBJ:$(BUILD)/prof/%.o=$(BUILD)/tsan-prof/%.o)
ASAN_PROF_OBJ := $(PROF_OBJ:$(BUILD)/prof/%.o=$(BUILD)/asan-prof/%.o)

BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(patsubst bench/%.c,$(BUILD)/%,$(BENCH_SRC))

# tests/test_*.c run as plain programs under LD_PRELOAD; tests/unit_*.c link the allocator's internals.
TEST_C := $(wildcard tests/test_*.c)
TEST_CC := $(wildcard tests/test_*.cc)
UNIT_C := $(wildcard tests/unit_*.c)
# tests/prof_*.c run under libhakmem_prof.so; tests/tools/ are helpers the tests start.
PROF_C := $(wildcard tests/prof_*.c)
TOOLS_C := $(wildcard tests/tools/*.c)
TEST_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_C)) $(patsubst tests/%.cc,$(BUILD)/tests/%,$(TEST_CC)) \
	$(patsubst tests/%.c,$(BUILD)/tests/%,$(UNIT_C) $(PROF_C) $(TOOLS_C))
# Sanitizer variants: every C test linked with the allocator's internals under ASan+UBSan, and the tests with
# threads under TSan (test_fork skips itself there: TSan cannot start threads in a multi-threaded fork's child).
ASAN_TESTS := $(patsubst tests/%.c,$(BUILD)/tests/asan/%,$(UNIT_C) $(TEST_C))
TSAN_TESTS := $(patsubst tests/%.c,$(BUILD)/tests/tsan/%,$(TEST_C))
TSAN_PROF_TESTS := $(BUILD)/tests/tsan-prof/test_stress $(BUILD)/tests/tsan-prof/test_api \
	$(BUILD)/tests/asan-prof/test_stress $(BUILD)/tests/asan-prof/test_api
# hakprof and the recording reader's torture tool under ASan+UBSan: they parse files that may be damaged.
ASAN_TOOL_OBJ := $(HAKPROF_SRC:%.c=$(BUILD)/asan-tool/%.o) $(TRACE_READER_SRC:%.c=$(BUILD)/asan-tool/%.o) \
	$(BUILD)/asan-tool/counters/reader.o $(BUILD)/asan-tool/counters/defs.o $(BUILD)/asan-tool/counters/print.o
ASAN_TOOLS := $(BUILD)/asan-tool/bin/hakprof $(BUILD)/asan-tool/bin/hkt_fuzz $(BUILD)/asan-tool/bin/hkt_dump

LIBS := $(BUILD)/libhakmem.so $(BUILD)/libhakmem_prof.so $(BUILD)/libhakmem.a $(BUILD)/hakprof

.PHONY: all libs bench-bin tests test deps install clean counters-doc bench bench-deps
# Keep the object files of every variant between runs (they are pattern-rule intermediates).
.SECONDARY:
all: libs bench-bin tests

libs: $(LIBS)
bench-bin: $(BENCH_BIN)
tests: $(TEST_BIN) $(ASAN_TESTS) $(TSAN_TESTS) $(TSAN_PROF_TESTS) $(ASAN_TOOLS)

$(BUILD)/opt/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALLOC_CFLAGS) -c $< -o $@
$(BUILD)/prof/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALLOC_CFLAGS) -DHAKMEM_PROF=1 -c $< -o $@
$(BUILD)/noov/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALLOC_CFLAGS) -DHAK_NO_OVERRIDE -c $< -o $@
$(BUILD)/asan/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALLOC_CFLAGS) -O1 $(SAN_ASAN) -DHAK_NO_OVERRIDE -c $< -o $@
$(BUILD)/tsan/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALLOC_CFLAGS) $(SAN_TSAN) -DHAK_NO_OVERRIDE -c $< -o $@

$(BUILD)/libhakmem.so: $(OPT_OBJ)
	$(CC) -shared -pthread -Wl,-z,now -Wl,--no-undefined -o $@ $^
$(BUILD)/libhakmem_prof.so: $(PROF_OBJ)
	$(CC) -shared -pthread -Wl,-z,now -Wl,--no-undefined -Wl,--build-id -o $@ $^ -lgcc_s -lunwind -lm
# hakprof looks for libhakmem_prof.so beside itself, else where `make install` puts it.
$(BUILD)/tool/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(PROG_CFLAGS) -DHP_LIBDIR='"$(PREFIX)/lib"' -c $< -o $@
$(BUILD)/hakprof: $(HAKPROF_OBJ)
	$(CC) $(PROG_CFLAGS) -o $@ $^ $(HAKPROF_LIBS)
$(BUILD)/libhakmem.a: $(OPT_OBJ)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/%: bench/%.c
	@mkdir -p $(dir $@)
	$(CC) $(PROG_CFLAGS) $< -o $@ -lm

$(BUILD)/tests/test_%: tests/test_%.c
	@mkdir -p $(dir $@)
	$(CC) $(PROG_CFLAGS) $< -o $@ -ldl
$(BUILD)/tests/test_%: tests/test_%.cc
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS_TEST) $< -o $@
$(BUILD)/tests/prof_%: tests/prof_%.c
	@mkdir -p $(dir $@)
	$(CC) $(PROG_CFLAGS) $< -o $@ -ldl
# several sources on one line: -MMD records one of them only, so the headers are named here
$(BUILD)/tests/tools/%: tests/tools/%.c $(COUNTERS_SRC) $(TRACE_READER_SRC) $(wildcard counters/*.h trace/*.h alloc/hakmem.h)
	@mkdir -p $(dir $@)
	$(CC) $(PROG_CFLAGS) $< counters/reader.c counters/defs.c $(TRACE_READER_SRC) -o $@
$(BUILD)/tests/unit_%: tests/unit_%.c $(NOOV_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(PROG_CFLAGS) -DHAK_TEST_PREFIXED -Ialloc $< $(NOOV_OBJ) counters/defs.c -o $@
$(BUILD)/tests/asan/%: tests/%.c $(ASAN_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(PROG_CFLAGS) -O1 $(SAN_ASAN) -DHAK_TEST_PREFIXED -Ialloc $< $(ASAN_OBJ) counters/defs.c -o $@ -ldl
$(BUILD)/tests/tsan/%: tests/%.c $(TSAN_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(PROG_CFLAGS) $(SAN_TSAN) -DHAK_TEST_PREFIXED -Ialloc $< $(TSAN_OBJ) -o $@ -ldl
$(BUILD)/tsan-prof/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALLOC_CFLAGS) $(SAN_TSAN) -DHAKMEM_PROF=1 -DHAK_NO_OVERRIDE -DHKT_LIBGCC_UNWIND_ONLY -c $< -o $@
$(BUILD)/tests/tsan-prof/%: tests/%.c $(TSAN_PROF_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(PROG_CFLAGS) $(SAN_TSAN) -DHAK_TEST_PREFIXED -Ialloc $< $(TSAN_PROF_OBJ) -o $@ -ldl -lgcc_s -lm
$(BUILD)/asan-prof/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALLOC_CFLAGS) -O1 $(SAN_ASAN) -DHAKMEM_PROF=1 -DHAK_NO_OVERRIDE -c $< -o $@
$(BUILD)/tests/asan-prof/%: tests/%.c $(ASAN_PROF_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(PROG_CFLAGS) -O1 $(SAN_ASAN) -DHAK_TEST_PREFIXED -Ialloc $< $(ASAN_PROF_OBJ) -o $@ -ldl -lgcc_s -lunwind -lm
$(BUILD)/asan-tool/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(PROG_CFLAGS) -O1 $(SAN_ASAN) -DHP_LIBDIR='"$(PREFIX)/lib"' -c $< -o $@
$(BUILD)/asan-tool/bin/hakprof: $(ASAN_TOOL_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(PROG_CFLAGS) -O1 $(SAN_ASAN) -o $@ $^ $(HAKPROF_LIBS)
$(BUILD)/asan-tool/bin/hkt_%: tests/tools/hkt_%.c $(filter-out $(BUILD)/asan-tool/hakprof/%,$(ASAN_TOOL_OBJ))
	@mkdir -p $(dir $@)
	$(CC) $(PROG_CFLAGS) -O1 $(SAN_ASAN) $^ -o $@

# Installs the Debian packages of $(1) that are missing, and nothing when all are there.
define install_missing
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
endef

# Debian packages the build and the tests need.
DEB_PKGS := gcc g++ make libunwind-dev libsqlite3-dev libncurses-dev libdw-dev libelf-dev sqlite3 python3 tmux valgrind
deps:
	$(call install_missing,$(DEB_PKGS))

# The peers the benchmarks compare against (Debian packages), installed only when missing.
BENCH_PKGS := libmimalloc2.0 libjemalloc2 libtcmalloc-minimal4 valgrind heaptrack
bench-deps:
	$(call install_missing,$(BENCH_PKGS))

# make bench: the full suite (about 15 minutes); make bench QUICK=1: a quick check (under 3 minutes).
bench: deps bench-deps
	$(MAKE) libs bench-bin $(BUILD)/tests/tools/hkt_dump
	BUILD=$(BUILD) bench/run.sh $(if $(QUICK),--quick)

test: deps
	$(MAKE) all
	BUILD=$(BUILD) tests/run.sh

# docs/counters.md is generated from counters/counters.def (tests/unit_counters_doc checks it is current).
counters-doc: $(BUILD)/tests/unit_counters_doc
	$(BUILD)/tests/unit_counters_doc --write docs/counters.md

install: libs
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(BUILD)/libhakmem.so $(BUILD)/libhakmem_prof.so $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/hakprof $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(BUILD)/libhakmem.a $(DESTDIR)$(PREFIX)/lib/
	install -m 644 alloc/hakmem.h $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|g' hakmem.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/hakmem.pc

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# make triage-demo: the worked example of docs/triage.md (Larson at 1 and 2 threads, two configurations that differ
# in one setting, compared by hakprof diff). TRIAGE_RUNS, TRIAGE_SETTING and TRIAGE_DIR: bench/triage_demo.sh.
.PHONY: triage-demo
triage-demo: $(BUILD)/hakprof $(BUILD)/libhakmem_prof.so $(BUILD)/larson
	BUILD=$(BUILD) bench/triage_demo.sh
