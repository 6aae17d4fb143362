"""The files amun.train writes are claimed as the CLI claims them (the
library's `outputs`): a user's file is never overwritten. And what the CLI
warns about a file it reads (an incomplete checkpoint) reaches Python as
an amun.AmunWarning with the CLI's text."""

import hashlib
import json
import re
import subprocess
import warnings

import pytest
import torch
from safetensors.torch import save_file

import amun
from conftest import SmallCNN, _cli


@pytest.fixture(scope="module")
def tiny(mnist, tmp_path_factory):
    """150 training and 50 test images, and the .pt2 of a fresh SmallCNN."""
    x, y, hx, hy = mnist
    torch.manual_seed(1)
    program = tmp_path_factory.mktemp("program") / "model.pt2"
    amun._export(SmallCNN(), x[:2].float() / 255, program)
    return (x[:150], y[:150]), (hx[:50], hy[:50]), program


def _digests(folder):
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _refused(call, folder, match):
    """`call` raises amun's typed error with the CLI's message, before any
    file in `folder` is written or replaced."""
    before = _digests(folder)
    with pytest.raises(amun.AmunValueError, match=match):
        call()
    assert _digests(folder) == before


def test_train_never_overwrites_a_users_file(tiny, tmp_path):
    """hostile14 P10b/P10e/P10g: the sidecar of `out` over a user's JSON,
    `out` over a user's PyTorch weights, reference models into a folder of
    the user's files (`.` among them): refused as `amun train --out` and
    `amun rmia train-refs --out` refuse them."""
    train, test, program = tiny
    common = dict(test=test, epochs=1, seed=3, device="cpu", progress=False)
    (tmp_path / "g.json").write_text("[1, 2, 3]\n")  # a user's deletion list
    save_file({"w": torch.ones(3)}, str(tmp_path / "raw.safetensors"))  # a user's weights
    folder = tmp_path / "U"
    folder.mkdir()
    save_file({"w": torch.ones(3)}, str(folder / "ref-000.safetensors"))
    (folder / "notes.txt").write_text("notes\n")

    g, raw = tmp_path / "g.safetensors", tmp_path / "raw.safetensors"
    _refused(lambda: amun.train(program, train, out=g, **common), tmp_path,
             r"^out .*g\.safetensors: would overwrite .*g\.json \(its sidecar\), a file amun did "
             r"not write .*choose another out$")
    _refused(lambda: amun.train(program, train, out=raw, **common), tmp_path,
             r"^out .*raw\.safetensors: would overwrite .*raw\.safetensors, a file amun did not write")
    for out in (folder, tmp_path):
        _refused(lambda: amun.train(SmallCNN(), train, refs=2, out=out, **common), tmp_path,
                 r"^out .*: would write into .*, a folder that holds files it did not write")


def test_train_replaces_its_own_earlier_checkpoint_and_says_so(tiny, tmp_path):
    """Re-running onto its own output is how a result is refreshed, as with
    `amun train`, which notes what it replaced."""
    train, test, program = tiny
    out = tmp_path / "m.safetensors"
    notes = []
    report = lambda event, text, pos, total: notes.append(text) if event == "note" else None
    for _ in range(2):
        amun.train(program, train, test=test, epochs=1, seed=3, device="cpu", out=out,
                   progress=report)
    replaced = [n for n in notes if n.startswith("note: out ")]
    assert len(replaced) == 1 and "replaces a trained model" in replaced[0], notes


def test_an_incomplete_checkpoint_is_warned_about_as_the_cli_does(tiny, tmp_path):
    """hostile14 PKI2: a training run stopped after its first of three
    epochs leaves a resumable checkpoint; unlearning or auditing it warns
    with the CLI's words (`amun unlearn/audit --checkpoint`)."""
    train, test, program = tiny
    out = tmp_path / "ki.safetensors"
    starts = []

    def stop_at_second_epoch(event, text, pos, total):
        starts.append(event)
        if starts.count("start") == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        amun.train(program, train, test=test, epochs=3, seed=3, device="cpu", out=out,
                   progress=stop_at_second_epoch)
    origin = json.loads(out.with_suffix(".json").read_text())["origin"]
    assert origin["epochs_done"] == 1, origin
    warning = "^" + re.escape(
        f"warning: {out} is incomplete: 1 of 3 epochs were trained (a killed or failed run), so "
        "it is not the model its recipe describes"
    ) + "$"
    forget = [1, 2]
    with pytest.warns(amun.AmunWarning, match=warning) as caught:
        r = amun.unlearn(out, train, forget, method="ft", calibrate=False, epochs=1,
                         progress=False)
    # Without heldout= no test split is measured: no word about another one.
    said = [str(w.message) for w in caught if issubclass(w.category, amun.AmunWarning)]
    assert len(said) == 1 and r.notes == said, said
    with pytest.warns(amun.AmunWarning, match=warning):
        amun.audit(out, train, forget, test=test)


def test_a_forget_set_of_an_older_amun_is_warned_about_as_the_cli_does(
    trained, mnist, idx_data, amun_bin, tmp_path
):
    """hostile14 P32: a folder's forget set that records no content hash
    (an older amun wrote it) is tied to the folder by its path alone; the
    CLI warns of it, and so do amun.audit, amun.unlearn and amun.train
    (exclude=), with its words.
    A sealed set gives no such warning."""
    model, sealed, old = (tmp_path / n for n in ("model.pt2", "f.json", "old.json"))
    amun._export(trained, mnist[0][:2].float() / 255, model)
    _cli(amun_bin, "split", "--dataset", idx_data, "--forget", 10, "--out", sealed)
    legacy = json.loads(sealed.read_text())
    del legacy["train_sha256"]
    old.write_text(json.dumps(legacy))
    cli = subprocess.run([str(amun_bin), "eval", "--checkpoint", str(model), "--dataset",
                          str(idx_data), "--forget", str(old), "--device", "cpu"],
                         capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    said = [line for line in cli.stderr.splitlines() if "records no content hash" in line]
    assert len(said) == 1 and said[0].startswith(f"warning: {old} "), cli.stderr

    def warned(call):
        with pytest.warns(amun.AmunWarning) as caught:
            call()
        return [str(w.message) for w in caught if issubclass(w.category, amun.AmunWarning)]

    assert warned(lambda: amun.audit(model, idx_data, old)) == said
    unlearn = dict(method="ft", calibrate=False, epochs=1, device="cpu", progress=False)
    assert warned(lambda: amun.unlearn(model, idx_data, old, **unlearn)) == said
    # hostile15 P32 (train): the warning comes from the library, so
    # amun.train(exclude=) gives it as `amun train --exclude` does.
    recipe = dict(epochs=1, seed=3, device="cpu", progress=False)
    assert warned(lambda: amun.train(model, idx_data, exclude=old, **recipe)) == said
    with warnings.catch_warnings():
        warnings.simplefilter("error", amun.AmunWarning)
        amun.audit(model, idx_data, sealed)
        amun.train(model, idx_data, exclude=sealed, **recipe)


def test_train_never_writes_into_a_run_folder_or_a_registry(tiny, idx_data, amun_bin, tmp_path):
    """hostile14 P30/P31: `out` inside an experiment's run folder or a
    registry's versions/ is refused as `amun train --out` refuses it (the
    library's `outputs`), before anything is written."""
    train, test, program = tiny
    config = tmp_path / "x.toml"
    config.write_text(
        f'name = "x"\nmodel = "small-cnn"\nseeds = [0]\ndevice = "cpu"\n'
        f'[data]\ndataset = "{idx_data}"\n[train]\nepochs = 1\n'
        "[forget]\nfractions = [0.1]\n[rmia]\nreference_models = 2\n"
        "[methods.ft]\nfinetune.epochs = 1\n"
    )
    run = tmp_path / "run"
    _cli(amun_bin, "experiment", "--config", config, "--out", run, "--step", "forget-s0-f0.1",
         "-q")
    model = tmp_path / "m.safetensors"
    _cli(amun_bin, "train", "--dataset", idx_data, "--epochs", 1, "--batch-size", 64,
         "--device", "cpu", "-q", "--out", model)
    reg = amun.Registry.create(tmp_path / "reg", model, holdout_test=50, seed=3).path
    common = dict(test=test, epochs=1, seed=3, device="cpu", progress=False)
    _refused(lambda: amun.train(program, train, out=run / "x.safetensors", **common), run,
             r"^out .*x\.safetensors: would write .*, inside the experiment's run folder ")
    _refused(lambda: amun.train(program, train, out=reg / "versions" / "v0003.safetensors",
                                **common), reg,
             r"^out .*v0003\.safetensors: would write .*, inside the registry folder ")
