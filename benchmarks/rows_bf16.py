"""Benchmark rows: the bfloat16 GEMM (float32 operands rounded to bfloat16 in the packing,
float32 accumulation and output) next to the float32 GEMM on the same shapes, each rate
also as a share of its measured peak.

The peaks come from register-only loops (fastmlp._C.peak_flops) on every thread: the
float32 FMA, and the instruction the bfloat16 GEMM runs on (vdpbf16ps with AVX512-BF16,
twice the FMA's flops per instruction; without it, the float32 FMA again, since the
bfloat16 GEMM then runs the float32 kernels on rounded operands). Where the GEMM runs on AMX
tiles, the printed bfloat16 peak is still vdpbf16ps's: the tiles' peak is not measured.

Baselines: numpy is np.matmul in float32 (NumPy has no bfloat16); torch is torch.mm on
bfloat16 tensors (its output is bfloat16, where fastmlp's is float32).
"""
from __future__ import annotations

import statistics
import time

import numpy as np

from fastmlp import _C

if __package__:
    from .common import Row, compare
else:
    from common import Row, compare

SHAPES = [(128, 784, 512), (256, 1024, 1024), (20, 784, 512), (64, 512, 10)]  # batch x in x out
SQUARE = 2048


def measure_peak(kind: str, seconds: float = 0.2, repeat: int = 5) -> float:
    """Median FLOP/s of the register-only loop `kind` ('fma' or 'bf16') on every thread."""
    iters = 1 << 16
    while True:  # size the loop to about `seconds`
        t0 = time.perf_counter()
        _C.peak_flops(kind, iters)
        if time.perf_counter() - t0 >= seconds / 4 or iters >= 1 << 30:
            break
        iters *= 2
    rates = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        flops = _C.peak_flops(kind, iters)
        rates.append(flops / (time.perf_counter() - t0))
    return statistics.median(rates)


def _pair(op: str, shape: str, f32, bf16, numpy, torch_bf16, flops: float, peaks: dict, repeat: int):
    r32 = compare(op, shape, f32, numpy, None, flops=flops, repeat=repeat)
    r32.peak = peaks["fma"]
    r16 = compare(op + "_bf16", shape, bf16, numpy, torch_bf16, flops=flops, repeat=repeat)
    r16.peak = peaks["bf16"]
    return [r32, r16]


def rows(quick: bool = False, torch=None) -> list[Row]:
    """float32 and bfloat16 GEMM rows; prints the two peaks first."""
    peaks = {"fma": measure_peak("fma"), "bf16": measure_peak("bf16")}
    path = _C.bf16_path()
    native = not path.startswith("float32 FMA")
    print(f"float32 FMA peak (register-only loop, {_C.get_num_threads()} threads): "
          f"{peaks['fma'] / 1e9:.1f} GFLOP/s")
    why = "absent on this CPU" if not _C.cpu_has_avx512bf16() else "not in use"
    print(f"bfloat16 peak: {peaks['bf16'] / 1e9:.1f} GFLOP/s, "
          + (("vdpbf16ps (AVX512-BF16)" + (f"; the bfloat16 GEMM runs on {path}, whose peak this loop does not "
                                            "measure" if "TDPBF16PS" in path else "")) if native else
             f"the float32 FMA: AVX512-BF16 is {why}, so the bfloat16 GEMM is {_C.bf16_path()}"))
    rng = np.random.default_rng(0)
    repeat = 5 if quick else 9
    out: list[Row] = []
    shapes = SHAPES[:2] if quick else SHAPES
    for m, k, n in shapes:
        x = rng.standard_normal((m, k), dtype=np.float32)
        w = rng.standard_normal((n, k), dtype=np.float32)
        dy = rng.standard_normal((m, n), dtype=np.float32)
        y, dw, dx = np.empty((m, n), np.float32), np.empty((n, k), np.float32), np.empty((m, k), np.float32)
        t = {}
        if torch is not None:
            t = {name: torch.from_numpy(a).to(torch.bfloat16) for name, a in dict(x=x, w=w, dy=dy).items()}
        shape, flops = f"{m}x{k}x{n}", 2.0 * m * n * k
        out += _pair("gemm_fw", shape, lambda: _C.gemm(x, w, y, False, True),
                     lambda: _C.gemm_bf16(x, w, y, False, True), lambda: np.matmul(x, w.T, out=y),
                     (lambda: torch.mm(t["x"], t["w"].t())) if torch else None, flops, peaks, repeat)
        out += _pair("gemm_dw", shape, lambda: _C.gemm(dy, x, dw, True, False),
                     lambda: _C.gemm_bf16(dy, x, dw, True, False), lambda: np.matmul(dy.T, x, out=dw),
                     (lambda: torch.mm(t["dy"].t(), t["x"])) if torch else None, flops, peaks, repeat)
        out += _pair("gemm_dx", shape, lambda: _C.gemm(dy, w, dx, False, False),
                     lambda: _C.gemm_bf16(dy, w, dx, False, False), lambda: np.matmul(dy, w, out=dx),
                     (lambda: torch.mm(t["dy"], t["w"])) if torch else None, flops, peaks, repeat)
    a = rng.standard_normal((SQUARE, SQUARE), dtype=np.float32)
    b = rng.standard_normal((SQUARE, SQUARE), dtype=np.float32)
    c = np.empty((SQUARE, SQUARE), np.float32)
    ta = tb = None
    if torch is not None:
        ta, tb = torch.from_numpy(a).to(torch.bfloat16), torch.from_numpy(b).to(torch.bfloat16)
    out += _pair("gemm", f"{SQUARE}x{SQUARE}x{SQUARE}", lambda: _C.gemm(a, b, c),
                 lambda: _C.gemm_bf16(a, b, c), lambda: np.matmul(a, b, out=c),
                 (lambda: torch.mm(ta, tb)) if torch else None, 2.0 * SQUARE ** 3, peaks, 3 if quick else 5)
    return out
