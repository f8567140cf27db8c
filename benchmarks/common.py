"""Timing, tables and CSV output shared by the benchmarks.

Every comparison runs the implementations alternately (fastmlp, numpy, torch,
fastmlp, ...) so that a noisy neighbour slows them all alike, and reports the
median of the repeats. Speed is only ever measured here, never asserted in tests.
"""
from __future__ import annotations

import csv
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

_HERE = os.path.dirname(os.path.abspath(__file__))

# Idle thread pools: after a parallel region, OpenMP (fastmlp's and PyTorch's) and
# OpenBLAS (NumPy's) keep their threads spinning for a while (OpenBLAS by default
# for about 2^28 cycles, a tenth of a second). The benchmarks alternate between the
# libraries, so on a small machine one library's spinning threads would steal the
# cores from the next one's timed run. These defaults make every pool go to sleep
# soon after its work, so that each library is timed as if it ran alone. They act
# only when set before the libraries load: the benchmark scripts import this module
# first, and `fastmlp bench` starts them in a fresh interpreter. A value already in
# the environment wins.
THREAD_POOL_ENV = {"GOMP_SPINCOUNT": "20000", "OPENBLAS_THREAD_TIMEOUT": "4"}
for _k, _v in THREAD_POOL_ENV.items():
    os.environ.setdefault(_k, _v)


def results_dir() -> str:
    """benchmarks/results in a source checkout; ./fastmlp-bench-results for an installed package."""
    if os.environ.get("FASTMLP_BENCH_RESULTS"):
        return os.environ["FASTMLP_BENCH_RESULTS"]
    if os.path.exists(os.path.join(_HERE, "..", "pyproject.toml")):
        return os.path.join(_HERE, "results")
    return os.path.join(os.getcwd(), "fastmlp-bench-results")


def torch_or_none():
    """PyTorch when installed (a reference only; fastmlp never needs it)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def time_alternating(fns: dict[str, Callable[[], object]], repeat: int = 15, min_time: float = 0.02,
                     warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each function, calling them in turn.

    Each sample times enough back-to-back calls to last about `min_time`, so that
    microsecond kernels are not lost in timer resolution.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    inner = {}
    for name, fn in fns.items():
        n = 1
        while True:
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            dt = time.perf_counter() - t0
            if dt >= min_time or n >= 1 << 16:
                break
            n *= 2
        inner[name] = n
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            n = inner[name]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - t0) / n)
    return {name: statistics.median(s) for name, s in samples.items()}


@dataclass
class Row:
    op: str
    shape: str
    times: dict[str, float]               # seconds per call: 'fastmlp', 'numpy', maybe 'torch'
    flops: Optional[float] = None         # floating-point operations per call
    nbytes: Optional[float] = None        # bytes moved per call
    extra: dict[str, str] = field(default_factory=dict)
    peak: Optional[float] = None          # FLOP/s of the instruction's register-only loop, when measured

    def ratio(self, other: str) -> Optional[float]:
        if other not in self.times or "fastmlp" not in self.times:
            return None
        return self.times[other] / self.times["fastmlp"]

    def rate(self) -> str:
        t = self.times["fastmlp"]
        if self.flops:
            share = f" ({self.flops / t / self.peak:.0%} of peak)" if self.peak else ""
            return f"{self.flops / t / 1e9:.1f} GFLOP/s{share}"
        if self.nbytes:
            return f"{self.nbytes / t / 1e9:.1f} GB/s"
        return ""


def compare(op: str, shape: str, fastmlp: Callable, numpy: Callable, torch: Optional[Callable] = None,
            flops: Optional[float] = None, nbytes: Optional[float] = None, repeat: int = 15) -> Row:
    fns = {"fastmlp": fastmlp, "numpy": numpy}
    if torch is not None:
        fns["torch"] = torch
    return Row(op, shape, time_alternating(fns, repeat=repeat), flops, nbytes)


def _fmt_ms(t: Optional[float]) -> str:
    return "-" if t is None else f"{t * 1e3:.3f}"


def _fmt_ratio(r: Optional[float]) -> str:
    return "-" if r is None else f"{r:.2f}x"


def print_table(rows: list[Row], title: str = "") -> None:
    """One table: ms per call (median), speed-up of fastmlp over each baseline, rate."""
    header = ["op", "shape", "fastmlp ms", "numpy ms", "torch ms", "vs numpy", "vs torch", "rate"]
    body = [[r.op, r.shape, _fmt_ms(r.times.get("fastmlp")), _fmt_ms(r.times.get("numpy")),
             _fmt_ms(r.times.get("torch")), _fmt_ratio(r.ratio("numpy")), _fmt_ratio(r.ratio("torch")),
             r.rate()] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
    if title:
        print(title)
    print("  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths))))
    for b in body:
        print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(b, widths))))


def write_csv(rows: list[Row], name: str) -> str:
    """Write the rows to benchmarks/results/<name>.csv; returns the path."""
    os.makedirs(results_dir(), exist_ok=True)
    path = os.path.join(results_dir(), f"{name}.csv")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["op", "shape", "fastmlp_s", "numpy_s", "torch_s", "speedup_vs_numpy", "speedup_vs_torch",
                    "gflops", "gbytes_per_s", "machine"])
        machine = f"{platform.machine()} {os.cpu_count()} cpus"
        for r in rows:
            t = r.times["fastmlp"]
            w.writerow([r.op, r.shape, f"{t:.6g}", f"{r.times.get('numpy', float('nan')):.6g}",
                        f"{r.times.get('torch', float('nan')):.6g}",
                        f"{r.ratio('numpy') or float('nan'):.3f}", f"{r.ratio('torch') or float('nan'):.3f}",
                        f"{(r.flops or 0) / t / 1e9:.2f}", f"{(r.nbytes or 0) / t / 1e9:.2f}", machine])
    return path
