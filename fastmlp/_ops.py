"""Differentiable tensor ops: arithmetic with broadcasting, reductions, shape ops,
indexing, comparisons. Each op computes its result with the array library of its
device and, when a gradient is needed, records one Node whose ``backward`` sits
right below the forward. The hot MLP ops (Linear, activations, softmax, losses,
dropout) live in ``fastmlp.nn.functional`` and call the native kernels.
"""
from __future__ import annotations

import builtins as _b
import math
import numbers
from collections import namedtuple
from typing import Optional, Sequence

import numpy as np

from . import _dtype
from .autograd import Node, _GradMode, bump
from .backend import for_array, for_device
from .tensor import Size, Tensor, _norm_dim, _result, _wrap

_ndarray = np.ndarray
_F32 = np.dtype(np.float32)
_BOOL = np.dtype(np.bool_)


# ---- helpers -------------------------------------------------------------------------
def unbroadcast(g, shape):
    """Sum a broadcast gradient back down to `shape`."""
    if g.shape == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    if lead > 0:
        g = g.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def _needs_grad(*ts) -> bool:
    if not _GradMode.enabled:
        return False
    for t in ts:
        if t is not None and t._rg:
            return True
    return False


def _category(kind: str) -> int:
    return 2 if kind in "fc" else (0 if kind == "b" else 1)


def _result_dtype(a, b) -> np.dtype:
    """PyTorch's type promotion for a binary op between tensors and Python scalars.

    The highest category (bool < integer < floating) wins; within it, dimensioned
    tensors outrank 0-d tensors, which outrank Python scalars; a category reached
    only through Python scalars gives the default dtype of that category.
    """
    cands = []
    for x in (a, b):
        if isinstance(x, Tensor):
            dt = x._data.dtype
            cands.append((_category(dt.kind), 2 if x._data.ndim else 1, dt))
        elif isinstance(x, bool):
            cands.append((0, 0, None))
        elif isinstance(x, numbers.Integral):
            cands.append((1, 0, None))
        elif isinstance(x, numbers.Real):
            cands.append((2, 0, None))
        else:
            raise TypeError(f"unsupported operand type {type(x).__name__}")
    cat = _b.max(c[0] for c in cands)
    top = [c for c in cands if c[0] == cat]
    prio = _b.max(c[1] for c in top)
    dts = [c[2] for c in top if c[1] == prio]
    if prio == 0:
        return _dtype.get_default_dtype().np if cat == 2 else (np.dtype(np.int64) if cat == 1 else _BOOL)
    return np.result_type(*dts) if len(dts) > 1 else dts[0]


def _as_tensor_operand(x):
    if isinstance(x, Tensor) or isinstance(x, numbers.Number):
        return x
    if isinstance(x, (np.ndarray, list, tuple)) or hasattr(x, "__cuda_array_interface__"):
        from .creation import as_tensor

        return as_tensor(x)
    raise TypeError(f"unsupported operand type {type(x).__name__} for a tensor operation")


def _check_same_device(ad, bd) -> None:
    if type(ad) is not type(bd) or (type(ad) is not _ndarray and ad.device.id != bd.device.id):
        da = "cpu" if type(ad) is _ndarray else f"cuda:{ad.device.id}"
        db = "cpu" if type(bd) is _ndarray else f"cuda:{bd.device.id}"
        raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, "
                           f"{da} and {db}!")


def _binary_arrays(a, b, true_div: bool = False):
    """(a_array, b_array, a_tensor_or_None, b_tensor_or_None) in the promoted dtype."""
    b = _as_tensor_operand(b)
    a = _as_tensor_operand(a)
    ta = a if isinstance(a, Tensor) else None
    tb = b if isinstance(b, Tensor) else None
    if ta is not None and tb is not None and ta._data.dtype is tb._data.dtype and (
            not true_div or ta._data.dtype.kind == "f"):
        ad, bd = ta._data, tb._data
        if type(ad) is not type(bd) or type(ad) is not _ndarray:
            _check_same_device(ad, bd)
        return ad, bd, ta, tb
    rt = _result_dtype(a, b)
    if true_div and rt.kind not in "fc":
        rt = _dtype.get_default_dtype().np
    ref = (ta if ta is not None else tb)._data
    xp = for_array(ref).xp
    if ta is not None:
        ad = ta._data if ta._data.dtype == rt else ta._data.astype(rt)
    else:
        ad = xp.asarray(a, dtype=rt)
    if tb is not None:
        bd = tb._data if tb._data.dtype == rt else tb._data.astype(rt)
    else:
        bd = xp.asarray(b, dtype=rt)
    if ta is not None and tb is not None and (type(ta._data) is not type(tb._data) or type(ta._data) is not _ndarray):
        _check_same_device(ta._data, tb._data)
    return ad, bd, ta, tb


def _broadcast_error(sa, sb) -> Optional[RuntimeError]:
    """PyTorch's error for shapes that do not broadcast (naming the last dimension where they
    differ), or None when they do broadcast."""
    n = _b.max(len(sa), len(sb))
    for i in range(1, n + 1):
        x = sa[-i] if i <= len(sa) else 1
        y = sb[-i] if i <= len(sb) else 1
        if x != y and x != 1 and y != 1:
            return RuntimeError(f"The size of tensor a ({x}) must match the size of tensor b ({y}) at non-singleton "
                                f"dimension {n - i} (shapes {list(sa)} and {list(sb)})")
    return None


def _shape_of(x) -> tuple:
    """The shape of an array (of any backend), a scalar or a nested sequence."""
    shape = getattr(x, "shape", None)
    return tuple(shape) if shape is not None else np.shape(x)


def _raise_broadcast(exc: ValueError, *shapes) -> None:
    """Re-raise NumPy's error for operands that do not broadcast as PyTorch's RuntimeError.

    Called only once the op has failed, so the success path pays nothing for it."""
    acc = tuple(shapes[0])
    for sh in shapes[1:]:
        err = _broadcast_error(acc, tuple(sh))
        if err is not None:
            raise err from None
        acc = np.broadcast_shapes(acc, tuple(sh))
    raise exc


def _raise_output_shape(exc: ValueError, out_shape, result_shape) -> None:
    """PyTorch's error for an in-place op whose broadcast result is larger than its output."""
    if tuple(result_shape) != tuple(out_shape):
        raise RuntimeError(f"output with shape {list(out_shape)} doesn't match the broadcast shape "
                           f"{list(result_shape)}") from None
    raise exc


def _grad_dtype_fix(g, like):
    return g if g.dtype == like.dtype else g.astype(like.dtype)


# ---- binary arithmetic -------------------------------------------------------------------
class AddBackward0(Node):
    __slots__ = ("sa", "sb", "alpha")

    def backward(self, g):
        return (unbroadcast(g, self.sa) if self.next[0] is not None else None,
                unbroadcast(g * self.alpha if self.alpha != 1 else g, self.sb) if self.next[1] is not None else None)


class SubBackward0(Node):
    __slots__ = ("sa", "sb", "alpha")

    def backward(self, g):
        return (unbroadcast(g, self.sa) if self.next[0] is not None else None,
                unbroadcast(-g * self.alpha if self.alpha != 1 else -g, self.sb) if self.next[1] is not None
                else None)


class MulBackward0(Node):
    __slots__ = ("a", "b", "sa", "sb")
    SAVES = True
    SAVED_TENSORS = (("a", 1), ("b", 0))

    def backward(self, g):
        return (unbroadcast(g * self.b, self.sa) if self.next[0] is not None else None,
                unbroadcast(g * self.a, self.sb) if self.next[1] is not None else None)

    def release(self):
        self.a = self.b = None


class DivBackward0(Node):
    __slots__ = ("a", "b", "sa", "sb")
    SAVES = True
    SAVED_TENSORS = (("a", 1), ("b", -1))

    def backward(self, g):
        ga = unbroadcast(g / self.b, self.sa) if self.next[0] is not None else None
        gb = unbroadcast(-g * self.a / (self.b * self.b), self.sb) if self.next[1] is not None else None
        return ga, gb

    def release(self):
        self.a = self.b = None


def _record(node_cls, inputs, **fields):
    node = node_cls(inputs)
    for k, v in fields.items():
        setattr(node, k, v)
    return node


def add(a, b, alpha=1):
    ad, bd, ta, tb = _binary_arrays(a, b)
    try:
        out = ad + (bd * alpha if alpha != 1 else bd)
    except ValueError as e:
        _raise_broadcast(e, ad.shape, bd.shape)
    node = None
    if _needs_grad(ta, tb):
        node = _record(AddBackward0, (ta, tb), sa=ad.shape, sb=bd.shape, alpha=alpha)
    return _result(out, node)


def sub(a, b, alpha=1):
    ad, bd, ta, tb = _binary_arrays(a, b)
    if ad.dtype == _BOOL:
        raise RuntimeError("Subtraction, the `-` operator, with two bool tensors is not supported")
    try:
        out = ad - (bd * alpha if alpha != 1 else bd)
    except ValueError as e:
        _raise_broadcast(e, ad.shape, bd.shape)
    node = None
    if _needs_grad(ta, tb):
        node = _record(SubBackward0, (ta, tb), sa=ad.shape, sb=bd.shape, alpha=alpha)
    return _result(out, node)


def mul(a, b):
    ad, bd, ta, tb = _binary_arrays(a, b)
    try:
        out = ad * bd
    except ValueError as e:
        _raise_broadcast(e, ad.shape, bd.shape)
    node = None
    if _needs_grad(ta, tb):
        node = _record(MulBackward0, (ta, tb), a=ad, b=bd, sa=ad.shape, sb=bd.shape)
    return _result(out, node)


def div(a, b, rounding_mode=None):
    if rounding_mode is not None:
        ad, bd, ta, tb = _binary_arrays(a, b)
        xp = for_array(ad).xp
        if rounding_mode not in ("floor", "trunc"):
            raise ValueError("div expected rounding_mode to be one of None, 'trunc', or 'floor'; got "
                             f"{rounding_mode!r}")
        try:
            if rounding_mode == "floor":
                out = xp.floor_divide(ad, bd)
            else:
                out = xp.trunc(ad / bd).astype(ad.dtype) if ad.dtype.kind in "iu" else xp.trunc(ad / bd)
        except ValueError as e:
            _raise_broadcast(e, ad.shape, bd.shape)
        return _result(out, None)
    ad, bd, ta, tb = _binary_arrays(a, b, true_div=True)
    try:
        with np.errstate(divide="ignore", invalid="ignore"):
            out = ad / bd
    except ValueError as e:
        _raise_broadcast(e, ad.shape, bd.shape)
    node = None
    if _needs_grad(ta, tb):
        node = _record(DivBackward0, (ta, tb), a=ad, b=bd, sa=ad.shape, sb=bd.shape)
    return _result(out, node)


class PowBackward0(Node):
    """d(a^e)/da = e·a^(e-1) for a scalar exponent e."""

    __slots__ = ("a", "e")
    SAVES = True
    SAVED_TENSORS = (("a", -1),)

    def backward(self, g):
        if self.e == 0:
            return (g * 0,)
        return (g * (self.e * self.a ** (self.e - 1)),)

    def release(self):
        self.a = None


class PowBackward1(Node):
    """Tensor exponent: d/da = b·a^(b-1), d/db = a^b·log a."""

    __slots__ = ("a", "b", "out", "sa", "sb")
    SAVES = True
    SAVED_TENSORS = (("a", -1), ("b", 0), ("out", 1))

    def backward(self, g):
        xp = for_array(g).xp
        ga = gb = None
        if self.next[0] is not None:
            ga = unbroadcast(g * self.b * self.a ** (self.b - 1), self.sa)
        if self.next[1] is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                la = xp.where(self.a > 0, xp.log(xp.where(self.a > 0, self.a, 1)), 0)
            gb = unbroadcast(g * self.out * la, self.sb)
        return ga, gb

    def release(self):
        self.a = self.b = self.out = None


def pow(a, b):
    if isinstance(a, Tensor) and isinstance(b, numbers.Real) and not isinstance(b, bool):
        ad = a._data
        if ad.dtype.kind not in "fc" and isinstance(b, float):
            ad = ad.astype(_dtype.get_default_dtype().np)
        if ad.dtype.kind in "iu" and b < 0:
            raise RuntimeError("Integers to negative integer powers are not allowed.")
        e = ad.dtype.type(b) if ad.dtype.kind == "f" else b
        out = ad ** e
        node = _record(PowBackward0, (a,), a=ad, e=b) if _needs_grad(a) else None
        return _result(out, node)
    ad, bd, ta, tb = _binary_arrays(a, b)
    try:
        with np.errstate(divide="ignore", invalid="ignore"):
            out = ad ** bd
    except ValueError as e:
        _raise_broadcast(e, ad.shape, bd.shape)
    node = None
    if _needs_grad(ta, tb):
        node = _record(PowBackward1, (ta, tb), a=ad, b=bd, out=out, sa=ad.shape, sb=bd.shape)
    return _result(out, node)


# ---- matmul ----------------------------------------------------------------------------
class MmBackward0(Node):
    __slots__ = ("a", "b")
    SAVES = True
    SAVED_TENSORS = (("a", 1), ("b", 0))

    def backward(self, g):
        a, b = self.a, self.b
        xp = for_array(g).xp
        ga = gb = None
        if a.ndim == 1 and b.ndim == 1:  # dot
            return (g * b if self.next[0] is not None else None, g * a if self.next[1] is not None else None)
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = g
        if a.ndim == 1:
            g2 = xp.expand_dims(g2, -2)
        if b.ndim == 1:
            g2 = xp.expand_dims(g2, -1)
        if self.next[0] is not None:
            ga = g2 @ xp.swapaxes(b2, -1, -2)
            ga = unbroadcast(ga, a2.shape).reshape(a.shape)
        if self.next[1] is not None:
            gb = xp.swapaxes(a2, -1, -2) @ g2
            gb = unbroadcast(gb, b2.shape).reshape(b.shape)
        return ga, gb

    def release(self):
        self.a = self.b = None


def matmul(a, b):
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        a, b = _as_tensor_operand(a), _as_tensor_operand(b)
        if not isinstance(a, Tensor) or not isinstance(b, Tensor):
            raise TypeError("matmul needs two tensors")
    ad, bd = a._data, b._data
    _check_same_device(ad, bd)
    if ad.ndim == 0 or bd.ndim == 0:
        raise RuntimeError("both arguments to matmul need to be at least 1D, but they are "
                           f"{ad.ndim}D and {bd.ndim}D")
    ka = ad.shape[-1]
    kb = bd.shape[0] if bd.ndim == 1 else bd.shape[-2]
    if ka != kb:
        sa = "x".join(map(str, ad.shape if ad.ndim > 1 else (1,) + ad.shape))
        sb = "x".join(map(str, bd.shape if bd.ndim > 1 else bd.shape + (1,)))
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({sa} and {sb})")
    if ad.dtype != bd.dtype:
        rt = _result_dtype(a, b)
        ad, bd = ad.astype(rt), bd.astype(rt)
    out = ad @ bd
    node = _record(MmBackward0, (a, b), a=ad, b=bd) if _needs_grad(a, b) else None
    return _result(out, node)


# ---- unary math ----------------------------------------------------------------------------
class NegBackward0(Node):
    __slots__ = ()

    def backward(self, g):
        return (-g,)


class ExpBackward0(Node):
    __slots__ = ("out",)
    SAVES = True
    SAVED_TENSORS = (("out", -1),)

    def backward(self, g):
        return (g * self.out,)

    def release(self):
        self.out = None


class LogBackward0(Node):
    __slots__ = ("a",)
    SAVES = True
    SAVED_TENSORS = (("a", -1),)

    def backward(self, g):
        return (g / self.a,)

    def release(self):
        self.a = None


class SqrtBackward0(Node):
    __slots__ = ("out",)
    SAVES = True
    SAVED_TENSORS = (("out", -1),)

    def backward(self, g):
        return (g / (2 * self.out),)

    def release(self):
        self.out = None


class AbsBackward0(Node):
    __slots__ = ("a",)
    SAVES = True
    SAVED_TENSORS = (("a", -1),)

    def backward(self, g):
        return (g * for_array(g).xp.sign(self.a),)

    def release(self):
        self.a = None


class ClampBackward0(Node):
    __slots__ = ("mask",)
    SAVES = True

    def backward(self, g):
        return (g * self.mask,)

    def release(self):
        self.mask = None


class SigmoidBackward0(Node):
    __slots__ = ("out",)
    SAVES = True

    def backward(self, g):
        return (g * self.out * (1 - self.out),)

    def release(self):
        self.out = None


class TanhBackward0(Node):
    __slots__ = ("out",)
    SAVES = True

    def backward(self, g):
        return (g * (1 - self.out * self.out),)

    def release(self):
        self.out = None


def _float_input(t: Tensor):
    d = t._data
    return d if d.dtype.kind == "f" else d.astype(_dtype.get_default_dtype().np)


def neg(a: Tensor) -> Tensor:
    if a._data.dtype == _BOOL:
        raise RuntimeError("Negation, the `-` operator, on a bool tensor is not supported; use ~ or logical_not()")
    return _result(-a._data, _record(NegBackward0, (a,)) if _needs_grad(a) else None)


def exp(a: Tensor) -> Tensor:
    xp = a._xp()
    with np.errstate(over="ignore"):
        out = xp.exp(_float_input(a))
    return _result(out, _record(ExpBackward0, (a,), out=out) if _needs_grad(a) else None)


def log(a: Tensor) -> Tensor:
    xp = a._xp()
    d = _float_input(a)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = xp.log(d)
    return _result(out, _record(LogBackward0, (a,), a=d) if _needs_grad(a) else None)


def sqrt(a: Tensor) -> Tensor:
    xp = a._xp()
    with np.errstate(invalid="ignore"):
        out = xp.sqrt(_float_input(a))
    return _result(out, _record(SqrtBackward0, (a,), out=out) if _needs_grad(a) else None)


def abs(a: Tensor) -> Tensor:
    xp = a._xp()
    return _result(xp.abs(a._data), _record(AbsBackward0, (a,), a=a._data) if _needs_grad(a) else None)


def clamp(a: Tensor, min=None, max=None) -> Tensor:
    if min is None and max is None:
        raise RuntimeError("At least one of 'min' or 'max' must not be None")
    xp = a._xp()
    d = a._data
    lo = min._data if isinstance(min, Tensor) else min
    hi = max._data if isinstance(max, Tensor) else max
    out = d
    try:
        if lo is not None:
            out = xp.maximum(out, xp.asarray(lo, dtype=d.dtype))
        if hi is not None:
            out = xp.minimum(out, xp.asarray(hi, dtype=d.dtype))
    except ValueError as e:
        _raise_broadcast(e, d.shape, *[_shape_of(x) for x in (lo, hi) if x is not None])
    if out is d:
        out = d.copy()
    node = None
    if _needs_grad(a):
        mask = xp.ones(d.shape, dtype=d.dtype)
        if lo is not None:
            mask = mask * (d >= lo)
        if hi is not None:
            mask = mask * (d <= hi)
        node = _record(ClampBackward0, (a,), mask=mask)
    return _result(out, node)


def sigmoid(a: Tensor) -> Tensor:
    from .nn import functional as F

    return F.sigmoid(a)


def tanh(a: Tensor) -> Tensor:
    from .nn import functional as F

    return F.tanh(a)


def relu(a: Tensor) -> Tensor:
    from .nn import functional as F

    return F.relu(a)


# ---- reductions ----------------------------------------------------------------------------
def _axis(fn: str, dim, default, axis):
    """The dim given as NumPy's ``axis=`` (PyTorch accepts it wherever it takes ``dim=``)."""
    if dim is not default and not (type(dim) is int and dim == default):
        raise TypeError(f"{fn}() got multiple values for argument 'dim' (axis is another name for it)")
    return axis


def _dims(dim, ndim) -> Optional[tuple]:
    if dim is None:
        return None
    if isinstance(dim, (list, tuple)):
        return tuple(sorted(_norm_dim(d, ndim) for d in dim))
    return (_norm_dim(dim, ndim),)


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


def _put_along(xp, out, idx, vals, dim):  # pragma: no cover - CuPy path
    grids = list(xp.ogrid[tuple(slice(0, s) for s in idx.shape)])
    grids[dim] = idx
    out[tuple(grids)] = vals


_MaxResult = namedtuple("max", ["values", "indices"])
_MinResult = namedtuple("min", ["values", "indices"])


def _extreme(a: Tensor, dim, keepdim: bool, largest: bool, other=None):
    if other is not None or isinstance(dim, Tensor):
        other = dim if isinstance(dim, Tensor) else other
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


class MaximumBackward0(Node):
    __slots__ = ("a", "b", "sa", "sb")
    SAVES = True
    SAVED_TENSORS = (("a", -1), ("b", -1))

    def backward(self, g):
        xp = for_array(g).xp
        pick_a = (self.a > self.b).astype(g.dtype) + 0.5 * (self.a == self.b).astype(g.dtype)
        ga = unbroadcast(g * pick_a, self.sa) if self.next[0] is not None else None
        gb = unbroadcast(g * (1 - pick_a), self.sb) if self.next[1] is not None else None
        del xp
        return ga, gb

    def release(self):
        self.a = self.b = None


def maximum(a, b):
    ad, bd, ta, tb = _binary_arrays(a, b)
    try:
        out = for_array(ad).xp.maximum(ad, bd)
    except ValueError as e:
        _raise_broadcast(e, ad.shape, bd.shape)
    node = _record(MaximumBackward0, (ta, tb), a=ad, b=bd, sa=ad.shape, sb=bd.shape) if _needs_grad(ta, tb) else None
    return _result(out, node)


def minimum(a, b):
    ad, bd, ta, tb = _binary_arrays(a, b)
    try:
        out = for_array(ad).xp.minimum(ad, bd)
    except ValueError as e:
        _raise_broadcast(e, ad.shape, bd.shape)
    node = _record(MaximumBackward0, (ta, tb), a=bd, b=ad, sa=ad.shape, sb=bd.shape) if _needs_grad(ta, tb) else None
    return _result(out, node)


def argmax(a: Tensor, dim=None, keepdim: bool = False, *, axis=None, keepdims=None) -> Tensor:
    if axis is not None:
        dim = _axis("argmax", dim, None, axis)
    if keepdims is not None:
        keepdim = keepdims
    d = a._data
    if dim is None:
        return _wrap(for_array(d).xp.asarray(d.argmax(), dtype=np.int64))
    dm = _norm_dim(dim, d.ndim)
    out = d.argmax(axis=dm)
    if keepdim:
        out = for_array(d).xp.expand_dims(out, dm)
    return _wrap(out.astype(np.int64))


def argmin(a: Tensor, dim=None, keepdim: bool = False, *, axis=None, keepdims=None) -> Tensor:
    if axis is not None:
        dim = _axis("argmin", dim, None, axis)
    if keepdims is not None:
        keepdim = keepdims
    d = a._data
    if dim is None:
        return _wrap(for_array(d).xp.asarray(d.argmin(), dtype=np.int64))
    dm = _norm_dim(dim, d.ndim)
    out = d.argmin(axis=dm)
    if keepdim:
        out = for_array(d).xp.expand_dims(out, dm)
    return _wrap(out.astype(np.int64))


# ---- comparisons (no gradient) ---------------------------------------------------------------
def _compare(op):
    def fn(a, b):
        ad, bd, _, _ = _binary_arrays(a, b)
        try:
            return _wrap(op(ad, bd))
        except ValueError as e:
            _raise_broadcast(e, ad.shape, bd.shape)

    return fn


eq = _compare(lambda x, y: x == y)
ne = _compare(lambda x, y: x != y)
lt = _compare(lambda x, y: x < y)
le = _compare(lambda x, y: x <= y)
gt = _compare(lambda x, y: x > y)
ge = _compare(lambda x, y: x >= y)


def equal(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and bool((a._data == b._data).all())


def allclose(a: Tensor, b: Tensor, rtol=1e-5, atol=1e-8, equal_nan=False) -> bool:
    return bool(for_array(a._data).xp.allclose(a._data, b._data, rtol=rtol, atol=atol, equal_nan=equal_nan))


def _logical(op):
    def fn(a, b=None):
        if b is None:
            return _wrap(op(a._data))
        ad, bd, _, _ = _binary_arrays(a, b)
        try:
            return _wrap(op(ad, bd))
        except ValueError as e:
            _raise_broadcast(e, ad.shape, bd.shape)

    return fn


# ---- shape ops -------------------------------------------------------------------------------
class ViewBackward0(Node):
    __slots__ = ("shape",)

    def backward(self, g):
        return (g.reshape(self.shape),)


def _infer_shape(shape, size: int) -> tuple:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list, Size)):
        shape = tuple(shape[0])
    shape = tuple(int(s) for s in shape)
    if shape.count(-1) > 1:
        raise RuntimeError("only one dimension can be inferred")
    if -1 in shape:
        known = 1
        for s in shape:
            if s != -1:
                known *= s
        if known == 0 or size % known:
            raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {size}")
        shape = tuple(size // known if s == -1 else s for s in shape)
    n = 1
    for s in shape:
        if s < 0:
            raise RuntimeError(f"invalid shape dimension {s}")
        n *= s
    if n != size:
        raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {size}")
    return shape


def view(a: Tensor, *shape) -> Tensor:
    d = a._data
    if len(shape) == 1 and isinstance(shape[0], (_dtype.dtype, type)) and not isinstance(shape[0], int):
        raise NotImplementedError("view(dtype) is not supported")
    new = _infer_shape(shape, d.size)
    out = d.view()
    try:
        out.shape = new
    except AttributeError:
        raise RuntimeError("view size is not compatible with input tensor's size and stride (at least one dimension "
                           "spans across two contiguous subspaces). Use .reshape(...) instead.") from None
    node = _record(ViewBackward0, (a,), shape=d.shape) if _needs_grad(a) else None
    return _result(out, node)


def reshape(a: Tensor, *shape) -> Tensor:
    d = a._data
    new = _infer_shape(shape, d.size)
    out = d.reshape(new)
    node = _record(ViewBackward0, (a,), shape=d.shape) if _needs_grad(a) else None
    return _result(out, node)


def flatten(a: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    d = a._data
    if d.ndim == 0:
        return reshape(a, 1)
    s = _norm_dim(start_dim, d.ndim)
    e = _norm_dim(end_dim, d.ndim)
    if s > e:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    n = 1
    for x in d.shape[s:e + 1]:
        n *= x
    return reshape(a, d.shape[:s] + (n,) + d.shape[e + 1:])


def squeeze(a: Tensor, dim=None, *, axis=None) -> Tensor:
    if axis is not None:
        dim = _axis("squeeze", dim, None, axis)
    d = a._data
    if dim is None:
        new = tuple(s for s in d.shape if s != 1)
    else:
        dims = _dims(dim, d.ndim) if d.ndim else ()
        new = tuple(s for i, s in enumerate(d.shape) if not (i in dims and s == 1))
    return reshape(a, new)


def unsqueeze(a: Tensor, dim: Optional[int] = None, *, axis=None) -> Tensor:
    if axis is not None:
        dim = _axis("unsqueeze", dim, None, axis)
    if dim is None:
        raise TypeError("unsqueeze() missing 1 required positional argument: 'dim'")
    d = a._data
    dm = _norm_dim(dim, d.ndim + 1)
    return reshape(a, d.shape[:dm] + (1,) + d.shape[dm:])


class PermuteBackward0(Node):
    __slots__ = ("inverse",)

    def backward(self, g):
        return (g.transpose(self.inverse),)


def permute(a: Tensor, *dims) -> Tensor:
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = tuple(dims[0])
    d = a._data
    if len(dims) != d.ndim:
        raise RuntimeError(f"permute(): number of dims don't match: got {len(dims)} for a {d.ndim}-D tensor")
    perm = tuple(_norm_dim(x, d.ndim) for x in dims)
    if sorted(perm) != list(range(d.ndim)):
        raise RuntimeError(f"permute(): repeated dim in {list(dims)}")
    out = d.transpose(perm)
    inverse = tuple(np.argsort(perm))
    node = _record(PermuteBackward0, (a,), inverse=inverse) if _needs_grad(a) else None
    return _result(out, node)


def transpose(a: Tensor, dim0: int, dim1: int) -> Tensor:
    d = a._data
    if d.ndim == 0:
        return reshape(a, ())
    perm = list(range(d.ndim))
    i, j = _norm_dim(dim0, d.ndim), _norm_dim(dim1, d.ndim)
    perm[i], perm[j] = perm[j], perm[i]
    return permute(a, perm)


def t(a: Tensor) -> Tensor:
    if a._data.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {a._data.ndim}D")
    return transpose(a, 0, 1) if a._data.ndim == 2 else reshape(a, a._data.shape)


class ExpandBackward0(Node):
    __slots__ = ("shape",)

    def backward(self, g):
        return (unbroadcast(g, self.shape),)


def expand(a: Tensor, *sizes) -> Tensor:
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = tuple(sizes[0])
    d = a._data
    lead = len(sizes) - d.ndim
    if lead < 0:
        raise RuntimeError(f"expand: the number of sizes provided ({len(sizes)}) must be greater or equal to the "
                           f"number of dimensions in the tensor ({d.ndim})")
    target = tuple(d.shape[i - lead] if s == -1 else s for i, s in enumerate(sizes))
    out = a._xp().broadcast_to(d, target)
    node = _record(ExpandBackward0, (a,), shape=d.shape) if _needs_grad(a) else None
    return _result(out, node)


class CloneBackward0(Node):
    __slots__ = ()

    def backward(self, g):
        return (g,)


def clone(a: Tensor) -> Tensor:
    return _result(a._data.copy(), _record(CloneBackward0, (a,)) if _needs_grad(a) else None)


def contiguous(a: Tensor) -> Tensor:
    out = a._xp().ascontiguousarray(a._data)
    return _result(out, _record(CloneBackward0, (a,)) if _needs_grad(a) else None)


class ToCopyBackward0(Node):
    __slots__ = ("dtype", "src_cpu")

    def backward(self, g):
        if self.src_cpu and type(g) is not _ndarray:
            g = g.get()
        elif not self.src_cpu and type(g) is _ndarray:
            from .backend import cuda as _cuda_be

            g = _cuda_be.from_numpy(g)
        return (g.astype(self.dtype) if g.dtype != self.dtype else g,)


def cast(a: Tensor, dt) -> Tensor:
    out = a._data.astype(dt.np)
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


class CatBackward0(Node):
    __slots__ = ("dim", "sizes")

    def backward(self, g):
        out = []
        start = 0
        for s in self.sizes:
            sl = [slice(None)] * g.ndim
            sl[self.dim] = slice(start, start + s)
            out.append(g[tuple(sl)])
            start += s
        return tuple(out)


def cat(tensors: Sequence[Tensor], dim: int = 0, *, axis=None) -> Tensor:
    if axis is not None:
        dim = _axis("cat", dim, 0, axis)
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("cat(): expected a non-empty list of Tensors")
    ref = tensors[0]._data
    for t in tensors[1:]:
        _check_same_device(ref, t._data)
    dm = _norm_dim(dim, ref.ndim)
    rt = tensors[0]._data.dtype
    for t in tensors[1:]:
        rt = np.promote_types(rt, t._data.dtype)
    arrays = [t._data if t._data.dtype == rt else t._data.astype(rt) for t in tensors]
    for t in tensors[1:]:
        if t._data.ndim != ref.ndim or any(t._data.shape[i] != ref.shape[i] for i in range(ref.ndim) if i != dm):
            raise RuntimeError(f"Sizes of tensors must match except in dimension {dm}. Expected size "
                               f"{list(ref.shape)} but got size {list(t._data.shape)} for a tensor in the list.")
    out = for_array(ref).xp.concatenate(arrays, axis=dm)
    node = None
    if _needs_grad(*tensors):
        node = _record(CatBackward0, tensors, dim=dm, sizes=[t._data.shape[dm] for t in tensors])
    return _result(out, node)


def stack(tensors: Sequence[Tensor], dim: int = 0, *, axis=None) -> Tensor:
    if axis is not None:
        dim = _axis("stack", dim, 0, axis)
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    shape = tensors[0]._data.shape
    for t in tensors[1:]:
        if t._data.shape != shape:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got {list(shape)} and "
                               f"{list(t._data.shape)}")
    dm = _norm_dim(dim, len(shape) + 1)
    return cat([unsqueeze(t, dm) for t in tensors], dm)


# ---- indexing ----------------------------------------------------------------------------------
def _convert_index(idx):
    """Tensors inside an index become arrays; bool/int lists become arrays."""
    if isinstance(idx, Tensor):
        return idx._data
    if isinstance(idx, tuple):
        return tuple(_convert_index(i) for i in idx)
    if isinstance(idx, list):
        return np.asarray([i.item() if isinstance(i, Tensor) else i for i in idx])
    return idx


def _is_advanced(idx) -> bool:
    items = idx if isinstance(idx, tuple) else (idx,)
    return any(not (isinstance(i, (int, np.integer, slice)) or i is None or i is Ellipsis) for i in items)


class IndexBackward0(Node):
    __slots__ = ("shape", "index", "advanced")
    SAVES = True
    SAVED_TENSORS = (("index", -1),)

    def backward(self, g):
        xp = for_array(g).xp
        out = xp.zeros(self.shape, dtype=g.dtype)
        if self.advanced:
            if xp is np:
                np.add.at(out, self.index, g)
            else:  # pragma: no cover - CuPy path
                import cupyx

                cupyx.scatter_add(out, self.index, g)
        else:
            out[self.index] = g
        return (out,)

    def release(self):
        self.index = None


def _check_index_bounds(d, idx):
    """IndexError naming the index and the size, as PyTorch (NumPy's message says the same)."""
    items = idx if isinstance(idx, tuple) else (idx,)
    dim = 0
    for it in items:
        if it is None:
            continue
        if it is Ellipsis:
            dim = d.ndim - _b.sum(1 for x in items if x is not None and x is not Ellipsis)
            continue
        if isinstance(it, (int, np.integer)) and dim < d.ndim:
            size = d.shape[dim]
            if not -size <= int(it) < size:
                raise IndexError(f"index {int(it)} is out of bounds for dimension {dim} with size {size}")
        dim += 1


def getitem(a: Tensor, idx) -> Tensor:
    d = a._data
    idx = _convert_index(idx)
    if d.ndim == 0 and idx not in ((), Ellipsis, None) and not isinstance(idx, (tuple, type(None))):
        raise IndexError("invalid index of a 0-dim tensor. Use `tensor.item()` to convert a 0-dim tensor to a number")
    _check_index_bounds(d, idx)
    out = d[idx]
    advanced = _is_advanced(idx)
    if not isinstance(out, type(d)):  # NumPy returns scalars for full integer indexing
        out = for_array(d).xp.asarray(out)
    node = _record(IndexBackward0, (a,), shape=d.shape, index=idx, advanced=advanced) if _needs_grad(a) else None
    return _result(out, node)


class IndexPutBackward0(Node):
    __slots__ = ("index", "vshape", "advanced")
    SAVES = True
    SAVED_TENSORS = (("index", -1),)

    def backward(self, g):
        ga = gv = None
        if self.next[0] is not None:
            ga = g.copy()
            ga[self.index] = 0
        if self.next[1] is not None:
            gv = unbroadcast(g[self.index], self.vshape)
        return ga, gv

    def release(self):
        self.index = None


def _check_leaf_inplace(a: Tensor, op: str) -> None:
    if _GradMode.enabled and a._rg and a.grad_fn is None:
        raise RuntimeError(f"a leaf Variable that requires grad is being used in an in-place operation ({op}); "
                           "wrap it in `with fastmlp.no_grad():` if you mean to change the leaf's values")


def _check_inplace(a: Tensor, op: str) -> None:
    """Checks for an in-place op on a whose caller writes a's array right after (and has recorded
    its own node already): raises for a leaf that requires grad, and counts the modification."""
    _check_leaf_inplace(a, op)
    bump(a._data)


def setitem(a: Tensor, idx, value) -> None:
    _check_leaf_inplace(a, "index assignment")
    d = a._data
    idx = _convert_index(idx)
    vt = value if isinstance(value, Tensor) else None
    if vt is not None:
        _check_same_device(d, vt._data)
        vd = vt._data
    else:
        vd = value
    track = _needs_grad(a, vt)
    if track:  # edges taken before a is rebased onto the new node
        node = _record(IndexPutBackward0, (a if a._rg else None, vt), index=idx,
                       vshape=vt._data.shape if vt is not None else (), advanced=_is_advanced(idx))
    try:
        d[idx] = vd
    except ValueError as e:
        _raise_setitem(e, d, idx, vd)
    bump(d)
    if track:
        a.grad_fn = node
        a._rg = True


def _raise_setitem(exc: ValueError, d, idx, value) -> None:
    """PyTorch's errors for an index assignment whose value does not broadcast to the indexed part."""
    target = _shape_of(d[idx])
    vshape = _shape_of(value)
    if _is_advanced(idx):
        raise RuntimeError(f"shape mismatch: value tensor of shape {list(vshape)} cannot be broadcast to indexing "
                           f"result of shape {list(target)}") from None
    v = list(vshape)
    while len(v) > len(target) and v[0] == 1:
        v.pop(0)
    if len(v) > len(target):
        raise RuntimeError(f"expand(fastmlp.Tensor{{{list(vshape)}}}, size={list(target)}): the number of sizes "
                           f"provided ({len(target)}) must be greater or equal to the number of dimensions in the "
                           f"tensor ({len(v)})") from None
    for i in range(1, len(v) + 1):
        if v[-i] != 1 and v[-i] != target[-i]:
            raise RuntimeError(f"The expanded size of the tensor ({target[-i]}) must match the existing size "
                               f"({v[-i]}) at non-singleton dimension {len(target) - i}.  Target sizes: "
                               f"{list(target)}.  Tensor sizes: {list(vshape)}") from None
    raise exc


# ---- in-place arithmetic ------------------------------------------------------------------------
def _inplace(a: Tensor, other, fn, opname: str) -> Tensor:
    """a op= other: in place on the data; with autograd, records the out-of-place op and rebases a."""
    _check_leaf_inplace(a, opname)
    track = _needs_grad(a, other if isinstance(other, Tensor) else None)
    if not track:
        ad, bd, _, _ = _binary_arrays(a, other, true_div=opname == "div_")
        out_dtype = _result_dtype(a, _as_tensor_operand(other))
        if opname == "div_" and out_dtype.kind not in "fc":
            out_dtype = _dtype.get_default_dtype().np
        if not np.can_cast(out_dtype, a._data.dtype, casting="same_kind"):
            raise RuntimeError(f"result type {_dtype.from_numpy_dtype(out_dtype).name} can't be cast to the "
                               f"desired output type {_dtype.from_numpy_dtype(a._data.dtype).name}")
        try:
            res = fn(ad, bd)
        except ValueError as e:
            _raise_broadcast(e, ad.shape, bd.shape)
        try:
            a._data[...] = res
        except ValueError as e:
            _raise_output_shape(e, a._data.shape, res.shape)
        bump(a._data)
        return a
    # The op reads a snapshot of a, so the node it records keeps the old values
    # while a's own storage (and every view of it) receives the result.
    snap = _wrap(a._data.copy(), a._rg, a.grad_fn)
    out = {"add_": add, "sub_": sub, "mul_": mul, "div_": div}[opname](snap, other)
    if out._data.shape != a._data.shape:
        raise RuntimeError(f"output with shape {list(a._data.shape)} doesn't match the broadcast shape "
                           f"{list(out._data.shape)}")
    a._data[...] = out._data
    bump(a._data)
    a.grad_fn = out.grad_fn
    a._rg = True
    return a


def _install_methods(T) -> None:
    """Attach the operator overloads and math/shape methods to Tensor."""
    T.__add__ = lambda s, o: add(s, o)
    T.__radd__ = lambda s, o: add(o, s)
    T.__sub__ = lambda s, o: sub(s, o)
    T.__rsub__ = lambda s, o: sub(o, s)
    T.__mul__ = lambda s, o: mul(s, o)
    T.__rmul__ = lambda s, o: mul(o, s)
    T.__truediv__ = lambda s, o: div(s, o)
    T.__rtruediv__ = lambda s, o: div(o, s)
    T.__floordiv__ = lambda s, o: div(s, o, rounding_mode="floor")
    T.__rfloordiv__ = lambda s, o: div(o, s, rounding_mode="floor")
    T.__mod__ = _logical(lambda x, y: for_array(x).xp.mod(x, y))
    T.__pow__ = lambda s, o: pow(s, o)
    T.__rpow__ = lambda s, o: pow(_scalar_tensor_like(o, s), s)
    T.__matmul__ = lambda s, o: matmul(s, o)
    T.__rmatmul__ = lambda s, o: matmul(_as_tensor_operand(o), s)
    T.__neg__ = neg
    T.__pos__ = lambda s: s
    T.__abs__ = abs
    T.__invert__ = lambda s: _wrap(~s._data if s._data.dtype == _BOOL else ~s._data)
    T.__and__ = _logical(lambda x, y: x & y)
    T.__or__ = _logical(lambda x, y: x | y)
    T.__xor__ = _logical(lambda x, y: x ^ y)
    T.__eq__ = lambda s, o: eq(s, o) if isinstance(o, (Tensor, numbers.Number, np.ndarray)) else False
    T.__ne__ = lambda s, o: ne(s, o) if isinstance(o, (Tensor, numbers.Number, np.ndarray)) else True
    T.__lt__ = lambda s, o: lt(s, o)
    T.__le__ = lambda s, o: le(s, o)
    T.__gt__ = lambda s, o: gt(s, o)
    T.__ge__ = lambda s, o: ge(s, o)
    T.__getitem__ = getitem
    T.__setitem__ = setitem
    T.__iadd__ = lambda s, o: _inplace(s, o, lambda x, y: x + y, "add_")
    T.__isub__ = lambda s, o: _inplace(s, o, lambda x, y: x - y, "sub_")
    T.__imul__ = lambda s, o: _inplace(s, o, lambda x, y: x * y, "mul_")
    T.__itruediv__ = lambda s, o: _inplace(s, o, lambda x, y: x / y, "div_")

    def add_(s, o, alpha=1):
        return _inplace(s, o * alpha if alpha != 1 else o, lambda x, y: x + y, "add_")

    def sub_(s, o, alpha=1):
        return _inplace(s, o * alpha if alpha != 1 else o, lambda x, y: x - y, "sub_")

    T.add_ = add_
    T.sub_ = sub_
    T.mul_ = lambda s, o: _inplace(s, o, lambda x, y: x * y, "mul_")
    T.div_ = lambda s, o: _inplace(s, o, lambda x, y: x / y, "div_")
    T.add = lambda s, o, alpha=1: add(s, o, alpha)
    T.sub = lambda s, o, alpha=1: sub(s, o, alpha)
    T.mul = mul
    T.div = div
    T.pow = pow
    T.matmul = matmul
    T.mm = matmul
    T.neg = neg
    T.exp = exp
    T.log = log
    T.sqrt = sqrt
    T.abs = abs
    T.clamp = clamp
    T.clip = clamp
    T.sigmoid = sigmoid
    T.tanh = tanh
    T.relu = relu
    T.sum = sum
    T.mean = mean
    T.var = var
    T.std = std
    T.max = max
    T.min = min
    T.maximum = maximum
    T.minimum = minimum
    T.argmax = argmax
    T.argmin = argmin
    T.eq = eq
    T.ne = ne
    T.lt = lt
    T.le = le
    T.gt = gt
    T.ge = ge
    T.equal = equal
    T.allclose = allclose
    T.view = view
    T.view_as = lambda s, o: view(s, o._data.shape)
    T.reshape = reshape
    T.reshape_as = lambda s, o: reshape(s, o._data.shape)
    T.flatten = flatten
    T.squeeze = squeeze
    T.unsqueeze = unsqueeze
    T.permute = permute
    T.transpose = transpose
    T.t = t
    T.T = property(lambda s: permute(s, tuple(range(s._data.ndim - 1, -1, -1))))
    T.mT = property(lambda s: transpose(s, -2, -1))
    T.expand = expand
    T.expand_as = lambda s, o: expand(s, o._data.shape)
    T.softmax = _softmax_method
    T.log_softmax = _log_softmax_method
    T.resize_ = resize_
    T.zero_ = zero_
    T.fill_ = fill_
    T.copy_ = copy_
    T.normal_ = normal_
    T.uniform_ = uniform_
    T.clamp_ = clamp_
    T.clip_ = clamp_
    T.clamp_min = clamp_min
    T.clamp_max = clamp_max
    T.clamp_min_ = lambda s, min: clamp_(s, min=min)
    T.clamp_max_ = lambda s, max: clamp_(s, max=max)
    T.pow_ = lambda s, exponent: _unary_inplace(s, lambda x: pow(x, exponent), "pow_")
    T.__ipow__ = T.pow_
    T.abs_ = lambda s: _unary_inplace(s, abs, "abs_")
    T.exp_ = lambda s: _unary_inplace(s, exp, "exp_")
    T.sqrt_ = lambda s: _unary_inplace(s, sqrt, "sqrt_")
    T.log_ = lambda s: _unary_inplace(s, log, "log_")
    T.neg_ = lambda s: _unary_inplace(s, neg, "neg_")
    T.sigmoid_ = lambda s: _unary_inplace(s, sigmoid, "sigmoid_")
    T.tanh_ = lambda s: _unary_inplace(s, tanh, "tanh_")
    T.relu_ = lambda s: _F().relu_(s)
    T.round = lambda s: _wrap(for_array(s._data).xp.round(s._data))
    T.floor = lambda s: _wrap(for_array(s._data).xp.floor(s._data))
    T.ceil = lambda s: _wrap(for_array(s._data).xp.ceil(s._data))
    T.sign = lambda s: _wrap(for_array(s._data).xp.sign(s._data))
    T.logical_not = lambda s: _wrap(for_array(s._data).xp.logical_not(s._data))
    T.all = _all
    T.any = _any
    T.isnan = lambda s: _wrap(for_array(s._data).xp.isnan(s._data))
    T.isfinite = lambda s: _wrap(for_array(s._data).xp.isfinite(s._data))
    T.nonzero = lambda s, as_tuple=False: nonzero(s, as_tuple)
    T.topk = topk
    T.sort = sort
    T.unique = lambda s, sorted=True, return_counts=False: unique(s, sorted, return_counts)
    T.new_zeros = lambda s, *size, dtype=None, device=None: _new_full(s, size, 0, dtype)
    T.new_ones = lambda s, *size, dtype=None, device=None: _new_full(s, size, 1, dtype)
    T.new_full = lambda s, size, value, dtype=None, device=None: _new_full(s, (size,), value, dtype)
    T.new_tensor = lambda s, data, dtype=None, device=None: _wrap(for_array(s._data).xp.asarray(
        data, dtype=(_dtype.as_dtype(dtype).np if dtype is not None else s._data.dtype)))


def _F():
    from .nn import functional as F

    return F


def _scalar_tensor_like(x, like: Tensor) -> Tensor:
    dt = _result_dtype(like, x)
    return _wrap(for_array(like._data).xp.asarray(x, dtype=dt))


def _new_full(s: Tensor, size, value, dtype) -> Tensor:
    if len(size) == 1 and isinstance(size[0], (tuple, list, Size)):
        size = tuple(size[0])
    dt = _dtype.as_dtype(dtype).np if dtype is not None else s._data.dtype
    return _wrap(for_array(s._data).xp.full(tuple(size), value, dtype=dt))


def _softmax_like(name: str, s: Tensor, dim: Optional[int], dtype, axis) -> Tensor:
    if axis is not None:
        dim = _axis(name, dim, None, axis)
    if dim is None:
        raise TypeError(f"{name}() missing 1 required positional argument: 'dim'")
    return getattr(_F(), name)(s, dim, dtype=dtype)


def _softmax_method(s: Tensor, dim: Optional[int] = None, dtype=None, *, axis=None) -> Tensor:
    return _softmax_like("softmax", s, dim, dtype, axis)


def _log_softmax_method(s: Tensor, dim: Optional[int] = None, dtype=None, *, axis=None) -> Tensor:
    return _softmax_like("log_softmax", s, dim, dtype, axis)


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


def clamp_min(a: Tensor, min) -> Tensor:
    """max(a, min) elementwise (``torch.clamp_min``)."""
    return clamp(a, min=min)


def clamp_max(a: Tensor, max) -> Tensor:
    """min(a, max) elementwise (``torch.clamp_max``)."""
    return clamp(a, max=max)


def clamp_(a: Tensor, min=None, max=None) -> Tensor:
    """clamp in place (``Tensor.clamp_``)."""
    return _unary_inplace(a, lambda x: clamp(x, min, max), "clamp_")


def _unary_inplace(a: Tensor, fn, opname: str) -> Tensor:
    """a = fn(a) in place (``exp_``, ``clamp_``, ...): the result is written into a's storage.

    With autograd, fn runs on a snapshot of a (so its node keeps the old values it
    may need) and a is rebased onto fn's node, as the in-place arithmetic does.
    """
    _check_leaf_inplace(a, opname)
    d = a._data
    if _needs_grad(a):
        out = fn(_wrap(d.copy(), True, a.grad_fn))
    else:
        out = fn(_wrap(d))
    od = out._data
    if od.dtype != d.dtype and not np.can_cast(od.dtype, d.dtype, casting="same_kind"):
        raise RuntimeError(f"result type {_dtype.from_numpy_dtype(od.dtype).name} can't be cast to the desired "
                           f"output type {_dtype.from_numpy_dtype(d.dtype).name}")
    try:
        d[...] = od
    except ValueError as e:
        _raise_output_shape(e, d.shape, od.shape)
    bump(d)
    if out.grad_fn is not None:
        a.grad_fn = out.grad_fn
        a._rg = True
    return a


def resize_(a: Tensor, *sizes) -> Tensor:
    """Reshape in place (same number of elements; as seed scripts use ``images.resize_(n, 784)``)."""
    if a._rg:
        raise RuntimeError("cannot resize variables that require grad")
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list, Size)):
        sizes = tuple(sizes[0])
    sizes = tuple(int(s) for s in sizes)
    if sizes == a._data.shape:
        return a
    n = 1
    for s in sizes:
        n *= s
    if n != a._data.size:
        xp = a._xp()
        flat = xp.ascontiguousarray(a._data).reshape(-1)
        new = xp.zeros(n, dtype=a._data.dtype)
        m = n if n < flat.size else flat.size
        new[:m] = flat[:m]
        a._data = new.reshape(sizes)
    else:
        a._data = a._data.reshape(sizes)
    bump(a._data)
    return a


def zero_(a: Tensor) -> Tensor:
    _check_leaf_inplace(a, "zero_")
    a._data[...] = 0
    bump(a._data)
    return a


def fill_(a: Tensor, value) -> Tensor:
    _check_leaf_inplace(a, "fill_")
    a._data[...] = value.item() if isinstance(value, Tensor) else value
    bump(a._data)
    return a


def copy_(a: Tensor, src, non_blocking: bool = False) -> Tensor:
    _check_leaf_inplace(a, "copy_")
    if isinstance(src, Tensor):
        sd = src._data
        if type(sd) is not type(a._data):
            sd = sd.get() if type(sd) is not _ndarray else for_array(a._data).from_numpy(sd)
    else:
        sd = src
    try:
        a._data[...] = sd
    except ValueError as e:
        shape = _shape_of(sd)
        err = _broadcast_error(a._data.shape, shape)
        if err is not None:
            raise err from None
        _raise_output_shape(e, a._data.shape, np.broadcast_shapes(a._data.shape, shape))
    bump(a._data)
    return a


def normal_(a: Tensor, mean: float = 0.0, std: float = 1.0, generator=None) -> Tensor:
    from . import random as _random

    _check_leaf_inplace(a, "normal_")
    vals = _random.normal_array(mean, std, a._data.shape, a._data.dtype, generator)
    a._data[...] = vals if type(a._data) is _ndarray else for_array(a._data).from_numpy(vals)
    bump(a._data)
    return a


def uniform_(a: Tensor, from_: float = 0.0, to: float = 1.0, generator=None) -> Tensor:
    from . import random as _random

    _check_leaf_inplace(a, "uniform_")
    vals = _random.uniform_array(from_, to, a._data.shape, a._data.dtype, generator)
    a._data[...] = vals if type(a._data) is _ndarray else for_array(a._data).from_numpy(vals)
    bump(a._data)
    return a


def nonzero(a: Tensor, as_tuple: bool = False):
    idx = a._data.nonzero()
    xp = a._xp()
    if as_tuple:
        return tuple(_wrap(i.astype(np.int64)) for i in idx)
    return _wrap(xp.stack(idx, axis=1).astype(np.int64) if idx else xp.zeros((0, 0), dtype=np.int64))


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


class GatherBackward0(Node):
    __slots__ = ("shape", "idx", "dim")
    SAVES = True
    SAVED_TENSORS = (("idx", -1),)

    def backward(self, g):
        xp = for_array(g).xp
        out = xp.zeros(self.shape, dtype=g.dtype)
        if xp is np:
            grids = list(np.ix_(*[np.arange(s) for s in self.idx.shape]))
            grids[self.dim] = self.idx
            np.add.at(out, tuple(grids), g)
        else:  # pragma: no cover
            _put_along(xp, out, self.idx, g, self.dim)
        return (out,)

    def release(self):
        self.idx = None


def getitem_along(a: Tensor, idx, dim: int) -> Tensor:
    """torch.gather: out[..., i, ...] = a[..., idx[..., i, ...], ...] along dim."""
    xp = a._xp()
    out = xp.take_along_axis(a._data, idx, axis=dim)
    node = _record(GatherBackward0, (a,), shape=a._data.shape, idx=idx, dim=dim) if _needs_grad(a) else None
    return _result(out, node)


def gather(a: Tensor, dim: Optional[int] = None, index: Optional[Tensor] = None, *, axis=None) -> Tensor:
    if axis is not None:
        dim = _axis("gather", dim, None, axis)
    if dim is None or index is None:
        raise TypeError("gather() missing required arguments 'dim' and 'index'")
    dm = _norm_dim(dim, a._data.ndim)
    idx = index._data
    if idx.dtype != np.int64:
        raise RuntimeError(f"gather(): Expected dtype int64 for index; got {index.dtype}")
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= a._data.shape[dm]):
        raise RuntimeError(f"index {int(idx.max())} is out of bounds for dimension {dm} with size {a._data.shape[dm]}")
    return getitem_along(a, idx, dm)


def unique(a: Tensor, sorted: bool = True, return_counts: bool = False):
    xp = a._xp()
    if return_counts:
        vals, counts = xp.unique(a._data, return_counts=True)
        return _wrap(vals), _wrap(counts.astype(np.int64))
    return _wrap(xp.unique(a._data))


class WhereBackward0(Node):
    __slots__ = ("cond", "sa", "sb")
    SAVES = True
    SAVED_TENSORS = (("cond", -1),)

    def backward(self, g):
        ga = unbroadcast(g * self.cond, self.sa) if self.next[0] is not None else None
        gb = unbroadcast(g * ~self.cond, self.sb) if self.next[1] is not None else None
        return ga, gb

    def release(self):
        self.cond = None


def where(cond: Tensor, a, b) -> Tensor:
    ad, bd, ta, tb = _binary_arrays(a, b)
    c = cond._data
    try:
        out = for_array(c).xp.where(c, ad, bd)
    except ValueError as e:
        _raise_broadcast(e, c.shape, ad.shape, bd.shape)
    node = None
    if _needs_grad(ta, tb):
        node = _record(WhereBackward0, (ta, tb), cond=for_array(c).xp.broadcast_to(c, out.shape), sa=ad.shape,
                       sb=bd.shape)
    return _result(out, node)
