# natcd — build, run and test.
#
#   make run      install what is missing, then run a local cluster in the foreground
#   make test     install what is missing, then run the whole test suite
#   make bench    benchmark natcd against the real etcd in the same run
#
# Variables: DATA_DIR (default ./data), MEMBERS (default 3), NATS_URL (use an existing
# nats-server instead of starting one), NATS_CLUSTER (default 1: nats-servers started, joined
# by routes; member i's services use server i mod NATS_CLUSTER), NATS_TLS (1: TLS to NATS with
# certificates created under DATA_DIR/creds/tls), TLS (1: https client URLs with client
# certificates, from a CA and certificates created under DATA_DIR/creds/client-tls), GATEWAYS
# (default 1: gateway processes per member, sharing its client address), WATCH_REPLICAS
# (default 1: watch service replicas of the cluster).

SHELL := /bin/bash
NODE_VERSION := 24.21.0
TOOLS := .tools
PINNED_NODE_BIN := $(TOOLS)/node-$(NODE_VERSION)/node_modules/node/bin

# Use the system node when it is Node 24 or newer; otherwise the pinned one from the npm
# package `node` (it ships the official binary), installed under .tools/.
SYSTEM_NODE_MAJOR := $(shell node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
ifeq ($(shell [ $(SYSTEM_NODE_MAJOR) -ge 24 ] && echo yes),yes)
NODE_BIN_DIR :=
NODE_STAMP :=
else
NODE_BIN_DIR := $(abspath $(PINNED_NODE_BIN))
NODE_STAMP := $(PINNED_NODE_BIN)/node
export PATH := $(NODE_BIN_DIR):$(PATH)
endif

DATA_DIR ?= ./data
MEMBERS ?= 3
NATS_CLUSTER ?= 1
NATS_TLS ?= 0
TLS ?= 0
GATEWAYS ?= 1
WATCH_REPLICAS ?= 1
export DATA_DIR MEMBERS NATS_CLUSTER NATS_TLS TLS

.PHONY: run test bench typecheck deps system-deps clean-data help

help:
	@sed -n "2,13p" Makefile

$(PINNED_NODE_BIN)/node:
	@echo "natcd: system node is $(SYSTEM_NODE_MAJOR).x; installing Node $(NODE_VERSION) under $(TOOLS)/"
	mkdir -p $(TOOLS)/node-$(NODE_VERSION)
	npm install --no-audit --no-fund --no-save --prefix $(TOOLS)/node-$(NODE_VERSION) node@$(NODE_VERSION)
	@test -x $@

# Dependencies: `npm install` rather than `npm ci`, because the lock file written on Linux
# lacks optional platform packages of other systems that `npm ci` insists on.
node_modules/.installed: package.json package-lock.json $(NODE_STAMP)
	npm install --no-audit --no-fund
	@touch $@

deps: node_modules/.installed

# Debian packages natcd runs with (nats-server) and tests against (etcd, etcdctl).
system-deps:
	@missing=""; \
	command -v nats-server >/dev/null || missing="$$missing nats-server"; \
	command -v etcdctl >/dev/null || missing="$$missing etcd-client"; \
	command -v etcd >/dev/null || missing="$$missing etcd-server"; \
	if [ -n "$$missing" ]; then \
	  echo "natcd: installing$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get install -y $$missing || { $$SUDO apt-get update && $$SUDO apt-get install -y $$missing; }; \
	fi

run: deps system-deps
	node services/supervisor/main.ts --members=$(MEMBERS) --data-dir=$(DATA_DIR) --nats-cluster=$(NATS_CLUSTER) --gateways=$(GATEWAYS) --watch-replicas=$(WATCH_REPLICAS)

# The raft simulation runs SIM_SEEDS seeded schedules (1000 here; the test file's own default is
# smaller for quick local runs).
SIM_SEEDS ?= 1000
export SIM_SEEDS

# Node's module compile cache for the processes tests and benchmarks start, shared across their
# throw-away data dirs (`make run` keeps it in DATA_DIR/compile-cache, the supervisor's default).
test bench: export NODE_COMPILE_CACHE ?= $(abspath $(TOOLS))/compile-cache

test: deps system-deps typecheck
	node node_modules/vitest/vitest.mjs run

# Benchmark natcd against the real etcd (started by the tool) in one run; BENCH_ARGS passes flags.
bench: deps system-deps
	node bench/main.ts $(BENCH_ARGS)

typecheck: deps
	node node_modules/typescript/bin/tsc -p tsconfig.json

clean-data:
	rm -rf $(DATA_DIR)
