"""The parent side of the crash isolation: one long-lived worker process (fuzz_worker.py) takes the calls
one by one; when it dies or hangs, the call in flight is reported as a crash or a hang and a fresh
worker takes the next call. A fresh interpreter (not a fork of the test process) keeps OpenMP's thread
pool, which does not survive fork, out of the way.
"""
from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import subprocess
import tempfile
import sys
import time
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
# The folder holding the fastmlp package the tests import (the installed wheel in CI, the
# checkout for an in-place build): the worker must import the same one.
import fastmlp as _fastmlp  # noqa: E402

ROOT = Path(_fastmlp.__file__).resolve().parent.parent


class Worker:
    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.proc: Optional[subprocess.Popen] = None
        self.reply_fd = -1
        self.stderr_path = HERE / f".worker-{os.getpid()}.stderr"

    def _start(self) -> None:
        read_fd, write_fd = os.pipe()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
        env.setdefault("OMP_NUM_THREADS", "2")
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([sys.executable, str(HERE / "fuzz_worker.py"), str(write_fd)],
                                     stdin=subprocess.PIPE, stdout=self._stderr, stderr=self._stderr,
                                     pass_fds=(write_fd,), env=env, cwd=tempfile.gettempdir())
        os.close(write_fd)
        self.reply_fd = read_fd
        ready = self._read(60.0)
        if ready is None:
            raise RuntimeError(f"the fuzz worker did not start: {self._stderr_tail()}")

    def _stderr_tail(self) -> str:
        try:
            return self.stderr_path.read_bytes()[-3000:].decode(errors="replace")
        except OSError:
            return ""

    def _read_exact(self, n: int, deadline: float) -> Optional[bytes]:
        buf = b""
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.reply_fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(self.reply_fd, n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def _read(self, timeout: float) -> Optional[bytes]:
        deadline = time.monotonic() + timeout
        head = self._read_exact(4, deadline)
        if head is None:
            return None
        (length,) = struct.unpack("<I", head)
        return self._read_exact(length, deadline) if length else b""

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            os.close(self.reply_fd)
            self._stderr.close()
            self.proc = None
        try:
            self.stderr_path.unlink()
        except OSError:
            pass

    def call(self, name: str, recipes: dict) -> tuple:
        """("ok", ...), ("raised", type, message), ("modified", param), ("harness-error", tb),
        ("crash", description) or ("hang", seconds)."""
        if self.proc is None or self.proc.poll() is not None:
            self.stop()
            self._start()
        blob = pickle.dumps((name, recipes))
        try:
            self.proc.stdin.write(struct.pack("<I", len(blob)) + blob)
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        reply = self._read(self.timeout)
        if reply is not None:
            return pickle.loads(reply)
        try:
            code = self.proc.wait(timeout=10)  # a dying process may still be on its way out
        except subprocess.TimeoutExpired:  # alive: it hangs
            self.proc.kill()
            self.proc.wait()
            return ("hang", self.timeout)
        what = f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
        return ("crash", f"worker {what}; its stderr ends with:\n{self._stderr_tail()}")
