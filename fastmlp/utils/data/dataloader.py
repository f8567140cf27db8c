"""``DataLoader``: batches from a dataset in sampler order (``torch.utils.data.DataLoader``).

Same arguments, defaults and argument checks as PyTorch's. How a batch is made:

* If the dataset defines ``__getbatch__`` (TensorDataset, the MNIST datasets, a
  Subset of them), its class does not override ``__getitem__`` (or
  ``__getitems__``) below the class that provides ``__getbatch__`` (see
  ``dataset.batch_fn``; decided once per iteration), and the default collate
  function is used, the batch's indices
  go to it as one int64 array and it gathers the whole batch with one vectorised
  index operation. The epoch's order comes from the sampler as one array, so the
  per-batch cost is a slice, the gather and two tensor wrappers.
* Otherwise each sample is fetched with ``dataset[i]`` (or the whole list with
  the dataset's ``__getitems__(indices)``, as PyTorch does) and the list is
  collated (``default_collate`` unless ``collate_fn`` is given).

``num_workers > 0`` runs the per-sample path (``__getitem__``/``__getitems__`` and
the collate function) in that many worker processes (see ``worker.py``): batches come
back through shared memory in sampler order, so they are those of ``num_workers=0``
as long as the dataset draws no random numbers. The vectorised path stays in the
calling process, where one gather is cheaper than a copy between processes.
``pin_memory=True`` puts batches in page-locked host memory when a CUDA device is
usable (``pin_memory.py``), and changes nothing otherwise.
"""
from __future__ import annotations

import itertools
import numbers
from typing import Any, Callable, Generic, Iterable, Iterator, Optional, Sequence, TypeVar

import numpy as np

from ...random import Generator
from .collate import default_collate, default_convert
from .dataset import Dataset, IterableDataset, batch_fn, is_rowwise
from .fetch import make_fetch
from .pin_memory import pinner
from .sampler import BatchSampler, RandomSampler, SequentialSampler, _check_positive_int, index_batches
from .worker import WorkerInfo, _SharedCores, _WorkerPool, base_seed, get_worker_info, worker_spec

__all__ = ["DataLoader", "WorkerInfo", "get_worker_info"]

T_co = TypeVar("T_co", covariant=True)


class DataLoader(Generic[T_co]):
    """Iterate over `dataset` in batches (``torch.utils.data.DataLoader``).

    Args:
        dataset: a map-style Dataset (``__getitem__``/``__len__``) or an IterableDataset.
        batch_size: samples per batch (default 1); None disables batching.
        shuffle: a new random order every epoch (from `generator`, else the default generator).
        sampler: the order of the indices (excludes `shuffle`).
        batch_sampler: yields lists of indices (excludes batch_size, shuffle, sampler, drop_last).
        num_workers: worker processes that fetch and collate batches of per-sample datasets
            (see the module docstring); 0 reads them in the calling process.
        collate_fn: turns a list of samples into a batch (default: ``default_collate``).
        drop_last: drop the last batch when it is smaller than batch_size.
        timeout: seconds to wait for a batch from the workers before raising (0: no limit).
        worker_init_fn: called as ``worker_init_fn(worker_id)`` in each worker once it is seeded.
        multiprocessing_context: how workers start: None (the platform's default), "fork",
            "spawn", "forkserver", or a context from ``multiprocessing.get_context``.
        generator: the ``fastmlp.Generator`` that RandomSampler draws from when shuffling, and
            the workers' base seed.
        prefetch_factor: batches in flight per worker (default 2 with workers).
        persistent_workers: keep the workers (and their dataset copies) from one pass to the next.
        pin_memory: batches in page-locked host memory for fast copies to a CUDA device (without
            one, nothing changes).
    """

    def __init__(self, dataset: Dataset[T_co], batch_size: Optional[int] = 1, shuffle: Optional[bool] = None,
                 sampler: Optional[Iterable] = None, batch_sampler: Optional[Iterable[Sequence]] = None,
                 num_workers: int = 0, collate_fn: Optional[Callable[[list], Any]] = None, pin_memory: bool = False,
                 drop_last: bool = False, timeout: float = 0, worker_init_fn: Optional[Callable[[int], None]] = None,
                 multiprocessing_context=None, generator: Optional[Generator] = None, *,
                 prefetch_factor: Optional[int] = None, persistent_workers: bool = False,
                 pin_memory_device: str = "") -> None:
        if isinstance(num_workers, bool) or not isinstance(num_workers, numbers.Integral) or num_workers < 0:
            raise ValueError(f"num_workers option should be non-negative; use num_workers=0 to disable "
                             f"prefetching (got num_workers={num_workers!r})")
        if timeout < 0:
            raise ValueError(f"timeout option should be non-negative; got timeout={timeout!r}")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("prefetch_factor option could only be specified with num_workers > 0; set "
                             "prefetch_factor to None or num_workers > 0")
        if num_workers > 0 and prefetch_factor is None:
            prefetch_factor = 2
        if prefetch_factor is not None and (isinstance(prefetch_factor, bool) or prefetch_factor < 1):
            raise ValueError(f"prefetch_factor should be a positive integer; got prefetch_factor={prefetch_factor!r}")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")
        if multiprocessing_context is not None and num_workers == 0:
            raise ValueError(f"multiprocessing_context can only be used with multi-process loading (num_workers > "
                             f"0), but got num_workers={num_workers}")
        if isinstance(multiprocessing_context, str):
            import multiprocessing

            if multiprocessing_context not in multiprocessing.get_all_start_methods():
                raise ValueError(f"multiprocessing_context relies on Python's multiprocessing module; expected one "
                                 f"of {multiprocessing.get_all_start_methods()}, got {multiprocessing_context!r}")
        if worker_init_fn is not None and not callable(worker_init_fn):
            raise TypeError(f"worker_init_fn must be callable; got {type(worker_init_fn).__name__}")

        if isinstance(dataset, IterableDataset):
            if shuffle not in (False, None):
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified shuffle option, but got "
                                 f"shuffle={shuffle}")
            if sampler is not None:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified sampler option, but got "
                                 f"sampler={sampler}")
            if batch_sampler is not None:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified batch_sampler option, but "
                                 f"got batch_sampler={batch_sampler}")
            if batch_size is not None:
                _check_positive_int("batch_size", batch_size)
        else:
            shuffle = bool(shuffle)
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, "
                                 "and drop_last")
            batch_size = None
            drop_last = False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually exclusive with drop_last")

        if not isinstance(dataset, IterableDataset):
            if sampler is None:
                sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
            if batch_size is not None and batch_sampler is None:
                batch_sampler = BatchSampler(sampler, batch_size, drop_last)

        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.num_workers = int(num_workers)
        self.prefetch_factor = prefetch_factor
        self.pin_memory = pin_memory
        self.pin_memory_device = pin_memory_device
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        self.persistent_workers = persistent_workers
        self.generator = generator
        self._pool: Optional[_WorkerPool] = None  # the persistent workers, once started
        self._user_collate = collate_fn is not None
        if collate_fn is None:
            collate_fn = default_collate if self._auto_collation else default_convert
        self.collate_fn = collate_fn

    @property
    def _auto_collation(self) -> bool:
        return self.batch_sampler is not None or (isinstance(self.dataset, IterableDataset)
                                                  and self.batch_size is not None)

    def __len__(self) -> int:
        if isinstance(self.dataset, IterableDataset):
            n = len(self.dataset)  # type: ignore[arg-type]
            if self.batch_size is None:
                return n
            return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        if self.batch_sampler is not None:
            return len(self.batch_sampler)  # type: ignore[arg-type]
        return len(self.sampler)  # type: ignore[arg-type]

    def __iter__(self) -> "_DataLoaderIter":
        batches = self._batches()
        if self.pin_memory:
            pin = pinner()
            if pin is not None:
                batches = map(pin, batches)
        return _DataLoaderIter(batches, self)

    # ---- how batches are made ----------------------------------------------------------------
    def _batches(self) -> Iterator:
        ds = self.dataset
        if isinstance(ds, IterableDataset):
            if self.num_workers > 0:
                yield from self._in_workers(None)
                return
            yield from self._stream_batches()
            return
        if self.batch_sampler is None:  # batch_size=None: one converted sample at a time
            if self.num_workers > 0:
                yield from self._in_workers(iter(self.sampler))  # type: ignore[arg-type]
                return
            fetch_one = make_fetch(ds, self.collate_fn, False)
            for i in self.sampler:  # type: ignore[union-attr]
                yield fetch_one(i)
            return
        batches = index_batches(self.batch_sampler)
        getbatch = batch_fn(ds) if self.collate_fn is default_collate else None
        if getbatch is not None:
            yield from self._vectorised(batches, getbatch)
            return
        if self.num_workers > 0:
            yield from self._in_workers(batches)
            return
        fetch = self._fetcher()
        for idx in batches:
            yield fetch(idx)

    def _in_workers(self, tasks: Optional[Iterable]) -> Iterator:
        """The batches of `tasks` (batch keys; None: the workers' IterableDataset streams) from the
        worker processes; they stop at the end of the pass unless persistent, and on any error."""
        pool = self._pool
        if pool is None or pool.closed:
            if tasks is not None:
                # The sampler draws this pass's order before the workers' base seed is drawn from the
                # same generator, so the batches are those of num_workers=0.
                tasks = iter(tasks)
                first = next(tasks, None)
                if first is None:
                    return
                tasks = itertools.chain((first,), tasks)
            pool = _WorkerPool(self, worker_spec(self), base_seed(self.generator))
            if self.persistent_workers:
                self._pool = pool
        try:
            with _SharedCores(self.num_workers):  # the training step leaves the workers their cores
                yield from pool.run(tasks if tasks is not None else (), streaming=tasks is None)
        except GeneratorExit:  # the iterator was dropped part-way: persistent workers stay for the next pass
            if not self.persistent_workers:
                pool.shutdown()
            raise
        except BaseException:  # an error or Ctrl-C stops every worker
            pool.shutdown()
            if self._pool is pool:
                self._pool = None
            raise
        if not self.persistent_workers:
            pool.shutdown()

    def _row_chunks(self, max_rows: int) -> Optional[Iterator]:
        """For ``fastmlp.train.fit``: this pass's batches, several at a time, or None when its batches
        are not row-wise gathers of fastmlp's (see ``is_rowwise``).

        Yields ``(batch, sizes)``: the collated batch of the concatenated index batches of
        consecutive steps (at most `max_rows` rows, and always at least one batch), with
        ``sizes`` the row count of each; the batches are exactly those iteration would
        give, drawn from the same sampler. A batch of non-integer keys, or an empty one,
        comes alone with ``sizes`` None.
        """
        ds = self.dataset
        if isinstance(ds, IterableDataset) or self.batch_sampler is None or self.collate_fn is not default_collate:
            return None
        if not is_rowwise(ds):
            return None
        return self._chunked(index_batches(self.batch_sampler), batch_fn(ds), max_rows)

    def _chunked(self, batches: Iterable, getbatch: Callable, max_rows: int) -> Iterator:
        fetch = self._fetcher()
        pending: list = []
        rows = 0
        for idx in batches:
            if type(idx) is not np.ndarray:
                arr = np.asarray(idx)
                if arr.ndim == 1 and arr.dtype.kind in "iu":
                    idx = arr.astype(np.int64, copy=False)
            alone = type(idx) is not np.ndarray or len(idx) == 0
            if pending and (alone or rows + len(idx) > max_rows):
                yield getbatch(np.concatenate(pending)), [len(p) for p in pending]
                pending, rows = [], 0
            if alone:
                yield (getbatch(idx) if type(idx) is np.ndarray else fetch(idx)), None
                continue
            pending.append(idx)
            rows += len(idx)
        if pending:
            yield getbatch(np.concatenate(pending)), [len(p) for p in pending]

    def _vectorised(self, batches: Iterable, getbatch: Callable) -> Iterator:
        ndarray = np.ndarray
        fetch = self._fetcher()
        for idx in batches:
            if type(idx) is not ndarray:
                arr = np.asarray(idx)
                if arr.ndim != 1 or arr.dtype.kind not in "iu":
                    yield fetch(idx)
                    continue
                idx = arr.astype(np.int64, copy=False)
            yield getbatch(idx)

    def _fetcher(self) -> Callable:
        """Batch keys -> collated batch, one sample at a time (or through PyTorch's ``__getitems__``)."""
        return make_fetch(self.dataset, self.collate_fn, True)

    def _stream_batches(self) -> Iterator:
        it = iter(self.dataset)
        collate_fn = self.collate_fn
        if self.batch_size is None:
            for sample in it:
                yield collate_fn(sample)
            return
        while True:
            batch = list(itertools.islice(it, self.batch_size))
            if not batch or (len(batch) < self.batch_size and self.drop_last):
                return
            yield collate_fn(batch)

    def __repr__(self) -> str:
        return (f"DataLoader(dataset={type(self.dataset).__name__} of {_len_or_q(self.dataset)}, "
                f"batch_size={self.batch_size}, sampler={type(self.sampler).__name__}, "
                f"num_workers={self.num_workers})")


def _len_or_q(ds) -> str:
    try:
        return str(len(ds))
    except TypeError:
        return "?"


class _DataLoaderIter:
    """The iterator of one pass over a DataLoader; ``len()`` is the number of batches."""

    __slots__ = ("_next", "_loader")

    def __init__(self, gen: Iterator, loader: DataLoader) -> None:
        self._next = gen.__next__
        self._loader = loader

    def __iter__(self) -> "_DataLoaderIter":
        return self

    def __next__(self):
        return self._next()

    next = __next__  # older tutorials call dataiter.next()

    def __len__(self) -> int:
        return len(self._loader)
