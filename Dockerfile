# syntax=docker/dockerfile:1
#
# Landfall image: one binary, `landfall produce` or `landfall consume`.
# Build: docker build -t landfall:0.1.0 .   (or `docker compose build`)

ARG RUST_VERSION=1.89

############################ builder ############################
FROM rust:${RUST_VERSION}-bookworm AS builder

# rdkafka-sys builds librdkafka from source. cmake and the curl headers are only needed by its
# cmake-build feature (which wants libcurl headers even with curl off); the default build this
# crate uses needs just a C toolchain and make. Both are installed so either build works.
# libssl-dev: librdkafka's TLS, SCRAM and OAUTHBEARER, against the system OpenSSL (the `ssl`
# feature); the runtime image then needs libssl3.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        cmake \
        build-essential \
        pkg-config \
        libssl-dev \
        libcurl4-openssl-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src

# The cargo registry and the target directory live in BuildKit cache mounts, so a rebuild after
# a source change recompiles only the crate, not its dependencies. The target directory is not
# part of the image, so the binary is copied out of it within the same step.
RUN --mount=type=cache,id=landfall-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=landfall-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=landfall-target,target=/src/target,sharing=locked \
    cargo build --release --locked --bin landfall \
    && install -D -m 0755 target/release/landfall /out/landfall

############################ runtime ############################
FROM debian:bookworm-slim AS runtime

# ca-certificates for TLS brokers; curl for the HEALTHCHECK.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl libssl3 \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 landfall \
    && useradd --system --uid 10001 --gid landfall --home-dir /app --shell /usr/sbin/nologin landfall

WORKDIR /app

COPY --from=builder /out/landfall /usr/local/bin/landfall
COPY data/campaigns_dict/campaigns.csv /app/data/campaigns_dict/campaigns.csv

# /data holds the report, the rejects and the consumer's state (docker-compose.yaml bind-mounts
# ./data over it).
RUN mkdir -p /data && chown landfall:landfall /data

USER landfall

# 9464: consumer /metrics, /healthz, /readyz; 9465: producer.
EXPOSE 9464 9465

# The port the HEALTHCHECK probes; set it to 9465 for a producer container.
ENV LANDFALL_HEALTH_PORT=9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["sh", "-c", "curl -fsS http://127.0.0.1:${LANDFALL_HEALTH_PORT:-9464}/healthz || exit 1"]

ENTRYPOINT ["/usr/local/bin/landfall"]
CMD ["--help"]
