"""Device dispatch, internal: the one place that chooses CPU or CUDA. ``for_array(a)`` /
``for_device(d)`` return a backend module exposing the same functions on both devices
(``cpu.py`` over NumPy and ``fastmlp._C``, ``cuda.py`` over CuPy and ``fastmlp._cuda``), so
ops, layers and optimizers never test for a device.

Not to be confused with the public ``fastmlp.backends`` (``torch.backends``: switches such as
``fastmlp.backends.cuda.matmul.allow_tf32``) or ``fastmlp.cuda`` (``torch.cuda``: is a GPU
usable, which one is current)."""
from __future__ import annotations

import numpy as np

from .._device import device as _device_cls
from . import cpu

_ndarray = np.ndarray


def for_array(arr):
    """The backend that owns this array (NumPy → CPU, CuPy → CUDA)."""
    if type(arr) is _ndarray or isinstance(arr, (_ndarray, np.generic)):
        return cpu
    return _cuda_backend()


def for_device(dev):
    if dev is None or dev.type == "cpu":
        return cpu
    return _cuda_backend(dev)


def _cuda_backend(dev=None):
    from . import cuda

    cuda.require()
    return cuda


def is_cuda_array(arr) -> bool:
    return type(arr) is not _ndarray and not isinstance(arr, np.generic) and hasattr(arr, "__cuda_array_interface__")


__all__ = ["cpu", "for_array", "for_device", "is_cuda_array", "_device_cls"]
