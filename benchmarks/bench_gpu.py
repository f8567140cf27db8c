"""GPU kernel benchmark: fastmlp._cuda against CuPy (cuBLAS for GEMM) on the same device.

    python benchmarks/bench_gpu.py [--quick] [--only gemm,xent,adam]

GEMM: the three products a Linear layer needs (x @ w.T, dy.T @ x, dy @ w) on the MLP
shapes, and 4096^3, against cupy.matmul (cuBLAS, FP32), in GFLOP/s and % of cuBLAS;
the TF32 row against cuBLAS with TF32 allowed (CuPy's TF32 compute type).
Softmax cross-entropy (loss and gradient) and the multi-tensor Adam step in GB/s,
against the device's memory bandwidth (a measured device-to-device copy). Where
PyTorch with CUDA is installed, a torch column times the same work in PyTorch
(matmul with its TF32 switch, F.cross_entropy forward and backward, fused Adam).

Before any timing, every fastmlp output is checked against a float64 reference
(TF32 with TF32's tolerance); a mismatch is printed and the run exits with status 1.
Each time is the median over repeats of a batch of back-to-back calls timed with
CUDA events, so launch and Python overhead count as they do in training. Prints a
table and writes benchmarks/results/gpu_kernels.csv. Exits with a message (status
2) when there is no CuPy, no fastmlp._cuda or no GPU.
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
from dataclasses import dataclass
from typing import Callable, Optional

if __package__:
    from .common import results_dir
else:  # run as a script from a checkout
    from common import results_dir


def _unavailable() -> Optional[str]:
    """Why the benchmark cannot run here, or None."""
    try:
        from fastmlp import _cuda
    except ImportError as e:
        return f"fastmlp._cuda is not available ({e}); build with a CUDA compiler (FASTMLP_CUDA=ON)"
    try:
        import cupy  # noqa: F401
    except Exception as e:
        return f"CuPy is not importable ({type(e).__name__}: {e}); install the CuPy wheel for your CUDA version"
    if _cuda.device_count() == 0:
        return f"no CUDA device ({_cuda.no_device_reason()})"
    return None


@dataclass
class GpuRow:
    op: str
    shape: str
    fastmlp_s: float
    baseline_s: Optional[float] = None  # CuPy / cuBLAS doing the same work
    flops: Optional[float] = None
    nbytes: Optional[float] = None
    note: str = ""
    torch_s: Optional[float] = None  # PyTorch CUDA doing the same work


MISMATCHES: list[str] = []  # outputs that disagreed with the reference (checked before timing)


def check(name: str, got, want, rtol: float, atol: float) -> None:
    """Compare a fastmlp output with its float64 reference; remember a mismatch (the run then fails)."""
    import cupy as cp

    g = cp.asarray(got, dtype=cp.float64)
    w = cp.asarray(want, dtype=cp.float64)
    if g.shape != w.shape:
        MISMATCHES.append(f"{name}: shape {g.shape} != reference {w.shape}")
        return
    err = cp.abs(g - w) - (atol + rtol * cp.abs(w))
    worst = float(err.max()) if err.size else 0.0
    if not worst <= 0.0:  # also catches NaN
        MISMATCHES.append(f"{name}: max |out - ref| exceeds {rtol:g}*|ref| + {atol:g} by {worst:.3g}")


def gemm_tol(K: int, tf32: bool = False) -> tuple[float, float]:
    """(rtol, atol) for K-long dot products of standard-normal inputs: float32 accumulation
    error grows at most like K ulps; TF32 rounds each input to 10 mantissa bits, a random
    error of about 2^-10 sqrt(K), allowed 16 times over."""
    if tf32:
        return 1e-3, 16 * 2.0 ** -10 * K ** 0.5
    return 1e-4, 4 * 2.0 ** -23 * K


def cublas_tf32(enabled: bool) -> bool:
    """Let CuPy's float32 matmul use TF32 tensor cores (cuBLAS's FAST_TF32 compute type) or not;
    False when this CuPy has no such switch."""
    try:
        from cupy._core import _routines_linalg as linalg

        import cupy as cp

        kind = getattr(linalg, "COMPUTE_TYPE_TF32", 7) if enabled else getattr(linalg, "COMPUTE_TYPE_DEFAULT", 1)
        linalg.set_compute_type(cp.float32, kind)
        return True
    except Exception:
        return False


def torch_cuda():
    """PyTorch when it is installed with a usable CUDA device, else None."""
    try:
        import torch
    except Exception:
        return None
    return torch if torch.cuda.is_available() else None


def time_torch(torch, fn: Callable[[], object], repeat: int = 15, warmup: int = 3, min_ms: float = 2.0) -> float:
    """time_gpu for PyTorch work: CUDA events on torch's current stream."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    n = 1
    while True:
        start.record()
        for _ in range(n):
            fn()
        end.record()
        end.synchronize()
        if start.elapsed_time(end) >= min_ms or n >= 1 << 14:
            break
        n *= 2
    samples = []
    for _ in range(repeat):
        start.record()
        for _ in range(n):
            fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / 1e3 / n)
    return statistics.median(samples)


def as_torch(torch, arr):
    """The same device memory as a torch tensor (no copy), through __cuda_array_interface__."""
    return torch.as_tensor(arr, device="cuda")

    def pct_of_baseline(self) -> Optional[float]:
        return None if self.baseline_s is None else 100.0 * self.baseline_s / self.fastmlp_s

    def gflops(self) -> Optional[float]:
        return None if not self.flops else self.flops / self.fastmlp_s / 1e9

    def gbps(self) -> Optional[float]:
        return None if not self.nbytes else self.nbytes / self.fastmlp_s / 1e9


def time_gpu(fn: Callable[[], object], stream, repeat: int = 15, warmup: int = 3, min_ms: float = 2.0) -> float:
    """Median seconds per call: each sample times enough back-to-back calls (CUDA events)
    to last about `min_ms`."""
    import cupy as cp

    for _ in range(warmup):
        fn()
    stream.synchronize()
    start, end = cp.cuda.Event(), cp.cuda.Event()
    n = 1
    while True:
        start.record(stream)
        for _ in range(n):
            fn()
        end.record(stream)
        end.synchronize()
        ms = cp.cuda.get_elapsed_time(start, end)
        if ms >= min_ms or n >= 1 << 14:
            break
        n *= 2
    samples = []
    for _ in range(repeat):
        start.record(stream)
        for _ in range(n):
            fn()
        end.record(stream)
        end.synchronize()
        samples.append(cp.cuda.get_elapsed_time(start, end) / 1e3 / n)
    return statistics.median(samples)


def copy_bandwidth(stream) -> float:
    """Bytes per second of a large device-to-device copy (read + write)."""
    import cupy as cp

    n = 1 << 28  # 1 GiB of float32
    src, dst = cp.ones(n, cp.float32), cp.empty(n, cp.float32)
    t = time_gpu(lambda: cp.copyto(dst, src), stream, repeat=7, min_ms=20.0)
    del src, dst
    return 2 * 4 * n / t


def gemm_rows(quick: bool, stream, torch=None) -> list[GpuRow]:
    import cupy as cp

    from fastmlp import _cuda

    sptr = stream.ptr
    f64 = cp.float64
    rng = cp.random.default_rng(0)
    rows: list[GpuRow] = []
    batches = [10, 256] if quick else [10, 20, 64, 128, 256]
    layers = [(784, 512), (1024, 1024)] if quick else [(784, 512), (512, 512), (784, 64), (512, 10), (1024, 1024)]
    for M in batches:
        for K, N in layers:
            x = rng.standard_normal((M, K), dtype=cp.float32)
            w = rng.standard_normal((N, K), dtype=cp.float32)
            dy = rng.standard_normal((M, N), dtype=cp.float32)
            y, dw, dx = cp.empty((M, N), cp.float32), cp.empty((N, K), cp.float32), cp.empty((M, K), cp.float32)
            flops = 2.0 * M * N * K
            variants = [
                ("linear_fw x@w.T", lambda: _cuda.gemm(x, w, y, False, True, stream=sptr),
                 lambda: cp.matmul(x, w.T, out=y), _cuda.gemm_plan(M, N, K), y,
                 lambda: x.astype(f64) @ w.T.astype(f64), K, (x, w.T)),
                ("linear_dw dy.T@x", lambda: _cuda.gemm(dy, x, dw, True, False, stream=sptr),
                 lambda: cp.matmul(dy.T, x, out=dw), _cuda.gemm_plan(N, K, M), dw,
                 lambda: dy.T.astype(f64) @ x.astype(f64), M, (dy.T, x)),
                ("linear_dx dy@w", lambda: _cuda.gemm(dy, w, dx, stream=sptr),
                 lambda: cp.matmul(dy, w, out=dx), _cuda.gemm_plan(M, K, N), dx,
                 lambda: dy.astype(f64) @ w.astype(f64), N, (dy, w)),
            ]
            for name, ours, theirs, plan, out, ref, depth, (ta, tb) in variants:
                ours()
                check(f"{name} {M}x{K}x{N}", out, ref(), *gemm_tol(depth))
                row = GpuRow(name, f"{M}x{K}x{N}", time_gpu(ours, stream), time_gpu(theirs, stream), flops,
                             note=f"{plan[0]} split {plan[1]}")
                if torch is not None:
                    a_t, b_t, o_t = as_torch(torch, ta), as_torch(torch, tb), as_torch(torch, out)
                    row.torch_s = time_torch(torch, lambda: torch.matmul(a_t, b_t, out=o_t))
                rows.append(row)
    S = 2048 if quick else 4096
    a = rng.standard_normal((S, S), dtype=cp.float32)
    b = rng.standard_normal((S, S), dtype=cp.float32)
    c = cp.empty((S, S), cp.float32)
    flops = 2.0 * S**3
    ref_ab = a.astype(f64) @ b.astype(f64)
    ref_abt = a.astype(f64) @ b.T.astype(f64)
    _cuda.gemm(a, b, c, stream=sptr)
    check(f"gemm a@b {S}^3", c, ref_ab, *gemm_tol(S))
    _cuda.gemm(a, b, c, False, True, stream=sptr)
    check(f"gemm a@b.T {S}^3", c, ref_abt, *gemm_tol(S))
    _cuda.gemm(a, b, c, allow_tf32=True, stream=sptr)
    check(f"gemm a@b tf32 {S}^3", c, ref_ab, *gemm_tol(S, tf32=True))
    del ref_ab, ref_abt
    base = time_gpu(lambda: cp.matmul(a, b, out=c), stream)
    base_t = time_gpu(lambda: cp.matmul(a, b.T, out=c), stream)
    have_tf32 = cublas_tf32(True)
    try:
        base_tf32 = time_gpu(lambda: cp.matmul(a, b, out=c), stream) if have_tf32 else None
    finally:
        cublas_tf32(False)
    plan = _cuda.gemm_plan(S, S, S)
    plan_tf32 = _cuda.gemm_plan(S, S, S, allow_tf32=True)
    square = [GpuRow("gemm a@b", f"{S}^3", time_gpu(lambda: _cuda.gemm(a, b, c, stream=sptr), stream), base,
                     flops, note=f"{plan[0]} split {plan[1]}"),
              GpuRow("gemm a@b.T", f"{S}^3", time_gpu(lambda: _cuda.gemm(a, b, c, False, True, stream=sptr), stream),
                     base_t, flops, note=f"{plan[0]} split {plan[1]}"),
              GpuRow("gemm a@b tf32", f"{S}^3",
                     time_gpu(lambda: _cuda.gemm(a, b, c, allow_tf32=True, stream=sptr), stream), base_tf32, flops,
                     note=f"{plan_tf32[0]} vs cuBLAS TF32" if have_tf32 else
                     "no cuBLAS TF32 baseline (this CuPy has no TF32 switch)")]
    if torch is not None:
        a_t, b_t, c_t = as_torch(torch, a), as_torch(torch, b), as_torch(torch, c)
        previous = torch.backends.cuda.matmul.allow_tf32
        try:
            torch.backends.cuda.matmul.allow_tf32 = False
            square[0].torch_s = time_torch(torch, lambda: torch.matmul(a_t, b_t, out=c_t))
            square[1].torch_s = time_torch(torch, lambda: torch.matmul(a_t, b_t.T, out=c_t))
            torch.backends.cuda.matmul.allow_tf32 = True
            square[2].torch_s = time_torch(torch, lambda: torch.matmul(a_t, b_t, out=c_t))
        finally:
            torch.backends.cuda.matmul.allow_tf32 = previous
    return rows + square


def xent_rows(quick: bool, stream, torch=None) -> list[GpuRow]:
    import cupy as cp

    from fastmlp import _cuda

    sptr = stream.ptr
    rng = cp.random.default_rng(1)
    rows = []
    shapes = [(256, 10), (8192, 1000)] if quick else [(64, 10), (256, 10), (65536, 10), (8192, 1000), (1024, 32000)]
    for r, c in shapes:
        logits = rng.standard_normal((r, c), dtype=cp.float32)
        labels = cp.asarray(rng.integers(0, c, r), dtype=cp.int64)

        def baseline():
            mx = logits.max(axis=1, keepdims=True)
            e = cp.exp(logits - mx)
            s = e.sum(axis=1, keepdims=True)
            loss = (cp.log(s)[:, 0] + mx[:, 0] - logits[cp.arange(r), labels]).mean()
            g = e / s
            g[cp.arange(r), labels] -= 1.0
            return loss, g / r

        nbytes = 2.0 * r * c * 4 + r * 8  # logits read, gradient written, labels read
        got = _cuda.softmax_xent(logits, labels, want_grad=True, stream=sptr)
        x64 = logits.astype(cp.float64)
        p64 = cp.exp(x64 - x64.max(axis=1, keepdims=True))
        p64 /= p64.sum(axis=1, keepdims=True)
        want_loss = -cp.log(p64[cp.arange(r), labels]).mean()
        p64[cp.arange(r), labels] -= 1.0
        check(f"softmax_xent loss {r}x{c}", got[0], want_loss, 1e-5, 1e-6)
        check(f"softmax_xent grad {r}x{c}", got[1], p64 / r, 1e-4, 1e-6 / r)
        row = GpuRow("softmax_xent+grad", f"{r}x{c}",
                     time_gpu(lambda: _cuda.softmax_xent(logits, labels, want_grad=True, stream=sptr), stream),
                     time_gpu(baseline, stream), nbytes=nbytes, note="includes the label check's sync")
        if torch is not None:
            lt = as_torch(torch, logits).clone().requires_grad_(True)
            yt = as_torch(torch, labels)

            def torch_xent():
                lt.grad = None
                torch.nn.functional.cross_entropy(lt, yt).backward()

            row.torch_s = time_torch(torch, torch_xent)
        rows.append(row)
    return rows


def adam_rows(quick: bool, stream, torch=None) -> list[GpuRow]:
    import cupy as cp

    from fastmlp import _cuda

    sptr = stream.ptr
    rng = cp.random.default_rng(2)
    rows = []
    models = {"784-1024-1024-10": [(1024, 784), (1024,), (1024, 1024), (1024,), (10, 1024), (10,)],
              "4 x 16M": [(4096, 4096)] * 4}
    if quick:
        models.pop("4 x 16M")
    for name, shapes in models.items():
        params = [rng.standard_normal(s, dtype=cp.float32) for s in shapes]
        grads = [rng.standard_normal(s, dtype=cp.float32) for s in shapes]
        m = [cp.zeros(s, cp.float32) for s in shapes]
        v = [cp.zeros(s, cp.float32) for s in shapes]
        n = sum(p.size for p in params)

        def ours():
            _cuda.adam_step(params, grads, m, v, None, 1e-3, 0.9, 0.999, 1e-8, 0.0, 10, stream=sptr)

        def baseline():  # the same update as separate CuPy element-wise ops per tensor
            for p, g, mm, vv in zip(params, grads, m, v):
                mm += 0.1 * (g - mm)
                vv *= 0.999
                vv += 0.001 * g * g
                p -= 1e-3 / 0.65 * (mm / (cp.sqrt(vv) / 0.1 + 1e-8))

        # Check one step from zero state (step 1) against the update written out in float64.
        p0 = [q.astype(cp.float64) for q in params]
        _cuda.adam_step(params, grads, m, v, None, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1, stream=sptr)
        for i, (q, q0, g) in enumerate(zip(params, p0, grads)):
            g64 = g.astype(cp.float64)
            m_hat = 0.1 * g64 / (1 - 0.9)
            v_hat = 0.001 * g64 * g64 / (1 - 0.999)
            check(f"adam_step {name} tensor {i}", q, q0 - 1e-3 * m_hat / (cp.sqrt(v_hat) + 1e-8), 1e-5, 1e-6)
        del p0
        row = GpuRow("adam_step", f"{name} ({n / 1e6:.1f}M)", time_gpu(ours, stream), time_gpu(baseline, stream),
                     nbytes=7.0 * 4 * n, note=f"{len(params)} tensors, one launch")
        if torch is not None:
            tparams = [as_torch(torch, q).clone().requires_grad_(True) for q in params]
            for tp, g in zip(tparams, grads):
                tp.grad = as_torch(torch, g)
            topt = torch.optim.Adam(tparams, lr=1e-3, fused=True)
            row.torch_s = time_torch(torch, topt.step)
            del tparams, topt
        rows.append(row)
    return rows


def print_rows(rows: list[GpuRow], bandwidth: float) -> None:
    header = ["op", "shape", "fastmlp ms", "cupy ms", "% of cupy", "torch ms", "x torch", "GFLOP/s", "GB/s",
              "% of copy BW", "plan/note"]
    body = []
    for r in rows:
        pct = r.pct_of_baseline()
        gbps = r.gbps()
        body.append([r.op, r.shape, f"{r.fastmlp_s * 1e3:.4f}",
                     "-" if r.baseline_s is None else f"{r.baseline_s * 1e3:.4f}",
                     "-" if pct is None else f"{pct:.0f}%",
                     "-" if r.torch_s is None else f"{r.torch_s * 1e3:.4f}",
                     "-" if r.torch_s is None else f"{r.fastmlp_s / r.torch_s:.2f}",
                     "-" if r.gflops() is None else f"{r.gflops():.0f}",
                     "-" if gbps is None else f"{gbps:.0f}",
                     "-" if gbps is None else f"{100 * gbps * 1e9 / bandwidth:.0f}%", r.note])
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    left = {0, 1, 10}
    print("  ".join(h.ljust(w) if i in left else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths))))
    for b in body:
        print("  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(b, widths))))


def write_rows(rows: list[GpuRow], device: str, bandwidth: float) -> str:
    os.makedirs(results_dir(), exist_ok=True)
    path = os.path.join(results_dir(), "gpu_kernels.csv")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["op", "shape", "fastmlp_s", "cupy_s", "pct_of_cupy", "torch_s", "gflops", "gbytes_per_s",
                    "pct_of_copy_bandwidth", "note", "device"])
        for r in rows:
            pct = r.pct_of_baseline()
            gbps = r.gbps()
            w.writerow([r.op, r.shape, f"{r.fastmlp_s:.6g}", "" if r.baseline_s is None else f"{r.baseline_s:.6g}",
                        "" if pct is None else f"{pct:.1f}", "" if r.torch_s is None else f"{r.torch_s:.6g}",
                        "" if r.gflops() is None else f"{r.gflops():.1f}",
                        "" if gbps is None else f"{gbps:.1f}",
                        "" if gbps is None else f"{100 * gbps * 1e9 / bandwidth:.1f}", r.note, device])
    return path


FAMILIES = {"gemm": gemm_rows, "xent": xent_rows, "adam": adam_rows}


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer shapes")
    p.add_argument("--only", default="", help="comma-separated: " + ", ".join(FAMILIES))
    p.add_argument("--no-torch", action="store_true", help="leave out the PyTorch CUDA column")
    args = p.parse_args(argv)
    families = [f for f in args.only.split(",") if f] or list(FAMILIES)
    for f in families:
        if f not in FAMILIES:
            p.error(f"unknown family {f!r}; choose from {', '.join(FAMILIES)}")
    reason = _unavailable()
    if reason is not None:
        print(f"bench_gpu: nothing to run: {reason}", file=sys.stderr)
        return 2

    import cupy as cp

    from fastmlp import _cuda

    torch = None if args.no_torch else torch_cuda()
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        device = _cuda.device_name(cp.cuda.Device().id)
        bandwidth = copy_bandwidth(stream)
        print(f"{device}, CUDA runtime {_cuda.runtime_version()}, CuPy {cp.__version__}, "
              f"device-to-device copy {bandwidth / 1e9:.0f} GB/s, torch "
              f"{torch.__version__ + ' CUDA ' + str(torch.version.cuda) if torch else 'not used (no CUDA build)'}")
        rows = []
        for f in families:
            rows.extend(FAMILIES[f](args.quick, stream, torch))
    print_rows(rows, bandwidth)
    print(f"wrote {write_rows(rows, device, bandwidth)}")
    if MISMATCHES:
        print(f"bench_gpu: {len(MISMATCHES)} OUTPUT(S) DISAGREE WITH THE REFERENCE:", file=sys.stderr)
        for m in MISMATCHES:
            print("  " + m, file=sys.stderr)
        return 1
    print("all outputs matched their references before timing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
