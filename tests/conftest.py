"""Shared fixtures: every kernel test runs on each CPU kernel set and thread count."""
from __future__ import annotations

import numpy as np
import pytest

from fastmlp import _C

ISAS = list(_C.available_isas())


@pytest.fixture(params=ISAS)
def isa(request):
    """Run the test with each CPU kernel set this machine has ('reference' included)."""
    previous = _C.isa()
    _C.set_isa(request.param)
    yield request.param
    _C.set_isa(previous)


@pytest.fixture(params=[1, 2])
def threads(request):
    """Run the test with 1 and with 2 OpenMP threads."""
    previous = _C.get_num_threads()
    _C.set_num_threads(request.param)
    yield request.param
    _C.set_num_threads(previous)


@pytest.fixture
def on_threads():
    """on_threads(counts, run) -> [run(t) for t in counts], each with t OpenMP threads; the
    thread setting is restored afterwards."""
    def run_on(counts, run):
        previous = _C.get_num_threads()
        try:
            out = []
            for t in counts:
                _C.set_num_threads(t)
                out.append(run(t))
            return out
        finally:
            _C.set_num_threads(previous)
    return run_on


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
