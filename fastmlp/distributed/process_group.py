"""The process group: which MPI processes train together, and this one's rank among them
(``torch.distributed.init_process_group`` and friends)."""
from __future__ import annotations

import os
import sys
import time
import traceback
from datetime import timedelta
from typing import Any, Optional

_INSTALL_HINT = 'pip install "fastmlp[mpi]"'

# The environment variables MPI launchers set in every process they start: MPICH's and
# Intel MPI's Hydra (PMI_*), Open MPI (OMPI_COMM_WORLD_*), PMIx-based launchers (PMIX_RANK).
_LAUNCHER_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")
_LAUNCHER_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")


class _Group:
    """The initialised default group: the communicator and what a call needs from it."""

    def __init__(self, comm: Any, mpi: Any) -> None:
        self.comm = comm
        self.mpi = mpi
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()


_group: Optional[_Group] = None
_previous_excepthook = None


def _import_mpi():
    """mpi4py's MPI module (initialising MPI), or an ImportError that says how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError("fastmlp.distributed needs mpi4py and an MPI library; install them with "
                          f'{_INSTALL_HINT} (or mpi4py over a system MPI): {e}') from e
    return MPI


def is_available() -> bool:
    """Whether mpi4py can be imported (``torch.distributed.is_available``); does not initialise MPI."""
    import importlib.util
    return importlib.util.find_spec("mpi4py") is not None


def launched_by_mpiexec() -> bool:
    """Whether this process was started by an MPI launcher (mpiexec/mpirun) as one of several."""
    for var in _LAUNCHER_SIZE_VARS:
        value = os.environ.get(var)
        if value is not None and value.isdigit() and int(value) > 1:
            return True
    return any(v in os.environ for v in _LAUNCHER_RANK_VARS[1:])


def _abort_on_uncaught(exc_type, exc, tb) -> None:
    """sys.excepthook while the group lives: print the error as usual, then end every process of
    the job (MPI_Abort), so the other ranks do not wait forever in their next collective."""
    hook = _previous_excepthook
    if hook is None or hook is sys.__excepthook__:
        # one write, so the launcher forwards the whole traceback before the abort ends the job
        sys.stderr.write("".join(traceback.format_exception(exc_type, exc, tb)))
    else:
        hook(exc_type, exc, tb)
    group = _group
    if group is not None and group.size > 1 and not issubclass(exc_type, (SystemExit, KeyboardInterrupt)):
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            time.sleep(_ABORT_GRACE_S)  # let the launcher's I/O forwarding catch up
        finally:
            group.comm.Abort(1)


# Seconds between printing an uncaught error and aborting the job.
_ABORT_GRACE_S = 0.25


def init_process_group(backend: Optional[str] = None, init_method: Optional[str] = None,
                       timeout: Optional[timedelta] = None, world_size: int = -1, rank: int = -1,
                       store: Any = None, group_name: str = "", pg_options: Any = None) -> None:
    """Join the default process group (``torch.distributed.init_process_group``).

    Args:
        backend: ``"mpi"`` (the only backend; None picks it). The group is MPI's
            ``COMM_WORLD``: the processes ``mpiexec`` started.
        init_method, store, group_name, pg_options, timeout: accepted for PyTorch
            compatibility; MPI's launcher does the rendezvous.
        world_size, rank: -1 (take them from MPI), or the values MPI gives (else an error).

    After this call an uncaught exception in any process aborts the whole job
    (``MPI_Abort``) instead of leaving the other processes waiting.
    """
    global _group, _previous_excepthook
    if backend is None:
        backend = "mpi"
    if not isinstance(backend, str) or backend.lower() != "mpi":
        raise ValueError(f"init_process_group: backend must be 'mpi' (fastmlp runs on MPI); got {backend!r}")
    if _group is not None:
        raise RuntimeError("trying to initialize the default process group twice! "
                           "(call destroy_process_group() first)")
    mpi = _import_mpi()
    comm = mpi.COMM_WORLD
    group = _Group(comm, mpi)
    if world_size not in (-1, None) and world_size != group.size:
        raise ValueError(f"init_process_group: world_size={world_size}, but MPI started {group.size} process(es) "
                         "(launch with mpiexec -n N)")
    if rank not in (-1, None) and rank != group.rank:
        raise ValueError(f"init_process_group: rank={rank}, but MPI gives this process rank {group.rank}")
    _group = group
    if sys.excepthook is not _abort_on_uncaught:
        _previous_excepthook = sys.excepthook
        sys.excepthook = _abort_on_uncaught


def is_initialized() -> bool:
    """Whether init_process_group has run (and destroy_process_group not since)."""
    return _group is not None


def _default_group(what: str) -> _Group:
    if _group is None:
        raise RuntimeError(f"{what}: the default process group has not been initialized; call "
                           "fastmlp.distributed.init_process_group() first (and start the job with mpiexec)")
    return _group


def get_rank(group: Any = None) -> int:
    """This process's rank in the default group, 0 .. world_size - 1 (``torch.distributed.get_rank``)."""
    return _default_group("get_rank").rank


def get_world_size(group: Any = None) -> int:
    """The number of processes in the default group (``torch.distributed.get_world_size``)."""
    return _default_group("get_world_size").size


def destroy_process_group(group: Any = None) -> None:
    """Leave the default group (``torch.distributed.destroy_process_group``). MPI itself stays up
    until the interpreter exits (mpi4py finalises it then), so a group may be initialised again."""
    global _group, _previous_excepthook
    _default_group("destroy_process_group")
    _group = None
    if sys.excepthook is _abort_on_uncaught:
        sys.excepthook = _previous_excepthook or sys.__excepthook__
    _previous_excepthook = None
