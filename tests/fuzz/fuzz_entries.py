"""The fuzzed entry points: one table entry each.

An entry names the call, its parameters (in call order) and which of them it writes.
A parameter is an array (`Arr`: its usual dtype and a shape template over the symbolic
sizes M, N, K, so that most draws agree with each other and reach the kernel), a list
of arrays (`Lst`, the optimizers'), or a scalar (`Int`, `Float`, `Bool`, `Str`).
Adding an entry point to the fuzz suite is adding one `Entry` to ENTRIES.

fastmlp._C.MlpProgram is fuzzed through its three calls (forward, backward, train_step) on
programs built from the drawn arrays, so its constructor's checks are fuzzed too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np


@dataclass(frozen=True)
class Arr:
    shape: tuple                 # symbols ("M", "N", "K") or ints
    dtype: str = "float32"
    fill: str = "normal"         # the usual fill; fuzzing also draws the adversarial ones
    optional: bool = False       # None is a usual value


@dataclass(frozen=True)
class Lst:
    item_dtype: str = "float32"
    optional: bool = False


@dataclass(frozen=True)
class Int:
    usual: tuple = (0, 1, 2)


@dataclass(frozen=True)
class Float:
    usual: tuple = (0.0, 0.5, 1.0)


@dataclass(frozen=True)
class Bool:
    pass


@dataclass(frozen=True)
class Str:
    usual: tuple


@dataclass(frozen=True)
class Entry:
    name: str
    params: dict                         # name -> spec, in call order
    writes: frozenset = frozenset()      # parameters the call may write into
    call: Optional[Callable[[dict], Any]] = field(default=None, compare=False)  # None: fastmlp._C.<name>(**kw)


def _C_call(name: str) -> Callable[[dict], Any]:
    def run(kw: dict) -> Any:
        from fastmlp import _C

        return getattr(_C, name)(**kw)
    return run


def _program(kw: dict, grads: bool):
    from fastmlp import _C

    layer = _C.MlpLayer(kw["weight"], kw["bias"], kw["act"], 0.01, kw["dropout"])
    if grads:
        layer.weight_grad, layer.bias_grad = kw["weight_grad"], kw["bias_grad"]
    return _C.MlpProgram([layer])


def _program_forward_backward(kw: dict) -> Any:
    from fastmlp import _C

    prog = _program(kw, grads=False)
    tape = _C.MlpTape()
    draws = [1] * prog.dropout_layers
    prog.forward(kw["x"], draws, draws, tape)
    return prog.backward(tape, kw["grad"], [kw["weight_grad"], kw["bias_grad"]], [kw["accumulate"]] * 2,
                         kw["need_dx"])


def _program_train_step(kw: dict) -> Any:
    prog = _program(kw, grads=True)
    draws = [1] * prog.dropout_layers
    x = kw["x"]
    rows = [x.shape[0] if isinstance(x, np.ndarray) and x.ndim else 1]
    return prog.train_steps(x, kw["target"], rows, draws, draws, label_smoothing=kw["label_smoothing"])


RED = Str(("mean", "sum", "none"))
ACT = Int((0, 1, 2, 3, 4, 5))
LABELS = "labels"
_LAYER = {"weight": Arr(("N", "K")), "bias": Arr(("N",), optional=True), "act": ACT,
          "dropout": Float((0.0, 0.5))}


_NATIVE = [
    Entry("gemm", {"a": Arr(("M", "K")), "b": Arr(("K", "N")), "c": Arr(("M", "N")), "trans_a": Bool(),
                   "trans_b": Bool(), "alpha": Float((1.0, 0.5)), "beta": Float((0.0, 1.0)),
                   "bias": Arr(("N",), optional=True), "act": ACT, "act_param": Float((0.0, 0.1)),
                   "preact": Arr(("M", "N"), optional=True)},
          frozenset({"c", "preact"})),
    Entry("linear_forward", {"x": Arr(("M", "K")), "weight": Arr(("N", "K")), "bias": Arr(("N",), optional=True),
                             "act": ACT, "act_param": Float((0.0, 0.1)), "keep_preact": Bool()}),
    Entry("linear_backward", {"grad_output": Arr(("M", "N")), "x": Arr(("M", "K")), "weight": Arr(("N", "K")),
                              "need_dx": Bool(), "grad_weight": Arr(("N", "K"), optional=True),
                              "grad_bias": Arr(("N",), optional=True), "accumulate_weight": Bool(),
                              "accumulate_bias": Bool()},
          frozenset({"grad_weight", "grad_bias"})),
    Entry("act_forward", {"x": Arr(("M", "N")), "act": ACT, "param": Float((0.0, 0.01)),
                          "out": Arr(("M", "N"), optional=True)}, frozenset({"out"})),
    Entry("act_backward", {"dy": Arr(("M", "N")), "saved": Arr(("M", "N")), "act": ACT, "param": Float((0.0, 0.01)),
                           "out": Arr(("M", "N"), optional=True), "accumulate": Bool()}, frozenset({"out"})),
    Entry("softmax_forward", {"x": Arr(("M", "N")), "log": Bool(), "out": Arr(("M", "N"), optional=True)},
          frozenset({"out"})),
    Entry("softmax_backward", {"dy": Arr(("M", "N")), "y": Arr(("M", "N")), "log": Bool(),
                               "out": Arr(("M", "N"), optional=True)}, frozenset({"out"})),
    Entry("softmax_xent", {"logits": Arr(("M", "N")), "target": Arr(("M",), "int64", LABELS),
                           "weight": Arr(("N",), fill="unit", optional=True), "ignore_index": Int((-100, 0, 1)),
                           "label_smoothing": Float((0.0, 0.1)), "reduction": RED, "want_grad": Bool(),
                           "grad_scale": Float((1.0, 0.5))}),
    Entry("nll", {"logp": Arr(("M", "N")), "target": Arr(("M",), "int64", LABELS),
                  "weight": Arr(("N",), fill="unit", optional=True), "ignore_index": Int((-100, 0)),
                  "reduction": RED, "want_grad": Bool(), "grad_scale": Float((1.0,))}),
    Entry("pointwise_loss", {"input": Arr(("M", "N"), fill="unit"), "target": Arr(("M", "N"), fill="unit"),
                             "kind": Int((0, 1, 2, 3)), "weight": Arr(("M", "N"), fill="unit", optional=True),
                             "reduction": RED, "want_grad": Bool(), "grad_scale": Float((1.0,))}),
    Entry("colsum", {"x": Arr(("M", "N")), "out": Arr(("N",), optional=True), "accumulate": Bool()},
          frozenset({"out"})),
    Entry("rowsum", {"x": Arr(("M", "N")), "out": Arr(("M",), optional=True), "accumulate": Bool()},
          frozenset({"out"})),
    Entry("dropout_forward", {"x": Arr(("M", "N")), "p": Float((0.0, 0.5, 1.0)), "seed": Int((0, 1, 2**64 - 1)),
                              "offset": Int((0, 5)), "out": Arr(("M", "N"), optional=True), "want_mask": Bool()},
          frozenset({"out"})),
    Entry("dropout_backward", {"dy": Arr(("M", "N")), "mask": Arr(("M", "N"), "uint8", "unit"),
                               "p": Float((0.0, 0.5)), "out": Arr(("M", "N"), optional=True), "accumulate": Bool()},
          frozenset({"out"})),
    Entry("philox_bits", {"seed": Int((0, 1)), "offset": Int((0, 1)), "n": Int((0, 1, 5, 1000))}),
    Entry("sgd_step", {"params": Lst(), "grads": Lst(), "momentum_buffers": Lst(optional=True),
                       "lr": Float((0.1, 0.0)), "momentum": Float((0.0, 0.9)), "dampening": Float((0.0,)),
                       "weight_decay": Float((0.0, 0.01)), "nesterov": Bool(), "maximize": Bool(),
                       "first_step": Bool()},
          frozenset({"params", "momentum_buffers"})),
    Entry("adam_step", {"params": Lst(), "grads": Lst(), "exp_avgs": Lst(), "exp_avg_sqs": Lst(),
                        "max_exp_avg_sqs": Lst(optional=True), "lr": Float((1e-3,)), "beta1": Float((0.9,)),
                        "beta2": Float((0.999,)), "eps": Float((1e-8,)), "weight_decay": Float((0.0, 0.01)),
                        "step": Int((1, 2, 1000)), "amsgrad": Bool(), "maximize": Bool(),
                        "decoupled_weight_decay": Bool()},
          frozenset({"params", "exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs"})),
    Entry("set_num_threads", {"n": Int((1, 2))}),
    Entry("set_isa", {"name": Str(("generic", "avx2", "avx512", "reference"))}),
    Entry("MlpProgram.forward+backward", {**_LAYER, "x": Arr(("M", "K")), "grad": Arr(("M", "N")),
                                          "weight_grad": Arr(("N", "K"), optional=True),
                                          "bias_grad": Arr(("N",), optional=True), "accumulate": Bool(),
                                          "need_dx": Bool()},
          frozenset({"weight_grad", "bias_grad"}), call=_program_forward_backward),
    Entry("MlpProgram.train_step", {**_LAYER, "x": Arr(("M", "K")), "target": Arr(("M",), "int64", LABELS),
                                    "weight_grad": Arr(("N", "K")), "bias_grad": Arr(("N",), optional=True),
                                    "label_smoothing": Float((0.0, 0.1))},
          frozenset({"weight_grad", "bias_grad"}), call=_program_train_step),
]


# ---- the Python API's argument checks ----------------------------------------------------------

def _linear(kw: dict) -> Any:
    from fastmlp import nn

    return nn.Linear(kw["in_features"], kw["out_features"], bias=kw["bias"])


def _dropout(kw: dict) -> Any:
    import fastmlp
    from fastmlp import nn

    return nn.Dropout(kw["p"])(fastmlp.ones(3, 4))


def _optimizers(kw: dict) -> Any:
    from fastmlp import nn, optim

    params = nn.Linear(3, 2).parameters()
    if kw["adam"]:
        return optim.Adam(params, lr=kw["lr"], betas=(kw["b1"], kw["b2"]), eps=kw["eps"],
                          weight_decay=kw["weight_decay"])
    return optim.SGD(params, lr=kw["lr"], momentum=kw["b1"], weight_decay=kw["weight_decay"])


def _creation(fn: str) -> Callable[[dict], Any]:
    def run(kw: dict) -> Any:
        import fastmlp

        return getattr(fastmlp, fn)(kw["a"], kw["b"])
    return run


def _tensor_forward(kw: dict) -> Any:
    """An adversarial array through fastmlp.tensor into a Linear layer and cross entropy, with backward."""
    import fastmlp
    from fastmlp import nn

    x = fastmlp.tensor(kw["x"], requires_grad=kw["grad"])
    model = nn.Sequential(nn.Linear(x.shape[-1] if x.ndim else 1, 4), nn.ReLU())
    loss = nn.CrossEntropyLoss()(model(x), fastmlp.tensor(kw["target"]))
    loss.backward()
    return loss.item()


def _loader(kw: dict) -> Any:
    from fastmlp.utils.data import DataLoader, TensorDataset
    import fastmlp

    ds = TensorDataset(fastmlp.tensor(kw["x"]), fastmlp.tensor(kw["target"]))
    batches = 0
    for _ in DataLoader(ds, batch_size=kw["batch_size"], shuffle=kw["shuffle"], drop_last=kw["drop_last"]):
        batches += 1
    return batches


_PYTHON = [
    Entry("nn.Linear", {"in_features": Int((1, 3)), "out_features": Int((1, 3)), "bias": Bool()}, call=_linear),
    Entry("nn.Dropout", {"p": Float((0.0, 0.5))}, call=_dropout),
    Entry("optim", {"adam": Bool(), "lr": Float((0.1, 1e-3)), "b1": Float((0.9, 0.0)), "b2": Float((0.999,)),
                    "eps": Float((1e-8,)), "weight_decay": Float((0.0,))}, call=_optimizers),
    *[Entry(f"fastmlp.{fn}", {"a": Int((1, 3)), "b": Int((1, 3))}, call=_creation(fn))
      for fn in ("zeros", "ones", "randn", "rand", "empty")],
    Entry("tensor->Linear->cross_entropy", {"x": Arr(("M", "K")), "target": Arr(("M",), "int64", LABELS),
                                             "grad": Bool()}, call=_tensor_forward),
    Entry("DataLoader", {"x": Arr(("M", "K")), "target": Arr(("M",), "int64", LABELS), "batch_size": Int((1, 4)),
                         "shuffle": Bool(), "drop_last": Bool()}, call=_loader),
]

ENTRIES = {e.name: e for e in _NATIVE + _PYTHON}


def caller(entry: Entry) -> Callable[[dict], Any]:
    return entry.call if entry.call is not None else _C_call(entry.name)


# ---- the harness's own check: a call that really crashes --------------------------------------

def _segfault(kw: dict) -> Any:
    import os
    import signal

    os.kill(os.getpid(), signal.SIGSEGV)  # what a wild pointer does, without relying on one


SELFTEST = {"selftest-segfault": Entry("selftest-segfault", {"unused": Int((0,))}, call=_segfault)}
ENTRIES_ALL = {**ENTRIES, **SELFTEST}
