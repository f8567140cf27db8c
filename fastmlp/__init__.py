"""fastmlp: train multilayer perceptrons from Python on hand-written C++/CUDA kernels.

The API follows PyTorch's names and semantics (``fastmlp.nn``, ``fastmlp.optim``,
``fastmlp.utils.data``), so a PyTorch training script runs with ``torch`` replaced
by ``fastmlp``.
"""
from __future__ import annotations

try:
    from . import _C
except ImportError as _err:  # pragma: no cover - depends on how the package was installed
    import os as _os

    if "_C" not in str(_err):
        raise
    raise ImportError(
        f"fastmlp's compiled extension (_C) is missing from {_os.path.dirname(__file__)}. "
        "Install the package with `pip install .`, and run Python outside the source tree, or build "
        "in place with `cmake -S . -B build/dev -DFASTMLP_INPLACE=ON && cmake --build build/dev`."
    ) from _err
from ._info import info, num_threads_note

__version__ = _C.__version__


def get_num_threads() -> int:
    """Number of CPU threads the kernels use (``torch.get_num_threads``)."""
    return _C.get_num_threads()


def set_num_threads(n: int) -> None:
    """Set the number of CPU threads the kernels use (``torch.set_num_threads``)."""
    _C.set_num_threads(int(n))


__all__ = ["__version__", "info", "get_num_threads", "set_num_threads"]
