"""Benchmark rows: one multi-tensor optimizer step over all parameters of an MLP.

fastmlp updates every tensor in one native call; the NumPy baseline is the same
update written with in-place ufuncs and one preallocated scratch array per tensor
(no allocations per step); torch times opt.step() of torch.optim on parameters
whose .grad is set.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from fastmlp import _C

if __package__:
    from .common import Row, compare
else:
    from common import Row, compare

LR, BETA1, BETA2, EPS = 1e-3, 0.9, 0.999, 1e-8
STEP = 10  # any step past the first; the bias corrections are computed per call either way
MOMENTUM = 0.9


def mlp_shapes(widths: list[int]) -> list[tuple[int, ...]]:
    """Parameter shapes of a Linear stack: weight [out, in], then bias [out], per layer."""
    shapes: list[tuple[int, ...]] = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        shapes += [(fan_out, fan_in), (fan_out,)]
    return shapes


class Params:
    """Parameters, gradients and optimizer state for one implementation."""

    def __init__(self, shapes: list[tuple[int, ...]], seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.p = [(rng.standard_normal(s) * 0.05).astype(np.float32) for s in shapes]
        self.g = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        self.m = [np.zeros(s, np.float32) for s in shapes]
        self.v = [np.zeros(s, np.float32) for s in shapes]
        self.tmp = [np.empty(s, np.float32) for s in shapes]


def numpy_adam(s: Params, weight_decay: float = 0.0, decoupled: bool = False) -> Callable[[], None]:
    bc1 = 1 - BETA1**STEP
    bc2_sqrt = float(np.sqrt(1 - BETA2**STEP))
    step_size = LR / bc1

    def step() -> None:
        for p, g, m, v, tmp in zip(s.p, s.g, s.m, s.v, s.tmp):
            if weight_decay and decoupled:
                p *= 1 - LR * weight_decay
            np.multiply(m, BETA1, out=m)
            np.multiply(g, 1 - BETA1, out=tmp)
            m += tmp
            np.multiply(v, BETA2, out=v)
            np.multiply(g, g, out=tmp)
            tmp *= 1 - BETA2
            v += tmp
            np.sqrt(v, out=tmp)
            tmp /= bc2_sqrt
            tmp += EPS
            np.divide(m, tmp, out=tmp)
            tmp *= step_size
            p -= tmp

    return step


def numpy_sgd(s: Params, momentum: float) -> Callable[[], None]:
    def step() -> None:
        for p, g, buf, tmp in zip(s.p, s.g, s.m, s.tmp):
            if momentum:
                np.multiply(buf, momentum, out=buf)
                buf += g
                np.multiply(buf, LR, out=tmp)
            else:
                np.multiply(g, LR, out=tmp)
            p -= tmp

    return step


def torch_step(torch, s: Params, make_opt: Callable) -> Callable[[], None]:
    params = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in s.p]
    for t, g in zip(params, s.g):
        t.grad = torch.from_numpy(g.copy())
    opt = make_opt(params)
    return opt.step


def rows(quick: bool = False, torch=None) -> list[Row]:
    out: list[Row] = []
    models = [[784, 512, 512, 10]] if quick else [[784, 512, 512, 10], [784, 1024, 1024, 10]]
    for widths in models:
        shapes = mlp_shapes(widths)
        n = sum(int(np.prod(s)) for s in shapes)
        label = f"{'-'.join(map(str, widths))} ({n / 1e6:.2f}M)"

        f, b = Params(shapes), Params(shapes)
        out.append(compare(
            "adam_step", label,
            lambda f=f: _C.adam_step(f.p, f.g, f.m, f.v, None, LR, BETA1, BETA2, EPS, 0.0, STEP),
            numpy_adam(b),
            torch_step(torch, Params(shapes), lambda ps: torch.optim.Adam(ps, lr=LR)) if torch else None,
            nbytes=7 * 4 * n))

        if not quick:
            f, b = Params(shapes), Params(shapes)
            out.append(compare(
                "adamw_step", label,
                lambda f=f: _C.adam_step(f.p, f.g, f.m, f.v, None, LR, BETA1, BETA2, EPS, 0.01, STEP,
                                         False, False, True),
                numpy_adam(b, 0.01, decoupled=True),
                torch_step(torch, Params(shapes), lambda ps: torch.optim.AdamW(ps, lr=LR, weight_decay=0.01))
                if torch else None,
                nbytes=7 * 4 * n))

            f, b = Params(shapes), Params(shapes)
            out.append(compare(
                "sgd_step", label,
                lambda f=f: _C.sgd_step(f.p, f.g, None, LR),
                numpy_sgd(b, 0.0),
                torch_step(torch, Params(shapes), lambda ps: torch.optim.SGD(ps, lr=LR)) if torch else None,
                nbytes=3 * 4 * n))

        f, b = Params(shapes), Params(shapes)
        out.append(compare(
            "sgd_momentum_step", label,
            lambda f=f: _C.sgd_step(f.p, f.g, f.m, LR, MOMENTUM),
            numpy_sgd(b, MOMENTUM),
            torch_step(torch, Params(shapes), lambda ps: torch.optim.SGD(ps, lr=LR, momentum=MOMENTUM))
            if torch else None,
            nbytes=5 * 4 * n))
    return out
