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

``num_workers > 0`` prefetches batches of the per-sample path on a pool of
``num_workers`` threads, ``prefetch_factor`` batches per thread ahead; batches
come back in sampler order and the sampler is drawn in the calling thread, so the
batches are identical to those of ``num_workers=0`` (as long as ``__getitem__``
and the transforms do not draw from the default random generator). Threads help
datasets that read files or decode in native code; the vectorised path needs no
workers and runs in-process. ``pin_memory`` is accepted and has no effect.
"""
from __future__ import annotations

import collections
import itertools
import numbers
from typing import Any, Callable, Generic, Iterable, Iterator, Optional, Sequence, TypeVar

import numpy as np

from ...random import Generator
from .collate import collate, default_collate, default_convert
from .dataset import Dataset, IterableDataset, batch_fn, is_rowwise
from .sampler import BatchSampler, RandomSampler, SequentialSampler, _check_positive_int, index_batches

__all__ = ["DataLoader", "get_worker_info"]

T_co = TypeVar("T_co", covariant=True)


def get_worker_info() -> None:
    """Always None: datasets are read in the calling process (``torch.utils.data.get_worker_info``)."""
    return None


class DataLoader(Generic[T_co]):
    """Iterate over `dataset` in batches (``torch.utils.data.DataLoader``).

    Args:
        dataset: a map-style Dataset (``__getitem__``/``__len__``) or an IterableDataset.
        batch_size: samples per batch (default 1); None disables batching.
        shuffle: a new random order every epoch (from `generator`, else the default generator).
        sampler: the order of the indices (excludes `shuffle`).
        batch_sampler: yields lists of indices (excludes batch_size, shuffle, sampler, drop_last).
        num_workers: threads that prefetch batches of per-sample datasets (see the module docstring).
        collate_fn: turns a list of samples into a batch (default: ``default_collate``).
        drop_last: drop the last batch when it is smaller than batch_size.
        generator: the ``fastmlp.Generator`` that RandomSampler draws from when shuffling.
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
        return _DataLoaderIter(self._batches(), self)

    # ---- how batches are made ----------------------------------------------------------------
    def _batches(self) -> Iterator:
        ds = self.dataset
        if isinstance(ds, IterableDataset):
            yield from self._stream_batches()
            return
        if self.batch_sampler is None:  # batch_size=None: one converted sample at a time
            convert = self.collate_fn
            for i in self.sampler:  # type: ignore[union-attr]
                yield convert(ds[i])
            return
        batches = index_batches(self.batch_sampler)
        getbatch = batch_fn(ds) if self.collate_fn is default_collate else None
        if getbatch is not None:
            yield from self._vectorised(batches, getbatch)
            return
        fetch = self._fetcher()
        if self.num_workers > 0:
            yield from self._prefetched(batches, fetch)
            return
        for idx in batches:
            yield fetch(idx)

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
        ds = self.dataset
        collate_fn = self.collate_fn
        getitems = getattr(ds, "__getitems__", None)

        def samples(keys: list) -> list:
            return getitems(keys) if getitems is not None else [ds[i] for i in keys]

        if collate_fn is default_collate:
            def fetch(idx):
                keys = idx.tolist() if isinstance(idx, np.ndarray) else list(idx)
                return collate(samples(keys), keys)
        else:
            def fetch(idx):
                keys = idx.tolist() if isinstance(idx, np.ndarray) else list(idx)
                return collate_fn(samples(keys))
        return fetch

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

    def _prefetched(self, batches: Iterable, fetch: Callable) -> Iterator:
        from concurrent.futures import ThreadPoolExecutor
        from concurrent.futures import TimeoutError as FutureTimeout

        ids = itertools.count()
        init = self.worker_init_fn
        pool = ThreadPoolExecutor(max_workers=self.num_workers, thread_name_prefix="fastmlp-dataloader",
                                  initializer=(lambda: init(next(ids))) if init is not None else None)
        depth = self.num_workers * int(self.prefetch_factor or 2)
        timeout = self.timeout or None
        pending: collections.deque = collections.deque()

        def take():
            try:
                return pending.popleft().result(timeout=timeout)
            except FutureTimeout:
                raise RuntimeError(f"DataLoader timed out after {self.timeout} seconds") from None

        try:
            for idx in batches:
                pending.append(pool.submit(fetch, idx))
                if len(pending) >= depth:
                    yield take()
            while pending:
                yield take()
        finally:
            for f in pending:
                f.cancel()
            pool.shutdown(wait=False)

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
