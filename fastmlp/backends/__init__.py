"""Public backend switches, as ``torch.backends``: ``fastmlp.backends.cuda.matmul.allow_tf32``.

(The internal device dispatch is ``fastmlp.backend``; GPU queries are ``fastmlp.cuda``.)"""
from . import cuda

__all__ = ["cuda"]
