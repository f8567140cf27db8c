"""Helpers for the data tests: idx bytes written independently of fastmlp, and where real MNIST lives."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Optional

import numpy as np
from realdata import real_mnist_root, require_real_mnist  # noqa: F401  (re-exported)

TYPE_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B, np.dtype(">i4"): 0x0C,
              np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """The idx encoding of `array`: 0x0000, type code, ndim, big-endian dims, big-endian data."""
    a = np.asarray(array)
    big = a.dtype.newbyteorder(">") if a.dtype.itemsize > 1 else a.dtype
    code = TYPE_CODES[np.dtype(big)]
    return struct.pack(">BBBB", 0, 0, code, a.ndim) + b"".join(struct.pack(">I", d) for d in a.shape) + \
        a.astype(big).tobytes()


def write_file(path: Path, data: bytes, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def fake_mnist(n_train: int = 12, n_test: int = 7, seed: int = 0) -> dict:
    """Small MNIST-shaped splits: uint8 [N, 28, 28] images and uint8 labels 0..9."""
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, size=n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, size=n_test, dtype=np.uint8),
    }


def write_fake_mnist(folder: Path, gz: bool = True, arrays: Optional[dict] = None) -> dict:
    arrays = arrays if arrays is not None else fake_mnist()
    for name, a in arrays.items():
        write_file(folder / (name + (".gz" if gz else "")), idx_bytes(a), gz=gz)
    return arrays
