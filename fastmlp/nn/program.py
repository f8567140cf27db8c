"""The native MLP program of a ``Sequential``: ``model(x)`` and ``loss.backward()`` in one
native call each, and ``fit``'s whole training steps in one call per run of batches.

A model that ``fastmlp.nn.plan`` accepts runs as one ``fastmlp._C.MlpProgram`` (see
``docs/architecture.md`` for the route table):

- **Eagerly** (``Sequential.forward`` on a float32 CPU tensor, :class:`Route`): the forward pass
  is one native call and records one autograd node, :class:`ProgramBackward`, whose backward
  computes every layer's gradients in one more call and writes them straight into the
  parameters' ``.grad`` as the per-layer nodes would. Under ``no_grad`` the output has no
  graph. On other dtypes or devices the modules run one by one.
- **As training steps** (``fit``, :class:`TrainStep`): forward, softmax cross-entropy, backward
  into the optimizer's flat gradient buffer and, for SGD, Adam and AdamW, the optimizer's
  update, layer by layer while the layer is still in cache; a run of steps over consecutive
  batches is one call.

Both issue the kernels of the layer-by-layer path in the same order and draw dropout masks
from the same generator offsets, so losses, gradients and parameters are bitwise those of
``zero_grad(); loss_fn(model(x), y).backward(); step()``.
"""
from __future__ import annotations

import contextlib
from typing import Optional

import numpy as np

from .. import _C, _autocast, _generation
from .. import random as _random
from ..autograd import HANDLED, Node, _Engine, _GradMode, grad_sink
from ..backend.acts import IDENTITY, backward_needs_input
from ..tensor import Tensor, _result, _wrap
from .layers import Linear
from .plan import native_update, plan_program, plan_training, program_layer

# Sequential takes the native program only while this is true (the tests compare it with the
# module-by-module path).
enabled = True

_F32 = np.dtype(np.float32)
_ndarray = np.ndarray


_NO_STREAMS = ((), ())


def _streams(n: int) -> tuple:
    """(seeds, offsets) of the next n dropout masks, drawn as the Dropout modules draw them."""
    if not n:
        return _NO_STREAMS
    pairs = [_random.default_generator.philox() for _ in range(n)]
    return [s for s, _ in pairs], [o for _, o in pairs]


def _rows(a: np.ndarray, dtype=None) -> np.ndarray:
    """`a` as a C-contiguous [rows, features] array (of `dtype` when given)."""
    if a.ndim > 2:
        a = a.reshape(a.shape[0], -1)
    if not a.flags.c_contiguous or (dtype is not None and a.dtype != dtype):
        a = np.ascontiguousarray(a, dtype=dtype)
    return a


def _takes(xd, width: int) -> bool:
    """Whether xd is a non-empty float32 CPU batch of rows `width` wide (after flattening)."""
    return (type(xd) is _ndarray and xd.dtype is _F32 and xd.ndim >= 2 and xd.shape[0] > 0
            and xd.size == xd.shape[0] * width)


class Route:
    """How one Sequential's forward runs: the native `program` of its `plan`, or None when the plan
    is a Refusal (then its modules run one by one). Valid while :meth:`current`."""

    def __init__(self, mods: tuple):
        self.generation = _generation.value[0]
        self.linear_params = tuple(t for m in mods if type(m) is Linear for t in (m.weight, m.bias) if t is not None)
        self.arrays = tuple(t._data for t in self.linear_params)
        p = self.plan = plan_program(mods)
        self.program = self._bf16 = None  # float32 and (made on demand) bfloat16 programs
        if p:
            self.program = _C.MlpProgram([program_layer(b) for b in p.blocks])
            self.in_features = p.in_features
            self.draws = self.program.dropout_layers
            last = p.blocks[-1]
            self.output_saved = (last.act != IDENTITY and not backward_needs_input(last.act)
                                 and last.dropout_p() == 0)
            self.params = tuple(t for b in p.blocks for t in (b.linear.weight, b.linear.bias))
            self.weights = tuple(t._data for t in self.params[::2])  # what each backward reads
            self.shapes = tuple(None if t is None else t._data.shape for t in self.params)
            self.free: list = []  # tapes whose backward has run, for the next forward

    def current(self) -> bool:
        """Whether the route still describes its model: the model generation (``fastmlp._generation``)
        is the one it was made in, and every Linear's parameters hold the arrays they held then."""
        if self.generation != _generation.value[0]:
            return False
        for p, a in zip(self.linear_params, self.arrays):
            if p._data is not a:
                return False
        return True

    def usable(self, x: Tensor) -> bool:
        """Whether the program takes x as is: a float32 CPU tensor of the first layer's width."""
        xd = x._data
        return _takes(xd, self.in_features) and (len(xd.shape) == 2 or self.plan.flatten)

    def __call__(self, x: Tensor) -> Tensor:
        xd = _rows(x._data)
        program = self.program
        if _autocast.lowers(xd):  # under fastmlp.autocast: every product on the bfloat16 GEMM
            program = self._bf16 or self._make_bf16()
        seeds, offsets = _streams(self.draws)
        tape = self.free.pop() if self.free else _C.MlpTape()
        y = program.forward(xd, seeds, offsets, tape)
        node = ProgramBackward((x,) + self.params) if _GradMode.enabled else None
        if node is None or not any(node.kinds):  # no graph, as the module path gives
            self.free.append(tape)
            return _result(y, None)
        node.route, node.program, node.tape, node.in_shape, node.x = self, program, tape, x._data.shape, xd
        node.weights = self.weights
        node.out = y if self.output_saved else None
        return _result(y, node)

    def _make_bf16(self):
        self._bf16 = _C.MlpProgram([program_layer(b) for b in self.plan.blocks], bf16=True)
        return self._bf16


class ProgramBackward(Node):
    """Backward of the program's forward: every layer's weight and bias gradient (straight into
    .grad where the leaf allows, as functional.LinearBackward does) and the input gradient when
    it is needed."""

    __slots__ = ("route", "program", "tape", "in_shape", "x", "weights", "out")
    SAVES = True
    # The tape points at the input (the first layer's weight gradient reads it) and at the
    # output (the last activation's backward reads it when no dropout follows), and backward
    # reads the weights for the input gradients.
    SAVED_TENSORS = (("x", -1), ("weights", -1), ("out", -1))

    def name(self) -> str:
        return "MlpProgramBackward"

    def backward(self, g):
        g = _rows(g, _F32)
        edges, kinds, shapes = self.next, self.kinds, self.route.shapes
        out = [None] * len(edges)
        n = len(shapes) // 2
        grads, acc, sinks = [None] * (2 * n), [False] * (2 * n), []
        writes = _Engine.leaf_writes
        for i in range(1, len(edges)):
            edge = edges[i]
            if edge is None:
                continue
            sink = grad_sink(edge) if kinds[i] == 2 and writes else None
            if sink is not None and sink[0].shape == shapes[i - 1]:
                grads[i - 1], acc[i - 1] = sink
                sinks.append((edge,) + sink)
                out[i] = HANDLED
            else:  # a parameter computed by other ops, hooks, or autograd.grad collecting
                grads[i - 1] = out[i] = np.empty(shapes[i - 1], dtype=np.float32)
        dx = self.program.backward(self.tape, g, grads, acc, edges[0] is not None)
        for leaf, buf, accumulated in sinks:
            if not accumulated:
                leaf._grad = _wrap(buf)
        if dx is not None:
            out[0] = dx.reshape(self.in_shape) if dx.shape != self.in_shape else dx
        return tuple(out)

    def release(self):
        tape = self.tape
        self.x = self.weights = self.out = None
        if tape is not None:
            self.tape = None
            self.route.free.append(tape)


class TrainStep:
    """``fit``'s native training step: ``step(x, y) -> (loss, correct)`` and ``steps(x, y, sizes)``
    for a run of batches, for a model, loss and optimizer that ``plan_training`` accepts. Built
    under ``fastmlp.autocast`` (``fit(precision="bf16")``), every product runs on the bfloat16
    GEMM, as the eager step under autocast runs them."""

    def __init__(self, model, loss_fn, optimizer, plan, bf16: bool = False):
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.bf16 = bf16
        self.plan = plan
        self.params = [t for b in self.plan.blocks for t in (b.linear.weight, b.linear.bias) if t is not None]
        self.in_features, self.classes = self.plan.in_features, self.plan.out_features
        self.program = None
        self._generation = -1  # the model generation the program was built in
        self._bound: tuple = ()  # the parameters' arrays and gradient buffers it was built over
        # SGD, Adam and AdamW themselves, with one parameter group, update inside the native
        # call; else optimizer.step() runs after each step.
        self._native_update = native_update(optimizer) is not None
        # A held run (see hold()): the update the next call reuses, as (FlatUpdate, its
        # MlpUpdate), and the last applied one whose bookkeeping (step counts) is still to be written.
        self._holding = False
        self._next = self._pending = None

    @classmethod
    def build(cls, model, loss_fn, optimizer) -> Optional["TrainStep"]:
        """The step of a model that plan_training accepts, else None (the caller runs the eager loop)."""
        t = plan_training(model, loss_fn, optimizer)
        return cls(model, loss_fn, optimizer, t, bf16=_autocast.lowers()) if t else None

    def accepts(self, x, y) -> bool:
        """Whether (x, y) is a batch this step takes as is: float32 CPU inputs of the first
        layer's width (after flattening) and int64 class labels, one per row. Anything else
        goes through the eager path, which gives PyTorch's errors for bad input."""
        if type(x) is not Tensor or type(y) is not Tensor or x._requires_grad or y._requires_grad:
            return False
        xd, yd = x._data, y._data
        return (_takes(xd, self.in_features) and type(yd) is _ndarray and yd.dtype == np.int64
                and yd.shape == (len(xd),))

    @contextlib.contextmanager
    def hold(self):
        """Context for a run of steps with nothing else touching the model or optimizer between
        them (fit's epoch loop): each call after the first reuses the first one's checks and
        update arguments, and the optimizer's step counts are written once, at the end (or at
        ``flush()``, before anything else steps the optimizer)."""
        self.flush()
        self._holding = True
        try:
            yield self
        finally:
            self._holding = False
            self.flush()

    def flush(self) -> None:
        """Write the deferred step bookkeeping of a held run and drop what it reused."""
        pending, self._pending, self._next = self._pending, None, None
        if pending is not None:
            self.optimizer._flat_update_done(self.optimizer.param_groups[0], pending)

    def __call__(self, x: Tensor, y: Tensor) -> tuple[float, int]:
        losses, correct = self.steps(x, y, [len(x._data)])
        return losses[0], correct

    def steps(self, x: Tensor, y: Tensor, sizes: list) -> tuple[list, int]:
        """Consecutive steps over the rows of (x, y), one per entry of `sizes` (the rows of each
        batch, in order): returns each step's loss and the rows predicted right in all. With
        the update native, all of them are one native call; under plain SGD the steps before
        the last leave their weight gradients unstored (the next step would overwrite them
        unread), and ``.grad`` afterwards holds the last step's, as it would. Bitwise the same
        as the eager steps. ``accepts(x, y)`` must hold."""
        xd, yd = _rows(x._data, _F32), _rows(y._data, np.int64)
        update, native = self._next or self._prepare()
        if update is None:  # the optimizer steps outside the native call: one batch at a time
            losses, correct, at = [], 0, 0
            for n in sizes:
                if at:
                    self._prepare()
                loss, right = self._run(xd[at:at + n], yd[at:at + n], [n], None)
                self.optimizer.step()
                losses += loss
                correct += right
                at += n
            return losses, correct
        losses, correct = self._run(xd, yd, sizes, native)
        last = update.after(len(sizes) - 1)  # the update the last of the steps applied
        if self._holding:  # the next call's update, natively too (MlpUpdate.next)
            self._pending, self._next = last, (last.next(), native.next(len(sizes)))
        else:
            self.optimizer._flat_update_done(self.optimizer.param_groups[0], last)
        return losses, correct

    def _run(self, xd, yd, sizes, native) -> tuple[list, int]:
        lf = self.loss_fn
        seeds, offsets = _streams(self.program.dropout_layers * len(sizes))
        losses, correct = self.program.train_steps(xd, yd, sizes, seeds, offsets,
                                                   None if lf.weight is None else lf.weight._data,
                                                   lf.ignore_index, float(lf.label_smoothing), native)
        # the values a float32 loss tensor's item() gives
        return losses.astype(np.float32).tolist(), int(correct.sum())

    def _prepare(self):
        """Rebuild the program if the model generation moved on since it was built or a
        parameter holds another array or gradient buffer, make the gradient buffers the parameters'
        .grad, and return the optimizer's update and its MlpUpdate ((None, None): not native)."""
        self.flush()
        if self._generation != _generation.value[0] or any(
                p._data is not d or p._grad_buf is not g for p, d, g in self._bound):
            for group in self.optimizer.param_groups:
                if self.optimizer._flat_for(group, force=True) is None:
                    raise RuntimeError("the optimizer could not lay its parameters out in one buffer")
            self.program = _C.MlpProgram([program_layer(b, grads=True) for b in self.plan.blocks], bf16=self.bf16)
            self._generation = _generation.value[0]
            self._bound = tuple((p, p._data, p._grad_buf) for p in self.params)
        for p, _, g in self._bound:  # the gradients the program writes are the parameters' .grad
            pg = p.grad
            if pg is None or pg._data is not g:
                p.grad = _wrap(g)
        update = self.optimizer._flat_update(self.optimizer.param_groups[0]) if self._native_update else None
        return (None, None) if update is None else (update, update.native())

