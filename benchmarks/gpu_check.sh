#!/usr/bin/env bash
# One run on a GPU machine that says whether the CUDA backend works, and how fast it is.
#
#   bash benchmarks/gpu_check.sh            # from the repository root; tables go to $OUT
#   OUT=/tmp/gpu PYTHON=python3.12 bash benchmarks/gpu_check.sh
#
# Needs no network and installs nothing. In order:
#   1. builds fastmlp in place (cmake + ninja, FASTMLP_CUDA=ON; stops if nvcc is missing),
#   2. fails unless fastmlp._cuda imports and sees a device (CuPy missing: the GPU steps
#      are skipped, loudly, and the run cannot pass),
#   3. pytest tests/cuda -rs: fails on any failure, and on any skip caused by a missing
#      GPU or CuPy (a skipped suite must never look green),
#   4. benchmarks/gpu_memcheck.py under compute-sanitizer memcheck (CuPy's pool off),
#   5. benchmarks/bench_gpu.py (outputs checked against references before timing),
#   6. benchmarks/bench_train.py --device cuda (needs MNIST on disk),
#   7. benchmarks/bench_train.py on the CPU with 1, 2, 4, 8 and 16 threads, PyTorch on the
#      same threads (needs MNIST on disk).
# Each step has a time limit, all within about 8 minutes. Output: $OUT (default
# ./gpu-check-out): gpu_check.log, one log per step, the benchmark CSVs, summary.txt.
# Exit status: 0 when every step passed, 1 otherwise.
set -u

OUT="${OUT:-./gpu-check-out}"
PY="${PYTHON:-python3}"
BUDGET="${GPU_CHECK_BUDGET:-470}"  # seconds for the whole run (8 minutes, less a margin)
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$OUT" || exit 1
OUT="$(cd "$OUT" && pwd)"  # relative to where the script was started
cd "$ROOT" || exit 1
exec > >(tee "$OUT/gpu_check.log") 2>&1

START=$SECONDS
SUMMARY=()
FAILED=0

note() { printf '\n==== %s (t=%ss)\n' "$*" "$((SECONDS - START))"; }
loud() { printf '\n!!!! %s\n' "$*"; }
record() {  # record STEP STATUS DETAIL
  SUMMARY+=("$(printf '%-28s %-5s %s' "$1" "$2" "$3")")
  if [ "$2" != "PASS" ]; then FAILED=1; fi
}
left() { echo $((BUDGET - (SECONDS - START))); }
limit() {  # limit CAP: the smaller of CAP and the time left (at least 5 s)
  local l; l=$(left)
  if [ "$l" -lt "$1" ]; then echo $((l > 5 ? l : 5)); else echo "$1"; fi
}
finish() {
  note "summary"
  {
    printf 'gpu_check on %s, %s\n' "$(hostname)" "$(date -u '+%Y-%m-%d %H:%M UTC')"
    printf '%s\n' "${SUMMARY[@]}"
    printf 'total %ss; verdict: %s\n' "$((SECONDS - START))" "$([ "$FAILED" = 0 ] && echo PASS || echo FAIL)"
  } | tee "$OUT/summary.txt"
  exit "$FAILED"
}
stop() {  # stop STEP DETAIL: a failure after which nothing else can run
  loud "STOP: $2"
  record "$1" FAIL "$2"
  finish
}

# ---- 0. what is here ------------------------------------------------------------------------------
note "environment"
command -v "$PY" >/dev/null 2>&1 || stop "python" "no '$PY' interpreter (set PYTHON=...)"
"$PY" --version
nproc
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv || true
else
  loud "nvidia-smi not found"
fi
# A GPU must be visible before minutes go into a build: nvidia-smi lists one, or a device node exists.
GPUS=0
if command -v nvidia-smi >/dev/null 2>&1; then GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true); fi
if [ "$GPUS" -eq 0 ] && ls /dev/nvidia[0-9]* >/dev/null 2>&1; then GPUS=$(ls /dev/nvidia[0-9]* | wc -l); fi
[ "$GPUS" -gt 0 ] || stop "device" "no GPU visible on this machine (nvidia-smi lists none and there is no /dev/nvidia*)"
have_py() { "$PY" -c "import $1" >/dev/null 2>&1; }
for mod in numpy pybind11 pytest cupy torch; do
  if have_py "$mod"; then
    printf '  %-9s %s\n' "$mod" "$("$PY" -c "import $mod; print(getattr($mod, '__version__', '?'))" 2>/dev/null)"
  else
    printf '  %-9s MISSING\n' "$mod"
  fi
done

# ---- 1. build in place ------------------------------------------------------------------------------
note "build (cmake, FASTMLP_CUDA=ON, in place)"
NVCC="${CUDACXX:-}"
if [ -z "$NVCC" ]; then
  for c in "$(command -v nvcc 2>/dev/null)" "${CUDA_HOME:-/nonexistent}/bin/nvcc" /usr/local/cuda/bin/nvcc \
           /usr/local/cuda-*/bin/nvcc; do
    if [ -n "$c" ] && [ -x "$c" ]; then NVCC="$c"; break; fi
  done
fi
[ -n "$NVCC" ] || stop "build" "nvcc not found (PATH, \$CUDA_HOME/bin, /usr/local/cuda*/bin); set CUDACXX=/path/to/nvcc"
"$NVCC" --version | tail -n 2
CUDA_BIN="$(dirname "$NVCC")"
have_py numpy || stop "build" "numpy is not installed for $PY"
have_py pybind11 || stop "build" "pybind11 is not installed for $PY (the build needs its CMake files)"
CMAKE="$(command -v cmake || true)"
[ -n "$CMAKE" ] || stop "build" "cmake not found"
GEN=(-G "Unix Makefiles")
if command -v ninja >/dev/null 2>&1; then GEN=(-G Ninja); fi
ARCH=""
if command -v nvidia-smi >/dev/null 2>&1; then
  ARCH="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' .')"
fi
ARCH_FLAG=()
if [ -n "$ARCH" ]; then ARCH_FLAG=(-DFASTMLP_CUDA_ARCHITECTURES="$ARCH"); fi
BUILD="build/gpu-check"
t0=$SECONDS
if ! timeout "$(limit 120)" "$CMAKE" -S . -B "$BUILD" "${GEN[@]}" -DFASTMLP_INPLACE=ON -DFASTMLP_CUDA=ON \
      -DCMAKE_CUDA_COMPILER="$NVCC" -DPython_EXECUTABLE="$(command -v "$PY")" "${ARCH_FLAG[@]}" \
      > "$OUT/build.log" 2>&1 \
   || ! timeout "$(limit 240)" "$CMAKE" --build "$BUILD" -j "$(nproc)" >> "$OUT/build.log" 2>&1; then
  tail -n 40 "$OUT/build.log"
  stop "build" "the in-place build failed (see build.log)"
fi
record "build" PASS "$((SECONDS - t0)) s, sm_${ARCH:-default}, $(basename "$NVCC") in $CUDA_BIN"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

# ---- 2. the extension and a device --------------------------------------------------------------
note "fastmlp._cuda and the device"
if ! "$PY" -c "
import sys
from fastmlp import _cuda
n = _cuda.device_count()
print('fastmlp._cuda', _cuda.__version__, 'CUDA runtime', _cuda.runtime_version(), 'devices', n)
if n == 0:
    sys.exit('no CUDA device: ' + _cuda.no_device_reason())
print('device 0:', _cuda.device_name(0))
"; then
  stop "device" "fastmlp._cuda did not import or sees no CUDA device"
fi
GPU_OK=1
if ! have_py cupy; then
  loud "CuPy is not importable for $PY: the CUDA backend cannot run, so the GPU tests, the sanitizer check and" \
       "the GPU benchmarks are SKIPPED and this run FAILS. Install the CuPy wheel for this CUDA (cupy-cuda13x)."
  "$PY" -c "import cupy" 2>&1 | tail -n 3
  record "cupy" FAIL "CuPy missing: GPU steps skipped"
  GPU_OK=0
else
  "$PY" -c "import fastmlp, sys; ok = fastmlp.cuda.is_available(); print('fastmlp.cuda.is_available():', ok,
fastmlp.cuda.why_unavailable()); sys.exit(0 if ok else 1)" || { record "cupy" FAIL "fastmlp.cuda unusable"; GPU_OK=0; }
fi
TORCH_CUDA=0
if have_py torch && "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  TORCH_CUDA=1
else
  loud "NOTE: no PyTorch with CUDA here: the PyTorch CUDA columns are left out (not a failure)"
fi

# ---- 3. tests/cuda ----------------------------------------------------------------------------------------
if [ "$GPU_OK" = 1 ]; then
  note "pytest tests/cuda -rs"
  if have_py pytest; then
    timeout "$(limit 90)" "$PY" -m pytest tests/cuda -rs -q -p no:cacheprovider > "$OUT/pytest_cuda.log" 2>&1
    rc=$?
    tail -n 30 "$OUT/pytest_cuda.log"
    # Skips for a missing GPU or CuPy mean the suite did not run: never green.
    bad_skips=$(grep -E '^SKIPPED' "$OUT/pytest_cuda.log" | grep -ciE 'no usable CUDA|CuPy is not|not built|no CUDA device' \
                || true)
    passed=$(grep -oE '[0-9]+ passed' "$OUT/pytest_cuda.log" | tail -n 1 | grep -oE '[0-9]+' || echo 0)
    if [ "$rc" -ne 0 ]; then
      record "pytest tests/cuda" FAIL "exit $rc (see pytest_cuda.log)"
    elif [ "$bad_skips" -gt 0 ] || [ "${passed:-0}" -eq 0 ]; then
      record "pytest tests/cuda" FAIL "$passed passed but $bad_skips skipped for want of a GPU/CuPy"
    else
      record "pytest tests/cuda" PASS "$(grep -E '[0-9]+ passed' "$OUT/pytest_cuda.log" | tail -n 1)"
    fi
  else
    loud "pytest is not installed: tests/cuda NOT RUN"
    record "pytest tests/cuda" FAIL "pytest missing"
  fi
fi

# ---- 4. out-of-bounds check under compute-sanitizer -------------------------------------------------------
if [ "$GPU_OK" = 1 ]; then
  note "compute-sanitizer memcheck"
  SAN="$(command -v compute-sanitizer 2>/dev/null || true)"
  for c in "$CUDA_BIN/compute-sanitizer" "$CUDA_BIN/../compute-sanitizer/compute-sanitizer" \
           /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
    if [ -z "$SAN" ] && [ -x "$c" ]; then SAN="$c"; fi
  done
  if [ -z "$SAN" ]; then
    loud "compute-sanitizer not found next to nvcc or in PATH: the out-of-bounds check is SKIPPED"
    record "memcheck" FAIL "compute-sanitizer not found"
  else
    timeout "$(limit 100)" "$SAN" --tool memcheck --leak-check no --error-exitcode 3 \
      "$PY" benchmarks/gpu_memcheck.py > "$OUT/memcheck.log" 2>&1
    rc=$?
    tail -n 25 "$OUT/memcheck.log"
    case $rc in
      0) record "memcheck" PASS "$(grep -E 'gpu_memcheck:' "$OUT/memcheck.log" | tail -n 1)" ;;
      3) record "memcheck" FAIL "compute-sanitizer reported memory errors (see memcheck.log)" ;;
      124) record "memcheck" FAIL "timed out" ;;
      *) record "memcheck" FAIL "exit $rc (see memcheck.log)" ;;
    esac
  fi
fi

# ---- 5. GPU kernel benchmarks ---------------------------------------------------------------------------
if [ "$GPU_OK" = 1 ]; then
  note "bench_gpu.py"
  FASTMLP_BENCH_RESULTS="$OUT" timeout "$(limit 90)" "$PY" benchmarks/bench_gpu.py > "$OUT/bench_gpu.txt" 2>&1
  rc=$?
  cat "$OUT/bench_gpu.txt"
  if [ "$rc" -eq 0 ]; then record "bench_gpu" PASS "gpu_kernels.csv"
  else record "bench_gpu" FAIL "exit $rc (1: an output disagreed with its reference; 124: timed out)"; fi
fi

# ---- MNIST for the training benchmarks ---------------------------------------------------------------------
MNIST=""
for d in "${FASTMLP_DATA:-}" "$ROOT/shared/data/mnist" "$ROOT/../shared/data/mnist" "$HOME/.cache/fastmlp"; do
  if [ -n "$d" ] && ls "$d"/train-images-idx3-ubyte* "$d"/MNIST/raw/train-images-idx3-ubyte* >/dev/null 2>&1; then
    MNIST="$d"; break
  fi
done
if [ -z "$MNIST" ]; then
  loud "MNIST not found (FASTMLP_DATA, ./shared/data/mnist, ../shared/data/mnist): the training benchmarks are SKIPPED"
  record "bench_train" FAIL "no MNIST on disk (no network to fetch it)"
fi

# ---- 6. training on the GPU ---------------------------------------------------------------------------------
if [ "$GPU_OK" = 1 ] && [ -n "$MNIST" ]; then
  note "bench_train.py --device cuda (10,000 images per epoch)"
  FASTMLP_BENCH_RESULTS="$OUT" timeout "$(limit 70)" "$PY" benchmarks/bench_train.py --device cuda --repeat 1 \
    --limit 10000 --data "$MNIST" --no-download --no-plot > "$OUT/bench_train_cuda.txt" 2>&1
  rc=$?
  cat "$OUT/bench_train_cuda.txt"
  if [ "$rc" -eq 0 ]; then record "bench_train --device cuda" PASS "train_cuda.csv"
  else record "bench_train --device cuda" FAIL "exit $rc"; fi
fi

# ---- 7. training on the CPU, 1 to 16 threads ------------------------------------------------------------------
if [ -n "$MNIST" ]; then
  note "bench_train.py on the CPU with 1, 2, 4, 8, 16 threads (3,000 images per epoch)"
  if ! have_py torch; then loud "NOTE: torch is not installed: the CPU rows have no PyTorch column"; fi
  cpu_ok=1
  for t in 1 2 4 8 16; do
    l=$(left)
    if [ "$l" -lt 15 ]; then
      loud "out of time before the $t-thread run: CPU scaling STOPPED at fewer threads"
      cpu_ok=0
      break
    fi
    mkdir -p "$OUT/cpu-threads-$t"
    OMP_NUM_THREADS=$t FASTMLP_BENCH_RESULTS="$OUT/cpu-threads-$t" timeout "$(limit 45)" "$PY" \
      benchmarks/bench_train.py --impls loop,fit,torch --repeat 1 --limit 3000 --data "$MNIST" --no-download \
      --no-plot > "$OUT/cpu-threads-$t/bench_train.txt" 2>&1
    rc=$?
    echo "--- $t thread(s): exit $rc"
    cat "$OUT/cpu-threads-$t/bench_train.txt"
    if [ "$rc" -ne 0 ]; then cpu_ok=0; fi
  done
  if [ "$cpu_ok" = 1 ]; then record "bench_train cpu 1-16 thr" PASS "cpu-threads-*/train.csv"
  else record "bench_train cpu 1-16 thr" FAIL "a run failed or timed out"; fi
fi

finish
