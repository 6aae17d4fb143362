"""amun from Python, end to end: a torchvision ResNet-18 trained on a slice
of CIFAR-10, 10% of its training images unlearned in place, audited, saved.

    python docs/examples/resnet18_cifar10.py                  # 5,000 images, minutes on a GPU
    python docs/examples/resnet18_cifar10.py --train 50 --test 20 --epochs 1 --calibrate-epochs 1  # seconds

Needs torch 2.11, torchvision and the amun wheel (README, "From Python").
CIFAR-10 comes from amun's data cache (fetched on first use).
"""

import argparse
import signal
from pathlib import Path

import torch
import torchvision

import amun


def cifar10(n_train: int, n_test: int):
    """The first images of CIFAR-10's training and test batches, as uint8
    [N,3,32,32] images and int64 labels."""
    folder = amun.fetch("cifar10")

    def read(files, n):
        raw = b"".join((folder / f).read_bytes() for f in files)
        rows = torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(-1, 3073)[:n]
        return rows[:, 1:].reshape(-1, 3, 32, 32).contiguous(), rows[:, 0].long()

    train = read([f"data_batch_{i}.bin" for i in range(1, 6)], n_train)
    return train, read(["test_batch.bin"], n_test)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", type=int, default=5000, help="training images")
    p.add_argument("--test", type=int, default=2000, help="test images (half held out for calibration)")
    p.add_argument("--epochs", type=int, default=30, help="training epochs")
    p.add_argument("--calibrate-epochs", type=int, default=10, help="unlearning epochs at most")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, default=Path("resnet18-unlearned.pt"))
    a = p.parse_args()
    # Ctrl-C stops amun cleanly, even when started in the background (nohup).
    signal.signal(signal.SIGINT, signal.default_int_handler)

    (x, y), (tx, ty) = cifar10(a.train, a.test)
    heldout, test = (tx[::2], ty[::2]), (tx[1::2], ty[1::2])
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).to(a.device)

    # 1. Train (amun's recipe; any PyTorch training loop would do as well).
    t = amun.train(model, (x, y), test=test, epochs=a.epochs, lr=0.05, schedule="onecycle:0.25")
    print(f"trained: train {t.metrics['train_acc']:.1f}%, test {t.metrics['test_acc']:.1f}%")

    # 2. Unlearn 10% of the training images, in place; calibration picks
    # the learning rate and the epoch on held-out images, no retrain needed.
    forget = list(range(0, a.train, 10))
    r = amun.unlearn(model, (x, y), forget, heldout=heldout, calibrate={"max_epochs": a.calibrate_epochs})
    print(f"unlearned {len(forget)} images with {r.method}: {r.chosen} ({r.why})")

    # 3. Audit: accuracies on the forget set, the retain set and the test split.
    audit = amun.audit(model, (x, y), forget, test=test)
    print("accuracy %:", {k: round(v, 1) for k, v in audit.accuracy.items()})

    # 4. Save: the module is an ordinary nn.Module again.
    torch.save(model.state_dict(), a.out)
    print(f"saved {a.out}")


if __name__ == "__main__":
    main()
