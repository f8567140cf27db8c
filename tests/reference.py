"""Float64 NumPy references for the kernels (independent of the C++ code)."""
from __future__ import annotations

import math

import numpy as np

ACTS = {"identity": 0, "relu": 1, "leaky_relu": 2, "sigmoid": 3, "tanh": 4, "gelu": 5}

_erfc = np.frompyfunc(math.erfc, 1, 1)


def erfc(x: np.ndarray) -> np.ndarray:
    return _erfc(np.asarray(x, dtype=np.float64)).astype(np.float64)


def act_forward(name: str, x: np.ndarray, slope: float = 0.01) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if name == "identity":
        return x
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "leaky_relu":
        return np.where(x > 0, x, slope * x)
    if name == "sigmoid":
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-x))
    if name == "tanh":
        return np.tanh(x)
    if name == "gelu":
        return 0.5 * x * erfc(-x / math.sqrt(2.0))
    raise KeyError(name)


def act_derivative(name: str, x: np.ndarray, slope: float = 0.01) -> np.ndarray:
    """d act / dx at the input x."""
    x = np.asarray(x, dtype=np.float64)
    if name == "identity":
        return np.ones_like(x)
    if name == "relu":
        return (~(x <= 0)).astype(np.float64)  # 1 at NaN, as torch's threshold_backward
    if name == "leaky_relu":
        return np.where(x > 0, 1.0, slope)
    if name == "sigmoid":
        s = act_forward("sigmoid", x)
        return s * (1 - s)
    if name == "tanh":
        return 1 - np.tanh(x) ** 2
    if name == "gelu":
        return 0.5 * erfc(-x / math.sqrt(2.0)) + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    raise KeyError(name)


def round_bf16(x: np.ndarray) -> np.ndarray:
    """float32 x rounded to the nearest bfloat16 (ties to even; NaN made quiet), as float32.
    The bit form of the rule; tests/kernels/test_bf16_convert.py checks it against an exact
    nearest-value search."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    r = np.where(nan, u | 0x00400000, u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return r.astype(np.uint32).view(np.float32).reshape(np.shape(x))


def gemm_expected(a, b, c, ta, tb, alpha=1.0, beta=0.0, bias=None):
    """(exact z, tolerance) in float64 for z = alpha·op(a)·op(b) + beta·c + bias, as a float32
    GEMM should compute it: the tolerance is (K + 4) float32 epsilons of the sum of magnitudes."""
    A = (a.T if ta else a).astype(np.float64)
    B = (b.T if tb else b).astype(np.float64)
    z = alpha * (A @ B)
    mag = abs(alpha) * (np.abs(A) @ np.abs(B))
    if beta != 0.0:
        z = z + beta * c.astype(np.float64)
        mag = mag + np.abs(beta * c.astype(np.float64))
    if bias is not None:
        z = z + bias
        mag = mag + np.abs(bias.astype(np.float64))
    return z, (A.shape[1] + 4) * float(np.finfo(np.float32).eps) * mag + 1e-30
