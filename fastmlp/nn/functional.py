"""``fastmlp.nn.functional``: the hot MLP ops on the native kernels (``torch.nn.functional``).

Linear (with an optional fused activation), activations, softmax / log-softmax,
dropout and the losses run in fastmlp._C for float32 CPU tensors and fastmlp._cuda
for CUDA tensors; other dtypes take the NumPy/CuPy path of the same backend.
Every loss computes its input gradient in the same native pass as the loss
value, so backward only scales it by the upstream gradient.
"""
from __future__ import annotations

import math
import warnings
from typing import Optional

import numpy as np

from .. import _C, _autocast, _dtype
from .. import autograd as _autograd
from .. import random as _random
from ..autograd import HANDLED, Node, commit_sink, grad_sink, is_unit
from ..backend import for_array
from ..backend.cpu import _native as _cpu_native
from ..backend.acts import GELU, IDENTITY, LEAKY_RELU, RELU, SIGMOID, TANH, backward_needs_input
from ..backend.loss_kinds import BACKWARD_NAMES as _LOSS_BACKWARD_NAMES, PointwiseLoss
from ..ops.common import _needs_grad
from ..tensor import Tensor, _result, _wrap

_ndarray = np.ndarray
_F32 = np.dtype(np.float32)
_I64 = np.dtype(np.int64)

__all__ = ["linear", "relu", "relu_", "leaky_relu", "sigmoid", "tanh", "gelu", "softmax", "log_softmax", "dropout",
           "cross_entropy", "nll_loss", "mse_loss", "l1_loss", "binary_cross_entropy",
           "binary_cross_entropy_with_logits", "one_hot", "batch_norm"]

_ACT_NODE_NAMES = {IDENTITY: "AddmmBackward0", RELU: "ReluBackward0", LEAKY_RELU: "LeakyReluBackward0",
                   SIGMOID: "SigmoidBackward0", TANH: "TanhBackward0", GELU: "GeluBackward0"}




def _contig(a):
    """C-contiguous array (a copy only when needed; keeps 0-d arrays 0-d, unlike ascontiguousarray)."""
    return a if a.flags.c_contiguous else a.copy()


def _check_tensor(x, fn: str, arg: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{fn}(): argument '{arg}' must be a Tensor, not {type(x).__name__}")


# ---- linear ----------------------------------------------------------------------------
class LinearBackward(Node):
    """Y = act(X·Wᵀ + b): dZ = dY·act'(·); dW += dZᵀ·X; db += Σ dZ; dX = dZ·W.

    Leaf weight and bias gradients are written straight into their .grad buffers
    by the native call (no temporary, no separate accumulation pass).
    """

    __slots__ = ("x", "w", "saved", "act", "param", "in_shape", "has_bias", "bf16")
    SAVES = True
    # x is read for the weight's gradient, w for the input's; the activation's saved tensor
    # (its input or output) for every gradient, and only when there is an activation.
    SAVED_TENSORS = (("x", 1), ("w", 0), ("act_saved", -1))

    def name(self) -> str:
        return _ACT_NODE_NAMES[self.act] if self.act != IDENTITY or self.has_bias else "MmBackward0"

    @property
    def act_saved(self):
        return None if self.act == IDENTITY else self.saved

    def backward(self, g):
        be = for_array(g)
        w = self.w
        n_out = w.shape[0]
        g2 = g.reshape(-1, n_out) if g.ndim != 2 else g
        dz = g2 if self.act == IDENTITY else be.act_backward(g2, self.saved, self.act, self.param)
        x_edge, w_edge, b_edge = self.next
        dw, acc_w, w_sink = self._dest(w_edge, w.shape, dz, be)
        db, acc_b, b_sink = (None, False, False) if not self.has_bias else self._dest(b_edge, (n_out,), dz, be)
        if self.bf16:  # the forward ran under fastmlp.autocast: so do the gradient's products
            dx = be.linear_backward(dz, self.x, w, x_edge is not None, dw, db, acc_w, acc_b, bf16=True)
        else:
            dx = be.linear_backward(dz, self.x, w, x_edge is not None, dw, db, acc_w, acc_b)
        if w_sink:
            commit_sink(w_edge, dw, acc_w)
        if b_sink:
            commit_sink(b_edge, db, acc_b)
        if dx is not None and dx.shape != self.in_shape:
            dx = dx.reshape(self.in_shape)
        return (dx, HANDLED if w_sink else dw, (HANDLED if b_sink else db) if self.has_bias else None)

    @staticmethod
    def _dest(edge, shape, like, be):
        """(array to write, accumulate?, written straight into a leaf's grad?) for one parameter."""
        if edge is None:
            return None, False, False
        if isinstance(edge, Tensor):
            sink = grad_sink(edge)
            if sink is not None and sink[0].shape == tuple(shape):
                return sink[0], sink[1], True
        return be.xp.empty(shape, dtype=like.dtype), False, False

    def release(self):
        self.x = self.w = self.saved = None


def _linear(input: Tensor, weight: Tensor, bias: Optional[Tensor], act: int, param: float) -> Tensor:
    xd, wd = input._data, weight._data
    if wd.ndim != 2:
        raise RuntimeError(f"linear(): weight must be 2-D [out_features, in_features]; got shape {list(wd.shape)}")
    if type(xd) is not type(wd):
        from ..ops.common import _check_same_device

        _check_same_device(xd, wd)
    k = wd.shape[1]
    in_shape = xd.shape
    if xd.ndim == 0 or in_shape[-1] != k:
        rows = "x".join(map(str, (int(np.prod(in_shape[:-1])) if xd.ndim > 1 else 1, in_shape[-1] if xd.ndim else 1)))
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({rows} and {k}x{wd.shape[0]})")
    x2 = xd if xd.ndim == 2 else xd.reshape(-1, k)
    bd = None
    if bias is not None:
        bd = bias._data
        if bd.shape != (wd.shape[0],):
            raise RuntimeError(f"linear(): bias must have shape [{wd.shape[0]}]; got {list(bd.shape)}")
    if xd.dtype != wd.dtype:
        raise RuntimeError(f"mat1 and mat2 must have the same dtype, but got "
                           f"{_dtype.from_numpy_dtype(xd.dtype).name} and {_dtype.from_numpy_dtype(wd.dtype).name}")
    be = for_array(xd)
    track = _needs_grad(input, weight, bias)
    keep = track and backward_needs_input(act)
    # Under fastmlp.autocast("cpu") the products of float32 CPU operands run in bfloat16.
    bf16 = _autocast.lowers(x2, wd) and (bd is None or _autocast.lowers(bd))
    if bf16:
        res = be.linear_forward(x2, wd, bd, act, param, keep, bf16=True)
    else:
        res = be.linear_forward(x2, wd, bd, act, param, keep)
    y, z = res if keep else (res, None)
    node = None
    if track:
        node = LinearBackward((input, weight, bias))
        node.x = x2
        node.w = wd
        node.saved = z if keep else y
        node.act = act
        node.param = param
        node.in_shape = in_shape
        node.has_bias = bias is not None
        node.bf16 = bf16
    if xd.ndim != 2:
        y = y.reshape(in_shape[:-1] + (wd.shape[0],))
    return _result(y, node)


def linear(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """y = x·Wᵀ + b for x of shape [..., in_features] (``torch.nn.functional.linear``)."""
    _check_tensor(input, "linear", "input")
    return _linear(input, weight, bias, IDENTITY, 0.0)


def linear_act(input: Tensor, weight: Tensor, bias: Optional[Tensor], act: int, param: float = 0.0) -> Tensor:
    """act(x·Wᵀ + b) in one native GEMM with the activation fused into its epilogue."""
    return _linear(input, weight, bias, act, param)


# ---- activations ---------------------------------------------------------------------------
class _ActBackward(Node):
    __slots__ = ("saved", "act", "param")
    SAVES = True
    SAVED_TENSORS = (("saved", -1),)  # the activation's input or output

    def name(self) -> str:
        return _ACT_NODE_NAMES[self.act] if self.act != IDENTITY else "IdentityBackward0"

    def backward(self, g):
        return (for_array(g).act_backward(g, self.saved, self.act, self.param),)

    def release(self):
        self.saved = None


def _activation(x: Tensor, act: int, param: float, inplace: bool = False) -> Tensor:
    _check_tensor(x, _ACT_NODE_NAMES.get(act, "act"), "input")
    xd = x._data
    if xd.dtype.kind != "f":
        raise RuntimeError(f"activation not implemented for '{_dtype.from_numpy_dtype(xd.dtype).name}'")
    be = for_array(xd)
    y = be.act_forward(xd, act, param)
    node = None
    if _needs_grad(x):
        node = _ActBackward((x,))
        node.saved = xd if backward_needs_input(act) else y
        node.act = act
        node.param = param
    if inplace:
        from ..ops.common import _check_inplace

        _check_inplace(x, "activation")
        if node is not None and backward_needs_input(act):
            node.saved = xd.copy()  # the input is about to be overwritten
        xd[...] = y
        if node is not None:
            if not backward_needs_input(act):
                node.saved = xd
                node.seq = _autograd._bumps  # saved as it is after this write, as PyTorch records it
            x.grad_fn = node
            x._requires_grad = True
        return x
    return _result(y, node)


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    return _activation(input, RELU, 0.0, inplace)


def relu_(input: Tensor) -> Tensor:
    return _activation(input, RELU, 0.0, True)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    return _activation(input, LEAKY_RELU, float(negative_slope), inplace)


def sigmoid(input: Tensor) -> Tensor:
    return _activation(input, SIGMOID, 0.0)


def tanh(input: Tensor) -> Tensor:
    return _activation(input, TANH, 0.0)


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    if approximate == "tanh":
        # 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), composed from differentiable ops
        c = math.sqrt(2.0 / math.pi)
        return 0.5 * input * (1.0 + tanh(c * (input + 0.044715 * input * input * input)))
    if approximate != "none":
        raise ValueError(f"approximate argument must be either 'none' or 'tanh'; got {approximate!r}")
    return _activation(input, GELU, 0.0)


# ---- softmax -----------------------------------------------------------------------------
class _SoftmaxBackward(Node):
    __slots__ = ("y", "log", "dim", "ndim")
    SAVES = True

    def name(self) -> str:
        return "LogSoftmaxBackward0" if self.log else "SoftmaxBackward0"

    def backward(self, g):
        be = for_array(g)
        y = self.y
        if self.dim != self.ndim - 1:
            g = be.xp.moveaxis(g, self.dim, -1)
        shp = g.shape
        c = shp[-1] if len(shp) else 1
        dx = be.softmax_backward(g.reshape(-1, c), y.reshape(-1, c), self.log).reshape(shp)
        if self.dim != self.ndim - 1:
            dx = be.xp.moveaxis(dx, -1, self.dim)
        return (dx,)

    def release(self):
        self.y = None


def _implicit_dim(ndim: int) -> int:
    warnings.warn("Implicit dimension choice for softmax has been deprecated. Change the call to include dim=X "
                  "as an argument.", stacklevel=3)
    return 0 if ndim in (0, 1, 3) else 1


def _softmax(x: Tensor, dim, log: bool, dtype=None) -> Tensor:
    _check_tensor(x, "log_softmax" if log else "softmax", "input")
    xd = x._data
    if dtype is not None:
        xd = xd.astype(_dtype.as_dtype(dtype).np)
    if xd.dtype.kind != "f":
        raise RuntimeError(f"softmax not implemented for '{_dtype.from_numpy_dtype(xd.dtype).name}'")
    nd = xd.ndim
    if dim is None:
        dim = _implicit_dim(nd)
    from ..tensor import _norm_dim

    d = _norm_dim(dim, nd)
    be = for_array(xd)
    moved = xd if (nd == 0 or d == nd - 1) else be.xp.moveaxis(xd, d, -1)
    shp = moved.shape
    c = shp[-1] if nd else 1
    y = be.softmax_forward(be.xp.ascontiguousarray(moved).reshape(-1, c), log).reshape(shp)
    node = None
    if _needs_grad(x):
        node = _SoftmaxBackward((x,))
        node.y, node.log, node.dim, node.ndim = y, log, d, max(nd, 1)
    if nd and d != nd - 1:
        y = be.xp.moveaxis(y, -1, d)
    return _result(y, node)


def softmax(input: Tensor, dim: Optional[int] = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    """exp(x) / Σ exp(x) along dim, computed stably (``torch.nn.functional.softmax``)."""
    return _softmax(input, dim, False, dtype)


def log_softmax(input: Tensor, dim: Optional[int] = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    return _softmax(input, dim, True, dtype)


# ---- dropout ---------------------------------------------------------------------------------
class _DropoutBackward(Node):
    __slots__ = ("mask", "p")
    SAVES = True

    def name(self) -> str:
        return "NativeDropoutBackward0"

    def backward(self, g):
        return (for_array(g).dropout_backward(g, self.mask, self.p),)

    def release(self):
        self.mask = None


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, generator=None) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p) (``torch.nn.functional.dropout``).

    Masks come from a Philox counter stream keyed by the generator's seed and a
    per-call offset: the same seed gives the same masks on any thread count or device.
    """
    _check_tensor(input, "dropout", "input")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    xd = input._data
    be = for_array(xd)
    seed, offset = (_random.default_generator if generator is None else generator).philox()
    y, mask = be.dropout_forward(xd, float(p), seed, offset)
    node = None
    if _needs_grad(input):
        node = _DropoutBackward((input,))
        node.mask, node.p = mask, float(p)
    if inplace:
        from ..ops.common import _check_inplace

        _check_inplace(input, "dropout")
        xd[...] = y
        if node is not None:
            input.grad_fn = node
            input._requires_grad = True
        return input
    return _result(y, node)


# ---- losses ------------------------------------------------------------------------------------
def _legacy_reduction(size_average, reduce, reduction: str) -> str:
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    return ("mean" if size_average else "sum") if reduce else "none"


def _check_reduction(reduction: str) -> None:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{reduction} is not a valid value for reduction")


class _LossBackward(Node):
    """Scales the input gradient computed in the forward pass by the upstream gradient."""

    __slots__ = ("grad", "per_row", "label")
    SAVES = True

    def name(self) -> str:
        return self.label

    def backward(self, g):
        grad = self.grad
        if self.per_row:  # reduction='none': one upstream value per row / element
            gg = g.reshape(g.shape + (1,) * (grad.ndim - g.ndim)) if g.ndim < grad.ndim else g
            return (grad * gg.astype(grad.dtype, copy=False),)
        if is_unit(g):  # loss.backward(): the gradient computed with the loss is the answer
            return (grad,)
        return (grad * g.reshape(()).astype(grad.dtype, copy=False),)

    def release(self):
        self.grad = None


def _loss_result(loss, grad, input: Tensor, per_row: bool, label: str, out_shape=None) -> Tensor:
    be = for_array(input._data)
    if not per_row:
        loss = be.xp.asarray(loss, dtype=input._data.dtype)
    elif out_shape is not None:
        loss = loss.reshape(out_shape)
    node = None
    if grad is not None:
        node = _LossBackward((input,))
        node.grad = grad.reshape(input._data.shape) if grad.shape != input._data.shape else grad
        node.per_row = per_row
        node.label = label
    return _result(loss, node)


def _class_targets(input: Tensor, target: Tensor, fn: str):
    """Input as [rows, C] and integer targets as [rows]; returns (x2, t1, out_shape, moved)."""
    _check_tensor(input, fn, "input")
    _check_tensor(target, fn, "target")
    xd, td = input._data, target._data
    if type(xd) is not type(td):
        from ..ops.common import _check_same_device

        _check_same_device(xd, td)
    if td.dtype.kind not in "iu":
        raise RuntimeError(f"{fn}: expected target of integer class indices (int64); got "
                           f"{_dtype.from_numpy_dtype(td.dtype).name}")
    if td.dtype != np.int64:
        td = td.astype(np.int64)
    xp = for_array(xd).xp
    if xd.ndim == 1:
        if td.ndim != 0:
            raise ValueError(f"{fn}: for an unbatched input of shape {list(xd.shape)} the target must be a scalar; "
                             f"got shape {list(td.shape)}")
        return xd.reshape(1, -1), td.reshape(1), (), False
    if xd.ndim < 1:
        raise ValueError(f"{fn}: input must have at least 1 dimension")
    if td.shape[:1] != xd.shape[:1]:
        raise ValueError(f"Expected input batch_size ({xd.shape[0]}) to match target batch_size "
                         f"({td.shape[0] if td.ndim else 0}).")
    if xd.ndim == 2:
        if td.ndim != 1:
            raise ValueError(f"{fn}: target must have shape [{xd.shape[0]}] for input {list(xd.shape)}; "
                             f"got {list(td.shape)}")
        return xd, td, (xd.shape[0],), False
    expected = (xd.shape[0],) + xd.shape[2:]
    if td.shape != expected:
        raise ValueError(f"{fn}: expected target of shape {list(expected)} for input {list(xd.shape)}; got "
                         f"{list(td.shape)}")
    moved = xp.moveaxis(xd, 1, -1)
    return xp.ascontiguousarray(moved).reshape(-1, xd.shape[1]), td.reshape(-1), td.shape, True


class _SpatialLossBackward(_LossBackward):
    """For [N, C, d...] inputs: the kernel saw [N·d..., C]; move the class axis back."""

    __slots__ = ("moved_shape",)

    def backward(self, g):
        (grad,) = super().backward(g if not self.per_row else g.reshape(-1))
        xp = for_array(grad).xp
        return (xp.moveaxis(grad.reshape(self.moved_shape), -1, 1),)


def _class_loss(kind: str, input, target, weight, ignore_index, reduction, label_smoothing=0.0):
    fn = "cross_entropy" if kind == "xent" else "nll_loss"
    _check_reduction(reduction)
    x2, t1, out_shape, moved = _class_targets(input, target, fn)
    wd = None
    if weight is not None:
        wd = weight._data
        if wd.shape != (x2.shape[1],):
            raise RuntimeError(f"{fn}: weight tensor should be defined either for all {x2.shape[1]} classes or no "
                               f"classes but got weight tensor of shape: {list(wd.shape)}")
        wd = wd.astype(x2.dtype, copy=False)
    be = for_array(x2)
    want = _needs_grad(input)
    if kind == "xent":
        loss, grad, _ = be.softmax_xent(x2, t1, wd, int(ignore_index), float(label_smoothing), reduction, want)
        label = "NllLossBackward0"
    else:
        loss, grad, _ = be.nll(x2, t1, wd, int(ignore_index), reduction, want)
        label = "NllLossBackward0"
    per_row = reduction == "none"
    if moved:
        if per_row:
            loss = loss.reshape(out_shape)
        be_x = input._data
        node = None
        if grad is not None:
            node = _SpatialLossBackward((input,))
            node.grad, node.per_row, node.label = grad, per_row, label
            node.moved_shape = (be_x.shape[0],) + be_x.shape[2:] + (be_x.shape[1],)
        if not per_row:
            loss = be.xp.asarray(loss, dtype=x2.dtype)
        return _result(loss, node)
    if per_row and out_shape == ():
        loss = loss.reshape(())
    return _loss_result(loss, grad, input, per_row, label)


def cross_entropy(input: Tensor, target: Tensor, weight: Optional[Tensor] = None, size_average=None,
                  ignore_index: int = -100, reduce=None, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """Softmax cross entropy of logits against class indices or class probabilities
    (``torch.nn.functional.cross_entropy``), fused natively with its gradient."""
    if weight is None and size_average is None and reduce is None and type(input) is Tensor \
            and type(target) is Tensor and (reduction == "mean" or reduction == "sum") \
            and 0.0 <= label_smoothing <= 1.0:
        # The common case (float32 [rows, classes] logits on the CPU, int64 [rows] targets), as
        # _class_loss computes it, without its general checks and reshapes: a training step's loss.
        xd, td = input._data, target._data
        if type(xd) is _ndarray and type(td) is _ndarray and xd.dtype is _F32 and td.dtype is _I64 \
                and xd.ndim == 2 and td.shape == xd.shape[:1]:
            loss, grad, _ = _cpu_native(_C.softmax_xent, (xd, td), None, int(ignore_index), float(label_smoothing),
                                        reduction, _needs_grad(input))
            return _loss_result(loss, grad, input, False, "NllLossBackward0")
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise RuntimeError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    if isinstance(target, Tensor) and target._data.dtype.kind == "f":
        return _soft_cross_entropy(input, target, weight, reduction, label_smoothing)
    return _class_loss("xent", input, target, weight, ignore_index, reduction, label_smoothing)


def _soft_cross_entropy(input, target, weight, reduction, label_smoothing):
    """Cross entropy against class probabilities (same shape as input), from differentiable ops."""
    if target.shape != input.shape:
        raise RuntimeError(f"cross_entropy: a {target.dtype} target holds class probabilities and must have the "
                           f"input's shape {list(input.shape)}; got {list(target.shape)} (class-index targets "
                           f"must be int64)")
    c = input.shape[1] if input.dim() > 1 else input.shape[0]
    cls_dim = 1 if input.dim() > 1 else 0
    if label_smoothing:
        target = target * (1 - label_smoothing) + label_smoothing / c
    logp = log_softmax(input, cls_dim)
    prod = logp * target
    if weight is not None:
        wshape = [1] * input.dim()
        wshape[cls_dim] = c
        prod = prod * weight.reshape(wshape)
    loss = -prod.sum(cls_dim)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    n = loss.numel()
    return loss.sum() / n


def nll_loss(input: Tensor, target: Tensor, weight: Optional[Tensor] = None, size_average=None,
             ignore_index: int = -100, reduce=None, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of log-probabilities (``torch.nn.functional.nll_loss``)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    return _class_loss("nll", input, target, weight, ignore_index, reduction)




class _PointwiseTargetBackward(Node):
    """Loss whose target also needs a gradient: d/dinput from the kernel, d/dtarget from the formula."""

    __slots__ = ("gx", "gt", "per_elem", "tshape")
    SAVES = True

    def name(self) -> str:
        return "PointwiseLossBackward0"

    def backward(self, g):
        from ..ops.common import unbroadcast

        s = g if self.per_elem else g.reshape(())
        gx = self.gx * s if self.next[0] is not None else None
        gt = unbroadcast(self.gt * s, self.tshape) if self.next[1] is not None else None
        return gx, gt

    def release(self):
        self.gx = self.gt = None


def _pointwise(kind: PointwiseLoss, input: Tensor, target: Tensor, weight: Optional[Tensor], reduction: str, fn: str):
    _check_tensor(input, fn, "input")
    _check_tensor(target, fn, "target")
    _check_reduction(reduction)
    xd, td = input._data, target._data
    if type(xd) is not type(td):
        from ..ops.common import _check_same_device

        _check_same_device(xd, td)
    be = for_array(xd)
    if xd.dtype.kind != "f":
        raise RuntimeError(f"{fn}: input must be a floating-point tensor; got {_dtype.from_numpy_dtype(xd.dtype).name}")
    if td.shape != xd.shape:
        if kind in (PointwiseLoss.BCE, PointwiseLoss.BCE_WITH_LOGITS):
            raise ValueError(f"Using a target size ({list(td.shape)}) that is different to the input size "
                             f"({list(xd.shape)}) is deprecated. Please ensure they have the same size.")
        try:
            bshape = np.broadcast_shapes(xd.shape, td.shape)
        except ValueError:
            raise RuntimeError(f"{fn}: the size of input {list(xd.shape)} and target {list(td.shape)} must match "
                               "or be broadcastable") from None
        warnings.warn(f"Using a target size ({list(td.shape)}) that is different to the input size "
                      f"({list(xd.shape)}). This will likely lead to incorrect results due to broadcasting. "
                      "Please ensure they have the same size.", stacklevel=3)
        if bshape != xd.shape:
            from ..ops.shape import expand

            input = expand(input, bshape)
            xd = input._data
        td = be.xp.broadcast_to(td, xd.shape)
    td = _contig(td.astype(xd.dtype, copy=False))
    wd = None
    if weight is not None:
        wd = _contig(be.xp.broadcast_to(weight._data.astype(xd.dtype, copy=False), xd.shape))
    xc = _contig(xd)
    want_x = _needs_grad(input)
    want_t = _needs_grad(target)
    loss, grad = be.pointwise_loss(xc, td, kind, wd, reduction, want_x or want_t)
    per = reduction == "none"
    if not want_t:
        return _loss_result(loss, grad if want_x else None, input, per, _LOSS_BACKWARD_NAMES[kind])
    if kind in (PointwiseLoss.BCE, PointwiseLoss.BCE_WITH_LOGITS):  # d/dt: -logit(x) for probabilities, -x for logits (times weight and the mean's 1/N)
        xp = be.xp
        gt = xp.log1p(-xc) - xp.log(xc) if kind == PointwiseLoss.BCE else -xc
        if wd is not None:
            gt = gt * wd
        if reduction == "mean":
            gt = gt * xc.dtype.type(1.0 / max(xc.size, 1))
    else:  # mse and l1 depend on x - t
        gt = -grad
    node = _PointwiseTargetBackward((input if want_x else None, target))
    node.gx, node.gt, node.per_elem, node.tshape = grad, gt, per, target._data.shape
    if not per:
        loss = be.xp.asarray(loss, dtype=xd.dtype)
    return _result(loss, node)


def mse_loss(input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean") -> Tensor:
    """Mean squared error (``torch.nn.functional.mse_loss``)."""
    return _pointwise(PointwiseLoss.MSE, input, target, None, _legacy_reduction(size_average, reduce, reduction), "mse_loss")


def l1_loss(input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean") -> Tensor:
    """Mean absolute error (``torch.nn.functional.l1_loss``)."""
    return _pointwise(PointwiseLoss.L1, input, target, None, _legacy_reduction(size_average, reduce, reduction), "l1_loss")


def binary_cross_entropy(input: Tensor, target: Tensor, weight: Optional[Tensor] = None, size_average=None,
                         reduce=None, reduction: str = "mean") -> Tensor:
    """Binary cross entropy of probabilities (``torch.nn.functional.binary_cross_entropy``)."""
    return _pointwise(PointwiseLoss.BCE, input, target, weight, _legacy_reduction(size_average, reduce, reduction),
                      "binary_cross_entropy")


class _BCEPosWeightBackward(Node):
    __slots__ = ("grad", "tgrad")
    SAVES = True

    def name(self) -> str:
        return "BinaryCrossEntropyWithLogitsBackward0"

    def backward(self, g):
        s = g if g.ndim else g.reshape(())
        return (None if self.grad is None else self.grad * s, None if self.tgrad is None else self.tgrad * s)

    def release(self):
        self.grad = self.tgrad = None


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Optional[Tensor] = None,
                                     size_average=None, reduce=None, reduction: str = "mean",
                                     pos_weight: Optional[Tensor] = None) -> Tensor:
    """Sigmoid + binary cross entropy, computed stably from logits
    (``torch.nn.functional.binary_cross_entropy_with_logits``)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if pos_weight is None:
        return _pointwise(PointwiseLoss.BCE_WITH_LOGITS, input, target, weight, reduction, "binary_cross_entropy_with_logits")
    _check_reduction(reduction)
    # loss = (1-t)·x + (1 + (pw-1)·t)·softplus(-x);  d/dx = (1 + (pw-1)·t)·(σ(x) - 1) + (1 - t)
    xd, td = input._data, target._data.astype(input._data.dtype)
    xp = for_array(xd).xp
    pw = pos_weight._data.astype(xd.dtype)
    lw = 1 + (pw - 1) * td
    softplus_neg = xp.maximum(-xd, 0) + xp.log1p(xp.exp(-xp.abs(xd)))
    elem = (1 - td) * xd + lw * softplus_neg
    sig = 1 / (1 + xp.exp(-xd))
    gelem = lw * (sig - 1) + (1 - td)
    if weight is not None:
        w = weight._data.astype(xd.dtype)
        elem, gelem = elem * w, gelem * w
    if reduction == "none":
        loss, scale = elem, 1.0
    elif reduction == "sum":
        loss, scale = xp.asarray(elem.sum()), 1.0
    else:
        loss, scale = xp.asarray(elem.mean()), 1.0 / max(xd.size, 1)
    node = None
    want_x, want_t = _needs_grad(input), _needs_grad(target)
    if want_x or want_t:
        node = _BCEPosWeightBackward((input, target))
        node.grad = gelem * xd.dtype.type(scale) if want_x else None
        node.tgrad = None
        if want_t:  # d/dt = -x + (pw-1)·softplus(-x)
            gt = (pw - 1) * softplus_neg - xd
            if weight is not None:
                gt = gt * w
            node.tgrad = gt * xd.dtype.type(scale)
    return _result(loss.astype(xd.dtype), node)


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """Integer class indices -> one-hot int64 rows (``torch.nn.functional.one_hot``)."""
    _check_tensor(tensor, "one_hot", "tensor")
    td = tensor._data
    if td.dtype.kind not in "iu":
        raise RuntimeError("one_hot is only applicable to index tensor of integer dtype")
    xp = for_array(td).xp
    if num_classes == -1:
        num_classes = int(td.max()) + 1 if td.size else 0
    if td.size and (int(td.min()) < 0 or int(td.max()) >= num_classes):
        raise RuntimeError(f"one_hot: class values must be in [0, {num_classes}); got min {int(td.min())}, "
                           f"max {int(td.max())}")
    out = xp.zeros(td.shape + (num_classes,), dtype=np.int64)
    xp.put_along_axis(out, td[..., None].astype(np.int64), 1, axis=-1) if xp is np else \
        out.__setitem__(tuple(xp.indices(td.shape)) + (td,), 1)
    return _wrap(out)


# ---- batch norm ----------------------------------------------------------------------------------
class _BatchNormBackward(Node):
    """y = γ·x̂ + β, x̂ = (x - μ)/σ over the batch (and length) axes.

    dβ = Σ dy; dγ = Σ dy·x̂; dx = γ/σ · (dy - mean(dy) - x̂·mean(dy·x̂)) in training,
    dx = γ/σ · dy with running statistics (eval).
    """

    __slots__ = ("xhat", "inv_std", "gamma", "axes", "training", "bshape")
    SAVES = True

    def name(self) -> str:
        return "NativeBatchNormBackward0"

    def backward(self, g):
        xhat, inv_std, axes = self.xhat, self.inv_std, self.axes
        gx = gw = gb = None
        if self.next[2] is not None:
            gb = g.sum(axis=axes)
        if self.next[1] is not None:
            gw = (g * xhat).sum(axis=axes)
        if self.next[0] is not None:
            gamma = self.gamma.reshape(self.bshape) if self.gamma is not None else 1
            if self.training:
                mg = g.mean(axis=axes, keepdims=True)
                mgx = (g * xhat).mean(axis=axes, keepdims=True)
                gx = gamma * inv_std * (g - mg - xhat * mgx)
            else:
                gx = gamma * inv_std * g
        return gx, gw, gb

    def release(self):
        self.xhat = self.inv_std = self.gamma = None


def batch_norm(input: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor],
               weight: Optional[Tensor] = None, bias: Optional[Tensor] = None, training: bool = False,
               momentum: Optional[float] = 0.1, eps: float = 1e-5) -> Tensor:
    """Batch normalization over [N, C] or [N, C, L] inputs (``torch.nn.functional.batch_norm``).

    In training the batch statistics normalise (biased variance) and the running
    statistics are updated in place with the unbiased variance; in eval the
    running statistics normalise.
    """
    _check_tensor(input, "batch_norm", "input")
    xd = input._data
    if xd.ndim not in (2, 3):
        raise ValueError(f"expected 2D or 3D input (got {xd.ndim}D input)")
    xp = for_array(xd).xp
    axes = (0,) if xd.ndim == 2 else (0, 2)
    bshape = (1, xd.shape[1]) + ((1,) if xd.ndim == 3 else ())
    n = xd.size // xd.shape[1]
    if training:
        if n <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {list(xd.shape)}")
        mean = xd.mean(axis=axes, keepdims=True)
        centered = xd - mean
        var = (centered * centered).mean(axis=axes, keepdims=True)
        if running_mean is not None and running_var is not None:
            m = 0.1 if momentum is None else momentum
            rm, rv = running_mean._data, running_var._data
            rm *= 1 - m
            rm += m * mean.reshape(rm.shape).astype(rm.dtype)
            rv *= 1 - m
            rv += m * (var.reshape(rv.shape) * (n / (n - 1))).astype(rv.dtype)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm in eval mode needs running_mean and running_var")
        mean = running_mean._data.reshape(bshape).astype(xd.dtype)
        var = running_var._data.reshape(bshape).astype(xd.dtype)
        centered = xd - mean
    inv_std = 1.0 / xp.sqrt(var + xd.dtype.type(eps))
    xhat = centered * inv_std
    y = xhat
    if weight is not None:
        y = y * weight._data.reshape(bshape)
    if bias is not None:
        y = y + bias._data.reshape(bshape)
    node = None
    if _needs_grad(input, weight, bias):
        node = _BatchNormBackward((input, weight, bias))
        node.xhat, node.inv_std = xhat, inv_std
        node.gamma = None if weight is None else weight._data
        node.axes, node.training, node.bshape = axes, training, bshape
    return _result(y.astype(xd.dtype, copy=False), node)
