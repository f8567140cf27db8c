"""Version counters: every in-place op on a tensor counts a modification of its storage (shared by its
views), and backward raises, as PyTorch does, when a tensor saved for the gradient was modified after
it was saved. Expected behaviour is PyTorch's (checked against torch itself where it is installed)."""
from __future__ import annotations

import numpy as np
import pytest

import fastmlp

MODIFIED = "one of the variables needed for gradient computation has been modified by an inplace operation"


def _inplace_ops():
    def setitem(t):
        t[0] = 5.0

    def setitem_slice(t):
        t[1:] = 0.5

    return [
        ("iadd", lambda t: t.__iadd__(1)),
        ("isub", lambda t: t.__isub__(1)),
        ("imul", lambda t: t.__imul__(2)),
        ("itruediv", lambda t: t.__itruediv__(2)),
        ("add_", lambda t: t.add_(1)),
        ("sub_", lambda t: t.sub_(1, alpha=2)),
        ("mul_", lambda t: t.mul_(3)),
        ("div_", lambda t: t.div_(3)),
        ("clamp_", lambda t: t.clamp_(0, 0.5)),
        ("setitem", setitem),
        ("setitem_slice", setitem_slice),
        ("zero_", lambda t: t.zero_()),
        ("fill_", lambda t: t.fill_(2.0)),
        ("copy_", lambda t: t.copy_(t * 3)),
    ]


INPLACE = _inplace_ops()


@pytest.mark.parametrize("name,modify", INPLACE, ids=[n for n, _ in INPLACE])
def test_modifying_a_saved_tensor_raises_at_backward(name, modify):
    w = fastmlp.ones(3, requires_grad=True)
    y = w * 1
    z = y * y  # saves y
    modify(y)
    with pytest.raises(RuntimeError, match=MODIFIED):
        z.sum().backward()


@pytest.mark.parametrize("name,modify", INPLACE, ids=[n for n, _ in INPLACE])
def test_modifications_raise_where_torch_raises(name, modify):
    torch = pytest.importorskip("torch")
    for lib in (torch, fastmlp):
        w = lib.ones(3, requires_grad=True)
        y = w * 1
        z = y * y
        modify(y)
        with pytest.raises(RuntimeError, match=MODIFIED):
            z.sum().backward()


def test_square_of_a_modified_product_raises_instead_of_a_wrong_gradient():
    w = fastmlp.ones(3, requires_grad=True)
    y = w * 1
    z = y * y
    y += 1
    with pytest.raises(RuntimeError, match=MODIFIED + r".*MulBackward0"):
        z.sum().backward()
    assert w.grad is None


def test_error_names_the_saving_op_and_the_tensor():
    x = fastmlp.ones(2, 3, requires_grad=True)
    y = x.exp()  # saves its output
    y.mul_(2)
    with pytest.raises(RuntimeError, match=r"\[fastmlp\.FloatTensor \[2, 3\]\], which ExpBackward0 saved"):
        y.sum().backward()


def test_modifying_a_view_counts_for_the_whole_storage():
    x = fastmlp.ones(4, requires_grad=True)
    y = x * 1
    z = y * y
    y[:2].mul_(2)
    with pytest.raises(RuntimeError, match=MODIFIED):
        z.sum().backward()
    y = x * 1
    z = y.view(2, 2) @ fastmlp.ones(2, 2, requires_grad=True)  # saves the view for the other's gradient
    y.add_(1)
    with pytest.raises(RuntimeError, match=MODIFIED):
        z.sum().backward()


def test_detached_alias_shares_the_counter():
    x = fastmlp.ones(3, requires_grad=True)
    y = x * 1
    z = y * y
    y.detach().add_(1)
    with pytest.raises(RuntimeError, match=MODIFIED):
        z.sum().backward()


def test_leaf_modified_under_no_grad_raises():
    w = fastmlp.ones(3, requires_grad=True)
    z = w * w
    with fastmlp.no_grad():
        w.add_(1)
    with pytest.raises(RuntimeError, match=MODIFIED):
        z.sum().backward()


def test_constant_operand_modified_raises():
    w = fastmlp.ones(3, requires_grad=True)
    c = fastmlp.ones(3)
    z = w * c  # the gradient of w is c
    c.add_(1)
    with pytest.raises(RuntimeError, match=MODIFIED):
        z.sum().backward()


def test_modifying_a_value_the_gradient_does_not_need_is_fine():
    # w * c saves w only for c's gradient, and c needs none: PyTorch does not complain either
    w = fastmlp.ones(3, requires_grad=True)
    c = fastmlp.tensor([1.0, 2.0, 3.0])
    z = w * c
    with fastmlp.no_grad():
        w.add_(1)
    z.sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [1.0, 2.0, 3.0])
    # nor does modifying a tensor before it is saved, or after the backward that used it
    x = fastmlp.ones(3, requires_grad=True)
    y = x * 1
    y += 1
    z = y * y
    z.sum().backward()
    y += 1
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 4.0, 4.0])


def test_inplace_on_the_op_output_itself_is_differentiated():
    x = fastmlp.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    y *= y  # saves a snapshot of y and y itself as the other operand: PyTorch raises here
    with pytest.raises(RuntimeError, match=MODIFIED):
        y.sum().backward()
    y = x * 2
    y *= x  # x is not modified
    y += 1
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 8.0])


def test_inplace_activation_after_linear_is_fine():
    lin = fastmlp.nn.Linear(3, 2)
    h = lin(fastmlp.ones(4, 3))
    fastmlp.nn.functional.relu_(h)
    h.sum().backward()
    assert lin.weight.grad is not None


def _backward_after_step(lib, make_opt, native_step=False):
    """A graph recorded before an optimizer step, backwarded after it: whether backward raised."""
    w = lib.nn.Parameter(lib.ones(3))
    opt = make_opt(lib, [w])
    (w * w).sum().backward()
    z = w * w  # saves w, which the step then writes in place
    opt.step()
    try:
        z.sum().backward()
    except RuntimeError as e:
        assert MODIFIED in str(e)
        return True
    return False


_OPTIMIZERS = {"sgd": lambda lib, p: lib.optim.SGD(p, lr=0.1),
               "sgd_momentum": lambda lib, p: lib.optim.SGD(p, lr=0.1, momentum=0.9),
               "adam": lambda lib, p: lib.optim.Adam(p, lr=0.1)}


@pytest.mark.parametrize("name", sorted(_OPTIMIZERS))
def test_optimizer_steps_count_as_modifications(name):
    # a step writes the parameters in place (PyTorch: under no_grad, which still counts): a graph
    # recorded before it would otherwise backward through the updated values
    assert _backward_after_step(fastmlp, _OPTIMIZERS[name])


@pytest.mark.parametrize("name", sorted(_OPTIMIZERS))
def test_optimizer_steps_count_like_torch(name):
    torch = pytest.importorskip("torch")
    assert _backward_after_step(fastmlp, _OPTIMIZERS[name]) == _backward_after_step(torch, _OPTIMIZERS[name])


def test_graph_not_needing_the_parameter_backwards_after_a_step():
    w = fastmlp.nn.Parameter(fastmlp.ones(3))
    adam = fastmlp.optim.Adam([w], lr=0.1)
    w.grad = fastmlp.ones(3)
    z = (w * fastmlp.tensor([1.0, 2.0, 3.0])).sum()  # w's gradient needs only the constant
    adam.step()
    z.backward()
    np.testing.assert_allclose(w.grad.numpy(), [2.0, 3.0, 4.0])


def test_fit_step_counts_as_a_modification():
    model = fastmlp.nn.Sequential(fastmlp.nn.Linear(4, 3), fastmlp.nn.ReLU(), fastmlp.nn.Linear(3, 2))
    opt = fastmlp.optim.SGD(model.parameters(), lr=0.1)
    from fastmlp.nn.program import TrainStep

    step = TrainStep.build(model, fastmlp.nn.CrossEntropyLoss(), opt)
    x = fastmlp.randn(5, 4)
    out = model(x)
    step(fastmlp.randn(5, 4), fastmlp.randint(0, 2, (5,)))
    with pytest.raises(RuntimeError, match=MODIFIED):
        out.sum().backward()


def test_index_tensors_and_conditions_saved_for_backward_are_checked():
    x = fastmlp.ones(4, requires_grad=True)
    idx = fastmlp.tensor([0, 2])
    y = x[idx]
    idx[0] = 1
    with pytest.raises(RuntimeError, match=MODIFIED):
        y.sum().backward()
    cond = fastmlp.tensor([True, False, True, False])
    y = fastmlp.where(cond, x, fastmlp.zeros(4))
    cond.fill_(True)
    with pytest.raises(RuntimeError, match=MODIFIED):
        y.sum().backward()


def test_version_numbers_follow_torch():
    def script(lib):
        x = lib.ones(3)
        seen = [x._version]
        x.add_(1)
        seen.append(x._version)
        v = x[:2]
        v.zero_()
        seen += [x._version, v._version]
        x[0] = 1
        seen.append(x._version)
        x.detach().add_(1)
        seen.append(x._version)
        x.fill_(2)
        x.copy_(x)
        x += 1
        x.clamp_(0, 1)
        seen.append(x._version)
        y = x + 1  # a new storage
        seen.append(y._version)
        return seen

    expected = [0, 1, 2, 2, 3, 4, 8, 0]
    assert script(fastmlp) == expected
    try:
        import torch
    except ImportError:
        return
    assert script(torch) == expected


UNARY_INPLACE = [
    ("pow_", lambda t: t.pow_(2), lambda x: x ** 2),
    ("ipow", lambda t: t.__ipow__(3), lambda x: x ** 3),
    ("abs_", lambda t: t.abs_(), np.abs),
    ("exp_", lambda t: t.exp_(), np.exp),
    ("sqrt_", lambda t: t.sqrt_(), np.sqrt),
    ("log_", lambda t: t.log_(), np.log),
    ("neg_", lambda t: t.neg_(), np.negative),
    ("sigmoid_", lambda t: t.sigmoid_(), lambda x: 1 / (1 + np.exp(-x))),
    ("tanh_", lambda t: t.tanh_(), np.tanh),
    ("clamp_min_", lambda t: t.clamp_min_(0.8), lambda x: np.maximum(x, 0.8)),
    ("clamp_max_", lambda t: t.clamp_max_(0.8), lambda x: np.minimum(x, 0.8)),
]


@pytest.mark.parametrize("name,method,ref", UNARY_INPLACE, ids=[c[0] for c in UNARY_INPLACE])
def test_unary_inplace_methods_write_in_place(name, method, ref):
    x = np.array([0.5, 1.0, 2.0], dtype=np.float32)
    t = fastmlp.tensor(x)
    view = t[1:]
    assert method(t) is t
    np.testing.assert_allclose(t.numpy(), ref(x), rtol=1e-6)
    np.testing.assert_allclose(view.numpy(), ref(x)[1:], rtol=1e-6)  # through the storage
    assert t._version == 1


@pytest.mark.parametrize("name,method,ref", UNARY_INPLACE, ids=[c[0] for c in UNARY_INPLACE])
def test_unary_inplace_methods_are_differentiated_like_torch(name, method, ref):
    torch = pytest.importorskip("torch")
    x = np.array([0.5, 1.0, 2.0], dtype=np.float32)
    grads = []
    for lib in (torch, fastmlp):
        leaf = lib.tensor(x, requires_grad=True)
        with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place"):
            method(leaf)
        y = leaf * 1.5
        method(y)
        (y * lib.tensor([1.0, 2.0, 3.0])).sum().backward()
        grads.append(leaf.grad.numpy())
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-4, atol=1e-6)


def test_unary_inplace_gradient_without_torch():
    x = fastmlp.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    y.log_()  # log(2x): gradient 1/x
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 0.5])
    x = fastmlp.tensor([-1.0, 2.0, 3.0], requires_grad=True)
    y = x * 2
    y.clamp_(0, 5)  # clamp_ used to leave the graph as if it were the identity
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0.0, 2.0, 0.0])
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad"):
        fastmlp.ones(2, requires_grad=True).exp_()


def test_unary_inplace_dtype_rules_as_torch():
    with pytest.raises(RuntimeError, match="can't be cast to the desired output type"):
        fastmlp.ones(3, dtype=fastmlp.int64).exp_()
    with pytest.raises(RuntimeError, match="can't be cast to the desired output type"):
        fastmlp.tensor([4]).sqrt_()
    assert fastmlp.tensor([-1, 2]).abs_().tolist() == [1, 2]
    assert fastmlp.tensor([4]).pow_(2).tolist() == [16]
    with pytest.raises(RuntimeError, match=r"output with shape \[3\] doesn't match the broadcast shape \[2, 3\]"):
        fastmlp.ones(3).pow_(fastmlp.ones(2, 3))
    x = fastmlp.ones(3)
    x **= 2  # in place, as PyTorch: one version
    assert x._version == 1


def test_clamp_min_and_clamp_max():
    t = fastmlp.tensor([-1.0, 0.5, 2.0])
    np.testing.assert_allclose(t.clamp_min(0).numpy(), [0, 0.5, 2])
    np.testing.assert_allclose(t.clamp_max(1).numpy(), [-1, 0.5, 1])
    np.testing.assert_allclose(fastmlp.clamp_min(t, fastmlp.tensor([0.0, 1.0, 0.0])).numpy(), [0, 1, 2])
    np.testing.assert_allclose(fastmlp.clamp_max(t, 0.0).numpy(), [-1, 0, 0])
    x = fastmlp.tensor([-1.0, 0.5, 2.0], requires_grad=True)
    x.clamp_min(0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0, 1, 1])


# ---- Linear layers and the native chain ------------------------------------------------------
# Each case: a model builder (fastmlp or torch module namespace -> model), and what is modified in
# place after the forward pass: the layer's input or its output.
_LAYER_MODELS = {
    "linear": lambda nn: nn.Linear(5, 3),
    "linear_relu_linear": lambda nn: nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)),
    "flatten_mlp_dropout_eval": lambda nn: nn.Sequential(nn.Flatten(), nn.Linear(5, 4), nn.Tanh(), nn.Dropout(0.5),
                                                         nn.Linear(4, 3)).eval(),
    "ends_in_relu": lambda nn: nn.Sequential(nn.Linear(5, 4), nn.ReLU()),
    "ends_in_sigmoid": lambda nn: nn.Sequential(nn.Linear(5, 4), nn.Sigmoid()),
    "ends_in_gelu": lambda nn: nn.Sequential(nn.Linear(5, 4), nn.GELU()),
    "ends_in_tanh_dropout": lambda nn: nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Dropout(0.5)),
}


def _modify_after_forward(lib, model_name: str, what: str) -> bool:
    """Runs the model on h = x * 1, modifies h (what="input") or the output in place, and
    returns whether backward raised the in-place error."""
    lib.manual_seed(0)
    model = _LAYER_MODELS[model_name](lib.nn)
    h = lib.randn(4, 5) * 1.0
    out = model(h)
    (h if what == "input" else out).mul_(2.0)
    try:
        out.sum().backward()
    except RuntimeError as e:
        assert MODIFIED in str(e)
        return True
    return False


@pytest.mark.parametrize("model_name", sorted(_LAYER_MODELS))
def test_linear_input_modified_in_place_raises(model_name):
    # Every Linear reads its input for the weight gradient: the gradient of the doubled input
    # would be silently wrong.
    assert _modify_after_forward(fastmlp, model_name, "input")


def test_sequential_that_takes_the_chain_records_one_node():
    model = _LAYER_MODELS["linear_relu_linear"](fastmlp.nn)
    assert type(model(fastmlp.randn(2, 5)).grad_fn).__name__ == "ProgramBackward"


@pytest.mark.parametrize("what", ["input", "output"])
@pytest.mark.parametrize("model_name", sorted(_LAYER_MODELS))
def test_linear_and_chain_raise_where_torch_raises(model_name, what):
    torch = pytest.importorskip("torch")
    assert _modify_after_forward(fastmlp, model_name, what) == _modify_after_forward(torch, model_name, what)


def test_linear_output_modified_in_place_keeps_correct_gradients():
    # A Linear without activation does not read its output: modifying it is allowed and the
    # gradients are those of the unmodified product (x·Wᵀ + b).
    fastmlp.manual_seed(0)
    lin = fastmlp.nn.Linear(5, 3)
    x = fastmlp.randn(4, 5, requires_grad=True)
    out = lin(x)
    out.mul_(2.0)
    out.sum().backward()
    w = lin.weight.detach().numpy().astype(np.float64)
    np.testing.assert_allclose(x.grad.numpy(), np.tile(2.0 * w.sum(0), (4, 1)), rtol=1e-6)
    np.testing.assert_allclose(lin.weight.grad.numpy(), np.tile(2.0 * x.detach().numpy().sum(0), (3, 1)), rtol=1e-6)
