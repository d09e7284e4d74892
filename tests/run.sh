#!/usr/bin/env bash
# The test command of README.md: installs what the tests need on a fresh Debian 12
# machine (as root), then runs the whole suite. .ci/run calls this script.
#
# Every step runs even when an earlier one failed: fmt, clippy, the alert rules, each
# test binary on its own, the container test and the fuzz smoke. The closing line sums
# the `test result:` lines of all of them; a step that fails without saying how many
# of its tests failed (a compile error, a binary killed by a signal, a script stopped
# half-way) counts as one failure, so the line can never say 0 failed when something
# failed. Each failure is named after it. The exit status is 0 only when nothing failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

# Here every test must run: a test that cannot (not root, a tool missing) fails
# instead of skipping (tests/common/mod.rs, `skip`).
export NVLB_TESTS_MUST_RUN=1

bash tests/install.sh || { echo "tests/install.sh failed: nothing tested"; exit 1; }

work=$(mktemp -d /tmp/nvlb-run.XXXXXX)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
failures=()

# step NAME COMMAND...: runs COMMAND, shows its output, and adds its counts.
step() {
  local name=$1
  shift
  local log=$work/step.log
  echo "=== $name"
  "$@" 2>&1 | tee "$log"
  local status=${PIPESTATUS[0]}
  local p f
  p=$(grep -Eo '^test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s += $4} END {print s + 0}')
  f=$(grep -Eo '^test result: [a-zA-Z]+\. [0-9]+ passed; [0-9]+ failed' "$log" |
    awk '{s += $6} END {print s + 0}')
  local results
  results=$(grep -c '^test result: ' "$log")
  if [ "$results" -eq 0 ]; then
    # A step of one check (fmt, clippy, a script): it is one test.
    if [ "$status" -eq 0 ]; then p=1; else f=1; fi
  elif [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then
    f=1
  fi
  passed=$((passed + p))
  failed=$((failed + f))
  if [ "$status" -ne 0 ]; then
    local why="exit status $status"
    [ "$status" -gt 128 ] && why="killed by signal $((status - 128))"
    local names
    names=$(grep -E '^test .* \.\.\. FAILED$' "$log" | sed -E 's/^test (.*) \.\.\. FAILED$/\1/' |
      paste -sd, - | sed 's/,/, /g')
    failures+=("$name: $f failed ($why)${names:+: $names}")
  fi
}

# The fuzz crate is a workspace of its own (fuzz/Cargo.toml), so it is checked too.
step "cargo fmt --check" bash -c 'cargo fmt --all -- --check && cd fuzz && cargo fmt --all -- --check'
step "cargo clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
step "promtool (alert rules)" bash tests/promtool.sh
# The shell scripts, this one included: a quoting slip in a script stops it half-way
# (it did: a stray apostrophe ended run.sh after its third step).
step "shellcheck" bash -c 'git ls-files -z "*.sh" .ci/run | xargs -0 shellcheck -S warning'

# Every crate's library and binary tests and every integration test, each test binary
# run by itself (as cargo test runs it: from its package's folder) so that one failing
# or crashing binary cannot hide the others. No doc tests: there are none.
bins=$work/bins.tsv
cargo test --workspace --release --locked --lib --bins --tests --no-run --message-format=json \
  2>"$work/build.err" |
  /usr/bin/python3 tests/test-binaries.py >"$bins"
statuses=("${PIPESTATUS[@]}")
build=${statuses[0]}
if [ "$build" -ne 0 ]; then
  cat "$work/build.err"
  failed=$((failed + 1))
  failures+=("building the tests: exit status $build (see the compiler's errors above)")
fi
# A lister that broke (or listed nothing) would otherwise leave a green line with no
# test binary run at all.
if [ "${statuses[1]}" -ne 0 ] || [ ! -s "$bins" ]; then
  failed=$((failed + 1))
  failures+=("listing the test binaries: exit status ${statuses[1]}, $(wc -l <"$bins") listed")
fi
while IFS=$'\t' read -r name exe package; do
  step "$name" bash -c 'cd "$1" && exec "$2"' _ "$package" "$exe"
done <"$bins"
# The lab tests once more with the LB on AF_XDP: `nvlb lab` takes its backend from
# NVLB_LAB_BACKEND, so every lab test runs on both backends without passing it. The
# scale-out lab ignores the variable (it would only repeat itself) and is not rerun.
while IFS=$'\t' read -r name exe package; do
  target=${name##* }
  case $target in
    lab_scaleout) continue ;;
    lab | health | lab_*) ;;
    *) continue ;;
  esac
  step "$name (NVLB_LAB_BACKEND=xdp)" env NVLB_LAB_BACKEND=xdp bash -c 'cd "$1" && exec "$2"' _ "$package" "$exe"
done <"$bins"

# The container test: builds the image offline and serves the lab from it (about 6 min
# on a fresh machine, 15 s with its caches; docs/operations.md).
step "tests/container.sh" bash tests/container.sh
# Fuzz smoke (docs/reliability.md): the fuzz crate's tests, each fuzz target ~15 s.
step "tests/fuzz-smoke.sh" bash tests/fuzz-smoke.sh

echo
for f in "${failures[@]}"; do
  echo "FAILED: $f"
done
echo "$passed passed, $failed failed (fmt, clippy, promtool and the container test counted as one each)"
[ "$failed" -eq 0 ] && [ "${#failures[@]}" -eq 0 ]
