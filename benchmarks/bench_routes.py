"""What the routes outside the native program buy, measured: medians of alternated samples.

    python benchmarks/bench_routes.py [--repeat 9]

- seed 001's custom Module (``F.relu(self.fc1(x))``, batch 10, Adam): one training step (under
  revisions that folded the activation into the Linear before it, also with the fold off);
- evaluation (``no_grad``, eval mode) of seed 004's 784-512-512-10 Sequential on 1000 images;
- a training step of a Sequential the plan refuses (BatchNorm1d between the Linear blocks);
- a training step of a float64 Sequential (784-256-256-10, batch 64), which the program does not
  take (under revisions that ran the plan's blocks one GEMM each for it, also with the modules
  one by one).

Prints microseconds per call; run it under two revisions to compare them.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402,F401  (sets the thread-pool environment first)
import numpy as np  # noqa: E402

from bench_step import make_step  # noqa: E402


def _per_call(fn, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def _modules(model, x):
    for m in model:
        x = m(x)
    return x


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=9)
    args = p.parse_args(argv)
    import fastmlp
    import fastmlp.nn.functional as F
    from fastmlp import nn

    rng = np.random.default_rng(0)
    x = rng.random((10, 784), dtype=np.float32)
    y = rng.integers(0, 10, 10)
    step = make_step(fastmlp, x, y)
    fold = getattr(F, "_TEMP_REFS", None)

    def no_fold_step():
        F._TEMP_REFS = -1
        try:
            step()
        finally:
            F._TEMP_REFS = fold

    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Dropout(0.2), nn.Linear(512, 512), nn.ReLU(),
                          nn.Dropout(0.2), nn.Linear(512, 10)).eval()
    X = fastmlp.from_numpy(rng.random((1000, 784), dtype=np.float32))

    def evaluate():
        with fastmlp.no_grad():
            model(X)

    bn = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.BatchNorm1d(256), nn.Linear(256, 256), nn.ReLU(),
                       nn.Linear(256, 10))
    opt = fastmlp.optim.Adam(bn.parameters())
    crit = nn.CrossEntropyLoss()
    Xb = fastmlp.from_numpy(rng.random((64, 784), dtype=np.float32))
    Yb = fastmlp.from_numpy(rng.integers(0, 10, 64))

    def refused_step():
        opt.zero_grad()
        crit(bn(Xb), Yb).backward()
        opt.step()

    f64 = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)).double()
    opt64 = fastmlp.optim.SGD(f64.parameters(), lr=0.01)
    X64 = fastmlp.from_numpy(rng.random((64, 784)))

    def f64_step():
        opt64.zero_grad()
        crit(f64(X64), Yb).backward()
        opt64.step()

    program = getattr(fastmlp.nn, "program", None)
    blocks = getattr(program, "run_blocks", None)  # retired: the modules run one by one

    def f64_step_layer_by_layer():
        program.run_blocks = lambda plan, x: _modules(f64, x)
        try:
            f64_step()
        finally:
            program.run_blocks = blocks

    cases = [("seed-001 Net step" + (", relu folded" if fold is not None else ""), step, 300),
             ("evaluate 784-512-512-10, 1000 rows", evaluate, 20),
             ("BatchNorm MLP step (plan refuses)", refused_step, 100),
             ("float64 MLP step" + (", plan's blocks" if blocks is not None else ""), f64_step, 50)]
    if fold is not None:
        cases.insert(1, ("seed-001 Net step, no fold", no_fold_step, 300))
    if blocks is not None:
        cases.append(("float64 MLP step, layer by layer", f64_step_layer_by_layer, 50))
    for _, fn, n in cases:
        for _ in range(max(3, n // 10)):
            fn()
    samples = {name: [] for name, _, _ in cases}
    for _ in range(args.repeat):
        for name, fn, n in cases:
            samples[name].append(_per_call(fn, n))
    print(f"fastmlp from {os.path.dirname(fastmlp.__file__)}")
    for name, _, _ in cases:
        print(f"{name:42s} {np.median(samples[name]):10.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
