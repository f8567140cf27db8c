"""GPU kernel benchmark: fastmlp._cuda against CuPy (cuBLAS for GEMM) on the same device.

    python benchmarks/bench_gpu.py [--quick] [--only gemm,xent,adam]

GEMM: the three products a Linear layer needs (x @ w.T, dy.T @ x, dy @ w) on the MLP
shapes, and 4096^3, against cupy.matmul (cuBLAS, FP32), in GFLOP/s and % of cuBLAS.
Softmax cross-entropy (loss and gradient) and the multi-tensor Adam step in GB/s,
against the device's memory bandwidth (a measured device-to-device copy). Each time is
the median over repeats of a batch of back-to-back calls timed with CUDA events, so
launch and Python overhead count as they do in training. Prints a table and writes
benchmarks/results/gpu_kernels.csv. Exits with a message when there is no CuPy,
no fastmlp._cuda or no GPU.
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


def gemm_rows(quick: bool, stream) -> list[GpuRow]:
    import cupy as cp

    from fastmlp import _cuda

    sptr = stream.ptr
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
                 lambda: cp.matmul(x, w.T, out=y), _cuda.gemm_plan(M, N, K)),
                ("linear_dw dy.T@x", lambda: _cuda.gemm(dy, x, dw, True, False, stream=sptr),
                 lambda: cp.matmul(dy.T, x, out=dw), _cuda.gemm_plan(N, K, M)),
                ("linear_dx dy@w", lambda: _cuda.gemm(dy, w, dx, stream=sptr),
                 lambda: cp.matmul(dy, w, out=dx), _cuda.gemm_plan(M, K, N)),
            ]
            for name, ours, theirs, plan in variants:
                rows.append(GpuRow(name, f"{M}x{K}x{N}", time_gpu(ours, stream), time_gpu(theirs, stream), flops,
                                   note=f"{plan[0]} split {plan[1]}"))
    S = 2048 if quick else 4096
    a = rng.standard_normal((S, S), dtype=cp.float32)
    b = rng.standard_normal((S, S), dtype=cp.float32)
    c = cp.empty((S, S), cp.float32)
    flops = 2.0 * S**3
    base = time_gpu(lambda: cp.matmul(a, b, out=c), stream)
    base_t = time_gpu(lambda: cp.matmul(a, b.T, out=c), stream)
    plan = _cuda.gemm_plan(S, S, S)
    rows.append(GpuRow("gemm a@b", f"{S}^3", time_gpu(lambda: _cuda.gemm(a, b, c, stream=sptr), stream), base,
                       flops, note=f"{plan[0]} split {plan[1]}"))
    rows.append(GpuRow("gemm a@b.T", f"{S}^3", time_gpu(lambda: _cuda.gemm(a, b, c, False, True, stream=sptr), stream),
                       base_t, flops, note=f"{plan[0]} split {plan[1]}"))
    rows.append(GpuRow("gemm a@b tf32", f"{S}^3",
                       time_gpu(lambda: _cuda.gemm(a, b, c, allow_tf32=True, stream=sptr), stream), base, flops,
                       note="tensor cores vs cuBLAS FP32"))
    return rows


def xent_rows(quick: bool, stream) -> list[GpuRow]:
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
        rows.append(GpuRow("softmax_xent+grad", f"{r}x{c}",
                           time_gpu(lambda: _cuda.softmax_xent(logits, labels, want_grad=True, stream=sptr), stream),
                           time_gpu(baseline, stream), nbytes=nbytes, note="includes the label check's sync"))
    return rows


def adam_rows(quick: bool, stream) -> list[GpuRow]:
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

        rows.append(GpuRow("adam_step", f"{name} ({n / 1e6:.1f}M)", time_gpu(ours, stream), time_gpu(baseline, stream),
                           nbytes=7.0 * 4 * n, note=f"{len(params)} tensors, one launch"))
    return rows


def print_rows(rows: list[GpuRow], bandwidth: float) -> None:
    header = ["op", "shape", "fastmlp ms", "cupy ms", "% of cupy", "GFLOP/s", "GB/s", "% of copy BW", "plan/note"]
    body = []
    for r in rows:
        pct = r.pct_of_baseline()
        gbps = r.gbps()
        body.append([r.op, r.shape, f"{r.fastmlp_s * 1e3:.4f}",
                     "-" if r.baseline_s is None else f"{r.baseline_s * 1e3:.4f}",
                     "-" if pct is None else f"{pct:.0f}%",
                     "-" if r.gflops() is None else f"{r.gflops():.0f}",
                     "-" if gbps is None else f"{gbps:.0f}",
                     "-" if gbps is None else f"{100 * gbps * 1e9 / bandwidth:.0f}%", r.note])
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    left = {0, 1, 8}
    print("  ".join(h.ljust(w) if i in left else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths))))
    for b in body:
        print("  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(b, widths))))


def write_rows(rows: list[GpuRow], device: str, bandwidth: float) -> str:
    os.makedirs(results_dir(), exist_ok=True)
    path = os.path.join(results_dir(), "gpu_kernels.csv")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["op", "shape", "fastmlp_s", "cupy_s", "pct_of_cupy", "gflops", "gbytes_per_s",
                    "pct_of_copy_bandwidth", "note", "device"])
        for r in rows:
            pct = r.pct_of_baseline()
            gbps = r.gbps()
            w.writerow([r.op, r.shape, f"{r.fastmlp_s:.6g}", "" if r.baseline_s is None else f"{r.baseline_s:.6g}",
                        "" if pct is None else f"{pct:.1f}", "" if r.gflops() is None else f"{r.gflops():.1f}",
                        "" if gbps is None else f"{gbps:.1f}",
                        "" if gbps is None else f"{100 * gbps * 1e9 / bandwidth:.1f}", r.note, device])
    return path


FAMILIES = {"gemm": gemm_rows, "xent": xent_rows, "adam": adam_rows}


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer shapes")
    p.add_argument("--only", default="", help="comma-separated: " + ", ".join(FAMILIES))
    args = p.parse_args(argv)
    families = [f for f in args.only.split(",") if f] or list(FAMILIES)
    for f in families:
        if f not in FAMILIES:
            p.error(f"unknown family {f!r}; choose from {', '.join(FAMILIES)}")
    reason = _unavailable()
    if reason is not None:
        print(f"bench_gpu: nothing to run: {reason}", file=sys.stderr)
        return 0

    import cupy as cp

    from fastmlp import _cuda

    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        device = _cuda.device_name(cp.cuda.Device().id)
        bandwidth = copy_bandwidth(stream)
        print(f"{device}, CUDA runtime {_cuda.runtime_version()}, CuPy {cp.__version__}, "
              f"device-to-device copy {bandwidth / 1e9:.0f} GB/s")
        rows = []
        for f in families:
            rows.extend(FAMILIES[f](args.quick, stream))
    print_rows(rows, bandwidth)
    print(f"wrote {write_rows(rows, device, bandwidth)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
