# syntax=docker/dockerfile:1
# Renewgate container image: build with the Rust toolchain, run on a slim Debian as a non-root
# user. State (SQLite or nothing with PostgreSQL, the master key, the CA bundle, TLS files, the
# initial admin password) lives in the /data volume. Configuration: RENEWGATE_* variables.

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev libpq-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY benches benches
COPY migrations migrations
COPY src src
COPY crates crates
RUN cargo build --release --locked --bin renewgate \
 && install -m 0755 target/release/renewgate /usr/local/bin/renewgate

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl libpq5 libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 renewgate \
 && useradd --system --uid 10001 --gid renewgate --home-dir /data --shell /usr/sbin/nologin renewgate \
 && mkdir -p /data /stores /agent \
 && chown renewgate:renewgate /data /stores /agent
COPY --from=build /usr/local/bin/renewgate /usr/local/bin/renewgate
ENV RENEWGATE_DATA_DIR=/data \
    RENEWGATE_BIND=0.0.0.0:8443
VOLUME ["/data"]
USER 10001:10001
WORKDIR /data
EXPOSE 8443
# The gateway's own certificate names localhost and 127.0.0.1 and is issued by the CA in the bundle.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["curl", "-fsS", "--cacert", "/data/ca-bundle.pem", "https://127.0.0.1:8443/health"]
ENTRYPOINT ["renewgate"]
CMD ["serve"]
