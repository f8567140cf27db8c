"""``fastmlp.optim.SGD`` (``torch.optim.SGD``): momentum, dampening, Nesterov, weight decay, maximize.

Update (PyTorch's documented algorithm), per parameter p with gradient g:
    d = ±g + wd·p;  b = d on the first step, else μ·b + (1-τ)·d;  d = d + μ·b (Nesterov) or b;  p -= lr·d
"""
from __future__ import annotations

from typing import Optional

from ..backend import for_array
from .optimizer import FlatUpdate, Optimizer, _check_lr


class SGD(Optimizer):
    def __init__(self, params, lr=1e-3, momentum: float = 0, dampening: float = 0, weight_decay: float = 0,
                 nesterov: bool = False, *, maximize: bool = False, foreach=None, differentiable: bool = False,
                 fused=None):
        _check_lr(lr)
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
                        maximize=maximize, foreach=foreach, differentiable=differentiable, fused=fused)
        super().__init__(params, defaults)

    def _flat_update(self, group: dict) -> Optional[FlatUpdate]:
        """This group's next update over its flat buffers, or None when the group has no flat
        layout or only some momentum buffers."""
        params = group["params"]
        flat = self._flat_for(group)
        if flat is None or not flat.intact(params):
            return None
        mom = float(group["momentum"])
        buf, first = None, False
        if mom != 0:
            have = [("momentum_buffer" in self.state[p]) for p in params]
            if not (all(have) or not any(have)):
                return None
            buf, first = flat.ensure_state(self, params, "momentum_buffer"), not any(have)
        return FlatUpdate.sgd(flat.param, flat.grad, float(group["lr"]), float(group["weight_decay"]),
                              bool(group["maximize"]), mom, float(group["dampening"]), bool(group["nesterov"]),
                              first, buf)

    def _step_group(self, group: dict) -> None:
        if self._step_flat(group):
            return
        live = self._with_grads(group)
        if not live:
            return
        lr, mom = float(group["lr"]), float(group["momentum"])
        args = (lr, mom, float(group["dampening"]), float(group["weight_decay"]), bool(group["nesterov"]),
                bool(group["maximize"]))
        be = for_array(live[0]._data)
        self._updated(live)
        if mom == 0:
            be.sgd_step([p._data for p in live], [p.grad._data for p in live], None, *args, False)
            return
        # parameters whose buffer starts now, then the rest (split before either is stepped:
        # the first call creates the buffers the second would otherwise see)
        starting = [("momentum_buffer" not in self.state[p]) for p in live]
        for first in (True, False):
            sel = [p for p, s in zip(live, starting) if s == first]
            if sel:
                bufs = [self._state(p, "momentum_buffer", group) for p in sel]
                be.sgd_step([p._data for p in sel], [p.grad._data for p in sel], bufs, *args, first)
