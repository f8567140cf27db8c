"""Tensor API with PyTorch's semantics: creation, dtypes and promotion, views, indexing, in-place ops,
conversions and the errors PyTorch raises."""
from __future__ import annotations

import numpy as np
import pytest

import fastmlp


def test_creation_functions_and_default_dtypes():
    assert fastmlp.tensor([1.0, 2.0]).dtype == fastmlp.float32
    assert fastmlp.tensor([1, 2]).dtype == fastmlp.int64
    assert fastmlp.tensor([True]).dtype == fastmlp.bool
    assert fastmlp.tensor(np.zeros(2)).dtype == fastmlp.float64
    assert fastmlp.tensor([1, 2], dtype=fastmlp.float32).dtype == fastmlp.float32
    assert fastmlp.zeros(2, 3).shape == (2, 3) and fastmlp.ones((2, 3)).numpy().sum() == 6
    assert fastmlp.full((2,), 7).dtype == fastmlp.int64 and fastmlp.full((2,), 7.0).dtype == fastmlp.float32
    assert fastmlp.empty(4).shape == (4,)
    assert fastmlp.zeros_like(fastmlp.ones(2, dtype=fastmlp.float64)).dtype == fastmlp.float64
    np.testing.assert_array_equal(fastmlp.arange(5).numpy(), np.arange(5))
    assert fastmlp.arange(5).dtype == fastmlp.int64 and fastmlp.arange(0, 1, 0.25).dtype == fastmlp.float32
    np.testing.assert_allclose(fastmlp.arange(-3, 3, 0.15).numpy()[:3], [-3, -2.85, -2.7], rtol=1e-6)
    assert fastmlp.arange(-3, 3, 0.15).shape == (40,)
    assert fastmlp.linspace(0, 1, 5).numpy()[-1] == 1.0
    np.testing.assert_array_equal(fastmlp.eye(3).numpy(), np.eye(3))
    t = fastmlp.Tensor([1, 2])
    assert t.dtype == fastmlp.float32
    assert fastmlp.Tensor(2, 3).shape == (2, 3)


def test_random_functions_follow_manual_seed():
    fastmlp.manual_seed(42)
    a = fastmlp.randn(3, 4)
    b = fastmlp.rand(5)
    c = fastmlp.randint(0, 10, (6,))
    p = fastmlp.randperm(8)
    fastmlp.manual_seed(42)
    np.testing.assert_array_equal(a.numpy(), fastmlp.randn(3, 4).numpy())
    np.testing.assert_array_equal(b.numpy(), fastmlp.rand(5).numpy())
    np.testing.assert_array_equal(c.numpy(), fastmlp.randint(0, 10, (6,)).numpy())
    np.testing.assert_array_equal(p.numpy(), fastmlp.randperm(8).numpy())
    assert ((b.numpy() >= 0) & (b.numpy() < 1)).all() and c.dtype == fastmlp.int64
    assert sorted(p.tolist()) == list(range(8))
    n = fastmlp.normal(0, 1, (40,))
    assert n.shape == (40,) and n.dtype == fastmlp.float32


def test_type_promotion_follows_pytorch():
    f32 = fastmlp.ones(2)
    i64 = fastmlp.tensor([1, 2])
    assert (f32 + 1.5).dtype == fastmlp.float32
    assert (i64 + 1).dtype == fastmlp.int64
    assert (i64 + 1.5).dtype == fastmlp.float32
    assert (i64 / 2).dtype == fastmlp.float32
    assert (i64 / i64).dtype == fastmlp.float32
    assert (f32 + fastmlp.ones(2, dtype=fastmlp.float64)).dtype == fastmlp.float64
    assert (f32 + fastmlp.tensor(2.0, dtype=fastmlp.float64)).dtype == fastmlp.float32  # 0-d ranks lower
    assert (i64 * fastmlp.tensor(2.5)).dtype == fastmlp.float32
    assert (fastmlp.tensor([True]) + fastmlp.tensor([True])).dtype == fastmlp.bool
    assert (2 ** fastmlp.tensor([1.0, 2.0])).tolist() == [2.0, 4.0]
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        from fastmlp.ops.common import _check_same_device

        class Fake:
            device = type("D", (), {"id": 0})()

        _check_same_device(np.zeros(1), Fake())


def test_shape_methods_and_views_share_storage():
    x = fastmlp.arange(12).float()
    v = x.view(3, 4)
    assert v.size() == fastmlp.Size([3, 4]) and v.size(1) == 4 and v.dim() == 2 and v.numel() == 12
    v[0, 0] = 100.0
    assert x[0].item() == 100.0
    assert x.view(-1, 6).shape == (2, 6) and x.reshape(2, -1, 3).shape == (2, 2, 3)
    assert v.t().shape == (4, 3) and v.T.shape == (4, 3) and v.transpose(0, 1).is_contiguous() is False
    with pytest.raises(RuntimeError, match="view size is not compatible"):
        v.t().view(12)
    assert v.t().reshape(12).shape == (12,)
    with pytest.raises(RuntimeError, match=r"shape '\[5, -1\]' is invalid for input of size 12"):
        x.view(5, -1)
    assert v.unsqueeze(0).shape == (1, 3, 4) and v.unsqueeze(-1).squeeze().shape == (3, 4)
    assert fastmlp.zeros(2, 1, 3, 1).squeeze(1).shape == (2, 3, 1)
    assert fastmlp.zeros(2, 3, 4).flatten().shape == (24,) and fastmlp.zeros(2, 3, 4).flatten(1).shape == (2, 12)
    assert fastmlp.zeros(2, 3, 4).permute(2, 0, 1).shape == (4, 2, 3)
    assert repr(fastmlp.zeros(2, 3).shape) == "fastmlp.Size([2, 3])"


def test_resize_in_place_as_seed_000():
    images = fastmlp.zeros(64, 1, 28, 28)
    out = images.resize_(images.size()[0], 784)
    assert out is images and images.shape == (64, 784)


def test_indexing_and_index_assignment():
    x = fastmlp.arange(20).reshape(4, 5)
    assert x[1, 2].item() == 7 and x[-1].tolist() == [15, 16, 17, 18, 19]
    assert x[:, 1].tolist() == [1, 6, 11, 16]
    assert x[fastmlp.tensor([0, 2])].shape == (2, 5)
    assert x[x > 15].tolist() == [16, 17, 18, 19]
    assert x[[1, 3], [0, 4]].tolist() == [5, 19]
    assert x[..., None].shape == (4, 5, 1)
    x[0] = 0
    x[:, 0] = fastmlp.tensor([9, 9, 9, 9])
    x[x == 19] = -1
    assert x[0].tolist() == [9, 0, 0, 0, 0] and x[3, 4].item() == -1
    with pytest.raises(IndexError, match="index 4 is out of bounds for dimension 0 with size 4"):
        x[4]
    with pytest.raises(IndexError, match="invalid index of a 0-dim tensor"):
        fastmlp.tensor(1.0)[0]


def test_comparisons_reductions_and_argmax():
    x = fastmlp.tensor([[1.0, 5.0, 3.0], [4.0, 2.0, 6.0]])
    assert x.eq(fastmlp.tensor([[1.0, 0, 3.0], [0, 0, 6.0]])).tolist() == [[True, False, True], [False, False, True]]
    assert (x > 2).sum().item() == 4 and (x > 2).sum().dtype == fastmlp.int64
    values, idx = fastmlp.max(x, 1)
    assert values.tolist() == [5.0, 6.0] and idx.tolist() == [1, 2]
    assert x.max().item() == 6.0 and x.min(0).values.tolist() == [1.0, 2.0, 3.0]
    assert x.argmax().item() == 5 and x.argmax(1).tolist() == [1, 2] and x.argmin(dim=0).tolist() == [0, 1, 0]
    assert x.sum(0).tolist() == [5.0, 7.0, 9.0] and x.mean().item() == pytest.approx(3.5)
    assert x.mean(1, keepdim=True).shape == (2, 1)
    assert fastmlp.equal(x, x.clone()) and fastmlp.allclose(x, x + 1e-9)
    with pytest.raises(RuntimeError, match="mean\\(\\): could not infer output dtype"):
        fastmlp.arange(3).mean()


def test_math_functions():
    x = fastmlp.tensor([0.25, 1.0, 4.0])
    np.testing.assert_allclose(x.sqrt().numpy(), [0.5, 1.0, 2.0])
    np.testing.assert_allclose(fastmlp.exp(x.log()).numpy(), x.numpy(), rtol=1e-6)
    np.testing.assert_allclose((-x).abs().numpy(), x.numpy())
    assert x.clamp(0.5, 2.0).tolist() == [0.5, 1.0, 2.0] and x.clamp(max=1).tolist() == [0.25, 1.0, 1.0]
    assert (x ** 2).tolist() == [0.0625, 1.0, 16.0]
    np.testing.assert_allclose(fastmlp.softmax(x, 0).numpy().sum(), 1.0, rtol=1e-6)


def test_matmul_shapes_and_errors():
    a, b = fastmlp.randn(3, 4), fastmlp.randn(4, 5)
    np.testing.assert_allclose((a @ b).numpy(), a.numpy() @ b.numpy(), rtol=1e-5, atol=1e-5)
    assert (fastmlp.randn(2, 3, 4) @ b).shape == (2, 3, 5)
    with pytest.raises(RuntimeError, match=r"mat1 and mat2 shapes cannot be multiplied \(3x4 and 5x4\)"):
        a @ fastmlp.randn(5, 4)


def test_conversions():
    x = fastmlp.tensor([[1.5, 2.5]])
    assert x.tolist() == [[1.5, 2.5]] and x[0, 1].item() == 2.5 and float(x[0, 0]) == 1.5
    assert np.asarray(x).dtype == np.float32 and x.numpy().shape == (1, 2)
    assert x.long().dtype == fastmlp.int64 and x.double().dtype == fastmlp.float64 and x.int().dtype == fastmlp.int32
    assert x.to(fastmlp.float64).dtype == fastmlp.float64 and x.to("cpu") is x and x.cpu() is x
    assert x.device == fastmlp.device("cpu") and str(x.device) == "cpu"
    arr = np.arange(3.0)
    t = fastmlp.from_numpy(arr)
    arr[0] = 9
    assert t[0].item() == 9.0  # shares memory
    lst = [10, 20, 30]
    assert lst[fastmlp.tensor(1)] == 20  # __index__
    with pytest.raises(RuntimeError, match="Can't call numpy\\(\\) on a Tensor that requires grad"):
        fastmlp.ones(2, requires_grad=True).numpy()
    assert fastmlp.ones(2, requires_grad=True).detach().numpy().sum() == 2
    with pytest.raises(RuntimeError, match="a Tensor with 2 elements cannot be converted to a Python scalar"):
        fastmlp.ones(2).item()
    with pytest.raises(RuntimeError, match="Boolean value of Tensor with 2 values is ambiguous"):
        bool(fastmlp.ones(2))


def test_requires_grad_rules():
    with pytest.raises(RuntimeError, match="only tensors of floating point dtype can require gradients"):
        fastmlp.tensor([1, 2], requires_grad=True)
    x = fastmlp.ones(2).requires_grad_()
    assert x.requires_grad
    y = x * 2
    with pytest.raises(RuntimeError, match="only change requires_grad flags of leaf variables"):
        y.requires_grad = False


def test_inplace_dtype_rule():
    i = fastmlp.tensor([1, 2])
    with pytest.raises(RuntimeError, match="result type float32 can't be cast to the desired output type int64"):
        i += 1.5
    i += 1
    assert i.tolist() == [2, 3]
    f = fastmlp.ones(2)
    f.mul_(3).add_(1).sub_(fastmlp.ones(2), alpha=2)
    assert f.tolist() == [2.0, 2.0]
    f.zero_()
    assert f.tolist() == [0.0, 0.0]


def test_cat_stack_where():
    a, b = fastmlp.ones(2, 3), fastmlp.zeros(1, 3)
    assert fastmlp.cat([a, b]).shape == (3, 3) and fastmlp.stack([a, a], 1).shape == (2, 2, 3)
    with pytest.raises(RuntimeError, match="Sizes of tensors must match except in dimension 0"):
        fastmlp.cat([a, fastmlp.zeros(1, 4)])
    assert fastmlp.where(a > 0, a, b).shape == (2, 3)


def test_devices_and_cuda_availability():
    assert fastmlp.device("cuda:1").index == 1 and str(fastmlp.device("cuda", 0)) == "cuda:0"
    with pytest.raises(ValueError, match="unknown device type 'tpu'"):
        fastmlp.device("tpu")
    if not fastmlp.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            fastmlp.ones(2).to("cuda")
        assert fastmlp.cuda.why_unavailable() != ""


def test_repr_formats():
    assert repr(fastmlp.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(fastmlp.tensor([-3.31421])) == "tensor([-3.3142])"
    assert repr(fastmlp.tensor(3)) == "tensor(3)"
    assert repr(fastmlp.tensor([1.0], dtype=fastmlp.float64)) == "tensor([1.], dtype=fastmlp.float64)"
    assert repr(fastmlp.ones(1, requires_grad=True)) == "tensor([1.], requires_grad=True)"
    assert repr(fastmlp.float32) == "fastmlp.float32"


def test_resize_of_a_tensor_that_requires_grad_raises():
    for make in (lambda: fastmlp.ones(3, requires_grad=True), lambda: fastmlp.ones(3, requires_grad=True) * 2):
        with pytest.raises(RuntimeError, match="cannot resize variables that require grad"):
            make().resize_(4)
        t = make()
        with fastmlp.no_grad():  # PyTorch raises whatever the grad mode
            with pytest.raises(RuntimeError, match="cannot resize variables that require grad"):
                t.resize_(3)
    t = fastmlp.ones(4)
    assert t.resize_(2, 2).shape == (2, 2) and t._version == 1
    assert t.resize_(2, 2)._version == 1  # same shape: nothing to do, as PyTorch


def _mismatch_cases():
    def setitem(a, idx, v):
        a[idx] = v

    def iadd(a, b):
        a += b

    return [
        ("add", lambda lib: lib.ones(2, 3) + lib.ones(2, 4),
         r"The size of tensor a \(3\) must match the size of tensor b \(4\) at non-singleton dimension 1"),
        ("add_vector", lambda lib: lib.ones(4) + lib.ones(2, 3),
         r"The size of tensor a \(4\) must match the size of tensor b \(3\) at non-singleton dimension 1"),
        ("mul_last_mismatch", lambda lib: lib.ones(3, 1, 5) * lib.ones(2, 4, 1, 6),
         r"The size of tensor a \(5\) must match the size of tensor b \(6\) at non-singleton dimension 3"),
        ("sub", lambda lib: lib.ones(5, 1, 3) - lib.ones(4, 2),
         r"The size of tensor a \(3\) must match the size of tensor b \(2\) at non-singleton dimension 2"),
        ("div", lambda lib: lib.ones(2, 3) / lib.ones(2, 4), "The size of tensor a"),
        ("pow", lambda lib: lib.ones(2, 3) ** lib.ones(2, 4), "The size of tensor a"),
        ("maximum", lambda lib: lib.maximum(lib.ones(2, 3), lib.ones(2, 4)), "The size of tensor a"),
        ("eq", lambda lib: lib.ones(2, 3) == lib.ones(2, 4), "The size of tensor a"),
        ("lt", lambda lib: lib.ones(2, 3) < lib.ones(2, 4), "The size of tensor a"),
        ("where", lambda lib: lib.where(lib.ones(2, 3) > 0, lib.ones(2, 3), lib.ones(2, 4)),
         r"The size of tensor a \(3\) must match the size of tensor b \(4\)"),
        ("clamp", lambda lib: lib.ones(3).clamp(min=lib.ones(4)), "The size of tensor a"),
        ("add_", lambda lib: lib.ones(2, 3).add_(lib.ones(2, 4)), "The size of tensor a"),
        ("iadd", lambda lib: iadd(lib.ones(2, 3), lib.ones(4)), "The size of tensor a"),
        ("iadd_grad", lambda lib: iadd(lib.ones(2, 3, requires_grad=True) * 1, lib.ones(4)), "The size of tensor a"),
        ("iadd_larger", lambda lib: iadd(lib.ones(3), lib.ones(2, 3)),
         r"output with shape \[3\] doesn't match the broadcast shape \[2, 3\]"),
        ("copy_", lambda lib: lib.ones(2, 3).copy_(lib.ones(2, 4)), "The size of tensor a"),
        ("copy_larger", lambda lib: lib.ones(2, 3).copy_(lib.ones(2, 2, 3)),
         r"output with shape \[2, 3\] doesn't match the broadcast shape \[2, 2, 3\]"),
        ("setitem", lambda lib: setitem(lib.ones(2, 3), 0, lib.ones(4)),
         r"The expanded size of the tensor \(3\) must match the existing size \(4\) at non-singleton dimension 0"),
        ("setitem_slice", lambda lib: setitem(lib.ones(2, 3), slice(None), lib.ones(3, 3)),
         r"The expanded size of the tensor \(2\) must match the existing size \(3\) at non-singleton dimension 0"),
        ("setitem_advanced", lambda lib: setitem(lib.ones(2, 3), lib.tensor([0, 1]), lib.ones(3, 3)),
         r"shape mismatch: value tensor of shape \[3, 3\] cannot be broadcast to indexing result of shape \[2, 3\]"),
        ("setitem_mask", lambda lib: setitem(lib.ones(2, 3), lib.ones(2, 3) > 0, lib.ones(5)),
         r"shape mismatch: value tensor of shape \[5\] cannot be broadcast to indexing result of shape \[6\]"),
    ]


MISMATCH = _mismatch_cases()


@pytest.mark.parametrize("name,op,message", MISMATCH, ids=[c[0] for c in MISMATCH])
def test_broadcast_mismatch_raises_torch_runtime_error(name, op, message):
    with pytest.raises(RuntimeError, match=message) as info:
        op(fastmlp)
    assert "broadcast together" not in str(info.value)


@pytest.mark.parametrize("name,op,message", MISMATCH, ids=[c[0] for c in MISMATCH])
def test_broadcast_mismatch_message_matches_torch(name, op, message):
    torch = pytest.importorskip("torch")
    with pytest.raises(RuntimeError, match=message):
        op(torch)


def test_broadcast_mismatch_names_both_shapes():
    with pytest.raises(RuntimeError, match=r"shapes \[2, 3\] and \[2, 4\]"):
        fastmlp.ones(2, 3) * fastmlp.ones(2, 4)
    a = fastmlp.ones(2, 3)
    a[0] = fastmlp.ones(1, 3)  # leading ones are dropped, as in PyTorch
    a += fastmlp.ones(3)
    np.testing.assert_array_equal(a.numpy(), np.full((2, 3), 2.0))


def _axis_cases():
    t = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    return t, [
        ("sum", lambda x: x.sum(axis=1)),
        ("sum_keepdims", lambda x: x.sum(axis=1, keepdims=True)),
        ("mean", lambda x: x.mean(axis=0)),
        ("std", lambda x: x.std(axis=1)),
        ("var", lambda x: x.var(axis=1, keepdims=True)),
        ("max", lambda x: x.max(axis=1)[0]),
        ("max_indices", lambda x: x.max(axis=1, keepdims=True)[1]),
        ("min", lambda x: x.min(axis=0)[0]),
        ("argmax", lambda x: x.argmax(axis=1)),
        ("argmin", lambda x: x.argmin(axis=0)),
        ("all", lambda x: (x > 0).all(axis=1)),
        ("any", lambda x: (x > 4).any(axis=1)),
        ("softmax", lambda x: x.softmax(axis=1)),
        ("log_softmax", lambda x: x.log_softmax(axis=0)),
        ("squeeze", lambda x: x[:1].squeeze(axis=0)),
        ("unsqueeze", lambda x: x.unsqueeze(axis=1)),
        ("topk", lambda x: x.topk(2, axis=1)[0]),
        ("sort", lambda x: (-x).sort(axis=1)[0]),
        ("module_sum", lambda x: _lib(x).sum(x, axis=0)),
        ("cat", lambda x: _lib(x).cat([x, x], axis=1)),
        ("stack", lambda x: _lib(x).stack([x, x], axis=1)),
        ("gather", lambda x: _lib(x).gather(x, axis=1, index=_lib(x).tensor([[2], [0]]))),
    ]


def _lib(x):
    if isinstance(x, fastmlp.Tensor):
        return fastmlp
    import torch

    return torch


AXIS_INPUT, AXIS = _axis_cases()


@pytest.mark.parametrize("name,op", AXIS, ids=[c[0] for c in AXIS])
def test_axis_is_an_alias_of_dim(name, op):
    out = op(fastmlp.tensor(AXIS_INPUT))
    assert isinstance(out, fastmlp.Tensor)
    try:
        import torch
    except ImportError:
        return
    expected = op(torch.tensor(AXIS_INPUT))
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-6)
    assert out.shape == tuple(expected.shape)


def test_axis_alias_rules():
    t = fastmlp.tensor(AXIS_INPUT)
    assert t.size(axis=1) == 3
    np.testing.assert_allclose(t.sum(axis=1).numpy(), [3, 12])
    with pytest.raises(TypeError, match="multiple values for argument 'dim'"):
        t.sum(dim=1, axis=1)
    with pytest.raises(TypeError, match="multiple values for argument 'dim'"):
        t.softmax(dim=1, axis=1)
    assert t.max(axis=1, keepdims=True).values.shape == (2, 1)


def test_legacy_tensor_types():
    assert isinstance(fastmlp.ones(3), fastmlp.FloatTensor)
    assert not isinstance(fastmlp.ones(3), fastmlp.DoubleTensor)
    assert isinstance(fastmlp.ones(3, dtype=fastmlp.float64), fastmlp.DoubleTensor)
    assert isinstance(fastmlp.tensor([1, 2]), fastmlp.LongTensor)
    assert isinstance(fastmlp.tensor([True]), fastmlp.BoolTensor)
    assert isinstance(fastmlp.nn.Parameter(fastmlp.ones(2)), fastmlp.FloatTensor)
    assert not isinstance(3.0, fastmlp.FloatTensor)
    assert not issubclass(fastmlp.FloatTensor, fastmlp.Tensor)
    t = fastmlp.FloatTensor(2, 3)
    assert type(t) is fastmlp.Tensor and t.shape == (2, 3) and t.dtype == fastmlp.float32
    assert fastmlp.FloatTensor(fastmlp.Size([4])).shape == (4,)
    assert fastmlp.FloatTensor([1, 2]).tolist() == [1.0, 2.0]
    assert fastmlp.FloatTensor((2, 3)).tolist() == [2.0, 3.0]  # a tuple is data, as in PyTorch
    assert fastmlp.FloatTensor().shape == (0,)
    assert fastmlp.LongTensor([1.7, 2]).tolist() == [1, 2]
    assert fastmlp.BoolTensor([1, 0]).tolist() == [True, False]
    assert fastmlp.DoubleTensor([1]).dtype == fastmlp.float64
    with pytest.raises(TypeError):
        fastmlp.FloatTensor(2.5)
    with pytest.raises(TypeError):
        fastmlp.FloatTensor(fastmlp.ones(2, dtype=fastmlp.float64))
    src = fastmlp.ones(2)
    alias = fastmlp.FloatTensor(src)
    alias.add_(1)
    assert src.tolist() == [2.0, 2.0]
    assert fastmlp.ones(2).type() == "fastmlp.FloatTensor"
    assert fastmlp.ones(2).type(fastmlp.DoubleTensor).dtype == fastmlp.float64
    assert fastmlp.ones(2).type("torch.LongTensor").dtype == fastmlp.int64
    assert fastmlp.FloatTensor.dtype == fastmlp.float32
    assert repr(fastmlp.FloatTensor) == "<class 'fastmlp.FloatTensor'>"


def test_legacy_tensor_types_match_torch():
    torch = pytest.importorskip("torch")
    for name in ("FloatTensor", "DoubleTensor", "LongTensor", "BoolTensor"):
        ours, theirs = getattr(fastmlp, name), getattr(torch, name)
        assert ours([1, 0]).tolist() == theirs([1, 0]).tolist()
        assert str(ours([1]).dtype).split(".")[1] == str(theirs([1]).dtype).split(".")[1]
        for make in ("float32", "float64", "int64", "bool"):
            assert isinstance(fastmlp.zeros(2, dtype=getattr(fastmlp, make if make != "bool" else "bool")), ours) \
                == isinstance(torch.zeros(2, dtype=getattr(torch, make)), theirs)
    assert fastmlp.ones(2).type().split(".")[1] == torch.ones(2).type().split(".")[1]


# ---- the small ops of a per-sample Dataset: fast paths with PyTorch's semantics --------------------
def test_integer_index_is_a_view_as_in_pytorch():
    torch = pytest.importorskip("torch")
    data = np.arange(24, dtype=np.float32).reshape(4, 6)
    for build in (lambda lib: lib.tensor(data), lambda lib: lib.tensor(data[:, 0].copy())):
        f, t = build(fastmlp), build(torch)
        for i in (0, 3, -1, -4):
            np.testing.assert_array_equal(f[i].numpy(), t[i].numpy())
            assert tuple(f[i].shape) == tuple(t[i].shape)
        row = f[1]
        row.mul_(10)  # writes through to f, as torch's view does
        t_row = t[1]
        t_row.mul_(10)
        np.testing.assert_array_equal(f.numpy(), t.numpy())
        for bad in (4, -5):
            with pytest.raises(IndexError, match=f"index {bad} is out of bounds for dimension 0 with size 4"):
                f[bad]


def test_integer_index_gradient_goes_to_its_row():
    x = fastmlp.tensor(np.arange(6, dtype=np.float32).reshape(3, 2), requires_grad=True)
    (x[1] * 3).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 0], [3, 3], [0, 0]])


def test_float_and_long_return_the_tensor_itself_when_the_dtype_matches():
    f = fastmlp.ones(3)
    assert f.float() is f and f.long() is not f and f.long().dtype == fastmlp.int64
    u = fastmlp.tensor(np.array([1, 255], dtype=np.uint8))
    np.testing.assert_array_equal(u.float().numpy(), [1.0, 255.0])
    assert u.float().dtype == fastmlp.float32 and u.long().long() is not u


def test_reshape_with_ints_lists_and_errors():
    x = fastmlp.tensor(np.arange(12, dtype=np.float32))
    assert tuple(x.reshape(-1).shape) == (12,) and tuple(x.reshape(3, -1).shape) == (3, 4)
    assert tuple(x.reshape([2, 6]).shape) == (2, 6) and tuple(x.reshape(fastmlp.Size([4, 3])).shape) == (4, 3)
    np.testing.assert_array_equal(x.reshape(3, 4).numpy(), np.arange(12).reshape(3, 4))
    with pytest.raises(RuntimeError, match=r"shape '\[5, -1\]' is invalid for input of size 12"):
        x.reshape(5, -1)
    with pytest.raises(RuntimeError, match="only one dimension can be inferred"):
        x.reshape(-1, -1)
    with pytest.raises(RuntimeError, match=r"shape '\[5\]' is invalid for input of size 12"):
        x.reshape(5)


def test_arithmetic_with_a_python_number_keeps_pytorchs_dtypes():
    torch = pytest.importorskip("torch")
    for dt in ("float32", "float64", "float16"):
        a = np.array([0.0, 1.5, -3.0], dtype=dt)
        f, t = fastmlp.tensor(a), torch.tensor(a)
        for fn in (lambda x: x / 255, lambda x: 255 / x, lambda x: x * 2, lambda x: 1 - x, lambda x: x + 0.5,
                   lambda x: x / 0, lambda x: x // 2, lambda x: x ** 2):
            with np.errstate(all="raise"):  # no warning escapes from dividing by zero
                got = fn(f)
            want = fn(t)
            assert got.dtype.name == str(want.dtype).split(".")[-1]
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-3)
    i = fastmlp.tensor([1, 2])
    assert (i / 2).dtype == fastmlp.float32 and (i * 2).dtype == fastmlp.int64 and (i * 2.5).dtype == fastmlp.float32


def test_scalar_division_gradient():
    x = fastmlp.tensor([1.0, 2.0], requires_grad=True)
    ((x / 4) + (8 / x)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0.25 - 8.0, 0.25 - 2.0])


@pytest.mark.parametrize("n", [1, 7, 64])
def test_stack_and_cat_of_many_small_tensors_match_pytorch(n):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(n)
    rows = [rng.standard_normal(5).astype(np.float32) for _ in range(n)]
    labels = [np.array(k, dtype=np.int64) for k in range(n)]
    f_rows, t_rows = [fastmlp.tensor(r) for r in rows], [torch.tensor(r) for r in rows]
    for fn in (lambda lib, xs: lib.stack(xs), lambda lib, xs: lib.cat(xs), lambda lib, xs: lib.stack(xs, 1)):
        got, want = fn(fastmlp, f_rows), fn(torch, t_rows)
        np.testing.assert_array_equal(got.numpy(), want.numpy())
        assert got.is_contiguous()
    got = fastmlp.stack([fastmlp.tensor(v) for v in labels])
    assert got.dtype == fastmlp.int64 and got.tolist() == list(range(n))
    out = fastmlp.stack(f_rows)
    out.add_(1)  # a new tensor of its own: the inputs do not change
    np.testing.assert_array_equal(f_rows[0].numpy(), rows[0])


def test_stack_and_cat_fall_back_for_mixed_inputs():
    torch = pytest.importorskip("torch")
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    f = [fastmlp.tensor(a), fastmlp.tensor(a).t().contiguous().t(), fastmlp.tensor(a.astype(np.int64))]
    t = [torch.tensor(a), torch.tensor(a).t().contiguous().t(), torch.tensor(a.astype(np.int64))]
    for fn in (lambda lib, xs: lib.stack(xs), lambda lib, xs: lib.cat(xs)):
        got, want = fn(fastmlp, f), fn(torch, t)
        assert got.dtype.name == str(want.dtype).split(".")[-1]
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    with pytest.raises(RuntimeError, match=r"stack expects each tensor to be equal size, but got \[3\] at entry 0 and "
                                           r"\[4\] at entry 1"):
        fastmlp.stack([fastmlp.ones(3), fastmlp.ones(4)])
    with pytest.raises(RuntimeError, match="Sizes of tensors must match except in dimension 0"):
        fastmlp.cat([fastmlp.ones(2, 3), fastmlp.ones(2, 4)])
    x = fastmlp.ones(2, requires_grad=True)
    (fastmlp.stack([x, x * 2]).sum() + fastmlp.cat([x, x]).sum()).backward()
    np.testing.assert_array_equal(x.grad.numpy(), [5.0, 5.0])
