# The two commands: `make run` starts the whole system, `make test` runs every test.
# Both need PostgreSQL and RabbitMQ on their default local ports.

.PHONY: run run-release test setup schema trusted-documents token bins

# Prerequisites are made one after the other, in the order written: `setup` first.
.NOTPARALLEL:

# Where cargo puts what it builds (CARGO_TARGET_DIR, as cargo itself reads it). The
# binaries are run from there, not with `cargo run -p ...`: selecting one package
# changes which crate features are unified, and cargo would build everything again.
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)

# Every binary: the four subgraphs, the router, the launcher and the tools. The first
# (debug) build takes about 8 minutes on two cores, most of it the router.
bins:
	cargo build --workspace --bins

# Five processes: the four subgraphs, each from its own binary, and the router.
run: bins
	$(TARGET_DIR)/debug/stack

run-release:
	cargo build --release --workspace --bins
	$(TARGET_DIR)/release/stack

# The tests start the services' binaries (the fault suite, the drain tests, the compose
# test's image), so those are built first; the GraphiQL browser test
# (harness/tests/e2e/graphiql.rs) drives Chromium with router/tests-browser's pinned
# playwright-core. `setup` comes before any build.
test: setup schema/compose/node_modules router/tests-browser/node_modules bins
	cargo test --workspace

# What the tests drive besides PostgreSQL and RabbitMQ (HAProxy, Prometheus, Chromium,
# a container engine with compose, debootstrap, shellcheck): installed when missing
# (as root or with password-less sudo), or a stop at once with the list and the command.
setup:
	@.ci/setup

# A dev token: make token ROLE=customer ID=<uuid>, or make token ROLE=operator.
ROLE ?= customer
token:
	@cargo build -q --workspace --bins
	@$(TARGET_DIR)/debug/dev-token $(ROLE) $(ID)

# Regenerates schema/<subgraph>.graphql from the code and composes supergraph.graphql.
schema: schema/compose/node_modules bins
	$(TARGET_DIR)/debug/export-schema
	node schema/compose/compose.mjs schema

# Writes router/trusted-documents.json, the router's manifest of our clients' documents,
# from the README's tour: run it after changing a GraphQL example there.
trusted-documents: bins
	$(TARGET_DIR)/debug/trusted-documents

schema/compose/node_modules: schema/compose/package-lock.json
	npm ci --prefix schema/compose --no-audit --no-fund
	touch schema/compose/node_modules

router/tests-browser/node_modules: router/tests-browser/package-lock.json
	npm ci --prefix router/tests-browser --no-audit --no-fund
	touch router/tests-browser/node_modules
