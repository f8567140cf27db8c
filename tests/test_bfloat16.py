"""fastmlp.bfloat16: a storage dtype (two bytes a value) with conversions that round to
nearest even, against tests/reference.round_bf16 on the bit patterns."""
from __future__ import annotations

import numpy as np
import pytest

import fastmlp

from reference import round_bf16


def bits(t) -> np.ndarray:
    return np.asarray(t._data).view(np.uint16)


def test_dtype_object():
    d = fastmlp.bfloat16
    assert repr(d) == "fastmlp.bfloat16" and d.is_floating_point and d.itemsize == 2
    assert fastmlp.zeros(3, dtype=d).dtype is d


def test_to_and_back_round_to_nearest_even(rng):
    x = rng.standard_normal(1000).astype(np.float32) * np.float32(1e3)
    x[:6] = [np.inf, -np.inf, np.nan, 0.0, -0.0, 3.4e38]
    t = fastmlp.tensor(x)
    for b in (t.to(fastmlp.bfloat16), t.bfloat16(), t.to(dtype=fastmlp.bfloat16), t.type(fastmlp.bfloat16)):
        assert b.dtype == fastmlp.bfloat16 and b.shape == t.shape
        want = round_bf16(x).view(np.uint32) >> 16
        np.testing.assert_array_equal(bits(b), want.astype(np.uint16))
    back = t.bfloat16().float()
    assert back.dtype == fastmlp.float32
    np.testing.assert_array_equal(back.numpy().view(np.uint32), round_bf16(x).view(np.uint32))
    assert np.signbit(back.numpy()[4]) and np.isinf(back.numpy()[5])  # -0 kept; 3.4e38 rounds to inf
    np.testing.assert_array_equal(t.bfloat16().double().numpy(), round_bf16(x).astype(np.float64))


def test_factories(rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(fastmlp.tensor(x, dtype=fastmlp.bfloat16).float().numpy(), round_bf16(x))
    np.testing.assert_array_equal(fastmlp.as_tensor(x, dtype=fastmlp.bfloat16).float().numpy(), round_bf16(x))
    np.testing.assert_array_equal(fastmlp.ones(2, 3, dtype=fastmlp.bfloat16).float().numpy(), np.ones((2, 3)))
    np.testing.assert_array_equal(fastmlp.zeros(4, dtype=fastmlp.bfloat16).float().numpy(), np.zeros(4))
    np.testing.assert_array_equal(fastmlp.full((2,), 1.1, dtype=fastmlp.bfloat16).float().numpy(),
                                  round_bf16(np.full(2, 1.1, np.float32)))
    with pytest.raises(TypeError, match="does not make bfloat16 tensors"):
        fastmlp.randn(3, dtype=fastmlp.bfloat16)
    with pytest.raises(TypeError, match="does not make bfloat16 tensors"):
        fastmlp.zeros_like(fastmlp.zeros(2, dtype=fastmlp.bfloat16))


def test_storage_operations_keep_bits(rng):
    b = fastmlp.tensor(rng.standard_normal((4, 6)).astype(np.float32)).bfloat16()
    np.testing.assert_array_equal(bits(b.reshape(6, 4)), bits(b).reshape(6, 4))
    np.testing.assert_array_equal(bits(b[1:3]), bits(b)[1:3])
    np.testing.assert_array_equal(bits(b.clone()), bits(b))
    assert "dtype=fastmlp.bfloat16" in repr(b)


def test_arithmetic_on_bfloat16_refuses():
    b = fastmlp.ones(3, dtype=fastmlp.bfloat16)
    with pytest.raises(TypeError):
        b + b


def test_gradient_flows_through_the_casts(rng):
    x = fastmlp.tensor(rng.standard_normal(5).astype(np.float32), requires_grad=True)
    (x.bfloat16().float() * 3.0).sum().backward()
    assert x.grad.dtype == fastmlp.float32
    np.testing.assert_array_equal(x.grad.numpy(), np.full(5, 3.0, np.float32))


def test_checkpoint_round_trip_and_safetensors_reads_bf16(tmp_path, rng):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    b = fastmlp.tensor(x).bfloat16()
    path = str(tmp_path / "bf16.safetensors")
    fastmlp.save({"b": b, "x": fastmlp.tensor(x)}, path)
    back = fastmlp.load(path)
    assert back["b"].dtype == fastmlp.bfloat16 and back["x"].dtype == fastmlp.float32
    np.testing.assert_array_equal(bits(back["b"]), bits(b))
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    loaded = st.load_file(path)
    assert loaded["b"].dtype == torch.bfloat16
    assert torch.equal(loaded["b"], torch.from_numpy(x).to(torch.bfloat16))  # PyTorch's own rounding
