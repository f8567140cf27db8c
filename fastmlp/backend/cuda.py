"""The CUDA backend: CuPy arrays; float32 work goes to the CUDA kernels (fastmlp._cuda),
enqueued on CuPy's current stream; other dtypes use the CuPy implementations in generic.py.
Same function names as cpu.py.

Each op runs on the device of its first array argument: when that is not CUDA's
current device, the op makes it current for the call (``cupy.cuda.Device``), so a
model on ``cuda:1`` trains without the caller switching devices. Arrays of one call
on two devices raise RuntimeError naming both.
"""
from __future__ import annotations

import functools

import numpy as np

from . import generic

name = "cuda"
_F32 = np.dtype(np.float32)
xp = None
_ext = None


def require() -> None:
    """Import CuPy and the CUDA extension, or raise a RuntimeError that says what is missing."""
    global xp, _ext
    if xp is not None:
        return
    from .. import cuda as _cuda_mod

    reason = _cuda_mod.why_unavailable()
    if reason:
        raise RuntimeError(f"CUDA is not available: {reason}")
    import cupy

    from .. import _cuda

    xp, _ext = cupy, _cuda


def _stream() -> int:
    return xp.cuda.get_current_stream().ptr


def _device_ids(args) -> set:
    ids = set()
    for a in args:
        if isinstance(a, (list, tuple)):
            ids.update(_device_ids(a))
        elif hasattr(a, "__cuda_array_interface__"):
            ids.add(a.device.id)
    return ids


def _on_device_of_inputs(fn):
    """Run `fn` with the device of its first array (or list of arrays) current.

    The common case, a first array on the current device, costs two attribute reads
    (the kernels' bindings then check that every other array is on that device, naming
    both devices when one is not). Otherwise every array argument must be on the first
    one's device, checked here before that device is made current.
    """
    @functools.wraps(fn)
    def call(first, *args, **kwargs):
        arr = first[0] if isinstance(first, (list, tuple)) else first
        dev = arr.device.id
        if dev == xp.cuda.runtime.getDevice():
            return fn(first, *args, **kwargs)
        ids = _device_ids((first,) + args + tuple(kwargs.values()))
        if len(ids) > 1:
            a, b = sorted(ids)[:2]
            raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, "
                               f"cuda:{a} and cuda:{b}! (in {fn.__name__})")
        with xp.cuda.Device(dev):
            return fn(first, *args, **kwargs)
    return call


def _c(a):
    return a if a.flags.c_contiguous else xp.ascontiguousarray(a)


def asarray(data, dtype=None):
    return xp.asarray(data, dtype=dtype)


def from_numpy(arr, dev=None):
    """`arr` (a NumPy array, or a CuPy array on another GPU) copied to `dev` (None or
    ``cuda`` without an index: the current device)."""
    require()
    target = xp.cuda.runtime.getDevice() if dev is None or dev.index is None else dev.index
    with xp.cuda.Device(target):
        if isinstance(arr, xp.ndarray):
            return arr if arr.device.id == target else arr.copy()  # copy() copies to the current device
        return xp.asarray(arr)


def to_numpy(arr):
    return arr.get()


def _all_f32(*arrays) -> bool:
    return all(a is None or a.dtype == _F32 for a in arrays)


def _allow_tf32() -> bool:
    from ..backends import cuda as _settings

    return bool(_settings.matmul.allow_tf32)


@_on_device_of_inputs
def linear_forward(x, w, b, act, act_param, keep_preact):
    if _all_f32(x, w, b):
        return _ext.linear_forward(_c(x), _c(w), None if b is None else _c(b), act, act_param, keep_preact,
                                   allow_tf32=_allow_tf32(), stream=_stream())
    return generic.linear_forward(xp, x, w, b, act, act_param, keep_preact)


@_on_device_of_inputs
def linear_backward(dz, x, w, need_dx, dw, db, accumulate_w, accumulate_b):
    if _all_f32(dz, x, w, dw, db):
        return _ext.linear_backward(_c(dz), _c(x), _c(w), need_dx, dw, db, accumulate_w, accumulate_b,
                                    allow_tf32=_allow_tf32(), stream=_stream())
    return generic.linear_backward(xp, dz, x, w, need_dx, dw, db, accumulate_w, accumulate_b)


@_on_device_of_inputs
def act_forward(x, act, param=0.0, out=None):
    """y = act(x); with out=x, in place."""
    if x.dtype == _F32:
        return _ext.act_forward(_c(x), act, param, out, stream=_stream())
    y = generic.act_forward(xp, x, act, param)
    if out is None:
        return y
    out[...] = y
    return out


@_on_device_of_inputs
def act_backward(dy, saved, act, param=0.0):
    if _all_f32(dy, saved):
        return _ext.act_backward(_c(dy), _c(saved), act, param, stream=_stream())
    return generic.act_backward(xp, dy, saved, act, param)


@_on_device_of_inputs
def softmax_forward(x, log):
    if x.dtype == _F32:
        return _ext.softmax_forward(_c(x), log, stream=_stream())
    return generic.softmax_forward(xp, x, log)


@_on_device_of_inputs
def softmax_backward(dy, y, log):
    if _all_f32(dy, y):
        return _ext.softmax_backward(_c(dy), _c(y), log, stream=_stream())
    return generic.softmax_backward(xp, dy, y, log)


@_on_device_of_inputs
def softmax_xent(logits, target, weight, ignore_index, label_smoothing, reduction, want_grad, grad_scale=1.0):
    if _all_f32(logits, weight):
        return _ext.softmax_xent(_c(logits), _c(target), weight, ignore_index, label_smoothing, reduction, want_grad,
                                 grad_scale, stream=_stream())
    return generic.softmax_xent(xp, logits, target, weight, ignore_index, label_smoothing, reduction, want_grad,
                                grad_scale)


@_on_device_of_inputs
def nll(logp, target, weight, ignore_index, reduction, want_grad, grad_scale=1.0):
    if _all_f32(logp, weight):
        return _ext.nll(_c(logp), _c(target), weight, ignore_index, reduction, want_grad, grad_scale,
                        stream=_stream())
    return generic.nll(xp, logp, target, weight, ignore_index, reduction, want_grad, grad_scale)


@_on_device_of_inputs
def pointwise_loss(x, t, kind, weight, reduction, want_grad, grad_scale=1.0):
    if _all_f32(x, t, weight):
        return _ext.pointwise_loss(_c(x), _c(t), kind, weight, reduction, want_grad, grad_scale, stream=_stream())
    return generic.pointwise_loss(xp, x, t, kind, weight, reduction, want_grad, grad_scale)


@_on_device_of_inputs
def colsum(x, out=None, accumulate=False):
    if _all_f32(x, out) and x.ndim == 2:
        return _ext.colsum(_c(x), out, accumulate, stream=_stream())
    s = x.sum(axis=0)
    if out is None:
        return s
    if accumulate:
        out += s
    else:
        out[...] = s
    return out


@_on_device_of_inputs
def dropout_forward(x, p, seed, offset):
    if x.dtype == _F32:
        return _ext.dropout_forward(_c(x), p, seed, offset, stream=_stream())
    return generic.dropout_forward(xp, x, p, seed, offset)


@_on_device_of_inputs
def dropout_backward(dy, mask, p):
    if dy.dtype == _F32:
        return _ext.dropout_backward(_c(dy), mask, p, stream=_stream())
    return generic.dropout_backward(xp, dy, mask, p)


@_on_device_of_inputs
def sgd_step(params, grads, bufs, lr, momentum, dampening, weight_decay, nesterov, maximize, first_step):
    if all(p.dtype == _F32 for p in params):
        _ext.sgd_step(params, [_c(g) for g in grads], bufs if momentum else None, lr, momentum, dampening,
                      weight_decay, nesterov, maximize, first_step, stream=_stream())
    else:
        generic.sgd_step(xp, params, grads, bufs, lr, momentum, dampening, weight_decay, nesterov, maximize,
                         first_step)


@_on_device_of_inputs
def adam_step(params, grads, ms, vs, vmaxs, lr, beta1, beta2, eps, weight_decay, step, amsgrad, maximize,
              decoupled):
    if all(p.dtype == _F32 for p in params):
        _ext.adam_step(params, [_c(g) for g in grads], ms, vs, vmaxs if amsgrad else None, lr, beta1, beta2, eps,
                       weight_decay, step, amsgrad, maximize, decoupled, stream=_stream())
    else:
        generic.adam_step(xp, params, grads, ms, vs, vmaxs, lr, beta1, beta2, eps, weight_decay, step, amsgrad,
                          maximize, decoupled)
