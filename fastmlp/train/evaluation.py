"""``evaluate``: loss, accuracy, per-class accuracy and confusion matrix of a model on a loader.

The loop is the evaluation half of a PyTorch training script: ``model.eval()``,
``no_grad``, mean loss over samples (``loss.item() * batch_size`` summed, divided
by the number of samples), and for classifiers the arg-max prediction compared
with the label. ``format_class_report`` prints the per-class table of the usual
MNIST tutorial (``Test Accuracy of     3: 97% (984/1010)``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from .._device import batch_device, device_scope
from ..autograd import no_grad
from ..tensor import Tensor

__all__ = ["EvalResult", "evaluate", "format_class_report", "model_device"]


@dataclass
class EvalResult:
    """What ``evaluate`` measured. Classification fields are None for other models (e.g. regression)."""

    loss: Optional[float]
    accuracy: Optional[float]
    samples: int
    confusion_matrix: Optional[np.ndarray] = None  # [C, C] int64: row = true class, column = prediction
    classes: Optional[list] = field(default=None)

    @property
    def class_total(self) -> Optional[np.ndarray]:
        """Samples of each true class."""
        return None if self.confusion_matrix is None else self.confusion_matrix.sum(axis=1)

    @property
    def class_correct(self) -> Optional[np.ndarray]:
        """Correct predictions per true class."""
        return None if self.confusion_matrix is None else np.diag(self.confusion_matrix).copy()

    @property
    def per_class_accuracy(self) -> Optional[np.ndarray]:
        """Accuracy of each true class (NaN for a class without samples)."""
        if self.confusion_matrix is None:
            return None
        total = self.class_total
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, self.class_correct / np.maximum(total, 1), np.nan)

    def report(self, title: str = "Test") -> str:
        return format_class_report(self, self.classes, title)


def model_device(model) -> Optional[object]:
    """The device of the model's first parameter, or None for a model without parameters."""
    for p in model.parameters():
        return p.device
    return None


def _host_array(t) -> np.ndarray:
    if isinstance(t, Tensor):
        return t.detach()._host()
    return np.asarray(t)


def evaluate(model, loader, loss_fn: Optional[Callable] = None, *, device=None, num_classes: Optional[int] = None,
             classes: Optional[Sequence[str]] = None) -> EvalResult:
    """Run `model` over `loader` in eval mode without gradients.

    Returns the mean loss per sample (when `loss_fn` is given) and, when the model
    outputs scores [N, C] for integer labels [N], the accuracy, the confusion
    matrix and the per-class accuracies. The model's train/eval mode is restored.
    The loader must yield ``(inputs, targets)`` pairs; inputs and targets are moved
    to the model's device. `device` (``"cuda"``, ``"cuda:1"``, a ``fastmlp.device``)
    must be where the model is, and usable: asking for CUDA without a usable GPU
    raises RuntimeError.
    """
    was_training = getattr(model, "training", False)
    dev = batch_device(model, device, "evaluate")
    loss_sum = 0.0
    samples = 0
    preds: list = []
    labels: list = []
    width = num_classes
    classify = True
    batches = 0
    model.eval()
    try:
        with no_grad(), device_scope(dev):
            for batch in loader:
                inputs, targets = _pair(batch, "evaluate")
                if dev is not None:
                    inputs = inputs.to(dev)
                    targets = targets.to(dev)
                output = model(inputs)
                n = len(inputs)
                batches += 1
                if loss_fn is not None:
                    loss_sum += float(loss_fn(output, targets).item()) * n
                samples += n
                if classify:
                    out_dims = output.dim() if isinstance(output, Tensor) else np.ndim(output)
                    t = _host_array(targets)
                    if out_dims != 2 or t.ndim != 1 or t.dtype.kind not in "iu":
                        classify = False
                        continue
                    if width is None:
                        width = int(output.shape[1])
                    preds.append(_host_array(output.argmax(1)))
                    labels.append(t)
    finally:
        model.train(was_training)
    if batches == 0:
        raise ValueError("evaluate: the loader yielded no batches (is its dataset empty?)")
    loss = loss_sum / samples if loss_fn is not None and samples else None
    if not classify or not preds:
        return EvalResult(loss, None, samples, None, list(classes) if classes is not None else None)
    y = np.concatenate(labels).astype(np.int64)
    p = np.concatenate(preds).astype(np.int64)
    bad = (y < 0) | (y >= width)
    if bad.any():
        first = int(y[bad][0])
        raise IndexError(f"evaluate: label {first} is out of range for a model with {width} outputs "
                         f"(expected 0 <= label < {width})")
    cm = np.bincount(y * width + p, minlength=width * width).reshape(width, width).astype(np.int64)
    accuracy = float(np.trace(cm)) / len(y)
    return EvalResult(loss, accuracy, samples, cm, list(classes) if classes is not None else None)


def _pair(batch, where: str):
    try:
        inputs, targets = batch
    except (TypeError, ValueError):
        raise TypeError(f"{where}: the loader must yield (inputs, targets) pairs; got a {type(batch).__name__}"
                        + (f" of {len(batch)} items" if hasattr(batch, "__len__") else "")) from None
    return inputs, targets


def format_class_report(result: EvalResult, classes: Optional[Sequence[str]] = None, title: str = "Test") -> str:
    """The per-class accuracy table, as the MNIST tutorial prints it::

        Test Loss: 0.074413

        Test Accuracy of     0: 99% (971/980)
        ...
        Test Accuracy (Overall): 97% (9764/10000)

    Percentages are truncated to whole numbers, as ``%2d`` does. Class labels are
    the class indices unless `classes` (or ``result.classes``) names them.
    """
    if result.confusion_matrix is None:
        raise ValueError("format_class_report needs a classification result (a confusion matrix); this model's "
                         "outputs or targets are not class scores and labels")
    lines = []
    if result.loss is not None:
        lines.append(f"{title} Loss: {result.loss:.6f}\n")
    names = classes if classes is not None else result.classes
    correct = result.class_correct
    total = result.class_total
    for i in range(len(total)):
        label = str(names[i]) if names is not None and i < len(names) else str(i)
        if total[i] > 0:
            lines.append("%s Accuracy of %5s: %2d%% (%2d/%2d)" % (title, label, 100 * correct[i] / total[i],
                                                                 correct[i], total[i]))
        else:
            lines.append("%s Accuracy of %5s: N/A (no training examples)" % (title, label))
    lines.append("\n%s Accuracy (Overall): %2d%% (%2d/%2d)" % (title, 100.0 * correct.sum() / total.sum(),
                                                               correct.sum(), total.sum()))
    return "\n".join(lines)
