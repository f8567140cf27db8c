"""evaluate against NumPy, and the per-class report against the numbers the MNIST tutorial prints."""
from __future__ import annotations

import numpy as np
import pytest

import fastmlp
from fastmlp import nn
from fastmlp.train import EvalResult, evaluate, format_class_report
from fastmlp.utils.data import DataLoader, TensorDataset


def fixed_linear(w: np.ndarray, b: np.ndarray) -> nn.Linear:
    lin = nn.Linear(w.shape[1], w.shape[0])
    with fastmlp.no_grad():
        lin.weight.copy_(fastmlp.from_numpy(w))
        lin.bias.copy_(fastmlp.from_numpy(b))
    return lin


def problem(n=103, c=4, d=5, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((c, d)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    x = rng.standard_normal((n, d)).astype(np.float32)
    y = rng.integers(0, c, size=n).astype(np.int64)
    return w, b, x, y


def test_accuracy_confusion_matrix_and_loss_match_numpy():
    w, b, x, y = problem()
    model = fixed_linear(w, b)
    res = evaluate(model, DataLoader(TensorDataset(x, y), batch_size=10), nn.CrossEntropyLoss())
    logits = x.astype(np.float64) @ w.T + b
    pred = logits.argmax(1)
    cm = np.zeros((4, 4), dtype=np.int64)
    for t, p in zip(y, pred):
        cm[t, p] += 1
    np.testing.assert_array_equal(res.confusion_matrix, cm)
    assert res.accuracy == pytest.approx((pred == y).mean())
    assert res.samples == 103
    logp = logits - logits.max(1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    assert res.loss == pytest.approx(-logp[np.arange(103), y].mean(), rel=1e-5)
    np.testing.assert_array_equal(res.class_total, np.bincount(y, minlength=4))
    np.testing.assert_array_equal(res.class_correct, np.bincount(y[pred == y], minlength=4))
    np.testing.assert_allclose(res.per_class_accuracy, res.class_correct / res.class_total)


def test_uneven_last_batch_gives_the_per_sample_mean():
    w, b, x, y = problem(n=23)
    model = fixed_linear(w, b)
    whole = evaluate(model, DataLoader(TensorDataset(x, y), batch_size=23), nn.CrossEntropyLoss())
    pieces = evaluate(model, DataLoader(TensorDataset(x, y), batch_size=5), nn.CrossEntropyLoss())
    assert pieces.loss == pytest.approx(whole.loss, rel=1e-6)


def test_regression_has_loss_but_no_accuracy():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((20, 3)).astype(np.float32)
    t = rng.standard_normal((20, 1)).astype(np.float32)
    w = rng.standard_normal((1, 3)).astype(np.float32)
    model = fixed_linear(w, np.zeros(1, np.float32))
    res = evaluate(model, DataLoader(TensorDataset(x, t), batch_size=20), nn.MSELoss())
    assert res.accuracy is None and res.confusion_matrix is None and res.per_class_accuracy is None
    assert res.loss == pytest.approx(((x @ w.T - t) ** 2).mean(), rel=1e-5)
    with pytest.raises(ValueError, match="needs a classification result"):
        format_class_report(res)


def test_evaluate_restores_the_mode_and_is_deterministic_with_dropout():
    model = nn.Sequential(nn.Linear(5, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 4))
    _, _, x, y = problem()
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    a = evaluate(model, loader, nn.CrossEntropyLoss())
    b = evaluate(model, loader, nn.CrossEntropyLoss())
    assert a.loss == b.loss and model.training


def test_label_out_of_range_without_a_loss():
    w, b, x, y = problem()
    y[5] = 7
    with pytest.raises(IndexError, match="label 7 is out of range for a model with 4 outputs"):
        evaluate(fixed_linear(w, b), DataLoader(TensorDataset(x, y), batch_size=10))


def test_empty_loader():
    with pytest.raises(ValueError, match="no batches"):
        evaluate(nn.Linear(2, 2), DataLoader(TensorDataset(fastmlp.zeros(0, 2)), batch_size=2))


# The dropout-MLP tutorial's final test report, as it printed it.
SEED_CORRECT = [971, 1123, 1001, 984, 960, 870, 935, 993, 946, 981]
SEED_TOTAL = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
SEED_LINES = """Test Loss: 0.074413

Test Accuracy of 0: 99% (971/980)
Test Accuracy of 1: 98% (1123/1135)
Test Accuracy of 2: 96% (1001/1032)
Test Accuracy of 3: 97% (984/1010)
Test Accuracy of 4: 97% (960/982)
Test Accuracy of 5: 97% (870/892)
Test Accuracy of 6: 97% (935/958)
Test Accuracy of 7: 96% (993/1028)
Test Accuracy of 8: 97% (946/974)
Test Accuracy of 9: 97% (981/1009)

Test Accuracy (Overall): 97% (9764/10000)"""


def seed_result() -> EvalResult:
    cm = np.zeros((10, 10), dtype=np.int64)
    for i, (c, t) in enumerate(zip(SEED_CORRECT, SEED_TOTAL)):
        cm[i, i] = c
        cm[i, (i + 1) % 10] = t - c
    return EvalResult(loss=0.0744134, accuracy=9764 / 10000, samples=10000, confusion_matrix=cm)


def test_report_reproduces_the_tutorial_output():
    text = format_class_report(seed_result())
    squeeze = [" ".join(line.split()) for line in text.splitlines()]
    assert squeeze == SEED_LINES.splitlines()
    assert "Test Accuracy of     3: 97% (984/1010)" in text  # %5s, as the tutorial's format string


def test_report_with_class_names_and_an_empty_class():
    res = seed_result()
    res.confusion_matrix[4, :] = 0
    text = format_class_report(res, classes=[f"c{i}" for i in range(10)], title="Validation")
    assert "Validation Accuracy of    c4: N/A (no training examples)" in text
    assert "Validation Accuracy of    c0: 99% (971/980)" in text
    assert text.splitlines()[-1] == "Validation Accuracy (Overall): 97% (8804/9018)"
