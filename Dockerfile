# The whole stack in one image: four subgraphs and the router, started by `stack`.
# Used by compose.yaml, which adds PostgreSQL and RabbitMQ.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p router --bins && cargo build --release -p subgraph-kit --bin dev-token

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# `stack` starts the router binary that sits next to it.
COPY --from=build /src/target/release/stack /src/target/release/router /src/target/release/dev-token /app/bin/
COPY router/router.config.yaml /app/config/router.config.yaml
COPY schema/supergraph.graphql /app/config/supergraph.graphql
ENV ROUTER_CONFIG_FILE_PATH=/app/config/router.config.yaml \
    SUPERGRAPH_PATH=/app/config/supergraph.graphql \
    ROUTER_HOST=0.0.0.0 \
    ROUTER_PORT=4000
EXPOSE 4000
CMD ["/app/bin/stack"]
