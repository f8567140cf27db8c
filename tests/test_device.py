"""Devices without a GPU: parsing, the rule for when a move copies nothing, fit/evaluate's `device=`
argument, devices never mixed in one op, and Module.to leaving the optimizer's buffers alone.

The CUDA-specific rules are checked here with stand-ins for CuPy arrays (objects with a
``device.id``) and a patched "current device"; tests/cuda runs the same rules on a GPU.
"""
from __future__ import annotations

import types

import numpy as np
import pytest

import fastmlp
from fastmlp import _device, nn, optim
from fastmlp.backend import cuda as cuda_backend
from fastmlp.train import evaluate, fit
from fastmlp.utils.data import DataLoader, TensorDataset

no_gpu = pytest.mark.skipif(fastmlp.cuda.is_available(), reason="a CUDA device is usable here")


class FakeDeviceArray:
    """A stand-in for a float32 cupy.ndarray on CUDA device `index`."""

    def __init__(self, index: int, shape=(2, 3)):
        self.device = types.SimpleNamespace(id=index)
        self.shape = shape
        self.ndim = len(shape)
        self.size = int(np.prod(shape))
        self.dtype = np.dtype(np.float32)
        self.flags = types.SimpleNamespace(c_contiguous=True)
        self.__cuda_array_interface__ = {"shape": shape, "typestr": "<f4", "data": (0, False), "version": 3}


def _problem(n: int = 48, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0).astype(np.int64)
    return DataLoader(TensorDataset(x, y), batch_size=8)


def _model():
    fastmlp.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def _weights(model) -> list:
    return [p.detach().numpy().copy() for p in model.parameters()]


# ---- parsing and equality -------------------------------------------------------------------
@pytest.mark.parametrize("spec, kind, index", [("cpu", "cpu", None), ("cuda", "cuda", None), ("cuda:0", "cuda", 0),
                                               ("cuda:1", "cuda", 1), (" cuda:3 ", "cuda", 3)])
def test_device_strings_parse_as_in_torch(spec, kind, index):
    d = fastmlp.device(spec)
    assert (d.type, d.index) == (kind, index)
    assert fastmlp.device(d) == d and hash(fastmlp.device(d)) == hash(d)
    assert d == spec.strip() and str(d) == spec.strip()


def test_device_equality_keeps_the_index_apart_from_no_index():
    assert fastmlp.device("cuda", 1) == fastmlp.device("cuda:1")
    assert fastmlp.device("cuda") != fastmlp.device("cuda:0")
    assert fastmlp.device("cuda:0") != fastmlp.device("cuda:1")
    assert fastmlp.device("cpu") != fastmlp.device("cuda")
    assert _device.as_device(2) == fastmlp.device("cuda:2") and _device.as_device(None) == fastmlp.device("cpu")


@pytest.mark.parametrize("bad, error, words", [("gpu", ValueError, "unknown device type 'gpu'"),
                                               ("cuda:x", ValueError, "index must be an integer"),
                                               ("cuda:-1", ValueError, "must be >= 0"),
                                               ("cpu:1", ValueError, "no index 1"),
                                               (3.0, TypeError, "expects a string")])
def test_bad_device_specs_raise_naming_them(bad, error, words):
    with pytest.raises(error, match=words):
        fastmlp.device(bad)


def test_same_place_reads_cuda_without_an_index_as_the_current_device(monkeypatch):
    monkeypatch.setattr(_device, "current_cuda_index", lambda: 0)
    on0, on1 = fastmlp.device("cuda:0"), fastmlp.device("cuda:1")
    assert _device.same_place(on0, fastmlp.device("cuda"))
    assert not _device.same_place(on1, fastmlp.device("cuda"))
    assert _device.same_place(on1, on1) and not _device.same_place(on0, on1)
    assert _device.same_place(fastmlp.device("cpu"), fastmlp.device("cpu"))
    assert not _device.same_place(fastmlp.device("cpu"), fastmlp.device("cuda"))
    monkeypatch.setattr(_device, "current_cuda_index", lambda: 1)
    assert _device.same_place(on1, fastmlp.device("cuda")) and not _device.same_place(on0, fastmlp.device("cuda"))


# ---- Tensor.to on a device tensor -------------------------------------------------------------
def test_to_cuda_of_a_tensor_already_on_the_current_device_returns_it_without_a_copy(monkeypatch):
    from fastmlp.ops import conversion
    from fastmlp.tensor import _wrap

    copies = []
    monkeypatch.setattr(conversion, "to_device", lambda t, dev: copies.append(dev) or _wrap(FakeDeviceArray(dev.index)))
    monkeypatch.setattr(_device, "current_cuda_index", lambda: 0)
    t = _wrap(FakeDeviceArray(0))
    assert t.device == fastmlp.device("cuda:0")
    assert t.to("cuda") is t and t.to("cuda:0") is t and t.to(fastmlp.device("cuda")) is t and t.cuda() is t
    assert copies == []
    moved = t.to("cuda:1")
    assert moved is not t and moved.device == fastmlp.device("cuda:1") and copies == [fastmlp.device("cuda:1")]
    monkeypatch.setattr(_device, "current_cuda_index", lambda: 1)  # now "cuda" means cuda:1
    assert t.to("cuda") is not t and copies[-1] == fastmlp.device("cuda")


def test_tensors_on_two_gpus_in_one_op_raise_naming_both():
    from fastmlp.ops.common import _check_same_device

    with pytest.raises(RuntimeError, match="found at least two devices, cuda:0 and cuda:1"):
        _check_same_device(FakeDeviceArray(0), FakeDeviceArray(1))
    with pytest.raises(RuntimeError, match="cpu and cuda:1"):
        _check_same_device(np.zeros(1), FakeDeviceArray(1))
    _check_same_device(FakeDeviceArray(1), FakeDeviceArray(1))  # one device: no error


# ---- the CUDA backend runs each op on its inputs' device ---------------------------------------
class _FakeCuPy:
    """Just enough of CuPy for the backend's device handling: a current device and Device(i) contexts."""

    def __init__(self, current: int):
        fake = self

        class Device:
            def __init__(self, index):
                self.index = index

            def __enter__(self):
                self.previous, fake.current = fake.current, self.index
                return self

            def __exit__(self, *exc):
                fake.current = self.previous

        self.current = current
        self.cuda = types.SimpleNamespace(Device=Device, runtime=types.SimpleNamespace(getDevice=lambda: fake.current),
                                          get_current_stream=lambda: types.SimpleNamespace(ptr=0))


def _fake_backend(monkeypatch, current: int):
    fake = _FakeCuPy(current)
    seen = []

    def colsum(x, out, accumulate, stream):
        seen.append(fake.current)
        return x

    monkeypatch.setattr(cuda_backend, "xp", fake)
    monkeypatch.setattr(cuda_backend, "_ext", types.SimpleNamespace(colsum=colsum))
    return fake, seen


def test_cuda_backend_ops_run_on_the_device_of_their_arrays(monkeypatch):
    fake, seen = _fake_backend(monkeypatch, current=0)
    cuda_backend.colsum(FakeDeviceArray(1))
    cuda_backend.colsum(FakeDeviceArray(0))
    assert seen == [1, 0]
    assert fake.current == 0  # the caller's current device is left as it was


def test_cuda_backend_refuses_arrays_on_two_devices_naming_both(monkeypatch):
    _fake_backend(monkeypatch, current=0)
    with pytest.raises(RuntimeError, match="cuda:1 and cuda:2"):
        cuda_backend.colsum(FakeDeviceArray(1), FakeDeviceArray(2, (3,)))


# ---- fit and evaluate -----------------------------------------------------------------------------
@no_gpu
@pytest.mark.parametrize("device", ["cuda", "cuda:1", fastmlp.device("cuda"), fastmlp.device("cuda", 0), 0])
def test_fit_on_cuda_without_a_gpu_is_a_clear_error_before_any_step(device):
    model = _model()
    before = _weights(model)
    with pytest.raises(RuntimeError, match=r"fit: device 'cuda(:\d)?' asks for CUDA, but CUDA is not available: "):
        fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), _problem(), epochs=1,
            progress=False, device=device)
    for a, b in zip(before, _weights(model)):
        np.testing.assert_array_equal(a, b)


@no_gpu
def test_evaluate_on_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(RuntimeError, match="evaluate: device 'cuda:1' asks for CUDA, but CUDA is not available"):
        evaluate(_model(), _problem(), nn.CrossEntropyLoss(), device="cuda:1")


@pytest.mark.parametrize("device", ["cpu", fastmlp.device("cpu"), None])
def test_fit_and_evaluate_on_the_cpu_take_a_string_or_a_device(device):
    runs = []
    for dev in (None, device):
        model = _model()
        h = fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), _problem(), _problem(seed=1),
                epochs=2, progress=False, device=dev)
        res = evaluate(model, _problem(seed=2), nn.CrossEntropyLoss(), device=dev)
        runs.append((h["train_loss"], h["val_loss"], res.loss, res.accuracy, _weights(model)))
    assert runs[0][:4] == runs[1][:4]
    for a, b in zip(runs[0][4], runs[1][4]):
        np.testing.assert_array_equal(a, b)


def test_fit_refuses_a_device_the_model_is_not_on(monkeypatch):
    """With CUDA usable, asking fit for cuda:1 while the model is on the CPU names both."""
    monkeypatch.setattr(fastmlp.cuda, "why_unavailable", lambda: "")
    monkeypatch.setattr(fastmlp.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(_device, "current_cuda_index", lambda: 0)
    model = _model()
    with pytest.raises(ValueError, match=r"fit: device='cuda:1' but the model's parameters are on 'cpu'; move the "
                                         r"model first with model.to\('cuda:1'\)"):
        fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), _problem(), progress=False,
            device="cuda:1")
    with pytest.raises(RuntimeError, match="device 'cuda:2' does not exist; this machine has 2 CUDA device"):
        _device.require("cuda:2", "fit")
    assert _device.require("cuda", "fit") == fastmlp.device("cuda:0")


def test_fit_with_a_bad_device_string_names_it():
    model = _model()
    with pytest.raises(ValueError, match="unknown device type 'gpu'"):
        fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), _problem(), progress=False,
            device="gpu")


# ---- Module.to and the optimizer's flat buffers ------------------------------------------------------
@pytest.mark.parametrize("make_opt", [lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
                                      lambda ps: optim.Adam(ps, lr=0.01)], ids=["sgd", "adam"])
def test_module_to_its_own_device_keeps_parameters_in_the_optimizer_buffers(make_opt):
    """model.to(<where it already is>) between steps changes nothing: the parameters stay views of
    the optimizer's flat buffers and training gives exactly the weights of a run without it."""
    x, y = next(iter(_problem()))
    runs = []
    for move in (False, True):
        model = _model()
        opt = make_opt(model.parameters())
        for _ in range(4):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            if move:
                assert model.to("cpu") is model
                model.to(fastmlp.float32)
                model.to(fastmlp.device("cpu"), fastmlp.float32)
        flat = next(iter(opt._flat.values()))
        assert flat is not None and flat.intact(list(model.parameters()))
        runs.append(_weights(model))
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
