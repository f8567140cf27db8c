"""MPI job for test_ddp.py: data-parallel training with DistributedDataParallel and
DistributedSampler, eager loop or fit; rank 0 writes the final parameters and a checkpoint."""
import sys

import numpy as np

import fastmlp
import fastmlp.distributed as dist
from fastmlp import nn
from fastmlp.distributed import sharded_update
from fastmlp.nn.parallel import DistributedDataParallel
from fastmlp.train import EarlyStopping, ModelCheckpoint, fit
from fastmlp.utils.data import DataLoader, TensorDataset

import ddp_common as C

mode, opt_name, out = sys.argv[1], sys.argv[2], sys.argv[3]
if sys.argv[4:] == ["unsharded"]:  # fit's update as before: every process updates all the parameters
    sharded_update.enabled = False
dist.init_process_group("mpi")
rank = dist.get_rank()
x, y = C.data()
dataset = TensorDataset(fastmlp.from_numpy(x), fastmlp.from_numpy(y))
base = C.model()
if rank == 1:  # a different start on purpose: DDP must broadcast rank 0's parameters
    for p in base.parameters():
        p.data.mul_(3.0)
model = DistributedDataParallel(base)
opt = C.optimizer(opt_name, model.parameters())
loss_fn = nn.CrossEntropyLoss()
sampler = C.sampler(dataset, rank)
checksums = []


def spread(arrays) -> float:
    """max - min over the ranks of every rank's float64 sum of `arrays` (0: the same everywhere)."""
    s = np.array([sum(float(a.astype(np.float64).sum()) for a in arrays)])
    hi, lo = s.copy(), s.copy()
    dist.all_reduce(hi, dist.ReduceOp.MAX)
    dist.all_reduce(lo, dist.ReduceOp.MIN)
    return hi[0] - lo[0]


def checksum():
    """max - min over the ranks of the sum of the parameters."""
    return spread([p.detach().numpy() for p in model.parameters()])


if mode == "eager":
    for epoch in range(C.EPOCHS):
        sampler.set_epoch(epoch)
        for xb, yb in DataLoader(dataset, batch_size=C.BATCH, sampler=sampler):
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()
            opt.step()
        checksums.append(checksum())
    epochs_run = C.EPOCHS
elif mode in ("fit", "earlystop"):
    loader = DataLoader(dataset, batch_size=C.BATCH, sampler=sampler)
    cbs = [ModelCheckpoint(f"{out}/ckpt.safetensors", monitor="train_loss", save_best_only=False)]
    if mode == "earlystop" and rank == 1:  # only rank 1 wants to stop (a baseline no epoch beats)
        cbs.append(EarlyStopping(monitor="train_loss", patience=0, baseline=-1.0))

    class Checksums(fastmlp.train.Callback):
        def on_epoch_end(self, state, logs):
            checksums.append(checksum())

    history = fit(model, loss_fn, opt, loader, epochs=C.EPOCHS, callbacks=cbs + [Checksums()], progress=False)
    epochs_run = len(history)
    np.save(f"{out}/loss{rank}.npy", np.array(history["train_loss"], dtype=np.float64))
elif mode == "grads":
    # no optimizer, so no flat gradient buffer: the packed path; and gradient accumulation with
    # no_sync: the first backward keeps local gradients, the second averages the accumulated sum
    sampler.set_epoch(0)
    batches = iter(DataLoader(dataset, batch_size=C.BATCH, sampler=sampler))
    xa, ya = next(batches)
    xb, yb = next(batches)
    for p in model.parameters():  # gradients in arrays of their own, not views of one buffer
        p.grad = fastmlp.zeros(p.shape)
    with model.no_sync():
        loss_fn(model(xa), ya).backward()
    np.savez(f"{out}/local{rank}.npz", **{n: p.grad.numpy().copy() for n, p in model.module.named_parameters()})
    loss_fn(model(xb), yb).backward()
    np.savez(f"{out}/grads{rank}.npz", **{n: p.grad.numpy().copy() for n, p in model.module.named_parameters()})
    epochs_run = 0
else:
    raise SystemExit(f"unknown mode {mode}")

# the route the averaging took: the gradients in this process's slot of shared memory (fit moves
# the optimizer's gradient buffer there), or MPI_Allreduce over the process's own memory
av = model._averager
in_slot = av is not None and av.shared and all(av.offset_in_slot(p.grad._data.reshape(-1)) is not None
                                               for p in model.parameters())
np.save(f"{out}/in_slot{rank}.npy", np.array(in_slot))
sharded = model._sharded
np.save(f"{out}/sharded_steps{rank}.npy", np.array(0 if sharded is None else sharded.steps))
if mode == "fit":  # after fit: the same state and averaged gradients on every rank, in each rank's own memory
    np.savez(f"{out}/state{rank}.npz", **C.state_of(opt))
    np.savez(f"{out}/grads{rank}.npz", **{n: p.grad.numpy().copy() for n, p in model.module.named_parameters()})
    np.save(f"{out}/spreads{rank}.npy", np.array([spread(list(C.state_of(opt).values())),
                                                  spread([p.grad.numpy() for p in model.parameters()])]))
np.save(f"{out}/checksums{rank}.npy", np.array(checksums))
np.save(f"{out}/epochs{rank}.npy", np.array(epochs_run))
np.savez(f"{out}/params{rank}.npz", **{k: v.numpy() for k, v in model.module.state_dict().items()})
if mode == "fit":  # rank 0 changes a parameter and its optimizer state in place; rank 1's must not move
    first = next(iter(model.parameters()))
    state = next(v for k, v in opt.state[first].items() if k != "step")
    kept = [first.detach().numpy().copy(), state.numpy().copy()]
    dist.barrier()
    if rank == 0:
        first.data.add_(1.0)
        state.add_(1.0)
    dist.barrier()
    same = [np.array_equal(first.detach().numpy(), kept[0]), np.array_equal(state.numpy(), kept[1])]
    np.save(f"{out}/private{rank}.npy", np.array(same == [rank != 0] * 2))
dist.destroy_process_group()
