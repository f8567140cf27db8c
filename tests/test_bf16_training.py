"""Training in bfloat16 (``fit(precision="bf16")``, a Sequential under ``fastmlp.autocast``): the
native program runs the same bfloat16 products as the module-by-module path under autocast
(bitwise, step by step), the rounding really happens, and weights and checkpoints stay float32."""
from __future__ import annotations

import numpy as np
import pytest

import fastmlp
from fastmlp import nn, optim
from fastmlp.nn import program as program_mod
from fastmlp.train import ModelCheckpoint, fit
from fastmlp.utils.data import DataLoader, TensorDataset


def _model(dropout: float = 0.0):
    layers = [nn.Linear(20, 32), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else []) + \
        [nn.Linear(32, 24), nn.GELU(), nn.Linear(24, 5)]
    return nn.Sequential(*layers)


def _data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 20)).astype(np.float32)
    y = (x[:, :5].argmax(1)).astype(np.int64)
    return fastmlp.from_numpy(x), fastmlp.from_numpy(y)


OPTS = {"adam": lambda p: optim.Adam(p, lr=1e-2), "sgd-plain": lambda p: optim.SGD(p, lr=0.1),
        "sgd-momentum": lambda p: optim.SGD(p, lr=0.05, momentum=0.9)}


def _eager_loop(model, opt, loader, epochs):
    crit = nn.CrossEntropyLoss()
    losses = []
    for _ in range(epochs):
        total, n = 0.0, 0
        for x, y in loader:
            with fastmlp.autocast("cpu", dtype=fastmlp.bfloat16):
                loss = crit(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(x)
            n += len(x)
        losses.append(total / n)
    return losses


@pytest.mark.parametrize("opt_name", list(OPTS))
@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_fit_bf16_equals_the_module_path_under_autocast(opt_name, dropout, monkeypatch):
    x, y = _data()
    results = []
    native = []  # the bf16 flag of every native run of steps fit made
    real = program_mod.TrainStep.steps
    monkeypatch.setattr(program_mod.TrainStep, "steps",
                        lambda self, *a: native.append(self.program is None or self.program.bf16) or real(self, *a))
    for route in ("fit", "modules"):
        fastmlp.manual_seed(3)
        model = _model(dropout)
        opt = OPTS[opt_name](model.parameters())
        loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
        if route == "fit":  # the native program, runs of steps in one call
            losses = fit(model, nn.CrossEntropyLoss(), opt, loader, epochs=2, progress=False,
                         precision="bf16")["train_loss"]
        else:
            monkeypatch.setattr(program_mod, "enabled", False)  # module by module, one op each
            losses = _eager_loop(model, opt, loader, epochs=2)
            monkeypatch.setattr(program_mod, "enabled", True)
        results.append((losses, [p.detach().numpy().copy() for p in model.parameters()]))
    assert native and all(native)
    (l0, p0), (l1, p1) = results
    np.testing.assert_allclose(l0, l1, rtol=1e-6)  # epoch means: summed in a different order
    for a, b in zip(p0, p1):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == np.float32


def test_eager_sequential_under_autocast_runs_the_bf16_program(monkeypatch):
    x, y = _data(40)
    outs = []
    for native in (True, False):
        monkeypatch.setattr(program_mod, "enabled", native)
        fastmlp.manual_seed(1)
        model = _model(0.2)
        xi = x.clone().requires_grad_(True)
        with fastmlp.autocast("cpu", dtype=fastmlp.bfloat16):
            out = model(xi)
        assert (type(out.grad_fn).__name__ == "ProgramBackward") == native
        nn.CrossEntropyLoss()(out, y).backward()
        outs.append([out.detach().numpy(), xi.grad.numpy()] + [p.grad.numpy() for p in model.parameters()])
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)


def test_bf16_products_round_their_operands():
    # the first layer's output under the bf16 program is the float64 product of the bf16-rounded
    # operands (to float32 accumulation), and differs from float32's
    fastmlp.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 8))
    x, _ = _data(12)
    with fastmlp.no_grad():
        full = model(x).numpy()
        with fastmlp.autocast("cpu", dtype=fastmlp.bfloat16):
            low = model(x).numpy()

    def bf16(a):
        return fastmlp.tensor(a).to(fastmlp.bfloat16).float().numpy().astype(np.float64)

    w, b = model[0].weight.detach().numpy(), model[0].bias.detach().numpy()
    expected = bf16(x.numpy()) @ bf16(w).T + b
    np.testing.assert_allclose(low, expected, rtol=1e-5, atol=1e-5)
    assert not np.array_equal(low, full)


def test_bf16_training_learns_like_float32_and_checkpoints_stay_float32(tmp_path):
    x, y = _data(400, seed=2)
    vx, vy = _data(200, seed=3)
    acc = {}
    for precision in ("32", "bf16"):
        fastmlp.manual_seed(0)
        model = _model()
        opt = optim.Adam(model.parameters(), lr=1e-2)
        path = tmp_path / f"best-{precision}.pt"
        h = fit(model, nn.CrossEntropyLoss(), opt, DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True),
                DataLoader(TensorDataset(vx, vy), batch_size=100), epochs=8, progress=False, precision=precision,
                callbacks=[ModelCheckpoint(str(path))])
        acc[precision] = h["val_accuracy"][-1]
        assert all(v.dtype == fastmlp.float32 for v in model.state_dict().values())
        assert all(s["exp_avg"].dtype == fastmlp.float32 for s in opt.state_dict()["state"].values())
        saved = fastmlp.load(str(path))
        saved = saved.get("model", saved) if isinstance(saved, dict) and "model" in saved else saved
        assert all(v.dtype == fastmlp.float32 for v in saved.values())
    assert acc["32"] > 0.8 and abs(acc["bf16"] - acc["32"]) <= 0.05


def test_fit_precision_is_checked():
    x, y = _data(16)
    model = _model()
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    for bad in ("16", "fp16", 16, None):
        with pytest.raises(ValueError, match="precision must be one of"):
            fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), loader, precision=bad,
                progress=False)
