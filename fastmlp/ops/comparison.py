"""Comparisons and logical ops (no gradient): ``== != < <= > >=``, ``& | ^ ~``,
``equal``, ``allclose``, ``isnan``, ``isfinite``. ``ComparisonMethods`` (at the
bottom) is the part of ``Tensor`` they make (``torch.Tensor.eq``, ...).
"""
from __future__ import annotations

import numbers
from typing import TYPE_CHECKING

import numpy as np

from ..backend import for_array
from ..tensor import TensorBase, _wrap
from .common import _binary_arrays, _logical, _raise_broadcast

if TYPE_CHECKING:
    from ..tensor import Tensor


# ---- comparisons ---------------------------------------------------------------------------
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


# ---- Tensor methods ------------------------------------------------------------------------
class ComparisonMethods:
    """Tensor's comparison and logical operators and methods; each is the op of the same name above.

    ``==`` with something that is not a tensor, number or array is False (and ``!=`` True),
    as for PyTorch. The class that takes these sets ``__hash__`` itself (tensors hash by identity).
    """

    __slots__ = ()

    def __eq__(self, other):
        return eq(self, other) if isinstance(other, (TensorBase, numbers.Number, np.ndarray)) else False

    def __ne__(self, other):
        return ne(self, other) if isinstance(other, (TensorBase, numbers.Number, np.ndarray)) else True

    def __lt__(self, other):
        return lt(self, other)

    def __le__(self, other):
        return le(self, other)

    def __gt__(self, other):
        return gt(self, other)

    def __ge__(self, other):
        return ge(self, other)

    def __invert__(self):
        return _wrap(~self._data)

    __and__ = _logical(lambda x, y: x & y)
    __or__ = _logical(lambda x, y: x | y)
    __xor__ = _logical(lambda x, y: x ^ y)
    eq = eq
    ne = ne
    lt = lt
    le = le
    gt = gt
    ge = ge
    equal = equal
    allclose = allclose

    def logical_not(self):
        return _wrap(for_array(self._data).xp.logical_not(self._data))

    def isnan(self):
        return _wrap(for_array(self._data).xp.isnan(self._data))

    def isfinite(self):
        return _wrap(for_array(self._data).xp.isfinite(self._data))
