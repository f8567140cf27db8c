"""``pin_memory=True``: batches in page-locked host memory (``torch.utils.data._utils.pin_memory``).

With a usable CUDA device, every CPU tensor and NumPy array of a batch (inside tuples,
lists, named tuples and dicts) is copied into page-locked ("pinned") host memory from
CuPy, so that its copy to the GPU (``batch.cuda()``, ``batch.to("cuda")``) is one DMA
transfer instead of a staged one. The batch stays on the CPU, as in PyTorch. Without a
CUDA device there is nothing to pin for, and batches pass unchanged.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from ...tensor import Tensor, _wrap

__all__ = ["pinner"]


def _pinned_copy(arr: np.ndarray, empty_pinned: Callable) -> np.ndarray:
    out = empty_pinned(arr.shape, dtype=arr.dtype)
    out[...] = arr
    return out


def _pin(x: Any, empty_pinned: Callable) -> Any:
    if isinstance(x, Tensor):
        if type(x._data) is np.ndarray:
            return _wrap(_pinned_copy(x._data, empty_pinned), x._requires_grad)
        return x
    if type(x) is np.ndarray and x.dtype.kind in "biufc":
        return _pinned_copy(x, empty_pinned)
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return type(x)(*(_pin(v, empty_pinned) for v in x))
    if isinstance(x, (tuple, list)):
        return type(x)(_pin(v, empty_pinned) for v in x)
    if isinstance(x, dict):
        return {k: _pin(v, empty_pinned) for k, v in x.items()}
    return x


def pinner() -> Optional[Callable[[Any], Any]]:
    """The function that pins a batch, or None when no CUDA device is usable (nothing to pin for)."""
    from ... import cuda

    if not cuda.is_available():
        return None
    import cupyx

    empty_pinned = cupyx.empty_pinned
    return lambda batch: _pin(batch, empty_pinned)
