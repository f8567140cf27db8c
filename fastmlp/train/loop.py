"""``fit``: the training loop of a PyTorch tutorial, with validation, callbacks and a progress bar.

Each epoch: ``model.train()``, one pass over the training loader (zero_grad,
forward, loss, backward, step), then — with a validation loader — ``evaluate``
in eval mode without gradients, then the callbacks (checkpoints, early stopping,
the scheduler). The per-step work lives in ``_train_epoch`` alone, and ``fit``
looks it up in this module at every epoch, so a faster implementation of one
epoch can replace it (``fastmlp.train.loop._train_epoch = ...``) without
touching the rest. For a ``Sequential`` MLP trained with ``CrossEntropyLoss`` on the
CPU, each step runs natively in one call (``fastmlp.nn.program.TrainStep``:
forward, loss and backward into the optimizer's gradient buffer, then its step),
with results bitwise equal to the eager step; over a plain DataLoader of a row-wise
dataset (TensorDataset, MNIST, Subsets of them), runs of consecutive batches are
gathered at once and their steps run in one native call.

Ctrl-C stops the run cleanly: the epoch in progress is abandoned, the callbacks'
``on_train_end`` still run (restoring the best weights, for instance), and
``fit`` returns the history so far with ``history.interrupted = True``. The last
checkpoint written is intact, since checkpoints are saved atomically.

Resuming: ``fit(..., checkpoint_every=N, checkpoint_path=path)`` writes the whole
training state (``fastmlp.train.state``) every N epochs, and ``fit(...,
resume_from=path)`` — with the model, optimizer, loaders and callbacks built as
the first run built them — continues after the saved epoch, to bitwise the
parameters the uninterrupted run reaches. A run killed mid-epoch resumes from
the end of its last saved epoch.
"""
from __future__ import annotations

import contextlib
import sys
import time
from typing import Callable, Iterable, Optional

from .. import _autocast, _dtype
from .. import distributed as _dist
from .._device import batch_device, device_scope
from ..autograd import is_grad_enabled
from ..nn import plan as _plan
from ..nn.program import TrainStep
from ..utils.data import DataLoader
from .callbacks import Callback, FitState, LRSchedulerCallback
from .evaluation import _pair, evaluate
from .history import History
from .progress import make_progress
from .state import capture_training_state, epoch_and_step, resolve_resume, restore_training_state, \
    save_training_state

__all__ = ["fit"]


def _train_epoch(model, loss_fn: Callable, optimizer, loader: Iterable, device, bar) -> tuple[float, int, int]:
    """One pass over `loader`; returns (sum of loss * batch size, samples, steps).

    This is the whole per-step cost of ``fit``: keep it lean. `device` is where to
    move each batch (None: leave it where it is); `bar.update` is called every step
    (every run of native steps) and redraws at most a few times a second.
    """
    zero_grad = optimizer.zero_grad
    step = optimizer.step
    update = bar.update
    native = _native_step(model, loss_fn, optimizer) if device is None else None
    loss_sum = 0.0
    samples = 0
    steps = 0

    def one(inputs, targets) -> float:
        if native is not None and native.accepts(inputs, targets):
            return native(inputs, targets)[0]
        if native is not None:
            native.flush()
        if device is not None:
            inputs = inputs.to(device)
            targets = targets.to(device)
        zero_grad()
        loss = loss_fn(model(inputs), targets)
        loss.backward()
        step()
        return loss.item()

    # Between two native steps only the loader and the bar run, so the native steps are held:
    # each reuses the checks of the one before (flushed before any eager step, and at the end).
    with native.hold() if native is not None else contextlib.nullcontext():
        # A plain DataLoader gathers many batches at once (with their row counts, `sizes`) and the
        # native step runs them in one call; any other loader gives one batch at a time.
        chunks = _row_chunks(loader, native)
        for batch, sizes in ((b, None) for b in loader) if chunks is None else chunks:
            inputs, targets = _pair(batch, "fit")
            if sizes is None or len(sizes) == 1:
                values, sizes = [one(inputs, targets)], [len(inputs)]
            elif native.accepts(inputs, targets) and _labels_in_range(targets, native):
                values = native.steps(inputs, targets, sizes)[0]
            else:  # one batch at a time, so that errors come at the batch that has them
                values, at = [], 0
                for n in sizes:
                    values.append(one(inputs[at:at + n], targets[at:at + n]))
                    at += n
            for n, value in zip(sizes, values):
                loss_sum += value * n
                samples += n
                steps += 1
            update(steps, loss_sum, samples)
    return loss_sum, samples, steps


# Rows of one gathered run of batches: about 4 MiB of 784-pixel float32 images.
_CHUNK_FLOATS = 1 << 20


def _row_chunks(loader, native) -> Optional[Iterable]:
    """The loader's batches gathered several at a time (DataLoader._row_chunks), when the native
    step can take them so: a plain fastmlp DataLoader over a row-wise dataset, else None."""
    if native is None or type(loader) is not DataLoader:
        return None
    return loader._row_chunks(max(1, _CHUNK_FLOATS // native.in_features))


def _labels_in_range(targets, native) -> bool:
    y = targets._data
    classes = native.classes
    ok = (y >= 0) & (y < classes)
    return bool(ok.all()) or bool((ok | (y == native.loss_fn.ignore_index)).all())


def _native_step(model, loss_fn, optimizer) -> Optional[TrainStep]:
    """The native whole-step path for a Sequential MLP with CrossEntropyLoss on the CPU, or None.

    Its results are bitwise those of the eager step (tests/nn/test_program_steps.py); it is
    only used while gradients are enabled and every module is in training mode, and
    falls back to the eager step for any batch it does not take as is.
    """
    if not is_grad_enabled():
        return None
    if _plan.explain_enabled():
        _plan.log_once(_dist.fit.unwrap(model), loss_fn, optimizer)
    if hasattr(model, "_fit_train_step"):  # DistributedDataParallel: native backward, allreduce, native update
        return model._fit_train_step(loss_fn, optimizer)
    return TrainStep.build(model, loss_fn, optimizer)


_PRECISIONS = {"32": False, "fp32": False, "float32": False, "32-true": False,
               "bf16": True, "bfloat16": True, "bf16-mixed": True}


def _precision_scope(precision, dev) -> Callable:
    """fit's `precision` as a context factory: fastmlp.autocast for "bf16", else nothing."""
    if not isinstance(precision, str) or precision not in _PRECISIONS:
        raise ValueError(f"fit: precision must be one of {', '.join(repr(k) for k in _PRECISIONS)}; got {precision!r}")
    if not _PRECISIONS[precision]:
        return contextlib.nullcontext
    if dev is not None and getattr(dev, "type", "cpu") != "cpu":
        raise ValueError(f"fit: precision={precision!r} runs on the CPU only; the model is on {dev}")
    return lambda: _autocast.autocast("cpu", dtype=_dtype.bfloat16)


def _loader_len(loader) -> Optional[int]:
    try:
        return len(loader)
    except TypeError:
        return None


def _check_resume_args(checkpoint_every, checkpoint_path, resume_from):
    """checkpoint_path (defaulting to resume_from) when checkpoint_every asks for states, else None."""
    if checkpoint_every is None:
        return None
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise ValueError(f"fit: checkpoint_every must be a positive number of epochs; got {checkpoint_every!r}")
    path = checkpoint_path if checkpoint_path is not None else resume_from
    if path is None:
        raise ValueError("fit: checkpoint_every needs checkpoint_path (where to write the training state)")
    return path


def _resume(resume_from, state: FitState, cbs: list, loaders: list) -> int:
    """Load the training state at `resume_from` (if any) into this run; returns the completed epochs."""
    saved = resolve_resume(resume_from)
    if saved is None:
        return 0
    restore_training_state(saved, state.model, state.optimizer, cbs, loaders, state.history)
    done, state.step, stopped = epoch_and_step(saved)
    state.epoch = done
    state.stop_training = stopped
    return done


def _write_training_states(state: FitState, cbs: list, loaders: list, every_path, every: Optional[int]) -> None:
    """After every callback has seen the epoch: the states ModelCheckpoint asked for, and the
    periodic one of checkpoint_every (also after the run's last epoch)."""
    saves = list(state.pending_state_saves)
    state.pending_state_saves.clear()
    last = state.epoch == state.epochs or state.stop_training
    if every_path is not None and every and (state.epoch % every == 0 or last):
        saves.append((every_path, {}))
    if not saves:
        return
    captured = capture_training_state(state.model, state.optimizer, cbs, loaders, state.history, state.epoch,
                                      state.step, state.stop_training)
    for path, extra in saves:
        save_training_state({**extra, **captured}, path)


def fit(model, loss_fn: Callable, optimizer, train_loader: Iterable, val_loader: Optional[Iterable] = None,
        epochs: int = 1, scheduler=None, callbacks: Iterable[Callback] = (), progress: bool = True, *,
        device=None, monitor: Optional[str] = None, checkpoint_every: Optional[int] = None,
        checkpoint_path=None, resume_from=None, precision: str = "32") -> History:
    """Train `model` for `epochs` epochs and return the per-epoch History (Keras's ``model.fit``).

    Args:
        model: a ``fastmlp.nn.Module``.
        loss_fn: called as ``loss_fn(model(inputs), targets)``; returns the batch's mean loss.
        optimizer: a ``fastmlp.optim`` optimizer over the model's parameters.
        train_loader: yields ``(inputs, targets)`` batches.
        val_loader: evaluated after every epoch (``val_loss``, and ``val_accuracy`` for classifiers).
        epochs: number of passes over train_loader.
        scheduler: a learning-rate scheduler stepped once per epoch; ReduceLROnPlateau is
            given the monitored value.
        callbacks: EarlyStopping, ModelCheckpoint, EpochLogger or your own Callback objects.
        progress: show a progress bar per epoch (only when stderr is a terminal).
        device: where to move each batch (``"cuda"``, ``"cuda:1"``, a ``fastmlp.device``); default: the
            device of the model's parameters. It must be where the model is, and usable (else an error).
        monitor: the value ReduceLROnPlateau sees; default ``val_loss`` with a validation
            loader, else ``train_loss``.
        checkpoint_every: write the whole training state (model, optimizer, epoch, step, random
            generators, history, callbacks and scheduler) to `checkpoint_path` every this many epochs.
        checkpoint_path: where those states go; default `resume_from` (a resumed run keeps its file).
        resume_from: a training state written by checkpoint_every or by ``ModelCheckpoint(...,
            save_training_state=True)``: continue that run after its last saved epoch, up to `epochs`
            in all. Build the model, optimizer, loaders and callbacks as the saved run did.
        precision: ``"32"`` (float32, the default) or ``"bf16"``: every training step and validation
            pass runs under ``fastmlp.autocast("cpu", dtype=fastmlp.bfloat16)`` — the Linear layers'
            products (forward and backward) on bfloat16-rounded operands with float32 accumulation,
            everything else float32 — and the native step runs the same products natively. The
            weights, the optimizer state and every checkpoint stay float32. CPU only.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"fit: epochs must be a non-negative integer; got {epochs!r}")
    if _loader_len(train_loader) == 0:
        raise ValueError("fit: train_loader yields no batches: its dataset is empty (or drop_last dropped the "
                         "only, partial batch)")
    if val_loader is not None and _loader_len(val_loader) == 0:
        raise ValueError("fit: val_loader yields no batches: its dataset is empty")
    every_path = _check_resume_args(checkpoint_every, checkpoint_path, resume_from)
    dev = move = batch_device(model, device, "fit")
    lowered = _precision_scope(precision, dev)
    group = _dist.fit.fit_group(model)  # several processes (DistributedDataParallel), else None
    history = History()
    metrics = ["epoch", "train_loss"] + (["val_loss", "val_accuracy"] if val_loader is not None else []) + \
        ["lr", "time", "samples_per_s"]
    state = FitState(model=_dist.fit.unwrap(model), optimizer=optimizer, epochs=epochs, history=history,
                     metrics=metrics)
    cbs = list(callbacks)
    if group is not None:  # only rank 0 writes checkpoints and prints
        cbs = _dist.fit.callbacks_for_rank(cbs, group)
        progress = progress and group.rank == 0
    if scheduler is not None:
        cbs.append(LRSchedulerCallback(scheduler, monitor or ("val_loss" if val_loader is not None else "train_loss")))
    for cb in cbs:
        cb.on_train_begin(state)
    loaders = [train_loader] + ([val_loader] if val_loader is not None else [])
    done = _resume(resume_from, state, cbs, loaders)
    last = done if state.stop_training else epochs  # a resumed run that had stopped trains no further
    was_training = getattr(model, "training", True)
    bar = None
    try:
        for epoch in range(done + 1, last + 1):
            state.epoch = epoch
            for cb in cbs:
                cb.on_epoch_begin(state)
            lr = optimizer.param_groups[0]["lr"] if getattr(optimizer, "param_groups", None) else None
            _dist.fit.set_epoch(train_loader, epoch - 1)
            bar = make_progress(_loader_len(train_loader), f"Epoch {epoch}/{epochs}", enabled=progress,
                                unit="batch")
            start = time.perf_counter()
            model.train()
            try:
                with device_scope(move), lowered():
                    loss_sum, samples, steps = _train_epoch(model, loss_fn, optimizer, train_loader, move, bar)
                state.step += steps
            except KeyboardInterrupt:
                raise
            except Exception as e:
                if hasattr(e, "add_note"):
                    e.add_note(f"(raised while training epoch {epoch}/{epochs} in fastmlp.train.fit)")
                raise
            train_time = time.perf_counter() - start
            if group is not None:  # every rank logs the totals over all ranks
                loss_sum, samples = _dist.fit.sum_over_ranks(group, loss_sum, samples)
            if steps == 0:
                raise ValueError("fit: train_loader yielded no batches in epoch "
                                 f"{epoch}: its dataset is empty (or exhausted, for an iterator)")
            logs: dict = {"epoch": epoch, "train_loss": loss_sum / samples}
            summary = f"loss={logs['train_loss']:.4f}"
            if val_loader is not None:
                with lowered():
                    res = evaluate(model, val_loader, loss_fn, device=dev)
                if group is not None:
                    res.loss, res.accuracy = _dist.fit.reduce_validation(group, res)
                logs["val_loss"] = res.loss
                logs["val_accuracy"] = res.accuracy
                summary += f", val_loss={res.loss:.4f}"
                if res.accuracy is not None:
                    summary += f", val_acc={100 * res.accuracy:.2f}%"
            logs["lr"] = lr
            logs["time"] = time.perf_counter() - start
            logs["samples_per_s"] = samples / train_time if train_time > 0 else float("inf")
            bar.close(summary + f", {logs['samples_per_s']:,.0f} samples/s")
            bar = None
            history.append(logs)
            for cb in cbs:
                cb.on_epoch_end(state, logs)
            if group is not None:  # every rank stops at the same epoch
                state.stop_training = _dist.fit.any_rank(group, state.stop_training)
            if group is None or group.rank == 0:  # one writer of the training state
                _write_training_states(state, cbs, loaders, every_path, checkpoint_every)
            if state.stop_training:
                break
    except KeyboardInterrupt:
        if bar is not None:
            bar.close("interrupted")
            bar = None
        state.interrupted = True
        history.interrupted = True
        print(f"\nTraining interrupted during epoch {state.epoch}/{epochs}; stopping. "
              f"{len(history)} complete epoch(s) recorded.", file=sys.stderr, flush=True)
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    for cb in cbs:
        cb.on_train_end(state)
    return history
