"""``fastmlp.onnx.export``: write a Sequential MLP as an ONNX model (``torch.onnx.export``).

The graph computes what the model computes in eval mode (Dropout is the identity,
BatchNorm1d uses its running statistics), for any batch size: its input ``input``
has shape ``[batch, *input_shape[1:]]`` with ``batch`` symbolic, its output is
``output``. Weights are stored as float32 initializers. Supported layers:
Linear, ReLU, LeakyReLU, Sigmoid, Tanh, GELU (exact and tanh), Softmax,
LogSoftmax, Dropout, BatchNorm1d (with running statistics), Flatten, Unflatten,
Identity, and Sequential nesting them; any other layer is a ValueError naming it.

The file is written with the ``onnx`` package (``pip install "fastmlp[onnx]"``),
opset 17, and checked with ``onnx.checker`` before it is saved, so onnxruntime,
ONNX.js and the usual inference servers load it.
"""
from __future__ import annotations

import math
import os
from typing import Any, Optional, Sequence, Union

import numpy as np

from . import nn

__all__ = ["export", "OPSET", "SUPPORTED_LAYERS"]

OPSET = 17
_IR_VERSION = 8  # the IR version that goes with opset 17; newer ones are refused by older runtimes
SUPPORTED_LAYERS = ("Linear", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "Softmax", "LogSoftmax", "Dropout",
                    "BatchNorm1d", "Flatten", "Unflatten", "Identity", "Sequential")


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("fastmlp.onnx.export needs the onnx package: pip install \"fastmlp[onnx]\" "
                          "(or pip install onnx)") from None
    return onnx


class _Graph:
    """Nodes and initializers being collected; `shape` is the current value's shape (None = the batch)."""

    def __init__(self, onnx, input_shape: list):
        self.onnx = onnx
        self.nodes: list = []
        self.inits: list = []
        self.value = "input"
        self.shape = input_shape
        self.count = 0

    def fresh(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, hint: str, array: np.ndarray) -> str:
        name = self.fresh(hint)
        self.inits.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], hint: str, **attrs: Any) -> str:
        out = self.fresh(hint)
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        self.value = out
        return out

    def unary(self, op_type: str, hint: str, **attrs: Any) -> str:
        return self.op(op_type, [self.value], hint, **attrs)


def _host_f32(t, where: str) -> np.ndarray:
    arr = t.detach().cpu().numpy()
    if arr.dtype != np.float32:
        raise ValueError(f"fastmlp.onnx.export: {where} is {arr.dtype}; the export writes float32 models "
                         "(convert with model.float())")
    return arr


def _dim(shape: list, dim: int, where: str) -> int:
    if not -len(shape) <= dim < len(shape):
        raise ValueError(f"fastmlp.onnx.export: layer '{where}': dim {dim} is out of range for inputs of rank "
                         f"{len(shape)} (shape {_show(shape)})")
    return dim % len(shape)


def _show(shape: list) -> str:
    return "[" + ", ".join("batch" if s is None else str(s) for s in shape) + "]"


def _reshape(g: _Graph, new_shape: list, hint: str, batch_merged: bool = False) -> None:
    """Reshape to `new_shape`, where None marks the batch: copied (0) or, when merged with other
    dimensions, inferred (-1)."""
    spec = [(-1 if batch_merged else 0) if s is None else s for s in new_shape]
    g.op("Reshape", [g.value, g.const(hint + "_shape", np.array(spec, dtype=np.int64))], hint)
    g.shape = new_shape


def _linear(g: _Graph, m: nn.Linear, where: str) -> None:
    w = _host_f32(m.weight, f"{where}.weight")
    if g.shape[-1] != m.in_features:
        raise ValueError(f"fastmlp.onnx.export: layer '{where}' (Linear({m.in_features}, {m.out_features})) gets "
                         f"inputs of shape {_show(g.shape)}; their last dimension must be {m.in_features}")
    b = _host_f32(m.bias, f"{where}.bias") if m.bias is not None else None
    if len(g.shape) == 2:
        inputs = [g.value, g.const(where + "_weight", w)] + ([g.const(where + "_bias", b)] if b is not None else [])
        g.op("Gemm", inputs, where + "_gemm", transB=1)
    else:
        g.op("MatMul", [g.value, g.const(where + "_weight_t", w.T.copy())], where + "_matmul")
        if b is not None:
            g.op("Add", [g.value, g.const(where + "_bias", b)], where + "_add")
    g.shape = g.shape[:-1] + [m.out_features]


def _gelu(g: _Graph, m: nn.GELU, where: str) -> None:
    x = g.value
    if m.approximate == "tanh":
        # 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
        cube = g.op("Mul", [g.op("Mul", [x, x], where + "_sq"), x], where + "_cube")
        inner = g.op("Add", [x, g.op("Mul", [cube, g.const(where + "_c", np.array(0.044715, np.float32))],
                                     where + "_cx3")], where + "_inner")
        scaled = g.op("Mul", [inner, g.const(where + "_k", np.array(math.sqrt(2 / math.pi), np.float32))],
                      where + "_scaled")
        core = g.op("Tanh", [scaled], where + "_tanh")
    else:
        # 0.5·x·(1 + erf(x/√2))
        core = g.op("Erf", [g.op("Div", [x, g.const(where + "_sqrt2", np.array(math.sqrt(2), np.float32))],
                                 where + "_div")], where + "_erf")
    one_plus = g.op("Add", [core, g.const(where + "_one", np.array(1.0, np.float32))], where + "_1p")
    half_x = g.op("Mul", [x, g.const(where + "_half", np.array(0.5, np.float32))], where + "_halfx")
    g.op("Mul", [half_x, one_plus], where + "_gelu")


def _batchnorm(g: _Graph, m: nn.BatchNorm1d, where: str) -> None:
    if not m.track_running_stats or m.running_mean is None:
        raise ValueError(f"fastmlp.onnx.export: layer '{where}' (BatchNorm1d with track_running_stats=False) "
                         "normalises with each batch's own statistics, which an inference graph can't reproduce")
    if len(g.shape) not in (2, 3) or g.shape[1] != m.num_features:
        raise ValueError(f"fastmlp.onnx.export: layer '{where}' (BatchNorm1d({m.num_features})) gets inputs of shape "
                         f"{_show(g.shape)}; it needs [batch, {m.num_features}] or [batch, {m.num_features}, L]")
    n = m.num_features
    scale = _host_f32(m.weight, f"{where}.weight") if m.affine else np.ones(n, np.float32)
    bias = _host_f32(m.bias, f"{where}.bias") if m.affine else np.zeros(n, np.float32)
    mean = _host_f32(m.running_mean, f"{where}.running_mean")
    var = _host_f32(m.running_var, f"{where}.running_var")
    g.op("BatchNormalization", [g.value, g.const(where + "_scale", scale), g.const(where + "_bias", bias),
                                g.const(where + "_mean", mean), g.const(where + "_var", var)],
         where + "_bn", epsilon=float(m.eps))


def _softmax(g: _Graph, m, where: str, op_type: str) -> None:
    rank = len(g.shape)
    dim = m.dim if m.dim is not None else (0 if rank in (0, 1, 3) else 1)  # PyTorch's implicit choice
    g.unary(op_type, where + "_" + op_type.lower(), axis=_dim(g.shape, dim, where))


def _flatten(g: _Graph, m: nn.Flatten, where: str) -> None:
    start, end = _dim(g.shape, m.start_dim, where), _dim(g.shape, m.end_dim, where)
    if start > end:
        raise ValueError(f"fastmlp.onnx.export: layer '{where}': Flatten's start_dim {m.start_dim} comes after its "
                         f"end_dim {m.end_dim} for inputs of shape {_show(g.shape)}")
    merged = g.shape[start:end + 1]
    size = None if None in merged else int(np.prod(merged, dtype=np.int64))
    _reshape(g, g.shape[:start] + [size] + g.shape[end + 1:], where + "_flatten", batch_merged=start == 0 < end)


def _unflatten(g: _Graph, m: nn.Unflatten, where: str) -> None:
    d = _dim(g.shape, m.dim, where)
    if d == 0 and g.shape[0] is None:
        raise ValueError(f"fastmlp.onnx.export: layer '{where}': Unflatten of the batch dimension can't have a dynamic "
                         "batch size")
    sizes = list(m.unflattened_size)
    if int(np.prod(sizes)) != g.shape[d]:
        raise ValueError(f"fastmlp.onnx.export: layer '{where}': Unflatten to {tuple(sizes)} does not fit "
                         f"dimension {d} of size {g.shape[d]}")
    _reshape(g, g.shape[:d] + sizes + g.shape[d + 1:], where + "_unflatten")


def _add_module(g: _Graph, m: nn.Module, where: str) -> None:
    kind = type(m)
    if kind is nn.Sequential:
        for name, child in m.named_children():
            _add_module(g, child, f"{where}.{name}" if where else name)
        return
    where = where or kind.__name__
    if kind is nn.Linear:
        _linear(g, m, where)
    elif kind is nn.ReLU:
        g.unary("Relu", where + "_relu")
    elif kind is nn.LeakyReLU:
        g.unary("LeakyRelu", where + "_leakyrelu", alpha=float(m.negative_slope))
    elif kind is nn.Sigmoid:
        g.unary("Sigmoid", where + "_sigmoid")
    elif kind is nn.Tanh:
        g.unary("Tanh", where + "_tanh")
    elif kind is nn.GELU:
        _gelu(g, m, where)
    elif kind is nn.Softmax:
        _softmax(g, m, where, "Softmax")
    elif kind is nn.LogSoftmax:
        _softmax(g, m, where, "LogSoftmax")
    elif kind in (nn.Dropout, nn.Identity):
        pass  # the identity at inference
    elif kind is nn.BatchNorm1d:
        _batchnorm(g, m, where)
    elif kind is nn.Flatten:
        _flatten(g, m, where)
    elif kind is nn.Unflatten:
        _unflatten(g, m, where)
    else:
        raise ValueError(f"fastmlp.onnx.export: layer '{where}' ({kind.__name__}) can't be exported; supported: "
                         f"{', '.join(SUPPORTED_LAYERS)}")


def _check_shape(input_shape: Sequence[Optional[int]]) -> list:
    try:
        shape = [None if s is None else int(s) for s in input_shape]
    except (TypeError, ValueError):
        raise ValueError(f"fastmlp.onnx.export: input_shape must be a sequence of sizes, batch first (e.g. (1, 784)); "
                         f"got {input_shape!r}") from None
    if len(shape) < 2 or any(s is not None and s <= 0 for s in shape) or None in shape[1:]:
        raise ValueError(f"fastmlp.onnx.export: input_shape must be (batch, features, ...) with positive sizes "
                         f"(the batch may be None; it is exported as a dynamic dimension); got {tuple(input_shape)}")
    return [None] + shape[1:]


def export(model: nn.Module, path: Union[str, os.PathLike], input_shape: Sequence[Optional[int]], *,
           normalize: Optional[tuple] = None, input_name: str = "input", output_name: str = "output") -> None:
    """Write `model` (a Sequential MLP, or one supported layer) to `path` as an ONNX model.

    ``input_shape`` is the shape of an input batch, batch first (``(1, 784)``; the
    batch size is exported as a dynamic dimension). ``normalize=(mean, std)`` (scalars
    or per-feature arrays) puts ``(x - mean) / std`` in front of the model, as
    ``fastmlp train`` standardised its inputs. The equivalent of
    ``torch.onnx.export(model.eval(), torch.zeros(input_shape), path, dynamic_axes=...)``.
    """
    onnx = _onnx()
    if not isinstance(model, nn.Module):
        raise TypeError(f"fastmlp.onnx.export: model must be a fastmlp.nn.Module; got {type(model).__name__}")
    shape = _check_shape(input_shape)
    g = _Graph(onnx, shape)
    if normalize is not None:
        mean, std = (np.asarray(v, dtype=np.float32) for v in normalize)
        g.op("Sub", [g.value, g.const("normalize_mean", mean)], "normalize_sub")
        g.op("Div", [g.value, g.const("normalize_std", std)], "normalize_div")
    _add_module(g, model, "")
    if g.value == input_name:
        g.unary("Identity", "identity")
    g.nodes[-1].output[0] = output_name
    g.value = output_name

    def value_info(name: str, dims: list):
        return onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT,
                                                  ["batch" if d is None else d for d in dims])

    inp = value_info(input_name, shape)
    # the input name was used while the graph was built; rename it in the first node(s)
    for node in g.nodes:
        for i, name in enumerate(node.input):
            if name == "input":
                node.input[i] = input_name
    graph = onnx.helper.make_graph(g.nodes, "fastmlp", [inp], [value_info(output_name, g.shape)],
                                   initializer=g.inits)
    proto = onnx.helper.make_model(graph, producer_name="fastmlp", opset_imports=[onnx.helper.make_opsetid("", OPSET)])
    proto.ir_version = _IR_VERSION
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, os.fspath(path))
