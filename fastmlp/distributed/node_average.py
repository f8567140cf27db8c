"""Averaging one flat float buffer over the processes, through MPI-3 shared memory where
processes share a machine (the engine under ``DistributedDataParallel``'s gradient averaging).

Every process of a machine owns one *slot* of an MPI shared-memory window
(``MPI_Win_allocate_shared`` over ``MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)``), and all of
them can read and write every slot. Averaging a range of the slots is then a reduce-scatter
and an allgather done by loads and stores, with no message copies:

1. every process has written its values into its own slot (``DistributedDataParallel`` makes
   the optimizer's flat gradient buffer *be* that slot, so the native backward writes there);
   a synchronisation (``MPI_Win_sync`` and a tiny ``MPI_Allreduce`` that also checks every
   process averages the same range);
2. local process ``i`` of ``L`` sums its ``i``-th chunk of the range over the slots, in slot
   order 0, 1, ..., L-1, into slot 0 (so the sum does not depend on which process computes it);
3. with several machines, one process per machine (the node leader) runs one
   ``MPI_Allreduce`` of slot 0's range with the other leaders;
4. each process divides its chunk of slot 0 by the world size and copies it into the other
   slots; a last synchronisation, after which every slot holds the same average, bit for bit.

When every process asks for it (``average(buf, scatter=True)``, fit's sharded optimizer update,
see ``sharded_update``), step 4 stops after the division: each process's chunk of slot 0 holds
the average, the other slots keep their values, and the caller synchronises once it has used
its chunk. If any process did not ask, all of them take the four steps.

Every value is computed once, by one process, so every process ends with identical bits. A
process alone on its machine, in a job where other machines hold several, gets a slot in its
own memory and only joins the leaders' allreduce. When no machine holds two processes, or some
machine's MPI cannot allocate a shared window, no process has a slot and every average is one
``MPI_Allreduce`` over the buffer and a division (the processes always take the same route).

MPI is the transport and the synchronisation throughout (the window, its ``Win_sync`` memory
barriers, ``Barrier``/``Allreduce``); nothing here talks to another process by other means.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

# Slots start on 64-byte boundaries (a cache line), as the optimizer's own buffers do, for the
# kernels' aligned loads; chunks are cut at multiples of 64 bytes from the start of the range.
_ALIGN_BYTES = 64

# Elements averaged per block (128 KB of float32, well inside a core's L2 cache).
_BLOCK = 32768

# The windows live as long as the process: the arrays over them (an optimizer's gradient buffer)
# may outlive the object that made them, and freeing a window under them would leave dangling
# memory. They are released when MPI finalizes, at exit.
_KEEP_ALIVE: list = []


class NodeAverager:
    """The average of a float buffer over `comm`, in place, by shared memory between the processes
    of a machine and ``MPI_Allreduce`` between machines (see the module docstring).

    Creating it is collective over `comm` (every process must create it, in the same order, with
    the same `length` and `dtype`). `node` is the communicator of the processes that share memory
    (default: ``comm.Split_type(COMM_TYPE_SHARED)``); tests pass another split of `comm` to make
    several "machines" on one.

    Args:
        comm: the communicator of all processes (mpi4py), e.g. ``MPI.COMM_WORLD``.
        mpi: mpi4py's ``MPI`` module.
        length: elements per slot (the largest buffer that will be averaged).
        dtype: the buffer's floating-point dtype.
        node: the processes that share memory with this one (a sub-communicator of `comm`).
    """

    def __init__(self, comm: Any, mpi: Any, length: int, dtype: Any, node: Any = None) -> None:
        self.comm = comm
        self.mpi = mpi
        self.size = comm.Get_size()
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f":
            raise TypeError(f"NodeAverager: dtype must be a floating-point type; got {self.dtype}")
        self.length = int(length)
        self._check = np.zeros(6, dtype=np.int64)
        self.node = comm.Split_type(mpi.COMM_TYPE_SHARED, key=comm.Get_rank()) if node is None else node
        self.local = self.node.Get_size()
        self.local_rank = self.node.Get_rank()
        leader = self.local_rank == 0
        # the leaders' communicator, only where some machine holds fewer than all processes
        several = self.comm.allreduce(1 if leader else 0) > 1
        self.leaders = comm.Split(0 if leader else mpi.UNDEFINED, comm.Get_rank()) if several else None
        self.win = None
        self.slots: list = []
        self.whole: Optional[np.ndarray] = None
        # Slots everywhere, or nowhere: the processes must all take the same steps. A process alone
        # on its machine gets a private slot (it then only joins the leaders' allreduce).
        ok = self._allocate() if self.local > 1 else True
        use = self.comm.allreduce(1 if ok else 0, op=mpi.MIN) and self.comm.allreduce(self.local, op=mpi.MAX) > 1
        if not use:
            self._release()
        elif self.local == 1:
            self._private()
        else:
            _KEEP_ALIVE.append((self.win, self.whole))

    def _allocate(self) -> bool:
        """The window: one slot per local process, each on a 64-byte boundary. Collective over the
        machine; whether it worked (the same answer on every process of the machine)."""
        item = self.dtype.itemsize
        stride = self._stride()
        win = whole = None
        try:
            nbytes = self.local * stride * item if self.local_rank == 0 else 0
            win = self.mpi.Win.Allocate_shared(nbytes, item, comm=self.node)
            buf, _ = win.Shared_query(0)
            whole = np.frombuffer(buf, dtype=self.dtype, count=self.local * stride)
            ok = whole.ctypes.data % _ALIGN_BYTES == 0
        except (self.mpi.Exception, NotImplementedError, ValueError):  # no shared windows here
            ok = False
        if not self.node.allreduce(1 if ok else 0, op=self.mpi.MIN):
            if win is not None:
                win.Free()
            return False
        # A passive-target epoch open for the window's life, so Win_sync (the memory barrier
        # between a process's stores and the others' loads) is allowed at every step.
        win.Lock_all(self.mpi.MODE_NOCHECK)
        if self.local_rank == 0:
            whole[...] = 0
        self.win = win
        self.whole = whole
        self.slots = [whole[q * stride:q * stride + self.length] for q in range(self.local)]
        self._sync_node()
        return True

    def _private(self) -> None:
        """A slot in this process's own memory (alone on its machine, in a job that uses slots)."""
        step = max(1, _ALIGN_BYTES // self.dtype.itemsize)
        raw = np.zeros(self._stride() + step, dtype=self.dtype)
        skip = (-raw.ctypes.data % _ALIGN_BYTES) // self.dtype.itemsize
        self.whole = raw
        self.slots = [raw[skip:skip + self.length]]

    def _release(self) -> None:
        if self.win is not None:
            self.win.Unlock_all()
            self.win.Free()
        self.win = None
        self.whole = None
        self.slots = []

    def _stride(self) -> int:
        step = max(1, _ALIGN_BYTES // self.dtype.itemsize)
        return -(-max(self.length, 1) // step) * step

    @property
    def shared(self) -> bool:
        """Whether the processes average through slots (the same answer on every process)."""
        return self.whole is not None

    @property
    def slot(self) -> np.ndarray:
        """This process's slot: `length` elements of shared memory (only when ``shared``)."""
        return self.slots[self.local_rank]

    def _sync_node(self, other: Any = None) -> None:
        """Every local process's earlier stores to the window (and to the window `other`, when given)
        are visible to every other's later loads."""
        if self.win is None:  # alone on this machine
            return
        self.win.Sync()
        if other is not None:
            other.Sync()
        self.node.Barrier()
        self.win.Sync()
        if other is not None:
            other.Sync()

    def _agree(self, length: int, in_slot: bool, scatter: bool = False) -> bool:
        """A synchronisation of every process that also checks they all average the same number of
        elements the same way: the same error everywhere when they do not (a mismatch would
        otherwise read garbage or hang). Returns whether every process asked for `scatter`."""
        if self.win is not None:
            self.win.Sync()  # this process's writes into its slot, before the others read them
        check = self._check
        check[:] = (length, -length, int(in_slot), -int(in_slot), int(scatter), -int(scatter))
        self.comm.Allreduce(self.mpi.IN_PLACE, check, op=self.mpi.MAX)
        if check[0] != -check[1] or check[2] != -check[3]:
            raise ValueError("NodeAverager: the processes average different buffers (every process must "
                             "average the same gradients, laid out the same way); lengths from "
                             f"{-check[1]} to {check[0]} elements")
        return check[5] == -1  # the minimum of `scatter` over the processes is 1

    def average_slot(self, start: int = 0, stop: Optional[int] = None) -> None:
        """Replace ``slot[start:stop]`` of every process with the average over all processes of their
        ``slot[start:stop]``. Collective; needs ``shared``."""
        stop = self.length if stop is None else stop
        if not self.shared:
            raise RuntimeError("NodeAverager.average_slot: this job has no shared-memory slots")
        if not 0 <= start <= stop <= self.length:
            raise ValueError(f"NodeAverager: range [{start}, {stop}) is outside the slot of {self.length}")
        self._agree(stop - start, True)
        self._average_slot(start, stop)

    def _average_slot(self, start: int, stop: int) -> None:
        # after _agree (a synchronisation of every process): the others' writes into their slots are
        # visible here after this Win_sync
        lo, hi = self._sum_chunk(start, stop, gather=True)
        if self.leaders is not None:  # several machines: the leaders' allreduce came between sum and divide
            self._divide(lo, hi, gather=True)
        self._sync_node()  # no process writes its slot again (the next backward) before all have read

    def _reduce_scatter(self, start: int, stop: int) -> tuple:
        """After _agree: this process's chunk ``[lo, hi)`` of ``slots[0]`` becomes the average over all
        processes (the other slots keep their values); returns ``(lo, hi)``. The caller ends the step
        with ``_sync_node()`` once it has read the chunk (no process writes its slot before that)."""
        lo, hi = self._sum_chunk(start, stop, gather=False)
        if self.leaders is not None:
            self._divide(lo, hi, gather=False)
        return lo, hi

    def _sum_chunk(self, start: int, stop: int, gather: bool) -> tuple:
        """Steps 2-3 of the module docstring over this process's chunk of [start, stop): the sum over
        the slots into slot 0 and, with one machine, the division (copied into the other slots when
        `gather`); with several, the leaders' allreduce of slot 0's range (the caller divides)."""
        win = self.win
        if win is not None:
            win.Sync()
        lo, hi = self._chunk(start, stop)
        slots = self.slots
        several = self.leaders is not None
        scale = self.dtype.type(self.size)
        # In blocks that stay in the core's cache: each block is summed, divided and copied out
        # while it is there (three passes over memory would cost about twice the time).
        block = _BLOCK
        for b in range(lo, hi, block):
            e = min(b + block, hi)
            acc = slots[0][b:e]
            for q in range(1, self.local):  # slot order: the same sum whichever process computes it
                np.add(acc, slots[q][b:e], out=acc)
            if not several:
                np.divide(acc, scale, out=acc)
                if gather:
                    for q in range(1, self.local):
                        slots[q][b:e] = acc
        if several:  # several machines: the leaders add up the machines' sums
            self._sync_node()
            if self.local_rank == 0:
                self.leaders.Allreduce(self.mpi.IN_PLACE, slots[0][start:stop], op=self.mpi.SUM)
            self._sync_node()
        return lo, hi

    def _divide(self, lo: int, hi: int, gather: bool) -> None:
        slots = self.slots
        scale = self.dtype.type(self.size)
        for b in range(lo, hi, _BLOCK):
            e = min(b + _BLOCK, hi)
            acc = slots[0][b:e]
            np.divide(acc, scale, out=acc)
            if gather:
                for q in range(1, self.local):
                    slots[q][b:e] = acc

    def _gather(self, lo: int, hi: int) -> None:
        """Copy ``slots[0][lo:hi]`` into the other slots (the deferred allgather of a reduce-scatter)."""
        for q in range(1, self.local):
            self.slots[q][lo:hi] = self.slots[0][lo:hi]

    def _chunk(self, start: int, stop: int) -> tuple:
        """This process's part of [start, stop): local rank i of L takes the i-th of L nearly equal
        pieces, cut at multiples of 64 bytes from `start`."""
        step = max(1, _ALIGN_BYTES // self.dtype.itemsize)
        blocks = -(-(stop - start) // step)
        i, n = self.local_rank, self.local
        lo = start + (blocks * i // n) * step
        hi = start + (blocks * (i + 1) // n) * step
        return min(lo, stop), min(hi, stop)

    def average(self, buf: np.ndarray, scatter: bool = False) -> Optional[tuple]:
        """Replace the 1-D contiguous `buf` with its average over all processes, in place: through the
        slots when `buf` is a range of this process's slot, else one ``MPI_Allreduce`` and a division
        (copying a buffer through the slots and back costs more than MPI's own transfer). Collective;
        every process must pass a buffer of the same length that is, or is not, in its slot.

        With `scatter` on every process and `buf` in the slots, only this process's chunk of slot 0
        is averaged (a reduce-scatter, no copy into the other slots): returns that chunk's ``(lo,
        hi)``, and the caller must end with ``_sync_node()`` after reading it. Otherwise (some process
        did not ask) the whole average as above, and None."""
        if buf.dtype != self.dtype or buf.ndim != 1 or not buf.flags.c_contiguous:
            raise ValueError(f"NodeAverager.average: buf must be a 1-D contiguous {self.dtype} array; got "
                             f"{buf.dtype} {list(buf.shape)}")
        start = self.offset_in_slot(buf)
        everyone = self._agree(buf.size, start is not None, scatter)
        if start is not None:
            if everyone:
                return self._reduce_scatter(start, start + buf.size)
            self._average_slot(start, start + buf.size)
        else:
            self.comm.Allreduce(self.mpi.IN_PLACE, buf, op=self.mpi.SUM)
            buf /= buf.dtype.type(self.size)
        return None

    def offset_in_slot(self, buf: np.ndarray) -> Optional[int]:
        """Where `buf` starts in this process's slot, when it is a range of it; else None."""
        if not self.shared or buf.base is not self.whole or buf.dtype != self.dtype:
            return None
        slot = self.slot
        at = buf.ctypes.data - slot.ctypes.data
        if at < 0 or at % self.dtype.itemsize or at // self.dtype.itemsize + buf.size > self.length:
            return None
        return at // self.dtype.itemsize
