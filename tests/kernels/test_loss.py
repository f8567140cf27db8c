"""Loss kernels: fused softmax cross entropy (fastmlp._C.softmax_xent), NLL (_C.nll) and
the element-wise losses (_C.pointwise_loss) against float64 NumPy and, when installed,
torch.nn.functional."""
from __future__ import annotations

import numpy as np
import pytest

from fastmlp import _C

SHAPES = [(0, 5), (1, 1), (1, 10), (7, 10), (17, 7), (63, 17), (65, 10), (10, 784), (3, 1001)]
MSE, L1, BCE, BCE_LOGITS = 0, 1, 2, 3


# ---- float64 references ---------------------------------------------------------

def log_softmax64(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    z = x - x.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def xent64(x, labels, weight=None, ignore_index=-100, eps=0.0):
    """Per-row loss, Σ w[y_i] over kept rows, and ∂(Σ_i loss_i)/∂x, in float64 (PyTorch's definition)."""
    rows, cols = x.shape
    w = np.ones(cols) if weight is None else weight.astype(np.float64)
    keep = labels != ignore_index
    y = np.where(keep, labels, 0)
    if rows == 0:
        return np.zeros(0), 0.0, np.zeros((0, cols))
    logp = log_softmax64(x)
    r = np.arange(rows)
    wy = w[y]
    loss = (1 - eps) * wy * -logp[r, y] + eps / cols * -(logp * w).sum(axis=1)
    p = np.exp(logp)
    onehot = np.zeros_like(p)
    onehot[r, y] = 1.0
    grad = (1 - eps) * wy[:, None] * (p - onehot) + eps / cols * (w.sum() * p - w[None, :])
    loss[~keep] = 0.0
    grad[~keep] = 0.0
    return loss, float(wy[keep].sum()), grad


def reduce64(loss, grad, wsum, reduction, grad_scale=1.0):
    if reduction == "none":
        return loss, grad * grad_scale
    if reduction == "sum":
        return loss.sum(), grad * grad_scale
    if not wsum:  # every row ignored: the mean is 0/0, the gradient 0
        return np.nan, grad * grad_scale
    return loss.sum() / wsum, grad * grad_scale / wsum


def pointwise64(kind, x, t, w=None):
    """Element-wise loss and ∂loss/∂x in float64."""
    x, t = x.astype(np.float64), t.astype(np.float64)
    with np.errstate(divide="ignore", over="ignore"):
        if kind == MSE:
            loss, grad = (x - t) ** 2, 2 * (x - t)
        elif kind == L1:
            loss, grad = np.abs(x - t), np.sign(x - t)
        elif kind == BCE:
            loss = -(t * np.maximum(np.log(x), -100) + (1 - t) * np.maximum(np.log1p(-x), -100))
            grad = (x - t) / np.maximum((1 - x) * x, 1e-12)
        else:
            loss = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
            grad = 1 / (1 + np.exp(-x)) - t
    if w is not None:
        loss, grad = loss * w, grad * w
    return loss, grad


def class_inputs(rng, rows, cols, scale=3.0):
    x = (rng.standard_normal((rows, cols)) * scale).astype(np.float32)
    labels = rng.integers(0, cols, rows).astype(np.int64)
    return x, labels


# ---- cross entropy ----------------------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("rows,cols", SHAPES)
def test_xent_matches_float64(isa, threads, rng, rows, cols, reduction):
    x, labels = class_inputs(rng, rows, cols)
    labels[5::29] = -100  # a few ignored rows among ordinary ones
    loss, grad, wsum = _C.softmax_xent(x, labels, reduction=reduction, want_grad=True)
    ref_rows, ref_wsum, ref_grad = xent64(x, labels)
    ref_loss, ref_grad = reduce64(ref_rows, ref_grad, ref_wsum, reduction)
    assert wsum == ref_wsum
    assert grad.dtype == np.float32 and grad.shape == x.shape
    if reduction == "mean" and rows == 0:
        assert np.isnan(loss)
    else:
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-5, atol=1e-6)
    gscale = 1.0 / max(ref_wsum, 1.0) if reduction == "mean" else 1.0
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=2e-7 * gscale)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("rows,cols", [(1, 1), (7, 10), (40, 5), (70, 10), (33, 17), (9, 784)])
def test_xent_weights_ignore_smoothing(isa, threads, rng, rows, cols, weighted, smoothing):
    x, labels = class_inputs(rng, rows, cols)
    labels[::3] = -1  # ignored rows
    w = (rng.random(cols) + 0.25).astype(np.float32) if weighted else None
    for reduction in ("mean", "sum", "none"):
        loss, grad, wsum = _C.softmax_xent(x, labels, weight=w, ignore_index=-1, label_smoothing=smoothing,
                                           reduction=reduction, want_grad=True, grad_scale=0.5)
        ref_rows, ref_wsum, ref_grad = xent64(x, labels, w, -1, smoothing)
        ref_loss, ref_grad = reduce64(ref_rows, ref_grad, ref_wsum, reduction, 0.5)
        np.testing.assert_allclose(wsum, ref_wsum, rtol=1e-12)
        np.testing.assert_allclose(loss, ref_loss, rtol=2e-5, atol=1e-6)
        np.testing.assert_allclose(grad, ref_grad, rtol=2e-5, atol=2e-7)
        assert np.all(grad[::3] == 0.0)
        if reduction == "none":
            assert np.all(loss[::3] == 0.0)


def test_xent_extreme_logits(isa):
    """Logits of ±1e4, equal rows and large spreads: finite, exact loss and gradient."""
    base = np.array([
        [1e4, -1e4, 0.0, 1e4 - 2.0],
        [-1e4, -1e4 + 3.0, -1e4 + 1.0, -1e4],
        [5.0, 5.0, 5.0, 5.0],
        [1e4, 1e4, 1e4, 1e4],
        [-1e4, -1e4, -1e4, -1e4],
    ], dtype=np.float32)
    for reps in (1, 5, 300):  # 4, 20 and 1200 classes
        x = np.tile(base, (1, reps))
        labels = np.array([3, 0, 2, 1, 0], dtype=np.int64)
        for smoothing in (0.0, 0.2):
            loss, grad, _ = _C.softmax_xent(x, labels, label_smoothing=smoothing, reduction="none", want_grad=True)
            assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
            ref_rows, _, ref_grad = xent64(x, labels, eps=smoothing)
            np.testing.assert_allclose(loss, ref_rows, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(loss[2:], np.log(4 * reps) * 0.8 + 0.2 * np.log(4 * reps), rtol=1e-6)


def test_xent_loss_only_and_row_loss(isa, rng):
    x, labels = class_inputs(rng, 40, 13)
    loss, grad, _ = _C.softmax_xent(x, labels, reduction="sum")
    assert grad is None
    rows, _, _ = _C.softmax_xent(x, labels, reduction="none")
    np.testing.assert_allclose(rows, xent64(x, labels)[0], rtol=1e-5)
    np.testing.assert_allclose(loss, rows.astype(np.float64).sum(), rtol=1e-6)


def test_xent_all_ignored_and_zero_weights(isa):
    x = np.ones((3, 4), np.float32)
    loss, grad, wsum = _C.softmax_xent(x, np.full(3, -100), want_grad=True)
    assert np.isnan(loss) and wsum == 0.0 and np.all(grad == 0.0)
    loss, grad, wsum = _C.softmax_xent(x, np.array([0, 1, 2]), weight=np.zeros(4, np.float32), want_grad=True)
    assert np.isnan(loss) and wsum == 0.0 and np.all(np.isnan(grad))  # as torch: 0/0


def test_xent_thread_count_gives_identical_results(isa, rng):
    x, labels = class_inputs(rng, 4000, 100)
    labels[::7] = -100
    out = []
    for t in (1, 2):
        _C.set_num_threads(t)
        out.append(_C.softmax_xent(x, labels, label_smoothing=0.1, reduction="sum", want_grad=True))
    assert out[0][0] == out[1][0]
    np.testing.assert_array_equal(out[0][1], out[1][1])


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_xent_matches_torch(isa, rng, reduction, weighted, smoothing):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, labels = class_inputs(rng, 29, 11, scale=5.0)
    labels[[3, 10]] = 7
    labels[[4, 20]] = -100
    w = (rng.random(11) + 0.5).astype(np.float32) if weighted else None
    tx = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
    tloss = F.cross_entropy(tx, torch.from_numpy(labels), weight=None if w is None else torch.from_numpy(w).double(),
                            reduction=reduction, label_smoothing=smoothing)
    (tgrad,) = torch.autograd.grad(tloss.sum(), tx)
    loss, grad, _ = _C.softmax_xent(x, labels, weight=w, label_smoothing=smoothing, reduction=reduction,
                                    want_grad=True)
    np.testing.assert_allclose(loss, tloss.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad, tgrad.numpy(), rtol=1e-5, atol=1e-7)


# ---- NLL ------------------------------------------------------------------------

@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("rows,cols", SHAPES)
def test_nll_matches_float64(isa, threads, rng, rows, cols, reduction, weighted):
    x, labels = class_inputs(rng, rows, cols)
    logp = log_softmax64(x).astype(np.float32) if rows else x
    labels[::4] = -100
    w = (rng.random(cols) + 0.25).astype(np.float32) if weighted else None
    loss, grad, wsum = _C.nll(logp, labels, weight=w, reduction=reduction, want_grad=True, grad_scale=2.0)
    keep = labels != -100
    y = np.where(keep, labels, 0)
    w64 = np.ones(cols) if w is None else w.astype(np.float64)
    ref_rows = np.where(keep, -w64[y] * logp[np.arange(rows), y], 0.0)
    ref_grad = np.zeros((rows, cols))
    ref_grad[np.arange(rows)[keep], y[keep]] = -w64[y[keep]] * 2.0
    ref_wsum = w64[y[keep]].sum()
    np.testing.assert_allclose(wsum, ref_wsum, rtol=1e-12)
    if reduction == "none":
        np.testing.assert_allclose(loss, ref_rows, rtol=1e-6)
    elif reduction == "sum":
        np.testing.assert_allclose(loss, ref_rows.sum(), rtol=1e-6)
    else:
        if ref_wsum:  # else every row is ignored: loss 0/0, gradient 0
            ref_grad /= ref_wsum
            np.testing.assert_allclose(loss, ref_rows.sum() / ref_wsum, rtol=1e-6)
        else:
            assert np.isnan(loss)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-6)


def test_nll_matches_torch(isa, rng):
    torch = pytest.importorskip("torch")
    x, labels = class_inputs(rng, 31, 9)
    labels[5] = -100
    logp = log_softmax64(x).astype(np.float32)
    w = (rng.random(9) + 0.5).astype(np.float32)
    for reduction in ("mean", "sum", "none"):
        tlogp = torch.from_numpy(logp.astype(np.float64)).requires_grad_(True)
        tloss = torch.nn.functional.nll_loss(tlogp, torch.from_numpy(labels), weight=torch.from_numpy(w).double(),
                                             reduction=reduction)
        (tgrad,) = torch.autograd.grad(tloss.sum(), tlogp)
        loss, grad, _ = _C.nll(logp, labels, weight=w, reduction=reduction, want_grad=True)
        np.testing.assert_allclose(loss, tloss.detach().numpy(), rtol=1e-6)
        np.testing.assert_allclose(grad, tgrad.numpy(), rtol=1e-6)


# ---- element-wise losses -------------------------------------------------------------

def pointwise_inputs(rng, kind, n):
    if kind == BCE:
        x = rng.random(n).astype(np.float32)
        if n >= 8:
            x[:4] = [0.0, 1.0, 1e-30, 1.0 - 2.0 ** -24]
        t = rng.random(n).astype(np.float32)
    else:
        x = (rng.standard_normal(n) * 4).astype(np.float32)
        if n >= 8:
            x[:4] = [0.0, 1e4, -1e4, 40.0]
        t = rng.random(n).astype(np.float32) if kind == BCE_LOGITS else rng.standard_normal(n).astype(np.float32)
        if kind == L1 and n >= 8:
            t[0] = x[0]  # |x - t| at its kink: gradient 0
    return x, t


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("kind", [MSE, L1, BCE, BCE_LOGITS], ids=["mse", "l1", "bce", "bce_logits"])
@pytest.mark.parametrize("n", [0, 1, 7, 17, 63, 65, 784, 5003])
def test_pointwise_matches_float64(isa, threads, rng, kind, n, weighted):
    x, t = pointwise_inputs(rng, kind, n)
    w = rng.random(n).astype(np.float32) if weighted else None
    ref_loss, ref_grad = pointwise64(kind, x, t, w)
    elem, grad = _C.pointwise_loss(x, t, kind, weight=w, reduction="none", want_grad=True, grad_scale=3.0)
    # float32 logs lose ~1e-7 absolutely where the loss itself is near zero
    atol = 1e-6 if kind in (BCE, BCE_LOGITS) else 1e-30
    np.testing.assert_allclose(elem, ref_loss, rtol=4e-6, atol=atol)
    gatol = 1e-5 if kind == BCE else 1e-6
    np.testing.assert_allclose(grad, 3.0 * ref_grad, rtol=4e-6, atol=gatol)
    total, g2 = _C.pointwise_loss(x, t, kind, weight=w, reduction="sum")
    assert g2 is None
    np.testing.assert_allclose(total, ref_loss.sum(), rtol=1e-5, atol=1e-5)
    mean, gmean = _C.pointwise_loss(x, t, kind, weight=w, reduction="mean", want_grad=True)
    if n == 0:
        assert np.isnan(mean)
    else:
        np.testing.assert_allclose(mean, ref_loss.mean(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(gmean, ref_grad / n, rtol=4e-6, atol=gatol / n)


@pytest.mark.parametrize("kind", [MSE, L1, BCE, BCE_LOGITS], ids=["mse", "l1", "bce", "bce_logits"])
def test_pointwise_matches_torch(isa, rng, kind):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, t = pointwise_inputs(rng, kind, 301)
    if kind == BCE:
        x = np.clip(x, 1e-3, 1 - 1e-3)  # keep torch's float64 clamp and ours on the same side
    w = rng.random(301).astype(np.float32)
    for reduction in ("mean", "sum", "none"):
        tx = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
        tt = torch.from_numpy(t.astype(np.float64))
        tw = torch.from_numpy(w.astype(np.float64))
        if kind == MSE:
            tl, weight = F.mse_loss(tx, tt, reduction=reduction), None
        elif kind == L1:
            tl, weight = F.l1_loss(tx, tt, reduction=reduction), None
        elif kind == BCE:
            tl, weight = F.binary_cross_entropy(tx, tt, weight=tw, reduction=reduction), w
        else:
            tl, weight = F.binary_cross_entropy_with_logits(tx, tt, weight=tw, reduction=reduction), w
        (tg,) = torch.autograd.grad(tl.sum(), tx)
        loss, grad = _C.pointwise_loss(x, t, kind, weight=weight, reduction=reduction, want_grad=True)
        np.testing.assert_allclose(loss, tl.detach().numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(grad, tg.numpy(), rtol=1e-5, atol=1e-7)


def test_pointwise_thread_count_gives_identical_results(isa, rng):
    x, t = pointwise_inputs(rng, BCE_LOGITS, 600_001)
    out = []
    for th in (1, 2):
        _C.set_num_threads(th)
        out.append(_C.pointwise_loss(x, t, BCE_LOGITS, reduction="sum", want_grad=True))
    assert out[0][0] == out[1][0]
    np.testing.assert_array_equal(out[0][1], out[1][1])


def test_pointwise_any_shape(isa, rng):
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    t = rng.standard_normal((3, 4, 5)).astype(np.float32)
    elem, grad = _C.pointwise_loss(x, t, MSE, reduction="none", want_grad=True)
    assert elem.shape == grad.shape == (3, 4, 5)
    np.testing.assert_allclose(elem, (x.astype(np.float64) - t) ** 2, rtol=4e-6)


# ---- bad input --------------------------------------------------------------------------

class TestBadInput:
    def test_label_out_of_range_names_the_label(self):
        x = np.zeros((3, 5), np.float32)
        with pytest.raises(IndexError, match=r"cross_entropy: target\[1\] = 5 is out of range for 5 classes"):
            _C.softmax_xent(x, np.array([0, 5, 1]))
        with pytest.raises(IndexError, match=r"target\[2\] = -1 is out of range for 5 classes"):
            _C.softmax_xent(x, np.array([0, 4, -1]))
        with pytest.raises(IndexError, match=r"nll_loss: target\[0\] = 7 is out of range"):
            _C.nll(x, np.array([7, 0, 0]))

    def test_ignore_index_may_be_out_of_range(self):
        loss, _, wsum = _C.softmax_xent(np.zeros((2, 5), np.float32), np.array([-1, 2]), ignore_index=-1)
        assert wsum == 1.0 and np.isclose(loss, np.log(5.0))

    def test_labels_wrong_dtype(self):
        with pytest.raises(TypeError, match=r"cross_entropy: argument 'target' must be a int64 array; got int32 \[3\]"):
            _C.softmax_xent(np.zeros((3, 5), np.float32), np.zeros(3, np.int32))

    def test_labels_wrong_shape(self):
        with pytest.raises(ValueError, match=r"target must have shape \[3\] to match input \[3, 5\]; got int64 \[4\]"):
            _C.softmax_xent(np.zeros((3, 5), np.float32), np.zeros(4, np.int64))

    def test_logits_not_2d(self):
        with pytest.raises(ValueError, match=r"cross_entropy: argument 'input' must be 2-D"):
            _C.softmax_xent(np.zeros(5, np.float32), np.zeros(5, np.int64))

    def test_logits_wrong_dtype(self):
        with pytest.raises(TypeError, match=r"argument 'input' must be a float32 array; got float64 \[3, 5\]"):
            _C.softmax_xent(np.zeros((3, 5)), np.zeros(3, np.int64))

    def test_weight_wrong_shape(self):
        with pytest.raises(ValueError, match=r"argument 'weight' must have shape \[5\]; got float32 \[4\]"):
            _C.softmax_xent(np.zeros((3, 5), np.float32), np.zeros(3, np.int64), weight=np.ones(4, np.float32))

    def test_bad_reduction(self):
        with pytest.raises(ValueError, match="reduction must be 'none', 'mean' or 'sum'; got 'avg'"):
            _C.softmax_xent(np.zeros((3, 5), np.float32), np.zeros(3, np.int64), reduction="avg")

    def test_bad_label_smoothing(self):
        with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\]; got 1.5"):
            _C.softmax_xent(np.zeros((3, 5), np.float32), np.zeros(3, np.int64), label_smoothing=1.5)

    def test_pointwise_shape_mismatch(self):
        msg = r"mse_loss: arguments 'input' and 'target' must have the same shape; got \[3\] and \[4\]"
        with pytest.raises(ValueError, match=msg):
            _C.pointwise_loss(np.zeros(3, np.float32), np.zeros(4, np.float32), MSE)

    def test_pointwise_weight_mismatch(self):
        with pytest.raises(ValueError, match=r"'input' and 'weight' must have the same shape"):
            _C.pointwise_loss(np.zeros(3, np.float32), np.zeros(3, np.float32), L1, weight=np.ones(2, np.float32))

    def test_pointwise_wrong_dtype(self):
        with pytest.raises(TypeError, match=r"binary_cross_entropy_with_logits: argument 'target' must be a float32"):
            _C.pointwise_loss(np.zeros(3, np.float32), np.zeros(3), BCE_LOGITS)

    def test_bce_input_outside_unit_interval(self):
        with pytest.raises(RuntimeError, match=r"binary_cross_entropy: all elements of input should be between 0 and 1; "
                                             r"input\[1\] = 1.5"):
            _C.pointwise_loss(np.array([0.5, 1.5], np.float32), np.zeros(2, np.float32), BCE)

    def test_bad_kind(self):
        with pytest.raises(ValueError, match="kind must be 0"):
            _C.pointwise_loss(np.zeros(3, np.float32), np.zeros(3, np.float32), 4)


@pytest.mark.parametrize("kind", [MSE, L1, BCE, BCE_LOGITS], ids=["mse", "l1", "bce", "bce_logits"])
@pytest.mark.parametrize("n", [5003, 65553, 1_000_003])
def test_pointwise_sum_is_accurate_in_any_build(isa, threads, rng, kind, n):
    """The reduced loss is the float64 sum of the element losses to within a few float32 roundings,
    whatever n: the kernel fixes its order of addition itself (short float lanes, then double), so a
    build that does not vectorise (a sanitizer build, -O0) sums as accurately as one that does. A
    plain float32 running sum over blocks of 4096 elements misses this by 1e-5 and more when large
    terms come first, as they do here."""
    x, t = pointwise_inputs(rng, kind, n)
    w = rng.random(n).astype(np.float32)
    for weight in (None, w):
        elem, _ = _C.pointwise_loss(x, t, kind, weight=weight, reduction="none")
        exact = elem.astype(np.float64).sum()
        total, _ = _C.pointwise_loss(x, t, kind, weight=weight, reduction="sum")
        # every term is >= 0, so the relative error of the sum is bounded by its roundings
        np.testing.assert_allclose(total, exact, rtol=3e-7)
        mean, _ = _C.pointwise_loss(x, t, kind, weight=weight, reduction="mean")
        np.testing.assert_allclose(mean, exact / n, rtol=3e-7)
