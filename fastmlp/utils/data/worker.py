"""Worker processes of a DataLoader (``torch.utils.data`` with ``num_workers > 0``).

Each worker is a process that runs the dataset's ``__getitem__`` (or ``__getitems__``)
and the collate function for the batches the main process assigns it, so Python code
in a dataset runs beside the training step instead of taking turns with it for the
GIL. How a batch travels back: every array in it (a Tensor's, or a NumPy array) is
written into one of the worker's files in shared memory (``/dev/shm``, reused in turn:
see ``_Slots``); only the batch's structure and the arrays' dtypes, shapes and offsets
are pickled. The main process, which keeps each file mapped, copies the arrays out as
soon as the message arrives, so the slot is free again and every tensor owns its
memory.

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

_POLL_S = 0.1  # how often a waiting main process checks the timeout (a worker's exit wakes it at once)
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
    return _rebuild_tensor, (t._host(), bool(t._requires_grad))


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
    if isinstance(x, Tensor) and type(x._data) is np.ndarray and not x._requires_grad:
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


class _Slots:
    """A worker's shared-memory files, reused in turn: batch k goes into slot k % n.

    The main process copies a batch out of its slot as soon as the batch arrives, and never
    has more than 2 * prefetch_factor of one worker's batches unread (a pass's, plus those
    of a pass left early), so n = 2 * prefetch_factor + 1 slots are never written while
    unread. Reused pages are already mapped on both sides: a fresh file per batch costs a
    page fault per 4 KiB page twice, about 0.4 ms for 64 MNIST images, where the copy out of
    a reused slot costs a few tens of microseconds.
    """

    def __init__(self, prefix: str, n: int) -> None:
        self.prefix = prefix
        self.n = n
        self.files: dict = {}  # slot -> (path, size, mmap)
        self.count = 0
        self.generation = 0

    def take(self, nbytes: int) -> tuple:
        """(path, mmap) of the next slot, grown to hold `nbytes`."""
        slot = self.count % self.n
        self.count += 1
        entry = self.files.get(slot)
        if entry is None or entry[1] < nbytes:
            if entry is not None:
                entry[2].close()
                _discard(entry[0])  # the main process's mapping of it stays valid until it drops it
            self.generation += 1
            size = max(nbytes + nbytes // 4, 1 << 16)
            path = f"{self.prefix}-s{slot}-g{self.generation}"
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.ftruncate(fd, size)
                mm = mmap.mmap(fd, size)
            finally:
                os.close(fd)
            entry = (path, size, mm)
            self.files[slot] = entry
        return entry[0], entry[2]


def _pack(batch: Any, slots: _Slots) -> tuple:
    """The message that carries `batch` to the main process: its arrays go into the next slot."""
    arrays: list = []
    skeleton = _strip_arrays(batch, arrays)
    metas = []
    total = 0
    for a in arrays:
        metas.append((a.dtype.str, a.shape, total))
        total += -(-a.nbytes // _ALIGN) * _ALIGN
    if total == 0:
        return ("plain", batch)
    path, mm = slots.take(total)
    for a, (dt, shape, off) in zip(arrays, metas):
        dst = np.ndarray(shape, dtype=a.dtype, buffer=mm, offset=off)
        dst[...] = a
        del dst
    return ("shm", path, metas, skeleton)


class _SlotReader:
    """The main process's mappings of the workers' slot files, by path."""

    def __init__(self) -> None:
        self.maps: dict = {}

    def unpack(self, msg: tuple) -> Any:
        """The batch of `msg`, its arrays copied out of the slot (each into memory of its own)."""
        if msg[0] == "plain":
            return msg[1]
        _, path, metas, skeleton = msg
        mm = self.maps.get(path)
        if mm is None:
            fd = os.open(path, os.O_RDONLY)
            try:
                mm = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
            finally:
                os.close(fd)
            self.maps[path] = mm
        arrays = [np.ndarray(shape, dtype=np.dtype(dt), buffer=mm, offset=off).copy() for dt, shape, off in metas]
        return _restore_arrays(skeleton, arrays)

    def close(self) -> None:
        self.maps.clear()  # each mapping goes with its last reference


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


def _worker_loop(spec: dict, worker_id: int, num_workers: int, base_seed: int, tasks, results, shm_prefix: str,
                 parent_pid: int) -> None:
    """Runs in the worker process: answer (epoch, task, keys) requests from the `tasks` pipe on the
    `results` pipe until told to stop (None). Keys None ask for the next batch of the worker's own
    IterableDataset stream."""
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
    slots = _Slots(shm_prefix, 2 * spec["prefetch_factor"] + 1)
    while True:
        try:
            if not tasks.poll(1.0):
                if os.getppid() != parent_pid:  # the main process is gone
                    return
                continue
            task = tasks.recv()
        except (EOFError, OSError):  # the main process closed the pipe
            return
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
                msg = ("exhausted", None) if batch is _EXHAUSTED else _pack(batch, slots)
            else:
                msg = _pack(fetch(keys), slots)
        except Exception as e:
            msg = ("error", _ExceptionWrapper(worker_id, e))
        try:
            try:
                results.send((epoch, idx, msg))
            except (BrokenPipeError, EOFError, ConnectionError):
                raise
            except Exception as e:  # the batch itself could not be pickled (sent nothing yet)
                results.send((epoch, idx, ("error", _ExceptionWrapper(worker_id, e))))
        except (BrokenPipeError, EOFError, ConnectionError):  # the main process is gone
            return


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
        self.task_conns: list = []  # main -> worker i
        self.result_conns: list = []  # worker i -> main
        self.workers: list = []
        self.epoch = 0
        self.closed = False
        self.reader = _SlotReader()
        self.shm_prefix = os.path.join(_SHM_DIR, f"fastmlp-dl-{os.getpid()}-{id(self):x}")
        try:
            for i in range(self.num_workers):
                # Pipes, not multiprocessing queues: a queue's feeder thread needs the GIL, which the
                # training step and the dataset code hold for milliseconds at a time; a pipe's send
                # happens in the sending thread, and no lock is shared between workers (a worker
                # killed while holding one would stall the others).
                task_r, task_w = ctx.Pipe(duplex=False)
                result_r, result_w = ctx.Pipe(duplex=False)
                w = ctx.Process(target=_worker_loop, name=f"DataLoader worker {i}",
                                args=(spec, i, self.num_workers, base_seed, task_r, result_w,
                                      f"{self.shm_prefix}-w{i}", os.getpid()), daemon=True)
                self.task_conns.append(task_w)
                self.result_conns.append(result_r)
                w.start()
                self.workers.append(w)
                task_r.close()
                result_w.close()
            self.waitables = self.result_conns + [w.sentinel for w in self.workers]
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
                self._send(w, (epoch, (sent, w), None))
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
                self._send(w, (epoch, (sent, w), keys))
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
            batch = msg[1]
            while sent - rcvd < self.depth and send():
                pass
            yield batch

    def _send(self, worker: int, task: tuple) -> None:
        try:
            self.task_conns[worker].send(task)
        except (BrokenPipeError, ConnectionError, OSError):  # the worker is gone: say which, and how
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                self._check_alive()
                time.sleep(0.01)
            raise

    def _receive(self, epoch: int, want: int, done: dict) -> tuple:
        """Wait for result `want` of this pass, keeping the others that arrive first in `done`."""
        from multiprocessing.connection import wait

        start = time.monotonic()
        while True:
            ready = wait(self.waitables, timeout=_POLL_S)
            found = None
            died = False
            for conn in ready:
                if isinstance(conn, int):  # a worker's sentinel: it has exited
                    died = True
                    continue
                try:
                    ep, (idx, w), msg = conn.recv()
                except (EOFError, OSError):
                    died = True
                    continue
                if ep != epoch:  # from a pass that was left early
                    continue
                if msg[0] == "exhausted":
                    msg = ("exhausted", None, w)
                elif msg[0] != "error":  # copied out of its slot now, which frees the slot for the worker
                    msg = ("batch", self.reader.unpack(msg))
                if idx == want:
                    found = msg
                else:
                    done[idx] = msg
            if found is not None:
                return found
            if died or not ready:
                self._check_alive()
            if self.timeout and time.monotonic() - start > self.timeout:
                raise RuntimeError(f"DataLoader timed out after {self.timeout:g} seconds waiting for a batch "
                                   f"from its {self.num_workers} worker processes")

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
        for conn in self.task_conns:
            try:
                conn.send(None)
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
        for conn in self.task_conns + self.result_conns:
            conn.close()
        self.reader.close()
        _remove_leftovers(self.shm_prefix)

    def __del__(self) -> None:
        try:
            self.shutdown()
        except Exception:
            pass


class _SharedCores:
    """While worker processes serve a pass, the main process's native kernels use at most the
    cores the workers leave (at least one): ``with _SharedCores(num_workers): ...``.

    An OpenMP team with more threads than free cores waits at every barrier for a thread the
    scheduler has given a worker's core to, and its idle threads spin on the cores the workers
    need; on 2 cores a training step with 2 threads beside 2 busy workers ran several times
    slower than with 1 (docs/data.md, "Measured"). Passes that overlap (a training and a
    validation loader) share one cap; the count in use before the first is restored after the
    last, unless it was changed in between (then the new setting stands).
    """

    _active = 0
    _saved: Optional[int] = None
    _set: Optional[int] = None

    def __init__(self, num_workers: int) -> None:
        self.num_workers = num_workers

    def __enter__(self) -> "_SharedCores":
        from ... import _C

        cls = _SharedCores
        if cls._active == 0:
            cls._saved = cls._set = None
            current = _C.get_num_threads()
            cap = max(1, _cores() - self.num_workers)
            if cap < current:
                _C.set_num_threads(cap)
                cls._saved, cls._set = current, cap
        cls._active += 1
        return self

    def __exit__(self, *exc) -> None:
        from ... import _C

        cls = _SharedCores
        cls._active -= 1
        if cls._active == 0 and cls._saved is not None:
            if _C.get_num_threads() == cls._set:
                _C.set_num_threads(cls._saved)
            cls._saved = cls._set = None


def _cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


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
            "batch_size": loader.batch_size, "drop_last": loader.drop_last, "worker_init_fn": loader.worker_init_fn,
            "prefetch_factor": int(loader.prefetch_factor or 2)}


def base_seed(generator) -> int:
    """A new base seed for one pass's workers, drawn from the loader's generator (or the default one)."""
    from ...random import _gen

    return int(_gen(generator).np.integers(0, 2 ** 63 - 1))

