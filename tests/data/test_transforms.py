"""Transforms against NumPy computations, and the batch path against the per-sample path."""
from __future__ import annotations

import numpy as np
import pytest

import fastmlp
from fastmlp import transforms
from fastmlp.transforms import batch_plan


def image(shape=(28, 28), seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def test_to_tensor_grey_image():
    img = image()
    t = transforms.ToTensor()(img)
    assert isinstance(t, fastmlp.Tensor) and t.dtype == fastmlp.float32 and tuple(t.shape) == (1, 28, 28)
    np.testing.assert_array_equal(t.numpy()[0], img.astype(np.float32) / np.float32(255))
    assert t.numpy().min() >= 0 and t.numpy().max() <= 1


def test_to_tensor_colour_image_is_channels_first():
    img = image((4, 5, 3))
    t = transforms.ToTensor()(img)
    assert tuple(t.shape) == (3, 4, 5)
    np.testing.assert_array_equal(t.numpy(), np.transpose(img, (2, 0, 1)).astype(np.float32) / np.float32(255))


def test_to_tensor_accepts_array_like_images():
    class PicLike:
        def __init__(self, a):
            self.a = a

        def __array__(self, dtype=None, copy=None):
            return self.a

    img = image((6, 7))
    np.testing.assert_array_equal(transforms.ToTensor()(PicLike(img)).numpy()[0], img / np.float32(255))


def test_to_tensor_does_not_scale_float_images():
    img = np.linspace(0, 3, 12, dtype=np.float64).reshape(3, 4)
    t = transforms.ToTensor()(img)
    assert t.dtype == fastmlp.float32
    np.testing.assert_allclose(t.numpy()[0], img.astype(np.float32))


def test_to_tensor_errors():
    with pytest.raises(ValueError, match="2 or 3 dimensional"):
        transforms.ToTensor()(np.zeros(5, dtype=np.uint8))
    with pytest.raises(TypeError, match="already a Tensor"):
        transforms.ToTensor()(fastmlp.zeros(2, 2))
    with pytest.raises(TypeError, match="image array"):
        transforms.ToTensor()("not an image")


def test_normalize_one_image_and_a_batch():
    x = np.random.default_rng(1).random((2, 3, 4, 5), dtype=np.float32)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    norm = transforms.Normalize(mean, std)
    expect = (x - np.array(mean, np.float32)[:, None, None]) / np.array(std, np.float32)[:, None, None]
    np.testing.assert_array_equal(norm(fastmlp.from_numpy(x[0])).numpy(), expect[0])
    np.testing.assert_array_equal(norm(fastmlp.from_numpy(x)).numpy(), expect)
    np.testing.assert_array_equal(norm(x), expect)
    assert np.array_equal(x, np.random.default_rng(1).random((2, 3, 4, 5), dtype=np.float32))  # not in place


def test_normalize_single_channel_any_shape():
    x = np.random.default_rng(2).random(784, dtype=np.float32)
    out = transforms.Normalize((0.1307,), (0.3081,))(fastmlp.from_numpy(x))
    np.testing.assert_array_equal(out.numpy(), (x - np.float32(0.1307)) / np.float32(0.3081))


def test_normalize_errors():
    with pytest.raises(ValueError, match="C=3 channels"):
        transforms.Normalize((0.1, 0.2, 0.3), (1, 1, 1))(fastmlp.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="division by zero"):
        transforms.Normalize((0.5,), (0.0,))
    with pytest.raises(TypeError, match="float tensor"):
        transforms.Normalize((0.5,), (1.0,))(fastmlp.zeros(1, 2, 2, dtype=fastmlp.int64))


def test_flatten_and_lambda_and_compose():
    img = image()
    tf = transforms.Compose([transforms.ToTensor(), transforms.Flatten(),
                             transforms.Lambda(lambda t: t * 2)])
    out = tf(img)
    assert tuple(out.shape) == (784,)
    np.testing.assert_allclose(out.numpy(), (img.reshape(-1) / np.float32(255)) * 2, rtol=0, atol=0)
    assert "ToTensor()" in repr(tf) and "Flatten()" in repr(tf)
    with pytest.raises(TypeError, match="not callable"):
        transforms.Compose([transforms.ToTensor(), 3])


def test_batch_plan_only_for_vectorisable_pipelines():
    assert batch_plan(None) == []
    assert batch_plan(transforms.ToTensor()) == []
    assert len(batch_plan(transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,)),
                                              transforms.Flatten()]))) == 2
    assert len(batch_plan(transforms.Compose([transforms.Compose([transforms.ToTensor()]),
                                              transforms.Flatten()]))) == 1
    assert batch_plan(transforms.Compose([transforms.ToTensor(), transforms.Lambda(lambda t: t)])) is None
    assert batch_plan(transforms.Normalize((0.5,), (0.5,))) is None
    assert batch_plan(lambda img: img) is None


def test_batch_path_equals_per_sample_path_bit_for_bit():
    imgs = image((9, 28, 28), seed=3)
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,)),
                             transforms.Flatten()])
    per_sample = np.stack([tf(im).numpy() for im in imgs])
    batch = transforms.ToTensor()._batch(imgs)
    for step in batch_plan(tf):
        batch = step(batch)
    assert batch.shape == (9, 784) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch, per_sample)


def test_batch_to_tensor_colour():
    imgs = image((2, 4, 5, 3))
    out = transforms.ToTensor()._batch(imgs)
    assert out.shape == (2, 3, 4, 5)
    np.testing.assert_array_equal(out[1], transforms.ToTensor()(imgs[1]).numpy())
