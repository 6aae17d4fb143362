#!/usr/bin/env bash
# Regenerates the seed corpus fuzz/corpus/<target>/ (a few small real files
# per target, ~100 KB in all): files only amun writes come from the amun
# binary (target/release/amun, through ./amun), on a 20-image MNIST-5k slice;
# the rest from PyTorch and slices of the fetched datasets (make_corpus.py).
# Needs: scripts/setup.sh --dev done (the venv with PyTorch), the datasets
# fetched (`./amun data fetch mnist`, `./amun data fetch cifar10`).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
source "$root/scripts/env.sh"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
amun="$root/amun"
data=(--dataset mnist --train-limit 20 --test-limit 10)
"$amun" train "${data[@]}" --epochs 1 --device cpu --out "$work/model.safetensors" -q
"$amun" split "${data[@]}" --forget 3 --seed 1 --out "$work/forget.json"
"$amun" split "${data[@]}" --class 0 --out "$work/forget-class.json"
"$amun" adv --checkpoint "$work/model.safetensors" --forget "$work/forget.json" \
  --pgd-steps 5 --device cpu --out "$work/adv.safetensors" -q
"$AMUN_PYENV/bin/python" "$root/fuzz/make_corpus.py" "$work"
