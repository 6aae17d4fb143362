"""Speed of exported programs in amun against PyTorch eager (issue 22):
exports torchvision's ResNet-18, a small timm ViT and amun's own CIFAR
ResNet-18 (the module of the import tests) to OUT/*.pt2, and times PyTorch
eager's training step on each (forward, backward, SGD; the timing of
bench/pytorch_bench.py: warm-up, then the median of windows). amun's side
is `amun bench train --model OUT/NAME.pt2` (bench/exported_speed.sh runs
both).

    python bench/exported_speed.py OUT [--batch 128] [--device cpu]
"""

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "crates/amun-cli/tests/fixtures"))
from pytorch_models import ResNet18  # noqa: E402
from step_timing import median_step_seconds  # noqa: E402


def models():
    import timm
    import torchvision

    yield "tv-resnet18", lambda: torchvision.models.resnet18(num_classes=10)
    yield "vit-small", lambda: timm.create_model(
        "vit_tiny_patch16_224", img_size=32, patch_size=4, depth=6, num_classes=10
    )
    yield "amun-resnet18", lambda: ResNet18()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--windows", type=int, default=3)
    a = ap.parse_args()
    dev = torch.device(a.device)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} thread(s), device {dev}")
    print("| model | batch | PyTorch eager images/s |")
    print("|---|---|---|")
    for name, make in models():
        torch.manual_seed(0)
        m = make().eval()
        x = torch.rand(2, 3, 32, 32)
        ep = torch.export.export(m, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
        torch.export.save(ep, f"{a.out}/{name}.pt2")
        m = m.to(dev)
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4, foreach=False)
        xb = torch.rand(a.batch, 3, 32, 32, device=dev)
        yb = torch.randint(0, 10, (a.batch,), device=dev)

        def step():
            m.train()
            loss = F.cross_entropy(m(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()

        sec = median_step_seconds(step, dev, a.warmup, a.windows, a.steps)
        print(f"| {name} | {a.batch} | {a.batch / sec:.0f} |", flush=True)


if __name__ == "__main__":
    main()
