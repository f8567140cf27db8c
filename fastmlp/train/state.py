"""The training state of a ``fit`` run: everything needed to continue it exactly where it stopped.

PyTorch has no single object for this; its tutorials save a dict of
``model.state_dict()``, ``optimizer.state_dict()``, the epoch and the loss, and
restore each by hand. Here one dict holds all of it, and resuming from it gives
bitwise the parameters the uninterrupted run would have reached:

- ``state_dict``: the model's state_dict (so ``fastmlp train``'s checkpoint
  readers, which look for ``state_dict``, read these files too);
- ``optimizer``: ``optimizer.state_dict()`` (moments, step counts, hyper-parameters);
- ``epoch`` (completed epochs) and ``step`` (optimizer steps taken);
- ``rng``: the state of ``fastmlp.random``'s default generator (initialisation,
  shuffling, dropout masks) and of every explicit ``fastmlp.Generator`` the data
  loaders draw from (their samplers' shuffling);
- ``history``: the epochs' records so far;
- ``callbacks``: each callback's ``state_dict()`` (EarlyStopping's counters and best
  weights, ModelCheckpoint's best value, the learning-rate scheduler's state), keyed
  by class name and occurrence.

A state is taken between epochs, after every callback has seen the epoch, and
written with ``fastmlp.save`` (a safetensors file with JSON metadata, written to a
temporary file and renamed over the target, so a crash leaves the previous state
intact).
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Optional, Sequence, Union

from .. import random as _random
from ..serialization import load, save
from .history import History

__all__ = ["FORMAT", "capture_training_state", "restore_training_state", "load_training_state",
           "save_training_state", "loader_generators"]

FORMAT = "fastmlp.training_state"
VERSION = 1


def loader_generators(loaders: Iterable[Any]) -> list:
    """The explicit ``fastmlp.Generator`` objects the loaders (and their samplers) draw from, each
    once, in a fixed order. Loaders without one draw from the default generator."""
    found: list = []
    seen: set = set()

    def visit(obj: Any, depth: int = 0) -> None:
        if obj is None or depth > 3:
            return
        gen = getattr(obj, "generator", None)
        if isinstance(gen, _random.Generator) and id(gen) not in seen:
            seen.add(id(gen))
            found.append(gen)
        for attr in ("batch_sampler", "sampler"):
            child = getattr(obj, attr, None)
            if child is not None and child is not obj:
                visit(child, depth + 1)

    for loader in loaders:
        visit(loader)
    return found


def _callback_keys(callbacks: Sequence[Any]) -> list:
    """``ClassName:k`` for the k-th callback of that class: how saved states find their callback."""
    counts: dict = {}
    keys = []
    for cb in callbacks:
        name = type(cb).__name__
        keys.append(f"{name}:{counts.get(name, 0)}")
        counts[name] = counts.get(name, 0) + 1
    return keys


def capture_training_state(model, optimizer, callbacks: Sequence[Any], loaders: Iterable[Any], history: History,
                           epoch: int, step: int, stop_training: bool = False) -> dict:
    """The training state after `epoch` completed epochs and `step` optimizer steps, as a dict for
    ``fastmlp.save``."""
    cb_states = {}
    for key, cb in zip(_callback_keys(callbacks), callbacks):
        get = getattr(cb, "state_dict", None)
        st = get() if callable(get) else None
        if st is not None:
            cb_states[key] = st
    return {
        "format": FORMAT,
        "version": VERSION,
        "epoch": int(epoch),
        "step": int(step),
        "stop_training": bool(stop_training),
        "state_dict": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": {"default": _random.get_rng_state(),
                "loaders": [g.get_state() for g in loader_generators(loaders)]},
        "history": {"records": list(history.records), "stopped_epoch": history.stopped_epoch},
        "callbacks": cb_states,
    }


def save_training_state(state: dict, path: Union[str, os.PathLike]) -> None:
    """Write a captured state to `path` atomically (``fastmlp.save``)."""
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    os.makedirs(folder, exist_ok=True)
    save(state, path)


def load_training_state(path: Union[str, os.PathLike]) -> dict:
    """Read a training state written by ``fit`` (``checkpoint_every``) or ``ModelCheckpoint(...,
    save_training_state=True)``; ValueError naming the file when it holds something else."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"resume_from: no training state at {os.fspath(path)!r}")
    state = load(path)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"resume_from: {os.fspath(path)!r} is not a training state (it has no "
                         f"'format': {FORMAT!r} entry; a plain model checkpoint holds weights only. Save "
                         "training states with fit(..., checkpoint_every=N, checkpoint_path=...) or "
                         "ModelCheckpoint(..., save_training_state=True))")
    if state.get("version") != VERSION:
        raise ValueError(f"resume_from: {os.fspath(path)!r} has training-state version {state.get('version')!r}; "
                         f"this fastmlp reads version {VERSION}")
    missing = [k for k in ("epoch", "step", "state_dict", "optimizer", "rng", "history", "callbacks")
               if k not in state]
    if missing:
        raise ValueError(f"resume_from: {os.fspath(path)!r} lacks {missing}")
    return state


def restore_training_state(state: dict, model, optimizer, callbacks: Sequence[Any], loaders: Iterable[Any],
                           history: History, where: str = "resume_from") -> None:
    """Load a state into the objects of a new run (built as the saved run was): model, optimizer,
    random generators, history and callbacks. The callbacks must have run ``on_train_begin``."""
    gens = loader_generators(loaders)
    saved_gens = state["rng"].get("loaders", [])
    if len(saved_gens) != len(gens):
        raise ValueError(f"{where}: the saved run's data loaders drew from {len(saved_gens)} explicit "
                         f"generator(s); this run's draw from {len(gens)}. Build the loaders as the saved run did.")
    model.load_state_dict(state["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    _random.set_rng_state(state["rng"]["default"])
    for g, st in zip(gens, saved_gens):
        g.set_state(st)
    history.records = [dict(r) for r in state["history"]["records"]]
    history.stopped_epoch = state["history"].get("stopped_epoch")
    saved_cbs = state["callbacks"]
    for key, cb in zip(_callback_keys(callbacks), callbacks):
        put = getattr(cb, "load_state_dict", None)
        if key in saved_cbs and callable(put):
            put(saved_cbs[key])


def epoch_and_step(state: dict) -> tuple:
    """(completed epochs, optimizer steps, whether the run had been stopped) of a state."""
    return int(state["epoch"]), int(state["step"]), bool(state.get("stop_training", False))


def resolve_resume(resume_from: Optional[Union[str, os.PathLike]]) -> Optional[dict]:
    return None if resume_from is None else load_training_state(resume_from)
