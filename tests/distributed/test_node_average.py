"""fastmlp.distributed.node_average: averaging through MPI-3 shared memory (one machine, several
simulated machines, processes alone on theirs) against float64 NumPy averages, under mpiexec."""
from __future__ import annotations

import numpy as np
import pytest

from mpirun import check, run_mpi

LENGTHS = (1, 7, 17, 63, 65, 1001, 70001)  # the last spans several blocks of the averaging
U = 2.0 ** -24  # float32 unit roundoff


def contributions(n: int, size: int) -> np.ndarray:
    """Every rank's values, as node_average_job.py makes them: [size, n] float32."""
    out = []
    for r in range(size):
        rng = np.random.default_rng(1000 * n + r)
        out.append((rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4, n)).astype(np.float32))
    return np.stack(out)


def assert_float32_average(got: np.ndarray, xs: np.ndarray, what: str) -> None:
    """`got` is the average of the rows of `xs` up to float32 rounding: a sum of p float32 values
    and a division, each rounding by at most U relative to what it handles."""
    p = len(xs)
    want = xs.astype(np.float64).mean(axis=0)
    bound = 2 * U * ((p - 1) * np.abs(xs.astype(np.float64)).sum(axis=0) / p + np.abs(want)) + 1e-30
    assert got.dtype == np.float32
    err = np.abs(got.astype(np.float64) - want)
    assert (err <= bound).all(), f"{what}: max error {err.max()} against a bound {bound[err.argmax()]}"


def load(path, size: int) -> list:
    return [dict(np.load(path / f"rank{r}.npz")) for r in range(size)]


@pytest.mark.parametrize("grouping, size", [("node", 2), ("parity", 4), ("parity", 3), ("alone", 2)])
def test_average_equals_the_float64_average_and_is_bitwise_the_same_on_every_rank(tmp_path, grouping, size):
    check(run_mpi("node_average_job.py", str(tmp_path), grouping, n=size, timeout=120))
    ranks = load(tmp_path, size)
    shared = [bool(r["shared"]) for r in ranks]
    # slots everywhere or nowhere; none when every process is alone on its "machine"
    assert shared == [grouping != "alone"] * size
    if grouping == "parity":
        assert [int(r["local"]) for r in ranks] == [len(range(q % 2, size, 2)) for q in range(size)]
    for key in set(ranks[0]) - {"local"}:  # everything else is the same on every rank, bit for bit
        for r in range(1, size):
            np.testing.assert_array_equal(ranks[r][key], ranks[0][key], err_msg=f"{key} on rank {r}")
    for n in LENGTHS:
        xs = contributions(n, size)
        assert_float32_average(ranks[0][f"own{n}"], xs, f"own{n}")
        if shared[0]:
            assert_float32_average(ranks[0][f"slot{n}"], xs, f"slot{n}")
            np.testing.assert_array_equal(ranks[0][f"untouched{n}"], -7.0)
    if grouping == "node":
        # one machine: summed in rank order, then divided, all in float32
        for n in LENGTHS:
            xs = contributions(n, size)
            acc = xs[0].copy()
            for r in range(1, size):
                acc += xs[r]
            np.testing.assert_array_equal(ranks[0][f"slot{n}"], acc / np.float32(size))
    for r in ranks:
        assert "average different buffers" in str(r["mismatch"])
