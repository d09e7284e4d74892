# nvlb: an NVGRE-aware, multi-tenant L4 load balancer.
#
#   podman build --format docker --build-arg NVLB_GIT_REVISION="$(git rev-parse --short HEAD)" -t nvlb .
#   podman run -d --name nvlb --network host \
#     --cap-drop ALL --cap-add NET_RAW \
#     -v /etc/nvlb:/etc/nvlb:ro nvlb \
#     run --config /etc/nvlb/policy.toml --external eth1 --provider eth2
#
# The data plane opens AF_PACKET sockets on the host's interfaces, so the container
# shares a network namespace that holds them (--network host, or ns:/run/netns/NAME)
# and needs CAP_NET_RAW and nothing else (not CAP_NET_ADMIN): tests/container.sh runs it
# with only that, two workers in a PACKET_FANOUT group (docs/operations.md). It runs as
# the unprivileged user `nvlb`; the runtime grants that user the added capability as an
# ambient one. `--format docker` keeps the HEALTHCHECK (OCI images drop it).
# `run --backend xdp` (AF_XDP, nvlb's XDP program on the ports; docs/operations.md)
# needs more: --cap-add NET_RAW --cap-add NET_ADMIN --cap-add BPF --cap-add IPC_LOCK
# (or a memlock ulimit of 24 MiB per worker instead of IPC_LOCK), and a seccomp profile
# that allows bpf(2): some runtimes' default profiles refuse it to a container without
# CAP_SYS_ADMIN (not tested here: tests/container.sh runs the AF_PACKET backends).
# tests/container.sh builds this file offline and runs it inside the lab.

ARG RUST_VERSION=1.95

# --- build: the official Rust image, a release binary ---------------------------------
FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
# The revision for `nvlb --version` (.git is not in the build context).
ARG NVLB_GIT_REVISION=unknown
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY crates ./crates
COPY benches ./benches
COPY lb-config ./lb-config
COPY dashboards/alerts ./dashboards/alerts
# The registry and target directories are cache mounts: a rebuild after a source
# change recompiles nvlb only, not its dependencies.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    NVLB_GIT_REVISION="${NVLB_GIT_REVISION}" cargo build --release --locked --bin nvlb \
    && install -m 0755 target/release/nvlb /usr/local/bin/nvlb

# --- runtime: slim Debian, the binary and a policy ------------------------------------
FROM docker.io/library/debian:bookworm-slim
RUN groupadd --system --gid 10001 nvlb \
    && useradd --system --uid 10001 --gid nvlb --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin nvlb \
    && install -d -m 0755 /etc/nvlb
COPY --from=build /usr/local/bin/nvlb /usr/local/bin/nvlb
# The guide's example policy as a default; mount your own over /etc/nvlb.
COPY lb-config/example.toml /etc/nvlb/policy.toml
# Numeric, so that runtimes (and Kubernetes runAsNonRoot) can tell it is not root.
USER 10001:10001
# 9180: management API (GET /healthz, reload, drain); 9181: Prometheus /metrics.
EXPOSE 9180/tcp 9181/tcp
# `nvlb ctl ping` does an unauthenticated GET /healthz on the management API
# (127.0.0.1:9180 in the container's network namespace) and exits 0 only on 200.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["nvlb", "ctl", "ping"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["nvlb"]
CMD ["run", "--config", "/etc/nvlb/policy.toml", "--external", "eth0", "--provider", "eth0"]
