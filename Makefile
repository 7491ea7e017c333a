# The two set-up commands of the README: `make demo` and `make test`. Each installs what is
# missing, builds (one CMake build, driven by pip so the Python package is what users get),
# then runs.
PYTHON    ?= python3
BUILD_DIR ?= build
JOBS      ?= $(shell nproc)
export CCACHE_SLOPPINESS := pch_defines,time_macros,include_file_mtime,include_file_ctime
# Paths relative to the checkout, so clones and worktrees share ccache hits.
export CCACHE_BASEDIR := $(CURDIR)
export CMAKE_BUILD_PARALLEL_LEVEL := $(JOBS)

PIP_BUILD = $(PYTHON) -m pip install --no-build-isolation --no-deps -e . \
	-Cbuild-dir=$(BUILD_DIR) -Ccmake.define.SPEECHLENS_BUILD_TESTS=ON \
	-Ccmake.define.SPEECHLENS_BUILD_BENCH=ON -Ccmake.args=-GNinja

.PHONY: all deps build test test-cpp test-python demo bench asan clean

all: build

deps:
	@bash scripts/install_deps.sh

build: deps
	@echo "[build] pip install -e . (CMake build in $(BUILD_DIR)/)"
	@$(PIP_BUILD) -q

test-cpp: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure --no-tests=error -j $(JOBS)

test-python: build
	$(PYTHON) -m pytest tests/python -q

test: build
	@$(MAKE) --no-print-directory test-python-fixtures
	ctest --test-dir $(BUILD_DIR) --output-on-failure --no-tests=error -j $(JOBS)
	$(PYTHON) -m pytest tests/python -q

# Fixtures the C++ tests read: tiny HF models and files written by Python libraries.
test-python-fixtures:
	$(PYTHON) tests/fixtures/make_fixtures.py $(BUILD_DIR)/test-data

demo: build
	$(PYTHON) -m speechlens.cli demo

bench: build
	$(PYTHON) bench/run_all.py

# ASan + UBSan build of the C++ core and its GoogleTest suite (no Python extension: the
# sanitizer runtime would have to be preloaded into the interpreter).
asan: deps
	cmake -S . -B build-asan -GNinja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPEECHLENS_SANITIZE=ON \
		-DSPEECHLENS_BUILD_PYTHON=OFF -DSPEECHLENS_BUILD_TESTS=ON -DPython3_EXECUTABLE=$$(command -v $(PYTHON))
	cmake --build build-asan
	$(PYTHON) tests/fixtures/make_fixtures.py build-asan/test-data
	ASAN_OPTIONS=detect_leaks=0:protect_shadow_gap=0 UBSAN_OPTIONS=print_stacktrace=1 \
		ctest --test-dir build-asan --output-on-failure --no-tests=error -E cpp_consumer

clean:
	rm -rf $(BUILD_DIR) build-asan
