# modeaudit: `make demo` and `make test` set up everything they need.
#
# One Cargo profile (release) serves the demo, the tests and the benchmarks,
# so the bundled DuckDB (a long C++ build) is compiled once. The build cache
# lives outside the clone, in a fixed CARGO_TARGET_DIR, so that repeated runs
# and CI on the same machine reuse it.

export CARGO_TARGET_DIR ?= $(HOME)/.cache/modeaudit-target
BIN := $(CARGO_TARGET_DIR)/release/modeaudit
CARGO := cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all demo test build prereqs bench bench-compare lint fmt clean-demo

all: build

# qhull's Rust bindings are generated with bindgen, which needs libclang.
prereqs:
	@command -v $(CARGO) >/dev/null || { echo "cargo is missing: install the Rust toolchain (rustup)"; exit 1; }
	@if ! ldconfig -p 2>/dev/null | grep -q 'libclang[-.0-9]*\.so' && \
	    ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1; then \
	  echo "installing libclang-dev (needed to build qhull's bindings)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq libclang-dev; \
	fi

build: prereqs
	$(CARGO) build --release --locked

demo: build
	$(BIN) demo

test: prereqs
	$(CARGO) test --release --locked

lint: prereqs
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --locked --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# Criterion benchmarks (same profile as everything else).
bench: prereqs
	$(CARGO) bench --profile release --locked --bench search

# Side-by-side comparison with NumPy, faiss and hnswlib (installs them into
# a virtual environment of its own).
bench-compare: build
	python3 benches/compare.py --bin $(BIN)
