"""Benchmark rows: column sums (the bias gradient) and row sums against NumPy's sum."""
from __future__ import annotations

import numpy as np

from fastmlp import _C

if __package__:
    from .common import compare
else:
    from common import compare


def rows(quick: bool = False, torch=None):
    out = []
    rng = np.random.default_rng(0)
    shapes = [(128, 512)] if quick else [(20, 512), (128, 10), (128, 512), (256, 1024), (60000, 10)]
    for m, n in shapes:
        dy = rng.standard_normal((m, n)).astype(np.float32)
        db = np.empty(n, dtype=np.float32)
        tdy = torch.from_numpy(dy) if torch is not None else None
        out.append(compare("colsum", f"{m}x{n}", lambda dy=dy, db=db: _C.colsum(dy, db),
                           lambda dy=dy, db=db: np.sum(dy, axis=0, out=db),
                           (lambda tdy=tdy: tdy.sum(0)) if torch is not None else None, nbytes=dy.nbytes))
    for m, n in ([(128, 512)] if quick else [(128, 512), (256, 1024)]):
        x = rng.standard_normal((m, n)).astype(np.float32)
        s = np.empty(m, dtype=np.float32)
        tx = torch.from_numpy(x) if torch is not None else None
        out.append(compare("rowsum", f"{m}x{n}", lambda x=x, s=s: _C.rowsum(x, s),
                           lambda x=x, s=s: np.sum(x, axis=1, out=s),
                           (lambda tx=tx: tx.sum(1)) if torch is not None else None, nbytes=x.nbytes))
    return out
