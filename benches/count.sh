#!/usr/bin/env bash
# Instructions per frame of the engine, counted by callgrind rather than timed: the
# figure for before/after comparisons on a machine whose timings move ±15% between
# runs. Each scenario of benches/engine_count.rs (public and CA VIP, IPv4 and IPv6;
# 16 384 new flows, then their established ACKs) runs once under callgrind, which
# counts only inside the engine loop (`--toggle-collect='*measured*'`).
#
#   bash benches/count.sh            this tree
#   bash benches/count.sh REV        REV (any git revision) beside this tree, with the
#                                    ratio; REV is built in a temporary worktree from
#                                    this tree's harness, so it needs the `nvlb::engine`,
#                                    `nvlb::craft` and `nvlb::policy` paths (83b1761 on)
#
# Needs valgrind (apt install valgrind). The flow table's hasher is seeded at random
# per process, so a count moves by about ±0.5% from run to run, and now and then a seed
# that collides more costs 3-4%: each figure is the median of 3 runs (the run with the
# median instruction count, and its D1 misses).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "count.sh: needs valgrind (apt install valgrind)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/nvlb-count.XXXXXX)
cleanup() {
  if [ -n "${worktree:-}" ]; then git worktree remove --force "$worktree" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# build DIR: the harness binary of the tree in DIR, printed as a path.
build() {
  (cd "$1" && cargo bench --locked --bench engine_count --no-run --message-format=json 2>/dev/null) |
    /usr/bin/python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "engine_count" and m.get("executable"):
        print(m["executable"])
'
}

# count BIN SCENARIO PHASE: "instructions D1-misses" for that run, the median of 3.
count() {
  for _ in 1 2 3; do
    valgrind --tool=callgrind --cache-sim=yes --toggle-collect='*measured*' \
      --callgrind-out-file="$tmp/out" "$1" "$2" "$3" 2>&1 |
      awk '/ I +refs:/ {gsub(",", "", $4); i = $4} / D1 +misses:/ {gsub(",", "", $4); d = $4} END {print i, d}'
  done | sort -n | sed -n 2p
}

after=$(build .)
[ -n "$after" ] || { echo "count.sh: the harness did not build here" >&2; exit 1; }
before=""
if [ $# -ge 1 ]; then
  worktree=$tmp/before
  git worktree add --detach "$worktree" "$1" >/dev/null
  cp -r benches/engine_count.rs benches/engine_scenarios "$worktree/benches/"
  grep -q 'name = "engine_count"' "$worktree/Cargo.toml" ||
    printf '\n[[bench]]\nname = "engine_count"\nharness = false\n' >>"$worktree/Cargo.toml"
  # Its own lock file and its own build directory: cargo names the workspace's own
  # crates alike in both trees (their metadata hash leaves the checkout's path out), so
  # a shared build directory let one tree's libraries overwrite the other's.
  before=$(CARGO_TARGET_DIR=$tmp/target build "$worktree")
  [ -n "$before" ] || { echo "count.sh: the harness did not build at $1" >&2; exit 1; }
fi

# per A B: A / B as a decimal.
per() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.6f", a / b}'; }

frames=16384
printf '%-10s %-12s %14s %12s' scenario phase instr/frame D1miss/frame
[ -n "$before" ] && printf ' %14s %12s %8s' "$1 instr" "D1miss" ratio
printf '\n'
for s in public_v4 public_v6 ca_vip_v4 ca_vip_v6; do
  for p in new established; do
    read -r ai ad < <(count "$after" "$s" "$p")
    printf '%-10s %-12s %14.1f %12.2f' "$s" "$p" "$(per "$ai" "$frames")" "$(per "$ad" "$frames")"
    if [ -n "$before" ]; then
      read -r bi bd < <(count "$before" "$s" "$p")
      printf ' %14.1f %12.2f %8.3f' "$(per "$bi" "$frames")" "$(per "$bd" "$frames")" "$(per "$ai" "$bi")"
    fi
    printf '\n'
  done
done
