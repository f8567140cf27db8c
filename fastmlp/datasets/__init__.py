"""``fastmlp.datasets`` (``torchvision.datasets``): MNIST and Fashion-MNIST from idx files, with download."""
from .download import DownloadError
from .idx import IdxError, read_idx, write_idx
from .mnist import MNIST, DatasetNotFoundError, FashionMNIST
from .paths import cache_dir, default_root

__all__ = ["MNIST", "FashionMNIST", "DatasetNotFoundError", "DownloadError", "IdxError", "read_idx", "write_idx",
           "cache_dir", "default_root"]
