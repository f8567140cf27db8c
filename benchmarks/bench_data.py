"""Data-pipeline benchmark: the "build your own PyTorch" tutorial's Dataset and DataLoader on MNIST,
in fastmlp and in PyTorch, with num_workers 0 and 2; and the per-call cost of the small ops that
such a Dataset's ``__getitem__`` and the collation run.

    python benchmarks/bench_data.py [--repeat 3] [--workers 0,2] [--data DIR] [--limit N]

The tutorial's pattern (``../shared/seeds``): a Dataset subclass holding the images (uint8) and
labels as tensors, whose ``__getitem__`` returns ``x[i].float().reshape(-1) / 255`` and
``y[i].long()``; ``DataLoader(shuffle=True, batch_size=64, pin_memory=True, num_workers=...)``;
a 784-256-10 ReLU MLP trained with Adam (lr 1e-3) and cross-entropy, one epoch over the
60,000 training images. Each configuration runs alternately with the others (the order
rotating between repeats); the table gives the median epoch time, the ratio to PyTorch with
the same num_workers, each library's num_workers=2 time as a fraction of its
num_workers=0 time, and the kernel threads its training step had (fastmlp's DataLoader leaves the
workers their cores). The load average is printed before and after, because other work on a
shared machine moves these times. Then the per-op table: median microseconds per call, fastmlp and PyTorch.
Results go to benchmarks/results/data.csv and data_ops.csv.
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import time
import timeit
import warnings

if __package__:
    from . import common
else:  # run as a script from a checkout
    import common

import numpy as np  # noqa: E402  (after common, which sets the thread-pool environment)

BATCH = 64


def load_mnist(root: str | None, limit: int):
    import fastmlp

    ds = fastmlp.datasets.MNIST(root, train=True)
    images, labels = ds.data.numpy(), ds.targets.numpy()
    if limit:
        images, labels = images[:limit], labels[:limit]
    return images, labels


# ---- the tutorial's pipeline, written once per library -----------------------------------------------
def make_epoch(lib_name: str, images: np.ndarray, labels: np.ndarray, num_workers: int):
    """A function that trains one epoch with `lib_name` ("fastmlp" or "torch") and returns its summed loss
    and the number of kernel threads the training step had during the pass."""
    if lib_name == "fastmlp":
        import fastmlp as lib
        from fastmlp import nn, optim
        from fastmlp.nn import functional as F
        from fastmlp.utils.data import DataLoader, Dataset
    else:
        import torch as lib
        from torch import nn, optim
        from torch.nn import functional as F
        from torch.utils.data import DataLoader, Dataset

    class MNISTTensors(Dataset):
        """As the tutorial writes it: index the tensors, convert and flatten one sample."""

        def __init__(self, x, y):
            self.x = x
            self.y = y

        def __len__(self):
            return len(self.y)

        def __getitem__(self, index):
            return self.x[index].float().reshape(-1) / 255, self.y[index].long()

    dataset = MNISTTensors(lib.from_numpy(images), lib.from_numpy(labels))
    loader = DataLoader(dataset, shuffle=True, batch_size=BATCH, pin_memory=True, num_workers=num_workers)
    lib.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = optim.Adam(model.parameters(), lr=1e-3)

    def epoch() -> tuple:
        total = 0.0
        threads = None
        for x, y in loader:
            if threads is None:  # the kernel threads of the training step during the pass
                threads = lib.get_num_threads()
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            total += loss.item()
        return total, threads

    return epoch


def bench_epochs(images, labels, workers: list[int], repeat: int, torch_mod) -> list[dict]:
    libs = ["fastmlp"] + (["torch"] if torch_mod is not None else [])
    configs = [(lib, nw) for nw in workers for lib in libs]
    runs = {c: make_epoch(c[0], images, labels, c[1]) for c in configs}
    times: dict = {c: [] for c in configs}
    threads: dict = {}
    for r in range(repeat + 1):  # the first round warms up (and starts the persistent workers)
        order = configs[r % len(configs):] + configs[:r % len(configs)]
        for c in order:
            t0 = time.perf_counter()
            _, threads[c] = runs[c]()
            dt = time.perf_counter() - t0
            if r:
                times[c].append(dt)
            print(f"  {'warm-up' if not r else f'repeat {r}'}: {c[0]:7s} num_workers={c[1]}  {dt:6.2f} s",
                  file=sys.stderr)
    rows = []
    for lib, nw in configs:
        med = statistics.median(times[(lib, nw)])
        rows.append({"library": lib, "num_workers": nw, "threads": threads[(lib, nw)], "epoch_s": med})
    by = {(r["library"], r["num_workers"]): r["epoch_s"] for r in rows}
    for r in rows:
        t = by.get(("torch", r["num_workers"]))
        r["vs_torch"] = r["epoch_s"] / t if t else None
        base = by.get((r["library"], 0))
        r["vs_own_0"] = r["epoch_s"] / base if base and r["num_workers"] else None
    return rows


# ---- the small ops ---------------------------------------------------------------------------------
def op_cases(lib, images: np.ndarray, labels: np.ndarray) -> dict:
    X, Y = lib.from_numpy(images), lib.from_numpy(labels)
    x = X[5]
    xf = x.float()
    xr = xf.reshape(-1)
    y = Y[5]
    rows = [xr / 255 for _ in range(BATCH)]
    ys = [Y[i].long() for i in range(BATCH)]
    return {
        "index x[i]": lambda: X[5],
        "x[i].float()": lambda: x.float(),
        ".reshape(-1)": lambda: xf.reshape(-1),
        "/ 255": lambda: xr / 255,
        "y[i].long()": lambda: y.long(),
        "__getitem__": lambda: (X[5].float().reshape(-1) / 255, Y[5].long()),
        "stack 64x[784]": lambda: lib.stack(rows),
        "stack 64 labels": lambda: lib.stack(ys),
        "cat 64x[784]": lambda: lib.cat(rows),
    }


def bench_ops(images, labels, torch_mod, repeat: int = 25) -> list[dict]:
    import fastmlp

    cases = {"fastmlp": op_cases(fastmlp, images, labels)}
    if torch_mod is not None:
        torch_mod.set_num_threads(1)
        cases["torch"] = op_cases(torch_mod, images, labels)
        torch_mod.set_num_threads(os.cpu_count() or 1)
    rows = []
    for name in cases["fastmlp"]:
        n = 100 if "64" in name else 1000
        res = {lib: [] for lib in cases}
        # Many short samples, the libraries alternating: a burst of other work on the machine then
        # spoils a few samples, which the median ignores, instead of one long one.
        for _ in range(repeat):
            for lib in cases:
                res[lib].append(timeit.timeit(cases[lib][name], number=n) / n * 1e6)
        row = {"op": name, "fastmlp_us": statistics.median(res["fastmlp"])}
        row["torch_us"] = statistics.median(res["torch"]) if "torch" in res else None
        row["vs_torch"] = row["fastmlp_us"] / row["torch_us"] if row["torch_us"] else None
        rows.append(row)
    return rows


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1, 5, 15 min)"
    except (AttributeError, OSError):
        return "unknown"


def fastmlp_isa() -> str:
    import fastmlp

    return fastmlp._C.isa()


def _r(x) -> str:
    return "-" if x is None else f"{x:.2f}x"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=3, help="timed epochs per configuration (median; default 3)")
    p.add_argument("--workers", default="0,2", help="comma-separated num_workers values (default 0,2)")
    p.add_argument("--data", metavar="DIR", default=None, help="folder with the MNIST files")
    p.add_argument("--limit", type=int, default=0, help="use the first N images only (a quick check)")
    p.add_argument("--skip-epochs", action="store_true", help="only the per-op table")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*pin_memory.*")  # PyTorch's: no accelerator to pin for
    images, labels = load_mnist(args.data, args.limit)
    torch_mod = common.torch_or_none()
    print(f"MNIST: {len(labels)} images; {_cpu_name()} ({platform.machine()}), {os.cpu_count()} cores; fastmlp "
          f"kernels {fastmlp_isa()}; PyTorch {torch_mod.__version__ if torch_mod else 'not installed'}")
    print(f"load average before: {_load()} (other work on the machine makes the epoch times noisy)")
    out = common.results_dir()
    os.makedirs(out, exist_ok=True)
    if not args.skip_epochs:
        workers = [int(w) for w in args.workers.split(",")]
        rows = bench_epochs(images, labels, workers, args.repeat, torch_mod)
        print(f"\none epoch, tutorial Dataset + DataLoader(batch_size={BATCH}, shuffle=True), 784-256-10 Adam "
              f"(median of {args.repeat})")
        print(f"{'library':8s} {'num_workers':>11s} {'threads':>7s} {'epoch s':>8s} {'vs torch':>9s} "
              f"{'vs own nw=0':>12s}")
        for r in rows:
            print(f"{r['library']:8s} {r['num_workers']:>11d} {r['threads']:>7d} {r['epoch_s']:8.2f} "
                  f"{_r(r['vs_torch']):>9s} {_r(r['vs_own_0']):>12s}")
        print(f"load average after: {_load()}")
        with open(os.path.join(out, "data.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    ops = bench_ops(images, labels, torch_mod)
    print("\nper call, one thread (median us)")
    print(f"{'op':16s} {'fastmlp us':>10s} {'torch us':>9s} {'vs torch':>9s}")
    for r in ops:
        t = "-" if r["torch_us"] is None else f"{r['torch_us']:9.2f}"
        print(f"{r['op']:16s} {r['fastmlp_us']:10.2f} {t:>9s} {_r(r['vs_torch']):>9s}")
    with open(os.path.join(out, "data_ops.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(ops[0]))
        w.writeheader()
        w.writerows(ops)
    return 0


if __name__ == "__main__":
    sys.exit(main())
