"""``fastmlp.utils`` (``torch.utils``): ``fastmlp.utils.data`` holds datasets, samplers and the DataLoader."""
from . import data
from .. import data as _data_alias  # noqa: F401  (registers fastmlp.data as the same module)

__all__ = ["data"]
