#!/usr/bin/env bash
# Fuzz smoke for CI (docs/reliability.md): seeds from the golden packets, the fuzz
# crate's regression and bad-input tests, then each libFuzzer target for a few seconds
# on a scratch copy of its seeds. The long runs (>= 10 M executions) are not done here:
# docs/reliability.md has their figures and command.
#
# Stable toolchain only: cargo-fuzz with `--sanitizer none` (coverage instrumentation
# without AddressSanitizer, which needs nightly's -Zsanitizer). Needs cargo-fuzz
# (tests/install.sh), /usr/bin/python3 with scapy for the golden pcaps (without it the
# engine is seeded with frames built by nvlb::craft).
#
#   FUZZ_SECONDS=N   seconds per target (default 15)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
secs=${FUZZ_SECONDS:-15}
start=$(date +%s)

scratch=$(mktemp -d /tmp/nvlb-fuzz-smoke.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

# The golden pcaps, exactly as tests/golden.rs makes them (forward, reflect, too-big).
cargo build --release --locked --bin nvlb
nvlb="${CARGO_TARGET_DIR:-$root/target}/release/nvlb"
pcaps=()
if /usr/bin/python3 -c 'import scapy' 2>/dev/null; then
  g=$scratch/golden
  mkdir -p "$g"
  "$nvlb" check --json lb-config/example.toml >"$g/facts.json"
  craft=(/usr/bin/python3 tests/golden/craft.py)
  "${craft[@]}" forward "$g/facts.json" "$g/fwd.pcap" "$g/fwd.json" 2>/dev/null
  "$nvlb" replay --config lb-config/example.toml "$g/fwd.pcap" "$g/fwd_out.pcap" >/dev/null
  "${craft[@]}" reflect "$g/facts.json" "$g/fwd.pcap" "$g/fwd_out.pcap" "$g/fwd.json" \
    "$g/all.pcap" "$g/all.json" 2>/dev/null
  "${craft[@]}" toobig "$g/facts.json" "$g/toobig.pcap" "$g/toobig.json" 2>/dev/null
  pcaps=("$g/all.pcap" "$g/toobig.pcap" "$g/fwd_out.pcap")
else
  echo "fuzz-smoke: no scapy for /usr/bin/python3: engine seeds built by nvlb::craft" >&2
fi

# Everything of the fuzz crate builds in its own target dir.
export CARGO_TARGET_DIR=$root/fuzz/target
(cd fuzz && cargo run --locked --no-default-features --example seeds -- \
  "$scratch/corpus" --bad "$root/lb-config/bad" "${pcaps[@]}")
(cd fuzz && cargo test --locked --no-default-features)

cargo fuzz build --sanitizer none
bin=$root/fuzz/target/x86_64-unknown-linux-gnu/release
passed=0
failed=0
for t in engine config api; do
  dict=()
  [ -f "fuzz/dict/$t.dict" ] && dict=("-dict=fuzz/dict/$t.dict")
  mkdir -p "$scratch/artifacts/$t"
  log=$scratch/$t.log
  if "$bin/$t" "${dict[@]}" -max_total_time="$secs" -max_len=16384 -print_final_stats=1 \
    -artifact_prefix="$scratch/artifacts/$t/" "$scratch/corpus/$t" >"$log" 2>&1; then
    passed=$((passed + 1))
    runs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
    rate=$(awk '/stat::average_exec_per_sec/ {print $2}' "$log")
    echo "fuzz-smoke: $t: $runs runs in ${secs} s ($rate/s), no crash"
  else
    failed=$((failed + 1))
    mkdir -p "fuzz/artifacts/$t"
    cp "$scratch/artifacts/$t/"* "fuzz/artifacts/$t/" 2>/dev/null || true
    grep -A8 'panicked' "$log" | cut -c1-400 || tail -n 30 "$log"
    echo "fuzz-smoke: $t: CRASH (input kept in fuzz/artifacts/$t/; replay with"
    echo "  cargo fuzz run --sanitizer none $t fuzz/artifacts/$t/<file>)"
  fi
done
echo "fuzz-smoke: $(($(date +%s) - start)) s in all"
# One line in cargo's form, so that tests/run.sh counts each target as one test.
status=ok
[ "$failed" -eq 0 ] || status=FAILED
echo "test result: $status. $passed passed; $failed failed; (fuzz targets, ${secs} s each)"
[ "$failed" -eq 0 ]
