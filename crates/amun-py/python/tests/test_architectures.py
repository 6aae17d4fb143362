"""torchvision and timm architectures and hand-written modules through
amun.unlearn: the weights of `amun unlearn` on the very program the
package exported, bit for bit. Tiny: 40 CIFAR-10 images, one epoch."""

import shutil

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

import amun
from conftest import _cli, _write_cifar, cifar_slice


class GroupedCnn(nn.Module):
    """Grouped convolution, BatchNorm, hardswish, dropout, a skip connection."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.mid = nn.Conv2d(16, 16, 3, padding=1, groups=4, bias=False)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn(self.stem(x))), 2)
        x = x + F.hardswish(self.mid(x))
        return self.fc(self.drop(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)))


class TinyAttention(nn.Module):
    """Patches, a class token, a position embedding, one attention block."""

    def __init__(self, dim=32):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 8, stride=8)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, 17, dim) * 0.02)
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 64), nn.GELU(), nn.Linear(64, dim))
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=-1)
        x = x + F.scaled_dot_product_attention(q, k, v)
        x = x + self.mlp(x)
        return self.head(x[:, 0])


def _torchvision(name, **kw):
    tv = pytest.importorskip("torchvision")
    return getattr(tv.models, name)(num_classes=10, **kw)


def _timm(name, **kw):
    timm = pytest.importorskip("timm")
    return timm.create_model(name, num_classes=10, **kw)


# AMUN's adversarial search, short: an untrained network has no nearby
# boundary to find, and the full search is minutes on such a one.
SHORT_AMUN = ("amun", {"attack": {"fast_steps": 5, "steps": 10}})
# Random labels: one epoch of fine-tuning, and its random draws.
RL = ("rl", {})

# Small members of each family (timm's test_* models are its own tiny
# configurations of the real blocks); torchvision's ResNet-18 is in
# test_unlearn.py. Each case costs an export and a CLI run (seconds): CI's
# budget keeps the list short.
ARCHITECTURES = {
    "torchvision shufflenet_v2_x0_5": (lambda: _torchvision("shufflenet_v2_x0_5"), RL),
    "timm test_efficientnet": (lambda: _timm("test_efficientnet"), RL),
    "timm test_convnext": (lambda: _timm("test_convnext", drop_path_rate=0.1), RL),
    "timm vit (depth 2, patch 8)": (
        lambda: _timm("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2),
        RL,
    ),
    "hand-written grouped cnn": (GroupedCnn, SHORT_AMUN),
    "hand-written attention": (TinyAttention, SHORT_AMUN),
}


def _set_flags(settings, prefix=""):
    """``--set`` flags of nested settings (``attack.steps=10``)."""
    for k, v in settings.items():
        if isinstance(v, dict):
            yield from _set_flags(v, f"{prefix}{k}.")
        else:
            yield from ("--set", f"{prefix}{k}={v}")


@pytest.fixture(scope="module")
def cifar_folder(cifar_dir, tmp_path_factory):
    """40 training and 20 test images of CIFAR-10, as a folder amun reads."""
    x, y = cifar_slice(cifar_dir, 60)
    folder = tmp_path_factory.mktemp("cifar")
    _write_cifar(folder, cifar_dir / "batches.meta.txt", x[:40], y[:40], x[40:], y[40:])
    return folder, x[:40], y[:40]


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_an_architecture_unlearned_in_python_matches_the_cli(
    name, cifar_folder, amun_bin, tmp_path, monkeypatch
):
    """The program amun.unlearn exports is kept (a copy, as it was exported:
    the module's weights before unlearning) and `amun unlearn` run on it."""
    folder, x, y = cifar_folder
    torch.manual_seed(0)
    make, (method, settings) = ARCHITECTURES[name]
    model = make().eval()
    program = tmp_path / "model.pt2"
    export = amun._export

    def keep_a_copy(module, example, path):
        export(module, example, path)
        shutil.copy(path, program)

    monkeypatch.setattr(amun, "_export", keep_a_copy)
    forget = [3, 11, 20, 33]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    amun.unlearn(model, (x, y), forget, method=method, calibrate=False, epochs=1, batch_size=16,
                 seed=4, device="cpu", progress=False, **settings)
    (tmp_path / "forget.txt").write_text("\n".join(map(str, forget)) + "\n")
    out = tmp_path / "cli.safetensors"
    _cli(amun_bin, "unlearn", "--checkpoint", program, "--dataset", folder, "--forget",
         tmp_path / "forget.txt", "--method", method, *_set_flags(settings), "--epochs", 1,
         "--batch-size", 16, "--seed", 4, "--device", "cpu", "--out", out, "--quiet")
    cli, mine = load_file(str(out)), model.state_dict()
    assert sorted(cli) == sorted(mine)
    assert any(not torch.equal(mine[k], before[k]) for k in mine)
    differ = [k for k in cli if not torch.equal(cli[k], mine[k])]
    assert not differ, {k: (cli[k] - mine[k]).abs().max().item() for k in differ}
