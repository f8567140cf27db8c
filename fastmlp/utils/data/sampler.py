"""Samplers: the order in which a DataLoader visits a dataset (``torch.utils.data.sampler``).

``SequentialSampler``, ``RandomSampler``, ``SubsetRandomSampler``,
``WeightedRandomSampler`` and ``BatchSampler`` behave as their PyTorch namesakes
(same arguments, checks and iteration results: Python ints, or lists of them).
Randomness comes from a ``fastmlp.Generator`` — the default one unless a
``generator`` is given — so ``fastmlp.manual_seed`` makes the order reproducible.

Besides iterating, the built-in samplers can hand over a whole epoch's order as
one int64 array (``_epoch_indices``); the DataLoader slices it into batches, so a
batch costs no Python work per sample.
"""
from __future__ import annotations

import numbers
from typing import Generic, Iterable, Iterator, Optional, Sequence, Sized, TypeVar

import numpy as np

from ...random import Generator, _gen

__all__ = ["Sampler", "SequentialSampler", "RandomSampler", "SubsetRandomSampler", "WeightedRandomSampler",
           "BatchSampler"]

T_co = TypeVar("T_co", covariant=True)


class Sampler(Generic[T_co]):
    """Base class of samplers (``torch.utils.data.Sampler``): subclasses define ``__iter__``
    (and usually ``__len__``)."""

    def __init__(self, data_source: Optional[Sized] = None) -> None:
        pass

    def __iter__(self) -> Iterator[T_co]:
        raise NotImplementedError(f"{type(self).__name__} must define __iter__")


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{name} should be a positive integer value, but got {name}={value!r}")
    return int(value)


def _check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} should be a boolean value, but got {name}={value!r}")
    return value


class SequentialSampler(Sampler[int]):
    """0, 1, ..., len(data_source) - 1 (``torch.utils.data.SequentialSampler``)."""

    def __init__(self, data_source: Sized) -> None:
        self.data_source = data_source

    def _epoch_indices(self) -> np.ndarray:
        return np.arange(len(self.data_source), dtype=np.int64)

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


class RandomSampler(Sampler[int]):
    """A random permutation of the dataset's indices each epoch (``torch.utils.data.RandomSampler``).

    With ``replacement=True``, ``num_samples`` indices drawn independently; without
    it, ``num_samples`` (default: the dataset's length) may exceed the length, in
    which case whole permutations are concatenated.
    """

    def __init__(self, data_source: Sized, replacement: bool = False, num_samples: Optional[int] = None,
                 generator: Optional[Generator] = None) -> None:
        self.data_source = data_source
        self.replacement = _check_bool("replacement", replacement)
        self._num_samples = num_samples
        self.generator = generator
        if num_samples is not None:
            _check_positive_int("num_samples", num_samples)
        elif len(data_source) == 0:
            raise ValueError("num_samples should be a positive integer value, but got num_samples=0 "
                             "(RandomSampler was given an empty dataset)")

    @property
    def num_samples(self) -> int:
        return len(self.data_source) if self._num_samples is None else int(self._num_samples)

    def _epoch_indices(self) -> np.ndarray:
        n = len(self.data_source)
        if n == 0:
            raise ValueError("RandomSampler: the dataset is empty, so there is nothing to sample")
        rng = _gen(self.generator).np
        count = self.num_samples
        if self.replacement:
            return rng.integers(0, n, size=count, dtype=np.int64)
        if count == n:
            return rng.permutation(n).astype(np.int64, copy=False)
        parts = [rng.permutation(n) for _ in range(count // n)]
        parts.append(rng.permutation(n)[:count % n])
        return np.concatenate(parts).astype(np.int64, copy=False)

    def __iter__(self) -> Iterator[int]:
        return iter(self._epoch_indices().tolist())

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(Sampler[int]):
    """The given indices in a random order each epoch (``torch.utils.data.SubsetRandomSampler``)."""

    def __init__(self, indices: Sequence[int], generator: Optional[Generator] = None) -> None:
        self.indices = indices
        self.generator = generator
        arr = np.asarray(indices)
        if arr.size and arr.dtype.kind not in "iu":
            raise TypeError(f"SubsetRandomSampler: indices must be integers; got {arr.dtype} values")
        if arr.ndim != 1:
            raise ValueError(f"SubsetRandomSampler: indices must be a 1-d sequence; got shape {list(arr.shape)}")
        self._indices = arr.astype(np.int64, copy=False)

    def _epoch_indices(self) -> np.ndarray:
        return self._indices[_gen(self.generator).np.permutation(len(self._indices))]

    def __iter__(self) -> Iterator[int]:
        return iter(self._epoch_indices().tolist())

    def __len__(self) -> int:
        return len(self._indices)


class WeightedRandomSampler(Sampler[int]):
    """Indices 0..len(weights)-1 drawn with probabilities proportional to `weights`
    (``torch.utils.data.WeightedRandomSampler``)."""

    def __init__(self, weights: Sequence[float], num_samples: int, replacement: bool = True,
                 generator: Optional[Generator] = None) -> None:
        _check_positive_int("num_samples", num_samples)
        _check_bool("replacement", replacement)
        w = np.asarray(weights.numpy() if hasattr(weights, "numpy") else weights, dtype=np.float64)
        if w.ndim != 1:
            raise ValueError(f"weights should be a 1-d sequence but given weights have shape {tuple(w.shape)}")
        if w.size == 0 or np.any(w < 0) or not np.all(np.isfinite(w)) or w.sum() <= 0:
            raise ValueError("weights must be finite, non-negative and not all zero")
        if not replacement and num_samples > np.count_nonzero(w):
            raise ValueError(f"cannot draw {num_samples} samples without replacement from "
                             f"{np.count_nonzero(w)} non-zero weights")
        self.weights = w
        self.num_samples = int(num_samples)
        self.replacement = replacement
        self.generator = generator

    def _epoch_indices(self) -> np.ndarray:
        rng = _gen(self.generator).np
        p = self.weights / self.weights.sum()
        return rng.choice(len(p), size=self.num_samples, replace=self.replacement, p=p).astype(np.int64)

    def __iter__(self) -> Iterator[int]:
        return iter(self._epoch_indices().tolist())

    def __len__(self) -> int:
        return self.num_samples


class BatchSampler(Sampler[list]):
    """Groups another sampler's indices into lists of `batch_size` (``torch.utils.data.BatchSampler``).

    The last, shorter batch is kept unless ``drop_last=True``.
    """

    def __init__(self, sampler: Iterable[int], batch_size: int, drop_last: bool) -> None:
        self.sampler = sampler
        self.batch_size = _check_positive_int("batch_size", batch_size)
        if not isinstance(drop_last, bool):
            raise ValueError(f"drop_last should be a boolean value, but got drop_last={drop_last!r}")
        self.drop_last = drop_last

    def __iter__(self) -> Iterator[list]:
        for idx in self._index_batches():
            yield idx.tolist() if isinstance(idx, np.ndarray) else idx

    def _index_batches(self) -> Iterator:
        """The epoch's batches: int64 array views into one array when the sampler can give its whole
        epoch at once, else lists of whatever the sampler yields."""
        order = epoch_indices(self.sampler)
        bs = self.batch_size
        if order is not None:
            n = len(order)
            stop = n - n % bs if self.drop_last else n
            for start in range(0, stop, bs):
                yield order[start:start + bs]
            return
        batch: list = []
        for i in self.sampler:
            batch.append(i)
            if len(batch) == bs:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self) -> int:
        n = len(self.sampler)  # type: ignore[arg-type]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


# The samplers whose iteration is exactly their _epoch_indices (a subclass that overrides
# __iter__ changes the order, so it is iterated instead).
_VECTOR_ITERS = {cls: cls.__iter__ for cls in (SequentialSampler, RandomSampler, SubsetRandomSampler,
                                               WeightedRandomSampler)}


def epoch_indices(sampler) -> Optional[np.ndarray]:
    """The sampler's whole epoch as one int64 array, or None when it has to be iterated."""
    it = type(sampler).__iter__
    for cls, fn in _VECTOR_ITERS.items():
        if it is fn and isinstance(sampler, cls):
            return sampler._epoch_indices()
    return None


def index_batches(batch_sampler) -> Iterable:
    """The batches of a batch sampler: int64 arrays from a BatchSampler, else whatever it yields."""
    if type(batch_sampler).__iter__ is BatchSampler.__iter__ and isinstance(batch_sampler, BatchSampler):
        return batch_sampler._index_batches()
    return batch_sampler
