"""The native module (Rust, over the process's libtorch); use ``amun``'s API."""

from pathlib import Path

# (data_ptr, shape, strides, dtype, device) of a tensor the caller keeps alive.
TensorRef = tuple[int, list[int], list[int], str, str]

class Error(Exception):
    """A library error; args are (kind, message)."""

def unlearn(
    request: str,
    train: tuple[TensorRef, TensorRef],
    heldout: tuple[TensorRef, TensorRef] | None,
    targets: dict[str, TensorRef],
) -> str: ...
def fetch(name: str) -> Path: ...
def torch_version() -> str: ...
def _double_into(x: TensorRef, out: TensorRef) -> None: ...
