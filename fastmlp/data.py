"""``fastmlp.data``: another name for ``fastmlp.utils.data`` (the very same module objects)."""
import sys as _sys

from .utils import data as _data
from .utils.data import collate as _collate, dataloader as _dataloader, dataset as _dataset, sampler as _sampler

for _name, _mod in (("collate", _collate), ("dataloader", _dataloader), ("dataset", _dataset),
                    ("sampler", _sampler)):
    _sys.modules[f"{__name__}.{_name}"] = _mod
_sys.modules[__name__] = _data
