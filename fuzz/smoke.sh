#!/usr/bin/env bash
# CI smoke run of the fuzz targets (fuzz/README.md): builds every target and
# runs each for FUZZ_SECONDS (default 20) on its seed corpus; fails on any
# crash, hang (> 10 s for one input) or allocation over 2 GB. Skipped, with a
# line saying so, where the nightly toolchain or cargo-fuzz is unavailable.
# What libFuzzer adds to the corpus goes to a temporary folder, so the
# committed corpus never changes; a crashing input is kept under
# fuzz/artifacts/<target>/.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
source "$root/scripts/env.sh"
seconds="${FUZZ_SECONDS:-20}"

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz smoke: skipped (no nightly toolchain: rustup toolchain install nightly)"
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  if ! cargo install --locked cargo-fuzz; then
    echo "fuzz smoke: skipped (cargo-fuzz could not be installed)"
    exit 0
  fi
fi

cd "$root/fuzz"
cargo +nightly fuzz build
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=()
for t in $(cargo +nightly fuzz list); do
  mkdir -p "$work/$t"
  log="$work/$t.log"
  if cargo +nightly fuzz run "$t" "$work/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
    >"$log" 2>&1; then
    echo "fuzz smoke: $t: $(grep -E '^#[0-9]+ +DONE' "$log" | tail -n 1)"
  else
    tail -n 60 "$log"
    echo "fuzz smoke: $t FAILED (input saved under fuzz/artifacts/$t/)"
    failed+=("$t")
  fi
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz smoke: failing targets: ${failed[*]}"
  exit 1
fi
echo "fuzz smoke: every target ran ${seconds}s without a finding"
