"""Datasets: Dataset, IterableDataset, TensorDataset, Subset, ConcatDataset, random_split
(``torch.utils.data.dataset``).

A map-style dataset defines ``__getitem__(index)`` and ``__len__``. A dataset may
also define ``__getbatch__(indices)``: given an int64 NumPy array of indices it
returns exactly what ``default_collate([self[i] for i in indices])`` would, but
with one vectorised gather instead of one call per sample. The DataLoader uses it
whenever it collates with the default collate function. TensorDataset, Subset
(of such a dataset) and the MNIST datasets define it.

A subclass that overrides ``__getitem__`` (or ``__getitems__``) but not
``__getbatch__`` changes what a sample is, and the inherited batch method would
not see that; ``batch_fn`` then answers None and the DataLoader collates sample
by sample, as PyTorch does. A subclass that defines its own ``__getbatch__``
beside its ``__getitem__`` keeps the vectorised path.

fastmlp's own batch methods are also row-wise (marked with ``rowwise``): the batch of
a concatenation of index arrays is the concatenation of their batches, so
``fastmlp.train.fit`` may gather many batches with one call (``is_rowwise``). A
user's ``__getbatch__`` is not assumed to be (it may mix the rows of a batch).
"""
from __future__ import annotations

import bisect
import math
import numbers
from typing import Any, Callable, Generic, Iterator, List, Optional, Sequence, TypeVar, Union

import numpy as np

from ...creation import as_tensor
from ...random import Generator, _gen
from ...tensor import Tensor, _wrap
from .collate import collate

__all__ = ["Dataset", "IterableDataset", "TensorDataset", "Subset", "ConcatDataset", "random_split"]

T_co = TypeVar("T_co", covariant=True)

_SAMPLE_METHODS = ("__getitem__", "__getitems__")


def rowwise(fn: Callable) -> Callable:
    """Marks a ``__getbatch__`` whose rows depend only on their own index (see the module docstring)."""
    fn._fastmlp_rowwise = True  # type: ignore[attr-defined]
    return fn


def is_rowwise(dataset: Any) -> bool:
    """Whether the DataLoader's batches of `dataset` come from a row-wise batch method of fastmlp's."""
    if batch_fn(dataset) is None:
        return False
    if type(dataset).__getbatch__ is Subset.__getbatch__:
        return is_rowwise(dataset.dataset)
    return getattr(type(dataset).__getbatch__, "_fastmlp_rowwise", False)


def _rank(cls: type, name: str) -> Optional[int]:
    """Position in ``cls.__mro__`` of the class that defines `name` (None when none does)."""
    for i, klass in enumerate(cls.__mro__):
        if name in klass.__dict__:
            return i
    return None


def batch_fn(dataset: Any) -> Optional[Callable[[np.ndarray], Any]]:
    """The whole-batch function to use for `dataset`, or None to collate sample by sample.

    It is the dataset's ``__getbatch__`` unless the dataset's class overrides
    ``__getitem__`` or ``__getitems__`` below the class that provides
    ``__getbatch__`` (so the batch method would bypass the override). For a
    Subset, the inner dataset is resolved once here, not once per batch.
    """
    cls = type(dataset)
    provider = _rank(cls, "__getbatch__")
    if provider is None:
        return None
    for name in _SAMPLE_METHODS:
        definer = _rank(cls, name)
        if definer is not None and definer < provider:
            return None
    if cls.__getbatch__ is Subset.__getbatch__:
        return dataset._batch_fn()
    return dataset.__getbatch__


class Dataset(Generic[T_co]):
    """Base class of map-style datasets (``torch.utils.data.Dataset``).

    Subclasses define ``__getitem__`` and ``__len__``; ``a + b`` concatenates two datasets.
    """

    def __getitem__(self, index) -> T_co:
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __add__(self, other: "Dataset") -> "ConcatDataset":
        return ConcatDataset([self, other])


class IterableDataset(Dataset[T_co]):
    """A dataset that is a stream of samples (``torch.utils.data.IterableDataset``): define ``__iter__``."""

    def __iter__(self) -> Iterator[T_co]:
        raise NotImplementedError(f"{type(self).__name__} must define __iter__")

    def __add__(self, other):
        raise TypeError("IterableDataset does not support concatenation with +")


class TensorDataset(Dataset):
    """Samples are the i-th rows of the given tensors (``torch.utils.data.TensorDataset``).

    ``TensorDataset(X, y)[i]`` is ``(X[i], y[i])``. NumPy arrays are accepted and
    wrapped without copying. Batches are gathered with one index operation per tensor.
    """

    def __init__(self, *tensors) -> None:
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        ts = []
        for i, t in enumerate(tensors):
            if not isinstance(t, Tensor):
                try:
                    t = as_tensor(t)
                except TypeError as e:
                    raise TypeError(f"TensorDataset: argument {i} must be a tensor or an array; got "
                                    f"{type(t).__name__} ({e})") from None
            if t.dim() == 0:
                raise ValueError(f"TensorDataset: tensor {i} is 0-d; every tensor needs a first (sample) dimension")
            ts.append(t)
        n = ts[0].shape[0]
        for i, t in enumerate(ts):
            if t.shape[0] != n:
                raise ValueError("Size mismatch between tensors: TensorDataset needs the same first dimension for "
                                 f"all; tensor 0 has {n} rows, tensor {i} has {t.shape[0]} "
                                 f"(shapes {[list(x.shape) for x in ts]})")
        self.tensors = tuple(ts)
        self._arrays = tuple(t._data for t in ts)

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    @rowwise
    def __getbatch__(self, indices: np.ndarray) -> tuple:
        """The rows `indices` of every tensor: one gather each."""
        if self._arrays[0] is not self.tensors[0]._data:  # a tensor was moved or rebound since construction
            self._arrays = tuple(t._data for t in self.tensors)
        return tuple(_wrap(a[indices]) for a in self._arrays)

    def __len__(self) -> int:
        return self.tensors[0].shape[0]


class Subset(Dataset[T_co]):
    """The samples of `dataset` at `indices`, in that order (``torch.utils.data.Subset``)."""

    def __init__(self, dataset: Dataset[T_co], indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = indices
        arr = np.asarray(indices.numpy() if isinstance(indices, Tensor) else indices)
        if arr.size and arr.dtype.kind not in "iu":
            raise TypeError(f"Subset: indices must be integers; got {arr.dtype} values")
        self._indices = arr.astype(np.int64, copy=False).reshape(-1)

    def __getitem__(self, idx):
        if isinstance(idx, list):
            return [self.dataset[int(self._indices[i])] for i in idx]
        return self.dataset[int(self._indices[idx])]

    def __getbatch__(self, indices: np.ndarray):
        return self._batch_fn()(indices)

    def _batch_fn(self) -> Callable[[np.ndarray], Any]:
        """Indices into the subset -> the collated batch, through the inner dataset's batch function when
        it has one that agrees with its samples (see ``batch_fn``), else one ``dataset[i]`` per sample."""
        positions = self._indices
        dataset = self.dataset
        inner = batch_fn(dataset)
        if inner is not None:
            def gather(indices: np.ndarray):
                return inner(positions[indices])
            return gather

        def one_by_one(indices: np.ndarray):
            keys = positions[indices].tolist()
            return collate([dataset[i] for i in keys], keys)
        return one_by_one

    def __len__(self) -> int:
        return len(self._indices)


class ConcatDataset(Dataset[T_co]):
    """Several datasets one after the other (``torch.utils.data.ConcatDataset``)."""

    def __init__(self, datasets: Sequence[Dataset]) -> None:
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: datasets should not be an empty iterable")
        for d in self.datasets:
            if isinstance(d, IterableDataset):
                raise TypeError("ConcatDataset does not support IterableDataset")
        self.cumulative_sizes = list(np.cumsum([len(d) for d in self.datasets]).tolist())

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, idx: int):
        n = len(self)
        if idx < 0:
            if -idx > n:
                raise ValueError("absolute value of index should not exceed dataset length")
            idx = n + idx
        if idx >= n:
            raise IndexError(f"index {idx} is out of range for a ConcatDataset of length {n}")
        d = bisect.bisect_right(self.cumulative_sizes, idx)
        start = 0 if d == 0 else self.cumulative_sizes[d - 1]
        return self.datasets[d][idx - start]


def random_split(dataset: Dataset[T_co], lengths: Sequence[Union[int, float]],
                 generator: Optional[Generator] = None) -> List[Subset[T_co]]:
    """Split `dataset` at random into non-overlapping Subsets (``torch.utils.data.random_split``).

    `lengths` are either the subsets' sizes (summing to ``len(dataset)``) or
    fractions summing to 1; fractions are turned into sizes by flooring, and the
    samples left over go one each to the subsets in turn.
    """
    n = len(dataset)
    lengths = list(lengths)
    if not lengths:
        raise ValueError("random_split: lengths must not be empty")
    if math.isclose(sum(lengths), 1) and sum(lengths) <= 1 and any(not isinstance(x, numbers.Integral)
                                                                    for x in lengths):
        sizes = []
        for i, frac in enumerate(lengths):
            if not 0 <= frac <= 1:
                raise ValueError(f"random_split: fraction at index {i} is not between 0 and 1: {frac}")
            sizes.append(int(math.floor(n * frac)))
        for i in range(n - sum(sizes)):
            sizes[i % len(sizes)] += 1
        lengths = sizes
    for i, x in enumerate(lengths):
        if isinstance(x, bool) or not isinstance(x, numbers.Integral) or x < 0:
            raise ValueError(f"random_split: lengths must be non-negative integers or fractions summing to 1; "
                             f"got {x!r} at index {i}")
    if sum(lengths) != n:
        raise ValueError(f"Sum of input lengths does not equal the length of the input dataset! "
                         f"(lengths {lengths} sum to {sum(lengths)}; the dataset has {n} samples)")
    order = _gen(generator).np.permutation(n).astype(np.int64)
    out = []
    start = 0
    for size in lengths:
        out.append(Subset(dataset, order[start:start + int(size)].tolist()))
        start += int(size)
    return out
