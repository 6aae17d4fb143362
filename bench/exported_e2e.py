"""The PyTorch side of bench/exported_e2e.sh: a user's own CNN (none of
amun's four architectures), trained in PyTorch on a CIFAR-10 slice with the
recipe the script states, exported with torch.export; and the check that
amun's unlearned weights load back strictly into the user's class with
amun's logits.

    python exported_e2e.py train CIFAR_DIR N EPOCHS OUTDIR
        # OUTDIR/custom.pt2 (trained), OUTDIR/custom-init.pt2 (its init)
    python exported_e2e.py check CIFAR_DIR OUTDIR/unlearned.pt AMUN_PER_SAMPLE.safetensors NTEST
"""

import math
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


class CustomNet(nn.Module):
    """A user's CNN: residual stages with depthwise-separable convolutions,
    BatchNorm, SiLU, squeeze-excitation, dropout before the head."""

    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.SiLU())
        self.stages = nn.ModuleList([self.stage(16, 32), self.stage(32, 64), self.stage(64, 96)])
        self.se = nn.Sequential(nn.Linear(96, 24), nn.ReLU(), nn.Linear(24, 96))
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(96, classes)

    @staticmethod
    def stage(cin, cout):
        return nn.ModuleDict(
            {
                "dw": nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False),
                "pw": nn.Conv2d(cin, cout, 1, bias=False),
                "bn": nn.BatchNorm2d(cout),
                "skip": nn.Conv2d(cin, cout, 1, bias=False),
            }
        )

    def forward(self, x):
        x = self.stem(x)
        for s in self.stages:
            x = F.silu(s["bn"](s["pw"](s["dw"](x)))) + s["skip"](x)
            x = F.max_pool2d(x, 2)
        w = torch.sigmoid(self.se(x.mean((2, 3))))
        x = x * w[:, :, None, None]
        return self.head(self.drop(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)))


def cifar(cifar_dir, n, test=False):
    files = ["test_batch.bin"] if test else [f"data_batch_{i}.bin" for i in range(1, 6)]
    rows = []
    for f in files:
        rows.append(np.fromfile(f"{cifar_dir}/{f}", dtype=np.uint8).reshape(-1, 3073))
        if sum(len(r) for r in rows) >= n:
            break
    raw = np.concatenate(rows)[:n]
    y = torch.from_numpy(raw[:, 0].astype(np.int64))
    x = torch.from_numpy(raw[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)
    return x, y


def normalize(x):
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def augment(x, g):
    """Random crop (zero padding 4) and horizontal flip, as amun's --augment on."""
    n = x.shape[0]
    p = F.pad(x, (4, 4, 4, 4))
    dx = torch.randint(0, 9, (n,), generator=g)
    dy = torch.randint(0, 9, (n,), generator=g)
    out = torch.stack([p[i, :, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32] for i in range(n)])
    flip = torch.rand(n, generator=g) < 0.5
    out[flip] = out[flip].flip(3)
    return out


def export(m, path):
    m.eval()
    ep = torch.export.export(m, (torch.rand(2, 3, 32, 32),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(ep, path)


def train(cifar_dir, n, epochs, out):
    x, y = cifar(cifar_dir, n)
    torch.manual_seed(0)
    m = CustomNet()
    export(m, f"{out}/custom-init.pt2")
    # The recipe amun's retrain repeats (amun train --lr 0.05 --schedule
    # cosine --batch-size 128 --momentum 0.9 --weight-decay 5e-4 --augment
    # on): SGD, the rate annealed per step as amun's cosine schedule,
    # crop+flip, `epochs` epochs; a last batch of at least half a batch is
    # its own step (N = 2000: 15 steps of 128 and one of 80), as in amun.
    base = 0.05
    opt = torch.optim.SGD(m.parameters(), lr=base, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(0)
    starts = list(range(0, n, 128))
    if n - starts[-1] < 64 and len(starts) > 1:
        starts.pop()
    ends = starts[1:] + [n]
    for e in range(epochs):
        m.train()
        perm = torch.randperm(n, generator=g)
        for i, (s0, s1) in enumerate(zip(starts, ends)):
            b = perm[s0:s1]
            t = (e + i / len(starts)) / epochs
            for group in opt.param_groups:
                group["lr"] = base * 0.5 * (1 + math.cos(math.pi * t))
            loss = F.cross_entropy(m(normalize(augment(x[b], g))), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    m.eval()
    with torch.no_grad():
        acc = (m(normalize(x)).argmax(1) == y).float().mean().item()
        xt, yt = cifar(cifar_dir, 1000, test=True)
        tacc = (m(normalize(xt)).argmax(1) == yt).float().mean().item()
    export(m, f"{out}/custom.pt2")
    print(f"PyTorch: trained CustomNet on {n} CIFAR-10 images, {epochs} epochs: train {100 * acc:.1f}%, test {100 * tacc:.1f}%")


def check(cifar_dir, pt, per_sample, ntest):
    import json
    import struct

    with open(per_sample, "rb") as f:
        h = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
        data = f.read()
    s, e = h["logits"]["data_offsets"]
    # amun eval --per-sample: the training split's rows, then the test split's.
    want = torch.frombuffer(bytearray(data[s:e]), dtype=torch.float32).reshape(h["logits"]["shape"])[-ntest:]
    m = CustomNet()
    m.load_state_dict(torch.load(pt, weights_only=True), strict=True)
    m.eval()
    xt, _ = cifar(cifar_dir, want.shape[0], test=True)
    with torch.no_grad():
        got = m(normalize(xt))
    diff = (got - want).abs().max().item()
    print(f"PyTorch: {pt} loaded with strict=True; max |logit − amun's| over {want.shape[0]} test images: {diff:.2e}")
    sys.exit(0 if diff <= 1e-5 else 1)


if __name__ == "__main__":
    if sys.argv[1] == "train":
        train(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    elif sys.argv[1] == "check":
        check(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        sys.exit(f"unknown command {sys.argv[1]}")
