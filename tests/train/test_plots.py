"""plot_history and plot_confusion_matrix write PNGs, and skip with a note without matplotlib."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from fastmlp.train import History, plot_confusion_matrix, plot_history

PNG = b"\x89PNG\r\n\x1a\n"


def history(with_val=True):
    h = History()
    for e in range(1, 4):
        r = {"epoch": e, "train_loss": 1.0 / e}
        if with_val:
            r.update(val_loss=1.2 / e, val_accuracy=0.8 + 0.05 * e)
        h.append(r)
    return h


@pytest.mark.parametrize("with_val", [True, False])
def test_history_png(tmp_path, with_val):
    pytest.importorskip("matplotlib")
    out = plot_history(history(with_val), tmp_path / "h.png")
    assert out == str(tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes()[:8] == PNG


def test_confusion_matrix_png(tmp_path):
    pytest.importorskip("matplotlib")
    cm = np.array([[5, 1, 0], [0, 7, 2], [1, 0, 9]])
    assert plot_confusion_matrix(cm, tmp_path / "cm.png", classes=["a", "b", "c"], normalize=True)
    assert (tmp_path / "cm.png").read_bytes()[:8] == PNG


def test_plotting_does_not_touch_pyplots_backend(tmp_path):
    mpl = pytest.importorskip("matplotlib")
    before = mpl.rcParams["backend"]
    plot_history(history(), tmp_path / "h.png")
    assert mpl.rcParams["backend"] == before


def test_bad_inputs():
    with pytest.raises(ValueError, match="square"):
        plot_confusion_matrix(np.zeros((2, 3)), "x.png")
    with pytest.raises(ValueError, match="no epochs"):
        plot_history(History(), "x.png")


def test_without_matplotlib_a_note_and_no_file(tmp_path, monkeypatch, capsys):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    assert plot_history(history(), tmp_path / "h.png") is None
    assert plot_confusion_matrix(np.eye(2), tmp_path / "c.png") is None
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["matplotlib is not installed; skipping the plot (pip install 'fastmlp[plot]' to get plots)"] * 2
    assert not list(tmp_path.iterdir())
