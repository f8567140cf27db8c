"""The fuzz worker: a separate process that builds each call's arguments from their recipes, makes the
call and reports what happened, so that a crash (a segfault, an abort) ends this process and not the
test run. Started by fuzz_runner.Worker; speaks length-prefixed pickles over its stdin and the file
descriptor it was given for replies (its own stdout is sent to stderr, so prints cannot garble them).

Reply to each request (entry name, {param: recipe}): ("ok", summary), ("raised", type name, message),
or ("modified", param) when the call changed an input array it does not write.
"""
from __future__ import annotations

import os
import pickle
import resource
import struct
import sys
import traceback

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fuzz_entries import ENTRIES_ALL as ENTRIES, caller  # noqa: E402
from fuzz_recipes import arrays_in, build  # noqa: E402


def _limit_memory(extra_bytes: int) -> None:
    """Cap the address space at what the process maps now plus `extra_bytes`: a call asking for
    terabytes then fails at once with MemoryError instead of exhausting the machine."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[0])
    now = pages * os.sysconf("SC_PAGE_SIZE")
    limit = now + extra_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash leaves no core file behind


def _summary(result) -> str:
    if isinstance(result, np.ndarray):
        return f"ndarray {result.dtype} {list(result.shape)}"
    if isinstance(result, (tuple, list)):
        return "(" + ", ".join(_summary(r) for r in result) + ")"
    return type(result).__name__


def run_one(name: str, recipes: dict):
    entry = ENTRIES[name]
    kw: dict = {}
    for param, recipe in recipes.items():
        kw[param] = build(recipe, kw)
    written = [a for p in entry.writes for a in arrays_in(kw.get(p))]
    inputs = []
    for p, v in kw.items():
        if p in entry.writes:
            continue
        for a in arrays_in(v):
            if a.dtype.kind != "O" and not any(np.shares_memory(a, w) for w in written):
                inputs.append((p, a, a.copy()))
    from fastmlp import _C

    threads = _C.get_num_threads()
    isa = _C.isa()
    try:
        result = caller(entry)(kw)
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which judges it
        return ("raised", type(e).__name__, str(e))
    finally:
        if name in ("set_num_threads", "set_isa"):
            _C.set_num_threads(threads)
            _C.set_isa(isa)
    for p, a, before in inputs:
        if not np.array_equal(a, before, equal_nan=a.dtype.kind in "fc"):
            return ("modified", p)
    return ("ok", _summary(result))


def main() -> None:
    reply_fd = int(sys.argv[1])
    _limit_memory(int(sys.argv[2]) if len(sys.argv) > 2 else 3 << 30)
    out = os.fdopen(reply_fd, "wb", buffering=0)
    sys.stdout = sys.stderr
    inp = sys.stdin.buffer
    import fastmlp  # noqa: F401  (imported before the first request, not during it)

    out.write(struct.pack("<I", 0))  # ready
    while True:
        head = inp.read(4)
        if len(head) < 4:
            return
        (length,) = struct.unpack("<I", head)
        name, recipes = pickle.loads(inp.read(length))
        try:
            reply = run_one(name, recipes)
        except BaseException:  # noqa: BLE001 - a bug of the harness itself: say so
            reply = ("harness-error", traceback.format_exc())
        blob = pickle.dumps(reply)
        out.write(struct.pack("<I", len(blob)) + blob)


if __name__ == "__main__":
    main()
