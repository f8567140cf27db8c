"""Run a script of this folder as an MPI job from a test: skip when MPI is not installed."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import sys
from pathlib import Path

import pytest

import fastmlp

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
# where the fastmlp this test process imports lives (the checkout, or site-packages for an installed
# wheel): the MPI processes import the same one
FASTMLP_ROOT = str(Path(fastmlp.__file__).resolve().parent.parent)


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
    env["PYTHONPATH"] = os.pathsep.join([FASTMLP_ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    cmd = [mpiexec(), "-n", str(n), sys.executable, str(HERE / script), *args]
    return run_bounded(cmd, env, timeout)


def run_bounded(cmd: list, env: dict, timeout: float) -> subprocess.CompletedProcess:
    """Run `cmd` in its own process group; past `timeout` seconds kill the whole group (the launcher
    and every rank) and fail the test: a hang is a failure, never a stuck test run."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tempfile.gettempdir(), start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} did not finish within {timeout} s (a hang)\nstdout:\n{out}\nstderr:\n{err}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def check(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result
