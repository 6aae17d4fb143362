"""PyTorch reference for `amun bench train|pgd`: the same models (CIFAR
ResNet-18 with kuangliu/AMUN names, the small CNN), the same synthetic
batches and the same timing (warm-up, then the median of windows, CUDA
synchronised), so that amun's images/s can be given as a same-run ratio.

    python bench/pytorch_bench.py train --model resnet18 --batch 128,512 --device cuda [--bf16 --channels-last] [--tf32]
"""
import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F


# The same modules as the import/export tests (amun's names and layers).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "crates/amun-cli/tests/fixtures"))
from pytorch_models import ResNet18, SmallCnn  # noqa: E402
from step_timing import median_step_seconds  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["train", "pgd"])
    ap.add_argument("--model", default="resnet18", choices=["resnet18", "small-cnn"])
    ap.add_argument("--batch", default="128")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--tf32", action="store_true")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--windows", type=int, default=3)
    a = ap.parse_args()
    torch.backends.cudnn.allow_tf32 = a.tf32
    torch.backends.cuda.matmul.allow_tf32 = a.tf32
    torch.backends.cudnn.benchmark = False
    dev = torch.device(a.device)
    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} thread(s), device {dev}, tf32 {'on' if a.tf32 else 'off'}")
    print("| bench | model | batch | device | precision | images/s | ms/step |")
    print("|---|---|---|---|---|---|---|")
    for b in [int(x) for x in a.batch.split(",")]:
        torch.manual_seed(0)
        model = (ResNet18() if a.model == "resnet18" else SmallCnn()).to(dev)
        mf = torch.channels_last if a.channels_last and dev.type == "cuda" else torch.contiguous_format
        model = model.to(memory_format=mf)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4, foreach=False)
        x = torch.rand(b, 3, 32, 32, device=dev)
        y = torch.randint(0, 10, (b,), device=dev)

        def step():
            if a.what == "train":
                model.train()
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.bf16):
                    loss = F.cross_entropy(model(x.contiguous(memory_format=mf)).float(), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            else:
                model.eval()
                xa = x.detach().requires_grad_(True)
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.bf16):
                    loss = F.cross_entropy(model(xa.contiguous(memory_format=mf)).float(), y)
                (g,) = torch.autograd.grad(loss, xa)
                with torch.no_grad():
                    _ = x + g * 0.0

        sec = median_step_seconds(step, dev, a.warmup, a.windows, a.steps)
        prec = ("bf16 autocast" if a.bf16 else "fp32") + (", channels-last" if mf == torch.channels_last else "")
        print(f"| {a.what} | {a.model} | {b} | {a.device} | {prec} | {b / sec:.0f} | {sec * 1e3:.2f} |")


if __name__ == "__main__":
    main()
