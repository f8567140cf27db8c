"""GEMM kernel (fastmlp._C.gemm) and the Linear bindings against float64 NumPy.

Every product is checked against float64 math on the same float32 inputs, with
the classic bound on float32 rounding of a sum of K products:
    |got - exact| <= (K + 4)·eps·(|alpha|·|op(A)|·|op(B)| + |beta·C| + |bias|)
(the +4 covers the epilogue's roundings), so the tolerance grows with K.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from fastmlp import _C

from reference import ACTS, act_forward, gemm_expected

EPS = float(np.finfo(np.float32).eps)
SLOPE = 0.1
TRANS = list(itertools.product([False, True], [False, True]))

# (M, N, K): edges (1, primes, non-multiples of every register tile), a batch of
# 10 against a 784-wide layer, K longer than one cache block (256 on AVX-512, 384 on
# AVX2), M taller than one row block (168 and 144), N wider than one column block (2048),
# and B rows a multiple of 32 floats apart with a few row panels (B packed though M is
# within one row block).
SHAPES = [
    (40, 64, 300),
    (20, 512, 33),
    (1, 1, 1),
    (7, 17, 63),
    (17, 7, 65),
    (10, 64, 784),
    (20, 33, 17),
    (65, 63, 7),
    (63, 65, 300),
    (97, 101, 103),
    (13, 1, 29),
    (1, 45, 13),
    (200, 37, 40),
    (31, 70, 600),
    (3, 2100, 5),
]


def matrix(rng: np.random.Generator, rows: int, cols: int, strided: bool = False,
           fill: float | None = None) -> np.ndarray:
    """A float32 [rows, cols] matrix; `strided`: a view with a longer row stride and
    a start that is not vector-aligned. Always a view of a larger array, so that
    zero-size matrices keep valid strides."""
    extra = 7 if strided else 1 if cols == 0 else 0
    shift = 3 if strided else 0
    big = rng.standard_normal((rows + 1, cols + extra)).astype(np.float32)
    if fill is not None:
        big[:] = fill
    return big[1:, shift:shift + cols]


def operands(rng, m: int, n: int, k: int, ta: bool, tb: bool, strided: bool = False):
    a = matrix(rng, k, m, strided) if ta else matrix(rng, m, k, strided)
    b = matrix(rng, n, k, strided) if tb else matrix(rng, k, n, strided)
    return a, b


expected = gemm_expected  # (exact z, tolerance) in float64 for z = alpha·op(a)·op(b) + beta·c + bias


def assert_within(got, want, tol, what: str = ""):
    err = np.abs(got.astype(np.float64) - want)
    bad = ~(err <= tol)  # also catches NaN
    assert not bad.any(), (
        f"{what}: {bad.sum()} of {bad.size} elements off; worst error {np.nanmax(err):.3g} "
        f"(tolerance there {tol.flat[np.nanargmax(err)]:.3g})")


def assert_act_within(got, z, tol, name, what: str = ""):
    """got = act(z) where z is exact within tol: the activation's slope (at most 1.13,
    for gelu) carries tol over, plus a few ulp of the activation itself."""
    want = act_forward(name, z, SLOPE)
    err = np.abs(got.astype(np.float64) - want)
    bound = 1.15 * tol + 2e-5 * np.abs(want) + 1e-30
    assert not (~(err <= bound)).any(), f"{what} {name}: worst error {np.nanmax(err):.3g}"


@pytest.mark.parametrize("m,n,k", SHAPES)
def test_matches_float64(isa, threads, rng, m, n, k):
    for ta, tb in TRANS:
        a, b = operands(rng, m, n, k, ta, tb)
        c = matrix(rng, m, n)
        _C.gemm(a, b, c, ta, tb)
        assert_within(c, *expected(a, b, c, ta, tb), f"trans_a={ta} trans_b={tb}")


def random_shapes(count: int, seed: int = 7) -> list[tuple[int, int, int]]:
    """(M, N, K) drawn log-uniformly from [1, 400], fixed by the seed."""
    r = np.random.default_rng(seed)
    return [tuple(int(v) for v in np.exp(r.uniform(0, np.log(400), 3)).round()) for _ in range(count)]


@pytest.mark.parametrize("m,n,k", random_shapes(10))
def test_random_shapes(isa, threads, rng, m, n, k):
    for ta, tb in TRANS:
        strided = bool(rng.integers(2))
        a, b = operands(rng, m, n, k, ta, tb, strided)
        c0 = matrix(rng, m, n, strided)
        c = c0.copy()
        alpha, beta = float(rng.uniform(-2, 2)), float(rng.choice([0.0, 1.0, -0.5]))
        _C.gemm(a, b, c, ta, tb, alpha, beta)
        assert_within(c, *expected(a, b, c0, ta, tb, alpha, beta),
                      f"trans_a={ta} trans_b={tb} alpha={alpha:.3f} beta={beta}")


@pytest.mark.parametrize("alpha,beta", [(0.5, 0.0), (1.0, 1.0), (-2.0, 0.5), (0.0, 3.0)])
@pytest.mark.parametrize("m,n,k", [(10, 40, 50), (37, 45, 300)])
def test_alpha_beta(isa, threads, rng, m, n, k, alpha, beta):
    for ta, tb in TRANS:
        a, b = operands(rng, m, n, k, ta, tb)
        c0 = matrix(rng, m, n)
        c = c0.copy()
        _C.gemm(a, b, c, ta, tb, alpha, beta)
        assert_within(c, *expected(a, b, c0, ta, tb, alpha, beta), f"trans_a={ta} trans_b={tb}")


@pytest.mark.parametrize("m,n,k", [(10, 64, 784), (70, 50, 40), (5, 3, 600)])
def test_beta_zero_never_reads_c(isa, threads, rng, m, n, k):
    for ta, tb in TRANS:
        a, b = operands(rng, m, n, k, ta, tb)
        c = matrix(rng, m, n, fill=np.nan)
        bias = rng.standard_normal(n).astype(np.float32)
        _C.gemm(a, b, c, ta, tb, 1.0, 0.0, bias)
        assert_within(c, *expected(a, b, None, ta, tb, bias=bias), f"trans_a={ta} trans_b={tb}")


@pytest.mark.parametrize("m,n,k", [(10, 70, 300), (33, 9, 17), (60, 100, 20)])
def test_strided_operands(isa, threads, rng, m, n, k):
    for ta, tb in TRANS:
        a, b = operands(rng, m, n, k, ta, tb, strided=True)
        c = matrix(rng, m, n, strided=True)
        c0 = c.copy()
        z = matrix(rng, m, n, strided=True)
        bias = rng.standard_normal(n).astype(np.float32)
        assert a.strides[0] > 4 * a.shape[1] and c.strides[0] > 4 * n and z.strides[0] > 4 * n
        _C.gemm(a, b, c, ta, tb, 1.5, 0.5, bias, ACTS["relu"], 0.0, z)
        want, tol = expected(a, b, c0, ta, tb, 1.5, 0.5, bias)
        assert_within(z, want, tol, f"preact, trans_a={ta} trans_b={tb}")
        assert_act_within(c, want, tol, "relu", f"trans_a={ta} trans_b={tb}")


@pytest.mark.parametrize("name", list(ACTS))
@pytest.mark.parametrize("m,n,k,ta,tb", [(10, 70, 300, False, True),     # dot-product path
                                         (50, 40, 600, True, False),     # several K blocks
                                         (75, 33, 19, False, False)])
def test_epilogue_activations(isa, threads, rng, name, m, n, k, ta, tb):
    a, b = operands(rng, m, n, k, ta, tb)
    for use_bias, use_preact in itertools.product([False, True], [False, True]):
        c = matrix(rng, m, n, fill=np.nan)
        bias = rng.standard_normal(n).astype(np.float32) if use_bias else None
        z = matrix(rng, m, n, fill=np.nan) if use_preact else None
        _C.gemm(a, b, c, ta, tb, 0.5, 0.0, bias, ACTS[name], SLOPE, z)
        want, tol = expected(a, b, None, ta, tb, 0.5, 0.0, bias)
        what = f"bias={use_bias} preact={use_preact}"
        if use_preact:
            assert_within(z, want, tol, what)
        assert_act_within(c, want, tol, name, what)


@pytest.mark.parametrize("beta", [0.0, 2.0])
def test_k_zero(isa, threads, rng, beta):
    a, b = matrix(rng, 4, 0), matrix(rng, 0, 6)
    c0 = matrix(rng, 4, 6)
    c = c0.copy()
    bias = rng.standard_normal(6).astype(np.float32)
    z = matrix(rng, 4, 6, fill=np.nan)
    _C.gemm(a, b, c, False, False, 1.0, beta, bias, ACTS["tanh"], 0.0, z)
    want = beta * c0.astype(np.float64) + bias
    np.testing.assert_allclose(z, want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(c, np.tanh(want), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("m,n", [(0, 5), (5, 0), (0, 0)])
def test_empty_output(isa, threads, rng, m, n):
    a, b = matrix(rng, m, 7), matrix(rng, 7, n)
    c = matrix(rng, m, n)
    _C.gemm(a, b, c)
    assert c.shape == (m, n)


@pytest.mark.parametrize("m,n,k", [(20, 300, 784), (130, 200, 333), (256, 10, 512)])
def test_same_bits_on_every_thread_count(isa, rng, on_threads, m, n, k):
    for ta, tb in TRANS:
        a, b = operands(rng, m, n, k, ta, tb)
        bias = rng.standard_normal(n).astype(np.float32)

        def run(t):
            c = np.empty((m, n), np.float32)
            _C.gemm(a, b, c, ta, tb, 1.0, 0.0, bias, ACTS["gelu"])
            return c

        results = on_threads((1, 2), run)
        np.testing.assert_array_equal(results[0], results[1], f"trans_a={ta} trans_b={tb}")


# Products big enough for every thread count to split: several K blocks and row
# blocks, shares that are not whole register tiles, strided operands, beta, bias,
# the kept pre-activation and a fused ReLU.
@pytest.mark.parametrize("m,n,k", [(300, 200, 800), (256, 1000, 130), (40, 77, 400)])
def test_threaded_epilogue_same_bits_and_exact(isa, rng, on_threads, m, n, k):
    for ta, tb in TRANS:
        a, b = operands(rng, m, n, k, ta, tb, strided=True)
        c0 = matrix(rng, m, n, strided=True)
        bias = rng.standard_normal(n).astype(np.float32)
        want, tol = expected(a, b, c0, ta, tb, 0.5, -1.5, bias)

        def run(t):
            c, z = c0.copy(), matrix(rng, m, n, fill=np.nan)
            _C.gemm(a, b, c, ta, tb, 0.5, -1.5, bias, ACTS["relu"], 0.0, z)
            assert_within(z, want, tol, f"{t} threads, trans_a={ta} trans_b={tb}")
            np.testing.assert_array_equal(c, np.maximum(z, 0))
            return c, z

        results = on_threads((1, 2, 3), run)
        for c, z in results[1:]:
            np.testing.assert_array_equal(results[0][1], z, f"trans_a={ta} trans_b={tb}")
            np.testing.assert_array_equal(results[0][0], c, f"trans_a={ta} trans_b={tb}")


# A Linear layer's input gradient at a small batch (dz·W: not transposed, plain
# epilogue, K much longer than M, 2 to 4 K blocks depending on the instruction
# set's), on 1 to 4 threads, with strided and contiguous operands. With two K
# blocks, two threads split K and add their halves; the sum must be bitwise the
# one-thread product, for either operand transposed and any alpha too.
@pytest.mark.parametrize("m,n,k", [(20, 512, 512), (30, 200, 1000), (16, 100, 760), (5, 40, 300),
                                   (50, 70, 511)])
@pytest.mark.parametrize("strided", [False, True])
@pytest.mark.parametrize("ta,tb,alpha", [(False, False, 1.0), (True, False, 0.5), (False, True, -2.0)])
def test_input_gradient_same_bits_on_every_thread_count(isa, rng, on_threads, m, n, k, strided, ta, tb, alpha):
    a, b = operands(rng, m, n, k, ta, tb, strided)
    want, tol = expected(a, b, None, ta, tb, alpha)

    def run(t):
        c = matrix(rng, m, n, strided, fill=np.nan)
        _C.gemm(a, b, c, ta, tb, alpha)
        assert_within(c, want, tol, f"{t} threads")
        return c

    results = on_threads((1, 2, 3, 4), run)
    for t, c in enumerate(results[1:], 2):
        np.testing.assert_array_equal(results[0], c, f"{t} threads")


# (3000, 20, 100): the dot path with a tall A, which is too big to copy to aligned rows
@pytest.mark.parametrize("m,n,k", [(10, 64, 784), (20, 37, 129), (200, 64, 100), (3000, 20, 100)])
def test_same_bits_wherever_operands_sit(isa, threads, rng, m, n, k):
    """Results do not depend on the operands' addresses (alignment), only on their values."""
    for ta, tb in TRANS:
        a, b = operands(rng, m, n, k, ta, tb)
        results = []
        for shift in range(0, 5):
            bufs = [np.empty(x.size + 16, np.float32) for x in (a, b)]
            a2, b2 = (buf[shift:shift + x.size].reshape(x.shape) for buf, x in zip(bufs, (a, b)))
            a2[...], b2[...] = a, b
            c = np.empty((m, n), np.float32)
            _C.gemm(a2, b2, c, ta, tb)
            results.append(c)
        for c in results[1:]:
            np.testing.assert_array_equal(results[0], c, f"trans_a={ta} trans_b={tb}")


# ---- Linear layer bindings ---------------------------------------------------------

@pytest.mark.parametrize("name", ["identity", "relu", "gelu"])
@pytest.mark.parametrize("use_bias", [False, True])
@pytest.mark.parametrize("m,k,n", [(1, 7, 3), (10, 784, 64), (20, 64, 10), (129, 65, 17)])
def test_linear_forward(isa, threads, rng, m, k, n, name, use_bias):
    x = matrix(rng, m, k)
    w = matrix(rng, n, k)
    b = rng.standard_normal(n).astype(np.float32) if use_bias else None
    y, z = _C.linear_forward(x, w, b, ACTS[name], SLOPE, True)
    assert y.shape == z.shape == (m, n) and y.dtype == z.dtype == np.float32
    want, tol = expected(x, w, None, False, True, bias=b)
    assert_within(z, want, tol)
    assert_act_within(y, want, tol, name)
    np.testing.assert_array_equal(_C.linear_forward(x, w, b, ACTS[name], SLOPE), y)


@pytest.mark.parametrize("need_dx", [False, True])
@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("m,k,n", [(1, 7, 3), (10, 784, 64), (20, 64, 10), (129, 65, 17)])
def test_linear_backward(isa, threads, rng, m, k, n, need_dx, accumulate):
    dz, x, w = matrix(rng, m, n), matrix(rng, m, k), matrix(rng, n, k)
    dw0, db0 = matrix(rng, n, k), rng.standard_normal(n).astype(np.float32)
    dw, db = dw0.copy(), db0.copy()
    dx = _C.linear_backward(dz, x, w, need_dx, dw, db, accumulate, accumulate)
    beta = 1.0 if accumulate else 0.0
    assert_within(dw, *expected(dz, x, dw0, True, False, 1.0, beta))
    db_want = dz.astype(np.float64).sum(0) + (db0 if accumulate else 0.0)
    assert_within(db, db_want, (m + 2) * EPS * (np.abs(dz).sum(0) + np.abs(db0)) + 1e-30)
    if need_dx:
        assert_within(dx, *expected(dz, w, None, False, False))
    else:
        assert dx is None


def test_linear_matches_torch(isa, threads, rng):
    torch = pytest.importorskip("torch")
    m, k, n = 20, 784, 64
    x, w = matrix(rng, m, k), matrix(rng, n, k) / np.float32(28)
    b, dy = rng.standard_normal(n).astype(np.float32), matrix(rng, m, n)
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    tw = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    tb = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    tz = torch.nn.functional.linear(tx, tw, tb)
    ty = torch.relu(tz)
    ty.backward(torch.tensor(dy, dtype=torch.float64))
    y, z = _C.linear_forward(x, w, b, ACTS["relu"], 0.0, True)
    dz = np.where(z > 0, dy, 0).astype(np.float32)
    dw, db = np.empty_like(w), np.empty_like(b)
    dx = _C.linear_backward(dz, x, w, True, dw, db)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(db, tb.grad.numpy(), rtol=1e-5, atol=1e-5)


# ---- bad input ---------------------------------------------------------------------

def f32(*shape: int) -> np.ndarray:
    return np.ones(shape, np.float32)


class TestBadInput:
    def test_inner_dimensions_differ(self):
        with pytest.raises(ValueError, match=r"gemm: inner dimensions differ: op\(a\) is \[3, 5\] and "
                                             r"op\(b\) is \[4, 4\] \(a \[3, 5\], b \[4, 4\]\)"):
            _C.gemm(f32(3, 5), f32(4, 4), f32(3, 4))

    def test_inner_dimensions_differ_transposed(self):
        with pytest.raises(ValueError, match=r"op\(a\) is \[5, 3\] and op\(b\) is \[4, 6\] "
                                             r"\(a \[3, 5\] transposed, b \[6, 4\] transposed\)"):
            _C.gemm(f32(3, 5), f32(6, 4), f32(5, 6), True, True)

    def test_wrong_c_shape(self):
        with pytest.raises(ValueError, match=r"gemm: argument 'c' must have shape \[3, 4\]; got float32 \[3, 5\]"):
            _C.gemm(f32(3, 5), f32(5, 4), f32(3, 5))

    def test_wrong_bias_shape(self):
        with pytest.raises(ValueError, match=r"argument 'bias' must have shape \[4\]; got float32 \[5\]"):
            _C.gemm(f32(3, 5), f32(5, 4), f32(3, 4), bias=f32(5))

    def test_wrong_preact_shape(self):
        with pytest.raises(ValueError, match=r"argument 'preact' must have shape \[3, 4\]; got float32 \[4, 3\]"):
            _C.gemm(f32(3, 5), f32(5, 4), f32(3, 4), preact=f32(4, 3))

    def test_float64(self):
        with pytest.raises(TypeError, match=r"gemm: argument 'a' must be a float32 array; got float64 \[3, 5\]"):
            _C.gemm(np.ones((3, 5)), f32(5, 4), f32(3, 4))

    def test_float64_output(self):
        with pytest.raises(TypeError, match=r"argument 'c' must be a float32 array; got float64 \[3, 4\]"):
            _C.gemm(f32(3, 5), f32(5, 4), np.ones((3, 4)))

    def test_non_contiguous_rows(self):
        with pytest.raises(ValueError, match=r"argument 'b' must have contiguous rows .*got float32 \[5, 4\] "
                                             r"with strides \(4, 20\)"):
            _C.gemm(f32(3, 5), f32(4, 5).T, f32(3, 4))

    def test_not_a_matrix(self):
        with pytest.raises(ValueError, match=r"argument 'a' must be a 2-D matrix; got float32 \[15\]"):
            _C.gemm(f32(15), f32(5, 4), f32(3, 4))

    def test_read_only_c(self):
        c = f32(3, 4)
        c.setflags(write=False)
        with pytest.raises(ValueError, match=r"argument 'c' is an output and must be writable; "
                                             r"got a read-only float32 \[3, 4\]"):
            _C.gemm(f32(3, 5), f32(5, 4), c)

    def test_c_overlaps_a(self):
        buf = f32(3, 9)
        with pytest.raises(ValueError, match="gemm: output 'c' overlaps input 'a'"):
            _C.gemm(buf[:, :5], f32(5, 4), buf[:, 4:8])

    def test_preact_overlaps_bias(self):
        z = f32(3, 4)
        with pytest.raises(ValueError, match="gemm: output 'preact' overlaps input 'bias'"):
            _C.gemm(f32(3, 5), f32(5, 4), f32(3, 4), bias=z[0], preact=z)

    def test_bad_act_code(self):
        with pytest.raises(ValueError, match=r"gemm: act must be an activation code in \[0, 6\)"):
            _C.gemm(f32(3, 5), f32(5, 4), f32(3, 4), act=6)

    def test_linear_forward_mismatch(self):
        with pytest.raises(ValueError, match=r"linear_forward: x \[3, 5\] and weight \[4, 6\] do not match: "
                                             r"x has 5 features, weight expects 6"):
            _C.linear_forward(f32(3, 5), f32(4, 6))

    def test_linear_forward_wrong_bias(self):
        with pytest.raises(ValueError, match=r"linear_forward: argument 'bias' must have shape \[4\]; "
                                             r"got float32 \[5\]"):
            _C.linear_forward(f32(3, 5), f32(4, 5), f32(5))

    def test_linear_forward_float64(self):
        with pytest.raises(TypeError, match=r"argument 'weight' must be a float32 array; got float64 \[4, 5\]"):
            _C.linear_forward(f32(3, 5), np.ones((4, 5)))

    def test_linear_backward_wrong_x(self):
        with pytest.raises(ValueError, match=r"linear_backward: argument 'x' must have shape \[3, 5\]; "
                                             r"got float32 \[2, 5\]"):
            _C.linear_backward(f32(3, 4), f32(2, 5), f32(4, 5))

    def test_linear_backward_wrong_weight(self):
        with pytest.raises(ValueError, match=r"argument 'weight' must have shape \[4, 5\]; got float32 \[5, 4\]"):
            _C.linear_backward(f32(3, 4), f32(3, 5), f32(5, 4))

    def test_linear_backward_wrong_grad_weight(self):
        with pytest.raises(ValueError, match=r"argument 'grad_weight' must have shape \[4, 5\]; "
                                             r"got float32 \[5, 4\]"):
            _C.linear_backward(f32(3, 4), f32(3, 5), f32(4, 5), True, f32(5, 4))

    def test_linear_backward_read_only_grad_bias(self):
        db = f32(4)
        db.setflags(write=False)
        with pytest.raises(ValueError, match="argument 'grad_bias' is an output and must be writable"):
            _C.linear_backward(f32(3, 4), f32(3, 5), f32(4, 5), True, None, db)
