"""A user's first script, which test_install.py runs in a brand-new venv
holding only `pip install torch==2.11.0` and amun's wheel: the first ten
lines train a small CNN on 1,000 MNIST images, unlearn 100 of them in place
and audit it; the rest checks what the test needs."""
import gzip, torch, amun
rows = torch.tensor([[int(v) for v in line.split(b",")] for line in gzip.open(amun.fetch("mnist") / "mnist_5k.csv.gz")])
rows = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))[:1200]]  # the file is sorted by class
x, y = rows[:, :784].to(torch.uint8).reshape(-1, 1, 28, 28), rows[:, 784]
train, held = (x[:1000], y[:1000]), (x[1000:], y[1000:])
model = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, 2), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(16 * 13 * 13, 10))
trained = amun.train(model, train, test=held, init="seed", epochs=4, lr=0.05)  # init drawn from seed 0
record = amun.unlearn(model, train, forget=range(100), calibrate=False, epochs=2)  # or heldout=held: calibrated
audit = amun.audit(model, train, range(100), test=held)
print(trained.metrics, record.chosen, record.why, audit.accuracy, record.wall_seconds, sep="\n")

# The test's checks. One libtorch in the process, the venv's torch's: every
# libtorch/libc10 mapped comes from torch's own lib folder, once.
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
    "prefix": os.path.realpath(sys.prefix),
    "before": record.accuracy_before,
    "after": record.accuracy_after,
    "audited": audit.accuracy,
    "samples": audit.samples,
    "test_accuracy": audit.accuracy["test"],
}))
