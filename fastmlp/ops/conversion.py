"""Copies and conversions: ``clone``, ``contiguous``, a dtype cast and a move between
devices (what ``Tensor.to``, ``.float()``, ``.cuda()`` ... do), each with its gradient."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import _bf16
from ..autograd import Node
from ..backend import for_device
from ..tensor import _result
from .common import _needs_grad, _record

if TYPE_CHECKING:
    from ..tensor import Tensor

_ndarray = np.ndarray


# ---- copies --------------------------------------------------------------------------------
class CloneBackward0(Node):
    __slots__ = ()

    def backward(self, g):
        return (g,)


def clone(a: Tensor) -> Tensor:
    return _result(a._data.copy(), _record(CloneBackward0, (a,)) if _needs_grad(a) else None)


def contiguous(a: Tensor) -> Tensor:
    out = a._xp().ascontiguousarray(a._data)
    return _result(out, _record(CloneBackward0, (a,)) if _needs_grad(a) else None)


# ---- dtype and device ----------------------------------------------------------------------
class ToCopyBackward0(Node):
    __slots__ = ("dtype", "src_cpu")

    def backward(self, g):
        if self.src_cpu and type(g) is not _ndarray:
            g = g.get()
        elif not self.src_cpu and type(g) is _ndarray:
            from ..backend import cuda as _cuda_be

            g = _cuda_be.from_numpy(g)
        return (_bf16.convert(g, self.dtype) if g.dtype != self.dtype else g,)


def cast(a: Tensor, dt) -> Tensor:
    """a converted to dt; to and from bfloat16 through round-to-nearest-even (fastmlp._bf16)."""
    out = _bf16.convert(a._data, dt.np)
    node = None
    if _needs_grad(a) and dt.is_floating_point:
        node = _record(ToCopyBackward0, (a,), dtype=a._data.dtype, src_cpu=type(a._data) is _ndarray)
    return _result(out, node)


def to_device(a: Tensor, dev) -> Tensor:
    if dev.type == "cpu":
        out = a._data.get() if type(a._data) is not _ndarray else a._data
    else:
        out = for_device(dev).from_numpy(a._data, dev)
    node = None
    if _needs_grad(a):
        node = _record(ToCopyBackward0, (a,), dtype=a._data.dtype, src_cpu=type(a._data) is _ndarray)
    return _result(out, node)
