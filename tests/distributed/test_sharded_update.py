"""fit's optimizer update sharded over the processes of a machine (fastmlp.distributed.sharded_update):
bitwise the unsharded path, on one machine and on simulated machines of one and two processes,
with and without an eager step that sends every process back to its own memory."""
from __future__ import annotations

import numpy as np
import pytest

import ddp_common as C
from mpirun import check, run_mpi


@pytest.mark.parametrize("n, grouping, opt_name, route", [
    (4, "parity", "adam", "native"),    # two machines of two processes
    (3, "parity", "sgd", "native"),     # a machine of two and a machine of one
    (2, "node", "adamw", "eager"),      # an eager step mid-epoch: the rest of it unsharded
    (3, "parity", "nesterov", "eager"),
])
def test_sharded_fit_is_bitwise_the_unsharded_fit(tmp_path, n, grouping, opt_name, route):
    runs = {}
    for how in ("sharded", "unsharded"):
        out = tmp_path / how
        out.mkdir()
        check(run_mpi("sharded_fit_job.py", str(out), grouping, opt_name, how, route, n=n, timeout=180))
        runs[how] = {what: [dict(np.load(out / f"{what}{r}.npz")) for r in range(n)]
                     for what in ("params", "state", "grads")}
        steps = [int(np.load(out / f"steps{r}.npy")) for r in range(n)]
        per_epoch = (C.SAMPLES // n) // C.BATCH
        if how == "unsharded":
            assert steps == [0] * n
        elif route == "native":  # every step of both epochs
            assert steps == [2 * per_epoch] * n
        else:  # the steps before the eager one at least; never all of them
            assert len(set(steps)) == 1 and 1 <= steps[0] < 2 * per_epoch
    for what in ("params", "state", "grads"):
        want = runs["unsharded"][what][0]
        assert want
        for how in ("sharded", "unsharded"):
            for r in range(n):  # the same bits on every rank, and in both paths
                assert sorted(runs[how][what][r]) == sorted(want)
                for k in want:
                    np.testing.assert_array_equal(runs[how][what][r][k], want[k], err_msg=f"{how} {what} {k} rank {r}")
