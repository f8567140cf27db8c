"""``fastmlp.device``: where a tensor lives ('cpu' or 'cuda[:index]'), as ``torch.device``."""
from __future__ import annotations

from typing import Optional, Union


class device:
    """A device, as ``torch.device``: ``device('cpu')``, ``device('cuda')``, ``device('cuda', 1)``."""

    __slots__ = ("type", "index")

    def __init__(self, type: Union[str, "device"], index: Optional[int] = None):
        if isinstance(type, device):
            self.type, self.index = type.type, type.index
            return
        if not isinstance(type, str):
            raise TypeError(f"device() expects a string such as 'cpu' or 'cuda:0'; got {type!r}")
        spec = type.strip()
        if ":" in spec:
            spec, _, idx = spec.partition(":")
            if index is not None:
                raise ValueError(f"device index given twice in device({type!r}, {index})")
            try:
                index = int(idx)
            except ValueError:
                raise ValueError(f"invalid device string {type!r}: the index must be an integer") from None
        if spec not in ("cpu", "cuda"):
            raise ValueError(f"unknown device type {spec!r}: expected 'cpu' or 'cuda'")
        if index is not None and index < 0:
            raise ValueError(f"device index must be >= 0; got {index}")
        if spec == "cpu" and index not in (None, 0):
            raise ValueError(f"the CPU device has no index {index}")
        self.type = spec
        self.index = index

    def __repr__(self) -> str:
        return f"device(type='{self.type}')" if self.index is None else \
            f"device(type='{self.type}', index={self.index})"

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __eq__(self, other) -> bool:
        if isinstance(other, str):
            try:
                other = device(other)
            except (ValueError, TypeError):
                return False
        if not isinstance(other, device):
            return NotImplemented
        return self.type == other.type and self.index == other.index

    def __hash__(self) -> int:
        return hash((self.type, self.index))


CPU = device("cpu")


def as_device(d) -> device:
    if isinstance(d, device):
        return d
    if d is None:
        return CPU
    if isinstance(d, int):
        return device("cuda", d)
    return device(d)
