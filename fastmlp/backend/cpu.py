"""The CPU backend: NumPy arrays; float32 work goes to the native kernels (fastmlp._C),
other dtypes to the NumPy implementations in generic.py. Same function names as the
CUDA backend, so ops, layers and optimizers never branch on the device."""
from __future__ import annotations

import numpy as np

from .. import _C
from .._device import CPU
from . import generic

xp = np
device = CPU
name = "cpu"
_F32 = np.dtype(np.float32)


def _c(a):
    """C-contiguous view or copy (the kernels read rows contiguously)."""
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def _native(fn, arrays, *rest):
    """fn(*arrays, *rest) on the arrays as they are (the common, contiguous case costs no
    check here: the binding validates); if the binding refuses a strided array, retry on
    contiguous copies. Errors that are not about layout propagate unchanged."""
    try:
        return fn(*arrays, *rest)
    except ValueError:
        if all(a is None or a.flags.c_contiguous for a in arrays):
            raise
        return fn(*[a if a is None else _c(a) for a in arrays], *rest)


def asarray(data, dtype=None):
    return np.asarray(data, dtype=dtype)


def from_numpy(arr, dev=None):
    return arr


def to_numpy(arr):
    return arr


def linear_forward(x, w, b, act, act_param, keep_preact, bf16=False):
    """bf16: the product on operands rounded to bfloat16, float32 accumulation (fastmlp.autocast);
    float32 operands only."""
    if x.dtype is _F32 and w.dtype is _F32 and (b is None or b.dtype is _F32):
        return _native(_C.linear_forward, (x, w, b), act, act_param, keep_preact, bf16)
    return generic.linear_forward(np, x, w, b, act, act_param, keep_preact)


def linear_backward(dz, x, w, need_dx, dw, db, accumulate_w, accumulate_b, bf16=False):
    if dz.dtype is _F32 and x.dtype is _F32 and w.dtype is _F32 and (dw is None or dw.dtype is _F32) \
            and (db is None or db.dtype is _F32):
        return _native(_C.linear_backward, (dz, x, w), need_dx, dw, db, accumulate_w, accumulate_b, bf16)
    return generic.linear_backward(np, dz, x, w, need_dx, dw, db, accumulate_w, accumulate_b)


def act_forward(x, act, param=0.0, out=None):
    """y = act(x); with out=x, in place."""
    if x.dtype is _F32:
        return _native(_C.act_forward, (x,), act, param, out)
    y = generic.act_forward(np, x, act, param)
    if out is None:
        return y
    out[...] = y
    return out


def act_backward(dy, saved, act, param=0.0):
    if dy.dtype is _F32 and saved.dtype is _F32:
        return _native(_C.act_backward, (dy, saved), act, param)
    return generic.act_backward(np, dy, saved, act, param)


def softmax_forward(x, log):
    if x.dtype is _F32:
        return _native(_C.softmax_forward, (x,), log)
    return generic.softmax_forward(np, x, log)


def softmax_backward(dy, y, log):
    if dy.dtype is _F32 and y.dtype is _F32:
        return _native(_C.softmax_backward, (dy, y), log)
    return generic.softmax_backward(np, dy, y, log)


def softmax_xent(logits, target, weight, ignore_index, label_smoothing, reduction, want_grad, grad_scale=1.0):
    if logits.dtype is _F32 and (weight is None or weight.dtype is _F32):
        return _native(_C.softmax_xent, (logits, target), weight, ignore_index, label_smoothing, reduction,
                       want_grad, grad_scale)
    _check_labels(target, logits.shape[1], ignore_index, "cross_entropy")
    return generic.softmax_xent(np, logits, target, weight, ignore_index, label_smoothing, reduction, want_grad,
                                grad_scale)


def nll(logp, target, weight, ignore_index, reduction, want_grad, grad_scale=1.0):
    if logp.dtype is _F32 and (weight is None or weight.dtype is _F32):
        return _native(_C.nll, (logp, target), weight, ignore_index, reduction, want_grad, grad_scale)
    _check_labels(target, logp.shape[1], ignore_index, "nll_loss")
    return generic.nll(np, logp, target, weight, ignore_index, reduction, want_grad, grad_scale)


def _check_labels(target, classes, ignore_index, fn):
    bad = (target != ignore_index) & ((target < 0) | (target >= classes))
    if bad.any():
        i = int(np.argmax(bad))
        raise IndexError(f"{fn}: target[{i}] = {int(target[i])} is out of range for {classes} classes "
                         f"(expected 0 <= label < {classes})")


def pointwise_loss(x, t, kind, weight, reduction, want_grad, grad_scale=1.0):
    if x.dtype == _F32 and t.dtype == _F32 and (weight is None or weight.dtype == _F32):
        return _C.pointwise_loss(_c(x), _c(t), kind, None if weight is None else _c(weight), reduction, want_grad,
                                 grad_scale)
    return generic.pointwise_loss(np, x, t, kind, weight, reduction, want_grad, grad_scale)


def colsum(x, out=None, accumulate=False):
    if x.dtype == _F32 and x.ndim == 2 and (out is None or out.dtype == _F32):
        return _C.colsum(_c(x), out, accumulate)
    s = x.sum(axis=0)
    if out is None:
        return s
    if accumulate:
        out += s
    else:
        out[...] = s
    return out


def dropout_forward(x, p, seed, offset):
    if x.dtype is _F32:
        return _native(_C.dropout_forward, (x,), p, seed, offset)
    return generic.dropout_forward(np, x, p, seed, offset)


def dropout_backward(dy, mask, p):
    if dy.dtype is _F32:
        return _native(_C.dropout_backward, (dy, mask), p)
    return generic.dropout_backward(np, dy, mask, p)


def _all_f32(arrays) -> bool:
    for a in arrays:  # a loop, not all() over a generator: one flat buffer per step is the common case
        if a.dtype is not _F32:
            return False
    return True


def sgd_step(params, grads, bufs, lr, momentum, dampening, weight_decay, nesterov, maximize, first_step):
    if _all_f32(params) and _all_f32(grads):
        _C.sgd_step(params, [_c(g) for g in grads], bufs if momentum else None, lr, momentum, dampening,
                    weight_decay, nesterov, maximize, first_step)
    else:
        generic.sgd_step(np, params, grads, bufs, lr, momentum, dampening, weight_decay, nesterov, maximize,
                         first_step)


def adam_step(params, grads, ms, vs, vmaxs, lr, beta1, beta2, eps, weight_decay, step, amsgrad, maximize,
              decoupled):
    if _all_f32(params) and _all_f32(grads):
        _C.adam_step(params, [_c(g) for g in grads], ms, vs, vmaxs if amsgrad else None, lr, beta1, beta2, eps,
                     weight_decay, step, amsgrad, maximize, decoupled)
    else:
        generic.adam_step(np, params, grads, ms, vs, vmaxs, lr, beta1, beta2, eps, weight_decay, step, amsgrad,
                          maximize, decoupled)
