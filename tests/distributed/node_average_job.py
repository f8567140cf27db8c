"""MPI job for test_node_average.py: each rank averages known buffers with NodeAverager and writes
what it got. argv: output folder, and how the ranks are grouped into "machines": `node` (the real
shared-memory split), `parity` (even and odd ranks as two machines) or `alone` (every rank its own)."""
import sys

import numpy as np
from mpi4py import MPI

from fastmlp.distributed.node_average import NodeAverager

out, grouping = sys.argv[1], sys.argv[2]
comm = MPI.COMM_WORLD
rank = comm.Get_rank()
node = {"node": None, "parity": comm.Split(rank % 2, rank), "alone": comm.Split(rank, rank)}[grouping]
LENGTHS = (1, 7, 17, 63, 65, 1001, 70001)  # the last spans several blocks of the averaging


def values(length: int, r: int) -> np.ndarray:
    """Rank r's contribution: spread over several orders of magnitude, so the order of the sums matters."""
    rng = np.random.default_rng(1000 * length + r)
    return (rng.standard_normal(length) * 10.0 ** rng.integers(-3, 4, length)).astype(np.float32)


results = {}
av = NodeAverager(comm, MPI, max(LENGTHS) + 5, np.float32, node=node)
results["shared"] = np.array(av.shared)
results["local"] = np.array(av.local)
for n in LENGTHS:
    if av.shared:  # a range of the slot, starting off a 64-byte boundary; the rest must stay as it was
        slot = av.slot
        slot[:] = -7.0
        slot[3:3 + n] = values(n, rank)
        av.average(slot[3:3 + n])
        results[f"slot{n}"] = slot[3:3 + n].copy()
        results[f"untouched{n}"] = np.concatenate([slot[:3], slot[3 + n:]])
    if av.shared:  # every process asks for the reduce-scatter: only its chunk of slot 0 is averaged
        slot = av.slot
        slot[:] = -7.0
        slot[3:3 + n] = values(n, rank)
        chunk = av.average(slot[3:3 + n], scatter=True)
        av._sync_node()  # (the caller's synchronisation after reading its chunk)
        results[f"chunk{n}"] = np.array(chunk)
        results[f"scattered{n}"] = av.slots[0][3:3 + n].copy()
        results[f"kept{n}"] = slot[3:3 + n].copy()
        av._sync_node()
        # only rank 0 asks: every process averages everything, as without scatter
        slot[3:3 + n] = values(n, rank)
        results[f"mixed_none{n}"] = np.array(av.average(slot[3:3 + n], scatter=rank == 0) is None)
        results[f"mixed{n}"] = slot[3:3 + n].copy()
    own = values(n, rank)  # a buffer of this process's own memory: MPI_Allreduce
    av.average(own)
    results[f"own{n}"] = own
# processes that average buffers of different lengths all get the same error
try:
    av.average(np.zeros(5 + rank, dtype=np.float32))
except ValueError as e:
    results["mismatch"] = np.array(str(e))
np.savez(f"{out}/rank{rank}.npz", **results)
