"""PNG plots of a training run: loss and accuracy curves, and a confusion matrix.

Needs matplotlib (``pip install fastmlp[plot]``); without it each function prints
a one-line note and returns None. Figures are drawn with the non-interactive Agg
canvas directly, so plotting never opens a window and never changes pyplot's
global backend.
"""
from __future__ import annotations

import collections.abc
import os
import sys
from typing import Any, Optional, Sequence, Union

import numpy as np

from .history import History, _resolve

__all__ = ["plot_history", "plot_confusion_matrix"]

_NOTE = "matplotlib is not installed; skipping the plot (pip install 'fastmlp[plot]' to get plots)"


def _figure(figsize: tuple):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        print(_NOTE, file=sys.stderr)
        return None
    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _integer_epochs(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _finite(values: Sequence) -> list:
    return [np.nan if v is None else float(v) for v in values]


def _history_columns(history: Any) -> dict:
    """The columns of `history` as a dict of lists: a History, its ``.history`` dict (Keras-style names such
    as ``loss`` and ``val_acc`` included), or any object whose ``.history`` is such a dict (Keras's History)."""
    if isinstance(history, History):
        return history.history
    if isinstance(history, collections.abc.Mapping):
        columns = history
    elif isinstance(getattr(history, "history", None), collections.abc.Mapping):
        columns = history.history
    else:
        raise TypeError(f"plot_history: expected a History or a dict of per-epoch lists (history.history); got "
                        f"{type(history).__name__}")
    out = {}
    for name, values in columns.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, collections.abc.Iterable):
            raise TypeError(f"plot_history: the column {name!r} must be a list of per-epoch values; got "
                            f"{type(values).__name__}")
        out[str(name)] = list(values)
    lengths = {name: len(v) for name, v in out.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"plot_history: the columns have different numbers of epochs: {lengths}")
    return out


def _present(columns: dict, name: str) -> Optional[str]:
    """The key of metric `name` in `columns` (through History's aliases) when it has some value, else None."""
    key = _resolve(name, columns)
    if key in columns and any(v is not None for v in columns[key]):
        return key
    return None


def plot_history(history, path: Union[str, os.PathLike], title: Optional[str] = None) -> Optional[str]:
    """Write loss curves (train and validation) and, when present, accuracy curves to a PNG at `path`.

    `history` is what ``fit`` returns, or its dict form ``history.history`` — also with
    Keras's names (``{"loss": [...], "val_loss": [...], "val_acc": [...]}``) or a Keras
    History object; without an ``epoch`` column the epochs are numbered from 1.
    """
    columns = _history_columns(history)
    n = len(next(iter(columns.values()))) if columns else 0
    if n == 0:
        raise ValueError("plot_history: the history has no epochs to plot")
    train_loss = _present(columns, "train_loss")
    val_loss = _present(columns, "val_loss")
    if train_loss is None and val_loss is None:
        raise ValueError(f"plot_history: the history has no loss to plot (train_loss or loss, val_loss); it has "
                         f"{list(columns)}")
    val_acc = _present(columns, "val_accuracy")
    train_acc = _present(columns, "train_accuracy")
    has_acc = val_acc is not None or train_acc is not None
    fig = _figure((11, 4) if has_acc else (6, 4))
    if fig is None:
        return None
    epochs = columns["epoch"] if _present(columns, "epoch") else list(range(1, n + 1))
    ax = fig.add_subplot(1, 2 if has_acc else 1, 1)
    if train_loss is not None:
        ax.plot(epochs, _finite(columns[train_loss]), marker="o", label="training loss")
    if val_loss is not None:
        ax.plot(epochs, _finite(columns[val_loss]), marker="o", label="validation loss")
    _integer_epochs(ax)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("Loss")
    ax.grid(True, alpha=0.3)
    ax.legend()
    if has_acc:
        ax2 = fig.add_subplot(1, 2, 2)
        if train_acc is not None:
            ax2.plot(epochs, [100 * v for v in _finite(columns[train_acc])], marker="o", color="tab:blue",
                     label="training accuracy")
        if val_acc is not None:
            ax2.plot(epochs, [100 * v for v in _finite(columns[val_acc])], marker="o", color="tab:green",
                     label="validation accuracy")
        _integer_epochs(ax2)
        ax2.set_xlabel("epoch")
        ax2.set_ylabel("accuracy (%)")
        ax2.set_title("Accuracy")
        ax2.grid(True, alpha=0.3)
        ax2.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = os.fspath(path)
    fig.savefig(out, format="png")
    return out


def plot_confusion_matrix(cm, path: Union[str, os.PathLike], classes: Optional[Sequence[str]] = None,
                          normalize: bool = False, title: str = "Confusion matrix") -> Optional[str]:
    """Write the confusion matrix `cm` ([C, C], rows = true class, columns = prediction) to a PNG at `path`."""
    m = np.asarray(cm)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"plot_confusion_matrix: cm must be a square [C, C] matrix; got shape {list(m.shape)}")
    c = m.shape[0]
    names = [str(x) for x in classes] if classes is not None else [str(i) for i in range(c)]
    if len(names) != c:
        raise ValueError(f"plot_confusion_matrix: {len(names)} class names for a {c}x{c} matrix")
    shown = m.astype(np.float64)
    if normalize:
        rows = shown.sum(axis=1, keepdims=True)
        shown = np.divide(shown, rows, out=np.zeros_like(shown), where=rows > 0)
    size = max(4.0, 0.55 * c + 2)
    fig = _figure((size + 1, size))
    if fig is None:
        return None
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(shown, cmap="Blues")
    fig.colorbar(im, ax=ax)
    ax.set_xticks(range(c))
    ax.set_yticks(range(c))
    ax.set_xticklabels(names, rotation=45 if max(len(n) for n in names) > 2 else 0, ha="right")
    ax.set_yticklabels(names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if c <= 20:
        threshold = shown.max() / 2 if shown.size else 0
        for i in range(c):
            for j in range(c):
                text = f"{shown[i, j]:.2f}" if normalize else f"{int(m[i, j])}"
                ax.text(j, i, text, ha="center", va="center", fontsize=7,
                        color="white" if shown[i, j] > threshold else "black")
    fig.tight_layout()
    out = os.fspath(path)
    fig.savefig(out, format="png")
    return out
