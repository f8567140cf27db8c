"""Shape ops: views and reshapes (``view``, ``reshape``, ``flatten``, ``squeeze``,
``unsqueeze``, ``permute``, ``transpose``, ``t``, ``expand``) and joining (``cat``,
``stack``). A view shares its input's storage, as in PyTorch. ``ShapeMethods`` (at
the bottom) is the part of ``Tensor`` they make.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from .. import _C, _dtype
from ..autograd import Node
from ..backend import for_array
from ..tensor import Size, _norm_dim, _result
from .common import _GradMode, _axis, _category, _check_same_device, _dims, _needs_grad, _record, unbroadcast

_LISTS = (list, tuple)
# stack / cat along dim 0 of CPU tensors of one dtype: every check and the copy in one native
# call (csrc/bindings/bind_join.cpp); None when the general path below must do it.
_join = _C.join

if TYPE_CHECKING:
    from ..tensor import Tensor


# ---- views and reshapes --------------------------------------------------------------------
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
    if shape and shape[0] is not None:  # (NumPy reads reshape(None) as "keep the shape"; PyTorch refuses it)
        # Ints or one sequence of them, the usual case: the array library checks them and fills in
        # a -1; whatever it refuses goes to the checks below, which raise PyTorch's errors. A third
        # less per call than checking each size here first.
        try:
            out = d.reshape(*shape)
        except (TypeError, ValueError):
            out = None
        if out is not None:
            node = _record(ViewBackward0, (a,), shape=d.shape) if a._requires_grad and _GradMode.enabled else None
            return _result(out, node)
    new = _infer_shape(shape, d.size)  # PyTorch's checks and errors
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


# ---- joining -------------------------------------------------------------------------------
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


def _not_tensor(tensors: list) -> None:
    """PyTorch's TypeError for a list with something other than a tensor in it."""
    for i, t in enumerate(tensors):
        if not hasattr(t, "_data"):
            raise TypeError(f"expected Tensor as element {i} in argument 0, but got {type(t).__name__}")


def _joined(tensors, dim: int, stack: bool):
    """cat/stack along dim 0 of a list as one native copy (which checks the shapes too), or None
    when it is not a plain copy (the general path then)."""
    if dim == 0 and type(tensors) in _LISTS and tensors:
        out = _join(tensors, stack)
        if out is not None:
            return _result(out, None)
    return None


def cat(tensors: Sequence[Tensor], dim: int = 0, *, axis=None) -> Tensor:
    if axis is not None:
        dim = _axis("cat", dim, 0, axis)
    out = _joined(tensors, dim, False)
    if out is not None:
        return out
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("cat(): expected a non-empty list of Tensors")
    _not_tensor(tensors)
    ref = tensors[0]._data
    for t in tensors[1:]:
        _check_same_device(ref, t._data)
    for i, t in enumerate(tensors):
        if t._data.ndim == 0:
            raise RuntimeError(f"zero-dimensional tensor (at position {i}) cannot be concatenated")
    dm = _norm_dim(dim, ref.ndim)
    rt = tensors[0]._data.dtype
    for t in tensors[1:]:
        rt = _promote(rt, t._data.dtype)
    arrays = [t._data if t._data.dtype == rt else t._data.astype(rt) for t in tensors]
    for i, t in enumerate(tensors[1:], 1):
        d = t._data
        if d.ndim != ref.ndim:
            raise RuntimeError(f"Tensors must have same number of dimensions: got {ref.ndim} and {d.ndim} "
                               f"(tensor 0 has shape {list(ref.shape)}, tensor {i} has shape {list(d.shape)})")
        for k in range(ref.ndim):
            if k != dm and d.shape[k] != ref.shape[k]:
                raise RuntimeError(f"Sizes of tensors must match except in dimension {dm}. Expected size "
                                   f"{ref.shape[k]} but got size {d.shape[k]} for tensor number {i} in the list "
                                   f"(tensor 0 has shape {list(ref.shape)}, tensor {i} has shape {list(d.shape)})")
    out = for_array(ref).xp.concatenate(arrays, axis=dm)
    node = None
    if _needs_grad(*tensors):
        node = _record(CatBackward0, tensors, dim=dm, sizes=[t._data.shape[dm] for t in tensors])
    return _result(out, node)


def _promote(a: np.dtype, b: np.dtype) -> np.dtype:
    """PyTorch's promotion of two tensors' dtypes: the higher category (bool < integer < floating)
    wins as it is; within one category, the wider type (float32 with int64 is float32, not NumPy's
    float64)."""
    ca, cb = _category(a.kind), _category(b.kind)
    if ca != cb:
        return a if ca > cb else b
    return np.promote_types(a, b)


def stack(tensors: Sequence[Tensor], dim: int = 0, *, axis=None) -> Tensor:
    if axis is not None:
        dim = _axis("stack", dim, 0, axis)
    out = _joined(tensors, dim, True)
    if out is not None:
        return out
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    _not_tensor(tensors)
    shape = tensors[0]._data.shape
    for i, t in enumerate(tensors[1:], 1):
        if t._data.shape != shape:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got {list(shape)} at entry 0 and "
                               f"{list(t._data.shape)} at entry {i}")
    dm = _norm_dim(dim, len(shape) + 1)
    return cat([unsqueeze(t, dm) for t in tensors], dm)


# ---- Tensor methods ------------------------------------------------------------------------
class ShapeMethods:
    """Tensor's shape methods (``torch.Tensor.view``, ...); each is the op of the same name above."""

    __slots__ = ()

    view = view

    def view_as(self, other):
        return view(self, other._data.shape)

    reshape = reshape

    def reshape_as(self, other):
        return reshape(self, other._data.shape)

    flatten = flatten
    squeeze = squeeze
    unsqueeze = unsqueeze
    permute = permute
    transpose = transpose
    t = t

    @property
    def T(self):
        """The dims reversed (``torch.Tensor.T``)."""
        return permute(self, tuple(range(self._data.ndim - 1, -1, -1)))

    @property
    def mT(self):
        """The last two dims swapped (``torch.Tensor.mT``)."""
        return transpose(self, -2, -1)

    expand = expand

    def expand_as(self, other):
        return expand(self, other._data.shape)
