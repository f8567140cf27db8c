"""What the op modules share: PyTorch's type promotion and broadcasting rules for
binary ops (with its error messages), the gradient helpers (``unbroadcast``,
``needs grad``), dim normalisation, and the checks of in-place ops."""
from __future__ import annotations

import builtins as _b
import numbers
from typing import TYPE_CHECKING, Optional

import numpy as np

from .. import _dtype
from ..autograd import _GradMode, bump
from ..backend import for_array
from ..tensor import TensorBase, _norm_dim, _wrap

if TYPE_CHECKING:
    from ..tensor import Tensor

_ndarray = np.ndarray
_BOOL = np.dtype(np.bool_)


# ---- gradients -----------------------------------------------------------------------------
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
        if t is not None and t._requires_grad:
            return True
    return False


def _record(node_cls, inputs, **fields):
    node = node_cls(inputs)
    for k, v in fields.items():
        setattr(node, k, v)
    return node


def _grad_dtype_fix(g, like):
    return g if g.dtype == like.dtype else g.astype(like.dtype)


# ---- type promotion and operands -----------------------------------------------------------
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
        if isinstance(x, TensorBase):
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
    if isinstance(x, TensorBase) or isinstance(x, numbers.Number):
        return x
    if isinstance(x, (np.ndarray, list, tuple)) or hasattr(x, "__cuda_array_interface__"):
        from ..creation import as_tensor

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
    # A float CPU tensor with a Python number (x / 255, 1 - p): the tensor's dtype wins, and the
    # number becomes a NumPy scalar of that dtype (the general path below makes it a 0-d array).
    kind = type(b)
    if (kind is float or kind is int) and isinstance(a, TensorBase):
        ad = a._data
        if type(ad) is _ndarray and ad.dtype.kind == "f":
            return ad, ad.dtype.type(b), a, None
    kind = type(a)
    if (kind is float or kind is int) and isinstance(b, TensorBase):
        bd = b._data
        if type(bd) is _ndarray and bd.dtype.kind == "f":
            return bd.dtype.type(a), bd, None, b
    b = _as_tensor_operand(b)
    a = _as_tensor_operand(a)
    ta = a if isinstance(a, TensorBase) else None
    tb = b if isinstance(b, TensorBase) else None
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


def _float_input(t: Tensor):
    d = t._data
    return d if d.dtype.kind == "f" else d.astype(_dtype.get_default_dtype().np)


# ---- broadcasting errors -------------------------------------------------------------------
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


# ---- dims ----------------------------------------------------------------------------------
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


def _put_along(xp, out, idx, vals, dim):  # pragma: no cover - CuPy path
    grids = list(xp.ogrid[tuple(slice(0, s) for s in idx.shape)])
    grids[dim] = idx
    out[tuple(grids)] = vals


# ---- ops without gradient ------------------------------------------------------------------
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


# ---- in-place checks -----------------------------------------------------------------------
def _check_leaf_inplace(a: Tensor, op: str) -> None:
    if _GradMode.enabled and a._requires_grad and a.grad_fn is None:
        raise RuntimeError(f"a leaf Variable that requires grad is being used in an in-place operation ({op}); "
                           "wrap it in `with fastmlp.no_grad():` if you mean to change the leaf's values")


def _check_inplace(a: Tensor, op: str) -> None:
    """Checks for an in-place op on a whose caller writes a's array right after (and has recorded
    its own node already): raises for a leaf that requires grad, and counts the modification."""
    _check_leaf_inplace(a, op)
    bump(a._data)
