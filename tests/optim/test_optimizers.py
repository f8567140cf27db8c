"""Optimizers and schedules: PyTorch's update formulas (NumPy float64 and torch.optim references),
the flat fast path against the per-parameter path, state_dict round trips, bad hyper-parameters."""
from __future__ import annotations

import math

import numpy as np
import pytest

import fastmlp
from fastmlp import nn, optim

rng = np.random.default_rng(11)
SHAPES = [(5, 3), (5,), (1,), (7, 2)]


def make_params(dtype=np.float64):
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def np_sgd(ps, gs, state, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False):
    for i, (p, g) in enumerate(zip(ps, gs)):
        d = -g if maximize else g.copy()
        d = d + weight_decay * p
        if momentum:
            b = state.get(i)
            b = d.copy() if b is None else momentum * b + (1 - dampening) * d
            state[i] = b
            d = d + momentum * b if nesterov else b
        p -= lr * d


def np_adam(ps, gs, state, t, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False,
            decoupled=False):
    b1, b2 = betas
    for i, (p, g) in enumerate(zip(ps, gs)):
        g = -g if maximize else g.copy()
        if weight_decay:
            if decoupled:
                p *= 1 - lr * weight_decay
            else:
                g = g + weight_decay * p
        m, v, vmax = state.setdefault(i, [np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)])
        m[...] = b1 * m + (1 - b1) * g
        v[...] = b2 * v + (1 - b2) * g * g
        if amsgrad:
            vmax[...] = np.maximum(vmax, v)
        denom = np.sqrt(vmax if amsgrad else v) / math.sqrt(1 - b2 ** t) + eps
        p -= lr / (1 - b1 ** t) * m / denom


SGD_CONFIGS = [dict(), dict(momentum=0.9), dict(momentum=0.9, dampening=0.3), dict(momentum=0.8, nesterov=True),
               dict(weight_decay=0.1), dict(momentum=0.5, weight_decay=0.05, maximize=True)]
ADAM_CONFIGS = [dict(), dict(weight_decay=0.1), dict(amsgrad=True), dict(maximize=True, betas=(0.8, 0.99)),
                dict(weight_decay=0.05, amsgrad=True, eps=1e-6)]


def run_steps(opt_cls, cfg, steps=5, dtype=np.float64, skip=None):
    init = make_params(dtype)
    grads = [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(steps)]
    params = [fastmlp.nn.Parameter(fastmlp.tensor(p.copy())) for p in init]
    opt = opt_cls(params, lr=0.1, **cfg)
    for k in range(steps):
        for i, p in enumerate(params):
            p.grad = None if (skip and (k, i) in skip) else fastmlp.tensor(grads[k][i])
        opt.step()
    return init, grads, params, opt


@pytest.mark.parametrize("cfg", SGD_CONFIGS, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_matches_numpy_formula(cfg, dtype):
    init, grads, params, _ = run_steps(optim.SGD, cfg, dtype=dtype)
    ref = [p.astype(np.float64) for p in init]
    state = {}
    for g in grads:
        np_sgd(ref, [x.astype(np.float64) for x in g], state, 0.1, **cfg)
    tol = 2e-6 if dtype == np.float32 else 1e-12
    for p, r in zip(params, ref):
        np.testing.assert_allclose(p.detach().numpy(), r, rtol=tol, atol=tol)


@pytest.mark.parametrize("cls,decoupled", [(optim.Adam, False), (optim.AdamW, True)])
@pytest.mark.parametrize("cfg", ADAM_CONFIGS, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_matches_numpy_formula(cls, decoupled, cfg, dtype):
    cfg = dict(cfg)
    if cls is optim.AdamW:
        cfg.setdefault("weight_decay", 0.01)
    init, grads, params, opt = run_steps(cls, cfg, dtype=dtype)
    ref = [p.astype(np.float64) for p in init]
    state = {}
    for t, g in enumerate(grads, 1):
        np_adam(ref, [x.astype(np.float64) for x in g], state, t, 0.1, decoupled=decoupled, **cfg)
    tol = 5e-6 if dtype == np.float32 else 1e-12
    for p, r in zip(params, ref):
        np.testing.assert_allclose(p.detach().numpy(), r, rtol=tol, atol=tol)
    assert all(opt.state[p]["step"] == 5 for p in params)


def test_parameters_without_grad_are_skipped_like_pytorch():
    """Param 1 gets no gradient at steps 1 and 2: its Adam step count and state lag behind."""
    skip = {(1, 1), (2, 1)}
    init, grads, params, opt = run_steps(optim.Adam, {}, skip=skip)
    ref = [p.copy() for p in init]
    states = [{} for _ in SHAPES]
    counts = [0] * len(SHAPES)
    for k, g in enumerate(grads):
        for i in range(len(SHAPES)):
            if (k, i) in skip:
                continue
            counts[i] += 1
            np_adam([ref[i]], [g[i]], states[i], counts[i], 0.1)
    for p, r in zip(params, ref):
        np.testing.assert_allclose(p.detach().numpy(), r, rtol=1e-12)
    assert [opt.state[p]["step"] for p in params] == [5, 3, 5, 5]


def test_flat_layout_is_used_and_survives_user_views():
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    opt = optim.Adam(net.parameters(), lr=0.01)
    x = fastmlp.randn(5, 4)
    for _ in range(3):
        opt.zero_grad()
        net(x).sum().backward()
        opt.step()
    flat = opt._flat[id(opt.param_groups[0])]
    assert flat is not None and flat.intact(opt.param_groups[0]["params"])
    for p in net.parameters():  # every parameter starts a cache line, for aligned vector loads
        assert p.detach().numpy().ctypes.data % 64 == 0 and p.grad.numpy().ctypes.data % 64 == 0
    kept = net[0].weight.grad  # a caller keeping a gradient must not see it overwritten
    kept_values = kept.numpy().copy()
    opt.zero_grad()
    net(x * 2).sum().backward()
    np.testing.assert_array_equal(kept.numpy(), kept_values)
    opt.step()  # runs on per-parameter views, same math


def test_state_dict_round_trip_continues_identically():
    def build():
        fastmlp.manual_seed(3)
        net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
        return net, optim.Adam(net.parameters(), lr=0.05, amsgrad=True)

    x, y = fastmlp.randn(6, 4), fastmlp.randn(6, 2)

    def train(net, opt, n):
        for _ in range(n):
            opt.zero_grad()
            nn.functional.mse_loss(net(x), y).backward()
            opt.step()

    a_net, a_opt = build()
    train(a_net, a_opt, 6)
    b_net, b_opt = build()
    train(b_net, b_opt, 3)
    c_net, c_opt = build()
    c_net.load_state_dict(b_net.state_dict())
    c_opt.load_state_dict(b_opt.state_dict())
    train(c_net, c_opt, 3)
    for pa, pc in zip(a_net.parameters(), c_net.parameters()):
        np.testing.assert_allclose(pa.detach().numpy(), pc.detach().numpy(), rtol=1e-6, atol=1e-7)
    sd = a_opt.state_dict()
    assert sd["param_groups"][0]["params"] == [0, 1, 2, 3]
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert sd["state"][0]["step"].item() == 6.0


def test_param_groups_and_zero_grad():
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    opt = optim.SGD([{"params": a.parameters()}, {"params": b.parameters(), "lr": 0.5}], lr=0.1, momentum=0.9)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    (a(fastmlp.ones(1, 2)).sum() + b(fastmlp.ones(1, 2)).sum()).backward()
    opt.step()
    opt.zero_grad()
    assert all(p.grad is None for p in list(a.parameters()) + list(b.parameters()))


def test_bad_hyperparameters_and_params():
    p = [nn.Parameter(fastmlp.zeros(2))]
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        optim.SGD(p, lr=-1)
    with pytest.raises(ValueError, match="Nesterov momentum requires a momentum and zero dampening"):
        optim.SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="Invalid beta parameter at index 1: 1.0"):
        optim.Adam(p, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="Invalid epsilon value"):
        optim.Adam(p, eps=-1)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam([])
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": p}, {"params": p}], lr=0.1)
    with pytest.raises(TypeError, match="optimizer can only optimize Tensors"):
        optim.SGD([1.0], lr=0.1)


def test_lr_schedules_closed_forms():
    p = [nn.Parameter(fastmlp.zeros(1))]
    opt = optim.SGD(p, lr=1.0)
    sched = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    opt = optim.SGD(p, lr=1.0)
    sched = optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)
    for _ in range(3):
        sched.step()
    assert sched.get_last_lr()[0] == pytest.approx(0.9 ** 3)
    opt = optim.SGD(p, lr=1.0)
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10, eta_min=0.1)
    for _ in range(5):
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi * 5 / 10)) / 2)
    opt = optim.SGD(p, lr=1.0)
    plateau = optim.lr_scheduler.ReduceLROnPlateau(opt, patience=1, factor=0.5)
    for metric in [1.0, 0.9, 0.95, 0.95, 0.95]:
        plateau.step(metric)
    assert opt.param_groups[0]["lr"] == 0.5


def test_group_keys_and_scheduler_state_match_torch_2_13():
    """The hyper-parameter keys a torch 2.13 script reads from param_groups, and the scheduler's
    step count in its state_dict."""
    p = [fastmlp.zeros(2, requires_grad=True)]
    adam, adamw = optim.Adam(p), optim.AdamW(p)
    assert adam.param_groups[0]["decoupled_weight_decay"] is False
    assert adamw.param_groups[0]["decoupled_weight_decay"] is True
    assert optim.Adam(p, decoupled_weight_decay=True).param_groups[0]["decoupled_weight_decay"] is True
    sched = optim.lr_scheduler.StepLR(optim.SGD(p, lr=0.1), 2)
    assert sched.state_dict()["_step_count"] == 1
    sched.step()
    assert sched.state_dict()["_step_count"] == 2


@pytest.mark.parametrize("flat", [True, False])
def test_adam_with_decoupled_weight_decay_is_adamw(flat):
    """Adam(decoupled_weight_decay=True) steps exactly as AdamW, on the flat path and per tensor
    (float64 parameters run the per-tensor NumPy path)."""
    dtype = fastmlp.float32 if flat else fastmlp.float64
    out = []
    for make in (lambda q: optim.Adam(q, lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
                 lambda q: optim.AdamW(q, lr=0.01, weight_decay=0.1)):
        fastmlp.manual_seed(0)
        w = fastmlp.randn(5, 3, dtype=dtype, requires_grad=True)
        opt = make([w])
        for _ in range(3):
            opt.zero_grad()
            (w * w).sum().backward()
            opt.step()
        out.append(w.detach().numpy().copy())
    np.testing.assert_array_equal(out[0], out[1])
    fastmlp.manual_seed(0)
    w = fastmlp.randn(5, 3, dtype=dtype, requires_grad=True)
    assert not np.array_equal(out[0], w.detach().numpy())
