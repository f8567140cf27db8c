"""build_mlp and checkpoints that rebuild their model; clear errors for a different architecture."""
from __future__ import annotations

import numpy as np
import pytest

import fastmlp
from fastmlp import nn
from fastmlp.train import CheckpointMismatchError, build_mlp, load_mlp_checkpoint
from fastmlp.train.mlp import mlp_checkpoint_extra


def test_build_mlp_layers():
    m = build_mlp(784, [512, 256], 10, activation="tanh", dropout=0.2)
    kinds = [type(x).__name__ for x in m]
    assert kinds == ["Linear", "Tanh", "Dropout", "Linear", "Tanh", "Dropout", "Linear"]
    assert [tuple(x.weight.shape) for x in m if isinstance(x, nn.Linear)] == [(512, 784), (256, 512), (10, 256)]
    assert [type(x).__name__ for x in build_mlp(4, [], 2)] == ["Linear"]
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        build_mlp(4, [3], 2, activation="swish")
    with pytest.raises(ValueError, match="dropout"):
        build_mlp(4, [3], 2, dropout=1.0)


def outputs(model, x):
    model.eval()
    with fastmlp.no_grad():
        return model(x).numpy()


def test_checkpoint_with_architecture_rebuilds_the_model(tmp_path):
    arch = {"in_features": 6, "hidden": [5, 4], "out_features": 3, "activation": "gelu", "dropout": 0.1}
    model = build_mlp(**arch)
    fastmlp.save({**mlp_checkpoint_extra(arch, dataset="mnist"), "state_dict": model.state_dict(), "epoch": 2},
                 tmp_path / "m.pt")
    rebuilt, info = load_mlp_checkpoint(tmp_path / "m.pt")
    assert info["arch"] == arch and info["dataset"] == "mnist" and info["epoch"] == 2
    assert not rebuilt.training
    x = fastmlp.randn(3, 6)
    np.testing.assert_array_equal(outputs(rebuilt, x), outputs(model, x))


def test_plain_state_dict_of_a_custom_mlp(tmp_path):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(6, 5)
            self.fc2 = nn.Linear(5, 3)
            self.dropout = nn.Dropout(0.2)

        def forward(self, x):
            return self.fc2(self.dropout(nn.functional.relu(self.fc1(x))))

    net = Net()
    fastmlp.save(net.state_dict(), tmp_path / "model.pt")
    rebuilt, info = load_mlp_checkpoint(tmp_path / "model.pt")
    assert info["arch"]["hidden"] == [5] and info["arch"]["in_features"] == 6
    x = fastmlp.randn(4, 6)
    np.testing.assert_allclose(outputs(rebuilt, x), outputs(net, x), rtol=1e-6, atol=1e-6)


def test_different_architecture_names_keys_and_shapes(tmp_path):
    model = build_mlp(6, [5], 3)
    fastmlp.save({**mlp_checkpoint_extra({"in_features": 6, "hidden": [5], "out_features": 3}),
                  "state_dict": model.state_dict()}, tmp_path / "m.pt")
    with pytest.raises(CheckpointMismatchError) as e:
        load_mlp_checkpoint(tmp_path / "m.pt", arch={"in_features": 6, "hidden": [7], "out_features": 3})
    msg = str(e.value)
    assert "m.pt" in msg and "'0.weight': checkpoint [5, 6] vs model [7, 6]" in msg
    assert "'2.weight': checkpoint [3, 5] vs model [3, 7]" in msg


def test_extra_layers_are_named(tmp_path):
    sd = build_mlp(6, [5], 3).state_dict()
    fastmlp.save({**mlp_checkpoint_extra({"in_features": 6, "hidden": [], "out_features": 3}), "state_dict": sd},
                 tmp_path / "m.pt")
    with pytest.raises(CheckpointMismatchError, match=r"keys the model does not have: \['2.weight', '2.bias'\]"):
        load_mlp_checkpoint(tmp_path / "m.pt")


def test_layers_that_do_not_chain(tmp_path):
    fastmlp.save({"a.weight": fastmlp.zeros(5, 6), "a.bias": fastmlp.zeros(5), "b.weight": fastmlp.zeros(3, 4),
                  "b.bias": fastmlp.zeros(3)}, tmp_path / "m.pt")
    with pytest.raises(CheckpointMismatchError, match=r"do not chain: 'a.weight' is \[5, 6\].*'b.weight' is \[3, 4\]"):
        load_mlp_checkpoint(tmp_path / "m.pt")


def test_not_a_state_dict(tmp_path):
    fastmlp.save([1, 2, 3], tmp_path / "m.pt")
    with pytest.raises(CheckpointMismatchError, match="holds a list"):
        load_mlp_checkpoint(tmp_path / "m.pt")
