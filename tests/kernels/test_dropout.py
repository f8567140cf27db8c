"""Dropout kernels (fastmlp._C.dropout_forward / dropout_backward) and their Philox4x32-10
bits (_C.philox_bits) against an independent NumPy Philox and the reference kernels."""
from __future__ import annotations

import math

import numpy as np
import pytest

from fastmlp import _C

SIZES = [0, 1, 3, 7, 17, 31, 32, 33, 63, 64, 65, 127, 784, 10007]

_MUL = (np.uint64(0xD2511F53), np.uint64(0xCD9E8D57))
_WEYL = (0x9E3779B9, 0xBB67AE85)


def philox4x32_10(ctr, key):
    """Philox4x32-10 (Salmon et al., SC 2011) on arrays: ctr is four uint32 arrays, key two uint32."""
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint32) for c in ctr)
    k0, k1 = int(key[0]), int(key[1])
    for _ in range(10):
        p0 = c0.astype(np.uint64) * _MUL[0]
        p1 = c2.astype(np.uint64) * _MUL[1]
        c0, c1, c2, c3 = ((p1 >> np.uint64(32)).astype(np.uint32) ^ c1 ^ np.uint32(k0), p1.astype(np.uint32),
                          (p0 >> np.uint64(32)).astype(np.uint32) ^ c3 ^ np.uint32(k1), p0.astype(np.uint32))
        k0 = (k0 + _WEYL[0]) & 0xFFFFFFFF
        k1 = (k1 + _WEYL[1]) & 0xFFFFFFFF
    return c0, c1, c2, c3


def stream_bits(seed: int, offset: int, n: int) -> np.ndarray:
    """Word i of the stream: word i % 4 of the block with counter (i // 4, offset) and key seed."""
    blocks = np.arange((n + 3) // 4, dtype=np.uint64)
    lo32 = np.uint64(0xFFFFFFFF)
    ctr = (blocks & lo32, blocks >> np.uint64(32), np.full_like(blocks, offset & 0xFFFFFFFF),
           np.full_like(blocks, offset >> 32))
    words = philox4x32_10(ctr, (seed & 0xFFFFFFFF, seed >> 32))
    return np.stack(words, axis=1).reshape(-1)[:n]


def threshold(p: float) -> int:
    t = float(np.float32(p)) * 4294967296.0
    return 0 if t <= 0 else (0xFFFFFFFF if t >= 4294967295.0 else int(t))


def expected(x: np.ndarray, p: float, seed: int, offset: int):
    keep = stream_bits(seed, offset, x.size).reshape(x.shape) >= threshold(p) if p < 1 else np.zeros(x.shape, bool)
    scale = np.float32(1.0) / (np.float32(1.0) - np.float32(p)) if p < 1 else np.float32(0)
    return np.where(keep, x * scale, np.float32(0)).astype(np.float32), keep.astype(np.uint8)


# Published known-answer vectors of Philox4x32-10 (Random123).
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("ctr,key,out", KNOWN_ANSWERS)
def test_numpy_philox_known_answers(ctr, key, out):
    assert tuple(int(v) for v in philox4x32_10(ctr, key)) == out


def test_philox_bits_known_answer():
    # counter (0, 0, 0, 0) and key (0, 0) are seed 0, offset 0, block 0
    assert [int(v) for v in _C.philox_bits(0, 0, 4)] == list(KNOWN_ANSWERS[0][2])


@pytest.mark.parametrize("seed,offset", [(0, 0), (1, 0), (0, 1), (12345, 67), (2**40 + 3, 2**33 + 5),
                                         (2**64 - 1, 2**64 - 1)])
def test_philox_bits_match_numpy(seed, offset):
    n = 1031
    bits = _C.philox_bits(seed, offset, n)
    assert bits.dtype == np.uint32 and bits.shape == (n,)
    np.testing.assert_array_equal(bits, stream_bits(seed, offset, n))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("n", SIZES)
def test_forward_matches_philox_bitwise(isa, threads, rng, n, p):
    x = rng.standard_normal(n).astype(np.float32)
    seed, offset = 2**35 + 17, 9
    y, mask = _C.dropout_forward(x, p, seed, offset)
    ref_y, ref_mask = expected(x, p, seed, offset)
    assert y.dtype == np.float32 and mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, ref_mask)
    np.testing.assert_array_equal(y.view(np.uint32), ref_y.view(np.uint32))


def test_forward_identical_on_every_kernel_set_and_thread_count(rng):
    x = rng.standard_normal((301, 1001)).astype(np.float32)
    previous_isa, previous_threads = _C.isa(), _C.get_num_threads()
    results = []
    try:
        for isa in _C.available_isas():
            _C.set_isa(isa)
            for t in (1, 2):
                _C.set_num_threads(t)
                results.append((isa, t, *_C.dropout_forward(x, 0.3, 99, 1234)))
    finally:
        _C.set_isa(previous_isa)
        _C.set_num_threads(previous_threads)
    for isa, t, y, mask in results[1:]:
        np.testing.assert_array_equal(mask, results[0][3], err_msg=f"{isa}, {t} threads")
        np.testing.assert_array_equal(y.view(np.uint32), results[0][2].view(np.uint32), err_msg=f"{isa}, {t} threads")


@pytest.mark.parametrize("p", [0.05, 0.2, 0.5, 0.8])
def test_mask_statistics(isa, p):
    n = 200_000
    x = np.ones(n, np.float32)
    y, mask = _C.dropout_forward(x, p, 7, 0)
    kept = mask.mean()
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(kept - (1 - p)) < 5 * sigma
    # kept values are x / (1 - p), dropped ones exactly 0
    np.testing.assert_array_equal(y[mask == 1], np.float32(1) / (np.float32(1) - np.float32(p)))
    assert np.all(y[mask == 0] == 0)
    # no long-range structure: each quarter of the words (word index mod 4) is kept alike
    for w in range(4):
        assert abs(mask[w::4].mean() - (1 - p)) < 5 * sigma * 2


def test_seed_and_offset_change_the_mask(isa):
    x = np.ones(4096, np.float32)
    m = [_C.dropout_forward(x, 0.5, s, o)[1] for s, o in ((1, 0), (2, 0), (1, 1))]
    assert np.mean(m[0] != m[1]) > 0.4 and np.mean(m[0] != m[2]) > 0.4
    np.testing.assert_array_equal(m[0], _C.dropout_forward(x, 0.5, 1, 0)[1])


@pytest.mark.parametrize("n", [0, 1, 65, 1000])
def test_p_zero_and_one(isa, rng, n):
    x = rng.standard_normal(n).astype(np.float32)
    y, mask = _C.dropout_forward(x, 0.0, 3, 4)
    np.testing.assert_array_equal(y, x)
    assert np.all(mask == 1)
    y, mask = _C.dropout_forward(x, 1.0, 3, 4)
    assert np.all(y == 0) and not np.any(np.signbit(y)) and np.all(mask == 0)
    np.testing.assert_array_equal(_C.dropout_backward(x, mask, 1.0), np.zeros(n, np.float32))


def test_forward_in_place_and_without_mask(isa, rng):
    x = rng.standard_normal((33, 65)).astype(np.float32)
    ref_y, ref_mask = expected(x, 0.25, 5, 6)
    y, mask = _C.dropout_forward(x, 0.25, 5, 6, want_mask=False)
    assert mask is None
    np.testing.assert_array_equal(y, ref_y)
    out, _ = _C.dropout_forward(x, 0.25, 5, 6, out=x)
    assert out is x
    np.testing.assert_array_equal(x, ref_y)


@pytest.mark.parametrize("n", SIZES)
def test_backward(isa, threads, rng, n):
    p = 0.3
    dy = rng.standard_normal(n).astype(np.float32)
    mask = ((rng.random(n) < 0.6) * rng.integers(1, 3, n)).astype(np.uint8)  # any nonzero byte keeps
    scale = np.float32(1) / (np.float32(1) - np.float32(p))
    ref = np.where(mask != 0, dy * scale, np.float32(0)).astype(np.float32)
    dx = _C.dropout_backward(dy, mask, p)
    np.testing.assert_array_equal(dx, ref)
    acc = np.full(n, 0.25, np.float32)
    assert _C.dropout_backward(dy, mask, p, out=acc, accumulate=True) is acc
    np.testing.assert_array_equal(acc, np.float32(0.25) + ref)
    same = dy.copy()
    _C.dropout_backward(same, mask, p, out=same)  # in place
    np.testing.assert_array_equal(same, ref)


def test_forward_then_backward_matches_torch_formula(isa, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((64, 100)).astype(np.float32)
    y, mask = _C.dropout_forward(x, 0.4, 11, 12)
    # torch's dropout is y = x * mask / (1 - p) for its own mask; check the same algebra and its gradient
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = tx * torch.from_numpy(mask.astype(np.float32)) / (1 - 0.4)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    (tg,) = torch.autograd.grad(ty, tx, torch.from_numpy(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(_C.dropout_backward(dy, mask, 0.4), tg.numpy(), rtol=1e-6)


class TestBadInput:
    def test_p_out_of_range(self):
        with pytest.raises(ValueError, match=r"dropout_forward: p must be in \[0, 1\]; got 1.5"):
            _C.dropout_forward(np.zeros(3, np.float32), 1.5, 0, 0)
        with pytest.raises(ValueError, match=r"dropout_backward: p must be in \[0, 1\]; got -0.1"):
            _C.dropout_backward(np.zeros(3, np.float32), np.zeros(3, np.uint8), -0.1)

    def test_wrong_dtype(self):
        with pytest.raises(TypeError, match=r"dropout_forward: argument 'x' must be a float32 array; got float64 \[3\]"):
            _C.dropout_forward(np.zeros(3), 0.5, 0, 0)

    def test_mask_wrong_dtype(self):
        with pytest.raises(TypeError, match=r"dropout_backward: argument 'mask' must be a uint8 array; got int16 \[3\]"):
            _C.dropout_backward(np.zeros(3, np.float32), np.zeros(3, np.int16), 0.5)

    def test_bool_mask_is_accepted(self):
        dx = _C.dropout_backward(np.ones(3, np.float32), np.array([True, False, True]), 0.5)
        np.testing.assert_array_equal(dx, [2.0, 0.0, 2.0])

    def test_mask_shape_mismatch(self):
        with pytest.raises(ValueError, match=r"'dy' and 'mask' must have the same shape; got \[3\] and \[4\]"):
            _C.dropout_backward(np.zeros(3, np.float32), np.zeros(4, np.uint8), 0.5)

    def test_out_wrong_shape(self):
        with pytest.raises(ValueError, match=r"argument 'out' must have shape \[3\]; got float32 \[2\]"):
            _C.dropout_forward(np.zeros(3, np.float32), 0.5, 0, 0, out=np.zeros(2, np.float32))

    def test_accumulate_needs_out(self):
        with pytest.raises(ValueError, match="accumulate=True needs an 'out' array"):
            _C.dropout_backward(np.zeros(3, np.float32), np.zeros(3, np.uint8), 0.5, accumulate=True)

    def test_negative_philox_count(self):
        with pytest.raises(ValueError, match="philox_bits: n must be >= 0; got -1"):
            _C.philox_bits(0, 0, -1)
