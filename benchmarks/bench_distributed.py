"""Data-parallel training benchmark: one MNIST epoch as 1 process x T threads against P processes
x 1 thread (mpiexec), the time spent averaging gradients, and a model of the allreduce cost on
larger jobs.

    python benchmarks/bench_distributed.py [--configs mid,wide] [--procs 2] [--data DIR] [--synthetic]

Table 1 trains each configuration for one epoch of the 60,000 training images with the same
global batch (the configuration's batch; each of P processes takes batch / P of it, from a
DistributedSampler), through ``fastmlp.train.fit`` with DistributedDataParallel: forward and
backward natively, one MPI_Allreduce of the flat gradient buffer, the native optimizer update.
It reports samples/s, the share of the epoch spent in the allreduce (rank 0), and the scaling
efficiency (P x 1 samples/s over 1 x P samples/s: 100% means the processes do as well as the
threads on the same cores). Each row is the median of --repeat runs. The allreduce time includes
the wait for the slowest rank to finish its backward pass, so an uneven machine (another user's job
on one core) shows up there, not only the cost of moving the bytes.

Table 2 measures MPI_Allreduce (sum, float32, in place) on this machine for a few message sizes,
and models what it costs on 8 and 64 ranks over 10 and 100 Gb/s networks. The model (stated in
the output) is the one MPICH's algorithm choice follows: recursive doubling for short messages,
log2(p) (alpha + n/beta), and Rabenseifner's reduce-scatter + allgather for long ones,
2 log2(p) alpha + 2 (p-1)/p n/beta, taking the cheaper; alpha is the per-message latency and beta
the link bandwidth; the local reduction arithmetic is left out (it runs at memory speed, well
above either network).

Without MNIST on disk (and with --no-download or no network) --synthetic trains on random
MNIST-shaped data, which takes the same time per step.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

CONFIGS = {
    "mid": {"hidden": [512, 512], "dropout": 0.2, "lr": 1e-3, "batch": 128},
    "wide": {"hidden": [1024, 1024], "dropout": 0.0, "lr": 1e-3, "batch": 256},
}
# (name, per-message latency alpha in seconds, bandwidth beta in bytes/s)
NETWORKS = [("10 Gb/s Ethernet (TCP)", 25e-6, 10e9 / 8), ("100 Gb/s InfiniBand", 2e-6, 100e9 / 8)]
MODEL_RANKS = [8, 64]
MESSAGE_BYTES = [64 << 10, 1 << 20, 2_700_000, 7_500_000, 32 << 20]
_HERE = os.path.abspath(__file__)


def modelled_allreduce_s(nbytes: float, ranks: int, alpha: float, beta: float) -> float:
    """The allreduce cost model of the module docstring (seconds)."""
    if ranks < 2:
        return 0.0
    import math

    steps = math.ceil(math.log2(ranks))
    doubling = steps * (alpha + nbytes / beta)
    rabenseifner = 2 * steps * alpha + 2 * (ranks - 1) / ranks * nbytes / beta
    return min(doubling, rabenseifner)


# ---- the worker: one process of a run --------------------------------------------------------------
def _load(args):
    import numpy as np

    import fastmlp
    from fastmlp.utils.data import TensorDataset

    if not args.synthetic:
        from fastmlp import datasets

        try:
            train = datasets.MNIST(args.data, train=True, download=not args.no_download)
            x = train.data.numpy().astype(np.float32).reshape(-1, 784) / 255.0
            y = train.targets.numpy().astype(np.int64)
            return TensorDataset(fastmlp.from_numpy(x), fastmlp.from_numpy(y)), "MNIST"
        except Exception as e:  # noqa: BLE001 - fall back with a note
            print(f"bench_distributed: MNIST not available ({e}); using synthetic data", file=sys.stderr)
    rng = np.random.default_rng(0)
    x = rng.random((60000, 784), dtype=np.float32)
    y = rng.integers(0, 10, 60000).astype(np.int64)
    return TensorDataset(fastmlp.from_numpy(x), fastmlp.from_numpy(y)), "synthetic"


def worker(args) -> None:
    import numpy as np

    import fastmlp
    import fastmlp.distributed as dist
    from fastmlp import nn
    from fastmlp.nn.parallel import DistributedDataParallel
    from fastmlp.train import fit
    from fastmlp.utils.data import DataLoader, DistributedSampler

    cfg = CONFIGS[args.worker]
    dataset, source = _load(args)
    if args.limit:
        from fastmlp.utils.data import TensorDataset

        dataset = TensorDataset(*(t[:args.limit] for t in dataset.tensors))
    world, rank = 1, 0
    if dist.launched_by_mpiexec():
        dist.init_process_group("mpi")
        world, rank = dist.get_world_size(), dist.get_rank()
    fastmlp.manual_seed(0)
    layers, width = [nn.Flatten()], 784
    for h in cfg["hidden"]:
        layers += [nn.Linear(width, h), nn.ReLU()] + ([nn.Dropout(cfg["dropout"])] if cfg["dropout"] else [])
        width = h
    model = nn.Sequential(*layers, nn.Linear(width, 10))
    reduce_s = [0.0]
    if world > 1:
        model = DistributedDataParallel(model)
        inner = model._reduce

        def timed(buf):
            t0 = time.perf_counter()
            inner(buf)
            reduce_s[0] += time.perf_counter() - t0

        object.__setattr__(model, "_reduce", timed)
        sampler = DistributedSampler(dataset, seed=0)
    else:
        sampler = None
    opt = fastmlp.optim.Adam(model.parameters(), lr=cfg["lr"])
    loader = DataLoader(dataset, batch_size=cfg["batch"] // world, sampler=sampler, shuffle=sampler is None)
    flat = sum(p.numel() for p in model.parameters()) * 4
    results = []
    for _ in range(args.repeat):
        reduce_s[0] = 0.0
        if world > 1:
            dist.barrier()
        t0 = time.perf_counter()
        fit(model, nn.CrossEntropyLoss(), opt, loader, epochs=1, progress=False)
        elapsed = time.perf_counter() - t0
        if world > 1:
            t = np.array([elapsed])
            dist.all_reduce(t, dist.ReduceOp.MAX)
            elapsed = float(t[0])
        results.append({"time": elapsed, "reduce": reduce_s[0]})
    sizes = {}
    if world > 1 and args.allreduce:
        comm = dist.process_group._group.comm
        from mpi4py import MPI

        for nbytes in MESSAGE_BYTES:
            buf = np.ones(nbytes // 4, dtype=np.float32)
            times = []
            for _ in range(max(3, min(50, (64 << 20) // nbytes))):
                comm.Barrier()
                t0 = time.perf_counter()
                comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
                times.append(time.perf_counter() - t0)
            sizes[nbytes] = statistics.median(times)
    if rank == 0:
        print("RESULT " + json.dumps({"runs": results, "samples": len(dataset), "flat_bytes": flat,
                                      "source": source, "allreduce": sizes}), flush=True)


# ---- the driver ------------------------------------------------------------------------------------
def _run(cmd: list, threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise SystemExit(f"bench_distributed: {' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    line = next(l for l in out.stdout.splitlines() if l.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="mid,wide")
    p.add_argument("--procs", default="2", help="comma-separated process counts P (each row: P x 1 against 1 x P)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--data", default=None, help="folder with the MNIST idx files")
    p.add_argument("--no-download", action="store_true")
    p.add_argument("--synthetic", action="store_true", help="random MNIST-shaped data instead of MNIST")
    p.add_argument("--limit", type=int, default=0, help="train on the first N samples only (a quick check)")
    p.add_argument("--worker", choices=list(CONFIGS), help=argparse.SUPPRESS)
    p.add_argument("--allreduce", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    mpiexec = shutil.which("mpiexec") or shutil.which("mpirun")
    if mpiexec is None:
        print('bench_distributed: needs mpiexec (pip install "fastmlp[mpi]")', file=sys.stderr)
        return 2
    common = ["--repeat", str(args.repeat)] + (["--data", args.data] if args.data else []) + \
        (["--no-download"] if args.no_download else []) + (["--synthetic"] if args.synthetic else []) + \
        (["--limit", str(args.limit)] if args.limit else [])
    procs = [int(v) for v in args.procs.split(",")]
    rows, measured, source = [], {}, None
    for name in args.configs.split(","):
        for np_ in procs:
            base = [sys.executable, _HERE, "--worker", name] + common
            one = _run(base, np_)
            many = _run([mpiexec, "-n", str(np_)] + base + (["--allreduce"] if not measured else []), 1)
            measured = measured or many["allreduce"]
            source = one["source"]
            t1 = statistics.median(r["time"] for r in one["runs"])
            tp = statistics.median(r["time"] for r in many["runs"])
            red = statistics.median(r["reduce"] for r in many["runs"])
            n = one["samples"]
            rows.append((name, f"1 x {np_}", n / t1, None, None, one["flat_bytes"]))
            rows.append((name, f"{np_} x 1", n / tp, red / tp, t1 / tp, many["flat_bytes"]))
    print(f"\nOne epoch ({source} data, {n:,} samples), global batch as configured, fit with "
          "DistributedDataParallel; medians of", args.repeat)
    print(f"{'config':8} {'procs x threads':>15} {'samples/s':>10} {'allreduce':>10} {'efficiency':>11} "
          f"{'grad MB':>8}")
    for name, layout, sps, share, eff, flat in rows:
        print(f"{name:8} {layout:>15} {sps:10,.0f} {'' if share is None else f'{100 * share:.1f}%':>10} "
              f"{'' if eff is None else f'{100 * eff:.0f}%':>11} {flat / 1e6:8.2f}")
    print("\nMPI_Allreduce (float32 sum, in place): measured here on", procs[0], "processes; modelled as "
          "min(log2(p)(a + n/b), 2 log2(p) a + 2(p-1)/p n/b)")
    heads = [f"{p}r {net.split()[0]}Gb/s" for p in MODEL_RANKS for net, _, _ in NETWORKS]
    print(f"{'message':>10} {'here ms':>9} " + " ".join(f"{h:>13}" for h in heads))
    for nbytes in MESSAGE_BYTES:
        here = measured.get(str(nbytes), measured.get(nbytes))
        cells = [modelled_allreduce_s(nbytes, p, a, b) * 1e3 for p in MODEL_RANKS for _, a, b in NETWORKS]
        print(f"{nbytes / 1e6:8.2f}MB {'' if here is None else f'{here * 1e3:.3f}':>9} "
              + " ".join(f"{c:13.3f}" for c in cells))
    print("networks: " + "; ".join(f"{n}: a = {a * 1e6:g} us, b = {b * 8 / 1e9:g} Gb/s" for n, a, b in NETWORKS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
