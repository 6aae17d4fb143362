"""amun.unlearn on MNIST and a small CNN: in place, its record, its errors,
and the same weights as `amun unlearn` on the exported program."""

import copy
import json
import subprocess
import time

import numpy as np
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


def _weight_normed():
    """A SmallCNN whose fc is weight-normed: an operator amun does not run."""
    m = SmallCNN()
    torch.nn.utils.parametrizations.weight_norm(m.fc)
    return m


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
        # issue 39, hostile user (py2)
        ("data images: float images hold NaN", ValueError, dict(data=(f.index_fill(0, torch.tensor([3]), float("nan")), y))),
        ("data images: a tensor on the meta device", ValueError, dict(data=(x.to("meta"), y))),
        ("forget: a bool mask needs one entry per training sample (1000), got 999", ValueError,
         dict(forget=torch.ones(999, dtype=torch.bool))),
        ("forget: lists all 1000 training samples", ValueError, dict(forget=range(len(y)))),
        ("forget: /nonexistent/forget.txt: no such file", FileNotFoundError,
         dict(forget="/nonexistent/forget.txt")),
        ("epochs: invalid type: string", ValueError, dict(epochs="2")),
        ("epochs: invalid value: integer `-1`", ValueError, dict(epochs=-1)),
        ("schedule: 'nope'", ValueError, dict(schedule="nope")),
        ("calibrate.max_epochs: invalid type", ValueError, dict(calibrate={"max_epochs": "3"})),
        ("calibrate.nope: unknown field", ValueError, dict(calibrate={"nope": 1})),
        ("lr: expected a finite number, got nan", ValueError, dict(lr=float("nan"))),
        ("attack: expected a number, a string", TypeError, dict(attack=object())),
        ("method: expected a method's name", TypeError, dict(method=None)),
        ("seed: expected an integer", ValueError, dict(seed=True)),
        ("seed: expected an integer", ValueError, dict(seed=2**64)),
        ("model: its parameters are torch.float64", ValueError, dict(model=SmallCNN().double())),
        ("model (as torch.export exported it): the graph uses 1 operator(s) amun does not run",
         amun.AmunError, dict(model=_weight_normed())),
        ("heldout: these are the training images", ValueError, dict(heldout=(x, y))),
    ]


N_BAD = 41


def test_every_bad_case_is_run(mnist):
    assert len(_bad_cases(*mnist)) == N_BAD


@pytest.mark.parametrize("case", range(N_BAD))
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
    cases = [("test images", (hx[:, :, :20, :20], hy)), ("test labels", (hx, hy + 1)),
             ("test", (x, y))]
    for what, test in cases:
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
    # The same request with the data and forget set as the CLI's files.
    r = amun.unlearn(
        program, data, tmp_path / "forget.txt", holdout_test=len(hy) if calibrated else None,
        epochs=2, seed=7, device="cpu", calibrate={"max_epochs": 3} if calibrated else False,
        progress=False,
    )
    differ = [k for k in cli if not torch.equal(cli[k], r.state_dict[k])]
    assert not differ, differ


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


# Issue 39 from a hostile PyTorch user's side (py2): what a careless script
# does around the call must not change, crash or silently alter the result.

def _quick(model, data, forget, **kw):
    """A one-epoch fine-tune on the data: the cheapest run that writes weights."""
    args = dict(method="ft", calibrate=False, epochs=1, seed=0, progress=False)
    amun.unlearn(model, data, forget, **{**args, **kw})
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same_weights(a, b):
    return sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_float16_bfloat16_and_float64_images_are_their_8_bit_images(mnist):
    x = mnist[0]
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        assert torch.equal(amun._images("data images", x.to(dtype) / 255), x), dtype


def test_a_forget_set_as_a_bool_mask_or_a_file_is_the_same_request(trained, mnist, tmp_path):
    x, y = mnist[0][:300], mnist[1][:300]
    forget = list(range(0, 300, 10))
    want = _quick(copy.deepcopy(trained), (x, y), forget)
    mask = torch.zeros(300, dtype=torch.bool)
    mask[forget] = True
    (tmp_path / "forget.txt").write_text("\n".join(map(str, forget)) + "\n")
    for given in (mask, mask.numpy(), tmp_path / "forget.txt", str(tmp_path / "forget.txt")):
        assert _same_weights(_quick(copy.deepcopy(trained), (x, y), given), want), type(given)


def test_no_grad_inference_mode_and_autocast_around_the_call_change_nothing(trained, mnist):
    """amun trains in the caller's thread: a torch.no_grad() or
    inference_mode() around the call crashed the process (segfault), an
    autocast refused the model; now each gives the weights of a plain call."""
    x, y = mnist[0][:300], mnist[1][:300]
    want = _quick(copy.deepcopy(trained), (x, y), [1, 2, 3])
    contexts = [torch.no_grad, torch.inference_mode,
                lambda: torch.autocast("cpu", dtype=torch.bfloat16)]
    for context in contexts:
        model = copy.deepcopy(trained)
        with context():
            amun.unlearn(model, (x, y), [1, 2, 3], method="ft", calibrate=False, epochs=1,
                         seed=0, progress=False)
        assert _same_weights({k: v.clone() for k, v in model.state_dict().items()}, want)
    assert torch.is_grad_enabled()
    model = SmallCNN()
    with torch.no_grad():
        r = amun.train(model, (x, y), epochs=1, progress=False)
    assert r.metrics["train_acc"] > 0


def test_the_callers_random_stream_goes_on_as_if_amun_had_not_run(trained, mnist):
    x, y = mnist[0][:300], mnist[1][:300]
    models = copy.deepcopy(trained), SmallCNN()
    torch.manual_seed(5)
    want = torch.rand(4)
    torch.manual_seed(5)
    _quick(models[0], (x, y), [1, 2, 3])
    amun.train(models[1], (x, y), epochs=1, progress=False)
    assert torch.equal(torch.rand(4), want)


def test_numpy_and_torch_numbers_are_taken_as_settings(trained, mnist):
    x, y = mnist[0][:300], mnist[1][:300]
    want = _quick(copy.deepcopy(trained), (x, y), [1, 2, 3], seed=7, lr=0.02, momentum=0.5)
    got = _quick(copy.deepcopy(trained), (x, y), np.array([1, 2, 3], dtype=np.int32),
                 seed=np.int64(7), lr=np.float64(0.02), momentum=torch.tensor(0.5, dtype=torch.float64),
                 epochs=np.int64(1), device=torch.device("cpu:0"))
    assert _same_weights(got, want)


def test_submodule_modes_and_wrapped_modules(trained, mnist):
    """A BatchNorm the caller froze in eval mode inside a training model
    stays in eval mode (model.train(was) set it training); a model wrapped
    by DataParallel or torch.compile is unlearned through its module (the
    export of the wrapper failed) and written in place."""
    x, y, hx, hy = mnist
    model = copy.deepcopy(trained).train()
    model.bn.eval()
    amun.audit(model, (x, y), [1, 2], test=(hx, hy))
    assert model.training and not model.bn.training
    x, y = x[:300], y[:300]
    want = _quick(copy.deepcopy(trained), (x, y), [1, 2, 3])
    for wrap in (torch.nn.DataParallel, torch.compile):
        inner = copy.deepcopy(trained)
        _quick(wrap(inner), (x, y), [1, 2, 3])
        assert _same_weights({k: v.clone() for k, v in inner.state_dict().items()}, want), wrap


def test_a_module_whose_state_dict_lacks_a_weight_is_refused_before_any_work(model, mnist):
    """A state_dict hook dropping a weight: amun could not write it back,
    and said so after the whole run; now before the first epoch."""
    x, y, _, _ = mnist
    def drop(module, state, prefix, local):
        del state["fc.bias"]

    model._register_state_dict_hook(drop)
    events = []
    with pytest.raises(amun.AmunValueError, match="^model: the exported program has a weight fc.bias"):
        amun.unlearn(model, (x, y), [1, 2, 3], method="ft", calibrate=False, epochs=50,
                     progress=lambda *e: events.append(e))
    assert not [e for e in events if e[0] == "start"], events[:3]


def test_a_datasets_transform_is_said_to_be_ignored(model, mnist):
    x, y, hx, hy = mnist

    class Dataset:
        data, targets = x[:, 0], y.tolist()
        transform = staticmethod(lambda img: img)

    with pytest.warns(UserWarning, match="^data: the dataset's transform is not applied"):
        amun.audit(model, Dataset(), [1, 2], test=(hx, hy))


def test_data_as_a_path_is_checked_before_any_work(model, mnist, idx_data, tmp_path):
    x, y, hx, hy = mnist
    program = tmp_path / "model.pt2"
    amun._export(model, x[:2].float() / 255, program)
    cases = [
        ("model: with data given as a path", dict(model=model)),
        ("heldout: data given as a path brings its own test split", dict(heldout=(hx, hy))),
        ("holdout_test: calibrate with data given as a path", dict(calibrate=True)),
        ("holdout_test: only with data given as a path", dict(data=(x, y), holdout_test=5)),
    ]
    for what, kw in cases:
        args = {**dict(model=program, data=idx_data, calibrate=False), **kw}
        with pytest.raises(amun.AmunValueError, match=f"^{what}"):
            amun.unlearn(args.pop("model"), args.pop("data"), [1, 2], **args)
