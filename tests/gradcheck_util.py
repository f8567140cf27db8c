"""Finite-difference gradient checks in float64, independent of the autograd under test."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

import fastmlp


def _objective(out: fastmlp.Tensor, weights: np.ndarray) -> float:
    return float(np.sum(np.asarray(out.detach()._data, dtype=np.float64) * weights))


def check_function(fn: Callable, arrays: Sequence[np.ndarray], eps: float = 1e-6, rtol: float = 1e-5,
                   atol: float = 1e-7, seed: int = 0) -> None:
    """Compare autograd's gradient of sum(fn(*inputs) * W) with central differences, W random."""
    rng = np.random.default_rng(seed)
    tensors = [fastmlp.tensor(a.astype(np.float64), requires_grad=True) for a in arrays]
    out = fn(*tensors)
    weights = rng.standard_normal(out.shape)
    out.backward(fastmlp.tensor(weights))
    for i, (t, a) in enumerate(zip(tensors, arrays)):
        numeric = np.zeros(a.shape)
        base = [x.astype(np.float64) for x in arrays]
        it = np.nditer(numeric, flags=["multi_index"])
        for _ in it:
            idx = it.multi_index
            plus = [b.copy() for b in base]
            minus = [b.copy() for b in base]
            plus[i][idx] += eps
            minus[i][idx] -= eps
            with fastmlp.no_grad():
                fp = _objective(fn(*[fastmlp.tensor(x) for x in plus]), weights)
                fm = _objective(fn(*[fastmlp.tensor(x) for x in minus]), weights)
            numeric[idx] = (fp - fm) / (2 * eps)
        assert t.grad is not None, f"input {i} got no gradient"
        np.testing.assert_allclose(t.grad.numpy(), numeric, rtol=rtol, atol=atol, err_msg=f"gradient of input {i}")


def check_module(module: fastmlp.nn.Module, x: np.ndarray, eps: float = 1e-6, rtol: float = 1e-5, atol: float = 1e-7,
                 seed: int = 0, input_grad: bool = True) -> None:
    """Gradients of sum(module(x) * W) w.r.t. x and every parameter, against central differences (float64)."""
    module = module.double()
    rng = np.random.default_rng(seed)
    xt = fastmlp.tensor(x.astype(np.float64), requires_grad=input_grad)
    module.zero_grad()
    out = module(xt)
    weights = rng.standard_normal(out.shape)
    out.backward(fastmlp.tensor(weights))

    def objective() -> float:
        with fastmlp.no_grad():
            return _objective(module(fastmlp.tensor(x.astype(np.float64))), weights)

    targets = [("input", xt, None)] if input_grad else []
    targets += [(name, p, p) for name, p in module.named_parameters()]
    for name, t, param in targets:
        data = param._data if param is not None else None
        numeric = np.zeros(t.shape)
        it = np.nditer(numeric, flags=["multi_index"])
        for _ in it:
            idx = it.multi_index
            if param is None:
                xp_, xm_ = x.astype(np.float64).copy(), x.astype(np.float64).copy()
                xp_[idx] += eps
                xm_[idx] -= eps
                with fastmlp.no_grad():
                    fp = _objective(module(fastmlp.tensor(xp_)), weights)
                    fm = _objective(module(fastmlp.tensor(xm_)), weights)
            else:
                old = data[idx]
                data[idx] = old + eps
                fp = objective()
                data[idx] = old - eps
                fm = objective()
                data[idx] = old
            numeric[idx] = (fp - fm) / (2 * eps)
        assert t.grad is not None, f"{name} got no gradient"
        np.testing.assert_allclose(t.grad.numpy(), numeric, rtol=rtol, atol=atol, err_msg=f"gradient of {name}")
