"""amun.train on MNIST and a small CNN: the exact retrain and reference
models, bit-identical to `amun train` / `amun rmia train-refs` on the
exported program, and what the audit does with them."""

import hashlib
import json

import pytest
import torch
from safetensors.torch import load_file

import amun
from conftest import SmallCNN, _cli, _write_idx


@pytest.fixture(scope="module")
def small(mnist, tmp_path_factory):
    """300 training and 100 test images of the MNIST slice, as tensors and
    as an IDX folder amun reads."""
    x, y, hx, hy = mnist
    train, test = (x[:300], y[:300]), (hx[:100], hy[:100])
    folder = tmp_path_factory.mktemp("small-idx")
    _write_idx(folder, "train", *train)
    _write_idx(folder, "t10k", *test)
    return train, test, folder


def _fresh():
    torch.manual_seed(1)
    return SmallCNN()


def _export(model, x, path):
    amun._export(model, x[:2].float() / 255, path)


def _same(cli, mine):
    assert sorted(cli) == sorted(mine)
    differ = [k for k in cli if not torch.equal(cli[k], mine[k])]
    assert not differ, {k: (cli[k] - mine[k]).abs().max().item() for k in differ}


@pytest.mark.parametrize("init", ["module", "seed"])
def test_a_retrain_is_bit_identical_to_amun_train(small, amun_bin, tmp_path, init):
    """The module's own weights (`--init model.pt2`) or PyTorch's default
    init from the seed (no --init): the CLI's weights, bit for bit."""
    (x, y), test, idx_data = small
    model = _fresh()
    program = tmp_path / "model.pt2"
    _export(model, x, program)
    exclude = list(range(0, 300, 7))
    (tmp_path / "forget.txt").write_text("\n".join(map(str, exclude)) + "\n")
    out = tmp_path / "cli.safetensors"
    init_flag = ["--init", program] if init == "module" else []
    _cli(amun_bin, "train", "--model", program, *init_flag, "--dataset", idx_data, "--exclude",
         tmp_path / "forget.txt", "--epochs", 1, "--seed", 5, "--device", "cpu", "--out", out,
         "--quiet")
    before = model.fc.weight.detach().clone()
    r = amun.train(model, (x, y), exclude=exclude, test=test, init=init, epochs=1, seed=5,
                   device="cpu", progress=False)
    assert not torch.equal(before, model.fc.weight)
    _same(load_file(str(out)), model.state_dict())
    assert r.sidecar["origin"]["subset"]["size"] == len(exclude)
    assert 0 <= r.metrics["test_acc"] <= 100 and 0 <= r.metrics["train_acc"] <= 100


def test_reference_models_match_the_cli_and_feed_the_audit(small, trained, amun_bin, tmp_path):
    """`refs=2` trains the pair `amun rmia train-refs --count 2` trains (the
    same weights) and the audit's RMIA takes the folder; the module is
    left as it was."""
    (x, y), test, idx_data = small
    model = _fresh()
    program = tmp_path / "model.pt2"
    _export(model, x, program)
    _cli(amun_bin, "rmia", "train-refs", "--model", program, "--init", program, "--dataset",
         idx_data, "--count", 2, "--epochs", 1, "--seed", 3, "--device", "cpu", "--out",
         tmp_path / "cli-refs", "--quiet")
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    r = amun.train(model, (x, y), test=test, refs=2, out=tmp_path / "refs", epochs=1, seed=3,
                   device="cpu", progress=False)
    assert r.refs["refs"] == 2 and r.refs["pool"] == 400
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    for k in range(2):
        name = f"ref-{k:03}.safetensors"
        _same(load_file(str(tmp_path / "cli-refs" / name)), load_file(str(tmp_path / "refs" / name)))
    a = amun.audit(trained, (x, y), list(range(50)), test=test, refs=tmp_path / "refs")
    assert a.rmia_auc is not None and 0 <= a.rmia_auc <= 100


def test_a_retrain_of_data_amun_reads_gives_the_audit_its_avg_gap(small, tmp_path):
    """Data and forget set as paths: the retrain's sidecar names them, so
    `audit(retrain=...)` checks it as `amun audit --retrain` does."""
    (x, _), _, idx_data = small
    program = tmp_path / "model.pt2"
    _export(_fresh(), x, program)
    forget = tmp_path / "forget.txt"
    forget.write_text("\n".join(map(str, range(0, 300, 10))) + "\n")
    other = tmp_path / "other.txt"
    other.write_text("\n".join(map(str, range(0, 300, 20))) + "\n")
    common = dict(epochs=1, seed=2, device="cpu", progress=False)
    retrain = tmp_path / "retrain.safetensors"
    r = amun.train(program, str(idx_data), exclude=forget, out=retrain, **common)
    assert retrain.is_file() and r.out == str(retrain) and "fc.weight" in r.state_dict
    amun.train(program, str(idx_data), refs=2, out=tmp_path / "refs", **common)
    # The retrain audited against itself: no gap.
    a = amun.audit(retrain, str(idx_data), forget, refs=tmp_path / "refs", retrain=retrain)
    assert a.avg_gap == 0 and a.rmia_auc is not None
    with pytest.raises(amun.AmunError, match="retrain"):
        amun.audit(retrain, str(idx_data), other, refs=tmp_path / "refs",
                   retrain=retrain)


def test_a_model_trained_on_tensors_records_their_dtype_shape_and_sha256(small, tmp_path):
    """The sidecar of a model trained on tensors names them by what they
    hold (not "python"): whoever holds the data can tie the model to it.
    Float images in [0,1] are recorded as the uint8 images amun holds."""
    (x, y), test, _ = small
    program = tmp_path / "model.pt2"
    _export(_fresh(), x, program)
    sha = lambda t: hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()
    want = {
        "images": {"dtype": "uint8", "shape": [300, 1, 28, 28], "sha256": sha(x)},
        "labels": {"dtype": "int64", "shape": [300], "sha256": sha(y)},
    }
    name = (f"tensors(images uint8[300,1,28,28] sha256:{sha(x)}, "
            f"labels int64[300] sha256:{sha(y)})")
    common = dict(test=test, epochs=1, seed=4, device="cpu", progress=False)
    out = tmp_path / "m.safetensors"
    r = amun.train(program, (x, y), out=out, **common)
    assert r.data == want and r.sidecar["data"]["dataset"] == name
    assert json.loads(out.with_suffix(".json").read_text())["data"]["dataset"] == name
    assert amun.train(program, (x.float() / 255, y), **common).data == want


def test_a_checkpoint_trained_on_tensors_refuses_other_tensors(small, mnist, tmp_path):
    """A checkpoint, a retrain and reference models trained on tensors: the
    audit (with its Avg. Gap) and unlearning take those tensors; labels
    swapped or one image replaced are refused before any work, naming the
    argument and both digests. Another test split is a legitimate audit."""
    (x, y), test, _ = small
    (x, y), test = (x[:150], y[:150]), (test[0][:50], test[1][:50])  # seconds, not tens
    program = tmp_path / "model.pt2"
    _export(_fresh(), x, program)
    forget = list(range(0, 150, 10))
    common = dict(test=test, epochs=1, seed=6, device="cpu", progress=False)
    m, rt, refs = tmp_path / "m.safetensors", tmp_path / "rt.safetensors", tmp_path / "refs"
    amun.train(program, (x, y), out=m, **common)
    amun.train(program, (x, y), exclude=forget, out=rt, **common)
    amun.train(program, (x, y), refs=2, out=refs, **common)
    a = amun.audit(m, (x, y), forget, test=test, refs=refs, retrain=rt)
    assert a.avg_gap is not None and a.samples["forget"] == len(forget)
    r = amun.unlearn(m, (x, y), forget, method="ft", calibrate=False, epochs=1, progress=False)
    assert "fc.weight" in r.state_dict and r.sizes["forget"] == len(forget)
    with pytest.warns(UserWarning, match="test split"):
        amun.audit(m, (x, y), forget, test=(mnist[2][100:], mnist[3][100:]))
    with pytest.raises(amun.AmunValueError, match=r"^model: .* is a checkpoint"):
        amun.train(m, (x, y), progress=False)  # trained weights: train their .pt2

    sha = lambda t: hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()
    swapped, replaced = y.clone(), x.clone()
    j = next(k for k in range(len(y)) if y[k] != y[0])
    swapped[[0, j]] = y[[j, 0]]
    replaced[5] = x[6]
    for what, data, digests in [("labels", (x, swapped), (sha(y), sha(swapped))),
                                ("images", (replaced, y), (sha(x), sha(replaced)))]:
        calls = [
            lambda: amun.audit(m, data, forget, test=test),
            lambda: amun.audit(program, data, forget, test=test, refs=refs, retrain=rt),
            lambda: amun.unlearn(m, data, forget, method="ft", calibrate=False, progress=False),
        ]
        for call in calls:
            with pytest.raises(amun.AmunValueError) as e:
                call()
            msg = str(e.value)
            assert msg.startswith(f"data: the {what} differ") and all(d in msg for d in digests), msg


def _bad_train_cases(x, y, tmp_path):
    return [
        ("exclude", ValueError, dict(exclude=[1, 1])),
        ("exclude", ValueError, dict(exclude=[len(y)])),
        ("refs", ValueError, dict(refs=3, out=tmp_path / "r", test=(x, y))),
        ("out", ValueError, dict(refs=2, test=(x, y))),
        ("test", ValueError, dict(refs=2, out=tmp_path / "r")),
        ("init", ValueError, dict(init="zeros")),
        ("momentun", ValueError, dict(momentun=0.9)),
        ("augment", ValueError, dict(augment="yes")),
        ("epochs", ValueError, dict(epochs=0)),
        ("exclude", FileNotFoundError, dict(exclude=tmp_path / "none.txt")),
        ("out", ValueError, dict(out=tmp_path / "m.safetensors")),
    ]


@pytest.mark.parametrize("case", range(11))
def test_bad_train_input_names_the_argument(mnist, tmp_path, case):
    x, y, _, _ = mnist
    what, kind, kw = _bad_train_cases(x, y, tmp_path)[case]
    model = _fresh()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(amun.AmunError) as e:
        amun.train(model, (x, y), progress=False, **kw)
    assert isinstance(e.value, kind) and str(e.value).startswith(what), str(e.value)
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
