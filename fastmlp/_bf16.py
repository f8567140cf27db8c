"""Array conversions to and from ``fastmlp.bfloat16`` storage (see ``fastmlp._dtype.BF16_NP``).

float32 -> bfloat16 rounds to nearest, ties to even (NaN stays a quiet NaN, overflow goes to
inf, denormals are kept); bfloat16 -> float32 is exact. Other dtypes pass through float32.
bfloat16 tensors live on the CPU only.
"""
from __future__ import annotations

import numpy as np

from . import _C
from ._dtype import BF16_NP

_F32 = np.dtype(np.float32)
_U16 = np.dtype(np.uint16)


def _host(arr, what: str) -> np.ndarray:
    if type(arr) is not np.ndarray:
        raise TypeError(f"{what}: bfloat16 tensors are CPU-only in fastmlp; move the tensor to the CPU first")
    return arr


def to_bf16(arr) -> np.ndarray:
    """A new bfloat16 (BF16_NP) array with arr's values rounded to nearest even."""
    arr = _host(arr, "conversion to bfloat16")
    if arr.dtype == BF16_NP:
        return arr.copy()
    f = np.ascontiguousarray(arr, dtype=_F32)
    return _C.f32_to_bf16(f).view(BF16_NP)


def from_bf16(arr: np.ndarray, np_dtype) -> np.ndarray:
    """A new array of np_dtype with the values of the bfloat16 array arr (exact in float32)."""
    arr = _host(arr, "conversion from bfloat16")
    f = _C.bf16_to_f32(np.ascontiguousarray(arr).view(_U16))
    return f if np.dtype(np_dtype) == _F32 else f.astype(np_dtype)


def convert(arr, np_dtype) -> np.ndarray:
    """arr.astype(np_dtype), through the rounding rules above when either side is bfloat16."""
    np_dtype = np.dtype(np_dtype)
    if np_dtype == BF16_NP:
        return to_bf16(arr)
    if arr.dtype == BF16_NP:
        return from_bf16(arr, np_dtype)
    return arr.astype(np_dtype)


def round_f32(arr: np.ndarray) -> np.ndarray:
    """float32 arr with each value rounded to the nearest bfloat16 (a new float32 array)."""
    return _C.bf16_to_f32(_C.f32_to_bf16(np.ascontiguousarray(arr, dtype=_F32)))
