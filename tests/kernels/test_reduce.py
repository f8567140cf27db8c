"""Reduction kernels (fastmlp._C.colsum / rowsum) against float64 NumPy."""
from __future__ import annotations

import numpy as np
import pytest

from fastmlp import _C

SHAPES = [(1, 1), (1, 7), (7, 1), (17, 10), (63, 65), (65, 63), (128, 512), (300, 257),
          (1000, 3), (2049, 13), (784, 784)]


def check(got: np.ndarray, x: np.ndarray, axis: int, base: np.ndarray | None = None) -> None:
    x64 = x.astype(np.float64)
    ref = x64.sum(axis=axis)
    if base is not None:
        ref = ref + base
    # float32 sums: error bounded by a few eps times Σ|x| along the sum
    atol = 4e-7 * np.abs(x64).sum(axis=axis).max(initial=0.0) + 1e-30
    np.testing.assert_allclose(got, ref, rtol=2e-6, atol=atol)


@pytest.mark.parametrize("rows,cols", SHAPES)
def test_colsum_matches_float64(isa, threads, rng, rows, cols):
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    out = _C.colsum(x)
    assert out.dtype == np.float32 and out.shape == (cols,)
    check(out, x, 0)


@pytest.mark.parametrize("rows,cols", SHAPES)
def test_rowsum_matches_float64(isa, threads, rng, rows, cols):
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    out = _C.rowsum(x)
    assert out.dtype == np.float32 and out.shape == (rows,)
    check(out, x, 1)


@pytest.mark.parametrize("fn,axis", [(_C.colsum, 0), (_C.rowsum, 1)], ids=["colsum", "rowsum"])
@pytest.mark.parametrize("rows,cols", [(1, 1), (17, 10), (130, 300), (3000, 7)])
def test_accumulate(isa, rng, fn, axis, rows, cols):
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    base = rng.standard_normal(x.shape[1 - axis]).astype(np.float32)
    out = base.copy()
    assert fn(x, out, True) is out
    check(out, x, axis, base.astype(np.float64))
    out2 = base.copy()
    assert fn(x, out2) is out2
    check(out2, x, axis)


@pytest.mark.parametrize("fn,axis", [(_C.colsum, 0), (_C.rowsum, 1)], ids=["colsum", "rowsum"])
@pytest.mark.parametrize("rows,cols,width", [(9, 5, 8), (100, 10, 13), (64, 300, 1024), (1000, 3, 4)])
def test_strided_rows(isa, threads, rng, fn, axis, rows, cols, width):
    """A view of the first `cols` columns of a wider matrix: rows spaced `width` apart."""
    wide = rng.standard_normal((rows, width)).astype(np.float32)
    x = wide[:, :cols]
    check(fn(x), x, axis)


@pytest.mark.parametrize("fn,axis", [(_C.colsum, 0), (_C.rowsum, 1)], ids=["colsum", "rowsum"])
def test_long_sums_keep_precision(isa, fn, axis):
    """A million equal values sum to exactly n·v; float32 running sums would drift far off."""
    n = 1_000_000
    shape = (n, 2) if axis == 0 else (2, n)
    x = np.full(shape, 0.1, np.float32)
    ref = n * np.float64(np.float32(0.1))
    np.testing.assert_allclose(fn(x), ref, rtol=3e-7)


@pytest.mark.parametrize("fn", [_C.colsum, _C.rowsum], ids=["colsum", "rowsum"])
@pytest.mark.parametrize("rows,cols", [(4000, 300), (300, 4000), (400_000, 3), (100_000, 40)])
def test_every_thread_count_gives_identical_results(isa, rng, fn, rows, cols):
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    out = []
    for t in (1, 2):
        _C.set_num_threads(t)
        out.append(fn(x))
    np.testing.assert_array_equal(out[0], out[1])


@pytest.mark.parametrize("shape", [(0, 5), (5, 0)])
def test_empty_matrix(isa, shape):
    x = np.zeros(shape, np.float32)
    np.testing.assert_array_equal(_C.colsum(x), np.zeros(shape[1], np.float32))
    np.testing.assert_array_equal(_C.rowsum(x), np.zeros(shape[0], np.float32))


def test_nan_and_inf(isa):
    x = np.ones((40, 20), np.float32)
    x[3, 2] = np.nan
    x[5, 7] = np.inf
    c = _C.colsum(x)
    assert np.isnan(c[2]) and np.isinf(c[7]) and np.all(np.isfinite(np.delete(c, [2, 7])))
    r = _C.rowsum(x)
    assert np.isnan(r[3]) and np.isinf(r[5])


def test_matches_torch_bias_gradient(isa, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((128, 512)).astype(np.float32)
    w = torch.zeros(512, dtype=torch.float64, requires_grad=True)
    dy = torch.from_numpy(x.astype(np.float64))
    ((torch.zeros(128, 512, dtype=torch.float64) + w) * dy).sum().backward()
    np.testing.assert_allclose(_C.colsum(x), w.grad.numpy(), rtol=1e-5, atol=1e-5)


class TestBadInput:
    def test_wrong_dtype(self):
        with pytest.raises(TypeError, match=r"colsum: argument 'x' must be a float32 array; got float64 \[2, 3\]"):
            _C.colsum(np.zeros((2, 3)))

    def test_not_2d(self):
        with pytest.raises(ValueError, match=r"rowsum: argument 'x'"):
            _C.rowsum(np.zeros(3, np.float32))

    def test_column_stride(self):
        with pytest.raises(ValueError, match="colsum: argument 'x'"):
            _C.colsum(np.zeros((4, 6), np.float32)[:, ::2])

    def test_wrong_out_shape(self):
        with pytest.raises(ValueError, match=r"colsum: argument 'out' must have shape \[3\]; got float32 \[2\]"):
            _C.colsum(np.zeros((2, 3), np.float32), np.zeros(2, np.float32))

    def test_out_wrong_dtype(self):
        with pytest.raises(TypeError, match=r"rowsum: argument 'out' must be a float32 array"):
            _C.rowsum(np.zeros((2, 3), np.float32), np.zeros(2))

    def test_accumulate_needs_out(self):
        with pytest.raises(ValueError, match="colsum: accumulate=True needs an 'out' array"):
            _C.colsum(np.zeros((2, 3), np.float32), None, True)

    def test_out_overlaps_input(self):
        x = np.zeros((4, 4), np.float32)
        with pytest.raises(ValueError, match="overlap"):
            _C.colsum(x, x[0])


@pytest.mark.parametrize("fn,axis", [(_C.colsum, 0), (_C.rowsum, 1)], ids=["colsum", "rowsum"])
def test_long_sums_are_accurate_in_any_build(isa, threads, rng, fn, axis):
    """Sums over 100,003 positive values, the largest first, are the float64 sums to a few float32
    roundings: the kernels add in an order they fix themselves (short float runs, then double), not in
    whatever order a compiler's vectoriser picks (a float32 running sum misses by about 1e-5 here)."""
    long = 100_003
    x = rng.random((long, 5)).astype(np.float32)
    x[:3] = 1e4
    if axis == 1:
        x = np.ascontiguousarray(x.T)
    ref = x.astype(np.float64).sum(axis=axis)
    np.testing.assert_allclose(fn(x), ref, rtol=3e-7)
