# syntax=docker/dockerfile:1.7
# One multi-stage Dockerfile for the three services. The builder compiles all of them once
# (BuildKit shares the stage between targets); each runtime target copies one binary.
#   docker build --target publisher  -t odin-stream/publisher .
#   docker build --target ws-gateway -t odin-stream/ws-gateway .
#   docker build --target aggregator -t odin-stream/aggregator .
#   docker build --target loadtest   -t odin-stream/loadtest .   (capacity tests only)

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS source
WORKDIR /src
COPY . .

FROM source AS builder
# Cache mounts keep the registry and target/ between builds; the binaries are copied out of
# the cached target/ because cache mounts are not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p publisher -p ws-gateway -p aggregator \
 && mkdir -p /out \
 && cp target/release/publisher target/release/ws-gateway target/release/aggregator /out/

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# ca-certificates for TLS to a production Redpanda; bash (already in the image) runs the
# health check, so no curl is needed. Not version-pinned: Debian replaces the package with
# each security update and the pinned version would vanish from the archive.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin odin
COPY --chmod=0755 deploy/docker/healthcheck.sh /usr/local/bin/odin-healthcheck
ENV LOG_FORMAT=json
USER 10001:10001
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/odin-healthcheck"]

FROM source AS loadtest-builder
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p loadtest \
 && mkdir -p /out && cp target/release/loadtest /out/

FROM runtime AS publisher
ENV ODIN_SERVICE=publisher API_PORT=3001
COPY --from=builder /out/publisher /usr/local/bin/publisher
EXPOSE 3001
ENTRYPOINT ["/usr/local/bin/publisher"]

FROM runtime AS ws-gateway
ENV ODIN_SERVICE=ws-gateway WS_ADDR=:3002
COPY --from=builder /out/ws-gateway /usr/local/bin/ws-gateway
EXPOSE 3002
ENTRYPOINT ["/usr/local/bin/ws-gateway"]

FROM runtime AS aggregator
ENV ODIN_SERVICE=aggregator AGGREGATOR_ADDR=:3004
COPY --from=builder /out/aggregator /usr/local/bin/aggregator
EXPOSE 3004
ENTRYPOINT ["/usr/local/bin/aggregator"]

# Not a service: the load generator, run by deploy/gcp/capacity-test.sh. No health check.
FROM runtime AS loadtest
HEALTHCHECK NONE
COPY --from=loadtest-builder /out/loadtest /usr/local/bin/loadtest
ENTRYPOINT ["/usr/local/bin/loadtest"]
