"""Shape ops (fastmlp/ops/shape.py): stack / cat along dim 0 of many small tensors (one native call,
csrc/bindings/bind_join.cpp) and the general path they fall back to, against NumPy's stack / concatenate and
PyTorch's errors; reshape's argument forms."""
from __future__ import annotations

import re

import numpy as np
import pytest

import fastmlp
from fastmlp import _C

DTYPES = [np.float32, np.float64, np.float16, np.int64, np.int32, np.uint8, np.bool_]
SHAPES = [(), (1,), (5,), (3, 4), (0, 3), (2, 1, 7)]


def _arrays(n: int, shape: tuple, dtype, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [np.asarray((rng.standard_normal(shape) * 50).astype(dtype)) for _ in range(n)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("n", [1, 7, 64])
def test_stack_matches_numpy(n, shape, dtype):
    arrays = _arrays(n, shape, dtype)
    tensors = [fastmlp.from_numpy(a) for a in arrays]
    for seq in (tensors, tuple(tensors)):
        got = fastmlp.stack(seq)
        want = np.stack(arrays)
        assert got.dtype.name == want.dtype.name and tuple(got.shape) == want.shape
        np.testing.assert_array_equal(got.numpy(), want)
        assert got.is_contiguous() and not got.requires_grad


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tail", [(), (4,), (2, 3)])
@pytest.mark.parametrize("n", [1, 7, 65])
def test_cat_matches_numpy(n, tail, dtype):
    rng = np.random.default_rng(n)
    arrays = [(rng.standard_normal((int(rng.integers(0, 4)),) + tail) * 50).astype(dtype) for _ in range(n)]
    got = fastmlp.cat([fastmlp.from_numpy(a) for a in arrays])
    want = np.concatenate(arrays)
    assert got.dtype.name == want.dtype.name and tuple(got.shape) == want.shape
    np.testing.assert_array_equal(got.numpy(), want)


def test_result_owns_its_memory():
    arrays = _arrays(5, (3,), np.float32)
    tensors = [fastmlp.from_numpy(a) for a in arrays]
    for out in (fastmlp.stack(tensors), fastmlp.cat(tensors)):
        assert not any(np.shares_memory(out.numpy(), a) for a in arrays)
        out.add_(1)
    np.testing.assert_array_equal(tensors[0].numpy(), arrays[0])


def test_strided_and_mixed_inputs_take_the_general_path_with_the_same_values():
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    strided = [fastmlp.from_numpy(base[:, ::2]), fastmlp.from_numpy(base[:, 1::2]), fastmlp.from_numpy(base[:, :3])]
    np.testing.assert_array_equal(fastmlp.stack(strided).numpy(), np.stack([base[:, ::2], base[:, 1::2], base[:, :3]]))
    np.testing.assert_array_equal(fastmlp.cat(strided).numpy(), np.concatenate([base[:, ::2], base[:, 1::2],
                                                                                  base[:, :3]]))
    # mixed dtypes promote as PyTorch does: int64 with float32 is float32 (NumPy would say float64)
    mixed = [fastmlp.tensor([1.5, 2.5]), fastmlp.tensor([3, 4])]
    got = fastmlp.stack(mixed)
    assert got.dtype == fastmlp.float32
    np.testing.assert_array_equal(got.numpy(), np.array([[1.5, 2.5], [3, 4]], dtype=np.float32))
    assert _C.join([m for m in mixed], True) is None
    assert _C.join([fastmlp.from_numpy(base[:, ::2])] * 2, True) is None


def test_a_subclass_with_slots_of_its_own_is_read_right():
    class Tagged(fastmlp.Tensor):
        __slots__ = ("tag",)

    arrays = _arrays(9, (4,), np.float32)
    tensors = [Tagged(a) if i % 2 else fastmlp.from_numpy(a) for i, a in enumerate(arrays)]
    for t in tensors:
        if isinstance(t, Tagged):
            t.tag = "x"
    np.testing.assert_array_equal(fastmlp.stack(tensors).numpy(), np.stack(arrays))
    np.testing.assert_array_equal(fastmlp.cat(tensors).numpy(), np.concatenate(arrays))


def test_a_subclass_whose_array_is_a_property_is_read_through_it():
    class Scaled(fastmlp.Tensor):
        """Answers `_data` through a property (a descriptor of its own, not the slot)."""

        __slots__ = ("factor",)

        @property
        def _data(self):
            return self.factor

        @_data.setter
        def _data(self, value):
            self.factor = value

    arrays = _arrays(6, (3,), np.float32)
    tensors = [Scaled(a) for a in arrays]
    np.testing.assert_array_equal(fastmlp.stack(tensors).numpy(), np.stack(arrays))
    np.testing.assert_array_equal(fastmlp.cat(tensors).numpy(), np.concatenate(arrays))


def test_a_list_the_items_change_under_keeps_the_items_it_was_given():
    class Sneaky(fastmlp.Tensor):
        """Empties the list being joined when its `_data` is read."""

        __slots__ = ("victim", "array")

        @property
        def _data(self):
            self.victim.clear()
            return self.array

        @_data.setter
        def _data(self, value):
            self.array = value

    arrays = _arrays(4, (2,), np.float32)
    items = [fastmlp.from_numpy(a) for a in arrays]
    sneaky = Sneaky(np.ones(2, np.float32))
    sneaky.victim = items
    items.insert(1, sneaky)
    got = fastmlp.stack(items)
    np.testing.assert_array_equal(got.numpy(), np.stack([arrays[0], np.ones(2, np.float32)] + arrays[1:]))


@pytest.mark.parametrize("n", [2, 9])
def test_gradients_flow_to_every_input_that_requires_grad(n):
    rng = np.random.default_rng(n)
    arrays = _arrays(n, (3,), np.float64, seed=n)
    weights = rng.standard_normal((n, 3))
    xs = [fastmlp.tensor(a, requires_grad=(i % 2 == 1)) for i, a in enumerate(arrays)]
    (fastmlp.stack(xs) * fastmlp.tensor(weights)).sum().backward()
    (fastmlp.cat(xs) * fastmlp.tensor(weights.reshape(-1))).sum().backward()
    for i, x in enumerate(xs):
        if i % 2:  # d/dx_i of sum(W * stack(x)) and of sum(w * cat(x)) is row i of W, twice
            np.testing.assert_allclose(x.grad.numpy(), 2 * weights[i])
        else:
            assert x.grad is None
    out = fastmlp.stack(xs)
    assert out.requires_grad and out.grad_fn is not None


def test_stack_of_different_shapes_names_both_shapes_and_the_entry():
    xs = [fastmlp.ones(3)] * 5 + [fastmlp.ones(4)]
    msg = "stack expects each tensor to be equal size, but got [3] at entry 0 and [4] at entry 5"
    with pytest.raises(RuntimeError, match=re.escape(msg)):
        fastmlp.stack(xs)
    with pytest.raises(RuntimeError, match=re.escape(msg)):  # the general path says the same
        fastmlp.stack(xs[:5] + [fastmlp.ones(4, requires_grad=True)])
    with pytest.raises(RuntimeError, match=re.escape("[2, 3] at entry 0 and [3, 2] at entry 1")):
        fastmlp.stack([fastmlp.ones(2, 3), fastmlp.ones(3, 2).double()])  # the shapes, before the dtypes
    torch = pytest.importorskip("torch")
    with pytest.raises(RuntimeError, match=re.escape(msg)):
        torch.stack([torch.ones(3)] * 5 + [torch.ones(4)])


def test_cat_of_different_shapes_names_both_shapes_and_the_tensor():
    xs = [fastmlp.ones(2, 3), fastmlp.ones(1, 3), fastmlp.ones(1, 4)]
    msg = ("Sizes of tensors must match except in dimension 0. Expected size 3 but got size 4 for tensor number 2 "
           "in the list (tensor 0 has shape [2, 3], tensor 2 has shape [1, 4])")
    with pytest.raises(RuntimeError, match=re.escape(msg)):
        fastmlp.cat(xs)
    with pytest.raises(RuntimeError, match=re.escape(msg)):
        fastmlp.cat(xs[:2] + [fastmlp.ones(1, 4, requires_grad=True)])
    with pytest.raises(RuntimeError, match=re.escape("Tensors must have same number of dimensions: got 2 and 1")):
        fastmlp.cat([fastmlp.ones(2, 3), fastmlp.ones(3)])
    with pytest.raises(RuntimeError, match=re.escape("zero-dimensional tensor (at position 1) cannot be "
                                                     "concatenated")):
        fastmlp.cat([fastmlp.ones(2), fastmlp.tensor(1.0)])
    torch = pytest.importorskip("torch")  # the same wording as PyTorch's, up to our added shapes
    with pytest.raises(RuntimeError, match=re.escape(msg.split(" (tensor 0")[0])):
        torch.cat([torch.ones(2, 3), torch.ones(1, 3), torch.ones(1, 4)])


def test_items_that_are_not_tensors_are_named_by_position():
    for fn in (fastmlp.stack, fastmlp.cat):
        with pytest.raises(TypeError, match="expected Tensor as element 2 in argument 0, but got int"):
            fn([fastmlp.ones(2), fastmlp.ones(2), 5])
        with pytest.raises(TypeError, match="expected Tensor as element 1 in argument 0, but got ndarray"):
            fn([fastmlp.ones(2), np.ones(2)])
        with pytest.raises(TypeError, match="expected Tensor as element 0 in argument 0, but got str"):
            fn(("a", fastmlp.ones(2)))
    with pytest.raises(RuntimeError, match="stack expects a non-empty TensorList"):
        fastmlp.stack([])
    with pytest.raises(RuntimeError, match="expected a non-empty list of Tensors"):
        fastmlp.cat([])


def test_native_join_refuses_bad_containers_and_copies_no_objects():
    with pytest.raises(TypeError, match="stack: argument 'tensors' must be a list or tuple of tensors; got int"):
        _C.join(5, True)
    objs = [np.array([1, "a"], dtype=object)] * 2
    assert _C.join(objs, True, True) is None  # references, not bytes: NumPy's path does it
    big_endian = [(np.arange(3) + i).astype(">f4") for i in range(4)]
    got = _C.join(big_endian, True, True)
    assert got.dtype == np.dtype(">f4")
    np.testing.assert_array_equal(got, np.stack(big_endian))


@pytest.mark.parametrize("args, want", [((-1,), (12,)), ((3, 4), (3, 4)), (((2, -1),), (2, 6)), (([4, 3],), (4, 3)),
                                        ((np.int64(6), 2), (6, 2)), ((fastmlp.Size([1, 12]),), (1, 12)),
                                        ((2, 3, 2), (2, 3, 2))])
def test_reshape_argument_forms_match_numpy(args, want):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    x = fastmlp.from_numpy(a)
    got = x.reshape(*args)
    assert tuple(got.shape) == want
    np.testing.assert_array_equal(got.numpy(), a.reshape(want))
    assert np.shares_memory(got.numpy(), a)  # a view, as PyTorch's reshape of a contiguous tensor


def test_reshape_refuses_what_pytorch_refuses_and_records_its_gradient():
    x = fastmlp.ones(3, 4)
    with pytest.raises(RuntimeError, match=re.escape("shape '[5, -1]' is invalid for input of size 12")):
        x.reshape(5, -1)
    with pytest.raises(RuntimeError, match="only one dimension can be inferred"):
        x.reshape(-1, -1)
    with pytest.raises(RuntimeError, match="invalid shape dimension -2"):
        x.reshape(-2, -6)
    with pytest.raises(TypeError):
        x.reshape(None)
    w = fastmlp.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    coef = np.arange(6.0) + 1
    (w.reshape(-1) * fastmlp.tensor(coef)).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), coef.reshape(2, 3))
    with fastmlp.no_grad():
        assert not w.reshape(6).requires_grad
