"""The activations as Tensor methods and ``fastmlp`` functions (``sigmoid``, ``tanh``,
``relu``, ``softmax``, ``log_softmax``): each runs the native kernel of
``fastmlp.nn.functional``. ``ActivationMethods`` (at the bottom) is the part of
``Tensor`` they make.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from .common import _axis

if TYPE_CHECKING:
    from ..tensor import Tensor


# ---- functions -----------------------------------------------------------------------------
def _F():
    from ..nn import functional as F

    return F


def sigmoid(a: Tensor) -> Tensor:
    from ..nn import functional as F

    return F.sigmoid(a)


def tanh(a: Tensor) -> Tensor:
    from ..nn import functional as F

    return F.tanh(a)


def relu(a: Tensor) -> Tensor:
    from ..nn import functional as F

    return F.relu(a)


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


# ---- Tensor methods ------------------------------------------------------------------------
class ActivationMethods:
    """Tensor's activation methods (``torch.Tensor.relu``, ``softmax``, ...)."""

    __slots__ = ()

    sigmoid = sigmoid
    tanh = tanh
    relu = relu
    softmax = _softmax_method
    log_softmax = _log_softmax_method
