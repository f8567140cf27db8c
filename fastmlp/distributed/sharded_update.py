"""The optimizer update sharded over the processes of a machine: one shared copy of the parameters
and of the optimizer state, each process updating its own chunk (fit's data-parallel step).

Without it, every process of a machine averages the gradients in shared memory (see
``node_average``), copies the average back into every process's slot (an allgather) and then
runs the whole optimizer update over its own copy of the parameters: P processes do the same
update P times, each on one core. With it, during the training steps of a ``fit`` epoch:

- the processes of a machine keep ONE copy of the optimizer's flat parameter buffer and of its
  flat state buffers (``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``; ``momentum_buffer``) in an
  MPI shared-memory window; every ``Parameter``'s data and state tensor is a view of it;
- a step: every process's native backward writes its gradients into its own slot; local process
  ``i`` sums chunk ``i`` of the slots into slot 0 and divides it by the world size (with several
  machines the leaders' ``MPI_Allreduce`` comes between, as in ``NodeAverager``); then it runs the
  optimizer's own native multi-tensor step (``FlatUpdate.apply``, the call
  ``Optimizer._step_group`` makes over the flat buffers) on chunk ``i`` of the shared parameters
  and state, with chunk ``i`` of slot 0 as the gradient; a machine-wide synchronisation, after
  which every process's next forward pass reads the updated parameters. The bookkeeping (step
  counts, the parameters' version counter) runs in every process, as after a normal step.

The kernels are elementwise: an element's update reads only that element's parameter, gradient
and state and the step's scalars, so updating chunks gives the bits the whole update gives, and
the gradient each element sees is the one the unsharded path copies into every slot. Results are
bitwise those of averaging into every slot and updating everything in every process.

The parameters and state move into the window when an epoch's steps begin (each process copies
its chunk in) and back into each process's own 64-byte aligned memory when they end (each process
copies all of it out; after a normal end each process first copies its chunk of the averaged
gradients into the other slots, so every ``.grad`` holds the average, as data parallelism
promises). Validation, callbacks and checkpoints between epochs see private memory, as before.

Anything else falls back to averaging everything and the optimizer's own step, decided by all
processes together so they take the same route: a step some process cannot shard (the eager step,
a parameter whose gradient left the arena, uneven Adam step counts) first moves every process back
to its own memory for the rest of the epoch. Set ``enabled = False`` to keep the unsharded path.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..optim import SGD, Adam, AdamW
from ..optim.optimizer import _aligned_zeros
from .node_average import _ALIGN_BYTES, _KEEP_ALIVE, NodeAverager

# fit shards the update while this is true (the tests compare both paths).
enabled = True


def state_keys(optimizer: Any, group: dict) -> Optional[tuple]:
    """The flat state buffers the optimizer's step uses, or None for an optimizer whose update is not
    one of the native multi-tensor steps (only SGD, Adam and AdamW themselves)."""
    kind = type(optimizer)
    if kind is SGD:
        return ("momentum_buffer",) if float(group["momentum"]) != 0 else ()
    if kind is Adam or kind is AdamW:
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group["amsgrad"] else ())
    return None


def usable(averager: Optional[NodeAverager], optimizer: Any, params: list) -> bool:
    """Whether this process can shard the optimizer's update (the callers decide together): gradients
    in a float32 shared-memory slot, one parameter group in one flat buffer holding exactly the
    model's trainable `params`, and SGD, Adam or AdamW."""
    if not enabled or averager is None or not averager.shared or averager.dtype != np.float32:
        return False
    groups = getattr(optimizer, "param_groups", None)
    if not groups or len(groups) != 1 or state_keys(optimizer, groups[0]) is None:
        return False
    flat = optimizer._flat.get(id(groups[0]))
    if flat is None or type(flat.param) is not np.ndarray or flat.param.dtype != np.float32:
        return False
    mine = groups[0]["params"]
    return flat.grad is averager.slot and len(mine) == len(params) and {id(p) for p in mine} == {id(p) for p in params}


class ShardedUpdate:
    """The sharded update of one optimizer's flat group over `averager`'s processes (see the module
    docstring). Creating it is collective over the averager's communicator and allocates the
    machine's window (``MPI_Win_allocate_shared``: the parameters and each state buffer, 64-byte
    aligned); `previous`'s window is reused when it is large enough. ``ok`` says whether every
    process got its window (the same answer everywhere)."""

    def __init__(self, averager: NodeAverager, optimizer: Any, previous: Optional["ShardedUpdate"] = None) -> None:
        self.av = averager
        self.optimizer = optimizer
        self.group = optimizer.param_groups[0]
        self.params = list(self.group["params"])
        self.flat = optimizer._flat[id(self.group)]
        self.keys = state_keys(optimizer, self.group)
        self.total = int(self.flat.param.size)
        # the gradients' span, as DistributedDataParallel averages it: the parameters without the
        # alignment padding after the last one
        self.stop = max(off + n for off, n in zip(self.flat.offsets, self.flat.sizes))
        self.grad = self.flat.grad
        self.span = self.grad[:self.stop]
        self.active = False
        self.gather = False  # slot 0 holds the last step's average, the other slots not yet
        self.steps = 0  # sharded steps taken (the tests check the route)
        self.win = None
        self.shared: dict = {}  # "param" and each state key -> its array in the window
        names = ("param",) + self.keys
        ok = True
        if averager.win is not None:  # several processes on this machine (else this process's own memory)
            ok = self._window(names, previous)
        self.ok = bool(averager.comm.allreduce(1 if ok else 0, op=averager.mpi.MIN))

    def matches(self, optimizer: Any) -> bool:
        """Whether this is still the update of `optimizer`'s group as laid out now."""
        group = optimizer.param_groups[0] if getattr(optimizer, "param_groups", None) else None
        return (optimizer is self.optimizer and group is self.group and optimizer._flat.get(id(group)) is self.flat
                and self.flat.grad is self.grad and state_keys(optimizer, group) == self.keys)

    # ---- the window ----------------------------------------------------------------------------
    def _window(self, names: tuple, previous: Optional["ShardedUpdate"]) -> bool:
        av, mpi = self.av, self.av.mpi
        item = np.dtype(np.float32).itemsize
        step = _ALIGN_BYTES // item
        stride = -(-max(self.total, 1) // step) * step
        old = previous.win if previous is not None else None
        if old is not None and previous.av is av and previous._capacity >= len(names) * stride:
            win, buf, ok = old, previous._buf, True
        else:
            win = buf = None
            try:
                win = mpi.Win.Allocate_shared(len(names) * stride * item if av.local_rank == 0 else 0, item,
                                              comm=av.node)
                buf, _ = win.Shared_query(0)
                ok = np.frombuffer(buf, dtype=np.uint8, count=1).ctypes.data % _ALIGN_BYTES == 0
            except (mpi.Exception, NotImplementedError, ValueError):
                ok = False
            if not av.node.allreduce(1 if ok else 0, op=mpi.MIN):
                if win is not None:
                    win.Free()
                return False
            win.Lock_all(mpi.MODE_NOCHECK)  # an epoch open for Win_sync, as NodeAverager's window
            _KEEP_ALIVE.append((win, buf))  # arrays over it may outlive this object
        self.win, self._buf, self._capacity = win, buf, len(names) * stride
        for j, name in enumerate(names):
            whole = np.frombuffer(buf, dtype=np.float32, count=stride, offset=j * stride * item)
            self.shared[name] = whole[:self.total]  # a view: its base is the array the views share
        return True

    # ---- moving in and out -----------------------------------------------------------------------
    def share(self) -> None:
        """Every process's parameters and state into the window (collective over the machine): each
        process copies its chunk in, then all of them view the window."""
        if self.active:
            return
        self.active = True
        self.gather = False
        if self.win is None:  # alone on this machine: its own buffers are the machine's copy
            return
        flat, av = self.flat, self.av
        lo, hi = av._chunk(0, self.total)
        for name, arr in self.shared.items():
            src = flat.param if name == "param" else flat.state.get(name)
            if src is None:
                arr[lo:hi] = 0
            else:
                arr[lo:hi] = src[lo:hi]
        av._sync_node(self.win)
        flat.move_param(self.params, self.shared["param"])
        for key in self.keys:
            flat.move_state(self.optimizer, self.params, key, self.shared[key])

    def leave(self) -> None:
        """This process's parameters and state back into its own memory (copies of the window's
        values). Only while no process writes the window: between steps, or inside a collective."""
        if not self.active:
            return
        self.active = False
        if self.win is None:
            return
        flat = self.flat
        if flat.param is self.shared["param"]:
            flat.move_param(self.params, _copy(flat.param))
        for key in self.keys:
            cur = flat.state.get(key)
            if cur is self.shared[key]:
                flat.move_state(self.optimizer, self.params, key, _copy(cur))

    def end(self, clean: bool) -> None:
        """The end of an epoch's steps. `clean` (every process got here normally; collective): each
        process first copies its chunk of the last averaged gradients into the other slots, so every
        process's ``.grad`` is the average. Otherwise (an exception) this process only leaves."""
        if not self.active:
            return
        if clean and self.gather:
            lo, hi = self.av._chunk(0, self.stop)
            self.av._gather(lo, hi)
            self.av._sync_node(self.win)
        self.gather = False
        self.leave()

    # ---- a step ----------------------------------------------------------------------------------
    def step(self, ddp: Any) -> None:
        """``ddp.average_gradients(); optimizer.step()``, sharded when every process can (collective)."""
        opt, group = self.optimizer, self.group
        u = opt._flat_update(group)
        if u is None or not self._on_window(u):
            ddp.average_gradients()  # the whole average: every process leaves the window (see DDP._reduce)
            if u is None:
                opt.step()
            else:
                self._whole(u)
            return
        chunk = ddp._reduce(self.span, scatter=True)
        if chunk is None:  # some process could not: all averaged everything and left the window
            self._whole(u)
            return
        lo, hi = chunk
        if hi == self.stop:  # the last chunk takes the padding after the last parameter, as the whole step
            hi = self.total
        if hi > lo:
            _slice(u, lo, hi, self.av.slots[0]).apply()
        self.av._sync_node(self.win)  # every chunk updated before any process's next forward pass
        self.gather = True
        self.steps += 1
        opt._flat_update_done(group, u)

    def _on_window(self, u) -> bool:
        """Whether `u` updates this process's copy of the shared buffers (the group did not move)."""
        if u.grad is not self.grad:
            return False
        if self.win is None:
            return True
        shared = self.shared
        return u.param is shared["param"] and all(
            getattr(u, key) is shared[key] for key in self.keys)

    def _whole(self, u) -> None:
        """Apply `u` (made before the buffers moved) to the group's buffers where they are now."""
        flat = self.flat
        moved = {key: flat.state[key] for key in self.keys if getattr(u, key) is not None}
        u = u._replace(param=flat.param, grad=flat.grad, **moved)
        u.apply()
        self.optimizer._flat_update_done(self.group, u)


def _copy(a: np.ndarray) -> np.ndarray:
    out = _aligned_zeros(a.size, a.dtype, np)
    out[...] = a
    return out


_STATE_FIELDS = ("momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")


def _slice(u, lo: int, hi: int, grads: np.ndarray):
    """`u` restricted to elements [lo, hi), with the gradients of `grads` (slot 0, the average)."""
    parts = {k: getattr(u, k)[lo:hi] for k in _STATE_FIELDS if getattr(u, k) is not None}
    return u._replace(param=u.param[lo:hi], grad=grads[lo:hi], **parts)

