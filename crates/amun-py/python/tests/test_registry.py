"""amun.Registry on the MNIST slice: create, add, apply, certificate and
verify through the library's registry code, checked by the CLI on the same
folder, and its refusals as Python exceptions with the CLI's messages."""

import json
import subprocess

import pytest
import torch

import amun
from conftest import _cli


def _amun(amun_bin, *args):
    return subprocess.run([str(amun_bin), *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def original(idx_data, amun_bin, tmp_path_factory):
    """A model the CLI trained on the whole training split (1 epoch)."""
    out = tmp_path_factory.mktemp("registry") / "orig.safetensors"
    _cli(amun_bin, "train", "--dataset", idx_data, "--epochs", 1, "--batch-size", 64,
         "--device", "cpu", "-q", "--out", out)
    return out


def test_a_request_goes_through_create_add_apply_certificate_verify(original, amun_bin, tmp_path):
    reg = amun.Registry.create(tmp_path / "reg", original, holdout_test=50, seed=3)
    assert reg.info["version"]["id"] == 1
    (tmp_path / "req.txt").write_text("\n".join(map(str, range(0, 60, 3))) + "\n")
    added = reg.add(tmp_path / "req.txt", reference="ticket 7")
    assert len(added) == 1 and added[0]["status"] == "pending"
    events = []
    done = reg.apply(method="ft", calibrate=False, epochs=1, device="cpu",
                     progress=lambda *e: events.append(e[0]))
    assert done["new_version"] and done["unlearned"] == [added[0]["id"]]
    assert "start" in events and "finish" in events
    assert reg.apply(device="cpu") is None  # nothing pending
    # The records are objects, not JSON text inside the JSON, as in `list --json`.
    info = reg.info
    assert isinstance(info["registry"]["data"], dict) and info["registry"]["data"]["dataset"]
    head = info["version"]
    assert head["audit"]["heldout"]["test_images"] > 0 and isinstance(head["settings"], dict)
    assert done["version"] == head
    cli = _amun(amun_bin, "registry", "list", "--registry", reg.path, "--json")
    assert cli.returncode == 0 and json.loads(cli.stdout)["versions"][-1] == head
    cert = reg.certificate()
    cli = _amun(amun_bin, "registry", "certificate", "--registry", reg.path, "--json")
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout) == {k: v for k, v in cert.items() if k != "files"}
    receipt = added[0]["receipt_file"]
    v = reg.verify(receipts=[receipt])
    assert v["versions"] == 2 and v["requests"] == 1 and not v["findings"]
    cli = _amun(amun_bin, "registry", "verify", "--registry", reg.path, "--receipt", receipt,
                "--json")
    assert cli.returncode == 0 and json.loads(cli.stdout) == v
    # An edited version file: verify names it, with the CLI's message.
    weights = next((reg.path / "versions").glob("*2*.safetensors"))
    weights.write_bytes(weights.read_bytes() + b"\0")
    with pytest.raises(amun.AmunError) as e:
        reg.verify()
    cli = _amun(amun_bin, "registry", "verify", "--registry", reg.path)
    assert cli.returncode != 0 and str(e.value) in cli.stderr
    assert e.value.verification["findings"]


def test_registry_refusals_carry_the_clis_messages(original, amun_bin, tmp_path):
    with pytest.raises(amun.AmunFileNotFoundError):
        amun.Registry(tmp_path / "nope")
    reg = amun.Registry.create(tmp_path / "reg", original)
    with pytest.raises(amun.AmunError):
        amun.Registry.create(tmp_path / "reg", original)  # exists already
    bad = tmp_path / "bad.txt"
    bad.write_text("5\n100000\n")
    cases = [
        (lambda: reg.add(bad), ["registry", "add", "--registry", reg.path, bad]),
        (lambda: reg.apply(method="retrain"),
         ["registry", "apply", "--registry", reg.path, "--method", "retrain"]),
        (lambda: reg.apply(method="nope"),
         ["registry", "apply", "--registry", reg.path, "--method", "nope"]),
    ]
    for call, args in cases:
        with pytest.raises(amun.AmunError) as e:
            call()
        cli = _amun(amun_bin, *args)
        assert cli.returncode != 0 and str(e.value) in cli.stderr, (str(e.value), cli.stderr)
    with pytest.raises(ValueError, match="^method: retrain"):
        reg.apply(method="retrain")
    assert reg.verify()["requests"] == 0


def test_a_registry_of_a_model_amun_train_wrote_from_a_pt2(idx_data, trained, mnist, tmp_path):
    """amun.train(model.pt2, ...) records the .pt2 as the program and as its
    first weights: registry create stored it twice and failed ("UNIQUE
    constraint failed: graphs.name"). A receipt given as one path is one
    receipt, not its characters; a reference that is no str is named; a
    missing checkpoint is a FileNotFoundError, one trained on tensors (no
    data a registry can read) is named so; an apply inside
    torch.no_grad() trains (it stopped on an internal error)."""
    program = tmp_path / "model.pt2"
    amun._export(trained, mnist[0][:2].float() / 255, program)
    ck = tmp_path / "m.safetensors"
    amun.train(program, idx_data, out=ck, epochs=1, batch_size=64, device="cpu", progress=False)
    reg = amun.Registry.create(tmp_path / "reg", ck, holdout_test=50, progress=False)
    (tmp_path / "req.txt").write_text("1\n2\n3\n")
    receipt = reg.add(tmp_path / "req.txt", reference="ticket 9")[0]["receipt_file"]
    v = reg.verify(receipts=receipt)
    assert v["versions"] == 1 and v["requests"] == 1 and not v["findings"]
    with pytest.raises(amun.AmunTypeError, match="^reference: expected a str"):
        reg.add(tmp_path / "req.txt", reference=5)
    with pytest.raises(amun.AmunFileNotFoundError, match="^checkpoint: .*nope.safetensors: no such"):
        amun.Registry.create(tmp_path / "reg2", tmp_path / "nope.safetensors")
    x, y = mnist[0], mnist[1]
    amun.train(program, (x, y), out=tmp_path / "t.safetensors", epochs=1, progress=False)
    with pytest.raises(amun.AmunValueError, match="^checkpoint: .* was trained on tensors from Python"):
        amun.Registry.create(tmp_path / "reg3", tmp_path / "t.safetensors")
    with torch.no_grad():
        done = reg.apply(method="ft", calibrate=False, epochs=1, device="cpu", progress=False)
    assert done["new_version"]


def test_registry_add_reads_mnist_from_the_data_dir_it_is_given(amun_bin, tmp_path):
    """A class forget set on an MNIST registry is checked against the data
    in ``data_dir`` (as ``amun registry add --data-dir``; hostile17 P13)."""
    model = tmp_path / "m.safetensors"
    _cli(amun_bin, "train", "--dataset", "mnist", "--train-limit", 200, "--test-limit", 100,
         "--epochs", 1, "--device", "cpu", "-q", "--out", model)
    _cli(amun_bin, "split", "--dataset", "mnist", "--train-limit", 200, "--test-limit", 100,
         "--class", 3, "--out", tmp_path / "c3.json")
    reg = amun.Registry.create(tmp_path / "reg", model)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(amun.AmunError, match="missing"):
        reg.add(tmp_path / "c3.json", data_dir=empty)
    assert reg.verify()["requests"] == 0
    added = reg.add(tmp_path / "c3.json")
    assert len(added) == 1 and added[0]["status"] == "pending"
