"""Benchmark rows: activation forward/backward vs NumPy expressions."""
from __future__ import annotations

import numpy as np

from fastmlp import _C

if __package__:
    from .common import compare
else:
    from common import compare

ACT = {"relu": 1, "sigmoid": 3, "tanh": 4, "gelu": 5}


def rows(quick: bool = False, torch=None):
    out = []
    rng = np.random.default_rng(0)
    shapes = [(128, 512)] if quick else [(20, 512), (128, 512), (256, 1024)]
    for m, n in shapes:
        x = rng.standard_normal((m, n)).astype(np.float32)
        dy = rng.standard_normal((m, n)).astype(np.float32)
        y = np.empty_like(x)
        nbytes = 2 * x.nbytes
        tx = torch.from_numpy(x) if torch else None
        out.append(compare("relu_fw", f"{m}x{n}", lambda: _C.act_forward(x, 1, 0.0, y),
                           lambda: np.maximum(x, 0, out=y), (lambda: torch.relu(tx)) if torch else None,
                           nbytes=nbytes))
        relu_y = np.maximum(x, 0)
        out.append(compare("relu_bw", f"{m}x{n}", lambda: _C.act_backward(dy, relu_y, 1, 0.0, y),
                           lambda: np.multiply(dy, relu_y > 0, out=y), None, nbytes=3 * x.nbytes))
        out.append(compare("sigmoid_fw", f"{m}x{n}", lambda: _C.act_forward(x, 3, 0.0, y),
                           lambda: np.divide(1.0, 1.0 + np.exp(-x), out=y),
                           (lambda: torch.sigmoid(tx)) if torch else None, nbytes=nbytes))
        out.append(compare("tanh_fw", f"{m}x{n}", lambda: _C.act_forward(x, 4, 0.0, y),
                           lambda: np.tanh(x, out=y), (lambda: torch.tanh(tx)) if torch else None, nbytes=nbytes))
    return out
