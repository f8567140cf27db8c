"""Image transforms (``torchvision.transforms``): Compose, ToTensor, Normalize, Flatten, Lambda.

A transform is a callable on one sample. ToTensor, Normalize and Flatten (and a
Compose of only those, starting with ToTensor) can also transform a whole batch
at once: ``_batch(x)`` takes a NumPy array with a leading batch dimension and
returns the batch the per-sample transform would give, sample by sample, with
the same float32 arithmetic. Datasets that hold their samples in one array (the
MNIST datasets) use it to make each batch with a few array operations.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Optional, Sequence

import numpy as np

from .tensor import Tensor, _wrap

__all__ = ["Compose", "ToTensor", "Normalize", "Flatten", "Lambda"]


class Compose:
    """Apply transforms one after the other (``torchvision.transforms.Compose``)."""

    def __init__(self, transforms: Sequence[Callable]) -> None:
        self.transforms = list(transforms)
        for i, t in enumerate(self.transforms):
            if not callable(t):
                raise TypeError(f"Compose: transform {i} is not callable ({type(t).__name__})")

    def __call__(self, img: Any) -> Any:
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self) -> str:
        body = "".join(f"\n    {t!r}" for t in self.transforms)
        return f"{type(self).__name__}({body}\n)"


def _image_array(pic: Any) -> np.ndarray:
    if isinstance(pic, Tensor):
        raise TypeError("ToTensor: the input is already a Tensor; ToTensor takes an HxW or HxWxC image "
                        "(a NumPy array or an image object convertible with numpy.asarray)")
    if isinstance(pic, np.ndarray):
        return pic
    if hasattr(pic, "__array__") or hasattr(pic, "__array_interface__"):
        return np.asarray(pic)
    raise TypeError(f"ToTensor: pic should be an image array (HxW or HxWxC) or an image object convertible with "
                    f"numpy.asarray; got {type(pic).__name__}")


class ToTensor:
    """HxW or HxWxC image -> float32 CxHxW tensor (``torchvision.transforms.ToTensor``).

    uint8 images are scaled from [0, 255] to [0, 1]; other dtypes are converted to
    float32 without scaling. HxW becomes 1xHxW.
    """

    def __call__(self, pic: Any) -> Tensor:
        a = _image_array(pic)
        if a.ndim == 2:
            a = a[None, :, :]
        elif a.ndim == 3:
            a = a.transpose(2, 0, 1)
        else:
            raise ValueError(f"ToTensor: pic should be 2 or 3 dimensional (HxW or HxWxC); got {a.ndim} dimensions "
                             f"(shape {list(a.shape)})")
        return _wrap(_to_float(a))

    def _batch(self, x: np.ndarray) -> np.ndarray:
        """[B,H,W] or [B,H,W,C] -> float32 [B,C,H,W]."""
        if x.ndim == 3:
            x = x[:, None, :, :]
        elif x.ndim == 4:
            x = x.transpose(0, 3, 1, 2)
        else:
            raise ValueError(f"ToTensor: a batch of images must be [B,H,W] or [B,H,W,C]; got shape {list(x.shape)}")
        return _to_float(x)

    def __repr__(self) -> str:
        return "ToTensor()"


def _to_float(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        out = np.empty(a.shape, dtype=np.float32)
        np.divide(a, np.float32(255), out=out, dtype=np.float32)
        return out
    if a.dtype.kind not in "biuf":
        raise TypeError(f"ToTensor: can't convert an image of dtype {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.float32)


class Normalize:
    """(x - mean) / std per channel, on tensors shaped [..., C, H, W] — one image or a batch
    (``torchvision.transforms.Normalize``). With one mean and std, any shape works."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], inplace: bool = False) -> None:
        m = np.asarray([mean] if isinstance(mean, numbers.Real) else list(mean), dtype=np.float32)
        s = np.asarray([std] if isinstance(std, numbers.Real) else list(std), dtype=np.float32)
        if m.ndim != 1 or s.ndim != 1 or m.size == 0 or s.size == 0:
            raise ValueError(f"Normalize: mean and std must be numbers or 1-d sequences; got {mean!r} and {std!r}")
        if np.any(s == 0):
            raise ValueError(f"Normalize: std evaluated to zero after conversion to float32 ({std!r}), leading to "
                             "division by zero")
        if m.size != s.size and 1 not in (m.size, s.size):
            raise ValueError(f"Normalize: mean has {m.size} values but std has {s.size}")
        self.mean = mean
        self.std = std
        self.inplace = inplace
        self._m = m
        self._s = s

    def _shaped(self, ndim: int, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
        c = max(self._m.size, self._s.size)
        if c == 1:
            return self._m.reshape(()), self._s.reshape(())
        if ndim < 3 or shape[-3] != c:
            raise ValueError(f"Normalize: expected a tensor shaped [..., C, H, W] with C={c} channels (one per mean "
                             f"and std value); got shape {list(shape)}")
        return self._m.reshape(-1, 1, 1), self._s.reshape(-1, 1, 1)

    def __call__(self, tensor: Any) -> Any:
        if isinstance(tensor, Tensor):
            if not tensor.is_floating_point():
                raise TypeError(f"Normalize: input tensor should be a float tensor; got {tensor.dtype}")
            m, s = self._shaped(tensor.dim(), tuple(tensor.shape))
            if self.inplace:
                return tensor.sub_(_wrap(m).to(tensor.device)).div_(_wrap(s).to(tensor.device))
            return (tensor - _wrap(m).to(tensor.device)) / _wrap(s).to(tensor.device)
        if isinstance(tensor, np.ndarray):
            m, s = self._shaped(tensor.ndim, tensor.shape)
            return (tensor - m) / s
        raise TypeError(f"Normalize: expected a Tensor or a NumPy array; got {type(tensor).__name__}")

    def _batch(self, x: np.ndarray) -> np.ndarray:
        """A float32 batch [B, C, H, W] (or any shape for one channel); may work in place on `x`."""
        m, s = self._shaped(x.ndim, x.shape)
        np.subtract(x, m, out=x)
        np.divide(x, s, out=x)
        return x

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


class Flatten:
    """Flatten one sample to a 1-d vector: [1, 28, 28] -> [784] (like ``torch.flatten``, for MLP inputs)."""

    def __call__(self, x: Any) -> Any:
        if isinstance(x, Tensor):
            return x.reshape(-1)
        if isinstance(x, np.ndarray):
            return x.reshape(-1)
        raise TypeError(f"Flatten: expected a Tensor or a NumPy array; got {type(x).__name__}")

    def _batch(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(x.shape[0], -1)

    def __repr__(self) -> str:
        return "Flatten()"


class Lambda:
    """Apply a user function (``torchvision.transforms.Lambda``); always per sample."""

    def __init__(self, lambd: Callable) -> None:
        if not callable(lambd):
            raise TypeError(f"Lambda: argument should be callable; got {type(lambd).__name__}")
        self.lambd = lambd

    def __call__(self, img: Any) -> Any:
        return self.lambd(img)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def batch_plan(transform: Optional[Callable]) -> Optional[list]:
    """The steps that apply `transform` to a batch after ToTensor, or None when it must run per sample.

    None or ToTensor gives []; Compose([ToTensor(), Normalize(...), Flatten()]) gives
    [Normalize._batch, Flatten._batch]. Anything else (a Lambda, a transform not
    starting with ToTensor) gives None.
    """
    if transform is None:
        return []
    steps = _flatten(transform)
    if not steps or type(steps[0]) is not ToTensor:
        return None
    out = []
    for t in steps[1:]:
        if type(t) not in (Normalize, Flatten):
            return None
        out.append(t._batch)
    return out


def _flatten(transform: Callable) -> list:
    if type(transform) is Compose:
        out = []
        for t in transform.transforms:
            out.extend(_flatten(t))
        return out
    return [transform]
