#!/usr/bin/env bash
# Runs every check CI runs: set-up (with the Python side of the tests, each
# venv checked against its pinned list), formatting, lints, and the test
# suite (which fetches MNIST-5k and CIFAR-10 into the data cache on first use).
#
#   scripts/test.sh          # everything: the three tiers below
#   scripts/test.sh --fast   # formatting, the pure tier and the small-data tier
#
# The tiers are test targets, never `#[ignore]`:
#   pure        unit tests beside the code (`cargo test --lib --bins`)
#   small-data  `--test small` of both crates: each stage on small real data
#   protocol    `--test protocol` of both crates and `--test fuzz_regressions`:
#               experiments, tuning, calibration, import, Slurm, fuzz corpus
# and, in both modes, the Python package's pytest tests (crates/amun-py),
# against its wheel installed into $AMUN_PYENV.
set -euo pipefail
cd "$(dirname "$0")/.."
fast=0
for a in "$@"; do
  case "$a" in
    --fast) fast=1 ;;
    *) echo "test.sh: unknown argument '$a' (expected --fast)" >&2; exit 2 ;;
  esac
done
scripts/setup.sh --dev
source scripts/env.sh
cargo fmt --all -- --check
# The Python package: its wheel (over the libtorch of $AMUN_PYENV's torch at
# run time) installed into $AMUN_PYENV, then its tests, which compare it with
# the CLI binary; test_install.py also installs the wheel with torch==2.11.0
# and torchvision into a brand-new venv (their wheels, as requirements/
# python-dev.txt pins them, kept in $AMUN_CACHE/wheelhouse; the test fetches
# from PyPI the files it lacks).
python_tests() {
  rm -rf target/wheels
  "$AMUN_PYENV/bin/maturin" build --release --quiet -m crates/amun-py/Cargo.toml \
    -i "$AMUN_PYENV/bin/python" --out target/wheels
  "$AMUN_PYENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    --force-reinstall target/wheels/amun-*.whl
  cargo build --release -p amun-cli
  "$AMUN_PYENV/bin/python" -m pytest -q -p no:cacheprovider crates/amun-py/python/tests
}
# cargo runs two tests at a time (one per core of CI's 2-core machine), and
# each test's libtorch would run one OpenMP thread per core: four threads on
# two cores, busy-waiting at every operator's end on the cores the other
# test needs. One thread per test process does the same work in less time
# (measured on a busy 2-core machine): the CLI's `reliability::` tests took
# 40 s (26 s of CPU) so, 144 s (75 s) by default; its small `cli::` tests
# 58 s (35 s), not 154 s (102 s); the library's small tier 125 s of CPU,
# not 158 s. (OMP_WAIT_POLICY=PASSIVE saved no CPU on the last.) Tests
# about thread counts set their own.
one_thread() { OMP_NUM_THREADS=1 "$@"; }
# The processes that do run on more threads (the CIFAR calibration tests,
# pinned at 2; a resume on 2 threads; PyTorch in pytest) share the two
# cores with the other test, and libgomp's default waiting spins a thread
# that waits for its descheduled sibling. Passive waiting sleeps instead;
# the work split, and so every result, is the same. Measured (issue: CI
# over its 45 minutes) on the shared 2-core machine at load ~20: a CIFAR-10
# training on 2 threads beside a 1-thread training, twice each way, wrote
# the same weights, in 53-65 s (5.4-5.8 s of CPU) instead of 148-156 s
# (14.1-14.8 s of CPU).
export OMP_WAIT_POLICY=PASSIVE
if [ "$fast" = 1 ]; then
  # amun-py is a Python extension (its symbols come from the interpreter):
  # no Rust harness can run it, and an explicit --lib would build one.
  one_thread cargo test --release --workspace --exclude amun-py --lib --bins
  one_thread cargo test --release --workspace --exclude amun-py --test small
  python_tests
  exit 0
fi
cargo clippy --release --workspace --all-targets --quiet -- -D warnings
# The protocol tier brings up the one-node Slurm cluster (scripts/slurm-local.sh)
# when it is not running: stop it again afterwards, but only what these tests
# started (a cluster that ran before them is left running).
slurm_daemons() { scripts/slurm-local.sh status 2>/dev/null | grep -c 'running (pid' || true; }
slurm_before=$(slurm_daemons)
stop_started_slurm() {
  if [ "$slurm_before" = 0 ] && [ "$(slurm_daemons)" != 0 ]; then
    echo "test.sh: stopping the Slurm cluster the tests started" >&2
    scripts/slurm-local.sh stop >&2 || true
  fi
}
trap stop_started_slurm EXIT
one_thread cargo test --release --workspace
python_tests
