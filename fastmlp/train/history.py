"""``History``: the per-epoch metrics that ``fit`` returns (Keras's ``History``, as a list of dicts).

Each epoch is a dict (``epoch``, ``train_loss``, ``val_loss``, ``val_accuracy``,
``lr``, ``time``, ``samples_per_s``; validation keys only with a validation
loader). ``history[i]`` is epoch i's dict, ``history["val_loss"]`` the column as
a list, and ``history.history`` the dict of columns Keras users know.
"""
from __future__ import annotations

import csv
import math
import os
from typing import Any, Iterator, Optional, Union

__all__ = ["History"]

_ALIASES = {"loss": "train_loss", "val_acc": "val_accuracy", "accuracy": "train_accuracy",
            "learning_rate": "lr"}


def _resolve(key: str, names) -> str:
    """The name under which metric `key` appears in `names`, through the aliases above in either direction
    (``val_acc`` finds ``val_accuracy``, ``train_loss`` finds Keras's ``loss``); `key` itself when none does."""
    if key in names:
        return key
    alias = _ALIASES.get(key)
    if alias is not None and alias in names:
        return alias
    for short, full in _ALIASES.items():
        if full == key and short in names:
            return short
    return key


class History:
    """Per-epoch records of a training run."""

    def __init__(self, records: Optional[list] = None) -> None:
        self.records: list[dict] = list(records or [])
        self.interrupted = False      # the run was stopped with Ctrl-C
        self.stopped_epoch: Optional[int] = None  # the epoch after which a callback stopped the run

    def append(self, record: dict) -> None:
        self.records.append(dict(record))

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.records)

    @property
    def columns(self) -> list:
        """Every metric name that appears in some epoch, in first-seen order."""
        seen: dict = {}
        for r in self.records:
            for k in r:
                seen.setdefault(k, None)
        return list(seen)

    def __getitem__(self, key: Union[int, slice, str]) -> Any:
        if isinstance(key, str):
            name = key if key in self.columns else _ALIASES.get(key, key)
            if name not in self.columns:
                raise KeyError(f"History has no metric {key!r}; it has {self.columns}")
            return [r.get(name) for r in self.records]
        if isinstance(key, slice):
            return History(self.records[key])
        return self.records[key]

    def __contains__(self, key: str) -> bool:
        return key in self.columns or _ALIASES.get(key) in self.columns

    @property
    def history(self) -> dict:
        """Columns as a dict of lists (``keras.callbacks.History.history``)."""
        return {k: self[k] for k in self.columns}

    @property
    def epoch(self) -> list:
        return [r.get("epoch") for r in self.records]

    def best(self, monitor: str = "val_loss", mode: str = "auto") -> Optional[dict]:
        """The record with the best value of `monitor` (min for losses, max for accuracies)."""
        values = [(v, r) for v, r in zip(self[monitor], self.records)
                  if v is not None and not (isinstance(v, float) and math.isnan(v))]
        if not values:
            return None
        maximise = _maximise(monitor, mode)
        pick = max if maximise else min
        return pick(values, key=lambda vr: vr[0])[1]

    def to_csv(self, path: Union[str, os.PathLike]) -> None:
        cols = self.columns
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for r in self.records:
                w.writerow(["" if r.get(c) is None else r.get(c) for c in cols])

    def __repr__(self) -> str:
        last = self.records[-1] if self.records else {}
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in last.items())
        return f"History({len(self)} epochs" + (f"; last: {shown})" if shown else ")")


def _maximise(monitor: str, mode: str) -> bool:
    """Whether larger is better for `monitor` under `mode` ("min", "max" or "auto")."""
    if mode == "max":
        return True
    if mode == "min":
        return False
    if mode != "auto":
        raise ValueError(f"mode must be 'auto', 'min' or 'max'; got {mode!r}")
    name = monitor.lower()
    return any(k in name for k in ("acc", "auc", "f1", "precision", "recall"))
