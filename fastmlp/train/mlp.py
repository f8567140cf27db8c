"""MLP models described by a small dict, and checkpoints that carry that description.

``build_mlp`` makes the ``nn.Sequential`` of Linear / activation / Dropout layers
that the command line trains. A checkpoint written with ``mlp_checkpoint_extra``
(through ``ModelCheckpoint(extra=...)``) stores the architecture beside the
weights, so ``load_mlp_checkpoint`` can rebuild the model; a plain state_dict of
Linear layers (what ``fastmlp.save(model.state_dict(), path)`` writes for an MLP)
is understood too, its layer sizes read from the weight shapes.
"""
from __future__ import annotations

import os
import re
from collections import OrderedDict
from typing import Any, Optional, Sequence, Union

from .. import nn
from ..serialization import load
from ..tensor import Tensor

__all__ = ["ACTIVATIONS", "build_mlp", "mlp_checkpoint_extra", "load_mlp_checkpoint", "infer_mlp_arch",
           "CheckpointMismatchError", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "fastmlp.mlp/1"
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU, "leaky_relu": nn.LeakyReLU}


class CheckpointMismatchError(ValueError):
    """A checkpoint's weights do not fit the model; the message names the keys and shapes."""


def build_mlp(in_features: int, hidden: Sequence[int], out_features: int, activation: str = "relu",
              dropout: float = 0.0) -> nn.Sequential:
    """Linear(in, h1), act, [Dropout], ..., Linear(h_last, out) as one nn.Sequential."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"build_mlp: unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"build_mlp: dropout must be in [0, 1); got {dropout}")
    for h in hidden:
        if int(h) <= 0:
            raise ValueError(f"build_mlp: hidden sizes must be positive; got {list(hidden)}")
    layers: list = []
    prev = int(in_features)
    for h in hidden:
        layers.append(nn.Linear(prev, int(h)))
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        prev = int(h)
    layers.append(nn.Linear(prev, int(out_features)))
    return nn.Sequential(*layers)


def mlp_checkpoint_extra(arch: dict, **info: Any) -> dict:
    """What ModelCheckpoint(extra=...) should store beside the weights of a build_mlp model."""
    return {"format": CHECKPOINT_FORMAT, "arch": dict(arch), **info}


def _shape(t) -> list:
    return list(t.shape) if isinstance(t, Tensor) else "?"


def _natural_key(name: str) -> list:
    """Sort key that orders "2.weight" before "10.weight"."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)]


def _chains(weights: list) -> bool:
    return all(weights[i][1].shape[1] == weights[i - 1][1].shape[0] for i in range(1, len(weights)))


def infer_mlp_arch(state_dict: dict, where: str = "state_dict") -> tuple[dict, list]:
    """(in_features, hidden, out_features) of the chain of Linear layers in `state_dict`, and their key pairs.

    Raises CheckpointMismatchError when the 2-d weights do not form a chain.
    """
    weights = [(k, v) for k, v in state_dict.items() if k.endswith("weight") and isinstance(v, Tensor)
               and v.dim() == 2]
    if not _chains(weights):
        # a file written by another library may list its tensors sorted by name ("10.weight" before
        # "2.weight"): try the layers in the natural order of their names
        weights.sort(key=lambda kv: _natural_key(kv[0]))
    if not weights:
        raise CheckpointMismatchError(f"{where}: no Linear layer weights (2-d '*.weight' tensors) found; keys: "
                                      f"{list(state_dict)}")
    pairs = []
    for i, (k, w) in enumerate(weights):
        bias_key = k[: -len("weight")] + "bias"
        b = state_dict.get(bias_key)
        if b is not None and _shape(b) != [w.shape[0]]:
            raise CheckpointMismatchError(f"{where}: '{bias_key}' has shape {_shape(b)} but '{k}' {list(w.shape)} "
                                          f"needs a bias of shape [{w.shape[0]}]")
        if i and w.shape[1] != weights[i - 1][1].shape[0]:
            prev_k, prev_w = weights[i - 1]
            raise CheckpointMismatchError(f"{where}: the Linear layers do not chain: '{prev_k}' is "
                                          f"{list(prev_w.shape)} (out {prev_w.shape[0]}) but '{k}' is "
                                          f"{list(w.shape)} (in {w.shape[1]})")
        pairs.append((k, bias_key if b is not None else None))
    arch = {"in_features": int(weights[0][1].shape[1]), "hidden": [int(w.shape[0]) for _, w in weights[:-1]],
            "out_features": int(weights[-1][1].shape[0])}
    return arch, pairs


def _load_checked(model: nn.Module, state_dict: dict, where: str) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [f"'{k}': checkpoint {_shape(state_dict[k])} vs model {list(own[k].shape)}"
              for k in own if k in state_dict and _shape(state_dict[k]) != list(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append("shape mismatches: " + "; ".join(shapes))
        if missing:
            parts.append(f"keys missing from the checkpoint: {missing}")
        if unexpected:
            parts.append(f"keys the model does not have: {unexpected}")
        raise CheckpointMismatchError(f"{where} does not fit the model (a checkpoint of a different architecture?): "
                                      + "; ".join(parts))
    model.load_state_dict(state_dict)


def load_mlp_checkpoint(path: Union[str, os.PathLike], arch: Optional[dict] = None) -> tuple[nn.Sequential, dict]:
    """Rebuild the MLP saved at `path`; returns (model in eval mode, the checkpoint's other fields).

    The architecture comes from the checkpoint when it stores one; for a plain
    state_dict it is read from the weight shapes (activation and dropout from
    `arch`, default ReLU). Given `arch` with layer sizes that differ from the
    checkpoint's, raises CheckpointMismatchError naming the keys and shapes.
    """
    where = f"checkpoint '{os.fspath(path)}'"
    obj = load(path)
    if not isinstance(obj, dict):
        raise CheckpointMismatchError(f"{where} holds a {type(obj).__name__}, not a model state_dict")
    info: dict = {}
    if "state_dict" in obj:
        state_dict = obj["state_dict"]
        info = {k: v for k, v in obj.items() if k != "state_dict"}
        stored = info.get("arch")
        if arch is None and stored is not None:
            arch = dict(stored)
    else:
        state_dict = obj
    if not isinstance(state_dict, dict) or not all(isinstance(v, Tensor) for v in state_dict.values()):
        raise CheckpointMismatchError(f"{where} does not hold a state_dict of tensors")
    if arch is None or "hidden" not in arch:
        inferred, pairs = infer_mlp_arch(state_dict, where)
        full = {"activation": "relu", "dropout": 0.0, **(arch or {}), **inferred}
        model = build_mlp(**{k: full[k] for k in ("in_features", "hidden", "out_features", "activation",
                                                  "dropout")})
        linears = [m for m in model if isinstance(m, nn.Linear)]
        renamed = OrderedDict()
        names = {id(m): n for n, m in model.named_children()}
        for lin, (wk, bk) in zip(linears, pairs):
            renamed[f"{names[id(lin)]}.weight"] = state_dict[wk]
            if bk is not None:
                renamed[f"{names[id(lin)]}.bias"] = state_dict[bk]
        leftovers = [k for k in state_dict if k not in {p for pair in pairs for p in pair if p}]
        if leftovers:
            raise CheckpointMismatchError(f"{where}: keys that are not Linear layers of an MLP: {leftovers}")
        _load_checked(model, renamed, where)
        info.setdefault("arch", full)
    else:
        model = build_mlp(**{k: arch[k] for k in ("in_features", "hidden", "out_features") if k in arch},
                          activation=arch.get("activation", "relu"), dropout=float(arch.get("dropout", 0.0)))
        _load_checked(model, state_dict, where)
        info["arch"] = dict(arch)
    model.eval()
    return model, info
