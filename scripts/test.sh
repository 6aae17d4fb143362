#!/usr/bin/env bash
# Runs every check CI runs: set-up (with the Python side of the tests, each
# venv checked against its pinned list), formatting, lints, and the test
# suite (which fetches MNIST-5k and CIFAR-10 into the data cache on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
source scripts/env.sh
cargo fmt --all -- --check
cargo clippy --release --all-targets --quiet -- -D warnings
cargo test --release --workspace
