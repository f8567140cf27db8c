"""Kill test of ``fastmlp.save``: SIGKILL a process while it saves, then check what is on disk.

    python tools/kill_save.py [--kills 52] [--mb 64]

A child process saves a training-state-sized dict (--mb MiB of float32 tensors, each
filled with the save's sequence number, plus JSON metadata naming that number) over
and over to one path. The parent kills it with SIGKILL at a random moment (most fall
mid-write), then loads the path: it must be a complete file of one save: every tensor
holding the number the metadata names (fastmlp.load also checks its CRC). Prints the
kills, the files found intact, the corrupt ones (the exit status is 1 if any), the most
temporary files the killed saves had left beside the target at any time, and how many
remain after one more, uninterrupted save (which removes those of dead processes; the
exit status is 1 if any remain).
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import sys
import numpy as np
import fastmlp
path, mb = sys.argv[1], int(sys.argv[2])
n = mb * 2**20 // 4 // 4
k = 0
while True:
    k += 1
    state = {"version": k, "tensors": [fastmlp.tensor(np.full(n, k, np.float32)) for _ in range(4)]}
    fastmlp.save(state, path)
    print(k, flush=True)
"""


def check(path: Path) -> str:
    """'intact', 'missing' or a description of what is wrong."""
    import numpy as np

    import fastmlp

    if not path.exists():
        return "missing"
    try:
        state = fastmlp.load(path)
    except Exception as e:  # noqa: BLE001 - reported
        return f"unreadable: {type(e).__name__}: {e}"
    k = state.get("version") if isinstance(state, dict) else None
    if not isinstance(k, int):
        return "no version in the metadata"
    for t in state["tensors"]:
        a = t.numpy()
        if a.size == 0 or not np.all(a == np.float32(k)):
            return f"tensor data does not match version {k}"
    return "intact"


# One uninterrupted save to the same path (small: only its cleanup of stale temporaries matters).
FINAL = """
import sys
import numpy as np
import fastmlp
fastmlp.save({"version": -1, "w": fastmlp.tensor(np.zeros(4, np.float32))}, sys.argv[1])
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=52)
    p.add_argument("--mb", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rnd = random.Random(args.seed)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    counts = {"intact": 0, "missing": 0, "corrupt": 0}
    leftovers = 0
    leftover_bytes = 0
    saves_seen = 0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fastmlp-kill-save-") as d:
        folder = Path(d)
        target = folder / "state.pt"
        for i in range(args.kills):
            proc = subprocess.Popen([sys.executable, "-c", CHILD, str(target), str(args.mb)], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            # Wait until the child has finished at least one save in this round (its first line),
            # then kill it at a random moment of the saves that follow.
            line = proc.stdout.readline()
            if not line:
                print(proc.stderr.read(), file=sys.stderr)
                return 2
            time.sleep(rnd.uniform(0.0, 0.6))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            saves_seen += 1
            verdict = check(target)
            if verdict == "intact":
                counts["intact"] += 1
            elif verdict == "missing":
                counts["missing"] += 1
            else:
                counts["corrupt"] += 1
                print(f"kill {i + 1}: {verdict}", flush=True)
            temps = [f for f in folder.iterdir() if f != target]
            if len(temps) > leftovers:
                leftovers = len(temps)
                leftover_bytes = sum(f.stat().st_size for f in temps)
        # one more save, not interrupted: it removes the temporaries of the killed processes
        proc = subprocess.run([sys.executable, "-c", FINAL, str(target)], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return 2
        remaining = [f.name for f in folder.iterdir() if f != target]
    seconds = time.perf_counter() - start
    print(f"{args.kills} SIGKILLs during fastmlp.save of {args.mb} MiB in {seconds:.0f} s: "
          f"{counts['intact']} intact, {counts['corrupt']} corrupt, {counts['missing']} missing; "
          f"at most {leftovers} temporary file(s) present at once ({leftover_bytes / 2**20:.0f} MiB), "
          f"{len(remaining)} after the next save {remaining if remaining else ''}", flush=True)
    return 1 if counts["corrupt"] or counts["missing"] or remaining else 0


if __name__ == "__main__":
    sys.exit(main())
