"""float32 <-> bfloat16 conversions (fastmlp._C.f32_to_bf16 / bf16_to_f32) against NumPy.

The reference for float32 -> bfloat16 does not use the bit trick the kernels use: for each
finite value it takes the two bfloat16 values around it (truncation and the next one away
from zero), measures both distances exactly in float64, and keeps the nearer, the one with
an even last bit on a tie. Infinities stay, NaNs must come back as quiet NaNs of the same
sign and top payload bits.
"""
from __future__ import annotations

import numpy as np
import pytest

from fastmlp import _C

from reference import round_bf16


def nearest_bf16(x: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) of float32 x by exact nearest-value search (finite or inf x)."""
    u = x.view(np.uint32)
    t = (u >> 16).astype(np.int64)                    # truncated toward zero, sign included
    mag = t & 0x7FFF
    exp = mag >> 7
    # one bfloat16 ulp at this exponent (denormals share the smallest normal's)
    ulp = np.ldexp(1.0, (np.maximum(exp, 1) - 127 - 7).astype(np.int64))
    ax = np.abs(x.astype(np.float64))
    lo = np.abs((u & np.uint32(0xFFFF0000)).view(np.float32).astype(np.float64))
    finite = np.isfinite(x)
    lo = np.where(finite, lo, 0.0)
    d_lo = ax - lo
    d_hi = (lo + ulp) - ax                            # exact: dyadic values well inside float64
    up = (d_hi < d_lo) | ((d_hi == d_lo) & (mag & 1 == 1))
    up &= finite
    return (t + up).astype(np.uint16)


def check_nan(got: np.ndarray, x: np.ndarray) -> None:
    u = x.view(np.uint32)
    g = got.astype(np.uint32)
    assert np.all((g & 0x7F80) == 0x7F80), "NaN must keep an all-ones exponent"
    assert np.all((g & 0x0040) != 0), "NaN must come back quiet"
    assert np.array_equal(g & 0x8000, (u >> 16) & 0x8000), "NaN must keep its sign"
    assert np.array_equal(g & 0x003F, (u >> 16) & 0x003F), "NaN keeps its top payload bits"


def check_against_reference(x: np.ndarray) -> None:
    got = _C.f32_to_bf16(x)
    assert got.dtype == np.uint16 and got.shape == x.shape
    nan = np.isnan(x)
    np.testing.assert_array_equal(got[~nan], nearest_bf16(x[~nan]))
    check_nan(got[nan], x[nan])


def test_bf16_to_f32_exhaustive(isa):
    h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    got = _C.bf16_to_f32(h)
    assert got.dtype == np.float32 and got.shape == h.shape
    np.testing.assert_array_equal(got.view(np.uint32), h.astype(np.uint32) << 16)
    # and the values are those bfloat16 denotes: sign · 2^(e-127) · 1.m (0.m·2^-126 for e = 0)
    hv = h.astype(np.int64)
    sign = np.where(hv & 0x8000, -1.0, 1.0)
    e, m = (hv >> 7) & 0xFF, hv & 0x7F
    val = sign * np.where(e == 0, np.ldexp(m / 128.0, -126), np.ldexp(1.0 + m / 128.0, (e - 127).astype(np.int64)))
    finite = e != 0xFF
    np.testing.assert_array_equal(got[finite].astype(np.float64), val[finite])
    assert np.all(np.isinf(got[(e == 0xFF) & (m == 0)]))
    assert np.all(np.isnan(got[(e == 0xFF) & (m != 0)]))


def test_round_trip_of_every_bf16(isa):
    h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    back = _C.f32_to_bf16(_C.bf16_to_f32(h))
    finite_or_inf = (h & 0x7F80) != 0x7F80
    finite_or_inf |= (h & 0x007F) == 0
    np.testing.assert_array_equal(back[finite_or_inf], h[finite_or_inf])
    nan = ~finite_or_inf
    np.testing.assert_array_equal(back[nan], h[nan] | 0x0040)  # already-quiet NaNs are unchanged


def test_every_tie_and_neighbour(isa):
    """Each bfloat16 with the float32 low halves that matter: exact, just above, below, at and
    above the halfway point, and the largest (2^16 · 6 values)."""
    hi = np.arange(1 << 16, dtype=np.uint32) << 16
    lows = np.array([0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF], dtype=np.uint32)
    x = (hi[:, None] | lows[None, :]).reshape(-1).view(np.float32)
    check_against_reference(x)


def test_reference_bit_rule_is_nearest_even():
    """tests/reference.round_bf16 (the bit rule the GEMM tests round with) against the search."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 1 << 32, size=1 << 18, dtype=np.uint64).astype(np.uint32).view(np.float32)
    x = x[~np.isnan(x)]
    np.testing.assert_array_equal(round_bf16(x).view(np.uint32) >> 16, nearest_bf16(x))


def test_random_bit_patterns(isa):
    rng = np.random.default_rng(21)
    x = rng.integers(0, 1 << 32, size=1 << 20, dtype=np.uint64).astype(np.uint32).view(np.float32)
    check_against_reference(x)
    # and ordinary values, with a length that leaves a vector tail
    with np.errstate(over="ignore"):  # (some overflow to inf, which is also a case)
        y = (rng.standard_normal(100_003) * 10.0 ** rng.integers(-40, 39, 100_003)).astype(np.float32)
    check_against_reference(y)


@pytest.mark.parametrize("bits, want", [
    (0x00000000, 0x0000),  # +0
    (0x80000000, 0x8000),  # -0 stays -0
    (0x7F800000, 0x7F80),  # +inf
    (0xFF800000, 0xFF80),  # -inf
    (0x7F7FFFFF, 0x7F80),  # the largest float32 rounds to inf
    (0xFF7FFFFF, 0xFF80),
    (0x7F7F7FFF, 0x7F7F),  # just below half an ulp over the largest bfloat16
    (0x7F7F8000, 0x7F80),  # the tie over the largest bfloat16 (odd) goes to inf
    (0x3F808000, 0x3F80),  # a tie at an even bfloat16 stays
    (0x3F818000, 0x3F82),  # a tie at an odd one goes up
    (0x3F808001, 0x3F81),  # above the tie goes up
    (0x00008000, 0x0000),  # denormal tie at 0 stays 0
    (0x00018000, 0x0002),  # denormal tie at an odd one goes up
    (0x00017FFF, 0x0001),  # denormals are rounded, not flushed
    (0x807FFFFF, 0x8080),  # the largest negative denormal rounds to the smallest normal
])
def test_edges(isa, bits, want):
    x = np.array([bits], dtype=np.uint32).view(np.float32)
    assert int(_C.f32_to_bf16(x)[0]) == want


@pytest.mark.parametrize("bits", [0x7F800001, 0xFF800001, 0x7FC00000, 0xFFFFFFFF, 0x7F80FFFF, 0x7FBFFFFF])
def test_nan_stays_quiet_nan(isa, bits):
    x = np.array([bits], dtype=np.uint32).view(np.float32)
    got = _C.f32_to_bf16(x)
    check_nan(got, x)
    assert np.isnan(_C.bf16_to_f32(got)[0])


def test_shapes_and_out():
    x = np.linspace(-3, 3, 24, dtype=np.float32).reshape(2, 3, 4)
    out = np.empty((2, 3, 4), np.uint16)
    assert _C.f32_to_bf16(x, out=out) is out
    np.testing.assert_array_equal(out, nearest_bf16(x))
    back = np.empty((2, 3, 4), np.float32)
    assert _C.bf16_to_f32(out, out=back) is back
    np.testing.assert_array_equal(back.view(np.uint32), out.astype(np.uint32) << 16)
    assert _C.f32_to_bf16(np.zeros((0, 5), np.float32)).shape == (0, 5)


def test_bad_input():
    with pytest.raises(TypeError, match="f32_to_bf16.*'x'.*float32"):
        _C.f32_to_bf16(np.zeros(3, np.float64))
    with pytest.raises(TypeError, match="bf16_to_f32.*'x'.*uint16"):
        _C.bf16_to_f32(np.zeros(3, np.int16))
    with pytest.raises(ValueError, match="f32_to_bf16.*'x'.*C-contiguous"):
        _C.f32_to_bf16(np.zeros((4, 4), np.float32)[:, ::2])
    with pytest.raises(ValueError, match="f32_to_bf16.*out"):
        _C.f32_to_bf16(np.zeros(3, np.float32), out=np.zeros(4, np.uint16))
    with pytest.raises(TypeError, match="f32_to_bf16.*out"):
        _C.f32_to_bf16(np.zeros(3, np.float32), out=np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="'x'"):
        _C.f32_to_bf16([1.0, 2.0])


def test_matches_torch_rounding(isa):
    """PyTorch's float32 -> bfloat16 (round to nearest even) on random bit patterns and every
    tie; NaNs left out (PyTorch makes every NaN the one canonical 0x7FC0)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    x = rng.integers(0, 1 << 32, size=1 << 19, dtype=np.uint64).astype(np.uint32).view(np.float32)
    ties = ((np.arange(1 << 16, dtype=np.uint32) << 16) | 0x8000).view(np.float32)
    x = np.concatenate([x, ties])
    x = x[~np.isnan(x)]
    want = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(_C.f32_to_bf16(x), want)
