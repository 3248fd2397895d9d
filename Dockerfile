# One image holds every binary of the system: the four subgraphs, the router and the
# operator tools. Each compose service and each Kubernetes Deployment runs the same image
# with its own command. Why one image and not one target per service:
#   - one build: the binaries share most of their code (the kit, async-graphql,
#     diesel, lapin, tokio), so building them together costs little more than building
#     the router alone, and one cache serves all;
#   - one version: every service, the router config and the supergraph it was composed
#     from ship together under one tag, so a deployment never mixes a subgraph with a
#     supergraph composed from another revision;
#   - the operator tools (dead-letters, rebuild-history) are at hand in any pod:
#     `kubectl exec deploy/rental -- dead-letters ...`.
# The development identity provider (dev-issuer, dev-token) is never in that image: it
# hands out tokens to anyone who asks. It has targets of its own (`dev`, `prebuilt-dev`),
# for compose on a developer machine.
# The cost is an image of a few tens of MB more per service than strictly needed.
#
# The final image also has curl, for the compose healthchecks (the binaries have no
# health-check mode of their own). Kubernetes probes use HTTP and do not need it.
#
# Targets (BuildKit; `docker build` with buildx, or DOCKER_BUILDKIT=1 on Docker 20.10):
#   release   (the default, last) compiles the release binaries in the Rust image: the
#             production image.
#   dev       the release image plus the development issuer (dev-issuer, dev-token).
#   prebuilt  takes binaries already built elsewhere from `prebuilt-bin/` in the build
#             context instead, and needs no Rust image at all. deploy/containers/prepare
#             uses it where no image registry is reachable (CI on these machines): the
#             binaries come from the host's `cargo build`, so RUNTIME_IMAGE must be the
#             host's distribution (same glibc).
#   prebuilt-dev  `prebuilt` plus the development issuer from `prebuilt-dev-bin/`.
# Base images are build arguments, so a machine without a registry can substitute local
# ones (deploy/containers/prepare: `--build-arg RUNTIME_IMAGE=local/bookworm`).
ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
# Node.js and npm: the router embeds a GraphiQL page built from an npm package
# (router/graphiql) at build time. Debian bookworm's Node.js is 18: enough for `npm ci`.
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The target dir is a cache mount, so the binaries are copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --workspace --bins \
 && mkdir -p /out /out-dev \
 && cd target/release \
 && cp inventory rental payment delivery router dead-letters rebuild-history /out/ \
 && cp dev-issuer dev-token /out-dev/

# What every target shares: the runtime, the user, the router's files.
FROM ${RUNTIME_IMAGE} AS runtime
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates curl passwd \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 water \
 && useradd --system --uid 10001 --gid water --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin water
WORKDIR /app
COPY router/router.config.yaml /app/config/router.config.yaml
# The trusted documents, beside the configuration that names them relative to itself.
COPY router/trusted-documents.json /app/config/trusted-documents.json
COPY schema/supergraph.graphql /app/config/supergraph.graphql
ENV PATH=/app/bin:$PATH \
    ROUTER_CONFIG_FILE_PATH=/app/config/router.config.yaml \
    SUPERGRAPH_PATH=/app/config/supergraph.graphql
USER 10001:10001
EXPOSE 4000 4001 4002 4003 4004 9464
# No service is started by default: compose and the Kubernetes manifests set the command.
CMD ["sh", "-c", "echo 'usage: run one of: inventory | rental | payment | delivery | router | dead-letters | rebuild-history' >&2; exit 64"]

# Binaries built outside the image (see above).
FROM runtime AS prebuilt
COPY prebuilt-bin/ /app/bin/

# The development issuer keeps its key, and makes rental's, in volumes mounted here:
# the directories belong to the application user, so a fresh volume does too.
FROM prebuilt AS prebuilt-dev
COPY prebuilt-dev-bin/ /app/bin/
USER root
RUN install -d -o 10001 -g 10001 /var/lib/water/issuer /var/lib/water/rental-key /var/lib/water/payment-callers
USER 10001:10001

FROM runtime AS dev
COPY --from=build /out/ /out-dev/ /app/bin/
USER root
RUN install -d -o 10001 -g 10001 /var/lib/water/issuer /var/lib/water/rental-key /var/lib/water/payment-callers
USER 10001:10001

FROM runtime AS release
COPY --from=build /out/ /app/bin/
