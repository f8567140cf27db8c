"""Parity with PyTorch (CPU, float32): random MLPs using every layer, loss and optimizer, trained for
several steps from identical weights and data; losses, gradients and parameters are compared at every
step. Skipped where PyTorch is not installed."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed; parity tests need torch (CPU build)")

import fastmlp  # noqa: E402
from fastmlp import nn  # noqa: E402

RTOL = 1e-5


def build(lib, arch):
    n = lib.nn
    if arch == "classifier":
        return n.Sequential(n.Linear(12, 16), n.ReLU(), n.Dropout(0.2), n.Linear(16, 16, bias=False), n.BatchNorm1d(16),
                            n.Tanh(),
                            n.Linear(16, 8), n.GELU(), n.Linear(8, 5))
    if arch == "log_probs":
        return n.Sequential(n.Linear(12, 16), n.LeakyReLU(0.1), n.Linear(16, 5), n.LogSoftmax(dim=1))
    if arch == "regressor":
        return n.Sequential(n.Linear(12, 16), n.Sigmoid(), n.Flatten(), n.Linear(16, 8), n.Identity(), n.Tanh(),
                            n.Linear(8, 3))
    if arch == "probs":
        return n.Sequential(n.Linear(12, 10), n.ReLU(), n.Linear(10, 3), n.Softmax(dim=1))
    if arch == "bce":
        return n.Sequential(n.Linear(12, 10), n.GELU(), n.Linear(10, 3), n.Sigmoid())
    raise KeyError(arch)


def copy_weights(ours, theirs):
    sd = {k: torch.from_numpy(v.numpy().copy()) for k, v in ours.state_dict().items()}
    theirs.load_state_dict(sd)


class MaskedDropout(torch.nn.Module):
    """Applies the mask fastmlp's Dropout drew in the same step, so both models drop the same units."""

    def __init__(self, p):
        super().__init__()
        self.p = p
        self.mask = None

    def forward(self, x):
        return x * torch.from_numpy(self.mask.astype(np.float32)) / (1 - self.p) if self.training else x


CASES = [
    ("classifier", "cross_entropy", dict(label_smoothing=0.1)),
    ("classifier", "cross_entropy_weighted", {}),
    ("log_probs", "nll", {}),
    ("regressor", "mse", {}),
    ("regressor", "l1", {}),
    ("regressor", "bce_logits", {}),
    ("probs", "mse", {}),
    ("bce", "bce", {}),
]
OPTIMIZERS = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    ("SGD", dict(lr=0.05, momentum=0.8, dampening=0.1)),
    ("Adam", dict(lr=1e-3)),
    ("Adam", dict(lr=1e-3, amsgrad=True, weight_decay=1e-2)),
    ("AdamW", dict(lr=1e-3, weight_decay=0.05)),
]


def make_loss(lib, name, opts, n_out):
    n = lib.nn
    if name.startswith("cross_entropy"):
        w = None
        if name.endswith("weighted"):
            w = lib.tensor(np.linspace(0.5, 1.5, n_out).astype(np.float32))
        return n.CrossEntropyLoss(weight=w, **opts)
    return {"nll": n.NLLLoss, "mse": n.MSELoss, "l1": n.L1Loss, "bce_logits": n.BCEWithLogitsLoss,
            "bce": n.BCELoss}[name](**opts)


@pytest.mark.parametrize("opt_name,opt_cfg", OPTIMIZERS, ids=[f"{o}-{i}" for i, (o, _) in enumerate(OPTIMIZERS)])
@pytest.mark.parametrize("arch,loss_name,loss_opts", CASES, ids=[f"{a}-{l}" for a, l, _ in CASES])
def test_training_steps_match_pytorch(arch, loss_name, loss_opts, opt_name, opt_cfg):
    fastmlp.manual_seed(1)
    rng = np.random.default_rng(2)
    ours = build(fastmlp, arch)
    theirs = build(torch, arch)
    drop_ours = [m for m in ours if isinstance(m, nn.Dropout)]
    for i, m in enumerate(theirs):
        if isinstance(m, torch.nn.Dropout):
            theirs[i] = MaskedDropout(m.p)
    drop_theirs = [m for m in theirs if isinstance(m, MaskedDropout)]
    copy_weights(ours, theirs)
    n_out = 5 if arch in ("classifier", "log_probs") else 3
    crit_ours = make_loss(fastmlp, loss_name, loss_opts, n_out)
    crit_theirs = make_loss(torch, loss_name, loss_opts, n_out)
    opt_ours = getattr(fastmlp.optim, opt_name)(ours.parameters(), **opt_cfg)
    opt_theirs = getattr(torch.optim, opt_name)(theirs.parameters(), **opt_cfg)
    masks = []
    for d in drop_ours:
        d.register_forward_hook(lambda mod, inp, out: masks.append(out.grad_fn.mask))
    batch = 15  # odd: an L1 bias gradient (a mean of signs) can't cancel to exactly zero
    for step in range(5):
        x = rng.standard_normal((batch, 12)).astype(np.float32)
        if n_out == 5:
            y = rng.integers(0, 5, batch)
        elif loss_name.startswith("bce"):
            y = rng.uniform(0, 1, (batch, 3)).astype(np.float32)
        else:
            y = rng.standard_normal((batch, 3)).astype(np.float32)
        masks.clear()
        opt_ours.zero_grad()
        out_ours = ours(fastmlp.tensor(x))
        loss_ours = crit_ours(out_ours, fastmlp.tensor(y))
        loss_ours.backward()
        for d, mk in zip(drop_theirs, masks):
            d.mask = mk
        opt_theirs.zero_grad()
        out_theirs = theirs(torch.from_numpy(x))
        loss_theirs = crit_theirs(out_theirs, torch.from_numpy(y))
        loss_theirs.backward()
        np.testing.assert_allclose(out_ours.detach().numpy(), out_theirs.detach().numpy(), rtol=RTOL, atol=1e-6,
                                   err_msg=f"outputs at step {step}")
        np.testing.assert_allclose(loss_ours.item(), loss_theirs.item(), rtol=RTOL, err_msg=f"loss at step {step}")
        for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
            scale = float(np.abs(q.grad.numpy()).max())
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=RTOL, atol=max(1e-5 * scale, 1e-7),
                                       err_msg=f"grad of {name} at step {step}")
        opt_ours.step()
        opt_theirs.step()
        for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
            np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=RTOL, atol=1e-6,
                                       err_msg=f"{name} after step {step}")
    for (name, b), (_, tb) in zip(ours.named_buffers(), theirs.named_buffers()):
        np.testing.assert_allclose(b.numpy(), tb.numpy(), rtol=RTOL, atol=1e-6, err_msg=name)


def test_schedulers_match_pytorch():
    for name, kw in [("StepLR", dict(step_size=3, gamma=0.3)), ("ExponentialLR", dict(gamma=0.8)),
                     ("CosineAnnealingLR", dict(T_max=7, eta_min=0.01))]:
        p1 = [nn.Parameter(fastmlp.zeros(1))]
        p2 = [torch.nn.Parameter(torch.zeros(1))]
        o1, o2 = fastmlp.optim.SGD(p1, lr=0.5), torch.optim.SGD(p2, lr=0.5)
        s1 = getattr(fastmlp.optim.lr_scheduler, name)(o1, **kw)
        s2 = getattr(torch.optim.lr_scheduler, name)(o2, **kw)
        for _ in range(10):
            o1.step()
            o2.step()
            s1.step()
            s2.step()
            assert s1.get_last_lr()[0] == pytest.approx(s2.get_last_lr()[0], rel=1e-9), name
    p1 = [nn.Parameter(fastmlp.zeros(1))]
    p2 = [torch.nn.Parameter(torch.zeros(1))]
    o1, o2 = fastmlp.optim.SGD(p1, lr=0.5), torch.optim.SGD(p2, lr=0.5)
    s1 = fastmlp.optim.lr_scheduler.ReduceLROnPlateau(o1, patience=2, factor=0.5, cooldown=1)
    s2 = torch.optim.lr_scheduler.ReduceLROnPlateau(o2, patience=2, factor=0.5, cooldown=1)
    for metric in [1.0, 0.9, 0.91, 0.92, 0.93, 0.95, 0.8, 0.85, 0.86, 0.87, 0.88]:
        s1.step(metric)
        s2.step(metric)
        assert o1.param_groups[0]["lr"] == o2.param_groups[0]["lr"]


def test_cross_entropy_options_match_pytorch():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((9, 6)).astype(np.float32) * 4
    y = rng.integers(0, 6, 9)
    y[2] = 3
    w = rng.uniform(0.2, 2, 6).astype(np.float32)
    for kw in [dict(), dict(reduction="sum"), dict(reduction="none"), dict(ignore_index=3),
               dict(label_smoothing=0.3), dict(weight=True, label_smoothing=0.2, ignore_index=3)]:
        kw = dict(kw)
        use_w = kw.pop("weight", False)
        a = fastmlp.tensor(x, requires_grad=True)
        b = torch.tensor(x, requires_grad=True)
        la = fastmlp.nn.functional.cross_entropy(a, fastmlp.tensor(y), weight=fastmlp.tensor(w) if use_w else None,
                                                 **kw)
        lb = torch.nn.functional.cross_entropy(b, torch.from_numpy(y), weight=torch.from_numpy(w) if use_w else None,
                                               **kw)
        np.testing.assert_allclose(la.detach().numpy(), lb.detach().numpy(), rtol=1e-5, err_msg=str(kw))
        la.sum().backward()
        lb.sum().backward()
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-5, atol=1e-7, err_msg=str(kw))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("fn,opts", [
    ("binary_cross_entropy", {}), ("binary_cross_entropy", {"weight": True}),
    ("binary_cross_entropy_with_logits", {}), ("binary_cross_entropy_with_logits", {"weight": True}),
    ("binary_cross_entropy_with_logits", {"pos_weight": True}),
    ("binary_cross_entropy_with_logits", {"weight": True, "pos_weight": True}),
    ("mse_loss", {}), ("l1_loss", {})])
def test_pointwise_losses_differentiate_the_target_as_pytorch(fn, opts, reduction):
    """Soft targets that require grad (distillation, learned labels): both gradients as torch's."""
    rng = np.random.default_rng(4)
    x = rng.uniform(0.05, 0.95, (6, 3)) if fn == "binary_cross_entropy" else rng.standard_normal((6, 3))
    t = rng.uniform(0.0, 1.0, (6, 3))
    g = rng.standard_normal((6, 3)) if reduction == "none" else None
    extra = {}
    if opts.get("weight"):
        extra["weight"] = rng.uniform(0.5, 2.0, (3,))
    if opts.get("pos_weight"):
        extra["pos_weight"] = rng.uniform(0.5, 3.0, (3,))
    out = []
    for lib in (fastmlp, torch):
        xs = lib.tensor(x.astype(np.float32), requires_grad=True)
        ts = lib.tensor(t.astype(np.float32), requires_grad=True)
        kw = {k: lib.tensor(v.astype(np.float32)) for k, v in extra.items()}
        loss = getattr(lib.nn.functional, fn)(xs, ts, reduction=reduction, **kw)
        loss.backward(None if g is None else lib.tensor(g.astype(np.float32)))
        out.append((loss.detach().numpy(), xs.grad.numpy(), ts.grad.numpy()))
    for a, b in zip(*out):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-6)
