"""fastmlp.distributed: the process group and the collectives, in-process and under mpiexec -n 2."""
from __future__ import annotations

import builtins
import sys

import numpy as np
import pytest

import fastmlp
import fastmlp.distributed as dist
from mpirun import check, run_mpi


def test_calls_before_init_raise_clearly():
    assert not dist.is_initialized()
    for fn, args in ((dist.get_rank, ()), (dist.get_world_size, ()), (dist.barrier, ()),
                     (dist.all_reduce, (fastmlp.zeros(2),)), (dist.broadcast, (fastmlp.zeros(2),)),
                     (dist.destroy_process_group, ())):
        with pytest.raises(RuntimeError, match="init_process_group"):
            fn(*args)


def test_init_without_mpi4py_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_mpi(name, *args, **kwargs):
        if name == "mpi4py" or name.startswith("mpi4py."):
            raise ImportError("No module named 'mpi4py'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mpi)
    for mod in [m for m in sys.modules if m == "mpi4py" or m.startswith("mpi4py.")]:
        monkeypatch.delitem(sys.modules, mod)
    with pytest.raises(ImportError, match=r'pip install "fastmlp\[mpi\]"'):
        dist.init_process_group()
    assert not dist.is_initialized()


def test_bad_backend_raises():
    with pytest.raises(ValueError, match="backend must be 'mpi'"):
        dist.init_process_group("gloo")


def test_single_process_group_is_the_identity():
    pytest.importorskip("mpi4py")
    dist.init_process_group("mpi")
    try:
        assert dist.get_rank() == 0 and dist.get_world_size() == 1
        t = fastmlp.tensor(np.array([1.5, -2.0], dtype=np.float32))
        for op in dist.ReduceOp:
            dist.all_reduce(t, op)
        np.testing.assert_array_equal(t.numpy(), [1.5, -2.0])
        with pytest.raises(ValueError, match="contiguous"):
            dist.all_reduce(fastmlp.tensor(np.zeros((4, 4), np.float32))[:, 1])
        with pytest.raises(TypeError, match="ReduceOp"):
            dist.all_reduce(t, "sum")
        with pytest.raises(ValueError, match="src must be a rank"):
            dist.broadcast(t, src=1)
        with pytest.raises(RuntimeError, match="twice"):
            dist.init_process_group()
    finally:
        dist.destroy_process_group()


def test_collectives_on_two_processes(tmp_path):
    check(run_mpi("collectives_job.py", str(tmp_path), n=2, timeout=60))
    base = np.arange(6, dtype=np.float64).reshape(2, 3)
    per_rank = [base * (r + 1) - r for r in range(2)]  # what each rank contributed
    expect = {"SUM": per_rank[0] + per_rank[1], "AVG": (per_rank[0] + per_rank[1]) / 2,
              "MAX": np.maximum(*per_rank), "MIN": np.minimum(*per_rank)}
    for rank in range(2):
        got = np.load(tmp_path / f"rank{rank}.npz")
        assert int(got["rank"]) == rank and int(got["size"]) == 2
        for op, want in expect.items():
            assert got[op].dtype == np.float32
            np.testing.assert_allclose(got[op], want, rtol=1e-7, err_msg=op)
        np.testing.assert_array_equal(got["ints"], [1 + 2, 0 + 10])
        np.testing.assert_array_equal(got["broadcast"], np.full(4, 8.0))
