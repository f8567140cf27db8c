"""Eager ``Sequential`` MLPs in one native call each way (``model(x)``, then ``loss.backward()``).

A ``Sequential`` that ``fastmlp.nn.plan`` accepts — Linear layers, each optionally
followed by a fusable activation (ReLU, LeakyReLU, Sigmoid, Tanh, GELU) and a Dropout
(optionally behind a leading ``Flatten`` and with ``Identity`` anywhere) — called on
a float32 CPU tensor runs its whole forward pass in one native call
(``fastmlp._C.MlpProgram``, see ``fastmlp.nn.plan``) and records one autograd node, whose backward computes
every layer's gradients in one more call, writing them straight into the
parameters' ``.grad`` as the per-layer nodes would. The kernels and their order are
those of the module-by-module path, and dropout draws the same generator offsets
in the same order, so outputs and gradients are bitwise the same; only the graph is
coarser (``out.grad_fn`` is one ``MlpChainBackward`` whose edges are the input and
every parameter); under ``no_grad`` the output has no graph. On other dtypes or
devices the plan runs block by block (``run_blocks``); anything the plan refuses
runs module by module.

The Python work of a forward and backward shrinks from a node and a native call
per layer to one of each, which is most of a small network's step.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .. import _C
from .. import random as _random
from ..autograd import HANDLED, Node, _Engine, _GradMode, grad_sink
from ..backend.acts import IDENTITY, backward_needs_input
from ..tensor import Tensor, _result, _wrap
from . import functional as F
from .layers import Dropout, Flatten, Linear, _Activation
from .module import _hook_version, _structure_version
from .plan import Plan, Refusal, check_parameters, plan_modules, program_layer

# Sequential takes the native chain only while this is true (the tests compare it with the
# module-by-module path).
enabled = True

_F32 = np.dtype(np.float32)
_ndarray = np.ndarray


def _settable(m) -> bool:
    """Whether a module has attributes that change what the chain computes: a Dropout's p and
    mode, a Flatten's dims, an activation's parameter or fusability (LeakyReLU's slope, GELU's
    approximation). The chain rechecks those on every call (see _settings)."""
    t = type(m)
    if t is Dropout or t is Flatten:
        return True
    return isinstance(m, _Activation) and (t.act_param is not _Activation.act_param or
                                           t.fusable is not _Activation.fusable)


def _settings(mods: tuple) -> tuple:
    """The settings of the modules that have any (see _settable), in order."""
    out = []
    for m in mods:
        t = type(m)
        if t is Dropout:
            out.append((m.p, m.training))
        elif t is Flatten:
            out.append((m.start_dim, m.end_dim))
        else:
            out.append((m.fusable(), m.act_param()))
    return tuple(out)


class _Cached:
    """What Chain and NoChain remember of the modules they were built for: the modules, the
    settings of those that have any (see _settable) and the hooks (by the global hook version:
    a plan depends on which modules have hooks)."""

    def __init__(self, mods: tuple):
        self.mods = mods
        self.settable = tuple(m for m in mods if _settable(m))
        self.settings = _settings(self.settable)
        self.hooks = _hook_version[0]

    def settings_current(self) -> bool:
        if self.hooks != _hook_version[0]:
            return False
        return not self.settable or _settings(self.settable) == self.settings


class Chain(_Cached):
    """The native chain of one Sequential, valid while its modules, their parameter arrays and
    their settings (see _settable) stay as they were when it was built."""

    def __init__(self, mods: tuple, plan: Plan):
        super().__init__(mods)
        self.plan = plan
        blocks = plan.blocks
        self.flatten = plan.flatten
        self.linears = tuple(b.linear for b in blocks)
        self.params = tuple(p for lin in self.linears for p in (lin.weight, lin.bias))
        self.arrays = tuple(None if p is None else p._data for p in self.params)
        self.weight_arrays = self.arrays[::2]  # what each backward reads (see ChainBackward)
        self.in_features = self.linears[0].weight._data.shape[1]
        self.shapes = tuple(None if p is None else p._data.shape for p in self.params)
        self.native = _C.MlpProgram([program_layer(b) for b in blocks])
        self.draws = self.native.dropout_layers
        last = blocks[-1]
        self.output_saved = last.act != IDENTITY and not backward_needs_input(last.act) and last.dropout_p() == 0
        self.free: list = []  # tapes whose backward has run, for the next forward
        self.structure = _structure_version[0]

    @staticmethod
    def build(mods: tuple):
        """The chain of `mods`, or a NoChain that remembers why they have none (and their plan,
        when only their parameters keep them off the native program)."""
        p = plan_modules(mods)
        if not p:
            return NoChain(mods, p)
        why = check_parameters(p)
        if why:
            return NoChain(mods, Refusal(why), p)
        return Chain(mods, p)

    def current(self, mods: tuple) -> bool:
        """Whether this chain still describes `mods` (same modules, parameters and dropout modes)."""
        if self.structure != _structure_version[0]:
            # something was registered or replaced somewhere: compare the modules themselves
            if mods != self.mods:
                return False
            for lin, w, b in zip(self.linears, self.params[::2], self.params[1::2]):
                if lin.weight is not w or lin.bias is not b:
                    return False
            self.structure = _structure_version[0]
        for p, a in zip(self.params, self.arrays):
            if p is not None and p._data is not a:
                return False
        return self.settings_current()

    def usable(self, x: Tensor) -> bool:
        """Whether this call can take the native chain: x a float32 CPU tensor of the right width."""
        xd = x._data
        if type(xd) is not _ndarray or xd.dtype is not _F32:
            return False
        shape = xd.shape
        if len(shape) == 2:
            return shape[1] == self.in_features and shape[0] > 0
        if not self.flatten or len(shape) < 3 or shape[0] == 0:
            return False
        width = 1
        for d in shape[1:]:
            width *= d
        return width == self.in_features

    def __call__(self, x: Tensor) -> Tensor:
        xd = x._data
        if xd.ndim != 2:
            xd = xd.reshape(xd.shape[0], -1)
        if not xd.flags.c_contiguous:
            xd = np.ascontiguousarray(xd)
        seeds, offsets = [], []
        if self.draws:
            gen = _random.default_generator
            for _ in range(self.draws):
                s, o = gen.philox()
                seeds.append(s)
                offsets.append(o)
        tape = self.free.pop() if self.free else _C.MlpTape()
        y = self.native.forward(xd, seeds, offsets, tape)
        if not _GradMode.enabled:
            self.free.append(tape)
            return _result(y, None)
        node = ChainBackward((x,) + self.params)
        if not any(node.kinds):  # nothing requires grad: an output without a graph, as the module path gives
            self.free.append(tape)
            return _result(y, None)
        node.chain = self
        node.tape = tape
        node.in_shape = x._data.shape
        node.x = xd
        node.weights = self.weight_arrays
        node.out = y if self.output_saved else None
        return _result(y, node)


def _linear_arrays(mods: tuple) -> tuple:
    return tuple(None if t is None else t._data for m in mods if type(m) is Linear for t in (m.weight, m.bias))


def run_blocks(plan: Plan, x: Tensor) -> Tensor:
    """The plan's blocks one op each: a Linear with its activation in the GEMM epilogue, then
    its Dropout module; the same values and gradients as running the modules one by one. For
    inputs or parameters the native program does not take (another device or dtype)."""
    if plan.flatten:
        x = x.flatten(1)
    for b in plan.blocks:
        lin = b.linear
        x = F.linear_act(x, lin.weight, lin.bias, b.act, b.act_param)
        if b.dropout is not None:
            x = b.dropout(x)
    return x


class NoChain(_Cached):
    """Modules that have no native chain (other module types, or parameters that are not float32
    CPU arrays); valid until the modules, their parameter arrays or their settings change.
    `plan` is their plan when only the parameters keep them off the program (run_blocks runs it)."""

    native = None

    def __init__(self, mods: tuple, refusal: Refusal, plan: Optional[Plan] = None):
        super().__init__(mods)
        self.refusal = refusal
        self.plan = plan
        self.arrays = _linear_arrays(mods)

    def current(self, mods: tuple) -> bool:
        if mods != self.mods:
            return False
        arrays = _linear_arrays(mods)
        if len(arrays) != len(self.arrays) or any(a is not b for a, b in zip(arrays, self.arrays)):
            return False
        return self.settings_current()


class ChainBackward(Node):
    """Backward of a native chain: every layer's weight and bias gradient (straight into .grad
    where the leaf allows, as functional.LinearBackward does) and the input gradient when it is needed."""

    __slots__ = ("chain", "tape", "in_shape", "x", "weights", "out")
    SAVES = True
    # The tape points at the input (the first layer's weight gradient reads it) and at the
    # output (the last activation's backward reads it when no dropout follows), and backward
    # reads the weights for the input gradients.
    SAVED_TENSORS = (("x", -1), ("weights", -1), ("out", -1))

    def name(self) -> str:
        return "MlpChainBackward"

    def backward(self, g):
        chain = self.chain
        if g.dtype is not _F32 or not g.flags.c_contiguous:
            g = np.ascontiguousarray(g, dtype=np.float32)
        edges = self.next
        kinds = self.kinds
        shapes = chain.shapes
        out = [None] * len(edges)
        sinks = []
        n = len(shapes) // 2
        dws, dbs, acc_w, acc_b = [None] * n, [None] * n, [False] * n, [False] * n
        writes = _Engine.leaf_writes
        for i in range(1, len(edges)):
            edge = edges[i]
            if edge is None:
                continue
            shape = shapes[i - 1]
            sink = grad_sink(edge) if kinds[i] == 2 and writes else None
            if sink is not None and sink[0].shape == shape:
                buf, acc = sink
                sinks.append((edge, buf, acc))
                out[i] = HANDLED
            else:  # a parameter computed by other ops, hooks, or autograd.grad collecting
                buf, acc = np.empty(shape, dtype=np.float32), False
                out[i] = buf
            layer, is_bias = divmod(i - 1, 2)
            if is_bias:
                dbs[layer], acc_b[layer] = buf, acc
            else:
                dws[layer], acc_w[layer] = buf, acc
        dx = chain.native.backward(self.tape, g, dws, dbs, acc_w, acc_b, edges[0] is not None)
        for leaf, buf, acc in sinks:
            if not acc:
                leaf._grad = _wrap(buf)
        if dx is not None:
            out[0] = dx.reshape(self.in_shape) if dx.shape != self.in_shape else dx
        return tuple(out)

    def release(self):
        tape = self.tape
        self.x = self.weights = self.out = None
        if tape is not None:
            self.tape = None
            self.chain.free.append(tape)

