"""An optimizer lays its parameters out in flat buffers (each Parameter a view) when it is
created, before any step: the native program is built once over the arrays the parameters
keep, and moving, loading, freezing and adding layers afterwards keep working."""
from __future__ import annotations

import numpy as np
import pytest

import fastmlp
from fastmlp import nn, optim


def _mlp():
    fastmlp.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Dropout(0.2), nn.Linear(5, 3))


def _batch(seed=0, n=8):
    rng = np.random.default_rng(seed)
    return fastmlp.tensor(rng.standard_normal((n, 6)).astype(np.float32)), fastmlp.tensor(rng.integers(0, 3, n))


def _step(model, opt, x, y):
    opt.zero_grad()
    loss = nn.CrossEntropyLoss()(model(x), y)
    loss.backward()
    opt.step()
    return loss.item()


@pytest.mark.parametrize("make_opt", [lambda p: optim.SGD(p, lr=0.1, momentum=0.9), lambda p: optim.Adam(p)])
def test_parameters_are_views_of_one_buffer_from_construction(make_opt):
    model = _mlp()
    before = [p.detach().numpy().copy() for p in model.parameters()]
    opt = make_opt(model.parameters())
    arrays = [p._data for p in model.parameters()]
    bases = {id(a.base) for a in arrays}
    assert len(bases) == 1 and arrays[0].base is not None
    for p, b in zip(model.parameters(), before):  # values kept, grads still None as in PyTorch
        np.testing.assert_array_equal(p.detach().numpy(), b)
        assert p.grad is None
    x, y = _batch()
    model(x)  # the program is built over the arena's views
    chain = model.__dict__["_route"]
    for _ in range(3):
        _step(model, opt, x, y)
    assert [p._data for p in model.parameters()] == arrays  # no swap at the first step
    assert model.__dict__["_route"] is chain  # and no rebuild
    assert all(p.grad._data.base is not None for p in model.parameters())


def _losses_and_params(model, opt, steps=4):
    losses = [_step(model, opt, *_batch(k)) for k in range(steps)]
    return losses, [p.detach().numpy().copy() for p in model.parameters()]


def test_same_values_as_a_model_without_arena():
    # the layout changes where parameters live, not what training computes: the same steps on a
    # copy of the model whose parameters are moved out of the arena after each step (the
    # per-parameter optimizer path) give bitwise the same parameters
    fastmlp.manual_seed(1)
    a = _mlp()
    b = _mlp()
    oa = optim.Adam(a.parameters())
    ob = optim.Adam(b.parameters())
    for k in range(4):
        x, y = _batch(k)
        fastmlp.manual_seed(10 + k)
        _step(a, oa, x, y)
        for p in b.parameters():
            p._data = p._data.copy()  # out of the arena: the optimizer falls back per parameter
            p._grad_buf = None
        fastmlp.manual_seed(10 + k)
        _step(b, ob, x, y)
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())


def test_load_state_dict_and_to_keep_the_arena():
    model = _mlp()
    opt = optim.SGD(model.parameters(), lr=0.1)
    arrays = [p._data for p in model.parameters()]
    other = _mlp()
    with fastmlp.no_grad():
        for p in other.parameters():
            p.mul_(2.0)
    model.load_state_dict(other.state_dict())
    model.to("cpu")
    model.to(fastmlp.float32)
    assert all(p._data is a for p, a in zip(model.parameters(), arrays))
    for p, q in zip(model.parameters(), other.parameters()):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())
    _step(model, opt, *_batch())
    assert all(p._data is a for p, a in zip(model.parameters(), arrays))


def test_freezing_a_parameter_after_the_optimizer_exists():
    model = _mlp()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _step(model, opt, *_batch(0))
    model[0].weight.requires_grad_(False)
    model[0].weight.grad = None
    frozen = model[0].weight.detach().numpy().copy()
    others = [p.detach().numpy().copy() for p in list(model.parameters())[1:]]
    for k in range(1, 4):
        _step(model, opt, *_batch(k))
    np.testing.assert_array_equal(model[0].weight.detach().numpy(), frozen)
    assert all(not np.array_equal(p.detach().numpy(), o) for p, o in zip(list(model.parameters())[1:], others))


def test_adding_a_layer_after_the_optimizer_exists():
    model = _mlp()
    opt = optim.Adam(model.parameters())
    _step(model, opt, *_batch(0))
    model.append(nn.ReLU())
    model.append(nn.Linear(3, 2))
    added = model[-1].weight.detach().numpy().copy()
    assert "exactly the model's parameters" in nn.explain(model, nn.CrossEntropyLoss(), opt)
    x, _ = _batch(1)
    _step(model, opt, x, fastmlp.randint(0, 2, (8,)))
    np.testing.assert_array_equal(model[-1].weight.detach().numpy(), added)  # not optimized
    assert model[-1].weight.grad is not None  # but it got its gradient


@pytest.mark.parametrize("cfg", [dict(momentum=0.9), dict(momentum=0.9, nesterov=True), dict(momentum=0.5, dampening=0.2)])
def test_sgd_momentum_first_step_without_a_flat_layout(cfg):
    # parameters of two dtypes get no flat layout: the per-parameter path starts each momentum
    # buffer at the first gradient, once (torch.optim.SGD's formula)
    rng = np.random.default_rng(3)
    init = [rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal(4)]
    params = [nn.Parameter(fastmlp.tensor(a.copy())) for a in init]
    opt = optim.SGD(params, lr=0.1, **cfg)
    ref = [a.astype(np.float64) for a in init]
    bufs = [None, None]
    mom, damp, nest = cfg["momentum"], cfg.get("dampening", 0.0), cfg.get("nesterov", False)
    for _ in range(3):
        grads = [rng.standard_normal(a.shape).astype(a.dtype) for a in init]
        for p, g in zip(params, grads):
            p.grad = fastmlp.tensor(g)
        opt.step()
        for i, g in enumerate(grads):
            g = g.astype(np.float64)
            bufs[i] = g.copy() if bufs[i] is None else mom * bufs[i] + (1 - damp) * g
            ref[i] -= 0.1 * (g + mom * bufs[i] if nest else bufs[i])
    for p, r in zip(params, ref):
        np.testing.assert_allclose(p.detach().numpy(), r, rtol=2e-6, atol=2e-6)
