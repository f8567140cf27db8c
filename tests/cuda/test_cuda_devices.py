"""Devices on a real GPU: fit/evaluate with device=, moves that copy nothing, the optimizer's buffers kept by
Module.to, native calls on CuPy's current stream by default, and (with two GPUs) a model on cuda:1 while
device 0 is current and ops mixing two GPUs refused. Skipped where no CUDA device is usable."""
from __future__ import annotations

import numpy as np
import pytest

import fastmlp
from fastmlp import nn, optim
from fastmlp.train import evaluate, fit
from fastmlp.utils.data import DataLoader, TensorDataset

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not fastmlp.cuda.is_available(),
                                 reason=f"no usable CUDA device: {fastmlp.cuda.why_unavailable()}")]
two_gpus = pytest.mark.skipif(fastmlp.cuda.device_count() < 2, reason="needs two CUDA devices")


def _loaders(n: int = 96, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    y = ((x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0).astype(np.int64))
    return DataLoader(TensorDataset(x[:64], y[:64]), batch_size=16), DataLoader(TensorDataset(x[64:], y[64:]),
                                                                               batch_size=16)


def _model():
    fastmlp.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 3))


def _weights(model) -> list:
    return [p.detach().cpu().numpy() for p in model.parameters()]


def _fit_on(device, **kwargs):
    model = _model().to(device)
    train, val = _loaders()
    h = fit(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-2), train, val, epochs=2,
            progress=False, **kwargs)
    return h, model


@pytest.mark.parametrize("device", ["cuda", "cuda:0", fastmlp.device("cuda", 0)])
def test_fit_on_the_gpu_matches_the_cpu(device):
    h_cpu, m_cpu = _fit_on("cpu")
    h_gpu, m_gpu = _fit_on(device, device=device)
    assert all(p.device == fastmlp.device("cuda:0") for p in m_gpu.parameters())
    np.testing.assert_allclose(h_gpu["train_loss"], h_cpu["train_loss"], rtol=1e-4)
    np.testing.assert_allclose(h_gpu["val_loss"], h_cpu["val_loss"], rtol=1e-4)
    for a, b in zip(_weights(m_cpu), _weights(m_gpu)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    _, val = _loaders()
    r_cpu = evaluate(m_cpu, val, nn.CrossEntropyLoss())
    r_gpu = evaluate(m_gpu, val, nn.CrossEntropyLoss(), device=device)
    assert r_gpu.loss == pytest.approx(r_cpu.loss, rel=1e-4)


def test_fit_refuses_cuda_for_a_model_on_the_cpu():
    model = _model()
    train, _ = _loaders()
    with pytest.raises(ValueError, match="model's parameters are on 'cpu'"):
        fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), train, progress=False,
            device="cuda")


def test_to_cuda_of_a_tensor_on_the_current_gpu_is_the_same_tensor():
    x = fastmlp.ones(3, 4, device="cuda")
    assert x.device == fastmlp.device("cuda:0")
    assert x.to("cuda") is x and x.to("cuda:0") is x and x.cuda() is x and x.to(fastmlp.device("cuda")) is x
    y = x.to("cpu")
    assert y is not x and y.to("cpu") is y


def test_module_to_cuda_again_keeps_the_optimizer_buffers():
    model = _model().to("cuda")
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train, _ = _loaders()
    x, y = next(iter(train))
    x, y = x.to("cuda"), y.to("cuda")
    for _ in range(2):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        model.to("cuda")
        model.cuda()
    flat = next(iter(opt._flat.values()))
    assert flat is not None and flat.intact(list(model.parameters()))


def test_direct_kernel_calls_use_cupys_current_stream_by_default():
    cp = pytest.importorskip("cupy")
    from fastmlp import _cuda

    x = cp.asarray(np.linspace(-2, 2, 64, dtype=np.float32).reshape(8, 8))
    with cp.cuda.Stream(non_blocking=True) as s:
        assert cp.cuda.get_current_stream().ptr == s.ptr != 0
        y = _cuda.act_forward(x, 1)  # relu, enqueued on s; allocates from CuPy's pool on s
        with pytest.raises(ValueError, match="'stream' must be CuPy's current stream"):
            _cuda.act_forward(x, 1, stream=0)
        s.synchronize()
    np.testing.assert_array_equal(cp.asnumpy(y), np.maximum(cp.asnumpy(x), 0))
    with pytest.raises(TypeError, match="'stream' must be an int"):
        _cuda.act_forward(x, 1, stream="default")


@two_gpus
def test_a_model_on_cuda1_trains_while_device0_is_current():
    cp = pytest.importorskip("cupy")
    h_cpu, m_cpu = _fit_on("cpu")
    assert cp.cuda.runtime.getDevice() == 0
    h_gpu, m_gpu = _fit_on("cuda:1", device="cuda:1")
    assert cp.cuda.runtime.getDevice() == 0
    assert all(p.device == fastmlp.device("cuda:1") for p in m_gpu.parameters())
    np.testing.assert_allclose(h_gpu["train_loss"], h_cpu["train_loss"], rtol=1e-4)
    for a, b in zip(_weights(m_cpu), _weights(m_gpu)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


@two_gpus
def test_layer_by_layer_ops_on_cuda1_run_there():
    model = _model().to("cuda:1")
    x = fastmlp.randn(5, 6).to("cuda:1")
    out = model(x)
    assert out.device == fastmlp.device("cuda:1")
    ref = _model()(x.cpu())
    np.testing.assert_allclose(out.detach().cpu().numpy(), ref.detach().numpy(), rtol=1e-5, atol=1e-6)


@two_gpus
def test_mixing_two_gpus_in_one_op_names_both():
    a = fastmlp.ones(4, 3, device="cuda:0")
    b = fastmlp.ones(4, 3, device="cuda:1")
    with pytest.raises(RuntimeError, match="cuda:0 and cuda:1"):
        a + b
    lin = nn.Linear(3, 2).to("cuda:1")
    with pytest.raises((RuntimeError, ValueError), match=r"cuda:1.*cuda:0|cuda:0.*cuda:1"):
        lin(a)


@two_gpus
def test_moving_between_gpus_copies_device_to_device():
    a = fastmlp.arange(12, dtype=fastmlp.float32).reshape(3, 4).to("cuda:0")
    b = a.to("cuda:1")
    assert b.device == fastmlp.device("cuda:1") and a.device == fastmlp.device("cuda:0")
    np.testing.assert_array_equal(b.cpu().numpy(), np.arange(12, dtype=np.float32).reshape(3, 4))
