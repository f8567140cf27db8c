"""Progress bars: off unless stderr is a terminal, tqdm when installed, the built-in bar without it."""
from __future__ import annotations

import io
import sys

import pytest
from trainhelpers import loaders, seeded, small_model

from fastmlp import nn, optim
from fastmlp.train import fit
from fastmlp.train.progress import NullProgress, TextProgress, TqdmProgress, make_progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_off_when_disabled_or_not_a_terminal():
    assert isinstance(make_progress(10, "x", enabled=False, stream=Terminal()), NullProgress)
    assert isinstance(make_progress(10, "x", enabled=True, stream=io.StringIO()), NullProgress)


def test_builtin_bar_when_tqdm_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    stream = Terminal()
    bar = make_progress(4, "Epoch 1/2", stream=stream)
    assert isinstance(bar, TextProgress)
    bar._next = 0.0
    bar.update(2, loss_sum=3.0, samples=6)
    bar.update(4, loss_sum=4.0, samples=8)
    bar.close("loss=0.5000")
    out = stream.getvalue()
    assert out.startswith("\rEpoch 1/2:  50%|############------------| 2/4 [")
    assert "loss=0.5000, " in out and "samples/s" in out
    last = out.rstrip("\n").split("\r")[-1].rstrip()  # padded to erase the longer previous line
    assert last.startswith("Epoch 1/2: 100%|########################| 4/4 [") and last.endswith("loss=0.5000]")
    assert out.endswith("\n")


def test_builtin_bar_for_bytes_without_total(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    stream = Terminal()
    bar = make_progress(None, "file.gz", stream=stream, unit="B")
    bar.update(2_500_000)
    bar.close()
    assert "file.gz: 2.5MB [" in stream.getvalue()


def test_tqdm_bar_when_installed():
    pytest.importorskip("tqdm")
    stream = Terminal()
    bar = make_progress(3, "Epoch 2/5", stream=stream)
    assert isinstance(bar, TqdmProgress)
    for i in range(1, 4):
        bar.update(i, loss_sum=float(i), samples=2 * i)
    bar.close("loss=0.5000")
    out = stream.getvalue()
    assert "Epoch 2/5" in out and "3/3" in out and "loss=0.5000" in out


@pytest.mark.parametrize("have_tqdm", [True, False])
def test_fit_draws_a_bar_on_a_terminal(monkeypatch, have_tqdm):
    if have_tqdm:
        pytest.importorskip("tqdm")
    else:
        monkeypatch.setitem(sys.modules, "tqdm", None)
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    seeded(0)
    train, val = loaders(n_train=32)
    model = small_model()
    fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), train, val, epochs=2)
    out = term.getvalue()
    assert "Epoch 1/2" in out and "Epoch 2/2" in out and "val_loss=" in out and "samples/s" in out


def test_fit_without_progress_writes_nothing(monkeypatch):
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    train, _ = loaders(n_train=16)
    model = small_model()
    fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), train, epochs=1, progress=False)
    assert term.getvalue() == ""
