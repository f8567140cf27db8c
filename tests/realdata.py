"""Where the tests find the real MNIST files (shared by tests/data and tests/train)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import pytest


def real_mnist_root() -> Optional[Path]:
    """The folder with the real MNIST files: $FASTMLP_DATA if it holds them, else ../shared/data/mnist."""
    candidates = []
    if os.environ.get("FASTMLP_DATA"):
        candidates.append(Path(os.environ["FASTMLP_DATA"]))
    repo = Path(__file__).resolve().parents[1]
    # ../shared/data/mnist beside the repository (or beside one of its parent folders)
    candidates += [up / "shared" / "data" / "mnist" for up in repo.parents]
    for c in candidates:
        for sub in (c, c / "MNIST" / "raw", c / "MNIST"):
            if any((sub / n).exists() for n in ("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte")):
                return c
    return None


def require_real_mnist() -> Path:
    root = real_mnist_root()
    if root is None:
        pytest.skip("real MNIST not found: set FASTMLP_DATA to a folder with the four MNIST idx files "
                    "(or provide ../shared/data/mnist next to the repository)")
    return root
