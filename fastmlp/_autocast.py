"""``fastmlp.autocast``: mixed precision on the CPU, as ``torch.autocast("cpu", dtype=torch.bfloat16)``.

Inside ``with fastmlp.autocast("cpu"):`` the matrix products of float32 CPU tensors run on
operands rounded to bfloat16 (round to nearest even) with float32 accumulation:
``F.linear`` / ``nn.Linear`` (forward, and in the backward pass both products of their
gradients, ``dW = dYᵀ·X`` and ``dX = dY·W``) and ``matmul`` / ``mm`` / ``@``. Everything else
stays float32: activations, losses, softmax, reductions, optimizer steps, and the weights
themselves (the master copy; their bfloat16 copies exist only inside the GEMM's packed panels).

Where this differs from PyTorch: PyTorch's autocast returns bfloat16 tensors from Linear and
matmul (and so keeps bfloat16 activations between layers); fastmlp returns float32, the GEMM's
accumulator, unrounded. Each product's inputs are rounded to bfloat16 as in PyTorch, so a
layer's output differs from PyTorch's by that last rounding only; the next layer rounds it
when it multiplies. float64 tensors are not lowered (PyTorch does not lower them either).

The state is per thread, as PyTorch's: a context entered in one thread does not change
another thread's products.
"""
from __future__ import annotations

import functools
import threading
from typing import Any, Callable, Optional, TypeVar

import numpy as np

from . import _dtype

F = TypeVar("F", bound=Callable[..., Any])

_SUPPORTED_DEVICES = ("cpu",)
_F32 = np.dtype(np.float32)
_ndarray = np.ndarray


class _State(threading.local):
    def __init__(self) -> None:
        self.enabled = False
        self.dtype = _dtype.bfloat16


_state = _State()


def _check_dtype(device_type: str, dtype) -> _dtype.dtype:
    try:
        d = _dtype.as_dtype(dtype)
    except TypeError:
        raise TypeError(f"fastmlp.autocast: dtype must be fastmlp.bfloat16 or fastmlp.float32; "
                        f"got {dtype!r}") from None
    if d not in (_dtype.bfloat16, _dtype.float32):
        raise ValueError(f"fastmlp.autocast: dtype {d} is not supported on '{device_type}'; "
                         "use fastmlp.bfloat16 (or fastmlp.float32 for no lowering)")
    return d


class autocast:
    """Run the matrix products of float32 CPU tensors in bfloat16 (``torch.autocast``).

    ``autocast(device_type="cpu", dtype=fastmlp.bfloat16, enabled=True, cache_enabled=None)``,
    as a context manager or a decorator; contexts nest, and ``enabled=False`` switches it off
    inside an enabled region. ``dtype=fastmlp.float32`` lowers nothing. Only ``"cpu"`` is
    supported (ValueError otherwise), and only bfloat16 / float32 as dtype. See the module
    docstring for what runs in bfloat16 and how the result dtype differs from PyTorch's.
    """

    def __init__(self, device_type: str, dtype=None, enabled: bool = True, cache_enabled: Optional[bool] = None):
        if not isinstance(device_type, str):
            raise TypeError(f"fastmlp.autocast: device_type must be a string such as 'cpu'; got {device_type!r}")
        if device_type not in _SUPPORTED_DEVICES:
            raise ValueError(f"fastmlp.autocast: device_type '{device_type}' is not supported; fastmlp lowers "
                             "products only on the CPU (device_type='cpu')")
        if not isinstance(enabled, bool):
            raise TypeError(f"fastmlp.autocast: enabled must be a bool; got {enabled!r}")
        self.device = device_type
        self.fast_dtype = _check_dtype(device_type, _dtype.bfloat16 if dtype is None else dtype)
        self._enabled = enabled
        self._cache_enabled = cache_enabled  # accepted for PyTorch compatibility: fastmlp keeps no weight cache
        self._saved: list[tuple[bool, _dtype.dtype]] = []

    def __enter__(self) -> "autocast":
        self._saved.append((_state.enabled, _state.dtype))
        _state.enabled = self._enabled
        _state.dtype = self.fast_dtype
        return self

    def __exit__(self, *exc) -> None:
        _state.enabled, _state.dtype = self._saved.pop()

    def __call__(self, func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with autocast(self.device, self.fast_dtype, self._enabled, self._cache_enabled):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"fastmlp.autocast(device_type='{self.device}', dtype={self.fast_dtype}, enabled={self._enabled})"


def is_autocast_enabled(device_type: str = "cpu") -> bool:
    """Whether an enabled autocast region is active for `device_type` (``torch.is_autocast_enabled``)."""
    return device_type in _SUPPORTED_DEVICES and _state.enabled


def get_autocast_dtype(device_type: str = "cpu") -> _dtype.dtype:
    """The dtype autocast lowers to on `device_type` (``torch.get_autocast_dtype``)."""
    if device_type not in _SUPPORTED_DEVICES:
        raise ValueError(f"fastmlp.get_autocast_dtype: device_type '{device_type}' is not supported; use 'cpu'")
    return _state.dtype


def lowers(*arrays) -> bool:
    """Whether a product of these operands runs in bfloat16 here: an enabled bfloat16 region and
    every operand a float32 CPU (NumPy) array."""
    if not _state.enabled or _state.dtype is not _dtype.bfloat16:
        return False
    for a in arrays:
        if type(a) is not _ndarray or a.dtype != _F32:
            return False
    return True
