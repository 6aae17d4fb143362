"""amun.unlearn on MNIST and a small CNN: in place, its record, its errors,
and the same weights as `amun unlearn` on the exported program."""

import copy
import json
import subprocess
import time

import pytest
import torch
from safetensors.torch import load_file

import amun
from amun import _amun
from conftest import SmallCNN, _cli, _write_cifar, _write_idx


def _ref(t):
    return (t.data_ptr(), list(t.shape), list(t.stride()), str(t.dtype), str(t.device))


def test_tensors_round_trip_through_the_process_libtorch():
    x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    out = torch.zeros(3, 2).t()  # a strided view: written through its strides
    _amun._double_into(_ref(x), _ref(out))
    assert torch.equal(out, 2 * x)
    maps = open("/proc/self/maps").read().split("\n")
    libs = {line.split()[-1] for line in maps if line.endswith("/libtorch_cpu.so")}
    assert len(libs) == 1, f"more than one libtorch in the process: {libs}"
    assert libs == {str(next(iter(libs)))} and torch.__file__.rsplit("/", 1)[0] in next(iter(libs))


def test_unlearn_updates_the_module_in_place(model, mnist):
    x, y, _, _ = mnist
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = [p for p in model.parameters()]
    r = amun.unlearn(model, (x, y), list(range(0, 50)), calibrate=False, epochs=1, seed=0)
    assert [p for p in model.parameters()] == params  # the same Parameter objects
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert "fc.weight" in changed and "bn.running_mean" in changed
    assert r.method == "amun" and r.image_steps > 0 and r.seconds > 0
    assert r.sizes["forget"] == 50 and r.sizes["retain"] == 950
    assert r.chosen is None and r.calibration is None
    assert json.dumps(r.to_dict())  # plain values


def test_calibrated_unlearning_records_its_choice(model, mnist):
    x, y, hx, hy = mnist
    r = amun.unlearn(
        model, (x, y), torch.arange(100, 130), heldout=(hx, hy), epochs=2, method="ft",
        calibrate={"max_epochs": 3},
    )
    assert r.chosen and r.why and r.calibration["epochs_run"] <= 3
    assert r.sizes["held-out"] == 200


class _Then(torch.nn.Module):
    """A SmallCNN whose logits go through ``then``: a classifier amun cannot take."""

    def __init__(self, then):
        super().__init__()
        self.net, self.then = SmallCNN(), then

    def forward(self, x):
        return self.then(self.net(x))


def _bad_cases(x, y, hx, hy):
    f = x.float() / 255
    return [
        ("data images", TypeError, dict(data=(x.int(), y))),
        ("data images", ValueError, dict(data=(f * 2, y))),
        ("data images", ValueError, dict(data=(f + 0.001, y))),
        ("data images", ValueError, dict(data=(x.reshape(-1), y))),
        ("data labels", ValueError, dict(data=(x, y[:-1]))),
        ("data labels", ValueError, dict(data=(x, y + 1))),
        ("data labels", TypeError, dict(data=(x, y.float()))),
        ("heldout labels", ValueError, dict(heldout=(hx, hy - 1))),
        ("forget", ValueError, dict(forget=[1, 2, len(y)])),
        ("forget", ValueError, dict(forget=[1, 2, 1])),
        ("forget", ValueError, dict(forget=[])),
        ("forget", TypeError, dict(forget=[0.5])),
        ("heldout", ValueError, dict(heldout=None)),
        ("method", ValueError, dict(method="nope")),
        ("model", TypeError, dict(model=3)),
        ("model", FileNotFoundError, dict(model="/nonexistent/m.pt2")),
        ("heldout images", ValueError, dict(heldout=(hx[:, :, :20, :20], hy))),
        ("model", ValueError, dict(model=_Then(lambda o: (o, o)))),
        ("model", ValueError, dict(model=_Then(lambda o: o[:, 0]))),
        ("normalize", TypeError, dict(normalize=(0.1, 0.2, 0.3))),
        ("model", ValueError, dict(model=torch.nn.Flatten())),
        ("device", ValueError, dict(device="tpu")),
        ("device", ValueError, dict(device="cuda:7")),
    ]


@pytest.mark.parametrize("case", range(23))
def test_bad_input_is_a_python_exception_naming_the_argument(model, mnist, case):
    x, y, hx, hy = mnist
    what, kind, kw = _bad_cases(x, y, hx, hy)[case]
    args = dict(model=model, data=(x, y), forget=[1, 2], heldout=(hx, hy))
    args.update(kw)
    weights = copy.deepcopy(model.state_dict())
    start = time.perf_counter()
    with pytest.raises(amun.AmunError) as e:
        amun.unlearn(args.pop("model"), args.pop("data"), args.pop("forget"), **args)
    assert isinstance(e.value, kind) and str(e.value).startswith(what), str(e.value)
    assert time.perf_counter() - start < 10
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


def test_a_model_torch_export_refuses_gets_the_exporters_reason_and_amuns_needs(mnist):
    x, y, _, _ = mnist
    # Data-dependent control flow: runs in PyTorch, torch.export refuses it.
    model = _Then(lambda o: o if o.sum() > 0 else -o)
    with pytest.raises(amun.AmunValueError) as e:
        amun.unlearn(model, (x, y), [1, 2], calibrate=False)
    msg = str(e.value)
    assert msg.startswith("model: torch.export could not export it") and "amun needs" in msg, msg
    with pytest.raises(Exception) as exporter:
        torch.export.export(model.eval(), (x[:2].float() / 255,),
                            dynamic_shapes=({0: torch.export.Dim("batch")},))
    assert str(exporter.value).splitlines()[0] in msg, msg


def test_the_audits_test_split_is_checked_as_the_data(model, mnist):
    x, y, hx, hy = mnist
    for what, test in [("test images", (hx[:, :, :20, :20], hy)), ("test labels", (hx, hy + 1))]:
        with pytest.raises(amun.AmunValueError, match=f"^{what}: "):
            amun.audit(model, (x, y), [1, 2], test=test)


def test_a_library_refusal_keeps_amuns_message(model, mnist):
    x, y, _, _ = mnist
    with pytest.raises(amun.AmunError, match="unknown"):
        amun.unlearn(model, (x, y), [1], calibrate=False, no_such_setting=1)


def test_another_torch_is_refused_naming_the_one_needed(monkeypatch):
    monkeypatch.setattr(torch, "__version__", "2.10.0+cpu")
    with pytest.raises(ImportError, match=r"torch==2\.11"):
        amun._check_torch()


@pytest.mark.parametrize("calibrated", [False, True])
def test_python_and_cli_give_bit_identical_weights(model, mnist, amun_bin, tmp_path, calibrated):
    """The same request (seed, data, threads) as `amun unlearn` on the
    exported .pt2 and the data as an IDX folder: the same weights, bit for
    bit. The CLI's test split is 100 other images + the held-out ones, which
    `--holdout-test` takes as held-out, as `heldout=` gives them here."""
    x, y, hx, hy = mnist
    # 300 samples: enough that calibration walks its ladder (a few it keeps
    # the original for, which would make the comparison empty)
    forget = list(range(0, 300)) if calibrated else list(range(3, 60, 3))
    data = tmp_path / "data"
    data.mkdir()
    _write_idx(data, "train", x, y)
    extra = x[-100:]
    _write_idx(data, "t10k", torch.cat([extra, hx]), torch.cat([y[-100:], hy]))
    (tmp_path / "forget.txt").write_text("\n".join(map(str, forget)) + "\n")
    program = tmp_path / "model.pt2"
    ep = torch.export.export(
        model, (x[:2].float() / 255,), dynamic_shapes=({0: torch.export.Dim("batch")},)
    )
    torch.export.save(ep, str(program))
    out = tmp_path / "cli.safetensors"
    original = copy.deepcopy(model.state_dict())
    flags = ["--epochs", 2, "--seed", 7, "--device", "cpu", "--quiet"]
    if calibrated:
        flags += ["--calibrate", "--holdout-test", len(hy), "--calibrate-max-epochs", 3]
    cli_s = _cli(amun_bin, "unlearn", "--checkpoint", program, "--dataset", data,
                 "--forget", tmp_path / "forget.txt", "--out", out, *flags)
    start = time.perf_counter()
    amun.unlearn(
        model, (x, y), forget, heldout=(hx, hy) if calibrated else None, epochs=2, seed=7,
        device="cpu", calibrate={"max_epochs": 3} if calibrated else False,
    )
    py_s = time.perf_counter() - start
    print(f"calibrated={calibrated}: python {py_s:.2f}s, cli {cli_s:.2f}s")
    cli = load_file(str(out))
    mine = model.state_dict()
    assert sorted(cli) == sorted(mine)
    assert not torch.equal(cli["fc.weight"], original["fc.weight"])
    differ = [k for k in cli if not torch.equal(cli[k], mine[k])]
    assert not differ, {k: (cli[k] - mine[k]).abs().max().item() for k in differ}


def test_audit_gives_the_accuracies_pytorch_measures(model, mnist):
    x, y, hx, hy = mnist
    forget = list(range(0, 100))
    a = amun.audit(model, (x, y), forget, test=(hx, hy))
    with torch.no_grad():
        right = lambda xs, ys: 100.0 * (model(xs.float() / 255).argmax(1) == ys).sum().item() / len(ys)
        keep = torch.ones(len(y), dtype=torch.bool)
        keep[forget] = False
        want = {"forget": right(x[:100], y[:100]), "retain": right(x[keep], y[keep]), "test": right(hx, hy)}
    assert a.samples == {"forget": 100, "retain": 900, "test": 200}
    assert a.accuracy == pytest.approx(want, abs=1e-9)
    assert len(a.per_class["test"]) == 10 and json.dumps(a.to_dict())


def test_a_torchvision_resnet18_matches_the_cli(cifar_dir, amun_bin, tmp_path):
    """torchvision's ResNet-18 (BatchNorm, residuals, adaptive pooling) on
    300 CIFAR-10 images: Python and the CLI give the same weights."""
    torchvision = pytest.importorskip("torchvision")
    raw = torch.frombuffer(bytearray((cifar_dir / "data_batch_1.bin").read_bytes()), dtype=torch.uint8)
    raw = raw.reshape(-1, 3073)[:400]
    x, y = raw[:, 1:].reshape(-1, 3, 32, 32).contiguous(), raw[:, 0].long()
    (x, y), (tx, ty) = (x[:300], y[:300]), (x[300:], y[300:])
    forget = list(range(0, 300, 30))
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    program = tmp_path / "model.pt2"
    ep = torch.export.export(
        model, (x[:2].float() / 255,), dynamic_shapes=({0: torch.export.Dim("batch")},)
    )
    torch.export.save(ep, str(program))
    data = tmp_path / "data"
    data.mkdir()
    _write_cifar(data, cifar_dir / "batches.meta.txt", x, y, tx, ty)
    (tmp_path / "forget.txt").write_text("\n".join(map(str, forget)) + "\n")
    out = tmp_path / "cli.safetensors"
    _cli(amun_bin, "unlearn", "--checkpoint", program, "--dataset", data, "--forget",
         tmp_path / "forget.txt", "--epochs", 1, "--seed", 0, "--device", "cpu", "--out", out,
         "--quiet")
    before = model.fc.weight.clone()
    amun.unlearn(model, (x, y), forget, calibrate=False, epochs=1, seed=0, device="cpu")
    assert not torch.equal(before, model.fc.weight)
    cli, mine = load_file(str(out)), model.state_dict()
    assert sorted(cli) == sorted(mine) and len(cli) == 122
    assert all(torch.equal(cli[k], mine[k]) for k in cli)


def test_a_pt2_path_gives_the_modules_weights_in_the_record(model, mnist, tmp_path):
    """A .pt2 path is not modified; its new weights come back in the record,
    the same as unlearning the module it was exported from."""
    x, y, _, _ = mnist
    program = tmp_path / "model.pt2"
    ep = torch.export.export(
        model, (x[:2].float() / 255,), dynamic_shapes=({0: torch.export.Dim("batch")},)
    )
    torch.export.save(ep, str(program))
    size, original = program.stat().st_size, model.fc.weight.detach().clone()
    r = amun.unlearn(program, (x, y), [5, 6, 7], calibrate=False, epochs=1, seed=3)
    amun.unlearn(model, (x, y), [5, 6, 7], calibrate=False, epochs=1, seed=3)
    assert program.stat().st_size == size
    mine = model.state_dict()
    assert sorted(r.state_dict) == sorted(mine)
    assert all(torch.equal(r.state_dict[k], mine[k]) for k in mine)
    assert not torch.equal(r.state_dict["fc.weight"], original)


def test_progress_reaches_the_callback_and_its_error_stops_the_run(model, mnist):
    x, y, _, _ = mnist
    events = []
    amun.unlearn(model, (x, y), [1, 2, 3], method="ft", calibrate=False, epochs=2,
                 progress=lambda *e: events.append(e))
    starts = [e for e in events if e[0] == "start"]
    assert len(starts) >= 2 and all(t > 0 for (_, _, _, t) in starts)
    assert any(e[0] == "update" and e[2] == e[3] for e in events)
    assert any(e[0] == "finish" and "epoch 2" in e[1] for e in events)
    weights = copy.deepcopy(model.state_dict())

    def fail(event, *_):
        if event == "update":
            raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        amun.unlearn(model, (x, y), [1, 2, 3], method="ft", calibrate=False, progress=fail)
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


def test_ctrl_c_stops_unlearning_cleanly(model, mnist):
    """A real SIGINT during the epochs: KeyboardInterrupt, the module
    untouched, and the next call runs. The signal is sent from inside the
    run (at its first progress update), not from a thread racing it: on a
    loaded machine a thread could be scheduled after a short run ended."""
    import os
    import signal

    # A process started in the background by a non-interactive shell (CI,
    # nohup) inherits SIGINT ignored, and Python then installs no handler:
    # give it the one a terminal user has.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    x, y, _, _ = mnist
    weights = copy.deepcopy(model.state_dict())
    sent = []

    def on_event(event, *_):
        if event == "update" and not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGINT)

    t0 = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt):
            amun.unlearn(model, (x, y), [1, 2, 3], method="ft", calibrate=False, epochs=200,
                         progress=on_event)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert sent
    assert time.perf_counter() - t0 < 20
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    r = amun.unlearn(model, (x, y), [1, 2, 3], method="ft", calibrate=False, epochs=1,
                     progress=False)
    assert r.image_steps > 0
