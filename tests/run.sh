#!/usr/bin/env bash
# The test command of README.md: installs what the tests need on a fresh Debian 12
# machine (as root), then runs the whole suite. .ci/run calls this script.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/install.sh
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
bash tests/promtool.sh
# The library, the binary and every integration test (no doc tests: there are none,
# and their empty "0 passed" would be the last line). Then one closing line with the
# totals over all test binaries.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --release --locked --lib --bins --tests 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# The container test: builds the image offline and serves the lab from it (about 6 min
# on a fresh machine, 15 s with its caches; docs/operations.md).
bash tests/container.sh
container=$?
# Fuzz smoke (docs/reliability.md): the fuzz crate's tests, each fuzz target ~15 s.
bash tests/fuzz-smoke.sh 2>&1 | tee -a "$log"
fuzz=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo '^test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s += $4} END {print s + 0}')
failed=$(grep -Eo '[0-9]+ failed;' "$log" | awk '{s += $1} END {print s + 0}')
if [ "$container" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
echo "$passed passed, $failed failed (the container test counted as one)"
[ "$status" -eq 0 ] && [ "$container" -eq 0 ] && [ "$fuzz" -eq 0 ]
