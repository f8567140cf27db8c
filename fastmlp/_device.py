"""``fastmlp.device``: where a tensor lives ('cpu' or 'cuda[:index]'), as ``torch.device``."""
from __future__ import annotations

import contextlib
from typing import Optional, Union


class device:
    """A device, as ``torch.device``: ``device('cpu')``, ``device('cuda')``, ``device('cuda', 1)``."""

    __slots__ = ("type", "index")

    def __init__(self, type: Union[str, "device"], index: Optional[int] = None):
        if isinstance(type, device):
            self.type, self.index = type.type, type.index
            return
        if not isinstance(type, str):
            raise TypeError(f"device() expects a string such as 'cpu' or 'cuda:0'; got {type!r}")
        spec = type.strip()
        if ":" in spec:
            spec, _, idx = spec.partition(":")
            if index is not None:
                raise ValueError(f"device index given twice in device({type!r}, {index})")
            try:
                index = int(idx)
            except ValueError:
                raise ValueError(f"invalid device string {type!r}: the index must be an integer") from None
        if spec not in ("cpu", "cuda"):
            raise ValueError(f"unknown device type {spec!r}: expected 'cpu' or 'cuda'")
        if index is not None and index < 0:
            raise ValueError(f"device index must be >= 0; got {index}")
        if spec == "cpu" and index not in (None, 0):
            raise ValueError(f"the CPU device has no index {index}")
        self.type = spec
        self.index = index

    def __repr__(self) -> str:
        return f"device(type='{self.type}')" if self.index is None else \
            f"device(type='{self.type}', index={self.index})"

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __eq__(self, other) -> bool:
        if isinstance(other, str):
            try:
                other = device(other)
            except (ValueError, TypeError):
                return False
        if not isinstance(other, device):
            return NotImplemented
        return self.type == other.type and self.index == other.index

    def __hash__(self) -> int:
        return hash((self.type, self.index))


CPU = device("cpu")


def as_device(d) -> device:
    if isinstance(d, device):
        return d
    if d is None:
        return CPU
    if isinstance(d, int):
        return device("cuda", d)
    return device(d)


# ---- where work runs: used by Tensor.to, Module.to, fit and evaluate ----------------------------
def current_cuda_index() -> int:
    """The index of CUDA's current device (``torch.cuda.current_device``); needs CuPy."""
    import cupy

    return int(cupy.cuda.runtime.getDevice())


def same_place(have: device, want: device) -> bool:
    """True when data on `have` is already on `want`, so moving it there copies nothing.

    `have` is a tensor's device (a CUDA one always has an index); ``cuda`` without an
    index means the current CUDA device, as in PyTorch, so a tensor on ``cuda:0`` is
    already on ``cuda`` while device 0 is current.
    """
    if have.type != want.type:
        return False
    if want.type == "cpu" or want.index == have.index:
        return True
    return want.index is None and have.index == current_cuda_index()


def require(d, where: str) -> device:
    """`d` (a string, a ``device`` or a CUDA index) as a usable device with its index filled in.

    Raises RuntimeError naming `where` and the reason when it asks for CUDA and CUDA
    cannot be used here (no GPU, no driver, fastmlp built without CUDA, no CuPy), or
    for a device index this machine does not have.
    """
    d = as_device(d)
    if d.type != "cuda":
        return d
    from . import cuda

    reason = cuda.why_unavailable()
    if reason:
        raise RuntimeError(f"{where}: device '{d}' asks for CUDA, but CUDA is not available: {reason}")
    count = cuda.device_count()
    if d.index is not None and d.index >= count:
        raise RuntimeError(f"{where}: device '{d}' does not exist; this machine has {count} CUDA device(s)")
    return d if d.index is not None else device("cuda", current_cuda_index())


def batch_device(model, requested, where: str) -> Optional[device]:
    """Where ``fit``/``evaluate`` move each batch: None to leave batches where they are (the CPU).

    `requested` is the caller's ``device=`` argument: None means the device of the
    model's parameters. A requested device must be usable (``require``) and must be
    where the model's parameters are: they are not moved behind the optimizer's back.
    """
    have = None
    for p in model.parameters():
        have = p.device
        break
    if requested is None:
        return have if have is not None and have.type == "cuda" else None
    want = require(requested, where)
    if have is not None and have != want:
        raise ValueError(f"{where}: device='{want}' but the model's parameters are on '{have}'; move the model "
                         f"first with model.to('{want}'), before creating its optimizer")
    return want if want.type == "cuda" else None


def device_scope(d: Optional[device]):
    """A context in which `d` is CUDA's current device (``torch.cuda.device(d)``); a no-op for
    None and the CPU. CuPy allocates and launches on the current device."""
    if d is None or d.type != "cuda":
        return contextlib.nullcontext()
    import cupy

    return cupy.cuda.Device(d.index if d.index is not None else current_cuda_index())
