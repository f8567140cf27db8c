"""Sequential's native program (fastmlp.nn.program.Route): model(x) and loss.backward() in one
native call each, bitwise equal to the module-by-module path, and out of the way whenever it does
not apply."""
from __future__ import annotations

import copy

import numpy as np
import pytest

import fastmlp
from fastmlp import autograd, nn, optim
from fastmlp.nn import program as program_mod


def make(arch: str):
    if arch == "seed001":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                             nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    if arch == "dropout":
        return nn.Sequential(nn.Linear(784, 96), nn.ReLU(), nn.Dropout(0.2), nn.Linear(96, 96), nn.ReLU(),
                             nn.Dropout(0.2), nn.Linear(96, 10))
    if arch == "mixed":  # every activation, a layer without bias, Identity, dropout without activation, and at the end
        return nn.Sequential(nn.Linear(784, 32), nn.GELU(), nn.Dropout(0.1), nn.Linear(32, 32, bias=False),
                             nn.LeakyReLU(0.05), nn.Identity(), nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 16),
                             nn.Sigmoid(), nn.Dropout(0.3), nn.Linear(16, 12), nn.Dropout(0.25))
    if arch == "wide":  # layers wide enough that every GEMM of a batch of 32 runs on several threads
        return nn.Sequential(nn.Linear(784, 256), nn.GELU(), nn.Dropout(0.2), nn.Linear(256, 192), nn.Tanh(),
                             nn.Linear(192, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 10))
    if arch == "relu-last":
        return nn.Sequential(nn.Linear(784, 40), nn.ReLU(), nn.Linear(40, 10), nn.ReLU())
    raise KeyError(arch)


def inputs(arch: str, rng, batch: int):
    x = rng.random((batch, 1, 28, 28) if arch == "seed001" else (batch, 784), dtype=np.float32)
    return x, rng.integers(0, 10, batch)


def train(arch: str, native: bool, monkeypatch, steps=((20, False), (20, True), (7, False)), opt_fn=None,
          eval_at=None):
    """A few seed-style steps; True in `steps` means: accumulate into the previous gradients (no zero_grad)."""
    monkeypatch.setattr(program_mod, "enabled", native)
    rng = np.random.default_rng(0)
    fastmlp.manual_seed(11)
    model = make(arch)
    opt = (opt_fn or (lambda p: optim.SGD(p, lr=0.05, momentum=0.9)))(model.parameters())
    crit = nn.CrossEntropyLoss()
    trace = []
    for i, (b, accumulate) in enumerate(steps):
        if eval_at is not None:
            model.train(i != eval_at)
        x, y = inputs(arch, rng, b)
        if not accumulate:
            opt.zero_grad()
        out = model(fastmlp.tensor(x))
        loss = crit(out, fastmlp.tensor(y))
        loss.backward()
        opt.step()
        trace.append([out.detach().numpy().copy(), np.float32(loss.item())] +
                     [p.detach().numpy().copy() for p in model.parameters()] +
                     [p.grad.numpy().copy() for p in model.parameters()])
    return model, out, trace


def assert_same(t0, t1):
    assert len(t0) == len(t1)
    for s0, s1 in zip(t0, t1):
        for a, b in zip(s0, s1):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("arch", ["seed001", "dropout", "mixed", "relu-last"])
def test_chain_equals_module_path(arch, monkeypatch):
    _, out0, t0 = train(arch, False, monkeypatch)
    model, out1, t1 = train(arch, True, monkeypatch)
    assert out0.grad_fn.name() != "MlpProgramBackward"
    assert out1.grad_fn.name() == "MlpProgramBackward"
    assert_same(t0, t1)


def test_wide_chain_equals_module_path_on_every_thread_count(monkeypatch, on_threads):
    """At batch 32 the wide layers' products run on several threads (and one step adds to the
    gradients of the step before): on 1, 2 and 3 threads, the chain is bitwise the module path."""
    steps = ((32, False), (32, True), (9, False))
    t0 = train("wide", False, monkeypatch, steps=steps)[2]
    for t1 in on_threads((1, 2, 3), lambda t: train("wide", True, monkeypatch, steps=steps)[2]):
        assert_same(t0, t1)


@pytest.mark.parametrize("opt", ["adam", "adamw-amsgrad"])
def test_chain_with_adam_and_eval_steps(opt, monkeypatch):
    """Dropout modes change between steps (eval at step 1): the chain follows them."""
    fn = (lambda p: optim.Adam(p, lr=1e-3)) if opt == "adam" else \
        (lambda p: optim.AdamW(p, lr=1e-3, weight_decay=0.01, amsgrad=True))
    t0 = train("dropout", False, monkeypatch, opt_fn=fn, eval_at=1)[2]
    t1 = train("dropout", True, monkeypatch, opt_fn=fn, eval_at=1)[2]
    assert_same(t0, t1)


def test_chain_matches_float64_finite_differences():
    """An independent check of the chain's gradients: central differences of the float64 loss."""
    fastmlp.manual_seed(2)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4), nn.Sigmoid(), nn.Linear(4, 3))
    rng = np.random.default_rng(4)
    x = rng.standard_normal((7, 6)).astype(np.float32)
    y = rng.integers(0, 3, 7)
    out = model(fastmlp.tensor(x))
    assert out.grad_fn.name() == "MlpProgramBackward"
    nn.CrossEntropyLoss()(out, fastmlp.tensor(y)).backward()
    params = [p.detach().numpy().astype(np.float64) for p in model.parameters()]

    def loss64(ps):
        h = x.astype(np.float64)
        acts = [np.tanh, lambda v: 1 / (1 + np.exp(-v)), lambda v: v]
        for (w, b), act in zip(zip(ps[::2], ps[1::2]), acts):
            h = act(h @ w.T + b)
        h = h - h.max(1, keepdims=True)
        logp = h - np.log(np.exp(h).sum(1, keepdims=True))
        return -logp[np.arange(len(y)), y].mean()

    for k, p in enumerate(model.parameters()):
        num = np.zeros_like(params[k])
        for idx in np.ndindex(*params[k].shape):
            up = [q.copy() for q in params]
            dn = [q.copy() for q in params]
            up[k][idx] += 1e-6
            dn[k][idx] -= 1e-6
            num[idx] = (loss64(up) - loss64(dn)) / 2e-6
        np.testing.assert_allclose(p.grad.numpy(), num, rtol=2e-3, atol=2e-6)


def test_input_gradient_and_frozen_layer(monkeypatch):
    """x that requires grad gets its gradient; a frozen layer gets none; both as the module path."""
    results = []
    for native in (False, True):
        monkeypatch.setattr(program_mod, "enabled", native)
        fastmlp.manual_seed(1)
        model = make("dropout")
        model[0].weight.requires_grad_(False)
        x = fastmlp.tensor(np.random.default_rng(3).random((5, 784), dtype=np.float32), requires_grad=True)
        out = model(x * 2.0)
        out.pow(2).sum().backward()
        assert model[0].weight.grad is None
        results.append([x.grad.numpy().copy(), model[0].bias.grad.numpy().copy(), model[3].weight.grad.numpy().copy()])
    assert_same([results[0]], [results[1]])


def test_nothing_requires_grad_gives_no_graph(monkeypatch):
    fastmlp.manual_seed(0)
    model = make("seed001").requires_grad_(False)
    x = fastmlp.rand(2, 1, 28, 28)
    out = model(x)
    assert out.grad_fn is None and not out.requires_grad
    with pytest.raises(RuntimeError):
        out.sum().backward()
    monkeypatch.setattr(program_mod, "enabled", False)
    np.testing.assert_array_equal(out.numpy(), model(x).numpy())


def test_two_graphs_in_flight_and_retain_graph(monkeypatch):
    """Two forward passes before one backward (each keeps its own saved state), then a second
    backward through a retained graph: gradients add up as on the module path."""
    results = []
    for native in (False, True):
        monkeypatch.setattr(program_mod, "enabled", native)
        fastmlp.manual_seed(6)
        model = make("dropout")
        rng = np.random.default_rng(8)
        x1, x2 = (fastmlp.tensor(rng.random((4, 784), dtype=np.float32)) for _ in range(2))
        o1, o2 = model(x1), model(x2)
        loss = o1.sum() + (o2 * o2).mean()
        loss.backward(retain_graph=True)
        loss.backward()
        with pytest.raises(RuntimeError):
            loss.backward()
        results.append([o1.detach().numpy().copy(), o2.detach().numpy().copy()] +
                       [p.grad.numpy().copy() for p in model.parameters()])
    assert_same([results[0]], [results[1]])


def test_autograd_grad_and_parameter_hooks(monkeypatch):
    """autograd.grad collects without touching .grad; a tensor hook on a weight sees (and scales) its gradient."""
    results = []
    for native in (False, True):
        monkeypatch.setattr(program_mod, "enabled", native)
        fastmlp.manual_seed(9)
        model = make("seed001")
        x = fastmlp.tensor(np.random.default_rng(2).random((3, 1, 28, 28), dtype=np.float32))
        out = model(x)
        (gw,) = autograd.grad(out.sum(), [model[1].weight], retain_graph=True)
        assert model[1].weight.grad is None
        seen = []
        model[3].weight.register_hook(lambda g: seen.append(g.numpy().copy()) or g * 3.0)
        out.sum().backward()
        results.append([gw.numpy().copy(), seen[0], model[3].weight.grad.numpy().copy(),
                        model[1].weight.grad.numpy().copy()])
    assert_same([results[0]], [results[1]])
    np.testing.assert_array_equal(results[1][2], results[1][1] * np.float32(3.0))


def test_module_hooks_and_other_modules_take_the_module_path():
    fastmlp.manual_seed(0)
    model = make("seed001")
    x = fastmlp.rand(2, 1, 28, 28)
    assert model(x).grad_fn.name() == "MlpProgramBackward"
    calls = []
    handle = model[2].register_forward_hook(lambda m, a, out: calls.append(1))
    assert model(x).grad_fn.name() != "MlpProgramBackward" and calls == [1]
    handle.remove()
    assert model(x).grad_fn.name() == "MlpProgramBackward"
    with fastmlp.no_grad():
        assert model(x).grad_fn is None
    assert nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))(fastmlp.rand(3, 4)).grad_fn.name() != "MlpProgramBackward"
    assert nn.Sequential(nn.ReLU(), nn.Linear(4, 2))(fastmlp.rand(3, 4)).grad_fn.name() != "MlpProgramBackward"
    m64 = nn.Sequential(nn.Linear(4, 2)).double()
    assert m64(fastmlp.rand(3, 4).double()).grad_fn.name() != "MlpProgramBackward"
    m32 = nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(RuntimeError, match="same dtype"):  # float64 input: the module path and its error
        m32(fastmlp.rand(3, 4).double())
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        model(fastmlp.rand(2, 783))


@pytest.mark.parametrize("tie", ["module", "weight"])
def test_a_parameter_used_twice_gets_both_gradients(tie, monkeypatch):
    """A Linear repeated in the Sequential, or two Linears sharing a weight: the gradients of both
    uses add up, as on the module path (which such models take), and as an untied twin says."""
    x = fastmlp.tensor(np.random.default_rng(0).random((5, 8), dtype=np.float32))
    results = []
    for native in (False, True):
        monkeypatch.setattr(program_mod, "enabled", native)
        fastmlp.manual_seed(0)
        a = nn.Linear(8, 8)
        b = a if tie == "module" else nn.Linear(8, 8)
        if tie == "weight":
            b.weight = a.weight
        model = nn.Sequential(a, nn.ReLU(), b, nn.Tanh(), nn.Linear(8, 3))
        model(x).sum().backward()
        results.append([p.grad.numpy().copy() for p in model.parameters()])
    assert_same([results[0]], [results[1]])
    # the untied twin: the same values in separate parameters
    twin = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3))
    for src, dst in zip((model[0], model[2], model[4]), (twin[0], twin[2], twin[4])):
        dst.weight.data = src.weight.detach().clone()
        dst.bias.data = src.bias.detach().clone()
    twin(x).sum().backward()
    w_sum = twin[0].weight.grad.numpy() + twin[2].weight.grad.numpy()
    np.testing.assert_allclose(model[0].weight.grad.numpy(), w_sum, rtol=1e-6, atol=1e-7)
    if tie == "module":
        np.testing.assert_allclose(model[0].bias.grad.numpy(), twin[0].bias.grad.numpy() + twin[2].bias.grad.numpy(),
                                   rtol=1e-6, atol=1e-7)


def test_a_subclassed_activation_runs_its_own_forward():
    class DoubledReLU(nn.ReLU):
        def forward(self, input):
            return super().forward(input) * 2.0

    fastmlp.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4), DoubledReLU(), nn.Linear(4, 2))
    x = fastmlp.rand(3, 6)
    out = model(x)
    assert out.grad_fn.name() != "MlpProgramBackward"
    h = np.maximum(x.numpy() @ model[0].weight.detach().numpy().T + model[0].bias.detach().numpy(), 0) * 2
    ref = h @ model[2].weight.detach().numpy().T + model[2].bias.detach().numpy()
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-5, atol=1e-6)


def test_activation_settings_are_followed(monkeypatch):
    """GELU(approximate='tanh') is not the exact GELU of the epilogue, and a LeakyReLU's slope may
    change between calls: outputs match the module path every time."""
    fastmlp.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.GELU(approximate="tanh"), nn.Linear(5, 4), nn.LeakyReLU(0.1),
                          nn.Linear(4, 3))
    x = fastmlp.randn(4, 6)

    def both():
        monkeypatch.setattr(program_mod, "enabled", True)
        a = model(x)
        monkeypatch.setattr(program_mod, "enabled", False)
        b = model(x)
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
        return a

    assert both().grad_fn.name() != "MlpProgramBackward"  # tanh GELU: the module path
    model[1].approximate = "none"
    assert both().grad_fn.name() == "MlpProgramBackward"
    model[3].negative_slope = 0.3
    both()
    model[1].approximate = "tanh"
    assert both().grad_fn.name() != "MlpProgramBackward"
    # a Dropout's p changed after the chain was built
    dropped = make("dropout")
    monkeypatch.setattr(program_mod, "enabled", True)
    x = fastmlp.rand(64, 784)
    dropped(x)
    dropped[2].p = 0.9
    fastmlp.manual_seed(4)
    a = dropped(x).detach().numpy()
    monkeypatch.setattr(program_mod, "enabled", False)
    fastmlp.manual_seed(4)
    b = dropped(x).detach().numpy()
    np.testing.assert_array_equal(a, b)


def test_chain_follows_changes_to_the_model(monkeypatch):
    """Replacing a module, a parameter or a parameter's data, and changing dtype, all take effect."""
    fastmlp.manual_seed(0)
    model = make("seed001")
    x = fastmlp.rand(3, 1, 28, 28)
    model(x)
    model[3] = nn.Linear(64, 64)
    model[5].weight = nn.Parameter(fastmlp.zeros(64, 64))
    model[7].bias.data = fastmlp.ones(10) * 5.0
    out = model(x)
    assert out.grad_fn.name() == "MlpProgramBackward"
    monkeypatch.setattr(program_mod, "enabled", False)
    ref = model(x)
    np.testing.assert_array_equal(out.detach().numpy(), ref.detach().numpy())
    np.testing.assert_array_equal(out.detach().numpy()[:, 0], ref.detach().numpy()[:, 0])
    monkeypatch.setattr(program_mod, "enabled", True)
    model.double()
    assert model(x.double()).grad_fn.name() != "MlpProgramBackward"
    model.float()
    assert model(x).grad_fn.name() == "MlpProgramBackward"


def test_model_with_a_chain_deep_copies():
    fastmlp.manual_seed(0)
    model = make("dropout")
    x = fastmlp.rand(3, 784)
    model.eval()
    y = model(x).detach().numpy()
    other = copy.deepcopy(model)
    assert "_route" not in other.__dict__
    np.testing.assert_array_equal(other(x).detach().numpy(), y)
    other.train()
    assert other(x).grad_fn.name() == "MlpProgramBackward"


def _layer(W, b=None, dropout=0.0, **grads):
    return fastmlp._C.MlpLayer(W, b, 0, 0.0, dropout, **grads)


def _backward(c, tape, g, dW=None, db=None, need_dx=False):
    return c.backward(tape, g, [dW, db], [False, False], need_dx)


def test_program_native_checks():
    W = np.zeros((4, 3), np.float32)
    b = np.zeros(4, np.float32)
    c = fastmlp._C.MlpProgram([_layer(W, b)])
    tape = fastmlp._C.MlpTape()
    with pytest.raises(ValueError, match=r"x must be \[batch, 3\]"):
        c.forward(np.zeros((2, 5), np.float32), [], [], tape)
    with pytest.raises(TypeError, match="float32"):
        c.forward(np.zeros((2, 3)), [], [], tape)
    with pytest.raises(ValueError, match="not filled by this program"):
        _backward(c, tape, np.zeros((2, 4), np.float32))
    c.forward(np.ones((2, 3), np.float32), [], [], tape)
    with pytest.raises(ValueError, match=r"grad"):
        _backward(c, tape, np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"grads\[0\]"):
        _backward(c, tape, np.zeros((2, 4), np.float32), dW=np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="overlap"):
        _backward(c, tape, np.zeros((2, 4), np.float32), dW=W)
    y = c.forward(np.ones((2, 3), np.float32), [], [], tape)
    with pytest.raises(ValueError, match="overlap"):  # the output is what a ReLU's backward reads
        _backward(c, tape, np.zeros((2, 4), np.float32), db=y[0])
    with pytest.raises(ValueError, match="two entries per layer"):
        c.backward(tape, np.zeros((2, 4), np.float32), [], [], False)
    with pytest.raises(ValueError, match="dropout must be in"):
        fastmlp._C.MlpProgram([_layer(W, b, dropout=1.0)])
    with pytest.raises(ValueError, match="expects 5 inputs"):
        fastmlp._C.MlpProgram([_layer(W, b), _layer(np.zeros((2, 5), np.float32))])
    dx = _backward(c, tape, np.ones((2, 4), np.float32), need_dx=True)
    np.testing.assert_array_equal(dx, np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="no gradient buffers"):
        c.train_steps(np.ones((2, 3), np.float32), np.zeros(2, np.int64), [2], [], [])


def test_program_refuses_buffers_shared_across_layers():
    # a gradient buffer shared by two layers, or one layer's gradient written into another's
    # weights, would silently mix gradients and parameters
    W1, W2 = np.zeros((4, 3), np.float32), np.zeros((4, 4), np.float32)
    shared = np.zeros(16, np.float32)
    with pytest.raises(ValueError, match=r"layers\[0\].weight_grad.*layers\[1\].weight_grad"):
        fastmlp._C.MlpProgram([_layer(W1, weight_grad=shared[:12].reshape(4, 3)),
                               _layer(W2, weight_grad=shared.reshape(4, 4))])
    flat = np.zeros(12 + 16, np.float32)
    with pytest.raises(ValueError, match=r"layers\[1\].weight_grad.*layers\[0\].weight"):
        fastmlp._C.MlpProgram([_layer(flat[:12].reshape(4, 3), weight_grad=np.zeros((4, 3), np.float32)),
                               _layer(W2, weight_grad=flat[:16].reshape(4, 4))])


def test_tape_of_a_freed_program_is_refused_by_a_new_one():
    W = np.ones((4, 3), np.float32)
    tape = fastmlp._C.MlpTape()
    old = fastmlp._C.MlpProgram([_layer(W)])
    old.forward(np.ones((2, 3), np.float32), [], [], tape)
    del old
    for _ in range(20):  # new programs, some likely at the freed one's address
        new = fastmlp._C.MlpProgram([_layer(W)])
        with pytest.raises(ValueError, match="not filled by this program"):
            _backward(new, tape, np.zeros((2, 4), np.float32))


def test_train_step_takes_any_batch_size():
    # buffers grow on demand: no maximum batch fixed at construction
    rng = np.random.default_rng(0)
    W = rng.standard_normal((3, 5)).astype(np.float32)
    dW = np.zeros_like(W)
    c = fastmlp._C.MlpProgram([_layer(W, weight_grad=dW)])
    for batch in (2, 7, 1, 64):
        x = rng.standard_normal((batch, 5)).astype(np.float32)
        y = rng.integers(0, 3, batch)
        (loss,), (correct,) = c.train_steps(x, y, [batch], [], [])
        z = x.astype(np.float64) @ W.T.astype(np.float64)
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        np.testing.assert_allclose(loss, -np.log(p[np.arange(batch), y]).mean(), rtol=1e-5)
        p[np.arange(batch), y] -= 1
        np.testing.assert_allclose(dW, p.T @ x / batch, rtol=1e-4, atol=1e-6)
        assert correct == int((z.argmax(1) == y).sum())


@pytest.mark.parametrize("arch", ["seed001", "dropout", "mixed", "wide", "relu-last"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_no_grad_forward_runs_the_program_bitwise_like_the_modules(arch, mode, monkeypatch):
    # evaluation (no_grad) takes the native program too, with the module path's exact values
    calls = []
    real = program_mod.Route.__call__

    def counting(self, x):
        calls.append(1)
        return real(self, x)

    monkeypatch.setattr(program_mod.Route, "__call__", counting)
    x, _ = inputs(arch, np.random.default_rng(3), 33)
    outs = []
    for native in (False, True):
        monkeypatch.setattr(program_mod, "enabled", native)
        fastmlp.manual_seed(2)
        model = make(arch)
        model.train(mode == "train")
        with fastmlp.no_grad():
            out = model(fastmlp.tensor(x))
        assert out.grad_fn is None and not out.requires_grad
        outs.append(out.numpy())
    assert len(calls) == 1
    np.testing.assert_array_equal(outs[0], outs[1])


def test_modules_run_one_by_one_where_the_program_does_not(monkeypatch):
    # float64 parameters: the program refuses them and says why; the modules run one by one, with
    # the values and gradients of the path that never plans
    results = []
    for native in (False, True):
        monkeypatch.setattr(program_mod, "enabled", native)
        fastmlp.manual_seed(4)
        model = make("mixed").double().eval()
        x = fastmlp.tensor(np.random.default_rng(1).random((9, 784)), requires_grad=True)
        out = model(x)
        out.sum().backward()
        results.append([out.detach().numpy(), x.grad.numpy()] + [p.grad.numpy() for p in model.parameters()])
        if native:
            route = model.__dict__["_route"]
            assert route.program is None and not route.plan and "float64" in route.plan.reason
            assert "float64" in nn.explain(model)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_route_is_kept_across_changes_that_do_not_concern_it():
    # the route is rebuilt only when the model generation moves on or a parameter gets a new
    # array: a train() call that changes no mode, a new module elsewhere or an in-place
    # parameter update keep it; a mode change, a new Dropout p or a replaced layer do not
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Dropout(0.2), nn.Linear(5, 3))
    x = fastmlp.rand(4, 6)
    model(x)
    route = model.__dict__["_route"]
    model.train()
    nn.CrossEntropyLoss()
    nn.Linear(3, 3)
    with fastmlp.no_grad():
        model[0].weight.mul_(0.5)
    model(x)
    assert model.__dict__["_route"] is route
    for change in (lambda: model.eval(), lambda: setattr(model[2], "p", 0.3),
                   lambda: model.__setitem__(3, nn.Linear(5, 3)),
                   lambda: setattr(model[0].weight, "data", fastmlp.rand(5, 6))):
        change()
        model(x)
        assert model.__dict__["_route"] is not route
        route = model.__dict__["_route"]
    expected = model[3](model[2](model[1](model[0](x))))  # eval mode: dropout is the identity
    np.testing.assert_array_equal(model(x).detach().numpy(), expected.detach().numpy())
