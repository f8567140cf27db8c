"""DataLoader worker processes (num_workers > 0): the same batches as in-process loading, errors
with the worker's traceback, dead workers and timeouts as errors (never hangs), PyTorch's
seeding, get_worker_info, persistent workers, Ctrl-C and the shared-memory files.

Every wait here is bounded: a loader that could block gets a `timeout`, and the tests that
kill or interrupt processes run their loader in a child Python with a subprocess timeout.
"""
from __future__ import annotations

import glob
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import fastmlp
from fastmlp.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset, get_worker_info

LIMIT = 60  # seconds: a DataLoader's timeout and the bound of every child process


def _shm_files() -> set:
    return set(glob.glob(f"/dev/shm/fastmlp-dl-{os.getpid()}-*"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class TutorialDataset(Dataset):
    """The tutorial's pattern: index a tensor, convert per sample (and report the process)."""

    def __init__(self, n=50):
        rng = np.random.default_rng(0)
        self.x = fastmlp.tensor(rng.integers(0, 256, size=(n, 4, 4), dtype=np.uint8))
        self.y = fastmlp.tensor(rng.integers(0, 10, size=n))

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i].float().reshape(-1) / 255, self.y[i].long(), os.getpid()


class Failing(TutorialDataset):
    def __getitem__(self, i):
        if i == 13:
            raise ValueError(f"sample {i} is broken")
        return super().__getitem__(i)


class KeyFailing(TutorialDataset):
    def __getitem__(self, i):
        if i == 5:
            raise KeyError("no such key")
        return super().__getitem__(i)


class SeedProbe(Dataset):
    """Every sample is what the worker drew first from each generator after seeding."""

    first = None

    def __len__(self):
        return 8

    def __getitem__(self, i):
        if SeedProbe.first is None:
            info = get_worker_info()
            SeedProbe.first = (info.id, info.seed, random.random(), float(np.random.random_sample()),
                               fastmlp.rand(1).item())
        return SeedProbe.first


class WorkerInfoProbe(Dataset):
    def __len__(self):
        return 6

    def __getitem__(self, i):
        info = get_worker_info()
        return info.id, info.num_workers, int(info.dataset is self), os.getpid()


class Shard(IterableDataset):
    """PyTorch's recipe: each worker yields its own slice of the range."""

    def __init__(self, n):
        self.n = n

    def __iter__(self):
        info = get_worker_info()
        if info is None:
            return iter(range(self.n))
        return iter(range(info.id, self.n, info.num_workers))


class Sleepy(TutorialDataset):
    def __getitem__(self, i):
        if i >= 4:
            time.sleep(30)
        return super().__getitem__(i)


class ShortLen(TutorialDataset):
    """Claims more samples than it has."""

    def __len__(self):
        return len(self.y) + 10


class Batched(TutorialDataset):
    def __getitems__(self, keys):
        return [(self.x[k].float().sum(), -k) for k in keys]


class Ragged(TutorialDataset):
    def __getitem__(self, i):
        x, y, _ = super().__getitem__(i)
        return (x[:3] if i == 6 else x), y


class KilledBySignal(TutorialDataset):
    def __getitem__(self, i):
        if i == 9:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().__getitem__(i)


class Exits(TutorialDataset):
    def __getitem__(self, i):
        if i == 9:
            os._exit(3)
        return super().__getitem__(i)


INIT_CALLS: list = []


def _record_init(worker_id: int) -> None:
    INIT_CALLS.append(worker_id)


class InitProbe(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return tuple(INIT_CALLS)


class NativeKernels(TutorialDataset):
    """Runs a native kernel (after the main process has used OpenMP) and reports the thread count."""

    def __getitem__(self, i):
        from fastmlp import _C

        x = self.x[i].float().reshape(1, -1)
        return fastmlp.nn.functional.relu(x - 100).sum(), _C.get_num_threads()


def _batches(loader):
    return [(x.numpy().copy(), y.numpy().copy()) for x, y, _ in loader]


# ---- the same batches, from other processes --------------------------------------------------------
@pytest.mark.parametrize("num_workers", [1, 2, 3])
def test_workers_give_the_batches_of_in_process_loading_in_order(num_workers):
    ds = TutorialDataset()
    fastmlp.manual_seed(3)
    ref = _batches(DataLoader(ds, batch_size=6, shuffle=True))
    fastmlp.manual_seed(3)
    loader = DataLoader(ds, batch_size=6, shuffle=True, num_workers=num_workers, timeout=LIMIT, pin_memory=True)
    pids = set()
    got = []
    for x, y, pid in loader:
        got.append((x.numpy().copy(), y.numpy().copy()))
        pids.update(pid.tolist())
    assert len(got) == len(ref) == 9
    for (a, b), (c, d) in zip(ref, got):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
        assert c.dtype == np.float32 and d.dtype == np.int64
    assert os.getpid() not in pids and len(pids) == num_workers
    assert not _shm_files()


def test_batches_are_ordinary_writable_tensors():
    loader = DataLoader(TutorialDataset(12), batch_size=4, num_workers=2, timeout=LIMIT)
    batches = [x for x, _, _ in loader]
    ref = [x for x, _, _ in DataLoader(TutorialDataset(12), batch_size=4)]
    for got, want in zip(batches, ref):
        assert got.is_contiguous() and tuple(got.shape) == (4, 16)
        got.mul_(2)  # the memory is the tensor's own
        np.testing.assert_array_equal(got.numpy(), want.numpy() * 2)


def test_without_auto_batching_and_with_getitems():
    got = list(DataLoader(Batched(10), batch_size=3, num_workers=2, timeout=LIMIT))
    assert [b[1].tolist() for b in got] == [[0, -1, -2], [-3, -4, -5], [-6, -7, -8], [-9]]
    ds = TutorialDataset(5)
    single = list(DataLoader(ds, batch_size=None, num_workers=2, timeout=LIMIT))
    assert [int(y) for _, y, _ in single] == ds.y.tolist()


def test_workers_run_native_kernels_on_one_thread():
    ds = NativeKernels(9)
    fastmlp.nn.functional.relu(fastmlp.randn(256, 256)).sum()  # the main process's OpenMP pool exists
    got = list(DataLoader(ds, batch_size=3, num_workers=2, timeout=LIMIT))
    want = [np.maximum(ds.x[i].numpy().astype(np.float32) - 100, 0).sum() for i in range(9)]
    np.testing.assert_allclose([v for s, _ in got for v in s.tolist()], want, rtol=1e-6)
    assert all(t.tolist() == [1, 1, 1] for _, t in got)


@pytest.mark.parametrize("context", ["spawn", "forkserver"])
def test_other_start_methods_carry_a_dataset_of_tensors(context):
    ds = TensorDataset(fastmlp.arange(20).float(), fastmlp.arange(20))
    loader = DataLoader(ds, batch_size=8, num_workers=2, multiprocessing_context=context, timeout=LIMIT)
    got = [(x.tolist(), y.tolist()) for x, y in loader]
    assert got == [(x.tolist(), y.tolist()) for x, y in DataLoader(ds, batch_size=8)]


def test_iterable_dataset_sharded_with_get_worker_info():
    loader = DataLoader(Shard(23), batch_size=4, num_workers=3, timeout=LIMIT)
    values = [v for b in loader for v in b.tolist()]
    assert sorted(values) == list(range(23))
    unsharded = DataLoader(Shard(5), batch_size=None, num_workers=2, timeout=LIMIT)
    assert sorted(int(v) for v in unsharded) == [0, 1, 2, 3, 4]


# ---- errors ---------------------------------------------------------------------------------------
def test_a_worker_exception_is_raised_with_the_worker_traceback():
    before = _shm_files()
    loader = DataLoader(Failing(), batch_size=4, num_workers=2, timeout=LIMIT)
    with pytest.raises(ValueError) as info:
        list(loader)
    msg = str(info.value)
    assert msg.startswith("Caught ValueError in DataLoader worker process 1.")
    assert "Original Traceback (most recent call last)" in msg
    assert 'raise ValueError(f"sample {i} is broken")' in msg and "ValueError: sample 13 is broken" in msg
    assert _shm_files() <= before


def test_a_worker_key_error_keeps_its_message_readable():
    with pytest.raises(KeyError) as info:
        list(DataLoader(KeyFailing(), batch_size=4, num_workers=2, timeout=LIMIT))
    assert "Caught KeyError in DataLoader worker process 1.\nOriginal Traceback" in str(info.value)


def test_len_larger_than_the_dataset_is_a_clear_error():
    for workers in (0, 2):
        loader = DataLoader(ShortLen(8), batch_size=4, num_workers=workers, timeout=LIMIT)
        with pytest.raises(IndexError, match=r"ShortLen.__getitem__ raised IndexError .* but len\(dataset\) is 18"):
            list(loader)


def test_samples_of_different_shapes_name_the_index_and_shapes_from_a_worker():
    with pytest.raises(ValueError, match=r"dataset index 6\) has element 0 of shape \[3\] but .* has shape \[16\]"):
        list(DataLoader(Ragged(), batch_size=4, num_workers=2, timeout=LIMIT))


@pytest.mark.parametrize("how", ["SIGKILL", "exit"])
def test_a_dead_worker_is_an_error_naming_it(how):
    loader = DataLoader(KilledBySignal() if how == "SIGKILL" else Exits(), batch_size=4, num_workers=2, timeout=LIMIT)
    expected = r"was killed by SIGKILL" if how == "SIGKILL" else r"exited unexpectedly with exit code 3"
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"DataLoader worker 0 \(pid \d+\) " + expected):
        list(loader)
    assert time.monotonic() - start < LIMIT / 2  # found by the liveness check, not the timeout


def test_a_worker_killed_from_outside_is_an_error_and_the_others_stop():
    loader = DataLoader(Sleepy(), batch_size=2, num_workers=2, timeout=LIMIT)
    it = iter(loader)
    _, _, pids = next(it)  # batch 0, from worker 0; batch 2 (worker 0) now sleeps
    victim = int(pids[0])
    os.kill(victim, signal.SIGKILL)
    with pytest.raises(RuntimeError, match=rf"DataLoader worker 0 \(pid {victim}\) was killed by SIGKILL"):
        next(it)
        next(it)
    assert not any(_alive(p) for p in _child_pids())


def test_timeout_is_an_error_and_stops_the_workers():
    loader = DataLoader(Sleepy(), batch_size=2, num_workers=2, timeout=0.5)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"DataLoader timed out after 0.5 seconds"):
        list(loader)
    assert time.monotonic() - start < 15  # the timeout, then at most the shutdown's grace periods
    assert not any(_alive(p) for p in _child_pids())


def _child_pids() -> list:
    import multiprocessing

    return [p.pid for p in multiprocessing.active_children()]


def test_ctrl_c_stops_every_worker(tmp_path):
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        import fastmlp
        from fastmlp.utils.data import DataLoader, Dataset

        class Slow(Dataset):
            def __len__(self):
                return 1000
            def __getitem__(self, i):
                time.sleep(0.05)
                return i

        def note_pid(worker_id):
            with open(os.path.join({str(tmp_path)!r}, f"worker{{worker_id}}"), "w") as f:
                f.write(str(os.getpid()))

        # Ctrl-C raises KeyboardInterrupt, as in a terminal, even where this test runs with SIGINT
        # ignored (a background job inherits that, and so would this child)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            for i, _ in enumerate(DataLoader(Slow(), batch_size=2, num_workers=2, worker_init_fn=note_pid)):
                if i == 1:
                    print("running", flush=True)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
    """)
    # run outside the checkout, over the fastmlp these tests import (the installed wheel in CI)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fastmlp.__file__)))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=str(tmp_path), env=env)
    guard = threading.Timer(LIMIT, proc.kill)  # the readline below cannot wait longer than this
    guard.start()
    try:
        assert proc.stdout.readline().strip() == "running"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=LIMIT)
    finally:
        guard.cancel()
        proc.kill()
    assert "interrupted" in out, err
    pids = [int((tmp_path / f"worker{i}").read_text()) for i in range(2)]
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)


# ---- seeding and get_worker_info -------------------------------------------------------------------
def test_each_worker_is_seeded_as_pytorch_seeds_it():
    loader = DataLoader(SeedProbe(), batch_size=1, num_workers=2, generator=fastmlp.Generator().manual_seed(7),
                        timeout=LIMIT)
    seen = {}
    for wid, seed, r_py, r_np, r_fm in loader:
        seen[int(wid)] = (int(seed), float(r_py), float(r_np), float(r_fm))
    assert sorted(seen) == [0, 1]
    assert seen[1][0] == seen[0][0] + 1  # base_seed + worker id
    for wid, (seed, r_py, r_np, r_fm) in seen.items():
        assert r_py == random.Random(seed).random()
        assert r_fm == pytest.approx(fastmlp.rand(1, generator=fastmlp.Generator().manual_seed(seed)).item())
    assert seen[0][2] != seen[1][2]  # NumPy's global generator differs between workers
    again = DataLoader(SeedProbe(), batch_size=1, num_workers=2, generator=fastmlp.Generator().manual_seed(7),
                       timeout=LIMIT)
    assert {int(w): int(s) for w, s, *_ in again} == {w: v[0] for w, v in seen.items()}
    other = DataLoader(SeedProbe(), batch_size=1, num_workers=2, generator=fastmlp.Generator().manual_seed(8),
                       timeout=LIMIT)
    assert {int(s) for _, s, *_ in other}.isdisjoint({v[0] for v in seen.values()})


def test_get_worker_info_in_workers_and_in_the_main_process():
    assert get_worker_info() is None
    ds = WorkerInfoProbe()
    rows = [b for b in DataLoader(ds, batch_size=None, num_workers=3, timeout=LIMIT)]
    ids = [int(r[0]) for r in rows]
    assert ids == [0, 1, 2, 0, 1, 2]  # batches go round-robin
    assert all(int(r[1]) == 3 for r in rows)
    assert all(int(r[2]) == 1 for r in rows)  # info.dataset is the worker's own copy of the dataset
    assert all(int(r[3]) != os.getpid() for r in rows)
    with pytest.raises(RuntimeError, match="Cannot assign"):
        _worker_info_of_a_worker().id = 5


def _worker_info_of_a_worker():
    from fastmlp.utils.data import WorkerInfo

    return WorkerInfo(0, 1, 0, None)


# ---- persistent workers, prefetching, stopping ------------------------------------------------------
def test_persistent_workers_serve_every_pass():
    ds = TutorialDataset(20)
    loader = DataLoader(ds, batch_size=5, num_workers=2, persistent_workers=True, timeout=LIMIT)
    first = [(x.numpy().copy(), set(p.tolist())) for x, _, p in loader]
    second = [(x.numpy().copy(), set(p.tolist())) for x, _, p in loader]
    assert set().union(*(p for _, p in first)) == set().union(*(p for _, p in second))
    for (a, _), (b, _) in zip(first, second):
        np.testing.assert_array_equal(a, b)
    pids = set().union(*(p for _, p in first))
    assert all(_alive(p) for p in pids)
    it = iter(loader)
    next(it)
    del it  # a pass left early: its remaining batches are dropped, the workers stay
    third = [x.numpy().copy() for x, _, _ in loader]
    for a, (b, _) in zip(third, first):
        np.testing.assert_array_equal(a, b)
    loader._pool.shutdown()
    assert not any(_alive(p) for p in pids)


def test_workers_stop_after_each_pass_without_persistence():
    loader = DataLoader(TutorialDataset(12), batch_size=4, num_workers=2, timeout=LIMIT)
    pids = [set(p.tolist()) for _, _, p in loader]
    again = [set(p.tolist()) for _, _, p in loader]
    assert set().union(*pids).isdisjoint(set().union(*again))
    assert not any(_alive(p) for p in set().union(*pids, *again))


def test_breaking_out_early_stops_the_workers_and_leaves_no_files():
    before = _shm_files()
    loader = DataLoader(TutorialDataset(40), batch_size=2, num_workers=2, prefetch_factor=3, timeout=LIMIT)
    it = iter(loader)
    _, _, p = next(it)
    del it
    assert not _alive(int(p[0]))
    assert _shm_files() <= before
    assert len(list(loader)) == 20


def test_worker_init_fn_runs_once_in_each_worker():
    loader = DataLoader(InitProbe(), batch_size=None, num_workers=2, worker_init_fn=_record_init, timeout=LIMIT)
    calls = {tuple(b) for b in loader}
    assert calls == {(0,), (1,)}
    assert INIT_CALLS == []  # nothing ran in the main process


def test_worker_argument_checks():
    ds = TutorialDataset(4)
    with pytest.raises(ValueError, match="multiprocessing_context can only be used with multi-process loading"):
        DataLoader(ds, multiprocessing_context="spawn")
    with pytest.raises(ValueError, match="expected one of"):
        DataLoader(ds, num_workers=1, multiprocessing_context="threads")
    with pytest.raises(TypeError, match="worker_init_fn must be callable"):
        DataLoader(ds, num_workers=1, worker_init_fn=3)
    with pytest.raises(ValueError, match="prefetch_factor should be a positive integer"):
        DataLoader(ds, num_workers=1, prefetch_factor=0)


# ---- pin_memory ------------------------------------------------------------------------------------
@pytest.mark.cuda
@pytest.mark.skipif(not fastmlp.cuda.is_available(), reason="pinning needs a usable CUDA device")
@pytest.mark.parametrize("num_workers", [0, 2])
def test_pin_memory_gives_the_same_cpu_batches_in_page_locked_memory(num_workers):
    cupy = pytest.importorskip("cupy")
    ds = TutorialDataset(12)
    ref = _batches(DataLoader(ds, batch_size=4))
    for (x, y, _), (rx, ry) in zip(DataLoader(ds, batch_size=4, pin_memory=True, num_workers=num_workers,
                                              timeout=LIMIT), ref):
        assert x.device.type == "cpu" and y.device.type == "cpu"
        np.testing.assert_array_equal(x.numpy(), rx)
        np.testing.assert_array_equal(y.numpy(), ry)
        attrs = cupy.cuda.runtime.pointerGetAttributes(x.numpy().ctypes.data)
        assert getattr(attrs, "type", getattr(attrs, "memoryType", None)) == cupy.cuda.runtime.memoryTypeHost
        np.testing.assert_array_equal(x.cuda().cpu().numpy(), rx)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def test_the_main_process_leaves_the_workers_their_cores_during_a_pass():
    before = fastmlp.get_num_threads()
    fastmlp.set_num_threads(_cores() + 3)  # more than the machine has, so the cap always shows
    try:
        start = fastmlp.get_num_threads()
        dl = DataLoader(TutorialDataset(40), batch_size=8, num_workers=2, timeout=LIMIT)
        seen = [fastmlp.get_num_threads() for _ in dl]
        assert seen == [max(1, _cores() - 2)] * 5
        assert fastmlp.get_num_threads() == start  # restored after the pass
        it = iter(dl)
        next(it)
        assert fastmlp.get_num_threads() == max(1, _cores() - 2)
        del it  # a pass left part-way restores it too
        assert fastmlp.get_num_threads() == start
        # two passes that overlap share one cap; the count from before the first comes back after the last
        other = DataLoader(TutorialDataset(16), batch_size=8, num_workers=1, timeout=LIMIT)
        a, b = iter(dl), iter(other)
        next(a)
        next(b)
        assert fastmlp.get_num_threads() == max(1, _cores() - 2)
        del a
        assert fastmlp.get_num_threads() == max(1, _cores() - 2)
        del b
        assert fastmlp.get_num_threads() == start
        # a count set during the pass is the user's choice and stays
        mine = max(1, _cores() - 2) + 1
        for k, _ in enumerate(dl):
            if k == 0:
                fastmlp.set_num_threads(mine)
        assert fastmlp.get_num_threads() == mine
    finally:
        fastmlp.set_num_threads(before)
