"""Run a script of this folder as an MPI job from a test: skip when MPI is not installed."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def mpiexec() -> str:
    """The launcher's path, or skip the test (mpi4py and an MPI launcher are the `mpi` extra)."""
    pytest.importorskip("mpi4py")
    exe = shutil.which("mpiexec") or shutil.which("mpirun")
    if exe is None:
        pytest.skip("no mpiexec on PATH (pip install \"fastmlp[mpi]\")")
    return exe


def run_mpi(script: str, *args: str, n: int = 2, timeout: float = 120) -> subprocess.CompletedProcess:
    """`mpiexec -n n python script args...` with one OpenMP thread per process; output captured."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    cmd = [mpiexec(), "-n", str(n), sys.executable, str(HERE / script), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=str(REPO))


def check(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result
