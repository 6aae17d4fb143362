#!/usr/bin/env bash
# End to end on a user's own model (issue 22): a CNN that is none of amun's
# four architectures, trained in PyTorch on a CIFAR-10 slice and exported
# with torch.export, is unlearned by amun with calibrated AMUN, audited
# against its exact retrain (the same recipe, from the same init, in amun),
# and the unlearned weights are loaded back strictly in PyTorch with amun's
# logits. Prints every step's output; ~10 min on 2 quiet CPU cores.
#
#   bench/exported_e2e.sh [OUTDIR]     # N=2000 images, 30 epochs (N, EPOCHS in the environment)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
out=${1:-$(mktemp -d)}
N=${N:-2000}
EPOCHS=${EPOCHS:-30}
mkdir -p "$out"
data_dir=${AMUN_DATA_DIR:-$AMUN_CACHE/data}
py="$AMUN_PYENV/bin/python"
amun=./amun
norm=0.4914,0.4822,0.4465:0.2470,0.2435,0.2616
data=(--dataset cifar10 --train-limit "$N" --test-limit 1000)
recipe=(--epochs "$EPOCHS" --lr 0.05 --schedule cosine --batch-size 128 --momentum 0.9 --weight-decay 5e-4 --augment on)
prog=(--normalize "$norm" --init "$out/custom-init.pt2")
set -x
$amun data fetch cifar10 >/dev/null
"$py" bench/exported_e2e.py train "$data_dir/cifar10" "$N" "$EPOCHS" "$out"
$amun eval --checkpoint "$out/custom.pt2" "${data[@]}" "${prog[@]}" --device cpu
$amun split "${data[@]}" --forget 0.1 --seed 1 --out "$out/forget.json"
# The exact retrain: the user's architecture from its init, the same recipe, without the forget set.
$amun train --model "$out/custom.pt2" "${prog[@]}" "${data[@]}" "${recipe[@]}" \
  --exclude "$out/forget.json" --seed 0 --device cpu --quiet --out "$out/retrain.safetensors"
$amun rmia train-refs --model "$out/custom.pt2" "${prog[@]}" "${data[@]}" "${recipe[@]}" \
  --count 4 --seed 0 --device cpu --quiet --out "$out/refs"
$amun unlearn --checkpoint "$out/custom.pt2" "${data[@]}" "${prog[@]}" --method amun \
  --forget "$out/forget.json" --calibrate --holdout-test 300 --device cpu --out "$out/unlearned.safetensors"
$amun audit --checkpoint "$out/custom.pt2" "$out/unlearned.safetensors" --retrain "$out/retrain.safetensors" \
  --forget "$out/forget.json" --refs "$out/refs" "${data[@]}" "${prog[@]}" --device cpu
$amun export --checkpoint "$out/unlearned.safetensors" --out "$out/unlearned.pt"
$amun export --checkpoint "$out/unlearned.safetensors" --out "$out/unlearned.pt2"
$amun eval --checkpoint "$out/unlearned.safetensors" --device cpu --per-sample "$out/unlearned.per-sample.safetensors"
"$py" bench/exported_e2e.py check "$data_dir/cifar10" "$out/unlearned.pt" "$out/unlearned.per-sample.safetensors" 1000
