"""Out-of-bounds check of the CUDA kernels, meant to run under compute-sanitizer:

    compute-sanitizer --tool memcheck --error-exitcode 3 python benchmarks/gpu_memcheck.py

Every fastmlp._cuda kernel runs on odd shapes (1, primes, one past a tile) with each
array in its own allocation that ends exactly at its last element, at an odd offset
from the allocation's start, and matrices with spaced rows. CuPy's memory pool is
turned off, so every array is a separate cudaMalloc and a read or write one element
past an array is outside any allocation: memcheck reports it. Each result is also
compared with the CPU kernels (fastmlp._C) on the same inputs. Exit status: 0 when
every result matched, 1 on a mismatch, 2 when there is no GPU to run on.
``--cpu-selftest`` runs the same cases on the CPU kernels (a check of the script).
"""
from __future__ import annotations

import sys
from typing import Callable

import numpy as np

ACTS = {"identity": 0, "relu": 1, "leaky_relu": 2, "sigmoid": 3, "tanh": 4, "gelu": 5}
GEMM_SHAPES = [(1, 1, 1), (3, 5, 7), (17, 33, 9), (65, 130, 63), (129, 257, 66), (8, 2053, 10)]  # (M, K, N)
ROW_SHAPES = [(1, 1), (3, 7), (17, 10), (65, 129), (2, 1031)]
SIZES = [1, 7, 63, 65, 4099]
FAILURES: list[str] = []
CHECKS = [0]


def unavailable() -> str:
    try:
        from fastmlp import _cuda
    except ImportError as e:
        return f"fastmlp._cuda is not built ({e})"
    try:
        import cupy  # noqa: F401
    except Exception as e:
        return f"CuPy is not importable ({type(e).__name__}: {e})"
    if _cuda.device_count() == 0:
        return f"no CUDA device ({_cuda.no_device_reason()})"
    return ""


def placed(cp, host: np.ndarray, offset: int, spacing: int = 0):
    """`host` copied into its own device allocation, `offset` elements past the allocation's start.

    A 2-D array gets rows `spacing` elements longer than its columns (a strided matrix
    view); the allocation ends exactly at the array's last element, so nothing may be
    read or written past it.
    """
    host = np.ascontiguousarray(host)
    if host.ndim == 2 and spacing:
        rows, cols = host.shape
        ld = cols + spacing
        base = cp.empty(offset + (rows - 1) * ld + cols, dtype=host.dtype)
        view = cp.lib.stride_tricks.as_strided(base[offset:], shape=(rows, cols),
                                               strides=(ld * host.itemsize, host.itemsize))
        view[...] = cp.asarray(host)
        return view
    base = cp.empty(offset + host.size, dtype=host.dtype)
    view = base[offset:].reshape(host.shape)
    view[...] = cp.asarray(host)
    return view


def expect(name: str, got, want, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    CHECKS[0] += 1
    g = np.asarray(got) if isinstance(got, (np.ndarray, np.generic, float)) else got.get()
    w = np.asarray(want)
    if g.shape != w.shape:
        FAILURES.append(f"{name}: shape {g.shape} != expected {w.shape}")
    elif not np.allclose(g.astype(np.float64), w.astype(np.float64), rtol=rtol, atol=atol, equal_nan=True):
        err = np.abs(g.astype(np.float64) - w.astype(np.float64)).max()
        FAILURES.append(f"{name}: max |got - expected| = {err:.3g}")


def case(name: str, fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception as e:  # report and go on: the sanitizer's report is the point
        FAILURES.append(f"{name}: raised {type(e).__name__}: {e}")


def run(cp, _cuda, _C, rng) -> None:
    f32 = np.float32
    for M, K, N in GEMM_SHAPES:
        for ta in (False, True):
            for tb in (False, True):
                a = rng.standard_normal((K, M) if ta else (M, K)).astype(f32)
                b = rng.standard_normal((N, K) if tb else (K, N)).astype(f32)
                c0 = rng.standard_normal((M, N)).astype(f32)
                bias = rng.standard_normal(N).astype(f32)
                tag = f"gemm {M}x{K}x{N} ta={ta} tb={tb}"

                def gemm_case(a=a, b=b, c0=c0, bias=bias, ta=ta, tb=tb, tag=tag, K=K):
                    for tf32 in (False, True):
                        c = placed(cp, c0, 3, spacing=5)
                        z = placed(cp, np.zeros_like(c0), 1, spacing=3)
                        _cuda.gemm(placed(cp, a, 1, 3), placed(cp, b, 5, 1), c, ta, tb, 0.5, 0.25,
                                   placed(cp, bias, 7), ACTS["relu"], 0.0, z, allow_tf32=tf32)
                        ref = 0.5 * (a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64) \
                            + 0.25 * c0 + bias
                        tol = 2e-2 * np.sqrt(K) if tf32 else 1e-4 * K
                        expect(tag + (" tf32" if tf32 else "") + " preact", z, ref, 1e-3, tol)
                        expect(tag + (" tf32" if tf32 else ""), c, np.maximum(ref, 0), 1e-3, tol)
                case(tag, gemm_case)

        x = rng.standard_normal((M, K)).astype(f32)
        w = rng.standard_normal((N, K)).astype(f32)
        bias = rng.standard_normal(N).astype(f32)
        dz = rng.standard_normal((M, N)).astype(f32)

        def linear_case(x=x, w=w, bias=bias, dz=dz, M=M, K=K, N=N):
            y, z = _cuda.linear_forward(placed(cp, x, 3, 1), placed(cp, w, 1, 2), placed(cp, bias, 5),
                                        ACTS["tanh"], 0.0, True)
            y_c, z_c = _C.linear_forward(x, w, bias, ACTS["tanh"], 0.0, True)
            expect(f"linear_forward {M}x{K}x{N}", y, y_c, 1e-4, 1e-4 * K)
            expect(f"linear_forward preact {M}x{K}x{N}", z, z_c, 1e-4, 1e-4 * K)
            dw0 = rng.standard_normal((N, K)).astype(f32)
            db0 = rng.standard_normal(N).astype(f32)
            dw, db = placed(cp, dw0, 1), placed(cp, db0, 3)
            dx = _cuda.linear_backward(placed(cp, dz, 1, 3), placed(cp, x, 7, 1), placed(cp, w, 1, 1), True, dw, db,
                                       True, True)
            dw_c, db_c = dw0.copy(), db0.copy()
            dx_c = _C.linear_backward(dz, x, w, True, dw_c, db_c, True, True)
            expect(f"linear_backward dx {M}x{K}x{N}", dx, dx_c, 1e-4, 1e-4 * N)
            expect(f"linear_backward dw {M}x{K}x{N}", dw, dw_c, 1e-4, 1e-4 * M)
            expect(f"linear_backward db {M}x{K}x{N}", db, db_c, 1e-4, 1e-4 * M)
        case(f"linear {M}x{K}x{N}", linear_case)

    for n in SIZES:
        x = (rng.standard_normal(n) * 3).astype(f32)
        dy = rng.standard_normal(n).astype(f32)
        for name, code in ACTS.items():
            def act_case(x=x, dy=dy, name=name, code=code, n=n):
                y = _cuda.act_forward(placed(cp, x, 1), code, 0.01)
                expect(f"act_forward {name} {n}", y, _C.act_forward(x, code, 0.01), 1e-5, 1e-6)
                saved = x if name in ("identity", "relu", "leaky_relu", "gelu") else _C.act_forward(x, code, 0.01)
                dx = _cuda.act_backward(placed(cp, dy, 3), placed(cp, saved, 5), code, 0.01)
                expect(f"act_backward {name} {n}", dx, _C.act_backward(dy, saved, code, 0.01), 1e-5, 1e-6)
            case(f"act {name} {n}", act_case)

        def dropout_case(x=x, dy=dy, n=n):
            y, mask = _cuda.dropout_forward(placed(cp, x, 1), 0.3, 7, 11 + n)
            y_c, mask_c = _C.dropout_forward(x, 0.3, 7, 11 + n)
            expect(f"dropout_forward {n}", y, y_c, 1e-6, 1e-7)
            expect(f"dropout mask {n}", mask, mask_c, 0, 0)
            dx = _cuda.dropout_backward(placed(cp, dy, 3), placed(cp, np.asarray(mask_c), 1), 0.3)
            expect(f"dropout_backward {n}", dx, _C.dropout_backward(dy, mask_c, 0.3), 1e-6, 1e-7)
        case(f"dropout {n}", dropout_case)

    for rows, cols in ROW_SHAPES:
        x = (rng.standard_normal((rows, cols)) * 4).astype(f32)
        dy = rng.standard_normal((rows, cols)).astype(f32)
        labels = rng.integers(0, cols, rows).astype(np.int64)
        labels[0] = -100  # ignored
        weight = rng.random(cols).astype(f32) + 0.5

        def rows_case(x=x, dy=dy, labels=labels, weight=weight, rows=rows, cols=cols):
            tag = f"{rows}x{cols}"
            for log in (False, True):
                y = _cuda.softmax_forward(placed(cp, x, 1), log)
                y_c = _C.softmax_forward(x, log)
                expect(f"softmax_forward log={log} {tag}", y, y_c, 1e-4, 1e-6)
                dx = _cuda.softmax_backward(placed(cp, dy, 3), placed(cp, y_c, 1), log)
                expect(f"softmax_backward log={log} {tag}", dx, _C.softmax_backward(dy, y_c, log), 1e-4, 1e-5)
            for reduction in ("mean", "sum", "none"):
                loss, grad, wsum = _cuda.softmax_xent(placed(cp, x, 1), placed(cp, labels, 3),
                                                      placed(cp, weight, 1), -100, 0.1, reduction, True, 0.5)
                loss_c, grad_c, wsum_c = _C.softmax_xent(x, labels, weight, -100, 0.1, reduction, True, 0.5)
                expect(f"softmax_xent {reduction} {tag}", loss, loss_c, 1e-4, 1e-5)
                expect(f"softmax_xent grad {reduction} {tag}", grad, grad_c, 1e-4, 1e-6)
                logp = _C.softmax_forward(x, True)
                loss, grad, wsum = _cuda.nll(placed(cp, logp, 5), placed(cp, labels, 1), placed(cp, weight, 3),
                                             -100, reduction, True, 1.0)
                loss_c, grad_c, wsum_c = _C.nll(logp, labels, weight, -100, reduction, True, 1.0)
                expect(f"nll {reduction} {tag}", loss, loss_c, 1e-4, 1e-5)
                expect(f"nll grad {reduction} {tag}", grad, grad_c, 1e-4, 1e-6)
            for kind in range(2):  # the first two pointwise losses (mse, l1)
                t = rng.standard_normal((rows, cols)).astype(f32)
                loss, grad = _cuda.pointwise_loss(placed(cp, x, 1), placed(cp, t, 3), kind, None, "mean", True, 1.0)
                loss_c, grad_c = _C.pointwise_loss(x, t, kind, None, "mean", True, 1.0)
                expect(f"pointwise_loss {kind} {tag}", loss, loss_c, 1e-4, 1e-5)
                expect(f"pointwise_loss grad {kind} {tag}", grad, grad_c, 1e-4, 1e-6)
            expect(f"colsum {tag}", _cuda.colsum(placed(cp, x, 3, 1)), x.astype(np.float64).sum(0), 1e-4, 1e-4 * rows)
            expect(f"rowsum {tag}", _cuda.rowsum(placed(cp, x, 1, 5)), x.astype(np.float64).sum(1), 1e-4, 1e-4 * cols)
        case(f"rows {rows}x{cols}", rows_case)

    shapes = [(1,), (7, 3), (65,), (17, 33), (4099,)]
    params = [rng.standard_normal(s).astype(f32) for s in shapes]
    grads = [rng.standard_normal(s).astype(f32) for s in shapes]

    def optim_case():
        for step in (1, 2):
            ps = [placed(cp, p, 1 + i) for i, p in enumerate(params)]
            bufs = [placed(cp, np.zeros_like(p), 3) for p in params]
            ps_c, bufs_c = [p.copy() for p in params], [np.zeros_like(p) for p in params]
            gs = [placed(cp, g, 5) for g in grads]
            _cuda.sgd_step(ps, gs, bufs, 0.1, 0.9, 0.0, 1e-2, True, False, step == 1)
            _C.sgd_step(ps_c, grads, bufs_c, 0.1, 0.9, 0.0, 1e-2, True, False, step == 1)
            for i in range(len(ps)):
                expect(f"sgd_step tensor {i} step {step}", ps[i], ps_c[i], 1e-5, 1e-6)
                expect(f"sgd_step momentum {i} step {step}", bufs[i], bufs_c[i], 1e-5, 1e-6)
            ps = [placed(cp, p, 1 + i) for i, p in enumerate(params)]
            ms, vs, vmax = ([placed(cp, np.zeros_like(p), k) for p in params] for k in (1, 3, 5))
            ps_c = [p.copy() for p in params]
            ms_c, vs_c, vmax_c = ([np.zeros_like(p) for p in params] for _ in range(3))
            _cuda.adam_step(ps, gs, ms, vs, vmax, 1e-3, 0.9, 0.999, 1e-8, 1e-2, step, True, False, True)
            _C.adam_step(ps_c, grads, ms_c, vs_c, vmax_c, 1e-3, 0.9, 0.999, 1e-8, 1e-2, step, True, False, True)
            for i in range(len(ps)):
                expect(f"adam_step tensor {i} step {step}", ps[i], ps_c[i], 1e-5, 1e-6)
                expect(f"adam_step exp_avg_sq {i} step {step}", vs[i], vs_c[i], 1e-5, 1e-9)
    case("optimizers", optim_case)


class _HostKernels:
    """fastmlp._C behind fastmlp._cuda's keyword arguments, for --cpu-selftest."""

    def __init__(self, c):
        self._c = c

    def __getattr__(self, name):
        fn = getattr(self._c, name)
        return lambda *a, allow_tf32=False, **k: fn(*a, **k)


def main() -> int:
    if "--cpu-selftest" in sys.argv[1:]:
        # The same cases with NumPy arrays and the CPU kernels standing in for the device ones:
        # checks this script's calls and references where there is no GPU.
        from fastmlp import _C

        run(np, _HostKernels(_C), _C, np.random.default_rng(0))
        print(f"gpu_memcheck --cpu-selftest: {CHECKS[0]} checks, {len(FAILURES)} failed")
        for f in FAILURES:
            print("  " + f, file=sys.stderr)
        return 1 if FAILURES else 0
    reason = unavailable()
    if reason:
        print(f"gpu_memcheck: cannot run: {reason}", file=sys.stderr)
        return 2
    import cupy as cp

    from fastmlp import _C, _cuda

    cp.cuda.set_allocator(None)  # no pool: every array is its own cudaMalloc, so memcheck sees its bounds
    cp.cuda.set_pinned_memory_allocator(None)
    run(cp, _cuda, _C, np.random.default_rng(0))
    cp.cuda.Device().synchronize()
    if FAILURES:
        print(f"gpu_memcheck: {len(FAILURES)} of {CHECKS[0]} checks FAILED:", file=sys.stderr)
        for f in FAILURES:
            print("  " + f, file=sys.stderr)
        return 1
    print(f"gpu_memcheck: {CHECKS[0]} results matched the CPU kernels (odd shapes, offsets, spaced rows, no pool)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
