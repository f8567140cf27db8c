"""fit's native training step (fastmlp.nn.program.TrainStep) equals the eager loop step for step
(bitwise, same kernels in the same order, same dropout masks), and refuses models it does not
cover."""
from __future__ import annotations

import numpy as np
import pytest

import fastmlp
from fastmlp import nn, optim
from fastmlp.nn.program import TrainStep


def make(arch: str):
    if arch == "seed001":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                             nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    if arch == "seed004":
        return nn.Sequential(nn.Linear(784, 96), nn.ReLU(), nn.Dropout(0.2), nn.Linear(96, 96), nn.ReLU(),
                             nn.Dropout(0.2), nn.Linear(96, 10))
    if arch == "mixed":
        return nn.Sequential(nn.Linear(784, 32), nn.GELU(), nn.Dropout(0.1), nn.Linear(32, 32, bias=False),
                             nn.LeakyReLU(0.05), nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 16), nn.Sigmoid(),
                             nn.Dropout(0.3), nn.Linear(16, 10))
    raise KeyError(arch)


class SlowAdam(optim.Adam):
    """A subclass: its step() is not assumed to be Adam's, so the fused step calls it."""

    def step(self, closure=None):
        self.calls = getattr(self, "calls", 0) + 1
        return super().step(closure)


OPTS = {"sgd": lambda p: optim.SGD(p, lr=0.05, momentum=0.9), "adam": lambda p: optim.Adam(p, lr=1e-3),
        "adamw": lambda p: optim.AdamW(p, lr=1e-3, weight_decay=0.01),
        "sgd-plain": lambda p: optim.SGD(p, lr=0.05),
        "sgd-nesterov-wd": lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
        "adam-amsgrad-max": lambda p: optim.Adam(p, lr=1e-3, amsgrad=True, maximize=True, weight_decay=1e-3),
        "subclass": lambda p: SlowAdam(p, lr=1e-3)}


@pytest.mark.parametrize("opt_name", list(OPTS))
@pytest.mark.parametrize("arch", ["seed001", "seed004", "mixed"])
@pytest.mark.parametrize("loss_kw", [{}, {"label_smoothing": 0.1}])
@pytest.mark.parametrize("held", [False, True], ids=["each", "held"])
def test_fused_step_equals_eager_step(arch, opt_name, loss_kw, held):
    rng = np.random.default_rng(0)
    batches = [(rng.random((b, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, b)) for b in (20, 20, 7, 20)]
    results = []
    for fused in (False, True):
        fastmlp.manual_seed(5)
        model = make(arch)
        opt = OPTS[opt_name](model.parameters())
        crit = nn.CrossEntropyLoss(**loss_kw)
        step = TrainStep.build(model, crit, opt) if fused else None
        assert (step is not None) == fused
        trace = []
        hold = step.hold() if fused and held else None
        if hold is not None:
            hold.__enter__()
        for i, (x, y) in enumerate(batches):
            if i == 2:  # a scheduler (or the user) changing the learning rate between steps
                if hold is not None:
                    step.flush()  # a held run must be flushed before anything else touches it
                opt.param_groups[0]["lr"] *= 0.5
            xt = fastmlp.tensor(x) if arch == "seed001" else fastmlp.tensor(x.reshape(len(x), -1))
            yt = fastmlp.tensor(y)
            if fused:
                loss, correct = step(xt, yt)
            else:
                opt.zero_grad()
                out = model(xt)
                loss_t = crit(out, yt)
                loss_t.backward()
                opt.step()
                loss = loss_t.item()
                correct = int((out.detach().numpy().argmax(1) == y).sum())
            trace.append((loss, correct, [p.detach().numpy().copy() for p in model.parameters()],
                          [p.grad.numpy().copy() for p in model.parameters()]))
        if hold is not None:
            hold.__exit__(None, None, None)
        results.append(trace)
        results[-1].append(opt.state_dict()["state"])
        if opt_name == "subclass":
            assert opt.calls == len(batches)
    s0, s1 = results[0].pop(), results[1].pop()  # optimizer state after the run, step counts included
    assert s0.keys() == s1.keys()
    for k in s0:
        assert s0[k].keys() == s1[k].keys()
        for name in s0[k]:
            np.testing.assert_array_equal(np.asarray(s0[k][name]), np.asarray(s1[k][name]))
    for (l0, c0, p0, g0), (l1, c1, p1, g1) in zip(*results):
        assert l0 == l1 and c0 == c1
        for a, b in zip(g0, g1):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(p0, p1):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("opt_name", ["adam", "sgd", "sgd-plain", "adam-amsgrad-max"])
def test_first_layer_update_in_threads_equals_eager_step(opt_name):
    """The first layer's gradient and update run in one parallel region over its rows (when the
    layer is big enough), or, for plain SGD, inside the weight gradient's GEMM: bitwise the eager
    step, whatever the thread count and row split. The 400-row batch makes that GEMM sum K in
    several blocks, of which only the last may step the weights."""
    rng = np.random.default_rng(1)
    batches = [(rng.random((b, 784), dtype=np.float32), rng.integers(0, 10, b)) for b in (10, 10, 3, 400)]
    previous = fastmlp.get_num_threads()
    runs = {}
    try:
        for threads in (1, 2, 3):
            fastmlp.set_num_threads(threads)
            for fused in (False, True):
                fastmlp.manual_seed(3)
                model = nn.Sequential(nn.Linear(784, 101), nn.ReLU(), nn.Linear(101, 10))
                opt = OPTS[opt_name](model.parameters())
                crit = nn.CrossEntropyLoss()
                step = TrainStep.build(model, crit, opt) if fused else None
                for x, y in batches:
                    xt, yt = fastmlp.tensor(x), fastmlp.tensor(y)
                    if fused:
                        step(xt, yt)
                    else:
                        opt.zero_grad()
                        crit(model(xt), yt).backward()
                        opt.step()
                runs[threads, fused] = [p.detach().numpy().copy() for p in model.parameters()] + \
                    [p.grad.numpy().copy() for p in model.parameters()]
    finally:
        fastmlp.set_num_threads(previous)
    reference = runs[1, False]
    for key, arrays in runs.items():
        for a, b in zip(reference, arrays):
            np.testing.assert_array_equal(a, b, err_msg=f"threads, fused = {key}")


def test_unsupported_models_fall_back():
    crit = nn.CrossEntropyLoss()
    m = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    assert TrainStep.build(m, crit, optim.SGD(m.parameters(), lr=0.1)) is None
    m = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2), nn.Softmax(dim=1))
    assert TrainStep.build(m, crit, optim.SGD(m.parameters(), lr=0.1)) is None
    m = nn.Sequential(nn.Linear(4, 2))
    assert TrainStep.build(m, nn.MSELoss(), optim.SGD(m.parameters(), lr=0.1)) is None
    assert TrainStep.build(m, nn.CrossEntropyLoss(reduction="sum"), optim.SGD(m.parameters(), lr=0.1)) is None
    m64 = nn.Sequential(nn.Linear(4, 2)).double()
    assert TrainStep.build(m64, crit, optim.SGD(m64.parameters(), lr=0.1)) is None
    other = nn.Linear(4, 2)
    assert TrainStep.build(m, crit, optim.SGD(other.parameters(), lr=0.1)) is None


def test_fused_step_checks_labels():
    m = nn.Sequential(nn.Linear(4, 3))
    step = TrainStep.build(m, nn.CrossEntropyLoss(), optim.SGD(m.parameters(), lr=0.1))
    with pytest.raises(IndexError, match=r"target\[1\] = 7 is out of range for 3 classes"):
        step(fastmlp.randn(2, 4), fastmlp.tensor([0, 7]))
    with pytest.raises(ValueError, match=r"x must be \[batch, 4\]"):
        step(fastmlp.randn(2, 5), fastmlp.tensor([0, 1]))


def test_optimizer_update_runs_inside_the_native_step(monkeypatch):
    """SGD/Adam/AdamW with one group: no separate optimizer.step() call, state kept as the eager step keeps it."""
    fastmlp.manual_seed(0)
    model = make("seed004")
    opt = optim.Adam(model.parameters(), lr=1e-3)
    step = TrainStep.build(model, nn.CrossEntropyLoss(), opt)
    monkeypatch.setattr(opt, "step", lambda *a: pytest.fail("optimizer.step() called"))
    x = fastmlp.rand(8, 784)
    y = fastmlp.randint(0, 10, (8,))
    for _ in range(3):
        step(x, y)
    assert all(opt.state[p]["step"] == 3 for p in model.parameters())
    assert set(opt.state_dict()["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}


def test_native_update_checks_its_buffers():
    fastmlp.manual_seed(0)
    model = make("seed004")
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    step = TrainStep.build(model, nn.CrossEntropyLoss(), opt)
    x = fastmlp.rand(4, 784)
    y = fastmlp.randint(0, 10, (4,))
    step(x, y)
    st = step.program
    xd, yd = x.numpy(), y.numpy()

    def bad(**fields):
        upd = opt._flat_update(opt.param_groups[0]).native()
        for k, v in fields.items():
            setattr(upd, k, v)
        st.train_steps(xd, yd, [4], [1, 1], [0, 0], update=upd)

    with pytest.raises(ValueError, match=r"'update.momentum_buffer' must have shape"):
        bad(momentum_buffer=np.zeros(5, np.float32))
    with pytest.raises(ValueError, match=r"'update.param' overlaps input 'update.momentum_buffer'"):
        bad(momentum_buffer=opt._flat_update(opt.param_groups[0]).param)
    with pytest.raises(ValueError, match="matching offsets"):
        bad(grad=opt._flat_update(opt.param_groups[0]).grad.copy())
    with pytest.raises(ValueError, match="needs update.momentum_buffer"):
        bad(momentum_buffer=None)
    with pytest.raises(ValueError, match="'sgd' or 'adam'"):
        bad(kind="lbfgs")
    with pytest.raises(TypeError, match="'update.exp_avg' must be a float32 numpy array; got None"):
        bad(kind="adam")  # an Adam update without its state buffers
    with pytest.raises(TypeError, match="update"):
        st.train_steps(xd, yd, [4], [1, 1], [0, 0], update=[1, 2])
    with pytest.raises(TypeError, match="update"):  # the Python form is converted by native()
        st.train_steps(xd, yd, [4], [1, 1], [0, 0], update=opt._flat_update(opt.param_groups[0]))


def test_flat_update_constructors_fill_the_fields_by_name():
    from fastmlp.optim.optimizer import FlatUpdate

    p, g, m, v, b = (np.zeros(3, np.float32) for _ in range(5))
    sgd = FlatUpdate.sgd(p, g, 0.1, 0.01, True, 0.9, 0.1, True, False, b)
    assert sgd == FlatUpdate("sgd", p, g, 0.1, 0.01, True, momentum=0.9, dampening=0.1, nesterov=True,
                             first_step=False, momentum_buffer=b)
    adam = FlatUpdate.adam(p, g, 1e-3, 0.01, False, 0.8, 0.99, 1e-6, 7, True, True, m, v, b)
    assert adam == FlatUpdate("adam", p, g, 1e-3, 0.01, False, beta1=0.8, beta2=0.99, eps=1e-6, step=7, amsgrad=True,
                              decoupled_weight_decay=True, exp_avg=m, exp_avg_sq=v, max_exp_avg_sq=b)
    assert type(sgd) is type(adam) is FlatUpdate and adam.step == 7 and sgd.momentum_buffer is b


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_flat_update_apply_passes_every_field_by_name(kind):
    # apply() unpacks the fields in declaration order: the result must be the kernel's with each
    # option given by name (distinct values, so any two fields swapped would show)
    from fastmlp.backend import for_array
    from fastmlp.optim.optimizer import FlatUpdate

    rng = np.random.default_rng(3)
    p, g, m, v, vmax = (rng.standard_normal(37).astype(np.float32) for _ in range(5))
    v, vmax = np.abs(v), np.abs(vmax) + 1.0
    if kind == "sgd":
        u = FlatUpdate.sgd(p.copy(), g, 0.1, 0.01, True, 0.9, 0.2, False, False, m.copy())
    else:
        u = FlatUpdate.adam(p.copy(), g, 1e-2, 0.03, True, 0.8, 0.95, 1e-3, 4, True, True, m.copy(), v.copy(),
                            vmax.copy())
    u.apply()
    ref = [p.copy(), m.copy(), v.copy(), vmax.copy()]
    be = for_array(p)
    if kind == "sgd":
        be.sgd_step([ref[0]], [g], [ref[1]], lr=0.1, momentum=0.9, dampening=0.2, weight_decay=0.01, nesterov=False,
                    maximize=True, first_step=False)
        got = [u.param, u.momentum_buffer]
    else:
        be.adam_step([ref[0]], [g], [ref[1]], [ref[2]], [ref[3]], lr=1e-2, beta1=0.8, beta2=0.95, eps=1e-3,
                     weight_decay=0.03, step=4, amsgrad=True, maximize=True, decoupled=True)
        got = [u.param, u.exp_avg, u.exp_avg_sq, u.max_exp_avg_sq]
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(u.param, p)


def test_update_next_is_the_following_step():
    model = make("seed004")
    x, y = fastmlp.rand(4, 784), fastmlp.randint(0, 10, (4,))
    opt = optim.Adam(model.parameters())
    TrainStep.build(model, nn.CrossEntropyLoss(), opt)(x, y)
    u = opt._flat_update(opt.param_groups[0])
    n = u.next()
    assert (u.step, n.step, u.after(3).step) == (2, 3, 5) and n.lr == u.lr == 1e-3 and n.param is u.param
    native = u.native()
    assert (native.kind, native.step, native.next().step, native.next(3).step, native.lr) == ("adam", 2, 3, 5, 1e-3)
    assert native.exp_avg is u.exp_avg and native.max_exp_avg_sq is None
    s = fastmlp._C.MlpUpdate()
    s.kind, s.first_step, s.momentum, s.lr = "sgd", True, 0.9, 0.1
    sn = s.next()
    assert s.first_step and not sn.first_step and (sn.momentum, sn.lr, sn.kind) == (0.9, 0.1, "sgd")


def test_train_steps_checks_its_batches():
    fastmlp.manual_seed(0)
    model = make("seed004")  # two dropout layers
    step = TrainStep.build(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1))
    x, y = fastmlp.rand(6, 784), fastmlp.randint(0, 10, (6,))
    step(x[:4], y[:4])
    st = step.program
    xd, yd = x.numpy(), y.numpy()
    with pytest.raises(ValueError, match=r"sizes must add up to the rows of x \(6\)"):
        st.train_steps(xd, yd, [3, 2], [1] * 4, [0] * 4)
    with pytest.raises(ValueError, match="batch 1 has 0 rows; x has 6"):
        st.train_steps(xd, yd, [4, 0, 2], [1] * 6, [0] * 6)
    with pytest.raises(ValueError, match="batch 0 has 7 rows; x has 6"):
        st.train_steps(xd, yd, [7], [1] * 2, [0] * 2)
    with pytest.raises(ValueError, match=r"batch 0 has 4611686018427387904 rows; x has 6"):
        st.train_steps(xd, yd, [2**62, 2**62], [1] * 4, [0] * 4)  # no overflow in the sum
    with pytest.raises(ValueError, match=r"sizes must add up to the rows of x \(6\)"):
        st.train_steps(xd, yd, [5, 5, -4], [1] * 6, [0] * 6)
    with pytest.raises(ValueError, match=r"per dropout layer \(2\) and step \(2\); got 2 and 2"):
        st.train_steps(xd, yd, [3, 3], [1] * 2, [0] * 2)
    bad = yd.copy()
    bad[5] = 10
    with pytest.raises(IndexError, match=r"target\[5\] = 10 is out of range"):
        st.train_steps(xd, bad, [3, 3], [1] * 4, [0] * 4)
    losses, correct = st.train_steps(xd, yd, [3, 3], [1] * 4, [0] * 4)
    assert losses.shape == (2,) and correct.shape == (2,) and np.isfinite(losses).all()
