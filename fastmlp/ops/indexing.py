"""Indexing: ``t[idx]`` (basic and advanced, with PyTorch's bounds errors), index
assignment ``t[idx] = v``, ``gather``, ``where``, ``nonzero``. ``IndexingMethods``
(at the bottom) is the part of ``Tensor`` they make.
"""
from __future__ import annotations

import builtins as _b
from typing import TYPE_CHECKING, Optional

import numpy as np

from ..autograd import Node, _GradMode, bump
from ..backend import for_array
from ..tensor import TensorBase, _norm_dim, _result, _wrap
from .common import (_axis, _binary_arrays, _check_leaf_inplace, _check_same_device, _needs_grad, _put_along,
                     _raise_broadcast, _record, _shape_of, unbroadcast)

if TYPE_CHECKING:
    from ..tensor import Tensor


# ---- reading -------------------------------------------------------------------------------
def _convert_index(idx):
    """Tensors inside an index become arrays; bool/int lists become arrays."""
    if isinstance(idx, TensorBase):
        return idx._data
    if isinstance(idx, tuple):
        return tuple(_convert_index(i) for i in idx)
    if isinstance(idx, list):
        return np.asarray([i.item() if isinstance(i, TensorBase) else i for i in idx])
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
    if type(idx) is int:  # one sample, checked here: a view
        nd = d.ndim
        if nd and -len(d) <= idx < len(d):
            out = d[idx] if nd > 1 else d[idx, ...]  # (the Ellipsis keeps a 0-d view, not a NumPy scalar)
            node = None
            if a._requires_grad and _GradMode.enabled:
                node = _record(IndexBackward0, (a,), shape=d.shape, index=idx, advanced=False)
            return _result(out, node)
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


# ---- writing -------------------------------------------------------------------------------
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


def setitem(a: Tensor, idx, value) -> None:
    _check_leaf_inplace(a, "index assignment")
    d = a._data
    idx = _convert_index(idx)
    vt = value if isinstance(value, TensorBase) else None
    if vt is not None:
        _check_same_device(d, vt._data)
        vd = vt._data
    else:
        vd = value
    track = _needs_grad(a, vt)
    if track:  # edges taken before a is rebased onto the new node
        node = _record(IndexPutBackward0, (a if a._requires_grad else None, vt), index=idx,
                       vshape=vt._data.shape if vt is not None else (), advanced=_is_advanced(idx))
    try:
        d[idx] = vd
    except ValueError as e:
        _raise_setitem(e, d, idx, vd)
    bump(d)
    if track:
        a.grad_fn = node
        a._requires_grad = True


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


# ---- gather, where, nonzero ----------------------------------------------------------------
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


def nonzero(a: Tensor, as_tuple: bool = False):
    idx = a._data.nonzero()
    xp = a._xp()
    if as_tuple:
        return tuple(_wrap(i.astype(np.int64)) for i in idx)
    return _wrap(xp.stack(idx, axis=1).astype(np.int64) if idx else xp.zeros((0, 0), dtype=np.int64))


# ---- Tensor methods ------------------------------------------------------------------------
class IndexingMethods:
    """Tensor's indexing (``t[idx]``, ``t[idx] = v``, ``torch.Tensor.nonzero``)."""

    __slots__ = ()

    __getitem__ = getitem
    __setitem__ = setitem

    def nonzero(self, as_tuple=False):
        return nonzero(self, as_tuple)
