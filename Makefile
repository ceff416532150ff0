# The two set-up commands of the README:
#   make run    builds lasync and runs the main example (EXAMPLE: images
#               from a local server, one by one and then concurrently)
#   make test   builds lasync and runs every test: the specs, the same specs
#               under AddressSanitizer + UndefinedBehaviorSanitizer, and under
#               valgrind
# Missing Debian packages are installed with apt-get when run as root;
# otherwise the exact apt-get line is printed and make stops.

BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= 2
# Spec files mostly wait on timers and subprocesses, so more of them than
# cores run at once.
TEST_JOBS  ?= 3
LASYNC     := $(BUILD)/lasync
BUSTED     := /usr/bin/busted
EXAMPLE    ?= scripts/download_compare.lua

PREFIX     ?= /usr/local

PACKAGES := cmake make gcc libc6-dev pkg-config lua5.4 liblua5.4-dev \
            libuv1-dev libcurl4-openssl-dev lua-busted lua-cjson lua-dkjson valgrind \
            python3 nginx openssl luarocks groff-base \
            libhiredis-dev redis-server \
            libssl-dev \
            libmicrohttpd-dev libwslay-dev wrk \
            python3-aiohttp python3-uvloop lua-http chromium \
            libreadline-dev tmux curl bc python3-websockets

.PHONY: all deps build run test check spec asan valgrind bench install clean

all: build

deps:
	@missing=""; \
	for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "make: installing Debian packages:$$missing"; \
	    apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	  else \
	    echo "make: these Debian packages are missing. Install them with:"; \
	    echo "  sudo apt-get update && sudo apt-get install -y$$missing"; \
	    exit 1; \
	  fi; \
	fi

$(BUILD)/Makefile: CMakeLists.txt | deps
	cmake -S . -B $(BUILD) -DLASYNC_WERROR=ON

build: deps $(BUILD)/Makefile
	cmake --build $(BUILD) -j$(JOBS) -- --no-print-directory

# Quietly: a newcomer should see the demo, not gmake's directory lines.
run: deps
	@[ -f $(BUILD)/Makefile ] || cmake -S . -B $(BUILD) -DLASYNC_WERROR=ON >/dev/null
	@echo "make: building lasync in $(BUILD)/ ..."
	@cmake --build $(BUILD) -j$(JOBS) -- --no-print-directory -s >$(BUILD)/build.log 2>&1 \
	  || { cat $(BUILD)/build.log; exit 1; }
	@$(LASYNC) $(EXAMPLE)

# Installs under PREFIX (default /usr/local; asyncio.so goes to
# PREFIX/lib/lua/5.4, which is on lua5.4's default package.cpath for
# /usr/local). Use sudo for a system prefix.
install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

# The specs, run by ctest inside the host (one ctest test per spec file).
spec: build
	cd $(BUILD) && ctest --output-on-failure -j$(TEST_JOBS)

$(ASAN_BUILD)/Makefile: CMakeLists.txt | deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DLASYNC_WERROR=ON -DLASYNC_SANITIZE=ON

# The same specs with ASan + UBSan (leak checking included).
asan: deps $(ASAN_BUILD)/Makefile
	cmake --build $(ASAN_BUILD) -j$(JOBS)
	cd $(ASAN_BUILD) && LASYNC_SLOW=3 \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j$(TEST_JOBS)

# Every spec once under valgrind: zero errors, zero definite leaks, in the
# busted process and in every lasync / lua5.4 process the specs start.
# One busted process per spec file, TEST_JOBS at a time (one process for
# all took 7.5 minutes: valgrind runs a process on one core); each file's output is shown only when it fails.
# --keep-debuginfo: lua5.4 unloads asyncio.so (and the libraries it pulled
# in) before the leak check, which could not name their frames otherwise.
VALGRIND := valgrind -q --leak-check=full --errors-for-leak-kinds=definite \
            --show-leak-kinds=definite --keep-debuginfo=yes \
            --suppressions=$(abspath .ci/valgrind.supp)
valgrind: build
	LASYNC_POOL=0 LASYNC_SLOW=10 LASYNC_WRAPPER="$(VALGRIND) --error-exitcode=99" \
	VALGRIND="$(VALGRIND)" LASYNC=$(abspath $(LASYNC)) BUSTED=$(BUSTED) \
	  .ci/valgrind_specs.sh $(TEST_JOBS)
	LASYNC_POOL=0 LASYNC_SLOW=10 $(VALGRIND) --error-exitcode=1 $(BUILD)/embed_test
	LASYNC_POOL=0 $(VALGRIND) --error-exitcode=1 $(BUILD)/sensors
	$(VALGRIND) --error-exitcode=1 $(BUILD)/vm_floor w1 2000 plain gen

check: asan valgrind

test: spec check
	@echo "make test: specs, sanitizers and valgrind all passed"

# With the comparison harness beside the project (BENCH_HARNESS), the
# project's rows beside the peers'; without it (a plain clone), the project's
# own workloads W1-W7 alone (bench/own.sh: its own W5 load generator and
# HTTP servers, on loopback).  Both take BENCH_ARGS: --quick (small sizes),
# --only W5,W6.
BENCH_HARNESS ?= ../shared/bench/run
bench: build
	@if [ -x $(BENCH_HARNESS) ]; then \
	  BENCH_BUILD_DIR=$(abspath $(BUILD))/bench \
	  PROJECT_CMD=$(abspath $(LASYNC)) PROJECT_BENCH_DIR=$(abspath bench) \
	    $(BENCH_HARNESS) $(BENCH_ARGS); \
	else \
	  echo "make bench: no comparison harness at $(BENCH_HARNESS) (set BENCH_HARNESS=...);"; \
	  echo "running the project's own workloads W1-W7 (bench/own.sh):"; \
	  LASYNC=$(abspath $(LASYNC)) bench/own.sh $(BENCH_ARGS); \
	fi
	@echo "to_thread: one CPU-bound job in 1 worker, then split over 2 (bench/to_thread.lua):"
	@$(LASYNC) bench/to_thread.lua

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
