"""Fuzzing every native entry point of fastmlp._C and the Python API's argument checks with Hypothesis.

Each drawn call (adversarial dtypes, shapes, strides, zero sizes, overlapping buffers, read-only,
misaligned and byte-swapped arrays, NaN/Inf, huge and negative integers, wrong types) runs in a
worker process (fuzz_runner.py). The call must return, or raise one of the exceptions a bad argument
may raise (TypeError, ValueError, IndexError, RuntimeError for bad data, MemoryError, OverflowError)
with a message; it must not crash, hang, raise anything else, or change an input array it does not
write. A failure prints the recipe of the call (fuzz_recipes.py), shrunk by Hypothesis.

The default profile keeps the whole suite to about a minute; FASTMLP_FUZZ=long runs many more
examples per entry point (FASTMLP_FUZZ_EXAMPLES=N sets the count).
"""
from __future__ import annotations

import math
import os

import pytest

pytest.importorskip("hypothesis", reason="the fuzz suite needs hypothesis (pip install 'fastmlp[test]')")

from fuzz_entries import ENTRIES, SELFTEST, Arr, Bool, Entry, Float, Int, Lst, Str
from fuzz_recipes import FILLS, LAYOUTS
from fuzz_runner import Worker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

_LONG = os.environ.get("FASTMLP_FUZZ", "") == "long"
_EXAMPLES = int(os.environ.get("FASTMLP_FUZZ_EXAMPLES", "2000" if _LONG else "80"))
FUZZ = settings(max_examples=_EXAMPLES, deadline=None, database=None, derandomize=not _LONG,
                suppress_health_check=list(HealthCheck), print_blob=True)

ALLOWED = ("TypeError", "ValueError", "IndexError", "RuntimeError", "MemoryError", "OverflowError",
           "CheckpointError", "FileNotFoundError", "KeyError", "NotImplementedError")

DIMS = [0, 1, 2, 3, 5, 17, 64]
DTYPES = ["float64", "float16", "int32", "int64", "uint8", "bool", "complex64", "object", "float32"]
BAD_INTS = [-1, -(2**31), 2**31 - 1, 2**31, 2**62, 2**63 - 1, -(2**63), 2**64, 10**30]
BAD_FLOATS = [math.nan, math.inf, -math.inf, -1.0, 2.0, 1e38, -0.0, 1e-45]


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    yield w
    w.stop()


def _pick(data, usual, other, odds: int = 4):
    """The usual value `odds` times in odds+1 (Hypothesis shrinks towards it), else an adversarial one."""
    if data.draw(st.sampled_from(["usual"] * odds + ["adversarial"])) == "usual":
        return usual(data) if callable(usual) else usual
    return other(data) if callable(other) else other


def _shape(data, template: tuple, sizes: dict) -> tuple:
    usual = tuple(sizes[d] if isinstance(d, str) else d for d in template)
    return _pick(data, usual, lambda d: tuple(d.draw(st.lists(st.sampled_from(DIMS), max_size=3))))


def _array(data, spec: Arr, shape: tuple, earlier: list):
    kind = _pick(data, "array", lambda d: d.draw(st.sampled_from(["alias", "None", "object", "value"])), odds=6)
    if spec.optional and data.draw(st.booleans()):
        return ("value", None)
    if kind == "alias" and earlier:
        return ("alias", data.draw(st.sampled_from(earlier)), data.draw(st.sampled_from(["same", "shifted"])))
    if kind == "None":
        return ("value", None)
    if kind == "object":
        return ("object",)
    if kind == "value":
        return ("value", data.draw(st.sampled_from([0, 1.5, "x", [1.0, 2.0]])))
    dtype = _pick(data, spec.dtype, lambda d: d.draw(st.sampled_from(DTYPES)))
    layout = _pick(data, "c", lambda d: d.draw(st.sampled_from(LAYOUTS)))
    fill = _pick(data, spec.fill, lambda d: d.draw(st.sampled_from(FILLS)))
    seed = data.draw(st.integers(0, 2**16))
    return ("array", dtype, shape, layout, fill, seed)


def _scalar(data, spec):
    if isinstance(spec, Int):
        return ("value", _pick(data, lambda d: d.draw(st.sampled_from(spec.usual)),
                               lambda d: d.draw(st.one_of(st.sampled_from(BAD_INTS), st.integers(-10, 10**6),
                                                          st.sampled_from([1.5, None, "3", True])))))
    if isinstance(spec, Float):
        return ("value", _pick(data, lambda d: d.draw(st.sampled_from(spec.usual)),
                               lambda d: d.draw(st.one_of(st.sampled_from(BAD_FLOATS), st.sampled_from([None, "0.1"])))))
    if isinstance(spec, Bool):
        return ("value", _pick(data, lambda d: d.draw(st.booleans()),
                               lambda d: d.draw(st.sampled_from([None, 2, "yes", 0.5]))))
    if isinstance(spec, Str):
        return ("value", _pick(data, lambda d: d.draw(st.sampled_from(spec.usual)),
                               lambda d: d.draw(st.sampled_from(["", "bogus", "MEAN", None, 3]))))
    raise TypeError(spec)


def draw_recipes(data, entry: Entry) -> dict:
    sizes = {s: data.draw(st.sampled_from(DIMS), label=s) for s in ("M", "N", "K")}
    list_len = data.draw(st.integers(0, 3))
    list_shapes = [tuple(data.draw(st.lists(st.sampled_from(DIMS[:5]), min_size=1, max_size=2)))
                   for _ in range(list_len)]
    recipes: dict = {}
    arrays: list = []
    for name, spec in entry.params.items():
        if isinstance(spec, Arr):
            recipes[name] = _array(data, spec, _shape(data, spec.shape, sizes), arrays)
            arrays.append(name)
        elif isinstance(spec, Lst):
            if spec.optional and data.draw(st.booleans()):
                recipes[name] = ("value", None)
                continue
            items = [_array(data, Arr(s, spec.item_dtype), _shape(data, s, sizes), arrays) for s in list_shapes]
            recipes[name] = _pick(data, ("list", items), lambda d: d.draw(st.sampled_from(
                [("value", None), ("object",), ("list", items[:-1]), ("list", items + items[:1])])))
        else:
            recipes[name] = _scalar(data, spec)
    return recipes


def judge(name: str, recipes: dict, outcome: tuple) -> None:
    shown = "\n".join(f"    {k} = {v!r}" for k, v in recipes.items())
    where = f"{name}(\n{shown}\n)"
    kind = outcome[0]
    if kind == "ok":
        return
    if kind == "raised":
        assert outcome[1] in ALLOWED, f"{where} raised {outcome[1]}: {outcome[2]}"
        assert outcome[2].strip(), f"{where} raised {outcome[1]} with an empty message"
        return
    if kind == "modified":
        raise AssertionError(f"{where} changed its input '{outcome[1]}', which it does not write")
    if kind == "hang":
        raise AssertionError(f"{where} did not return within {outcome[1]} s")
    if kind == "crash":
        raise AssertionError(f"{where} crashed the process: {outcome[1]}")
    raise AssertionError(f"{where}: the fuzz harness failed:\n{outcome[1]}")


@pytest.mark.parametrize("name", list(ENTRIES))
def test_entry_point_survives_adversarial_arguments(worker, name):
    entry = ENTRIES[name]

    @FUZZ
    @given(data=st.data())
    def run(data):
        recipes = draw_recipes(data, entry)
        judge(name, recipes, worker.call(name, recipes))

    run()


def test_the_harness_reports_a_crash_and_carries_on(worker):
    """A call that really segfaults is reported as a crash (with its input), and the next call runs in a
    fresh worker."""
    outcome = worker.call("selftest-segfault", {"unused": ("value", 0)})
    assert outcome[0] == "crash" and "SIGSEGV" in outcome[1]
    with pytest.raises(AssertionError, match=r"selftest-segfault\(\n    unused = \('value', 0\)\n\) crashed"):
        judge("selftest-segfault", {"unused": ("value", 0)}, outcome)
    assert worker.call("philox_bits", {"seed": ("value", 1), "offset": ("value", 0), "n": ("value", 3)}) == \
        ("ok", "ndarray uint32 [3]")
    assert set(SELFTEST).isdisjoint(ENTRIES)


def test_the_harness_sees_an_input_changed_in_place(worker):
    """act_forward with out=x is an allowed in-place call (x is written); with out a shifted view of x's
    memory it must be refused as a partial overlap, not run."""
    x = ("array", "float32", (3, 4), "c", "normal", 1)
    same = worker.call("act_forward", {"x": x, "act": ("value", 1), "param": ("value", 0.0),
                                       "out": ("alias", "x", "same")})
    assert same == ("ok", "ndarray float32 [3, 4]")
    shifted = worker.call("act_forward", {"x": x, "act": ("value", 1), "param": ("value", 0.0),
                                          "out": ("alias", "x", "shifted")})
    assert shifted[0] == "raised" and shifted[1] == "ValueError" and "partial overlap" in shifted[2]


@pytest.mark.parametrize("call,recipes,error", [
    ("philox_bits", {"seed": ("value", 1), "offset": ("value", 0), "n": ("value", 2**31)}, "n must be <="),
    ("linear_forward", {"x": ("array", "float32", (65536, 1), "c", "normal", 0),
                        "weight": ("array", "float32", (65536, 1), "c", "normal", 0)}, "more than the 2147483647"),
    ("set_num_threads", {"n": ("value", 10**6)}, ""),
])
def test_the_issue_repros_raise_clear_errors(worker, call, recipes, error):
    outcome = worker.call(call, recipes)
    assert outcome[0] == "raised" and outcome[1] in ("ValueError", "TypeError") and error in outcome[2], outcome
