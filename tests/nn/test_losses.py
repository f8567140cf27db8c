"""Losses: values against NumPy float64, gradients by finite differences, errors for bad input."""
from __future__ import annotations

import numpy as np
import pytest

import fastmlp
from fastmlp import nn
from fastmlp.nn import functional as F
from gradcheck_util import check_function

rng = np.random.default_rng(5)


def np_log_softmax(x):
    m = x.max(1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(1, keepdims=True))


def np_cross_entropy(x, y, w=None, ignore=-100, reduction="mean", eps=0.0):
    n, c = x.shape
    lp = np_log_softmax(x)
    w = np.ones(c) if w is None else w
    valid = y != ignore
    ys = np.where(valid, y, 0)
    wy = np.where(valid, w[ys], 0)
    loss = (1 - eps) * wy * -lp[np.arange(n), ys] + np.where(valid, eps / c * -(lp * w).sum(1), 0)
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.sum() / wy.sum()


CE_CASES = [
    dict(),
    dict(reduction="sum"),
    dict(reduction="none"),
    dict(weight=True),
    dict(weight=True, reduction="none"),
    dict(ignore_index=2),
    dict(label_smoothing=0.1),
    dict(label_smoothing=0.2, weight=True),
    dict(label_smoothing=0.1, ignore_index=1, reduction="sum"),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CE_CASES, ids=str)
def test_cross_entropy_value_and_gradient(case, dtype):
    n, c = 7, 5
    x = rng.standard_normal((n, c)) * 3
    y = rng.integers(0, c, n)
    y[0] = 2
    w = rng.uniform(0.5, 2.0, c) if case.get("weight") else None
    kw = dict(reduction=case.get("reduction", "mean"), ignore_index=case.get("ignore_index", -100),
              label_smoothing=case.get("label_smoothing", 0.0))
    wt = fastmlp.tensor(w, dtype=fastmlp.float32 if dtype == np.float32 else fastmlp.float64) if w is not None else None
    xt = fastmlp.tensor(x.astype(dtype), requires_grad=True)
    loss = F.cross_entropy(xt, fastmlp.tensor(y), weight=wt, **kw)
    ref = np_cross_entropy(x, y, w, kw["ignore_index"], kw["reduction"], kw["label_smoothing"])
    tol = 2e-5 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(loss.detach().numpy(), ref, rtol=tol, atol=tol)
    if dtype == np.float64:
        wt64 = fastmlp.tensor(w) if w is not None else None
        check_function(lambda a: F.cross_entropy(a, fastmlp.tensor(y), weight=wt64, **kw), [x])
    else:  # float32 gradient (native fused kernel) against the float64 autograd gradient
        loss.backward(fastmlp.ones_like(loss) if kw["reduction"] == "none" else None)
        x64 = fastmlp.tensor(x, requires_grad=True)
        l64 = F.cross_entropy(x64, fastmlp.tensor(y), weight=fastmlp.tensor(w) if w is not None else None, **kw)
        l64.backward(fastmlp.ones_like(l64) if kw["reduction"] == "none" else None)
        np.testing.assert_allclose(xt.grad.numpy(), x64.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_cross_entropy_extreme_logits_are_finite():
    x = fastmlp.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]], requires_grad=True)
    loss = F.cross_entropy(x, fastmlp.tensor([0, 2]))
    loss.backward()
    np.testing.assert_allclose(loss.item(), np.log(3) / 2, rtol=1e-5)
    assert np.isfinite(x.grad.numpy()).all()


def test_cross_entropy_unbatched_spatial_and_soft_targets():
    x = rng.standard_normal(4)
    np.testing.assert_allclose(F.cross_entropy(fastmlp.tensor(x), fastmlp.tensor(2)).item(),
                               np_cross_entropy(x[None], np.array([2])), rtol=1e-6)
    x3 = rng.standard_normal((2, 4, 3))
    y3 = rng.integers(0, 4, (2, 3))
    flat = np.moveaxis(x3, 1, -1).reshape(-1, 4)
    np.testing.assert_allclose(F.cross_entropy(fastmlp.tensor(x3), fastmlp.tensor(y3)).item(),
                               np_cross_entropy(flat, y3.reshape(-1)), rtol=1e-6)
    check_function(lambda a: F.cross_entropy(a, fastmlp.tensor(y3)), [x3])
    probs = rng.dirichlet(np.ones(4), size=5)
    xs = rng.standard_normal((5, 4))
    ref = -(probs * np_log_softmax(xs)).sum(1).mean()
    np.testing.assert_allclose(F.cross_entropy(fastmlp.tensor(xs), fastmlp.tensor(probs)).item(), ref, rtol=1e-6)
    check_function(lambda a: F.cross_entropy(a, fastmlp.tensor(probs)), [xs])


def test_nll_loss_after_log_softmax_equals_cross_entropy():
    x = rng.standard_normal((6, 10))
    y = rng.integers(0, 10, 6)
    a = F.nll_loss(F.log_softmax(fastmlp.tensor(x), dim=1), fastmlp.tensor(y)).item()
    b = F.cross_entropy(fastmlp.tensor(x), fastmlp.tensor(y)).item()
    np.testing.assert_allclose(a, b, rtol=1e-12)
    w = rng.uniform(0.5, 2, 10)
    check_function(lambda t: F.nll_loss(t, fastmlp.tensor(y), weight=fastmlp.tensor(w)), [np_log_softmax(x)])
    check_function(lambda t: F.nll_loss(F.log_softmax(t, 1), fastmlp.tensor(y), reduction="sum"), [x])


def test_labels_out_of_range_raise_index_error():
    x = fastmlp.randn(3, 4, requires_grad=True)
    with pytest.raises(IndexError, match=r"target\[1\] = 4 is out of range for 4 classes"):
        F.cross_entropy(x, fastmlp.tensor([0, 4, 1]))
    with pytest.raises(IndexError, match=r"target\[2\] = -3 is out of range"):
        F.nll_loss(x, fastmlp.tensor([0, 1, -3]))
    with pytest.raises(IndexError, match="out of range"):
        F.cross_entropy(x.double(), fastmlp.tensor([0, 9, 1]))
    # ignore_index labels are allowed even though they are out of range
    F.cross_entropy(x, fastmlp.tensor([0, -100, 1]))


def test_loss_shape_mismatches_raise_value_error():
    with pytest.raises(ValueError, match=r"Expected input batch_size \(3\) to match target batch_size \(2\)"):
        F.cross_entropy(fastmlp.randn(3, 4), fastmlp.tensor([0, 1]))
    with pytest.raises(RuntimeError, match="integer class indices"):
        F.nll_loss(fastmlp.randn(3, 4), fastmlp.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(RuntimeError, match="must match or be broadcastable"):
        F.mse_loss(fastmlp.randn(3, 4), fastmlp.randn(2, 4))
    with pytest.raises(ValueError, match="is not a valid value for reduction"):
        F.mse_loss(fastmlp.randn(3), fastmlp.randn(3), reduction="avg")


POINTWISE = [
    ("mse", F.mse_loss, lambda x, t: (x - t) ** 2, False),
    ("l1", F.l1_loss, lambda x, t: np.abs(x - t), False),
    ("bce", F.binary_cross_entropy, lambda x, t: -(t * np.log(x) + (1 - t) * np.log(1 - x)), True),
    ("bce_logits", F.binary_cross_entropy_with_logits,
     lambda x, t: np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x))), False),
]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name,fn,ref,prob", POINTWISE, ids=[p[0] for p in POINTWISE])
def test_pointwise_losses(name, fn, ref, prob, reduction):
    x = rng.uniform(0.05, 0.95, (4, 5)) if prob else rng.standard_normal((4, 5)) * 2
    t = rng.uniform(0, 1, (4, 5)) if name.startswith("bce") else rng.standard_normal((4, 5))
    elem = ref(x, t)
    expected = elem if reduction == "none" else (elem.sum() if reduction == "sum" else elem.mean())
    out32 = fn(fastmlp.tensor(x.astype(np.float32)), fastmlp.tensor(t.astype(np.float32)), reduction=reduction)
    np.testing.assert_allclose(out32.numpy(), expected, rtol=2e-5, atol=1e-6)
    check_function(lambda a: fn(a, fastmlp.tensor(t), reduction=reduction), [x])


def test_weighted_bce_and_pos_weight():
    x = rng.uniform(0.1, 0.9, 6)
    t = rng.integers(0, 2, 6).astype(float)
    w = rng.uniform(0.5, 2, 6)
    check_function(lambda a: F.binary_cross_entropy(a, fastmlp.tensor(t), weight=fastmlp.tensor(w)), [x])
    z = rng.standard_normal(6) * 2
    pw = rng.uniform(0.5, 3, 6)
    sig = 1 / (1 + np.exp(-z))
    ref = -(pw * t * np.log(sig) + (1 - t) * np.log(1 - sig)).mean()
    got = F.binary_cross_entropy_with_logits(fastmlp.tensor(z), fastmlp.tensor(t), pos_weight=fastmlp.tensor(pw))
    np.testing.assert_allclose(got.item(), ref, rtol=1e-10)
    check_function(lambda a: F.binary_cross_entropy_with_logits(a, fastmlp.tensor(t), pos_weight=fastmlp.tensor(pw)),
                   [z])


def test_bce_rejects_probabilities_outside_unit_interval():
    for dtype in (fastmlp.float32, fastmlp.float64):  # native kernel and NumPy backend alike
        with pytest.raises(RuntimeError, match="between 0 and 1"):
            F.binary_cross_entropy(fastmlp.tensor([0.5, 1.5], dtype=dtype), fastmlp.tensor([0.0, 1.0], dtype=dtype))


def test_data_errors_are_runtime_errors_as_in_torch():
    with pytest.raises(RuntimeError, match="label_smoothing must be between 0.0 and 1.0. Got: 1.5"):
        F.cross_entropy(fastmlp.randn(3, 4), fastmlp.tensor([0, 1, 2]), label_smoothing=1.5)
    with pytest.raises(RuntimeError, match=r"class probabilities .* shape \[3, 4\]; got \[3\]"):
        F.cross_entropy(fastmlp.randn(3, 4), fastmlp.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(RuntimeError, match=r"BatchNorm1d\(4\) got input with 5 features"):
        nn.BatchNorm1d(4)(fastmlp.randn(3, 5))


def test_mse_target_gradient():
    x, t = rng.standard_normal(5), rng.standard_normal(5)
    check_function(lambda a, b: F.mse_loss(a, b), [x, t])
    check_function(lambda a, b: F.l1_loss(a, b, reduction="sum"), [x, t])


def test_loss_modules_use_their_options():
    x = rng.standard_normal((5, 3))
    y = rng.integers(0, 3, 5)
    w = np.array([1.0, 2.0, 0.5])
    crit = nn.CrossEntropyLoss(weight=fastmlp.tensor(w), label_smoothing=0.05, reduction="sum")
    np.testing.assert_allclose(crit(fastmlp.tensor(x), fastmlp.tensor(y)).item(),
                               np_cross_entropy(x, y, w, reduction="sum", eps=0.05), rtol=1e-10)
    assert nn.MSELoss(reduction="none")(fastmlp.zeros(3), fastmlp.ones(3)).shape == (3,)
    assert nn.NLLLoss()(fastmlp.tensor(np_log_softmax(x)), fastmlp.tensor(y)).item() == pytest.approx(
        np_cross_entropy(x, y), rel=1e-10)
    assert nn.L1Loss()(fastmlp.zeros(4), fastmlp.full((4,), 2.0)).item() == 2.0
    assert nn.BCELoss()(fastmlp.full((2,), 0.5), fastmlp.ones(2)).item() == pytest.approx(np.log(2), rel=1e-6)
    assert nn.BCEWithLogitsLoss()(fastmlp.zeros(2), fastmlp.ones(2)).item() == pytest.approx(np.log(2), rel=1e-6)
