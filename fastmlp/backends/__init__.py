"""Backend switches (``torch.backends``): ``fastmlp.backends.cuda.matmul.allow_tf32``."""
from . import cuda

__all__ = ["cuda"]
