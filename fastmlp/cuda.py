"""``fastmlp.cuda``: is a GPU usable? (``torch.cuda``)."""
from __future__ import annotations


def _ext():
    try:
        from . import _cuda
    except ImportError:
        return None
    return _cuda


def _cupy():
    try:
        import cupy
    except ImportError:
        return None
    return cupy


def is_available() -> bool:
    """True when fastmlp was built with CUDA, CuPy is installed and a device is present."""
    ext = _ext()
    return ext is not None and ext.device_count() > 0 and _cupy() is not None


def device_count() -> int:
    ext = _ext()
    return 0 if ext is None else ext.device_count()


def why_unavailable() -> str:
    """Why CUDA can't be used here ('' when it can)."""
    ext = _ext()
    if ext is None:
        return "fastmlp was built without its CUDA extension (no CUDA compiler at build time)"
    if ext.device_count() == 0:
        return f"no CUDA device is present ({ext.no_device_reason()})"
    if _cupy() is None:
        return "CuPy is not installed; install it with `pip install fastmlp[cuda]`"
    return ""


def current_device() -> int:
    cp = _require()
    return int(cp.cuda.runtime.getDevice())


def get_device_name(device=None) -> str:
    cp = _require()
    return cp.cuda.runtime.getDeviceProperties(_index(device))["name"].decode()


def _index(device) -> int:
    """A CUDA device index from None (the current device), an int, 'cuda:N' or a fastmlp.device."""
    from ._device import as_device, current_cuda_index

    if device is None:
        return current_cuda_index()
    d = as_device(device)
    if d.type != "cuda":
        raise ValueError(f"expected a CUDA device; got '{d}'")
    return current_cuda_index() if d.index is None else d.index


def synchronize(device=None) -> None:
    """Wait for all work on `device` (default: the current device) to finish (``torch.cuda.synchronize``)."""
    cp = _require()
    cp.cuda.Device(_index(device)).synchronize()


def set_device(device) -> None:
    """Make `device` CUDA's current device (``torch.cuda.set_device``)."""
    cp = _require()
    cp.cuda.Device(_index(device)).use()


class device:
    """Context manager that makes a CUDA device current inside it (``torch.cuda.device``).

    fastmlp's native ops run on their inputs' device anyway; CuPy's general array
    operations (elementwise arithmetic, indexing) allocate on the current device.
    """

    def __init__(self, device):
        self._device = device
        self._ctx = None

    def __enter__(self):
        cp = _require()
        self._ctx = cp.cuda.Device(_index(self._device))
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


def manual_seed(seed: int) -> None:
    """Dropout masks on the GPU come from the same generator as on the CPU: seeds it."""
    from . import random

    random.manual_seed(seed)


manual_seed_all = manual_seed


def empty_cache() -> None:
    cp = _cupy()
    if cp is not None:
        cp.get_default_memory_pool().free_all_blocks()


def _require():
    reason = why_unavailable()
    if reason:
        raise RuntimeError(f"CUDA is not available: {reason}")
    return _cupy()
