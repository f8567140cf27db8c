"""Benchmark rows: dropout forward (Philox mask + scale) and backward against the
plain NumPy way (a uniform draw compared with p, then x * mask / (1 - p))."""
from __future__ import annotations

import numpy as np

from fastmlp import _C

if __package__:
    from .common import compare
else:
    from common import compare

P = 0.2


def rows(quick: bool = False, torch=None):
    out = []
    rng = np.random.default_rng(0)
    shapes = [(128, 512)] if quick else [(20, 512), (128, 512), (256, 1024)]
    for m, n in shapes:
        x = rng.standard_normal((m, n)).astype(np.float32)
        y = np.empty_like(x)
        step = [0]

        def fast(x=x, y=y, step=step):
            step[0] += 1
            return _C.dropout_forward(x, P, 1234, step[0], y)

        def numpy_way(x=x):
            mask = rng.random(x.shape) >= P
            return x * mask / (1.0 - P), mask

        torch_fn = None
        if torch is not None:
            tx = torch.from_numpy(x)

            def torch_fn(tx=tx):
                return torch.nn.functional.dropout(tx, P, training=True)
        out.append(compare("dropout_fw", f"{m}x{n}", fast, numpy_way, torch_fn, nbytes=2 * x.nbytes + x.size))

        dy = rng.standard_normal((m, n)).astype(np.float32)
        _, mask = _C.dropout_forward(x, P, 1234, 0)
        bmask = mask.astype(bool)
        dx = np.empty_like(dy)
        out.append(compare("dropout_bw", f"{m}x{n}",
                           lambda dy=dy, mask=mask, dx=dx: _C.dropout_backward(dy, mask, P, dx),
                           lambda dy=dy, bmask=bmask: dy * bmask / (1.0 - P), None,
                           nbytes=2 * dy.nbytes + dy.size))
    return out
