"""Soak test: resident memory (RSS) over a long run of training steps, eager and through ``fit``.

    python tools/soak.py [--steps 100000] [--mode both|eager|fit] [--max-growth-mb 16]

Trains a small MLP (32-64-64-10, dropout, Adam, batches of 32 random rows) for
--steps optimizer steps, once with the tutorial's eager loop (zero_grad, forward,
loss, backward, step) and once with ``fastmlp.train.fit`` (the native whole-step
path), sampling RSS every 1,000 steps. A leak of even a few bytes per step shows as
steady growth: after a warm-up of 5% of the steps RSS must not grow by more than
--max-growth-mb, else the exit status is 1. Prints one line per mode with RSS after
warm-up, at the end, its peak, and the growth per 10,000 steps (a least-squares slope
over the samples after warm-up).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastmlp  # noqa: E402
from fastmlp import nn, optim  # noqa: E402
from fastmlp.train import Callback, fit  # noqa: E402
from fastmlp.utils.data import DataLoader, TensorDataset  # noqa: E402

SAMPLE_EVERY = 1000
BATCH = 32
ROWS = 3200  # 100 batches per epoch


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def model_and_data():
    fastmlp.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((ROWS, 32)).astype(np.float32)
    y = rng.integers(0, 10, ROWS).astype(np.int64)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 64), nn.ReLU(),
                          nn.Linear(64, 10))
    return model, optim.Adam(model.parameters(), lr=1e-3), x, y


def soak_eager(steps: int) -> list:
    model, opt, x, y = model_and_data()
    criterion = nn.CrossEntropyLoss()
    xs = [fastmlp.tensor(x[i:i + BATCH]) for i in range(0, ROWS, BATCH)]
    ys = [fastmlp.tensor(y[i:i + BATCH]) for i in range(0, ROWS, BATCH)]
    samples = []
    model.train()
    for step in range(1, steps + 1):
        k = step % len(xs)
        opt.zero_grad()
        loss = criterion(model(xs[k]), ys[k])
        loss.backward()
        opt.step()
        if step % SAMPLE_EVERY == 0:
            loss.item()
            samples.append((step, rss_mb()))
    return samples


class _RssSampler(Callback):
    def __init__(self, samples: list) -> None:
        self.samples = samples

    def on_epoch_end(self, state, logs) -> None:
        if state.step % SAMPLE_EVERY == 0:
            self.samples.append((state.step, rss_mb()))


def soak_fit(steps: int) -> list:
    model, opt, x, y = model_and_data()
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True)
    samples: list = []
    fit(model, nn.CrossEntropyLoss(), opt, loader, epochs=max(1, steps // len(loader)),
        callbacks=[_RssSampler(samples)], progress=False)
    return samples


def summarise(name: str, samples: list, steps: int, seconds: float, max_growth: float) -> bool:
    warm = [s for s in samples if s[0] > steps // 20] or samples
    start_mb = warm[0][1]
    end_mb = samples[-1][1]
    peak = max(r for _, r in samples)
    xs = np.array([s for s, _ in warm], dtype=np.float64)
    ys = np.array([r for _, r in warm], dtype=np.float64)
    slope = float(np.polyfit(xs, ys, 1)[0]) * 10_000 if len(warm) > 1 else 0.0
    growth = max(r for _, r in warm) - start_mb
    ok = growth <= max_growth
    print(f"{name:5s}  {samples[-1][0]:>7,d} steps in {seconds:6.1f} s   RSS after warm-up {start_mb:7.1f} MB   "
          f"end {end_mb:7.1f} MB   peak {peak:7.1f} MB   growth {growth:+6.2f} MB "
          f"({slope:+.3f} MB per 10k steps)   {'ok' if ok else 'GROWING'}", flush=True)
    return ok


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--mode", choices=["both", "eager", "fit"], default="both")
    p.add_argument("--max-growth-mb", type=float, default=16.0)
    args = p.parse_args(argv)
    print(f"fastmlp {fastmlp.__version__}, soak of {args.steps:,d} steps, RSS sampled every {SAMPLE_EVERY:,d}",
          flush=True)
    ok = True
    for mode, run in (("eager", soak_eager), ("fit", soak_fit)):
        if args.mode in (mode, "both"):
            t = time.perf_counter()
            samples = run(args.steps)
            ok &= summarise(mode, samples, args.steps, time.perf_counter() - t, args.max_growth_mb)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
