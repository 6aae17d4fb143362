#!/usr/bin/env bash
# Every GPU check of the project, in phases sized for the device tool's calls
# (64 MiB carried per call, 30 s warm between calls, 15 device minutes a
# session). Nothing here is needed on the CPU; docs/PERFORMANCE.md (GPU) and
# docs/REPRODUCTION.md hold what it measured.
#
#   bash bench/gpu_checks.sh stage DIR   unpack DIR/*.bin.xz into $AMUN_DATA_DIR/cifar10
#   bash bench/gpu_checks.sh bench       ResNet-18 train and PGD steps, fp32 / TF32 /
#                                        bf16 channels-last, batch 128 and 512, each
#                                        against bench/pytorch_bench.py on the same card
#   bash bench/gpu_checks.sh train       the train rows of `bench` alone, and 3 epochs of
#                                        MNIST on the GPU when $AMUN_DATA_DIR/mnist is there
#   bash bench/gpu_checks.sh table [S]   (CIFAR-10 staged) the short Table 1 cell,
#                                        experiments/cifar10-resnet18-gpu-short.toml, whose
#                                        original is the 15-epoch one-cycle ResNet-18; on it,
#                                        before the rest of the experiment, the 5,000-sample
#                                        adversarial-set search against
#                                        bench/pytorch_pgd_reference.py and the fast search;
#                                        S = seconds the phase may take (default 540)
#
# CIFAR-10 (184 MB) travels as xz with a delta filter (130 MB), two batches a
# call: `xz --delta=dist=1 --lzma2=preset=9e`. The amun binary must link
# libtorch_cuda (build with LIBTORCH=<a CUDA torch> AMUN_TORCH_FLAVOR=cuda);
# its rpath includes the device image's torch. AMUN_BIN says where it is.
set -u
OUT=${OUT:-/tmp/amun-gpu}
A=${AMUN_BIN:-./target/release/amun}
PY=${PYTHON:-python3}
export AMUN_DATA_DIR=${AMUN_DATA_DIR:-/root/amun-data}
mkdir -p "$OUT" "$AMUN_DATA_DIR/cifar10"
log="$OUT/gpu.md"
run() { echo "\$ $*" | tee -a "$log"; "$@" 2>&1 | grep -v Warning | tee -a "$log"; local rc=${PIPESTATUS[0]}; echo | tee -a "$log"; return "$rc"; }

DEV=${GPU_DEVICE:-cuda}
need_cuda_binary() {
  [ "$DEV" = cpu ] && return 0 # the script's own dry run on a CPU
  # A binary built on the CPU-only set-up has no CUDA: refuse before spending device time.
  if ! readelf -d "$A" 2>/dev/null | grep -q 'libtorch_cuda'; then
    echo "$A does not link libtorch_cuda (CPU-only set-up): rebuild against a CUDA torch" >&2
    exit 1
  fi
}

unxz_to() { # FILE.xz DEST
  if command -v xz >/dev/null; then xz -dc "$1" >"$2"; else
    "$PY" -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],"wb"))' "$1" "$2"
  fi
}

# amun's and PyTorch's rows of one step and precision, back to back.
bench_pair() { # train|pgd STEPS WINDOWS [PRECISION FLAGS...]
  local what=$1 steps=$2 windows=$3
  shift 3
  run "$A" bench "$what" --model resnet18 --device cuda --batch 128,512 --warmup 5 --steps "$steps" --windows "$windows" "$@"
  run "$PY" bench/pytorch_bench.py "$what" --model resnet18 --device cuda --batch 128,512 --warmup 5 --steps "$steps" --windows "$windows" "$@"
}

case "${1:-}" in
stage)
  for f in "$2"/*.bin.xz; do [ -e "$f" ] && unxz_to "$f" "$AMUN_DATA_DIR/cifar10/$(basename "$f" .xz)"; done
  for f in "$2"/*.txt "$2"/SHA256SUMS; do [ -e "$f" ] && cp "$f" "$AMUN_DATA_DIR/cifar10/"; done
  ls -la "$AMUN_DATA_DIR/cifar10"
  ;;
bench)
  need_cuda_binary
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$log"
  "$PY" -c 'import torch; print("python torch", torch.__version__, torch.version.cuda)' | tee -a "$log"
  # One tiny step first: a binary that cannot reach the GPU stops here, not after 12 runs.
  run "$A" bench train --model resnet18 --device cuda --batch 128 --warmup 1 --steps 2 --windows 1 || exit 1
  steps=${BENCH_STEPS:-20}
  windows=${BENCH_WINDOWS:-5}
  for what in train pgd; do
    for prec in "" "--tf32" "--bf16 --channels-last"; do
      # shellcheck disable=SC2086
      bench_pair "$what" "$steps" "$windows" $prec
    done
  done
  ;;
train)
  # The train step alone (after a change to it), and a short real training
  # on MNIST when $AMUN_DATA_DIR/mnist holds it (1 MB: it travels anywhere).
  need_cuda_binary
  for prec in "" "--tf32" "--bf16 --channels-last"; do
    # shellcheck disable=SC2086
    bench_pair train "${BENCH_STEPS:-10}" "${BENCH_WINDOWS:-3}" $prec
  done
  if [ -f "$AMUN_DATA_DIR/mnist/mnist_5k.csv.gz" ]; then
    run "$A" train --dataset mnist --epochs 3 --device cuda --out "$OUT/mnist.safetensors"
    rm -f "$OUT/mnist.safetensors" "$OUT/mnist.json"
  fi
  ;;
table)
  need_cuda_binary
  d="$AMUN_DATA_DIR/cifar10"
  if ! (cd "$d" && sha256sum -c --quiet SHA256SUMS); then
    echo "CIFAR-10 in $d is incomplete or differs from SHA256SUMS: stage every part first" >&2
    exit 1
  fi
  # S = seconds this phase may take in all; the experiment gets what the
  # search checks leave, less a margin to copy its results back.
  deadline=$((SECONDS + ${2:-540}))
  cfg=${GPU_CONFIG:-experiments/cifar10-resnet18-gpu-short.toml}
  run_dir=${GPU_RUN_DIR:-/root/gpu-short}
  x=("$A" experiment --config "$cfg" --out "$run_dir" --device "$DEV")
  # The original model (the 15-epoch one-cycle check) and the reference
  # models first, side by side; then the search checks on a quiet GPU; then
  # the rest of the experiment.
  run "${x[@]}" --step forget-s0-f0.1 || exit 1
  for s in original-s0 ref-000 ref-001; do "${x[@]}" --step "$s" >"$OUT/step-$s.log" 2>&1 & done
  wait
  for s in original-s0 ref-000 ref-001; do tail -n 3 "$OUT/step-$s.log" | tee -a "$log"; done
  orig="$run_dir/original-s0.safetensors"
  forget="$run_dir/forget-s0-f0.1.json"
  if [ -f "$orig" ]; then
    run "$A" eval --checkpoint "$orig" --device "$DEV"
    n=${GPU_SEARCH_N:-5000}
    run "$A" bench pgd --model "${GPU_ARCH:-resnet18}" --device "$DEV" --search "$n" --checkpoint "$orig" --forget "$forget" --tf32
    run "$A" export --checkpoint "$orig" --layout authors --out "$run_dir/r18.pt"
    run "$PY" bench/pytorch_pgd_reference.py --checkpoint "$run_dir/r18.pt" --arch "${GPU_ARCH:-resnet18}" --cifar-dir "$d" \
        --forget "$forget" --n "$n" --device "$DEV" --tf32
    # Exact Alg. 1 against the fast search (issue 12), same model and samples.
    run "$A" bench search --device "$DEV" --search "$n" --checkpoint "$orig" --forget "$forget" --tf32
  fi
  # Four workers share the one GPU: the unlearning runs (batch 128) leave most of an H100 idle.
  left=$((deadline - SECONDS - 20))
  [ "$left" -gt 30 ] && run timeout "$left" "${x[@]}" --jobs 4
  run "${x[@]}" --status
  cp "$run_dir/report.md" "$run_dir/report.json" "$OUT/" 2>/dev/null
  (cd "$run_dir" && find . -name '*.json' -size -2M | tar czf "$OUT/run-json.tgz" -T -) 2>/dev/null
  ;;
*)
  echo "usage: bash bench/gpu_checks.sh stage DIR | bench | train | table [SECONDS]" >&2
  exit 2
  ;;
esac
