# The two commands: `make run` starts the whole system, `make test` runs every test.
# Both need PostgreSQL (and, for the event tests, RabbitMQ) on their default local ports.

.PHONY: run run-release test schema

# Debug build: the first build takes about 5 minutes on two cores, and `make test`
# reuses it. Use `make run-release` for the optimized build (slower to build, faster to run).
run:
	cargo build -p router --bins
	cargo run -p router --bin stack

run-release:
	cargo build --release -p router --bins
	cargo run --release -p router --bin stack

test: schema/compose/node_modules
	cargo test --workspace

# Regenerates schema/<subgraph>.graphql from the code and composes supergraph.graphql.
schema: schema/compose/node_modules
	cargo run -p router --bin export-schema
	node schema/compose/compose.mjs schema

schema/compose/node_modules: schema/compose/package-lock.json
	npm ci --prefix schema/compose --no-audit --no-fund
	touch schema/compose/node_modules
