"""amun.audit against `amun audit --json` on the same inputs: RMIA with
reference models, MIS and the Avg. Gap against a retrain, equal; and the
checks the CLI makes, as Python exceptions."""

import json
import subprocess
from types import SimpleNamespace

import pytest
import torch

import amun
from conftest import _cli


@pytest.fixture(scope="module")
def setup(trained, mnist, idx_data, amun_bin, tmp_path_factory):
    """The MNIST slice as an IDX folder (1000 training images; 300 test),
    a forget set, the trained model exported, two reference models and a
    retrain without the forget set, both trained by the CLI (1 epoch)."""
    x, y, hx, hy = mnist
    d, data = tmp_path_factory.mktemp("audit"), idx_data
    tx, ty = torch.cat([x[-100:], hx]), torch.cat([y[-100:], hy])
    forget = list(range(0, 200, 2))
    (d / "forget.txt").write_text("\n".join(map(str, forget)) + "\n")
    program = d / "model.pt2"
    ep = torch.export.export(
        trained, (x[:2].float() / 255,), dynamic_shapes=({0: torch.export.Dim("batch")},)
    )
    torch.export.save(ep, str(program))
    recipe = ["--epochs", 1, "--batch-size", 64, "--device", "cpu", "-q"]
    _cli(amun_bin, "rmia", "train-refs", "--dataset", data, "--count", 2, "--out", d / "refs", *recipe)
    _cli(amun_bin, "train", "--dataset", data, "--exclude", d / "forget.txt", "--out",
         d / "rt.safetensors", *recipe)
    return SimpleNamespace(d=d, data=data, program=program, forget=forget, test=(tx, ty))


def _cli_audit(amun_bin, s, *extra):
    p = subprocess.run(
        [str(amun_bin), "audit", "--checkpoint", str(s.program), "--dataset", str(s.data),
         "--forget", str(s.d / "forget.txt"), "--refs", str(s.d / "refs"), "--device", "cpu",
         "--json", *map(str, extra)],
        capture_output=True, text=True,
    )
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_audit_gives_the_clis_numbers_with_a_retrain(setup, amun_bin):
    s = setup
    cli = _cli_audit(amun_bin, s, "--retrain", s.d / "rt.safetensors")
    r = amun.audit(s.program, s.data, s.d / "forget.txt", refs=s.d / "refs",
                   retrain=s.d / "rt.safetensors")
    want = cli["models"][1]  # the retrain comes first
    assert r.details == want["audit"]
    assert r.avg_gap == want["avg_gap"] and r.avg_gap is not None
    assert r.rmia == cli["rmia"] and r.holdout_test == cli["holdout_test"] == 0
    scores = want["audit"]["scores"]
    assert r.rmia_auc == scores["mia"] and r.mis == want["audit"]["mis"]
    assert r.accuracy == {"forget": scores["unlearn"], "retain": scores["retain"],
                          "test": scores["test"]}
    assert json.dumps(r.to_dict())


def test_audit_of_a_module_on_tensors_gives_the_clis_rmia(setup, model, mnist, amun_bin):
    """The module and tensors (not files): the same pool, so the CLI's
    reference models apply, and the same numbers."""
    s = setup
    x, y, _, _ = mnist
    cli = _cli_audit(amun_bin, s, "--signal", "softmax", "--online", "--seed", 5)
    r = amun.audit(model, (x, y), s.forget, test=s.test, refs=s.d / "refs", signal="softmax",
                   online=True, seed=5)
    assert r.details == cli["models"][0]["audit"] and r.avg_gap is None
    assert r.samples == {"forget": 100, "retain": 900, "test": 300}


def test_audit_refuses_what_the_cli_refuses(setup, model, mnist):
    s = setup
    x, y, _, _ = mnist
    files = dict(model=s.program, data=s.data, forget=s.d / "forget.txt", refs=s.d / "refs")
    cases = [
        # A model without a sidecar names no forget set it was trained without.
        ("retrain", ValueError, dict(retrain=s.program)),
        ("retrain", ValueError, dict(refs=None, retrain=s.d / "rt.safetensors")),
        ("refs", FileNotFoundError, dict(refs=s.d / "nope")),
        ("signal", ValueError, dict(signal="nope")),
        ("a", ValueError, dict(a=2.0)),
        ("holdout", ValueError, dict(holdout_test=300)),
        ("test", ValueError, dict(test=s.test)),
        ("model", ValueError, dict(model=model)),
    ]
    for what, kind, kw in cases:
        args = {**files, **kw}
        with pytest.raises(amun.AmunError) as e:
            amun.audit(args.pop("model"), args.pop("data"), args.pop("forget"), **args)
        assert isinstance(e.value, kind) and str(e.value).startswith(what), (what, str(e.value))
    # A retrain of a dataset amun reads, with tensors: its data named.
    with pytest.raises(amun.AmunValueError, match="^data: .*rt.safetensors was trained on /.*, a dataset amun reads itself"):
        amun.audit(model, (x, y), s.forget, test=s.test, refs=s.d / "refs",
                   retrain=s.d / "rt.safetensors")
    # A retrain of another forget set: the library's check and message.
    with pytest.raises(amun.AmunError, match="another forget set"):
        amun.audit(s.program, s.data, list(range(1, 200, 2)), refs=s.d / "refs",
                   retrain=s.d / "rt.safetensors")


def test_audit_reports_its_passes_and_ctrl_c_stops_it(setup, model, mnist):
    """Each pass over the data is a phase of batches on the progress
    callback, and a SIGINT sent at the first batch stops the audit there
    (KeyboardInterrupt) instead of when the whole audit returns; the next
    audit gives the same numbers as an uninterrupted one."""
    import os
    import signal

    s = setup
    x, y, _, _ = mnist
    events = []
    args = dict(test=s.test, refs=s.d / "refs")
    first = amun.audit(model, (x, y), s.forget, progress=lambda *e: events.append(e), **args)
    phases = [e[1] for e in events if e[0] == "start"]
    assert phases == ["forget", "retain", "test", "audit"]
    assert all(t > 0 for (ev, _, _, t) in events if ev == "start")
    assert [e[2] for e in events if e[0] == "update"][:2] == [1, 1]

    # As in test_unlearn: a background shell leaves SIGINT ignored.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    seen = []

    def on_event(event, *_):
        seen.append(event)
        if event == "update" and seen.count("update") == 1:
            os.kill(os.getpid(), signal.SIGINT)

    try:
        with pytest.raises(KeyboardInterrupt):
            amun.audit(model, (x, y), s.forget, progress=on_event, **args)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert seen.count("start") == 1 and "finish" not in seen
    again = amun.audit(model, (x, y), s.forget, progress=False, **args)
    assert again.details == first.details
