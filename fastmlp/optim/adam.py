"""``fastmlp.optim.Adam`` and ``AdamW`` (``torch.optim.Adam`` / ``torch.optim.AdamW``).

Update (PyTorch's documented algorithm), per parameter p with gradient g at step t:
    g = ±g (+ wd·p for Adam; p *= 1 - lr·wd for AdamW)
    m = β1·m + (1-β1)·g;  v = β2·v + (1-β2)·g²;  v̂ = max(v̂, v) with amsgrad
    p -= lr/(1-β1^t) · m / (sqrt(v or v̂)/sqrt(1-β2^t) + eps)
The native float32 kernels (CPU and CUDA) evaluate the last line in the equivalent form
p -= (lr·sqrt(1-β2^t)/(1-β1^t)) · m / (sqrt(v or v̂) + eps·sqrt(1-β2^t)), one division per
element instead of two; results agree with PyTorch's to float32 rounding (about an ulp).
On x86-64 the CPU kernel runs with denormals flushed to zero: state values below 1.2e-38
in magnitude become 0 (the first moment of a weight whose gradient stays zero decays into
that range, where the kernel runs at about half speed).
"""
from __future__ import annotations

from typing import Optional

from ..backend import for_array
from .optimizer import FlatUpdate, Optimizer, _check_lr


class Adam(Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0,
                 amsgrad: bool = False, *, foreach=None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False, fused=None, decoupled_weight_decay: bool = False):
        _check_lr(lr)
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, foreach=foreach, capturable=capturable, differentiable=differentiable,
                        fused=fused, decoupled_weight_decay=bool(decoupled_weight_decay))
        super().__init__(params, defaults)

    def _flat_update(self, group: dict) -> Optional[FlatUpdate]:
        """This group's next update over its flat buffers, or None when the group has no flat
        layout or uneven step counts."""
        params = group["params"]
        flat = self._flat_for(group)
        if flat is None or not flat.intact(params):
            return None
        steps = {self.state[p].get("step", 0) for p in params}
        if len(steps) != 1:
            return None
        beta1, beta2 = group["betas"]
        amsgrad = bool(group["amsgrad"])
        return FlatUpdate.adam(flat.param, flat.grad, float(group["lr"]), float(group["weight_decay"]),
                               bool(group["maximize"]), float(beta1), float(beta2), float(group["eps"]),
                               steps.pop() + 1, amsgrad, bool(group["decoupled_weight_decay"]),
                               flat.ensure_state(self, params, "exp_avg"),
                               flat.ensure_state(self, params, "exp_avg_sq"),
                               flat.ensure_state(self, params, "max_exp_avg_sq") if amsgrad else None)

    def _flat_update_done(self, group: dict, update) -> None:
        step = update.step
        state = self.state
        for p in group["params"]:
            state[p]["step"] = step
        super()._flat_update_done(group, update)

    def _step_group(self, group: dict) -> None:
        if self._step_flat(group):
            return
        beta1, beta2 = group["betas"]
        amsgrad = bool(group["amsgrad"])
        hyper = (float(group["lr"]), float(beta1), float(beta2), float(group["eps"]), float(group["weight_decay"]))
        flags = (amsgrad, bool(group["maximize"]), bool(group["decoupled_weight_decay"]))
        live = self._with_grads(group)
        if not live:
            return
        be = for_array(live[0]._data)
        self._updated(live)
        by_step: dict[int, list] = {}
        for p in live:
            by_step.setdefault(self.state[p].get("step", 0) + 1, []).append(p)
        for step, sel in by_step.items():
            ms = [self._state(p, "exp_avg", group) for p in sel]
            vs = [self._state(p, "exp_avg_sq", group) for p in sel]
            vmaxs = [self._state(p, "max_exp_avg_sq", group) for p in sel] if amsgrad else None
            be.adam_step([p._data for p in sel], [p.grad._data for p in sel], ms, vs, vmaxs, *hyper, step, *flags)
            for p in sel:
                self.state[p]["step"] = step


class AdamW(Adam):
    """Adam with decoupled weight decay (default weight_decay=1e-2, as ``torch.optim.AdamW``)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2,
                 amsgrad: bool = False, *, maximize: bool = False, foreach=None, capturable: bool = False,
                 differentiable: bool = False, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)
