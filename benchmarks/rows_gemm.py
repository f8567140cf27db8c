"""Benchmark rows: GEMM in the three shapes a Linear layer uses, a large square
GEMM, and the Linear forward with bias and ReLU fused into the GEMM epilogue.

Shapes are written batch x in_features x out_features (M x K x N for the forward):
    gemm_fw  Y[M,N]  = X[M,K] · W[N,K]ᵀ      numpy: np.matmul(x, w.T, out=y)
    gemm_dw  dW[N,K] = dY[M,N]ᵀ · X[M,K]     numpy: np.matmul(dy.T, x, out=dw)
    gemm_dx  dX[M,K] = dY[M,N] · W[N,K]      numpy: np.matmul(dy, w, out=dx)
Outputs are allocated once, so the multiplication is what gets timed (except for
linear_fw_relu, whose API returns a new array, as its NumPy expression does).
"""
from __future__ import annotations

import numpy as np

from fastmlp import _C

if __package__:
    from .common import Row, compare
else:
    from common import Row, compare

BATCHES = [10, 20, 64, 128, 256]
LAYERS = [(784, 512), (512, 512), (784, 64), (512, 10), (1024, 1024)]  # (in, out)
RELU = 1


def _layer_rows(m: int, k: int, n: int, rng: np.random.Generator, torch, repeat: int) -> list[Row]:
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((n, k), dtype=np.float32)
    dy = rng.standard_normal((m, n), dtype=np.float32)
    y = np.empty((m, n), np.float32)
    dw = np.empty((n, k), np.float32)
    dx = np.empty((m, k), np.float32)
    flops = 2.0 * m * n * k
    shape = f"{m}x{k}x{n}"
    t = {}
    if torch is not None:
        t = {name: torch.from_numpy(a) for name, a in
             dict(x=x, w=w, dy=dy, y=y.copy(), dw=dw.copy(), dx=dx.copy()).items()}
    rows = [
        compare("gemm_fw", shape, lambda: _C.gemm(x, w, y, False, True),
                lambda: np.matmul(x, w.T, out=y),
                (lambda: torch.mm(t["x"], t["w"].t(), out=t["y"])) if torch else None,
                flops=flops, repeat=repeat),
        compare("gemm_dw", shape, lambda: _C.gemm(dy, x, dw, True, False),
                lambda: np.matmul(dy.T, x, out=dw),
                (lambda: torch.mm(t["dy"].t(), t["x"], out=t["dw"])) if torch else None,
                flops=flops, repeat=repeat),
        compare("gemm_dx", shape, lambda: _C.gemm(dy, w, dx, False, False),
                lambda: np.matmul(dy, w, out=dx),
                (lambda: torch.mm(t["dy"], t["w"], out=t["dx"])) if torch else None,
                flops=flops, repeat=repeat),
    ]
    return rows


def _linear_relu_row(m: int, k: int, n: int, rng: np.random.Generator, torch, repeat: int) -> Row:
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = (rng.standard_normal((n, k), dtype=np.float32) / np.sqrt(k)).astype(np.float32)
    b = rng.standard_normal(n, dtype=np.float32)
    torch_fn = None
    if torch is not None:
        tx, tw, tb = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)
        torch_fn = lambda: torch.relu(torch.nn.functional.linear(tx, tw, tb))  # noqa: E731
    return compare("linear_fw_relu", f"{m}x{k}x{n}", lambda: _C.linear_forward(x, w, b, RELU),
                   lambda: np.maximum(x @ w.T + b, 0), torch_fn, flops=2.0 * m * n * k,
                   repeat=repeat)


def _square_row(size: int, rng: np.random.Generator, torch, repeat: int) -> Row:
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    c = np.empty((size, size), np.float32)
    torch_fn = None
    if torch is not None:
        ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c.copy())
        torch_fn = lambda: torch.mm(ta, tb, out=tc)  # noqa: E731
    return compare("gemm", f"{size}x{size}x{size}", lambda: _C.gemm(a, b, c),
                   lambda: np.matmul(a, b, out=c), torch_fn, flops=2.0 * size ** 3, repeat=repeat)


def rows(quick: bool = False, torch=None) -> list[Row]:
    """The GEMM rows; `quick` keeps two batches and two layers."""
    rng = np.random.default_rng(0)
    repeat = 5 if quick else 9
    batches = [10, 128] if quick else BATCHES
    layers = [(784, 512), (512, 10)] if quick else LAYERS
    out: list[Row] = []
    for k, n in layers:
        for m in batches:
            out.extend(_layer_rows(m, k, n, rng, torch, repeat))
    out.append(_square_row(2048, rng, torch, 5 if quick else 7))
    for m in ([10, 128] if quick else BATCHES):
        out.append(_linear_relu_row(m, 784, 512, rng, torch, repeat))
    return out
