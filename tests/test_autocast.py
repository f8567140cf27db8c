"""fastmlp.autocast("cpu", dtype=fastmlp.bfloat16): Linear, Sequential and matmul products in
bfloat16 with float32 accumulation (forward and backward), everything else float32.

References are float64 NumPy on the operands rounded to bfloat16 (tests/reference.round_bf16,
itself checked against an exact nearest-value search): the products of two bfloat16 values
are exact, so the result may differ from the reference only by float32 summation.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

import fastmlp
import fastmlp.nn as nn
import fastmlp.nn.functional as F

from reference import round_bf16

EPS = float(np.finfo(np.float32).eps)


def r64(a) -> np.ndarray:
    return round_bf16(np.asarray(a, dtype=np.float32)).astype(np.float64)


def bound(a, b) -> np.ndarray:
    """float32 summation bound of the product a @ b (float64 magnitudes)."""
    return (a.shape[-1] + 4) * EPS * (np.abs(a) @ np.abs(b)) + 1e-30


def assert_close(got, want, tol, what):
    err = np.abs(np.asarray(got, np.float64) - want)
    assert np.all(err <= tol), f"{what}: worst error {err.max():.3g}, tolerance there {tol.flat[err.argmax()]:.3g}"


def assert_not_float32(got, a, b, what):
    """The product was not taken on the unrounded operands (it is off by far more than float32 sums)."""
    exact = np.asarray(a, np.float64) @ np.asarray(b, np.float64)
    assert np.any(np.abs(np.asarray(got, np.float64) - exact) > 32 * EPS * (np.abs(a) @ np.abs(b))), what


@pytest.mark.parametrize("batch,fin,fout", [(1, 7, 3), (16, 33, 20), (64, 255, 17)])
def test_linear_forward_backward_against_rounded_reference(rng, batch, fin, fout):
    fastmlp.manual_seed(0)
    lin = nn.Linear(fin, fout)
    x = fastmlp.tensor(rng.standard_normal((batch, fin)).astype(np.float32), requires_grad=True)
    dy = rng.standard_normal((batch, fout)).astype(np.float32)
    with fastmlp.autocast("cpu", dtype=fastmlp.bfloat16):
        y = lin(x)
    y.backward(fastmlp.tensor(dy))  # outside the region, as in PyTorch: the graph remembers
    assert y.dtype == fastmlp.float32 and lin.weight.dtype == fastmlp.float32
    xw, w, b = x.detach().numpy(), lin.weight.detach().numpy(), lin.bias.detach().numpy()
    X, W, DY = r64(xw), r64(w), r64(dy)
    assert_close(y.detach().numpy(), X @ W.T + b, bound(X, W.T) + EPS * np.abs(b), "y")
    assert_close(lin.weight.grad.numpy(), DY.T @ X, bound(DY.T, X), "weight.grad")
    assert_close(x.grad.numpy(), DY @ W, bound(DY, W), "x.grad")
    np.testing.assert_allclose(lin.bias.grad.numpy(), dy.astype(np.float64).sum(0), rtol=1e-5, atol=1e-5)
    if fin >= 30:
        assert_not_float32(y.detach().numpy() - b, xw, w.T, "y")
        assert_not_float32(x.grad.numpy(), dy, w, "x.grad")


def test_outside_autocast_products_stay_float32(rng):
    lin = nn.Linear(255, 17)
    x = rng.standard_normal((40, 255)).astype(np.float32)
    with fastmlp.autocast("cpu", enabled=False):
        y = lin(fastmlp.tensor(x)).detach().numpy()
    y2 = lin(fastmlp.tensor(x)).detach().numpy()
    w, b = lin.weight.detach().numpy().astype(np.float64), lin.bias.detach().numpy()
    for got in (y, y2):
        assert_close(got, x.astype(np.float64) @ w.T + b, bound(x.astype(np.float64), w.T) + EPS * np.abs(b), "y")


def test_sequential_takes_the_bf16_products(rng):
    """A Sequential that would run on the native float32 program runs its blocks in bfloat16."""
    fastmlp.manual_seed(1)
    model = nn.Sequential(nn.Linear(100, 64), nn.ReLU(), nn.Linear(64, 10))
    x = rng.standard_normal((32, 100)).astype(np.float32)
    with fastmlp.autocast("cpu"):
        out = model(fastmlp.tensor(x)).detach().numpy()
    w1, b1 = (p.detach().numpy() for p in (model[0].weight, model[0].bias))
    w2, b2 = (p.detach().numpy() for p in (model[2].weight, model[2].bias))
    h = np.maximum(r64(x) @ r64(w1).T + b1, 0).astype(np.float32)  # float32 between the layers
    want = r64(h) @ r64(w2).T + b2
    tol = bound(r64(h), r64(w2).T) + 64 * EPS * (np.abs(r64(h)) @ np.abs(r64(w2)).T) + 1e-6
    assert_close(out, want, tol, "logits")
    assert_not_float32(out - b2, np.maximum(x @ w1.T + b1, 0), w2.T, "logits")


@pytest.mark.parametrize("sa,sb", [((9, 40), (40, 13)), ((3, 9, 40), (40, 13)), ((40,), (40, 13)), ((40,), (40,))])
def test_matmul_forward_backward(rng, sa, sb):
    a = fastmlp.tensor(rng.standard_normal(sa).astype(np.float32), requires_grad=True)
    b = fastmlp.tensor(rng.standard_normal(sb).astype(np.float32), requires_grad=True)
    with fastmlp.autocast("cpu"):
        c = fastmlp.matmul(a, b)
    g = rng.standard_normal(c.shape).astype(np.float32)
    c.backward(fastmlp.tensor(g))
    A, B, G = r64(a.detach().numpy()), r64(b.detach().numpy()), r64(g)
    want = A @ B
    tol = (40 + 4) * EPS * (np.abs(A) @ np.abs(B)) + 1e-30
    assert_close(c.detach().numpy(), want, tol, "c")
    if len(sa) == 2 and len(sb) == 2:
        assert_close(a.grad.numpy(), G @ B.T, bound(G, B.T), "a.grad")
        assert_close(b.grad.numpy(), A.T @ G, bound(A.T, G), "b.grad")
        assert_not_float32(c.detach().numpy(), a.detach().numpy(), b.detach().numpy(), "c")


def test_float64_is_not_lowered(rng):
    a, b = rng.standard_normal((8, 50)), rng.standard_normal((50, 6))
    with fastmlp.autocast("cpu"):
        c = fastmlp.tensor(a) @ fastmlp.tensor(b)
    assert c.dtype == fastmlp.float64
    np.testing.assert_allclose(c.numpy(), a @ b, rtol=1e-12, atol=1e-12)


def test_losses_softmax_and_optimizer_stay_float32(rng):
    logits = fastmlp.tensor(rng.standard_normal((20, 10)).astype(np.float32), requires_grad=True)
    target = fastmlp.tensor(rng.integers(0, 10, 20))
    loss32 = F.cross_entropy(logits, target)
    sm32 = F.softmax(logits, dim=1)
    with fastmlp.autocast("cpu"):
        loss16 = F.cross_entropy(logits, target)
        sm16 = F.softmax(logits, dim=1)
    assert loss16.dtype == sm16.dtype == fastmlp.float32
    assert loss16.item() == loss32.item()
    np.testing.assert_array_equal(sm16.detach().numpy(), sm32.detach().numpy())
    lin = nn.Linear(10, 3)
    opt = fastmlp.optim.SGD(lin.parameters(), lr=0.1)
    with fastmlp.autocast("cpu"):
        lin(fastmlp.tensor(rng.standard_normal((4, 10)).astype(np.float32))).sum().backward()
        before, grad = lin.weight.detach().numpy().copy(), lin.weight.grad.numpy().copy()
        opt.step()
    assert lin.weight.dtype == fastmlp.float32
    np.testing.assert_array_equal(lin.weight.detach().numpy(), before - np.float32(0.1) * grad)


def test_nesting_enabled_flag_and_decorator():
    assert not fastmlp.is_autocast_enabled("cpu")
    with fastmlp.autocast("cpu"):
        assert fastmlp.is_autocast_enabled("cpu")
        with fastmlp.autocast("cpu", enabled=False):
            assert not fastmlp.is_autocast_enabled("cpu")
            with fastmlp.autocast("cpu", dtype=fastmlp.bfloat16):
                assert fastmlp.is_autocast_enabled("cpu")
            assert not fastmlp.is_autocast_enabled("cpu")
        assert fastmlp.is_autocast_enabled("cpu")
        assert fastmlp.get_autocast_dtype("cpu") == fastmlp.bfloat16
    assert not fastmlp.is_autocast_enabled("cpu")

    @fastmlp.autocast("cpu")
    def inside():
        return fastmlp.is_autocast_enabled("cpu")

    assert inside() and inside()
    assert not fastmlp.is_autocast_enabled("cpu")
    with pytest.raises(RuntimeError):
        with fastmlp.autocast("cpu"):
            raise RuntimeError("boom")
    assert not fastmlp.is_autocast_enabled("cpu")  # restored on the way out of an exception


def test_float32_autocast_lowers_nothing(rng):
    a, b = rng.standard_normal((8, 300)).astype(np.float32), rng.standard_normal((300, 6)).astype(np.float32)
    with fastmlp.autocast("cpu", dtype=fastmlp.float32):
        c = (fastmlp.tensor(a) @ fastmlp.tensor(b)).numpy()
    A, B = a.astype(np.float64), b.astype(np.float64)
    assert_close(c, A @ B, bound(A, B), "c")


def test_state_is_per_thread():
    seen = []
    with fastmlp.autocast("cpu"):
        t = threading.Thread(target=lambda: seen.append(fastmlp.is_autocast_enabled("cpu")))
        t.start()
        t.join()
    assert seen == [False]


def test_bad_arguments():
    with pytest.raises(ValueError, match="device_type 'cuda' is not supported"):
        fastmlp.autocast("cuda")
    with pytest.raises(TypeError, match="device_type must be a string"):
        fastmlp.autocast(None)
    with pytest.raises(ValueError, match="dtype fastmlp.float16 is not supported on 'cpu'"):
        fastmlp.autocast("cpu", dtype=fastmlp.float16)
    with pytest.raises(ValueError, match="dtype fastmlp.int64 is not supported"):
        fastmlp.autocast("cpu", dtype=fastmlp.int64)
    with pytest.raises(TypeError, match="dtype must be fastmlp.bfloat16 or fastmlp.float32"):
        fastmlp.autocast("cpu", dtype="fp8")
    with pytest.raises(TypeError, match="enabled must be a bool"):
        fastmlp.autocast("cpu", enabled="yes")


def _train(autocast: bool, x: np.ndarray, y: np.ndarray, epochs: int = 20):
    fastmlp.manual_seed(7)
    model = nn.Sequential(nn.Linear(x.shape[1], 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 5))
    opt = fastmlp.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = fastmlp.tensor(x), fastmlp.tensor(y)
    for _ in range(epochs):
        for i in range(0, len(x), 50):
            opt.zero_grad()
            with fastmlp.autocast("cpu", enabled=autocast):
                loss = F.cross_entropy(model(xt[i:i + 50]), yt[i:i + 50])
            loss.backward()
            opt.step()
    with fastmlp.no_grad():
        logits = model(xt)
        return F.cross_entropy(logits, yt).item(), float((logits.argmax(1) == yt).float().mean().item())


def test_training_in_bf16_ends_close_to_float32():
    rng = np.random.default_rng(3)
    teacher = rng.standard_normal((32, 5))
    x = rng.standard_normal((1500, 32)).astype(np.float32)
    y = np.argmax(np.tanh(x @ teacher) + 0.1 * rng.standard_normal((1500, 5)), axis=1).astype(np.int64)
    loss32, acc32 = _train(False, x, y)
    loss16, acc16 = _train(True, x, y)
    assert acc32 > 0.9, "the float32 run should learn the task"
    assert abs(acc16 - acc32) <= 0.03, (acc16, acc32)
    assert abs(loss16 - loss32) <= 0.15 * loss32 + 0.02, (loss16, loss32)
