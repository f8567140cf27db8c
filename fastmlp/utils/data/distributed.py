"""``DistributedSampler``: each process of a data-parallel job visits its own share of a data set
(``torch.utils.data.distributed.DistributedSampler``)."""
from __future__ import annotations

import math
import numbers
from typing import Iterator, Optional, Sized

import numpy as np

from . import sampler as _sampler
from .sampler import Sampler

__all__ = ["DistributedSampler"]


class DistributedSampler(Sampler[int]):
    """The indices of process `rank` of `num_replicas` (``torch.utils.data.distributed.DistributedSampler``).

    Each epoch the indices 0..len(dataset)-1 (shuffled with ``seed + epoch`` when
    `shuffle`, the same order on every process) are padded by repeating the first ones
    until they divide evenly — or, with `drop_last`, cut to the largest multiple of
    `num_replicas` — and process `rank` takes every `num_replicas`-th of them starting at
    `rank`. Every process thus sees ``len(self)`` samples and the shares are disjoint
    (apart from the padding). Call ``set_epoch(epoch)`` before each epoch for a new
    order (``fastmlp.train.fit`` does); without it every epoch repeats the same order.

    The shuffled order comes from fastmlp's generator, so it is not PyTorch's permutation
    for the same seed; everything else (sizes, padding, striding) is PyTorch's.

    Args:
        dataset: anything with ``len``.
        num_replicas: number of processes (default: ``fastmlp.distributed.get_world_size()``).
        rank: this process's rank (default: ``fastmlp.distributed.get_rank()``).
        shuffle: shuffle the indices each epoch.
        seed: the shuffling seed; must be the same on every process.
        drop_last: drop the tail that does not divide evenly instead of padding.
    """

    def __init__(self, dataset: Sized, num_replicas: Optional[int] = None, rank: Optional[int] = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> None:
        from ... import distributed as dist

        if num_replicas is None or rank is None:
            if not dist.is_initialized():
                raise RuntimeError("DistributedSampler: num_replicas and rank default to the process group's; "
                                   "call fastmlp.distributed.init_process_group() first, or pass both")
        if num_replicas is None:
            num_replicas = dist.get_world_size()
        if rank is None:
            rank = dist.get_rank()
        for name, value in (("num_replicas", num_replicas), ("rank", rank), ("seed", seed)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"DistributedSampler: {name} must be an int; got {value!r}")
        if num_replicas < 1:
            raise ValueError(f"DistributedSampler: num_replicas must be at least 1; got {num_replicas}")
        if rank >= num_replicas or rank < 0:
            raise ValueError(f"Invalid rank {rank}, rank should be in the interval [0, {num_replicas - 1}]")
        try:
            n = len(dataset)
        except TypeError:
            raise TypeError(f"DistributedSampler: dataset must have a length; got {type(dataset).__name__}") from None
        self.dataset = dataset
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.epoch = 0
        self.drop_last = bool(drop_last)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        if self.drop_last and n % self.num_replicas != 0:
            self.num_samples = math.ceil((n - self.num_replicas) / self.num_replicas)
        else:
            self.num_samples = math.ceil(n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas
        self._check_same_length(n)

    def _check_same_length(self, n: int) -> None:
        """Within an initialised group of num_replicas processes, every process must sample a data set
        of the same length (else the shares overlap or miss samples, and the ranks run different
        numbers of steps, which deadlocks their gradient averaging): one small allgather."""
        from ... import distributed as dist

        if not dist.is_initialized() or dist.get_world_size() != self.num_replicas or self.num_replicas == 1:
            return
        lengths = np.array([n], dtype=np.int64)
        low, high = lengths.copy(), lengths.copy()
        dist.all_reduce(low, dist.ReduceOp.MIN)
        dist.all_reduce(high, dist.ReduceOp.MAX)
        if low[0] != high[0]:
            raise ValueError(f"DistributedSampler: the dataset has {n} samples on rank {dist.get_rank()}, but its "
                             f"length differs between ranks (from {low[0]} to {high[0]}); every process must "
                             "sample the same data set")

    def _epoch_indices(self) -> np.ndarray:
        n = len(self.dataset)
        if self.shuffle:
            rng = np.random.Generator(np.random.PCG64((self.seed + self.epoch) & 0xFFFF_FFFF_FFFF_FFFF))
            indices = rng.permutation(n).astype(np.int64, copy=False)
        else:
            indices = np.arange(n, dtype=np.int64)
        if not self.drop_last:
            pad = self.total_size - n
            if pad > 0:
                indices = np.concatenate([indices, np.resize(indices, pad)]) if n else indices
        else:
            indices = indices[:self.total_size]
        return np.ascontiguousarray(indices[self.rank:self.total_size:self.num_replicas])

    def __iter__(self) -> Iterator[int]:
        return iter(self._epoch_indices().tolist())

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch the next order is drawn for (with shuffle, each epoch's order differs)."""
        self.epoch = epoch


# The DataLoader slices a whole epoch's index array instead of iterating (see sampler.epoch_indices).
_sampler._VECTOR_ITERS[DistributedSampler] = DistributedSampler.__iter__
