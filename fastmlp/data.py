"""``fastmlp.data``: another name for ``fastmlp.utils.data`` (the very same module objects)."""
import sys as _sys

from .utils import data as _data
from .utils.data import (collate as _collate, dataloader as _dataloader, dataset as _dataset,
                         fetch as _fetch, pin_memory as _pin_memory, sampler as _sampler,
                         worker as _worker)

for _name, _mod in (("collate", _collate), ("dataloader", _dataloader), ("dataset", _dataset), ("fetch", _fetch), ("pin_memory", _pin_memory),
                    ("sampler", _sampler), ("worker", _worker)):
    _sys.modules[f"{__name__}.{_name}"] = _mod
_sys.modules[__name__] = _data
