"""The bfloat16 GEMM (fastmlp._C.gemm_bf16, and linear_forward/linear_backward with bf16=True)
against float64 NumPy on the bfloat16-rounded operands.

Every product of two bfloat16 values is exact in float32 (8-bit significands), so the only
error left is float32 summation: the same bound as the float32 GEMM's tests,
    |got - exact| <= (K + 4)·eps·(|alpha|·|op(A)|·|op(B)| + |beta·C| + |bias|),
with `exact` computed from round_bf16(A) and round_bf16(B). Each test also checks that the
rounding really happened: against the unrounded operands the result is off by far more.
Runs on each kernel set this machine has (the reference, the float32-FMA kernels on rounded
operands, and AVX512-BF16 where the CPU has it) and on 1 and 2 threads, and each product also
on the pair-packed path of the AVX512-BF16 kernel (_C._gemm_bf16_pairs: its packing, blocks
and epilogue, with vdpbf16ps emulated by float32 FMAs on sets without the instruction) and on
the AMX path (_C._gemm_bf16_amx: its tile packing and blocking, the tile instructions emulated
on sets without AMX).
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from fastmlp import _C

from reference import ACTS, act_forward, gemm_expected, round_bf16

EPS = float(np.finfo(np.float32).eps)
SLOPE = 0.1
TRANS = list(itertools.product([False, True], [False, True]))
ODD = [1, 7, 17, 33, 255]


@pytest.fixture(params=["gemm_bf16", "_gemm_bf16_pairs", "_gemm_bf16_amx"])
def gemm(request):
    """The bfloat16 GEMM of the kernel set, its pair-packed (vdpbf16ps) path and its AMX path."""
    return getattr(_C, request.param)


def matrix(rng, rows: int, cols: int, strided: bool = False, fill: float | None = None) -> np.ndarray:
    extra, shift = (7, 3) if strided else (1 if cols == 0 else 0, 0)
    big = rng.standard_normal((rows + 1, cols + extra)).astype(np.float32)
    if fill is not None:
        big[:] = fill
    return big[1:, shift:shift + cols]


def operands(rng, m, n, k, ta, tb, strided=False):
    a = matrix(rng, k, m, strided) if ta else matrix(rng, m, k, strided)
    b = matrix(rng, n, k, strided) if tb else matrix(rng, k, n, strided)
    return a, b


def expected(a, b, c, ta, tb, alpha=1.0, beta=0.0, bias=None, rounded=True):
    """(exact z, tolerance) in float64 for z = alpha·op(ra)·op(rb) + beta·c + bias, ra, rb the
    bfloat16-rounded operands (or the operands themselves when not `rounded`)."""
    ra, rb = (round_bf16(a), round_bf16(b)) if rounded else (a, b)
    return gemm_expected(ra, rb, c, ta, tb, alpha, beta, bias)


def assert_within(got, want, tol, what=""):
    err = np.abs(got.astype(np.float64) - want)
    bad = ~(err <= tol)
    assert not bad.any(), (f"{what}: {bad.sum()} of {bad.size} elements off; worst error "
                           f"{np.nanmax(err):.3g} (tolerance there {tol.flat[np.nanargmax(err)]:.3g})")


def assert_rounded(got, a, b, c, ta, tb, alpha=1.0, beta=0.0, bias=None, what=""):
    """got was computed on rounded operands: unrounded float64 misses it somewhere by far more
    than float32 summation does in practice (32·eps·|A||B|; rounding an operand moves it by up
    to 2^-9 of itself, and the K products' errors add up to about 2^-9·|A||B|/sqrt(K), which
    stays several times larger for the K used here)."""
    want, _ = expected(a, b, c, ta, tb, alpha, beta, bias, rounded=False)
    A, B = (a.T if ta else a).astype(np.float64), (b.T if tb else b).astype(np.float64)
    float32_noise = 32 * EPS * abs(alpha) * (np.abs(A) @ np.abs(B))
    assert np.any(np.abs(got.astype(np.float64) - want) > float32_noise), f"{what}: operands were not rounded"


@pytest.mark.parametrize("m", ODD)
@pytest.mark.parametrize("n", ODD)
def test_odd_shapes_every_transpose(isa, gemm, threads, rng, m, n):
    for k, (ta, tb) in itertools.product([1, 17, 255], TRANS):
        a, b = operands(rng, m, n, k, ta, tb)
        c = matrix(rng, m, n, fill=np.nan)
        gemm(a, b, c, ta, tb)
        what = f"m={m} n={n} k={k} trans_a={ta} trans_b={tb}"
        assert_within(c, *expected(a, b, None, ta, tb), what)
        assert_rounded(c, a, b, None, ta, tb, what=what)


# several K blocks (384 on AVX2, 512 pairs on AVX512-BF16), more rows than a row block,
# wider than a column block, an odd K after the pairs
@pytest.mark.parametrize("m,n,k", [(40, 64, 1100), (300, 45, 33), (3, 2100, 5), (64, 784, 513),
                                   (10, 512, 784), (170, 100, 1025)])
def test_blocks(isa, gemm, threads, rng, m, n, k):
    for ta, tb in TRANS:
        a, b = operands(rng, m, n, k, ta, tb)
        c = matrix(rng, m, n)
        gemm(a, b, c, ta, tb)
        assert_within(c, *expected(a, b, None, ta, tb), f"trans_a={ta} trans_b={tb}")
        assert_rounded(c, a, b, None, ta, tb)


@pytest.mark.parametrize("alpha,beta", [(0.5, 0.0), (1.0, 1.0), (-2.0, 0.5)])
@pytest.mark.parametrize("m,n,k", [(37, 45, 300), (7, 33, 900)])
def test_alpha_beta_strided(isa, gemm, threads, rng, m, n, k, alpha, beta):
    for ta, tb in TRANS:
        a, b = operands(rng, m, n, k, ta, tb, strided=True)
        c0 = matrix(rng, m, n, strided=True)
        c = c0.copy()
        gemm(a, b, c, ta, tb, alpha, beta)
        assert_within(c, *expected(a, b, c0, ta, tb, alpha, beta), f"trans_a={ta} trans_b={tb}")


@pytest.mark.parametrize("name", list(ACTS))
@pytest.mark.parametrize("m,n,k,ta,tb", [(10, 70, 300, False, True), (50, 40, 1100, True, False),
                                         (33, 17, 7, False, False)])
def test_bias_activation_epilogue(isa, gemm, threads, rng, name, m, n, k, ta, tb):
    a, b = operands(rng, m, n, k, ta, tb)
    bias = rng.standard_normal(n).astype(np.float32)
    c = matrix(rng, m, n, fill=np.nan)
    z = matrix(rng, m, n, fill=np.nan)
    gemm(a, b, c, ta, tb, 1.0, 0.0, bias, ACTS[name], SLOPE, z)
    want, tol = expected(a, b, None, ta, tb, bias=bias)
    assert_within(z, want, tol, f"preact {name}")
    err = np.abs(c.astype(np.float64) - act_forward(name, want, SLOPE))
    assert np.all(err <= 1.15 * tol + 2e-5 * np.abs(act_forward(name, want, SLOPE)) + 1e-30), name


def test_special_values_propagate(isa, gemm, rng):
    a, b = matrix(rng, 9, 40), matrix(rng, 40, 20)
    a[2, 5] = np.inf
    a[4, 7] = np.nan
    c = np.empty((9, 20), np.float32)
    gemm(a, b, c)
    assert np.all(np.isnan(c[4]))
    assert np.all(np.isinf(c[2]) | np.isnan(c[2]))
    rest = [0, 1, 3, 5, 6, 7, 8]
    assert_within(c[rest], *(x[rest] for x in expected(a, b, None, False, False)))


def test_linear_bf16(isa, threads, rng):
    x, w = matrix(rng, 30, 70), matrix(rng, 20, 70)
    bias = rng.standard_normal(20).astype(np.float32)
    y, z = _C.linear_forward(x, w, bias, ACTS["relu"], 0.0, True, True)
    want, tol = expected(x, w, None, False, True, bias=bias)
    assert_within(z, want, tol, "preact")
    assert_within(y, np.maximum(want, 0), tol, "y")
    dz = matrix(rng, 30, 20)
    dw, db = np.empty((20, 70), np.float32), np.empty(20, np.float32)
    dx = _C.linear_backward(dz, x, w, True, dw, db, False, False, True)
    assert_within(dw, *expected(dz, x, None, True, False), "dW")
    assert_within(dx, *expected(dz, w, None, False, False), "dX")
    np.testing.assert_allclose(db, dz.astype(np.float64).sum(0), rtol=1e-5, atol=1e-5)
    assert_rounded(dx, dz, w, None, False, False, what="dX")


@pytest.mark.parametrize("m,n", [(0, 5), (5, 0)])
def test_empty_and_k_zero(isa, gemm, rng, m, n):
    c = matrix(rng, m, n)
    gemm(matrix(rng, m, 7), matrix(rng, 7, n), c)
    c = np.full((3, 4), np.nan, np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    gemm(matrix(rng, 3, 0), matrix(rng, 0, 4), c, bias=bias)
    np.testing.assert_array_equal(c, np.broadcast_to(bias, (3, 4)))


def test_bad_input(rng):
    a, b = matrix(rng, 4, 5), matrix(rng, 6, 7)
    with pytest.raises(ValueError, match="gemm_bf16: inner dimensions differ"):
        _C.gemm_bf16(a, b, np.empty((4, 7), np.float32))
    with pytest.raises(TypeError, match="gemm_bf16.*'a'.*float32"):
        _C.gemm_bf16(a.astype(np.float64), matrix(rng, 5, 7), np.empty((4, 7), np.float32))
    with pytest.raises(ValueError, match="gemm_bf16.*'c'"):
        _C.gemm_bf16(a, matrix(rng, 5, 7), np.empty((4, 8), np.float32))


def test_bf16_path_names_the_instructions(isa):
    path = _C.bf16_path()
    if isa == "amx":
        assert "TDPBF16PS" in path
    elif isa == "avx512bf16":
        assert "vdpbf16ps" in path
    elif isa != "reference":
        assert "float32 FMA" in path
