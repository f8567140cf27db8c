"""Worker processes of a DataLoader (``torch.utils.data`` with ``num_workers > 0``).

Each worker is a process that runs the dataset's ``__getitem__`` (or ``__getitems__``)
and the collate function for the batches the main process assigns it, so Python code
in a dataset runs beside the training step instead of taking turns with it for the
GIL. How a batch travels back: every array in it (a Tensor's, or a NumPy array) is
written into one file in shared memory (``/dev/shm``); only the batch's structure and
the arrays' dtypes, shapes and offsets are pickled. The main process maps the file,
removes its name at once, and wraps the arrays without copying them; the memory goes
away with the last tensor that uses it.

What the main process guarantees (``_WorkerPool``):

* batches come back in sampler order, so they are those of ``num_workers=0`` (as long
  as the dataset draws no random numbers);
* at most ``prefetch_factor * num_workers`` batches are in flight;
* an exception in a worker is raised again in the main process with the worker's
  traceback in its message (``Caught ValueError in DataLoader worker process 1.``);
* a worker that dies (killed, out of memory) is a RuntimeError naming it and its exit
  code or signal within a fraction of a second, never a hang; ``timeout`` bounds the
  wait for any one batch;
* Ctrl-C (KeyboardInterrupt), an error, the end of the epoch (unless
  ``persistent_workers``) or dropping the iterator stops every worker: workers ignore
  SIGINT and leave once the main process tells them, or once it is gone.

Seeding is PyTorch's: the main process draws a ``base_seed`` from the loader's
generator (or the default one) for every pass, and worker ``i`` seeds Python's
``random`` and ``fastmlp`` with ``base_seed + i`` and NumPy's global generator with a
32-bit state derived from both, before ``worker_init_fn(i)`` runs.
"""
from __future__ import annotations

import itertools
import mmap
import os
import queue
import random
import signal
import tempfile
import time
import traceback
from multiprocessing.reduction import ForkingPickler
from typing import Any, Callable, Optional

import numpy as np

from ...tensor import Tensor, _wrap

__all__ = ["WorkerInfo", "get_worker_info"]

_POLL_S = 0.1  # how often a waiting main process looks for dead workers
_ALIGN = 64  # each array in a shared-memory batch starts on a cache line
_SHM_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


class WorkerInfo:
    """What a worker knows about itself (``torch.utils.data.get_worker_info()``'s result).

    Attributes:
        id: this worker's number, 0 .. num_workers - 1.
        num_workers: how many workers the DataLoader runs.
        seed: the seed this worker was given (``base_seed + id``).
        dataset: this worker's copy of the dataset.
    """

    __slots__ = ("id", "num_workers", "seed", "dataset", "_frozen")

    def __init__(self, id: int, num_workers: int, seed: int, dataset: Any) -> None:
        self.id = id
        self.num_workers = num_workers
        self.seed = seed
        self.dataset = dataset
        self._frozen = True

    def __setattr__(self, name: str, value: Any) -> None:
        if getattr(self, "_frozen", False):
            raise RuntimeError(f"Cannot assign attributes to {type(self).__name__} objects")
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return f"WorkerInfo(id={self.id}, num_workers={self.num_workers}, seed={self.seed}, dataset=...)"


_worker_info: Optional[WorkerInfo] = None


def get_worker_info() -> Optional[WorkerInfo]:
    """In a DataLoader worker process, its ``WorkerInfo``; in the main process, None
    (``torch.utils.data.get_worker_info``). An IterableDataset uses it to split its
    stream between workers."""
    return _worker_info


# ---- tensors through multiprocessing --------------------------------------------------------
def _rebuild_tensor(array: np.ndarray, requires_grad: bool) -> Tensor:
    return _wrap(array, requires_grad)


def _reduce_tensor(t: Tensor):
    return _rebuild_tensor, (t._host(), bool(t._rg))


# Plain pickle refuses tensors (fastmlp.save is their file format), but a dataset holding
# tensors must reach a worker started by spawn or forkserver, and a sample may carry a
# tensor somewhere the shared-memory packing does not look; multiprocessing's pickler
# copies them as their arrays.
ForkingPickler.register(Tensor, _reduce_tensor)


# ---- batches through shared memory ----------------------------------------------------------
class _ArrayRef:
    """Where one array of a batch lies in its shared-memory file."""

    __slots__ = ("index", "is_tensor")

    def __init__(self, index: int, is_tensor: bool) -> None:
        self.index = index
        self.is_tensor = is_tensor


def _strip_arrays(x: Any, arrays: list) -> Any:
    """`x` with each Tensor and NumPy array (of numbers) replaced by an ``_ArrayRef``."""
    if isinstance(x, Tensor) and type(x._data) is np.ndarray and not x._rg:
        arrays.append(x._data)
        return _ArrayRef(len(arrays) - 1, True)
    if type(x) is np.ndarray and x.dtype.kind in "biufc":
        arrays.append(x)
        return _ArrayRef(len(arrays) - 1, False)
    if type(x) is tuple or type(x) is list:
        return type(x)(_strip_arrays(v, arrays) for v in x)
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return type(x)(*(_strip_arrays(v, arrays) for v in x))
    if type(x) is dict:
        return {k: _strip_arrays(v, arrays) for k, v in x.items()}
    return x


def _restore_arrays(x: Any, arrays: list) -> Any:
    if type(x) is _ArrayRef:
        a = arrays[x.index]
        return _wrap(a) if x.is_tensor else a
    if type(x) is tuple or type(x) is list:
        return type(x)(_restore_arrays(v, arrays) for v in x)
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return type(x)(*(_restore_arrays(v, arrays) for v in x))
    if type(x) is dict:
        return {k: _restore_arrays(v, arrays) for k, v in x.items()}
    return x


def _pack(batch: Any, path: str) -> tuple:
    """The message that carries `batch` to the main process: its arrays go into the file `path`."""
    arrays: list = []
    skeleton = _strip_arrays(batch, arrays)
    metas = []
    total = 0
    for a in arrays:
        metas.append((a.dtype.str, a.shape, total))
        total += -(-a.nbytes // _ALIGN) * _ALIGN
    if total == 0:
        return ("plain", batch)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, total)
        mm = mmap.mmap(fd, total)
    finally:
        os.close(fd)
    for a, (dt, shape, off) in zip(arrays, metas):
        dst = np.ndarray(shape, dtype=a.dtype, buffer=mm, offset=off)
        dst[...] = a
        del dst
    mm.close()
    return ("shm", path, total, metas, skeleton)


def _unpack(msg: tuple) -> Any:
    if msg[0] == "plain":
        return msg[1]
    _, path, total, metas, skeleton = msg
    fd = os.open(path, os.O_RDWR)
    try:
        mm = mmap.mmap(fd, total)
    finally:
        os.close(fd)
        os.unlink(path)  # the mapping stays until the last array over it is freed
    arrays = [np.ndarray(shape, dtype=np.dtype(dt), buffer=mm, offset=off) for dt, shape, off in metas]
    return _restore_arrays(skeleton, arrays)


# ---- the worker process -----------------------------------------------------------------------
class _ExceptionWrapper:
    """An exception raised in a worker, with its traceback as text (``torch``'s ExceptionWrapper)."""

    def __init__(self, worker_id: int, exc: BaseException) -> None:
        self.exc_type = type(exc)
        self.msg = (f"Caught {type(exc).__name__} in DataLoader worker process {worker_id}.\nOriginal "
                    + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))

    def reraise(self) -> None:
        msg = self.msg
        if self.exc_type is KeyError:  # KeyError shows its argument's repr, which would escape the newlines
            msg = KeyErrorMessage(msg)
        try:
            exc = self.exc_type(msg)
        except Exception:
            raise RuntimeError(msg) from None
        raise exc


class KeyErrorMessage(str):
    """A KeyError's message printed as it is."""

    def __repr__(self) -> str:
        return str(self)


class _Exhausted:
    """A worker's answer when its IterableDataset stream has no batch left."""


def _numpy_seed(base_seed: int, worker_id: int) -> int:
    return int(np.random.SeedSequence([worker_id, base_seed & 0xFFFFFFFFFFFFFFFF]).generate_state(1)[0])


def _worker_loop(spec: dict, worker_id: int, num_workers: int, base_seed: int, index_queue, result_queue,
                 shm_prefix: str, parent_pid: int) -> None:
    """Runs in the worker process: answer (epoch, task, keys) requests until told to stop (None).
    Keys None ask for the next batch of the worker's own IterableDataset stream."""
    global _worker_info
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    from ... import _C
    from ... import random as _fm_random

    # One thread for native kernels in a worker, as PyTorch's workers set: the workers already
    # share the cores with the training step, and an OpenMP pool inherited through fork is unusable.
    _C.set_num_threads(1)

    seed = base_seed + worker_id
    random.seed(seed)
    _fm_random.manual_seed(seed & 0xFFFFFFFFFFFFFFFF)
    np.random.seed(_numpy_seed(base_seed, worker_id))
    dataset = spec["dataset"]
    _worker_info = WorkerInfo(worker_id, num_workers, seed, dataset)
    init_error = None
    try:
        if spec["worker_init_fn"] is not None:
            spec["worker_init_fn"](worker_id)
        fetch = _make_fetch(spec)
    except Exception as e:  # reported with the first task, as PyTorch does
        init_error = _ExceptionWrapper(worker_id, e)
    stream = None
    stream_epoch = None
    seq = itertools.count()
    while True:
        try:
            task = index_queue.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent_pid:  # the main process is gone
                return
            continue
        if task is None:
            return
        epoch, idx, keys = task
        try:
            if init_error is not None:
                msg = ("error", init_error)
            elif keys is None:  # the next batch of this worker's IterableDataset stream
                if stream_epoch != epoch:
                    stream, stream_epoch = _stream_batches(spec), epoch
                batch = next(stream, _EXHAUSTED)
                msg = ("exhausted", None) if batch is _EXHAUSTED else _pack(batch, f"{shm_prefix}-{next(seq)}")
            else:
                msg = _pack(fetch(keys), f"{shm_prefix}-{next(seq)}")
        except Exception as e:
            msg = ("error", _ExceptionWrapper(worker_id, e))
        try:
            result_queue.put((epoch, idx, msg))
        except Exception as e:  # the batch itself could not be sent (an object that does not pickle)
            result_queue.put((epoch, idx, ("error", _ExceptionWrapper(worker_id, e))))


_EXHAUSTED = _Exhausted()


def _make_fetch(spec: dict) -> Callable:
    from .fetch import make_fetch

    return make_fetch(spec["dataset"], spec["collate_fn"], spec["auto_collation"])


def _stream_batches(spec: dict):
    it = iter(spec["dataset"])
    collate_fn = spec["collate_fn"]
    batch_size = spec["batch_size"]
    if batch_size is None:
        for sample in it:
            yield collate_fn(sample)
        return
    while True:
        batch = list(itertools.islice(it, batch_size))
        if not batch or (len(batch) < batch_size and spec["drop_last"]):
            return
        yield collate_fn(batch)


# ---- the main process's side ----------------------------------------------------------------
def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


class _WorkerPool:
    """The worker processes of one DataLoader (for one pass, or for all with persistent_workers)."""

    def __init__(self, loader: Any, spec: dict, base_seed: int) -> None:
        import multiprocessing as mp

        ctx = loader.multiprocessing_context
        if ctx is None:
            ctx = mp.get_context()
        elif isinstance(ctx, str):
            ctx = mp.get_context(ctx)
        self.num_workers = loader.num_workers
        self.timeout = float(loader.timeout or 0)
        self.depth = self.num_workers * int(loader.prefetch_factor or 2)
        self.result_queue = ctx.Queue()
        self.index_queues = []
        self.workers = []
        self.epoch = 0
        self.closed = False
        self.shm_prefix = os.path.join(_SHM_DIR, f"fastmlp-dl-{os.getpid()}-{id(self):x}")
        try:
            for i in range(self.num_workers):
                iq = ctx.Queue()
                w = ctx.Process(target=_worker_loop, name=f"DataLoader worker {i}",
                                args=(spec, i, self.num_workers, base_seed, iq, self.result_queue,
                                      f"{self.shm_prefix}-w{i}", os.getpid()), daemon=True)
                w.start()
                self.index_queues.append(iq)
                self.workers.append(w)
        except BaseException:
            self.shutdown()
            raise

    # ---- one pass ----
    def run(self, tasks, streaming: bool = False):
        """The batches of `tasks` (batch keys, or None for IterableDataset streams), in order."""
        self.epoch += 1
        epoch = self.epoch
        n = self.num_workers
        active = list(range(n))  # workers whose stream may still have batches (streaming)
        done: dict = {}
        sent = 0
        rcvd = 0
        next_worker = 0
        tasks = iter(tasks) if not streaming else None
        exhausted = False

        def send() -> bool:
            nonlocal sent, next_worker, exhausted
            if streaming:
                if not active:
                    return False
                w = active[next_worker % len(active)]
                next_worker += 1
                self.index_queues[w].put((epoch, (sent, w), None))
            else:
                if exhausted:
                    return False
                keys = next(tasks, _EXHAUSTED)
                if keys is _EXHAUSTED:
                    exhausted = True
                    return False
                if isinstance(keys, np.ndarray):
                    keys = keys.tolist()
                w = sent % n
                self.index_queues[w].put((epoch, (sent, w), keys))
            sent += 1
            return True

        while sent - rcvd < self.depth and send():
            pass
        while rcvd < sent:
            if rcvd in done:
                msg = done.pop(rcvd)
            else:
                msg = self._receive(epoch, rcvd, done)
            rcvd += 1
            kind = msg[0]
            if kind == "exhausted":
                w = msg[2]
                if w in active:
                    active.remove(w)
                # requests already queued to w answer "exhausted" too; nothing more is sent to it
                while sent - rcvd < self.depth and send():
                    pass
                continue
            if kind == "error":
                msg[1].reraise()
            batch = _unpack(msg)
            while sent - rcvd < self.depth and send():
                pass
            yield batch

    def _receive(self, epoch: int, want: int, done: dict) -> tuple:
        """Wait for result `want` of this pass, keeping the others that arrive first in `done`."""
        start = time.monotonic()
        while True:
            try:
                ep, (idx, w), msg = self.result_queue.get(timeout=_POLL_S)
            except queue.Empty:
                self._check_alive()
                if self.timeout and time.monotonic() - start > self.timeout:
                    raise RuntimeError(f"DataLoader timed out after {self.timeout:g} seconds waiting for a batch "
                                       f"from its {self.num_workers} worker processes") from None
                continue
            if ep != epoch:  # from a pass that was left early
                if msg[0] == "shm":
                    _discard(msg[1])
                continue
            if msg[0] == "exhausted":
                msg = ("exhausted", None, w)
            if idx == want:
                return msg
            done[idx] = msg

    def _check_alive(self) -> None:
        for i, w in enumerate(self.workers):
            if not w.is_alive():
                code = w.exitcode
                how = f"was killed by {_signal_name(code)}" if code is not None and code < 0 else \
                    f"exited unexpectedly with exit code {code}"
                hint = " (out of memory, or killed from outside)" if code is not None and code < 0 else ""
                self.shutdown()
                raise RuntimeError(f"DataLoader worker {i} (pid {w.pid}) {how}{hint}; its batch is lost and the "
                                   "pass stops")

    def shutdown(self) -> None:
        """Stop every worker (politely, then by force) and remove any batch files they left."""
        if self.closed:
            return
        self.closed = True
        for q in self.index_queues:
            try:
                q.put(None)
            except Exception:
                pass
        deadline = time.monotonic() + 2.0
        for w in self.workers:
            w.join(timeout=max(0.0, deadline - time.monotonic()))
        for w in self.workers:
            if w.is_alive():
                w.terminate()
                w.join(timeout=1.0)
            if w.is_alive():
                w.kill()
                w.join(timeout=1.0)
        for q in self.index_queues + [self.result_queue]:
            q.cancel_join_thread()
            q.close()
        _remove_leftovers(self.shm_prefix)

    def __del__(self) -> None:
        try:
            self.shutdown()
        except Exception:
            pass


def _discard(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _remove_leftovers(prefix: str) -> None:
    folder, stem = os.path.split(prefix)
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name.startswith(stem + "-"):
            _discard(os.path.join(folder, name))


def worker_spec(loader: Any) -> dict:
    """What a worker process needs of `loader` (picklable for spawn and forkserver)."""
    return {"dataset": loader.dataset, "collate_fn": loader.collate_fn, "auto_collation": loader._auto_collation,
            "batch_size": loader.batch_size, "drop_last": loader.drop_last, "worker_init_fn": loader.worker_init_fn}


def base_seed(generator) -> int:
    """A new base seed for one pass's workers, drawn from the loader's generator (or the default one)."""
    from ...random import _gen

    return int(_gen(generator).np.integers(0, 2 ** 63 - 1))

