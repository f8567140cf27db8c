"""``python -m fastmlp info``: what this installation runs on."""
from __future__ import annotations

from . import _C


def _cuda_status() -> tuple[bool, str]:
    """(built, description) of the CUDA extension and device."""
    try:
        from . import _cuda
    except ImportError:
        return False, "not built (no CUDA compiler when this package was built)"
    n = _cuda.device_count()
    if n == 0:
        return True, f"built; no device present ({_cuda.no_device_reason()})"
    return True, f"built; {n} device(s) present"


def num_threads_note() -> str:
    return f"{_C.get_num_threads()} OpenMP thread(s)"


def info() -> dict:
    """Version, CPU kernel set in use, threads and CUDA status, as a dict."""
    built, cuda = _cuda_status()
    return {
        "version": _C.__version__,
        "isa": _C.isa(),
        "available_isas": list(_C.available_isas()),
        "threads": _C.get_num_threads(),
        "cuda_built": built,
        "cuda": cuda,
    }
