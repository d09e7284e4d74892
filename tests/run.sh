#!/usr/bin/env bash
# The test command of README.md: installs what the tests need on a fresh Debian 12
# machine (as root), then runs the whole suite. .ci/run calls this script.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/install.sh
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --release --locked
