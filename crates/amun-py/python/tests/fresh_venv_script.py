"""A user's first script, which test_install.py runs in a brand-new venv
holding only `pip install torch==2.11.0 torchvision==0.26.0` and amun's
wheel: the first ten lines train torchvision's ResNet-18 on 1,000 CIFAR-10
images, unlearn 100 of them in place and audit it; the rest checks what
the test needs."""
import torch, torchvision, amun
raw = (amun.fetch("cifar10") / "data_batch_1.bin").read_bytes()  # rows: a label byte, 3x32x32 pixels
rows = torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(-1, 3073)[:1200]
x, y = rows[:, 1:].reshape(-1, 3, 32, 32), rows[:, 0].long()
train, held = (x[:1000], y[:1000]), (x[1000:], y[1000:])
model = torchvision.models.resnet18(num_classes=10)
trained = amun.train(model, train, test=held, init="seed", epochs=3, lr=0.05)  # init drawn from seed 0
record = amun.unlearn(model, train, forget=range(100), calibrate=False, epochs=1)  # or heldout=held: calibrated
audit = amun.audit(model, train, range(100), test=held)
print(trained.metrics, record.chosen, record.why, audit.accuracy, record.wall_seconds, sep="\n")

# The test's checks. One libtorch in the process, the venv's torch's: every
# libtorch/libc10 mapped (by amun's module, torch and torchvision's own
# extension) comes from torch's own lib folder, once.
import json, os, re, sys
from pathlib import Path
mapped = {line.split()[-1] for line in open("/proc/self/maps") if "/" in line}
libs = sorted(p for p in mapped if re.search(r"/lib(torch|torch_cpu|torch_cuda|c10)\.so$", p))
torch_lib = os.path.realpath(Path(torch.__file__).parent / "lib")
native = os.path.realpath(amun._amun.__file__)
print(json.dumps({
    "libtorch": libs,
    "torch_lib": torch_lib,
    "native": native,
    "torchvision": os.path.realpath(torchvision.__file__),
    "torchvision_ext": sorted(p for p in mapped if "/torchvision/" in p and p.endswith(".so")),
    "prefix": os.path.realpath(sys.prefix),
    "before": record.accuracy_before,
    "after": record.accuracy_after,
    "audited": audit.accuracy,
    "samples": audit.samples,
    "train_accuracy": trained.metrics["train_acc"],
    "test_accuracy": audit.accuracy["test"],
}))
