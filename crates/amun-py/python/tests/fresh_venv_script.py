"""A user's first script, which test_install.py runs in a brand-new venv
holding only `pip install torch==2.11.0 torchvision==0.26.0` and amun's
wheel: ten lines train torchvision's ResNet-18 (its first convolution for
one-channel digits) on 500 MNIST images, unlearn 20 of them in place and
audit it; the rest checks what the test needs. Small: the test's minutes
are mostly the install. Batches of 32: at the default 128 the three epochs
are 12 steps, too few for BatchNorm's running statistics, and the trained
model scored near chance in eval mode on an AMD EPYC (17% at lr 0.05, seed
0); at 32 it scored 75, 90 and 75% with seeds 0, 1 and 2."""
import gzip, torch, torchvision, amun
rows = torch.tensor([[int(v) for v in line.split(b",")] for line in gzip.open(amun.fetch("mnist") / "mnist_5k.csv.gz")])
rows = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))[:700]]  # the file is sorted by class
x, y = rows[:, :784].to(torch.uint8).reshape(-1, 1, 28, 28), rows[:, 784]
train, held = (x[:500], y[:500]), (x[500:], y[500:])
model = torchvision.models.resnet18(num_classes=10)
model.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)  # digits have one channel
trained = amun.train(model, train, test=held, init="seed", epochs=3, lr=0.02, batch_size=32)  # init: seed 0
record = amun.unlearn(model, train, forget=range(20), calibrate=False, epochs=1)  # or heldout=held: calibrated
audit = amun.audit(model, train, range(20), test=held)
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
    "trained_test_accuracy": trained.metrics["test_acc"],
    "test_accuracy": audit.accuracy["test"],
}))
