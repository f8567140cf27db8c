"""fastmlp.onnx.export: onnxruntime runs the exported file and gives fastmlp's outputs (eval mode) for every
supported layer, at several batch sizes; onnx.checker accepts it; unsupported layers are named."""
from __future__ import annotations

import numpy as np
import pytest

import fastmlp
from fastmlp import nn

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def run_onnx(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"input": x})
    return out


def trained_bn(n: int) -> nn.BatchNorm1d:
    bn = nn.BatchNorm1d(n)
    bn(fastmlp.randn(32, n) * 3 + 1)  # running statistics away from 0 and 1
    with fastmlp.no_grad():
        bn.weight.copy_(fastmlp.rand(n) + 0.5)
        bn.bias.copy_(fastmlp.randn(n))
    return bn


MODELS = {
    "linear": lambda: nn.Sequential(nn.Linear(6, 4)),
    "linear_no_bias": lambda: nn.Sequential(nn.Linear(6, 4, bias=False)),
    "relu": lambda: nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)),
    "leaky_relu": lambda: nn.Sequential(nn.Linear(6, 8), nn.LeakyReLU(0.2), nn.Linear(8, 3)),
    "sigmoid": lambda: nn.Sequential(nn.Linear(6, 8), nn.Sigmoid(), nn.Linear(8, 3)),
    "tanh": lambda: nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)),
    "gelu": lambda: nn.Sequential(nn.Linear(6, 8), nn.GELU(), nn.Linear(8, 3)),
    "gelu_tanh": lambda: nn.Sequential(nn.Linear(6, 8), nn.GELU(approximate="tanh"), nn.Linear(8, 3)),
    "dropout": lambda: nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3)),
    "softmax": lambda: nn.Sequential(nn.Linear(6, 5), nn.Softmax(dim=1)),
    "log_softmax": lambda: nn.Sequential(nn.Linear(6, 5), nn.LogSoftmax(dim=-1)),
    "batchnorm": lambda: nn.Sequential(nn.Linear(6, 8), trained_bn(8), nn.ReLU(), nn.Linear(8, 3)),
    "batchnorm_no_affine": lambda: nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8, affine=False), nn.Linear(8, 2)),
    "identity": lambda: nn.Sequential(nn.Identity(), nn.Linear(6, 2)),
    "nested": lambda: nn.Sequential(nn.Sequential(nn.Linear(6, 8), nn.Tanh()), nn.Sequential(nn.Linear(8, 2))),
    "single_layer": lambda: nn.Linear(6, 3),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_onnxruntime_matches_fastmlp(tmp_path, name):
    fastmlp.manual_seed(0)
    model = MODELS[name]()
    if name == "batchnorm_no_affine":
        model[1](fastmlp.randn(32, 8) * 2 - 1)
    model.eval()
    path = tmp_path / f"{name}.onnx"
    fastmlp.onnx.export(model, path, (1, 6))
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    rng = np.random.default_rng(1)
    for batch in (1, 7, 64):
        x = rng.standard_normal((batch, 6)).astype(np.float32) * 2
        with fastmlp.no_grad():
            expected = model(fastmlp.tensor(x)).numpy()
        got = run_onnx(path, x)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_flatten_images_and_a_deeper_mlp(tmp_path):
    """The MNIST shape: Flatten of [N, 1, 28, 28] images into a 784-wide MLP."""
    fastmlp.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 64),
                          nn.GELU(), nn.Linear(64, 10), nn.LogSoftmax(dim=1)).eval()
    fastmlp.onnx.export(model, tmp_path / "m.onnx", (None, 1, 28, 28))
    x = np.random.default_rng(2).random((5, 1, 28, 28), dtype=np.float32)
    with fastmlp.no_grad():
        expected = model(fastmlp.tensor(x)).numpy()
    np.testing.assert_allclose(run_onnx(tmp_path / "m.onnx", x), expected, rtol=1e-5, atol=1e-5)
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim[1:]] == [10]


def test_linear_on_3d_inputs_and_unflatten(tmp_path):
    fastmlp.manual_seed(2)
    model = nn.Sequential(nn.Unflatten(1, (3, 4)), nn.Linear(4, 5), nn.Tanh(), nn.BatchNorm1d(3),
                          nn.Flatten(1, 2), nn.Linear(15, 2)).eval()
    fastmlp.onnx.export(model, tmp_path / "u.onnx", (2, 12))
    x = np.random.default_rng(3).standard_normal((6, 12)).astype(np.float32)
    with fastmlp.no_grad():
        expected = model(fastmlp.tensor(x)).numpy()
    np.testing.assert_allclose(run_onnx(tmp_path / "u.onnx", x), expected, rtol=1e-5, atol=1e-5)


def test_the_export_is_the_eval_mode_model_even_from_training_mode(tmp_path):
    fastmlp.manual_seed(3)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.9), nn.Linear(16, 2))
    assert model.training
    fastmlp.onnx.export(model, tmp_path / "d.onnx", (1, 6))
    assert model.training  # the export does not change the model's mode
    x = np.random.default_rng(4).standard_normal((8, 6)).astype(np.float32)
    model.eval()
    with fastmlp.no_grad():
        expected = model(fastmlp.tensor(x)).numpy()
    np.testing.assert_allclose(run_onnx(tmp_path / "d.onnx", x), expected, rtol=1e-5, atol=1e-5)


def test_normalize_puts_the_standardisation_in_front(tmp_path):
    fastmlp.manual_seed(4)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    mean = np.array([1.0, -2.0, 10.0], np.float32)
    std = np.array([2.0, 0.5, 4.0], np.float32)
    fastmlp.onnx.export(model, tmp_path / "n.onnx", (1, 3), normalize=(mean, std))
    x = np.random.default_rng(5).standard_normal((4, 3)).astype(np.float32) * 3 + mean
    with fastmlp.no_grad():
        expected = model(fastmlp.tensor((x - mean) / std)).numpy()
    np.testing.assert_allclose(run_onnx(tmp_path / "n.onnx", x), expected, rtol=1e-5, atol=1e-5)


class Custom(nn.Module):
    def forward(self, x):
        return x * 2


@pytest.mark.parametrize("model,message", [
    (lambda: nn.Sequential(nn.Linear(4, 4), Custom()), r"layer '1' \(Custom\) can't be exported; supported: Linear"),
    (lambda: nn.Sequential(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4, track_running_stats=False))),
     r"'0.1' \(BatchNorm1d with track_running_stats=False\)"),
    (lambda: nn.Sequential(nn.Linear(5, 4)), r"'0' \(Linear\(5, 4\)\) gets inputs of shape \[batch, 4\]"),
    (lambda: nn.Sequential(nn.Linear(4, 4).double()), r"0.weight is float64"),
])
def test_unsupported_models_are_named(tmp_path, model, message):
    with pytest.raises(ValueError, match=message):
        fastmlp.onnx.export(model(), tmp_path / "x.onnx", (1, 4))
    assert not (tmp_path / "x.onnx").exists()


def test_bad_input_shape(tmp_path):
    for shape in [(4,), (1, 0), (1, None), "ab"]:
        with pytest.raises(ValueError, match="input_shape"):
            fastmlp.onnx.export(nn.Linear(4, 2), tmp_path / "x.onnx", shape)
