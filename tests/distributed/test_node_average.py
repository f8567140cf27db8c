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
    per_rank = {"local", "chunk", "kept"}
    for key in {k for k in ranks[0] if k.rstrip("0123456789") not in per_rank}:  # the same on every rank, bit for bit
        for r in range(1, size):
            np.testing.assert_array_equal(ranks[r][key], ranks[0][key], err_msg=f"{key} on rank {r}")
    for n in LENGTHS:
        xs = contributions(n, size)
        assert_float32_average(ranks[0][f"own{n}"], xs, f"own{n}")
        if shared[0]:
            assert_float32_average(ranks[0][f"slot{n}"], xs, f"slot{n}")
            np.testing.assert_array_equal(ranks[0][f"untouched{n}"], -7.0)
    if shared[0]:
        local = [int(r["local"]) for r in ranks]
        machines = [list(range(size))] if grouping == "node" else [list(range(q, size, 2)) for q in (0, 1)]
        for n in LENGTHS:
            xs = contributions(n, size)
            # the reduce-scatter: slot 0 of each machine holds the whole average (as average() gives it),
            # each process averaged its own chunk of it, the other slots kept their values
            np.testing.assert_array_equal(ranks[0][f"scattered{n}"], ranks[0][f"slot{n}"])
            np.testing.assert_array_equal(ranks[0][f"mixed{n}"], ranks[0][f"slot{n}"])
            assert bool(ranks[0][f"mixed_none{n}"])
            for m in machines:
                chunks = sorted(tuple(int(v) for v in ranks[r][f"chunk{n}"]) for r in m)
                assert chunks[0][0] == 3 and chunks[-1][1] == 3 + n
                assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))  # in order, no gap or overlap
                for i, r in enumerate(m):
                    if i > 0:
                        np.testing.assert_array_equal(ranks[r][f"kept{n}"], xs[r])
            assert local == [len(m) for q in range(size) for m in machines if q in m]
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
