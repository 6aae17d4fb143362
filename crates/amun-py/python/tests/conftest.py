"""Fixtures: MNIST-5k from amun's data cache (fetched on first use, as the
Rust tests do) and a small CNN trained on it in PyTorch."""

import copy
import gzip
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import amun
from amun import _amun

ROOT = Path(__file__).resolve().parents[4]


@pytest.fixture(scope="session")
def mnist():
    """(train images, train labels, held-out images, held-out labels):
    100 + 20 images per class, uint8 [N,1,28,28], interleaved by class."""
    path = Path(_amun.fetch("mnist")) / "mnist_5k.csv.gz"
    rows = np.loadtxt(gzip.open(path), delimiter=",", dtype=np.int64)
    by_class = [rows[rows[:, 784] == c] for c in range(10)]
    take = lambda lo, hi: np.stack([by_class[c][i] for i in range(lo, hi) for c in range(10)])
    train, held = take(0, 100), take(400, 420)
    as_split = lambda r: (
        torch.from_numpy(r[:, :784].astype(np.uint8)).reshape(-1, 1, 28, 28),
        torch.from_numpy(r[:, 784].copy()),
    )
    return (*as_split(train), *as_split(held))


class SmallCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.conv2 = torch.nn.Conv2d(8, 16, 3, padding=1)
        self.fc = torch.nn.Linear(16 * 7 * 7, 10)

    def forward(self, x):
        x = torch.nn.functional.max_pool2d(torch.relu(self.bn(self.conv1(x))), 2)
        x = torch.nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


@pytest.fixture(scope="session")
def trained(mnist):
    """A SmallCNN trained 10 epochs on the training images (seconds): it
    fits them better than held-out images, so calibration has work to do."""
    x, y = mnist[0].float() / 255, mnist[1]
    torch.manual_seed(0)
    model = SmallCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(10):
        for i in torch.randperm(len(y)).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[i]), y[i]).backward()
            opt.step()
    return model.eval()


@pytest.fixture
def model(trained):
    """A fresh copy of the trained model, for a test to unlearn in place."""
    return copy.deepcopy(trained)


@pytest.fixture(scope="session")
def amun_bin():
    """The CLI binary of this checkout (built by scripts/test.sh)."""
    path = Path(os.environ.get("AMUN_BIN", ROOT / "target" / "release" / "amun"))
    if not path.is_file():
        pytest.fail(f"{path}: no amun binary; build it with cargo build --release")
    return path


@pytest.fixture(scope="session")
def cifar_dir():
    """amun's CIFAR-10 cache folder (fetched on first use)."""
    return Path(_amun.fetch("cifar10"))


def _write_idx(folder, prefix, images, labels):
    n, _, h, w = images.shape
    head = lambda magic, dims: bytes([0, 0, 8, magic]) + b"".join(
        d.to_bytes(4, "big") for d in dims
    )
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(
        head(3, [n, h, w]) + images.numpy().tobytes()
    )
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(
        head(1, [n]) + labels.to(torch.uint8).numpy().tobytes()
    )


def _write_cifar(folder, meta, images, labels, test_images, test_labels):
    """The CIFAR-10 binary format amun reads: five training batches, a test batch."""
    rows = lambda x, y: torch.cat([y.to(torch.uint8)[:, None], x.reshape(len(y), -1)], 1)
    for i, part in enumerate(rows(images, labels).chunk(5)):
        (folder / f"data_batch_{i + 1}.bin").write_bytes(part.numpy().tobytes())
    (folder / "test_batch.bin").write_bytes(rows(test_images, test_labels).numpy().tobytes())
    (folder / "batches.meta.txt").write_text(meta.read_text())


def cifar_slice(cifar_dir, n):
    """The first ``n`` images of CIFAR-10's first training batch: uint8
    [n,3,32,32] and int64 labels."""
    raw = torch.frombuffer(bytearray((cifar_dir / "data_batch_1.bin").read_bytes()), dtype=torch.uint8)
    raw = raw.reshape(-1, 3073)[:n]
    return raw[:, 1:].reshape(-1, 3, 32, 32).contiguous(), raw[:, 0].long()


def _cli(amun_bin, *args):
    start = time.perf_counter()
    p = subprocess.run([str(amun_bin), *map(str, args)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return time.perf_counter() - start


@pytest.fixture(scope="session")
def idx_data(mnist, tmp_path_factory):
    """The MNIST slice as an IDX folder amun reads: the 1000 training
    images, and as test split the last 100 of them + the 200 held-out."""
    x, y, hx, hy = mnist
    folder = tmp_path_factory.mktemp("idx")
    _write_idx(folder, "train", x, y)
    _write_idx(folder, "t10k", torch.cat([x[-100:], hx]), torch.cat([y[-100:], hy]))
    return folder
