"""Progress bars for training epochs and downloads: tqdm when installed, else a small text bar.

Bars are drawn on stderr, and only when it is a terminal (so logs and pipes stay
clean) and progress was asked for. ``update`` is cheap enough to call every
step: it redraws at most ten times a second.
"""
from __future__ import annotations

import sys
import time
from typing import Optional, TextIO

__all__ = ["make_progress", "NullProgress", "TextProgress", "TqdmProgress"]

_REFRESH_S = 0.1


class NullProgress:
    """The bar when progress is off: every method does nothing."""

    def update(self, done: int, loss_sum: float = 0.0, samples: int = 0) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def close(self, summary: str = "") -> None:
        pass


def _fmt_time(seconds: float) -> str:
    seconds = int(seconds)
    m, s = divmod(seconds, 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _fmt_count(n: float, unit: str) -> str:
    if unit != "B":
        return f"{int(n)}"
    for suffix in ("B", "kB", "MB", "GB"):
        if n < 1000 or suffix == "GB":
            return f"{n:.0f}{suffix}" if suffix == "B" else f"{n:.1f}{suffix}"
        n /= 1000
    return f"{n:.1f}GB"  # pragma: no cover


class _Bar:
    """Shared bookkeeping: `done` counts steps (or bytes); the postfix shows loss and samples/s."""

    def __init__(self, total: Optional[int], desc: str, unit: str) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.start = time.perf_counter()
        self._next = self.start + _REFRESH_S
        self.done = 0
        self.postfix = ""

    def update(self, done: int, loss_sum: float = 0.0, samples: int = 0) -> None:
        """Progress so far: `done` steps (or bytes); with `samples`, the running mean loss and throughput."""
        self.done = done
        now = time.perf_counter()
        if now < self._next:
            return
        self._next = now + _REFRESH_S
        if samples:
            self.postfix = f"loss={loss_sum / samples:.4f}, {samples / (now - self.start):,.0f} samples/s"
        self._draw(done)

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def _draw(self, done: int) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class TextProgress(_Bar):
    """A one-line text bar rewritten in place with carriage returns (used when tqdm is missing)."""

    def __init__(self, total: Optional[int], desc: str, unit: str = "it", stream: Optional[TextIO] = None,
                 width: int = 24) -> None:
        super().__init__(total, desc, unit)
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self._last_len = 0

    def _line(self, done: int) -> str:
        elapsed = time.perf_counter() - self.start
        if self.total:
            frac = min(done / self.total, 1.0)
            filled = int(frac * self.width)
            bar = "#" * filled + "-" * (self.width - filled)
            eta = elapsed * (1 - frac) / frac if frac > 0 else 0.0
            body = (f"{self.desc}: {frac * 100:3.0f}%|{bar}| {_fmt_count(done, self.unit)}/"
                    f"{_fmt_count(self.total, self.unit)} [{_fmt_time(elapsed)}<{_fmt_time(eta)}")
        else:
            body = f"{self.desc}: {_fmt_count(done, self.unit)} [{_fmt_time(elapsed)}"
        return body + (f", {self.postfix}]" if self.postfix else "]")

    def _draw(self, done: int) -> None:
        line = self._line(done)
        pad = " " * max(self._last_len - len(line), 0)
        self._last_len = len(line)
        self.stream.write("\r" + line + pad)
        self.stream.flush()

    def close(self, summary: str = "") -> None:
        if summary:
            self.postfix = summary
        self._draw(self.done)
        self.stream.write("\n")
        self.stream.flush()


class TqdmProgress(_Bar):
    """A tqdm bar (``pip install fastmlp[progress]``)."""

    def __init__(self, total: Optional[int], desc: str, unit: str = "it", stream: Optional[TextIO] = None) -> None:
        super().__init__(total, desc, unit)
        from tqdm import tqdm

        scale = unit == "B"
        self._bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=scale, unit_divisor=1000 if scale else 1,
                         file=stream if stream is not None else sys.stderr, leave=True, dynamic_ncols=True,
                         mininterval=_REFRESH_S)

    def _draw(self, done: int) -> None:
        bar = self._bar
        if self.postfix:
            bar.set_postfix_str(self.postfix, refresh=False)
        bar.update(done - bar.n)

    def close(self, summary: str = "") -> None:
        bar = self._bar
        if self.done > bar.n:
            bar.update(self.done - bar.n)
        if summary:
            bar.set_postfix_str(summary, refresh=False)
        bar.close()


def _have_tqdm() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


def make_progress(total: Optional[int], desc: str, enabled: bool = True, unit: str = "it",
                  stream: Optional[TextIO] = None, force: bool = False):
    """A progress bar over `total` steps (None if unknown) on `stream` (stderr).

    Returns NullProgress unless `enabled` and the stream is a terminal (or `force`);
    a tqdm bar when tqdm is installed, else the built-in TextProgress.
    """
    s = stream if stream is not None else sys.stderr
    if not enabled:
        return NullProgress()
    if not force:
        try:
            if not s.isatty():
                return NullProgress()
        except (AttributeError, ValueError):
            return NullProgress()
    if _have_tqdm():
        return TqdmProgress(total, desc, unit, s)
    return TextProgress(total, desc, unit, s)
