"""The same unlearning request through `amun.unlearn` and through `amun unlearn`: wall and CPU time of
each (medians of --reps, the two run alternately), whether the weights are bit-identical, and the load
average (CPU time is the steadier measure on a shared machine).
The model is an untrained torchvision ResNet-18 on the first --n CIFAR-10 training images, every
30th forgotten, --epochs of AMUN without calibration, seed 0, CPU, --threads libtorch threads on
both sides (torch.set_num_threads here, OMP_NUM_THREADS for the CLI).

    $AMUN_PYENV/bin/python bench/python_vs_cli.py --n 2000 --epochs 2 --reps 3 --threads 2

Needs the wheel installed in $AMUN_PYENV and target/release/amun (scripts/test.sh builds both).
"""
import argparse, copy, os, resource, statistics, subprocess, tempfile, time
from pathlib import Path
import numpy as np, torch, torchvision, amun
from amun import _amun
from safetensors.torch import load_file

ap = argparse.ArgumentParser()
ap.add_argument("--n", type=int, default=2000)
ap.add_argument("--epochs", type=int, default=2)
ap.add_argument("--reps", type=int, default=3)
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()
torch.set_num_threads(a.threads)
binary = Path(__file__).resolve().parents[1] / "target/release/amun"
cifar = Path(_amun.fetch("cifar10"))
raw = np.fromfile(cifar / "data_batch_1.bin", np.uint8).reshape(-1, 3073)
x, y = torch.from_numpy(raw[:, 1:].reshape(-1, 3, 32, 32).copy()), torch.from_numpy(raw[:, 0].astype(np.int64))
forget = list(range(0, a.n, 30))
torch.manual_seed(0)
model = torchvision.models.resnet18(num_classes=10).eval()
tmp = Path(tempfile.mkdtemp())
# the data as amun reads it: a CIFAR-10 binary folder (train: the first n, test: the last 100)
d = tmp / "data"; d.mkdir()
rec = lambda xs, ys: np.concatenate([ys.numpy().astype(np.uint8)[:, None], xs.reshape(len(ys), -1).numpy()], 1).tobytes()
for i, (xs, ys) in enumerate(zip(x[:a.n].chunk(5), y[:a.n].chunk(5))):
    (d / f"data_batch_{i + 1}.bin").write_bytes(rec(xs, ys))
(d / "test_batch.bin").write_bytes(rec(x[-100:], y[-100:]))
(d / "batches.meta.txt").write_text((cifar / "batches.meta.txt").read_text())
(tmp / "forget.txt").write_text("\n".join(map(str, forget)) + "\n")
ep = torch.export.export(model, (x[:2].float() / 255,), dynamic_shapes=({0: torch.export.Dim("batch")},))
torch.export.save(ep, str(tmp / "m.pt2"))
cli_cmd = [str(binary), "unlearn", "--checkpoint", tmp / "m.pt2", "--dataset", d, "--forget", tmp / "forget.txt",
           "--epochs", str(a.epochs), "--seed", "0", "--device", "cpu", "--out", tmp / "cli.safetensors", "--quiet"]
cli_env = {**os.environ, "OMP_NUM_THREADS": str(a.threads)}
print(f"load average before: {os.getloadavg()}; {os.cpu_count()} CPUs; n={a.n} epochs={a.epochs} "
      f"threads={a.threads} forget={len(forget)}")
# What Python does that the CLI's timing leaves out: the module's export (the CLI gets the .pt2).
t = time.perf_counter()
amun._export(copy.deepcopy(model), x[:2].float() / 255, tmp / "probe.pt2")
print(f"torch.export + save of the module, once: {time.perf_counter() - t:.2f} s")
cpu = lambda who: (lambda u: u.ru_utime + u.ru_stime)(resource.getrusage(who))
cli_s, py_s, cli_cpu, py_cpu, same = [], [], [], [], []
for rep in range(a.reps):
    t, c = time.perf_counter(), cpu(resource.RUSAGE_CHILDREN)
    p = subprocess.run(cli_cmd, capture_output=True, text=True, env=cli_env)
    cli_s.append(time.perf_counter() - t)
    cli_cpu.append(cpu(resource.RUSAGE_CHILDREN) - c)
    assert p.returncode == 0, p.stderr
    m = copy.deepcopy(model)
    t, c = time.perf_counter(), cpu(resource.RUSAGE_SELF)
    r = amun.unlearn(m, (x[:a.n], y[:a.n]), forget, calibrate=False, epochs=a.epochs, seed=0, device="cpu",
                     progress=False)
    py_s.append(time.perf_counter() - t)
    py_cpu.append(cpu(resource.RUSAGE_SELF) - c)
    cli, sd = load_file(str(tmp / "cli.safetensors")), m.state_dict()
    same.append(sorted(cli) == sorted(sd) and all(torch.equal(cli[k], sd[k]) for k in cli))
    print(f"rep {rep}: cli {cli_s[-1]:.2f} s ({cli_cpu[-1]:.2f} s CPU), python {py_s[-1]:.2f} s "
          f"({py_cpu[-1]:.2f} s CPU; amun's method {r.seconds:.2f} s), "
          f"{len(cli)} tensors bit-identical: {same[-1]}, load {os.getloadavg()[0]:.2f}")
med = statistics.median
c, p, cc, pc = med(cli_s), med(py_s), med(cli_cpu), med(py_cpu)
print(f"median wall: cli {c:.2f} s, python {p:.2f} s, python/cli {p / c:.3f}; median CPU: cli {cc:.2f} s, "
      f"python {pc:.2f} s, python/cli {pc / cc:.3f}; bit-identical in all reps: {all(same)}; "
      f"load average after: {os.getloadavg()}")
