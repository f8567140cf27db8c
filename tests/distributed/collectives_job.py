"""MPI job for test_collectives.py: each rank runs the collectives and writes what it saw."""
import sys

import numpy as np

import fastmlp
import fastmlp.distributed as dist

out = sys.argv[1]
assert not dist.is_initialized()
dist.init_process_group()  # backend "mpi" by default
rank, size = dist.get_rank(), dist.get_world_size()
results = {"rank": np.array(rank), "size": np.array(size)}
base = np.arange(6, dtype=np.float32).reshape(2, 3)
for op in ("SUM", "AVG", "MAX", "MIN"):
    t = fastmlp.tensor(base * (rank + 1) - rank)
    view = t._data
    dist.all_reduce(t, getattr(dist.ReduceOp, op))
    assert t._data is view  # in place, in the tensor's own buffer
    results[op] = t.numpy().copy()
ints = np.array([rank + 1, 10 * rank], dtype=np.int64)
dist.all_reduce(ints)
results["ints"] = ints
b = fastmlp.tensor(np.full(4, float(rank + 7), dtype=np.float32))
dist.broadcast(b, src=size - 1)
results["broadcast"] = b.numpy().copy()
dist.barrier()
dist.destroy_process_group()
assert not dist.is_initialized()
np.savez(f"{out}/rank{rank}.npz", **results)
