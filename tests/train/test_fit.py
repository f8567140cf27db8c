"""fit: the history it returns, equality with a hand-written loop, train/eval and no_grad handling,
schedulers, bad input, and Ctrl-C leaving the last checkpoint intact."""
from __future__ import annotations

import numpy as np
import pytest
from trainhelpers import blobs, loaders, seeded, small_model, state_arrays

import fastmlp
from fastmlp import nn, optim
from fastmlp.autograd import is_grad_enabled
from fastmlp.nn.program import TrainStep
from fastmlp.train import Callback, ModelCheckpoint, fit
from fastmlp.utils.data import DataLoader, TensorDataset


def test_history_has_one_record_per_epoch_and_columns():
    seeded(0)
    train, val = loaders()
    model = small_model()
    h = fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), train, val, epochs=3,
            progress=False)
    assert len(h) == 3 and [r["epoch"] for r in h] == [1, 2, 3]
    assert h.columns == ["epoch", "train_loss", "val_loss", "val_accuracy", "lr", "time", "samples_per_s"]
    assert len(h["val_loss"]) == 3 and h["loss"] == h["train_loss"] and h["val_acc"] == h["val_accuracy"]
    assert h.history["lr"] == [0.1, 0.1, 0.1]
    assert h["train_loss"][-1] < h["train_loss"][0]
    assert h["val_accuracy"][-1] > 0.9
    assert all(r["samples_per_s"] > 0 and r["time"] > 0 for r in h)
    assert h[0]["epoch"] == 1 and h.best("val_loss")["val_loss"] == min(h["val_loss"])
    assert not h.interrupted
    with pytest.raises(KeyError, match="no metric 'nope'"):
        h["nope"]


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_fit_equals_the_hand_written_loop(dropout, monkeypatch):
    """Same seed, same loader: fit's epoch losses and final weights are exactly those of the tutorial loop
    (fit runs this Sequential MLP through the native whole-step path; the loop is eager)."""
    x, y = blobs(64)
    native_steps = []
    real_steps = TrainStep.steps  # every native step, single or in a run, goes through steps()
    monkeypatch.setattr(TrainStep, "steps",
                        lambda self, x, y, sizes: native_steps.extend([1] * len(sizes)) or real_steps(self, x, y, sizes))

    def setup():
        seeded(7)
        model = small_model(dropout=dropout)
        opt = optim.Adam(model.parameters(), lr=0.01)
        return model, opt, DataLoader(TensorDataset(x, y), batch_size=5, shuffle=True)

    model, opt, loader = setup()
    criterion = nn.CrossEntropyLoss()
    expected = []
    for _ in range(3):
        total = 0.0
        model.train()
        for data, target in loader:
            opt.zero_grad()
            loss = criterion(model(data), target)
            loss.backward()
            opt.step()
            total += loss.item() * data.size(0)
        expected.append(total / len(loader.dataset))
    reference = state_arrays(model)

    model, opt, loader = setup()
    assert not native_steps
    h = fit(model, criterion, opt, loader, epochs=3, progress=False)
    assert len(native_steps) == 3 * len(loader)
    assert h["train_loss"] == expected
    for k, v in state_arrays(model).items():
        np.testing.assert_array_equal(v, reference[k])


@pytest.mark.parametrize("make_opt", [lambda p: optim.SGD(p, lr=0.05, momentum=0.9), lambda p: optim.SGD(p, lr=0.05),
                                      lambda p: optim.Adam(p, lr=1e-3)], ids=["sgd", "sgd-plain", "adam"])
def test_fit_equals_the_loop_on_wide_layers(make_opt, on_threads):
    """Layers wide enough that their products run on several threads at batch 32, with each
    layer's update right after its gradients: fit is bitwise the eager loop, on 1, 2 and 3 threads."""
    x, y = blobs(96, classes=10, dim=300)

    def setup():
        seeded(3)
        model = nn.Sequential(nn.Linear(300, 256), nn.ReLU(), nn.Dropout(0.2), nn.Linear(256, 192), nn.GELU(),
                              nn.Linear(192, 10))
        return model, make_opt(model.parameters()), DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)

    def run(threads, use_fit):
        model, opt, loader = setup()
        criterion = nn.CrossEntropyLoss()
        if use_fit:
            fit(model, criterion, opt, loader, epochs=2, progress=False)
        else:
            for _ in range(2):
                for data, target in loader:
                    opt.zero_grad()
                    criterion(model(data), target).backward()
                    opt.step()
        return state_arrays(model)

    reference = run(2, False)
    for got in on_threads((1, 2, 3), lambda t: run(t, True)):
        for k, v in got.items():
            np.testing.assert_array_equal(v, reference[k], err_msg=k)


class Recorder(nn.Module):
    """Wraps a model and records (training flag, grad mode) at every forward."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.calls = []

    def forward(self, x):
        self.calls.append((self.training, is_grad_enabled()))
        return self.inner(x)


def test_train_mode_for_steps_eval_and_no_grad_for_validation():
    seeded(0)
    train, val = loaders(n_train=32, n_val=32, batch_size=16)
    model = Recorder(small_model(dropout=0.5))
    fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), train, val, epochs=2, progress=False)
    # per epoch: 2 training batches then 1 validation batch
    assert model.calls == [(True, True), (True, True), (False, False)] * 2
    assert model.training and model.inner[2].training  # the mode it had before fit


def test_model_left_in_eval_mode_stays_there():
    seeded(0)
    train, _ = loaders(n_train=16, batch_size=16)
    model = small_model().eval()
    fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), train, epochs=1, progress=False)
    assert not model.training


def test_label_outside_the_class_range_raises_index_error():
    x, y = blobs(20)
    y[13] = 3  # three classes: 0, 1, 2
    model = small_model()
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    with pytest.raises(IndexError, match="out of range for 3 classes"):
        fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), loader, progress=False)


def test_empty_dataset_is_a_clear_error():
    loader = DataLoader(TensorDataset(fastmlp.zeros(0, 4), fastmlp.zeros(0, dtype=fastmlp.int64)), batch_size=4)
    model = small_model()
    with pytest.raises(ValueError, match="train_loader yields no batches: its dataset is empty"):
        fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), loader, progress=False)
    train, _ = loaders(n_train=16)
    with pytest.raises(ValueError, match="val_loader yields no batches"):
        fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), train, loader, progress=False)


def test_batches_must_be_pairs():
    loader = [{"x": fastmlp.zeros(2, 4)}]
    model = small_model()
    with pytest.raises(TypeError, match=r"must yield \(inputs, targets\) pairs; got a dict"):
        fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), loader, progress=False)


def test_wrong_input_width_surfaces_the_model_error():
    loader = DataLoader(TensorDataset(fastmlp.zeros(4, 5), fastmlp.zeros(4, dtype=fastmlp.int64)), batch_size=2)
    model = small_model()
    with pytest.raises(RuntimeError, match="2x5 and 4x16"):
        fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), loader, progress=False)


def test_step_scheduler_steps_once_per_epoch():
    seeded(0)
    train, val = loaders(n_train=32)
    model = small_model()
    opt = optim.SGD(model.parameters(), lr=0.1)
    h = fit(model, nn.CrossEntropyLoss(), opt, train, val, epochs=3, progress=False,
            scheduler=optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5))
    assert h["lr"] == pytest.approx([0.1, 0.05, 0.025])
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0125)


class SpyPlateau(optim.lr_scheduler.ReduceLROnPlateau):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.seen = []

    def step(self, metrics):
        self.seen.append(metrics)
        super().step(metrics)


def test_plateau_scheduler_gets_the_validation_loss():
    seeded(0)
    train, val = loaders(n_train=32)
    model = small_model()
    opt = optim.SGD(model.parameters(), lr=0.1)
    sched = SpyPlateau(opt, patience=0, factor=0.5)
    h = fit(model, nn.CrossEntropyLoss(), opt, train, val, epochs=3, progress=False, scheduler=sched)
    assert sched.seen == h["val_loss"]


def test_plateau_scheduler_without_validation_gets_the_training_loss():
    seeded(0)
    train, _ = loaders(n_train=32)
    model = small_model()
    opt = optim.SGD(model.parameters(), lr=0.1)
    sched = SpyPlateau(opt)
    h = fit(model, nn.CrossEntropyLoss(), opt, train, epochs=2, progress=False, scheduler=sched)
    assert sched.seen == h["train_loss"] and "val_loss" not in h


class InterruptingLoader:
    """Yields the batches of `loader`, but raises KeyboardInterrupt at batch `at` of epoch `epoch`."""

    def __init__(self, loader, epoch, at):
        self.loader, self.epoch, self.at, self.pass_ = loader, epoch, at, 0

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        self.pass_ += 1
        for i, b in enumerate(self.loader):
            if self.pass_ == self.epoch and i == self.at:
                raise KeyboardInterrupt
            yield b


class Snapshots(Callback):
    def __init__(self):
        self.states, self.ended = {}, False

    def on_epoch_end(self, state, logs):
        self.states[state.epoch] = state_arrays(state.model)

    def on_train_end(self, state):
        self.ended = True


def test_ctrl_c_in_the_loader_stops_cleanly_and_keeps_the_last_checkpoint(tmp_path, capsys):
    seeded(0)
    train, val = loaders()
    model = small_model()
    snaps = Snapshots()
    ckpt = tmp_path / "best.pt"
    h = fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), InterruptingLoader(train, 3, 4),
            val, epochs=5, progress=False, callbacks=[ModelCheckpoint(ckpt, save_best_only=False), snaps])
    assert h.interrupted and len(h) == 2 and snaps.ended
    assert "interrupted during epoch 3/5" in capsys.readouterr().err
    saved = fastmlp.load(ckpt)
    for k, v in snaps.states[2].items():
        np.testing.assert_array_equal(saved[k].numpy(), v)
    fresh = small_model()
    fresh.load_state_dict(saved)


def test_ctrl_c_in_a_callback_still_runs_on_train_end(tmp_path):
    class Stop(Callback):
        def on_epoch_end(self, state, logs):
            if state.epoch == 2:
                raise KeyboardInterrupt

    seeded(0)
    train, val = loaders(n_train=32)
    model = small_model()
    snaps = Snapshots()
    ckpt = tmp_path / "m.pt"
    h = fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), train, val, epochs=4,
            progress=False, callbacks=[snaps, ModelCheckpoint(ckpt, save_best_only=False), Stop()])
    assert h.interrupted and snaps.ended and len(h) == 2
    assert set(fastmlp.load(ckpt)) == set(model.state_dict())


def test_epochs_checked():
    train, _ = loaders(n_train=16)
    model = small_model()
    with pytest.raises(ValueError, match="epochs must be a non-negative integer"):
        fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), train, epochs=-1)
    assert len(fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), train, epochs=0)) == 0


def test_regression_with_a_custom_loss_function():
    """The regression trainer of the tutorial: y_hat = model(X).flatten(), MSE."""
    seeded(0)
    X = fastmlp.arange(-3, 3, 0.15)
    y = X ** 2 + X * fastmlp.normal(0, 1, (40,))
    loader = DataLoader(TensorDataset(X[:, None], y), batch_size=1, shuffle=True)
    model = nn.Sequential(nn.Linear(1, 8), nn.Sigmoid(), nn.Linear(8, 1))
    criterion = nn.MSELoss()
    h = fit(model, lambda out, t: criterion(out.flatten(), t), optim.SGD(model.parameters(), lr=0.05), loader,
            loader, epochs=4, progress=False)
    assert h["val_accuracy"] == [None] * 4
    assert h["train_loss"][-1] < h["train_loss"][0]


class PlainLoader(DataLoader):
    """A DataLoader subclass: fit iterates it batch by batch (it does not gather runs of batches)."""


@pytest.mark.parametrize("opt_name", ["adam", "sgd-momentum", "sgd"])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_fit_gathering_runs_of_batches_changes_no_result(opt_name, dropout, monkeypatch):
    """Over a row-wise dataset fit gathers many batches at once and runs their steps in one native
    call; history, weights, the last step's gradients and optimizer state are bitwise those of
    going batch by batch (the partial last batch and dropout masks included; plain SGD leaves
    the gradients of all but a run's last step unstored)."""
    import fastmlp.train.loop as loop

    monkeypatch.setattr(loop, "_CHUNK_FLOATS", 4 * 17)  # 17 rows: runs of three batches of 5
    runs = []
    real_steps = TrainStep.steps
    monkeypatch.setattr(TrainStep, "steps",
                        lambda self, x, y, sizes: runs.append(list(sizes)) or real_steps(self, x, y, sizes))
    x, y = blobs(69)  # 14 batches: the last run is [5, 4]
    results = []
    for cls in (DataLoader, PlainLoader):
        seeded(3)
        model = small_model(dropout=dropout)
        opt = optim.Adam(model.parameters(), lr=0.01) if opt_name == "adam" else \
            optim.SGD(model.parameters(), lr=0.05, momentum=0.9 if opt_name == "sgd-momentum" else 0.0)
        h = fit(model, nn.CrossEntropyLoss(), opt, cls(TensorDataset(x, y), batch_size=5, shuffle=True), epochs=2,
                progress=False)
        grads = {f"{name}.grad": p.grad.numpy().copy() for name, p in model.named_parameters()}
        results.append((h["train_loss"], {**state_arrays(model), **grads}, opt.state_dict()["state"]))
        if cls is DataLoader:
            assert runs == [[5, 5, 5]] * 4 + [[5, 4]] + [[5, 5, 5]] * 4 + [[5, 4]]
            runs.clear()
        else:  # no gathering: every batch is a run of its own
            assert runs == ([[5]] * 13 + [[4]]) * 2
    (l0, s0, o0), (l1, s1, o1) = results
    assert l0 == l1
    for k in s0:
        np.testing.assert_array_equal(s0[k], s1[k])
    for i in o0:
        for k in o0[i]:
            np.testing.assert_array_equal(np.asarray(o0[i][k]), np.asarray(o1[i][k]))


def test_a_bad_label_inside_a_run_of_batches_stops_at_its_batch(monkeypatch):
    """The steps before the batch with the bad label are taken, exactly as going batch by batch."""
    import fastmlp.train.loop as loop

    monkeypatch.setattr(loop, "_CHUNK_FLOATS", 4 * 40)
    x, y = blobs(40)
    y[23] = 7
    states = []
    for cls in (DataLoader, PlainLoader):
        seeded(0)
        model = small_model()
        with pytest.raises(IndexError, match="out of range for 3 classes"):
            fit(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=0.01),
                cls(TensorDataset(x, y), batch_size=4), progress=False)
        states.append(state_arrays(model))
    for k in states[0]:
        np.testing.assert_array_equal(states[0][k], states[1][k])


def test_only_row_wise_datasets_are_gathered_in_runs():
    """A dataset's own __getbatch__ may mix the rows of a batch: fit leaves its batches as they come."""
    x, y = blobs(20)

    class Mixing(TensorDataset):
        def __getbatch__(self, indices):
            a, b = super().__getbatch__(indices)
            return a - a.mean(0), b

    assert DataLoader(TensorDataset(x, y), batch_size=4)._row_chunks(100) is not None
    assert DataLoader(Mixing(x, y), batch_size=4)._row_chunks(100) is None
    assert DataLoader(TensorDataset(x, y), batch_size=4, collate_fn=lambda b: b)._row_chunks(100) is None
