"""What ``fastmlp.train.fit`` does differently when it trains one model over several processes.

``fit`` asks ``fit_group(model)`` once; None (a single process, the usual case) leaves every
line of the single-process loop as it is. Otherwise: only rank 0 shows progress bars and
runs the callbacks that write (checkpoints, epoch logs); the epoch's loss, sample count and
validation metrics are summed over the ranks, so every rank logs the same numbers; and the
decision to stop early is taken by all ranks together. ``set_epoch`` of a DistributedSampler is
called before every epoch in every case (as a PyTorch training loop does by hand).
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .process_group import _Group, is_initialized


def fit_group(model: Any) -> Optional[_Group]:
    """The process group fit trains `model` over: the default group when `model` is a
    DistributedDataParallel and the group has several processes; else None, an ordinary fit of
    this process's own model (each rank of a hyper-parameter sweep training its own, say)."""
    from ..nn.parallel import DistributedDataParallel
    from . import process_group

    if not is_initialized() or process_group._group.size == 1 or not isinstance(model, DistributedDataParallel):
        return None
    return process_group._group


def unwrap(model: Any) -> Any:
    """The model a DistributedDataParallel wraps (what fit's callbacks see and checkpoint, so the
    files load into a single-process model), or `model` itself."""
    from ..nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


def set_epoch(loader: Any, epoch: int) -> None:
    """``sampler.set_epoch(epoch)`` for a loader drawing from a DistributedSampler (epochs count from 0)."""
    from ..utils.data.distributed import DistributedSampler

    for sampler in (getattr(loader, "sampler", None), getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
            return


def callbacks_for_rank(callbacks: list, group: _Group) -> list:
    """The callbacks this rank runs: rank 0 all of them; the others all but those that write
    files or print epoch lines (ModelCheckpoint, EpochLogger)."""
    if group.rank == 0:
        return callbacks
    from ..train.callbacks import EpochLogger, ModelCheckpoint

    return [cb for cb in callbacks if not isinstance(cb, (ModelCheckpoint, EpochLogger))]


def sum_over_ranks(group: _Group, *values: float) -> list:
    """The sums over all ranks of a few numbers (float64), the same on every rank."""
    buf = np.array(values, dtype=np.float64)
    group.comm.Allreduce(group.mpi.IN_PLACE, buf, op=group.mpi.SUM)
    return buf.tolist()


def reduce_validation(group: _Group, result: Any) -> tuple:
    """(loss, accuracy) of per-rank validation results, weighted by each rank's sample count
    (a validation loader that is not split over the ranks gives every rank the same values)."""
    n = float(result.samples)
    has_acc = result.accuracy is not None
    loss_sum, acc_sum, total = sum_over_ranks(group, (result.loss or 0.0) * n,
                                              (result.accuracy or 0.0) * n if has_acc else 0.0, n)
    if total == 0:
        return result.loss, result.accuracy
    return loss_sum / total, (acc_sum / total if has_acc else None)


def any_rank(group: _Group, flag: bool) -> bool:
    """Whether `flag` is true on any rank (so e.g. early stopping ends every rank at the same epoch)."""
    return sum_over_ranks(group, 1.0 if flag else 0.0)[0] > 0
