"""The example scripts run end to end (on small MNIST-format files, for one epoch)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from trainhelpers import write_mnist_like

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, *args: str, cwd: Path) -> str:
    out = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                         timeout=300, cwd=cwd, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_dropout_mlp_example(tmp_path):
    data = write_mnist_like(tmp_path / "mnist")
    out = run_example("mnist_dropout_mlp.py", "--epochs", "2", "--data", str(data), "--checkpoint",
                      str(tmp_path / "model.pt"), cwd=tmp_path)
    assert "Epoch: 1 \tTraining Loss: " in out and "Validation loss decreased (inf --> " in out
    assert "Test Accuracy (Overall): " in out and (tmp_path / "model.pt").exists()


def test_adam_example(tmp_path):
    data = write_mnist_like(tmp_path / "mnist")
    out = run_example("mnist_adam_mlp.py", "--epochs", "1", "--data", str(data), cwd=tmp_path)
    assert "grad_fn=<NllLossBackward0>" in out and "Accuracy:  " in out


def test_regression_example_fit_matches_the_trainer(tmp_path):
    out = run_example("regression_gradients.py", "--epochs", "3", cwd=tmp_path)
    assert "fit gives the same losses: True" in out
