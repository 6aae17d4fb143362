"""PyTorch reference of amun's adversarial-set search, WITHOUT batch
refilling (the authors' schedule: a batch runs until its last sample flips),
for same-card comparisons with `amun adv` / `amun bench pgd --search N`.

Same algorithm as amun (and as the AMUN authors' PGDL2): L2 PGD, 50 steps per
round, alpha = eps/10, no random start, eval mode, per-sample unit-norm
gradient, projection onto the eps-ball, clamp to [0,1], per-sample early exit
the moment the prediction changes, eps doubled for samples still correct
after a round (continuing from where they are), already-misclassified samples
kept as they are.

    python bench/pytorch_pgd_reference.py --checkpoint model.pt --arch resnet18 \\
        --cifar-dir ~/.cache/amun/data/cifar10 --forget forget.json --n 5000 --device cuda [--tf32] [--bf16]

`model.pt` comes from `amun export --checkpoint ... --layout authors --out model.pt`.
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "crates/amun-cli/tests/fixtures"))
from pytorch_models import ResNet18, SmallCnn, Vgg19  # noqa: E402


def load_cifar_train(d):
    xs, ys = [], []
    for i in range(1, 6):
        raw = np.fromfile(Path(d) / f"data_batch_{i}.bin", dtype=np.uint8).reshape(-1, 3073)
        ys.append(raw[:, 0].astype(np.int64))
        xs.append(raw[:, 1:].reshape(-1, 3, 32, 32))
    return np.concatenate(xs), np.concatenate(ys)


def search(model, x0, y, eps0, steps, bf16):
    """One batch, the authors' schedule. Returns (x_adv, adv_label, eps, steps_taken)."""
    n = x0.shape[0]
    dev = x0.device
    eps = torch.full((n,), eps0, device=dev)
    x = x0.clone()
    out_x, out_y = x0.clone(), torch.empty(n, dtype=torch.long, device=dev)
    out_eps, out_steps = eps.clone(), torch.zeros(n, dtype=torch.long, device=dev)
    idx = torch.arange(n, device=dev)
    taken = torch.zeros(n, dtype=torch.long, device=dev)
    rnd = torch.zeros(n, dtype=torch.long, device=dev)
    while idx.numel() > 0:
        xg = x.detach().requires_grad_(True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(xg).float()
        pred = logits.argmax(1)
        flipped = pred != y[idx]
        round_over = rnd == steps
        done = flipped
        if done.any():
            d = idx[done]
            out_x[d], out_y[d], out_eps[d], out_steps[d] = x[done].detach(), pred[done], eps[done], taken[done]
        keep = ~done
        if keep.sum() == 0:
            break
        # double eps where a round ended without a flip
        eps = torch.where(keep & round_over, eps * 2, eps)
        rnd = torch.where(keep & round_over, torch.zeros_like(rnd), rnd)
        loss = F.cross_entropy(logits, y[idx], reduction="sum")
        (g,) = torch.autograd.grad(loss, xg)
        with torch.no_grad():
            gn = g.flatten(1).norm(dim=1).view(-1, 1, 1, 1) + 1e-10
            stepped = x + (eps / 10).view(-1, 1, 1, 1) * g / gn
            delta = stepped - x0[idx]
            norm = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
            factor = torch.clamp(eps.view(-1, 1, 1, 1) / norm, max=1.0)
            x = (x0[idx] + delta * factor).clamp(0, 1)
        x, eps, rnd, taken, idx = x[keep], eps[keep], rnd[keep] + 1, taken[keep] + 1, idx[keep]
    return out_x, out_y, out_eps, out_steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--arch", default="resnet18", choices=["resnet18", "small-cnn", "vgg19"])
    ap.add_argument("--cifar-dir", required=True)
    ap.add_argument("--forget", required=True)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--eps0", type=float, default=0.04)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tf32", action="store_true")
    ap.add_argument("--bf16", action="store_true")
    a = ap.parse_args()
    torch.backends.cudnn.allow_tf32 = a.tf32
    torch.backends.cuda.matmul.allow_tf32 = a.tf32
    dev = torch.device(a.device)
    model = {"resnet18": ResNet18, "small-cnn": SmallCnn, "vgg19": Vgg19}[a.arch]()
    model.load_state_dict(torch.load(a.checkpoint, weights_only=True), strict=True)
    model.to(dev).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    xs, ys = load_cifar_train(a.cifar_dir)
    idx = json.load(open(a.forget))["indices"][: a.n]
    x_all = torch.from_numpy(xs[idx]).float().div(255).to(dev)
    y_all = torch.from_numpy(ys[idx]).to(dev)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    eps_all, steps_all, dist_all = [], [], []
    for s in range(0, len(idx), a.batch):
        x0, y = x_all[s : s + a.batch], y_all[s : s + a.batch]
        xa, ya, eps, st = search(model, x0, y, a.eps0, a.steps, a.bf16)
        eps_all += eps.tolist()
        steps_all += st.tolist()
        dist_all += (xa - x0).flatten(1).norm(dim=1).tolist()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t
    hist = {}
    for e in eps_all:
        k = f"{e:.4f}"
        hist[k] = hist.get(k, 0) + 1
    total = sum(steps_all)
    print(f"PyTorch {torch.__version__} on {dev}, naive schedule (no refilling), batch {a.batch}")
    print(f"samples {len(idx)}, wall {wall:.2f} s, image-steps/s {total / wall:.0f}, steps {total}, "
          f"median |delta| {statistics.median(dist_all):.4f}")
    print("eps histogram:", dict(sorted(hist.items(), key=lambda kv: float(kv[0]))))


if __name__ == "__main__":
    main()
