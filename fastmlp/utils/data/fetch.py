"""Fetching one batch of a map-style dataset, in the calling process or in a worker
(``torch.utils.data._utils.fetch``): its samples through ``__getitems__(keys)`` when
the dataset defines it (PyTorch 2's batched protocol), else one ``dataset[key]`` each,
then collated.

A dataset whose ``__len__`` promises more samples than ``__getitem__`` gives (an
IndexError for an index below ``len(dataset)``) gets an error that says so, not the
bare IndexError of its own code.
"""
from __future__ import annotations

from typing import Any, Callable

from .collate import collate, default_collate

__all__ = ["make_fetch"]


def _samples_fn(dataset: Any) -> Callable[[list], list]:
    getitems = getattr(dataset, "__getitems__", None)
    if getitems is not None:
        return getitems
    getitem = dataset.__getitem__
    return lambda keys: [getitem(k) for k in keys]


def _len_mismatch(dataset: Any, keys: list, exc: IndexError) -> IndexError:
    """The IndexError to raise when fetching `keys` raised `exc` (the original one unless
    some key is an int below ``len(dataset)``, which ``__getitem__`` should accept)."""
    try:
        n = len(dataset)
    except TypeError:
        return exc
    inside = [k for k in keys if isinstance(k, int) and 0 <= k < n]
    if len(inside) != len(keys):
        return exc
    return IndexError(f"{type(dataset).__name__}.__getitem__ raised IndexError ({exc}) for one of the indices "
                      f"{_short(keys)}, but len(dataset) is {n}: the sampler draws every index below __len__(), so "
                      "__len__ must return how many samples __getitem__ gives")


def _short(keys: list) -> str:
    return repr(keys) if len(keys) <= 8 else f"[{keys[0]}, {keys[1]}, ..., {keys[-1]}] ({len(keys)} indices)"


def make_fetch(dataset: Any, collate_fn: Callable, auto_collation: bool) -> Callable:
    """``fetch(keys) -> batch`` for `dataset` (``fetch(key) -> converted sample`` without auto-collation)."""
    if not auto_collation:
        def fetch_one(key):
            try:
                sample = dataset[key]
            except IndexError as e:
                err = _len_mismatch(dataset, [key], e)
                if err is e:
                    raise
                raise err from e
            return collate_fn(sample)
        return fetch_one
    samples = _samples_fn(dataset)
    with_keys = collate_fn is default_collate  # its errors name the dataset index of a bad sample

    def fetch(keys):
        keys = keys.tolist() if hasattr(keys, "tolist") else list(keys)
        try:
            batch = samples(keys)
        except IndexError as e:
            err = _len_mismatch(dataset, keys, e)
            if err is e:
                raise
            raise err from e
        return collate(batch, keys) if with_keys else collate_fn(batch)
    return fetch
