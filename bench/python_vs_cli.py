"""The same request through `amun.unlearn` and through `amun unlearn`: wall and CPU time, and whether
the weights are bit-identical (torchvision ResNet-18, untrained, 300 CIFAR-10 images, 1 epoch).

    $AMUN_PYENV/bin/python bench/python_vs_cli.py 5    # 5 reps; the wheel installed (scripts/test.sh)
"""
import copy, resource, subprocess, sys, time, tempfile
from pathlib import Path
import numpy as np, torch, torchvision, amun
from amun import _amun
from safetensors.torch import load_file

cifar = Path(_amun.fetch("cifar10"))
raw = np.fromfile(cifar / "data_batch_1.bin", np.uint8).reshape(-1, 3073)
x, y = torch.from_numpy(raw[:, 1:].reshape(-1, 3, 32, 32).copy()), torch.from_numpy(raw[:, 0].astype(np.int64))
n = 300
forget = list(range(0, n, 30))
torch.manual_seed(0)
model = torchvision.models.resnet18(num_classes=10).eval()
tmp = Path(tempfile.mkdtemp())
# the data as amun reads it: a CIFAR-10 binary folder (train: first n, test: last 100)
d = tmp / "data"; d.mkdir()
rec = lambda xs, ys: np.concatenate([ys.numpy().astype(np.uint8)[:, None], xs.reshape(len(ys), -1).numpy()], 1).tobytes()
for i, (xs, ys) in enumerate(zip(x[:n].chunk(5), y[:n].chunk(5))):
    (d / f"data_batch_{i + 1}.bin").write_bytes(rec(xs, ys))
(d / "test_batch.bin").write_bytes(rec(x[-100:], y[-100:]))
(d / "batches.meta.txt").write_text((cifar / "batches.meta.txt").read_text())
(tmp / "forget.txt").write_text("\n".join(map(str, forget)) + "\n")
ep = torch.export.export(model, (x[:2].float() / 255,), dynamic_shapes=({0: torch.export.Dim("batch")},))
torch.export.save(ep, str(tmp / "m.pt2"))
for rep in range(int(sys.argv[1]) if len(sys.argv) > 1 else 1):
    t, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
    p = subprocess.run([str(Path(__file__).resolve().parents[1] / "target/release/amun"), "unlearn", "--checkpoint", tmp / "m.pt2", "--dataset", d,
                        "--forget", tmp / "forget.txt", "--epochs", "1", "--seed", "0", "--device", "cpu",
                        "--out", tmp / "cli.safetensors", "--quiet"], capture_output=True, text=True)
    cli_s, cli_cpu = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - c0
    assert p.returncode == 0, p.stderr
    m = copy.deepcopy(model)
    t, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_utime
    r = amun.unlearn(m, (x[:n], y[:n]), forget, calibrate=False, epochs=1, seed=0, device="cpu")
    py_s, py_cpu = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_utime - c0
    cli = load_file(str(tmp / "cli.safetensors"))
    sd = m.state_dict()
    same = sorted(cli) == sorted(sd) and all(torch.equal(cli[k], sd[k]) for k in cli)
    print(f"rep {rep}: python {py_s:.1f}s wall {py_cpu:.1f}s cpu (amun's method {r.seconds:.1f}s), "
          f"cli {cli_s:.1f}s wall {cli_cpu:.1f}s cpu, "
          f"{len(cli)} tensors bit-identical: {same}")
