#!/usr/bin/env bash
# Training-step speed of exported programs in amun against PyTorch eager on
# the same machine (issue 22; docs/PERFORMANCE.md): torchvision's ResNet-18,
# a small timm ViT, and amun's own CIFAR ResNet-18 exported, against its
# native amun implementation. Run on a quiet machine.
#
#   bench/exported_speed.sh [DEVICE] [BATCH]     # cpu (default) or cuda; 128
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
dev=${1:-cpu}
batch=${2:-128}
out=$(mktemp -d)
"$AMUN_PYENV/bin/python" bench/exported_speed.py "$out" --batch "$batch" --device "$dev" 2>&1 | grep -v "W1[0-9]* \|warn"
for m in tv-resnet18 vit-small amun-resnet18; do
  ./amun bench train --model "$out/$m.pt2" --batch "$batch" --device "$dev" | tail -n 1
done
./amun bench train --model resnet18 --batch "$batch" --device "$dev" | tail -n 1
