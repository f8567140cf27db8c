"""Whole training steps of a Sequential MLP in one native call (used by ``fastmlp.train.fit``).

``FusedTrainStep.build(model, loss_fn, optimizer)`` returns a step function for a
``Sequential`` of Linear layers, each optionally followed by an activation
(ReLU, LeakyReLU, Sigmoid, Tanh, GELU) and a Dropout, ending in a Linear that
produces logits for ``CrossEntropyLoss`` (mean reduction), trained on float32 CPU
tensors — or None for anything else, and the caller keeps the eager loop.

A step runs forward, loss and backward in C++ (``fastmlp._C.MlpProgram.train_step``) with
buffers reused across steps, writing the gradients straight into the optimizer's
flat gradient buffer; for SGD, Adam and AdamW the same native call then applies
the optimizer's update, layer by layer while the layer is still in cache (other
optimizers: ``optimizer.step()`` after the call). It issues the same kernels in
the same order as the eager path, with dropout masks drawn from the same
generator offsets, so its results are bitwise those of
``zero_grad(); loss_fn(model(x), y).backward(); step()``.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .. import _C
from .. import random as _random
from ..tensor import Tensor, _wrap
from .plan import TrainingPlan, plan_training, program_layer

_F32 = np.dtype(np.float32)


class FusedTrainStep:
    """step(x, y) -> (loss, correct) for a supported model; see the module docstring."""

    def __init__(self, model, loss_fn, optimizer, training: TrainingPlan):
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.plan = training.plan
        self.params = [p for b in self.plan.blocks for p in (b.linear.weight, b.linear.bias) if p is not None]
        self._program = None
        self._bound: list = []
        self._dropouts = 0
        # A held run (see hold()): the update the next step reuses, and the last applied one
        # whose bookkeeping (step counts) is still to be written.
        self._holding = False
        self._next = None
        self._pending = None
        self._native = None  # (FlatUpdate, its MlpUpdate), see _native_of
        self.in_features = self.plan.in_features
        self.classes = self.plan.out_features
        # SGD, Adam and AdamW themselves with one parameter group are updated inside the
        # native step, layer by layer (see plan_training).
        self._native_update = training.update is not None

    @classmethod
    def build(cls, model, loss_fn, optimizer) -> Optional["FusedTrainStep"]:
        """The step of a model that plan_training accepts, else None (the caller runs the eager loop)."""
        t = plan_training(model, loss_fn, optimizer)
        if not t:
            return None
        return cls(model, loss_fn, optimizer, t)

    def _bind(self) -> None:
        """(Re)make the native stepper over the parameters' current arrays and gradient buffers."""
        for group in self.optimizer.param_groups:
            flat = self.optimizer._flat_for(group, force=True)
            if flat is None:
                raise RuntimeError("the optimizer could not lay its parameters out in one buffer")
        self._program = _C.MlpProgram([program_layer(blk, grads=True) for blk in self.plan.blocks])
        self._bound = [(p, p._data, p._grad_buf) for p in self.params]
        self._dropouts = sum(1 for blk in self.plan.blocks if blk.dropout_p() > 0)

    def accepts(self, x, y) -> bool:
        """Whether (x, y) is a batch this step takes as is: float32 CPU inputs of the first
        layer's width (after flattening) and int64 class labels, one per row. Anything else
        goes through the eager path, which gives PyTorch's errors for bad input."""
        if type(x) is not Tensor or type(y) is not Tensor or x._requires_grad or y._requires_grad:
            return False
        xd, yd = x._data, y._data
        return (type(xd) is np.ndarray and xd.dtype is _F32 and xd.ndim >= 2 and len(xd) > 0
                and xd.size == len(xd) * self.in_features and type(yd) is np.ndarray
                and yd.dtype == np.int64 and yd.shape == (len(xd),))

    def hold(self) -> "_Held":
        """Context for a run of steps with nothing else touching the model or optimizer between
        them (fit's epoch loop): each step after the first reuses the first one's checks and
        update arguments, and the optimizer's step counts are written once, at the end (or at
        ``flush()``, before anything else steps the optimizer)."""
        return _Held(self)

    def flush(self) -> None:
        """Write the deferred step bookkeeping of a held run and drop what it reused."""
        pending, self._pending, self._next = self._pending, None, None
        if pending is not None:
            self.optimizer._flat_update_done(self.optimizer.param_groups[0], pending)

    def __call__(self, x: Tensor, y: Tensor) -> tuple[float, int]:
        xd, yd = x._data, y._data
        if xd.ndim != 2:
            xd = xd.reshape(xd.shape[0], -1)
        if xd.dtype is not _F32 or not xd.flags.c_contiguous:
            xd = np.ascontiguousarray(xd, dtype=np.float32)
        if yd.dtype != np.int64 or not yd.flags.c_contiguous:
            yd = np.ascontiguousarray(yd, dtype=np.int64)
        st = self._program
        update = self._next
        if update is None:
            update = self._prepare()
            st = self._program
        gen = _random.default_generator
        seeds, offsets = [], []
        for _ in range(self._dropouts):
            s, o = gen.philox()
            seeds.append(s)
            offsets.append(o)
        lf = self.loss_fn
        native = None if update is None else self._native_of(update)
        loss, correct = st.train_step(xd, yd, seeds, offsets, None if lf.weight is None else lf.weight._data,
                                      lf.ignore_index, float(lf.label_smoothing), native)
        opt = self.optimizer
        if update is None:
            opt.step()
        elif self._holding:
            self._pending = update
            self._next = update.next()
            self._native = (self._next, native.next())
        else:
            opt._flat_update_done(opt.param_groups[0], update)
        return float(np.float32(loss)), correct  # the value a float32 loss tensor's item() gives

    def steps(self, x: Tensor, y: Tensor, sizes: list) -> tuple[list, int]:
        """Consecutive steps over the rows of (x, y), one per entry of `sizes` (the rows of each
        batch, in order), in one native call: returns each step's loss and the rows predicted
        right in all. Bitwise the same as calling the step on each batch in turn (which it
        does when the optimizer is not updated natively). Under plain SGD the steps before
        the last leave their weight gradients unstored (the next step would overwrite them
        unread); ``.grad`` afterwards holds the last step's, as it would. ``accepts(x, y)``
        must hold."""
        xd, yd = x._data, y._data
        if xd.ndim != 2:
            xd = xd.reshape(xd.shape[0], -1)
        if not xd.flags.c_contiguous:
            xd = np.ascontiguousarray(xd)
        if not yd.flags.c_contiguous:
            yd = np.ascontiguousarray(yd)
        st = self._program
        update = self._next
        if update is None:
            update = self._prepare()
            st = self._program
        if update is None:  # the optimizer steps outside the native call: one batch at a time
            losses, correct, at = [], 0, 0
            for n in sizes:
                value, right = self(_wrap(xd[at:at + n]), _wrap(yd[at:at + n]))
                losses.append(value)
                correct += right
                at += n
            return losses, correct
        gen = _random.default_generator
        seeds, offsets = [], []
        for _ in range(self._dropouts * len(sizes)):
            s, o = gen.philox()
            seeds.append(s)
            offsets.append(o)
        lf = self.loss_fn
        losses, correct = st.train_steps(xd, yd, sizes, seeds, offsets,
                                         None if lf.weight is None else lf.weight._data, lf.ignore_index,
                                         float(lf.label_smoothing), self._native_of(update))
        last = update.after(len(sizes) - 1)  # the update the last of the steps applied
        if self._holding:
            self._pending = last
            self._next = last.next()
        else:
            self.optimizer._flat_update_done(self.optimizer.param_groups[0], last)
        # the values a float32 loss tensor's item() gives
        return losses.astype(np.float32).tolist(), int(correct.sum())

    def _native_of(self, update):
        """`update` as the program takes it (``FlatUpdate.native()``), made once per update: a held
        run's next single step gets it from the last one natively (``MlpUpdate.next()``)."""
        cached = self._native
        if cached is not None and cached[0] is update:
            return cached[1]
        native = update.native()
        self._native = (update, native)
        return native

    def _prepare(self):
        """Check (and if needed rebind) the stepper against the parameters as they are now, make the
        gradient buffers the parameters' .grad, and return the optimizer's update (None: none native)."""
        self.flush()
        st = self._program
        if st is None or any(p._data is not d or p._grad_buf is not g
                                                     for p, d, g in self._bound):
            self._bind()
        for p, _, g in self._bound:  # the gradients this step writes are the parameters' .grad
            pg = p.grad
            if pg is None or pg._data is not g:
                p.grad = _wrap(g)
        return self.optimizer._flat_update(self.optimizer.param_groups[0]) if self._native_update else None


class _Held:
    def __init__(self, step: FusedTrainStep):
        self.step = step

    def __enter__(self) -> FusedTrainStep:
        self.step.flush()
        self.step._holding = True
        return self.step

    def __exit__(self, *exc) -> bool:
        self.step._holding = False
        self.step.flush()
        return False
