"""Array-library-generic implementations of the kernel set (NumPy on the CPU, CuPy on a GPU).

The native kernels compute in float32. These functions serve every other dtype
(float64 above all: the finite-difference gradient checks run in float64) with
the same arguments and results as the native bindings, in the input's dtype.
"""
from __future__ import annotations

import math

import numpy as np

from .acts import GELU, IDENTITY, LEAKY_RELU, RELU, SIGMOID, TANH
from .loss_kinds import PointwiseLoss

_SQRT_HALF = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _erfc(xp, x):
    if xp is np:
        return np.frompyfunc(math.erfc, 1, 1)(x).astype(x.dtype)
    import cupyx.scipy.special as sp  # pragma: no cover - GPU only

    return sp.erfc(x)


def act_forward(xp, x, act: int, param: float):
    if act == IDENTITY:
        return x.copy()
    if act == RELU:
        return xp.maximum(x, 0)
    if act == LEAKY_RELU:
        return xp.where(x > 0, x, x * param)
    if act == SIGMOID:
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + xp.exp(-x))
    if act == TANH:
        return xp.tanh(x)
    if act == GELU:
        return 0.5 * x * _erfc(xp, -x * _SQRT_HALF)
    raise ValueError(f"act must be an activation code in [0, 6); got {act}")


def act_backward(xp, dy, saved, act: int, param: float):
    """dx = dy * act'(.), saved = input for leaky_relu/gelu, output otherwise."""
    if act == IDENTITY:
        return dy.copy()
    if act == RELU:
        return xp.where(saved <= 0, 0, dy).astype(dy.dtype, copy=False)  # NaN outputs pass dy on, as torch
    if act == LEAKY_RELU:
        return xp.where(saved > 0, dy, dy * param)
    if act == SIGMOID:
        return dy * saved * (1 - saved)
    if act == TANH:
        return dy * (1 - saved * saved)
    if act == GELU:
        cdf = 0.5 * _erfc(xp, -saved * _SQRT_HALF)
        return dy * (cdf + saved * xp.exp(-0.5 * saved * saved) * _INV_SQRT_2PI)
    raise ValueError(f"act must be an activation code in [0, 6); got {act}")


def linear_forward(xp, x, w, b, act: int, act_param: float, keep_preact: bool):
    z = x @ w.T
    if b is not None:
        z = z + b
    y = act_forward(xp, z, act, act_param)
    return (y, z) if keep_preact else y


def linear_backward(xp, dz, x, w, need_dx, dw, db, accumulate_w, accumulate_b):
    if dw is not None:
        if accumulate_w:
            dw += dz.T @ x
        else:
            dw[...] = dz.T @ x
    if db is not None:
        if accumulate_b:
            db += dz.sum(axis=0)
        else:
            db[...] = dz.sum(axis=0)
    return dz @ w if need_dx else None


def softmax_forward(xp, x, log: bool):
    m = x.max(axis=1, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0)
    s = x - m
    lse = xp.log(xp.exp(s).sum(axis=1, keepdims=True))
    return s - lse if log else xp.exp(s - lse)


def softmax_backward(xp, dy, y, log: bool):
    if log:
        return dy - xp.exp(y) * dy.sum(axis=1, keepdims=True)
    return y * (dy - (dy * y).sum(axis=1, keepdims=True))


def _class_rows(xp, target, weight, ignore_index, dtype):
    valid = target != ignore_index
    safe = xp.where(valid, target, 0)
    w_rows = weight[safe] if weight is not None else xp.ones(target.shape, dtype=dtype)
    return valid, safe, xp.where(valid, w_rows, 0).astype(dtype)


def _reduce(loss_rows, wsum, reduction):
    if reduction == "none":
        return loss_rows
    total = float(loss_rows.sum())
    if reduction == "sum":
        return total
    return total / wsum if wsum != 0 else float("nan")


def softmax_xent(xp, logits, target, weight, ignore_index, label_smoothing, reduction, want_grad, grad_scale):
    n, c = logits.shape
    logp = softmax_forward(xp, logits, True)
    valid, safe, w_rows = _class_rows(xp, target, weight, ignore_index, logits.dtype)
    eps = label_smoothing
    nll = -logp[xp.arange(n), safe]
    loss_rows = (1 - eps) * w_rows * nll
    wc = weight if weight is not None else xp.ones(c, dtype=logits.dtype)
    if eps:
        loss_rows = loss_rows + xp.where(valid, eps / c * (-(logp * wc).sum(axis=1)), 0)
    wsum = float(w_rows.sum())
    grad = None
    if want_grad:
        p = xp.exp(logp)
        onehot = xp.zeros_like(logits)
        onehot[xp.arange(n), safe] = 1
        grad = (1 - eps) * w_rows[:, None] * (p - onehot) + eps / c * (wc.sum() * p - wc)
        grad = grad * valid[:, None]
        scale = grad_scale / wsum if reduction == "mean" else grad_scale
        grad = grad * scale
    return _reduce(loss_rows, wsum, reduction), grad, wsum


def nll(xp, logp, target, weight, ignore_index, reduction, want_grad, grad_scale):
    n, c = logp.shape
    valid, safe, w_rows = _class_rows(xp, target, weight, ignore_index, logp.dtype)
    loss_rows = -w_rows * logp[xp.arange(n), safe]
    wsum = float(w_rows.sum())
    grad = None
    if want_grad:
        grad = xp.zeros_like(logp)
        scale = grad_scale / wsum if reduction == "mean" else grad_scale
        grad[xp.arange(n), safe] = -w_rows * scale
    return _reduce(loss_rows, wsum, reduction), grad, wsum


def pointwise_loss(xp, x, t, kind, weight, reduction, want_grad, grad_scale):
    if kind == PointwiseLoss.MSE:
        elem, g = (x - t) ** 2, 2 * (x - t)
    elif kind == PointwiseLoss.L1:
        elem, g = xp.abs(x - t), xp.sign(x - t)
    elif kind == PointwiseLoss.BCE:
        if x.size and (float(x.min()) < 0 or float(x.max()) > 1):
            raise RuntimeError("binary_cross_entropy: all elements of input should be between 0 and 1")
        with np.errstate(divide="ignore"):
            elem = -(t * xp.maximum(xp.log(x), -100) + (1 - t) * xp.maximum(xp.log1p(-x), -100))
        g = (x - t) / xp.maximum((1 - x) * x, 1e-12)
    elif kind == PointwiseLoss.BCE_WITH_LOGITS:
        elem = xp.maximum(x, 0) - x * t + xp.log1p(xp.exp(-xp.abs(x)))
        g = 1 / (1 + xp.exp(-x)) - t
    else:
        raise ValueError(f"pointwise_loss: kind must be a PointwiseLoss (0..3); got {kind}")
    if weight is not None:
        elem, g = elem * weight, g * weight
    grad = None
    if want_grad:
        scale = grad_scale / x.size if reduction == "mean" and x.size else grad_scale
        grad = g * scale
    if reduction == "none":
        return elem, grad
    total = float(elem.sum())
    return (total if reduction == "sum" else (total / x.size if x.size else float("nan"))), grad


def dropout_mask(xp, shape, p: float, seed: int, offset: int):
    """The same keep-mask as the native dropout kernels (Philox bits >= p * 2^32)."""
    from .. import _C

    n = int(np.prod(shape)) if len(shape) else 1
    bits = _C.philox_bits(seed, offset, n)
    t = p * 4294967296.0
    threshold = 0 if t <= 0 else (0xFFFFFFFF if t >= 4294967295.0 else int(t))
    keep = (bits >= threshold) if p < 1 else np.zeros(n, dtype=bool)
    keep = keep.reshape(shape).astype(np.uint8)
    return keep if xp is np else xp.asarray(keep)


def dropout_forward(xp, x, p, seed, offset):
    mask = dropout_mask(xp, x.shape, p, seed, offset)
    scale = 1.0 / (1.0 - p) if p < 1 else 0.0
    return x * mask * x.dtype.type(scale), mask


def dropout_backward(xp, dy, mask, p):
    scale = 1.0 / (1.0 - p) if p < 1 else 0.0
    return dy * mask * dy.dtype.type(scale)


def sgd_step(xp, params, grads, bufs, lr, momentum, dampening, weight_decay, nesterov, maximize, first_step):
    for i, (p, g) in enumerate(zip(params, grads)):
        d = -g if maximize else g
        if weight_decay:
            d = d + weight_decay * p
        if momentum:
            b = bufs[i]
            if first_step:
                b[...] = d
            else:
                b *= momentum
                b += (1 - dampening) * d
            d = d + momentum * b if nesterov else b
        p -= lr * d


def adam_step(xp, params, grads, ms, vs, vmaxs, lr, beta1, beta2, eps, weight_decay, step, amsgrad, maximize,
              decoupled):
    bc1 = 1 - beta1 ** step
    bc2 = 1 - beta2 ** step
    step_size = lr / bc1
    bc2_sqrt = math.sqrt(bc2)
    for i, (p, g) in enumerate(zip(params, grads)):
        g = -g if maximize else g
        if weight_decay:
            if decoupled:
                p *= 1 - lr * weight_decay
            else:
                g = g + weight_decay * p
        m, v = ms[i], vs[i]
        m += (1 - beta1) * (g - m)
        v *= beta2
        v += (1 - beta2) * g * g
        if amsgrad:
            xp.maximum(vmaxs[i], v, out=vmaxs[i])
            denom = xp.sqrt(vmaxs[i]) / bc2_sqrt + eps
        else:
            denom = xp.sqrt(v) / bc2_sqrt + eps
        p -= step_size * (m / denom)
