"""Turning a list of samples into one batch (``torch.utils.data.default_collate``).

The rules are PyTorch's: tensors and NumPy arrays are stacked along a new first
dimension; Python ints become an int64 tensor, floats a float64 tensor, bools a
bool tensor; strings stay a list; tuples, lists, named tuples and dicts are
collated field by field, recursively (tuples and lists into a list, as in
PyTorch). Samples whose shapes differ raise a ValueError naming the sample and
both shapes.
"""
from __future__ import annotations

import collections.abc
import numbers
from typing import Any, Optional, Sequence

import numpy as np

from ... import _C
from ...backend import for_array
from ...tensor import Tensor, _wrap

__all__ = ["default_collate", "default_convert"]


def _where(pos: int, keys: Optional[Sequence]) -> str:
    if keys is None:
        return f"sample {pos} of the batch"
    return f"sample {pos} of the batch (dataset index {keys[pos]!r})"


def _stack_arrays(arrays: list, batch: Sequence, keys: Optional[Sequence], what: str):
    first = arrays[0].shape
    for pos, a in enumerate(arrays):
        if a.shape != first:
            raise ValueError(f"default_collate: {_where(pos, keys)} has {what} of shape {list(a.shape)} but "
                             f"{_where(0, keys)} has shape {list(first)}; every sample in a batch must have the same "
                             "shape (pad or resize them in the dataset or a transform, or pass a collate_fn)")
    return for_array(arrays[0]).xp.stack(arrays)


def collate(batch: Sequence, keys: Optional[Sequence] = None, what: str = "a tensor") -> Any:
    """default_collate, with `keys` (the dataset indices of the samples) for error messages."""
    if len(batch) == 0:
        raise ValueError("default_collate: the batch is empty")
    elem = batch[0]
    kind = type(elem)
    if kind is tuple or kind is list:  # the usual sample, (input, target): plain type tests, no ABC checks
        n = len(elem)
        for x in batch:
            if type(x) is not kind or len(x) != n:
                break  # said below
        else:
            # a list for tuple samples too, as PyTorch's default_collate returns
            return [collate(list(field), keys, f"element {i}") for i, field in enumerate(zip(*batch))]
    if isinstance(elem, Tensor):
        try:  # the usual batch: the checks and the copy in one native call (as fastmlp.stack makes it)
            out = _C.join(batch, True, True) if type(batch) in (list, tuple) else None
        except (RuntimeError, TypeError):  # samples that cannot be stacked: said below, with dataset indices
            out = None
        if out is not None:
            return _wrap(out)
        for pos, x in enumerate(batch):
            if not isinstance(x, Tensor):
                raise TypeError(f"default_collate: {_where(pos, keys)} is a {type(x).__name__} where "
                                f"{_where(0, keys)} is a Tensor")
        return _wrap(_stack_arrays([x._data for x in batch], batch, keys, what))
    if isinstance(elem, np.ndarray):
        if elem.dtype.kind in "USO":
            raise TypeError(f"default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; "
                            f"found a numpy array of {elem.dtype}")
        try:
            out = _C.join(batch, True, True) if type(batch) in (list, tuple) else None
        except (RuntimeError, TypeError):
            out = None
        if out is not None:
            return _wrap(out)
        arrays = [np.asarray(x) for x in batch]
        return _wrap(np.ascontiguousarray(_stack_arrays(arrays, batch, keys, what)))
    if isinstance(elem, np.generic):
        return _wrap(np.array(batch))
    if isinstance(elem, bool):
        return _wrap(np.array(batch, dtype=np.bool_))
    if isinstance(elem, numbers.Integral):
        return _wrap(np.array(batch, dtype=np.int64))
    if isinstance(elem, numbers.Real):
        return _wrap(np.array(batch, dtype=np.float64))
    if isinstance(elem, (str, bytes)):
        return list(batch)
    if isinstance(elem, collections.abc.Mapping):
        for pos, x in enumerate(batch):
            if not isinstance(x, collections.abc.Mapping) or x.keys() != elem.keys():
                raise ValueError(f"default_collate: {_where(pos, keys)} does not have the keys of "
                                 f"{_where(0, keys)} ({sorted(map(str, elem.keys()))})")
        out = {k: collate([x[k] for x in batch], keys, f"key {k!r}") for k in elem}
        try:
            return type(elem)(out)
        except TypeError:
            return out
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # named tuple
        return type(elem)(*(collate(list(field), keys, f"field {name!r}")
                            for name, field in zip(elem._fields, zip(*batch))))
    if isinstance(elem, collections.abc.Sequence):
        n = len(elem)
        for pos, x in enumerate(batch):
            if not isinstance(x, collections.abc.Sequence) or len(x) != n:
                got = f"{len(x)} elements" if isinstance(x, collections.abc.Sized) else type(x).__name__
                raise ValueError(f"default_collate: each sample must have the same number of elements; "
                                 f"{_where(pos, keys)} has {got} but {_where(0, keys)} has {n}")
        return [collate(list(field), keys, f"element {i}") for i, field in enumerate(zip(*batch))]
    raise TypeError(f"default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found "
                    f"{type(elem).__name__}")


def default_collate(batch: Sequence) -> Any:
    """Stack a list of samples into a batch (``torch.utils.data.default_collate``)."""
    return collate(batch)


def default_convert(data: Any) -> Any:
    """NumPy arrays to tensors, recursively, without batching (``torch.utils.data.default_convert``);
    what a DataLoader with ``batch_size=None`` applies to each sample."""
    if isinstance(data, Tensor):
        return data
    if isinstance(data, np.ndarray):
        if data.dtype.kind in "USO":
            return data
        return _wrap(np.ascontiguousarray(data))
    if isinstance(data, np.generic) and data.dtype.kind not in "USO":
        return _wrap(np.asarray(data))
    if isinstance(data, (str, bytes)):
        return data
    if isinstance(data, collections.abc.Mapping):
        out = {k: default_convert(v) for k, v in data.items()}
        try:
            return type(data)(out)
        except TypeError:
            return out
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return tuple(default_convert(d) for d in data)
    if isinstance(data, collections.abc.Sequence):
        return [default_convert(d) for d in data]
    return data
