#!/usr/bin/env bash
# Load test on the lab topology: the traffic generator `nvlb gen` through the LB
# (`nvlb run`) to the reflector (`nvlb gen --reflect`, every Hyper-V host at once) and
# back, next to (a) the kernel forwarding the same packets between the same namespaces
# and (b) netsniff-ng's trafgen as the generator, all in one run.
#
#   gen --veth-- dut --veth-- refl
#   nvlb gen     nvlb run or  nvlb gen --reflect (--echo-plain for the kernel)
#   or trafgen   kernel       or nothing (one-way: refl's veth counts what arrives)
#   (core 0)     (core 1)     (core 1)
#
# Run as root from the repository (needs iproute2, taskset, python3; installs
# netsniff-ng for trafgen if missing):
#
#   bash benches/load.sh [--rounds N] [--window SECONDS] [--size BYTES] [--rate PPS]
#                        [--nvlb PATH] [--keep-raw FILE]
#
# Measurements, each once per round, rounds interleaved, the table gives medians:
#   one-way   the generator sends as fast as it can for WARMUP+WINDOW seconds; over
#             the window: offered = generator veth tx, delivered = refl veth rx
#             (NVGRE from the LB, or plain IP from the kernel). Generators: nvlb gen
#             and trafgen (8192 UDP flows to bench-udp, the same frame size).
#   round     nvlb gen with the reflector: at --rate (modest, default 20000 pps) and
#   trip      as fast as it can; answered pps, loss and round-trip percentiles from
#             the generator's --json summary. Through the kernel the reflector echoes
#             plain IP (--echo-plain); through nvlb it checks each packet against policy.
#             nvlb runs with one worker on the ring backend, and once more with the
#             socket backend at the modest rate (latency without the ring's block timeout).
#
# Only addresses inside the namespaces this script makes are ever sent to; they are
# removed on exit, on failure and on Ctrl-C, and leftovers of an earlier run first.
set -Eeuo pipefail
trap 'echo "load.sh: failed (status $?) at line $LINENO: $BASH_COMMAND" >&2' ERR

ROUNDS=3
WINDOW=3
WARMUP=1
SIZE=128
RATE=20000
PREFIX="nvld-"
REPO=$(cd "$(dirname "$0")/.." && pwd)
NVLB=""
RAW=""

while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift 2 ;;
        --window) WINDOW=$2; shift 2 ;;
        --size) SIZE=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --nvlb) NVLB=$2; shift 2 ;;
        --keep-raw) RAW=$2; shift 2 ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "load.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

[ "$(id -u)" = 0 ] || { echo "load.sh: run as root (namespaces, AF_PACKET)" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "load.sh: needs 2 cores (generator on 0, forwarder on 1)" >&2; exit 1; }
if ! command -v trafgen >/dev/null; then
    echo "load.sh: installing netsniff-ng (trafgen)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y netsniff-ng >/dev/null
fi
if [ -z "$NVLB" ]; then
    NVLB="${CARGO_TARGET_DIR:-$REPO/target}/release/nvlb"
    (cd "$REPO" && cargo build --release --quiet)
fi
POLICY="$REPO/benches/forward-policy.toml"
"$NVLB" check "$POLICY" >/dev/null

GEN=${PREFIX}gen
DUT=${PREFIX}dut
REFL=${PREFIX}refl
TMP=$(mktemp -d /tmp/nvld.XXXXXX)
PIDS=()

# From the policy: the generator is the LB's gateway; bench-udp's DIPs are on host2/3.
GEN_MAC=02:00:00:00:01:01      # [balancer.external] gateway_mac
EXT_MAC=02:00:00:00:01:0a      # [balancer.external] mac
PROV_MAC=02:00:00:00:06:0a     # [balancer.provider] mac
HOST_PA=192.168.6.12           # host2 (kernel baseline: every packet goes there)
HOST_MAC=02:00:00:00:06:12
REFL_MAC=02:00:00:00:06:fe     # refl's veth owns no host MAC: it sees all (AF_PACKET)
CLIENT=198.18.0.2              # nvlb gen's IPv4 client (RFC 2544 range)
VIP=203.0.113.30
GEN_ARGS=(--config "$POLICY" --external g0 --vip bench-udp --sizes "$SIZE" --flows 8192
          --threads 1 --quiet --json)

# shellcheck source=benches/netns.sh
. "$REPO/benches/netns.sh"
cleanup() { bench_cleanup "$GEN" "$DUT" "$REFL"; }
trap cleanup EXIT
trap 'echo "load.sh: interrupted" >&2; exit 130' INT TERM

bench_remove_leftovers "$PREFIX"
bench_topology "$GEN" "$DUT" "$REFL" r0 $REFL_MAC $GEN_MAC $EXT_MAC $PROV_MAC
# A link drops what is sent on it until the kernel's link watch ran (up to 1 s).
for _ in $(seq 50); do
    n=0
    for ns in "$GEN" "$DUT" "$REFL"; do
        n=$((n + $(ip -n "$ns" -o link show | grep -v ' lo:' | grep -vc 'state UP' || true)))
    done
    [ "$n" = 0 ] && break
    sleep 0.1
done

kernel_on() {
    ip -n "$DUT" addr add 198.18.0.1/24 dev dx
    ip -n "$DUT" addr add 192.168.6.10/24 dev dp
    ip -n "$DUT" route add $VIP/32 via $HOST_PA dev dp
    ip -n "$DUT" neigh replace $HOST_PA lladdr $HOST_MAC dev dp nud permanent
    ip -n "$DUT" neigh replace $CLIENT lladdr $GEN_MAC dev dx nud permanent
    nsx "$DUT" sysctl -qw net.ipv4.ip_forward=1
}

kernel_off() {
    nsx "$DUT" sysctl -qw net.ipv4.ip_forward=0
    ip -n "$DUT" addr flush dev dx
    ip -n "$DUT" addr flush dev dp
    ip -n "$DUT" neigh flush dev dp nud permanent 2>/dev/null || true
    ip -n "$DUT" neigh flush dev dx nud permanent 2>/dev/null || true
}

# trafgen: the same frames as nvlb gen's (UDP to bench-udp, 8192 source ports, SIZE
# bytes without FCS), checksum 0 so that trafgen does no per-packet work.
cat >"$TMP/trafgen.cfg" <<EOF
{
  eth(da=$EXT_MAC, sa=$GEN_MAC),
  ipv4(sa=$CLIENT, da=$VIP, ttl=64, df),
  udp(sp=dinc(1024, 9215), dp=53, csum=0),
  fill(0x41, $((SIZE - 42)))
}
EOF

# Generator veth tx, reflector veth rx.
counters() {
    echo "$(nsx "$GEN" cat /sys/class/net/g0/statistics/tx_packets)" \
        "$(nsx "$REFL" cat /sys/class/net/r0/statistics/rx_packets)"
}

# One-way: "offered delivered" in packets per second over the window.
oneway() {
    local tool=$1 pid a b
    if [ "$tool" = trafgen ]; then
        ip netns exec "$GEN" setsid taskset -c 0 trafgen -o g0 -i "$TMP/trafgen.cfg" -P 1 -Q -C \
            --no-sock-mem -q >"$TMP/gen.log" 2>&1 &
    else
        ip netns exec "$GEN" setsid taskset -c 0 "$NVLB" gen "${GEN_ARGS[@]}" \
            --duration $((WARMUP + WINDOW + 1))s --drain 0ms >"$TMP/gen.log" 2>&1 &
    fi
    pid=$!
    PIDS+=("$pid")
    sleep "$WARMUP"
    a=$(counters)
    sleep "$WINDOW"
    b=$(counters)
    ip netns pids "$GEN" | xargs -r kill -TERM 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    python3 -c '
import sys
a = list(map(int, sys.argv[1].split())); b = list(map(int, sys.argv[2].split()))
w = float(sys.argv[3])
print("%d %d" % ((b[0] - a[0]) / w, (b[1] - a[1]) / w))' "$a" "$b" "$WINDOW"
}

# Round trip with nvlb gen: "answered_pps loss% p50 p99 p99.9" (us).
roundtrip() {
    local rate_args=() out
    [ "$1" = max ] || rate_args=(--rate "$1")
    out=$(ip netns exec "$GEN" taskset -c 0 "$NVLB" gen "${GEN_ARGS[@]}" "${rate_args[@]}" \
        --duration "${WINDOW}s" 2>"$TMP/gen.err" || true)
    [ -n "$out" ] || { cat "$TMP/gen.err" >&2; echo "0 100 0 0 0"; return; }
    python3 -c '
import json, sys
s = json.loads(sys.argv[1]); r = s["rtt"]
print("%d %.3f %.1f %.1f %.1f" % (s["rx_pps"], s["loss_percent"], r["p50_us"], r["p99_us"], r["p999_us"]))' "$out"
}

start_bg() { # ns log cmd...
    local ns=$1 log=$2; shift 2
    # A previous run's log must not count as this one's "ready".
    rm -f "$log.out" "$log.err"
    ip netns exec "$ns" setsid taskset -c 1 "$@" >"$log.out" 2>"$log.err" &
    PIDS+=("$!")
    for _ in $(seq 50); do
        grep -qs ready "$log.err" && break
        sleep 0.1
    done
    grep -qs ready "$log.err" || { cat "$log.err" >&2; exit 1; }
}

stop_bg() {
    for ns in "$DUT" "$REFL"; do ip netns pids "$ns" | xargs -r kill -TERM 2>/dev/null || true; done
    sleep 0.3
}

echo "load.sh: $(uname -sr), $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" >&2
echo "load.sh: $ROUNDS round(s), ${SIZE} B frames, ${WINDOW}s windows, modest rate $RATE pps" >&2
: >"$TMP/results"
for r in $(seq "$ROUNDS"); do
    echo "load.sh: round $r/$ROUNDS" >&2
    # (a) the kernel.
    kernel_on
    echo "oneway kernel nvlb-gen $(oneway gen)" >>"$TMP/results"
    echo "oneway kernel trafgen $(oneway trafgen)" >>"$TMP/results"
    start_bg "$REFL" "$TMP/refl" "$NVLB" gen --reflect --echo-plain --config "$POLICY" --provider r0
    echo "rtt kernel $RATE $(roundtrip "$RATE")" >>"$TMP/results"
    echo "rtt kernel max $(roundtrip max)" >>"$TMP/results"
    stop_bg
    kernel_off
    # nvlb run, one worker, ring backend.
    start_bg "$DUT" "$TMP/lb" "$NVLB" run --config "$POLICY" --external dx --provider dp \
        --workers 1 --backend ring
    echo "oneway nvlb nvlb-gen $(oneway gen)" >>"$TMP/results"
    echo "oneway nvlb trafgen $(oneway trafgen)" >>"$TMP/results"
    start_bg "$REFL" "$TMP/refl" "$NVLB" gen --reflect --config "$POLICY" --provider r0
    echo "rtt nvlb $RATE $(roundtrip "$RATE")" >>"$TMP/results"
    echo "rtt nvlb max $(roundtrip max)" >>"$TMP/results"
    stop_bg
    # The socket backend (a recvmsg per frame, no ring block to retire) at the modest
    # rate: how much of nvlb's round trip is the ring's block timeout.
    start_bg "$DUT" "$TMP/lb" "$NVLB" run --config "$POLICY" --external dx --provider dp \
        --workers 1 --backend socket
    start_bg "$REFL" "$TMP/refl" "$NVLB" gen --reflect --config "$POLICY" --provider r0
    echo "rtt nvlb-socket $RATE $(roundtrip "$RATE")" >>"$TMP/results"
    stop_bg
done
if [ -n "$RAW" ]; then cp "$TMP/results" "$RAW"; fi

python3 - "$TMP/results" <<'EOF'
import sys, statistics
from collections import defaultdict

oneway, rtt = defaultdict(list), defaultdict(list)
for line in open(sys.argv[1]):
    f = line.split()
    if f[0] == "oneway":
        oneway[(f[1], f[2])].append((int(f[3]), int(f[4])))
    else:
        rtt[(f[1], f[2])].append(tuple(map(float, f[3:8])))
med = statistics.median
n = max(len(v) for v in list(oneway.values()) + list(rtt.values()))
print()
print("Median of %d round(s). One-way: Mpps over the window, generator on core 0, forwarder on core 1." % n)
print()
print("| forwarder | generator | offered Mpps | delivered Mpps | min..max delivered |")
print("|---|---|---|---|---|")
for (fwd, gen), rs in sorted(oneway.items()):
    d = [r[1] for r in rs]
    print("| %s | %s | %.3f | %.3f | %.3f..%.3f |" % (
        fwd, gen, med([r[0] for r in rs]) / 1e6, med(d) / 1e6, min(d) / 1e6, max(d) / 1e6))
print()
print("Round trip: nvlb gen -> forwarder -> reflector -> forwarder -> nvlb gen (reflector on core 1).")
print()
print("| forwarder | offered | answered kpps | loss % | rtt p50 us | p99 us | p99.9 us |")
print("|---|---|---|---|---|---|---|")
for (fwd, rate), rs in sorted(rtt.items()):
    m = lambda i: med([r[i] for r in rs])
    print("| %s | %s | %.1f | %.3f | %.0f | %.0f | %.0f |" % (
        fwd, rate if rate == "max" else "%s pps" % rate, m(0) / 1e3, m(1), m(2), m(3), m(4)))
EOF
