"""Helpers for the training tests: a small learnable problem, and where real MNIST lives."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from realdata import real_mnist_root, require_real_mnist  # noqa: F401  (re-exported)

import fastmlp
from fastmlp import nn
from fastmlp.utils.data import DataLoader, TensorDataset


def blobs(n: int = 240, classes: int = 3, dim: int = 4, seed: int = 0):
    """Gaussian clusters, one per class, well separated: (float32 [n, dim], int64 [n])."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes, dim)).astype(np.float32) * 4
    y = rng.integers(0, classes, size=n).astype(np.int64)
    x = centers[y] + rng.standard_normal((n, dim)).astype(np.float32) * 0.5
    return x, y


def loaders(n_train: int = 240, n_val: int = 90, batch_size: int = 16, seed: int = 0):
    x, y = blobs(n_train + n_val, seed=seed)
    train = DataLoader(TensorDataset(x[:n_train], y[:n_train]), batch_size=batch_size, shuffle=True)
    val = DataLoader(TensorDataset(x[n_train:], y[n_train:]), batch_size=32)
    return train, val


def small_model(dim: int = 4, classes: int = 3, dropout: float = 0.0) -> nn.Module:
    layers = [nn.Linear(dim, 16), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(16, classes))
    return nn.Sequential(*layers)


def state_arrays(model: nn.Module) -> dict:
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}




def seeded(seed: int = 0) -> None:
    fastmlp.manual_seed(seed)


def write_mnist_like(folder: Path, n_train: int = 100, n_test: int = 40, seed: int = 0) -> Path:
    """Four gzip idx files in MNIST's format; each label is drawn as a bright band in row 2*label."""
    import gzip
    import struct

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        y = rng.integers(0, 10, size=n).astype(np.uint8)
        x = rng.integers(0, 40, size=(n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(y):
            x[i, 2 * label:2 * label + 2, :] = 250
        for kind, a in (("images-idx3", x), ("labels-idx1", y)):
            header = struct.pack(">BBBB", 0, 0, 0x08, a.ndim) + b"".join(struct.pack(">I", d) for d in a.shape)
            with gzip.open(folder / f"{prefix}-{kind}-ubyte.gz", "wb") as f:
                f.write(header + a.tobytes())
    return folder
