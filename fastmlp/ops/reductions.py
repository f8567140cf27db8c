"""Reductions: ``sum``, ``mean``, ``var``, ``std``, ``max``/``min`` (whole or along a
dim), ``argmax``/``argmin``, ``all``/``any``, and the ordering ops ``sort``, ``topk``,
``unique``. ``ReductionMethods`` (at the bottom) is the part of ``Tensor`` they make.
"""
from __future__ import annotations

import builtins as _b
from collections import namedtuple
from typing import TYPE_CHECKING, Optional

import numpy as np

from .. import _dtype
from ..autograd import Node
from ..backend import for_array
from ..tensor import TensorBase, _norm_dim, _result, _wrap
from .arithmetic import maximum, minimum, sqrt
from .common import _axis, _dims, _float_input, _needs_grad, _put_along, _record
from .indexing import getitem_along

if TYPE_CHECKING:
    from ..tensor import Tensor


# ---- sum and mean --------------------------------------------------------------------------
def _expand_grad(g, shape, dims, keepdim):
    xp = for_array(g).xp
    if dims is None:
        return xp.broadcast_to(g.reshape((1,) * len(shape)) if len(shape) else g, shape)
    if not keepdim:
        for d in dims:
            g = xp.expand_dims(g, d)
    return xp.broadcast_to(g, shape)


class SumBackward0(Node):
    __slots__ = ("shape", "dims", "keepdim")

    def backward(self, g):
        return (_expand_grad(g, self.shape, self.dims, self.keepdim),)


class MeanBackward0(Node):
    __slots__ = ("shape", "dims", "keepdim", "count")

    def backward(self, g):
        return (_expand_grad(g / self.count, self.shape, self.dims, self.keepdim),)


def sum(a: Tensor, dim=None, keepdim: bool = False, dtype=None, *, axis=None, keepdims=None) -> Tensor:
    if axis is not None:
        dim = _axis("sum", dim, None, axis)
    if keepdims is not None:
        keepdim = keepdims
    d = a._data
    dims = _dims(dim, d.ndim)
    if d.dtype.kind in "bu" or (d.dtype.kind == "i" and d.dtype != np.int64):
        d = d.astype(np.int64)
    if dtype is not None:
        d = d.astype(_dtype.as_dtype(dtype).np)
    out = d.sum(axis=dims, keepdims=keepdim)
    node = _record(SumBackward0, (a,), shape=a._data.shape, dims=dims, keepdim=keepdim) if _needs_grad(a) else None
    return _result(for_array(d).xp.asarray(out), node)


def mean(a: Tensor, dim=None, keepdim: bool = False, dtype=None, *, axis=None, keepdims=None) -> Tensor:
    if axis is not None:
        dim = _axis("mean", dim, None, axis)
    if keepdims is not None:
        keepdim = keepdims
    d = a._data
    if dtype is not None:
        d = d.astype(_dtype.as_dtype(dtype).np)
    if d.dtype.kind != "f":
        raise RuntimeError(f"mean(): could not infer output dtype. Input dtype must be either a floating point or "
                           f"complex dtype. Got: {_dtype.from_numpy_dtype(d.dtype).name.capitalize()}")
    dims = _dims(dim, d.ndim)
    count = d.size if dims is None else int(np.prod([d.shape[i] for i in dims]))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = d.mean(axis=dims, keepdims=keepdim) if count else d.sum(axis=dims, keepdims=keepdim) * np.nan
    node = None
    if _needs_grad(a):
        node = _record(MeanBackward0, (a,), shape=d.shape, dims=dims, keepdim=keepdim, count=d.dtype.type(count))
    return _result(for_array(d).xp.asarray(out, dtype=d.dtype), node)


# ---- variance ------------------------------------------------------------------------------
class VarBackward0(Node):
    __slots__ = ("centered", "dims", "denom", "keepdim", "shape")
    SAVES = True

    def backward(self, g):
        g = _expand_grad(g, self.shape, self.dims, self.keepdim)
        return (g * 2 * self.centered / self.denom,)

    def release(self):
        self.centered = None


def var(a: Tensor, dim=None, unbiased: Optional[bool] = None, keepdim: bool = False, correction=None, *,
        axis=None, keepdims=None) -> Tensor:
    if axis is not None:
        dim = _axis("var", dim, None, axis)
    if keepdims is not None:
        keepdim = keepdims
    d = _float_input(a)
    dims = _dims(dim, d.ndim)
    corr = 1 if correction is None and unbiased is None else (correction if correction is not None
                                                               else (1 if unbiased else 0))
    n = d.size if dims is None else int(np.prod([d.shape[i] for i in dims]))
    centered = d - d.mean(axis=dims, keepdims=True)
    denom = d.dtype.type(_b.max(n - corr, 0))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (centered * centered).sum(axis=dims, keepdims=keepdim) / denom
    node = None
    if _needs_grad(a):
        node = _record(VarBackward0, (a,), centered=centered, dims=dims, denom=denom, keepdim=keepdim,
                       shape=d.shape)
    return _result(for_array(d).xp.asarray(out), node)


def std(a: Tensor, dim=None, unbiased: Optional[bool] = None, keepdim: bool = False, correction=None, *,
        axis=None, keepdims=None) -> Tensor:
    if axis is not None:
        dim = _axis("std", dim, None, axis)
    return sqrt(var(a, dim, unbiased, keepdim if keepdims is None else keepdims, correction))


# ---- max and min ---------------------------------------------------------------------------
class MaxBackward0(Node):
    """Full max/min: the gradient is shared equally by the elements equal to the result (the NaNs
    when the result is NaN), as PyTorch does."""

    __slots__ = ("mask",)
    SAVES = True

    def backward(self, g):
        return (self.mask * (g / self.mask.sum()),)

    def release(self):
        self.mask = None


class MaxBackward1(Node):
    """max/min along a dim: the gradient goes to the selected index."""

    __slots__ = ("idx", "shape", "dim", "keepdim")
    SAVES = True

    def backward(self, g):
        xp = for_array(g).xp
        idx = self.idx if self.keepdim else xp.expand_dims(self.idx, self.dim)
        gk = g if self.keepdim else xp.expand_dims(g, self.dim)
        out = xp.zeros(self.shape, dtype=g.dtype)
        xp.put_along_axis(out, idx, gk, axis=self.dim) if xp is np else _put_along(xp, out, idx, gk, self.dim)
        return (out,)

    def release(self):
        self.idx = None


_MaxResult = namedtuple("max", ["values", "indices"])


_MinResult = namedtuple("min", ["values", "indices"])


def _extreme(a: Tensor, dim, keepdim: bool, largest: bool, other=None):
    if other is not None or isinstance(dim, TensorBase):
        other = dim if isinstance(dim, TensorBase) else other
        return maximum(a, other) if largest else minimum(a, other)
    d = a._data
    xp = a._xp()
    if dim is None:
        if d.size == 0:
            raise RuntimeError("max(): Expected reduction dim to be specified for input.numel() == 0.")
        out = d.max() if largest else d.min()
        node = None
        if _needs_grad(a):
            hit = d == out
            if d.dtype.kind == "f" and bool(xp.isnan(out)):  # NaN is the result: its positions get the gradient
                hit = xp.isnan(d)
            node = _record(MaxBackward0, (a,), mask=hit.astype(d.dtype))
        return _result(xp.asarray(out), node)
    dm = _norm_dim(dim, d.ndim)
    idx = (d.argmax if largest else d.argmin)(axis=dm)
    if d.ndim:
        vals = xp.take_along_axis(d, xp.expand_dims(idx, dm), axis=dm)
        if not keepdim:
            vals = vals.squeeze(dm)
    else:
        vals = d.copy()
    idx_out = xp.expand_dims(idx, dm) if keepdim and d.ndim else idx
    node = None
    if _needs_grad(a):
        node = _record(MaxBackward1, (a,), idx=idx_out, shape=d.shape, dim=dm, keepdim=keepdim)
    cls = _MaxResult if largest else _MinResult
    return cls(_result(vals, node), _wrap(idx_out.astype(np.int64)))


def max(a: Tensor, dim=None, keepdim: bool = False, *, axis=None, keepdims=None):
    if axis is not None:
        dim = _axis("max", dim, None, axis)
    return _extreme(a, dim, keepdim if keepdims is None else keepdims, True)


def min(a: Tensor, dim=None, keepdim: bool = False, *, axis=None, keepdims=None):
    if axis is not None:
        dim = _axis("min", dim, None, axis)
    return _extreme(a, dim, keepdim if keepdims is None else keepdims, False)


def _arg_extreme(name: str, a: Tensor, dim, keepdim: bool, axis, keepdims, largest: bool) -> Tensor:
    """argmax / argmin: int64 indices of the extreme along dim (of the flattened tensor without one)."""
    if axis is not None:
        dim = _axis(name, dim, None, axis)
    if keepdims is not None:
        keepdim = keepdims
    d = a._data
    if dim is None:
        return _wrap(for_array(d).xp.asarray(d.argmax() if largest else d.argmin(), dtype=np.int64))
    dm = _norm_dim(dim, d.ndim)
    out = d.argmax(axis=dm) if largest else d.argmin(axis=dm)
    if keepdim:
        out = for_array(d).xp.expand_dims(out, dm)
    return _wrap(out.astype(np.int64))


def argmax(a: Tensor, dim=None, keepdim: bool = False, *, axis=None, keepdims=None) -> Tensor:
    return _arg_extreme("argmax", a, dim, keepdim, axis, keepdims, True)


def argmin(a: Tensor, dim=None, keepdim: bool = False, *, axis=None, keepdims=None) -> Tensor:
    return _arg_extreme("argmin", a, dim, keepdim, axis, keepdims, False)


# ---- truth ---------------------------------------------------------------------------------
def _truth_reduce(name: str, a: Tensor, dim, keepdim: bool, axis, keepdims) -> Tensor:
    if axis is not None:
        dim = _axis(name, dim, None, axis)
    d = a._data
    out = getattr(d, name)(axis=_dims(dim, d.ndim), keepdims=keepdim if keepdims is None else keepdims)
    return _wrap(for_array(d).xp.asarray(out))


def _all(a: Tensor, dim=None, keepdim: bool = False, *, axis=None, keepdims=None) -> Tensor:
    """Whether every element (along dim) is true (``Tensor.all``)."""
    return _truth_reduce("all", a, dim, keepdim, axis, keepdims)


def _any(a: Tensor, dim=None, keepdim: bool = False, *, axis=None, keepdims=None) -> Tensor:
    """Whether any element (along dim) is true (``Tensor.any``)."""
    return _truth_reduce("any", a, dim, keepdim, axis, keepdims)


# ---- ordering ------------------------------------------------------------------------------
_SortResult = namedtuple("sort", ["values", "indices"])


_TopkResult = namedtuple("topk", ["values", "indices"])


def sort(a: Tensor, dim: int = -1, descending: bool = False, *, axis=None):
    if axis is not None:
        dim = _axis("sort", dim, -1, axis)
    d = a._data
    xp = a._xp()
    dm = _norm_dim(dim, d.ndim)
    idx = xp.argsort(-d if descending else d, axis=dm, kind="stable")
    return _SortResult(getitem_along(a, idx, dm), _wrap(idx.astype(np.int64)))


def topk(a: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True, *, axis=None):
    if axis is not None:
        dim = _axis("topk", dim, -1, axis)
    d = a._data
    xp = a._xp()
    dm = _norm_dim(dim, d.ndim)
    if not 0 <= k <= d.shape[dm]:
        raise RuntimeError(f"selected index k={k} out of range for dimension of size {d.shape[dm]}")
    idx = xp.argsort(-d if largest else d, axis=dm, kind="stable")
    idx = xp.take(idx, xp.arange(k), axis=dm)
    return _TopkResult(getitem_along(a, idx, dm), _wrap(idx.astype(np.int64)))


def unique(a: Tensor, sorted: bool = True, return_counts: bool = False):
    xp = a._xp()
    if return_counts:
        vals, counts = xp.unique(a._data, return_counts=True)
        return _wrap(vals), _wrap(counts.astype(np.int64))
    return _wrap(xp.unique(a._data))


# ---- Tensor methods ------------------------------------------------------------------------
class ReductionMethods:
    """Tensor's reductions (``torch.Tensor.sum``, ...); each is the op of the same name above."""

    __slots__ = ()

    sum = sum
    mean = mean
    var = var
    std = std
    max = max
    min = min
    argmax = argmax
    argmin = argmin
    all = _all
    any = _any
    sort = sort
    topk = topk

    def unique(self, sorted=True, return_counts=False):
        return unique(self, sorted, return_counts)
