"""EarlyStopping, ModelCheckpoint, EpochLogger: driven by scripted metrics, and inside fit."""
from __future__ import annotations

import io

import numpy as np
import pytest
from trainhelpers import loaders, seeded, small_model, state_arrays

import fastmlp
from fastmlp import nn, optim
from fastmlp.train import EarlyStopping, EpochLogger, FitState, History, ModelCheckpoint, fit

METRICS = ["epoch", "train_loss", "val_loss", "val_accuracy", "lr", "time", "samples_per_s"]


def run(callback, values, monitor="val_loss", model=None, on_epoch=None):
    """Feed callback the epochs' `values` of `monitor`; returns (state, epochs run)."""
    state = FitState(model=model or small_model(), optimizer=None, epochs=len(values), history=History(),
                     metrics=METRICS)
    callback.on_train_begin(state)
    ran = 0
    for epoch, v in enumerate(values, start=1):
        state.epoch = epoch
        if on_epoch:
            on_epoch(state)
        logs = {"epoch": epoch, "train_loss": 1.0, monitor: v}
        state.history.append(logs)
        callback.on_epoch_end(state, logs)
        ran = epoch
        if state.stop_training:
            break
    callback.on_train_end(state)
    return state, ran


def test_early_stopping_waits_patience_epochs_without_improvement():
    es = EarlyStopping(patience=2)
    state, ran = run(es, [1.0, 0.9, 0.95, 0.92, 0.85, 0.8])
    assert ran == 4 and state.stop_training and es.stopped_epoch == 4 and es.best_epoch == 2
    assert state.history.stopped_epoch == 4


def test_early_stopping_patience_zero_stops_at_the_first_non_improvement():
    _, ran = run(EarlyStopping(), [1.0, 0.8, 0.8, 0.5])
    assert ran == 3


def test_early_stopping_min_delta():
    _, ran = run(EarlyStopping(patience=1, min_delta=0.1), [1.0, 0.95, 0.5])
    assert ran == 2


def test_early_stopping_auto_mode_maximises_accuracy():
    es = EarlyStopping(monitor="val_accuracy", patience=1)
    _, ran = run(es, [0.5, 0.6, 0.7, 0.65, 0.9], monitor="val_accuracy")
    assert ran == 4 and es.best == 0.7


def test_early_stopping_baseline():
    _, ran = run(EarlyStopping(patience=2, baseline=0.5), [0.9, 0.8, 0.7, 0.4])
    assert ran == 2


def test_early_stopping_restores_the_best_weights():
    model = small_model()
    snapshots = {}

    def perturb(state):
        with fastmlp.no_grad():
            for p in state.model.parameters():
                p.add_(1.0)
        snapshots[state.epoch] = state_arrays(state.model)

    es = EarlyStopping(patience=1, restore_best=True)
    run(es, [1.0, 0.5, 0.7, 0.6], model=model, on_epoch=perturb)
    for k, v in state_arrays(model).items():
        np.testing.assert_array_equal(v, snapshots[2][k])


def test_keras_name_for_restore_best():
    assert EarlyStopping(restore_best_weights=True).restore_best


def test_monitor_must_be_a_metric_of_the_run():
    es = EarlyStopping(monitor="val_loss")
    state = FitState(model=None, optimizer=None, epochs=1, history=History(), metrics=["epoch", "train_loss"])
    with pytest.raises(ValueError, match="monitor='val_loss' is not a metric of this run.*pass val_loader"):
        es.on_train_begin(state)
    with pytest.raises(ValueError, match="mode must be"):
        EarlyStopping(mode="up")


def test_checkpoint_saves_only_improvements(tmp_path, capsys):
    model = small_model()
    path = tmp_path / "model.pt"
    saved_at = {}

    def step(state):
        with fastmlp.no_grad():
            for p in state.model.parameters():
                p.mul_(2.0)
        saved_at[state.epoch] = state_arrays(state.model)

    ck = ModelCheckpoint(path, verbose=True)
    run(ck, [0.5, 0.25, 0.3, 0.3], model=model, on_epoch=step)
    assert ck.best_epoch == 2
    for k, v in fastmlp.load(path).items():
        np.testing.assert_array_equal(v.numpy(), saved_at[2][k])
    out = capsys.readouterr().out.splitlines()
    # the message the dropout-MLP tutorial prints
    assert out == ["Validation loss decreased (inf --> 0.500000). Saving model ...",
                   "Validation loss decreased (0.500000 --> 0.250000). Saving model ..."]


def test_checkpoint_every_epoch_with_a_path_template(tmp_path):
    ck = ModelCheckpoint(tmp_path / "sub" / "m-{epoch:02d}.pt", save_best_only=False)
    run(ck, [3.0, 2.0, 5.0])
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["m-01.pt", "m-02.pt", "m-03.pt"]


def test_checkpoint_with_extra_fields(tmp_path):
    ck = ModelCheckpoint(tmp_path / "m.pt", extra={"arch": {"hidden": [16]}, "dataset": "mnist"})
    model = small_model()
    run(ck, [0.7], model=model)
    obj = fastmlp.load(tmp_path / "m.pt")
    assert obj["arch"] == {"hidden": [16]} and obj["dataset"] == "mnist" and obj["epoch"] == 1
    assert obj["metrics"]["val_loss"] == 0.7
    assert set(obj["state_dict"]) == set(model.state_dict())


def test_checkpoint_maximising_message(tmp_path, capsys):
    run(ModelCheckpoint(tmp_path / "m.pt", monitor="val_accuracy", verbose=True), [0.9], monitor="val_accuracy")
    assert capsys.readouterr().out.strip() == "val_accuracy increased (-inf --> 0.900000). Saving model ..."


def test_epoch_logger_line():
    stream = io.StringIO()
    state = FitState(model=None, optimizer=None, epochs=3, history=History())
    state.epoch = 2
    EpochLogger(stream).on_epoch_end(state, {"epoch": 2, "train_loss": 0.25, "val_loss": 0.125,
                                             "val_accuracy": 0.9588, "lr": 0.01, "time": 12.34,
                                             "samples_per_s": 4870.2})
    assert stream.getvalue() == ("epoch 2/3  train_loss 0.250000  val_loss 0.125000  val_acc 95.88%  lr 0.01  "
                                 "12.3s  4,870 samples/s\n")


def test_early_stopping_inside_fit_stops_a_run_that_does_not_learn():
    seeded(0)
    train, val = loaders(n_train=32)
    model = small_model()
    h = fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.0), train, val, epochs=10,
            progress=False, callbacks=[EarlyStopping(patience=2)])
    assert len(h) == 3 and h.stopped_epoch == 3


def test_checkpoint_inside_fit_then_reload_like_the_tutorial(tmp_path):
    seeded(0)
    train, val = loaders()
    model = small_model()
    ck = ModelCheckpoint(tmp_path / "model.pt")
    h = fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), train, val, epochs=3,
            progress=False, callbacks=[ck])
    assert ck.best_epoch == h.best("val_loss")["epoch"]
    fresh = small_model()
    fresh.load_state_dict(fastmlp.load(tmp_path / "model.pt"))


# ---- the aliases History accepts ------------------------------------------------------------------
def test_early_stopping_accepts_val_acc_for_val_accuracy():
    es = EarlyStopping(monitor="val_acc", patience=1)
    _, ran = run(es, [0.5, 0.6, 0.7, 0.65, 0.9], monitor="val_accuracy")
    assert ran == 4 and es.best == 0.7 and es.best_epoch == 3  # maximised, as an accuracy


def test_early_stopping_accepts_keras_loss_for_train_loss():
    es = EarlyStopping(monitor="loss")
    state = FitState(model=None, optimizer=None, epochs=1, history=History(), metrics=METRICS)
    es.on_train_begin(state)
    state.epoch = 1
    es.on_epoch_end(state, {"epoch": 1, "train_loss": 0.3})
    assert es.best == 0.3


def test_checkpoint_accepts_val_acc(tmp_path, capsys):
    ck = ModelCheckpoint(tmp_path / "m.pt", monitor="val_acc", verbose=True)
    run(ck, [0.8, 0.7, 0.9], monitor="val_accuracy")
    assert ck.best_epoch == 3
    assert capsys.readouterr().out.splitlines()[-1] == "val_acc increased (0.800000 --> 0.900000). Saving model ..."


def test_val_acc_inside_fit(tmp_path):
    seeded(0)
    train, val = loaders()
    model = small_model()
    ck = ModelCheckpoint(tmp_path / "best.pt", monitor="val_acc")
    es = EarlyStopping(monitor="val_acc", patience=5)
    h = fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), train, val, epochs=3,
            progress=False, callbacks=[ck, es])
    assert ck.best_epoch == h.best("val_acc")["epoch"] == es.best_epoch
    assert (tmp_path / "best.pt").exists()


def test_an_unknown_alias_is_still_an_error():
    state = FitState(model=None, optimizer=None, epochs=1, history=History(), metrics=["epoch", "train_loss"])
    with pytest.raises(ValueError, match="monitor='val_acc' is not a metric of this run.*pass val_loader"):
        ModelCheckpoint("m.pt", monitor="val_acc").on_train_begin(state)
