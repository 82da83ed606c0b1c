# Thin wrapper over CMake. `make` builds build/tern; `make test` runs ctest.
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
MAKEFLAGS += --no-print-directory
CMAKE_FLAGS ?=

.PHONY: all test test-all data-path demo clean asan fuzz bench install

# TERN_PORTABLE=1 make: a build without -march=native. The choice is checked on
# every make, since the CMake cache would otherwise keep the first one.
PORTABLE := $(if $(filter 1,$(TERN_PORTABLE)),ON,OFF)

all: $(BUILD)/Makefile
	@grep -qx 'TERN_PORTABLE:BOOL=$(PORTABLE)' $(BUILD)/CMakeCache.txt || \
		cmake -S . -B $(BUILD) -DTERN_PORTABLE=$(PORTABLE) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

$(BUILD)/Makefile:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DTERN_PORTABLE=$(PORTABLE) $(CMAKE_FLAGS)

# Default test run: everything except tests labelled "slow". Tests run one at a
# time: each already uses every core, and oversubscribed OpenMP barriers crawl.
test: all data-path
	cd $(BUILD) && ctest --output-on-failure -LE slow

# An exported TERN_DATA other than the one the tests were configured with
# reconfigures (ctest's per-test environment would otherwise keep the old one).
data-path: all
	@if [ -n "$$TERN_DATA" ] && ! grep -qxF "TERN_DATA_CONFIGURED:INTERNAL=$$TERN_DATA" $(BUILD)/CMakeCache.txt; then \
		cmake -S . -B $(BUILD) >/dev/null; fi

# Everything, slow tests included (CI runs this).
test-all: all data-path
	cd $(BUILD) && ctest --output-on-failure

# make install PREFIX=/usr/local: bin/tern, include/tern.h, lib/libtern.{a,so}, lib/pkgconfig/tern.pc
PREFIX ?= /usr/local
install: all
	@cmake --install $(BUILD) --prefix $(PREFIX)

demo: all
	@scripts/demo.sh

asan:
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g" -DTERN_SANITIZE=ON -DTERN_USE_OPENBLAS=OFF $(CMAKE_FLAGS)
	@cmake --build build-asan -j $(JOBS)
	cd build-asan && ctest --output-on-failure -LE slow

fuzz:
	@CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DTERN_FUZZ=ON -DTERN_USE_OPENBLAS=OFF
	@cmake --build build-fuzz -j $(JOBS)

clean:
	rm -rf $(BUILD) build-asan build-fuzz
