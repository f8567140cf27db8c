"""``DistributedDataParallel``: one model replica per process, gradients averaged after every
backward pass (``torch.nn.parallel.DistributedDataParallel``).

How the gradients are found. The optimizer lays the parameters' gradients out in one flat
buffer (its arena, ``fastmlp.optim.optimizer._FlatGroup``) when it is created, and every
``p.grad`` is a view into it. At the end of each backward pass (an autograd end-of-backward
callback, as PyTorch's DDP uses) the wrapper looks at its parameters' gradients: when they
all view one buffer, it averages the span of that buffer they cover in one collective, in
place (the padding between parameters is zero on every rank and stays zero). Otherwise (no
optimizer yet, parameters moved out of the arena) it packs the gradients into one contiguous
array, reduces that and copies back.

How they are averaged. ``fit``'s native step (forward and backward in one native call, without
the update) first moves the optimizer's gradient buffer into this process's slot of an MPI
shared-memory window of its machine (``fastmlp.distributed.node_average``), so the native
backward writes the gradients where every process of the machine can read them; the average
is then a reduce-scatter by loads and stores (one ``MPI_Allreduce`` between one process per
machine when there are several), with nothing copied per step, between the backward and the
optimizer's native update. During an epoch's steps the processes of a machine also share one
copy of the parameters and optimizer state, and each updates only its chunk of it
(``fastmlp.distributed.sharded_update``; bitwise the same as every process averaging into its
own slot and updating everything). A buffer outside the slots (the eager loop before any
``fit``, the packed fallback) is averaged with one ``MPI_Allreduce`` and a division.
"""
from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Any, Iterator, Optional

import numpy as np

from ... import autograd as _autograd
from ... import distributed as dist
from ...autograd import is_grad_enabled
from ...distributed import sharded_update as _sharded
from ...distributed.node_average import NodeAverager
from ...tensor import Tensor, _wrap
from ..module import Module
from ..program import TrainStep

__all__ = ["DistributedDataParallel", "consume_prefix_in_state_dict_if_present"]


def _group_for(what: str):
    """The default process group: initialised here when this process was started by mpiexec as one
    of several (as PyTorch's launchers set up the environment), else a clear error."""
    if not dist.is_initialized():
        if dist.launched_by_mpiexec():
            dist.init_process_group("mpi")
        else:
            raise RuntimeError(f"{what}: the default process group has not been initialized; call "
                               "fastmlp.distributed.init_process_group() first (and start the job with "
                               "mpiexec -n N)")
    from ...distributed.process_group import _group
    return _group


class DistributedDataParallel(Module):
    """Data parallelism over MPI processes (``torch.nn.parallel.DistributedDataParallel``).

    At construction rank 0's parameters and buffers are broadcast to every process (after
    checking that every process has the same parameter names, shapes and dtypes). Calling
    the wrapper calls the module; the backward pass of its output then averages the
    parameters' gradients over the processes (one collective over the optimizer's flat
    gradient buffer: in shared memory between the processes of a machine once ``fit`` has
    run, else ``MPI_Allreduce``), so ``optimizer.step()`` takes the same step everywhere.

    ``module`` is the wrapped model. Like PyTorch's, the wrapper's ``state_dict()`` keys
    carry the prefix ``module.`` (the module is its submodule ``module``), so save
    ``ddp.module.state_dict()`` for a checkpoint a plain model loads, or strip the prefix
    with ``consume_prefix_in_state_dict_if_present(sd, "module.")``.

    Args:
        module: the model (its parameters on the CPU).
        device_ids, output_device, dim, process_group, bucket_cap_mb, gradient_as_bucket_view,
            static_graph: accepted for PyTorch compatibility (CPU only, one default group, one
            collective over the whole gradient buffer).
        broadcast_buffers: broadcast rank 0's buffers at construction (and before each forward).
        find_unused_parameters: accepted; a parameter that got no gradient on a process counts
            as a zero gradient there, so every process steps the same parameters.
    """

    def __init__(self, module: Module, device_ids: Any = None, output_device: Any = None, dim: int = 0,
                 broadcast_buffers: bool = True, process_group: Any = None, bucket_cap_mb: Any = None,
                 find_unused_parameters: bool = False, check_reduction: bool = False,
                 gradient_as_bucket_view: bool = False, static_graph: bool = False) -> None:
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: module must be a fastmlp.nn.Module; got {type(module).__name__}")
        if isinstance(module, DistributedDataParallel):
            raise TypeError("DistributedDataParallel: the module is already wrapped in DistributedDataParallel")
        group = _group_for("DistributedDataParallel")
        self.module = module
        self.broadcast_buffers = bool(broadcast_buffers)
        self.find_unused_parameters = bool(find_unused_parameters)
        self.require_backward_grad_sync = True
        object.__setattr__(self, "_comm", group)
        object.__setattr__(self, "_pack", None)  # the contiguous array of the packed fallback
        object.__setattr__(self, "_averager", None)  # the NodeAverager (fit makes it)
        object.__setattr__(self, "_sharded", None)  # the ShardedUpdate of fit's steps (fit makes it)
        object.__setattr__(self, "_span", None)  # ((param, grad, grad array) of each, span) of the last average
        self._check_same_model(group)
        self._broadcast_state(group, buffers=True)

    # ---- construction ---------------------------------------------------------------------------
    def _check_same_model(self, group) -> None:
        """Every process must wrap a model with the same parameters (names, shapes, dtypes): one small
        allgather, and the same error on every process when they differ (so none waits in a collective)."""
        mine = [(n, tuple(p.shape), str(p.dtype)) for n, p in self.module.named_parameters()]
        mine += [("buffer " + n, tuple(b.shape), str(b.dtype)) for n, b in self.module.named_buffers()]
        for n, p in self.module.named_parameters():
            if type(p._data) is not np.ndarray:
                raise ValueError(f"DistributedDataParallel: parameter {n!r} is on {p.device}; the MPI backend "
                                 "averages gradients in host memory, so keep the model on the CPU")
        if group.size == 1:
            return
        every = group.comm.allgather(mine)
        for rank, theirs in enumerate(every):
            if theirs != every[0]:
                diff = next(((a, b) for a, b in zip(every[0], theirs) if a != b), None)
                detail = (f"rank 0 has {diff[0][0]!r} {list(diff[0][1])} {diff[0][2]}, rank {rank} has "
                          f"{diff[1][0]!r} {list(diff[1][1])} {diff[1][2]}") if diff else \
                    f"rank 0 has {len(every[0])} parameters and buffers, rank {rank} has {len(theirs)}"
                raise ValueError("DistributedDataParallel: the model differs between processes (every process "
                                 f"must build the same model): {detail}")

    def _broadcast_state(self, group, buffers: bool) -> None:
        """Rank 0's parameters (and buffers) to every process, in place."""
        if group.size == 1:
            return
        tensors = list(self.module.parameters()) + (list(self.module.buffers()) if buffers else [])
        for t in tensors:
            data = t._data
            if not data.flags.c_contiguous:
                data = np.ascontiguousarray(data)
                group.comm.Bcast(data, root=0)
                t._data[...] = data
            else:
                group.comm.Bcast(data, root=0)

    # ---- the module's behaviour -----------------------------------------------------------------
    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        if self.broadcast_buffers and self._comm.size > 1 and any(True for _ in self.module.buffers()):
            self._broadcast_buffers()
        out = self.module(*inputs, **kwargs)
        if self.require_backward_grad_sync and self._comm.size > 1 and is_grad_enabled():
            for t in _tensors_in(out):
                if t.requires_grad and t.grad_fn is not None:
                    t.register_hook(self._on_output_grad)
        return out

    def _broadcast_buffers(self) -> None:
        for b in self.module.buffers():
            if b._data.flags.c_contiguous:
                self._comm.comm.Bcast(b._data, root=0)

    def _on_output_grad(self, grad: Tensor) -> None:
        # Only a backward pass that writes the leaves' .grad averages them (not autograd.grad).
        if _autograd._Engine.leaf_writes:
            _autograd.queue_callback(self.average_gradients)

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Backward passes inside this context accumulate local gradients without averaging
        (gradient accumulation); the first backward after it averages everything accumulated."""
        previous = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = previous

    # ---- gradient averaging ---------------------------------------------------------------------
    def average_gradients(self) -> None:
        """Average every parameter's ``.grad`` over the processes, in place: one collective over the
        optimizer's flat gradient buffer when the gradients live there (see the module docstring)."""
        group = self._comm
        if group.size == 1:
            return
        params = [p for p in self.module.parameters() if p.requires_grad]
        if not params:
            return
        cached = self._span
        if cached is not None and len(cached[0]) == len(params) and all(
                p is q and p._grad is g and g._data is d for p, (q, g, d) in zip(params, cached[0])):
            span = cached[1]  # the same gradient arrays as the last step: the same span
        else:
            span = self._flat_span(params)
            held = [(p, p._grad, p._grad._data) for p in params] if span is not None else None
            object.__setattr__(self, "_span", None if held is None else (held, span))
        if span is None:
            span = self._packed(params)
            self._reduce(span)
            self._unpack(params, span)
        else:
            self._reduce(span)

    def _reduce(self, buf: np.ndarray, scatter: bool = False) -> Optional[tuple]:
        """Average the 1-D buffer over the processes, in place: in shared memory when it is the slot
        fit moved the gradients into (fastmlp.distributed.node_average), else one MPI_Allreduce.
        `scatter` (fit's sharded update, when every process asks): only this process's chunk of slot
        0, returned as (lo, hi). After a whole average no process stays on the shared update buffers."""
        av = self._averager
        if av is not None:
            chunk = av.average(buf, scatter)
            if chunk is None and self._sharded is not None:
                self._sharded.leave()  # every process averaged everything: each steps its own copy
            return chunk
        group = self._comm
        group.comm.Allreduce(group.mpi.IN_PLACE, buf, op=group.mpi.SUM)
        buf /= buf.dtype.type(group.size)
        return None

    def _share_gradient_buffer(self, optimizer: Any) -> None:
        """Move the optimizer's flat gradient buffer into this process's slot of the machine's shared
        memory, so the native backward writes the gradients where the averaging reads them (nothing
        is copied per step). Collective; nothing happens where the slots are not used."""
        groups = getattr(optimizer, "param_groups", None)
        flat = None
        if groups and len(groups) == 1 and hasattr(optimizer, "_flat_for"):
            flat = optimizer._flat_for(groups[0])
        size = -1 if flat is None or type(flat.grad) is not np.ndarray else int(flat.grad.size)
        av = self._averager
        if size >= 0 and av is not None and av.offset_in_slot(flat.grad) == 0:
            size = -2  # already there
        comm, mpi = self._comm.comm, self._comm.mpi
        if len(set(comm.allgather(size))) != 1 or size < 0:  # (the same decision on every process)
            return
        av = NodeAverager(comm, mpi, size, flat.grad.dtype)
        object.__setattr__(self, "_averager", av)
        if av.shared:
            flat.move_grad(groups[0]["params"], av.slot)

    @staticmethod
    def _flat_span(params: list) -> Optional[np.ndarray]:
        """The smallest 1-D slice of one buffer that holds every parameter's gradient, when all of
        them are views of that one buffer (the optimizer's arena); else None."""
        owner = None
        spans = []
        for p in params:
            g = p._grad
            if g is None:
                buf = p._grad_buf
                if buf is None:
                    return None
                # no gradient here this step: a zero one, in the arena, so every process steps it
                buf[...] = 0
                p.grad = _wrap(buf)
                g = p._grad
            a = g._data
            base = a.base
            if base is None or type(a) is not np.ndarray or not a.flags.c_contiguous:
                return None
            if owner is None:
                owner = base
                if owner.ndim != 1 or not owner.flags.c_contiguous or owner.dtype != a.dtype:
                    return None
                start0 = owner.__array_interface__["data"][0]
            elif base is not owner or a.dtype != owner.dtype:
                return None
            start = (a.__array_interface__["data"][0] - start0) // a.itemsize
            spans.append((start, start + a.size))
        # Only the alignment padding (under 64 bytes, zero) may lie between them: no other
        # parameter's gradient (one the optimizer holds but this model does not) is averaged too.
        spans.sort()
        gap = max(1, 64 // owner.itemsize)
        if any(b0 - a1 >= gap or b0 < a1 for (_, a1), (b0, _) in zip(spans, spans[1:])):
            return None
        return owner[spans[0][0]:spans[-1][1]]

    def _packed(self, params: list) -> np.ndarray:
        total = sum(int(p._data.size) for p in params)
        dtype = np.result_type(*[p._data.dtype for p in params])
        pack = self._pack
        if pack is None or pack.size != total or pack.dtype != dtype:
            pack = np.empty(total, dtype=dtype)
            object.__setattr__(self, "_pack", pack)
        at = 0
        for p in params:
            n = int(p._data.size)
            if p._grad is None:
                pack[at:at + n] = 0
            else:
                pack[at:at + n] = p._grad._data.reshape(-1)
            at += n
        return pack

    @staticmethod
    def _unpack(params: list, pack: np.ndarray) -> None:
        at = 0
        for p in params:
            n = int(p._data.size)
            values = pack[at:at + n].reshape(p._data.shape)
            if p._grad is None:
                buf = p._grad_buf
                if buf is not None:
                    buf[...] = values
                    p.grad = _wrap(buf)
                else:
                    p.grad = _wrap(values.astype(p._data.dtype, copy=True))
            else:
                p._grad._data[...] = values
            at += n

    # ---- fit's native step ------------------------------------------------------------------------
    def _fit_train_step(self, loss_fn: Any, optimizer: Any):
        """For ``fastmlp.train.fit``: the native whole-step path over the wrapped module with the
        update taken out of the native call — forward and backward natively into the optimizer's
        flat gradient buffer, then the gradients averaged, then the optimizer's native multi-tensor
        update (sharded over the processes of a machine during a held run of steps, see
        fastmlp.distributed.sharded_update). None: fit runs the eager step."""
        step = _DataParallelStep.build(self.module, loss_fn, optimizer)
        if step is None or self._comm.size == 1:  # one process: nothing to average, keep the update native
            return step
        step._native_update = False
        step.optimizer = _AveragingOptimizer(optimizer, self)
        step._ddp = self
        self._share_gradient_buffer(optimizer)
        return step

    def _begin_sharded_update(self, optimizer: Any) -> Optional[_sharded.ShardedUpdate]:
        """Move the parameters and optimizer state into the machine's shared window for a run of fit's
        steps, when every process can shard the update (collective); the active ShardedUpdate or None."""
        sh = self._sharded
        params = [p for p in self.module.parameters() if p.requires_grad]
        can = _sharded.usable(self._averager, optimizer, params)
        ready = can and sh is not None and sh.matches(optimizer)
        agreed = self._comm.comm.allreduce(2 if ready else (1 if can else 0), op=self._comm.mpi.MIN)
        if agreed == 0:
            return None
        if agreed == 1:  # some process needs a new one: every process makes it (collective)
            if sh is not None:
                sh.leave()
            sh = _sharded.ShardedUpdate(self._averager, optimizer, previous=sh)
            object.__setattr__(self, "_sharded", sh if sh.ok else None)
            if not sh.ok:
                return None
        sh.share()
        return sh


class _AveragingOptimizer:
    """The optimizer as TrainStep sees it under DDP: its step first averages the gradients the
    native backward wrote (everything else is the optimizer's own)."""

    def __init__(self, optimizer: Any, ddp: DistributedDataParallel) -> None:
        self._optimizer = optimizer
        self._ddp = ddp

    def step(self, closure: Any = None) -> Any:
        sharded = self._ddp._sharded
        if sharded is not None and sharded.active and closure is None:
            sharded.step(self._ddp)
            return None
        self._ddp.average_gradients()
        return self._optimizer.step(closure)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._optimizer, name)


class _DataParallelStep(TrainStep):
    """fit's native step under DistributedDataParallel: a held run of steps (one epoch of fit) runs
    with the parameters and optimizer state in the machine's shared memory and the update sharded
    over its processes, when they all can (fastmlp.distributed.sharded_update); they return to each
    process's own memory when the run ends."""

    _ddp: Any = None

    @contextlib.contextmanager
    def hold(self):
        sharded = self._ddp._begin_sharded_update(self.optimizer._optimizer) if self._ddp is not None else None
        clean = False
        try:
            with TrainStep.hold(self):
                yield self
            clean = True
        finally:
            if sharded is not None:
                sharded.end(clean)


def _tensors_in(out: Any) -> list:
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _tensors_in(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _tensors_in(o)]
    return []


def consume_prefix_in_state_dict_if_present(state_dict: "OrderedDict", prefix: str) -> None:
    """Strip `prefix` from every key that starts with it, in place
    (``torch.nn.modules.utils.consume_prefix_in_state_dict_if_present``): turns a
    ``DistributedDataParallel`` state dict (keys ``module.*``) into the wrapped model's."""
    keys = list(state_dict.keys())
    for key in keys:
        if key.startswith(prefix):
            state_dict[key[len(prefix):]] = state_dict.pop(key)
    meta = getattr(state_dict, "_metadata", None)
    if meta is not None:
        for key in list(meta.keys()):
            if key == prefix.rstrip(".") or key.startswith(prefix):
                meta[key[len(prefix):] if key.startswith(prefix) else ""] = meta.pop(key)
