"""Kernel benchmark: each fastmlp kernel against the plain NumPy way (and PyTorch
when installed) of computing the same thing, in one run.

    python benchmarks/bench_kernels.py [--only gemm,bf16,activation] [--quick]

Prints one table (median ms per call, speed-up over NumPy and PyTorch, GFLOP/s or
GB/s) and writes benchmarks/results/kernels.csv.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

if __package__:
    from . import common
else:  # run as a script from a checkout
    import common

FAMILIES = ["gemm", "bf16", "activation", "loss", "reduce", "dropout", "optim"]


def _rows_module(family: str):
    name = f"{__package__}.rows_{family}" if __package__ else f"rows_{family}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name != name:
            raise
        print(f"(no benchmark rows for {family} yet)")
        return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default="", help="comma-separated families: " + ", ".join(FAMILIES))
    p.add_argument("--quick", action="store_true", help="fewer shapes and repeats")
    args = p.parse_args(argv)
    families = [f for f in args.only.split(",") if f] or FAMILIES
    for f in families:
        if f not in FAMILIES:
            p.error(f"unknown family {f!r}; choose from {', '.join(FAMILIES)}")

    import numpy as np

    import fastmlp

    torch = common.torch_or_none()
    info = fastmlp.info()
    print(f"fastmlp {info['version']} ({info['isa']}, {info['threads']} threads), numpy {np.__version__}, "
          f"torch {torch.__version__ if torch else 'not installed'}, {os.cpu_count()} cpus")
    if torch is not None:
        torch.set_num_threads(info["threads"])
    rows = []
    for family in families:
        mod = _rows_module(family)
        if mod is None:
            continue
        rows.extend(mod.rows(quick=args.quick, torch=torch))
    common.print_table(rows)
    path = common.write_csv(rows, "kernels")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
