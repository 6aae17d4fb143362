#!/usr/bin/env bash
# Every GPU check of the project, for one call of the device tool:
#   run(command="bash bench/gpu_checks.sh", carry=["target/release/amun"])
# It writes $OUT/gpu.md (and the raw logs). amun and PyTorch run the same
# steps one after the other on the same card, so every figure is a same-run
# ratio. With CIFAR-10 staged in $AMUN_DATA_DIR/cifar10 (184 MB: more than
# one call carries; see docs/PERFORMANCE.md) it also trains ResNet-18 for 15
# one-cycle epochs and times the adversarial-set search against
# bench/pytorch_pgd_reference.py.
set -u
OUT=${OUT:-/tmp/amun-gpu}
# A binary built on the CPU-only set-up has no CUDA: refuse before spending
# device time (build it with `AMUN_TORCH=cuda scripts/setup.sh` first).
if ! readelf -d ./target/release/amun 2>/dev/null | grep -q 'libtorch_cuda'; then
  echo "target/release/amun does not link libtorch_cuda (CPU-only set-up): rebuild with AMUN_TORCH=cuda scripts/setup.sh" >&2
  exit 1
fi
mkdir -p "$OUT"
A=./target/release/amun
# The GPU machine's python3 has torch; elsewhere scripts/setup.sh --dev puts one in $AMUN_PYENV.
PY=${PYTHON:-python3}
log="$OUT/gpu.md"
run() { echo "\$ $*" | tee -a "$log"; "$@" 2>&1 | grep -v Warning | tee -a "$log"; echo | tee -a "$log"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$log"
echo | tee -a "$log"
for what in train pgd; do
  for prec in "" "--tf32" "--bf16 --channels-last"; do
    # shellcheck disable=SC2086
    run $A bench $what --model resnet18 --device cuda --batch 128,512 --warmup 5 --steps 20 --windows 5 $prec
    # shellcheck disable=SC2086
    run $PY bench/pytorch_bench.py $what --model resnet18 --device cuda --batch 128,512 --warmup 5 --steps 20 --windows 5 $prec
  done
done

data=${AMUN_DATA_DIR:-$HOME/.cache/amun/data}
if [ -f "$data/cifar10/data_batch_1.bin" ]; then
  export AMUN_DATA_DIR="$data"
  run $A train --dataset cifar10 --model resnet18 --epochs 15 --batch-size 512 --lr 0.4 --schedule onecycle:0.25 \
      --bf16 --channels-last --device cuda --out "$OUT/r18.safetensors" -q
  run $A split --dataset cifar10 --forget 5000 --seed 1 --out "$OUT/forget.json"
  run $A bench pgd --model resnet18 --device cuda --search 5000 --checkpoint "$OUT/r18.safetensors" --forget "$OUT/forget.json" --tf32
  run $A export --checkpoint "$OUT/r18.safetensors" --layout authors --out "$OUT/r18.pt"
  run $PY bench/pytorch_pgd_reference.py --checkpoint "$OUT/r18.pt" --arch resnet18 --cifar-dir "$data/cifar10" \
      --forget "$OUT/forget.json" --n 5000 --device cuda --tf32
  rm -f "$OUT/r18.pt"
else
  echo "CIFAR-10 not staged in $data/cifar10: accuracy and search checks skipped" | tee -a "$log"
fi
