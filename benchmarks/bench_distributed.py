"""Data-parallel training benchmark: one MNIST epoch as 1 process x T threads against P processes
x 1 thread (mpiexec), the time spent averaging gradients, and a model of the allreduce cost on
larger jobs.

    python benchmarks/bench_distributed.py [--configs mid,wide] [--procs 2] [--data DIR] [--synthetic]

Table 1 trains each configuration for one epoch of the 60,000 training images with the same
global batch (the configuration's batch; each of P processes takes batch / P of it, from a
DistributedSampler), through ``fastmlp.train.fit`` with DistributedDataParallel: forward and
backward natively, the gradients averaged, the native optimizer update. P x 1 runs three times: the
sharded update (what fit does: the gradients reduce-scattered in shared memory, and each process
updating its chunk of one shared copy of the parameters and optimizer state), averaging in shared
memory into every process's slot followed by the whole update in every process (fit's route
before), and MPI_Allreduce over each process's own gradient buffer (the route before that). --repeat
rounds each run every layout once, in turn (so a change in the
machine's load hits them alike); each row is the median of its rounds. It reports samples/s, the
shares of the epoch (rank 0) spent averaging, waiting for the slower rank before it (a barrier
timed apart: an uneven machine, another user's job on one core, shows up there) and in the
optimizer's update (sharded: rank 0's chunk of it and the synchronisation after it, where the
slower rank's update shows up), and the scaling efficiency (P x 1 samples/s over 1 x P samples/s: 100% means
the processes do as well as the threads on the same cores).

Table 2 measures MPI_Allreduce (sum, float32, in place) on this machine for a few message sizes,
next to the shared-memory average (NodeAverager, the division included) of the same buffer, and
models what MPI_Allreduce costs on 8 and 64 ranks over 10 and 100 Gb/s networks. The model (stated in
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
    from fastmlp.distributed import sharded_update
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
    timers = {"average": 0.0, "wait": 0.0, "update": 0.0}
    if world > 1:
        model = DistributedDataParallel(model)
        comm = dist.process_group._group.comm
        inner = model._reduce

        def timed(buf, *args, **kwargs):
            # the wait for the slowest rank (a barrier), then the averaging itself
            t0 = time.perf_counter()
            comm.Barrier()
            t1 = time.perf_counter()
            out = inner(buf, *args, **kwargs)
            timers["wait"] += t1 - t0
            timers["average"] += time.perf_counter() - t1
            return out

        object.__setattr__(model, "_reduce", timed)
        if args.average == "mpi":  # keep the gradients in the process's own memory: MPI_Allreduce
            object.__setattr__(model, "_share_gradient_buffer", lambda optimizer: None)
        if args.average == "shared":  # the whole update in every process, after averaging into every slot
            sharded_update.enabled = False
        sampler = DistributedSampler(dataset, seed=0)
    else:
        sampler = None
    opt = fastmlp.optim.Adam(model.parameters(), lr=cfg["lr"])
    if world > 1:  # the update: the optimizer's own step, or (sharded) a step's time less its averaging
        own_step = opt.step

        def timed_step(closure=None):
            t0 = time.perf_counter()
            out = own_step(closure)
            timers["update"] += time.perf_counter() - t0
            return out

        opt.step = timed_step
        sharded_step = sharded_update.ShardedUpdate.step

        def timed_sharded(self, ddp):
            t0 = time.perf_counter()
            before = timers["average"] + timers["wait"] + timers["update"]
            sharded_step(self, ddp)
            timers["update"] += time.perf_counter() - t0 - (timers["average"] + timers["wait"] + timers["update"]
                                                            - before)

        sharded_update.ShardedUpdate.step = timed_sharded
    loader = DataLoader(dataset, batch_size=cfg["batch"] // world, sampler=sampler, shuffle=sampler is None)
    flat = sum(p.numel() for p in model.parameters()) * 4
    results = []
    for _ in range(args.repeat):
        for k in timers:
            timers[k] = 0.0
        if world > 1:
            dist.barrier()
        t0 = time.perf_counter()
        fit(model, nn.CrossEntropyLoss(), opt, loader, epochs=1, progress=False)
        elapsed = time.perf_counter() - t0
        if world > 1:
            t = np.array([elapsed])
            dist.all_reduce(t, dist.ReduceOp.MAX)
            elapsed = float(t[0])
        results.append(dict(timers, time=elapsed))
    sizes = {}
    if world > 1 and args.allreduce:
        sizes = _message_sizes(dist.process_group._group.comm)
    if rank == 0:
        print("RESULT " + json.dumps({"runs": results, "samples": len(dataset), "flat_bytes": flat,
                                      "source": source, "allreduce": sizes}), flush=True)


def _message_sizes(comm) -> dict:
    """{bytes: [MPI_Allreduce seconds, shared-memory average seconds]}: medians, the two alternating."""
    import numpy as np
    from mpi4py import MPI

    from fastmlp.distributed.node_average import NodeAverager

    averager = NodeAverager(comm, MPI, max(MESSAGE_BYTES) // 4, np.float32)
    sizes = {}
    for nbytes in MESSAGE_BYTES:
        buf = np.ones(nbytes // 4, dtype=np.float32)
        slot = averager.slot[:nbytes // 4] if averager.shared else None
        times = ([], [])
        for _ in range(max(3, min(50, (64 << 20) // nbytes))):
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            times[0].append(time.perf_counter() - t0)
            if slot is not None:
                slot[...] = 1.0
                comm.Barrier()
                t0 = time.perf_counter()
                averager.average(slot)
                times[1].append(time.perf_counter() - t0)
        sizes[nbytes] = [statistics.median(t) if t else None for t in times]
    return sizes


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
    p.add_argument("--repeat", type=int, default=3, help="rounds (each runs every layout once, in turn)")
    p.add_argument("--data", default=None, help="folder with the MNIST idx files")
    p.add_argument("--no-download", action="store_true")
    p.add_argument("--synthetic", action="store_true", help="random MNIST-shaped data instead of MNIST")
    p.add_argument("--limit", type=int, default=0, help="train on the first N samples only (a quick check)")
    p.add_argument("--worker", choices=list(CONFIGS), help=argparse.SUPPRESS)
    p.add_argument("--average", choices=["sharded", "shared", "mpi"], default="sharded", help=argparse.SUPPRESS)
    p.add_argument("--allreduce", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    mpiexec = shutil.which("mpiexec") or shutil.which("mpirun")
    if mpiexec is None:
        print('bench_distributed: needs mpiexec (pip install "fastmlp[mpi]")', file=sys.stderr)
        return 2
    common = ["--repeat", "1"] + (["--data", args.data] if args.data else []) + \
        (["--no-download"] if args.no_download else []) + (["--synthetic"] if args.synthetic else []) + \
        (["--limit", str(args.limit)] if args.limit else [])
    procs = [int(v) for v in args.procs.split(",")]
    names = args.configs.split(",")
    layouts = [(np_, avg) for np_ in procs for avg in (None, "sharded", "shared", "mpi")]
    runs = {(name, lay): [] for name in names for lay in layouts}
    measured, source, n, flat = {}, None, 0, {}
    for _ in range(args.repeat):  # rounds: the layouts alternate, so a change in load hits them alike
        for name in names:
            for np_, avg in layouts:
                base = [sys.executable, _HERE, "--worker", name] + common
                if avg is None:
                    got = _run(base, np_)
                else:
                    extra = ["--average", avg] + (["--allreduce"] if not measured and avg == "sharded" else [])
                    got = _run([mpiexec, "-n", str(np_)] + base + extra, 1)
                    measured = measured or got["allreduce"]
                source, n, flat[name] = got["source"], got["samples"], got["flat_bytes"]
                runs[(name, (np_, avg))] += got["runs"]
    print(f"\nOne epoch ({source} data, {n:,} samples), global batch as configured, fit with "
          f"DistributedDataParallel; medians of {args.repeat} rounds")
    print(f"{'config':8} {'procs x threads':>15} {'averaging':>16} {'samples/s':>10} {'average':>8} {'wait':>6} "
          f"{'update':>7} {'efficiency':>11} {'grad MB':>8}")
    for name in names:
        for np_, avg in layouts:
            rs = runs[(name, (np_, avg))]
            t = statistics.median(r["time"] for r in rs)
            cells = ["", "", "", ""]
            if avg is not None:
                t1 = statistics.median(r["time"] for r in runs[(name, (np_, None))])
                share = [statistics.median(r[k] / r["time"] for r in rs) for k in ("average", "wait", "update")]
                cells = [f"{100 * v:.1f}%" for v in share] + [f"{100 * t1 / t:.0f}%"]
            how = {None: "", "sharded": "sharded update", "shared": "shared memory", "mpi": "MPI_Allreduce"}[avg]
            layout = f"1 x {np_}" if avg is None else f"{np_} x 1"
            print(f"{name:8} {layout:>15} {how:>16} {n / t:10,.0f} {cells[0]:>8} {cells[1]:>6} {cells[2]:>7} "
                  f"{cells[3]:>11} {flat[name] / 1e6:8.2f}")
    print("average: share of the epoch averaging gradients (after the wait; sharded update: the reduce-scatter); "
          "wait: waiting for the slower rank before it;\nupdate: the optimizer's step (sharded update: this "
          "process's chunk and the synchronisation after it; 1 x P: inside the native step)")
    print("\nAveraging a float32 buffer in place on", procs[0], "processes here: MPI_Allreduce (sum) and the "
          "shared-memory average; modelled MPI_Allreduce as min(log2(p)(a + n/b), 2 log2(p) a + 2(p-1)/p n/b)")
    heads = [f"{p}r {net.split()[0]}Gb/s" for p in MODEL_RANKS for net, _, _ in NETWORKS]
    print(f"{'message':>10} {'MPI ms':>9} {'shared ms':>10} " + " ".join(f"{h:>13}" for h in heads))
    for nbytes in MESSAGE_BYTES:
        here = measured.get(str(nbytes), measured.get(nbytes)) or [None, None]
        cells = [modelled_allreduce_s(nbytes, p, a, b) * 1e3 for p in MODEL_RANKS for _, a, b in NETWORKS]
        print(f"{nbytes / 1e6:8.2f}MB " + " ".join(f"{'' if v is None else f'{v * 1e3:.3f}':>{w}}"
                                                   for v, w in zip(here, (9, 10)))
              + " " + " ".join(f"{c:13.3f}" for c in cells))
    print("networks: " + "; ".join(f"{n}: a = {a * 1e6:g} us, b = {b * 8 / 1e9:g} Gb/s" for n, a, b in NETWORKS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
