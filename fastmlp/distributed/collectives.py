"""Collective operations over the default group, in place on tensors' buffers
(``torch.distributed.all_reduce``, ``broadcast``, ``barrier``)."""
from __future__ import annotations

import enum
from typing import Any

import numpy as np

from ..tensor import Tensor
from .process_group import _default_group


class ReduceOp(enum.Enum):
    """How all_reduce combines the processes' values (``torch.distributed.ReduceOp``)."""

    SUM = "sum"
    AVG = "avg"
    MAX = "max"
    MIN = "min"


def _buffer(tensor: Any, what: str) -> np.ndarray:
    """The contiguous host array a collective reads and writes in place."""
    if isinstance(tensor, Tensor):
        data = tensor._data
    elif isinstance(tensor, np.ndarray):
        data = tensor
    else:
        raise TypeError(f"{what}: tensor must be a fastmlp Tensor or a numpy.ndarray; got {type(tensor).__name__}")
    if type(data) is not np.ndarray:
        raise ValueError(f"{what}: tensor must be on the CPU (MPI reduces host memory); got a "
                         f"{type(data).__module__}.{type(data).__name__}")
    if not data.flags.c_contiguous:
        raise ValueError(f"{what}: tensor must be contiguous (it is reduced in place); call .contiguous() first")
    if not data.flags.writeable:
        raise ValueError(f"{what}: tensor is read-only")
    return data


def _mpi_op(mpi, op: ReduceOp, what: str):
    if not isinstance(op, ReduceOp):
        raise TypeError(f"{what}: op must be a fastmlp.distributed.ReduceOp; got {op!r}")
    return {ReduceOp.SUM: mpi.SUM, ReduceOp.AVG: mpi.SUM, ReduceOp.MAX: mpi.MAX, ReduceOp.MIN: mpi.MIN}[op]


def all_reduce(tensor: Any, op: ReduceOp = ReduceOp.SUM, group: Any = None, async_op: bool = False) -> None:
    """Combine `tensor` over every process, in place: afterwards every process holds the same
    sum (or average, max, min). One ``MPI_Allreduce`` over the tensor's own buffer
    (``torch.distributed.all_reduce``). AVG is the sum divided by the world size, for float tensors."""
    if async_op:
        raise NotImplementedError("all_reduce: async_op=True is not supported")
    g = _default_group("all_reduce")
    data = _buffer(tensor, "all_reduce")
    mpi_op = _mpi_op(g.mpi, op, "all_reduce")
    if op is ReduceOp.AVG and data.dtype.kind != "f":
        raise TypeError(f"all_reduce: ReduceOp.AVG needs a floating-point tensor; got {data.dtype}")
    if g.size > 1 and data.size:
        g.comm.Allreduce(g.mpi.IN_PLACE, data, op=mpi_op)
    if op is ReduceOp.AVG and g.size > 1:
        data /= data.dtype.type(g.size)

def broadcast(tensor: Any, src: int = 0, group: Any = None, async_op: bool = False) -> None:
    """Overwrite `tensor` on every process with process `src`'s values, in place
    (``torch.distributed.broadcast``). Every process must pass a tensor of the same shape and dtype."""
    if async_op:
        raise NotImplementedError("broadcast: async_op=True is not supported")
    g = _default_group("broadcast")
    if isinstance(src, bool) or not isinstance(src, (int, np.integer)) or not 0 <= src < g.size:
        raise ValueError(f"broadcast: src must be a rank in [0, {g.size}); got {src!r}")
    data = _buffer(tensor, "broadcast")
    if g.size > 1:
        g.comm.Bcast(data, root=int(src))


def barrier(group: Any = None, async_op: bool = False, device_ids: Any = None) -> None:
    """Wait until every process of the group has called barrier (``torch.distributed.barrier``)."""
    g = _default_group("barrier")
    g.comm.Barrier()
