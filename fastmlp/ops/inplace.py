"""In-place ops (``add_``, ``+=``, ``exp_``, ``clamp_``, ``zero_``, ``fill_``, ``copy_``,
``normal_``, ``resize_``, ...). Each writes into the tensor's storage (so every view
sees it), counts the change in the storage's version, and, with autograd, rebases
the tensor onto the node of the equivalent out-of-place op. ``InplaceMethods`` (at
the bottom) is the part of ``Tensor`` they make.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import _dtype
from ..autograd import bump
from ..backend import for_array
from ..tensor import Size, TensorBase, _wrap
from .arithmetic import abs, add, clamp, div, exp, log, mul, neg, pow, sqrt, sub
from .activations import _F, sigmoid, tanh
from .common import (_as_tensor_operand, _binary_arrays, _broadcast_error, _check_leaf_inplace, _needs_grad,
                     _raise_broadcast, _raise_output_shape, _result_dtype, _shape_of)

if TYPE_CHECKING:
    from ..tensor import Tensor

_ndarray = np.ndarray


# ---- arithmetic in place -------------------------------------------------------------------
def _inplace(a: Tensor, other, fn, opname: str) -> Tensor:
    """a op= other: in place on the data; with autograd, records the out-of-place op and rebases a."""
    _check_leaf_inplace(a, opname)
    track = _needs_grad(a, other if isinstance(other, TensorBase) else None)
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
    snap = _wrap(a._data.copy(), a._requires_grad, a.grad_fn)
    out = {"add_": add, "sub_": sub, "mul_": mul, "div_": div}[opname](snap, other)
    if out._data.shape != a._data.shape:
        raise RuntimeError(f"output with shape {list(a._data.shape)} doesn't match the broadcast shape "
                           f"{list(out._data.shape)}")
    a._data[...] = out._data
    bump(a._data)
    a.grad_fn = out.grad_fn
    a._requires_grad = True
    return a


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
        a._requires_grad = True
    return a


def clamp_(a: Tensor, min=None, max=None) -> Tensor:
    """clamp in place (``Tensor.clamp_``)."""
    return _unary_inplace(a, lambda x: clamp(x, min, max), "clamp_")


# ---- filling and copying -------------------------------------------------------------------
def resize_(a: Tensor, *sizes) -> Tensor:
    """Reshape in place (same number of elements; as seed scripts use ``images.resize_(n, 784)``)."""
    if a._requires_grad:
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
    a._data[...] = value.item() if isinstance(value, TensorBase) else value
    bump(a._data)
    return a


def copy_(a: Tensor, src, non_blocking: bool = False) -> Tensor:
    _check_leaf_inplace(a, "copy_")
    if isinstance(src, TensorBase):
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
    from .. import random as _random

    _check_leaf_inplace(a, "normal_")
    vals = _random.normal_array(mean, std, a._data.shape, a._data.dtype, generator)
    a._data[...] = vals if type(a._data) is _ndarray else for_array(a._data).from_numpy(vals)
    bump(a._data)
    return a


def uniform_(a: Tensor, from_: float = 0.0, to: float = 1.0, generator=None) -> Tensor:
    from .. import random as _random

    _check_leaf_inplace(a, "uniform_")
    vals = _random.uniform_array(from_, to, a._data.shape, a._data.dtype, generator)
    a._data[...] = vals if type(a._data) is _ndarray else for_array(a._data).from_numpy(vals)
    bump(a._data)
    return a


# ---- Tensor methods ------------------------------------------------------------------------
class InplaceMethods:
    """Tensor's in-place methods (``torch.Tensor.add_``, ``+=``, ...)."""

    __slots__ = ()

    def __iadd__(self, other):
        return _inplace(self, other, lambda x, y: x + y, "add_")

    def __isub__(self, other):
        return _inplace(self, other, lambda x, y: x - y, "sub_")

    def __imul__(self, other):
        return _inplace(self, other, lambda x, y: x * y, "mul_")

    def __itruediv__(self, other):
        return _inplace(self, other, lambda x, y: x / y, "div_")

    def add_(self, other, alpha=1):
        return _inplace(self, other * alpha if alpha != 1 else other, lambda x, y: x + y, "add_")

    def sub_(self, other, alpha=1):
        return _inplace(self, other * alpha if alpha != 1 else other, lambda x, y: x - y, "sub_")

    def mul_(self, other):
        return _inplace(self, other, lambda x, y: x * y, "mul_")

    def div_(self, other):
        return _inplace(self, other, lambda x, y: x / y, "div_")

    def pow_(self, exponent):
        return _unary_inplace(self, lambda x: pow(x, exponent), "pow_")

    __ipow__ = pow_

    def abs_(self):
        return _unary_inplace(self, abs, "abs_")

    def exp_(self):
        return _unary_inplace(self, exp, "exp_")

    def sqrt_(self):
        return _unary_inplace(self, sqrt, "sqrt_")

    def log_(self):
        return _unary_inplace(self, log, "log_")

    def neg_(self):
        return _unary_inplace(self, neg, "neg_")

    def sigmoid_(self):
        return _unary_inplace(self, sigmoid, "sigmoid_")

    def tanh_(self):
        return _unary_inplace(self, tanh, "tanh_")

    def relu_(self):
        return _F().relu_(self)

    clamp_ = clamp_
    clip_ = clamp_

    def clamp_min_(self, min):
        return clamp_(self, min=min)

    def clamp_max_(self, max):
        return clamp_(self, max=max)

    resize_ = resize_
    zero_ = zero_
    fill_ = fill_
    copy_ = copy_
    normal_ = normal_
    uniform_ = uniform_
