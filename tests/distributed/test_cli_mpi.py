"""`fastmlp train` under mpiexec -n 2: data-parallel, rank 0 alone prints and checkpoints."""
from __future__ import annotations

import gzip
import os
import struct
import sys

import numpy as np

import fastmlp
from fastmlp import cli

from mpirun import FASTMLP_ROOT, check, mpiexec, run_bounded


def write_idx_gz(path, a: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">HBB", 0, 8, a.ndim) + b"".join(struct.pack(">I", d) for d in a.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + a.astype(np.uint8).tobytes())


def mnist_like(folder, rng) -> None:
    """Images whose label is a bright band in row 2*label, so a small MLP learns them."""
    for prefix, n in (("train", 200), ("t10k", 60)):
        y = rng.integers(0, 10, size=n).astype(np.uint8)
        x = rng.integers(0, 40, size=(n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(y):
            x[i, 2 * label: 2 * label + 2, :] = 250
        write_idx_gz(folder / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx_gz(folder / f"{prefix}-labels-idx1-ubyte.gz", y)


def test_train_under_mpiexec_prints_once_and_checkpoints_on_rank_0(tmp_path, capsys):
    exe = mpiexec()
    data = tmp_path / "mnist"
    mnist_like(data, np.random.default_rng(0))
    ck = tmp_path / "ck.safetensors"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=FASTMLP_ROOT)
    cmd = [exe, "-n", "2", sys.executable, "-m", "fastmlp", "train", "--data", str(data), "--hidden", "32",
           "--epochs", "2", "--batch-size", "10", "--optimizer", "sgd", "--momentum", "0.9", "--checkpoint",
           str(ck), "--no-progress", "--no-download", "--plot", ""]
    result = check(run_bounded(cmd, env, timeout=120))
    out = result.stdout
    assert out.count("epoch 1/2  train_loss ") == 1 and out.count("epoch 2/2  train_loss ") == 1
    assert out.count("Test accuracy: ") == 1
    assert "2 processes" in out
    # the checkpoint of rank 0 is a plain (unprefixed) single-process checkpoint
    saved = fastmlp.load(ck)
    assert all(not k.startswith("module.") for k in saved["state_dict"])
    assert cli.main(["evaluate", str(ck), "--data", str(data), "--no-download"]) == 0
    assert "Test accuracy: " in capsys.readouterr().out
