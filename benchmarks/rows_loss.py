"""Benchmark rows: softmax cross entropy (loss + gradient), log_softmax forward /
backward and the element-wise losses (MSE, BCE with logits; loss + gradient) against
the plain NumPy way, and PyTorch when installed."""
from __future__ import annotations

import numpy as np

from fastmlp import _C

if __package__:
    from .common import compare
else:
    from common import compare


def numpy_xent(x: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross entropy and its gradient, the way a NumPy training loop writes it."""
    n = x.shape[0]
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    logp = z - np.log(s)
    loss = -logp[np.arange(n), labels].mean()
    grad = e / s
    grad[np.arange(n), labels] -= 1.0
    grad /= n
    return float(loss), grad


def numpy_log_softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def numpy_log_softmax_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    return dy - np.exp(y) * dy.sum(axis=1, keepdims=True)


def rows(quick: bool = False, torch=None):
    out = []
    rng = np.random.default_rng(0)
    xent_shapes = [(10, 10), (128, 10), (128, 1000)] if quick else \
        [(10, 10), (20, 10), (64, 10), (128, 10), (256, 10), (128, 1000)]
    for m, n in xent_shapes:
        x = (rng.standard_normal((m, n)) * 2).astype(np.float32)
        labels = rng.integers(0, n, m)
        torch_fn = None
        if torch is not None:
            tx = torch.from_numpy(x).requires_grad_(True)
            tl = torch.from_numpy(labels)

            def torch_fn(tx=tx, tl=tl):
                loss = torch.nn.functional.cross_entropy(tx, tl)
                return torch.autograd.grad(loss, tx)
        out.append(compare("xent_fw_bw", f"{m}x{n}",
                           lambda x=x, labels=labels: _C.softmax_xent(x, labels, want_grad=True),
                           lambda x=x, labels=labels: numpy_xent(x, labels), torch_fn, nbytes=2 * x.nbytes))

    ls_shapes = [(128, 10), (128, 1000)] if quick else [(20, 10), (128, 10), (128, 1000), (256, 1024)]
    for m, n in ls_shapes:
        x = (rng.standard_normal((m, n)) * 2).astype(np.float32)
        dy = rng.standard_normal((m, n)).astype(np.float32)
        y = np.empty_like(x)
        dx = np.empty_like(x)
        ylog = numpy_log_softmax(x)
        tx = torch.from_numpy(x) if torch is not None else None
        tdy = torch.from_numpy(dy) if torch is not None else None
        tylog = torch.from_numpy(ylog) if torch is not None else None
        out.append(compare("log_softmax_fw", f"{m}x{n}", lambda x=x, y=y: _C.softmax_forward(x, True, y),
                           lambda x=x: numpy_log_softmax(x),
                           (lambda tx=tx: torch.log_softmax(tx, 1)) if torch is not None else None,
                           nbytes=2 * x.nbytes))
        out.append(compare("log_softmax_bw", f"{m}x{n}",
                           lambda dy=dy, ylog=ylog, dx=dx: _C.softmax_backward(dy, ylog, True, dx),
                           lambda dy=dy, ylog=ylog: numpy_log_softmax_backward(dy, ylog),
                           (lambda tdy=tdy, tylog=tylog: torch._log_softmax_backward_data(tdy, tylog, 1, torch.float32))
                           if torch is not None else None,
                           nbytes=3 * x.nbytes))
    pw_sizes = [60000] if quick else [1280, 60000, 1 << 20]
    for n in pw_sizes:
        x = rng.standard_normal(n).astype(np.float32)
        t = rng.random(n).astype(np.float32)
        for name, kind in (("mse_fw_bw", 0), ("bce_logits_fw_bw", 3)):
            torch_fn = None
            if torch is not None:
                tx = torch.from_numpy(x).requires_grad_(True)
                tt = torch.from_numpy(t)
                loss_of = torch.nn.functional.mse_loss if kind == 0 else \
                    torch.nn.functional.binary_cross_entropy_with_logits

                def torch_fn(tx=tx, tt=tt, loss_of=loss_of):
                    return torch.autograd.grad(loss_of(tx, tt), tx)
            out.append(compare(name, f"{n}",
                               lambda x=x, t=t, kind=kind: _C.pointwise_loss(x, t, kind, want_grad=True),
                               lambda x=x, t=t, kind=kind: numpy_pointwise(x, t, kind), torch_fn,
                               nbytes=3 * x.nbytes))
    return out


def numpy_pointwise(x: np.ndarray, t: np.ndarray, kind: int) -> tuple[float, np.ndarray]:
    """Mean MSE (kind 0) or BCE-with-logits (kind 3) and its gradient, as a NumPy loop writes them."""
    n = x.size
    if kind == 0:
        d = x - t
        return float((d * d).mean()), (2.0 / n) * d
    loss = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
    sig = 1.0 / (1.0 + np.exp(-x))
    return float(loss.mean()), (sig - t) / n
