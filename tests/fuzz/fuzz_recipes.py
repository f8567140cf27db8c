"""Recipes: plain-data descriptions of adversarial arguments, and how to build them.

A recipe is made of tuples, numbers and strings only, so Hypothesis can generate and
shrink it, it crosses a pipe to the worker process unchanged, and a failing one prints
as something a person can read and rebuild. The worker turns recipes into the real
arguments (read-only, misaligned, strided, byte-swapped, overlapping arrays cannot be
pickled faithfully, so they are made where they are used).

    ("array", dtype, shape, layout, fill, seed)   an ndarray
    ("alias", param, mode)                         the array of an earlier parameter:
                                                   mode "same" (that object) or "shifted"
                                                   (a view one element further into its memory)
    ("list", [recipe, ...])                        a list (the optimizers' tensor lists)
    ("value", x)                                   x itself (int, float, str, bool, None)
    ("object",)                                    a plain object(), the wrong type for anything
"""
from __future__ import annotations

from typing import Any

import numpy as np

LAYOUTS = ("c", "readonly", "fortran", "strided", "misaligned", "reversed", "broadcast", "padded_rows",
           "byteswapped")
FILLS = ("normal", "zeros", "unit", "nan", "inf", "huge", "labels", "badlabels", "tiny")


def _values(dtype: np.dtype, shape: tuple, fill: str, rng: np.random.Generator) -> np.ndarray:
    size = int(np.prod(shape, dtype=np.int64))
    if fill == "labels":
        v = rng.integers(0, 4, size=size)
    elif fill == "badlabels":
        v = rng.choice(np.array([-101, -100, -1, 0, 3, 4, 2**31, -(2**62), 2**62], dtype=np.int64), size=size)
    elif fill == "zeros":
        v = np.zeros(size)
    elif fill == "unit":
        v = rng.random(size)
    elif fill == "nan":
        v = rng.standard_normal(size)
        v[rng.random(size) < 0.5] = np.nan
    elif fill == "inf":
        v = rng.standard_normal(size)
        v[rng.random(size) < 0.5] = np.inf
        v[rng.random(size) < 0.3] = -np.inf
    elif fill == "huge":
        v = rng.choice(np.array([3e38, -3e38, 1e30, -1e30, 65504.0]), size=size)
    elif fill == "tiny":
        v = rng.choice(np.array([1e-45, -1e-45, 1e-38, 0.0, -0.0]), size=size)
    else:
        v = rng.standard_normal(size)
    if dtype.kind == "b":
        return (np.asarray(v) != 0).reshape(shape)
    if dtype.kind in "iu":
        with np.errstate(invalid="ignore", over="ignore"):
            v = np.nan_to_num(np.asarray(v, dtype=np.float64), nan=0, posinf=7, neginf=-7)
            info = np.iinfo(dtype)
            return np.clip(v, info.min, info.max).astype(dtype).reshape(shape)
    if dtype.kind == "O":
        return np.array([object() for _ in range(size)], dtype=object).reshape(shape)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(v).astype(dtype).reshape(shape)


def make_array(dtype_name: str, shape: tuple, layout: str, fill: str, seed: int) -> np.ndarray:
    """An array of `shape` holding `fill` values, laid out as `layout` says. Every layout stays within
    memory this function allocated, so whatever the callee does with a well-checked view is in bounds."""
    dtype = np.dtype(dtype_name)
    rng = np.random.default_rng(seed)
    vals = _values(dtype, shape, fill, rng)
    size = vals.size
    if layout == "readonly":
        a = vals.copy()
        a.setflags(write=False)
        return a
    if layout == "fortran":
        return np.asfortranarray(vals)
    if layout == "strided" and vals.ndim >= 1:
        big = np.zeros(shape[:-1] + (2 * shape[-1],), dtype=dtype)
        big[..., ::2] = vals
        return big[..., ::2]
    if layout == "reversed" and vals.ndim >= 1:
        return vals[..., ::-1].copy()[..., ::-1]
    if layout == "broadcast" and vals.ndim >= 1 and shape[0] > 0:
        return np.broadcast_to(vals[:1], shape)
    if layout == "padded_rows" and vals.ndim == 2:
        big = np.zeros((shape[0], shape[1] + 3), dtype=dtype)
        big[:, :shape[1]] = vals
        return big[:, :shape[1]]
    if layout == "misaligned" and dtype.itemsize > 1 and dtype.kind != "O":
        raw = np.zeros(size * dtype.itemsize + 1, dtype=np.uint8)
        a = raw[1:].view(dtype).reshape(shape)
        a[...] = vals
        return a
    if layout == "byteswapped" and dtype.itemsize > 1 and dtype.kind != "O":
        return vals.astype(dtype.newbyteorder())
    # "c" (and layouts that do not apply to this rank): C-contiguous, with one spare element after
    # the data so that a "shifted" alias of it stays within the allocation.
    if dtype.kind == "O":
        return vals
    base = np.zeros(size + 1, dtype=dtype)
    base[:size] = vals.reshape(-1)
    return base[:size].reshape(shape)


def _shifted(a: np.ndarray) -> np.ndarray:
    """A view of a's memory one element further on, of a's shape (a must own a spare element)."""
    if a.size == 0 or not a.flags.c_contiguous or a.base is None or not isinstance(a.base, np.ndarray):
        return a
    base = a.base
    while isinstance(base.base, np.ndarray):
        base = base.base
    if base.dtype != a.dtype or base.ndim != 1 or base.size < a.size + 1:
        return a
    start = (a.__array_interface__["data"][0] - base.__array_interface__["data"][0]) // a.itemsize
    if start + a.size + 1 > base.size:
        return a
    return base[start + 1:start + 1 + a.size].reshape(a.shape)


def build(recipe: Any, built: dict) -> Any:
    """The argument a recipe describes; `built` maps the names of parameters built so far to their values."""
    kind = recipe[0]
    if kind == "array":
        return make_array(*recipe[1:])
    if kind == "alias":
        other = built.get(recipe[1])
        if not isinstance(other, np.ndarray):
            return other
        return other if recipe[2] == "same" else _shifted(other)
    if kind == "list":
        return [build(r, built) for r in recipe[1]]
    if kind == "object":
        return object()
    return recipe[1]


def arrays_in(value: Any) -> list:
    if isinstance(value, np.ndarray):
        return [value]
    if isinstance(value, (list, tuple)):
        return [a for v in value for a in arrays_in(v)]
    return []
