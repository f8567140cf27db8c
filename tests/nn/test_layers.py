"""Layers: gradients by finite differences (float64), PyTorch defaults, printing, fusion, containers."""
from __future__ import annotations

import math

import numpy as np
import pytest

import fastmlp
from fastmlp import nn
from fastmlp.nn import functional as F
from gradcheck_util import check_function, check_module

rng = np.random.default_rng(3)


@pytest.mark.parametrize("shape", [(5, 4), (4,), (2, 3, 4)])
def test_linear_gradients(shape):
    check_module(nn.Linear(4, 3), rng.standard_normal(shape))


def test_linear_without_bias_gradients():
    layer = nn.Linear(4, 3, bias=False)
    assert layer.bias is None
    check_module(layer, rng.standard_normal((5, 4)))


@pytest.mark.parametrize("act", [nn.ReLU(), nn.LeakyReLU(0.1), nn.Sigmoid(), nn.Tanh(), nn.GELU(),
                                 nn.GELU(approximate="tanh"), nn.Softmax(dim=1), nn.LogSoftmax(dim=1),
                                 nn.Identity(), nn.Flatten()], ids=lambda m: type(m).__name__)
def test_activation_module_gradients(act):
    x = rng.standard_normal((4, 6))
    x[np.abs(x) < 1e-3] = 0.5  # keep finite differences away from kinks
    check_module(act, x)


@pytest.mark.parametrize("act_cls,code", [(nn.ReLU, 1), (nn.LeakyReLU, 2), (nn.Sigmoid, 3), (nn.Tanh, 4),
                                          (nn.GELU, 5)])
def test_fused_linear_activation_in_sequential(act_cls, code):
    """Sequential fuses Linear+activation; values and gradients equal the unfused modules'."""
    fastmlp.manual_seed(0)
    seq = nn.Sequential(nn.Linear(6, 5), act_cls(), nn.Linear(5, 3)).double()
    x = rng.standard_normal((7, 6))
    check_module(seq, x)
    out = seq(fastmlp.tensor(x))
    assert out.grad_fn is not None
    lin = seq[0]
    fused = F.linear_act(fastmlp.tensor(x), lin.weight, lin.bias, code, 0.01)
    unfused = seq[1](seq[0](fastmlp.tensor(x)))
    np.testing.assert_allclose(fused.detach().numpy(), unfused.detach().numpy(), rtol=1e-12)


def test_fused_path_float32_matches_float64_reference():
    fastmlp.manual_seed(1)
    seq = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    x = fastmlp.randn(10, 784)
    y = seq(x)
    w1, b1 = seq[0].weight.detach().numpy().astype(np.float64), seq[0].bias.detach().numpy().astype(np.float64)
    w2, b2 = seq[2].weight.detach().numpy().astype(np.float64), seq[2].bias.detach().numpy().astype(np.float64)
    ref = np.maximum(x.numpy().astype(np.float64) @ w1.T + b1, 0) @ w2.T + b2
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-4, atol=1e-4)


def test_dropout_gradient_uses_the_same_mask():
    fastmlp.manual_seed(5)
    d = nn.Dropout(0.3)
    x = fastmlp.ones(50, 40, dtype=fastmlp.float64, requires_grad=True)
    y = d(x)
    y.sum().backward()
    mask = y.detach().numpy() != 0
    np.testing.assert_allclose(x.grad.numpy(), mask / 0.7)
    np.testing.assert_allclose(y.detach().numpy()[mask], 1 / 0.7)
    assert 0.6 < mask.mean() < 0.8
    d.eval()
    assert d(x) is x


def test_dropout_masks_repeat_with_seed_and_differ_between_calls():
    x = fastmlp.ones(1000)
    fastmlp.manual_seed(11)
    a, b = F.dropout(x, 0.5).numpy(), F.dropout(x, 0.5).numpy()
    fastmlp.manual_seed(11)
    a2 = F.dropout(x, 0.5).numpy()
    np.testing.assert_array_equal(a, a2)
    assert not np.array_equal(a, b)
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1, but got 1.5"):
        F.dropout(x, 1.5)


def test_batchnorm_training_and_eval():
    bn = nn.BatchNorm1d(3)
    x = rng.standard_normal((8, 3)) * 2 + 1
    check_module(nn.BatchNorm1d(3), x, rtol=1e-4, atol=1e-6)
    out = bn(fastmlp.tensor(x, dtype=fastmlp.float32))
    np.testing.assert_allclose(out.detach().numpy().mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.1 * x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.9 + 0.1 * x.var(0, ddof=1), rtol=1e-5)
    assert bn.num_batches_tracked.item() == 1
    bn.eval()
    out = bn(fastmlp.tensor(x, dtype=fastmlp.float32)).detach().numpy()
    ref = (x - bn.running_mean.numpy()) / np.sqrt(bn.running_var.numpy() + 1e-5)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    bn_eval = nn.BatchNorm1d(3).double()
    bn_eval.eval()
    check_module(bn_eval, x)


def test_linear_default_init_matches_pytorch_bounds():
    fastmlp.manual_seed(0)
    layer = nn.Linear(784, 512)
    w = layer.weight.detach().numpy()
    bound = 1 / math.sqrt(784)  # kaiming_uniform_(a=sqrt(5)) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert w.shape == (512, 784) and layer.bias.shape == (512,)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.01 * bound
    assert np.abs(layer.bias.detach().numpy()).max() <= bound
    assert layer.weight.dtype == fastmlp.float32 and layer.weight.requires_grad


def test_init_functions():
    t = fastmlp.empty(300, 200)
    nn.init.xavier_uniform_(t)
    a = math.sqrt(6 / 500)
    assert np.abs(t.numpy()).max() <= a and t.numpy().std() == pytest.approx(a / math.sqrt(3), rel=0.05)
    nn.init.kaiming_normal_(t, nonlinearity="relu")
    assert t.numpy().std() == pytest.approx(math.sqrt(2 / 200), rel=0.05)
    nn.init.xavier_normal_(t)
    assert t.numpy().std() == pytest.approx(math.sqrt(2 / 500), rel=0.05)
    nn.init.zeros_(t)
    assert not t.numpy().any()
    nn.init.ones_(t)
    assert (t.numpy() == 1).all()
    nn.init.normal_(t, 3.0, 0.5)
    assert t.numpy().mean() == pytest.approx(3.0, abs=0.01)
    nn.init.uniform_(t, -2, -1)
    assert t.numpy().min() >= -2 and t.numpy().max() <= -1
    assert nn.init.calculate_gain("tanh") == pytest.approx(5 / 3)


SEED004_REPR = """Net(
  (fc1): Linear(in_features=784, out_features=512, bias=True)
  (fc2): Linear(in_features=512, out_features=512, bias=True)
  (fc3): Linear(in_features=512, out_features=10, bias=True)
  (dropout): Dropout(p=0.2)
)"""


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.fc1 = nn.Linear(28 * 28, 512)
        self.fc2 = nn.Linear(512, 512)
        self.fc3 = nn.Linear(512, 10)
        self.dropout = nn.Dropout(0.2)

    def forward(self, x):
        x = x.view(-1, 28 * 28)
        x = F.relu(self.fc1(x))
        x = self.dropout(x)
        x = F.relu(self.fc2(x))
        x = self.dropout(x)
        return self.fc3(x)


def test_repr_matches_seed_004():
    assert repr(Net()) == SEED004_REPR
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Softmax(dim=1))
    assert repr(seq) == ("Sequential(\n  (0): Linear(in_features=2, out_features=3, bias=True)\n  (1): ReLU()\n"
                         "  (2): Softmax(dim=1)\n)")


def test_sequential_and_modulelist_containers():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert len(seq) == 3 and isinstance(seq[1], nn.ReLU) and isinstance(seq[-1], nn.Linear)
    assert [type(m).__name__ for m in seq] == ["Linear", "ReLU", "Linear"]
    assert len(seq[:2]) == 2
    seq.append(nn.Sigmoid())
    assert len(seq) == 4 and len(list(seq.parameters())) == 4
    ml = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    ml.append(nn.Linear(2, 1))
    assert len(ml) == 4 and len(list(ml.parameters())) == 8
    with pytest.raises(IndexError):
        seq[10]


def test_containers_renumber_after_insert_and_delete():
    a, b, c = nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2)
    seq = nn.Sequential(a, b, c)
    del seq[0]
    # the modules move up to "0", "1", and no attribute of the old last name is left behind
    assert list(seq._modules) == ["0", "1"] and seq[0] is b and not hasattr(seq, "2")
    assert seq.insert(-1, a) is seq and [m for m in seq] == [b, a, c]
    del seq[0:2]
    assert [m for m in seq] == [c] and seq[0] is c and not hasattr(seq, "1")
    seq[0] = b
    assert seq[0] is b and seq._modules["0"] is b
    ml = nn.ModuleList([a, b])
    assert ml.insert(0, c) is None and list(ml) == [c, a, b]  # as torch.nn.ModuleList.insert
    del ml[-1]
    assert list(ml) == [c, a] and not hasattr(ml, "2")
    with pytest.raises(IndexError):
        del ml[5]


def test_module_registration_and_traversal():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"]
    assert [type(c).__name__ for c in net.children()] == ["Linear", "Linear", "Linear", "Dropout"]
    assert len(list(net.modules())) == 5
    assert list(net.state_dict().keys()) == names
    net.eval()
    assert not net.training and not net.dropout.training
    net.train()
    assert net.dropout.training
    with pytest.raises(AttributeError, match=r"before Bad.__init__\(\) calls super\(\).__init__\(\)"):
        class Bad(nn.Module):
            def __init__(self):
                self.x = nn.Linear(1, 1)
        Bad()


def test_state_dict_shares_memory_and_load_checks_keys():
    a, b = Net(), Net()
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a.fc1.weight.detach().numpy(), b.fc1.weight.detach().numpy())
    sd = a.state_dict()
    sd["fc1.bias"][0] = 123.0
    assert a.fc1.bias[0].item() == 123.0
    bad = dict(a.state_dict())
    del bad["fc2.weight"]
    bad["extra.weight"] = fastmlp.zeros(1)
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "fc2.weight".*\n.*Unexpected key\(s\) '
                                           r'in state_dict: "extra.weight"'):
        b.load_state_dict(bad)
    result = b.load_state_dict(bad, strict=False)
    assert result.missing_keys == ["fc2.weight"] and result.unexpected_keys == ["extra.weight"]
    wrong = dict(a.state_dict())
    wrong["fc3.weight"] = fastmlp.zeros(10, 100)
    with pytest.raises(RuntimeError, match=r"size mismatch for fc3.weight: copying a param with shape "
                                           r"fastmlp.Size\(\[10, 100\]\) from checkpoint, the shape in current model "
                                           r"is fastmlp.Size\(\[10, 512\]\)"):
        b.load_state_dict(wrong)


def test_zero_grad_and_module_to_dtype():
    net = nn.Linear(3, 2)
    net(fastmlp.randn(4, 3)).sum().backward()
    assert net.weight.grad is not None
    net.zero_grad(set_to_none=False)
    assert (net.weight.grad.numpy() == 0).all()
    net.zero_grad()
    assert net.weight.grad is None
    net.double()
    assert net.weight.dtype == fastmlp.float64
    assert net(fastmlp.randn(2, 3, dtype=fastmlp.float64)).dtype == fastmlp.float64


def test_linear_shape_errors_name_shapes():
    layer = nn.Linear(4, 3)
    with pytest.raises(RuntimeError, match=r"mat1 and mat2 shapes cannot be multiplied \(5x7 and 4x3\)"):
        layer(fastmlp.randn(5, 7))
    with pytest.raises(RuntimeError, match="same dtype"):
        layer(fastmlp.randn(5, 4, dtype=fastmlp.float64))


def test_functional_gelu_and_leaky_relu_match_numpy():
    x = np.linspace(-5, 5, 101)
    t = fastmlp.tensor(x)
    from math import erf
    np.testing.assert_allclose(F.gelu(t).numpy(), [0.5 * v * (1 + erf(v / math.sqrt(2))) for v in x], atol=1e-12)
    np.testing.assert_allclose(F.leaky_relu(t, 0.2).numpy(), np.where(x > 0, x, 0.2 * x))
    check_function(lambda a: F.leaky_relu(a, 0.2), [x[np.abs(x) > 1e-3].reshape(-1)])


def test_one_hot():
    out = F.one_hot(fastmlp.tensor([0, 2, 1]), 4)
    np.testing.assert_array_equal(out.numpy(), np.eye(4, dtype=np.int64)[[0, 2, 1]])
    assert F.one_hot(fastmlp.tensor([1, 3])).shape == (2, 4)
    with pytest.raises(RuntimeError, match="class values must be in"):
        F.one_hot(fastmlp.tensor([5]), 3)


@pytest.mark.parametrize("fn", [F.relu, F.sigmoid, F.tanh], ids=lambda f: f.__name__)
def test_activation_of_a_linear_output_is_its_own_op(fn):
    """F.relu(self.fc(x)) in a custom module runs layer by layer: the activation records its own
    node over the Linear's (no fold into the Linear, whatever else holds its output), and its
    values and gradients equal those of a Sequential, which fuses the pair natively."""
    fastmlp.manual_seed(4)
    fc, out_layer = nn.Linear(6, 5), nn.Linear(5, 2)
    act = {F.relu: nn.ReLU, F.sigmoid: nn.Sigmoid, F.tanh: nn.Tanh}[fn]()
    x = fastmlp.randn(7, 6, requires_grad=True)
    results = []
    for sequential in (False, True):
        for p in list(fc.parameters()) + list(out_layer.parameters()) + [x]:
            p.grad = None
        if sequential:
            out = nn.Sequential(fc, act, out_layer)(x)
        else:
            h = fn(fc(x))
            assert type(h.grad_fn).__name__ != "LinearBackward"
            assert type(h.grad_fn.next[0]).__name__ == "LinearBackward"
            out = out_layer(h)
        out.sum().backward()
        results.append([out.detach().numpy().copy()] + [t.grad.numpy().copy() for t in (x, fc.weight, fc.bias)])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [fastmlp.float32, fastmlp.float64])
def test_relu_keeps_nan_through_every_path(dtype):
    """nn.ReLU, F.relu, Tensor.relu and a Linear+ReLU fused in Sequential all keep NaN, as torch
    does, and pass the gradient on at a NaN output (torch's threshold_backward)."""
    x = fastmlp.tensor([[float("nan"), 1.0, -1.0]], dtype=dtype, requires_grad=True)
    for fn in (nn.ReLU(), F.relu, lambda t: t.relu()):
        x.grad = None
        y = fn(x)
        np.testing.assert_array_equal(np.isnan(y.detach().numpy()), [[True, False, False]])
        y.sum().backward()
        np.testing.assert_array_equal(x.grad.numpy(), [[1.0, 1.0, 0.0]])
    lin = nn.Linear(3, 2).to(dtype)
    seq = nn.Sequential(lin, nn.ReLU())
    out = seq(x)
    assert np.isnan(out.detach().numpy()).all()
