"""amun's Python API on a card (issue 39's CUDA path, run by issue 36's
`bench/gpu_checks.sh python`): a torchvision ResNet-18 trained, unlearned
(AMUN, published defaults) and audited through `amun.train`, `amun.unlearn`
and `amun.audit` with the module and tensors on DEVICE (with
`--compare-cpu`, the same unlearning of the same trained weights on the CPU
too); prints and writes (OUT/python.json) wall times, image-steps,
accuracies and how far the card's weights are from the CPU's.

    python bench/gpu_python.py CIFAR10_DIR OUT [--device cuda] [--train 2000] [--compare-cpu]

CIFAR10_DIR holds the binary batches (`data_batch_1.bin`, `test_batch.bin`)
as amun fetches them. The dry run on a CPU: `--device cpu --train 300`.
"""

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

import amun


def cifar(folder: Path, name: str, n: int):
    """The first `n` images (uint8, N×3×32×32) and labels of a binary batch."""
    raw = np.fromfile(folder / name, dtype=np.uint8).reshape(-1, 3073)[:n]
    images = torch.from_numpy(raw[:, 1:].reshape(-1, 3, 32, 32).copy())
    return images, torch.from_numpy(raw[:, 0].astype(np.int64))


def timed(f):
    t = time.perf_counter()
    out = f()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - t


def run_on(device: str, model, data, test, forget):
    """Unlearns a copy of `model` on `device`, the module and tensors there."""
    m = copy.deepcopy(model).to(device)
    x, y = (t.to(device) for t in data)
    tx, ty = (t.to(device) for t in test)
    r, wall = timed(
        lambda: amun.unlearn(m, (x, y), forget, method="amun", calibrate=False,
                             device=device, progress=False)
    )
    a, audit_s = timed(lambda: amun.audit(m, (x, y), forget, test=(tx, ty), device=device,
                                          progress=False))
    row = {"device": device, "unlearn_s": round(wall, 3), "audit_s": round(audit_s, 3),
           "image_steps": r.image_steps, "accuracy": a.accuracy}
    return row, {k: v.detach().cpu() for k, v in m.state_dict().items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=3)
    # The CPU's run of the same unlearning takes minutes of a lease's
    # 15 device minutes for a ResNet-18: asked for, not by default.
    ap.add_argument("--compare-cpu", action="store_true")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    data = cifar(a.data, "data_batch_1.bin", a.train)
    test = cifar(a.data, "test_batch.bin", 500)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    report = {"torch": torch.__version__, "device": a.device, "train_images": a.train}
    if a.device.startswith("cuda"):
        report["card"] = torch.cuda.get_device_name(0)
    tr, train_s = timed(lambda: amun.train(model.to(a.device), tuple(t.to(a.device) for t in data),
                                           epochs=a.epochs, device=a.device, progress=False))
    report["train_s"] = round(train_s, 3)
    report["train_metrics"] = tr.metrics
    model = model.cpu()
    forget = list(range(0, a.train, 10))
    rows, weights = [], {}
    for device in dict.fromkeys([a.device] + (["cpu"] if a.compare_cpu else [])):
        row, weights[device] = run_on(device, model, data, test, forget)
        rows.append(row)
        print(json.dumps(row))
    report["runs"] = rows
    if len(weights) == 2:
        # Kernels differ between the card and the CPU: not the same bits,
        # but the same unlearning (accuracies above, weights close).
        w = list(weights.values())
        report["max_abs_weight_diff"] = max(
            (w[0][k].float() - w[1][k].float()).abs().max().item() for k in w[0]
            if w[0][k].is_floating_point()
        )
    (a.out / "python.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}))


if __name__ == "__main__":
    main()
