#!/usr/bin/env bash
# Runs every check CI runs: set-up, formatting, lints, and the test suite
# (which fetches MNIST-5k and CIFAR-10 into the data cache on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
cargo fmt --all -- --check
cargo clippy --release --all-targets --quiet -- -D warnings
cargo test --release --workspace
