#!/usr/bin/env bash
# Sets amun up on a fresh machine: a virtual environment with the PyPI wheel
# torch==2.11.0 (libtorch for tch 0.24) under the cache folder, then a release
# build of `amun`. Idempotent: a second run only rebuilds what changed.
# Needs python3 (with venv and pip) and cargo; downloads only from PyPI and
# crates.io.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

have_torch() {
  [ -x "$AMUN_VENV/bin/python" ] &&
    "$AMUN_VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$AMUN_TORCH_VERSION')" 2>/dev/null
}

if ! have_torch; then
  echo "setup: installing torch==$AMUN_TORCH_VERSION into $AMUN_VENV (about 4.6 GB, once)" >&2
  python3 -m venv "$AMUN_VENV"
  "$AMUN_VENV/bin/python" -m pip install --quiet --upgrade pip
  "$AMUN_VENV/bin/python" -m pip install --quiet "torch==$AMUN_TORCH_VERSION"
  have_torch || { echo "setup: torch $AMUN_TORCH_VERSION did not install into $AMUN_VENV" >&2; exit 1; }
fi

echo "setup: building amun (release; the first build compiles libtorch's bindings, a few minutes)" >&2
cargo build --release --quiet
echo "setup: done; run ./amun --help" >&2
