"""``fastmlp.distributed``: processes that train one model together over MPI (``torch.distributed``).

Start the processes with MPI's launcher, ``mpiexec -n 4 python train.py``; each one
calls ``init_process_group()`` (``backend="mpi"``, the only backend, also chosen when the
argument is left out) and from then on sees its ``get_rank()`` among ``get_world_size()``
processes. The collectives (``all_reduce``, ``broadcast``, ``barrier``) work in place on a
tensor's own NumPy buffer through mpi4py's buffer interface: nothing is pickled or copied.
MPI is the transport; ``pip install "fastmlp[mpi]"`` brings mpi4py and the MPICH wheel.
See docs/distributed.md.
"""
from . import fit  # noqa: F401  (fastmlp.distributed.fit: what fit does across processes)
from .collectives import ReduceOp, all_reduce, barrier, broadcast
from .process_group import (destroy_process_group, get_rank, get_world_size, init_process_group, is_available,
                            is_initialized, launched_by_mpiexec)

__all__ = ["init_process_group", "destroy_process_group", "is_available", "is_initialized", "get_rank",
           "get_world_size", "launched_by_mpiexec", "barrier", "all_reduce", "broadcast", "ReduceOp"]
