"""Device tensors and whole training steps on a GPU: the same scripts train on CUDA and give the CPU's
parameters within 1e-4 relative (looser, stated, with TF32). Skipped where no CUDA device is usable."""
from __future__ import annotations

import numpy as np
import pytest

import fastmlp
from fastmlp import nn

needs_gpu = pytest.mark.skipif(not fastmlp.cuda.is_available(),
                               reason=f"no usable CUDA device: {fastmlp.cuda.why_unavailable()}")


def test_without_a_gpu_asking_for_cuda_says_why():
    if fastmlp.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert not fastmlp.cuda.is_available()
    reason = fastmlp.cuda.why_unavailable()
    assert reason
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        fastmlp.zeros(3).cuda()
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        nn.Linear(2, 2).to("cuda")


def _mlp():
    return nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 64), nn.Tanh(),
                         nn.Linear(64, 10))


def _train(device: str, opt_name: str, steps: int = 5, tf32: bool = False):
    fastmlp.manual_seed(0)
    model = _mlp().to(device)
    opt = (fastmlp.optim.Adam(model.parameters(), lr=1e-3) if opt_name == "adam"
           else fastmlp.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    rng = np.random.default_rng(1)
    fastmlp.backends.cuda.matmul.allow_tf32 = tf32
    try:
        for _ in range(steps):
            x = fastmlp.tensor(rng.random((32, 784), dtype=np.float32)).to(device)
            y = fastmlp.tensor(rng.integers(0, 10, 32)).to(device)
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
    finally:
        fastmlp.backends.cuda.matmul.allow_tf32 = False
    return [p.detach().cpu().numpy() for p in model.parameters()], loss.item()


@needs_gpu
@pytest.mark.cuda
@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_training_steps_match_cpu(opt_name):
    cpu, cpu_loss = _train("cpu", opt_name)
    gpu, gpu_loss = _train("cuda", opt_name)
    assert gpu_loss == pytest.approx(cpu_loss, rel=1e-4)
    for a, b in zip(cpu, gpu):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


@needs_gpu
@pytest.mark.cuda
def test_training_with_tf32_stays_close():
    """TF32 rounds GEMM inputs to 10 mantissa bits: compare at 1e-2 relative."""
    cpu, _ = _train("cpu", "sgd", steps=3)
    gpu, _ = _train("cuda", "sgd", steps=3, tf32=True)
    for a, b in zip(cpu, gpu):
        np.testing.assert_allclose(b, a, rtol=1e-2, atol=1e-3)


@needs_gpu
@pytest.mark.cuda
def test_device_tensors_and_module_moves():
    x = fastmlp.randn(4, 3).cuda()
    assert x.is_cuda and x.device == fastmlp.device("cuda", 0) and str(x.device) == "cuda:0"
    model = nn.Linear(3, 2).to("cuda")
    assert all(p.is_cuda for p in model.parameters())
    y = model(x)
    assert y.is_cuda and y.shape == (4, 2)
    with pytest.raises(TypeError, match="can't convert cuda:0 device type tensor to numpy"):
        y.detach().numpy()
    back = y.detach().cpu()
    assert back.device == fastmlp.device("cpu")
    model.cpu()
    np.testing.assert_allclose(model(x.cpu()).detach().numpy(), back.numpy(), rtol=1e-5, atol=1e-6)


@needs_gpu
@pytest.mark.cuda
def test_mixing_devices_names_both():
    a, b = fastmlp.ones(3), fastmlp.ones(3).cuda()
    with pytest.raises(RuntimeError, match="same device.*cpu and cuda:0|cuda:0 and cpu"):
        a + b
    with pytest.raises(RuntimeError, match="cpu.*cuda:0|cuda:0.*cpu"):
        nn.Linear(3, 2)(b)


@needs_gpu
@pytest.mark.cuda
def test_dropout_masks_are_the_same_on_both_devices():
    x = fastmlp.ones(64, 33)
    fastmlp.manual_seed(9)
    cpu = nn.functional.dropout(x, 0.3).numpy()
    fastmlp.manual_seed(9)
    gpu = nn.functional.dropout(x.cuda(), 0.3).cpu().numpy()
    np.testing.assert_array_equal(cpu, gpu)
