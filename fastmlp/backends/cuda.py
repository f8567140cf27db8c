"""CUDA backend switches (``torch.backends.cuda``)."""


class _MatmulSettings:
    """``matmul.allow_tf32``: let CUDA GEMMs use TF32 tensor cores (off by default, as in PyTorch)."""

    def __init__(self):
        self.allow_tf32 = False

    def __repr__(self) -> str:
        return f"matmul(allow_tf32={self.allow_tf32})"


matmul = _MatmulSettings()
