"""One plan for a model's forward pass and training step: whether the native MLP program runs
it, and if not, why.

A step of a model runs one of two ways:

- **layer by layer**: each module's ``forward``, one autograd node per op (always correct,
  for any model);
- **the native MLP program** (``fastmlp._C.MlpProgram``): a ``Sequential`` of Linear blocks —
  each Linear optionally followed by a fusable activation and a Dropout, with an optional
  leading ``Flatten`` and ``Identity`` anywhere — runs its forward in one native call and its
  backward in one more (``model(x)`` then ``loss.backward()``); trained by ``fit`` with
  ``CrossEntropyLoss``, a whole step (forward, loss, backward and the SGD/Adam/AdamW update)
  is one native call, and a run of steps over consecutive batches is one call too.

The rules that decide between them live here, once: :func:`plan_modules` for a forward pass,
:func:`plan_training` for a ``fit`` step. Each returns a :class:`Plan` or a :class:`Refusal`
that says, in words, what kept the model off the program. :func:`explain` reports it for a
user (``FASTMLP_EXPLAIN=1`` logs it to stderr once per model as it is first run).

The program computes bitwise what the layer-by-layer path computes (same kernels, same
order, same dropout streams); a model it does not cover is never an error, only slower.
"""
from __future__ import annotations

import os
import sys
import weakref
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from ..backend.acts import IDENTITY
from .layers import Dropout, Flatten, Identity, Linear, _Activation
from .module import Module

_F32 = np.dtype(np.float32)


@dataclass(frozen=True)
class Block:
    """One Linear layer of a plan, with the activation fused into its GEMM epilogue (IDENTITY:
    none) and the Dropout module that follows it (None: none)."""

    linear: Linear
    act: int
    act_param: float
    dropout: Optional[Dropout]
    index: int  # the Linear's position in the Sequential

    def dropout_p(self) -> float:
        """The dropout probability this block applies now (0 in eval mode or without dropout)."""
        d = self.dropout
        return float(d.p) if d is not None and d.training else 0.0


def program_layer(block: Block, grads: bool = False):
    """The native program's description of a block (``fastmlp._C.MlpLayer``); with `grads`,
    its gradients go to the parameters' flat gradient buffers (see Optimizer._flat_for)."""
    from .. import _C

    w, b = block.linear.weight, block.linear.bias
    layer = _C.MlpLayer(w._data, None if b is None else b._data, block.act, block.act_param, block.dropout_p())
    if grads:
        layer.weight_grad = w._grad_buf
        layer.bias_grad = None if b is None else b._grad_buf
    return layer


@dataclass(frozen=True)
class Plan:
    """A model the native MLP program runs: an optional leading flatten, then `blocks`."""

    flatten: bool
    blocks: tuple

    @property
    def in_features(self) -> int:
        return self.blocks[0].linear.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.blocks[-1].linear.weight.shape[0]

    def describe(self) -> str:
        parts = []
        for b in self.blocks:
            w = b.linear.weight.shape
            s = f"Linear({w[1]}, {w[0]})"
            if b.act != IDENTITY:
                s += f"+{_ACT_NAMES.get(b.act, b.act)}"
            if b.dropout is not None:
                s += f"+Dropout({b.dropout.p})"
            parts.append(s)
        return ("Flatten, " if self.flatten else "") + ", ".join(parts)


@dataclass(frozen=True)
class Refusal:
    """Why the native program does not run a model: `reason` is a phrase for a user."""

    reason: str

    def __bool__(self) -> bool:  # a refusal is falsy, so `if plan:` reads naturally
        return False


_ACT_NAMES = {1: "ReLU", 2: "LeakyReLU", 3: "Sigmoid", 4: "Tanh", 5: "GELU"}


def _where(i: int, m: Module) -> str:
    return f"layer {i} ({type(m).__name__})"


def _hook_reason(i: int, m: Module) -> Optional[str]:
    if m._forward_pre_hooks:
        return f"a forward pre-hook on {_where(i, m)}"
    if m._forward_hooks:
        return f"a forward hook on {_where(i, m)}"
    return None


def _activation_refusal(i: int, m: _Activation) -> Optional[str]:
    """Why an activation can't be fused into the Linear before it (None: it can)."""
    if m.act < 0:
        return f"{_where(i, m)} is not an activation the GEMM epilogue applies"
    if type(m).__module__ != _Activation.__module__:
        return f"{_where(i, m)} is a subclass whose forward may compute something else"
    if not m.fusable():
        return f"{type(m).__name__}({m.extra_repr()}) at layer {i} has no fused kernel"
    return None


def plan_modules(mods: tuple) -> Union[Plan, Refusal]:
    """The plan for a forward pass through the modules of a Sequential, in order, or why the
    program does not run them. Checks types, settings and hooks; not the parameters' arrays
    (see :func:`check_parameters`)."""
    blocks: list = []
    flatten = False
    i, n = 0, len(mods)
    while i < n:
        m = mods[i]
        hook = _hook_reason(i, m)
        if hook:
            return Refusal(hook)
        t = type(m)
        if t is Identity:
            i += 1
            continue
        if t is Flatten:
            if blocks or flatten or m.start_dim != 1 or m.end_dim != -1:
                return Refusal(f"Flatten({m.extra_repr()}) at layer {i}: only a leading Flatten() is fused")
            flatten = True
            i += 1
            continue
        if t is not Linear:
            if isinstance(m, _Activation) or t is Dropout:
                return Refusal(f"{_where(i, m)} does not follow a Linear")
            return Refusal(f"{_where(i, m)} is not a layer the program runs (Linear, activation, Dropout, "
                           "Flatten, Identity)")
        lin, index = m, i
        if 0 in lin.weight.shape:
            return Refusal(f"layer {i} is a Linear with 0 features")
        act, param, drop = IDENTITY, 0.0, None
        i += 1
        while i < n and type(mods[i]) is Identity and not mods[i]._has_hooks():
            i += 1
        if i < n and isinstance(mods[i], _Activation):
            a = mods[i]
            why = _hook_reason(i, a) or _activation_refusal(i, a)
            if why:
                return Refusal(why)
            act, param = a.act, float(a.act_param())
            i += 1
        if i < n and type(mods[i]) is Dropout:
            d = mods[i]
            why = _hook_reason(i, d)
            if why:
                return Refusal(why)
            if not 0.0 <= d.p < 1.0:
                return Refusal(f"Dropout(p={d.p}) at layer {i}: p must be in [0, 1)")
            drop = d
            i += 1
        blocks.append(Block(lin, act, param, drop, index))
    if not blocks:
        return Refusal("no Linear layer")
    return Plan(flatten, tuple(blocks))


def check_parameters(plan: Plan) -> Optional[str]:
    """Why the program can't use the parameters of `plan` as they are (None: it can): they must
    be float32 C-contiguous CPU arrays, leaves, each used once."""
    seen = set()
    for b in plan.blocks:
        for name, t in (("weight", b.linear.weight), ("bias", b.linear.bias)):
            if t is None:
                continue
            d = t._data
            where = f"layer {b.index} (Linear) {name}"
            if type(d) is not np.ndarray:
                return f"{where} is not on the CPU"
            if d.dtype is not _F32:
                return f"{where} is {d.dtype}, not float32"
            if not d.flags.c_contiguous:
                return f"{where} is not contiguous"
            if t.grad_fn is not None:
                return f"{where} is computed by other ops, not a leaf"
            # A parameter used twice (a Linear repeated, tied weights) gets the sum of two
            # gradients, which the layer-by-layer path accumulates and the program does not.
            if id(t) in seen or id(d) in seen:
                return f"{where} is used by two layers (tied or repeated)"
            seen.add(id(t))
            seen.add(id(d))
    return None


def plan_program(mods: tuple) -> Union[Plan, Refusal]:
    """plan_modules, then check_parameters: the plan the native program runs as the parameters are
    now, or why it does not."""
    p = plan_modules(mods)
    why = check_parameters(p) if p else None
    return Refusal(why) if why else p


def native_update(optimizer) -> Optional[str]:
    """The name of the optimizer whose update the program applies inside its training step: SGD,
    Adam or AdamW themselves (a subclass may change step()) with one parameter group; None: the
    step calls ``optimizer.step()`` after the native call."""
    from ..optim.adam import Adam, AdamW
    from ..optim.sgd import SGD

    if type(optimizer) not in (SGD, Adam, AdamW) or len(optimizer.param_groups) != 1:
        return None
    return type(optimizer).__name__


def plan_training(model, loss_fn, optimizer) -> Union[Plan, Refusal]:
    """The plan for a whole training step of `model` with `loss_fn` and `optimizer` (what
    ``fit`` runs natively; :func:`native_update` says whether the optimizer's update runs inside
    it), or why ``fit`` runs the layer-by-layer loop instead."""
    from .container import Sequential
    from .loss import CrossEntropyLoss

    if type(model) is not Sequential:
        return Refusal(f"the model is a {type(model).__name__}, not a Sequential")
    if model._has_hooks():
        return Refusal("a forward hook on the Sequential itself")
    p = plan_modules(tuple(model))
    if not p:
        return p
    for i, m in enumerate(model.modules()):
        if not m.training:
            return Refusal(f"{'the Sequential' if i == 0 else type(m).__name__} is in eval mode")
    last = p.blocks[-1]
    if last.act != IDENTITY or last.dropout is not None:
        what = "an activation" if last.act != IDENTITY else "Dropout"
        return Refusal(f"{what} after the last Linear (the loss takes the last Linear's output as logits)")
    if type(loss_fn) is not CrossEntropyLoss:
        return Refusal(f"the loss is {type(loss_fn).__name__}, not CrossEntropyLoss")
    if loss_fn._has_hooks():
        return Refusal("a forward hook on the loss")
    if loss_fn.reduction != "mean":
        return Refusal(f"CrossEntropyLoss(reduction='{loss_fn.reduction}'): the program computes the mean")
    w = loss_fn.weight
    if w is not None and (type(w._data) is not np.ndarray or w._data.dtype != _F32):
        return Refusal("the loss's class weights are not a float32 CPU tensor")
    why = check_parameters(p)
    if why:
        return Refusal(why)
    params = [t for b in p.blocks for t in (b.linear.weight, b.linear.bias) if t is not None]
    ids = {id(t) for t in params}
    if ids != {id(t) for t in model.parameters()}:
        return Refusal("the model has parameters outside its Linear layers")
    opt_params = [t for g in optimizer.param_groups for t in g["params"]]
    if {id(t) for t in opt_params} != ids or len(opt_params) != len(ids):
        return Refusal("the optimizer does not hold exactly the model's parameters")
    for t in params:
        if not t.requires_grad:
            return Refusal("a frozen parameter (requires_grad=False)")
        if t._hooks:
            return Refusal("a gradient hook on a parameter")
    return p


def explain(model, loss_fn=None, optimizer=None) -> str:
    """Which route a model's steps take, and why a faster one was refused
    (fastmlp's own; PyTorch has no counterpart).

    With only `model`: the route of ``model(x)`` on a float32 CPU tensor. With `loss_fn` and
    `optimizer`: also the route of a ``fit`` training step.
    """
    from .container import Sequential

    p = plan_program(tuple(model)) if type(model) is Sequential else None
    if p:
        lines = [f"forward: one native MLP program call ({p.describe()}), and one for its backward"]
    elif p is not None:
        lines = [f"forward: layer by layer, because {p.reason}"]
    else:
        lines = [f"forward: layer by layer ({type(model).__name__}.forward runs as written, one op at a time; a "
                 "Sequential of Linear blocks runs as the native program)"]
    if loss_fn is not None or optimizer is not None:
        if loss_fn is None or optimizer is None:
            raise ValueError("explain(): pass both loss_fn and optimizer to explain a training step")
        t = plan_training(model, loss_fn, optimizer)
        if t:
            kind = native_update(optimizer)
            upd = (f"the {kind} update inside the same call" if kind else
                   f"then {type(optimizer).__name__}.step() (its update is not native)")
            lines.append(f"fit: each step is one native call (forward, loss, backward, {upd}); runs of steps over "
                         "consecutive batches of array-backed loaders are one call")
        else:
            lines.append(f"fit: the layer-by-layer loop, because {t.reason}")
    return "\n".join(lines)


# FASTMLP_EXPLAIN=1: say once per model (and once more for its training step) which route it takes.
_explained = {False: weakref.WeakSet(), True: weakref.WeakSet()}


def explain_enabled() -> bool:
    return os.environ.get("FASTMLP_EXPLAIN", "") not in ("", "0")


def log_once(model, loss_fn=None, optimizer=None) -> None:
    """Print explain() to stderr the first time a model is run (with FASTMLP_EXPLAIN=1)."""
    seen = _explained[loss_fn is not None]
    if model in seen:
        return
    seen.add(model)
    text = explain(model, loss_fn, optimizer)
    print(f"fastmlp: {type(model).__name__} at {id(model):#x}:\n  " + text.replace("\n", "\n  "), file=sys.stderr)
