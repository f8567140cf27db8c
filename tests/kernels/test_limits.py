"""Sizes the native entry points compute from their arguments are checked for overflow and against
the documented limits (docs/reliability.md) before anything is allocated: a clear ValueError, not an
allocation of many gigabytes, minutes of work, or a write through a buffer that was never made."""
from __future__ import annotations

import numpy as np
import pytest

from fastmlp import _C

MAX_ELEMENTS = 2**31 - 1
MAX_PHILOX_WORDS = 2**28


@pytest.mark.parametrize("n", [MAX_PHILOX_WORDS + 1, 2**31, 2**62, 2**63 - 1])
def test_philox_bits_refuses_counts_past_its_limit(n):
    with pytest.raises(ValueError, match=r"philox_bits: n must be <= 268435456"):
        _C.philox_bits(1, 2, n)


def test_philox_bits_takes_the_counts_up_to_its_limit():
    words = _C.philox_bits(7, 3, 1000)
    assert words.dtype == np.uint32 and words.shape == (1000,)
    np.testing.assert_array_equal(_C.philox_bits(7, 3, 0), np.zeros(0, np.uint32))
    with pytest.raises(ValueError, match="n must be >= 0"):
        _C.philox_bits(7, 3, -1)
    with pytest.raises(TypeError):
        _C.philox_bits(7, 3, 2**64)  # not an int64 at all: pybind11 refuses the call


def test_linear_forward_output_past_the_limit_is_refused():
    """x [65536, 1] and weight [65536, 1] are 256 KiB each, but y would be [65536, 65536]: 2**32
    elements, past the limit."""
    x = np.ones((65536, 1), np.float32)
    w = np.ones((65536, 1), np.float32)
    with pytest.raises(ValueError, match=r"linear_forward: 'y' would have shape \[65536, 65536\], more than the "
                                         r"2147483647 elements"):
        _C.linear_forward(x, w)


def test_sizes_just_under_the_limit_are_still_computed():
    y = _C.linear_forward(np.ones((300, 2), np.float32), np.ones((200, 2), np.float32))
    np.testing.assert_array_equal(y, np.full((300, 200), 2.0, np.float32))


@pytest.mark.parametrize("n", [0, -1, 4097, 2**31])
def test_set_num_threads_refuses_absurd_counts(n):
    previous = _C.get_num_threads()
    with pytest.raises((ValueError, TypeError)):
        _C.set_num_threads(n)
    assert _C.get_num_threads() == previous


class _Claims:
    """An object whose __cuda_array_interface__ claims a shape; the pointer is never used, because the
    claim is refused before any device is needed."""

    def __init__(self, shape: tuple) -> None:
        self.__cuda_array_interface__ = {"shape": shape, "typestr": "<f4", "data": (1 << 20, False),
                                         "strides": None, "version": 3}


@pytest.mark.parametrize("shape,error", [
    ((2**40, 2**40), "more bytes than a 64-bit size can hold"),
    ((0, 2**62, 2**62), "more bytes than a 64-bit size can hold"),
    ((3, -1), "negative dimension"),
])
def test_device_arrays_claiming_impossible_shapes_are_refused(shape, error):
    _cuda = pytest.importorskip("fastmlp._cuda")
    with pytest.raises(ValueError, match=f"act_forward: argument 'x' .*{error}"):
        _cuda.act_forward(_Claims(shape), 1)
