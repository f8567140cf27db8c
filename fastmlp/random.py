"""Random number generation (``torch.manual_seed``, ``torch.Generator``).

One default generator drives everything random in fastmlp: initialisation and
``randn``/``rand``/``randint``/``randperm`` (a NumPy PCG64 stream), data shuffling,
and dropout masks (a Philox counter stream keyed by the seed, advanced once per
dropout call, so masks do not depend on thread count or device).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

_DEFAULT_SEED = 67280421310721


class Generator:
    """A seeded source of random numbers (``torch.Generator``)."""

    def __init__(self, device="cpu"):
        self.device = device
        self.manual_seed(_DEFAULT_SEED)

    def manual_seed(self, seed: int) -> "Generator":
        seed = int(seed)
        if not -0x8000_0000_0000_0000 <= seed <= 0xFFFF_FFFF_FFFF_FFFF:
            raise ValueError(f"seed must be within the range of a 64-bit integer; got {seed}")
        seed &= 0xFFFF_FFFF_FFFF_FFFF
        self._seed = seed
        self.np = np.random.Generator(np.random.PCG64(seed))
        self._philox_offset = 0
        return self

    def seed(self) -> int:
        """Re-seed from OS entropy; returns the new seed."""
        s = int(np.random.SeedSequence().entropy) & 0xFFFF_FFFF_FFFF_FFFF
        self.manual_seed(s)
        return s

    def initial_seed(self) -> int:
        return self._seed

    def philox(self) -> tuple[int, int]:
        """(seed, offset) for the next dropout mask; each call gets a fresh offset."""
        off = self._philox_offset
        self._philox_offset += 1
        return self._seed, off

    def get_state(self) -> dict:
        return {"seed": self._seed, "philox_offset": self._philox_offset, "np": self.np.bit_generator.state}

    def set_state(self, state: dict) -> None:
        self._seed = state["seed"]
        self._philox_offset = state["philox_offset"]
        self.np = np.random.Generator(np.random.PCG64())
        self.np.bit_generator.state = state["np"]


default_generator = Generator()


def manual_seed(seed: int) -> Generator:
    """Seed the default generator (``torch.manual_seed``)."""
    return default_generator.manual_seed(seed)


def seed() -> int:
    return default_generator.seed()


def initial_seed() -> int:
    return default_generator.initial_seed()


def get_rng_state() -> dict:
    return default_generator.get_state()


def set_rng_state(state: dict) -> None:
    default_generator.set_state(state)


def _gen(generator: Optional[Generator]) -> Generator:
    return default_generator if generator is None else generator


def normal_array(mean, std, shape, dtype, generator: Optional[Generator] = None) -> np.ndarray:
    return _gen(generator).np.normal(mean, std, size=shape).astype(dtype, copy=False)


def uniform_array(low, high, shape, dtype, generator: Optional[Generator] = None) -> np.ndarray:
    g = _gen(generator).np
    if np.dtype(dtype).kind == "f" and np.dtype(dtype).itemsize == 4:
        return (g.random(size=shape, dtype=np.float32) * np.float32(high - low) + np.float32(low)).astype(dtype,
                                                                                                         copy=False)
    return (g.random(size=shape) * (high - low) + low).astype(dtype, copy=False)


def randint_array(low, high, shape, generator: Optional[Generator] = None) -> np.ndarray:
    return _gen(generator).np.integers(low, high, size=shape, dtype=np.int64)


def permutation(n: int, generator: Optional[Generator] = None) -> np.ndarray:
    return _gen(generator).np.permutation(n).astype(np.int64)
