"""``fastmlp.train``: a ready training loop for PyTorch-style models.

``fit`` trains with validation, callbacks (EarlyStopping, ModelCheckpoint, a
learning-rate schedule) and a progress bar, returning a ``History``;
``evaluate`` measures loss, accuracy, per-class accuracy and the confusion
matrix; ``plot_history`` and ``plot_confusion_matrix`` write PNGs (with matplotlib).
"""
from .callbacks import Callback, EarlyStopping, EpochLogger, FitState, LRSchedulerCallback, ModelCheckpoint
from .evaluation import EvalResult, evaluate, format_class_report
from .loop import fit
from .history import History
from .mlp import CheckpointMismatchError, build_mlp, load_mlp_checkpoint
from .plots import plot_confusion_matrix, plot_history

__all__ = ["fit", "evaluate", "EvalResult", "format_class_report", "History", "Callback", "FitState",
           "EarlyStopping", "ModelCheckpoint", "LRSchedulerCallback", "EpochLogger", "plot_history",
           "plot_confusion_matrix", "build_mlp", "load_mlp_checkpoint", "CheckpointMismatchError"]
