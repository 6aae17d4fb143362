#!/usr/bin/env bash
# Sets amun up on a fresh machine: a virtual environment holding libtorch
# 2.11.0 from the PyPI wheel torch==2.11.0 (under the cache folder), then a
# release build of `amun`. Idempotent: a second run only rebuilds what changed.
#
#   scripts/setup.sh          # runtime: libtorch for amun, release build
#   scripts/setup.sh --dev    # also the Python side of the tests and bench scripts
#
# Which libtorch: without an NVIDIA GPU (no working `nvidia-smi`) the CPU-only
# set-up, requirements/torch-cpu.txt (~0.9 GB download: the torch wheel and
# the two small CUDA libraries libtorch_cpu links); with one, the full
# requirements/torch-cuda.txt (~4.6 GB). AMUN_TORCH=cpu|cuda overrides.
#
# Each venv must hold exactly its pinned list (`pip freeze` compared with the
# requirements file): a venv that differs — a package missing, another
# version, anything extra — is rebuilt from scratch, so no run of the tests
# (CI's included) can pass on state a fresh machine would not have.
# Needs python3 (with venv and pip) and cargo; downloads only from PyPI and
# crates.io.
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0
for a in "$@"; do
  case "$a" in
    --dev) dev=1 ;;
    *) echo "setup: unknown argument '$a' (expected --dev)" >&2; exit 2 ;;
  esac
done
source scripts/env.sh

flavor=${AMUN_TORCH:-}
if [ -z "$flavor" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then flavor=cuda; else flavor=cpu; fi
  why="detected"
else
  why="from AMUN_TORCH"
fi
case "$flavor" in
  cpu|cuda) ;;
  *) echo "setup: AMUN_TORCH must be cpu or cuda, got '$flavor'" >&2; exit 2 ;;
esac

# The venv's packages as sorted `name==version` lines, names normalised as pip
# does (lowercase, runs of -_. as -); pip itself is the venv's tool, not a pin,
# and amun's own wheel (scripts/test.sh installs it into $AMUN_PYENV) is the
# project under test.
frozen() {
  "$1/bin/python" -m pip freeze --all 2>/dev/null | norm | grep -v -e '^pip==' -e '^amun[=@]' || true
}
norm() {
  sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' |
    awk -F'==' '{ n = tolower($1); gsub(/[-_.]+/, "-", n); print n "==" $2 }' | sort
}
# setuptools comes with some Pythons' venvs; tolerated unless the list pins it.
matches() { # venv requirements-file
  local want have
  want=$(norm <"$2")
  have=$(frozen "$1")
  if ! grep -q '^setuptools==' <<<"$want"; then have=$(grep -v '^setuptools==' <<<"$have" || true); fi
  [ "$want" = "$have" ]
}
ensure_venv() { # venv requirements-file what
  local venv=$1 req=$2 what=$3
  if [ -x "$venv/bin/python" ] && matches "$venv" "$req"; then
    return 0
  fi
  if [ -e "$venv" ]; then
    echo "setup: $venv does not hold exactly $req; rebuilding it. Differences (< pinned, > installed):" >&2
    diff <(norm <"$req") <(frozen "$venv") | grep '^[<>]' | head -n 20 >&2 || true
    rm -rf "$venv"
  fi
  echo "setup: installing $what into $venv from $req" >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$req"
  matches "$venv" "$req" || {
    echo "setup: $venv still differs from $req after installing it:" >&2
    diff <(norm <"$req") <(frozen "$venv") >&2 || true
    exit 1
  }
}

echo "setup: libtorch set-up '$flavor' ($why)" >&2
if [ "$(cat "$AMUN_VENV/amun-flavor" 2>/dev/null)" != "$flavor" ]; then rm -rf "$AMUN_VENV"; fi
ensure_venv "$AMUN_VENV" "requirements/torch-$flavor.txt" "libtorch $AMUN_TORCH_VERSION ($flavor)"
echo "$flavor" >"$AMUN_VENV/amun-flavor"
if [ "$dev" = 1 ]; then
  ensure_venv "$AMUN_PYENV" requirements/python-dev.txt "PyTorch and numpy for the tests and bench scripts"
fi
source scripts/env.sh

echo "setup: building amun (release; the first build compiles libtorch's bindings, a few minutes)" >&2
cargo build --release --quiet
echo "setup: done; run ./amun --help" >&2
