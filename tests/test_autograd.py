"""The autograd engine and every differentiable tensor op, checked by finite differences in float64."""
from __future__ import annotations

import numpy as np
import pytest

import fastmlp
from gradcheck_util import check_function

rng = np.random.default_rng(7)


def r(*shape):
    return rng.standard_normal(shape)


def pos(*shape):
    return rng.uniform(0.5, 2.0, shape)


BINARY = [
    ("add", lambda a, b: a + b, r(3, 4), r(4)),
    ("add_broadcast_col", lambda a, b: a + b, r(3, 4), r(3, 1)),
    ("sub", lambda a, b: a - b, r(2, 3), r(2, 3)),
    ("rsub_scalar", lambda a, b: 2.0 - a * b, r(2, 3), r(1, 3)),
    ("mul", lambda a, b: a * b, r(2, 3, 4), r(3, 1)),
    ("div", lambda a, b: a / b, r(3, 4), pos(4)),
    ("rdiv", lambda a, b: 1.5 / b + a, r(3), pos(3)),
    ("pow_tensor", lambda a, b: a ** b, pos(3, 2), r(3, 2)),
    ("matmul_2d", lambda a, b: a @ b, r(3, 4), r(4, 5)),
    ("matmul_vec", lambda a, b: a @ b, r(3, 4), r(4)),
    ("matmul_vec_mat", lambda a, b: a @ b, r(4), r(4, 2)),
    ("matmul_dot", lambda a, b: a @ b, r(5), r(5)),
    ("matmul_batched", lambda a, b: a @ b, r(2, 3, 4), r(4, 2)),
    ("maximum", lambda a, b: fastmlp.maximum(a, b), r(3, 4), r(3, 4)),
    ("minimum", lambda a, b: fastmlp.minimum(a, b), r(3, 4), r(4)),
    ("where", lambda a, b: fastmlp.where(a > 0, a, b), r(3, 4), r(3, 4)),
    ("cat", lambda a, b: fastmlp.cat([a, b], 1), r(2, 3), r(2, 2)),
    ("stack", lambda a, b: fastmlp.stack([a, b], 0), r(2, 3), r(2, 3)),
]


@pytest.mark.parametrize("name,fn,a,b", BINARY, ids=[b[0] for b in BINARY])
def test_binary_op_gradients(name, fn, a, b):
    check_function(fn, [a, b])


UNARY = [
    ("neg", lambda a: -a, r(3, 4)),
    ("exp", lambda a: a.exp(), r(3, 4)),
    ("log", lambda a: a.log(), pos(3, 4)),
    ("sqrt", lambda a: a.sqrt(), pos(5)),
    ("abs", lambda a: a.abs(), r(6) + 0.1),
    ("pow_scalar", lambda a: a ** 3, r(3, 2)),
    ("pow_half", lambda a: a ** 0.5, pos(4)),
    ("clamp", lambda a: a.clamp(-0.5, 0.5), r(4, 4)),
    ("clamp_min", lambda a: fastmlp.clamp(a, min=0.1), r(4, 4)),
    ("sigmoid", lambda a: a.sigmoid(), r(3, 4) * 3),
    ("tanh", lambda a: a.tanh(), r(3, 4)),
    ("relu", lambda a: a.relu(), r(3, 4)),
    ("sum_all", lambda a: a.sum(), r(3, 4)),
    ("sum_dim", lambda a: a.sum(1), r(3, 4)),
    ("sum_dims_keepdim", lambda a: a.sum((0, 2), keepdim=True), r(2, 3, 4)),
    ("mean_all", lambda a: a.mean(), r(3, 4)),
    ("mean_dim", lambda a: a.mean(-1, keepdim=True), r(3, 4)),
    ("var", lambda a: a.var(0), r(5, 3)),
    ("std_unbiased_false", lambda a: a.std(1, unbiased=False), r(3, 6)),
    ("max_all", lambda a: a.max(), r(3, 4)),
    ("max_dim", lambda a: a.max(1).values, r(3, 4)),
    ("min_dim_keepdim", lambda a: a.min(0, keepdim=True)[0], r(3, 4)),
    ("view", lambda a: a.view(4, 3) * 2, r(3, 4)),
    ("reshape_infer", lambda a: a.reshape(-1) ** 2, r(3, 4)),
    ("flatten", lambda a: a.flatten(1) * 3, r(2, 3, 4)),
    ("squeeze_unsqueeze", lambda a: a.unsqueeze(0).squeeze(0).unsqueeze(-1) * 2, r(3, 4)),
    ("transpose", lambda a: a.transpose(0, 1) @ a, r(3, 4)),
    ("t", lambda a: a.t() * 1.5, r(3, 4)),
    ("T", lambda a: a.T.exp(), r(2, 3, 4)),
    ("permute", lambda a: a.permute(2, 0, 1) * 2, r(2, 3, 4)),
    ("expand", lambda a: a.expand(3, 4) * 2, r(1, 4)),
    ("getitem_slice", lambda a: a[1:, ::2] * 2, r(3, 4)),
    ("getitem_int", lambda a: a[1] * 2, r(3, 4)),
    ("getitem_int_array_repeats", lambda a: a[fastmlp.tensor([0, 2, 0])] * 2, r(3, 4)),
    ("getitem_bool_mask", lambda a: a[a > 0] * 2, r(3, 4)),
    ("getitem_pairs", lambda a: a[fastmlp.arange(3), fastmlp.tensor([0, 3, 1])], r(3, 4)),
    ("gather", lambda a: fastmlp.gather(a, 1, fastmlp.tensor([[0, 0], [3, 1], [2, 2]])), r(3, 4)),
    ("softmax_dim0", lambda a: fastmlp.softmax(a, 0), r(3, 4)),
    ("log_softmax", lambda a: fastmlp.log_softmax(a, 1), r(3, 4)),
    ("clone_contiguous", lambda a: a.t().contiguous().clone() * 2, r(3, 4)),
    ("chain", lambda a: ((a * a).sum(1, keepdim=True).sqrt() * a).mean(0), r(4, 3)),
]


@pytest.mark.parametrize("name,fn,a", UNARY, ids=[u[0] for u in UNARY])
def test_unary_op_gradients(name, fn, a):
    check_function(fn, [a])


def test_gradients_accumulate_until_zeroed():
    w = fastmlp.tensor([1.0, 2.0], requires_grad=True)
    for k in range(1, 4):
        (w * w).sum().backward()
        np.testing.assert_allclose(w.grad.numpy(), k * 2 * np.array([1.0, 2.0]))
    w.grad = None
    (w * 3).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [3.0, 3.0])


def test_shared_subexpression_gets_both_contributions():
    x = fastmlp.tensor([2.0], requires_grad=True)
    y = x * x
    z = y + y * x  # x^2 + x^3
    z.backward()
    np.testing.assert_allclose(x.grad.numpy(), [2 * 2.0 + 3 * 4.0])


def test_path_into_a_shared_subexpression():
    """A path of single-edge nodes (with leaf edges on the way) that runs into a node with two
    node edges: the engine walks the path, then hands over to the general algorithm."""
    def f(x, w):
        h = x * w
        return ((h * h + h) * w).sum()

    check_function(f, [r(3), r(3)])
    xv, wv = r(3), r(3)
    x = fastmlp.tensor(xv, requires_grad=True)
    w = fastmlp.tensor(wv, requires_grad=True)
    f(x, w).backward()  # loss.backward(): the implicit gradient
    h = xv * wv
    np.testing.assert_allclose(x.grad.numpy(), (2 * h + 1) * wv * wv, rtol=1e-12)
    np.testing.assert_allclose(w.grad.numpy(), h * h + h + (2 * h + 1) * xv * wv, rtol=1e-12)


def test_second_backward_through_freed_graph_raises():
    x = fastmlp.tensor([1.0, 2.0], requires_grad=True)
    loss = (x.exp() * x).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        loss.backward()


def test_retain_graph_allows_second_backward():
    x = fastmlp.tensor([1.0, 2.0], requires_grad=True)
    loss = (x.exp() * x).sum()
    loss.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * first)


def test_backward_from_non_scalar_needs_gradient():
    x = fastmlp.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match=r"grad can be implicitly created only for scalar outputs.*\[2\]"):
        y.backward()
    y.backward(fastmlp.tensor([1.0, 0.5]))
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 1.0])


def test_backward_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        fastmlp.tensor([1.0]).sum().backward()


def test_no_grad_context_and_decorator():
    x = fastmlp.tensor([1.0], requires_grad=True)
    with fastmlp.no_grad():
        y = x * 2
        assert not fastmlp.is_grad_enabled()
        with fastmlp.enable_grad():
            z = x * 3
    assert fastmlp.is_grad_enabled()
    assert y.grad_fn is None and not y.requires_grad
    assert z.requires_grad

    @fastmlp.no_grad()
    def f(t):
        return t * 2

    assert not f(x).requires_grad
    fastmlp.set_grad_enabled(False)
    assert not (x * 2).requires_grad
    fastmlp.set_grad_enabled(True)
    with fastmlp.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert fastmlp.is_grad_enabled()


def test_set_grad_enabled_as_decorator_leaves_the_mode_alone_until_called():
    # PyTorch: set_grad_enabled(mode).__call__ restores the mode saved in __init__, then wraps
    x = fastmlp.tensor([1.0], requires_grad=True)

    @fastmlp.set_grad_enabled(False)
    def f(t):
        assert not fastmlp.is_grad_enabled()
        return t * 2

    assert fastmlp.is_grad_enabled()
    assert (x * 2).requires_grad
    assert not f(x).requires_grad
    assert fastmlp.is_grad_enabled()
    with fastmlp.no_grad():
        @fastmlp.set_grad_enabled(True)
        def g(t):
            return t * 2

        assert not fastmlp.is_grad_enabled()
        assert g(x).requires_grad
        assert not fastmlp.is_grad_enabled()


def test_no_grad_and_enable_grad_decorate_without_parentheses():
    x = fastmlp.tensor([1.0], requires_grad=True)

    @fastmlp.no_grad
    def f(t):
        return t * 2

    @fastmlp.enable_grad
    def g(t):
        return t * 2

    assert f.__name__ == "f" and g.__name__ == "g"
    assert not f(x).requires_grad
    assert fastmlp.is_grad_enabled()
    with fastmlp.no_grad():
        assert g(x).requires_grad
        assert not fastmlp.is_grad_enabled()
    assert isinstance(fastmlp.no_grad(), fastmlp.no_grad)


def test_grad_mode_decorators_cover_generator_bodies():
    @fastmlp.no_grad
    def modes():
        yield fastmlp.is_grad_enabled()
        yield fastmlp.is_grad_enabled()

    it = modes()
    assert next(it) is False
    assert fastmlp.is_grad_enabled()  # the caller's mode between steps
    assert next(it) is False
    with pytest.raises(StopIteration):
        next(it)
    assert fastmlp.is_grad_enabled()


def test_grad_mode_decorators_match_torch():
    torch = pytest.importorskip("torch")
    for lib in (torch, fastmlp):
        @lib.set_grad_enabled(False)
        def f():
            return lib.is_grad_enabled()

        @lib.no_grad
        def h():
            return lib.is_grad_enabled()

        assert (lib.is_grad_enabled(), f(), h(), lib.is_grad_enabled()) == (True, False, False, True)


def test_detach_and_leaf_flags():
    x = fastmlp.tensor([1.0], requires_grad=True)
    y = x * 2
    assert x.is_leaf and not y.is_leaf
    d = y.detach()
    assert d.is_leaf and not d.requires_grad
    assert y.grad_fn.name() == "MulBackward0"
    assert repr(y) == "tensor([2.], grad_fn=<MulBackward0>)"


def test_retain_grad_and_hooks():
    x = fastmlp.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    y.retain_grad()
    seen = []
    y.register_hook(lambda g: seen.append(g.numpy().copy()))
    x.register_hook(lambda g: g * 10)
    y.sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), [1.0, 1.0])
    np.testing.assert_allclose(seen[0], [1.0, 1.0])
    np.testing.assert_allclose(x.grad.numpy(), [30.0, 30.0])


def test_autograd_grad_returns_without_accumulating():
    x = fastmlp.tensor([1.0, 2.0], requires_grad=True)
    w = fastmlp.nn.Linear(2, 1).double()
    out = w(x.double()).sum() + (x * x).sum()
    (gx,) = fastmlp.autograd.grad(out, x)
    assert x.grad is None and w.weight.grad is None
    np.testing.assert_allclose(gx.numpy(), w.weight.detach().numpy()[0] + 2 * np.array([1.0, 2.0]))


def test_inplace_on_leaf_requiring_grad_raises():
    x = fastmlp.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        x += 1
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        x[0] = 2.0
    with fastmlp.no_grad():
        x += 1
    np.testing.assert_allclose(x.detach().numpy(), [2.0])


def test_inplace_on_non_leaf_is_differentiated():
    x = fastmlp.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    y *= x  # y = 2x^2
    y += 1
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 4 * np.array([1.0, 2.0]))


def test_index_assignment_gradient():
    x = fastmlp.tensor([1.0, 2.0, 3.0], requires_grad=True)
    v = fastmlp.tensor([5.0], requires_grad=True)
    y = x * 1
    y[1:2] = v * 2
    (y * fastmlp.tensor([1.0, 10.0, 100.0])).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 0.0, 100.0])
    np.testing.assert_allclose(v.grad.numpy(), [20.0])


def test_long_chain_does_not_hit_recursion_limit():
    x = fastmlp.tensor([1.0], requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0001
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0001 ** 5000], rtol=1e-4)


def test_float32_grad_dtype_matches_parameter():
    x = fastmlp.randn(3, 4, requires_grad=True)
    (x * 2).sum().backward()
    assert x.grad.dtype == fastmlp.float32 and x.grad.shape == x.shape


def test_assigning_grad_checks_it_as_torch_does():
    x = fastmlp.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError,
                       match=r"attempting to assign a gradient of size '\[4\]' to a tensor of size '\[3\]'"):
        x.grad = fastmlp.ones(4)
    with pytest.raises(RuntimeError, match=r"of size '\[1, 3\]'"):
        x.grad = fastmlp.ones(1, 3)
    with pytest.raises(RuntimeError, match="attempting to assign a gradient with dtype 'float64'"):
        x.grad = fastmlp.ones(3, dtype=fastmlp.float64)
    with pytest.raises(TypeError, match="assigned grad expected to be a Tensor or None but got grad of type int"):
        x.grad = 5
    with pytest.raises(RuntimeError, match="can't assign Variable as its own grad"):
        x.grad = x
    assert x.grad is None
    g = fastmlp.full((3,), 2.0)
    x.grad = g
    assert x.grad is g
    (x * 3).sum().backward()  # accumulates into the assigned gradient
    np.testing.assert_allclose(g.numpy(), [5.0, 5.0, 5.0])
    x.grad = None
    assert x.grad is None
    x.grad = fastmlp.ones(3) * fastmlp.ones(3, requires_grad=True)  # a gradient with history is allowed
    del x.grad
    assert x.grad is None


def test_assigning_grad_matches_torch():
    torch = pytest.importorskip("torch")
    for lib in (torch, fastmlp):
        x = lib.ones(3, requires_grad=True)
        for bad, exc in ((lib.ones(4), RuntimeError), (lib.ones(3, dtype=lib.float64), RuntimeError),
                         (1.0, TypeError)):
            with pytest.raises(exc, match="assign"):
                x.grad = bad
        x.grad = lib.ones(3)
        assert x.grad.shape == (3,)


MAX_CASES = [
    [1.0, 3.0, 3.0, 2.0],
    [1.0, float("nan"), 3.0, 2.0],
    [float("nan"), 1.0, float("nan"), 3.0],
    [3.0, 3.0, 3.0],
    [1.0, float("inf"), float("nan")],
]
# torch 2.13: the gradient of a full max/min goes to the elements equal to the result, shared evenly,
# and to the NaNs (shared evenly) when the result is NaN
MAX_EXPECTED = {
    "max": [[0, 0.5, 0.5, 0], [0, 1, 0, 0], [0.5, 0, 0.5, 0], [1 / 3] * 3, [0, 0, 1]],
    "min": [[1, 0, 0, 0], [0, 1, 0, 0], [0.5, 0, 0.5, 0], [1 / 3] * 3, [0, 0, 1]],
}


@pytest.mark.parametrize("fn", ["max", "min"])
@pytest.mark.parametrize("case", range(len(MAX_CASES)))
def test_full_max_min_gradient_with_ties_and_nan(fn, case):
    x = fastmlp.tensor(MAX_CASES[case], requires_grad=True)
    getattr(x, fn)().backward()
    np.testing.assert_allclose(x.grad.numpy(), MAX_EXPECTED[fn][case], rtol=1e-6)
    try:
        import torch
    except ImportError:
        return
    t = torch.tensor(MAX_CASES[case], requires_grad=True)
    getattr(t, fn)().backward()
    np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-6)


def test_max_along_a_dim_sends_the_gradient_to_the_nan():
    nan = float("nan")
    x = fastmlp.tensor([[1.0, nan, 3.0], [2.0, 5.0, nan]], requires_grad=True)
    values, indices = x.max(dim=1)
    assert indices.tolist() == [1, 2]
    values.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 1, 0], [0, 0, 1]])
