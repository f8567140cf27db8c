"""Softmax / log_softmax kernels (fastmlp._C.softmax_forward / softmax_backward)
against float64 NumPy and, when installed, PyTorch."""
from __future__ import annotations

import numpy as np
import pytest

from fastmlp import _C

ROWS = [0, 1, 7, 65]
COLS = [1, 7, 10, 16, 17, 63, 65, 784, 1001]


def softmax64(x: np.ndarray, log: bool) -> np.ndarray:
    """Row softmax / log_softmax in float64, shifted by the row max."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] == 0:
        return x.copy()
    z = x - x.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1, keepdims=True))
    return z - lse if log else np.exp(z - lse)


def logits(rng, rows: int, cols: int, scale: float = 4.0) -> np.ndarray:
    return (rng.standard_normal((rows, cols)) * scale).astype(np.float32)


def check_forward(y: np.ndarray, x: np.ndarray, log: bool) -> None:
    ref = softmax64(x, log)
    if log:
        # Absolute error grows with |x - max| (one float32 rounding of the difference).
        span = np.abs(ref[np.isfinite(ref)]).max(initial=0.0)
        np.testing.assert_allclose(y, ref, rtol=2e-6, atol=1e-6 + 2e-7 * span)
    else:
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("cols", COLS)
@pytest.mark.parametrize("rows", ROWS)
def test_forward_matches_float64(isa, threads, rng, rows, cols, log):
    x = logits(rng, rows, cols)
    y = _C.softmax_forward(x, log)
    assert y.dtype == np.float32 and y.shape == x.shape
    check_forward(y, x, log)
    if rows and not log:
        np.testing.assert_allclose(y.sum(axis=1, dtype=np.float64), 1.0, rtol=0, atol=3e-6)


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("cols", [1, 7, 10, 17, 65, 784])
@pytest.mark.parametrize("rows", [1, 7, 65])
def test_backward_matches_float64(isa, threads, rng, rows, cols, log):
    x = logits(rng, rows, cols)
    y = _C.softmax_forward(x, log)
    dy = rng.standard_normal((rows, cols)).astype(np.float32)
    dx = _C.softmax_backward(dy, y, log)
    y64, dy64 = y.astype(np.float64), dy.astype(np.float64)
    if log:
        ref = dy64 - np.exp(y64) * dy64.sum(axis=1, keepdims=True)
    else:
        ref = y64 * (dy64 - (dy64 * y64).sum(axis=1, keepdims=True))
    # Each row's sum carries float32 rounding of the order of eps·Σ|dy|.
    atol = 4e-6 * float(np.abs(dy64).sum(axis=1).max())
    np.testing.assert_allclose(dx, ref, rtol=1e-5, atol=atol)


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_extreme_logits(isa, log):
    """Huge, tiny, equal and -inf logits: no overflow, no NaN, exact probabilities where known."""
    x = np.array([
        [1e4, -1e4, 0.0, 1e4 - 1.0],
        [-1e4, -1e4 + 2.0, -1e4 + 1.0, -1e4],
        [3.0, 3.0, 3.0, 3.0],
        [88.0, 89.0, 90.0, -90.0],
        [0.0, -np.inf, 1.0, -np.inf],
    ], dtype=np.float32)
    x = np.tile(x, (1, 5))  # 20 columns: a full vector plus a tail on every kernel set
    y = _C.softmax_forward(x, log)
    assert np.all(np.isfinite(y[:4]))
    check_forward(y, x, log)
    if not log:
        np.testing.assert_allclose(y[2], 1.0 / 20.0, rtol=1e-6)
        assert np.all(y[4, 1::4] == 0.0)
    else:
        assert np.all(np.isneginf(y[4, 1::4]))
        np.testing.assert_allclose(y[2], -np.log(20.0), rtol=1e-6)


def test_nan_propagates_to_its_row(isa):
    x = np.zeros((3, 17), np.float32)
    x[1, 5] = np.nan
    for log in (False, True):
        y = _C.softmax_forward(x, log)
        assert np.all(np.isnan(y[1]))
        assert np.all(np.isfinite(y[[0, 2]]))


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_every_thread_count_gives_identical_results(isa, rng, log):
    x = logits(rng, 300, 1000)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    out = []
    for t in (1, 2):
        _C.set_num_threads(t)
        y = _C.softmax_forward(x, log)
        out.append((y, _C.softmax_backward(dy, y, log)))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1], out[1][1])


def test_out_argument(isa, rng):
    x = logits(rng, 5, 33)
    out = np.full_like(x, np.nan)
    assert _C.softmax_forward(x, True, out) is out
    check_forward(out, x, True)
    dx = np.full_like(x, np.nan)
    assert _C.softmax_backward(x, out, True, dx) is dx


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_matches_torch(isa, rng, log):
    torch = pytest.importorskip("torch")
    x = logits(rng, 37, 129, scale=10.0)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    tx = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
    ty = torch.log_softmax(tx, 1) if log else torch.softmax(tx, 1)
    (tdx,) = torch.autograd.grad(ty, tx, torch.from_numpy(dy.astype(np.float64)))
    y = _C.softmax_forward(x, log)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-5, atol=1e-5 if log else 1e-12)
    dx = _C.softmax_backward(dy, y, log)
    np.testing.assert_allclose(dx, tdx.numpy(), rtol=1e-4, atol=1e-5)


class TestBadInput:
    def test_wrong_dtype(self):
        with pytest.raises(TypeError, match=r"softmax_forward: argument 'x' must be a float32 array; got float64 \[2, 3\]"):
            _C.softmax_forward(np.zeros((2, 3)))

    def test_not_2d(self):
        msg = r"log_softmax_forward: argument 'x' must be 2-D \[rows, classes\]; got float32 \[6\]"
        with pytest.raises(ValueError, match=msg):
            _C.softmax_forward(np.zeros(6, np.float32), True)

    def test_non_contiguous(self):
        with pytest.raises(ValueError, match="C-contiguous"):
            _C.softmax_forward(np.zeros((4, 6), np.float32)[:, ::2])

    def test_wrong_out_shape(self):
        with pytest.raises(ValueError, match=r"argument 'out' must have shape \[2, 3\]; got float32 \[3, 2\]"):
            _C.softmax_forward(np.zeros((2, 3), np.float32), out=np.zeros((3, 2), np.float32))

    def test_out_aliases_input(self):
        x = np.zeros((2, 3), np.float32)
        with pytest.raises(ValueError, match="overlap"):
            _C.softmax_forward(x, out=x)

    def test_backward_shape_mismatch(self):
        with pytest.raises(ValueError, match=r"'dy' and 'y' must have the same shape; got \[2, 3\] and \[2, 4\]"):
            _C.softmax_backward(np.zeros((2, 3), np.float32), np.zeros((2, 4), np.float32))

    def test_backward_wrong_dtype(self):
        with pytest.raises(TypeError, match=r"softmax_backward: argument 'y' must be a float32 array; got float64"):
            _C.softmax_backward(np.zeros((2, 3), np.float32), np.zeros((2, 3)))
