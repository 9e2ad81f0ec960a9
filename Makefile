# modeaudit: `make demo` and `make test` set up everything they need.
#
# One Cargo profile (release) serves the demo, the tests and the benchmarks,
# so the bundled DuckDB (a long C++ build) is compiled once. The build cache
# lives outside the clone, in a fixed CARGO_TARGET_DIR, so that repeated runs
# and CI on the same machine reuse it.

export CARGO_TARGET_DIR ?= $(HOME)/.cache/modeaudit-target
BIN := $(CARGO_TARGET_DIR)/release/modeaudit
CARGO := cargo
# A Python environment of the project's own, for ONNX Runtime (loaded by
# modeaudit at run time, never at build time) and the DuckDB Python client.
VENV := $(CURDIR)/.venv
export MODEAUDIT_PYTHON := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all demo test build prereqs venv bench bench-compare lint fmt clean-demo fuzz

all: build

# qhull's Rust bindings are generated with bindgen, which needs libclang.
prereqs:
	@command -v $(CARGO) >/dev/null || { echo "cargo is missing: install the Rust toolchain (rustup)"; exit 1; }
	@if ! ldconfig -p 2>/dev/null | grep -Eq 'libclang(-[0-9.]+)?\.so' && \
	    ! ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/llvm-*/lib/libclang-[0-9]*.so* >/dev/null 2>&1; then \
	  echo "installing libclang-dev (needed to build qhull's bindings)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq libclang-dev; \
	fi

# Installs tests/requirements.txt into .venv when it is missing or older.
venv: $(VENV)/.installed
$(VENV)/.installed: tests/requirements.txt
	@command -v python3 >/dev/null || { echo "python3 is missing"; exit 1; }
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

build: prereqs
	$(CARGO) build --release --locked

demo: build
	$(BIN) demo

test: prereqs venv
	$(CARGO) test --release --locked

lint: prereqs
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --locked --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# Criterion benchmarks (same profile as everything else).
bench: prereqs
	$(CARGO) bench --profile release --locked --bench search
	$(CARGO) bench --profile release --locked --bench update

# Side-by-side comparison with NumPy, faiss and hnswlib (installs them into
# a virtual environment of its own).
bench-compare: build
	python3 benches/compare.py --bin $(BIN)

# Fuzz the vector-file readers (crates/vecfile, no DuckDB) for FUZZ_SECONDS
# per target; new inputs land in fuzz/corpus, crashes in fuzz/artifacts
# (copy those into fuzz/regressions, which the tests replay).
FUZZ_SECONDS ?= 300
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run npy -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run npz -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048
