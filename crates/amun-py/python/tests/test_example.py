"""docs/examples/resnet18_cifar10.py, scaled down to seconds: it trains,
unlearns, audits and saves a torchvision ResNet-18 on CIFAR-10."""

import subprocess
import sys

import pytest
import torch

from conftest import ROOT


def test_the_resnet18_example_runs_end_to_end(cifar_dir, tmp_path):
    torchvision = pytest.importorskip("torchvision")
    out = tmp_path / "resnet18.pt"
    script = ROOT / "docs" / "examples" / "resnet18_cifar10.py"
    p = subprocess.run(
        [sys.executable, str(script), "--train", "50", "--test", "20", "--epochs", "1",
         "--calibrate-epochs", "1", "--device", "cpu", "--out", str(out)],
        capture_output=True, text=True,
    )
    assert p.returncode == 0, p.stderr
    for line in ("trained: train", "unlearned 5 images with amun", "accuracy %:", "saved"):
        assert line in p.stdout, p.stdout
    model = torchvision.models.resnet18(num_classes=10)
    model.load_state_dict(torch.load(out, weights_only=True))
