"""PyTorch reference for `amun bench train|pgd`: the same models (CIFAR
ResNet-18 with kuangliu/AMUN names, the small CNN), the same synthetic
batches and the same timing (warm-up, then the median of windows, CUDA
synchronised), so that amun's images/s can be given as a same-run ratio.

    python bench/pytorch_bench.py train --model resnet18 --batch 128,512 --device cuda [--bf16 --channels-last] [--tf32]
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class SmallCnn(nn.Module):
    def __init__(self, cin=3, size=32, classes=10):
        super().__init__()
        w = [32, 64, 128]
        self.conv1 = nn.Conv2d(cin, w[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w[0])
        self.conv2 = nn.Conv2d(w[0], w[1], 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(w[1])
        self.conv3 = nn.Conv2d(w[1], w[2], 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(w[2])
        self.fc = nn.Linear(w[2] * (size // 8) ** 2, classes)

    def forward(self, x):
        for c, b in [(self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)]:
            x = F.max_pool2d(F.relu(b(c(x))), 2)
        return self.fc(x.flatten(1))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, cin=3, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, c = [], 64
        for i, (w, s) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)]):
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(c, w, s), BasicBlock(w, w, 1)))
            c = w
        self.linear = nn.Linear(512, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return self.linear(F.adaptive_avg_pool2d(x, 1).flatten(1))


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

        def sync():
            if dev.type == "cuda":
                torch.cuda.synchronize()

        for _ in range(a.warmup):
            step()
        sync()
        rates = []
        for _ in range(a.windows):
            t = time.perf_counter()
            for _ in range(a.steps):
                step()
            sync()
            rates.append((time.perf_counter() - t) / a.steps)
        sec = statistics.median(rates)
        prec = ("bf16 autocast" if a.bf16 else "fp32") + (", channels-last" if mf == torch.channels_last else "")
        print(f"| {a.what} | {a.model} | {b} | {a.device} | {prec} | {b / sec:.0f} | {sec * 1e3:.2f} |")


if __name__ == "__main__":
    main()
