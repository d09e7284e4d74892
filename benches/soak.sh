#!/usr/bin/env bash
# Soak: the lab (`nvlb lab --keep`: the real LB, host simulators, kernel TCP in the VMs)
# under mixed load for a long time, sampled every 10 s.
#
#   sudo benches/soak.sh [--minutes N] [--out DIR] [--prefix P] [--nvlb PATH]
#
# Default 30 minutes. While it runs:
#   - requests: every second a batch of 10 new connections to blue-web (public VIP, its
#     DIP blue-6 flaps, see below) and 10 to red-web (public VIP, never touched), from
#     the Internet client; 5 to blue-vip1 (CA VIP, full NAT) from a Blue tier-1 VM;
#   - long-lived downloads: one after another, the lab's 10 MiB file at 200 kB/s
#     (curl --limit-rate) through red-web and through blue-vip1, checked by SHA-256;
#   - a reload every 5 s (blue-web's weight of 10.0.0.8 toggled 2 <-> 3, SIGHUP);
#   - a DIP flap every 60 s: blue-6's HTTP server killed, restarted 15 s later (the
#     health check takes it down and up again).
# Every 10 s a CSV row: elapsed seconds, requests ok/failed per VIP (cumulative),
# downloads ok/broken, RSS of `nvlb run` (KiB), active flows (sum over shards, from
# /metrics), reloads, flaps. At the end a summary (also in DIR/summary.txt).
#
# Failures expected by design: blue-web requests that Maglev sends to blue-6 between a
# kill and the health check's `down` (fall 2 x 1 s) fail; red-web and blue-vip1 have no
# reason to fail, and RSS and active flows must stay flat. Needs root, iproute2, curl;
# builds nothing: give --nvlb or build target/release/nvlb first.
set -euo pipefail

MINUTES=30
OUT=""
PREFIX="nvsoak-"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NVLB="${CARGO_TARGET_DIR:-$ROOT/target}/release/nvlb"
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) MINUTES="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --prefix) PREFIX="$2"; shift 2 ;;
    --nvlb) NVLB="$2"; shift 2 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "soak.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "soak.sh: needs root (network namespaces)" >&2; exit 1; }
[ -x "$NVLB" ] || { echo "soak.sh: no $NVLB (cargo build --release, or --nvlb PATH)" >&2; exit 1; }
for tool in ip curl sha256sum; do
  command -v "$tool" >/dev/null || { echo "soak.sh: $tool missing (bash tests/install.sh)" >&2; exit 1; }
done
OUT=${OUT:-$(mktemp -d /tmp/nvlb-soak.XXXXXX)}
mkdir -p "$OUT"
STATE="$OUT/state"
mkdir -p "$STATE"
CSV="$OUT/soak.csv"
METRICS=127.0.0.1:9187
BLUE=http://203.0.113.10:80
RED=http://203.0.113.20:80
VIP1=http://10.0.0.100:8080
VIP1_NS="${PREFIX}blue-5"

JOBS=()
cleanup() {
  # Only our loops: the restarted LB and servers are the lab's to stop (by namespace).
  for j in "${JOBS[@]}"; do kill "$j" 2>/dev/null || true; done
  for j in "${JOBS[@]}"; do wait "$j" 2>/dev/null || true; done
  "$NVLB" lab --down --prefix "$PREFIX" >"$OUT/lab-down.txt" 2>&1 || true
  echo "soak: lab removed ($OUT/lab-down.txt has the LB's counters)"
}
trap cleanup EXIT

echo "soak: $MINUTES min, output in $OUT"
"$NVLB" lab --keep --prefix "$PREFIX" --requests 40 >"$OUT/lab-up.txt" 2>&1 \
  || { cat "$OUT/lab-up.txt"; exit 1; }
DIR="/tmp/${PREFIX}lab"
SHA=$(sha256sum "$DIR/bulk.bin" | cut -d' ' -f1)

# The pid of the process in namespace $1 whose argv[1] is $2.
pid_in() {
  local p
  for p in $(ip netns pids "$1"); do
    if tr '\0' '\n' <"/proc/$p/cmdline" 2>/dev/null | sed -n 2p | grep -qx "$2"; then
      echo "$p"; return 0
    fi
  done
  return 1
}

# Restart the LB with its own command line plus --metrics (the lab serves none).
LB_NS="${PREFIX}lb"
LB_PID=$(pid_in "$LB_NS" run)
mapfile -d '' LB_ARGS <"/proc/$LB_PID/cmdline"
CONFIG=""
for i in "${!LB_ARGS[@]}"; do
  [ "${LB_ARGS[$i]}" = "--config" ] && CONFIG="${LB_ARGS[$((i + 1))]}"
done
kill -TERM "$LB_PID"
while [ -e "/proc/$LB_PID" ]; do sleep 0.05; done
ip netns exec "$LB_NS" "${LB_ARGS[@]}" --metrics "$METRICS" 2>"$OUT/lb.err" >/dev/null &
disown $!
for _ in $(seq 200); do grep -q "nvlb: ready" "$OUT/lb.err" && break; sleep 0.05; done
LB_PID=$(pid_in "$LB_NS" run)
sleep 3   # health checks of the new LB

# Batches of requests: one line "ok failed" per batch in $STATE/req-$tag.
requests() { # tag ns url n
  local tag=$1 ns=$2 url=$3 n=$4
  while :; do
    local urls=() i
    for i in $(seq "$n"); do urls+=("$url/?n=$i"); done
    local codes
    codes=$(ip netns exec "$ns" curl -s --parallel --parallel-immediate --max-time 5 \
      -H 'Connection: close' -o /dev/null -w '%{http_code}\n' "${urls[@]}" 2>/dev/null || true)
    local ok
    ok=$(grep -c '^200$' <<<"$codes" || true)
    echo "$ok $((n - ok))" >>"$STATE/req-$tag"
    sleep 1
  done
}
# Slow downloads one after another: "ok" or "broken" per download in $STATE/dl-$tag.
downloads() { # tag ns url
  local tag=$1 ns=$2 url=$3 f="$STATE/dl-$1.bin"
  while :; do
    if ip netns exec "$ns" curl -s --limit-rate 200K --max-time 120 -o "$f" "$url/bulk" \
      && [ "$(sha256sum "$f" | cut -d' ' -f1)" = "$SHA" ]; then
      echo ok >>"$STATE/dl-$tag"
    else
      echo broken >>"$STATE/dl-$tag"
    fi
  done
}
reloads() {
  local orig heavy n=0
  orig=$(cat "$CONFIG")
  heavy=${orig/'{ ca = "10.0.0.8", port = 80, weight = 2 }'/'{ ca = "10.0.0.8", port = 80, weight = 3 }'}
  while :; do
    sleep 5
    if [ $((n % 2)) = 0 ]; then printf '%s\n' "$heavy" >"$CONFIG.tmp"; else printf '%s\n' "$orig" >"$CONFIG.tmp"; fi
    mv "$CONFIG.tmp" "$CONFIG"
    kill -HUP "$(pid_in "$LB_NS" run)" && echo reload >>"$STATE/reloads"
    n=$((n + 1))
  done
}
flaps() {
  local ns="${PREFIX}blue-6" p args
  while :; do
    sleep 45
    p=$(pid_in "$ns" lab-serve) || continue
    mapfile -d '' args <"/proc/$p/cmdline"
    kill -KILL "$p" || continue
    echo flap >>"$STATE/flaps"
    sleep 15
    ip netns exec "$ns" "${args[@]}" >/dev/null 2>&1 &
    disown $!
  done
}

requests blue "${PREFIX}client" "$BLUE" 10 & JOBS+=($!)
requests red "${PREFIX}client" "$RED" 10 & JOBS+=($!)
requests vip1 "$VIP1_NS" "$VIP1" 5 & JOBS+=($!)
downloads red "${PREFIX}client" "$RED" & JOBS+=($!)
downloads vip1 "$VIP1_NS" "$VIP1" & JOBS+=($!)
reloads & JOBS+=($!)
flaps & JOBS+=($!)

sum_col() { if [ -f "$1" ]; then awk -v c="$2" '{s+=$c} END {print s+0}' "$1"; else echo 0; fi; }
count() { if [ -f "$1" ]; then grep -c "^$2\$" "$1" || true; else echo 0; fi; }
echo "t_s,blue_ok,blue_failed,red_ok,red_failed,vip1_ok,vip1_failed,downloads_ok,downloads_broken,rss_kib,active_flows,reloads,flaps" >"$CSV"
START=$(date +%s)
END=$((START + MINUTES * 60))
while [ "$(date +%s)" -lt "$END" ]; do
  sleep 10
  page=$(ip netns exec "$LB_NS" curl -s -m 5 "http://$METRICS/metrics" || true)
  flows=$(awk '/^nvlb_active_flows\{/ {s+=$2} END {print s+0}' <<<"$page")
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$(pid_in "$LB_NS" run)/status" 2>/dev/null || echo 0)
  dok=$(( $(count "$STATE/dl-red" ok) + $(count "$STATE/dl-vip1" ok) ))
  dbad=$(( $(count "$STATE/dl-red" broken) + $(count "$STATE/dl-vip1" broken) ))
  row="$(( $(date +%s) - START )),$(sum_col "$STATE/req-blue" 1),$(sum_col "$STATE/req-blue" 2),$(sum_col "$STATE/req-red" 1),$(sum_col "$STATE/req-red" 2),$(sum_col "$STATE/req-vip1" 1),$(sum_col "$STATE/req-vip1" 2),$dok,$dbad,$rss,$flows,$(count "$STATE/reloads" reload),$(count "$STATE/flaps" flap)"
  echo "$row" >>"$CSV"
  echo "soak: $row"
done

for j in "${JOBS[@]}"; do kill "$j" 2>/dev/null || true; done
JOBS=()
{
  echo "soak: $MINUTES min, $(($(wc -l <"$CSV") - 1)) samples of 10 s ($CSV)"
  awk -F, 'NR == 2 {r0 = $10} NR > 1 {last = $0; if ($10 > rmax) rmax = $10; if (rmin == "" || $10 < rmin) rmin = $10; if ($11 > fmax) fmax = $11}
    END {split(last, l, ",");
      printf "requests: blue-web %d ok, %d failed (DIP flaps: %d); red-web %d ok, %d failed; blue-vip1 %d ok, %d failed\n", l[2], l[3], l[13], l[4], l[5], l[6], l[7];
      printf "long-lived downloads (red-web, blue-vip1): %d intact, %d broken\n", l[8], l[9];
      printf "reloads: %d\n", l[12];
      printf "RSS of nvlb run: first sample %d KiB, min %d, max %d, last %d KiB\n", r0, rmin, rmax, l[10];
      printf "active flows: max %d, last %d\n", fmax, l[11] }' "$CSV"
} | tee "$OUT/summary.txt"
