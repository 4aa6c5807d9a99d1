# syntax=docker/dockerfile:1
#
# ssogate container image: a Rust build stage, then a small Debian runtime with only the binary.
#
#   docker build -t ssogate .
#   docker run --rm -p 8080:8080 -v "$PWD/ssogate.yaml:/etc/ssogate/ssogate.yaml:ro" \
#       -e SSOGATE_SSO_SECRET -e SSOGATE_SESSION_SECRET -v ssogate-data:/var/lib/ssogate ssogate
#
# The config must listen on 0.0.0.0 (not 127.0.0.1) to be reachable from outside the container, and keep
# directory.path under /var/lib/ssogate (the volume). docker-compose.yml and deploy/ssogate.compose.yaml show a
# complete setup.

# Same toolchain as CI (rustc 1.95); bookworm, like the runtime stage, so the binary links against the glibc it runs
# with.
FROM rust:1.95-bookworm AS builder
WORKDIR /build
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# --locked: exactly the dependency versions in Cargo.lock, as .ci/run builds and tests them. The cache mounts keep
# the crate downloads and compiled dependencies between builds; the binary is copied out of the cached target dir.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/build/target \
    cargo build --release --locked \
    && install -D -m 0755 target/release/ssogate /out/ssogate

FROM debian:bookworm-slim AS runtime
# ca-certificates: the CA bundle, for anything in the container that makes TLS connections (the gateway itself speaks
# plain HTTP to the forum). A fixed, unprivileged uid/gid (10001), so volume ownership stays the same across rebuilds.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 ssogate \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/ssogate --no-create-home \
        --shell /usr/sbin/nologin ssogate \
    && mkdir -p /etc/ssogate /var/lib/ssogate \
    && chown 10001:10001 /var/lib/ssogate \
    && chmod 0750 /var/lib/ssogate
COPY --from=builder /out/ssogate /usr/local/bin/ssogate

ENV RUST_LOG=info \
    SSOGATE_HEALTHCHECK_PORT=9090
# The member directory (SQLite, with its -wal and -shm files): keep it on a volume.
VOLUME ["/var/lib/ssogate"]
WORKDIR /var/lib/ssogate
USER 10001:10001
# 8080: HTTP (listen), 8443: HTTPS (tls.listen), 9090: health, readiness, metrics and admin API (admin.listen). Only
# the ones the config turns on are served.
EXPOSE 8080 8443 9090

# Liveness: GET /healthz on the admin listener, which runs when the config sets admin.listen or admin.token. The image
# has no curl or wget; bash's /dev/tcp makes the request. The port is SSOGATE_HEALTHCHECK_PORT (admin.listen's port,
# 9090 by default). Without an admin listener the container reports "unhealthy": set admin.listen, or run it with
# --no-healthcheck. Load balancers should probe /readyz instead, which also checks the forum and the directory.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${SSOGATE_HEALTHCHECK_PORT:-9090} && printf 'GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && read -r -t 2 _ status _ <&3 && [ \"$status\" = 200 ]"]

# SIGTERM (docker stop) drains requests in flight for limits.shutdown_timeout; give the container at least that long
# (docker stop -t, compose stop_grace_period). SIGHUP reloads the config (docker kill -s HUP).
STOPSIGNAL SIGTERM
ENTRYPOINT ["ssogate"]
CMD ["--config", "/etc/ssogate/ssogate.yaml"]
