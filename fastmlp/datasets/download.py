"""Downloading dataset files: several mirrors in turn, a progress bar, md5 checks, atomic writes
(what ``torchvision.datasets.utils.download_url`` does for torchvision's datasets).

A file is accepted when the md5 of the downloaded bytes is one of the published
archive checksums, or when the md5 of its decompressed content is one of the
known content checksums (mirrors sometimes re-compress the same data). It is
written to a temporary file beside the target and renamed over it only once
verified, so an interrupted or failed download never leaves a partial file.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import sys
import tempfile
from typing import Iterable, Optional, Sequence

from .._files import new_file_mode

__all__ = ["DownloadError", "download_file", "file_md5"]

_CHUNK = 1 << 16
_USER_AGENT = "fastmlp-datasets"


class DownloadError(RuntimeError):
    """No mirror delivered a file with an accepted checksum; the message lists each attempt."""


def file_md5(path: str, decompress: bool = False) -> str:
    """md5 hex digest of a file, or of its gzip-decompressed content."""
    h = hashlib.md5()
    opener = gzip.open if decompress else open
    with opener(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _accepted(path: str, md5s: Sequence[str], content_md5s: Sequence[str]) -> Optional[str]:
    """None when the file matches a checksum; else a description of the mismatch."""
    archive = file_md5(path)
    if archive in md5s:
        return None
    content = None
    if content_md5s:
        try:
            content = file_md5(path, decompress=True)
        except (OSError, EOFError) as e:
            return f"md5 {archive} is not a published checksum and the content can't be decompressed ({e})"
        if content in content_md5s:
            return None
    expected = ", ".join(md5s) + (f"; content {', '.join(content_md5s)}" if content_md5s else "")
    got = archive + (f"; content {content}" if content else "")
    return f"checksum mismatch: got md5 {got}, expected {expected}"


def _fetch(url: str, tmp, progress: bool, label: str, timeout: float) -> None:
    import urllib.request

    from ..train.progress import make_progress

    req = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        total = resp.headers.get("Content-Length") if hasattr(resp, "headers") else None
        bar = make_progress(int(total) if total and total.isdigit() else None, label, enabled=progress, unit="B")
        try:
            done = 0
            while True:
                block = resp.read(_CHUNK)
                if not block:
                    break
                tmp.write(block)
                done += len(block)
                bar.update(done)
        finally:
            bar.close()


def download_file(filename: str, folder: str, mirrors: Iterable[str], md5s: Sequence[str] = (),
                  content_md5s: Sequence[str] = (), progress: bool = True, timeout: float = 60.0) -> str:
    """Fetch `filename` from the first mirror that has it (``mirror + filename``) into `folder`.

    Returns the path of the verified file. Raises DownloadError listing each
    mirror's failure when none delivers a file with an accepted checksum.
    """
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, filename)
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + filename
        print(f"Downloading {url}", file=sys.stderr)
        fd, tmp_path = tempfile.mkstemp(prefix=filename + ".", suffix=".part", dir=folder)
        try:
            with os.fdopen(fd, "wb") as tmp:
                _fetch(url, tmp, progress, filename, timeout)
                tmp.flush()
                os.fsync(tmp.fileno())
            problem = _accepted(tmp_path, md5s, content_md5s) if (md5s or content_md5s) else None
            if problem is None:
                os.chmod(tmp_path, new_file_mode(os.path.join(folder, filename)))
                os.replace(tmp_path, target)
                return target
            failures.append(f"{url}: {problem}")
        except (OSError, ValueError) as e:  # URLError and HTTPError are OSErrors
            reason = getattr(e, "reason", None) or e
            failures.append(f"{url}: {reason}")
        finally:
            if os.path.exists(tmp_path):
                os.unlink(tmp_path)
    raise DownloadError(f"could not download {filename}; tried:\n  " + "\n  ".join(failures))
