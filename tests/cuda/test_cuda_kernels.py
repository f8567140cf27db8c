"""CUDA kernels (fastmlp._cuda) against the CPU kernels (fastmlp._C) and float64 NumPy.

The GPU tests (marked ``cuda``) need fastmlp._cuda, CuPy and a CUDA device, and skip
with the reason when one is missing. The tests in ``TestWithoutDevice`` and
``TestArgumentChecks`` run everywhere the extension is built: the module imports
without a device, says why there is none, refuses kernel calls with a clear error,
and checks arguments (with stand-in objects that expose __cuda_array_interface__)
before it touches a device.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pytest

from reference import act_forward

from fastmlp import _C

try:
    from fastmlp import _cuda
except ImportError as _err:  # built without a CUDA compiler
    _cuda = None
    _IMPORT_ERROR = str(_err)


def _gpu_skip_reason() -> Optional[str]:
    """Why the GPU tests cannot run here, or None when they can."""
    if _cuda is None:
        return f"fastmlp._cuda is not built ({_IMPORT_ERROR})"
    try:
        import cupy  # noqa: F401
    except Exception as e:  # ImportError, or a CUDA error raised while importing
        return f"CuPy is not importable ({type(e).__name__}: {e})"
    if _cuda.device_count() == 0:
        return f"no CUDA device ({_cuda.no_device_reason()})"
    return None


GPU_SKIP = _gpu_skip_reason()
needs_gpu = pytest.mark.skipif(GPU_SKIP is not None, reason=f"GPU test skipped: {GPU_SKIP}")
needs_module = pytest.mark.skipif(_cuda is None, reason="fastmlp._cuda is not built (no CUDA compiler at build time)")

ACTS = {"identity": 0, "relu": 1, "leaky_relu": 2, "sigmoid": 3, "tanh": 4, "gelu": 5}
SLOPE = 0.01
SIZES = [0, 1, 7, 17, 63, 65, 784, 4099, 70001]


# ---------------------------------------------------------------------------------------------
# float64 references
# ---------------------------------------------------------------------------------------------

def gemm64(a: np.ndarray, b: np.ndarray, trans_a: bool, trans_b: bool) -> tuple[np.ndarray, np.ndarray]:
    """op(a) @ op(b) in float64, and Σ_k |op(a)_mk·op(b)_kn| (the scale of its rounding error)."""
    a64 = a.astype(np.float64).T if trans_a else a.astype(np.float64)
    b64 = b.astype(np.float64).T if trans_b else b.astype(np.float64)
    return a64 @ b64, np.abs(a64) @ np.abs(b64)


def softmax64(x: np.ndarray, log: bool) -> np.ndarray:
    x = x.astype(np.float64)
    mx = x.max(axis=1, keepdims=True)
    lse = mx + np.log(np.exp(x - mx).sum(axis=1, keepdims=True))
    return x - lse if log else np.exp(x - lse)


# ---------------------------------------------------------------------------------------------
# fixtures and helpers (GPU tests)
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def cp():
    import cupy

    return cupy


@pytest.fixture
def stream(cp) -> int:
    """CuPy's current stream, as every call passes it."""
    return cp.cuda.get_current_stream().ptr


@pytest.fixture
def rng():
    return np.random.default_rng(20240607)


def f32(rng, *shape, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def host(x) -> np.ndarray:
    import cupy

    return cupy.asnumpy(x)


# (M, N, K): unit and empty sizes, primes, non-multiples of every tile (16, 64, 128) and of 4,
# the MLP shapes, and a size that spans several 128 x 128 tiles.
GEMM_SHAPES = [
    (1, 1, 1), (1, 7, 17), (7, 17, 63), (17, 7, 65), (63, 65, 7), (65, 63, 17), (2, 3, 0),
    (0, 5, 3), (4, 0, 3), (10, 512, 784), (20, 10, 512), (64, 64, 784), (131, 257, 97),
    (256, 10, 512), (257, 129, 33), (784, 64, 20), (300, 301, 302),
]
ALGOS = ["auto", "simt128x128", "simt64x64", "simt16x64"]


def operands(rng, M: int, N: int, K: int, trans_a: bool, trans_b: bool) -> tuple[np.ndarray, np.ndarray]:
    a = f32(rng, K, M) if trans_a else f32(rng, M, K)
    b = f32(rng, N, K) if trans_b else f32(rng, K, N)
    return a, b


# ---------------------------------------------------------------------------------------------
# GEMM
# ---------------------------------------------------------------------------------------------


@pytest.mark.cuda
@needs_gpu
class TestGemm:
    @pytest.mark.parametrize("algo", ALGOS)
    @pytest.mark.parametrize("trans_a,trans_b", [(False, False), (False, True), (True, False), (True, True)])
    @pytest.mark.parametrize("M,N,K", GEMM_SHAPES)
    def test_matches_float64_and_cpu(self, cp, stream, rng, M, N, K, trans_a, trans_b, algo):
        a, b = operands(rng, M, N, K, trans_a, trans_b)
        c = cp.full((M, N), np.nan, dtype=cp.float32)  # beta = 0: C is write-only
        _cuda.gemm(cp.asarray(a), cp.asarray(b), c, trans_a, trans_b, algo=algo, stream=stream)
        ref, scale = gemm64(a, b, trans_a, trans_b)
        got = host(c)
        # FP32 accumulation over K terms: error well under 2e-5 of Σ|a·b| for these sizes.
        np.testing.assert_array_less(np.abs(got - ref), 2e-5 * scale + 1e-6)
        if a.size and b.size:  # fastmlp._C refuses empty matrices (their NumPy strides are 0)
            cpu = np.empty((M, N), np.float32)
            _C.gemm(a, b, cpu, trans_a, trans_b)
            np.testing.assert_array_less(np.abs(got - cpu), 4e-5 * scale + 1e-6)

    @pytest.mark.parametrize("splits", [2, 3, 7, 64])
    @pytest.mark.parametrize("algo", ALGOS)
    @pytest.mark.parametrize("trans_a,trans_b", [(False, True), (True, False), (False, False)])
    def test_split_k(self, cp, stream, rng, algo, splits, trans_a, trans_b):
        M, N, K = 37, 70, 785
        a, b = operands(rng, M, N, K, trans_a, trans_b)
        plan = _cuda.gemm_plan(M, N, K, algo=algo, splits=splits)
        assert plan[1] >= 2 and (plan[1] - 1) * plan[2] < K <= plan[1] * plan[2]
        c = cp.empty((M, N), dtype=cp.float32)
        _cuda.gemm(cp.asarray(a), cp.asarray(b), c, trans_a, trans_b, algo=algo, splits=splits, stream=stream)
        ref, scale = gemm64(a, b, trans_a, trans_b)
        np.testing.assert_array_less(np.abs(host(c) - ref), 2e-5 * scale + 1e-6)

    @pytest.mark.parametrize("splits", [1, 3])
    @pytest.mark.parametrize("algo", ALGOS)
    @pytest.mark.parametrize("act", list(ACTS))
    def test_epilogue_matches_cpu(self, cp, stream, rng, act, algo, splits):
        M, N, K = 45, 67, 130
        a, b = operands(rng, M, N, K, False, True)
        bias = f32(rng, N)
        c0 = f32(rng, M, N)
        alpha, beta = 0.75, -0.5
        c_gpu, z_gpu = cp.asarray(c0), cp.empty((M, N), cp.float32)
        _cuda.gemm(cp.asarray(a), cp.asarray(b), c_gpu, False, True, alpha, beta, cp.asarray(bias), ACTS[act], SLOPE,
                   z_gpu, algo=algo, splits=splits, stream=stream)
        ref, scale = gemm64(a, b, False, True)
        z_ref = alpha * ref + beta * c0.astype(np.float64) + bias
        tol = 2e-5 * (abs(alpha) * scale + abs(beta) * np.abs(c0) + np.abs(bias)) + 1e-6
        np.testing.assert_array_less(np.abs(host(z_gpu) - z_ref), tol)
        # The activation of the kernel's own pre-activation, against the CPU's math on it.
        z = host(z_gpu)
        np.testing.assert_allclose(host(c_gpu), _C.act_forward(z, ACTS[act], SLOPE), rtol=1e-5, atol=1e-6)
        c_cpu, z_cpu = c0.copy(), np.empty((M, N), np.float32)
        _C.gemm(a, b, c_cpu, False, True, alpha, beta, bias, ACTS[act], SLOPE, z_cpu)
        np.testing.assert_allclose(host(c_gpu), c_cpu, rtol=1e-4, atol=1e-4)

    @pytest.mark.parametrize("offset", [0, 1, 3])
    @pytest.mark.parametrize("algo", ALGOS)
    def test_strided_and_unaligned_operands(self, cp, stream, rng, algo, offset):
        # Rows spaced wider than they are long, and starting off a 16-byte boundary
        # (offset 1 or 3 floats): the float4 load path must step aside.
        M, N, K = 33, 45, 68
        a_big = cp.asarray(f32(rng, M, K + 8))  # row stride 76: float4 loads when offset is 0
        b_big = cp.asarray(f32(rng, N, K + 5))
        c_big = cp.zeros((M, N + 6), cp.float32)
        a, b, c = a_big[:, offset:offset + K], b_big[:, offset:offset + K], c_big[:, offset:offset + N]
        _cuda.gemm(a, b, c, False, True, algo=algo, stream=stream)
        ref, scale = gemm64(host(a), host(b), False, True)
        np.testing.assert_array_less(np.abs(host(c) - ref), 2e-5 * scale + 1e-6)
        untouched = np.delete(host(c_big), np.s_[offset:offset + N], axis=1)
        assert not untouched.any()

    @pytest.mark.parametrize("trans_a,trans_b", [(False, False), (False, True), (True, False), (True, True)])
    @pytest.mark.parametrize("M,N,K", [(33, 65, 17), (128, 128, 128), (200, 300, 784), (10, 512, 784)])
    def test_tf32_within_stated_tolerance(self, cp, stream, rng, M, N, K, trans_a, trans_b):
        # TF32 keeps 10 mantissa bits of each input (relative rounding <= 2^-11), so each
        # product is within about 1e-3 of its value: |error| <= 3e-3 * Σ|a·b|.
        a, b = operands(rng, M, N, K, trans_a, trans_b)
        c = cp.empty((M, N), cp.float32)
        _cuda.gemm(cp.asarray(a), cp.asarray(b), c, trans_a, trans_b, allow_tf32=True, algo="tf32", stream=stream)
        ref, scale = gemm64(a, b, trans_a, trans_b)
        np.testing.assert_array_less(np.abs(host(c) - ref), 3e-3 * scale + 1e-5)

    def test_tf32_auto_and_epilogue(self, cp, stream, rng):
        M, N, K = 96, 80, 64
        assert _cuda.gemm_plan(M, N, K, allow_tf32=True)[0] == "tf32"
        a, b = operands(rng, M, N, K, False, True)
        bias = f32(rng, N)
        y, z = _cuda.linear_forward(cp.asarray(a), cp.asarray(b), cp.asarray(bias), ACTS["relu"], 0.0, True,
                                    allow_tf32=True, stream=stream)
        ref, scale = gemm64(a, b, False, True)
        np.testing.assert_array_less(np.abs(host(z) - (ref + bias)), 3e-3 * scale + 1e-5)
        np.testing.assert_array_equal(host(y), np.maximum(host(z), 0))

    def test_plan_choices(self):
        assert _cuda.gemm_plan(10, 512, 784)[0] == "simt16x64"
        assert _cuda.gemm_plan(4096, 4096, 4096) == ("simt128x128", 1, 4096)
        algo, splits, chunk = _cuda.gemm_plan(256, 512, 784)
        assert algo in ("simt64x64", "simt128x128") and splits * chunk >= 784
        assert _cuda.gemm_plan(64, 64, 4)[1] == 1  # K too short to split

    def test_split_k_is_deterministic(self, cp, stream, rng):
        a, b = operands(rng, 20, 300, 2000, False, True)
        ga, gb = cp.asarray(a), cp.asarray(b)
        runs = []
        for _ in range(3):
            c = cp.empty((20, 300), cp.float32)
            _cuda.gemm(ga, gb, c, False, True, splits=9, stream=stream)
            runs.append(host(c))
        np.testing.assert_array_equal(runs[0], runs[1])
        np.testing.assert_array_equal(runs[0], runs[2])

    def test_runs_on_a_side_stream(self, cp, rng):
        a, b = operands(rng, 150, 130, 90, False, False)
        with cp.cuda.Stream(non_blocking=True) as s:
            ga, gb = cp.asarray(a), cp.asarray(b)
            c = cp.empty((150, 130), cp.float32)
            _cuda.gemm(ga, gb, c, stream=s.ptr)
            s.synchronize()
        ref, scale = gemm64(a, b, False, False)
        np.testing.assert_array_less(np.abs(host(c) - ref), 2e-5 * scale + 1e-6)


@pytest.mark.cuda
@needs_gpu
class TestLinear:
    @pytest.mark.parametrize("act", ["identity", "relu", "gelu"])
    @pytest.mark.parametrize("M,K,N", [(1, 1, 1), (10, 784, 512), (20, 512, 10), (64, 784, 64), (257, 65, 63)])
    def test_forward_matches_cpu(self, cp, stream, rng, M, K, N, act):
        x, w, bias = f32(rng, M, K), f32(rng, N, K, scale=0.05), f32(rng, N)
        y, z = _cuda.linear_forward(cp.asarray(x), cp.asarray(w), cp.asarray(bias), ACTS[act], 0.0, True,
                                    stream=stream)
        y_cpu, z_cpu = _C.linear_forward(x, w, bias, ACTS[act], 0.0, True)
        ref, scale = gemm64(x, w, False, True)
        np.testing.assert_array_less(np.abs(host(z) - (ref + bias)), 2e-5 * (scale + np.abs(bias)) + 1e-6)
        np.testing.assert_allclose(host(z), z_cpu, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(host(y), y_cpu, rtol=1e-4, atol=1e-4)
        y_only = _cuda.linear_forward(cp.asarray(x), cp.asarray(w), None, stream=stream)
        assert y_only.shape == (M, N) and y_only.dtype == cp.float32

    @pytest.mark.parametrize("accumulate", [False, True])
    @pytest.mark.parametrize("M,K,N", [(1, 1, 1), (10, 784, 512), (20, 512, 10), (128, 512, 512), (63, 17, 65)])
    def test_backward_matches_cpu(self, cp, stream, rng, M, K, N, accumulate):
        dz, x, w = f32(rng, M, N), f32(rng, M, K), f32(rng, N, K)
        dw0, db0 = f32(rng, N, K), f32(rng, N)
        dw, db = cp.asarray(dw0), cp.asarray(db0)
        dx = _cuda.linear_backward(cp.asarray(dz), cp.asarray(x), cp.asarray(w), True, dw, db, accumulate, accumulate,
                                   stream=stream)
        dw_cpu, db_cpu = dw0.copy(), db0.copy()
        dx_cpu = _C.linear_backward(dz, x, w, True, dw_cpu, db_cpu, accumulate, accumulate)
        ref_dx, s_dx = gemm64(dz, w, False, False)
        np.testing.assert_array_less(np.abs(host(dx) - ref_dx), 2e-5 * s_dx + 1e-6)
        ref_dw, s_dw = gemm64(dz, x, True, False)
        base = dw0.astype(np.float64) if accumulate else 0.0
        np.testing.assert_array_less(np.abs(host(dw) - (ref_dw + base)), 2e-5 * (s_dw + np.abs(base)) + 1e-6)
        np.testing.assert_allclose(host(db), dz.astype(np.float64).sum(0) + (db0 if accumulate else 0), rtol=1e-5,
                                   atol=1e-5)
        np.testing.assert_allclose(host(dx), dx_cpu, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(host(dw), dw_cpu, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(host(db), db_cpu, rtol=1e-5, atol=1e-5)

    def test_backward_without_dx(self, cp, stream, rng):
        dz, x, w = f32(rng, 5, 3), f32(rng, 5, 4), f32(rng, 3, 4)
        dw = cp.empty((3, 4), cp.float32)
        assert _cuda.linear_backward(cp.asarray(dz), cp.asarray(x), cp.asarray(w), False, dw, stream=stream) is None
        np.testing.assert_allclose(host(dw), dz.T.astype(np.float64) @ x, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# activations
# ---------------------------------------------------------------------------------------------


def act_inputs(rng, n: int) -> np.ndarray:
    x = rng.standard_normal(n) * 3.0
    if n >= 20:  # extremes: saturation, overflow of exp, exact zeros
        x[:10] = [0.0, -0.0, 1e4, -1e4, 88.9, -88.9, 30.0, -30.0, 1e-30, -1e-7]
    return x.astype(np.float32)


@pytest.mark.cuda
@needs_gpu
class TestActivation:
    @pytest.mark.parametrize("name", list(ACTS))
    @pytest.mark.parametrize("n", SIZES)
    def test_forward(self, cp, stream, rng, name, n):
        x = act_inputs(rng, n)
        y = host(_cuda.act_forward(cp.asarray(x), ACTS[name], SLOPE, stream=stream))
        assert y.shape == x.shape and y.dtype == np.float32
        rtol = 1e-5 if name == "gelu" else 4e-6
        np.testing.assert_allclose(y, act_forward(name, x, SLOPE), rtol=rtol, atol=1e-30)
        # Same shared math as the CPU: equal up to FMA contraction (which moves gelu's far
        # tail, where x² rounds, by a few 1e-6).
        np.testing.assert_allclose(y, _C.act_forward(x, ACTS[name], SLOPE), rtol=rtol, atol=1e-30)

    @pytest.mark.parametrize("name", list(ACTS))
    @pytest.mark.parametrize("n", SIZES)
    def test_backward(self, cp, stream, rng, name, n):
        x = act_inputs(rng, n)
        dy = f32(rng, n)
        saved = x if name in ("leaky_relu", "gelu") else _C.act_forward(x, ACTS[name], SLOPE)
        dx = host(_cuda.act_backward(cp.asarray(dy), cp.asarray(saved), ACTS[name], SLOPE, stream=stream))
        np.testing.assert_allclose(dx, _C.act_backward(dy, saved, ACTS[name], SLOPE), rtol=1e-5, atol=1e-6)

    @pytest.mark.parametrize("name", list(ACTS))
    def test_backward_accumulates(self, cp, stream, rng, name):
        x, dy = act_inputs(rng, 1000), f32(rng, 1000)
        saved = x if name in ("leaky_relu", "gelu") else _C.act_forward(x, ACTS[name], SLOPE)
        once = _C.act_backward(dy, saved, ACTS[name], SLOPE)
        acc = cp.full(1000, 0.5, cp.float32)
        out = _cuda.act_backward(cp.asarray(dy), cp.asarray(saved), ACTS[name], SLOPE, acc, True, stream=stream)
        assert out is acc
        np.testing.assert_allclose(host(acc), once + 0.5, rtol=1e-5, atol=1e-6)

    def test_in_place(self, cp, stream):
        x = cp.linspace(-3, 3, 101, dtype=cp.float32)
        expected = np.maximum(host(x), 0)
        assert _cuda.act_forward(x, ACTS["relu"], 0.0, x, stream=stream) is x
        np.testing.assert_array_equal(host(x), expected)

    def test_nan_propagates(self, cp, stream):
        x = cp.asarray(np.array([np.nan, 1.0], np.float32))
        for name in ("sigmoid", "tanh", "gelu"):
            assert np.isnan(host(_cuda.act_forward(x, ACTS[name], stream=stream))[0]), name


# ---------------------------------------------------------------------------------------------
# softmax and losses
# ---------------------------------------------------------------------------------------------

SOFTMAX_SHAPES = [(1, 1), (7, 17), (63, 65), (5, 784), (3, 2048), (4, 2049), (2, 5003), (0, 5), (300, 10)]


@pytest.mark.cuda
@needs_gpu
class TestSoftmax:
    @pytest.mark.parametrize("log", [False, True])
    @pytest.mark.parametrize("rows,cols", SOFTMAX_SHAPES)
    def test_forward(self, cp, stream, rng, rows, cols, log):
        x = f32(rng, rows, cols, scale=4.0)
        y = host(_cuda.softmax_forward(cp.asarray(x), log, stream=stream))
        if rows:
            np.testing.assert_allclose(y, softmax64(x, log), rtol=2e-5, atol=2e-6 if log else 1e-7)
            np.testing.assert_allclose(y, _C.softmax_forward(x, log), rtol=2e-5, atol=2e-6 if log else 1e-7)

    @pytest.mark.parametrize("log", [False, True])
    @pytest.mark.parametrize("rows,cols", SOFTMAX_SHAPES)
    def test_backward(self, cp, stream, rng, rows, cols, log):
        x, dy = f32(rng, rows, cols, scale=3.0), f32(rng, rows, cols)
        y = _C.softmax_forward(x, log)
        dx = host(_cuda.softmax_backward(cp.asarray(dy), cp.asarray(y), log, stream=stream))
        y64, dy64 = y.astype(np.float64), dy.astype(np.float64)
        if log:
            ref = dy64 - np.exp(y64) * dy64.sum(1, keepdims=True)
        else:
            ref = y64 * (dy64 - (dy64 * y64).sum(1, keepdims=True))
        atol = 1e-5 * max(1.0, math.sqrt(cols)) if cols else 0
        np.testing.assert_allclose(dx, ref, rtol=1e-4, atol=atol)
        np.testing.assert_allclose(dx, _C.softmax_backward(dy, y, log), rtol=1e-4, atol=atol)

    def test_large_logits_stay_finite(self, cp, stream):
        x = np.array([[1000.0, 0.0, -1000.0], [-50.0, -50.0, -50.0]], np.float32)
        y = host(_cuda.softmax_forward(cp.asarray(x), False, stream=stream))
        np.testing.assert_allclose(y, softmax64(x, False), atol=1e-7)


LOSS_SHAPES = [(1, 1), (7, 17), (64, 10), (63, 65), (5, 784), (3, 3000)]


def labels_for(rng, rows: int, cols: int, ignore: bool) -> np.ndarray:
    y = rng.integers(0, cols, rows).astype(np.int64)
    if ignore and rows > 2:
        y[::3] = -100
    return y


@pytest.mark.cuda
@needs_gpu
class TestClassLosses:
    @pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
    @pytest.mark.parametrize("smoothing", [0.0, 0.1])
    @pytest.mark.parametrize("weighted", [False, True])
    @pytest.mark.parametrize("ignore", [False, True])
    @pytest.mark.parametrize("rows,cols", LOSS_SHAPES)
    def test_softmax_xent_matches_cpu(self, cp, stream, rng, rows, cols, ignore, weighted, smoothing, reduction):
        x = f32(rng, rows, cols, scale=3.0)
        y = labels_for(rng, rows, cols, ignore)
        w = rng.uniform(0.5, 2.0, cols).astype(np.float32) if weighted else None
        loss, grad, wsum = _cuda.softmax_xent(cp.asarray(x), cp.asarray(y), None if w is None else cp.asarray(w),
                                              -100, smoothing, reduction, True, 0.5, stream=stream)
        loss_c, grad_c, wsum_c = _C.softmax_xent(x, y, w, -100, smoothing, reduction, True, 0.5)
        assert isinstance(wsum, float) and wsum == pytest.approx(wsum_c, rel=1e-12)
        if reduction == "none":
            assert loss.shape == (rows,)
            np.testing.assert_allclose(host(loss), loss_c, rtol=1e-5, atol=1e-5)
        else:
            assert loss.shape == () and loss.dtype == cp.float32
            if math.isnan(loss_c):
                assert math.isnan(float(loss))
            else:
                assert float(loss) == pytest.approx(loss_c, rel=1e-5, abs=1e-5)
        np.testing.assert_allclose(host(grad), grad_c, rtol=1e-4, atol=1e-6)

    def test_softmax_xent_against_float64(self, cp, stream, rng):
        x, y = f32(rng, 50, 12, scale=2.0), rng.integers(0, 12, 50)
        loss, grad, _ = _cuda.softmax_xent(cp.asarray(x), cp.asarray(y), want_grad=True, stream=stream)
        logp = softmax64(x, True)
        assert float(loss) == pytest.approx(-logp[np.arange(50), y].mean(), rel=1e-6)
        onehot = np.eye(12)[y]
        np.testing.assert_allclose(host(grad), (np.exp(logp) - onehot) / 50, rtol=1e-5, atol=1e-8)

    def test_all_rows_ignored_gives_nan_mean(self, cp, stream):
        x = cp.zeros((4, 3), cp.float32)
        y = cp.full(4, -100, cp.int64)
        loss, grad, wsum = _cuda.softmax_xent(x, y, want_grad=True, stream=stream)
        assert math.isnan(float(loss)) and wsum == 0.0
        assert not host(grad).any()

    @pytest.mark.parametrize("bad", [12, -1, 10])
    def test_label_out_of_range_raises_index_error(self, cp, stream, bad):
        y = cp.asarray(np.array([0, 1, 2, bad, 3, bad], np.int64))
        with pytest.raises(IndexError, match=rf"cross_entropy: target\[3\] = {bad} is out of range for 10 classes"):
            _cuda.softmax_xent(cp.zeros((6, 10), cp.float32), y, stream=stream)
        with pytest.raises(IndexError, match=rf"nll_loss: target\[3\] = {bad} is out of range"):
            _cuda.nll(cp.zeros((6, 10), cp.float32), y, stream=stream)

    @pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
    @pytest.mark.parametrize("weighted", [False, True])
    @pytest.mark.parametrize("rows,cols", LOSS_SHAPES)
    def test_nll_matches_cpu(self, cp, stream, rng, rows, cols, weighted, reduction):
        logp = _C.softmax_forward(f32(rng, rows, cols), True)
        y = labels_for(rng, rows, cols, True)
        w = rng.uniform(0.5, 2.0, cols).astype(np.float32) if weighted else None
        loss, grad, wsum = _cuda.nll(cp.asarray(logp), cp.asarray(y), None if w is None else cp.asarray(w), -100,
                                     reduction, True, 2.0, stream=stream)
        loss_c, grad_c, wsum_c = _C.nll(logp, y, w, -100, reduction, True, 2.0)
        assert wsum == pytest.approx(wsum_c, rel=1e-12)
        if reduction == "none":
            np.testing.assert_allclose(host(loss), loss_c, rtol=1e-6, atol=1e-7)
        elif not math.isnan(loss_c):
            assert float(loss) == pytest.approx(loss_c, rel=1e-6)
        np.testing.assert_allclose(host(grad), grad_c, rtol=1e-6, atol=1e-8)


POINTWISE = {"mse": 0, "l1": 1, "bce": 2, "bce_logits": 3}


@pytest.mark.cuda
@needs_gpu
class TestPointwiseLoss:
    @pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
    @pytest.mark.parametrize("weighted", [False, True])
    @pytest.mark.parametrize("kind", list(POINTWISE))
    @pytest.mark.parametrize("n", [0, 1, 7, 63, 784, 70001, 1 << 20])
    def test_matches_cpu(self, cp, stream, rng, n, kind, weighted, reduction):
        if kind == "bce":
            x = rng.uniform(0.0, 1.0, n).astype(np.float32)
            if n > 4:
                x[:3] = [0.0, 1.0, 0.5]  # logs clamped at -100
            t = rng.uniform(0.0, 1.0, n).astype(np.float32)
        else:
            x, t = f32(rng, n, scale=2.0), f32(rng, n)
            if n > 4:
                t[0] = x[0]  # l1's gradient at a tie is 0
        w = rng.uniform(0.0, 2.0, n).astype(np.float32) if weighted else None
        loss, grad = _cuda.pointwise_loss(cp.asarray(x), cp.asarray(t), POINTWISE[kind],
                                          None if w is None else cp.asarray(w), reduction, True, 1.5, stream=stream)
        loss_c, grad_c = _C.pointwise_loss(x, t, POINTWISE[kind], w, reduction, True, 1.5)
        if reduction == "none":
            np.testing.assert_allclose(host(loss), loss_c, rtol=2e-5, atol=1e-6)
        elif math.isnan(loss_c):
            assert math.isnan(float(loss))
        else:
            assert float(loss) == pytest.approx(loss_c, rel=1e-5, abs=1e-6)
        np.testing.assert_allclose(host(grad), grad_c, rtol=2e-5, atol=1e-6)

    def test_bce_input_out_of_range(self, cp, stream):
        x = cp.asarray(np.array([0.1, 0.2, 1.5, -3.0], np.float32))
        with pytest.raises(RuntimeError, match=r"binary_cross_entropy: all elements of input should be between 0 and 1; "
                                             r"input\[2\] = 1.5"):
            _cuda.pointwise_loss(x, cp.zeros(4, cp.float32), 2, stream=stream)


# ---------------------------------------------------------------------------------------------
# reductions
# ---------------------------------------------------------------------------------------------


@pytest.mark.cuda
@needs_gpu
class TestReduce:
    @pytest.mark.parametrize("accumulate", [False, True])
    @pytest.mark.parametrize("rows,cols", [(0, 5), (5, 0), (1, 1), (7, 17), (784, 63), (65, 1000), (10, 10),
                                           (5003, 3)])
    def test_colsum_rowsum(self, cp, stream, rng, rows, cols, accumulate):
        x = f32(rng, rows, cols)
        for fn, axis, n in ((_cuda.colsum, 0, cols), (_cuda.rowsum, 1, rows)):
            base = f32(rng, n)
            out = cp.asarray(base) if accumulate else None
            got = host(fn(cp.asarray(x), out, accumulate, stream=stream))
            ref = x.astype(np.float64).sum(axis) + (base if accumulate else 0)
            np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
            if x.size:  # fastmlp._C refuses empty matrices (their NumPy strides are 0)
                cpu = (_C.colsum if axis == 0 else _C.rowsum)(x, base.copy() if accumulate else None, accumulate)
                np.testing.assert_allclose(got, cpu, rtol=1e-6, atol=1e-6)

    def test_strided_rows(self, cp, stream, rng):
        big = cp.asarray(f32(rng, 40, 70))
        x = big[:, 3:50]
        np.testing.assert_allclose(host(_cuda.colsum(x, stream=stream)), host(x).astype(np.float64).sum(0), rtol=1e-6)
        np.testing.assert_allclose(host(_cuda.rowsum(x, stream=stream)), host(x).astype(np.float64).sum(1), rtol=1e-6)

    def test_deterministic(self, cp, stream, rng):
        x = cp.asarray(f32(rng, 4099, 33))
        first = host(_cuda.colsum(x, stream=stream))
        for _ in range(3):
            np.testing.assert_array_equal(host(_cuda.colsum(x, stream=stream)), first)


# ---------------------------------------------------------------------------------------------
# dropout
# ---------------------------------------------------------------------------------------------


@pytest.mark.cuda
@needs_gpu
class TestDropout:
    @pytest.mark.parametrize("p", [0.0, 0.2, 0.5, 1.0])
    @pytest.mark.parametrize("seed,offset", [(0, 0), (1234, 7), (2**64 - 1, 2**40 + 3)])
    @pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 17, 63, 65, 784, 70001])
    def test_mask_and_values_bitwise_equal_cpu(self, cp, stream, rng, n, seed, offset, p):
        x = f32(rng, n)
        y, mask = _cuda.dropout_forward(cp.asarray(x), p, seed, offset, stream=stream)
        y_c, mask_c = _C.dropout_forward(x, p, seed, offset)
        np.testing.assert_array_equal(host(mask), mask_c)
        np.testing.assert_array_equal(host(y).view(np.uint32), y_c.view(np.uint32))
        dy = f32(rng, n)
        dx = _cuda.dropout_backward(cp.asarray(dy), mask, p, stream=stream)
        np.testing.assert_array_equal(host(dx), _C.dropout_backward(dy, mask_c, p))

    def test_philox_bits_equal_cpu(self, cp, stream):
        for seed, offset, n in [(0, 0, 1), (42, 3, 1001), (2**63 + 5, 2**35, 4099)]:
            np.testing.assert_array_equal(host(_cuda.philox_bits(seed, offset, n, stream=stream)),
                                          _C.philox_bits(seed, offset, n))

    def test_in_place_and_accumulate(self, cp, stream, rng):
        x = f32(rng, 1000)
        gx = cp.asarray(x)
        y, mask = _cuda.dropout_forward(gx, 0.3, 5, 9, gx, stream=stream)
        assert y is gx
        y_c, _ = _C.dropout_forward(x, 0.3, 5, 9)
        np.testing.assert_array_equal(host(gx), y_c)
        acc = cp.ones(1000, cp.float32)
        _cuda.dropout_backward(cp.asarray(x), mask, 0.3, acc, True, stream=stream)
        np.testing.assert_allclose(host(acc), 1 + _C.dropout_backward(x, host(mask), 0.3), rtol=1e-6)

    def test_no_mask(self, cp, stream):
        y, mask = _cuda.dropout_forward(cp.ones(10, cp.float32), 0.5, 1, 2, want_mask=False, stream=stream)
        assert mask is None and y.shape == (10,)


# ---------------------------------------------------------------------------------------------
# optimizers
# ---------------------------------------------------------------------------------------------

OPT_SIZES = [0, 1, 7, 17, 63, 65, 784, 4096, 4097, 70001]


def tensors(rng, sizes: list[int], positive: bool = False) -> list[np.ndarray]:
    out = [f32(rng, n) for n in sizes]
    return [np.abs(t) for t in out] if positive else out


@pytest.mark.cuda
@needs_gpu
class TestOptim:
    @pytest.mark.parametrize("count", [1, 3, 60])  # 60 > 48 tensors: two launches
    @pytest.mark.parametrize("momentum,dampening,nesterov,wd,maximize",
                             [(0.0, 0.0, False, 0.0, False), (0.9, 0.0, False, 0.0, False), (0.9, 0.0, True, 1e-2, False),
                              (0.5, 0.3, False, 1e-3, True)])
    def test_sgd_matches_cpu(self, cp, stream, rng, count, momentum, dampening, nesterov, wd, maximize):
        sizes = [OPT_SIZES[i % len(OPT_SIZES)] for i in range(count)]
        params, bufs = tensors(rng, sizes), [np.zeros(n, np.float32) for n in sizes]
        g_params, g_bufs = [cp.asarray(p) for p in params], [cp.asarray(b) for b in bufs]
        for step in range(3):
            grads = tensors(rng, sizes)
            kw = dict(lr=0.05, momentum=momentum, dampening=dampening, weight_decay=wd, nesterov=nesterov,
                      maximize=maximize, first_step=step == 0)
            _C.sgd_step(params, grads, bufs if momentum else None, **kw)
            _cuda.sgd_step(g_params, [cp.asarray(g) for g in grads], g_bufs if momentum else None, **kw,
                           stream=stream)
        for p, gp in zip(params, g_params):
            np.testing.assert_allclose(host(gp), p, rtol=1e-6, atol=1e-7)
        for b, gb in zip(bufs, g_bufs):
            np.testing.assert_allclose(host(gb), b, rtol=1e-6, atol=1e-7)

    @pytest.mark.parametrize("count", [1, 4, 60])
    @pytest.mark.parametrize("wd,decoupled,amsgrad,maximize",
                             [(0.0, False, False, False), (1e-2, False, False, False), (1e-2, True, False, False),
                              (0.0, False, True, False), (1e-2, True, True, True)])
    def test_adam_matches_cpu(self, cp, stream, rng, count, wd, decoupled, amsgrad, maximize):
        sizes = [OPT_SIZES[(i * 3) % len(OPT_SIZES)] for i in range(count)]
        params = tensors(rng, sizes)
        state = {k: [np.zeros(n, np.float32) for n in sizes] for k in ("m", "v", "vmax")}
        g_params = [cp.asarray(p) for p in params]
        g_state = {k: [cp.asarray(t) for t in v] for k, v in state.items()}
        for step in range(1, 4):
            grads = tensors(rng, sizes)
            kw = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=wd, step=step, amsgrad=amsgrad,
                      maximize=maximize, decoupled_weight_decay=decoupled)
            _C.adam_step(params, grads, state["m"], state["v"], state["vmax"] if amsgrad else None, **kw)
            _cuda.adam_step(g_params, [cp.asarray(g) for g in grads], g_state["m"], g_state["v"],
                            g_state["vmax"] if amsgrad else None, **kw, stream=stream)
        for p, gp in zip(params, g_params):
            np.testing.assert_allclose(host(gp), p, rtol=1e-6, atol=1e-7)
        for k in ("m", "v") + (("vmax",) if amsgrad else ()):
            for t, gt in zip(state[k], g_state[k]):
                np.testing.assert_allclose(host(gt), t, rtol=1e-6, atol=1e-9)

    def test_empty_list(self, cp, stream):
        _cuda.sgd_step([], [], None, 0.1, stream=stream)
        _cuda.adam_step([], [], [], [], None, 0.1, 0.9, 0.999, 1e-8, 0.0, 1, stream=stream)


# ---------------------------------------------------------------------------------------------
# bad input with real device arrays
# ---------------------------------------------------------------------------------------------


@pytest.mark.cuda
@needs_gpu
class TestBadDeviceInput:
    def test_numpy_array_where_device_array_expected(self, cp, stream):
        with pytest.raises(TypeError, match=r"act_forward: argument 'x' must be a float32 CUDA device array "
                                            r"\(cupy.ndarray\); got numpy.ndarray float32 \[3\] in host memory"):
            _cuda.act_forward(np.zeros(3, np.float32), 1, stream=stream)

    def test_wrong_dtype(self, cp, stream):
        with pytest.raises(TypeError, match=r"gemm: argument 'a' must be a float32 array; got float64 \[2, 3\]"):
            _cuda.gemm(cp.zeros((2, 3)), cp.zeros((3, 4), cp.float32), cp.zeros((2, 4), cp.float32), stream=stream)
        with pytest.raises(TypeError, match=r"argument 'target' must be a int64 array; got int32 \[2\]"):
            _cuda.softmax_xent(cp.zeros((2, 3), cp.float32), cp.zeros(2, cp.int32), stream=stream)

    def test_non_contiguous(self, cp, stream):
        with pytest.raises(ValueError, match="must be C-contiguous"):
            _cuda.act_forward(cp.zeros((4, 4), cp.float32)[:, 1], 1, stream=stream)
        with pytest.raises(ValueError, match="must have contiguous rows"):
            _cuda.gemm(cp.zeros((3, 2), cp.float32).T, cp.zeros((3, 4), cp.float32), cp.zeros((2, 4), cp.float32),
                       stream=stream)

    def test_shapes(self, cp, stream):
        with pytest.raises(ValueError, match=r"gemm: inner dimensions differ: op\(a\) is \[2, 3\] and op\(b\) is "
                                             r"\[4, 5\]"):
            _cuda.gemm(cp.zeros((2, 3), cp.float32), cp.zeros((4, 5), cp.float32), cp.zeros((2, 5), cp.float32),
                       stream=stream)
        with pytest.raises(ValueError, match=r"argument 'c' must have shape \[2, 4\]; got float32 \[2, 5\]"):
            _cuda.gemm(cp.zeros((2, 3), cp.float32), cp.zeros((3, 4), cp.float32), cp.zeros((2, 5), cp.float32),
                       stream=stream)
        with pytest.raises(ValueError, match=r"linear_forward: x \[2, 3\] and weight \[4, 5\] do not match"):
            _cuda.linear_forward(cp.zeros((2, 3), cp.float32), cp.zeros((4, 5), cp.float32), stream=stream)
        with pytest.raises(ValueError, match=r"sgd_step: grads\[1\] has shape \[4\] but params\[1\] has \[3\]"):
            _cuda.sgd_step([cp.zeros(2, cp.float32), cp.zeros(3, cp.float32)],
                           [cp.zeros(2, cp.float32), cp.zeros(4, cp.float32)], None, 0.1, stream=stream)

    def test_overlap(self, cp, stream):
        buf = cp.zeros(10, cp.float32)
        with pytest.raises(ValueError, match="partial overlap"):
            _cuda.act_forward(buf[:8], 1, 0.0, buf[2:], stream=stream)
        a = cp.zeros((4, 4), cp.float32)
        with pytest.raises(ValueError, match="output 'c' overlaps input 'a'"):
            _cuda.gemm(a, cp.zeros((4, 4), cp.float32), a, stream=stream)

    def test_stream_must_be_cupys_current_stream_when_allocating(self, cp, stream):
        other = cp.cuda.Stream(non_blocking=True)
        with pytest.raises(ValueError, match="'stream' must be CuPy's current stream"):
            _cuda.act_forward(cp.zeros(3, cp.float32), 1, stream=other.ptr)
        out = cp.empty(3, cp.float32)  # nothing to allocate: any stream will do
        _cuda.act_forward(cp.ones(3, cp.float32), 1, 0.0, out, stream=other.ptr)
        other.synchronize()
        np.testing.assert_array_equal(host(out), np.ones(3, np.float32))

    def test_bad_algo_and_splits(self, cp, stream):
        args = (cp.zeros((2, 3), cp.float32), cp.zeros((3, 4), cp.float32), cp.zeros((2, 4), cp.float32))
        with pytest.raises(ValueError, match="algo must be"):
            _cuda.gemm(*args, algo="fast", stream=stream)
        with pytest.raises(ValueError, match="splits must be in"):
            _cuda.gemm(*args, splits=1000, stream=stream)


# ---------------------------------------------------------------------------------------------
# tests that run without a GPU
# ---------------------------------------------------------------------------------------------


class FakeDeviceArray:
    """Exposes __cuda_array_interface__ for a made-up address; never dereferenced by these tests."""

    def __init__(self, shape: tuple, typestr: str = "<f4", strides: Optional[tuple] = None, readonly: bool = False,
                 ptr: int = 1 << 20) -> None:
        self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr, "data": (ptr, readonly),
                                         "strides": strides, "version": 3}


@needs_module
class TestWithoutDevice:
    def test_module_reports_devices(self):
        n = _cuda.device_count()
        assert n >= 0
        reason = _cuda.no_device_reason()
        assert (reason == "") == (n > 0)
        assert _cuda.runtime_version() >= 12000
        assert _cuda.__version__

    def test_kernel_call_without_device_raises(self):
        if _cuda.device_count() > 0:
            pytest.skip("a CUDA device is present")
        def arr(shape: tuple, typestr: str = "<f4") -> FakeDeviceArray:
            arr.next_ptr += 1 << 20  # disjoint buffers, so no overlap check fires first
            return FakeDeviceArray(shape, typestr, ptr=arr.next_ptr)

        arr.next_ptr = 0
        calls = [
            lambda: _cuda.act_forward(arr((3,)), 1),
            lambda: _cuda.gemm(arr((2, 3)), arr((3, 4)), arr((2, 4))),
            lambda: _cuda.softmax_xent(arr((3, 4)), arr((3,), "<i8")),
            lambda: _cuda.adam_step([arr((3,))], [arr((3,))], [arr((3,))], [arr((3,))], None, 0.1, 0.9, 0.999, 1e-8,
                                    0.0, 1),
            lambda: _cuda.philox_bits(1, 2, 3),
            lambda: _cuda.gemm_plan(10, 10, 10),
        ]
        for call in calls:
            with pytest.raises(RuntimeError, match="no CUDA device is available"):
                call()


@needs_module
class TestArgumentChecks:
    """Argument errors are raised before any device is touched, so these run anywhere."""

    def test_host_array_is_a_type_error(self):
        with pytest.raises(TypeError, match=r"act_forward: argument 'x' must be a float32 CUDA device array "
                                            r"\(cupy.ndarray\); got numpy.ndarray float32 \[3\] in host memory"):
            _cuda.act_forward(np.zeros(3, np.float32), 1)
        with pytest.raises(TypeError, match="must be a float32 CUDA device array.*got list"):
            _cuda.act_forward([1.0, 2.0], 1)

    def test_wrong_dtype(self):
        with pytest.raises(TypeError, match=r"act_forward: argument 'x' must be a float32 array; got float64 \[3\]"):
            _cuda.act_forward(FakeDeviceArray((3,), "<f8"), 1)
        with pytest.raises(TypeError, match=r"argument 'mask' must be a uint8 array; got int32 \[3\]"):
            _cuda.dropout_backward(FakeDeviceArray((3,)), FakeDeviceArray((3,), "<i4"), 0.5)

    def test_strided_is_a_value_error(self):
        with pytest.raises(ValueError, match="argument 'x' must be C-contiguous; got a strided float32 \\[4\\]"):
            _cuda.act_forward(FakeDeviceArray((4,), strides=(8,)), 1)
        with pytest.raises(ValueError, match=r"argument 'a' must have contiguous rows .* strides \(4, 12\) bytes"):
            _cuda.gemm(FakeDeviceArray((2, 3), strides=(4, 12)), FakeDeviceArray((3, 4)), FakeDeviceArray((2, 4)))

    def test_shapes_and_codes(self):
        with pytest.raises(ValueError, match=r"gemm: inner dimensions differ"):
            _cuda.gemm(FakeDeviceArray((2, 3)), FakeDeviceArray((4, 5)), FakeDeviceArray((2, 5)))
        with pytest.raises(ValueError, match=r"argument 'out' must have shape \[3\]; got float32 \[4\]"):
            _cuda.act_forward(FakeDeviceArray((3,)), 1, 0.0, FakeDeviceArray((4,), ptr=1 << 24))
        with pytest.raises(ValueError, match=r"act must be an activation code in \[0, 6\)"):
            _cuda.act_forward(FakeDeviceArray((3,)), 9)
        with pytest.raises(ValueError, match=r"'dy' and 'saved' must have the same shape; got \[3\] and \[4\]"):
            _cuda.act_backward(FakeDeviceArray((3,)), FakeDeviceArray((4,)), 1)
        with pytest.raises(ValueError, match="accumulate=True needs an 'out' array"):
            _cuda.colsum(FakeDeviceArray((3, 2)), None, True)
        with pytest.raises(ValueError, match=r"target must have shape \[3\] to match input \[3, 4\]"):
            _cuda.softmax_xent(FakeDeviceArray((3, 4)), FakeDeviceArray((2,), "<i8"))
        with pytest.raises(ValueError, match="label_smoothing must be in"):
            _cuda.softmax_xent(FakeDeviceArray((3, 4)), FakeDeviceArray((3,), "<i8"), label_smoothing=2.0)
        with pytest.raises(ValueError, match="reduction must be 'none', 'mean' or 'sum'; got 'avg'"):
            _cuda.pointwise_loss(FakeDeviceArray((3,)), FakeDeviceArray((3,)), 0, reduction="avg")
        with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
            _cuda.dropout_forward(FakeDeviceArray((3,)), 1.5, 0, 0)
        with pytest.raises(ValueError, match="invalid beta parameter at index 1"):
            _cuda.adam_step([], [], [], [], None, 0.1, 0.9, 1.0, 1e-8, 0.0, 1)

    def test_read_only_output(self):
        with pytest.raises(ValueError, match="'c' is an output and must be writable"):
            _cuda.gemm(FakeDeviceArray((2, 3)), FakeDeviceArray((3, 4), ptr=1 << 24),
                       FakeDeviceArray((2, 4), readonly=True, ptr=1 << 28))

    def test_overlap_is_refused(self):
        base = 1 << 20
        with pytest.raises(ValueError, match="partial overlap"):
            _cuda.act_forward(FakeDeviceArray((8,), ptr=base), 1, 0.0, FakeDeviceArray((8,), ptr=base + 8))
        with pytest.raises(ValueError, match="output 'c' overlaps input 'b'"):
            _cuda.gemm(FakeDeviceArray((2, 3), ptr=1 << 28), FakeDeviceArray((3, 4), ptr=base),
                       FakeDeviceArray((2, 4), ptr=base + 16))

    def test_stream_is_keyword_only(self):
        with pytest.raises(TypeError):
            _cuda.act_forward(FakeDeviceArray((3,)), 1, 0.0, None, 0)
