#!/usr/bin/env bash
# Every GPU check of the project, in phases sized for the device tool's calls
# (64 MiB carried per call, 30 s warm between calls, 15 device minutes a
# session). Nothing here is needed on the CPU; docs/PERFORMANCE.md (GPU) and
# docs/REPRODUCTION.md hold what it measured.
#
#   bash bench/gpu_checks.sh pack DEST   (here) CIFAR-10 into DEST/p1..p3, a part per `stage` call,
#                                        and $AMUN_BIN (the CUDA build) into DEST/p1/amun.xz
#   bash bench/gpu_checks.sh stage DIR   unpack DIR/*.bin.xz into $AMUN_DATA_DIR/cifar10
#                                        (and DIR/amun.xz to $AMUN_BIN)
#   bash bench/gpu_checks.sh bench       ResNet-18 train and PGD steps, fp32 / TF32 /
#                                        bf16 channels-last, batch 128 and 512, each
#                                        against bench/pytorch_bench.py on the same card
#   bash bench/gpu_checks.sh train       the train rows of `bench` alone, and 3 epochs of
#                                        MNIST on the GPU when $AMUN_DATA_DIR/mnist is there
#   bash bench/gpu_checks.sh search      (CIFAR-10 staged) the 5,000-sample adversarial-set
#                                        search on the seed's original: amun's exact Alg. 1
#                                        and fast search against bench/pytorch_pgd_reference.py
#   bash bench/gpu_checks.sh cost [S]    (CIFAR-10 staged) what unlearning costs on the card,
#                                        each run alone on the seed's original, forget set and
#                                        references: the exact retrain, AMUN at the paper's
#                                        cost and AMUN/FT/RL/SalUn at amun's defaults, with
#                                        their Avg. Gap (bench/gpu_cost.py's table)
#   bash bench/gpu_checks.sh python [W]  (CIFAR-10 staged) amun's Python API on the card: the
#                                        wheel in W (default .stage/wheel) over the image's torch,
#                                        a ResNet-18 trained, unlearned and audited on CUDA and
#                                        unlearned again on the CPU (bench/gpu_python.py)
#   bash bench/gpu_checks.sh table [S]   (CIFAR-10 staged) the rest of the short Table 1 cell,
#                                        experiments/cifar10-resnet18-gpu-short.toml (the
#                                        15-epoch one-cycle ResNet-18), four workers on the GPU
#
# S = seconds the phase may take (cost 300, table 540 by default). `search`,
# `cost` and `table` work on one seed, GPU_SEED (default 1: seed 0 ran on
# 2026-11-27, docs/gpu/report.json), in /root/gpu-short-s$GPU_SEED; what one
# of them made the next one reuses while the machine stays warm. Two-seed
# table: python3 bench/gpu_seeds.py docs/gpu/report.json <table-s1>/report.json.
#
# Issue 25's lease (15 device minutes, every call and start counted), one call
# after the other within the machine's idle window. Here first:
#   AMUN_BIN=<CUDA build> AMUN_DATA_DIR=~/.cache/amun/data bash bench/gpu_checks.sh pack .stage
# (the CUDA build: LIBTORCH=<venv-py's torch> AMUN_TORCH_FLAVOR=cuda
# CARGO_TARGET_DIR=<another target> cargo build --release -p amun-cli); then
# each call carries .stage/pN (~48 MB with the binary) and runs, with
# `AMUN_BIN=/root/amun AMUN_COMMIT=<short hash>` in front:
#   1. bash bench/gpu_checks.sh stage .stage/p1        (part 1 + the binary)
#   2. bash bench/gpu_checks.sh stage .stage/p2
#   3. bash bench/gpu_checks.sh stage .stage/p3 && bash bench/gpu_checks.sh cost 330
#      (expected ~270 s: three models side by side ~50 s, the retrain alone ~20 s,
#      AMUN at the paper's cost ~110 s with its exact search, the default runs
#      ~15 s each, one audit of seven models)
#   4. bash bench/gpu_checks.sh table S   (S = status's budget_left_s − 60, at most 540:
#      the seed's other 13 unlearning runs with four workers, ~300 s, audits, report;
#      a call cut by the lease returns nothing, so the phase must end first)
# Dry run on the CPU with a tiny config (small CNN, 600 images, minutes):
#   OUT=/tmp/dry GPU_DEVICE=cpu GPU_CONFIG=<tiny.toml> GPU_RUN_DIR=/tmp/dry/run \
#     AMUN_DATA_DIR=<a copy with SHA256SUMS> bash bench/gpu_checks.sh cost|table
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

check_cifar() {
  if ! (cd "$AMUN_DATA_DIR/cifar10" && sha256sum -c --quiet SHA256SUMS); then
    echo "CIFAR-10 in $AMUN_DATA_DIR/cifar10 is incomplete or differs from SHA256SUMS: stage every part first" >&2
    exit 1
  fi
}

# The Table 1 config with `seeds = [$GPU_SEED]` (default 1: seed 0 ran on
# 2026-11-27), its run folder, and `x`, the experiment command over both.
prepare_seed() {
  seed=${GPU_SEED:-1}
  local cfg=${GPU_CONFIG:-experiments/cifar10-resnet18-gpu-short.toml}
  run_dir=${GPU_RUN_DIR:-/root/gpu-short-s$seed}
  mkdir -p "$run_dir.cfg"
  local c="$run_dir.cfg/$(basename "$cfg")"
  sed "s/^seeds = .*/seeds = [$seed]/" "$cfg" >"$c"
  grep -q "^seeds = \[$seed\]$" "$c" || { echo "$cfg has no 'seeds = [...]' line to set" >&2; exit 1; }
  x=("$A" experiment --config "$c" --out "$run_dir" --device "$DEV")
  echo "seed $seed, commit ${AMUN_COMMIT:-unknown}, $(date -u +%FT%TZ)" | tee -a "$log"
}

case "${1:-}" in
pack)
  # On this side: CIFAR-10's six batches from $AMUN_DATA_DIR/cifar10 into
  # DEST/p1..p3 (two batches each, xz with a delta filter: ~43 MB a part),
  # with SHA256SUMS of the raw batches, for three `stage` calls. Run it
  # with AMUN_DATA_DIR=~/.cache/amun/data (or wherever amun fetched CIFAR-10).
  src="$AMUN_DATA_DIR/cifar10" dest=${2:?pack DEST}
  (cd "$src" && sha256sum data_batch_1.bin data_batch_2.bin data_batch_3.bin data_batch_4.bin \
    data_batch_5.bin test_batch.bin) >"$OUT/SHA256SUMS" || exit 1
  i=0
  for pair in "data_batch_1 data_batch_2" "data_batch_3 data_batch_4" "data_batch_5 test_batch"; do
    i=$((i + 1))
    mkdir -p "$dest/p$i"
    cp "$OUT/SHA256SUMS" "$src/batches.meta.txt" "$dest/p$i/"
    for b in $pair; do
      [ -s "$dest/p$i/$b.bin.xz" ] && continue # packed before (xz -9e takes minutes a batch)
      xz --delta=dist=1 --lzma2=preset=9e -c "$src/$b.bin" >"$dest/p$i/$b.bin.xz.tmp" || exit 1
      mv "$dest/p$i/$b.bin.xz.tmp" "$dest/p$i/$b.bin.xz"
    done
  done
  # The CUDA-linked binary travels with the first part, xz'd (16 MB → 4 MB).
  if readelf -d "$A" 2>/dev/null | grep -q 'libtorch_cuda'; then
    xz -T2 -c "$A" >"$dest/p1/amun.xz" || exit 1
  else
    echo "pack: $A does not link libtorch_cuda; no binary packed (AMUN_BIN=<the CUDA build>)" >&2
  fi
  du -sh "$dest"/p*
  ;;
stage)
  for f in "$2"/*.bin.xz; do [ -e "$f" ] && unxz_to "$f" "$AMUN_DATA_DIR/cifar10/$(basename "$f" .xz)"; done
  for f in "$2"/*.txt "$2"/SHA256SUMS; do [ -e "$f" ] && cp "$f" "$AMUN_DATA_DIR/cifar10/"; done
  if [ -e "$2/amun.xz" ]; then
    mkdir -p "$(dirname "$A")" && unxz_to "$2/amun.xz" "$A" && chmod +x "$A" && echo "binary: $A"
  fi
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
search)
  # The 5,000-sample adversarial-set search on the seed's original model
  # (trained here if missing), alone: amun's exact Alg. 1 (naive and
  # refilled), PyTorch's reference loop, and the fast search (issue 12).
  need_cuda_binary
  check_cifar
  prepare_seed
  orig="$run_dir/original-s$seed.safetensors"
  forget="$run_dir/forget-s$seed-f0.1.json"
  run "${x[@]}" --step "forget-s$seed-f0.1" || exit 1
  [ -f "$orig" ] || run "${x[@]}" --step "original-s$seed" || exit 1
  run "$A" eval --checkpoint "$orig" --device "$DEV"
  n=${GPU_SEARCH_N:-5000}
  run "$A" bench pgd --model "${GPU_ARCH:-resnet18}" --device "$DEV" --search "$n" --checkpoint "$orig" --forget "$forget" --tf32
  run "$A" export --checkpoint "$orig" --layout authors --out "$run_dir/r18.pt"
  run "$PY" bench/pytorch_pgd_reference.py --checkpoint "$run_dir/r18.pt" --arch "${GPU_ARCH:-resnet18}" --cifar-dir "$AMUN_DATA_DIR/cifar10" \
      --forget "$forget" --n "$n" --device "$DEV" --tf32
  run "$A" bench search --device "$DEV" --search "$n" --checkpoint "$orig" --forget "$forget" --tf32
  ;;
cost)
  # What unlearning costs on the card (issue 25), every run alone on the one
  # GPU and on the same original, forget set and references: the
  # same-recipe exact retrain; AMUN with D_R at the paper's cost (the table's
  # own run: all of D_R every epoch, fp32, exact Alg. 1); AMUN, FT, RL and
  # SalUn with D_R at amun's defaults (retain budget 4, stop below 1% of the
  # rate, bf16 on CUDA, fast search). One `amun audit` against the retrain
  # scores them all; bench/gpu_cost.py makes the table.
  need_cuda_binary
  check_cifar
  prepare_seed
  deadline=$((SECONDS + ${2:-300}))
  orig="$run_dir/original-s$seed.safetensors"
  forget="$run_dir/forget-s$seed-f0.1.json"
  retrain="$run_dir/retrain-s$seed-f0.1.safetensors"
  run "${x[@]}" --step "forget-s$seed-f0.1" || exit 1
  # The original and the reference models side by side (not timed here)…
  for s in "original-s$seed" ref-000 ref-001; do "${x[@]}" --step "$s" >"$OUT/step-$s.log" 2>&1 & done
  wait
  for s in "original-s$seed" ref-000 ref-001; do tail -n 2 "$OUT/step-$s.log" | tee -a "$log"; done
  run "${x[@]}" --step references || exit 1
  # …then, one at a time, what is compared.
  run "${x[@]}" --step "retrain-s$seed-f0.1" || exit 1
  # A run that fails must leave no row: nothing from an earlier `cost` stays.
  rm -rf "$run_dir/cost" "$OUT/cost-s$seed"
  mkdir -p "$run_dir/cost"
  u=("$A" unlearn --checkpoint "$orig" --forget "$forget" --device "$DEV" --json -q)
  left() { echo $((deadline - SECONDS)); }
  run_unlearn() { # NAME METHOD [FLAGS...]: amun's defaults unless flags say otherwise
    local name=$1 method=$2
    shift 2
    [ "$(left)" -gt 20 ] || { echo "cost: no time left for $name" | tee -a "$log"; return 1; }
    echo "\$ ${u[*]} --method $method $* --out $run_dir/cost/$name.safetensors" | tee -a "$log"
    timeout "$(left)" "${u[@]}" --method "$method" "$@" --out "$run_dir/cost/$name.safetensors" >"$run_dir/cost/$name.out.json" 2>>"$log"
  }
  run_unlearn amun amun
  # The table's AMUN with D_R, alone: its adversarial-set step, then its fine-tune.
  paper=$("${x[@]}" --plan --json | "$PY" -c '
import json, sys
seed = sys.argv[1]
ids = [s["id"] for s in json.load(sys.stdin)["steps"]]
adv = [i for i in ids if i.startswith(f"adv-s{seed}-f0.1-")]
amun = [i for i in ids if i.startswith(f"unlearn-amun-s{seed}-f0.1-R-")]
print(" ".join(adv + amun))' "$seed")
  for id in $paper; do
    [ "$(left)" -gt 20 ] && run timeout "$(left)" "${x[@]}" --step "$id"
  done
  for m in ft rl salun; do run_unlearn "$m" "$m"; done
  # If time is left: the search in bf16 at batch 512, where the card's PGD
  # step is fastest (PERFORMANCE.md): the next lever on AMUN's cost.
  run_unlearn amun-search-bf16 amun --attack-bf16 --attack-batch 512
  models=("$orig")
  for id in $paper; do case $id in unlearn-*) models+=("$run_dir/$id.safetensors") ;; esac; done
  for m in amun ft rl salun amun-search-bf16; do [ -s "$run_dir/cost/$m.safetensors" ] && models+=("$run_dir/cost/$m.safetensors"); done
  "$A" audit --checkpoint "${models[@]}" --forget "$forget" --refs "$run_dir/references" --retrain "$retrain" \
    --device "$DEV" --json >"$run_dir/cost/audit.json" 2>>"$log"
  # Back with the results: the sidecars and metas the table is made from.
  mkdir -p "$OUT/cost-s$seed"
  cp "$run_dir"/cost/*.json "$run_dir"/*.json "$OUT/cost-s$seed/"
  "$PY" bench/gpu_cost.py "$run_dir" "$seed" | tee "$OUT/cost-s$seed/table.md" | tee -a "$log"
  ;;
table)
  # The whole Table 1 cell of seed $GPU_SEED with four workers sharing the
  # GPU (batch-128 unlearning runs leave most of it idle); what `cost` or
  # `search` already made is fresh and skipped.
  need_cuda_binary
  check_cifar
  prepare_seed
  deadline=$((SECONDS + ${2:-540}))
  left=$((deadline - SECONDS - 20))
  [ "$left" -gt 30 ] && run timeout "$left" "${x[@]}" --jobs 4
  run "${x[@]}" --status
  mkdir -p "$OUT/table-s$seed"
  cp "$run_dir/report.md" "$run_dir/report.json" "$OUT/table-s$seed/" 2>/dev/null
  (cd "$run_dir" && find . -name '*.json' -size -2M | tar czf "$OUT/table-s$seed/run-json.tgz" -T -) 2>/dev/null
  ;;
python)
  # Issue 39 on the card: amun's wheel (abi3, built here by maturin, ~4 MB,
  # carried as .stage/wheel/amun-*.whl) over the image's own torch (cu130):
  # a torchvision ResNet-18 trained, unlearned and audited through the
  # Python API with the module and tensors on the card (bench/gpu_python.py,
  # ~1 minute; its --compare-cpu, minutes more, unlearns on the CPU too).
  check_cifar
  whl=$(ls "${2:-.stage/wheel}"/amun-*.whl 2>/dev/null | head -n 1)
  [ -n "$whl" ] || { echo "no amun wheel in ${2:-.stage/wheel}: build it with maturin here first" >&2; exit 1; }
  rm -rf /tmp/amun-site
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/amun-site "$whl" || exit 1
  export PYTHONPATH=/tmp/amun-site
  # shellcheck disable=SC2086 # GPU_PY_ARGS: a dry run's smaller sizes (--train 300 --epochs 1)
  run "$PY" bench/gpu_python.py "$AMUN_DATA_DIR/cifar10" "$OUT" --device "$DEV" ${GPU_PY_ARGS:-}
  ;;
*)
  echo "usage: bash bench/gpu_checks.sh pack DEST | stage DIR | bench | train | search | cost [SECONDS] | table [SECONDS] | python [WHEEL_DIR]" >&2
  exit 2
  ;;
esac
