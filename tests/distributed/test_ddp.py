"""DistributedDataParallel under mpiexec -n 2 against one process that sees the same samples
with the doubled batch (SGD with momentum and Adam, eager loop and fit)."""
from __future__ import annotations

import numpy as np
import pytest

import fastmlp
import fastmlp.distributed as dist
from fastmlp import nn
from fastmlp.nn.parallel import DistributedDataParallel, consume_prefix_in_state_dict_if_present

import ddp_common as C
from mpirun import check, run_mpi


def reference(opt_name: str, epochs: int = C.EPOCHS):
    """One process, the same initial model, each step on both ranks' batches together."""
    x, y = C.data()
    model = C.model()
    opt = C.optimizer(opt_name, model.parameters())
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    for epoch in range(epochs):
        total = 0.0
        for idx in C.joint_batches(epoch):
            opt.zero_grad()
            loss = loss_fn(model(fastmlp.from_numpy(x[idx])), fastmlp.from_numpy(y[idx]))
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / (len(C.joint_batches(epoch)) * 2 * C.BATCH))
    return C.params_of(model), losses


def assert_params_close(got, want):
    assert sorted(got) == sorted(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-7, err_msg=k)


@pytest.mark.parametrize("mode", ["eager", "fit"])
@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_two_processes_equal_one_with_the_doubled_batch(tmp_path, mode, opt_name):
    check(run_mpi("train_job.py", mode, opt_name, str(tmp_path), n=2, timeout=120))
    want, want_losses = reference(opt_name)
    ranks = [dict(np.load(tmp_path / f"params{r}.npz")) for r in range(2)]
    for r in range(2):
        assert_params_close(ranks[r], want)
        np.testing.assert_array_equal(np.load(tmp_path / f"checksums{r}.npy"), np.zeros(C.EPOCHS))
    for k in ranks[0]:  # identical on every rank, bit for bit
        np.testing.assert_array_equal(ranks[0][k], ranks[1][k])
    # fit averages in shared memory (both ranks on this machine); the eager loop by MPI_Allreduce
    assert [bool(np.load(tmp_path / f"in_slot{r}.npy")) for r in range(2)] == [mode == "fit"] * 2
    if mode == "fit":
        # the logged loss is the mean over both ranks' samples
        for r in range(2):
            np.testing.assert_allclose(np.load(tmp_path / f"loss{r}.npy"), want_losses, rtol=1e-5)
        # rank 0's checkpoint (the wrapped model's state dict) loads into a single-process model
        assert (tmp_path / "ckpt.safetensors").exists()
        plain = C.model()
        saved = fastmlp.load(tmp_path / "ckpt.safetensors")
        plain.load_state_dict(saved["state_dict"] if "state_dict" in saved else saved)
        assert_params_close(C.params_of(plain), want)


def load_run(folder, what: str) -> list:
    return [dict(np.load(folder / f"{what}{r}.npz")) for r in range(2)]


@pytest.mark.parametrize("opt_name", ["sgd", "adam", "adamw"])
def test_fit_shards_the_update_bitwise_as_the_unsharded_path(tmp_path, opt_name):
    runs = {}
    for how in ("sharded", "unsharded"):
        out = tmp_path / how
        out.mkdir()
        check(run_mpi("train_job.py", "fit", opt_name, str(out), how, n=2, timeout=120))
        runs[how] = {what: load_run(out, what) for what in ("params", "state", "grads")}
        steps = [int(np.load(out / f"sharded_steps{r}.npy")) for r in range(2)]
        # the route: every step of every epoch sharded, or none
        assert steps == [C.EPOCHS * len(C.joint_batches(0)) if how == "sharded" else 0] * 2
        for r in range(2):
            # the same parameters, optimizer state and averaged gradients on both ranks, each in its own memory
            np.testing.assert_array_equal(np.load(out / f"checksums{r}.npy"), np.zeros(C.EPOCHS))
            np.testing.assert_array_equal(np.load(out / f"spreads{r}.npy"), [0.0, 0.0])
            assert bool(np.load(out / f"private{r}.npy"))
    for what in ("params", "state", "grads"):
        sharded, unsharded = runs["sharded"][what], runs["unsharded"][what]
        assert sorted(sharded[0]) == sorted(unsharded[0]) and sharded[0]
        for r in range(2):
            for k in unsharded[0]:  # bit for bit, on both ranks
                np.testing.assert_array_equal(sharded[r][k], unsharded[0][k], err_msg=f"{what} {k} rank {r}")
    want, _ = reference(opt_name)
    assert_params_close(runs["sharded"]["params"][0], want)
    # the last step's averaged gradients, as one process computes them on both ranks' rows
    x, y = C.data()
    model = C.model()
    model.load_state_dict(_before_last_step(opt_name))
    last = C.joint_batches(C.EPOCHS - 1)[-1]
    nn.CrossEntropyLoss()(model(fastmlp.from_numpy(x[last])), fastmlp.from_numpy(y[last])).backward()
    for n, p in model.named_parameters():
        np.testing.assert_allclose(runs["sharded"]["grads"][0][n], p.grad.numpy(), rtol=1e-5, atol=1e-6)


def _before_last_step(opt_name: str) -> dict:
    """The one-process reference's parameters before its last step."""
    x, y = C.data()
    model = C.model()
    opt = C.optimizer(opt_name, model.parameters())
    loss_fn = nn.CrossEntropyLoss()
    steps = [idx for epoch in range(C.EPOCHS) for idx in C.joint_batches(epoch)]
    for idx in steps[:-1]:
        opt.zero_grad()
        loss_fn(model(fastmlp.from_numpy(x[idx])), fastmlp.from_numpy(y[idx])).backward()
        opt.step()
    return model.state_dict()


def test_no_sync_accumulates_locally_and_the_next_backward_averages_everything(tmp_path):
    check(run_mpi("train_job.py", "grads", "sgd", str(tmp_path), n=2, timeout=120))
    x, y = C.data()
    model = C.model()
    loss_fn = nn.CrossEntropyLoss()
    batches = C.joint_batches(0)
    per_rank = []  # each rank's own gradients of its first two batches, float64 reference sums below
    for rank in range(2):
        rows = [idx[rank * C.BATCH:(rank + 1) * C.BATCH] for idx in batches[:2]]
        grads = []
        for r in rows:
            model.zero_grad()
            loss_fn(model(fastmlp.from_numpy(x[r])), fastmlp.from_numpy(y[r])).backward()
            grads.append({n: p.grad.numpy().astype(np.float64) for n, p in model.named_parameters()})
        per_rank.append(grads)
    for rank in range(2):
        local = np.load(tmp_path / f"local{rank}.npz")
        for n in local.files:  # inside no_sync: this rank's own gradient, not averaged
            np.testing.assert_allclose(local[n], per_rank[rank][0][n], rtol=1e-5, atol=1e-7)
        got = np.load(tmp_path / f"grads{rank}.npz")
        for n in got.files:
            want = sum(per_rank[r][0][n] + per_rank[r][1][n] for r in range(2)) / 2
            np.testing.assert_allclose(got[n], want, rtol=1e-5, atol=1e-7)


def test_early_stopping_on_one_rank_stops_every_rank(tmp_path):
    check(run_mpi("train_job.py", "earlystop", "sgd", str(tmp_path), n=2, timeout=120))
    assert [int(np.load(tmp_path / f"epochs{r}.npy")) for r in range(2)] == [1, 1]
    want, _ = reference("sgd", epochs=1)
    assert_params_close(dict(np.load(tmp_path / "params0.npz")), want)


def test_an_exception_on_one_rank_ends_the_job():
    result = run_mpi("crash_job.py", n=2, timeout=60)  # a hang would time out instead
    assert result.returncode != 0
    assert "rank one fails on purpose" in result.stderr + result.stdout


def test_an_exception_inside_a_sharded_fit_on_one_rank_ends_the_job():
    result = run_mpi("fit_crash_job.py", n=2, timeout=60)
    assert result.returncode != 0
    assert "rank one fails inside fit on purpose" in result.stderr + result.stdout


def test_models_that_differ_between_ranks_raise_on_every_rank(tmp_path):
    result = run_mpi("mismatch_job.py", n=2, timeout=60)
    assert result.returncode != 0
    assert "the model differs between processes" in result.stderr + result.stdout


def test_ddp_without_a_process_group_raises():
    if dist.launched_by_mpiexec():
        pytest.skip("this test process itself runs under mpiexec")
    with pytest.raises(RuntimeError, match="init_process_group"):
        DistributedDataParallel(C.model())


def test_single_process_ddp_is_the_module_and_prefixes_its_state_dict():
    pytest.importorskip("mpi4py")
    dist.init_process_group()
    try:
        m = C.model()
        ddp = DistributedDataParallel(m)
        assert ddp.module is m
        x = fastmlp.from_numpy(C.data()[0][:5])
        np.testing.assert_array_equal(ddp(x).detach().numpy(), m(x).detach().numpy())
        sd = ddp.state_dict()
        assert list(sd) == ["module." + k for k in m.state_dict()]  # as PyTorch's DDP
        with pytest.raises(RuntimeError, match='Unexpected key.*"module.0.weight"'):
            C.model().load_state_dict(sd)
        consume_prefix_in_state_dict_if_present(sd, "module.")
        plain = C.model()
        plain.load_state_dict(sd)
        assert_params_close(C.params_of(plain), C.params_of(m))
    finally:
        dist.destroy_process_group()


def test_sampler_over_data_sets_of_different_lengths_raises():
    result = run_mpi("sampler_mismatch_job.py", n=2, timeout=60)
    assert result.returncode != 0
    assert "length differs between ranks (from 10 to 11)" in result.stderr + result.stdout


def test_fit_of_a_single_process_ddp_equals_plain_fit_and_checkpoints_unprefixed(tmp_path):
    pytest.importorskip("mpi4py")
    from fastmlp.train import ModelCheckpoint, fit
    from fastmlp.utils.data import DataLoader, DistributedSampler, TensorDataset

    x, y = C.data()
    ds = TensorDataset(fastmlp.from_numpy(x), fastmlp.from_numpy(y))

    def train(wrap: bool):
        model = C.model()
        if wrap:
            model = DistributedDataParallel(model)
        opt = C.optimizer("adam", model.parameters())
        loader = DataLoader(ds, batch_size=C.BATCH, sampler=DistributedSampler(ds, num_replicas=1, rank=0, seed=2))
        ck = ModelCheckpoint(tmp_path / f"ck{int(wrap)}.safetensors", monitor="train_loss", save_best_only=False)
        fit(model, nn.CrossEntropyLoss(), opt, loader, epochs=2, callbacks=[ck], progress=False)
        return C.params_of(model.module if wrap else model)

    plain = train(False)
    dist.init_process_group()
    try:
        wrapped = train(True)
    finally:
        dist.destroy_process_group()
    for k in plain:
        np.testing.assert_array_equal(wrapped[k], plain[k])
    saved = fastmlp.load(tmp_path / "ck1.safetensors")
    assert sorted(saved) == sorted(plain)  # no "module." prefix
