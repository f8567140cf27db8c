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


def bf16_note() -> str:
    """Which bfloat16 GEMM path runs (fastmlp.autocast), and why not the native one."""
    path = _C.bf16_path()
    amx = _C.amx_status()
    if "TDPBF16PS" in path:
        return path
    if "vdpbf16ps" in path:
        return f"{path} (AMX: {amx})"
    if not _C.cpu_has_avx512bf16():
        why = "this CPU has no AVX512-BF16"
    elif "avx512bf16" not in _C.available_isas():
        why = "this build has no avx512bf16 kernel set"
    else:
        why = f"FASTMLP_FORCE_ISA or set_isa chose '{_C.isa()}'"
    return f"{path} ({why})"


def info() -> dict:
    """Version, CPU kernel set in use (and its bfloat16 GEMM), threads and CUDA status, as a dict."""
    built, cuda = _cuda_status()
    return {
        "version": _C.__version__,
        "isa": _C.isa(),
        "available_isas": list(_C.available_isas()),
        "bf16": bf16_note(),
        "threads": _C.get_num_threads(),
        "cuda_built": built,
        "cuda": cuda,
    }
