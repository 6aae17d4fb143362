"""The native module (Rust, over the process's libtorch); use ``amun``'s API.

Requests cross as JSON (built by ``amun/__init__.py``), tensors as
``TensorRef`` tuples of tensors the caller keeps alive, results as JSON.
"""

from pathlib import Path
from typing import Any, Callable

# (data_ptr, shape, strides, dtype, device) of a tensor the caller keeps alive.
TensorRef = tuple[int, list[int], list[int], str, str]
# progress(event, text, pos, total); event: start, update, finish or note.
# An exception it raises (or Ctrl-C, checked at each call) stops the run.
Progress = Callable[[str, str, int, int], Any]

class Error(Exception):
    """A library error; args are (kind, message), kind: invalid, not-found or amun."""

def unlearn(
    request: str,
    train: tuple[TensorRef, TensorRef] | None,
    heldout: tuple[TensorRef, TensorRef] | None,
    targets: dict[str, TensorRef],
    progress: Progress | None = None,
) -> str: ...
def train(
    request: str,
    train: tuple[TensorRef, TensorRef] | None = None,
    test: tuple[TensorRef, TensorRef] | None = None,
    targets: dict[str, TensorRef] = {},
    progress: Progress | None = None,
) -> str: ...
def audit(
    request: str,
    train: tuple[TensorRef, TensorRef] | None = None,
    test: tuple[TensorRef, TensorRef] | None = None,
    progress: Progress | None = None,
) -> str: ...
def registry_create(path: str, request: str, progress: Progress | None = None) -> str: ...
def registry_info(path: str) -> str: ...
def registry_add(
    path: str, files: list[str], reference: str, received: str | None = None, data_dir: str | None = None
) -> str: ...
def registry_apply(path: str, request: str, progress: Progress | None = None) -> str: ...
def registry_certificate(path: str, version: int | None = None) -> tuple[str, Path, Path, list[str]]: ...
def registry_verify(path: str, receipts: list[str]) -> str: ...
def fetch(name: str) -> Path: ...
def torch_version() -> str: ...
def _double_into(x: TensorRef, out: TensorRef) -> None: ...
