"""Tensor factories with PyTorch's names and defaults (``torch.tensor``, ``torch.zeros``, ...)."""
from __future__ import annotations

import math
import numbers
from typing import Optional

import numpy as np

from . import _bf16, _dtype
from . import random as _random
from ._device import as_device
from .backend import for_device, is_cuda_array
from .tensor import Size, Tensor, _infer_array, _wrap

__all__ = ["tensor", "as_tensor", "from_numpy", "zeros", "ones", "empty", "full", "zeros_like", "ones_like",
           "empty_like", "full_like", "rand", "randn", "randint", "randperm", "rand_like", "randn_like", "arange",
           "linspace", "eye", "normal", "scalar_tensor"]


def _sizes(size) -> tuple:
    if len(size) == 1 and isinstance(size[0], (tuple, list, Size)):
        size = tuple(size[0])
    out = []
    for s in size:
        if isinstance(s, Tensor):
            s = s.item()
        if not isinstance(s, numbers.Integral):
            raise TypeError(f"sizes must be integers; got {type(s).__name__} {s!r}")
        if s < 0:
            raise RuntimeError(f"Trying to create tensor with negative dimension {s}: {list(size)}")
        out.append(int(s))
    return tuple(out)


def _finish(arr: np.ndarray, device, requires_grad: bool) -> Tensor:
    if device is not None:
        dev = as_device(device)
        if dev.type != "cpu":
            arr = for_device(dev).from_numpy(arr, dev)
    t = _wrap(arr)
    if requires_grad:
        t.requires_grad = True
    return t


def _no_bf16(np_dtype: np.dtype) -> np.dtype:
    if np_dtype == _dtype.BF16_NP:
        raise TypeError("this factory does not make bfloat16 tensors: make a float32 one and convert it with "
                        ".to(fastmlp.bfloat16) (tensor, zeros, ones and full accept dtype=fastmlp.bfloat16)")
    return np_dtype


def _float_dtype(dtype) -> np.dtype:
    return _no_bf16((_dtype.as_dtype(dtype) if dtype is not None else _dtype.get_default_dtype()).np)


def _is_bf16(dtype) -> bool:
    return dtype is not None and _dtype.as_dtype(dtype) is _dtype.bfloat16


def _as_bf16(t: Tensor, requires_grad: bool) -> Tensor:
    """The float32 tensor t rounded to bfloat16 storage (fastmlp._bf16), as a new leaf."""
    out = _wrap(_bf16.to_bf16(t._data))
    if requires_grad:
        out.requires_grad = True
    return out


def tensor(data, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A new tensor copying `data` (nested lists, scalars, NumPy arrays, tensors), as ``torch.tensor``."""
    if _is_bf16(dtype):
        return _as_bf16(tensor(data, _dtype.float32, device), requires_grad)
    if isinstance(data, Tensor) and is_cuda_array(data._data) and (device is None or as_device(device).type == "cuda"):
        arr = data._data.astype(_dtype.as_dtype(dtype).np) if dtype is not None else data._data.copy()
        t = _wrap(arr)
        if requires_grad:
            t.requires_grad = True
        return t
    arr = _infer_array(data, dtype)
    arr = np.array(arr, copy=True)
    return _finish(arr, device, requires_grad)


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """Like tensor(), but shares memory with a NumPy array (or tensor) when dtype and device allow."""
    if _is_bf16(dtype) and not isinstance(data, Tensor):
        return tensor(data, dtype, device)
    if isinstance(data, Tensor):
        return data.to(device=device, dtype=dtype) if (device is not None or dtype is not None) else data
    if is_cuda_array(data):
        t = _wrap(data if dtype is None else data.astype(_dtype.as_dtype(dtype).np))
        return t
    arr = _infer_array(data, dtype)
    if arr is data and isinstance(data, np.ndarray) and not data.flags.writeable:
        arr = data.copy()
    return _finish(arr, device, False)


def from_numpy(arr: np.ndarray) -> Tensor:
    """A tensor sharing memory with a NumPy array (``torch.from_numpy``)."""
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"from_numpy expected a numpy.ndarray; got {type(arr).__name__}")
    _dtype.from_numpy_dtype(arr.dtype)
    return _wrap(arr)


def zeros(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    if _is_bf16(dtype):
        return _as_bf16(zeros(*size, dtype=_dtype.float32, device=device), requires_grad)
    return _finish(np.zeros(_sizes(size), dtype=_float_dtype(dtype)), device, requires_grad)


def ones(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    if _is_bf16(dtype):
        return _as_bf16(ones(*size, dtype=_dtype.float32, device=device), requires_grad)
    return _finish(np.ones(_sizes(size), dtype=_float_dtype(dtype)), device, requires_grad)


def empty(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _finish(np.empty(_sizes(size), dtype=_float_dtype(dtype)), device, requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    if _is_bf16(dtype):
        return _as_bf16(full(size, fill_value, dtype=_dtype.float32, device=device), requires_grad)
    if dtype is None:
        if isinstance(fill_value, bool):
            dtype = _dtype.bool_
        elif isinstance(fill_value, numbers.Integral):
            dtype = _dtype.int64
    size = _sizes((size,) if isinstance(size, (tuple, list, Size)) else (size,))
    return _finish(np.full(size, fill_value, dtype=_float_dtype(dtype)), device, requires_grad)


def scalar_tensor(value, dtype=None, device=None) -> Tensor:
    return _finish(np.asarray(value, dtype=_float_dtype(dtype)), device, False)


def _like(t: Tensor, dtype, device):
    dt = _no_bf16(_dtype.as_dtype(dtype).np if dtype is not None else t._data.dtype)
    return dt, (device if device is not None else t.device)


def zeros_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    dt, dev = _like(t, dtype, device)
    return _finish(np.zeros(t._data.shape, dtype=dt), dev, requires_grad)


def ones_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    dt, dev = _like(t, dtype, device)
    return _finish(np.ones(t._data.shape, dtype=dt), dev, requires_grad)


def empty_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    dt, dev = _like(t, dtype, device)
    return _finish(np.empty(t._data.shape, dtype=dt), dev, requires_grad)


def full_like(t: Tensor, fill_value, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    dt, dev = _like(t, dtype, device)
    return _finish(np.full(t._data.shape, fill_value, dtype=dt), dev, requires_grad)


def rand(*size, generator=None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Uniform on [0, 1)."""
    arr = _random.uniform_array(0.0, 1.0, _sizes(size), _float_dtype(dtype), generator)
    return _finish(arr, device, requires_grad)


def randn(*size, generator=None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Standard normal."""
    arr = _random.normal_array(0.0, 1.0, _sizes(size), _float_dtype(dtype), generator)
    return _finish(arr, device, requires_grad)


def rand_like(t: Tensor, dtype=None, device=None) -> Tensor:
    dt, dev = _like(t, dtype, device)
    return _finish(_random.uniform_array(0.0, 1.0, t._data.shape, dt), dev, False)


def randn_like(t: Tensor, dtype=None, device=None) -> Tensor:
    dt, dev = _like(t, dtype, device)
    return _finish(_random.normal_array(0.0, 1.0, t._data.shape, dt), dev, False)


def randint(low, high=None, size=None, generator=None, dtype=None, device=None) -> Tensor:
    """``randint(high, size)`` or ``randint(low, high, size)``: integers in [low, high)."""
    if size is None:
        if isinstance(high, (tuple, list, Size)):
            size, high, low = high, low, 0
        else:
            raise TypeError("randint() missing required argument 'size'")
    if high is None:
        low, high = 0, low
    if high <= low:
        raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got from={low} >= to={high}")
    arr = _random.randint_array(low, high, _sizes((size,) if not isinstance(size, (tuple, list, Size)) else (size,)),
                                generator)
    if dtype is not None:
        arr = arr.astype(_dtype.as_dtype(dtype).np)
    return _finish(arr, device, False)


def randperm(n: int, generator=None, dtype=None, device=None) -> Tensor:
    arr = _random.permutation(n, generator)
    if dtype is not None:
        arr = arr.astype(_dtype.as_dtype(dtype).np)
    return _finish(arr, device, False)


def normal(mean, std, size=None, generator=None, dtype=None, device=None) -> Tensor:
    """``normal(mean, std, size)`` with float mean/std, or element-wise with tensor mean/std."""
    if isinstance(mean, Tensor) or isinstance(std, Tensor):
        m = mean._host() if isinstance(mean, Tensor) else mean
        s = std._host() if isinstance(std, Tensor) else std
        shape = np.broadcast(np.asarray(m), np.asarray(s)).shape
        ref = mean if isinstance(mean, Tensor) else std
        arr = _random._gen(generator).np.normal(0.0, 1.0, size=shape) * s + m
        return _finish(arr.astype(ref._data.dtype), ref.device if device is None else device, False)
    if size is None:
        raise TypeError("normal() with float mean and std needs a size")
    arr = _random.normal_array(mean, std, _sizes((size,) if not isinstance(size, (tuple, list, Size)) else (size,)),
                               _float_dtype(dtype), generator)
    return _finish(arr, device, False)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Values from start (inclusive) to end (exclusive) by step; int64 unless any bound is a float."""
    if end is None:
        start, end = 0, start
    vals = [v.item() if isinstance(v, Tensor) else v for v in (start, end, step)]
    start, end, step = vals
    if step == 0:
        raise RuntimeError("step must be nonzero")
    if dtype is None:
        is_float = any(isinstance(v, float) for v in vals)
        dtype = _dtype.get_default_dtype() if is_float else _dtype.int64
    dt = _dtype.as_dtype(dtype).np
    n = max(int(math.ceil((end - start) / step)), 0)
    if dt.kind == "f":
        arr = (start + np.arange(n, dtype=np.float64) * step).astype(dt)
    else:
        arr = np.arange(start, end, step, dtype=dt)
    return _finish(arr, device, requires_grad)


def linspace(start, end, steps: int, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    arr = np.linspace(start, end, int(steps)).astype(_float_dtype(dtype))
    return _finish(arr, device, requires_grad)


def eye(n: int, m: Optional[int] = None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _finish(np.eye(n, m, dtype=_float_dtype(dtype)), device, requires_grad)
