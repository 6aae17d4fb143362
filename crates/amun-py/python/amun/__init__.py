"""amun from Python: machine unlearning of a PyTorch ``nn.Module``, in place.

>>> import torch, amun
>>> record = amun.unlearn(model, (images, labels), forget=[3, 17, 42],
...                      heldout=(test_images, test_labels))

The work runs in amun's Rust library over the libtorch of this process's
``torch`` (one libtorch: ``import torch`` comes first, and the native module
binds to it); the model is exported with ``torch.export`` and run by amun's
``.pt2`` interpreter, the same path as ``amun unlearn --checkpoint model.pt2``,
so the same request gives the CLI's weights bit for bit.

The work runs in the calling thread whatever its torch context: with
autograd on and autocast off inside ``torch.no_grad()``,
``torch.inference_mode()`` or ``torch.autocast``, and torch's random
generators left as they were (amun seeds its own run from ``seed=``). Each
submodule's train/eval mode is left as it was.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import operator
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, Union

import torch

__all__ = [
    "AmunError",
    "AmunValueError",
    "AmunTypeError",
    "AmunFileNotFoundError",
    "AmunWarning",
    "UnlearnRecord",
    "TrainRecord",
    "AuditRecord",
    "Registry",
    "unlearn",
    "train",
    "audit",
    "fetch",
    "TORCH_VERSION",
]

#: The PyTorch release whose libtorch the native module was built against.
TORCH_VERSION = "2.11"


class AmunError(Exception):
    """Base of every error amun raises; its message is amun's (the CLI's)."""


class AmunValueError(AmunError, ValueError):
    """An argument or setting with a wrong value; the message names it."""


class AmunTypeError(AmunError, TypeError):
    """An argument of a type amun does not take; the message names it."""


class AmunFileNotFoundError(AmunError, FileNotFoundError):
    """A file amun was asked to read does not exist."""


class AmunWarning(UserWarning):
    """What amun warns about on stderr in the CLI (an incomplete checkpoint,
    a forget set of an older amun, ...), with the CLI's text."""


def _warn_notes(notes: Sequence[str], stacklevel: int) -> None:
    """The library's ``warning: ...`` notes as :class:`AmunWarning`, at the
    caller of the public function ``stacklevel - 1`` frames up."""
    for note in notes:
        if note.startswith("warning"):
            warnings.warn(note, AmunWarning, stacklevel=stacklevel + 1)


def _check_torch() -> None:
    have = torch.__version__.split("+")[0]
    if have.rsplit(".", 1)[0] != TORCH_VERSION:
        raise ImportError(
            f"amun was built for torch=={TORCH_VERSION}.* (libtorch {TORCH_VERSION}.0), and this "
            f"process has torch {torch.__version__}: pip install torch=={TORCH_VERSION}.0"
        )


_check_torch()

from amun import _amun  # noqa: E402  (after torch: it binds to torch's libtorch)

_ERRORS = {
    "invalid": AmunValueError,
    "not-found": AmunFileNotFoundError,
}

# Fine-tuning fields (amun's TrainOverrides): the CLI's --epochs, --lr, ...
_TRAIN_KEYS = {
    "epochs",
    "batch_size",
    "lr",
    "momentum",
    "weight_decay",
    "schedule",
    "augment",
    "bf16",
    "channels_last",
    "retain_budget",
}

Pair = Union[tuple, Sequence[Any]]
Model = Union[torch.nn.Module, str, "os.PathLike[str]"]


@dataclasses.dataclass(frozen=True)
class UnlearnRecord:
    """What :func:`unlearn` did.

    ``calibration`` is amun's full calibration record (the ladder walked,
    every state measured) when the run was calibrated; ``chosen`` and
    ``why`` are its choice and reason in one line each.
    """

    method: str
    settings: dict
    chosen: str | None
    why: str | None
    calibration: dict | None
    #: Wall time of the method in amun (seconds), and of the whole call.
    seconds: float
    wall_seconds: float
    #: Images forwarded and backpropagated (epochs and adversarial search).
    image_steps: int
    #: Accuracy (%) on the forget, retain and held-out splits.
    accuracy_before: dict
    accuracy_after: dict
    sizes: dict
    #: The tensors written: the module's ``state_dict()`` (sharing its storage).
    state_dict: dict = dataclasses.field(repr=False, compare=False)
    #: What amun noticed (warnings), as the CLI prints on stderr.
    notes: list = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        """Everything but the weights, as plain Python values (JSON-ready)."""
        d = dataclasses.asdict(dataclasses.replace(self, state_dict={}))
        d.pop("state_dict")
        return d


def _call(f, *args, exported: Path | None = None):
    """``f(*args)`` with the native module's errors as amun's exceptions;
    ``exported``: the temporary ``.pt2`` of a module, which a message names
    as the model (the file is gone when the caller reads it)."""
    try:
        return f(*args)
    except _amun.Error as e:
        kind, msg = e.args
        if exported is not None:
            msg = msg.replace(str(exported), "model (as torch.export exported it)")
        raise _ERRORS.get(kind, AmunError)(msg) from None


def _as_tensor(what: str, x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        if x.is_meta:
            raise AmunValueError(f"{what}: a tensor on the meta device holds no values")
        return x.detach()
    try:
        import numpy as np

        if isinstance(x, np.ndarray):
            return torch.from_numpy(x)
        if hasattr(x, "__array__"):  # pandas, xarray, ...
            return torch.from_numpy(np.asarray(x))
    except ImportError:
        pass
    if isinstance(x, (list, tuple, range)):
        try:
            return torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError) as e:
            raise AmunTypeError(f"{what}: expected numbers, got {e}") from None
    raise AmunTypeError(
        f"{what}: expected a torch.Tensor, a numpy array or a list, got {type(x).__name__}"
    )


def _images(what: str, x: Any) -> torch.Tensor:
    """[N,C,H,W] uint8 on the CPU, from uint8 images or floats in [0,1]."""
    t = _as_tensor(what, x).cpu()
    if t.dtype != torch.uint8:
        if not t.is_floating_point():
            raise AmunTypeError(
                f"{what}: images must be uint8 (0..255) or float in [0,1], got {t.dtype}"
            )
        if t.isnan().any():
            raise AmunValueError(f"{what}: float images hold NaN; expected values in [0,1]")
        if t.numel() and (t.min() < 0 or t.max() > 1):
            raise AmunValueError(
                f"{what}: float images must lie in [0,1] (unnormalised; give normalize= for the "
                f"model's normalisation), found {t.min().item():.4g}..{t.max().item():.4g}"
            )
        scaled = t.double() * 255
        # float16/bfloat16 hold k/255 only to their precision: k is the
        # nearest integer all the same (half a step of 255·eps off at most).
        tolerance = max(1e-3, 127.5 * torch.finfo(t.dtype).eps)
        if (scaled - scaled.round()).abs().max() > tolerance:
            raise AmunValueError(
                f"{what}: float images must be 8-bit images divided by 255 (amun keeps images "
                "as uint8); give the uint8 images"
            )
        t = scaled.round().to(torch.uint8)
    if t.dim() == 3:
        t = t.unsqueeze(1)
    elif t.dim() == 4 and t.shape[1] not in (1, 3) and t.shape[3] in (1, 3):
        t = t.permute(0, 3, 1, 2)  # torchvision's CIFAR keeps [N,H,W,C]
    if t.dim() != 4 or 0 in t.shape:
        raise AmunValueError(
            f"{what}: images must be [N,C,H,W] (or [N,H,W], [N,H,W,C]), got {list(t.shape)}"
        )
    return t.contiguous()


def _labels(what: str, y: Any, n: int) -> torch.Tensor:
    t = _as_tensor(what, y).cpu()
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise AmunTypeError(f"{what}: labels must be integers, got {t.dtype}")
    if t.dim() != 1 or t.shape[0] != n:
        raise AmunValueError(f"{what}: expected {n} labels (one per image), got {list(t.shape)}")
    return t.to(torch.int64).contiguous()


def _split(what: str, data: Any, like: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) of ``data``; with ``like`` (the training images),
    images of the same channels and size."""
    if hasattr(data, "data") and hasattr(data, "targets"):
        x, y = data.data, data.targets
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
    else:
        raise AmunTypeError(
            f"{what}: expected (images, labels) or a torchvision-style dataset with "
            f".data and .targets, got {type(data).__name__}"
        )
    images = _images(f"{what} images", x)
    if like is not None and images.shape[1:] != like.shape[1:]:
        raise AmunValueError(
            f"{what} images: expected images like the training data's [N,"
            f"{','.join(map(str, like.shape[1:]))}], got {list(images.shape)}"
        )
    if like is not None and torch.equal(images, like):
        raise AmunValueError(
            f"{what}: these are the training images; give images the model never trained on"
        )
    return images, _labels(f"{what} labels", y, images.shape[0])


def _warn_transforms(normalize: Any, **splits: Any) -> None:
    """A dataset's ``transform`` is never applied (amun reads ``.data``):
    said once, unless ``normalize`` shows the caller knows what amun feeds."""
    if normalize is not None:
        return
    for what, data in splits.items():
        if getattr(data, "transform", None) is not None:
            warnings.warn(
                f"{what}: the dataset's transform is not applied: amun reads its .data as "
                "8-bit images and feeds the model floats in [0,1] (training augments as amun's "
                "recipe says); a model trained on normalised inputs needs normalize=(mean, std)",
                AmunWarning,
                stacklevel=3,
            )
            return


def _check_labels(what: str, labels: torch.Tensor, k: int) -> None:
    lo, hi = labels.min().item(), labels.max().item()
    if lo < 0 or hi >= k:
        raise AmunValueError(
            f"{what} labels: the model has {k} outputs, so labels must lie in 0..{k - 1}; "
            f"found {lo}..{hi}"
        )


def _forget(forget: Any, n: int | None, what: str = "forget") -> list[int]:
    """The indices ``forget`` gives (a bool mask: its True entries) into
    ``n`` training samples (``None``: data amun reads, checked there)."""
    t = _as_tensor(what, forget).cpu()
    if t.dtype == torch.bool and t.dim() == 1 and t.numel():
        if n is not None and t.shape[0] != n:
            raise AmunValueError(
                f"{what}: a bool mask needs one entry per training sample ({n}), got {t.shape[0]}"
            )
        t = t.nonzero().flatten()
    if t.numel() == 0:
        raise AmunValueError(f"{what}: the forget set is empty; give at least one index")
    if t.is_floating_point() or t.dtype == torch.bool or t.dim() != 1:
        raise AmunTypeError(
            f"{what}: expected a 1-D list of integer training indices, got {t.dtype} "
            f"{list(t.shape)}"
        )
    idx = t.tolist()
    bad = [i for i in idx if i < 0 or (n is not None and i >= n)]
    if bad and n is None:
        raise AmunValueError(f"{what}: index {bad[0]} is negative; indices count from 0")
    if bad:
        raise AmunValueError(
            f"{what}: index {bad[0]} is out of range for the {n} training samples (0..{n - 1})"
        )
    seen: set[int] = set()
    for i in idx:
        if i in seen:
            raise AmunValueError(f"{what}: index {i} is listed twice")
        seen.add(i)
    if len(idx) == n:
        raise AmunValueError(f"{what}: lists all {n} training samples; keep at least one")
    return idx


def _count(what: str, v: Any) -> int:
    """An integer ≥ 0 (a numpy integer or a one-element integer tensor too)
    that fits amun's 64 bits."""
    try:
        i = None if isinstance(v, bool) else operator.index(v)
    except TypeError:
        i = None
    if i is None or not 0 <= i < 1 << 64:
        raise AmunValueError(f"{what}: expected an integer ≥ 0, got {v!r}")
    return i


def _plain(what: str, v: Any) -> Any:
    """A keyword's value as the request's JSON carries it: numpy's and
    torch's numbers and arrays as Python's; anything else JSON cannot hold
    refused, naming the keyword (``what``)."""
    if isinstance(v, torch.Tensor) or type(v).__module__ == "numpy":
        if hasattr(v, "tolist"):
            return _plain(what, v.tolist())
    if isinstance(v, float) and not math.isfinite(v):
        raise AmunValueError(f"{what}: expected a finite number, got {v!r}")
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, Mapping):
        return {str(k): _plain(f"{what}.{k}", x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(what, x) for x in v]
    raise AmunTypeError(
        f"{what}: expected a number, a string, a bool, a list or a dict, got {type(v).__name__}"
    )


def _plain_all(table: Mapping[str, Any]) -> dict:
    return {k: _plain(k, v) for k, v in table.items()}


def _method(method: Any) -> str:
    if not isinstance(method, str):
        raise AmunTypeError(f"method: expected a method's name (a str, e.g. 'amun'), got {method!r}")
    return method


@contextlib.contextmanager
def _own_state():
    """amun's work runs in the caller's thread, under the caller's libtorch
    state: autograd is turned back on (amun trains; a ``torch.no_grad()``
    or ``inference_mode()`` around the call would stop it), autocast off
    (it would change amun's arithmetic and weights), and the random state
    is the caller's again afterwards (amun seeds libtorch's generators so
    that a run follows its ``seed``; the caller's stream goes on as if amun
    had not run)."""
    cuda = torch.cuda.is_available()
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if cuda else None
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.inference_mode(False))
            stack.enter_context(torch.enable_grad())
            for dev in ("cpu", "cuda") if cuda else ("cpu",):
                stack.enter_context(torch.autocast(dev, enabled=False))
            yield
    finally:
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


def _ref(t: torch.Tensor) -> tuple:
    """A tensor as the native module takes it (it stays alive in the caller)."""
    return (t.data_ptr(), list(t.shape), list(t.stride()), str(t.dtype), str(t.device))


@contextlib.contextmanager
def _eval_mode(module: torch.nn.Module):
    """``module`` in eval mode, each submodule's own mode restored after
    (``module.train(was)`` would set every submodule to ``was``: a BatchNorm
    the caller froze in eval mode inside a training model would train)."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _export(module: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    try:
        with _eval_mode(module):
            ep = torch.export.export(
                module, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},)
            )
        torch.export.save(ep, str(path))
    except Exception as e:
        raise AmunValueError(
            f"model: torch.export could not export it ({type(e).__name__}: {e}); amun needs a "
            "module that torch.export exports with a dynamic batch, one N×C×H×W float32 "
            "image input and one N×K logits output (README, 'Any architecture')"
        ) from e


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module a wrapper runs (``torch.compile``'s ``_orig_mod``,
    ``DataParallel``'s and ``DistributedDataParallel``'s ``module``): the one
    torch.export exports; its tensors are the wrapper's, named without the
    wrapper's prefix."""
    parallel = (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)
    while True:
        if isinstance(model, parallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), torch.nn.Module):
            model = model._orig_mod
        else:
            return model


def _check_float32(model: torch.nn.Module) -> None:
    kinds = {t.dtype for t in model.parameters() if t.is_floating_point()}
    if kinds - {torch.float32}:
        got = ", ".join(sorted(str(k) for k in kinds))
        raise AmunValueError(
            f"model: its parameters are {got}; amun trains float32 weights on float32 images: "
            "call model.float() first"
        )


def _program(model, data, images, labels, held, tmp: Path, writable: bool, held_what="heldout"):
    """The ``.pt2`` amun runs (the module exported into ``tmp``, or the path
    given), the tensors the weights are written to, the model's device and
    the class names; labels (and ``held``'s, the argument ``held_what``)
    checked against the model's outputs."""
    if isinstance(model, torch.nn.Module):
        model = _unwrap(model)
        first = next(iter(model.parameters()), None)
        if first is None and writable:
            raise AmunValueError(
                "model: it has no parameters; amun trains and unlearns a module's parameters"
            )
        _check_float32(model)
        dev = first.device if first is not None else torch.device("cpu")
        example = images[:2].to(dev, torch.float32) / 255
        try:
            with _eval_mode(model), torch.no_grad():
                out = model(example)
        except Exception as e:
            raise AmunValueError(
                f"model: it fails on two of the data's images as float32 in [0,1] "
                f"{list(example.shape)} ({type(e).__name__}: {e})"
            ) from e
        k = _classes_of(out, len(example))
        program = tmp / "model.pt2"
        _export(model, example, program)
        targets = model.state_dict() if writable else {}
    elif isinstance(model, (str, os.PathLike)):
        program = Path(model)
        if not program.is_file():
            raise AmunFileNotFoundError(f"model: {program}: no such file")
        exported, k = program, None
        if program.suffix == ".safetensors":
            exported, k = _checkpoint(program, writable)
        ep = torch.export.load(str(exported)) if exported is not None else None
        state = ep.state_dict if ep is not None else {}
        # Copies: torch.export.load's tensors may sit on read-only buffers.
        targets = {n: t.detach().clone() for n, t in state.items()} if writable else {}
        dev = next(iter(state.values())).device if state else torch.device("cpu")
    else:
        raise AmunTypeError(
            f"model: expected an nn.Module or the path of a .pt2 or an amun checkpoint, got "
            f"{type(model).__name__}"
        )
    if k is not None:
        _check_labels("data", labels, k)
        if held is not None:
            _check_labels(held_what, held[1], k)
    n_classes = k or int(max(labels.max(), held[1].max() if held else 0)) + 1
    classes = getattr(data, "classes", None)
    if not (isinstance(classes, (list, tuple)) and len(classes) == n_classes):
        classes = [str(i) for i in range(n_classes)]
    return program, targets, dev, [str(c) for c in classes]


def _checkpoint(path: Path, writable: bool) -> tuple[Path | None, int | None]:
    """An amun checkpoint's exported program (the names and shapes its new
    weights are written to; ``None`` when none are) and class count, from
    its sidecar; amun checks the sidecar and the data it records."""
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        raise AmunFileNotFoundError(
            f"model: {path}: an amun checkpoint needs its sidecar {sidecar.name} beside it "
            "(amun.train(..., out=) writes both)"
        )
    try:
        spec = json.loads(sidecar.read_text())["model"]
        program, k = (spec.get("program") or {}).get("file"), spec.get("num_classes")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise AmunValueError(f"model: {sidecar}: not an amun sidecar ({e})") from None
    if program is None and writable:
        raise AmunValueError(
            f"model: {path} is a checkpoint of amun's built-in {spec.get('arch')}, not of an "
            "exported program; from Python unlearn or train a module, a .pt2, or a checkpoint "
            "amun.train wrote for one"
        )
    if program is not None and not Path(program).is_file():
        raise AmunFileNotFoundError(
            f"model: {path} runs the exported program {program}, which is gone (amun.train "
            "records the .pt2 it was given by its path: put it back there)"
        )
    return (None if program is None else Path(program)), (int(k) if k is not None else None)


def _check_device(device: Any) -> str | None:
    """``device=``: ``None`` (the model's), or a CPU or CUDA device this
    process has, checked before the export; as amun names it (``cpu``,
    ``cuda``, ``cuda:N``: torch's ``cpu:0`` is ``cpu``)."""
    if device is None:
        return None
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise AmunValueError(
            f"device: expected 'cpu', 'cuda', 'cuda:N' or a torch.device, got {device!r}"
        ) from None
    if d.type not in ("cpu", "cuda"):
        raise AmunValueError(f"device: amun runs on 'cpu' or 'cuda' ('cuda:N'), got {device!r}")
    if d.type == "cuda" and (d.index or 0) >= torch.cuda.device_count():
        raise AmunValueError(
            f"device: {str(d)!r}, but this process's torch sees {torch.cuda.device_count()} "
            "CUDA device(s)"
        )
    return "cpu" if d.type == "cpu" else str(d)


def _classes_of(out: Any, n: int) -> int:
    """K of a classifier's output on ``n`` images: one float [n,K] tensor."""
    if not (isinstance(out, torch.Tensor) and out.is_floating_point() and out.dim() == 2
            and out.shape[0] == n and out.shape[1] >= 2):
        got = f"{out.dtype} {list(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise AmunValueError(
            f"model: amun needs a classifier that returns one float tensor of logits [N,K] "
            f"(K ≥ 2 classes) for N images; on {n} images it returned {got}"
        )
    return out.shape[1]


def _normalize(normalize: Any) -> str | None:
    if normalize is None or isinstance(normalize, str):
        return normalize
    try:
        mean, std = normalize
        mean = [mean] if isinstance(mean, (int, float)) else list(mean)
        std = [std] if isinstance(std, (int, float)) else list(std)
        return ",".join(map(repr, map(float, mean))) + ":" + ",".join(map(repr, map(float, std)))
    except (TypeError, ValueError):
        raise AmunTypeError(
            "normalize: expected (mean, std), each a number or one per channel, or "
            f"'M1,M2,M3:S1,S2,S3'; got {normalize!r}"
        ) from None


class _Bars:
    """Progress as tqdm bars: one per phase (an epoch, a search)."""

    def __init__(self, tqdm):
        self.tqdm, self.bar = tqdm, None

    def __call__(self, event: str, text: str, pos: int, total: int) -> None:
        if event == "start":
            self.close()
            self.bar = self.tqdm(total=total, desc=text, leave=False)
        elif event == "update" and self.bar is not None:
            self.bar.update(pos - self.bar.n)
            self.bar.set_postfix_str(text)
        elif event == "finish":
            self.close()
            self.tqdm.write(text)
        elif event == "note":
            self.tqdm.write(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _progress(progress: Any):
    """The native module's callback for ``progress=`` (see :func:`unlearn`)."""
    if progress is False:
        return None
    if callable(progress):
        return progress
    if progress is not None and progress is not True:
        raise AmunTypeError(f"progress: expected None, True, False or a callable, got {progress!r}")
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return _Bars(tqdm)


def _source(program: Path, normalize: Any, classes: list[str]) -> dict:
    """The model and data as the native module takes them (its ``Source``)."""
    return {
        "program": str(program),
        "normalize": _normalize(normalize),
        "dataset": "python",
        "classes": classes,
    }


def unlearn(
    model: Model,
    data: Pair | str | os.PathLike,
    forget: Any,
    *,
    method: str = "amun",
    calibrate: bool | Mapping[str, Any] = True,
    heldout: Pair | None = None,
    holdout_test: int | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    normalize: Any = None,
    progress: bool | Callable[[str, str, int, int], Any] | None = None,
    **settings: Any,
) -> UnlearnRecord:
    """Unlearns the samples ``forget`` of ``data`` from ``model``, in place.

    Args:
        model: an ``nn.Module`` classifier (exported internally with
            ``torch.export`` and a dynamic batch; its parameters and buffers
            are overwritten with the unlearned weights, in float32; a
            ``DataParallel`` or ``torch.compile`` wrapper: the module it
            wraps, whose names the record's ``state_dict`` has), or the path of a
            ``.pt2`` or of a checkpoint :func:`train` wrote with ``out=``
            (then nothing is overwritten: the record's ``state_dict`` holds
            the new weights).
        data: the model's training data: ``(images, labels)`` (uint8
            ``[N,C,H,W]``/``[N,H,W]``/``[N,H,W,C]``, or floats in [0,1] that
            are 8-bit images / 255; integer labels) or a torchvision-style
            dataset with ``.data`` and ``.targets``. A checkpoint records the
            tensors it was trained on (:attr:`TrainRecord.data`): other ones
            are refused (``ValueError`` naming both sha256s). Or a dataset
            amun reads (``"mnist"``, ``"cifar10"``, a folder) as
            ``--dataset``, with ``model`` a ``.pt2``.
        forget: indices into ``data`` (list, tensor or ndarray of integers,
            no repeats, none negative), a bool mask with one entry per
            sample, or the path of a forget-set file (as ``--forget``).
        method: an amun method (``amun``, ``amun-salun``, ``salun``, ``rl``,
            ``ft``, ``ga``, ``l1``, ...; ``amun methods`` lists them).
        calibrate: choose the learning rate and stopping epoch without a
            retrained model (needs ``heldout``); a dict sets calibration's
            fields (``lrs``, ``rule``, ``walk``, ``max_epochs``, ``level``, ...).
        heldout: images the model never trained on, same forms as ``data``:
            calibration's held-out data and the split the record's
            ``held-out`` accuracies are measured on.
        holdout_test: with ``data`` a path, calibration's held-out data: the
            last N test images (``--holdout-test``; audit then with
            ``holdout_test=N``).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``; default the model's.
        seed: seed of every random choice (as ``amun unlearn --seed``).
        normalize: the model's input normalisation, ``(mean, std)`` or amun's
            ``"M1,M2,M3:S1,S2,S3"``, when the model expects normalised inputs;
            amun feeds it images in [0,1].
        progress: ``None``: tqdm bars when tqdm is installed; ``False``:
            none; a callable: called as ``progress(event, text, pos, total)``
            (``event``: ``"start"`` of a phase of ``total`` steps,
            ``"update"`` at step ``pos`` with a status line, ``"finish"``
            with a summary line, ``"note"``); an exception it raises stops
            the run, as Ctrl-C does (the module is then left unchanged).
        **settings: fine-tuning fields (``epochs``, ``lr``, ``momentum``,
            ``weight_decay``, ``batch_size``, ``schedule``, ...) as the CLI's
            flags, and any method setting as ``--set`` takes it (tables as
            dicts: ``attack={"eps": 0.5}``).

    Returns:
        an :class:`UnlearnRecord`.

    Raises:
        AmunTypeError, AmunValueError: bad arguments, before any long work.
        AmunError: amun refused the request (its message says why).
        KeyboardInterrupt: Ctrl-C, seen at the next progress report (every ten
            batches of an epoch, and between phases); the module is left unchanged.
            A process started with SIGINT ignored (``nohup``, a background job
            of a script) gets no Ctrl-C: call ``signal.signal(signal.SIGINT,
            signal.default_int_handler)`` first.
    """
    start = time.perf_counter()
    device = _check_device(device)
    _method(method)
    if not isinstance(calibrate, (bool, Mapping)):
        raise AmunTypeError(f"calibrate: expected True, False or a dict, got {calibrate!r}")
    seed = _count("seed", seed)
    if holdout_test is not None:
        holdout_test = _count("holdout_test", holdout_test)
    if _is_path(data):
        _path_data_checks(model, heldout, holdout_test, calibrate)
        images = labels = held = None
    else:
        if holdout_test is not None:
            raise AmunValueError(
                "holdout_test: only with data given as a path; with tensors give heldout="
            )
        images, labels = _split("data", data)
        held = None if heldout is None else _split("heldout", heldout, images)
        _warn_transforms(normalize, data=data, heldout=heldout)
    if _is_path(forget):
        forget = {"file": _existing("forget", forget)}
    else:
        forget = {"indices": _forget(forget, None if images is None else images.shape[0])}
    if calibrate is not False and held is None and images is not None:
        raise AmunValueError(
            "heldout: calibrate needs held-out data the model never trained on; give "
            "heldout=(images, labels) or calibrate=False"
        )
    report = _progress(progress)
    settings = _plain_all(settings)
    train = {k: settings.pop(k) for k in list(settings) if k in _TRAIN_KEYS}
    calibrate = _plain("calibrate", {} if calibrate is True else calibrate)
    with tempfile.TemporaryDirectory(prefix="amun-") as tmp, _own_state():
        if images is None:
            program, targets, dev = _program_of_path(model, True)
            classes, tensors = [], None
        else:
            program, targets, dev, classes = _program(
                model, data, images, labels, held, Path(tmp), writable=True
            )
            tensors = (_ref(images), _ref(labels))
        request = {
            "source": _source(program, normalize, classes),
            "data_path": str(data) if images is None else None,
            "holdout_test": holdout_test,
            "forget": forget,
            "method": method,
            "settings": settings,
            "train": train,
            "calibrate": None if calibrate is False else calibrate,
            "seed": seed,
            "device": str(device if device is not None else dev),
        }
        out = _call(
            _amun.unlearn,
            json.dumps(request),
            tensors,
            None if held is None else (_ref(held[0]), _ref(held[1])),
            {n: _ref(t) for n, t in targets.items()},
            report,
            exported=program if isinstance(model, torch.nn.Module) else None,
        )
    r = json.loads(out)
    _warn_notes(r["notes"], stacklevel=2)
    cal = r.get("calibration")
    splits = ["forget", "retain", "held-out"]
    return UnlearnRecord(
        method=r["method"],
        settings=r["settings"],
        chosen=r.get("chosen"),
        why=cal.get("why") if cal else None,
        calibration=cal,
        seconds=r["seconds"],
        wall_seconds=time.perf_counter() - start,
        image_steps=r["image_steps"],
        accuracy_before=dict(zip(splits, r["before"])),
        accuracy_after=dict(zip(splits, r["after"])),
        sizes=dict(zip(splits, r["sizes"])),
        state_dict=dict(targets),
        notes=r["notes"],
    )


def _path_data_checks(model: Any, heldout: Any, holdout_test: int | None, calibrate: Any) -> None:
    """:func:`unlearn`'s arguments with data amun reads itself (a path)."""
    if _is_path(model) and Path(model).suffix == ".safetensors":
        raise AmunValueError(
            f"model: {model} is a checkpoint; with data given as a path give the .pt2 its sidecar "
            "names (model.program.file), or unlearn the checkpoint with `amun unlearn`"
        )
    if heldout is not None:
        raise AmunValueError(
            "heldout: data given as a path brings its own test split; give holdout_test=N "
            "(its last N test images) as calibration's held-out data"
        )
    if calibrate is not False and holdout_test is None:
        raise AmunValueError(
            "holdout_test: calibrate with data given as a path needs holdout_test=N (its last N "
            "test images, which the model never trained on), or calibrate=False"
        )


# `amun train`'s recipe flags (`--epochs`, `--lr`, ...): the fine-tuning
# fields but the retain budget, which only unlearning has.
_RECIPE_KEYS = _TRAIN_KEYS - {"retain_budget"}


@dataclasses.dataclass(frozen=True)
class TrainRecord:
    """What :func:`train` did.

    ``sidecar`` is the record ``amun train`` writes beside a checkpoint
    (model, data, forget set excluded, recipe, history, metrics); with
    ``refs``, ``refs`` is the folder's summary and ``sidecar`` is ``None``.
    """

    sidecar: dict | None
    #: Accuracy (%) on the training samples and on ``test`` at the end.
    metrics: dict
    #: Wall time of the whole call (seconds).
    wall_seconds: float
    #: The checkpoint (or reference-model folder) written, if ``out`` was given.
    out: str | None
    refs: dict | None = None
    #: With tensor data, what the model was trained on: ``images`` and
    #: ``labels``, each ``dtype``, ``shape`` and ``sha256`` (of the bytes in
    #: C order, as ``hashlib.sha256(t.contiguous().numpy().tobytes())``, of
    #: the images as amun holds them: uint8 ``[N,C,H,W]``); the sidecar's
    #: ``data.dataset`` names the same, and :func:`audit` and :func:`unlearn`
    #: given the checkpoint refuse other tensors. ``None`` for data given as
    #: a path.
    data: dict | None = None
    #: The trained weights: the module's ``state_dict()`` (sharing its storage).
    state_dict: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict:
        """Everything but the weights, as plain Python values (JSON-ready)."""
        d = dataclasses.asdict(dataclasses.replace(self, state_dict={}))
        d.pop("state_dict")
        return d


def _recipe(recipe: dict) -> dict:
    """``amun train``'s recipe flags from keywords, with its defaults for
    ``bf16`` and ``channels_last`` (``augment="auto"``: left to amun, which
    turns it on for colour images)."""
    unknown = sorted(set(recipe) - _RECIPE_KEYS)
    if unknown:
        raise AmunValueError(
            f"{unknown[0]}: not a training setting; expected one of {', '.join(sorted(_RECIPE_KEYS))}"
        )
    out = dict(recipe)
    augment = out.pop("augment", "auto")
    if augment != "auto":
        if not isinstance(augment, bool):
            raise AmunValueError(f"augment: expected True, False or 'auto', got {augment!r}")
        out["augment"] = augment
    out.setdefault("bf16", False)
    out.setdefault("channels_last", False)
    return out


def _train_checks(model, data, test, exclude, refs, out, init) -> None:
    if _is_path(model) and Path(model).suffix == ".safetensors":
        raise AmunValueError(
            f"model: {model} is a checkpoint (trained weights); amun.train trains a module or a "
            ".pt2: give the .pt2 its sidecar names (model.program.file), or a module"
        )
    if out is not None and refs is None and isinstance(model, torch.nn.Module):
        raise AmunValueError(
            "out: a checkpoint records the .pt2 program it runs, and a module's export lasts "
            "only the call; give the model as a .pt2 (torch.export.save) to write one, or "
            "save the trained module's state_dict()"
        )
    if init not in ("module", "seed"):
        raise AmunValueError(f"init: expected 'module' or 'seed', got {init!r}")
    if refs is not None:
        if not isinstance(refs, int) or isinstance(refs, bool) or refs < 2 or refs % 2:
            raise AmunValueError(
                f"refs: expected an even number ≥ 2 of reference models (they train in "
                f"complementary pairs), got {refs!r}"
            )
        if out is None:
            raise AmunValueError("out: reference models are written to a folder; give out=")
        if exclude is not None:
            raise AmunValueError(
                "exclude: reference models train on random halves of train ∪ test; leave exclude out"
            )
        if not _is_path(data) and test is None:
            raise AmunValueError(
                "test: reference models train on halves of train ∪ test; give test=(images, labels)"
            )
    if _is_path(data) and test is not None:
        raise AmunValueError("test: data given as a path brings its own test split; leave test out")
    if out is not None and not _is_path(out):
        raise AmunTypeError(f"out: expected a path, got {type(out).__name__}")


def train(
    model: Model,
    data: Pair | str | os.PathLike,
    *,
    exclude: Any = None,
    test: Pair | None = None,
    refs: int | None = None,
    out: str | os.PathLike | None = None,
    init: str = "module",
    device: str | torch.device | None = None,
    seed: int = 0,
    normalize: Any = None,
    progress: bool | Callable[[str, str, int, int], Any] | None = None,
    **recipe: Any,
) -> TrainRecord:
    """Trains ``model`` on ``data`` as ``amun train --model model.pt2`` does:
    the exact retrain without ``exclude``, or (``refs=N``) the reference
    models ``amun rmia train-refs`` trains for the audit's RMIA.

    Args:
        model: an ``nn.Module`` classifier (exported with ``torch.export``;
            its parameters and buffers are overwritten with the trained
            weights) or the path of a ``.pt2`` (not modified: the record's
            ``state_dict`` holds the weights).
        data: as for :func:`unlearn`, or a dataset amun reads (``"mnist"``,
            ``"cifar10"``, a folder), as ``--dataset``: a retrain is recorded
            with its data (by name, tensors by their sha256), so
            :func:`audit` can check it (``retrain=``).
        exclude: samples to train without (indices or a bool mask as
            ``forget`` of :func:`unlearn`, or a forget-set file as
            ``--exclude``): the exact unlearning of them.
        test: with tensor data, a test split, measured at each epoch (the
            record's ``test_acc``); needed by ``refs``.
        refs: train this many reference models (even, ≥ 2) on random halves
            of train ∪ test into the folder ``out``; the module is left as is.
        out: write the checkpoint (``.safetensors`` + sidecar, as ``amun
            train --out``; for a model given as a ``.pt2``, which the sidecar
            names), or with ``refs`` the folder.
        init: ``"module"``: start from the module's current weights (``amun
            train --init model.pt2``); ``"seed"``: PyTorch's default
            initialisation of each layer drawn from ``seed`` (no ``--init``).
        device, seed, normalize, progress: as for :func:`unlearn`.
        **recipe: ``epochs``, ``batch_size``, ``lr``, ``momentum``,
            ``weight_decay``, ``schedule`` (``"onecycle:0.25"``, ``"cosine"``,
            ...), ``augment`` (``"auto"``: on for colour images), ``bf16``,
            ``channels_last``: as ``amun train``'s flags and defaults.

    Returns:
        a :class:`TrainRecord`.
    """
    start = time.perf_counter()
    _train_checks(model, data, test, exclude, refs, out, init)
    device = _check_device(device)
    seed = _count("seed", seed)
    report = _progress(progress)
    request = {
        "train": _recipe(_plain_all(recipe)),
        "data_path": None,
        "exclude": None,
        "refs": refs,
        "init_from_program": init == "module",
        "seed": seed,
        "out": None if out is None else str(out),
    }
    if _is_path(exclude):
        request["exclude"] = {"file": _existing("exclude", exclude)}
    with tempfile.TemporaryDirectory(prefix="amun-") as tmp, _own_state():
        writable = refs is None
        if _is_path(data):
            request["data_path"] = str(data)
            program, targets, dev = _program_of_path(model, writable)
            request["source"] = _source(program, normalize, [])
            tensors = (None, None)
        else:
            images, labels = _split("data", data)
            t = None if test is None else _split("test", test, images)
            _warn_transforms(normalize, data=data, test=test)
            if exclude is not None and request["exclude"] is None:
                request["exclude"] = {"indices": _forget(exclude, images.shape[0], "exclude")}
            program, targets, dev, classes = _program(
                model, data, images, labels, t, Path(tmp), writable, "test"
            )
            request["source"] = _source(program, normalize, classes)
            tensors = ((_ref(images), _ref(labels)), None if t is None else (_ref(t[0]), _ref(t[1])))
        if exclude is not None and request["exclude"] is None:
            request["exclude"] = {"indices": _forget(exclude, None, "exclude")}
        request["device"] = str(device if device is not None else dev)
        targets = targets if writable else {}
        exported = program if isinstance(model, torch.nn.Module) else None
        weights = {n: _ref(v) for n, v in targets.items()}
        res = json.loads(
            _call(_amun.train, json.dumps(request), *tensors, weights, report, exported=exported)
        )
    if refs is not None:
        return TrainRecord(None, {}, time.perf_counter() - start, str(out), refs=res)
    _warn_notes(res["notes"], stacklevel=2)
    sidecar = res["sidecar"]
    return TrainRecord(
        sidecar=sidecar,
        metrics=dict(sidecar.get("metrics", {})),
        wall_seconds=time.perf_counter() - start,
        out=None if out is None else str(out),
        data=res["data"],
        state_dict=dict(targets),
    )


def _program_of_path(model: Model, writable: bool):
    """For data amun reads itself: the model's ``.pt2`` (a module exported
    on an example of the data's shape, read from the program's own), the
    tensors the weights go to, and the device."""
    if isinstance(model, torch.nn.Module):
        raise AmunValueError(
            "model: with data given as a path, give the model as a .pt2 (torch.export.save) "
            "exported on that data's image shape"
        )
    if not _is_path(model):
        raise AmunTypeError(
            f"model: expected an nn.Module or the path of a .pt2, got {type(model).__name__}"
        )
    program = Path(_existing("model", model))
    ep = torch.export.load(str(program))
    targets = {n: t.detach().clone() for n, t in ep.state_dict.items()} if writable else {}
    dev = next(iter(ep.state_dict.values())).device if ep.state_dict else torch.device("cpu")
    return program, targets, dev


@dataclasses.dataclass(frozen=True)
class AuditRecord:
    """What :func:`audit` measured, with ``amun audit``'s numbers.

    Accuracies (%) and sample counts on the forget set, the retain set and
    D_T (the test data less ``holdout_test`` last images), overall and per
    class; with reference models, RMIA's AUC of the forget set against D_T
    (%, ideal 50: the attack cannot tell them apart), of a retain sample
    against D_T, the TPR at 1% FPR, MIS (% of the forget set SalUn's SVC
    calls non-member) and, with a retrain, the paper's Avg. Gap.
    """

    accuracy: dict
    samples: dict
    per_class: dict
    rmia_auc: float | None = None
    rmia_auc_retain_test: float | None = None
    tpr_at_1pct_fpr: float | None = None
    mis: float | None = None
    avg_gap: float | None = None
    holdout_test: int = 0
    #: The attack's settings (signal, offline, a, gamma).
    rmia: dict | None = None
    #: Everything ``amun audit --json`` prints for the model (its ``audit``:
    #: scores, ROC curve, confidence histograms); ``None`` without references.
    details: dict | None = None
    #: What amun noticed (an import, warnings), as the CLI prints on stderr.
    notes: list = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        """The numbers as plain Python values (JSON-ready)."""
        return dataclasses.asdict(self)

    def to_pandas(self):
        """One row: the columns of ``amun audit``'s table; needs pandas."""
        import pandas as pd

        row = {f"{k} %": v for k, v in self.accuracy.items()}
        row.update(
            rmia_auc=self.rmia_auc,
            rmia_auc_retain_test=self.rmia_auc_retain_test,
            tpr_at_1pct_fpr=self.tpr_at_1pct_fpr,
            mis=self.mis,
            avg_gap=self.avg_gap,
        )
        return pd.DataFrame([row])


def _is_path(x: Any) -> bool:
    return isinstance(x, (str, os.PathLike))


def _existing(what: str, path: Any, folder: bool = False) -> str:
    p = Path(path)
    if not (p.is_dir() if folder else p.is_file()):
        kind = "folder" if folder else "file"
        raise AmunFileNotFoundError(f"{what}: {p}: no such {kind}")
    return str(p)


def _audit_checks(model, data, test, refs, retrain) -> None:
    """The arguments' combinations, checked before any work."""
    if retrain is not None and refs is None:
        raise AmunValueError(
            "retrain: the Avg. Gap compares RMIA and accuracies with the retrain's; give refs= "
            "(reference models from `amun rmia train-refs`)"
        )
    if _is_path(data) and not _is_path(model):
        raise AmunValueError(
            "model: with data given as a path, give the model as a file amun opens (a .pt2 "
            "from torch.export.save, or an amun checkpoint)"
        )
    if _is_path(data) and test is not None:
        raise AmunValueError("test: data given as a path brings its own test split; leave test out")
    if not _is_path(data) and test is None:
        raise AmunValueError("test: give the test data (images, labels) the model never trained on")


def audit(
    model: Model,
    data: Pair | str | os.PathLike,
    forget: Any,
    *,
    test: Pair | None = None,
    refs: str | os.PathLike | None = None,
    retrain: str | os.PathLike | None = None,
    signal: str = "taylor-soft-margin",
    online: bool = False,
    a: float = 0.3,
    gamma: float = 2.0,
    seed: int | None = None,
    holdout_test: int | None = None,
    device: str | torch.device | None = None,
    normalize: Any = None,
    progress: Any = None,
) -> AuditRecord:
    """Audits ``model`` as ``amun audit`` does, with its numbers.

    Args:
        model: an ``nn.Module``, a ``.pt2`` path, an amun checkpoint
            (``.safetensors`` with its sidecar, as :func:`train` writes), or
            (with ``data`` a path) any checkpoint ``amun audit --checkpoint``
            opens.
        data: the model's training data as for :func:`unlearn`, or a dataset
            amun reads (``"mnist"``, ``"cifar10"``, a folder), as ``--dataset``.
            Tensors must be the ones a checkpoint given as ``model`` or
            ``retrain`` records it was trained on (dtype, shape and sha256 of
            images and labels; ``ValueError`` naming both digests otherwise).
            Only the training split is checked: ``test`` may be any split
            (a warning when it is not the one the model was trained with).
        forget: indices into the training data or a bool mask (as for
            :func:`unlearn`), or a forget-set file (as ``--forget``).
        test: with tensor data, the test split (D_T and RMIA's population).
        refs: a folder of reference models from ``amun rmia train-refs``
            trained on this data (``--refs``): adds RMIA and MIS.
        retrain: an amun checkpoint retrained without exactly ``forget``
            (``amun train --exclude``, or :func:`train` with ``exclude=`` and
            ``out=`` on these tensors), checked as ``--retrain`` is: adds the
            Avg. Gap. Needs ``refs``.
        signal, online, a, gamma: RMIA's attack (``--signal``, ``--online``,
            ``--a``, ``--gamma``).
        seed: seed of the retain sample and the SVC subsample; default
            derived from the forget set's, as the CLI's.
        holdout_test: leave the last N test images out of D_T (``--holdout-test``).
        device, normalize: as for :func:`unlearn` (default ``"cpu"`` for a
            model given as a path).
        progress: as for :func:`unlearn` (a bar per pass over the data);
            Ctrl-C stops the audit between two batches.

    Returns:
        an :class:`AuditRecord`.

    Raises:
        AmunTypeError, AmunValueError, AmunFileNotFoundError: bad arguments,
        before any work; AmunError: amun refused the inputs (its message).
    """
    _audit_checks(model, data, test, refs, retrain)
    report = _progress(progress)
    device = _check_device(device)
    seed = None if seed is None else _count("seed", seed)
    holdout_test = None if holdout_test is None else _count("holdout_test", holdout_test)
    if not isinstance(signal, str):
        raise AmunTypeError(f"signal: expected 'taylor-soft-margin' or 'softmax', got {signal!r}")
    request = {
        "data_path": None,
        "refs": None if refs is None else _existing("refs", refs, folder=True),
        "retrain": None if retrain is None else _existing("retrain", retrain),
        "signal": signal,
        "online": bool(online),
        "a": float(a),
        "gamma": float(gamma),
        "seed": seed,
        "holdout_test": holdout_test,
    }
    if _is_path(forget):
        request["forget"] = {"file": _existing("forget", forget)}
    with tempfile.TemporaryDirectory(prefix="amun-") as tmp, _own_state():
        if _is_path(data):
            program = _existing("model", model)
            request["data_path"] = str(data)
            request["source"] = _source(Path(program), normalize, [])
            request["device"] = str(device if device is not None else "cpu")
            tensors = ()
        else:
            images, labels = _split("data", data)
            t = _split("test", test, images)
            _warn_transforms(normalize, data=data, test=test)
            if "forget" not in request:
                request["forget"] = {"indices": _forget(forget, images.shape[0])}
            program, _, dev, classes = _program(
                model, data, images, labels, t, Path(tmp), False, "test"
            )
            request["source"] = _source(program, normalize, classes)
            request["device"] = str(device if device is not None else dev)
            tensors = ((_ref(images), _ref(labels)), (_ref(t[0]), _ref(t[1])))
        if "forget" not in request:
            # Data amun reads itself: the range is checked against it there.
            request["forget"] = {"indices": _forget(forget, None)}
        exported = program if isinstance(model, torch.nn.Module) else None
        if not tensors:
            tensors = (None, None)
        out = json.loads(
            _call(_amun.audit, json.dumps(request), *tensors, report, exported=exported)
        )
    return _audit_record(out)


def _audit_record(out: dict) -> AuditRecord:
    acc, details = out["accuracy"], out["audit"]
    get = (lambda k: details[k]) if details else (lambda k: None)
    _warn_notes(out["notes"], stacklevel=3)
    return AuditRecord(
        accuracy={k: v["accuracy"] for k, v in acc.items()},
        samples={k: v["samples"] for k, v in acc.items()},
        per_class={k: v["per_class"] for k, v in acc.items()},
        rmia_auc=details["scores"]["mia"] if details else None,
        rmia_auc_retain_test=get("rmia_auc_retain_test"),
        tpr_at_1pct_fpr=get("tpr_at_1pct_fpr"),
        mis=get("mis"),
        avg_gap=out["avg_gap"],
        holdout_test=out["holdout_test"],
        rmia=out["rmia"],
        details=details,
        notes=out["notes"],
    )


def fetch(name: str) -> Path:
    """Fetches a dataset amun knows (``"mnist"``, ``"cifar10"``) into amun's
    data cache when it is missing or damaged, as ``amun data fetch`` does,
    and returns its folder (CIFAR-10: the binary batches
    ``data_batch_1.bin`` … ``test_batch.bin``, rows of a label byte and
    3×32×32 image bytes)."""
    return Path(_call(_amun.fetch, name))


# `amun registry apply`'s training flags; any other setting is the method's.
_APPLY_TRAIN_KEYS = {"epochs", "lr", "batch_size", "schedule"}


def _optional_path(what: str, path: Any) -> str | None:
    if path is None:
        return None
    if not _is_path(path):
        raise AmunTypeError(f"{what}: expected a path, got {type(path).__name__}")
    return str(path)


def _check_registry_data(checkpoint: Path) -> None:
    """A registry reads its model's training data itself at every apply:
    a model trained on tensors from Python names data no file holds."""
    try:
        recorded = json.loads(checkpoint.with_suffix(".json").read_text())["data"]["dataset"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # no sidecar or another layout: amun's own check names it
    if isinstance(recorded, str) and recorded.startswith("tensors("):
        raise AmunValueError(
            f"checkpoint: {checkpoint} was trained on tensors from Python; a registry reads its "
            "training data itself at every apply: train the model on a dataset amun reads "
            "(amun.train(model.pt2, 'cifar10' or a folder, out=...))"
        )


class Registry:
    """A deletion-request registry (``amun registry``), the CLI's semantics.

    Requests are added as files (indices, or image paths for an image
    folder), applied to the head version by unlearning, and every version
    gets a certificate; ``verify`` re-checks the hash chain, every row, every
    file and the anchor. The registry folder is the CLI's: both can work on
    it, one writer at a time.

    >>> reg = amun.Registry.create("reg", "model.safetensors")
    >>> reg.add("request.txt", reference="ticket 12")
    >>> reg.apply(method="amun")
    >>> reg.certificate()["version"]
    """

    def __init__(self, path: str | os.PathLike):
        """Opens the registry at ``path`` (read-only until a change)."""
        self.path = Path(_optional_path("path", path))
        try:
            _call(_amun.registry_info, str(self.path))
        except AmunError as e:
            if not self.path.exists():
                raise AmunFileNotFoundError(str(e)) from None
            raise

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        checkpoint: str | os.PathLike,
        *,
        holdout_test: int | None = None,
        refs: str | os.PathLike | None = None,
        retrain_after_requests: int | None = None,
        retrain_after_fraction: float | None = None,
        seed: int = 0,
        anchor_copy: str | os.PathLike | None = None,
        data_dir: str | os.PathLike | None = None,
        progress: bool | Callable[[str, str, int, int], Any] | None = None,
    ) -> "Registry":
        """Creates a registry (``amun registry create``) in the new folder
        ``path`` whose version 1 is ``checkpoint``, a model amun trained on
        the whole training split (``.safetensors`` with its sidecar).
        ``holdout_test``: the last N test images calibration looks at
        (default a tenth); ``refs``: reference models, so each version's
        audit adds RMIA and MIS; ``retrain_after_requests`` and
        ``retrain_after_fraction``: the retrain policy; ``seed``: as
        ``--seed``; ``anchor_copy``: a copy of the anchor elsewhere;
        ``data_dir``: where amun's datasets are (default its cache);
        ``progress``: as for :func:`unlearn`."""
        if not _is_path(checkpoint):
            raise AmunTypeError(f"checkpoint: expected a path, got {type(checkpoint).__name__}")
        _check_registry_data(Path(_existing("checkpoint", checkpoint)))
        request = {
            "checkpoint": _existing("checkpoint", checkpoint),
            "holdout_test": None if holdout_test is None else _count("holdout_test", holdout_test),
            "refs": _optional_path("refs", refs),
            "retrain_after_requests": None
            if retrain_after_requests is None
            else _count("retrain_after_requests", retrain_after_requests),
            "retrain_after_fraction": _plain("retrain_after_fraction", retrain_after_fraction),
            "seed": _count("seed", seed),
            "anchor_copy": _optional_path("anchor_copy", anchor_copy),
            "data_dir": _optional_path("data_dir", data_dir),
        }
        report = _progress(progress)
        with _own_state():
            _call(_amun.registry_create, _optional_path("path", path), json.dumps(request), report)
        return cls(path)

    @property
    def info(self) -> dict:
        """The registry's record (``registry``) and head version (``version``)."""
        return json.loads(_call(_amun.registry_info, str(self.path)))

    def add(
        self,
        *files: str | os.PathLike,
        reference: str = "",
        received: str | None = None,
        data_dir: str | os.PathLike | None = None,
    ) -> list[dict]:
        """Adds one deletion request per file (``amun registry add``): any
        list ``amun split --from`` reads, or for an image folder one image
        path a line. ``reference``: free text kept with each request;
        ``received``: when it was received, UTC (default now); ``data_dir``:
        where amun's datasets are (default its cache), read to check a class
        forget set on MNIST or CIFAR-10. Returns each request with its
        receipt (also in the registry's ``receipts/``)."""
        if not files:
            raise AmunValueError("files: give at least one request file")
        paths = [_optional_path("files", f) for f in files]
        for what, v in (("reference", reference), ("received", received)):
            if v is not None and not isinstance(v, str):
                raise AmunTypeError(f"{what}: expected a str, got {type(v).__name__}")
        out = json.loads(
            _call(
                _amun.registry_add,
                str(self.path),
                paths,
                reference,
                received,
                _optional_path("data_dir", data_dir),
            )
        )
        for w in out["warnings"]:
            warnings.warn(w, AmunWarning, stacklevel=2)
        return out["added"]

    def apply(
        self,
        method: str = "amun",
        *,
        calibrate: bool | Mapping[str, Any] = True,
        retain: bool = True,
        adaptive: bool = False,
        device: str | torch.device = "auto",
        data_dir: str | os.PathLike | None = None,
        progress: bool | Callable[[str, str, int, int], Any] | None = None,
        **settings: Any,
    ) -> dict | None:
        """Unlearns the pending requests from the head version into a new
        version with its audit and certificate (``amun registry apply``).

        ``calibrate``: retrain-free calibration on the registry's held-out
        test images (a dict: ``lrs``, ``rule``, ...; ``False``: the method's
        settings); its cost cap is 1× the exact retrain the batch replaces
        unless ``max_cost`` gives another fraction, or ``max_cost=None``
        none (the continuing walk only); ``retain=False``: ``--no-retain``; ``adaptive``: AMUN-A;
        ``epochs``, ``lr``, ``batch_size``, ``schedule`` as the CLI's flags,
        any other keyword a method setting (``--set``). ``device``:
        ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:N"``;
        ``data_dir``: where amun's datasets are (default its cache).
        ``progress``: as for :func:`unlearn` (Ctrl-C stops; the next apply
        cleans up).

        Returns what ``--json`` prints (the new version, requests unlearned
        and covered, accuracies before and after, audit, certificate files,
        whether a retrain is due), or ``None`` when nothing was pending.
        """
        if not isinstance(calibrate, (bool, Mapping)):
            raise AmunTypeError(f"calibrate: expected True, False or a dict, got {calibrate!r}")
        _method(method)
        settings = _plain_all(settings)
        train = {k: settings.pop(k) for k in list(settings) if k in _APPLY_TRAIN_KEYS}
        calibrate = _plain("calibrate", {} if calibrate is True else calibrate)
        request = {
            "method": method,
            "settings": settings,
            "train": train,
            "calibrate": None if calibrate is False else calibrate,
            "with_retain": bool(retain),
            "adaptive": bool(adaptive),
            "device": "auto" if device == "auto" else _check_device(device),
            "data_dir": _optional_path("data_dir", data_dir),
        }
        report = _progress(progress)
        with _own_state():
            out = _call(_amun.registry_apply, str(self.path), json.dumps(request), report)
        return json.loads(out)["applied"]

    def certificate(self, version: int | None = None) -> dict:
        """The certificate of ``version`` (default the head), checked
        against the registry's records (``amun registry certificate
        --json``); its files are under ``files``: ``markdown``, ``json``."""
        if version is not None:
            version = _count("version", version)
        text, md, js, notes = _call(_amun.registry_certificate, str(self.path), version)
        _warn_notes(notes, stacklevel=2)
        cert = json.loads(text)
        return {**cert, "files": {"markdown": str(md), "json": str(js)}}

    def verify(self, receipts: Sequence[str | os.PathLike] = ()) -> dict:
        """Verifies the registry (``amun registry verify``): the chain, every
        row, every file's sha256, the anchor, and ``receipts`` handed out.
        Returns the counts when intact; raises :class:`AmunError` with the
        CLI's message (and ``.verification``, every finding) when not."""
        if _is_path(receipts):  # one receipt, not its characters
            receipts = [receipts]
        paths = [_optional_path("receipts", r) for r in receipts]
        out = json.loads(_call(_amun.registry_verify, str(self.path), paths))
        if not out["ok"]:
            e = AmunError(out["error"])
            e.verification = out["verified"]
            raise e
        return out["verified"]

    def __repr__(self) -> str:
        return f"amun.Registry({str(self.path)!r})"
