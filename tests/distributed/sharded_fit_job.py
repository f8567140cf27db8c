"""MPI job for test_sharded_update.py: fit with DistributedDataParallel over 2 to 4 processes, the
optimizer update sharded or not, the processes grouped into "machines" as asked; each rank writes
its final parameters, optimizer state and gradients. argv: output folder, grouping (`node`: the
real shared-memory split; `parity`: even and odd ranks as two machines), optimizer name, `sharded`
or `unsharded`, and whether every rank takes an eager step in the middle of the first epoch
(`eager`) or not (`native`)."""
import sys

import numpy as np
from mpi4py import MPI

import fastmlp
import fastmlp.distributed as dist
import fastmlp.nn.parallel.distributed as ddp_module
from fastmlp import nn
from fastmlp.distributed import sharded_update
from fastmlp.nn.parallel import DistributedDataParallel
from fastmlp.train import fit

import ddp_common as C

out, grouping, opt_name, how, eager = sys.argv[1:6]
sharded_update.enabled = how == "sharded"
dist.init_process_group()
comm = MPI.COMM_WORLD
rank, world = comm.Get_rank(), comm.Get_size()
if grouping == "parity":  # two "machines" on this one: DDP's averager gets this split as its node
    node = comm.Split(rank % 2, rank)
    real = ddp_module.NodeAverager
    ddp_module.NodeAverager = lambda comm_, mpi, length, dtype: real(comm_, mpi, length, dtype, node=node)

x, y = C.data()
model = DistributedDataParallel(C.model())
opt = C.optimizer(opt_name, model.parameters())


class Batches:
    """This rank's share of each epoch in batches of C.BATCH rows; with `eager`, the second batch of the
    first epoch has int32 labels, which fit's native step does not take (an eager step)."""

    def __init__(self):
        self.epoch = 0

    def __iter__(self):
        order = np.random.default_rng(100 + self.epoch).permutation(C.SAMPLES)
        share = order[rank::world]
        odd = eager == "eager"
        for k, at in enumerate(range(0, len(share) - C.BATCH + 1, C.BATCH)):
            idx = share[at:at + C.BATCH]
            labels = y[idx].astype(np.int32) if (odd and self.epoch == 0 and k == 1) else y[idx]
            yield fastmlp.from_numpy(x[idx]), fastmlp.from_numpy(labels)
        self.epoch += 1

    def __len__(self):
        return (C.SAMPLES // world) // C.BATCH


fit(model, nn.CrossEntropyLoss(), opt, Batches(), epochs=2, progress=False)
sharded = model._sharded
np.save(f"{out}/steps{rank}.npy", np.array(0 if sharded is None else sharded.steps))
np.savez(f"{out}/params{rank}.npz", **C.params_of(model.module))
np.savez(f"{out}/state{rank}.npz", **C.state_of(opt))
np.savez(f"{out}/grads{rank}.npz", **{n: p.grad.numpy().copy() for n, p in model.module.named_parameters()})
dist.destroy_process_group()
