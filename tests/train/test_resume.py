"""Resumable training: fit(..., checkpoint_every=, resume_from=), ModelCheckpoint(save_training_state=True)
and `fastmlp train --resume`. A run split in two by a resume reaches bitwise the parameters of the run
that was never interrupted, on the native whole-step path and on the eager one; a `fastmlp train`
process killed with SIGKILL mid-epoch resumes from its last saved epoch."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from trainhelpers import blobs, seeded, small_model, state_arrays, write_mnist_like

import fastmlp
from fastmlp import nn, optim
from fastmlp.nn.program import TrainStep
from fastmlp.optim.lr_scheduler import StepLR
from fastmlp.train import EarlyStopping, ModelCheckpoint, fit
from fastmlp.train.state import FORMAT, load_training_state
from fastmlp.utils.data import DataLoader, TensorDataset



def make_run(route: str, generator: bool):
    """Model (with dropout), Adam, a StepLR schedule, a shuffling loader and callbacks, all from seed 11."""
    seeded(11)
    x, y = blobs(150, seed=3)
    vx, vy = blobs(40, seed=4)
    model = small_model(dropout=0.25)
    opt = optim.Adam(model.parameters(), lr=0.01)
    gen = fastmlp.Generator().manual_seed(5) if generator else None
    train = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, generator=gen)
    val = DataLoader(TensorDataset(vx, vy), batch_size=20)
    criterion = nn.CrossEntropyLoss()
    # The eager route: a loss function the native step does not take (it only knows CrossEntropyLoss).
    loss_fn = criterion if route == "native" else (lambda out, target: criterion(out, target))
    sched = StepLR(opt, step_size=1, gamma=0.7)
    stopper = EarlyStopping(monitor="val_loss", patience=50, restore_best=False)
    return model, opt, loss_fn, train, val, sched, stopper


@pytest.mark.parametrize("generator", [False, True], ids=["default-generator", "loader-generator"])
@pytest.mark.parametrize("route", ["native", "eager"])
def test_two_plus_two_epochs_equal_four_bitwise(tmp_path, route, generator):
    model, opt, loss_fn, train, val, sched, stopper = make_run(route, generator)
    assert (TrainStep.build(model, loss_fn, opt) is not None) == (route == "native")
    full = fit(model, loss_fn, opt, train, val, epochs=4, scheduler=sched, callbacks=[stopper], progress=False)
    expected = state_arrays(model)
    expected_m = [s["exp_avg"].numpy().copy() for s in opt.state.values()]

    path = tmp_path / "run.state"
    model, opt, loss_fn, train, val, sched, stopper = make_run(route, generator)
    first = fit(model, loss_fn, opt, train, val, epochs=2, scheduler=sched, callbacks=[stopper], progress=False,
                checkpoint_every=1, checkpoint_path=path)
    assert len(first) == 2
    saved = load_training_state(path)
    assert saved["format"] == FORMAT and saved["epoch"] == 2 and saved["step"] == 2 * len(train)

    # A fresh process would start from other random states: scramble them before resuming.
    fastmlp.manual_seed(999)
    model, opt, loss_fn, train, val, sched, stopper = make_run(route, generator)
    fastmlp.manual_seed(12345)
    if generator:
        train.generator.manual_seed(4321)
    rest = fit(model, loss_fn, opt, train, val, epochs=4, scheduler=sched, callbacks=[stopper], progress=False,
               resume_from=path, checkpoint_every=1)
    got = state_arrays(model)
    assert got.keys() == expected.keys()
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k], err_msg=k)
    for a, b in zip([s["exp_avg"].numpy() for s in opt.state.values()], expected_m):
        np.testing.assert_array_equal(a, b)
    assert [r["epoch"] for r in rest] == [1, 2, 3, 4]
    assert rest["train_loss"] == full["train_loss"] and rest["val_loss"] == full["val_loss"]
    assert rest["lr"] == full["lr"]
    assert stopper.best_epoch is not None and stopper.best == min(full["val_loss"][:stopper.best_epoch])
    # With checkpoint_every and no checkpoint_path, the resumed run keeps writing to the file it resumed from.
    assert load_training_state(path)["epoch"] == 4


def test_model_checkpoint_saves_a_training_state_that_resumes(tmp_path):
    model, opt, loss_fn, train, val, sched, stopper = make_run("native", False)
    fit(model, loss_fn, opt, train, val, epochs=3, progress=False)
    expected = state_arrays(model)

    model, opt, loss_fn, train, val, sched, stopper = make_run("native", False)
    ck = ModelCheckpoint(tmp_path / "last.ck", save_best_only=False, save_training_state=True,
                         extra={"note": "arch"})
    fit(model, loss_fn, opt, train, val, epochs=1, callbacks=[ck], progress=False)
    saved = load_training_state(tmp_path / "last.ck")
    assert saved["note"] == "arch" and saved["epoch"] == 1 and "val_loss" in saved["metrics"]
    assert saved["callbacks"]["ModelCheckpoint:0"]["last_saved"] == str(tmp_path / "last.ck")

    model, opt, loss_fn, train, val, sched, stopper = make_run("native", False)
    ck = ModelCheckpoint(tmp_path / "last.ck", save_best_only=False, save_training_state=True)
    fit(model, loss_fn, opt, train, val, epochs=3, callbacks=[ck], progress=False, resume_from=tmp_path / "last.ck")
    for k, v in state_arrays(model).items():
        np.testing.assert_array_equal(v, expected[k], err_msg=k)


def test_resume_of_a_finished_run_trains_no_further(tmp_path):
    model, opt, loss_fn, train, val, sched, stopper = make_run("native", False)
    fit(model, loss_fn, opt, train, val, epochs=2, progress=False, checkpoint_every=1, checkpoint_path=tmp_path / "s")
    done = state_arrays(model)
    model, opt, loss_fn, train, val, sched, stopper = make_run("native", False)
    h = fit(model, loss_fn, opt, train, val, epochs=2, progress=False, resume_from=tmp_path / "s")
    assert len(h) == 2
    for k, v in state_arrays(model).items():
        np.testing.assert_array_equal(v, done[k])


def test_a_run_stopped_early_stays_stopped_and_keeps_its_stopper_state(tmp_path):
    model, opt, loss_fn, train, val, sched, stopper = make_run("native", False)
    stopper = EarlyStopping(monitor="train_loss", patience=0, min_delta=1e9)  # stops at the 2nd epoch
    h = fit(model, loss_fn, opt, train, val, epochs=5, callbacks=[stopper], progress=False, checkpoint_every=3,
            checkpoint_path=tmp_path / "s")
    assert len(h) == 2 and h.stopped_epoch == 2
    saved = load_training_state(tmp_path / "s")  # written on stopping, though 2 is no multiple of 3
    assert saved["epoch"] == 2 and saved["stop_training"]
    assert saved["callbacks"]["EarlyStopping:0"]["wait"] == 1
    model, opt, loss_fn, train, val, sched, _ = make_run("native", False)
    again = EarlyStopping(monitor="train_loss", patience=0, min_delta=1e9)
    h2 = fit(model, loss_fn, opt, train, val, epochs=5, callbacks=[again], progress=False, resume_from=tmp_path / "s")
    assert len(h2) == 2 and h2.stopped_epoch == 2
    assert again.wait == 1 and again.stopped_epoch == 2 and again.best_epoch == 1


def test_bad_resume_arguments_are_clear_errors(tmp_path):
    model, opt, loss_fn, train, val, sched, stopper = make_run("native", False)
    with pytest.raises(ValueError, match="checkpoint_every needs checkpoint_path"):
        fit(model, loss_fn, opt, train, epochs=1, progress=False, checkpoint_every=1)
    with pytest.raises(ValueError, match="checkpoint_every must be a positive"):
        fit(model, loss_fn, opt, train, epochs=1, progress=False, checkpoint_every=0, checkpoint_path=tmp_path / "x")
    with pytest.raises(FileNotFoundError, match="no training state"):
        fit(model, loss_fn, opt, train, epochs=1, progress=False, resume_from=tmp_path / "missing")
    fastmlp.save(model.state_dict(), tmp_path / "weights.pt")
    with pytest.raises(ValueError, match="is not a training state"):
        fit(model, loss_fn, opt, train, epochs=1, progress=False, resume_from=tmp_path / "weights.pt")
    # A state saved with a loader generator cannot resume a run whose loader has none.
    model, opt, loss_fn, train, val, sched, stopper = make_run("native", True)
    fit(model, loss_fn, opt, train, epochs=1, progress=False, checkpoint_every=1, checkpoint_path=tmp_path / "g")
    model, opt, loss_fn, train, val, sched, stopper = make_run("native", False)
    with pytest.raises(ValueError, match="explicit generator"):
        fit(model, loss_fn, opt, train, epochs=2, progress=False, resume_from=tmp_path / "g")


# ---- the command line, killed mid-epoch ------------------------------------------------------------

def _train_cmd(data: Path, tmp_path: Path, *extra: str) -> list:
    # Wide layers and large batches: an epoch takes about a second (96 steps of ~10 ms), long enough to
    # be killed in the middle of, on the native whole-step path.
    return [sys.executable, "-m", "fastmlp", "train", "--data", str(data), "--hidden", "1024,1024", "--epochs", "3",
            "--batch-size", "100", "--optimizer", "adam", "--dropout", "0.2", "--checkpoint",
            str(tmp_path / "ck.pt"), "--no-progress", "--no-download", "--no-plot", *extra]


def _env() -> dict:
    env = dict(os.environ)
    # the fastmlp these tests import (the installed wheel in CI, the checkout for an in-place build)
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(fastmlp.__file__)) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_fastmlp_train_killed_mid_epoch_resumes(tmp_path):
    data = write_mnist_like(tmp_path / "mnist", n_train=12000, n_test=40)
    state = tmp_path / "ck-state.pt"
    # The uninterrupted run, for reference.
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    done = subprocess.run(_train_cmd(data, ref_dir), env=_env(), cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    reference = load_training_state(ref_dir / "ck-state.pt")

    # Kill a run once its first epoch's state exists, while it trains the second epoch.
    proc = subprocess.Popen(_train_cmd(data, tmp_path), env=_env(), cwd=str(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    try:
        while not state.exists():
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "the run wrote no training state in time"
            time.sleep(0.02)
        time.sleep(0.2)  # into the second epoch
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    killed = load_training_state(state)
    assert 1 <= killed["epoch"] < 3, "the kill came after the run had finished"

    resumed = subprocess.run(_train_cmd(data, tmp_path, "--resume", str(state)), env=_env(), cwd=str(tmp_path), capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Test accuracy" in resumed.stdout
    final = load_training_state(state)
    assert final["epoch"] == 3
    for k, v in reference["state_dict"].items():
        np.testing.assert_array_equal(final["state_dict"][k].numpy(), v.numpy(), err_msg=k)
