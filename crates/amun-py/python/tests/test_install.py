"""The wheel as a user installs it: a brand-new venv (no system site
packages), `pip install torch==2.11.0 torchvision==0.26.0` and the wheel
scripts/test.sh built, then fresh_venv_script.py (a torchvision ResNet-18
trained, unlearned in place, audited) on the libtorch of that venv's torch,
the one libtorch in the process.

torch and torchvision (with numpy and pillow, which torchvision needs) are
the versions requirements/python-dev.txt pins, from PyPI as that venv's
are. They come from a wheelhouse in amun's cache folder, filled from PyPI
on the first run (`pip download`: 2.6 GB of wheels with torch's CUDA
packages) and only when it lacks a file after that (a cache filled before
torchvision was added gets its three wheels, ~30 MB): pip's own HTTP cache
keeps nothing of these downloads on the machines amun is tested on
(~/.cache/pip stays empty), and CI must not fetch 2.6 GB per run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

HERE = Path(__file__).resolve().parent


def _wheel():
    wheels = sorted((ROOT / "target" / "wheels").glob("amun-*.whl"))
    if len(wheels) != 1:
        pytest.fail(f"expected one wheel in target/wheels (scripts/test.sh builds it), found {wheels}")
    return wheels[0]


def _wheelhouse():
    cache = os.environ.get("AMUN_CACHE") or Path.home() / ".cache" / "amun"
    return Path(cache) / "wheelhouse"


def _pins(*names):
    """`name==version` of each package as requirements/python-dev.txt pins it."""
    lines = (ROOT / "requirements" / "python-dev.txt").read_text().splitlines()
    pins = {l.split("==")[0].strip().lower(): l.strip() for l in lines if "==" in l and not l.startswith("#")}
    return [pins[n] for n in names]


def _pip_env():
    """This environment (pip's settings kept) without the test venv's paths."""
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if k not in drop}


def _user_env(tmp_path):
    """A user's shell: no venv, no LD_LIBRARY_PATH, no PYTHONPATH; amun's
    data cache kept, so MNIST is not fetched again."""
    keep = ("HOME", "AMUN_DATA_DIR", "XDG_CACHE_HOME", "LANG")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    return {**env, "PATH": "/usr/local/bin:/usr/bin:/bin", "PYTHONNOUSERSITE": "1",
            "TMPDIR": str(tmp_path)}


@pytest.fixture
def venv(tmp_path):
    """A brand-new venv, removed afterwards (4.6 GB with torch)."""
    path = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    yield path
    # Its ~20k files take a minute to delete on a busy disk: not the tests' minute.
    subprocess.Popen(["rm", "-rf", str(path)], start_new_session=True)


def test_the_wheel_in_a_fresh_venv_unlearns_in_place_on_the_users_libtorch(venv, tmp_path):
    wheel, house = _wheel(), _wheelhouse()
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--quiet"]
    # --no-compile: no byte-compiling of torch's sources, which the script does not need.
    pins = _pins("torch", "torchvision", "numpy", "pillow")
    install = [*pip, "install", "--no-compile", "--no-index", "--find-links", str(house),
               *pins, str(wheel)]
    env = _pip_env()
    # Resolution fails before anything is installed when a file is missing;
    # `pip download` then fetches only the files the wheelhouse lacks.
    if subprocess.run(install, capture_output=True, env=env).returncode != 0:
        subprocess.run([*pip, "download", "-d", str(house), *pins], check=True, env=env)
        subprocess.run(install, check=True, env=env)
    p = subprocess.run([str(venv / "bin" / "python"), str(HERE / "fresh_venv_script.py")],
                       capture_output=True, text=True, env=_user_env(tmp_path), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    prefix = out["prefix"]
    assert prefix == os.path.realpath(venv)
    assert out["native"].startswith(prefix + "/") and out["torch_lib"].startswith(prefix + "/")
    names = [Path(lib).name for lib in out["libtorch"]]
    assert "libtorch_cpu.so" in names and len(names) == len(set(names)), out["libtorch"]
    assert all(os.path.dirname(lib) == out["torch_lib"] for lib in out["libtorch"]), out
    # torchvision's own extension is loaded, from the venv, on that libtorch.
    assert out["torchvision"].startswith(prefix + "/") and out["torchvision_ext"], out
    # Unlearnt in place: the module audited afterwards has the unlearnt accuracies.
    before, after, audited = ([d[k] for k in ("forget", "retain")]
                              for d in (out["before"], out["after"], out["audited"]))
    assert after == audited and after != before, p.stdout
    assert out["samples"] == {"forget": 20, "retain": 480, "test": 200}
    assert out["trained_test_accuracy"] > 25, p.stdout  # it learnt digits (chance: 10%)
