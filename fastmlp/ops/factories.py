"""``Tensor.new_zeros`` / ``new_ones`` / ``new_full`` / ``new_tensor``: new tensors on
the device (and by default of the dtype) of an existing one. ``FactoryMethods`` is
the part of ``Tensor`` they make.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .. import _dtype
from ..backend import for_array
from ..tensor import Size, _wrap

if TYPE_CHECKING:
    from ..tensor import Tensor


def _new_full(s: Tensor, size, value, dtype) -> Tensor:
    if len(size) == 1 and isinstance(size[0], (tuple, list, Size)):
        size = tuple(size[0])
    dt = _dtype.as_dtype(dtype).np if dtype is not None else s._data.dtype
    return _wrap(for_array(s._data).xp.full(tuple(size), value, dtype=dt))


class FactoryMethods:
    """Tensor's ``new_*`` methods (``torch.Tensor.new_zeros``, ...)."""

    __slots__ = ()

    def new_zeros(self, *size, dtype=None, device=None):
        return _new_full(self, size, 0, dtype)

    def new_ones(self, *size, dtype=None, device=None):
        return _new_full(self, size, 1, dtype)

    def new_full(self, size, value, dtype=None, device=None):
        return _new_full(self, (size,), value, dtype)

    def new_tensor(self, data, dtype=None, device=None):
        return _wrap(for_array(self._data).xp.asarray(
            data, dtype=(_dtype.as_dtype(dtype).np if dtype is not None else self._data.dtype)))
