# The two commands of this repository (see README.md):
#   make test   every test, on a real control plane; installs what it needs
#   make demo   the operator's main job end to end
# Everything is cached outside the clone, so a second run is fast.

SHELL := /bin/bash
.DEFAULT_GOAL := help

CACHE_DIR ?= $(HOME)/.cache/kfp-operator
export CARGO_TARGET_DIR ?= $(CACHE_DIR)/target
# The plugins (wasm32-wasip2) build into their own folder; the tests build them on demand.
export KFP_PLUGINS_TARGET_DIR ?= $(CACHE_DIR)/plugins-target
export GOWORK := off
export GOTOOLCHAIN := local
# mold links the test binaries several times faster than the default linker; used when present.
ifneq ($(shell command -v mold 2>/dev/null),)
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS ?= -C link-arg=-fuse-ld=mold
endif

.PHONY: help setup cluster-bin lint test bench cluster crds demo demo-check

help:
	@echo "make test      run every test (installs what it needs)"
	@echo "make demo      run the operator's main job end to end (Ctrl-C stops it)"
	@echo "make demo-check  the same, exiting 0 once every resource is Succeeded"
	@echo "make cluster   start the test control plane by hand and print its kubeconfig"
	@echo "make crds      regenerate charts/kfp-operator/crds from the Rust types"
	@echo "make bench     run the plugin runtime benchmarks (BENCHMARKS.md)"

# Installs what the build and tests need and cannot fetch through cargo or go.
setup:
	@command -v go >/dev/null || { echo "error: Go >= 1.26 is required to build the test control plane; install it and re-run." >&2; exit 1; }
	@command -v cargo >/dev/null || { echo "error: Rust (rustup) is required; install it and re-run." >&2; exit 1; }
	@rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
	@command -v mold >/dev/null || { command -v apt-get >/dev/null && \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mold >/dev/null; } || \
	  echo "note: mold could not be installed; linking with the default linker (slower)"; }
	@test -x /usr/bin/docker-registry || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry >/dev/null; } || \
	  { echo "error: the OCI tests need Debian's docker-registry; install it and re-run." >&2; exit 1; }

# kube-apiserver, kube-controller-manager, etcd and helm, built once per go.sum (tens of minutes cold).
cluster-bin: setup
	@bash tests/cluster/build.sh >/dev/null

lint: setup
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cd plugins && cargo fmt --all --check
	cd plugins && CARGO_TARGET_DIR=$(KFP_PLUGINS_TARGET_DIR) RUSTFLAGS= cargo clippy --release --locked -- -D warnings
	cd examples/custom-provider && cargo fmt --check

# The demo runs first so that cargo's summary is the last thing printed.
test: setup cluster-bin lint demo-check
	cargo test --workspace --locked

# The plugin runtime and reconcile throughput benchmarks (BENCHMARKS.md).
bench: setup cluster-bin
	cargo bench --locked -p kfp-operator --bench plugins -- --warm-up-time 2 --measurement-time 5
	cargo bench --locked -p kfp-operator --bench reconcile

cluster: cluster-bin
	cargo run --locked -p kfp-test-support --bin kfp-test-cluster

crds:
	cargo run --locked -q -p kfp-operator -- crds --output-dir charts/kfp-operator/crds

# The operator's main job: a local control plane, the stub provider from a ConfigMap, the
# operator and examples/ until every resource is Succeeded. demo keeps running until Ctrl-C;
# demo-check exits 0 once everything is Succeeded (non-zero with a report otherwise).
demo: cluster-bin
	cargo build --locked -p kfp-operator -p kfp-test-support
	$(CARGO_TARGET_DIR)/debug/kfp-demo --operator $(CARGO_TARGET_DIR)/debug/kfp-operator

demo-check: cluster-bin
	cargo build --locked -p kfp-operator -p kfp-test-support
	$(CARGO_TARGET_DIR)/debug/kfp-demo --operator $(CARGO_TARGET_DIR)/debug/kfp-operator --check
