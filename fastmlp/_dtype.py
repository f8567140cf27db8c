"""dtypes with PyTorch's names (``fastmlp.float32``, ``fastmlp.int64``...), backed by NumPy dtypes.

NumPy has no bfloat16, so ``fastmlp.bfloat16`` is backed by a one-field structured dtype over a
uint16 (``BF16_NP``) holding the bit pattern: two bytes per element like torch.bfloat16, a type
that NumPy tells apart from every number type, and one on which NumPy's arithmetic refuses to
run (so a bfloat16 tensor can never be computed on as if its bits were integers). Values move
in and out through fastmlp._C.f32_to_bf16 / bf16_to_f32 (round to nearest even); see
``fastmlp._bf16``."""
from __future__ import annotations

import builtins

import numpy as np


class dtype:
    """A tensor element type, as ``torch.dtype``."""

    __slots__ = ("name", "np", "is_floating_point", "is_signed", "itemsize")

    def __init__(self, name: str, np_dtype, is_floating_point: builtins.bool, is_signed: builtins.bool):
        self.name = name
        self.np = np.dtype(np_dtype)
        self.is_floating_point = is_floating_point
        self.is_signed = is_signed
        self.itemsize = self.np.itemsize

    def __repr__(self) -> str:
        return f"fastmlp.{self.name}"

    def __reduce__(self):
        return (_by_name, (self.name,))


BF16_NP = np.dtype([("bfloat16", "<u2")])

float16 = dtype("float16", np.float16, True, True)
bfloat16 = dtype("bfloat16", BF16_NP, True, True)
float32 = dtype("float32", np.float32, True, True)
float64 = dtype("float64", np.float64, True, True)
uint8 = dtype("uint8", np.uint8, False, False)
int8 = dtype("int8", np.int8, False, True)
int16 = dtype("int16", np.int16, False, True)
int32 = dtype("int32", np.int32, False, True)
int64 = dtype("int64", np.int64, False, True)
bool_ = dtype("bool", np.bool_, False, False)

ALL = (float16, bfloat16, float32, float64, uint8, int8, int16, int32, int64, bool_)
_FROM_NP = {d.np: d for d in ALL}
_NAMES = {d.name: d for d in ALL}
_NAMES.update({"float": float32, "double": float64, "half": float16, "long": int64, "int": int32,
               "short": int16})

_default_float = float32


def _by_name(name: str) -> dtype:
    return _NAMES[name]


def get_default_dtype() -> dtype:
    """The dtype of floating-point tensors made from Python floats (``torch.get_default_dtype``)."""
    return _default_float


def set_default_dtype(d) -> None:
    """Set the default floating-point dtype: float32 or float64 (``torch.set_default_dtype``)."""
    global _default_float
    d = as_dtype(d)
    if d not in (float32, float64):
        raise TypeError(f"only floating-point types are supported as the default type; got {d}")
    _default_float = d


def from_numpy_dtype(npdt) -> dtype:
    """The fastmlp dtype of a NumPy dtype; TypeError for dtypes fastmlp has no tensors of."""
    d = _FROM_NP.get(np.dtype(npdt).newbyteorder("=") if np.dtype(npdt).byteorder not in "=|" else np.dtype(npdt))
    if d is None:
        raise TypeError(f"can't convert an array of dtype {np.dtype(npdt)}; supported: "
                        + ", ".join(x.name for x in ALL))
    return d


def as_dtype(d) -> dtype:
    """Accept a fastmlp dtype, a NumPy dtype or type, a name, or Python's float/int/bool."""
    if isinstance(d, dtype):
        return d
    if d is builtins.float:
        return _default_float
    if d is builtins.int:
        return int64
    if d is builtins.bool:
        return bool_
    if isinstance(d, str) and d in _NAMES:
        return _NAMES[d]
    try:
        return from_numpy_dtype(np.dtype(d))
    except TypeError:
        raise TypeError(f"not a dtype: {d!r}") from None
