"""Callbacks for ``fit``: early stopping, checkpoints, learning-rate schedules, epoch log lines
(``keras.callbacks`` in spirit, for PyTorch-style models).

A callback overrides any of ``on_train_begin(state)``, ``on_epoch_begin(state)``,
``on_epoch_end(state, logs)`` and ``on_train_end(state)``. ``state`` is the
``FitState`` of the run (model, optimizer, epoch, history); setting
``state.stop_training = True`` ends the run after the current epoch. ``logs`` is
the epoch's record (``train_loss``, ``val_loss``, ``val_accuracy``, ...).

A callback that keeps state across epochs also defines ``state_dict()`` and
``load_state_dict(d)``, so that a run resumed from a training state
(``fit(..., resume_from=path)``) continues with it.
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from ..serialization import save
from .history import History, _maximise, _resolve

__all__ = ["FitState", "Callback", "EarlyStopping", "ModelCheckpoint", "LRSchedulerCallback", "EpochLogger"]


@dataclass
class FitState:
    """The state of a ``fit`` run that callbacks see and may change."""

    model: Any
    optimizer: Any
    epochs: int
    history: History
    metrics: list = field(default_factory=list)  # the names each epoch's logs will have
    epoch: int = 0                                # 1-based; 0 before the first epoch
    stop_training: bool = False
    interrupted: bool = False
    step: int = 0                                 # optimizer steps taken so far
    # Training-state files to write once every callback has seen the epoch (fit writes them):
    # (path, extra entries) pairs that ModelCheckpoint(save_training_state=True) adds.
    pending_state_saves: list = field(default_factory=list)


class Callback:
    """Base class: every hook does nothing."""

    def on_train_begin(self, state: FitState) -> None:
        pass

    def on_epoch_begin(self, state: FitState) -> None:
        pass

    def on_epoch_end(self, state: FitState, logs: dict) -> None:
        pass

    def on_train_end(self, state: FitState) -> None:
        pass

    def state_dict(self) -> Optional[dict]:
        """What this callback must keep across a resume (None: nothing)."""
        return None

    def load_state_dict(self, state_dict: dict) -> None:
        pass


def _check_monitor(owner: str, monitor: str, state: FitState) -> None:
    """`monitor` (or the alias History accepts for it, e.g. val_acc for val_accuracy) must be a metric of the run."""
    if state.metrics and _resolve(monitor, state.metrics) not in state.metrics:
        hint = " (pass val_loader to fit to get validation metrics)" if monitor.startswith("val_") else ""
        raise ValueError(f"{owner}: monitor={monitor!r} is not a metric of this run; the metrics are "
                         f"{state.metrics}{hint}")


def _current(owner: str, monitor: str, logs: dict) -> float:
    value = logs.get(_resolve(monitor, logs))
    if value is None:
        raise ValueError(f"{owner}: the epoch's logs have no value for {monitor!r} (they have "
                         f"{sorted(k for k, v in logs.items() if v is not None)})")
    return float(value)


class _Monitor:
    """Tracks the best value of a metric: min or max, with a minimum change that counts."""

    def __init__(self, monitor: str, mode: str, min_delta: float) -> None:
        self.monitor = monitor
        self.maximise = _maximise(monitor, mode)
        self.min_delta = abs(float(min_delta))
        self.best = -math.inf if self.maximise else math.inf

    def improved(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.maximise:
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved for `patience` epochs (``keras.callbacks.EarlyStopping``).

    Args:
        monitor: the metric to watch ("val_loss", "val_accuracy", "train_loss", ...; the aliases History
            accepts work too: "val_acc", "loss").
        patience: epochs without improvement after which training stops.
        min_delta: the smallest change that counts as an improvement.
        mode: "min", "max", or "auto" (max for accuracies, min otherwise).
        restore_best: at the end of training, load the weights of the best epoch.
        baseline: stop if the metric does not beat this value within `patience` epochs.
        verbose: print a line when stopping and when restoring.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 0, min_delta: float = 0.0, mode: str = "auto",
                 restore_best: bool = False, baseline: Optional[float] = None, verbose: bool = False,
                 restore_best_weights: Optional[bool] = None) -> None:
        if patience < 0:
            raise ValueError(f"EarlyStopping: patience must be >= 0; got {patience}")
        self.monitor = monitor
        self.patience = int(patience)
        self.min_delta = min_delta
        self.mode = mode
        self.restore_best = bool(restore_best if restore_best_weights is None else restore_best_weights)
        self.baseline = baseline
        self.verbose = verbose
        self._tracker = _Monitor(monitor, mode, min_delta)

    def on_train_begin(self, state: FitState) -> None:
        _check_monitor("EarlyStopping", self.monitor, state)
        self._tracker = _Monitor(self.monitor, self.mode, self.min_delta)
        if self.baseline is not None:
            self._tracker.best = float(self.baseline)
        self.wait = 0
        self.best_epoch: Optional[int] = None
        self.best_state: Optional[dict] = None
        self.stopped_epoch: Optional[int] = None

    def on_epoch_end(self, state: FitState, logs: dict) -> None:
        value = _current("EarlyStopping", self.monitor, logs)
        if self._tracker.improved(value):
            self._tracker.best = value
            self.best_epoch = state.epoch
            self.wait = 0
            if self.restore_best:
                self.best_state = {k: v.detach().clone() for k, v in state.model.state_dict().items()}
            return
        self.wait += 1
        if self.wait >= self.patience:
            state.stop_training = True
            self.stopped_epoch = state.epoch
            state.history.stopped_epoch = state.epoch
            if self.verbose:
                print(f"Epoch {state.epoch}: early stopping ({self.monitor} has not improved for {self.wait} "
                      f"epoch{'s' if self.wait != 1 else ''}; best {self._tracker.best:.6f} at epoch "
                      f"{self.best_epoch})")

    @property
    def best(self) -> float:
        return self._tracker.best

    def state_dict(self) -> dict:
        return {"wait": self.wait, "best": self._tracker.best, "best_epoch": self.best_epoch,
                "stopped_epoch": self.stopped_epoch, "best_state": self.best_state}

    def load_state_dict(self, state_dict: dict) -> None:
        self.wait = int(state_dict["wait"])
        self._tracker.best = float(state_dict["best"])
        self.best_epoch = state_dict["best_epoch"]
        self.stopped_epoch = state_dict["stopped_epoch"]
        self.best_state = state_dict["best_state"]

    def on_train_end(self, state: FitState) -> None:
        if self.restore_best and self.best_state is not None:
            state.model.load_state_dict(self.best_state)
            if self.verbose:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch}.")


class ModelCheckpoint(Callback):
    """Save the model's state_dict with ``fastmlp.save`` after epochs (``keras.callbacks.ModelCheckpoint``).

    With ``save_best_only`` (the default) it saves only when `monitor` improves —
    "save the model if validation loss has decreased". `path` may contain format
    fields filled from the epoch's logs, e.g. ``"model-{epoch:02d}.pt"``. Saving is
    atomic, so an interrupted run leaves the last checkpoint intact. `monitor` takes
    the metric names of the logs and the aliases History accepts ("val_acc", "loss").

    The file holds the plain state_dict, unless `extra` is given: then it holds
    ``{"state_dict": ..., "epoch": ..., "metrics": {...}, **extra}`` (e.g. the
    architecture, so the model can be rebuilt).

    With ``save_training_state=True`` the file holds the whole training state
    instead (``fastmlp.train.state``: model, optimizer, epoch, step, random
    generators, history, callbacks; plus `extra` and ``metrics``), written once
    every callback has seen the epoch, and ``fit(..., resume_from=path)`` continues
    the run from it.
    """

    def __init__(self, path: Union[str, os.PathLike], monitor: str = "val_loss", save_best_only: bool = True,
                 mode: str = "auto", verbose: bool = False, extra: Optional[dict] = None,
                 save_training_state: bool = False) -> None:
        self.path = os.fspath(path)
        self.monitor = monitor
        self.save_best_only = save_best_only
        self.mode = mode
        self.verbose = verbose
        self.extra = extra
        self.save_training_state = bool(save_training_state)
        self._tracker = _Monitor(monitor, mode, 0.0)
        self.best_epoch: Optional[int] = None
        self.last_saved: Optional[str] = None

    def on_train_begin(self, state: FitState) -> None:
        if self.save_best_only:
            _check_monitor("ModelCheckpoint", self.monitor, state)
        self._tracker = _Monitor(self.monitor, self.mode, 0.0)
        folder = os.path.dirname(os.path.abspath(self.path))
        if "{" not in folder:
            os.makedirs(folder, exist_ok=True)

    def on_epoch_end(self, state: FitState, logs: dict) -> None:
        if self.save_best_only:
            value = _current("ModelCheckpoint", self.monitor, logs)
            if not self._tracker.improved(value):
                return
            previous = self._tracker.best
            self._tracker.best = value
            if self.verbose:
                name = "Validation loss" if self.monitor == "val_loss" else self.monitor
                verb = "increased" if self._tracker.maximise else "decreased"
                print(f"{name} {verb} ({previous:.6f} --> {value:.6f}). Saving model ...")
        self.best_epoch = state.epoch
        path = self.path.format(**logs) if "{" in self.path else self.path
        if self.save_training_state:
            metrics = {k: v for k, v in logs.items() if isinstance(v, (int, float)) and v is not None}
            state.pending_state_saves.append((path, {**(self.extra or {}), "metrics": metrics}))
            self.last_saved = path
            return
        sd = state.model.state_dict()
        if self.extra is None:
            save(sd, path)
        else:
            metrics = {k: v for k, v in logs.items() if isinstance(v, (int, float)) and v is not None}
            save({**self.extra, "state_dict": sd, "epoch": state.epoch, "metrics": metrics}, path)
        self.last_saved = path

    def state_dict(self) -> dict:
        return {"best": self._tracker.best, "best_epoch": self.best_epoch, "last_saved": self.last_saved}

    def load_state_dict(self, state_dict: dict) -> None:
        self._tracker.best = float(state_dict["best"])
        self.best_epoch = state_dict["best_epoch"]
        self.last_saved = state_dict["last_saved"]


class LRSchedulerCallback(Callback):
    """Step a learning-rate scheduler once per epoch; ReduceLROnPlateau gets the monitored value.

    `monitor` falls back to ``train_loss`` when the run has no validation metrics.
    """

    def __init__(self, scheduler: Any, monitor: str = "val_loss") -> None:
        self.scheduler = scheduler
        self.monitor = monitor

    def _needs_metric(self) -> bool:
        from ..optim.lr_scheduler import ReduceLROnPlateau

        return isinstance(self.scheduler, ReduceLROnPlateau) or type(self.scheduler).__name__ == "ReduceLROnPlateau"

    def on_epoch_end(self, state: FitState, logs: dict) -> None:
        if self._needs_metric():
            key = _resolve(self.monitor, logs)
            key = key if logs.get(key) is not None else "train_loss"
            self.scheduler.step(_current("LRSchedulerCallback", key, logs))
        else:
            self.scheduler.step()

    def state_dict(self) -> Optional[dict]:
        get = getattr(self.scheduler, "state_dict", None)
        return {"scheduler": get()} if callable(get) else None

    def load_state_dict(self, state_dict: dict) -> None:
        self.scheduler.load_state_dict(state_dict["scheduler"])


class EpochLogger(Callback):
    """Print one line per epoch: ``epoch 1/3  train_loss 0.2871  val_loss 0.1372  val_acc 95.88%  12.3s ...``."""

    def __init__(self, stream=None) -> None:
        self.stream = stream

    def on_epoch_end(self, state: FitState, logs: dict) -> None:
        parts = [f"epoch {state.epoch}/{state.epochs}", f"train_loss {logs['train_loss']:.6f}"]
        if logs.get("val_loss") is not None:
            parts.append(f"val_loss {logs['val_loss']:.6f}")
        if logs.get("val_accuracy") is not None:
            parts.append(f"val_acc {100 * logs['val_accuracy']:.2f}%")
        parts.append(f"lr {logs['lr']:.3g}")
        parts.append(f"{logs['time']:.1f}s")
        parts.append(f"{logs['samples_per_s']:,.0f} samples/s")
        print("  ".join(parts), file=self.stream if self.stream is not None else sys.stdout, flush=True)
