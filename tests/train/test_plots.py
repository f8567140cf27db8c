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


def _capture_figure(monkeypatch):
    """Keep the figure plot_history draws, to look at its lines."""
    from fastmlp.train import plots

    figures = []
    real = plots._figure

    def keep(size):
        fig = real(size)
        figures.append(fig)
        return fig

    monkeypatch.setattr(plots, "_figure", keep)
    return figures


def _lines(fig) -> dict:
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for ax in fig.axes
            for line in ax.get_lines()}


def test_history_dict_form_gives_the_same_plot(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    figures = _capture_figure(monkeypatch)
    h = history()
    plot_history(h, tmp_path / "a.png")
    plot_history(h.history, tmp_path / "b.png")
    assert (tmp_path / "b.png").read_bytes()[:8] == PNG
    assert _lines(figures[0]) == _lines(figures[1])
    assert set(_lines(figures[1])) == {"training loss", "validation loss", "validation accuracy"}


def test_keras_style_dict_and_history_object(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    figures = _capture_figure(monkeypatch)
    keras = {"loss": [0.9, 0.5, 0.4], "accuracy": [0.6, 0.8, 0.85], "val_loss": [1.0, 0.6, 0.5],
             "val_acc": [0.55, 0.75, 0.8]}
    assert plot_history(keras, tmp_path / "k.png") == str(tmp_path / "k.png")
    lines = _lines(figures[-1])
    assert lines["training loss"] == ([1, 2, 3], [0.9, 0.5, 0.4])
    assert lines["validation accuracy"][1] == pytest.approx([55, 75, 80])
    assert lines["training accuracy"][1] == pytest.approx([60, 80, 85])

    class KerasHistory:
        def __init__(self, history):
            self.history = history

    plot_history(KerasHistory({"loss": [0.3, 0.2]}), tmp_path / "o.png")
    assert _lines(figures[-1]) == {"training loss": ([1, 2], [0.3, 0.2])}


def test_bad_dict_forms():
    with pytest.raises(ValueError, match="no epochs"):
        plot_history({"loss": []}, "x.png")
    with pytest.raises(ValueError, match="different numbers of epochs"):
        plot_history({"loss": [1.0, 0.5], "val_loss": [1.0]}, "x.png")
    with pytest.raises(ValueError, match="no loss to plot"):
        plot_history({"val_acc": [0.5]}, "x.png")
    with pytest.raises(TypeError, match="expected a History or a dict"):
        plot_history([0.5, 0.4], "x.png")
