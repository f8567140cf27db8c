"""The register-only peak loops the kernel benchmark times (fastmlp._C.peak_flops)."""
from __future__ import annotations

import pytest

from fastmlp import _C


@pytest.mark.parametrize("kind", ["fma", "bf16"])
def test_flop_count_scales_with_iterations(isa, kind):
    if isa == "reference":
        with pytest.raises(ValueError, match="'reference' kernel set has no peak loop"):
            _C.peak_flops(kind, 10)
        return
    one, three = _C.peak_flops(kind, 1000), _C.peak_flops(kind, 3000)
    assert one > 0 and three == 3 * one
    lanes_flops = one / (1000 * _C.get_num_threads() * 12)  # 12 chains per thread
    # flops per instruction: 2 per float32 lane for an FMA, 4 for vdpbf16ps; 4 to 16 lanes
    assert lanes_flops in ({8, 16, 32} if kind == "fma" or isa != "avx512bf16" else {64})


def test_bad_arguments():
    with pytest.raises(ValueError, match="kind must be 'fma' or 'bf16'"):
        _C.peak_flops("fp8", 10)
    with pytest.raises(ValueError, match="iters must be >= 1"):
        _C.peak_flops("fma", 0)
