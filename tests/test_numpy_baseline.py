"""The NumPy baseline of the training benchmark computes the same step as fastmlp (so the benchmark
compares equal work): one SGD and a few Adam steps from identical weights agree to float32 rounding."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import fastmlp
from fastmlp import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
numpy_mlp = pytest.importorskip("numpy_mlp", reason="benchmarks/ is not beside the tests")


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_numpy_baseline_matches_fastmlp(opt):
    sizes = [20, 16, 12, 5]
    base = numpy_mlp.NumpyMLP(sizes, optimizer=opt, lr=0.01, seed=3)
    layers = []
    for i, (W, b) in enumerate(zip(base.W, base.b)):
        lin = nn.Linear(W.shape[1], W.shape[0])
        with fastmlp.no_grad():
            lin.weight.copy_(fastmlp.tensor(W))
            lin.bias.copy_(fastmlp.tensor(b))
        layers.append(lin)
        if i < len(base.W) - 1:
            layers.append(nn.ReLU())
    model = nn.Sequential(*layers)
    optimizer = (fastmlp.optim.SGD if opt == "sgd" else fastmlp.optim.Adam)(model.parameters(), lr=0.01)
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.standard_normal((8, 20)).astype(np.float32)
        y = rng.integers(0, 5, 8)
        loss_np = base.step(x, y)
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(fastmlp.tensor(x)), fastmlp.tensor(y))
        loss.backward()
        optimizer.step()
        assert loss.item() == pytest.approx(loss_np, rel=1e-5)
    for lin, W, b in zip(model[::2], base.W, base.b):
        np.testing.assert_allclose(lin.weight.detach().numpy(), W, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(lin.bias.detach().numpy(), b, rtol=1e-4, atol=1e-6)
