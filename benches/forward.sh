#!/usr/bin/env bash
# Wire rate between namespaces: packets per second through `nvlb run`, measured in the
# same run against the kernel forwarding the same traffic between the same namespaces.
#
#   gen --veth-- dut --veth-- sink
#   trafgen      kernel or    counts frames (rx_packets of its veth)
#   (core 0)     nvlb run
#
# Run as root from the repository (needs iproute2, taskset, python3; installs
# netsniff-ng for trafgen if missing):
#
#   bash benches/forward.sh [--rounds N] [--window SECONDS] [--sizes "64 1400"]
#                           [--nvlb PATH] [--keep-raw FILE] [--only REGEX] [--rate PPS]
#
# --rate PPS offers a fixed rate (trafgen -b) instead of the generator's top speed, and
# adds the figure of record: the busy CPU time of all cores (/proc/stat: user, system,
# irq, softirq, steal; kernel threads such as napi/* included) per delivered packet,
# minus what the generator alone costs at that rate (config gen-only: the same frames
# to a MAC the dut does not own, which its kernel drops at once as PACKET_OTHERHOST,
# the cheapest receive there is; so the figure is the forwarding work beyond taking a
# frame off the veth). Pick a rate
# that every configuration carries without loss (delivered = offered in the table).
#
# --only keeps the configurations whose name (kernel, nvlb-socket-1, nvlb-ring-2, ...)
# matches REGEX.
#
# Every configuration is measured once per round, rounds interleave the configurations
# so that the machine's noise hits all of them alike, and the table gives the median
# over rounds. Configurations (the generator is always one trafgen process on core 0):
#
#   kernel        ip_forward in dut; veth receive runs in softirq on the sending CPU,
#                 so the kernel forwards on core 0, the generator's core
#                 (as in docs/performance.md's starting figures). Steering it to core 1 with
#                 RPS is not measurable with trafgen: core 1's backlog overflows and
#                 trafgen aborts ("Flushing TX_RING failed: Resource temporarily
#                 unavailable"), so there is no kernel figure for "forwarder on core 1"
#   kernel-napi   the same, but the dut's receive in veth's threaded NAPI kthread
#                 (GRO on, /sys/class/net/dx/threaded = 1) pinned to core 1
#   socket/ring   nvlb run --backend socket|ring --workers W; W=1 pinned to core 1,
#                 W=2 both workers on cores 0-1 (taskset 0-1, the scheduler places them)
#   xdp           nvlb run --backend xdp --workers 1 pinned to core 1: its XDP program on
#                 the dut's ports (native, AF_XDP copy mode on veth), one queue each
#
# Only addresses inside the namespaces this script makes are ever sent to; they are
# removed on exit, on failure and on Ctrl-C, and leftovers of an earlier run first.
set -Eeuo pipefail
trap 'echo "forward.sh: failed (status $?) at line $LINENO: $BASH_COMMAND" >&2' ERR

ROUNDS=3
WINDOW=3
WARMUP=1
SIZES="64 1400"
PREFIX="nvfwd-"
REPO=$(cd "$(dirname "$0")/.." && pwd)
NVLB=""
RAW=""
ONLY="."
RATE=""

while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift 2 ;;
        --window) WINDOW=$2; shift 2 ;;
        --sizes) SIZES=$2; shift 2 ;;
        --nvlb) NVLB=$2; shift 2 ;;
        --keep-raw) RAW=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        -h|--help) sed -n '2,40p' "$0"; exit 0 ;;
        *) echo "forward.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

[ "$(id -u)" = 0 ] || { echo "forward.sh: run as root (namespaces, AF_PACKET)" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "forward.sh: needs 2 cores (generator on 0, forwarder on 1)" >&2; exit 1; }

if ! command -v trafgen >/dev/null; then
    echo "forward.sh: installing netsniff-ng (trafgen)" >&2
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
SINK=${PREFIX}sink
TMP=$(mktemp -d /tmp/nvfwd.XXXXXX)
PIDS=()

# Addresses and MACs: the LB's from the policy; the generator is the LB's gateway.
GEN_MAC=02:00:00:00:01:01      # [balancer.external] gateway_mac
EXT_MAC=02:00:00:00:01:0a      # [balancer.external] mac
PROV_MAC=02:00:00:00:06:0a     # [balancer.provider] mac
HOST_PA=192.168.6.12           # host2, which runs the first DIP of bench-udp
HOST_MAC=02:00:00:00:06:12
# The sink owns no host MAC: every frame is counted by its veth and then dropped by
# the sink's kernel as not for it (the cheapest path; the same for every config).
SINK_MAC=02:00:00:00:06:fe
CLIENT=198.18.0.2
VIP=203.0.113.30

# shellcheck source=benches/netns.sh
. "$REPO/benches/netns.sh"
cleanup() { bench_cleanup "$GEN" "$DUT" "$SINK"; }
trap cleanup EXIT
trap 'echo "forward.sh: interrupted" >&2; exit 130' INT TERM

bench_remove_leftovers "$PREFIX"
bench_topology "$GEN" "$DUT" "$SINK" s0 $SINK_MAC $GEN_MAC $EXT_MAC $PROV_MAC

kernel_on() {
    ip -n "$DUT" addr add 198.18.0.1/24 dev dx
    ip -n "$DUT" addr add 192.168.6.10/24 dev dp
    ip -n "$DUT" route add $VIP/32 via $HOST_PA dev dp
    ip -n "$DUT" neigh replace $HOST_PA lladdr $HOST_MAC dev dp nud permanent
    nsx "$DUT" sysctl -qw net.ipv4.ip_forward=1
}

kernel_off() {
    nsx "$DUT" sysctl -qw net.ipv4.ip_forward=0
    ip -n "$DUT" addr flush dev dx
    ip -n "$DUT" addr flush dev dp
    ip -n "$DUT" neigh flush dev dp nud permanent 2>/dev/null || true
}

# One UDP packet per flow round: the source port walks 1024..9215 (8192 flows), UDP
# checksum 0 (legal in IPv4) so that the generator does no per-packet checksum.
# SIZE is the Ethernet frame without FCS for 64 (60 bytes on the wire of a veth) and
# the IP packet for 1400.
trafgen_conf() {
    local size=$1 da=${2:-$EXT_MAC} name=${3:-gen-$1} payload
    if [ "$size" = 64 ]; then payload=$((60 - 42)); else payload=$((size - 28)); fi
    cat >"$TMP/$name.cfg" <<EOF
{
  eth(da=$da, sa=$GEN_MAC),
  ipv4(sa=$CLIENT, da=$VIP, ttl=64, df),
  udp(sp=dinc(1024, 9215), dp=53, csum=0),
  fill(0x41, $payload)
}
EOF
}
for s in $SIZES; do
    trafgen_conf "$s"
    trafgen_conf "$s" 02:00:00:00:01:ff "other-$s"
done

# Interface counters, one line: gen tx, gen tx_dropped, dut rx, sink rx.
counters() {
    local g d s
    g=$(nsx "$GEN" cat /sys/class/net/g0/statistics/tx_packets /sys/class/net/g0/statistics/tx_dropped)
    d=$(nsx "$DUT" cat /sys/class/net/dx/statistics/rx_packets)
    s=$(nsx "$SINK" cat /sys/class/net/s0/statistics/rx_packets)
    echo $g $d $s
}

# Busy jiffies of all cores together (user nice system irq softirq steal).
busy_jiffies() {
    awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}

# Runs the generator for WARMUP + WINDOW seconds and prints "offered dut_rx delivered"
# in packets per second over the window, then "cpu=M": the machine's busy cores over
# the window in thousandths.
measure() {
    local size=$1 cfg=${2:-gen-$1} pid a b
    # Started without a shell function in between, so that $! is trafgen itself, and
    # in its own session: a signal trafgen sends its process group must not reach us.
    ip netns exec "$GEN" setsid taskset -c 0 trafgen -o g0 -i "$TMP/$cfg.cfg" -P 1 -Q -C --no-sock-mem -q \
        ${RATE:+-b "${RATE}pps"} >"$TMP/trafgen.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    sleep "$WARMUP"
    a="$(counters) $(busy_jiffies) $(cut -d' ' -f1 /proc/uptime)"
    sleep "$WINDOW"
    b="$(counters) $(busy_jiffies) $(cut -d' ' -f1 /proc/uptime)"
    if [ "${a%% *}" = "${b%% *}" ]; then
        echo "forward.sh: the generator sent nothing:" >&2
        cat "$TMP/trafgen.log" >&2
    fi
    # trafgen's parent waits for its forked sender, which a signal to the parent alone
    # does not stop: signal every process in the generator's namespace (all ours).
    ip netns pids "$GEN" | xargs -r kill -TERM 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    python3 -c '
import sys
a = list(map(float, sys.argv[1].split())); b = list(map(float, sys.argv[2].split()))
w = float(sys.argv[3]); d = [y - x for x, y in zip(a, b)]
hz = float(sys.argv[4])
# Busy time over the time that really passed between the two samples (uptime).
print("%d %d %d cpu=%d" % ((d[0] + d[1]) / w, d[2] / w, d[3] / w, d[4] / hz / d[5] * 1000))' \
        "$a" "$b" "$WINDOW" "$(getconf CLK_TCK)"
}

# nvlb's exit counters, as "key=value" words: the ones the table shows.
nvlb_summary() {
    awk '
        $1 == "packets_in" || $1 == "forwarded" || $1 == "handoffs" || $1 == "new_flows" \
        || $1 == "dropped" || $1 ~ /^drop\./ || $1 == "io.tx_queue_full" \
        || $1 == "io.handoff_queue_full" || $1 == "io.kernel_drops" \
        || $1 == "io.kernel_packets" || $1 == "io.tx_errors" { printf "%s=%s ", $1, $2 }
    ' "$1"
}

run_kernel() {
    local size=$1 name=$2 layout=$3
    [[ $name =~ $ONLY ]] || return 0
    kernel_on
    echo "$name $size - $layout $(measure "$size") -" >>"$TMP/results"
    kernel_off
}

# Kernel forwarding with the dut's receive side in veth's NAPI kthread on core 1.
run_kernel_napi() {
    local size=$1 name=kernel-napi layout=$2 pid
    [[ $name =~ $ONLY ]] || return 0
    kernel_on
    nsx "$DUT" ethtool -K dx gro on >/dev/null
    nsx "$DUT" sh -c "echo 1 > /sys/class/net/dx/threaded"
    for pid in $(ps -eo pid=,comm= | awk '$2 ~ /^napi\/dx-/ { print $1 }'); do
        taskset -pc 1 "$pid" >/dev/null
    done
    echo "$name $size - $layout $(measure "$size") -" >>"$TMP/results"
    nsx "$DUT" sh -c "echo 0 > /sys/class/net/dx/threaded"
    nsx "$DUT" ethtool -K dx gro off >/dev/null
    kernel_off
}

# The generator alone at --rate: frames to a MAC the dut does not own.
run_gen_only() {
    local size=$1
    [[ gen-only =~ $ONLY ]] && [ -n "$RATE" ] || return 0
    echo "gen-only $size - gen:0 $(measure "$size" "other-$size") -" >>"$TMP/results"
}

# Enslaves the dut's ports to a bridge that stays down: AF_PACKET still sees every
# frame (taps run before the bridge's rx handler), and the kernel then drops it in the
# bridge's handler instead of running it through ip_rcv (which, with no address and
# ip_forward=0, ends in IpInAddrErrors after a route lookup) on the generator's core.
bridge_on() {
    ip -n "$DUT" link add nvdrop type bridge
    ip -n "$DUT" link set dx master nvdrop
    ip -n "$DUT" link set dp master nvdrop
}

bridge_off() {
    ip -n "$DUT" link set dx nomaster
    ip -n "$DUT" link set dp nomaster
    ip -n "$DUT" link del nvdrop
}

run_nvlb() {
    local size=$1 backend=$2 workers=$3 cpus=$4 layout=$5 bridged=${6:-} pid
    local name=nvlb-$backend${bridged:+-bridged}
    [[ $name-$workers =~ $ONLY ]] || return 0
    [ -z "$bridged" ] || bridge_on
    # Emptied first: the readiness loop below must not find the previous run's
    # "ready" before the shell has truncated the file for this one.
    : >"$TMP/nvlb.err"
    # setsid -w: should setsid fork, $! still waits for nvlb.
    ip netns exec "$DUT" setsid -w taskset -c "$cpus" "$NVLB" run --config "$POLICY" --external dx \
        --provider dp --workers "$workers" --backend "$backend" \
        >"$TMP/nvlb.out" 2>"$TMP/nvlb.err" &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 50); do
        grep -q ready "$TMP/nvlb.err" && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    grep -q ready "$TMP/nvlb.err" || { cat "$TMP/nvlb.err" >&2; exit 1; }
    local rates
    rates=$(measure "$size")
    sleep 0.2
    kill -TERM "$pid"
    wait "$pid" || { echo "forward.sh: nvlb exited $?" >&2; cat "$TMP/nvlb.err" >&2; exit 1; }
    [ -z "$bridged" ] || bridge_off
    echo "$name $size $workers $layout $rates $(nvlb_summary "$TMP/nvlb.out")" \
        >>"$TMP/results"
}

echo "forward.sh: $(uname -sr), $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" >&2
echo "forward.sh: $ROUNDS round(s) x sizes [$SIZES] x 9 configs, ${WINDOW}s windows${RATE:+, offered $RATE pps}" >&2
: >"$TMP/results"
for r in $(seq "$ROUNDS"); do
    for size in $SIZES; do
        echo "forward.sh: round $r/$ROUNDS, $size B" >&2
        run_gen_only "$size"
        run_kernel "$size" kernel "gen:0,fwd:softirq-on-0"
        run_kernel_napi "$size" "gen:0,fwd:napi-on-1"
        run_nvlb "$size" socket 1 1 "gen:0,worker:1"
        run_nvlb "$size" ring 1 1 "gen:0,worker:1"
        run_nvlb "$size" ring 1 1 "gen:0,worker:1" bridged
        run_nvlb "$size" xdp 1 1 "gen:0,worker:1"
        run_nvlb "$size" socket 2 0-1 "gen:0,workers:0-1"
        run_nvlb "$size" ring 2 0-1 "gen:0,workers:0-1"
    done
done
if [ -n "$RAW" ]; then cp "$TMP/results" "$RAW"; fi

python3 - "$TMP/results" <<'EOF'
import sys, statistics
from collections import defaultdict

runs = defaultdict(list)
order = []
for line in open(sys.argv[1]):
    f = line.split()
    name, size, workers, layout = f[0], int(f[1]), f[2], f[3]
    offered, dut_rx, delivered = map(int, f[4:7])
    extra = dict(kv.split("=", 1) for kv in f[7:] if "=" in kv)
    key = (size, name, workers, layout)
    if key not in runs:
        order.append(key)
    runs[key].append((offered, dut_rx, delivered, extra))

def med(xs):
    return statistics.median(xs)

kernel = {}
gen_cpu = {}
for key in order:
    size, name, _, _ = key
    if name.startswith("kernel"):
        kernel[(size, name)] = med([r[2] for r in runs[key]])
    if name == "gen-only":
        gen_cpu[size] = med([int(r[3].get("cpu", 0)) for r in runs[key]])

def cpu_per_packet(size, rs):
    """Busy CPU ns per delivered packet, net of the generator alone (median runs)."""
    if size not in gen_cpu:
        return None
    d = med([r[2] for r in rs])
    busy = med([int(r[3].get("cpu", 0)) for r in rs]) - gen_cpu[size]
    return busy / 1000.0 / d * 1e9 if d else None

kernel_cpu = {}
for key in order:
    size, name, _, _ = key
    if name == "kernel":
        kernel_cpu[size] = cpu_per_packet(size, runs[key])

print()
print("Median of %d round(s); Mpps over the window; ratios are delivered / kernel delivered"
      % max(len(v) for v in runs.values()))
print("(same packet size, same run). kernel: forwarding in softirq on the generator's core 0.")
print()
hdr = ("size", "config", "W", "core layout", "offered", "delivered", "min..max",
       "x kernel", "cores busy", "CPU ns/pkt net of gen", "x kernel CPU", "handoff/pkt",
       "LB drops (median run)")
print("| " + " | ".join(hdr) + " |")
print("|" + "---|" * len(hdr))
for key in order:
    size, name, workers, layout = key
    rs = runs[key]
    dl = [r[2] for r in rs]
    d = med(dl)
    off = med([r[0] for r in rs])
    k0 = kernel.get((size, "kernel"))
    ratio = lambda k: "%.2f" % (d / k) if k else "-"
    handoff, drops = "-", "-"
    busy = med([int(r[3].get("cpu", 0)) for r in rs]) / 1000.0
    c = cpu_per_packet(size, rs) if name != "gen-only" else None
    kc = kernel_cpu.get(size)
    cpu_txt = "%.0f" % c if c is not None else "-"
    cpu_ratio = "%.2f" % (c / kc) if c is not None and kc else "-"
    if not name.startswith("kernel") and name != "gen-only":
        # the run closest to the median, for its counters
        r = min(rs, key=lambda r: abs(r[2] - d))[3]
        pin = int(r.get("packets_in", 0)) or 1
        handoff = "%.2f" % (int(r.get("handoffs", 0)) / pin)
        parts = ["%s %s" % (k[5:], v) for k, v in r.items()
                 if k.startswith("drop.") and int(v) > 0]
        for k in ("io.kernel_drops", "io.tx_queue_full", "io.handoff_queue_full"):
            if int(r.get(k, 0)) > 0:
                parts.append("%s %s" % (k[3:], r[k]))
        drops = ", ".join(parts) or "0"
    print("| %d | %s | %s | %s | %.3f | %.3f | %.3f..%.3f | %s | %.2f | %s | %s | %s | %s |" % (
        size, name, workers, layout, off / 1e6, d / 1e6, min(dl) / 1e6, max(dl) / 1e6,
        ratio(k0), busy, cpu_txt, cpu_ratio, handoff, drops))
EOF
