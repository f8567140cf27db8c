"""Activation kernels (fastmlp._C.act_forward / act_backward) against float64 NumPy."""
from __future__ import annotations

import numpy as np
import pytest

from fastmlp import _C

from reference import ACTS, act_derivative, act_forward

SIZES = [0, 1, 7, 17, 63, 65, 784, 70001]
SLOPE = 0.01


def inputs(rng, n):
    x = rng.standard_normal(n) * 3.0
    if n >= 20:  # extremes: saturation, overflow of exp, exact zeros
        x[:10] = [0.0, -0.0, 1e4, -1e4, 88.9, -88.9, 30.0, -30.0, 1e-30, -1e-7]
    return x.astype(np.float32)


def uses_input(name):
    return name in ("leaky_relu", "gelu")


@pytest.mark.parametrize("name", list(ACTS))
@pytest.mark.parametrize("n", SIZES)
def test_forward_matches_float64(isa, threads, rng, name, n):
    x = inputs(rng, n)
    y = _C.act_forward(x, ACTS[name], SLOPE)
    assert y.dtype == np.float32 and y.shape == x.shape
    # gelu's far negative tail (|y| < 1e-12) loses a few more bits to the rounding of x².
    rtol = 1e-5 if name == "gelu" else 4e-6
    np.testing.assert_allclose(y, act_forward(name, x, SLOPE), rtol=rtol, atol=1e-30)


@pytest.mark.parametrize("name", list(ACTS))
@pytest.mark.parametrize("n", SIZES)
def test_backward_matches_float64(isa, threads, rng, name, n):
    x = inputs(rng, n)
    dy = rng.standard_normal(n).astype(np.float32)
    y = _C.act_forward(x, ACTS[name], SLOPE)
    saved = x if uses_input(name) else y
    dx = _C.act_backward(dy, saved, ACTS[name], SLOPE)
    # The derivative is taken at the float32 values the kernel saw.
    if name in ("sigmoid", "tanh"):
        y64 = y.astype(np.float64)
        deriv = y64 * (1 - y64) if name == "sigmoid" else 1 - y64 * y64
    else:
        deriv = act_derivative(name, x, SLOPE)
    np.testing.assert_allclose(dx, dy * deriv, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(ACTS))
def test_backward_accumulates(isa, rng, name):
    x = inputs(rng, 100)
    dy = rng.standard_normal(100).astype(np.float32)
    saved = x if uses_input(name) else _C.act_forward(x, ACTS[name], SLOPE)
    once = _C.act_backward(dy, saved, ACTS[name], SLOPE)
    acc = np.full(100, 0.5, dtype=np.float32)
    _C.act_backward(dy, saved, ACTS[name], SLOPE, out=acc, accumulate=True)
    np.testing.assert_allclose(acc, once + 0.5, rtol=1e-6, atol=1e-6)


def test_forward_in_place(isa):
    x = np.linspace(-3, 3, 101, dtype=np.float32)
    expected = np.maximum(x, 0)
    out = _C.act_forward(x, ACTS["relu"], 0.0, out=x)
    assert out is x
    np.testing.assert_array_equal(x, expected)


def test_nan_propagates(isa):
    x = np.array([np.nan, 1.0], dtype=np.float32)
    for name in ("relu", "leaky_relu", "sigmoid", "tanh", "gelu"):
        assert np.isnan(_C.act_forward(x, ACTS[name])[0]), name


def test_relu_keeps_nan_and_negative_zero_as_torch(isa):
    """torch.relu(nan) is nan and relu(-0.) is -0.; its backward passes dy where the output is
    not <= 0, so a NaN output passes the gradient on (a diverging run stays visible)."""
    x = np.array([np.nan, -0.0, -1.0, 2.0, 0.0] * 5, dtype=np.float32)  # long enough for the SIMD body
    y = _C.act_forward(x, ACTS["relu"])
    np.testing.assert_array_equal(np.isnan(y), np.isnan(x))
    np.testing.assert_array_equal(np.signbit(y[1::5]), True)
    np.testing.assert_array_equal(y[2::5], 0.0)
    dy = np.full_like(x, 3.0)
    dx = _C.act_backward(dy, y, ACTS["relu"])
    np.testing.assert_array_equal(dx[:5], [3.0, 0.0, 0.0, 3.0, 0.0])


def test_gemm_relu_epilogue_keeps_nan(isa):
    a = np.ones((3, 40), dtype=np.float32)
    a[1, 5] = np.nan
    w = np.ones((20, 40), dtype=np.float32)
    for trans_b, b in ((True, w), (False, np.ascontiguousarray(w.T))):
        c = np.empty((3, 20), dtype=np.float32)
        _C.gemm(a, b, c, False, trans_b, act=ACTS["relu"])
        np.testing.assert_array_equal(np.isnan(c).any(axis=1), [False, True, False])
        np.testing.assert_array_equal(c[0], 40.0)


def test_every_thread_count_gives_identical_results(isa, rng):
    x = inputs(rng, 200003)
    results = []
    for t in (1, 2):
        _C.set_num_threads(t)
        results.append(_C.act_forward(x, ACTS["gelu"]))
    np.testing.assert_array_equal(results[0], results[1])


class TestBadInput:
    def test_wrong_dtype(self):
        with pytest.raises(TypeError, match=r"act_forward: argument 'x' must be a float32 array; got float64 \[3\]"):
            _C.act_forward(np.zeros(3), 1)

    def test_not_an_array(self):
        with pytest.raises(TypeError, match="argument 'x' must be a float32 numpy array; got list"):
            _C.act_forward([1.0, 2.0], 1)

    def test_non_contiguous(self):
        with pytest.raises(ValueError, match="must be C-contiguous"):
            _C.act_forward(np.zeros((4, 4), np.float32)[:, 1], 1)

    def test_bad_act_code(self):
        with pytest.raises(ValueError, match=r"act must be an activation code in \[0, 6\)"):
            _C.act_forward(np.zeros(3, np.float32), 9)

    def test_wrong_out_shape(self):
        with pytest.raises(ValueError, match=r"argument 'out' must have shape \[3\]; got float32 \[4\]"):
            _C.act_forward(np.zeros(3, np.float32), 1, out=np.zeros(4, np.float32))

    def test_read_only_out(self):
        out = np.zeros(3, np.float32)
        out.setflags(write=False)
        with pytest.raises(ValueError, match="must be writable"):
            _C.act_forward(np.zeros(3, np.float32), 1, out=out)

    def test_partial_overlap(self):
        buf = np.zeros(10, np.float32)
        with pytest.raises(ValueError, match="partial overlap"):
            _C.act_forward(buf[:8], 1, out=buf[2:])

    def test_backward_shape_mismatch(self):
        with pytest.raises(ValueError, match=r"'dy' and 'saved' must have the same shape; got \[3\] and \[4\]"):
            _C.act_backward(np.zeros(3, np.float32), np.zeros(4, np.float32), 1)

    def test_accumulate_needs_out(self):
        with pytest.raises(ValueError, match="accumulate=True needs an 'out' array"):
            _C.act_backward(np.zeros(3, np.float32), np.zeros(3, np.float32), 1, accumulate=True)

    def test_unknown_isa(self):
        with pytest.raises(ValueError, match="'sse9' is not available; choose one of: reference"):
            _C.set_isa("sse9")
