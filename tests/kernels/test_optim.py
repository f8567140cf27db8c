"""Multi-tensor optimizer steps (fastmlp._C.sgd_step / adam_step).

Checked against the update formulas written out below in float64 NumPy, against
the naive reference kernels, and against torch.optim.SGD / Adam / AdamW, on every
kernel set and thread count, with tensors of very different sizes in one call.
"""
from __future__ import annotations

import itertools
import platform
from typing import Optional

import numpy as np
import pytest

from fastmlp import _C

# Sizes 0/1, odd, around SIMD widths, a prime count (1031), and enough elements in
# total (> 64k) for both steps to split across threads, the split falling inside
# a tensor.
SHAPES = [(1,), (7,), (17,), (0,), (63,), (65,), (784,), (13, 17), (1031,), (257, 263)]
# The parameters of a 784-512-512-10 MLP (Linear weights are [out, in]).
MLP = [(512, 784), (512,), (512, 512), (512,), (10, 512), (10,)]
STEPS = 5

# The SIMD kernel sets perform the reference's float32 operations in the same
# order (no fused multiply-add), so on x86-64 they agree with it bit for bit.
EXACT = platform.machine().lower() in ("x86_64", "amd64")

SGD_CONFIGS = [
    dict(momentum=m, dampening=d, nesterov=n, weight_decay=wd, maximize=mx)
    for m, d, n, wd, mx in itertools.product([0.0, 0.9], [0.0, 0.25], [False, True], [0.0, 0.01], [False, True])
    if not n or (m != 0.0 and d == 0.0)
]
ADAM_CONFIGS = [
    dict(weight_decay=wd, decoupled=dec, amsgrad=ams, maximize=mx)
    for wd, dec, ams, mx in itertools.product([0.0, 0.1], [False, True], [False, True], [False, True])
]


def config_id(cfg: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in cfg.items())


# ---- float64 formulas (torch.optim documentation) ----------------------------------


def sgd_f64(p: np.ndarray, g: np.ndarray, buf: Optional[np.ndarray], lr: float, momentum: float,
            dampening: float, weight_decay: float, nesterov: bool, maximize: bool,
            first: bool) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """One torch.optim.SGD step in float64; returns the new (param, momentum buffer)."""
    d = -g if maximize else g.copy()
    if weight_decay != 0:
        d = d + weight_decay * p
    if momentum != 0:
        buf = d.copy() if first else momentum * buf + (1 - dampening) * d
        d = d + momentum * buf if nesterov else buf
    return p - lr * d, buf


def adam_f64(p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, vmax: Optional[np.ndarray],
             lr: float, beta1: float, beta2: float, eps: float, weight_decay: float, step: int,
             amsgrad: bool, maximize: bool, decoupled: bool):
    """One torch.optim.Adam / AdamW step in float64; returns the new (p, m, v, vmax)."""
    g = -g if maximize else g
    if weight_decay != 0:
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    if amsgrad:
        vmax = np.maximum(vmax, v)
    bc1 = 1 - beta1**step
    bc2 = 1 - beta2**step
    denom = np.sqrt(vmax if amsgrad else v) / np.sqrt(bc2) + eps
    return p - lr / bc1 * m / denom, m, v, vmax


# ---- helpers -----------------------------------------------------------------------


def tensors(rng: np.random.Generator, shapes, scale: float = 1.0, positive: bool = False) -> list[np.ndarray]:
    out = []
    for s in shapes:
        x = rng.standard_normal(s) * scale
        out.append((np.abs(x) if positive else x).astype(np.float32))
    return out


def grads_for(rng: np.random.Generator, shapes) -> list[np.ndarray]:
    """Random gradients with a few exact zeros (0 / (0 + eps) must stay 0)."""
    gs = tensors(rng, shapes)
    for g in gs:
        g.reshape(-1)[::11] = 0.0
    return gs


def copies(xs: list[np.ndarray]) -> list[np.ndarray]:
    return [x.copy() for x in xs]


def assert_close(actual: list[np.ndarray], expected: list, rtol: float, atol: float, what: str) -> None:
    for i, (a, e) in enumerate(zip(actual, expected)):
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=f"{what}[{i}] {a.shape}")


def assert_same(actual: list[np.ndarray], expected: list[np.ndarray], what: str) -> None:
    """Bitwise equal on x86-64; within 1e-6 relative (fused multiply-adds) elsewhere."""
    for i, (a, e) in enumerate(zip(actual, expected)):
        if EXACT:
            np.testing.assert_array_equal(a, e, err_msg=f"{what}[{i}] {a.shape}")
        else:
            np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-7, err_msg=f"{what}[{i}] {a.shape}")


def on_isa(name: str, fn):
    """Run fn() with kernel set `name`, then switch back."""
    previous = _C.isa()
    _C.set_isa(name)
    try:
        return fn()
    finally:
        _C.set_isa(previous)


Arrays = list[np.ndarray]


def run_sgd(params: Arrays, grads_per_step: list[Arrays], bufs: Optional[Arrays], lr: float, cfg: dict) -> None:
    """fastmlp SGD steps in place, one per list of gradients (the first initialises the buffers)."""
    for k, grads in enumerate(grads_per_step):
        _C.sgd_step(params, grads, bufs, lr, cfg["momentum"], cfg["dampening"], cfg["weight_decay"],
                    cfg["nesterov"], cfg["maximize"], k == 0)


def run_adam(params: Arrays, grads_per_step: list[Arrays], ms: Arrays, vs: Arrays, vmaxs: Optional[Arrays],
             lr: float, beta1: float, beta2: float, eps: float, cfg: dict, first_step: int = 1) -> None:
    """fastmlp Adam / AdamW steps in place, counting from `first_step`."""
    for k, grads in enumerate(grads_per_step):
        _C.adam_step(params, grads, ms, vs, vmaxs, lr, beta1, beta2, eps, cfg["weight_decay"], first_step + k,
                     cfg["amsgrad"], cfg["maximize"], cfg["decoupled"])


# ---- SGD -----------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", SGD_CONFIGS, ids=config_id)
def test_sgd_matches_float64_and_reference(isa, threads, rng, cfg):
    lr = 0.05
    p0 = tensors(rng, SHAPES)
    grads_per_step = [grads_for(rng, SHAPES) for _ in range(STEPS)]
    # NaN buffers: the first step must overwrite them, never read them.
    nan_bufs = [np.full(s, np.nan, np.float32) for s in SHAPES]

    params, bufs = copies(p0), copies(nan_bufs)
    run_sgd(params, grads_per_step, bufs if cfg["momentum"] else None, lr, cfg)

    ref_p, ref_b = copies(p0), copies(nan_bufs)
    on_isa("reference", lambda: run_sgd(ref_p, grads_per_step, ref_b if cfg["momentum"] else None, lr, cfg))
    assert_same(params, ref_p, "params")
    assert_same(bufs, ref_b, "momentum_buffers")

    exp_p = [p.astype(np.float64) for p in p0]
    exp_b: list = [None] * len(SHAPES)
    for k, grads in enumerate(grads_per_step):
        for i, g in enumerate(grads):
            exp_p[i], exp_b[i] = sgd_f64(exp_p[i], g.astype(np.float64), exp_b[i], lr, cfg["momentum"],
                                         cfg["dampening"], cfg["weight_decay"], cfg["nesterov"],
                                         cfg["maximize"], k == 0)
    # float32 state rounds at every step; values are O(1).
    assert_close(params, exp_p, rtol=1e-5, atol=1e-6, what="params")
    if cfg["momentum"]:
        assert_close(bufs, exp_b, rtol=1e-5, atol=1e-6, what="momentum_buffers")
    else:
        assert all(np.isnan(b).all() for b in bufs), "buffers must be untouched without momentum"


def test_sgd_leaves_grads_alone(isa, rng):
    params = tensors(rng, SHAPES)
    grads = grads_for(rng, SHAPES)
    before = copies(grads)
    _C.sgd_step(params, grads, copies(params), 0.1, 0.9, 0.0, 0.01, True, True, True)
    assert_same(grads, before, "grads")


def test_sgd_plain_is_p_minus_lr_g(isa, threads, rng):
    shapes = [(300, 301), (3,)]  # large enough for two threads
    params = tensors(rng, shapes)
    grads = grads_for(rng, shapes)
    expected = [p - np.float32(0.125) * g for p, g in zip(params, grads)]  # exact in float32 arithmetic
    _C.sgd_step(params, grads, None, 0.125)
    assert_same(params, expected, "params")


# ---- Adam / AdamW ------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", ADAM_CONFIGS, ids=config_id)
def test_adam_matches_float64_and_reference(isa, threads, rng, cfg):
    lr, beta1, beta2, eps = 1e-2, 0.9, 0.99, 1e-8
    p0 = tensors(rng, SHAPES)
    m0 = tensors(rng, SHAPES, 0.1)
    v0 = tensors(rng, SHAPES, 0.01, positive=True)
    vmax0 = [v + np.float32(0.02) * tensors(rng, [v.shape], positive=True)[0] for v in v0]
    grads_per_step = [grads_for(rng, SHAPES) for _ in range(STEPS)]

    state = [copies(p0), copies(m0), copies(v0), copies(vmax0)]
    run_adam(state[0], grads_per_step, state[1], state[2], state[3] if cfg["amsgrad"] else None,
             lr, beta1, beta2, eps, cfg)

    ref = [copies(p0), copies(m0), copies(v0), copies(vmax0)]
    on_isa("reference", lambda: run_adam(ref[0], grads_per_step, ref[1], ref[2],
                                         ref[3] if cfg["amsgrad"] else None, lr, beta1, beta2, eps, cfg))
    for name, a, r in zip(["params", "exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs"], state, ref):
        assert_same(a, r, name)

    exp = [[x.astype(np.float64) for x in xs] for xs in (p0, m0, v0, vmax0)]
    for k, grads in enumerate(grads_per_step):
        for i, g in enumerate(grads):
            exp[0][i], exp[1][i], exp[2][i], vm = adam_f64(
                exp[0][i], g.astype(np.float64), exp[1][i], exp[2][i], exp[3][i], lr, beta1, beta2, eps,
                cfg["weight_decay"], k + 1, cfg["amsgrad"], cfg["maximize"], cfg["decoupled"])
            if cfg["amsgrad"]:
                exp[3][i] = vm
    assert_close(state[0], exp[0], rtol=1e-5, atol=1e-6, what="params")
    assert_close(state[1], exp[1], rtol=1e-5, atol=1e-6, what="exp_avgs")
    assert_close(state[2], exp[2], rtol=1e-5, atol=0, what="exp_avg_sqs")
    assert_close(state[3], exp[3], rtol=1e-5, atol=0, what="max_exp_avg_sqs")


@pytest.mark.parametrize("decoupled", [False, True], ids=["adam", "adamw"])
def test_adam_late_steps_and_other_hyperparameters(isa, threads, rng, decoupled):
    """Steps 1000-1002 (bias corrections near 1), betas (0.5, 0.9), a large eps."""
    cfg = dict(weight_decay=0.05, decoupled=decoupled, amsgrad=True, maximize=False)
    lr, beta1, beta2, eps = 3e-3, 0.5, 0.9, 1e-3
    p = tensors(rng, SHAPES)
    m = tensors(rng, SHAPES, 0.1)
    v = tensors(rng, SHAPES, 0.01, positive=True)
    vmax = copies(v)
    grads_per_step = [grads_for(rng, SHAPES) for _ in range(3)]
    exp = [[x.astype(np.float64) for x in xs] for xs in (p, m, v, vmax)]
    run_adam(p, grads_per_step, m, v, vmax, lr, beta1, beta2, eps, cfg, first_step=1000)
    for k, grads in enumerate(grads_per_step):
        for i, g in enumerate(grads):
            exp[0][i], exp[1][i], exp[2][i], exp[3][i] = adam_f64(
                exp[0][i], g.astype(np.float64), exp[1][i], exp[2][i], exp[3][i], lr, beta1, beta2, eps,
                cfg["weight_decay"], 1000 + k, True, False, decoupled)
    assert_close(p, exp[0], rtol=1e-5, atol=1e-6, what="params")
    assert_close(vmax, exp[3], rtol=1e-5, atol=0, what="max_exp_avg_sqs")


TINY = np.finfo(np.float32).tiny  # the smallest normal float32, about 1.18e-38


def denormal_case(rng: np.random.Generator, n: int = 70_000) -> tuple[Arrays, ...]:
    """One tensor of n elements (enough to split across threads) whose state and gradients
    are sprinkled with denormals, zeros and normal values, as a first layer's are late in
    training: m decays towards zero wherever the gradient is 0."""
    p = (rng.standard_normal(n) * 0.05).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    m = (rng.standard_normal(n) * 0.01).astype(np.float32)
    v = ((np.abs(rng.standard_normal(n)) + 0.5) * 1e-4).astype(np.float32)
    kind = rng.integers(0, 4, n)
    m[kind == 0] = (rng.uniform(-1, 1, (kind == 0).sum()) * TINY).astype(np.float32)  # denormal m
    g[kind <= 1] = 0.0
    g[kind == 2] = (rng.uniform(-1, 1, (kind == 2).sum()) * TINY * 0.5).astype(np.float32)  # denormal g
    return [p], [g], [m], [v]


def test_adam_flushes_denormals_like_the_reference(isa, threads, rng):
    """Adam runs with denormals flushed to zero (see common/adam.h), every kernel set alike:
    state below FLT_MIN becomes 0, and the parameters still follow the float64 update."""
    p0, g, m0, v0 = denormal_case(rng)
    assert np.any((m0[0] != 0) & (np.abs(m0[0]) < TINY))  # the case really has denormals
    cfg = dict(weight_decay=0.0, decoupled=False, amsgrad=False, maximize=False)
    p, m, v = copies(p0), copies(m0), copies(v0)
    run_adam(p, [g, g], m, v, None, 1e-3, 0.9, 0.999, 1e-8, cfg, first_step=300)
    rp, rm, rv = copies(p0), copies(m0), copies(v0)
    on_isa("reference", lambda: run_adam(rp, [g, g], rm, rv, None, 1e-3, 0.9, 0.999, 1e-8, cfg, first_step=300))
    assert_same(p, rp, "params")
    assert_same(m, rm, "exp_avgs")
    assert_same(v, rv, "exp_avg_sqs")
    if EXACT:
        for x in m + v:
            assert not np.any((x != 0) & (np.abs(x) < TINY)), "a denormal survived the flush"
    exp = [x.astype(np.float64) for x in (p0[0], m0[0], v0[0])]
    b1, b2 = float(np.float32(0.9)), float(np.float32(0.999))  # the kernel's float32 betas
    for k in range(2):
        exp[0], exp[1], exp[2], _ = adam_f64(exp[0], g[0].astype(np.float64), exp[1], exp[2], None, 1e-3, b1, b2,
                                             1e-8, 0.0, 300 + k, False, False, False)
    np.testing.assert_allclose(p[0], exp[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m[0], exp[1], rtol=1e-5, atol=1e-6)  # as above: g - m cancels
    np.testing.assert_allclose(v[0], exp[2], rtol=1e-5, atol=2 * TINY)


def test_adam_restores_the_float_mode_of_every_thread(isa, rng):
    """After a two-thread Adam step, denormal results are back on every thread: a
    two-thread GEMM whose products are all denormal still returns them, as NumPy does."""
    previous = _C.get_num_threads()
    try:
        _C.set_num_threads(2)
        p, g, m, v = denormal_case(rng)
        _C.adam_step(p, g, m, v, None, 1e-3, 0.9, 0.999, 1e-8, 0.0, 10)
        a = np.full((256, 64), 1e-20, np.float32)
        b = np.full((64, 256), 1e-21, np.float32)
        c = np.zeros((256, 256), np.float32)
        _C.gemm(a, b, c)  # split across both threads
        assert np.float32(1e-39) * np.float32(0.5) != 0  # this thread, through NumPy
        expected = a.astype(np.float64) @ b.astype(np.float64)
        assert np.all(expected < TINY)
        # Flushed results would be 0; denormals carry few digits, hence the loose tolerance.
        np.testing.assert_allclose(c, expected, rtol=1e-2, atol=0)
    finally:
        _C.set_num_threads(previous)


def test_mlp_parameters_in_one_call(isa, threads, rng):
    """All six tensors of a 784-512-512-10 MLP, sizes 10 to 401408, in one call."""
    cfg = dict(weight_decay=0.01, decoupled=True, amsgrad=False, maximize=False)
    p0 = tensors(rng, MLP, 0.05)
    grads_per_step = [grads_for(rng, MLP) for _ in range(2)]
    p, m, v = copies(p0), [np.zeros(s, np.float32) for s in MLP], [np.zeros(s, np.float32) for s in MLP]
    run_adam(p, grads_per_step, m, v, None, 1e-3, 0.9, 0.999, 1e-8, cfg)
    rp, rm, rv = copies(p0), [np.zeros(s, np.float32) for s in MLP], [np.zeros(s, np.float32) for s in MLP]
    on_isa("reference", lambda: run_adam(rp, grads_per_step, rm, rv, None, 1e-3, 0.9, 0.999, 1e-8, cfg))
    assert_same(p, rp, "params")
    assert_same(m, rm, "exp_avgs")
    assert_same(v, rv, "exp_avg_sqs")
    # After two steps from zero state, each element moved by at most about 2·lr.
    for a, b in zip(p, p0):
        assert np.max(np.abs(a - b)) < 2.1e-3


def test_every_thread_count_gives_identical_results(isa, rng, on_threads):
    """1 to 4 threads: more than this machine may have cores, so that threads take
    over each other's chunks, and runs that end inside tensors of every size."""
    shapes = MLP + [(3,), (1,), (33, 17)]
    p0 = tensors(rng, shapes)
    grads = grads_for(rng, shapes)
    cfg = dict(weight_decay=0.1, decoupled=False, amsgrad=True, maximize=True)

    def run(t):
        p, m, v, vm = copies(p0), copies(p0), [x * x for x in p0], [x * x for x in p0]
        run_adam(p, [grads, grads], m, v, vm, 1e-3, 0.9, 0.999, 1e-8, cfg)
        b = copies(p0)
        _C.sgd_step(p, grads, b, 0.1, 0.9, 0.1, 0.01, False, False, False)
        return p + m + v + vm + b

    results = on_threads((1, 2, 3, 4), run)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def test_empty_lists_and_empty_tensors(isa):
    _C.sgd_step([], [], None, 0.1)
    _C.adam_step([], [], [], [], None, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1)
    e = [np.zeros((0, 5), np.float32)]
    _C.adam_step(e, copies(e), copies(e), copies(e), copies(e), 1e-3, 0.9, 0.999, 1e-8, 0.1, 1, True)


def test_grads_may_share_memory(isa, rng):
    """Only outputs must be disjoint: one gradient array may serve two parameters."""
    params = tensors(rng, [(5,), (5,)])
    g = grads_for(rng, [(5,)])[0]
    expected = [p - np.float32(0.5) * g for p in params]
    _C.sgd_step(params, [g, g], None, 0.5)
    assert_same(params, expected, "params")


def test_views_of_one_flat_buffer(isa, rng):
    """Parameters carved out of one allocation (adjacent, not overlapping) are accepted."""
    flat = rng.standard_normal(40).astype(np.float32)
    gflat = rng.standard_normal(40).astype(np.float32)
    mflat, vflat = np.zeros(40, np.float32), np.zeros(40, np.float32)
    cut = [(0, 7), (7, 30), (30, 40)]

    def views(a: np.ndarray) -> list[np.ndarray]:
        return [a[i:j] for i, j in cut]

    expected = flat.copy()
    on_isa("reference", lambda: _C.adam_step([expected], [gflat], [np.zeros(40, np.float32)],
                                             [np.zeros(40, np.float32)], None, 1e-2, 0.9, 0.999, 1e-8, 0.0, 1))
    _C.adam_step(views(flat), views(gflat), views(mflat), views(vflat), None, 1e-2, 0.9, 0.999, 1e-8, 0.0, 1)
    assert_same([flat], [expected], "params")


# ---- against PyTorch ---------------------------------------------------------------------

TORCH_SHAPES = [(1,), (7,), (65,), (33, 31)]


@pytest.mark.parametrize("cfg", SGD_CONFIGS, ids=config_id)
def test_sgd_matches_torch(isa, threads, rng, cfg):
    torch = pytest.importorskip("torch")
    lr = 0.05
    p0 = tensors(rng, TORCH_SHAPES)
    grads_per_step = [grads_for(rng, TORCH_SHAPES) for _ in range(STEPS)]
    tp = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in p0]
    opt = torch.optim.SGD(tp, lr=lr, **cfg)
    for grads in grads_per_step:
        for t, g in zip(tp, grads):
            t.grad = torch.from_numpy(g.copy())
        opt.step()
    params = copies(p0)
    run_sgd(params, grads_per_step, [np.empty(s, np.float32) for s in TORCH_SHAPES], lr, cfg)
    assert_close(params, [t.detach().numpy() for t in tp], rtol=1e-5, atol=1e-6, what="params")


@pytest.mark.parametrize("cfg", ADAM_CONFIGS, ids=config_id)
def test_adam_matches_torch(isa, threads, rng, cfg):
    torch = pytest.importorskip("torch")
    lr, beta1, beta2, eps = 1e-2, 0.9, 0.999, 1e-8
    p0 = tensors(rng, TORCH_SHAPES)
    grads_per_step = [grads_for(rng, TORCH_SHAPES) for _ in range(STEPS)]
    tp = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in p0]
    cls = torch.optim.AdamW if cfg["decoupled"] else torch.optim.Adam
    opt = cls(tp, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=cfg["weight_decay"],
              amsgrad=cfg["amsgrad"], maximize=cfg["maximize"])
    for grads in grads_per_step:
        for t, g in zip(tp, grads):
            t.grad = torch.from_numpy(g.copy())
        opt.step()
    params = copies(p0)

    def zeros() -> list[np.ndarray]:
        return [np.zeros(s, np.float32) for s in TORCH_SHAPES]

    run_adam(params, grads_per_step, zeros(), zeros(), zeros() if cfg["amsgrad"] else None,
             lr, beta1, beta2, eps, cfg)
    assert_close(params, [t.detach().numpy() for t in tp], rtol=1e-5, atol=1e-6, what="params")
    state = [opt.state[t] for t in tp]
    assert int(state[0]["step"]) == STEPS


# ---- bad input -----------------------------------------------------------------------------


def f32(*shape: int) -> np.ndarray:
    return np.zeros(shape, np.float32)


def adam(params, grads, m=None, v=None, vmax=None, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, wd=0.0,
         step=1, amsgrad=False, decoupled=False):
    m = [np.zeros_like(p) for p in params] if m is None else m
    v = [np.zeros_like(p) for p in params] if v is None else v
    return _C.adam_step(params, grads, m, v, vmax, lr, beta1, beta2, eps, wd, step, amsgrad, False, decoupled)


class TestBadInput:
    def test_mismatched_list_lengths(self):
        with pytest.raises(ValueError, match=r"sgd_step: 'grads' has 1 tensors but 'params' has 2"):
            _C.sgd_step([f32(3), f32(3)], [f32(3)], None, 0.1)
        with pytest.raises(ValueError, match=r"adam_step: 'exp_avg_sqs' has 3 tensors but 'params' has 2"):
            adam([f32(3), f32(4)], [f32(3), f32(4)], v=[f32(3), f32(4), f32(5)])
        with pytest.raises(ValueError, match=r"'momentum_buffers' has 0 tensors but 'params' has 1"):
            _C.sgd_step([f32(3)], [f32(3)], [], 0.1, 0.9)

    def test_grad_shape_differs_from_param(self):
        with pytest.raises(ValueError, match=r"sgd_step: grads\[1\] has shape \[4\] but params\[1\] has \[2, 2\]"):
            _C.sgd_step([f32(3), f32(2, 2)], [f32(3), f32(4)], None, 0.1)
        with pytest.raises(ValueError, match=r"adam_step: exp_avgs\[0\] has shape \[3, 1\] but params\[0\] has \[3\]"):
            adam([f32(3)], [f32(3)], m=[f32(3, 1)])

    def test_float64(self):
        with pytest.raises(TypeError, match=r"sgd_step: argument 'params\[0\]' must be a float32 array; "
                                            r"got float64 \[3\]"):
            _C.sgd_step([np.zeros(3)], [f32(3)], None, 0.1)
        with pytest.raises(TypeError, match=r"adam_step: argument 'grads\[1\]' must be a float32 array; "
                                            r"got float64 \[2\]"):
            adam([f32(3), f32(2)], [f32(3), np.zeros(2)])

    def test_not_a_list(self):
        with pytest.raises(TypeError, match=r"sgd_step: argument 'params' must be a list of float32 arrays; "
                                            r"got float32 \[3\]"):
            _C.sgd_step(f32(3), [f32(3)], None, 0.1)
        with pytest.raises(TypeError, match=r"argument 'grads\[0\]' must be a float32 numpy array; got list"):
            _C.sgd_step([f32(3)], [[0.0, 0.0, 0.0]], None, 0.1)

    def test_non_contiguous(self):
        with pytest.raises(ValueError, match=r"sgd_step: argument 'grads\[0\]' must be C-contiguous"):
            _C.sgd_step([f32(4)], [f32(4, 4)[:, 1]], None, 0.1)
        with pytest.raises(ValueError, match=r"adam_step: argument 'params\[0\]' must be C-contiguous"):
            adam([f32(4, 4).T], [f32(4, 4)])

    def test_read_only_params(self):
        p = f32(3)
        p.setflags(write=False)
        with pytest.raises(ValueError, match=r"sgd_step: argument 'params\[0\]' is an output and must be writable"):
            _C.sgd_step([p], [f32(3)], None, 0.1)
        with pytest.raises(ValueError, match=r"adam_step: argument 'params\[0\]' is an output and must be writable"):
            adam([p], [f32(3)])

    def test_read_only_state(self):
        m = f32(3)
        m.setflags(write=False)
        with pytest.raises(ValueError, match=r"argument 'exp_avgs\[0\]' is an output and must be writable"):
            adam([f32(3)], [f32(3)], m=[m])

    def test_grad_aliasing_a_param(self):
        p = f32(5)
        with pytest.raises(ValueError, match=r"sgd_step: output 'params\[0\]' overlaps input 'grads\[0\]' "
                                            r"\(in-place is not supported here\)"):
            _C.sgd_step([p], [p], None, 0.1)
        a, b = f32(4), f32(4)
        with pytest.raises(ValueError, match=r"adam_step: output 'params\[1\]' overlaps input 'grads\[0\]'"):
            adam([a, b], [b, f32(4)])

    def test_outputs_overlapping_each_other(self):
        buf = f32(10)
        with pytest.raises(ValueError, match=r"adam_step: output 'params\[0\]' overlaps input 'exp_avgs\[1\]' "
                                            r"\(partial overlap\)"):
            adam([buf[:6], f32(4)], [f32(6), f32(4)], m=[f32(6), buf[5:9]])
        p = f32(3)
        with pytest.raises(ValueError, match=r"sgd_step: output 'params\[0\]' overlaps input 'params\[1\]'"):
            _C.sgd_step([p, p], [f32(3), f32(3)], None, 0.1)
        with pytest.raises(ValueError, match=r"output 'exp_avgs\[0\]' overlaps input 'exp_avg_sqs\[0\]'"):
            m = f32(3)
            adam([f32(3)], [f32(3)], m=[m], v=[m])

    def test_negative_lr(self):
        with pytest.raises(ValueError, match=r"sgd_step: invalid learning rate: -0.1"):
            _C.sgd_step([f32(3)], [f32(3)], None, -0.1)
        with pytest.raises(ValueError, match=r"adam_step: invalid learning rate: -0.001"):
            adam([f32(3)], [f32(3)], lr=-1e-3)
        with pytest.raises(ValueError, match=r"adam_step: invalid learning rate: nan"):
            adam([f32(3)], [f32(3)], lr=float("nan"))

    def test_betas_out_of_range(self):
        with pytest.raises(ValueError, match=r"adam_step: invalid beta parameter at index 0: 1"):
            adam([f32(3)], [f32(3)], beta1=1.0)
        with pytest.raises(ValueError, match=r"invalid beta parameter at index 1: 1.5"):
            adam([f32(3)], [f32(3)], beta2=1.5)
        with pytest.raises(ValueError, match=r"invalid beta parameter at index 0: -0.5"):
            adam([f32(3)], [f32(3)], beta1=-0.5)

    def test_other_hyperparameters(self):
        with pytest.raises(ValueError, match=r"invalid epsilon value: -1e-08"):
            adam([f32(3)], [f32(3)], eps=-1e-8)
        with pytest.raises(ValueError, match=r"invalid weight_decay value: -0.1"):
            adam([f32(3)], [f32(3)], wd=-0.1)
        with pytest.raises(ValueError, match=r"invalid step \(must be >= 1\): 0"):
            adam([f32(3)], [f32(3)], step=0)
        with pytest.raises(ValueError, match=r"sgd_step: invalid momentum value: -0.9"):
            _C.sgd_step([f32(3)], [f32(3)], [f32(3)], 0.1, -0.9)

    def test_amsgrad_without_max_exp_avg_sqs(self):
        with pytest.raises(ValueError, match=r"adam_step: amsgrad=True needs 'max_exp_avg_sqs'"):
            adam([f32(3)], [f32(3)], amsgrad=True)
        with pytest.raises(ValueError, match=r"'max_exp_avg_sqs' has 0 tensors but 'params' has 1"):
            adam([f32(3)], [f32(3)], vmax=[], amsgrad=True)

    def test_momentum_without_buffers(self):
        with pytest.raises(ValueError, match=r"sgd_step: momentum != 0 needs 'momentum_buffers'"):
            _C.sgd_step([f32(3)], [f32(3)], None, 0.1, 0.9)

    def test_nesterov_needs_momentum_and_no_dampening(self):
        with pytest.raises(ValueError, match=r"Nesterov momentum requires a momentum and zero dampening"):
            _C.sgd_step([f32(3)], [f32(3)], [f32(3)], 0.1, 0.9, 0.1, 0.0, True)
        with pytest.raises(ValueError, match=r"Nesterov momentum requires a momentum and zero dampening"):
            _C.sgd_step([f32(3)], [f32(3)], None, 0.1, 0.0, 0.0, 0.0, True)

    def test_nothing_is_written_when_an_argument_is_bad(self):
        p = np.ones(3, np.float32)
        with pytest.raises(TypeError):
            _C.sgd_step([p, np.ones(3, np.float32)], [np.ones(3, np.float32), np.ones(3)], None, 0.1)
        np.testing.assert_array_equal(p, 1.0)
