"""Arithmetic ops with broadcasting and PyTorch's type promotion: ``+ - * / // % **``,
``@``, the elementwise math (``exp``, ``log``, ``sqrt``, ``abs``, ``clamp``,
``maximum``, ...). Each op computes its result with its device's array library and,
when a gradient is needed, records one Node whose ``backward`` sits above it.

``ArithmeticMethods`` (at the bottom) is the part of ``Tensor`` these make: the
operators and the methods of the same names (``torch.Tensor.add``, ...).
"""
from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING

import numpy as np

from .. import _C, _autocast, _bf16, _dtype
from ..autograd import Node
from ..backend import for_array
from ..tensor import TensorBase, _result, _wrap
from .common import (_BOOL, _as_tensor_operand, _binary_arrays, _check_same_device, _float_input, _logical,
                     _needs_grad, _raise_broadcast, _record, _result_dtype, _shape_of, unbroadcast)

if TYPE_CHECKING:
    from ..tensor import Tensor

_ndarray = np.ndarray


# ---- binary arithmetic ---------------------------------------------------------------------
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
    if tb is None and type(bd) is not _ndarray and bd != 0 and math.isfinite(bd):
        out = ad / bd  # by a finite nonzero number: nothing for errstate to silence (it costs microseconds)
    else:
        try:
            with np.errstate(divide="ignore", invalid="ignore"):
                out = ad / bd
        except ValueError as e:
            _raise_broadcast(e, ad.shape, bd.shape)
    node = None
    if _needs_grad(ta, tb):
        node = _record(DivBackward0, (ta, tb), a=ad, b=bd, sa=ad.shape, sb=bd.shape)
    return _result(out, node)


# ---- powers --------------------------------------------------------------------------------
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
    if isinstance(a, TensorBase) and isinstance(b, numbers.Real) and not isinstance(b, bool):
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


def _scalar_tensor_like(x, like: Tensor) -> Tensor:
    dt = _result_dtype(like, x)
    return _wrap(for_array(like._data).xp.asarray(x, dtype=dt))


# ---- matmul --------------------------------------------------------------------------------
class MmBackward0(Node):
    """Under fastmlp.autocast the operands saved are already rounded to bfloat16 (bf16), and the
    gradient is rounded too before its products, as PyTorch's bfloat16 backward multiplies."""
    __slots__ = ("a", "b", "bf16")
    SAVES = True
    SAVED_TENSORS = (("a", 1), ("b", 0))

    def backward(self, g):
        a, b = self.a, self.b
        if self.bf16 and g.dtype == np.float32:
            g = _bf16.round_f32(g)
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
    if not isinstance(a, TensorBase) or not isinstance(b, TensorBase):
        a, b = _as_tensor_operand(a), _as_tensor_operand(b)
        if not isinstance(a, TensorBase) or not isinstance(b, TensorBase):
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
    # Under fastmlp.autocast("cpu"): float32 CPU operands rounded to bfloat16, products exact,
    # float32 sums (a 2-D product on the bfloat16 GEMM, which rounds as it packs).
    bf16 = _autocast.lowers(ad, bd)
    if bf16 and ad.ndim == 2 and bd.ndim == 2:
        from ..backend.cpu import _native

        out = np.empty((ad.shape[0], bd.shape[1]), np.float32)
        _native(_C.gemm_bf16, (ad, bd, out))
        if _needs_grad(a, b):
            ad, bd = _bf16.round_f32(ad), _bf16.round_f32(bd)
    else:
        if bf16:
            ad, bd = _bf16.round_f32(ad), _bf16.round_f32(bd)
        out = ad @ bd
    node = _record(MmBackward0, (a, b), a=ad, b=bd, bf16=bf16) if _needs_grad(a, b) else None
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
    lo = min._data if isinstance(min, TensorBase) else min
    hi = max._data if isinstance(max, TensorBase) else max
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


def clamp_min(a: Tensor, min) -> Tensor:
    """max(a, min) elementwise (``torch.clamp_min``)."""
    return clamp(a, min=min)


def clamp_max(a: Tensor, max) -> Tensor:
    """min(a, max) elementwise (``torch.clamp_max``)."""
    return clamp(a, max=max)


# ---- elementwise maximum / minimum ---------------------------------------------------------
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


# ---- Tensor methods ------------------------------------------------------------------------
class ArithmeticMethods:
    """Tensor's arithmetic operators and methods; each is the op of the same name above."""

    __slots__ = ()

    def __add__(self, other):
        return add(self, other)

    def __radd__(self, other):
        return add(other, self)

    def __sub__(self, other):
        return sub(self, other)

    def __rsub__(self, other):
        return sub(other, self)

    def __mul__(self, other):
        return mul(self, other)

    def __rmul__(self, other):
        return mul(other, self)

    def __truediv__(self, other):
        return div(self, other)

    def __rtruediv__(self, other):
        return div(other, self)

    def __floordiv__(self, other):
        return div(self, other, rounding_mode="floor")

    def __rfloordiv__(self, other):
        return div(other, self, rounding_mode="floor")

    __mod__ = _logical(lambda x, y: for_array(x).xp.mod(x, y))

    def __pow__(self, other):
        return pow(self, other)

    def __rpow__(self, other):
        return pow(_scalar_tensor_like(other, self), self)

    def __matmul__(self, other):
        return matmul(self, other)

    def __rmatmul__(self, other):
        return matmul(_as_tensor_operand(other), self)

    __neg__ = neg

    def __pos__(self):
        return self

    __abs__ = abs

    def add(self, other, alpha=1):
        return add(self, other, alpha)

    def sub(self, other, alpha=1):
        return sub(self, other, alpha)

    mul = mul
    div = div
    pow = pow
    matmul = matmul
    mm = matmul
    neg = neg
    exp = exp
    log = log
    sqrt = sqrt
    abs = abs
    clamp = clamp
    clip = clamp
    clamp_min = clamp_min
    clamp_max = clamp_max
    maximum = maximum
    minimum = minimum

    def round(self):
        return _wrap(for_array(self._data).xp.round(self._data))

    def floor(self):
        return _wrap(for_array(self._data).xp.floor(self._data))

    def ceil(self):
        return _wrap(for_array(self._data).xp.ceil(self._data))

    def sign(self):
        return _wrap(for_array(self._data).xp.sign(self._data))
