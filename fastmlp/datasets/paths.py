"""Where datasets live when no folder is given: ``$FASTMLP_DATA``, else a per-user cache folder."""
from __future__ import annotations

import os

__all__ = ["DATA_ENV", "cache_dir", "default_root"]

DATA_ENV = "FASTMLP_DATA"


def cache_dir() -> str:
    """``$XDG_CACHE_HOME/fastmlp``, or ``~/.cache/fastmlp`` when XDG_CACHE_HOME is unset."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fastmlp")


def default_root() -> str:
    """The dataset folder used when ``root`` is None: ``$FASTMLP_DATA`` if set, else ``cache_dir()``."""
    env = os.environ.get(DATA_ENV)
    if env:
        return os.path.expanduser(env)
    return cache_dir()
